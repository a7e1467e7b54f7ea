/* lb's configuration: the model, its defaults, and the parser of lb.conf. The format is one directive per line,
 * words separated by spaces, '#' comments; every error is reported with its line number, all of them in one pass
 * (so `lb --check` can list every mistake at once), and a directive given twice keeps the last value, except
 * `listen` and `backend`, which add. The command-line flags for the simple case go through the same directives.
 *
 *   listen 127.0.0.1:8080                              # repeatable
 *   listen 127.0.0.1:8443 tls cert=FILE key=FILE       # TLS termination (1.2+, ALPN http/1.1)
 *   admin 127.0.0.1:9100                               # /metrics, /health, drain/enable
 *   backend n1 127.0.0.1:9001 [weight=N] [cookie=ID]   # repeatable; cookie id defaults to the name
 *   balance roundrobin | leastconn | source | param:NAME
 *   sticky cookie[:NAME] | prefix:NAME | source | none # cookie default name SRVID
 *   health path=/ interval=2s timeout=1s rise=2 fall=3 | health off
 *   timeout connect|server|client|tunnel|head|grace DURATION
 *   max-connections N        max-head BYTES        max-headers N       workers N       retries N
 *   panic-threshold PERCENT                            # Envoy's healthy_panic_threshold (default 50, 0: off)
 *   forwarded-for on|off     proxy-protocol on|off    abort-on-close on|off    log-requests on|off
 *   listen ADDR shared       share-port on|off       # listen where another process already listens
 *   resolve-interval DURATION | off                    # re-resolve backend host names (default 10s)
 *   source 127.0.1.1[-127.0.1.8]                        # local addresses for node connections, in turn */
#ifndef LB_CONF_H
#define LB_CONF_H

#include "common/net.h"

#include <stdbool.h>
#include <stdint.h>

#define LB_MAX_LISTENS  8
#define LB_MAX_BACKENDS 64
#define LB_NAME_MAX     64
/* Descriptors a worker keeps for itself besides its connections (stdio, listeners, epoll, libev's signal pipe),
 * with room to spare: the derived max-connections leaves these free. */
#define LB_FD_RESERVE 32
/* A client connection's descriptors: its own and its node's. */
#define LB_FDS_PER_CONN    2
#define LB_MAX_CONNECTIONS 10000000
#define LB_MAX_SOURCES     256

enum lb_balance { LB_BAL_ROUNDROBIN = 0, LB_BAL_LEASTCONN, LB_BAL_SOURCE, LB_BAL_PARAM };
enum lb_sticky { LB_STICKY_NONE = 0, LB_STICKY_COOKIE, LB_STICKY_PREFIX, LB_STICKY_SOURCE };

struct lb_listen {
    char text[300];
    struct net_addr addr;
    bool tls;
    bool shared; /* `listen ADDR shared`: listen even where another process already does (SO_REUSEPORT) */
    char cert[512], key[512];
};

struct lb_backend {
    char name[LB_NAME_MAX + 1];
    char text[300];               /* host:port as written */
    struct net_addr addr;         /* as resolved when the config was loaded */
    char host[256], port[6];      /* text's parts, for looking the name up again */
    bool by_name;                 /* host is a name, not an IP literal: the master re-resolves it */
    uint32_t weight;              /* 0..256, default 1 */
    char cookie[LB_NAME_MAX + 1]; /* the opaque id clients carry; default: the name */
};

struct lb_health {
    bool enabled;
    char path[256];
    int64_t interval_ns, timeout_ns;
    uint32_t rise, fall;
};

struct lb_conf {
    struct lb_listen listens[LB_MAX_LISTENS];
    int nlistens;
    bool has_admin;
    struct lb_listen admin;
    struct lb_backend backends[LB_MAX_BACKENDS];
    int nbackends;
    enum lb_balance balance;
    char balance_param[LB_NAME_MAX + 1];
    enum lb_sticky sticky;
    char cookie_name[LB_NAME_MAX + 1];
    struct lb_health health;
    int64_t timeout_connect_ns, timeout_server_ns, timeout_client_ns, timeout_tunnel_ns, timeout_head_ns, grace_ns;
    uint32_t max_connections, max_headers, workers, retries;
    bool max_connections_set; /* given by the config; else lb_conf_fit_descriptors derives it */
    uint32_t panic_threshold; /* percent of the nodes in rotation that must be up, else panic (pool.h) */
    uint64_t max_head;
    bool forwarded_for, proxy_protocol;
    bool abort_on_close; /* a client gone while its request waits for the answer: drop the node connection too */
    bool log_requests;   /* one info line per HTTP request and per tunnel at its end (HAProxy's option httplog) */
    bool share_port;     /* every listener as `shared` (--share-port) */
    int64_t resolve_interval_ns; /* how often the master looks backend host names up again; 0: at load only */
    /* Local addresses connections to the nodes are made from, taken in turn (0: the kernel picks). A connection
     * needs a local port unique to its source and destination, and the kernel finds one quickly only while about
     * half of its port range is free for that pair: past ~14k connections to one node from one address, each
     * connect() scans the used ports (measured: 25k/s drops to 1.2k/s). More addresses, more pairs. */
    struct net_addr source; /* the first address (port 0) */
    uint32_t nsources;      /* IPv4: a range's length; IPv6: 1 */
};

struct lb_conf_error {
    int line; /* 0: not tied to a line (e.g. "no backend") */
    char msg[200];
};

/* HAProxy-like defaults: roundrobin, no stickiness, health checks on GET / every 2 s (rise 2, fall 3, timeout 1 s),
 * timeouts connect 5s, server 30s, client 30s, tunnel 1h, head 10s, grace 30s, 10000 connections (until
 * lb_conf_fit_descriptors derives them from the open-files limit), 16 KiB heads, 100 headers, 1 worker, 1 retry,
 * X-Forwarded-For on, PROXY protocol off, backend names re-resolved every 10 s, panic threshold 50%. */
void lb_conf_defaults(struct lb_conf *c);

/* Apply one directive (words[0] is its name). 0, or -1 with err. */
int lb_conf_directive(struct lb_conf *c, char **words, int nwords, char *err, size_t errlen);

/* Apply a whole file's text (NUL-terminated) over c, line by line, without defaults or whole-config checks (the
 * command line's flags may still add to it). Errors are appended to errs from nerrs; returns the new count. */
int lb_conf_apply_text(const char *text, struct lb_conf *c, struct lb_conf_error *errs, int maxerrs, int nerrs);

/* Parse a whole file's text (NUL-terminated) over c (defaults first), then check it as a whole (lb_conf_check).
 * Returns the number of errors; the first maxerrs are stored in errs. */
int lb_conf_parse(const char *text, struct lb_conf *c, struct lb_conf_error *errs, int maxerrs);

/* Whole-config rules: at least one listen and one backend; backend names and cookie ids unique; prefix stickiness
 * needs a cookie name; the admin address differs from the listeners. Appends to errs from *nerrs; returns the new
 * count. */
int lb_conf_check(const struct lb_conf *c, struct lb_conf_error *errs, int maxerrs, int nerrs);

/* The connections workers x floor((nofile - LB_FD_RESERVE) / LB_FDS_PER_CONN) (at least one per worker, at most
 * LB_MAX_CONNECTIONS): what every worker's open-files limit nofile can hold, each worker having its own. */
uint32_t lb_conf_fd_max_connections(uint64_t nofile, uint32_t workers);

/* Bind max-connections to the open-files limit nofile: derive it when the config did not give it; when a given
 * value cannot fit (a worker's share x 2 + the reserve over nofile), a warning naming the numbers and the remedy
 * goes to warn (else warn is ""). */
void lb_conf_fit_descriptors(struct lb_conf *c, uint64_t nofile, char *warn, size_t warnlen);

#endif
