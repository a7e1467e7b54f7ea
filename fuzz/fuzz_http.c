/* libFuzzer target for common/http.c: request and response heads, whole and incremental, plus the query, target and
 * Connection helpers.
 * The input is copied into an exact-size allocation so ASan flags any read past len; invariants abort(). */
#include "common/http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NHDR 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static bool within(const char *p, size_t n, const char *buf, size_t len)
{
    return n == 0 || (p >= buf && n <= len && (size_t)(p - buf) <= len - n);
}

/* The contract's invariants on one result. */
static void check_result(int r, const char *buf, size_t len, const struct http_head *h, size_t cap)
{
    check(r == -2 || r == -1 || (r > 0 && (size_t)r <= len));
    check((r == -1) == (h->error != HTTP_OK));
    check(http_error_str(h->error) != NULL);
    if (r <= 0)
        return;
    size_t head = (size_t)r;
    check(head >= 4 && memcmp(buf + head - 4, "\r\n\r\n", 4) == 0);
    check(h->content_length >= -1 && h->num_headers <= cap);
    check(!(h->chunked && h->content_length >= 0));
    check(h->minor_version == 0 || h->minor_version == 1);
    check(within(h->method, h->method_len, buf, head) && within(h->target, h->target_len, buf, head));
    check(within(h->reason, h->reason_len, buf, head));
    check(h->conn_end <= h->num_headers && (h->conn_end == 0 || h->conn_first < h->conn_end));
    check(!h->conn_names || h->conn_end > 0);
    for (size_t i = 0; i < h->num_headers; i++) {
        const struct http_header *f = &h->headers[i];
        check(f->name_len > 0 && within(f->name, f->name_len, buf, head));
        check(within(f->value, f->value_len, buf, head));
        http_conn_lists(h, f->name, f->name_len);
    }
}

/* A target's split: spans inside it, the origin part its tail, an absolute authority non-empty and equal to
 * itself (the lb compares it with Host). */
static void check_target(const char *t, size_t n)
{
    struct http_target s;
    enum http_target_form form = http_target_split(t, n, &s);
    check(form >= HTTP_TARGET_BAD && form <= HTTP_TARGET_ASTERISK);
    if (form == HTTP_TARGET_BAD)
        return;
    check(within(s.origin, s.origin_len, t, n) && s.origin + s.origin_len == t + n);
    if (form != HTTP_TARGET_ABSOLUTE) {
        check(s.authority_len == 0 && s.default_port == 0 && s.origin == t);
        return;
    }
    check(s.authority_len > 0 && within(s.authority, s.authority_len, t, n));
    check(s.authority + s.authority_len == s.origin && (s.default_port == 80 || s.default_port == 443));
    check(s.origin_len == 0 || s.origin[0] == '/' || s.origin[0] == '?');
    check(http_authority_eq(s.authority, s.authority_len, s.authority, s.authority_len, s.default_port));
}

static bool same_head(const struct http_head *a, const struct http_head *b)
{
    return a->error == b->error && a->num_headers == b->num_headers && a->content_length == b->content_length &&
           a->chunked == b->chunked && a->conn_close == b->conn_close && a->conn_upgrade == b->conn_upgrade &&
           a->status == b->status && a->method == b->method && a->target_len == b->target_len;
}

static int parse(bool request, const char *buf, size_t len, size_t last_len, struct http_head *h,
                 struct http_header *hdrs, const struct http_limits *lim)
{
    memset(h, 0, sizeof *h);
    h->headers = hdrs;
    h->headers_cap = NHDR;
    return request ? http_parse_request(buf, len, last_len, h, lim) : http_parse_response(buf, len, last_len, h, lim);
}

/* Whole with last_len 0, then a prefix followed by the whole with last_len: same answer when the prefix was
 * incomplete (a caller stops feeding after -1 or a head). */
static void run(bool request, const char *buf, size_t len, const struct http_limits *lim)
{
    struct http_header h1[NHDR], h2[NHDR];
    struct http_head whole, inc;
    int r = parse(request, buf, len, 0, &whole, h1, lim);
    check_result(r, buf, len, &whole, NHDR);
    for (size_t cut = 1; cut < len; cut += 1 + cut / 2) {
        int rp = parse(request, buf, cut, 0, &inc, h2, lim);
        check_result(rp, buf, cut, &inc, NHDR);
        if (rp != -2)
            continue;
        int ri = parse(request, buf, len, cut, &inc, h2, lim);
        check(ri == r && same_head(&whole, &inc));
    }
    if (r > 0 && request) {
        char out[64];
        int q = http_query_param(whole.target, whole.target_len, "room", out, sizeof out);
        check(q >= -1 && q <= 1 && (q != 1 || strlen(out) < sizeof out));
        check(http_path_len(whole.target, whole.target_len) <= whole.target_len);
        check_target(whole.target, whole.target_len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    struct http_limits dflt = {0}, tight = {.max_head = 128, .max_headers = 3};
    run(true, buf, size, &dflt);
    run(false, buf, size, &dflt);
    run(true, buf, size, &tight);
    /* The query helper on the raw input, as if it were any target. */
    char out[16];
    int q = http_query_param(buf, size, "room", out, sizeof out);
    check(q >= -1 && q <= 1);
    /* Every parameter, in order: spans inside the input, one after the other, each decoded at most as long. */
    struct http_header p;
    const char *after = buf;
    char dec[64];
    for (size_t pos = 0, n = 0; http_query_next(buf, size, &pos, &p); n++) {
        check(n < size && within(p.name, p.name_len, buf, size) && within(p.value, p.value_len, buf, size));
        check(p.name >= after && p.value >= p.name + p.name_len);
        after = p.value + p.value_len;
        int d = http_decode(p.value, p.value_len, dec, sizeof dec);
        check(d >= -1 && (d < 0 || ((size_t)d <= p.value_len && dec[d] == '\0')));
    }
    http_has_token(buf, size, "close");
    /* The target helpers on the raw input; the authority comparison on its two halves, as if target and Host. */
    check_target(buf, size);
    http_authority_eq(buf, size / 2, buf + size / 2, size - size / 2, 80);
    free(buf);
    return 0;
}
