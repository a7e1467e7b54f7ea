/* loadgen/httpc.c: chunked response bodies (whole, cut anywhere, malformed) and the polling client's cookie jar.
 * Every input is parsed from right before a guard page, so a read past the end crashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "guard.h"
#include "loadgen/httpc.h"

#include <stdio.h>
#include <string.h>

static long chunked(const char *s, size_t max, char *body, size_t cap, size_t *blen)
{
    size_t n = strlen(s);
    char *g = guarded(s, n);
    long rc = httpc_chunked(g, n, max, blen);
    if (rc > 0) {
        assert_true(*blen < cap);
        memcpy(body, g, *blen);
        body[*blen] = '\0';
    }
    return rc;
}

static void test_chunked_whole(void **state)
{
    (void)state;
    static const struct {
        const char *in, *body;
    } ok[] = {
        {"0\r\n\r\n", ""},
        {"2\r\nok\r\n0\r\n\r\n", "ok"},
        {"5\r\n{\"cod\r\n14\r\ne\":1,\"message\":\"xy\"}\r\n0\r\n\r\n", "{\"code\":1,\"message\":\"xy\"}"},
        {"2;ext=1\r\nab\r\n1 ;x\r\nc\r\n0\r\nX-Trailer: 1\r\n\r\n", "abc"},
        {"A\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
    };
    char body[64];
    size_t blen;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        long rc = chunked(ok[i].in, 1000, body, sizeof body, &blen);
        if (rc != (long)strlen(ok[i].in) || strcmp(body, ok[i].body) != 0)
            fail_msg("case %zu: rc %ld body '%s'", i, rc, rc > 0 ? body : "");
    }
}

/* Every proper prefix of a valid body is incomplete, never malformed, and leaves the bytes as they were. */
static void test_chunked_cut(void **state)
{
    (void)state;
    const char *in = "4\r\nwxyz\r\n3;a=b\r\n123\r\n0\r\nT: v\r\n\r\n";
    size_t n = strlen(in), blen;
    for (size_t cut = 0; cut < n; cut++) {
        char *g = guarded(in, cut);
        if (httpc_chunked(g, cut, 1000, &blen) != -2)
            fail_msg("a cut at %zu is not incomplete", cut);
        assert_memory_equal(g, in, cut);
    }
}

static void test_chunked_bad(void **state)
{
    (void)state;
    const char *bad[] = {
        "x\r\n",                  /* not hex */
        "\r\n",                   /* no size */
        "2\nok\r\n0\r\n\r\n",     /* a bare LF */
        "2\r\nokX\r\n0\r\n\r\n",  /* the chunk is longer than its size */
        "2\r\nok\n0\r\n\r\n",     /* no CR after the data */
        "1234567890123456\r\n",   /* a size with too many digits */
        "0\r\nbad trailer\n\r\n", /* a trailer line without CR */
        "2x\r\nok\r\n0\r\n\r\n",  /* junk after the size */
        "1 \r\nc\r\n0\r\n\r\n",   /* whitespace after a size only before a ';' (RFC 9112 chunk-ext) */
        "2\r\nok\r\n0\r\n\r",     /* 0\r\n then CR and a wrong byte would follow: still a prefix */
    };
    size_t blen;
    char body[16];
    for (size_t i = 0; i + 1 < sizeof bad / sizeof bad[0]; i++)
        if (chunked(bad[i], 1000, body, sizeof body, &blen) != -1)
            fail_msg("'%s' is not malformed", bad[i]);
    assert_int_equal(chunked(bad[9], 1000, body, sizeof body, &blen), -2);
    /* over the body limit, in one chunk or in all */
    assert_int_equal(chunked("b\r\n0123456789a\r\n0\r\n\r\n", 10, body, sizeof body, &blen), -1);
    assert_int_equal(chunked("6\r\n012345\r\n6\r\n012345\r\n0\r\n\r\n", 10, body, sizeof body, &blen), -1);
    assert_int_equal(chunked("b\r\n0123", 10, body, sizeof body, &blen), -1); /* known before the data comes */
    assert_int_equal(chunked("a\r\n0123456789\r\n0\r\n\r\n", 10, body, sizeof body, &blen), 20); /* at it */
}

static void set(char *jar, size_t cap, const char *sc, int want)
{
    const char *g = guarded(sc, strlen(sc));
    if (httpc_jar_set(jar, cap, g, strlen(sc)) != want)
        fail_msg("Set-Cookie '%s' into '%s': not %d", sc, jar, want);
}

static void test_jar(void **state)
{
    (void)state;
    char jar[64] = "";
    set(jar, sizeof jar, "SRVID=n1; Path=/; HttpOnly", 0);
    assert_string_equal(jar, "SRVID=n1");
    set(jar, sizeof jar, "io=n2~lv_VI97HAXpY6yYWAAAC; Path=/; HttpOnly; SameSite=Lax", 0);
    assert_string_equal(jar, "SRVID=n1; io=n2~lv_VI97HAXpY6yYWAAAC");
    set(jar, sizeof jar, "SRVID=n2", 0); /* the same name replaces */
    assert_string_equal(jar, "io=n2~lv_VI97HAXpY6yYWAAAC; SRVID=n2");
    set(jar, sizeof jar, "  io=x ;Path=/", 0);
    assert_string_equal(jar, "SRVID=n2; io=x");
    set(jar, sizeof jar, "e=", 0); /* an empty value is a value */
    assert_string_equal(jar, "SRVID=n2; io=x; e=");
    set(jar, sizeof jar, "io = y", 0); /* spaces around '=' as RFC 6265 section 5.2 reads them: io again */
    assert_string_equal(jar, "SRVID=n2; e=; io = y");
    set(jar, sizeof jar, "io=x", 0);
    assert_string_equal(jar, "SRVID=n2; e=; io=x");
    const char *bad[] = {"", "novalue", "=v", "a b=c", "a=b\x01", "a=b,c", "(a)=1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        set(jar, sizeof jar, bad[i], -1);
    assert_string_equal(jar, "SRVID=n2; e=; io=x");
    /* a full jar keeps what it has */
    char small[16] = "";
    set(small, sizeof small, "a=1", 0);
    set(small, sizeof small, "bbbbbb=222222", -1);
    assert_string_equal(small, "a=1");
    set(small, sizeof small, "a=12345678901234", -1);
    assert_string_equal(small, "a=1");
    set(small, sizeof small, "a=123456789012", 0); /* replacing frees the old one's room */
    assert_string_equal(small, "a=123456789012");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunked_whole),
        cmocka_unit_test(test_chunked_cut),
        cmocka_unit_test(test_chunked_bad),
        cmocka_unit_test(test_jar),
    };
    return cmocka_run_group_tests(tests, NULL, unmap_guard);
}
