/* lb: the load balancer. Reads lb.conf and/or flags, binds every listener once per worker (SO_REUSEPORT: the
 * kernel spreads connections over the workers, and each worker has its own open-files limit), forks the workers
 * and, beside them, the health process (health checks and the admin listener, away from the workers' busy loops:
 * health.h), and supervises them all:
 *   SIGTERM/SIGINT  every process closes its listening sockets at once (the workers first take what is already
 *                   queued), so new connections are refused; requests in flight finish and tunnels run up to
 *                   `timeout grace`; logged with what is still open. A second signal ends everything now.
 *   SIGHUP          re-read the config; if it is valid, a new generation of workers starts and the old one stops as
 *                   on SIGTERM (its tunnels stay open until they end or the grace time passes). The new generation
 *                   takes over the old one's listening sockets where the address and worker slot match: the master
 *                   holds every socket, the new workers inherit them at fork, and the old workers closing their
 *                   copies leaves each socket, with its accept queue, open. So no connection that reached a queue
 *                   is reset by a reload. The other way, new sockets with the old queues drained before they close,
 *                   cannot be made safe: in a SO_REUSEPORT group a socket takes new connections until the moment
 *                   it closes, and closing it resets what arrived since the last accept (net.ipv4.tcp_migrate_req
 *                   would move them, but is off by default) - the resets a storm of new clients saw. Only sockets
 *                   the new config no longer needs (a dropped address, fewer workers) close, with a warning.
 *                   Past MAX_OLD old generations still holding tunnels, the oldest is killed (logged with what it
 *                   held), so a reload always takes effect; every outcome is counted (lb_reloads_total{result}).
 *   a worker that dies is started again.
 * The master serves no traffic and holds no loop: it waits for signals with sigtimedwait, waking every
 * resolve-interval to look the running generation's backend host names up again (resolve.h). */
#define _GNU_SOURCE
#include "common/log.h"
#include "common/net.h"
#include "common/tls.h"
#include "common/version.h"
#include "lb/admin.h"
#include "lb/conf.h"
#include "lb/health.h"
#include "lb/pool.h"
#include "lb/proxy.h"
#include "lb/resolve.h"

#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE   2
#define MAX_ERRS     64
#define MAX_WORKERS  64
#define MAX_OLD      8 /* old generations finishing their tunnels at once; past it the oldest finishes now */
#define BACKLOG      4096
#define MAX_CONF_LEN (1 << 20)
#define SEC          INT64_C(1000000000)

static const char usage[] =
    "usage: lb -c lb.conf [flags]   or   lb --listen ADDR --backend ADDR... [flags]\n"
    "  -c, --config FILE          the configuration (format: README, 'lb'); flags below add to it or override it\n"
    "      --check                validate the configuration, print each error with its line number, exit 0 or 2\n"
    "      --listen HOST:PORT     a listener (repeatable)\n"
    "      --backend [NAME=]HOST:PORT[,weight=N][,cookie=ID]   a node (repeatable; names default to n1, n2...)\n"
    "      --balance roundrobin|leastconn|source|param:NAME\n"
    "      --sticky cookie[:NAME]|prefix:NAME|source|none\n"
    "      --admin HOST:PORT      /metrics, /health, /nodes and node drain/maint/ready\n"
    "      --health off|path=/,interval=2s,timeout=1s,rise=2,fall=3\n"
    "      --timeout KIND=DURATION   connect, server, client, tunnel, head or grace (repeatable)\n"
    "      --workers N            processes sharing the listeners (default 1)\n"
    "      --max-connections N    client connections in all; more wait in the kernel's backlog (default: what the\n"
    "                             open-files limit holds, 2 descriptors each, per worker)\n"
    "      --panic-threshold PERCENT   under this share of nodes up, balance over all of them (default 50, 0: off)\n"
    "      --source ADDR[-ADDR]   local addresses for connections to nodes, in turn: each (address, node) pair\n"
    "                             holds only as many connections as the ephemeral port range\n"
    "      --abort-on-close       a client gone before its answer began also closes the node's connection\n"
    "                             (HAProxy's option abortonclose: long-polls of closed tabs stop pinning nodes)\n"
    "      --resolve-interval DURATION|off   how often backend host names are looked up again (default 10s)\n"
    "      --log-level LEVEL      error, warn, info or debug (default info)\n"
    "      --log-requests         one info line per HTTP request and per tunnel at its end (HAProxy's httplog)\n"
    "      --share-port           listen even where another process already listens (SO_REUSEPORT: the\n"
    "                             kernel splits the connections between them); default: refuse to start\n"
    "      --version              name, version and the commit it was built from\n"
    "      --help                 this text\n";

struct args {
    const char *config;
    bool check;
    char flags[8192]; /* the flags as directive lines, applied after the file */
    size_t flags_len;
    int nflag_backends;
    int log_level;
};

struct generation {
    unsigned id; /* 1 for the first, one more per reload, for the log */
    struct lb_conf conf;
    int lfd[MAX_WORKERS][LB_MAX_LISTENS];
    int admin_fd;
    struct tls_ctx *tls[LB_MAX_LISTENS];
    struct pool_shared *sh;
    struct resolver res;         /* this generation's backend names, looked up again while it is the current one */
    pid_t pids[MAX_WORKERS + 1]; /* the workers', then the health process's when it has one (nprocs) */
    bool health_proc;            /* it has one: checks or an admin listener (decided once: fds close on reload) */
};

static uint64_t nofile; /* the open-files limit every process starts with (raise_nofile) */

/* ---- configuration ---- */

/* One directive line "words1 words2" for the flags' part of the configuration. */
static int add_flag(struct args *a, const char *w1, const char *w2)
{
    int n = snprintf(a->flags + a->flags_len, sizeof a->flags - a->flags_len, "%s %s\n", w1, w2);
    if (n < 0 || (size_t)n >= sizeof a->flags - a->flags_len) {
        fprintf(stderr, "lb: too many flags\n");
        return -1;
    }
    a->flags_len += (size_t)n;
    return 0;
}

/* --backend [NAME=]HOST:PORT[,opt=v...] as a `backend NAME HOST:PORT opt=v...` line. */
static int add_backend_flag(struct args *a, const char *v)
{
    char spec[600], name[32], *rest = spec;
    if (strlen(v) >= sizeof spec || strpbrk(v, " \t\n#")) {
        fprintf(stderr, "lb: --backend '%s': expected [NAME=]HOST:PORT[,weight=N][,cookie=ID]\n", v);
        return -1;
    }
    strcpy(spec, v);
    a->nflag_backends++;
    char *eq = strchr(spec, '='), *comma = strchr(spec, ',');
    if (eq && (!comma || eq < comma)) {
        *eq = '\0';
        rest = eq + 1;
        snprintf(name, sizeof name, "%.31s", spec);
    } else {
        snprintf(name, sizeof name, "n%d", a->nflag_backends);
    }
    for (char *p = rest; (p = strchr(p, ','));)
        *p = ' ';
    char words[700];
    snprintf(words, sizeof words, "%s %s", name, rest);
    return add_flag(a, "backend", words);
}

/* --health a=1,b=2 and --timeout connect=1s,... become the directive's "key value" words. */
static int add_list_flag(struct args *a, const char *directive, const char *list)
{
    char v[512];
    snprintf(v, sizeof v, "%s", list);
    for (char *p = v; *p; p++)
        if (*p == ',' || (directive[0] == 't' && *p == '='))
            *p = ' ';
    return add_flag(a, directive, v);
}

/* --version ('V') or --help on stdout; the exit code. */
static int print_info(int o)
{
    if (o == 'V')
        printf("lb %s (commit %s)\n", WSH_VERSION, WSH_COMMIT);
    else
        fputs(usage, stdout);
    return 0;
}

static int parse_args(int argc, char **argv, struct args *a)
{
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"check", no_argument, 0, 'k'},
                                         {"listen", required_argument, 0, 'l'},
                                         {"backend", required_argument, 0, 'b'},
                                         {"balance", required_argument, 0, 'B'},
                                         {"sticky", required_argument, 0, 's'},
                                         {"admin", required_argument, 0, 'a'},
                                         {"health", required_argument, 0, 'H'},
                                         {"timeout", required_argument, 0, 't'},
                                         {"workers", required_argument, 0, 'w'},
                                         {"max-connections", required_argument, 0, 'm'},
                                         {"log-level", required_argument, 0, 'L'},
                                         {"abort-on-close", no_argument, 0, 'A'},
                                         {"resolve-interval", required_argument, 0, 'R'},
                                         {"panic-threshold", required_argument, 0, 'P'},
                                         {"source", required_argument, 0, 'S'},
                                         {"log-requests", no_argument, 0, 'g'},
                                         {"share-port", no_argument, 0, 'u'},
                                         {"version", no_argument, 0, 'V'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    static const char *const directive[128] = {
        ['l'] = "listen",  ['B'] = "balance",         ['s'] = "sticky",           ['a'] = "admin",
        ['w'] = "workers", ['m'] = "max-connections", ['R'] = "resolve-interval", ['P'] = "panic-threshold",
        ['S'] = "source"};
    int o, rc = 0;
    a->log_level = LOG_LEVEL_INFO;
    while (rc == 0 && (o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (o == 'c')
            a->config = optarg;
        else if (o == 'k')
            a->check = true;
        else if (o == 'A' || o == 'g' || o == 'u')
            rc = add_flag(a, o == 'A' ? "abort-on-close" : o == 'g' ? "log-requests" : "share-port", "on");
        else if (o == 'V' || o == 'h')
            exit(print_info(o));
        else if (o == 'b')
            rc = add_backend_flag(a, optarg);
        else if (o == 'H' || o == 't')
            rc = add_list_flag(a, o == 'H' ? "health" : "timeout", optarg);
        else if (o == 'L') {
            if ((a->log_level = log_level_parse(optarg)) < 0) {
                fprintf(stderr, "lb: bad value '%s' for --log-level (error, warn, info, debug)\n", optarg);
                rc = -1;
            }
        } else if (o > 0 && o < 128 && directive[o]) {
            rc = add_flag(a, directive[o], optarg);
        } else {
            fputs("lb: try --help\n", stderr);
            rc = -1;
        }
    }
    if (rc == 0 && optind < argc) {
        fprintf(stderr, "lb: unexpected argument '%s' (try --help)\n", argv[optind]);
        rc = -1;
    }
    return rc;
}

static char *read_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *text = malloc(MAX_CONF_LEN + 1);
    size_t n = text ? fread(text, 1, MAX_CONF_LEN + 1, f) : 0;
    bool bad = ferror(f) || n > MAX_CONF_LEN;
    fclose(f);
    if (!text || bad) {
        snprintf(err, errlen, "%s: %s", path, !text ? "out of memory" : "unreadable or over 1 MiB");
        free(text);
        return NULL;
    }
    text[n] = '\0';
    return text;
}

/* The file, then the flags, then the whole-config checks; every error printed. 0, or -1. */
static int load_conf(const struct args *a, struct lb_conf *c)
{
    struct lb_conf_error errs[MAX_ERRS];
    char err[ERR_LEN];
    int nerrs = 0;
    lb_conf_defaults(c);
    if (a->config) {
        char *text = read_file(a->config, err, sizeof err);
        if (!text) {
            fprintf(stderr, "lb: %s\n", err);
            return -1;
        }
        nerrs = lb_conf_apply_text(text, c, errs, MAX_ERRS, 0);
        free(text);
    }
    int file_errs = nerrs;
    char flags[sizeof a->flags];
    memcpy(flags, a->flags, a->flags_len + 1);
    nerrs = lb_conf_apply_text(flags, c, errs, MAX_ERRS, nerrs);
    nerrs = lb_conf_check(c, errs, MAX_ERRS, nerrs);
    for (int i = 0; i < nerrs && i < MAX_ERRS; i++) {
        if (i >= file_errs && errs[i].line > 0)
            fprintf(stderr, "lb: flag: %s\n", errs[i].msg);
        else if (errs[i].line > 0)
            fprintf(stderr, "%s:%d: %s\n", a->config, errs[i].line, errs[i].msg);
        else
            fprintf(stderr, "lb: %s\n", errs[i].msg);
    }
    if (nerrs > MAX_ERRS)
        fprintf(stderr, "lb: ... and %d more errors\n", nerrs - MAX_ERRS);
    if (nerrs)
        return -1;
    char warn[512];
    lb_conf_fit_descriptors(c, nofile, warn, sizeof warn);
    if (warn[0])
        LOG_WARN("%s", warn);
    return 0;
}

/* The soft open-files limit raised to the hard one, as Go's runtime and many daemons do (the soft limit is often
 * 1024 for compatibility with select(), which the lb never uses); what the processes will have. */
static uint64_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max && rl.rlim_max != RLIM_INFINITY) {
        rlim_t soft = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            rl.rlim_cur = soft;
    }
    return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
}

/* ---- a generation's sockets ---- */

/* The generation's processes: workers 0..workers-1, then the health process. */
static uint32_t nprocs(const struct generation *g)
{
    return g->conf.workers + g->health_proc;
}

static void close_generation_fds(struct generation *g)
{
    for (uint32_t w = 0; w < g->conf.workers; w++)
        for (int i = 0; i < g->conf.nlistens; i++)
            if (g->lfd[w][i] >= 0)
                close(g->lfd[w][i]), g->lfd[w][i] = -1;
    if (g->admin_fd >= 0)
        close(g->admin_fd), g->admin_fd = -1;
}

static void free_generation(struct generation *g)
{
    close_generation_fds(g);
    for (int i = 0; i < LB_MAX_LISTENS; i++)
        tls_ctx_free(g->tls[i]);
    pool_shared_free(g->sh);
    free(g);
}

static bool same_addr(const struct net_addr *a, const struct net_addr *b)
{
    char x[80], y[80];
    net_addr_str(a, x, sizeof x);
    net_addr_str(b, y, sizeof y);
    return strcmp(x, y) == 0;
}

/* Move from's listening socket for addr in worker slot w to *to, if from has one there (and *to is empty). */
static void move_socket(struct generation *from, const struct net_addr *addr, uint32_t w, int *to)
{
    for (int i = 0; *to < 0 && from && w < from->conf.workers && i < from->conf.nlistens; i++)
        if (from->lfd[w][i] >= 0 && same_addr(&from->conf.listens[i].addr, addr)) {
            *to = from->lfd[w][i];
            from->lfd[w][i] = -1;
        }
}

/* Whether cur holds a listening socket on addr (then the address is ours, whoever else may be on it). */
static bool holds(const struct generation *cur, const struct net_addr *addr)
{
    for (uint32_t w = 0; cur && w < cur->conf.workers; w++)
        for (int i = 0; i < cur->conf.nlistens; i++)
            if (cur->lfd[w][i] >= 0 && same_addr(&cur->conf.listens[i].addr, addr))
                return true;
    return false;
}

/* Refuse an address another process already listens on: with SO_REUSEPORT our bind would succeed and the kernel
 * would quietly split the connections between us and it (a second lb started by mistake takes half the traffic).
 * A probe bound without SO_REUSEPORT fails there, and only there. 0, or -1 with err. */
static int check_free(const struct lb_listen *l, bool share, char *err, size_t errlen)
{
    int one = 1, fd = socket(l->addr.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (share || fd < 0) {
        if (fd >= 0)
            close(fd);
        return 0; /* no socket to probe with: the real bind reports the cause */
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    bool taken = bind(fd, (const struct sockaddr *)&l->addr.ss, l->addr.len) < 0 && errno == EADDRINUSE;
    close(fd);
    if (taken)
        snprintf(err, errlen,
                 "cannot listen on %s: address in use by another process that listens there (another lb?); to share "
                 "the port "
                 "with it, `listen %s shared` or --share-port",
                 l->text, l->text);
    return taken ? -1 : 0;
}

/* g's listening sockets, taken over from cur where cur listens on the same address in the same worker slot, new
 * ones for the rest; then the admin socket likewise. 0, or -1 with err. */
static int open_sockets(struct generation *g, struct generation *cur, char *err, size_t errlen)
{
    const struct lb_conf *c = &g->conf;
    for (int i = 0; i < c->nlistens; i++) {
        if (!holds(cur, &c->listens[i].addr) &&
            check_free(&c->listens[i], c->share_port || c->listens[i].shared, err, errlen) < 0)
            return -1;
        for (uint32_t w = 0; w < c->workers; w++) {
            move_socket(cur, &c->listens[i].addr, w, &g->lfd[w][i]);
            if (g->lfd[w][i] < 0 && (g->lfd[w][i] = net_listen(&c->listens[i].addr, BACKLOG, true, err, errlen)) < 0)
                return -1;
        }
    }
    if (cur && cur->admin_fd >= 0 && c->has_admin && cur->conf.has_admin &&
        same_addr(&cur->conf.admin.addr, &c->admin.addr))
        g->admin_fd = cur->admin_fd, cur->admin_fd = -1;
    if (c->has_admin && g->admin_fd < 0 && (g->admin_fd = net_listen(&c->admin.addr, 64, true, err, errlen)) < 0)
        return -1;
    return 0;
}

/* Undo open_sockets' take-overs: every socket of g that cur listened on goes back to cur. */
static void give_back(struct generation *g, struct generation *cur)
{
    for (int i = 0; i < g->conf.nlistens; i++)
        for (uint32_t w = 0; w < g->conf.workers; w++)
            for (int j = 0; g->lfd[w][i] >= 0 && w < cur->conf.workers && j < cur->conf.nlistens; j++)
                if (cur->lfd[w][j] < 0 && same_addr(&cur->conf.listens[j].addr, &g->conf.listens[i].addr))
                    cur->lfd[w][j] = g->lfd[w][i], g->lfd[w][i] = -1;
    if (g->admin_fd >= 0 && cur->admin_fd < 0 && cur->conf.has_admin &&
        same_addr(&cur->conf.admin.addr, &g->conf.admin.addr))
        cur->admin_fd = g->admin_fd, g->admin_fd = -1;
}

/* TLS contexts, the shared state, then the listeners (one per worker each) and the admin socket, taken over from
 * cur (the running generation, NULL at start) where the addresses match. NULL on error (said; cur keeps its
 * sockets). */
static struct generation *prepare(const struct lb_conf *c, struct generation *cur)
{
    struct generation *g = calloc(1, sizeof *g);
    char err[ERR_LEN];
    if (!g)
        return NULL;
    g->conf = *c;
    memset(g->lfd, -1, sizeof g->lfd);
    g->admin_fd = -1;
    for (int i = 0; i < c->nlistens; i++)
        if (c->listens[i].tls &&
            !(g->tls[i] = tls_server_ctx_new(c->listens[i].cert, c->listens[i].key, err, sizeof err)))
            goto fail;
    if (!(g->sh = pool_shared_new(err, sizeof err)) || open_sockets(g, cur, err, sizeof err) < 0)
        goto fail;
    g->health_proc = c->health.enabled || c->has_admin;
    resolve_init(&g->res, &g->conf, g->sh);
    return g;
fail:
    LOG_ERR("%s", err);
    if (cur)
        give_back(g, cur);
    free_generation(g);
    return NULL;
}

/* ---- a worker, the health process ---- */

struct worker {
    struct ev_loop *loop;
    struct proxy px;
    struct pool pool;
    ev_signal term, intr, hup;
    ev_timer grace, poll;
};

static void on_stop_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct worker *wk = w->data;
    (void)revents;
    if (proxy_sessions(&wk->px) == 0)
        ev_break(loop, EVBREAK_ALL);
}

static void on_grace(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct worker *wk = w->data;
    (void)revents;
    LOG_INFO("grace time over: closing %u connections", proxy_sessions(&wk->px));
    ev_break(loop, EVBREAK_ALL);
}

static void on_term(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct worker *wk = w->data;
    (void)revents;
    if (wk->px.stopping)
        return;
    proxy_stop_accepting(&wk->px);
    ev_timer_start(loop, &wk->grace);
    ev_timer_start(loop, &wk->poll);
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop, (void)w, (void)revents; /* the master reloads; a child just must not die of it */
}

/* SIGTERM and SIGINT to on_stop (with data), SIGHUP ignored; then the signals the master blocked before forking
 * are let through. false when the master died before we could ask to follow it. */
static bool watch_signals(struct ev_loop *loop, ev_signal sig[3], void (*on_stop)(struct ev_loop *, ev_signal *, int),
                          void *data)
{
    ev_signal_init(&sig[0], on_stop, SIGTERM);
    ev_signal_init(&sig[1], on_stop, SIGINT);
    ev_signal_init(&sig[2], on_hup, SIGHUP);
    for (int i = 0; i < 3; i++) {
        sig[i].data = data;
        ev_signal_start(loop, &sig[i]);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    return getppid() != 1;
}

/* Close the listeners of every worker but keep (UINT32_MAX: none kept). */
static void close_listeners(struct generation *g, uint32_t keep)
{
    for (uint32_t w = 0; w < g->conf.workers; w++)
        for (int i = 0; w != keep && i < g->conf.nlistens; i++)
            close(g->lfd[w][i]);
}

static int worker_main(struct generation *g, uint32_t index)
{
    struct worker wk = {0};
    char err[ERR_LEN], name[24];
    const struct lb_conf *c = &g->conf;
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    wk.loop = ev_default_loop(EVFLAG_AUTO);
    close_listeners(g, index); /* only our own listeners stay open here */
    if (g->admin_fd >= 0)
        close(g->admin_fd);
    if (pool_init(&wk.pool, c, g->sh, err, sizeof err) < 0)
        goto fail;
    uint32_t share = (c->max_connections + c->workers - 1) / c->workers;
    snprintf(name, sizeof name, "worker %u", index);
    if (proxy_start(&wk.px, wk.loop, name, c, &wk.pool, g->lfd[index], g->tls, c->nlistens, share, err, sizeof err) < 0)
        goto fail;
    ev_signal sig[3];
    ev_timer_init(&wk.grace, on_grace, (double)c->grace_ns / 1e9, 0);
    ev_timer_init(&wk.poll, on_stop_poll, 0.05, 0.05);
    wk.grace.data = wk.poll.data = &wk;
    if (!watch_signals(wk.loop, sig, on_term, &wk))
        return 0;
    ev_run(wk.loop, 0);
    proxy_close_all(&wk.px);
    pool_free(&wk.pool);
    return 0;
fail:
    LOG_ERR("worker %u: %s", index, err);
    return 1;
}

static void on_health_term(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)w, (void)revents;
    ev_break(loop, EVBREAK_ALL); /* nothing to finish: a check in flight has no client waiting */
}

/* The health process: the checks and the admin listener on a loop of their own (health.h). */
static int health_main(struct generation *g)
{
    struct pool pool;
    struct health *health = NULL;
    struct admin *admin = NULL;
    char err[ERR_LEN];
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    prctl(PR_SET_NAME, "lb-health"); /* apart from the workers in ps and top */
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    close_listeners(g, UINT32_MAX);
    if (pool_init(&pool, &g->conf, g->sh, err, sizeof err) < 0)
        goto fail;
    if (!(health = health_start(loop, &pool, err, sizeof err)))
        goto fail;
    if (g->admin_fd >= 0 && !(admin = admin_start(loop, g->admin_fd, &pool, err, sizeof err)))
        goto fail;
    ev_signal sig[3];
    if (watch_signals(loop, sig, on_health_term, NULL))
        ev_run(loop, 0);
    admin_stop(admin);
    health_stop(health);
    pool_free(&pool);
    return 0;
fail:
    LOG_ERR("health process: %s", err);
    return 1;
}

/* ---- the master ---- */

static pid_t spawn(struct generation *g, uint32_t index)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(index < g->conf.workers ? worker_main(g, index) : health_main(g));
    if (pid < 0)
        LOG_ERR("fork: %s", strerror(errno));
    g->pids[index] = pid;
    return pid;
}

static int start_generation(struct generation *g)
{
    for (uint32_t w = 0; w < nprocs(g); w++)
        if (spawn(g, w) < 0)
            return -1;
    return 0;
}

static void signal_generation(const struct generation *g, int sig)
{
    for (uint32_t w = 0; w < nprocs(g); w++)
        if (g->pids[w] > 0)
            kill(g->pids[w], sig);
}

/* Whose process was pid, and which one; the slot is cleared. */
static struct generation *owner(struct generation **gens, int ngens, pid_t pid, uint32_t *index)
{
    for (int i = 0; i < ngens; i++)
        for (uint32_t w = 0; gens[i] && w < nprocs(gens[i]); w++)
            if (gens[i]->pids[w] == pid) {
                gens[i]->pids[w] = 0;
                *index = w;
                return gens[i];
            }
    return NULL;
}

static bool alive(const struct generation *g)
{
    for (uint32_t w = 0; g && w < nprocs(g); w++)
        if (g->pids[w] > 0)
            return true;
    return false;
}

struct master {
    const struct args *args;
    struct generation *cur, *old[MAX_OLD];
    bool stopping;
    unsigned next_id;
    struct pool_reloads rec; /* published into the current generation's shared block (publish) */
    int64_t next_resolve_ns; /* CLOCK_MONOTONIC; for the current generation */
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SEC + ts.tv_nsec;
}

/* The reload record into the current generation's block, where its health process serves it. */
static void publish(struct master *m)
{
    struct pool_reloads *r = &m->cur->sh->reloads;
    m->rec.old_generations = 0;
    for (int i = 0; i < MAX_OLD; i++)
        m->rec.old_generations += m->old[i] != NULL;
    for (int i = 0; i < POOL_RELOAD_COUNT; i++)
        POOL_SET(r->total[i], m->rec.total[i]);
    POOL_SET(r->last, m->rec.last);
    POOL_SET(r->old_generations, m->rec.old_generations);
    POOL_SET(r->forced, m->rec.forced);
}

/* What g's workers still hold: client connections, and tunnels among them (from its shared counters). */
static void open_counts(const struct generation *g, uint64_t *conns, uint64_t *tunnels)
{
    *conns += POOL_GET(g->sh->conns_active);
    for (int i = 0; i < g->conf.nbackends; i++)
        *tunnels += POOL_GET(g->sh->nodes[i].tunnels_active);
}

static void reap(struct master *m)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        uint32_t index;
        struct generation *g = owner(&m->cur, 1, pid, &index);
        if (g && !m->stopping) {
            char who[24];
            if (index < g->conf.workers)
                snprintf(who, sizeof who, "worker %u", index);
            else
                snprintf(who, sizeof who, "health process");
            LOG_WARN("%s (pid %d) died (%s %d); starting it again", who, (int)pid,
                     WIFSIGNALED(status) ? "signal" : "exit",
                     WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            spawn(g, index);
            continue;
        }
        for (int i = 0; !g && i < MAX_OLD; i++)
            if (m->old[i] && owner(&m->old[i], 1, pid, &index) && !alive(m->old[i])) {
                LOG_INFO("generation %u finished", m->old[i]->id);
                free_generation(m->old[i]);
                m->old[i] = NULL;
                g = m->cur;
                publish(m);
            }
    }
}

/* A slot for one more old generation. With MAX_OLD of them still finishing, the oldest is told to finish now
 * (killed: its connections close), as HAProxy's mworker-max-reloads does: a reload is never refused for it. */
static int free_slot(struct master *m)
{
    int oldest = 0;
    for (int i = 0; i < MAX_OLD; i++) {
        if (!m->old[i])
            return i;
        if (m->old[i]->id < m->old[oldest]->id)
            oldest = i;
    }
    struct generation *g = m->old[oldest];
    uint64_t conns = 0, tunnels = 0;
    open_counts(g, &conns, &tunnels);
    LOG_WARN("reload: %d older generations still running; the oldest, generation %u, finishes now: closing %llu "
             "client connection(s), %llu of them tunnels",
             MAX_OLD, g->id, (unsigned long long)conns, (unsigned long long)tunnels);
    for (uint32_t w = 0; w < nprocs(g); w++)
        if (g->pids[w] > 0 && kill(g->pids[w], SIGKILL) == 0)
            waitpid(g->pids[w], NULL, 0); /* at once: SIGKILL cannot be caught */
    free_generation(g);
    m->old[oldest] = NULL;
    m->rec.forced++;
    return oldest;
}

static void reload_done(struct master *m, enum pool_reload result)
{
    m->rec.total[result]++;
    m->rec.last = result;
    publish(m);
}

/* Close what the new generation did not take over from cur (an address no longer listened on, a worker slot
 * beyond the new count): connections queued on those sockets are reset, so say so. */
static void close_leftovers(struct generation *cur)
{
    int left = 0;
    for (uint32_t w = 0; w < cur->conf.workers; w++)
        for (int i = 0; i < cur->conf.nlistens; i++)
            left += cur->lfd[w][i] >= 0;
    if (left)
        LOG_WARN("reload: closing %d listening socket(s) the new configuration does not use (a listen address "
                 "dropped, or fewer workers); connections queued on them are reset",
                 left);
    close_generation_fds(cur);
}

static void reload(struct master *m)
{
    struct lb_conf c;
    LOG_INFO("SIGHUP: reloading the configuration");
    if (load_conf(m->args, &c) < 0) {
        LOG_ERR("reload: the configuration has errors (above); keeping the running one");
        reload_done(m, POOL_RELOAD_INVALID);
        return;
    }
    struct generation *g = prepare(&c, m->cur);
    if (!g) {
        LOG_ERR("reload failed (above); keeping the running configuration");
        reload_done(m, POOL_RELOAD_FAILED);
        return;
    }
    int slot = free_slot(m);
    g->id = ++m->next_id;
    /* The old generation's remaining sockets must not leak into the new workers: a listener that no live worker
     * accepts on would stay in the SO_REUSEPORT group and swallow its share of new connections. Its workers hold
     * their own copies until they stop. */
    close_leftovers(m->cur);
    if (start_generation(g) < 0) {
        signal_generation(g, SIGKILL);
        give_back(g, m->cur);
        m->old[slot] = g; /* reaped like any old generation */
        reload_done(m, POOL_RELOAD_FAILED);
        return;
    }
    signal_generation(m->cur, SIGTERM);
    LOG_INFO("reload: generation %u serving (%u worker(s), %d node(s)); generation %u finishes its connections", g->id,
             g->conf.workers, g->conf.nbackends, m->cur->id);
    m->old[slot] = m->cur;
    m->cur = g; /* from now on only g's names are looked up: the old workers finish with what they have */
    m->next_resolve_ns = now_ns() + g->conf.resolve_interval_ns;
    reload_done(m, POOL_RELOAD_OK);
}

static void signal_all(struct master *m, int sig)
{
    signal_generation(m->cur, sig);
    for (int i = 0; i < MAX_OLD; i++)
        if (m->old[i])
            signal_generation(m->old[i], sig);
}

/* SIGTERM or SIGINT: the master's own copies of the listening sockets close first, so that once the workers have
 * taken what is queued and closed theirs, new connections are refused rather than left in a queue nobody accepts
 * from until the grace time ends. A second signal ends everything now. */
static void stop(struct master *m, int sig)
{
    const char *name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    if (m->stopping) {
        LOG_WARN("%s again: closing every connection now", name);
        signal_all(m, SIGKILL);
        return;
    }
    m->stopping = true;
    close_generation_fds(m->cur);
    uint64_t conns = 0, tunnels = 0;
    open_counts(m->cur, &conns, &tunnels);
    for (int i = 0; i < MAX_OLD; i++)
        if (m->old[i])
            open_counts(m->old[i], &conns, &tunnels);
    signal_all(m, SIGTERM);
    LOG_INFO("%s: stopped listening; %llu client connection(s) open, %llu of them tunnels: requests in flight "
             "finish, tunnels get up to timeout grace %gs",
             name, (unsigned long long)conns, (unsigned long long)tunnels, (double)m->cur->conf.grace_ns / 1e9);
}

/* The signals the master waits for with sigtimedwait (blocked from the start, so none is lost). */
static void master_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGCHLD);
}

/* The next signal; or -1 (EAGAIN) once it is time to look the current generation's backend names up again, done
 * here, then the next lookup is an interval after this one ended (a slow DNS server never makes them back to back).
 * -1 with EINTR too. */
static int next_signal(struct master *m, const sigset_t *set)
{
    const struct lb_conf *c = &m->cur->conf;
    if (m->stopping || !resolve_wanted(c))
        return sigwaitinfo(set, NULL);
    int64_t left = m->next_resolve_ns - now_ns();
    if (left > 0) {
        struct timespec ts = {.tv_sec = (time_t)(left / SEC), .tv_nsec = (long)(left % SEC)};
        int sig = sigtimedwait(set, NULL, &ts);
        if (sig >= 0 || errno != EAGAIN)
            return sig;
    }
    resolve_all(&m->cur->res);
    m->next_resolve_ns = now_ns() + c->resolve_interval_ns;
    return -1;
}

static int master_run(struct master *m)
{
    sigset_t set;
    master_signals(&set);
    /* the master keeps the listening sockets of the running generation, to restart a worker that dies and to hand
     * them to the next generation on a reload */
    m->cur->id = ++m->next_id;
    if (start_generation(m->cur) < 0)
        return 1;
    LOG_INFO("serving on %s with %u worker(s), %d node(s)", m->cur->conf.listens[0].text, m->cur->conf.workers,
             m->cur->conf.nbackends);
    m->next_resolve_ns = now_ns() + m->cur->conf.resolve_interval_ns;
    for (;;) {
        bool any = alive(m->cur);
        for (int i = 0; i < MAX_OLD; i++)
            any = any || alive(m->old[i]);
        if (m->stopping && !any)
            return 0;
        int sig = next_signal(m, &set);
        if (sig == SIGCHLD)
            reap(m);
        else if (sig == SIGHUP && !m->stopping)
            reload(m);
        else if (sig == SIGTERM || sig == SIGINT)
            stop(m, sig);
    }
}

/* lb --check's verdict on a good config, with what it will look up again while running. */
static void print_check(const struct args *a, const struct lb_conf *c)
{
    int by_name = 0;
    for (int i = 0; i < c->nbackends; i++)
        by_name += c->backends[i].by_name;
    printf("%s: ok (%d listener(s), %d node(s)", a->config ? a->config : "flags", c->nlistens, c->nbackends);
    if (by_name && c->resolve_interval_ns > 0)
        printf("; %d by host name, resolved again every %gs", by_name, (double)c->resolve_interval_ns / 1e9);
    else if (by_name)
        printf("; %d by host name, resolved at start-up and SIGHUP only", by_name);
    printf(")\n");
    if (c->max_connections_set)
        printf("max-connections %u (configured)\n", c->max_connections);
    else
        printf("max-connections %u (%u worker(s) x (open-files limit %llu - %d reserved) / %d descriptors each)\n",
               c->max_connections, c->workers, (unsigned long long)nofile, LB_FD_RESERVE, LB_FDS_PER_CONN);
}

int main(int argc, char **argv)
{
    struct args a = {0};
    struct lb_conf c;
    if (parse_args(argc, argv, &a) < 0)
        return EXIT_USAGE;
    log_init("lb", (enum log_level)a.log_level);
    nofile = raise_nofile();
    if (!a.config && a.flags_len == 0) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    if (load_conf(&a, &c) < 0)
        return EXIT_USAGE;
    if (a.check) {
        print_check(&a, &c);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    master_signals(&set);
    sigprocmask(SIG_BLOCK, &set, NULL); /* before any fork: workers unblock their own */
    struct master m = {.args = &a};
    if (!(m.cur = prepare(&c, NULL)))
        return EXIT_USAGE;
    int rc = master_run(&m);
    free_generation(m.cur);
    for (int i = 0; i < MAX_OLD; i++)
        if (m.old[i])
            free_generation(m.old[i]);
    return rc;
}
