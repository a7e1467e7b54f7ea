/* --send templates and --find paths; see template.h. */
#include "loadgen/template.h"

#include "common/jscan.h"

#include <stdio.h>
#include <string.h>

#define NUM_MAX   20   /* digits of a uint64 or a Unix time in ms */
#define REGEX_MAX 4096 /* bytes of a message a --find regex looks at (a NUL-terminated copy on the stack) */

static int fail(char *err, size_t errlen, const char *what, const char *text)
{
    snprintf(err, errlen, "%s: %s", what, text);
    return -1;
}

static const struct {
    const char *name;
    enum lg_tpl_slot slot;
} SLOTS[] = {{"payload", LG_TPL_PAYLOAD},
             {"seq", LG_TPL_SEQ},
             {"round", LG_TPL_ROUND},
             {"emitter", LG_TPL_EMITTER},
             {"time_ms", LG_TPL_TIME_MS}};

static int add_part(struct lg_template *t, struct lg_tpl_part part, char *err, size_t errlen)
{
    if (t->nparts == LG_TEMPLATE_PARTS)
        return fail(err, errlen, "--send", "too many placeholders (at most 7)");
    t->parts[t->nparts++] = part;
    return 0;
}

/* Are we inside a JSON string after text[0..n)? Quotes not escaped by a backslash toggle it. */
static bool inside_string(const char *text, size_t n, bool in, size_t from)
{
    for (size_t i = from; i < n; i++) {
        if (in && text[i] == '\\')
            i++;
        else if (text[i] == '"')
            in = !in;
    }
    return in;
}

int lg_template_parse(const char *text, struct lg_template *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    size_t at = 0, len = strlen(text), scanned = 0;
    bool in = false;
    int payloads = 0;
    while (at <= len) {
        const char *open = strstr(text + at, "{{");
        size_t lit_end = open ? (size_t)(open - text) : len;
        if (lit_end > at &&
            add_part(t, (struct lg_tpl_part){.slot = LG_TPL_TEXT, .text = text + at, .len = lit_end - at}, err,
                     errlen) < 0)
            return -1;
        t->literal_len += lit_end - at;
        if (!open)
            break;
        const char *close = strstr(open + 2, "}}");
        size_t i = 0, n = close ? (size_t)(close - open - 2) : 0;
        while (close && i < sizeof SLOTS / sizeof SLOTS[0] &&
               (strlen(SLOTS[i].name) != n || memcmp(SLOTS[i].name, open + 2, n) != 0))
            i++;
        if (!close || i == sizeof SLOTS / sizeof SLOTS[0])
            return fail(err, errlen, "--send",
                        "unknown placeholder (known: {{payload}} {{seq}} {{round}} {{emitter}} {{time_ms}})");
        in = inside_string(text, lit_end, in, scanned);
        scanned = lit_end;
        payloads += SLOTS[i].slot == LG_TPL_PAYLOAD;
        if (add_part(t, (struct lg_tpl_part){.slot = SLOTS[i].slot, .in_string = in}, err, errlen) < 0)
            return -1;
        at = (size_t)(close - text) + 2;
    }
    if (payloads != 1)
        return fail(err, errlen, "--send", "the template must hold {{payload}} exactly once (loadgen's message)");
    return 0;
}

size_t lg_template_max(const struct lg_template *t, size_t payload_len)
{
    /* escaping at most doubles loadgen's message: it is printable ASCII (payload.h) */
    return t->literal_len + 2 * payload_len + (size_t)t->nparts * NUM_MAX;
}

/* payload written escaped for a JSON string: its quotes and backslashes get one. */
static size_t put_escaped(char *out, const char *s, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            out[w++] = '\\';
        out[w++] = s[i];
    }
    return w;
}

size_t lg_template_render(const struct lg_template *t, const char *payload, size_t payload_len, const struct lg_msg *m,
                          long long unix_ms, char *out, size_t cap)
{
    if (cap < lg_template_max(t, payload_len))
        return 0;
    size_t w = 0;
    for (int i = 0; i < t->nparts; i++) {
        const struct lg_tpl_part *p = &t->parts[i];
        switch (p->slot) {
        case LG_TPL_TEXT: memcpy(out + w, p->text, p->len), w += p->len; break;
        case LG_TPL_PAYLOAD:
            if (p->in_string)
                w += put_escaped(out + w, payload, payload_len);
            else
                memcpy(out + w, payload, payload_len), w += payload_len;
            break;
        case LG_TPL_SEQ: w += (size_t)snprintf(out + w, NUM_MAX + 1, "%u", m->seq); break;
        case LG_TPL_ROUND: w += (size_t)snprintf(out + w, NUM_MAX + 1, "%u", m->round); break;
        case LG_TPL_EMITTER: w += (size_t)snprintf(out + w, NUM_MAX + 1, "%u", m->emitter); break;
        case LG_TPL_TIME_MS: w += (size_t)snprintf(out + w, NUM_MAX + 1, "%lld", unix_ms); break;
        }
    }
    return w;
}

/* "/a/b~1c" into unescaped tokens. */
static int parse_pointer(const char *text, struct lg_find *f, char *err, size_t errlen)
{
    if (*text && *text != '/')
        return fail(err, errlen, "--find", "expected a JSON pointer such as /text or /data/0/msg, or re:REGEX");
    if (strlen(text) >= sizeof f->tokbuf)
        return fail(err, errlen, "--find", "the pointer is too long (at most 255 bytes)");
    size_t w = 0;
    for (const char *p = text; *p;) {
        if (f->ntok == LG_FIND_DEPTH)
            return fail(err, errlen, "--find", "the pointer is too deep (at most 8 tokens)");
        f->tok[f->ntok] = f->tokbuf + w;
        for (p++; *p && *p != '/'; p++) {
            if (*p == '~' && (p[1] == '0' || p[1] == '1'))
                f->tokbuf[w++] = *++p == '0' ? '~' : '/';
            else if (*p == '~')
                return fail(err, errlen, "--find", "'~' must be written ~0 in a JSON pointer ('/' is ~1)");
            else
                f->tokbuf[w++] = *p;
        }
        f->toklen[f->ntok] = (size_t)(f->tokbuf + w - f->tok[f->ntok]);
        f->ntok++;
    }
    return 0;
}

int lg_find_parse(const char *text, struct lg_find *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    if (strncmp(text, "re:", 3) != 0)
        return parse_pointer(text, f, err, errlen);
    int rc = regcomp(&f->re, text + 3, REG_EXTENDED);
    if (rc != 0) {
        char why[128];
        regerror(rc, &f->re, why, sizeof why);
        return fail(err, errlen, "--find re:", why);
    }
    f->is_regex = true;
    return 0;
}

void lg_find_free(struct lg_find *f)
{
    if (f->is_regex)
        regfree(&f->re);
    f->is_regex = false;
}

/* p at a value inside an object or array: at what follows it and its comma, or NULL (the last item, or the head
 * ends inside it). */
static const char *past_item(const char *p, const char *end)
{
    if (jscan_value(&p, end, 1) != 1)
        return NULL;
    p = jscan_ws(p, end);
    return p < end && *p == ',' ? jscan_ws(p + 1, end) : NULL;
}

/* p at an object: past the value of the member named tok, or NULL. */
static const char *member(const char *p, const char *end, const char *tok, size_t toklen)
{
    for (p = jscan_ws(p + 1, end); p && p < end && *p == '"';) {
        const char *key = p;
        char name[256];
        size_t n = 0;
        if (jscan_string(&p, end) != 1 || jscan_unescape(key, (size_t)(p - key), name, sizeof name, &n) != 1)
            return NULL;
        p = jscan_ws(p, end);
        if (p == end || *p != ':')
            return NULL;
        p = jscan_ws(p + 1, end);
        if (n == toklen && memcmp(name, tok, n) == 0)
            return p;
        p = past_item(p, end);
    }
    return NULL;
}

/* p at an array: at its element number tok, or NULL. */
static const char *element(const char *p, const char *end, const char *tok, size_t toklen)
{
    size_t index = 0;
    if (toklen == 0 || toklen > 9)
        return NULL;
    for (size_t i = 0; i < toklen; i++) {
        if (tok[i] < '0' || tok[i] > '9')
            return NULL;
        index = index * 10 + (size_t)(tok[i] - '0');
    }
    p = jscan_ws(p + 1, end);
    for (size_t k = 0; p && k < index; k++)
        p = past_item(p, end);
    return p && p < end && *p != ']' ? p : NULL;
}

static long copy_out(const char *s, size_t n, char *out, size_t cap)
{
    n = n < cap ? n : cap;
    memcpy(out, s, n);
    return (long)n;
}

/* The regex match with JSON string escapes undone (\" and \\ and \/: what a server's encoder adds). */
static long unescape_match(const char *s, size_t n, char *out, size_t cap)
{
    size_t w = 0;
    for (size_t i = 0; i < n && w < cap; i++) {
        if (s[i] == '\\' && i + 1 < n && (s[i + 1] == '"' || s[i + 1] == '\\' || s[i + 1] == '/'))
            i++;
        out[w++] = s[i];
    }
    return (long)w;
}

long lg_find_extract(const struct lg_find *f, const char *msg, size_t len, char *out, size_t cap)
{
    if (f->is_regex) {
        /* a copy rather than REG_STARTEND: sanitizers' regexec reads to the NUL whatever the flags say */
        char text[REGEX_MAX + 1];
        size_t n = len < REGEX_MAX ? len : REGEX_MAX;
        memcpy(text, msg, n);
        text[n] = '\0';
        regmatch_t m[2];
        if (regexec(&f->re, text, 2, m, 0) != 0)
            return -1;
        int g = f->re.re_nsub >= 1 && m[1].rm_so >= 0 ? 1 : 0;
        return unescape_match(text + m[g].rm_so, (size_t)(m[g].rm_eo - m[g].rm_so), out, cap);
    }
    const char *p = jscan_ws(msg, msg + len), *end = msg + len;
    for (int i = 0; p && i < f->ntok; i++) {
        if (p < end && *p == '{')
            p = member(p, end, f->tok[i], f->toklen[i]);
        else if (p < end && *p == '[')
            p = element(p, end, f->tok[i], f->toklen[i]);
        else
            p = NULL;
    }
    if (!p || p == end)
        return -1;
    if (*p != '"') { /* the value itself when it is whole, else what the head holds of it */
        const char *v = p;
        return copy_out(v, (size_t)((jscan_value(&p, end, 1) == 1 ? p : end) - v), out, cap);
    }
    size_t n = 0;
    return jscan_unescape(p, (size_t)(end - p), out, cap, &n) < 0 ? -1 : (long)n;
}
