/* Non-blocking TCP: address parsing, listeners, connects from a chosen source, read/writev (see net.h). */
#define _GNU_SOURCE /* accept4, IP_BIND_ADDRESS_NO_PORT */
#include "common/net.h"

#include "common/buf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* Split "host:port" / "[v6]:port" into host and port strings. */
static int split_host_port(const char *text, char *host, size_t hostlen, const char **port)
{
    const char *colon;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':')
            return -1;
        if ((size_t)(close - text - 1) >= hostlen)
            return -1;
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = '\0';
        *port = close + 2;
        return 0;
    }
    colon = strrchr(text, ':');
    if (!colon || (size_t)(colon - text) >= hostlen)
        return -1;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    *port = colon + 1;
    return 0;
}

static int valid_port(const char *port)
{
    char *end;
    long v = strtol(port, &end, 10);
    return *port && !*end && v > 0 && v <= 65535;
}

static int lookup(const char *host, const char *port, int flags, struct net_addr *addr, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = flags}, *res;
    if (!valid_port(port)) {
        snprintf(err, errlen, "bad port '%s'", port);
        return -1;
    }
    int rc = getaddrinfo(*host ? host : NULL, port, &hints, &res);
    if (rc) {
        snprintf(err, errlen, "bad address '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    memcpy(&addr->ss, res->ai_addr, res->ai_addrlen);
    addr->len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int net_parse_addr(const char *text, struct net_addr *addr, char *err, size_t errlen)
{
    char host[256];
    const char *port;
    if (split_host_port(text, host, sizeof host, &port) < 0) {
        snprintf(err, errlen, "bad address '%s' (want host:port)", text);
        return -1;
    }
    return lookup(host, port, AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE, addr, err, errlen);
}

int net_resolve(const char *host, const char *port, struct net_addr *addr, char *err, size_t errlen)
{
    return lookup(host, port, AI_NUMERICSERV, addr, err, errlen);
}

void net_addr_str(const struct net_addr *addr, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (addr->ss.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)&addr->ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
        snprintf(out, outlen, "%s:%d", host, port);
    } else {
        const struct sockaddr_in6 *a = (const void *)&addr->ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
        snprintf(out, outlen, "[%s]:%d", host, port);
    }
}

int net_listen(const struct net_addr *addr, int backlog, bool reuseport, char *err, size_t errlen)
{
    char name[80];
    int one = 1, e;
    net_addr_str(addr, name, sizeof name);
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto fail;
    if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 || listen(fd, backlog) < 0)
        goto fail;
    return fd;
fail:
    e = errno;
    snprintf(err, errlen, "cannot listen on %s: %s", name, strerror(e));
    if (fd >= 0)
        close(fd);
    return -1;
}

int net_accept(int lfd, struct net_addr *peer)
{
    struct net_addr tmp;
    struct net_addr *p = peer ? peer : &tmp;
    int one = 1;
    p->len = sizeof p->ss;
    int fd = accept4(lfd, (struct sockaddr *)&p->ss, &p->len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int net_connect(const struct net_addr *dst, const struct net_addr *source)
{
    int one = 1, e;
    int fd = socket(dst->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (source) {
        /* Defer the port choice to connect() so the 4-tuple, not the source address alone, must be unique. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (const struct sockaddr *)&source->ss, source->len) < 0)
            goto fail;
    }
    if (connect(fd, (const struct sockaddr *)&dst->ss, dst->len) < 0 && errno != EINPROGRESS)
        goto fail;
    return fd;
fail:
    e = errno;
    close(fd);
    errno = e;
    return -1;
}

int net_connect_result(int fd)
{
    int e = 0;
    socklen_t len = sizeof e;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
        return errno;
    return e;
}

enum io_status net_read(int fd, struct buf *b, size_t want, int *err)
{
    if (buf_reserve(b, want) < 0) {
        *err = ENOBUFS;
        return IO_ERR;
    }
    for (;;) {
        ssize_t n = read(fd, buf_tail(b), buf_room(b));
        if (n > 0) {
            buf_commit(b, (size_t)n);
            return IO_OK;
        }
        if (n == 0)
            return IO_EOF;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return IO_AGAIN;
        *err = errno;
        return IO_ERR;
    }
}

enum io_status net_writev(int fd, const struct iovec *iov, int n, size_t *written, int *err)
{
    *written = 0;
    for (;;) {
        ssize_t w = writev(fd, iov, n);
        if (w >= 0) {
            *written = (size_t)w;
            return IO_OK;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return IO_AGAIN;
        *err = errno;
        return IO_ERR;
    }
}
