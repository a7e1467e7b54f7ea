/* Cross-node delivery through Redis pub/sub: one channel PREFIX#ROOM per room, subscribed while the room has local
 * members. A published message carries a header (wire.h) naming the node, so a node can drop its own publications
 * (it already delivered locally), and the client's text or binary message unchanged.
 *
 * Every participant also heartbeats on PREFIX-nodes (peers.h), and each PUBLISH's receiver count is compared with
 * the participants that should hold the channel: a publish that reached fewer is counted ("short") and logged, first
 * at once, then as a sum every SYNC_LOG_EVERY seconds. While Redis is down a warning repeats as often, and
 * sync_health says why the node is cut off. A room's channel stays subscribed SYNC_LINGER seconds after its last
 * local member left, so the heartbeats have told the others before the subscription goes (no false "short"). */
#ifndef REFSERVER_SYNC_H
#define REFSERVER_SYNC_H

#include "refserver/peers.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct room;
struct room_registry;
struct bus_stats;

/* A message from another node for a local room. */
typedef void sync_deliver_fn(void *ctx, struct room *room, uint8_t opcode, const char *payload, size_t len);
/* A message on a Socket.IO adapter channel (one that starts with sio_key and '#' or '-'), as it came. */
typedef void sync_raw_fn(void *ctx, const char *channel, size_t channel_len, const char *data, size_t len);

#define SYNC_HEARTBEAT 1.0  /* seconds between two heartbeats */
#define SYNC_LOG_EVERY 5.0  /* seconds between two "redis down" warnings, or two sums of short publishes */
#define SYNC_LINGER    5.0  /* seconds a room's channel stays subscribed after the room closed */
#define SYNC_RETRY_MAX 0.25 /* seconds: the longest wait between two attempts to reach Redis */

struct sync_config {
    const char *url, *ca_file;
    bool insecure;
    double retry_max; /* 0: SYNC_RETRY_MAX */
    const char *prefix;
    const char *node_id;
    struct room_registry *rooms;
    sync_deliver_fn *deliver;
    const char *sio_key;         /* NULL: no Socket.IO adapter channels */
    const char *const *sio_nsps; /* the namespaces served, each pattern-subscribed as KEY#NSP#* by socketio.c */
    uint32_t sio_nsp_count;
    sync_raw_fn *sio_deliver;
    void *ctx;
};

/* What sync knows of the bus, for /metrics. */
struct sync_stats {
    uint64_t short_publishes; /* publishes that reached fewer participants than hold their channel */
    uint64_t short_receivers; /* the participants they missed, summed */
    uint32_t participants;    /* alive participants heard on the heartbeat channel, this one included */
    double down_seconds;      /* how long the bus has been down; 0 while up */
};

struct sync;

struct sync *sync_new(struct ev_loop *loop, const struct sync_config *cfg, char *err, size_t errlen);
void sync_free(struct sync *s);
/* The room got its first / lost its last local member. */
void sync_room_open(struct sync *s, const struct room *room);
void sync_room_close(struct sync *s, const struct room *room);
/* Publish a client's message to the other nodes; failures are counted by the bus. */
void sync_publish(struct sync *s, const struct room *room, uint64_t client_id, uint8_t opcode, const void *payload,
                  size_t len);
/* The Socket.IO adapter's traffic: a pattern subscription, a channel subscription (kept across reconnects, as room
 * channels are), and a message published as it is; nsp >= 0 (an index into sio_nsps) judges it as a broadcast every
 * participant serving that namespace should get, -1 does not judge it. */
int sync_psubscribe(struct sync *s, const char *pattern, size_t len);
int sync_subscribe(struct sync *s, const char *channel, size_t len);
void sync_publish_raw(struct sync *s, const char *channel, size_t channel_len, const void *data, size_t len, int nsp);
bool sync_is_up(const struct sync *s);
/* true when connected and subscribed; false with why (e.g. "redis unreachable for 3.2 s: ...") otherwise. */
bool sync_health(const struct sync *s, char *why, size_t why_len);
/* Shutting down: tell the others at once (a bye), and stop heartbeating. */
void sync_goodbye(struct sync *s);
void sync_get_stats(const struct sync *s, struct sync_stats *out);
const struct bus_stats *sync_bus_stats(const struct sync *s);

#endif
