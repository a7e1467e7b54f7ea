/* loadgen's plan: workers, source addresses, the close phase's limit; see plan.h. */
#define _GNU_SOURCE
#include "loadgen/plan.h"

#include "common/conf.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define NS_PER_S INT64_C(1000000000)

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return (a + b - 1) / b;
}

static void warn(struct lg_plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Formatted apart first: the arguments may point into p. */
static void warn(struct lg_plan *p, const char *fmt, ...)
{
    char text[sizeof p->warnings[0]];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (p->nwarnings < (int)(sizeof p->warnings / sizeof p->warnings[0]))
        memcpy(p->warnings[p->nwarnings++], text, sizeof text);
}

/* ---- workers ---- */

static int plan_workers(const struct lg_opts *o, struct lg_plan *p, char *err, size_t errlen)
{
    uint64_t limit = p->env.fd_limit;
    uint64_t reserve =
        limit >= (uint64_t)LG_PLAN_FD_RESERVE * 2 ? LG_PLAN_FD_RESERVE : limit / 2; /* a tiny limit: half */
    uint64_t upgrading = o->protocol == LG_PROTO_SOCKETIO && o->sio_polling && o->sio_upgrade ? o->max_inflight : 0;
    if (upgrading > (limit - reserve) / 4)
        upgrading = (limit - reserve) / 4;
    p->fd_reserve = reserve + upgrading;
    p->fd_budget = limit - p->fd_reserve;
    uint64_t fit = p->fd_budget / p->per_client; /* clients one worker holds */
    if (fit == 0)
        return conf_fail(err, errlen,
                         "the open-files limit (%" PRIu64 ") leaves no descriptor for a client: raise it "
                         "(ulimit -n)",
                         limit);
    uint64_t needed = ceil_div(o->clients, fit);
    p->workers_needed = needed > UINT32_MAX ? UINT32_MAX : (uint32_t)needed;
    p->workers_auto = o->workers == 0;
    if (p->workers_auto && needed > LG_MAX_WORKERS)
        return conf_fail(err, errlen,
                         "--workers auto: %u clients of %u descriptor(s) need %" PRIu64 " workers of %" PRIu64
                         " (open-files limit %" PRIu64 " less %" PRIu64 " reserved), at most %d: raise the limit "
                         "(ulimit -n) or run several loadgens",
                         o->clients, p->per_client, needed, fit, limit, p->fd_reserve, LG_MAX_WORKERS);
    p->workers = p->workers_auto ? (uint32_t)needed : o->workers;
    p->clients_per_worker = (uint32_t)ceil_div(o->clients, p->workers);
    p->fds_per_worker = (uint64_t)p->clients_per_worker * p->per_client + p->fd_reserve;
    if (!p->workers_auto && p->workers < needed)
        warn(p,
             "%u clients over %u worker(s) need %" PRIu64 " descriptors each, the limit is %" PRIu64
             ": use --workers %" PRIu64 " or more (or --workers auto), or raise the limit (ulimit -n)",
             o->clients, p->workers, p->fds_per_worker, limit, needed);
    return 0;
}

/* ---- sources ---- */

static bool is_loopback4(const struct net_addr *a)
{
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)&a->ss;
    return a->ss.ss_family == AF_INET && (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
}

/* Group the URLs by destination: tdest[t] is URL t's, tclients[t] its clients (client i goes to URL i % T). */
static void find_dests(const struct lg_opts *o, struct lg_plan *p, uint32_t *tdest, uint64_t *tclients)
{
    uint32_t nt = (uint32_t)o->ntargets;
    p->loopback = true;
    for (uint32_t t = 0; t < nt; t++) {
        char name[sizeof p->dests[0].name];
        net_addr_str(&o->targets[t].addr, name, sizeof name);
        uint32_t d = 0;
        while (d < p->ndests && strcmp(p->dests[d].name, name) != 0)
            d++;
        if (d == p->ndests)
            memcpy(p->dests[p->ndests++].name, name, sizeof name);
        tdest[t] = d;
        tclients[t] = o->clients / nt + (t < o->clients % nt);
        p->dests[d].conns += tclients[t] * p->per_client;
        p->loopback &= is_loopback4(&o->targets[t].addr);
        if (p->dests[d].conns > p->dests[p->busiest].conns)
            p->busiest = d;
    }
}

/* Fill each destination's per_source for n source addresses (each URL's clients go round robin over them, see
 * lg_client_source); the most of them. */
static uint64_t per_source(const struct lg_opts *o, struct lg_plan *p, const uint32_t *tdest, const uint64_t *tclients,
                           uint32_t n)
{
    uint64_t most = 0;
    for (uint32_t d = 0; d < p->ndests; d++)
        p->dests[d].per_source = 0;
    for (int t = 0; t < o->ntargets; t++)
        p->dests[tdest[t]].per_source += ceil_div(tclients[t], n) * p->per_client;
    for (uint32_t d = 0; d < p->ndests; d++)
        most = p->dests[d].per_source > most ? p->dests[d].per_source : most;
    return most;
}

/* The fewest source addresses that keep every (source, destination) pair within p->ports. */
static uint32_t sources_needed(const struct lg_opts *o, struct lg_plan *p, const uint32_t *tdest,
                               const uint64_t *tclients)
{
    uint64_t n = ceil_div(p->dests[p->busiest].conns, p->ports);
    while (n < LG_MAX_SOURCES && per_source(o, p, tdest, tclients, (uint32_t)n) > p->ports)
        n++; /* rounding up per URL can need one more; a few steps at most */
    return n > LG_MAX_SOURCES ? LG_MAX_SOURCES + 1 : (uint32_t)n;
}

static void source_warning(const struct lg_opts *o, struct lg_plan *p)
{
    const struct lg_plan_dest *d = &p->dests[p->busiest];
    warn(p,
         "%" PRIu64 " connections to %s need %u source addresses of %u ports each, %s %u: expect eaddrnotavail "
         "(--source auto, a longer --source list, or widen net.ipv4.ip_local_port_range)",
         d->conns, d->name, p->sources_needed, p->ports, o->nsources ? "--source gives" : "--source none gives",
         o->nsources ? o->nsources : 1);
}

static int plan_sources(const struct lg_opts *o, struct lg_plan *p, char *err, size_t errlen)
{
    uint32_t tdest[LG_MAX_URLS];
    uint64_t tclients[LG_MAX_URLS];
    uint32_t range = p->env.port_hi >= p->env.port_lo ? p->env.port_hi - p->env.port_lo + 1 : 0;
    uint32_t fast = range / 2; /* connect()'s half of the range: see LG_PLAN_PORT_MARGIN_PCT */
    p->ports = fast - (uint32_t)((uint64_t)fast * LG_PLAN_PORT_MARGIN_PCT / 100);
    if (p->ports == 0)
        return conf_fail(err, errlen, "net.ipv4.ip_local_port_range %u-%u leaves no port to connect from",
                         p->env.port_lo, p->env.port_hi);
    find_dests(o, p, tdest, tclients);
    p->sources_needed = sources_needed(o, p, tdest, tclients);
    p->sources_auto = o->sources_auto;
    const struct lg_plan_dest *d = &p->dests[p->busiest];
    if (p->sources_auto && p->sources_needed > 1 && !p->loopback)
        return conf_fail(err, errlen,
                         "--source auto: %" PRIu64 " connections to %s need %u source addresses of %u ports each, "
                         "and loadgen picks them itself only when every URL is IPv4 loopback: give --source LIST "
                         "(addresses of this host that reach it), or widen net.ipv4.ip_local_port_range (now %u-%u)",
                         d->conns, d->name, p->sources_needed, p->ports, p->env.port_lo, p->env.port_hi);
    if (p->sources_auto && p->sources_needed > LG_MAX_SOURCES)
        return conf_fail(err, errlen, "--source auto: %" PRIu64 " connections to %s need more than %d source addresses",
                         d->conns, d->name, LG_MAX_SOURCES);
    if (p->sources_auto)
        p->sources = p->sources_needed > 1 ? p->sources_needed : 0;
    else
        p->sources = o->nsources;
    if (!p->sources_auto && p->sources_needed > 1 && p->sources_needed > o->nsources)
        source_warning(o, p);
    per_source(o, p, tdest, tclients, p->sources ? p->sources : 1);
    return 0;
}

/* ---- the plan ---- */

int lg_plan_make(const struct lg_opts *o, const struct lg_plan_env *env, struct lg_plan *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    p->env = *env;
    p->clients = o->clients;
    p->per_client = o->protocol == LG_PROTO_SOCKETIO && o->sio_polling ? 2 : 1;
    if (plan_workers(o, p, err, errlen) < 0 || plan_sources(o, p, err, errlen) < 0)
        return -1;
    p->close_auto = o->close_timeout_auto;
    p->close_timeout_ns = o->close_timeout_ns;
    if (p->close_auto) /* each client's close is paced and answered in turn: allow LG_CLOSE_RATE a second */
        p->close_timeout_ns += (int64_t)o->clients * NS_PER_S / LG_CLOSE_RATE;
    return 0;
}

int lg_plan_apply(struct lg_opts *o, const struct lg_plan *p, char *err, size_t errlen)
{
    o->workers = p->workers;
    o->close_phase_ns = p->close_timeout_ns;
    if (!p->sources_auto || !p->sources)
        return 0;
    char range[40], first[INET_ADDRSTRLEN], last[INET_ADDRSTRLEN];
    struct in_addr a = {.s_addr = htonl(LG_PLAN_AUTO_SOURCE)},
                   b = {.s_addr = htonl(LG_PLAN_AUTO_SOURCE + p->sources - 1)};
    inet_ntop(AF_INET, &a, first, sizeof first);
    inet_ntop(AF_INET, &b, last, sizeof last);
    snprintf(range, sizeof range, "%s-%s", first, last);
    free(o->sources);
    o->sources = NULL;
    o->nsources = 0;
    return lg_parse_sources(range, &o->sources, &o->nsources, err, errlen);
}

static uint64_t read_u64_file(const char *path, uint64_t dflt)
{
    FILE *f = fopen(path, "r");
    unsigned long long v;
    bool ok = f && fscanf(f, "%llu", &v) == 1;
    if (f)
        fclose(f);
    return ok ? (uint64_t)v : dflt;
}

void lg_plan_env_read(struct lg_plan_env *env)
{
    struct rlimit rl;
    env->fd_limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (uint64_t)rl.rlim_max : 1024;
    if (env->fd_limit == (uint64_t)RLIM_INFINITY) /* setrlimit still stops at fs.nr_open */
        env->fd_limit = read_u64_file("/proc/sys/fs/nr_open", 1048576);
    env->port_lo = 32768; /* Linux's default */
    env->port_hi = 60999;
    env->port_range_read = false;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    unsigned lo, hi;
    if (f && fscanf(f, "%u %u", &lo, &hi) == 2 && lo <= hi && hi <= 65535) {
        env->port_lo = lo;
        env->port_hi = hi;
        env->port_range_read = true;
    }
    if (f)
        fclose(f);
}

void lg_plan_print(FILE *fp, const struct lg_plan *p)
{
    const struct lg_plan_dest *d = &p->dests[p->busiest];
    fprintf(fp,
            "plan      %u worker%s (%s: %u clients x %u descriptor%s, %" PRIu64 " a worker under the open-files limit "
            "%" PRIu64 "): %u clients a worker\n",
            p->workers, p->workers > 1 ? "s" : "", p->workers_auto ? "auto" : "--workers", p->clients, p->per_client,
            p->per_client > 1 ? "s" : "", p->fd_budget, p->env.fd_limit, p->clients_per_worker);
    fprintf(fp, "plan      ");
    if (p->sources)
        fprintf(fp, "%u source addresses (%s): ", p->sources, p->sources_auto ? "auto, from 127.0.0.2" : "--source");
    else
        fprintf(fp, "the kernel's source address (%s): ", p->sources_auto ? "auto: one is enough" : "--source none");
    fprintf(fp, "%" PRIu64 " connections to %s%s", d->conns, d->name, p->ndests > 1 ? " (the busiest)" : "");
    if (p->sources)
        fprintf(fp, ", %" PRIu64 " a source", d->per_source);
    char t[16];
    snprintf(t, sizeof t, "%.1fs", (double)p->close_timeout_ns / 1e9);
    fprintf(fp, ", of %u ports a source (half of %u-%u, less %d%%); close timeout %s%s\n", p->ports, p->env.port_lo,
            p->env.port_hi, LG_PLAN_PORT_MARGIN_PCT, t, p->close_auto ? " (auto)" : "");
}
