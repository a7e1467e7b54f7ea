/* loadgen's command line; see opts.h. Every value is parsed strictly (no sign, no trailing junk, no overflow) and
 * every error names the option and the value, so a typo never turns into a silently different test. */
#define _GNU_SOURCE
#include "loadgen/opts.h"

#include "common/conf.h"
#include "common/jscan.h"
#include "loadgen/payload.h"
#include "loadgen/sio.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MAX_CLIENTS 10000000u
#define MAX_ROUNDS  1000000u /* --duration / --interval: each round keeps its counts (result.h) */
#define MAX_PAYLOAD (16u << 20)
#define MAX_CHURN   100000u

#define CLOSE_TIMEOUT_NS (2 * INT64_C(1000000000))

static int parse_uint(const char *opt, const char *s, uint64_t lo, uint64_t hi, uint64_t *out, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    unsigned long long v = isdigit((unsigned char)s[0]) ? strtoull(s, &end, 10) : 0;
    if (!isdigit((unsigned char)s[0]) || *end || errno || v < lo || v > hi)
        return conf_fail(err, errlen, "%s: expected a whole number from %llu to %llu, got '%s'", opt,
                         (unsigned long long)lo, (unsigned long long)hi, s);
    *out = v;
    return 0;
}

static int parse_u32(const char *opt, const char *s, uint64_t lo, uint64_t hi, uint32_t *out, char *err, size_t errlen)
{
    uint64_t v;
    if (parse_uint(opt, s, lo, hi, &v, err, errlen) < 0)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int lg_parse_ratio(const char *s, double *ratio, char *err, size_t errlen)
{
    double v;
    const char *rest;
    if (conf_parse_number(s, &v, &rest) < 0 || (*rest && strcmp(rest, "%") != 0))
        return conf_fail(err, errlen, "'%s' is not a ratio (e.g. 0.01 or 1%%)", s);
    if (*rest)
        v /= 100;
    if (v > 1)
        return conf_fail(err, errlen, "'%s' is over 100%%", s);
    *ratio = v;
    return 0;
}

/* ---- thresholds ---- */

static int parse_stat(const char *s, size_t n, struct lg_threshold *t)
{
    if (n == 3 && !strncmp(s, "min", 3))
        t->stat = TH_STAT_MIN;
    else if (n == 4 && !strncmp(s, "mean", 4))
        t->stat = TH_STAT_MEAN;
    else if (n == 3 && !strncmp(s, "max", 3))
        t->stat = TH_STAT_MAX;
    else if (n >= 2 && s[0] == 'p') {
        char num[32];
        const char *end;
        if (n - 1 >= sizeof num)
            return -1;
        memcpy(num, s + 1, n - 1);
        num[n - 1] = '\0';
        if (conf_parse_number(num, &t->pct, &end) < 0 || *end || t->pct <= 0 || t->pct >= 100)
            return -1;
        t->stat = TH_STAT_PCT;
    } else {
        return -1;
    }
    return 0;
}

/* The metric before the operator: "p99", "latency.p99.9", "connect.max", "errors", "delivery". */
static int parse_metric(const char *s, size_t n, struct lg_threshold *t)
{
    static const struct {
        const char *prefix;
        enum lg_th_metric metric;
    } prefixes[] = {{"latency.", TH_LATENCY}, {"connect.", TH_CONNECT}, {"handshake.", TH_HANDSHAKE}, {"ack.", TH_ACK}};
    if ((n == 6 && !strncmp(s, "errors", 6)) || (n == 8 && !strncmp(s, "delivery", 8)) ||
        (n == 6 && !strncmp(s, "missed", 6))) {
        t->metric = s[0] == 'e' ? TH_ERRORS : s[0] == 'd' ? TH_DELIVERY : TH_MISSED;
        t->stat = TH_STAT_RATIO;
        return 0;
    }
    t->metric = TH_LATENCY;
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        size_t pl = strlen(prefixes[i].prefix);
        if (n > pl && !strncmp(s, prefixes[i].prefix, pl)) {
            t->metric = prefixes[i].metric;
            s += pl;
            n -= pl;
            break;
        }
    }
    return parse_stat(s, n, t);
}

int lg_parse_threshold(const char *s, struct lg_threshold *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    if (strlen(s) >= sizeof t->text)
        return conf_fail(err, errlen, "threshold '%.40s...' is too long", s);
    snprintf(t->text, sizeof t->text, "%s", s);
    char buf[64];
    size_t n = 0;
    for (const char *p = s; *p; p++) /* spaces are allowed anywhere ("p99 < 50ms"): drop them */
        if (*p != ' ')
            buf[n++] = *p;
    buf[n] = '\0';
    size_t op = strcspn(buf, "<>");
    if (!buf[op])
        return conf_fail(err, errlen, "threshold '%s': expected METRIC<VALUE, e.g. p99<50ms or errors<1%%", s);
    bool eq = buf[op + 1] == '=';
    t->op = buf[op] == '<' ? (eq ? TH_LE : TH_LT) : (eq ? TH_GE : TH_GT);
    const char *value = buf + op + 1 + eq;
    if (op == 0 || parse_metric(buf, op, t) < 0)
        return conf_fail(
            err, errlen,
            "threshold '%s': unknown metric '%.*s' (pN, min, mean, max with an optional latency., connect., "
            "handshake. or ack. prefix; errors; delivery)",
            s, (int)op, buf);
    char sub[160];
    if (t->stat == TH_STAT_RATIO) {
        if (lg_parse_ratio(value, &t->value, sub, sizeof sub) < 0)
            return conf_fail(err, errlen, "threshold '%s': %s", s, sub);
        return 0;
    }
    int64_t ns;
    if (conf_parse_duration(value, &ns, sub, sizeof sub) < 0)
        return conf_fail(err, errlen, "threshold '%s': latency needs a duration with a unit, e.g. 50ms (%s)", s, sub);
    t->value = (double)ns;
    return 0;
}

/* ---- sources ---- */

static int append_source(struct net_addr **list, uint32_t *n, const struct net_addr *a, char *err, size_t errlen)
{
    if (*n >= LG_MAX_SOURCES)
        return conf_fail(err, errlen, "--source: more than %d addresses", LG_MAX_SOURCES);
    if ((*n & (*n - 1)) == 0) { /* grow at powers of two */
        struct net_addr *grown = realloc(*list, (*n ? *n * 2 : 1) * sizeof *grown);
        if (!grown)
            return conf_fail(err, errlen, "--source: out of memory");
        *list = grown;
    }
    (*list)[(*n)++] = *a;
    return 0;
}

static int parse_one_source(const char *item, struct net_addr **list, uint32_t *n, char *err, size_t errlen)
{
    char first[64], last[64];
    const char *dash = strchr(item, '-');
    size_t flen = dash ? (size_t)(dash - item) : strlen(item);
    if (flen == 0 || flen >= sizeof first || (dash && strlen(dash + 1) >= sizeof last))
        return conf_fail(err, errlen, "--source: bad address '%s'", item);
    memcpy(first, item, flen);
    first[flen] = '\0';
    struct net_addr a = {0};
    struct sockaddr_in *v4 = (struct sockaddr_in *)&a.ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&a.ss;
    if (!dash && inet_pton(AF_INET6, first, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        a.len = sizeof *v6;
        return append_source(list, n, &a, err, errlen);
    }
    struct in_addr lo, hi;
    if (inet_pton(AF_INET, first, &lo) != 1)
        return conf_fail(err, errlen, "--source: '%s' is not an IPv4 or IPv6 address", first);
    hi = lo;
    if (dash && inet_pton(AF_INET, strcpy(last, dash + 1), &hi) != 1)
        return conf_fail(err, errlen, "--source: '%s' is not an IPv4 address", dash + 1);
    uint32_t from = ntohl(lo.s_addr), to = ntohl(hi.s_addr);
    if (to < from)
        return conf_fail(err, errlen, "--source: range '%s' ends before it starts", item);
    if ((uint64_t)to - from + 1 + *n > LG_MAX_SOURCES)
        return conf_fail(err, errlen, "--source: more than %d addresses", LG_MAX_SOURCES);
    for (uint64_t ip = from; ip <= to; ip++) {
        v4->sin_family = AF_INET;
        v4->sin_addr.s_addr = htonl((uint32_t)ip);
        a.len = sizeof *v4;
        if (append_source(list, n, &a, err, errlen) < 0)
            return -1;
    }
    return 0;
}

int lg_parse_sources(const char *s, struct net_addr **list, uint32_t *n, char *err, size_t errlen)
{
    char item[160];
    for (const char *p = s;;) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof item)
            return conf_fail(err, errlen, "--source: bad list '%s'", s);
        memcpy(item, p, len);
        item[len] = '\0';
        if (parse_one_source(item, list, n, err, errlen) < 0)
            return -1;
        if (!p[len])
            return 0;
        p += len + 1;
    }
}

/* ---- URLs ---- */

static int split_authority(const char *url, const char *auth, size_t alen, struct lg_target *t, char *err,
                           size_t errlen)
{
    const char *port = NULL;
    size_t hlen;
    if (memchr(auth, '@', alen))
        return conf_fail(err, errlen, "URL '%s': user:password@ is not supported (use -H 'Authorization: ...')", url);
    if (alen && auth[0] == '[') {
        const char *close = memchr(auth, ']', alen);
        if (!close)
            return conf_fail(err, errlen, "URL '%s': unclosed '[' in the host", url);
        hlen = (size_t)(close - auth) - 1;
        if (close + 1 < auth + alen) {
            if (close[1] != ':')
                return conf_fail(err, errlen, "URL '%s': junk after ']'", url);
            port = close + 2;
        }
        memcpy(t->host, auth + 1, hlen < sizeof t->host ? hlen : 0);
    } else {
        const char *colon = memchr(auth, ':', alen);
        hlen = colon ? (size_t)(colon - auth) : alen;
        port = colon ? colon + 1 : NULL;
        if (hlen < sizeof t->host)
            memcpy(t->host, auth, hlen);
    }
    if (hlen == 0 || hlen >= sizeof t->host)
        return conf_fail(err, errlen, "URL '%s': %s host", url, hlen ? "too long a" : "no");
    t->host[hlen] = '\0';
    size_t plen = port ? (size_t)(auth + alen - port) : 0;
    uint64_t pv = t->tls ? 443 : 80;
    if (port) {
        char pbuf[8], sub[120];
        if (plen == 0 || plen >= sizeof pbuf)
            return conf_fail(err, errlen, "URL '%s': bad port", url);
        memcpy(pbuf, port, plen);
        pbuf[plen] = '\0';
        if (parse_uint("port", pbuf, 1, 65535, &pv, sub, sizeof sub) < 0)
            return conf_fail(err, errlen, "URL '%s': %s", url, sub);
    }
    snprintf(t->port, sizeof t->port, "%u", (unsigned)pv);
    bool v6 = strchr(t->host, ':') != NULL, dflt = pv == (t->tls ? 443u : 80u);
    snprintf(t->host_header, sizeof t->host_header, "%s%s%s%s%s", v6 ? "[" : "", t->host, v6 ? "]" : "",
             dflt ? "" : ":", dflt ? "" : t->port);
    return 0;
}

int lg_parse_url(const char *url, struct lg_target *t, bool resolve, char *err, size_t errlen)
{
    static const struct {
        const char *scheme;
        bool tls;
    } schemes[] = {{"ws://", false}, {"wss://", true}, {"http://", false}, {"https://", true}};
    memset(t, 0, sizeof *t);
    if (strlen(url) >= sizeof t->url)
        return conf_fail(err, errlen, "URL '%.60s...' is too long", url);
    snprintf(t->url, sizeof t->url, "%s", url);
    const char *rest = NULL;
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0] && !rest; i++) {
        size_t n = strlen(schemes[i].scheme);
        if (!strncasecmp(url, schemes[i].scheme, n)) {
            rest = url + n;
            t->tls = schemes[i].tls;
        }
    }
    if (!rest)
        return conf_fail(err, errlen, "URL '%s': expected ws:// or wss://", url);
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 127 || *p == '#')
            return conf_fail(err, errlen, "URL '%s': %s", url,
                             *p == '#' ? "a #fragment is not sent to servers" : "control character or space");
    size_t alen = strcspn(rest, "/?");
    if (split_authority(url, rest, alen, t, err, errlen) < 0)
        return -1;
    const char *path = rest + alen;
    if (strlen(path) + 2 > sizeof t->path)
        return conf_fail(err, errlen, "URL '%s': path too long", url);
    snprintf(t->path, sizeof t->path, "%s%s", path[0] == '/' ? "" : "/", path);
    if (!resolve)
        return 0;
    char sub[200];
    if (net_resolve(t->host, t->port, &t->addr, sub, sizeof sub) < 0)
        return conf_fail(err, errlen, "URL '%s': %s", url, sub);
    return 0;
}

int lg_socketio_path(struct lg_target *t, bool polling, char *err, size_t errlen)
{
    const char *eio = polling ? "EIO=4&transport=polling" : "EIO=4&transport=websocket";
    char path[sizeof t->path];
    size_t plen = strcspn(t->path, "?");
    const char *query = t->path + plen;
    bool bare = plen == 1; /* "/": the URL named no path */
    int n = snprintf(path, sizeof path, "%.*s%s%s%s%s", (int)plen, t->path, bare ? "socket.io/" : "",
                     *query ? query : "?", *query && query[1] ? "&" : "", eio);
    if (n < 0 || (size_t)n >= sizeof path)
        return conf_fail(err, errlen, "URL '%s': path too long", t->url);
    memcpy(t->path, path, (size_t)n + 1);
    return 0;
}

uint32_t lg_room_count(const struct lg_opts *o)
{
    return o->spectators ? o->rooms + 1 : o->rooms;
}

uint32_t lg_room_index(const struct lg_opts *o, uint32_t client)
{
    uint32_t k = o->rooms, s = o->spectators;
    if (!s)
        return client % k;
    if (client == 0)
        return 0; /* the publisher */
    if (client <= k)
        return client; /* one per small room first, so the first K+1 emitters cover every room */
    if (client < k + s)
        return 0; /* the watchers */
    return 1 + (client - k - s) % k;
}

void lg_client_room(const struct lg_opts *o, uint32_t client, char *out, size_t outlen)
{
    if (lg_room_count(o) > 1)
        snprintf(out, outlen, "%s-%u", o->room ? o->room : "room", lg_room_index(o, client));
    else
        snprintf(out, outlen, "%s", o->room ? o->room : "");
}

const struct net_addr *lg_client_source(const struct lg_opts *o, uint32_t client)
{
    if (!o->nsources)
        return NULL;
    uint32_t nth = o->ntargets > 1 ? client / (uint32_t)o->ntargets : client; /* its rank among its URL's clients */
    return &o->sources[nth % o->nsources];
}

int lg_request_target(const struct lg_target *t, const char *param, const char *room, char *out, size_t outlen)
{
    size_t n = strlen(t->path);
    if (n + 1 > outlen)
        return -1;
    memcpy(out, t->path, n + 1);
    if (!room[0])
        return 0;
    int w = snprintf(out + n, outlen - n, "%c%s=", strchr(t->path, '?') ? '&' : '?', param);
    if (w < 0 || (size_t)w >= outlen - n)
        return -1;
    n += (size_t)w;
    for (const unsigned char *p = (const unsigned char *)room; *p; p++) {
        bool plain = isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~';
        if (n + (plain ? 1 : 3) + 1 > outlen)
            return -1;
        if (plain)
            out[n++] = (char)*p;
        else
            n += (size_t)snprintf(out + n, outlen - n, "%%%02X", *p);
    }
    out[n] = '\0';
    return 0;
}

/* ---- the command line ---- */

enum {
    OPT_CONNECT_RATE = 256,
    OPT_MAX_INFLIGHT,
    OPT_CONNECT_TIMEOUT,
    OPT_DEADLINE,
    OPT_BINARY,
    OPT_ECHO,
    OPT_ROOM,
    OPT_ROOMS,
    OPT_SPECTATORS,
    OPT_ROOM_PARAM,
    OPT_NODE_HEADER,
    OPT_COOKIE,
    OPT_CLOSE_TIMEOUT,
    OPT_HLOG,
    OPT_JUNIT,
    OPT_SOURCE,
    OPT_INSECURE,
    OPT_CACERT,
    OPT_PROTOCOL,
    OPT_TRANSPORT,
    OPT_NAMESPACE,
    OPT_AUTH,
    OPT_EVENT,
    OPT_EXPECT,
    OPT_NO_UPGRADE,
    OPT_ACK,
    OPT_HOLD,
    OPT_CHURN,
    OPT_CHURN_GAP,
    OPT_PROGRESS,
    OPT_PLAN,
    OPT_RECONNECT,
    OPT_RECONNECT_DELAY,
    OPT_RECONNECT_DELAY_MAX,
    OPT_RECONNECT_JITTER,
    OPT_RECONNECT_ATTEMPTS,
    OPT_SEND,
    OPT_FIND,
    OPT_ON_OPEN,
    OPT_DURATION,
};

static const struct option long_opts[] = {
    {"clients", required_argument, NULL, 'c'},
    {"connect-rate", required_argument, NULL, OPT_CONNECT_RATE},
    {"max-inflight", required_argument, NULL, OPT_MAX_INFLIGHT},
    {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
    {"rounds", required_argument, NULL, 'r'},
    {"interval", required_argument, NULL, 'i'},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"deadline", required_argument, NULL, OPT_DEADLINE},
    {"emitters", required_argument, NULL, 'e'},
    {"payload", required_argument, NULL, 's'},
    {"binary", no_argument, NULL, OPT_BINARY},
    {"echo", no_argument, NULL, OPT_ECHO},
    {"churn", required_argument, NULL, OPT_CHURN},
    {"churn-gap", required_argument, NULL, OPT_CHURN_GAP},
    {"reconnect", no_argument, NULL, OPT_RECONNECT},
    {"reconnect-delay", required_argument, NULL, OPT_RECONNECT_DELAY},
    {"reconnect-delay-max", required_argument, NULL, OPT_RECONNECT_DELAY_MAX},
    {"reconnect-jitter", required_argument, NULL, OPT_RECONNECT_JITTER},
    {"reconnect-attempts", required_argument, NULL, OPT_RECONNECT_ATTEMPTS},
    {"room", required_argument, NULL, OPT_ROOM},
    {"rooms", required_argument, NULL, OPT_ROOMS},
    {"spectators", required_argument, NULL, OPT_SPECTATORS},
    {"room-param", required_argument, NULL, OPT_ROOM_PARAM},
    {"node-header", required_argument, NULL, OPT_NODE_HEADER},
    {"cookie", required_argument, NULL, OPT_COOKIE},
    {"workers", required_argument, NULL, 'w'},
    {"close-timeout", required_argument, NULL, OPT_CLOSE_TIMEOUT},
    {"hold", required_argument, NULL, OPT_HOLD},
    {"out", required_argument, NULL, 'o'},
    {"hlog", required_argument, NULL, OPT_HLOG},
    {"junit", required_argument, NULL, OPT_JUNIT},
    {"quiet", no_argument, NULL, 'q'},
    {"progress", required_argument, NULL, OPT_PROGRESS},
    {"plan", no_argument, NULL, OPT_PLAN},
    {"threshold", required_argument, NULL, 't'},
    {"source", required_argument, NULL, OPT_SOURCE},
    {"header", required_argument, NULL, 'H'},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"cacert", required_argument, NULL, OPT_CACERT},
    {"protocol", required_argument, NULL, OPT_PROTOCOL},
    {"transport", required_argument, NULL, OPT_TRANSPORT},
    {"namespace", required_argument, NULL, OPT_NAMESPACE},
    {"auth", required_argument, NULL, OPT_AUTH},
    {"event", required_argument, NULL, OPT_EVENT},
    {"expect", required_argument, NULL, OPT_EXPECT},
    {"no-upgrade", no_argument, NULL, OPT_NO_UPGRADE},
    {"ack", no_argument, NULL, OPT_ACK},
    {"send", required_argument, NULL, OPT_SEND},
    {"find", required_argument, NULL, OPT_FIND},
    {"on-open", required_argument, NULL, OPT_ON_OPEN},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

static const char *opt_name(int c)
{
    for (const struct option *o = long_opts; o->name; o++)
        if (o->val == c)
            return o->name;
    return "?";
}

static bool is_token_char(unsigned char ch)
{
    return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static int add_header(struct lg_opts *o, const char *h, char *err, size_t errlen)
{
    static const char *const ours[] = {
        "host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version", "sec-websocket-accept"};
    const char *colon = strchr(h, ':');
    size_t nlen = colon ? (size_t)(colon - h) : 0;
    if (o->nheaders == LG_MAX_HEADERS)
        return conf_fail(err, errlen, "--header: at most %d", LG_MAX_HEADERS);
    if (strlen(h) >= sizeof o->headers[0])
        return conf_fail(err, errlen, "--header: '%.40s...' is too long", h);
    for (size_t i = 0; i < nlen; i++)
        if (!is_token_char((unsigned char)h[i]))
            nlen = 0;
    if (!nlen)
        return conf_fail(err, errlen, "--header: expected 'Name: value', got '%s'", h);
    for (const char *p = h; *p; p++)
        if ((unsigned char)*p < ' ' && *p != '\t')
            return conf_fail(err, errlen, "--header: control characters (CR, LF, ...) are not allowed in a header");
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++)
        if (strlen(ours[i]) == nlen && !strncasecmp(h, ours[i], nlen))
            return conf_fail(err, errlen, "--header: loadgen sets %.*s itself", (int)nlen, h);
    snprintf(o->headers[o->nheaders++], sizeof o->headers[0], "%s", h);
    return 0;
}

static int take_threshold(struct lg_opts *o, const char *s, char *err, size_t errlen)
{
    if (o->nthresholds == LG_MAX_THRESHOLDS)
        return conf_fail(err, errlen, "--threshold: at most %d", LG_MAX_THRESHOLDS);
    struct lg_threshold *t = &o->thresholds[o->nthresholds];
    if (lg_parse_threshold(s, t, err, errlen) < 0)
        return -1;
    o->errors_threshold |= t->metric == TH_ERRORS;
    o->delivery_threshold |= t->metric == TH_DELIVERY;
    o->missed_threshold |= t->metric == TH_MISSED;
    o->nthresholds++;
    return 0;
}

static int take_duration(const char *opt, const char *s, int64_t min_ns, int64_t *ns, char *err, size_t errlen)
{
    char sub[160];
    if (conf_parse_duration(s, ns, sub, sizeof sub) < 0)
        return conf_fail(err, errlen, "--%s: %s", opt, sub);
    if (*ns < min_ns)
        return conf_fail(err, errlen, "--%s: must be %s", opt, min_ns ? "more than 0" : "0 or more");
    return 0;
}

/* --workers N, or auto (0): the plan's (plan.h). */
static int take_workers(struct lg_opts *o, const char *arg, char *err, size_t errlen)
{
    if (!strcmp(arg, "auto")) {
        o->workers = 0;
        return 0;
    }
    if (parse_u32("--workers", arg, 1, LG_MAX_WORKERS, &o->workers, err, errlen) < 0)
        return conf_fail(err, errlen, "--workers: expected auto or a whole number from 1 to %d, got '%s'",
                         LG_MAX_WORKERS, arg);
    return 0;
}

/* --close-timeout D, or auto: the phase's limit planned from the clients (plan.h), a leave's the default 2s. */
static int take_close_timeout(struct lg_opts *o, const char *arg, char *err, size_t errlen)
{
    o->close_timeout_auto = !strcmp(arg, "auto");
    if (o->close_timeout_auto) {
        o->close_timeout_ns = CLOSE_TIMEOUT_NS;
        return 0;
    }
    if (take_duration("close-timeout", arg, 1, &o->close_timeout_ns, err, errlen) < 0)
        return -1;
    o->close_phase_ns = o->close_timeout_ns;
    return 0;
}

/* --source auto (the plan picks them), none (the kernel's address), or a list; the last one given wins. */
static int take_source(struct lg_opts *o, const char *arg, char *err, size_t errlen)
{
    char sub[160];
    bool word = !strcmp(arg, "auto") || !strcmp(arg, "none");
    if (word || o->sources_auto) { /* a list given after a word (or the default) replaces it */
        free(o->sources);
        o->sources = NULL;
        o->nsources = 0;
    }
    o->sources_auto = !strcmp(arg, "auto");
    if (word)
        return 0;
    if (lg_parse_sources(arg, &o->sources, &o->nsources, sub, sizeof sub) < 0)
        return conf_fail(err, errlen, "%s (or auto, none)", sub);
    return 0;
}

/* ---- Socket.IO ---- */

#define SIO_NAME_MAX 100

/* An event name loadgen writes into packets as it is, so it must need no JSON escaping; socket.io refuses the
 * reserved names (the parser drops the connection). */
static int check_event_name(const char *opt, const char *s, char *err, size_t errlen)
{
    static const char *const reserved[] = {"connect",       "connect_error", "disconnect",
                                           "disconnecting", "newListener",   "removeListener"};
    size_t n = strlen(s);
    if (n == 0 || n > SIO_NAME_MAX)
        return conf_fail(err, errlen, "--%s: expected an event name of 1 to %d characters", opt, SIO_NAME_MAX);
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < ' ' || *p == 127 || *p == '"' || *p == '\\')
            return conf_fail(err, errlen, "--%s '%s': control characters, '\"' and '\\' are not allowed", opt, s);
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (!strcmp(s, reserved[i]))
            return conf_fail(err, errlen, "--%s '%s': a name Socket.IO reserves", opt, s);
    return 0;
}

/* A namespace goes into packets as "/nsp,": it must start with '/' and hold no ',' (the parser's end of it). */
static int check_namespace(const char *s, char *err, size_t errlen)
{
    if (s[0] != '/' || strlen(s) > SIO_NAME_MAX)
        return conf_fail(err, errlen, "--namespace '%s': expected /NAME (at most %d characters)", s, SIO_NAME_MAX);
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 127 || *p == ',' || *p == '"' || *p == '\\')
            return conf_fail(err, errlen,
                             "--namespace '%s': spaces, control characters, ',', '\"' and '\\' are not allowed", s);
    return 0;
}

/* --protocol and the Socket.IO options (the rest of take_option). */
/* --reconnect-jitter: socket.io's randomizationFactor, a fraction from 0 to 1. */
static int take_jitter(struct lg_opts *o, const char *arg, char *err, size_t errlen)
{
    double v;
    const char *end;
    if (conf_parse_number(arg, &v, &end) < 0 || *end || !(v >= 0 && v <= 1))
        return conf_fail(err, errlen, "--reconnect-jitter: expected a fraction from 0 to 1 (e.g. 0.5), got '%s'", arg);
    o->reconnect.jitter = v;
    return 0;
}

/* --reconnect and its settings; the settings alone are an error found once every option is read. */
static int take_reconnect(struct lg_opts *o, int c, const char *arg, char *err, size_t errlen)
{
    struct lg_reconnect *r = &o->reconnect;
    if (c == OPT_RECONNECT) {
        r->enabled = true;
        return 0;
    }
    if (!o->reconnect_only)
        o->reconnect_only = opt_name(c);
    switch (c) {
    case OPT_RECONNECT_DELAY: return take_duration(opt_name(c), arg, 0, &r->delay_ns, err, errlen);
    case OPT_RECONNECT_DELAY_MAX: return take_duration(opt_name(c), arg, 0, &r->delay_max_ns, err, errlen);
    case OPT_RECONNECT_JITTER: return take_jitter(o, arg, err, errlen);
    default: return parse_u32("--reconnect-attempts", arg, 0, 1000000, &r->attempts, err, errlen);
    }
}

static int take_sio_option(struct lg_opts *o, int c, const char *arg, char *err, size_t errlen)
{
    if (c >= OPT_RECONNECT && c <= OPT_RECONNECT_ATTEMPTS)
        return take_reconnect(o, c, arg, err, errlen);
    if (c == OPT_PROTOCOL) {
        if (strcmp(arg, "websocket") != 0 && strcmp(arg, "socketio") != 0)
            return conf_fail(err, errlen, "--protocol: expected websocket or socketio, got '%s'", arg);
        o->protocol = arg[0] == 's' ? LG_PROTO_SOCKETIO : LG_PROTO_WEBSOCKET;
        return 0;
    }
    if (!o->sio_only)
        o->sio_only = opt_name(c);
    switch (c) {
    case OPT_TRANSPORT:
        if (strcmp(arg, "websocket") != 0 && strcmp(arg, "polling") != 0)
            return conf_fail(err, errlen, "--transport: expected websocket or polling, got '%s'", arg);
        o->sio_polling = arg[0] == 'p';
        return 0;
    case OPT_NO_UPGRADE: o->sio_no_upgrade = true; return 0;
    case OPT_ACK: o->sio_ack = true; return 0;
    case OPT_NAMESPACE: o->sio_nsp = arg; return check_namespace(arg, err, errlen);
    case OPT_AUTH:
        if (strlen(arg) > 4096 || !jscan_is_object(arg, strlen(arg)))
            return conf_fail(err, errlen,
                             "--auth: expected a JSON object of at most 4096 bytes, e.g. '{\"token\":\"x\"}'");
        o->sio_auth = arg;
        return 0;
    case OPT_EVENT: o->sio_event = arg; return check_event_name(opt_name(c), arg, err, errlen);
    case OPT_EXPECT: o->sio_expect = arg; return check_event_name(opt_name(c), arg, err, errlen);
    default: return conf_fail(err, errlen, "unknown option");
    }
}

/* One option; -1 with err. */
/* --send, --find, --on-open: the application's own message shape (template.h). */
static int take_shape_option(struct lg_opts *o, int c, const char *arg, char *err, size_t errlen)
{
    switch (c) {
    case OPT_SEND: o->send_text = arg; return lg_template_parse(arg, &o->send, err, errlen);
    case OPT_FIND:
        lg_find_free(&o->find); /* a second --find replaces the first */
        o->find_text = arg;
        return lg_find_parse(arg, &o->find, err, errlen);
    case OPT_ON_OPEN:
        if (o->non_open == LG_MAX_ON_OPEN)
            return conf_fail(err, errlen, "--on-open: at most %d messages", LG_MAX_ON_OPEN);
        o->on_open[o->non_open++] = arg;
        return 0;
    default: return conf_fail(err, errlen, "unknown option");
    }
}

static int take_option(struct lg_opts *o, int c, const char *arg, char *err, size_t errlen)
{
    const char *name = opt_name(c);
    double rate;
    const char *end;
    switch (c) {
    case 'c': return parse_u32("--clients", arg, 1, MAX_CLIENTS, &o->clients, err, errlen);
    case OPT_CONNECT_RATE:
        if (conf_parse_number(arg, &rate, &end) < 0 || *end)
            return conf_fail(err, errlen, "--connect-rate: expected connects per second (0 = no limit), got '%s'", arg);
        o->connect_rate = rate;
        return 0;
    case OPT_MAX_INFLIGHT: return parse_u32("--max-inflight", arg, 1, 1000000, &o->max_inflight, err, errlen);
    case OPT_CONNECT_TIMEOUT: return take_duration(name, arg, 1, &o->connect_timeout_ns, err, errlen);
    case 'r': o->rounds_set = true; return parse_u32("--rounds", arg, 0, MAX_CLIENTS, &o->rounds, err, errlen);
    case 'i': return take_duration(name, arg, 0, &o->interval_ns, err, errlen);
    case OPT_DURATION: return take_duration(name, arg, 1, &o->duration_ns, err, errlen);
    case OPT_DEADLINE: return take_duration(name, arg, 1, &o->deadline_ns, err, errlen);
    case OPT_CLOSE_TIMEOUT: return take_close_timeout(o, arg, err, errlen);
    case OPT_HOLD: return take_duration(name, arg, 0, &o->hold_ns, err, errlen);
    case 'e': return parse_u32("--emitters", arg, 1, MAX_CLIENTS, &o->emitters, err, errlen);
    case 's':
        if (parse_u32("--payload", arg, 0, MAX_PAYLOAD, &o->payload, err, errlen) < 0)
            return -1;
        if (o->payload < LG_PAYLOAD_MIN)
            return conf_fail(err, errlen,
                             "--payload: at least %d bytes, so the fields (emitter, round, seq, send time) fit",
                             LG_PAYLOAD_MIN);
        return 0;
    case OPT_BINARY: o->binary = true; return 0;
    case OPT_ECHO: o->echo = true; return 0;
    case OPT_CHURN: return parse_u32("--churn", arg, 0, MAX_CHURN, &o->churn, err, errlen);
    case OPT_CHURN_GAP: return take_duration(name, arg, 0, &o->churn_gap_ns, err, errlen);
    case OPT_ROOM: o->room = arg; return 0;
    case OPT_ROOMS: return parse_u32("--rooms", arg, 1, 1000000, &o->rooms, err, errlen);
    case OPT_SPECTATORS: return parse_u32("--spectators", arg, 2, MAX_CLIENTS, &o->spectators, err, errlen);
    case OPT_ROOM_PARAM: o->room_param = arg; return 0;
    case OPT_NODE_HEADER: o->node_header = arg; return 0;
    case OPT_COOKIE: o->cookie = arg; return 0;
    case 'w': return take_workers(o, arg, err, errlen);
    case 'o': o->out_json = arg; return 0;
    case OPT_HLOG: o->hlog = arg; return 0;
    case OPT_JUNIT: o->junit = arg; return 0;
    case 'q': o->quiet = true; return 0;
    case OPT_PROGRESS: return take_duration(name, arg, 0, &o->progress_ns, err, errlen);
    case OPT_PLAN: o->plan_only = true; return 0;
    case 't': return take_threshold(o, arg, err, errlen);
    case OPT_SOURCE: return take_source(o, arg, err, errlen);
    case 'H': return add_header(o, arg, err, errlen);
    case OPT_INSECURE: o->insecure = true; return 0;
    case OPT_CACERT:
        if (access(arg, R_OK) < 0)
            return conf_fail(err, errlen, "--cacert %s: %s", arg, strerror(errno));
        o->cacert = arg;
        return 0;
    default: return c >= OPT_SEND ? take_shape_option(o, c, arg, err, errlen) : take_sio_option(o, c, arg, err, errlen);
    }
}

static void set_defaults(struct lg_opts *o)
{
    memset(o, 0, sizeof *o);
    o->clients = 100;
    o->max_inflight = 256;
    o->connect_timeout_ns = 10 * INT64_C(1000000000);
    o->rounds = 10;
    o->interval_ns = 500 * INT64_C(1000000);
    o->deadline_ns = 5 * INT64_C(1000000000);
    o->emitters = 1;
    o->payload = 100;
    o->rooms = 1;
    o->room_param = "room";
    o->node_header = "X-Node-Id";
    o->sources_auto = true;
    o->close_timeout_ns = o->close_phase_ns = CLOSE_TIMEOUT_NS;
    o->close_timeout_auto = true;
    o->churn_gap_ns = 100 * INT64_C(1000000);
    o->reconnect =
        (struct lg_reconnect){.delay_ns = INT64_C(1000000000), .delay_max_ns = 5 * INT64_C(1000000000), .jitter = 0.5};
    o->progress_ns = 5 * INT64_C(1000000000);
    o->sio_nsp = "/";
    o->sio_event = "chat";
}

static int check_socketio(struct lg_opts *o, char *err, size_t errlen)
{
    if (o->protocol != LG_PROTO_SOCKETIO) {
        if (o->sio_only)
            return conf_fail(err, errlen, "--%s needs --protocol socketio", o->sio_only);
        return 0;
    }
    if (!o->sio_expect)
        o->sio_expect = o->sio_event;
    if (o->sio_no_upgrade && !o->sio_polling)
        return conf_fail(err, errlen, "--no-upgrade needs --transport polling (a websocket has nothing to upgrade to)");
    o->sio_upgrade = o->sio_polling && !o->sio_no_upgrade;
    return 0;
}

static int check_reconnect(const struct lg_opts *o, char *err, size_t errlen)
{
    const struct lg_reconnect *r = &o->reconnect;
    if (!r->enabled) {
        if (o->reconnect_only)
            return conf_fail(err, errlen, "--%s needs --reconnect", o->reconnect_only);
        return 0;
    }
    if (r->delay_max_ns < r->delay_ns)
        return conf_fail(err, errlen, "--reconnect-delay-max %.3fs: less than --reconnect-delay %.3fs",
                         (double)r->delay_max_ns / 1e9, (double)r->delay_ns / 1e9);
    if (o->churn) /* a leave's return and a loss's reconnect would share one client's state */
        return conf_fail(err, errlen, "--reconnect and --churn cannot be used together");
    return 0;
}

/* An ack threshold measures --ack's histogram: without --ack it could only fail for want of samples. */
static int check_thresholds(const struct lg_opts *o, char *err, size_t errlen)
{
    for (int i = 0; i < o->nthresholds; i++)
        if (o->thresholds[i].metric == TH_ACK && !o->sio_ack)
            return conf_fail(err, errlen, "threshold '%s': needs --ack (--protocol socketio)", o->thresholds[i].text);
    return 0;
}

/* With Socket.IO the template is the event's argument and an --on-open message an event array: both must be JSON
 * (a sample render with a message of the right size shows what the server will get). */
static int check_templates(const struct lg_opts *o, char *err, size_t errlen)
{
    if (o->send_text && o->binary)
        return conf_fail(err, errlen, "--send and --binary cannot be used together (a template is text)");
    if (o->protocol != LG_PROTO_SOCKETIO)
        return 0;
    for (int i = 0; i < o->non_open; i++) {
        const char *m = o->on_open[i];
        if (strlen(m) > 4000 || !jscan_valid(m, strlen(m)) || *m != '[' || m[1] != '"')
            return conf_fail(err, errlen,
                             "--on-open '%.80s': with socketio, an event as a JSON array of at most 4000 bytes, e.g. "
                             "'[\"join\",\"room1\"]'",
                             m);
    }
    if (!o->send_text)
        return 0;
    char payload[LG_PAYLOAD_MIN], sample[4096];
    struct lg_msg m = {.emitter = 1, .round = 1, .seq = 1, .send_ns = 1};
    lg_payload_encode(&m, payload, sizeof payload);
    size_t n = lg_template_render(&o->send, payload, sizeof payload, &m, 1, sample, sizeof sample);
    if (n == 0 || !jscan_valid(sample, n))
        return conf_fail(err, errlen,
                         "--send: with socketio the template is the event's argument and must be JSON, "
                         "got '%.*s'",
                         (int)(n > 200 ? 200 : n), sample);
    return 0;
}

/* --duration fixes the rounds' count itself (the rounds intended before it ends), so a count beside it could only
 * contradict it: a usage error rather than a silent "whichever ends first". */
static int check_duration(struct lg_opts *o, char *err, size_t errlen)
{
    if (!o->duration_ns)
        return 0;
    if (o->rounds_set)
        return conf_fail(err, errlen, "--rounds and --duration together: give one (a count of rounds, or how long)");
    if (o->interval_ns <= 0)
        return conf_fail(err, errlen, "--duration needs an --interval more than 0 (rounds are paced on it)");
    int64_t n = o->duration_ns / o->interval_ns + (o->duration_ns % o->interval_ns != 0);
    if (n > (int64_t)MAX_ROUNDS)
        return conf_fail(err, errlen, "--duration %.3fs at --interval %.3fms: %" PRId64 " rounds, at most %u",
                         (double)o->duration_ns / 1e9, (double)o->interval_ns / 1e6, n, MAX_ROUNDS);
    o->rounds = (uint32_t)n;
    return 0;
}

static int check_combination(struct lg_opts *o, char *err, size_t errlen)
{
    if (check_socketio(o, err, errlen) < 0 || check_thresholds(o, err, errlen) < 0 ||
        check_reconnect(o, err, errlen) < 0 || check_templates(o, err, errlen) < 0 ||
        check_duration(o, err, errlen) < 0)
        return -1;
    if (o->emitters > o->clients)
        return conf_fail(err, errlen, "--emitters %u: more than the %u clients", o->emitters, o->clients);
    if (o->rooms > o->clients)
        return conf_fail(err, errlen, "--rooms %u: more than the %u clients", o->rooms, o->clients);
    if (o->spectators && o->rooms + o->spectators > o->clients) /* both are capped far below 2^31: no overflow */
        return conf_fail(err, errlen,
                         "--spectators %u with --rooms %u: needs at least %u clients (the big room's %u and "
                         "one per small room), got %u",
                         o->spectators, o->rooms, o->rooms + o->spectators, o->spectators, o->clients);
    if (o->workers > o->clients) /* auto (0) never is */
        return conf_fail(err, errlen, "--workers %u: more than the %u clients", o->workers, o->clients);
    if (o->churn && o->clients - o->emitters < 2) /* emitters never leave: at least two others must */
        return conf_fail(
            err, errlen,
            "--churn %u: needs at least 2 clients that are not emitters to leave and come back, got %u (%u "
            "clients, %u emitters)",
            o->churn, o->clients - o->emitters, o->clients, o->emitters);
    return 0;
}

static enum lg_parse_result parse_urls(struct lg_opts *o, int argc, char **argv, char *err, size_t errlen)
{
    if (optind >= argc) {
        conf_fail(err, errlen, "no URL given (e.g. ws://127.0.0.1:9001/ws)");
        return LG_PARSE_ERROR;
    }
    if (argc - optind > LG_MAX_URLS) {
        conf_fail(err, errlen, "at most %d URLs", LG_MAX_URLS);
        return LG_PARSE_ERROR;
    }
    for (int i = optind; i < argc; i++) {
        struct lg_target *t = &o->targets[o->ntargets++];
        if (lg_parse_url(argv[i], t, true, err, errlen) < 0)
            return LG_PARSE_ERROR;
        if (o->protocol == LG_PROTO_SOCKETIO && lg_socketio_path(t, o->sio_polling, err, errlen) < 0)
            return LG_PARSE_ERROR;
    }
    return check_combination(o, err, errlen) < 0 ? LG_PARSE_ERROR : LG_PARSE_OK;
}

enum lg_parse_result lg_opts_parse(struct lg_opts *o, int argc, char **argv, char *err, size_t errlen)
{
    set_defaults(o);
    optind = 0; /* glibc: 0 also resets its internal state, so parsing twice in one process works */
    opterr = 0;
    for (;;) {
        int idx = -1;
        int c = getopt_long(argc, argv, "c:r:i:e:s:w:o:qt:H:hV", long_opts, &idx);
        if (c == -1)
            break;
        if (c == 'h')
            return LG_PARSE_HELP;
        if (c == 'V')
            return LG_PARSE_VERSION;
        if (c == '?' || c == ':') {
            const char *bad = argv[optind - 1];
            if (optopt && strchr("crieswotH", optopt) && bad[0] == '-' && bad[1] == optopt && !bad[2])
                conf_fail(err, errlen, "-%c needs a value", optopt);
            else if (optopt && optopt >= 256)
                conf_fail(err, errlen, "--%s needs a value", opt_name(optopt));
            else
                conf_fail(err, errlen, "unknown option '%s'", bad);
            return LG_PARSE_ERROR;
        }
        if (take_option(o, c, optarg, err, errlen) < 0)
            return LG_PARSE_ERROR;
    }
    return parse_urls(o, argc, argv, err, errlen);
}

void lg_opts_free(struct lg_opts *o)
{
    lg_find_free(&o->find);
    free(o->sources);
    o->sources = NULL;
    o->nsources = 0;
}

static void usage_socketio(FILE *fp)
{
    fputs("socket.io (Socket.IO v4 / Engine.IO 4 servers):\n"
          "      --protocol P          websocket (default: the message is the frame) or socketio: the URL path (a\n"
          "                            bare / becomes /socket.io/) gets EIO=4&transport=websocket, each client\n"
          "                            connects to the namespace, answers pings, and emits/expects events whose\n"
          "                            first argument is the message as a JSON string\n"
          "      --transport T         websocket (default), or polling: Engine.IO long-polling first (a held GET\n"
          "                            to receive, POSTs to send, the session's cookies kept and sent back), then\n"
          "                            the upgrade to a websocket, as socket.io-client does; 2 descriptors a client\n"
          "      --no-upgrade          with polling: stay on long-polling for the whole run (upgrade: false), which\n"
          "                            is what tests a balancer's stickiness\n"
          "      --namespace NSP       the namespace to connect to (default /)\n"
          "      --auth JSON           the CONNECT packet's auth object, e.g. '{\"token\":\"x\"}' (default none)\n"
          "      --event NAME          the event emitted (default chat)\n"
          "      --expect NAME         the event carrying the messages received (default: the same); other events\n"
          "                            are counted as foreign\n"
          "      --ack                 ask for an ack on every emit (42ID[...]) and expect 43ID[...] exactly once\n"
          "                            within --deadline: the ack histogram, missing acks fail the run\n"
          "      --binary              emit a binary event 451-[\"EVENT\",{placeholder}] with the message as its\n"
          "                            attachment (a binary frame, or b<base64> over polling)\n",
          fp);
}

static void usage_output(FILE *fp)
{
    fputs("where clients land:\n"
          "      --node-header NAME    response header naming the node (default X-Node-Id)\n"
          "      --cookie NAME         else the sticky cookie whose value names it\n"
          "process and output:\n"
          "  -w, --workers N           worker processes (more cores, more descriptors); auto (default): as many\n"
          "                            as the open-files limit needs for the clients\n"
          "      --close-timeout D     the close phase (closes paced by --max-inflight) and each --churn leave's\n"
          "                            close; auto (default): 2s + 1ms a client for the phase, 2s a leave\n"
          "  -o, --out FILE.json       the report as JSON (schema wsh-loadgen/1, docs/loadgen-json.md); - for\n"
          "                            stdout (then the summary and progress go to stderr)\n"
          "      --hlog FILE.hlog      HdrHistogram interval log (format 1.3): one interval per round\n"
          "      --junit FILE.xml      the verdict as JUnit XML: a testcase per check and per threshold\n"
          "                            (--out, --hlog and --junit are opened before the run: exit 2 if they cannot)\n"
          "  -t, --threshold EXPR      pass/fail rule, repeatable: p99<50ms, latency.p99.9<=200ms,\n"
          "                            connect.p95<1s, handshake.max<2s, mean<10ms, errors<1%, delivery>=99.9%,\n"
          "                            ack.p99<50ms (--ack), missed<5% (sent while a client was away)\n"
          "                            (errors and delivery replace the defaults: no failed client, all delivered)\n"
          "  -q, --quiet               no progress line and no summary; failures still go to stderr\n"
          "      --progress D          stdout not a terminal (a CI log): a progress line every D (default 5s;\n"
          "                            0 = none); on a terminal one line is redrawn in place\n"
          "      --plan                print the plan (workers, descriptors, source addresses, close timeout) and\n"
          "                            exit: 0 it fits this host, 2 it cannot (the reason and the remedy)\n"
          "  -h, --help, -V, --version\n"
          "\n"
          "durations take a unit: ns us ms s m (250ms, 1.5s)\n"
          "exit: 0 pass, 1 verification or threshold failure, 2 bad usage, 3 could not connect\n",
          fp);
}

static void usage_rounds(FILE *fp)
{
    fputs(
        "rounds:\n"
        "  -r, --rounds N            rounds (default 10; 0 = connect and close only)\n"
        "  -i, --interval D          round r is intended to start (r-1)*D after the first (default 500ms);\n"
        "                            rounds never overlap: one that ends late starts the next at once, and\n"
        "                            latency counts from the intended time (coordinated omission)\n"
        "      --duration D          run rounds for D from the first (30s, 2m) instead of --rounds\n"
        "      --deadline D          a delivery later than this after its send is late (default 5s)\n"
        "  -e, --emitters N          clients that emit each round: clients 0..N-1 (default 1)\n"
        "  -s, --payload BYTES       message size (default 100, at least 87)\n"
        "      --binary              binary frames instead of text (socketio: see below)\n"
        "      --send TEMPLATE       the app's own message shape: {{payload}} (loadgen's message, escaped inside a\n"
        "                            JSON string), {{seq}} {{round}} {{emitter}} {{time_ms}}, e.g.\n"
        "                            '{\"type\":\"chat\",\"text\":\"{{payload}}\"}' (socketio: the event's argument)\n"
        "      --find PATH           where loadgen's message is in what comes back: a JSON pointer (/text,\n"
        "                            /data/0/msg; socketio: in the event's first argument) or re:REGEX (its\n"
        "                            first group)\n"
        "      --echo                the server also sends a message back to its sender: expect it there\n"
        "      --churn RATE          during the rounds, RATE receivers a second (never an emitter, round robin)\n"
        "                            close and come back as a new connection; a round only expects what the\n"
        "                            receivers open for the whole of it get (0 = off, the default; at most 100000)\n"
        "      --churn-gap D         from a leave to the new connection (default 100ms)\n"
        "      --reconnect           a client lost after connecting connects again (socket.io-client's\n"
        "                            backoff; same URL list, sticky cookie kept, room joined again); what is\n"
        "                            sent while it is away is missed_while_away, not lost (default off)\n"
        "      --reconnect-delay D   the first delay (default 1s); each attempt doubles it up to\n"
        "      --reconnect-delay-max D  (default 5s)\n"
        "      --reconnect-jitter F  each delay moved by up to +-F of itself (default 0.5)\n"
        "      --reconnect-attempts N  attempts per loss, 0 = unlimited (default 0)\n"
        "      --room NAME           join room NAME (adds ?room=NAME; default: the URL as given)\n"
        "      --rooms K             spread clients over K rooms NAME-0..NAME-(K-1) (client i joins i % K)\n"
        "      --spectators S        add a big room NAME-0 of S clients beside the K small rooms, which become\n"
        "                            NAME-1..NAME-K: client 0 publishes there, clients 1..K join the small rooms\n"
        "                            (-e K+1: one emitter per room), K+1..K+S-1 watch, the rest go round robin\n"
        "                            over the small rooms (default 1 small room; K + S <= clients)\n"
        "      --room-param NAME     the query parameter naming the room (default room)\n",
        fp);
}

void lg_opts_usage(FILE *fp)
{
    fputs("usage: loadgen [options] URL [URL...]\n"
          "\n"
          "N WebSocket clients; each round E of them emit one message and every other client in the room must\n"
          "receive it exactly once and in order before the deadline. Several URLs: clients go round-robin over\n"
          "them (straight to nodes); one URL: through whatever balancer is there. ws:// and wss:// URLs.\n"
          "\n"
          "connect:\n"
          "  -c, --clients N           clients (default 100)\n"
          "      --connect-rate N      new connections per second, 0 = no limit (default 0)\n"
          "      --max-inflight N      handshakes in progress at once, over all workers, opening and closing\n"
          "                            (default 256)\n"
          "      --connect-timeout D   TCP + TLS + upgrade, per client (default 10s)\n"
          "      --source LIST         source addresses, e.g. 127.0.0.2-127.0.0.60 or a,b,c (about 28k\n"
          "                            connections per source address and destination); auto (default): as many\n"
          "                            as ip_local_port_range needs, from 127.0.0.2 (loopback URLs only); none\n"
          "  -H, --header 'N: v'       extra request header (repeatable)\n"
          "      --on-open MSG         sent after every connect, in order (repeatable: join, auth); socketio: an\n"
          "                            event as a JSON array, e.g. '[\"join\",\"room1\"]'\n"
          "      --insecure            do not verify the server's certificate (wss://)\n"
          "      --cacert FILE         CA certificate(s) to verify the server with (default: the system store)\n"
          "      --hold D              keep every client connected for D before the rounds (default 0)\n",
          fp);
    usage_rounds(fp);
    usage_socketio(fp);
    usage_output(fp);
}

int64_t lg_backoff_ns(const struct lg_reconnect *r, uint32_t attempt, double u)
{
    double base = (double)r->delay_ns;
    for (uint32_t i = 0; i < attempt && base < (double)r->delay_max_ns; i++)
        base *= 2;
    if (base > (double)r->delay_max_ns)
        base = (double)r->delay_max_ns;
    double d = base * (1 + r->jitter * (2 * u - 1));
    return d > 0 ? (int64_t)d : 0;
}
