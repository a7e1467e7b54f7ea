/* common/conf: the project's one spelling of numbers, durations and sizes, and the config line tokenizer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/conf.h"

#include <stdio.h>
#include <string.h>

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t ns;
    } good[] = {{"0", 0},           {"1ns", 1},          {"250us", 250000},     {"1.5ms", 1500000}, {"2s", 2000000000},
                {".5s", 500000000}, {"1m", 60000000000}, {"1h", 3600000000000}, {"0ms", 0}};
    static const char *const bad[] = {"",      "5",   "ms",     "-1s",          "1d",    "1 s", "1s2",
                                      "1e3ms", "nan", "1.2.3s", "99999999999m", "0x10s", "inf", "+1s"};
    char err[160];
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        int64_t ns = -1;
        assert_int_equal(conf_parse_duration(good[i].text, &ns, err, sizeof err), 0);
        assert_int_equal(ns, good[i].ns);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int64_t ns;
        err[0] = '\0';
        if (conf_parse_duration(bad[i], &ns, err, sizeof err) != -1 || !err[0])
            fail_msg("duration '%s' accepted", bad[i]);
    }
    int64_t ns;
    conf_parse_duration("5", &ns, err, sizeof err);
    assert_non_null(strstr(err, "needs a unit"));
}

static void test_numbers(void **state)
{
    (void)state;
    double v;
    const char *end;
    assert_int_equal(conf_parse_number("12.5x", &v, &end), 0);
    assert_true(v == 12.5 && strcmp(end, "x") == 0);
    assert_int_equal(conf_parse_number(".5", &v, &end), 0);
    static const char *const bad[] = {"", "-1", "+1", "1e3", "0x1", "inf", "nan", ".", "1..2", "a"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (conf_parse_number(bad[i], &v, &end) == 0 && *end == '\0')
            fail_msg("number '%s' accepted whole", bad[i]);
    }
    uint64_t u;
    assert_int_equal(conf_parse_uint("42", 1, 100, &u), 0);
    assert_int_equal(u, 42);
    static const char *const badu[] = {"0", "101", "-1", "+5", "5x", "", " 5", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof badu / sizeof *badu; i++)
        if (conf_parse_uint(badu[i], 1, 100, &u) != -1)
            fail_msg("uint '%s' accepted", badu[i]);
}

static void test_bytes(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t v;
    } good[] = {{"0", 0},        {"1024", 1024},        {"64k", 65536},
                {"1M", 1048576}, {"2g", 2147483648ull}, {"1024G", 1ull << 40}};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        uint64_t v;
        assert_int_equal(conf_parse_bytes(good[i].text, &v), 0);
        assert_int_equal(v, good[i].v);
    }
    static const char *const bad[] = {"", "k", "-1", "1.5m", "1kb", "1025g", "64 k", "99999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint64_t v;
        if (conf_parse_bytes(bad[i], &v) != -1)
            fail_msg("size '%s' accepted", bad[i]);
    }
}

static void test_split(void **state)
{
    (void)state;
    char *w[CONF_MAX_WORDS];
    char a[] = "  backend n1\t127.0.0.1:9001   weight=2 # the first\n";
    assert_int_equal(conf_split(a, w, CONF_MAX_WORDS), 4);
    assert_string_equal(w[0], "backend");
    assert_string_equal(w[1], "n1");
    assert_string_equal(w[2], "127.0.0.1:9001");
    assert_string_equal(w[3], "weight=2");
    char b[] = "   # only a comment";
    assert_int_equal(conf_split(b, w, CONF_MAX_WORDS), 0);
    char c[] = "";
    assert_int_equal(conf_split(c, w, CONF_MAX_WORDS), 0);
    char d[] = "path=/a#b x";
    assert_int_equal(conf_split(d, w, CONF_MAX_WORDS), 2);
    assert_string_equal(w[0], "path=/a#b");
    char e[] = "a b c";
    assert_int_equal(conf_split(e, w, 2), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_split),
    };
    return cmocka_run_group_tests_name("conf", tests, NULL, NULL);
}
