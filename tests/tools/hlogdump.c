/* hlogdump: read a .hlog back through hist_decode_v2, or write a reproducible one (for the interop tests).
 *
 *   hlogdump FILE.hlog                  one line per interval: "count=N max=N p50=N p99=N[ tag=T]" (ns)
 *   hlogdump --percentiles [--untagged | --tag T] FILE.hlog
 *                                       merge every interval (or only the untagged ones, e.g. loadgen's delivery
 *                                       latency, or only those tagged T, e.g. connect) and print the percentile
 *                                       distribution the way HdrHistogram's outputPercentileDistribution does (5
 *                                       ticks per half distance, values in ms): a header, rows "value_ms percentile
 *                                       total_count 1/(1-percentile)", the last one at percentile 1.0 (100%)
 *                                       without the last column, then '#' lines (mean, stddev, max, total count,
 *                                       buckets). No interval selected: no rows, a total count of 0
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
                                 "       hlogdump --percentiles [--untagged | --tag T] FILE.hlog\n"
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

/* Print one interval; h is freed by the caller. */
static int dump_interval(struct hist *h, const char *tag, void *ctx)
{
    (void)ctx;
    printf("count=%" PRId64 " max=%" PRId64 " p50=%" PRId64 " p99=%" PRId64, hist_count(h), hist_max(h),
           hist_percentile(h, 50), hist_percentile(h, 99));
    if (tag)
        printf(" tag=%s", tag);
    putchar('\n');
    return 0;
}

typedef int (*interval_fn)(struct hist *h, const char *tag, void *ctx);

/* Decode one interval line and hand it to fn. -1 for a malformed line, -2 when fn refused it. */
static int read_line(char *line, interval_fn fn, void *ctx)
{
    char *tag, *blob;
    struct hist *h;
    if (split_line(line, &tag, &blob) < 0 || hist_decode_v2(blob, strlen(blob), &h) < 0)
        return -1;
    int rc = fn(h, tag, ctx) < 0 ? -2 : 0;
    hist_free(h);
    return rc;
}

/* Call fn for every interval of the log at path. 0, or 1 after an error (reported on stderr). */
static int read_log(const char *path, interval_fn fn, void *ctx)
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
        int r = read_line(line, fn, ctx);
        if (r == -1)
            fprintf(stderr, "hlogdump: %s:%ld: malformed interval line\n", path, n);
        else if (r == -2)
            fprintf(stderr, "hlogdump: %s:%ld: interval not mergeable (another layout, or out of memory)\n", path, n);
        rc = r < 0 ? 1 : 0;
    }
    if (rc == 0 && ferror(fp)) {
        fprintf(stderr, "hlogdump: %s: read error\n", path);
        rc = 1;
    }
    free(line);
    fclose(fp);
    return rc;
}

/* ---- the percentile distribution ---- */

struct merge {
    struct hist *acc; /* in the first selected interval's layout */
    bool untagged;    /* only intervals without a tag */
    const char *tag;  /* only intervals with this tag (NULL: any) */
};

static int merge_interval(struct hist *h, const char *tag, void *ctx)
{
    struct merge *m = ctx;
    if ((m->untagged && tag) || (m->tag && (!tag || strcmp(tag, m->tag) != 0)))
        return 0;
    if (!m->acc) {
        m->acc = hist_new(h->lowest, h->highest, h->sig_digits);
        if (!m->acc)
            return -1;
    }
    return hist_merge(m->acc, h);
}

/* Value reported for counts index i: the highest value equivalent to it, but never above the max (as
 * hist_percentile), in ms. */
static double value_ms(const struct hist *h, int32_t i)
{
    int64_t v = hist_highest_equiv(h, hist_value_at(h, i));
    return (double)(v < hist_max(h) ? v : hist_max(h)) / HLOG_MAX_RATIO;
}

/* HdrHistogram's PercentileIterator with outputPercentileDistribution's layout: walk the counts; at each index
 * with a count, emit a row for every percentile level the cumulative count has reached, the level then stepping
 * by 100 / (ticks * 2^(floor(log2(100 / (100 - level))) + 1)), i.e. `ticks` rows per halving of the distance to
 * 100%; then one last row at 100%. The percentile column is the level iterated to, not the exact rank. */
static void print_percentiles(const struct hist *h, int ticks)
{
    printf("%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    int64_t total = hist_count(h), seen = 0;
    double level = 0;
    int32_t last = -1;
    for (int32_t i = 0; i < h->counts_len && seen < total; i++) {
        if (!h->counts[i])
            continue;
        seen += h->counts[i];
        last = i;
        double reached = 100.0 * (double)seen / (double)total;
        while (reached >= level) {
            printf("%12.6f %2.12f %10" PRId64 " %14.2f\n", value_ms(h, i), level / 100, seen, 1 / (1 - level / 100));
            double halvings = floor(log(100.0 / (100.0 - level)) / log(2));
            level += 100.0 / ((double)ticks * pow(2, halvings + 1));
            if (seen == total)
                break; /* every value seen: only the 100% row below is left */
        }
    }
    if (last >= 0)
        printf("%12.6f %2.12f %10" PRId64 "\n", value_ms(h, last), 1.0, total);
    printf("#[Mean    = %12.6f, StdDeviation   = %12.6f]\n", hist_mean(h) / HLOG_MAX_RATIO,
           hist_stddev(h) / HLOG_MAX_RATIO);
    printf("#[Max     = %12.6f, Total count    = %12" PRId64 "]\n", (double)hist_max(h) / HLOG_MAX_RATIO, total);
    printf("#[Buckets = %12d, SubBuckets     = %12" PRId64 "]\n", h->bucket_count, h->sub_bucket_count);
}

static int percentiles(const char *path, bool untagged, const char *tag)
{
    struct merge m = {NULL, untagged, tag};
    int rc = read_log(path, merge_interval, &m);
    if (rc == 0 && !m.acc)
        m.acc = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS); /* none selected: an empty one */
    if (rc == 0 && !m.acc) {
        fprintf(stderr, "hlogdump: out of memory\n");
        rc = 1;
    }
    if (rc == 0)
        print_percentiles(m.acc, 5);
    hist_free(m.acc);
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
        return read_log(argv[1], dump_interval, NULL);
    if (argc >= 3 && strcmp(argv[1], "--percentiles") == 0) {
        if (argc == 3 && argv[2][0] != '-')
            return percentiles(argv[2], false, NULL);
        if (argc == 4 && strcmp(argv[2], "--untagged") == 0)
            return percentiles(argv[3], true, NULL);
        if (argc == 5 && strcmp(argv[2], "--tag") == 0 && argv[3][0])
            return percentiles(argv[4], false, argv[3]);
    }
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
