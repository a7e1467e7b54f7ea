/* Cookie grammar shared by the lb (a request's Cookie header) and loadgen (a response's Set-Cookie): RFC 6265
 * section 4.2.1 pairs separated by ';', read as user agents and servers read what browsers send.
 *
 * A Cookie header value is pairs separated by ';', each "name=value" with optional spaces and tabs around the pair
 * and around '='; empty pairs are skipped, a pair without '=' is nobody's cookie (never matches), a value "\"v\"" is
 * v, and names compare case-sensitively. Only ';' separates (a ',' is part of a value). The first pair of a
 * Set-Cookie value (before its attributes) reads the same way. Everything works on bytes (not NUL-terminated),
 * never reads outside [hdr, hdr + len) and never allocates; spans point into the caller's bytes. */
#ifndef COMMON_COOKIE_H
#define COMMON_COOKIE_H

#include <stdbool.h>
#include <stddef.h>

/* One pair, trimmed of spaces and tabs. */
struct cookie_pair {
    const char *beg, *end;     /* the whole pair */
    const char *name_end;      /* the name is [beg, name_end) (may be empty) */
    const char *val, *val_end; /* the value, inside its quotes when quoted; val is NULL for a pair without '=' */
};

/* The next non-empty pair of a Cookie header at or after *p (before end) into *pr, *p moved past it. 1, or 0 when
 * none is left. */
int cookie_next(const char **p, const char *end, struct cookie_pair *pr);

/* The first pair of a Set-Cookie value (its bytes before the first ';') into *pr. true when it is a cookie (has
 * '='); a caller that keeps it also wants a non-empty name (RFC 6265 section 5.2 ignores an empty one). */
bool cookie_set_cookie_pair(const char *sc, size_t len, struct cookie_pair *pr);

/* Is pr a "name=value" pair for name (nlen bytes)? */
bool cookie_pair_named(const struct cookie_pair *pr, const char *name, size_t nlen);

/* The value of cookie name in a Cookie header value (the first one if repeated, as RFC 6265 user agents send the
 * most specific first), without quotes. 1 found (*value, *value_len point into hdr), 0 absent (*value NULL,
 * *value_len 0). */
int cookie_find(const char *hdr, size_t len, const char *name, const char **value, size_t *value_len);

#endif
