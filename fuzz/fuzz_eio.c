/* libFuzzer target for common/eio.c and common/jscan.c, the Engine.IO/Socket.IO codec of refserver and loadgen.
 *
 * Input: any bytes, taken as one text message, as a polling body, as JSON, and as the makings of an id and an open
 * packet. Each is read from an exact-size allocation so ASan flags a read past len. Invariants abort():
 *  - eio_decode answers 0 or -1, deterministically; on 0 the spans lie inside the input, data runs to its end, the
 *    namespace starts with '/', holds no ',' and is at most EIO_NSP_MAX; a MESSAGE's payload is empty or valid JSON;
 *    an EVENT has at least two bytes before its JSON (refserver writes "42" there to relay it);
 *  - a message that decodes whole decodes as a head (whole = false) at every cut of it;
 *  - eio_payload_next splits the input into spans that lie inside it, in order, never holding a separator, ending
 *    at the end or at its first empty item;
 *  - jscan_valid agrees with jansson: whatever jansson accepts with at most JSCAN_DEPTH values nested and no NUL
 *    byte (jansson stops reading at one) is valid;
 *  - round trips: eio_make_id then eio_parse_id gives the bytes back; eio_open_packet decodes and eio_open_parse
 *    gives the sid and intervals back. */
#include "common/eio.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static bool inside(struct jscan_span sp, const char *buf, size_t len)
{
    return sp.p >= buf && (size_t)(sp.p - buf) <= len && sp.len <= len - (size_t)(sp.p - buf);
}

static void check_packet(const char *in, size_t size, const struct eio_packet *pk)
{
    check(pk->eio >= EIO_OPEN && pk->eio <= EIO_NOOP);
    check(inside(pk->data, in, size) && pk->data.p + pk->data.len == in + size);
    if (pk->eio != EIO_MESSAGE)
        return;
    check(pk->type >= EIO_CONNECT && pk->type <= EIO_BINARY_ACK);
    check(pk->nsp.len >= 1 && pk->nsp.len <= EIO_NSP_MAX && pk->nsp.p[0] == '/');
    check(pk->nsp.len == 1 || inside(pk->nsp, in, size));
    check(!memchr(pk->nsp.p, ',', pk->nsp.len));
    check(pk->ack >= -1 && pk->ack < 1000000000000000ll);
    check(pk->data.len == 0 || jscan_valid(pk->data.p, pk->data.len));
    if (pk->type == EIO_EVENT)
        check(pk->data.p - in >= 2 && pk->data.len > 0);
}

/* Every head of a message that decodes whole decodes too (a valid message's head is never malformed). */
static void check_heads(const char *in, size_t size)
{
    for (size_t n = 1; n < size && n < 64; n++) {
        struct eio_packet head;
        check(eio_decode(in, n, false, &head) == 0 && head.cut);
    }
}

static void check_json(const char *in, size_t size)
{
    size_t brackets = 0;
    for (size_t i = 0; i < size; i++)
        brackets += in[i] == '[' || in[i] == '{';
    if (brackets >= JSCAN_DEPTH || memchr(in, 0, size)) /* a scalar inside counts one more */
        return;
    json_error_t err;
    json_t *j = json_loadb(in, size, JSON_DECODE_ANY, &err);
    if (j)
        check(jscan_valid(in, size));
    json_decref(j);
}

static void check_payload(const char *in, size_t size)
{
    size_t off = 0, count = 0;
    const char *prev_end = NULL;
    struct eio_item it;
    int rc;
    while ((rc = eio_payload_next(in, size, &off, &it)) == 1) {
        check(inside(it.text, in, size) && it.text.len > 0 && !memchr(it.text.p, EIO_RS, it.text.len));
        check(prev_end ? it.text.p == prev_end + 1 && prev_end[0] == EIO_RS : it.text.p == in);
        check(it.binary == (it.text.p[0] == 'b'));
        prev_end = it.text.p + it.text.len;
        check(++count <= size);
    }
    check(rc == 0 ? prev_end == in + size : it.text.len == 0);
}

static void check_round_trips(const uint8_t *data, size_t size)
{
    if (size < EIO_ID_RANDOM + 8)
        return;
    char id[EIO_ID_LEN + 1], pkt[EIO_OPEN_MAX];
    uint8_t back[EIO_ID_RANDOM];
    eio_make_id(data, id);
    check(eio_parse_id(id, EIO_ID_LEN, back) && memcmp(back, data, EIO_ID_RANDOM) == 0);
    uint32_t interval, timeout;
    memcpy(&interval, data + EIO_ID_RANDOM, 4);
    memcpy(&timeout, data + EIO_ID_RANDOM + 4, 4);
    size_t n = eio_open_packet(pkt, id, interval, timeout, size, data[0] & 1);
    struct eio_packet pk;
    struct eio_open o;
    const char *why;
    check(n > 0 && eio_decode(pkt, n, true, &pk) == 0 && pk.eio == EIO_OPEN);
    check(eio_open_parse(pk.data.p, pk.data.len, true, &o, &why) == 0);
    check(o.sid.len == EIO_ID_LEN && memcmp(o.sid.p, id, EIO_ID_LEN) == 0);
    check(o.ping_interval == interval && o.ping_timeout == timeout && o.upgrade_ws == (data[0] & 1));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    if (size)
        memcpy(in, data, size);
    struct eio_packet pk, again;
    int rc = eio_decode(in, size, true, &pk);
    check(rc == 0 || rc == -1);
    check(eio_decode(in, size, true, &again) == rc);
    if (rc == 0) {
        check_packet(in, size, &pk);
        check_heads(in, size);
    }
    check_json(in, size);
    check_payload(in, size);
    check_round_trips(data, size);
    free(in);
    return 0;
}
