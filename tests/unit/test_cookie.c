/* The cookie grammar (common/cookie.h: a Cookie header's pairs, a Set-Cookie's first pair) and lb's sticky-cookie
 * helpers on top of it: finding a cookie among its neighbours (prefix and suffix names, quotes, odd spacing,
 * empty pairs), stripping it, prefix mode both ways, the insert-mode value, and the config checker's tables. Parsing
 * inputs end right before a guard page, so a read past len crashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lb/cookie.h"
#include "tests/unit/guard.h"

#include <stdio.h>
#include <string.h>

/* The value of name in hdr (at a guard page), or NULL when absent; kept in a static buffer as a C string. */
static const char *find(const char *hdr, const char *name)
{
    static char got[256];
    size_t n = strlen(hdr), vlen = 99;
    const char *in = guarded(hdr, n), *v = in;
    if (!cookie_find(in, n, name, &v, &vlen)) {
        assert_null(v);
        assert_int_equal(vlen, 0);
        return NULL;
    }
    assert_true(v >= in && v + vlen <= in + n);
    assert_true(vlen < sizeof got);
    memcpy(got, v, vlen);
    got[vlen] = '\0';
    return got;
}

/* Strip name from hdr (at a guard page) into a roomy buffer; check the length against the string. */
static const char *strip(const char *hdr, const char *name)
{
    static char out[256];
    size_t n = strlen(hdr);
    memset(out, 'X', sizeof out);
    int rc = cookie_strip(guarded(hdr, n), n, name, out, sizeof out);
    assert_true(rc >= 0);
    assert_int_equal(strlen(out), rc);
    return out;
}

static void test_find_position(void **state)
{
    (void)state;
    assert_string_equal(find("SRVID=n1", "SRVID"), "n1");
    assert_string_equal(find("SRVID=n1; a=1; b=2", "SRVID"), "n1");
    assert_string_equal(find("a=1; SRVID=n2; b=2", "SRVID"), "n2");
    assert_string_equal(find("a=1; b=2; SRVID=n3", "SRVID"), "n3");
    assert_string_equal(find("SRVID=first; SRVID=second", "SRVID"), "first");
}

static void test_find_absent(void **state)
{
    (void)state;
    assert_null(find("", "SRVID"));
    assert_null(find("a=1; b=2", "SRVID"));
    assert_null(find("SRVID; a=1", "SRVID"));     /* no '=': not a cookie */
    assert_null(find("srvid=n1", "SRVID"));       /* names are case-sensitive */
    assert_null(find("a=SRVID=n1", "SRVID"));     /* the name is before the first '=' only */
    assert_null(find("x=1, SRVID=n1", "SRVID"));  /* ',' does not separate */
    assert_null(find(";; ; \t;", "SRVID"));       /* only empty pairs */
    assert_null(find("a=1; SRVI", "SRVID"));      /* a name cut by the end */
    assert_null(find("a=1; SRVID", "SRVID"));     /* the name at the very end, no '=' */
    assert_null(find("a=1; SRVID \t ", "SRVID")); /* and with spaces after it */
}

static void test_find_prefix_and_suffix_names(void **state)
{
    (void)state;
    assert_string_equal(find("SRVIDX=1; SRVID=2", "SRVID"), "2");
    assert_string_equal(find("SRVID=2; SRVIDX=1", "SRVIDX"), "1");
    assert_string_equal(find("XSRVID=1; SRVID=2", "SRVID"), "2");
    assert_string_equal(find("SRVID=1; XSRVID=2", "XSRVID"), "2");
    assert_null(find("SRVIDX=1; XSRVID=2", "SRVID"));
    assert_null(find("SRVID=1", "SRVI"));
}

static void test_find_values(void **state)
{
    (void)state;
    assert_string_equal(find("SRVID=\"n1\"", "SRVID"), "n1");
    assert_string_equal(find("a=1; SRVID=\"n 1\"; b=2", "SRVID"), "n 1"); /* inside quotes, bytes are kept */
    assert_string_equal(find("SRVID=", "SRVID"), "");
    assert_string_equal(find("SRVID=; a=1", "SRVID"), "");
    assert_string_equal(find("SRVID=\"\"", "SRVID"), "");
    assert_string_equal(find("SRVID=\"", "SRVID"), "\"");     /* one quote is not a quoted value */
    assert_string_equal(find("SRVID=\"n1", "SRVID"), "\"n1"); /* nor an unclosed one */
    assert_string_equal(find("SRVID=a=b", "SRVID"), "a=b");
    assert_string_equal(find("SRVID=n1~x", "SRVID"), "n1~x");
}

static void test_find_spacing_and_empty_pairs(void **state)
{
    (void)state;
    assert_string_equal(find("a=1;SRVID=n1", "SRVID"), "n1");
    assert_string_equal(find("  SRVID = n1  ", "SRVID"), "n1");
    assert_string_equal(find("a=1 ;\tSRVID\t=\tn1\t; b=2", "SRVID"), "n1");
    assert_string_equal(find(";;a=1;;; ;SRVID=n1;;", "SRVID"), "n1");
    assert_string_equal(find("SRVID =", "SRVID"), "");
    assert_string_equal(find("a=1; SRVID= \"n1\" ", "SRVID"), "n1");
    assert_string_equal(find("SRVID=n 1 ", "SRVID"), "n 1"); /* inner spaces are the value's */
}

/* The pairs of hdr (at a guard page) as "name=value" or "name" (no '='), joined by '|'. */
static const char *pairs(const char *hdr)
{
    static char out[256];
    size_t n = strlen(hdr), len = 0;
    const char *p = guarded(hdr, n), *end = p + n;
    struct cookie_pair pr;
    out[0] = '\0';
    while (cookie_next(&p, end, &pr)) {
        assert_true(pr.beg >= end - n && pr.end <= end && pr.name_end <= pr.end);
        len += (size_t)snprintf(out + len, sizeof out - len, "%s%.*s", len ? "|" : "", (int)(pr.name_end - pr.beg),
                                pr.beg);
        if (pr.val)
            len += (size_t)snprintf(out + len, sizeof out - len, "=%.*s", (int)(pr.val_end - pr.val), pr.val);
    }
    assert_true(p == end);
    return out;
}

static void test_next_pairs(void **state)
{
    (void)state;
    assert_string_equal(pairs(""), "");
    assert_string_equal(pairs(" ;; \t; "), "");
    assert_string_equal(pairs("a=1;;b = \"x y\" ; c ;=v; d="), "a=1|b=x y|c|=v|d=");
    assert_string_equal(pairs("a=1, b=2"), "a=1, b=2");
    assert_string_equal(pairs("a=\"; b=\""), "a=\"|b=\""); /* a quote does not protect a ';' */
}

/* The first pair of a Set-Cookie value (at a guard page): "name=value", or NULL when it is no cookie. */
static const char *set_pair(const char *sc)
{
    static char out[256];
    size_t n = strlen(sc);
    struct cookie_pair pr;
    if (!cookie_set_cookie_pair(guarded(sc, n), n, &pr)) {
        assert_null(pr.val);
        return NULL;
    }
    snprintf(out, sizeof out, "%.*s=%.*s", (int)(pr.name_end - pr.beg), pr.beg, (int)(pr.val_end - pr.val), pr.val);
    return out;
}

static void test_set_cookie_pair(void **state)
{
    (void)state;
    assert_string_equal(set_pair("SRVID=n1; Path=/; HttpOnly"), "SRVID=n1");
    assert_string_equal(set_pair("io=n2~abc"), "io=n2~abc");
    assert_string_equal(set_pair("  io = \"v\" ;Path=/"), "io=v");
    assert_string_equal(set_pair("e="), "e=");
    assert_string_equal(set_pair("=v"), "=v"); /* a cookie with an empty name: the caller decides */
    assert_string_equal(set_pair("a=b=c; d=e"), "a=b=c");
    assert_null(set_pair(""));
    assert_null(set_pair("novalue; a=b")); /* the attributes never stand in for the pair */
    assert_null(set_pair("; a=b"));
    struct cookie_pair pr;
    assert_true(cookie_set_cookie_pair("SRVID=n1", 8, &pr));
    assert_true(cookie_pair_named(&pr, "SRVID", 5));
    assert_false(cookie_pair_named(&pr, "SRVI", 4));
    assert_false(cookie_set_cookie_pair("SRVID", 5, &pr));
    assert_false(cookie_pair_named(&pr, "SRVID", 5)); /* no '=': nobody's cookie */
}

static void test_strip_positions(void **state)
{
    (void)state;
    assert_string_equal(strip("SRVID=n1; a=1; b=2", "SRVID"), "a=1; b=2");
    assert_string_equal(strip("a=1; SRVID=n1; b=2", "SRVID"), "a=1; b=2");
    assert_string_equal(strip("a=1; b=2; SRVID=n1", "SRVID"), "a=1; b=2");
    assert_string_equal(strip("a=1; b=2", "SRVID"), "a=1; b=2");
    assert_string_equal(strip("SRVIDX=1; SRVID=2; XSRVID=3", "SRVID"), "SRVIDX=1; XSRVID=3");
}

static void test_strip_to_nothing(void **state)
{
    (void)state;
    char out[8] = "XXXXXXX";
    assert_int_equal(cookie_strip("SRVID=n1", 8, "SRVID", out, sizeof out), 0);
    assert_int_equal(out[0], '\0');
    assert_string_equal(strip(" ; SRVID = n1 ;; ", "SRVID"), "");
    assert_string_equal(strip("SRVID=a; SRVID=b", "SRVID"), "");
    assert_string_equal(strip("", "SRVID"), "");
    assert_string_equal(strip(";;", "SRVID"), "");
}

static void test_strip_several_and_spacing(void **state)
{
    (void)state;
    assert_string_equal(strip("SRVID=a; x=1; SRVID=b; y=2; SRVID=c", "SRVID"), "x=1; y=2");
    /* pairs keep their bytes (inner spaces, quotes, '=' spacing); separators become "; " */
    assert_string_equal(strip(";x = 1;;\tSRVID=a ;y=\"2\"\t;z ;", "SRVID"), "x = 1; y=\"2\"; z");
    assert_string_equal(strip("SRVID; a=1", "SRVID"), "SRVID; a=1"); /* no '=': not ours, kept */
    assert_string_equal(strip("srvid=1; SRVID=2", "SRVID"), "srvid=1");
    /* idempotent */
    char once[256];
    strcpy(once, strip(";x = 1;;\tSRVID=a ;y=\"2\"\t;z ;", "SRVID"));
    assert_string_equal(strip(once, "SRVID"), once);
}

static void test_strip_out_too_small(void **state)
{
    (void)state;
    const char *hdr = "a=1; SRVID=n1; b=2"; /* result "a=1; b=2": 8 bytes and the NUL */
    size_t n = strlen(hdr);
    char out[9];
    assert_int_equal(cookie_strip(hdr, n, "SRVID", out, 9), 8);
    assert_string_equal(out, "a=1; b=2");
    assert_int_equal(cookie_strip(hdr, n, "SRVID", out, 8), -1);
    assert_int_equal(cookie_strip(hdr, n, "SRVID", out, 1), -1);
    assert_int_equal(cookie_strip(hdr, n, "SRVID", NULL, 0), -1);
    assert_int_equal(cookie_strip("SRVID=n1", 8, "SRVID", NULL, 0), -1); /* even an empty result needs its NUL */
}

/* prefix_take on hdr at a guard page: its return, the node as a C string, and out. */
static int take(const char *hdr, const char *name, char *node, char *out, size_t outlen)
{
    size_t n = strlen(hdr), node_len = 99;
    const char *in = guarded(hdr, n), *nd = in;
    int rc = cookie_prefix_take(in, n, name, &nd, &node_len, out, outlen);
    if (rc <= 0) {
        assert_null(nd);
        assert_int_equal(node_len, 0);
    } else {
        assert_true(nd >= in && nd + node_len < in + n && nd[node_len] == COOKIE_PREFIX_SEP);
    }
    memcpy(node, nd ? nd : "", node_len);
    node[node_len] = '\0';
    return rc;
}

static void test_prefix_take(void **state)
{
    (void)state;
    char node[64], out[128];
    assert_int_equal(take("io=n1~abc", "io", node, out, sizeof out), 6);
    assert_string_equal(node, "n1");
    assert_string_equal(out, "io=abc");
    assert_int_equal(take("a=1;io = \"n2~x~y\" ;b=2", "io", node, out, sizeof out), 19);
    assert_string_equal(node, "n2");
    assert_string_equal(out, "a=1;io = \"x~y\" ;b=2"); /* only "n2~" goes, spacing and quotes stay */
    assert_int_equal(take("io=n3~", "io", node, out, sizeof out), 3);
    assert_string_equal(node, "n3");
    assert_string_equal(out, "io=");
    assert_int_equal(take("io=~abc", "io", node, out, sizeof out), 6); /* taken, empty node */
    assert_string_equal(node, "");
    assert_string_equal(out, "io=abc");
    assert_int_equal(take("iox=n1~a; xio=n1~b; io=n4~c", "io", node, out, sizeof out), 24);
    assert_string_equal(node, "n4");
    assert_string_equal(out, "iox=n1~a; xio=n1~b; io=c");
}

static void test_prefix_take_nothing(void **state)
{
    (void)state;
    char node[64], out[128];
    static const char *const same[] = {"io=abc", "a=1; b=n1~x", "io; a=n1~x", "IO=n1~x", "a=1;;  io=\"abc\"  ;"};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++) {
        assert_int_equal(take(same[i], "io", node, out, sizeof out), 0);
        assert_string_equal(out, same[i]); /* an unchanged copy, spacing included */
    }
    assert_int_equal(take("io=abc", "io", node, out, 6), -1); /* the copy needs room too */
}

static void test_prefix_take_several(void **state)
{
    (void)state;
    char node[64], out[128];
    /* the first with a separator names the node; every one with a separator loses its own prefix */
    assert_int_equal(take("io=n1~a; x=1; io=n2~b; io=c; io=n1~d", "io", node, out, sizeof out), 27);
    assert_string_equal(node, "n1");
    assert_string_equal(out, "io=a; x=1; io=b; io=c; io=d");
    assert_int_equal(take("io=plain; io=n2~b", "io", node, out, sizeof out), 14);
    assert_string_equal(node, "n2");
    assert_string_equal(out, "io=plain; io=b");
}

static void test_prefix_take_out_too_small(void **state)
{
    (void)state;
    char node[64], out[16];
    assert_int_equal(take("a=1; io=n1~abc", "io", node, out, 12), 11);
    assert_string_equal(out, "a=1; io=abc");
    assert_int_equal(take("a=1; io=n1~abc", "io", node, out, 11), -1);
    assert_string_equal(node, "");
    assert_int_equal(take("a=1; io=n1~abc", "io", node, NULL, 0), -1);
}

static void test_prefix_set(void **state)
{
    (void)state;
    char out[128];
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"io=abc; Path=/; HttpOnly", "io=n1~abc; Path=/; HttpOnly"},
        {"io=abc", "io=n1~abc"},
        {"io=", "io=n1~"},
        {"io=\"abc\"; Secure", "io=\"n1~abc\"; Secure"},
        {" io = abc ;Max-Age=0", " io = n1~abc ;Max-Age=0"},
        {"io=a=b; Domain=x", "io=n1~a=b; Domain=x"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = strlen(cases[i].in);
        int rc = cookie_prefix_set(guarded(cases[i].in, n), n, "io", "n1", out, sizeof out);
        assert_int_equal(rc, strlen(cases[i].want));
        assert_string_equal(out, cases[i].want);
    }
}

static void test_prefix_set_other_and_malformed(void **state)
{
    (void)state;
    char out[32];
    memset(out, 'X', sizeof out);
    assert_int_equal(cookie_prefix_set("sess=abc; Path=/", 16, "io", "n1", out, sizeof out), 0);
    assert_int_equal(cookie_prefix_set("iox=abc", 7, "io", "n1", out, sizeof out), 0);
    assert_int_equal(cookie_prefix_set("IO=abc", 6, "io", "n1", out, sizeof out), 0);
    assert_int_equal(out[0], 'X'); /* nothing written */
    assert_int_equal(cookie_prefix_set("io", 2, "io", "n1", out, sizeof out), -1);
    assert_int_equal(cookie_prefix_set("io; x=1", 7, "io", "n1", out, sizeof out), -1);
    assert_int_equal(cookie_prefix_set("; io=1", 6, "io", "n1", out, sizeof out), -1);
    assert_int_equal(cookie_prefix_set("", 0, "io", "n1", out, sizeof out), -1);
    assert_int_equal(cookie_prefix_set("io=abc", 6, "io", "n1", out, 10), 9);
    assert_int_equal(cookie_prefix_set("io=abc", 6, "io", "n1", out, 9), -1);
}

static void test_prefix_round_trip(void **state)
{
    (void)state;
    static const char *const sets[] = {"io=abc; Path=/", "io=\"q\"", "io=", "io=\"\"", "io=\"", "io=x~y; Secure"};
    char set[64], node[64], out[64];
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) {
        int n = cookie_prefix_set(sets[i], strlen(sets[i]), "io", "node-7", set, sizeof set);
        assert_true(n > 0);
        char *semi = strchr(set, ';');
        if (semi)
            *semi = '\0';
        assert_true(take(set, "io", node, out, sizeof out) > 0);
        assert_string_equal(node, "node-7");
        assert_memory_equal(out, sets[i], strlen(out));
        assert_true(sets[i][strlen(out)] == '\0' || sets[i][strlen(out)] == ';');
    }
}

static void test_insert_value(void **state)
{
    (void)state;
    char out[64];
    static const char want[] = "SRVID=n1; Path=/; HttpOnly";
    assert_int_equal(cookie_insert_value("SRVID", "n1", out, sizeof out), sizeof want - 1);
    assert_memory_equal(out, want, sizeof want); /* the NUL included */
    assert_int_equal(cookie_insert_value("SRVID", "n1", out, sizeof want), sizeof want - 1);
    assert_int_equal(cookie_insert_value("SRVID", "n1", out, sizeof want - 1), -1);
    assert_int_equal(cookie_insert_value("SRVID", "n1", NULL, 0), -1);
}

/* s of n copies of c. */
static const char *repeat(char c, size_t n)
{
    static char s[128];
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void test_name_valid(void **state)
{
    (void)state;
    static const char *const good[] = {"SRVID", "io", "a", "x!#$%&'*+-.^_`|~9", "JSESSIONID"};
    static const char *const bad[] = {"",     "a b",   "a;b",   "a,b",   "a=b", "\"a\"", "a\\b",
                                      "a\tb", "a\x7f", "a\x80", "a(b)",  "a/b", "a:b",   "a@b",
                                      "a[b",  "a{b}",  "a?b",   "a\x01", " a",  "a ",    "a<b>"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_true(cookie_name_valid(good[i]));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (cookie_name_valid(bad[i]))
            fail_msg("name \"%s\" accepted", bad[i]);
    }
    assert_true(cookie_name_valid(repeat('a', 64)));
    assert_false(cookie_name_valid(repeat('a', 65)));
    assert_false(cookie_name_valid(NULL));
}

static void test_node_id_valid(void **state)
{
    (void)state;
    static const char *const good[] = {"n1", "a", "node-7", "10.0.0.1:80", "x!#$%&'()*+-./:<=>?@[]^_`{|}", "N"};
    static const char *const bad[] = {"",      "n~1",  "~",     "n;1",   "n,1",  "n 1",
                                      "\"n\"", "n\\1", "n\x7f", "n\x80", "n\t1", "\xff"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_true(cookie_node_id_valid(good[i]));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (cookie_node_id_valid(bad[i]))
            fail_msg("node id \"%s\" accepted", bad[i]);
    }
    assert_true(cookie_node_id_valid(repeat('n', 64)));
    assert_false(cookie_node_id_valid(repeat('n', 65)));
    assert_false(cookie_node_id_valid(NULL));
    /* every byte, alone: exactly the cookie-octets but '~' */
    for (int c = 1; c < 256; c++) {
        char s[2] = {(char)c, '\0'};
        bool want = c == 0x21 || (c >= 0x23 && c <= 0x2b) || (c >= 0x2d && c <= 0x3a) || (c >= 0x3c && c <= 0x5b) ||
                    (c >= 0x5d && c <= 0x7d);
        if (cookie_node_id_valid(s) != want)
            fail_msg("byte 0x%02x: %d", c, !want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_position),
        cmocka_unit_test(test_find_absent),
        cmocka_unit_test(test_find_prefix_and_suffix_names),
        cmocka_unit_test(test_find_values),
        cmocka_unit_test(test_find_spacing_and_empty_pairs),
        cmocka_unit_test(test_next_pairs),
        cmocka_unit_test(test_set_cookie_pair),
        cmocka_unit_test(test_strip_positions),
        cmocka_unit_test(test_strip_to_nothing),
        cmocka_unit_test(test_strip_several_and_spacing),
        cmocka_unit_test(test_strip_out_too_small),
        cmocka_unit_test(test_prefix_take),
        cmocka_unit_test(test_prefix_take_nothing),
        cmocka_unit_test(test_prefix_take_several),
        cmocka_unit_test(test_prefix_take_out_too_small),
        cmocka_unit_test(test_prefix_set),
        cmocka_unit_test(test_prefix_set_other_and_malformed),
        cmocka_unit_test(test_prefix_round_trip),
        cmocka_unit_test(test_insert_value),
        cmocka_unit_test(test_name_valid),
        cmocka_unit_test(test_node_id_valid),
    };
    return cmocka_run_group_tests_name("cookie", tests, NULL, unmap_guard);
}
