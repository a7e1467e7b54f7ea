/* Local resource shortages: an accept, a connect to a node or a health check that fails with an errno naming the
 * lb's own limit (EMFILE, ENFILE, EADDRNOTAVAIL, ENOBUFS, ENOMEM) says nothing about any node, so it must never
 * count against one. The caller pauses accepts or answers 503 naming the limit; this module counts each failure
 * (lb_local_resource_errors_total) and logs once per episode: the first failure, then silence until a success comes
 * at least SHORTAGE_QUIET_S after the last failure, then one line with how many were refused meanwhile. One per
 * process: each has its own descriptor table and limit. */
#ifndef LB_SHORTAGE_H
#define LB_SHORTAGE_H

#include "lb/pool.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHORTAGE_QUIET_S 1.0

struct shortage {
    const char *who;        /* the log lines' subject, e.g. "worker 0" */
    const char *cost;       /* what failures cost meanwhile, e.g. "requests get 503" */
    struct pool_shared *sh; /* where failures are counted */
    uint64_t nofile;        /* this process's open-files limit, for messages */
    bool on;                /* in an episode */
    int err;                /* the errno that began it */
    uint64_t refused[POOL_OP_COUNT];
    double began, last; /* seconds (any monotonic clock): the episode's first and latest failure */
};

/* Ready to count into sh (NULL: count nothing), reading this process's open-files limit now. */
void shortage_init(struct shortage *s, const char *who, const char *cost, struct pool_shared *sh);

/* enum pool_local for an errno that names a local resource, or -1 when err may well be the node's doing. */
int shortage_kind(int err);

/* Metric label values: "emfile"... and "accept", "connect", "check". */
const char *shortage_kind_name(enum pool_local kind);
const char *shortage_op_name(enum pool_op op);

/* The limit err (a shortage_kind) ran into, for logs and 503 bodies: "out of file descriptors (limit 256)". */
void shortage_describe(const struct shortage *s, int err, char *out, size_t outlen);

/* A failure of op with err (a shortage_kind) at now: counted; the first of an episode is logged. */
void shortage_hit(struct shortage *s, enum pool_op op, int err, double now);

/* A success at now: ends the episode, with one line, once SHORTAGE_QUIET_S passed since its last failure. */
void shortage_ok(struct shortage *s, double now);

#endif
