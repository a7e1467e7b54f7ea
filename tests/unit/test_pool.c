/* lb's node pool: which node a sticky cookie may still reach (up and ready or draining, never maint or down),
 * balanced picks that skip nodes a request already failed on, source hashing that keeps one client on one node,
 * health observations turning a node down after fall failures and up after rise successes, and panic: under the
 * threshold's share of nodes up, every node in rotation takes clients again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lb/pool.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static struct lb_conf conf;
static struct pool_shared *sh;
static struct pool pool;

static int setup(void **state)
{
    (void)state;
    struct lb_conf_error errs[4];
    const char *text = "listen 127.0.0.1:8080\n"
                       "backend n1 127.0.0.1:9001 cookie=c1\n"
                       "backend n2 127.0.0.1:9002\n"
                       "backend n3 127.0.0.1:9003\n"
                       "health rise=2 fall=3\n";
    assert_int_equal(lb_conf_parse(text, &conf, errs, 4), 0);
    char err[128];
    sh = pool_shared_new(err, sizeof err);
    assert_non_null(sh);
    assert_int_equal(pool_init(&pool, &conf, sh, err, sizeof err), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pool_free(&pool);
    pool_shared_free(sh);
    return 0;
}

static struct net_addr client(const char *ip)
{
    struct net_addr a = {.len = sizeof(struct sockaddr_in)};
    struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(40000);
    assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
    return a;
}

static void test_cookie_ids_and_states(void **state)
{
    (void)state;
    assert_int_equal(pool_by_cookie(&pool, "c1", 2), 0);
    assert_int_equal(pool_by_cookie(&pool, "n1", 2), -1); /* n1's id is c1, its name is not a cookie */
    assert_int_equal(pool_by_cookie(&pool, "n2", 2), 1);
    assert_int_equal(pool_by_cookie(&pool, "n", 1), -1);
    assert_int_equal(pool_by_cookie(&pool, "n22", 3), -1);
    POOL_SET(sh->nodes[1].admin, POOL_DRAIN);
    assert_int_equal(pool_by_cookie(&pool, "n2", 2), 1); /* draining keeps its sticky clients */
    assert_false(pool_usable(&pool, 1));                 /* but takes no new ones */
    POOL_SET(sh->nodes[1].admin, POOL_MAINT);
    assert_int_equal(pool_by_cookie(&pool, "n2", 2), -1);
    POOL_SET(sh->nodes[1].admin, POOL_READY);
    POOL_SET(sh->nodes[1].up, 0);
    assert_int_equal(pool_by_cookie(&pool, "n2", 2), -1);
    POOL_SET(sh->nodes[1].up, 1);
    assert_int_equal(pool_by_name(&pool, "n3"), 2);
    assert_int_equal(pool_by_name(&pool, "c1"), -1);
}

static void test_roundrobin_skips_tried_and_unusable(void **state)
{
    (void)state;
    struct net_addr a = client("10.0.0.1");
    struct pool_key key = {.client = &a};
    int seen[3] = {0};
    for (int i = 0; i < 30; i++)
        seen[pool_pick(&pool, &key, 0)]++;
    assert_true(seen[0] == 10 && seen[1] == 10 && seen[2] == 10);
    for (int i = 0; i < 10; i++) {
        int n = pool_pick(&pool, &key, 1u << 0 | 1u << 2); /* n1 and n3 failed this request */
        assert_int_equal(n, 1);
    }
    assert_int_equal(pool_pick(&pool, &key, 7), -1);
    POOL_SET(sh->nodes[0].admin, POOL_MAINT);
    POOL_SET(sh->nodes[2].up, 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(pool_pick(&pool, &key, 0), 1);
    POOL_SET(sh->nodes[1].up, 0);
    conf.panic_threshold = 0; /* panic off: nothing up, nothing picked */
    assert_int_equal(pool_pick(&pool, &key, 0), -1);
    conf.panic_threshold = 50;
    POOL_SET(sh->nodes[0].admin, POOL_READY);
    POOL_SET(sh->nodes[1].up, 1);
    POOL_SET(sh->nodes[2].up, 1);
}

static void test_source_is_sticky_and_fails_over(void **state)
{
    (void)state;
    conf.balance = LB_BAL_SOURCE;
    struct net_addr a = client("10.1.2.3");
    struct pool_key key = {.client = &a};
    int first = pool_pick(&pool, &key, 0);
    assert_true(first >= 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(pool_pick(&pool, &key, 0), first);
    /* another port of the same address: the same node */
    ((struct sockaddr_in *)&a.ss)->sin_port = htons(50000);
    assert_int_equal(pool_pick(&pool, &key, 0), first);
    POOL_SET(sh->nodes[first].up, 0);
    int other = pool_pick(&pool, &key, 0);
    assert_true(other >= 0 && other != first);
    assert_true(pool_pick(&pool, &key, 1u << other) != other);
    POOL_SET(sh->nodes[first].up, 1);
    assert_int_equal(pool_pick(&pool, &key, 0), first); /* back: its clients come back */
    int spread[3] = {0};
    for (int i = 0; i < 300; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "10.9.%d.%d", i / 200, i % 200);
        struct net_addr b = client(ip);
        struct pool_key k = {.client = &b};
        spread[pool_pick(&pool, &k, 0)]++;
    }
    assert_true(spread[0] > 50 && spread[1] > 50 && spread[2] > 50);
    conf.balance = LB_BAL_ROUNDROBIN;
}

static void test_param_hash(void **state)
{
    (void)state;
    conf.balance = LB_BAL_PARAM;
    struct net_addr a = client("10.0.0.9");
    struct pool_key key = {.client = &a, .has_param = true, .param_hash = ring_hash("room-7", 6)};
    int node = pool_pick(&pool, &key, 0);
    struct net_addr b = client("10.0.0.10");
    key.client = &b; /* another client, same room: same node */
    assert_int_equal(pool_pick(&pool, &key, 0), node);
    key.has_param = false; /* no parameter: round robin */
    int seen[3] = {0};
    for (int i = 0; i < 30; i++)
        seen[pool_pick(&pool, &key, 0)]++;
    assert_true(seen[0] == 10 && seen[1] == 10 && seen[2] == 10);
    conf.balance = LB_BAL_ROUNDROBIN;
}

static void test_fall_and_rise(void **state)
{
    (void)state;
    assert_true(POOL_GET(sh->nodes[2].up));
    pool_observe(&pool, 2, false, "test");
    pool_observe(&pool, 2, false, "test");
    assert_true(POOL_GET(sh->nodes[2].up)); /* fall is 3 */
    pool_observe(&pool, 2, true, "test");   /* a success resets the count */
    pool_observe(&pool, 2, false, "test");
    pool_observe(&pool, 2, false, "test");
    assert_true(POOL_GET(sh->nodes[2].up));
    pool_observe(&pool, 2, false, "test");
    assert_false(POOL_GET(sh->nodes[2].up));
    assert_false(pool_usable(&pool, 2));
    pool_observe(&pool, 2, true, "test");
    assert_false(POOL_GET(sh->nodes[2].up)); /* rise is 2 */
    pool_observe(&pool, 2, false, "test");   /* a failure resets the count */
    pool_observe(&pool, 2, true, "test");
    assert_false(POOL_GET(sh->nodes[2].up));
    pool_observe(&pool, 2, true, "test");
    assert_true(POOL_GET(sh->nodes[2].up));
    assert_int_equal(POOL_GET(sh->nodes[2].transitions), 2);
}

static void test_panic_rule(void **state)
{
    (void)state;
    assert_false(pool_panic_rule(4, 2, 50)); /* 50% up is not under 50% */
    assert_true(pool_panic_rule(4, 1, 50));
    assert_true(pool_panic_rule(3, 1, 50));
    assert_false(pool_panic_rule(3, 2, 50));
    assert_true(pool_panic_rule(2, 0, 1));
    assert_false(pool_panic_rule(2, 0, 0)); /* 0: panic off */
    assert_true(pool_panic_rule(4, 3, 100));
    assert_false(pool_panic_rule(4, 4, 100));
    assert_false(pool_panic_rule(0, 0, 50)); /* no node in rotation: nothing to spread over */
}

/* Under the threshold every ready node takes new and sticky clients, down or not; drain and maint stay out of
 * both the share and the choice. The gauge follows and each episode is counted once. */
static void test_panic_routes_over_every_ready_node(void **state)
{
    (void)state;
    struct net_addr a = client("10.0.0.1");
    struct pool_key key = {.client = &a};
    uint64_t episodes = POOL_GET(sh->panic_episodes);
    POOL_SET(sh->nodes[0].up, 0);
    assert_false(pool_panic_update(&pool)); /* 2 of 3 up */
    for (int i = 0; i < 4; i++)
        assert_int_not_equal(pool_pick(&pool, &key, 0), 0);
    assert_int_equal(POOL_GET(sh->panic), 0);
    POOL_SET(sh->nodes[1].up, 0); /* 1 of 3 up: 33%, under 50% */
    int seen[3] = {0};
    for (int i = 0; i < 30; i++)
        seen[pool_pick(&pool, &key, 0)]++;
    assert_true(seen[0] == 10 && seen[1] == 10 && seen[2] == 10);
    assert_int_equal(POOL_GET(sh->panic), 1);
    assert_int_equal(POOL_GET(sh->panic_episodes), episodes + 1);
    assert_true(POOL_GET(sh->panic_routed) >= 30);
    assert_int_equal(pool_by_cookie(&pool, "n2", 2), 1);            /* sticky clients go back, down or not */
    assert_int_equal(pool_pick(&pool, &key, 1u << 0 | 1u << 1), 2); /* tries that failed still count */
    POOL_SET(sh->nodes[1].admin, POOL_DRAIN);
    POOL_SET(sh->nodes[2].admin, POOL_MAINT);
    for (int i = 0; i < 5; i++)
        assert_int_equal(pool_pick(&pool, &key, 0), 0);  /* drain and maint take no new client */
    assert_int_equal(pool_by_cookie(&pool, "n2", 2), 1); /* drain keeps its sticky ones */
    assert_int_equal(pool_by_cookie(&pool, "n3", 2), -1);
    POOL_SET(sh->nodes[0].up, 1); /* 1 of the 1 in rotation up: over */
    assert_false(pool_panic_update(&pool));
    assert_int_equal(POOL_GET(sh->panic), 0);
    assert_int_equal(pool_by_cookie(&pool, "n2", 2), -1);
    assert_int_equal(POOL_GET(sh->panic_episodes), episodes + 1);
    for (int i = 0; i < 3; i++) {
        POOL_SET(sh->nodes[i].up, 1);
        POOL_SET(sh->nodes[i].admin, POOL_READY);
    }
}

/* Client traffic may take a node down but, with checks on, only checks bring it back up. */
static void test_connects_never_raise_a_checked_node(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++)
        pool_observe_connect(&pool, 1, false, "connect: refused");
    assert_false(POOL_GET(sh->nodes[1].up));
    for (int i = 0; i < 5; i++)
        pool_observe_connect(&pool, 1, true, "connected");
    assert_false(POOL_GET(sh->nodes[1].up));
    pool_observe(&pool, 1, true, "check: HTTP 200");
    pool_observe(&pool, 1, true, "check: HTTP 200");
    assert_true(POOL_GET(sh->nodes[1].up));
    conf.health.enabled = false; /* no checks: traffic is the only witness */
    for (int i = 0; i < 3; i++)
        pool_observe_connect(&pool, 1, false, "connect: refused");
    assert_false(POOL_GET(sh->nodes[1].up));
    pool_observe_connect(&pool, 1, true, "connected");
    pool_observe_connect(&pool, 1, true, "connected");
    assert_true(POOL_GET(sh->nodes[1].up));
    conf.health.enabled = true;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie_ids_and_states),
        cmocka_unit_test(test_roundrobin_skips_tried_and_unusable),
        cmocka_unit_test(test_source_is_sticky_and_fails_over),
        cmocka_unit_test(test_param_hash),
        cmocka_unit_test(test_fall_and_rise),
        cmocka_unit_test(test_panic_rule),
        cmocka_unit_test(test_panic_routes_over_every_ready_node),
        cmocka_unit_test(test_connects_never_raise_a_checked_node),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
