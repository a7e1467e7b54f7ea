/* libFuzzer target for the polling side of loadgen: what an HTTP response to a polling request can carry. Every
 * byte here comes from a server or a balancer we did not write: the chunked body (loadgen/httpc.c), the Set-Cookie
 * values the jar keeps, the payload split on \x1e with its base64 items, the open packet and engine.io's error
 * JSON (loadgen/sio.c).
 *
 * Input: any bytes, given to each parser at the very end of an exact-size allocation (ASan flags a read past it).
 * Invariants abort():
 *  - httpc_chunked answers -1, -2 or the bytes used (<= len), the body no longer than that; every proper prefix of
 *    a complete body is incomplete (-2), never malformed;
 *  - the jar stays a NUL-terminated string within its capacity, and a rejected cookie leaves it as it was;
 *  - payload items lie inside the input, are never empty, cover it with their separators, and a binary item
 *    decodes to exactly eio_base64_len bytes, which encode back to the same text;
 *  - eio_open_parse's sid lies inside the input. */
#include "loadgen/httpc.h"
#include "loadgen/sio.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static char *copy(const uint8_t *data, size_t size)
{
    char *p = malloc(size ? size : 1);
    check(p != NULL);
    if (size)
        memcpy(p, data, size);
    return p;
}

static void chunked(const uint8_t *data, size_t size)
{
    char *buf = copy(data, size);
    size_t blen = 0;
    long rc = httpc_chunked(buf, size, 1 << 20, &blen);
    check(rc == -1 || rc == -2 || (rc > 0 && (size_t)rc <= size && blen <= (size_t)rc));
    free(buf);
    if (rc <= 0 || size > 512)
        return;
    for (size_t cut = 0; cut < (size_t)rc; cut++) { /* a complete body's heads are incomplete */
        char *head = copy(data, cut);
        check(httpc_chunked(head, cut, 1 << 20, &blen) == -2);
        free(head);
    }
}

static void jar(const uint8_t *data, size_t size)
{
    char j[64] = "a=1; SRVID=n1";
    char before[64];
    char *sc = copy(data, size);
    memcpy(before, j, sizeof j);
    if (httpc_jar_set(j, sizeof j, sc, size) < 0)
        check(strcmp(j, before) == 0);
    check(strlen(j) < sizeof j);
    free(sc);
}

static void payload(const uint8_t *data, size_t size)
{
    char *buf = copy(data, size);
    size_t off = 0, covered = 0;
    struct eio_item it;
    int rc;
    while ((rc = sio_payload_next(buf, size, &off, &it)) == 1) {
        check(it.text.p >= buf && it.text.p + it.text.len <= buf + size && it.text.len > 0);
        check(it.text.p == buf + covered);
        covered += it.text.len + (off < size || buf[off - 1] == '\x1e');
        check(covered == off);
        if (!it.binary)
            continue;
        long n = eio_base64_len(it.text.p + 1, it.text.len - 1);
        check(n >= 0);
        unsigned char *bin = malloc((size_t)n + 1);
        char *again = malloc(it.text.len + 1);
        check(bin && again);
        check(eio_base64_decode(it.text.p + 1, it.text.len - 1, bin, (size_t)n) == n);
        check(eio_encode_binary(again, it.text.len + 1, bin, (size_t)n) == it.text.len);
        check(memcmp(again, it.text.p, it.text.len) == 0);
        free(bin);
        free(again);
    }
    check(rc == -1 || off == size);
    free(buf);
}

static void json(const uint8_t *data, size_t size)
{
    char *buf = copy(data, size);
    struct eio_open o;
    const char *why = NULL;
    if (eio_open_parse(buf, size, true, &o, &why) == 0)
        check(o.sid.p >= buf && o.sid.p + o.sid.len <= buf + size && o.sid.len > 0);
    else
        check(why != NULL);
    int code = eio_error_code(buf, size);
    check(code >= -1 && code < 100);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    chunked(data, size);
    jar(data, size);
    payload(data, size);
    json(data, size);
    return 0;
}
