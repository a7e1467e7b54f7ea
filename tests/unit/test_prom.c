/* prom: HELP/TYPE once per family, label and HELP escaping, number formats, the sticky error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/prom.h"

#include <math.h>
#include <string.h>

/* The buffer as a C string (the buf keeps no terminator). */
static const char *text(struct buf *b)
{
    assert_int_equal(buf_append(b, "", 1), 0);
    b->wpos--;
    return buf_head(b);
}

static void test_family_header_written_once(void **state)
{
    (void)state;
    struct buf b = {0};
    struct prom p;
    prom_init(&p, &b);
    prom_family(&p, PROM_COUNTER, "x_total", "things");
    prom_u64(&p, &(struct prom_label){"k", "a"}, 1, 1);
    prom_family(&p, PROM_COUNTER, "x_total", "things");
    prom_u64(&p, &(struct prom_label){"k", "b"}, 1, 2);
    prom_scalar(&p, PROM_GAUGE, "y", "now", 7);
    assert_string_equal(text(&b), "# HELP x_total things\n# TYPE x_total counter\n"
                                  "x_total{k=\"a\"} 1\nx_total{k=\"b\"} 2\n"
                                  "# HELP y now\n# TYPE y gauge\ny 7\n");
    assert_int_equal(prom_error(&p), 0);
    buf_free(&b);
}

static void test_label_values_escaped(void **state)
{
    (void)state;
    struct buf b = {0};
    struct prom p;
    prom_init(&p, &b);
    prom_family(&p, PROM_GAUGE, "g", "h");
    struct prom_label l[] = {{"a", "q\"b\\n\nx"}, {"e", ""}};
    prom_u64(&p, l, 2, 18446744073709551615u);
    assert_string_equal(text(&b), "# HELP g h\n# TYPE g gauge\ng{a=\"q\\\"b\\\\n\\nx\",e=\"\"} 18446744073709551615\n");
    buf_free(&b);
}

/* HELP escapes backslash and newline only: a quote stays as written (refserver's help texts have some). */
static void test_help_escaped(void **state)
{
    (void)state;
    struct buf b = {0};
    struct prom p;
    prom_init(&p, &b);
    prom_family(&p, PROM_GAUGE, "g", "a \"q\" b\\c\nd");
    assert_string_equal(text(&b), "# HELP g a \"q\" b\\\\c\\nd\n# TYPE g gauge\n");
    buf_free(&b);
}

static void test_doubles(void **state)
{
    (void)state;
    struct buf b = {0};
    struct prom p;
    prom_init(&p, &b);
    prom_family(&p, PROM_GAUGE, "d", "h");
    b.wpos = b.rpos = 0;
    prom_double(&p, NULL, 0, 0.1);
    prom_double(&p, NULL, 0, 2.5e-300);
    prom_double(&p, NULL, 0, 1.0 / 3);
    prom_double(&p, NULL, 0, -INFINITY);
    prom_double(&p, NULL, 0, INFINITY);
    prom_double(&p, NULL, 0, NAN);
    prom_double(&p, NULL, 0, 3);
    assert_string_equal(text(&b), "d 0.1\nd 2.5e-300\nd 0.33333333333333331\nd -Inf\nd +Inf\nd NaN\nd 3\n");
    buf_free(&b);
}

/* A full buffer makes the writer fail once and for all, without writing a line cut in the middle afterwards. */
static void test_error_is_sticky(void **state)
{
    (void)state;
    struct buf b = {.max = 40};
    struct prom p;
    prom_init(&p, &b);
    prom_scalar(&p, PROM_COUNTER, "a_total", "a counter with a long help text", 1);
    assert_int_equal(prom_error(&p), -1);
    size_t len = buf_len(&b);
    prom_scalar(&p, PROM_COUNTER, "b", "b", 1);
    assert_int_equal(buf_len(&b), len);
    assert_int_equal(prom_error(&p), -1);
    buf_free(&b);
}

static void test_name_too_long_fails(void **state)
{
    (void)state;
    struct buf b = {0};
    struct prom p;
    char name[200];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    prom_init(&p, &b);
    prom_scalar(&p, PROM_GAUGE, name, "h", 1);
    assert_int_equal(prom_error(&p), -1);
    assert_int_equal(buf_len(&b), 0);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_family_header_written_once),
        cmocka_unit_test(test_label_values_escaped),
        cmocka_unit_test(test_help_escaped),
        cmocka_unit_test(test_doubles),
        cmocka_unit_test(test_error_is_sticky),
        cmocka_unit_test(test_name_too_long_fails),
    };
    return cmocka_run_group_tests_name("prom", tests, NULL, NULL);
}
