/* Cookie stickiness for the balancer, HAProxy's semantics: which node a request's cookie names, the request's
 * Cookie header without our cookie (indirect mode: the node never sees it), the Set-Cookie that pins a client to a
 * node (insert mode), and prefix mode on an application cookie (HAProxy's `cookie io prefix`: the client holds
 * `io=NODE~value`, the node sees and sets plain `io=value`).
 *
 * Everything works on header values as bytes (not NUL-terminated), writes into caller buffers and never allocates:
 * it runs on every request. Node ids are opaque tokens chosen in the config (HAProxy's `cookie n1` on a server
 * line), never addresses. Cookie syntax per RFC 6265 section 4.2.1 (pairs separated by ';' and optional spaces),
 * tolerant of what browsers send (empty pairs, spaces around '=', quoted values). */
#ifndef LB_COOKIE_H
#define LB_COOKIE_H

#include "common/cookie.h"

#include <stdbool.h>
#include <stddef.h>

#define COOKIE_PREFIX_SEP '~' /* HAProxy's delimiter between the node id and the application's value */

/* Common to all: pairs as common/cookie.h reads them (its cookie_find is the request side's lookup). hdr is read
 * only within [hdr, hdr + len); name and node are C strings. out must not overlap the input. Every writer
 * NUL-terminates out after the result (the length returned excludes the NUL) and returns -1 when the result plus
 * its NUL does not fit in outlen bytes (so outlen 0 always gives -1); on -1, out's content is unspecified. */

/* The Cookie header value without every cookie called name, written to out (outlen bytes of room). Returns the new
 * length (0: nothing left: drop the header), or -1 when out is too small. Other pairs keep their bytes and order,
 * joined by "; ": the result is the header rewritten to that canonical spacing even when no pair was removed (and
 * stripping it again gives it unchanged). A pair "name" without '=' is not name's cookie and stays. So the result
 * can be longer than hdr ("a=1;b=2" becomes "a=1; b=2"), by less than len / 2: outlen = len + len / 2 + 1 always
 * suffices. */
int cookie_strip(const char *hdr, size_t len, const char *name, char *out, size_t outlen);

/* Prefix mode, request side: if cookie name's value is "NODE~rest", *node and *node_len get NODE and out gets the
 * header with that cookie rewritten to "name=rest" (others unchanged). Returns the new length, 0 when the cookie
 * is absent or has no separator (out then holds an unchanged copy and *node_len is 0), or -1 when out is too
 * small.
 * Exactly: the node comes from the first pair called name whose value (inside its quotes, if quoted) holds a '~',
 * and is that value's bytes before its first '~' (*node points into hdr; it may be empty for a value "~rest",
 * which the caller treats like an unknown node). Every pair called name whose value holds a '~' loses the bytes
 * through its first '~' (each one was set by cookie_prefix_set, whatever its node); nothing else in the header
 * changes, spacing included. On 0 and -1, *node is NULL and *node_len 0. out needs len + 1 bytes at most. */
int cookie_prefix_take(const char *hdr, size_t len, const char *name, const char **node, size_t *node_len, char *out,
                       size_t outlen);

/* Prefix mode, response side: a Set-Cookie value "name=value; attrs" becomes "name=NODE~value; attrs" in out.
 * Returns the new length, 0 when the Set-Cookie is for another cookie (nothing written), -1 when out is too small
 * or the value is malformed (no '=').
 * The first pair is the bytes before the first ';' (trimmed as in a Cookie header); malformed means no '=' in it,
 * checked before the name. "NODE~" goes right before the value's first byte, inside its quotes if quoted, so
 * cookie_prefix_take on that first pair gives back NODE and the pair unchanged. node is not checked here (the
 * config checker runs cookie_node_id_valid): with a '~' or ';' in it the round trip breaks. */
int cookie_prefix_set(const char *set_cookie, size_t len, const char *name, const char *node, char *out, size_t outlen);

/* Insert mode: "name=node; Path=/; HttpOnly" into out. Returns its length, or -1 when out is too small. */
int cookie_insert_value(const char *name, const char *node, char *out, size_t outlen);

/* Is s a valid cookie name (an RFC 7230 token, 1..64 bytes) / a valid node id (RFC 6265 cookie-octets without
 * COOKIE_PREFIX_SEP, 1..64 bytes)? For the config checker. NULL is invalid. */
bool cookie_name_valid(const char *s);
bool cookie_node_id_valid(const char *s);

#endif
