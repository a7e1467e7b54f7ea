/* refserver: the reference WebSocket node. Parses flags, starts the server (or, with --workers N, the master of N
 * worker processes: workers.h), runs the loop until SIGTERM. */
#include "common/conf.h"
#include "common/log.h"
#include "common/eio.h"
#include "common/version.h"
#include "refserver/cors.h"
#include "refserver/server.h"
#include "refserver/workers.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXIT_USAGE 2

static const char usage[] =
    "usage: refserver [options]\n"
    "  --listen HOST:PORT       address to serve on (default 127.0.0.1:9001)\n"
    "  --redis URL              redis://[[user]:pass@]host[:port] or rediss://... (default redis://127.0.0.1:6379);\n"
    "                           'none' runs a standalone node without Redis\n"
    "  --redis-ca FILE          CA certificates for rediss:// (default: the system store)\n"
    "  --redis-insecure         rediss:// without verifying the server certificate\n"
    "  --node-id ID             this node's name in X-Node-Id and on the bus (default: n-<random>)\n"
    "  --channel-prefix P       Redis channel prefix, channels are P#ROOM (default wsh)\n"
    "  --max-message BYTES      largest message accepted, larger is closed with 1009 (default 1m); for Socket.IO\n"
    "                           also maxPayload (a larger POST gets 413)\n"
    "  --max-queue BYTES        unsent bytes per client before it is closed with 1013 (default 1m)\n"
    "  --max-clients N          open connections; more wait in the backlog (default 0: no limit); with\n"
    "                           --workers, for the node, split evenly over the workers\n"
    "  --workers N              N processes on the port, each its own participant on the Redis bus (1 to 64,\n"
    "                           default 1: a single process); Engine.IO polling requests reach their session's\n"
    "                           worker whichever accepts them\n"
    "  --ping-interval SECONDS  ping a client quiet this long (default 25)\n"
    "  --idle-timeout SECONDS   close a client quiet this long (default 60)\n"
    "  --handshake-timeout SECONDS  time to send a complete request head (default 10)\n"
    "  --sio-ping-interval MS   Socket.IO: Engine.IO ping every MS milliseconds (default 25000)\n"
    "  --sio-ping-timeout MS    Socket.IO: close when a ping is not answered in MS milliseconds (default 20000)\n"
    "  --sio-cookie NAME        Socket.IO: the polling handshake sets cookie NAME to the sid, for sticky proxies\n"
    "                           (HAProxy 'cookie io prefix', lb --sticky prefix:io; default: no cookie)\n"
    "  --cors-origin LIST|*     Socket.IO: CORS with credentials on the polling endpoints for pages from these\n"
    "                           origins (comma-separated scheme://host[:port]; '*' echoes any Origin), as\n"
    "                           socket.io's cors option; WebSockets need none (default: no CORS headers)\n"
    "  --sio-connect-timeout MS Socket.IO: close a connection with no namespace CONNECT after MS (default 45000)\n"
    "  --sio-namespace NSP      Socket.IO: serve namespace NSP (e.g. /chat) besides /; repeatable, up to 15\n"
    "  --sio-key KEY            Socket.IO: the Redis adapter's key, channels KEY#NSP#[ROOM#] (default socket.io)\n"
    "  --profile NAME           Socket.IO behaviour: broadcast (default: an event goes to every other socket of\n"
    "                           its namespace or room, on every node) or conformance (socket.io-protocol's\n"
    "                           test-suite server: ping 300/200 ms, maxPayload 1000000, connect timeout 1 s,\n"
    "                           auth echoed, message -> message-back, message-with-ack acknowledged, /custom)\n"
    "  --log-level LEVEL        error, warn, info or debug (default info)\n"
    "  --log-requests           one info line per HTTP request and per WebSocket at its end (default off)\n"
    "  --version                name, version and the commit it was built from\n"
    "  --help                   this text\n"
    "Routes: GET / (200 while serving), GET /health (200 'ok' while on the Redis bus, else 503 and why),\n"
    "        GET /metrics (Prometheus), GET /ws?room=NAME (WebSocket, default room 'all'),\n"
    "        /socket.io/?EIO=4&transport=polling|websocket[&room=NAME] (Socket.IO v4: polling, websocket, upgrade;\n"
    "        with Redis, broadcasts use @socket.io/redis-adapter's format, shared with Node.js Socket.IO nodes).\n";

/* "1024", "64k", "1m" (common/conf.h): a byte count, or -1. */
static long long parse_bytes(const char *s)
{
    uint64_t b;
    return conf_parse_bytes(s, &b) < 0 ? -1 : (long long)b;
}

static double parse_seconds(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    return end == s || *end || !isfinite(v) || v <= 0 || v > 86400 ? -1 : v;
}

static int bad_value(const char *opt, const char *val, const char *want)
{
    fprintf(stderr, "refserver: bad value '%s' for --%s (%s)\n", val, opt, want);
    return -1;
}

static void default_node_id(char *out)
{
    unsigned char r[3] = {0};
    RAND_bytes(r, sizeof r);
    snprintf(out, NODE_ID_MAX + 1, "n-%02x%02x%02x", r[0], r[1], r[2]);
}

static bool valid_node_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > NODE_ID_MAX)
        return false;
    for (; *s; s++)
        if (*s <= 0x20 || *s >= 0x7f)
            return false;
    return true;
}

static const struct option long_opts[] = {
    {"listen", required_argument, 0, 'l'},
    {"redis", required_argument, 0, 'r'},
    {"redis-ca", required_argument, 0, 'C'},
    {"redis-insecure", no_argument, 0, 'I'},
    {"node-id", required_argument, 0, 'n'},
    {"channel-prefix", required_argument, 0, 'p'},
    {"max-message", required_argument, 0, 'm'},
    {"max-queue", required_argument, 0, 'q'},
    {"max-clients", required_argument, 0, 'c'},
    {"workers", required_argument, 0, 'W'},
    {"ping-interval", required_argument, 0, 'P'},
    {"idle-timeout", required_argument, 0, 'i'},
    {"handshake-timeout", required_argument, 0, 'H'},
    {"sio-ping-interval", required_argument, 0, 'S'},
    {"sio-ping-timeout", required_argument, 0, 'T'},
    {"sio-cookie", required_argument, 0, 'K'},
    {"cors-origin", required_argument, 0, 'o'},
    {"sio-connect-timeout", required_argument, 0, 'O'},
    {"sio-namespace", required_argument, 0, 'N'},
    {"sio-key", required_argument, 0, 'k'},
    {"profile", required_argument, 0, 'F'},
    {"log-level", required_argument, 0, 'L'},
    {"log-requests", no_argument, 0, 'R'},
    {"version", no_argument, 0, 'V'},
    {"help", no_argument, 0, 'h'},
    {0, 0, 0, 0},
};

/* --sio-cookie NAME: a cookie name (an RFC 6265 token, kept to the usual characters). 0, or -1 after saying why. */
static int set_cookie(const char *arg, struct server_config *cfg)
{
    static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.";
    if (!*arg || strlen(arg) > 64 || strspn(arg, ok) != strlen(arg))
        return bad_value("sio-cookie", arg, "a cookie name: 1-64 of [A-Za-z0-9_.-]");
    cfg->sio_cookie = arg;
    return 0;
}

/* --cors-origin LIST|*: checked here so a typo stops the start (exit 2) instead of blocking every page. */
static int set_cors(const char *arg, struct server_config *cfg)
{
    char err[ERR_LEN];
    if (cors_check_list(arg, err, sizeof err) < 0) {
        fprintf(stderr, "refserver: bad value for --cors-origin: %s\n", err);
        return -1;
    }
    cfg->cors_origin = arg;
    return 0;
}

/* --sio-namespace NSP: "/" and a name that can sit in a packet and a Redis channel unquoted. */
static int add_namespace(const char *arg, struct server_config *cfg)
{
    size_t n = strlen(arg);
    if (n < 2 || n > EIO_NSP_MAX || arg[0] != '/' || strpbrk(arg, "\"\\,#*?[]"))
        return bad_value("sio-namespace", arg, "/ and 1-127 visible ASCII characters, none of \"\\,#*?[]");
    for (const char *p = arg; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return bad_value("sio-namespace", arg, "visible ASCII characters only");
    for (uint32_t i = 0; i < cfg->sio_nsp_count; i++)
        if (!strcmp(cfg->sio_nsps[i], arg))
            return 0;
    if (cfg->sio_nsp_count == SIO_NSP_MAX)
        return bad_value("sio-namespace", arg, "at most 15 namespaces besides /");
    cfg->sio_nsps[cfg->sio_nsp_count++] = arg;
    return 0;
}

/* A Socket.IO option into cfg. 0, or -1 after printing what is wrong. */
static int apply_sio_option(int opt, const char *arg, struct server_config *cfg)
{
    long long v;
    switch (opt) {
    case 'S':
    case 'T':
        if ((v = parse_bytes(arg)) < 1 || v > 86400000)
            return bad_value(opt == 'S' ? "sio-ping-interval" : "sio-ping-timeout", arg, "milliseconds, 1 to 86400000");
        *(opt == 'S' ? &cfg->sio_ping_interval : &cfg->sio_ping_timeout) = (double)v / 1000;
        return 0;
    case 'K': return set_cookie(arg, cfg);
    case 'o': return set_cors(arg, cfg);
    case 'O':
        if ((v = parse_bytes(arg)) < 1 || v > 86400000)
            return bad_value("sio-connect-timeout", arg, "milliseconds, 1 to 86400000");
        cfg->sio_connect_timeout = (double)v / 1000;
        return 0;
    case 'N': return add_namespace(arg, cfg);
    case 'k':
        if (!*arg || strlen(arg) > 64 || strpbrk(arg, "#*?[]"))
            return bad_value("sio-key", arg, "1-64 characters, none of #*?[]");
        cfg->sio_key = arg;
        return 0;
    case 'F':
        if (!strcmp(arg, "broadcast"))
            cfg->sio_profile = SIO_PROFILE_BROADCAST;
        else if (!strcmp(arg, "conformance"))
            cfg->sio_profile = SIO_PROFILE_CONFORMANCE;
        else
            return bad_value("profile", arg, "broadcast or conformance");
        return 0;
    default: return -1;
    }
}

/* --max-clients N (0: no limit) or --workers N (1 to WORKERS_MAX). 0, or -1 after saying why. */
static int set_count(int opt, const char *arg, struct server_config *cfg)
{
    long long v = parse_bytes(arg);
    if (opt == 'W' && (v < 1 || v > WORKERS_MAX))
        return bad_value("workers", arg, "a count from 1 to 64");
    if (v < 0 || v > 100000000)
        return bad_value("max-clients", arg, "a count");
    *(opt == 'W' ? &cfg->workers : &cfg->max_clients) = (uint32_t)v;
    return 0;
}

/* One option into cfg. 0, 1 for --help, -1 after printing what is wrong. */
static int apply_option(int opt, const char *arg, struct server_config *cfg, int *level)
{
    char err[ERR_LEN];
    long long v;
    double d;
    switch (opt) {
    case 'l':
        if (net_parse_addr(arg, &cfg->listen, err, sizeof err) < 0)
            return fprintf(stderr, "refserver: --listen: %s\n", err), -1;
        return 0;
    case 'r': cfg->redis_url = strcmp(arg, "none") ? arg : NULL; return 0;
    case 'C': cfg->redis_ca = arg; return 0;
    case 'I': cfg->redis_insecure = true; return 0;
    case 'n':
        if (!valid_node_id(arg))
            return bad_value("node-id", arg, "1-64 visible ASCII characters");
        snprintf(cfg->node_id, sizeof cfg->node_id, "%s", arg);
        return 0;
    case 'p':
        if (!*arg || strlen(arg) > 64)
            return bad_value("channel-prefix", arg, "1-64 characters");
        cfg->channel_prefix = arg;
        return 0;
    case 'm':
    case 'q':
        if ((v = parse_bytes(arg)) < 126 || v > (1LL << 31))
            return bad_value(opt == 'm' ? "max-message" : "max-queue", arg,
                             "bytes from 126 to 2g, e.g. 65536, 64k, 1m");
        *(opt == 'm' ? &cfg->max_message : &cfg->max_queue) = (size_t)v;
        return 0;
    case 'c':
    case 'W': return set_count(opt, arg, cfg);
    case 'P':
    case 'i':
    case 'H':
        if ((d = parse_seconds(arg)) < 0)
            return bad_value(opt == 'P'   ? "ping-interval"
                             : opt == 'i' ? "idle-timeout"
                                          : "handshake-timeout",
                             arg, "seconds, > 0");
        *(opt == 'P' ? &cfg->ping_interval : opt == 'i' ? &cfg->idle_timeout : &cfg->handshake_timeout) = d;
        return 0;
    case 'L':
        if ((*level = log_level_parse(arg)) < 0)
            return bad_value("log-level", arg, "error, warn, info or debug");
        return 0;
    case 'S':
    case 'T':
    case 'K':
    case 'o':
    case 'O':
    case 'N':
    case 'k':
    case 'F': return apply_sio_option(opt, arg, cfg);
    case 'R': cfg->log_requests = true; return 0;
    case 'V': printf("refserver %s (commit %s)\n", WSH_VERSION, WSH_COMMIT); return 1;
    case 'h': fputs(usage, stdout); return 1;
    default: fputs("refserver: unknown option (see --help)\n", stderr); return -1;
    }
}

static int parse_args(int argc, char **argv, struct server_config *cfg, int *level)
{
    char err[ERR_LEN];
    net_parse_addr("127.0.0.1:9001", &cfg->listen, err, sizeof err);
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "", long_opts, NULL)) != -1) {
        if (opt == '?' || opt == ':') {
            fprintf(stderr, "refserver: %s '%s' (see --help)\n", opt == ':' ? "missing value for" : "unknown option",
                    argv[optind - 1]);
            return -1;
        }
        int rc = apply_option(opt, optarg, cfg, level);
        if (rc)
            return rc;
    }
    if (optind < argc) {
        fprintf(stderr, "refserver: unexpected argument '%s' (see --help)\n", argv[optind]);
        return -1;
    }
    /* A profile supplies the values no flag gave (so flag order does not matter). */
    bool conformance = cfg->sio_profile == SIO_PROFILE_CONFORMANCE;
    if (!cfg->sio_ping_interval)
        cfg->sio_ping_interval = conformance ? 0.3 : 25;
    if (!cfg->sio_ping_timeout)
        cfg->sio_ping_timeout = conformance ? 0.2 : 20;
    if (!cfg->sio_connect_timeout)
        cfg->sio_connect_timeout = conformance ? 1 : 45;
    if (!cfg->max_message)
        cfg->max_message = conformance ? 1000000 : 1 << 20;
    if (conformance && add_namespace("/custom", cfg) < 0)
        return -1;
    if (!strcmp(cfg->sio_key, cfg->channel_prefix)) {
        fprintf(stderr, "refserver: --sio-key and --channel-prefix must differ\n");
        return -1;
    }
    if (cfg->idle_timeout <= cfg->ping_interval) {
        fprintf(stderr, "refserver: --idle-timeout must be longer than --ping-interval\n");
        return -1;
    }
    return 0;
}

/* Serve cfg on the default loop until stopped: the whole node, or worker w of it. The exit code. */
static int serve(const struct server_config *cfg, struct workers *w)
{
    static struct server srv;
    char err[ERR_LEN], where[80];
    struct ev_loop *loop = ev_default_loop(EVFLAG_AUTO);
    if (server_init(&srv, loop, cfg, w, err, sizeof err) < 0) {
        fprintf(stderr, "refserver: %s\n", err);
        return EXIT_USAGE;
    }
    net_addr_str(&cfg->listen, where, sizeof where);
    if (!w)
        LOG_INFO("listening on %s, redis %s", where, cfg->redis_url ? "on" : "off (standalone)");
    ev_run(loop, 0);
    server_free(&srv);
    LOG_INFO("stopped");
    return 0;
}

int main(int argc, char **argv)
{
    struct server_config cfg = {
        .redis_url = "redis://127.0.0.1:6379",
        .channel_prefix = "wsh",
        .max_queue = 1 << 20,
        .ping_interval = 25,
        .idle_timeout = 60,
        .handshake_timeout = 10,
        .close_timeout = 3,
        .stats_interval = 5,
        .sio_nsps = {"/"},
        .sio_nsp_count = 1,
        .sio_key = "socket.io",
        .workers = 1,
    };
    int level = LOG_LEVEL_INFO;
    int rc = parse_args(argc, argv, &cfg, &level);
    if (rc)
        return rc > 0 ? 0 : EXIT_USAGE;
    if (!cfg.node_id[0])
        default_node_id(cfg.node_id);
    char name[NODE_ID_MAX + 16];
    snprintf(name, sizeof name, "refserver %s", cfg.node_id);
    log_init(name, (enum log_level)level);
    return cfg.workers > 1 ? workers_run(&cfg, level, serve) : serve(&cfg, NULL);
}
