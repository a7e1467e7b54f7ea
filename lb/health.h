/* Active health checks: every interval, each node gets an HTTP GET of the configured path on a new connection;
 * a 2xx or 3xx status within the timeout is a success, anything else (refused, reset, timeout, another status)
 * a failure, with fall failures in a row marking the node down and rise successes bringing it back (pool.h).
 *
 * A node must be judged by what it does, never by the lb's own state, so:
 * - The checks run in a process of their own, one per generation, forked by the master beside the workers
 *   (main.c: supervised and restarted like a worker, stopped with its generation), writing their verdicts into the
 *   shared block every worker routes by. A worker's loop busy proxying tens of thousands of clients can no longer
 *   eat a check's timeout and blame the nodes for its own lag (all four nodes "timed out" in the same millisecond),
 *   and checks no longer draw on a worker's descriptors. The admin listener lives there too, so /metrics and
 *   /health answer while the workers are saturated. A process rather than a thread: the lb has none, and the
 *   shared block is already how workers see each other.
 * - The check's own loop may still lag (a starved CPU, a stopped process), and libev runs the pending watchers
 *   last-in first-out, so an expired timer runs before the read that would have found the answer. On expiry a
 *   check therefore first looks at its socket without blocking and takes whatever answer is there; only a check
 *   with no answer yet times out, and not when the timer itself fired late by more than half the timeout: the lag
 *   was ours, so the check gets one more full timeout from now (a silent node is still judged, one timeout later).
 * - Running out of descriptors, ports or memory (shortage.h) is not the node's failure: the check is skipped,
 *   counted, and retried at the next interval. */
#ifndef LB_HEALTH_H
#define LB_HEALTH_H

#include <stddef.h>

struct ev_loop;
struct pool;
struct health;

/* Start checking every node of pool (nothing when checks are off). NULL with err on out of memory. */
struct health *health_start(struct ev_loop *loop, struct pool *pool, char *err, size_t errlen);
void health_stop(struct health *h);

#endif
