/* One request's (or tunnel's) log record, HAProxy `option httplog`-like: filled in as the request passes its
 * milestones and formatted into a single line at its end. Kept apart from proxy.c so the line can be tested without
 * sockets. Times are the event loop's stamps in seconds; 0 means the milestone was not reached. */
#ifndef LB_REQLOG_H
#define LB_REQLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the request's sticky cookie did. */
enum reqlog_cookie {
    REQLOG_CK_NONE = 0, /* no sticky cookie in the request (or no cookie stickiness) */
    REQLOG_CK_VALID,    /* it named a usable node, which got the request */
    REQLOG_CK_DOWN,     /* it named a node that is down or in maintenance: re-assigned */
    REQLOG_CK_UNKNOWN,  /* it named no node of this config: re-assigned */
};

struct reqlog {
    bool active;                          /* a request is between its start and its line */
    double t_start;                       /* accept, or the end of the previous response (keep-alive) */
    double t_head, t_connect, t_response; /* head complete, node connected, response head out */
    char method[16], path[160];           /* as received, cut to fit */
    int status;                           /* what the client got; 0: nothing */
    uint64_t bytes_in, bytes_out;         /* the client's bytes in a tunnel, the node's response bytes */
    enum reqlog_cookie cookie;
    bool cookie_set, tunnel; /* a Set-Cookie inserted; the request became a tunnel */
    char closer;             /* a tunnel's first side to close: 'C'lient, 'S'erver, 0 */
    char why[96];            /* the lb's own error answer or timeout; "" if none */
};

/* A new request whose head arrived at now (method and path copied, cut to fit); t_start stays. */
void reqlog_begin(struct reqlog *r, double now, const char *method, size_t method_len, const char *path,
                  size_t path_len);

/* The lb's own answer or a timeout: status (0: none sent) and why, for the line's termination field. */
void reqlog_fail(struct reqlog *r, int status, const char *why);

/* The line for r at now: client, worker, node ("-" if none), method and path, status, Tq/Tc/Tr/Tt in ms (-1:
 * not reached), bytes, termination term, cookie action and why (when set). Returns the line's length (cut to
 * outlen - 1). */
int reqlog_format(const struct reqlog *r, double now, const char *client, const char *worker, const char *node,
                  const char *term, char *out, size_t outlen);

/* After the line: the next request on the connection starts now. */
void reqlog_reset(struct reqlog *r, double now);

#endif
