/* Engine.IO v4 / Socket.IO v5 packets (../shared/SOCKETIO.md sections 1 and 2): the one codec of refserver and
 * loadgen. A text message (a websocket frame, or a polling payload's item) is one Engine.IO packet: a type digit and
 * its data. A MESSAGE (4) carries a Socket.IO packet: type digit, "<n>-" attachments (binary types only), "/nsp,"
 * (left out for "/"), ack id digits, then JSON.
 *
 * The decoder is on both hot paths (refserver's receive and broadcast, loadgen's receive): it allocates nothing and
 * splits the packet into spans of the caller's buffer in one pass. It follows socket.io-parser and engine.io-parser;
 * where two older copies of it disagreed, this is what was decided (fuzz_siodiff found them):
 *  - an ack id may follow any Socket.IO type (40123{}), as socket.io-parser reads it; receivers ignore it where the
 *    type takes none;
 *  - a namespace is any bytes up to ',' (42/x"y,[...]), at most EIO_NSP_MAX (ours: socket.io-parser has no bound);
 *  - an attachment count is 1 to 9 digits; the limit of EIO_MAX_ATTACHMENTS is the receiver's to enforce;
 *  - an ACK needs its array, a payload of whitespace alone is malformed (isPacketValid, JSON.parse);
 *  - an open packet's data is a JSON object;
 *  - JSON nesting counts every value (jscan.h);
 *  - a polling payload gives its items in order up to the first empty one, which is malformed; an empty body is one
 *    empty item (engine.io-parser's decodePayload).
 * A head of a longer message (whole = false) may end anywhere: what is there is checked and the packet marked cut. */
#ifndef COMMON_EIO_H
#define COMMON_EIO_H

#include "common/jscan.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum eio_type {
    EIO_OPEN = 0,
    EIO_CLOSE,
    EIO_PING,
    EIO_PONG,
    EIO_MESSAGE,
    EIO_UPGRADE,
    EIO_NOOP,
};

enum eio_sio_type {
    EIO_CONNECT = 0,
    EIO_DISCONNECT,
    EIO_EVENT,
    EIO_ACK,
    EIO_CONNECT_ERROR,
    EIO_BINARY_EVENT,
    EIO_BINARY_ACK,
};

#define EIO_ID_LEN          20 /* Engine.IO sid and socket id: base64url of 15 random bytes */
#define EIO_ID_RANDOM       15
#define EIO_NSP_MAX         128    /* bytes of a namespace, its '/' included */
#define EIO_ACK_DIGITS      15     /* ack ids up to 10^15 - 1: exact in a JavaScript number */
#define EIO_ATTACH_DIGITS   9      /* digits of an attachment count: it fits 32 bits */
#define EIO_MAX_ATTACHMENTS 10     /* socket.io-parser's default maxAttachments */
#define EIO_OPEN_MAX        192    /* room for the open packet eio_open_packet writes */
#define EIO_RS              '\x1e' /* between the packets of a polling payload (JSON text never holds it raw) */

struct eio_packet {
    int eio;                 /* enum eio_type */
    int type;                /* enum eio_sio_type when eio is EIO_MESSAGE, else -1 */
    uint32_t attachments;    /* binary types */
    int64_t ack;             /* the ack id, -1 when none */
    struct jscan_span nsp;   /* the namespace, "/" when left out */
    struct jscan_span data;  /* what follows the type digit (Engine.IO) or the namespace and ack id (Socket.IO) */
    struct jscan_span event; /* (BINARY_)EVENT: the name as written: a string's bytes between the quotes (escapes
                                not resolved) or a number's digits; p NULL when a head ends before it does */
    struct jscan_span arg;   /* (BINARY_)EVENT: the first argument's JSON text, len 0 when none; with cut it may run
                                to the end of the buffer */
    bool cut;                /* whole was false and the buffer ended inside the packet */
};

/* Decode buf[0..len), a whole text message (whole) or the head of a longer one. 0, or -1 when malformed. */
int eio_decode(const char *buf, size_t len, bool whole, struct eio_packet *p);

/* An event's arguments (a decoded EVENT's data): name is the first element's JSON text (a string with its quotes, or
 * a number), rest the bytes between it and the array's closing bracket. ["message",1,{}] gives "message" and ,1,{}:
 * the same arguments can go on under another name. False when data is not such an array. */
bool eio_event_split(const char *data, size_t len, const char **name, size_t *name_len, const char **rest,
                     size_t *rest_len);

/* base64url of rnd (EIO_ID_RANDOM bytes) into out: EIO_ID_LEN characters of [A-Za-z0-9_-] and a NUL. */
void eio_make_id(const uint8_t rnd[EIO_ID_RANDOM], char out[EIO_ID_LEN + 1]);
/* The inverse of eio_make_id: true with out filled when s[0..len) is such an id. */
bool eio_parse_id(const char *s, size_t len, uint8_t out[EIO_ID_RANDOM]);

/* The open packet 0{"sid":...,"upgrades":[],...} into out (EIO_OPEN_MAX bytes); returns its length. A session
 * opened over polling offers the websocket upgrade ("upgrades":["websocket"]). */
size_t eio_open_packet(char *out, const char *sid, uint32_t ping_interval_ms, uint32_t ping_timeout_ms,
                       uint64_t max_payload, bool polling);

/* What the open packet's JSON (the text after '0') tells a client. */
struct eio_open {
    struct jscan_span sid;                /* its bytes between the quotes: 1..64 of [A-Za-z0-9_-] */
    uint32_t ping_interval, ping_timeout; /* ms */
    bool upgrade_ws;                      /* "upgrades" lists "websocket" */
};

/* Parse the open packet's JSON obj[0..len). 0, or -1 with *why set (a static string) when a member is missing or
 * not what Engine.IO v4 sends. The sid is required only when need_sid. */
int eio_open_parse(const char *obj, size_t len, bool need_sid, struct eio_open *o, const char **why);

/* engine.io's HTTP error body {"code":N,"message":"..."}: N (0..99), or -1 when body[0..len) is not one. */
int eio_error_code(const char *body, size_t len);

/* One item of a polling payload. */
struct eio_item {
    struct jscan_span text; /* the packet as written (for a binary one: "b" + base64) */
    bool binary;            /* a 'b' item (its base64 not checked here) */
};

/* The next item of the payload buf[0..len) at *off (0 to start): 1 with *it set and *off past it (and past its
 * separator), 0 at the end, -1 when the item is empty (it->text then the empty span where it is). An empty body is
 * one empty item, and a trailing separator is followed by one. */
int eio_payload_next(const char *buf, size_t len, size_t *off, struct eio_item *it);

/* Is s[0..len) valid standard base64 (A-Z a-z 0-9 + /, length a multiple of 4, '=' padding at the end only, the
 * bits padding drops zero)? Its decoded length, or -1. */
long eio_base64_len(const char *s, size_t len);
/* Decode valid base64 (eio_base64_len >= 0) into out (at least eio_base64_len bytes). The decoded length, or -1. */
long eio_base64_decode(const char *s, size_t len, unsigned char *out, size_t cap);
/* Write the payload item "b" + base64(data) into out. Its length, or 0 when cap is too small (1 + 4 * ceil(len/3)
 * bytes are needed, plus one for the NUL EVP_EncodeBlock adds). */
size_t eio_encode_binary(char *out, size_t cap, const void *data, size_t len);
/* Decode the payload item "b" + base64 item[0..len) in place: its bytes end up at item[0..n). n, or -1 when the
 * item is not 'b' and valid base64 (eio_base64_len). */
long eio_decode_binary(char *item, size_t len);

/* Room for a packet head with a namespace of nsp_len bytes: "4", type, "<n>-", "/nsp,", an ack id. */
#define EIO_HEAD_MAX(nsp_len) (2 + EIO_ATTACH_DIGITS + 1 + (nsp_len) + 1 + EIO_ACK_DIGITS)
/* Write the head of a Socket.IO packet as an Engine.IO message: "4", the type digit, "<n>-" (binary types only),
 * "/nsp," (nsp[0..nsp_len), not a C string; left out for NULL or "/"), the ack id (ack < 0: none). The JSON after
 * it is the caller's. The one writer of packet heads: every encoder here starts with it. Returns the length (at most
 * EIO_HEAD_MAX(nsp_len)), or 0 when cap is too small or a field is out of range. */
size_t eio_encode_head(char *out, size_t cap, int type, uint32_t attachments, const char *nsp, size_t nsp_len,
                       int64_t ack);

/* The longest EVENT eio_encode_event or eio_encode_emit can write for these lengths (an ack id included). */
size_t eio_event_max(size_t nsp_len, size_t event_len, size_t arg_len);
/* Write the Engine.IO message 42["EVENT","ARG"] (42/nsp,[...] for a namespace other than "/") into out: the event
 * name as it is (the caller checked it needs no escaping), arg escaped as a JSON string. Returns the length, or 0
 * when cap is too small. */
size_t eio_encode_event(char *out, size_t cap, const char *nsp, const char *event, const char *arg, size_t arg_len);
/* The same with an ack id after the namespace (42/nsp,ID["EVENT","ARG"]); ack < 0: none, as eio_encode_event. */
size_t eio_encode_emit(char *out, size_t cap, const char *nsp, const char *event, int64_t ack, const char *arg,
                       size_t arg_len);
/* An EVENT whose array the caller wrote (and checked): 42["join","room1"] (42/nsp,[...]). Returns the length, or 0
 * when cap is too small (3 + the namespace + the array's length is enough). */
size_t eio_encode_event_array(char *out, size_t cap, const char *nsp, const char *array, size_t array_len);
/* The same with json, a JSON value the caller checked, as the argument as it is: 42["EVENT",{...}]. */
size_t eio_encode_emit_json(char *out, size_t cap, const char *nsp, const char *event, int64_t ack, const char *json,
                            size_t json_len);

#define EIO_BINARY_HEAD_MAX(nsp_len, event_len) ((nsp_len) + (event_len) + 64)
/* Write 451-[/nsp,][ID]["EVENT",{"_placeholder":true,"num":0}] (ack < 0: no id) into out: the head of a binary event
 * whose one attachment is its argument. Returns the length, or 0 when cap is too small. */
size_t eio_encode_binary_event(char *out, size_t cap, const char *nsp, const char *event, int64_t ack);
/* Write 40 / 40/nsp, / 41 / 41/nsp, followed by json (may be NULL) into out: CONNECT (type EIO_CONNECT) or
 * DISCONNECT. Returns the length, or 0 when cap is too small. */
size_t eio_encode_control(char *out, size_t cap, int type, const char *nsp, const char *json);

/* The placeholder's num when the JSON value v is exactly {"_placeholder":true,"num":N} (members in any order,
 * N a whole number below EIO_MAX_ATTACHMENTS), else -1. */
int eio_placeholder_num(struct jscan_span v);

#endif
