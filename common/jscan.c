/* JSON scanning without decoding; see jscan.h. */
#include "common/jscan.h"

#include <string.h>

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int jscan_string(const char **pp, const char *end)
{
    for (const char *p = *pp + 1; p < end; p++) {
        if (*p == '"') {
            *pp = p + 1;
            return 1;
        }
        if ((unsigned char)*p < 0x20)
            return -1;
        if (*p != '\\')
            continue;
        if (++p == end)
            return 0;
        if (*p == 'u') {
            for (int i = 0; i < 4; i++)
                if (++p == end)
                    return 0;
                else if (!is_hex(*p))
                    return -1;
        } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
            return -1;
        }
    }
    return 0;
}

static int skip_digits(const char **pp, const char *end)
{
    const char *p = *pp;
    if (p == end)
        return 0;
    if (!is_digit(*p))
        return -1;
    while (p < end && is_digit(*p))
        p++;
    *pp = p;
    return 1;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?; unless whole, a byte must follow (else more digits may come). */
static int number(const char **pp, const char *end, bool whole)
{
    const char *p = *pp;
    int rc;
    if (p < end && *p == '-')
        p++;
    if (p < end && *p == '0')
        p++;
    else if ((rc = skip_digits(&p, end)) < 1)
        return rc;
    if (p < end && *p == '.' && (p++, (rc = skip_digits(&p, end)) < 1))
        return rc;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if ((rc = skip_digits(&p, end)) < 1)
            return rc;
    }
    if (p == end && !whole)
        return 0;
    *pp = p;
    return 1;
}

int jscan_number(const char **pp, const char *end)
{
    return number(pp, end, false);
}

const char *jscan_number_end(const char *p, const char *end)
{
    return number(&p, end, true) == 1 ? p : NULL;
}

static int skip_literal(const char **pp, const char *end, const char *lit)
{
    size_t n = strlen(lit), have = (size_t)(end - *pp);
    if (have < n)
        return memcmp(*pp, lit, have) == 0 ? 0 : -1;
    if (memcmp(*pp, lit, n) != 0)
        return -1;
    *pp += n;
    return 1;
}

/* An array or object; **pp is its '[' or '{', at depth (already checked). */
static int skip_container(const char **pp, const char *end, int depth)
{
    char close = **pp == '[' ? ']' : '}';
    const char *p = jscan_ws(*pp + 1, end);
    int rc;
    if (p < end && *p == close) {
        *pp = p + 1;
        return 1;
    }
    for (;;) {
        if (close == '}') {
            if (p == end)
                return 0;
            if (*p != '"')
                return -1;
            if ((rc = jscan_string(&p, end)) < 1)
                return rc;
            p = jscan_ws(p, end);
            if (p == end)
                return 0;
            if (*p++ != ':')
                return -1;
        }
        if ((rc = jscan_value(&p, end, depth + 1)) < 1)
            return rc;
        p = jscan_ws(p, end);
        if (p == end)
            return 0;
        if (*p == close) {
            *pp = p + 1;
            return 1;
        }
        if (*p != ',')
            return -1;
        p = jscan_ws(p + 1, end);
    }
}

int jscan_value(const char **pp, const char *end, int depth)
{
    const char *p = jscan_ws(*pp, end);
    int rc;
    if (p == end)
        return 0;
    if (depth >= JSCAN_DEPTH)
        return -1;
    switch (*p) {
    case '"': rc = jscan_string(&p, end); break;
    case '[':
    case '{': rc = skip_container(&p, end, depth); break;
    case 't': rc = skip_literal(&p, end, "true"); break;
    case 'f': rc = skip_literal(&p, end, "false"); break;
    case 'n': rc = skip_literal(&p, end, "null"); break;
    default: rc = number(&p, end, false); break;
    }
    if (rc == 1)
        *pp = p;
    return rc;
}

bool jscan_valid(const char *s, size_t len)
{
    const char *end = s + len, *p = jscan_ws(s, end);
    /* a number alone runs to the end of a whole text */
    int rc = p < end && (*p == '-' || is_digit(*p)) ? number(&p, end, true) : jscan_value(&p, end, 0);
    return rc == 1 && jscan_ws(p, end) == end;
}

bool jscan_is_object(const char *s, size_t len)
{
    const char *p = jscan_ws(s, s + len), *end = s + len;
    return p < end && *p == '{' && jscan_value(&p, end, 0) == 1 && jscan_ws(p, end) == end;
}

int jscan_member(const char *obj, size_t len, const char *key, struct jscan_span *val)
{
    if (!jscan_is_object(obj, len))
        return -1;
    const char *end = obj + len, *p = jscan_ws(jscan_ws(obj, end) + 1, end);
    size_t klen = strlen(key);
    while (*p == '"') { /* valid: every scan below succeeds */
        const char *name = p + 1;
        jscan_string(&p, end);
        bool match = (size_t)(p - 1 - name) == klen && memcmp(name, key, klen) == 0;
        p = jscan_ws(jscan_ws(p, end) + 1, end); /* past ':' */
        const char *v = p;
        jscan_value(&p, end, 1);
        if (match) {
            *val = (struct jscan_span){v, (size_t)(p - v)};
            return 1;
        }
        p = jscan_ws(p, end);
        p = jscan_ws(p + (*p == ','), end);
    }
    return 0;
}

size_t jscan_put_utf8(uint8_t u[4], uint32_t cp)
{
    if (cp < 0x80) {
        u[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (uint8_t)(0xc0 | cp >> 6);
        u[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        u[0] = (uint8_t)(0xe0 | cp >> 12);
        u[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        u[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    u[0] = (uint8_t)(0xf0 | cp >> 18);
    u[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
    u[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
    u[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

static uint32_t hex4(const char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v * 16 + (uint32_t)(is_digit(p[i]) ? p[i] - '0' : (p[i] | 0x20) - 'a' + 10);
    return v;
}

/* One escape at p (after the backslash) into tmp; its length, or 0 when cut, -1 when malformed. */
static int unescape(const char *p, const char *end, uint8_t tmp[4], size_t *used)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    if (p == end)
        return 0;
    if (*p == 'u') {
        if (end - p < 5)
            return 0;
        for (int i = 1; i < 5; i++)
            if (!is_hex(p[i]))
                return -1;
        *used = 5;
        return (int)jscan_put_utf8(tmp, hex4(p + 1));
    }
    const char *at = *p ? strchr(from, *p) : NULL;
    if (!at)
        return -1;
    tmp[0] = (uint8_t)to[at - from];
    *used = 1;
    return 1;
}

int jscan_unescape(const char *s, size_t len, char *out, size_t cap, size_t *n)
{
    const char *p = s + 1, *end = s + len;
    *n = 0;
    if (len == 0 || *s != '"')
        return -1;
    while (p < end) {
        uint8_t tmp[4];
        size_t used = 0;
        int w = 1;
        if (*p == '"')
            return 1;
        if ((unsigned char)*p < 0x20)
            return -1;
        if (*p == '\\') {
            if ((w = unescape(p + 1, end, tmp, &used)) <= 0)
                return w;
            used++;
        } else {
            tmp[0] = (uint8_t)*p;
            used = 1;
        }
        if (*n + (size_t)w > cap)
            return 0;
        memcpy(out + *n, tmp, (size_t)w);
        *n += (size_t)w;
        p += used;
    }
    return 0;
}
