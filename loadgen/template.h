/* Messages in an application's own shape: what loadgen sends (--send TEMPLATE) and where it finds its message in
 * what comes back (--find PATH), so a server that wraps messages, or expects its own fields, can be measured.
 *
 * A template is text with placeholders: {{payload}} (loadgen's message, payload.h: required, once), {{seq}},
 * {{round}}, {{emitter}} and {{time_ms}} (the send time, Unix milliseconds). A placeholder inside a JSON string of
 * the template (after an odd number of unescaped quotes) is written escaped for one, so
 * '{"type":"chat","text":"{{payload}}"}' stays valid JSON. Numbers are plain decimal.
 *
 * A find path is a JSON pointer (RFC 6901: "/text", "/data/0/msg"; "" the whole message) into the received message
 * (with --protocol socketio: into the expected event's first argument), or "re:" and a POSIX extended regular
 * expression whose first group (or whole match) is the message, its JSON string escapes undone (it sees the first
 * 4096 bytes, up to a NUL). Both work on the head of a long message as loadgen keeps it: loadgen's fields come first
 * in its message. */
#ifndef LOADGEN_TEMPLATE_H
#define LOADGEN_TEMPLATE_H

#include "loadgen/payload.h"

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

#define LG_TEMPLATE_PARTS 16
#define LG_FIND_DEPTH     8

enum lg_tpl_slot { LG_TPL_TEXT, LG_TPL_PAYLOAD, LG_TPL_SEQ, LG_TPL_ROUND, LG_TPL_EMITTER, LG_TPL_TIME_MS };

struct lg_template {
    struct lg_tpl_part {
        enum lg_tpl_slot slot;
        bool in_string;   /* a placeholder inside a JSON string: written escaped */
        const char *text; /* LG_TPL_TEXT: the literal bytes */
        size_t len;
    } parts[LG_TEMPLATE_PARTS];
    int nparts;
    size_t literal_len;
};

struct lg_find {
    bool is_regex;
    regex_t re;
    /* a pointer's reference tokens, unescaped (~1 is '/', ~0 is '~'), in place in tokbuf */
    char tokbuf[256];
    const char *tok[LG_FIND_DEPTH];
    size_t toklen[LG_FIND_DEPTH];
    int ntok;
};

/* Parse a --send template (kept by pointer: text must outlive t). 0, or -1 with err naming what is wrong. */
int lg_template_parse(const char *text, struct lg_template *t, char *err, size_t errlen);
/* The most bytes a render can take with a payload of payload_len bytes. */
size_t lg_template_max(const struct lg_template *t, size_t payload_len);
/* Render with payload[0..payload_len) and m's numbers (unix_ms: the send time); the length (<= cap), or 0 when cap
 * is too small. */
size_t lg_template_render(const struct lg_template *t, const char *payload, size_t payload_len, const struct lg_msg *m,
                          long long unix_ms, char *out, size_t cap);

/* Parse a --find path. 0, or -1 with err (a bad pointer, a regex that does not compile). lg_find_free after. */
int lg_find_parse(const char *text, struct lg_find *f, char *err, size_t errlen);
void lg_find_free(struct lg_find *f);
/* loadgen's message inside msg[0..len) (a whole message or its head), into out (at most cap bytes, no NUL): its
 * length (it may be cut at cap or where the head ends: the payload parser needs only its head), or -1 when the
 * path leads nowhere in these bytes. */
long lg_find_extract(const struct lg_find *f, const char *msg, size_t len, char *out, size_t cap);

#endif
