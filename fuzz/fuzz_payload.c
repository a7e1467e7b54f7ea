/* libFuzzer target for loadgen/payload.c: lg_payload_parse reads every message a server sends to loadgen's clients
 * (servers we did not write included), and lg_payload_encode writes what they relay.
 *
 * Input: any bytes, taken as a received message. Each parse sees its bytes at the very end of an exact-size
 * allocation, so ASan flags a read past len. Invariants abort():
 *  - the answer is 1, 0 or -1 and *m changes only on 1;
 *  - it depends only on the first LG_PAYLOAD_PREFIX bytes, and over the cuts of the input it is 0 up to some
 *    length and then one fixed answer (never 1 then -1, never -1 then 0: a cut head is "not ours", not corrupt);
 *  - on 1 the input holds, at its first marker, exactly our encoding of *m through the byte after t's digits
 *    (numbers are canonical, so there is one spelling), followed by ',' or '}';
 *  - *m (or, when nothing parsed, fields taken from the input bytes) encodes to exactly the size asked, as
 *    fields, 'x' padding and "}, and parses back to the same fields from the whole message and from its head. */
#include "loadgen/payload.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MARKER     "{\"wsh\":1,"
#define MARKER_LEN (sizeof MARKER - 1)
#define PAD_OPEN   ",\"pad\":\""
#define MAX_SIZE   (LG_PAYLOAD_MIN + 512)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static const struct lg_msg sentinel = {.emitter = 0xdeadbeef, .round = 0xbadc0ffe, .seq = 0x5eed, .send_ns = -42};

static bool same(const struct lg_msg *a, const struct lg_msg *b)
{
    return a->emitter == b->emitter && a->round == b->round && a->seq == b->seq && a->send_ns == b->send_ns;
}

/* Parse s[0..n) placed at the end of buf (of room bytes, an exact-size allocation); check the answer's shape. */
static int parse_at_end(char *buf, size_t room, const uint8_t *s, size_t n, struct lg_msg *m)
{
    char *p = buf + room - n;
    if (n)
        memcpy(p, s, n);
    *m = sentinel;
    int rc = lg_payload_parse(p, n, m);
    check(rc >= -1 && rc <= 1);
    check(rc == 1 || same(m, &sentinel));
    return rc;
}

/* The first marker, found the slow way. */
static size_t first_marker(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i + MARKER_LEN <= n; i++)
        if (memcmp(s + i, MARKER, MARKER_LEN) == 0)
            return i;
    return n;
}

/* On 1: the input at its first marker is our encoding of m through t's digits, then ',' or '}'. */
static void check_canonical(const uint8_t *s, size_t n, const struct lg_msg *m)
{
    char enc[LG_PAYLOAD_MIN];
    check(lg_payload_encode(m, enc, sizeof enc) == (int)sizeof enc);
    const char *pad = memchr(enc, 'p', sizeof enc); /* the first 'p' is in ,"pad":" */
    check(pad != NULL);
    size_t fields = (size_t)(pad - enc) - 2, at = first_marker(s, n);
    check(at + fields < n && at + fields < LG_PAYLOAD_PREFIX);
    check(memcmp(s + at, enc, fields) == 0);
    check(s[at + fields] == ',' || s[at + fields] == '}');
}

/* Every cut of s, at the end of its own exact-size window: 0 up to some cut, then the whole input's answer. */
static void check_cuts(const uint8_t *s, size_t n, int whole)
{
    size_t upto = n < LG_PAYLOAD_PREFIX + 2 ? n : LG_PAYLOAD_PREFIX + 2;
    char *buf = malloc(upto ? upto : 1);
    if (!buf)
        return;
    struct lg_msg m;
    bool decided = false;
    for (size_t cut = 0; cut <= upto; cut++) {
        int rc = parse_at_end(buf, upto, s, cut, &m);
        decided = decided || rc != 0;
        check(decided ? rc == whole : rc == 0);
    }
    free(buf);
}

/* Encode m at a size picked from the input, check the layout, parse it back whole and as a head. */
static void check_encode(const struct lg_msg *m, size_t size)
{
    char *out = malloc(size);
    if (!out)
        return;
    check(lg_payload_encode(m, out, size) == (int)size);
    check(memcmp(out, MARKER, MARKER_LEN) == 0 && memcmp(out + size - 2, "\"}", 2) == 0);
    const char *pad = memchr(out, 'p', size);
    check(pad != NULL && memcmp(pad - 2, PAD_OPEN, sizeof PAD_OPEN - 1) == 0);
    size_t pad_at = (size_t)(pad - 2 - out) + sizeof PAD_OPEN - 1;
    check(pad_at <= LG_PAYLOAD_MAX_FIELDS - 2);
    for (size_t i = pad_at; i < size - 2; i++)
        check(out[i] == 'x');
    struct lg_msg back = sentinel;
    check(lg_payload_parse(out, size, &back) == 1 && same(m, &back));
    size_t head = size < LG_PAYLOAD_PREFIX ? size : LG_PAYLOAD_PREFIX;
    back = sentinel;
    check(lg_payload_parse(out, head, &back) == 1 && same(m, &back));
    free(out);
}

/* Fields from raw input bytes, when the input is not one of ours: every digit count gets encoded. */
static struct lg_msg msg_from_bytes(const uint8_t *s, size_t n)
{
    uint8_t raw[24] = {0};
    memcpy(raw, s, n < sizeof raw ? n : sizeof raw);
    struct lg_msg m;
    uint64_t t;
    memcpy(&m.emitter, raw, 4);
    memcpy(&m.round, raw + 4, 4);
    memcpy(&m.seq, raw + 8, 4);
    memcpy(&t, raw + 12, 8);
    m.emitter >>= raw[20] % 32; /* shorter numbers too */
    m.send_ns = (int64_t)(t >> (1 + raw[21] % 63));
    return m;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    struct lg_msg m;
    int rc = parse_at_end(in, size, data, size, &m);
    free(in);
    if (size > LG_PAYLOAD_PREFIX) { /* only the prefix counts */
        struct lg_msg p;
        char *pre = malloc(LG_PAYLOAD_PREFIX);
        if (pre) {
            check(parse_at_end(pre, LG_PAYLOAD_PREFIX, data, LG_PAYLOAD_PREFIX, &p) == rc);
            check(rc != 1 || same(&m, &p));
            free(pre);
        }
    }
    check_cuts(data, size, rc);
    if (rc == 1)
        check_canonical(data, size, &m);
    else
        m = msg_from_bytes(data, size);
    check_encode(&m, LG_PAYLOAD_MIN + (size ? data[size - 1] : 0) * (MAX_SIZE - LG_PAYLOAD_MIN) / 255);
    return 0;
}
