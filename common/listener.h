/* One accepting side of a daemon, on a libev loop: one or more bound listening sockets, each accepted from in
 * batches of at most LISTENER_BATCH per wakeup (so a flood of connects cannot starve the connections already open),
 * gated on the caller's count of open connections (past max, new connections wait in the kernel's backlog, as with
 * HAProxy's maxconn, until listener_left), and backing off for LISTENER_BACKOFF_S when an accept fails for a reason
 * other than a routine one (EMFILE, ENFILE, ENOBUFS, ENOMEM...: the connection stays queued, so a level-triggered
 * watcher would spin), warning once per episode of failures. The accept path costs the accept4 and TCP_NODELAY
 * setsockopt of net_accept and nothing else: no allocation, no further syscall. */
#ifndef COMMON_LISTENER_H
#define COMMON_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct net_addr;
struct listener;

#define LISTENER_MAX_FDS   8
#define LISTENER_BATCH     64   /* accepts per wakeup of one socket */
#define LISTENER_BACKOFF_S 0.1  /* pause after a failed accept */
#define LISTENER_QUIET_S   1.0  /* an episode of failures ends at a success this long after its last failure */
#define LISTENER_DRAIN_MAX 1024 /* connections listener_stop takes off one socket's queue */

/* A new connection: fd (non-blocking, TCP_NODELAY, the callee's to close), the index of the socket it came on and
 * the peer's address (valid during the call). */
typedef void listener_accept_fn(void *ctx, int fd, int index, const struct net_addr *peer);
/* An accept failed with err, not a routine error; accepts pause for LISTENER_BACKOFF_S whatever this returns.
 * true: the hook has logged it its own way; false: the listener warns, once per episode. */
typedef bool listener_fail_fn(void *ctx, int err);

struct listener_config {
    const char *who; /* the subject of the log lines, e.g. "worker 0" (kept, not copied) */
    const int *fds;  /* bound, listening, non-blocking sockets; they stay the caller's to close */
    int nfds;        /* 1..LISTENER_MAX_FDS */
    uint32_t max;    /* open connections allowed; 0: no gate */
    /* the caller's count of open connections, read before each accept and shown in the warning (NULL if no gate) */
    const uint32_t *count;
    listener_accept_fn *on_accept;
    listener_fail_fn *on_fail; /* NULL: every failure is the listener's to warn about */
    void *ctx;
};

/* Start watching cfg's sockets on loop. NULL with err (bad config, out of memory). */
struct listener *listener_start(struct ev_loop *loop, const struct listener_config *cfg, char *err, size_t errlen);

/* A connection counted in *count has closed (the caller decremented it first): accepting resumes if the gate had
 * paused it. Cheap enough to call on every close. */
void listener_left(struct listener *l);

/* Stop accepting for good (shutdown). With drain, first hand out what already waits in each socket's queue (at most
 * LISTENER_DRAIN_MAX each, within the gate): when this process holds a socket's last descriptor, closing it resets
 * those connections, and their clients did reach us. The sockets stay open. */
void listener_stop(struct listener *l, bool drain);

/* True while the sockets are watched (not stopped, not paused at the gate or in a back-off). */
bool listener_active(const struct listener *l);

/* Stop and release l (NULL: nothing). The sockets stay open. */
void listener_free(struct listener *l);

#endif
