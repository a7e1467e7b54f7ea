/* Non-blocking TCP sockets: address parsing, listen (optionally SO_REUSEPORT), connect from a chosen source
 * address, and read/write that report enum io_status instead of errno juggling at every call site. */
#ifndef COMMON_NET_H
#define COMMON_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

struct buf;
struct iovec;

enum io_status { IO_OK = 0, IO_AGAIN, IO_EOF, IO_ERR };

struct net_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* Parse "host:port", "[v6]:port" or ":port" (all interfaces) into addr; numeric hosts only, so it never blocks.
 * 0, or -1 with err. */
int net_parse_addr(const char *text, struct net_addr *addr, char *err, size_t errlen);
/* Like net_parse_addr, but host names are resolved (getaddrinfo, blocking: setup only). */
int net_resolve(const char *host, const char *port, struct net_addr *addr, char *err, size_t errlen);
/* "host:port" of addr into out. */
void net_addr_str(const struct net_addr *addr, char *out, size_t outlen);

/* A non-blocking listening socket. 0 or fd >= 0, or -1 with err (the text names the address and errno). */
int net_listen(const struct net_addr *addr, int backlog, bool reuseport, char *err, size_t errlen);
/* Accept one connection as non-blocking with TCP_NODELAY; -1 with errno (EAGAIN when none is pending). */
int net_accept(int lfd, struct net_addr *peer);
/* Start a non-blocking connect, binding to source first when given (IP_BIND_ADDRESS_NO_PORT, so many source
 * addresses share the port space). Returns the fd (connect in progress or done), or -1 with errno. */
int net_connect(const struct net_addr *dst, const struct net_addr *source);
/* Outcome of a non-blocking connect once the fd is writable: 0, or the errno it failed with. */
int net_connect_result(int fd);

/* read() into b (reserving up to want bytes); IO_OK when bytes arrived. *err gets errno on IO_ERR. */
enum io_status net_read(int fd, struct buf *b, size_t want, int *err);
/* writev(); *written gets the count. IO_OK when something was written, IO_AGAIN when the socket is full. */
enum io_status net_writev(int fd, const struct iovec *iov, int n, size_t *written, int *err);

#endif
