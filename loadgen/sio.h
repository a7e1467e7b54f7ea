/* Socket.IO v5 over Engine.IO v4 (../shared/SOCKETIO.md sections 1 and 2), the part loadgen speaks over the
 * websocket transport: one Engine.IO packet per text frame, a type digit and its payload; a message packet ('4')
 * carries a Socket.IO packet: type digit, "<n>-" attachments (binary types only), "/nsp," (left out for "/"), ack
 * id digits, then JSON.
 *
 * The decoder is on the receive hot path: it allocates nothing and only splits the packet into spans of the
 * caller's buffer. It is strict, as socket.io-parser is: the payload must be valid JSON of the shape the type
 * requires (an array whose first element is a string or number for an EVENT, an object for CONNECT, ...), else -1.
 * A head of a longer message (whole = false) may end anywhere: what is there is checked and the packet is marked
 * cut. */
#ifndef LOADGEN_SIO_H
#define LOADGEN_SIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sio_eio {
    SIO_EIO_OPEN = 0,
    SIO_EIO_CLOSE,
    SIO_EIO_PING,
    SIO_EIO_PONG,
    SIO_EIO_MESSAGE,
    SIO_EIO_UPGRADE,
    SIO_EIO_NOOP
};
enum sio_type {
    SIO_CONNECT = 0,
    SIO_DISCONNECT,
    SIO_EVENT,
    SIO_ACK,
    SIO_CONNECT_ERROR,
    SIO_BINARY_EVENT,
    SIO_BINARY_ACK
};

struct sio_span {
    const char *p;
    size_t len;
};

struct sio_packet {
    int eio;               /* enum sio_eio */
    int type;              /* enum sio_type when eio is SIO_EIO_MESSAGE, else -1 */
    uint32_t attachments;  /* binary types */
    int64_t ack;           /* the ack id, -1 when none */
    struct sio_span nsp;   /* the namespace, "/" when left out */
    struct sio_span data;  /* what follows the type digit (Engine.IO) or the namespace and ack id (Socket.IO) */
    struct sio_span event; /* (BINARY_)EVENT: the name as written: a string's bytes between the quotes (escapes
                              not resolved) or a number's digits; p NULL when the head ends before it does */
    struct sio_span arg;   /* (BINARY_)EVENT: the first argument's JSON text, len 0 when none; with cut it may run to
                              the end of the buffer */
    bool cut;              /* whole was false and the buffer ended inside the packet */
};

/* Decode buf[0..len), a whole text message (whole) or the head of a longer one. 0, or -1 when malformed. */
int sio_decode(const char *buf, size_t len, bool whole, struct sio_packet *p);

/* Is s[0..len) exactly one JSON object (whitespace around allowed)? */
bool sio_json_is_object(const char *s, size_t len);

/* The value of the member named key (compared as written) at the top level of the JSON object obj[0..len).
 * 1 found (*val set), 0 not there, -1 not a valid object. */
int sio_json_member(const char *obj, size_t len, const char *key, struct sio_span *val);

/* Decode the JSON string at s[0..len) (s[0] is its opening quote) into out, at most cap bytes (no NUL added):
 * 1 when the closing quote was reached, 0 when len or cap ran out first, -1 on a malformed string. *n gets the
 * bytes written either way. \uXXXX becomes UTF-8 (a surrogate as its own 3 bytes). */
int sio_json_string(const char *s, size_t len, char *out, size_t cap, size_t *n);

/* The longest EVENT sio_encode_event or sio_encode_emit can write for these lengths (an ack id included). */
size_t sio_event_max(size_t nsp_len, size_t event_len, size_t arg_len);

/* The heartbeat watchdog (../shared/SOCKETIO.md section 1): a client that heard the open packet or a ping at
 * now_ms must hear the next ping by the deadline returned, now_ms + interval_ms + timeout_ms on a millisecond
 * clock that wraps (the sum capped at SIO_PING_WAIT_MAX). Never 0, which stands for "not armed". */
#define SIO_PING_WAIT_MAX (UINT32_C(1) << 30)
uint32_t sio_ping_deadline(uint32_t now_ms, uint32_t interval_ms, uint32_t timeout_ms);

/* Is deadline (armed: not 0) past at now_ms? Wrap-safe for deadlines set less than 2^31 ms before now_ms. */
bool sio_ping_overdue(uint32_t deadline, uint32_t now_ms);

/* Write the Engine.IO message 42["EVENT","ARG"] (42/nsp,[...] for a namespace other than "/") into out: the
 * event name as it is (the caller checked it needs no escaping), arg escaped as a JSON string. Returns the
 * length, or 0 when cap is too small. */
size_t sio_encode_event(char *out, size_t cap, const char *nsp, const char *event, const char *arg, size_t arg_len);
/* The same with an ack id after the namespace (42/nsp,ID["EVENT","ARG"]); ack < 0: none, as sio_encode_event. */
size_t sio_encode_emit(char *out, size_t cap, const char *nsp, const char *event, int64_t ack, const char *arg,
                       size_t arg_len);

/* ---- binary packets (BINARY_EVENT 5, BINARY_ACK 6) ----
 * 45<n>-[/nsp,][id][...] is followed by n attachments, each its own binary message (a binary frame, or a b<base64>
 * polling item); an argument {"_placeholder":true,"num":i} stands for attachment i. socket.io-parser refuses more
 * than 10 attachments, and a text packet, or a binary message, that comes when it does not expect one. */

#define SIO_MAX_ATTACHMENTS                     10
#define SIO_BINARY_HEAD_MAX(nsp_len, event_len) ((nsp_len) + (event_len) + 64)

/* Write 451-[/nsp,][ID]["EVENT",{"_placeholder":true,"num":0}] (ack < 0: no id) into out: the head of a binary
 * event whose one attachment is its argument. Returns the length, or 0 when cap is too small. */
size_t sio_encode_binary_event(char *out, size_t cap, const char *nsp, const char *event, int64_t ack);

/* The placeholder's num when the JSON value v is exactly {"_placeholder":true,"num":N} (members in any order,
 * N a whole number below SIO_MAX_ATTACHMENTS), else -1. */
int sio_placeholder_num(struct sio_span v);

/* A binary packet being put together: only while its attachments are due. */
struct sio_asm {
    uint32_t want;     /* attachments announced */
    uint32_t got;      /* attachments received so far */
    int32_t carrier;   /* the attachment that carries the message (the placeholder num of our event), or -1 */
    uint32_t since_ms; /* when the packet came (the caller's millisecond clock) */
};

/* A packet k (decoded, eio SIO_EIO_MESSAGE) came while no binary packet was being assembled. ours: k is the event
 * the caller verifies (its first argument may then name the carrier). Returns 1 when k is a binary packet whose
 * attachments follow (*a set), 0 when nothing follows (any other packet, or a binary one with no attachment), -1
 * (*why a static string) for more than SIO_MAX_ATTACHMENTS. */
int sio_asm_begin(struct sio_asm *a, const struct sio_packet *k, bool ours, uint32_t now_ms, const char **why);

/* One attachment of a (begun) assembly: 1 when it is the carrier, else 0; *done when it was the last one. */
int sio_asm_attachment(struct sio_asm *a, bool *done);

/* ---- the polling transport (../shared/SOCKETIO.md section 1) ----
 * A polling body is a payload: Engine.IO packets joined by \x1e (the record separator, which JSON text never holds
 * raw); a binary packet is 'b' then standard base64 (always base64 in v4). Empty items are malformed, as
 * engine.io-parser decodes them as its error packet; the items before one are still handed out, in order. */

#define SIO_RS '\x1e'

/* One item of a polling payload. */
struct sio_item {
    struct sio_span text; /* the packet as written (for a binary one: "b" + base64) */
    bool binary;          /* a 'b' item: the base64 was checked; sio_base64_len gives the decoded size */
};

/* The next item of the payload buf[0..len) at *off (0 to start): 1 with *it set and *off past it (and past its
 * separator), 0 at the end, -1 when the item is empty or a 'b' item is not valid base64. An empty body is one
 * empty item, and a trailing separator is followed by one. */
int sio_payload_next(const char *buf, size_t len, size_t *off, struct sio_item *it);

/* Is s[0..len) valid standard base64 (A-Z a-z 0-9 + /, length a multiple of 4, '=' padding at the end only)?
 * Its decoded length, or -1. */
long sio_base64_len(const char *s, size_t len);

/* Decode valid base64 (sio_base64_len >= 0) into out (at least sio_base64_len bytes). The decoded length, or -1. */
long sio_base64_decode(const char *s, size_t len, unsigned char *out, size_t cap);

/* Write the payload item "b" + base64(data) into out. Its length, or 0 when cap is too small (1 + 4 * ceil(len/3)
 * bytes are needed, plus one for the NUL EVP_EncodeBlock adds). */
size_t sio_encode_binary(char *out, size_t cap, const void *data, size_t len);

/* What the open packet's JSON (the text after '0') tells a client. */
struct sio_open {
    struct sio_span sid;                  /* its bytes between the quotes: 1..64 of [A-Za-z0-9_-] */
    uint32_t ping_interval, ping_timeout; /* ms */
    bool upgrade_ws;                      /* "upgrades" lists "websocket" */
};

/* Parse the open packet's JSON obj[0..len). 0, or -1 with *why set (a static string) when a member is missing or
 * not what Engine.IO v4 sends. The sid is required only when need_sid. */
int sio_open_parse(const char *obj, size_t len, bool need_sid, struct sio_open *o, const char **why);

/* engine.io's HTTP error body {"code":N,"message":"..."}: N (0..99), or -1 when body[0..len) is not one. */
int sio_error_code(const char *body, size_t len);

/* Write 40 / 40/nsp, / 41 / 41/nsp, followed by json (may be NULL) into out: CONNECT (type SIO_CONNECT) or
 * DISCONNECT. Returns the length, or 0 when cap is too small. */
size_t sio_encode_control(char *out, size_t cap, int type, const char *nsp, const char *json);

#endif
