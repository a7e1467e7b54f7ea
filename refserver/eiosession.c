/* Engine.IO sessions: handshakes, the sid table, polling, the upgrade, pings; see eiosession.h. */
#include "refserver/eiosession.h"

#include "common/http.h"
#include "common/log.h"
#include "refserver/conn.h"
#include "refserver/server.h"
#include "refserver/workers.h"

#include <inttypes.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#define WRITE_IOV 64
/* Seconds from a websocket's 101 (with a sid) to its "5" (engine.io's upgradeTimeout); sessions allowed when
 * --max-clients is 0; the most sid table buckets. */
#define SIO_UPGRADE_TIMEOUT 10.0
#define SIO_MAX_SESSIONS    100000
#define SIO_MAX_SID_BUCKETS (1u << 20)
/* Seconds a session whose client POSTed a close waits for a GET that crossed the POST on the way (below). */
#define SIO_CLOSE_GRACE 1.0

/* A session opened by a polling handshake (EIO_FL_POLLED), and what polling needs. */
struct eio_polled {
    struct eio_session s;
    struct eio_session *sid_next; /* the sid table's chain */
    struct conn *held;            /* the GET waiting for packets, or NULL */
    struct slice_queue queue;     /* frames owed to the client, answered without their WebSocket header */
    ev_timer timer;               /* while polling: the ping schedule, the connect deadline, a close's grace */
};

/* The polling part of s, which must have EIO_FL_POLLED. */
#define P(s) ((struct eio_polled *)(void *)(s))

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void end(struct eio_session *s);

static const struct eio_app *app(const struct eio_session *s)
{
    return s->srv->eio_app;
}

static bool polling(const struct eio_session *s)
{
    return s->state == EIO_POLLING || s->state == EIO_PROBED;
}

static void schedule_flush(struct eio_session *s)
{
    if (s->flags & EIO_FL_FLUSH)
        return;
    s->flags |= EIO_FL_FLUSH;
    s->next_work = s->srv->eio_flush;
    s->srv->eio_flush = s;
}

/* On a websocket, the connection's timer is the session's; polling, the session's own. */
static void arm_timer(struct eio_session *s, double seconds)
{
    if (s->state == EIO_WEBSOCKET) {
        if (s->ws)
            conn_arm_timer(s->ws, seconds);
        return;
    }
    if (!(s->flags & EIO_FL_POLLED)) /* defensive: a websocket's session is EIO_WEBSOCKET until it is ended */
        return;
    ev_timer_stop(s->srv->loop, &P(s)->timer);
    ev_timer_set(&P(s)->timer, seconds, 0);
    ev_timer_start(s->srv->loop, &P(s)->timer);
}

/* The ping schedule wants the timer in seconds; until a CONNECT came, the connect deadline may come first
 * (socket.io's connectTimeout). */
static void sio_arm(struct eio_session *s, double seconds)
{
    ev_tstamp now = ev_now(s->srv->loop);
    s->due = now + seconds;
    if (s->connect_by && s->connect_by - now < seconds)
        seconds = s->connect_by > now ? s->connect_by - now : 0;
    arm_timer(s, seconds);
}

/* A new sid; a worker's names it (workers.h), so every request of the session can be brought to it. */
static void new_sid(const struct server *srv, char out[EIO_ID_LEN + 1])
{
    uint8_t rnd[EIO_ID_RANDOM] = {0};
    RAND_bytes(rnd, sizeof rnd);
    eio_make_id(rnd, out);
    if (srv->workers)
        workers_sid_mark(out, workers_index(srv->workers));
}

/* A session in EIO_POLLING (polled: with the polling fields) or, without them, to be opened on a websocket. */
static struct eio_session *session_new(struct server *srv, uint64_t id, bool polled)
{
    struct eio_session *s = polled ? calloc(1, sizeof(struct eio_polled)) : calloc(1, sizeof(struct eio_session));
    if (!s)
        return NULL;
    s->srv = srv;
    s->id = id;
    if (polled) {
        s->flags = EIO_FL_POLLED;
        ev_init(&P(s)->timer, on_timer);
    }
    return s;
}

static void session_free(struct eio_session *s)
{
    app(s)->on_free(s);
    if (s->flags & EIO_FL_POLLED)
        sq_free(&P(s)->queue);
    free(s);
}

/* ---- Output ---- */

bool eio_open(const struct eio_session *s)
{
    if (s->state == EIO_WEBSOCKET)
        return s->ws && s->ws->state == CONN_WS;
    return s->state != EIO_CLOSED;
}

/* Polling: queue f for the next GET. 0, or -1 when memory ran out (the session then ends). */
static int queue(struct eio_session *s, struct slice *f)
{
    if (sq_push(&P(s)->queue, f) < 0) {
        LOG_ERR("client %" PRIu64 ": out of memory queueing output", s->id);
        end(s);
        return -1;
    }
    schedule_flush(s);
    return 0;
}

bool eio_offer(struct eio_session *s, struct slice *const *frames, size_t n)
{
    if (s->state == EIO_WEBSOCKET)
        return s->ws && conn_offer(s->ws, frames, n);
    if (s->state == EIO_CLOSED)
        return false;
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += frames[i]->len;
    /* As conn_offer: a poller that does not come for its packets is closed rather than allowed to hold memory. */
    if (P(s)->queue.bytes && P(s)->queue.bytes + len > s->srv->cfg.max_queue) {
        s->srv->stats.slow_consumers++;
        sq_drop_unstarted(&P(s)->queue);
        end(s);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (queue(s, frames[i]) < 0)
            return false;
    return true;
}

int eio_send(struct eio_session *s, uint8_t opcode, const void *p, size_t len)
{
    if (s->state == EIO_WEBSOCKET)
        return s->ws ? conn_send(s->ws, opcode, p, len) : -1;
    if (s->state == EIO_CLOSED)
        return -1;
    struct slice *f = ws_frame_slice(opcode, p, len);
    if (!f) {
        end(s);
        return -1;
    }
    int rc = queue(s, f);
    slice_unref(f);
    return rc;
}

int eio_ws_ping(struct eio_session *s)
{
    return s->state == EIO_WEBSOCKET && s->ws ? conn_send(s->ws, WS_OP_PING, "", 0) : -1;
}

void eio_connected(struct eio_session *s)
{
    s->connect_by = 0;
}

/* Close s's transport: in EIO_WEBSOCKET its connection goes to CONN_CLOSING with code (no_reply: without waiting for
 * the peer's close); polling states go to EIO_CLOSED. */
static void drop(struct eio_session *s, uint16_t code, const char *reason, bool no_reply)
{
    if (s->state == EIO_WEBSOCKET && s->ws)
        conn_start_closing(s->ws, code, reason, no_reply);
    else
        end(s);
}

void eio_fail(struct eio_session *s, const char *why)
{
    s->srv->stats.protocol_errors++;
    LOG_DEBUG("client %" PRIu64 ": Socket.IO: %s; closing", s->id, why);
    drop(s, WS_CLOSE_PROTOCOL, why, true);
}

void eio_close(struct eio_session *s)
{
    if (s->state == EIO_WEBSOCKET) {
        if (s->ws)
            conn_close(s->ws, WS_CLOSE_NO_STATUS, NULL);
        return;
    }
    if (s->state == EIO_CLOSED || s->flags & EIO_FL_CLOSING || eio_send(s, WS_OP_TEXT, "1", 1) < 0)
        return;
    s->flags |= EIO_FL_CLOSING;
}

/* ---- Input: Engine.IO packets in text frames or POSTed ---- */

/* The client POSTed a close packet: as engine.io's polling transport, a held GET is released with a noop, then the
 * session ends (poll_flush, once the loop's callbacks have run, since libev runs a wake-up's newest first). A client
 * may send its GET and the close together, on two connections, and the GET may come second: held or not when the
 * POST came, the client's GET was pending, so one that arrives within SIO_CLOSE_GRACE gets the noop too. */
static void close_asked(struct eio_session *s)
{
    s->flags |= EIO_FL_CLOSE_ASKED;
    sq_drop_unstarted(&P(s)->queue);
    schedule_flush(s);
}

/* One Engine.IO packet (a binary message: an attachment's bytes) from s's client, on its transport. Entered in
 * EIO_POLLING or EIO_PROBED (POSTed) or EIO_WEBSOCKET (a frame); may leave s EIO_CLOSED (a polling session that
 * failed) or with its websocket closing. */
static void on_packet(struct eio_session *s, uint8_t opcode, uint8_t *data, size_t len)
{
    struct eio_packet pk;
    if (opcode != WS_OP_TEXT) {
        app(s)->on_binary(s, data, len);
        return;
    }
    if (eio_decode((const char *)data, len, true, &pk) < 0) {
        eio_fail(s, "malformed packet");
        return;
    }
    switch (pk.eio) {
    case EIO_MESSAGE: app(s)->on_packet(s, &pk); return;
    case EIO_PONG:
        if (s->flags & EIO_FL_PINGED) {
            s->flags &= (uint8_t)~EIO_FL_PINGED;
            sio_arm(s, s->srv->cfg.sio_ping_interval);
        }
        return;
    case EIO_NOOP: return;
    case EIO_CLOSE:
        if (s->state == EIO_WEBSOCKET)
            drop(s, WS_CLOSE_NORMAL, "", false);
        else
            close_asked(s);
        return;
    case EIO_PING: eio_fail(s, "ping from the client (in Engine.IO v4 the server pings)"); return;
    default: eio_fail(s, "unexpected Engine.IO packet type"); return;
    }
}

/* The session's timer fired. A polling session whose client closed: ended, as no GET came in the grace. No CONNECT
 * in time: closed. Otherwise, when the ping schedule is due: a ping, or, when the last one went unanswered, the close
 * ("ping timeout"). Any state but EIO_CLOSED (the timer stops there). */
static void tick(struct eio_session *s)
{
    ev_tstamp now = ev_now(s->srv->loop);
    if (s->flags & EIO_FL_CLOSE_ASKED) { /* no GET came in the grace after the client's close */
        end(s);
        return;
    }
    if (!eio_open(s)) /* a closing websocket: its connection's close timeout rules */
        return;
    if (s->connect_by && now >= s->connect_by - 1e-3) {
        s->srv->stats.idle_closed++;
        drop(s, WS_CLOSE_GOING_AWAY, "no namespace CONNECT in time", true);
        return;
    }
    if (now < s->due - 1e-3) { /* woken for the connect deadline, which a CONNECT has since met */
        arm_timer(s, s->due - now);
        return;
    }
    if (s->flags & EIO_FL_PINGED) {
        s->srv->stats.idle_closed++;
        drop(s, WS_CLOSE_GOING_AWAY, "ping timeout", true);
        return;
    }
    s->flags |= EIO_FL_PINGED;
    app(s)->release(s); /* the auth event goes before the ping, as in Node */
    eio_send(s, WS_OP_TEXT, "2", 1);
    sio_arm(s, s->srv->cfg.sio_ping_timeout);
}

/* A polling session's own timer. */
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    tick(&container_of(w, struct eio_polled, timer)->s);
}

/* ---- The sid table ---- */

static uint32_t sid_hash(const char *sid)
{
    uint32_t h = 2166136261u; /* FNV-1a: the sids are random already */
    for (size_t i = 0; i < EIO_ID_LEN; i++)
        h = (h ^ (uint8_t)sid[i]) * 16777619u;
    return h;
}

static uint32_t max_sessions(const struct server *srv)
{
    return srv->cfg.max_clients ? srv->cfg.max_clients : SIO_MAX_SESSIONS;
}

static int sid_table_init(struct server *srv)
{
    if (srv->sids)
        return 0;
    uint32_t n = 1024;
    while (n < max_sessions(srv) && n < SIO_MAX_SID_BUCKETS)
        n <<= 1;
    srv->sids = calloc(n, sizeof *srv->sids);
    if (!srv->sids)
        return -1;
    srv->sid_buckets = n;
    return 0;
}

static struct eio_session *sid_find(const struct server *srv, const char *sid)
{
    if (!srv->sids || strlen(sid) != EIO_ID_LEN)
        return NULL;
    for (struct eio_session *p = srv->sids[sid_hash(sid) & (srv->sid_buckets - 1)]; p; p = P(p)->sid_next)
        if (!memcmp(p->sid, sid, EIO_ID_LEN))
            return p;
    return NULL;
}

static void sid_insert(struct server *srv, struct eio_session *s)
{
    uint32_t b = sid_hash(s->sid) & (srv->sid_buckets - 1);
    P(s)->sid_next = srv->sids[b];
    srv->sids[b] = s;
}

static void sid_remove(struct server *srv, struct eio_session *s)
{
    if (!srv->sids)
        return;
    struct eio_session **pp = &srv->sids[sid_hash(s->sid) & (srv->sid_buckets - 1)];
    while (*pp && *pp != s)
        pp = &P(*pp)->sid_next;
    if (*pp)
        *pp = P(s)->sid_next;
    P(s)->sid_next = NULL;
}

/* ---- Polling ---- */

/* One queued frame as a polling payload item: a text frame's payload as it is, a binary one as "b" + base64. */
static int poll_item(struct buf *body, const char *frame, size_t len)
{
    size_t hl = ws_frame_header_len((const uint8_t *)frame);
    if (((uint8_t)frame[0] & 0x0f) != WS_OP_BINARY)
        return buf_append(body, frame + hl, len - hl);
    size_t raw = len - hl, cap = 1 + 4 * ((raw + 2) / 3) + 1, n;
    if (buf_reserve(body, cap) < 0 || !(n = eio_encode_binary(buf_tail(body), cap, frame + hl, raw)))
        return -1;
    buf_commit(body, n);
    return 0;
}

/* The queued frames without their WebSocket headers, joined by \x1e, into body (consumed from the queue). */
static void poll_payload(struct eio_session *s, struct buf *body)
{
    struct iovec iov[WRITE_IOV];
    while (P(s)->queue.count) {
        int n = sq_iov(&P(s)->queue, iov, WRITE_IOV);
        size_t done = 0;
        for (int i = 0; i < n; i++) {
            if ((buf_len(body) && buf_append(body, "\x1e", 1) < 0) ||
                poll_item(body, iov[i].iov_base, iov[i].iov_len) < 0) {
                LOG_ERR("session %s: out of memory answering a poll", s->sid);
                sq_free(&P(s)->queue);
                return;
            }
            done += iov[i].iov_len;
        }
        sq_consume(&P(s)->queue, done);
    }
}

/* The held GET's connection, any state -> CONN_CLOSED: the session holds no GET. */
static void held_gone(struct conn *c)
{
    struct eio_session *s = c->owner;
    P(s)->held = NULL;
}

static const struct conn_ops held_ops = {.on_gone = held_gone};

/* Any state with a held GET: answer it with only (a noop or close packet) when given, else with every queued packet.
 * The connection goes back to the HTTP routes (CONN_HTTP, or CONN_CLOSING on failure); s is left without a GET, or
 * EIO_CLOSED when the close packet was the last it owed. */
static void poll_answer(struct eio_session *s, const char *only)
{
    struct conn *c = P(s)->held;
    struct buf body = {0};
    P(s)->held = NULL;
    c->flags &= (uint8_t)~CONN_FL_HELD;
    conn_set_owner(c, NULL, NULL);
    if (only)
        buf_append(&body, only, strlen(only));
    else
        poll_payload(s, &body);
    if (conn_respond(c, 200, "OK", NULL, "text/plain; charset=UTF-8", buf_head(&body), buf_len(&body), false, false) ==
        0)
        conn_arm_timer(c, c->srv->cfg.handshake_timeout);
    buf_free(&body);
    if (s->flags & EIO_FL_CLOSING && !P(s)->queue.count)
        end(s); /* the close packet went last */
}

/* Before the loop waits: a held GET gets what is owed, or a noop once probed; a session whose client POSTed a close
 * ends. Polling states only. */
static void poll_flush(struct eio_session *s)
{
    if (!polling(s))
        return;
    if (s->flags & EIO_FL_CLOSE_ASKED) {
        if (!P(s)->held) {
            arm_timer(s, SIO_CLOSE_GRACE); /* on_timer ends it */
            return;
        }
        poll_answer(s, "6");
        end(s);
        return;
    }
    if (!P(s)->held)
        return;
    if (s->state == EIO_PROBED)
        poll_answer(s, "6");
    else if (P(s)->queue.count)
        poll_answer(s, NULL);
}

/* Any state -> EIO_CLOSED (close packet, protocol error, ping timeout, slow poller, its websocket gone): a held GET
 * gets the close packet, a websocket still probing is closed, and the session is freed before the loop next waits. */
static void end(struct eio_session *s)
{
    struct server *srv = s->srv;
    if (s->state == EIO_CLOSED)
        return;
    bool was_polling = polling(s), polled = s->flags & EIO_FL_POLLED;
    s->state = EIO_CLOSED;
    if (polled)
        sq_drop_unstarted(&P(s)->queue);
    if (polled && P(s)->held)
        poll_answer(s, "1");
    if (s->ws) {
        struct conn *ws = s->ws;
        s->ws = NULL;
        conn_set_owner(ws, NULL, NULL);
        if (was_polling)
            conn_start_closing(ws, WS_CLOSE_GOING_AWAY, "session closed", true);
    }
    if (was_polling)
        srv->stats.polling_sessions--;
    if (polled) {
        ev_timer_stop(srv->loop, &P(s)->timer);
        sid_remove(srv, s);
    }
    room_leave(&srv->sio_rooms, &s->member);
    s->next_work = srv->eio_dead;
    srv->eio_dead = s;
}

/* An Engine.IO handshake error: 400 with the JSON body engine.io sends. */
static int sio_error(struct conn *c, int code, const char *message)
{
    char body[96];
    int n = snprintf(body, sizeof body, "{\"code\":%d,\"message\":\"%s\"}", code, message);
    return conn_respond(c, 400, "Bad Request", NULL, "application/json", body, (size_t)n, false, true);
}

/* The session's room (the handshake's room=, else the namespace-wide room ""): joined; the application's state
 * opened from handshake h on c. 0, or -1 with a 4xx/503 queued on c (s untouched but for its fields). */
static int open_session(struct eio_session *s, struct conn *c, const struct http_head *h)
{
    char room[ROOM_NAME_MAX + 1];
    int room_len = room_param(h->target, h->target_len, "", room);
    if (room_len < 0)
        return conn_respond_error(c, 400, "Bad Request", "bad room name (1-128 visible ASCII characters)", NULL);
    if (app(s)->on_open(s, c->fd, h) < 0)
        return conn_respond_error(c, 503, "Service Unavailable", "out of memory", NULL);
    if (room_join(&s->srv->sio_rooms, &s->member, room, (size_t)room_len) < 0) {
        app(s)->on_free(s);
        return conn_respond_error(c, 503, "Service Unavailable", "out of memory", NULL);
    }
    s->connect_by = ev_now(s->srv->loop) + s->srv->cfg.sio_connect_timeout;
    sio_arm(s, s->srv->cfg.sio_ping_interval);
    return 0;
}

static size_t open_packet(const struct eio_session *s, char pkt[EIO_OPEN_MAX], bool polling_transport)
{
    const struct server_config *cfg = &s->srv->cfg;
    return eio_open_packet(pkt, s->sid, (uint32_t)(cfg->sio_ping_interval * 1000 + 0.5),
                           (uint32_t)(cfg->sio_ping_timeout * 1000 + 0.5), cfg->max_message, polling_transport);
}

/* GET without sid: a new session in EIO_POLLING, answered with the open packet (and the sticky cookie if asked). */
static int poll_open(struct conn *c, const struct http_head *h)
{
    struct server *srv = c->srv;
    char room[ROOM_NAME_MAX + 1], pkt[EIO_OPEN_MAX], extra[160] = "";
    if (room_param(h->target, h->target_len, "", room) < 0)
        return conn_respond_error(c, 400, "Bad Request", "bad room name (1-128 visible ASCII characters)", NULL);
    if (srv->stats.polling_sessions >= max_sessions(srv))
        return conn_respond_error(c, 503, "Service Unavailable", "too many polling sessions", NULL);
    struct eio_session *s = sid_table_init(srv) == 0 ? session_new(srv, srv->next_client_id++, true) : NULL;
    if (!s)
        return conn_respond_error(c, 503, "Service Unavailable", "out of memory", NULL);
    do
        new_sid(srv, s->sid);
    while (sid_find(srv, s->sid));
    if (open_session(s, c, h) < 0) {
        free(s);
        return -1;
    }
    sid_insert(srv, s);
    srv->stats.polling_sessions++;
    size_t n = open_packet(s, pkt, true);
    if (srv->cfg.sio_cookie)
        snprintf(extra, sizeof extra, "Set-Cookie: %s=%s; Path=/; HttpOnly; SameSite=Lax\r\n", srv->cfg.sio_cookie,
                 s->sid);
    return conn_respond(c, 200, "OK", extra, "text/plain; charset=UTF-8", pkt, n, false, h->conn_close);
}

/* GET with a sid: held (c: CONN_HTTP with CONN_FL_HELD, owned by s) and answered when packets are owed (at once if
 * some already are). A second GET meanwhile is a protocol error that ends the session. */
static int poll_get(struct conn *c, struct eio_session *s)
{
    if (P(s)->held) {
        c->srv->stats.protocol_errors++;
        LOG_DEBUG("session %s: overlapping GET; closing", s->sid);
        int rc = sio_error(c, 3, "Bad request");
        end(s);
        return rc;
    }
    c->flags |= CONN_FL_HELD;
    conn_set_owner(c, &held_ops, s);
    P(s)->held = c;
    if (P(s)->queue.count || s->state == EIO_PROBED || (s->flags & EIO_FL_CLOSE_ASKED))
        schedule_flush(s);
    return 0;
}

/* POST with a sid, s polling (EIO_POLLING or EIO_PROBED): each packet of the payload as if it came in a frame of its
 * own, until s leaves the polling states; then "ok". */
static int poll_post(struct conn *c, struct eio_session *s, const struct http_head *h, char *body, size_t len)
{
    struct eio_item it;
    size_t off = 0;
    int rc = 1;
    /* An empty item (-1) goes on as the empty packet it is, which on_packet refuses; nothing follows it. */
    while (rc == 1 && polling(s) && !(s->flags & EIO_FL_CLOSE_ASKED) &&
           (rc = eio_payload_next(body, len, &off, &it)) != 0) {
        char *item = (char *)(uintptr_t)it.text.p;
        size_t plen = it.text.len;
        if (it.binary) {
            long n = eio_decode_binary(item, plen);
            if (n < 0) {
                eio_fail(s, "bad base64 in a polling payload");
                break;
            }
            on_packet(s, WS_OP_BINARY, (uint8_t *)item, (size_t)n);
        } else {
            on_packet(s, WS_OP_TEXT, (uint8_t *)item, plen);
        }
    }
    return conn_respond(c, 200, "OK", NULL, "text/html", "ok", 2, false, h->conn_close);
}

/* ---- The websocket transport and the upgrade ---- */

/* EIO_PROBED -> EIO_WEBSOCKET on the probing websocket's "5": the held GET gets a noop, and what the poller was owed
 * goes over the websocket, in order (the same frames, shared). The session keeps its room, its sid and its
 * application state: only the transport changes. */
static void upgrade_commit(struct eio_session *s, struct conn *ws)
{
    struct server *srv = s->srv;
    struct iovec iov[WRITE_IOV];
    srv->stats.ws_clients++;
    srv->stats.polling_sessions--;
    if (P(s)->held)
        poll_answer(s, "6");
    if (s->state == EIO_CLOSED) /* that answer was the last a closing session owed */
        return;
    s->state = EIO_WEBSOCKET;
    s->flags &= (uint8_t)~EIO_FL_PINGED;
    ev_timer_stop(srv->loop, &P(s)->timer); /* the websocket's timer takes over the ping schedule (sio_arm below) */
    while (P(s)->queue.count) {
        int n = sq_iov(&P(s)->queue, iov, WRITE_IOV);
        size_t done = 0;
        for (int i = 0; i < n; i++) {
            struct slice *f = (struct slice *)(void *)((char *)iov[i].iov_base - offsetof(struct slice, data));
            if (conn_queue(ws, f) < 0)
                return;
            done += iov[i].iov_len;
        }
        sq_consume(&P(s)->queue, done);
    }
    sq_free(&P(s)->queue);
    sio_arm(s, srv->cfg.sio_ping_interval);
}

/* EIO_POLLING or EIO_PROBED, a message on the upgrading websocket: 2probe is answered 3probe (and the held GET a
 * noop so the client can pause polling): EIO_PROBED; 5 commits the upgrade. Anything else fails the websocket, and
 * the session goes on polling. */
static void probe(struct eio_session *s, struct conn *ws, const uint8_t *data, size_t len)
{
    if (len == 6 && !memcmp(data, "2probe", 6)) {
        conn_send(ws, WS_OP_TEXT, "3probe", 6);
        s->state = EIO_PROBED;
        if (P(s)->held)
            schedule_flush(s);
        return;
    }
    if (len != 1 || data[0] != '5' || s->state != EIO_PROBED) {
        conn_fail(ws, "Socket.IO: unexpected packet during the upgrade");
        return;
    }
    upgrade_commit(s, ws);
}

/* CONN_WS: a message on a session's websocket (its transport, or upgrading to it). */
static void ws_message(struct conn *c, uint8_t opcode, uint8_t *data, size_t len)
{
    struct eio_session *s = c->owner;
    if (s->state != EIO_WEBSOCKET)
        probe(s, c, data, len);
    else
        on_packet(s, opcode, data, len);
}

/* CONN_WS: the client read what came before our WebSocket ping. */
static void ws_pong(struct conn *c)
{
    struct eio_session *s = c->owner;
    if (s->state == EIO_WEBSOCKET)
        app(s)->release(s);
}

/* CONN_WS: the transport's timer is the session's; an upgrading websocket's is its deadline. */
static void ws_timer(struct conn *c)
{
    struct eio_session *s = c->owner;
    if (s->state == EIO_WEBSOCKET)
        tick(s);
    else
        conn_fail(c, "Socket.IO: upgrade not completed in time");
}

/* The websocket goes: the transport's session ends; a failed probe leaves its session polling (EIO_POLLING). */
static void ws_gone(struct conn *c)
{
    struct eio_session *s = c->owner;
    s->ws = NULL;
    if (s->state != EIO_WEBSOCKET) {
        s->state = EIO_POLLING;
        return;
    }
    s->srv->stats.ws_clients--;
    end(s);
}

static const struct conn_ops ws_ops = {
    .on_message = ws_message, .on_pong = ws_pong, .on_timer = ws_timer, .on_gone = ws_gone};

/* CONN_HTTP -> CONN_WS: a websocket handshake without a sid opens a session in EIO_WEBSOCKET (101, then the open
 * packet); or closing after 4xx/503. */
static int ws_open(struct conn *c, const struct http_head *h)
{
    struct server *srv = c->srv;
    char accept[WS_ACCEPT_LEN + 1], pkt[EIO_OPEN_MAX];
    if (conn_check_upgrade(c, h, accept) < 0)
        return -1;
    struct eio_session *s = session_new(srv, c->id, false);
    if (!s)
        return conn_respond_error(c, 503, "Service Unavailable", "out of memory", NULL);
    new_sid(srv, s->sid);
    s->state = EIO_WEBSOCKET; /* before open_session, which starts the ping schedule on c's timer */
    s->ws = c;
    if (open_session(s, c, h) < 0) {
        free(s);
        return -1;
    }
    srv->stats.ws_clients++;
    conn_set_owner(c, &ws_ops, s);
    if (conn_switch_protocols(c, accept) < 0)
        return -1;
    return eio_send(s, WS_OP_TEXT, pkt, open_packet(s, pkt, false));
}

/* CONN_HTTP -> CONN_WS: a websocket for polling session s, which waits for 2probe and 5 (probe) within
 * SIO_UPGRADE_TIMEOUT; or closing after 4xx. */
static int ws_upgrade(struct conn *c, const struct http_head *h, struct eio_session *s)
{
    char accept[WS_ACCEPT_LEN + 1], room[ROOM_NAME_MAX + 1];
    if (conn_check_upgrade(c, h, accept) < 0)
        return -1;
    if (room_param(h->target, h->target_len, "", room) < 0)
        return conn_respond_error(c, 400, "Bad Request", "bad room name (1-128 visible ASCII characters)", NULL);
    s->ws = c;
    conn_set_owner(c, &ws_ops, s);
    conn_arm_timer(c, SIO_UPGRADE_TIMEOUT);
    return conn_switch_protocols(c, accept);
}

/* A websocket for a sid that has upgraded already, or is upgrading: engine.io (onWebSocket) accepts it and closes
 * it at once, so its client sees a close rather than a handshake error. Next: CONN_CLOSING, or closing after 4xx. */
static int ws_refuse(struct conn *c, const struct http_head *h)
{
    char accept[WS_ACCEPT_LEN + 1];
    if (conn_check_upgrade(c, h, accept) < 0 || conn_switch_protocols(c, accept) < 0)
        return -1;
    conn_start_closing(c, WS_CLOSE_NO_STATUS, NULL, false);
    return -1;
}

/* ---- Routing ---- */

bool eio_is_path(const struct http_head *h)
{
    size_t plen = http_path_len(h->target, h->target_len);
    return (plen == 11 && !memcmp(h->target, "/socket.io/", 11)) ||
           (plen == 10 && !memcmp(h->target, "/socket.io", 10));
}

static bool is_method(const struct http_head *h, const char *m)
{
    return h->method_len == strlen(m) && !memcmp(h->method, m, h->method_len);
}

int eio_sid_worker(const struct server *srv, const struct http_head *h)
{
    char sid[EIO_ID_LEN + 8];
    if (!srv->workers || !eio_is_path(h) || http_query_param(h->target, h->target_len, "sid", sid, sizeof sid) <= 0)
        return -1;
    int owner = workers_sid_owner(sid, strlen(sid), workers_count(srv->workers));
    return owner == (int)workers_index(srv->workers) ? -1 : owner;
}

int eio_route(struct conn *c, const struct http_head *h, char *body, size_t body_len)
{
    char eio[8], transport[16], sid[EIO_ID_LEN + 8];
    bool is_get = is_method(h, "GET"), is_post = is_method(h, "POST");
    int t = http_query_param(h->target, h->target_len, "transport", transport, sizeof transport);
    bool ws = t > 0 && strcmp(transport, "websocket") == 0;
    if (!ws && (t <= 0 || strcmp(transport, "polling") != 0))
        return sio_error(c, 0, "Transport unknown");
    int has_sid = http_query_param(h->target, h->target_len, "sid", sid, sizeof sid);
    struct eio_session *s = has_sid > 0 ? sid_find(c->srv, sid) : NULL;
    if (has_sid != 0 && (!s || s->state == EIO_CLOSED || (s->flags & EIO_FL_CLOSE_ASKED && ws)))
        return sio_error(c, 1, "Session ID unknown");
    if (ws && (!is_get || !http_find_header(h, "Upgrade")))
        return sio_error(c, 3, "Bad request");
    if (s && !ws && s->state == EIO_WEBSOCKET)
        return sio_error(c, 3, "Bad request"); /* polling is over for an upgraded sid */
    if (!s && !ws && !is_get)
        return sio_error(c, 2, "Bad handshake method");
    if (http_query_param(h->target, h->target_len, "EIO", eio, sizeof eio) <= 0 || strcmp(eio, "4") != 0)
        return sio_error(c, 5, "Unsupported protocol version");
    if (ws && s && (s->state == EIO_WEBSOCKET || s->ws))
        return ws_refuse(c, h); /* upgraded already, or a second upgrade at once */
    if (ws)
        return s ? ws_upgrade(c, h, s) : ws_open(c, h);
    if (!s)
        return poll_open(c, h);
    if (is_get)
        return poll_get(c, s);
    if (is_post)
        return poll_post(c, s, h, body ? body : (char *)"", body_len);
    return conn_respond(c, 500, "Internal Server Error", NULL, "text/plain", "", 0, false, true);
}

/* ---- The loop's work lists ---- */

void eio_run_flush(struct server *srv)
{
    while (srv->eio_flush) {
        struct eio_session *s = srv->eio_flush;
        srv->eio_flush = s->next_work;
        s->flags &= (uint8_t)~EIO_FL_FLUSH;
        poll_flush(s);
    }
}

void eio_free_dead(struct server *srv)
{
    while (srv->eio_dead) {
        struct eio_session *s = srv->eio_dead;
        srv->eio_dead = s->next_work;
        session_free(s);
    }
}

void eio_free_all(struct server *srv)
{
    eio_free_dead(srv);
    for (uint32_t i = 0; srv->sids && i < srv->sid_buckets; i++)
        while (srv->sids[i]) {
            struct eio_session *s = srv->sids[i];
            srv->sids[i] = P(s)->sid_next;
            ev_timer_stop(srv->loop, &P(s)->timer);
            room_leave(&srv->sio_rooms, &s->member);
            session_free(s);
        }
    free(srv->sids);
    srv->sids = NULL;
}
