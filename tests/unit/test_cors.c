/* refserver's CORS (refserver/cors.h): which --cors-origin values start the node, which Origins are echoed, and the
 * exact header lines of an answer (never '*' with credentials; Vary: Origin whatever the Origin). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "refserver/cors.h"

#include <string.h>

static int check(const char *list)
{
    char err[256] = "";
    int rc = cors_check_list(list, err, sizeof err);
    assert_true(rc == 0 ? err[0] == '\0' : err[0] != '\0');
    return rc;
}

static void test_check_good(void **state)
{
    (void)state;
    assert_int_equal(check("*"), 0);
    assert_int_equal(check("http://127.0.0.1:8000"), 0);
    assert_int_equal(check("https://app.example.com"), 0);
    assert_int_equal(check("https://app.example.com,http://localhost:3000"), 0);
    assert_int_equal(check("http://[::1]:8080"), 0);
    assert_int_equal(check("https://a.com:8443"), 0);
}

static void test_check_bad(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "app.example.com",
                         "http://",
                         "http://a.com/",
                         "http://a.com/path",
                         "http://A.com",
                         "HTTP://a.com",
                         "http://a.com:80",
                         "https://a.com:443",
                         "http://a.com:0",
                         "http://a.com:65536",
                         "http://a.com:8x",
                         "http://a.com:",
                         "http://a.com,",
                         ",http://a.com",
                         "http://a.com,,http://b",
                         "**",
                         "http://*.a.com",
                         "http://[::1",
                         "http://a b.com",
                         "://a.com"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(check(bad[i]), -1);
    char big[300] = "http://";
    memset(big + 7, 'a', 250);
    assert_int_equal(check(big), -1);
}

static bool allowed(const char *list, const char *origin)
{
    return cors_allowed(list, origin, origin ? strlen(origin) : 0);
}

static void test_allowed(void **state)
{
    (void)state;
    const char *list = "https://a.com,http://b.com:8000";
    assert_true(allowed(list, "https://a.com"));
    assert_true(allowed(list, "http://b.com:8000"));
    assert_false(allowed(list, "http://a.com"));
    assert_false(allowed(list, "https://a.com.evil"));
    assert_false(allowed(list, "https://a.co"));
    assert_false(allowed(list, "http://b.com"));
    assert_false(allowed(list, "https://a.com,http://b.com:8000"));
    assert_false(allowed(list, NULL));
    assert_false(allowed(list, ""));
    assert_true(allowed("*", "http://anything:1"));
    assert_true(allowed("*", "null")); /* '*' echoes whatever the browser sends, as the cors package's origin: true */
    assert_false(allowed("*", NULL));
}

static void test_answer_headers(void **state)
{
    (void)state;
    char out[512];
    const char *o = "http://127.0.0.1:8000";
    int n = cors_answer_headers("*", o, strlen(o), out, sizeof out);
    assert_string_equal(out, "Access-Control-Allow-Origin: http://127.0.0.1:8000\r\n"
                             "Access-Control-Allow-Credentials: true\r\nVary: Origin\r\n");
    assert_int_equal(n, (int)strlen(out));
    assert_int_equal(cors_answer_headers("http://other", o, strlen(o), out, sizeof out), 14);
    assert_string_equal(out, "Vary: Origin\r\n");
    assert_int_equal(cors_answer_headers("*", NULL, 0, out, sizeof out), 14);
    assert_string_equal(out, "Vary: Origin\r\n");
    assert_int_equal(cors_answer_headers("*", o, strlen(o), out, 20), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_good),
        cmocka_unit_test(test_check_bad),
        cmocka_unit_test(test_allowed),
        cmocka_unit_test(test_answer_headers),
    };
    return cmocka_run_group_tests_name("cors", tests, NULL, NULL);
}
