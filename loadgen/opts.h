/* loadgen's command line: options, URLs, source-address ranges and thresholds, parsed and checked before any
 * socket is opened, so every mistake is one clear line and exit 2 (the caller prints err and exits).
 *
 * Durations are written with a unit (common/conf.h: "250ms", "1.5s"); a bare 0 is allowed. Ratios are a
 * fraction ("0.01") or a percentage ("1%"). */
#ifndef LOADGEN_OPTS_H
#define LOADGEN_OPTS_H

#include "common/net.h"
#include "loadgen/template.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LG_MAX_URLS       64
#define LG_MAX_SOURCES    65536
#define LG_MAX_THRESHOLDS 32
#define LG_MAX_HEADERS    16
#define LG_MAX_ON_OPEN    8
#define LG_MAX_WORKERS    128

/* One URL: ws://host[:port][/path][?query] or wss://... (http:// and https:// are taken as ws:// and wss://). */
struct lg_target {
    char url[512];         /* as given */
    bool tls;              /* wss */
    char host[256];        /* name or address without brackets: SNI and certificate name */
    char host_header[300]; /* Host: value, host[:port] with the port only when not the scheme's default, [v6] */
    char port[8];          /* decimal */
    char path[1024];       /* path and query, "/" when the URL has none */
    struct net_addr addr;  /* resolved once, at parse time (first address getaddrinfo returns) */
};

enum lg_protocol { LG_PROTO_WEBSOCKET = 0, LG_PROTO_SOCKETIO };

enum lg_th_metric { TH_LATENCY = 0, TH_CONNECT, TH_HANDSHAKE, TH_ERRORS, TH_DELIVERY, TH_ACK, TH_MISSED };
enum lg_th_stat { TH_STAT_MIN = 0, TH_STAT_MEAN, TH_STAT_MAX, TH_STAT_PCT, TH_STAT_RATIO };
enum lg_th_op { TH_LT = 0, TH_LE, TH_GT, TH_GE };

/* A threshold, as k6 writes them: "p99<50ms", "latency.p99.9<=200ms", "connect.p95<1s", "handshake.max<2s",
 * "ack.p99<50ms" (--ack), "mean<10ms", "errors<1%", "delivery>=99.9%". A latency metric without a prefix is the
 * delivery latency; the stats are min, mean, max and pN (0 < N < 100, e.g. p50, p99.99). errors is the share of clients
 * that failed (to connect, or later); delivery the share of expected messages received in time; missed the share of
 * messages due to a client that it missed while away (missed_while_away / (expected + missed_while_away)). */
struct lg_threshold {
    char text[64]; /* as given, for the report */
    enum lg_th_metric metric;
    enum lg_th_stat stat; /* TH_STAT_RATIO for errors and delivery */
    double pct;           /* TH_STAT_PCT: the percentile, e.g. 99.9 */
    enum lg_th_op op;
    double value; /* nanoseconds for latency metrics, a fraction (0..1) for ratios */
};

struct lg_opts {
    /* where */
    struct lg_target targets[LG_MAX_URLS];
    int ntargets;
    struct net_addr *sources; /* malloc'd, nsources entries (port 0); NULL when none */
    uint32_t nsources;
    bool sources_auto; /* --source auto (the default): the plan (plan.h) picks them; "none" and a LIST clear it */
    char headers[LG_MAX_HEADERS][256]; /* extra request header lines "Name: value", checked for CR/LF */
    int nheaders;
    bool insecure;      /* --insecure: do not verify the server's certificate */
    const char *cacert; /* --cacert FILE (NULL: the system store) */

    /* --protocol socketio (loadgen/sio.h): Socket.IO v4 over the websocket transport. The URLs' paths then carry
     * EIO=4&transport=websocket (a bare "/" becomes /socket.io/), set at parse time */
    enum lg_protocol protocol; /* --protocol, default websocket */
    const char *sio_nsp;       /* --namespace, default "/" */
    const char *sio_auth;      /* --auth: the CONNECT packet's JSON object (NULL: none) */
    const char *sio_event;     /* --event: what loadgen emits, default "chat" */
    const char *sio_expect;    /* --expect: the event carrying the messages it receives, default sio_event */
    const char *sio_only;      /* the first Socket.IO option given (an error without --protocol socketio) */
    bool sio_polling;    /* --transport polling: Engine.IO long-polling first (the paths carry transport=polling) */
    bool sio_upgrade;    /* with polling: upgrade to a websocket once connected (default; --no-upgrade clears) */
    bool sio_no_upgrade; /* --no-upgrade was given (an error without --transport polling) */
    bool sio_ack;        /* --ack: every emit asks for an ack (42ID[...]) and expects 43ID[...] exactly once */

    /* connect */
    uint32_t clients;           /* -c --clients, default 100 */
    double connect_rate;        /* --connect-rate per second, 0 = as fast as max_inflight allows (default 0) */
    uint32_t max_inflight;      /* --max-inflight handshakes at once, over all workers (default 256) */
    int64_t connect_timeout_ns; /* --connect-timeout: TCP + TLS + upgrade, per client (default 10s) */

    /* rounds */
    uint32_t rounds;     /* -r --rounds, default 10 */
    int64_t interval_ns; /* -i --interval between round starts, default 500ms */
    int64_t duration_ns; /* --duration: run rounds this long from the first (0: --rounds); rounds is then the most
                            that fit, ceil(duration / interval) */
    bool rounds_set;     /* -r given: --duration with it is a usage error */
    int64_t deadline_ns; /* --deadline per round, default 5s */
    uint32_t emitters;   /* -e --emitters per round, default 1, <= clients */
    uint32_t payload;    /* -s --payload message size in bytes, default 100, >= LG_PAYLOAD_MIN (payload.h) */
    bool binary;         /* --binary: binary frames instead of text (socketio: a BINARY_EVENT, the message its
                            attachment) */
    bool echo;           /* --echo: the server sends a message back to its sender too, so expect it there */

    /* rooms: with --rooms K > 1 client i joins ROOM-(i % K), else every client joins ROOM; without --room and
     * --rooms no room parameter is added and URLs are used as given. --spectators S adds a big room ROOM-0 (a
     * publisher and S-1 watchers) beside the K small rooms, numbered 1..K: see lg_room_index for who goes where */
    const char *room;       /* --room NAME (NULL: none, or "room" as the prefix when rooms > 1 or spectators) */
    uint32_t rooms;         /* --rooms K, default 1 */
    uint32_t spectators;    /* --spectators S: the big room's size, 0 = no big room (default), else >= 2 */
    const char *room_param; /* --room-param NAME, default "room" */

    /* churn (worker.c): during the rounds, receivers leave (a close handshake) and come back as new connections */
    uint32_t churn;       /* --churn RATE: leaves per second over all workers, never an emitter (0 = off, default) */
    int64_t churn_gap_ns; /* --churn-gap: from a leave to its return, default 100ms */

    /* --reconnect (worker.c): a client lost after connecting connects again, with socket.io-client's backoff */
    struct lg_reconnect {
        bool enabled;         /* --reconnect (off by default) */
        int64_t delay_ns;     /* --reconnect-delay: the first delay, default 1s */
        int64_t delay_max_ns; /* --reconnect-delay-max: the largest, default 5s */
        double jitter;        /* --reconnect-jitter: 0..1, default 0.5 (socket.io's randomizationFactor) */
        uint32_t attempts;    /* --reconnect-attempts: per loss, 0 = unlimited (the default) */
    } reconnect;
    const char *reconnect_only; /* the first --reconnect-* option given (an error without --reconnect) */

    /* an application's own message shape (template.h) */
    const char *send_text;               /* --send TEMPLATE (NULL: loadgen's message as it is) */
    struct lg_template send;             /* parsed send_text */
    const char *find_text;               /* --find PATH (NULL: the message as it comes) */
    struct lg_find find;                 /* parsed find_text */
    const char *on_open[LG_MAX_ON_OPEN]; /* --on-open MSG: sent in order after every connect (join, auth) */
    int non_open;

    /* where each client landed */
    const char *node_header; /* --node-header NAME, default "X-Node-Id" */
    const char *cookie;      /* --cookie NAME: the sticky cookie naming the node (used when the header is absent) */

    /* process and output */
    uint32_t workers;         /* -w --workers N; 0 = auto (the default) until the plan (plan.h) sets it */
    int64_t close_timeout_ns; /* --close-timeout: a --churn leave's close, and the close phase's when given
                                 (default 2s) */
    bool close_timeout_auto;  /* no --close-timeout (or "auto"): the close phase's limit grows with the clients */
    int64_t close_phase_ns;   /* the close phase's limit: close_timeout_ns until the plan sets it */
    int64_t hold_ns;          /* --hold: keep every client connected this long before the rounds (default 0) */
    const char *out_json;     /* -o --out FILE.json */
    const char *hlog;         /* --hlog FILE.hlog */
    const char *junit;        /* --junit FILE.xml: the verdict as JUnit XML, a testcase per check and threshold */
    bool quiet;               /* -q --quiet: no progress line and no summary, only errors */
    bool plan_only;           /* --plan: print the plan and exit, start nothing */
    int64_t progress_ns;      /* --progress: a progress line this often when stdout is not a terminal (5s; 0 none) */
    struct lg_threshold thresholds[LG_MAX_THRESHOLDS];
    int nthresholds;
    bool errors_threshold, delivery_threshold, missed_threshold; /* was an errors / delivery threshold given (they
                                                  replace the defaults: no failed client, every message delivered) */
};

enum lg_parse_result { LG_PARSE_OK = 0, LG_PARSE_HELP, LG_PARSE_VERSION, LG_PARSE_ERROR };

/* Parse argv (getopt_long; argv is permuted). On LG_PARSE_ERROR err holds one line without a trailing newline,
 * naming the option and what is wrong ("--clients: expected a whole number from 1 to 10000000, got 'x'"). URLs
 * are resolved here (blocking getaddrinfo: setup only). o is zeroed then filled; lg_opts_free releases it. */
enum lg_parse_result lg_opts_parse(struct lg_opts *o, int argc, char **argv, char *err, size_t errlen);
void lg_opts_free(struct lg_opts *o);
/* The delay before reconnect attempt `attempt` (0 = the first): min(delay_max, delay * 2^attempt), then moved by up
 * to +-jitter of itself as u (uniform in [0, 1)) says: u = 0.5 keeps it, 0 takes jitter off, 1 (excluded) adds it. */
int64_t lg_backoff_ns(const struct lg_reconnect *r, uint32_t attempt, double u);
/* The --help text. */
void lg_opts_usage(FILE *fp);

/* Building blocks, exposed for the tests. Each returns 0, or -1 with err. */
int lg_parse_ratio(const char *s, double *ratio, char *err, size_t errlen);
int lg_parse_threshold(const char *s, struct lg_threshold *t, char *err, size_t errlen);
/* Append the addresses of "A", "A-B" (IPv4, same /16 or smaller span is not required, at most LG_MAX_SOURCES
 * in all) or a single IPv6 address, comma-separated lists allowed, to *list (realloc'd). */
int lg_parse_sources(const char *s, struct net_addr **list, uint32_t *n, char *err, size_t errlen);
/* Split a URL into t (no resolution when resolve is false: t->addr stays zero). */
int lg_parse_url(const char *url, struct lg_target *t, bool resolve, char *err, size_t errlen);

/* --protocol socketio: add EIO=4&transport=websocket (or polling) to t->path's query, after making a bare "/"
 * /socket.io/. */
int lg_socketio_path(struct lg_target *t, bool polling, char *err, size_t errlen);

/* How many rooms the clients are spread over: K, or K + 1 with --spectators. */
uint32_t lg_room_count(const struct lg_opts *o);
/* The room index of a client, < lg_room_count(o): the one mapping that names the room in the URL and tells the
 * verification which emitters a client must hear. Without --spectators: client % K. With --spectators S (big room
 * 0, small rooms 1..K): client 0 (the publisher) -> 0; clients 1..K -> small rooms 1..K, one each (so --emitters K+1
 * gives every room one emitter); K+1..K+S-1 -> 0 (the watchers); from K+S on -> 1 + (client - K - S) % K. */
uint32_t lg_room_index(const struct lg_opts *o, uint32_t client);
/* The room client i joins ("" when none: no parameter is added), into out: ROOM-index when there are several. */
void lg_client_room(const struct lg_opts *o, uint32_t client, char *out, size_t outlen);
/* The source address client `client` binds to (NULL without --source: the kernel picks). Round robin over the
 * sources among the clients of its own URL (client / ntargets), so every destination sees every source address:
 * client % nsources would give each of 4 URLs only a quarter of 8 sources, and a quarter of the ports. */
const struct net_addr *lg_client_source(const struct lg_opts *o, uint32_t client);
/* The request target for a client of target t in room ("" = none): t->path with "&param=room" or "?param=room"
 * appended (room percent-encoded). -1 when it does not fit in outlen. */
int lg_request_target(const struct lg_target *t, const char *param, const char *room, char *out, size_t outlen);

#endif
