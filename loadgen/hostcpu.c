/* The machine's CPU use between two /proc/stat samples; see hostcpu.h. */
#include "loadgen/hostcpu.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

struct hostcpu_sample hostcpu_parse(const char *text)
{
    uint64_t user, nice, sys, idle, iowait, irq, softirq, steal = 0;
    struct hostcpu_sample s = {0};
    if (strncmp(text, "cpu ", 4) != 0) /* the total, not a core's "cpu0" */
        return s;
    /* kernels before 2.6.11 have no steal column: 7 fields are enough */
    int n =
        sscanf(text, "cpu %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64,
               &user, &nice, &sys, &idle, &iowait, &irq, &softirq, &steal);
    if (n < 7)
        return s;
    /* iowait is idle time spent waiting for a disk: not a core kept busy */
    s.busy = user + nice + sys + irq + softirq;
    s.idle = idle + iowait;
    s.steal = steal;
    s.ok = true;
    return s;
}

struct hostcpu_sample hostcpu_read(void)
{
    struct hostcpu_sample s = {0};
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return s;
    char line[512];
    if (fgets(line, sizeof line, f))
        s = hostcpu_parse(line);
    fclose(f);
    return s;
}

struct hostcpu_use hostcpu_between(const struct hostcpu_sample *a, const struct hostcpu_sample *b, unsigned cores)
{
    struct hostcpu_use u = {.cores = cores};
    if (!a->ok || !b->ok || b->busy < a->busy || b->idle < a->idle || b->steal < a->steal || cores == 0)
        return u;
    double busy = (double)(b->busy - a->busy), idle = (double)(b->idle - a->idle);
    double steal = (double)(b->steal - a->steal), all = busy + idle + steal;
    if (all <= 0)
        return u;
    u.busy_cores = busy / all * cores;
    u.steal_ratio = steal / all;
    u.ok = true;
    return u;
}
