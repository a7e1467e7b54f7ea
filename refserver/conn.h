/* One TCP connection of the node: descriptor, input and output buffers, the WebSocket frame reader, its watchers
 * and one timer. It knows HTTP heads and WebSocket frames, not what they mean: whole requests and messages go up
 * to its owner through struct conn_ops (server.c's routes while it speaks HTTP; wsroom.c or eiosession.c once it
 * upgraded or holds a polling GET).
 *
 *   CONN_HTTP --(101 queued: conn_switch_protocols)--> CONN_WS --(close sent or received)--> CONN_CLOSING --> CLOSED
 *      |  (keep-alive: one head after another)                                                   ^
 *      +------------(bad request, Connection: close, timeout, hand-over)--------------------------+
 *
 * All output (HTTP responses, frames) goes through one queue of shared slices and is written before the loop next
 * waits (conn_run_flush), so a broadcast costs one frame encoding per node and one writev per receiver. */
#ifndef REFSERVER_CONN_H
#define REFSERVER_CONN_H

#include "common/buf.h"
#include "common/ws.h"
#include "refserver/room.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn;
struct http_head;
struct httplog;
struct server;

enum conn_state { CONN_HTTP = 0, CONN_WS, CONN_CLOSING, CONN_CLOSED };

#define CONN_FL_FLUSH      0x01u /* on the flush list */
#define CONN_FL_CLOSE_SENT 0x02u /* our close frame is queued */
#define CONN_FL_CLOSE_RCVD 0x04u /* the peer's close frame arrived */
#define CONN_FL_NO_REPLY   0x08u /* nothing more is expected from the peer: drain, then shut down */
#define CONN_FL_SHUT       0x10u /* write side shut down; waiting for EOF */
#define CONN_FL_PINGED     0x20u /* a WebSocket ping is out (/ws: wsroom.c's idle rule) */
#define CONN_FL_HAND_OVER  0x40u /* HTTP: the next head is another worker's, handed over once out drains */
#define CONN_FL_HELD       0x80u /* HTTP: a request is held (a polling GET): no pipelined head is read meanwhile */

/* What to do with a parsed head before it is routed. */
enum conn_head {
    CONN_ROUTE = 0, /* route it now */
    CONN_READ_BODY, /* wait for its Content-Length body (up to max_message; 413 beyond), then route it */
    CONN_HAND_OVER, /* --workers: another worker owns it (*to) */
};

/* Callbacks up to the connection's owner. Any may be NULL (nothing happens). */
struct conn_ops {
    /* CONN_HTTP: a parsed head, before its body is read. */
    enum conn_head (*on_head)(struct conn *c, const struct http_head *h, uint32_t *to);
    /* CONN_HTTP: a whole request (body: only when on_head asked for it). 0 to go on reading heads, -1 when the
     * connection left CONN_HTTP, holds the request, or is closing. */
    int (*on_request)(struct conn *c, const struct http_head *h, char *body, size_t body_len);
    /* CONN_WS: a whole message, in the read buffer (valid for the call only). */
    void (*on_message)(struct conn *c, uint8_t opcode, uint8_t *data, size_t len);
    /* CONN_WS: the peer answered a ping. */
    void (*on_pong)(struct conn *c);
    /* CONN_WS: the timer fired (the owner armed it). */
    void (*on_timer)(struct conn *c);
    /* Any state -> CONN_CLOSED: the connection is over (its descriptor is being closed): let go of it. */
    void (*on_gone)(struct conn *c);
};

struct conn {
    struct server *srv;
    const struct conn_ops *ops;
    void *owner; /* the ops' object: the Engine.IO session of a Socket.IO websocket or held GET; NULL otherwise */
    uint64_t id;
    int fd;
    enum conn_state state;
    uint8_t flags;             /* CONN_FL_* */
    struct room_member member; /* /ws: its room (wsroom.c) */
    struct ws_reader reader;
    struct buf in;          /* unparsed input left over from a read; usually empty and unallocated */
    struct buf msg;         /* a fragmented message being assembled */
    struct slice_queue out; /* frames and responses waiting for the socket */
    size_t head_scanned;    /* http parser's last_len over in */
    char *cors;             /* the current Socket.IO request's CORS header lines (cors.h), or NULL */
    ev_tstamp last_rx;
    ev_io rio, wio;
    ev_timer timer;         /* handshake or close timeout, or the owner's in CONN_WS */
    struct conn *next_work; /* on the flush or dead list */
    struct conn *prev, *next;
    struct httplog *log; /* --log-requests: the request in flight; NULL when off */
};

/* A new connection on fd in CONN_HTTP, served by the server's HTTP routes (server.http_ops); NULL on out of memory
 * (fd stays open). */
struct conn *conn_new(struct server *s, int fd);
/* A connection another worker handed over, with the bytes it had read from it: served as if read here. */
void conn_adopt(struct server *s, int fd, const char *bytes, size_t len);
/* Give c to another owner (ops, owner); NULL ops: back to the server's HTTP routes. */
void conn_set_owner(struct conn *c, const struct conn_ops *ops, void *owner);
/* (Re)arm c's timer for seconds from now; stop it with seconds < 0. */
void conn_arm_timer(struct conn *c, double seconds);

/* Queue f (a reference is taken). 0, or -1 when memory ran out (c is then killed). */
int conn_queue(struct conn *c, struct slice *f);
/* Queue frames[0..n), all or none: a connection whose queue would pass max_queue is closed as a slow consumer
 * (1013). True when queued. */
bool conn_offer(struct conn *c, struct slice *const *frames, size_t n);
/* Queue one WebSocket frame built from p[0..len). 0, or -1 when c was killed for lack of memory. */
int conn_send(struct conn *c, uint8_t opcode, const void *p, size_t len);

/* CONN_WS: queue our close frame and enter CONN_CLOSING (once); no_reply: do not wait for the peer's close. */
void conn_start_closing(struct conn *c, uint16_t code, const char *reason, bool no_reply);
/* CONN_WS: start a close handshake with code; CONN_HTTP: drop the connection; else nothing. */
void conn_close(struct conn *c, uint16_t code, const char *reason);
/* A protocol error on CONN_WS c: counted, logged at debug, closed with 1002 and reason. */
void conn_fail(struct conn *c, const char *reason);
/* The connection is over now: I/O stopped, the owner told (on_gone), the descriptor closed, freed before the loop
 * next waits. Any state; idempotent. */
void conn_kill(struct conn *c);

/* HTTP answers. Each returns 0, or -1 when the connection is closing (close_after) or gone. */
int conn_respond(struct conn *c, int status, const char *reason, const char *extra, const char *ctype, const char *body,
                 size_t body_len, bool head_only, bool close_after);
/* An error answer ("STATUS REASON: why"); the connection closes after it. */
int conn_respond_error(struct conn *c, int status, const char *reason, const char *why, const char *extra);
/* Check an upgrade request against RFC 6455 4.2.1: 0 with accept filled (WS_ACCEPT_LEN + 1 bytes), or -1 after the
 * refusal was queued (400, or 426 for another version) and the connection is closing. */
int conn_check_upgrade(struct conn *c, const struct http_head *h, char *accept);
/* CONN_HTTP -> CONN_WS: queue the 101. 0, or -1 when c is gone. */
int conn_switch_protocols(struct conn *c, const char *accept);

/* Before the loop waits (server.c): write every connection on the flush list (one writev each); free the dead. */
void conn_run_flush(struct server *s);
void conn_free_dead(struct server *s);
/* server_free: every connection closed and freed. */
void conn_free_all(struct server *s);

#endif
