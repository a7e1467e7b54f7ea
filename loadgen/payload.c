/* loadgen's message: the emitter's encoder and the receivers' parser; see payload.h.
 *
 * The parser is on the receive hot path (every message every client gets), so it is a strict fixed-order scan
 * with no allocation, no locale and no strto*: the fields' order and spelling are ours. Its answer depends only on
 * the bytes it is given and is monotone in them: while the bytes present are a proper prefix of a valid head it
 * returns 0, from the first byte that no valid head can have it returns -1, and once everything through the byte
 * after t's digits is there it returns 1. A head cut short therefore reads as "not ours" (0), never as corrupt:
 * the caller passes min(message length, LG_PAYLOAD_PREFIX) bytes, so a cut means the message itself (or the part
 * of it in the first LG_PAYLOAD_PREFIX bytes) is too short to hold our fields, i.e. someone else's. */
#include "loadgen/payload.h"

#include <string.h>

#define MARKER     "{\"wsh\":1,"
#define MARKER_LEN (sizeof MARKER - 1)
#define PAD_OPEN   ",\"pad\":\""
#define PAD_CLOSE  "\"}"

/* ---- encoder ---- */

/* Append the decimal digits of v (no sign, no leading zeros) at out; returns how many were written. */
static size_t put_u64(char *out, uint64_t v)
{
    char tmp[20]; /* UINT64_MAX has 20 digits */
    char *p = tmp + sizeof tmp;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    size_t n = (size_t)(tmp + sizeof tmp - p);
    memcpy(out, p, n);
    return n;
}

/* Append the n bytes of s (no NUL: the message is not a C string); returns n. */
static size_t put(char *out, const char *s, size_t n)
{
    memcpy(out, s, n);
    return n;
}

#define PUT_LIT(out, s) put(out, s, sizeof(s) - 1)

int lg_payload_encode(const struct lg_msg *m, char *out, size_t size)
{
    if (size < LG_PAYLOAD_MIN || m->send_ns < 0)
        return -1;
    size_t n = PUT_LIT(out, MARKER);
    n += PUT_LIT(out + n, "\"e\":");
    n += put_u64(out + n, m->emitter);
    n += PUT_LIT(out + n, ",\"r\":");
    n += put_u64(out + n, m->round);
    n += PUT_LIT(out + n, ",\"s\":");
    n += put_u64(out + n, m->seq);
    n += PUT_LIT(out + n, ",\"t\":");
    n += put_u64(out + n, (uint64_t)m->send_ns);
    n += PUT_LIT(out + n, PAD_OPEN);
    /* n <= LG_PAYLOAD_MAX_FIELDS - 2 <= size - 2: the padding is never negative */
    memset(out + n, 'x', size - n - (sizeof PAD_CLOSE - 1));
    put(out + size - (sizeof PAD_CLOSE - 1), PAD_CLOSE, sizeof PAD_CLOSE - 1);
    return (int)size;
}

/* ---- parser ---- */

/* The first marker in buf[0..len), or NULL. A '{' is rare in what precedes the marker (usually nothing, else an
 * envelope's few keys), so memchr for it and compare; a marker cut by the end of buf does not count. */
static const char *find_marker(const char *buf, size_t len)
{
    const char *p = buf, *end = buf + len;
    while ((size_t)(end - p) >= MARKER_LEN) {
        if (memcmp(p, MARKER, MARKER_LEN) == 0)
            return p;
        p = memchr(p + 1, '{', (size_t)(end - p) - MARKER_LEN);
        if (!p)
            return NULL;
    }
    return NULL;
}

/* Expect the name s[0..n) at *p (it may be cut by end); advance past it. 1 ok, 0 ended, -1 mismatch. */
static int expect(const char **p, const char *end, const char *s, size_t n)
{
    size_t have = (size_t)(end - *p);
    if (have < n)
        return memcmp(*p, s, have) == 0 ? 0 : -1;
    if (memcmp(*p, s, n) != 0)
        return -1;
    *p += n;
    return 1;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A decimal number of at most digits digits and value max at *p, ended by a non-digit that must be present (else
 * more digits might follow). Advances *p to that byte. 1 ok, 0 ended, -1 malformed: no digit, a leading zero,
 * or too big (no leading zeros, so one digit too many is too big; up to 19 digits fit a uint64_t). */
static int number(const char **p, const char *end, unsigned digits, uint64_t max, uint64_t *v)
{
    const char *q = *p;
    if (q == end)
        return 0;
    if (!is_digit(*q))
        return -1;
    uint64_t x = 0;
    const char *stop = (size_t)(end - q) > digits ? q + digits : end;
    for (; q < stop && is_digit(*q); q++)
        x = x * 10 + (uint64_t)(*q - '0');
    if (x > max || (q - *p > 1 && **p == '0'))
        return -1;
    if (q == end)
        return 0;
    if (is_digit(*q))
        return -1; /* digits + 1 digits: too big */
    *v = x;
    *p = q;
    return 1;
}

#define NAME(s) s, sizeof(s) - 1

/* The fields after the marker, at p. Returns as lg_payload_parse. */
static int fields(const char *p, const char *end, struct lg_msg *m)
{
    uint64_t e, r, s, t;
    int rc;
    if ((rc = expect(&p, end, NAME("\"e\":"))) < 1 || (rc = number(&p, end, 10, UINT32_MAX, &e)) < 1 ||
        (rc = expect(&p, end, NAME(",\"r\":"))) < 1 || (rc = number(&p, end, 10, UINT32_MAX, &r)) < 1 ||
        (rc = expect(&p, end, NAME(",\"s\":"))) < 1 || (rc = number(&p, end, 10, UINT32_MAX, &s)) < 1 ||
        (rc = expect(&p, end, NAME(",\"t\":"))) < 1 || (rc = number(&p, end, 19, INT64_MAX, &t)) < 1)
        return rc;
    if (*p != ',' && *p != '}') /* number() left p on a present byte */
        return -1;
    *m = (struct lg_msg){.emitter = (uint32_t)e, .round = (uint32_t)r, .seq = (uint32_t)s, .send_ns = (int64_t)t};
    return 1;
}

int lg_payload_parse(const char *buf, size_t len, struct lg_msg *m)
{
    if (len > LG_PAYLOAD_PREFIX)
        len = LG_PAYLOAD_PREFIX;
    const char *p = find_marker(buf, len);
    if (!p)
        return 0;
    return fields(p + MARKER_LEN, buf + len, m);
}
