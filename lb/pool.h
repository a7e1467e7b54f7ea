/* The balancer's nodes: their state (health, admin mode, counters) and the choice of a node for a request.
 *
 * State lives in one struct pool_shared that the master maps shared before forking workers, so every worker sees
 * the same up/down and drain flags and the counters add up across workers without any messaging: fields are
 * written with relaxed atomics (a counter read while another worker bumps it is merely a moment old). The
 * generation's health process runs the checks and serves the admin listener; the workers read and route.
 *
 * The choice follows HAProxy: a sticky client (cookie) goes back to its node while that node is usable, even when
 * it drains; everyone else is balanced over the nodes that are up and ready. A node in maintenance takes nothing,
 * so its sticky clients are re-balanced (and re-cookied by the proxy).
 *
 * Panic (Envoy's healthy_panic_threshold): when fewer than panic-threshold percent of the nodes in rotation (admin
 * state ready) are up, health is disregarded and new clients are balanced over every node in rotation, sticky ones
 * go back to their node up or down. A mass of failed checks is then more likely the checks' fault (a wrong path, a
 * shared dependency) than every node's, and piling all clients on the last few up nodes would take those down too.
 * Draining and maintenance nodes are out of the share, as Envoy leaves excluded hosts out of the denominator: taking
 * nodes out for a deploy never tips the lb into panic. Unlike Envoy's excluded hosts they take no new client in
 * panic either: drain and maint are an operator's instruction, a health verdict is only a guess. */
#ifndef LB_POOL_H
#define LB_POOL_H

#include "lb/balance.h"
#include "lb/conf.h"
#include "lb/ring.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pool_admin { POOL_READY = 0, POOL_DRAIN, POOL_MAINT };

/* Errors by kind, as the proxy counts them (and /metrics names them). */
enum pool_error {
    POOL_ERR_BAD_REQUEST = 0, /* 400, 501, 505: malformed or unsupported request */
    POOL_ERR_HEAD_TIMEOUT,    /* 408 */
    POOL_ERR_HEAD_TOO_LARGE,  /* 431 */
    POOL_ERR_NO_NODE,         /* 503 */
    POOL_ERR_CONNECT,         /* a connect to a node failed (each try) */
    POOL_ERR_BAD_RESPONSE,    /* 502: malformed response, or the node closed before answering */
    POOL_ERR_SERVER_TIMEOUT,  /* 504, or a node that stalled mid-response */
    POOL_ERR_CLIENT_ABORT,    /* the client closed or stalled mid-request */
    POOL_ERR_LOCAL_RESOURCE,  /* 503: the lb itself ran out of descriptors, ports or memory (never the node's fault) */
    POOL_ERR_COUNT
};

/* What a local resource failure (an errno that names the lb's own limit, never the node) hit. */
enum pool_op { POOL_OP_ACCEPT = 0, POOL_OP_CONNECT, POOL_OP_CHECK, POOL_OP_COUNT };

/* The local resources that can run out, by the errno that says so. */
enum pool_local {
    POOL_LOCAL_EMFILE = 0,    /* this process's open-files limit */
    POOL_LOCAL_ENFILE,        /* the system's file table */
    POOL_LOCAL_EADDRNOTAVAIL, /* no free local port (or address) to connect from */
    POOL_LOCAL_ENOBUFS,       /* socket buffers */
    POOL_LOCAL_ENOMEM,        /* kernel memory */
    POOL_LOCAL_COUNT
};

struct pool_node_state {
    uint8_t up;            /* health verdict; nodes start up, as in HAProxy */
    uint8_t admin;         /* enum pool_admin */
    uint32_t fails, oks;   /* consecutive failed / good observations, against fall / rise */
    uint64_t active;       /* client sessions bound to the node now, all workers */
    uint64_t connections;  /* connections opened to the node */
    uint64_t requests;     /* requests forwarded */
    uint64_t responses[6]; /* by class: [1] 1xx .. [5] 5xx, [0] other */
    uint64_t bytes_to, bytes_from;
    uint64_t tunnels, tunnels_active;
    uint64_t connect_errors;
    uint64_t checks_ok, checks_failed;
    uint64_t transitions;     /* up <-> down changes */
    uint64_t address_changes; /* times the master found the node's host name resolving to a new address */
    uint64_t lookup_failures; /* lookups of the node's host name that failed (the last good address was kept) */
};

/* A node's address as the master last resolved it, guarded by a seqlock: the master (the only writer) makes seq odd,
 * writes, then makes it even again; a reader copies the words and retries while seq is odd or has moved. seq 0:
 * never rewritten, the generation's config address holds. The words are accessed as relaxed atomics so a torn
 * copy is merely retried, never undefined. */
struct pool_node_addr {
    uint32_t seq;
    uint64_t words[(sizeof(struct net_addr) + sizeof(uint64_t) - 1) / sizeof(uint64_t)];
};

/* How a SIGHUP ended (lb_reloads_total{result}). */
enum pool_reload { POOL_RELOAD_OK = 0, POOL_RELOAD_INVALID, POOL_RELOAD_FAILED, POOL_RELOAD_COUNT };

/* The master's reload record, copied into the current generation's block whenever it changes (the health process
 * serves it; counts span generations, unlike the traffic counters). */
struct pool_reloads {
    uint64_t total[POOL_RELOAD_COUNT];
    uint32_t last;            /* enum pool_reload of the latest SIGHUP; meaningful once a total is non-zero */
    uint32_t old_generations; /* generations still finishing their tunnels */
    uint64_t forced;          /* old generations told to finish at once to make room for a reload */
};

struct pool_shared {
    uint64_t conns_active, conns_total, requests, rebalanced;
    struct pool_reloads reloads;
    uint64_t errors[POOL_ERR_COUNT];
    uint64_t local_errors[POOL_OP_COUNT][POOL_LOCAL_COUNT]; /* each failure, whether or not a client saw it */
    uint32_t panic;                                         /* 1 while in panic (the lb_panic gauge) */
    uint64_t panic_episodes;                                /* times panic began */
    uint64_t panic_routed;                                  /* picks made while in panic (each try) */
    struct pool_node_state nodes[LB_MAX_BACKENDS];
    /* apart from nodes[], whose counters every request bumps: a connect's read of its node's address should not
     * share a cache line with them */
    struct pool_node_addr addrs[LB_MAX_BACKENDS];
};

struct pool {
    const struct lb_conf *conf;
    struct pool_shared *sh;
    struct ring ring;
    struct bal_node bal[LB_MAX_BACKENDS]; /* this worker's round robin state */
    uint32_t rotor;
    int n;
};

/* What a request offers for keyed balancing. */
struct pool_key {
    const struct net_addr *client; /* for source */
    bool has_param;                /* the balance parameter was in the request (else: round robin) */
    uint64_t param_hash;           /* ring_hash of its value */
};

/* Counter helpers: relaxed atomics on the shared block. */
#define POOL_ADD(field, n) __atomic_fetch_add(&(field), (n), __ATOMIC_RELAXED)
#define POOL_SUB(field, n) __atomic_fetch_sub(&(field), (n), __ATOMIC_RELAXED)
#define POOL_GET(field)    __atomic_load_n(&(field), __ATOMIC_RELAXED)
#define POOL_SET(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)

/* A zeroed shared block mapped MAP_SHARED (so forked workers share it). NULL with err. */
struct pool_shared *pool_shared_new(char *err, size_t errlen);
void pool_shared_free(struct pool_shared *sh);

/* Bind p to c and sh (the ring is built from the backends' names and weights). 0, or -1 with err. */
int pool_init(struct pool *p, const struct lb_conf *c, struct pool_shared *sh, char *err, size_t errlen);
void pool_free(struct pool *p);

/* Up and ready: takes new clients (outside panic). */
bool pool_usable(const struct pool *p, int node);

/* The panic rule alone: whether up of the in_rotation nodes is under threshold percent. Never with no node in
 * rotation (nothing to spread over) or a threshold of 0 (panic off). */
bool pool_panic_rule(int in_rotation, int up, uint32_t threshold);

/* Whether the nodes' shared state puts the pool in panic now; the lb_panic gauge follows, and the change is logged
 * (once, by whichever process sees it first) and counted. */
bool pool_panic_update(struct pool *p);

/* The node a sticky cookie names, if it may still take its client (up or in panic, and ready or draining); else
 * -1. */
int pool_by_cookie(struct pool *p, const char *id, size_t len);

/* The node for a new (non-sticky) request, avoiding the nodes in tried (bit i: node i failed this request): among
 * the usable nodes, or in panic among every node in rotation. -1 when there is none. */
int pool_pick(struct pool *p, const struct pool_key *key, uint64_t tried);

/* The address to connect to node now (a seqlock read, no lock, no syscall): its host name's latest resolution by
 * the master, else the config's. */
void pool_node_addr(const struct pool *p, int node, struct net_addr *out);

/* The master's side: publish addr as node's address in sh. Single writer. */
void pool_set_node_addr(struct pool_shared *sh, int node, const struct net_addr *addr);

/* The node named name, or -1. */
int pool_by_name(const struct pool *p, const char *name);

/* Health observations: a check or a connect attempt succeeded or failed. fall failures in a row mark a node
 * down, rise successes in a row mark it up again; logs each transition with why. */
void pool_observe(struct pool *p, int node, bool ok, const char *why);

/* A connect to node by client traffic: a failure counts as pool_observe's; a success ends a failure streak but
 * brings a down node up only when checks are off (else only passed checks do, as in HAProxy: in panic a node that
 * accepts connections yet fails its checks stays down). Local resource failures must never come here. */
void pool_observe_connect(struct pool *p, int node, bool ok, const char *why);

#endif
