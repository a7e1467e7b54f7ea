/* CORS for the Engine.IO polling endpoints, as socket.io's `cors` option (the npm cors package) with credentials:
 * an allowed Origin is echoed (never '*', which browsers refuse with credentials), every answer varies on Origin, and
 * an OPTIONS preflight gets 204. WebSocket handshakes are left alone: browsers do not apply CORS to them. */
#ifndef REFSERVER_CORS_H
#define REFSERVER_CORS_H

#include "common/http.h"

#include <stdbool.h>
#include <stddef.h>

struct conn;

#define CORS_ORIGIN_MAX  200 /* longest Origin echoed; a longer one is not allowed */
#define CORS_HEADERS_MAX 256 /* longest Access-Control-Request-Headers echoed; a longer one is not */

/* 0 when list is "*" or a comma-separated list of origins scheme://host[:port] (no path, no trailing slash); else -1
 * with the reason in err. */
int cors_check_list(const char *list, char *err, size_t errlen);
/* True when origin[0..len) is allowed by list (checked by cors_check_list): "*" allows any, else an exact match. */
bool cors_allowed(const char *list, const char *origin, size_t len);
/* The CORS header lines (CRLF-terminated) of an answer to a request with origin[0..len) (NULL: no Origin) under list:
 * Vary: Origin always, Allow-Origin and Allow-Credentials when allowed. The length written, or -1 if out is short. */
int cors_answer_headers(const char *list, const char *origin, size_t len, char *out, size_t outlen);

/* Before routing each request on c: forget the previous request's CORS lines; for a Socket.IO path request with
 * --cors-origin set, keep this one's (conn_respond adds them, also to a held GET answered later). 0, or -1 out of
 * memory (c is then killed). */
int cors_begin(struct conn *c, const struct http_head *h);
/* Free c's CORS lines (at the connection's end). */
void cors_clear(struct conn *c);
/* True when h is a preflight refserver answers: OPTIONS with --cors-origin set. */
bool cors_is_preflight(const struct conn *c, const struct http_head *h);
/* Answer preflight h on c: 204 with the methods and the echoed request headers when its Origin is allowed, with only
 * Vary otherwise. conn_respond's result. */
int cors_preflight(struct conn *c, const struct http_head *h);

#endif
