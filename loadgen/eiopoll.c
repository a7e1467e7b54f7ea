/* Engine.IO long-polling's HTTP connections for one client; see eiopoll.h.
 *
 *   PC_CLOSED -> PC_CONNECTING -> [PC_TLS] -> PC_IDLE <-> PC_SENT (request written, response being read)
 *        ^__________________________________________/  (EOF while idle, Connection: close, a retry)
 *
 * A keep-alive connection the server closed while we were sending on it is retried once on a new one when no byte
 * of the response came (what browsers do): Node closes idle keep-alive sockets after 5 s, and that race must not
 * count as a failure. */
#define _GNU_SOURCE
#include "loadgen/eiopoll.h"

#include "common/buf.h"
#include "common/http.h"
#include "common/net.h"
#include "common/stream.h"
#include "loadgen/client.h"
#include "loadgen/httpc.h"
#include "loadgen/sio.h"

#include <errno.h>
#include <stdarg.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define JAR_MAX        384
#define SID_MAX        68
#define HEAD_MAX       16384
#define BODY_MAX       (64u << 20) /* a response over this is refused (the server's queue should never get there) */
#define READ_WANT      65536
#define READS_PER_WAKE 8
#define REQ_HEAD_MAX   8192

enum pc_state { PC_CLOSED = 0, PC_CONNECTING, PC_TLS, PC_IDLE, PC_SENT };

struct pconn {
    ev_io io;             /* first: the watcher leads back to the connection */
    struct stream stream; /* plain or TLS over io.fd */
    struct buf in, out;   /* in: a response read so far (carried only while incomplete) */
    struct eiop *p;
    size_t last_len;
    uint8_t state;    /* enum pc_state */
    uint8_t is_post;  /* which of the two */
    uint8_t reused;   /* a response came on it before: a close before the next one may be retried */
    uint8_t retried;  /* this request was retried once already */
    uint32_t sent_ms; /* when its request (or the connect it waits for) began, lg_engine_ms clock */
};

struct eiop {
    struct pconn get, post;
    struct lg_engine *e;
    struct lg_client *c;
    struct buf pending; /* packets for the next POST, joined by \x1e */
    struct buf body;    /* the POST in flight (kept until answered, for a retry) */
    uint32_t t;         /* the cache-busting request counter (t=) */
    bool polling, paused, idle_told, handshake, tcp_told;
    char sid[SID_MAX];
    char jar[JAR_MAX];
};

static void on_pc_io(struct ev_loop *loop, ev_io *w, int revents);
static int on_end(struct eiop *p, struct pconn *k, enum io_status st, int err);

static uint32_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return lg_engine_ms((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec);
}

static const char *what(const struct pconn *k)
{
    return k->is_post ? "polling POST" : k->p->handshake ? "polling handshake GET" : "polling GET";
}

static const char *url_of(const struct eiop *p)
{
    return p->e->opts->targets[p->c->target].url;
}

struct eiop *eiop_new(struct lg_engine *e, struct lg_client *c)
{
    struct eiop *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->e = e;
    p->c = c;
    p->post.is_post = 1;
    p->get.p = p->post.p = p;
    p->get.io.fd = p->post.io.fd = -1;
    p->pending.max = p->body.max = (size_t)e->opts->payload * 4 + (1u << 20);
    return p;
}

static void pc_close(struct eiop *p, struct pconn *k)
{
    if (k->state != PC_CLOSED) {
        ev_io_stop(p->e->loop, &k->io);
        stream_close(&k->stream, k->io.fd);
        k->io.fd = -1;
    }
    buf_free(&k->in);
    buf_free(&k->out);
    k->last_len = 0;
    k->reused = 0;
    k->state = PC_CLOSED;
}

void eiop_free(struct eiop *p)
{
    if (!p)
        return;
    pc_close(p, &p->get);
    pc_close(p, &p->post);
    buf_free(&p->pending);
    buf_free(&p->body);
    free(p);
}

void eiop_seed_cookies(struct eiop *p, const char *jar)
{
    if (strlen(jar) < sizeof p->jar)
        memcpy(p->jar, jar, strlen(jar) + 1); /* whole or not at all: a cut cookie would be a wrong one */
}

const char *eiop_cookies(const struct eiop *p)
{
    return p->jar;
}

size_t eiop_queued(const struct eiop *p)
{
    return buf_len(&p->pending);
}

const char *eiop_overdue(const struct eiop *p, uint32_t now, uint32_t post_ms, uint32_t get_ms, uint32_t *waited_ms)
{
    const struct pconn *ks[2] = {&p->post, &p->get};
    for (int i = 0; i < 2; i++) {
        const struct pconn *k = ks[i];
        uint32_t limit = k->is_post ? post_ms : get_ms, waited = now - k->sent_ms;
        if (k->state == PC_CLOSED || k->state == PC_IDLE || (int32_t)waited < 0 || waited <= limit)
            continue;
        *waited_ms = waited;
        return k->is_post ? "polling POST" : "polling GET";
    }
    return NULL;
}

const char *eiop_sid(const struct eiop *p)
{
    return p->sid;
}

int eiop_set_sid(struct eiop *p, const char *sid, size_t len)
{
    if (len >= sizeof p->sid)
        return -1;
    memcpy(p->sid, sid, len);
    p->sid[len] = '\0';
    return 0;
}

/* ---- failures ---- */

static int fail(struct eiop *p, enum lg_err hs, enum lg_err open, int status, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Report a failure to client.c (which tears c, and p, down). Always -1. */
static int fail(struct eiop *p, enum lg_err hs, enum lg_err open, int status, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lg_client_poll_fail(p->e, p->c, hs, open, status, msg);
    return -1;
}

/* ---- writing ---- */

static void watch(struct eiop *p, struct pconn *k, int events)
{
    if ((k->io.events & (EV_READ | EV_WRITE)) == events && ev_is_active(&k->io))
        return;
    ev_io_stop(p->e->loop, &k->io);
    ev_io_set(&k->io, k->io.fd, events);
    ev_io_start(p->e->loop, &k->io);
}

/* Write what is queued. 0, or -1 with errno. */
static int flush(struct eiop *p, struct pconn *k)
{
    bool want_write;
    if (stream_drain(&k->stream, k->io.fd, &k->out, &want_write) < 0)
        return -1;
    watch(p, k, want_write ? EV_READ | EV_WRITE : EV_READ);
    return 0;
}

/* The request line and headers: the URL's target with transport=polling, the sid and t=, then ours, the user's
 * (-H) and the cookies (one Cookie header: a user's Cookie value comes first). */
static int put_head(struct eiop *p, struct pconn *k, char *req, size_t cap, size_t body_len)
{
    const struct lg_opts *o = p->e->opts;
    const struct lg_target *t = &o->targets[p->c->target];
    char room[256], target[2048];
    const char *user_cookie = NULL;
    lg_client_room(o, p->c->id, room, sizeof room);
    if (lg_request_target(t, o->room_param, room, target, sizeof target) < 0)
        snprintf(target, sizeof target, "%s", t->path);
    int n = snprintf(req, cap, "%s %s%s%s&t=%u HTTP/1.1\r\nHost: %s\r\nUser-Agent: wsh-loadgen/0.1\r\nAccept: */*\r\n",
                     k->is_post ? "POST" : "GET", target, p->sid[0] ? "&sid=" : "", p->sid, p->t++, t->host_header);
    for (int i = 0; i < o->nheaders && n > 0 && (size_t)n < cap; i++) {
        if (!strncasecmp(o->headers[i], "cookie:", 7)) {
            user_cookie = o->headers[i] + 7 + strspn(o->headers[i] + 7, " \t");
            continue;
        }
        n += snprintf(req + n, cap - (size_t)n, "%s\r\n", o->headers[i]);
    }
    if (n > 0 && (size_t)n < cap && (user_cookie || p->jar[0]))
        n += snprintf(req + n, cap - (size_t)n, "Cookie: %s%s%s\r\n", user_cookie ? user_cookie : "",
                      user_cookie && p->jar[0] ? "; " : "", p->jar);
    if (n > 0 && (size_t)n < cap && k->is_post)
        n += snprintf(req + n, cap - (size_t)n, "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: %zu\r\n",
                      body_len);
    if (n < 0 || (size_t)n + 3 > cap)
        return -1;
    memcpy(req + n, "\r\n", 3);
    return n + 2;
}

/* Precondition: k PC_IDLE. Writes the GET, or the POST of p->body. Next: PC_SENT. -1 when c is gone. */
static int send_request(struct eiop *p, struct pconn *k)
{
    char req[REQ_HEAD_MAX];
    size_t blen = k->is_post ? buf_len(&p->body) : 0;
    int n = put_head(p, k, req, sizeof req, blen);
    if (n < 0)
        return fail(p, LG_ERR_CONNECT, LG_ERR_DROPPED, 0, "%s: the %s head is over %d bytes", url_of(p), what(k),
                    REQ_HEAD_MAX);
    k->state = PC_SENT;
    k->last_len = 0;
    k->sent_ms = now_ms();
    if (buf_append(&k->out, req, (size_t)n) < 0 || (blen && buf_append(&k->out, buf_head(&p->body), blen) < 0))
        return fail(p, LG_ERR_HANDSHAKE_CLOSED, LG_ERR_DROPPED, 0, "%s: sending a %s: out of memory", url_of(p),
                    what(k));
    if (flush(p, k) < 0) /* a keep-alive connection the server closed meanwhile: on_end may retry */
        return on_end(p, k, IO_ERR, errno);
    return 0;
}

/* Open k (PC_CLOSED). Next: PC_CONNECTING. -1 when c is gone. */
static int pc_connect(struct eiop *p, struct pconn *k)
{
    const struct lg_opts *o = p->e->opts;
    const struct lg_target *t = &o->targets[p->c->target];
    const struct net_addr *src = lg_client_source(o, p->c->id);
    int fd = stream_connect(&k->stream, &t->addr, src);
    if (fd < 0) {
        int err = errno;
        enum lg_err kind = lg_engine_connect_kind(err);
        return fail(p, kind, kind == LG_ERR_EMFILE ? kind : LG_ERR_DROPPED, 0, "connect to %s for a %s: %s", t->url,
                    what(k), strerror(err));
    }
    k->in = (struct buf){.max = HEAD_MAX + BODY_MAX};
    ev_io_init(&k->io, on_pc_io, fd, EV_WRITE);
    ev_io_start(p->e->loop, &k->io);
    k->state = PC_CONNECTING;
    k->sent_ms = now_ms();
    return 0;
}

/* What k should do now that it is idle: p's GET or POST, when one is owed. -1 when c is gone. */
static int pc_next(struct eiop *p, struct pconn *k)
{
    bool owed = k->is_post ? buf_len(&p->body) > 0 : p->polling && !p->paused;
    if (!owed)
        return 0;
    if (k->state == PC_CLOSED)
        return pc_connect(p, k);
    return k->state == PC_IDLE ? send_request(p, k) : 0;
}

/* Nothing in flight while paused: tell client.c, once. */
static int check_idle(struct eiop *p)
{
    if (!p->paused || p->idle_told || p->get.state == PC_SENT || buf_len(&p->body))
        return 0;
    p->idle_told = true;
    return lg_client_poll_event(p->e, p->c, LG_POLL_IDLE, NULL, NULL, 0);
}

int eiop_open(struct eiop *p)
{
    p->handshake = true;
    p->polling = true;
    return pc_next(p, &p->get);
}

int eiop_poll(struct eiop *p)
{
    p->polling = true;
    return pc_next(p, &p->get);
}

int eiop_pause(struct eiop *p)
{
    p->paused = true;
    return check_idle(p);
}

/* The queued packets become the next POST's body. */
static int start_post(struct eiop *p)
{
    if (buf_len(&p->body) || !buf_len(&p->pending))
        return 0;
    struct buf t = p->body;
    p->body = p->pending;
    p->pending = t;
    return pc_next(p, &p->post);
}

int eiop_send(struct eiop *p, const char *pkt, size_t len)
{
    if ((buf_len(&p->pending) && buf_append(&p->pending, "\x1e", 1) < 0) || buf_append(&p->pending, pkt, len) < 0)
        return fail(p, LG_ERR_HANDSHAKE_CLOSED, LG_ERR_DROPPED, 0, "%s: more than %zu bytes waiting to be POSTed",
                    url_of(p), p->pending.max);
    p->idle_told = false;
    return start_post(p);
}

/* ---- reading ---- */

/* Keep the cookies a response sets (a full jar keeps what it has: the session's first cookies matter most). */
static void keep_cookies(struct eiop *p, const struct http_head *h)
{
    for (size_t i = 0; i < h->num_headers; i++) {
        const struct http_header *x = &h->headers[i];
        if (x->name_len == 10 && !strncasecmp(x->name, "Set-Cookie", 10)) {
            httpc_jar_set(p->jar, sizeof p->jar, x->value, x->value_len);
            if (p->e->ops.set_cookie)
                p->e->ops.set_cookie(p->c, x->value, x->value_len);
        }
    }
}

/* A refused request: the error's kind from its status and engine.io's code. Always -1. */
static int refused(struct eiop *p, struct pconn *k, const struct http_head *h, const char *body, size_t blen)
{
    char shown[100];
    size_t i;
    for (i = 0; i < blen && i < sizeof shown - 1; i++)
        shown[i] = body[i] >= ' ' && body[i] < 127 ? body[i] : ' ';
    shown[i] = '\0';
    if (h->status == 400 && eio_error_code(body, blen) == 1)
        return fail(p, LG_ERR_SIO_SESSION_UNKNOWN, LG_ERR_SIO_SESSION_UNKNOWN, 0,
                    "%s: %s answered 400: %s (the request reached a node without the session)", url_of(p), what(k),
                    shown);
    return fail(p, LG_ERR_HTTP_STATUS, LG_ERR_SIO_HTTP, h->status, "%s: %s answered %d %.*s%s%s", url_of(p), what(k),
                h->status, (int)(h->reason_len > 40 ? 40 : h->reason_len), h->reason, i ? ": " : "", shown);
}

/* A whole 200 response on k: its body to client.c, then k's next request. -1 when c is gone. */
static int answered(struct eiop *p, struct pconn *k, const struct http_head *h, const char *body, size_t blen)
{
    bool was_handshake = !k->is_post && p->handshake;
    k->retried = 0;
    if (h->conn_close) { /* the connection ends here; the next request opens another */
        pc_close(p, k);
    } else {
        k->state = PC_IDLE;
        k->reused = 1;
    }
    if (k->is_post) {
        buf_consume(&p->body, buf_len(&p->body));
        buf_release_if_empty(&p->body);
        if (lg_client_poll_event(p->e, p->c, LG_POLL_POSTED, h, body, blen) < 0 || start_post(p) < 0)
            return -1;
        return check_idle(p);
    }
    p->handshake = false;
    if (lg_client_poll_event(p->e, p->c, LG_POLL_PAYLOAD, was_handshake ? h : NULL, body, blen) < 0)
        return -1;
    if (p->sid[0] && pc_next(p, k) < 0)
        return -1;
    return check_idle(p);
}

/* The body's length once it is all in buf[head..len) (a chunked one moved together first), or -2 / -1. */
static long body_of(struct eiop *p, struct pconn *k, const struct http_head *h, char *buf, size_t len, size_t head,
                    size_t *blen, size_t *used)
{
    if (h->chunked) {
        long n = httpc_chunked(buf + head, len - head, BODY_MAX, blen);
        if (n == -1)
            return fail(p, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, 0, "%s: %s: bad chunked body", url_of(p), what(k));
        *used = head + (size_t)(n > 0 ? n : 0);
        return n;
    }
    if (h->content_length < 0)
        return fail(p, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, 0,
                    "%s: %s: a response without Content-Length or chunked framing", url_of(p), what(k));
    if ((uint64_t)h->content_length > BODY_MAX)
        return fail(p, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, 0, "%s: %s: a body of %lld bytes (over %u)", url_of(p),
                    what(k), (long long)h->content_length, BODY_MAX);
    if (len - head < (size_t)h->content_length)
        return -2;
    *blen = (size_t)h->content_length;
    *used = head + *blen;
    return 1;
}

/* buf[0..len) holds what k read since its request (carried bytes first). -1 when c is gone. */
static int on_bytes(struct eiop *p, struct pconn *k, char *buf, size_t len)
{
    static const struct http_limits limits = {.max_head = HEAD_MAX};
    struct http_header hdrs[48];
    struct http_head h = {.headers = hdrs, .headers_cap = 48};
    if (k->state != PC_SENT)
        return fail(p, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, 0, "%s: %s: bytes from the server with no request out",
                    url_of(p), what(k));
    int n = http_parse_response(buf, len, k->last_len, &h, &limits);
    size_t blen = 0, used = 0;
    long rc = n == -2 ? -2 : n < 0 ? -1 : body_of(p, k, &h, buf, len, (size_t)n, &blen, &used);
    if (n == -1)
        return fail(p, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, 0, "%s: %s: bad response: %s", url_of(p), what(k),
                    http_error_str(h.error));
    if (rc == -1)
        return -1;
    if (rc == -2) { /* keep it all for the next read */
        k->last_len = n == -2 ? len : k->last_len;
        if (buf_append(&k->in, buf, len) < 0)
            return fail(p, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, 0, "%s: %s: a response over %u bytes", url_of(p),
                        what(k), HEAD_MAX + BODY_MAX);
        return 0;
    }
    if (used != len)
        return fail(p, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, 0, "%s: %s: %zu bytes after the response", url_of(p),
                    what(k), len - used);
    keep_cookies(p, &h);
    const char *body = buf + n;
    if (h.status != 200)
        return refused(p, k, &h, body, blen);
    return answered(p, k, &h, body, blen);
}

/* k's connection ended (EOF or an error) in its state. -1 when c is gone. */
static int on_end(struct eiop *p, struct pconn *k, enum io_status st, int err)
{
    bool nothing_read = buf_len(&k->in) == 0;
    uint8_t state = k->state, reused = k->reused, retried = k->retried;
    pc_close(p, k);
    if (state == PC_IDLE) /* the server closed an idle keep-alive connection: the next request opens another */
        return 0;
    if (state == PC_SENT && reused && !retried && nothing_read) {
        k->retried = 1;
        return pc_next(p, k);
    }
    const char *why = st == IO_EOF ? "connection closed" : strerror(err);
    if (state == PC_TLS)
        return fail(p, LG_ERR_TLS, LG_ERR_DROPPED, 0, "%s: TLS handshake for a %s: %s", url_of(p), what(k), why);
    return fail(p, LG_ERR_HANDSHAKE_CLOSED, LG_ERR_DROPPED, 0, "%s: %s: %s before the response", url_of(p), what(k),
                why);
}

/* Precondition: PC_SENT or PC_IDLE, readable. Reads until nothing more (or READS_PER_WAKE). -1 when c is gone. */
static int pc_read(struct eiop *p, struct pconn *k)
{
    struct buf *rb = &p->e->rbuf;
    for (int i = 0; i < READS_PER_WAKE; i++) {
        rb->rpos = rb->wpos = 0;
        if (buf_len(&k->in)) {
            if (buf_append(rb, buf_head(&k->in), buf_len(&k->in)) < 0)
                return fail(p, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, 0, "%s: out of memory", url_of(p));
            buf_free(&k->in);
            k->in.max = HEAD_MAX + BODY_MAX;
        }
        size_t had = buf_len(rb);
        int err = 0;
        enum io_status st = stream_read(&k->stream, k->io.fd, rb, READ_WANT, &err);
        if (st == IO_AGAIN) {
            if (had && buf_append(&k->in, buf_head(rb), had) < 0)
                return fail(p, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, 0, "%s: out of memory", url_of(p));
            watch(p, k, stream_events(&k->stream, buf_len(&k->out) ? EV_READ | EV_WRITE : EV_READ));
            return 0;
        }
        if (st != IO_OK) {
            if (had && buf_append(&k->in, buf_head(rb), had) < 0)
                return -1;
            return on_end(p, k, st, err);
        }
        bool drained = !stream_is_tls(&k->stream) && buf_len(rb) - had < READ_WANT;
        if (on_bytes(p, k, buf_head(rb), buf_len(rb)) < 0)
            return -1;
        if (drained || k->state != PC_SENT)
            return 0;
    }
    return 0;
}

/* ---- connecting ---- */

/* Precondition: PC_CONNECTING, writable. Next: PC_TLS or PC_IDLE (and its request). -1 when c is gone. */
static int on_connected(struct eiop *p, struct pconn *k)
{
    const struct lg_target *t = &p->e->opts->targets[p->c->target];
    int err = stream_connected(&k->stream, k->io.fd);
    if (err) {
        enum lg_err kind = lg_engine_connect_kind(err);
        pc_close(p, k);
        return fail(p, kind, LG_ERR_DROPPED, 0, "connect to %s for a %s: %s", t->url, what(k), strerror(err));
    }
    if (!p->tcp_told) {
        p->tcp_told = true;
        if (lg_client_poll_event(p->e, p->c, LG_POLL_TCP, NULL, NULL, 0) < 0)
            return -1;
    }
    if (!t->tls) {
        k->state = PC_IDLE;
        watch(p, k, EV_READ);
        return pc_next(p, k);
    }
    if (stream_start_tls(&k->stream, k->io.fd, p->e->tls_ctx, t->host) < 0)
        return fail(p, LG_ERR_TLS, LG_ERR_DROPPED, 0, "%s: out of memory for TLS", t->url);
    k->state = PC_TLS;
    watch(p, k, EV_READ | EV_WRITE);
    return 0;
}

/* Precondition: PC_TLS. Next: PC_TLS, or PC_IDLE (and its request). -1 when c is gone. */
static int on_tls(struct eiop *p, struct pconn *k)
{
    int events;
    char err[160];
    enum io_status st = stream_handshake(&k->stream, &events, err, sizeof err);
    if (st == IO_AGAIN) {
        watch(p, k, events);
        return 0;
    }
    if (st != IO_OK)
        return fail(p, LG_ERR_TLS, LG_ERR_DROPPED, 0, "%s: %s (a %s)", url_of(p), err, what(k));
    k->state = PC_IDLE;
    watch(p, k, EV_READ);
    return pc_next(p, k);
}

static void on_pc_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct pconn *k = (struct pconn *)(void *)w;
    struct eiop *p = k->p;
    if (k->state == PC_CONNECTING) {
        on_connected(p, k);
        return;
    }
    if (k->state == PC_TLS) {
        on_tls(p, k);
        return;
    }
    if ((revents & EV_WRITE) && buf_len(&k->out) && flush(p, k) < 0) {
        int err = errno;
        on_end(p, k, IO_ERR, err);
        return;
    }
    if (revents & EV_READ || (stream_is_tls(&k->stream) && (revents & EV_WRITE)))
        pc_read(p, k);
}
