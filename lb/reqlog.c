/* lb/reqlog.c: the request log's record and its one-line format (reqlog.h). */
#include "lb/reqlog.h"

#include <stdio.h>
#include <string.h>

static void copy_cut(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
    for (char *p = dst; *p; p++)
        if ((unsigned char)*p < 0x21 || *p == '"' || *p == 0x7f)
            *p = '?'; /* one line per request, whatever the client sent */
}

void reqlog_begin(struct reqlog *r, double now, const char *method, size_t method_len, const char *path,
                  size_t path_len)
{
    double start = r->t_start;
    memset(r, 0, sizeof *r);
    r->active = true;
    r->t_start = start;
    r->t_head = now;
    copy_cut(r->method, sizeof r->method, method, method_len);
    copy_cut(r->path, sizeof r->path, path, path_len);
}

void reqlog_fail(struct reqlog *r, int status, const char *why)
{
    if (!r->active) /* a head that never parsed: HAProxy's <BADREQ> */
        reqlog_begin(r, 0, "-", 1, "-", 1);
    if (status)
        r->status = status;
    if (!r->why[0])
        snprintf(r->why, sizeof r->why, "%s", why);
}

/* Milliseconds from a to b, -1 if either was not reached. */
static long ms(double a, double b)
{
    return a > 0 && b > 0 && b >= a ? (long)((b - a) * 1e3 + 0.5) : -1;
}

static const char *cookie_word(const struct reqlog *r)
{
    static const char *const words[][2] = {
        {"none", "none,set"}, {"valid", "valid,set"}, {"node-down", "node-down,set"}, {"unknown", "unknown,set"}};
    return words[r->cookie][r->cookie_set];
}

int reqlog_format(const struct reqlog *r, double now, const char *client, const char *worker, const char *node,
                  const char *term, char *out, size_t outlen)
{
    double conn = r->t_connect > 0 ? r->t_connect : r->t_head;
    char status[8] = "-";
    if (r->status)
        snprintf(status, sizeof status, "%d", r->status);
    int n = snprintf(out, outlen,
                     "request %s [%s] node=%s \"%s %s\" %s Tq/Tc/Tr/Tt=%ld/%ld/%ld/%ld ms bytes=%llu/%llu "
                     "term=%s cookie=%s",
                     client, worker, node, r->method, r->path, status, ms(r->t_start, r->t_head),
                     r->t_connect > 0 ? ms(r->t_head, r->t_connect) : (r->t_response > 0 ? 0 : -1),
                     ms(conn, r->t_response), ms(r->t_start > 0 ? r->t_start : r->t_head, now),
                     (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out, term, cookie_word(r));
    if (n >= 0 && (size_t)n < outlen && r->why[0])
        n += snprintf(out + n, outlen - (size_t)n, " why=\"%s\"", r->why);
    return n < 0 ? 0 : (size_t)n >= outlen ? (int)outlen - 1 : n;
}

void reqlog_reset(struct reqlog *r, double now)
{
    r->active = false;
    r->t_start = now;
}
