/* The reference node: one libev loop serving HTTP probes, /metrics, /ws rooms and Socket.IO, kept in sync with the
 * other nodes through Redis (sync.h). server.c owns the listener, the lifecycle, the HTTP routes and the wiring of
 * the modules below it: conn.h (a TCP connection), wsroom.h (/ws), eiosession.h (Engine.IO), socketio.h. */
#ifndef REFSERVER_SERVER_H
#define REFSERVER_SERVER_H

#include "common/buf.h"
#include "common/net.h"
#include "refserver/room.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The object holding the member (an ev watcher, a room member) ptr points at. */
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#define NODE_ID_MAX 64
#define SIO_NSP_MAX 16 /* Socket.IO namespaces a node serves, "/" included: one bit each of a socket's namespaces */

struct conn;
struct conn_ops;
struct eio_app;
struct eio_session;
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
    const char *cors_origin;    /* Socket.IO polling: CORS for these origins, "*" or a list (cors.h; NULL: none) */
    double sio_connect_timeout; /* Socket.IO: seconds from the open packet to the first namespace CONNECT */
    enum sio_profile sio_profile;
    const char *sio_nsps[SIO_NSP_MAX]; /* the namespaces served; [0] is "/" */
    uint32_t sio_nsp_count;
    const char *sio_key; /* the Redis adapter's key prefix ("socket.io") */
    bool log_requests;   /* one info line per HTTP request and per WebSocket at its end (--log-requests) */
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
    struct buf scratch;              /* one read buffer for every client: idle clients own none */
    const struct conn_ops *http_ops; /* a connection's owner while it speaks HTTP: the routes (server.c) */
    const struct eio_app *eio_app;   /* what Engine.IO sessions carry: Socket.IO (socketio.c) */
    struct conn *conns;              /* all connections */
    struct conn *flush_list, *dead_list;
    struct eio_session *eio_flush, *eio_dead; /* sessions with packets to answer a held GET with; ended ones */
    struct eio_session **sids; /* polling sessions by sid: sid_buckets chains (a power of 2), allocated on first use */
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

/* /health: true when the node (every worker of it) is connected and subscribed to the bus, or runs without Redis;
 * false with why otherwise. */
bool server_health(const struct server *s, char *why, size_t why_len);
/* Prometheus text for /metrics into b, summed over every worker of the node. 0, or -1 on out of memory. */
int server_metrics(const struct server *s, struct buf *b);

#endif
