/* A loadgen worker; see worker.h. The counting rules, which the report and the JSON schema rely on:
 *
 *  - Emitters are the clients 0 .. E-1 that are open when the rounds begin; each sends one message per round with
 *    seq = round. A client in room k hears from every open emitter in room k (but itself, unless --echo).
 *  - expected[r] is computed when round r starts, over this worker's open clients. A client lost during the round
 *    takes back what it had not yet received: its loss is counted as such, not as missing messages.
 *  - A first arrival is "received" when its latency (arrival - send time) is within the deadline, else "late";
 *    "reordered" when a higher seq of the same emitter came first; a repeat is a "duplicate".
 *  - Deliveries are timed at the message's last byte. */
#define _GNU_SOURCE
#include "loadgen/worker.h"

#include "common/hist.h"
#include "common/log.h"
#include "loadgen/client.h"
#include "loadgen/ipc.h"
#include "loadgen/payload.h"
#include "loadgen/track.h"

#include <ev.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define TICK_S           0.01 /* rate tokens, loop-lag probe */
#define TICKS_PER_REPORT 10   /* progress to the coordinator, handshake timeouts */

enum wphase { WP_CONNECT = 0, WP_READY, WP_CLOSING, WP_DONE };

struct worker {
    struct ev_loop *loop;
    const struct lg_opts *o;
    struct lg_engine eng;
    uint32_t index, count; /* w, W */
    int fd;
    struct buf in;
    ev_io ipc_io;
    enum wphase phase;

    struct lg_client *clients;
    uint32_t n, next_start, connected, failed;
    double tokens, rate;
    ev_timer tick;
    uint32_t ticks;
    int64_t last_tick_ns;

    /* emitters: active[e] for e < E; slot_in_room[e] = its index among its room's active emitters */
    uint8_t *active;
    uint32_t *slot_in_room, *room_active; /* room_active[k]: active emitters in room k */
    struct lg_track *tracks;
    char *payload;

    /* rounds */
    struct ipc_round_count *rc; /* indexed by round (1-based; [0] unused) */
    uint32_t cur;               /* the latest round started here */
    bool pending;               /* cur's ROUND_DONE not sent yet */
    int64_t first_send, last_arrival;
    ev_timer deadline;
    struct hist *lat; /* deliveries since the last ROUND_DONE */
    uint64_t echoed, foreign, corrupt;
    uint32_t dropped, closing, closed_clean;
    ev_timer close_timer;

    /* self-monitoring */
    struct hist *lag;
    struct rusage ru_rounds;
    int64_t rounds_wall_ns;
    double busy_ratio;
};

static struct worker W;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Tell the coordinator why this worker cannot go on, and exit. */
static void die(const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ipc_send(W.fd, IPC_FATAL, msg, strlen(msg) + 1);
    _exit(1);
}

static void send_or_die(uint32_t type, const void *body, size_t len)
{
    if (ipc_send(W.fd, type, body, len) < 0)
        _exit(1); /* the coordinator is gone: nobody to report to */
}

/* The same mapping that put the client's room in its URL, so each message is expected in exactly its room. */
static uint32_t room_of(uint32_t id)
{
    return lg_room_index(W.o, id);
}

static struct lg_client *client_of(uint32_t id)
{
    return id % W.count == W.index ? &W.clients[id / W.count] : NULL;
}

static bool is_emitter(const struct lg_client *c)
{
    return c->id < W.o->emitters && W.active && W.active[c->id];
}

/* What one open client should receive per round. */
static uint32_t due_per_round(const struct lg_client *c)
{
    uint32_t due = W.room_active ? W.room_active[c->room] : 0;
    if (is_emitter(c) && !W.o->echo)
        due--;
    return due;
}

/* ---- rounds ---- */

static void round_done(bool timed_out)
{
    if (!W.pending)
        return;
    W.pending = false;
    ev_timer_stop(W.loop, &W.deadline);
    struct ipc_round_done d = {
        .round = W.cur, .timed_out = timed_out, .first_send_ns = W.first_send, .last_arrival_ns = W.last_arrival};
    struct buf b = {0};
    if (buf_append(&b, &d, sizeof d) < 0 || ipc_put_hist(&b, W.lat) < 0)
        die("out of memory");
    send_or_die(IPC_ROUND_DONE, buf_head(&b), buf_len(&b));
    buf_free(&b);
    hist_reset(W.lat);
}

static void round_check(void)
{
    struct ipc_round_count *r = &W.rc[W.cur];
    if (W.pending && r->received + r->late >= r->expected)
        round_done(false);
}

static void on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)t, (void)revents;
    round_done(true);
}

static void emit(struct lg_client *c, uint32_t round)
{
    struct lg_msg m = {.emitter = c->id, .round = round, .seq = round, .send_ns = now_ns()};
    lg_payload_encode(&m, W.payload, W.o->payload);
    if (!W.first_send)
        W.first_send = m.send_ns;
    if (lg_client_send(&W.eng, c, W.o->binary ? WS_OP_BINARY : WS_OP_TEXT, W.payload, W.o->payload) == 0)
        W.rc[round].emitted++;
}

static void on_round(uint32_t round)
{
    if (round == 0 || round > W.o->rounds || round <= W.cur)
        die("bad round %u from the coordinator", round);
    round_done(true); /* the coordinator moved on: the previous round is over here too */
    if (W.cur == 0) {
        getrusage(RUSAGE_SELF, &W.ru_rounds);
        W.rounds_wall_ns = now_ns();
    }
    W.cur = round;
    W.pending = true;
    W.first_send = W.last_arrival = 0;
    uint64_t expected = 0;
    for (uint32_t i = 0; i < W.n; i++)
        if (W.clients[i].state == LC_OPEN)
            expected += due_per_round(&W.clients[i]);
    W.rc[round].expected += expected;
    for (uint32_t e = W.index; e < W.o->emitters; e += W.count) {
        struct lg_client *c = client_of(e);
        if (c && c->state == LC_OPEN && W.active[e])
            emit(c, round);
    }
    ev_timer_set(&W.deadline, (double)W.o->deadline_ns / 1e9, 0);
    ev_timer_start(W.loop, &W.deadline);
    round_check();
}

/* ---- what the clients report ---- */

static void on_message(struct lg_client *c, const char *head, size_t head_len, uint64_t msg_len, int64_t now)
{
    (void)msg_len;
    struct lg_msg m;
    int rc = lg_payload_parse(head, head_len, &m);
    if (rc == 0) {
        W.foreign++;
        return;
    }
    /* Ours but impossible here: garbled, from nobody we know, or from another room (a leak between rooms). */
    if (rc < 0 || m.round == 0 || m.round > W.o->rounds || m.emitter >= W.o->emitters || !W.active ||
        !W.active[m.emitter] || room_of(m.emitter) != c->room) {
        W.corrupt++;
        return;
    }
    if (m.emitter == c->id && !W.o->echo) {
        W.echoed++;
        return;
    }
    struct ipc_round_count *r = &W.rc[m.round];
    switch (lg_track_see(&c->tracks[W.slot_in_room[m.emitter]], m.seq)) {
    case LG_TRACK_DUPLICATE: r->duplicate++; return;
    case LG_TRACK_STALE:
    case LG_TRACK_INVALID: r->late++; return;
    case LG_TRACK_REORDERED: r->reordered++; break;
    case LG_TRACK_IN_ORDER: break;
    }
    int64_t latency = now - m.send_ns;
    hist_record(W.lat, latency);
    if (latency > W.o->deadline_ns)
        r->late++;
    else
        r->received++;
    W.last_arrival = now;
    if (m.round == W.cur)
        round_check();
}

static void connect_progress(void);

static void on_opened(struct lg_client *c)
{
    W.connected++;
    (void)c;
    connect_progress();
}

static void on_failed(struct lg_client *c)
{
    (void)c;
    W.failed++;
    connect_progress();
}

/* An open client was lost: what it had not received of the current round is no longer due. */
static void on_lost(struct lg_client *c)
{
    W.dropped++; /* also in the connect phase: it did connect, so connected + failed still adds up */
    if (!W.pending || !W.room_active)
        return;
    uint32_t emitters_here = W.room_active[c->room], unseen = 0;
    for (uint32_t k = 0; k < emitters_here; k++)
        unseen += !lg_track_seen(&c->tracks[k], W.cur);
    if (is_emitter(c) && !W.o->echo && !lg_track_seen(&c->tracks[W.slot_in_room[c->id]], W.cur))
        unseen--; /* its own message was never due */
    W.rc[W.cur].expected -= unseen;
    round_check();
}

static void send_final(void);

static void on_closed(struct lg_client *c, bool clean)
{
    if (clean)
        W.closed_clean++;
    else
        lg_engine_note(&W.eng, LG_ERR_CLOSE, "client %u: the close handshake did not complete cleanly", c->id);
    if (--W.closing == 0)
        send_final();
}

/* ---- connect phase ---- */

static void send_ready(void)
{
    struct buf b = {0};
    struct ipc_ready r = {.connected = W.connected, .failed = W.failed};
    for (uint32_t e = W.index; e < W.o->emitters; e += W.count)
        r.n_emitters += client_of(e)->state == LC_OPEN;
    buf_append(&b, &r, sizeof r);
    for (uint32_t e = W.index; e < W.o->emitters; e += W.count)
        if (client_of(e)->state == LC_OPEN)
            buf_append(&b, &e, sizeof e);
    if (ipc_put_hist(&b, W.eng.connect_hist) < 0 || ipc_put_hist(&b, W.eng.handshake_hist) < 0)
        die("out of memory");
    send_or_die(IPC_READY, buf_head(&b), buf_len(&b));
    buf_free(&b);
}

static void connect_progress(void)
{
    if (W.phase != WP_CONNECT)
        return;
    while (W.next_start < W.n && lg_engine_has_slot(&W.eng)) {
        if (W.rate > 0) {
            if (W.tokens < 1)
                break;
            W.tokens -= 1;
        }
        lg_client_start(&W.eng, &W.clients[W.next_start++]);
        if (W.phase != WP_CONNECT)
            return; /* that start failed at once and finished the phase */
    }
    if (W.connected + W.failed == W.n) {
        W.phase = WP_READY;
        send_ready();
    }
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)t, (void)revents;
    int64_t now = now_ns(), late = now - W.last_tick_ns - (int64_t)(TICK_S * 1e9);
    if (W.last_tick_ns && W.phase == WP_READY && W.cur)
        hist_record(W.lag, late > 0 ? late : 0);
    W.last_tick_ns = now;
    if (W.phase != WP_CONNECT)
        return;
    if (W.rate > 0) {
        double burst = W.rate * 0.02 > 1 ? W.rate * 0.02 : 1;
        W.tokens = W.tokens + W.rate * TICK_S > burst ? burst : W.tokens + W.rate * TICK_S;
    }
    if (++W.ticks % TICKS_PER_REPORT == 0) {
        struct ipc_progress p = {.connected = W.connected, .failed = W.failed};
        send_or_die(IPC_PROGRESS, &p, sizeof p);
        lg_engine_expire(&W.eng, now);
    }
    connect_progress();
}

/* ---- emitters and tracking ---- */

/* The coordinator's list of open emitters: who sends, and one tracker per (client, emitter of its room). */
static void on_emitters(const char *body, uint32_t n)
{
    uint32_t rooms = lg_room_count(W.o);
    W.active = calloc(W.o->emitters, 1);
    W.slot_in_room = calloc(W.o->emitters, sizeof *W.slot_in_room);
    W.room_active = calloc(rooms, sizeof *W.room_active);
    if (!W.active || !W.slot_in_room || !W.room_active)
        die("out of memory for %u emitters", W.o->emitters);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id; /* copied out: the body need not be aligned for uint32_t */
        memcpy(&id, body + (size_t)i * sizeof id, sizeof id);
        if (id >= W.o->emitters)
            die("bad emitter id %u", id);
        W.active[id] = 1;
        W.slot_in_room[id] = W.room_active[room_of(id)]++;
    }
    size_t total = 0;
    for (uint32_t i = 0; i < W.n; i++)
        total += W.room_active[W.clients[i].room];
    W.tracks = calloc(total ? total : 1, sizeof *W.tracks);
    if (!W.tracks)
        die("out of memory for %zu trackers", total);
    total = 0;
    for (uint32_t i = 0; i < W.n; i++) {
        W.clients[i].tracks = W.tracks + total;
        total += W.room_active[W.clients[i].room];
    }
}

/* ---- close ---- */

static void send_final(void)
{
    if (W.phase == WP_DONE)
        return;
    W.phase = WP_DONE;
    ev_timer_stop(W.loop, &W.close_timer);
    struct ipc_final *f = calloc(1, sizeof *f);
    if (!f)
        die("out of memory");
    struct lg_engine *e = &W.eng;
    *f = (struct ipc_final){.connected = W.connected,
                            .failed = W.failed,
                            .dropped = W.dropped,
                            .closed_clean = W.closed_clean,
                            .nstatus = e->nstatus,
                            .nnodes = e->nnodes,
                            .nodes_other = e->nodes_other,
                            .nodes_unknown = e->nodes_unknown,
                            .echoed = W.echoed,
                            .foreign = W.foreign,
                            .corrupt = W.corrupt,
                            .rounds = W.o->rounds};
    memcpy(f->err_counts, e->err_counts, sizeof f->err_counts);
    memcpy(f->err_example, e->err_example, sizeof f->err_example);
    memcpy(f->status_codes, e->status_codes, sizeof f->status_codes);
    memcpy(f->status_counts, e->status_counts, sizeof f->status_counts);
    memcpy(f->node_names, e->node_names, sizeof f->node_names);
    memcpy(f->node_counts, e->node_counts, sizeof f->node_counts);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    f->self = (struct lg_worker_self){
        .cpu_user_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
        .cpu_sys_s = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6,
        .busy_ratio = W.busy_ratio,
        .lag_p99_ns = hist_percentile(W.lag, 99),
        .lag_max_ns = hist_max(W.lag),
        .rss_kb = (uint64_t)ru.ru_maxrss,
        .clients = W.n,
    };
    struct buf tail = {0};
    if (ipc_put_hist(&tail, W.lat) < 0)
        die("out of memory");
    struct iovec parts[3] = {{.iov_base = f, .iov_len = sizeof *f},
                             {.iov_base = W.rc + 1, .iov_len = W.o->rounds * sizeof *W.rc},
                             {.iov_base = buf_head(&tail), .iov_len = buf_len(&tail)}};
    if (ipc_sendv(W.fd, IPC_FINAL, parts, 3) < 0)
        _exit(1);
    buf_free(&tail);
    free(f);
    ev_break(W.loop, EVBREAK_ALL);
}

static double cpu_s(const struct rusage *ru)
{
    return (double)(ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) +
           (double)(ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) / 1e6;
}

static void on_close_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)t, (void)revents;
    for (uint32_t i = 0; i < W.n && W.phase == WP_CLOSING; i++)
        lg_client_abort(&W.eng, &W.clients[i]);
    send_final(); /* in case nothing was left to abort */
}

static void on_close(void)
{
    round_done(true);
    if (W.cur) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double wall = (double)(now_ns() - W.rounds_wall_ns) / 1e9;
        W.busy_ratio = wall > 0 ? (cpu_s(&ru) - cpu_s(&W.ru_rounds)) / wall : 0;
    }
    /* Handshakes still running (an interrupted connect phase) end here as failures. */
    for (uint32_t i = W.next_start; i < W.n; i++)
        W.clients[i].state = LC_DONE;
    W.phase = WP_CLOSING;
    W.closing = 1; /* held until every close has started, so send_final cannot run early */
    for (uint32_t i = 0; i < W.n; i++) {
        struct lg_client *c = &W.clients[i];
        if (c->state == LC_OPEN) {
            W.closing++;
            lg_client_close(&W.eng, c);
        } else if (c->state != LC_DONE && c->state != LC_IDLE && c->state != LC_CLOSING) {
            lg_client_free(&W.eng, c);
        }
    }
    ev_timer_init(&W.close_timer, on_close_timeout, (double)W.o->close_timeout_ns / 1e9, 0);
    ev_timer_start(W.loop, &W.close_timer);
    if (--W.closing == 0)
        send_final();
}

/* ---- coordinator messages ---- */

static void on_ipc_message(const struct ipc_hdr *h, const char *body)
{
    uint32_t round;
    switch (h->type) {
    case IPC_EMITTERS:
        if (h->len % sizeof(uint32_t))
            die("bad emitters message");
        on_emitters(body, h->len / (uint32_t)sizeof(uint32_t));
        break;
    case IPC_ROUND:
        if (h->len != sizeof round || !W.tracks)
            die("bad round message");
        memcpy(&round, body, sizeof round);
        on_round(round);
        break;
    case IPC_CLOSE: on_close(); break;
    default: die("unknown message %u from the coordinator", h->type);
    }
}

static void on_ipc(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)w, (void)revents;
    int rc = ipc_fill(W.fd, &W.in);
    if (rc <= 0)
        _exit(1); /* the coordinator is gone (killed): stop quietly, as our own sockets close with us */
    struct ipc_hdr h;
    const char *body;
    while ((rc = ipc_take(&W.in, &h, &body)) == 1 && W.phase != WP_DONE)
        on_ipc_message(&h, body);
    if (rc < 0)
        die("garbled message from the coordinator");
}

static void setup(const struct lg_opts *o, uint32_t w, uint32_t nworkers, int fd)
{
    char err[256];
    W.o = o;
    W.index = w;
    W.count = nworkers;
    W.fd = fd;
    W.loop = ev_loop_new(EVFLAG_AUTO);
    W.n = o->clients / nworkers + (w < o->clients % nworkers);
    W.clients = calloc(W.n ? W.n : 1, sizeof *W.clients);
    W.rc = calloc((size_t)o->rounds + 1, sizeof *W.rc);
    W.payload = malloc(o->payload);
    W.lat = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    W.lag = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    if (!W.loop || !W.clients || !W.rc || !W.payload || !W.lat || !W.lag)
        die("worker %u: out of memory for %u clients", w, W.n);
    uint32_t inflight = o->max_inflight / nworkers + (w < o->max_inflight % nworkers);
    if (lg_engine_init(&W.eng, W.loop, o, inflight ? inflight : 1, err, sizeof err) < 0)
        die("%s", err);
    W.eng.ops = (struct lg_engine_ops){
        .opened = on_opened, .failed = on_failed, .message = on_message, .lost = on_lost, .closed = on_closed};
    for (uint32_t i = 0; i < W.n; i++) {
        struct lg_client *c = &W.clients[i];
        c->id = i * nworkers + w;
        c->room = room_of(c->id);
        c->target = (uint8_t)(c->id % (uint32_t)o->ntargets);
    }
    W.rate = o->connect_rate / nworkers;
    W.tokens = W.rate > 0 ? 1 : 0;
    ev_io_init(&W.ipc_io, on_ipc, fd, EV_READ);
    ev_io_start(W.loop, &W.ipc_io);
    ev_timer_init(&W.tick, on_tick, TICK_S, TICK_S);
    ev_timer_start(W.loop, &W.tick);
    ev_timer_init(&W.deadline, on_deadline, 0, 0);
}

int lg_worker_main(const struct lg_opts *o, uint32_t w, uint32_t nworkers, int fd)
{
    setup(o, w, nworkers, fd);
    connect_progress();
    ev_run(W.loop, 0);
    for (uint32_t i = 0; i < W.n; i++)
        lg_client_free(&W.eng, &W.clients[i]);
    lg_engine_free(&W.eng);
    free(W.clients);
    free(W.rc);
    free(W.payload);
    free(W.active);
    free(W.slot_in_room);
    free(W.room_active);
    free(W.tracks);
    hist_free(W.lat);
    hist_free(W.lag);
    buf_free(&W.in);
    ev_loop_destroy(W.loop);
    return 0;
}
