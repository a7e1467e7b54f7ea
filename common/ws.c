/* RFC 6455 WebSocket: frame reader and writer, masking, close payloads, UTF-8, handshake keys.
 *
 * The reader keeps only the position inside the current frame and message, never bytes: a frame header is
 * parsed from the caller's buffer in one go (at most 14 bytes, so waiting for all of it costs nothing) and then
 * committed together with the payload bytes that are already there. Until it is committed, nothing in the reader
 * or the buffer changes, so -2 simply means "call again with more bytes".
 *
 *   frame: |FIN RSV1-3 opcode|MASK len7|ext len (0, 2 or 8)|mask key (0 or 4)|payload ...........|
 *          ^ buf                                                             ^ first chunk's data
 *   event:  <--------------------- consumed by the first call ------------------------>|<- next calls ->
 *
 * Header checks run in the order the bytes arrive (first two bytes, then the extended length, then the key),
 * so a bad frame fails as soon as the offending byte is here, and 1009 never waits for a payload we will refuse.
 */
#include "common/ws.h"

#include "common/buf.h"

#include <limits.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#define B0_FIN    0x80u
#define B0_RSV    0x70u
#define B0_OPCODE 0x0fu
#define B1_MASK   0x80u
#define B1_LEN    0x7fu
#define LEN_16    126 /* len7 values announcing a 16-bit / 64-bit extended length */
#define LEN_64    127

/* A data chunk is capped so that header + chunk always fits the int we return. */
#define CHUNK_MAX ((size_t)INT_MAX - WS_MAX_HEADER)

/* A frame header parsed from the buffer but not yet committed to the reader. */
struct head {
    uint8_t opcode;
    bool fin, masked;
    uint8_t mask[4];
    uint64_t len;
    size_t size; /* header bytes, 2..14 */
};

/* ---- UTF-8 ----
 *
 * Between code points the state is WS_UTF8_ACCEPT. Inside one it packs what the next byte must be: how many
 * continuation bytes are still owed and the range the next one must fall in. The range is 80..BF except right
 * after the lead bytes whose second byte is restricted (RFC 3629 table): that is where overlongs (E0, F0),
 * surrogates (ED) and code points over U+10FFFF (F4) are cut off, so every bad sequence fails on its first bad
 * byte and every valid prefix stays alive. These states are >= 0x10000, so they never collide with 0 and 1. */

#define UTF8_STATE(need, lo, hi) ((uint32_t)(need) << 16 | (uint32_t)(lo) << 8 | (uint32_t)(hi))

static uint32_t utf8_lead(uint8_t c)
{
    if (c >= 0xc2 && c <= 0xdf)
        return UTF8_STATE(1, 0x80, 0xbf);
    if (c == 0xe0)
        return UTF8_STATE(2, 0xa0, 0xbf); /* no overlong 3-byte forms */
    if (c == 0xed)
        return UTF8_STATE(2, 0x80, 0x9f); /* no surrogates D800..DFFF */
    if (c >= 0xe1 && c <= 0xef)
        return UTF8_STATE(2, 0x80, 0xbf);
    if (c == 0xf0)
        return UTF8_STATE(3, 0x90, 0xbf); /* no overlong 4-byte forms */
    if (c >= 0xf1 && c <= 0xf3)
        return UTF8_STATE(3, 0x80, 0xbf);
    if (c == 0xf4)
        return UTF8_STATE(3, 0x80, 0x8f); /* nothing over U+10FFFF */
    return WS_UTF8_REJECT;                /* stray continuation, C0/C1 (overlong), F5..FF */
}

static uint32_t utf8_continue(uint32_t state, uint8_t c)
{
    uint32_t need = state >> 16, lo = (state >> 8) & 0xff, hi = state & 0xff;
    if (c < lo || c > hi)
        return WS_UTF8_REJECT;
    return need == 1 ? WS_UTF8_ACCEPT : UTF8_STATE(need - 1, 0x80, 0xbf);
}

/* Leading ASCII bytes of p[0..len), 8 at a time: chat text is mostly ASCII. */
static size_t ascii_run(const uint8_t *p, size_t len)
{
    size_t i = 0;
    for (uint64_t w; i + 8 <= len; i += 8) {
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080u)
            break;
    }
    while (i < len && p[i] < 0x80)
        i++;
    return i;
}

uint32_t ws_utf8_feed(uint32_t state, const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len && state != WS_UTF8_REJECT) {
        if (state != WS_UTF8_ACCEPT) {
            state = utf8_continue(state, p[i++]);
            continue;
        }
        i += ascii_run(p + i, len - i);
        if (i < len)
            state = utf8_lead(p[i++]);
    }
    return state;
}

/* ---- masking, close codes ---- */

void ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset)
{
    /* The key rotated to the offset, twice: 8 bytes XORed per step, and k[i & 7] == k[i & 3] for the tail. */
    uint8_t k[8];
    for (size_t i = 0; i < 8; i++)
        k[i] = mask[(offset + i) & 3];
    uint64_t key, w;
    memcpy(&key, k, 8);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        memcpy(&w, data + i, 8);
        w ^= key;
        memcpy(data + i, &w, 8);
    }
    for (; i < len; i++)
        data[i] ^= k[i & 7];
}

bool ws_close_code_valid(uint16_t code)
{
    if (code >= 3000 && code <= 4999)
        return true; /* libraries (3xxx) and applications (4xxx) */
    if (code < 1000 || code > 1014)
        return false; /* unused, or reserved / unassigned up to 2999, or >= 5000 */
    /* 1004 is reserved; 1005 and 1006 only describe a close locally and must never be sent. */
    return code != 1004 && code != WS_CLOSE_NO_STATUS && code != 1006;
}

/* ---- reader ---- */

static int fail(struct ws_reader *r, uint16_t code, const char *why)
{
    r->close_code = code;
    r->error = why;
    return -1;
}

static bool is_control(uint8_t opcode)
{
    return opcode & 0x08;
}

/* Everything the first two bytes decide. */
static int check_start(struct ws_reader *r, uint8_t b0, uint8_t b1)
{
    uint8_t op = b0 & B0_OPCODE;
    bool masked = b1 & B1_MASK;
    if (b0 & B0_RSV)
        return fail(r, WS_CLOSE_PROTOCOL, "reserved bits set"); /* we negotiate no extensions */
    if ((op > WS_OP_BINARY && op < WS_OP_CLOSE) || op > WS_OP_PONG)
        return fail(r, WS_CLOSE_PROTOCOL, "unknown opcode");
    if (r->role == WS_ROLE_SERVER && !masked)
        return fail(r, WS_CLOSE_PROTOCOL, "unmasked client frame");
    if (r->role == WS_ROLE_CLIENT && masked)
        return fail(r, WS_CLOSE_PROTOCOL, "masked server frame");
    if (is_control(op)) {
        if (!(b0 & B0_FIN))
            return fail(r, WS_CLOSE_PROTOCOL, "fragmented control frame");
        if ((b1 & B1_LEN) > WS_MAX_CONTROL)
            return fail(r, WS_CLOSE_PROTOCOL, "control frame too long");
        return 0;
    }
    if (op == WS_OP_CONT && !r->in_message)
        return fail(r, WS_CLOSE_PROTOCOL, "continuation without a message");
    if (op != WS_OP_CONT && r->in_message)
        return fail(r, WS_CLOSE_PROTOCOL, "new message inside a fragmented one");
    return 0;
}

static uint64_t read_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* The extended length: the shortest form is mandatory (RFC 6455 5.2), which also keeps every length one
 * encoding for whoever compares frames; the top bit of a 64-bit length must be 0. */
static int read_length(struct ws_reader *r, const uint8_t *p, size_t ext, uint64_t *len)
{
    *len = read_be(p, ext);
    if ((ext == 2 && *len < LEN_16) || (ext == 8 && *len <= 0xffff))
        return fail(r, WS_CLOSE_PROTOCOL, "non-minimal length");
    if (*len >> 63)
        return fail(r, WS_CLOSE_PROTOCOL, "length has the top bit set");
    return 0;
}

/* A message may not outgrow max_message; checked on the header so we never read a payload we will refuse. */
static int check_limit(struct ws_reader *r, const struct head *h)
{
    if (!r->max_message || is_control(h->opcode))
        return 0;
    uint64_t so_far = h->opcode == WS_OP_CONT ? r->msg_len : 0; /* <= max_message, checked before */
    if (h->len > r->max_message - so_far)
        return fail(r, WS_CLOSE_TOO_BIG, "message too big");
    return 0;
}

/* The header at buf[0..len) into *h: 0, -2 when incomplete, -1 when malformed or over the limit. */
static int parse_head(struct ws_reader *r, const uint8_t *buf, size_t len, struct head *h)
{
    if (len < 2)
        return -2;
    if (check_start(r, buf[0], buf[1]) < 0)
        return -1;
    uint8_t len7 = buf[1] & B1_LEN;
    size_t ext = len7 == LEN_16 ? 2 : len7 == LEN_64 ? 8 : 0;
    h->opcode = buf[0] & B0_OPCODE;
    h->fin = buf[0] & B0_FIN;
    h->masked = buf[1] & B1_MASK;
    h->len = len7;
    h->size = 2 + ext + (h->masked ? 4 : 0);
    if (len < 2 + ext)
        return -2;
    if (ext && read_length(r, buf + 2, ext, &h->len) < 0)
        return -1;
    if (check_limit(r, h) < 0)
        return -1;
    if (len < h->size)
        return -2;
    if (h->masked)
        memcpy(h->mask, buf + 2 + ext, 4);
    return 0;
}

/* Close payload: none (1005 to the caller), or a valid code then a UTF-8 reason. */
static int parse_close(struct ws_reader *r, const uint8_t *p, size_t n, struct ws_event *ev)
{
    ev->close_code = WS_CLOSE_NO_STATUS;
    ev->reason = "";
    if (n == 0)
        return 0;
    if (n == 1)
        return fail(r, WS_CLOSE_PROTOCOL, "close payload of 1 byte");
    uint16_t code = (uint16_t)(p[0] << 8 | p[1]);
    if (!ws_close_code_valid(code))
        return fail(r, WS_CLOSE_PROTOCOL, "invalid close code");
    if (ws_utf8_feed(WS_UTF8_ACCEPT, p + 2, n - 2) != WS_UTF8_ACCEPT)
        return fail(r, WS_CLOSE_BAD_DATA, "invalid utf-8 in close reason");
    ev->close_code = code;
    ev->reason = (const char *)p + 2;
    ev->reason_len = n - 2;
    return 0;
}

/* A whole control frame, or -2 until all of it is here (at most 131 bytes). */
static int control_frame(struct ws_reader *r, uint8_t *buf, size_t len, const struct head *h, struct ws_event *ev)
{
    size_t n = (size_t)h->len, total = h->size + n;
    if (len < total)
        return -2;
    uint8_t *p = buf + h->size;
    if (h->masked)
        ws_mask(p, n, h->mask, 0);
    *ev = (struct ws_event){.opcode = h->opcode, .data = p, .len = n};
    if (h->opcode == WS_OP_PING) {
        ev->type = WS_EV_PING;
    } else if (h->opcode == WS_OP_PONG) {
        ev->type = WS_EV_PONG;
    } else {
        ev->type = WS_EV_CLOSE;
        if (parse_close(r, p, n, ev) < 0)
            return -1;
    }
    return (int)total;
}

/* Commit a data frame's header: from now on its payload arrives through data_chunk. */
static void begin_frame(struct ws_reader *r, const struct head *h)
{
    r->in_frame = true;
    r->frame_opcode = h->opcode;
    r->frame_fin = h->fin;
    r->frame_masked = h->masked;
    memcpy(r->mask, h->mask, 4);
    r->frame_left = h->len;
    r->frame_pos = 0;
    if (h->opcode == WS_OP_CONT)
        return;
    r->in_message = true;
    r->msg_opcode = h->opcode;
    r->msg_len = 0;
    r->utf8_state = WS_UTF8_ACCEPT;
}

/* Text is checked chunk by chunk, so a bad byte fails now rather than after the rest of a long message. */
static int check_text(struct ws_reader *r, const uint8_t *p, size_t n, bool last)
{
    r->utf8_state = ws_utf8_feed(r->utf8_state, p, n);
    if (r->utf8_state == WS_UTF8_REJECT)
        return fail(r, WS_CLOSE_BAD_DATA, "invalid utf-8");
    if (last && r->utf8_state != WS_UTF8_ACCEPT)
        return fail(r, WS_CLOSE_BAD_DATA, "invalid utf-8 (truncated)");
    return 0;
}

/* The next chunk of the current data frame from p[0..avail); skip is what the call consumed before p (the
 * header, when this is the frame's first chunk). -2 when no payload byte is here and the frame wants some. */
static int data_chunk(struct ws_reader *r, uint8_t *p, size_t avail, size_t skip, struct ws_event *ev)
{
    size_t n = avail < r->frame_left ? avail : (size_t)r->frame_left;
    if (n > CHUNK_MAX)
        n = CHUNK_MAX;
    if (n == 0 && r->frame_left > 0)
        return -2;
    if (r->frame_masked)
        ws_mask(p, n, r->mask, r->frame_pos);
    bool first = r->frame_pos == 0 && r->frame_opcode != WS_OP_CONT;
    r->frame_pos += n;
    r->frame_left -= n;
    r->msg_len += n;
    bool last = r->frame_left == 0 && r->frame_fin;
    if (r->msg_opcode == WS_OP_TEXT && check_text(r, p, n, last) < 0)
        return -1;
    r->in_frame = r->frame_left > 0;
    r->in_message = !last;
    *ev = (struct ws_event){
        .type = WS_EV_DATA, .opcode = r->msg_opcode, .first = first, .last = last, .data = p, .len = n};
    return (int)(skip + n);
}

int ws_reader_next(struct ws_reader *r, uint8_t *buf, size_t len, struct ws_event *ev)
{
    if (r->error)
        return -1; /* sticky: the connection is failing, its bytes mean nothing any more */
    if (r->in_frame)
        return data_chunk(r, buf, len, 0, ev);
    struct head h = {0};
    int rc = parse_head(r, buf, len, &h);
    if (rc < 0)
        return rc;
    if (is_control(h.opcode))
        return control_frame(r, buf, len, &h, ev);
    /* A header without any of its payload stays unconsumed, so the reader's state never holds a frame that
     * produced no event; an empty frame is consumed whole. */
    if (h.len > 0 && len == h.size)
        return -2;
    begin_frame(r, &h);
    return data_chunk(r, buf + h.size, len - h.size, h.size, ev);
}

/* ---- writer ---- */

size_t ws_frame_header(uint8_t *out, uint8_t opcode, bool fin, uint64_t len, const uint8_t *mask)
{
    size_t n = 2;
    out[0] = (uint8_t)((fin ? B0_FIN : 0) | (opcode & B0_OPCODE));
    out[1] = mask ? B1_MASK : 0;
    if (len < LEN_16) {
        out[1] |= (uint8_t)len;
    } else if (len <= 0xffff) {
        out[1] |= LEN_16;
        for (size_t i = 0; i < 2; i++)
            out[n++] = (uint8_t)(len >> (8 * (1 - i)));
    } else {
        out[1] |= LEN_64;
        for (size_t i = 0; i < 8; i++)
            out[n++] = (uint8_t)(len >> (8 * (7 - i)));
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

size_t ws_frame_header_len(const uint8_t *frame)
{
    uint8_t l = frame[1] & 0x7f;
    return l < 126 ? 2 : l == 126 ? 4 : 10;
}

struct slice *ws_frame_slice(uint8_t opcode, const void *payload, size_t len)
{
    uint8_t head[WS_MAX_HEADER];
    size_t h = ws_frame_header(head, opcode, true, len, NULL);
    if (len > SIZE_MAX - h)
        return NULL;
    struct slice *s = slice_new(h + len);
    if (!s)
        return NULL;
    memcpy(s->data, head, h);
    if (len)
        memcpy(s->data + h, payload, len);
    return s;
}

size_t ws_close_payload(uint8_t out[WS_MAX_CONTROL], uint16_t code, const char *reason)
{
    enum { ROOM = WS_MAX_CONTROL - 2 };
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    size_t n = reason ? strnlen(reason, ROOM + 1) : 0;
    if (n > ROOM) {
        /* Cut before the sequence that straddles the limit: the peer fails a close with bad UTF-8 (1007). */
        n = ROOM;
        while (n > 0 && ((uint8_t)reason[n] & 0xc0) == 0x80)
            n--;
    }
    if (n)
        memcpy(out + 2, reason, n);
    return 2 + n;
}

/* ---- handshake ---- */

static bool is_base64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* 22 base64 characters and "==" is exactly the shape of 16 encoded bytes. Checked by hand because
 * EVP_DecodeBlock skips whitespace and ignores padding when it counts bytes. The 4 unused bits of the 22nd
 * character are not checked, as in most servers (the nonce is opaque to us). */
static bool key_valid(const char *key, size_t key_len)
{
    if (key_len != 24 || key[22] != '=' || key[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!is_base64_char(key[i]))
            return false;
    return true;
}

int ws_accept_key(const char *key, size_t key_len, char out[WS_ACCEPT_LEN + 1])
{
    if (!key_valid(key, key_len))
        return -1;
    char in[24 + sizeof WS_GUID - 1];
    memcpy(in, key, 24);
    memcpy(in + 24, WS_GUID, sizeof WS_GUID - 1);
    unsigned char sha[20];
    unsigned int sha_len = 0;
    if (!EVP_Digest(in, sizeof in, sha, &sha_len, EVP_sha1(), NULL) || sha_len != sizeof sha)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, sha, sizeof sha); /* 28 chars and a NUL */
    return 0;
}

/* splitmix64: only for the unlikely case where the CSPRNG fails. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

void ws_client_key(char out[25])
{
    unsigned char nonce[16];
    if (RAND_bytes(nonce, sizeof nonce) != 1) {
        /* The key is a nonce against caching proxies, not a secret: time and a counter still do that job. */
        static _Thread_local uint64_t counter;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t a = mix64(((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ ++counter);
        uint64_t b = mix64(a ^ counter);
        memcpy(nonce, &a, 8);
        memcpy(nonce + 8, &b, 8);
    }
    EVP_EncodeBlock((unsigned char *)out, nonce, sizeof nonce); /* 24 chars and a NUL */
}
