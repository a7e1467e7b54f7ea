/* One TCP connection: HTTP heads, WebSocket frames, output queue, close handshake, timers; see conn.h. */
#include "refserver/conn.h"

#include "common/http.h"
#include "common/listener.h"
#include "common/log.h"
#include "common/net.h"
#include "refserver/httplog.h"
#include "refserver/server.h"
#include "refserver/workers.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_HEAD    8192
#define MAX_HEADERS 64
#define WRITE_IOV   64

static void on_read(struct ev_loop *loop, ev_io *w, int revents);
static void on_write(struct ev_loop *loop, ev_io *w, int revents);
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);

void conn_arm_timer(struct conn *c, double seconds)
{
    ev_timer_stop(c->srv->loop, &c->timer);
    if (seconds < 0)
        return;
    ev_timer_set(&c->timer, seconds, 0);
    ev_timer_start(c->srv->loop, &c->timer);
}

struct conn *conn_new(struct server *s, int fd)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->srv = s;
    c->ops = s->http_ops;
    c->fd = fd;
    c->id = s->next_client_id++;
    c->last_rx = ev_now(s->loop);
    c->in.max = MAX_HEAD + 8192; /* the parser rejects a longer head first */
    c->msg.max = s->cfg.max_message;
    ev_io_init(&c->rio, on_read, fd, EV_READ);
    ev_io_init(&c->wio, on_write, fd, EV_WRITE);
    ev_init(&c->timer, on_timer);
    ev_io_start(s->loop, &c->rio);
    conn_arm_timer(c, s->cfg.handshake_timeout);
    if (s->cfg.log_requests)
        c->log = httplog_open(fd, ev_now(s->loop));
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->stats.connections++;
    return c;
}

void conn_set_owner(struct conn *c, const struct conn_ops *ops, void *owner)
{
    c->ops = ops ? ops : c->srv->http_ops;
    c->owner = owner;
}

static void schedule_flush(struct conn *c)
{
    struct server *s = c->srv;
    if (c->flags & CONN_FL_FLUSH)
        return;
    c->flags |= CONN_FL_FLUSH;
    c->next_work = s->flush_list;
    s->flush_list = c;
}

/* Stop c's I/O and timer, tell its owner, and bury it; its descriptor stays open (closed, or handed over, by the
 * caller). Entered in any state but CONN_CLOSED; leaves it CONN_CLOSED. */
/* The name on a log line: the worker's bus name, or the node's. */
static const char *log_name(const struct server *s)
{
    return s->cfg.bus_id[0] ? s->cfg.bus_id : s->cfg.node_id;
}

/* How a connection ended, for the log line of its WebSocket or unanswered request. */
static const char *end_word(const struct conn *c)
{
    if (c->state == CONN_HTTP)
        return "client-aborted";
    unsigned both = CONN_FL_CLOSE_RCVD | CONN_FL_CLOSE_SENT;
    if ((c->flags & both) == both)
        return "closed"; /* a close handshake; which side began it is not kept */
    return c->flags & CONN_FL_CLOSE_RCVD   ? "client-closed"
           : c->flags & CONN_FL_CLOSE_SENT ? "server-closed"
                                           : "dropped";
}

static void detach(struct conn *c)
{
    struct server *s = c->srv;
    if (c->log)
        httplog_end(&c->log, log_name(s), ev_now(s->loop), end_word(c));
    ev_io_stop(s->loop, &c->rio);
    ev_io_stop(s->loop, &c->wio);
    ev_timer_stop(s->loop, &c->timer);
    c->fd = -1;
    c->state = CONN_CLOSED;
    if (c->ops->on_gone)
        c->ops->on_gone(c);
    s->stats.connections--;
    c->next_work = s->dead_list;
    s->dead_list = c;
    if (s->listener) /* the accept gate may have paused at --max-clients */
        listener_left(s->listener);
}

void conn_kill(struct conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    int fd = c->fd;
    detach(c);
    close(fd);
}

static void conn_free(struct conn *c)
{
    struct server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c->log);
    sq_free(&c->out);
    buf_free(&c->in);
    buf_free(&c->msg);
    free(c->cors);
    free(c);
}

int conn_queue(struct conn *c, struct slice *f)
{
    if (sq_push(&c->out, f) < 0) {
        LOG_ERR("client %" PRIu64 ": out of memory queueing output", c->id);
        conn_kill(c);
        return -1;
    }
    schedule_flush(c);
    return 0;
}

static int queue_bytes(struct conn *c, const void *p, size_t len)
{
    struct slice *f = slice_new(len);
    if (!f) {
        conn_kill(c);
        return -1;
    }
    memcpy(f->data, p, len);
    int rc = conn_queue(c, f);
    slice_unref(f);
    return rc;
}

/* Queue a control frame (close, ping, pong); control payloads are at most 125 bytes. */
static int send_control(struct conn *c, uint8_t opcode, const void *payload, size_t len)
{
    uint8_t frame[WS_MAX_HEADER + WS_MAX_CONTROL];
    size_t h = ws_frame_header(frame, opcode, true, len, NULL);
    if (len)
        memcpy(frame + h, payload, len);
    return queue_bytes(c, frame, h + len);
}

int conn_send(struct conn *c, uint8_t opcode, const void *p, size_t len)
{
    if (opcode >= WS_OP_CLOSE)
        return send_control(c, opcode, p, len);
    struct slice *f = ws_frame_slice(opcode, p, len);
    if (!f) {
        conn_kill(c);
        return -1;
    }
    int rc = conn_queue(c, f);
    slice_unref(f);
    return rc;
}

/* From CONN_WS (or CONN_CLOSING: only the flags change) to CONN_CLOSING with our close frame queued: from now on we
 * only wait for the peer's close (unless no_reply) and for the output to drain, bounded by close_timeout. */
void conn_start_closing(struct conn *c, uint16_t code, const char *reason, bool no_reply)
{
    uint8_t payload[WS_MAX_CONTROL];
    if (c->state == CONN_CLOSED)
        return;
    if (c->flags & CONN_FL_CLOSE_SENT) { /* one close frame per connection, whatever else goes wrong */
        c->flags |= no_reply ? CONN_FL_NO_REPLY : 0;
        return;
    }
    size_t len = code == WS_CLOSE_NO_STATUS ? 0 : ws_close_payload(payload, code, reason);
    if (send_control(c, WS_OP_CLOSE, payload, len) < 0)
        return;
    c->flags |= CONN_FL_CLOSE_SENT | (no_reply ? CONN_FL_NO_REPLY : 0);
    c->state = CONN_CLOSING;
    conn_arm_timer(c, c->srv->cfg.close_timeout);
}

void conn_close(struct conn *c, uint16_t code, const char *reason)
{
    if (c->state == CONN_WS)
        conn_start_closing(c, code, reason, false);
    else if (c->state == CONN_HTTP)
        conn_kill(c);
}

void conn_fail(struct conn *c, const char *reason)
{
    c->srv->stats.protocol_errors++;
    LOG_DEBUG("client %" PRIu64 ": %s; closing", c->id, reason);
    conn_start_closing(c, WS_CLOSE_PROTOCOL, reason, true);
}

bool conn_offer(struct conn *c, struct slice *const *frames, size_t n)
{
    struct server *s = c->srv;
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += frames[i]->len;
    /* A consumer that cannot keep up is closed rather than allowed to hold memory without bound. A lone
     * message bigger than the cap still goes to an idle client: max_message bounds that. */
    if (c->out.bytes && c->out.bytes + len > s->cfg.max_queue) {
        s->stats.slow_consumers++;
        sq_drop_unstarted(&c->out);
        conn_start_closing(c, WS_CLOSE_TRY_LATER, "slow consumer", true);
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (conn_queue(c, frames[i]) < 0)
            return false;
    return true;
}

/* ---- WebSocket input ---- */

static void on_data(struct conn *c, const struct ws_event *ev)
{
    /* The common case, a whole message in one read, goes up straight from the read buffer. */
    if (ev->first && ev->last) {
        if (c->ops->on_message)
            c->ops->on_message(c, ev->opcode, ev->data, ev->len);
        return;
    }
    if (buf_append(&c->msg, ev->data, ev->len) < 0) {
        conn_start_closing(c, WS_CLOSE_TOO_BIG, "message too big", true);
        return;
    }
    if (ev->last) {
        if (c->ops->on_message)
            c->ops->on_message(c, ev->opcode, (uint8_t *)buf_head(&c->msg), buf_len(&c->msg));
        buf_free(&c->msg);
    }
}

static void on_peer_close(struct conn *c, const struct ws_event *ev)
{
    c->flags |= CONN_FL_CLOSE_RCVD;
    if (c->state == CONN_WS)
        /* Echo the peer's code (RFC 6455 5.5.1); a close without a code is answered without one. */
        conn_start_closing(c, ev->close_code, "", true);
    schedule_flush(c);
}

/* Precondition: CONN_WS or CONN_CLOSING with data in [data, data+len). Returns bytes consumed, 0 when more are
 * needed, -1 when the connection is failing (nothing more of it is read). */
static long process_ws(struct conn *c, uint8_t *data, size_t len)
{
    struct ws_event ev;
    int n = ws_reader_next(&c->reader, data, len, &ev);
    if (n == -2)
        return 0;
    if (n == -1) {
        c->srv->stats.protocol_errors++;
        conn_start_closing(c, c->reader.close_code, c->reader.error, true);
        return -1;
    }
    if (ev.type == WS_EV_CLOSE)
        on_peer_close(c, &ev);
    else if (c->state != CONN_WS)
        return n; /* closing: data and pings no longer matter */
    else if (ev.type == WS_EV_DATA)
        on_data(c, &ev);
    else if (ev.type == WS_EV_PING)
        send_control(c, WS_OP_PONG, ev.data, ev.len);
    else if (ev.type == WS_EV_PONG && c->ops->on_pong)
        c->ops->on_pong(c);
    return n;
}

/* ---- HTTP ---- */

int conn_respond(struct conn *c, int status, const char *reason, const char *extra, const char *ctype, const char *body,
                 size_t body_len, bool head_only, bool close_after)
{
    char head[1536]; /* room for extra and the CORS lines: an echoed Origin and request headers (cors.h) */
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nX-Node-Id: %s\r\n%sContent-Type: %s\r\nContent-Length: %zu\r\n%s%s%s\r\n",
                     status, reason, c->srv->cfg.node_id, c->srv->worker_header, ctype, body_len, extra ? extra : "",
                     c->cors ? c->cors : "", close_after ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof head)
        return -1;
    struct slice *f = slice_new((size_t)n + (head_only ? 0 : body_len));
    if (!f) {
        conn_kill(c);
        return -1;
    }
    memcpy(f->data, head, (size_t)n);
    if (!head_only && body_len)
        memcpy(f->data + n, body, body_len);
    int rc = conn_queue(c, f);
    slice_unref(f);
    if (c->log)
        httplog_answer(c->log, log_name(c->srv), ev_now(c->srv->loop), status, body, body_len,
                       (size_t)n + (head_only ? 0 : body_len), close_after);
    if (status >= 400)
        c->srv->stats.http_errors++;
    if (rc == 0 && close_after) {
        c->flags |= CONN_FL_NO_REPLY;
        c->state = CONN_CLOSING;
        conn_arm_timer(c, c->srv->cfg.close_timeout);
        return -1;
    }
    return rc;
}

/* An error answer; the connection closes after it, since what follows the bad head cannot be trusted. */
int conn_respond_error(struct conn *c, int status, const char *reason, const char *why, const char *extra)
{
    char body[256];
    int n = snprintf(body, sizeof body, "%d %s: %s\n", status, reason, why);
    return conn_respond(c, status, reason, extra, "text/plain", body, (size_t)n, false, true);
}

int conn_check_upgrade(struct conn *c, const struct http_head *h, char *accept)
{
    const struct http_header *up = http_find_header(h, "Upgrade");
    const struct http_header *ver = http_find_header(h, "Sec-WebSocket-Version");
    const struct http_header *key = http_find_header(h, "Sec-WebSocket-Key");
    const char *why;
    if (h->minor_version < 1)
        why = "WebSocket needs HTTP/1.1";
    else if (!up || !http_has_token(up->value, up->value_len, "websocket"))
        why = "missing 'Upgrade: websocket'";
    else if (!h->conn_upgrade)
        why = "missing 'Connection: Upgrade'";
    else if (!ver || ver->value_len != 2 || memcmp(ver->value, "13", 2) != 0)
        return conn_respond_error(c, 426, "Upgrade Required",
                                  "unsupported Sec-WebSocket-Version (this server speaks 13)",
                                  "Sec-WebSocket-Version: 13\r\n");
    else if (!key || ws_accept_key(key->value, key->value_len, accept) < 0)
        why = "missing or invalid Sec-WebSocket-Key";
    else
        return 0;
    conn_respond_error(c, 400, "Bad Request", why, NULL);
    return -1;
}

int conn_switch_protocols(struct conn *c, const char *accept)
{
    struct server *s = c->srv;
    char resp[512];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\nX-Node-Id: %s\r\n%s\r\n",
                     accept, s->cfg.node_id, s->worker_header);
    c->state = CONN_WS;
    c->reader = (struct ws_reader){.role = WS_ROLE_SERVER, .max_message = s->cfg.max_message};
    s->stats.handshakes++;
    if (c->log)
        httplog_answer(c->log, log_name(s), ev_now(s->loop), 101, NULL, 0, (size_t)n, false);
    return queue_bytes(c, resp, (size_t)n);
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

/* Precondition: CONN_HTTP with a head in data for worker `to`. The connection goes to that worker with every byte
 * from the head on (a POST's body so far, pipelined requests), once our answers to its earlier requests are
 * written (CONN_FL_HAND_OVER: conn_flush resumes here; meanwhile nothing more is read, so what waits is at most one
 * read). Returns 0 while waiting for that, else -1 (gone). */
static long hand_over(struct conn *c, uint32_t to, const char *data, size_t len)
{
    struct server *s = c->srv;
    if (c->out.count) {
        c->flags |= CONN_FL_HAND_OVER;
        c->in.max = WORKERS_MSG_MAX;
        ev_io_stop(s->loop, &c->rio);
        return 0;
    }
    int fd = c->fd;
    if (c->log)
        c->log->t_head = 0; /* the worker it goes to logs the request */
    detach(c);
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

/* The body of a head whose owner asked for it: *n grows by its length. 1 when it is there (*body set), 0 when more
 * bytes are needed, -1 when it is too large (413 queued). */
static int take_body(struct conn *c, const struct http_head *h, char *data, size_t len, int *n, char **body,
                     size_t *body_len)
{
    if (h->content_length <= 0 || h->chunked)
        return 1;
    if ((uint64_t)h->content_length > c->srv->cfg.max_message) {
        c->srv->stats.http_requests++;
        conn_respond_error(c, 413, "Payload Too Large", "body over maxPayload", NULL);
        return -1;
    }
    *body_len = (size_t)h->content_length;
    if (len - (size_t)*n < *body_len) {
        c->in.max = (size_t)*n + *body_len + MAX_HEAD;
        return 0;
    }
    *body = data + *n;
    *n += (int)*body_len;
    return 1;
}

/* Precondition: CONN_HTTP. Returns bytes consumed, 0 when the head is incomplete (or waits to be handed over), -1
 * when the connection left CONN_HTTP (upgraded, closing or handed over). */
static long process_http(struct conn *c, char *data, size_t len)
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
    if (c->log)
        httplog_begin(c->log, ev_now(c->srv->loop), n < 0 ? "-" : h.method, n < 0 ? 1 : h.method_len,
                      n < 0 ? "-" : h.target, n < 0 ? 1 : h.target_len);
    if (n == -1) {
        int status = http_status_for(h.error);
        conn_respond_error(c, status, status_reason(status), http_error_str(h.error), NULL);
        return -1;
    }
    if (!one_host_at_most(&h)) {
        conn_respond_error(c, 400, "Bad Request", "more than one Host header", NULL);
        return -1;
    }
    origin_form(&h);
    uint32_t to = 0;
    enum conn_head what = c->ops->on_head ? c->ops->on_head(c, &h, &to) : CONN_ROUTE;
    if (what == CONN_HAND_OVER)
        return hand_over(c, to, data, len);
    char *body = NULL;
    size_t body_len = 0;
    if (what == CONN_READ_BODY) {
        int rc = take_body(c, &h, data, len, &n, &body, &body_len);
        if (rc <= 0)
            return rc;
    }
    if (!c->ops->on_request || c->ops->on_request(c, &h, body, body_len) < 0)
        return c->state == CONN_WS ? n : -1;
    c->in.max = MAX_HEAD + 8192;
    /* A held GET is answered within pingInterval by its session's ping. */
    conn_arm_timer(c, c->flags & CONN_FL_HELD ? -1 : c->srv->cfg.handshake_timeout);
    return n;
}

/* Feed input to the state's parser until it needs more bytes. Returns bytes consumed; all of them once the
 * connection stops caring about input (failing, or drained after a close). */
static size_t process(struct conn *c, char *data, size_t len)
{
    size_t off = 0;
    while (off < len) {
        long n;
        if (c->state == CONN_HTTP && (c->flags & CONN_FL_HELD))
            break; /* no pipelining behind a held GET */
        if (c->state == CONN_HTTP)
            n = process_http(c, data + off, len - off);
        else if (c->state == CONN_CLOSED || (c->flags & (CONN_FL_NO_REPLY | CONN_FL_CLOSE_RCVD)))
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
static void feed(struct conn *c, struct buf *b, bool own)
{
    buf_consume(b, process(c, buf_head(b), buf_len(b)));
    if (!own && buf_len(b)) {
        if (c->state != CONN_CLOSED && buf_append(&c->in, buf_head(b), buf_len(b)) < 0)
            conn_kill(c);
        b->rpos = b->wpos = 0;
    }
    buf_release_if_empty(&c->in);
}

/* Read what is there. Input goes to the server's shared scratch buffer; only a partial head or frame left over is
 * copied into the connection's own buffer, so idle connections hold no input memory. */
static void on_readable(struct conn *c)
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
        if (st == IO_ERR && err == ENOBUFS && c->state == CONN_HTTP) {
            conn_respond_error(c, 431, "Request Header Fields Too Large", "request head too large", NULL);
            return;
        }
        conn_kill(c);
        return;
    }
    s->stats.bytes_in += buf_len(b) - before;
    c->last_rx = ev_now(s->loop);
    c->flags &= (uint8_t)~CONN_FL_PINGED; /* any input answers a /ws ping (Socket.IO pings are its session's) */
    feed(c, b, own);
}

void conn_adopt(struct server *s, int fd, const char *bytes, size_t len)
{
    struct conn *c = s->shutting_down ? NULL : conn_new(s, fd);
    if (!c) {
        close(fd);
        return;
    }
    /* The scratch buffer is empty between reads: the bytes go through it as if this worker had read them. */
    if (buf_append(&s->scratch, bytes, len) < 0) {
        conn_kill(c);
        return;
    }
    feed(c, &s->scratch, false);
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    on_readable(container_of(w, struct conn, rio));
}

/* ---- Output ---- */

/* After our output drained: a close handshake that is complete (or one-sided) shuts our side down and waits for the
 * peer's EOF, so the client reads our close frame before the TCP connection goes (no RST over unread data). */
static void after_drain(struct conn *c)
{
    if (c->state != CONN_CLOSING || (c->flags & CONN_FL_SHUT))
        return;
    if (!(c->flags & (CONN_FL_NO_REPLY | CONN_FL_CLOSE_RCVD)))
        return;
    shutdown(c->fd, SHUT_WR);
    c->flags |= CONN_FL_SHUT;
}

/* Write what is queued; from the flush list and when the socket turns writable. */
static void conn_flush(struct conn *c)
{
    struct server *s = c->srv;
    struct iovec iov[WRITE_IOV];
    while (c->out.count) {
        int n = sq_iov(&c->out, iov, WRITE_IOV), err = 0;
        size_t written;
        enum io_status st = net_writev(c->fd, iov, n, &written, &err);
        if (st == IO_AGAIN) {
            ev_io_start(s->loop, &c->wio);
            return;
        }
        if (st != IO_OK) {
            conn_kill(c);
            return;
        }
        s->stats.bytes_out += written;
        sq_consume(&c->out, written);
    }
    ev_io_stop(s->loop, &c->wio);
    after_drain(c);
    if (c->flags & CONN_FL_HAND_OVER && c->state == CONN_HTTP) { /* answered: the waiting head can go */
        c->flags &= (uint8_t)~CONN_FL_HAND_OVER;
        feed(c, &c->in, true);
        if (c->state == CONN_HTTP) /* defensive: the same head is handed over at once now */
            ev_io_start(s->loop, &c->rio);
    }
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    conn_flush(container_of(w, struct conn, wio));
}

/* HTTP: the head did not arrive in time (slowloris). WS: the owner's timer. CLOSING: the peer did not finish the
 * close in time. */
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct conn *c = container_of(w, struct conn, timer);
    (void)loop, (void)revents;
    if (c->state == CONN_WS) {
        if (c->ops->on_timer)
            c->ops->on_timer(c);
        return;
    }
    if (c->state == CONN_HTTP && buf_len(&c->in))
        conn_respond_error(c, 408, "Request Timeout", "request head not received in time", NULL);
    else
        conn_kill(c);
}

void conn_run_flush(struct server *s)
{
    while (s->flush_list) {
        struct conn *c = s->flush_list;
        s->flush_list = c->next_work;
        c->flags &= (uint8_t)~CONN_FL_FLUSH;
        if (c->state != CONN_CLOSED)
            conn_flush(c);
    }
}

void conn_free_dead(struct server *s)
{
    while (s->dead_list) {
        struct conn *c = s->dead_list;
        s->dead_list = c->next_work;
        conn_free(c);
    }
}

void conn_free_all(struct server *s)
{
    conn_free_dead(s);
    while (s->conns) {
        struct conn *c = s->conns;
        if (c->state != CONN_CLOSED) {
            ev_io_stop(s->loop, &c->rio);
            ev_io_stop(s->loop, &c->wio);
            ev_timer_stop(s->loop, &c->timer);
            close(c->fd);
            c->state = CONN_CLOSED;
            if (c->ops->on_gone)
                c->ops->on_gone(c);
        }
        conn_free(c);
    }
}
