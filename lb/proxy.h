/* The balancer's data path, one worker's share: accept client connections, read each HTTP/1.1 request head on a
 * keep-alive connection and route it on its own (sticky cookie, source or parameter hash, or the balance
 * algorithm), stream bodies through with their framing checked (never buffered whole), and turn a connection
 * whose upgrade the node answered with 101 into a two-way byte tunnel.
 *
 * A session is one client connection and at most one connection to a node at a time: a keep-alive request for the
 * same node reuses it, a request for another node replaces it. Requests are served one after another (pipelined
 * requests wait in the input buffer), which is what HTTP/1.1 requires of responses anyway. */
#ifndef LB_PROXY_H
#define LB_PROXY_H

#include "lb/conf.h"
#include "lb/shortage.h"

#include <stdbool.h>
#include <stdint.h>

struct ev_loop;
struct http_header;
struct listener;
struct pool;
struct tls_ctx;

struct session;
struct reqlog;

struct proxy {
    struct ev_loop *loop;
    const struct lb_conf *conf;
    struct pool *pool;
    struct tls_ctx *tls[LB_MAX_LISTENS]; /* per listener; NULL for plain */
    int lfd[LB_MAX_LISTENS];
    struct listener *listener; /* over lfd[0..nlisten), gated at max_sessions (common/listener.h) */
    int nlisten;
    uint32_t nsessions, max_sessions;
    bool stopping;
    struct session *sessions; /* every open session, for a graceful stop */
    uint64_t next_id;
    uint32_t next_source[LB_MAX_BACKENDS]; /* per node: conf->source + this, for its next connection */
    char name[24];                         /* "worker N", for the log */
    struct shortage lack;                  /* this worker's episodes of running out of descriptors, ports or memory */
    struct http_header *hdrs; /* the head parser's scratch array (one worker, one request parsed at a time) */
    char *scratch;            /* one rewritten cookie header at a time */
    size_t scratch_len;
    struct reqlog *log_scratch; /* without --log-requests: the record every session writes and nobody reads */
};

/* Serve the listening sockets lfd[0..n) (non-blocking, bound; tls[i] set for TLS listeners) on loop, as name (for
 * the log). max_sessions caps this worker's client connections: past it the listeners are paused (new connections
 * wait in the kernel's backlog, as with HAProxy's maxconn) until a session ends. Running out of descriptors (or
 * ports, or memory) pauses accepts and answers 503 to requests that cannot reach a node, blaming no node
 * (shortage.h). 0, or -1 with err. */
int proxy_start(struct proxy *px, struct ev_loop *loop, const char *name, const struct lb_conf *conf, struct pool *pool,
                const int *lfd, struct tls_ctx *const *tls, int n, uint32_t max_sessions, char *err, size_t errlen);

/* Graceful stop: take the connections already queued on the listeners, close the listeners, close idle keep-alive
 * connections, let requests in flight (and new connections' first requests, within timeout head) finish, their
 * connections then closing, and tunnels run on. Returns at once; proxy_sessions() tells how many remain. */
void proxy_stop_accepting(struct proxy *px);

/* Close every remaining session (after the grace time) and free what proxy_start took. */
void proxy_close_all(struct proxy *px);

uint32_t proxy_sessions(const struct proxy *px);

#endif
