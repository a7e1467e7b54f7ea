/* The log-linear histogram, its V2 compressed encoding and the .hlog writer (see hist.h). */
#include "common/hist.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

/* V2 cookies. Decoders compare them masked with ~0xf0: the 0x10 is a word-size field, not part of the kind. */
#define COOKIE_MASK       (~UINT32_C(0xf0))
#define COOKIE_COMPRESSED UINT32_C(0x1c849314)
#define COOKIE_ENCODING   UINT32_C(0x1c849313)
#define HEADER_LEN        40 /* cookie, payload length, normalizing offset, digits: i32; lowest, highest, ratio: 64 */
#define ZZ_MAX            9  /* LEB128-64b9B: 8 bytes of 7 bits, then one of 8 */

/* ---- layout ---- */

static int floor_log2(int64_t v)
{
    return 63 - __builtin_clzll((unsigned long long)v);
}

/* Buckets so that the last one's top (sub_bucket_count << unit_mag << (buckets - 1)) exceeds highest. */
static int buckets_needed(int64_t highest, int64_t sub_bucket_count, int unit_mag)
{
    int64_t untrackable = sub_bucket_count << unit_mag;
    int n = 1;
    while (untrackable <= highest) {
        /* One more doubling passes INT64_MAX, so one more bucket covers every int64. */
        if (untrackable > INT64_MAX / 2)
            return n + 1;
        untrackable <<= 1;
        n++;
    }
    return n;
}

struct hist *hist_new(int64_t lowest, int64_t highest, int sig_digits)
{
    if (lowest < 1 || highest / 2 < lowest || sig_digits < 1 || sig_digits > 5)
        return NULL;
    int64_t single_unit = 2;
    for (int i = 0; i < sig_digits; i++)
        single_unit *= 10;
    int sub_mag = floor_log2(single_unit - 1) + 1; /* ceil(log2(2 * 10^digits)) */
    int unit_mag = floor_log2(lowest);
    /* HdrHistogram's bound: keeps every bucket's values within int64. */
    if (unit_mag + sub_mag - 1 > 61)
        return NULL;
    int64_t sub_count = INT64_C(1) << sub_mag;
    int buckets = buckets_needed(highest, sub_count, unit_mag);
    int64_t len = (int64_t)(buckets + 1) * (sub_count / 2);
    struct hist *h = calloc(1, sizeof *h + (size_t)len * sizeof h->counts[0]);
    if (!h)
        return NULL;
    *h = (struct hist){.lowest = lowest,
                       .highest = highest,
                       .sig_digits = sig_digits,
                       .unit_mag = unit_mag,
                       .sub_bucket_mag = sub_mag,
                       .sub_bucket_half_mag = sub_mag - 1,
                       .sub_bucket_count = sub_count,
                       .sub_bucket_half = sub_count / 2,
                       .sub_bucket_mask = (sub_count - 1) << unit_mag,
                       .bucket_count = buckets,
                       .counts_len = (int32_t)len,
                       .min = INT64_MAX};
    return h;
}

void hist_free(struct hist *h)
{
    free(h);
}

void hist_reset(struct hist *h)
{
    memset(h->counts, 0, (size_t)h->counts_len * sizeof h->counts[0]);
    h->count = h->max = h->out_of_range = 0;
    h->min = INT64_MAX;
}

/* Bucket of v >= 0: how far v's top bit lies above the sub-bucket range (the mask keeps small values in 0). */
static int bucket_of(const struct hist *h, int64_t v)
{
    return 64 - h->unit_mag - h->sub_bucket_mag - __builtin_clzll((unsigned long long)(v | h->sub_bucket_mask));
}

/* Index of v >= 0: its bucket, then v's top bits at that bucket's resolution. May be >= counts_len for huge v. */
static int32_t index_of(const struct hist *h, int64_t v)
{
    int bucket = bucket_of(h, v);
    int64_t sub = v >> (bucket + h->unit_mag);
    return (int32_t)(((int64_t)(bucket + 1) << h->sub_bucket_half_mag) + sub - h->sub_bucket_half);
}

int32_t hist_index(const struct hist *h, int64_t v)
{
    if (v < 0)
        return -1;
    int32_t idx = index_of(h, v);
    return idx < h->counts_len ? idx : -1;
}

int64_t hist_value_at(const struct hist *h, int32_t idx)
{
    int bucket = (idx >> h->sub_bucket_half_mag) - 1;
    int64_t sub = (idx & (h->sub_bucket_half - 1)) + h->sub_bucket_half;
    if (bucket < 0) { /* bucket 0's lower half */
        sub -= h->sub_bucket_half;
        bucket = 0;
    }
    return sub << (bucket + h->unit_mag);
}

/* Width of the value range sharing v's count. */
static int64_t equiv_width(const struct hist *h, int64_t v)
{
    return INT64_C(1) << (bucket_of(h, v) + h->unit_mag);
}

int64_t hist_lowest_equiv(const struct hist *h, int64_t v)
{
    return hist_value_at(h, index_of(h, v));
}

/* lowest + (width - 1), in that order: lowest + width may not fit in int64 at the very top. */
int64_t hist_highest_equiv(const struct hist *h, int64_t v)
{
    return hist_lowest_equiv(h, v) + (equiv_width(h, v) - 1);
}

static int64_t median_equiv(const struct hist *h, int64_t v)
{
    return hist_lowest_equiv(h, v) + (equiv_width(h, v) >> 1);
}

/* ---- recording ---- */

bool hist_record(struct hist *h, int64_t v)
{
    return hist_record_n(h, v, 1);
}

bool hist_record_n(struct hist *h, int64_t v, int64_t n)
{
    bool in_range = true;
    if (n <= 0)
        return n == 0;
    if (v < 0) {
        h->out_of_range += n;
        return false;
    }
    if (v > h->highest) {
        h->out_of_range += n;
        v = h->highest;
        in_range = false;
    }
    h->counts[index_of(h, v)] += n;
    h->count += n;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    return in_range;
}

int hist_merge(struct hist *dst, const struct hist *src)
{
    if (dst->lowest != src->lowest || dst->highest != src->highest || dst->sig_digits != src->sig_digits)
        return -1;
    if (!src->count)
        return 0;
    /* Nothing is counted past src's max: stop there. */
    int32_t limit = index_of(src, src->max) + 1;
    for (int32_t i = 0; i < limit; i++)
        dst->counts[i] += src->counts[i];
    dst->count += src->count;
    dst->out_of_range += src->out_of_range;
    if (src->min < dst->min)
        dst->min = src->min;
    if (src->max > dst->max)
        dst->max = src->max;
    return 0;
}

/* ---- statistics ---- */

int64_t hist_count(const struct hist *h)
{
    return h->count;
}
int64_t hist_min(const struct hist *h)
{
    return h->count ? h->min : 0;
}
int64_t hist_max(const struct hist *h)
{
    return h->count ? h->max : 0;
}

int64_t hist_percentile(const struct hist *h, double p)
{
    if (!h->count)
        return 0;
    if (!(p > 0)) /* NaN too */
        return h->min;
    if (p >= 100)
        return h->max;
    /* One ulp below p first, as Java does: p/100 * count landing a hair above an integer by roundoff must not
     * push the rank one past the value asked for. */
    double want = ceil(nextafter(p, 0) * (double)h->count / 100);
    int64_t rank = want < 1 ? 1 : (int64_t)want;
    int64_t seen = 0;
    for (int32_t i = 0; i < h->counts_len; i++) {
        seen += h->counts[i];
        if (seen < rank)
            continue;
        int64_t v = hist_highest_equiv(h, hist_value_at(h, i));
        return v < h->max ? v : h->max;
    }
    return h->max;
}

double hist_mean(const struct hist *h)
{
    if (!h->count)
        return 0;
    double sum = 0;
    for (int32_t i = 0; i < h->counts_len; i++) {
        if (h->counts[i])
            sum += (double)median_equiv(h, hist_value_at(h, i)) * (double)h->counts[i];
    }
    return sum / (double)h->count;
}

double hist_stddev(const struct hist *h)
{
    if (!h->count)
        return 0;
    double mean = hist_mean(h), sum = 0;
    for (int32_t i = 0; i < h->counts_len; i++) {
        if (!h->counts[i])
            continue;
        double d = (double)median_equiv(h, hist_value_at(h, i)) - mean;
        sum += d * d * (double)h->counts[i];
    }
    return sqrt(sum / (double)h->count);
}

/* ---- V2 encoding: big-endian fields, ZigZag LEB128 counts, zlib, base64 ---- */

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | p[2] << 8 | p[3];
}
static uint64_t get_be64(const uint8_t *p)
{
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

/* ZigZag then LEB128, at most ZZ_MAX bytes: the 9th byte carries 8 bits, so no continuation bit is needed. */
static size_t zz_put(uint8_t *p, int64_t v)
{
    uint64_t z = (uint64_t)v << 1 ^ (v < 0 ? UINT64_MAX : 0);
    size_t n = 0;
    while (n < ZZ_MAX - 1 && z >= 0x80) {
        p[n++] = (uint8_t)(z | 0x80);
        z >>= 7;
    }
    p[n++] = (uint8_t)z;
    return n;
}

/* One value from p[0..len): bytes consumed, or -1 when it runs past len. */
static int zz_get(const uint8_t *p, size_t len, int64_t *v)
{
    uint64_t z = 0;
    size_t n = 0;
    for (;;) {
        if (n == len)
            return -1;
        uint8_t b = p[n];
        if (n == ZZ_MAX - 1) {
            z |= (uint64_t)b << 56;
            n++;
            break;
        }
        z |= (uint64_t)(b & 0x7f) << (7 * n);
        n++;
        if (!(b & 0x80))
            break;
    }
    *v = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
    return (int)n;
}

/* Counts 0..index(max) as Java writes them: a count, or -k for a run of k > 1 zeros (a lone zero is just 0). */
static size_t encode_payload(const struct hist *h, uint8_t *p)
{
    int32_t limit = h->count ? index_of(h, h->max) + 1 : 1;
    size_t n = 0;
    for (int32_t i = 0; i < limit;) {
        int64_t c = h->counts[i++];
        if (c == 0) {
            int64_t zeros = 1;
            while (i < limit && h->counts[i] == 0) {
                zeros++;
                i++;
            }
            if (zeros > 1)
                c = -zeros;
        }
        n += zz_put(p + n, c);
    }
    return n;
}

/* The uncompressed V2 encoding: header then payload; NULL on out of memory. */
static uint8_t *encode_inner(const struct hist *h, size_t *len)
{
    int32_t limit = h->count ? index_of(h, h->max) + 1 : 1;
    uint8_t *p = malloc(HEADER_LEN + (size_t)limit * ZZ_MAX);
    if (!p)
        return NULL;
    size_t payload = encode_payload(h, p + HEADER_LEN);
    double ratio = 1.0; /* integer to double conversion ratio: only DoubleHistogram uses another */
    uint64_t ratio_bits;
    memcpy(&ratio_bits, &ratio, sizeof ratio_bits);
    put_be32(p, COOKIE_ENCODING);
    put_be32(p + 4, (uint32_t)payload);
    put_be32(p + 8, 0); /* normalizing index offset: we never shift */
    put_be32(p + 12, (uint32_t)h->sig_digits);
    put_be64(p + 16, (uint64_t)h->lowest);
    put_be64(p + 24, (uint64_t)h->highest);
    put_be64(p + 32, ratio_bits);
    *len = HEADER_LEN + payload;
    return p;
}

/* Outer cookie, compressed length, then the zlib stream (Java uses BEST_COMPRESSION). */
static uint8_t *compress_outer(const uint8_t *inner, size_t inner_len, size_t *len)
{
    uLongf zlen = compressBound((uLong)inner_len);
    uint8_t *p = malloc(8 + zlen);
    if (!p)
        return NULL;
    if (compress2(p + 8, &zlen, inner, (uLong)inner_len, Z_BEST_COMPRESSION) != Z_OK) {
        free(p);
        return NULL;
    }
    put_be32(p, COOKIE_COMPRESSED);
    put_be32(p + 4, (uint32_t)zlen);
    *len = 8 + zlen;
    return p;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *b64_encode(const uint8_t *in, size_t n, size_t *out_len)
{
    char *out = malloc((n + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        out[o++] = B64[v >> 18 & 63];
        out[o++] = B64[v >> 12 & 63];
        out[o++] = i + 1 < n ? B64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? B64[v & 63] : '=';
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

int hist_encode_v2(const struct hist *h, char **b64, size_t *len)
{
    size_t inner_len, outer_len;
    uint8_t *outer = NULL, *inner = encode_inner(h, &inner_len);
    if (inner)
        outer = compress_outer(inner, inner_len, &outer_len);
    free(inner);
    if (!outer)
        return -1;
    *b64 = b64_encode(outer, outer_len, len);
    free(outer);
    return *b64 ? 0 : -1;
}

/* ---- V2 decoding ---- */

static int b64_digit(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Standard base64, padding optional; out needs len * 3 / 4 bytes. 0, or -1 on a character outside the alphabet
 * or a length no encoder produces. */
static int b64_decode(const char *in, size_t len, uint8_t *out, size_t *out_len)
{
    for (int pad = 0; pad < 2 && len && in[len - 1] == '='; pad++)
        len--;
    if (len % 4 == 1)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int d = b64_digit(in[i]);
        if (d < 0)
            return -1;
        acc = acc << 6 | (uint32_t)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    *out_len = o;
    return 0;
}

/* Inflate exactly n bytes into out: 0, or -1 when the stream is corrupt or ends first. */
static int inflate_exact(z_stream *zs, uint8_t *out, size_t n)
{
    zs->next_out = out;
    zs->avail_out = (uInt)n;
    while (zs->avail_out) {
        int rc = inflate(zs, Z_SYNC_FLUSH);
        if (rc == Z_STREAM_END && zs->avail_out)
            return -1;
        if (rc != Z_OK && rc != Z_STREAM_END)
            return -1;
    }
    return 0;
}

/* The stream must end right after the payload: this also checks zlib's Adler-32, so a corrupt log is refused
 * rather than decoded into wrong counts. */
static int stream_end(z_stream *zs)
{
    uint8_t extra;
    zs->next_out = &extra;
    zs->avail_out = 1;
    return inflate(zs, Z_FINISH) == Z_STREAM_END && zs->avail_out == 1 ? 0 : -1;
}

/* Counts from the payload: -k skips k zeros. -1 when a value is cut short or the counts overrun the layout. */
static int decode_payload(struct hist *h, const uint8_t *p, size_t len)
{
    int64_t idx = 0;
    for (size_t off = 0; off < len;) {
        int64_t v;
        int n = zz_get(p + off, len - off, &v);
        if (n < 0)
            return -1;
        off += (size_t)n;
        if (v >= 0 && idx < h->counts_len)
            h->counts[idx++] = v;
        else if (v < 0 && v != INT64_MIN && -v <= h->counts_len - idx)
            idx += -v;
        else
            return -1;
    }
    return 0;
}

/* Count, min and max from the counts, as HdrHistogram does after a decode: -1 if the total overflows. */
static int establish_totals(struct hist *h)
{
    int32_t lo = -1, hi = -1;
    for (int32_t i = 0; i < h->counts_len; i++) {
        if (!h->counts[i])
            continue;
        if (h->counts[i] > INT64_MAX - h->count)
            return -1;
        h->count += h->counts[i];
        lo = lo < 0 ? i : lo;
        hi = i;
    }
    if (hi >= 0) {
        h->min = hist_value_at(h, lo);
        h->max = hist_highest_equiv(h, hist_value_at(h, hi));
    }
    return 0;
}

/* The 40-byte header gives the layout; the normalizing offset and the ratio are ignored (hdr-histogram-js writes
 * 1 and an integer 1 there, and its counts are not shifted either). A histogram, or NULL. */
static struct hist *hist_from_header(const uint8_t *p, uint32_t *payload_len)
{
    if ((get_be32(p) & COOKIE_MASK) != (COOKIE_ENCODING & COOKIE_MASK))
        return NULL;
    *payload_len = get_be32(p + 4);
    int32_t digits = (int32_t)get_be32(p + 12);
    struct hist *h = hist_new((int64_t)get_be64(p + 16), (int64_t)get_be64(p + 24), digits);
    /* No honest payload needs more than ZZ_MAX bytes per count: this bounds the allocation that follows. */
    if (h && *payload_len > (uint64_t)h->counts_len * ZZ_MAX) {
        hist_free(h);
        return NULL;
    }
    return h;
}

/* Inflate and decode the zlib stream of the compressed form into a new histogram, or NULL. */
static struct hist *decode_inner(const uint8_t *z, size_t zlen)
{
    z_stream zs = {.next_in = (Bytef *)z, .avail_in = (uInt)zlen};
    uint8_t header[HEADER_LEN], *payload = NULL;
    struct hist *h = NULL;
    uint32_t payload_len = 0;
    if (inflateInit(&zs) != Z_OK)
        return NULL;
    if (inflate_exact(&zs, header, sizeof header) < 0)
        goto fail;
    h = hist_from_header(header, &payload_len);
    if (!h)
        goto fail;
    payload = malloc(payload_len ? payload_len : 1);
    if (!payload || inflate_exact(&zs, payload, payload_len) < 0)
        goto fail;
    if (stream_end(&zs) < 0 || decode_payload(h, payload, payload_len) < 0 || establish_totals(h) < 0)
        goto fail;
    free(payload);
    inflateEnd(&zs);
    return h;
fail:
    free(payload);
    hist_free(h);
    inflateEnd(&zs);
    return NULL;
}

int hist_decode_v2(const char *b64, size_t len, struct hist **out)
{
    size_t n;
    uint32_t zlen;
    uint8_t *raw = malloc(len / 4 * 3 + 3);
    struct hist *h = NULL;
    if (!raw)
        return -1;
    if (b64_decode(b64, len, raw, &n) < 0 || n < 8)
        goto done;
    if ((get_be32(raw) & COOKIE_MASK) != (COOKIE_COMPRESSED & COOKIE_MASK))
        goto done;
    zlen = get_be32(raw + 4);
    if (zlen > n - 8)
        goto done;
    h = decode_inner(raw + 8, zlen);
done:
    free(raw);
    *out = h;
    return h ? 0 : -1;
}

/* ---- .hlog writer ---- */

struct hlog *hlog_open(FILE *fp, double start_epoch)
{
    struct hlog *log = malloc(sizeof *log);
    if (!log)
        return NULL;
    *log = (struct hlog){.fp = fp, .base_time = start_epoch};
    /* The date is for people: readers take only the number. Java prints Date.toString(); we print it in UTC. */
    char date[64] = "";
    time_t secs = (time_t)start_epoch;
    struct tm tm;
    if (gmtime_r(&secs, &tm))
        strftime(date, sizeof date, "%a %b %d %H:%M:%S UTC %Y", &tm);
    fprintf(fp, "#[Logged with wsharness hist]\n");
    fprintf(fp, "#[Histogram log format version 1.3]\n");
    fprintf(fp, "#[StartTime: %.3f (seconds since epoch), %s]\n", start_epoch, date);
    fprintf(fp, "#[BaseTime: %.3f (seconds since epoch)]\n", start_epoch);
    fprintf(fp, "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n");
    if (ferror(fp)) {
        free(log);
        return NULL;
    }
    return log;
}

/* Readers split fields on commas and white space. */
static bool tag_ok(const char *tag)
{
    if (!*tag)
        return false;
    for (const char *c = tag; *c; c++) {
        if (*c == ',' || isspace((unsigned char)*c) || iscntrl((unsigned char)*c))
            return false;
    }
    return true;
}

int hlog_write(struct hlog *log, const char *tag, double start_rel_s, double length_s, const struct hist *h)
{
    char *b64;
    size_t len;
    if (tag && !tag_ok(tag))
        return -1;
    if (hist_encode_v2(h, &b64, &len) < 0)
        return -1;
    if (tag)
        fprintf(log->fp, "Tag=%s,", tag);
    /* %.3f in the C locale: nothing here calls setlocale, and a comma decimal point would break the line. */
    fprintf(log->fp, "%.3f,%.3f,%.3f,%s\n", start_rel_s, length_s, (double)hist_max(h) / HLOG_MAX_RATIO, b64);
    free(b64);
    return ferror(log->fp) ? -1 : 0;
}

int hlog_close(struct hlog *log)
{
    int rc = fflush(log->fp) == 0 ? 0 : -1;
    free(log);
    return rc;
}
