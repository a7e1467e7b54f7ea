/* Differential libFuzzer target: refserver's refsio_parse against loadgen's sio_decode, and their two polling-payload
 * splitters, fed the same bytes. It lives only while the two codecs do; it is what makes merging them safe.
 *
 * Input: any bytes, taken as one text frame (both decoders, whole) and as one polling body (both splitters).
 * Invariants abort():
 *  - both accept or both refuse the frame;
 *  - when both accept: the same Engine.IO type, and for a MESSAGE the same Socket.IO type, namespace bytes, ack id
 *    (present or not, and its value), attachment count and JSON span;
 *  - both splitters give the same items in the same order and refuse at the same item (an empty one). */
#include "loadgen/sio.h"
#include "refserver/refsio.c"

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void differ(const char *what, const char *in, size_t len)
{
    fprintf(stderr, "siodiff: %s on \"", what);
    for (size_t i = 0; i < len && i < 200; i++)
        fprintf(stderr, (unsigned char)in[i] < 0x20 || (unsigned char)in[i] >= 0x7f ? "\\x%02x" : "%c",
                (unsigned char)in[i]);
    fprintf(stderr, "\"\n");
    abort();
}

static void compare_frame(const char *in, size_t len)
{
    struct refsio_packet r;
    struct sio_packet s;
    int rr = refsio_parse(in, len, &r), sr = sio_decode(in, len, true, &s);
    if (rr != sr)
        differ(rr == 0 ? "refsio accepts, sio refuses" : "sio accepts, refsio refuses", in, len);
    if (rr != 0)
        return;
    if (r.eio != s.eio)
        differ("engine.io type", in, len);
    if (r.data != s.data.p || r.data_len != s.data.len)
        differ("data span", in, len);
    if (r.eio != REFSIO_EIO_MESSAGE)
        return;
    if (r.type != s.type)
        differ("socket.io type", in, len);
    if (r.nsp_len != s.nsp.len || memcmp(r.nsp, s.nsp.p, r.nsp_len) != 0)
        differ("namespace", in, len);
    if (r.has_ack != (s.ack >= 0) || (r.has_ack && r.ack != (uint64_t)s.ack))
        differ("ack id", in, len);
    if (r.attachments != s.attachments)
        differ("attachments", in, len);
}

static void compare_payload(const char *in, size_t len)
{
    const char *pos = in, *pkt;
    size_t off = 0, pkt_len;
    bool started = false;
    for (int n = 0; n < 4096; n++) {
        bool rmore = refsio_payload_next(&pos, in + len, &started, &pkt, &pkt_len);
        struct sio_item it;
        int sr = sio_payload_next(in, len, &off, &it);
        /* refsio hands an empty item out and lets refsio_parse refuse it; sio refuses it itself */
        int rr = !rmore ? 0 : pkt_len == 0 ? -1 : 1;
        if (sr == -1 && rr == 1 && pkt[0] == 'b' && sio_base64_len(pkt + 1, pkt_len - 1) < 0)
            return; /* a 'b' item that is not base64: sio checks it here, refserver later (session.c) */
        if (rr != sr)
            differ(rr == -1   ? "payload: refsio empty item, sio not"
                   : sr == -1 ? "payload: sio refuses an item refsio gives"
                              : "payload: item count",
                   in, len);
        if (rr != 1)
            return;
        if (pkt != it.text.p || pkt_len != it.text.len)
            differ("payload: item span", in, len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    compare_frame(buf, size);
    compare_payload(buf, size);
    free(buf);
    return 0;
}
