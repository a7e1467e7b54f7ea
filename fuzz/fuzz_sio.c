/* libFuzzer target for loadgen/sio.c: eio_decode reads every text message a Socket.IO server sends to loadgen's
 * clients (servers we did not write included), and eio_encode_event writes what they relay.
 *
 * Input: any bytes, taken as a received text message. Each decode sees its bytes at the very end of an exact-size
 * allocation, so ASan flags a read past len. Invariants abort():
 *  - the answer is 0 or -1; on 0 every span lies inside the input, cut is set only for a head;
 *  - a message that decodes whole decodes as a head (whole = false) at every cut of it: a valid message's head is
 *    never malformed;
 *  - a decoded event's string argument unescapes to the end without error;
 *  - the input, sent as an event argument, comes back byte for byte (encode, decode, unescape), with an ack id too;
 *  - reassembly: the input split at \x1e into messages ('b...' a binary one, else a text packet), driven as
 *    client.c drives sio_asm: an assembly never takes more attachments than announced (more is a stray), never
 *    names a carrier past its count, and reports its carrier at most once. */
#include "loadgen/sio.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ECHO 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static bool inside(struct jscan_span sp, const char *buf, size_t len)
{
    return !sp.p || (sp.p >= buf && sp.p + sp.len <= buf + len) || (sp.len == 1 && sp.p[0] == '/');
}

/* Decode s[0..n) placed at the end of an exact-size allocation; check the answer's shape. */
static int decode_at_end(const uint8_t *s, size_t n, bool whole, struct eio_packet *k)
{
    char *buf = malloc(n ? n : 1);
    if (!buf)
        return -2;
    if (n)
        memcpy(buf, s, n);
    int rc = eio_decode(buf, n, whole, k);
    check(rc == 0 || rc == -1);
    if (rc == 0) {
        check(inside(k->nsp, buf, n) && inside(k->data, buf, n) && inside(k->event, buf, n) && inside(k->arg, buf, n));
        check(whole ? !k->cut : k->cut);
        if (whole && k->arg.len)
            check(eio_placeholder_num(k->arg) < EIO_MAX_ATTACHMENTS);
        if (whole && k->arg.len && k->arg.p[0] == '"') {
            char out[256];
            size_t got;
            int r = jscan_unescape(k->arg.p, k->arg.len, out, sizeof out, &got);
            check(r == 1 || (r == 0 && got + 3 > sizeof out));
        }
    }
    free(buf);
    return rc;
}

/* The input as an event's argument: it must come back unchanged. */
static void check_echo(const uint8_t *s, size_t n)
{
    if (n > MAX_ECHO)
        n = MAX_ECHO;
    size_t cap = eio_event_max(6, 4, n);
    char *frame = malloc(cap), *back = malloc(n ? n : 1);
    if (frame && back) {
        size_t len = eio_encode_event(frame, cap, "/admin", "chat", (const char *)s, n), got;
        struct eio_packet k;
        check(len > 0 && eio_decode(frame, len, true, &k) == 0);
        check(k.type == EIO_EVENT && k.event.len == 4 && k.nsp.len == 6 && k.arg.len);
        check(jscan_unescape(k.arg.p, k.arg.len, back, n, &got) >= 0 && got == n);
        check(n == 0 || memcmp(back, s, n) == 0);
    }
    free(frame);
    free(back);
}

/* One text message of the reassembly run: a packet while attachments are due ends the run (an error). */
static bool asm_text(const char *p, size_t n, struct sio_asm *a, bool *active, int *carriers)
{
    struct eio_packet k;
    const char *why = NULL;
    if (*active || eio_decode(p, n, true, &k) < 0 || k.eio != EIO_MESSAGE)
        return !*active;
    bool ours = k.event.p && k.event.len == 4 && memcmp(k.event.p, "chat", 4) == 0;
    int rc = sio_asm_begin(a, &k, ours, 0, &why);
    check(rc >= -1 && rc <= 1);
    if (rc < 0) {
        check(why && k.attachments > EIO_MAX_ATTACHMENTS);
        return false;
    }
    if (rc == 1) {
        check(a->want == k.attachments && a->want >= 1 && a->want <= EIO_MAX_ATTACHMENTS && a->got == 0);
        check(a->carrier < (int32_t)a->want && (a->carrier < 0 || ours));
        *active = true;
        *carriers = 0;
    }
    return true;
}

static void check_reassembly(const uint8_t *s, size_t n)
{
    struct sio_asm a = {0};
    bool active = false, done;
    int carriers = 0;
    const char *p = (const char *)s, *end = p + n;
    while (p < end) {
        const char *rs = memchr(p, EIO_RS, (size_t)(end - p)), *stop = rs ? rs : end;
        if (stop > p && *p == 'b') {
            if (!active) /* a stray attachment: the client's protocol error */
                return;
            carriers += sio_asm_attachment(&a, &done);
            check(a.got <= a.want && carriers <= 1);
            if (done) {
                check(a.got == a.want && carriers == (a.carrier >= 0));
                active = false;
            }
        } else if (!asm_text(p, (size_t)(stop - p), &a, &active, &carriers)) {
            return;
        }
        p = rs ? rs + 1 : end;
    }
}

/* The input's first bytes as an ack id: the emit and the binary head carry it, and decode back to it. */
static void check_ack_encoders(const uint8_t *s, size_t n)
{
    int64_t ack = 0;
    for (size_t i = 0; i < n && i < 6; i++)
        ack = ack * 256 + s[i];
    ack %= INT64_C(1000000000000000);
    char out[EIO_BINARY_HEAD_MAX(6, 4) + 200];
    struct eio_packet k;
    size_t len = eio_encode_binary_event(out, sizeof out, "/admin", "chat", ack);
    check(len > 0 && eio_decode(out, len, true, &k) == 0 && k.type == EIO_BINARY_EVENT && k.ack == ack);
    check(k.attachments == 1 && eio_placeholder_num(k.arg) == 0);
    len = eio_encode_emit(out, sizeof out, "/", "chat", ack, "x", 1);
    check(len > 0 && eio_decode(out, len, true, &k) == 0 && k.type == EIO_EVENT && k.ack == ack);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct eio_packet k;
    int rc = decode_at_end(data, size, true, &k);
    if (rc == 0) {
        for (size_t cut = 1; cut < size && cut < 512; cut++)
            check(decode_at_end(data, cut, false, &k) == 0);
    }
    check_echo(data, size);
    check_reassembly(data, size);
    check_ack_encoders(data, size);
    return 0;
}
