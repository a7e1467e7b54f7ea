/* One client of the node, as a state machine:
 *
 *   CLIENT_HTTP --(GET /ws handshake ok)--> CLIENT_WS --(close sent or received)--> CLIENT_CLOSING --> CLIENT_CLOSED
 *        |  (GET / and /metrics answered; keep-alive)                                   ^
 *        +-----------(bad request, Connection: close, timeout)--------------------------+
 *
 * GET /socket.io/?EIO=4&transport=websocket takes the same path to CLIENT_WS, with CLIENT_FL_SIO set: its frames are
 * then Engine.IO packets (common/eio.h) whose Socket.IO packets socketio.c acts on, its room is in server.sio_rooms (so
 * the two protocols never see each other's messages) and the server pings it with Engine.IO packets. A polling
 * session is a client without a socket that takes the same packets from POSTs and answers held GETs.
 *
 * All output (HTTP responses, frames) goes through one queue of shared slices and is written before the loop next
 * waits (server.c's flush list), so a broadcast costs one frame encoding per node and one writev per receiver. */
#include "common/bus.h"
#include "common/http.h"
#include "common/log.h"
#include "refserver/server.h"
#include "common/eio.h"
#include "refserver/socketio.h"
#include "refserver/sync.h"
#include "refserver/workers.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define MAX_HEAD     8192
#define MAX_HEADERS  64
#define WRITE_IOV    64
#define DEFAULT_ROOM "all" /* /ws; a Socket.IO socket that names no room is in the namespace-wide room "" */

/* Engine.IO polling: seconds from a websocket's 101 (with a sid) to its "5" (engine.io's upgradeTimeout); sessions
 * allowed when --max-clients is 0; the most sid table buckets. */
#define SIO_UPGRADE_TIMEOUT 10.0
#define SIO_MAX_SESSIONS    100000
#define SIO_MAX_SID_BUCKETS (1u << 20)
/* Seconds a session whose client POSTed a close waits for a GET that crossed the POST on the way (below). */
#define SIO_CLOSE_GRACE 1.0

static void on_read(struct ev_loop *loop, ev_io *w, int revents);
static void on_write(struct ev_loop *loop, ev_io *w, int revents);
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void poll_close(struct client *sess);
static void poll_flush(struct client *sess);

static struct room_registry *registry(struct client *c)
{
    return c->flags & CLIENT_FL_SIO ? &c->srv->sio_rooms : &c->srv->rooms;
}

static void arm_timer(struct client *c, double seconds)
{
    ev_timer_stop(c->srv->loop, &c->timer);
    ev_timer_set(&c->timer, seconds, 0);
    ev_timer_start(c->srv->loop, &c->timer);
}

struct client *session_new(struct server *s, int fd)
{
    struct client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->srv = s;
    c->fd = fd;
    c->id = s->next_client_id++;
    c->last_rx = ev_now(s->loop);
    c->in.max = MAX_HEAD + 8192; /* the parser rejects a longer head first */
    c->msg.max = s->cfg.max_message;
    ev_io_init(&c->rio, on_read, fd, EV_READ);
    ev_io_init(&c->wio, on_write, fd, EV_WRITE);
    ev_init(&c->timer, on_timer);
    ev_io_start(s->loop, &c->rio);
    arm_timer(c, s->cfg.handshake_timeout);
    c->next = s->clients;
    if (s->clients)
        s->clients->prev = c;
    s->clients = c;
    s->stats.connections++;
    return c;
}

/* Stop c's I/O and timer, leave its room, and bury it; its descriptor stays open (closed, or handed over, by the
 * caller). */
static void detach_client(struct client *c)
{
    struct server *s = c->srv;
    ev_io_stop(s->loop, &c->rio);
    ev_io_stop(s->loop, &c->wio);
    ev_timer_stop(s->loop, &c->timer);
    c->fd = -1;
    c->state = CLIENT_CLOSED;
    room_leave(registry(c), &c->member);
    s->stats.connections--;
    server_bury(s, c);
    server_client_left(s);
}

/* The connection is over: stop its I/O now, leave the room, free it before the loop next waits. */
static void kill_client(struct client *c)
{
    struct server *s = c->srv;
    if (c->flags & CLIENT_FL_POLL) {
        poll_close(c);
        return;
    }
    if (c->state == CLIENT_CLOSED)
        return;
    if (c->sess) { /* a held GET leaves its session; a websocket bound to one lets go of it */
        struct client *sess = c->sess;
        c->sess = NULL;
        if (c->flags & CLIENT_FL_HELD) {
            sess->held = NULL;
        } else {
            sess->ws = NULL;
            sess->flags &= (uint16_t)~CLIENT_FL_PROBED; /* a failed probe: the session goes on polling */
            if (sess->flags & CLIENT_FL_UPGRADED)
                poll_close(sess);
        }
    }
    if (c->member.room) /* only upgraded clients are in a room */
        s->stats.ws_clients--;
    int fd = c->fd;
    detach_client(c);
    close(fd);
}

void session_free(struct client *c)
{
    struct server *s = c->srv;
    if (c->flags & CLIENT_FL_POLL) /* never on the client list */
        ;
    else if (c->prev)
        c->prev->next = c->next;
    else
        s->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    socketio_client_gone(c);
    sq_free(&c->out);
    buf_free(&c->in);
    buf_free(&c->msg);
    free(c);
}

/* Queue a slice for the socket. 0, or -1 when memory ran out (the client is then killed). */
static int enqueue(struct client *c, struct slice *f)
{
    if (sq_push(&c->out, f) < 0) {
        LOG_ERR("client %" PRIu64 ": out of memory queueing output", c->id);
        kill_client(c);
        return -1;
    }
    server_schedule_flush(c->srv, c);
    return 0;
}

static int enqueue_bytes(struct client *c, const void *p, size_t len)
{
    struct slice *f = slice_new(len);
    if (!f) {
        kill_client(c);
        return -1;
    }
    memcpy(f->data, p, len);
    int rc = enqueue(c, f);
    slice_unref(f);
    return rc;
}

/* Queue a control frame (close, ping, pong); control payloads are at most 125 bytes. */
static int send_control(struct client *c, uint8_t opcode, const void *payload, size_t len)
{
    uint8_t frame[WS_MAX_HEADER + WS_MAX_CONTROL];
    size_t h = ws_frame_header(frame, opcode, true, len, NULL);
    if (len)
        memcpy(frame + h, payload, len);
    return enqueue_bytes(c, frame, h + len);
}

/* Enter CLOSING having queued our close frame: from now on we only wait for the peer's close (unless no_reply)
 * and for the output to drain, bounded by close_timeout. */
static void start_closing(struct client *c, uint16_t code, const char *reason, bool no_reply)
{
    uint8_t payload[WS_MAX_CONTROL];
    if (c->flags & CLIENT_FL_POLL) {
        poll_close(c);
        return;
    }
    if (c->flags & CLIENT_FL_CLOSE_SENT) { /* one close frame per connection, whatever else goes wrong */
        c->flags |= no_reply ? CLIENT_FL_NO_REPLY : 0;
        return;
    }
    size_t len = code == WS_CLOSE_NO_STATUS ? 0 : ws_close_payload(payload, code, reason);
    if (send_control(c, WS_OP_CLOSE, payload, len) < 0)
        return;
    c->flags |= CLIENT_FL_CLOSE_SENT | (no_reply ? CLIENT_FL_NO_REPLY : 0);
    c->state = CLIENT_CLOSING;
    arm_timer(c, c->srv->cfg.close_timeout);
}

void session_close(struct client *c, uint16_t code, const char *reason)
{
    if (c->state == CLIENT_WS)
        start_closing(c, code, reason, false);
    else if (c->state == CLIENT_HTTP)
        kill_client(c);
}

void session_sio_close(struct client *c)
{
    if (!(c->flags & CLIENT_FL_POLL)) {
        session_close(c, WS_CLOSE_NO_STATUS, NULL);
        return;
    }
    if (c->state != CLIENT_WS || c->flags & CLIENT_FL_POLL_CLOSING || session_send(c, WS_OP_TEXT, "1", 1) < 0)
        return;
    c->flags |= CLIENT_FL_POLL_CLOSING;
}

bool session_offer(struct server *s, struct client *c, struct slice *const *frames, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += frames[i]->len;
    /* A consumer that cannot keep up is closed rather than allowed to hold memory without bound. A lone
     * message bigger than the cap still goes to an idle client: max_message bounds that. */
    if (c->out.bytes && c->out.bytes + len > s->cfg.max_queue) {
        s->stats.slow_consumers++;
        sq_drop_unstarted(&c->out);
        start_closing(c, WS_CLOSE_TRY_LATER, "slow consumer", true);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (enqueue(c, frames[i]) < 0)
            return false;
    return true;
}

void session_deliver(struct server *s, struct room *room, struct slice *f, const struct client *skip)
{
    for (uint32_t i = 0; i < room->count; i++) {
        struct client *c = container_of(room->members[i], struct client, member);
        if (c != skip && c->state == CLIENT_WS && session_offer(s, c, &f, 1))
            s->stats.msgs_out++;
    }
}

int session_send(struct client *c, uint8_t opcode, const void *p, size_t len)
{
    struct slice *f = ws_frame_slice(opcode, p, len);
    if (!f) {
        kill_client(c);
        return -1;
    }
    int rc = enqueue(c, f);
    slice_unref(f);
    return rc;
}

/* A whole message from c: publish it to the other nodes, then deliver it to the local room. */
static void relay(struct client *c, uint8_t opcode, const void *payload, size_t len)
{
    struct server *s = c->srv;
    struct room *room = c->member.room;
    s->stats.msgs_in++;
    if (s->sync)
        sync_publish(s->sync, room, c->id, opcode, payload, len);
    if (room->count < 2)
        return;
    struct slice *f = ws_frame_slice(opcode, payload, len);
    if (!f) {
        LOG_ERR("client %" PRIu64 ": out of memory encoding a frame", c->id);
        return;
    }
    session_deliver(s, room, f, c);
    slice_unref(f);
}

static void sio_on_message(struct client *c, uint8_t opcode, uint8_t *data, size_t len);

/* A whole message: relayed (/ws) or taken as an Engine.IO packet (Socket.IO). */
static void on_message(struct client *c, uint8_t opcode, uint8_t *data, size_t len)
{
    if (c->flags & CLIENT_FL_SIO)
        sio_on_message(c, opcode, data, len);
    else
        relay(c, opcode, data, len);
}

static void on_data(struct client *c, const struct ws_event *ev)
{
    /* The common case, a whole message in one read, is relayed straight from the read buffer. */
    if (ev->first && ev->last) {
        on_message(c, ev->opcode, ev->data, ev->len);
        return;
    }
    if (buf_append(&c->msg, ev->data, ev->len) < 0) {
        start_closing(c, WS_CLOSE_TOO_BIG, "message too big", true);
        return;
    }
    if (ev->last) {
        on_message(c, ev->opcode, (uint8_t *)buf_head(&c->msg), buf_len(&c->msg));
        buf_free(&c->msg);
    }
}

/* Socket.IO: Engine.IO packets in text frames (or POSTed); the Socket.IO packets inside go to socketio.c. */

/* A new sid; a worker's names it (workers.h), so every request of the session can be brought to it. */
static void sio_new_id(const struct server *s, char out[EIO_ID_LEN + 1])
{
    uint8_t rnd[EIO_ID_RANDOM] = {0};
    RAND_bytes(rnd, sizeof rnd);
    eio_make_id(rnd, out);
    if (s->workers)
        workers_sid_mark(out, workers_index(s->workers));
}

/* A packet Socket.IO forbids: the whole connection goes (SOCKETIO.md 2). */
void session_sio_fail(struct client *c, const char *why)
{
    c->srv->stats.protocol_errors++;
    LOG_DEBUG("client %" PRIu64 ": Socket.IO: %s; closing", c->id, why);
    start_closing(c, WS_CLOSE_PROTOCOL, why, true);
}

/* The ping schedule wants the timer in seconds; until a namespace CONNECT came, the connect deadline may come
 * first (socket.io's connectTimeout). */
static void sio_arm(struct client *c, double seconds)
{
    ev_tstamp now = ev_now(c->srv->loop);
    c->sio_due = now + seconds;
    if (c->sio_connect_by && c->sio_connect_by - now < seconds)
        seconds = c->sio_connect_by > now ? c->sio_connect_by - now : 0;
    arm_timer(c, seconds);
}

static void sio_probe(struct client *c, const uint8_t *data, size_t len);

/* The client POSTed a close packet: as engine.io's polling transport, a held GET is released with a noop, then the
 * session ends (poll_flush, once the loop's callbacks have run, since libev runs a wake-up's newest first). A client
 * may send its GET and the close together, on two connections, and the GET may come second: held or not when the
 * POST came, the client's GET was pending, so one that arrives within SIO_CLOSE_GRACE gets the noop too. */
static void poll_close_asked(struct client *sess)
{
    sess->flags |= CLIENT_FL_CLOSE_ASKED;
    sq_drop_unstarted(&sess->out);
    server_schedule_flush(sess->srv, sess);
}

static void sio_on_message(struct client *c, uint8_t opcode, uint8_t *data, size_t len)
{
    struct eio_packet pk;
    if (c->sess && !(c->sess->flags & CLIENT_FL_UPGRADED)) {
        sio_probe(c, data, len);
        return;
    }
    if (opcode != WS_OP_TEXT) { /* a binary Engine.IO message: the raw bytes of an attachment */
        socketio_on_attachment(c, data, len);
        return;
    }
    if (eio_decode((const char *)data, len, true, &pk) < 0) {
        session_sio_fail(c, "malformed packet");
        return;
    }
    switch (pk.eio) {
    case EIO_MESSAGE: socketio_on_packet(c, &pk); return;
    case EIO_PONG:
        if (c->flags & CLIENT_FL_PINGED) {
            c->flags &= (uint16_t)~CLIENT_FL_PINGED;
            sio_arm(c, c->srv->cfg.sio_ping_interval);
        }
        return;
    case EIO_NOOP: return;
    case EIO_CLOSE:
        if (c->flags & CLIENT_FL_POLL)
            poll_close_asked(c);
        else
            start_closing(c, WS_CLOSE_NORMAL, "", false);
        return;
    case EIO_PING: session_sio_fail(c, "ping from the client (in Engine.IO v4 the server pings)"); return;
    default: session_sio_fail(c, "unexpected Engine.IO packet type"); return;
    }
}

/* A polling session whose client closed: ended, as no GET came in the grace. No namespace CONNECT in time: closed.
 * Otherwise, when the ping schedule is due: a ping, or, when the last one went unanswered, the close ("ping
 * timeout"). */
static void sio_on_timer(struct client *c)
{
    ev_tstamp now = ev_now(c->srv->loop);
    if (c->flags & CLIENT_FL_CLOSE_ASKED) { /* no GET came in the grace after the client's close */
        poll_close(c);
        return;
    }
    if (c->sio_connect_by && now >= c->sio_connect_by - 1e-3 && !c->sio_nsps) {
        c->srv->stats.idle_closed++;
        start_closing(c, WS_CLOSE_GOING_AWAY, "no namespace CONNECT in time", true);
        return;
    }
    if (now < c->sio_due - 1e-3) { /* woken for the connect deadline, which a CONNECT has since met */
        arm_timer(c, c->sio_due - now);
        return;
    }
    if (c->flags & CLIENT_FL_PINGED) {
        c->srv->stats.idle_closed++;
        start_closing(c, WS_CLOSE_GOING_AWAY, "ping timeout", true);
        return;
    }
    c->flags |= CLIENT_FL_PINGED;
    socketio_release(c); /* the auth event goes before the ping, as in Node */
    session_send(c, WS_OP_TEXT, "2", 1);
    sio_arm(c, c->srv->cfg.sio_ping_timeout);
}

static void on_peer_close(struct client *c, const struct ws_event *ev)
{
    c->flags |= CLIENT_FL_CLOSE_RCVD;
    if (c->state == CLIENT_WS)
        /* Echo the peer's code (RFC 6455 5.5.1); a close without a code is answered without one. */
        start_closing(c, ev->close_code, "", true);
    server_schedule_flush(c->srv, c);
}

/* Precondition: CLIENT_WS or CLIENT_CLOSING with data in [data, data+len). Returns bytes consumed, 0 when more are
 * needed, -1 when the connection is failing (nothing more of it is read). */
static long process_ws(struct client *c, uint8_t *data, size_t len)
{
    struct ws_event ev;
    int n = ws_reader_next(&c->reader, data, len, &ev);
    if (n == -2)
        return 0;
    if (n == -1) {
        c->srv->stats.protocol_errors++;
        start_closing(c, c->reader.close_code, c->reader.error, true);
        return -1;
    }
    if (ev.type == WS_EV_CLOSE)
        on_peer_close(c, &ev);
    else if (c->state != CLIENT_WS)
        return n; /* closing: data and pings no longer matter */
    else if (ev.type == WS_EV_DATA)
        on_data(c, &ev);
    else if (ev.type == WS_EV_PING)
        send_control(c, WS_OP_PONG, ev.data, ev.len);
    else if (ev.type == WS_EV_PONG && (c->flags & CLIENT_FL_SIO))
        socketio_release(c);
    return n;
}

/* HTTP responses */

static int respond(struct client *c, int status, const char *reason, const char *extra, const char *ctype,
                   const char *body, size_t body_len, bool head_only, bool close_after)
{
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nX-Node-Id: %s\r\n%sContent-Type: %s\r\nContent-Length: %zu\r\n%s%s\r\n", status,
                     reason, c->srv->cfg.node_id, c->srv->worker_header, ctype, body_len, extra ? extra : "",
                     close_after ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof head)
        return -1;
    struct slice *f = slice_new((size_t)n + (head_only ? 0 : body_len));
    if (!f) {
        kill_client(c);
        return -1;
    }
    memcpy(f->data, head, (size_t)n);
    if (!head_only && body_len)
        memcpy(f->data + n, body, body_len);
    int rc = enqueue(c, f);
    slice_unref(f);
    if (status >= 400)
        c->srv->stats.http_errors++;
    if (rc == 0 && close_after) {
        c->flags |= CLIENT_FL_NO_REPLY;
        c->state = CLIENT_CLOSING;
        arm_timer(c, c->srv->cfg.close_timeout);
        return -1;
    }
    return rc;
}

/* An error answer; the connection closes after it, since what follows the bad head cannot be trusted. */
static int respond_error(struct client *c, int status, const char *reason, const char *why, const char *extra)
{
    char body[256];
    int n = snprintf(body, sizeof body, "%d %s: %s\n", status, reason, why);
    return respond(c, status, reason, extra, "text/plain", body, (size_t)n, false, true);
}

static int http_status_for(enum http_error e)
{
    switch (e) {
    case HTTP_ERR_HEAD_TOO_LARGE:
    case HTTP_ERR_TOO_MANY_HEADERS: return 431;
    case HTTP_ERR_VERSION: return 505;
    default: return 400;
    }
}

static const char *status_reason(int status)
{
    switch (status) {
    case 431: return "Request Header Fields Too Large";
    case 505: return "HTTP Version Not Supported";
    default: return "Bad Request";
    }
}

static bool valid_room(const char *name)
{
    if (!*name)
        return false;
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return false;
    return true;
}

/* Check an upgrade request against RFC 6455 4.2.1; on failure *why says what was wrong and *status what to send. */
static bool check_handshake(const struct http_head *h, char *accept, int *status, const char **why)
{
    const struct http_header *up = http_find_header(h, "Upgrade");
    const struct http_header *ver = http_find_header(h, "Sec-WebSocket-Version");
    const struct http_header *key = http_find_header(h, "Sec-WebSocket-Key");
    *status = 400;
    if (h->minor_version < 1)
        *why = "WebSocket needs HTTP/1.1";
    else if (!up || !http_has_token(up->value, up->value_len, "websocket"))
        *why = "missing 'Upgrade: websocket'";
    else if (!h->conn_upgrade)
        *why = "missing 'Connection: Upgrade'";
    else if (!ver || ver->value_len != 2 || memcmp(ver->value, "13", 2) != 0)
        *status = 426, *why = "unsupported Sec-WebSocket-Version (this server speaks 13)";
    else if (!key || ws_accept_key(key->value, key->value_len, accept) < 0)
        *why = "missing or invalid Sec-WebSocket-Key";
    else
        return true;
    return false;
}

/* Socket.IO: the open packet, then pings every sio_ping_interval. */
static int sio_open(struct client *c)
{
    char sid[EIO_ID_LEN + 1], pkt[EIO_OPEN_MAX];
    const struct server_config *cfg = &c->srv->cfg;
    sio_new_id(c->srv, sid);
    size_t n = eio_open_packet(pkt, sid, (uint32_t)(cfg->sio_ping_interval * 1000 + 0.5),
                               (uint32_t)(cfg->sio_ping_timeout * 1000 + 0.5), cfg->max_message, false);
    c->sio_connect_by = ev_now(c->srv->loop) + cfg->sio_connect_timeout;
    RAND_bytes(c->sio_id, sizeof c->sio_id);
    sio_arm(c, cfg->sio_ping_interval);
    return session_send(c, WS_OP_TEXT, pkt, n);
}

/* The handshake's room parameter into room (ROOM_NAME_MAX + 1 bytes): /ws clients without one are in DEFAULT_ROOM,
 * Socket.IO sockets in the namespace-wide room "". Its length, or -1 when it is not a valid room name. */
static int room_param(const struct http_head *h, bool sio, char *room)
{
    int found = http_query_param(h->target, h->target_len, "room", room, ROOM_NAME_MAX + 1);
    if (found == 0)
        strcpy(room, sio ? "" : DEFAULT_ROOM);
    return found < 0 || (found > 0 && !valid_room(room)) ? -1 : (int)strlen(room);
}

static int refuse_handshake(struct client *c, int status, const char *why)
{
    return respond_error(c, status, status == 426 ? "Upgrade Required" : "Bad Request", why,
                         status == 426 ? "Sec-WebSocket-Version: 13\r\n" : NULL);
}

/* Queue the 101 and enter CLIENT_WS. 0, or -1 when the client is gone. */
static int switch_protocols(struct client *c, const char *accept)
{
    struct server *s = c->srv;
    char resp[512];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\nX-Node-Id: %s\r\n%s\r\n",
                     accept, s->cfg.node_id, s->worker_header);
    c->state = CLIENT_WS;
    c->reader = (struct ws_reader){.role = WS_ROLE_SERVER, .max_message = s->cfg.max_message};
    s->stats.handshakes++;
    return enqueue_bytes(c, resp, (size_t)n);
}

/* Precondition: CLIENT_HTTP, a GET /ws head (or /socket.io/ when sio). Next: CLIENT_WS (101 queued, joined the room,
 * Socket.IO: the open packet queued), or closing after 4xx. With sess (a polling session's sid), the websocket joins
 * no room yet: it waits for 2probe and 5 (sio_probe), within SIO_UPGRADE_TIMEOUT. */
static int upgrade(struct client *c, const struct http_head *h, bool sio, struct client *sess)
{
    struct server *s = c->srv;
    char accept[WS_ACCEPT_LEN + 1], room[ROOM_NAME_MAX + 1];
    int status;
    const char *why;
    if (!check_handshake(h, accept, &status, &why))
        return refuse_handshake(c, status, why);
    int room_len = room_param(h, sio, room);
    if (room_len < 0)
        return respond_error(c, 400, "Bad Request", "bad room name (1-128 visible ASCII characters)", NULL);
    if (sio)
        c->flags |= CLIENT_FL_SIO;
    if (!sess && room_join(registry(c), &c->member, room, (size_t)room_len) < 0)
        return respond_error(c, 503, "Service Unavailable", "out of memory", NULL);
    if (sess) {
        c->sess = sess;
        sess->ws = c;
        arm_timer(c, SIO_UPGRADE_TIMEOUT);
        return switch_protocols(c, accept);
    }
    s->stats.ws_clients++;
    arm_timer(c, s->cfg.ping_interval);
    if (switch_protocols(c, accept) < 0)
        return -1;
    if (sio)
        socketio_on_handshake(c, c, h);
    return sio ? sio_open(c) : 0;
}

/* A websocket for a sid that has upgraded already, or is upgrading: engine.io (onWebSocket) accepts it and closes
 * it at once, so its client sees a close rather than a handshake error. Next: CLOSING, or closing after 4xx. */
static int upgrade_and_close(struct client *c, const struct http_head *h)
{
    char accept[WS_ACCEPT_LEN + 1];
    int status;
    const char *why;
    if (!check_handshake(h, accept, &status, &why))
        return refuse_handshake(c, status, why);
    if (switch_protocols(c, accept) < 0)
        return -1;
    start_closing(c, WS_CLOSE_NO_STATUS, NULL, false);
    return -1;
}

/* An Engine.IO handshake error: 400 with the JSON body engine.io sends. */
static int sio_error(struct client *c, int code, const char *message)
{
    char body[96];
    int n = snprintf(body, sizeof body, "{\"code\":%d,\"message\":\"%s\"}", code, message);
    return respond(c, 400, "Bad Request", NULL, "application/json", body, (size_t)n, false, true);
}

/* Engine.IO polling (SOCKETIO.md 1): a session lives in the server's sid table and its room; POSTs carry packets in,
 * a held GET carries the queued frames out (without their WebSocket headers, joined by \x1e), until the client
 * upgrades to a websocket bound to the sid. */

static bool is_sio_path(const struct http_head *h)
{
    size_t plen = http_path_len(h->target, h->target_len);
    return (plen == 11 && !memcmp(h->target, "/socket.io/", 11)) ||
           (plen == 10 && !memcmp(h->target, "/socket.io", 10));
}

static bool is_method(const struct http_head *h, const char *m)
{
    return h->method_len == strlen(m) && !memcmp(h->method, m, h->method_len);
}

static uint32_t sid_hash(const char *sid)
{
    uint32_t h = 2166136261u; /* FNV-1a: the sids are random already */
    for (size_t i = 0; i < EIO_ID_LEN; i++)
        h = (h ^ (uint8_t)sid[i]) * 16777619u;
    return h;
}

static uint32_t sio_max_sessions(const struct server *s)
{
    return s->cfg.max_clients ? s->cfg.max_clients : SIO_MAX_SESSIONS;
}

static int sid_table_init(struct server *s)
{
    if (s->sids)
        return 0;
    uint32_t n = 1024;
    while (n < sio_max_sessions(s) && n < SIO_MAX_SID_BUCKETS)
        n <<= 1;
    s->sids = calloc(n, sizeof *s->sids);
    if (!s->sids)
        return -1;
    s->sid_buckets = n;
    return 0;
}

static struct client *sid_find(const struct server *s, const char *sid)
{
    if (!s->sids || strlen(sid) != EIO_ID_LEN)
        return NULL;
    for (struct client *p = s->sids[sid_hash(sid) & (s->sid_buckets - 1)]; p; p = p->sid_next)
        if (!memcmp(p->sid, sid, EIO_ID_LEN))
            return p;
    return NULL;
}

static void sid_remove(struct server *s, struct client *sess)
{
    if (!s->sids)
        return;
    struct client **pp = &s->sids[sid_hash(sess->sid) & (s->sid_buckets - 1)];
    while (*pp && *pp != sess)
        pp = &(*pp)->sid_next;
    if (*pp)
        *pp = sess->sid_next;
    sess->sid_next = NULL;
}

/* One queued frame as a polling payload item: a text frame's payload as it is, a binary one as "b" + base64. */
static int poll_item(struct buf *body, const char *frame, size_t len)
{
    size_t hl = ws_frame_header_len((const uint8_t *)frame);
    if (((uint8_t)frame[0] & 0x0f) != WS_OP_BINARY)
        return buf_append(body, frame + hl, len - hl);
    size_t raw = len - hl, b64 = 4 * ((raw + 2) / 3);
    if (buf_append(body, "b", 1) < 0 || buf_reserve(body, b64 + 1) < 0)
        return -1;
    EVP_EncodeBlock((unsigned char *)buf_tail(body), (const unsigned char *)frame + hl, (int)raw);
    buf_commit(body, b64);
    return 0;
}

/* The queued frames without their WebSocket headers, joined by \x1e, into body (consumed from the queue). */
static void poll_payload(struct client *sess, struct buf *body)
{
    struct iovec iov[WRITE_IOV];
    while (sess->out.count) {
        int n = sq_iov(&sess->out, iov, WRITE_IOV);
        size_t done = 0;
        for (int i = 0; i < n; i++) {
            if ((buf_len(body) && buf_append(body, "\x1e", 1) < 0) ||
                poll_item(body, iov[i].iov_base, iov[i].iov_len) < 0) {
                LOG_ERR("session %s: out of memory answering a poll", sess->sid);
                sq_free(&sess->out);
                return;
            }
            done += iov[i].iov_len;
        }
        sq_consume(&sess->out, done);
    }
}

/* Answer the held GET: with only (a noop or close packet) when given, else with every queued packet. */
static void poll_answer(struct client *sess, const char *only)
{
    struct client *conn = sess->held;
    struct buf body = {0};
    sess->held = NULL;
    conn->sess = NULL;
    conn->flags &= (uint16_t)~CLIENT_FL_HELD;
    if (only)
        buf_append(&body, only, strlen(only));
    else
        poll_payload(sess, &body);
    if (respond(conn, 200, "OK", NULL, "text/plain; charset=UTF-8", buf_head(&body), buf_len(&body), false, false) == 0)
        arm_timer(conn, conn->srv->cfg.handshake_timeout);
    buf_free(&body);
    if (sess->flags & CLIENT_FL_POLL_CLOSING && !sess->out.count)
        poll_close(sess); /* the close packet went last */
}

/* Before the loop waits (server.c's flush list): a held GET gets what is owed, or a noop once probed; a session
 * whose client POSTed a close ends. */
static void poll_flush(struct client *sess)
{
    if (sess->state != CLIENT_WS)
        return;
    if (sess->flags & CLIENT_FL_CLOSE_ASKED) {
        if (!sess->held) {
            arm_timer(sess, SIO_CLOSE_GRACE); /* sio_on_timer ends it */
            return;
        }
        poll_answer(sess, "6");
        poll_close(sess);
        return;
    }
    if (!sess->held)
        return;
    if (sess->flags & CLIENT_FL_PROBED)
        poll_answer(sess, "6");
    else if (sess->out.count)
        poll_answer(sess, NULL);
}

/* The session ends (close packet, protocol error, ping timeout, slow poller, its websocket gone): a held GET gets
 * the close packet, a websocket still probing is closed, and the session is freed before the loop next waits. */
static void poll_close(struct client *sess)
{
    struct server *s = sess->srv;
    if (sess->state == CLIENT_CLOSED)
        return;
    sess->state = CLIENT_CLOSED;
    sq_drop_unstarted(&sess->out);
    if (sess->held)
        poll_answer(sess, "1");
    if (sess->ws) {
        struct client *ws = sess->ws;
        sess->ws = NULL;
        ws->sess = NULL;
        if (!(sess->flags & CLIENT_FL_UPGRADED))
            start_closing(ws, WS_CLOSE_GOING_AWAY, "session closed", true);
    }
    if (!(sess->flags & CLIENT_FL_UPGRADED))
        s->stats.polling_sessions--;
    ev_timer_stop(s->loop, &sess->timer);
    sid_remove(s, sess);
    room_leave(&s->sio_rooms, &sess->member);
    server_bury(s, sess);
}

void session_free_polling(struct server *s)
{
    for (struct client **pp = &s->dead_list; *pp;) { /* buried sessions are on no other list */
        struct client *c = *pp;
        if (c->flags & CLIENT_FL_POLL) {
            *pp = c->next_work;
            session_free(c);
        } else {
            pp = &c->next_work;
        }
    }
    for (uint32_t i = 0; s->sids && i < s->sid_buckets; i++)
        while (s->sids[i]) {
            struct client *sess = s->sids[i];
            s->sids[i] = sess->sid_next;
            ev_timer_stop(s->loop, &sess->timer);
            room_leave(&s->sio_rooms, &sess->member);
            session_free(sess);
        }
    free(s->sids);
    s->sids = NULL;
}

/* GET without sid: a new session in the room, answered with the open packet (and the sticky cookie if asked). */
static int poll_open(struct client *c, const struct http_head *h)
{
    struct server *s = c->srv;
    const struct server_config *cfg = &s->cfg;
    char room[ROOM_NAME_MAX + 1], pkt[EIO_OPEN_MAX], extra[160] = "";
    int room_len = room_param(h, true, room);
    if (room_len < 0)
        return respond_error(c, 400, "Bad Request", "bad room name (1-128 visible ASCII characters)", NULL);
    if (s->stats.polling_sessions >= sio_max_sessions(s))
        return respond_error(c, 503, "Service Unavailable", "too many polling sessions", NULL);
    struct client *sess = sid_table_init(s) == 0 ? calloc(1, sizeof *sess) : NULL;
    if (!sess)
        return respond_error(c, 503, "Service Unavailable", "out of memory", NULL);
    sess->srv = s;
    sess->fd = -1;
    sess->id = s->next_client_id++;
    sess->state = CLIENT_WS;
    sess->flags = CLIENT_FL_POLL | CLIENT_FL_SIO;
    ev_init(&sess->timer, on_timer);
    do
        sio_new_id(s, sess->sid);
    while (sid_find(s, sess->sid));
    if (room_join(&s->sio_rooms, &sess->member, room, (size_t)room_len) < 0) {
        free(sess);
        return respond_error(c, 503, "Service Unavailable", "out of memory", NULL);
    }
    uint32_t b = sid_hash(sess->sid) & (s->sid_buckets - 1);
    sess->sid_next = s->sids[b];
    s->sids[b] = sess;
    s->stats.polling_sessions++;
    sess->sio_connect_by = ev_now(s->loop) + cfg->sio_connect_timeout;
    RAND_bytes(sess->sio_id, sizeof sess->sio_id);
    socketio_on_handshake(sess, c, h);
    sio_arm(sess, cfg->sio_ping_interval);
    size_t n = eio_open_packet(pkt, sess->sid, (uint32_t)(cfg->sio_ping_interval * 1000 + 0.5),
                               (uint32_t)(cfg->sio_ping_timeout * 1000 + 0.5), cfg->max_message, true);
    if (cfg->sio_cookie)
        snprintf(extra, sizeof extra, "Set-Cookie: %s=%s; Path=/; HttpOnly; SameSite=Lax\r\n", cfg->sio_cookie,
                 sess->sid);
    return respond(c, 200, "OK", extra, "text/plain; charset=UTF-8", pkt, n, false, h->conn_close);
}

/* GET with a sid: answered when packets are owed (at once if some already are). A second GET meanwhile is a
 * protocol error that ends the session. */
static int poll_get(struct client *c, struct client *sess)
{
    if (sess->held) {
        c->srv->stats.protocol_errors++;
        LOG_DEBUG("session %s: overlapping GET; closing", sess->sid);
        int rc = sio_error(c, 3, "Bad request");
        poll_close(sess);
        return rc;
    }
    c->flags |= CLIENT_FL_HELD;
    c->sess = sess;
    sess->held = c;
    if (sess->out.count || (sess->flags & (CLIENT_FL_PROBED | CLIENT_FL_CLOSE_ASKED)))
        server_schedule_flush(c->srv, sess);
    return 0;
}

/* A "b<base64>" item of a POST decoded in place (the bytes only shrink). Its length, or -1 when it is not base64. */
static long poll_binary(char *item, size_t len)
{
    size_t b64 = len - 1, pad = 0;
    if (b64 % 4)
        return -1;
    while (pad < 2 && pad < b64 && item[len - 1 - pad] == '=')
        pad++;
    int n = EVP_DecodeBlock((unsigned char *)item, (const unsigned char *)item + 1, (int)b64);
    return n < 0 ? -1 : n - (long)pad;
}

/* POST with a sid: each packet of the payload as if it came in a frame of its own; then "ok". */
static int poll_post(struct client *c, struct client *sess, const struct http_head *h, char *body, size_t len)
{
    struct eio_item it;
    size_t off = 0;
    int rc = 1;
    /* An empty item (-1) goes on as the empty packet it is, which sio_on_message refuses; nothing follows it. */
    while (rc == 1 && sess->state == CLIENT_WS && !(sess->flags & CLIENT_FL_CLOSE_ASKED) &&
           (rc = eio_payload_next(body, len, &off, &it)) != 0) {
        char *item = (char *)(uintptr_t)it.text.p;
        size_t plen = it.text.len;
        if (it.binary) {
            long n = poll_binary(item, plen);
            if (n < 0) {
                session_sio_fail(sess, "bad base64 in a polling payload");
                break;
            }
            sio_on_message(sess, WS_OP_BINARY, (uint8_t *)item, (size_t)n);
        } else {
            sio_on_message(sess, WS_OP_TEXT, (uint8_t *)item, plen);
        }
    }
    return respond(c, 200, "OK", NULL, "text/html", "ok", 2, false, h->conn_close);
}

/* The websocket of an upgrade: 2probe is answered 3probe (and the held GET a noop so the client can pause
 * polling); 5 moves the session onto it. Anything else fails the websocket, and the session goes on polling. */
static void sio_probe(struct client *c, const uint8_t *data, size_t len)
{
    struct client *sess = c->sess;
    struct server *s = c->srv;
    if (len == 6 && !memcmp(data, "2probe", 6)) {
        session_send(c, WS_OP_TEXT, "3probe", 6);
        sess->flags |= CLIENT_FL_PROBED;
        if (sess->held)
            server_schedule_flush(s, sess);
        return;
    }
    if (len != 1 || data[0] != '5' || !(sess->flags & CLIENT_FL_PROBED)) {
        session_sio_fail(c, "unexpected packet during the upgrade");
        return;
    }
    /* Join the room before the session leaves it, so a last member never closes (and unsubscribes) it. */
    struct room *room = sess->member.room;
    if (!room || room_join(&s->sio_rooms, &c->member, room->name, room->name_len) < 0) {
        start_closing(c, WS_CLOSE_INTERNAL, "out of memory", true);
        return;
    }
    room_leave(&s->sio_rooms, &sess->member);
    s->stats.ws_clients++;
    s->stats.polling_sessions--;
    c->sio_nsps = sess->sio_nsps;
    memcpy(c->sio_id, sess->sio_id, sizeof c->sio_id);
    c->sio_connect_by = sess->sio_connect_by;
    c->pending = sess->pending; /* attachments may go on arriving over the websocket */
    sess->pending = NULL;
    c->sio_waits = sess->sio_waits; /* and acks other nodes wait for, and the handshake */
    sess->sio_waits = NULL;
    c->sio_hs = sess->sio_hs;
    sess->sio_hs = NULL;
    if (sess->held)
        poll_answer(sess, "6");
    sess->flags = (uint16_t)((sess->flags | CLIENT_FL_UPGRADED) & ~CLIENT_FL_PROBED);
    ev_timer_stop(s->loop, &sess->timer);
    /* What the poller was owed goes over the websocket, in order: the same frames, shared. */
    struct iovec iov[WRITE_IOV];
    while (sess->out.count) {
        int n = sq_iov(&sess->out, iov, WRITE_IOV);
        size_t done = 0;
        for (int i = 0; i < n; i++) {
            struct slice *f = (struct slice *)(void *)((char *)iov[i].iov_base - offsetof(struct slice, data));
            if (enqueue(c, f) < 0)
                return;
            done += iov[i].iov_len;
        }
        sq_consume(&sess->out, done);
    }
    sq_free(&sess->out);
    sio_arm(c, s->cfg.sio_ping_interval);
}

/* Precondition: CLIENT_HTTP, a /socket.io/ request. The checks run in engine.io's order (transport, session,
 * upgrade, handshake method, protocol version). */
static int route_sio(struct client *c, const struct http_head *h, char *body, size_t body_len)
{
    char eio[8], transport[16], sid[EIO_ID_LEN + 8];
    bool is_get = is_method(h, "GET"), is_post = is_method(h, "POST");
    int t = http_query_param(h->target, h->target_len, "transport", transport, sizeof transport);
    bool ws = t > 0 && strcmp(transport, "websocket") == 0;
    if (!ws && (t <= 0 || strcmp(transport, "polling") != 0))
        return sio_error(c, 0, "Transport unknown");
    int has_sid = http_query_param(h->target, h->target_len, "sid", sid, sizeof sid);
    struct client *sess = has_sid > 0 ? sid_find(c->srv, sid) : NULL;
    if (has_sid != 0 && (!sess || sess->state != CLIENT_WS || (sess->flags & CLIENT_FL_CLOSE_ASKED && ws)))
        return sio_error(c, 1, "Session ID unknown");
    if (ws && (!is_get || !http_find_header(h, "Upgrade")))
        return sio_error(c, 3, "Bad request");
    if (sess && !ws && (sess->flags & CLIENT_FL_UPGRADED))
        return sio_error(c, 3, "Bad request"); /* polling is over for an upgraded sid */
    if (!sess && !ws && !is_get)
        return sio_error(c, 2, "Bad handshake method");
    if (http_query_param(h->target, h->target_len, "EIO", eio, sizeof eio) <= 0 || strcmp(eio, "4") != 0)
        return sio_error(c, 5, "Unsupported protocol version");
    if (ws && sess && (sess->flags & CLIENT_FL_UPGRADED || sess->ws))
        return upgrade_and_close(c, h); /* upgraded already, or a second upgrade at once */
    if (ws)
        return upgrade(c, h, true, sess);
    if (!sess)
        return poll_open(c, h);
    if (is_get)
        return poll_get(c, sess);
    if (is_post)
        return poll_post(c, sess, h, body ? body : (char *)"", body_len);
    return respond(c, 500, "Internal Server Error", NULL, "text/plain", "", 0, false, true);
}

static int serve_metrics(struct client *c, bool head_only, bool close_after)
{
    struct buf body = {0};
    int rc = server_metrics(c->srv, &body) < 0 ? respond_error(c, 503, "Service Unavailable", "out of memory", NULL)
                                               : respond(c, 200, "OK", NULL, "text/plain; version=0.0.4",
                                                         buf_head(&body), buf_len(&body), head_only, close_after);
    buf_free(&body);
    return rc;
}

/* For a balancer's check: 503 with the reason while the node is cut off from the other nodes (GET / stays 200). */
static int serve_health(struct client *c, bool head_only, bool close_after)
{
    char why[ERR_LEN + 64], text[ERR_LEN + 80];
    if (server_health(c->srv, why, sizeof why))
        return respond(c, 200, "OK", NULL, "text/plain", "ok\n", 3, head_only, close_after);
    int n = snprintf(text, sizeof text, "503 %s\n", why);
    n = n < 0 ? 0 : n >= (int)sizeof text ? (int)sizeof text - 1 : n;
    return respond(c, 503, "Service Unavailable", NULL, "text/plain", text, (size_t)n, head_only, close_after);
}

/* Precondition: CLIENT_HTTP with a complete, valid head (and body: only a Socket.IO POST has one). Returns 0 to go
 * on reading heads (keep-alive, or a held polling GET), -1 when the connection changed state or is closing. */
static int route(struct client *c, const struct http_head *h, char *body, size_t body_len)
{
    struct server *s = c->srv;
    size_t plen = http_path_len(h->target, h->target_len);
    bool head_only = is_method(h, "HEAD");
    bool is_get = is_method(h, "GET");
    s->stats.http_requests++;
    if (is_sio_path(h) && (body || (h->content_length <= 0 && !h->chunked))) {
        if (h->minor_version == 1 && !http_find_header(h, "Host"))
            return respond_error(c, 400, "Bad Request", "missing Host header", NULL);
        int rc = route_sio(c, h, body, body_len);
        return rc < 0 || c->state != CLIENT_HTTP ? -1 : 0;
    }
    if (!is_get && !head_only)
        return respond_error(c, 405, "Method Not Allowed", "only GET and HEAD", "Allow: GET, HEAD\r\n");
    if (h->content_length > 0 || h->chunked)
        return respond_error(c, 400, "Bad Request", "request bodies are not accepted here", NULL);
    if (h->minor_version == 1 && !http_find_header(h, "Host"))
        return respond_error(c, 400, "Bad Request", "missing Host header", NULL);
    if (plen == 3 && !memcmp(h->target, "/ws", 3) && is_get) {
        int rc = upgrade(c, h, false, NULL);
        return rc < 0 || c->state != CLIENT_HTTP ? -1 : 0;
    }
    if (plen == 1 && h->target[0] == '/') {
        char text[NODE_ID_MAX + 16];
        int n = snprintf(text, sizeof text, "ok %s\n", s->cfg.node_id);
        return respond(c, 200, "OK", NULL, "text/plain", text, (size_t)n, head_only, h->conn_close);
    }
    if (plen == 8 && !memcmp(h->target, "/metrics", 8))
        return serve_metrics(c, head_only, h->conn_close);
    if (plen == 7 && !memcmp(h->target, "/health", 7))
        return serve_health(c, head_only, h->conn_close);
    return respond_error(c, 404, "Not Found", "try /ws, /socket.io/, /, /health or /metrics", NULL);
}

/* --workers: the worker holding the session a /socket.io/ request names by its sid, when that is another worker; -1
 * otherwise (ours, no sid, or a sid no worker made: answered here, as unknown). */
static int sid_worker(const struct client *c, const struct http_head *h)
{
    const struct server *s = c->srv;
    char sid[EIO_ID_LEN + 8];
    if (!s->workers || !is_sio_path(h) || http_query_param(h->target, h->target_len, "sid", sid, sizeof sid) <= 0)
        return -1;
    int owner = workers_sid_owner(sid, strlen(sid), workers_count(s->workers));
    return owner == (int)workers_index(s->workers) ? -1 : owner;
}

/* Precondition: CLIENT_HTTP with a head in data for worker `to`. The connection goes to that worker with every byte
 * from the head on (a POST's body so far, pipelined requests), once our answers to its earlier requests are
 * written (CLIENT_FL_HAND_OVER: session_flush resumes here; meanwhile nothing more is read, so what waits is at most
 * one read). Returns 0 while waiting for that, else -1 (gone). */
static long hand_over(struct client *c, uint32_t to, const char *data, size_t len)
{
    struct server *s = c->srv;
    if (c->out.count) {
        c->flags |= CLIENT_FL_HAND_OVER;
        c->in.max = WORKERS_MSG_MAX;
        ev_io_stop(s->loop, &c->rio);
        return 0;
    }
    int fd = c->fd;
    detach_client(c);
    if (workers_hand_over(s->workers, to, fd, data, len) < 0)
        s->stats.handover_failed++;
    else
        s->stats.handed_over++;
    return -1;
}

/* RFC 9112 3.2: a request with more than one Host field line is answered 400 (which one would we believe?). */
static bool one_host_at_most(const struct http_head *h)
{
    size_t n = 0;
    for (size_t i = 0; i < h->num_headers; i++)
        n += h->headers[i].name_len == 4 && !strncasecmp(h->headers[i].name, "Host", 4);
    return n <= 1;
}

/* An absolute-form target ("http://host/ws?room=a", RFC 9112 3.2.2, what a client sends to a proxy) is routed by
 * its path and query, as an origin server must accept it; h->target then points at them ("/" when it has no path:
 * a bare "?query" cannot become origin-form without a copy). Other targets are left to the routes. */
static void origin_form(struct http_head *h)
{
    struct http_target t;
    if (http_target_split(h->target, h->target_len, &t) != HTTP_TARGET_ABSOLUTE)
        return;
    bool has_path = t.origin_len > 0 && t.origin[0] == '/';
    h->target = has_path ? t.origin : "/";
    h->target_len = has_path ? t.origin_len : 1;
}

/* Precondition: CLIENT_HTTP. Returns bytes consumed, 0 when the head is incomplete (or waits to be handed over), -1
 * when the connection left CLIENT_HTTP (upgraded, closing or handed over). */
static long process_http(struct client *c, char *data, size_t len)
{
    struct http_header headers[MAX_HEADERS];
    struct http_head h = {.headers = headers, .headers_cap = MAX_HEADERS};
    struct http_limits lim = {.max_head = MAX_HEAD, .max_headers = MAX_HEADERS};
    int n = http_parse_request(data, len, c->head_scanned, &h, &lim);
    if (n == -2) {
        c->head_scanned = len;
        return 0;
    }
    c->head_scanned = 0;
    if (n == -1) {
        int status = http_status_for(h.error);
        respond_error(c, status, status_reason(status), http_error_str(h.error), NULL);
        return -1;
    }
    if (!one_host_at_most(&h)) {
        respond_error(c, 400, "Bad Request", "more than one Host header", NULL);
        return -1;
    }
    origin_form(&h);
    int owner = sid_worker(c, &h);
    if (owner >= 0)
        return hand_over(c, (uint32_t)owner, data, len);
    /* A Socket.IO POST carries packets: wait for the whole body (up to maxPayload) before routing. */
    char *body = NULL;
    size_t body_len = 0;
    if (h.content_length > 0 && !h.chunked && is_method(&h, "POST") && is_sio_path(&h)) {
        if ((uint64_t)h.content_length > c->srv->cfg.max_message) {
            c->srv->stats.http_requests++;
            respond_error(c, 413, "Payload Too Large", "body over maxPayload", NULL);
            return -1;
        }
        body_len = (size_t)h.content_length;
        if (len - (size_t)n < body_len) {
            c->in.max = (size_t)n + body_len + MAX_HEAD;
            return 0;
        }
        body = data + n;
        n += (int)body_len;
    }
    if (route(c, &h, body, body_len) < 0)
        return c->state == CLIENT_WS ? n : -1;
    c->in.max = MAX_HEAD + 8192;
    if (c->flags & CLIENT_FL_HELD)
        ev_timer_stop(c->srv->loop, &c->timer); /* the session's ping answers it within pingInterval */
    else
        arm_timer(c, c->srv->cfg.handshake_timeout);
    return n;
}

/* Feed input to the state's parser until it needs more bytes. Returns bytes consumed; all of them once the
 * connection stops caring about input (failing, or drained after a close). */
static size_t process(struct client *c, char *data, size_t len)
{
    size_t off = 0;
    while (off < len) {
        long n;
        if (c->state == CLIENT_HTTP && (c->flags & CLIENT_FL_HELD))
            break; /* no pipelining behind a held GET */
        if (c->state == CLIENT_HTTP)
            n = process_http(c, data + off, len - off);
        else if (c->state == CLIENT_CLOSED || (c->flags & (CLIENT_FL_NO_REPLY | CLIENT_FL_CLOSE_RCVD)))
            return len;
        else
            n = process_ws(c, (uint8_t *)data + off, len - off);
        if (n == 0)
            break;
        if (n < 0)
            return len;
        off += (size_t)n;
    }
    return off;
}

/* Parse what b holds (c's own buffer, or the server's scratch buffer); what is left over of the scratch buffer moves
 * into c's own. */
static void feed(struct client *c, struct buf *b, bool own)
{
    buf_consume(b, process(c, buf_head(b), buf_len(b)));
    if (!own && buf_len(b)) {
        if (c->state != CLIENT_CLOSED && buf_append(&c->in, buf_head(b), buf_len(b)) < 0)
            kill_client(c);
        b->rpos = b->wpos = 0;
    }
    buf_release_if_empty(&c->in);
}

/* Read what is there. Input goes to the server's shared scratch buffer; only a partial head or frame left over is
 * copied into the client's own buffer, so idle clients hold no input memory. */
void session_on_readable(struct client *c)
{
    struct server *s = c->srv;
    bool own = buf_len(&c->in) > 0;
    struct buf *b = own ? &c->in : &s->scratch;
    int err = 0;
    size_t before = buf_len(b);
    enum io_status st = net_read(c->fd, b, own ? 4096 : buf_room(b), &err);
    if (st == IO_AGAIN)
        return;
    if (st != IO_OK) {
        if (st == IO_ERR && err == ENOBUFS && c->state == CLIENT_HTTP) {
            respond_error(c, 431, "Request Header Fields Too Large", "request head too large", NULL);
            return;
        }
        kill_client(c);
        return;
    }
    s->stats.bytes_in += buf_len(b) - before;
    c->last_rx = ev_now(s->loop);
    if (!(c->flags & CLIENT_FL_SIO)) /* Socket.IO: only an Engine.IO pong answers a ping */
        c->flags &= (uint16_t)~CLIENT_FL_PINGED;
    feed(c, b, own);
}

void session_adopt(struct server *s, int fd, const char *bytes, size_t len)
{
    struct client *c = s->shutting_down ? NULL : session_new(s, fd);
    if (!c) {
        close(fd);
        return;
    }
    /* The scratch buffer is empty between reads: the bytes go through it as if this worker had read them. */
    if (buf_append(&s->scratch, bytes, len) < 0) {
        kill_client(c);
        return;
    }
    feed(c, &s->scratch, false);
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    session_on_readable(container_of(w, struct client, rio));
}

/* After our output drained: a close handshake that is complete (or one-sided) shuts our side down and waits for the
 * peer's EOF, so the client reads our close frame before the TCP connection goes (no RST over unread data). */
static void after_drain(struct client *c)
{
    if (c->state != CLIENT_CLOSING || (c->flags & CLIENT_FL_SHUT))
        return;
    if (!(c->flags & (CLIENT_FL_NO_REPLY | CLIENT_FL_CLOSE_RCVD)))
        return;
    shutdown(c->fd, SHUT_WR);
    c->flags |= CLIENT_FL_SHUT;
}

void session_flush(struct client *c)
{
    struct server *s = c->srv;
    struct iovec iov[WRITE_IOV];
    if (c->flags & CLIENT_FL_POLL) {
        poll_flush(c);
        return;
    }
    while (c->out.count) {
        int n = sq_iov(&c->out, iov, WRITE_IOV), err = 0;
        size_t written;
        enum io_status st = net_writev(c->fd, iov, n, &written, &err);
        if (st == IO_AGAIN) {
            ev_io_start(s->loop, &c->wio);
            return;
        }
        if (st != IO_OK) {
            kill_client(c);
            return;
        }
        s->stats.bytes_out += written;
        sq_consume(&c->out, written);
    }
    ev_io_stop(s->loop, &c->wio);
    after_drain(c);
    if (c->flags & CLIENT_FL_HAND_OVER && c->state == CLIENT_HTTP) { /* answered: the waiting head can go */
        c->flags &= (uint16_t)~CLIENT_FL_HAND_OVER;
        feed(c, &c->in, true);
        if (c->state == CLIENT_HTTP) /* defensive: the same head is handed over at once now */
            ev_io_start(s->loop, &c->rio);
    }
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    session_flush(container_of(w, struct client, wio));
}

/* HTTP: the head did not arrive in time (slowloris). WS: ping when quiet, close when silent too long.
 * CLOSING: the peer did not finish the close in time. */
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct client *c = container_of(w, struct client, timer);
    const struct server_config *cfg = &c->srv->cfg;
    (void)revents;
    if (c->state != CLIENT_WS) {
        if (c->state == CLIENT_HTTP && buf_len(&c->in))
            respond_error(c, 408, "Request Timeout", "request head not received in time", NULL);
        else
            kill_client(c);
        return;
    }
    if (c->sess && !(c->sess->flags & CLIENT_FL_UPGRADED)) {
        session_sio_fail(c, "upgrade not completed in time");
        return;
    }
    if (c->flags & CLIENT_FL_SIO) {
        sio_on_timer(c);
        return;
    }
    double quiet = ev_now(loop) - c->last_rx;
    if (quiet >= cfg->idle_timeout) {
        c->srv->stats.idle_closed++;
        start_closing(c, WS_CLOSE_GOING_AWAY, "idle timeout", false);
        return;
    }
    if (quiet >= cfg->ping_interval && !(c->flags & CLIENT_FL_PINGED)) {
        c->flags |= CLIENT_FL_PINGED;
        send_control(c, WS_OP_PING, "", 0);
    }
    double next = cfg->ping_interval - quiet;
    if (next <= 0 || cfg->idle_timeout - quiet < next)
        next = cfg->idle_timeout - quiet;
    arm_timer(c, next);
}
