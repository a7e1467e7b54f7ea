/* Unit tests for loadgen/template.c: --send templates and --find paths. */
#include "loadgen/template.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static size_t render(const char *tpl, const char *payload, char *out, size_t cap)
{
    struct lg_template t;
    char err[160];
    assert_int_equal(lg_template_parse(tpl, &t, err, sizeof err), 0);
    struct lg_msg m = {.emitter = 7, .round = 3, .seq = 4, .send_ns = 1};
    size_t n = lg_template_render(&t, payload, strlen(payload), &m, 1700000000123LL, out, cap);
    out[n < cap ? n : cap - 1] = '\0';
    return n;
}

static void test_payload_escaped_only_inside_a_string(void **state)
{
    (void)state;
    char out[256];
    render("{\"text\":\"{{payload}}\"}", "{\"wsh\":1}", out, sizeof out);
    assert_string_equal(out, "{\"text\":\"{\\\"wsh\\\":1}\"}");
    render("{\"t\":\"\",\"raw\":{{payload}}}", "{\"wsh\":1}", out, sizeof out); /* after a closed string */
    assert_string_equal(out, "{\"t\":\"\",\"raw\":{\"wsh\":1}}");
    render("say \"hi\" then {{payload}}", "{\"a\"}", out, sizeof out); /* quotes closed again: outside */
    assert_string_equal(out, "say \"hi\" then {\"a\"}");
    render("{\"k\":\"a\\\"b {{payload}}\"}", "\"", out, sizeof out); /* an escaped quote does not end the string */
    assert_string_equal(out, "{\"k\":\"a\\\"b \\\"\"}");
}

static void test_numbers(void **state)
{
    (void)state;
    char out[256];
    render("{{seq}}/{{round}}/{{emitter}}/{{time_ms}}:{{payload}}", "P", out, sizeof out);
    assert_string_equal(out, "4/3/7/1700000000123:P");
}

static void test_bad_templates(void **state)
{
    (void)state;
    struct lg_template t;
    char err[160];
    assert_int_equal(lg_template_parse("no placeholder", &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "exactly once"));
    assert_int_equal(lg_template_parse("{{payload}}{{payload}}", &t, err, sizeof err), -1);
    assert_int_equal(lg_template_parse("{{payload}} {{when}}", &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown placeholder"));
    assert_int_equal(lg_template_parse("{{payload}} {{seq", &t, err, sizeof err), -1);
}

static void test_render_refuses_a_small_buffer(void **state)
{
    (void)state;
    struct lg_template t;
    char err[160], out[8];
    struct lg_msg m = {0};
    assert_int_equal(lg_template_parse("[{{payload}}]", &t, err, sizeof err), 0);
    assert_int_equal(lg_template_render(&t, "0123456789", 10, &m, 0, out, sizeof out), 0);
}

static long find(const char *path, const char *msg, size_t len, char *out, size_t cap)
{
    struct lg_find f;
    char err[160];
    assert_int_equal(lg_find_parse(path, &f, err, sizeof err), 0);
    long n = lg_find_extract(&f, msg, len, out, cap);
    lg_find_free(&f);
    if (n >= 0)
        out[n] = '\0';
    return n;
}

static void test_pointer_into_objects_and_arrays(void **state)
{
    (void)state;
    char out[64];
    const char *msg = "{\"from\":1, \"data\" : [ {\"x\":[1,2]}, {\"msg\":\"a\\\"b\",\"n\":2} ], \"a/b\":{\"~\":true}}";
    assert_int_equal(find("/data/1/msg", msg, strlen(msg), out, sizeof out - 1), 3);
    assert_string_equal(out, "a\"b");
    assert_int_equal(find("/data/0", msg, strlen(msg), out, sizeof out - 1), 11); /* the value, not the rest */
    assert_string_equal(out, "{\"x\":[1,2]}");
    assert_int_equal(find("/a~1b/~0", msg, strlen(msg), out, sizeof out - 1), 4);
    assert_string_equal(out, "true");
    assert_int_equal(find("/data/2", msg, strlen(msg), out, sizeof out - 1), -1);
    assert_int_equal(find("/nope", msg, strlen(msg), out, sizeof out - 1), -1);
    assert_int_equal(find("/from/x", msg, strlen(msg), out, sizeof out - 1), -1);
    assert_int_equal(find("", "\"whole\"", 7, out, sizeof out - 1), 5);
}

static void test_pointer_on_a_head(void **state)
{
    (void)state;
    char out[64];
    const char *head = "{\"type\":\"chat\",\"text\":\"{\\\"wsh\\\":1,\\\"e\\\":2"; /* the rest is still on the way */
    assert_int_equal(find("/text", head, strlen(head), out, sizeof out - 1), 14);
    assert_string_equal(out, "{\"wsh\":1,\"e\":2");
    assert_int_equal(find("/later", head, strlen(head), out, sizeof out - 1), -1);
}

static void test_regex_group_unescaped(void **state)
{
    (void)state;
    char out[64];
    const char *msg = "chat from 3: {\\\"wsh\\\":1} end";
    assert_int_equal(find("re:: (.*) end", msg, strlen(msg), out, sizeof out - 1), 9);
    assert_string_equal(out, "{\"wsh\":1}");
    assert_int_equal(find("re:^chat", msg, strlen(msg), out, sizeof out - 1), 4); /* no group: the match */
    assert_int_equal(find("re:^nope", msg, strlen(msg), out, sizeof out - 1), -1);
}

static void test_bad_paths(void **state)
{
    (void)state;
    struct lg_find f;
    char err[160];
    assert_int_equal(lg_find_parse("text", &f, err, sizeof err), -1);
    assert_int_equal(lg_find_parse("/a~2", &f, err, sizeof err), -1);
    assert_int_equal(lg_find_parse("/1/2/3/4/5/6/7/8/9", &f, err, sizeof err), -1);
    assert_int_equal(lg_find_parse("re:(", &f, err, sizeof err), -1);
    assert_non_null(strstr(err, "--find re:"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_payload_escaped_only_inside_a_string),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_bad_templates),
        cmocka_unit_test(test_render_refuses_a_small_buffer),
        cmocka_unit_test(test_pointer_into_objects_and_arrays),
        cmocka_unit_test(test_pointer_on_a_head),
        cmocka_unit_test(test_regex_group_unescaped),
        cmocka_unit_test(test_bad_paths),
    };
    return cmocka_run_group_tests_name("template", tests, NULL, NULL);
}
