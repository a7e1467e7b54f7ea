/* The Socket.IO application of a node (../shared/SOCKETIO.md sections 2 and 3): namespaces, events, acks, binary
 * attachments, the two profiles, and broadcasts across nodes in the wire format of @socket.io/redis-adapter, so
 * refserver nodes and Node.js Socket.IO servers on one Redis reach each other's clients.
 *
 * session.c owns the transports (websocket frames, Engine.IO polling, pings) and hands over whole Socket.IO
 * packets and attachments; this file decides what they mean.
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

struct client;
struct http_head;
struct server;

/* With Redis: one PSUBSCRIBE <key>#<nsp>#* per namespace and a random 6-character adapter uid. 0, or -1 with err. */
int socketio_init(struct server *s, char *err, size_t errlen);
void socketio_free(struct server *s);

/* A Socket.IO packet (an Engine.IO MESSAGE, already parsed) and a binary Engine.IO message (an attachment). */
void socketio_on_packet(struct client *c, const struct eio_packet *pk);
void socketio_on_attachment(struct client *c, const uint8_t *data, size_t len);
/* Conformance profile: send the "auth" event held back after c's CONNECT reply, if one is (c answered the ping
 * behind the reply, or something else is about to be sent to c). */
void socketio_release(struct client *c);
/* c leaves: drop what it was assembling, the acks other nodes wait for, its handshake. */
void socketio_client_gone(struct client *c);
/* A Socket.IO connection c was opened by handshake h, which came on conn (c itself, or the HTTP connection of a
 * polling session's first GET): keep what other nodes' fetchSockets are told of it (the time, the peer's address,
 * the URL, whether it had an Origin). Out of memory: nothing is kept, and fetchSockets reports less. */
void socketio_on_handshake(struct client *c, const struct client *conn, const struct http_head *h);

/* A message on a Socket.IO adapter channel (<key>#<nsp>#[<room>#]). */
void socketio_on_bus(struct server *s, const char *channel, size_t channel_len, const char *data, size_t len);

#endif
