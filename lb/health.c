/* Active HTTP health checks; see health.h.
 *
 * One check in flight per node at most, on its own connection with Connection: close, so a check never shares
 * state with client traffic. Only the status line is read: "HTTP/1.x DDD", 2xx and 3xx pass (HAProxy's httpchk
 * rule). A check still running when the next is due counts as failed. */
#include "lb/health.h"

#include "common/log.h"
#include "common/net.h"
#include "lb/pool.h"

#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

struct check {
    struct health *h;
    int node, fd;
    ev_io io;
    ev_timer timer;
    ev_tstamp started;
    bool connected;
    int verdict; /* -1 until the status line is read; the body is then drained so the node sees a clean close */
    char why[64];
    size_t sent, got;
    char reply[16]; /* "HTTP/1.1 200 " is all we read */
};

struct health {
    struct ev_loop *loop;
    struct pool *pool;
    char request[400];
    size_t request_len;
    struct check checks[LB_MAX_BACKENDS];
};

static void finish(struct check *k, bool ok, const char *why)
{
    struct health *h = k->h;
    struct pool_node_state *s = &h->pool->sh->nodes[k->node];
    if (k->fd >= 0) {
        ev_io_stop(h->loop, &k->io);
        close(k->fd);
        k->fd = -1;
    }
    POOL_ADD(*(ok ? &s->checks_ok : &s->checks_failed), 1);
    pool_observe(h->pool, k->node, ok, why);
    ev_tstamp next = h->pool->conf->health.interval_ns / 1e9 - (ev_now(h->loop) - k->started);
    ev_timer_stop(h->loop, &k->timer);
    ev_timer_set(&k->timer, next > 0 ? next : 0, 0);
    ev_timer_start(h->loop, &k->timer);
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

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct check *k = container_of(w, struct check, io);
    struct health *h = k->h;
    char why[96];
    (void)revents;
    if (!k->connected) {
        int err = net_connect_result(k->fd);
        if (err) {
            snprintf(why, sizeof why, "check: connect: %s", strerror(err));
            finish(k, false, why);
            return;
        }
        k->connected = true;
    }
    if (k->sent < h->request_len) {
        ssize_t n = write(k->fd, h->request + k->sent, h->request_len - k->sent);
        if (n < 0 && errno != EAGAIN) {
            snprintf(why, sizeof why, "check: write: %s", strerror(errno));
            finish(k, false, why);
            return;
        }
        k->sent += n > 0 ? (size_t)n : 0;
        if (k->sent == h->request_len) {
            ev_io_stop(loop, w);
            ev_io_set(w, k->fd, EV_READ);
            ev_io_start(loop, w);
        }
        return;
    }
    char drain[4096];
    char *to = k->verdict < 0 ? k->reply + k->got : drain;
    ssize_t n = read(k->fd, to, k->verdict < 0 ? sizeof k->reply - k->got : sizeof drain);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n > 0 && k->verdict < 0)
        k->got += (size_t)n;
    if (k->verdict < 0 && (n <= 0 || k->got >= 12))
        judge(k);
    if (n <= 0 && k->fd >= 0)
        finish(k, k->verdict == 1, k->why);
}

static void start_check(struct check *k)
{
    struct health *h = k->h;
    char why[96];
    k->started = ev_now(h->loop);
    k->connected = false;
    k->verdict = -1;
    k->sent = k->got = 0;
    struct net_addr addr;
    pool_node_addr(h->pool, k->node, &addr);
    k->fd = net_connect(&addr, NULL);
    ev_timer_stop(h->loop, &k->timer);
    ev_timer_set(&k->timer, h->pool->conf->health.timeout_ns / 1e9, 0);
    ev_timer_start(h->loop, &k->timer);
    if (k->fd < 0) {
        snprintf(why, sizeof why, "check: connect: %s", strerror(errno));
        finish(k, false, why);
        return;
    }
    ev_io_set(&k->io, k->fd, EV_WRITE);
    ev_io_start(h->loop, &k->io);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct check *k = container_of(w, struct check, timer);
    (void)loop, (void)revents;
    if (k->fd >= 0)
        finish(k, k->verdict == 1, k->verdict < 0 ? "check: timed out" : k->why);
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
            close(k->fd);
        }
    }
    free(h);
}
