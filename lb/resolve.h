/* Re-resolution of backend host names while running (HAProxy's `resolvers`, nginx's `resolve`): a container that
 * restarts with a new IP keeps its name, so the master looks every name up again each resolve-interval and
 * publishes a changed address in the shared block (pool_set_node_addr), where the workers read it at each connect.
 * IP literals are never looked up. The lookups block (getaddrinfo): only the master runs them, and it serves no
 * traffic. One resolver per generation, bound to that generation's config and shared block. */
#ifndef LB_RESOLVE_H
#define LB_RESOLVE_H

#include "common/net.h"
#include "lb/conf.h"

#include <stdbool.h>

struct pool_shared;

struct resolver {
    const struct lb_conf *conf;
    struct pool_shared *sh;
    struct net_addr cur[LB_MAX_BACKENDS]; /* each node's last good address, as published */
    bool failing[LB_MAX_BACKENDS];        /* in a streak of failed lookups, already logged */
};

/* Start from the addresses c was loaded with (what sh's readers fall back to). */
void resolve_init(struct resolver *r, const struct lb_conf *c, struct pool_shared *sh);

/* Whether c asks for any lookups at all: an interval, and a backend given by name. */
bool resolve_wanted(const struct lb_conf *c);

/* Look every named backend up once, now (blocking); publish and log each change, log the first failure of a
 * streak and keep the last good address. */
void resolve_all(struct resolver *r);

/* Which of the n (> 0) addresses a name now resolves to a node should use: cur when it is still among them, so
 * a name with several addresses does not flap between them; else the first. */
int resolve_choose(const struct net_addr *cur, const struct net_addr *cands, int n);

#endif
