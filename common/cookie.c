/* Cookie and Set-Cookie pairs; see cookie.h.
 *
 * One forward scan, pointers that never leave the caller's span: the lb runs this on every request, on bytes a
 * client chose. The parsing lives here only (parse_pair) so that every user agrees on what a pair, its name and its
 * value are. */
#include "common/cookie.h"

#include <string.h>

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Parse [s, e), which holds no ';', into *pr. */
static void parse_pair(const char *s, const char *e, struct cookie_pair *pr)
{
    while (s < e && is_ows(*s))
        s++;
    while (e > s && is_ows(e[-1]))
        e--;
    pr->beg = s;
    pr->end = e;
    const char *eq = memchr(s, '=', (size_t)(e - s));
    if (!eq) {
        pr->name_end = e;
        pr->val = pr->val_end = NULL;
        return;
    }
    const char *n = eq, *v = eq + 1;
    while (n > s && is_ows(n[-1]))
        n--;
    while (v < e && is_ows(*v))
        v++;
    pr->name_end = n;
    pr->val = v;
    pr->val_end = e;
    if (e - v >= 2 && *v == '"' && e[-1] == '"') {
        pr->val = v + 1;
        pr->val_end = e - 1;
    }
}

int cookie_next(const char **p, const char *end, struct cookie_pair *pr)
{
    const char *s = *p;
    while (s < end && (*s == ';' || is_ows(*s)))
        s++;
    if (s == end) {
        *p = end;
        return 0;
    }
    const char *e = memchr(s, ';', (size_t)(end - s));
    *p = e ? e : end;
    parse_pair(s, *p, pr);
    return 1;
}

bool cookie_set_cookie_pair(const char *sc, size_t len, struct cookie_pair *pr)
{
    const char *semi = len ? memchr(sc, ';', len) : NULL;
    parse_pair(sc, semi ? semi : sc + len, pr);
    return pr->val != NULL;
}

bool cookie_pair_named(const struct cookie_pair *pr, const char *name, size_t nlen)
{
    return pr->val && (size_t)(pr->name_end - pr->beg) == nlen && memcmp(pr->beg, name, nlen) == 0;
}

int cookie_find(const char *hdr, size_t len, const char *name, const char **value, size_t *value_len)
{
    const char *p = hdr, *end = hdr + len;
    size_t nlen = strlen(name);
    struct cookie_pair pr;
    while (cookie_next(&p, end, &pr)) {
        if (cookie_pair_named(&pr, name, nlen)) {
            *value = pr.val;
            *value_len = (size_t)(pr.val_end - pr.val);
            return 1;
        }
    }
    *value = NULL;
    *value_len = 0;
    return 0;
}
