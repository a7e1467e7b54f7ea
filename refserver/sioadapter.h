/* The broadcast wire format of the official @socket.io/redis-adapter 8.x (../shared/SOCKETIO.md section 3), so that
 * refserver nodes and Node Socket.IO servers share one Redis.
 *
 * A broadcast is published on PREFIX#NSP# (every socket of the namespace) or PREFIX#NSP#ROOM# (one room) as the
 * msgpack (as npm notepack.io writes it) of
 *
 *     [uid, {"type":2, "data":[event, ...args], "nsp":"/"}, {"rooms":[...], "except":[...], "flags":{}}]
 *
 * Our clients speak Socket.IO text packets: JSON, with each binary argument replaced by {"_placeholder":true,"num":K}
 * and sent separately. So this module is a transcoder between JSON text and msgpack, in one pass each way, and our
 * own code: msgpack-c would give only the msgpack half, and a DOM between the two (a jansson tree on one side, a
 * msgpack_object on the other) for every message that crosses nodes. Nothing is allocated except in the caller's
 * struct buf; decoded strings are spans into the message.
 *
 * Where JSON and msgpack disagree:
 * - JSON numbers without fraction or exponent that fit int64 (uint64 when positive) become the smallest msgpack int,
 *   as notepack picks them; every other number is a float64. notepack writes an integral double such as 1.0 as an
 *   int; we keep the float64 for "1.0" (both decode to the same JavaScript number).
 * - Numbers are parsed with strtod (the C locale's '.', which refserver never changes) and at most SIOA_NUMBER_MAX
 *   characters long; a longer one is refused.
 * - Strings are always valid UTF-8 on both sides: a lone \uD800-\uDFFF escape, and any invalid UTF-8 byte sequence,
 *   become U+FFFD, as Node's Buffer.from and buffer.toString do.
 * - A decoded float prints as JSON.stringify prints it: the fewest digits that read back as the same double, laid out
 *   as JavaScript's Number::toString; NaN and infinities as null. An integer map key prints as its decimal string.
 * - notepack wraps integral doubles of 2^64 and up into a wrong uint64 (1e300 becomes 0); we write those as float64.
 * - socket.io-parser only swaps placeholders for attachments when a packet has attachments, and then any object whose
 *   "_placeholder" is true counts (whatever other keys it has). The encoder does the same; the decoder refuses a
 *   message that has both binaries and such an object, which a client would misread as a placeholder.
 * - Namespaces must not contain '#': a channel name could not tell "/a#b" from room "b" of "/a" (Node cannot either).
 */
#ifndef REFSERVER_SIOADAPTER_H
#define REFSERVER_SIOADAPTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

#define SIOA_PREFIX       "socket.io" /* the adapter's default key */
#define SIOA_DEPTH        32          /* JSON / msgpack nesting of the data, counted as jscan_valid does */
#define SIOA_ATTACH_MAX   64          /* binaries in one decoded broadcast */
#define SIOA_NUMBER_MAX   1024        /* characters in one JSON number */
#define SIOA_EVENT        2           /* Socket.IO EVENT; BINARY_EVENT (5) is reported as EVENT */
#define SIOA_BINARY_EVENT 5

/* A byte span: a string (not NUL-terminated) or a binary. */
struct sioa_bytes {
    const char *data;
    size_t len;
};

/* The strings of a msgpack array (rooms, except), already checked by sioa_decode. */
struct sioa_iter {
    const uint8_t *pos, *end;
    uint32_t left; /* strings not yet returned */
};

struct sioa_broadcast {
    struct sioa_bytes uid; /* the publishing node's adapter uid */
    struct sioa_bytes nsp; /* "/" when the packet has no nsp */
    uint8_t type;          /* enum eio_sio_type, 0..6; BINARY_EVENT / BINARY_ACK come back as EVENT / ACK */
    size_t n_attachments;  /* binaries found in data, placeholders 0 .. n-1 in the JSON */
    struct sioa_bytes attachments[SIOA_ATTACH_MAX];
    struct sioa_iter rooms, except; /* empty when opts leaves them out */
};

/* Append the msgpack broadcast [uid, {"type":2,"data":JSON,"nsp":nsp}, {"rooms":rooms,"except":except,"flags":{}}]
 * to out. json is one JSON value (the event array); when n_attachments > 0 every object whose "_placeholder" is
 * true becomes the bin of attachments[num]. 0, or -1 (malformed JSON, nesting over SIOA_DEPTH, a placeholder whose
 * num is not an index of attachments, out's cap) with out as it was. */
int sioa_encode(struct buf *out, const char *uid, size_t uid_len, const char *nsp, size_t nsp_len, const char *json,
                size_t json_len, const struct sioa_bytes *attachments, size_t n_attachments,
                const struct sioa_bytes *rooms, size_t n_rooms, const struct sioa_bytes *except, size_t n_except);

/* Decode one published broadcast msg[0..len): fill *b (spans into msg) and append the packet's data as JSON text
 * (valid UTF-8, binaries as placeholders) to json_out. 0, or -1 (truncated, wrong types, unknown packet type,
 * nesting over SIOA_DEPTH, ext in data, over SIOA_ATTACH_MAX binaries, trailing bytes, json_out's cap) with json_out
 * as it was. Unknown keys of the packet and of opts are skipped. */
int sioa_decode(const uint8_t *msg, size_t len, struct sioa_broadcast *b, struct buf *json_out);

/* The next string of it into *s (a span into the message); false once they are used up. */
bool sioa_next_str(struct sioa_iter *it, struct sioa_bytes *s);

/* ---- Requests: what another node asks every node on PREFIX-request#NSP# (SOCKETIO.md 3), and the answers ----
 *
 * Node's adapter publishes requests as JSON (BROADCAST as msgpack, its packet may hold binaries) and reads answers in
 * either form; ours are msgpack, written with the writer below, so no JSON escaping of room names is needed. */

enum sioa_request_type {
    SIOA_REQ_SOCKETS = 0,           /* {requestId, rooms}: -> {requestId, sockets: [id...]} */
    SIOA_REQ_ALL_ROOMS = 1,         /* {requestId}: -> {requestId, rooms: [...]} */
    SIOA_REQ_REMOTE_JOIN = 2,       /* socketsJoin: no answer */
    SIOA_REQ_REMOTE_LEAVE = 3,      /* socketsLeave: no answer */
    SIOA_REQ_REMOTE_DISCONNECT = 4, /* {opts, close}: no answer; {requestId, sid, close}: {requestId} from sid's node */
    SIOA_REQ_REMOTE_FETCH = 5,      /* {requestId, opts}: -> {requestId, sockets: [{id, handshake, rooms, data}...]} */
    SIOA_REQ_SERVER_SIDE_EMIT = 6,  /* answered only by a server-side listener */
    SIOA_REQ_BROADCAST = 7, /* {requestId, packet, opts}: -> BROADCAST_CLIENT_COUNT, then a BROADCAST_ACK each */
    SIOA_REQ_BROADCAST_CLIENT_COUNT = 8,
    SIOA_REQ_BROADCAST_ACK = 9,
};

struct sioa_request {
    uint64_t type;                          /* enum sioa_request_type, or anything else (ignored) */
    struct sioa_bytes uid, request_id, sid; /* empty when left out */
    bool close;                             /* REMOTE_DISCONNECT: the whole connection, not the namespace only */
    struct sioa_iter rooms;                 /* the top-level "rooms": SOCKETS' selection */
    struct sioa_broadcast packet;           /* opts.rooms / opts.except as packet.rooms / packet.except; BROADCAST:
                                               the packet (its data as JSON text in json_out, binaries spans) */
};

/* Decode one request msg[0..len): JSON when it starts with '{' (transcoded into scratch, which is overwritten, then
 * read as msgpack; *r's spans then point into scratch), else msgpack. 0, or -1 when malformed (a wrong type for a known
 * key, a BROADCAST without its packet, over the limits of sioa_decode). Unknown keys are skipped. */
int sioa_decode_request(const uint8_t *msg, size_t len, struct sioa_request *r, struct buf *scratch,
                        struct buf *json_out);

/* A msgpack writer with a sticky error: append without checking each call, look at failed once at the end. */
struct sioa_writer {
    struct buf *b;
    bool failed;
};

void sioa_put_map(struct sioa_writer *w, size_t n);
void sioa_put_array(struct sioa_writer *w, size_t n);
void sioa_put_str(struct sioa_writer *w, const char *s, size_t len);
void sioa_put_uint(struct sioa_writer *w, uint64_t v);
void sioa_put_bool(struct sioa_writer *w, bool v);
/* An array whose count is known only at its end: begin returns where it starts, end writes the count there. */
size_t sioa_begin_array(struct sioa_writer *w);
void sioa_end_array(struct sioa_writer *w, size_t at, size_t count);
/* One JSON value as msgpack, each placeholder object of an attachment as its bin (as sioa_encode does). */
void sioa_put_json(struct sioa_writer *w, const char *json, size_t len, const struct sioa_bytes *attachments,
                   size_t n_attachments);
/* The first element of the JSON array json (an ack's arguments, of which Node forwards the first); false, writing
 * nothing, when the array is empty. */
bool sioa_put_json_first(struct sioa_writer *w, const char *json, size_t len, const struct sioa_bytes *attachments,
                         size_t n_attachments);

/* Split a channel name PREFIX#NSP# or PREFIX#NSP#ROOM# (cheap: for dropping a room broadcast with no local member
 * before decoding it). 1 with *nsp and *room set, 0 for a namespace-wide channel (*room empty), -1 when the channel
 * is not a broadcast channel of prefix. */
int sioa_channel_room(const char *channel, size_t len, const char *prefix, size_t prefix_len, struct sioa_bytes *nsp,
                      struct sioa_bytes *room);

/* Append the channel name PREFIX#NSP# (room == NULL) or PREFIX#NSP#ROOM# to out, without a NUL. 0, or -1 (cap). */
int sioa_channel(struct buf *out, const char *prefix, size_t prefix_len, const char *nsp, size_t nsp_len,
                 const char *room, size_t room_len);

#endif
