/* loadgen's tally: errors with their first example, statuses and node tables up to their limits, and the merge the
 * coordinator does of every worker's tally. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "loadgen/tally.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void error(struct lg_tally *t, enum lg_err k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void error(struct lg_tally *t, enum lg_err k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lg_tally_verror(t, k, fmt, ap);
    va_end(ap);
}

static void test_errors_keep_first_example(void **state)
{
    (void)state;
    struct lg_tally *t = calloc(1, sizeof *t);
    assert_non_null(t);
    error(t, LG_ERR_REFUSED, "connect to %s: refused", "x");
    error(t, LG_ERR_REFUSED, "connect to %s: refused", "y");
    assert_int_equal(t->err_counts[LG_ERR_REFUSED], 2);
    assert_string_equal(t->err_example[LG_ERR_REFUSED], "connect to x: refused");
    char long_msg[400];
    memset(long_msg, 'm', sizeof long_msg - 1);
    long_msg[sizeof long_msg - 1] = '\0';
    error(t, LG_ERR_TLS, "%s", long_msg); /* cut to the example's room */
    assert_int_equal(strlen(t->err_example[LG_ERR_TLS]), sizeof t->err_example[0] - 1);
    free(t);
}

static void test_statuses(void **state)
{
    (void)state;
    struct lg_tally *t = calloc(1, sizeof *t);
    assert_non_null(t);
    lg_tally_status(t, 503);
    lg_tally_status(t, 404);
    lg_tally_status(t, 503);
    assert_int_equal(t->nstatus, 2);
    assert_int_equal(t->status_codes[0], 503);
    assert_int_equal(t->status_counts[0], 2);
    assert_int_equal(t->status_counts[1], 1);
    for (int s = 0; s < LG_MAX_STATUS + 5; s++)
        lg_tally_status(t, 600 + s);
    assert_int_equal(t->nstatus, LG_MAX_STATUS); /* the rest are not broken down */
    assert_int_equal(t->status_counts[LG_MAX_STATUS - 1], 1);
    free(t);
}

static void test_nodes(void **state)
{
    (void)state;
    struct lg_nodes *n = calloc(1, sizeof *n);
    assert_non_null(n);
    lg_tally_node(n, "n1xyz", 2);
    lg_tally_node(n, "n1", 2);
    lg_tally_node(n, NULL, 0);
    assert_int_equal(n->n, 1);
    assert_string_equal(n->names[0], "n1");
    assert_int_equal(n->counts[0], 2);
    assert_int_equal(n->unknown, 1);
    char name[100];
    memset(name, 'a', sizeof name);
    lg_tally_node(n, name, sizeof name); /* cut at 63 bytes */
    lg_tally_node(n, name, 63);
    assert_int_equal(n->n, 2);
    assert_int_equal(strlen(n->names[1]), 63);
    assert_int_equal(n->counts[1], 2);
    for (int i = 0; i < LG_MAX_NODES; i++) {
        snprintf(name, sizeof name, "x%d", i);
        lg_tally_node(n, name, strlen(name));
    }
    assert_int_equal(n->n, LG_MAX_NODES);
    assert_int_equal(n->other, 2);
    free(n);
}

static void test_merge(void **state)
{
    (void)state;
    struct lg_tally *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    error(a, LG_ERR_REFUSED, "a refused");
    error(b, LG_ERR_REFUSED, "b refused");
    error(b, LG_ERR_TLS, "b tls");
    lg_tally_status(a, 503);
    lg_tally_status(b, 404);
    lg_tally_status(b, 503);
    lg_tally_node(&a->nodes, "n1", 2);
    lg_tally_node(&b->nodes, "n2", 2);
    lg_tally_node(&b->nodes, "n1", 2);
    lg_tally_node(&b->nodes, NULL, 0);
    b->nodes.other = 4;
    a->sio_upgraded = 1, b->sio_upgraded = 2, b->sio_polling = 3;
    lg_tally_merge(a, b);
    assert_int_equal(a->err_counts[LG_ERR_REFUSED], 2);
    assert_string_equal(a->err_example[LG_ERR_REFUSED], "a refused"); /* the first worker's stays */
    assert_string_equal(a->err_example[LG_ERR_TLS], "b tls");
    assert_int_equal(a->nstatus, 2);
    assert_int_equal(a->status_codes[0], 503);
    assert_int_equal(a->status_counts[0], 2);
    assert_int_equal(a->status_codes[1], 404);
    assert_int_equal(a->nodes.n, 2);
    assert_string_equal(a->nodes.names[1], "n2");
    assert_int_equal(a->nodes.counts[0], 2);
    assert_int_equal(a->nodes.unknown, 1);
    assert_int_equal(a->nodes.other, 4);
    assert_int_equal(a->sio_upgraded, 3);
    assert_int_equal(a->sio_polling, 3);
    /* a full table: new names from the merge count as other */
    memset(&a->nodes, 0, sizeof a->nodes);
    for (int i = 0; i < LG_MAX_NODES; i++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", i);
        lg_tally_node(&a->nodes, name, strlen(name));
    }
    lg_tally_merge_nodes(&a->nodes, &b->nodes);
    assert_int_equal(a->nodes.n, LG_MAX_NODES);
    assert_int_equal(a->nodes.other, 2 + 4);
    free(a);
    free(b);
}

/* Every listed count is added, and what is the coordinator's own (the round's time, its percentiles) is not. */
static void test_round_add(void **state)
{
    (void)state;
    struct lg_round dst = {.start_ns = 5, .p99_ns = 7, .timed_out = true}, src = {.start_ns = 9, .p99_ns = 9};
    uint32_t v = 1;
#define SET(field)                                                                                                     \
    dst.field = v;                                                                                                     \
    src.field = 10 * v++;
    LG_ROUND_COUNTS(SET)
#undef SET
    lg_round_add(&dst, &src);
    v = 1;
#define CHECK(field)                                                                                                   \
    assert_int_equal(dst.field, 11 * v);                                                                               \
    v++;
    LG_ROUND_COUNTS(CHECK)
#undef CHECK
    assert_int_equal(v, 12); /* the eleven counts a worker reports */
    assert_int_equal(dst.start_ns, 5);
    assert_int_equal(dst.p99_ns, 7);
    assert_true(dst.timed_out);
    assert_int_equal(dst.missing, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors_keep_first_example),
        cmocka_unit_test(test_statuses),
        cmocka_unit_test(test_nodes),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_round_add),
    };
    return cmocka_run_group_tests_name("tally", tests, NULL, NULL);
}
