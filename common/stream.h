/* One byte stream over a non-blocking socket, plain TCP or TLS, inbound or outbound: connect, its result, the TLS
 * handshake, read, write, drain, the poll events it needs and close, written once for every owner (loadgen's
 * clients, the lb's sessions and health checks, the Redis bus) instead of once each.
 *
 * The struct holds only the TLS connection (NULL: plain TCP). The owner keeps the fd, which its libev watcher
 * holds anyway, and passes it in; TLS's cross-wants (a read that needs the socket writable, a write that needs it
 * readable) live in the TLS connection. So a stream embeds in a per-connection struct in the room of the one
 * pointer it replaces, and the plain path is an inline test of that pointer before the net.c call. */
#ifndef COMMON_STREAM_H
#define COMMON_STREAM_H

#include "common/net.h"
#include "common/tls.h"

#include <stdbool.h>
#include <stddef.h>

struct buf;
struct iovec;

/* Poll events, equal to libev's EV_READ and EV_WRITE (stream.c checks), so they go to ev_io_set as they are. */
enum { STREAM_READ = 0x01, STREAM_WRITE = 0x02 };

struct stream {
    struct tls_conn *tls; /* NULL: plain TCP */
};

/* Is TLS on (from stream_start_tls or stream_accept with a context, until stream_close)? */
static inline bool stream_is_tls(const struct stream *s)
{
    return s->tls != NULL;
}

/* Start a non-blocking connect to dst, from source when not NULL; the stream is plain until stream_start_tls.
 * The fd (wait for it writable), or -1 with errno. */
int stream_connect(struct stream *s, const struct net_addr *dst, const struct net_addr *source);
/* Once the connecting fd is writable: 0 when the TCP connect succeeded, else the errno it failed with. */
int stream_connected(struct stream *s, int fd);
/* Put TLS over the connected fd when ctx is not NULL: a client context's with server_name for SNI and verification,
 * a server context's with NULL (stream_handshake next). 0 (also without ctx: the stream stays plain), or -1 out of
 * memory. */
int stream_start_tls(struct stream *s, int fd, struct tls_ctx *ctx, const char *server_name);
/* Wrap an accepted fd, with server TLS when ctx is not NULL: stream_start_tls without a name. */
int stream_accept(struct stream *s, int fd, struct tls_ctx *ctx);
/* Advance the TLS handshake (a plain stream is done at once). IO_OK: done. IO_AGAIN: wait for *events
 * (STREAM_READ or STREAM_WRITE). IO_EOF or IO_ERR: failed, err says why ("TLS handshake: ..."). */
enum io_status stream_handshake(struct stream *s, int *events, char *err, size_t errlen);

/* Read into b (reserving up to want bytes), as net_read or tls_read. Read on until IO_AGAIN when TLS: it may hold
 * decrypted bytes the fd no longer shows. *err gets an errno on IO_ERR (EPROTO: see stream_strerror). */
static inline enum io_status stream_read(struct stream *s, int fd, struct buf *b, size_t want, int *err)
{
    bool want_write;
    return s->tls ? tls_read(s->tls, b, want, &want_write, err) : net_read(fd, b, want, err);
}

/* Write the n buffers of iov in order, as net_writev (TLS: record by record until one is not taken whole).
 * *written gets the bytes taken; retry an IO_AGAIN with the same bytes first. Statuses as stream_read. */
enum io_status stream_tls_writev(struct stream *s, const struct iovec *iov, int n, size_t *written, int *err);
static inline enum io_status stream_writev(struct stream *s, int fd, const struct iovec *iov, int n, size_t *written,
                                           int *err)
{
    return s->tls ? stream_tls_writev(s, iov, n, written, err) : net_writev(fd, iov, n, written, err);
}
/* Write up to len bytes, as stream_writev with one buffer. */
enum io_status stream_write(struct stream *s, int fd, const void *data, size_t len, size_t *written, int *err);

/* Write out's bytes until it is empty or the socket is full (see tls_drain). 0 with *want_write true while bytes
 * wait for the socket, or -1 with errno (EPIPE for a close). */
static inline int stream_drain(struct stream *s, int fd, struct buf *out, bool *want_write)
{
    return tls_drain(s->tls, fd, out, want_write);
}

/* The poll events to wait for when the caller wants to read (STREAM_READ in want) and/or write (STREAM_WRITE),
 * plus what TLS's last calls are stuck on: STREAM_WRITE for a read that needs the socket writable, STREAM_READ for
 * a write that needs it readable. Such a readiness means "retry the stuck call", whatever it reports. */
int stream_tls_events(const struct stream *s, int want);
static inline int stream_events(const struct stream *s, int want)
{
    return s->tls ? stream_tls_events(s, want) : want;
}
/* Did the last TLS read (or handshake step) stop for the socket's writability? False for a plain stream. */
bool stream_tls_read_wants_write(const struct stream *s);
static inline bool stream_read_wants_write(const struct stream *s)
{
    return s->tls && stream_tls_read_wants_write(s);
}
/* Did the last TLS write stop for the socket's readability? False for a plain stream. */
bool stream_tls_write_wants_read(const struct stream *s);
static inline bool stream_write_wants_read(const struct stream *s)
{
    return s->tls && stream_tls_write_wants_read(s);
}

/* Text for an errno a stream call returned: the TLS failure for EPROTO on a TLS stream, else strerror. */
const char *stream_strerror(const struct stream *s, int err);
/* Close: TLS close_notify (best effort) and free, then close fd when it is >= 0. The stream is plain again. */
void stream_close(struct stream *s, int fd);
/* End our direction and keep reading: TLS close_notify (best effort), then shutdown(fd, SHUT_WR). */
void stream_shutdown(struct stream *s, int fd);
/* Close without a close_notify (a reset, a timeout, or after stream_shutdown sent it): free TLS, close fd. */
void stream_drop(struct stream *s, int fd);

#endif
