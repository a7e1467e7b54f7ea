/* libFuzzer target for common/body.c: body_feed decides where every message the balancer relays ends, on bytes from
 * clients and servers alike, so a wrong answer is request smuggling and a read past len is a crash.
 *
 * Input: byte 0 selects the kind (low 2 bits) and the largest piece size (the other 6); bytes 1-2 are the length
 * for BODY_LENGTH (little-endian); the rest is the stream. The stream is fed at once, byte by byte (with empty
 * feeds between), and in pieces whose sizes (0 included) are drawn from the stream's own bytes; each piece sits at the
 * very end of an exact-size allocation, so ASan flags a read past it. Invariants abort():
 *  - each answer is -1 or within [0, piece]; less than the piece only when the message just ended (or -1); 0 once
 *    done; -1 again on every feed after a -1;
 *  - the total taken and the done/error outcome are the same whichever way the stream is split;
 *  - BODY_LENGTH takes min(stream, length), BODY_NONE nothing, BODY_UNTIL_CLOSE everything and is never done;
 *  - BODY_CHUNKED agrees with a second, whole-buffer parser of the same grammar written here (line by line, not
 *    byte by byte): the same end of message, or both reject, or both want more;
 *  - body_decode answers as body_feed does, leaves the bytes after the message alone, and a complete chunked body
 *    decodes to the reference parser's chunk data. */
#include "common/body.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HEADER 3

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

struct outcome {
    size_t taken;
    bool done, error;
    size_t decoded; /* decode_once: the data bytes body_decode put at the front of data */
    char *data;
};

/* ---- feeding ---- */

/* Feed s[0..n) placed at the end of buf (of room bytes) into b, and fold the answer into *o. */
static void feed(struct body *b, char *buf, size_t room, const uint8_t *s, size_t n, struct outcome *o)
{
    char *p = buf + room - n;
    if (n)
        memcpy(p, s, n);
    bool was_done = body_done(b);
    ssize_t r = body_feed(b, p, n);
    check(r >= -1 && r <= (ssize_t)n);
    check(!was_done || r == 0);
    check(!o->error || r == -1);
    if (r < 0) {
        check(b->kind == BODY_CHUNKED && !body_done(b));
        o->error = true;
        return;
    }
    check((size_t)r == n || body_done(b));
    o->taken += (size_t)r;
    o->done = body_done(b);
}

/* Feed s[0..n): at once when max is 0, else in pieces of sizes in [0, max) drawn from the bytes of s (a zero-size
 * piece is followed by a one-byte one, so the feeding always ends). Then one zero-size feed. */
static struct outcome feed_split(enum body_kind kind, uint64_t length, const uint8_t *s, size_t n, size_t max)
{
    struct outcome o = {0};
    struct body b;
    body_init(&b, kind, length);
    char *buf = malloc(n ? n : 1);
    if (!buf)
        abort();
    size_t at = 0;
    for (size_t k = 0; at < n; k++) {
        size_t piece = max == 0 ? n : s[k % n] % max;
        if (piece == 0) {
            feed(&b, buf, n, s + at, 0, &o);
            piece = 1;
        }
        piece = piece < n - at ? piece : n - at;
        feed(&b, buf, n, s + at, piece, &o);
        at += piece;
    }
    feed(&b, buf, n, s, 0, &o);
    free(buf);
    return o;
}

/* s[0..n) decoded at once, in place in an exact-size copy: the same answer as feeding it, the data at its front. */
static struct outcome decode_once(enum body_kind kind, uint64_t length, const uint8_t *s, size_t n)
{
    struct outcome o = {.data = malloc(n ? n : 1)};
    struct body b;
    check(o.data != NULL);
    if (n)
        memcpy(o.data, s, n);
    body_init(&b, kind, length);
    ssize_t r = body_decode(&b, o.data, n, &o.decoded);
    o.error = r < 0;
    o.taken = r < 0 ? 0 : (size_t)r;
    o.done = body_done(&b);
    check(o.error || o.decoded <= o.taken);
    check(o.error || kind == BODY_CHUNKED || (o.decoded == o.taken && memcmp(o.data, s, o.taken) == 0));
    check(o.error || o.taken == n || memcmp(o.data + o.taken, s + o.taken, n - o.taken) == 0);
    return o;
}

/* ---- a second parser for BODY_CHUNKED, over the whole buffer ---- */

enum ref { REF_MORE = -2, REF_BAD = -1 }; /* else the message's length */

static bool hex(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool text(uint8_t c)
{
    return c == '\t' || (c >= ' ' && c != 0x7f);
}

static bool tchar(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool all_text(const uint8_t *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!text(c[i]))
            return false;
    return true;
}

/* A size line's content c[0..n), the whole line when complete, else what has come of it: hex digits (at most 16
 * significant), then nothing, or whitespace, ';' and extension text. */
static bool size_line_ok(const uint8_t *c, size_t n, bool complete)
{
    size_t digits = 0, zeros = 0, ws;
    while (digits < n && hex(c[digits]))
        digits++;
    while (zeros < digits && c[zeros] == '0')
        zeros++;
    if (digits - zeros > 16 || (digits == 0 && (n > 0 || complete)))
        return false;
    for (ws = digits; ws < n && (c[ws] == ' ' || c[ws] == '\t');)
        ws++;
    if (ws == n)
        return !complete || ws == digits;
    return c[ws] == ';' && all_text(c + ws + 1, n - ws - 1);
}

/* A trailer field's content (not the empty last line): token ':' text. */
static bool trailer_ok(const uint8_t *c, size_t n, bool complete)
{
    size_t name = 0;
    while (name < n && tchar(c[name]))
        name++;
    if (name == n)
        return !complete; /* a name cut short, or no ':' */
    return name > 0 && c[name] == ':' && all_text(c + name + 1, n - name - 1);
}

/* The line at s[at..n): REF_MORE, REF_BAD or the offset of its CR. */
static long line(const uint8_t *s, size_t n, size_t at, bool (*ok)(const uint8_t *, size_t, bool))
{
    size_t end = at;
    while (end < n && s[end] != '\r' && s[end] != '\n')
        end++;
    if (end - at > BODY_MAX_LINE || !ok(s + at, end - at, false))
        return REF_BAD;
    if (end == n)
        return REF_MORE;
    if (s[end] == '\n' || !ok(s + at, end - at, true)) /* a CR ends the content, LF or not */
        return REF_BAD;
    if (end + 1 == n)
        return REF_MORE;
    return s[end + 1] == '\n' ? (long)end : REF_BAD;
}

static uint64_t size_value(const uint8_t *c)
{
    uint64_t v = 0;
    for (; hex(*c); c++)
        v = v << 4 | (uint64_t)(*c <= '9' ? *c - '0' : (*c | 0x20) - 'a' + 10);
    return v;
}

/* The trailer section from at: REF_MORE, REF_BAD or the message's length. */
static long trailers(const uint8_t *s, size_t n, size_t at)
{
    for (;;) {
        if (at < n && s[at] == '\r') /* the empty last line */
            return at + 1 == n ? REF_MORE : s[at + 1] == '\n' ? (long)at + 2 : REF_BAD;
        long end = line(s, n, at, trailer_ok);
        if (end < 0)
            return end;
        at = (size_t)end + 2;
    }
}

/* The message's length (or REF_*); its data bytes, concatenated, into data (room for n) and *dlen. */
static long ref_chunked(const uint8_t *s, size_t n, uint8_t *data, size_t *dlen)
{
    size_t at = 0;
    *dlen = 0;
    for (;;) {
        long end = line(s, n, at, size_line_ok);
        if (end < 0)
            return end;
        uint64_t chunk = size_value(s + at);
        at = (size_t)end + 2;
        if (chunk == 0)
            return trailers(s, n, at);
        if (chunk > n - at)
            return REF_MORE;
        at += chunk;
        if (at == n || (s[at] == '\r' && at + 1 == n))
            return REF_MORE;
        if (s[at] != '\r' || s[at + 1] != '\n')
            return REF_BAD;
        memcpy(data + *dlen, s + at - chunk, chunk);
        *dlen += chunk;
        at += 2;
    }
}

/* ---- entry ---- */

static void check_kind(enum body_kind kind, uint64_t length, const uint8_t *s, size_t n, const struct outcome *o)
{
    switch (kind) {
    case BODY_NONE: check(o->taken == 0 && o->done && !o->error); break;
    case BODY_LENGTH: check(o->taken == (length < n ? length : n) && o->done == (length <= n) && !o->error); break;
    case BODY_UNTIL_CLOSE: check(o->taken == n && !o->done && !o->error); break;
    default: {
        size_t dlen;
        uint8_t *data = malloc(n ? n : 1);
        check(data != NULL);
        long ref = ref_chunked(s, n, data, &dlen);
        check(o->error == (ref == REF_BAD));
        check(o->done == (ref >= 0));
        check(o->error || o->taken == (ref >= 0 ? (size_t)ref : n));
        check(!o->done || (o->taken >= 5 && memcmp(s + o->taken - 4, "\r\n\r\n", 4) == 0));
        check(!o->done || (o->decoded == dlen && memcmp(o->data, data, dlen) == 0));
        free(data);
    }
    }
}

static bool same(const struct outcome *a, const struct outcome *b)
{
    return a->done == b->done && a->error == b->error && (a->error || a->taken == b->taken);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HEADER)
        return 0;
    enum body_kind kind = (enum body_kind)(data[0] & 3);
    uint64_t length = (uint64_t)data[1] | (uint64_t)data[2] << 8;
    size_t max = 2 + (data[0] >> 2), n = size - HEADER;
    const uint8_t *s = data + HEADER;
    struct outcome once = feed_split(kind, length, s, n, 0);
    struct outcome bytes = feed_split(kind, length, s, n, 2); /* sizes 0 and 1 */
    struct outcome pieces = feed_split(kind, length, s, n, max);
    struct outcome decoded = decode_once(kind, length, s, n);
    check(same(&once, &bytes) && same(&once, &pieces) && same(&once, &decoded));
    check_kind(kind, length, s, n, &decoded);
    free(decoded.data);
    return 0;
}
