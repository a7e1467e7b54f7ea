/* HDR-style log-linear histogram (HdrHistogram's layout, our own code), its V2 compressed encoding and a .hlog
 * writer (Java's log format 1.3, so HistogramLogProcessor, hdr-histogram-js and friends read what we write).
 *
 * Layout: sub_bucket_count = 2^ceil(log2(2*10^digits)) slots per bucket; bucket 0 counts [0, sub_bucket_count)
 * in units of 2^unit_mag (unit_mag = floor(log2(lowest))); bucket k covers [0, sub_bucket_count << k) units at
 * 2^k resolution and only its upper half is new, so it adds sub_bucket_half counts. Any recorded value v >=
 * 10^digits units is therefore known to within v/10^digits; below that, to within one unit (2^unit_mag).
 *
 * One histogram per thread, merged at the end (as wrk2 does): recording takes no lock and never allocates. */
#ifndef COMMON_HIST_H
#define COMMON_HIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* What loadgen records: latencies in nanoseconds, 1 us .. 1 h at 3 significant digits. The unit is 512 ns
 * (2^floor(log2 1000)), so 3 digits hold from 512 us up and below that the error is under 512 ns:
 * 23 buckets, 24576 counts, 192 KiB per histogram. */
#define HIST_NS_LOWEST  INT64_C(1000)
#define HIST_NS_HIGHEST INT64_C(3600000000000)
#define HIST_NS_DIGITS  3

/* The .hlog max column is in milliseconds while we record nanoseconds (Java's default ratio). */
#define HLOG_MAX_RATIO 1e6

struct hist {
    int64_t lowest, highest; /* the range asked for; values above highest are clamped to it */
    int sig_digits;
    int unit_mag;            /* floor(log2(lowest)) */
    int sub_bucket_mag;      /* log2(sub_bucket_count) */
    int sub_bucket_half_mag; /* sub_bucket_mag - 1 */
    int64_t sub_bucket_count, sub_bucket_half;
    int64_t sub_bucket_mask; /* (sub_bucket_count - 1) << unit_mag */
    int bucket_count;
    int32_t counts_len;   /* (bucket_count + 1) * sub_bucket_half */
    int64_t count;        /* values recorded, clamped ones included */
    int64_t min, max;     /* exact extremes recorded (INT64_MAX and 0 when empty); bucket bounds after a decode */
    int64_t out_of_range; /* values refused (negative) or clamped (above highest) */
    int64_t counts[];
};

/* A zeroed histogram for values in [lowest, highest] (values from 0 are accepted; below lowest they share one
 * unit). Needs lowest >= 1, highest >= 2 * lowest, digits 1..5. NULL on bad arguments or out of memory. */
struct hist *hist_new(int64_t lowest, int64_t highest, int sig_digits);
void hist_free(struct hist *h);
/* Forget every value (the layout stays). */
void hist_reset(struct hist *h);

/* Record v once / n times. False, and out_of_range += n, when v < 0 (dropped: a negative latency is a clock bug,
 * not a fast reply) or v > highest (recorded as highest, so counts and percentiles still see the outlier).
 * hist_record_n with n < 0 records nothing and returns false; n == 0 is a no-op. */
bool hist_record(struct hist *h, int64_t v);
bool hist_record_n(struct hist *h, int64_t v, int64_t n);

/* dst += src. Both must come from hist_new with the same lowest, highest and digits: 0, or -1 (dst unchanged). */
int hist_merge(struct hist *dst, const struct hist *src);

/* Counts index of v, or -1 when v < 0 or v lies past the last bucket. */
int32_t hist_index(const struct hist *h, int64_t v);
/* Lowest value counted at index idx (0 <= idx < counts_len). */
int64_t hist_value_at(const struct hist *h, int32_t idx);
/* Bounds of the values that share v's count (v >= 0 and trackable). */
int64_t hist_lowest_equiv(const struct hist *h, int64_t v);
int64_t hist_highest_equiv(const struct hist *h, int64_t v);

/* Summary statistics; all 0 for an empty histogram. hist_percentile(p), p in 0..100: HdrHistogram's value at
 * percentile, the highest value equivalent to the one of rank ceil(p/100 * count), but never above hist_max (so
 * the spectrum ends at the max); p <= 0 gives hist_min and p >= 100 hist_max. Mean and stddev use each
 * bucket's middle value, as HdrHistogram does, so they agree with any decoder of our logs. */
int64_t hist_count(const struct hist *h);
int64_t hist_min(const struct hist *h);
int64_t hist_max(const struct hist *h);
int64_t hist_percentile(const struct hist *h, double p);
double hist_mean(const struct hist *h);
double hist_stddev(const struct hist *h);

/* HdrHistogram's V2 compressed encoding, base64 (standard alphabet, padded, no newlines), NUL-terminated, in a
 * malloc'd *b64 of *len characters. 0, or -1 on out of memory. */
int hist_encode_v2(const struct hist *h, char **b64, size_t *len);
/* The inverse, for any V2 encoder: a new histogram in *out with the blob's layout, or -1 for malformed input (bad
 * base64, cookie, zlib stream, header or payload) or out of memory. Exact min and max are not in the format: a
 * decoded histogram's min is its lowest bucket's lowest value and its max its top bucket's highest value. */
int hist_decode_v2(const char *b64, size_t len, struct hist **out);

/* A .hlog writer over a FILE the caller owns. */
struct hlog {
    FILE *fp;
    double base_time; /* seconds since the epoch; interval start times are written relative to it */
};

/* Write the log header (format version 1.3, StartTime and BaseTime = start_epoch, the legend). The writer, or
 * NULL on out of memory or a write error. */
struct hlog *hlog_open(FILE *fp, double start_epoch);
/* One interval line: "[Tag=t,]start,length,max_ms,blob", start relative to the base time, max in milliseconds
 * (hist_max / HLOG_MAX_RATIO). The tag, when not NULL, must be non-empty with no comma or white space. 0, or -1
 * on a bad tag, out of memory or a write error. */
int hlog_write(struct hlog *log, const char *tag, double start_rel_s, double length_s, const struct hist *h);
/* Flush and free the writer; the FILE stays open. 0, or -1 when the flush failed. */
int hlog_close(struct hlog *log);

#endif
