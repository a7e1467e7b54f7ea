/* The Socket.IO application: namespaces, events, acks, attachments, the profiles, the Redis adapter; see socketio.h. */
#include "refserver/socketio.h"

#include "common/buf.h"
#include "common/http.h"
#include "common/log.h"
#include "common/ws.h"
#include "refserver/eiosession.h"
#include "refserver/fanout.h"
#include "refserver/room.h"
#include "refserver/server.h"
#include "refserver/sioadapter.h"
#include "refserver/sync.h"
#include "refserver/workers.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <sys/socket.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The longest packet head: '4', type, attachments and '-', "/nsp,", ack id. */
#define HEAD_MAX EIO_HEAD_MAX(EIO_NSP_MAX)

/* A BINARY_EVENT or BINARY_ACK whose attachments are still arriving: the packet's JSON is copied (the read buffer
 * it came in is reused) and each attachment is kept as the binary frame it will be sent on as. */
struct sio_pending {
    uint8_t type;
    uint8_t nsp;
    bool has_ack;
    uint64_t ack;
    uint32_t want, have;
    struct slice *att[EIO_MAX_ATTACHMENTS];
    size_t json_len;
    char json[];
};

/* What a packet carries once whole, wherever it came from (a text frame, a pending binary packet, Redis). */
struct sio_message {
    uint8_t type; /* EIO_EVENT or EIO_ACK; binary when n_att > 0 */
    uint8_t nsp;
    bool has_ack;
    uint64_t ack;
    const char *json;
    size_t json_len;
    struct slice *const *att;
    uint32_t n_att;
};

/* What another node's fetchSockets is told of a connection's handshake (socket.handshake in Node), and the auth
 * payload of each namespace CONNECT that carried one. The request headers are not kept: they would cost more than
 * the rest of a connection. */
struct sio_auth {
    struct sio_auth *next;
    uint8_t nsp;
    size_t len;
    char json[];
};

struct sio_handshake {
    ev_tstamp issued; /* wall-clock seconds (libev's ev_now) */
    bool xdomain;     /* the request had an Origin header */
    char address[INET6_ADDRSTRLEN];
    struct sio_auth *auths;
    struct slice *held_auth; /* conformance: the "auth" event, due once the ping behind its CONNECT reply is answered */
    size_t url_len;
    char url[];
};

/* One Socket.IO connection's sockets (one per namespace joined), hung off its Engine.IO session. */
struct sio_socket {
    uint16_t nsps; /* bit i set when connected to cfg.sio_nsps[i] */
    /* the socket ids' random bytes; the socket of namespace i has these with i XORed into the first byte, so one
     * connection's sockets have distinct ids and a broadcast's except list can be matched */
    uint8_t id[EIO_ID_RANDOM];
    struct sio_pending *pending; /* a binary packet waiting for its attachments */
    struct sio_wait *waits;      /* other nodes' broadcasts waiting for this client's ack */
    struct sio_handshake *hs;    /* what fetchSockets reports of the handshake */
};

static const char *nsp_name(const struct server *s, uint8_t i)
{
    return s->cfg.sio_nsps[i];
}

static int nsp_index(const struct server *s, const char *nsp, size_t len)
{
    for (uint32_t i = 0; i < s->cfg.sio_nsp_count; i++)
        if (strlen(s->cfg.sio_nsps[i]) == len && !memcmp(s->cfg.sio_nsps[i], nsp, len))
            return (int)i;
    return -1;
}

/* m's head (common/eio writes it) into out (HEAD_MAX bytes), in namespace nsp's name; a binary message becomes
 * type 5 or 6. 0 only when an ack id is out of range, which ACK_ID_LIMIT and the parser rule out. */
static size_t packet_head(char *out, const struct server *s, int type, uint8_t nsp, uint32_t n_att, bool has_ack,
                          uint64_t ack)
{
    const char *name = nsp ? nsp_name(s, nsp) : NULL;
    return eio_encode_head(out, HEAD_MAX, type + (n_att ? 3 : 0), n_att, name, name ? strlen(name) : 0,
                           has_ack ? (int64_t)ack : -1);
}

/* The Engine.IO message (the '4'), the packet header and its JSON as one text frame, encoded once for every
 * receiver. NULL on out of memory. */
static struct slice *packet_frame(const struct server *s, const struct sio_message *m)
{
    char head[HEAD_MAX];
    size_t hlen = packet_head(head, s, m->type, m->nsp, m->n_att, m->has_ack, m->ack), len = hlen + m->json_len;
    uint8_t frame_head[WS_MAX_HEADER];
    if (!hlen)
        return NULL;
    size_t fh = ws_frame_header(frame_head, WS_OP_TEXT, true, len, NULL);
    struct slice *f = slice_new(fh + len);
    if (!f)
        return NULL;
    memcpy(f->data, frame_head, fh);
    memcpy(f->data + fh, head, hlen);
    memcpy(f->data + fh + hlen, m->json, m->json_len);
    return f;
}

/* The packet and its attachments to one client, in order and all together. */
static void send_message(struct eio_session *c, const struct sio_message *m)
{
    struct slice *frames[1 + EIO_MAX_ATTACHMENTS];
    struct slice *f = packet_frame(c->srv, m);
    if (!f) {
        eio_fail(c, "out of memory");
        return;
    }
    frames[0] = f;
    if (m->n_att) /* att may be NULL then: memcpy must not see it */
        memcpy(frames + 1, m->att, m->n_att * sizeof *m->att);
    eio_offer(c, frames, 1 + m->n_att);
    slice_unref(f);
}

/* A packet without attachments (CONNECT, DISCONNECT, ACK) to c: its head, then json[0..json_len). */
static void send_control(struct eio_session *c, int type, uint8_t nsp, bool has_ack, uint64_t ack, const char *json,
                         size_t json_len)
{
    char out[HEAD_MAX + 64];
    size_t n = packet_head(out, c->srv, type, nsp, 0, has_ack, ack);
    if (!n || json_len > sizeof out - n)
        return;
    if (json_len)
        memcpy(out + n, json, json_len);
    eio_send(c, WS_OP_TEXT, out, n + json_len);
}

/* The id of c's socket in namespace nsp (server.h: client.sio_id). */
static void socket_id(const struct eio_session *c, uint8_t nsp, char out[EIO_ID_LEN + 1])
{
    uint8_t rnd[EIO_ID_RANDOM];
    memcpy(rnd, c->sock->id, sizeof rnd);
    rnd[0] ^= nsp;
    eio_make_id(rnd, out);
}

static void handshake_free(struct eio_session *c)
{
    if (!c->sock->hs)
        return;
    for (struct sio_auth *a = c->sock->hs->auths, *next; a; a = next) {
        next = a->next;
        free(a);
    }
    if (c->sock->hs->held_auth)
        slice_unref(c->sock->hs->held_auth);
    free(c->sock->hs);
    c->sock->hs = NULL;
}

/* What other nodes' fetchSockets are told of the handshake h, which came on descriptor fd (the time, the peer's
 * address, the URL, whether it had an Origin). Out of memory: nothing is kept, and fetchSockets reports less. */
static void handshake_keep(struct eio_session *c, int fd, const struct http_head *h)
{
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    struct sio_handshake *hs = malloc(sizeof *hs + h->target_len);
    if (!hs)
        return;
    *hs = (struct sio_handshake){
        .issued = ev_now(c->srv->loop), .xdomain = http_find_header(h, "origin") != NULL, .url_len = h->target_len};
    memcpy(hs->url, h->target, h->target_len);
    if (fd >= 0 && getpeername(fd, (struct sockaddr *)&peer, &peer_len) == 0) {
        if (peer.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&peer)->sin_addr, hs->address, sizeof hs->address);
        else if (peer.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&peer)->sin6_addr, hs->address, sizeof hs->address);
    }
    handshake_free(c);
    c->sock->hs = hs;
}

/* eio_app.on_open: a connection's sockets, in no namespace yet. */
static int on_open(struct eio_session *c, int fd, const struct http_head *h)
{
    if (!(c->sock = calloc(1, sizeof *c->sock)))
        return -1;
    RAND_bytes(c->sock->id, sizeof c->sock->id);
    handshake_keep(c, fd, h);
    return 0;
}

/* The auth payload of c's CONNECT to namespace nsp (a later CONNECT's replaces it). */
static void auth_keep(struct eio_session *c, uint8_t nsp, const char *json, size_t len)
{
    struct sio_auth **pp, *a;
    if (!c->sock->hs)
        return;
    for (pp = &c->sock->hs->auths; *pp && (*pp)->nsp != nsp; pp = &(*pp)->next)
        ;
    if (!(a = malloc(sizeof *a + len)))
        return;
    *a = (struct sio_auth){.next = *pp ? (*pp)->next : NULL, .nsp = nsp, .len = len};
    memcpy(a->json, json, len);
    free(*pp);
    *pp = a;
}

/* eio_app.release: send the conformance profile's "auth" event held back after c's CONNECT reply, if one is (c
 * answered the ping behind the reply, or something else is about to be sent to c). */
static void release(struct eio_session *c)
{
    struct slice *f = c->sock->hs ? c->sock->hs->held_auth : NULL;
    if (!f)
        return;
    c->sock->hs->held_auth = NULL;
    if (eio_open(c))
        eio_offer(c, &f, 1);
    slice_unref(f);
}

/* The conformance profile's socket.emit("auth", socket.handshake.auth), with the auth object as the client sent it
 * ({} when it sent none). Over a websocket it is held back behind a WebSocket ping, and sent when the pong comes
 * (release): a client answers a ping only once it has read what came before it, so the CONNECT reply and
 * the event never reach it in one read. The suite's client listens for one message at a time and loses the second
 * of two that arrive together; a timer would only make that unlikely, the pong rules it out. A client that never
 * answers pings gets the event before whatever is sent to it next (an answer, the Engine.IO ping). */
static void emit_auth(struct eio_session *c, uint8_t nsp, const struct eio_packet *pk)
{
    const char *auth = pk->data.len ? pk->data.p : "{}";
    size_t auth_len = pk->data.len ? pk->data.len : 2;
    struct buf b = {0};
    struct slice *f = NULL;
    if (buf_append(&b, "[\"auth\",", 8) == 0 && buf_append(&b, auth, auth_len) == 0 && buf_append(&b, "]", 1) == 0)
        f = packet_frame(c->srv, &(struct sio_message){
                                     .type = EIO_EVENT, .nsp = nsp, .json = buf_head(&b), .json_len = buf_len(&b)});
    buf_free(&b);
    if (!f) {
        eio_fail(c, "out of memory");
        return;
    }
    release(c); /* defensive: one is held at most, as every packet releases it first */
    if (c->sock->hs && eio_ws_ping(c) == 0) {
        c->sock->hs->held_auth = f;
        return;
    }
    if (eio_open(c))
        eio_offer(c, &f, 1); /* a polling payload is read whole: nothing to hold back */
    slice_unref(f);
}

static void on_connect(struct eio_session *c, const struct eio_packet *pk)
{
    struct server *s = c->srv;
    char id[EIO_ID_LEN + 1], json[16 + EIO_ID_LEN];
    int i = nsp_index(s, pk->nsp.p, pk->nsp.len);
    if (i < 0) { /* the namespace echoed byte for byte, as Node does: it may hold any byte but ',' */
        static const char tail[] = "{\"message\":\"Invalid namespace\"}";
        char out[HEAD_MAX + sizeof tail];
        size_t n = eio_encode_head(out, HEAD_MAX, EIO_CONNECT_ERROR, 0, pk->nsp.p, pk->nsp.len, -1);
        memcpy(out + n, tail, sizeof tail - 1);
        eio_send(c, WS_OP_TEXT, out, n + sizeof tail - 1);
        return;
    }
    if (c->sock->nsps & (1u << i)) { /* socket.io's Client.ondecoded: a second CONNECT is an invalid state */
        eio_fail(c, "CONNECT to a namespace already joined");
        return;
    }
    c->sock->nsps |= (uint16_t)(1u << i);
    eio_connected(c);
    if (pk->data.len)
        auth_keep(c, (uint8_t)i, pk->data.p, pk->data.len);
    socket_id(c, (uint8_t)i, id);
    int jn = snprintf(json, sizeof json, "{\"sid\":\"%s\"}", id);
    send_control(c, EIO_CONNECT, (uint8_t)i, false, 0, json, (size_t)jn);
    if (s->cfg.sio_profile == SIO_PROFILE_CONFORMANCE)
        emit_auth(c, (uint8_t)i, pk);
}

struct except_ids;
static bool excepted_socket(const struct except_ids *x, const struct eio_session *c);

/* Who a broadcast reaches in a room: the sockets of its namespace (bit) but the sender (skip) and the sockets it
 * excepts (x). */
struct target {
    const struct eio_session *skip;
    uint16_t bit;
    const struct except_ids *x;
};

/* fanout_offer_fn: a member of a Socket.IO room is an Engine.IO session. */
static bool offer(struct room_member *m, struct slice *const *frames, size_t n, void *ctx)
{
    const struct target *t = ctx;
    struct eio_session *to = container_of(m, struct eio_session, member);
    return to != t->skip && eio_open(to) && (to->sock->nsps & t->bit) && !(t->x && excepted_socket(t->x, to)) &&
           eio_offer(to, frames, n);
}

static void publish(struct server *s, const struct eio_session *c, const struct sio_message *m);

/* Every other socket of the sender's scope: its room, or, for a socket in no room, every room of the namespace. */
static void broadcast(struct eio_session *c, const struct sio_message *m)
{
    struct server *s = c->srv;
    struct room *own = c->member.room;
    struct sio_message fwd = *m;
    fwd.has_ack = false; /* the ack id is the sender's business */
    m = &fwd;
    s->stats.msgs_in++;
    if (s->sio)
        publish(s, c, m);
    if (!own || (own->name_len && own->count < 2))
        return;
    struct slice *frames[1 + EIO_MAX_ATTACHMENTS];
    if (!(frames[0] = packet_frame(s, m))) {
        LOG_ERR("client %" PRIu64 ": out of memory encoding a broadcast", c->id);
        return;
    }
    if (m->n_att) /* att may be NULL then: memcpy must not see it */
        memcpy(frames + 1, m->att, m->n_att * sizeof *m->att);
    struct target t = {.skip = c, .bit = (uint16_t)(1u << m->nsp)};
    for (struct room *r = own->name_len ? own : room_next(&s->sio_rooms, NULL), *next; r; r = next) {
        next = own->name_len ? NULL : room_next(&s->sio_rooms, r);
        s->stats.msgs_out += fanout(r, frames, 1 + m->n_att, offer, &t);
    }
    slice_unref(frames[0]);
}

static const char *skip_space(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Is p[0..len), an array as eio_decode checked, empty? */
static bool json_array_empty(const char *p, size_t len)
{
    const char *end = p + len;
    p = skip_space(p, end);
    p = p < end ? skip_space(p + 1, end) : p;
    return p < end && *p == ']';
}

/* The conformance profile's handlers (socket.io-protocol's test-suite server). */
static void conformance_event(struct eio_session *c, const struct sio_message *m)
{
    const char *name, *rest;
    size_t name_len, rest_len;
    if (m->nsp != 0 || !eio_event_split(m->json, m->json_len, &name, &name_len, &rest, &rest_len))
        return; /* "/custom" has no handlers */
    struct buf b = {0};
    struct sio_message out = *m;
    out.has_ack = false;
    int rc = -1;
    if (name_len == 9 && !memcmp(name, "\"message\"", 9)) {
        rc = buf_append(&b, "[\"message-back\"", 15) | buf_append(&b, rest, rest_len) | buf_append(&b, "]", 1);
    } else if (name_len == 18 && !memcmp(name, "\"message-with-ack\"", 18) && m->has_ack) {
        const char *end = rest + rest_len;
        rest = skip_space(rest, end);
        rest += rest < end && *rest == ',';
        rest_len = (size_t)(end - rest);
        out.type = EIO_ACK;
        out.has_ack = true;
        rc = buf_append(&b, "[", 1) | buf_append(&b, rest, rest_len) | buf_append(&b, "]", 1);
    } else {
        return;
    }
    out.json = buf_head(&b);
    out.json_len = buf_len(&b);
    if (rc == 0)
        send_message(c, &out);
    buf_free(&b);
}

static void on_client_ack(struct eio_session *c, const struct sio_message *m);

static void on_message(struct eio_session *c, const struct sio_message *m)
{
    if (m->type == EIO_ACK) {
        on_client_ack(c, m); /* only other nodes' broadcasts ask our clients for acks */
        return;
    }
    if (c->srv->cfg.sio_profile == SIO_PROFILE_CONFORMANCE) {
        conformance_event(c, m);
        return;
    }
    broadcast(c, m);
    if (m->has_ack && eio_open(c))
        send_control(c, EIO_ACK, m->nsp, true, m->ack, "[]", 2);
}

static void pending_free(struct eio_session *c)
{
    struct sio_pending *p = c->sock->pending;
    if (!p)
        return;
    for (uint32_t i = 0; i < p->have; i++)
        slice_unref(p->att[i]);
    free(p);
    c->sock->pending = NULL;
}

static void waits_free(struct eio_session *c);

/* eio_app.on_free: drop what c was assembling, the acks other nodes wait for, its handshake. */
static void on_free(struct eio_session *c)
{
    if (!c->sock)
        return;
    pending_free(c);
    waits_free(c);
    handshake_free(c);
    free(c->sock);
    c->sock = NULL;
}

/* eio_app.on_packet: a Socket.IO packet (an Engine.IO MESSAGE, already parsed). */
static void on_packet(struct eio_session *c, const struct eio_packet *pk)
{
    /* What a packet makes us send goes after the auth event, as in Node. */
    release(c);
    if (c->sock->pending) { /* socket.io-parser: "got plaintext data when reconstructing a packet" */
        eio_fail(c, "text packet while binary attachments were due");
        return;
    }
    if (pk->type == EIO_CONNECT) {
        on_connect(c, pk);
        return;
    }
    int i = nsp_index(c->srv, pk->nsp.p, pk->nsp.len);
    if (i < 0 || !(c->sock->nsps & (1u << i))) {
        eio_fail(c, "packet for a namespace not joined");
        return;
    }
    struct sio_message m = {.nsp = (uint8_t)i,
                            .has_ack = pk->ack >= 0,
                            .ack = pk->ack >= 0 ? (uint64_t)pk->ack : 0,
                            .json = pk->data.p,
                            .json_len = pk->data.len};
    switch (pk->type) {
    case EIO_DISCONNECT: c->sock->nsps &= (uint16_t) ~(1u << i); return;
    case EIO_EVENT:
    case EIO_ACK:
        m.type = pk->type;
        on_message(c, &m);
        return;
    case EIO_BINARY_EVENT:
    case EIO_BINARY_ACK: break;
    default: eio_fail(c, "CONNECT_ERROR from a client"); return;
    }
    m.type = pk->type == EIO_BINARY_EVENT ? EIO_EVENT : EIO_ACK;
    if (pk->attachments > EIO_MAX_ATTACHMENTS) {
        eio_fail(c, "too many attachments");
        return;
    }
    if (pk->attachments == 0) {
        on_message(c, &m);
        return;
    }
    struct sio_pending *p = malloc(sizeof *p + pk->data.len);
    if (!p) {
        eio_fail(c, "out of memory");
        return;
    }
    *p = (struct sio_pending){.type = m.type,
                              .nsp = m.nsp,
                              .has_ack = m.has_ack,
                              .ack = m.ack,
                              .want = pk->attachments,
                              .json_len = pk->data.len};
    memcpy(p->json, pk->data.p, pk->data.len);
    c->sock->pending = p;
}

/* eio_app.on_binary: a binary Engine.IO message, an attachment of the pending packet. */
static void on_attachment(struct eio_session *c, const uint8_t *data, size_t len)
{
    release(c);
    struct sio_pending *p = c->sock->pending;
    if (!p) { /* socket.io-parser: "got binary data when not reconstructing a packet" */
        eio_fail(c, "binary data with no packet announcing it");
        return;
    }
    if (!(p->att[p->have] = ws_frame_slice(WS_OP_BINARY, data, len))) {
        eio_fail(c, "out of memory");
        return;
    }
    if (++p->have < p->want)
        return;
    c->sock->pending = NULL;
    on_message(c, &(struct sio_message){.type = p->type,
                                        .nsp = p->nsp,
                                        .has_ack = p->has_ack,
                                        .ack = p->ack,
                                        .json = p->json,
                                        .json_len = p->json_len,
                                        .att = p->att,
                                        .n_att = p->have});
    c->sock->pending = p;
    pending_free(c);
}

const struct eio_app socketio_eio_app = {
    .on_open = on_open, .on_packet = on_packet, .on_binary = on_attachment, .release = release, .on_free = on_free};

/* The Redis adapter (SOCKETIO.md 3): a node publishes each broadcast once, on KEY#NSP# or KEY#NSP#ROOM#, and
 * PSUBSCRIBEs KEY#NSP#* for each namespace, so every node sees every broadcast and drops a room's before decoding
 * when it has no member there, and its own by the uid. */

#define UID_LEN 6

struct socketio {
    char uid[EIO_ID_LEN + 1]; /* the first UID_LEN characters are the adapter uid */
    struct buf out, json, channel, scratch;
    bool warned;       /* one warning for the first undecodable message; the metric counts the rest */
    bool warned_join;  /* one warning for the first socketsJoin / socketsLeave, which we cannot honour */
    uint64_t next_ack; /* ack ids of other nodes' broadcasts to our clients, shared by every receiver */
};

/* KEY-request#NSP# or KEY-response#NSP# into out (reset first). */
static int request_channel(struct buf *out, const char *key, const char *kind, const char *nsp, size_t nsp_len)
{
    out->rpos = out->wpos = 0;
    return buf_append(out, key, strlen(key)) | buf_append(out, kind, strlen(kind)) | buf_append(out, nsp, nsp_len) |
           buf_append(out, "#", 1);
}

int socketio_init(struct server *s, char *err, size_t errlen)
{
    uint8_t rnd[EIO_ID_RANDOM] = {0};
    struct socketio *io = calloc(1, sizeof *io);
    if (!io) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->sio = io;
    RAND_bytes(rnd, sizeof rnd);
    eio_make_id(rnd, io->uid);
    if (s->workers) /* a node's workers must never take each other's broadcasts for their own */
        workers_sid_mark(io->uid, workers_index(s->workers));
    const char *key = s->cfg.sio_key;
    for (uint32_t i = 0; i < s->cfg.sio_nsp_count; i++) {
        const char *nsp = s->cfg.sio_nsps[i];
        io->channel.rpos = io->channel.wpos = 0;
        if (sioa_channel(&io->channel, key, strlen(key), nsp, strlen(nsp), NULL, 0) < 0 ||
            buf_append(&io->channel, "*", 1) < 0 ||
            sync_psubscribe(s->sync, buf_head(&io->channel), buf_len(&io->channel)) < 0 ||
            request_channel(&io->channel, key, "-request#", nsp, strlen(nsp)) < 0 ||
            sync_subscribe(s->sync, buf_head(&io->channel), buf_len(&io->channel)) < 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

void socketio_free(struct server *s)
{
    if (!s->sio)
        return;
    buf_free(&s->sio->out);
    buf_free(&s->sio->json);
    buf_free(&s->sio->channel);
    buf_free(&s->sio->scratch);
    free(s->sio);
    s->sio = NULL;
}

/* The payload of a frame this node encoded. */
static struct sioa_bytes frame_payload(const struct slice *f)
{
    size_t h = ws_frame_header_len((const uint8_t *)f->data);
    return (struct sioa_bytes){.data = (const char *)f->data + h, .len = f->len - h};
}

static void publish(struct server *s, const struct eio_session *c, const struct sio_message *m)
{
    struct socketio *io = s->sio;
    struct sioa_bytes att[EIO_MAX_ATTACHMENTS], room = {0};
    const char *key = s->cfg.sio_key, *nsp = nsp_name(s, m->nsp);
    char id[EIO_ID_LEN + 1];
    socket_id(c, m->nsp, id); /* as socket.broadcast.emit: the sender is excepted (it may share a room elsewhere) */
    struct sioa_bytes except = {.data = id, .len = EIO_ID_LEN};
    for (uint32_t i = 0; i < m->n_att; i++)
        att[i] = frame_payload(m->att[i]);
    if (c->member.room->name_len)
        room = (struct sioa_bytes){.data = c->member.room->name, .len = c->member.room->name_len};
    io->out.rpos = io->out.wpos = io->channel.rpos = io->channel.wpos = 0;
    if (sioa_encode(&io->out, io->uid, UID_LEN, nsp, strlen(nsp), m->json, m->json_len, att, m->n_att, &room,
                    room.len ? 1 : 0, &except, 1) < 0 ||
        sioa_channel(&io->channel, key, strlen(key), nsp, strlen(nsp), room.data, room.len) < 0) {
        /* The packet passed eio_decode, so only memory can fail here (or a placeholder naming no attachment). */
        LOG_WARN("client %" PRIu64 ": a broadcast could not be encoded for Redis; other nodes miss it", c->id);
        return;
    }
    sync_publish_raw(s->sync, buf_head(&io->channel), buf_len(&io->channel), buf_head(&io->out), buf_len(&io->out),
                     m->nsp);
    if (io->out.cap > 65536) /* a large message should not pin a large block for the life of the node */
        buf_free(&io->out);
}

static bool excepted(const struct sioa_iter *except, const struct room *r)
{
    struct sioa_iter it = *except;
    struct sioa_bytes name;
    while (sioa_next_str(&it, &name))
        if (name.len == r->name_len && !memcmp(name.data, r->name, name.len))
            return true;
    return false;
}

/* The sockets a broadcast excepts, as the sio_id a local receiver would have for them (server.h). */
struct except_ids {
    size_t n;
    uint8_t (*ids)[EIO_ID_RANDOM];
    uint8_t local[8][EIO_ID_RANDOM]; /* enough for socket.broadcast.emit's one; more are allocated */
};

/* 0, or -1 on out of memory. */
static int except_ids_init(struct except_ids *x, const struct sioa_iter *except, uint8_t nsp)
{
    struct sioa_iter it = *except;
    struct sioa_bytes name;
    size_t cap = except->left;
    x->n = 0;
    x->ids = cap <= 8 ? x->local : malloc(cap * sizeof *x->ids);
    if (!x->ids)
        return -1;
    while (sioa_next_str(&it, &name))
        if (eio_parse_id(name.data, name.len, x->ids[x->n])) {
            x->ids[x->n][0] ^= nsp;
            x->n++;
        }
    return 0;
}

static void except_ids_free(struct except_ids *x)
{
    if (x->ids != x->local)
        free(x->ids);
}

static bool excepted_socket(const struct except_ids *x, const struct eio_session *c)
{
    for (size_t i = 0; i < x->n; i++)
        if (!memcmp(x->ids[i], c->sock->id, EIO_ID_RANDOM))
            return true;
    return false;
}

static void deliver_room(struct server *s, struct room *r, struct slice *const *frames, size_t n, uint16_t bit,
                         const struct except_ids *x)
{
    s->stats.msgs_out += fanout(r, frames, n, offer, &(struct target){.bit = bit, .x = x});
}

/* A broadcast from another node: decoded once, encoded once as a packet (and its attachments as frames), shared by
 * every local receiver in its rooms (every room when it names none), minus the rooms and sockets it excepts. */
/* The frames of a packet from another node (its data decoded into io->json): the packet, then each attachment.
 * The count, or 0 (nothing held) when out of memory or when it has more attachments than our clients accept. */
static size_t remote_frames(struct server *s, const struct sioa_broadcast *b, int nsp, bool has_ack, uint64_t ack,
                            struct slice *frames[1 + EIO_MAX_ATTACHMENTS])
{
    struct socketio *io = s->sio;
    size_t n = 1 + b->n_attachments;
    if (b->n_attachments > EIO_MAX_ATTACHMENTS) {
        s->stats.sio_bus_dropped++;
        LOG_DEBUG("a Socket.IO packet with %zu attachments (clients accept %d) dropped", b->n_attachments,
                  EIO_MAX_ATTACHMENTS);
        return 0;
    }
    memset(frames, 0, n * sizeof *frames);
    for (size_t i = 0; i < b->n_attachments; i++)
        if (!(frames[1 + i] = ws_frame_slice(WS_OP_BINARY, b->attachments[i].data, b->attachments[i].len)))
            goto fail;
    struct sio_message m = {.type = EIO_EVENT,
                            .nsp = (uint8_t)nsp,
                            .has_ack = has_ack,
                            .ack = ack,
                            .json = buf_head(&io->json),
                            .json_len = buf_len(&io->json),
                            .att = frames + 1,
                            .n_att = (uint32_t)b->n_attachments};
    if ((frames[0] = packet_frame(s, &m)))
        return n;
fail:
    for (size_t i = 0; i < n; i++)
        if (frames[i])
            slice_unref(frames[i]);
    return 0;
}

static void deliver_remote(struct server *s, const struct sioa_broadcast *b, int nsp)
{
    struct slice *frames[1 + EIO_MAX_ATTACHMENTS];
    size_t n = remote_frames(s, b, nsp, false, 0, frames);
    struct except_ids x;
    if (n == 0)
        return;
    if (except_ids_init(&x, &b->except, (uint8_t)nsp) < 0)
        goto out;
    s->stats.sio_bus_in++;
    uint16_t bit = (uint16_t)(1u << nsp);
    struct sioa_iter rooms = b->rooms;
    struct sioa_bytes name;
    if (rooms.left == 0) {
        for (struct room *r = room_next(&s->sio_rooms, NULL), *next; r; r = next) {
            next = room_next(&s->sio_rooms, r);
            if (!excepted(&b->except, r))
                deliver_room(s, r, frames, n, bit, &x);
        }
    }
    while (sioa_next_str(&rooms, &name)) {
        struct room *r = room_find(&s->sio_rooms, name.data, name.len);
        if (r && !excepted(&b->except, r))
            deliver_room(s, r, frames, n, bit, &x);
    }
    except_ids_free(&x);
out:
    for (size_t i = 0; i < n; i++)
        slice_unref(frames[i]);
}

/* ---- Other nodes' requests (SOCKETIO.md 3) ----
 *
 * Node's adapter counts the nodes subscribed to KEY-request#NSP# (PUBSUB NUMSUB) and waits for an answer from each,
 * so a node that subscribes answers every request that expects one: fetchSockets and allSockets (its sockets),
 * allRooms, and emits with acks (it delivers, says to how many clients, then forwards each client's ack).
 * disconnectSockets is acted on. socketsJoin / socketsLeave are not: a socket here has exactly the room it asked
 * for (warned once). serverSideEmit goes unanswered, as from a Node server with no listener for the event. A
 * socket's rooms are its id and its room; its handshake is what struct sio_handshake keeps. */

#define SIO_WAITS_MAX  32 /* acks one client owes other nodes at once: past that the oldest is forgotten */
#define REQUEST_ID_MAX 64
#define ACK_ID_LIMIT   1000000000000000ull /* ack ids stay under EIO_ACK_DIGITS digits */

struct sio_wait {
    struct sio_wait *next;
    uint64_t ack;
    uint8_t nsp, id_len;
    char request_id[REQUEST_ID_MAX];
};

static void waits_free(struct eio_session *c)
{
    for (struct sio_wait *w = c->sock->waits, *next; w; w = next) {
        next = w->next;
        free(w);
    }
    c->sock->waits = NULL;
}

/* 0, or -1 on out of memory. The newest goes first; a client over SIO_WAITS_MAX loses its oldest. */
static int wait_add(struct eio_session *c, uint8_t nsp, uint64_t ack, struct sioa_bytes request_id)
{
    struct sio_wait *w = malloc(sizeof *w), **pp = &c->sock->waits;
    if (!w)
        return -1;
    *w = (struct sio_wait){.next = c->sock->waits, .ack = ack, .nsp = nsp, .id_len = (uint8_t)request_id.len};
    memcpy(w->request_id, request_id.data, request_id.len);
    c->sock->waits = w;
    for (int n = 0; *pp; n++, pp = &(*pp)->next)
        if (n == SIO_WAITS_MAX) {
            free(*pp);
            *pp = NULL;
            break;
        }
    return 0;
}

/* The sockets of one namespace a request selects: in any of its rooms (all sockets when it names none) and in none
 * of its except list; a socket is in the room of its id and in the room it asked for. */
struct selection {
    struct eio_session **v;
    size_t n, cap;
};

static bool named_in(const struct eio_session *c, const char *id, const struct sioa_iter *names)
{
    struct sioa_iter it = *names;
    struct sioa_bytes name;
    const struct room *r = c->member.room;
    while (sioa_next_str(&it, &name))
        if ((name.len == EIO_ID_LEN && !memcmp(name.data, id, EIO_ID_LEN)) ||
            (r->name_len && name.len == r->name_len && !memcmp(name.data, r->name, name.len)))
            return true;
    return false;
}

/* Collected before acting on any: disconnecting a socket may change the rooms being walked. 0, or -1 on out of
 * memory (sel empty). */
static int select_sockets(struct server *s, int nsp, const struct sioa_iter *rooms, const struct sioa_iter *except,
                          struct selection *sel)
{
    uint16_t bit = (uint16_t)(1u << nsp);
    char id[EIO_ID_LEN + 1];
    *sel = (struct selection){0};
    for (struct room *r = room_next(&s->sio_rooms, NULL); r; r = room_next(&s->sio_rooms, r))
        for (uint32_t i = 0; i < r->count; i++) {
            struct eio_session *c = container_of(r->members[i], struct eio_session, member);
            if (!eio_open(c) || !(c->sock->nsps & bit))
                continue;
            socket_id(c, (uint8_t)nsp, id);
            if ((rooms->left && !named_in(c, id, rooms)) || named_in(c, id, except))
                continue;
            if (sel->n == sel->cap) {
                size_t cap = sel->cap ? 2 * sel->cap : 64;
                struct eio_session **v = realloc(sel->v, cap * sizeof *v);
                if (!v) {
                    free(sel->v);
                    *sel = (struct selection){0};
                    return -1;
                }
                sel->v = v, sel->cap = cap;
            }
            sel->v[sel->n++] = c;
        }
    return 0;
}

/* An answer starts as a map with requestId; respond publishes what the writer holds on KEY-response#NSP#. */
static struct sioa_writer answer(struct server *s, size_t keys, struct sioa_bytes request_id)
{
    struct sioa_writer w = {&s->sio->out, false};
    s->sio->out.rpos = s->sio->out.wpos = 0;
    sioa_put_map(&w, keys);
    sioa_put_str(&w, "requestId", 9);
    sioa_put_str(&w, request_id.data, request_id.len);
    return w;
}

static void respond(struct server *s, int nsp, const struct sioa_writer *w)
{
    struct socketio *io = s->sio;
    const char *name = nsp_name(s, (uint8_t)nsp);
    if (w->failed || request_channel(&io->channel, s->cfg.sio_key, "-response#", name, strlen(name)) < 0) {
        LOG_WARN("an answer to another Socket.IO node could not be encoded (out of memory); it will time out");
        return;
    }
    sync_publish_raw(s->sync, buf_head(&io->channel), buf_len(&io->channel), buf_head(&io->out), buf_len(&io->out),
                     -1); /* answers go to the asker alone */
}

#define QUERY_PART_MAX 1024 /* a query parameter's name or value, decoded; longer ones are left out of the answer */

/* The query parameters of url as Node's handshake.query has them: decoded, each a string. */
static void put_query(struct sioa_writer *w, const char *url, size_t url_len)
{
    char name[QUERY_PART_MAX], value[QUERY_PART_MAX];
    struct http_header p;
    size_t n = 0, pos = 0;
    while (http_query_next(url, url_len, &pos, &p))
        n += http_decode(p.name, p.name_len, name, sizeof name) >= 0 &&
             http_decode(p.value, p.value_len, value, sizeof value) >= 0;
    sioa_put_map(w, n);
    for (pos = 0; http_query_next(url, url_len, &pos, &p);) {
        int nl = http_decode(p.name, p.name_len, name, sizeof name);
        int vl = http_decode(p.value, p.value_len, value, sizeof value);
        if (nl >= 0 && vl >= 0) {
            sioa_put_str(w, name, (size_t)nl);
            sioa_put_str(w, value, (size_t)vl);
        }
    }
}

/* socket.handshake as Node builds it, in its key order; headers are not kept, so they come as {}. */
static void put_handshake(struct sioa_writer *w, const struct sio_handshake *hs, uint8_t nsp)
{
    static const struct sio_handshake none = {0};
    char when[96] = "";
    const struct sio_auth *a = NULL;
    if (!hs)
        hs = &none;
    time_t t = (time_t)hs->issued;
    struct tm tm;
    if (hs->issued > 0 && gmtime_r(&t, &tm)) /* new Date().toString() in UTC, as Node in a UTC zone prints it */
        strftime(when, sizeof when, "%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)", &tm);
    for (a = hs->auths; a && a->nsp != nsp; a = a->next)
        ;
    sioa_put_map(w, 9);
    sioa_put_str(w, "headers", 7);
    sioa_put_map(w, 0);
    sioa_put_str(w, "time", 4);
    sioa_put_str(w, when, strlen(when));
    sioa_put_str(w, "address", 7);
    sioa_put_str(w, hs->address, strlen(hs->address));
    sioa_put_str(w, "xdomain", 7);
    sioa_put_bool(w, hs->xdomain);
    sioa_put_str(w, "secure", 6);
    sioa_put_bool(w, false); /* refserver listens without TLS */
    sioa_put_str(w, "issued", 6);
    sioa_put_uint(w, (uint64_t)(hs->issued * 1000));
    sioa_put_str(w, "url", 3);
    sioa_put_str(w, hs->url, hs->url_len);
    sioa_put_str(w, "query", 5);
    put_query(w, hs->url, hs->url_len);
    sioa_put_str(w, "auth", 4);
    if (a)
        sioa_put_json(w, a->json, a->len, NULL, 0);
    else
        sioa_put_map(w, 0);
}

/* SOCKETS: {requestId, sockets: [id...]}; REMOTE_FETCH: {requestId, sockets: [{id, handshake, rooms, data}...]}. */
static void answer_sockets(struct server *s, int nsp, const struct sioa_request *rq, const struct selection *sel)
{
    bool fetch = rq->type == SIOA_REQ_REMOTE_FETCH;
    char id[EIO_ID_LEN + 1];
    struct sioa_writer w = answer(s, 2, rq->request_id);
    sioa_put_str(&w, "sockets", 7);
    sioa_put_array(&w, sel->n);
    for (size_t i = 0; i < sel->n; i++) {
        const struct room *r = sel->v[i]->member.room;
        socket_id(sel->v[i], (uint8_t)nsp, id);
        if (fetch) {
            sioa_put_map(&w, 4);
            sioa_put_str(&w, "id", 2);
        }
        sioa_put_str(&w, id, EIO_ID_LEN);
        if (!fetch)
            continue;
        sioa_put_str(&w, "handshake", 9);
        put_handshake(&w, sel->v[i]->sock->hs, (uint8_t)nsp);
        sioa_put_str(&w, "rooms", 5);
        sioa_put_array(&w, r->name_len ? 2 : 1);
        sioa_put_str(&w, id, EIO_ID_LEN);
        if (r->name_len)
            sioa_put_str(&w, r->name, r->name_len);
        sioa_put_str(&w, "data", 4);
        sioa_put_map(&w, 0);
    }
    respond(s, nsp, &w);
}

/* ALL_ROOMS: {requestId, rooms: [...]}: every room with a socket of the namespace, and every socket's id. */
static void answer_rooms(struct server *s, int nsp, const struct sioa_request *rq, const struct selection *sel)
{
    char id[EIO_ID_LEN + 1];
    uint16_t bit = (uint16_t)(1u << nsp);
    struct sioa_writer w = answer(s, 2, rq->request_id);
    sioa_put_str(&w, "rooms", 5);
    size_t at = sioa_begin_array(&w), count = 0;
    for (struct room *r = room_next(&s->sio_rooms, NULL); r; r = room_next(&s->sio_rooms, r)) {
        for (uint32_t i = 0; r->name_len && i < r->count; i++) {
            const struct eio_session *c = container_of(r->members[i], struct eio_session, member);
            if (eio_open(c) && (c->sock->nsps & bit)) {
                sioa_put_str(&w, r->name, r->name_len);
                count++;
                break;
            }
        }
    }
    for (size_t i = 0; i < sel->n; i++, count++) {
        socket_id(sel->v[i], (uint8_t)nsp, id);
        sioa_put_str(&w, id, EIO_ID_LEN);
    }
    sioa_end_array(&w, at, count);
    respond(s, nsp, &w);
}

/* disconnectSockets(close): as socket.disconnect(close): a DISCONNECT for the namespace, or for every namespace of
 * the connection and then the connection closed once they are out (eio_close). */
static void disconnect_socket(struct eio_session *c, int nsp, bool close)
{
    uint16_t nsps = close ? c->sock->nsps : (uint16_t)(1u << nsp);
    for (uint8_t i = 0; i < SIO_NSP_MAX; i++)
        if (nsps & (1u << i))
            send_control(c, EIO_DISCONNECT, i, false, 0, NULL, 0);
    c->sock->nsps &= (uint16_t)~nsps;
    if (close)
        eio_close(c);
}

/* BROADCAST: the packet to each selected client under one ack id (ids count per socket, so one serves all, as in
 * Node), then {type: 8, requestId, clientCount}; each client's ack later goes back in on_client_ack. */
static void broadcast_with_ack(struct server *s, int nsp, const struct sioa_request *rq, const struct selection *sel)
{
    struct socketio *io = s->sio;
    struct slice *frames[1 + EIO_MAX_ATTACHMENTS];
    uint64_t ack = io->next_ack = (io->next_ack + 1) % ACK_ID_LIMIT, count = 0;
    size_t n = rq->packet.type == EIO_EVENT ? remote_frames(s, &rq->packet, nsp, true, ack, frames) : 0;
    for (size_t i = 0; n && i < sel->n; i++) {
        struct eio_session *c = sel->v[i];
        if (wait_add(c, (uint8_t)nsp, ack, rq->request_id) == 0 && eio_offer(c, frames, n)) {
            s->stats.msgs_out++;
            count++;
        }
    }
    for (size_t i = 0; i < n; i++)
        slice_unref(frames[i]);
    struct sioa_writer w = answer(s, 3, rq->request_id);
    sioa_put_str(&w, "type", 4);
    sioa_put_uint(&w, SIOA_REQ_BROADCAST_CLIENT_COUNT);
    sioa_put_str(&w, "clientCount", 11);
    sioa_put_uint(&w, count);
    respond(s, nsp, &w);
}

/* A client's ACK: for an ack id of ours, {type: 9, requestId, packet: its first argument} to the node that asked. */
static void on_client_ack(struct eio_session *c, const struct sio_message *m)
{
    struct server *s = c->srv;
    struct sioa_bytes att[EIO_MAX_ATTACHMENTS];
    struct sio_wait **pp = &c->sock->waits, *w;
    while ((w = *pp) && (w->ack != m->ack || w->nsp != m->nsp))
        pp = &w->next;
    if (!w || !m->has_ack || !s->sio)
        return; /* an ack nothing waits for (any more): socket.io drops it too */
    *pp = w->next;
    for (uint32_t i = 0; i < m->n_att; i++)
        att[i] = frame_payload(m->att[i]);
    /* An ack without arguments: Node's msgpack leaves out the undefined packet, so the map has 2 keys. */
    bool has_arg = !json_array_empty(m->json, m->json_len);
    struct sioa_writer out = answer(s, has_arg ? 3 : 2, (struct sioa_bytes){w->request_id, w->id_len});
    sioa_put_str(&out, "type", 4);
    sioa_put_uint(&out, SIOA_REQ_BROADCAST_ACK);
    if (has_arg) {
        sioa_put_str(&out, "packet", 6);
        sioa_put_json_first(&out, m->json, m->json_len, att, m->n_att);
    }
    s->stats.msgs_in++;
    respond(s, m->nsp, &out);
    free(w);
}

static void on_request(struct server *s, const char *channel_nsp, size_t nsp_len, const char *data, size_t len)
{
    struct socketio *io = s->sio;
    struct sioa_request rq;
    struct selection sel = {0};
    int nsp = nsp_index(s, channel_nsp, nsp_len);
    io->json.rpos = io->json.wpos = 0;
    if (nsp < 0)
        return;
    if (sioa_decode_request((const uint8_t *)data, len, &rq, &io->scratch, &io->json) < 0 ||
        rq.request_id.len > REQUEST_ID_MAX) {
        s->stats.sio_bus_dropped++;
        LOG_DEBUG("a request on the Socket.IO adapter's request channel could not be decoded; dropped");
        return;
    }
    bool answers = rq.type == SIOA_REQ_SOCKETS || rq.type == SIOA_REQ_ALL_ROOMS || rq.type == SIOA_REQ_REMOTE_FETCH ||
                   rq.type == SIOA_REQ_BROADCAST;
    if ((answers && !rq.request_id.len) || (rq.uid.len == UID_LEN && !memcmp(rq.uid.data, io->uid, UID_LEN)))
        return;
    if (rq.type == SIOA_REQ_REMOTE_JOIN || rq.type == SIOA_REQ_REMOTE_LEAVE) {
        if (!io->warned_join)
            LOG_WARN("another Socket.IO node asked for socketsJoin/socketsLeave: refserver's sockets keep the room "
                     "they asked for, so this and later ones are ignored");
        io->warned_join = true;
        return;
    }
    if (!answers && !(rq.type == SIOA_REQ_REMOTE_DISCONNECT && !rq.sid.len))
        return; /* serverSideEmit (no listeners here), answers to others, a legacy by-sid request, unknown types */
    const struct sioa_iter *rooms = rq.type == SIOA_REQ_SOCKETS ? &rq.rooms : &rq.packet.rooms;
    struct sioa_iter none = {NULL, NULL, 0};
    if (select_sockets(s, nsp, rooms, rq.type == SIOA_REQ_SOCKETS ? &none : &rq.packet.except, &sel) < 0)
        LOG_WARN("out of memory selecting sockets for another node's request; answering with none");
    s->stats.sio_requests++;
    switch (rq.type) {
    case SIOA_REQ_SOCKETS:
    case SIOA_REQ_REMOTE_FETCH: answer_sockets(s, nsp, &rq, &sel); break;
    case SIOA_REQ_ALL_ROOMS: answer_rooms(s, nsp, &rq, &sel); break;
    case SIOA_REQ_BROADCAST: broadcast_with_ack(s, nsp, &rq, &sel); break;
    default:
        for (size_t i = 0; i < sel.n; i++)
            disconnect_socket(sel.v[i], nsp, rq.close);
    }
    free(sel.v);
}

void socketio_on_bus(void *ctx, const char *channel, size_t channel_len, const char *data, size_t len)
{
    struct server *s = ctx;
    struct socketio *io = s->sio;
    struct sioa_bytes ch_nsp, ch_room;
    struct sioa_broadcast b;
    const char *key = s->cfg.sio_key;
    size_t key_len = strlen(key);
    if (channel_len > key_len + 10 && !memcmp(channel + key_len, "-request#", 9) && channel[channel_len - 1] == '#') {
        on_request(s, channel + key_len + 9, channel_len - key_len - 10, data, len);
        if (io->json.cap > 65536 || io->scratch.cap > 65536 || io->out.cap > 65536) {
            buf_free(&io->json); /* a large request or answer should not pin a large block */
            buf_free(&io->scratch);
            buf_free(&io->out);
        }
        return;
    }
    int rc = sioa_channel_room(channel, channel_len, key, key_len, &ch_nsp, &ch_room);
    if (rc < 0 || (rc == 1 && !room_find(&s->sio_rooms, ch_room.data, ch_room.len)))
        return;
    io->json.rpos = io->json.wpos = 0;
    if (sioa_decode((const uint8_t *)data, len, &b, &io->json) < 0) {
        s->stats.sio_bus_dropped++;
        if (!io->warned)
            LOG_WARN("a message on %.*s is not a @socket.io/redis-adapter broadcast; dropped (and counted from now "
                     "on in refserver_socketio_bus_messages_dropped_total)",
                     (int)channel_len, channel);
        io->warned = true;
        return;
    }
    if (b.uid.len == UID_LEN && !memcmp(b.uid.data, io->uid, UID_LEN))
        return; /* ours: delivered locally when the client sent it */
    if (b.nsp.len != ch_nsp.len || memcmp(b.nsp.data, ch_nsp.data, b.nsp.len) != 0)
        return; /* the adapter of the channel's namespace takes only its own namespace's packets */
    int nsp = nsp_index(s, b.nsp.data, b.nsp.len);
    if (nsp >= 0 && b.type == EIO_EVENT)
        deliver_remote(s, &b, nsp);
    if (io->json.cap > 65536)
        buf_free(&io->json);
}
