/* lb's hash ring and balancing: share of 100k keys per node (max/avg within 10% for equal weights), proportional
 * weights, removal moves exactly the removed node's keys, down nodes skipped and restored, smooth round robin's exact
 * interleaving, leastconn's choice. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lb/balance.h"
#include "lb/ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS 100000

static const char *const names[] = {"n1", "n2",  "n3",  "n4",  "n5",  "n6",  "n7",  "n8",
                                    "n9", "n10", "n11", "n12", "n13", "n14", "n15", "n16"};

/* The hash of the i-th test key: client addresses 10.x.y.z as a balancer would see them. */
static uint64_t key(uint32_t i)
{
    uint32_t ip = 0x0a000000u + i * 7919u;
    return ring_hash(&ip, sizeof ip);
}

static void build(struct ring *r, size_t n, const uint32_t *weights)
{
    struct ring_member m[16];
    for (size_t i = 0; i < n; i++)
        m[i] = (struct ring_member){.name = names[i], .weight = weights ? weights[i] : 1};
    assert_int_equal(ring_build(r, m, n), 0);
}

static void test_equal_weights_spread_evenly(void **state)
{
    (void)state;
    for (size_t n = 2; n <= 16; n++) {
        struct ring r = {0};
        uint32_t count[16] = {0};
        build(&r, n, NULL);
        for (uint32_t k = 0; k < KEYS; k++)
            count[ring_lookup(&r, key(k), NULL, NULL)]++;
        uint32_t max = 0;
        for (size_t i = 0; i < n; i++)
            max = count[i] > max ? count[i] : max;
        double ratio = (double)max / ((double)KEYS / (double)n);
        if (ratio > 1.10)
            fail_msg("%zu nodes: busiest has %.3fx the average", n, ratio);
        ring_free(&r);
    }
}

static void test_weights_are_proportional(void **state)
{
    (void)state;
    static const uint32_t w[] = {1, 2, 3, 4};
    struct ring r = {0};
    uint32_t count[4] = {0};
    build(&r, 4, w);
    for (uint32_t k = 0; k < KEYS; k++)
        count[ring_lookup(&r, key(k), NULL, NULL)]++;
    for (int i = 0; i < 4; i++) {
        double want = KEYS * w[i] / 10.0, got = count[i];
        if (got < want * 0.9 || got > want * 1.1)
            fail_msg("weight %u: %u keys, expected about %.0f", w[i], count[i], want);
    }
    ring_free(&r);
}

static void test_removal_moves_only_that_nodes_keys(void **state)
{
    (void)state;
    for (size_t n = 3; n <= 8; n++) {
        struct ring full = {0}, less = {0};
        build(&full, n, NULL);
        /* the same members minus the middle one: indices shift, names do not */
        struct ring_member m[16];
        size_t gone = n / 2, j = 0;
        for (size_t i = 0; i < n; i++)
            if (i != gone)
                m[j++] = (struct ring_member){.name = names[i], .weight = 1};
        assert_int_equal(ring_build(&less, m, n - 1), 0);
        uint32_t moved = 0, owned = 0;
        for (uint32_t k = 0; k < KEYS; k++) {
            int a = ring_lookup(&full, key(k), NULL, NULL), b = ring_lookup(&less, key(k), NULL, NULL);
            const char *before = names[a], *after = m[b].name;
            if ((size_t)a == gone) {
                owned++;
                continue;
            }
            moved += strcmp(before, after) != 0;
        }
        assert_int_equal(moved, 0);        /* nobody else's key moved */
        assert_true(owned > KEYS / n / 2); /* and the removed node did own its share */
        ring_free(&full);
        ring_free(&less);
    }
}

static bool not_down(uint32_t node, void *arg)
{
    return node != *(uint32_t *)arg;
}

static void test_down_node_skipped_and_restored(void **state)
{
    (void)state;
    struct ring r = {0};
    build(&r, 4, NULL);
    uint32_t down = 2, moved_elsewhere = 0, others_moved = 0;
    for (uint32_t k = 0; k < KEYS; k++) {
        int normal = ring_lookup(&r, key(k), NULL, NULL);
        int skip = ring_lookup(&r, key(k), not_down, &down);
        assert_int_not_equal(skip, 2);
        if (normal == 2)
            moved_elsewhere++;
        else
            others_moved += skip != normal;
        assert_int_equal(ring_lookup(&r, key(k), NULL, NULL), normal); /* back up: back where it was */
    }
    assert_int_equal(others_moved, 0);
    assert_true(moved_elsewhere > 0);
    ring_free(&r);
}

static bool none(uint32_t node, void *arg)
{
    (void)node, (void)arg;
    return false;
}

static void test_ring_edges(void **state)
{
    (void)state;
    struct ring r = {0};
    assert_int_equal(ring_lookup(&r, 42, NULL, NULL), -1);
    build(&r, 2, (const uint32_t[]){0, 0});
    assert_int_equal(r.npoints, 0);
    assert_int_equal(ring_lookup(&r, 42, NULL, NULL), -1);
    build(&r, 2, NULL);
    assert_int_equal(ring_lookup(&r, 42, none, NULL), -1);
    assert_int_equal(ring_lookup(&r, UINT64_MAX, NULL, NULL) >= 0, 1); /* wraps */
    struct ring_member heavy = {.name = "x", .weight = RING_MAX_WEIGHT + 1};
    assert_int_equal(ring_build(&r, &heavy, 1), -1);
    assert_int_equal(r.npoints, 2 * RING_POINTS_PER_WEIGHT); /* unchanged */
    ring_free(&r);
    ring_free(&r);
    assert_true(ring_hash("a", 1) != ring_hash("b", 1));
}

static void test_smooth_roundrobin(void **state)
{
    (void)state;
    struct bal_node nodes[3] = {
        {.weight = 5, .usable = true}, {.weight = 1, .usable = true}, {.weight = 1, .usable = true}};
    /* nginx's documented sequence for weights 5, 1, 1: a a b a c a a */
    static const int want[] = {0, 0, 1, 0, 2, 0, 0};
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < sizeof want / sizeof *want; i++)
            assert_int_equal(bal_roundrobin(nodes, 3), want[i]);
    nodes[0].usable = false;
    int seen[3] = {0};
    for (int i = 0; i < 100; i++)
        seen[bal_roundrobin(nodes, 3)]++;
    assert_int_equal(seen[0], 0);
    assert_int_equal(seen[1], 50);
    assert_int_equal(seen[2], 50);
    nodes[1].usable = nodes[2].usable = false;
    assert_int_equal(bal_roundrobin(nodes, 3), -1);
}

static void test_leastconn(void **state)
{
    (void)state;
    struct bal_node nodes[3] = {{.weight = 1, .usable = true, .active = 5},
                                {.weight = 1, .usable = true, .active = 2},
                                {.weight = 2, .usable = true, .active = 5}};
    uint32_t rotor = 0;
    assert_int_equal(bal_leastconn(nodes, 3, &rotor), 1); /* 2/1 < 5/2 < 5/1 */
    nodes[1].active = 3;
    assert_int_equal(bal_leastconn(nodes, 3, &rotor), 2); /* 5/2 < 3/1 */
    nodes[2].usable = false;
    assert_int_equal(bal_leastconn(nodes, 3, &rotor), 1);
    /* equal loads: the rotor spreads the picks */
    struct bal_node eq[3] = {
        {.weight = 1, .usable = true}, {.weight = 1, .usable = true}, {.weight = 1, .usable = true}};
    int seen[3] = {0};
    rotor = 0;
    for (int i = 0; i < 30; i++)
        seen[bal_leastconn(eq, 3, &rotor)]++;
    assert_true(seen[0] == 10 && seen[1] == 10 && seen[2] == 10);
    eq[0].usable = eq[1].usable = eq[2].usable = false;
    assert_int_equal(bal_leastconn(eq, 3, &rotor), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equal_weights_spread_evenly),
        cmocka_unit_test(test_weights_are_proportional),
        cmocka_unit_test(test_removal_moves_only_that_nodes_keys),
        cmocka_unit_test(test_down_node_skipped_and_restored),
        cmocka_unit_test(test_ring_edges),
        cmocka_unit_test(test_smooth_roundrobin),
        cmocka_unit_test(test_leastconn),
    };
    return cmocka_run_group_tests_name("ring", tests, NULL, NULL);
}
