/* Body framing (common/body.c): Content-Length (exact, split, bytes after it left alone), no body, until-close, and
 * strict chunked framing (sizes, extensions, trailers, every split of a body, pipelined bytes after it, each
 * rejection, -1 sticky), plus a property test over random chunked bodies. Every piece is fed from just before a
 * PROT_NONE page (guard.h), so a read past len crashes instead of passing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/body.h"
#include "tests/unit/guard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LIT(s)   s, sizeof(s) - 1 /* string literal with its length, so embedded NULs count */
#define PIPELINE "GET / HTTP/1.1\r\n"

/* ---- feeding ---- */

/* Feed a guarded copy of s[0..n); the answer must be -1 or within [0, n], and 0 once done. */
static ssize_t feed(struct body *b, const char *s, size_t n)
{
    bool was_done = body_done(b);
    ssize_t r = body_feed(b, guarded(s, n), n);
    assert_true(r >= -1 && r <= (ssize_t)n);
    if (was_done)
        assert_int_equal(r, 0);
    return r;
}

/* Feed s[0..n) in pieces of the given sizes (the last piece takes the rest); total taken, or -1. */
static ssize_t feed_pieces(struct body *b, const char *s, size_t n, const size_t *sizes, size_t npieces)
{
    size_t at = 0, total = 0;
    for (size_t i = 0; i < npieces; i++) {
        size_t piece = i + 1 == npieces ? n - at : sizes[i];
        ssize_t r = feed(b, s + at, piece);
        if (r < 0)
            return -1;
        if (total != at) /* a piece not taken whole: the message ended in it, nothing later may be taken */
            assert_int_equal(r, 0);
        total += (size_t)r;
        at += piece;
    }
    return (ssize_t)total;
}

static ssize_t chunked_once(const char *s, size_t n, struct body *b)
{
    body_init(b, BODY_CHUNKED, 0);
    return feed(b, s, n);
}

static ssize_t chunked_bytewise(const char *s, size_t n, struct body *b)
{
    body_init(b, BODY_CHUNKED, 0);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        ssize_t r = feed(b, s + i, 1);
        if (r < 0)
            return -1;
        total += (size_t)r;
    }
    return (ssize_t)total;
}

/* A complete chunked body of n bytes: taken whole and done, fed at once, byte by byte and with PIPELINE after. */
static void accepts(const char *s, size_t n)
{
    struct body b;
    assert_int_equal(chunked_once(s, n, &b), n);
    assert_true(body_done(&b));
    assert_int_equal(feed(&b, LIT(PIPELINE)), 0);
    assert_int_equal(chunked_bytewise(s, n, &b), n);
    assert_true(body_done(&b));
    char *with = malloc(n + sizeof PIPELINE);
    assert_non_null(with);
    memcpy(with, s, n);
    memcpy(with + n, PIPELINE, sizeof PIPELINE);
    assert_int_equal(chunked_once(with, n + sizeof PIPELINE - 1, &b), n);
    assert_true(body_done(&b));
    free(with);
}

#define ACCEPTS(s) accepts(LIT(s))

/* Malformed: -1 fed at once and byte by byte, and -1 again on any later feed. */
static void rejects(const char *s, size_t n)
{
    struct body b;
    assert_int_equal(chunked_once(s, n, &b), -1);
    assert_false(body_done(&b));
    assert_int_equal(feed(&b, LIT("0\r\n\r\n")), -1);
    assert_int_equal(feed(&b, "", 0), -1);
    assert_int_equal(chunked_bytewise(s, n, &b), -1);
    assert_int_equal(feed(&b, LIT("0\r\n\r\n")), -1);
}

#define REJECTS(s) rejects(LIT(s))

/* ---- Content-Length, none, until close ---- */

static void test_length(void **state)
{
    (void)state;
    struct body b;
    body_init(&b, BODY_LENGTH, 5);
    assert_false(body_done(&b));
    assert_int_equal(feed(&b, LIT("hello")), 5);
    assert_true(body_done(&b));
    assert_int_equal(feed(&b, LIT("more")), 0);

    body_init(&b, BODY_LENGTH, 10);
    assert_int_equal(feed(&b, LIT("hello")), 5);
    assert_false(body_done(&b));
    assert_int_equal(b.remaining, 5);
    assert_int_equal(feed(&b, "", 0), 0);
    assert_int_equal(feed(&b, LIT(" worl")), 5);
    assert_true(body_done(&b));

    body_init(&b, BODY_LENGTH, 3);
    assert_int_equal(feed(&b, LIT("abc" PIPELINE)), 3);
    assert_true(body_done(&b));
    assert_int_equal(feed(&b, LIT(PIPELINE)), 0);

    body_init(&b, BODY_LENGTH, UINT64_MAX);
    assert_int_equal(feed(&b, LIT("abc")), 3);
    assert_int_equal(b.remaining, UINT64_MAX - 3);
}

static void test_none_and_zero_length_done_at_once(void **state)
{
    (void)state;
    struct body b;
    body_init(&b, BODY_NONE, 123);
    assert_true(body_done(&b));
    assert_int_equal(feed(&b, LIT(PIPELINE)), 0);
    body_init(&b, BODY_LENGTH, 0);
    assert_true(body_done(&b));
    assert_int_equal(feed(&b, LIT(PIPELINE)), 0);
}

static void test_until_close(void **state)
{
    (void)state;
    struct body b;
    body_init(&b, BODY_UNTIL_CLOSE, 5);
    assert_false(body_done(&b));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(feed(&b, LIT("0\r\n\r\nHTTP/1.1 200 OK\r\n")), 22);
        assert_false(body_done(&b));
    }
    assert_int_equal(feed(&b, "", 0), 0);
    assert_false(body_done(&b));
}

/* ---- chunked: accepted ---- */

static void test_chunked_two_chunks(void **state)
{
    (void)state;
    ACCEPTS("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    ACCEPTS("0\r\n\r\n");
    ACCEPTS("3\r\n\r\n\r\r\n0\r\n\r\n"); /* data bytes are not looked at */
    struct body b;
    body_init(&b, BODY_CHUNKED, 0);
    assert_int_equal(feed(&b, LIT("a\r\nabc")), 6);
    assert_int_equal(b.remaining, 7);
    assert_int_equal(feed(&b, LIT("defghij\r\n")), 9);
    assert_int_equal(b.remaining, 0);
    assert_false(body_done(&b));
    assert_int_equal(feed(&b, LIT("0\r\n\r\n" PIPELINE)), 5);
    assert_true(body_done(&b));
}

static void test_chunked_trailers(void **state)
{
    (void)state;
    ACCEPTS("5\r\nhello\r\n0\r\nExpires: never\r\nX-Sum:\t1 \r\n\r\n");
    ACCEPTS("0\r\nA:\r\n\r\n");
    ACCEPTS("0\r\n!#$%&'*+-.^_`|~09az:\x80\xff \"q\"\r\n\r\n");
}

static void test_chunked_extensions(void **state)
{
    (void)state;
    ACCEPTS("5;name=value\r\nhello\r\n3 ; a=\"q x\";b\r\nabc\r\n0;last\r\n\r\n");
    ACCEPTS("5\t;x\r\nhello\r\n0;\x80\xfe\t=\r\n\r\n");
    ACCEPTS("5;\r\nhello\r\n0\r\n\r\n");
}

static void test_chunked_hex_case_and_leading_zeros(void **state)
{
    (void)state;
    ACCEPTS("a\r\n0123456789\r\nA\r\n0123456789\r\n0\r\n\r\n");
    ACCEPTS("0005\r\nhello\r\n000\r\n\r\n");
    struct body b;
    static const char *const sizes[] = {"fF\r\n", "Ff\r\n", "ff\r\n", "FF\r\n"};
    for (size_t i = 0; i < 4; i++) {
        body_init(&b, BODY_CHUNKED, 0);
        assert_int_equal(feed(&b, sizes[i], 4), 4);
        assert_int_equal(b.remaining, 255);
    }
    body_init(&b, BODY_CHUNKED, 0); /* 16 significant digits fit */
    assert_int_equal(feed(&b, LIT("0000FFFFffffFFFFffff\r\n")), 22);
    assert_int_equal(b.remaining, UINT64_MAX);
    body_init(&b, BODY_CHUNKED, 0);
    assert_int_equal(feed(&b, LIT("1000000000000000\r\n")), 18);
    assert_int_equal(b.remaining, 1ull << 60);
}

/* The same body fed at once, byte by byte and in every split in two: the same count, done each time. */
static void test_chunked_every_split(void **state)
{
    (void)state;
    static const char body[] = "5;a=b\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0 ;z\r\nT: 1\r\nU: 2\r\n\r\n";
    static const char stream[] = "5;a=b\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0 ;z\r\nT: 1\r\nU: 2\r\n\r\n"
                                 "GET / HTTP/1.1\r\n";
    size_t n = sizeof body - 1, total = sizeof stream - 1;
    accepts(body, n);
    for (size_t cut = 0; cut <= total; cut++) {
        struct body b;
        body_init(&b, BODY_CHUNKED, 0);
        assert_int_equal(feed_pieces(&b, stream, total, &cut, 2), n);
        assert_true(body_done(&b));
    }
}

/* ---- chunked: rejected ---- */

static void test_chunked_rejects_bad_line_ends(void **state)
{
    (void)state;
    REJECTS("5\nhello\r\n0\r\n\r\n");     /* bare LF ending the size line */
    REJECTS("5;ext\nhello\r\n0\r\n\r\n"); /* ... after an extension */
    REJECTS("5\r\nhello\n0\r\n\r\n");     /* bare LF after data */
    REJECTS("5\rhello\r\n0\r\n\r\n");     /* CR not followed by LF */
    REJECTS("5\r\nhello\r0\r\n\r\n");
    REJECTS("5\r\nhello\rX0\r\n\r\n"); /* ... after data */
    REJECTS("5\r\nhelloX\r\n");        /* no CRLF after data */
    REJECTS("5\r\nhelloX\n0\r\n\r\n"); /* ... even when LF follows */
    REJECTS("5\r\nhelloXY0\r\n\r\n");
    REJECTS("5\rX\r\nhello\r\n0\r\n\r\n");    /* a byte between a size line's CR and LF */
    REJECTS("5\r\nhello\r\n\r\n0\r\n\r\n");   /* an empty line where a size belongs */
    REJECTS("5\r\n\r\nhello\r\n0\r\n\r\n");   /* ... data one line too late */
    REJECTS("\r\n");                          /* empty size line */
    REJECTS("0\r\n\n");                       /* bare LF ending the body */
    REJECTS("0\r\n\r\r\n");                   /* CR CR */
    REJECTS("0\r\nA: b\nC: d\r\n\r\n");       /* bare LF in the trailers */
    REJECTS("0\r\nA: b\r\r\n\r\n");           /* CR inside a trailer */
    REJECTS("0\r\nA: b\rXC: d\r\n\r\n");      /* ... followed by anything but LF */
    REJECTS("0\r\n\rX");                      /* ... ending the trailers */
    REJECTS("0\r\nA: b\r\n\n");               /* bare LF ending the trailers */
    REJECTS("5\r\nhello\r\n0\r\n\r\x00\r\n"); /* anything but LF after the last CR */
}

static void test_chunked_rejects_bad_sizes(void **state)
{
    (void)state;
    REJECTS("g\r\n");
    REJECTS("0x5\r\nhello\r\n0\r\n\r\n");
    REJECTS("+5\r\nhello\r\n0\r\n\r\n");
    REJECTS("-5\r\n");
    REJECTS(" 5\r\nhello\r\n0\r\n\r\n");
    REJECTS("\t5\r\n");
    REJECTS("5 \r\nhello\r\n0\r\n\r\n"); /* whitespace only before a ';' */
    REJECTS("5 x\r\n");
    REJECTS("5g\r\n");
    REJECTS("5,6\r\n");
    REJECTS("5\x00\r\n");
    REJECTS("10000000000000000\r\n"); /* 17 significant digits */
    REJECTS("0010000000000000000\r\n");
    REJECTS("FFFFFFFFFFFFFFFFF\r\n");
    REJECTS("5;a\x01\r\n"); /* control bytes in extensions */
    REJECTS("5;\x00\r\n");
    REJECTS("5;\x7f\r\n");
}

static void test_chunked_rejects_bad_trailers(void **state)
{
    (void)state;
    REJECTS("0\r\n: b\r\n\r\n");        /* empty name */
    REJECTS("0\r\nA b: c\r\n\r\n");     /* space in the name */
    REJECTS("0\r\nA : b\r\n\r\n");      /* space before the colon */
    REJECTS("0\r\nA\r\n\r\n");          /* no colon */
    REJECTS("0\r\nA: b\r\n c\r\n\r\n"); /* obs-fold */
    REJECTS("0\r\nA\x00: b\r\n\r\n");   /* NUL in a name */
    REJECTS("0\r\nA: b\x00\r\n\r\n");   /* NUL in a value */
    REJECTS("0\r\nA: \x1b[m\r\n\r\n");  /* control byte in a value */
    REJECTS("0\r\n(A): b\r\n\r\n");     /* separator in the name */
}

/* Every byte in each place of the grammar: accepted exactly where RFC 9110/9112 allow it (obs-text included). */
static bool hex(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool tchar(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool text(int c)
{
    return c == '\t' || (c >= ' ' && c != 0x7f);
}

/* tmpl with byte c at offset at: a complete body if ok, else rejected. */
static void place(const char *tmpl, size_t at, int c, bool ok)
{
    char s[32];
    size_t n = strlen(tmpl);
    memcpy(s, tmpl, n);
    s[at] = (char)c;
    (ok ? accepts : rejects)(s, n);
}

static void test_every_byte(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        char line[5] = {(char)c, '\r', '\n'};
        struct body b;
        assert_int_equal(chunked_once(line, 3, &b), hex(c) ? 3 : -1);
        memcpy(line, "5X;\r\n", 5); /* after a digit: more digits, BWS or ';' */
        line[1] = (char)c;
        assert_int_equal(chunked_once(line, 5, &b), hex(c) || c == ' ' || c == '\t' || c == ';' ? 5 : -1);
        place("5;X\r\nhello\r\n0\r\n\r\n", 2, c, text(c));
        place("0\r\nAX: v\r\n\r\n", 4, c, tchar(c) || c == ':');
        place("0\r\nA:X\r\n\r\n", 5, c, text(c));
        place("0\r\nX: v\r\n\r\n", 3, c, tchar(c));
    }
}

/* Size lines and trailer fields up to BODY_MAX_LINE bytes (CRLF excluded) pass, one byte more fails. */
static void test_line_limits(void **state)
{
    (void)state;
    char *s = malloc(BODY_MAX_LINE + 64);
    assert_non_null(s);
    for (size_t extra = 0; extra <= 1; extra++) {
        size_t line = BODY_MAX_LINE + extra, n;
        memset(s, '0', line); /* leading zeros count */
        memcpy(s + line, "\r\n\r\n", 4);
        (extra ? rejects : accepts)(s, line + 4);
        memcpy(s, "5;", 2);
        memset(s + 2, 'e', line - 2);
        n = line + (size_t)sprintf(s + line, "\r\nhello\r\n0\r\n\r\n");
        (extra ? rejects : accepts)(s, n);
        memcpy(s, "0\r\nT:", 5);
        memset(s + 5, 'v', line - 2);
        memcpy(s + 3 + line, "\r\n\r\n", 4);
        (extra ? rejects : accepts)(s, line + 7);
    }
    free(s);
}

/* ---- property: random bodies ---- */

static uint64_t rng = 0x2545f4914f6cdd1du;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static size_t rand_below(size_t n)
{
    return (size_t)(next_rand() % n);
}

/* Random bytes of a field value or extension: SP, HTAB, VCHAR, obs-text. */
static size_t put_text(char *out, size_t max)
{
    static const char pool[] = " \t=;\"abcXYZ019!~\x80\xff";
    size_t n = rand_below(max + 1);
    for (size_t i = 0; i < n; i++)
        out[i] = pool[rand_below(sizeof pool - 1)];
    return n;
}

static size_t put_token(char *out, size_t max)
{
    static const char pool[] = "aZ09-_.!#$%&'*+^`|~";
    size_t n = 1 + rand_below(max);
    for (size_t i = 0; i < n; i++)
        out[i] = pool[rand_below(sizeof pool - 1)];
    return n;
}

/* A size line: the size in hex of random case with 0-3 leading zeros, maybe BWS and extensions, CRLF. */
static size_t put_size_line(char *out, size_t size)
{
    size_t n = (size_t)sprintf(out, "%.*s", (int)rand_below(4), "000");
    n += (size_t)sprintf(out + n, rand_below(2) ? "%zx" : "%zX", size);
    if (rand_below(2)) {
        n += (size_t)sprintf(out + n, "%.*s;", (int)rand_below(3), " \t");
        n += put_text(out + n, 40);
    }
    memcpy(out + n, "\r\n", 2);
    return n + 2;
}

static char want_data[32768]; /* the data of the latest rand_body, want_len bytes */
static size_t want_len;

/* A random chunked body at out (room enough: up to 6 chunks of up to 3000 bytes); its length. */
static size_t rand_body(char *out)
{
    size_t n = 0, chunks = rand_below(7);
    want_len = 0;
    for (size_t c = 0; c < chunks; c++) {
        size_t size = 1 + (rand_below(4) ? rand_below(40) : rand_below(3000));
        n += put_size_line(out + n, size);
        for (size_t i = 0; i < size; i++)
            out[n++] = want_data[want_len++] = (char)next_rand(); /* data may hold CR, LF, NUL, anything */
        memcpy(out + n, "\r\n", 2);
        n += 2;
    }
    n += put_size_line(out + n, 0);
    for (size_t t = rand_below(4); t > 0; t--) {
        n += put_token(out + n, 20);
        out[n++] = ':';
        n += put_text(out + n, 60);
        memcpy(out + n, "\r\n", 2);
        n += 2;
    }
    memcpy(out + n, "\r\n", 2);
    return n + 2;
}

/* ---- decoding in place ---- */

/* Decode s[0..total) (a body of n bytes, then other bytes) in the given pieces, each in place in a guarded copy:
 * the data put at each piece's front, concatenated, must be want_data, and nothing past the body is taken. */
static void decode_pieces(const char *s, size_t total, size_t n, const size_t *sizes, size_t npieces)
{
    static char got[32768];
    size_t at = 0, got_len = 0;
    struct body b;
    body_init(&b, BODY_CHUNKED, 0);
    for (size_t i = 0; i < npieces; i++) {
        size_t piece = i + 1 == npieces ? total - at : sizes[i], dlen = 99;
        char *g = guarded(s + at, piece);
        ssize_t r = body_decode(&b, g, piece, &dlen);
        assert_true(r >= 0 && (size_t)r <= piece && dlen <= (size_t)r);
        memcpy(got + got_len, g, dlen);
        got_len += dlen;
        if (at + piece > n) /* the bytes after the body are left where they were */
            assert_memory_equal(g + (n > at ? n - at : 0), s + (n > at ? n : at), at + piece - (n > at ? n : at));
        at += piece;
    }
    assert_true(body_done(&b));
    assert_int_equal(got_len, want_len);
    assert_memory_equal(got, want_data, want_len);
}

/* body_decode on a guarded copy of s[0..n). */
static ssize_t decode(struct body *b, const char *s, size_t n, size_t *dlen)
{
    return body_decode(b, guarded(s, n), n, dlen);
}

static void test_decode(void **state)
{
    (void)state;
    static const char in[] = "4\r\nwxyz\r\n3;a=b\r\n123\r\n0\r\nT: v\r\n\r\n" PIPELINE;
    size_t total = sizeof in - 1, n = total - (sizeof PIPELINE - 1), sizes[1] = {0};
    memcpy(want_data, "wxyz123", want_len = 7);
    decode_pieces(in, total, n, sizes, 1);
    for (sizes[0] = 0; sizes[0] <= total; sizes[0]++)
        decode_pieces(in, total, n, sizes, 2);
    struct body b;
    size_t dlen;
    body_init(&b, BODY_LENGTH, 5);
    assert_int_equal(decode(&b, LIT("hello, world"), &dlen), 5);
    assert_int_equal(dlen, 5);
    assert_true(body_done(&b));
    body_init(&b, BODY_UNTIL_CLOSE, 0);
    assert_int_equal(decode(&b, LIT("abc"), &dlen), 3);
    assert_int_equal(dlen, 3);
    body_init(&b, BODY_CHUNKED, 0);
    assert_int_equal(decode(&b, LIT("2\r\nok\r\nx"), &dlen), -1);
}

/* A limit on the data: a chunk that would pass it is malformed once its size line ends, before its data. */
static void test_limit(void **state)
{
    (void)state;
    struct body b;
    body_init(&b, BODY_CHUNKED, 0);
    body_limit(&b, 5);
    assert_int_equal(feed(&b, LIT("5\r\nhello\r\n0\r\n\r\n")), 15);
    assert_true(body_done(&b));
    body_init(&b, BODY_CHUNKED, 0);
    body_limit(&b, 4);
    assert_int_equal(feed(&b, LIT("5\r")), 2);
    assert_int_equal(feed(&b, LIT("\n")), -1);
    body_init(&b, BODY_CHUNKED, 0);
    body_limit(&b, 5);
    assert_int_equal(feed(&b, LIT("3\r\nabc\r\n3\r\n")), -1); /* in all */
    body_init(&b, BODY_CHUNKED, 0);
    body_limit(&b, 0);
    assert_int_equal(feed(&b, LIT("0\r\n\r\n")), 5); /* an empty body fits any limit */
    /* no limit: the largest size still parses, after other chunks too (nothing is counted down) */
    body_init(&b, BODY_CHUNKED, 0);
    assert_int_equal(feed(&b, LIT("1\r\nx\r\nffffffffffffffff\r\n")), 24);
}

/* Random piece sizes adding up to at most total, zero-size pieces included; how many pieces. */
static size_t rand_pieces(size_t *sizes, size_t max, size_t total)
{
    size_t k = 1 + rand_below(max), left = total;
    for (size_t i = 0; i + 1 < k; i++) {
        sizes[i] = rand_below(4) ? rand_below(left + 1) : rand_below(3);
        sizes[i] = sizes[i] > left ? left : sizes[i];
        left -= sizes[i];
    }
    return k;
}

static void test_random_bodies(void **state)
{
    (void)state;
    static char buf[32768];
    size_t sizes[16];
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = rand_body(buf);
        memcpy(buf + n, PIPELINE, sizeof PIPELINE - 1);
        size_t total = n + sizeof PIPELINE - 1;
        struct body b;
        body_init(&b, BODY_CHUNKED, 0);
        ssize_t r = feed_pieces(&b, buf, total, sizes, rand_pieces(sizes, 16, total));
        if (r != (ssize_t)n || !body_done(&b))
            fail_msg("iteration %d: %zd of a %zu-byte body, done %d", iter, r, n, body_done(&b));
        assert_int_equal(feed(&b, LIT(PIPELINE)), 0);
        assert_int_equal(chunked_once(buf, total, &b), n);
        assert_true(body_done(&b));
        if (iter % 50 == 0)
            assert_int_equal(chunked_bytewise(buf, total, &b), n);
        decode_pieces(buf, total, n, sizes, rand_pieces(sizes, 16, total));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_length),
        cmocka_unit_test(test_none_and_zero_length_done_at_once),
        cmocka_unit_test(test_until_close),
        cmocka_unit_test(test_chunked_two_chunks),
        cmocka_unit_test(test_chunked_trailers),
        cmocka_unit_test(test_chunked_extensions),
        cmocka_unit_test(test_chunked_hex_case_and_leading_zeros),
        cmocka_unit_test(test_chunked_every_split),
        cmocka_unit_test(test_chunked_rejects_bad_line_ends),
        cmocka_unit_test(test_chunked_rejects_bad_sizes),
        cmocka_unit_test(test_chunked_rejects_bad_trailers),
        cmocka_unit_test(test_every_byte),
        cmocka_unit_test(test_line_limits),
        cmocka_unit_test(test_random_bodies),
        cmocka_unit_test(test_decode),
        cmocka_unit_test(test_limit),
    };
    return cmocka_run_group_tests_name("body", tests, NULL, unmap_guard);
}
