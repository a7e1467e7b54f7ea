/* libFuzzer target for refserver/refsio.c: refsio_parse reads every text frame a Socket.IO client sends to refserver.
 * (The fuzz build links common/, loadgen/ and lb/ only, so the module is compiled in here.)
 *
 * Input: the bytes of one text frame, parsed from an exact-size allocation so ASan flags a read past len.
 * Invariants abort():
 *  - the answer is 0 or -1, and parsing is deterministic;
 *  - on 0: spans lie inside the input, data runs to its end, the namespace starts with '/' and holds no comma;
 *    a MESSAGE's payload is empty or valid JSON; an EVENT has at least two bytes before its JSON (session.c
 *    writes "42" there to relay it without the namespace and ack id);
 *  - refsio_payload_next (a POST body of the polling transport) splits the input into spans that lie inside it, in
 *    order, one more than the separators it holds, never containing a separator, and each parses as a frame does;
 *  - refsio_json_valid agrees with jansson: whatever jansson accepts with at most REFSIO_JSON_DEPTH brackets and
 *    no NUL byte (jansson stops reading at one) is valid. */
#include "refserver/refsio.c"

#include <jansson.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static bool inside(const char *p, size_t n, const char *buf, size_t len)
{
    return p >= buf && (size_t)(p - buf) <= len && n <= len - (size_t)(p - buf);
}

static void check_packet(const char *in, size_t size, const struct refsio_packet *pk)
{
    check(pk->eio <= REFSIO_EIO_NOOP);
    check(inside(pk->data, pk->data_len, in, size) && pk->data + pk->data_len == in + size);
    if (pk->eio != REFSIO_EIO_MESSAGE)
        return;
    check(pk->type <= REFSIO_BINARY_ACK);
    check(pk->nsp_len >= 1 && pk->nsp_len <= REFSIO_NSP_MAX && pk->nsp[0] == '/');
    check(pk->nsp_len == 1 || inside(pk->nsp, pk->nsp_len, in, size));
    for (size_t i = 0; i < pk->nsp_len; i++)
        check(pk->nsp[i] != ',');
    check(pk->ack < 1000000000000000ull);
    check(pk->data_len == 0 || refsio_json_valid(pk->data, pk->data_len));
    if (pk->type == REFSIO_EVENT)
        check(pk->data - in >= 2 && pk->data_len > 0);
}

static void check_json(const char *in, size_t size)
{
    size_t brackets = 0;
    for (size_t i = 0; i < size; i++)
        brackets += in[i] == '[' || in[i] == '{';
    if (brackets > REFSIO_JSON_DEPTH || memchr(in, 0, size))
        return;
    json_error_t err;
    json_t *j = json_loadb(in, size, JSON_DECODE_ANY, &err);
    if (j)
        check(refsio_json_valid(in, size));
    json_decref(j);
}

static void check_payload(const char *in, size_t size)
{
    const char *pos = in, *pkt, *prev_end = in;
    size_t plen, count = 0, seps = 0;
    bool started = false;
    for (size_t i = 0; i < size; i++)
        seps += in[i] == REFSIO_SEPARATOR;
    while (refsio_payload_next(&pos, in + size, &started, &pkt, &plen)) {
        check(inside(pkt, plen, in, size) && pkt >= prev_end && !memchr(pkt, REFSIO_SEPARATOR, plen));
        check(count == 0 ? pkt == in : pkt == prev_end + 1 && prev_end[0] == REFSIO_SEPARATOR);
        prev_end = pkt + plen;
        check(++count <= seps + 1);
        struct refsio_packet pk;
        if (refsio_parse(pkt, plen, &pk) == 0)
            check_packet(pkt, plen, &pk);
    }
    check(count == seps + 1 && prev_end == in + size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    if (size)
        memcpy(in, data, size);
    struct refsio_packet pk, again;
    int rc = refsio_parse(in, size, &pk);
    check(rc == 0 || rc == -1);
    check(refsio_parse(in, size, &again) == rc);
    if (rc == 0)
        check_packet(in, size, &pk);
    check_json(in, size);
    check_payload(in, size);
    free(in);
    return 0;
}
