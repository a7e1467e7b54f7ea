/* The whole machine's CPU use over a stretch of time, from /proc/stat: how busy every process together kept the
 * cores and how much the hypervisor stole. loadgen reads it over its rounds so that a late event loop is blamed on
 * what made it late: loadgen's own work, or a machine shared with others. */
#ifndef LOADGEN_HOSTCPU_H
#define LOADGEN_HOSTCPU_H

#include <stdbool.h>
#include <stdint.h>

/* The aggregate "cpu" line's counters, in clock ticks since boot. */
struct hostcpu_sample {
    uint64_t busy, idle, steal;
    bool ok;
};

/* Over the stretch from a to b: cores busy with any process (0 .. the core count) and the share of all CPU time
 * stolen (0 .. 1). */
struct hostcpu_use {
    double busy_cores, steal_ratio;
    unsigned cores;
    bool ok; /* both samples read and time passed between them */
};

/* Parse text in /proc/stat's format (its first line: "cpu  user nice system idle iowait irq softirq steal ...").
 * .ok false when it does not parse. */
struct hostcpu_sample hostcpu_parse(const char *text);
/* Read /proc/stat now (.ok false where there is none). */
struct hostcpu_sample hostcpu_read(void);
struct hostcpu_use hostcpu_between(const struct hostcpu_sample *a, const struct hostcpu_sample *b, unsigned cores);

#endif
