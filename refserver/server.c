/* The node's listener, lifecycle, work lists and /metrics; see server.h. */
#include "refserver/server.h"

#include "common/bus.h"
#include "common/listener.h"
#include "common/log.h"
#include "common/prom.h"
#include "common/http.h"
#include "refserver/conn.h"
#include "refserver/cors.h"
#include "refserver/eiosession.h"
#include "refserver/socketio.h"
#include "refserver/sync.h"
#include "refserver/workers.h"
#include "refserver/wsroom.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCRATCH_SIZE 65536

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

/* A connection from the listener (common/listener.h), which keeps it waiting in the backlog at --max-clients. */
static void on_accept(void *ctx, int fd, int index, const struct net_addr *peer)
{
    struct server *s = ctx;
    (void)index, (void)peer;
    if (!conn_new(s, fd))
        close(fd);
    else
        s->stats.accepted++;
}

/* A failed accept (EMFILE and friends): counted; the listener pauses and warns once per episode. */
static bool on_accept_failed(void *ctx, int err)
{
    struct server *s = ctx;
    (void)err;
    s->stats.accept_errors++;
    return false;
}

static void publish_metrics(struct server *s);

/* A connection another worker read a head of ours on. */
static void on_adopt(void *ctx, int fd, const char *bytes, size_t len)
{
    conn_adopt(ctx, fd, bytes, len);
}

/* Before the loop waits: write everything queued during this iteration (one writev per client however many
 * messages it got), then free the clients that died. Frees wait until here so no callback holds a dangling pointer.
 * A worker then publishes its metrics, as they stand whenever it sleeps, for the others' /metrics. */
static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct server *s = container_of(w, struct server, flush_w);
    (void)loop, (void)revents;
    while (s->flush_list || s->eio_flush) { /* a session's answer goes out on a connection */
        eio_run_flush(s);
        conn_run_flush(s);
    }
    conn_free_dead(s);
    eio_free_dead(s);
    if (s->workers)
        publish_metrics(s);
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
    listener_stop(s->listener, false);
    if (s->workers)
        workers_stop_adopting(s->workers);
    if (s->sync)
        sync_goodbye(s->sync); /* the other nodes stop expecting our subscriptions now, not in PEERS_ALIVE s */
    for (struct conn *c = s->conns; c; c = c->next)
        conn_close(c, WS_CLOSE_GOING_AWAY, "server shutting down");
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
                             .node_id = s->cfg.bus_id,
                             .rooms = &s->rooms,
                             .deliver = wsroom_deliver, /* sync calls the applications up, with s as ctx */
                             .sio_key = s->cfg.sio_key,
                             .sio_nsps = s->cfg.sio_nsps,
                             .sio_nsp_count = s->cfg.sio_nsp_count,
                             .sio_deliver = socketio_on_bus,
                             .ctx = s};
    s->sync = sync_new(s->loop, &sc, err, errlen);
    return s->sync ? socketio_init(s, err, errlen) : -1;
}

static void init_counter_base(struct server *s);

/* ---- HTTP routes: what a connection in CONN_HTTP asks for ---- */

static bool is_method(const struct http_head *h, const char *m)
{
    return h->method_len == strlen(m) && !memcmp(h->method, m, h->method_len);
}

/* --workers: a /socket.io/ request goes to the worker holding its session; a Socket.IO POST carries packets, so its
 * whole body (up to maxPayload) is read before it is routed. */
static enum conn_head on_head(struct conn *c, const struct http_head *h, uint32_t *to)
{
    int owner = eio_sid_worker(c->srv, h);
    if (owner >= 0) {
        *to = (uint32_t)owner;
        return CONN_HAND_OVER;
    }
    return h->content_length > 0 && !h->chunked && is_method(h, "POST") && eio_is_path(h) ? CONN_READ_BODY : CONN_ROUTE;
}

static int serve_metrics(struct conn *c, bool head_only, bool close_after)
{
    struct buf body = {0};
    int rc = server_metrics(c->srv, &body) < 0
                 ? conn_respond_error(c, 503, "Service Unavailable", "out of memory", NULL)
                 : conn_respond(c, 200, "OK", NULL, "text/plain; version=0.0.4", buf_head(&body), buf_len(&body),
                                head_only, close_after);
    buf_free(&body);
    return rc;
}

/* For a balancer's check: 503 with the reason while the node is cut off from the other nodes (GET / stays 200). */
static int serve_health(struct conn *c, bool head_only, bool close_after)
{
    char why[ERR_LEN + 64], text[ERR_LEN + 80];
    if (server_health(c->srv, why, sizeof why))
        return conn_respond(c, 200, "OK", NULL, "text/plain", "ok\n", 3, head_only, close_after);
    int n = snprintf(text, sizeof text, "503 %s\n", why);
    n = n < 0 ? 0 : n >= (int)sizeof text ? (int)sizeof text - 1 : n;
    return conn_respond(c, 503, "Service Unavailable", NULL, "text/plain", text, (size_t)n, head_only, close_after);
}

/* CONN_HTTP with a complete, valid head (and body: only a Socket.IO POST has one). Returns 0 to go on reading heads
 * (keep-alive, or a held polling GET), -1 when the connection changed state or is closing. */
static int route(struct conn *c, const struct http_head *h, char *body, size_t body_len)
{
    struct server *s = c->srv;
    size_t plen = http_path_len(h->target, h->target_len);
    bool head_only = is_method(h, "HEAD");
    bool is_get = is_method(h, "GET");
    s->stats.http_requests++;
    if (cors_begin(c, h) < 0)
        return -1;
    if (eio_is_path(h) && (body || (h->content_length <= 0 && !h->chunked))) {
        if (h->minor_version == 1 && !http_find_header(h, "Host"))
            return conn_respond_error(c, 400, "Bad Request", "missing Host header", NULL);
        if (cors_is_preflight(c, h))
            return cors_preflight(c, h);
        int rc = eio_route(c, h, body, body_len);
        return rc < 0 || c->state != CONN_HTTP ? -1 : 0;
    }
    if (!is_get && !head_only)
        return conn_respond_error(c, 405, "Method Not Allowed", "only GET and HEAD", "Allow: GET, HEAD\r\n");
    if (h->content_length > 0 || h->chunked)
        return conn_respond_error(c, 400, "Bad Request", "request bodies are not accepted here", NULL);
    if (h->minor_version == 1 && !http_find_header(h, "Host"))
        return conn_respond_error(c, 400, "Bad Request", "missing Host header", NULL);
    if (plen == 3 && !memcmp(h->target, "/ws", 3) && is_get) {
        int rc = wsroom_upgrade(c, h);
        return rc < 0 || c->state != CONN_HTTP ? -1 : 0;
    }
    if (plen == 1 && h->target[0] == '/') {
        char text[NODE_ID_MAX + 16];
        int n = snprintf(text, sizeof text, "ok %s\n", s->cfg.node_id);
        return conn_respond(c, 200, "OK", NULL, "text/plain", text, (size_t)n, head_only, h->conn_close);
    }
    if (plen == 8 && !memcmp(h->target, "/metrics", 8))
        return serve_metrics(c, head_only, h->conn_close);
    if (plen == 7 && !memcmp(h->target, "/health", 7))
        return serve_health(c, head_only, h->conn_close);
    return conn_respond_error(c, 404, "Not Found", "try /ws, /socket.io/, /, /health or /metrics", NULL);
}

static const struct conn_ops http_ops = {.on_head = on_head, .on_request = route};

int server_init(struct server *s, struct ev_loop *loop, const struct server_config *cfg, struct workers *w, char *err,
                size_t errlen)
{
    *s = (struct server){.loop = loop,
                         .cfg = *cfg,
                         .lfd = -1,
                         .next_client_id = 1,
                         .workers = w,
                         .http_ops = &http_ops,
                         .eio_app = &socketio_eio_app};
    if (!s->cfg.bus_id[0])
        snprintf(s->cfg.bus_id, sizeof s->cfg.bus_id, "%s", cfg->node_id);
    if (w)
        snprintf(s->worker_header, sizeof s->worker_header, "X-Node-Worker: %u\r\n", workers_index(w));
    s->scratch.max = SCRATCH_SIZE;
    if (room_registry_init(&s->rooms, on_room_open, on_room_close, s) < 0 ||
        room_registry_init(&s->sio_rooms, NULL, NULL, NULL) < 0 || buf_reserve(&s->scratch, SCRATCH_SIZE) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->lfd = w ? workers_listen_fd(w) : net_listen(&cfg->listen, 4096, false, err, errlen);
    if (s->lfd < 0 || start_sync(s, err, errlen) < 0)
        return -1;
    if (w)
        init_counter_base(s);
    struct listener_config lc = {.who = "listener",
                                 .fds = &s->lfd,
                                 .nfds = 1,
                                 .max = cfg->max_clients,
                                 .count = &s->stats.connections,
                                 .on_accept = on_accept,
                                 .on_fail = on_accept_failed,
                                 .ctx = s};
    if (!(s->listener = listener_start(loop, &lc, err, errlen)))
        return -1;
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
    if (w)
        workers_start(w, loop, on_adopt, s); /* last: it unblocks the signals our watchers now take */
    return 0;
}

void server_free(struct server *s)
{
    conn_free_all(s); /* first: a websocket's going ends its Engine.IO session */
    eio_free_all(s);
    /* Rooms go before the bus so their close hooks find it alive. */
    room_registry_free(&s->rooms);
    room_registry_free(&s->sio_rooms);
    socketio_free(s);
    sync_free(s->sync);
    listener_free(s->listener);
    if (s->lfd >= 0)
        close(s->lfd);
    buf_free(&s->scratch);
}

/* The samples of /metrics, in the order they are printed. A worker publishes them all (workers.h); /metrics sums
 * them over the node's workers, except redis_up, which is 1 only while every worker's link is up. */
enum metric_id {
    M_CONNECTIONS = 0,
    M_WS_CLIENTS,
    M_POLLING,
    M_ROOMS,
    M_SIO_ROOMS,
    M_ACCEPTED,
    M_ACCEPT_ERRORS,
    M_HTTP_REQUESTS,
    M_HTTP_ERRORS,
    M_HANDSHAKES,
    M_MSGS_IN,
    M_MSGS_OUT,
    M_BYTES_IN,
    M_BYTES_OUT,
    M_BUS_IN,
    M_SIO_BUS_IN,
    M_SIO_BUS_DROPPED,
    M_SIO_REQUESTS,
    M_PUBLISHED,
    M_PUBLISH_FAILED,
    M_SLOW,
    M_IDLE,
    M_PROTOCOL,
    M_REDIS_UP,
    M_RECONNECTS,
    M_REDIS_ERRORS,
    M_REDIS_DOWN_SECONDS,
    M_PARTICIPANTS,
    M_PUBLISH_SHORT,
    M_PUBLISH_SHORT_MISSING,
    M_HANDED_OVER,
    M_HANDOVER_FAILED, /* --workers only */
    M_COUNT
};

_Static_assert(M_COUNT <= SERVER_METRICS_MAX && SERVER_METRICS_MAX <= WORKERS_STAT_WORDS, "metric slots");

struct metric {
    enum prom_type type;
    const char *name, *help;
};

static const struct metric metrics[M_COUNT] = {
    [M_CONNECTIONS] = {PROM_GAUGE, "connections", "Open TCP connections."},
    [M_WS_CLIENTS] = {PROM_GAUGE, "websocket_clients", "Connected WebSocket clients."},
    [M_POLLING] = {PROM_GAUGE, "socketio_polling_sessions", "Engine.IO sessions on the polling transport."},
    [M_ROOMS] = {PROM_GAUGE, "rooms", "Rooms with local members."},
    [M_SIO_ROOMS] = {PROM_GAUGE, "socketio_rooms", "Socket.IO rooms with local members (\"\" counts)."},
    [M_ACCEPTED] = {PROM_COUNTER, "connections_accepted_total", "TCP connections accepted."},
    [M_ACCEPT_ERRORS] = {PROM_COUNTER, "accept_errors_total", "Failed accept() calls."},
    [M_HTTP_REQUESTS] = {PROM_COUNTER, "http_requests_total", "HTTP request heads served."},
    [M_HTTP_ERRORS] = {PROM_COUNTER, "http_errors_total", "HTTP requests answered 4xx/5xx."},
    [M_HANDSHAKES] = {PROM_COUNTER, "websocket_handshakes_total", "Successful upgrades."},
    [M_MSGS_IN] = {PROM_COUNTER, "messages_in_total", "Messages received from local clients."},
    [M_MSGS_OUT] = {PROM_COUNTER, "messages_out_total", "Messages queued to local clients."},
    [M_BYTES_IN] = {PROM_COUNTER, "bytes_in_total", "Bytes read from clients."},
    [M_BYTES_OUT] = {PROM_COUNTER, "bytes_out_total", "Bytes written to clients."},
    [M_BUS_IN] = {PROM_COUNTER, "bus_messages_in_total", "Messages from other nodes delivered to local rooms."},
    [M_SIO_BUS_IN] = {PROM_COUNTER, "socketio_bus_messages_in_total",
                      "Socket.IO broadcasts from other nodes (refserver or Node.js) delivered to local sockets."},
    [M_SIO_BUS_DROPPED] = {PROM_COUNTER, "socketio_bus_messages_dropped_total",
                           "Socket.IO adapter messages that could not be decoded (logged)."},
    [M_SIO_REQUESTS] = {PROM_COUNTER, "socketio_adapter_requests_total",
                        "Requests of other Socket.IO nodes (fetchSockets, emits with acks...) answered or acted on."},
    [M_PUBLISHED] = {PROM_COUNTER, "published_total", "Publishes acknowledged by Redis."},
    [M_PUBLISH_FAILED] = {PROM_COUNTER, "publish_failures_total", "Messages that could not be published to Redis."},
    [M_SLOW] = {PROM_COUNTER, "slow_consumers_closed_total", "Clients closed because their queue overflowed."},
    [M_IDLE] = {PROM_COUNTER, "idle_closed_total", "Clients closed after the idle timeout."},
    [M_PROTOCOL] = {PROM_COUNTER, "protocol_errors_total", "Connections failed for WebSocket protocol errors."},
    [M_REDIS_UP] = {PROM_GAUGE, "redis_up", "1 while the Redis link is up (0 without Redis)."},
    [M_RECONNECTS] = {PROM_COUNTER, "redis_reconnects_total", "Redis links re-established."},
    [M_REDIS_ERRORS] = {PROM_COUNTER, "redis_errors_total", "Redis connect and protocol errors."},
    [M_REDIS_DOWN_SECONDS] = {PROM_GAUGE, "redis_down_seconds",
                              "Seconds since the Redis link went down (the longest of the workers'); 0 while up."},
    [M_PARTICIPANTS] = {PROM_GAUGE, "bus_participants",
                        "Participants (nodes, or workers) heard on the heartbeat channel in the last 3 s, this one "
                        "included (the most any worker hears); 0 while the link is down."},
    [M_PUBLISH_SHORT] = {PROM_COUNTER, "publish_short_total",
                         "Publishes Redis delivered to fewer participants than were alive and held the channel."},
    [M_PUBLISH_SHORT_MISSING] = {PROM_COUNTER, "publish_short_receivers_total",
                                 "Participants those short publishes missed, summed."},
    [M_HANDED_OVER] = {PROM_COUNTER, "connections_handed_over_total",
                       "Connections passed to the worker holding their Engine.IO session (--workers)."},
    [M_HANDOVER_FAILED] = {PROM_COUNTER, "handover_failures_total",
                           "Connections closed because they could not be passed to their session's worker."},
};

/* This process's samples (a worker's counters from its start only). */
static void collect(const struct server *s, uint64_t *v)
{
    const struct server_stats *st = &s->stats;
    const struct bus_stats *bs = s->sync ? sync_bus_stats(s->sync) : &(struct bus_stats){0};
    struct sync_stats ss = {0};
    if (s->sync)
        sync_get_stats(s->sync, &ss);
    v[M_CONNECTIONS] = st->connections;
    v[M_WS_CLIENTS] = st->ws_clients;
    v[M_POLLING] = st->polling_sessions;
    v[M_ROOMS] = s->rooms.nrooms;
    v[M_SIO_ROOMS] = s->sio_rooms.nrooms;
    v[M_ACCEPTED] = st->accepted;
    v[M_ACCEPT_ERRORS] = st->accept_errors;
    v[M_HTTP_REQUESTS] = st->http_requests;
    v[M_HTTP_ERRORS] = st->http_errors;
    v[M_HANDSHAKES] = st->handshakes;
    v[M_MSGS_IN] = st->msgs_in;
    v[M_MSGS_OUT] = st->msgs_out;
    v[M_BYTES_IN] = st->bytes_in;
    v[M_BYTES_OUT] = st->bytes_out;
    v[M_BUS_IN] = st->bus_msgs_in;
    v[M_SIO_BUS_IN] = st->sio_bus_in;
    v[M_SIO_BUS_DROPPED] = st->sio_bus_dropped;
    v[M_SIO_REQUESTS] = st->sio_requests;
    v[M_PUBLISHED] = bs->published;
    v[M_PUBLISH_FAILED] = bs->publish_failed;
    v[M_SLOW] = st->slow_consumers;
    v[M_IDLE] = st->idle_closed;
    v[M_PROTOCOL] = st->protocol_errors;
    v[M_REDIS_UP] = s->sync && sync_is_up(s->sync);
    v[M_RECONNECTS] = bs->reconnects;
    v[M_REDIS_ERRORS] = bs->errors;
    v[M_REDIS_DOWN_SECONDS] = (uint64_t)ss.down_seconds;
    v[M_PARTICIPANTS] = ss.participants;
    v[M_PUBLISH_SHORT] = ss.short_publishes;
    v[M_PUBLISH_SHORT_MISSING] = ss.short_receivers;
    v[M_HANDED_OVER] = st->handed_over;
    v[M_HANDOVER_FAILED] = st->handover_failed;
}

static bool is_counter(enum metric_id m)
{
    return metrics[m].type == PROM_COUNTER;
}

/* A worker's samples as the node counts them: its counters go on from where its predecessors' stopped. */
static void collect_worker(const struct server *s, uint64_t *v)
{
    collect(s, v);
    for (int m = 0; m < M_COUNT; m++)
        v[m] += s->counter_base[m];
}

/* A worker restarted in a slot: the counters its predecessor published are its base (the gauges died with it). */
static void init_counter_base(struct server *s)
{
    workers_read(s->workers, workers_index(s->workers), s->counter_base, M_COUNT);
    for (int m = 0; m < M_COUNT; m++)
        if (!is_counter((enum metric_id)m))
            s->counter_base[m] = 0;
}

static void publish_metrics(struct server *s)
{
    uint64_t v[M_COUNT];
    collect_worker(s, v);
    workers_publish(s->workers, v, M_COUNT);
}

/* The node's samples: this process's, plus every other worker's as it last published them. */
static void aggregate(const struct server *s, uint64_t *v)
{
    if (!s->workers) {
        collect(s, v);
        return;
    }
    collect_worker(s, v);
    for (uint32_t i = 0; i < workers_count(s->workers); i++) {
        uint64_t o[M_COUNT];
        if (i == workers_index(s->workers))
            continue;
        workers_read(s->workers, i, o, M_COUNT);
        for (int m = 0; m < M_COUNT; m++)
            v[m] = m == M_REDIS_UP                                    ? (v[m] && o[m])
                   : m == M_REDIS_DOWN_SECONDS || m == M_PARTICIPANTS ? (v[m] > o[m] ? v[m] : o[m])
                                                                      : v[m] + o[m];
    }
}

bool server_health(const struct server *s, char *why, size_t why_len)
{
    if (!s->sync)
        return true;
    if (!sync_health(s->sync, why, why_len))
        return false;
    for (uint32_t i = 0; s->workers && i < workers_count(s->workers); i++) {
        uint64_t o[M_COUNT];
        if (i == workers_index(s->workers))
            continue;
        workers_read(s->workers, i, o, M_COUNT);
        if (!o[M_REDIS_UP]) {
            snprintf(why, why_len, "worker %" PRIu32 ": redis unreachable for %" PRIu64 " s (see its log)", i,
                     o[M_REDIS_DOWN_SECONDS]);
            return false;
        }
    }
    return true;
}

int server_metrics(const struct server *s, struct buf *b)
{
    uint64_t v[M_COUNT];
    char name[96];
    struct prom p;
    prom_init(&p, b);
    aggregate(s, v);
    for (int m = 0; m < M_COUNT; m++) {
        const struct metric *d = &metrics[m];
        if (m >= M_HANDED_OVER && !s->workers)
            continue;
        snprintf(name, sizeof name, "refserver_%s", d->name);
        prom_scalar(&p, d->type, name, d->help, v[m]);
    }
    return prom_error(&p);
}
