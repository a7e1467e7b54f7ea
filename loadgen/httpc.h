/* The client side of HTTP/1.1 that Engine.IO long-polling needs beyond common/http.h's head parser: a response
 * body's framing (Content-Length or chunked) and a small cookie jar. No I/O and no allocation: the caller owns the
 * buffers, as with http_parse_response, so both are tested and fuzzed without sockets. */
#ifndef LOADGEN_HTTPC_H
#define LOADGEN_HTTPC_H

#include <stdbool.h>
#include <stddef.h>

/* A chunked body at buf[0..len) (what follows the head): once it is complete (the last chunk and the trailer's
 * blank line), its data is moved together to the front of buf, *body_len gets its length and the bytes of the
 * whole encoding are returned (> 0). -2 when more bytes are needed (buf unchanged), -1 when malformed as
 * common/body.h reads chunked framing (strictly: RFC 9112 section 7.1) or when the chunk sizes add up past
 * max_body. */
long httpc_chunked(char *buf, size_t len, size_t max_body, size_t *body_len);

/* Keep the cookie a Set-Cookie value sets (its "name=value", the attributes dropped) in the jar, a C string
 * "a=1; b=2" of at most cap - 1 bytes: a cookie of the same name is replaced (the new one goes last); Max-Age,
 * Expires, Domain and Path are not judged (one session, one origin, a short run: every cookie is kept). 0, or -1 when
 * the value is not name=value or the jar is full (the jar is then unchanged). */
int httpc_jar_set(char *jar, size_t cap, const char *set_cookie, size_t len);

#endif
