/* loadgen's coordinator; see coord.h.
 *
 * Round pacing, on intended send times (as wrk2): round r is intended to start at sched0 + (r-1) * interval, sched0
 * being round 1's start; it starts then, or as soon as every worker has reported round r-1 over (all its expected
 * deliveries arrived, or its deadline passed) if that is later. Rounds never overlap, so a slow system is measured,
 * not buried under a backlog the generator made; a round that starts late is not skipped but measured from its
 * intended time (the workers know it from IPC_ROUND), so a stall shows up as latency rather than as fewer samples
 * (coordinated omission). With --duration no round starts once the duration since sched0 has passed. After the
 * last round a short verify window (deadline / 10, at most 200 ms) lets duplicates and stragglers show up before the
 * close.
 *
 * What a round owes is known only once it is sent: each worker reports which of its emitters' slots sent
 * (IPC_EMITTED), and the coordinator tells every worker the whole list (IPC_SENT), so a message that was never sent
 * is owed to nobody and a round whose emitters are all gone ends at once. A gone slot gets the next open client of
 * its room (each worker proposes one in IPC_ROUND_DONE) as its emitter from the next round on (IPC_HANDOVER). */
#define _GNU_SOURCE
#include "loadgen/coord.h"

#include "common/hist.h"
#include "loadgen/hostcpu.h"
#include "loadgen/ipc.h"
#include "loadgen/tally.h"
#include "loadgen/worker.h"

#include <errno.h>
#include <ev.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROGRESS_S   0.25 /* the line redrawn on a terminal */
#define WORKER_GRACE 2.0  /* seconds past a deadline before a silent worker is declared stuck */

enum cphase { CP_CONNECT = 0, CP_ROUNDS, CP_VERIFY, CP_CLOSE, CP_DONE };

struct wk {
    pid_t pid;
    int fd;
    ev_io io;
    struct buf in;
    struct ipc_progress progress;
    bool ready, round_done, final, emitted;
};

struct coord {
    struct ev_loop *loop;
    const struct lg_opts *o;
    struct lg_result *r;
    struct hlog *hlog;
    struct wk *w;
    uint32_t nw, nready, ndone, nfinal;
    enum cphase phase;
    int64_t t0, t_phase, round_start, sched0;
    uint32_t round;                /* current (1-based), 0 before the first */
    uint32_t *emitters, nemitters; /* the active slots, sorted */
    uint32_t *emit_id;             /* per slot (< --emitters): the client emitting for it */
    uint32_t *sent, nsent, *gone, ngone, *cand, nemitted;
    struct hist *round_hist;
    int64_t first_send, last_arrival;
    bool timed_out, progress_tty, progress_shown, failed;
    char err[256];
    ev_timer pace, watchdog, progress;
    ev_signal sigint, sigterm;
    struct hostcpu_sample cpu_rounds; /* the machine's CPU counters when the rounds began */
};

static struct coord C;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double rel_s(int64_t t)
{
    return (double)(t - C.t0) / 1e9;
}

static void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* loadgen itself failed: stop everything and report what was gathered. */
static void fatal(const char *fmt, ...)
{
    if (!C.failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(C.err, sizeof C.err, fmt, ap);
        va_end(ap);
    }
    C.failed = true;
    C.phase = CP_DONE;
    ev_break(C.loop, EVBREAK_ALL);
}

static void broadcast(uint32_t type, const void *body, size_t len)
{
    for (uint32_t i = 0; i < C.nw; i++)
        if (ipc_send(C.w[i].fd, type, body, len) < 0)
            fatal("worker %u: %s", i, strerror(errno));
}

/* ---- progress: on stdout, with the header before it and the summary after it ---- */

/* "[12.0s] round 3/5  connected 29500/30000  delivered 88500  errors 0", from what the workers reported last. */
static void progress_text(char *out, size_t len)
{
    struct ipc_progress sum = {0};
    for (uint32_t i = 0; i < C.nw; i++) {
        const struct ipc_progress *p = &C.w[i].progress;
        sum.connected += p->connected;
        sum.failed += p->failed;
        sum.dropped += p->dropped;
        sum.closed += p->closed;
        sum.close_errors += p->close_errors;
    }
    uint32_t open = sum.connected - (sum.dropped < sum.connected ? sum.dropped : sum.connected);
    uint32_t errors = sum.failed + sum.dropped + sum.close_errors;
    uint64_t delivered = hist_count(C.r->latency) + hist_count(C.round_hist);
    int n = snprintf(out, len, "[%.1fs] ", rel_s(now_ns()));
    if (n < 0 || (size_t)n >= len)
        return;
    if (C.phase == CP_CONNECT)
        snprintf(out + n, len - n, "connect  connected %u/%u  failed %u", sum.connected, C.o->clients, sum.failed);
    else if (C.phase == CP_CLOSE)
        snprintf(out + n, len - n, "closing  closed %u/%u  errors %u", sum.closed, open, errors);
    else if (C.phase == CP_ROUNDS && C.round)
        snprintf(out + n, len - n, "round %u/%u  connected %u/%u  delivered %" PRIu64 "  errors %u", C.round,
                 C.o->rounds, open, C.o->clients, delivered, errors);
    else
        snprintf(out + n, len - n, "%s  connected %u/%u  delivered %" PRIu64 "  errors %u",
                 C.phase == CP_VERIFY && C.round ? "verify" : "ready", open, C.o->clients, delivered, errors);
}

/* On a terminal one line redrawn in place; else (a CI log) a plain line each --progress. */
static void draw_progress(void)
{
    char text[200];
    progress_text(text, sizeof text);
    if (C.progress_tty) {
        printf("\r\033[K%s", text);
        C.progress_shown = true;
    } else {
        printf("%s\n", text);
    }
    fflush(stdout);
}

static void clear_progress(void)
{
    if (C.progress_shown)
        printf("\r\033[K");
    fflush(stdout);
    C.progress_shown = false;
}

static void on_progress(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)t, (void)revents;
    draw_progress();
}

/* ---- phases ---- */

static void start_close(void)
{
    if (C.phase >= CP_CLOSE)
        return;
    if ((C.phase == CP_VERIFY || C.phase == CP_ROUNDS) && C.round)
        C.r->verify_ns = now_ns() - C.t_phase;
    C.phase = CP_CLOSE;
    C.t_phase = now_ns();
    ev_timer_stop(C.loop, &C.pace);
    ev_timer_stop(C.loop, &C.watchdog);
    broadcast(IPC_CLOSE, NULL, 0);
    /* The workers bound their own close by --close-timeout; this only catches one that hangs. */
    ev_timer_set(&C.watchdog, (double)C.o->close_phase_ns / 1e9 + WORKER_GRACE + 3.0, 0);
    ev_timer_start(C.loop, &C.watchdog);
}

static void on_pace(struct ev_loop *loop, ev_timer *t, int revents);

static void start_round(void)
{
    C.round++;
    C.round_start = now_ns();
    if (C.round == 1)
        C.sched0 = C.round_start;
    /* --interval 0 (back to back) has no schedule to fall behind */
    int64_t late = C.round_start - (C.sched0 + (int64_t)(C.round - 1) * C.o->interval_ns);
    C.r->rounds[C.round - 1].lateness_ns = late > 0 && C.o->interval_ns ? late : 0;
    C.ndone = 0;
    C.first_send = C.last_arrival = 0;
    C.timed_out = false;
    C.nsent = C.ngone = C.nemitted = 0;
    for (uint32_t i = 0; i < C.nw; i++)
        C.w[i].round_done = C.w[i].emitted = false;
    struct ipc_round r = {.round = C.round, .start_ns = C.round_start, .sched0_ns = C.sched0};
    broadcast(IPC_ROUND, &r, sizeof r);
    ev_timer_stop(C.loop, &C.watchdog);
    ev_timer_set(&C.watchdog, (double)C.o->deadline_ns / 1e9 + WORKER_GRACE, 0);
    ev_timer_start(C.loop, &C.watchdog);
}

static void on_pace(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)t, (void)revents;
    if (C.phase == CP_ROUNDS)
        start_round();
    else if (C.phase == CP_VERIFY)
        start_close();
}

static void on_watchdog(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)t, (void)revents;
    for (uint32_t i = 0; i < C.nw; i++)
        if ((C.phase == CP_ROUNDS && !C.w[i].round_done) || (C.phase == CP_CLOSE && !C.w[i].final))
            fatal("worker %u (pid %d) stopped answering", i, (int)C.w[i].pid);
}

static void after(double seconds)
{
    ev_timer_set(&C.pace, seconds > 0 ? seconds : 0, 0);
    ev_timer_start(C.loop, &C.pace);
}

/* The gone slots that found a candidate get it as their emitter from the next round on. */
static void hand_over(void)
{
    uint32_t pairs[2 * 64], n = 0;
    for (uint32_t i = 0; i < C.ngone; i++) {
        if (C.cand[i] == UINT32_MAX)
            continue; /* nobody open in its room: it stays gone until its emitter is back */
        C.emit_id[C.gone[i]] = C.cand[i];
        pairs[n++] = C.gone[i];
        pairs[n++] = C.cand[i];
        if (n == sizeof pairs / sizeof pairs[0] || i + 1 == C.ngone) {
            broadcast(IPC_HANDOVER, pairs, n * sizeof pairs[0]);
            n = 0;
        }
    }
    if (n)
        broadcast(IPC_HANDOVER, pairs, n * sizeof pairs[0]);
}

/* Every worker reported round C.round over: record it, write its interval, pace the next. */
static void round_over(void)
{
    struct lg_round *rd = &C.r->rounds[C.round - 1];
    ev_timer_stop(C.loop, &C.watchdog);
    hand_over();
    int64_t start = C.first_send ? C.first_send : C.round_start;
    int64_t end = C.timed_out ? start + C.o->deadline_ns : C.last_arrival > start ? C.last_arrival : start;
    rd->start_ns = start - C.t0;
    rd->duration_ns = end - start;
    rd->timed_out = C.timed_out;
    rd->p50_ns = hist_percentile(C.round_hist, 50);
    rd->p99_ns = hist_percentile(C.round_hist, 99);
    rd->max_ns = hist_max(C.round_hist);
    if (C.hlog && hlog_write(C.hlog, NULL, rel_s(start), (double)(end - start) / 1e9, C.round_hist) < 0)
        fatal("writing the .hlog: %s", strerror(errno));
    hist_merge(C.r->latency, C.round_hist);
    hist_reset(C.round_hist);
    C.r->rounds_run = C.round;
    int64_t next = C.sched0 + (int64_t)C.round * C.o->interval_ns, now = now_ns();
    bool expired = C.o->duration_ns && now - C.sched0 >= C.o->duration_ns;
    if (C.round < C.o->rounds && !expired) {
        after((double)(next - now) / 1e9);
        return;
    }
    C.r->rounds_ns = now - C.t_phase;
    struct hostcpu_sample cpu_end = hostcpu_read();
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    C.r->machine = hostcpu_between(&C.cpu_rounds, &cpu_end, cores > 0 ? (unsigned)cores : 0);
    C.phase = CP_VERIFY;
    C.t_phase = now;
    int64_t grace = C.o->deadline_ns / 10 < 200000000 ? C.o->deadline_ns / 10 : 200000000;
    after((double)grace / 1e9);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Every worker is ready: tell them who emits, then start the rounds (or close). */
static void all_ready(void)
{
    int64_t now = now_ns();
    C.r->connect_ns = now - C.t0;
    if (C.hlog) {
        double len = (double)C.r->connect_ns / 1e9;
        if (hlog_write(C.hlog, "connect", 0, len, C.r->connect) < 0 ||
            hlog_write(C.hlog, "handshake", 0, len, C.r->handshake) < 0)
            fatal("writing the .hlog: %s", strerror(errno));
    }
    C.t_phase = now;
    if (C.r->connected == 0 || C.o->rounds == 0) {
        C.phase = CP_VERIFY; /* nothing to send: close after the --hold time, if any */
        after((double)C.o->hold_ns / 1e9);
        return;
    }
    C.cpu_rounds = hostcpu_read();
    qsort(C.emitters, C.nemitters, sizeof *C.emitters, cmp_u32);
    for (uint32_t i = 0; i < C.nemitters; i++)
        C.emit_id[C.emitters[i]] = C.emitters[i];
    broadcast(IPC_EMITTERS, C.emitters, C.nemitters * sizeof *C.emitters);
    C.phase = CP_ROUNDS;
    after((double)(C.o->hold_ns + C.o->interval_ns) / 1e9);
}

/* ---- worker messages ---- */

static int on_ready(struct wk *w, const char *body, size_t len)
{
    struct ipc_ready rd;
    if (w->ready || len < sizeof rd)
        return -1;
    memcpy(&rd, body, sizeof rd);
    size_t pos = sizeof rd + (size_t)rd.n_emitters * sizeof(uint32_t);
    if (pos > len)
        return -1;
    uint32_t *grown = realloc(C.emitters, (C.nemitters + rd.n_emitters + 1) * sizeof *grown);
    if (!grown)
        return -1;
    C.emitters = grown;
    memcpy(C.emitters + C.nemitters, body + sizeof rd, (size_t)rd.n_emitters * sizeof(uint32_t));
    C.nemitters += rd.n_emitters;
    if (ipc_get_hist(body, len, &pos, C.r->connect) < 0 || ipc_get_hist(body, len, &pos, C.r->handshake) < 0)
        return -1;
    C.r->connected += rd.connected;
    C.r->failed += rd.failed;
    w->progress.connected = rd.connected; /* the final counts, for the progress line */
    w->progress.failed = rd.failed;
    w->ready = true;
    if (++C.nready == C.nw)
        all_ready();
    return 0;
}

static int on_round_done(struct wk *w, const char *body, size_t len)
{
    struct ipc_round_done d;
    size_t pos = sizeof d;
    if (len < sizeof d)
        return -1;
    memcpy(&d, body, sizeof d);
    if (ipc_get_hist(body, len, &pos, C.round_hist) < 0)
        return -1;
    if (d.ncand > C.o->emitters || pos + (size_t)d.ncand * sizeof(uint32_t) != len)
        return -1;
    if (d.round != C.round || w->round_done || C.phase != CP_ROUNDS)
        return 0; /* a worker closing a round the coordinator already moved past: its deliveries still count */
    w->round_done = true;
    for (uint32_t i = 0; i < d.ncand && d.ncand == C.ngone; i++) { /* the next after the old emitter, wrapping */
        uint32_t id, old = C.emit_id[C.gone[i]];
        memcpy(&id, body + pos + (size_t)i * sizeof id, sizeof id);
        if (id != UINT32_MAX && (C.cand[i] == UINT32_MAX || id - old < C.cand[i] - old))
            C.cand[i] = id;
    }
    if (d.first_send_ns && (!C.first_send || d.first_send_ns < C.first_send))
        C.first_send = d.first_send_ns;
    if (d.last_arrival_ns > C.last_arrival)
        C.last_arrival = d.last_arrival_ns;
    C.timed_out |= d.timed_out != 0;
    if (++C.ndone == C.nw)
        round_over();
    return 0;
}

/* IPC_EMITTED: once every worker has said which of its slots sent, every worker hears the whole list. */
static int on_emitted(struct wk *w, const char *body, size_t len)
{
    struct ipc_sent h;
    if (len < sizeof h)
        return -1;
    memcpy(&h, body, sizeof h);
    if (h.n_sent > C.o->emitters || h.n_gone > C.o->emitters ||
        len != sizeof h + ((size_t)h.n_sent + h.n_gone) * sizeof(uint32_t))
        return -1;
    if (h.round != C.round || w->emitted || C.phase != CP_ROUNDS || C.nsent + h.n_sent > C.nemitters ||
        C.ngone + h.n_gone > C.nemitters)
        return 0;
    w->emitted = true;
    memcpy(C.sent + C.nsent, body + sizeof h, (size_t)h.n_sent * sizeof(uint32_t));
    memcpy(C.gone + C.ngone, body + sizeof h + (size_t)h.n_sent * sizeof(uint32_t),
           (size_t)h.n_gone * sizeof(uint32_t));
    C.nsent += h.n_sent;
    C.ngone += h.n_gone;
    if (++C.nemitted < C.nw)
        return 0;
    for (uint32_t i = 0; i < C.ngone; i++)
        C.cand[i] = UINT32_MAX;
    C.r->rounds[C.round - 1].emitter_gone = C.ngone > 0;
    struct ipc_sent all = {.round = C.round, .n_sent = C.nsent, .n_gone = C.ngone};
    struct buf b = {0};
    if (buf_append(&b, &all, sizeof all) < 0 || buf_append(&b, C.sent, C.nsent * sizeof *C.sent) < 0 ||
        buf_append(&b, C.gone, C.ngone * sizeof *C.gone) < 0)
        return -1;
    broadcast(IPC_SENT, buf_head(&b), buf_len(&b));
    buf_free(&b);
    return 0;
}

/* --reconnect: the counts, the away histogram and the episodes (at most LG_MAX_EPISODES over every worker). */
static int merge_recon(const struct ipc_final *f, const char *body, size_t len, size_t *pos)
{
    struct lg_recon *r = &C.r->recon;
    if (ipc_get_hist(body, len, pos, C.r->away) < 0 || f->recon.nepisodes > LG_MAX_EPISODES ||
        *pos + (size_t)f->recon.nepisodes * sizeof(struct lg_episode) != len)
        return -1;
    r->drops += f->recon.drops;
    r->reconnected += f->recon.reconnected;
    r->failed_attempts += f->recon.failed_attempts;
    r->never_back += f->recon.never_back;
    r->episodes_dropped += f->recon.episodes_dropped;
    for (int k = 0; k < LG_ERR_COUNT; k++)
        r->fail_kinds[k] += f->recon.fail_kinds[k];
    lg_tally_merge_nodes(&r->nodes, &f->recon.nodes);
    uint32_t take = f->recon.nepisodes, room = LG_MAX_EPISODES - r->nepisodes;
    if (take > room) {
        r->episodes_dropped += take - room;
        take = room;
    }
    if (take) /* none at all without --reconnect, where there is no array */
        memcpy(C.r->episodes + r->nepisodes, body + *pos, (size_t)take * sizeof(struct lg_episode));
    r->nepisodes += take;
    return 0;
}

static int on_final(struct wk *w, const char *body, size_t len)
{
    struct ipc_final f;
    if (w->final || len < sizeof f)
        return -1;
    memcpy(&f, body, sizeof f);
    size_t pos = sizeof f + (size_t)f.rounds * sizeof(struct lg_round);
    if (f.rounds != C.o->rounds || pos > len)
        return -1;
    for (uint32_t i = 0; i < f.rounds; i++) {
        struct lg_round rc;
        memcpy(&rc, body + sizeof f + i * sizeof rc, sizeof rc);
        lg_round_add(&C.r->rounds[i], &rc);
    }
    if (ipc_get_hist(body, len, &pos, C.round_hist) < 0 || ipc_get_hist(body, len, &pos, C.r->service) < 0 ||
        ipc_get_hist(body, len, &pos, C.r->ack) < 0 || merge_recon(&f, body, len, &pos) < 0)
        return -1;
    C.r->acks.expected += f.acks.expected;
    C.r->acks.received += f.acks.received;
    C.r->acks.late += f.acks.late;
    C.r->acks.duplicate += f.acks.duplicate;
    C.r->acks.unknown += f.acks.unknown;
    if (!w->ready) { /* interrupted while it was connecting */
        C.r->connected += f.connected;
        C.r->failed += f.failed;
    }
    C.r->dropped += f.dropped;
    C.r->closed_clean += f.closed_clean;
    C.r->echoed += f.echoed;
    C.r->foreign += f.foreign;
    C.r->corrupt += f.corrupt;
    C.r->churn_left += f.churn_left;
    C.r->churn_rejoined += f.churn_rejoined;
    C.r->churn_failed += f.churn_failed;
    lg_tally_merge(&C.r->tally, &f.tally);
    C.r->workers[w - C.w] = f.self;
    w->final = true;
    if (++C.nfinal == C.nw) {
        C.r->close_ns = now_ns() - C.t_phase;
        C.phase = CP_DONE;
        ev_break(C.loop, EVBREAK_ALL);
    }
    return 0;
}

static int on_worker_message(struct wk *w, const struct ipc_hdr *h, const char *body)
{
    switch (h->type) {
    case IPC_PROGRESS:
        if (h->len != sizeof w->progress)
            return -1;
        memcpy(&w->progress, body, sizeof w->progress);
        return 0;
    case IPC_READY: return on_ready(w, body, h->len);
    case IPC_ROUND_DONE: return on_round_done(w, body, h->len);
    case IPC_FINAL: return on_final(w, body, h->len);
    case IPC_EMITTED: return on_emitted(w, body, h->len);
    case IPC_FATAL: fatal("worker %u: %.*s", (unsigned)(w - C.w), (int)strnlen(body, h->len), body); return 0;
    default: return -1;
    }
}

static void on_worker(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop, (void)revents;
    struct wk *w = io->data;
    int rc = ipc_fill(w->fd, &w->in);
    if (rc <= 0) {
        ev_io_stop(C.loop, io);
        if (!w->final)
            fatal("worker %u (pid %d) exited before reporting", (unsigned)(w - C.w), (int)w->pid);
        return;
    }
    struct ipc_hdr h;
    const char *body;
    while (C.phase != CP_DONE && (rc = ipc_take(&w->in, &h, &body)) == 1)
        if (on_worker_message(w, &h, body) < 0)
            fatal("worker %u sent a malformed message (type %u)", (unsigned)(w - C.w), h.type);
    if (rc < 0)
        fatal("worker %u sent a garbled stream", (unsigned)(w - C.w));
}

static void on_signal(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop, (void)revents;
    if (C.r->interrupted) {
        fatal("interrupted twice: not waiting for the close handshakes");
        return;
    }
    C.r->interrupted = true;
    clear_progress();
    fprintf(stderr, "loadgen: %s: closing the clients and reporting (again to stop now)\n",
            s->signum == SIGINT ? "interrupted" : "terminated");
    if (C.phase == CP_CONNECT) {
        /* Workers are still connecting: closing now reports what they have. */
        C.t_phase = now_ns();
    }
    start_close();
}

/* ---- set-up and tear-down ---- */

static int spawn_workers(char *err, size_t errlen)
{
    for (uint32_t i = 0; i < C.nw; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
            snprintf(err, errlen, "socketpair: %s", strerror(errno));
            return -1;
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            snprintf(err, errlen, "fork: %s", strerror(errno));
            close(sv[0]);
            close(sv[1]);
            return -1;
        }
        if (pid == 0) {
            close(sv[0]);
            for (uint32_t j = 0; j < i; j++)
                close(C.w[j].fd);
            signal(SIGINT, SIG_IGN); /* the coordinator decides when to stop, and tells us */
            signal(SIGTERM, SIG_IGN);
            _exit(lg_worker_main(C.o, i, C.nw, sv[1], C.t0));
        }
        close(sv[1]);
        C.w[i] = (struct wk){.pid = pid, .fd = sv[0]};
    }
    return 0;
}

static void reap_workers(void)
{
    for (uint32_t i = 0; i < C.nw; i++) {
        if (C.w[i].pid <= 0)
            continue;
        if (!C.w[i].final)
            kill(C.w[i].pid, SIGKILL);
        waitpid(C.w[i].pid, NULL, 0);
        if (C.w[i].fd >= 0)
            close(C.w[i].fd);
        buf_free(&C.w[i].in);
    }
}

static int result_init(struct lg_result *r, const struct lg_opts *o)
{
    memset(r, 0, sizeof *r);
    r->opts = o;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    r->start_epoch = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
    gethostname(r->host, sizeof r->host - 1);
    snprintf(r->version, sizeof r->version, "%s", LG_VERSION);
    r->attempted = o->clients;
    r->nworkers = o->workers;
    r->connect = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    r->handshake = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    r->latency = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    r->ack = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    r->away = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    r->service = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    r->rounds = calloc((size_t)o->rounds + 1, sizeof *r->rounds);
    r->episodes = o->reconnect.enabled ? calloc(LG_MAX_EPISODES, sizeof *r->episodes) : NULL;
    return r->connect && r->handshake && r->latency && r->ack && r->away && r->service && r->rounds &&
                   (r->episodes || !o->reconnect.enabled)
               ? 0
               : -1;
}

void lg_result_free(struct lg_result *r)
{
    hist_free(r->connect);
    hist_free(r->handshake);
    hist_free(r->latency);
    hist_free(r->ack);
    hist_free(r->away);
    hist_free(r->service);
    free(r->rounds);
    free(r->episodes);
    r->connect = r->handshake = r->latency = r->ack = r->away = r->service = NULL;
    r->rounds = NULL;
    r->episodes = NULL;
}

static int cmp_episode(const void *a, const void *b)
{
    int64_t x = ((const struct lg_episode *)a)->lost_ns, y = ((const struct lg_episode *)b)->lost_ns;
    return (x > y) - (x < y);
}

/* How far the schedule fell behind: a round is late past a tolerance, so timer and dispatch jitter is not. */
static void schedule_result(struct lg_result *r)
{
    r->late_tolerance_ns = C.o->interval_ns / 10 > 1000000 ? C.o->interval_ns / 10 : 1000000;
    for (uint32_t i = 0; i < r->rounds_run; i++) {
        int64_t late = r->rounds[i].lateness_ns;
        r->rounds_late += late > r->late_tolerance_ns;
        r->lateness_sum_ns += late;
        if (late > r->lateness_max_ns)
            r->lateness_max_ns = late;
    }
}

/* Totals over the rounds run, and what the workers' self-reports add up to. */
static void finish_result(void)
{
    struct lg_result *r = C.r;
    struct lg_round *t = &r->total;
    schedule_result(r);
    for (uint32_t i = 0; i < r->rounds_run; i++) {
        struct lg_round *rd = &r->rounds[i];
        uint64_t arrived = rd->received + rd->late;
        rd->missing = rd->expected > arrived ? rd->expected - arrived : 0;
        lg_round_add(t, rd);
        t->missing += rd->missing;
        r->emitter_gone_rounds += rd->emitter_gone;
        t->timed_out |= rd->timed_out;
    }
    if (r->episodes)
        qsort(r->episodes, r->recon.nepisodes, sizeof *r->episodes, cmp_episode);
    r->churn_pending = r->churn_left - r->churn_rejoined - r->churn_failed; /* never negative: see the worker */
    uint64_t acked = r->acks.received + r->acks.late;
    r->acks.missing = r->acks.expected > acked ? r->acks.expected - acked : 0;
    t->start_ns = r->rounds_run ? r->rounds[0].start_ns : 0;
    t->duration_ns = r->rounds_ns;
    t->p50_ns = hist_percentile(r->latency, 50);
    t->p99_ns = hist_percentile(r->latency, 99);
    t->max_ns = hist_max(r->latency);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r->coord_cpu_s =
        (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    r->total_ns = now_ns() - C.t0;
}

static void loop_setup(void)
{
    C.loop = ev_default_loop(EVFLAG_AUTO);
    for (uint32_t i = 0; i < C.nw; i++) {
        ev_io_init(&C.w[i].io, on_worker, C.w[i].fd, EV_READ);
        C.w[i].io.data = &C.w[i];
        ev_io_start(C.loop, &C.w[i].io);
    }
    ev_timer_init(&C.pace, on_pace, 0, 0);
    ev_timer_init(&C.watchdog, on_watchdog, 0, 0);
    C.progress_tty = isatty(STDOUT_FILENO);
    double every = C.progress_tty ? PROGRESS_S : (double)C.o->progress_ns / 1e9;
    ev_timer_init(&C.progress, on_progress, every, every);
    if (!C.o->quiet && every > 0)
        ev_timer_start(C.loop, &C.progress);
    ev_signal_init(&C.sigint, on_signal, SIGINT);
    ev_signal_init(&C.sigterm, on_signal, SIGTERM);
    ev_signal_start(C.loop, &C.sigint);
    ev_signal_start(C.loop, &C.sigterm);
}

static int coord_alloc(void)
{
    size_t E = C.o->emitters ? C.o->emitters : 1;
    C.emit_id = calloc(E, sizeof *C.emit_id);
    C.sent = calloc(E, sizeof *C.sent);
    C.gone = calloc(E, sizeof *C.gone);
    C.cand = calloc(E, sizeof *C.cand);
    C.w = calloc(C.nw, sizeof *C.w);
    C.round_hist = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    return C.emit_id && C.sent && C.gone && C.cand && C.w && C.round_hist ? 0 : -1;
}

/* The whole-run intervals, from the first round on: --ack's acks, --reconnect's away times. 0, or -1. */
static int hlog_tail(void)
{
    const struct lg_result *r = C.r;
    double rounds_s = (double)r->connect_ns / 1e9, len = rel_s(now_ns()) - rounds_s;
    if (hist_count(r->ack) && hlog_write(C.hlog, "ack", rounds_s, len, r->ack) < 0)
        return -1;
    if (C.o->reconnect.enabled && hist_count(r->away) && hlog_write(C.hlog, "reconnect", rounds_s, len, r->away) < 0)
        return -1;
    return 0;
}

int lg_run(const struct lg_opts *o, struct lg_result *r, FILE *hlog, char *err, size_t errlen)
{
    memset(&C, 0, sizeof C);
    C.o = o;
    C.r = r;
    C.nw = o->workers;
    if (result_init(r, o) < 0 || coord_alloc() < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (hlog && !(C.hlog = hlog_open(hlog, r->start_epoch))) {
        snprintf(err, errlen, "writing the .hlog header failed");
        return -1;
    }
    struct timespec rt;
    C.t0 = now_ns();
    clock_gettime(CLOCK_REALTIME, &rt); /* read together: the run's zero on both clocks */
    r->start_unix_ms = (double)rt.tv_sec * 1e3 + (double)rt.tv_nsec / 1e6;
    int rc = spawn_workers(err, errlen);
    if (rc == 0) {
        loop_setup();
        ev_run(C.loop, 0);
        clear_progress();
        if (C.failed) {
            snprintf(err, errlen, "%s", C.err);
            rc = -1;
        }
    }
    reap_workers();
    /* Deliveries after the last round (stragglers, duplicates) go in a last interval of their own. */
    if (hist_count(C.round_hist)) {
        if (C.hlog)
            hlog_write(C.hlog, NULL, rel_s(C.t_phase), (double)(now_ns() - C.t_phase) / 1e9, C.round_hist);
        hist_merge(r->latency, C.round_hist);
    }
    if (C.hlog && hlog_tail() < 0 && rc == 0) {
        snprintf(err, errlen, "writing the .hlog failed");
        rc = -1;
    }
    finish_result();
    if (C.hlog && hlog_close(C.hlog) < 0 && rc == 0) {
        snprintf(err, errlen, "writing the .hlog failed");
        rc = -1;
    }
    hist_free(C.round_hist);
    free(C.emitters);
    free(C.emit_id);
    free(C.sent);
    free(C.gone);
    free(C.cand);
    free(C.w);
    if (C.loop)
        ev_loop_destroy(C.loop);
    return rc;
}
