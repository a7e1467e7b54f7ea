/* Active HTTP health checks; see health.h.
 *
 * One check in flight per node at most, on its own connection with Connection: close, so a check never shares
 * state with client traffic. Only the status line is read: "HTTP/1.x DDD", 2xx and 3xx pass (HAProxy's httpchk
 * rule). A check still running when the next is due counts as failed. Each check has one timer: its timeout while
 * in flight, else the start of the next one. */
#include "lb/health.h"

#include "common/log.h"
#include "common/net.h"
#include "common/stream.h"
#include "lb/pool.h"
#include "lb/shortage.h"

#include <errno.h>
#include <ev.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* A timer that fires later than this share of the timeout says the loop lagged, not the node. */
#define LATE_SHARE 0.5

struct check {
    struct health *h;
    int node, fd;
    struct stream conn; /* plain (checks speak HTTP without TLS): connect, its result, close */
    ev_io io;
    ev_timer timer;
    ev_tstamp started, deadline;
    bool connected;
    bool extended; /* given one more timeout because its timer fired late */
    int verdict;   /* -1 until the status line is read; the body is then drained so the node sees a clean close */
    char why[64];
    size_t sent, got;
    char reply[16]; /* "HTTP/1.1 200 " is all we read */
};

struct health {
    struct ev_loop *loop;
    struct pool *pool;
    struct shortage lack;
    char request[400];
    size_t request_len;
    struct check checks[LB_MAX_BACKENDS];
};

/* Close the check's connection and start the next one an interval after this one started. */
static void close_and_schedule(struct check *k)
{
    struct health *h = k->h;
    if (k->fd >= 0) {
        ev_io_stop(h->loop, &k->io);
        stream_close(&k->conn, k->fd);
        k->fd = -1;
    }
    ev_tstamp next = h->pool->conf->health.interval_ns / 1e9 - (ev_now(h->loop) - k->started);
    ev_timer_stop(h->loop, &k->timer);
    ev_timer_set(&k->timer, next > 0 ? next : 0, 0);
    ev_timer_start(h->loop, &k->timer);
}

static void finish(struct check *k, bool ok, const char *why)
{
    struct pool_node_state *s = &k->h->pool->sh->nodes[k->node];
    close_and_schedule(k);
    POOL_ADD(*(ok ? &s->checks_ok : &s->checks_failed), 1);
    pool_observe(k->h->pool, k->node, ok, why);
}

/* The check failed at step (connect, write, read) with err: the node's failure, unless err names a local
 * resource, which skips the check (counted, logged per episode) without a verdict. */
static void fail(struct check *k, const char *step, int err)
{
    if (shortage_kind(err) >= 0) {
        shortage_hit(&k->h->lack, POOL_OP_CHECK, err, ev_now(k->h->loop));
        close_and_schedule(k);
        return;
    }
    char why[96];
    snprintf(why, sizeof why, "check: %s: %s", step, strerror(err));
    finish(k, false, why);
}

static void judge(struct check *k)
{
    const char *r = k->reply;
    if (k->got < 12 || memcmp(r, "HTTP/1.", 7) != 0 || r[8] != ' ' || r[9] < '1' || r[9] > '5' || r[10] < '0' ||
        r[10] > '9' || r[11] < '0' || r[11] > '9') {
        finish(k, false, "check: not an HTTP response");
        return;
    }
    snprintf(k->why, sizeof k->why, "check: HTTP %.3s", r + 9);
    k->verdict = r[9] == '2' || r[9] == '3';
}

/* The request is out (all of it, or what the socket took). */
static void send_request(struct check *k)
{
    struct health *h = k->h;
    ssize_t n = write(k->fd, h->request + k->sent, h->request_len - k->sent);
    if (n < 0 && errno != EAGAIN) {
        fail(k, "write", errno);
        return;
    }
    k->sent += n > 0 ? (size_t)n : 0;
    if (k->sent == h->request_len) {
        ev_io_stop(h->loop, &k->io);
        ev_io_set(&k->io, k->fd, EV_READ);
        ev_io_start(h->loop, &k->io);
    }
}

/* The status line, then the rest drained to the node's close. */
static void read_reply(struct check *k)
{
    char drain[4096];
    char *to = k->verdict < 0 ? k->reply + k->got : drain;
    ssize_t n = read(k->fd, to, k->verdict < 0 ? sizeof k->reply - k->got : sizeof drain);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n < 0 && shortage_kind(errno) >= 0) {
        fail(k, "read", errno);
        return;
    }
    if (n > 0 && k->verdict < 0)
        k->got += (size_t)n;
    if (k->verdict < 0 && (n <= 0 || k->got >= 12))
        judge(k);
    if (n <= 0 && k->fd >= 0)
        finish(k, k->verdict == 1, k->why);
}

/* One step on a socket that is ready: the connect's outcome, the request, the reply. */
static void step(struct check *k)
{
    if (!k->connected) {
        int err = stream_connected(&k->conn, k->fd);
        if (err) {
            fail(k, "connect", err);
            return;
        }
        k->connected = true;
    }
    if (k->sent < k->h->request_len)
        send_request(k);
    else
        read_reply(k);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    step(container_of(w, struct check, io));
}

/* Whether the socket is ready for the check's next step now (poll with no wait). */
static bool ready_now(const struct check *k)
{
    struct pollfd pfd = {.fd = k->fd, .events = k->sent < k->h->request_len ? POLLOUT : POLLIN};
    return poll(&pfd, 1, 0) > 0;
}

static void start_check(struct check *k)
{
    struct health *h = k->h;
    ev_tstamp timeout = h->pool->conf->health.timeout_ns / 1e9;
    k->started = ev_now(h->loop);
    k->deadline = k->started + timeout;
    k->connected = k->extended = false;
    k->verdict = -1;
    k->sent = k->got = 0;
    struct net_addr addr;
    pool_node_addr(h->pool, k->node, &addr);
    k->fd = stream_connect(&k->conn, &addr, NULL);
    if (k->fd < 0) {
        fail(k, "connect", errno);
        return;
    }
    shortage_ok(&h->lack, k->started);
    ev_timer_stop(h->loop, &k->timer);
    ev_timer_set(&k->timer, timeout, 0);
    ev_timer_start(h->loop, &k->timer);
    ev_io_set(&k->io, k->fd, EV_WRITE);
    ev_io_start(h->loop, &k->io);
}

/* The timeout of a check in flight: take what the socket already has (a lagging loop runs this timer before the
 * ready read), then judge, unless the timer itself came late: then one more timeout from now. */
static void check_timed_out(struct check *k)
{
    struct health *h = k->h;
    ev_tstamp timeout = h->pool->conf->health.timeout_ns / 1e9;
    for (int i = 0; i < 4 && k->fd >= 0 && k->verdict < 0 && ready_now(k); i++)
        step(k);
    if (k->fd < 0)
        return;
    if (k->verdict >= 0) {
        finish(k, k->verdict == 1, k->why); /* answered; only the close is missing */
        return;
    }
    ev_tstamp late = ev_now(h->loop) - k->deadline;
    if (!k->extended && late > timeout * LATE_SHARE) {
        LOG_DEBUG("check of %s: timer %.0f ms late: one more timeout", h->pool->conf->backends[k->node].name,
                  late * 1e3);
        k->extended = true;
        k->deadline = ev_now(h->loop) + timeout;
        ev_timer_set(&k->timer, timeout, 0);
        ev_timer_start(h->loop, &k->timer);
        return;
    }
    finish(k, false, "check: timed out");
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct check *k = container_of(w, struct check, timer);
    (void)loop, (void)revents;
    if (k->fd >= 0)
        check_timed_out(k);
    else
        start_check(k);
}

struct health *health_start(struct ev_loop *loop, struct pool *pool, char *err, size_t errlen)
{
    struct health *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    h->loop = loop;
    h->pool = pool;
    shortage_init(&h->lack, "health checks", "checks are skipped", pool->sh);
    if (!pool->conf->health.enabled)
        return h;
    int n = snprintf(h->request, sizeof h->request,
                     "GET %s HTTP/1.1\r\nHost: lb-health-check\r\nUser-Agent: lb-health\r\nConnection: close\r\n\r\n",
                     pool->conf->health.path);
    h->request_len = (size_t)n;
    for (int i = 0; i < pool->n; i++) {
        struct check *k = &h->checks[i];
        *k = (struct check){.h = h, .node = i, .fd = -1};
        ev_io_init(&k->io, on_io, -1, 0);
        /* spread the first checks over the interval so K nodes are not all probed in one burst */
        ev_timer_init(&k->timer, on_timer, (double)i * pool->conf->health.interval_ns / 1e9 / pool->n / 4, 0);
        ev_timer_start(loop, &k->timer);
    }
    return h;
}

void health_stop(struct health *h)
{
    if (!h)
        return;
    for (int i = 0; h->pool->conf->health.enabled && i < h->pool->n; i++) {
        struct check *k = &h->checks[i];
        ev_timer_stop(h->loop, &k->timer);
        if (k->fd >= 0) {
            ev_io_stop(h->loop, &k->io);
            stream_close(&k->conn, k->fd);
        }
    }
    free(h);
}
