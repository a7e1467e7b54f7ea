/* The admin listener: GET /metrics (Prometheus text: per node up/down, admin state, sessions, requests,
 * responses by class, bytes, tunnels, checks, address changes, errors by kind), GET /health (200 while a node is up,
 * else 503), GET /nodes (a line per node: name, address as written, up/down, admin state, the address connected to
 * now), and POST /nodes/NAME/drain|maint|ready to take a node out of rotation at run time (drain: no new clients,
 * sticky ones stay; maint: nothing, sticky clients are re-balanced) and back.
 * One request per connection, answered and closed: it is for operators and scrapers, not for load. */
#ifndef LB_ADMIN_H
#define LB_ADMIN_H

#include <stddef.h>

struct ev_loop;
struct pool;
struct admin;

/* Serve on the bound, non-blocking listening socket lfd. NULL with err. */
struct admin *admin_start(struct ev_loop *loop, int lfd, struct pool *pool, char *err, size_t errlen);
void admin_stop(struct admin *a);

#endif
