/* The @socket.io/redis-adapter wire format: JSON to msgpack and back in one pass, and its requests (sioadapter.h). */
#include "refserver/sioadapter.h"

#include "common/buf.h"
#include "common/jscan.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Output (struct sioa_writer) has a sticky error, as hiredis' reader keeps its error: writers append without checking
 * each call, and the entry points look once at the end. Positions are offsets from the buffer's head, which
 * buf_reserve's compaction keeps valid. */

static void put(struct sioa_writer *o, const void *p, size_t n)
{
    if (!o->failed && buf_append(o->b, p, n) < 0)
        o->failed = true;
}

static void put_byte(struct sioa_writer *o, uint8_t c)
{
    put(o, &c, 1);
}

static size_t out_len(const struct sioa_writer *o)
{
    return buf_len(o->b);
}

static void out_truncate(struct sioa_writer *o, size_t len)
{
    o->b->wpos = o->b->rpos + len;
}

/* ---- UTF-8 ---- */

#define UTF8_BAD 0x110000u /* utf8_next's answer for an invalid sequence */

/* One code point at p (p < end): its length, and *cp (UTF8_BAD for an invalid sequence). An invalid sequence is as
 * long as its longest valid prefix, at least 1 byte: the WHATWG decoder, and so Node's buffer.toString, make one
 * U+FFFD of each. Overlong forms, surrogates and code points past U+10FFFF are invalid. */
static size_t utf8_next(const uint8_t *p, const uint8_t *end, uint32_t *cp)
{
    uint8_t c = p[0], lo = 0x80, hi = 0xbf;
    size_t need;
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        need = 1, v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2, v = c & 0x0f, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3, v = c & 0x07, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        *cp = UTF8_BAD;
        return 1;
    }
    for (size_t i = 1; i <= need; i++, lo = 0x80, hi = 0xbf) {
        if (p + i >= end || p[i] < lo || p[i] > hi) {
            *cp = UTF8_BAD;
            return i;
        }
        v = v << 6 | (p[i] & 0x3f);
    }
    *cp = v;
    return need + 1;
}

/* ---- msgpack writing, with the widths notepack.io picks (the smallest) ---- */

enum mp_type { MP_BAD = 0, MP_NIL, MP_BOOL, MP_UINT, MP_INT, MP_FLOAT, MP_STR, MP_BIN, MP_ARRAY, MP_MAP, MP_EXT };

static void put_be(struct sioa_writer *o, uint8_t tag, uint64_t v, unsigned bytes)
{
    uint8_t h[9];
    h[0] = tag;
    for (unsigned i = 0; i < bytes; i++)
        h[1 + i] = (uint8_t)(v >> 8 * (bytes - 1 - i));
    put(o, h, 1 + bytes);
}

/* The header of a str, bin, array or map of n bytes or items into h; returns its length, 0 when n needs more than
 * 32 bits. bin has no fix form, array and map no 8-bit one. */
static size_t mp_head(uint8_t h[5], enum mp_type type, size_t n)
{
    uint8_t fix = 0, w8 = 0, w16, w32;
    size_t fix_max = 0;
    switch (type) {
    case MP_STR: fix = 0xa0, fix_max = 32, w8 = 0xd9, w16 = 0xda, w32 = 0xdb; break;
    case MP_BIN: w8 = 0xc4, w16 = 0xc5, w32 = 0xc6; break;
    case MP_ARRAY: fix = 0x90, fix_max = 16, w16 = 0xdc, w32 = 0xdd; break;
    default: fix = 0x80, fix_max = 16, w16 = 0xde, w32 = 0xdf; break; /* MP_MAP */
    }
    unsigned bytes = n < fix_max ? 0 : w8 && n < 0x100 ? 1 : n < 0x10000 ? 2 : n <= UINT32_MAX ? 4 : 8;
    if (bytes == 8)
        return 0;
    h[0] = bytes == 0 ? (uint8_t)(fix | n) : bytes == 1 ? w8 : bytes == 2 ? w16 : w32;
    for (unsigned i = 0; i < bytes; i++)
        h[1 + i] = (uint8_t)(n >> 8 * (bytes - 1 - i));
    return 1 + bytes;
}

static void put_head(struct sioa_writer *o, enum mp_type type, size_t n)
{
    uint8_t h[5];
    size_t len = mp_head(h, type, n);
    if (len == 0)
        o->failed = true;
    put(o, h, len);
}

static void put_str(struct sioa_writer *o, const char *s, size_t len)
{
    put_head(o, MP_STR, len);
    put(o, s, len);
}

static void put_str_array(struct sioa_writer *o, const struct sioa_bytes *s, size_t n)
{
    put_head(o, MP_ARRAY, n);
    for (size_t i = 0; i < n; i++)
        put_str(o, s[i].data, s[i].len);
}

static void put_uint(struct sioa_writer *o, uint64_t v)
{
    if (v < 0x80)
        put_byte(o, (uint8_t)v);
    else if (v < 0x100)
        put_be(o, 0xcc, v, 1);
    else if (v < 0x10000)
        put_be(o, 0xcd, v, 2);
    else if (v <= UINT32_MAX)
        put_be(o, 0xce, v, 4);
    else
        put_be(o, 0xcf, v, 8);
}

/* Precondition: v < 0. Two's complement bytes, through uint64_t (a defined conversion). */
static void put_negative(struct sioa_writer *o, int64_t v)
{
    if (v >= -32)
        put_byte(o, (uint8_t)v);
    else if (v >= INT8_MIN)
        put_be(o, 0xd0, (uint64_t)v, 1);
    else if (v >= INT16_MIN)
        put_be(o, 0xd1, (uint64_t)v, 2);
    else if (v >= INT32_MIN)
        put_be(o, 0xd2, (uint64_t)v, 4);
    else
        put_be(o, 0xd3, (uint64_t)v, 8);
}

static void put_float64(struct sioa_writer *o, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    put_be(o, 0xcb, bits, 8);
}

/* Containers are written with room for the widest header, then moved down once their count is known: one pass
 * over the JSON, at the cost of a memmove of each container's body. */
static size_t begin_container(struct sioa_writer *o)
{
    size_t at = out_len(o);
    put(o, "\0\0\0\0\0", 5);
    return at;
}

static void end_container(struct sioa_writer *o, size_t at, enum mp_type type, size_t count)
{
    uint8_t h[5];
    size_t head = mp_head(h, type, count);
    if (o->failed || head == 0) {
        o->failed = true;
        return;
    }
    char *base = buf_head(o->b) + at;
    size_t body = out_len(o) - at - 5;
    memmove(base + head, base + 5, body);
    memcpy(base, h, head);
    out_truncate(o, at + head + body);
}

/* ---- Encoding: JSON text to msgpack ---- */

struct enc {
    struct sioa_writer o;
    const char *end;
    const struct sioa_bytes *attachments;
    size_t n_attachments;
};

/* What socket.io-parser's reconstructPacket looks at in an object: "_placeholder" and "num", the last of each. */
struct placeholder {
    bool is;      /* "_placeholder" is true */
    bool has_num; /* "num" is a number */
    double num;
};

struct number {
    bool integer; /* no fraction or exponent, and in range: exact in negative / magnitude */
    bool negative;
    uint64_t magnitude;
    double value;
};

static int hex4(const char *p, const char *end)
{
    int v = 0;
    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* The escape at p (p[0] == '\\'): its end, with its UTF-8 in u[0..*len), or NULL. A surrogate pair of escapes is
 * one code point; a lone surrogate becomes U+FFFD, as Buffer.from turns a JavaScript string into UTF-8. */
static const char *json_escape(const char *p, const char *end, uint8_t u[4], size_t *len)
{
    static const char simple[] = "\"\\/bfnrt", decoded[] = "\"\\/\b\f\n\r\t";
    if (end - p < 2)
        return NULL;
    if (p[1] != 'u') {
        const char *e = memchr(simple, p[1], sizeof simple - 1);
        if (!e)
            return NULL;
        u[0] = (uint8_t)decoded[e - simple];
        *len = 1;
        return p + 2;
    }
    int cp = hex4(p + 2, end);
    if (cp < 0)
        return NULL;
    p += 6;
    if (cp >= 0xd800 && cp <= 0xdbff && end - p >= 2 && p[0] == '\\' && p[1] == 'u') {
        int low = hex4(p + 2, end);
        if (low >= 0xdc00 && low <= 0xdfff) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
            p += 6;
        }
    }
    if (cp >= 0xd800 && cp <= 0xdfff)
        cp = 0xfffd;
    *len = jscan_put_utf8(u, (uint32_t)cp);
    return p;
}

/* The JSON string at p (p[0] == '"') unescaped into o, or only measured when o is NULL: its end, with *len the
 * bytes it makes, or NULL when it is malformed. Invalid UTF-8 in it becomes U+FFFD. */
static const char *unescape_string(const char *p, const char *end, struct sioa_writer *o, size_t *len)
{
    size_t n = 0;
    for (p++; p < end;) {
        const char *run = p;
        while (p < end && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x80 && *p != '"' && *p != '\\')
            p++;
        n += (size_t)(p - run);
        if (o)
            put(o, run, (size_t)(p - run));
        if (p >= end || *p == '"')
            break;
        uint8_t u[4];
        size_t k;
        if (*p == '\\') {
            if (!(p = json_escape(p, end, u, &k)))
                return NULL;
        } else if ((unsigned char)*p < 0x20) {
            return NULL;
        } else {
            uint32_t cp;
            p += utf8_next((const uint8_t *)p, (const uint8_t *)end, &cp);
            k = jscan_put_utf8(u, cp == UTF8_BAD ? 0xfffd : cp);
        }
        n += k;
        if (o)
            put(o, u, k);
    }
    *len = n;
    return p < end ? p + 1 : NULL;
}

/* The JSON number at p (its grammar is jscan's): its end, or NULL. */
static const char *json_number(const char *p, const char *end, struct number *num)
{
    const char *start = p, *int_end = p + (p < end && *p == '-');
    *num = (struct number){.integer = true, .negative = int_end > p};
    if (!(p = jscan_number_end(p, end)))
        return NULL;
    while (int_end < p && *int_end >= '0' && *int_end <= '9')
        int_end++;
    num->integer = p == int_end;
    uint64_t limit = num->negative ? (uint64_t)INT64_MAX + 1 : UINT64_MAX;
    for (const char *q = start + num->negative; num->integer && q < int_end; q++) {
        unsigned d = (unsigned)(*q - '0');
        num->integer = num->magnitude <= (limit - d) / 10;
        num->magnitude = num->magnitude * 10 + d;
    }
    if (num->integer) {
        num->value = num->negative ? -(double)num->magnitude : (double)num->magnitude;
        return p;
    }
    char text[SIOA_NUMBER_MAX + 1];
    if ((size_t)(p - start) > SIOA_NUMBER_MAX)
        return NULL;
    memcpy(text, start, (size_t)(p - start));
    text[p - start] = '\0';
    num->value = strtod(text, NULL);
    return p;
}

static void put_number(struct sioa_writer *o, const struct number *num)
{
    if (!num->integer)
        put_float64(o, num->value);
    else if (!num->negative || num->magnitude == 0)
        put_uint(o, num->magnitude); /* -0 too, as notepack writes it */
    else if (num->magnitude > INT64_MAX)
        put_negative(o, INT64_MIN);
    else
        put_negative(o, -(int64_t)num->magnitude);
}

static const char *literal(const char *p, const char *end, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(end - p) >= n && !memcmp(p, word, n) ? p + n : NULL;
}

/* A JSON string as a msgpack str; *bytes_at (when given) is where its bytes start in the output. */
static const char *enc_string(struct enc *e, const char *p, size_t *bytes_at)
{
    size_t len;
    if (!unescape_string(p, e->end, NULL, &len))
        return NULL;
    put_head(&e->o, MP_STR, len);
    if (bytes_at)
        *bytes_at = out_len(&e->o);
    return unescape_string(p, e->end, &e->o, &len);
}

static const char *enc_value(struct enc *e, const char *p, int depth);

enum key_kind { KEY_OTHER = 0, KEY_PLACEHOLDER, KEY_NUM };

static enum key_kind key_kind(const struct sioa_writer *o, size_t at, size_t len)
{
    if (o->failed)
        return KEY_OTHER;
    const char *k = buf_head(o->b) + at;
    if (len == 12 && !memcmp(k, "_placeholder", 12))
        return KEY_PLACEHOLDER;
    return len == 3 && !memcmp(k, "num", 3) ? KEY_NUM : KEY_OTHER;
}

/* One "key": value of an object at p, noting in *ph what makes the object a placeholder. */
static const char *enc_member(struct enc *e, const char *p, int depth, struct placeholder *ph)
{
    size_t at;
    if (p >= e->end || *p != '"' || !(p = enc_string(e, p, &at)))
        return NULL;
    enum key_kind key = key_kind(&e->o, at, out_len(&e->o) - at);
    p = jscan_ws(p, e->end);
    if (p >= e->end || *p != ':')
        return NULL;
    const char *value = jscan_ws(p + 1, e->end);
    if (!(p = enc_value(e, value, depth + 1)))
        return NULL;
    struct number num = {0};
    if (key == KEY_PLACEHOLDER)
        ph->is = *value == 't';
    if (key == KEY_NUM) {
        ph->has_num = (*value == '-' || (*value >= '0' && *value <= '9')) && json_number(value, e->end, &num);
        ph->num = num.value;
    }
    return p;
}

/* Replace the object written from at with the bin of the attachment it stands for. */
static bool put_attachment_bin(struct enc *e, size_t at, const struct placeholder *ph)
{
    double k = ph->num;
    if (e->o.failed || !ph->has_num || !(k >= 0) || k >= (double)e->n_attachments || k != floor(k))
        return false;
    const struct sioa_bytes *a = &e->attachments[(size_t)k];
    out_truncate(&e->o, at);
    put_head(&e->o, MP_BIN, a->len);
    put(&e->o, a->data, a->len);
    return true;
}

/* Precondition: *p is '[' or '{'. */
static const char *enc_container(struct enc *e, const char *p, int depth)
{
    bool object = *p == '{', more;
    char close = object ? '}' : ']';
    size_t at = begin_container(&e->o), count = 0;
    struct placeholder ph = {false, false, 0};
    p = jscan_ws(p + 1, e->end);
    for (more = p >= e->end || *p != close; more; count++) {
        p = object ? enc_member(e, p, depth, &ph) : enc_value(e, p, depth + 1);
        if (!p)
            return NULL;
        p = jscan_ws(p, e->end);
        if (p >= e->end || (*p != ',' && *p != close))
            return NULL;
        more = *p == ',';
        if (more)
            p = jscan_ws(p + 1, e->end);
    }
    if (object && ph.is && e->n_attachments)
        return put_attachment_bin(e, at, &ph) ? p + 1 : NULL;
    end_container(&e->o, at, object ? MP_MAP : MP_ARRAY, count);
    return p + 1;
}

static const char *enc_value(struct enc *e, const char *p, int depth)
{
    p = jscan_ws(p, e->end);
    if (p >= e->end || depth > SIOA_DEPTH || e->o.failed)
        return NULL;
    struct number num;
    switch (*p) {
    case '"': return enc_string(e, p, NULL);
    case '[':
    case '{': return enc_container(e, p, depth);
    case 't': put_byte(&e->o, 0xc3); return literal(p, e->end, "true");
    case 'f': put_byte(&e->o, 0xc2); return literal(p, e->end, "false");
    case 'n': put_byte(&e->o, 0xc0); return literal(p, e->end, "null");
    default:
        if (!(p = json_number(p, e->end, &num)))
            return NULL;
        put_number(&e->o, &num);
        return p;
    }
}

int sioa_encode(struct buf *out, const char *uid, size_t uid_len, const char *nsp, size_t nsp_len, const char *json,
                size_t json_len, const struct sioa_bytes *attachments, size_t n_attachments,
                const struct sioa_bytes *rooms, size_t n_rooms, const struct sioa_bytes *except, size_t n_except)
{
    if (!json) /* so that json + json_len is defined; no JSON is malformed anyway */
        json = "", json_len = 0;
    struct enc e = {{out, false}, json + json_len, attachments, n_attachments};
    size_t start = out_len(&e.o);
    put_byte(&e.o, 0x93); /* [uid, packet, opts] */
    put_str(&e.o, uid, uid_len);
    put_byte(&e.o, 0x83); /* {type, data, nsp}, in the order socket.io builds the packet */
    put_str(&e.o, "type", 4);
    put_byte(&e.o, SIOA_EVENT);
    put_str(&e.o, "data", 4);
    const char *p = enc_value(&e, json, 1);
    put_str(&e.o, "nsp", 3);
    put_str(&e.o, nsp, nsp_len);
    put_byte(&e.o, 0x83); /* {rooms, except, flags} */
    put_str(&e.o, "rooms", 5);
    put_str_array(&e.o, rooms, n_rooms);
    put_str(&e.o, "except", 6);
    put_str_array(&e.o, except, n_except);
    put_str(&e.o, "flags", 5);
    put_byte(&e.o, 0x80);
    if (!p || jscan_ws(p, e.end) != e.end || e.o.failed) {
        out_truncate(&e.o, start);
        return -1;
    }
    return 0;
}

/* ---- Decoding: msgpack to JSON text ---- */

struct dec {
    const uint8_t *p, *end;
    struct sioa_writer o;
    struct sioa_broadcast *b;
    bool placeholder_map; /* data holds a map whose "_placeholder" is true */
};

/* One msgpack header, and the payload of the kinds that have bytes (str, bin, ext). */
struct mp_item {
    enum mp_type type;
    uint64_t u;          /* MP_UINT, MP_BOOL; the count of MP_ARRAY and MP_MAP */
    int64_t i;           /* MP_INT */
    double f;            /* MP_FLOAT */
    const uint8_t *data; /* MP_STR, MP_BIN, MP_EXT */
    size_t len;
};

/* The tags 0xc0..0xdf: their type, the bytes of length or value after the tag, and the payload of fixext. */
static const struct {
    uint8_t type, width, fixed;
} tags[32] = {
    [0x00] = {MP_NIL, 0, 0},   [0x01] = {MP_BAD, 0, 0},   [0x02] = {MP_BOOL, 0, 0},  [0x03] = {MP_BOOL, 0, 0},
    [0x04] = {MP_BIN, 1, 0},   [0x05] = {MP_BIN, 2, 0},   [0x06] = {MP_BIN, 4, 0},   [0x07] = {MP_EXT, 1, 0},
    [0x08] = {MP_EXT, 2, 0},   [0x09] = {MP_EXT, 4, 0},   [0x0a] = {MP_FLOAT, 4, 0}, [0x0b] = {MP_FLOAT, 8, 0},
    [0x0c] = {MP_UINT, 1, 0},  [0x0d] = {MP_UINT, 2, 0},  [0x0e] = {MP_UINT, 4, 0},  [0x0f] = {MP_UINT, 8, 0},
    [0x10] = {MP_INT, 1, 0},   [0x11] = {MP_INT, 2, 0},   [0x12] = {MP_INT, 4, 0},   [0x13] = {MP_INT, 8, 0},
    [0x14] = {MP_EXT, 0, 1},   [0x15] = {MP_EXT, 0, 2},   [0x16] = {MP_EXT, 0, 4},   [0x17] = {MP_EXT, 0, 8},
    [0x18] = {MP_EXT, 0, 16},  [0x19] = {MP_STR, 1, 0},   [0x1a] = {MP_STR, 2, 0},   [0x1b] = {MP_STR, 4, 0},
    [0x1c] = {MP_ARRAY, 2, 0}, [0x1d] = {MP_ARRAY, 4, 0}, [0x1e] = {MP_MAP, 2, 0},   [0x1f] = {MP_MAP, 4, 0},
};

/* n bytes at d->p, consumed; NULL when the message is shorter. */
static const uint8_t *take(struct dec *d, size_t n)
{
    if ((size_t)(d->end - d->p) < n)
        return NULL;
    const uint8_t *at = d->p;
    d->p += n;
    return at;
}

static uint64_t read_be(const uint8_t *p, unsigned bytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++)
        v = v << 8 | p[i];
    return v;
}

/* The value of a tag whose width bytes follow it (floats, ints, lengths), into *it. */
static bool read_tagged(struct dec *d, uint8_t type, unsigned width, unsigned fixed, struct mp_item *it)
{
    const uint8_t *w = take(d, width);
    if (!w)
        return false;
    uint64_t v = read_be(w, width), sign = width ? 1ull << (8 * width - 1) : 0;
    if (type == MP_FLOAT && width == 4) {
        float f;
        uint32_t bits = (uint32_t)v;
        memcpy(&f, &bits, sizeof f);
        it->f = f;
    } else if (type == MP_FLOAT) {
        memcpy(&it->f, &v, sizeof it->f);
    } else if (type == MP_INT) {
        uint64_t mask = width == 8 ? UINT64_MAX : (1ull << 8 * width) - 1;
        it->i = v & sign ? -(int64_t)(~v & mask) - 1 : (int64_t)v;
    } else if (type == MP_EXT) {
        it->len = fixed ? fixed : v;
        if (!take(d, 1)) /* the ext's own type byte */
            return false;
        return (it->data = take(d, it->len)) != NULL;
    } else if (type == MP_STR || type == MP_BIN) {
        it->len = v;
        return (it->data = take(d, it->len)) != NULL;
    }
    it->u = v;
    return true;
}

/* One msgpack header at d->p into *it; false when truncated or the tag is 0xc1 (never used). */
static bool read_item(struct dec *d, struct mp_item *it)
{
    const uint8_t *t = take(d, 1);
    if (!t)
        return false;
    uint8_t c = *t;
    if (c < 0x80 || c >= 0xe0) {
        it->type = c < 0x80 ? MP_UINT : MP_INT;
        it->u = c;
        it->i = c < 0x80 ? c : (int64_t)c - 0x100; /* negative fixint: 111xxxxx */
        return true;
    }
    if (c < 0xa0) {
        it->type = c < 0x90 ? MP_MAP : MP_ARRAY;
        it->u = c & 0x0f;
        return true;
    }
    if (c < 0xc0) {
        it->type = MP_STR;
        it->len = c & 0x1f;
        return (it->data = take(d, it->len)) != NULL;
    }
    it->type = tags[c - 0xc0].type;
    if (it->type == MP_BAD)
        return false;
    if (it->type == MP_NIL || it->type == MP_BOOL) {
        it->u = c == 0xc3;
        return true;
    }
    return read_tagged(d, it->type, tags[c - 0xc0].width, tags[c - 0xc0].fixed, it);
}

/* Skip what follows the header it of a value nested at depth: the items of an array or map. */
static bool skip_body(struct dec *d, const struct mp_item *it, int depth)
{
    if (it->type != MP_ARRAY && it->type != MP_MAP)
        return true;
    uint64_t n = it->type == MP_MAP ? 2 * it->u : it->u;
    if (n && depth >= SIOA_DEPTH)
        return false;
    for (uint64_t i = 0; i < n; i++) {
        struct mp_item child;
        if (!read_item(d, &child) || !skip_body(d, &child, depth + 1))
            return false;
    }
    return true;
}

static bool skip_value(struct dec *d)
{
    struct mp_item it;
    return read_item(d, &it) && skip_body(d, &it, 1);
}

static const char *short_escape(uint32_t cp)
{
    switch (cp) {
    case '"': return "\\\"";
    case '\\': return "\\\\";
    case '\b': return "\\b";
    case '\f': return "\\f";
    case '\n': return "\\n";
    case '\r': return "\\r";
    case '\t': return "\\t";
    default: return NULL;
    }
}

/* JSON.stringify's escapes: the quote, the backslash and control characters; everything else as UTF-8, with
 * U+FFFD for each invalid sequence. */
static void put_json_string(struct sioa_writer *o, const uint8_t *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *end = s + len, *run = s;
    put(o, "\"", 1);
    while (s < end) {
        uint32_t cp = *s;
        size_t k = 1;
        if (cp >= 0x80)
            k = utf8_next(s, end, &cp);
        if (cp >= 0x20 && cp != '"' && cp != '\\' && cp != UTF8_BAD) {
            s += k;
            continue;
        }
        put(o, run, (size_t)(s - run));
        const char *esc = short_escape(cp);
        char u[6] = {'\\', 'u', '0', '0', hex[cp >> 4 & 0xf], hex[cp & 0xf]};
        if (cp == UTF8_BAD)
            put(o, "\xef\xbf\xbd", 3);
        else if (esc)
            put(o, esc, 2);
        else
            put(o, u, 6);
        s += k;
        run = s;
    }
    put(o, run, (size_t)(s - run));
    put(o, "\"", 1);
}

/* Digits d1 d2 ... dk of a value 0.d1d2...dk x 10^n laid out as JavaScript's Number::toString does (ECMA-262
 * 6.1.6.1.20), which is what JSON.stringify writes: plain up to 21 integer digits, 0.000001 and up without an
 * exponent, otherwise d.ddde+N. */
static void put_js_number(struct sioa_writer *o, bool negative, const char *digits, int k, int n)
{
    char text[48];
    size_t len = 0;
    if (negative)
        text[len++] = '-';
    if (n <= -6 || n > 21) {
        text[len++] = digits[0];
        if (k > 1)
            text[len++] = '.';
        memcpy(text + len, digits + 1, (size_t)k - 1);
        len += (size_t)k - 1;
        len += (size_t)snprintf(text + len, sizeof text - len, "e%c%d", n - 1 < 0 ? '-' : '+', abs(n - 1));
        put(o, text, len);
        return;
    }
    if (n <= 0) {
        memcpy(text + len, "0.00000", 2 + (size_t)-n);
        len += 2 + (size_t)-n;
    }
    for (int i = 0; i < k || i < n; i++) {
        if (i == n && n > 0)
            text[len++] = '.';
        text[len++] = i < k ? digits[i] : '0';
    }
    put(o, text, len);
}

/* The fewest significant digits that read back as v (a binary search over %.*e precisions: once p digits round
 * trip, so do p + 1; 17 always do), so JSON.parse gives v again. NaN and infinities become null and -0 becomes 0,
 * as JSON.stringify writes them. */
static void put_json_double(struct sioa_writer *o, double v)
{
    char sci[40], digits[20];
    int lo = 1, hi = 17, k = 0;
    if (!isfinite(v) || v == 0) {
        put(o, v == 0 ? "0" : "null", v == 0 ? 1 : 4);
        return;
    }
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        snprintf(sci, sizeof sci, "%.*e", mid - 1, v);
        if (strtod(sci, NULL) == v)
            hi = mid;
        else
            lo = mid + 1;
    }
    snprintf(sci, sizeof sci, "%.*e", lo - 1, v); /* [-]d[.ddd]e(+|-)xx */
    const char *s = sci + (v < 0);
    for (; *s != 'e'; s++)
        if (*s != '.')
            digits[k++] = *s;
    while (k > 1 && digits[k - 1] == '0')
        k--;
    put_js_number(o, v < 0, digits, k, atoi(s + 1) + 1);
}

static void put_json_int(struct sioa_writer *o, const struct mp_item *it)
{
    char text[24];
    int n = it->type == MP_UINT ? snprintf(text, sizeof text, "%" PRIu64, it->u)
                                : snprintf(text, sizeof text, "%" PRId64, it->i);
    put(o, text, (size_t)n);
}

/* A bin becomes the placeholder socket.io-parser's deconstructPacket would write, numbered in order of appearance;
 * the placeholder object nests one level deeper than the bin. */
static bool put_placeholder(struct dec *d, const struct mp_item *it, int depth)
{
    struct sioa_broadcast *b = d->b;
    char text[48];
    if (depth + 1 > SIOA_DEPTH || b->n_attachments == SIOA_ATTACH_MAX)
        return false;
    int n = snprintf(text, sizeof text, "{\"_placeholder\":true,\"num\":%zu}", b->n_attachments);
    b->attachments[b->n_attachments++] = (struct sioa_bytes){(const char *)it->data, it->len};
    put(&d->o, text, (size_t)n);
    return true;
}

static bool data_json(struct dec *d, int depth);

static bool array_json(struct dec *d, uint64_t n, int depth)
{
    put(&d->o, "[", 1);
    for (uint64_t i = 0; i < n; i++) {
        if (i)
            put(&d->o, ",", 1);
        if (!data_json(d, depth + 1))
            return false;
    }
    put(&d->o, "]", 1);
    return true;
}

/* Keys are strings, or integers written as their decimal string (JavaScript object keys are strings). */
static bool map_json(struct dec *d, uint64_t n, int depth)
{
    put(&d->o, "{", 1);
    for (uint64_t i = 0; i < n; i++) {
        struct mp_item key;
        if (i)
            put(&d->o, ",", 1);
        if (!read_item(d, &key))
            return false;
        if (key.type == MP_STR) {
            put_json_string(&d->o, key.data, key.len);
            if (key.len == 12 && !memcmp(key.data, "_placeholder", 12) && d->p < d->end && *d->p == 0xc3)
                d->placeholder_map = true;
        } else if (key.type == MP_UINT || key.type == MP_INT) {
            put(&d->o, "\"", 1);
            put_json_int(&d->o, &key);
            put(&d->o, "\"", 1);
        } else {
            return false;
        }
        put(&d->o, ":", 1);
        if (!data_json(d, depth + 1))
            return false;
    }
    put(&d->o, "}", 1);
    return true;
}

static bool data_json(struct dec *d, int depth)
{
    struct mp_item it;
    if (depth > SIOA_DEPTH || d->o.failed || !read_item(d, &it))
        return false;
    switch (it.type) {
    case MP_NIL: put(&d->o, "null", 4); return true;
    case MP_BOOL: it.u ? put(&d->o, "true", 4) : put(&d->o, "false", 5); return true;
    case MP_UINT:
    case MP_INT: put_json_int(&d->o, &it); return true;
    case MP_FLOAT: put_json_double(&d->o, it.f); return true;
    case MP_STR: put_json_string(&d->o, it.data, it.len); return true;
    case MP_BIN: return put_placeholder(d, &it, depth);
    case MP_ARRAY: return array_json(d, it.u, depth);
    case MP_MAP: return map_json(d, it.u, depth);
    default: return false; /* ext: Node never puts one in data, and JSON has nothing for it */
    }
}

static bool read_str(struct dec *d, struct sioa_bytes *s)
{
    struct mp_item it;
    if (!read_item(d, &it) || it.type != MP_STR)
        return false;
    *s = (struct sioa_bytes){(const char *)it.data, it.len};
    return true;
}

/* An array of strings, for sioa_next_str to walk later. */
static bool read_str_array(struct dec *d, struct sioa_iter *iter)
{
    struct mp_item it;
    struct sioa_bytes s;
    if (!read_item(d, &it) || it.type != MP_ARRAY)
        return false;
    *iter = (struct sioa_iter){d->p, d->end, (uint32_t)it.u};
    for (uint64_t i = 0; i < it.u; i++)
        if (!read_str(d, &s))
            return false;
    return true;
}

/* The Socket.IO packet type: 0..6, with BINARY_EVENT / BINARY_ACK folded into EVENT / ACK (Node writes Buffers as
 * bin whatever the type says). */
static bool read_type(struct dec *d)
{
    struct mp_item it;
    if (!read_item(d, &it) || (it.type != MP_UINT && it.type != MP_INT) || (it.type == MP_INT && it.i < 0) || it.u > 6)
        return false;
    d->b->type = (uint8_t)(it.u >= SIOA_BINARY_EVENT ? it.u - 3 : it.u);
    return true;
}

/* A map key: *index is its place in names, or -1 for an unknown key (the caller skips its value). A key that is not
 * a string is unknown, and skipped here with its body. false when malformed. */
static bool read_key(struct dec *d, const char *const *names, int n_names, int *index)
{
    struct mp_item key;
    *index = -1;
    if (!read_item(d, &key))
        return false;
    if (key.type != MP_STR)
        return skip_body(d, &key, 1);
    for (int i = 0; i < n_names; i++)
        if (strlen(names[i]) == key.len && !memcmp(names[i], key.data, key.len))
            *index = i;
    return true;
}

/* A map's header: its count into *n. */
static bool read_map(struct dec *d, uint64_t *n)
{
    struct mp_item map;
    if (!read_item(d, &map) || map.type != MP_MAP)
        return false;
    *n = map.u;
    return true;
}

/* The next key of a map whose known keys are names, each allowed once (seen holds their bits): *k as read_key. */
static bool next_key(struct dec *d, const char *const *names, int n_names, unsigned *seen, int *k)
{
    if (!read_key(d, names, n_names, k) || (*k >= 0 && *seen & 1u << *k))
        return false;
    *seen |= *k >= 0 ? 1u << *k : 0;
    return true;
}

/* The packet {type, data, nsp}: any key order, unknown keys skipped, type and data required, none twice. */
static bool decode_packet(struct dec *d)
{
    static const char *const names[] = {"type", "data", "nsp"};
    unsigned seen = 0;
    uint64_t n;
    if (!read_map(d, &n))
        return false;
    for (uint64_t i = 0; i < n; i++) {
        int k;
        if (!next_key(d, names, 3, &seen, &k))
            return false;
        bool ok = k == 0 ? read_type(d) : k == 1 ? data_json(d, 1) : k == 2 ? read_str(d, &d->b->nsp) : skip_value(d);
        if (!ok)
            return false;
    }
    return (seen & 3) == 3;
}

/* The options {rooms, except, flags}: all optional (Node reads a missing list as empty), none twice. */
static bool decode_opts(struct dec *d)
{
    static const char *const names[] = {"rooms", "except", "flags"};
    struct mp_item flags;
    unsigned seen = 0;
    uint64_t n;
    if (!read_map(d, &n))
        return false;
    for (uint64_t i = 0; i < n; i++) {
        int k;
        if (!next_key(d, names, 3, &seen, &k))
            return false;
        bool ok = k == 0   ? read_str_array(d, &d->b->rooms)
                  : k == 1 ? read_str_array(d, &d->b->except)
                  : k == 2 ? read_item(d, &flags) && flags.type == MP_MAP && skip_body(d, &flags, 1)
                           : skip_value(d);
        if (!ok)
            return false;
    }
    return true;
}

/* [uid, packet, opts, ...]: Node destructures the first three and ignores the rest. */
static bool decode_broadcast(struct dec *d)
{
    struct mp_item top;
    if (!read_item(d, &top) || top.type != MP_ARRAY || top.u < 3)
        return false;
    if (!read_str(d, &d->b->uid) || !decode_packet(d) || !decode_opts(d))
        return false;
    for (uint64_t i = 3; i < top.u; i++)
        if (!skip_value(d))
            return false;
    return true;
}

int sioa_decode(const uint8_t *msg, size_t len, struct sioa_broadcast *b, struct buf *json_out)
{
    static const uint8_t nothing[1];
    if (!msg) /* so that msg + len is defined; an empty message is malformed anyway */
        msg = nothing, len = 0;
    struct dec d = {msg, msg + len, {json_out, false}, b, false};
    size_t start = out_len(&d.o);
    b->uid = (struct sioa_bytes){"", 0};
    b->nsp = (struct sioa_bytes){"/", 1};
    b->type = 0;
    b->n_attachments = 0;
    b->rooms = b->except = (struct sioa_iter){d.end, d.end, 0};
    /* A client would take a literal placeholder object for one of the binaries: refuse the mix. */
    if (!decode_broadcast(&d) || d.p != d.end || d.o.failed || (d.placeholder_map && b->n_attachments)) {
        out_truncate(&d.o, start);
        return -1;
    }
    return 0;
}

bool sioa_next_str(struct sioa_iter *it, struct sioa_bytes *s)
{
    struct dec d = {.p = it->pos, .end = it->end};
    if (!it->left || !read_str(&d, s))
        return false;
    it->pos = d.p;
    it->left--;
    return true;
}

/* ---- Requests ---- */

/* {uid, requestId, type, rooms, opts, sid, close, packet, ...}: any order, unknown keys skipped (data: a
 * SERVER_SIDE_EMIT's arguments, which nothing here reads), none twice; a requestId that is not a string is left out. */
static bool decode_request(struct dec *d, struct sioa_request *r)
{
    static const char *const names[] = {"uid", "requestId", "type", "rooms", "opts", "sid", "close", "packet"};
    struct mp_item it;
    unsigned seen = 0;
    uint64_t n;
    if (!read_map(d, &n))
        return false;
    for (uint64_t i = 0; i < n; i++) {
        int k;
        if (!next_key(d, names, 8, &seen, &k))
            return false;
        bool ok;
        switch (k) {
        case 0: ok = read_str(d, &r->uid); break;
        case 1:
            ok = read_item(d, &it) &&
                 (it.type == MP_STR ? (r->request_id = (struct sioa_bytes){(const char *)it.data, it.len}, true)
                                    : skip_body(d, &it, 1));
            break;
        case 2: ok = read_item(d, &it) && it.type == MP_UINT && ((r->type = it.u), true); break;
        case 3: ok = read_str_array(d, &r->rooms); break;
        case 4: ok = decode_opts(d); break;
        case 5: ok = read_str(d, &r->sid); break;
        case 6: ok = read_item(d, &it) && it.type == MP_BOOL && ((r->close = it.u != 0), true); break;
        case 7: ok = decode_packet(d); break;
        default: ok = skip_value(d);
        }
        if (!ok)
            return false;
    }
    return (seen & 1u << 2) && (r->type != SIOA_REQ_BROADCAST || seen & 1u << 7);
}

int sioa_decode_request(const uint8_t *msg, size_t len, struct sioa_request *r, struct buf *scratch,
                        struct buf *json_out)
{
    static const uint8_t nothing[1];
    if (!msg)
        msg = nothing, len = 0;
    if (len && msg[0] == '{') { /* Node's adapter tells JSON from msgpack the same way (0x7b is a fixmap of 11) */
        scratch->rpos = scratch->wpos = 0;
        struct enc e = {{scratch, false}, (const char *)msg + len, NULL, 0};
        const char *p = enc_value(&e, (const char *)msg, 1);
        if (!p || jscan_ws(p, e.end) != e.end || e.o.failed)
            return -1;
        msg = (const uint8_t *)buf_head(scratch);
        len = buf_len(scratch);
    }
    *r = (struct sioa_request){.type = UINT64_MAX};
    struct sioa_broadcast *b = &r->packet;
    struct dec d = {msg, msg + len, {json_out, false}, b, false};
    size_t start = out_len(&d.o);
    b->nsp = (struct sioa_bytes){"/", 1};
    b->rooms = b->except = r->rooms = (struct sioa_iter){d.end, d.end, 0};
    if (!decode_request(&d, r) || d.p != d.end || d.o.failed || (d.placeholder_map && b->n_attachments)) {
        out_truncate(&d.o, start);
        return -1;
    }
    return 0;
}

void sioa_put_map(struct sioa_writer *w, size_t n)
{
    put_head(w, MP_MAP, n);
}

void sioa_put_array(struct sioa_writer *w, size_t n)
{
    put_head(w, MP_ARRAY, n);
}

void sioa_put_str(struct sioa_writer *w, const char *s, size_t len)
{
    put_str(w, s, len);
}

void sioa_put_uint(struct sioa_writer *w, uint64_t v)
{
    put_uint(w, v);
}

void sioa_put_bool(struct sioa_writer *w, bool v)
{
    put_byte(w, v ? 0xc3 : 0xc2);
}

size_t sioa_begin_array(struct sioa_writer *w)
{
    return begin_container(w);
}

void sioa_end_array(struct sioa_writer *w, size_t at, size_t count)
{
    end_container(w, at, MP_ARRAY, count);
}

void sioa_put_json(struct sioa_writer *w, const char *json, size_t len, const struct sioa_bytes *attachments,
                   size_t n_attachments)
{
    if (!json)
        json = "", len = 0;
    struct enc e = {*w, json + len, attachments, n_attachments};
    const char *p = enc_value(&e, json, 1);
    if (!p || jscan_ws(p, e.end) != e.end)
        e.o.failed = true;
    *w = e.o;
}

bool sioa_put_json_first(struct sioa_writer *w, const char *json, size_t len, const struct sioa_bytes *attachments,
                         size_t n_attachments)
{
    if (!json)
        json = "", len = 0;
    struct enc e = {*w, json + len, attachments, n_attachments};
    const char *p = jscan_ws(json, e.end);
    if (p >= e.end || *p != '[') {
        w->failed = true;
        return false;
    }
    p = jscan_ws(p + 1, e.end);
    if (p < e.end && *p == ']')
        return false;
    if (!enc_value(&e, p, 2))
        e.o.failed = true;
    *w = e.o;
    return true;
}

/* ---- Channels ---- */

int sioa_channel_room(const char *channel, size_t len, const char *prefix, size_t prefix_len, struct sioa_bytes *nsp,
                      struct sioa_bytes *room)
{
    if (len < prefix_len + 3 || memcmp(channel, prefix, prefix_len) != 0 || channel[prefix_len] != '#' ||
        channel[len - 1] != '#')
        return -1;
    const char *name = channel + prefix_len + 1, *last = channel + len - 1;
    const char *hash = memchr(name, '#', (size_t)(last - name) + 1);
    if (hash == name)
        return -1;
    *nsp = (struct sioa_bytes){name, (size_t)(hash - name)};
    /* Node's adapter takes an empty room (PREFIX#NSP##) as the whole namespace too. */
    *room = hash == last ? (struct sioa_bytes){last, 0} : (struct sioa_bytes){hash + 1, (size_t)(last - hash - 1)};
    return room->len ? 1 : 0;
}

int sioa_channel(struct buf *out, const char *prefix, size_t prefix_len, const char *nsp, size_t nsp_len,
                 const char *room, size_t room_len)
{
    struct sioa_writer o = {out, false};
    size_t start = out_len(&o);
    put(&o, prefix, prefix_len);
    put(&o, "#", 1);
    put(&o, nsp, nsp_len);
    put(&o, "#", 1);
    if (room) {
        put(&o, room, room_len);
        put(&o, "#", 1);
    }
    if (o.failed)
        out_truncate(&o, start);
    return o.failed ? -1 : 0;
}
