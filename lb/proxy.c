/* The balancer's data path; see proxy.h.
 *
 * A session moves through these states (one handler each, run by step() until nothing changes):
 *   S_TLS       TLS handshake with the client                      -> S_HEAD, closed
 *   S_HEAD      waiting for a complete request head in cin          -> S_CONNECT, S_EXCHANGE (reused connection),
 *                                                                      S_ERROR (4xx/503), closed
 *   S_CONNECT   connecting to the chosen node; the rewritten head waits in sout
 *                                                                   -> S_EXCHANGE, S_CONNECT (retry), S_ERROR
 *   S_EXCHANGE  request body streaming to the node, response head and body streaming back
 *                                                                   -> S_HEAD (keep-alive), S_TUNNEL (101),
 *                                                                      S_ERROR (502/504), closed
 *   S_TUNNEL    bytes both ways until both sides have closed (half-closes passed on) -> closed
 *   S_ERROR     our own response in cout goes out; then S_LINGER
 *   S_LINGER    our side is shut; read and drop what the client still sends (so the kernel does not answer it
 *               with a reset that could destroy our response before the client read it) -> closed
 *
 * Bytes are not copied from one side's buffer to the other's: cin (read from the client) and sin (read from the
 * node) are written out directly, req_fwd / res_fwd saying how many of their first bytes are cleared to pass
 * (body bytes whose framing was checked, or tunnel bytes). Only heads are rewritten, into sout and cout.
 *
 * Tunnels copy through user space (read + writev) rather than splice(): bench/tunnel-copy.c measured, on this
 * 2-core machine, a relay's CPU per message when messages come one at a time (a WebSocket tunnel's case) at
 * 13.7 us copy vs 15.3 us splice for 100 B, 14.4 vs 15.0 for 1 KB, 17.7 vs 15.8 for 16 KB; splice only wins
 * (about 2x) on bulk streams of 1 KB and more. And splice needs a pipe (2 descriptors) per direction per tunnel,
 * which would cut the tunnels one worker can hold under the 20000 open-files limit from about 10000 to 3300. */
#include "lb/proxy.h"

#include "common/body.h"
#include "common/buf.h"
#include "common/http.h"
#include "common/listener.h"
#include "common/log.h"
#include "common/net.h"
#include "common/stream.h"
#include "common/tls.h"
#include "lb/cookie.h"
#include "lb/pool.h"
#include "lb/reqlog.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define READ_CHUNK 16384
#define BUF_HIGH   65536 /* stop reading a side while this much of its input waits for the other side */
#define LINGER_S   1.0
#define COOKIE_MAX 512 /* an inserted Set-Cookie value: name and id are at most 64 bytes each */

enum sess_state { S_TLS, S_HEAD, S_CONNECT, S_EXCHANGE, S_TUNNEL, S_ERROR, S_LINGER, S_CLOSED };
enum res_state { RES_HEAD, RES_BODY, RES_DONE };

struct session {
    struct proxy *px;
    struct session *prev, *next;
    uint64_t id;
    enum sess_state state;
    enum res_state res;
    struct net_addr peer;
    int cfd, sfd;
    struct stream cs; /* the client side over cfd: plain, or TLS on a tls listener */
    ev_io cw, sw;
    ev_timer timer;
    ev_tstamp last_active, timeout;
    struct buf cin, sin, cout, sout;
    struct buf replay; /* the head of a request sent on a reused connection, until the node answers */
    size_t req_fwd, res_fwd;
    size_t head_seen; /* the parser's last_len for the head being read */
    struct body req_body, res_body;
    int node;       /* the current request's node (and the server connection's), -1 none */
    uint64_t tried; /* nodes whose connect failed for this request */
    uint64_t param_hash;
    bool has_param;
    size_t proxy_hdr_len; /* a PROXY header at the front of sout, not yet sent */
    uint32_t tries;
    int cw_events, sw_events;
    bool srv_connected, cli_eof, srv_eof, srv_shut, cli_shut;
    bool close_after, head_req, upgrade_req, set_cookie, res_started, tunnel;
    bool req_http10;    /* the request was HTTP/1.0: its keep-alive must be said in the response */
    bool kept_alive;    /* a response went out: an empty S_HEAD is an idle keep-alive connection, not a new client */
    bool tls_pending;   /* client_read stopped at BUF_HIGH: OpenSSL may hold bytes the socket does not show */
    struct reqlog *log; /* the request in flight: its own with --log-requests, else px->log_scratch (8 bytes, not
                           the record's 350, in every session: tunnels are counted in hundreds of thousands) */
};

/* ---- helpers ---- */

static ev_tstamp secs(int64_t ns)
{
    return (ev_tstamp)ns / 1e9;
}

static struct pool_node_state *node_state(struct session *s)
{
    return &s->px->pool->sh->nodes[s->node];
}

static void count_error(struct session *s, enum pool_error e)
{
    POOL_ADD(s->px->pool->sh->errors[e], 1);
}

/* A new timeout for the new state, counted from now (activity pushes it back: touch()). */
static void set_timeout(struct session *s, int64_t ns)
{
    s->timeout = secs(ns);
    s->last_active = ev_now(s->px->loop);
    s->timer.repeat = s->timeout;
    ev_timer_again(s->px->loop, &s->timer);
}

static void touch(struct session *s)
{
    s->last_active = ev_now(s->px->loop);
}

static int append_str(struct buf *b, const char *p)
{
    return buf_append(b, p, strlen(p));
}

static void peer_ip(const struct net_addr *a, char *out, size_t outlen)
{
    if (a->ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, out, (socklen_t)outlen);
    else
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&a->ss)->sin_addr, out, (socklen_t)outlen);
}

/* The request's log line (with --log-requests; one branch when off), then the next request's clock starts. */
static void log_request(struct session *s, const char *term)
{
    const struct lb_conf *c = s->px->conf;
    ev_tstamp now = ev_now(s->px->loop);
    if (c->log_requests && s->log->active) {
        char client[80], line[512];
        net_addr_str(&s->peer, client, sizeof client);
        reqlog_format(s->log, now, client, s->px->name, s->node >= 0 ? c->backends[s->node].name : "-", term, line,
                      sizeof line);
        LOG_INFO("%s", line);
    }
    reqlog_reset(s->log, now);
}

/* How a session ended, for the log line of the request it still had. */
static const char *end_word(const struct session *s)
{
    if (s->log->why[0])
        return "lb-error";
    if (s->tunnel)
        return s->log->closer == 'S' ? "server-closed" : s->log->closer == 'C' ? "client-closed" : "closed";
    return s->cli_eof ? "client-aborted" : s->srv_eof ? "server-aborted" : "closed";
}

/* ---- the server connection ---- */

/* Close the connection to the node (sout, the next request's head, stays: a retry sends it elsewhere). */
static void srv_close(struct session *s)
{
    if (s->sfd < 0)
        return;
    ev_io_stop(s->px->loop, &s->sw);
    close(s->sfd);
    s->sfd = -1;
    s->sw_events = 0;
    POOL_SUB(node_state(s)->active, 1);
    if (s->tunnel)
        POOL_SUB(node_state(s)->tunnels_active, 1);
    s->tunnel = false;
    s->srv_connected = s->srv_eof = s->srv_shut = false;
    buf_free(&s->sin); /* callers close once the client has what it must get of it */
    s->res_fwd = 0;
}

/* The PROXY protocol v2 header (HAProxy's proxy-protocol.txt, section 2.2): the client's address and the one it
 * connected to, in binary, ahead of everything else on a new connection to a node. */
static int put_proxy_header(struct session *s, struct buf *out)
{
    static const char sig[12] = "\r\n\r\n\0\r\nQUIT\n";
    struct net_addr local = {.len = sizeof local.ss};
    if (getsockname(s->cfd, (struct sockaddr *)&local.ss, &local.len) < 0)
        return -1;
    unsigned char h[16 + 36];
    memcpy(h, sig, sizeof sig);
    h[12] = 0x21; /* version 2, PROXY */
    size_t len;
    if (s->peer.ss.ss_family == AF_INET6 && local.ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *src = (const void *)&s->peer.ss, *dst = (const void *)&local.ss;
        h[13] = 0x21; /* TCP over IPv6 */
        memcpy(h + 16, &src->sin6_addr, 16);
        memcpy(h + 32, &dst->sin6_addr, 16);
        memcpy(h + 48, &src->sin6_port, 2);
        memcpy(h + 50, &dst->sin6_port, 2);
        len = 36;
    } else if (s->peer.ss.ss_family == AF_INET && local.ss.ss_family == AF_INET) {
        const struct sockaddr_in *src = (const void *)&s->peer.ss, *dst = (const void *)&local.ss;
        h[13] = 0x11; /* TCP over IPv4 */
        memcpy(h + 16, &src->sin_addr, 4);
        memcpy(h + 20, &dst->sin_addr, 4);
        memcpy(h + 24, &src->sin_port, 2);
        memcpy(h + 26, &dst->sin_port, 2);
        len = 12;
    } else {
        h[13] = 0x00; /* UNSPEC: the node uses the connection's own addresses */
        len = 0;
    }
    h[14] = 0;
    h[15] = (unsigned char)len;
    return buf_append(out, h, 16 + len);
}

/* sout with the PROXY header in front of the request head already there. */
static int prepend_proxy_header(struct session *s)
{
    struct buf b = {0};
    if (put_proxy_header(s, &b) < 0 || buf_append(&b, buf_head(&s->sout), buf_len(&s->sout)) < 0) {
        buf_free(&b);
        return -1;
    }
    s->proxy_hdr_len = buf_len(&b) - buf_len(&s->sout);
    buf_free(&s->sout);
    s->sout = b;
    return 0;
}

/* The next of conf's source addresses for a connection to node, in turn per node: one turn over all nodes would
 * tie each node to a fixed subset of the addresses whenever their counts share a factor (NULL: none configured). */
static const struct net_addr *next_source(struct proxy *px, int node, struct net_addr *out)
{
    const struct lb_conf *c = px->conf;
    if (c->nsources == 0)
        return NULL;
    *out = c->source;
    if (out->ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
        sin->sin_addr.s_addr = htonl(ntohl(sin->sin_addr.s_addr) + px->next_source[node] % c->nsources);
    }
    px->next_source[node]++;
    return out;
}

static int srv_connect(struct session *s)
{
    struct net_addr addr, src;
    if (s->px->conf->proxy_protocol && prepend_proxy_header(s) < 0)
        return -1;
    pool_node_addr(s->px->pool, s->node, &addr);
    s->sfd = net_connect(&addr, next_source(s->px, s->node, &src));
    if (s->sfd < 0)
        return -1;
    shortage_ok(&s->px->lack, ev_now(s->px->loop));
    ev_io_set(&s->sw, s->sfd, EV_WRITE);
    ev_io_start(s->px->loop, &s->sw);
    s->sw_events = EV_WRITE;
    POOL_ADD(node_state(s)->active, 1);
    POOL_ADD(node_state(s)->connections, 1);
    s->state = S_CONNECT;
    set_timeout(s, s->px->conf->timeout_connect_ns);
    return 0;
}

/* ---- our own responses ---- */

static const char *status_reason(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* Answer status with a one-line body and close (S_ERROR), unless part of a response already went out: then the
 * only honest thing left is to close. */
static void fail_request(struct session *s, int status, enum pool_error kind, const char *why)
{
    count_error(s, kind);
    reqlog_fail(s->log, s->res_started || s->cli_shut ? 0 : status, why);
    srv_close(s);
    if (s->res_started || s->cli_shut) {
        s->state = S_CLOSED;
        return;
    }
    char msg[512];
    int body = snprintf(msg, sizeof msg, "%d %s: %s\n", status, status_reason(status), why);
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
                     status, status_reason(status), body);
    buf_consume(&s->cout, buf_len(&s->cout));
    if (buf_append(&s->cout, head, (size_t)n) < 0 || buf_append(&s->cout, msg, (size_t)body) < 0) {
        s->state = S_CLOSED;
        return;
    }
    s->res_fwd = 0;
    s->state = S_ERROR;
    set_timeout(s, s->px->conf->timeout_client_ns);
}

/* ---- routing ---- */

/* The sticky node the request's cookies name, or -1. In prefix mode the Cookie headers are rewritten (the node
 * part removed) into s->sout by the head writer, which calls cookie_prefix_take again. */
static int sticky_node(struct session *s, const struct http_head *h, enum reqlog_cookie *ck)
{
    const struct lb_conf *c = s->px->conf;
    for (size_t i = 0; i < h->num_headers; i++) {
        const struct http_header *f = &h->headers[i];
        if (f->name_len != 6 || strncasecmp(f->name, "cookie", 6) != 0)
            continue;
        const char *id;
        size_t id_len = 0;
        if (c->sticky == LB_STICKY_COOKIE) {
            if (cookie_find(f->value, f->value_len, c->cookie_name, &id, &id_len) != 1)
                continue;
        } else {
            if (cookie_prefix_take(f->value, f->value_len, c->cookie_name, &id, &id_len, s->px->scratch,
                                   s->px->scratch_len) <= 0 ||
                id_len == 0)
                continue;
        }
        int node = pool_by_cookie(s->px->pool, id, id_len);
        *ck = node >= 0 ? REQLOG_CK_VALID : REQLOG_CK_UNKNOWN;
        for (int b = 0; node < 0 && b < c->nbackends; b++)
            if (strlen(c->backends[b].cookie) == id_len && memcmp(c->backends[b].cookie, id, id_len) == 0)
                *ck = REQLOG_CK_DOWN; /* known, but down or in maintenance */
        return node;
    }
    return -1;
}

/* A balanced node for the request, avoiding the nodes that failed it; pins the client when cookies do. */
static int pick(struct session *s)
{
    s->set_cookie = s->px->conf->sticky == LB_STICKY_COOKIE;
    struct pool_key key = {.client = &s->peer, .has_param = s->has_param, .param_hash = s->param_hash};
    return pool_pick(s->px->pool, &key, s->tried);
}

/* The node for a new request: its sticky node if it has a usable one, else a balanced one. */
static int route(struct session *s, const struct http_head *h)
{
    const struct lb_conf *c = s->px->conf;
    s->has_param = false;
    if (c->sticky == LB_STICKY_COOKIE || c->sticky == LB_STICKY_PREFIX) {
        int node = sticky_node(s, h, &s->log->cookie);
        if (node >= 0) {
            s->set_cookie = false;
            return node;
        }
        if (s->log->cookie != REQLOG_CK_NONE)
            POOL_ADD(s->px->pool->sh->rebalanced, 1);
    }
    char param[256];
    if (c->balance == LB_BAL_PARAM &&
        http_query_param(h->target, h->target_len, c->balance_param, param, sizeof param) == 1) {
        s->has_param = true;
        s->param_hash = ring_hash(param, strlen(param));
    }
    return pick(s);
}

/* ---- rewriting heads ---- */

static bool name_is(const struct http_header *f, const char *name)
{
    return f->name_len == strlen(name) && strncasecmp(f->name, name, f->name_len) == 0;
}

static int put_header(struct buf *b, const char *name, size_t name_len, const char *value, size_t value_len)
{
    return buf_append(b, name, name_len) | buf_append(b, ": ", 2) | buf_append(b, value, value_len) |
           buf_append(b, "\r\n", 2);
}

/* A Cookie header as the node must see it: without our cookie (insert mode) or without the node prefix. */
static int put_cookie(struct session *s, const struct http_header *f)
{
    const struct lb_conf *c = s->px->conf;
    char *out = s->px->scratch;
    size_t outlen = s->px->scratch_len;
    int n;
    if (c->sticky == LB_STICKY_COOKIE) {
        n = cookie_strip(f->value, f->value_len, c->cookie_name, out, outlen);
    } else if (c->sticky == LB_STICKY_PREFIX) {
        const char *node;
        size_t node_len;
        n = cookie_prefix_take(f->value, f->value_len, c->cookie_name, &node, &node_len, out, outlen);
        if (n == 0)
            return put_header(&s->sout, f->name, f->name_len, f->value, f->value_len);
    } else {
        return put_header(&s->sout, f->name, f->name_len, f->value, f->value_len);
    }
    if (n < 0)
        return -1;
    return n == 0 ? 0 : put_header(&s->sout, f->name, f->name_len, out, (size_t)n);
}

/* X-Forwarded-For with our client appended, as every proxy on the way does. Several fields are one list (RFC 9110
 * section 5.3): they become one field, in order, with the client last. from is the first such field. */
static int put_forwarded_for(struct buf *o, const struct http_head *h, size_t from, const char *ip)
{
    int rc = append_str(o, "X-Forwarded-For: ");
    for (size_t i = from; i < h->num_headers; i++) {
        const struct http_header *f = &h->headers[i];
        if (name_is(f, "x-forwarded-for") && f->value_len)
            rc |= buf_append(o, f->value, f->value_len) | buf_append(o, ", ", 2);
    }
    return rc | append_str(o, ip) | buf_append(o, "\r\n", 2);
}

/* Not to be forwarded (RFC 9110 7.6.1): the hop-by-hop fields and those a Connection field names, Upgrade only
 * when it is no upgrade (upgrade: a request the lb passes as one, or a 101); Connection itself is written anew by
 * put_connection. Host and the framing fields stay whatever Connection says: the lb frames the body by them, and a
 * node framing it otherwise would read a smuggled request. Proxy-Authenticate and Proxy-Authorization pass, as
 * HAProxy passes them. The length switch keeps the common field to one or two compares. */
static bool hop_by_hop(const struct http_head *h, const struct http_header *f, bool upgrade)
{
    switch (f->name_len) {
    case 2:
        if (name_is(f, "te"))
            return true;
        break;
    case 4:
        if (name_is(f, "host"))
            return false;
        break;
    case 7:
        if (name_is(f, "upgrade"))
            return !upgrade;
        if (name_is(f, "trailer"))
            return true;
        break;
    case 10:
        if (name_is(f, "connection") || name_is(f, "keep-alive"))
            return true;
        break;
    case 14:
        if (name_is(f, "content-length"))
            return false;
        break;
    case 16:
        if (name_is(f, "proxy-connection"))
            return true;
        break;
    case 17:
        if (name_is(f, "transfer-encoding"))
            return false;
        break;
    default: break;
    }
    return h->conn_names && http_conn_lists(h, f->name, f->name_len);
}

/* The lb's own Connection field for the next hop, from what the lb does with the connection: a hop's options are
 * its own, so the other side's Connection field never passes (upgrade first, as clients write it). */
static int put_connection(struct buf *o, bool upgrade, bool close, bool keep_alive)
{
    if (!upgrade && !close && !keep_alive)
        return 0;
    const char *v = upgrade ? (close ? "Upgrade, close" : "Upgrade") : close ? "close" : "keep-alive";
    return append_str(o, "Connection: ") | append_str(o, v) | buf_append(o, "\r\n", 2);
}

/* The request head for the node into sout: the client's, with our cookie taken out, X-Forwarded-* added and the
 * hop-by-hop fields dropped. An absolute-form target (t has an authority; h->target is already its path and query)
 * goes out in origin-form, as nginx sends it: the node is an origin server, and many route on a path that starts
 * with '/' and answer 404 to a proxy's form; without a Host (HTTP/1.0) the authority becomes the Host. */
static int write_request_head(struct session *s, const struct http_head *h, const struct http_target *t)
{
    const struct lb_conf *c = s->px->conf;
    struct buf *o = &s->sout;
    char ip[INET6_ADDRSTRLEN];
    peer_ip(&s->peer, ip, sizeof ip);
    bool slash = t->authority_len && (h->target_len == 0 || h->target[0] != '/'); /* "http://h?q" is "/?q" */
    int rc = buf_append(o, h->method, h->method_len) | buf_append(o, " /", 1 + slash) |
             buf_append(o, h->target, h->target_len) |
             append_str(o, h->minor_version ? " HTTP/1.1\r\n" : " HTTP/1.0\r\n");
    if (t->authority_len && !http_find_header(h, "host"))
        rc |= put_header(o, "Host", 4, t->authority, t->authority_len);
    bool xff_seen = false;
    for (size_t i = 0; i < h->num_headers && rc == 0; i++) {
        const struct http_header *f = &h->headers[i];
        if (hop_by_hop(h, f, s->upgrade_req)) {
            continue;
        } else if (name_is(f, "cookie")) {
            rc = put_cookie(s, f);
        } else if (c->forwarded_for && name_is(f, "x-forwarded-for")) {
            if (!xff_seen)
                rc = put_forwarded_for(o, h, i, ip);
            xff_seen = true;
        } else if (!(c->forwarded_for && name_is(f, "x-forwarded-proto"))) {
            rc = put_header(o, f->name, f->name_len, f->value, f->value_len);
        }
    }
    if (c->forwarded_for) {
        if (!xff_seen)
            rc |= append_str(o, "X-Forwarded-For: ") | append_str(o, ip) | buf_append(o, "\r\n", 2);
        rc |= append_str(o, stream_is_tls(&s->cs) ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
    }
    rc |= put_connection(o, s->upgrade_req, h->conn_close, !h->conn_close && h->minor_version == 0);
    return rc | buf_append(o, "\r\n", 2);
}

/* The response head for the client into cout: the node's, with the sticky cookie set or prefixed. */
static int write_response_head(struct session *s, const struct http_head *h)
{
    const struct lb_conf *c = s->px->conf;
    const struct lb_backend *b = &c->backends[s->node];
    struct buf *o = &s->cout;
    char line[64];
    int n = snprintf(line, sizeof line, "HTTP/1.%d %03d ", h->minor_version, h->status);
    int rc = buf_append(o, line, (size_t)n) | buf_append(o, h->reason, h->reason_len) | buf_append(o, "\r\n", 2);
    for (size_t i = 0; i < h->num_headers && rc == 0; i++) {
        const struct http_header *f = &h->headers[i];
        if (hop_by_hop(h, f, h->status == 101))
            continue;
        int m = 0;
        if (c->sticky == LB_STICKY_PREFIX && name_is(f, "set-cookie"))
            m = cookie_prefix_set(f->value, f->value_len, c->cookie_name, b->cookie, s->px->scratch,
                                  s->px->scratch_len);
        rc = m > 0 ? put_header(o, f->name, f->name_len, s->px->scratch, (size_t)m)
                   : put_header(o, f->name, f->name_len, f->value, f->value_len);
    }
    if (s->set_cookie && h->status >= 101 && h->status != 100) {
        char value[COOKIE_MAX];
        int m = cookie_insert_value(c->cookie_name, b->cookie, value, sizeof value);
        rc |= m < 0 ? -1 : put_header(o, "Set-Cookie", 10, value, (size_t)m);
    }
    /* close_after already holds the node's close (start_response_body): the client hears it from us */
    bool final = h->status >= 200;
    rc |= put_connection(o, h->status == 101, final && s->close_after, final && !s->close_after && s->req_http10);
    return rc | buf_append(o, "\r\n", 2);
}

/* ---- S_HEAD ---- */

static int head_error_status(enum http_error e)
{
    switch (e) {
    case HTTP_ERR_HEAD_TOO_LARGE:
    case HTTP_ERR_TOO_MANY_HEADERS: return 431;
    case HTTP_ERR_VERSION: return 505;
    case HTTP_ERR_TRANSFER_ENCODING: return 501;
    default: return 400;
    }
}

/* RFC 9112 section 3.2: a 1.1 request has exactly one Host (a second one is a smuggling attempt). The target is
 * origin-form, absolute-form or "*"; an absolute-form authority must name what Host names (as HAProxy demands:
 * which of the two would the node believe?). */
static const char *check_request(const struct http_head *h, enum http_target_form form, const struct http_target *t)
{
    int hosts = 0;
    const struct http_header *host = NULL;
    for (size_t i = 0; i < h->num_headers; i++) {
        if (name_is(&h->headers[i], "host")) {
            host = &h->headers[i];
            hosts++;
        }
    }
    if (hosts > 1)
        return "more than one Host header";
    if (form == HTTP_TARGET_BAD)
        return "malformed request target";
    if (form == HTTP_TARGET_ASTERISK && !(h->method_len == 7 && memcmp(h->method, "OPTIONS", 7) == 0))
        return "the * target is only for OPTIONS"; /* RFC 9112 3.2.4 */
    if (hosts == 0 && h->minor_version == 1)
        return "an HTTP/1.1 request needs a Host header";
    if (host && form == HTTP_TARGET_ABSOLUTE &&
        !http_authority_eq(t->authority, t->authority_len, host->value, host->value_len, t->default_port))
        return "the target's authority differs from Host";
    return NULL;
}

static void start_request(struct session *s, const struct http_head *h, int node)
{
    s->node = node;
    s->head_req = h->method_len == 4 && memcmp(h->method, "HEAD", 4) == 0;
    s->upgrade_req = h->conn_upgrade && http_find_header(h, "upgrade") != NULL;
    s->close_after = s->close_after || h->conn_close || s->px->stopping;
    s->req_http10 = h->minor_version == 0;
    s->res = RES_HEAD;
    s->res_started = false;
    s->head_seen = 0;
    if (h->chunked)
        body_init(&s->req_body, BODY_CHUNKED, 0);
    else
        body_init(&s->req_body, h->content_length > 0 ? BODY_LENGTH : BODY_NONE,
                  h->content_length > 0 ? (uint64_t)h->content_length : 0);
    POOL_ADD(s->px->pool->sh->requests, 1);
}

/* A connect to s->node failed (err): count it, and try another node while retries last (nothing was sent, so
 * any node may take the request); else 503. */
static void connect_failed(struct session *s, int err);

/* Connect to s->node (S_CONNECT), or go through connect_failed. */
static void connect_node(struct session *s)
{
    if (srv_connect(s) < 0)
        connect_failed(s, errno);
}

/* The connect failed for want of a local resource (err, a shortage_kind): not the node's fault, so it is not
 * marked, and another node would fail alike: 503 naming our limit. */
static void connect_short(struct session *s, int err)
{
    char what[96], why[160];
    shortage_hit(&s->px->lack, POOL_OP_CONNECT, err, ev_now(s->px->loop));
    shortage_describe(&s->px->lack, err, what, sizeof what);
    snprintf(why, sizeof why, "lb: %s: request not forwarded", what);
    fail_request(s, 503, POOL_ERR_LOCAL_RESOURCE, why);
}

static void connect_failed(struct session *s, int err)
{
    if (shortage_kind(err) >= 0) {
        connect_short(s, err);
        return;
    }
    count_error(s, POOL_ERR_CONNECT);
    POOL_ADD(node_state(s)->connect_errors, 1);
    char why[128];
    snprintf(why, sizeof why, "connect: %s", strerror(err));
    pool_observe_connect(s->px->pool, s->node, false, why);
    srv_close(s);
    buf_consume(&s->sout, s->proxy_hdr_len); /* nothing was sent: the next node gets its own header */
    s->proxy_hdr_len = 0;
    s->tried |= UINT64_C(1) << s->node;
    int prev = s->node;
    s->node = s->tries++ < s->px->conf->retries ? pick(s) : -1;
    if (s->node < 0) {
        s->node = prev;
        fail_request(s, 503, POOL_ERR_NO_NODE, "no node could be reached");
        return;
    }
    POOL_ADD(node_state(s)->requests, 1);
    connect_node(s);
}

static void on_request_head(struct session *s, struct http_head *h, size_t head_len)
{
    if (s->px->conf->log_requests)
        reqlog_begin(s->log, ev_now(s->px->loop), h->method, h->method_len, h->target, h->target_len);
    s->log->cookie = REQLOG_CK_NONE;
    struct http_target t;
    enum http_target_form form = http_target_split(h->target, h->target_len, &t);
    const char *bad = check_request(h, form, &t);
    if (bad) {
        fail_request(s, 400, POOL_ERR_BAD_REQUEST, bad);
        return;
    }
    h->target = t.origin; /* routing, and any rule on the path, see an absolute-form target's path and query */
    h->target_len = t.origin_len;
    s->tries = 0;
    s->tried = 0;
    int node = route(s, h);
    if (node < 0) {
        fail_request(s, 503, POOL_ERR_NO_NODE, "no node is up");
        return;
    }
    bool reuse = s->sfd >= 0 && s->srv_connected && !s->srv_eof && node == s->node;
    if (!reuse)
        srv_close(s);
    buf_consume(&s->sout, buf_len(&s->sout));
    start_request(s, h, node);
    if (write_request_head(s, h, &t) < 0) {
        fail_request(s, 431, POOL_ERR_HEAD_TOO_LARGE, "the rewritten head is too large");
        return;
    }
    POOL_ADD(node_state(s)->requests, 1);
    /* the head's spans point into cin: consume only after they were copied */
    buf_consume(&s->cin, head_len);
    s->log->bytes_in += head_len;
    buf_free(&s->replay);
    if (reuse) {
        /* The node may have closed this idle connection just now (its keep-alive timeout): keep the head, so a
         * close before any response byte is retried once on a new connection, as a browser would. Only without
         * a body: the body's bytes are not kept. */
        if (s->req_body.kind == BODY_NONE && buf_append(&s->replay, buf_head(&s->sout), buf_len(&s->sout)) < 0)
            buf_free(&s->replay);
        s->state = S_EXCHANGE;
        set_timeout(s, s->px->conf->timeout_server_ns);
        return;
    }
    connect_node(s);
}

/* The reused connection closed before answering: send the kept head again on a new connection to the same
 * node. */
static void replay_request(struct session *s)
{
    srv_close(s);
    buf_free(&s->sout);
    s->sout = s->replay;
    s->replay = (struct buf){0};
    s->head_seen = 0;
    connect_node(s);
}

static bool step_head(struct session *s)
{
    size_t len = buf_len(&s->cin);
    if (len == 0) {
        if (s->cli_eof)
            s->state = S_CLOSED;
        return false;
    }
    /* never extended (slowloris): a new connection's first head counts from the accept (session_new), as
     * HAProxy's timeout http-request does, so a client that connects and sends nothing is gone at timeout head;
     * a keep-alive connection's next head counts from its first byte (timeout client covers the wait for it) */
    if (s->head_seen == 0 && s->kept_alive)
        set_timeout(s, s->px->conf->timeout_head_ns);
    struct http_head h = {.headers = s->px->hdrs, .headers_cap = s->px->conf->max_headers};
    struct http_limits lim = {.max_head = s->px->conf->max_head, .max_headers = s->px->conf->max_headers};
    int n = http_parse_request(buf_head(&s->cin), len, s->head_seen, &h, &lim);
    s->head_seen = len;
    if (n == -2) {
        if (s->cli_eof) {
            count_error(s, POOL_ERR_CLIENT_ABORT);
            s->state = S_CLOSED;
        }
        return false;
    }
    if (n < 0) {
        int status = head_error_status(h.error);
        fail_request(s, status, status == 431 ? POOL_ERR_HEAD_TOO_LARGE : POOL_ERR_BAD_REQUEST,
                     http_error_str(h.error));
        return true;
    }
    on_request_head(s, &h, (size_t)n);
    return true;
}

/* ---- S_EXCHANGE ---- */

/* Close the client connection without losing what we sent: shut our side, then drain theirs (S_LINGER). */
static void close_gracefully(struct session *s)
{
    srv_close(s);
    stream_shutdown(&s->cs, s->cfd);
    s->cli_shut = true;
    s->state = S_LINGER;
    set_timeout(s, (int64_t)(LINGER_S * 1e9));
}

static void start_tunnel(struct session *s)
{
    s->state = S_TUNNEL;
    s->tunnel = true;
    POOL_ADD(node_state(s)->tunnels, 1);
    POOL_ADD(node_state(s)->tunnels_active, 1);
    set_timeout(s, s->px->conf->timeout_tunnel_ns);
}

/* The final response's body framing (RFC 9112 section 6.3). */
static void start_response_body(struct session *s, const struct http_head *h)
{
    if (s->head_req || h->status == 204 || h->status == 304)
        body_init(&s->res_body, BODY_NONE, 0);
    else if (h->chunked)
        body_init(&s->res_body, BODY_CHUNKED, 0);
    else if (h->content_length >= 0)
        body_init(&s->res_body, BODY_LENGTH, (uint64_t)h->content_length);
    else {
        body_init(&s->res_body, BODY_UNTIL_CLOSE, 0);
        s->close_after = true;
    }
    if (h->conn_close)
        s->close_after = true; /* the node closes: the client's connection must not outlive the response */
}

/* Precondition: RES_HEAD. Parses the node's response head from sin; 1xx heads pass and RES_HEAD stays; a 101
 * to an upgrade becomes S_TUNNEL; a final head moves to RES_BODY. */
static bool step_response_head(struct session *s)
{
    size_t len = buf_len(&s->sin);
    if (len == 0 || len == s->head_seen) {
        if (s->srv_eof && len == 0 && buf_len(&s->replay)) {
            replay_request(s);
            return true;
        }
        if (s->srv_eof) {
            fail_request(s, 502, POOL_ERR_BAD_RESPONSE, "the node closed the connection before answering");
            return true;
        }
        return false;
    }
    struct http_head h = {.headers = s->px->hdrs, .headers_cap = s->px->conf->max_headers};
    struct http_limits lim = {.max_head = s->px->conf->max_head, .max_headers = s->px->conf->max_headers};
    int n = http_parse_response(buf_head(&s->sin), len, s->head_seen, &h, &lim);
    s->head_seen = len;
    if (n == -2)
        return false;
    if (n < 0 || (h.status == 101 && !s->upgrade_req)) {
        fail_request(s, 502, POOL_ERR_BAD_RESPONSE, n < 0 ? http_error_str(h.error) : "an unasked-for 101");
        return true;
    }
    if (h.status >= 200)
        start_response_body(s, &h);
    if (write_response_head(s, &h) < 0) {
        fail_request(s, 502, POOL_ERR_BAD_RESPONSE, "the response head is too large");
        return true;
    }
    buf_consume(&s->sin, (size_t)n);
    buf_free(&s->replay); /* the node answered: nothing to retry */
    s->head_seen = 0;
    s->res_started = true;
    if (h.status >= 101) {
        s->log->t_response = ev_now(s->px->loop);
        s->log->status = h.status;
        s->log->cookie_set = s->set_cookie;
    }
    s->log->bytes_out += (size_t)n;
    POOL_ADD(node_state(s)->responses[h.status / 100 <= 5 ? h.status / 100 : 0], 1);
    if (h.status == 101)
        start_tunnel(s);
    else if (h.status >= 200)
        s->res = RES_BODY;
    return true;
}

/* Precondition: RES_BODY. Clears the body's bytes in sin to pass; RES_DONE at its end. */
static bool step_response_body(struct session *s)
{
    size_t len = buf_len(&s->sin);
    bool progress = false;
    if (len > s->res_fwd) {
        ssize_t n = body_feed(&s->res_body, buf_head(&s->sin) + s->res_fwd, len - s->res_fwd);
        if (n < 0) {
            count_error(s, POOL_ERR_BAD_RESPONSE);
            s->state = S_CLOSED; /* part of the response went out: closing is the only signal left */
            return true;
        }
        s->res_fwd += (size_t)n;
        s->log->bytes_out += (size_t)n;
        progress = n > 0;
    }
    if (body_done(&s->res_body)) {
        s->res = RES_DONE;
        return true;
    }
    if (s->srv_eof && s->res_fwd == len) {
        if (s->res_body.kind != BODY_UNTIL_CLOSE)
            count_error(s, POOL_ERR_BAD_RESPONSE); /* cut short: the client sees the close */
        s->res = RES_DONE;
        s->close_after = true;
        return true;
    }
    return progress;
}

/* Precondition: S_EXCHANGE. Streams the request body, reads the response; when both are through and out,
 * the connection goes back to S_HEAD (or closes). */
static bool step_exchange(struct session *s)
{
    bool progress = false;
    size_t len = buf_len(&s->cin);
    if (!body_done(&s->req_body) && len > s->req_fwd) {
        ssize_t n = body_feed(&s->req_body, buf_head(&s->cin) + s->req_fwd, len - s->req_fwd);
        if (n < 0) {
            fail_request(s, 400, POOL_ERR_BAD_REQUEST, "malformed chunked request body");
            return true;
        }
        s->req_fwd += (size_t)n;
        s->log->bytes_in += (size_t)n;
        progress = n > 0;
    }
    /* A client gone before the answer began: with abort-on-close (HAProxy's abortonclose) the node's connection
     * goes too, so a held long-poll does not pin it until the node answers nobody. Off by default: a client may
     * half-close after its request and still read the answer. */
    if (s->cli_eof && (!body_done(&s->req_body) ||
                       (s->px->conf->abort_on_close && s->res == RES_HEAD && !s->res_fwd && !buf_len(&s->cout)))) {
        count_error(s, POOL_ERR_CLIENT_ABORT);
        s->state = S_CLOSED;
        return true;
    }
    if (s->res == RES_HEAD)
        progress |= step_response_head(s);
    else if (s->res == RES_BODY)
        progress |= step_response_body(s);
    if (s->state != S_EXCHANGE || s->res != RES_DONE || buf_len(&s->cout) || s->res_fwd)
        return progress;
    if (s->log->active)
        log_request(s, "ok");
    if (!body_done(&s->req_body) || s->close_after || s->cli_eof) {
        close_gracefully(s);
        return true;
    }
    if (s->req_fwd || buf_len(&s->sout))
        return progress;
    s->state = S_HEAD; /* keep-alive: the next request (perhaps already in cin) */
    s->head_seen = 0;
    s->kept_alive = true;
    buf_release_if_empty(&s->cin);
    set_timeout(s, s->px->conf->timeout_client_ns);
    return true;
}

/* ---- S_TUNNEL ---- */

/* Precondition: S_TUNNEL. Everything read passes; a side's close is passed on once its bytes are out. */
static bool step_tunnel(struct session *s)
{
    s->log->bytes_in += buf_len(&s->cin) - s->req_fwd; /* what arrived since the last step */
    s->log->bytes_out += buf_len(&s->sin) - s->res_fwd;
    if (!s->log->closer)
        s->log->closer = s->cli_eof ? 'C' : s->srv_eof ? 'S' : '\0';
    s->req_fwd = buf_len(&s->cin);
    s->res_fwd = buf_len(&s->sin);
    bool progress = false;
    if (s->cli_eof && !s->req_fwd && !s->srv_shut) {
        shutdown(s->sfd, SHUT_WR);
        s->srv_shut = progress = true;
    }
    if (s->srv_eof && !s->res_fwd && !buf_len(&s->cout) && !s->cli_shut) {
        stream_shutdown(&s->cs, s->cfd);
        s->cli_shut = progress = true;
    }
    if (s->cli_shut && s->srv_shut) {
        s->state = S_CLOSED;
        return true;
    }
    return progress;
}

/* ---- stepping ---- */

static bool step(struct session *s)
{
    switch (s->state) {
    case S_HEAD:
        /* an idle connection to a node that closed it, or sent what nobody asked for, is no good */
        if (s->sfd >= 0 && (s->srv_eof || buf_len(&s->sin)))
            srv_close(s);
        return step_head(s);
    case S_EXCHANGE: return step_exchange(s);
    case S_TUNNEL: return step_tunnel(s);
    case S_ERROR:
        if (buf_len(&s->cout) == 0) {
            close_gracefully(s);
            return true;
        }
        return false;
    case S_LINGER:
        buf_consume(&s->cin, buf_len(&s->cin));
        if (s->cli_eof)
            s->state = S_CLOSED;
        return false;
    default: return false;
    }
}

/* ---- I/O ---- */

static void client_read(struct session *s)
{
    /* OpenSSL may hold decrypted bytes the socket no longer signals: stopping at BUF_HIGH must be remembered */
    s->tls_pending = false;
    for (int i = 0; i < 64 && !s->cli_eof; i++) {
        if (buf_len(&s->cin) >= BUF_HIGH) {
            s->tls_pending = stream_is_tls(&s->cs);
            break;
        }
        int err = 0;
        enum io_status st = stream_read(&s->cs, s->cfd, &s->cin, READ_CHUNK, &err);
        if (st == IO_AGAIN)
            break;
        if (st != IO_OK) {
            s->cli_eof = true;
            if (st == IO_ERR && s->state != S_LINGER && s->state != S_HEAD)
                s->state = S_CLOSED; /* a reset: nothing more can reach this client */
            break;
        }
        if (s->state != S_HEAD)
            touch(s);
        if (!stream_is_tls(&s->cs))
            break; /* level-triggered: the next loop turn reads the rest */
    }
}

static void server_read(struct session *s)
{
    if (buf_len(&s->sin) >= BUF_HIGH || s->srv_eof)
        return;
    int err = 0;
    size_t before = buf_len(&s->sin);
    enum io_status st = net_read(s->sfd, &s->sin, READ_CHUNK, &err);
    if (st == IO_OK) {
        POOL_ADD(node_state(s)->bytes_from, buf_len(&s->sin) - before);
        touch(s);
    } else if (st != IO_AGAIN) {
        s->srv_eof = true; /* a reset reads as a close: the framing tells whether anything was cut */
    }
}

/* Take n written bytes off cout, then off the cleared part of src. */
static void consume_written(struct buf *out, struct buf *src, size_t *fwd, size_t n)
{
    size_t from_out = n < buf_len(out) ? n : buf_len(out);
    buf_consume(out, from_out);
    buf_consume(src, n - from_out);
    *fwd -= n - from_out;
}

static bool flush_server(struct session *s)
{
    if (s->sfd < 0 || !s->srv_connected || s->srv_shut || (!buf_len(&s->sout) && !s->req_fwd))
        return false;
    struct iovec iov[2] = {{buf_head(&s->sout), buf_len(&s->sout)}, {buf_head(&s->cin), s->req_fwd}};
    size_t written;
    int err;
    enum io_status st = net_writev(s->sfd, iov, 2, &written, &err);
    if (st == IO_ERR) {
        s->srv_eof = true; /* the node is gone; what it answered (if anything) decides what the client gets */
        s->srv_shut = true;
        return true;
    }
    if (written == 0)
        return false;
    consume_written(&s->sout, &s->cin, &s->req_fwd, written);
    /* drained buffers go back to the allocator: an idle tunnel then holds no block at all (9.4 KB -> see README) */
    buf_release_if_empty(&s->sout);
    buf_release_if_empty(&s->cin);
    POOL_ADD(node_state(s)->bytes_to, written);
    touch(s);
    return true;
}

static bool flush_client(struct session *s)
{
    bool wrote = false;
    while (!s->cli_shut && (buf_len(&s->cout) || s->res_fwd)) {
        size_t written = 0;
        int err = 0;
        struct iovec iov[2] = {{buf_head(&s->cout), buf_len(&s->cout)}, {buf_head(&s->sin), s->res_fwd}};
        enum io_status st = stream_writev(&s->cs, s->cfd, iov, 2, &written, &err);
        if (st == IO_ERR || st == IO_EOF) {
            s->state = S_CLOSED;
            return true;
        }
        if (written == 0)
            break;
        consume_written(&s->cout, &s->sin, &s->res_fwd, written);
        wrote = true;
        if (st == IO_AGAIN)
            break;
    }
    if (wrote) {
        buf_release_if_empty(&s->cout);
        buf_release_if_empty(&s->sin);
        touch(s);
    }
    return wrote;
}

/* ---- watchers, timer, session life ---- */

static void session_free(struct session *s);

static void watch(struct session *s, ev_io *w, int fd, int events, int *current)
{
    if (events == *current)
        return;
    ev_io_stop(s->px->loop, w);
    if (events) {
        ev_io_set(w, fd, events);
        ev_io_start(s->px->loop, w);
    }
    *current = events;
}

/* Which readiness each side needs in the current state (level-triggered: only ask for what can be acted on). */
static void update_watchers(struct session *s)
{
    bool reading = s->state != S_ERROR && !s->cli_eof && buf_len(&s->cin) < BUF_HIGH;
    int ce = stream_events(&s->cs, (reading ? EV_READ : 0) |
                                       (!s->cli_shut && (buf_len(&s->cout) || s->res_fwd) ? EV_WRITE : 0));
    if (s->cli_shut)
        ce &= ~EV_WRITE; /* nothing goes out after our shutdown, a stuck TLS read included */
    if (s->state == S_TLS)
        ce = stream_read_wants_write(&s->cs) ? EV_WRITE : EV_READ;
    watch(s, &s->cw, s->cfd, ce, &s->cw_events);
    if (s->sfd < 0)
        return;
    int se = EV_WRITE;
    if (s->state != S_CONNECT)
        se = (!s->srv_eof && buf_len(&s->sin) < BUF_HIGH ? EV_READ : 0) |
             (!s->srv_shut && (buf_len(&s->sout) || s->req_fwd) ? EV_WRITE : 0);
    watch(s, &s->sw, s->sfd, se, &s->sw_events);
}

/* Step and write until nothing moves (bounded), then re-arm the watchers or free a closed session. */
static void run(struct session *s)
{
    for (int i = 0; i < 32 && s->state != S_CLOSED; i++) {
        if (s->tls_pending && buf_len(&s->cin) < BUF_HIGH && s->state != S_TLS)
            client_read(s);
        bool moved = step(s);
        moved |= flush_server(s);
        moved |= flush_client(s);
        if (!moved)
            break;
    }
    if (s->state == S_CLOSED)
        session_free(s);
    else
        update_watchers(s);
}

static void on_timeout(struct session *s)
{
    switch (s->state) {
    case S_HEAD:
        if (buf_len(&s->cin))
            fail_request(s, 408, POOL_ERR_HEAD_TIMEOUT, "the request head took too long");
        else
            s->state = S_CLOSED; /* idle keep-alive, or a new connection that never sent a byte: closed without
                                  * a 408, as HAProxy's http-ignore-probes (browsers' preconnects) */
        break;
    case S_CONNECT: connect_failed(s, ETIMEDOUT); break;
    case S_EXCHANGE:
        if (!body_done(&s->req_body))
            fail_request(s, 408, POOL_ERR_CLIENT_ABORT, "the request body stalled");
        else
            fail_request(s, 504, POOL_ERR_SERVER_TIMEOUT, "the node did not answer in time");
        break;
    default:
        if (s->state == S_TUNNEL)
            reqlog_fail(s->log, 0, "timeout tunnel");
        s->state = S_CLOSED;
    }
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct session *s = container_of(w, struct session, timer);
    (void)revents;
    ev_tstamp left = s->last_active + s->timeout - ev_now(loop);
    if (left > 0.001) {
        w->repeat = left;
        ev_timer_again(loop, w);
        return;
    }
    on_timeout(s);
    if (s->state != S_CLOSED) {
        w->repeat = s->timeout > 0 ? s->timeout : 1;
        ev_timer_again(loop, w);
    }
    run(s);
}

static void tls_handshake_step(struct session *s)
{
    int events;
    char err[ERR_LEN];
    enum io_status st = stream_handshake(&s->cs, &events, err, sizeof err);
    if (st == IO_OK) {
        s->state = S_HEAD; /* the head timeout set at the accept goes on: the handshake is part of it */
    } else if (st != IO_AGAIN) {
        LOG_DEBUG("session %llu: %s", (unsigned long long)s->id, err); /* err: "TLS handshake: ..." */
        s->state = S_CLOSED;
    }
}

static void on_client_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct session *s = container_of(w, struct session, cw);
    (void)loop;
    if (s->state == S_TLS)
        tls_handshake_step(s);
    if (s->state != S_TLS && (revents & EV_READ || (stream_read_wants_write(&s->cs) && revents & EV_WRITE)))
        client_read(s);
    run(s);
}

static void on_server_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct session *s = container_of(w, struct session, sw);
    (void)loop;
    if (s->state == S_CONNECT) {
        int err = net_connect_result(s->sfd);
        if (err) {
            connect_failed(s, err);
        } else {
            s->srv_connected = true;
            s->log->t_connect = ev_now(loop);
            s->proxy_hdr_len = 0;
            pool_observe_connect(s->px->pool, s->node, true, "connected");
            s->state = S_EXCHANGE;
            set_timeout(s, s->px->conf->timeout_server_ns);
        }
    } else if (revents & EV_READ) {
        server_read(s);
    }
    run(s);
}

static void session_free(struct session *s)
{
    struct proxy *px = s->px;
    if (s->log->active)
        log_request(s, end_word(s));
    srv_close(s);
    ev_io_stop(px->loop, &s->cw);
    ev_timer_stop(px->loop, &s->timer);
    stream_drop(&s->cs, s->cfd); /* no close_notify here: a graceful close sent it already */
    buf_free(&s->cin);
    buf_free(&s->cout);
    buf_free(&s->sout);
    buf_free(&s->replay);
    if (s->prev)
        s->prev->next = s->next;
    else
        px->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    px->nsessions--;
    POOL_SUB(px->pool->sh->conns_active, 1);
    if (s->log != px->log_scratch)
        free(s->log);
    free(s);
    listener_left(px->listener);
}

static struct session *session_new(struct proxy *px, int fd, int listener, const struct net_addr *peer)
{
    struct session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->log = px->conf->log_requests ? calloc(1, sizeof *s->log) : px->log_scratch;
    if (!s->log || stream_accept(&s->cs, fd, px->tls[listener]) < 0) {
        if (s->log != px->log_scratch)
            free(s->log);
        free(s);
        return NULL;
    }
    s->px = px;
    s->id = ++px->next_id;
    s->cfd = fd;
    s->sfd = -1;
    s->node = -1;
    s->peer = *peer;
    s->state = stream_is_tls(&s->cs) ? S_TLS : S_HEAD;
    ev_io_init(&s->cw, on_client_io, fd, EV_READ);
    ev_io_init(&s->sw, on_server_io, -1, 0);
    ev_init(&s->timer, on_timer);
    set_timeout(s, px->conf->timeout_head_ns);
    s->log->t_start = ev_now(px->loop);
    ev_io_start(px->loop, &s->cw);
    s->cw_events = EV_READ;
    s->next = px->sessions;
    if (px->sessions)
        px->sessions->prev = s;
    px->sessions = s;
    px->nsessions++;
    POOL_ADD(px->pool->sh->conns_active, 1);
    POOL_ADD(px->pool->sh->conns_total, 1);
    return s;
}

/* A connection from listener li (common/listener.h). An accept that succeeds may end a shortage episode. */
static void on_accept(void *ctx, int fd, int li, const struct net_addr *peer)
{
    struct proxy *px = ctx;
    shortage_ok(&px->lack, ev_now(px->loop));
    if (!session_new(px, fd, li, peer))
        close(fd);
}

/* An accept failed with err; the listener pauses for 100 ms whatever the cause, the connection waiting in the
 * backlog. Out of descriptors (or memory) is counted and logged per episode by the shortage accounting, which also
 * covers connects and checks; anything else is the listener's to warn about. */
static bool on_accept_failed(void *ctx, int err)
{
    struct proxy *px = ctx;
    if (shortage_kind(err) < 0)
        return false;
    shortage_hit(&px->lack, POOL_OP_ACCEPT, err, ev_now(px->loop));
    return true;
}

int proxy_start(struct proxy *px, struct ev_loop *loop, const char *name, const struct lb_conf *conf, struct pool *pool,
                const int *lfd, struct tls_ctx *const *tls, int n, uint32_t max_sessions, char *err, size_t errlen)
{
    memset(px, 0, sizeof *px);
    snprintf(px->name, sizeof px->name, "%s", name);
    shortage_init(&px->lack, px->name, "accepts pause and requests that need a new node connection get 503", pool->sh);
    px->loop = loop;
    px->conf = conf;
    px->pool = pool;
    px->nlisten = n;
    px->max_sessions = max_sessions;
    px->hdrs = calloc(conf->max_headers, sizeof *px->hdrs);
    /* a rewritten cookie header can outgrow the original (pairs re-joined with "; "): 2x a whole head fits */
    px->scratch_len = 2 * conf->max_head + 64;
    px->scratch = malloc(px->scratch_len);
    px->log_scratch = calloc(1, sizeof *px->log_scratch);
    if (!px->hdrs || !px->scratch || !px->log_scratch) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        px->lfd[i] = lfd[i];
        px->tls[i] = tls[i];
    }
    struct listener_config lc = {.who = px->name,
                                 .fds = px->lfd,
                                 .nfds = n,
                                 .max = max_sessions,
                                 .count = &px->nsessions,
                                 .on_accept = on_accept,
                                 .on_fail = on_accept_failed,
                                 .ctx = px};
    return (px->listener = listener_start(loop, &lc, err, errlen)) ? 0 : -1;
}

void proxy_stop_accepting(struct proxy *px)
{
    if (px->stopping)
        return;
    px->stopping = true;
    listener_stop(px->listener, true); /* the connections queued reached us: closing the sockets would reset them */
    for (int i = 0; i < px->nlisten; i++)
        close(px->lfd[i]);
    for (struct session *s = px->sessions, *next; s; s = next) {
        next = s->next;
        s->close_after = true; /* in-flight requests finish, then their connections close */
        /* an idle keep-alive connection goes now (a client retries a request on a reused connection that closes,
         * RFC 9112 section 9.3.1); a new one whose first request is on its way is served, within timeout head */
        if (s->state == S_HEAD && buf_len(&s->cin) == 0 && s->kept_alive)
            session_free(s);
    }
}

void proxy_close_all(struct proxy *px)
{
    while (px->sessions)
        session_free(px->sessions);
    if (!px->stopping)
        for (int i = 0; i < px->nlisten; i++)
            close(px->lfd[i]);
    px->stopping = true;
    listener_free(px->listener);
    free(px->hdrs);
    free(px->scratch);
    free(px->log_scratch);
    px->log_scratch = NULL;
    px->listener = NULL;
    px->scratch = NULL;
    px->hdrs = NULL;
}

uint32_t proxy_sessions(const struct proxy *px)
{
    return px->nsessions;
}
