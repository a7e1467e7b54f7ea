/* lb's local resource shortages: which errno values name the lb's own limits (never a node's failure), how they
 * are counted by operation and kind, the text a 503 carries, and one log line per episode at each end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lb/shortage.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static void test_kinds(void **state)
{
    (void)state;
    assert_int_equal(shortage_kind(EMFILE), POOL_LOCAL_EMFILE);
    assert_int_equal(shortage_kind(ENFILE), POOL_LOCAL_ENFILE);
    assert_int_equal(shortage_kind(EADDRNOTAVAIL), POOL_LOCAL_EADDRNOTAVAIL);
    assert_int_equal(shortage_kind(ENOBUFS), POOL_LOCAL_ENOBUFS);
    assert_int_equal(shortage_kind(ENOMEM), POOL_LOCAL_ENOMEM);
    /* the node's doing (or the network's): these do count against it */
    static const int theirs[] = {ECONNREFUSED, ECONNRESET, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH, EPIPE, 0};
    for (size_t i = 0; i < sizeof theirs / sizeof *theirs; i++)
        assert_int_equal(shortage_kind(theirs[i]), -1);
    assert_string_equal(shortage_kind_name(POOL_LOCAL_EMFILE), "emfile");
    assert_string_equal(shortage_op_name(POOL_OP_CONNECT), "connect");
}

static void test_describe_names_the_limit(void **state)
{
    (void)state;
    struct shortage s;
    char text[96];
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    shortage_init(&s, "worker 0", "requests get 503", NULL);
    assert_int_equal(s.nofile, (uint64_t)rl.rlim_cur);
    s.nofile = 256;
    shortage_describe(&s, EMFILE, text, sizeof text);
    assert_string_equal(text, "out of file descriptors (limit 256)");
    shortage_describe(&s, EADDRNOTAVAIL, text, sizeof text);
    assert_non_null(strstr(text, "no free local port"));
}

/* Every failure is counted; the episode ends only at a success a quiet second after the last failure. */
static void test_episode(void **state)
{
    (void)state;
    char err[64];
    struct pool_shared *sh = pool_shared_new(err, sizeof err);
    assert_non_null(sh);
    struct shortage s;
    shortage_init(&s, "worker 0", "requests get 503", sh);
    shortage_ok(&s, 1.0); /* nothing to end */
    assert_false(s.on);
    shortage_hit(&s, POOL_OP_CONNECT, ECONNREFUSED, 1.0); /* not ours: ignored */
    assert_false(s.on);
    shortage_hit(&s, POOL_OP_CONNECT, EMFILE, 10.0);
    assert_true(s.on);
    shortage_hit(&s, POOL_OP_ACCEPT, EMFILE, 10.2);
    shortage_hit(&s, POOL_OP_CONNECT, EMFILE, 10.5);
    shortage_ok(&s, 10.6); /* a descriptor came free, but failures are still coming */
    assert_true(s.on);
    shortage_hit(&s, POOL_OP_CONNECT, ENFILE, 10.9);
    assert_int_equal(s.refused[POOL_OP_CONNECT], 3);
    assert_int_equal(s.refused[POOL_OP_ACCEPT], 1);
    shortage_ok(&s, 11.85);
    assert_true(s.on);
    shortage_ok(&s, 12.0);
    assert_false(s.on);
    assert_int_equal(s.refused[POOL_OP_CONNECT], 0);
    assert_int_equal(POOL_GET(sh->local_errors[POOL_OP_CONNECT][POOL_LOCAL_EMFILE]), 2);
    assert_int_equal(POOL_GET(sh->local_errors[POOL_OP_CONNECT][POOL_LOCAL_ENFILE]), 1);
    assert_int_equal(POOL_GET(sh->local_errors[POOL_OP_ACCEPT][POOL_LOCAL_EMFILE]), 1);
    assert_int_equal(POOL_GET(sh->local_errors[POOL_OP_CHECK][POOL_LOCAL_EMFILE]), 0);
    shortage_hit(&s, POOL_OP_CHECK, EMFILE, 20.0); /* a new episode */
    assert_true(s.on);
    assert_true(s.began == 20.0);
    pool_shared_free(sh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_describe_names_the_limit),
        cmocka_unit_test(test_episode),
    };
    return cmocka_run_group_tests_name("shortage", tests, NULL, NULL);
}
