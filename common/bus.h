/* The Redis pub/sub bus of a node: RESP through hiredis' reader and formatter, over our own non-blocking I/O on
 * libev, plain (redis://) or TLS (rediss://, as managed Redis such as Upstash requires).
 *
 * Two connections: one SUBSCRIBEd, one for PUBLISH (a subscribed connection cannot publish). Publishes on one
 * connection reach subscribers in order, which is what keeps per-sender order across nodes. Either link dropping
 * starts a reconnect with exponential backoff (100 ms doubling to retry_max, 5 s by default, with jitter); on
 * reconnect every channel and pattern still wanted is subscribed again. While the publish link is down, bus_publish
 * fails fast and counts: a node keeps serving its local clients and never buffers without bound. No hiredis type leaks
 * out. */
#ifndef COMMON_BUS_H
#define COMMON_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bus;
struct ev_loop;

/* A message on channel (from SUBSCRIBE or PSUBSCRIBE). data is valid during the call only. */
typedef void bus_message_fn(void *ctx, const char *channel, size_t channel_len, const char *data, size_t len);
/* The link came up (both connections ready and subscriptions restored) or went down. */
typedef void bus_link_fn(void *ctx, bool up);
/* Redis answered a PUBLISH: the number of subscribers that got it, or -1 for an error reply. Called once per
 * bus_publish that returned 0, in the same order, except for those still unanswered when the link is lost (the
 * on_link(false) that follows says they are gone). */
typedef void bus_published_fn(void *ctx, long long receivers);

struct bus_options {
    const char *url;     /* redis://[[user]:password@]host[:port] or rediss://…; port defaults to 6379 */
    const char *ca_file; /* rediss: CA certificates (default: the system store) */
    bool tls_insecure;   /* rediss: do not verify the server's certificate */
    size_t max_pending;  /* publish bytes that may wait unsent on a live link; 0 means 8 MiB */
    double retry_max;    /* seconds: the longest wait between two connect attempts; 0 means 5 */
    bus_message_fn *on_message;
    bus_link_fn *on_link;
    bus_published_fn *on_published;
    void *ctx;
};

struct bus_stats {
    uint64_t published;      /* PUBLISH commands acknowledged by Redis */
    uint64_t publish_failed; /* refused while down or full, or lost unacknowledged with a dropped link */
    uint64_t received;       /* messages delivered to on_message */
    uint64_t reconnects;     /* links re-established after a loss */
    uint64_t errors;         /* connect failures, protocol errors, error replies */
};

/* Parse the URL and start connecting (returns at once). NULL with err when the options are invalid. */
struct bus *bus_new(struct ev_loop *loop, const struct bus_options *opts, char *err, size_t errlen);
/* Free everything; never call it from inside a bus callback. */
void bus_free(struct bus *b);

/* Reference-counted interest in a channel (or pattern): the first reference sends SUBSCRIBE (now if up, else on
 * connect), the last unsubscribe sends UNSUBSCRIBE. 0, or -1 on out of memory. */
int bus_subscribe(struct bus *b, const char *channel, size_t len);
int bus_unsubscribe(struct bus *b, const char *channel, size_t len);
int bus_psubscribe(struct bus *b, const char *pattern, size_t len);
int bus_punsubscribe(struct bus *b, const char *pattern, size_t len);

/* Queue PUBLISH channel data. 0 when queued; -1 when the link is down or max_pending is exceeded (counted). */
int bus_publish(struct bus *b, const char *channel, size_t channel_len, const char *data, size_t len);

bool bus_is_up(const struct bus *b);
/* Redis confirmed the SUBSCRIBE (pattern: PSUBSCRIBE) of this still wanted name on the current connection. */
bool bus_confirmed(const struct bus *b, bool pattern, const char *name, size_t len);
/* ev_now when the bus last went down (its creation if it never came up); 0 while it is up. */
double bus_down_since(const struct bus *b);
/* Why the last connect attempt or link failed ("" before any failure), for logs and health checks. */
const char *bus_last_error(const struct bus *b);
const struct bus_stats *bus_get_stats(const struct bus *b);
/* "host:port" and scheme of the configured server, for logs (never the password). */
const char *bus_describe(const struct bus *b);

#endif
