/* Strict, incremental HTTP/1.1 head parser (request and response), smuggling-safe.
 *
 * The contract is picohttpparser's: the parser looks at buf[0..len) and returns the head's length in bytes (> 0)
 * once the blank line has arrived, -2 if the head is incomplete, -1 if it is malformed (req->error says why).
 * Results are spans into the caller's buffer: no allocation, no copying, valid while the buffer is unchanged.
 * last_len is the len of the previous call on the same, longer-grown buffer (0 the first time); the parser only
 * searches the new bytes for the end of the head, so a slow sender cannot make us rescan (slowloris).
 *
 * Rejected, each with its own error: obs-fold, a bare CR or LF, invalid token characters in the method or a
 * field name, whitespace before the colon, duplicate or differing Content-Length, Content-Length together with
 * Transfer-Encoding, a Transfer-Encoding other than (exactly) chunked, a head over max_head bytes, more than
 * max_headers fields. */
#ifndef COMMON_HTTP_H
#define COMMON_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum http_error {
    HTTP_OK = 0,
    HTTP_ERR_HEAD_TOO_LARGE,   /* -> 431 */
    HTTP_ERR_TOO_MANY_HEADERS, /* -> 431 */
    HTTP_ERR_REQUEST_LINE,     /* bad method token, target or version */
    HTTP_ERR_VERSION,          /* not HTTP/1.0 or HTTP/1.1 -> 505 */
    HTTP_ERR_STATUS_LINE,
    HTTP_ERR_BARE_CR,
    HTTP_ERR_BARE_LF,
    HTTP_ERR_OBS_FOLD,
    HTTP_ERR_HEADER_NAME, /* empty or invalid token character */
    HTTP_ERR_SPACE_BEFORE_COLON,
    HTTP_ERR_HEADER_VALUE,   /* control character in a value */
    HTTP_ERR_CONTENT_LENGTH, /* not a number, duplicate or differing */
    HTTP_ERR_CL_AND_TE,
    HTTP_ERR_TRANSFER_ENCODING,
};

/* A short human reason for e, e.g. "obs-fold (line folding) is not allowed". */
const char *http_error_str(enum http_error e);

struct http_header {
    const char *name, *value; /* value has no leading or trailing whitespace */
    size_t name_len, value_len;
};

struct http_limits {
    size_t max_head;    /* bytes including the final CRLF CRLF; 0 means 8192 */
    size_t max_headers; /* 0 means the capacity of the headers array */
};

struct http_head {
    /* request: method and target; response: status and reason */
    const char *method, *target, *reason;
    size_t method_len, target_len, reason_len;
    int status;
    int minor_version;           /* 0 or 1 */
    struct http_header *headers; /* in: caller's array */
    size_t headers_cap;          /* in: its capacity */
    size_t num_headers;          /* out */
    int64_t content_length;      /* -1 when absent */
    bool chunked;
    bool conn_close;   /* "Connection: close", or HTTP/1.0 without keep-alive */
    bool conn_upgrade; /* "upgrade" among the Connection tokens */
    bool conn_names;   /* a Connection token other than close, keep-alive, upgrade: it names a hop-by-hop field */
    size_t conn_first, conn_end; /* every Connection field lies in headers[conn_first..conn_end) */
    enum http_error error;
};

/* The request-target forms (RFC 9112 3.2) http_target_split tells apart; authority-form (CONNECT) is BAD here. */
enum http_target_form { HTTP_TARGET_BAD, HTTP_TARGET_ORIGIN, HTTP_TARGET_ABSOLUTE, HTTP_TARGET_ASTERISK };

/* A request target split into spans of the caller's buffer. */
struct http_target {
    const char *authority; /* absolute-form: host[:port]; else empty */
    const char *origin;    /* the origin-form part: path and query; an absolute target's empty path leaves "" or
                            * "?q", which origin-form writes as "/" and "/?q" */
    size_t authority_len, origin_len;
    unsigned default_port; /* absolute-form: 80 (http) or 443 (https); else 0 */
};

int http_parse_request(const char *buf, size_t len, size_t last_len, struct http_head *req,
                       const struct http_limits *limits);
int http_parse_response(const char *buf, size_t len, size_t last_len, struct http_head *res,
                        const struct http_limits *limits);

/* Classify target[0..len): "/p?q" ORIGIN, "http[s]://host[:port][/p][?q]" ABSOLUTE, "*" ASTERISK; anything else
 * (another scheme, no or an empty host, userinfo, a port over 65535, bad authority characters) BAD. */
enum http_target_form http_target_split(const char *target, size_t len, struct http_target *out);
/* True when authority a and Host value b name one host and port: hosts compared case-insensitively, a missing or
 * empty port standing for default_port (RFC 9110 4.2.3); false when either port is not a number. */
bool http_authority_eq(const char *a, size_t alen, const char *b, size_t blen, unsigned default_port);
/* True when a Connection field of h lists name[0..len) as a token, making that field hop-by-hop (RFC 9110 7.6.1). */
bool http_conn_lists(const struct http_head *h, const char *name, size_t len);

/* The first header named name (case-insensitive), or NULL. */
const struct http_header *http_find_header(const struct http_head *h, const char *name);
/* True when the comma-separated list value contains token (case-insensitive, whitespace around items ignored). */
bool http_has_token(const char *value, size_t len, const char *token);
/* Look up query parameter name in a request target ("/ws?room=a%20b&x"), percent-decoding ('+' is a space)
 * into out (NUL-terminated). 1 found, 0 absent, -1 malformed escape or longer than outlen - 1. */
int http_query_param(const char *target, size_t target_len, const char *name, char *out, size_t outlen);
/* The query parameters of a target in order: start with *pos = 0; each call sets param's name and value as they are
 * in the target (still encoded; a parameter without '=' has an empty value). false after the last. */
bool http_query_next(const char *target, size_t target_len, size_t *pos, struct http_header *param);
/* Percent-decode s[0..n) ('+' is a space) into out, NUL-terminated. The decoded length, or -1 for a malformed
 * escape or %00, or when it needs more than outlen - 1 bytes. */
int http_decode(const char *s, size_t n, char *out, size_t outlen);
/* Length of the path part of a target (up to '?' or the end). */
size_t http_path_len(const char *target, size_t target_len);

#endif
