/* One stderr line per event: UTC timestamp, program, level, message (see log.h). */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static char log_name[64] = "wsharness";
static enum log_level log_max = LOG_LEVEL_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_init(const char *name, enum log_level level)
{
    snprintf(log_name, sizeof log_name, "%s", name);
    log_max = level;
}

int log_level_parse(const char *s)
{
    static const char *const short_names[] = {"err", "warn", "info", "debug"};
    for (int i = 0; i <= LOG_LEVEL_DEBUG; i++)
        if (!strcmp(s, short_names[i]) || !strcmp(s, level_names[i]))
            return i;
    return -1;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level > log_max)
        return;
    struct timespec ts;
    struct tm tm;
    char stamp[32], line[1024];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf per line so lines from several processes sharing a log file do not interleave. */
    fprintf(stderr, "%s.%03ldZ %s %s: %s\n", stamp, ts.tv_nsec / 1000000, log_name, level_names[level], line);
}
