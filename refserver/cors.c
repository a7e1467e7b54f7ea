/* CORS on the Engine.IO polling endpoints: --cors-origin's check, the answer's headers and the preflight. */
#include "refserver/cors.h"

#include "refserver/conn.h"
#include "refserver/eiosession.h"
#include "refserver/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char lower_digits[] = "abcdefghijklmnopqrstuvwxyz0123456789";

/* The answer's lines when the Origin is missing or not allowed: the browser then blocks the page from reading it. */
static const char vary_only[] = "Vary: Origin\r\n";

static int fail(char *err, size_t errlen, const char *why, const char *item, size_t len)
{
    snprintf(err, errlen, "'%.*s': %s", (int)(len > 80 ? 80 : len), item, why);
    return -1;
}

/* 0 when the port p[0..len) is 1-65535 and not scheme's default (browsers leave that out of Origin); -1 otherwise. */
static int check_port(const char *p, size_t len, const char *scheme, size_t slen)
{
    unsigned long port = 0;
    if (len == 0 || len > 5 || p[0] == '0')
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        port = port * 10 + (unsigned long)(p[i] - '0');
    }
    bool is_default = (port == 80 && slen == 4 && !memcmp(scheme, "http", 4)) ||
                      (port == 443 && slen == 5 && !memcmp(scheme, "https", 5));
    return port > 65535 || is_default ? -1 : 0;
}

/* One origin o[0..len): scheme://host[:port], lowercase as browsers send it. */
static int check_origin(const char *o, size_t len, char *err, size_t errlen)
{
    const char *sep = len > 3 ? strstr(o, "://") : NULL;
    size_t slen = sep ? (size_t)(sep - o) : 0;
    if (len > CORS_ORIGIN_MAX)
        return fail(err, errlen, "longer than 200 characters", o, len);
    if (!sep || sep >= o + len || slen == 0 || o[0] < 'a' || o[0] > 'z' || strspn(o, lower_digits) < slen)
        return fail(err, errlen, "want scheme://host[:port], e.g. https://app.example.com", o, len);
    const char *host = sep + 3, *end = o + len, *host_end;
    size_t ok;
    if (host[0] == '[') { /* an IPv6 literal: its colons are not the port's */
        const char *close = memchr(host, ']', (size_t)(end - host));
        host_end = close ? close + 1 : end;
        ok = close ? (size_t)(host_end - host) : 0;
    } else {
        host_end = host + strcspn(host, ":");
        ok = strspn(host, "abcdefghijklmnopqrstuvwxyz0123456789.-_");
    }
    size_t hlen = (size_t)(host_end - host);
    const char *colon = host_end < end && *host_end == ':' ? host_end : NULL;
    if (hlen == 0 || ok < hlen || (!colon && host_end != end))
        return fail(err, errlen, "bad host (lowercase letters, digits, '.', '-'; no path, no trailing '/')", o, len);
    if (colon && check_port(colon + 1, (size_t)(end - colon - 1), o, slen) < 0)
        return fail(err, errlen, "bad port (1-65535, and not the scheme's default, which browsers leave out)", o, len);
    return 0;
}

int cors_check_list(const char *list, char *err, size_t errlen)
{
    if (!strcmp(list, "*"))
        return 0;
    const char *p = list;
    for (;;) {
        size_t n = strcspn(p, ",");
        if (n == 0)
            return fail(err, errlen, "an empty origin in the list ('*' or ORIGIN[,ORIGIN...])", list, strlen(list));
        char one[CORS_ORIGIN_MAX + 2];
        snprintf(one, sizeof one, "%.*s", (int)(n > CORS_ORIGIN_MAX + 1 ? CORS_ORIGIN_MAX + 1 : n), p);
        if (check_origin(one, strlen(one), err, errlen) < 0)
            return -1;
        if (!p[n])
            return 0;
        p += n + 1;
    }
}

bool cors_allowed(const char *list, const char *origin, size_t len)
{
    if (!origin || len == 0 || len > CORS_ORIGIN_MAX)
        return false;
    if (!strcmp(list, "*"))
        return true;
    for (const char *p = list;;) {
        size_t n = strcspn(p, ",");
        if (n == len && !memcmp(p, origin, len))
            return true;
        if (!p[n])
            return false;
        p += n + 1;
    }
}

int cors_answer_headers(const char *list, const char *origin, size_t len, char *out, size_t outlen)
{
    int n =
        cors_allowed(list, origin, len)
            ? snprintf(out, outlen, "Access-Control-Allow-Origin: %.*s\r\nAccess-Control-Allow-Credentials: true\r\n%s",
                       (int)len, origin, vary_only)
            : snprintf(out, outlen, "%s", vary_only);
    return n < 0 || (size_t)n >= outlen ? -1 : n;
}

void cors_clear(struct conn *c)
{
    free(c->cors);
    c->cors = NULL;
}

int cors_begin(struct conn *c, const struct http_head *h)
{
    cors_clear(c);
    const char *list = c->srv->cfg.cors_origin;
    if (!list || !eio_is_path(h))
        return 0;
    const struct http_header *o = http_find_header(h, "Origin");
    char lines[CORS_ORIGIN_MAX + 128];
    int n = cors_answer_headers(list, o ? o->value : NULL, o ? o->value_len : 0, lines, sizeof lines);
    if (n < 0 || !(c->cors = strdup(lines))) {
        conn_kill(c);
        return -1;
    }
    return 0;
}

bool cors_is_preflight(const struct conn *c, const struct http_head *h)
{
    return c->srv->cfg.cors_origin && h->method_len == 7 && !memcmp(h->method, "OPTIONS", 7);
}

int cors_preflight(struct conn *c, const struct http_head *h)
{
    const struct http_header *o = http_find_header(h, "Origin");
    const struct http_header *rh = http_find_header(h, "Access-Control-Request-Headers");
    static const char token[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~, ";
    char extra[CORS_HEADERS_MAX + 160] = "Vary: Access-Control-Request-Headers\r\n";
    if (o && cors_allowed(c->srv->cfg.cors_origin, o->value, o->value_len)) {
        size_t len = strlen(extra);
        snprintf(extra + len, sizeof extra - len, "Access-Control-Allow-Methods: GET,POST\r\n");
        len = strlen(extra);
        /* Echoed like the cors package (no allowedHeaders given), if it is a plain list of header names. */
        if (rh && rh->value_len && rh->value_len <= CORS_HEADERS_MAX && strspn(rh->value, token) >= rh->value_len)
            snprintf(extra + len, sizeof extra - len, "Access-Control-Allow-Headers: %.*s\r\n", (int)rh->value_len,
                     rh->value);
    }
    return conn_respond(c, 204, "No Content", extra, "text/plain", "", 0, false, h->conn_close);
}
