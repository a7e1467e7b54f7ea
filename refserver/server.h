/* The reference node: one libev loop serving HTTP probes, /metrics and WebSocket clients in rooms, kept in sync with
 * the other nodes through Redis (sync.h). server.c owns the listener, the lifecycle and the per-loop work lists;
 * session.c owns one client's state machine (HTTP head -> WebSocket -> closing). */
#ifndef REFSERVER_SERVER_H
#define REFSERVER_SERVER_H

#include "common/buf.h"
#include "common/net.h"
#include "common/ws.h"
#include "common/eio.h"
#include "refserver/room.h"

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#define NODE_ID_MAX 64
#define SIO_NSP_MAX 16 /* Socket.IO namespaces a node serves, "/" included: one bit each in client.sio_nsps */

struct listener;
struct sync;
struct socketio;
struct workers;

enum sio_profile {
    SIO_PROFILE_BROADCAST = 0, /* an event goes to every other socket of its namespace (and room), on every node */
    SIO_PROFILE_CONFORMANCE,   /* the reference server of socket.io-protocol's test suite (socketio.h) */
};

struct server_config {
    struct net_addr listen;
    char node_id[NODE_ID_MAX + 1];
    char bus_id[NODE_ID_MAX + 8]; /* the name on the bus: node_id, or node_id.wI for worker I ("" until set) */
    uint32_t workers;             /* processes serving the node (--workers; workers.h) */
    const char *redis_url;        /* NULL: standalone, no Redis */
    const char *redis_ca;
    bool redis_insecure;
    const char *channel_prefix;
    size_t max_message;         /* bytes per message (1009 beyond) */
    size_t max_queue;           /* unsent bytes per client before it is closed as a slow consumer */
    uint32_t max_clients;       /* TCP connections; 0: no limit but the open-files limit */
    double ping_interval;       /* seconds of silence before we ping */
    double idle_timeout;        /* seconds of silence before we close */
    double handshake_timeout;   /* seconds to receive a complete request head */
    double close_timeout;       /* seconds to wait for the peer's part of a close */
    double stats_interval;      /* seconds between "N connected client(s)" lines */
    double sio_ping_interval;   /* Socket.IO: seconds between Engine.IO pings (pingInterval) */
    double sio_ping_timeout;    /* Socket.IO: seconds to answer a ping (pingTimeout) */
    const char *sio_cookie;     /* Socket.IO: the polling handshake sets this cookie to the sid (NULL: none) */
    double sio_connect_timeout; /* Socket.IO: seconds from the open packet to the first namespace CONNECT */
    enum sio_profile sio_profile;
    const char *sio_nsps[SIO_NSP_MAX]; /* the namespaces served; [0] is "/" */
    uint32_t sio_nsp_count;
    const char *sio_key; /* the Redis adapter's key prefix ("socket.io") */
};

struct server_stats {
    uint64_t accepted, http_requests, http_errors, handshakes;
    uint64_t msgs_in, msgs_out, bytes_in, bytes_out, bus_msgs_in;
    uint64_t protocol_errors, slow_consumers, idle_closed, accept_errors;
    uint64_t sio_bus_in, sio_bus_dropped;  /* Socket.IO broadcasts from Redis delivered / refused as malformed */
    uint64_t sio_requests;                 /* other nodes' adapter requests acted on (socketio.c) */
    uint64_t handed_over, handover_failed; /* --workers: connections given to the worker owning their sid */
    uint32_t connections, ws_clients, polling_sessions;
};

enum client_state { CLIENT_HTTP = 0, CLIENT_WS, CLIENT_CLOSING, CLIENT_CLOSED };

struct client {
    struct server *srv;
    uint64_t id;
    int fd;
    enum client_state state;
    uint16_t flags;            /* CLIENT_FL_* */
    struct room_member member; /* in a room once it speaks WebSocket */
    struct ws_reader reader;
    struct buf in;          /* unparsed input left over from a read; usually empty and unallocated */
    struct buf msg;         /* a fragmented message being assembled */
    struct slice_queue out; /* frames and responses waiting for the socket */
    size_t head_scanned;    /* http parser's last_len over in */
    ev_tstamp last_rx;
    ev_io rio, wio;
    ev_timer timer; /* handshake, ping/idle or close timeout, by state */
    /* Socket.IO: when the ping schedule wants the timer (a ping to send, or a pong overdue), and the deadline for
     * the first namespace CONNECT (0 once one came); the timer fires at the earlier of the two. */
    ev_tstamp sio_due, sio_connect_by;
    uint16_t sio_nsps; /* Socket.IO: bit i set when connected to cfg.sio_nsps[i] */
    /* Socket.IO: the socket ids' random bytes; the socket of namespace i has these with i XORed into the first byte,
     * so one connection's sockets have distinct ids (socketio.c) and a broadcast's except list can be matched. */
    uint8_t sio_id[EIO_ID_RANDOM];
    struct sio_pending *pending;  /* Socket.IO: a binary packet waiting for its attachments (socketio.c) */
    struct sio_wait *sio_waits;   /* Socket.IO: other nodes' broadcasts waiting for this client's ack (socketio.c) */
    struct sio_handshake *sio_hs; /* Socket.IO: what fetchSockets reports of the handshake (socketio.c) */
    struct client *next_work;     /* on the server's flush or dead list */
    /* Engine.IO polling. A session (CLIENT_FL_POLL) is a struct client without a socket, in the server's sid table
     * and in its room; its out queue holds the frames owed to the client, sent without their WebSocket header as
     * the answer to a GET. held: the GET waiting for them; ws: the websocket upgrading (or upgraded) from it. On an
     * HTTP connection holding a GET (CLIENT_FL_HELD) or a websocket bound to a sid, sess is the session. */
    struct client *held, *ws, *sess, *sid_next;
    char sid[EIO_ID_LEN + 1];
    struct client *prev, *next;
};

#define CLIENT_FL_FLUSH        0x01u   /* on the flush list */
#define CLIENT_FL_CLOSE_SENT   0x02u   /* our close frame is queued */
#define CLIENT_FL_CLOSE_RCVD   0x04u   /* the peer's close frame arrived */
#define CLIENT_FL_NO_REPLY     0x08u   /* nothing more is expected from the peer: drain, then shut down */
#define CLIENT_FL_SHUT         0x10u   /* write side shut down; waiting for EOF */
#define CLIENT_FL_PINGED       0x20u   /* /ws: a ping is out; Socket.IO: an Engine.IO ping awaits its pong */
#define CLIENT_FL_SIO          0x40u   /* speaks Socket.IO (GET /socket.io/), in a room of server.sio_rooms */
#define CLIENT_FL_HAND_OVER    0x80u   /* HTTP: the next head is another worker's, handed over once out drains */
#define CLIENT_FL_POLL         0x100u  /* an Engine.IO polling session (no socket of its own) */
#define CLIENT_FL_HELD         0x200u  /* an HTTP connection whose polling GET is held until packets are owed */
#define CLIENT_FL_PROBED       0x400u  /* session: its websocket answered 2probe; GETs get a noop until the upgrade */
#define CLIENT_FL_UPGRADED     0x800u  /* session: upgraded; kept only so polling requests for its sid get code 3 */
#define CLIENT_FL_POLL_CLOSING 0x1000u /* session: ends once its owed packets (the close packet last) are answered */
#define CLIENT_FL_CLOSE_ASKED  0x2000u /* session: the client POSTed a close; ends before the loop next waits */

#define SERVER_METRICS_MAX 40 /* the /metrics samples (server.c's table), at most WORKERS_STAT_WORDS */

struct server {
    struct ev_loop *loop;
    struct server_config cfg;
    struct server_stats stats;
    struct workers *workers; /* --workers: this worker's hand-over sockets and metric slot; NULL: one process */
    char worker_header[32];  /* "X-Node-Worker: I\r\n" in worker I's responses; "" in a single process */
    uint64_t counter_base[SERVER_METRICS_MAX]; /* a restarted worker's counters go on from its predecessor's */
    struct room_registry rooms;                /* /ws rooms, each with its Redis channel */
    struct room_registry sio_rooms;            /* Socket.IO rooms ("" holds the sockets that asked for none) */
    struct sync *sync;
    struct socketio *sio; /* Socket.IO's Redis adapter state (socketio.c); NULL without Redis */
    int lfd;
    uint64_t next_client_id;
    bool shutting_down;
    struct buf scratch;     /* one read buffer for every client: idle clients own none */
    struct client *clients; /* all clients */
    struct client *flush_list, *dead_list;
    struct client **sids; /* polling sessions by sid: sid_buckets chains (a power of 2), allocated on first use */
    uint32_t sid_buckets;
    struct listener *listener; /* over lfd, gated at cfg.max_clients (common/listener.h) */
    ev_timer stats_timer, grace_timer;
    ev_prepare flush_w;
    ev_signal sigterm_w, sigint_w;
};

/* Bind (or, as worker w, take w's listener and hand-over socket), connect to Redis and start serving on loop. 0, or
 * -1 with err (exit code 2 territory). */
int server_init(struct server *s, struct ev_loop *loop, const struct server_config *cfg, struct workers *w, char *err,
                size_t errlen);
/* Release everything after ev_run has returned. */
void server_free(struct server *s);

/* Queue client c for flushing before the loop next waits. */
void server_schedule_flush(struct server *s, struct client *c);
/* c's connection is over: it goes to the dead list and is freed before the loop next waits. */
void server_bury(struct server *s, struct client *c);
/* Allow one more accept after a client left (the listener may have paused at max_clients). */
void server_client_left(struct server *s);
/* /health: true when the node (every worker of it) is connected and subscribed to the bus, or runs without Redis;
 * false with why otherwise. */
bool server_health(const struct server *s, char *why, size_t why_len);
/* Prometheus text for /metrics into b, summed over every worker of the node. 0, or -1 on out of memory. */
int server_metrics(const struct server *s, struct buf *b);

/* session.c */
struct client *session_new(struct server *s, int fd);
/* A connection another worker handed over, with the bytes it had read from it: served as if read here. */
void session_adopt(struct server *s, int fd, const char *bytes, size_t len);
/* Feed readable bytes (client fd is readable). */
void session_on_readable(struct client *c);
/* Write what is queued; called from the flush list and when the socket turns writable. */
void session_flush(struct client *c);
/* Send frame to every WebSocket client of room except skip (NULL for none); encodes nothing, shares f. */
void session_deliver(struct server *s, struct room *room, struct slice *f, const struct client *skip);
/* Queue frames[0..n) for c, all or none: a client whose queue would pass max_queue is closed as a slow consumer.
 * Returns true when queued. */
bool session_offer(struct server *s, struct client *c, struct slice *const *frames, size_t n);
/* Queue one frame built from p[0..len) for c (a polling session sends it without the header). 0, or -1 when c
 * was closed for lack of memory. */
int session_send(struct client *c, uint8_t opcode, const void *p, size_t len);
/* A Socket.IO protocol error: the whole connection goes (a polling session ends). */
void session_sio_fail(struct client *c, const char *why);
/* Start a close handshake with code (SIGTERM: 1001). */
void session_close(struct client *c, uint16_t code, const char *reason);
/* End a Socket.IO connection once what is queued for it has gone, as engine.io's socket.close(): a websocket gets an
 * empty close frame after its frames, a polling session's owed packets are answered with the close packet last. */
void session_sio_close(struct client *c);
/* Release a buried client's memory. */
void session_free(struct client *c);
/* Free every polling session (server_free). */
void session_free_polling(struct server *s);

#endif
