/* ws: RFC 6455 5.7 examples both ways, streaming in arbitrary splits, every 1002/1007/1009 rejection, close
 * payloads, UTF-8 edge cases, handshake keys. Single-buffer inputs sit just before a PROT_NONE page (as in
 * test_http.c), so a read past len crashes instead of passing silently. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/ws.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define LIT(s) (const uint8_t *)(s), sizeof(s) - 1 /* literal with its length, embedded NULs included */

/* RFC 6455 5.7: the mask key of the masked examples, and "Hello" masked with it. */
static const uint8_t rfc_mask[4] = {0x37, 0xfa, 0x21, 0x3d};
static const uint8_t masked_hello[] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};

/* ---- guard page ---- */

#include "tests/unit/guard.h"

/* ---- helpers ---- */

static struct ws_reader server_reader(uint64_t max_message)
{
    return (struct ws_reader){.role = WS_ROLE_SERVER, .max_message = max_message};
}

static struct ws_reader client_reader(void)
{
    return (struct ws_reader){.role = WS_ROLE_CLIENT};
}

/* One call on a guarded copy of s; the event's data points into the guarded copy. */
static int next_on(struct ws_reader *r, const uint8_t *s, size_t n, struct ws_event *ev)
{
    memset(ev, 0xa5, sizeof *ev); /* garbage, so a field the reader forgets to set shows */
    return ws_reader_next(r, guarded(s, n), n, ev);
}

/* A client frame: header with the RFC mask key, then payload masked with it, into out; returns its length. */
static size_t client_frame(uint8_t *out, uint8_t opcode, bool fin, const void *payload, size_t len)
{
    size_t h = ws_frame_header(out, opcode, fin, len, rfc_mask);
    if (len)
        memcpy(out + h, payload, len);
    ws_mask(out + h, len, rfc_mask, 0);
    return h + len;
}

/* Expect exactly one protocol error from s[0..n) with the given close code. */
static void expect_error(struct ws_reader *r, const uint8_t *s, size_t n, uint16_t code)
{
    struct ws_event ev;
    assert_int_equal(next_on(r, s, n, &ev), -1);
    assert_int_equal(r->close_code, code);
    assert_non_null(r->error);
}

/* What a stream of frames delivered: data bytes, completed messages, control events, the final return. */
struct result {
    uint8_t data[4096];
    size_t len;
    int messages, first_chunks, controls;
    uint16_t close_code;
    int rc;
};

/* Feed wire[0..len) the way a socket would: pieces of `step` bytes (0: random 1..64 from seed) are appended to a
 * pending buffer, and events are taken until -2 or -1; consumed bytes are dropped from the front. */
static void stream(struct ws_reader *r, const uint8_t *wire, size_t len, size_t step, unsigned seed, struct result *res)
{
    uint8_t *pending = malloc(len + 1);
    size_t plen = 0, fed = 0;
    assert_non_null(pending);
    memset(res, 0, sizeof *res);
    srand(seed);
    while (fed < len) {
        size_t piece = step ? step : 1 + (size_t)rand() % 64;
        piece = piece < len - fed ? piece : len - fed;
        memcpy(pending + plen, wire + fed, piece);
        plen += piece;
        fed += piece;
        struct ws_event ev;
        int rc;
        while ((rc = ws_reader_next(r, pending, plen, &ev)) > 0) {
            assert_true((size_t)rc <= plen);
            if (ev.type == WS_EV_DATA) {
                assert_true(res->len + ev.len <= sizeof res->data);
                memcpy(res->data + res->len, ev.data, ev.len);
                res->len += ev.len;
                res->messages += ev.last;
                res->first_chunks += ev.first;
            } else {
                res->controls++;
            }
            memmove(pending, pending + rc, plen - (size_t)rc);
            plen -= (size_t)rc;
        }
        res->rc = rc;
        if (rc == -1)
            break;
    }
    res->close_code = r->close_code;
    free(pending);
}

/* ---- RFC 6455 5.7 examples, decoding ---- */

static void test_rfc_unmasked_text(void **state)
{
    (void)state;
    struct ws_reader r = client_reader();
    struct ws_event ev;
    assert_int_equal(next_on(&r, LIT("\x81\x05Hello"), &ev), 7);
    assert_int_equal(ev.type, WS_EV_DATA);
    assert_int_equal(ev.opcode, WS_OP_TEXT);
    assert_true(ev.first && ev.last);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "Hello", 5);
    assert_false(r.in_frame || r.in_message);
}

static void test_rfc_masked_text(void **state)
{
    (void)state;
    struct ws_reader r = server_reader(0);
    struct ws_event ev;
    uint8_t *buf = guarded(LIT("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"));
    assert_int_equal(ws_reader_next(&r, buf, 11, &ev), 11);
    assert_int_equal(ev.type, WS_EV_DATA);
    assert_true(ev.first && ev.last);
    assert_ptr_equal(ev.data, buf + 6); /* unmasked in place */
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "Hello", 5);
}

static void test_rfc_fragmented_text(void **state)
{
    (void)state;
    struct ws_reader r = client_reader();
    struct ws_event ev;
    assert_int_equal(next_on(&r, LIT("\x01\x03Hel"), &ev), 5);
    assert_int_equal(ev.opcode, WS_OP_TEXT);
    assert_true(ev.first);
    assert_false(ev.last);
    assert_memory_equal(ev.data, "Hel", 3);
    assert_true(r.in_message);
    assert_int_equal(next_on(&r, LIT("\x80\x02lo"), &ev), 4);
    assert_int_equal(ev.opcode, WS_OP_TEXT); /* the message's opcode, on a continuation chunk too */
    assert_false(ev.first);
    assert_true(ev.last);
    assert_memory_equal(ev.data, "lo", 2);
    assert_false(r.in_message);
}

static void test_rfc_ping_pong(void **state)
{
    (void)state;
    struct ws_reader c = client_reader(), s = server_reader(0);
    struct ws_event ev;
    assert_int_equal(next_on(&c, LIT("\x89\x05Hello"), &ev), 7);
    assert_int_equal(ev.type, WS_EV_PING);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "Hello", 5);
    assert_int_equal(next_on(&s, LIT("\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"), &ev), 11);
    assert_int_equal(ev.type, WS_EV_PONG);
    assert_int_equal(ev.len, 5);
    assert_memory_equal(ev.data, "Hello", 5);
}

/* 256 bytes take the 16-bit length, 64 KiB the 64-bit one; the payload is delivered whole when all there. */
static void test_rfc_long_binary(void **state)
{
    (void)state;
    static const uint8_t h16[] = {0x82, 0x7e, 0x01, 0x00};
    static const uint8_t h64[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0};
    size_t sizes[] = {256, 65536};
    const uint8_t *heads[] = {h16, h64};
    size_t hlens[] = {sizeof h16, sizeof h64};
    for (size_t t = 0; t < 2; t++) {
        size_t n = hlens[t] + sizes[t];
        uint8_t *wire = malloc(n);
        assert_non_null(wire);
        memcpy(wire, heads[t], hlens[t]);
        for (size_t i = 0; i < sizes[t]; i++)
            wire[hlens[t] + i] = (uint8_t)(i * 7);
        struct ws_reader r = client_reader();
        struct ws_event ev;
        assert_int_equal(next_on(&r, wire, n, &ev), (int)n);
        assert_int_equal(ev.opcode, WS_OP_BINARY);
        assert_true(ev.first && ev.last);
        assert_int_equal(ev.len, sizes[t]);
        assert_memory_equal(ev.data, wire + hlens[t], sizes[t]);
        free(wire);
    }
}

/* ---- encoding ---- */

static void test_encode_rfc_examples(void **state)
{
    (void)state;
    uint8_t out[WS_MAX_HEADER + 8];
    assert_int_equal(ws_frame_header(out, WS_OP_TEXT, true, 5, NULL), 2);
    assert_memory_equal(out, "\x81\x05", 2);
    assert_int_equal(ws_frame_header(out, WS_OP_TEXT, false, 3, NULL), 2);
    assert_memory_equal(out, "\x01\x03", 2);
    assert_int_equal(ws_frame_header(out, WS_OP_CONT, true, 2, NULL), 2);
    assert_memory_equal(out, "\x80\x02", 2);
    assert_int_equal(ws_frame_header(out, WS_OP_PING, true, 5, NULL), 2);
    assert_memory_equal(out, "\x89\x05", 2);
    assert_int_equal(ws_frame_header(out, WS_OP_BINARY, true, 256, NULL), 4);
    assert_memory_equal(out, "\x82\x7e\x01\x00", 4);
    assert_int_equal(ws_frame_header(out, WS_OP_BINARY, true, 65536, NULL), 10);
    assert_memory_equal(out, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    assert_int_equal(ws_frame_header(out, WS_OP_BINARY, true, 125, NULL), 2);
    assert_int_equal(out[1], 125);
    assert_int_equal(ws_frame_header(out, WS_OP_BINARY, true, 65535, NULL), 4);
    assert_memory_equal(out, "\x82\x7e\xff\xff", 4);
}

static void test_encode_masked(void **state)
{
    (void)state;
    uint8_t out[WS_MAX_HEADER + 5];
    assert_int_equal(client_frame(out, WS_OP_TEXT, true, "Hello", 5), 11);
    assert_memory_equal(out, "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", 11);
    assert_int_equal(client_frame(out, WS_OP_PONG, true, "Hello", 5), 11);
    assert_memory_equal(out, "\x8a\x85\x37\xfa\x21\x3d", 6);
    assert_memory_equal(out + 6, masked_hello, 5);
    assert_int_equal(ws_frame_header(out, WS_OP_BINARY, true, 70000, rfc_mask), 14);
    assert_memory_equal(out, "\x82\xff\x00\x00\x00\x00\x00\x01\x11\x70\x37\xfa\x21\x3d", 14);
}

static void test_frame_slice(void **state)
{
    (void)state;
    struct slice *s = ws_frame_slice(WS_OP_TEXT, "Hello", 5);
    assert_non_null(s);
    assert_int_equal(s->refs, 1);
    assert_int_equal(s->len, 7);
    assert_memory_equal(s->data, "\x81\x05Hello", 7);
    slice_unref(s);
    s = ws_frame_slice(WS_OP_CLOSE, NULL, 0);
    assert_non_null(s);
    assert_int_equal(s->len, 2);
    assert_memory_equal(s->data, "\x88\x00", 2);
    slice_unref(s);
}

/* Masking in pieces at running offsets equals masking in one go, and masking twice restores the data. */
static void test_mask_offsets(void **state)
{
    (void)state;
    uint8_t orig[100], whole[100], parts[100];
    for (size_t i = 0; i < sizeof orig; i++)
        orig[i] = (uint8_t)(i * 31 + 5);
    memcpy(whole, orig, sizeof orig);
    memcpy(parts, orig, sizeof orig);
    ws_mask(whole, sizeof whole, rfc_mask, 0);
    for (size_t i = 0; i < sizeof orig; i++)
        assert_int_equal(whole[i], orig[i] ^ rfc_mask[i & 3]);
    size_t cuts[] = {0, 1, 3, 4, 13, 21, 22, 50, 99, 100};
    for (size_t c = 0; c + 1 < sizeof cuts / sizeof *cuts; c++)
        ws_mask(parts + cuts[c], cuts[c + 1] - cuts[c], rfc_mask, cuts[c]);
    assert_memory_equal(parts, whole, sizeof whole);
    ws_mask(whole, sizeof whole, rfc_mask, 0);
    assert_memory_equal(whole, orig, sizeof orig);
}

/* ---- streaming ---- */

/* A masked 1000-byte frame fed 1 byte at a time and in random splits unmasks to the same payload. */
static void test_stream_splits(void **state)
{
    (void)state;
    uint8_t payload[1000], wire[WS_MAX_HEADER + 1000];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i % 251);
    size_t n = client_frame(wire, WS_OP_BINARY, true, payload, sizeof payload);
    size_t steps[] = {1, 2, 3, 7, 999, 1004, 0, 0, 0, 0, 0};
    for (size_t t = 0; t < sizeof steps / sizeof *steps; t++) {
        struct ws_reader r = server_reader(0);
        struct result res;
        stream(&r, wire, n, steps[t], (unsigned)t, &res);
        assert_int_equal(res.rc, -2);
        assert_int_equal(res.len, sizeof payload);
        assert_memory_equal(res.data, payload, sizeof payload);
        assert_int_equal(res.messages, 1);
        assert_int_equal(res.first_chunks, 1);
        assert_false(r.in_frame || r.in_message);
    }
}

/* The header alone, or any prefix of it, is not consumed: -2 until a payload byte is there. */
static void test_header_needs_payload(void **state)
{
    (void)state;
    uint8_t wire[WS_MAX_HEADER + 300];
    uint8_t payload[300] = {0};
    size_t n = client_frame(wire, WS_OP_BINARY, true, payload, sizeof payload); /* 2 + 2 + 4 header */
    struct ws_reader r = server_reader(0);
    struct ws_event ev;
    uint8_t *buf = guarded(wire, 8);
    for (size_t cut = 0; cut <= 8; cut++)
        assert_int_equal(ws_reader_next(&r, buf, cut, &ev), -2);
    assert_false(r.in_frame || r.in_message);
    assert_memory_equal(buf, wire, 8);              /* -2 leaves the buffer alone */
    assert_int_equal(next_on(&r, wire, 9, &ev), 9); /* header + 1 byte */
    assert_int_equal(ev.len, 1);
    assert_true(ev.first);
    assert_false(ev.last);
    assert_int_equal(next_on(&r, wire + 9, 0, &ev), -2);
    assert_int_equal(next_on(&r, wire + 9, n - 9, &ev), (int)(n - 9));
    assert_false(ev.first);
    assert_true(ev.last);
    assert_int_equal(ev.len, 299);
}

/* An empty frame is consumed with its header, as an empty chunk. */
static void test_empty_frames(void **state)
{
    (void)state;
    struct ws_reader r = client_reader();
    struct ws_event ev;
    assert_int_equal(next_on(&r, LIT("\x01\x00"), &ev), 2);
    assert_true(ev.first);
    assert_false(ev.last);
    assert_int_equal(ev.len, 0);
    assert_int_equal(next_on(&r, LIT("\x80\x00"), &ev), 2);
    assert_false(ev.first);
    assert_true(ev.last);
    assert_int_equal(ev.opcode, WS_OP_TEXT);
    assert_int_equal(next_on(&r, LIT("\x82\x00"), &ev), 2);
    assert_true(ev.first && ev.last);
    assert_int_equal(ev.opcode, WS_OP_BINARY);
}

/* Control frames wait until whole, and may sit between the fragments of a message. */
static void test_control_between_fragments(void **state)
{
    (void)state;
    uint8_t wire[64];
    size_t n = client_frame(wire, WS_OP_TEXT, false, "ab", 2);
    n += client_frame(wire + n, WS_OP_PING, true, "xyz", 3);
    n += client_frame(wire + n, WS_OP_CONT, true, "cd", 2);
    struct ws_reader r = server_reader(0);
    struct ws_event ev;
    assert_int_equal(next_on(&r, wire, 8, &ev), 8);
    assert_int_equal(next_on(&r, wire + 8, 8, &ev), -2); /* ping missing its last byte */
    assert_int_equal(next_on(&r, wire + 8, 9, &ev), 9);
    assert_int_equal(ev.type, WS_EV_PING);
    assert_memory_equal(ev.data, "xyz", 3);
    assert_true(r.in_message);
    assert_int_equal(next_on(&r, wire + 17, n - 17, &ev), 8);
    assert_int_equal(ev.type, WS_EV_DATA);
    assert_true(ev.last);
    assert_memory_equal(ev.data, "cd", 2);
}

/* ---- UTF-8 in text messages ---- */

static void test_utf8_split_across_fragments(void **state)
{
    (void)state;
    struct ws_reader r = client_reader();
    struct ws_event ev;
    assert_int_equal(next_on(&r, LIT("\x01\x01\xce"), &ev), 3); /* U+03BA in two frames */
    assert_int_equal(next_on(&r, LIT("\x80\x01\xba"), &ev), 3);
    assert_true(ev.last);
    assert_null(r.error);
    uint8_t wire[64];
    size_t n = client_frame(wire, WS_OP_TEXT, false, "\xf0\x9f", 2); /* U+1F600 over three frames */
    n += client_frame(wire + n, WS_OP_CONT, false, "\x98", 1);
    n += client_frame(wire + n, WS_OP_CONT, true, "\x80!", 2);
    struct ws_reader s = server_reader(0);
    struct result res;
    stream(&s, wire, n, 1, 0, &res);
    assert_int_equal(res.rc, -2);
    assert_int_equal(res.messages, 1);
    assert_memory_equal(res.data, "\xf0\x9f\x98\x80!", 5);
}

static void test_utf8_split_across_reads(void **state)
{
    (void)state;
    struct ws_reader r = client_reader();
    struct ws_event ev;
    uint8_t *buf = guarded(LIT("\x81\x03\xe2\x82\xac")); /* U+20AC in one frame, read in two parts */
    assert_int_equal(ws_reader_next(&r, buf, 3, &ev), 3);
    assert_false(ev.last);
    assert_int_equal(ws_reader_next(&r, buf + 3, 2, &ev), 2);
    assert_true(ev.last);
    assert_memory_equal(ev.data, "\x82\xac", 2);
    assert_null(r.error);
}

static void test_utf8_invalid_across_fragments(void **state)
{
    (void)state;
    struct ws_reader r = client_reader();
    struct ws_event ev;
    assert_int_equal(next_on(&r, LIT("\x01\x01\xed"), &ev), 3); /* a surrogate, D800 */
    expect_error(&r, LIT("\x80\x02\xa0\x80"), WS_CLOSE_BAD_DATA);
}

/* The reader fails on the first bad byte, even when the rest of the frame has not arrived. */
static void test_utf8_fails_fast(void **state)
{
    (void)state;
    struct ws_reader r = client_reader();
    expect_error(&r,
                 LIT("\x81\x7e\x10\x00"
                     "ab\xc0"),
                 WS_CLOSE_BAD_DATA);
}

static void test_utf8_truncated_at_end(void **state)
{
    (void)state;
    struct ws_reader r = client_reader();
    expect_error(&r,
                 LIT("\x81\x02"
                     "a\xce"),
                 WS_CLOSE_BAD_DATA);
    struct ws_reader f = client_reader();
    struct ws_event ev;
    assert_int_equal(next_on(&f,
                             LIT("\x01\x01"
                                 "a"),
                             &ev),
                     3);
    expect_error(&f,
                 LIT("\x80\x02"
                     "b\xe2"),
                 WS_CLOSE_BAD_DATA);
}

/* Binary messages are not UTF-8 checked. */
static void test_binary_not_checked(void **state)
{
    (void)state;
    struct ws_reader r = client_reader();
    struct ws_event ev;
    assert_int_equal(next_on(&r, LIT("\x82\x03\xff\xc0\xed"), &ev), 5);
    assert_true(ev.last);
    assert_null(r.error);
}

static void test_utf8_feed(void **state)
{
    (void)state;
    static const char *valid[] = {
        "",
        "plain ascii, long enough for the 8-byte path",
        "\x7f",
        "\xc2\x80",
        "\xdf\xbf",
        "\xe0\xa0\x80",
        "\xed\x9f\xbf",
        "\xee\x80\x80",
        "\xef\xbf\xbf",
        "\xf0\x90\x80\x80",
        "\xf4\x8f\xbf\xbf",
        "\xf3\xbf\xbf\xbf",
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
        "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc",
    };
    for (size_t i = 0; i < sizeof valid / sizeof *valid; i++) {
        const uint8_t *p = (const uint8_t *)valid[i];
        size_t n = strlen(valid[i]);
        assert_int_equal(ws_utf8_feed(WS_UTF8_ACCEPT, p, n), WS_UTF8_ACCEPT);
        for (size_t cut = 0; cut < n; cut++) { /* no valid prefix is rejected, and the split is invisible */
            uint32_t st = ws_utf8_feed(WS_UTF8_ACCEPT, p, cut);
            assert_int_not_equal(st, WS_UTF8_REJECT);
            assert_int_equal(ws_utf8_feed(st, p + cut, n - cut), WS_UTF8_ACCEPT);
        }
    }
    /* Each rejected on its last byte: the prefix before it is still alive. */
    static const char *invalid[] = {
        "\x80",     "\xbf",     "\xc0",     "\xc1",         "\xc2\x41",  "\xe0\x80", "\xe0\x9f",
        "\xed\xa0", "\xed\xbf", "\xf0\x80", "\xf0\x8f",     "\xf4\x90",  "\xf4\xbf", "\xf5",
        "\xf8",     "\xfe",     "\xff",     "\xe1\x80\x41", "a\xce\xce",
    };
    for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++) {
        const uint8_t *p = (const uint8_t *)invalid[i];
        size_t n = strlen(invalid[i]);
        assert_int_not_equal(ws_utf8_feed(WS_UTF8_ACCEPT, p, n - 1), WS_UTF8_REJECT);
        assert_int_equal(ws_utf8_feed(WS_UTF8_ACCEPT, p, n), WS_UTF8_REJECT);
    }
    uint32_t st = ws_utf8_feed(WS_UTF8_ACCEPT, (const uint8_t *)"\xce", 1);
    assert_int_not_equal(st, WS_UTF8_ACCEPT);
    assert_int_not_equal(st, WS_UTF8_REJECT);
    assert_int_equal(ws_utf8_feed(WS_UTF8_REJECT, (const uint8_t *)"a", 1), WS_UTF8_REJECT); /* sticky */
}

/* ---- protocol errors ---- */

static void test_role_masking(void **state)
{
    (void)state;
    struct ws_reader s = server_reader(0), c = client_reader();
    expect_error(&s, LIT("\x81\x05Hello"), WS_CLOSE_PROTOCOL);
    assert_string_equal(s.error, "unmasked client frame");
    expect_error(&c, LIT("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"), WS_CLOSE_PROTOCOL);
}

static void test_reserved_bits_and_opcodes(void **state)
{
    (void)state;
    for (uint8_t rsv = 0x10; rsv <= 0x40; rsv <<= 1) {
        struct ws_reader r = client_reader();
        uint8_t f[] = {(uint8_t)(0x81 | rsv), 0x00};
        expect_error(&r, f, 2, WS_CLOSE_PROTOCOL);
        assert_string_equal(r.error, "reserved bits set");
    }
    for (uint8_t op = 0; op < 16; op++) {
        if (op <= 2 || (op >= 8 && op <= 10))
            continue;
        struct ws_reader r = client_reader();
        uint8_t f[] = {(uint8_t)(0x80 | op), 0x00};
        expect_error(&r, f, 2, WS_CLOSE_PROTOCOL);
    }
}

static void test_bad_control_frames(void **state)
{
    (void)state;
    struct ws_reader r = client_reader();
    expect_error(&r, LIT("\x09\x00"), WS_CLOSE_PROTOCOL); /* ping without FIN */
    r = client_reader();
    expect_error(&r, LIT("\x08\x00"), WS_CLOSE_PROTOCOL); /* close without FIN */
    r = client_reader();
    expect_error(&r, LIT("\x89\x7e\x00\x7e"), WS_CLOSE_PROTOCOL); /* 126-byte ping */
    r = client_reader();
    expect_error(&r, LIT("\x8a\x7e"), WS_CLOSE_PROTOCOL); /* fails before the length bytes arrive */
    r = client_reader();
    struct ws_event ev;
    uint8_t ping[2 + WS_MAX_CONTROL] = {0x89, WS_MAX_CONTROL};
    assert_int_equal(next_on(&r, ping, sizeof ping, &ev), (int)sizeof ping); /* 125 is fine */
    assert_int_equal(ev.len, WS_MAX_CONTROL);
}

static void test_bad_sequences(void **state)
{
    (void)state;
    struct ws_reader r = client_reader();
    expect_error(&r, LIT("\x80\x01x"), WS_CLOSE_PROTOCOL);
    assert_string_equal(r.error, "continuation without a message");
    r = client_reader();
    struct ws_event ev;
    assert_int_equal(next_on(&r, LIT("\x01\x01x"), &ev), 3);
    expect_error(&r, LIT("\x81\x01y"), WS_CLOSE_PROTOCOL);
    r = client_reader();
    assert_int_equal(next_on(&r, LIT("\x02\x01x"), &ev), 3);
    expect_error(&r, LIT("\x02\x01y"), WS_CLOSE_PROTOCOL);
    r = client_reader();
    assert_int_equal(next_on(&r, LIT("\x81\x01x"), &ev), 3);
    expect_error(&r, LIT("\x80\x01y"), WS_CLOSE_PROTOCOL); /* the message ended with FIN */
}

static void test_bad_lengths(void **state)
{
    (void)state;
    struct ws_reader r = client_reader();
    expect_error(&r, LIT("\x82\x7e\x00\x7d"), WS_CLOSE_PROTOCOL); /* 125 in 16 bits */
    r = client_reader();
    expect_error(&r, LIT("\x82\x7f\x00\x00\x00\x00\x00\x00\xff\xff"), WS_CLOSE_PROTOCOL); /* 65535 in 64 */
    r = client_reader();
    expect_error(&r, LIT("\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00"), WS_CLOSE_PROTOCOL); /* top bit */
    r = client_reader();
    struct ws_event ev;
    assert_int_equal(next_on(&r,
                             LIT("\x82\x7e\x00\x7e"
                                 "x"),
                             &ev),
                     5); /* 126 in 16 bits: minimal */
    r = client_reader();
    assert_int_equal(next_on(&r,
                             LIT("\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"
                                 "x"),
                             &ev),
                     11);
}

static void test_too_big(void **state)
{
    (void)state;
    struct ws_reader r = server_reader(1000);
    /* Refused on the header alone: no payload byte, no mask key yet. */
    expect_error(&r, LIT("\x82\xfe\x03\xe9"), WS_CLOSE_TOO_BIG);
    assert_string_equal(r.error, "message too big");
    uint8_t wire[2200], payload[1000] = {0};
    r = server_reader(1000);
    size_t n = client_frame(wire, WS_OP_BINARY, true, payload, 1000); /* exactly the limit */
    struct result res;
    stream(&r, wire, n, 0, 1, &res);
    assert_int_equal(res.rc, -2);
    assert_int_equal(res.messages, 1);
    r = server_reader(1000);
    n = client_frame(wire, WS_OP_BINARY, false, payload, 600);
    n += client_frame(wire + n, WS_OP_CONT, true, payload, 401); /* 1001 in total */
    stream(&r, wire, n, 0, 2, &res);
    assert_int_equal(res.rc, -1);
    assert_int_equal(res.close_code, WS_CLOSE_TOO_BIG);
    assert_int_equal(res.len, 600); /* the first fragment went through */
    r = server_reader(1000);
    n = client_frame(wire, WS_OP_BINARY, false, payload, 600);
    n += client_frame(wire + n, WS_OP_PING, true, payload, 100); /* control frames do not count */
    n += client_frame(wire + n, WS_OP_CONT, true, payload, 400);
    stream(&r, wire, n, 0, 3, &res);
    assert_int_equal(res.rc, -2);
    assert_int_equal(res.messages, 1);
    assert_int_equal(res.controls, 1);
}

/* ---- close frames ---- */

static void test_close_parsing(void **state)
{
    (void)state;
    struct ws_reader r = client_reader();
    struct ws_event ev;
    assert_int_equal(next_on(&r, LIT("\x88\x00"), &ev), 2);
    assert_int_equal(ev.type, WS_EV_CLOSE);
    assert_int_equal(ev.close_code, WS_CLOSE_NO_STATUS);
    assert_int_equal(ev.reason_len, 0);
    r = client_reader();
    assert_int_equal(next_on(&r,
                             LIT("\x88\x05\x03\xe8"
                                 "bye"),
                             &ev),
                     7);
    assert_int_equal(ev.close_code, WS_CLOSE_NORMAL);
    assert_int_equal(ev.reason_len, 3);
    assert_memory_equal(ev.reason, "bye", 3);
    r = client_reader();
    assert_int_equal(next_on(&r, LIT("\x88\x02\x0f\xa0"), &ev), 4); /* 4000: application code */
    assert_int_equal(ev.close_code, 4000);
    r = server_reader(0);
    uint8_t wire[32];
    size_t n = client_frame(wire, WS_OP_CLOSE, true, "\x03\xe9going", 7);
    assert_int_equal(next_on(&r, wire, n, &ev), (int)n);
    assert_int_equal(ev.close_code, WS_CLOSE_GOING_AWAY);
    assert_memory_equal(ev.reason, "going", 5);
}

static void test_close_errors(void **state)
{
    (void)state;
    struct ws_reader r = client_reader();
    expect_error(&r, LIT("\x88\x01\x03"), WS_CLOSE_PROTOCOL);
    uint16_t bad[] = {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint8_t f[] = {0x88, 0x02, (uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
        r = client_reader();
        expect_error(&r, f, sizeof f, WS_CLOSE_PROTOCOL);
        assert_string_equal(r.error, "invalid close code");
    }
    r = client_reader();
    expect_error(&r, LIT("\x88\x04\x03\xe8\xed\xa0"), WS_CLOSE_BAD_DATA);
    r = client_reader();
    expect_error(&r, LIT("\x88\x03\x03\xe8\xce"), WS_CLOSE_BAD_DATA); /* truncated reason */
}

static void test_close_code_valid(void **state)
{
    (void)state;
    for (uint32_t c = 0; c <= 0xffff; c++) {
        bool want = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
        assert_int_equal(ws_close_code_valid((uint16_t)c), want);
    }
}

static void test_close_payload(void **state)
{
    (void)state;
    uint8_t out[WS_MAX_CONTROL];
    assert_int_equal(ws_close_payload(out, 1000, "bye"), 5);
    assert_memory_equal(out,
                        "\x03\xe8"
                        "bye",
                        5);
    assert_int_equal(ws_close_payload(out, 1011, ""), 2);
    assert_memory_equal(out, "\x03\xf3", 2);
    assert_int_equal(ws_close_payload(out, 1001, NULL), 2);
    char longer[300];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    assert_int_equal(ws_close_payload(out, 1000, longer), WS_MAX_CONTROL);
    /* 121 ASCII bytes then a 2-byte character fill the 123 bytes of room exactly; a 3-byte one is dropped
     * whole rather than split. */
    memset(longer, 'a', 121);
    memcpy(longer + 121, "\xc3\xa9", 3);
    assert_int_equal(ws_close_payload(out, 1000, longer), WS_MAX_CONTROL);
    assert_memory_equal(out + 2 + 121, "\xc3\xa9", 2);
    memcpy(longer + 121, "\xe2\x82\xac", 4);
    size_t n = ws_close_payload(out, 1000, longer);
    assert_int_equal(n, 2 + 121);
    assert_int_equal(ws_utf8_feed(WS_UTF8_ACCEPT, out + 2, n - 2), WS_UTF8_ACCEPT);
    /* A reader accepts what the writer made. */
    uint8_t frame[WS_MAX_HEADER + WS_MAX_CONTROL];
    size_t h = ws_frame_header(frame, WS_OP_CLOSE, true, n, NULL);
    memcpy(frame + h, out, n);
    struct ws_reader r = client_reader();
    struct ws_event ev;
    assert_int_equal(next_on(&r, frame, h + n, &ev), (int)(h + n));
    assert_int_equal(ev.close_code, 1000);
    assert_int_equal(ev.reason_len, 121);
}

/* ---- sticky errors ---- */

static void test_errors_sticky(void **state)
{
    (void)state;
    struct ws_reader r = server_reader(0);
    expect_error(&r, LIT("\x81\x05Hello"), WS_CLOSE_PROTOCOL);
    const char *why = r.error;
    uint8_t wire[16];
    size_t n = client_frame(wire, WS_OP_TEXT, true, "Hello", 5);
    uint8_t *buf = guarded(wire, n);
    struct ws_event ev;
    assert_int_equal(ws_reader_next(&r, buf, n, &ev), -1);
    assert_int_equal(ws_reader_next(&r, buf, 0, &ev), -1);
    assert_memory_equal(buf, wire, n); /* not unmasked */
    assert_int_equal(r.close_code, WS_CLOSE_PROTOCOL);
    assert_ptr_equal(r.error, why);
    /* A 1007 stays a 1007. */
    r = client_reader();
    expect_error(&r, LIT("\x81\x01\xff"), WS_CLOSE_BAD_DATA);
    assert_int_equal(next_on(&r, LIT("\x88\x00"), &ev), -1);
    assert_int_equal(r.close_code, WS_CLOSE_BAD_DATA);
}

/* ---- handshake keys ---- */

/* RFC 6455 1.3's example. The accept value is base64 of a 20-byte SHA-1, so it is 28 characters with one '='. */
static void test_accept_key_rfc(void **state)
{
    (void)state;
    char out[WS_ACCEPT_LEN + 1];
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    assert_int_equal(ws_accept_key(key, strlen(key), out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(strlen(out), WS_ACCEPT_LEN);
}

static void test_accept_key_invalid(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 */
        "dGhlIHNhbXBsZSBub25jZQ===", /* 25 */
        "dGhlIHNhbXBsZSBub25jZQAA",  /* 18 bytes, no padding */
        "dGhlIHNhbXBsZSBub25jZ===",  /* 15 bytes and a bit */
        "dGhlIHNhbXBsZSBub25j!Q==",  /* not base64 */
        "dGhlIHNhbXBsZSBub25j Q==",  /* whitespace, which EVP_DecodeBlock would skip */
        " dGhlIHNhbXBsZSBub25jZQ==",
    };
    char out[WS_ACCEPT_LEN + 1];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(ws_accept_key(bad[i], strlen(bad[i]), out), -1);
    /* The length is the caller's, not strlen: a valid key followed by more bytes is still the key. */
    assert_int_equal(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==xx", 24, out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_client_key(void **state)
{
    (void)state;
    char a[25], b[25], out[WS_ACCEPT_LEN + 1];
    ws_client_key(a);
    ws_client_key(b);
    assert_int_equal(strlen(a), 24);
    assert_string_not_equal(a, b);
    assert_int_equal(ws_accept_key(a, 24, out), 0);
    assert_int_equal(strlen(out), WS_ACCEPT_LEN);
}

static void test_frame_header_len(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 125, 126, 65535, 65536};
    static const size_t want[] = {2, 2, 4, 4, 10};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        uint8_t head[WS_MAX_HEADER];
        size_t h = ws_frame_header(head, WS_OP_TEXT, true, lens[i], NULL);
        assert_int_equal(h, want[i]);
        assert_int_equal(ws_frame_header_len(head), want[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_unmasked_text),
        cmocka_unit_test(test_rfc_masked_text),
        cmocka_unit_test(test_rfc_fragmented_text),
        cmocka_unit_test(test_rfc_ping_pong),
        cmocka_unit_test(test_rfc_long_binary),
        cmocka_unit_test(test_encode_rfc_examples),
        cmocka_unit_test(test_encode_masked),
        cmocka_unit_test(test_frame_slice),
        cmocka_unit_test(test_mask_offsets),
        cmocka_unit_test(test_stream_splits),
        cmocka_unit_test(test_header_needs_payload),
        cmocka_unit_test(test_empty_frames),
        cmocka_unit_test(test_control_between_fragments),
        cmocka_unit_test(test_utf8_split_across_fragments),
        cmocka_unit_test(test_utf8_split_across_reads),
        cmocka_unit_test(test_utf8_invalid_across_fragments),
        cmocka_unit_test(test_utf8_fails_fast),
        cmocka_unit_test(test_utf8_truncated_at_end),
        cmocka_unit_test(test_binary_not_checked),
        cmocka_unit_test(test_utf8_feed),
        cmocka_unit_test(test_role_masking),
        cmocka_unit_test(test_reserved_bits_and_opcodes),
        cmocka_unit_test(test_bad_control_frames),
        cmocka_unit_test(test_bad_sequences),
        cmocka_unit_test(test_bad_lengths),
        cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_close_parsing),
        cmocka_unit_test(test_close_errors),
        cmocka_unit_test(test_close_code_valid),
        cmocka_unit_test(test_close_payload),
        cmocka_unit_test(test_errors_sticky),
        cmocka_unit_test(test_accept_key_rfc),
        cmocka_unit_test(test_accept_key_invalid),
        cmocka_unit_test(test_client_key),
        cmocka_unit_test(test_frame_header_len),
    };
    return cmocka_run_group_tests(tests, NULL, unmap_guard);
}
