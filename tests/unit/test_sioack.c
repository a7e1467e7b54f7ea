/* loadgen's --ack and --binary with --protocol socketio (loadgen/opts.c): the options, the ack. threshold, and the
 * combinations refused. The encoders and the reassembly are in test_sio.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "loadgen/opts.h"

#include <string.h>

#define URL "ws://127.0.0.1:9001/"

static enum lg_parse_result parse(struct lg_opts *o, char *err, const char *const *args)
{
    char *argv[64] = {"loadgen"};
    int argc = 1;
    while (args[argc - 1])
        argv[argc] = (char *)args[argc - 1], argc++;
    err[0] = '\0';
    return lg_opts_parse(o, argc, argv, err, 256);
}
#define PARSE(o, err, ...) parse(o, err, (const char *const[]){__VA_ARGS__, NULL})

static void expect_error(const char *contains, const char *const *args)
{
    struct lg_opts o;
    char err[256];
    enum lg_parse_result r = parse(&o, err, args);
    lg_opts_free(&o);
    if (r != LG_PARSE_ERROR || !strstr(err, contains) || strchr(err, '\n'))
        fail_msg("%s ...: result %d, error '%s', expected one line containing '%s'", args[0], r, err, contains);
}
#define EXPECT_ERROR(contains, ...) expect_error(contains, (const char *const[]){__VA_ARGS__, NULL})

static void test_ack_and_binary(void **state)
{
    (void)state;
    struct lg_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "--protocol", "socketio", "--binary", "--ack", "-t", "ack.p99<50ms", URL),
                     LG_PARSE_OK);
    assert_true(o.binary && o.sio_ack);
    assert_int_equal(o.nthresholds, 1);
    assert_int_equal(o.thresholds[0].metric, TH_ACK);
    assert_int_equal(o.thresholds[0].stat, TH_STAT_PCT);
    assert_true(o.thresholds[0].pct == 99 && o.thresholds[0].value == 50e6);
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "--protocol", "socketio", "--transport", "polling", "--binary", URL), LG_PARSE_OK);
    assert_true(o.binary && !o.sio_ack);
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "--protocol", "socketio", URL), LG_PARSE_OK);
    assert_false(o.sio_ack);
    lg_opts_free(&o);
}

static void test_ack_threshold(void **state)
{
    (void)state;
    struct lg_threshold t;
    char err[256];
    assert_int_equal(lg_parse_threshold("ack.max<=2s", &t, err, sizeof err), 0);
    assert_true(t.metric == TH_ACK && t.stat == TH_STAT_MAX && t.op == TH_LE && t.value == 2e9);
    assert_int_equal(lg_parse_threshold("ack.mean<1ms", &t, err, sizeof err), 0);
    assert_true(t.metric == TH_ACK && t.stat == TH_STAT_MEAN);
    assert_int_equal(lg_parse_threshold("ack.<1ms", &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "ack."));
    assert_int_equal(lg_parse_threshold("ack.p99<1%", &t, err, sizeof err), -1);
}

static void test_refused(void **state)
{
    (void)state;
    EXPECT_ERROR("--ack needs --protocol socketio", "--ack", URL);
    EXPECT_ERROR("needs --ack", "--protocol", "socketio", "-t", "ack.p99<50ms", URL);
    EXPECT_ERROR("needs --ack", "-t", "ack.p50<1s", URL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ack_and_binary),
        cmocka_unit_test(test_ack_threshold),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
