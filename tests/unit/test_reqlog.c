/* lb's request log line: every field in its place (client, worker, node, request, status, Tq/Tc/Tr/Tt, bytes,
 * termination, cookie action), unreached milestones as -1, the lb's own answers with their reason, a client's
 * control characters and quotes kept off the line, and a cut line still terminated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lb/reqlog.h"

#include <string.h>

static void test_full_request_line(void **state)
{
    (void)state;
    struct reqlog r = {.t_start = 100.0};
    reqlog_begin(&r, 100.010, "GET", 3, "/socket.io/?EIO=4", 17);
    r.t_connect = 100.012;
    r.t_response = 100.015;
    r.status = 200;
    r.bytes_in = 80;
    r.bytes_out = 600;
    r.cookie = REQLOG_CK_DOWN;
    r.cookie_set = true;
    char line[512];
    reqlog_format(&r, 100.020, "127.0.0.1:5000", "worker 0", "n2", "ok", line, sizeof line);
    assert_string_equal(line, "request 127.0.0.1:5000 [worker 0] node=n2 \"GET /socket.io/?EIO=4\" 200 "
                              "Tq/Tc/Tr/Tt=10/2/3/20 ms bytes=80/600 term=ok cookie=node-down,set");
}

static void test_reused_connection_and_unreached_milestones(void **state)
{
    (void)state;
    struct reqlog r = {.t_start = 5.0};
    reqlog_begin(&r, 5.0, "POST", 4, "/x", 2);
    r.t_response = 5.004; /* a kept-alive node connection: no connect, Tc 0 */
    char line[512];
    reqlog_format(&r, 5.005, "c", "w", "n1", "ok", line, sizeof line);
    assert_non_null(strstr(line, "Tq/Tc/Tr/Tt=0/0/4/5 ms"));
    reqlog_reset(&r, 6.0);
    assert_false(r.active);
    reqlog_begin(&r, 6.5, "GET", 3, "/", 1);
    reqlog_format(&r, 7.0, "c", "w", "-", "client-aborted", line, sizeof line);
    assert_non_null(strstr(line, "node=- \"GET /\" - Tq/Tc/Tr/Tt=500/-1/-1/1000 ms"));
    assert_non_null(strstr(line, "term=client-aborted cookie=none"));
}

static void test_lb_answer_carries_its_reason(void **state)
{
    (void)state;
    struct reqlog r = {0};
    reqlog_fail(&r, 400, "malformed request line"); /* no head parsed: HAProxy's <BADREQ> */
    assert_true(r.active);
    reqlog_fail(&r, 0, "a later reason"); /* the first one stays */
    char line[512];
    reqlog_format(&r, 1.0, "c", "w", "-", "lb-error", line, sizeof line);
    assert_non_null(strstr(line, "\"- -\" 400 "));
    assert_non_null(strstr(line, "term=lb-error cookie=none why=\"malformed request line\""));
}

static void test_hostile_path_stays_on_one_line(void **state)
{
    (void)state;
    struct reqlog r = {0};
    const char path[] = "/a\"b\nc d";
    reqlog_begin(&r, 1.0, "GET", 3, path, sizeof path - 1);
    assert_string_equal(r.path, "/a?b?c?d");
    char longpath[400];
    memset(longpath, 'p', sizeof longpath);
    reqlog_begin(&r, 1.0, "GET", 3, longpath, sizeof longpath);
    assert_int_equal(strlen(r.path), sizeof r.path - 1);
    char small[40];
    int n = reqlog_format(&r, 2.0, "c", "w", "n", "ok", small, sizeof small);
    assert_int_equal(n, (int)sizeof small - 1);
    assert_int_equal(strlen(small), sizeof small - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_request_line),
        cmocka_unit_test(test_reused_connection_and_unreached_milestones),
        cmocka_unit_test(test_lb_answer_carries_its_reason),
        cmocka_unit_test(test_hostile_path_stays_on_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
