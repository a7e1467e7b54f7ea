/* hlogdump: read a .hlog back through hist_decode_v2, or write a reproducible one (for the interop tests).
 *
 *   hlogdump FILE.hlog                  one line per interval: "count=N max=N p50=N p99=N[ tag=T]" (ns)
 *   hlogdump --write OUT.hlog SEED N    record N pseudo-random latencies (ns) from SEED into two intervals (the
 *                                       first untagged, the second tagged "ws"), write them and print what was
 *                                       recorded, before encoding, as one JSON object
 *
 * Reading skips '#' comments, the legend and blank lines; the max column is not used (it is recomputed from the
 * blob). Exit: 0 done, 1 a malformed line or an I/O error, 2 usage. */
#include "common/hist.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define START_EPOCH 1700000000.0 /* fixed, so a written log depends on SEED and N only */

static const char usage_text[] = "usage: hlogdump FILE.hlog\n"
                                 "       hlogdump --write OUT.hlog SEED N\n";

/* ---- reading ---- */

/* Split an interval line in place: "[Tag=t,]start,length,max,blob". 0, or -1 when a field is missing. */
static int split_line(char *line, char **tag, char **blob)
{
    *tag = NULL;
    if (strncmp(line, "Tag=", 4) == 0) {
        char *comma = strchr(line, ',');
        if (!comma)
            return -1;
        *comma = '\0';
        *tag = line + 4;
        line = comma + 1;
    }
    for (int field = 0; field < 3; field++) {
        char *end;
        strtod(line, &end);
        if (end == line || *end != ',')
            return -1;
        line = end + 1;
    }
    line[strcspn(line, " \t\r\n")] = '\0';
    *blob = line;
    return **blob ? 0 : -1;
}

static int dump_line(char *line)
{
    char *tag, *blob;
    struct hist *h;
    if (split_line(line, &tag, &blob) < 0 || hist_decode_v2(blob, strlen(blob), &h) < 0)
        return -1;
    printf("count=%" PRId64 " max=%" PRId64 " p50=%" PRId64 " p99=%" PRId64, hist_count(h), hist_max(h),
           hist_percentile(h, 50), hist_percentile(h, 99));
    if (tag)
        printf(" tag=%s", tag);
    putchar('\n');
    hist_free(h);
    return 0;
}

static int dump(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "hlogdump: %s: %s\n", path, strerror(errno));
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    for (long n = 1; rc == 0 && getline(&line, &cap, fp) >= 0; n++) {
        if (strchr("#\"\r\n", line[0])) /* comment, legend, blank ("" matches too: an empty last line) */
            continue;
        if (dump_line(line) < 0) {
            fprintf(stderr, "hlogdump: %s:%ld: malformed interval line\n", path, n);
            rc = 1;
        }
    }
    if (rc == 0 && ferror(fp)) {
        fprintf(stderr, "hlogdump: %s: read error\n", path);
        rc = 1;
    }
    free(line);
    fclose(fp);
    return rc;
}

/* ---- writing ---- */

static uint64_t rng_state;

/* splitmix64, as a uniform double in [0, 1). */
static double rng_unit(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}

/* Interval 0: log-uniform over 1 us..10 s, so most buckets are used. Interval 1: 90% near 80 us, 10% near 40 ms. */
static int64_t draw(int interval)
{
    if (interval == 0)
        return (int64_t)exp(log(1e3) + rng_unit() * (log(1e10) - log(1e3)));
    double center = rng_unit() < 0.9 ? 80e3 : 40e6;
    return (int64_t)(center * (0.8 + 0.4 * rng_unit()));
}

static void print_json(const struct hist *h, const char *tag, double start, double length, bool last)
{
    printf("{\"tag\":%s%s%s,\"start\":%.3f,\"length\":%.3f,\"count\":%" PRId64 ",\"min\":%" PRId64 ",\"max\":%" PRId64
           ",\"p50\":%" PRId64 ",\"p99\":%" PRId64 ",\"p999\":%" PRId64 ",\"mean\":%.3f}%s",
           tag ? "\"" : "", tag ? tag : "null", tag ? "\"" : "", start, length, hist_count(h), hist_min(h), hist_max(h),
           hist_percentile(h, 50), hist_percentile(h, 99), hist_percentile(h, 99.9), hist_mean(h), last ? "" : ",");
}

static int write_log(const char *path, uint64_t seed, long n)
{
    static const char *tags[2] = {NULL, "ws"};
    FILE *fp = fopen(path, "w");
    struct hist *h = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    struct hlog *log = fp && h ? hlog_open(fp, START_EPOCH) : NULL;
    int rc = log ? 0 : 1;
    rng_state = seed;
    printf("{\"start_epoch\":%.3f,\"intervals\":[", START_EPOCH);
    for (int i = 0; i < 2 && rc == 0; i++) {
        hist_reset(h);
        for (long k = i ? n / 2 : 0; k < (i ? n : n / 2); k++)
            hist_record(h, draw(i));
        print_json(h, tags[i], i, 1, i == 1);
        rc = hlog_write(log, tags[i], i, 1, h) < 0 ? 1 : 0;
    }
    printf("]}\n");
    if (log && hlog_close(log) < 0)
        rc = 1;
    if (fp && fclose(fp) != 0)
        rc = 1;
    if (rc)
        fprintf(stderr, "hlogdump: %s: cannot write the log\n", path);
    hist_free(h);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 2 && argv[1][0] != '-')
        return dump(argv[1]);
    if (argc == 5 && strcmp(argv[1], "--write") == 0) {
        char *end1, *end2;
        unsigned long long seed = strtoull(argv[3], &end1, 10);
        long n = strtol(argv[4], &end2, 10);
        if (!*end1 && !*end2 && n >= 0)
            return write_log(argv[2], seed, n);
    }
    fputs(usage_text, stderr);
    return 2;
}
