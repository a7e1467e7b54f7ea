/* refserver/httplog.c: the request log's record and line (httplog.h). */
#define _GNU_SOURCE /* memmem */
#include "refserver/httplog.h"

#include "common/log.h"
#include "common/net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* One line per request, whatever the client sent. */
static void copy_clean(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    for (size_t i = 0; i < len; i++)
        dst[i] = (unsigned char)src[i] < 0x20 || src[i] == '"' || src[i] == 0x7f ? '\'' : src[i];
    dst[len] = '\0';
}

struct httplog *httplog_open(int fd, double now)
{
    struct httplog *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    struct net_addr peer = {.len = sizeof peer.ss};
    if (getpeername(fd, (struct sockaddr *)&peer.ss, &peer.len) == 0)
        net_addr_str(&peer, l->client, sizeof l->client);
    else
        snprintf(l->client, sizeof l->client, "-");
    l->t_start = now;
    return l;
}

void httplog_begin(struct httplog *l, double now, const char *method, size_t method_len, const char *path,
                   size_t path_len)
{
    if (!l)
        return;
    l->t_head = now;
    l->t_answer = 0;
    l->status = 0;
    l->bytes = 0;
    copy_clean(l->method, sizeof l->method, method, method_len);
    copy_clean(l->path, sizeof l->path, path, path_len);
}

static long ms(double a, double b)
{
    return a > 0 && b >= a ? (long)((b - a) * 1e3 + 0.5) : -1;
}

/* Engine.IO's view of the request: no sid (a handshake: new), a sid answered (known), or refused as unknown. */
static const char *sid_word(const struct httplog *l, const char *body, size_t body_len)
{
    if (strncmp(l->path, "/socket.io/", 11) != 0)
        return "-";
    if (!strstr(l->path, "sid="))
        return "new";
    bool unknown = l->status == 400 && body && memmem(body, body_len, "Session ID unknown", 18);
    return unknown ? "unknown" : l->status ? "known" : "-";
}

int httplog_format(const struct httplog *l, double now, const char *worker, const char *term, const char *body,
                   size_t body_len, char *out, size_t outlen)
{
    char status[8] = "-", why[128] = "";
    if (l->status)
        snprintf(status, sizeof status, "%d", l->status);
    if (l->status >= 400 && body && body_len) {
        char text[96];
        copy_clean(text, sizeof text, body, body_len);
        snprintf(why, sizeof why, " why=\"%s\"", text);
    }
    int n =
        snprintf(out, outlen, "request %s [%s] \"%s %s\" %s Tq/Tr/Tt=%ld/%ld/%ld ms bytes=%llu term=%s sid=%s%s",
                 l->client, worker, l->method, l->path, status, ms(l->t_start, l->t_head), ms(l->t_head, l->t_answer),
                 ms(l->t_start, now), (unsigned long long)l->bytes, term, sid_word(l, body, body_len), why);
    return n < 0 ? 0 : (size_t)n >= outlen ? (int)outlen - 1 : n;
}

static void emit(struct httplog *l, const char *worker, double now, const char *term, const char *body, size_t body_len)
{
    char line[640];
    httplog_format(l, now, worker, term, body, body_len, line, sizeof line);
    LOG_INFO("%s", line);
}

void httplog_answer(struct httplog *l, const char *worker, double now, int status, const char *body, size_t body_len,
                    size_t bytes, bool closing)
{
    if (!l || l->t_head <= 0)
        return; /* no head of ours: nothing to pair the answer with */
    l->status = status;
    l->t_answer = now;
    l->bytes = bytes;
    if (status == 101)
        return;
    emit(l, worker, now, closing ? "closed" : "ok", body, body_len);
    l->t_start = now;
    l->t_head = 0;
}

void httplog_end(struct httplog **lp, const char *worker, double now, const char *term)
{
    struct httplog *l = *lp;
    if (!l)
        return;
    if (l->t_head > 0)
        emit(l, worker, now, term, NULL, 0);
    free(l);
    *lp = NULL;
}
