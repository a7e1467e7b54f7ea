/* Local resource shortages, counted and logged once per episode; see shortage.h. */
#include "lb/shortage.h"

#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static const char *const kind_names[POOL_LOCAL_COUNT] = {"emfile", "enfile", "eaddrnotavail", "enobufs", "enomem"};
static const char *const op_names[POOL_OP_COUNT] = {"accept", "connect", "check"};

void shortage_init(struct shortage *s, const char *who, const char *cost, struct pool_shared *sh)
{
    struct rlimit rl;
    memset(s, 0, sizeof *s);
    s->who = who;
    s->cost = cost;
    s->sh = sh;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        s->nofile = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
}

int shortage_kind(int err)
{
    switch (err) {
    case EMFILE: return POOL_LOCAL_EMFILE;
    case ENFILE: return POOL_LOCAL_ENFILE;
    case EADDRNOTAVAIL: return POOL_LOCAL_EADDRNOTAVAIL;
    case ENOBUFS: return POOL_LOCAL_ENOBUFS;
    case ENOMEM: return POOL_LOCAL_ENOMEM;
    default: return -1;
    }
}

const char *shortage_kind_name(enum pool_local kind)
{
    return kind_names[kind];
}

const char *shortage_op_name(enum pool_op op)
{
    return op_names[op];
}

void shortage_describe(const struct shortage *s, int err, char *out, size_t outlen)
{
    switch (shortage_kind(err)) {
    case POOL_LOCAL_EMFILE:
        snprintf(out, outlen, "out of file descriptors (limit %llu)", (unsigned long long)s->nofile);
        break;
    case POOL_LOCAL_ENFILE: snprintf(out, outlen, "the system's file table is full (ENFILE)"); break;
    case POOL_LOCAL_EADDRNOTAVAIL: snprintf(out, outlen, "no free local port to connect from (EADDRNOTAVAIL)"); break;
    case POOL_LOCAL_ENOBUFS: snprintf(out, outlen, "out of socket buffers (ENOBUFS)"); break;
    case POOL_LOCAL_ENOMEM: snprintf(out, outlen, "out of kernel memory (ENOMEM)"); break;
    default: snprintf(out, outlen, "%s", strerror(err));
    }
}

void shortage_hit(struct shortage *s, enum pool_op op, int err, double now)
{
    int kind = shortage_kind(err);
    if (kind < 0)
        return;
    if (s->sh)
        POOL_ADD(s->sh->local_errors[op][kind], 1);
    s->refused[op]++;
    s->last = now;
    if (s->on)
        return;
    char what[96];
    shortage_describe(s, err, what, sizeof what);
    LOG_WARN("%s: %s: %s: %s until it clears; no node is blamed for it", s->who, op_names[op], what, s->cost);
    s->on = true;
    s->err = err;
    s->began = now;
}

void shortage_ok(struct shortage *s, double now)
{
    if (!s->on || now - s->last < SHORTAGE_QUIET_S)
        return;
    char what[96];
    shortage_describe(s, s->err, what, sizeof what);
    LOG_WARN("%s: %s: over after %.1fs; refused meanwhile: %llu accept(s), %llu connect(s), %llu check(s)", s->who,
             what, s->last - s->began, (unsigned long long)s->refused[POOL_OP_ACCEPT],
             (unsigned long long)s->refused[POOL_OP_CONNECT], (unsigned long long)s->refused[POOL_OP_CHECK]);
    memset(s->refused, 0, sizeof s->refused);
    s->on = false;
}
