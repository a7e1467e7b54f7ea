/* The message loadgen emits, and its parser on the receiving side.
 *
 * A JSON object, so a server that parses what it relays (a Socket.IO server, a chat demo) accepts it:
 *
 *   {"wsh":1,"e":EMITTER,"r":ROUND,"s":SEQ,"t":SEND_NS,"pad":"xxxx..."}
 *
 * EMITTER is the global client id of the sender, ROUND the 1-based round, SEQ the 1-based number of the message
 * among that emitter's messages, SEND_NS its CLOCK_MONOTONIC send time in nanoseconds (one host: exact latency).
 * Numbers are plain decimal without sign or leading zeros; the padding is 'x' and brings the message to exactly
 * the requested size. The fields come first so a receiver can parse them from the first LG_PAYLOAD_PREFIX bytes of
 * a message whose tail is still on the way.
 *
 * The parser looks for the marker {"wsh":1, anywhere in the first LG_PAYLOAD_PREFIX bytes, so a server that wraps
 * the message (an envelope such as {"from":..,"msg":{...}}) still works as long as it does not escape it and the
 * fields, up to the byte after t's digits, still end within those bytes. */
#ifndef LOADGEN_PAYLOAD_H
#define LOADGEN_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

/* Longest encoding of the fields with an empty padding: {"wsh":1,"e":4294967295,"r":4294967295,
 * "s":4294967295,"t":9223372036854775807,"pad":""} is 87 bytes. */
#define LG_PAYLOAD_MAX_FIELDS 87
/* The smallest --payload: every field at its longest fits. */
#define LG_PAYLOAD_MIN LG_PAYLOAD_MAX_FIELDS
/* How many leading bytes of a message the parser needs at most: room for an envelope before the marker. */
#define LG_PAYLOAD_PREFIX 256

struct lg_msg {
    uint32_t emitter, round, seq;
    int64_t send_ns;
};

/* Write the message for m into out, exactly size bytes (size >= LG_PAYLOAD_MIN, out has size bytes of room;
 * no NUL is added). Returns size, or -1 (out untouched) when size < LG_PAYLOAD_MIN or m->send_ns < 0. */
int lg_payload_encode(const struct lg_msg *m, char *out, size_t size);

/* Parse the fields from the first len bytes of a message (len may be the whole message or just its head, at least
 * min(message length, LG_PAYLOAD_PREFIX) bytes; only the first LG_PAYLOAD_PREFIX are looked at). Never reads
 * past len; the padding and the closing brace need not be there.
 *  1: found and valid through the byte after t's digits (',' or '}'), *m filled;
 *  0: no marker in these bytes, or the bytes end before that byte with nothing wrong so far (the message is too
 *     short to hold our fields: not one of ours, count it as foreign and ignore it);
 * -1: the marker is there but what follows is malformed (a corrupted message: an error).
 * *m is written only on 1. */
int lg_payload_parse(const char *buf, size_t len, struct lg_msg *m);

#endif
