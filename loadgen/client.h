/* One worker's WebSocket client connections: TCP connect from a chosen source address, TLS, the HTTP upgrade,
 * frames in and out, the close handshake. The worker (worker.c) decides what to send and what a message means;
 * this module tells it through struct lg_engine_ops when a client opened, failed, got a message, was lost or
 * finished closing.
 *
 *   LC_IDLE -> LC_CONNECTING -> [LC_TLS] -> LC_UPGRADE -> [LC_SIO] -> LC_OPEN -> LC_CLOSING -> LC_DONE
 *                   \______________\_____________\____________\___________\___________________^  (failure, loss,
 *                                                                                                timeout)
 *
 * LC_SIO (--protocol socketio only): after the 101, the Engine.IO open packet, our namespace CONNECT and the
 * server's reply. It is still the connect phase (a handshake slot, the connect timeout, failures by kind); the
 * client is open, and counted as connected, only once the namespace accepted it. Open Socket.IO clients answer the
 * server's pings themselves, and the worker sees only the events: for the expected event, the first argument
 * (decoded from its JSON string), for any other packet an empty message (foreign).
 *
 * --transport polling (loadgen/eiopoll.h does the HTTP side): LC_POLL instead of the TCP/TLS/upgrade states and
 * LC_SIO: the handshake GET's open packet, our CONNECT POSTed, its reply in a held GET. Then, unless --no-upgrade
 * (or the server offers no websocket), the upgrade, still in the connect phase, while the GET keeps polling: a
 * websocket with the sid (LC_CONNECTING, [LC_TLS], LC_UPGRADE), "2probe" (LC_PROBE), "3probe", polling paused
 * until no GET or POST is in flight, "5", and the polling connections closed. Events that arrive between the
 * CONNECT reply and the end of the upgrade go to the worker as an open client's would. A polling client that stays
 * on polling keeps a struct eiop (its two connections, its cookies) for the whole run.
 *
 * Binary packets (45<n>-, 46<n>-): their n attachments follow as binary messages; a struct sio_asm is allocated
 * only while they are due. The expected event's attachment named by its placeholder goes to the worker as the
 * message (its first bytes; over polling decoded from base64); an ack (43ID / 46<n>-ID) of our namespace goes to
 * ops.ack with --ack. A text packet while attachments are due, a binary message nobody announced, more than 10
 * attachments, or attachments that do not come within --deadline are protocol errors.
 *
 * Memory per idle open client is one struct lg_client and no heap block: reads go through one engine-wide buffer,
 * only the bytes of an incomplete frame are carried per client, and handshake-only state (the expected accept key,
 * timings) lives in a slot that is given back when the handshake ends. */
#ifndef LOADGEN_CLIENT_H
#define LOADGEN_CLIENT_H

#include "common/buf.h"
#include "common/stream.h"
#include "common/ws.h"
#include "loadgen/opts.h"
#include "loadgen/result.h"

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

enum lg_client_state {
    LC_IDLE = 0,
    LC_CONNECTING,
    LC_TLS,
    LC_UPGRADE,
    LC_SIO,
    LC_POLL,
    LC_PROBE,
    LC_OPEN,
    LC_CLOSING,
    LC_DONE
};

/* struct lg_client flags, set by the worker for --churn. */
#define LC_FL_REJOIN  0x01 /* this connect is a return: where it lands and how long it takes are not counted again */
#define LC_FL_LEAVING 0x02 /* this close is a leave in the middle of the run, not the end of it */
/* set by the worker for --reconnect and the accounting */
#define LC_FL_RECON   0x04 /* this connect is a reconnect: its failures count per attempt, its node apart */
#define LC_FL_AWAY    0x08 /* lost after connecting and not back (yet): owed nothing, misses what is sent */
#define LC_FL_DROPPED 0x10 /* lost at least once (clients.dropped counts each client once) */

struct eiop;
struct http_head;
struct sio_asm;
struct lg_track;
struct tls_ctx;

struct lg_client {
    ev_io io;
    struct ws_reader reader;
    struct buf carry;        /* handshake: the response so far; open: the bytes of an incomplete frame */
    struct buf out;          /* bytes not yet written (almost always empty and without a heap block) */
    struct stream stream;    /* plain or TLS over io.fd */
    struct eiop *poll;       /* --transport polling: the polling side, until the upgrade is done (NULL after) */
    char *pre;               /* the head of a message split over chunks (LG_PAYLOAD_PREFIX bytes), on demand */
    struct sio_asm *sio_asm; /* socketio: a binary packet whose attachments are due (NULL the rest of the time) */
    struct lg_track *tracks; /* the worker's: one tracker per emitter in this client's room */
    uint32_t id;             /* global client number */
    uint32_t room;           /* room index (lg_room_index) */
    uint32_t msg_len;        /* bytes of the current message so far (saturates) */
    uint16_t pre_len;
    uint16_t slot;     /* handshake slot while connecting */
    uint8_t state;     /* enum lg_client_state */
    uint8_t target;    /* index into opts->targets */
    uint8_t flags;     /* LC_FL_* */
    uint8_t close_got; /* the server's close frame arrived: 1 with 1000 (or none), 2 another code (counted) */
    uint32_t owed;     /* the worker's: the first round this connection is owed (see worker.c) */
    uint32_t ping_due; /* socketio: when the next Engine.IO ping is due (lg_engine_ms clock), 0 not armed */
    /* socketio: pingInterval + pingTimeout from this client's own open packet (nodes behind one URL may differ) */
    uint32_t ping_wait_ms;
};

struct lg_engine_ops {
    void (*opened)(struct lg_client *c); /* LC_OPEN reached */
    void (*failed)(struct lg_client *c); /* the connect phase failed (counted by kind already) */
    void (*message)(struct lg_client *c, const char *head, size_t head_len, uint64_t msg_len, int64_t now_ns);
    void (*lost)(struct lg_client *c);               /* an open client was closed or reset by the server */
    void (*closed)(struct lg_client *c, bool clean); /* our close handshake ended (LC_DONE); unclean: counted */
    void (*ack)(struct lg_client *c, int64_t id, int64_t now_ns); /* --ack: an ack of our namespace came */
    /* --reconnect (NULL without): a Set-Cookie value a response of c's set; the cookies a reconnect of c sends
     * ("name=value; ..." or NULL), as a browser keeps a balancer's sticky cookie */
    void (*set_cookie)(struct lg_client *c, const char *value, size_t len);
    const char *(*cookies)(struct lg_client *c);
};

/* Per worker. Fields after "results" are what the worker reports. */
struct lg_engine {
    struct ev_loop *loop;
    const struct lg_opts *opts;
    struct lg_engine_ops ops;
    struct tls_ctx *tls_ctx; /* NULL when no URL is wss:// */
    struct buf rbuf;         /* one read buffer for every client */
    uint64_t rng;
    struct hs_slot *slots;
    uint32_t *free_slots, nfree, nslots, inflight;

    /* results */
    struct hist *connect_hist, *handshake_hist;
    struct lg_tally tally;
    uint32_t recon_fail[LG_ERR_COUNT]; /* --reconnect: failed attempts by kind (not connect-phase failures) */
    struct lg_nodes recon_nodes;       /* --reconnect: where reconnects landed */
};

/* Set up e for at most max_inflight handshakes at once. 0, or -1 with err (TLS context, memory). */
int lg_engine_init(struct lg_engine *e, struct ev_loop *loop, const struct lg_opts *o, uint32_t max_inflight, char *err,
                   size_t errlen);
void lg_engine_free(struct lg_engine *e);
/* Can another handshake start now? */
bool lg_engine_has_slot(const struct lg_engine *e);
/* Fail every handshake older than the connect timeout. */
void lg_engine_expire(struct lg_engine *e, int64_t now_ns);

/* --protocol socketio: lose each open client of clients[0..n) whose Engine.IO ping is overdue (no ping for
 * pingInterval + pingTimeout since the open packet or the last ping): LG_ERR_SIO_PING_TIMEOUT; whose binary packet's
 * attachments are overdue (--deadline): LG_ERR_PROTOCOL; whose polling request is overdue (a POST past
 * --connect-timeout, a GET past pingInterval + pingTimeout + LG_POLL_GET_MARGIN_MS): LG_ERR_SIO_POLL_TIMEOUT. ops.lost
 * is called for each. */
#define LG_POLL_GET_MARGIN_MS 5000
void lg_engine_watch(struct lg_engine *e, struct lg_client *clients, uint32_t n, int64_t now_time);
/* The millisecond clock of struct lg_client's ping_due: CLOCK_MONOTONIC in ms, wrapping at 2^32. */
uint32_t lg_engine_ms(int64_t now_time);

/* Start c's connect (c->id, c->room and c->target set, state LC_IDLE, or LC_DONE to connect again; a slot free).
 * On an immediate failure ops.failed has been called when this returns. */
void lg_client_start(struct lg_engine *e, struct lg_client *c);
/* Send one data message (masked) of len bytes. 0, or -1 when the client was lost doing so (ops.lost called). */
int lg_client_send(struct lg_engine *e, struct lg_client *c, uint8_t opcode, const void *data, size_t len);
/* --protocol socketio: send one Engine.IO message pkt[0..len) and, when att is not NULL, its attachment att[0..alen)
 * (a binary frame; over polling a b<base64> item in the same POST). 0, or -1 when the client was lost doing so. */
int lg_client_emit(struct lg_engine *e, struct lg_client *c, const char *pkt, size_t len, const void *att, size_t alen);
/* Is c still open? Before an emit: a connection the server already ended (its EOF or reset waiting to be read) is
 * read now, so the loss is known (ops.lost) before a message is counted as sent into it. */
bool lg_client_alive(struct lg_engine *e, struct lg_client *c);
/* Begin the close handshake (1000) from LC_OPEN; ops.closed follows. */
void lg_client_close(struct lg_engine *e, struct lg_client *c);
/* Give up on a closing client whose time ran out (why: the example's text): LG_ERR_CLOSE_TIMEOUT, then
 * ops.closed(c, false). Nothing for a client in another state. */
void lg_client_abort(struct lg_engine *e, struct lg_client *c, const char *why);
/* Release whatever c holds, without callbacks (process exit). */
void lg_client_free(struct lg_engine *e, struct lg_client *c);

/* For eiopoll.c: what the polling connections report about c. Each returns -1 when c's struct eiop is gone (c
 * failed, was lost, closed or finished its upgrade), else 0. */
enum lg_poll_ev {
    LG_POLL_TCP = 0, /* the first TCP connection is up (the connect time) */
    LG_POLL_PAYLOAD, /* a GET's 200 body (h: the handshake's response head, else NULL) */
    LG_POLL_POSTED,  /* a POST was answered 200 */
    LG_POLL_IDLE     /* paused, and no GET or POST is in flight */
};
int lg_client_poll_event(struct lg_engine *e, struct lg_client *c, enum lg_poll_ev ev, const struct http_head *h,
                         const char *data, size_t len);
/* A polling request failed: kind hs in the connect phase (status counted when hs is LG_ERR_HTTP_STATUS), open
 * once open; a closing client just ends its close uncleanly. c's struct eiop is gone when this returns. */
void lg_client_poll_fail(struct lg_engine *e, struct lg_client *c, enum lg_err hs, enum lg_err open, int status,
                         const char *msg);
/* The error kind of a failed connect's errno. */
enum lg_err lg_engine_connect_kind(int err);

/* Count a failure of kind k with an example message (the first of each kind is kept). */
void lg_engine_note(struct lg_engine *e, enum lg_err k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
