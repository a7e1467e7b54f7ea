/* http: request and response heads (spans, incremental feeding, every rejection), token lists, query params.
 * Every input is parsed from just before a PROT_NONE page, as picohttpparser's tests do, so a read past len
 * crashes the test instead of passing silently. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/http.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NHDR   16
#define LIT(s) s, sizeof(s) - 1 /* string literal with its length, so embedded NULs count */

/* ---- guard page ---- */

#include "tests/unit/guard.h"

static struct http_header hdrs[NHDR];

static void init_head(struct http_head *h)
{
    memset(h, 0, sizeof *h);
    h->headers = hdrs;
    h->headers_cap = NHDR;
}

static int req_n(const char *s, size_t n, struct http_head *h, const struct http_limits *lim)
{
    init_head(h);
    return http_parse_request(guarded(s, n), n, 0, h, lim);
}

static int req(const char *s, struct http_head *h)
{
    return req_n(s, strlen(s), h, NULL);
}

static int res(const char *s, struct http_head *h)
{
    init_head(h);
    return http_parse_response(guarded(s, strlen(s)), strlen(s), 0, h, NULL);
}

static void assert_span(const char *p, size_t n, const char *want)
{
    assert_int_equal(n, strlen(want));
    assert_memory_equal(p, want, n);
}

/* ---- requests ---- */

static void test_get_with_headers(void **state)
{
    (void)state;
    struct http_head h;
    const char *s = "GET /ws/chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent:   curl/8 \t\r\n"
                    "X-Empty:\r\nAccept:*/*\r\n\r\n";
    assert_int_equal(req(s, &h), (int)strlen(s));
    assert_int_equal(h.error, HTTP_OK);
    assert_span(h.method, h.method_len, "GET");
    assert_span(h.target, h.target_len, "/ws/chat?room=1");
    assert_int_equal(h.minor_version, 1);
    assert_int_equal(h.num_headers, 4);
    assert_span(h.headers[0].name, h.headers[0].name_len, "Host");
    assert_span(h.headers[0].value, h.headers[0].value_len, "example.com");
    assert_span(h.headers[1].name, h.headers[1].name_len, "User-Agent");
    assert_span(h.headers[1].value, h.headers[1].value_len, "curl/8");
    assert_span(h.headers[2].name, h.headers[2].name_len, "X-Empty");
    assert_int_equal(h.headers[2].value_len, 0);
    assert_span(h.headers[3].value, h.headers[3].value_len, "*/*");
    assert_int_equal(h.content_length, -1);
    assert_false(h.chunked);
    assert_false(h.conn_close);
    assert_false(h.conn_upgrade);
    assert_null(http_find_header(&h, "Cookie"));
    assert_ptr_equal(http_find_header(&h, "user-agent"), &h.headers[1]);
}

static void test_websocket_upgrade(void **state)
{
    (void)state;
    struct http_head h;
    const char *s = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
                    "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n";
    assert_int_equal(req(s, &h), (int)strlen(s));
    assert_true(h.conn_upgrade);
    assert_false(h.conn_close);
    const struct http_header *k = http_find_header(&h, "sec-websocket-key");
    assert_non_null(k);
    assert_span(k->value, k->value_len, "dGhlIHNhbXBsZSBub25jZQ==");
    const struct http_header *u = http_find_header(&h, "UPGRADE");
    assert_non_null(u);
    assert_true(http_has_token(u->value, u->value_len, "websocket"));
}

static void test_no_headers_no_host(void **state)
{
    (void)state;
    struct http_head h;
    assert_int_equal(req("OPTIONS * HTTP/1.1\r\n\r\n", &h), 22);
    assert_span(h.target, h.target_len, "*");
    assert_int_equal(h.num_headers, 0);

    /* A caller with no header array at all still gets the request line. */
    memset(&h, 0, sizeof h);
    const char *s = "GET / HTTP/1.1\r\n\r\n";
    assert_int_equal(http_parse_request(guarded(s, 18), 18, 0, &h, NULL), 18);
    const char *one = "GET / HTTP/1.1\r\nA: b\r\n\r\n";
    assert_int_equal(http_parse_request(guarded(one, strlen(one)), strlen(one), 0, &h, NULL), -1);
    assert_int_equal(h.error, HTTP_ERR_TOO_MANY_HEADERS);
}

/* Every proper prefix is incomplete, both with last_len and with a rescan from 0; the whole is the head. */
static void feed_bytewise(const char *s, bool request)
{
    size_t n = strlen(s);
    struct http_head h;
    init_head(&h);
    for (size_t i = 1; i <= n; i++) {
        const char *p = guarded(s, i);
        int r = request ? http_parse_request(p, i, i - 1, &h, NULL) : http_parse_response(p, i, i - 1, &h, NULL);
        int r0 = request ? http_parse_request(p, i, 0, &h, NULL) : http_parse_response(p, i, 0, &h, NULL);
        assert_int_equal(r, i < n ? -2 : (int)n);
        assert_int_equal(r0, r);
    }
}

static void test_incremental_bytewise(void **state)
{
    (void)state;
    feed_bytewise("GET /a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\r\n", true);
    feed_bytewise("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", false);
}

static void test_incremental_chunks_keep_results(void **state)
{
    (void)state;
    const char *s = "POST /p HTTP/1.1\r\nContent-Length: 12\r\n\r\n";
    size_t n = strlen(s);
    struct http_head h;
    init_head(&h);
    const char *p = guarded(s, n);
    assert_int_equal(http_parse_request(p, 17, 0, &h, NULL), -2);
    assert_int_equal(h.error, HTTP_OK);
    assert_int_equal(http_parse_request(p, n - 1, 17, &h, NULL), -2); /* CRLF CR */
    assert_int_equal(http_parse_request(p, n, n - 1, &h, NULL), (int)n);
    assert_int_equal(h.content_length, 12);
}

static void test_pipelined(void **state)
{
    (void)state;
    const char *first = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
    char both[128];
    snprintf(both, sizeof both, "%sGET /2 HTTP/1.1\r\nHost: b\r\n\r\n", first);
    struct http_head h;
    int r = req(both, &h);
    assert_int_equal(r, (int)strlen(first));
    assert_span(h.target, h.target_len, "/1");
    assert_int_equal(req(both + r, &h), (int)(strlen(both) - strlen(first)));
    assert_span(h.target, h.target_len, "/2");
    /* Body bytes after the head are not looked at, even if they are garbage. */
    assert_int_equal(req("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\n\n\r\0", &h), 38);
}

static void test_content_length_and_chunked(void **state)
{
    (void)state;
    struct http_head h;
    assert_true(req("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n", &h) > 0);
    assert_int_equal(h.content_length, 0);
    assert_true(req("POST / HTTP/1.1\r\nContent-Length: 999999999999999999\r\n\r\n", &h) > 0);
    assert_int_equal(h.content_length, 999999999999999999LL);
    assert_true(req("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n", &h) > 0);
    assert_true(h.chunked);
    assert_int_equal(h.content_length, -1);
}

static void test_connection_flags(void **state)
{
    (void)state;
    struct http_head h;
    assert_true(req("GET / HTTP/1.0\r\n\r\n", &h) > 0);
    assert_int_equal(h.minor_version, 0);
    assert_true(h.conn_close);
    assert_true(req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &h) > 0);
    assert_false(h.conn_close);
    assert_true(req("GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n", &h) > 0);
    assert_true(h.conn_close);
    /* Several Connection fields are one list. */
    assert_true(req("GET / HTTP/1.1\r\nConnection: keep-alive\r\nConnection: upgrade\r\n\r\n", &h) > 0);
    assert_true(h.conn_upgrade);
    assert_false(h.conn_close);
    assert_true(req("GET / HTTP/1.1\r\nConnection: upgraded\r\n\r\n", &h) > 0);
    assert_false(h.conn_upgrade);
}

static void test_obs_text_allowed_in_value(void **state)
{
    (void)state;
    struct http_head h;
    assert_true(req("GET / HTTP/1.1\r\nX-Name: caf\xc3\xa9\t\xff\r\n\r\n", &h) > 0);
    assert_span(h.headers[0].value, h.headers[0].value_len, "caf\xc3\xa9\t\xff");
}

struct bad {
    const char *in;
    size_t len;
    enum http_error want;
};

static void check_bad_requests(const struct bad *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct http_head h;
        int r = req_n(b[i].in, b[i].len, &h, NULL);
        if (r != -1 || h.error != b[i].want)
            fail_msg("case %zu: got %d/%d (%s), want -1/%d", i, r, (int)h.error, http_error_str(h.error),
                     (int)b[i].want);
    }
}

static void test_bad_request_lines(void **state)
{
    (void)state;
    static const struct bad b[] = {
        {LIT("G@T / HTTP/1.1\r\n\r\n"), HTTP_ERR_REQUEST_LINE},
        {LIT("GET(x) / HTTP/1.1\r\n\r\n"), HTTP_ERR_REQUEST_LINE},
        {LIT(" GET / HTTP/1.1\r\n\r\n"), HTTP_ERR_REQUEST_LINE},
        {LIT("GET  / HTTP/1.1\r\n\r\n"), HTTP_ERR_REQUEST_LINE},
        {LIT("GET / HTTP/1.1 \r\n\r\n"), HTTP_ERR_REQUEST_LINE},
        {LIT("GET /a\tb HTTP/1.1\r\n\r\n"), HTTP_ERR_REQUEST_LINE},
        {LIT("GET /\x80 HTTP/1.1\r\n\r\n"), HTTP_ERR_REQUEST_LINE},
        {LIT("GET / http/1.1\r\n\r\n"), HTTP_ERR_REQUEST_LINE},
        {LIT("GET / HTTP/1.1x\r\n\r\n"), HTTP_ERR_REQUEST_LINE},
        {LIT("GET /\r\n\r\n"), HTTP_ERR_REQUEST_LINE},
        {LIT("GET\r\n\r\n"), HTTP_ERR_REQUEST_LINE},
        {LIT("\r\n\r\n"), HTTP_ERR_REQUEST_LINE},
        {LIT("GET / HTTP/2.0\r\n\r\n"), HTTP_ERR_VERSION},
        {LIT("GET / HTTP/1.2\r\n\r\n"), HTTP_ERR_VERSION},
        {LIT("GET / HTTP/0.9\r\n\r\n"), HTTP_ERR_VERSION},
    };
    check_bad_requests(b, sizeof b / sizeof b[0]);
}

static void test_bad_line_ends(void **state)
{
    (void)state;
    static const struct bad b[] = {
        {LIT("GET / HTTP/1.1\n\n"), HTTP_ERR_BARE_LF},
        {LIT("GET / HTTP/1.1\r\n\n"), HTTP_ERR_BARE_LF},
        {LIT("GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"), HTTP_ERR_BARE_LF},
        {LIT("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), HTTP_ERR_BARE_CR},
        {LIT("GET / HTTP/1.1\r\r\n\r\n"), HTTP_ERR_BARE_CR},
        {LIT("GET / HTTP/1.1\r\n\r\r\n"), HTTP_ERR_BARE_CR},
        /* A line's own end is checked before its content; an error on an earlier line comes first. */
        {LIT("G@T / HTTP/1.1\n\n"), HTTP_ERR_BARE_LF},
        {LIT("G@T / HTTP/1.1\r\nX: a\n\n"), HTTP_ERR_REQUEST_LINE},
    };
    check_bad_requests(b, sizeof b / sizeof b[0]);
}

/* Malformed line ends fail as soon as they are seen, not after max_head bytes. */
static void test_bare_line_ends_fail_fast(void **state)
{
    (void)state;
    struct http_head h;
    assert_int_equal(req("GET / HTTP/1.1\nHost: a", &h), -1);
    assert_int_equal(h.error, HTTP_ERR_BARE_LF);
    /* A trailing CR is undecided until the next byte. */
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r", &h), -2);
    assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\rb", &h), -1);
    assert_int_equal(h.error, HTTP_ERR_BARE_CR);
}

static void test_bad_fields(void **state)
{
    (void)state;
    static const struct bad b[] = {
        {LIT("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"), HTTP_ERR_OBS_FOLD},
        {LIT("GET / HTTP/1.1\r\nHost: a\r\n\tfolded\r\n\r\n"), HTTP_ERR_OBS_FOLD},
        {LIT("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), HTTP_ERR_OBS_FOLD},
        {LIT("GET / HTTP/1.1\r\nHo(st: a\r\n\r\n"), HTTP_ERR_HEADER_NAME},
        {LIT("GET / HTTP/1.1\r\nHo\x01st: a\r\n\r\n"), HTTP_ERR_HEADER_NAME},
        {LIT("GET / HTTP/1.1\r\n: a\r\n\r\n"), HTTP_ERR_HEADER_NAME},
        {LIT("GET / HTTP/1.1\r\nNoColon\r\n\r\n"), HTTP_ERR_HEADER_NAME},
        {LIT("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), HTTP_ERR_SPACE_BEFORE_COLON},
        {LIT("GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"), HTTP_ERR_SPACE_BEFORE_COLON},
        {LIT("GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n"), HTTP_ERR_HEADER_VALUE},
        {LIT("GET / HTTP/1.1\r\nX: a\0z\r\n\r\n"), HTTP_ERR_HEADER_VALUE},
        {LIT("GET / HTTP/1.1\r\nX: a\x7fz\r\n\r\n"), HTTP_ERR_HEADER_VALUE},
        {LIT("GET / HTTP/1.1\r\nX: \x1b\r\n\r\n"), HTTP_ERR_HEADER_VALUE},
    };
    check_bad_requests(b, sizeof b / sizeof b[0]);
}

static void test_bad_framing(void **state)
{
    (void)state;
    static const struct bad b[] = {
        {LIT("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"), HTTP_ERR_CONTENT_LENGTH},
        {LIT("POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n"), HTTP_ERR_CONTENT_LENGTH},
        {LIT("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"), HTTP_ERR_CONTENT_LENGTH},
        {LIT("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"), HTTP_ERR_CONTENT_LENGTH},
        {LIT("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), HTTP_ERR_CONTENT_LENGTH},
        {LIT("POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n"), HTTP_ERR_CONTENT_LENGTH},
        {LIT("POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n"), HTTP_ERR_CONTENT_LENGTH},
        {LIT("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n"), HTTP_ERR_CONTENT_LENGTH},
        {LIT("POST / HTTP/1.1\r\nContent-Length: 1000000000000000000\r\n\r\n"), HTTP_ERR_CONTENT_LENGTH},
        {LIT("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), HTTP_ERR_CL_AND_TE},
        {LIT("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), HTTP_ERR_CL_AND_TE},
        {LIT("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"), HTTP_ERR_TRANSFER_ENCODING},
        {LIT("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), HTTP_ERR_TRANSFER_ENCODING},
        {LIT("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), HTTP_ERR_TRANSFER_ENCODING},
        {LIT("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
         HTTP_ERR_TRANSFER_ENCODING},
        {LIT("POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n"), HTTP_ERR_TRANSFER_ENCODING},
        {LIT("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), HTTP_ERR_TRANSFER_ENCODING},
    };
    check_bad_requests(b, sizeof b / sizeof b[0]);
}

static void test_head_too_large(void **state)
{
    (void)state;
    struct http_head h;
    const char *s = "GET / HTTP/1.1\r\nX: 0123456789\r\n\r\n"; /* 33 bytes */
    struct http_limits exact = {.max_head = 33}, less = {.max_head = 32};
    assert_int_equal(req_n(s, 33, &h, &exact), 33);
    assert_int_equal(req_n(s, 33, &h, &less), -1);
    assert_int_equal(h.error, HTTP_ERR_HEAD_TOO_LARGE);
    /* Incomplete: fine up to the limit, too large past it. */
    assert_int_equal(req_n(s, 32, &h, &less), -2);
    assert_int_equal(req_n(s, 30, &h, &less), -2);
    /* The default is 8192 bytes. */
    static char big[8300];
    size_t n = (size_t)snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX: ");
    memset(big + n, 'a', sizeof big - n);
    assert_int_equal(req_n(big, 8192, &h, NULL), -2);
    assert_int_equal(req_n(big, 8193, &h, NULL), -1);
    assert_int_equal(h.error, HTTP_ERR_HEAD_TOO_LARGE);
    memcpy(big + 8188, "\r\n\r\n", 4);
    assert_int_equal(req_n(big, sizeof big, &h, NULL), 8192);
    big[8188] = 'a';
    memcpy(big + 8189, "\r\n\r\n", 4);
    assert_int_equal(req_n(big, sizeof big, &h, NULL), -1);
    assert_int_equal(h.error, HTTP_ERR_HEAD_TOO_LARGE);
}

static void test_too_many_headers(void **state)
{
    (void)state;
    struct http_head h;
    const char *two = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n";
    const char *three = "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    struct http_limits lim = {.max_headers = 2};
    assert_int_equal(req_n(two, strlen(two), &h, &lim), (int)strlen(two));
    assert_int_equal(h.num_headers, 2);
    assert_int_equal(req_n(three, strlen(three), &h, &lim), -1);
    assert_int_equal(h.error, HTTP_ERR_TOO_MANY_HEADERS);
    /* max_headers 0 means the array's capacity; a larger limit never overruns it. */
    struct http_header small[2];
    struct http_limits huge = {.max_headers = 100};
    memset(&h, 0, sizeof h);
    h.headers = small;
    h.headers_cap = 2;
    assert_int_equal(http_parse_request(guarded(two, strlen(two)), strlen(two), 0, &h, NULL), (int)strlen(two));
    assert_int_equal(http_parse_request(guarded(three, strlen(three)), strlen(three), 0, &h, &huge), -1);
    assert_int_equal(h.error, HTTP_ERR_TOO_MANY_HEADERS);
}

/* A failure leaves nothing stale from an earlier success on the same head. */
static void test_reset_between_calls(void **state)
{
    (void)state;
    struct http_head h;
    assert_true(req("POST / HTTP/1.1\r\nContent-Length: 3\r\nConnection: close, upgrade\r\n\r\n", &h) > 0);
    assert_int_equal(http_parse_request(guarded("GET / HTTP/1.1\r\n", 16), 16, 0, &h, NULL), -2);
    assert_int_equal(h.error, HTTP_OK);
    assert_int_equal(h.content_length, -1);
    assert_int_equal(h.num_headers, 0);
    assert_false(h.conn_close || h.conn_upgrade || h.chunked);
}

/* ---- responses ---- */

static void test_response_101(void **state)
{
    (void)state;
    struct http_head h;
    const char *s = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    assert_int_equal(res(s, &h), (int)strlen(s));
    assert_int_equal(h.status, 101);
    assert_int_equal(h.minor_version, 1);
    assert_span(h.reason, h.reason_len, "Switching Protocols");
    assert_int_equal(h.num_headers, 3);
    assert_true(h.conn_upgrade);
    const struct http_header *a = http_find_header(&h, "Sec-WebSocket-Accept");
    assert_non_null(a);
    assert_span(a->value, a->value_len, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

static void test_response_200(void **state)
{
    (void)state;
    struct http_head h;
    assert_int_equal(res("HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\nbody", &h), 39);
    assert_int_equal(h.status, 200);
    assert_int_equal(h.content_length, 42);
    assert_false(h.conn_close);
    assert_int_equal(res("HTTP/1.1 200\r\n\r\n", &h), 16);
    assert_int_equal(h.status, 200);
    assert_int_equal(h.reason_len, 0);
    assert_int_equal(res("HTTP/1.1 204 \r\n\r\n", &h), 17);
    assert_int_equal(h.status, 204);
    assert_int_equal(h.reason_len, 0);
    assert_int_equal(res("HTTP/1.0 404 Not \xc3\xa9 Found\r\n\r\n", &h), 29);
    assert_int_equal(h.minor_version, 0);
    assert_true(h.conn_close);
    assert_span(h.reason, h.reason_len, "Not \xc3\xa9 Found");
    assert_int_equal(res("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &h), 47);
    assert_true(h.chunked);
}

static void test_bad_responses(void **state)
{
    (void)state;
    static const struct bad b[] = {
        {LIT("HTTP/1.1 20 OK\r\n\r\n"), HTTP_ERR_STATUS_LINE},
        {LIT("HTTP/1.1 2000 OK\r\n\r\n"), HTTP_ERR_STATUS_LINE},
        {LIT("HTTP/1.1  200 OK\r\n\r\n"), HTTP_ERR_STATUS_LINE},
        {LIT("HTTP/1.1 099 OK\r\n\r\n"), HTTP_ERR_STATUS_LINE},
        {LIT("HTTP/1.1 2x0 OK\r\n\r\n"), HTTP_ERR_STATUS_LINE},
        {LIT("HTP/1.1 200 OK\r\n\r\n"), HTTP_ERR_STATUS_LINE},
        {LIT("HTTP/1.1 200 O\x01K\r\n\r\n"), HTTP_ERR_STATUS_LINE},
        {LIT("GET / HTTP/1.1\r\n\r\n"), HTTP_ERR_STATUS_LINE},
        {LIT("HTTP/2.0 200 OK\r\n\r\n"), HTTP_ERR_VERSION},
        {LIT("HTTP/1.1 200 OK\nX: y\r\n\r\n"), HTTP_ERR_BARE_LF},
        {LIT("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"), HTTP_ERR_CONTENT_LENGTH},
        {LIT("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"), HTTP_ERR_CL_AND_TE},
        {LIT("HTTP/1.1 200 OK\r\nX : y\r\n\r\n"), HTTP_ERR_SPACE_BEFORE_COLON},
    };
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) {
        struct http_head h;
        init_head(&h);
        int r = http_parse_response(guarded(b[i].in, b[i].len), b[i].len, 0, &h, NULL);
        if (r != -1 || h.error != b[i].want)
            fail_msg("case %zu: got %d/%d, want -1/%d", i, r, (int)h.error, (int)b[i].want);
    }
}

static void test_error_strings_distinct(void **state)
{
    (void)state;
    const char *seen[HTTP_ERR_TRANSFER_ENCODING + 1];
    for (int e = HTTP_OK; e <= HTTP_ERR_TRANSFER_ENCODING; e++) {
        seen[e] = http_error_str((enum http_error)e);
        assert_non_null(seen[e]);
        assert_true(strlen(seen[e]) > 0);
        for (int j = 0; j < e; j++)
            assert_string_not_equal(seen[j], seen[e]);
    }
    assert_string_equal(http_error_str(HTTP_ERR_OBS_FOLD), "obs-fold (line folding) is not allowed");
}

/* ---- helpers ---- */

static void test_has_token(void **state)
{
    (void)state;
    assert_true(http_has_token(LIT("keep-alive, Upgrade"), "upgrade"));
    assert_true(http_has_token(LIT(" close "), "close"));
    assert_true(http_has_token(LIT("a,\tclose\t,b"), "CLOSE"));
    assert_false(http_has_token(LIT("closed, xclose"), "close"));
    assert_false(http_has_token(LIT(""), "close"));
    assert_false(http_has_token(LIT(",,"), "close"));
    /* Only len bytes count. */
    assert_false(http_has_token("clos", 4, "close"));
    assert_false(http_has_token("close", 4, "close"));
}

static void test_path_len(void **state)
{
    (void)state;
    assert_int_equal(http_path_len(LIT("/ws?room=1")), 3);
    assert_int_equal(http_path_len(LIT("/ws")), 3);
    assert_int_equal(http_path_len(LIT("/a#frag")), 2);
    assert_int_equal(http_path_len(LIT("?x")), 0);
    assert_int_equal(http_path_len("/ws?x", 2), 2);
}

/* http_target_split on a guarded copy of target: its form, and the spans when it is absolute or origin. */
static enum http_target_form split(const char *target, struct http_target *t)
{
    size_t n = strlen(target);
    return http_target_split(guarded(target, n), n, t);
}

static void test_target_origin_and_asterisk(void **state)
{
    (void)state;
    struct http_target t;
    assert_int_equal(split("/ws?room=a", &t), HTTP_TARGET_ORIGIN);
    assert_span(t.origin, t.origin_len, "/ws?room=a");
    assert_int_equal(t.authority_len, 0);
    assert_int_equal(split("/", &t), HTTP_TARGET_ORIGIN);
    assert_int_equal(split("*", &t), HTTP_TARGET_ASTERISK);
    assert_span(t.origin, t.origin_len, "*");
}

static void test_target_absolute(void **state)
{
    (void)state;
    static const struct {
        const char *in, *authority, *origin;
        unsigned port;
    } ok[] = {
        {"http://h/ws?room=a", "h", "/ws?room=a", 80},
        {"HTTPS://Node.Example:8443/x", "Node.Example:8443", "/x", 443},
        {"http://h", "h", "", 80},
        {"http://h?q=1", "h", "?q=1", 80},
        {"http://h:/p", "h:", "/p", 80},
        {"http://127.0.0.1:65535/", "127.0.0.1:65535", "/", 80},
        {"http://[::1]:8080/v6", "[::1]:8080", "/v6", 80},
        {"http://[v1.x]/", "[v1.x]", "/", 80},
        {"http://a%2Db.example/", "a%2Db.example", "/", 80},
        {"http://h/a@b", "h", "/a@b", 80}, /* '@' in the path is no userinfo */
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        struct http_target t;
        if (split(ok[i].in, &t) != HTTP_TARGET_ABSOLUTE)
            fail_msg("case %zu (%s): not absolute-form", i, ok[i].in);
        assert_span(t.authority, t.authority_len, ok[i].authority);
        assert_span(t.origin, t.origin_len, ok[i].origin);
        assert_int_equal(t.default_port, ok[i].port);
    }
}

static void test_target_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "http://",
        "http:///x",
        "http://?x",
        "http://:80/",
        "ftp://h/x",
        "ws://h/",
        "http:/x",
        "http:h/x",
        "x",
        "h:80",
        "**",
        "http://user@h/",
        "http://u:p@h/",
        "http://h:99999/",
        "http://h:123456/",
        "http://h:8o/",
        "http://h:-1/",
        "http://[::1/x",
        "http://[]/",
        "http://h%zz/",
        "http://h%2/",
        "http://h#f",
        "http://h h/",
        "http://h\\x/",
        "http://h:80:80/",
        "http://[::1]x/",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct http_target t;
        if (split(bad[i], &t) != HTTP_TARGET_BAD)
            fail_msg("case %zu (%s): accepted", i, bad[i]);
    }
}

static bool auth_eq(const char *a, const char *b, unsigned port)
{
    return http_authority_eq(guarded(a, strlen(a)), strlen(a), b, strlen(b), port);
}

static void test_authority_eq(void **state)
{
    (void)state;
    assert_true(auth_eq("h", "h", 80));
    assert_true(auth_eq("Node.Example", "node.EXAMPLE", 80));
    assert_true(auth_eq("h:80", "h", 80));
    assert_true(auth_eq("h", "h:80", 80));
    assert_true(auth_eq("h:", "h", 80));
    assert_true(auth_eq("h:443", "h", 443));
    assert_true(auth_eq("h:8080", "h:08080", 80));
    assert_true(auth_eq("[::1]:80", "[::1]", 80));
    assert_false(auth_eq("h:443", "h", 80));
    assert_false(auth_eq("h", "h:8080", 80));
    assert_false(auth_eq("h", "g", 80));
    assert_false(auth_eq("h", "h.", 80));
    assert_false(auth_eq("h", "hh", 80));
    assert_false(auth_eq("h", "h:x", 80));
    assert_false(auth_eq("h", "u@h", 80));
    assert_false(auth_eq("h", "", 80));
    assert_false(auth_eq("", "", 80));
    assert_false(auth_eq("[::1]", "[::2]", 80));
}

static void test_connection_names(void **state)
{
    (void)state;
    struct http_head h;
    assert_true(req("GET / HTTP/1.1\r\nConnection: keep-alive, Upgrade , close\r\nUpgrade: websocket\r\n\r\n", &h) > 0);
    assert_false(h.conn_names); /* the three options name no field */
    assert_true(req("GET / HTTP/1.1\r\nX-A: 1\r\nConnection: close, X-Foo\r\nX-Foo: 1\r\nX-B: 2\r\n"
                    "connection: ,x-bar,\r\nX-Bar: 2\r\n\r\n",
                    &h) > 0);
    assert_true(h.conn_names);
    assert_true(h.conn_close);
    assert_int_equal(h.conn_first, 1);
    assert_int_equal(h.conn_end, 5);
    assert_true(http_conn_lists(&h, LIT("x-foo")));
    assert_true(http_conn_lists(&h, LIT("X-BAR")));
    assert_true(http_conn_lists(&h, LIT("close")));
    assert_false(http_conn_lists(&h, LIT("X-B")));
    assert_false(http_conn_lists(&h, LIT("X-Fo")));
    /* No Connection field: nothing is listed, and the parse of a second head resets what the first said. */
    assert_true(req("GET / HTTP/1.1\r\nX-Foo: 1\r\n\r\n", &h) > 0);
    assert_false(h.conn_names);
    assert_int_equal(h.conn_end, 0);
    assert_false(http_conn_lists(&h, LIT("x-foo")));
}

static int qp(const char *target, const char *name, char *out, size_t outlen)
{
    size_t n = strlen(target);
    return http_query_param(guarded(target, n), n, name, out, outlen);
}

static void test_query_param(void **state)
{
    (void)state;
    char out[16];
    assert_int_equal(qp("/ws?room=a%20b&x", "room", out, sizeof out), 1);
    assert_string_equal(out, "a b");
    assert_int_equal(qp("/ws?room=a%20b&x", "x", out, sizeof out), 1);
    assert_string_equal(out, "");
    assert_int_equal(qp("/ws?a=1&room=a+b%2Bc", "room", out, sizeof out), 1);
    assert_string_equal(out, "a b+c");
    assert_int_equal(qp("/ws?xroom=1&roomx=2", "room", out, sizeof out), 0);
    assert_int_equal(qp("/ws?xroom=1&room=3", "room", out, sizeof out), 1);
    assert_string_equal(out, "3");
    assert_int_equal(qp("/ws?room=1&room=2", "room", out, sizeof out), 1);
    assert_string_equal(out, "1");
    assert_int_equal(qp("/ws?room=", "room", out, sizeof out), 1);
    assert_string_equal(out, "");
    assert_int_equal(qp("/ws?r%6Fom=k", "room", out, sizeof out), 1);
    assert_string_equal(out, "k");
    assert_int_equal(qp("/ws?a=%c3%A9", "a", out, sizeof out), 1);
    assert_string_equal(out, "\xc3\xa9");
}

static void test_query_param_absent_and_malformed(void **state)
{
    (void)state;
    char out[4];
    assert_int_equal(qp("/ws", "room", out, sizeof out), 0);
    assert_int_equal(qp("/ws?", "room", out, sizeof out), 0);
    assert_int_equal(qp("/ws#?room=1", "room", out, sizeof out), 0);
    assert_int_equal(qp("/ws?a=1#room=1", "room", out, sizeof out), 0);
    assert_int_equal(qp("/ws?room=1#x", "room", out, sizeof out), 1);
    assert_string_equal(out, "1");
    assert_int_equal(qp("/ws?room=%zz", "room", out, sizeof out), -1);
    assert_int_equal(qp("/ws?room=%2", "room", out, sizeof out), -1);
    assert_int_equal(qp("/ws?room=%", "room", out, sizeof out), -1);
    assert_int_equal(qp("/ws?room=%00", "room", out, sizeof out), -1);
    /* outlen - 1 characters fit, one more does not. */
    assert_int_equal(qp("/ws?room=abc", "room", out, sizeof out), 1);
    assert_string_equal(out, "abc");
    assert_int_equal(qp("/ws?room=abcd", "room", out, sizeof out), -1);
    assert_int_equal(qp("/ws?room=a", "room", out, 0), -1);
    /* A malformed escape elsewhere does not matter. */
    assert_int_equal(qp("/ws?x=%zz&room=ok", "room", out, sizeof out), 1);
    assert_string_equal(out, "ok");
}

/* Every parameter in order, as name=value (still encoded), separated by '|'. */
static void all_params(const char *target, char *out, size_t outlen)
{
    size_t n = strlen(target), pos = 0, used = 0;
    const char *t = guarded(target, n);
    struct http_header p;
    out[0] = '\0';
    while (http_query_next(t, n, &pos, &p))
        used += (size_t)snprintf(out + used, outlen - used, "%s%.*s=%.*s", used ? "|" : "", (int)p.name_len, p.name,
                                 (int)p.value_len, p.value);
}

static void test_query_next_and_decode(void **state)
{
    (void)state;
    char out[64];
    all_params("/socket.io/?EIO=4&transport=websocket&room=a%20b", out, sizeof out);
    assert_string_equal(out, "EIO=4|transport=websocket|room=a%20b");
    all_params("/ws?x&=v&a=1=2&&b=#c=3", out, sizeof out); /* no '=', empty name, '=' in a value, an empty one */
    assert_string_equal(out, "x=|=v|a=1=2|=|b=");
    all_params("/ws", out, sizeof out);
    assert_string_equal(out, "");
    all_params("/ws?", out, sizeof out);
    assert_string_equal(out, "");
    all_params("/ws?#a=1", out, sizeof out);
    assert_string_equal(out, "");
    assert_int_equal(http_decode("a+b%2Bc%C3%a9", 13, out, sizeof out), 7);
    assert_string_equal(out, "a b+c\xc3\xa9");
    assert_int_equal(http_decode("", 0, out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(http_decode("%00", 3, out, sizeof out), -1);
    assert_int_equal(http_decode("%4", 2, out, sizeof out), -1);
    assert_int_equal(http_decode("abc", 3, out, 3), -1);
    assert_int_equal(http_decode("abc", 3, out, 4), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_with_headers),
        cmocka_unit_test(test_websocket_upgrade),
        cmocka_unit_test(test_no_headers_no_host),
        cmocka_unit_test(test_incremental_bytewise),
        cmocka_unit_test(test_incremental_chunks_keep_results),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_content_length_and_chunked),
        cmocka_unit_test(test_connection_flags),
        cmocka_unit_test(test_obs_text_allowed_in_value),
        cmocka_unit_test(test_bad_request_lines),
        cmocka_unit_test(test_bad_line_ends),
        cmocka_unit_test(test_bare_line_ends_fail_fast),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_bad_framing),
        cmocka_unit_test(test_head_too_large),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_reset_between_calls),
        cmocka_unit_test(test_response_101),
        cmocka_unit_test(test_response_200),
        cmocka_unit_test(test_bad_responses),
        cmocka_unit_test(test_error_strings_distinct),
        cmocka_unit_test(test_has_token),
        cmocka_unit_test(test_path_len),
        cmocka_unit_test(test_target_origin_and_asterisk),
        cmocka_unit_test(test_target_absolute),
        cmocka_unit_test(test_target_bad),
        cmocka_unit_test(test_authority_eq),
        cmocka_unit_test(test_connection_names),
        cmocka_unit_test(test_query_param),
        cmocka_unit_test(test_query_param_absent_and_malformed),
        cmocka_unit_test(test_query_next_and_decode),
    };
    return cmocka_run_group_tests(tests, NULL, unmap_guard);
}
