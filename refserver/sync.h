/* Cross-node delivery through Redis pub/sub: one channel PREFIX#ROOM per room, subscribed while the room has local
 * members. A published message is
 *
 *     "wsh1 " NODE_ID " " CLIENT_ID " " ("t" | "b") "\n" PAYLOAD
 *
 * so a node can drop its own publications (it already delivered locally) and relay text and binary unchanged.
 * The header is text so that `redis-cli subscribe` shows something a person can read. */
#ifndef REFSERVER_SYNC_H
#define REFSERVER_SYNC_H

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

struct sync_config {
    const char *url, *ca_file;
    bool insecure;
    const char *prefix;
    const char *node_id;
    struct room_registry *rooms;
    sync_deliver_fn *deliver;
    const char *sio_key; /* NULL: no Socket.IO adapter channels */
    sync_raw_fn *sio_deliver;
    void *ctx;
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
 * channels are), and a message published as it is. */
int sync_psubscribe(struct sync *s, const char *pattern, size_t len);
int sync_subscribe(struct sync *s, const char *channel, size_t len);
void sync_publish_raw(struct sync *s, const char *channel, size_t channel_len, const void *data, size_t len);
bool sync_is_up(const struct sync *s);
const struct bus_stats *sync_bus_stats(const struct sync *s);

/* Wire format, exposed for tests. Encode the header into out (at least SYNC_HEADER_MAX bytes); returns its length. */
#define SYNC_HEADER_MAX 128
size_t sync_encode_header(char *out, const char *node_id, uint64_t client_id, uint8_t opcode);
/* Parse a published message: node id span, opcode, payload span. 0, or -1 when it is not ours or malformed. */
int sync_parse(const char *msg, size_t len, const char **node, size_t *node_len, uint8_t *opcode, const char **payload,
               size_t *payload_len);

#endif
