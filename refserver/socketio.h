/* The Socket.IO application of a node (../shared/SOCKETIO.md sections 2 and 3): namespaces, events, acks, binary
 * attachments, the two profiles, and broadcasts across nodes in the wire format of @socket.io/redis-adapter, so
 * refserver nodes and Node.js Socket.IO servers on one Redis reach each other's clients.
 *
 * eiosession.c owns the Engine.IO sessions (transports, polling, pings) and hands up whole Socket.IO packets and
 * attachments through socketio_eio_app; this file decides what they mean, and sends through eio_offer/eio_send.
 *
 * Profiles (server_config.sio_profile):
 *  - broadcast (the default): an EVENT goes to every other socket of its namespace (socket.broadcast.emit) on every
 *    node; a socket that asked for room R (the handshake's room= parameter) sends to room R only (socket.to(R)) and
 *    hears both its room and namespace-wide broadcasts. An event that asks for an ack gets an empty one.
 *  - conformance: the reference server of socket.io-protocol's test suite: on CONNECT (to "/" or "/custom") it
 *    emits "auth" with the handshake's auth; "message" is answered with "message-back" and the same arguments,
 *    "message-with-ack" is acknowledged with them; other namespaces are refused. Nothing is broadcast. */
#ifndef REFSERVER_SOCKETIO_H
#define REFSERVER_SOCKETIO_H

#include "common/eio.h"

#include <stddef.h>
#include <stdint.h>

struct eio_app;
struct server;

/* The Socket.IO application of every Engine.IO session (server.eio_app): a socket per namespace joined. */
extern const struct eio_app socketio_eio_app;

/* With Redis: one PSUBSCRIBE <key>#<nsp>#* per namespace and a random 6-character adapter uid. 0, or -1 with err. */
int socketio_init(struct server *s, char *err, size_t errlen);
void socketio_free(struct server *s);

/* sync_config.sio_deliver (sync_raw_fn), ctx the server: a message on a Socket.IO adapter channel
 * (<key>#<nsp>#[<room>#], or a request channel), from a refserver or a Node.js Socket.IO node. */
void socketio_on_bus(void *ctx, const char *channel, size_t channel_len, const char *data, size_t len);

#endif
