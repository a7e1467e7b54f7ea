/* A loadgen worker; see worker.h. The counting rules, which the report and the JSON schema rely on:
 *
 *  - Emitter slots are the clients 0 .. E-1 that are open when the rounds begin; each slot sends one message per
 *    round with seq = round, from its emitter: the slot's first client, or after a loss the client the coordinator
 *    handed it to (IPC_HANDOVER). A client in room k hears from every slot of room k (but its own, unless --echo).
 *  - expected[r] is counted once round r's IPC_SENT says which slots really sent (a slot whose emitter was gone
 *    sent nothing and is owed to nobody): for each message, every client of its room connected when it was sent
 *    (open and owed the round), or lost since having received it. The others missed it while away (missed[r]):
 *    lost (with or without --reconnect), reconnecting, or back too late for the round. A client lost during the
 *    round gives back what it had not yet received, which becomes missed while away, never missing.
 *  - --reconnect: a lost client is LC_FL_AWAY until a reconnect is usable; its attempts follow the backoff
 *    (lg_backoff_ns) from the tick, and a usable one is owed from the next round that starts (OWED_PENDING, as a
 *    --churn return). Its trackers are kept: a new connection's first seq is higher than any it saw.
 *  - A delivery's latency counts from its round's intended send time (IPC_ROUND's sched0 + (round - 1) * interval,
 *    the same for every worker, emitter and hand-over), its service time from the send time it carries; a first
 *    arrival is "received" when its service time is within the deadline, else "late" (a round the schedule
 *    started late is not the server's fault once sent);
 *    "reordered" when a higher seq of the same emitter came first; a repeat is a "duplicate".
 *  - Deliveries are timed at the message's last byte.
 *  - --ack: an emit's ack id is its round; each emitter here keeps the send times of its last ACK_WINDOW emits, so
 *    an ack is matched to its emit exactly once (a second one is a duplicate; an id no kept emit has, unknown).
 *    An emitter lost takes back the acks it still waited for, as a lost receiver takes back its messages.
 *
 * Churn (--churn RATE): from the first round until the last one is judged here, this worker's share of RATE (in
 * proportion to its receivers) leave, a close handshake, and come back as a new connection --churn-gap after they
 * left (or once their close is over, at most --close-timeout). Emitters never leave. Then:
 *
 *  - A round is owed only to the receivers open for the whole of it: open before its first send and still open when
 *    this worker judges it (round_done). Every send comes after the coordinator's start time of the round, which
 *    IPC_ROUND carries (one CLOCK_MONOTONIC per host), so a client that opened before that time had joined its room
 *    at the server before any message of the round existed. c->owed is the first round a connection is owed: 0 from
 *    the start; OWED_NONE while away; OWED_PENDING from a return until the next round starts here and settles it
 *    (that round if the client opened before the round's start, else the one after).
 *  - What a client receives of a round it is not owed is "churned": neither received nor missing. A leave takes the
 *    round in progress back (expected, and what it had received of it, which becomes churned); so does settling a
 *    return that opened too late for the round it already heard from. late_open counts each client's late arrivals
 *    of that round, so the move is exact. Duplicates and messages from another room stay errors whoever gets them.
 *  - A return starts with fresh trackers: the next seq it sees is in order, not "reordered" after its old ones.
 *  - Every leave ends as exactly one of rejoined, rejoin failed (an error of its kind; the client stays gone) or
 *    pending (still away when the close begins). Connect-phase figures (connected, where clients landed, connect
 *    and handshake times) count each client once: returns are not added to them. */
#define _GNU_SOURCE
#include "loadgen/worker.h"

#include "common/hist.h"
#include "common/log.h"
#include "loadgen/client.h"
#include "loadgen/httpc.h"
#include "loadgen/ipc.h"
#include "loadgen/payload.h"
#include "loadgen/sio.h"
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

#define TICK_S           0.01  /* rate tokens, loop-lag probe */
#define TICKS_PER_REPORT 10    /* progress to the coordinator, handshake timeouts */
#define CHURN_MIN_S      0.001 /* the churn timer's shortest period: faster rates leave several per tick */
#define WATCH_TICKS      25    /* --protocol socketio: ticks per sweep of every client's ping deadline (250 ms) */

#define ACK_WINDOW 64 /* --ack: emits per emitter whose ack is still matched (older acks are unknown) */

#define OWED_PENDING (UINT32_MAX - 1) /* c->owed of a return: settled when the next round starts here */
#define OWED_NONE    UINT32_MAX       /* c->owed while away: no round */

enum wphase { WP_CONNECT = 0, WP_READY, WP_CLOSING, WP_DONE };

/* A client that left (--churn), in the order they left. */
struct away {
    uint32_t idx; /* into W.clients */
    uint32_t pad_;
    int64_t left_ns;
};

/* client id + 1 (0: empty) -> slot */
struct emap_ent {
    uint32_t key, slot;
};

/* --reconnect, per client: the loss being recovered from */
struct recon {
    int64_t due_ns, lost_ns; /* the next attempt; the loss (CLOCK_MONOTONIC) */
    uint32_t attempt;        /* attempts failed since the loss */
    int32_t ep;              /* its entry in W.eps, -1 past LG_MAX_EPISODES */
    char *jar;               /* the cookies its connections were set (NULL: none), sent again by a reconnect */
};

#define RECON_JAR_MAX 384 /* as a polling session's jar */

/* --ack: one emit waiting for its ack (sent_ns 0 once acked). */
struct ack_slot {
    uint32_t round; /* the ack id; 0 = empty */
    uint32_t pad_;
    int64_t sent_ns;
};

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
    uint32_t watch_next; /* socketio: where the next slice of the ping watchdog's sweep starts */
    int64_t last_tick_ns;

    /* emitters, by slot (ipc.h): active[s] for s < E; slot_in_room[s] = its index among its room's active slots
     * (the tracker it uses); room_slots[room_first[k] ..] the active slots of room k in that order; emit_id[s] the
     * client emitting for it now; emap: client id -> slot, for every client that emitted for one */
    uint8_t *active;
    uint32_t *slot_in_room, *room_active; /* room_active[k]: active slots in room k */
    uint32_t *room_first, *room_slots, *emit_id;
    struct emap_ent *emap;
    uint32_t emap_cap, emap_len;
    /* the current round's IPC_SENT: sent[s], sent_room[k] slots of room k that sent, gone: those that could not */
    uint8_t *sent;
    uint32_t *sent_room, *gone, *tmp;
    uint32_t ngone;
    bool sent_known;
    struct lg_track *tracks;
    char *payload;
    char *frame; /* --protocol socketio: the EVENT packet carrying payload (one buffer, no allocation per send) */
    size_t frame_cap;
    char *tpl; /* --send: the rendered template */
    size_t tpl_cap;

    /* --ack: ACK_WINDOW entries per emitter slot, the ack latency */
    struct ack_slot *acks_out;
    struct hist *ack_hist;
    struct lg_acks acks;

    /* rounds */
    struct lg_round *rc; /* indexed by round (1-based; [0] unused) */
    uint32_t cur;        /* the latest round started here */
    bool pending;        /* cur's ROUND_DONE not sent yet */
    int64_t first_send, last_arrival;
    ev_timer deadline;
    struct hist *lat; /* deliveries since the last ROUND_DONE, from the intended send time */
    struct hist *svc; /* every delivery, from the actual send time (uncorrected) */
    int64_t sched0;   /* round 1's start, from IPC_ROUND (0 until the first) */
    uint64_t echoed, foreign, corrupt;
    uint32_t dropped, closed_clean;
    /* the close phase: closes start in client order (close_next), at most close_cap in flight (closing) */
    uint32_t close_next, closing, close_cap, closes_done;
    bool close_pumping;
    ev_timer close_timer;

    /* --churn (see the top of the file); the arrays have W.n entries, only with --churn */
    double churn_rate, churn_tokens; /* this worker's leaves per second */
    uint32_t churn_next;             /* round robin cursor into W.clients */
    ev_timer churn_tick, back;       /* the next leave; the next return */
    struct away *away;               /* a ring of the clients away, oldest first */
    uint32_t away_head, away_len;
    int64_t *opened_ns;  /* when each client last opened (settles OWED_PENDING) */
    uint32_t *late_open; /* each client's late first arrivals of open_round() */
    int64_t round_start; /* the coordinator's start of round cur */
    uint32_t churn_left, churn_rejoined, churn_failed;

    /* --reconnect (see lg_worker_main's caller: t0 is the run's zero) */
    struct recon *recon; /* W.n entries, only with --reconnect */
    uint32_t *rq;        /* clients waiting for their next attempt (indices into W.clients) */
    uint32_t nrq;
    struct hist *away_hist;
    struct lg_recon rstats;
    struct lg_episode *eps;
    uint32_t neps, eps_cap;
    int64_t t0;

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

/* The slot a client emitted for at some point, or -1. */
static int32_t emap_find(uint32_t id)
{
    if (!W.emap_cap)
        return -1;
    for (uint32_t h = (id * 2654435761u) & (W.emap_cap - 1);; h = (h + 1) & (W.emap_cap - 1)) {
        if (W.emap[h].key == id + 1)
            return (int32_t)W.emap[h].slot;
        if (!W.emap[h].key)
            return -1;
    }
}

static void emap_put(uint32_t id, uint32_t slot);

static void emap_insert(struct emap_ent *t, uint32_t cap, uint32_t key, uint32_t slot)
{
    uint32_t h = ((key - 1) * 2654435761u) & (cap - 1);
    while (t[h].key && t[h].key != key)
        h = (h + 1) & (cap - 1);
    t[h] = (struct emap_ent){.key = key, .slot = slot};
}

/* Record (or move) id's slot; the table stays at most half full. */
static void emap_put(uint32_t id, uint32_t slot)
{
    if ((W.emap_len + 1) * 2 > W.emap_cap) {
        uint32_t cap = W.emap_cap ? W.emap_cap * 2 : 64;
        struct emap_ent *t = calloc(cap, sizeof *t);
        if (!t)
            die("out of memory for the emitters' map");
        for (uint32_t i = 0; i < W.emap_cap; i++)
            if (W.emap[i].key)
                emap_insert(t, cap, W.emap[i].key, W.emap[i].slot);
        free(W.emap);
        W.emap = t;
        W.emap_cap = cap;
    }
    W.emap_len += emap_find(id) < 0;
    emap_insert(W.emap, W.emap_cap, id + 1, slot);
}

/* The slot c emits for now, or -1. */
static int32_t own_slot(const struct lg_client *c)
{
    int32_t s = emap_find(c->id);
    return s >= 0 && W.emit_id[s] == c->id ? s : -1;
}

static bool is_emitter(const struct lg_client *c)
{
    return own_slot(c) >= 0;
}

/* What c is due of the current round once IPC_SENT is known: the slots of its room that sent, but its own. */
static uint32_t due_sent(const struct lg_client *c)
{
    if (!W.sent_room)
        return 0;
    uint32_t due = W.sent_room[c->room];
    int32_t own = W.o->echo ? -1 : own_slot(c);
    return due - (own >= 0 && W.sent[own]);
}

/* Of those, how many c has seen of round. */
static uint32_t seen_sent(const struct lg_client *c, uint32_t round)
{
    uint32_t seen = 0, first = W.room_first[c->room];
    int32_t own = W.o->echo ? -1 : own_slot(c);
    for (uint32_t k = 0; k < W.room_active[c->room]; k++) {
        uint32_t s = W.room_slots[first + k];
        if (W.sent[s] && (int32_t)s != own)
            seen += (uint32_t)lg_track_seen(&c->tracks[k], round);
    }
    return seen;
}

static uint32_t index_of(const struct lg_client *c)
{
    return (uint32_t)(c - W.clients);
}

/* Is c owed the messages of round (see the top of the file)? A pending return is owed, for now, the round that
 * has not started here yet: its start settles it. */
static bool owed(const struct lg_client *c, uint32_t round)
{
    if (c->owed == OWED_PENDING)
        return round > W.cur;
    return c->owed <= round;
}

/* The round whose counts a leave or a settled return can still take back: the one in progress here, else the next
 * (whose first messages may arrive before it starts here: other workers' emitters may be quicker). */
static uint32_t open_round(void)
{
    return W.pending ? W.cur : W.cur + 1;
}

/* c's first arrivals of round: one per emitter of its room it heard (its own message only with --echo). */
static uint32_t got_of(const struct lg_client *c, uint32_t round)
{
    uint32_t got = 0;
    for (uint32_t k = 0; k < W.room_active[c->room]; k++)
        got += (uint32_t)lg_track_seen(&c->tracks[k], round);
    return got;
}

/* c is not owed round (== open_round()) after all: what it received of it is churned instead. */
static void excuse(struct lg_client *c, uint32_t round)
{
    struct lg_round *r = &W.rc[round];
    uint32_t i = index_of(c), got = got_of(c, round);
    r->received -= got - W.late_open[i];
    r->late -= W.late_open[i];
    r->churned += got;
    W.late_open[i] = 0;
}

/* ---- rounds ---- */

/* For a gone slot: this worker's open client of its room that is not emitting, next after its emitter in id order
 * (wrapping), or UINT32_MAX. */
static uint32_t candidate(uint32_t slot)
{
    uint32_t room = room_of(slot), old = W.emit_id[slot], best = UINT32_MAX, bestd = UINT32_MAX;
    for (uint32_t i = 0; i < W.n; i++) {
        const struct lg_client *c = &W.clients[i];
        if (c->room != room || c->state != LC_OPEN || c->id == old || is_emitter(c))
            continue;
        uint32_t d = c->id - old; /* unsigned: wraps */
        if (d < bestd) {
            bestd = d;
            best = c->id;
        }
    }
    return best;
}

static void round_done(bool timed_out)
{
    if (!W.pending)
        return;
    W.pending = false;
    ev_timer_stop(W.loop, &W.deadline);
    uint32_t ncand = W.sent_known ? W.ngone : 0;
    struct ipc_round_done d = {.round = W.cur,
                               .timed_out = timed_out,
                               .first_send_ns = W.first_send,
                               .last_arrival_ns = W.last_arrival,
                               .ncand = ncand};
    struct buf b = {0};
    if (buf_append(&b, &d, sizeof d) < 0 || ipc_put_hist(&b, W.lat) < 0)
        die("out of memory");
    for (uint32_t i = 0; i < ncand; i++) {
        uint32_t id = candidate(W.gone[i]);
        if (buf_append(&b, &id, sizeof id) < 0)
            die("out of memory");
    }
    send_or_die(IPC_ROUND_DONE, buf_head(&b), buf_len(&b));
    buf_free(&b);
    hist_reset(W.lat);
    if (W.late_open) /* the round is judged: late_open now counts the next one's */
        memset(W.late_open, 0, W.n * sizeof *W.late_open);
    if (W.cur == W.o->rounds)
        ev_timer_stop(W.loop, &W.churn_tick); /* churn ends with the rounds; those away still come back */
}

static void round_check(void)
{
    struct lg_round *r = &W.rc[W.cur];
    if (W.pending && W.sent_known && r->received + r->late >= r->expected)
        round_done(false);
}

static void on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)t, (void)revents;
    round_done(true);
}

/* Socket.IO: the payload as the event's argument, a JSON string (numbers stay exact), or with --binary as the one
 * attachment of a binary event; with --ack the round is the ack id. */
static int emit_sio(struct lg_client *c, uint32_t slot, const struct lg_msg *m, size_t tpl_len)
{
    const struct lg_opts *o = W.o;
    int64_t ack = o->sio_ack ? (int64_t)m->round : -1;
    size_t len = o->binary ? eio_encode_binary_event(W.frame, W.frame_cap, o->sio_nsp, o->sio_event, ack)
                 : W.tpl   ? eio_encode_emit_json(W.frame, W.frame_cap, o->sio_nsp, o->sio_event, ack, W.tpl, tpl_len)
                         : eio_encode_emit(W.frame, W.frame_cap, o->sio_nsp, o->sio_event, ack, W.payload, o->payload);
    if (lg_client_emit(&W.eng, c, W.frame, len, o->binary ? W.payload : NULL, o->payload) < 0)
        return -1;
    W.rc[m->round].emitted++;
    if (!o->sio_ack)
        return 0;
    W.acks_out[(size_t)slot * ACK_WINDOW + m->round % ACK_WINDOW] =
        (struct ack_slot){.round = m->round, .sent_ns = m->send_ns};
    W.acks.expected++;
    return 0;
}

/* c sends slot's message of round: 0, or -1 when it was lost instead (ops.lost has run). */
static int emit(struct lg_client *c, uint32_t slot, uint32_t round)
{
    struct lg_msg m = {.emitter = c->id, .round = round, .seq = round, .send_ns = now_ns()};
    lg_payload_encode(&m, W.payload, W.o->payload);
    if (!W.first_send)
        W.first_send = m.send_ns;
    const char *data = W.payload;
    size_t len = W.o->payload;
    if (W.tpl) { /* --send: the app's shape around loadgen's message */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        len = lg_template_render(&W.o->send, W.payload, W.o->payload, &m,
                                 (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, W.tpl, W.tpl_cap);
        data = W.tpl;
    }
    if (W.frame)
        return emit_sio(c, slot, &m, len);
    if (lg_client_send(&W.eng, c, W.o->binary ? WS_OP_BINARY : WS_OP_TEXT, data, len) < 0)
        return -1;
    W.rc[round].emitted++;
    return 0;
}

/* A return pending when round starts here: owed it if it opened before the round's start, else from the next one
 * (and what it already got of this one is churned). One lost meanwhile keeps, as any lost client does, what it got
 * of a round it was owed. */
static void settle(struct lg_client *c, uint32_t round)
{
    bool in_time = W.opened_ns[index_of(c)] < W.round_start;
    /* one lost again keeps, for IPC_SENT to count, the round it would have been owed */
    c->owed = in_time ? round : c->state == LC_OPEN ? round + 1 : OWED_NONE;
    if (!in_time)
        excuse(c, round);
}

static void start_churn(void);

static void account_round(uint32_t round)
{
    uint64_t expected = 0, missed = 0;
    for (uint32_t i = 0; i < W.n; i++) {
        const struct lg_client *c = &W.clients[i];
        uint32_t due = due_sent(c);
        if (!due)
            continue;
        if (c->state == LC_OPEN) {
            if (owed(c, round))
                expected += due;
            else if (!W.o->churn) /* a reconnect not there when the round began; a --churn return is churn's */
                missed += due;
        } else if (c->flags & LC_FL_AWAY) {
            uint32_t seen = owed(c, round) ? seen_sent(c, round) : 0;
            expected += seen;
            missed += due - seen;
        }
    }
    W.rc[round].expected += expected;
    W.rc[round].missed += missed;
}

/* The slots whose emitter is here send; the coordinator hears which did (IPC_EMITTED). An emitter that is away, or
 * whose connection turns out to be over already, sends nothing: its slot is gone for this round. */
static void emit_round(uint32_t round)
{
    uint32_t nsent = 0, ngone = 0, E = W.o->emitters;
    for (uint32_t s = 0; s < E; s++) {
        if (!W.active[s] || W.emit_id[s] % W.count != W.index)
            continue;
        struct lg_client *c = client_of(W.emit_id[s]);
        if (c && lg_client_alive(&W.eng, c) && emit(c, s, round) == 0)
            W.tmp[nsent++] = s;
        else
            W.tmp[E - 1 - ngone++] = s; /* from the end: the two lists cannot meet (at most E in all) */
    }
    struct ipc_sent h = {.round = round, .n_sent = nsent, .n_gone = ngone};
    struct buf b = {0};
    if (buf_append(&b, &h, sizeof h) < 0 || buf_append(&b, W.tmp, nsent * sizeof *W.tmp) < 0 ||
        buf_append(&b, W.tmp + E - ngone, ngone * sizeof *W.tmp) < 0)
        die("out of memory");
    send_or_die(IPC_EMITTED, buf_head(&b), buf_len(&b));
    buf_free(&b);
}

static void on_round(uint32_t round, int64_t start_ns, int64_t sched0_ns)
{
    if (round == 0 || round > W.o->rounds || round <= W.cur)
        die("bad round %u from the coordinator", round);
    round_done(true); /* the coordinator moved on: the previous round is over here too */
    if (W.cur == 0) {
        getrusage(RUSAGE_SELF, &W.ru_rounds);
        W.rounds_wall_ns = now_ns();
        start_churn();
    }
    W.cur = round;
    W.round_start = start_ns;
    W.sched0 = sched0_ns;
    W.pending = true;
    W.sent_known = false;
    W.first_send = W.last_arrival = 0;
    for (uint32_t i = 0; i < W.n; i++)
        if (W.clients[i].owed == OWED_PENDING)
            settle(&W.clients[i], round);
    emit_round(round);
    ev_timer_set(&W.deadline, (double)W.o->deadline_ns / 1e9, 0);
    ev_timer_start(W.loop, &W.deadline); /* the round is judged once IPC_SENT says what it owes */
}

/* IPC_SENT: what round owes. Each client of a slot's room but its emitter is owed the slot's message if it was
 * connected when it was sent (open and owed the round), or lost since having received it; else it missed it while
 * away. A client lost later in the round gives back what it had not received (on_lost). */
static void on_sent(const char *body, size_t len)
{
    struct ipc_sent h;
    if (len < sizeof h || !W.sent)
        die("bad sent message");
    memcpy(&h, body, sizeof h);
    if (h.n_sent > W.o->emitters || h.n_gone > W.o->emitters ||
        len != sizeof h + ((size_t)h.n_sent + h.n_gone) * sizeof(uint32_t))
        die("bad sent message");
    if (h.round != W.cur || !W.pending)
        return; /* a round this worker already closed (its deadline): nothing is owed any more */
    memset(W.sent, 0, W.o->emitters);
    memset(W.sent_room, 0, lg_room_count(W.o) * sizeof *W.sent_room);
    for (uint32_t i = 0; i < h.n_sent; i++) {
        uint32_t slot;
        memcpy(&slot, body + sizeof h + (size_t)i * sizeof slot, sizeof slot);
        if (slot >= W.o->emitters || !W.active[slot])
            die("bad slot %u in a sent message", slot);
        W.sent[slot] = 1;
        W.sent_room[room_of(slot)]++;
    }
    W.ngone = h.n_gone;
    memcpy(W.gone, body + sizeof h + (size_t)h.n_sent * sizeof(uint32_t), (size_t)h.n_gone * sizeof(uint32_t));
    W.sent_known = true;
    account_round(h.round);
    round_check();
}

/* ---- what the clients report ---- */

static void on_message(struct lg_client *c, const char *head, size_t head_len, uint64_t msg_len, int64_t now)
{
    (void)msg_len;
    struct lg_msg m;
    char found[LG_PAYLOAD_PREFIX];
    if (W.o->find_text) { /* --find: loadgen's message inside the app's */
        long n = lg_find_extract(&W.o->find, head, head_len, found, sizeof found);
        if (n < 0) {
            W.foreign++;
            return;
        }
        head = found, head_len = (size_t)n;
    }
    int rc = lg_payload_parse(head, head_len, &m);
    if (rc == 0) {
        W.foreign++;
        return;
    }
    /* Ours but impossible here: garbled, from nobody we know, or from another room (a leak between rooms). */
    int32_t slot = rc < 0 || m.emitter >= W.o->clients ? -1 : emap_find(m.emitter);
    if (rc < 0 || m.round == 0 || m.round > W.o->rounds || slot < 0 || room_of(m.emitter) != c->room) {
        W.corrupt++;
        return;
    }
    if (m.emitter == c->id && !W.o->echo) {
        W.echoed++;
        return;
    }
    struct lg_round *r = &W.rc[m.round];
    switch (lg_track_see(&c->tracks[W.slot_in_room[slot]], m.seq)) {
    case LG_TRACK_DUPLICATE: r->duplicate++; return;
    case LG_TRACK_STALE:
    case LG_TRACK_INVALID: r->late++; return;
    case LG_TRACK_REORDERED: r->reordered++; break;
    case LG_TRACK_IN_ORDER: break;
    }
    int64_t latency = now - m.send_ns, intended = W.sched0 + (int64_t)(m.round - 1) * W.o->interval_ns;
    /* before this worker's first IPC_ROUND, round 1 (never late) arrived first: its send time is the best known;
     * --interval 0 (back to back) has no intended times */
    bool paced = W.sched0 && W.o->interval_ns;
    hist_record(W.lat, paced && intended < m.send_ns ? now - intended : latency);
    hist_record(W.svc, latency);
    if (!owed(c, m.round)) {
        r->churned++;
        return;
    }
    if (latency > W.o->deadline_ns) {
        r->late++;
        if (W.late_open && m.round == open_round())
            W.late_open[index_of(c)]++;
    } else {
        r->received++;
    }
    W.last_arrival = now;
    if (m.round == W.cur)
        round_check();
}

/* --ack: the ack id of one of c's emits came back (see the top of the file). */
static void on_ack(struct lg_client *c, int64_t id, int64_t now)
{
    int32_t slot = own_slot(c);
    struct ack_slot *s = slot >= 0 && id > 0 && id <= W.o->rounds
                             ? &W.acks_out[(size_t)slot * ACK_WINDOW + (uint64_t)id % ACK_WINDOW]
                             : NULL;
    if (!s || s->round != (uint64_t)id) {
        W.acks.unknown++;
        return;
    }
    if (!s->sent_ns) {
        W.acks.duplicate++;
        return;
    }
    int64_t latency = now - s->sent_ns;
    s->sent_ns = 0;
    hist_record(W.ack_hist, latency);
    if (latency > W.o->deadline_ns)
        W.acks.late++;
    else
        W.acks.received++;
}

/* --ack: a lost emitter's acks still due are not expected any more. */
static void excuse_acks(const struct lg_client *c)
{
    int32_t slot = own_slot(c);
    if (slot < 0)
        return;
    for (struct ack_slot *s = &W.acks_out[(size_t)slot * ACK_WINDOW], *end = s + ACK_WINDOW; s < end; s++) {
        W.acks.expected -= s->round && s->sent_ns;
        *s = (struct ack_slot){0};
    }
}

static void connect_progress(void);
static void back_soon(void);

/* A return (--churn) is open: it starts with fresh trackers and is owed nothing until the next round settles it. */
static void on_rejoined(struct lg_client *c)
{
    uint32_t i = index_of(c);
    c->flags &= (uint8_t)~LC_FL_REJOIN;
    memset(c->tracks, 0, W.room_active[c->room] * sizeof *c->tracks);
    c->owed = OWED_PENDING;
    W.opened_ns[i] = now_ns();
    W.late_open[i] = 0;
    W.rc[W.cur].rejoined++;
    W.churn_rejoined++;
}

/* ---- --reconnect ---- */

/* Uniform in [0, 1): the backoff's jitter (xorshift64*, seeded per worker; spread, not secrecy). */
static double unit_rand(void)
{
    static uint64_t x;
    if (!x)
        x = ((uint64_t)now_ns() ^ ((uint64_t)getpid() << 32)) | 1;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0; /* 53 bits */
}

/* c's next attempt after `attempt` failed ones, at the backoff's delay from now. */
static void recon_queue(struct lg_client *c, uint32_t attempt)
{
    struct recon *r = &W.recon[index_of(c)];
    r->attempt = attempt;
    r->due_ns = now_ns() + lg_backoff_ns(&W.o->reconnect, attempt, unit_rand());
    W.rq[W.nrq++] = index_of(c); /* a client is queued at most once: only an away one, between attempts */
}

/* A loss: an episode begins, and with --reconnect the first attempt is queued. */
static void recon_loss(struct lg_client *c)
{
    if (!W.recon)
        return;
    int64_t now = now_ns();
    struct recon *r = &W.recon[index_of(c)];
    W.rstats.drops++;
    r->lost_ns = now;
    r->ep = -1;
    if (W.neps == LG_MAX_EPISODES) {
        W.rstats.episodes_dropped++;
    } else {
        if (W.neps == W.eps_cap) {
            W.eps_cap = W.eps_cap ? W.eps_cap * 2 : 64;
            W.eps = realloc(W.eps, W.eps_cap * sizeof *W.eps);
            if (!W.eps)
                die("out of memory for the reconnect episodes");
        }
        W.eps[W.neps] = (struct lg_episode){.lost_ns = now - W.t0, .back_ns = -1};
        r->ep = (int32_t)W.neps++;
    }
    if (W.phase == WP_CONNECT || W.phase == WP_READY)
        recon_queue(c, 0);
}

/* Start the attempts that are due, while handshake slots are free. Each goes to the next URL of the list after a
 * failed one (one URL: through the balancer, always that one). */
static void recon_pump(void)
{
    int64_t now = now_ns();
    for (uint32_t k = 0; k < W.nrq && (W.phase == WP_CONNECT || W.phase == WP_READY);) {
        struct lg_client *c = &W.clients[W.rq[k]];
        struct recon *r = &W.recon[W.rq[k]];
        if (r->due_ns > now || !lg_engine_has_slot(&W.eng)) {
            k++;
            continue;
        }
        W.rq[k] = W.rq[--W.nrq];
        c->flags |= LC_FL_REJOIN | LC_FL_RECON;
        c->owed = OWED_PENDING; /* what it hears before it is settled is not owed */
        W.opened_ns[index_of(c)] = INT64_MAX;
        c->target = (uint8_t)((c->id + r->attempt) % (uint32_t)W.o->ntargets);
        lg_client_start(&W.eng, c); /* on_opened or on_failed follow, maybe at once */
    }
}

/* Kept at its length: a sticky cookie is a few bytes, and a million clients may each have one. */
static void on_set_cookie(struct lg_client *c, const char *value, size_t len)
{
    struct recon *r = &W.recon[index_of(c)];
    char jar[RECON_JAR_MAX] = "";
    if (r->jar)
        memcpy(jar, r->jar, strlen(r->jar) + 1);
    if (httpc_jar_set(jar, sizeof jar, value, len) < 0)
        return; /* not name=value, or a full jar: it keeps what it has */
    char *grown = realloc(r->jar, strlen(jar) + 1);
    if (!grown)
        die("out of memory for a cookie jar");
    r->jar = memcpy(grown, jar, strlen(jar) + 1);
}

static const char *kept_cookies(struct lg_client *c)
{
    return W.recon[index_of(c)].jar;
}

/* A reconnect is usable (its 101, or the namespace's CONNECT reply): owed from the next round that starts. */
static void on_reconnected(struct lg_client *c)
{
    int64_t now = now_ns();
    uint32_t i = index_of(c);
    c->flags &= (uint8_t) ~(LC_FL_REJOIN | LC_FL_RECON | LC_FL_AWAY);
    c->owed = OWED_PENDING;
    W.opened_ns[i] = now;
    W.late_open[i] = 0;
    W.rstats.reconnected++;
    hist_record(W.away_hist, now - W.recon[i].lost_ns);
    if (W.recon[i].ep >= 0)
        W.eps[W.recon[i].ep].back_ns = now - W.t0;
}

static void on_recon_failed(struct lg_client *c)
{
    const struct lg_reconnect *o = &W.o->reconnect;
    uint32_t attempt = W.recon[index_of(c)].attempt + 1;
    c->flags &= (uint8_t) ~(LC_FL_REJOIN | LC_FL_RECON);
    c->owed = OWED_NONE;
    W.rstats.failed_attempts++;
    if ((o->attempts && attempt >= o->attempts) || (W.phase != WP_CONNECT && W.phase != WP_READY))
        return; /* given up: it stays away */
    recon_queue(c, attempt);
}

/* --on-open: what the app wants after every connect (join a room, authenticate), before anything else. */
static void send_on_open(struct lg_client *c)
{
    const struct lg_opts *o = W.o;
    for (int i = 0; i < o->non_open; i++) {
        const char *m = o->on_open[i];
        size_t len = strlen(m);
        if (o->protocol != LG_PROTO_SOCKETIO) {
            if (lg_client_send(&W.eng, c, WS_OP_TEXT, m, len) < 0)
                return;
            continue;
        }
        char frame[4096];
        size_t n = eio_encode_event_array(frame, sizeof frame, o->sio_nsp, m, len);
        if (n == 0 || lg_client_emit(&W.eng, c, frame, n, NULL, 0) < 0)
            return; /* lost (ops.lost ran), or longer than any sane join: checked at parse time */
    }
}

static void count_opened(struct lg_client *c)
{
    if (c->flags & LC_FL_RECON) {
        on_reconnected(c);
        return;
    }
    if (c->flags & LC_FL_REJOIN) {
        on_rejoined(c);
        return;
    }
    W.connected++;
    connect_progress();
}

/* Counted first, then --on-open: a client lost while sending it is an open client lost, as at any other time. */
static void on_opened(struct lg_client *c)
{
    count_opened(c);
    if (lg_client_alive(&W.eng, c))
        send_on_open(c);
}

static void on_failed(struct lg_client *c)
{
    if (c->flags & LC_FL_RECON) {
        on_recon_failed(c);
        return;
    }
    if (c->flags & LC_FL_REJOIN) { /* counted by kind already; it stays gone, owed nothing (OWED_NONE) */
        c->flags &= (uint8_t)~LC_FL_REJOIN;
        W.rc[W.cur].rejoin_failed++;
        W.churn_failed++;
        return;
    }
    W.failed++;
    connect_progress();
}

/* An open client was lost: what it had not received of the current round is no longer due but missed while away;
 * rounds whose IPC_SENT comes later count it as away (what it got of them before the loss stays due). */
static void on_lost(struct lg_client *c)
{
    /* also in the connect phase: it did connect, so connected + failed still adds up; with --reconnect once a
     * client (reconnect.drops counts every loss) */
    if (!W.recon || !(c->flags & LC_FL_DROPPED))
        W.dropped++;
    c->flags |= LC_FL_DROPPED;
    if (W.acks_out)
        excuse_acks(c);
    if (c->flags & LC_FL_LEAVING) {
        /* broken while leaving (--churn): the leave is over, and its round was taken back when it began */
        c->flags &= (uint8_t)~LC_FL_LEAVING;
        back_soon();
        return;
    }
    c->flags |= LC_FL_AWAY;
    recon_loss(c);
    if (!W.tracks || !W.pending || !W.sent_known || !owed(c, W.cur))
        return;
    uint32_t unseen = due_sent(c) - seen_sent(c, W.cur);
    W.rc[W.cur].expected -= unseen;
    W.rc[W.cur].missed += unseen;
    round_check();
}

static void close_pump(void);

/* An unclean close was counted by its kind already (client.c). */
static void on_closed(struct lg_client *c, bool clean)
{
    if (c->flags & LC_FL_LEAVING) { /* a leave (--churn): closed_clean counts the final closes only */
        c->flags &= (uint8_t)~LC_FL_LEAVING;
        if (W.phase == WP_READY) {
            back_soon();
            return;
        }
    } else if (clean) {
        W.closed_clean++;
    }
    if (W.phase == WP_CLOSING) {
        W.closing--;
        W.closes_done++;
        close_pump();
    }
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

/* --protocol socketio: one slice of the sweep that checks every client's ping deadline once per WATCH_TICKS ticks
 * (a clock per client would cost a timer each; a deadline is 4 bytes and a compare). */
static void watch_pings(int64_t now)
{
    if (W.o->protocol != LG_PROTO_SOCKETIO || !W.n || W.phase == WP_DONE)
        return;
    uint32_t slice = W.n / WATCH_TICKS + 1;
    if (W.watch_next >= W.n)
        W.watch_next = 0;
    if (slice > W.n - W.watch_next)
        slice = W.n - W.watch_next;
    uint32_t from = W.watch_next;
    W.watch_next += slice;
    lg_engine_watch(&W.eng, W.clients + from, slice, now);
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)t, (void)revents;
    int64_t now = now_ns(), late = now - W.last_tick_ns - (int64_t)(TICK_S * 1e9);
    if (W.last_tick_ns && W.phase == WP_READY && W.cur)
        hist_record(W.lag, late > 0 ? late : 0);
    W.last_tick_ns = now;
    watch_pings(now);
    if (W.nrq)
        recon_pump();
    if (++W.ticks % TICKS_PER_REPORT == 0 && W.phase != WP_DONE) {
        const uint32_t *k = W.eng.tally.err_counts;
        struct ipc_progress p = {.connected = W.connected,
                                 .failed = W.failed,
                                 /* with --reconnect those away now: the progress line's open count */
                                 .dropped = W.recon ? W.rstats.drops - W.rstats.reconnected : W.dropped,
                                 .closed = W.closes_done,
                                 .close_errors = k[LG_ERR_CLOSE] + k[LG_ERR_CLOSE_TIMEOUT]};
        send_or_die(IPC_PROGRESS, &p, sizeof p);
        lg_engine_expire(&W.eng, now); /* handshakes, and returns (--churn), that take too long fail */
    }
    if (W.phase != WP_CONNECT)
        return;
    if (W.rate > 0) {
        double burst = W.rate * 0.02 > 1 ? W.rate * 0.02 : 1;
        W.tokens = W.tokens + W.rate * TICK_S > burst ? burst : W.tokens + W.rate * TICK_S;
    }
    connect_progress();
}

/* ---- emitters and tracking ---- */

/* The per-slot arrays, once the active slots are known. */
static void alloc_slots(uint32_t rooms)
{
    uint32_t E = W.o->emitters;
    W.active = calloc(E, 1);
    W.slot_in_room = calloc(E, sizeof *W.slot_in_room);
    W.room_active = calloc(rooms, sizeof *W.room_active);
    W.room_first = calloc(rooms, sizeof *W.room_first);
    W.room_slots = calloc(E, sizeof *W.room_slots);
    W.emit_id = calloc(E, sizeof *W.emit_id);
    W.sent = calloc(E, 1);
    W.sent_room = calloc(rooms, sizeof *W.sent_room);
    W.gone = calloc(E, sizeof *W.gone);
    W.tmp = calloc(E, sizeof *W.tmp);
    if (!W.active || !W.slot_in_room || !W.room_active || !W.room_first || !W.room_slots || !W.emit_id || !W.sent ||
        !W.sent_room || !W.gone || !W.tmp)
        die("out of memory for %u emitters", E);
}

/* The coordinator's list of open emitters: the slots, who sends for each at first, and one tracker per (client,
 * slot of its room). */
static void on_emitters(const char *body, uint32_t n)
{
    uint32_t rooms = lg_room_count(W.o);
    alloc_slots(rooms);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t id; /* copied out: the body need not be aligned for uint32_t */
        memcpy(&id, body + (size_t)i * sizeof id, sizeof id);
        if (id >= W.o->emitters || W.active[id])
            die("bad emitter id %u", id);
        W.active[id] = 1;
        W.emit_id[id] = id;
        emap_put(id, id);
        W.slot_in_room[id] = W.room_active[room_of(id)]++;
    }
    for (uint32_t k = 1; k < rooms; k++)
        W.room_first[k] = W.room_first[k - 1] + W.room_active[k - 1];
    for (uint32_t s = 0; s < W.o->emitters; s++)
        if (W.active[s])
            W.room_slots[W.room_first[room_of(s)] + W.slot_in_room[s]] = s;
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

/* IPC_HANDOVER: a slot whose emitter was gone has a new one, a client of the same room. */
static void on_handover(const char *body, size_t len)
{
    if (len % (2 * sizeof(uint32_t)) || !W.active)
        die("bad handover message");
    for (size_t off = 0; off < len; off += 2 * sizeof(uint32_t)) {
        uint32_t slot, id;
        memcpy(&slot, body + off, sizeof slot);
        memcpy(&id, body + off + sizeof slot, sizeof id);
        if (slot >= W.o->emitters || !W.active[slot] || id >= W.o->clients || room_of(id) != room_of(slot))
            die("bad handover %u -> %u", slot, id);
        W.emit_id[slot] = id;
        emap_put(id, slot);
    }
}

/* ---- churn ---- */

static void back_at(double seconds)
{
    ev_timer_stop(W.loop, &W.back);
    ev_timer_set(&W.back, seconds > 0 ? seconds : 0, 0);
    ev_timer_start(W.loop, &W.back);
}

/* A leave's close is over: a return may be due. Returns never start inside a client's callback (the client's code
 * still runs on the way out), only from the timer. */
static void back_soon(void)
{
    if (W.away_len && W.phase == WP_READY)
        back_at(0);
}

/* Returns, in the order they left: each one --churn-gap after it left, once its close is over (a close still running
 * after --close-timeout is given up: an unclean close). A return is a new TCP connection and upgrade, same id and
 * room; the balancer may put it on another node. */
static void on_back(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)t, (void)revents;
    int64_t now = now_ns();
    while (W.away_len && W.phase == WP_READY) {
        const struct away *a = &W.away[W.away_head];
        struct lg_client *c = &W.clients[a->idx];
        int64_t give_up = a->left_ns + W.o->close_timeout_ns, due = a->left_ns + W.o->churn_gap_ns;
        if (c->state == LC_CLOSING && now < give_up) {
            back_at((double)(give_up - now) / 1e9); /* or sooner: its on_closed calls back_soon */
            return;
        }
        if (c->state == LC_CLOSING) { /* on_closed(c, false) */
            char why[120];
            snprintf(why, sizeof why, "no answer to its leave's close within %.1fs (--close-timeout)",
                     (double)W.o->close_timeout_ns / 1e9);
            lg_client_abort(&W.eng, c, why);
        }
        if (now < due || !lg_engine_has_slot(&W.eng)) {
            back_at(now < due ? (double)(due - now) / 1e9 : TICK_S);
            return;
        }
        W.away_head = W.away_head + 1 < W.n ? W.away_head + 1 : 0;
        W.away_len--;
        c->flags |= LC_FL_REJOIN;
        lg_client_start(&W.eng, c); /* on_opened or on_failed follow, maybe at once */
    }
}

/* c (open, not an emitter) leaves: the round it is in is taken back, then the close handshake starts. */
static void leave(struct lg_client *c)
{
    uint32_t round = open_round();
    if (round <= W.o->rounds && owed(c, round)) {
        if (W.pending && W.sent_known) /* counted by IPC_SENT; a round not yet sent will not count it */
            W.rc[round].expected -= due_sent(c);
        excuse(c, round);
    }
    c->owed = OWED_NONE;
    W.rc[W.cur].left++;
    W.churn_left++;
    /* W.n entries are enough: a client is in the ring at most once (only open clients leave) */
    W.away[(W.away_head + W.away_len) % W.n] = (struct away){.idx = index_of(c), .left_ns = now_ns()};
    if (W.away_len++ == 0)
        back_at((double)W.o->churn_gap_ns / 1e9);
    c->flags |= LC_FL_LEAVING;
    lg_client_close(&W.eng, c); /* on_closed may already have run when this returns */
    round_check();
}

/* The next open receiver, round robin over this worker's clients. */
static struct lg_client *next_leaver(void)
{
    for (uint32_t tries = 0; tries < W.n; tries++) {
        struct lg_client *c = &W.clients[W.churn_next];
        W.churn_next = W.churn_next + 1 < W.n ? W.churn_next + 1 : 0;
        if (c->id >= W.o->emitters && c->state == LC_OPEN)
            return c;
    }
    return NULL;
}

static void on_churn(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    W.churn_tokens += W.churn_rate * t->repeat;
    /* 1e-9: rate * (1 / rate) may come out a hair under 1; stop when the last round is judged mid-loop */
    while (W.churn_tokens >= 1 - 1e-9 && ev_is_active(&W.churn_tick)) {
        W.churn_tokens -= 1;
        struct lg_client *c = next_leaver();
        if (c) /* else every receiver here is away or gone: this leave is skipped */
            leave(c);
    }
}

/* From the first round: this worker's share of --churn, in proportion to its receivers, spread evenly in time. */
static void start_churn(void)
{
    uint32_t mine = 0;
    for (uint32_t i = 0; i < W.n; i++)
        mine += W.clients[i].id >= W.o->emitters;
    if (!W.o->churn || !mine)
        return;
    W.churn_rate = (double)W.o->churn * mine / (double)(W.o->clients - W.o->emitters);
    double period = 1 / W.churn_rate < CHURN_MIN_S ? CHURN_MIN_S : 1 / W.churn_rate;
    ev_timer_set(&W.churn_tick, period, period);
    ev_timer_start(W.loop, &W.churn_tick);
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
                            .tally = e->tally,
                            .recon = W.rstats,
                            .echoed = W.echoed,
                            .foreign = W.foreign,
                            .corrupt = W.corrupt,
                            .churn_left = W.churn_left,
                            .churn_rejoined = W.churn_rejoined,
                            .churn_failed = W.churn_failed,
                            .rounds = W.o->rounds};
    f->recon.nodes = e->recon_nodes;
    memcpy(f->recon.fail_kinds, e->recon_fail, sizeof f->recon.fail_kinds);
    f->recon.nepisodes = W.neps;
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
    f->acks = W.acks;
    struct buf tail = {0};
    if (ipc_put_hist(&tail, W.lat) < 0 || ipc_put_hist(&tail, W.svc) < 0 || ipc_put_hist(&tail, W.ack_hist) < 0 ||
        ipc_put_hist(&tail, W.away_hist) < 0)
        die("out of memory");
    struct iovec parts[4] = {{.iov_base = f, .iov_len = sizeof *f},
                             {.iov_base = W.rc + 1, .iov_len = W.o->rounds * sizeof *W.rc},
                             {.iov_base = buf_head(&tail), .iov_len = buf_len(&tail)},
                             {.iov_base = W.eps, .iov_len = W.neps * sizeof *W.eps}};
    if (ipc_sendv(W.fd, IPC_FINAL, parts, 4) < 0)
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

/* Start closes in client order while fewer than close_cap are in flight (--max-inflight, this worker's share, as
 * for connects: a hundred thousand closes in one burst would be measuring the burst); each close that ends starts
 * the next. A close that ends at once re-enters through on_closed: the outer call goes on. */
static void close_pump(void)
{
    if (W.close_pumping || W.phase != WP_CLOSING)
        return;
    W.close_pumping = true;
    while (W.close_next < W.n && W.closing < W.close_cap) {
        struct lg_client *c = &W.clients[W.close_next++];
        if (c->state != LC_OPEN)
            continue; /* lost meanwhile, or never connected */
        W.closing++;
        lg_client_close(&W.eng, c); /* on_closed may already have run when this returns */
    }
    W.close_pumping = false;
    if (W.close_next == W.n && W.closing == 0)
        send_final();
}

/* The close phase's time is up: closes in flight had no answer, closes still queued never started. Both are
 * close_timeout, apart from a close the server answered wrongly (close). */
static void on_close_timeout(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)t, (void)revents;
    double limit = (double)W.o->close_phase_ns / 1e9;
    W.close_pumping = true; /* the aborts below start no close, and do not finish the phase */
    char why[160];
    snprintf(why, sizeof why, "no answer to our close before the close phase's %.1fs ran out", limit);
    for (uint32_t i = 0; i < W.n; i++)
        lg_client_abort(&W.eng, &W.clients[i], why); /* those closing */
    for (uint32_t i = W.close_next; i < W.n; i++) {
        struct lg_client *c = &W.clients[i];
        if (c->state != LC_OPEN)
            continue;
        lg_engine_note(&W.eng, LG_ERR_CLOSE_TIMEOUT,
                       "client %u: its close never started: the close phase's %.1fs ran out first (closes are "
                       "paced by --max-inflight)",
                       c->id, limit);
        lg_client_free(&W.eng, c);
    }
    send_final();
}

static void on_close(void)
{
    round_done(true);
    ev_timer_stop(W.loop, &W.churn_tick);
    ev_timer_stop(W.loop, &W.back); /* who is away now stays away: pending */
    W.nrq = 0;                      /* and so does a client lost (--reconnect): never back */
    for (uint32_t i = 0; i < W.n; i++)
        W.rstats.never_back += (W.clients[i].flags & LC_FL_AWAY) != 0;
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
    for (uint32_t i = 0; i < W.n; i++) {
        struct lg_client *c = &W.clients[i];
        if (c->state == LC_CLOSING)
            W.closing++; /* a leave (--churn) closing: awaited too, so its close is counted */
        else if (c->state != LC_OPEN && c->state != LC_DONE && c->state != LC_IDLE)
            lg_client_free(&W.eng, c);
    }
    ev_timer_init(&W.close_timer, on_close_timeout, (double)W.o->close_phase_ns / 1e9, 0);
    ev_timer_start(W.loop, &W.close_timer);
    close_pump(); /* the open ones, paced */
}

/* ---- coordinator messages ---- */

static void on_ipc_message(const struct ipc_hdr *h, const char *body)
{
    struct ipc_round round;
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
        on_round(round.round, round.start_ns, round.sched0_ns);
        break;
    case IPC_SENT: on_sent(body, h->len); break;
    case IPC_HANDOVER: on_handover(body, h->len); break;
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

/* What --churn's returns and --reconnect's attempts keep per client. */
static void alloc_returns(const struct lg_opts *o, uint32_t w)
{
    size_t n = W.n ? W.n : 1;
    if (o->churn || o->reconnect.enabled) {
        W.away = calloc(n, sizeof *W.away);
        W.opened_ns = calloc(n, sizeof *W.opened_ns);
        W.late_open = calloc(n, sizeof *W.late_open);
        if (!W.away || !W.opened_ns || !W.late_open)
            die("worker %u: out of memory for churning %u clients", w, W.n);
    }
    if (o->reconnect.enabled) {
        W.recon = calloc(n, sizeof *W.recon);
        W.rq = calloc(n, sizeof *W.rq);
        if (!W.recon || !W.rq)
            die("worker %u: out of memory for reconnecting %u clients", w, W.n);
    }
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
    W.svc = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    W.lag = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    W.ack_hist = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    W.away_hist = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    if (o->send_text && !(W.tpl = malloc(W.tpl_cap = lg_template_max(&o->send, o->payload))))
        die("worker %u: out of memory", w);
    if (o->protocol == LG_PROTO_SOCKETIO) {
        W.frame_cap = eio_event_max(strlen(o->sio_nsp), strlen(o->sio_event), W.tpl ? W.tpl_cap : o->payload);
        W.frame = malloc(W.frame_cap);
        if (o->sio_ack) /* per slot: any client may come to emit for one (a hand-over) */
            W.acks_out = calloc((size_t)o->emitters * ACK_WINDOW, sizeof *W.acks_out);
        if (!W.frame || (o->sio_ack && !W.acks_out))
            die("worker %u: out of memory", w);
    }
    if (!W.loop || !W.clients || !W.rc || !W.payload || !W.lat || !W.svc || !W.lag || !W.ack_hist || !W.away_hist)
        die("worker %u: out of memory for %u clients", w, W.n);
    uint32_t inflight = o->max_inflight / nworkers + (w < o->max_inflight % nworkers);
    W.close_cap = inflight ? inflight : 1;
    if (lg_engine_init(&W.eng, W.loop, o, W.close_cap, err, sizeof err) < 0)
        die("%s", err);
    W.eng.ops = (struct lg_engine_ops){.opened = on_opened,
                                       .failed = on_failed,
                                       .message = on_message,
                                       .lost = on_lost,
                                       .closed = on_closed,
                                       .ack = on_ack};
    if (o->reconnect.enabled) {
        W.eng.ops.set_cookie = on_set_cookie;
        W.eng.ops.cookies = kept_cookies;
    }
    for (uint32_t i = 0; i < W.n; i++) {
        struct lg_client *c = &W.clients[i];
        c->id = i * nworkers + w;
        c->room = room_of(c->id);
        c->target = (uint8_t)(c->id % (uint32_t)o->ntargets);
    }
    alloc_returns(o, w);
    ev_timer_init(&W.churn_tick, on_churn, 0, 0);
    ev_timer_init(&W.back, on_back, 0, 0);
    W.rate = o->connect_rate / nworkers;
    W.tokens = W.rate > 0 ? 1 : 0;
    ev_io_init(&W.ipc_io, on_ipc, fd, EV_READ);
    ev_io_start(W.loop, &W.ipc_io);
    ev_timer_init(&W.tick, on_tick, TICK_S, TICK_S);
    ev_timer_start(W.loop, &W.tick);
    ev_timer_init(&W.deadline, on_deadline, 0, 0);
}

int lg_worker_main(const struct lg_opts *o, uint32_t w, uint32_t nworkers, int fd, int64_t t0)
{
    W.t0 = t0;
    setup(o, w, nworkers, fd);
    connect_progress();
    ev_run(W.loop, 0);
    for (uint32_t i = 0; i < W.n; i++)
        lg_client_free(&W.eng, &W.clients[i]);
    lg_engine_free(&W.eng);
    free(W.clients);
    free(W.rc);
    free(W.payload);
    free(W.frame);
    free(W.tpl);
    free(W.acks_out);
    hist_free(W.ack_hist);
    free(W.active);
    free(W.slot_in_room);
    free(W.room_active);
    free(W.room_first);
    free(W.room_slots);
    free(W.emit_id);
    free(W.emap);
    free(W.sent);
    free(W.sent_room);
    free(W.gone);
    free(W.tmp);
    for (uint32_t i = 0; W.recon && i < W.n; i++)
        free(W.recon[i].jar);
    free(W.recon);
    free(W.rq);
    free(W.eps);
    hist_free(W.away_hist);
    free(W.tracks);
    free(W.away);
    free(W.opened_ns);
    free(W.late_open);
    hist_free(W.lat);
    hist_free(W.svc);
    hist_free(W.lag);
    buf_free(&W.in);
    ev_loop_destroy(W.loop);
    return 0;
}
