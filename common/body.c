/* Message-body framing; see body.h.
 *
 * The chunked parser is a byte-at-a-time state machine except inside chunk data, which is taken in one step (the
 * bulk of a body is data, and data bytes are not looked at). Its grammar is deliberately narrower than RFC 9112
 * allows in three places, each one a place where a lenient peer and a strict one could split a stream differently:
 * whitespace after the size is accepted only as BWS before a ';' (never alone before the CR), a chunk extension
 * is any run of field-value bytes (HTAB, SP, VCHAR, obs-text) rather than parsed names and quoted values, and a
 * trailer field must be a token, ':', then field-value bytes (no obs-fold). The size overflows past 16 significant
 * hex digits, tested before each shift so a uint64_t never wraps. An error is sticky: once the framing is lost,
 * no later byte can restore it. */
#include "common/body.h"

#include <limits.h>
#include <string.h>

enum state {
    S_SIZE_START, /* first hex digit of a size line */
    S_SIZE,       /* more hex digits */
    S_BWS,        /* whitespace after the digits: only a ';' may follow */
    S_EXT,        /* chunk extensions, up to the CR */
    S_SIZE_LF,    /* the LF ending a size line */
    S_DATA,       /* data bytes of the chunk, remaining of them */
    S_DATA_CR,    /* the CRLF after a chunk's data */
    S_DATA_LF,
    S_TR_START, /* first byte of a trailer field, or the CR of the final empty line */
    S_TR_NAME,  /* the field name, up to ':' */
    S_TR_VALUE, /* the field value, up to the CR */
    S_TR_LF,    /* the LF ending a trailer field */
    S_END_LF,   /* the LF of the final empty line */
    S_ERROR,
};

void body_init(struct body *b, enum body_kind kind, uint64_t length)
{
    *b = (struct body){.kind = kind, .state = S_SIZE_START, .budget = UINT64_MAX};
    if (kind == BODY_LENGTH)
        b->remaining = length;
    b->done = kind == BODY_NONE || (kind == BODY_LENGTH && length == 0);
}

/* ---- byte classes ---- */

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20; /* ASCII letters to lowercase; no other byte lands in 'a'..'f' */
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* field-value and extension bytes: HTAB, SP, VCHAR, obs-text; no NUL, CR, LF, other controls or DEL. */
static bool is_text(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* RFC 9110 tchar. memchr, not strchr: strchr would find NUL as the terminator. */
static bool is_tchar(unsigned char c)
{
    static const char sym[] = "!#$%&'*+-.^_`|~";
    if ((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
        return true;
    return memchr(sym, c, sizeof sym - 1) != NULL;
}

/* ---- the chunk-size line ---- */

/* One more hex digit d of the size, or S_ERROR when a 17th significant digit would overflow it. */
static enum state size_digit(struct body *b, int d)
{
    if (b->remaining >> 60)
        return S_ERROR;
    b->remaining = b->remaining << 4 | (uint64_t)d;
    return S_SIZE;
}

static enum state size_byte(struct body *b, enum state s, unsigned char c)
{
    int d = hex_value(c);
    switch (s) {
    case S_SIZE_START: return d < 0 ? S_ERROR : size_digit(b, d);
    case S_SIZE:
        if (d >= 0)
            return size_digit(b, d);
        if (c == ';')
            return S_EXT;
        if (c == '\r')
            return S_SIZE_LF;
        return is_ws(c) ? S_BWS : S_ERROR;
    case S_BWS:
        if (c == ';')
            return S_EXT;
        return is_ws(c) ? S_BWS : S_ERROR;
    default: /* S_EXT */
        if (c == '\r')
            return S_SIZE_LF;
        return is_text(c) ? S_EXT : S_ERROR;
    }
}

/* The LF after a size line: data follows (within the budget), or the trailer section after the last chunk. */
static enum state size_end(struct body *b, unsigned char c)
{
    if (c != '\n' || b->remaining > b->budget)
        return S_ERROR;
    if (b->budget != UINT64_MAX) /* no limit: the sizes of a long-lived stream may add up past any count */
        b->budget -= b->remaining;
    b->last_chunk = b->remaining == 0;
    return b->last_chunk ? S_TR_START : S_DATA;
}

/* ---- the trailer section ---- */

static enum state trailer_byte(struct body *b, enum state s, unsigned char c)
{
    switch (s) {
    case S_TR_START:
        if (c == '\r')
            return S_END_LF;
        return is_tchar(c) ? S_TR_NAME : S_ERROR;
    case S_TR_NAME:
        if (c == ':')
            return S_TR_VALUE;
        return is_tchar(c) ? S_TR_NAME : S_ERROR;
    case S_TR_VALUE:
        if (c == '\r')
            return S_TR_LF;
        return is_text(c) ? S_TR_VALUE : S_ERROR;
    case S_TR_LF: return c == '\n' ? S_TR_START : S_ERROR;
    default: /* S_END_LF */
        if (c != '\n')
            return S_ERROR;
        b->done = true;
        return S_END_LF;
    }
}

/* ---- the chunked machine ---- */

/* Whether byte c, read in state s, is part of a size line or trailer field as BODY_MAX_LINE counts them. */
static bool counts_in_line(enum state s, unsigned char c)
{
    if (c == '\r')
        return false;
    return s <= S_EXT || s == S_TR_START || s == S_TR_NAME || s == S_TR_VALUE;
}

/* One byte outside chunk data: the next state. */
static enum state step(struct body *b, enum state s, unsigned char c)
{
    if (counts_in_line(s, c) && ++b->line_len > BODY_MAX_LINE)
        return S_ERROR;
    switch (s) {
    case S_SIZE_START:
    case S_SIZE:
    case S_BWS:
    case S_EXT: return size_byte(b, s, c);
    case S_SIZE_LF: return size_end(b, c);
    case S_DATA_CR: return c == '\r' ? S_DATA_LF : S_ERROR;
    case S_DATA_LF: return c == '\n' ? S_SIZE_START : S_ERROR;
    case S_TR_START:
    case S_TR_NAME:
    case S_TR_VALUE:
    case S_TR_LF:
    case S_END_LF: return trailer_byte(b, s, c);
    default: return S_ERROR;
    }
}

/* Of the next len bytes, all chunk data: how many the current chunk takes. */
static size_t take_data(struct body *b, size_t len)
{
    size_t n = b->remaining < len ? (size_t)b->remaining : len;
    b->remaining -= n;
    if (b->remaining == 0)
        b->state = S_DATA_CR;
    return n;
}

/* The chunked framing over p[0..len); with dst, the data bytes are copied down to dst + *wr (dst may be p). */
static ssize_t feed_chunked(struct body *b, const unsigned char *p, size_t len, char *dst, size_t *wr)
{
    size_t i = 0;
    while (i < len && !b->done) {
        enum state s = (enum state)b->state;
        if (s == S_DATA) {
            size_t n = take_data(b, len - i);
            if (dst && n) {
                memmove(dst + *wr, p + i, n);
                *wr += n;
            }
            i += n;
            continue;
        }
        s = step(b, s, p[i++]);
        if (s == S_SIZE_START || s == S_TR_START)
            b->line_len = 0; /* a new line begins */
        b->state = (uint32_t)s;
        if (s == S_ERROR)
            return -1;
    }
    return (ssize_t)i;
}

/* body_feed, and with dst body_decode: *wr counts the data bytes put at dst. */
static ssize_t feed(struct body *b, const char *data, size_t len, char *dst, size_t *wr)
{
    if (b->kind == BODY_CHUNKED && b->state == S_ERROR)
        return -1;
    if (b->done)
        return 0;
    if (len > SSIZE_MAX)
        len = SSIZE_MAX; /* the count must fit the return type; the caller feeds the rest next */
    switch (b->kind) {
    case BODY_LENGTH: {
        size_t n = b->remaining < len ? (size_t)b->remaining : len;
        b->remaining -= n;
        b->done = b->remaining == 0;
        *wr = n;
        return (ssize_t)n;
    }
    case BODY_CHUNKED: return feed_chunked(b, (const unsigned char *)data, len, dst, wr);
    case BODY_UNTIL_CLOSE: *wr = len; return (ssize_t)len;
    default: return -1;
    }
}

ssize_t body_feed(struct body *b, const char *data, size_t len)
{
    size_t unused = 0;
    return feed(b, data, len, NULL, &unused);
}

ssize_t body_decode(struct body *b, char *data, size_t len, size_t *data_len)
{
    *data_len = 0;
    return feed(b, data, len, data, data_len);
}

void body_limit(struct body *b, uint64_t max)
{
    b->budget = max;
}
