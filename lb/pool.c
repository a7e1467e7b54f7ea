/* Nodes, their shared state and the choice of a node; see pool.h. */
#include "lb/pool.h"

#include "common/log.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

struct pool_shared *pool_shared_new(char *err, size_t errlen)
{
    void *m = mmap(NULL, sizeof(struct pool_shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        snprintf(err, errlen, "mmap of the shared state failed");
        return NULL;
    }
    for (int i = 0; i < LB_MAX_BACKENDS; i++)
        ((struct pool_shared *)m)->nodes[i].up = 1;
    return m;
}

void pool_shared_free(struct pool_shared *sh)
{
    if (sh)
        munmap(sh, sizeof *sh);
}

int pool_init(struct pool *p, const struct lb_conf *c, struct pool_shared *sh, char *err, size_t errlen)
{
    struct ring_member members[LB_MAX_BACKENDS];
    memset(p, 0, sizeof *p);
    p->conf = c;
    p->sh = sh;
    p->n = c->nbackends;
    for (int i = 0; i < p->n; i++) {
        members[i] = (struct ring_member){.name = c->backends[i].name, .weight = c->backends[i].weight};
        p->bal[i].weight = c->backends[i].weight;
    }
    if (ring_build(&p->ring, members, (size_t)p->n) < 0) {
        snprintf(err, errlen, "out of memory building the hash ring");
        return -1;
    }
    return 0;
}

void pool_free(struct pool *p)
{
    ring_free(&p->ring);
}

bool pool_usable(const struct pool *p, int node)
{
    const struct pool_node_state *s = &p->sh->nodes[node];
    return POOL_GET(s->up) && POOL_GET(s->admin) == POOL_READY;
}

/* Takes new clients: ready, and up unless in panic. */
static bool takes_new(const struct pool *p, int node, bool panic)
{
    const struct pool_node_state *s = &p->sh->nodes[node];
    return (panic || POOL_GET(s->up)) && POOL_GET(s->admin) == POOL_READY;
}

bool pool_panic_rule(int in_rotation, int up, uint32_t threshold)
{
    return in_rotation > 0 && (uint64_t)up * 100 < (uint64_t)threshold * (uint64_t)in_rotation;
}

bool pool_panic_update(struct pool *p)
{
    int ready = 0, up = 0;
    for (int i = 0; i < p->n; i++) {
        const struct pool_node_state *s = &p->sh->nodes[i];
        if (POOL_GET(s->admin) == POOL_READY) {
            ready++;
            up += POOL_GET(s->up);
        }
    }
    uint32_t panic = pool_panic_rule(ready, up, p->conf->panic_threshold);
    uint32_t was = POOL_GET(p->sh->panic);
    /* every process may see the change: the one whose exchange lands logs it, the others find it done */
    if (was == panic ||
        !__atomic_compare_exchange_n(&p->sh->panic, &was, panic, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        return panic;
    if (panic) {
        POOL_ADD(p->sh->panic_episodes, 1);
        LOG_WARN("panic: %d of %d nodes in rotation up, under panic-threshold %u%%: balancing over all %d regardless "
                 "of health",
                 up, ready, p->conf->panic_threshold, ready);
    } else {
        LOG_WARN("panic over: %d of %d nodes in rotation up: balancing over the nodes that are up", up, ready);
    }
    return panic;
}

int pool_by_cookie(struct pool *p, const char *id, size_t len)
{
    for (int i = 0; i < p->n; i++) {
        const char *cookie = p->conf->backends[i].cookie;
        if (strlen(cookie) != len || memcmp(cookie, id, len) != 0)
            continue;
        const struct pool_node_state *s = &p->sh->nodes[i];
        if (POOL_GET(s->admin) == POOL_MAINT)
            return -1;
        return POOL_GET(s->up) || pool_panic_update(p) ? i : -1;
    }
    return -1;
}

int pool_by_name(const struct pool *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->conf->backends[i].name, name) == 0)
            return i;
    return -1;
}

/* A reader gives up after this many tries and uses the config's address: a master killed (or stopped) between its
 * two seq bumps must not hang every worker; a write itself takes nanoseconds. */
#define ADDR_READ_TRIES 10000

void pool_node_addr(const struct pool *p, int node, struct net_addr *out)
{
    const struct pool_node_addr *slot = &p->sh->addrs[node];
    uint64_t words[sizeof slot->words / sizeof slot->words[0]];
    for (int tries = 0; tries < ADDR_READ_TRIES; tries++) {
        uint32_t seq = __atomic_load_n(&slot->seq, __ATOMIC_ACQUIRE); /* the words read below are at least this new */
        if (seq == 0)
            break;
        if (seq & 1)
            continue;
        for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
            words[i] = __atomic_load_n(&slot->words[i], __ATOMIC_RELAXED);
        /* the words' loads before the second seq load: if any came from a newer write, seq has moved */
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&slot->seq, __ATOMIC_RELAXED) == seq) {
            memcpy(out, words, sizeof *out);
            return;
        }
    }
    *out = p->conf->backends[node].addr;
}

void pool_set_node_addr(struct pool_shared *sh, int node, const struct net_addr *addr)
{
    struct pool_node_addr *slot = &sh->addrs[node];
    uint64_t words[sizeof slot->words / sizeof slot->words[0]] = {0};
    memcpy(words, addr, sizeof *addr);
    uint32_t seq = __atomic_load_n(&slot->seq, __ATOMIC_RELAXED);
    __atomic_store_n(&slot->seq, seq + 1, __ATOMIC_RELAXED);
    /* the odd seq before any word: a reader that sees a new word also sees seq moved */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        __atomic_store_n(&slot->words[i], words[i], __ATOMIC_RELAXED);
    __atomic_store_n(&slot->seq, seq + 2, __ATOMIC_RELEASE); /* the words before the even seq */
}

struct ring_filter {
    const struct pool *p;
    uint64_t tried;
    bool panic;
};

static bool ring_usable(uint32_t node, void *arg)
{
    const struct ring_filter *f = arg;
    return !(f->tried >> node & 1) && takes_new(f->p, (int)node, f->panic);
}

static int pick_keyed(struct pool *p, uint64_t hash, uint64_t tried, bool panic)
{
    struct ring_filter f = {p, tried, panic};
    return ring_lookup(&p->ring, hash, ring_usable, &f);
}

/* The bytes of the client's address (not the port: every connection of one client must hash alike). */
static const void *addr_key(const struct net_addr *a, size_t *len)
{
    if (a->ss.ss_family == AF_INET6) {
        *len = 16;
        return &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    }
    *len = 4;
    return &((const struct sockaddr_in *)&a->ss)->sin_addr;
}

static int pick(struct pool *p, const struct pool_key *key, uint64_t tried, bool panic)
{
    enum lb_balance how = p->conf->balance;
    size_t len;
    if (how == LB_BAL_SOURCE || (p->conf->sticky == LB_STICKY_SOURCE && how != LB_BAL_PARAM)) {
        const void *k = addr_key(key->client, &len);
        return pick_keyed(p, ring_hash(k, len), tried, panic);
    }
    if (how == LB_BAL_PARAM && key->has_param)
        return pick_keyed(p, key->param_hash, tried, panic);
    for (int i = 0; i < p->n; i++) {
        p->bal[i].usable = !(tried >> i & 1) && takes_new(p, i, panic);
        p->bal[i].active = (uint32_t)POOL_GET(p->sh->nodes[i].active);
    }
    if (how == LB_BAL_LEASTCONN)
        return bal_leastconn(p->bal, (size_t)p->n, &p->rotor);
    return bal_roundrobin(p->bal, (size_t)p->n);
}

int pool_pick(struct pool *p, const struct pool_key *key, uint64_t tried)
{
    bool panic = pool_panic_update(p);
    int node = pick(p, key, tried, panic);
    if (panic && node >= 0)
        POOL_ADD(p->sh->panic_routed, 1);
    return node;
}

void pool_observe(struct pool *p, int node, bool ok, const char *why)
{
    struct pool_node_state *s = &p->sh->nodes[node];
    const struct lb_backend *b = &p->conf->backends[node];
    bool up = POOL_GET(s->up);
    if (ok) {
        POOL_SET(s->fails, 0);
        if (up || POOL_ADD(s->oks, 1) + 1 < p->conf->health.rise)
            return;
        POOL_SET(s->up, 1);
        POOL_ADD(s->transitions, 1);
        LOG_WARN("node %s (%s) is up: %s", b->name, b->text, why);
        pool_panic_update(p);
        return;
    }
    POOL_SET(s->oks, 0);
    if (!up || POOL_ADD(s->fails, 1) + 1 < p->conf->health.fall)
        return;
    POOL_SET(s->up, 0);
    POOL_ADD(s->transitions, 1);
    LOG_WARN("node %s (%s) is down: %s", b->name, b->text, why);
    pool_panic_update(p);
}

void pool_observe_connect(struct pool *p, int node, bool ok, const char *why)
{
    if (ok && p->conf->health.enabled)
        POOL_SET(p->sh->nodes[node].fails, 0);
    else
        pool_observe(p, node, ok, why);
}
