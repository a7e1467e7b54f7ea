/* How a run is spread before any socket opens: worker processes (--workers auto), source addresses (--source
 * auto) and the close phase's time limit (no --close-timeout), from the client count, the transport and the
 * destinations. lg_plan_make is pure: the system's limits come in a struct lg_plan_env (lg_plan_env_read fills
 * one from this host), so the unit tests can plan a million clients anywhere.
 *
 * Descriptors: a worker may hold the open-files hard limit (its soft limit is raised to what it needs) less
 * LG_PLAN_FD_RESERVE; a websocket client holds 1, a polling client 2 (its held GET and its POSTs), and while it
 * upgrades a third: one per handshake slot, so up to --max-inflight more are kept free.
 * Ports: a (source address, destination) pair is planned at half of ip_local_port_range's ports
 * (IP_BIND_ADDRESS_NO_PORT lets the kernel reuse a port towards another destination), less
 * LG_PLAN_PORT_MARGIN_PCT for other programs and for the polling connections an upgrade leaves in TIME_WAIT. Half,
 * because connect() takes the range's odd ports first and, once they are used, scans them all before each even one
 * it finds: measured here, 25k connects/s up to ~14k connections a pair, 1.2k/s past it (the connect phase of 100k
 * clients over 4 pairs took 82 s). A polling client counts 2 connections. */
#ifndef LOADGEN_PLAN_H
#define LOADGEN_PLAN_H

#include "loadgen/opts.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define LG_PLAN_FD_RESERVE      64 /* a worker's own descriptors: stdio, epoll, its IPC socket, TLS files, resolver */
#define LG_PLAN_PORT_MARGIN_PCT 10
/* Closes a second the automatic close timeout allows for, on top of --close-timeout's default 2s: a floor, well
 * under what was measured on 2 shared cores (30000 paced closes straight to 2 refserver nodes in 0.83 s, through
 * lb's 4 workers in 2.5-2.9 s), so only a server far slower than that runs out of time. */
#define LG_CLOSE_RATE       1000
#define LG_PLAN_AUTO_SOURCE 0x7f000002u /* --source auto's first address: 127.0.0.2 (127.0.0.1 stays the kernel's) */

/* What this host allows. */
struct lg_plan_env {
    uint64_t fd_limit;         /* RLIMIT_NOFILE's hard limit */
    uint32_t port_lo, port_hi; /* net.ipv4.ip_local_port_range */
    bool port_range_read;      /* false: the range could not be read, Linux's default is assumed */
};

/* One destination: the host:port pair a URL resolved to (URLs that share one are one destination). */
struct lg_plan_dest {
    char name[64];       /* address:port */
    uint64_t conns;      /* TCP connections to it: its clients, twice with polling */
    uint64_t per_source; /* the most any one source address (or the kernel's one, without sources) holds to it */
};

struct lg_plan {
    struct lg_plan_env env;
    uint32_t clients;
    uint32_t per_client; /* descriptors, and connections, a client holds: 1 (websocket) or 2 (polling) */
    bool workers_auto, sources_auto, close_auto;

    uint32_t workers;            /* what the run uses: planned, or --workers as given */
    uint32_t workers_needed;     /* the fewest whose descriptors hold every client */
    uint64_t fd_reserve;         /* per worker, besides its clients': LG_PLAN_FD_RESERVE + the upgrade slots' */
    uint64_t fd_budget;          /* per worker for its clients: fd_limit - fd_reserve */
    uint32_t clients_per_worker; /* the most any worker holds */
    uint64_t fds_per_worker;     /* what that worker needs: clients_per_worker * per_client + fd_reserve */

    uint32_t sources;        /* what the run binds to: 0 = none (the kernel picks), or the list's length */
    uint32_t sources_needed; /* the fewest that fit the busiest destination (1 = the kernel's address is enough) */
    uint32_t ports;          /* usable per (source, destination): the range less the margin */
    struct lg_plan_dest dests[LG_MAX_URLS];
    uint32_t ndests, busiest; /* busiest: the index of the destination with the most connections */
    bool loopback;            /* every destination is an IPv4 loopback address (127.0.0.0/8) */

    int64_t close_timeout_ns; /* the close phase's limit */

    char warnings[2][320]; /* a --workers or --source given that is short of the plan's, with the remedy */
    int nwarnings;
};

/* Plan a run of o (parsed: clients, transport, resolved URLs, --workers, --source, --max-inflight,
 * --close-timeout) on a host with env. 0, or -1 with err (one line with the remedy): more workers needed than
 * LG_MAX_WORKERS, or --source auto needing several addresses towards a destination that is not IPv4 loopback. */
int lg_plan_make(const struct lg_opts *o, const struct lg_plan_env *env, struct lg_plan *p, char *err, size_t errlen);
/* Put the plan into o: the workers, --source auto's addresses (127.0.0.2 on), the close phase's limit. 0, or -1
 * with err (out of memory). */
int lg_plan_apply(struct lg_opts *o, const struct lg_plan *p, char *err, size_t errlen);
/* This host's limits: getrlimit(RLIMIT_NOFILE) and /proc/sys/net/ipv4/ip_local_port_range. */
void lg_plan_env_read(struct lg_plan_env *env);
/* The plan in two lines, each starting with "plan      " (the summary's column). */
void lg_plan_print(FILE *fp, const struct lg_plan *p);

#endif
