/* HTTP/1.1 client helpers for Engine.IO polling; see httpc.h. */
#include "loadgen/httpc.h"

#include "common/cookie.h"

#include <stddef.h>
#include <string.h>

#define TRAILER_MAX 1024
#define SIZE_DIGITS 15 /* hex digits of a chunk size: far over any body we accept, and no overflow */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The chunk-size line at buf[*pos..len): the size into *size, *pos past its CRLF. 1, 0 (incomplete), -1. */
static int size_line(const char *buf, size_t len, size_t *pos, size_t *size)
{
    size_t p = *pos, v = 0, digits = 0;
    while (p < len && hex_value(buf[p]) >= 0) {
        if (++digits > SIZE_DIGITS)
            return -1;
        v = v * 16 + (size_t)hex_value(buf[p++]);
    }
    if (p == len)
        return 0;
    if (!digits)
        return -1;
    const char *lf = memchr(buf + p, '\n', len - p);
    size_t line_end = lf ? (size_t)(lf - buf) : len;
    if (line_end - p > TRAILER_MAX)
        return -1;
    if (!lf)
        return 0;
    if (line_end == p || buf[line_end - 1] != '\r' ||
        (buf[p] != ';' && buf[p] != '\r' && buf[p] != ' ' && buf[p] != '\t'))
        return -1;
    for (size_t i = p; i + 1 < line_end; i++)
        if (buf[i] == '\r')
            return -1;
    *size = v;
    *pos = line_end + 1;
    return 1;
}

/* The trailer after the last chunk: header lines (not kept), then an empty line. 1 with *pos past it, 0, -1. */
static int trailer(const char *buf, size_t len, size_t *pos)
{
    size_t p = *pos;
    for (int lines = 0;; lines++) {
        const char *lf = memchr(buf + p, '\n', len - p);
        if (!lf)
            return len - p > TRAILER_MAX || lines > 16 ? -1 : 0;
        size_t line_end = (size_t)(lf - buf);
        if (line_end == p || buf[line_end - 1] != '\r' || line_end - p > TRAILER_MAX || lines > 16)
            return -1;
        bool empty = line_end == p + 1;
        p = line_end + 1;
        if (empty) {
            *pos = p;
            return 1;
        }
    }
}

long httpc_chunked(char *buf, size_t len, size_t max_body, size_t *body_len)
{
    size_t pos = 0, total = 0, size;
    int rc;
    /* First pass: check the framing up to its end without moving anything (a partial body stays as it came). */
    for (;;) {
        if ((rc = size_line(buf, len, &pos, &size)) < 1)
            return rc == 0 ? -2 : -1;
        if (size == 0)
            break;
        if (size > max_body - total || size > max_body)
            return -1;
        total += size;
        if (len - pos < size + 2)
            return len - pos <= size || buf[pos + size] == '\r' ? -2 : -1;
        if (buf[pos + size] != '\r' || buf[pos + size + 1] != '\n')
            return -1;
        pos += size + 2;
    }
    if ((rc = trailer(buf, len, &pos)) < 1)
        return rc == 0 ? -2 : -1;
    /* Second pass: the data together at the front (every size line is valid now). */
    size_t rd = 0, wr = 0;
    for (;;) {
        size_line(buf, len, &rd, &size);
        if (size == 0)
            break;
        memmove(buf + wr, buf + rd, size);
        wr += size;
        rd += size + 2;
    }
    *body_len = wr;
    return (long)pos;
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
