/* TLS over any non-blocking fd with OpenSSL: a context per role (client or server) and a connection per fd, with
 * handshake/read/write that report enum io_status like net.c, so plain and TLS paths share their callers' shape.
 *
 * Two rules for callers. tls_read must be called until it returns IO_AGAIN: OpenSSL can hold decrypted bytes that
 * the fd's readiness no longer shows. An IO_AGAIN says which readiness to wait for: a read can need the socket
 * writable (*want_write) and a write can need it readable (*want_read). The process must ignore SIGPIPE, as
 * OpenSSL writes to the socket with write(). No OpenSSL type leaks out of this header. */
#ifndef COMMON_TLS_H
#define COMMON_TLS_H

#include "common/net.h"

#include <stdbool.h>
#include <stddef.h>

struct buf;
struct tls_ctx;
struct tls_conn;

/* A client context: TLS 1.2+, the server's certificate checked against ca_file (NULL: the system store) unless
 * verify is false. NULL with err (e.g. an unreadable ca_file). */
struct tls_ctx *tls_client_ctx_new(const char *ca_file, bool verify, char *err, size_t errlen);
/* A server context: TLS 1.2+, certificate chain and key from PEM files, ALPN answers http/1.1 when offered.
 * NULL with err (missing file, key not matching the certificate). */
struct tls_ctx *tls_server_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen);
/* Free a context; connections made from it keep their own reference and may outlive it. */
void tls_ctx_free(struct tls_ctx *ctx);

/* A connection on a connected fd (the fd stays the caller's to close). For a client context, server_name is sent
 * as SNI (unless it is an IP literal) and the certificate must match it (DNS name or IP) when verifying; NULL for
 * a server. NULL on out of memory. */
struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd, const char *server_name);
/* Advance the handshake. IO_OK: done. IO_AGAIN: call again when the fd is readable, or writable if *want_write.
 * IO_EOF: the peer closed; IO_ERR: failed (bad certificate, protocol error...). Both fill err. */
enum io_status tls_handshake(struct tls_conn *c, bool *want_write, char *err, size_t errlen);
/* Decrypt into b (reserving up to want bytes). IO_OK when bytes arrived; IO_AGAIN (see *want_write); IO_EOF on
 * close_notify or a bare close; IO_ERR with *err an errno (EPROTO for a TLS error, see tls_conn_error). */
enum io_status tls_read(struct tls_conn *c, struct buf *b, size_t want, bool *want_write, int *err);
/* Encrypt and send up to len bytes; *written gets the count taken. Retry an IO_AGAIN with the same bytes first
 * (more may follow them; the buffer may have moved). Statuses as tls_read, with *want_read. */
enum io_status tls_write(struct tls_conn *c, const void *data, size_t len, size_t *written, bool *want_read, int *err);
/* What the last calls left waiting on the other readiness: a read or handshake (IO_AGAIN) that needs the socket
 * writable, a write that needs it readable. Both false after a call that did not stop for that. */
void tls_conn_wants(const struct tls_conn *c, bool *read_wants_write, bool *write_wants_read);
/* Write out's bytes to fd, through c when it is not NULL (plain TCP when it is), consuming what went and giving out's
 * block back once it is empty. 0 with *want_write true while bytes wait for the socket to take more (false once out
 * is empty, or when TLS must read before it can write); or -1 with errno (EPIPE for a close). One loop for every
 * client that writes a buffer to a socket that may or may not be TLS. */
int tls_drain(struct tls_conn *c, int fd, struct buf *out, bool *want_write);
/* Text of the last TLS-level failure on c (after EPROTO), for logs. */
const char *tls_conn_error(const struct tls_conn *c);
/* The ALPN protocol agreed ("http/1.1"), or "" when none was. */
const char *tls_conn_alpn(const struct tls_conn *c);
/* Send close_notify, best effort, without waiting for the peer's; then the caller may close the fd. */
void tls_shutdown(struct tls_conn *c);
void tls_conn_free(struct tls_conn *c);

#endif
