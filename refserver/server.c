#include "refserver/server.h"

#include "common/bus.h"
#include "common/log.h"
#include "refserver/socketio.h"
#include "refserver/sync.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ACCEPT_BATCH  64
#define SCRATCH_SIZE  65536
#define ACCEPT_WARN_S 5.0 /* seconds between two accept-error warnings */

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Rooms open and close with their first and last local member; that is when the Redis channel is (un)subscribed. */
static void on_room_open(void *ctx, struct room *room)
{
    struct server *s = ctx;
    if (s->sync)
        sync_room_open(s->sync, room);
}

static void on_room_close(void *ctx, struct room *room)
{
    struct server *s = ctx;
    if (s->sync)
        sync_room_close(s->sync, room);
}

/* A message from another node: encode the frame once, share it with every local member. */
static void on_remote_message(void *ctx, struct room *room, uint8_t opcode, const char *payload, size_t len)
{
    struct server *s = ctx;
    s->stats.bus_msgs_in++;
    struct slice *f = ws_frame_slice(opcode, payload, len);
    if (!f)
        return;
    session_deliver(s, room, f, NULL);
    slice_unref(f);
}

/* A broadcast on a Socket.IO adapter channel (from a refserver or a Node.js Socket.IO node). */
static void on_socketio_message(void *ctx, const char *channel, size_t channel_len, const char *data, size_t len)
{
    socketio_on_bus(ctx, channel, channel_len, data, len);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents);

static void pause_accepting(struct server *s, double seconds)
{
    ev_io_stop(s->loop, &s->accept_w);
    if (seconds > 0) {
        ev_timer_set(&s->accept_pause, seconds, 0);
        ev_timer_start(s->loop, &s->accept_pause);
    }
}

static void on_accept_pause(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct server *s = container_of(w, struct server, accept_pause);
    (void)loop, (void)revents;
    if (!s->shutting_down)
        ev_io_start(s->loop, &s->accept_w);
}

void server_client_left(struct server *s)
{
    if (!s->shutting_down && !ev_is_active(&s->accept_w) && !ev_is_active(&s->accept_pause))
        ev_io_start(s->loop, &s->accept_w);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    struct server *s = container_of(w, struct server, accept_w);
    (void)revents;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if (s->cfg.max_clients && s->stats.connections >= s->cfg.max_clients) {
            /* Like HAProxy's maxconn: leave further connections in the kernel's backlog until one leaves. */
            pause_accepting(s, 0);
            return;
        }
        int fd = net_accept(s->lfd, NULL);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
                return;
            s->stats.accept_errors++;
            /* EMFILE and friends: the pending connection stays readable, so stop the busy loop for a moment.
             * Said once per ACCEPT_WARN_S, with a count, so a descriptor shortage does not flood the log. */
            if (ev_now(loop) - s->accept_warned >= ACCEPT_WARN_S || s->accept_warned == 0) {
                LOG_WARN("accept: %s (%" PRIu32 " connections, %" PRIu64 " accept errors so far); pausing accepts "
                         "for 100 ms at a time",
                         strerror(errno), s->stats.connections, s->stats.accept_errors);
                s->accept_warned = ev_now(loop);
            }
            pause_accepting(s, 0.1);
            return;
        }
        if (!session_new(s, fd))
            close(fd);
    }
}

void server_schedule_flush(struct server *s, struct client *c)
{
    if (c->flags & CLIENT_FL_FLUSH)
        return;
    c->flags |= CLIENT_FL_FLUSH;
    c->next_work = s->flush_list;
    s->flush_list = c;
}

void server_bury(struct server *s, struct client *c)
{
    c->next_work = s->dead_list;
    s->dead_list = c;
}

/* Before the loop waits: write everything queued during this iteration (one writev per client however many
 * messages it got), then free the clients that died. Frees wait until here so no callback holds a dangling pointer. */
static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct server *s = container_of(w, struct server, flush_w);
    (void)loop, (void)revents;
    while (s->flush_list) {
        struct client *c = s->flush_list;
        s->flush_list = c->next_work;
        c->flags &= (uint16_t)~CLIENT_FL_FLUSH;
        if (c->state != CLIENT_CLOSED)
            session_flush(c);
    }
    while (s->dead_list) {
        struct client *c = s->dead_list;
        s->dead_list = c->next_work;
        session_free(c);
    }
    if (s->shutting_down && s->stats.connections == 0)
        ev_break(s->loop, EVBREAK_ALL);
}

static void on_stats_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct server *s = container_of(w, struct server, stats_timer);
    (void)loop, (void)revents;
    LOG_INFO("%" PRIu32 " connected client(s)", s->stats.ws_clients);
}

static void on_grace_over(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w, (void)revents;
    LOG_WARN("shutdown grace time over; exiting with clients still connected");
    ev_break(loop, EVBREAK_ALL);
}

/* SIGTERM/SIGINT: stop accepting, ask every WebSocket client to go (1001, so it reconnects elsewhere), drop HTTP
 * connections, and exit once all are gone or the grace time has passed. */
static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct server *s =
        w->signum == SIGTERM ? container_of(w, struct server, sigterm_w) : container_of(w, struct server, sigint_w);
    (void)revents;
    if (s->shutting_down)
        return;
    s->shutting_down = true;
    LOG_INFO("signal %d: closing %" PRIu32 " client(s) with 1001", w->signum, s->stats.ws_clients);
    ev_io_stop(loop, &s->accept_w);
    ev_timer_stop(loop, &s->accept_pause);
    for (struct client *c = s->clients; c; c = c->next)
        session_close(c, WS_CLOSE_GOING_AWAY, "server shutting down");
    ev_timer_set(&s->grace_timer, s->cfg.close_timeout + 1, 0);
    ev_timer_start(loop, &s->grace_timer);
}

static int start_sync(struct server *s, char *err, size_t errlen)
{
    if (!s->cfg.redis_url)
        return 0;
    struct sync_config sc = {.url = s->cfg.redis_url,
                             .ca_file = s->cfg.redis_ca,
                             .insecure = s->cfg.redis_insecure,
                             .prefix = s->cfg.channel_prefix,
                             .node_id = s->cfg.node_id,
                             .rooms = &s->rooms,
                             .deliver = on_remote_message,
                             .sio_key = s->cfg.sio_key,
                             .sio_deliver = on_socketio_message,
                             .ctx = s};
    s->sync = sync_new(s->loop, &sc, err, errlen);
    return s->sync ? socketio_init(s, err, errlen) : -1;
}

int server_init(struct server *s, struct ev_loop *loop, const struct server_config *cfg, char *err, size_t errlen)
{
    *s = (struct server){.loop = loop, .cfg = *cfg, .lfd = -1, .next_client_id = 1};
    s->scratch.max = SCRATCH_SIZE;
    if (room_registry_init(&s->rooms, on_room_open, on_room_close, s) < 0 ||
        room_registry_init(&s->sio_rooms, NULL, NULL, NULL) < 0 || buf_reserve(&s->scratch, SCRATCH_SIZE) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->lfd = net_listen(&cfg->listen, 4096, false, err, errlen);
    if (s->lfd < 0 || start_sync(s, err, errlen) < 0)
        return -1;
    ev_io_init(&s->accept_w, on_accept, s->lfd, EV_READ);
    ev_io_start(loop, &s->accept_w);
    ev_timer_init(&s->accept_pause, on_accept_pause, 0, 0);
    ev_timer_init(&s->grace_timer, on_grace_over, 0, 0);
    ev_timer_init(&s->stats_timer, on_stats_timer, cfg->stats_interval, cfg->stats_interval);
    ev_timer_start(loop, &s->stats_timer);
    ev_prepare_init(&s->flush_w, on_prepare);
    ev_prepare_start(loop, &s->flush_w);
    ev_signal_init(&s->sigterm_w, on_signal, SIGTERM);
    ev_signal_start(loop, &s->sigterm_w);
    ev_signal_init(&s->sigint_w, on_signal, SIGINT);
    ev_signal_start(loop, &s->sigint_w);
    /* Nobody waits on a dropped peer: a write to it must fail with EPIPE, not kill the node. */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

void server_free(struct server *s)
{
    session_free_polling(s); /* first: it walks the dead list, whose other entries the loop below frees */
    while (s->clients) {
        struct client *c = s->clients;
        if (c->state != CLIENT_CLOSED) {
            ev_io_stop(s->loop, &c->rio);
            ev_io_stop(s->loop, &c->wio);
            ev_timer_stop(s->loop, &c->timer);
            close(c->fd);
            c->state = CLIENT_CLOSED;
        }
        room_leave(c->flags & CLIENT_FL_SIO ? &s->sio_rooms : &s->rooms, &c->member);
        session_free(c);
    }
    /* Rooms go before the bus so their close hooks find it alive. */
    room_registry_free(&s->rooms);
    room_registry_free(&s->sio_rooms);
    socketio_free(s);
    sync_free(s->sync);
    if (s->lfd >= 0)
        close(s->lfd);
    buf_free(&s->scratch);
}

static int appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int appendf(struct buf *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= sizeof line ? -1 : buf_append(b, line, (size_t)n);
}

#define METRIC(b, type, name, help, fmt, value)                                                                        \
    appendf(b, "# HELP refserver_%s %s\n# TYPE refserver_%s %s\nrefserver_%s " fmt "\n", name, help, name, type, name, \
            value)

int server_metrics(const struct server *s, struct buf *b)
{
    const struct server_stats *st = &s->stats;
    const struct bus_stats *bs = s->sync ? sync_bus_stats(s->sync) : &(struct bus_stats){0};
    int rc = 0;
    rc |= METRIC(b, "gauge", "connections", "Open TCP connections.", "%" PRIu32, st->connections);
    rc |= METRIC(b, "gauge", "websocket_clients", "Connected WebSocket clients.", "%" PRIu32, st->ws_clients);
    rc |= METRIC(b, "gauge", "socketio_polling_sessions", "Engine.IO sessions on the polling transport.", "%" PRIu32,
                 st->polling_sessions);
    rc |= METRIC(b, "gauge", "rooms", "Rooms with local members.", "%" PRIu32, s->rooms.nrooms);
    rc |= METRIC(b, "gauge", "socketio_rooms", "Socket.IO rooms with local members (\"\" counts).", "%" PRIu32,
                 s->sio_rooms.nrooms);
    rc |= METRIC(b, "counter", "connections_accepted_total", "TCP connections accepted.", "%" PRIu64, st->accepted);
    rc |= METRIC(b, "counter", "accept_errors_total", "Failed accept() calls.", "%" PRIu64, st->accept_errors);
    rc |= METRIC(b, "counter", "http_requests_total", "HTTP request heads served.", "%" PRIu64, st->http_requests);
    rc |= METRIC(b, "counter", "http_errors_total", "HTTP requests answered 4xx/5xx.", "%" PRIu64, st->http_errors);
    rc |= METRIC(b, "counter", "websocket_handshakes_total", "Successful upgrades.", "%" PRIu64, st->handshakes);
    rc |= METRIC(b, "counter", "messages_in_total", "Messages received from local clients.", "%" PRIu64, st->msgs_in);
    rc |= METRIC(b, "counter", "messages_out_total", "Messages queued to local clients.", "%" PRIu64, st->msgs_out);
    rc |= METRIC(b, "counter", "bytes_in_total", "Bytes read from clients.", "%" PRIu64, st->bytes_in);
    rc |= METRIC(b, "counter", "bytes_out_total", "Bytes written to clients.", "%" PRIu64, st->bytes_out);
    rc |= METRIC(b, "counter", "bus_messages_in_total", "Messages from other nodes delivered to local rooms.",
                 "%" PRIu64, st->bus_msgs_in);
    rc |= METRIC(b, "counter", "socketio_bus_messages_in_total",
                 "Socket.IO broadcasts from other nodes (refserver or Node.js) delivered to local sockets.", "%" PRIu64,
                 st->sio_bus_in);
    rc |= METRIC(b, "counter", "socketio_bus_messages_dropped_total",
                 "Socket.IO adapter messages that could not be decoded (logged).", "%" PRIu64, st->sio_bus_dropped);
    rc |= METRIC(b, "counter", "socketio_adapter_requests_total",
                 "Requests of other Socket.IO nodes (fetchSockets, emits with acks...) answered or acted on.",
                 "%" PRIu64, st->sio_requests);
    rc |= METRIC(b, "counter", "published_total", "Publishes acknowledged by Redis.", "%" PRIu64, bs->published);
    rc |= METRIC(b, "counter", "publish_failures_total", "Messages that could not be published to Redis.", "%" PRIu64,
                 bs->publish_failed);
    rc |= METRIC(b, "counter", "slow_consumers_closed_total", "Clients closed because their queue overflowed.",
                 "%" PRIu64, st->slow_consumers);
    rc |= METRIC(b, "counter", "idle_closed_total", "Clients closed after the idle timeout.", "%" PRIu64,
                 st->idle_closed);
    rc |= METRIC(b, "counter", "protocol_errors_total", "Connections failed for WebSocket protocol errors.", "%" PRIu64,
                 st->protocol_errors);
    rc |= METRIC(b, "gauge", "redis_up", "1 while the Redis link is up (0 without Redis).", "%d",
                 s->sync && sync_is_up(s->sync));
    rc |= METRIC(b, "counter", "redis_reconnects_total", "Redis links re-established.", "%" PRIu64, bs->reconnects);
    rc |= METRIC(b, "counter", "redis_errors_total", "Redis connect and protocol errors.", "%" PRIu64, bs->errors);
    return rc ? -1 : 0;
}
