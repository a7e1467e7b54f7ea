/* Backend host names looked up again while running; see resolve.h. */
#include "lb/resolve.h"

#include "common/log.h"
#include "lb/pool.h"

#include <netdb.h>
#include <stdio.h>
#include <string.h>

#define MAX_CANDIDATES 16

static bool same_addr(const struct net_addr *a, const struct net_addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* The IP alone (the port never changes), for the log. */
static void ip_str(const struct net_addr *a, char *out, size_t outlen)
{
    if (getnameinfo((const struct sockaddr *)&a->ss, a->len, out, (socklen_t)outlen, NULL, 0, NI_NUMERICHOST) != 0)
        snprintf(out, outlen, "?");
}

void resolve_init(struct resolver *r, const struct lb_conf *c, struct pool_shared *sh)
{
    memset(r, 0, sizeof *r);
    r->conf = c;
    r->sh = sh;
    for (int i = 0; i < c->nbackends; i++)
        r->cur[i] = c->backends[i].addr;
}

bool resolve_wanted(const struct lb_conf *c)
{
    for (int i = 0; c->resolve_interval_ns > 0 && i < c->nbackends; i++)
        if (c->backends[i].by_name)
            return true;
    return false;
}

int resolve_choose(const struct net_addr *cur, const struct net_addr *cands, int n)
{
    for (int i = 0; i < n; i++)
        if (same_addr(cur, &cands[i]))
            return i;
    return 0;
}

/* Every address host:port resolves to, in getaddrinfo's order (at most max). The count, or -1 with getaddrinfo's
 * error code in *gai. */
static int lookup_all(const char *host, const char *port, struct net_addr *out, int max, int *gai)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
    if ((*gai = getaddrinfo(host, port, &hints, &res)) != 0)
        return -1;
    int n = 0;
    for (const struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof out[n].ss)
            continue;
        memset(&out[n], 0, sizeof out[n]);
        memcpy(&out[n].ss, ai->ai_addr, ai->ai_addrlen);
        out[n].len = ai->ai_addrlen;
        n++;
    }
    freeaddrinfo(res);
    return n;
}

static void resolve_node(struct resolver *r, int node)
{
    const struct lb_backend *b = &r->conf->backends[node];
    struct net_addr cands[MAX_CANDIDATES];
    char now[64], was[64];
    int gai = EAI_NONAME;
    int n = lookup_all(b->host, b->port, cands, MAX_CANDIDATES, &gai);
    ip_str(&r->cur[node], was, sizeof was);
    if (n <= 0) {
        POOL_ADD(r->sh->nodes[node].lookup_failures, 1); /* every one: the log says only when a streak starts */
        if (!r->failing[node]) /* once per streak: a name gone for an hour is one line, not one per interval */
            LOG_WARN("node %s: cannot resolve %s (%s); keeping %s", b->name, b->host,
                     n < 0 ? gai_strerror(gai) : "no address", was);
        r->failing[node] = true;
        return;
    }
    if (r->failing[node])
        LOG_INFO("node %s: %s resolves again", b->name, b->host);
    r->failing[node] = false;
    const struct net_addr *pick = &cands[resolve_choose(&r->cur[node], cands, n)];
    if (same_addr(pick, &r->cur[node]))
        return;
    r->cur[node] = *pick;
    pool_set_node_addr(r->sh, node, pick);
    POOL_ADD(r->sh->nodes[node].address_changes, 1);
    ip_str(pick, now, sizeof now);
    LOG_INFO("node %s: %s now resolves to %s (was %s)", b->name, b->host, now, was);
}

void resolve_all(struct resolver *r)
{
    for (int i = 0; i < r->conf->nbackends; i++)
        if (r->conf->backends[i].by_name)
            resolve_node(r, i);
}
