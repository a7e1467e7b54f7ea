/* loadgen's message: encoder and the receivers' parser; see payload.h. */
#define _GNU_SOURCE
#include "loadgen/payload.h"

#include <stdbool.h>
#include <string.h>

#define MARKER     "{\"wsh\":1,"
#define MARKER_LEN (sizeof MARKER - 1)

static size_t put_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static size_t put_field(char *out, const char *name, uint64_t v)
{
    size_t n = strlen(name);
    memcpy(out, name, n); // NOLINT(bugprone-not-null-terminated-result): a message, not a C string
    return n + put_u64(out + n, v);
}

int lg_payload_encode(const struct lg_msg *m, char *out, size_t size)
{
    if (size < LG_PAYLOAD_MIN || m->send_ns < 0)
        return -1;
    size_t n = 0;
    memcpy(out, MARKER, MARKER_LEN); // NOLINT(bugprone-not-null-terminated-result): a message, not a C string
    n += MARKER_LEN;
    n += put_field(out + n, "\"e\":", m->emitter);
    n += put_field(out + n, ",\"r\":", m->round);
    n += put_field(out + n, ",\"s\":", m->seq);
    n += put_field(out + n, ",\"t\":", (uint64_t)m->send_ns);
    memcpy(out + n, ",\"pad\":\"", 8); // NOLINT(bugprone-not-null-terminated-result): ditto
    n += 8;
    memset(out + n, 'x', size - n - 2);
    memcpy(out + size - 2, "\"}", 2); // NOLINT(bugprone-not-null-terminated-result): ditto
    return (int)size;
}

/* Parse "NAME" then a decimal number of at most max, advancing *p. 1 ok, 0 input ended, -1 malformed. */
static int get_field(const char **p, const char *end, const char *name, uint64_t max, uint64_t *v)
{
    size_t n = strlen(name);
    if ((size_t)(end - *p) < n)
        return memcmp(*p, name, (size_t)(end - *p)) != 0 ? -1 : 0;
    if (memcmp(*p, name, n) != 0)
        return -1;
    const char *q = *p + n;
    if (q == end)
        return 0;
    if (*q < '0' || *q > '9')
        return -1;
    if (*q == '0' && q + 1 < end && q[1] >= '0' && q[1] <= '9')
        return -1; /* leading zero */
    uint64_t x = 0;
    for (; q < end && *q >= '0' && *q <= '9'; q++) {
        unsigned d = (unsigned)(*q - '0');
        if (x > (max - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    if (q == end)
        return 0; /* the number may go on */
    *v = x;
    *p = q;
    return 1;
}

int lg_payload_parse(const char *buf, size_t len, struct lg_msg *m)
{
    if (len > LG_PAYLOAD_PREFIX)
        len = LG_PAYLOAD_PREFIX;
    const char *p = memmem(buf, len, MARKER, MARKER_LEN);
    if (!p)
        return 0;
    const char *end = buf + len;
    p += MARKER_LEN;
    uint64_t e, r, s, t;
    int rc;
    if ((rc = get_field(&p, end, "\"e\":", UINT32_MAX, &e)) < 1 ||
        (rc = get_field(&p, end, ",\"r\":", UINT32_MAX, &r)) < 1 ||
        (rc = get_field(&p, end, ",\"s\":", UINT32_MAX, &s)) < 1 ||
        (rc = get_field(&p, end, ",\"t\":", INT64_MAX, &t)) < 1)
        return rc; /* 0: the message ends inside the fields, so it is not one of ours */
    if (*p != ',' && *p != '}')
        return -1;
    *m = (struct lg_msg){.emitter = (uint32_t)e, .round = (uint32_t)r, .seq = (uint32_t)s, .send_ns = (int64_t)t};
    return 1;
}
