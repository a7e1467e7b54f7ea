/* loadgen's message: exact-size encoding, the receivers' parser (fields, envelopes, truncation, malformed input,
 * never reading past the end), and the exactly-once tracker against a brute-force set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "guard.h"
#include "loadgen/payload.h"
#include "loadgen/track.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void assert_same_msg(const struct lg_msg *a, const struct lg_msg *b)
{
    assert_int_equal(a->emitter, b->emitter);
    assert_int_equal(a->round, b->round);
    assert_int_equal(a->seq, b->seq);
    assert_int_equal(a->send_ns, b->send_ns);
}

static int parse_guarded(const char *s, size_t n, struct lg_msg *m)
{
    return lg_payload_parse(guarded(s, n), n, m);
}

static void test_max_fields_fit_the_minimum(void **state)
{
    (void)state;
    char out[LG_PAYLOAD_MIN + 1];
    struct lg_msg m = {.emitter = UINT32_MAX, .round = UINT32_MAX, .seq = UINT32_MAX, .send_ns = INT64_MAX}, back;
    assert_int_equal(lg_payload_encode(&m, out, LG_PAYLOAD_MIN), LG_PAYLOAD_MIN);
    out[LG_PAYLOAD_MIN] = '\0';
    assert_string_equal(out, "{\"wsh\":1,\"e\":4294967295,\"r\":4294967295,\"s\":4294967295,\"t\":9223372036854775807,"
                             "\"pad\":\"\"}");
    assert_int_equal(parse_guarded(out, LG_PAYLOAD_MIN, &back), 1);
    assert_same_msg(&m, &back);
    assert_int_equal(lg_payload_encode(&m, out, LG_PAYLOAD_MIN - 1), -1);
}

static void test_round_trip_random(void **state)
{
    (void)state;
    static char buf[65536];
    for (int i = 0; i < 2000; i++) {
        struct lg_msg m = {.emitter = (uint32_t)next_rand(),
                           .round = (uint32_t)next_rand(),
                           .seq = (uint32_t)next_rand(),
                           .send_ns = (int64_t)(next_rand() >> 1)},
                      back;
        if (i % 3 == 0)
            m.emitter = (uint32_t)(next_rand() % 10); /* short numbers, so padding varies */
        size_t size = i == 0 ? sizeof buf : LG_PAYLOAD_MIN + next_rand() % 400;
        assert_int_equal(lg_payload_encode(&m, buf, size), (int)size);
        assert_int_equal(buf[size - 1], '}');
        assert_int_equal(buf[size - 2], '"');
        assert_int_equal(strspn(strstr(buf, "\"pad\":\"") + 7, "x"),
                         size - (size_t)(strstr(buf, "\"pad\":\"") - buf) - 9);
        assert_int_equal(parse_guarded(buf, size, &back), 1);
        assert_same_msg(&m, &back);
        /* the receiver may only have the head of a long message */
        size_t head = size < LG_PAYLOAD_PREFIX ? size : LG_PAYLOAD_PREFIX;
        assert_int_equal(parse_guarded(buf, head, &back), 1);
    }
}

static void test_envelope_and_foreign(void **state)
{
    (void)state;
    struct lg_msg m;
    const char *wrapped = "{\"from\":\"bob\",\"msg\":{\"wsh\":1,\"e\":3,\"r\":2,\"s\":2,\"t\":12345,\"pad\":\"xx\"}}";
    assert_int_equal(parse_guarded(wrapped, strlen(wrapped), &m), 1);
    assert_int_equal(m.emitter, 3);
    assert_int_equal(m.round, 2);
    assert_int_equal(m.send_ns, 12345);
    const char *foreign[] = {"hello", "{\"type\":\"welcome\"}", "", "{\"wsh\":2,\"e\":1}", "{\"wsh\":1"};
    for (size_t i = 0; i < sizeof foreign / sizeof *foreign; i++)
        assert_int_equal(parse_guarded(foreign[i], strlen(foreign[i]), &m), 0);
    /* a marker past the first LG_PAYLOAD_PREFIX bytes is not looked for */
    char far[LG_PAYLOAD_PREFIX + 100];
    memset(far, ' ', sizeof far);
    const char *msg = "{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1}";
    memcpy(far + LG_PAYLOAD_PREFIX, msg, strlen(msg));
    assert_int_equal(parse_guarded(far, LG_PAYLOAD_PREFIX + strlen(msg), &m), 0);
}

static void test_every_cut_is_not_corrupt(void **state)
{
    (void)state;
    char buf[200];
    struct lg_msg m = {.emitter = 12, .round = 345, .seq = 345, .send_ns = 987654321}, back;
    lg_payload_encode(&m, buf, 120);
    /* Up to the separator after t's digits the head is incomplete: never reported as corrupt. */
    const char *after_t = strstr(buf, "987654321") + strlen("987654321");
    size_t need = (size_t)(after_t - buf) + 1;
    for (size_t cut = 0; cut < need; cut++)
        assert_int_equal(parse_guarded(buf, cut, &back), 0);
    for (size_t cut = need; cut <= 120; cut++)
        assert_int_equal(parse_guarded(buf, cut, &back), 1);
}

static void test_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "{\"wsh\":1,\"e\":01,\"r\":1,\"s\":1,\"t\":1}",                  /* leading zero */
        "{\"wsh\":1,\"e\":-1,\"r\":1,\"s\":1,\"t\":1}",                  /* sign */
        "{\"wsh\":1,\"e\":+1,\"r\":1,\"s\":1,\"t\":1}",                  /* sign */
        "{\"wsh\":1,\"e\":4294967296,\"r\":1,\"s\":1,\"t\":1}",          /* over uint32 */
        "{\"wsh\":1,\"e\":1,\"r\":99999999999,\"s\":1,\"t\":1}",         /* over uint32 */
        "{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":9223372036854775808}", /* over int64 */
        "{\"wsh\":1,\"r\":1,\"e\":1,\"s\":1,\"t\":1}",                   /* order */
        "{\"wsh\":1,\"e\":1\"r\":1,\"s\":1,\"t\":1}",                    /* missing comma */
        "{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1x}",                  /* junk after t */
        "{\"wsh\":1,\"e\":a,\"r\":1,\"s\":1,\"t\":1}",                   /* letter */
        "{\"wsh\":1,\"e\":,\"r\":1,\"s\":1,\"t\":1}",                    /* empty */
        "{\"wsh\":1,\"E\":1,\"r\":1,\"s\":1,\"t\":1}",                   /* name */
        "{\"wsh\":1, \"e\":1,\"r\":1,\"s\":1,\"t\":1}",                  /* space */
        "{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1.5}",                 /* fraction */
        "{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"x\":1}",                   /* unknown field */
        "{\"wsh\":1,\"e\":1,\"r\":1,\"s\":1,\"t\":1 }",                  /* space after t */
    };
    struct lg_msg m;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = parse_guarded(bad[i], strlen(bad[i]), &m);
        if (rc != -1)
            fail_msg("%s: %d, expected -1", bad[i], rc);
    }
}

/* ---- tracker ---- */

static void test_track_in_order_dup_reorder(void **state)
{
    (void)state;
    struct lg_track t = {0};
    assert_int_equal(lg_track_see(&t, 0), LG_TRACK_INVALID);
    assert_int_equal(lg_track_see(&t, 1), LG_TRACK_IN_ORDER);
    assert_int_equal(lg_track_see(&t, 1), LG_TRACK_DUPLICATE);
    assert_int_equal(lg_track_see(&t, 3), LG_TRACK_IN_ORDER);
    assert_int_equal(lg_track_see(&t, 2), LG_TRACK_REORDERED);
    assert_int_equal(lg_track_see(&t, 2), LG_TRACK_DUPLICATE);
    assert_int_equal(lg_track_see(&t, 1), LG_TRACK_DUPLICATE);
    assert_true(lg_track_seen(&t, 1) && lg_track_seen(&t, 2) && lg_track_seen(&t, 3));
    assert_false(lg_track_seen(&t, 4) || lg_track_seen(&t, 0));
}

static void test_track_jumps(void **state)
{
    (void)state;
    for (uint32_t jump = 62; jump <= 66; jump++) {
        struct lg_track t = {0};
        assert_int_equal(lg_track_see(&t, 10), LG_TRACK_IN_ORDER);
        assert_int_equal(lg_track_see(&t, 10 + jump), LG_TRACK_IN_ORDER);
        /* 10 is jump - 1 below the new high: inside the window up to a jump of 64 */
        if (jump <= LG_TRACK_WINDOW) {
            assert_true(lg_track_seen(&t, 10));
            assert_int_equal(lg_track_see(&t, 10), LG_TRACK_DUPLICATE);
            assert_int_equal(lg_track_see(&t, 11), LG_TRACK_REORDERED);
        } else {
            assert_false(lg_track_seen(&t, 10));
            assert_int_equal(lg_track_see(&t, 10), LG_TRACK_STALE);
        }
    }
    struct lg_track t = {0};
    lg_track_see(&t, 5);
    assert_int_equal(lg_track_see(&t, UINT32_MAX), LG_TRACK_IN_ORDER);
    assert_int_equal(lg_track_see(&t, UINT32_MAX), LG_TRACK_DUPLICATE);
    assert_int_equal(lg_track_see(&t, UINT32_MAX - 1), LG_TRACK_REORDERED);
    assert_int_equal(lg_track_see(&t, 5), LG_TRACK_STALE);
}

/* Random arrivals within a window against an array of seen flags. */
static void test_track_against_brute_force(void **state)
{
    (void)state;
    enum { SPAN = 60, ARRIVALS = 10000 };
    struct lg_track t = {0};
    bool seen[SPAN + 2] = {false};
    uint32_t high = 0;
    for (int i = 0; i < ARRIVALS; i++) {
        if (i % 500 == 0) { /* restart, so the window moves over fresh seqs */
            t = (struct lg_track){0};
            memset(seen, 0, sizeof seen);
            high = 0;
        }
        uint32_t seq = 1 + (uint32_t)(next_rand() % SPAN);
        enum lg_track_verdict want = seen[seq]    ? LG_TRACK_DUPLICATE
                                     : seq > high ? LG_TRACK_IN_ORDER
                                                  : LG_TRACK_REORDERED;
        assert_int_equal(lg_track_see(&t, seq), want);
        seen[seq] = true;
        if (seq > high)
            high = seq;
        for (uint32_t s = 1; s <= SPAN; s++)
            assert_int_equal(lg_track_seen(&t, s) != 0, seen[s]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_fields_fit_the_minimum),
        cmocka_unit_test(test_round_trip_random),
        cmocka_unit_test(test_envelope_and_foreign),
        cmocka_unit_test(test_every_cut_is_not_corrupt),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_track_in_order_dup_reorder),
        cmocka_unit_test(test_track_jumps),
        cmocka_unit_test(test_track_against_brute_force),
    };
    return cmocka_run_group_tests_name("payload", tests, NULL, unmap_guard);
}
