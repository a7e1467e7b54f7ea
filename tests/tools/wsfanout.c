/* wsfanout: a small, fast WebSocket fan-out client on one libev loop (the bench's and the demo's client).
 *
 *   wsfanout [--clients N] [--rounds R] [--interval-ms MS] [--payload BYTES] [--room NAME]
 *            [--source 127.0.0.2-127.0.0.40] [--connect-rate PER_SEC] [--timeout-ms MS] [--quiet] [--hold] URL...
 *
 * Phases: connect every client (round-robin over the URLs, at most MAX_INFLIGHT handshakes at a time), then R rounds
 * in which client 0 sends one text message of exactly BYTES bytes and every other client must receive it exactly
 * once; then a close handshake with every client. --hold replaces the rounds by "ready N" and a wait for SIGTERM or
 * SIGINT (to measure a server's memory per idle connection).
 *
 * The payload is "RRRRRRRRRR TTTTTTTTTTTTTTTTTTT " (round, CLOCK_MONOTONIC send time in ns, fixed width) padded with
 * 'x'. A round lasts from the send to the last receiver's read; every delivery's latency is kept as well.
 *
 * Client states (one handler each, see the comment above it):
 *
 *   CL_IDLE -> CL_CONNECTING -> CL_HANDSHAKE -> CL_OPEN -> CL_CLOSING -> CL_DONE
 *                   \________________\______________\___________________^  (failure, loss, timeout)
 *
 * Memory per client is one struct client (a few hundred bytes, no heap block while idle): reads go through one
 * loop-wide buffer, and only a partial frame header left at the end of a read is kept per client.
 *
 * Exit: 0 every message reached every other client exactly once, 1 it did not (or interrupted), 2 usage,
 * 3 some client could not connect. */
#define _GNU_SOURCE
#include "common/buf.h"
#include "common/http.h"
#include "common/log.h"
#include "common/net.h"
#include "common/ws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define MAX_INFLIGHT 256 /* handshakes in progress at once */
#define MAX_URLS     64
#define MAX_NODES    64 /* distinct X-Node-Id values told apart; more are counted as "other" */
#define MAX_SOURCES  65536
#define RBUF_SIZE    (64 * 1024) /* the loop-wide read buffer */
#define CARRY_MAX    8192        /* per client: the response head, later a partial frame header */
#define PREFIX_LEN   31          /* "%010u %019lld " */
#define MAX_PAYLOAD  (16u << 20)
#define TICK_S       0.01 /* connect phase: rate tokens and handshake deadlines */
#define CLOSE_WAIT_S 2.0  /* how long the close handshake may take, all clients together */
#define FD_RESERVE   32   /* descriptors besides the clients' (stdio, epoll, signals) */

enum client_state { CL_IDLE = 0, CL_CONNECTING, CL_HANDSHAKE, CL_OPEN, CL_CLOSING, CL_DONE };

#define CL_FL_GOT_CLOSE 0x01u /* the server's close frame arrived */
#define CL_FL_CLEAN     0x02u /* ... with code 1000, answering ours */
#define CL_FL_WE_CLOSED 0x04u /* the close handshake was ours (end of run), not the server's */
#define CL_FL_BAD_MSG   0x08u /* the message being received is not what we sent */

struct client {
    ev_io io;                /* the fd, EV_READ and EV_WRITE as needed */
    struct ws_reader reader; /* client role: the server's frames are unmasked */
    struct buf carry;        /* handshake: the response head so far; open: bytes of an incomplete frame */
    struct buf out;          /* frames not yet written (empty, no heap block, almost always) */
    uint32_t round_seen;     /* the last round number received (1-based; 0: none) */
    uint32_t msg_pos;        /* bytes of the current message received so far */
    uint16_t slot;           /* handshake slot while CONNECTING/HANDSHAKE */
    uint8_t state, flags, node, target, pre_len;
    char pre[PREFIX_LEN]; /* the current message's prefix, gathered across chunks */
};

/* A handshake in progress: what only a connecting client needs. */
struct hs_slot {
    struct client *c;
    int64_t start_ns;
    size_t last_len; /* http_parse_response's resume point */
    char accept[WS_ACCEPT_LEN + 1];
};

struct target {
    struct net_addr addr;
    char url[512], host[300], path[1024];
};

struct round {
    int64_t t_send, t_last;
    uint32_t receivers;                               /* open receivers when it was sent */
    uint32_t expected, delivered, missing, dup, late; /* expected: receivers still connected */
    size_t lat_start; /* this round's deliveries are lat[lat_start, next round's lat_start) */
    bool timed_out;
};

enum fail_kind { FK_CONNECT = 0, FK_TIMEOUT, FK_CLOSED, FK_HTTP, FK_STATUS, FK_UPGRADE, FK_COUNT };
static const char *const fail_names[FK_COUNT] = {"connect error",     "handshake timeout", "closed during handshake",
                                                 "bad HTTP response", "status not 101",    "bad upgrade"};

enum phase { PH_CONNECT = 0, PH_ROUNDS, PH_HOLD, PH_CLOSE };

struct opts {
    uint32_t clients, rounds, payload;
    double interval_s, timeout_s, connect_rate;
    const char *room, *source;
    bool quiet, hold;
};

struct app {
    struct ev_loop *loop;
    struct opts o;
    struct target targets[MAX_URLS];
    int ntargets;
    struct net_addr *sources;
    uint32_t nsources;
    struct client *clients;
    enum phase phase;
    int exit_code;
    bool interrupted;
    uint64_t rng;

    /* connect */
    uint32_t next_start, inflight, connected, failed, open_receivers;
    struct hs_slot slots[MAX_INFLIGHT];
    uint16_t free_slots[MAX_INFLIGHT];
    uint32_t nfree;
    double tokens, last_tick;
    int64_t t_start, t_connected;
    float *hs_ms;
    uint32_t fail_count[FK_COUNT];
    char fail_msg[FK_COUNT][200];
    ev_timer tick;

    /* nodes, from X-Node-Id */
    char node_names[MAX_NODES + 1][64];
    uint32_t node_count[MAX_NODES + 1];
    int nnodes;

    /* rounds */
    struct round *rounds;
    uint32_t cur; /* index of the current (or next) round */
    bool round_active;
    char *payload; /* the message, 'x'-padded; the prefix is rewritten each round */
    float *lat;    /* every delivery's latency, ms */
    size_t nlat, caplat;
    bool lat_full;
    ev_timer round_timer, gap_timer;

    /* problems seen after connecting */
    uint64_t to_sender, corrupt, dropped, proto_errors;
    char drop_msg[200];

    /* close */
    uint32_t closing, close_clean, close_noframe, close_timeouts;
    ev_timer close_timer;
    ev_signal sigint, sigterm;

    uint8_t rbuf[RBUF_SIZE];
};

static struct app g;

static void on_io(struct ev_loop *loop, ev_io *w, int revents);
static void start_close(void);
static void round_maybe_done(void);
static void connect_progress(void);

/* ---- small helpers ---- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint32_t cid(const struct client *c)
{
    return (uint32_t)(c - g.clients);
}

/* xorshift64*: masks need to be unpredictable to intermediaries, not cryptographic; seeded from getrandom. */
static uint32_t rnd32(void)
{
    g.rng ^= g.rng >> 12;
    g.rng ^= g.rng << 25;
    g.rng ^= g.rng >> 27;
    return (uint32_t)((g.rng * 0x2545F4914F6CDD1DULL) >> 32);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static double pct(const float *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t k = (size_t)ceil(p * (double)n);
    return sorted[k ? k - 1 : 0];
}

static void watch(struct client *c, int events)
{
    if ((c->io.events & (EV_READ | EV_WRITE)) == events && ev_is_active(&c->io))
        return;
    ev_io_stop(g.loop, &c->io);
    ev_io_set(&c->io, c->io.fd, events);
    ev_io_start(g.loop, &c->io);
}

static void note(char *dst, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note(char *dst, size_t len, const char *fmt, ...)
{
    if (dst[0])
        return; /* keep the first example of each problem */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, len, fmt, ap);
    va_end(ap);
}

/* ---- connection plumbing ---- */

/* Release everything the client holds; it ends in CL_DONE. */
static void client_shutdown(struct client *c)
{
    if (c->state == CL_DONE || c->state == CL_IDLE) {
        c->state = CL_DONE;
        return;
    }
    if (c->state == CL_CLOSING)
        g.closing--;
    if (c->state == CL_OPEN && cid(c) != 0)
        g.open_receivers--;
    ev_io_stop(g.loop, &c->io);
    close(c->io.fd);
    buf_free(&c->carry);
    buf_free(&c->out);
    c->state = CL_DONE;
    if (g.phase == PH_CLOSE && g.closing == 0)
        ev_break(g.loop, EVBREAK_ALL);
}

/* Write what is queued; keeps EV_WRITE interest while the socket is full. -1 on a write error. */
static int client_flush(struct client *c)
{
    while (buf_len(&c->out)) {
        ssize_t n = send(c->io.fd, buf_head(&c->out), buf_len(&c->out), MSG_NOSIGNAL);
        if (n > 0) {
            buf_consume(&c->out, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            watch(c, EV_READ | EV_WRITE);
            return 0;
        }
        return -1;
    }
    buf_release_if_empty(&c->out);
    watch(c, EV_READ);
    return 0;
}

/* Queue one masked frame (RFC 6455 5.3: every client frame is masked with a fresh key) and try to write it. */
static int client_send(struct client *c, uint8_t opcode, const void *data, size_t len)
{
    uint8_t hdr[WS_MAX_HEADER], mask[4];
    uint32_t m = rnd32();
    memcpy(mask, &m, sizeof mask);
    size_t hl = ws_frame_header(hdr, opcode, true, len, mask);
    if (buf_reserve(&c->out, hl + len) < 0)
        return -1;
    memcpy(buf_tail(&c->out), hdr, hl);
    buf_commit(&c->out, hl);
    uint8_t *p = (uint8_t *)buf_tail(&c->out);
    if (len)
        memcpy(p, data, len);
    ws_mask(p, len, mask, 0);
    buf_commit(&c->out, len);
    return client_flush(c);
}

static int send_close(struct client *c, uint16_t code, const char *reason)
{
    uint8_t payload[WS_MAX_CONTROL];
    size_t n = ws_close_payload(payload, code, reason);
    return client_send(c, WS_OP_CLOSE, payload, n);
}

/* An open client was lost (closed by the server, protocol error, write error): count it against the run. Call it
 * after the client has left CL_OPEN, since losing the sender starts the close phase. */
static void client_lost(struct client *c, const char *why)
{
    uint32_t id = cid(c);
    g.dropped++;
    note(g.drop_msg, sizeof g.drop_msg, "client %u: %s", id, why);
    if (id != 0 && g.round_active && c->round_seen != g.cur + 1) {
        g.rounds[g.cur].expected--; /* it can no longer receive this round: missing */
        g.rounds[g.cur].missing++;
        round_maybe_done();
    }
    if (id == 0 && (g.phase == PH_ROUNDS || g.phase == PH_CONNECT)) {
        LOG_ERR("the sender (client 0) was disconnected: %s; stopping", why);
        start_close();
    }
}

/* Precondition: CL_OPEN. Next: CL_DONE, counted as lost. */
static void client_drop(struct client *c, const char *why)
{
    client_shutdown(c);
    client_lost(c, why);
}

/* ---- connect phase ---- */

static struct hs_slot *slot_take(struct client *c)
{
    uint16_t i = g.free_slots[--g.nfree];
    g.slots[i] = (struct hs_slot){.c = c};
    c->slot = i;
    g.inflight++;
    return &g.slots[i];
}

static void slot_put(struct client *c)
{
    g.slots[c->slot].c = NULL;
    g.free_slots[g.nfree++] = c->slot;
    g.inflight--;
}

static void client_fail(struct client *c, enum fail_kind k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A handshake did not succeed. Precondition: CL_CONNECTING or CL_HANDSHAKE (or CL_IDLE when connect() failed at
 * once). Next: CL_DONE, slot released. */
static void client_fail(struct client *c, enum fail_kind k, const char *fmt, ...)
{
    g.fail_count[k]++;
    if (!g.fail_msg[k][0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g.fail_msg[k], sizeof g.fail_msg[k], fmt, ap);
        va_end(ap);
    }
    slot_put(c);
    g.failed++;
    client_shutdown(c);
}

/* Start one client's TCP connect and queue its upgrade request. Precondition: CL_IDLE. Next: CL_CONNECTING, or
 * CL_DONE when connect() failed at once (e.g. no local port left). */
static void client_start(struct client *c)
{
    uint32_t id = cid(c);
    const struct target *t = &g.targets[c->target];
    struct hs_slot *s = slot_take(c);
    char key[25], req[1536];
    s->start_ns = now_ns();
    int fd = net_connect(&t->addr, g.nsources ? &g.sources[id % g.nsources] : NULL);
    if (fd < 0) {
        client_fail(c, FK_CONNECT, "connect to %s: %s", t->url, strerror(errno));
        return;
    }
    ws_client_key(key);
    ws_accept_key(key, strlen(key), s->accept);
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nUser-Agent: wsfanout\r\n\r\n",
                     t->path, t->host, key);
    c->carry.max = CARRY_MAX;
    c->out.max = (size_t)g.o.payload * 4 + (1u << 20);
    buf_append(&c->out, req, (size_t)n);
    ev_io_init(&c->io, on_io, fd, EV_WRITE);
    ev_io_start(g.loop, &c->io);
    c->state = CL_CONNECTING;
}

static void start_connects(void)
{
    while (g.next_start < g.o.clients && g.nfree > 0) {
        if (g.o.connect_rate > 0) {
            if (g.tokens < 1)
                return;
            g.tokens -= 1;
        }
        client_start(&g.clients[g.next_start++]);
    }
}

/* Precondition: CL_CONNECTING and writable. Next: CL_HANDSHAKE (request written or queued), or CL_DONE. */
static void on_connecting(struct client *c)
{
    int e = net_connect_result(c->io.fd);
    if (e) {
        client_fail(c, FK_CONNECT, "connect to %s: %s", g.targets[c->target].url, strerror(e));
        return;
    }
    c->state = CL_HANDSHAKE;
    if (client_flush(c) < 0)
        client_fail(c, FK_CONNECT, "sending the upgrade request to %s: %s", g.targets[c->target].url, strerror(errno));
}

static uint8_t node_index(const struct http_head *h)
{
    const struct http_header *x = http_find_header(h, "X-Node-Id");
    char name[64];
    snprintf(name, sizeof name, "%.*s", x ? (int)x->value_len : 1, x ? x->value : "?");
    for (int i = 0; i < g.nnodes; i++)
        if (!strcmp(g.node_names[i], name))
            return (uint8_t)i;
    if (g.nnodes == MAX_NODES) {
        snprintf(g.node_names[MAX_NODES], sizeof g.node_names[0], "other");
        return MAX_NODES;
    }
    memcpy(g.node_names[g.nnodes], name, sizeof name);
    return (uint8_t)g.nnodes++;
}

/* Is this the 101 we asked for? 0, or -1 after client_fail (a refusal's reason is its body, if it came along). */
static int check_upgrade(struct client *c, const struct http_head *h, size_t head_len)
{
    const char *url = g.targets[c->target].url;
    if (h->status != 101) {
        char body[100];
        size_t n = buf_len(&c->carry) - head_len, i;
        for (i = 0; i < n && i < sizeof body - 1; i++) {
            char ch = buf_head(&c->carry)[head_len + i];
            body[i] = ch >= ' ' && ch < 127 ? ch : ' ';
        }
        body[i] = '\0';
        client_fail(c, FK_STATUS, "%s answered %d %.*s%s%s", url, h->status, (int)h->reason_len, h->reason,
                    i ? ": " : "", body);
        return -1;
    }
    const struct http_header *up = http_find_header(h, "Upgrade");
    const struct http_header *acc = http_find_header(h, "Sec-WebSocket-Accept");
    if (!up || !http_has_token(up->value, up->value_len, "websocket") || !h->conn_upgrade) {
        client_fail(c, FK_UPGRADE, "%s: 101 without Upgrade: websocket / Connection: upgrade", url);
        return -1;
    }
    if (!acc || acc->value_len != WS_ACCEPT_LEN || memcmp(acc->value, g.slots[c->slot].accept, WS_ACCEPT_LEN)) {
        client_fail(c, FK_UPGRADE, "%s: wrong Sec-WebSocket-Accept", url);
        return -1;
    }
    return 0;
}

static size_t ws_feed(struct client *c, uint8_t *b, size_t len, int64_t now);
static void keep_carry(struct client *c, const uint8_t *b, size_t len);

/* The 101 is in. Precondition: CL_HANDSHAKE, head_len bytes of head at the start of carry. Next: CL_OPEN (or
 * CL_CLOSING/CL_DONE if frames that followed the head say so). */
static void client_open(struct client *c, const struct http_head *h, size_t head_len)
{
    int64_t now = now_ns();
    c->node = node_index(h);
    g.node_count[c->node]++;
    g.hs_ms[g.connected++] = (float)((double)(now - g.slots[c->slot].start_ns) / 1e6);
    slot_put(c);
    c->state = CL_OPEN;
    c->reader = (struct ws_reader){.role = WS_ROLE_CLIENT};
    if (cid(c) != 0)
        g.open_receivers++;
    buf_consume(&c->carry, head_len);
    size_t have = buf_len(&c->carry);
    if (have) { /* frames right behind the head */
        memcpy(g.rbuf, buf_head(&c->carry), have);
        buf_consume(&c->carry, have);
        size_t used = ws_feed(c, g.rbuf, have, now);
        if (c->state == CL_OPEN || c->state == CL_CLOSING)
            keep_carry(c, g.rbuf + used, have - used);
    }
    buf_release_if_empty(&c->carry);
}

/* Precondition: CL_HANDSHAKE and readable. Next: CL_OPEN (via client_open), CL_HANDSHAKE (head incomplete), or
 * CL_DONE (failed). */
static void on_handshake(struct client *c)
{
    int err = 0;
    const char *url = g.targets[c->target].url;
    enum io_status st = net_read(c->io.fd, &c->carry, 2048, &err);
    if (st == IO_AGAIN)
        return;
    if (st == IO_EOF) {
        client_fail(c, FK_CLOSED, "%s closed the connection during the handshake", url);
        return;
    }
    if (st == IO_ERR) {
        client_fail(c, err == ENOBUFS ? FK_HTTP : FK_CONNECT, "reading the response from %s: %s", url,
                    err == ENOBUFS ? "head too large" : strerror(err));
        return;
    }
    static const struct http_limits limits = {0};
    struct http_header hdrs[32];
    struct http_head h = {.headers = hdrs, .headers_cap = 32};
    struct hs_slot *s = &g.slots[c->slot];
    int n = http_parse_response(buf_head(&c->carry), buf_len(&c->carry), s->last_len, &h, &limits);
    if (n == -2) {
        s->last_len = buf_len(&c->carry);
        return;
    }
    if (n < 0) {
        client_fail(c, FK_HTTP, "%s: %s", url, http_error_str(h.error));
        return;
    }
    if (check_upgrade(c, &h, (size_t)n) == 0)
        client_open(c, &h, (size_t)n);
}

/* Every 10 ms while connecting: refill the rate bucket, fail handshakes past their deadline, start more. */
static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)w, (void)revents;
    double now = ev_now(g.loop);
    if (g.o.connect_rate > 0) {
        double burst = g.o.connect_rate * 0.05 > 1 ? g.o.connect_rate * 0.05 : 1;
        g.tokens += g.o.connect_rate * (now - g.last_tick);
        if (g.tokens > burst)
            g.tokens = burst;
    }
    g.last_tick = now;
    int64_t t = now_ns(), limit = (int64_t)(g.o.timeout_s * 1e9);
    for (int i = 0; i < MAX_INFLIGHT; i++) {
        struct hs_slot *s = &g.slots[i];
        if (s->c && t - s->start_ns > limit)
            client_fail(s->c, FK_TIMEOUT, "%s: no 101 within %.0f ms", g.targets[s->c->target].url,
                        g.o.timeout_s * 1e3);
    }
    connect_progress();
}

static void round_send(struct ev_loop *loop, ev_timer *w, int revents);

/* Every client has connected or failed: report, then hold, run the rounds or close. */
static void connect_done(void)
{
    g.t_connected = now_ns();
    ev_timer_stop(g.loop, &g.tick);
    if (g.failed) {
        g.exit_code = 3;
        start_close();
        return;
    }
    if (g.o.hold) {
        g.phase = PH_HOLD;
        printf("ready %u\n", g.connected);
        fflush(stdout);
        return;
    }
    g.phase = PH_ROUNDS;
    if (g.o.rounds == 0) {
        start_close();
        return;
    }
    ev_timer_set(&g.gap_timer, g.o.interval_s, 0);
    ev_timer_start(g.loop, &g.gap_timer);
}

static void connect_progress(void)
{
    if (g.phase != PH_CONNECT)
        return;
    start_connects();
    if (g.connected + g.failed == g.o.clients)
        connect_done();
}

/* ---- rounds ---- */

static void record_latency(float ms)
{
    if (g.nlat == g.caplat) {
        size_t cap = g.caplat ? g.caplat * 2 : 65536;
        float *p = g.lat_full ? NULL : realloc(g.lat, cap * sizeof *p);
        if (!p) {
            g.lat_full = true; /* keep counting deliveries; only the latency sample stops growing */
            return;
        }
        g.lat = p;
        g.caplat = cap;
    }
    g.lat[g.nlat++] = ms;
}

/* One whole message of round rnum, sent at t_send, reached client c at now. */
static void on_delivery(struct client *c, uint32_t rnum, int64_t t_send, int64_t now)
{
    if (cid(c) == 0) {
        g.to_sender++;
        return;
    }
    if (rnum == 0 || rnum > g.cur + 1 || rnum > g.o.rounds) {
        g.corrupt++;
        return;
    }
    struct round *r = &g.rounds[rnum - 1];
    if (rnum == c->round_seen || rnum < c->round_seen) {
        /* Again, or an older round after a newer one: a repeat, as far as one counter per client can tell. */
        r->dup++;
        return;
    }
    c->round_seen = rnum;
    if (!g.round_active || rnum != g.cur + 1 || t_send != r->t_send) {
        r->late++; /* after its round's deadline: it was counted missing */
        return;
    }
    r->delivered++;
    r->t_last = now;
    record_latency((float)((double)(now - t_send) / 1e6));
    round_maybe_done();
}

/* Parse and check a complete message gathered in c->pre (and counted in c->msg_pos). */
static void on_message_end(struct client *c, uint8_t opcode, int64_t now)
{
    char pre[PREFIX_LEN + 1];
    if ((c->flags & CL_FL_BAD_MSG) || opcode != WS_OP_TEXT || c->msg_pos != g.o.payload || c->pre_len != PREFIX_LEN) {
        g.corrupt++;
        return;
    }
    memcpy(pre, c->pre, PREFIX_LEN);
    pre[PREFIX_LEN] = '\0';
    char *end;
    unsigned long rnum = strtoul(pre, &end, 10);
    if (*end != ' ') {
        g.corrupt++;
        return;
    }
    long long t_send = strtoll(end + 1, &end, 10);
    if (*end != ' ') {
        g.corrupt++;
        return;
    }
    on_delivery(c, (uint32_t)rnum, (int64_t)t_send, now);
}

/* A chunk of a data message: gather the prefix, check the padding, finish on the last chunk. */
static void on_data(struct client *c, const struct ws_event *ev, int64_t now)
{
    if (ev->first) {
        c->pre_len = 0;
        c->msg_pos = 0;
        c->flags &= (uint8_t)~CL_FL_BAD_MSG;
    }
    size_t i = 0;
    while (i < ev->len && c->pre_len < PREFIX_LEN)
        c->pre[c->pre_len++] = (char)ev->data[i++];
    for (; i < ev->len; i++)
        if (ev->data[i] != 'x') {
            c->flags |= CL_FL_BAD_MSG;
            break;
        }
    if (ev->len > g.o.payload || c->msg_pos + ev->len > g.o.payload)
        c->flags |= CL_FL_BAD_MSG;
    else
        c->msg_pos += (uint32_t)ev->len;
    if (ev->last)
        on_message_end(c, ev->opcode, now);
}

/* The server's close frame. From CL_OPEN (the server closes us: a loss) we answer it and wait for its EOF in
 * CL_CLOSING; in CL_CLOSING it answers ours. */
static void on_close_frame(struct client *c, const struct ws_event *ev)
{
    c->flags |= CL_FL_GOT_CLOSE;
    if (c->state == CL_CLOSING) {
        if (ev->close_code == WS_CLOSE_NORMAL)
            c->flags |= CL_FL_CLEAN;
        return;
    }
    char why[160];
    snprintf(why, sizeof why, "the server closed it with %u %.*s", ev->close_code, (int)ev->reason_len, ev->reason);
    if (cid(c) != 0)
        g.open_receivers--;
    c->state = CL_CLOSING;
    g.closing++;
    uint16_t code = ev->close_code == WS_CLOSE_NO_STATUS ? WS_CLOSE_NORMAL : ev->close_code;
    if (send_close(c, code, "") < 0)
        client_shutdown(c);
    client_lost(c, why);
}

static void on_ws_event(struct client *c, const struct ws_event *ev, int64_t now)
{
    switch (ev->type) {
    case WS_EV_DATA: on_data(c, ev, now); break;
    case WS_EV_PING:
        if (c->state == CL_OPEN && client_send(c, WS_OP_PONG, ev->data, ev->len) < 0)
            client_drop(c, "write error answering a ping");
        break;
    case WS_EV_PONG: break;
    case WS_EV_CLOSE: on_close_frame(c, ev); break;
    }
}

/* Feed b[0..len) to the client's frame reader; returns the bytes consumed (the rest is an incomplete frame). */
static size_t ws_feed(struct client *c, uint8_t *b, size_t len, int64_t now)
{
    size_t pos = 0;
    while (pos < len && (c->state == CL_OPEN || c->state == CL_CLOSING)) {
        struct ws_event ev;
        int n = ws_reader_next(&c->reader, b + pos, len - pos, &ev);
        if (n == -2)
            break;
        if (n < 0) {
            char why[160];
            g.proto_errors++;
            snprintf(why, sizeof why, "protocol error from the server: %s", c->reader.error);
            if (c->state == CL_OPEN) {
                send_close(c, c->reader.close_code, c->reader.error);
                client_drop(c, why);
            } else {
                client_shutdown(c);
            }
            break;
        }
        pos += (size_t)n;
        on_ws_event(c, &ev, now);
    }
    return pos;
}

static void keep_carry(struct client *c, const uint8_t *b, size_t len)
{
    if (!len || buf_append(&c->carry, b, len) == 0)
        return;
    if (c->state == CL_OPEN)
        client_drop(c, "incomplete frame larger than the carry buffer");
    else
        client_shutdown(c);
}

/* The peer closed TCP (or reset). Precondition: CL_OPEN or CL_CLOSING. Next: CL_DONE. */
static void on_eof(struct client *c, int err)
{
    if (c->state == CL_OPEN) {
        char why[160];
        snprintf(why, sizeof why, "connection %s without a close frame", err ? strerror(err) : "closed");
        client_drop(c, why);
        return;
    }
    if (c->flags & CL_FL_WE_CLOSED) {
        if (c->flags & CL_FL_CLEAN)
            g.close_clean++;
        else
            g.close_noframe++;
    }
    client_shutdown(c);
}

/* Precondition: CL_OPEN or CL_CLOSING and readable. Reads through the loop-wide buffer until the socket is drained,
 * prefixed by what the last read left incomplete. Next: the same state, CL_CLOSING (server's close), CL_DONE. */
static void on_readable(struct client *c)
{
    uint8_t *b = g.rbuf;
    size_t have = buf_len(&c->carry);
    if (have) {
        memcpy(b, buf_head(&c->carry), have);
        buf_consume(&c->carry, have);
        buf_release_if_empty(&c->carry);
    }
    for (;;) {
        size_t room = RBUF_SIZE - have;
        ssize_t n = recv(c->io.fd, b + have, room, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            on_eof(c, n < 0 ? errno : 0);
            return;
        }
        have += (size_t)n;
        size_t used = ws_feed(c, b, have, now_ns());
        if (c->state == CL_DONE)
            return;
        have -= used;
        memmove(b, b + used, have);
        if ((size_t)n < room)
            break; /* a short read: the socket is drained */
    }
    keep_carry(c, b, have);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    struct client *c = container_of(w, struct client, io);
    if (c->state == CL_CONNECTING) {
        if (revents & (EV_WRITE | EV_READ))
            on_connecting(c);
    } else {
        if ((revents & EV_WRITE) && client_flush(c) < 0) {
            if (c->state == CL_HANDSHAKE)
                client_fail(c, FK_CONNECT, "write: %s", strerror(errno));
            else if (c->state == CL_OPEN)
                client_drop(c, "write error");
            else
                client_shutdown(c);
        }
        if ((revents & EV_READ) && c->state == CL_HANDSHAKE)
            on_handshake(c);
        else if ((revents & EV_READ) && (c->state == CL_OPEN || c->state == CL_CLOSING))
            on_readable(c);
    }
    connect_progress();
}

static void print_round(const struct round *r, uint32_t index, double ms)
{
    size_t n = (size_t)r->delivered;
    float *l = g.lat ? g.lat + r->lat_start : NULL;
    if (!l || g.lat_full || r->lat_start + n > g.nlat)
        n = 0;
    if (n)
        qsort(l, n, sizeof *l, cmp_float);
    printf("round %u/%u: %u/%u delivered in %.3f ms%s (delivery p50 %.3f ms), missing %u, dup %u\n", index + 1,
           g.o.rounds, r->delivered, r->receivers, ms, r->timed_out ? " (timed out)" : "", pct(l, n, 0.5), r->missing,
           r->dup);
    fflush(stdout);
}

/* The current round is over: every receiver has it, or its deadline passed. Next: the next round after the
 * interval, or the close phase after the interval (late duplicates still counted meanwhile). */
static void round_end(bool timed_out)
{
    struct round *r = &g.rounds[g.cur];
    ev_timer_stop(g.loop, &g.round_timer);
    g.round_active = false;
    r->timed_out = timed_out;
    r->missing += r->expected - r->delivered;
    double ms = timed_out ? g.o.timeout_s * 1e3 : r->delivered ? (double)(r->t_last - r->t_send) / 1e6 : 0;
    if (!g.o.quiet)
        print_round(r, g.cur, ms);
    g.cur++;
    ev_timer_set(&g.gap_timer, g.o.interval_s, 0);
    ev_timer_start(g.loop, &g.gap_timer);
}

static void round_maybe_done(void)
{
    if (g.round_active && g.rounds[g.cur].delivered >= g.rounds[g.cur].expected)
        round_end(false);
}

static void on_round_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)w, (void)revents;
    if (g.round_active)
        round_end(true);
}

/* The gap timer: send the next round from client 0, or (after the last) start the close phase. */
static void round_send(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)w, (void)revents;
    if (g.phase != PH_ROUNDS)
        return;
    if (g.cur >= g.o.rounds) {
        start_close();
        return;
    }
    struct round *r = &g.rounds[g.cur];
    struct client *sender = &g.clients[0];
    char pre[PREFIX_LEN + 1];
    r->expected = r->receivers = g.open_receivers;
    r->lat_start = g.nlat;
    r->t_send = now_ns();
    snprintf(pre, sizeof pre, "%010u %019" PRId64 " ", g.cur + 1, r->t_send);
    memcpy(g.payload, pre, PREFIX_LEN);
    g.round_active = true;
    ev_timer_set(&g.round_timer, g.o.timeout_s, 0);
    ev_timer_start(g.loop, &g.round_timer);
    if (client_send(sender, WS_OP_TEXT, g.payload, g.o.payload) < 0) {
        client_drop(sender, "write error");
        return;
    }
    round_maybe_done();
}

/* ---- close phase ---- */

/* Send close 1000 to every open client and wait (bounded) for each server's close frame and EOF. Precondition: any
 * phase. Next: PH_CLOSE; the loop ends when no client is left closing, or at the deadline. */
static void start_close(void)
{
    if (g.phase == PH_CLOSE)
        return;
    g.phase = PH_CLOSE;
    g.round_active = false;
    ev_timer_stop(g.loop, &g.tick);
    ev_timer_stop(g.loop, &g.round_timer);
    ev_timer_stop(g.loop, &g.gap_timer);
    for (uint32_t i = 0; i < g.o.clients; i++) {
        struct client *c = &g.clients[i];
        if (c->state == CL_CONNECTING || c->state == CL_HANDSHAKE) {
            slot_put(c); /* interrupted mid-handshake */
            client_shutdown(c);
        } else if (c->state == CL_OPEN) {
            if (i != 0)
                g.open_receivers--;
            c->state = CL_CLOSING;
            c->flags |= CL_FL_WE_CLOSED;
            g.closing++;
            if (send_close(c, WS_CLOSE_NORMAL, "bye") < 0)
                client_shutdown(c);
        }
    }
    if (g.closing == 0) {
        ev_break(g.loop, EVBREAK_ALL);
        return;
    }
    ev_timer_set(&g.close_timer, CLOSE_WAIT_S, 0);
    ev_timer_start(g.loop, &g.close_timer);
}

static void on_close_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)w, (void)revents;
    for (uint32_t i = 0; i < g.o.clients; i++)
        if (g.clients[i].state == CL_CLOSING) {
            g.close_timeouts++;
            client_shutdown(&g.clients[i]);
        }
    ev_break(g.loop, EVBREAK_ALL);
}

static void on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    if (g.phase == PH_CLOSE) { /* a second signal: stop waiting for the servers */
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    if (g.phase != PH_HOLD) {
        g.interrupted = true;
        LOG_WARN("interrupted by signal %d; closing", w->signum);
    }
    start_close();
}

/* ---- report ---- */

static void print_header(void)
{
    char room[256] = "all";
    const struct target *t = &g.targets[0];
    http_query_param(t->path, strlen(t->path), "room", room, sizeof room);
    if (g.o.hold)
        printf("wsfanout: %u clients over %d URL%s (room %s), holding\n", g.o.clients, g.ntargets,
               g.ntargets > 1 ? "s" : "", room);
    else
        printf("wsfanout: %u clients over %d URL%s (room %s), %u round%s of %u B, %.0f ms apart\n", g.o.clients,
               g.ntargets, g.ntargets > 1 ? "s" : "", room, g.o.rounds, g.o.rounds == 1 ? "" : "s", g.o.payload,
               g.o.interval_s * 1e3);
}

static int cmp_node(const void *a, const void *b)
{
    return strcmp(g.node_names[*(const int *)a], g.node_names[*(const int *)b]);
}

/* "nodes: n1 5000 n2 5000", by node name. */
static void print_nodes(void)
{
    int order[MAX_NODES + 1], n = 0;
    for (int i = 0; i <= MAX_NODES; i++)
        if (g.node_count[i])
            order[n++] = i;
    qsort(order, (size_t)n, sizeof *order, cmp_node);
    printf("nodes:");
    for (int i = 0; i < n; i++)
        printf(" %s %u", g.node_names[order[i]], g.node_count[order[i]]);
    printf("%s\n", n ? "" : " none");
}

static void print_connect(void)
{
    print_nodes();
    qsort(g.hs_ms, g.connected, sizeof *g.hs_ms, cmp_float);
    int64_t end = g.t_connected ? g.t_connected : now_ns();
    printf("connect: %u/%u in %.3f s; handshake ms p50 %.3f p99 %.3f max %.3f\n", g.connected, g.o.clients,
           (double)(end - g.t_start) / 1e9, pct(g.hs_ms, g.connected, 0.5), pct(g.hs_ms, g.connected, 0.99),
           pct(g.hs_ms, g.connected, 1.0));
    for (int k = 0; k < FK_COUNT; k++)
        if (g.fail_count[k])
            printf("connect failures: %u %s, e.g. %s\n", g.fail_count[k], fail_names[k], g.fail_msg[k]);
}

/* A round's time in ms: send to last receiver, the deadline if it timed out, 0 if it had no receivers. */
static float round_ms(const struct round *r)
{
    if (r->timed_out)
        return (float)(g.o.timeout_s * 1e3);
    return r->delivered ? (float)((double)(r->t_last - r->t_send) / 1e6) : 0;
}

/* Totals over the rounds that ran; returns the number of problems (0: every message exactly once). */
static uint64_t print_rounds(void)
{
    uint32_t done = g.cur, timed_out = 0;
    uint64_t missing = 0, dup = 0, late = 0;
    float *ms = calloc((size_t)done + 1, sizeof *ms);
    if (!ms)
        done = 0; /* out of memory: the counts below still hold, only the round percentiles are lost */
    for (uint32_t i = 0; i < g.cur; i++) {
        const struct round *r = &g.rounds[i];
        if (i < done)
            ms[i] = round_ms(r);
        timed_out += r->timed_out;
        missing += r->missing;
        dup += r->dup;
        late += r->late;
    }
    if (done)
        qsort(ms, done, sizeof *ms, cmp_float);
    printf("round ms (send to last receiver): p50 %.3f p90 %.3f p99 %.3f max %.3f over %u rounds", pct(ms, done, 0.5),
           pct(ms, done, 0.9), pct(ms, done, 0.99), pct(ms, done, 1.0), done);
    if (timed_out)
        printf(" (%u timed out, counted at the deadline)", timed_out);
    printf("\n");
    free(ms);
    if (g.nlat)
        qsort(g.lat, g.nlat, sizeof *g.lat, cmp_float);
    printf("delivery ms: p50 %.3f p99 %.3f max %.3f over %zu deliveries%s\n", pct(g.lat, g.nlat, 0.5),
           pct(g.lat, g.nlat, 0.99), pct(g.lat, g.nlat, 1.0), g.nlat,
           g.lat_full ? " (latency sample capped: out of memory)" : "");
    printf("exactly-once: missing %" PRIu64 " (of which late %" PRIu64 "), duplicates %" PRIu64 ", to sender %" PRIu64
           ", corrupt %" PRIu64 "\n",
           missing, late, dup, g.to_sender, g.corrupt);
    return missing + dup + g.to_sender + g.corrupt;
}

static int report(void)
{
    uint64_t problems = 0;
    print_connect();
    if (!g.o.hold && g.failed == 0)
        problems = print_rounds();
    if (g.dropped || g.proto_errors)
        printf("connections lost: %" PRIu64 " (protocol errors %" PRIu64 "), e.g. %s\n", g.dropped, g.proto_errors,
               g.drop_msg);
    printf("close: %u clean, %u without the server's close frame, %u timed out\n", g.close_clean, g.close_noframe,
           g.close_timeouts);
    problems += g.dropped + g.proto_errors;
    if (g.exit_code == 3) {
        printf("FAIL: %u of %u clients could not connect\n", g.failed, g.o.clients);
        return 3;
    }
    if (g.interrupted || (!g.o.hold && g.cur < g.o.rounds)) {
        printf("FAIL: interrupted after %u of %u rounds\n", g.cur, g.o.rounds);
        return 1;
    }
    if (problems) {
        printf("FAIL: not every message reached every other client exactly once\n");
        return 1;
    }
    if (g.o.hold)
        printf("PASS: held %u connections\n", g.connected);
    else
        printf("PASS: all %u rounds reached all %u other clients exactly once\n", g.o.rounds, g.o.clients - 1);
    return 0;
}

/* ---- usage and setup ---- */

static const char usage_text[] =
    "usage: wsfanout [--clients N] [--rounds R] [--interval-ms MS] [--payload BYTES] [--room NAME]\n"
    "                [--source IP[-IP]] [--connect-rate PER_SEC] [--timeout-ms MS] [--quiet] [--hold] URL...\n"
    "  URL            ws://host:port/ws?room=NAME; clients are spread round-robin over the URLs\n"
    "  --clients N    connections (default 100; client 0 sends, the others receive)\n"
    "  --rounds R     messages sent, one per round (default 10)\n"
    "  --interval-ms  pause between the end of a round and the next send (default 100)\n"
    "  --payload B    message size in bytes, at least 31 (default 100)\n"
    "  --room NAME    add room=NAME to URLs that name no room\n"
    "  --source A-B   bind client sockets to these IPv4 source addresses, round-robin\n"
    "  --connect-rate new connections per second (default: as fast as 256 handshakes in flight allow)\n"
    "  --timeout-ms   deadline of a handshake and of a round (default 5000)\n"
    "  --quiet        no line per round\n"
    "  --hold         connect, print \"ready N\", keep the connections until SIGTERM/SIGINT\n"
    "exit: 0 all delivered exactly once, 1 not, 2 usage, 3 could not connect\n";

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "wsfanout: %s (see wsfanout --help)\n", msg);
    exit(2);
}

static double num_arg(const char *name, const char *v, double min, double max)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (!*v || *end || errno || d < min || d > max)
        usage_error("%s: '%s' is not a number from %.0f to %.0f", name, v, min, max);
    return d;
}

/* Percent-encode s into out (for --room). */
static void url_encode(const char *s, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s && o + 4 < outlen; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || strchr("-._~", ch)) {
            out[o++] = (char)ch;
        } else {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
}

/* ws://host[:port][/path][?query] into t, adding room=NAME when --room is given. */
static void parse_url(const char *url, struct target *t, const char *room)
{
    char err[ERR_LEN], hostonly[300], port[8] = "80", enc[768];
    if (strncmp(url, "ws://", 5))
        usage_error("%s: only ws:// URLs are supported", url);
    const char *a = url + 5, *end = a + strcspn(a, "/?");
    if (end == a || (size_t)(end - a) >= sizeof t->host)
        usage_error("%s: no host", url);
    snprintf(t->url, sizeof t->url, "%s", url);
    snprintf(t->host, sizeof t->host, "%.*s", (int)(end - a), a);
    snprintf(t->path, sizeof t->path, "%s%s", *end == '?' ? "/" : "", *end ? end : "/");
    const char *colon = strrchr(t->host, ':'), *bracket = strrchr(t->host, ']');
    if (colon && (!bracket || colon > bracket))
        snprintf(port, sizeof port, "%s", colon + 1);
    size_t hl = colon && (!bracket || colon > bracket) ? (size_t)(colon - t->host) : strlen(t->host);
    if (t->host[0] == '[')
        snprintf(hostonly, sizeof hostonly, "%.*s", (int)(hl > 2 ? hl - 2 : 0), t->host + 1);
    else
        snprintf(hostonly, sizeof hostonly, "%.*s", (int)hl, t->host);
    if (net_resolve(hostonly, port, &t->addr, err, sizeof err) < 0)
        usage_error("%s: %s", url, err);
    if (!room)
        return;
    char dummy[8];
    if (http_query_param(t->path, strlen(t->path), "room", dummy, sizeof dummy) != 0)
        usage_error("%s already names a room; drop --room or the room= parameter", url);
    url_encode(room, enc, sizeof enc);
    size_t used = strlen(t->path);
    if ((size_t)snprintf(t->path + used, sizeof t->path - used, "%sroom=%s", strchr(t->path, '?') ? "&" : "?", enc) >=
        sizeof t->path - used)
        usage_error("%s: URL too long", url);
}

/* "A.B.C.D" or "A.B.C.D-A.B.C.E" into g.sources. */
static void parse_source(const char *s)
{
    char first[64], last[64];
    struct in_addr a, b;
    const char *dash = strchr(s, '-');
    snprintf(first, sizeof first, "%.*s", dash ? (int)(dash - s) : (int)strlen(s), s);
    snprintf(last, sizeof last, "%s", dash ? dash + 1 : first);
    if (inet_pton(AF_INET, first, &a) != 1 || inet_pton(AF_INET, last, &b) != 1 || ntohl(b.s_addr) < ntohl(a.s_addr))
        usage_error("--source: '%s' is not an IPv4 address or range A-B", s);
    uint64_t n = (uint64_t)ntohl(b.s_addr) - ntohl(a.s_addr) + 1;
    if (n > MAX_SOURCES)
        usage_error("--source: '%s' has more than %d addresses", s, MAX_SOURCES);
    g.sources = calloc(n, sizeof *g.sources);
    if (!g.sources)
        usage_error("out of memory");
    for (uint64_t i = 0; i < n; i++) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&g.sources[i].ss;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(ntohl(a.s_addr) + (uint32_t)i);
        g.sources[i].len = sizeof *sin;
    }
    g.nsources = (uint32_t)n;
}

static void parse_args(int argc, char **argv)
{
    enum {
        O_CLIENTS = 1,
        O_ROUNDS,
        O_INTERVAL,
        O_PAYLOAD,
        O_ROOM,
        O_SOURCE,
        O_RATE,
        O_TIMEOUT,
        O_QUIET,
        O_HOLD,
        O_HELP
    };
    static const struct option longopts[] = {{"clients", required_argument, NULL, O_CLIENTS},
                                             {"rounds", required_argument, NULL, O_ROUNDS},
                                             {"interval-ms", required_argument, NULL, O_INTERVAL},
                                             {"payload", required_argument, NULL, O_PAYLOAD},
                                             {"room", required_argument, NULL, O_ROOM},
                                             {"source", required_argument, NULL, O_SOURCE},
                                             {"connect-rate", required_argument, NULL, O_RATE},
                                             {"timeout-ms", required_argument, NULL, O_TIMEOUT},
                                             {"quiet", no_argument, NULL, O_QUIET},
                                             {"hold", no_argument, NULL, O_HOLD},
                                             {"help", no_argument, NULL, O_HELP},
                                             {NULL, 0, NULL, 0}};
    g.o = (struct opts){.clients = 100, .rounds = 10, .payload = 100, .interval_s = 0.1, .timeout_s = 5.0};
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (ch) {
        case O_CLIENTS: g.o.clients = (uint32_t)num_arg("--clients", optarg, 1, 10000000); break;
        case O_ROUNDS: g.o.rounds = (uint32_t)num_arg("--rounds", optarg, 0, 10000000); break;
        case O_INTERVAL: g.o.interval_s = num_arg("--interval-ms", optarg, 0, 3600e3) / 1e3; break;
        case O_PAYLOAD: g.o.payload = (uint32_t)num_arg("--payload", optarg, PREFIX_LEN, MAX_PAYLOAD); break;
        case O_ROOM: g.o.room = optarg; break;
        case O_SOURCE: g.o.source = optarg; break;
        case O_RATE: g.o.connect_rate = num_arg("--connect-rate", optarg, 0, 1e9); break;
        case O_TIMEOUT: g.o.timeout_s = num_arg("--timeout-ms", optarg, 1, 3600e3) / 1e3; break;
        case O_QUIET: g.o.quiet = true; break;
        case O_HOLD: g.o.hold = true; break;
        case O_HELP: fputs(usage_text, stdout); exit(0);
        case ':': usage_error("%s needs a value", argv[optind - 1]);
        default: usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        usage_error("no URL given");
    if (argc - optind > MAX_URLS)
        usage_error("more than %d URLs", MAX_URLS);
    for (int i = optind; i < argc; i++)
        parse_url(argv[i], &g.targets[g.ntargets++], g.o.room);
    if (g.o.source)
        parse_source(g.o.source);
    if (g.o.clients < 2 && !g.o.hold)
        usage_error("--clients must be at least 2 (one sender, one receiver)");
}

/* Raise the open-files limit to its hard maximum; the clients must fit under it. */
static void check_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && (uint64_t)g.o.clients + FD_RESERVE > rl.rlim_cur)
        usage_error("%u clients need %u open files but this process may open %llu (ulimit -n); "
                    "run several wsfanout processes",
                    g.o.clients, g.o.clients + FD_RESERVE, (unsigned long long)rl.rlim_cur);
}

static void setup(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
        seed = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32);
    g.rng = seed | 1;
    g.clients = calloc(g.o.clients, sizeof *g.clients);
    g.hs_ms = calloc(g.o.clients, sizeof *g.hs_ms);
    g.rounds = calloc(g.o.rounds ? g.o.rounds : 1, sizeof *g.rounds);
    g.payload = malloc(g.o.payload);
    if (!g.clients || !g.hs_ms || !g.rounds || !g.payload)
        usage_error("out of memory for %u clients", g.o.clients);
    memset(g.payload, 'x', g.o.payload);
    for (uint32_t i = 0; i < g.o.clients; i++)
        g.clients[i].target = (uint8_t)(i % (uint32_t)g.ntargets);
    for (int i = 0; i < MAX_INFLIGHT; i++)
        g.free_slots[i] = (uint16_t)(MAX_INFLIGHT - 1 - i);
    g.nfree = MAX_INFLIGHT;
    g.loop = ev_default_loop(EVFLAG_AUTO);
    ev_timer_init(&g.tick, on_tick, TICK_S, TICK_S);
    ev_init(&g.round_timer, on_round_timeout);
    ev_init(&g.gap_timer, round_send);
    ev_init(&g.close_timer, on_close_timeout);
    ev_signal_init(&g.sigint, on_signal, SIGINT);
    ev_signal_init(&g.sigterm, on_signal, SIGTERM);
    ev_signal_start(g.loop, &g.sigint);
    ev_signal_start(g.loop, &g.sigterm);
    ev_unref(g.loop); /* the signal watchers alone do not keep the loop running */
    ev_unref(g.loop);
    signal(SIGPIPE, SIG_IGN);
}

int main(int argc, char **argv)
{
    log_init("wsfanout", LOG_LEVEL_WARN);
    parse_args(argc, argv);
    check_fd_limit();
    setup();
    print_header();
    fflush(stdout);
    g.t_start = now_ns();
    g.last_tick = ev_now(g.loop);
    g.tokens = 1;
    ev_timer_start(g.loop, &g.tick);
    connect_progress();
    ev_run(g.loop, 0);
    return report();
}
