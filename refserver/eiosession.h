/* Engine.IO v4 sessions (../shared/SOCKETIO.md 1): the open packet, pings, and the transport packets travel on.
 *
 * A session is opened by a websocket (GET /socket.io/?transport=websocket) or by a polling handshake. Its transport
 * is then a websocket connection (ws), or polling: packets queue in the session and answer the GET it holds (held),
 * joined by \x1e, while POSTs carry packets in. An upgrade swaps the transport: the websocket that carries the sid
 * answers 2probe, the held GET gets a noop, and on 5 the queue moves onto the websocket.
 *
 *   polling handshake -> EIO_POLLING --(2probe on its websocket)--> EIO_PROBED --(5)--> EIO_WEBSOCKET
 *                          ^                                            |                 ^      |
 *                          +------(the probing websocket went)---------+                 |      | (websocket gone)
 *   websocket handshake -----------------------------------------------------------------+      v
 *   any state --(close packet, protocol error, ping timeout, slow poller)----------------> EIO_CLOSED
 *
 * EIO_FL_CLOSING (a close packet queued) and EIO_FL_CLOSE_ASKED (the client POSTed one) mark a polling session that
 * ends once they are answered. An upgraded session stays in the sid table, so polling requests for it get code 3.
 * What the packets mean is the application's (struct eio_app: Socket.IO, socketio.h). */
#ifndef REFSERVER_EIOSESSION_H
#define REFSERVER_EIOSESSION_H

#include "common/buf.h"
#include "common/eio.h"
#include "refserver/room.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn;
struct http_head;
struct server;
struct sio_socket;

enum eio_state { EIO_POLLING = 0, EIO_PROBED, EIO_WEBSOCKET, EIO_CLOSED };

#define EIO_FL_FLUSH       0x01u /* on the server's session flush list */
#define EIO_FL_PINGED      0x02u /* an Engine.IO ping awaits its pong */
#define EIO_FL_CLOSING     0x04u /* polling: ends once its owed packets (the close packet last) are answered */
#define EIO_FL_CLOSE_ASKED 0x08u /* polling: the client POSTed a close; ends before the loop next waits */
#define EIO_FL_POLLED      0x10u /* opened by a polling handshake: a struct eio_polled, in the sid table */

struct eio_session {
    struct server *srv;
    uint64_t id; /* the client id in logs */
    enum eio_state state;
    uint8_t flags;   /* EIO_FL_* */
    struct conn *ws; /* EIO_WEBSOCKET: the transport (its timer is the session's); polling: a websocket upgrading */
    /* A polling session (EIO_FL_POLLED) is the first member of a larger object with its GET, queue and timer
     * (eiosession.c); a session a websocket opened pays for none of them. */
    struct room_member member;
    struct sio_socket *sock; /* the application's (socketio.c) */
    /* when the ping schedule wants the timer (a ping to send, or a pong overdue), and the deadline for the
     * application's first CONNECT (0 once one came); the timer fires at the earlier of the two */
    ev_tstamp due, connect_by;
    struct eio_session *next_work;
    char sid[EIO_ID_LEN + 1];
};

/* What the sessions carry: calls up into the application (each is required). */
struct eio_app {
    /* A session opened by handshake h, which came on descriptor fd: 0, or -1 on out of memory (refused). */
    int (*on_open)(struct eio_session *s, int fd, const struct http_head *h);
    /* An Engine.IO MESSAGE packet (already parsed), and a binary message. */
    void (*on_packet)(struct eio_session *s, const struct eio_packet *pk);
    void (*on_binary)(struct eio_session *s, const uint8_t *data, size_t len);
    /* The session is about to send a ping, or its client answered a WebSocket ping: send what is held back. */
    void (*release)(struct eio_session *s);
    /* The session is being freed. */
    void (*on_free)(struct eio_session *s);
};

/* Precondition: c in CONN_HTTP with a /socket.io/ request (body: a POST's). The checks run in engine.io's order
 * (transport, session, upgrade, handshake method, protocol version). Returns as conn_ops.on_request. */
int eio_route(struct conn *c, const struct http_head *h, char *body, size_t body_len);
/* Is h's path /socket.io/? */
bool eio_is_path(const struct http_head *h);
/* --workers: the worker holding the session h names by its sid, when that is another worker; -1 otherwise (ours,
 * no sid, or a sid no worker made: answered here, as unknown). */
int eio_sid_worker(const struct server *srv, const struct http_head *h);

/* Is s open for packets (polling and not ended, or on a websocket that is not closing)? */
bool eio_open(const struct eio_session *s);
/* Queue frames[0..n) for s, all or none: a session whose queue would pass max_queue is closed as a slow consumer.
 * True when queued. */
bool eio_offer(struct eio_session *s, struct slice *const *frames, size_t n);
/* Queue one frame built from p[0..len) for s (polling sends it without the header). 0, or -1 when s is ended. */
int eio_send(struct eio_session *s, uint8_t opcode, const void *p, size_t len);
/* On a websocket: queue a WebSocket ping (0); polling: -1. */
int eio_ws_ping(struct eio_session *s);
/* The application's first CONNECT came: the connect deadline is off. */
void eio_connected(struct eio_session *s);
/* A packet the protocol forbids: the whole connection goes (a polling session ends; a websocket closes with 1002). */
void eio_fail(struct eio_session *s, const char *why);
/* engine.io's socket.close(): a websocket gets an empty close frame after its frames; a polling session's owed
 * packets are answered with the close packet last. */
void eio_close(struct eio_session *s);

/* Before the loop waits (server.c): answer the held GETs of the sessions on the flush list; free the ended. */
void eio_run_flush(struct server *srv);
void eio_free_dead(struct server *srv);
/* server_free, after conn_free_all: every session freed. */
void eio_free_all(struct server *srv);

#endif
