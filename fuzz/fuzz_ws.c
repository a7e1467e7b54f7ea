/* libFuzzer target for common/ws.c: the frame reader in both roles, fed in chunks, plus encoder round trips.
 *
 * Input: byte 0 seeds the chunk sizes (0: everything in one read), byte 1 bounds them, the rest is the byte
 * stream a peer sent. Each call sees only the unread bytes, copied into an exact-size allocation so ASan flags
 * any read past len. Invariants abort(). The chunked run and the one-read run must agree on every completed
 * message, every control frame and the final close code: chunking is the socket's business, not the peer's. */
#include "common/buf.h"
#include "common/ws.h"

#include <stdlib.h>
#include <string.h>

#define MAX_MESSAGE (1u << 20)
#define TEXT_CHECK  4096 /* text messages up to this size are re-validated whole */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static bool within(const uint8_t *p, size_t n, const uint8_t *buf, size_t len)
{
    return n == 0 || (p >= buf && n <= len && (size_t)(p - buf) <= len - n);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3u;
    return h;
}

/* ---- a reference UTF-8 check, written differently from ws.c's: decode each sequence whole, then judge the
 * code point. A truncated tail is "incomplete" when completing it with 80s or with BFs gives a valid one (the
 * smallest and the largest completion: one of them avoids overlong, surrogate and range errors if any does). */

enum { REF_VALID, REF_INVALID, REF_INCOMPLETE };

static size_t seq_len(uint8_t c)
{
    return c < 0x80 ? 1 : c < 0xc0 ? 0 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : c < 0xf8 ? 4 : 0;
}

static bool seq_valid(const uint8_t *q, size_t need)
{
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    uint32_t cp = need == 1 ? q[0] : q[0] & (0x7fu >> need);
    for (size_t k = 1; k < need; k++) {
        if ((q[k] & 0xc0) != 0x80)
            return false;
        cp = cp << 6 | (q[k] & 0x3f);
    }
    return cp >= min[need] && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff);
}

static int ref_utf8(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t need = seq_len(p[i]);
        if (need == 0)
            return REF_INVALID;
        if (i + need <= n) {
            if (!seq_valid(p + i, need))
                return REF_INVALID;
            i += need;
            continue;
        }
        uint8_t lo[4] = {0x80, 0x80, 0x80, 0x80}, hi[4] = {0xbf, 0xbf, 0xbf, 0xbf};
        memcpy(lo, p + i, n - i);
        memcpy(hi, p + i, n - i);
        return seq_valid(lo, need) || seq_valid(hi, need) ? REF_INCOMPLETE : REF_INVALID;
    }
    return REF_VALID;
}

static void check_utf8(const uint8_t *p, size_t n)
{
    uint32_t st = ws_utf8_feed(WS_UTF8_ACCEPT, p, n);
    int ref = ref_utf8(p, n);
    check((st == WS_UTF8_ACCEPT) == (ref == REF_VALID) && (st == WS_UTF8_REJECT) == (ref == REF_INVALID));
}

/* What one run over the stream saw, and the message being reassembled. */
struct run {
    struct ws_reader r;
    uint64_t digest, msg_hash;
    bool in_msg;
    uint8_t msg_opcode;
    uint8_t text[TEXT_CHECK];
    size_t msg_len;
};

static void on_data(struct run *u, const struct ws_event *ev)
{
    check(ev->opcode == WS_OP_TEXT || ev->opcode == WS_OP_BINARY);
    check(ev->first == !u->in_msg);
    if (ev->first) {
        u->in_msg = true;
        u->msg_opcode = ev->opcode;
        u->msg_hash = 0xcbf29ce484222325u;
        u->msg_len = 0;
    }
    check(ev->opcode == u->msg_opcode);
    if (ev->opcode == WS_OP_TEXT && u->msg_len + ev->len <= TEXT_CHECK)
        memcpy(u->text + u->msg_len, ev->data, ev->len);
    u->msg_len += ev->len;
    check(u->msg_len <= MAX_MESSAGE);
    u->msg_hash = fnv(u->msg_hash, ev->data, ev->len);
    bool small = u->msg_len <= TEXT_CHECK;
    uint32_t st = small && ev->opcode == WS_OP_TEXT ? ws_utf8_feed(WS_UTF8_ACCEPT, u->text, u->msg_len) : 0;
    check(st != WS_UTF8_REJECT); /* the reader fails fast, so no delivered text is already invalid */
    if (!ev->last)
        return;
    check(st == WS_UTF8_ACCEPT);
    u->in_msg = false;
    u->digest = fnv(u->digest, &u->msg_opcode, 1);
    u->digest = fnv(u->digest, &u->msg_hash, sizeof u->msg_hash);
}

static void on_control(struct run *u, const struct ws_event *ev, const uint8_t *win, size_t n)
{
    check(ev->len <= WS_MAX_CONTROL && within(ev->data, ev->len, win, n));
    if (ev->type == WS_EV_CLOSE) {
        check(ev->close_code == WS_CLOSE_NO_STATUS ? ev->len == 0 : ws_close_code_valid(ev->close_code));
        check(ev->reason_len == 0 || within((const uint8_t *)ev->reason, ev->reason_len, win, n));
        check(ws_utf8_feed(WS_UTF8_ACCEPT, (const uint8_t *)ev->reason, ev->reason_len) == WS_UTF8_ACCEPT);
        u->digest = fnv(u->digest, &ev->close_code, sizeof ev->close_code);
    }
    u->digest = fnv(u->digest, &ev->type, sizeof ev->type);
    u->digest = fnv(u->digest, ev->data, ev->len);
}

/* The parts of the reader a -2 must leave alone. */
static bool same_state(const struct ws_reader *a, const struct ws_reader *b)
{
    return a->in_frame == b->in_frame && a->in_message == b->in_message && a->frame_left == b->frame_left &&
           a->frame_pos == b->frame_pos && a->msg_len == b->msg_len && a->utf8_state == b->utf8_state &&
           a->error == b->error;
}

/* After -1: a close code we may send, and a sticky error. The failing call itself may have unmasked bytes it
 * then refused (a bad UTF-8 byte mid-chunk); later calls touch nothing. */
static void failed(struct run *u, uint8_t *win, size_t n)
{
    uint16_t c = u->r.close_code;
    check(u->r.error && (c == WS_CLOSE_PROTOCOL || c == WS_CLOSE_BAD_DATA || c == WS_CLOSE_TOO_BIG));
    uint8_t *copy = malloc(n ? n : 1);
    if (!copy)
        return;
    if (n)
        memcpy(copy, win, n);
    struct ws_event ev;
    check(ws_reader_next(&u->r, win, n, &ev) == -1 && u->r.close_code == c);
    check(n == 0 || memcmp(copy, win, n) == 0);
    free(copy);
}

/* One call on the unread bytes win[0..n) (an exact-size copy of orig); returns the reader's answer. */
static int step(struct run *u, uint8_t *win, const uint8_t *orig, size_t n)
{
    struct ws_reader before = u->r;
    struct ws_event ev;
    int rc = ws_reader_next(&u->r, win, n, &ev);
    check(rc == -1 || rc == -2 || (rc > 0 && (size_t)rc <= n));
    if (rc == -1) {
        failed(u, win, n);
        return rc;
    }
    size_t used = rc > 0 ? (size_t)rc : 0;
    check(n == used || memcmp(win + used, orig + used, n - used) == 0); /* only consumed bytes change */
    if (rc == -2)
        check(same_state(&before, &u->r));
    if (rc < 0)
        return rc;
    if (ev.type == WS_EV_DATA) {
        check(within(ev.data, ev.len, win, used));
        on_data(u, &ev);
    } else {
        on_control(u, &ev, win, used);
    }
    return rc;
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static size_t next_chunk(uint32_t *seed, size_t bound)
{
    *seed ^= *seed << 13;
    *seed ^= *seed >> 17;
    *seed ^= *seed << 5;
    return 1 + *seed % bound;
}

/* Feed stream[0..len) in chunks until the reader fails or wants bytes that will never come. */
static void run_stream(struct run *u, const uint8_t *stream, size_t len, uint8_t seed, uint8_t bound)
{
    uint32_t s = seed ? seed * 2654435761u : 0;
    size_t pos = 0, avail = seed ? 0 : len;
    for (;;) {
        size_t n = avail - pos;
        uint8_t *win = malloc(n ? n : 1);
        if (!win)
            return;
        if (n)
            memcpy(win, stream + pos, n);
        int rc = step(u, win, stream + pos, n);
        free(win);
        if (rc > 0)
            pos += (size_t)rc;
        else if (rc == -1 || avail == len)
            return;
        else
            avail += min_size(next_chunk(&s, 1 + (size_t)bound * 4), len - avail);
    }
}

/* One whole frame must decode to exactly its payload, or fail with 1007 when it is text that is not UTF-8. */
static void decode_one(enum ws_role role, uint8_t opcode, uint8_t *frame, size_t n, const uint8_t *payload, size_t len)
{
    struct ws_reader r = {.role = role};
    struct ws_event ev;
    int rc = ws_reader_next(&r, frame, n, &ev);
    if (opcode == WS_OP_TEXT && ws_utf8_feed(WS_UTF8_ACCEPT, payload, len) != WS_UTF8_ACCEPT) {
        check(rc == -1 && r.close_code == WS_CLOSE_BAD_DATA);
        return;
    }
    check(rc > 0 && (size_t)rc == n && ev.type == WS_EV_DATA && ev.opcode == opcode && ev.first && ev.last);
    check(ev.len == len && (len == 0 || memcmp(ev.data, payload, len) == 0));
}

/* The encoder's output, masked (client to server) and unmasked (server to client), read back. */
static void roundtrip_frames(const uint8_t *payload, size_t len, const uint8_t mask[4])
{
    uint8_t *f = malloc(WS_MAX_HEADER + len);
    if (!f)
        return;
    for (uint8_t op = WS_OP_TEXT; op <= WS_OP_BINARY; op++) {
        size_t h = ws_frame_header(f, op, true, len, mask);
        if (len)
            memcpy(f + h, payload, len);
        ws_mask(f + h, len, mask, 0);
        decode_one(WS_ROLE_SERVER, op, f, h + len, payload, len);
        struct slice *s = ws_frame_slice(op, payload, len);
        if (!s)
            continue;
        check(s->len == len + ws_frame_header(f, op, true, len, NULL));
        decode_one(WS_ROLE_CLIENT, op, (uint8_t *)s->data, s->len, payload, len);
        slice_unref(s);
    }
    free(f);
}

/* Close payloads stay within 125 bytes and never cut a valid reason inside a character; keys. */
static void roundtrip_close_and_key(const uint8_t *payload, size_t len, uint16_t code)
{
    char reason[300];
    size_t n = min_size(len, sizeof reason - 1);
    memcpy(reason, payload, n);
    reason[n] = '\0';
    uint8_t out[WS_MAX_CONTROL];
    size_t m = ws_close_payload(out, code, reason);
    check(m >= 2 && m <= WS_MAX_CONTROL && out[0] == code >> 8 && out[1] == (code & 0xff));
    check(memcmp(out + 2, reason, m - 2) == 0);
    if (ws_utf8_feed(WS_UTF8_ACCEPT, (const uint8_t *)reason, strlen(reason)) == WS_UTF8_ACCEPT)
        check(ws_utf8_feed(WS_UTF8_ACCEPT, out + 2, m - 2) == WS_UTF8_ACCEPT);
    char accept[WS_ACCEPT_LEN + 1];
    if (len >= 24 && ws_accept_key((const char *)payload, 24, accept) == 0)
        check(strlen(accept) == WS_ACCEPT_LEN && payload[22] == '=' && payload[23] == '=');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const uint8_t *stream = data + 2;
    size_t len = size - 2;
    static struct run chunked, whole, client;
    chunked = (struct run){.r = {.role = WS_ROLE_SERVER, .max_message = MAX_MESSAGE}};
    whole = chunked;
    client = (struct run){.r = {.role = WS_ROLE_CLIENT, .max_message = MAX_MESSAGE}};
    run_stream(&chunked, stream, len, data[0], data[1]);
    run_stream(&whole, stream, len, 0, 0);
    check(chunked.digest == whole.digest && chunked.r.close_code == whole.r.close_code);
    run_stream(&client, stream, len, data[0], data[1]);
    uint8_t mask[4] = {data[0], data[1], (uint8_t)(data[0] ^ 0x5a), (uint8_t)(data[1] ^ 0xa5)};
    check_utf8(stream, len);
    roundtrip_frames(stream, len, mask);
    roundtrip_close_and_key(stream, len, (uint16_t)(data[0] << 8 | data[1]));
    return 0;
}
