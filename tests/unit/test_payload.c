/* loadgen's message: exact-size encoding that is valid JSON, the receivers' parser (round trips, envelopes, the
 * LG_PAYLOAD_PREFIX limit, every cut of a head, malformed input, number limits). Parser inputs sit right before a
 * PROT_NONE page (guard.h), so a read past len crashes instead of passing. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "loadgen/payload.h"
#include "tests/unit/guard.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define MARKER     "{\"wsh\":1,"
#define MARKER_LEN (sizeof MARKER - 1)
#define PAD_OPEN   ",\"pad\":\""

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A random value of random magnitude (1 to 64 bits), so every digit count shows up. */
static uint64_t rand_magnitude(void)
{
    return next_rand() >> (next_rand() % 64);
}

static struct lg_msg rand_msg(void)
{
    return (struct lg_msg){.emitter = (uint32_t)rand_magnitude(),
                           .round = (uint32_t)rand_magnitude(),
                           .seq = (uint32_t)rand_magnitude(),
                           .send_ns = (int64_t)(rand_magnitude() >> 1)};
}

static void assert_same_msg(const struct lg_msg *a, const struct lg_msg *b)
{
    assert_int_equal(a->emitter, b->emitter);
    assert_int_equal(a->round, b->round);
    assert_int_equal(a->seq, b->seq);
    assert_int_equal(a->send_ns, b->send_ns);
}

static const struct lg_msg sentinel = {.emitter = 0xdeadbeef, .round = 0xdeadbeef, .seq = 0xdeadbeef, .send_ns = -7};

/* Parse a guarded copy of s[0..n); on anything but 1, *m must be left alone. */
static int parse_guarded(const char *s, size_t n, struct lg_msg *m)
{
    *m = sentinel;
    int rc = lg_payload_parse(guarded(s, n), n, m);
    if (rc != 1)
        assert_same_msg(m, &sentinel);
    return rc;
}

static int parse_str(const char *s)
{
    struct lg_msg m;
    return parse_guarded(s, strlen(s), &m);
}

/* Where t's digits end in an encoded message: the parser needs the bytes through the one after, i.e. this + 1. */
static size_t fields_end(const char *msg, size_t size)
{
    const char *t = memmem(msg, size, ",\"t\":", 5);
    assert_non_null(t);
    size_t i = (size_t)(t - msg) + 5;
    while (i < size && msg[i] >= '0' && msg[i] <= '9')
        i++;
    return i;
}

/* ---- encoder ---- */

/* The all-maximum message is exactly LG_PAYLOAD_MAX_FIELDS bytes with an empty padding: the constant is right. */
static void test_max_fields_fit_the_minimum(void **state)
{
    (void)state;
    char out[LG_PAYLOAD_MIN + 1];
    struct lg_msg m = {.emitter = UINT32_MAX, .round = UINT32_MAX, .seq = UINT32_MAX, .send_ns = INT64_MAX}, back;
    assert_int_equal(LG_PAYLOAD_MIN, LG_PAYLOAD_MAX_FIELDS);
    assert_int_equal(lg_payload_encode(&m, out, LG_PAYLOAD_MIN), LG_PAYLOAD_MIN);
    out[LG_PAYLOAD_MIN] = '\0';
    const char *want = "{\"wsh\":1,\"e\":4294967295,\"r\":4294967295,\"s\":4294967295,\"t\":9223372036854775807,"
                       "\"pad\":\"\"}";
    assert_int_equal(strlen(want), LG_PAYLOAD_MAX_FIELDS);
    assert_string_equal(out, want);
    assert_int_equal(parse_guarded(out, LG_PAYLOAD_MIN, &back), 1);
    assert_same_msg(&m, &back);
}

static void test_encode_refuses(void **state)
{
    (void)state;
    char out[LG_PAYLOAD_MIN + 8];
    memset(out, '?', sizeof out);
    struct lg_msg m = {.emitter = 1, .round = 1, .seq = 1, .send_ns = 1};
    assert_int_equal(lg_payload_encode(&m, out, LG_PAYLOAD_MIN - 1), -1);
    assert_int_equal(lg_payload_encode(&m, out, 0), -1);
    m.send_ns = -1; /* no sign in our numbers */
    assert_int_equal(lg_payload_encode(&m, out, sizeof out), -1);
    m.send_ns = INT64_MIN;
    assert_int_equal(lg_payload_encode(&m, out, sizeof out), -1);
    for (size_t i = 0; i < sizeof out; i++)
        assert_int_equal(out[i], '?');
}

static void test_encode_smallest_numbers(void **state)
{
    (void)state;
    char out[LG_PAYLOAD_MIN + 1];
    struct lg_msg m = {0}, back;
    assert_int_equal(lg_payload_encode(&m, out, LG_PAYLOAD_MIN), LG_PAYLOAD_MIN);
    out[LG_PAYLOAD_MIN] = '\0';
    /* 42 bytes of fields and quotes, 45 of padding */
    assert_string_equal(out, "{\"wsh\":1,\"e\":0,\"r\":0,\"s\":0,\"t\":0,\"pad\":\""
                             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}");
    assert_int_equal(parse_guarded(out, LG_PAYLOAD_MIN, &back), 1);
    assert_same_msg(&m, &back);
}

/* Exactly size bytes (a canary after them stays), fields, 'x' padding, and jansson reads the same values back. */
static void check_encoding(const struct lg_msg *m, char *out, size_t size)
{
    out[size] = '#';
    assert_int_equal(lg_payload_encode(m, out, size), (int)size);
    assert_int_equal(out[size], '#');
    assert_memory_equal(out, MARKER, MARKER_LEN);
    const char *pad = memmem(out, size, PAD_OPEN, sizeof PAD_OPEN - 1);
    assert_non_null(pad);
    size_t pad_at = (size_t)(pad - out) + sizeof PAD_OPEN - 1, pad_len = size - pad_at - 2;
    assert_true(pad_at <= LG_PAYLOAD_MAX_FIELDS - 2); /* fields at their longest leave "} */
    for (size_t i = 0; i < pad_len; i++)
        assert_int_equal(out[pad_at + i], 'x');
    assert_memory_equal(out + size - 2, "\"}", 2);

    json_error_t err;
    json_t *j = json_loadb(out, size, 0, &err);
    if (!j)
        fail_msg("not JSON: %s", err.text);
    assert_true(json_is_object(j));
    assert_int_equal(json_object_size(j), 6);
    assert_int_equal(json_integer_value(json_object_get(j, "wsh")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "e")), m->emitter);
    assert_int_equal(json_integer_value(json_object_get(j, "r")), m->round);
    assert_int_equal(json_integer_value(json_object_get(j, "s")), m->seq);
    assert_int_equal(json_integer_value(json_object_get(j, "t")), m->send_ns);
    assert_int_equal(json_string_length(json_object_get(j, "pad")), pad_len);
    json_decref(j);
}

static void test_encode_is_exact_json(void **state)
{
    (void)state;
    static char out[65536 + 1];
    static const size_t sizes[] = {LG_PAYLOAD_MIN, LG_PAYLOAD_MIN + 1, 100, 255, 256, 257, 1000, 4096, 65536};
    struct lg_msg max = {.emitter = UINT32_MAX, .round = UINT32_MAX, .seq = UINT32_MAX, .send_ns = INT64_MAX};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        check_encoding(&max, out, sizes[i]);
        check_encoding(&(struct lg_msg){0}, out, sizes[i]);
        for (int k = 0; k < 20; k++) {
            struct lg_msg m = rand_msg();
            check_encoding(&m, out, sizes[i]);
        }
    }
}

/* ---- parser ---- */

static void test_round_trip_random(void **state)
{
    (void)state;
    static char buf[65536];
    for (int i = 0; i < 3000; i++) {
        struct lg_msg m = rand_msg(), back;
        size_t size = i % 10 == 0   ? LG_PAYLOAD_MIN
                      : i % 10 == 1 ? sizeof buf
                      : i % 10 == 2 ? LG_PAYLOAD_MIN + next_rand() % (sizeof buf - LG_PAYLOAD_MIN + 1)
                                    : LG_PAYLOAD_MIN + next_rand() % 400;
        assert_int_equal(lg_payload_encode(&m, buf, size), (int)size);
        assert_int_equal(parse_guarded(buf, size, &back), 1);
        assert_same_msg(&m, &back);
        /* what the receiver has of a message split over frames */
        size_t head = size < LG_PAYLOAD_PREFIX ? size : LG_PAYLOAD_PREFIX;
        assert_int_equal(parse_guarded(buf, head, &back), 1);
        assert_same_msg(&m, &back);
    }
}

/* Every cut of an encoded message (optionally behind an envelope): 0 until the byte after t's digits is in, then
 * 1. A head cut short is "not ours", never "corrupt". */
static void check_every_cut(const struct lg_msg *m, const char *envelope, size_t size)
{
    static char buf[1024];
    size_t off = strlen(envelope);
    memcpy(buf, envelope, off);
    assert_int_equal(lg_payload_encode(m, buf + off, size), (int)size);
    size_t need = fields_end(buf, off + size) + 1;
    struct lg_msg back;
    for (size_t cut = 0; cut <= off + size; cut++) {
        int rc = parse_guarded(buf, cut, &back);
        if (rc != (cut < need ? 0 : 1))
            fail_msg("cut %zu of %zu (need %zu): %d", cut, off + size, need, rc);
        if (rc == 1)
            assert_same_msg(m, &back);
    }
}

static void test_every_cut_is_not_corrupt(void **state)
{
    (void)state;
    struct lg_msg max = {.emitter = UINT32_MAX, .round = UINT32_MAX, .seq = UINT32_MAX, .send_ns = INT64_MAX};
    struct lg_msg mid = {.emitter = 12, .round = 345, .seq = 345, .send_ns = 987654321};
    check_every_cut(&max, "", LG_PAYLOAD_MIN);
    check_every_cut(&(struct lg_msg){0}, "", LG_PAYLOAD_MIN);
    check_every_cut(&mid, "", 120);
    check_every_cut(&mid, "{\"from\":\"bob\",\"msg\":", 150);
    for (int i = 0; i < 50; i++) {
        struct lg_msg m = rand_msg();
        check_every_cut(&m, i % 2 ? "[\"msg\"," : "", LG_PAYLOAD_MIN + next_rand() % 300);
    }
}

static void test_envelope(void **state)
{
    (void)state;
    struct lg_msg m;
    const char *wrapped = "{\"from\":\"bob\",\"msg\":{\"wsh\":1,\"e\":3,\"r\":2,\"s\":9,\"t\":12345,\"pad\":\"xx\"}}";
    assert_int_equal(parse_guarded(wrapped, strlen(wrapped), &m), 1);
    assert_int_equal(m.emitter, 3);
    assert_int_equal(m.round, 2);
    assert_int_equal(m.seq, 9);
    assert_int_equal(m.send_ns, 12345);
    /* Socket.IO's framing: 42["chat",{...}], with '{' before the marker */
    const char *sio = "42[\"chat\",{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1,\"pad\":\"\"}]";
    assert_int_equal(parse_guarded(sio, strlen(sio), &m), 1);
    const char *braces = "{{{{\"wsh\":{\"wsh\":1{\"wsh\":1,\"e\":4,\"r\":1,\"s\":1,\"t\":1}";
    assert_int_equal(parse_guarded(braces, strlen(braces), &m), 1);
    assert_int_equal(m.emitter, 4);
    /* the first marker decides */
    assert_int_equal(parse_str("{\"wsh\":1,\"x\":1,{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1}"), -1);
}

/* The marker and the fields through the byte after t's digits must lie in the first LG_PAYLOAD_PREFIX bytes. */
static void test_prefix_limit(void **state)
{
    (void)state;
    static const char msg[] = "{\"wsh\":1,\"e\":1,\"r\":2,\"s\":3,\"t\":4,\"pad\":\"xxxx\"}";
    const size_t need = sizeof "{\"wsh\":1,\"e\":1,\"r\":2,\"s\":3,\"t\":4," - 1;
    char buf[LG_PAYLOAD_PREFIX + sizeof msg];
    struct lg_msg m;
    for (size_t at = LG_PAYLOAD_PREFIX - need - 3; at <= LG_PAYLOAD_PREFIX + 1; at++) {
        memset(buf, ' ', at);
        memcpy(buf + at, msg, sizeof msg - 1);
        size_t len = at + sizeof msg - 1;
        int want = at + need <= LG_PAYLOAD_PREFIX ? 1 : 0;
        if (parse_guarded(buf, len, &m) != want)
            fail_msg("marker at %zu: expected %d", at, want);
        /* the caller may hand over just the prefix, or the whole message: same answer */
        assert_int_equal(parse_guarded(buf, len < LG_PAYLOAD_PREFIX ? len : LG_PAYLOAD_PREFIX, &m), want);
        if (want)
            assert_int_equal(m.seq, 3);
    }
    /* far beyond */
    static char big[4096];
    memset(big, 'a', sizeof big);
    memcpy(big + 1000, msg, sizeof msg - 1);
    assert_int_equal(parse_guarded(big, sizeof big, &m), 0);
    /* a corrupt head past the prefix is not looked at either */
    memcpy(big + 1000, "{\"wsh\":1,\"e\":01", 16);
    assert_int_equal(parse_guarded(big, sizeof big, &m), 0);
}

static void test_foreign(void **state)
{
    (void)state;
    static const char *const foreign[] = {
        "",
        "hello",
        "{",
        "{}",
        "{\"type\":\"welcome\"}",
        "{\"wsh\":2,\"e\":1,\"r\":1,\"s\":1,\"t\":1}",
        "{\"wsh\":1}",
        "{\"wsh\":1",
        "{\"wsh\": 1,\"e\":1,\"r\":1,\"s\":1,\"t\":1}",
        "{ \"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1}",
        "{\"WSH\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1}",
        "{\\\"wsh\\\":1,\\\"e\\\":1}", /* escaped inside a string by a server: not recognised */
        "\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1}",
        /* heads too short to hold the fields */
        "{\"wsh\":1,",
        "{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1",
        "{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":",
        "{\"wsh\":1,\"e\":0",
        "{\"wsh\":1,\"e\":429496729",
    };
    for (size_t i = 0; i < sizeof foreign / sizeof *foreign; i++)
        if (parse_str(foreign[i]) != 0)
            fail_msg("%s: expected 0", foreign[i]);
    char nul[] = "{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1}";
    nul[4] = '\0';
    struct lg_msg m;
    assert_int_equal(parse_guarded(nul, sizeof nul - 1, &m), 0);
}

/* A literal with its length, embedded NULs included. */
// clang-format off
#define BAD(s) {s, sizeof s - 1}
// clang-format on

static const struct {
    const char *s;
    size_t n;
} malformed[] = {
    BAD("{\"wsh\":1,\"e\":01,\"r\":1,\"s\":1,\"t\":1}"),                   /* leading zero */
    BAD("{\"wsh\":1,\"e\":00,\"r\":1,\"s\":1,\"t\":1}"),                   /* leading zero */
    BAD("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":0123}"),                 /* leading zero */
    BAD("{\"wsh\":1,\"e\":-1,\"r\":1,\"s\":1,\"t\":1}"),                   /* sign */
    BAD("{\"wsh\":1,\"e\":+1,\"r\":1,\"s\":1,\"t\":1}"),                   /* sign */
    BAD("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":-5}"),                   /* sign */
    BAD("{\"wsh\":1,\"e\":4294967296,\"r\":1,\"s\":1,\"t\":1}"),           /* over uint32 */
    BAD("{\"wsh\":1,\"e\":1,\"r\":99999999999,\"s\":1,\"t\":1}"),          /* over uint32, 11 digits */
    BAD("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":42949672950,\"t\":1}"),          /* 11 digits, first 10 fit */
    BAD("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":9223372036854775808}"),  /* over int64 */
    BAD("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":18446744073709551616}"), /* over uint64 */
    BAD("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":92233720368547758070}"), /* 20 digits */
    BAD("{\"wsh\":1,\"r\":1,\"e\":1,\"s\":1,\"t\":1}"),                    /* order */
    BAD("{\"wsh\":1,\"e\":1,\"r\":1,\"t\":1,\"s\":1}"),                    /* order */
    BAD("{\"wsh\":1,\"e\":1\"r\":1,\"s\":1,\"t\":1}"),                     /* missing comma */
    BAD("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1\"t\":1}"),                     /* missing comma */
    BAD("{\"wsh\":1,\"e\":1,,\"r\":1,\"s\":1,\"t\":1}"),                   /* double comma */
    BAD("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1x}"),                   /* junk after t */
    BAD("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1 }"),                   /* space after t */
    BAD("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1]"),                    /* wrong closer */
    BAD("{\"wsh\":1,\"e\":a,\"r\":1,\"s\":1,\"t\":1}"),                    /* letter */
    BAD("{\"wsh\":1,\"e\":1a,\"r\":1,\"s\":1,\"t\":1}"),                   /* letter */
    BAD("{\"wsh\":1,\"e\":0x10,\"r\":1,\"s\":1,\"t\":1}"),                 /* hex */
    BAD("{\"wsh\":1,\"e\":,\"r\":1,\"s\":1,\"t\":1}"),                     /* empty */
    BAD("{\"wsh\":1,\"e\":\"1\",\"r\":1,\"s\":1,\"t\":1}"),                /* string */
    BAD("{\"wsh\":1,\"E\":1,\"r\":1,\"s\":1,\"t\":1}"),                    /* name */
    BAD("{\"wsh\":1,e:1,\"r\":1,\"s\":1,\"t\":1}"),                        /* unquoted name */
    BAD("{\"wsh\":1, \"e\":1,\"r\":1,\"s\":1,\"t\":1}"),                   /* space */
    BAD("{\"wsh\":1,\"e\" :1,\"r\":1,\"s\":1,\"t\":1}"),                   /* space */
    BAD("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1.5}"),                  /* fraction */
    BAD("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1e9}"),                  /* exponent */
    BAD("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"x\":1}"),                    /* unknown field */
    BAD("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1}"),                            /* t missing */
    BAD("{\"wsh\":1,}"),                                                   /* nothing */
    BAD("xx{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1\0"),                 /* NUL after t */
};

/* At least 15 kinds of corruption, each -1; and every cut of one is 0 up to its first bad byte and -1 from there
 * on (an answer that only depends on the bytes present, never flipping back). */
static void test_malformed(void **state)
{
    (void)state;
    struct lg_msg m;
    for (size_t i = 0; i < sizeof malformed / sizeof *malformed; i++) {
        const char *s = malformed[i].s;
        size_t n = malformed[i].n;
        if (parse_guarded(s, n, &m) != -1)
            fail_msg("%s: expected -1", s);
        size_t first_bad = n + 1;
        for (size_t cut = 0; cut <= n; cut++) {
            int rc = parse_guarded(s, cut, &m);
            if (rc == -1 && first_bad > n)
                first_bad = cut;
            if (rc != (cut < first_bad ? 0 : -1))
                fail_msg("%s: cut %zu gives %d", s, cut, rc);
        }
    }
}

/* Right after t's digits: ',' (a "pad" or anything may follow, or nothing yet) or '}'. */
static void test_after_t(void **state)
{
    (void)state;
    assert_int_equal(parse_str("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1,"), 1);
    assert_int_equal(parse_str("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1}"), 1);
    assert_int_equal(parse_str("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1,\"pad\":\"xx"), 1);
    assert_int_equal(parse_str("{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1,\"later\":true}"), 1);
}

static void test_number_limits(void **state)
{
    (void)state;
    struct lg_msg m;
    const char *ok = "{\"wsh\":1,\"e\":4294967295,\"r\":0,\"s\":10,\"t\":9223372036854775807}";
    assert_int_equal(parse_guarded(ok, strlen(ok), &m), 1);
    assert_int_equal(m.emitter, UINT32_MAX);
    assert_int_equal(m.round, 0);
    assert_int_equal(m.seq, 10);
    assert_int_equal(m.send_ns, INT64_MAX);
    const char *zeros = "{\"wsh\":1,\"e\":0,\"r\":0,\"s\":0,\"t\":0}";
    assert_int_equal(parse_guarded(zeros, strlen(zeros), &m), 1);
    assert_int_equal(m.emitter, 0);
    assert_int_equal(m.send_ns, 0);
    /* every value around a power of ten, through both encoders */
    char buf[LG_PAYLOAD_MIN + 10];
    for (uint64_t p = 1; p <= 1000000000000000000u; p *= 10) {
        for (uint64_t v = p - 1; v <= p; v++) {
            struct lg_msg in = {.emitter = (uint32_t)(v > UINT32_MAX ? UINT32_MAX : v),
                                .round = (uint32_t)v,
                                .seq = 1,
                                .send_ns = (int64_t)v};
            assert_int_equal(lg_payload_encode(&in, buf, sizeof buf), (int)sizeof buf);
            assert_int_equal(parse_guarded(buf, sizeof buf, &m), 1);
            assert_same_msg(&in, &m);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_fields_fit_the_minimum),
        cmocka_unit_test(test_encode_refuses),
        cmocka_unit_test(test_encode_smallest_numbers),
        cmocka_unit_test(test_encode_is_exact_json),
        cmocka_unit_test(test_round_trip_random),
        cmocka_unit_test(test_every_cut_is_not_corrupt),
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_prefix_limit),
        cmocka_unit_test(test_foreign),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_after_t),
        cmocka_unit_test(test_number_limits),
    };
    return cmocka_run_group_tests_name("payload", tests, NULL, unmap_guard);
}
