/* Sticky-cookie helpers with HAProxy's semantics; see cookie.h.
 *
 * They run on every request and response, on bytes a client or a node chose: one forward scan per pass, pointers
 * that never leave [hdr, hdr + len), no allocation, and a bounded writer so a short out buffer is an answer (-1),
 * never an overflow. The pairs come from common/cookie.c, so that find, strip and take agree with every other reader
 * of cookies on what a pair, its name and its value are. */
#include "lb/cookie.h"

#include <limits.h>
#include <string.h>

#define MAX_TOKEN 64 /* longest cookie name or node id the config accepts */

/* Where the node prefix of pr's value ends: its first separator, or NULL. */
static const char *prefix_sep(const struct cookie_pair *pr)
{
    return memchr(pr->val, COOKIE_PREFIX_SEP, (size_t)(pr->val_end - pr->val));
}

/* ---- bounded writer ---- */

/* Appends until the result and its NUL would not fit; from then on every append is refused and finish says -1. */
struct writer {
    char *buf;
    size_t len, room; /* room excludes the NUL and is at most INT_MAX, so the length always fits the int result */
    bool full;
};

static struct writer writer_init(char *out, size_t outlen)
{
    size_t room = outlen ? outlen - 1 : 0;
    return (struct writer){.buf = out, .room = room < INT_MAX ? room : INT_MAX, .full = outlen == 0};
}

static void put(struct writer *w, const char *s, size_t n)
{
    if (w->full || n > w->room - w->len) {
        w->full = true;
        return;
    }
    if (n) /* s may be NULL for an empty header */
        memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void put_str(struct writer *w, const char *s)
{
    put(w, s, strlen(s));
}

static int finish(struct writer *w)
{
    if (w->full)
        return -1;
    w->buf[w->len] = '\0';
    return (int)w->len;
}

/* ---- Cookie header, request side ---- */

int cookie_strip(const char *hdr, size_t len, const char *name, char *out, size_t outlen)
{
    struct writer w = writer_init(out, outlen);
    const char *p = hdr, *end = hdr + len;
    size_t nlen = strlen(name);
    struct cookie_pair pr;
    while (cookie_next(&p, end, &pr)) {
        if (cookie_pair_named(&pr, name, nlen))
            continue;
        if (w.len)
            put(&w, "; ", 2);
        put(&w, pr.beg, (size_t)(pr.end - pr.beg));
    }
    return finish(&w);
}

/* Copy hdr to w without the node prefix of every pair called name; the first such prefix goes to *node. */
static void copy_untaken(struct writer *w, const char *hdr, size_t len, const char *name, const char **node,
                         size_t *node_len)
{
    const char *p = hdr, *end = hdr + len, *from = hdr;
    size_t nlen = strlen(name);
    struct cookie_pair pr;
    while (cookie_next(&p, end, &pr)) {
        const char *sep = cookie_pair_named(&pr, name, nlen) ? prefix_sep(&pr) : NULL;
        if (!sep)
            continue;
        if (!*node) {
            *node = pr.val;
            *node_len = (size_t)(sep - pr.val);
        }
        put(w, from, (size_t)(pr.val - from));
        from = sep + 1;
    }
    put(w, from, (size_t)(end - from));
}

int cookie_prefix_take(const char *hdr, size_t len, const char *name, const char **node, size_t *node_len, char *out,
                       size_t outlen)
{
    struct writer w = writer_init(out, outlen);
    *node = NULL;
    *node_len = 0;
    copy_untaken(&w, hdr, len, name, node, node_len);
    int n = finish(&w);
    if (n < 0 || !*node) { /* nothing taken: out is the unchanged header, and the answer is 0 whatever its length */
        *node = NULL;
        *node_len = 0;
        return n < 0 ? -1 : 0;
    }
    return n;
}

/* ---- Set-Cookie, response side ---- */

int cookie_prefix_set(const char *set_cookie, size_t len, const char *name, const char *node, char *out, size_t outlen)
{
    const char *end = set_cookie + len;
    struct cookie_pair pr;
    if (!cookie_set_cookie_pair(set_cookie, len, &pr))
        return -1;
    if (!cookie_pair_named(&pr, name, strlen(name)))
        return 0;
    struct writer w = writer_init(out, outlen);
    put(&w, set_cookie, (size_t)(pr.val - set_cookie));
    put_str(&w, node);
    put(&w, (const char[]){COOKIE_PREFIX_SEP}, 1);
    put(&w, pr.val, (size_t)(end - pr.val));
    return finish(&w);
}

int cookie_insert_value(const char *name, const char *node, char *out, size_t outlen)
{
    struct writer w = writer_init(out, outlen);
    put_str(&w, name);
    put(&w, "=", 1);
    put_str(&w, node);
    put_str(&w, "; Path=/; HttpOnly");
    return finish(&w);
}

/* ---- config checks ---- */

/* RFC 7230 section 3.2.6 tchar. */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 6265 section 4.1.1 cookie-octet: visible ASCII but for '"', ',', ';' and '\'. */
static bool is_cookie_octet(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e && c != '"' && c != ',' && c != ';' && c != '\\';
}

static bool is_node_octet(unsigned char c)
{
    return is_cookie_octet(c) && c != COOKIE_PREFIX_SEP;
}

/* 1..MAX_TOKEN bytes of s, each passing ok; never reads past the byte after the limit. */
static bool all_of(const char *s, bool (*ok)(unsigned char))
{
    if (!s)
        return false;
    size_t i = 0;
    for (; i <= MAX_TOKEN && s[i]; i++) {
        if (!ok((unsigned char)s[i]))
            return false;
    }
    return i >= 1 && i <= MAX_TOKEN;
}

bool cookie_name_valid(const char *s)
{
    return all_of(s, is_tchar);
}

bool cookie_node_id_valid(const char *s)
{
    return all_of(s, is_node_octet);
}
