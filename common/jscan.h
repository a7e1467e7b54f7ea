/* JSON (RFC 8259) scanning without decoding: the one scanner behind the Engine.IO/Socket.IO codec (common/eio.c),
 * its handshake reader and refserver's relay checks. Nothing is allocated; results are spans of the caller's bytes.
 *
 * The scanners take [*pp, end) and answer 1 (done, *pp moved past what they read), 0 (the bytes ended first: more
 * could make it valid, which is what lets one scanner check a whole message and the head of a longer one) or -1
 * (no more bytes can: malformed). Nesting is bounded: every value counts, scalars too, the outermost at depth 0,
 * and one at depth JSCAN_DEPTH or deeper is malformed (no unbounded recursion; refserver's msgpack relay counts the
 * same way, so what is accepted can be relayed). */
#ifndef COMMON_JSCAN_H
#define COMMON_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSCAN_DEPTH 32

struct jscan_span {
    const char *p;
    size_t len;
};

/* p moved past JSON whitespace (space, tab, CR, LF), at most to end. Inline: the decoders call it between every
 * two tokens. */
static inline const char *jscan_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}
/* One value after optional whitespace, at nesting depth (0 for a top-level value). 1 / 0 / -1 as above. */
int jscan_value(const char **pp, const char *end, int depth);
/* A string; **pp is its opening quote. 1 / 0 / -1 as above. */
int jscan_string(const char **pp, const char *end);
/* A number; 0 also when it runs to end (a longer number may follow), so a whole text is scanned up to a delimiter. */
int jscan_number(const char **pp, const char *end);
/* The end of the number at p in a whole text (it may run to end), or NULL when none starts there. */
const char *jscan_number_end(const char *p, const char *end);
/* Is s[0..len) exactly one JSON value (whitespace around allowed)? */
bool jscan_valid(const char *s, size_t len);
/* Is s[0..len) exactly one JSON object (whitespace around allowed)? */
bool jscan_is_object(const char *s, size_t len);
/* The value of the member named key (compared as written) at the top level of the JSON object obj[0..len).
 * 1 found (*val set), 0 not there, -1 not a valid object. */
int jscan_member(const char *obj, size_t len, const char *key, struct jscan_span *val);
/* cp (at most U+10FFFF) as UTF-8 into u; returns its length (1 to 4). */
size_t jscan_put_utf8(uint8_t u[4], uint32_t cp);
/* Decode the JSON string at s[0..len) (s[0] is its opening quote) into out, at most cap bytes (no NUL added):
 * 1 when the closing quote was reached, 0 when len or cap ran out first, -1 on a malformed string. *n gets the
 * bytes written either way. \uXXXX becomes UTF-8 (a surrogate as its own 3 bytes). */
int jscan_unescape(const char *s, size_t len, char *out, size_t cap, size_t *n);

#endif
