/* RFC 6455 WebSocket: handshake key, frame reader (both roles), frame writer, masking, close codes, UTF-8.
 *
 * The reader follows hiredis' feed/get split without owning a buffer: the caller hands it the unread bytes and
 * gets back one event and the number of bytes consumed. Data frames are delivered in chunks as bytes arrive, so a
 * large frame never has to sit whole in memory, and text is UTF-8-checked incrementally (a code point may be split
 * across fragments or reads). Payloads are unmasked in place. Control frames are delivered only whole.
 * Errors are sticky: after -1 the reader keeps returning -1 with the same close code. */
#ifndef COMMON_WS_H
#define COMMON_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct slice;

enum ws_opcode { WS_OP_CONT = 0, WS_OP_TEXT = 1, WS_OP_BINARY = 2, WS_OP_CLOSE = 8, WS_OP_PING = 9, WS_OP_PONG = 10 };

enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_NO_STATUS = 1005, /* received without a code; never sent */
    WS_CLOSE_BAD_DATA = 1007,  /* invalid UTF-8 in text */
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
    WS_CLOSE_TRY_LATER = 1013,
};

#define WS_MAX_HEADER  14 /* 2 + 8 (length) + 4 (mask) */
#define WS_MAX_CONTROL 125
#define WS_ACCEPT_LEN  28 /* base64 of a SHA-1 */
#define WS_GUID        "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum ws_role { WS_ROLE_SERVER = 0, WS_ROLE_CLIENT };

enum ws_event_type { WS_EV_DATA = 0, WS_EV_PING, WS_EV_PONG, WS_EV_CLOSE };

struct ws_event {
    enum ws_event_type type;
    uint8_t opcode;   /* DATA: the message's opcode (text or binary), also for continuation chunks */
    bool first, last; /* DATA: first chunk of the message / the message is complete after this chunk */
    uint8_t *data;    /* payload chunk, unmasked, pointing into the caller's buffer */
    size_t len;
    uint16_t close_code; /* CLOSE: the peer's code, WS_CLOSE_NO_STATUS when the frame had none */
    const char *reason;  /* CLOSE: the peer's reason (data + 2), reason_len bytes, valid UTF-8 */
    size_t reason_len;
};

struct ws_reader {
    /* configuration (set before use; an all-zero struct is a server reader with no message limit) */
    enum ws_role role;
    uint64_t max_message; /* 0: unlimited; else a message (all its fragments) over this is 1009 */
    /* state */
    bool in_frame, in_message;
    uint8_t frame_opcode, msg_opcode, mask[4];
    bool frame_fin, frame_masked;
    uint64_t frame_left, frame_pos, msg_len;
    uint32_t utf8_state;
    uint16_t close_code; /* after -1: the code to close with (1002, 1007, 1009) */
    const char *error;   /* after -1: a short reason, suitable as the close reason */
};

/* Take one event from buf[0..len): returns the bytes consumed (> 0) with *ev filled, -2 when more bytes are
 * needed (nothing consumed), -1 on a protocol error (r->close_code, r->error). A frame header is consumed only
 * together with at least one payload byte, or with its whole payload when that is empty; control frames only whole.
 * Server role: unmasked frames are 1002. Client role: masked frames are 1002. Always 1002: reserved bits, unknown
 * opcodes, fragmented or > 125-byte control frames, continuation without a message, a new message inside one,
 * a close payload of 1 byte or with an invalid code, a non-minimal length encoding, a 64-bit length with the top bit.
 * 1007: invalid UTF-8 in a text message or a close reason. 1009: a message over max_message. */
int ws_reader_next(struct ws_reader *r, uint8_t *buf, size_t len, struct ws_event *ev);

/* Write the header of a frame with a payload of len bytes into out (WS_MAX_HEADER bytes of room). mask: NULL for
 * a server frame, 4 bytes for a client frame (then mask the payload with ws_mask). Returns the header's length. */
size_t ws_frame_header(uint8_t *out, uint8_t opcode, bool fin, uint64_t len, const uint8_t *mask);
/* XOR data with mask, as if data started at byte offset of the payload. */
void ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);
/* A whole unmasked frame (header + payload) in a new slice with one reference; NULL on out of memory. */
struct slice *ws_frame_slice(uint8_t opcode, const void *payload, size_t len);
/* The header length (2, 4 or 10) of an unmasked frame that ws_frame_header wrote: where its payload starts, for a
 * queued frame that must go out without its header (Engine.IO polling, a Redis publish). */
size_t ws_frame_header_len(const uint8_t *frame);
/* A close payload (code + reason truncated to fit 125 bytes) into out; returns its length. */
size_t ws_close_payload(uint8_t out[WS_MAX_CONTROL], uint16_t code, const char *reason);
/* May this code appear in a close frame on the wire (RFC 6455 7.4, IANA registry)? */
bool ws_close_code_valid(uint16_t code);

/* Sec-WebSocket-Accept for a client's Sec-WebSocket-Key into out (WS_ACCEPT_LEN chars + NUL). -1 when the key is
 * not the base64 encoding of 16 bytes (the handshake must then be refused with 400). */
int ws_accept_key(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1]);
/* A fresh random Sec-WebSocket-Key (24 chars + NUL) for a client handshake. */
void ws_client_key(char out[25]);

/* Incremental UTF-8 validation: feed chunks in order starting from WS_UTF8_ACCEPT; the state after the last chunk
 * must be WS_UTF8_ACCEPT. WS_UTF8_REJECT is sticky. */
#define WS_UTF8_ACCEPT 0u
#define WS_UTF8_REJECT 1u
uint32_t ws_utf8_feed(uint32_t state, const uint8_t *p, size_t len);

#endif
