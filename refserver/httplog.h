/* refserver's request log (--log-requests): one info line per HTTP response and per WebSocket at its end, with the
 * client, the worker, the request, status, timings, bytes, how it ended and whether an Engine.IO sid was known (a
 * "Session ID unknown" 400 shows as sid=unknown with its body). A connection holds a record only while the log is
 * on, so a node without it pays one pointer per connection and one branch per request. */
#ifndef REFSERVER_HTTPLOG_H
#define REFSERVER_HTTPLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct httplog {
    double t_start;             /* accept, or the previous response (keep-alive) */
    double t_head, t_answer;    /* head parsed; response (or 101) queued; 0: not reached */
    char client[64];            /* peer address:port, read once */
    char method[16], path[192]; /* as received, cut to fit, controls and quotes replaced */
    int status;                 /* 0: unanswered; 101: a WebSocket, logged at its end */
    uint64_t bytes;             /* the response's bytes (head and body) */
};

/* A connection's record, accepted at now on fd (its peer read once). NULL when out of memory (not logged). */
struct httplog *httplog_open(int fd, double now);

/* A new request head at now (method and path copied, cut to fit). NULL l: nothing. */
void httplog_begin(struct httplog *l, double now, const char *method, size_t method_len, const char *path,
                   size_t path_len);

/* The line for l at now, as worker (its bus name), ended by term; body: the response body, quoted for errors. Returns
 * the line's length (cut to outlen - 1). */
int httplog_format(const struct httplog *l, double now, const char *worker, const char *term, const char *body,
                   size_t body_len, char *out, size_t outlen);

/* A response queued (status, bytes in all): logged now unless it is a 101 (logged at httplog_end). */
void httplog_answer(struct httplog *l, const char *worker, double now, int status, const char *body, size_t body_len,
                    size_t bytes, bool closing);

/* The connection is over: a WebSocket or an unanswered request is logged (term), then the record freed. */
void httplog_end(struct httplog **lp, const char *worker, double now, const char *term);

#endif
