/* Batched accepts behind a connection gate, with a back-off and one warning per episode of failures; see listener.h. */
#include "common/listener.h"

#include "common/log.h"
#include "common/net.h"

#include <errno.h>
#include <ev.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* L_ACTIVE: watching. L_FULL: paused at the gate until listener_left. L_BACKOFF: paused until the timer.
 * L_STOPPED: for good. Watchers run in L_ACTIVE only. */
enum listener_state { L_ACTIVE = 0, L_FULL, L_BACKOFF, L_STOPPED };

struct listener {
    struct ev_loop *loop;
    struct listener_config cfg;
    int fds[LISTENER_MAX_FDS];
    enum listener_state state;
    bool in_episode;   /* failures the listener warned about, not yet over */
    uint64_t failures; /* in this episode */
    double began, last_failure;
    ev_timer backoff;
    ev_io w[LISTENER_MAX_FDS];
};

static void watch(struct listener *l, bool on)
{
    for (int i = 0; i < l->cfg.nfds; i++) {
        if (on)
            ev_io_start(l->loop, &l->w[i]);
        else
            ev_io_stop(l->loop, &l->w[i]);
    }
}

/* From L_ACTIVE to state (L_FULL, L_BACKOFF). */
static void pause_in(struct listener *l, enum listener_state state)
{
    l->state = state;
    watch(l, false);
    if (state == L_BACKOFF) {
        ev_timer_set(&l->backoff, LISTENER_BACKOFF_S, 0);
        ev_timer_start(l->loop, &l->backoff);
    }
}

/* From L_FULL or L_BACKOFF to L_ACTIVE. */
static void resume(struct listener *l)
{
    l->state = L_ACTIVE;
    watch(l, true);
}

static bool full(const struct listener *l)
{
    return l->cfg.max && *l->cfg.count >= l->cfg.max;
}

/* Errors that concern one connection (gone before we took it, or a network error Linux passes on from it, as
 * accept(2) says): the next one in the queue may well be fine. */
static bool per_connection(int err)
{
    switch (err) {
    case EINTR:
    case ECONNABORTED:
    case EPROTO:
    case EPERM: /* a firewall rule refused it */
    case ENETDOWN:
    case ENETUNREACH:
    case EHOSTDOWN:
    case EHOSTUNREACH:
    case ENOPROTOOPT:
    case EOPNOTSUPP:
#ifdef ENONET
    case ENONET:
#endif
        return true;
    default: return false;
    }
}

/* A failure nobody else logged: the first of an episode is said, the rest counted. */
static void warn_failure(struct listener *l, int err, double now)
{
    l->failures++;
    l->last_failure = now;
    if (l->in_episode)
        return;
    l->in_episode = true;
    l->began = now;
    char load[48] = "";
    if (l->cfg.count && l->cfg.max)
        snprintf(load, sizeof load, " (%" PRIu32 " of %" PRIu32 " connections open)", *l->cfg.count, l->cfg.max);
    else if (l->cfg.count)
        snprintf(load, sizeof load, " (%" PRIu32 " connections open)", *l->cfg.count);
    LOG_WARN("%s: accept: %s%s; pausing accepts for %.0f ms at a time until it clears", l->cfg.who, strerror(err), load,
             LISTENER_BACKOFF_S * 1000);
}

/* An accept succeeded at now: an episode is over once it has been quiet for LISTENER_QUIET_S. */
static void episode_check(struct listener *l, double now)
{
    if (now - l->last_failure < LISTENER_QUIET_S)
        return;
    LOG_WARN("%s: accept: failures over after %.1fs; %llu accept(s) failed meanwhile", l->cfg.who,
             l->last_failure - l->began, (unsigned long long)l->failures);
    l->in_episode = false;
    l->failures = 0;
}

/* An accept failed with err (not EAGAIN, not per_connection): say it, and pause so the queued connection does
 * not wake us again at once. */
static void failed(struct listener *l, int err)
{
    if (!l->cfg.on_fail || !l->cfg.on_fail(l->cfg.ctx, err))
        warn_failure(l, err, ev_now(l->loop));
    pause_in(l, L_BACKOFF);
}

/* Accept from socket i until its queue is empty, the batch is done, the gate closes, or something paused or
 * stopped us (the callback may). */
static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct listener *l = w->data;
    int i = (int)(w - l->w);
    (void)revents;
    for (int n = 0; n < LISTENER_BATCH && l->state == L_ACTIVE; n++) {
        if (full(l)) {
            pause_in(l, L_FULL);
            return;
        }
        struct net_addr peer;
        int fd = net_accept(l->fds[i], &peer);
        if (fd < 0) {
            int err = errno;
            if (err == EAGAIN || err == EWOULDBLOCK)
                return;
            if (!per_connection(err))
                failed(l, err);
            continue;
        }
        if (l->in_episode)
            episode_check(l, ev_now(loop));
        l->cfg.on_accept(l->cfg.ctx, fd, i, &peer);
    }
}

static void on_backoff(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct listener *l = t->data;
    (void)loop, (void)revents;
    if (l->state == L_BACKOFF)
        resume(l);
}

struct listener *listener_start(struct ev_loop *loop, const struct listener_config *cfg, char *err, size_t errlen)
{
    if (cfg->nfds < 1 || cfg->nfds > LISTENER_MAX_FDS || !cfg->on_accept || (cfg->max && !cfg->count)) {
        snprintf(err, errlen, "listener: bad configuration");
        return NULL;
    }
    struct listener *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->loop = loop;
    l->cfg = *cfg;
    l->cfg.fds = l->fds;
    ev_init(&l->backoff, on_backoff);
    l->backoff.data = l;
    for (int i = 0; i < cfg->nfds; i++) {
        l->fds[i] = cfg->fds[i];
        ev_io_init(&l->w[i], on_readable, cfg->fds[i], EV_READ);
        l->w[i].data = l;
    }
    resume(l);
    return l;
}

void listener_left(struct listener *l)
{
    if (l->state == L_FULL && !full(l))
        resume(l);
}

/* Hand out what waits on socket i, within the gate. */
static void drain(struct listener *l, int i)
{
    for (int n = 0; n < LISTENER_DRAIN_MAX && !full(l); n++) {
        struct net_addr peer;
        int fd = net_accept(l->fds[i], &peer);
        if (fd < 0 && per_connection(errno))
            continue;
        if (fd < 0)
            return;
        l->cfg.on_accept(l->cfg.ctx, fd, i, &peer);
    }
}

void listener_stop(struct listener *l, bool drain_queues)
{
    if (l->state == L_STOPPED)
        return;
    l->state = L_STOPPED;
    watch(l, false);
    ev_timer_stop(l->loop, &l->backoff);
    for (int i = 0; drain_queues && i < l->cfg.nfds; i++)
        drain(l, i);
}

bool listener_active(const struct listener *l)
{
    return l->state == L_ACTIVE;
}

void listener_free(struct listener *l)
{
    if (!l)
        return;
    listener_stop(l, false);
    free(l);
}
