/* libFuzzer target for refserver/sioadapter.c: sioa_decode reads every broadcast another node (Node or ours)
 * publishes on Redis, and sioa_encode reads every event a client sends. (The fuzz build links common/, loadgen/ and
 * lb/ only, so the module is compiled in here.)
 *
 * Input: one Redis message, decoded from an exact-size allocation so ASan flags a read past len; the same bytes are
 * also JSON for the encoder and a channel name. Invariants abort():
 *  - sioa_decode answers 0 or -1, and -1 leaves the JSON buffer as it was;
 *  - on 0: every span (uid, nsp, attachments, rooms, except) lies inside the message, the JSON is valid (jansson,
 *    which also insists on UTF-8) and has exactly one placeholder per attachment;
 *  - decoding is a fixpoint: re-encoding the JSON, attachments, uid, nsp, rooms and except succeeds, decoding that
 *    gives the same JSON and fields, and encoding once more gives the same bytes;
 *  - the input read as JSON by sioa_encode (with two attachments): when it encodes, the result decodes, and from
 *    there on decoding is a fixpoint as above;
 *  - sioa_channel_room's spans lie inside the channel, and sioa_channel rebuilds the channel from them;
 *  - sioa_decode_request (the input as a request, JSON or msgpack) answers 0 or -1, -1 leaves its JSON buffer as it
 *    was, and on 0 every span lies inside the message or the scratch buffer (JSON requests), the packet's JSON is
 *    valid, and an ack answer built from it with sioa_put_json_first does not fail. */
#include "refserver/sioadapter.c"

#include <jansson.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(int line)
{
    fprintf(stderr, "fuzz_sioadapter.c:%d: invariant broken\n", line);
    abort();
}

#define check(ok) ((ok) ? (void)0 : fail(__LINE__))

static bool inside(const void *p, size_t n, const void *buf, size_t len)
{
    const char *c = p, *b = buf;
    return n == 0 || (c >= b && (size_t)(c - b) <= len && n <= len - (size_t)(c - b));
}

static bool same(struct sioa_bytes a, struct sioa_bytes b)
{
    return a.len == b.len && (a.len == 0 || !memcmp(a.data, b.data, a.len));
}

static bool same_buf(const struct buf *a, const struct buf *b)
{
    return buf_len(a) == buf_len(b) && (buf_len(a) == 0 || !memcmp(buf_head(a), buf_head(b), buf_len(a)));
}

/* The strings of an iterator, in a malloc'd array (NULL when empty), each checked to lie inside msg. */
static struct sioa_bytes *strings(struct sioa_iter it, const uint8_t *msg, size_t len, size_t *n)
{
    struct sioa_bytes *s = it.left ? malloc(it.left * sizeof *s) : NULL, one;
    uint32_t want = it.left;
    check(!want || s);
    for (*n = 0; sioa_next_str(&it, &one); (*n)++)
        check(inside(one.data, one.len, msg, len)), s[*n] = one;
    check(*n == want);
    return s;
}

static size_t occurrences(const struct buf *b, const char *s)
{
    size_t count = 0, n = strlen(s);
    for (size_t i = 0; n <= buf_len(b) && i <= buf_len(b) - n; i++)
        count += !memcmp(buf_head(b) + i, s, n);
    return count;
}

static void check_json(const struct buf *json, size_t n_attachments)
{
    /* jansson refuses NUL in object keys whatever the flags say */
    if (!occurrences(json, "\\u0000")) {
        json_error_t err;
        json_t *j = json_loadb(buf_head(json), buf_len(json), JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &err);
        check(j != NULL);
        json_decref(j);
    }
    /* A literal placeholder object is refused when there are binaries, so every placeholder is one of them. */
    check(n_attachments == 0 || occurrences(json, "{\"_placeholder\":true,\"num\":") == n_attachments);
}

struct decoded {
    struct sioa_broadcast b;
    struct buf json;
    struct sioa_bytes *rooms, *except;
    size_t n_rooms, n_except;
};

static int decode_all(const uint8_t *msg, size_t len, struct decoded *d)
{
    *d = (struct decoded){0};
    check(buf_append(&d->json, "42", 2) == 0);
    int rc = sioa_decode(msg, len, &d->b, &d->json);
    check(rc == 0 || rc == -1);
    check(buf_len(&d->json) >= 2 && !memcmp(buf_head(&d->json), "42", 2));
    buf_consume(&d->json, 2);
    if (rc < 0) {
        check(buf_len(&d->json) == 0);
        buf_free(&d->json);
        return rc;
    }
    const struct sioa_broadcast *b = &d->b;
    check(inside(b->uid.data, b->uid.len, msg, len));
    check(inside(b->nsp.data, b->nsp.len, msg, len) || (b->nsp.len == 1 && b->nsp.data[0] == '/'));
    check(b->n_attachments <= SIOA_ATTACH_MAX && b->type <= 4);
    for (size_t i = 0; i < b->n_attachments; i++)
        check(inside(b->attachments[i].data, b->attachments[i].len, msg, len));
    d->rooms = strings(b->rooms, msg, len, &d->n_rooms);
    d->except = strings(b->except, msg, len, &d->n_except);
    check_json(&d->json, b->n_attachments);
    return 0;
}

static void free_decoded(struct decoded *d)
{
    buf_free(&d->json);
    free(d->rooms);
    free(d->except);
}

static int encode_decoded(struct buf *out, const struct decoded *d)
{
    const struct sioa_broadcast *b = &d->b;
    return sioa_encode(out, b->uid.data, b->uid.len, b->nsp.data, b->nsp.len, buf_head(&d->json), buf_len(&d->json),
                       b->attachments, b->n_attachments, d->rooms, d->n_rooms, d->except, d->n_except);
}

/* d decoded fine: encode it, decode that, and expect the same again. */
static void check_fixpoint(const struct decoded *d)
{
    struct buf m1 = {0}, m2 = {0};
    struct decoded again;
    check(encode_decoded(&m1, d) == 0);
    check(decode_all((const uint8_t *)buf_head(&m1), buf_len(&m1), &again) == 0);
    check(same_buf(&d->json, &again.json));
    check(same(d->b.uid, again.b.uid) && same(d->b.nsp, again.b.nsp));
    check(d->b.n_attachments == again.b.n_attachments);
    for (size_t i = 0; i < d->b.n_attachments; i++)
        check(same(d->b.attachments[i], again.b.attachments[i]));
    check(d->n_rooms == again.n_rooms && d->n_except == again.n_except);
    for (size_t i = 0; i < d->n_rooms; i++)
        check(same(d->rooms[i], again.rooms[i]));
    for (size_t i = 0; i < d->n_except; i++)
        check(same(d->except[i], again.except[i]));
    check(encode_decoded(&m2, &again) == 0);
    check(same_buf(&m1, &m2));
    free_decoded(&again);
    buf_free(&m1);
    buf_free(&m2);
}

static void check_encode(const char *json, size_t size)
{
    static const struct sioa_bytes att[] = {{"\x00\xff", 2}, {"", 0}}, rooms[] = {{"r", 1}};
    struct buf m = {0};
    int rc = sioa_encode(&m, "uid", 3, "/", 1, json, size, att, 2, rooms, 1, rooms, 1);
    check(rc == 0 || rc == -1);
    check(rc == 0 || buf_len(&m) == 0);
    if (rc == 0) {
        struct decoded d;
        check(decode_all((const uint8_t *)buf_head(&m), buf_len(&m), &d) == 0);
        check_fixpoint(&d);
        free_decoded(&d);
    }
    buf_free(&m);
}

static void check_channel(const char *in, size_t size)
{
    struct sioa_bytes nsp, room;
    int rc = sioa_channel_room(in, size, "socket.io", 9, &nsp, &room);
    check(rc >= -1 && rc <= 1);
    if (rc < 0)
        return;
    check(inside(nsp.data, nsp.len, in, size) && nsp.len > 0 && !memchr(nsp.data, '#', nsp.len));
    check((rc == 1) == (room.len > 0) && inside(room.data, room.len, in, size));
    struct buf name = {0};
    check(sioa_channel(&name, "socket.io", 9, nsp.data, nsp.len, rc ? room.data : NULL, room.len) == 0);
    check(buf_len(&name) == size || (rc == 0 && buf_len(&name) + 1 == size)); /* PREFIX#NSP## has an empty room */
    check(!memcmp(buf_head(&name), in, buf_len(&name)));
    buf_free(&name);
}

static void check_request(const uint8_t *msg, size_t len)
{
    struct buf scratch = {0}, json = {0}, out = {0};
    struct sioa_request r;
    check(buf_append(&json, "kept", 4) == 0);
    int rc = sioa_decode_request(msg, len, &r, &scratch, &json);
    check(rc == 0 || rc == -1);
    check(buf_len(&json) >= 4 && !memcmp(buf_head(&json), "kept", 4));
    buf_consume(&json, 4);
    if (rc < 0) {
        check(buf_len(&json) == 0);
    } else {
        const void *base = len && msg[0] == '{' ? (const void *)buf_head(&scratch) : msg;
        size_t size = len && msg[0] == '{' ? buf_len(&scratch) : len;
        struct sioa_bytes *spans[] = {&r.uid, &r.request_id, &r.sid};
        for (size_t i = 0; i < 3; i++)
            check(inside(spans[i]->data, spans[i]->len, base, size));
        size_t n;
        free(strings(r.rooms, base, size, &n));
        free(strings(r.packet.rooms, base, size, &n));
        free(strings(r.packet.except, base, size, &n));
        for (size_t i = 0; i < r.packet.n_attachments; i++)
            check(inside(r.packet.attachments[i].data, r.packet.attachments[i].len, base, size));
        if (buf_len(&json)) {
            check_json(&json, r.packet.n_attachments);
            struct sioa_writer w = {&out, false};
            if (buf_head(&json)[0] == '[')
                sioa_put_json_first(&w, buf_head(&json), buf_len(&json), r.packet.attachments, r.packet.n_attachments);
            check(!w.failed);
        }
    }
    buf_free(&scratch);
    buf_free(&json);
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    if (size)
        memcpy(in, data, size);
    struct decoded d;
    if (decode_all(in, size, &d) == 0) {
        check_fixpoint(&d);
        free_decoded(&d);
    }
    check_encode((const char *)in, size);
    check_channel((const char *)in, size);
    check_request(in, size);
    free(in);
    return 0;
}
