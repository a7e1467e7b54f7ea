/* loadgen's exactly-once tracker: in order, duplicates, reordering, gaps, jumps around the window's width, stale
 * arrivals, seq 0, the top of the seq range, and random arrivals against a brute-force set of seen flags. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "loadgen/track.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x2545f4914f6cdd1du;

static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_size_and_zero_state(void **state)
{
    (void)state;
    assert_int_equal(sizeof(struct lg_track), 16);
    struct lg_track t = {0};
    assert_false(lg_track_seen(&t, 0));
    assert_false(lg_track_seen(&t, 1));
    assert_false(lg_track_seen(&t, UINT32_MAX));
}

static void test_in_order(void **state)
{
    (void)state;
    struct lg_track t = {0};
    for (uint32_t s = 1; s <= 1000; s++) {
        assert_false(lg_track_seen(&t, s));
        assert_int_equal(lg_track_see(&t, s), LG_TRACK_IN_ORDER);
        assert_true(lg_track_seen(&t, s));
        assert_int_equal(t.high, s);
    }
    for (uint32_t s = 1000 - LG_TRACK_WINDOW; s <= 1000; s++)
        assert_true(lg_track_seen(&t, s));
    assert_false(lg_track_seen(&t, 1000 - LG_TRACK_WINDOW - 1)); /* seen, but out of the window */
    assert_false(lg_track_seen(&t, 1001));
}

static void test_duplicates(void **state)
{
    (void)state;
    struct lg_track t = {0};
    assert_int_equal(lg_track_see(&t, 1), LG_TRACK_IN_ORDER);
    assert_int_equal(lg_track_see(&t, 1), LG_TRACK_DUPLICATE); /* of the newest */
    assert_int_equal(lg_track_see(&t, 2), LG_TRACK_IN_ORDER);
    assert_int_equal(lg_track_see(&t, 3), LG_TRACK_IN_ORDER);
    assert_int_equal(lg_track_see(&t, 1), LG_TRACK_DUPLICATE); /* of an older one */
    assert_int_equal(lg_track_see(&t, 2), LG_TRACK_DUPLICATE);
    assert_int_equal(lg_track_see(&t, 3), LG_TRACK_DUPLICATE);
    assert_int_equal(t.high, 3);
}

static void test_reordered(void **state)
{
    (void)state;
    struct lg_track t = {0};
    assert_int_equal(lg_track_see(&t, 2), LG_TRACK_IN_ORDER);
    assert_false(lg_track_seen(&t, 1));
    assert_int_equal(lg_track_see(&t, 1), LG_TRACK_REORDERED);
    assert_int_equal(lg_track_see(&t, 1), LG_TRACK_DUPLICATE);
    assert_int_equal(lg_track_see(&t, 3), LG_TRACK_IN_ORDER);
    assert_true(lg_track_seen(&t, 1) && lg_track_seen(&t, 2) && lg_track_seen(&t, 3));
}

static void test_gaps_then_late_fill(void **state)
{
    (void)state;
    struct lg_track t = {0};
    assert_int_equal(lg_track_see(&t, 1), LG_TRACK_IN_ORDER);
    assert_int_equal(lg_track_see(&t, 5), LG_TRACK_IN_ORDER); /* above everything: in order, gap or not */
    assert_int_equal(lg_track_see(&t, 10), LG_TRACK_IN_ORDER);
    for (uint32_t s = 2; s < 10; s++)
        assert_int_equal(lg_track_seen(&t, s), s == 5);
    static const uint32_t late[] = {3, 9, 2, 7, 4, 6, 8};
    for (size_t i = 0; i < sizeof late / sizeof *late; i++)
        assert_int_equal(lg_track_see(&t, late[i]), LG_TRACK_REORDERED);
    for (uint32_t s = 1; s <= 10; s++) {
        assert_true(lg_track_seen(&t, s));
        assert_int_equal(lg_track_see(&t, s), LG_TRACK_DUPLICATE);
    }
    assert_int_equal(t.high, 10);
}

/* From a full window at 100, jump by `jump`: what stays seen, what becomes stale, what can still arrive late. */
static void check_jump(uint32_t jump)
{
    struct lg_track t = {0};
    for (uint32_t s = 1; s <= 100; s++)
        lg_track_see(&t, s);
    uint32_t high = 100 + jump;
    assert_int_equal(lg_track_see(&t, high), LG_TRACK_IN_ORDER);
    for (uint32_t s = 1; s <= high + 1; s = s == 101 && high > 200 ? high - 100 : s + 1) {
        bool in_window = s == high || (s < high && high - 1 - s < LG_TRACK_WINDOW);
        bool seen = s <= 100 || s == high;
        if (lg_track_seen(&t, s) != (in_window && seen))
            fail_msg("jump %u: seen(%u) wrong", jump, s);
    }
    /* the old high: inside the window up to a jump of 64 */
    assert_int_equal(lg_track_see(&t, 100), jump <= LG_TRACK_WINDOW ? LG_TRACK_DUPLICATE : LG_TRACK_STALE);
    /* the newest seq just below the window's floor, and the one at it */
    uint32_t floor = high - LG_TRACK_WINDOW;
    if (floor > 100)
        assert_int_equal(lg_track_see(&t, floor), LG_TRACK_REORDERED);
    else
        assert_int_equal(lg_track_see(&t, floor), LG_TRACK_DUPLICATE);
    assert_int_equal(lg_track_see(&t, floor - 1), LG_TRACK_STALE);
    if (jump > 1)
        assert_int_equal(lg_track_see(&t, high - 1), LG_TRACK_REORDERED);
}

static void test_jumps(void **state)
{
    (void)state;
    static const uint32_t jumps[] = {1, 2, 62, 63, 64, 65, 66, 127, 128, 1000, 1u << 31};
    for (size_t i = 0; i < sizeof jumps / sizeof *jumps; i++)
        check_jump(jumps[i]);
}

static void test_stale_below_window(void **state)
{
    (void)state;
    struct lg_track t = {0};
    assert_int_equal(lg_track_see(&t, 100), LG_TRACK_IN_ORDER);
    assert_int_equal(lg_track_see(&t, 100 - LG_TRACK_WINDOW), LG_TRACK_REORDERED); /* bit 63: the last one */
    assert_int_equal(lg_track_see(&t, 100 - LG_TRACK_WINDOW - 1), LG_TRACK_STALE);
    assert_int_equal(lg_track_see(&t, 1), LG_TRACK_STALE);
    assert_false(lg_track_seen(&t, 100 - LG_TRACK_WINDOW - 1));
    assert_false(lg_track_seen(&t, 1));
    assert_int_equal(lg_track_see(&t, 1), LG_TRACK_STALE); /* stale is not recorded: still stale, never duplicate */
    assert_int_equal(t.high, 100);
}

static void test_seq_zero(void **state)
{
    (void)state;
    struct lg_track t = {0};
    assert_int_equal(lg_track_see(&t, 0), LG_TRACK_INVALID);
    assert_int_equal(t.high, 0);
    assert_int_equal(t.window, 0);
    assert_int_equal(lg_track_see(&t, 1), LG_TRACK_IN_ORDER);
    struct lg_track before = t;
    assert_int_equal(lg_track_see(&t, 0), LG_TRACK_INVALID);
    assert_memory_equal(&t, &before, sizeof t);
    assert_false(lg_track_seen(&t, 0));
    /* a window reaching below 1 has nothing to say about 0 */
    assert_int_equal(lg_track_see(&t, 5), LG_TRACK_IN_ORDER);
    assert_false(lg_track_seen(&t, 0));
    assert_int_equal(lg_track_see(&t, 0), LG_TRACK_INVALID);
}

static void test_top_of_range(void **state)
{
    (void)state;
    struct lg_track t = {0};
    assert_int_equal(lg_track_see(&t, 5), LG_TRACK_IN_ORDER);
    assert_int_equal(lg_track_see(&t, UINT32_MAX), LG_TRACK_IN_ORDER);
    assert_int_equal(lg_track_see(&t, UINT32_MAX), LG_TRACK_DUPLICATE);
    assert_int_equal(lg_track_see(&t, UINT32_MAX - 1), LG_TRACK_REORDERED);
    assert_int_equal(lg_track_see(&t, UINT32_MAX - LG_TRACK_WINDOW), LG_TRACK_REORDERED);
    assert_int_equal(lg_track_see(&t, UINT32_MAX - LG_TRACK_WINDOW - 1), LG_TRACK_STALE);
    assert_int_equal(lg_track_see(&t, 5), LG_TRACK_STALE);
    assert_int_equal(lg_track_see(&t, 1), LG_TRACK_STALE);
    assert_true(lg_track_seen(&t, UINT32_MAX));
    assert_true(lg_track_seen(&t, UINT32_MAX - LG_TRACK_WINDOW));
    assert_false(lg_track_seen(&t, 5));
    assert_false(lg_track_seen(&t, 0));

    /* straight up to the top: no wrap to 0 after it */
    t = (struct lg_track){0};
    for (uint32_t s = UINT32_MAX - 70;; s++) {
        assert_int_equal(lg_track_see(&t, s), LG_TRACK_IN_ORDER);
        if (s == UINT32_MAX)
            break;
    }
    for (uint32_t s = UINT32_MAX - LG_TRACK_WINDOW; s != 0; s++)
        assert_int_equal(lg_track_see(&t, s), LG_TRACK_DUPLICATE);
    assert_int_equal(lg_track_see(&t, 0), LG_TRACK_INVALID);
    assert_int_equal(t.high, UINT32_MAX);

    /* the first arrival may be the top itself */
    t = (struct lg_track){0};
    assert_int_equal(lg_track_see(&t, UINT32_MAX), LG_TRACK_IN_ORDER);
    assert_false(lg_track_seen(&t, UINT32_MAX - 1));
}

/* ---- against a brute-force set ---- */

enum { SPAN = 12000 };

struct model {
    bool seen[SPAN + 200];
    uint32_t high;
};

static enum lg_track_verdict model_see(struct model *mo, uint32_t seq)
{
    if (seq == 0)
        return LG_TRACK_INVALID;
    if (seq > mo->high) {
        mo->high = seq;
        mo->seen[seq] = true;
        return LG_TRACK_IN_ORDER;
    }
    if (mo->high - seq > LG_TRACK_WINDOW)
        return LG_TRACK_STALE;
    if (mo->seen[seq])
        return LG_TRACK_DUPLICATE;
    mo->seen[seq] = true;
    return LG_TRACK_REORDERED;
}

static bool model_seen(const struct model *mo, uint32_t seq)
{
    return seq != 0 && seq <= mo->high && mo->high - seq <= LG_TRACK_WINDOW && mo->seen[seq];
}

/* 10k arrivals scattered around a slowly rising base: offsets from -spread to +spread/2, so duplicates, late
 * fills, jumps (up to past the window's width) and, when spread > LG_TRACK_WINDOW, stale ones all happen. */
static void run_random(uint32_t spread, int counts[5])
{
    static struct model mo;
    memset(&mo, 0, sizeof mo);
    struct lg_track t = {0};
    uint32_t base = spread + 1;
    for (int i = 0; i < 10000; i++) {
        base += (uint32_t)(next_rand() % 3 == 0);
        uint32_t seq = base - spread + (uint32_t)(next_rand() % (spread + spread / 2 + 1));
        if (next_rand() % 500 == 0)
            seq = 0;
        enum lg_track_verdict want = model_see(&mo, seq), got = lg_track_see(&t, seq);
        if (got != want)
            fail_msg("arrival %d, seq %u: got %d, expected %d", i, seq, got, want);
        counts[got]++;
        assert_int_equal(t.high, mo.high);
        uint32_t lo = mo.high > 80 ? mo.high - 80 : 0;
        for (uint32_t s = lo; s <= mo.high + 2; s++)
            if ((lg_track_seen(&t, s) != 0) != model_seen(&mo, s))
                fail_msg("arrival %d: seen(%u) wrong", i, s);
    }
}

static void test_against_brute_force(void **state)
{
    (void)state;
    int counts[5] = {0};
    run_random(LG_TRACK_WINDOW / 2, counts); /* always within the window: exact, nothing stale */
    assert_int_equal(counts[LG_TRACK_STALE], 0);
    run_random(LG_TRACK_WINDOW - 1, counts);
    run_random(LG_TRACK_WINDOW + 40, counts);
    for (int v = LG_TRACK_IN_ORDER; v <= LG_TRACK_INVALID; v++)
        if (counts[v] < 10)
            fail_msg("verdict %d seen only %d times: the test does not exercise it", v, counts[v]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_and_zero_state), cmocka_unit_test(test_in_order),
        cmocka_unit_test(test_duplicates),          cmocka_unit_test(test_reordered),
        cmocka_unit_test(test_gaps_then_late_fill), cmocka_unit_test(test_jumps),
        cmocka_unit_test(test_stale_below_window),  cmocka_unit_test(test_seq_zero),
        cmocka_unit_test(test_top_of_range),        cmocka_unit_test(test_against_brute_force),
    };
    return cmocka_run_group_tests_name("track", tests, NULL, NULL);
}
