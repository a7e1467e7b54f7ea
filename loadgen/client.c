/* loadgen's client connections; see client.h for the states and the division of work with worker.c. */
#define _GNU_SOURCE
#include "loadgen/client.h"

#include "common/cookie.h"
#include "common/hist.h"
#include "common/http.h"
#include "common/net.h"
#include "common/stream.h"
#include "loadgen/eiopoll.h"
#include "loadgen/payload.h"
#include "loadgen/sio.h"
#include "loadgen/tally.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF_WANT      65536
#define CARRY_MAX      16384         /* the response head, later an incomplete frame header */
#define MAX_MESSAGE    (64ull << 20) /* a server message over this is a protocol error (1009) */
#define READS_PER_WAKE 8             /* fairness: other clients get their turn */
#define USER_AGENT     "wsh-loadgen/0.1"
/* The head kept of a message split over chunks: the payload parser's prefix, plus room for a Socket.IO envelope
 * (42/nsp,["event",") and the escaping of the fields. */
#define PRE_MAX       ((size_t)2 * LG_PAYLOAD_PREFIX)
#define SIO_NSP_ROOM  128                   /* "41/nsp," with the longest --namespace */
#define SIO_AUTH_ROOM (SIO_NSP_ROOM + 4096) /* "40/nsp,{auth}" with the longest --auth */

/* A handshake in progress: what only a connecting client needs. */
struct hs_slot {
    struct lg_client *c;
    int64_t start_ns, tcp_ns;
    size_t last_len; /* http_parse_response's resume point */
    char accept[WS_ACCEPT_LEN + 1];
    bool eio_open;    /* socketio: the Engine.IO open packet came, our CONNECT is sent */
    bool nsp_ok;      /* polling: the namespace accepted the client (the upgrade may follow) */
    bool can_upgrade; /* polling: the open packet lists "websocket" among its upgrades */
    bool probed;      /* polling: "3probe" came; waiting for the polling requests to end */
};

static void on_io(struct ev_loop *loop, ev_io *w, int revents);

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* xorshift64*: masks must be unpredictable to intermediaries, not cryptographic; seeded from getrandom. */
static uint32_t rnd32(struct lg_engine *e)
{
    e->rng ^= e->rng >> 12;
    e->rng ^= e->rng << 25;
    e->rng ^= e->rng >> 27;
    return (uint32_t)((e->rng * 0x2545F4914F6CDD1DULL) >> 32);
}

void lg_engine_note(struct lg_engine *e, enum lg_err k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lg_tally_verror(&e->tally, k, fmt, ap);
    va_end(ap);
}

int lg_engine_init(struct lg_engine *e, struct ev_loop *loop, const struct lg_opts *o, uint32_t max_inflight, char *err,
                   size_t errlen)
{
    memset(e, 0, sizeof *e);
    e->loop = loop;
    e->opts = o;
    if (getrandom(&e->rng, sizeof e->rng, 0) != sizeof e->rng || e->rng == 0)
        e->rng = (uint64_t)now_ns() | 1;
    for (int i = 0; i < o->ntargets; i++) {
        if (o->targets[i].tls && !e->tls_ctx) {
            e->tls_ctx = tls_client_ctx_new(o->cacert, !o->insecure, err, errlen);
            if (!e->tls_ctx)
                return -1;
        }
    }
    /* c->slot is 16 bits: more handshakes than that at once would not go faster anyway. */
    e->nslots = max_inflight == 0 ? 1 : max_inflight > UINT16_MAX ? UINT16_MAX : max_inflight;
    e->slots = calloc(e->nslots, sizeof *e->slots);
    e->free_slots = calloc(e->nslots, sizeof *e->free_slots);
    e->connect_hist = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    e->handshake_hist = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    if (!e->slots || !e->free_slots || !e->connect_hist || !e->handshake_hist) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < e->nslots; i++)
        e->free_slots[e->nfree++] = e->nslots - 1 - i;
    return 0;
}

void lg_engine_free(struct lg_engine *e)
{
    free(e->slots);
    free(e->free_slots);
    hist_free(e->connect_hist);
    hist_free(e->handshake_hist);
    buf_free(&e->rbuf);
    if (e->tls_ctx)
        tls_ctx_free(e->tls_ctx);
    memset(e, 0, sizeof *e);
}

bool lg_engine_has_slot(const struct lg_engine *e)
{
    return e->nfree > 0;
}

/* ---- plumbing ---- */

static void watch(struct lg_engine *e, struct lg_client *c, int events)
{
    if ((c->io.events & (EV_READ | EV_WRITE)) == events && ev_is_active(&c->io))
        return;
    ev_io_stop(e->loop, &c->io);
    ev_io_set(&c->io, c->io.fd, events);
    ev_io_start(e->loop, &c->io);
}

static struct hs_slot *slot_of(struct lg_engine *e, const struct lg_client *c)
{
    return &e->slots[c->slot];
}

static void slot_take(struct lg_engine *e, struct lg_client *c)
{
    uint32_t i = e->free_slots[--e->nfree];
    e->slots[i] = (struct hs_slot){.c = c, .start_ns = now_ns()};
    c->slot = (uint16_t)i;
    e->inflight++;
}

static void slot_put(struct lg_engine *e, struct lg_client *c)
{
    e->slots[c->slot].c = NULL;
    e->free_slots[e->nfree++] = c->slot;
    e->inflight--;
}

static bool in_handshake(const struct lg_client *c)
{
    return c->state == LC_CONNECTING || c->state == LC_TLS || c->state == LC_UPGRADE || c->state == LC_SIO ||
           c->state == LC_POLL || c->state == LC_PROBE;
}

/* Close the socket and free every per-client block; the client ends in LC_DONE. No callback. */
static void teardown(struct lg_engine *e, struct lg_client *c)
{
    if (c->state == LC_DONE || c->state == LC_IDLE) {
        c->state = LC_DONE;
        return;
    }
    if (in_handshake(c))
        slot_put(e, c);
    eiop_free(c->poll);
    c->poll = NULL;
    if (c->io.fd >= 0) { /* a polling client has no websocket before its upgrade */
        ev_io_stop(e->loop, &c->io);
        stream_close(&c->stream, c->io.fd);
        c->io.fd = -1;
    }
    buf_free(&c->carry);
    buf_free(&c->out);
    free(c->pre);
    c->pre = NULL;
    free(c->sio_asm);
    c->sio_asm = NULL;
    c->state = LC_DONE;
}

void lg_client_free(struct lg_engine *e, struct lg_client *c)
{
    teardown(e, c);
}

enum lg_err lg_engine_connect_kind(int err)
{
    switch (err) {
    case ECONNREFUSED: return LG_ERR_REFUSED;
    case ETIMEDOUT: return LG_ERR_CONNECT_TIMEOUT;
    case EMFILE:
    case ENFILE: return LG_ERR_EMFILE;
    case EADDRNOTAVAIL:
    case EADDRINUSE: return LG_ERR_EADDRNOTAVAIL;
    default: return LG_ERR_CONNECT;
    }
}

/* The connect phase did not succeed, of kind k as given. Precondition: a handshake state (or LC_IDLE). Next:
 * LC_DONE. */
static void fail_as(struct lg_engine *e, struct lg_client *c, enum lg_err k, const char *msg)
{
    if (c->flags & LC_FL_RECON)
        e->recon_fail[k]++; /* a reconnect attempt: expected to fail while the node is down */
    else
        lg_engine_note(e, k, "%s", msg);
    teardown(e, c);
    e->ops.failed(c);
}

static void fail(struct lg_engine *e, struct lg_client *c, enum lg_err k, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* fail_as, where a polling client's websocket failing in its upgrade is socketio_upgrade_failed (the polling
 * requests report through lg_client_poll_fail with their own kinds; out of descriptors stays what it is). */
static void fail(struct lg_engine *e, struct lg_client *c, enum lg_err k, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->poll && c->state != LC_POLL && k != LG_ERR_EMFILE && k != LG_ERR_EADDRNOTAVAIL)
        k = LG_ERR_SIO_UPGRADE;
    fail_as(e, c, k, msg);
}

/* Our closing handshake is over, well or not (the failure already counted). Next: LC_DONE. */
static void finish_close(struct lg_engine *e, struct lg_client *c, bool clean)
{
    teardown(e, c);
    e->ops.closed(c, clean);
}

/* Our closing handshake failed, of kind k (LG_ERR_CLOSE: the server answered wrongly, reset or broke; or
 * LG_ERR_CLOSE_TIMEOUT: no answer in time), counted once: close_got 2 means a wrong answer was counted already.
 * Precondition: LC_CLOSING. Next: LC_DONE. */
static void close_fail(struct lg_engine *e, struct lg_client *c, enum lg_err k, const char *msg)
{
    if (c->close_got != 2)
        lg_engine_note(e, k, "client %u: %s", c->id, msg);
    finish_close(e, c, false);
}

/* An open client was closed, reset or broke the protocol; a closing one failed its close. Next: LC_DONE. */
static void lose(struct lg_engine *e, struct lg_client *c, enum lg_err k, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void lose(struct lg_engine *e, struct lg_client *c, enum lg_err k, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->state == LC_CLOSING) {
        close_fail(e, c, LG_ERR_CLOSE, msg);
        return;
    }
    lg_engine_note(e, k, "client %u: %s", c->id, msg);
    teardown(e, c);
    e->ops.lost(c);
}

/* Write what is queued, keeping EV_WRITE interest while the socket is full. 0, or -1 with errno (not yet torn
 * down: the caller decides what the failure means). */
static int flush(struct lg_engine *e, struct lg_client *c)
{
    bool want_write;
    if (stream_drain(&c->stream, c->io.fd, &c->out, &want_write) < 0)
        return -1;
    watch(e, c, want_write ? EV_READ | EV_WRITE : EV_READ);
    return 0;
}

/* Queue one frame, masked with a fresh key (RFC 6455 5.3), and try to write it. */
static int queue_frame(struct lg_engine *e, struct lg_client *c, uint8_t opcode, const void *data, size_t len)
{
    uint8_t hdr[WS_MAX_HEADER], mask[4];
    uint32_t m = rnd32(e);
    memcpy(mask, &m, sizeof mask);
    size_t hl = ws_frame_header(hdr, opcode, true, len, mask);
    if (buf_reserve(&c->out, hl + len) < 0) {
        errno = ENOBUFS;
        return -1;
    }
    memcpy(buf_tail(&c->out), hdr, hl);
    buf_commit(&c->out, hl);
    uint8_t *p = (uint8_t *)buf_tail(&c->out);
    if (len)
        memcpy(p, data, len);
    ws_mask(p, len, mask, 0);
    buf_commit(&c->out, len);
    return flush(e, c);
}

int lg_client_send(struct lg_engine *e, struct lg_client *c, uint8_t opcode, const void *data, size_t len)
{
    if (c->state != LC_OPEN)
        return -1;
    if (c->poll) /* lost already when it fails */
        return eiop_send(c->poll, data, len);
    if (queue_frame(e, c, opcode, data, len) == 0)
        return 0;
    lose(e, c, LG_ERR_DROPPED, "sending: %s", strerror(errno));
    return -1;
}

/* Over polling: pkt and "b" + base64(att) as one queued item pair, so they go in the same POST. */
static int poll_emit(struct lg_engine *e, struct lg_client *c, const char *pkt, size_t len, const void *att,
                     size_t alen)
{
    size_t cap = len + 1 + 1 + (alen + 2) / 3 * 4 + 1;
    char *both = malloc(cap);
    if (!both) {
        lose(e, c, LG_ERR_DROPPED, "sending: out of memory");
        return -1;
    }
    memcpy(both, pkt, len);
    both[len] = EIO_RS;
    size_t n = eio_encode_binary(both + len + 1, cap - len - 1, att, alen);
    int rc = eiop_send(c->poll, both, len + 1 + n);
    free(both);
    return rc;
}

int lg_client_emit(struct lg_engine *e, struct lg_client *c, const char *pkt, size_t len, const void *att, size_t alen)
{
    if (c->state != LC_OPEN)
        return -1;
    if (c->poll) /* lost already when it fails */
        return att ? poll_emit(e, c, pkt, len, att, alen) : eiop_send(c->poll, pkt, len);
    if (queue_frame(e, c, WS_OP_TEXT, pkt, len) == 0 && (!att || queue_frame(e, c, WS_OP_BINARY, att, alen) == 0))
        return 0;
    lose(e, c, LG_ERR_DROPPED, "sending: %s", strerror(errno));
    return -1;
}

static void on_readable(struct lg_engine *e, struct lg_client *c);

bool lg_client_alive(struct lg_engine *e, struct lg_client *c)
{
    if (c->state != LC_OPEN)
        return false;
    if (c->poll || c->io.fd < 0) /* still polling: its requests report their own failures */
        return true;
    char b;
    ssize_t n = recv(c->io.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        on_readable(e, c); /* reads the end: lost */
    return c->state == LC_OPEN;
}

void lg_client_close(struct lg_engine *e, struct lg_client *c)
{
    if (c->state != LC_OPEN)
        return;
    uint8_t payload[WS_MAX_CONTROL];
    char bye[SIO_NSP_ROOM + 2];
    size_t n = ws_close_payload(payload, WS_CLOSE_NORMAL, "");
    c->state = LC_CLOSING;
    if (c->poll) { /* polling: DISCONNECT and the Engine.IO close in one POST; its "ok" ends the close */
        size_t bl = eio_encode_control(bye, sizeof bye - 2, EIO_DISCONNECT, e->opts->sio_nsp, NULL);
        memcpy(bye + bl,
               "\x1e"
               "1",
               2);
        if (eiop_pause(c->poll) == 0)
            eiop_send(c->poll, bye, bl + 2);
        return;
    }
    /* Socket.IO: leave the namespace first, as socket.disconnect() does, so the server logs a client disconnect */
    size_t bl = e->opts->protocol == LG_PROTO_SOCKETIO
                    ? eio_encode_control(bye, sizeof bye, EIO_DISCONNECT, e->opts->sio_nsp, NULL)
                    : 0;
    if ((bl && queue_frame(e, c, WS_OP_TEXT, bye, bl) < 0) || queue_frame(e, c, WS_OP_CLOSE, payload, n) < 0)
        lose(e, c, LG_ERR_CLOSE, "sending our close: %s", strerror(errno));
}

void lg_client_abort(struct lg_engine *e, struct lg_client *c, const char *why)
{
    if (c->state == LC_CLOSING)
        close_fail(e, c, LG_ERR_CLOSE_TIMEOUT, why);
}

/* ---- connect phase ---- */

/* A polling client's upgrade goes to the same target with transport=websocket and the session's sid. */
static int upgrade_target(char *target, size_t cap, const char *sid)
{
    static const char from[] = "transport=polling", to[] = "transport=websocket";
    char *at = strstr(target, from), *next;
    while (at && (next = strstr(at + 1, from))) /* the last one: lg_socketio_path appended it */
        at = next;
    size_t len = strlen(target), tail = at ? strlen(at + sizeof from - 1) : 0;
    if (!at || len + (sizeof to - sizeof from) + 5 + strlen(sid) + 1 > cap)
        return -1;
    memmove(at + sizeof to - 1, at + sizeof from - 1, tail + 1);
    memcpy(at, to, sizeof to - 1);
    strcat(target, "&sid=");
    strcat(target, sid);
    return 0;
}

/* The -H headers and, with a polling session's cookies, one Cookie header (a -H Cookie value first) after the
 * n bytes of req. The new length, or -1 when it does not fit. */
static int put_headers(const struct lg_opts *o, const char *jar, char *req, size_t cap, int n)
{
    const char *user_cookie = NULL;
    for (int i = 0; i < o->nheaders && n > 0 && (size_t)n < cap; i++) {
        if (jar[0] && !strncasecmp(o->headers[i], "cookie:", 7)) {
            user_cookie = o->headers[i] + 7 + strspn(o->headers[i] + 7, " \t");
            continue;
        }
        n += snprintf(req + n, cap - (size_t)n, "%s\r\n", o->headers[i]);
    }
    if (n > 0 && (size_t)n < cap && jar[0])
        n += snprintf(req + n, cap - (size_t)n, "Cookie: %s%s%s\r\n", user_cookie ? user_cookie : "",
                      user_cookie ? "; " : "", jar);
    return n;
}

/* Queue the upgrade request. Precondition: TCP (and TLS) up. Next: LC_UPGRADE. */
/* What a reconnect sends back of its earlier connections' cookies ("" otherwise). */
static const char *kept_cookies(struct lg_engine *e, struct lg_client *c)
{
    const char *jar = c->flags & LC_FL_RECON && e->ops.cookies ? e->ops.cookies(c) : NULL;
    return jar ? jar : "";
}

/* --reconnect: the cookies a response sets are kept for the client's next connection. */
static void keep_set_cookies(struct lg_engine *e, struct lg_client *c, const struct http_head *h)
{
    for (size_t i = 0; e->ops.set_cookie && i < h->num_headers; i++) {
        const struct http_header *x = &h->headers[i];
        if (x->name_len == 10 && !strncasecmp(x->name, "Set-Cookie", 10))
            e->ops.set_cookie(c, x->value, x->value_len);
    }
}

static void send_upgrade(struct lg_engine *e, struct lg_client *c)
{
    const struct lg_opts *o = e->opts;
    const struct lg_target *t = &o->targets[c->target];
    struct hs_slot *s = slot_of(e, c);
    char key[25], room[256], target[2048], req[8192];
    ws_client_key(key);
    ws_accept_key(key, strlen(key), s->accept);
    lg_client_room(o, c->id, room, sizeof room);
    if (lg_request_target(t, o->room_param, room, target, sizeof target) < 0)
        snprintf(target, sizeof target, "%s", t->path);
    if (c->poll && upgrade_target(target, sizeof target, eiop_sid(c->poll)) < 0) {
        fail(e, c, LG_ERR_CONNECT, "%s: the upgrade's URL is too long", t->url);
        return;
    }
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nUser-Agent: " USER_AGENT "\r\n",
                     target, t->host_header, key);
    n = put_headers(o, c->poll ? eiop_cookies(c->poll) : kept_cookies(e, c), req, sizeof req, n);
    if (n < 0 || (size_t)n + 3 > sizeof req) {
        fail(e, c, LG_ERR_CONNECT, "%s: the upgrade request is over %zu bytes", t->url, sizeof req);
        return;
    }
    memcpy(req + n, "\r\n", 3);
    c->state = LC_UPGRADE;
    if (buf_append(&c->out, req, (size_t)n + 2) < 0 || flush(e, c) < 0)
        fail(e, c, LG_ERR_HANDSHAKE_CLOSED, "%s: sending the upgrade request: %s", t->url, strerror(errno));
}

/* Open the websocket: the client's own, or a polling client's upgrade. Next: LC_CONNECTING, or LC_DONE. */
static void connect_ws(struct lg_engine *e, struct lg_client *c)
{
    const struct lg_opts *o = e->opts;
    const struct lg_target *t = &o->targets[c->target];
    const struct net_addr *src = lg_client_source(o, c->id);
    c->state = LC_CONNECTING; /* so that a failure gives the slot back */
    c->io.fd = -1;
    int fd = stream_connect(&c->stream, &t->addr, src);
    if (fd < 0) {
        int err = errno;
        char where[80] = "";
        if (src)
            net_addr_str(src, where, sizeof where);
        fail(e, c, lg_engine_connect_kind(err), "connect to %s%s%s: %s", t->url, src ? " from " : "", where,
             strerror(err));
        return;
    }
    ev_io_init(&c->io, on_io, fd, EV_WRITE);
    c->io.data = e;
    ev_io_start(e->loop, &c->io);
}

void lg_client_start(struct lg_engine *e, struct lg_client *c)
{
    const struct lg_opts *o = e->opts;
    slot_take(e, c);
    c->close_got = 0; /* a client connecting again (--churn) must not inherit its last close */
    c->pre_len = 0;
    c->msg_len = 0;
    c->io.fd = -1;
    c->carry = (struct buf){.max = CARRY_MAX};
    c->out = (struct buf){.max = (size_t)o->payload * 2 + (1u << 20)};
    if (o->protocol != LG_PROTO_SOCKETIO || !o->sio_polling) {
        connect_ws(e, c);
        return;
    }
    c->state = LC_POLL;
    c->poll = eiop_new(e, c);
    if (!c->poll) {
        fail(e, c, LG_ERR_CONNECT, "%s: out of memory for a polling client", o->targets[c->target].url);
        return;
    }
    eiop_seed_cookies(c->poll, kept_cookies(e, c)); /* a new session, with the cookies a browser kept */
    eiop_open(c->poll);                             /* the failure, if any, is reported */
}

/* Precondition: LC_CONNECTING and writable. Next: LC_TLS, LC_UPGRADE or LC_DONE. */
static void on_connecting(struct lg_engine *e, struct lg_client *c)
{
    const struct lg_target *t = &e->opts->targets[c->target];
    int err = stream_connected(&c->stream, c->io.fd);
    if (err) {
        fail(e, c, lg_engine_connect_kind(err), "connect to %s: %s", t->url, strerror(err));
        return;
    }
    struct hs_slot *s = slot_of(e, c);
    if (!c->poll) { /* a polling client's connect time is its first request's */
        s->tcp_ns = now_ns();
        if (!(c->flags & LC_FL_REJOIN))
            hist_record(e->connect_hist, s->tcp_ns - s->start_ns);
    }
    if (!t->tls) {
        send_upgrade(e, c);
        return;
    }
    if (stream_start_tls(&c->stream, c->io.fd, e->tls_ctx, t->host) < 0) {
        fail(e, c, LG_ERR_TLS, "%s: out of memory for TLS", t->url);
        return;
    }
    c->state = LC_TLS;
    watch(e, c, EV_READ | EV_WRITE);
}

/* Precondition: LC_TLS. Next: LC_TLS (more to do), LC_UPGRADE or LC_DONE. */
static void on_tls(struct lg_engine *e, struct lg_client *c)
{
    int events;
    char err[160];
    enum io_status st = stream_handshake(&c->stream, &events, err, sizeof err);
    if (st == IO_OK) {
        send_upgrade(e, c);
    } else if (st == IO_AGAIN) {
        watch(e, c, events);
    } else {
        fail(e, c, LG_ERR_TLS, "%s: %s", e->opts->targets[c->target].url, err); /* err: "TLS handshake: ..." */
    }
}

/* Where the balancer put this client (a reconnect's apart): the node header, else the sticky cookie's value. */
static void note_node(struct lg_engine *e, const struct lg_client *c, const struct http_head *h)
{
    if (c->flags & LC_FL_REJOIN && !(c->flags & LC_FL_RECON))
        return; /* a --churn return: the connect phase's figures count each client once */
    struct lg_nodes *t = c->flags & LC_FL_RECON ? &e->recon_nodes : &e->tally.nodes;
    const struct http_header *x = http_find_header(h, e->opts->node_header);
    if (x) {
        lg_tally_node(t, x->value, x->value_len);
        return;
    }
    const char *name = e->opts->cookie;
    size_t nlen = name ? strlen(name) : 0;
    for (size_t i = 0; name && i < h->num_headers; i++) {
        const struct http_header *sc = &h->headers[i];
        struct cookie_pair pr;
        if (sc->name_len != 10 || strncasecmp(sc->name, "Set-Cookie", 10) != 0 ||
            !cookie_set_cookie_pair(sc->value, sc->value_len, &pr) || !cookie_pair_named(&pr, name, nlen))
            continue;
        lg_tally_node(t, pr.val, (size_t)(pr.val_end - pr.val));
        return;
    }
    lg_tally_node(t, NULL, 0);
}

/* Is this the 101 we asked for? 0, or -1 after fail(). A refusal's reason is its body's start, if it came. */
static int check_upgrade(struct lg_engine *e, struct lg_client *c, const struct http_head *h, const char *buf,
                         size_t len, size_t head_len)
{
    const char *url = e->opts->targets[c->target].url;
    if (h->status != 101) {
        char body[100];
        size_t i;
        for (i = 0; head_len + i < len && i < sizeof body - 1; i++) {
            char ch = buf[head_len + i];
            body[i] = ch >= ' ' && ch < 127 ? ch : ' ';
        }
        body[i] = '\0';
        if (!c->poll && !(c->flags & LC_FL_RECON)) /* an upgrade's refusal is socketio_upgrade_failed */
            lg_tally_status(&e->tally, h->status);
        fail(e, c, LG_ERR_HTTP_STATUS, "%s answered %d %.*s%s%s", url, h->status, (int)h->reason_len, h->reason,
             i ? ": " : "", body);
        return -1;
    }
    const struct http_header *up = http_find_header(h, "Upgrade");
    const struct http_header *acc = http_find_header(h, "Sec-WebSocket-Accept");
    if (!up || !http_has_token(up->value, up->value_len, "websocket") || !h->conn_upgrade) {
        fail(e, c, LG_ERR_BAD_UPGRADE, "%s: 101 without Upgrade: websocket and Connection: upgrade", url);
        return -1;
    }
    if (!acc || acc->value_len != WS_ACCEPT_LEN || memcmp(acc->value, slot_of(e, c)->accept, WS_ACCEPT_LEN) != 0) {
        fail(e, c, LG_ERR_BAD_UPGRADE, "%s: wrong Sec-WebSocket-Accept", url);
        return -1;
    }
    return 0;
}

/* The handshake is over: the client is open. */
static void open_client(struct lg_engine *e, struct lg_client *c)
{
    if (!(c->flags & LC_FL_REJOIN))
        hist_record(e->handshake_hist, now_ns() - slot_of(e, c)->tcp_ns);
    slot_put(e, c);
    c->state = LC_OPEN;
    e->ops.opened(c);
}

/* Parse the response gathered in buf[0..len). Returns the bytes of the head once the client is open, 0 when more
 * is needed (or it failed: then c->state is LC_DONE). */
static size_t on_response(struct lg_engine *e, struct lg_client *c, const char *buf, size_t len)
{
    static const struct http_limits limits = {.max_head = CARRY_MAX};
    struct http_header hdrs[48];
    struct http_head h = {.headers = hdrs, .headers_cap = 48};
    struct hs_slot *s = slot_of(e, c);
    int n = http_parse_response(buf, len, s->last_len, &h, &limits);
    if (n == -2) {
        s->last_len = len;
        return 0;
    }
    if (n < 0) {
        fail(e, c, LG_ERR_BAD_UPGRADE, "%s: bad response: %s", e->opts->targets[c->target].url,
             http_error_str(h.error));
        return 0;
    }
    if (check_upgrade(e, c, &h, buf, len, (size_t)n) < 0)
        return 0;
    if (!c->poll) { /* the connect phase's figures once per client; a reconnect's apart */
        note_node(e, c, &h);
        keep_set_cookies(e, c, &h);
    }
    c->reader = (struct ws_reader){.role = WS_ROLE_CLIENT, .max_message = MAX_MESSAGE};
    if (c->poll) { /* the upgrade's probe; polling goes on meanwhile */
        c->state = LC_PROBE;
        if (queue_frame(e, c, WS_OP_TEXT, "2probe", 6) < 0) {
            fail(e, c, LG_ERR_SIO_UPGRADE, "%s: sending 2probe: %s", e->opts->targets[c->target].url, strerror(errno));
            return 0;
        }
    } else if (e->opts->protocol == LG_PROTO_SOCKETIO)
        c->state = LC_SIO; /* the Engine.IO and namespace handshakes follow, in frames */
    else
        open_client(e, c);
    return (size_t)n;
}

/* ---- frames ---- */

/* ---- Socket.IO (--protocol socketio) ---- */

/* The Socket.IO layer gave up on c: in the handshake a failure of kind hs, once open a loss of kind open. */
static void sio_end(struct lg_engine *e, struct lg_client *c, enum lg_err hs, enum lg_err open, const char *why)
{
    char msg[160];
    if (in_handshake(c)) { /* fail_as: a polling client's packets are not its upgrade's failure */
        snprintf(msg, sizeof msg, "%s: %s", e->opts->targets[c->target].url, why);
        fail_as(e, c, hs, msg);
    } else {
        lose(e, c, open, "%s", why); /* closing: the close failed */
    }
}

/* One Engine.IO packet of ours: over polling until the upgrade is done, else in a text frame. 0, or -1 when the
 * client is gone (the failure reported). */
static int sio_send(struct lg_engine *e, struct lg_client *c, const char *pkt, size_t len)
{
    if (c->poll)
        return eiop_send(c->poll, pkt, len);
    if (queue_frame(e, c, WS_OP_TEXT, pkt, len) == 0)
        return 0;
    char why[100];
    snprintf(why, sizeof why, "sending a packet: %s", strerror(errno));
    sio_end(e, c, LG_ERR_HANDSHAKE_CLOSED, LG_ERR_DROPPED, why);
    return -1;
}

static bool is_ours(const struct lg_engine *e, struct jscan_span nsp)
{
    return strlen(e->opts->sio_nsp) == nsp.len && memcmp(e->opts->sio_nsp, nsp.p, nsp.len) == 0;
}

/* The Engine.IO open packet: note the heartbeat (and over polling the sid), then CONNECT to the namespace; a
 * polling client then keeps a GET outstanding for the reply and what follows. */
static void on_eio_open(struct lg_engine *e, struct lg_client *c, const struct eio_packet *k)
{
    const struct lg_opts *o = e->opts;
    struct eio_open op;
    const char *why = "the sid is too long";
    if (eio_open_parse(k->data.p, k->data.len, c->poll != NULL, &op, &why) < 0 ||
        (c->poll && eiop_set_sid(c->poll, op.sid.p, op.sid.len) < 0)) {
        sio_end(e, c, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, why);
        return;
    }
    uint64_t wait = (uint64_t)op.ping_interval + op.ping_timeout;
    c->ping_wait_ms = wait < UINT32_MAX ? (uint32_t)wait : UINT32_MAX;
    c->ping_due = sio_ping_deadline(lg_engine_ms(now_ns()), c->ping_wait_ms, 0);
    char pkt[SIO_AUTH_ROOM];
    size_t n = eio_encode_control(pkt, sizeof pkt, EIO_CONNECT, o->sio_nsp, o->sio_auth);
    struct hs_slot *s = slot_of(e, c);
    s->eio_open = true;
    s->can_upgrade = op.upgrade_ws;
    if (sio_send(e, c, pkt, n) == 0 && c->poll)
        eiop_poll(c->poll);
}

/* CONNECT_ERROR's message: {"message":"...",...} or, from older servers, a string. */
static void refusal_message(const struct eio_packet *k, char *out, size_t cap)
{
    struct jscan_span v = k->data;
    size_t n = 0;
    if (v.len && v.p[0] == '{' && jscan_member(k->data.p, k->data.len, "message", &v) != 1)
        v.len = 0;
    if (!v.len || v.p[0] != '"' || jscan_unescape(v.p, v.len, out, cap - 1, &n) < 0)
        n = 0;
    out[n] = '\0';
}

/* In LC_SIO after the open packet: the namespace's answer to our CONNECT. */
static void on_sio_handshake(struct lg_engine *e, struct lg_client *c, const struct eio_packet *k)
{
    if (!slot_of(e, c)->eio_open) {
        sio_end(e, c, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, "a Socket.IO packet before the Engine.IO open packet");
        return;
    }
    if (k->type == EIO_CONNECT_ERROR && is_ours(e, k->nsp)) {
        char msg[100];
        refusal_message(k, msg, sizeof msg);
        fail(e, c, LG_ERR_SIO_REFUSED, "%s: socketio connect refused: %s", e->opts->targets[c->target].url,
             msg[0] ? msg : "(no message)");
        return;
    }
    if (k->type != EIO_CONNECT || !is_ours(e, k->nsp) || k->data.len == 0) {
        char why[120];
        snprintf(why, sizeof why, "expected the CONNECT reply for %s, got a packet of type %d for %.*s",
                 e->opts->sio_nsp, k->type, (int)(k->nsp.len > 40 ? 40 : k->nsp.len), k->nsp.p);
        sio_end(e, c, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, why);
        return;
    }
    if (!c->poll) {
        open_client(e, c);
        return;
    }
    struct hs_slot *s = slot_of(e, c);
    s->nsp_ok = true;
    if (e->opts->sio_upgrade && s->can_upgrade) {
        connect_ws(e, c); /* LC_CONNECTING; the GET keeps polling meanwhile */
        return;
    }
    if (!(c->flags & LC_FL_REJOIN))
        e->tally.sio_polling++;
    open_client(e, c);
}

/* LC_PROBE: the upgrade's websocket answers the probe. Then polling pauses; once its requests are over,
 * finish_upgrade follows (at once if none is in flight). */
static void on_probe(struct lg_engine *e, struct lg_client *c, uint8_t opcode, const char *buf, size_t len)
{
    struct hs_slot *s = slot_of(e, c);
    if (opcode != WS_OP_TEXT || s->probed || len != 6 || memcmp(buf, "3probe", 6) != 0) {
        fail(e, c, LG_ERR_SIO_UPGRADE, "%s: expected 3probe on the upgrade's websocket, got '%.*s'",
             e->opts->targets[c->target].url, (int)(len > 40 ? 40 : len), opcode == WS_OP_TEXT ? buf : "(binary)");
        return;
    }
    s->probed = true;
    eiop_pause(c->poll); /* LG_POLL_IDLE follows, maybe before this returns */
}

/* LC_PROBE, probed, polling idle: "5" moves the session onto the websocket, and the client is open. Returns -1
 * (the polling side is gone either way). */
static int finish_upgrade(struct lg_engine *e, struct lg_client *c)
{
    eiop_free(c->poll);
    c->poll = NULL;
    if (queue_frame(e, c, WS_OP_TEXT, "5", 1) < 0) {
        fail(e, c, LG_ERR_SIO_UPGRADE, "%s: sending the upgrade packet: %s", e->opts->targets[c->target].url,
             strerror(errno));
        return -1;
    }
    if (!(c->flags & LC_FL_REJOIN))
        e->tally.sio_upgraded++;
    open_client(e, c);
    return -1;
}

/* Is k the event whose messages we verify (--expect, our namespace), text or binary? */
static bool is_expected(const struct lg_engine *e, const struct eio_packet *k)
{
    const char *expect = e->opts->sio_expect;
    return (k->type == EIO_EVENT || k->type == EIO_BINARY_EVENT) && k->event.p && is_ours(e, k->nsp) &&
           k->event.len == strlen(expect) && memcmp(k->event.p, expect, k->event.len) == 0;
}

/* A binary packet: its attachments are due from now on (c->sio_asm), unless it announced none. 0, or -1 when c is
 * gone (a protocol error). */
static int begin_binary(struct lg_engine *e, struct lg_client *c, const struct eio_packet *k, int64_t now)
{
    struct sio_asm a;
    const char *why = "out of memory";
    int rc = sio_asm_begin(&a, k, is_expected(e, k), lg_engine_ms(now), &why);
    if (rc == 1 && (c->sio_asm = malloc(sizeof a)) != NULL)
        *c->sio_asm = a;
    if (rc < 0 || (rc == 1 && !c->sio_asm)) {
        sio_end(e, c, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, why);
        return -1;
    }
    return 0;
}

/* One binary message (an attachment; its first len bytes, msg_len in all): the message when it is the carrier the
 * placeholder named. A binary message no packet announced is a protocol error. */
static void on_attachment(struct lg_engine *e, struct lg_client *c, const char *buf, size_t len, uint64_t msg_len,
                          int64_t now)
{
    if (c->state == LC_CLOSING)
        return;
    if (!c->sio_asm) {
        sio_end(e, c, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, "a binary message that no binary packet announced");
        return;
    }
    bool done;
    int carrier = sio_asm_attachment(c->sio_asm, &done);
    if (done) {
        free(c->sio_asm);
        c->sio_asm = NULL;
    }
    if (carrier)
        e->ops.message(c, buf, len, msg_len, now);
}

/* An open client's Socket.IO packet: the expected event's first argument goes to the worker as the message (a
 * JSON string decoded into head, an object as it is, or the attachment a placeholder names once it comes); an ack
 * goes to ops.ack with --ack; any other event or packet is an empty, foreign one. */
static void on_sio_packet(struct lg_engine *e, struct lg_client *c, const struct eio_packet *k, uint64_t msg_len,
                          int64_t now)
{
    if (k->type == EIO_DISCONNECT && is_ours(e, k->nsp)) {
        sio_end(e, c, LG_ERR_HANDSHAKE_CLOSED, LG_ERR_DROPPED, "the server disconnected it from the namespace");
        return;
    }
    if (begin_binary(e, c, k, now) < 0)
        return;
    if ((k->type == EIO_ACK || k->type == EIO_BINARY_ACK) && is_ours(e, k->nsp) && e->opts->sio_ack) {
        e->ops.ack(c, k->ack, now);
        return;
    }
    if (c->sio_asm && c->sio_asm->carrier >= 0) /* the message comes with its attachment */
        return;
    char head[LG_PAYLOAD_PREFIX];
    size_t n = 0;
    const char *msg = "";
    if (is_expected(e, k) && k->arg.len) {
        if (k->arg.p[0] == '"' && jscan_unescape(k->arg.p, k->arg.len, head, sizeof head, &n) >= 0)
            msg = head;
        else if (k->arg.p[0] == '{')
            msg = k->arg.p, n = k->arg.len;
        else
            n = 0;
    }
    e->ops.message(c, msg, n, msg_len, now);
}

/* An Engine.IO server's first message on a websocket is its open packet, "0{...}": anything else (a plain WebSocket
 * server's greeting or echo) ends the client at once instead of after --connect-timeout. */
static bool not_engineio(struct lg_engine *e, struct lg_client *c, uint8_t opcode, const char *buf, size_t len)
{
    if (c->state != LC_SIO || slot_of(e, c)->eio_open || (opcode == WS_OP_TEXT && len && buf[0] == '0'))
        return false;
    char why[120];
    bool text = opcode == WS_OP_TEXT;
    snprintf(why, sizeof why, "not Engine.IO: first message '%.*s'%s; plain WebSocket? --protocol websocket",
             text ? (int)(len > 24 ? 24 : len) : 8, text ? buf : "(binary)", text && len > 24 ? "..." : "");
    sio_end(e, c, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, why);
    return true;
}

/* One Engine.IO packet (a whole text message, or the head of a longer one). */
static void sio_input(struct lg_engine *e, struct lg_client *c, uint8_t opcode, const char *buf, size_t len,
                      uint64_t msg_len, int64_t now)
{
    struct eio_packet k;
    if (not_engineio(e, c, opcode, buf, len))
        return;
    if (opcode != WS_OP_TEXT) {
        on_attachment(e, c, buf, len, msg_len, now);
        return;
    }
    if (eio_decode(buf, len, len == msg_len, &k) < 0) {
        char why[120];
        snprintf(why, sizeof why, "bad Engine.IO/Socket.IO packet '%.*s'", (int)(len > 60 ? 60 : len), buf);
        sio_end(e, c, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, why);
        return;
    }
    switch (k.eio) {
    case EIO_PING: /* v4: the server pings, we answer (a ping of ours would be an error) */
        c->ping_due = sio_ping_deadline(lg_engine_ms(now), c->ping_wait_ms, 0);
        if (c->state != LC_CLOSING)
            sio_send(e, c, "3", 1);
        return;
    case EIO_CLOSE:
        sio_end(e, c, LG_ERR_HANDSHAKE_CLOSED, LG_ERR_DROPPED, "the server closed the Engine.IO session");
        return;
    case EIO_OPEN:
        if ((c->state == LC_SIO || c->state == LC_POLL) && !slot_of(e, c)->eio_open)
            on_eio_open(e, c, &k);
        else
            sio_end(e, c, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, "a second Engine.IO open packet");
        return;
    case EIO_MESSAGE: break;
    default: return; /* pong, upgrade, noop */
    }
    if (c->sio_asm && c->state != LC_CLOSING) { /* socket.io-parser: "got plaintext data when reconstructing" */
        char why[120];
        snprintf(why, sizeof why, "a text packet while %u of %u attachment(s) of a binary packet were still due",
                 c->sio_asm->want - c->sio_asm->got, c->sio_asm->want);
        sio_end(e, c, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, why);
        return;
    }
    if (c->state == LC_SIO || (c->state == LC_POLL && !slot_of(e, c)->nsp_ok))
        on_sio_handshake(e, c, &k);
    else if (c->state != LC_CLOSING)
        on_sio_packet(e, c, &k, msg_len, now);
}

uint32_t lg_engine_ms(int64_t now_time)
{
    return (uint32_t)(uint64_t)(now_time / 1000000);
}

/* An open client's binary packet whose attachments did not come within --deadline, or a polling request with no
 * answer in time: lost. */
static void watch_one(struct lg_engine *e, struct lg_client *c, uint32_t now)
{
    const struct lg_opts *o = e->opts;
    uint32_t deadline_ms = (uint32_t)(o->deadline_ns / 1000000), post_ms = (uint32_t)(o->connect_timeout_ns / 1000000);
    uint64_t get_wait = (uint64_t)c->ping_wait_ms + LG_POLL_GET_MARGIN_MS;
    uint32_t get_ms = get_wait < UINT32_MAX ? (uint32_t)get_wait : UINT32_MAX, waited = 0;
    const struct sio_asm *a = c->sio_asm;
    if (a && (int32_t)(now - a->since_ms - deadline_ms) > 0) {
        lose(e, c, LG_ERR_PROTOCOL, "a binary packet's attachments did not come within %u ms (%u of %u came)",
             deadline_ms, a->got, a->want);
        return;
    }
    const char *what = c->poll ? eiop_overdue(c->poll, now, post_ms, get_ms, &waited) : NULL;
    if (what)
        lose(e, c, LG_ERR_SIO_POLL_TIMEOUT, "%s unanswered after %u ms (limit %u ms)", what, waited,
             strcmp(what, "polling POST") == 0 ? post_ms : get_ms);
}

void lg_engine_watch(struct lg_engine *e, struct lg_client *clients, uint32_t n, int64_t now_time)
{
    uint32_t now = lg_engine_ms(now_time);
    for (uint32_t i = 0; i < n; i++) {
        struct lg_client *c = &clients[i];
        if (c->state != LC_OPEN)
            continue;
        if (sio_ping_overdue(c->ping_due, now))
            lose(e, c, LG_ERR_SIO_PING_TIMEOUT, "no Engine.IO ping for pingInterval + pingTimeout = %u ms",
                 c->ping_wait_ms);
        else if (c->sio_asm || c->poll)
            watch_one(e, c, now);
    }
}

/* A whole message (whole) or the head of a longer one: to the worker, or through the Socket.IO layer. */
static void deliver(struct lg_engine *e, struct lg_client *c, const struct ws_event *ev, const char *head,
                    size_t head_len, uint64_t msg_len, int64_t now)
{
    if (c->state == LC_PROBE)
        on_probe(e, c, ev->opcode, head, head_len);
    else if (e->opts->protocol == LG_PROTO_SOCKETIO)
        sio_input(e, c, ev->opcode, head, head_len, msg_len, now);
    else
        e->ops.message(c, head, head_len, msg_len, now);
}

/* A chunk of a data message: hand whole small messages over as they are, gather the head of split ones. */
static void on_data(struct lg_engine *e, struct lg_client *c, const struct ws_event *ev, int64_t now)
{
    if (ev->first) {
        c->pre_len = 0;
        c->msg_len = 0;
        if (ev->last) {
            deliver(e, c, ev, (const char *)ev->data, ev->len, ev->len, now);
            return;
        }
    }
    if (c->pre_len < PRE_MAX) {
        if (!c->pre)
            c->pre = malloc(PRE_MAX);
        size_t room = PRE_MAX - c->pre_len, take = ev->len < room ? ev->len : room;
        if (c->pre && take) {
            memcpy(c->pre + c->pre_len, ev->data, take);
            c->pre_len = (uint16_t)(c->pre_len + take);
        }
    }
    c->msg_len = c->msg_len + ev->len < c->msg_len ? UINT32_MAX : c->msg_len + (uint32_t)ev->len;
    if (ev->last) {
        deliver(e, c, ev, c->pre ? c->pre : "", c->pre ? c->pre_len : 0, c->msg_len, now);
        free(c->pre);
        c->pre = NULL;
        c->pre_len = 0;
    }
}

/* The server's close frame: in LC_OPEN the server is closing us (a loss: answer and go), in LC_CLOSING it answers
 * ours (wait for its end of the TCP connection). Returns -1 when c is gone. */
static int on_close_frame(struct lg_engine *e, struct lg_client *c, const struct ws_event *ev)
{
    if (c->state == LC_CLOSING) {
        c->close_got = ev->close_code == WS_CLOSE_NORMAL || ev->close_code == WS_CLOSE_NO_STATUS ? 1 : 2;
        if (c->close_got == 2) /* counted now, while the code is at hand; its end adds nothing */
            lg_engine_note(e, LG_ERR_CLOSE, "client %u: our close answered with %u %.*s", c->id, ev->close_code,
                           (int)ev->reason_len, ev->reason);
        return 0;
    }
    uint8_t payload[WS_MAX_CONTROL];
    uint16_t code = ev->close_code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : ev->close_code;
    queue_frame(e, c, WS_OP_CLOSE, payload, ws_close_payload(payload, code, ""));
    if (in_handshake(c)) {
        fail(e, c, LG_ERR_HANDSHAKE_CLOSED, "%s: the server closed it with %u %.*s during the Socket.IO handshake",
             e->opts->targets[c->target].url, ev->close_code, (int)ev->reason_len, ev->reason);
        return -1;
    }
    lose(e, c, LG_ERR_DROPPED, "the server closed it with %u %.*s", ev->close_code, (int)ev->reason_len, ev->reason);
    return -1;
}

/* Feed frames from b[0..len). Returns the bytes used, or SIZE_MAX when the client is gone. */
static size_t feed_frames(struct lg_engine *e, struct lg_client *c, uint8_t *b, size_t len, int64_t now)
{
    size_t off = 0;
    while (off < len && (c->state == LC_OPEN || c->state == LC_CLOSING || c->state == LC_SIO || c->state == LC_PROBE)) {
        struct ws_event ev;
        int n = ws_reader_next(&c->reader, b + off, len - off, &ev);
        if (n == -2)
            break;
        if (n == -1) {
            uint8_t payload[WS_MAX_CONTROL];
            queue_frame(e, c, WS_OP_CLOSE, payload, ws_close_payload(payload, c->reader.close_code, ""));
            if (in_handshake(c)) {
                fail(e, c, LG_ERR_BAD_UPGRADE, "%s: bad frame from the server: %s", e->opts->targets[c->target].url,
                     c->reader.error);
                return SIZE_MAX;
            }
            lose(e, c, LG_ERR_PROTOCOL, "bad frame from the server: %s (closed with %u)", c->reader.error,
                 c->reader.close_code);
            return SIZE_MAX;
        }
        off += (size_t)n;
        if (ev.type == WS_EV_DATA) {
            if (c->state == LC_OPEN || c->state == LC_SIO || c->state == LC_PROBE)
                on_data(e, c, &ev, now);
        } else if (ev.type == WS_EV_PING) {
            if (queue_frame(e, c, WS_OP_PONG, ev.data, ev.len) < 0) {
                lose(e, c, LG_ERR_DROPPED, "answering a ping: %s", strerror(errno));
                return SIZE_MAX;
            }
        } else if (ev.type == WS_EV_CLOSE && on_close_frame(e, c, &ev) < 0) {
            return SIZE_MAX;
        }
    }
    return c->state == LC_OPEN || c->state == LC_CLOSING || c->state == LC_SIO || c->state == LC_PROBE ? off : SIZE_MAX;
}

/* The peer ended the connection (EOF or error) in state st. */
static void on_eof(struct lg_engine *e, struct lg_client *c, enum io_status st, int err)
{
    const char *url = e->opts->targets[c->target].url;
    const char *why = st == IO_EOF ? "connection closed" : strerror(err);
    if (c->state == LC_CLOSING && c->close_got == 1)
        finish_close(e, c, true);
    else if (c->state == LC_CLOSING)
        lose(e, c, LG_ERR_CLOSE, "%s without answering our close", why);
    else if (c->state == LC_OPEN)
        lose(e, c, LG_ERR_DROPPED, "%s without a close frame", why);
    else if (c->state == LC_TLS)
        fail(e, c, LG_ERR_TLS, "%s: TLS handshake: %s", url, why);
    else
        fail(e, c, LG_ERR_HANDSHAKE_CLOSED, "%s: %s during the handshake", url, why);
}

/* Bytes are in e->rbuf (carry first): hand them to the handshake or the frame reader, keep the rest. */
static void consume_input(struct lg_engine *e, struct lg_client *c)
{
    uint8_t *p = (uint8_t *)buf_head(&e->rbuf);
    size_t len = buf_len(&e->rbuf), used = 0;
    int64_t now = now_ns();
    if (c->state == LC_UPGRADE) {
        used = on_response(e, c, (const char *)p, len);
        if (c->state == LC_DONE)
            return;
        if (c->state == LC_UPGRADE) { /* head incomplete: keep it all */
            if (buf_append(&c->carry, p, len) < 0)
                fail(e, c, LG_ERR_BAD_UPGRADE, "%s: response head over %d bytes", e->opts->targets[c->target].url,
                     CARRY_MAX);
            return;
        }
    }
    size_t n = feed_frames(e, c, p + used, len - used, now);
    if (n == SIZE_MAX)
        return;
    used += n;
    if (used < len && buf_append(&c->carry, p + used, len - used) < 0)
        lose(e, c, LG_ERR_PROTOCOL, "a frame header over %d bytes", CARRY_MAX);
    else
        buf_release_if_empty(&c->carry);
}

/* Read until the socket (and TLS) has nothing more, or READS_PER_WAKE reads. */
static void on_readable(struct lg_engine *e, struct lg_client *c)
{
    for (int i = 0; i < READS_PER_WAKE; i++) {
        e->rbuf.rpos = e->rbuf.wpos = 0;
        if (buf_len(&c->carry)) {
            buf_append(&e->rbuf, buf_head(&c->carry), buf_len(&c->carry));
            buf_consume(&c->carry, buf_len(&c->carry));
        }
        size_t had = buf_len(&e->rbuf);
        int err = 0;
        enum io_status st = stream_read(&c->stream, c->io.fd, &e->rbuf, RBUF_WANT, &err);
        if (st == IO_AGAIN) {
            if (had)
                buf_append(&c->carry, buf_head(&e->rbuf), had);
            /* Back to read interest alone once TLS no longer needs the socket writable: else the loop spins. */
            watch(e, c, stream_events(&c->stream, buf_len(&c->out) ? EV_READ | EV_WRITE : EV_READ));
            return;
        }
        if (st != IO_OK) {
            on_eof(e, c, st, err);
            return;
        }
        /* A plain read that did not fill what it asked for has drained the socket: level-triggered epoll will
         * say when more comes, so skip the read that would only say EAGAIN (half the reads of a fan-out). TLS
         * may hold decrypted bytes the socket no longer shows, so it reads on until IO_AGAIN. */
        bool drained = !stream_is_tls(&c->stream) && buf_len(&e->rbuf) - had < RBUF_WANT;
        consume_input(e, c);
        if (c->state == LC_DONE || drained)
            return;
    }
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct lg_client *c = (struct lg_client *)(void *)w;
    struct lg_engine *e = w->data;
    if (c->state == LC_CONNECTING) {
        on_connecting(e, c);
        return;
    }
    if (c->state == LC_TLS) {
        on_tls(e, c);
        return;
    }
    if ((revents & EV_WRITE) && buf_len(&c->out) && flush(e, c) < 0) {
        if (in_handshake(c))
            fail(e, c, LG_ERR_HANDSHAKE_CLOSED, "%s: sending the handshake: %s", e->opts->targets[c->target].url,
                 strerror(errno));
        else
            lose(e, c, LG_ERR_DROPPED, "writing: %s", strerror(errno)); /* closing: the close failed */
        return;
    }
    if (revents & EV_READ || (stream_is_tls(&c->stream) && (revents & EV_WRITE)))
        on_readable(e, c);
}

/* What a connect that took too long was waiting for. */
static const char *expired_what(const struct hs_slot *s)
{
    const struct lg_client *c = s->c;
    switch (c->state) {
    case LC_SIO: return s->eio_open ? "no Socket.IO CONNECT reply" : "no Engine.IO open packet (plain WebSocket?)";
    case LC_POLL: return "no Engine.IO open packet and CONNECT reply over polling";
    case LC_PROBE: return "no 3probe, or polling requests still in flight, in the upgrade";
    default: return c->poll ? "no 101 for the upgrade" : "no 101";
    }
}

void lg_engine_expire(struct lg_engine *e, int64_t now)
{
    int64_t limit = e->opts->connect_timeout_ns;
    for (uint32_t i = 0; i < e->nslots; i++) {
        struct hs_slot *s = &e->slots[i];
        if (!s->c || now - s->start_ns <= limit)
            continue;
        const char *url = e->opts->targets[s->c->target].url;
        double ms = (double)limit / 1e6;
        if (s->c->state == LC_CONNECTING)
            fail(e, s->c, LG_ERR_CONNECT_TIMEOUT, "%s: no TCP connection within %.0f ms", url, ms);
        else
            fail(e, s->c, LG_ERR_HANDSHAKE_TIMEOUT, "%s: %s within %.0f ms", url, expired_what(s), ms);
    }
}

/* ---- polling (--transport polling): what eiopoll.c reports ---- */

/* A b<base64> item (b64[0..len), valid): its first bytes decoded, as a binary frame's head would be. */
static void poll_attachment(struct lg_engine *e, struct lg_client *c, const char *b64, size_t len, int64_t now)
{
    unsigned char head[PRE_MAX / 3 * 3];
    size_t take = len < PRE_MAX / 3 * 4 ? len : PRE_MAX / 3 * 4; /* whole quanta: padding only at the very end */
    long n = eio_base64_decode(b64, take, head, sizeof head);
    sio_input(e, c, WS_OP_BINARY, (const char *)head, n > 0 ? (size_t)n : 0, (uint64_t)eio_base64_len(b64, len), now);
}

/* A GET's payload: each packet as if it came in a frame. 0, or -1 when the polling side is gone. */
static int poll_payload(struct lg_engine *e, struct lg_client *c, const char *body, size_t len)
{
    struct eio_item it;
    size_t off = 0;
    int rc;
    int64_t now = now_ns();
    struct eiop *p = c->poll;
    if (c->state == LC_CLOSING) /* the close is under way: whatever the held GET brings is not counted */
        return 0;
    if (len == 0) {
        sio_end(e, c, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, "an empty polling payload");
        return -1;
    }
    while ((rc = sio_payload_next(body, len, &off, &it)) == 1) {
        if (it.binary)
            poll_attachment(e, c, it.text.p + 1, it.text.len - 1, now);
        else
            sio_input(e, c, WS_OP_TEXT, it.text.p, it.text.len, it.text.len, now);
        if (c->poll != p) /* failed, lost or closed meanwhile */
            return -1;
    }
    if (rc < 0) {
        char why[120];
        snprintf(why, sizeof why, "bad polling payload at byte %zu: '%.*s'", off,
                 (int)(len - off > 40 ? 40 : len - off), body + off);
        sio_end(e, c, LG_ERR_BAD_UPGRADE, LG_ERR_PROTOCOL, why);
        return -1;
    }
    return 0;
}

int lg_client_poll_event(struct lg_engine *e, struct lg_client *c, enum lg_poll_ev ev, const struct http_head *h,
                         const char *data, size_t len)
{
    struct hs_slot *s = in_handshake(c) ? slot_of(e, c) : NULL;
    switch (ev) {
    case LG_POLL_TCP:
        if (s) {
            s->tcp_ns = now_ns();
            if (!(c->flags & LC_FL_REJOIN))
                hist_record(e->connect_hist, s->tcp_ns - s->start_ns);
        }
        return 0;
    case LG_POLL_PAYLOAD:
        if (h)
            note_node(e, c, h);
        return poll_payload(e, c, data, len);
    case LG_POLL_POSTED:
        if (c->state == LC_CLOSING && eiop_queued(c->poll) == 0) { /* our DISCONNECT and close went through */
            finish_close(e, c, true);
            return -1;
        }
        return 0;
    case LG_POLL_IDLE:
        if (c->state == LC_PROBE && s && s->probed)
            return finish_upgrade(e, c);
        return 0;
    }
    return 0;
}

void lg_client_poll_fail(struct lg_engine *e, struct lg_client *c, enum lg_err hs, enum lg_err open, int status,
                         const char *msg)
{
    if (in_handshake(c)) {
        if (hs == LG_ERR_HTTP_STATUS && !(c->flags & LC_FL_RECON))
            lg_tally_status(&e->tally, status);
        fail_as(e, c, hs, msg);
    } else {
        lose(e, c, open, "%s", msg); /* closing: the close failed */
    }
}
