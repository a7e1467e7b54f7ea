/* lb.conf: parser and checks; see conf.h. */
#define _GNU_SOURCE
#include "lb/conf.h"

#include "common/conf.h"
#include "lb/cookie.h"
#include "lb/ring.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC INT64_C(1000000000)

void lb_conf_defaults(struct lb_conf *c)
{
    memset(c, 0, sizeof *c);
    c->balance = LB_BAL_ROUNDROBIN;
    c->sticky = LB_STICKY_NONE;
    snprintf(c->cookie_name, sizeof c->cookie_name, "SRVID");
    c->health = (struct lb_health){.enabled = true, .interval_ns = 2 * SEC, .timeout_ns = SEC, .rise = 2, .fall = 3};
    snprintf(c->health.path, sizeof c->health.path, "/");
    c->timeout_connect_ns = 5 * SEC;
    c->timeout_server_ns = 30 * SEC;
    c->timeout_client_ns = 30 * SEC;
    c->timeout_tunnel_ns = 3600 * SEC;
    c->timeout_head_ns = 10 * SEC;
    c->grace_ns = 30 * SEC;
    c->max_connections = 10000;
    c->max_head = 16384;
    c->max_headers = 100;
    c->workers = 1;
    c->retries = 1;
    c->forwarded_for = true;
    c->resolve_interval_ns = 10 * SEC;
    c->panic_threshold = 50;
}

/* "host:port" or "[v6]:port", names resolved (blocking: load time only; the master re-resolves backend names). The
 * host and the port go to hostout (hostlen bytes) and portout (6 bytes) when hostout is given. */
static int parse_endpoint(const char *text, struct net_addr *addr, char *hostout, size_t hostlen, char *portout,
                          char *err, size_t errlen)
{
    char host[300], sub[200];
    const char *colon = strrchr(text, ':');
    if (!colon || !colon[1] || strlen(text) >= sizeof host)
        return conf_fail(err, errlen, "'%s': expected host:port", text);
    size_t hlen = (size_t)(colon - text);
    const char *h = text;
    if (text[0] == '[') {
        if (colon[-1] != ']')
            return conf_fail(err, errlen, "'%s': expected [v6]:port", text);
        h++;
        hlen -= 2;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    if (hlen == 0) /* ":port": every interface */
        snprintf(host, sizeof host, "0.0.0.0");
    uint64_t port;
    if (conf_parse_uint(colon + 1, 1, 65535, &port) < 0)
        return conf_fail(err, errlen, "'%s': the port must be 1..65535", text);
    if (net_resolve(host, colon + 1, addr, sub, sizeof sub) < 0)
        return conf_fail(err, errlen, "%s", sub);
    if (hostout && strlen(host) >= hostlen)
        return conf_fail(err, errlen, "'%s': host name too long", text);
    if (hostout) {
        snprintf(hostout, hostlen, "%s", host);
        snprintf(portout, 6, "%u", (unsigned)port);
    }
    return 0;
}

/* Whether getaddrinfo reads host as an address by itself (so it can never resolve elsewhere), with the same
 * leniency as the lookup at load time ("127.1" included). */
static bool is_ip_literal(const char *host)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST}, *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return false;
    freeaddrinfo(res);
    return true;
}

/* "key=value" options after a directive's positional words. The value, or NULL when word is not key=... */
static const char *option(const char *word, const char *key)
{
    size_t n = strlen(key);
    return strncmp(word, key, n) == 0 && word[n] == '=' ? word + n + 1 : NULL;
}

static int on_listen(struct lb_listen *l, char **w, int n, char *err, size_t errlen)
{
    if (n < 2)
        return conf_fail(err, errlen, "%s: expected an address, e.g. %s 127.0.0.1:8080", w[0], w[0]);
    memset(l, 0, sizeof *l);
    snprintf(l->text, sizeof l->text, "%s", w[1]);
    if (parse_endpoint(w[1], &l->addr, NULL, 0, NULL, err, errlen) < 0)
        return -1;
    for (int i = 2; i < n; i++) {
        const char *v;
        if (strcmp(w[i], "tls") == 0)
            l->tls = true;
        else if (strcmp(w[i], "shared") == 0)
            l->shared = true;
        else if ((v = option(w[i], "cert")))
            snprintf(l->cert, sizeof l->cert, "%s", v);
        else if ((v = option(w[i], "key")))
            snprintf(l->key, sizeof l->key, "%s", v);
        else
            return conf_fail(err, errlen, "%s: unknown option '%s' (tls, cert=FILE, key=FILE, shared)", w[0], w[i]);
    }
    if (l->tls && (!l->cert[0] || !l->key[0]))
        return conf_fail(err, errlen, "%s %s: tls needs cert=FILE and key=FILE", w[0], w[1]);
    if (!l->tls && (l->cert[0] || l->key[0]))
        return conf_fail(err, errlen, "%s %s: cert/key given without tls", w[0], w[1]);
    return 0;
}

static int on_backend(struct lb_conf *c, char **w, int n, char *err, size_t errlen)
{
    if (n < 3)
        return conf_fail(err, errlen, "backend: expected NAME HOST:PORT [weight=N] [cookie=ID]");
    if (c->nbackends == LB_MAX_BACKENDS)
        return conf_fail(err, errlen, "backend: at most %d", LB_MAX_BACKENDS);
    struct lb_backend b = {.weight = 1};
    if (!cookie_node_id_valid(w[1]))
        return conf_fail(err, errlen,
                         "backend: name '%s' must be 1-%d visible characters without ';', ',', '~' or quotes", w[1],
                         LB_NAME_MAX);
    snprintf(b.name, sizeof b.name, "%s", w[1]);
    snprintf(b.cookie, sizeof b.cookie, "%s", w[1]);
    snprintf(b.text, sizeof b.text, "%s", w[2]);
    if (parse_endpoint(w[2], &b.addr, b.host, sizeof b.host, b.port, err, errlen) < 0)
        return -1;
    b.by_name = !is_ip_literal(b.host);
    for (int i = 3; i < n; i++) {
        const char *v;
        uint64_t weight;
        if ((v = option(w[i], "weight"))) {
            if (conf_parse_uint(v, 0, RING_MAX_WEIGHT, &weight) < 0)
                return conf_fail(err, errlen, "backend %s: weight must be 0..%d, got '%s'", b.name, RING_MAX_WEIGHT, v);
            b.weight = (uint32_t)weight;
        } else if ((v = option(w[i], "cookie"))) {
            if (!cookie_node_id_valid(v))
                return conf_fail(err, errlen, "backend %s: bad cookie id '%s'", b.name, v);
            snprintf(b.cookie, sizeof b.cookie, "%s", v);
        } else {
            return conf_fail(err, errlen, "backend %s: unknown option '%s' (weight=N, cookie=ID)", b.name, w[i]);
        }
    }
    c->backends[c->nbackends++] = b;
    return 0;
}

static int on_balance(struct lb_conf *c, char **w, int n, char *err, size_t errlen)
{
    if (n != 2)
        return conf_fail(err, errlen, "balance: expected one of roundrobin, leastconn, source, param:NAME");
    if (strcmp(w[1], "roundrobin") == 0)
        c->balance = LB_BAL_ROUNDROBIN;
    else if (strcmp(w[1], "leastconn") == 0)
        c->balance = LB_BAL_LEASTCONN;
    else if (strcmp(w[1], "source") == 0)
        c->balance = LB_BAL_SOURCE;
    else if (strncmp(w[1], "param:", 6) == 0 && w[1][6] && strlen(w[1] + 6) <= LB_NAME_MAX) {
        c->balance = LB_BAL_PARAM;
        snprintf(c->balance_param, sizeof c->balance_param, "%s", w[1] + 6);
    } else
        return conf_fail(err, errlen, "balance: '%s' is not roundrobin, leastconn, source or param:NAME", w[1]);
    return 0;
}

static int on_sticky(struct lb_conf *c, char **w, int n, char *err, size_t errlen)
{
    if (n != 2)
        return conf_fail(err, errlen, "sticky: expected one of cookie[:NAME], prefix:NAME, source, none");
    const char *name = NULL;
    if (strcmp(w[1], "none") == 0)
        c->sticky = LB_STICKY_NONE;
    else if (strcmp(w[1], "source") == 0)
        c->sticky = LB_STICKY_SOURCE;
    else if (strcmp(w[1], "cookie") == 0)
        c->sticky = LB_STICKY_COOKIE;
    else if (strncmp(w[1], "cookie:", 7) == 0)
        c->sticky = LB_STICKY_COOKIE, name = w[1] + 7;
    else if (strncmp(w[1], "prefix:", 7) == 0)
        c->sticky = LB_STICKY_PREFIX, name = w[1] + 7;
    else
        return conf_fail(err, errlen, "sticky: '%s' is not cookie[:NAME], prefix:NAME, source or none", w[1]);
    if (name && !cookie_name_valid(name))
        return conf_fail(err, errlen, "sticky: '%s' is not a valid cookie name", name);
    if (name)
        snprintf(c->cookie_name, sizeof c->cookie_name, "%s", name);
    return 0;
}

static int on_health_option(struct lb_health *h, const char *word, char *err, size_t errlen)
{
    const char *v;
    uint64_t u;
    char sub[160];
    if ((v = option(word, "path"))) {
        if (v[0] != '/' || strlen(v) >= sizeof h->path || strpbrk(v, " \t\r\n"))
            return conf_fail(err, errlen, "health: path must start with '/', got '%s'", v);
        snprintf(h->path, sizeof h->path, "%s", v);
    } else if ((v = option(word, "interval")) || (v = option(word, "timeout"))) {
        int64_t ns;
        if (conf_parse_duration(v, &ns, sub, sizeof sub) < 0)
            return conf_fail(err, errlen, "health: %.*s: %s", (int)(v - word - 1), word, sub);
        if (ns <= 0)
            return conf_fail(err, errlen, "health: %.*s must be more than 0", (int)(v - word - 1), word);
        *(word[0] == 'i' ? &h->interval_ns : &h->timeout_ns) = ns; /* only a valid value replaces the old one */
    } else if ((v = option(word, "rise")) || (v = option(word, "fall"))) {
        if (conf_parse_uint(v, 1, 100, &u) < 0)
            return conf_fail(err, errlen, "health: %.4s must be 1..100, got '%s'", word, v);
        *(word[0] == 'r' ? &h->rise : &h->fall) = (uint32_t)u;
    } else {
        return conf_fail(err, errlen, "health: unknown option '%s' (path=, interval=, timeout=, rise=, fall=, or off)",
                         word);
    }
    return 0;
}

static int on_health(struct lb_conf *c, char **w, int n, char *err, size_t errlen)
{
    if (n == 2 && strcmp(w[1], "off") == 0) {
        c->health.enabled = false;
        return 0;
    }
    c->health.enabled = true;
    for (int i = 1; i < n; i++)
        if (on_health_option(&c->health, w[i], err, errlen) < 0)
            return -1;
    return 0;
}

static int on_timeout(struct lb_conf *c, char **w, int n, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        size_t off;
    } kinds[] = {{"connect", offsetof(struct lb_conf, timeout_connect_ns)},
                 {"server", offsetof(struct lb_conf, timeout_server_ns)},
                 {"client", offsetof(struct lb_conf, timeout_client_ns)},
                 {"tunnel", offsetof(struct lb_conf, timeout_tunnel_ns)},
                 {"head", offsetof(struct lb_conf, timeout_head_ns)},
                 {"grace", offsetof(struct lb_conf, grace_ns)}};
    char sub[160];
    if (n != 3)
        return conf_fail(err, errlen, "timeout: expected KIND DURATION, e.g. timeout tunnel 1h");
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        if (strcmp(w[1], kinds[i].name) != 0)
            continue;
        int64_t ns;
        if (conf_parse_duration(w[2], &ns, sub, sizeof sub) < 0)
            return conf_fail(err, errlen, "timeout %s: %s", w[1], sub);
        if (ns <= 0)
            return conf_fail(err, errlen, "timeout %s: must be more than 0", w[1]);
        memcpy((char *)c + kinds[i].off, &ns, sizeof ns);
        return 0;
    }
    return conf_fail(err, errlen, "timeout: unknown kind '%s' (connect, server, client, tunnel, head, grace)", w[1]);
}

static int on_resolve_interval(struct lb_conf *c, char **w, int n, char *err, size_t errlen)
{
    char sub[160];
    int64_t ns;
    if (n != 2)
        return conf_fail(err, errlen, "resolve-interval: expected a duration or off, e.g. resolve-interval 10s");
    if (strcmp(w[1], "off") == 0) {
        c->resolve_interval_ns = 0;
        return 0;
    }
    if (conf_parse_duration(w[1], &ns, sub, sizeof sub) < 0)
        return conf_fail(err, errlen, "resolve-interval: %s, or off", sub);
    if (ns <= 0)
        return conf_fail(err, errlen, "resolve-interval: must be more than 0 (or off)");
    c->resolve_interval_ns = ns;
    return 0;
}

static int on_number(struct lb_conf *c, char **w, int n, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        uint64_t lo, hi;
        size_t off;
    } nums[] = {{"max-connections", 1, LB_MAX_CONNECTIONS, offsetof(struct lb_conf, max_connections)},
                {"max-headers", 1, 1000, offsetof(struct lb_conf, max_headers)},
                {"workers", 1, 64, offsetof(struct lb_conf, workers)},
                {"retries", 0, 10, offsetof(struct lb_conf, retries)}};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        if (strcmp(w[0], nums[i].name) != 0)
            continue;
        uint64_t v;
        if (n != 2 || conf_parse_uint(w[1], nums[i].lo, nums[i].hi, &v) < 0)
            return conf_fail(err, errlen, "%s: expected a whole number from %llu to %llu", w[0],
                             (unsigned long long)nums[i].lo, (unsigned long long)nums[i].hi);
        uint32_t v32 = (uint32_t)v;
        memcpy((char *)c + nums[i].off, &v32, sizeof v32);
        c->max_connections_set |= nums[i].off == offsetof(struct lb_conf, max_connections);
        return 0;
    }
    return 1; /* not a number directive */
}

/* source ADDR or source A-B (IPv4, at most LB_MAX_SOURCES addresses): numeric, no port. */
static int on_source(struct lb_conf *c, char **w, int n, char *err, size_t errlen)
{
    static const char usage[] = "source: expected an address or an IPv4 range, e.g. source 127.0.1.1-127.0.1.8";
    char first[64], text[80];
    if (n != 2 || strlen(w[1]) >= sizeof first)
        return conf_fail(err, errlen, usage);
    snprintf(first, sizeof first, "%s", w[1]);
    char *dash = strchr(first, '-');
    if (dash)
        *dash = '\0';
    bool v6 = strchr(first, ':') != NULL;
    snprintf(text, sizeof text, v6 ? "[%s]:1" : "%s:1", first); /* the parser wants a port; bind takes any */
    char perr[128];
    if (net_parse_addr(text, &c->source, perr, sizeof perr) < 0)
        return conf_fail(err, errlen, "source: '%s' is not an IP address", first);
    if (v6)
        ((struct sockaddr_in6 *)&c->source.ss)->sin6_port = 0;
    else
        ((struct sockaddr_in *)&c->source.ss)->sin_port = 0;
    c->nsources = 1;
    if (!dash)
        return 0;
    struct in_addr lo, hi;
    if (v6 || inet_pton(AF_INET, first, &lo) != 1 || inet_pton(AF_INET, dash + 1, &hi) != 1 ||
        ntohl(hi.s_addr) < ntohl(lo.s_addr) || ntohl(hi.s_addr) - ntohl(lo.s_addr) >= LB_MAX_SOURCES)
        return conf_fail(err, errlen, "source: '%s' is not an IPv4 range of 1 to %d addresses, low-high", w[1],
                         LB_MAX_SOURCES);
    c->nsources = ntohl(hi.s_addr) - ntohl(lo.s_addr) + 1;
    return 0;
}

/* panic-threshold 50 or 50%: a percentage, 0 (off) to 100. */
static int on_panic_threshold(struct lb_conf *c, char **w, int n, char *err, size_t errlen)
{
    char num[16];
    uint64_t v;
    size_t len = n == 2 ? strlen(w[1]) : 0;
    if (len > 0 && w[1][len - 1] == '%')
        len--;
    if (n != 2 || len == 0 || len >= sizeof num)
        return conf_fail(err, errlen, "panic-threshold: expected a percentage from 0 (off) to 100, e.g. 50");
    memcpy(num, w[1], len);
    num[len] = '\0';
    if (conf_parse_uint(num, 0, 100, &v) < 0)
        return conf_fail(err, errlen, "panic-threshold: '%s' is not a percentage from 0 (off) to 100", w[1]);
    c->panic_threshold = (uint32_t)v;
    return 0;
}

static int on_switch(bool *flag, char **w, int n, char *err, size_t errlen)
{
    if (n != 2 || (strcmp(w[1], "on") != 0 && strcmp(w[1], "off") != 0))
        return conf_fail(err, errlen, "%s: expected on or off", w[0]);
    *flag = strcmp(w[1], "on") == 0;
    return 0;
}

int lb_conf_directive(struct lb_conf *c, char **w, int n, char *err, size_t errlen)
{
    const char *d = w[0];
    if (strcmp(d, "listen") == 0) {
        if (c->nlistens == LB_MAX_LISTENS)
            return conf_fail(err, errlen, "listen: at most %d", LB_MAX_LISTENS);
        if (on_listen(&c->listens[c->nlistens], w, n, err, errlen) < 0)
            return -1;
        c->nlistens++;
        return 0;
    }
    if (strcmp(d, "admin") == 0) {
        if (on_listen(&c->admin, w, n, err, errlen) < 0)
            return -1;
        c->has_admin = true;
        return 0;
    }
    if (strcmp(d, "backend") == 0)
        return on_backend(c, w, n, err, errlen);
    if (strcmp(d, "balance") == 0)
        return on_balance(c, w, n, err, errlen);
    if (strcmp(d, "sticky") == 0)
        return on_sticky(c, w, n, err, errlen);
    if (strcmp(d, "health") == 0)
        return on_health(c, w, n, err, errlen);
    if (strcmp(d, "timeout") == 0)
        return on_timeout(c, w, n, err, errlen);
    if (strcmp(d, "forwarded-for") == 0)
        return on_switch(&c->forwarded_for, w, n, err, errlen);
    if (strcmp(d, "proxy-protocol") == 0)
        return on_switch(&c->proxy_protocol, w, n, err, errlen);
    if (strcmp(d, "abort-on-close") == 0)
        return on_switch(&c->abort_on_close, w, n, err, errlen);
    if (strcmp(d, "log-requests") == 0)
        return on_switch(&c->log_requests, w, n, err, errlen);
    if (strcmp(d, "share-port") == 0)
        return on_switch(&c->share_port, w, n, err, errlen);
    if (strcmp(d, "resolve-interval") == 0)
        return on_resolve_interval(c, w, n, err, errlen);
    if (strcmp(d, "panic-threshold") == 0)
        return on_panic_threshold(c, w, n, err, errlen);
    if (strcmp(d, "source") == 0)
        return on_source(c, w, n, err, errlen);
    if (strcmp(d, "max-head") == 0) {
        if (n != 2 || conf_parse_bytes(w[1], &c->max_head) < 0 || c->max_head < 1024 || c->max_head > (1u << 20))
            return conf_fail(err, errlen, "max-head: expected a size from 1k to 1m, e.g. 16k");
        return 0;
    }
    int rc = on_number(c, w, n, err, errlen);
    if (rc <= 0)
        return rc;
    return conf_fail(err, errlen, "unknown directive '%s'", d);
}

static int add_error(struct lb_conf_error *errs, int maxerrs, int nerrs, int line, const char *msg)
{
    if (nerrs < maxerrs) {
        errs[nerrs].line = line;
        snprintf(errs[nerrs].msg, sizeof errs[nerrs].msg, "%s", msg);
    }
    return nerrs + 1;
}

int lb_conf_apply_text(const char *text, struct lb_conf *c, struct lb_conf_error *errs, int maxerrs, int nerrs)
{
    int lineno = 0;
    for (const char *p = text; *p;) {
        size_t len = strcspn(p, "\n");
        char line[1024], err[200], *words[CONF_MAX_WORDS];
        lineno++;
        if (len >= sizeof line) {
            nerrs = add_error(errs, maxerrs, nerrs, lineno, "line longer than 1023 bytes");
        } else {
            memcpy(line, p, len);
            line[len] = '\0';
            int n = conf_split(line, words, CONF_MAX_WORDS);
            if (n < 0)
                nerrs = add_error(errs, maxerrs, nerrs, lineno, "too many words on one line");
            else if (n > 0 && lb_conf_directive(c, words, n, err, sizeof err) < 0)
                nerrs = add_error(errs, maxerrs, nerrs, lineno, err);
        }
        p += len + (p[len] == '\n');
    }
    return nerrs;
}

int lb_conf_parse(const char *text, struct lb_conf *c, struct lb_conf_error *errs, int maxerrs)
{
    lb_conf_defaults(c);
    int nerrs = lb_conf_apply_text(text, c, errs, maxerrs, 0);
    return lb_conf_check(c, errs, maxerrs, nerrs);
}

static bool same_addr(const struct net_addr *a, const struct net_addr *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

int lb_conf_check(const struct lb_conf *c, struct lb_conf_error *errs, int maxerrs, int nerrs)
{
    char msg[200];
    if (c->nlistens == 0)
        nerrs = add_error(errs, maxerrs, nerrs, 0, "no listen address (e.g. listen 127.0.0.1:8080)");
    if (c->nbackends == 0)
        nerrs = add_error(errs, maxerrs, nerrs, 0, "no backend (e.g. backend n1 127.0.0.1:9001)");
    for (int i = 0; i < c->nbackends; i++) {
        for (int j = 0; j < i; j++) {
            if (strcmp(c->backends[i].name, c->backends[j].name) == 0) {
                snprintf(msg, sizeof msg, "backend name '%s' used twice", c->backends[i].name);
                nerrs = add_error(errs, maxerrs, nerrs, 0, msg);
            } else if (strcmp(c->backends[i].cookie, c->backends[j].cookie) == 0) {
                snprintf(msg, sizeof msg, "backends %s and %s share the cookie id '%s'", c->backends[j].name,
                         c->backends[i].name, c->backends[i].cookie);
                nerrs = add_error(errs, maxerrs, nerrs, 0, msg);
            }
        }
    }
    for (int i = 0; c->has_admin && i < c->nlistens; i++)
        if (same_addr(&c->admin.addr, &c->listens[i].addr))
            nerrs = add_error(errs, maxerrs, nerrs, 0, "the admin address is also a listen address");
    if (c->health.enabled && c->health.timeout_ns >= c->health.interval_ns)
        nerrs = add_error(errs, maxerrs, nerrs, 0, "health: timeout must be shorter than interval");
    for (int i = 0; c->nsources && i < c->nbackends; i++)
        if (c->backends[i].addr.ss.ss_family != c->source.ss.ss_family) {
            snprintf(msg, sizeof msg, "source: backend %s is %s, the source address is not", c->backends[i].name,
                     c->backends[i].addr.ss.ss_family == AF_INET6 ? "IPv6" : "IPv4");
            nerrs = add_error(errs, maxerrs, nerrs, 0, msg);
        }
    return nerrs;
}

uint32_t lb_conf_fd_max_connections(uint64_t nofile, uint32_t workers)
{
    uint64_t per_worker = nofile > LB_FD_RESERVE ? (nofile - LB_FD_RESERVE) / LB_FDS_PER_CONN : 0;
    uint64_t total = (per_worker ? per_worker : 1) * workers;
    return total < LB_MAX_CONNECTIONS ? (uint32_t)total : LB_MAX_CONNECTIONS;
}

void lb_conf_fit_descriptors(struct lb_conf *c, uint64_t nofile, char *warn, size_t warnlen)
{
    uint32_t fits = lb_conf_fd_max_connections(nofile, c->workers);
    warn[0] = '\0';
    if (!c->max_connections_set) {
        c->max_connections = fits;
        return;
    }
    uint64_t share = (c->max_connections + c->workers - 1) / c->workers;
    uint64_t need = share * LB_FDS_PER_CONN + LB_FD_RESERVE;
    if (need <= nofile)
        return;
    snprintf(
        warn, warnlen,
        "max-connections %u does not fit the open-files limit %llu: %u worker(s) x %llu connections x %d "
        "descriptors + %d reserved need %llu per worker; past the limit requests get 503 and new connections wait. "
        "Raise the limit (ulimit -n %llu), add workers, or set max-connections %u or less (the default derives it)",
        c->max_connections, (unsigned long long)nofile, c->workers, (unsigned long long)share, LB_FDS_PER_CONN,
        LB_FD_RESERVE, (unsigned long long)need, (unsigned long long)need, fits);
}
