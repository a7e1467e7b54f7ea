/* The admin listener; see admin.h.
 *
 * Metrics are read from the shared block, so they cover every worker. Names follow Prometheus conventions
 * (lb_ prefix, _total for counters, a node label on per-node series). */
#include "lb/admin.h"

#include "common/buf.h"
#include "common/http.h"
#include "common/listener.h"
#include "common/log.h"
#include "common/net.h"
#include "common/prom.h"
#include "lb/pool.h"
#include "lb/shortage.h"

#include <errno.h>
#include <ev.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define ADMIN_MAX_HEAD 8192
#define ADMIN_TIMEOUT  5.0

struct admin {
    struct ev_loop *loop;
    struct pool *pool;
    int lfd;
    struct listener *listener;
};

struct admin_conn {
    struct ev_loop *loop; /* not via struct admin: a connection may outlive admin_stop */
    struct pool *pool;
    int fd;
    ev_io io;
    ev_timer timer;
    struct buf in, out;
    bool answered;
};

static void conn_free(struct admin_conn *c)
{
    ev_io_stop(c->loop, &c->io);
    ev_timer_stop(c->loop, &c->timer);
    close(c->fd);
    buf_free(&c->in);
    buf_free(&c->out);
    free(c);
}

static const char *const admin_names[] = {"ready", "drain", "maint"};
static const char *const error_names[POOL_ERR_COUNT] = {"bad_request",    "head_timeout", "head_too_large",
                                                        "no_node",        "connect",      "bad_response",
                                                        "server_timeout", "client_abort", "local_resource"};

/* A per-node series: one sample per node, labelled with its name. */
static void node_series(struct prom *m, const struct pool *p, enum prom_type type, const char *name, const char *help,
                        size_t offset)
{
    prom_family(m, type, name, help);
    for (int i = 0; i < p->n; i++) {
        const uint64_t *field = (const uint64_t *)(const void *)((const char *)&p->sh->nodes[i] + offset);
        prom_u64(m, &(struct prom_label){"node", p->conf->backends[i].name}, 1, POOL_GET(*field));
    }
}

#define NODE_COUNTER(m, p, metric, help, field)                                                                        \
    node_series(m, p, PROM_COUNTER, "lb_node_" metric, help, offsetof(struct pool_node_state, field))

/* Per-node state: health, run-time state, and what is open to each node now. */
static void node_gauges(struct prom *m, const struct pool *p)
{
    struct pool_shared *sh = p->sh;
    prom_family(m, PROM_GAUGE, "lb_node_up", "1 when the node passes its health checks");
    for (int i = 0; i < p->n; i++)
        prom_u64(m, &(struct prom_label){"node", p->conf->backends[i].name}, 1, POOL_GET(sh->nodes[i].up));
    prom_family(m, PROM_GAUGE, "lb_node_admin_state", "1 for the node's run-time state");
    for (int i = 0; i < p->n; i++)
        for (int s = 0; s < 3; s++) {
            struct prom_label l[] = {{"node", p->conf->backends[i].name}, {"state", admin_names[s]}};
            prom_u64(m, l, 2, POOL_GET(sh->nodes[i].admin) == s);
        }
    node_series(m, p, PROM_GAUGE, "lb_node_sessions", "connections open to the node",
                offsetof(struct pool_node_state, active));
    node_series(m, p, PROM_GAUGE, "lb_node_tunnels", "WebSocket tunnels open to the node",
                offsetof(struct pool_node_state, tunnels_active));
}

static void node_metrics(struct prom *m, const struct pool *p)
{
    static const char *const classes[] = {"", "1xx", "2xx", "3xx", "4xx", "5xx"};
    node_gauges(m, p);
    NODE_COUNTER(m, p, "connections_total", "connections opened to the node", connections);
    NODE_COUNTER(m, p, "requests_total", "requests forwarded to the node", requests);
    NODE_COUNTER(m, p, "tunnels_total", "upgrades answered 101", tunnels);
    NODE_COUNTER(m, p, "bytes_sent_total", "bytes sent to the node", bytes_to);
    NODE_COUNTER(m, p, "bytes_received_total", "bytes received from the node", bytes_from);
    NODE_COUNTER(m, p, "connect_errors_total", "failed connects", connect_errors);
    NODE_COUNTER(m, p, "checks_passed_total", "health checks passed", checks_ok);
    NODE_COUNTER(m, p, "checks_failed_total", "health checks failed", checks_failed);
    NODE_COUNTER(m, p, "transitions_total", "up/down changes", transitions);
    NODE_COUNTER(m, p, "address_changes_total", "times the node's host name resolved to a new address",
                 address_changes);
    NODE_COUNTER(m, p, "lookup_failures_total", "failed lookups of the node's host name (last address kept)",
                 lookup_failures);
    prom_family(m, PROM_COUNTER, "lb_node_responses_total", "responses by status class");
    for (int i = 0; i < p->n; i++)
        for (int c = 1; c <= 5; c++) {
            struct prom_label l[] = {{"node", p->conf->backends[i].name}, {"class", classes[c]}};
            prom_u64(m, l, 2, POOL_GET(p->sh->nodes[i].responses[c]));
        }
}

/* Panic mode, local resource failures, and the connection cap they are weighed against. */
static void local_metrics(struct prom *m, const struct pool *p)
{
    struct pool_shared *sh = p->sh;
    prom_scalar(m, PROM_GAUGE, "lb_panic",
                "1 while under panic-threshold percent of the nodes in rotation are up: clients are balanced over all "
                "of them",
                POOL_GET(sh->panic));
    prom_scalar(m, PROM_COUNTER, "lb_panic_episodes_total", "times panic began", POOL_GET(sh->panic_episodes));
    prom_scalar(m, PROM_COUNTER, "lb_panic_routed_total",
                "node picks made in panic, whatever the node's health (each try)", POOL_GET(sh->panic_routed));
    prom_family(m, PROM_COUNTER, "lb_local_resource_errors_total",
                "accepts, connects and checks that failed for want of the lb's own descriptors, ports or memory (no "
                "node blamed)");
    for (int op = 0; op < POOL_OP_COUNT; op++)
        for (int k = 0; k < POOL_LOCAL_COUNT; k++) {
            struct prom_label l[] = {{"op", shortage_op_name((enum pool_op)op)},
                                     {"kind", shortage_kind_name((enum pool_local)k)}};
            prom_u64(m, l, 2, POOL_GET(sh->local_errors[op][k]));
        }
    prom_scalar(m, PROM_GAUGE, "lb_max_connections", "the client connection cap over all workers",
                p->conf->max_connections);
}

/* The master's reload record (pool.h): outcomes by result, the last one, and what reloads cost old generations. */
static void reload_metrics(struct prom *m, const struct pool_shared *sh)
{
    static const char *const results[POOL_RELOAD_COUNT] = {"ok", "invalid", "failed"};
    uint64_t any = 0;
    prom_family(m, PROM_COUNTER, "lb_reloads_total",
                "SIGHUPs by outcome (invalid: the new configuration has errors, the running one stays; failed: "
                "sockets, TLS files or fork)");
    for (int r = 0; r < POOL_RELOAD_COUNT; r++) {
        uint64_t n = POOL_GET(sh->reloads.total[r]);
        any += n;
        prom_u64(m, &(struct prom_label){"result", results[r]}, 1, n);
    }
    prom_family(m, PROM_GAUGE, "lb_reload_last", "the latest SIGHUP's outcome (1)");
    for (int r = 0; any && r < POOL_RELOAD_COUNT; r++)
        prom_u64(m, &(struct prom_label){"result", results[r]}, 1, POOL_GET(sh->reloads.last) == (uint32_t)r);
    prom_scalar(m, PROM_GAUGE, "lb_old_generations",
                "generations of workers still finishing their tunnels after a reload",
                POOL_GET(sh->reloads.old_generations));
    prom_scalar(m, PROM_COUNTER, "lb_generations_forced_total",
                "old generations told to close their tunnels at once so that a reload could start",
                POOL_GET(sh->reloads.forced));
}

static void metrics(struct buf *b, const struct pool *p)
{
    struct pool_shared *sh = p->sh;
    struct prom m;
    prom_init(&m, b);
    prom_scalar(&m, PROM_GAUGE, "lb_connections", "client connections open", POOL_GET(sh->conns_active));
    prom_scalar(&m, PROM_COUNTER, "lb_connections_total", "client connections accepted", POOL_GET(sh->conns_total));
    prom_scalar(&m, PROM_COUNTER, "lb_requests_total", "requests routed", POOL_GET(sh->requests));
    prom_scalar(&m, PROM_COUNTER, "lb_rebalanced_total", "sticky clients whose node was gone, re-balanced",
                POOL_GET(sh->rebalanced));
    prom_family(&m, PROM_COUNTER, "lb_errors_total", "errors by kind");
    for (int e = 0; e < POOL_ERR_COUNT; e++)
        prom_u64(&m, &(struct prom_label){"kind", error_names[e]}, 1, POOL_GET(sh->errors[e]));
    local_metrics(&m, p);
    reload_metrics(&m, sh);
    node_metrics(&m, p);
}

/* GET /nodes: a line per node, "name host:port-as-written up|down ready|drain|maint address-connected-to-now
 * sessions=N tunnels=N" (this generation's open client sessions and tunnels on the node: a rolling restart waits
 * for a drained node's to reach 0). */
static void list_nodes(struct buf *b, const struct pool *p)
{
    for (int i = 0; i < p->n; i++) {
        struct net_addr addr;
        char now[80];
        pool_node_addr(p, i, &addr);
        net_addr_str(&addr, now, sizeof now);
        const struct pool_node_state *ns = &p->sh->nodes[i];
        buf_appendf(b, "%s %s %s %s %s sessions=%" PRIu64 " tunnels=%" PRIu64 "\n", p->conf->backends[i].name,
                    p->conf->backends[i].text, POOL_GET(ns->up) ? "up" : "down", admin_names[POOL_GET(ns->admin)], now,
                    POOL_GET(ns->active), POOL_GET(ns->tunnels_active));
    }
}

static void respond(struct admin_conn *c, int status, const char *reason, const struct buf *body)
{
    buf_appendf(&c->out,
                "HTTP/1.1 %d %s\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %zu\r\n"
                "Connection: close\r\n\r\n",
                status, reason, buf_len(body));
    buf_append(&c->out, buf_head(body), buf_len(body));
    c->answered = true;
}

/* POST /nodes/NAME/(drain|maint|ready) */
static int set_node_state(struct admin_conn *c, const char *path, size_t len, struct buf *body)
{
    char p[200], *slash;
    if (len >= sizeof p || len < 8)
        return 404;
    memcpy(p, path, len);
    p[len] = '\0';
    if (strncmp(p, "/nodes/", 7) != 0 || !(slash = strrchr(p + 7, '/')))
        return 404;
    *slash = '\0';
    int node = pool_by_name(c->pool, p + 7);
    int state = -1;
    for (int s = 0; s < 3; s++)
        if (strcmp(slash + 1, admin_names[s]) == 0)
            state = s;
    if (node < 0 || state < 0)
        return 404;
    POOL_SET(c->pool->sh->nodes[node].admin, (uint8_t)state);
    LOG_WARN("admin: node %s set to %s", p + 7, admin_names[state]);
    pool_panic_update(c->pool);
    buf_appendf(body, "%s %s\n", p + 7, admin_names[state]);
    return 200;
}

static void route(struct admin_conn *c, const struct http_head *h)
{
    struct buf body = {0};
    const struct pool *p = c->pool;
    struct http_target t; /* an absolute-form target (GET http://lb:9090/metrics) is routed by its path */
    if (http_target_split(h->target, h->target_len, &t) == HTTP_TARGET_BAD) {
        buf_appendf(&body, "bad request target\n");
        respond(c, 400, "Bad Request", &body);
        buf_free(&body);
        return;
    }
    const char *path = t.origin;
    size_t plen = http_path_len(path, t.origin_len);
    bool get = h->method_len == 3 && memcmp(h->method, "GET", 3) == 0;
    bool post = h->method_len == 4 && memcmp(h->method, "POST", 4) == 0;
    int status = 404;
    if (get && plen == 8 && memcmp(path, "/metrics", 8) == 0) {
        metrics(&body, p);
        status = 200;
    } else if (get && plen == 7 && memcmp(path, "/health", 7) == 0) {
        int up = 0;
        for (int i = 0; i < p->n; i++)
            up += pool_usable(p, i);
        buf_appendf(&body, "%d of %d nodes usable%s\n", up, p->n,
                    POOL_GET(p->sh->panic) ? " (panic: balancing over every node in rotation)" : "");
        status = up ? 200 : 503;
    } else if (get && plen == 6 && memcmp(path, "/nodes", 6) == 0) {
        list_nodes(&body, p);
        status = 200;
    } else if (post) {
        status = set_node_state(c, path, plen, &body);
    }
    if (status == 404 && !buf_len(&body))
        buf_appendf(&body, "not found: GET /metrics, /health, /nodes; POST /nodes/NAME/drain|maint|ready\n");
    respond(c, status, status == 200 ? "OK" : status == 503 ? "Service Unavailable" : "Not Found", &body);
    buf_free(&body);
}

static void on_conn_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct admin_conn *c = container_of(w, struct admin_conn, io);
    int err = 0;
    (void)revents;
    if (!c->answered) {
        enum io_status st = net_read(c->fd, &c->in, 4096, &err);
        if (st == IO_AGAIN)
            return;
        struct http_header hdrs[64];
        struct http_head h = {.headers = hdrs, .headers_cap = 64};
        struct http_limits lim = {.max_head = ADMIN_MAX_HEAD};
        int n = st == IO_OK ? http_parse_request(buf_head(&c->in), buf_len(&c->in), 0, &h, &lim) : -1;
        if (n == -2)
            return;
        if (n < 0) {
            conn_free(c);
            return;
        }
        route(c, &h);
        ev_io_stop(loop, w);
        ev_io_set(w, c->fd, EV_WRITE);
        ev_io_start(loop, w);
    }
    struct iovec iov = {buf_head(&c->out), buf_len(&c->out)};
    size_t written = 0;
    enum io_status st = net_writev(c->fd, &iov, 1, &written, &err);
    buf_consume(&c->out, written);
    if (st == IO_ERR || buf_len(&c->out) == 0)
        conn_free(c);
}

static void on_conn_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    conn_free(container_of(w, struct admin_conn, timer));
}

/* A connection from the listener (common/listener.h); no gate: each is answered and closed within ADMIN_TIMEOUT. */
static void on_accept(void *ctx, int fd, int index, const struct net_addr *peer)
{
    struct admin *a = ctx;
    (void)index, (void)peer;
    struct admin_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->loop = a->loop;
    c->pool = a->pool;
    c->fd = fd;
    c->in.max = ADMIN_MAX_HEAD + 4096;
    ev_io_init(&c->io, on_conn_io, fd, EV_READ);
    ev_io_start(a->loop, &c->io);
    ev_timer_init(&c->timer, on_conn_timeout, ADMIN_TIMEOUT, 0);
    ev_timer_start(a->loop, &c->timer);
}

struct admin *admin_start(struct ev_loop *loop, int lfd, struct pool *pool, char *err, size_t errlen)
{
    struct admin *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->loop = loop;
    a->pool = pool;
    a->lfd = lfd;
    struct listener_config lc = {.who = "admin", .fds = &a->lfd, .nfds = 1, .on_accept = on_accept, .ctx = a};
    if (!(a->listener = listener_start(loop, &lc, err, errlen))) {
        free(a);
        return NULL;
    }
    return a;
}

void admin_stop(struct admin *a)
{
    if (!a)
        return;
    listener_free(a->listener);
    close(a->lfd);
    free(a); /* connections in flight finish on their own */
}
