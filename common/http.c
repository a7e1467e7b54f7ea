/* Strict HTTP/1.1 head parser: find the end of the head first, then parse the complete head.
 *
 * Two passes keep the incremental part trivial: the end search is the only thing that runs on every read, it
 * looks only at new bytes, and the full parse runs once per head on a range known to be complete, so it needs no
 * "incomplete" paths at all. The end search also stops at the first bare CR or LF: a head with bare-LF line ends
 * never gets a CRLF CRLF, and we want it rejected at once, not after max_head bytes.
 *
 *   buf: GET /ws?room=a HTTP/1.1\r\nHost: x\r\n\r\n<next request or body...>
 *        ^method ^target    ^version  ^field       ^ head length (returned)
 */
#include "common/http.h"

#include <limits.h>
#include <string.h>

enum { DEFAULT_MAX_HEAD = 8192, MAX_CL_DIGITS = 18 };

/* The start line's parser: the request line or the status line, without its CRLF. */
typedef enum http_error start_line_fn(const char *line, size_t n, struct http_head *h);

/* What the fields seen so far said, for the checks that span several fields. */
struct field_seen {
    bool te, keep_alive, close;
};

const char *http_error_str(enum http_error e)
{
    switch (e) {
    case HTTP_OK: return "ok";
    case HTTP_ERR_HEAD_TOO_LARGE: return "request head too large";
    case HTTP_ERR_TOO_MANY_HEADERS: return "too many header fields";
    case HTTP_ERR_REQUEST_LINE: return "malformed request line";
    case HTTP_ERR_VERSION: return "unsupported HTTP version";
    case HTTP_ERR_STATUS_LINE: return "malformed status line";
    case HTTP_ERR_BARE_CR: return "bare CR (not followed by LF)";
    case HTTP_ERR_BARE_LF: return "bare LF (line must end in CRLF)";
    case HTTP_ERR_OBS_FOLD: return "obs-fold (line folding) is not allowed";
    case HTTP_ERR_HEADER_NAME: return "invalid header field name";
    case HTTP_ERR_SPACE_BEFORE_COLON: return "whitespace between field name and colon";
    case HTTP_ERR_HEADER_VALUE: return "control character in header field value";
    case HTTP_ERR_CONTENT_LENGTH: return "invalid, duplicate or differing Content-Length";
    case HTTP_ERR_CL_AND_TE: return "both Content-Length and Transfer-Encoding";
    case HTTP_ERR_TRANSFER_ENCODING: return "unsupported Transfer-Encoding";
    }
    return "unknown HTTP error";
}

/* ---- character classes (ASCII only: the locale must not change what we accept) ---- */

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned char c)
{
    return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c | 0x20 : c;
}

static int hex_val(unsigned char c)
{
    if (is_digit(c))
        return c - '0';
    c = lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
    return is_digit(c) || is_alpha(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Field-value octets: VCHAR, obs-text, SP, HTAB; every other control character (NUL, DEL...) is out. */
static bool is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

static size_t span(const char *s, size_t n, bool (*ok)(unsigned char))
{
    size_t i = 0;
    while (i < n && ok((unsigned char)s[i]))
        i++;
    return i;
}

/* ---- pass 1: where does the head end? ---- */

/* Index just past the end of the head in buf[0..min(len, max_head)), or 0 if it is not there yet. The end is
 * the LF of CRLF CRLF or, so that malformed heads fail fast, the first bare LF or bare CR. Only bytes from
 * last_len - 3 on are new to us; a CR as the very last byte is undecided until the next byte arrives, and the
 * 3-byte overlap covers it as well as a CRLF CRLF split across reads. */
static size_t find_head_end(const char *buf, size_t len, size_t last_len, size_t max_head)
{
    size_t lim = len < max_head ? len : max_head;
    size_t i = last_len > 3 && last_len <= len ? last_len - 3 : 0;
    for (; i < lim; i++) {
        if (buf[i] == '\r' && i + 1 < len && buf[i + 1] != '\n')
            return i + 1; /* bare CR */
        if (buf[i] != '\n')
            continue;
        if (i == 0 || buf[i - 1] != '\r')
            return i + 1; /* bare LF */
        if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r')
            return i + 1; /* CRLF CRLF */
    }
    return 0;
}

/* ---- pass 2: parse the complete head buf[0..end) ---- */

/* The next line from *pos: sets *line and *n (without the CRLF) and moves *pos past the CRLF. */
static enum http_error next_line(const char *buf, size_t end, size_t *pos, const char **line, size_t *n)
{
    size_t i = *pos;
    while (i < end && buf[i] != '\r' && buf[i] != '\n')
        i++;
    if (i < end && buf[i] == '\n')
        return HTTP_ERR_BARE_LF;
    /* Either a CR not followed by LF, or no terminator at all; find_head_end makes the latter impossible, as
     * it only stops right after an LF or a bare CR. */
    if (i + 1 >= end || buf[i + 1] != '\n')
        return HTTP_ERR_BARE_CR;
    *line = buf + *pos;
    *n = i - *pos;
    *pos = i + 2;
    return HTTP_OK;
}

/* "HTTP/1.0" or "HTTP/1.1" sets minor_version; another well-formed HTTP/x.y is HTTP_ERR_VERSION, anything
 * else is bad_syntax. */
static enum http_error parse_version(const char *s, size_t n, struct http_head *h, enum http_error bad_syntax)
{
    if (n != 8 || memcmp(s, "HTTP/", 5) != 0 || !is_digit((unsigned char)s[5]) || s[6] != '.' ||
        !is_digit((unsigned char)s[7]))
        return bad_syntax;
    if (s[5] != '1' || (s[7] != '0' && s[7] != '1'))
        return HTTP_ERR_VERSION;
    h->minor_version = s[7] - '0';
    return HTTP_OK;
}

static bool is_target_char(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e;
}

/* method SP request-target SP HTTP-version, single spaces only. */
static enum http_error parse_request_line(const char *line, size_t n, struct http_head *h)
{
    size_t m = span(line, n, is_tchar);
    if (m == 0 || m == n || line[m] != ' ')
        return HTTP_ERR_REQUEST_LINE;
    const char *target = line + m + 1;
    size_t rest = n - m - 1;
    size_t t = span(target, rest, is_target_char);
    if (t == 0 || t == rest || target[t] != ' ')
        return HTTP_ERR_REQUEST_LINE;
    h->method = line;
    h->method_len = m;
    h->target = target;
    h->target_len = t;
    return parse_version(target + t + 1, rest - t - 1, h, HTTP_ERR_REQUEST_LINE);
}

/* Reason-phrase octets: HTAB, SP, VCHAR, obs-text. */
static bool is_reason_char(unsigned char c)
{
    return is_value_char(c);
}

/* HTTP-version SP 3DIGIT [SP reason-phrase]; the SP before an empty reason is optional, as some servers omit
 * it. */
static enum http_error parse_status_line(const char *line, size_t n, struct http_head *h)
{
    if (n < 12 || line[8] != ' ')
        return HTTP_ERR_STATUS_LINE;
    enum http_error e = parse_version(line, 8, h, HTTP_ERR_STATUS_LINE);
    if (e != HTTP_OK)
        return e;
    const unsigned char *d = (const unsigned char *)line + 9;
    if (!is_digit(d[0]) || !is_digit(d[1]) || !is_digit(d[2]) || d[0] == '0')
        return HTTP_ERR_STATUS_LINE;
    h->status = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
    if (n == 12)
        return HTTP_OK;
    if (line[12] != ' ' || span(line + 13, n - 13, is_reason_char) != n - 13)
        return HTTP_ERR_STATUS_LINE;
    h->reason = line + 13;
    h->reason_len = n - 13;
    return HTTP_OK;
}

/* field-name ":" OWS field-value OWS, with the reasons for rejection told apart. */
static enum http_error parse_field(const char *line, size_t n, struct http_header *f)
{
    if (n > 0 && is_ows((unsigned char)line[0]))
        return HTTP_ERR_OBS_FOLD;
    size_t k = span(line, n, is_tchar);
    if (k < n && k > 0 && is_ows((unsigned char)line[k]))
        return HTTP_ERR_SPACE_BEFORE_COLON;
    if (k == 0 || k == n || line[k] != ':')
        return HTTP_ERR_HEADER_NAME;
    size_t v = k + 1, end = n;
    while (v < end && is_ows((unsigned char)line[v]))
        v++;
    while (end > v && is_ows((unsigned char)line[end - 1]))
        end--;
    if (span(line + v, end - v, is_value_char) != end - v)
        return HTTP_ERR_HEADER_VALUE;
    f->name = line;
    f->name_len = k;
    f->value = line + v;
    f->value_len = end - v;
    return HTTP_OK;
}

/* Content-Length: 1*DIGIT and nothing else. A list ("5, 5") or a second field, even an equal one, is a
 * smuggling vector (two hops may pick different values), so both are rejected. */
static enum http_error apply_content_length(struct http_head *h, const struct http_header *f)
{
    if (h->content_length >= 0 || f->value_len == 0 || f->value_len > MAX_CL_DIGITS)
        return HTTP_ERR_CONTENT_LENGTH;
    int64_t v = 0;
    for (size_t i = 0; i < f->value_len; i++) {
        unsigned char c = (unsigned char)f->value[i];
        if (!is_digit(c))
            return HTTP_ERR_CONTENT_LENGTH;
        v = v * 10 + (c - '0'); /* 18 digits cannot overflow int64_t */
    }
    h->content_length = v;
    return HTTP_OK;
}

/* Transfer-Encoding: exactly "chunked", once, and only in HTTP/1.1 (1.0 has no chunked coding, so a 1.0
 * message with it would be framed differently by different hops). */
static enum http_error apply_transfer_encoding(struct http_head *h, const struct http_header *f,
                                               struct field_seen *seen)
{
    if (seen->te || h->minor_version == 0 || !ieq(f->value, f->value_len, "chunked", 7))
        return HTTP_ERR_TRANSFER_ENCODING;
    seen->te = true;
    h->chunked = true;
    return HTTP_OK;
}

/* The next item of the comma-separated list value[0..len) from *pos, without the whitespace around it (empty for
 * an empty item); false once the list is through. */
static bool next_item(const char *value, size_t len, size_t *pos, const char **item, size_t *n)
{
    size_t i = *pos;
    if (i > len)
        return false;
    size_t b = i;
    while (i < len && value[i] != ',')
        i++;
    size_t e = i;
    while (b < e && is_ows((unsigned char)value[b]))
        b++;
    while (e > b && is_ows((unsigned char)value[e - 1]))
        e--;
    *item = value + b;
    *n = e - b;
    *pos = i + 1; /* past the comma, or past len to stop */
    return true;
}

/* One Connection field, its tokens read once. Several Connection fields form one list (RFC 9110 5.3), so the
 * flags accumulate, and the fields' span is kept for http_conn_lists. */
static void apply_connection(struct http_head *h, const struct http_header *f, struct field_seen *seen)
{
    size_t idx = (size_t)(f - h->headers);
    if (h->conn_end == 0)
        h->conn_first = idx;
    h->conn_end = idx + 1;
    const char *t;
    size_t n;
    for (size_t pos = 0; next_item(f->value, f->value_len, &pos, &t, &n);) {
        if (ieq(t, n, "close", 5))
            seen->close = true;
        else if (ieq(t, n, "keep-alive", 10))
            seen->keep_alive = true;
        else if (ieq(t, n, "upgrade", 7))
            h->conn_upgrade = true;
        else if (n > 0)
            h->conn_names = true;
    }
}

/* The framing and connection fields; everything else is the caller's business. */
static enum http_error apply_field(struct http_head *h, const struct http_header *f, struct field_seen *seen)
{
    if (ieq(f->name, f->name_len, "Content-Length", 14))
        return apply_content_length(h, f);
    if (ieq(f->name, f->name_len, "Transfer-Encoding", 17))
        return apply_transfer_encoding(h, f, seen);
    if (ieq(f->name, f->name_len, "Connection", 10))
        apply_connection(h, f, seen);
    return HTTP_OK;
}

/* Fields up to and including the empty line; *pos ends just past it. */
static enum http_error parse_fields(const char *buf, size_t end, size_t *pos, struct http_head *h, size_t max_headers)
{
    struct field_seen seen = {0};
    const char *line;
    size_t n;
    enum http_error e;
    while ((e = next_line(buf, end, pos, &line, &n)) == HTTP_OK && n > 0) {
        if (h->num_headers >= max_headers)
            return HTTP_ERR_TOO_MANY_HEADERS;
        struct http_header *f = &h->headers[h->num_headers];
        if ((e = parse_field(line, n, f)) != HTTP_OK || (e = apply_field(h, f, &seen)) != HTTP_OK)
            return e;
        h->num_headers++;
    }
    if (e != HTTP_OK)
        return e;
    if (h->content_length >= 0 && h->chunked)
        return HTTP_ERR_CL_AND_TE;
    h->conn_close = seen.close || (h->minor_version == 0 && !seen.keep_alive);
    return HTTP_OK;
}

static void reset_head(struct http_head *h)
{
    h->method = h->target = h->reason = NULL;
    h->method_len = h->target_len = h->reason_len = 0;
    h->status = 0;
    h->minor_version = 0;
    h->num_headers = 0;
    h->content_length = -1;
    h->chunked = h->conn_close = h->conn_upgrade = h->conn_names = false;
    h->conn_first = h->conn_end = 0;
    h->error = HTTP_OK;
}

static int fail(struct http_head *h, enum http_error e)
{
    h->error = e;
    return -1;
}

/* The complete head buf[0..end): start line, then fields; *pos ends just past the empty line. */
static enum http_error parse_complete(const char *buf, size_t end, size_t *pos, struct http_head *h, size_t max_headers,
                                      start_line_fn *start_line)
{
    const char *line;
    size_t n;
    enum http_error e = next_line(buf, end, pos, &line, &n);
    if (e == HTTP_OK)
        e = start_line(line, n, h);
    if (e == HTTP_OK)
        e = parse_fields(buf, end, pos, h, max_headers);
    return e;
}

/* The shared driver: pass 1 on the new bytes, then pass 2 once the end is there. */
static int parse_head(const char *buf, size_t len, size_t last_len, struct http_head *h,
                      const struct http_limits *limits, start_line_fn *start_line)
{
    reset_head(h);
    size_t max_head = limits && limits->max_head ? limits->max_head : DEFAULT_MAX_HEAD;
    if (max_head > INT_MAX)
        max_head = INT_MAX; /* the length is returned as an int */
    size_t max_headers = limits && limits->max_headers ? limits->max_headers : h->headers_cap;
    if (max_headers > h->headers_cap)
        max_headers = h->headers_cap; /* never write past the caller's array */

    size_t end = find_head_end(buf, len, last_len, max_head);
    if (end == 0)
        return len > max_head ? fail(h, HTTP_ERR_HEAD_TOO_LARGE) : -2;
    size_t pos = 0;
    enum http_error e = parse_complete(buf, end, &pos, h, max_headers, start_line);
    return e != HTTP_OK ? fail(h, e) : (int)pos;
}

int http_parse_request(const char *buf, size_t len, size_t last_len, struct http_head *req,
                       const struct http_limits *limits)
{
    return parse_head(buf, len, last_len, req, limits, parse_request_line);
}

int http_parse_response(const char *buf, size_t len, size_t last_len, struct http_head *res,
                        const struct http_limits *limits)
{
    return parse_head(buf, len, last_len, res, limits, parse_status_line);
}

/* ---- lookups on a parsed head ---- */

const struct http_header *http_find_header(const struct http_head *h, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < h->num_headers; i++)
        if (ieq(h->headers[i].name, h->headers[i].name_len, name, n))
            return &h->headers[i];
    return NULL;
}

bool http_has_token(const char *value, size_t len, const char *token)
{
    size_t tlen = strlen(token);
    const char *t;
    size_t n;
    for (size_t pos = 0; next_item(value, len, &pos, &t, &n);)
        if (ieq(t, n, token, tlen))
            return true;
    return false;
}

bool http_conn_lists(const struct http_head *h, const char *name, size_t len)
{
    const char *t;
    size_t n;
    for (size_t i = h->conn_first; i < h->conn_end; i++) {
        const struct http_header *f = &h->headers[i];
        if (!ieq(f->name, f->name_len, "Connection", 10))
            continue;
        for (size_t pos = 0; next_item(f->value, f->value_len, &pos, &t, &n);)
            if (ieq(t, n, name, len))
                return true;
    }
    return false;
}

/* ---- request targets ---- */

/* reg-name and IP-literal octets besides percent escapes: unreserved and sub-delims (RFC 3986 2.2, 2.3). */
static bool is_host_char(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || (c != 0 && strchr("-._~!$&'()*+,;=", c) != NULL);
}

/* The length of the host at the start of a[0..n): an IP-literal in brackets, or a reg-name / IPv4 address up to
 * the port's ':' (percent escapes allowed); 0 when it is empty or malformed. */
static size_t host_len(const char *a, size_t n)
{
    size_t i = 0;
    if (n > 0 && a[0] == '[') {
        while (++i < n && a[i] != ']')
            if (!is_host_char((unsigned char)a[i]) && a[i] != ':')
                return 0;
        return i < n && i > 1 ? i + 1 : 0;
    }
    while (i < n && a[i] != ':') {
        if (a[i] == '%' && n - i > 2 && hex_val((unsigned char)a[i + 1]) >= 0 && hex_val((unsigned char)a[i + 2]) >= 0)
            i += 3;
        else if (is_host_char((unsigned char)a[i]))
            i++;
        else
            return 0;
    }
    return i;
}

/* The port after the host: "" (none) and ":" are dflt, ":" 1*5DIGIT its value up to 65535; -1 otherwise. */
static long port_of(const char *p, size_t n, unsigned dflt)
{
    if (n <= 1)
        return n == 0 || p[0] == ':' ? (long)dflt : -1;
    if (p[0] != ':' || n > 6)
        return -1;
    long v = 0;
    for (size_t i = 1; i < n; i++) {
        if (!is_digit((unsigned char)p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v <= 65535 ? v : -1;
}

/* "http://" or "https://" (the scheme case-insensitive) at the start of t: its length and default port, or 0. */
static size_t scheme_len(const char *t, size_t n, unsigned *port)
{
    if (n >= 7 && ieq(t, 7, "http://", 7)) {
        *port = 80;
        return 7;
    }
    if (n >= 8 && ieq(t, 8, "https://", 8)) {
        *port = 443;
        return 8;
    }
    return 0;
}

enum http_target_form http_target_split(const char *target, size_t len, struct http_target *out)
{
    *out = (struct http_target){.authority = target, .origin = target, .origin_len = len};
    if (len > 0 && target[0] == '/')
        return HTTP_TARGET_ORIGIN;
    if (len == 1 && target[0] == '*')
        return HTTP_TARGET_ASTERISK;
    unsigned port = 0;
    size_t s = scheme_len(target, len, &port), a = s;
    if (s == 0)
        return HTTP_TARGET_BAD;
    while (a < len && target[a] != '/' && target[a] != '?')
        a++;
    size_t h = host_len(target + s, a - s);
    if (h == 0 || port_of(target + s + h, a - s - h, port) < 0)
        return HTTP_TARGET_BAD; /* also userinfo: '@' is no host character (RFC 9110 4.2.4 asks to reject it) */
    *out = (struct http_target){target + s, target + a, a - s, len - a, port};
    return HTTP_TARGET_ABSOLUTE;
}

bool http_authority_eq(const char *a, size_t alen, const char *b, size_t blen, unsigned default_port)
{
    size_t ha = host_len(a, alen), hb = host_len(b, blen);
    if (ha == 0 || !ieq(a, ha, b, hb))
        return false;
    long pa = port_of(a + ha, alen - ha, default_port), pb = port_of(b + hb, blen - hb, default_port);
    return pa >= 0 && pa == pb;
}

size_t http_path_len(const char *target, size_t target_len)
{
    size_t i = 0;
    while (i < target_len && target[i] != '?' && target[i] != '#')
        i++;
    return i;
}

/* Decode the byte at s[*i] (of n), moving *i past it: '+' is a space, %XX an escape. -1 for a malformed
 * escape, and for %00, which would silently cut the NUL-terminated result short. */
static int decode_next(const char *s, size_t n, size_t *i)
{
    unsigned char c = (unsigned char)s[(*i)++];
    if (c == '+')
        return ' ';
    if (c != '%')
        return c;
    if (n - *i < 2)
        return -1;
    int hi = hex_val((unsigned char)s[*i]), lo = hex_val((unsigned char)s[*i + 1]);
    *i += 2;
    if (hi < 0 || lo < 0 || (hi | lo) == 0)
        return -1;
    return hi * 16 + lo;
}

/* Does the (encoded) key s[0..n) decode to exactly name? */
static bool key_matches(const char *s, size_t n, const char *name)
{
    size_t i = 0, j = 0;
    while (i < n) {
        int c = decode_next(s, n, &i);
        if (c < 0 || name[j] == '\0' || (unsigned char)name[j] != c)
            return false;
        j++;
    }
    return name[j] == '\0';
}

int http_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t i = 0, j = 0;
    if (outlen == 0)
        return -1;
    while (i < n) {
        int c = decode_next(s, n, &i);
        if (c < 0 || j + 1 >= outlen)
            return -1;
        out[j++] = (char)c;
    }
    out[j] = '\0';
    return (int)j;
}

bool http_query_next(const char *target, size_t target_len, size_t *pos, struct http_header *param)
{
    size_t i = *pos, amp, eq;
    if (i == 0) { /* the first call: the query starts after the path's '?' */
        size_t path = http_path_len(target, target_len);
        if (path == target_len || target[path] != '?')
            return false;
        i = path + 1;
    }
    if (i >= target_len || target[i] == '#')
        return false;
    for (amp = i; amp < target_len && target[amp] != '&' && target[amp] != '#'; amp++)
        ;
    for (eq = i; eq < amp && target[eq] != '='; eq++)
        ;
    size_t v = eq < amp ? eq + 1 : amp; /* no '=': present with an empty value */
    *param = (struct http_header){target + i, target + v, eq - i, amp - v};
    *pos = amp < target_len && target[amp] == '&' ? amp + 1 : target_len; /* a '#' ends the query */
    return true;
}

int http_query_param(const char *target, size_t target_len, const char *name, char *out, size_t outlen)
{
    struct http_header p;
    for (size_t pos = 0; http_query_next(target, target_len, &pos, &p);)
        if (key_matches(p.name, p.name_len, name))
            return http_decode(p.value, p.value_len, out, outlen) < 0 ? -1 : 1;
    return 0;
}
