/* Engine.IO v4 / Socket.IO v5 packets over the websocket transport (../shared/SOCKETIO.md sections 1 and 2).
 *
 * One WebSocket text frame holds one Engine.IO packet: a type digit and its data. A MESSAGE (4) holds one Socket.IO
 * packet: type digit, "<n>-" attachments (types 5 and 6 only), "/nsp," (left out for "/"), ack id digits, JSON.
 * The parser is strict (the JSON is validated, the payload must suit the type, as socket.io-parser's
 * isPayloadValid) and allocates nothing: results are spans into the caller's bytes. */
#ifndef REFSERVER_REFSIO_H
#define REFSERVER_REFSIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum refsio_eio_type {
    REFSIO_EIO_OPEN = 0,
    REFSIO_EIO_CLOSE,
    REFSIO_EIO_PING,
    REFSIO_EIO_PONG,
    REFSIO_EIO_MESSAGE,
    REFSIO_EIO_UPGRADE,
    REFSIO_EIO_NOOP,
};

enum refsio_type {
    REFSIO_CONNECT = 0,
    REFSIO_DISCONNECT,
    REFSIO_EVENT,
    REFSIO_ACK,
    REFSIO_CONNECT_ERROR,
    REFSIO_BINARY_EVENT,
    REFSIO_BINARY_ACK,
};

#define REFSIO_ID_LEN     20 /* Engine.IO sid and socket id: base64url of 15 random bytes */
#define REFSIO_ID_RANDOM  15
#define REFSIO_NSP_MAX    128
#define REFSIO_ACK_DIGITS 15 /* ack ids up to 10^15 - 1: exact in a JavaScript number */
#define REFSIO_JSON_DEPTH 32
#define REFSIO_OPEN_MAX   192 /* room for the open packet */

struct refsio_packet {
    uint8_t eio;     /* enum refsio_eio_type */
    uint8_t type;    /* eio == MESSAGE: enum refsio_type */
    const char *nsp; /* MESSAGE: the namespace, "/" when the packet leaves it out */
    size_t nsp_len;
    bool has_ack;         /* MESSAGE: an ack id was given */
    uint64_t ack;         /* MESSAGE: the ack id */
    uint32_t attachments; /* BINARY_EVENT / BINARY_ACK: the announced attachment count */
    const char *data;     /* MESSAGE: the JSON payload (may be empty); other types: the bytes after the digit */
    size_t data_len;
};

/* Parse one Engine.IO packet (a whole text frame) from p[0..len). 0 with *pk filled, or -1 when it is malformed:
 * an unknown type, a bad namespace or ack id, invalid JSON, or a payload that does not suit the Socket.IO type. */
int refsio_parse(const char *p, size_t len, struct refsio_packet *pk);
/* Is p[0..len) exactly one JSON value (surrounded by optional whitespace), nested at most REFSIO_JSON_DEPTH deep? */
bool refsio_json_valid(const char *p, size_t len);
/* An event's arguments (valid JSON, as refsio_parse checked): name is the first element's JSON text (a string with
 * its quotes, or a number), rest the bytes between it and the array's closing bracket (spaces, or a comma after
 * optional spaces). ["message",1,{}] gives "message" and ,1,{}: the same arguments can go on under another name. */
bool refsio_event_split(const char *data, size_t len, const char **name, size_t *name_len, const char **rest,
                        size_t *rest_len);
/* base64url of rnd (REFSIO_ID_RANDOM bytes) into out: REFSIO_ID_LEN characters of [A-Za-z0-9_-] and a NUL. */
void refsio_make_id(const uint8_t rnd[REFSIO_ID_RANDOM], char out[REFSIO_ID_LEN + 1]);
/* The inverse of refsio_make_id: true with out filled when s[0..len) is such an id. */
bool refsio_parse_id(const char *s, size_t len, uint8_t out[REFSIO_ID_RANDOM]);
/* The open packet 0{"sid":...,"upgrades":[],...} into out (REFSIO_OPEN_MAX bytes); returns its length. A session
 * opened over polling offers the websocket upgrade ("upgrades":["websocket"]). */
size_t refsio_open_packet(char *out, const char *sid, uint32_t ping_interval_ms, uint32_t ping_timeout_ms,
                          uint64_t max_payload, bool polling);

#define REFSIO_SEPARATOR '\x1e' /* between the packets of a polling payload */

/* The next packet of a polling payload (packets joined by REFSIO_SEPARATOR, as engine.io-parser's decodePayload):
 * *pos walks [*pos, end). Returns false once the payload is used up; otherwise the packet's span (possibly empty, which
 * refsio_parse refuses) and *pos moved past it and its separator. An empty payload is one empty packet. */
bool refsio_payload_next(const char **pos, const char *end, bool *started, const char **pkt, size_t *pkt_len);

#endif
