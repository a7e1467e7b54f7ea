/* The balancer's nodes: their state (health, admin mode, counters) and the choice of a node for a request.
 *
 * State lives in one struct pool_shared that the master maps shared before forking workers, so every worker sees
 * the same up/down and drain flags and the counters add up across workers without any messaging: fields are
 * written with relaxed atomics (a counter read while another worker bumps it is merely a moment old). One
 * worker runs the health checks and serves the admin listener; all of them read and route.
 *
 * The choice follows HAProxy: a sticky client (cookie) goes back to its node while that node is usable, even when
 * it drains; everyone else is balanced over the nodes that are up and ready. A node in maintenance takes nothing,
 * so its sticky clients are re-balanced (and re-cookied by the proxy). */
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
    POOL_ERR_COUNT
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

struct pool_shared {
    uint64_t conns_active, conns_total, requests, rebalanced;
    uint64_t errors[POOL_ERR_COUNT];
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

/* Up and ready: takes new clients. */
bool pool_usable(const struct pool *p, int node);

/* The node a sticky cookie names, if it may still take its client (up, and ready or draining); else -1. */
int pool_by_cookie(const struct pool *p, const char *id, size_t len);

/* The node for a new (non-sticky) request, avoiding the nodes in tried (bit i: node i failed this request).
 * -1 when no node is usable. */
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

#endif
