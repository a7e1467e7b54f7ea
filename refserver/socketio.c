#include "refserver/socketio.h"

#include "common/buf.h"
#include "common/log.h"
#include "common/ws.h"
#include "refserver/room.h"
#include "refserver/server.h"
#include "refserver/sioadapter.h"
#include "refserver/sync.h"

#include <inttypes.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* The longest packet header: type, attachments and '-', "/nsp,", ack id. */
#define HEADER_MAX (1 + 3 + REFSIO_NSP_MAX + 2 + REFSIO_ACK_DIGITS + 1)

/* A BINARY_EVENT or BINARY_ACK whose attachments are still arriving: the packet's JSON is copied (the read buffer
 * it came in is reused) and each attachment is kept as the binary frame it will be sent on as. */
struct sio_pending {
    uint8_t type;
    uint8_t nsp;
    bool has_ack;
    uint64_t ack;
    uint32_t want, have;
    struct slice *att[SIO_MAX_ATTACHMENTS];
    size_t json_len;
    char json[];
};

/* What a packet carries once whole, wherever it came from (a text frame, a pending binary packet, Redis). */
struct sio_message {
    uint8_t type; /* REFSIO_EVENT or REFSIO_ACK; binary when n_att > 0 */
    uint8_t nsp;
    bool has_ack;
    uint64_t ack;
    const char *json;
    size_t json_len;
    struct slice *const *att;
    uint32_t n_att;
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

/* "<type>[<n>-][<nsp>,][<ack id>]" into out (HEADER_MAX bytes); a binary message becomes type 5 or 6. */
static size_t packet_header(char *out, const struct server *s, const struct sio_message *m)
{
    size_t n = 0;
    out[n++] = (char)('0' + m->type + (m->n_att ? 3 : 0));
    if (m->n_att)
        n += (size_t)snprintf(out + n, 5, "%" PRIu32 "-", m->n_att);
    if (m->nsp)
        n += (size_t)snprintf(out + n, REFSIO_NSP_MAX + 2, "%s,", nsp_name(s, m->nsp));
    if (m->has_ack)
        n += (size_t)snprintf(out + n, REFSIO_ACK_DIGITS + 2, "%" PRIu64, m->ack);
    return n;
}

/* The Engine.IO message (the '4'), the packet header and its JSON as one text frame, encoded once for every
 * receiver. NULL on out of memory. */
static struct slice *packet_frame(const struct server *s, const struct sio_message *m)
{
    char head[1 + HEADER_MAX];
    head[0] = '4';
    size_t hlen = 1 + packet_header(head + 1, s, m), len = hlen + m->json_len;
    uint8_t frame_head[WS_MAX_HEADER];
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
static void send_message(struct client *c, const struct sio_message *m)
{
    struct slice *frames[1 + SIO_MAX_ATTACHMENTS];
    struct slice *f = packet_frame(c->srv, m);
    if (!f) {
        session_sio_fail(c, "out of memory");
        return;
    }
    frames[0] = f;
    if (m->n_att) /* att may be NULL then: memcpy must not see it */
        memcpy(frames + 1, m->att, m->n_att * sizeof *m->att);
    session_offer(c->srv, c, frames, 1 + m->n_att);
    slice_unref(f);
}

static void send_text(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void send_text(struct client *c, const char *fmt, ...)
{
    char out[REFSIO_NSP_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, sizeof out, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof out)
        session_send(c, WS_OP_TEXT, out, (size_t)n);
}

/* "/nsp," for a packet, or "" for "/". */
static const char *nsp_prefix(const struct server *s, uint8_t i, char *out)
{
    if (i == 0)
        return "";
    snprintf(out, REFSIO_NSP_MAX + 2, "%s,", nsp_name(s, i));
    return out;
}

/* The id of c's socket in namespace nsp (server.h: client.sio_id). */
static void socket_id(const struct client *c, uint8_t nsp, char out[REFSIO_ID_LEN + 1])
{
    uint8_t rnd[REFSIO_ID_RANDOM];
    memcpy(rnd, c->sio_id, sizeof rnd);
    rnd[0] ^= nsp;
    refsio_make_id(rnd, out);
}

static void on_connect(struct client *c, const struct refsio_packet *pk)
{
    struct server *s = c->srv;
    char pre[REFSIO_NSP_MAX + 2], id[REFSIO_ID_LEN + 1];
    int i = nsp_index(s, pk->nsp, pk->nsp_len);
    if (i < 0) {
        send_text(c, "44%.*s,{\"message\":\"Invalid namespace\"}", (int)pk->nsp_len, pk->nsp);
        return;
    }
    if (c->sio_nsps & (1u << i)) { /* socket.io's Client.ondecoded: a second CONNECT is an invalid state */
        session_sio_fail(c, "CONNECT to a namespace already joined");
        return;
    }
    c->sio_nsps |= (uint16_t)(1u << i);
    c->sio_connect_by = 0;
    socket_id(c, (uint8_t)i, id);
    send_text(c, "40%s{\"sid\":\"%s\"}", nsp_prefix(s, (uint8_t)i, pre), id);
    if (s->cfg.sio_profile == SIO_PROFILE_CONFORMANCE) {
        /* socket.emit("auth", socket.handshake.auth): the auth object as the client sent it ({} when it sent none). */
        const char *auth = pk->data_len ? pk->data : "{}";
        size_t auth_len = pk->data_len ? pk->data_len : 2;
        struct buf b = {0};
        if (buf_append(&b, "[\"auth\",", 8) == 0 && buf_append(&b, auth, auth_len) == 0 && buf_append(&b, "]", 1) == 0)
            send_message(c,
                         &(struct sio_message){
                             .type = REFSIO_EVENT, .nsp = (uint8_t)i, .json = buf_head(&b), .json_len = buf_len(&b)});
        buf_free(&b);
    }
}

static void publish(struct server *s, const struct client *c, const struct sio_message *m);

/* Every other socket of the sender's scope: its room, or, for a socket in no room, every room of the namespace. */
static void broadcast(struct client *c, const struct sio_message *m)
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
    struct slice *frames[1 + SIO_MAX_ATTACHMENTS];
    if (!(frames[0] = packet_frame(s, m))) {
        LOG_ERR("client %" PRIu64 ": out of memory encoding a broadcast", c->id);
        return;
    }
    if (m->n_att) /* att may be NULL then: memcpy must not see it */
        memcpy(frames + 1, m->att, m->n_att * sizeof *m->att);
    uint16_t bit = (uint16_t)(1u << m->nsp);
    for (struct room *r = own->name_len ? own : room_next(&s->sio_rooms, NULL), *next; r; r = next) {
        next = own->name_len ? NULL : room_next(&s->sio_rooms, r);
        for (uint32_t i = 0; i < r->count; i++) {
            struct client *to = container_of(r->members[i], struct client, member);
            if (to != c && to->state == CLIENT_WS && (to->sio_nsps & bit) && session_offer(s, to, frames, 1 + m->n_att))
                s->stats.msgs_out++;
        }
    }
    slice_unref(frames[0]);
}

/* The conformance profile's handlers (socket.io-protocol's test-suite server). */
static void conformance_event(struct client *c, const struct sio_message *m)
{
    const char *name, *rest;
    size_t name_len, rest_len;
    if (m->nsp != 0 || !refsio_event_split(m->json, m->json_len, &name, &name_len, &rest, &rest_len))
        return; /* "/custom" has no handlers */
    struct buf b = {0};
    struct sio_message out = *m;
    out.has_ack = false;
    int rc = -1;
    if (name_len == 9 && !memcmp(name, "\"message\"", 9)) {
        rc = buf_append(&b, "[\"message-back\"", 15) | buf_append(&b, rest, rest_len) | buf_append(&b, "]", 1);
    } else if (name_len == 18 && !memcmp(name, "\"message-with-ack\"", 18) && m->has_ack) {
        while (rest_len && (*rest == ' ' || *rest == '\t' || *rest == '\n' || *rest == '\r'))
            rest++, rest_len--;
        if (rest_len && *rest == ',')
            rest++, rest_len--;
        out.type = REFSIO_ACK;
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

static void on_message(struct client *c, const struct sio_message *m)
{
    char pre[REFSIO_NSP_MAX + 2];
    if (m->type == REFSIO_ACK)
        return; /* we never ask for acks: nothing waits for one */
    if (c->srv->cfg.sio_profile == SIO_PROFILE_CONFORMANCE) {
        conformance_event(c, m);
        return;
    }
    broadcast(c, m);
    if (m->has_ack && c->state == CLIENT_WS)
        send_text(c, "43%s%" PRIu64 "[]", nsp_prefix(c->srv, m->nsp, pre), m->ack);
}

static void pending_free(struct client *c)
{
    struct sio_pending *p = c->pending;
    if (!p)
        return;
    for (uint32_t i = 0; i < p->have; i++)
        slice_unref(p->att[i]);
    free(p);
    c->pending = NULL;
}

void socketio_client_gone(struct client *c)
{
    pending_free(c);
}

void socketio_on_packet(struct client *c, const struct refsio_packet *pk)
{
    if (c->pending) { /* socket.io-parser: "got plaintext data when reconstructing a packet" */
        session_sio_fail(c, "text packet while binary attachments were due");
        return;
    }
    if (pk->type == REFSIO_CONNECT) {
        on_connect(c, pk);
        return;
    }
    int i = nsp_index(c->srv, pk->nsp, pk->nsp_len);
    if (i < 0 || !(c->sio_nsps & (1u << i))) {
        session_sio_fail(c, "packet for a namespace not joined");
        return;
    }
    struct sio_message m = {
        .nsp = (uint8_t)i, .has_ack = pk->has_ack, .ack = pk->ack, .json = pk->data, .json_len = pk->data_len};
    switch (pk->type) {
    case REFSIO_DISCONNECT: c->sio_nsps &= (uint16_t) ~(1u << i); return;
    case REFSIO_EVENT:
    case REFSIO_ACK:
        m.type = pk->type;
        on_message(c, &m);
        return;
    case REFSIO_BINARY_EVENT:
    case REFSIO_BINARY_ACK: break;
    default: session_sio_fail(c, "CONNECT_ERROR from a client"); return;
    }
    m.type = pk->type == REFSIO_BINARY_EVENT ? REFSIO_EVENT : REFSIO_ACK;
    if (pk->attachments > SIO_MAX_ATTACHMENTS) {
        session_sio_fail(c, "too many attachments");
        return;
    }
    if (pk->attachments == 0) {
        on_message(c, &m);
        return;
    }
    struct sio_pending *p = malloc(sizeof *p + pk->data_len);
    if (!p) {
        session_sio_fail(c, "out of memory");
        return;
    }
    *p = (struct sio_pending){.type = m.type,
                              .nsp = m.nsp,
                              .has_ack = m.has_ack,
                              .ack = m.ack,
                              .want = pk->attachments,
                              .json_len = pk->data_len};
    memcpy(p->json, pk->data, pk->data_len);
    c->pending = p;
}

void socketio_on_attachment(struct client *c, const uint8_t *data, size_t len)
{
    struct sio_pending *p = c->pending;
    if (!p) { /* socket.io-parser: "got binary data when not reconstructing a packet" */
        session_sio_fail(c, "binary data with no packet announcing it");
        return;
    }
    if (!(p->att[p->have] = ws_frame_slice(WS_OP_BINARY, data, len))) {
        session_sio_fail(c, "out of memory");
        return;
    }
    if (++p->have < p->want)
        return;
    c->pending = NULL;
    on_message(c, &(struct sio_message){.type = p->type,
                                        .nsp = p->nsp,
                                        .has_ack = p->has_ack,
                                        .ack = p->ack,
                                        .json = p->json,
                                        .json_len = p->json_len,
                                        .att = p->att,
                                        .n_att = p->have});
    c->pending = p;
    pending_free(c);
}

/* The Redis adapter (SOCKETIO.md 3): a node publishes each broadcast once, on KEY#NSP# or KEY#NSP#ROOM#, and
 * PSUBSCRIBEs KEY#NSP#* for each namespace, so every node sees every broadcast and drops a room's before decoding
 * when it has no member there, and its own by the uid. */

#define UID_LEN 6

struct socketio {
    char uid[REFSIO_ID_LEN + 1]; /* the first UID_LEN characters are the adapter uid */
    struct buf out, json, channel;
    bool warned; /* one warning for the first undecodable message; the metric counts the rest */
};

int socketio_init(struct server *s, char *err, size_t errlen)
{
    uint8_t rnd[REFSIO_ID_RANDOM] = {0};
    struct socketio *io = calloc(1, sizeof *io);
    if (!io) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->sio = io;
    RAND_bytes(rnd, sizeof rnd);
    refsio_make_id(rnd, io->uid);
    const char *key = s->cfg.sio_key;
    for (uint32_t i = 0; i < s->cfg.sio_nsp_count; i++) {
        const char *nsp = s->cfg.sio_nsps[i];
        io->channel.rpos = io->channel.wpos = 0;
        if (sioa_channel(&io->channel, key, strlen(key), nsp, strlen(nsp), NULL, 0) < 0 ||
            buf_append(&io->channel, "*", 1) < 0 ||
            sync_psubscribe(s->sync, buf_head(&io->channel), buf_len(&io->channel)) < 0) {
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
    free(s->sio);
    s->sio = NULL;
}

/* The payload of a frame this node encoded. */
static struct sioa_bytes frame_payload(const struct slice *f)
{
    size_t h = ws_frame_header_len((const uint8_t *)f->data);
    return (struct sioa_bytes){.data = (const char *)f->data + h, .len = f->len - h};
}

static void publish(struct server *s, const struct client *c, const struct sio_message *m)
{
    struct socketio *io = s->sio;
    struct sioa_bytes att[SIO_MAX_ATTACHMENTS], room = {0};
    const char *key = s->cfg.sio_key, *nsp = nsp_name(s, m->nsp);
    char id[REFSIO_ID_LEN + 1];
    socket_id(c, m->nsp, id); /* as socket.broadcast.emit: the sender is excepted (it may share a room elsewhere) */
    struct sioa_bytes except = {.data = id, .len = REFSIO_ID_LEN};
    for (uint32_t i = 0; i < m->n_att; i++)
        att[i] = frame_payload(m->att[i]);
    if (c->member.room->name_len)
        room = (struct sioa_bytes){.data = c->member.room->name, .len = c->member.room->name_len};
    io->out.rpos = io->out.wpos = io->channel.rpos = io->channel.wpos = 0;
    if (sioa_encode(&io->out, io->uid, UID_LEN, nsp, strlen(nsp), m->json, m->json_len, att, m->n_att, &room,
                    room.len ? 1 : 0, &except, 1) < 0 ||
        sioa_channel(&io->channel, key, strlen(key), nsp, strlen(nsp), room.data, room.len) < 0) {
        /* The packet passed refsio_parse, so only memory can fail here (or a placeholder naming no attachment). */
        LOG_WARN("client %" PRIu64 ": a broadcast could not be encoded for Redis; other nodes miss it", c->id);
        return;
    }
    sync_publish_raw(s->sync, buf_head(&io->channel), buf_len(&io->channel), buf_head(&io->out), buf_len(&io->out));
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
    uint8_t (*ids)[REFSIO_ID_RANDOM];
    uint8_t local[8][REFSIO_ID_RANDOM]; /* enough for socket.broadcast.emit's one; more are allocated */
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
        if (refsio_parse_id(name.data, name.len, x->ids[x->n])) {
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

static bool excepted_socket(const struct except_ids *x, const struct client *c)
{
    for (size_t i = 0; i < x->n; i++)
        if (!memcmp(x->ids[i], c->sio_id, REFSIO_ID_RANDOM))
            return true;
    return false;
}

static void deliver_room(struct server *s, struct room *r, struct slice *const *frames, size_t n, uint16_t bit,
                         const struct except_ids *x)
{
    for (uint32_t i = 0; i < r->count; i++) {
        struct client *to = container_of(r->members[i], struct client, member);
        if (to->state == CLIENT_WS && (to->sio_nsps & bit) && !excepted_socket(x, to) &&
            session_offer(s, to, frames, n))
            s->stats.msgs_out++;
    }
}

/* A broadcast from another node: decoded once, encoded once as a packet (and its attachments as frames), shared by
 * every local receiver in its rooms (every room when it names none), minus the rooms and sockets it excepts. */
static void deliver_remote(struct server *s, const struct sioa_broadcast *b, int nsp)
{
    struct socketio *io = s->sio;
    struct slice *frames[1 + SIOA_ATTACH_MAX] = {0};
    size_t n = 1 + b->n_attachments;
    if (b->n_attachments > SIO_MAX_ATTACHMENTS) {
        s->stats.sio_bus_dropped++;
        LOG_DEBUG("a Socket.IO broadcast with %zu attachments (clients accept %d) dropped", b->n_attachments,
                  SIO_MAX_ATTACHMENTS);
        return;
    }
    for (size_t i = 0; i < b->n_attachments; i++)
        if (!(frames[1 + i] = ws_frame_slice(WS_OP_BINARY, b->attachments[i].data, b->attachments[i].len)))
            goto out;
    struct sio_message m = {.type = REFSIO_EVENT,
                            .nsp = (uint8_t)nsp,
                            .json = buf_head(&io->json),
                            .json_len = buf_len(&io->json),
                            .att = frames + 1,
                            .n_att = (uint32_t)b->n_attachments};
    struct except_ids x;
    if (!(frames[0] = packet_frame(s, &m)) || except_ids_init(&x, &b->except, (uint8_t)nsp) < 0)
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
        if (frames[i])
            slice_unref(frames[i]);
}

void socketio_on_bus(struct server *s, const char *channel, size_t channel_len, const char *data, size_t len)
{
    struct socketio *io = s->sio;
    struct sioa_bytes ch_nsp, ch_room;
    struct sioa_broadcast b;
    const char *key = s->cfg.sio_key;
    int rc = sioa_channel_room(channel, channel_len, key, strlen(key), &ch_nsp, &ch_room);
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
    if (nsp >= 0 && b.type == REFSIO_EVENT)
        deliver_remote(s, &b, nsp);
    if (io->json.cap > 65536)
        buf_free(&io->json);
}
