/* Plain-or-TLS byte streams: the connect and handshake steps, TLS writev, poll events and close (stream.h). */
#include "common/stream.h"

#include <errno.h>
#include <ev.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

_Static_assert((int)STREAM_READ == (int)EV_READ && (int)STREAM_WRITE == (int)EV_WRITE, "stream events are libev's");

int stream_connect(struct stream *s, const struct net_addr *dst, const struct net_addr *source)
{
    s->tls = NULL;
    return net_connect(dst, source);
}

int stream_connected(struct stream *s, int fd)
{
    (void)s; /* for symmetry: every step takes the stream */
    return net_connect_result(fd);
}

int stream_start_tls(struct stream *s, int fd, struct tls_ctx *ctx, const char *server_name)
{
    s->tls = ctx ? tls_conn_new(ctx, fd, server_name) : NULL;
    return ctx && !s->tls ? -1 : 0;
}

int stream_accept(struct stream *s, int fd, struct tls_ctx *ctx)
{
    return stream_start_tls(s, fd, ctx, NULL);
}

enum io_status stream_handshake(struct stream *s, int *events, char *err, size_t errlen)
{
    bool want_write = false;
    *events = 0;
    if (!s->tls)
        return IO_OK;
    enum io_status st = tls_handshake(s->tls, &want_write, err, errlen);
    if (st == IO_AGAIN)
        *events = want_write ? STREAM_WRITE : STREAM_READ;
    return st;
}

enum io_status stream_tls_writev(struct stream *s, const struct iovec *iov, int n, size_t *written, int *err)
{
    *written = 0;
    for (int i = 0; i < n; i++) {
        size_t w = 0;
        bool want_read;
        if (!iov[i].iov_len)
            continue;
        enum io_status st = tls_write(s->tls, iov[i].iov_base, iov[i].iov_len, &w, &want_read, err);
        *written += w;
        if (st != IO_OK) /* bytes already taken are the news: the retry meets this status again */
            return *written ? IO_OK : st;
        if (w < iov[i].iov_len)
            break;
    }
    return IO_OK;
}

enum io_status stream_write(struct stream *s, int fd, const void *data, size_t len, size_t *written, int *err)
{
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    return stream_writev(s, fd, &iov, 1, written, err);
}

int stream_tls_events(const struct stream *s, int want)
{
    bool rww, wwr;
    tls_conn_wants(s->tls, &rww, &wwr);
    return want | (rww ? STREAM_WRITE : 0) | (wwr ? STREAM_READ : 0);
}

bool stream_tls_read_wants_write(const struct stream *s)
{
    bool rww, wwr;
    tls_conn_wants(s->tls, &rww, &wwr);
    return rww;
}

bool stream_tls_write_wants_read(const struct stream *s)
{
    bool rww, wwr;
    tls_conn_wants(s->tls, &rww, &wwr);
    return wwr;
}

const char *stream_strerror(const struct stream *s, int err)
{
    return s->tls && err == EPROTO ? tls_conn_error(s->tls) : strerror(err);
}

void stream_close(struct stream *s, int fd)
{
    if (s->tls)
        tls_shutdown(s->tls);
    stream_drop(s, fd);
}

void stream_shutdown(struct stream *s, int fd)
{
    if (s->tls)
        tls_shutdown(s->tls);
    shutdown(fd, SHUT_WR);
}

void stream_drop(struct stream *s, int fd)
{
    if (s->tls) {
        tls_conn_free(s->tls);
        s->tls = NULL;
    }
    if (fd >= 0)
        close(fd);
}
