/* HTTP/1.1 client helpers for Engine.IO polling; see httpc.h. */
#include "loadgen/httpc.h"

#include "common/body.h"
#include "common/cookie.h"

#include <stddef.h>
#include <string.h>

long httpc_chunked(char *buf, size_t len, size_t max_body, size_t *body_len)
{
    struct body b;
    /* First pass: find the end without moving anything (a partial body stays as it came, for the next call). */
    body_init(&b, BODY_CHUNKED, 0);
    body_limit(&b, max_body);
    ssize_t n = body_feed(&b, buf, len);
    if (n < 0)
        return -1;
    if (!body_done(&b))
        return -2;
    /* Second pass: the data together at the front (the framing is known good now). */
    body_init(&b, BODY_CHUNKED, 0);
    body_decode(&b, buf, (size_t)n, body_len);
    return (long)n;
}

static bool is_tchar(unsigned char ch)
{
    return ch > ' ' && ch < 127 && !strchr("()<>@,;:\\\"/[]?={}", ch);
}

/* The entry named name[0..nlen) in the jar: its offset and length, or -1 when absent. */
static long jar_find(const char *jar, const char *name, size_t nlen, size_t *elen)
{
    const char *p = jar, *end = jar + strlen(jar);
    struct cookie_pair pr;
    while (cookie_next(&p, end, &pr)) {
        if (cookie_pair_named(&pr, name, nlen)) {
            *elen = (size_t)(pr.end - pr.beg);
            return (long)(pr.beg - jar);
        }
    }
    return -1;
}

int httpc_jar_set(char *jar, size_t cap, const char *sc, size_t len)
{
    struct cookie_pair pr;
    size_t elen = 0;
    if (!cookie_set_cookie_pair(sc, len, &pr) || pr.name_end == pr.beg)
        return -1;
    const char *name = pr.beg;
    size_t nlen = (size_t)(pr.name_end - pr.beg), item = (size_t)(pr.end - pr.beg);
    for (size_t i = 0; i < nlen; i++)
        if (!is_tchar((unsigned char)name[i]))
            return -1;
    for (const char *v = pr.val; v < pr.val_end; v++) /* cookie-octets, plus the spaces browsers let through */
        if (((unsigned char)*v < 0x21 && *v != ' ' && *v != '\t') || *v == 127 || *v == ',' || *v == '\\')
            return -1;
    size_t have = strlen(jar);
    long at = jar_find(jar, name, nlen, &elen);
    size_t rest = at < 0 ? have : have - elen - (have > elen ? 2 : 0);
    if (rest + (rest ? 2 : 0) + item + 1 > cap)
        return -1;
    if (at >= 0) { /* drop the old one with its separator */
        size_t from = (size_t)at, to = from + elen;
        if (to < have)
            to += 2;
        else if (from > 0)
            from -= 2;
        memmove(jar + from, jar + to, have - to + 1);
    }
    size_t n = strlen(jar);
    if (n) {
        memcpy(jar + n, "; ", 2);
        n += 2;
    }
    memcpy(jar + n, name, item);
    jar[n + item] = '\0';
    return 0;
}
