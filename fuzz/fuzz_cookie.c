/* libFuzzer target for lb/cookie.c and the grammar under it (common/cookie.c): every request's Cookie header and
 * every node's Set-Cookie go through them, and clients choose those bytes.
 *
 * Input: a byte whose low 6 bits are the name's length and high 2 bits pick a node id, then the name's bytes (cut
 * at a NUL: the name is a C string), then the header value. The header sits at the end of an exact-size allocation
 * and every out buffer is exactly as large as the answer needs, so ASan flags a read past len or a write past
 * outlen. A reference splitter here (split at ';' first, then trim, then look for '=') states what the pairs are,
 * and invariants abort():
 *  - set_cookie_pair: the reference's first pair (before the first ';'), a cookie when it has '=';
 *  - find: the first pair called name, its value inside the input, inside its quotes if quoted;
 *  - strip: exactly the other pairs joined by "; ": no pair called name is left, the others keep their count,
 *    bytes and order; stripping the result again changes nothing;
 *  - prefix_take: 0 with an unchanged copy when no pair called name holds a '~', else the header minus, in every
 *    such pair, the value's bytes through its first '~', with the node the first such value's bytes before it;
 *    the other pairs are untouched (stripping name gives the same as from the input);
 *  - prefix_set: -1 without '=' in the first pair, 0 for another name with out untouched, else "NODE~" inserted
 *    at the value, and prefix_take on the result's first pair gives back the node and the input's first pair;
 *  - insert_value: exactly "name=node; Path=/; HttpOnly";
 *  - every writer: the length and NUL fit exactly in length + 1 bytes, and length bytes give -1. */
#include "lb/cookie.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

/* Valid node ids (cookie_node_id_valid), so the prefix round trip is defined. */
static const char *const nodes[] = {"n1", "node-7", "A",
                                    "0123456789012345678901234567890123456789012345678901234567890123"};

/* ---- reference splitter ---- */

struct ref {
    size_t beg, end, name_end, val, val_end; /* offsets into the header */
    bool has_eq;
};

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

/* The pair in h[a, b) (no ';' inside), trimmed; false when it is empty. */
static bool ref_pair(const char *h, size_t a, size_t b, struct ref *r)
{
    while (a < b && ows(h[a]))
        a++;
    while (b > a && ows(h[b - 1]))
        b--;
    if (a == b)
        return false;
    *r = (struct ref){.beg = a, .end = b, .name_end = b};
    for (size_t i = a; i < b && !r->has_eq; i++) {
        if (h[i] == '=') {
            r->has_eq = true;
            r->name_end = i;
            r->val = i + 1;
        }
    }
    if (!r->has_eq)
        return true;
    while (r->name_end > a && ows(h[r->name_end - 1]))
        r->name_end--;
    while (r->val < b && ows(h[r->val]))
        r->val++;
    r->val_end = b;
    if (b - r->val >= 2 && h[r->val] == '"' && h[b - 1] == '"') {
        r->val++;
        r->val_end--;
    }
    return true;
}

/* Every non-empty pair of h[0, n) into rs (room for n / 2 + 1); returns how many. */
static size_t ref_split(const char *h, size_t n, struct ref *rs)
{
    size_t count = 0, from = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && h[i] != ';')
            continue;
        if (ref_pair(h, from, i, &rs[count]))
            count++;
        from = i + 1;
    }
    return count;
}

static bool ref_named(const char *h, const struct ref *r, const char *name)
{
    size_t nlen = strlen(name);
    return r->has_eq && r->name_end - r->beg == nlen && memcmp(h + r->beg, name, nlen) == 0;
}

/* The offset of the first '~' in r's value, or 0 when there is none (a value never starts at offset 0). */
static size_t ref_sep(const char *h, const struct ref *r)
{
    for (size_t i = r->val; i < r->val_end; i++) {
        if (h[i] == COOKIE_PREFIX_SEP)
            return i;
    }
    return 0;
}

/* ---- helpers ---- */

/* n bytes exactly (ASan's redzone starts right after them). */
static char *exact(size_t n)
{
    char *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

/* A copy of s[0..n) in an exact-size allocation. */
static char *copy(const void *s, size_t n)
{
    char *p = exact(n);
    if (n)
        memcpy(p, s, n);
    return p;
}

struct split {
    struct ref *rs;
    size_t n;
};

static struct split split(const char *h, size_t n)
{
    struct split s = {.rs = malloc((n / 2 + 1) * sizeof(struct ref))};
    if (!s.rs)
        abort();
    s.n = ref_split(h, n, s.rs);
    return s;
}

static size_t count_named(const char *h, const struct split *s, const char *name, bool named)
{
    size_t c = 0;
    for (size_t i = 0; i < s->n; i++)
        c += ref_named(h, &s->rs[i], name) == named;
    return c;
}

/* ---- find ---- */

static void check_find(const char *h, size_t n, const char *name, const struct split *s)
{
    const char *v = h;
    size_t vlen = 1;
    int rc = cookie_find(h, n, name, &v, &vlen);
    for (size_t i = 0; i < s->n; i++) {
        const struct ref *r = &s->rs[i];
        if (!ref_named(h, r, name))
            continue;
        check(rc == 1 && v == h + r->val && vlen == r->val_end - r->val);
        check(v >= h && v + vlen <= h + n);
        return;
    }
    check(rc == 0 && v == NULL && vlen == 0);
}

/* ---- a Set-Cookie's first pair ---- */

static void check_set_pair(const char *h, size_t n)
{
    const char *semi = memchr(h, ';', n);
    struct ref r;
    struct cookie_pair pr;
    bool some = ref_pair(h, 0, semi ? (size_t)(semi - h) : n, &r);
    bool is = cookie_set_cookie_pair(h, n, &pr);
    check(is == (some && r.has_eq));
    if (!some)
        return;
    check(pr.beg == h + r.beg && pr.end == h + r.end && pr.name_end == h + r.name_end);
    check(!is || (pr.val == h + r.val && pr.val_end == h + r.val_end));
}

/* ---- strip ---- */

/* What strip must give: the other pairs joined by "; ", into want (room for n + 1); returns its length. */
static size_t ref_strip(const char *h, const struct split *s, const char *name, char *want)
{
    size_t len = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct ref *r = &s->rs[i];
        if (ref_named(h, r, name))
            continue;
        if (len) {
            want[len++] = ';';
            want[len++] = ' ';
        }
        memcpy(want + len, h + r->beg, r->end - r->beg);
        len += r->end - r->beg;
    }
    return len;
}

/* Strip into an exact-size buffer after checking one byte less gives -1; returns the result (free it). */
static char *strip_exact(const char *h, size_t n, const char *name, size_t want_len)
{
    char *out = exact(want_len);
    if (want_len)
        check(cookie_strip(h, n, name, out, want_len) == -1);
    free(out);
    out = exact(want_len + 1);
    check(cookie_strip(h, n, name, out, want_len + 1) == (int)want_len && out[want_len] == '\0');
    return out;
}

static void check_strip(const char *h, size_t n, const char *name, const struct split *s)
{
    char *want = malloc(2 * n + 1);
    if (!want)
        abort();
    size_t want_len = ref_strip(h, s, name, want);
    check(want_len <= n + n / 2); /* "a;b" grows to "a; b": the bound cookie.h promises */
    char *out = strip_exact(h, n, name, want_len);
    check(memcmp(out, want, want_len) == 0);
    const char *v;
    size_t vlen;
    check(cookie_find(out, want_len, name, &v, &vlen) == 0);
    struct split again = split(out, want_len);
    check(again.n == count_named(h, s, name, false) && count_named(out, &again, name, true) == 0);
    char *twice = strip_exact(out, want_len, name, want_len);
    check(memcmp(twice, out, want_len) == 0);
    free(again.rs);
    free(twice);
    free(out);
    free(want);
}

/* ---- prefix_take ---- */

/* What prefix_take must write: h without each prefix, into want; the node's offset and length. */
static size_t ref_take(const char *h, size_t n, const struct split *s, const char *name, char *want, size_t *node,
                       size_t *node_len)
{
    size_t len = 0, from = 0;
    *node = *node_len = 0;
    for (size_t i = 0; i < s->n; i++) {
        const struct ref *r = &s->rs[i];
        size_t sep = ref_named(h, r, name) ? ref_sep(h, r) : 0;
        if (!sep)
            continue;
        if (!from) {
            *node = r->val;
            *node_len = sep - r->val;
        }
        memcpy(want + len, h + from, r->val - from);
        len += r->val - from;
        from = sep + 1;
    }
    memcpy(want + len, h + from, n - from);
    return len + n - from;
}

/* prefix_take into an exact-size buffer after checking one byte less gives -1. */
static int take_exact(const char *h, size_t n, const char *name, const char **node, size_t *node_len, char **out,
                      size_t want_len)
{
    *out = exact(want_len);
    if (want_len)
        check(cookie_prefix_take(h, n, name, node, node_len, *out, want_len) == -1 && *node == NULL);
    free(*out);
    *out = exact(want_len + 1);
    int rc = cookie_prefix_take(h, n, name, node, node_len, *out, want_len + 1);
    check(rc >= 0 && (*out)[want_len] == '\0');
    return rc;
}

static void check_take(const char *h, size_t n, const char *name, const struct split *s)
{
    char *want = malloc(n + 1), *out;
    if (!want)
        abort();
    size_t node_at, node_len, want_len = ref_take(h, n, s, name, want, &node_at, &node_len), got_len = 7;
    const char *node = h;
    int rc = take_exact(h, n, name, &node, &got_len, &out, want_len);
    check(memcmp(out, want, want_len) == 0);
    if (!node_at) { /* nothing to take */
        check(rc == 0 && want_len == n && node == NULL && got_len == 0);
    } else {
        check(rc == (int)want_len && want_len < n && node == h + node_at && got_len == node_len);
        check(h[node_at + node_len] == COOKIE_PREFIX_SEP);
        size_t room = n + n / 2 + 1;
        char *a = exact(room), *b = exact(room);
        int la = cookie_strip(h, n, name, a, room), lb = cookie_strip(out, want_len, name, b, room);
        check(la >= 0 && la == lb && memcmp(a, b, (size_t)la) == 0);
        free(a);
        free(b);
    }
    free(out);
    free(want);
}

/* ---- prefix_set ---- */

/* prefix_take on the first pair of set (before its first ';') gives node and the input's first pair back. */
static void check_round_trip(const char *in, size_t n, const char *set, size_t set_len, const char *name,
                             const char *node)
{
    const char *semi = memchr(set, ';', set_len), *in_semi = memchr(in, ';', n);
    size_t first = semi ? (size_t)(semi - set) : set_len, in_first = in_semi ? (size_t)(in_semi - in) : n;
    char *pair = copy(set, first), *out = exact(first + 1);
    const char *got;
    size_t got_len;
    int rc = cookie_prefix_take(pair, first, name, &got, &got_len, out, first + 1);
    check(rc == (int)in_first && memcmp(out, in, in_first) == 0);
    check(got_len == strlen(node) && memcmp(got, node, got_len) == 0);
    free(out);
    free(pair);
}

static void check_set(const char *h, size_t n, const char *name, const char *node)
{
    const char *semi = memchr(h, ';', n);
    struct ref r;
    bool some = ref_pair(h, 0, semi ? (size_t)(semi - h) : n, &r);
    size_t node_len = strlen(node), want_len = n + node_len + 1;
    char *out = exact(want_len + 1);
    out[0] = 'X';
    int rc = cookie_prefix_set(h, n, name, node, out, want_len + 1);
    if (!some || !r.has_eq) {
        check(rc == -1);
    } else if (!ref_named(h, &r, name)) {
        check(rc == 0 && out[0] == 'X');
    } else {
        check(rc == (int)want_len && out[want_len] == '\0');
        check(memcmp(out, h, r.val) == 0 && memcmp(out + r.val, node, node_len) == 0);
        check(out[r.val + node_len] == COOKIE_PREFIX_SEP &&
              memcmp(out + r.val + node_len + 1, h + r.val, n - r.val) == 0);
        check_round_trip(h, n, out, want_len, name, node);
        free(out);
        out = exact(want_len);
        check(cookie_prefix_set(h, n, name, node, out, want_len) == -1);
    }
    free(out);
}

/* ---- insert_value ---- */

static void check_insert(const char *name, const char *node)
{
    static const char tail[] = "; Path=/; HttpOnly";
    size_t nl = strlen(name), dl = strlen(node), want_len = nl + 1 + dl + sizeof tail - 1;
    char *out = exact(want_len);
    check(cookie_insert_value(name, node, out, want_len) == -1);
    free(out);
    out = exact(want_len + 1);
    check(cookie_insert_value(name, node, out, want_len + 1) == (int)want_len);
    check(memcmp(out, name, nl) == 0 && out[nl] == '=' && memcmp(out + nl + 1, node, dl) == 0);
    check(memcmp(out + nl + 1 + dl, tail, sizeof tail) == 0);
    free(out);
}

/* The config checks against the RFCs' character lists (the name is at most 63 bytes here). */
static void check_valid(const char *s)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    size_t len = strlen(s), octets = 0;
    while (octets < len && (unsigned char)s[octets] >= 0x21 && (unsigned char)s[octets] <= 0x7e &&
           !strchr("\"\\,;~", s[octets]))
        octets++;
    check(cookie_name_valid(s) == (len >= 1 && strspn(s, tchar) == len));
    check(cookie_node_id_valid(s) == (len >= 1 && octets == len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t name_len = data[0] & 0x3f;
    const char *node = nodes[data[0] >> 6];
    name_len = name_len < size - 1 ? name_len : size - 1;
    char *name = exact(name_len + 1);
    memcpy(name, data + 1, name_len);
    name[name_len] = '\0'; /* a NUL inside cuts it shorter: names are C strings */
    size_t n = size - 1 - name_len;
    char *h = copy(data + 1 + name_len, n);
    struct split s = split(h, n);
    check_find(h, n, name, &s);
    check_set_pair(h, n);
    check_strip(h, n, name, &s);
    check_take(h, n, name, &s);
    check_set(h, n, name, node);
    check_insert(name, node);
    check_valid(name);
    free(s.rs);
    free(h);
    free(name);
    return 0;
}
