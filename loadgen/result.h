/* What a run found, merged over every worker: the one model the summary, the JSON file and the verdict read.
 * The coordinator fills it; report.c only reads it (and writes the verdict into it). */
#ifndef LOADGEN_RESULT_H
#define LOADGEN_RESULT_H

#include "loadgen/hostcpu.h"
#include "loadgen/opts.h"

#include <stdbool.h>
#include <stdint.h>

struct hist;
struct lg_plan;

#define LG_VERSION "0.1.0"

/* Why a client failed. One kind per client: the first failure it met. */
enum lg_err {
    LG_ERR_REFUSED = 0,         /* connect: ECONNREFUSED */
    LG_ERR_CONNECT_TIMEOUT,     /* connect: no TCP connection within --connect-timeout */
    LG_ERR_EMFILE,              /* connect: out of descriptors (EMFILE/ENFILE) */
    LG_ERR_EADDRNOTAVAIL,       /* connect: out of source ports/addresses */
    LG_ERR_CONNECT,             /* connect: any other errno (unreachable, reset, ...) */
    LG_ERR_TLS,                 /* TLS handshake failed (certificate, protocol) */
    LG_ERR_HANDSHAKE_TIMEOUT,   /* TCP up, but no 101 within --connect-timeout */
    LG_ERR_HTTP_STATUS,         /* the upgrade was answered with another status (see status_counts) */
    LG_ERR_BAD_UPGRADE,         /* malformed response, or 101 with a wrong Sec-WebSocket-Accept/Upgrade */
    LG_ERR_HANDSHAKE_CLOSED,    /* the server closed or reset during the handshake */
    LG_ERR_SIO_REFUSED,         /* --protocol socketio: the namespace CONNECT was answered with CONNECT_ERROR */
    LG_ERR_SIO_UPGRADE,         /* --transport polling: the upgrade to a websocket failed (refused, no 3probe, ...) */
    LG_ERR_SIO_SESSION_UNKNOWN, /* --transport polling, either phase: a request answered 400 {"code":1,"message":
                                   "Session ID unknown"}: it reached a node without the session (no stickiness) */
    LG_ERR_DROPPED,             /* open, then closed or reset by the server before the end */
    LG_ERR_PROTOCOL,            /* open, then a frame (or polling response) we could not accept (1002/1007/1009) */
    LG_ERR_SIO_PING_TIMEOUT,    /* --protocol socketio: open, then no Engine.IO ping for pingInterval + pingTimeout */
    LG_ERR_SIO_HTTP,            /* --transport polling: open, then a request answered with another HTTP error */
    LG_ERR_SIO_POLL_TIMEOUT,    /* --transport polling: open, then a POST unanswered within --connect-timeout, or a
                                   GET held past pingInterval + pingTimeout + a margin */
    LG_ERR_CLOSE,               /* our closing handshake failed: answered with a code other than 1000, ended
                                   without an answer, reset; with polling the close POST failed */
    LG_ERR_CLOSE_TIMEOUT,       /* our closing handshake had no answer when its time ran out (the close phase's, or
                                   a --churn leave's --close-timeout), or never started: the phase ran out first */
    LG_ERR_COUNT
};

/* Connect-phase kinds are the ones up to LG_ERR_SIO_SESSION_UNKNOWN, the kinds of open clients the ones from it on:
 * a session unknown to the node it reached is the same failure in either phase. */
#define LG_ERR_IS_CONNECT(k) ((k) <= LG_ERR_SIO_SESSION_UNKNOWN)
#define LG_ERR_IS_OPEN(k)    ((k) >= LG_ERR_SIO_SESSION_UNKNOWN)

/* Stable names used in the JSON ("refused", "connect_timeout", ...) and the summary. */
const char *lg_err_name(enum lg_err k);

#define LG_MAX_STATUS   16 /* distinct HTTP statuses told apart */
#define LG_MAX_NODES    64 /* distinct node names told apart; the rest are counted in nodes_other */
#define LG_MAX_REASONS  32
#define LG_MAX_WARNINGS 16

/* Where clients landed: node names (from --node-header or --cookie) and how many each. */
struct lg_nodes {
    char names[LG_MAX_NODES][64];
    uint32_t counts[LG_MAX_NODES];
    int n;
    uint32_t other, unknown; /* past LG_MAX_NODES names; neither header nor cookie */
};

/* What every worker counts and the coordinator adds up (tally.h): errors by kind with the first message of each,
 * the statuses of refused upgrades, where first connects landed, and --transport polling's outcome. */
struct lg_tally {
    uint32_t err_counts[LG_ERR_COUNT];
    char err_example[LG_ERR_COUNT][160]; /* the first message of each kind */
    int status_codes[LG_MAX_STATUS];     /* LG_ERR_HTTP_STATUS broken down */
    uint32_t status_counts[LG_MAX_STATUS];
    int nstatus;
    struct lg_nodes nodes;              /* where first connects landed: by --node-header, else by --cookie value */
    uint32_t sio_upgraded, sio_polling; /* --transport polling: first connects that opened upgraded / polling */
};

/* --reconnect: one loss and its return, in ns since the run's zero (back_ns -1: never came back). */
struct lg_episode {
    int64_t lost_ns, back_ns;
};

#define LG_MAX_EPISODES 200000 /* listed in the JSON; the rest are only counted */

/* --reconnect, over the whole run. */
struct lg_recon {
    uint32_t drops;           /* losses after connecting, every one */
    uint32_t reconnected;     /* successful reconnects */
    uint32_t failed_attempts; /* reconnect attempts that failed (by kind in fail_kinds) */
    uint32_t never_back;      /* clients still away when the close began */
    uint32_t fail_kinds[LG_ERR_COUNT];
    uint32_t nepisodes;        /* entries in the episodes that follow (struct lg_result: episodes) */
    uint32_t episodes_dropped; /* past LG_MAX_EPISODES */
    struct lg_nodes nodes;     /* where reconnects landed */
};

struct lg_round {
    uint32_t emitted;    /* messages sent this round */
    bool emitter_gone;   /* an emitter was lost before sending: its message is owed to nobody */
    uint64_t expected;   /* deliveries due: every receiver connected when a message was sent, in its room */
    uint64_t missed;     /* missed_while_away: deliveries not due as the receiver was away when the message was
                            sent, or was lost before it arrived */
    uint64_t received;   /* first arrivals before the deadline */
    uint64_t late;       /* first arrivals after it */
    uint64_t missing;    /* expected - received - late: never arrived */
    uint64_t duplicate;  /* arrivals of a message already received */
    uint64_t reordered;  /* first arrivals after a later message of the same emitter */
    int64_t start_ns;    /* since the run's start (CLOCK_MONOTONIC) */
    int64_t duration_ns; /* from the first send to the last expected arrival, or to the deadline */
    bool timed_out;
    int64_t p50_ns, p99_ns, max_ns; /* this round's delivery latency */
    int64_t lateness_ns;            /* how long after its intended send time the round started (0: on time) */

    /* --churn: first arrivals at a receiver not owed the round (it left or came back during it), and the leaves,
     * returns and failed returns while this was the latest round */
    uint64_t churned;
    uint32_t left, rejoined, rejoin_failed;
};

/* The counts of struct lg_round that each worker keeps and the coordinator adds up, X(field) each: the one list of
 * them (tally.h: lg_round_add). The rest of a round (start, duration, percentiles, missing) is the coordinator's. */
#define LG_ROUND_COUNTS(X)                                                                                             \
    X(emitted)                                                                                                         \
    X(expected)                                                                                                        \
    X(missed)                                                                                                          \
    X(received)                                                                                                        \
    X(late)                                                                                                            \
    X(duplicate)                                                                                                       \
    X(reordered)                                                                                                       \
    X(churned)                                                                                                         \
    X(left)                                                                                                            \
    X(rejoined)                                                                                                        \
    X(rejoin_failed)

/* --ack (--protocol socketio): the acks the emitters asked for, over the whole run. */
struct lg_acks {
    uint64_t expected; /* emits that asked for an ack (an emitter lost meanwhile takes back what it still waited for) */
    uint64_t received; /* matching acks within --deadline of their emit */
    uint64_t late;     /* after it */
    uint64_t missing;  /* expected - received - late: never came */
    uint64_t duplicate; /* a second ack for one emit */
    uint64_t unknown;   /* an ack whose id no emit of that client is waiting for */
};

struct lg_worker_self {
    double cpu_user_s, cpu_sys_s;   /* getrusage, whole run */
    double busy_ratio;              /* CPU seconds / wall seconds during the rounds (1.0 = one core) */
    int64_t lag_p99_ns, lag_max_ns; /* event-loop lag: lateness of a 10 ms timer */
    uint64_t rss_kb;                /* peak resident set (ru_maxrss) */
    uint32_t clients;
};

struct lg_result {
    const struct lg_opts *opts;
    const struct lg_plan *plan; /* how the run was spread (plan.h); NULL: not reported */
    double start_epoch;         /* wall clock at the start, seconds */
    char host[256];             /* gethostname */
    char version[32];

    /* phases, nanoseconds since the start */
    int64_t connect_ns; /* connect phase duration: first connect to all ready (or all failed) */
    int64_t rounds_ns;  /* rounds phase duration */
    int64_t verify_ns;  /* wait for stragglers after the last round */
    int64_t close_ns;   /* close handshake phase */
    int64_t total_ns;

    /* clients */
    uint32_t attempted, connected, failed; /* failed: in the connect phase */
    uint32_t dropped;                      /* open, then lost before the end */
    uint32_t closed_clean;                 /* close handshake completed (their close frame, then EOF) */

    /* --churn, over the whole run: every leave ends as rejoined, rejoin failed (could not connect again) or pending
     * (away, or coming back, when the close began): left = rejoined + failed + pending */
    uint32_t churn_left, churn_rejoined, churn_failed, churn_pending;

    /* the schedule, over the rounds run: a round is late past the tolerance, max(1ms, --interval / 10), so timer and
     * dispatch jitter is not */
    uint32_t rounds_late;
    int64_t late_tolerance_ns, lateness_max_ns, lateness_sum_ns;

    /* histograms, nanoseconds; never NULL after a run */
    struct hist *connect;        /* TCP connect time */
    struct hist *handshake;      /* TLS (if any) + HTTP upgrade, from TCP up to the 101 */
    struct hist *latency;        /* receive time - the round's intended send time (coordinated omission) */
    struct hist *service;        /* receive time - actual send time, uncorrected: the whole run only */
    struct hist *ack;            /* --ack: from an emit to its ack */
    struct lg_acks acks;         /* --ack */
    struct hist *away;           /* --reconnect: from a loss to the new connection being usable */
    struct lg_recon recon;       /* --reconnect */
    struct lg_episode *episodes; /* recon.nepisodes, sorted by lost_ns */
    uint32_t emitter_gone_rounds;
    double start_unix_ms; /* CLOCK_REALTIME of the run's zero (every *_ns since the start counts from it) */

    /* rounds (opts->rounds entries, only the first rounds_run are meaningful) */
    struct lg_round *rounds;
    uint32_t rounds_run;
    struct lg_round total; /* sums over the rounds (start/duration/percentiles: whole rounds phase) */
    uint64_t echoed;       /* an emitter got its own message back without --echo */
    uint64_t foreign;      /* messages without our marker (ignored) */
    uint64_t corrupt;      /* our marker, then garbage */

    /* errors, statuses, where clients landed ("unknown" when neither header nor cookie said), transports */
    struct lg_tally tally;

    /* self-monitoring */
    struct lg_worker_self workers[LG_MAX_WORKERS];
    uint32_t nworkers;
    double coord_cpu_s;
    struct hostcpu_use machine; /* every process's CPU use during the rounds (hostcpu.h) */

    bool interrupted; /* SIGINT/SIGTERM ended the run early (the caller fails it) */
    int argc;         /* the command line as given (the caller's copy: getopt permutes argv), for the report */
    char *const *argv;

    /* verdict, filled by lg_verdict */
    int exit_code; /* 0 pass, 1 verification or threshold failure, 3 could not connect */
    char reasons[LG_MAX_REASONS][200];
    int nreasons;
    int reasons_connect, reasons_checks, reasons_thresholds; /* where each part of lg_verdict's reasons ends: the
                        connect phase's, the other checks', the thresholds'; later ones are the caller's (run) */
    char warnings[LG_MAX_WARNINGS][200];
    int nwarnings;
    bool threshold_ok[LG_MAX_THRESHOLDS];
    double threshold_actual[LG_MAX_THRESHOLDS]; /* ns or fraction, as the threshold's value */
};

#endif
