/* Unit tests for loadgen/hostcpu.c: /proc/stat's cpu line and the machine's use between two samples. */
#include "loadgen/hostcpu.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static void test_parse_counts_iowait_as_idle(void **state)
{
    (void)state;
    struct hostcpu_sample s = hostcpu_parse("cpu  100 5 50 1000 40 3 2 7 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n");
    assert_true(s.ok);
    assert_int_equal(s.busy, 100 + 5 + 50 + 3 + 2);
    assert_int_equal(s.idle, 1000 + 40);
    assert_int_equal(s.steal, 7);
}

static void test_parse_refuses_other_text(void **state)
{
    (void)state;
    assert_false(hostcpu_parse("").ok);
    assert_false(hostcpu_parse("cpu0 1 2 3 4 5 6 7 8").ok); /* a core's line, not the total */
    assert_false(hostcpu_parse("cpu 1 2 3").ok);
    assert_true(hostcpu_parse("cpu 1 2 3 4 5 6 7").ok); /* no steal column: old kernels */
}

static void test_between_two_samples(void **state)
{
    (void)state;
    struct hostcpu_sample a = {.busy = 1000, .idle = 5000, .steal = 10, .ok = true};
    struct hostcpu_sample b = {.busy = 1150, .idle = 5040, .steal = 20, .ok = true}; /* 200 ticks: 150 busy */
    struct hostcpu_use u = hostcpu_between(&a, &b, 2);
    assert_true(u.ok);
    assert_float_equal(u.busy_cores, 1.5, 1e-9);
    assert_float_equal(u.steal_ratio, 0.05, 1e-9);
    assert_int_equal(u.cores, 2);
}

static void test_between_refuses_what_it_cannot_measure(void **state)
{
    (void)state;
    struct hostcpu_sample a = {.busy = 10, .idle = 10, .ok = true}, bad = {0};
    assert_false(hostcpu_between(&a, &a, 2).ok);   /* no time passed */
    assert_false(hostcpu_between(&a, &bad, 2).ok); /* a sample that could not be read */
    struct hostcpu_sample back = {.busy = 5, .idle = 20, .ok = true};
    assert_false(hostcpu_between(&a, &back, 2).ok); /* counters went back: not the same machine's */
}

static void test_read_this_machine(void **state)
{
    (void)state;
    struct hostcpu_sample s = hostcpu_read();
    assert_true(s.ok); /* Linux: /proc/stat is always there */
    assert_true(s.busy + s.idle > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_counts_iowait_as_idle),
        cmocka_unit_test(test_parse_refuses_other_text),
        cmocka_unit_test(test_between_two_samples),
        cmocka_unit_test(test_between_refuses_what_it_cannot_measure),
        cmocka_unit_test(test_read_this_machine),
    };
    return cmocka_run_group_tests_name("hostcpu", tests, NULL, NULL);
}
