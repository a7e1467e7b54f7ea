/* The Redis pub/sub bus: two connections (sub, pub) driven by libev, RESP through hiredis' reader and formatter,
 * bytes moved by net.c or tls.c.
 *
 * Each connection ("link") goes CONNECTING -> [TLS] -> [AUTH] -> [SYNC, sub only] -> READY. The bus is up when
 * both links are READY; the sub link is READY once every SUBSCRIBE/PSUBSCRIBE it sent on connect is confirmed,
 * so a message published after on_link(true) reaches us. Any failure of either link closes both and schedules
 * one retry of both (bus_fail): one link state for the user, one backoff, one on_link(false) per loss.
 *
 * Re-entrancy: user callbacks (on_message, on_link) may call bus_publish/bus_subscribe, which write at once.
 * Those never close a link themselves; a failure found there marks the link broken and feeds its write watcher,
 * so the close happens in a fresh callback and never under a caller that is still walking the reader's replies. */
#include "common/bus.h"

#include "common/buf.h"
#include "common/log.h"
#include "common/net.h"
#include "common/stream.h"
#include "common/tls.h"

#include <errno.h>
#include <ev.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

enum {
    READ_CHUNK = 16384,
    READS_PER_EVENT = 32,  /* then yield to other watchers and come back (fairness) */
    SUBSCRIBE_BATCH = 128, /* channels per SUBSCRIBE when restoring subscriptions */
    OUT_KEEP = 65536,      /* an emptied output buffer larger than this is freed, not kept */
    DEFAULT_MAX_PENDING = 8 << 20,
    REPLY_LOG_MAX = 200,
};

static const double CONNECT_TIMEOUT = 2.0, BACKOFF_MIN = 0.1, BACKOFF_MAX = 5.0;

enum link_state { LINK_CLOSED = 0, LINK_CONNECTING, LINK_TLS, LINK_AUTH, LINK_SYNC, LINK_READY };

struct link {
    struct bus *bus;
    const char *name; /* "sub" or "pub", for logs */
    enum link_state state;
    int fd;
    struct stream stream; /* plain, or TLS for rediss:// */
    redisReader *reader;
    struct buf in, out;
    ev_io rio, wio;
    ev_timer timer;    /* CONNECTING..SYNC must end within CONNECT_TIMEOUT */
    size_t pending;    /* pub: PUBLISHes queued or sent, unanswered; sub: confirmations awaited */
    bool broken;       /* failed outside our callbacks; closed by the write callback that was fed */
    bool error_logged; /* this connection's first error reply was logged; later ones are only counted */
    char broken_why[ERR_LEN];
};

/* A wanted channel or pattern with its reference count; binary-safe names. */
struct topic {
    char *name;
    size_t len;
    uint32_t refs;
    bool confirmed; /* Redis said (p)subscribe for it on the current sub connection */
};

/* Sorted by (bytes, length), so lookup is a binary search. */
struct topic_set {
    struct topic *items;
    size_t count, cap;
};

struct bus {
    struct ev_loop *loop;
    bus_message_fn *on_message;
    bus_link_fn *on_link;
    bus_published_fn *on_published;
    void *ctx;
    bool tls;
    char *host, *port, *user, *password; /* host without brackets; user and password NULL when absent */
    char describe[300];
    struct tls_ctx *tls_ctx;
    size_t max_pending;
    struct link sub, pub;
    struct topic_set channels, patterns;
    ev_timer retry;
    double backoff, backoff_max; /* the next retry's base delay, and its cap */
    double down_since;           /* ev_now of the last loss (or of bus_new); 0 while up */
    char last_error[ERR_LEN];
    uint64_t rng;
    bool up, ever_up, warned;
    struct bus_stats stats;
};

static void bus_fail(struct bus *b, struct link *l, const char *why);
static int link_on_readable(struct link *l, char *why, size_t len);
static int link_after_auth(struct link *l, char *why, size_t len);

/* ---- the URL: redis[s]://[[user]:password@]host[:port][/db] ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decode n bytes into a new string (passwords often need %40 and friends). NULL if malformed or OOM. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        int hi = i + 2 < n ? hexval(s[i + 1]) : -1, lo = hi >= 0 ? hexval(s[i + 2]) : -1;
        if (lo < 0 || (hi == 0 && lo == 0)) {
            free(out);
            return NULL;
        }
        *o++ = (char)(hi * 16 + lo);
        i += 2;
    }
    *o = '\0';
    return out;
}

/* "user:password" or ":password"; a password is required when userinfo is present. */
static int parse_userinfo(struct bus *b, const char *p, size_t n, char *err, size_t errlen)
{
    const char *colon = memchr(p, ':', n);
    if (!colon || colon + 1 == p + n) {
        snprintf(err, errlen, "bad Redis URL: credentials must be ':password@' or 'user:password@'");
        return -1;
    }
    size_t ulen = (size_t)(colon - p);
    if (ulen && !(b->user = pct_decode(p, ulen))) {
        snprintf(err, errlen, "bad Redis URL: malformed %%-escape in the user name");
        return -1;
    }
    if (!(b->password = pct_decode(colon + 1, n - ulen - 1))) {
        snprintf(err, errlen, "bad Redis URL: malformed %%-escape in the password");
        return -1;
    }
    return 0;
}

/* "host", "host:port", "[v6]" or "[v6]:port". */
static int parse_hostport(struct bus *b, const char *p, size_t n, char *err, size_t errlen)
{
    const char *end = p + n, *host = p, *hend, *port = NULL;
    if (n && p[0] == '[') {
        host = p + 1;
        hend = memchr(host, ']', n - 1);
        if (!hend || (hend + 1 < end && hend[1] != ':')) {
            snprintf(err, errlen, "bad Redis URL: malformed [IPv6] host");
            return -1;
        }
        port = hend + 1 < end ? hend + 2 : NULL;
    } else {
        hend = memchr(p, ':', n);
        port = hend ? hend + 1 : NULL;
        hend = hend ? hend : end;
        if (port && memchr(port, ':', (size_t)(end - port))) {
            snprintf(err, errlen, "bad Redis URL: an IPv6 host needs brackets, as in redis://[::1]:6379");
            return -1;
        }
    }
    if (hend == host || hend - host > 255) {
        snprintf(err, errlen, "bad Redis URL: %s host", hend == host ? "empty" : "too long a");
        return -1;
    }
    long v = 0;
    for (const char *q = port; q && q < end && v <= 65535; q++)
        v = *q >= '0' && *q <= '9' ? v * 10 + (*q - '0') : 65536;
    if (port && (v < 1 || v > 65535)) {
        snprintf(err, errlen, "bad Redis URL: bad port '%.*s'", (int)(end - port < 16 ? end - port : 16), port);
        return -1;
    }
    char num[8];
    snprintf(num, sizeof num, "%ld", port ? v : 6379L);
    b->host = strndup(host, (size_t)(hend - host));
    b->port = strdup(num);
    if (!b->host || !b->port) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int parse_url(struct bus *b, const char *url, char *err, size_t errlen)
{
    const char *p;
    if (url && !strncasecmp(url, "redis://", 8)) {
        p = url + 8;
    } else if (url && !strncasecmp(url, "rediss://", 9)) {
        p = url + 9;
        b->tls = true;
    } else {
        /* Never echo the URL: it may carry a password. */
        snprintf(err, errlen, "bad Redis URL: %s", url ? "the scheme must be redis:// or rediss://" : "none given");
        return -1;
    }
    size_t n = strcspn(p, "/?#"); /* the path (a database number) is ignored: pub/sub spans databases */
    const char *at = NULL;
    for (size_t i = 0; i < n; i++)
        if (p[i] == '@')
            at = p + i; /* the last '@': an unescaped '@' in a password still parses */
    if (at) {
        if (parse_userinfo(b, p, (size_t)(at - p), err, errlen) < 0)
            return -1;
        n -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    if (parse_hostport(b, p, n, err, errlen) < 0)
        return -1;
    bool v6 = strchr(b->host, ':') != NULL;
    snprintf(b->describe, sizeof b->describe, "%s://%s%s%s:%s", b->tls ? "rediss" : "redis", v6 ? "[" : "", b->host,
             v6 ? "]" : "", b->port);
    return 0;
}

/* ---- the wanted channels and patterns ---- */

static int topic_cmp(const struct topic *t, const char *name, size_t len)
{
    int c = memcmp(t->name, name, t->len < len ? t->len : len);
    return c ? c : (t->len > len) - (t->len < len);
}

/* Index of name, or where it would go; *found says which. */
static size_t topic_find(const struct topic_set *s, const char *name, size_t len, bool *found)
{
    size_t lo = 0, hi = s->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = topic_cmp(&s->items[mid], name, len);
        if (!c) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static bool topic_has(const struct topic_set *s, const char *name, size_t len)
{
    bool found;
    topic_find(s, name, len, &found);
    return found;
}

/* Take a reference: 1 when name is new (0 -> 1), 0 when it was there, -1 on out of memory. */
static int topic_add(struct topic_set *s, const char *name, size_t len)
{
    bool found;
    size_t i = topic_find(s, name, len, &found);
    if (found) {
        s->items[i].refs++;
        return 0;
    }
    if (s->count == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        struct topic *items = realloc(s->items, cap * sizeof *items);
        if (!items)
            return -1;
        s->items = items;
        s->cap = cap;
    }
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return -1;
    memcpy(copy, name, len);
    memmove(&s->items[i + 1], &s->items[i], (s->count - i) * sizeof *s->items);
    s->items[i] = (struct topic){.name = copy, .len = len, .refs = 1};
    s->count++;
    return 1;
}

/* Drop a reference: 1 when it was the last (1 -> 0), 0 otherwise (including a name never added). */
static int topic_del(struct topic_set *s, const char *name, size_t len)
{
    bool found;
    size_t i = topic_find(s, name, len, &found);
    if (!found || --s->items[i].refs > 0)
        return 0;
    free(s->items[i].name);
    memmove(&s->items[i], &s->items[i + 1], (s->count - i - 1) * sizeof *s->items);
    s->count--;
    return 1;
}

static void topic_set_free(struct topic_set *s)
{
    for (size_t i = 0; i < s->count; i++)
        free(s->items[i].name);
    free(s->items);
    *s = (struct topic_set){0};
}

/* ---- link I/O ---- */

static void link_set_state(struct link *l, enum link_state state)
{
    l->state = state;
}

/* Watch for the readiness asked for, and only that. */
static void link_watch(struct link *l, bool readable, bool writable)
{
    struct ev_loop *loop = l->bus->loop;
    if (readable)
        ev_io_start(loop, &l->rio);
    else
        ev_io_stop(loop, &l->rio);
    if (writable)
        ev_io_start(loop, &l->wio);
    else
        ev_io_stop(loop, &l->wio);
}

static enum io_status link_read(struct link *l, int *err)
{
    enum io_status st = stream_read(&l->stream, l->fd, &l->in, READ_CHUNK, err);
    if (st == IO_AGAIN && stream_read_wants_write(&l->stream))
        ev_io_start(l->bus->loop, &l->wio);
    return st;
}

static enum io_status link_write(struct link *l, size_t *written, int *err)
{
    return stream_write(&l->stream, l->fd, buf_head(&l->out), buf_len(&l->out), written, err);
}

static const char *io_error(const struct link *l, enum io_status st, int e)
{
    if (st == IO_EOF)
        return "closed by the server";
    return stream_strerror(&l->stream, e);
}

/* Send what out holds until it is empty or the socket is full. The write watcher runs only while bytes wait
 * (and the socket, not a TLS read, is what they wait for). */
static int link_flush(struct link *l, char *why, size_t len)
{
    while (buf_len(&l->out)) {
        size_t n = 0;
        int e = 0;
        enum io_status st = link_write(l, &n, &e);
        if (st == IO_AGAIN || (st == IO_OK && n == 0)) {
            if (stream_write_wants_read(&l->stream))
                ev_io_stop(l->bus->loop, &l->wio); /* rio is always on: the read side resumes us */
            else
                ev_io_start(l->bus->loop, &l->wio);
            return 0;
        }
        if (st != IO_OK) {
            snprintf(why, len, "write: %s", io_error(l, st, e));
            return -1;
        }
        buf_consume(&l->out, n);
    }
    if (!stream_read_wants_write(&l->stream))
        ev_io_stop(l->bus->loop, &l->wio);
    if (l->out.cap > OUT_KEEP)
        buf_free(&l->out); /* a burst should not pin its peak for the life of the link */
    return 0;
}

/* Format a command into out (nothing is written). -1 on out of memory or past out.max. */
static int link_append(struct link *l, int argc, const char **argv, const size_t *lens)
{
    char *cmd = NULL;
    int n = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (n < 0)
        return -1;
    int rc = buf_append(&l->out, cmd, (size_t)n);
    redisFreeCommand(cmd);
    return rc;
}

/* Queue a command and write at once when nothing was waiting before it (else the write watcher is on). */
static int link_send(struct link *l, int argc, const char **argv, const size_t *lens, char *why, size_t len)
{
    bool idle = buf_len(&l->out) == 0;
    if (link_append(l, argc, argv, lens) < 0) {
        snprintf(why, len, "out of memory queueing %s", argv[0]);
        return -1;
    }
    return idle ? link_flush(l, why, len) : 0;
}

/* A failure found outside our own callbacks: close from the write callback, on this loop iteration. */
static void link_break(struct link *l, const char *why)
{
    if (l->broken)
        return;
    l->broken = true;
    snprintf(l->broken_why, sizeof l->broken_why, "%s", why);
    ev_feed_event(l->bus->loop, &l->wio, EV_WRITE);
}

/* Keepalive probes: a subscriber only reads, so without them a Redis that vanished without a RST (a failover,
 * a dropped NAT entry) would leave the link up and silent forever. Dead after about 10 + 3 * 5 s. */
static void set_keepalive(int fd)
{
    int on = 1, idle = 10, intvl = 5, cnt = 3;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

/* A new sub connection holds nothing until Redis confirms each name again. */
static void unconfirm_all(struct bus *b)
{
    for (size_t i = 0; i < b->channels.count; i++)
        b->channels.items[i].confirmed = false;
    for (size_t i = 0; i < b->patterns.count; i++)
        b->patterns.items[i].confirmed = false;
}

/* Any state -> CLOSED: stop the watchers, free the connection's memory. Unanswered PUBLISHes count as failed. */
static void link_close(struct link *l)
{
    struct ev_loop *loop = l->bus->loop;
    ev_io_stop(loop, &l->rio); /* also clears a pending (fed) event */
    ev_io_stop(loop, &l->wio);
    ev_timer_stop(loop, &l->timer);
    if (l == &l->bus->pub)
        l->bus->stats.publish_failed += l->pending;
    else
        unconfirm_all(l->bus);
    stream_close(&l->stream, l->fd);
    if (l->reader)
        redisReaderFree(l->reader);
    buf_free(&l->in);
    buf_free(&l->out);
    l->reader = NULL;
    l->fd = -1;
    l->pending = 0;
    l->broken = l->error_logged = false;
    link_set_state(l, LINK_CLOSED);
}

/* CLOSED -> CONNECTING: start a non-blocking connect to addr; the write watcher says when it is done. */
static int link_open(struct link *l, const struct net_addr *addr, char *why, size_t len)
{
    l->fd = stream_connect(&l->stream, addr, NULL);
    if (l->fd < 0) {
        snprintf(why, len, "%s link: cannot connect: %s", l->name, strerror(errno));
        return -1;
    }
    set_keepalive(l->fd);
    if (!(l->reader = redisReaderCreate())) {
        snprintf(why, len, "out of memory");
        return -1;
    }
    ev_io_set(&l->rio, l->fd, EV_READ);
    ev_io_set(&l->wio, l->fd, EV_WRITE);
    ev_timer_set(&l->timer, CONNECT_TIMEOUT, 0.);
    ev_timer_start(l->bus->loop, &l->timer);
    link_set_state(l, LINK_CONNECTING);
    link_watch(l, false, true);
    return 0;
}

/* ---- the link states ---- */

/* SYNC or AUTH done -> READY: the timeout is over; the bus comes up when the other link is READY too. */
static void link_ready(struct link *l)
{
    struct bus *b = l->bus;
    ev_timer_stop(b->loop, &l->timer);
    link_set_state(l, LINK_READY);
    if (b->up || b->sub.state != LINK_READY || b->pub.state != LINK_READY)
        return;
    b->up = true;
    b->down_since = 0;
    b->backoff = BACKOFF_MIN;
    b->warned = false;
    if (b->ever_up)
        b->stats.reconnects++;
    b->ever_up = true;
    LOG_INFO("redis %s: link up (%zu channels, %zu patterns subscribed)", b->describe, b->channels.count,
             b->patterns.count);
    if (b->on_link)
        b->on_link(b->ctx, true);
}

/* The byte stream is up (TCP, and TLS for rediss). Entry: CONNECTING or TLS. Next: AUTH when a password is set,
 * else what follows AUTH. */
static int link_start_session(struct link *l, char *why, size_t len)
{
    struct bus *b = l->bus;
    link_watch(l, true, false);
    if (!b->password)
        return link_after_auth(l, why, len);
    const char *argv[3] = {"AUTH", b->user ? b->user : b->password, b->password};
    size_t lens[3] = {4, strlen(argv[1]), strlen(b->password)};
    link_set_state(l, LINK_AUTH);
    return link_send(l, b->user ? 3 : 2, argv, lens, why, len);
}

/* Entry: TLS, the handshake's readiness came. Next: session start (AUTH...), TLS again, or failure. */
static int link_on_tls(struct link *l, char *why, size_t len)
{
    int events;
    enum io_status st = stream_handshake(&l->stream, &events, why, len);
    if (st == IO_AGAIN) {
        link_watch(l, events & STREAM_READ, events & STREAM_WRITE);
        return 0;
    }
    return st == IO_OK ? link_start_session(l, why, len) : -1;
}

/* Entry: CONNECTING, the socket became writable: the TCP connect finished. Next: TLS (rediss) or session start;
 * or failure (refused, unreachable). */
static int link_on_connect(struct link *l, char *why, size_t len)
{
    int e = stream_connected(&l->stream, l->fd);
    if (e) {
        snprintf(why, len, "connect: %s", strerror(e));
        return -1;
    }
    if (!l->bus->tls)
        return link_start_session(l, why, len);
    if (stream_start_tls(&l->stream, l->fd, l->bus->tls_ctx, l->bus->host) < 0) {
        snprintf(why, len, "out of memory");
        return -1;
    }
    link_set_state(l, LINK_TLS);
    return link_on_tls(l, why, len);
}

/* Both links send everything wanted when they connect: the sub link its subscriptions, in batches. */
static int send_all(struct link *l, const struct topic_set *set, const char *cmd, char *why, size_t len)
{
    const char *argv[SUBSCRIBE_BATCH + 1];
    size_t lens[SUBSCRIBE_BATCH + 1];
    argv[0] = cmd;
    lens[0] = strlen(cmd);
    for (size_t i = 0; i < set->count;) {
        int argc = 1;
        for (; i < set->count && argc <= SUBSCRIBE_BATCH; i++, argc++) {
            argv[argc] = set->items[i].name;
            lens[argc] = set->items[i].len;
        }
        if (link_send(l, argc, argv, lens, why, len) < 0)
            return -1;
        l->pending += (size_t)argc - 1; /* Redis confirms each channel of a SUBSCRIBE separately */
    }
    return 0;
}

/* AUTH accepted or not needed. Entry: AUTH or session start. Next: the pub link is READY; the sub link sends
 * its subscriptions and is SYNC until all are confirmed (READY at once if there are none). */
static int link_after_auth(struct link *l, char *why, size_t len)
{
    struct bus *b = l->bus;
    if (l == &b->sub) {
        link_set_state(l, LINK_SYNC);
        if (send_all(l, &b->channels, "SUBSCRIBE", why, len) < 0 ||
            send_all(l, &b->patterns, "PSUBSCRIBE", why, len) < 0)
            return -1;
        if (l->pending)
            return 0;
    }
    link_ready(l);
    return 0;
}

/* ---- replies ---- */

static bool is_str(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING;
}

static bool kind_is(const redisReply *r, const char *kind)
{
    return (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->len == strlen(kind) &&
           !memcmp(r->str, kind, r->len);
}

/* An error reply to a PUBLISH: counted always, logged once per connection (a hot path could otherwise flood
 * the log). */
static void publish_error(struct link *l, const redisReply *r)
{
    l->bus->stats.errors++;
    if (l->error_logged)
        return;
    l->error_logged = true;
    LOG_WARN("redis %s: %s link: error reply: %.*s (further ones are counted, not logged)", l->bus->describe, l->name,
             (int)(r->len < REPLY_LOG_MAX ? r->len : REPLY_LOG_MAX), r->str);
}

/* Entry: AUTH. Next: what follows AUTH, or failure (wrong password: retried with backoff, counted). */
static int on_auth_reply(struct link *l, const redisReply *r, char *why, size_t len)
{
    if (kind_is(r, "OK"))
        return link_after_auth(l, why, len);
    if (r->type == REDIS_REPLY_ERROR)
        snprintf(why, len, "AUTH refused: %.*s", (int)(r->len < REPLY_LOG_MAX ? r->len : REPLY_LOG_MAX), r->str);
    else
        snprintf(why, len, "unexpected reply (type %d) to AUTH", r->type);
    return -1;
}

/* A PUBLISH answer: the receiver count (acknowledged) or an error (failed). Anything else is a protocol error,
 * and the publish stays pending so closing the link counts it as failed. */
static int on_pub_reply(struct link *l, const redisReply *r, char *why, size_t len)
{
    struct bus *b = l->bus;
    if (!l->pending || (r->type != REDIS_REPLY_INTEGER && r->type != REDIS_REPLY_ERROR)) {
        snprintf(why, len, "unexpected reply (type %d) on the publish link", r->type);
        return -1;
    }
    l->pending--;
    if (r->type == REDIS_REPLY_INTEGER) {
        b->stats.published++;
        if (b->on_published)
            b->on_published(b->ctx, r->integer);
        return 0;
    }
    b->stats.publish_failed++;
    publish_error(l, r);
    if (b->on_published)
        b->on_published(b->ctx, -1);
    return 0;
}

/* A (p)subscribe confirmation marks the name held, if it is still wanted (an UNSUBSCRIBE may have followed). */
static void confirm(struct bus *b, const redisReply *kind, const redisReply *name)
{
    bool pattern = kind_is(kind, "psubscribe");
    if (!is_str(name) || (!pattern && !kind_is(kind, "subscribe")))
        return;
    struct topic_set *set = pattern ? &b->patterns : &b->channels;
    bool found;
    size_t i = topic_find(set, name->str, name->len, &found);
    if (found)
        set->items[i].confirmed = true;
}

/* A push on the subscribed link: a message (delivered only while still wanted, so nothing arrives after
 * bus_unsubscribe returns), or a (un)subscribe confirmation (the last one awaited in SYNC makes it READY). */
static int on_sub_push(struct link *l, const redisReply *r, char *why, size_t len)
{
    struct bus *b = l->bus;
    redisReply *const *e = r->element;
    if (r->elements == 3 && kind_is(e[0], "message") && is_str(e[1]) && is_str(e[2])) {
        if (!topic_has(&b->channels, e[1]->str, e[1]->len))
            return 0;
        b->stats.received++;
        if (b->on_message)
            b->on_message(b->ctx, e[1]->str, e[1]->len, e[2]->str, e[2]->len);
        return 0;
    }
    if (r->elements == 4 && kind_is(e[0], "pmessage") && is_str(e[1]) && is_str(e[2]) && is_str(e[3])) {
        if (!topic_has(&b->patterns, e[1]->str, e[1]->len))
            return 0;
        b->stats.received++;
        if (b->on_message)
            b->on_message(b->ctx, e[2]->str, e[2]->len, e[3]->str, e[3]->len);
        return 0;
    }
    if (r->elements == 3 && (kind_is(e[0], "subscribe") || kind_is(e[0], "unsubscribe") ||
                             kind_is(e[0], "psubscribe") || kind_is(e[0], "punsubscribe"))) {
        confirm(b, e[0], e[1]);
        if (l->pending && --l->pending == 0 && l->state == LINK_SYNC)
            link_ready(l);
        return 0;
    }
    snprintf(why, len, "unexpected push on the subscribe link");
    return -1;
}

/* An error on the subscribed link (a refused SUBSCRIBE, say) leaves us not knowing which channels we hold:
 * reconnect, which subscribes everything again; bus_fail counts and logs it (once per edge, not per retry). */
static int on_sub_reply(struct link *l, const redisReply *r, char *why, size_t len)
{
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 3)
        return on_sub_push(l, r, why, len);
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, len, "error reply: %.*s", (int)(r->len < REPLY_LOG_MAX ? r->len : REPLY_LOG_MAX), r->str);
        return -1;
    }
    snprintf(why, len, "unexpected reply (type %d) on the subscribe link", r->type);
    return -1;
}

/* Feed what was read to the reader and handle each complete reply. */
static int link_feed(struct link *l, char *why, size_t len)
{
    void *reply = NULL;
    if (redisReaderFeed(l->reader, buf_head(&l->in), buf_len(&l->in)) != REDIS_OK) {
        snprintf(why, len, "out of memory reading a reply");
        return -1;
    }
    buf_consume(&l->in, buf_len(&l->in));
    while (redisReaderGetReply(l->reader, &reply) == REDIS_OK && reply) {
        int rc = l->state == LINK_AUTH ? on_auth_reply(l, reply, why, len)
                 : l == &l->bus->pub   ? on_pub_reply(l, reply, why, len)
                                       : on_sub_reply(l, reply, why, len);
        freeReplyObject(reply);
        if (rc < 0)
            return -1;
    }
    if (l->reader->err) {
        snprintf(why, len, "protocol error: %s", l->reader->errstr);
        return -1;
    }
    return 0;
}

/* ---- events ---- */

/* Entry: AUTH, SYNC or READY, readable. Reads until the socket is drained (TLS may hold decrypted bytes the fd
 * no longer shows) or READS_PER_EVENT reads, then yields to other watchers and comes back. */
static int link_on_readable(struct link *l, char *why, size_t len)
{
    if (stream_write_wants_read(&l->stream) && link_flush(l, why, len) < 0)
        return -1;
    for (int i = 0; i < READS_PER_EVENT; i++) {
        int e = 0;
        enum io_status st = link_read(l, &e);
        if (st == IO_AGAIN)
            return 0;
        if (st != IO_OK) {
            snprintf(why, len, "read: %s", io_error(l, st, e));
            return -1;
        }
        if (link_feed(l, why, len) < 0)
            return -1;
    }
    ev_feed_event(l->bus->loop, &l->rio, EV_READ);
    return 0;
}

/* Entry: AUTH, SYNC or READY, writable: send what waits; resume a TLS read that needed to write. */
static int link_on_writable(struct link *l, char *why, size_t len)
{
    if (link_flush(l, why, len) < 0)
        return -1;
    if (!stream_read_wants_write(&l->stream))
        return 0; /* the read below starts afresh: it sets the flag again if it stops for the same */
    if (!buf_len(&l->out))
        ev_io_stop(l->bus->loop, &l->wio);
    return link_on_readable(l, why, len);
}

static void link_event(struct link *l, bool readable)
{
    char why[ERR_LEN] = "";
    int rc = 0;
    if (l->broken) {
        bus_fail(l->bus, l, l->broken_why);
        return;
    }
    switch (l->state) {
    case LINK_CONNECTING: rc = link_on_connect(l, why, sizeof why); break;
    case LINK_TLS: rc = link_on_tls(l, why, sizeof why); break;
    case LINK_AUTH:
    case LINK_SYNC:
    case LINK_READY: rc = readable ? link_on_readable(l, why, sizeof why) : link_on_writable(l, why, sizeof why); break;
    case LINK_CLOSED: break;
    }
    if (rc < 0)
        bus_fail(l->bus, l, why);
}

static void rio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    link_event(container_of(w, struct link, rio), true);
}

static void wio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    link_event(container_of(w, struct link, wio), false);
}

static void timeout_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    static const char *const waiting[LINK_READY + 1] = {[LINK_CONNECTING] = "connecting",
                                                        [LINK_TLS] = "in the TLS handshake",
                                                        [LINK_AUTH] = "waiting for AUTH",
                                                        [LINK_SYNC] = "waiting for subscriptions"};
    struct link *l = container_of(w, struct link, timer);
    char why[64];
    (void)loop;
    (void)revents;
    snprintf(why, sizeof why, "timed out %s", waiting[l->state] ? waiting[l->state] : "");
    bus_fail(l->bus, l, why);
}

/* ---- the bus as one link ---- */

/* xorshift64*: jitter only, no need for quality or a global seed. Uniform in [0, 1). */
static double next_random(struct bus *b)
{
    b->rng ^= b->rng >> 12;
    b->rng ^= b->rng << 25;
    b->rng ^= b->rng >> 27;
    return (double)((b->rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* Jitter (+-20%) keeps a fleet of nodes from reconnecting in lockstep after a Redis restart. */
static void schedule_retry(struct bus *b)
{
    double delay = b->backoff * (0.8 + 0.4 * next_random(b));
    b->backoff = b->backoff * 2 < b->backoff_max ? b->backoff * 2 : b->backoff_max;
    ev_timer_set(&b->retry, delay, 0.);
    ev_timer_start(b->loop, &b->retry);
}

/* Either link failed (l, or NULL before any link existed): close both, count, log on the edge, retry later.
 * on_link(false) comes last, once per loss, with the bus already consistent. */
static void bus_fail(struct bus *b, struct link *l, const char *why)
{
    bool was_up = b->up;
    link_close(&b->sub);
    link_close(&b->pub);
    b->up = false;
    if (was_up)
        b->down_since = ev_now(b->loop);
    b->stats.errors++;
    schedule_retry(b);
    const char *name = l ? l->name : "", *sep = l ? " link: " : "";
    snprintf(b->last_error, sizeof b->last_error, "%s%s%s", name, sep, why);
    if (was_up)
        LOG_WARN("redis %s: link lost (%s%s%s); reconnecting", b->describe, name, sep, why);
    else if (!b->warned)
        LOG_WARN("redis %s: cannot connect (%s%s%s); retrying with backoff", b->describe, name, sep, why);
    else
        LOG_DEBUG("redis %s: retry failed (%s%s%s); next in %.2f s", b->describe, name, sep, why,
                  ev_timer_remaining(b->loop, &b->retry));
    b->warned = true;
    if (was_up && b->on_link)
        b->on_link(b->ctx, false);
}

/* Entry: down, both links CLOSED. The name is resolved on every attempt (blocking, but only here) because a
 * managed Redis moves to a new address on failover. Next: both CONNECTING, or down again. */
static void retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct bus *b = container_of(w, struct bus, retry);
    struct net_addr addr;
    char why[ERR_LEN];
    (void)loop;
    (void)revents;
    if (net_resolve(b->host, b->port, &addr, why, sizeof why) < 0 || link_open(&b->sub, &addr, why, sizeof why) < 0 ||
        link_open(&b->pub, &addr, why, sizeof why) < 0)
        bus_fail(b, NULL, why);
}

static void link_init(struct link *l, struct bus *b, const char *name)
{
    l->bus = b;
    l->name = name;
    l->fd = -1;
    ev_io_init(&l->rio, rio_cb, -1, EV_READ);
    ev_io_init(&l->wio, wio_cb, -1, EV_WRITE);
    ev_timer_init(&l->timer, timeout_cb, CONNECT_TIMEOUT, 0.);
}

/* ---- the API ---- */

struct bus *bus_new(struct ev_loop *loop, const struct bus_options *opts, char *err, size_t errlen)
{
    struct bus *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    b->loop = loop;
    b->on_message = opts->on_message;
    b->on_link = opts->on_link;
    b->on_published = opts->on_published;
    b->ctx = opts->ctx;
    b->down_since = ev_now(loop);
    link_init(&b->sub, b, "sub");
    link_init(&b->pub, b, "pub");
    b->max_pending = opts->max_pending ? opts->max_pending : DEFAULT_MAX_PENDING;
    b->pub.out.max = b->max_pending;
    b->backoff = BACKOFF_MIN;
    b->backoff_max = opts->retry_max > 0 ? opts->retry_max : BACKOFF_MAX;
    b->rng = ((uint64_t)time(NULL) << 20) ^ ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)b ^ 1;
    ev_timer_init(&b->retry, retry_cb, 0., 0.);
    if (parse_url(b, opts->url, err, errlen) < 0)
        goto fail;
    if (b->tls && !(b->tls_ctx = tls_client_ctx_new(opts->ca_file, !opts->tls_insecure, err, errlen)))
        goto fail;
    ev_timer_start(loop, &b->retry); /* the first attempt runs on the loop, so bus_new never blocks */
    return b;
fail:
    bus_free(b);
    return NULL;
}

void bus_free(struct bus *b)
{
    if (!b)
        return;
    ev_timer_stop(b->loop, &b->retry);
    link_close(&b->sub);
    link_close(&b->pub);
    topic_set_free(&b->channels);
    topic_set_free(&b->patterns);
    tls_ctx_free(b->tls_ctx);
    if (b->password)
        explicit_bzero(b->password, strlen(b->password));
    free(b->host);
    free(b->port);
    free(b->user);
    free(b->password);
    free(b);
}

/* Send one (P)(UN)SUBSCRIBE now if the sub link is past AUTH; before that, connecting sends the whole set. */
static void sub_send(struct bus *b, const char *cmd, const char *name, size_t len)
{
    struct link *l = &b->sub;
    char why[ERR_LEN];
    const char *argv[2] = {cmd, name};
    size_t lens[2] = {strlen(cmd), len};
    if ((l->state != LINK_SYNC && l->state != LINK_READY) || l->broken)
        return;
    if (link_send(l, 2, argv, lens, why, sizeof why) < 0)
        link_break(l, why);
    else
        l->pending++;
}

static int want(struct bus *b, struct topic_set *set, const char *cmd, const char *name, size_t len)
{
    int rc = topic_add(set, name, len);
    if (rc > 0)
        sub_send(b, cmd, name, len);
    return rc < 0 ? -1 : 0;
}

static int unwant(struct bus *b, struct topic_set *set, const char *cmd, const char *name, size_t len)
{
    if (topic_del(set, name, len) > 0)
        sub_send(b, cmd, name, len);
    return 0;
}

int bus_subscribe(struct bus *b, const char *channel, size_t len)
{
    return want(b, &b->channels, "SUBSCRIBE", channel, len);
}

int bus_unsubscribe(struct bus *b, const char *channel, size_t len)
{
    return unwant(b, &b->channels, "UNSUBSCRIBE", channel, len);
}

int bus_psubscribe(struct bus *b, const char *pattern, size_t len)
{
    return want(b, &b->patterns, "PSUBSCRIBE", pattern, len);
}

int bus_punsubscribe(struct bus *b, const char *pattern, size_t len)
{
    return unwant(b, &b->patterns, "PUNSUBSCRIBE", pattern, len);
}

int bus_publish(struct bus *b, const char *channel, size_t channel_len, const char *data, size_t len)
{
    struct link *l = &b->pub;
    char why[ERR_LEN];
    const char *argv[3] = {"PUBLISH", channel, data};
    size_t lens[3] = {7, channel_len, len};
    bool idle = buf_len(&l->out) == 0;
    /* Checked before formatting: the formatter would copy an oversized message only to have it refused. */
    if (!b->up || l->broken || channel_len > b->max_pending || len > b->max_pending - channel_len ||
        link_append(l, 3, argv, lens) < 0) {
        b->stats.publish_failed++;
        return -1;
    }
    l->pending++;
    if (idle && link_flush(l, why, sizeof why) < 0)
        link_break(l, why);
    return 0;
}

bool bus_is_up(const struct bus *b)
{
    return b->up;
}

bool bus_confirmed(const struct bus *b, bool pattern, const char *name, size_t len)
{
    const struct topic_set *set = pattern ? &b->patterns : &b->channels;
    bool found;
    size_t i = topic_find(set, name, len, &found);
    return found && set->items[i].confirmed;
}

double bus_down_since(const struct bus *b)
{
    return b->down_since;
}

const char *bus_last_error(const struct bus *b)
{
    return b->last_error;
}

const struct bus_stats *bus_get_stats(const struct bus *b)
{
    return &b->stats;
}

const char *bus_describe(const struct bus *b)
{
    return b->describe;
}
