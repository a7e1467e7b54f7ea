/* Active health checks: every interval, each node gets an HTTP GET of the configured path on a new connection;
 * a 2xx or 3xx status within the timeout is a success, anything else (refused, reset, timeout, another status)
 * a failure, with fall failures in a row marking the node down and rise successes bringing it back (pool.h).
 * Runs in one worker only: the verdict is shared. */
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
