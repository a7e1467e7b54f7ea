/* hist: layout sizes from HdrHistogram's facts, index math at every power of two and on random values,
 * percentiles against a sorted copy of 100k values (three distributions), merge, the V2 encoding byte by byte
 * (checked with our own base64 and zlib's uncompress, not the encoder's helpers), decode round trips and
 * refusals, and the .hlog header and interval lines parsed back with sscanf. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/hist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define N_VALUES 100000

/* ---- helpers ---- */

/* splitmix64: a seeded, reproducible stream. */
static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rng_unit(void)
{
    return (double)(rng_next() >> 11) * 0x1.0p-53;
}

static double rng_normal(double mean, double sd)
{
    double u = rng_unit(), v = rng_unit();
    return mean + sd * sqrt(-2 * log(1 - u)) * cos(2 * 3.14159265358979323846 * v);
}

enum dist { DIST_UNIFORM = 0, DIST_EXP, DIST_BIMODAL };

/* One latency in ns. Uniform 1 us..100 ms; exponential with mean 2 ms; bimodal: 90% near 80 us, 10% near 40 ms. */
static int64_t draw(enum dist d)
{
    double v;
    switch (d) {
    case DIST_UNIFORM: v = 1e3 + rng_unit() * (1e8 - 1e3); break;
    case DIST_EXP: v = 1e3 - 2e6 * log(1 - rng_unit()); break;
    default: v = rng_unit() < 0.9 ? rng_normal(80e3, 10e3) : rng_normal(40e6, 5e6); break;
    }
    return v < 1e3 ? 1000 : (int64_t)v;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static struct hist *ns_hist(void)
{
    struct hist *h = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    assert_non_null(h);
    return h;
}

static int64_t pow10i(int d)
{
    int64_t p = 1;
    while (d--)
        p *= 10;
    return p;
}

/* Our own base64 both ways, so the encoder is checked against a second implementation. */
static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t t_b64_decode(const char *s, uint8_t *out)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (; *s && *s != '='; s++) {
        const char *c = strchr(B64, *s);
        assert_non_null(c);
        acc = acc << 6 | (uint32_t)(c - B64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return o;
}

static char *t_b64_encode(const uint8_t *in, size_t n)
{
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    assert_non_null(out);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        *o++ = B64[v >> 18 & 63];
        *o++ = B64[v >> 12 & 63];
        *o++ = i + 1 < n ? B64[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? B64[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | p[2] << 8 | p[3];
}
static uint64_t be64(const uint8_t *p)
{
    return (uint64_t)be32(p) << 32 | be32(p + 4);
}

/* Take an encoded blob apart: outer cookie and length checked here, inner (uncompressed) bytes into inner. */
static size_t unwrap_blob(const char *b64, uint8_t *inner, size_t cap)
{
    size_t n = strlen(b64);
    uint8_t *raw = malloc(n);
    assert_non_null(raw);
    size_t raw_len = t_b64_decode(b64, raw);
    assert_true(raw_len > 8);
    assert_int_equal(be32(raw), 0x1c849314);
    assert_int_equal(be32(raw + 4), raw_len - 8);
    uLongf inner_len = cap;
    assert_int_equal(uncompress(inner, &inner_len, raw + 8, raw_len - 8), Z_OK);
    free(raw);
    return inner_len;
}

/* The inverse of unwrap_blob with zlib's default level: for blobs with a header or payload made by hand. */
static char *wrap_blob(const uint8_t *inner, size_t n)
{
    uLongf zlen = compressBound(n);
    uint8_t *raw = malloc(8 + zlen);
    assert_non_null(raw);
    assert_int_equal(compress(raw + 8, &zlen, inner, n), Z_OK);
    uint8_t hdr[8] = {
        0x1c, 0x84, 0x93, 0x14, (uint8_t)(zlen >> 24), (uint8_t)(zlen >> 16), (uint8_t)(zlen >> 8), (uint8_t)zlen};
    memcpy(raw, hdr, 8);
    char *b64 = t_b64_encode(raw, 8 + zlen);
    free(raw);
    return b64;
}

static struct hist *decode_ok(const char *b64)
{
    struct hist *h = NULL;
    assert_int_equal(hist_decode_v2(b64, strlen(b64), &h), 0);
    assert_non_null(h);
    return h;
}

/* ---- layout ---- */

/* The facts' examples: 1 us..1 h @3 in us units is 22 buckets and 23552 counts (~185 KB); 1 us..24 h (wrk2) 27
 * buckets; 1 us..60 s 16 buckets (~139 KB). In ns with lowest 1000 the unit is 512 ns: one bucket more. */
static void test_layout_matches_facts(void **state)
{
    (void)state;
    static const struct {
        int64_t lowest, highest;
        int digits, unit_mag, buckets;
        int32_t counts_len;
    } cases[] = {
        {1, INT64_C(3600000000), 3, 0, 22, 23552},
        {1, INT64_C(86400000000), 3, 0, 27, 28 * 1024},
        {1, 60000000, 3, 0, 16, 17408},
        {HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS, 9, 23, 24576},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct hist *h = hist_new(cases[i].lowest, cases[i].highest, cases[i].digits);
        assert_non_null(h);
        assert_int_equal(h->sub_bucket_count, 2048);
        assert_int_equal(h->sub_bucket_half, 1024);
        assert_int_equal(h->unit_mag, cases[i].unit_mag);
        assert_int_equal(h->sub_bucket_mask, INT64_C(2047) << cases[i].unit_mag);
        assert_int_equal(h->bucket_count, cases[i].buckets);
        assert_int_equal(h->counts_len, cases[i].counts_len);
        /* The formula: the smallest bucket count whose top passes highest. */
        int64_t top = h->sub_bucket_count << h->unit_mag;
        assert_true((top << (h->bucket_count - 1)) > h->highest);
        assert_true((top << (h->bucket_count - 2)) <= h->highest);
        hist_free(h);
    }
}

static void test_sub_bucket_count_per_digits(void **state)
{
    (void)state;
    static const int64_t expect[] = {0, 32, 256, 2048, 32768, 262144}; /* 2^ceil(log2(2 * 10^d)) */
    for (int d = 1; d <= 5; d++) {
        struct hist *h = hist_new(1, 1000000, d);
        assert_non_null(h);
        assert_int_equal(h->sub_bucket_count, expect[d]);
        assert_true(h->sub_bucket_half >= pow10i(d)); /* what makes d digits hold */
        hist_free(h);
    }
}

static void test_bad_arguments(void **state)
{
    (void)state;
    assert_null(hist_new(0, 1000, 3));
    assert_null(hist_new(-5, 1000, 3));
    assert_null(hist_new(1000, 1999, 3));
    assert_null(hist_new(1, 1000, 0));
    assert_null(hist_new(1, 1000, 6));
    assert_null(hist_new(INT64_C(1) << 55, INT64_MAX, 3)); /* unit + sub-bucket magnitude past 61 */
    struct hist *h = hist_new(1000, 2000, 3);
    assert_non_null(h);
    hist_free(h);
    h = hist_new(1, INT64_MAX, 3);
    assert_non_null(h);
    assert_int_equal(hist_highest_equiv(h, INT64_MAX), INT64_MAX);
    assert_int_equal(hist_index(h, INT64_MAX), h->counts_len - 1);
    hist_free(h);
}

/* ---- index math ---- */

/* v's slot: value_at(index(v)) <= v <= highest_equiv(v), its neighbours tile the line, and its width is within
 * the precision: at most one unit, or at most v / 10^digits. */
static void check_value(const struct hist *h, int64_t v)
{
    int32_t idx = hist_index(h, v);
    assert_true(idx >= 0 && idx < h->counts_len);
    int64_t lo = hist_value_at(h, idx), hi = hist_highest_equiv(h, v);
    assert_true(lo <= v);
    assert_true(v <= hi);
    assert_int_equal(hist_lowest_equiv(h, v), lo);
    assert_int_equal(hist_index(h, lo), idx);
    assert_int_equal(hist_index(h, hi), idx);
    if (hi < INT64_MAX && idx + 1 < h->counts_len)
        assert_int_equal(hist_index(h, hi + 1), idx + 1);
    int64_t width = hi - lo + 1;
    assert_true(width <= (INT64_C(1) << h->unit_mag) || (double)width * (double)pow10i(h->sig_digits) <= (double)v);
    if ((double)v >= (double)pow10i(h->sig_digits) * (double)(INT64_C(1) << h->unit_mag))
        assert_true((double)(hi - v) <= (double)v / (double)pow10i(h->sig_digits));
}

static void test_index_powers_of_two_and_random(void **state)
{
    (void)state;
    static const struct {
        int64_t lowest, highest;
        int digits;
    } cfg[] = {
        {1, INT64_C(3600000000), 3},
        {HIST_NS_LOWEST, HIST_NS_HIGHEST, 3},
        {1, 1000000, 1},
        {3, INT64_C(1000000000000), 4},
        {1, 1000000000, 5},
        {1, INT64_MAX, 2},
    };
    rng_state = 1;
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        struct hist *h = hist_new(cfg[c].lowest, cfg[c].highest, cfg[c].digits);
        assert_non_null(h);
        for (int k = 0; k < 63 && (INT64_C(1) << k) <= h->highest; k++) {
            int64_t p = INT64_C(1) << k;
            check_value(h, p - 1);
            check_value(h, p);
            check_value(h, p + 1);
        }
        check_value(h, 0);
        check_value(h, h->lowest);
        check_value(h, h->highest);
        double span = log((double)h->highest);
        for (int i = 0; i < 20000; i++) { /* log-uniform, so every bucket gets visits */
            double x = exp(rng_unit() * span);
            check_value(h, x >= (double)h->highest ? h->highest : (int64_t)x);
        }
        hist_free(h);
    }
}

/* Every index, in order: slots are contiguous and increasing from 0 to the top of the last bucket. */
static void test_index_sweep_tiles_the_range(void **state)
{
    (void)state;
    struct hist *h = ns_hist();
    assert_int_equal(hist_value_at(h, 0), 0);
    for (int32_t i = 0; i + 1 < h->counts_len; i++) {
        int64_t lo = hist_value_at(h, i);
        assert_int_equal(hist_index(h, lo), i);
        assert_int_equal(hist_highest_equiv(h, lo) + 1, hist_value_at(h, i + 1));
    }
    int64_t top = hist_highest_equiv(h, hist_value_at(h, h->counts_len - 1));
    assert_true(top >= h->highest);
    assert_int_equal(hist_index(h, top + 1), -1);
    assert_int_equal(hist_index(h, -1), -1);
    hist_free(h);
}

/* ---- recording and percentiles ---- */

static void test_record_edges(void **state)
{
    (void)state;
    struct hist *h = hist_new(1000, 1000000, 3);
    assert_non_null(h);
    assert_int_equal(hist_count(h), 0);
    assert_int_equal(hist_min(h), 0);
    assert_int_equal(hist_max(h), 0);
    assert_int_equal(hist_percentile(h, 50), 0);
    assert_true(hist_mean(h) == 0 && hist_stddev(h) == 0);

    assert_false(hist_record(h, -1)); /* refused, counted, not recorded */
    assert_int_equal(h->out_of_range, 1);
    assert_int_equal(hist_count(h), 0);
    assert_false(hist_record_n(h, 5000000, 2)); /* clamped to highest, counted, recorded */
    assert_int_equal(h->out_of_range, 3);
    assert_int_equal(hist_count(h), 2);
    assert_int_equal(hist_max(h), 1000000);
    assert_true(hist_record(h, 0));
    assert_true(hist_record(h, 1000000));
    assert_int_equal(hist_min(h), 0);
    assert_true(hist_record_n(h, 7, 0));
    assert_false(hist_record_n(h, 7, -1));
    assert_int_equal(hist_count(h), 4);
    assert_int_equal(hist_percentile(h, 100), 1000000);
    assert_int_equal(hist_percentile(h, 0), 0);

    hist_reset(h);
    assert_int_equal(hist_count(h), 0);
    assert_int_equal(h->out_of_range, 0);
    assert_int_equal(hist_max(h), 0);
    for (int32_t i = 0; i < h->counts_len; i++)
        assert_int_equal(h->counts[i], 0);
    hist_free(h);
}

/* A percentile never exceeds the exact max, even when the max's bucket reaches higher. */
static void test_percentile_clamped_to_max(void **state)
{
    (void)state;
    struct hist *h = ns_hist();
    hist_record_n(h, 1234567, 10);
    assert_true(hist_highest_equiv(h, 1234567) > 1234567);
    assert_int_equal(hist_percentile(h, 50), 1234567);
    assert_int_equal(hist_percentile(h, 99.999), 1234567);
    int64_t lo = hist_lowest_equiv(h, 1234567), width = hist_highest_equiv(h, 1234567) - lo + 1;
    assert_true(hist_mean(h) == (double)(lo + (width >> 1))); /* the slot's middle, as HdrHistogram has it */
    hist_free(h);
}

/* hist_percentile(p) must be the slot of the value of rank ceil(p/100 * N) in sorted order, capped at the max. */
static void check_distribution(enum dist d, uint64_t seed)
{
    int64_t *v = malloc(N_VALUES * sizeof *v);
    assert_non_null(v);
    struct hist *h = ns_hist();
    rng_state = seed;
    double sum = 0, sq = 0;
    for (int i = 0; i < N_VALUES; i++) {
        v[i] = draw(d);
        assert_true(hist_record(h, v[i]));
        sum += (double)v[i];
    }
    qsort(v, N_VALUES, sizeof *v, cmp_i64);
    static const int tenths[] = {500, 900, 990, 999, 1000}; /* p50 p90 p99 p99.9 p100, in tenths of a percent */
    for (size_t i = 0; i < sizeof tenths / sizeof tenths[0]; i++) {
        int64_t rank = ((int64_t)tenths[i] * N_VALUES + 999) / 1000;
        int64_t exact = v[rank - 1], got = hist_percentile(h, tenths[i] / 10.0);
        int64_t slot = hist_highest_equiv(h, exact);
        assert_int_equal(got, slot < v[N_VALUES - 1] ? slot : v[N_VALUES - 1]);
        assert_true(got >= exact);
        assert_true((double)(got - exact) <= fmax(512, (double)exact / 1000));
    }
    assert_int_equal(hist_count(h), N_VALUES);
    assert_int_equal(hist_min(h), v[0]);
    assert_int_equal(hist_max(h), v[N_VALUES - 1]);
    assert_int_equal(hist_percentile(h, 0), v[0]);
    double mean = sum / N_VALUES;
    for (int i = 0; i < N_VALUES; i++)
        sq += ((double)v[i] - mean) * ((double)v[i] - mean);
    assert_true(fabs(hist_mean(h) - mean) <= mean / 1000 + 512);
    assert_true(fabs(hist_stddev(h) - sqrt(sq / N_VALUES)) <= sqrt(sq / N_VALUES) / 100);
    hist_free(h);
    free(v);
}

static void test_percentiles_uniform(void **state)
{
    (void)state;
    check_distribution(DIST_UNIFORM, 11);
}

static void test_percentiles_exponential(void **state)
{
    (void)state;
    check_distribution(DIST_EXP, 12);
}

static void test_percentiles_bimodal(void **state)
{
    (void)state;
    check_distribution(DIST_BIMODAL, 13);
}

/* ---- merge ---- */

static void test_merge_equals_single(void **state)
{
    (void)state;
    struct hist *a = ns_hist(), *b = ns_hist(), *all = ns_hist(), *dst = ns_hist();
    rng_state = 21;
    for (int i = 0; i < N_VALUES; i++) { /* disjoint: a below 1 ms, b from 1 ms up */
        int64_t x = draw(i % 2 ? DIST_EXP : DIST_BIMODAL);
        hist_record(x < 1000000 ? a : b, x);
        hist_record(all, x);
    }
    hist_record(b, -3); /* out-of-range counts add up too */
    all->out_of_range++;
    assert_int_equal(hist_merge(dst, a), 0);
    assert_int_equal(hist_merge(dst, b), 0);
    assert_memory_equal(dst->counts, all->counts, (size_t)all->counts_len * sizeof all->counts[0]);
    assert_int_equal(hist_count(dst), hist_count(all));
    assert_int_equal(hist_min(dst), hist_min(all));
    assert_int_equal(hist_max(dst), hist_max(all));
    assert_int_equal(dst->out_of_range, all->out_of_range);
    for (double p = 0; p <= 100; p += 0.25)
        assert_int_equal(hist_percentile(dst, p), hist_percentile(all, p));
    assert_int_equal(hist_percentile(dst, 99.99), hist_percentile(all, 99.99));
    assert_true(hist_mean(dst) == hist_mean(all));

    struct hist *other = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, 2), *empty = ns_hist();
    assert_non_null(other);
    hist_record(other, 5000);
    assert_int_equal(hist_merge(dst, other), -1); /* another layout: refused, dst unchanged */
    assert_int_equal(hist_merge(dst, empty), 0);
    assert_memory_equal(dst->counts, all->counts, (size_t)all->counts_len * sizeof all->counts[0]);
    assert_int_equal(hist_count(dst), hist_count(all));
    struct hist *all_six[] = {a, b, all, dst, other, empty};
    for (size_t i = 0; i < 6; i++)
        hist_free(all_six[i]);
}

/* ---- V2 encoding ---- */

/* 1 x1, 2 x3, 1000 x2 at 2 digits (256 sub-buckets, unit 1): 1000 is bucket 2, sub-bucket 250, index 506.
 * Payload: idx 0 a lone zero (0), 1 -> zz(1) = 2, 2 -> zz(3) = 6, idx 3..505 a run of 503 zeros -> zz(-503) =
 * 1005 = LEB128 ed 07, idx 506 -> zz(2) = 4. */
static const uint8_t small_inner[] = {
    0x1c, 0x84, 0x93, 0x13, 0,    0,    0, 6, 0, 0, 0, 0, 0, 0,    0,    2,    /* cookie, payload len, offset, digits */
    0,    0,    0,    0,    0,    0,    0, 1, 0, 0, 0, 0, 0, 0x01, 0x86, 0xa0, /* lowest 1, highest 100000 */
    0x3f, 0xf0, 0,    0,    0,    0,    0, 0,                                  /* ratio 1.0 */
    0x00, 0x02, 0x06, 0xed, 0x07, 0x04,                                        /* payload */
};

/* What our encoder (zlib, best compression) made of it when this test was written: a change means logs stop
 * being byte-for-byte reproducible, which is worth knowing. */
static const char small_b64[] = "HISTFAAAACJ42pNpmSzMwMDAxgABTFCaEUK2LbD/AJNhe8vOAgBejASm";

static struct hist *small_hist(void)
{
    struct hist *h = hist_new(1, 100000, 2);
    assert_non_null(h);
    hist_record(h, 1);
    hist_record_n(h, 2, 3);
    hist_record_n(h, 1000, 2);
    assert_int_equal(hist_index(h, 1000), 506);
    return h;
}

static void test_encode_small_known_bytes(void **state)
{
    (void)state;
    struct hist *h = small_hist();
    char *b64;
    size_t len;
    assert_int_equal(hist_encode_v2(h, &b64, &len), 0);
    assert_int_equal(strlen(b64), len);
    assert_int_equal(len % 4, 0);
    uint8_t inner[256];
    size_t n = unwrap_blob(b64, inner, sizeof inner);
    assert_int_equal(n, sizeof small_inner);
    assert_memory_equal(inner, small_inner, sizeof small_inner);
    print_message("small blob: %s\n", b64);
    assert_string_equal(b64, small_b64);
    free(b64);
    hist_free(h);
}

static void test_decode_small_known_blob(void **state)
{
    (void)state;
    struct hist *h = decode_ok(small_b64), *ref = small_hist();
    assert_int_equal(h->lowest, 1);
    assert_int_equal(h->highest, 100000);
    assert_int_equal(h->sig_digits, 2);
    assert_memory_equal(h->counts, ref->counts, (size_t)ref->counts_len * sizeof ref->counts[0]);
    assert_int_equal(hist_count(h), 6);
    assert_int_equal(hist_min(h), 1);
    assert_int_equal(hist_max(h), hist_highest_equiv(h, 1000)); /* a bucket bound: the exact max is not kept */
    assert_int_equal(hist_max(h), 1003);
    hist_free(h);
    hist_free(ref);
}

/* Encode, decode, compare everything the format keeps. */
static void round_trip(const struct hist *h)
{
    char *b64;
    size_t len;
    assert_int_equal(hist_encode_v2(h, &b64, &len), 0);
    struct hist *d = decode_ok(b64);
    assert_int_equal(d->lowest, h->lowest);
    assert_int_equal(d->highest, h->highest);
    assert_int_equal(d->sig_digits, h->sig_digits);
    assert_int_equal(d->counts_len, h->counts_len);
    assert_memory_equal(d->counts, h->counts, (size_t)h->counts_len * sizeof h->counts[0]);
    assert_int_equal(hist_count(d), hist_count(h));
    if (hist_count(h)) {
        assert_int_equal(hist_min(d), hist_lowest_equiv(h, hist_min(h)));
        assert_int_equal(hist_max(d), hist_highest_equiv(h, hist_max(h)));
    }
    free(b64);
    hist_free(d);
}

static void test_round_trip_100k(void **state)
{
    (void)state;
    static const char *names[] = {"uniform", "exponential", "bimodal"};
    for (enum dist dist = DIST_UNIFORM; dist <= DIST_BIMODAL; dist++) {
        struct hist *h = ns_hist();
        rng_state = 31 + dist;
        for (int i = 0; i < N_VALUES; i++)
            hist_record(h, draw(dist));
        round_trip(h);
        char *b64;
        size_t len;
        assert_int_equal(hist_encode_v2(h, &b64, &len), 0);
        int32_t used = 0;
        for (int32_t i = 0; i < h->counts_len; i++)
            used += h->counts[i] != 0;
        print_message("%s: %d values in %d slots -> %zu base64 chars\n", names[dist], N_VALUES, used, len);
        free(b64);
        hist_free(h);
    }
}

static void test_round_trip_edges(void **state)
{
    (void)state;
    struct hist *h = ns_hist();
    round_trip(h); /* empty: one lone zero */
    hist_record(h, 0);
    round_trip(h);
    hist_record(h, HIST_NS_HIGHEST); /* both ends */
    round_trip(h);
    /* Counts needing all 9 LEB128 bytes (zz >= 2^56), and the largest that fit. */
    hist_record_n(h, 5000, INT64_C(1) << 60);
    hist_record_n(h, 7000, INT64_MAX / 4);
    round_trip(h);
    hist_free(h);
    h = hist_new(1, 1000000000, 5);
    assert_non_null(h);
    rng_state = 41;
    for (int i = 0; i < 1000; i++)
        hist_record(h, (int64_t)(rng_unit() * 1e9));
    round_trip(h);
    hist_free(h);
}

/* A single zero is written as 0 and a run of k > 1 zeros as zz(-k) = 2k - 1: check the first bytes of a payload
 * whose counts are 0, 1, 0, 0, 0, 5 (zz: 00 02 05 0a). */
static void test_zero_runs_are_negative_zigzag(void **state)
{
    (void)state;
    struct hist *h = hist_new(1, 1000, 3);
    assert_non_null(h);
    hist_record(h, 1);
    hist_record_n(h, 5, 5);
    char *b64;
    size_t len;
    assert_int_equal(hist_encode_v2(h, &b64, &len), 0);
    uint8_t inner[256];
    size_t n = unwrap_blob(b64, inner, sizeof inner);
    assert_int_equal(be32(inner), 0x1c849313);
    assert_int_equal(be32(inner + 4), n - 40);
    assert_int_equal(be32(inner + 8), 0);
    assert_int_equal(be32(inner + 12), 3);
    assert_int_equal(be64(inner + 16), 1);
    assert_int_equal(be64(inner + 24), 1000);
    assert_int_equal(be64(inner + 32), UINT64_C(0x3ff0000000000000));
    static const uint8_t payload[] = {0x00, 0x02, 0x05, 0x0a};
    assert_int_equal(n - 40, sizeof payload);
    assert_memory_equal(inner + 40, payload, sizeof payload);
    free(b64);
    hist_free(h);
}

/* ---- decode refusals ---- */

static void expect_refused(const char *b64)
{
    struct hist *h = (struct hist *)&h; /* not NULL, so the test sees it being cleared */
    assert_int_equal(hist_decode_v2(b64, strlen(b64), &h), -1);
    assert_null(h);
}

/* small_inner with its header or payload changed, wrapped again. */
static void expect_inner_refused(size_t at, const uint8_t *bytes, size_t n, size_t total)
{
    uint8_t inner[sizeof small_inner + 16];
    memcpy(inner, small_inner, sizeof small_inner);
    memcpy(inner + at, bytes, n);
    char *b64 = wrap_blob(inner, total);
    expect_refused(b64);
    free(b64);
}

static void test_decode_refuses_malformed(void **state)
{
    (void)state;
    char *ok = wrap_blob(small_inner, sizeof small_inner); /* the wrapper itself is fine */
    hist_free(decode_ok(ok));
    free(ok);
    expect_refused("");
    expect_refused("!!!!");
    expect_refused("HIST"); /* too short for the outer header */
    char cut[sizeof small_b64];
    memcpy(cut, small_b64, sizeof cut);
    cut[strlen(cut) / 2 & ~(size_t)3] = '\0'; /* truncated: the outer length runs past the data */
    expect_refused(cut);
    char bad[sizeof small_b64];
    memcpy(bad, small_b64, sizeof bad);
    bad[0] = 'A'; /* outer cookie */
    expect_refused(bad);
    memcpy(bad, small_b64, sizeof bad);
    bad[sizeof bad - 6] = bad[sizeof bad - 6] == 'A' ? 'B' : 'A'; /* Adler-32 no longer matches */
    expect_refused(bad);

    static const uint8_t cookie[] = {0x1c, 0x84, 0x93, 0x14}, digits[] = {0, 0, 0, 9}; /* outer cookie inside */
    static const uint8_t long_payload[] = {0, 0, 0, 7}, bad_lowest[] = {0x80};
    expect_inner_refused(0, cookie, 4, sizeof small_inner);
    expect_inner_refused(12, digits, 4, sizeof small_inner);
    expect_inner_refused(16, bad_lowest, 1, sizeof small_inner);
    expect_inner_refused(4, long_payload, 4, sizeof small_inner); /* payload length past the data */
    static const uint8_t cut_leb[] = {0x80};                      /* last value's continuation bit set */
    expect_inner_refused(sizeof small_inner - 1, cut_leb, 1, sizeof small_inner);
    static const uint8_t overrun[] = {0xff, 0x7f}; /* zz(-8192): a zero run past counts_len (1408) */
    expect_inner_refused(43, overrun, 2, sizeof small_inner);
}

/* Trailing data after the zlib stream, or a payload length shorter than the stream holds, is refused too. */
static void test_decode_refuses_trailing_bytes(void **state)
{
    (void)state;
    uint8_t inner[sizeof small_inner + 1];
    memcpy(inner, small_inner, sizeof small_inner);
    inner[sizeof small_inner] = 0x02;
    char *b64 = wrap_blob(inner, sizeof inner);
    expect_refused(b64);
    free(b64);
}

/* ---- .hlog ---- */

static void test_hlog_header_and_lines(void **state)
{
    (void)state;
    char *text = NULL;
    size_t size = 0;
    FILE *fp = open_memstream(&text, &size);
    assert_non_null(fp);
    struct hlog *log = hlog_open(fp, 1700000000.123);
    assert_non_null(log);
    struct hist *h = ns_hist();
    hist_record_n(h, 1500000, 3); /* 1.5 ms */
    hist_record(h, 123456789);    /* 123.456789 ms */
    assert_int_equal(hlog_write(log, NULL, 0, 1, h), 0);
    assert_int_equal(hlog_write(log, "ws-echo", 1.25, 2.25, h), 0);
    assert_int_equal(hlog_write(log, "a b", 0, 1, h), -1);
    assert_int_equal(hlog_write(log, "a,b", 0, 1, h), -1);
    assert_int_equal(hlog_write(log, "", 0, 1, h), -1);
    assert_int_equal(hlog_close(log), 0);
    assert_int_equal(fclose(fp), 0);

    char *lines[16], *save = NULL;
    int n = 0;
    for (char *l = strtok_r(text, "\n", &save); l && n < 16; l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    assert_int_equal(n, 7);
    assert_string_equal(lines[0], "#[Logged with wsharness hist]");
    assert_string_equal(lines[1], "#[Histogram log format version 1.3]");
    double start = 0, base = 0;
    char date[64] = "";
    assert_int_equal(sscanf(lines[2], "#[StartTime: %lf (seconds since epoch), %63[^]]]", &start, date), 2);
    assert_true(fabs(start - 1700000000.123) < 1e-6);
    assert_string_equal(date, "Tue Nov 14 22:13:20 UTC 2023");
    assert_int_equal(sscanf(lines[3], "#[BaseTime: %lf (seconds since epoch)]", &base), 1);
    assert_true(fabs(base - 1700000000.123) < 1e-6);
    assert_string_equal(lines[4],
                        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"");

    double t, len, max_ms;
    char blob[4096], tag[32];
    assert_int_equal(sscanf(lines[5], "%lf,%lf,%lf,%4095s", &t, &len, &max_ms, blob), 4);
    assert_true(t == 0 && len == 1);
    assert_true(fabs(max_ms - 123.457) < 1e-9);
    assert_non_null(strstr(lines[5], ",123.457,"));
    struct hist *d = decode_ok(blob);
    assert_int_equal(hist_count(d), 4);
    assert_memory_equal(d->counts, h->counts, (size_t)h->counts_len * sizeof h->counts[0]);
    hist_free(d);
    assert_int_equal(sscanf(lines[6], "Tag=%31[^,],%lf,%lf,%lf,%4095s", tag, &t, &len, &max_ms, blob), 5);
    assert_string_equal(tag, "ws-echo");
    assert_non_null(strstr(lines[6], ",1.250,2.250,123.457,")); /* %.3f everywhere */
    free(text);
    hist_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_matches_facts),
        cmocka_unit_test(test_sub_bucket_count_per_digits),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_index_powers_of_two_and_random),
        cmocka_unit_test(test_index_sweep_tiles_the_range),
        cmocka_unit_test(test_record_edges),
        cmocka_unit_test(test_percentile_clamped_to_max),
        cmocka_unit_test(test_percentiles_uniform),
        cmocka_unit_test(test_percentiles_exponential),
        cmocka_unit_test(test_percentiles_bimodal),
        cmocka_unit_test(test_merge_equals_single),
        cmocka_unit_test(test_encode_small_known_bytes),
        cmocka_unit_test(test_decode_small_known_blob),
        cmocka_unit_test(test_round_trip_100k),
        cmocka_unit_test(test_round_trip_edges),
        cmocka_unit_test(test_zero_runs_are_negative_zigzag),
        cmocka_unit_test(test_decode_refuses_malformed),
        cmocka_unit_test(test_decode_refuses_trailing_bytes),
        cmocka_unit_test(test_hlog_header_and_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
