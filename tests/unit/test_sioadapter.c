/* refserver/sioadapter.c: the @socket.io/redis-adapter broadcast format against bytes from the real notepack.io
 * (3.0.1, tests/interop/node_modules; each vector is the hex of
 *     notepack.encode(["Nf-eCJ", {type: 2, data, nsp: "/"}, {rooms: [], except: [], flags: {}}])
 * next to JSON.stringify(data)), the JSON <-> msgpack corner cases, every malformed-input path, channels, and round
 * trips. Decoded messages lie right before a guard page, so a read past the end crashes.
 *
 * Where our bytes differ from notepack's, on purpose:
 * - notepack writes an integral double as an int, so JSON "1.0" would be 01 there; we keep float64 for a number
 *   written with a fraction or exponent (both decode to the JavaScript number 1).
 * - notepack writes integral doubles of 2^64 and up with a uint64 that wraps: 1e21 becomes 3875820019684212700,
 *   1e300 and Number.MAX_VALUE become 0. We write them as float64, so Node decodes the right number.
 * - JSON.stringify(2 ** 63) is "9223372036854776000", which fits uint64: we write that exact integer (cf ... c0),
 *   notepack 2^63 itself (cf 80 00 ...). Both decode to the same double.
 * - notepack's own UTF-8 writer (strings up to 32 characters) turns a lone surrogate into a 4-byte sequence and
 *   swallows the next character ("\ud800x" -> f0 90 81 b8); Buffer.from, longer strings in notepack, and we write
 *   U+FFFD (ef bf bd) instead. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "guard.h"
#include "common/buf.h"
#include "refserver/sioadapter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UID     "a64e662d65434a"                                         /* "Nf-eCJ" */
#define PACKET  "83a47479706502a46461746192a463686174a26869a36e7370a12f" /* ["chat","hi"] on "/" */
#define OPTS    "83a5726f6f6d7390a665786365707490a5666c61677380"
#define TAIL    "a36e7370a12f" OPTS                 /* after the data: nsp "/" and empty opts */
#define HEAD    "93" UID "83a47479706502a464617461" /* before the data */
#define EXAMPLE "93" UID PACKET OPTS

/* Bytes of a hex string, in a buffer that lasts until the next call. */
static const uint8_t *unhex(const char *hex, size_t *len)
{
    static uint8_t *bytes;
    static size_t cap;
    size_t n = strlen(hex) / 2;
    if (n > cap) {
        free(bytes);
        cap = n;
        bytes = malloc(cap);
        assert_non_null(bytes);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        bytes[i] = (uint8_t)v;
    }
    *len = n;
    return bytes;
}

static void assert_bytes(const struct buf *b, const uint8_t *want, size_t len)
{
    assert_int_equal(buf_len(b), len);
    assert_memory_equal(buf_head(b), want, len);
}

static void assert_hex(const struct buf *b, const char *hex)
{
    size_t len;
    const uint8_t *want = unhex(hex, &len);
    assert_bytes(b, want, len);
}

static void assert_text(const struct buf *b, const char *want)
{
    assert_int_equal(buf_len(b), strlen(want));
    assert_memory_equal(buf_head(b), want, strlen(want));
}

static void assert_span(struct sioa_bytes s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.data, want, s.len);
}

/* Encode json as uid "Nf-eCJ" on "/" to everyone. */
static int encode(struct buf *out, const char *json, const struct sioa_bytes *att, size_t n_att)
{
    buf_free(out);
    return sioa_encode(out, "Nf-eCJ", 6, "/", 1, json, strlen(json), att, n_att, NULL, 0, NULL, 0);
}

static int decode_bytes(const uint8_t *msg, size_t len, struct sioa_broadcast *b, struct buf *json)
{
    buf_free(json);
    return sioa_decode(guarded(msg, len), len, b, json);
}

static int decode(const char *hex, struct sioa_broadcast *b, struct buf *json)
{
    size_t len;
    const uint8_t *msg = unhex(hex, &len);
    return decode_bytes(msg, len, b, json);
}

/* Re-encode a decoded broadcast with its own uid, namespace, rooms and attachments. */
static int reencode(struct buf *out, const struct sioa_broadcast *b, const struct buf *json)
{
    struct sioa_bytes rooms[16], except[16];
    size_t n_rooms = 0, n_except = 0;
    struct sioa_iter it = b->rooms;
    while (n_rooms < 16 && sioa_next_str(&it, &rooms[n_rooms]))
        n_rooms++;
    it = b->except;
    while (n_except < 16 && sioa_next_str(&it, &except[n_except]))
        n_except++;
    buf_free(out);
    return sioa_encode(out, b->uid.data, b->uid.len, b->nsp.data, b->nsp.len, buf_head(json), buf_len(json),
                       b->attachments, b->n_attachments, rooms, n_rooms, except, n_except);
}

struct vector {
    const char *name, *json, *hex;
};

/* Both ways byte for byte: our encoder gives notepack's bytes, our decoder gives JSON.stringify's text. */
static const struct vector notepack[] = {
    {"example", "[\"chat\",\"hi\"]", EXAMPLE},
    {"ints",
     "[\"ints\",0,127,128,255,256,65535,65536,4294967295,4294967296,-1,-32,-33,-128,-129,-32768,-32769,-2147483648,"
     "-2147483649,9007199254740992,-9007199254740992]",
     HEAD "dc0015a4696e7473007fcc80ccffcd0100cdffffce00010000ceffffffffcf0000000100000000ffe0d0dfd080d1ff7fd18000d2ffff"
          "7fffd280000000d3ffffffff7fffffffcf0020000000000000d3ffe0000000000000" TAIL},
    {"floats",
     "[\"f\",0.5,-1.5,3.141592653589793,1e-7,-1.5e-7,5e-324,0.1,123456.789,-2.5e-300,0.000012345678901234568]",
     HEAD
     "9ba166cb3fe0000000000000cbbff8000000000000cb400921fb54442d18cb3e7ad7f29abcaf48cbbe8421f5f40d8376cb00000000000"
     "00001cb3fb999999999999acb40fe240c9fbe76c9cb81bac9a7b3b7302fcb3ee9e409302678ba" TAIL},
    {"nested", "[\"n\",{\"a\":{\"b\":[1,{\"c\":null}],\"d\":true,\"e\":false},\"f\":[]},[[[]]],{}]",
     HEAD "94a16e82a16183a162920181a163c0a164c3a165c2a1669091919080" TAIL},
    {"str31", "[\"s\",\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"]",
     HEAD "92a173bf78787878787878787878787878787878787878787878787878787878787878" TAIL},
    {"str32", "[\"s\",\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"]",
     HEAD "92a173d9207878787878787878787878787878787878787878787878787878787878787878" TAIL},
    {"arr15", "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14]", HEAD "9f000102030405060708090a0b0c0d0e" TAIL},
    {"arr16", "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]", HEAD "dc0010000102030405060708090a0b0c0d0e0f" TAIL},
    {"map15",
     "[\"m\",{\"k0\":0,\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,\"k9\":9,\"k10\":10,"
     "\"k11\":11,\"k12\":12,\"k13\":13,\"k14\":14}]",
     HEAD "92a16d8fa26b3000a26b3101a26b3202a26b3303a26b3404a26b3505a26b3606a26b3707a26b3808a26b3909a36b31300aa36b3131"
          "0ba36b31320ca36b31330da36b31340e" TAIL},
    {"map16",
     "[\"m\",{\"k0\":0,\"k1\":1,\"k2\":2,\"k3\":3,\"k4\":4,\"k5\":5,\"k6\":6,\"k7\":7,\"k8\":8,\"k9\":9,\"k10\":10,"
     "\"k11\":11,\"k12\":12,\"k13\":13,\"k14\":14,\"k15\":15}]",
     HEAD "92a16dde0010a26b3000a26b3101a26b3202a26b3303a26b3404a26b3505a26b3606a26b3707a26b3808a26b3909a36b31300aa36b"
          "31310ba36b31320ca36b31330da36b31340ea36b31350f" TAIL},
    {"unicode", /* JSON.stringify leaves U+2028 and DEL raw */
     "[\"u\",\"h\xc3\xa9llo\",\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\",\"\xf0\x9f\x98\x80\","
     "\"a\\u0000b\\u001f\\\"\\\\/\\n\\t\",\"\xe2\x80\xa8\x7f\"]",
     HEAD "96a175a668c3a96c6c6fa9e697a5e69cace8aa9ea4f09f9880a96100621f225c2f0a09a4e280a87f" TAIL},
    {"placeholder-like literal, no binaries", "[\"e\",{\"_placeholder\":true,\"num\":0}]",
     HEAD "92a16582ac5f706c616365686f6c646572c3a36e756d00" TAIL},
};

static void test_notepack_vectors(void **state)
{
    (void)state;
    struct buf out = {0}, json = {0}, again = {0};
    struct sioa_broadcast b;
    for (size_t i = 0; i < sizeof notepack / sizeof *notepack; i++) {
        const struct vector *v = &notepack[i];
        print_message("%s\n", v->name);
        assert_int_equal(encode(&out, v->json, NULL, 0), 0);
        assert_hex(&out, v->hex);
        assert_int_equal(decode(v->hex, &b, &json), 0);
        assert_text(&json, v->json);
        assert_span(b.uid, "Nf-eCJ");
        assert_span(b.nsp, "/");
        assert_int_equal(b.type, SIOA_EVENT);
        assert_int_equal(b.n_attachments, 0);
        assert_int_equal(reencode(&again, &b, &json), 0);
        assert_hex(&again, v->hex);
    }
    buf_free(&out);
    buf_free(&json);
    buf_free(&again);
}

static void test_strings_of_every_width(void **state)
{
    (void)state;
    /* notepack's header for a 'w' * n string in ["s", ...]; the body is the n bytes, then TAIL */
    static const struct {
        size_t n;
        const char *head;
    } widths[] = {
        {255, HEAD "92a173d9ff"},         {256, HEAD "92a173da0100"},       {65535, HEAD "92a173daffff"},
        {65536, HEAD "92a173db00010000"}, {70000, HEAD "92a173db00011170"},
    };
    struct buf out = {0}, json = {0}, want = {0};
    struct sioa_broadcast b;
    for (size_t i = 0; i < sizeof widths / sizeof *widths; i++) {
        size_t n = widths[i].n, len;
        char *text = malloc(n + 9);
        assert_non_null(text);
        memcpy(text, "[\"s\",\"", 6);
        memset(text + 6, 'w', n);
        memcpy(text + 6 + n, "\"]", 3);
        const uint8_t *bytes = unhex(widths[i].head, &len);
        buf_free(&want);
        assert_int_equal(buf_append(&want, bytes, len), 0);
        assert_int_equal(buf_append(&want, text + 6, n), 0);
        bytes = unhex(TAIL, &len);
        assert_int_equal(buf_append(&want, bytes, len), 0);

        assert_int_equal(encode(&out, text, NULL, 0), 0);
        assert_bytes(&out, (const uint8_t *)buf_head(&want), buf_len(&want));
        assert_int_equal(decode_bytes((const uint8_t *)buf_head(&want), buf_len(&want), &b, &json), 0);
        assert_text(&json, text);
        free(text);
    }
    buf_free(&out);
    buf_free(&json);
    buf_free(&want);
}

/* An array of 65536 zeros: array 32 (dd) in notepack's bytes. */
static void test_array_32(void **state)
{
    (void)state;
    enum { N = 65536 };
    struct buf out = {0}, json = {0}, want = {0};
    struct sioa_broadcast b;
    char *text = malloc(2 * N + 2);
    assert_non_null(text);
    text[0] = '[';
    for (size_t i = 0; i < N; i++)
        memcpy(text + 1 + 2 * i, i + 1 < N ? "0," : "0]", 2);
    text[2 * N + 1] = '\0';
    size_t len;
    const uint8_t *bytes = unhex(HEAD "dd00010000", &len);
    assert_int_equal(buf_append(&want, bytes, len), 0);
    assert_int_equal(buf_reserve(&want, N), 0);
    memset(buf_tail(&want), 0, N);
    buf_commit(&want, N);
    bytes = unhex(TAIL, &len);
    assert_int_equal(buf_append(&want, bytes, len), 0);

    assert_int_equal(encode(&out, text, NULL, 0), 0);
    assert_bytes(&out, (const uint8_t *)buf_head(&want), buf_len(&want));
    assert_int_equal(decode_bytes((const uint8_t *)buf_head(&want), buf_len(&want), &b, &json), 0);
    assert_text(&json, text);
    free(text);
    buf_free(&out);
    buf_free(&json);
    buf_free(&want);
}

static void test_rooms_and_namespace(void **state)
{
    (void)state;
    /* io.of("/admin").to("r1").to("room-2").except("sid123").emit("chat", "hi") */
    static const char want[] = "93" UID "83a47479706502a46461746192a463686174a26869a36e7370a62f61646d696e83a5726f6f6d73"
                               "92a27231a6726f6f6d2d32a665786365707491a6736964313233a5666c61677380";
    struct sioa_bytes rooms[] = {{"r1", 2}, {"room-2", 6}}, except[] = {{"sid123", 6}}, s;
    struct buf out = {0}, json = {0};
    struct sioa_broadcast b;
    const char *ev = "[\"chat\",\"hi\"]";
    assert_int_equal(sioa_encode(&out, "Nf-eCJ", 6, "/admin", 6, ev, strlen(ev), NULL, 0, rooms, 2, except, 1), 0);
    assert_hex(&out, want);
    assert_int_equal(decode(want, &b, &json), 0);
    assert_span(b.nsp, "/admin");
    assert_text(&json, ev);
    struct sioa_iter it = b.rooms;
    assert_int_equal(it.left, 2);
    assert_true(sioa_next_str(&it, &s));
    assert_span(s, "r1");
    assert_true(sioa_next_str(&it, &s));
    assert_span(s, "room-2");
    assert_false(sioa_next_str(&it, &s));
    assert_false(sioa_next_str(&it, &s));
    it = b.except;
    assert_true(sioa_next_str(&it, &s));
    assert_span(s, "sid123");
    assert_false(sioa_next_str(&it, &s));
    buf_free(&out);
    buf_free(&json);
}

/* ["bin", Buffer.from([1,2,3]), {k: Buffer.alloc(300, 7)}]: bin 8 and bin 16, placeholders in order. */
static void test_binary(void **state)
{
    (void)state;
    char hex[2 * 400];
    int n = snprintf(hex, sizeof hex, "%s", HEAD "93a362696ec40301020381a16bc5012c");
    for (int i = 0; i < 300; i++)
        n += snprintf(hex + n, sizeof hex - (size_t)n, "07");
    snprintf(hex + n, sizeof hex - (size_t)n, "%s", TAIL);
    static const char json_want[] =
        "[\"bin\",{\"_placeholder\":true,\"num\":0},{\"k\":{\"_placeholder\":true,\"num\":1}}]";
    char sevens[300];
    memset(sevens, 7, sizeof sevens);
    struct sioa_bytes att[] = {{"\x01\x02\x03", 3}, {sevens, 300}};
    struct buf out = {0}, json = {0};
    struct sioa_broadcast b;

    assert_int_equal(decode(hex, &b, &json), 0);
    assert_text(&json, json_want);
    assert_int_equal(b.n_attachments, 2);
    assert_memory_equal(b.attachments[0].data, "\x01\x02\x03", 3);
    assert_int_equal(b.attachments[1].len, 300);
    assert_memory_equal(b.attachments[1].data, sevens, 300);
    assert_int_equal(encode(&out, json_want, att, 2), 0);
    assert_hex(&out, hex);

    /* A placeholder is any object whose _placeholder is true, keys in any order, other keys ignored; the attachments
     * may be used in any order and more than once (socket.io-parser's reconstructPacket). */
    assert_int_equal(
        encode(&out, "[{\"x\":[],\"num\":1,\"_placeholder\":true},{\"_placeholder\":true,\"num\":1.0}]", att, 2), 0);
    assert_int_equal(decode_bytes((const uint8_t *)buf_head(&out), buf_len(&out), &b, &json), 0);
    assert_text(&json, "[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]");
    assert_int_equal(b.attachments[0].len, 300);
    assert_int_equal(b.attachments[1].len, 300);
    /* Not a placeholder: _placeholder not true (the last one counts), or a packet without attachments. */
    assert_int_equal(
        encode(&out, "[{\"_placeholder\":false,\"num\":0},{\"_placeholder\":true,\"_placeholder\":1}]", att, 2), 0);
    assert_hex(&out, HEAD "9282ac5f706c616365686f6c646572c2a36e756d0082ac5f706c616365686f6c646572c3ac5f706c616365686f"
                          "6c64657201" TAIL);
    assert_int_equal(encode(&out, "[{\"_placeholder\":true,\"num\":0}]", NULL, 0), 0);
    assert_hex(&out, HEAD "9182ac5f706c616365686f6c646572c3a36e756d00" TAIL);
    /* Node's type 5 with bin reads as an EVENT. */
    assert_int_equal(decode("93a6432d6e6f646583a47479706505a46461746192a165c4026869a36e7370a12f83a5726f6f6d7391a161a6"
                            "65786365707490a5666c61677380",
                            &b, &json),
                     0);
    assert_int_equal(b.type, SIOA_EVENT);
    assert_text(&json, "[\"e\",{\"_placeholder\":true,\"num\":0}]");
    assert_span(b.attachments[0], "hi");
    buf_free(&out);
    buf_free(&json);
}

static void test_bad_placeholders(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "[{\"_placeholder\":true,\"num\":2}]",
        "[{\"_placeholder\":true,\"num\":-1}]",
        "[{\"_placeholder\":true,\"num\":0.5}]",
        "[{\"_placeholder\":true,\"num\":\"0\"}]",
        "[{\"_placeholder\":true}]",
        "[{\"_placeholder\":true,\"num\":1e400}]",
        "[{\"_placeholder\":true,\"num\":0,\"num\":null}]",
    };
    struct sioa_bytes att[] = {{"a", 1}, {"b", 1}};
    struct buf out = {0};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        print_message("%s\n", bad[i]);
        assert_int_equal(encode(&out, bad[i], att, 2), -1);
        assert_int_equal(buf_len(&out), 0);
    }
    buf_free(&out);
}

/* JSON text the encoder reads and the msgpack it writes (as data; HEAD and TAIL around it). */
static void test_encode_json_corners(void **state)
{
    (void)state;
    static const struct {
        const char *json, *hex;
    } cases[] = {
        {" [ 1 , \"a\" ] \n", "9201a161"},
        {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "a8225c2f080c0a0d09"},
        {"\"\\u00e9\\u65e5\\ud83d\\ude00\"", "a9c3a9e697a5f09f9880"},
        {"\"\\ud800x\"", "a4efbfbd78"},           /* a lone high surrogate: U+FFFD, as Buffer.from writes it */
        {"\"\\udc00\\ud800\"", "a6efbfbdefbfbd"}, /* a low then a high: two of them */
        {"\"\\ud800\\u0041\"", "a4efbfbd41"},     /* a high followed by no low */
        {"\"\xc3\x28\xff\"", "a7efbfbd28efbfbd"}, /* invalid UTF-8 in the text: U+FFFD as Node's toString */
        {"1.0", "cb3ff0000000000000"},            /* notepack: 01 */
        {"-0", "00"},
        {"-0.0", "cb8000000000000000"},
        {"1E2", "cb4059000000000000"},
        {"18446744073709551615", "cfffffffffffffffff"},
        {"18446744073709551616", "cb43f0000000000000"}, /* past uint64: a double */
        {"-9223372036854775808", "d38000000000000000"},
        {"-9223372036854775809", "cbc3e0000000000000"},
        {"9223372036854776000", "cf80000000000000c0"}, /* JSON.stringify(2 ** 63); notepack writes 2^63 */
        {"1e+21", "cb444b1ae4d6e2ef50"}, /* notepack: cf35c9adc5dea00000, which reads 3875820019684212700 */
        {"1.7976931348623157e+308", "cb7fefffffffffffff"}, /* notepack: cf0000000000000000, which reads 0 */
        {"1e400", "cb7ff0000000000000"},                   /* JSON.parse gives Infinity too */
        {"[true,false,null]", "93c3c2c0"},
        {"{}", "80"},
        {"{\"\":[]}", "81a090"},
    };
    struct buf out = {0};
    char want[256];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        print_message("%s\n", cases[i].json);
        assert_int_equal(encode(&out, cases[i].json, NULL, 0), 0);
        snprintf(want, sizeof want, "%s%s%s", HEAD, cases[i].hex, TAIL);
        assert_hex(&out, want);
    }
    buf_free(&out);
}

static void test_encode_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",       " ",          "[",   "]",        "[1,]",         "[,1]",        "[1 2]", "{\"a\"}",  "{\"a\":}",
        "{1:2}",  "{\"a\":1,}", "tru", "nul",      "falsey",       "01",          "1.",    ".5",       "-",
        "1e",     "1e+",        "+1",  "\"\\x\"",  "\"\\u12\"",    "\"\\u12g4\"", "\"a",   "\"\x01\"", "[1]x",
        "[1][2]", "'a'",        "NaN", "Infinity", "[\"a\"\"b\"]", "\"\\",
    };
    struct buf out = {0};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        print_message("%s\n", bad[i]);
        assert_int_equal(encode(&out, bad[i], NULL, 0), -1);
        assert_int_equal(buf_len(&out), 0);
    }
    /* A number longer than SIOA_NUMBER_MAX is refused; one that long is read. */
    char num[SIOA_NUMBER_MAX + 2];
    memset(num, '1', sizeof num - 1);
    num[1] = '.';
    num[SIOA_NUMBER_MAX] = '\0';
    assert_int_equal(encode(&out, num, NULL, 0), 0);
    num[SIOA_NUMBER_MAX] = '1';
    num[SIOA_NUMBER_MAX + 1] = '\0';
    assert_int_equal(encode(&out, num, NULL, 0), -1);
    buf_free(&out);
}

/* SIOA_DEPTH counts values as jscan_valid does: 32 nested arrays around nothing, or 31 around a scalar. */
static void test_depth(void **state)
{
    (void)state;
    char json[80], hex[200];
    struct buf out = {0}, js = {0};
    struct sioa_broadcast b;
    for (int inner = 0; inner < 2; inner++) {
        int ok = inner ? SIOA_DEPTH - 1 : SIOA_DEPTH;
        for (int n = ok; n <= ok + 1; n++) {
            int len = 0;
            for (int i = 0; i < n; i++)
                json[len++] = '[';
            if (inner)
                json[len++] = '1';
            for (int i = 0; i < n; i++)
                json[len++] = ']';
            json[len] = '\0';
            assert_int_equal(encode(&out, json, NULL, 0), n == ok ? 0 : -1);
            len = snprintf(hex, sizeof hex, "%s", HEAD);
            for (int i = 0; i < n; i++)
                len += snprintf(hex + len, sizeof hex - (size_t)len, i + 1 < n || inner ? "91" : "90");
            snprintf(hex + len, sizeof hex - (size_t)len, "%s%s", inner ? "01" : "", TAIL);
            assert_int_equal(decode(hex, &b, &js), n == ok ? 0 : -1);
            if (n == ok)
                assert_text(&js, json);
        }
    }
    /* A bin at depth 32 would be a placeholder object with members at 33. */
    char at31[200], at32[300];
    int len = snprintf(at31, sizeof at31, "%s", HEAD);
    for (int i = 0; i < 30; i++)
        len += snprintf(at31 + len, sizeof at31 - (size_t)len, "91");
    snprintf(at32, sizeof at32, "%s91c40100%s", at31, TAIL);
    snprintf(at31 + len, sizeof at31 - (size_t)len, "c40100%s", TAIL);
    assert_int_equal(decode(at31, &b, &js), 0);
    assert_int_equal(decode(at32, &b, &js), -1);
    buf_free(&out);
    buf_free(&js);
}

/* JSON.stringify of each double against what we print from its float64 (generated with Node). */
static const struct {
    const char *bits, *json;
} doubles[] = {
    {"444b1ae4d6e2ef50", "1e+21"},
    {"4415af1d78b58c40", "100000000000000000000"},
    {"441ac53a7e04bcda", "123456789012345680000"},
    {"3eb0c6f7a0b5ed8d", "0.000001"},
    {"3e7ad7f29abcaf48", "1e-7"},
    {"3eb4b3fd5942cd96", "0.000001234"},
    {"3e8421f5f40d8376", "1.5e-7"},
    {"0000000000000001", "5e-324"},
    {"7fe0000000000000", "8.98846567431158e+307"},
    {"4340000000000001", "9007199254740994"},
    {"3fd3333333333334", "0.30000000000000004"},
    {"3fd5555555555555", "0.3333333333333333"},
    {"bfd5555555555555", "-0.3333333333333333"},
    {"4059000000000000", "100"},
    {"7e37e43c8800759c", "1e+300"},
    {"4011666666666666", "4.35"},
    {"0000000000000001", "5e-324"},
    {"7fefffffffffffff", "1.7976931348623157e+308"},
    {"0010000000000000", "2.2250738585072014e-308"},
    {"4340000000000000", "9007199254740992"},
    {"3fd3333333333333", "0.3"},
    {"40934a456d5cfaad", "1234.5678"},
    {"d3dc167ea7042800", "-9.374269737475504e+95"},
    {"50f538007f790800", "1.0063725663392093e+82"},
    {"56f898005628e800", "9.241516992974401e+110"},
    {"961af800f10bc800", "-3.440677530121107e-202"},
    {"e8f45800b2d9a800", "-3.8017925100238707e+197"},
    {"67dcb800c90a8800", "2.047306971234338e+192"},
    {"feec180009d66800", "-2.408215644914503e+303"},
    {"f3fa784073c8e400", "-4.737900958860178e+250"},
    {"da014400cd422400", "-3.652336815595322e+125"},
    {"64218400f07d6400", "2.1660750543064383e+174"},
    {"f1dbc400884aa400", "-2.8928381625981332e+240"},
    {"9dc00400c3f9e400", "-2.1727842139564414e-165"},
    {"ecde44002b5b2400", "-2.60835433248602e+216"},
    {"12c6840092be6440", "3.189167486538404e-218"},
    {"471c60002c551000", "3.6832859270275105e+34"},
    {"2b180000a9383000", "4.286204518632932e-101"},
    {"4b8ca000c3a05000", "8.773540545307737e+55"},
    {"03a240007b957038", "3.657608733319885e-291"},
    {"2a2208007eed9800", "9.827375434081363e-106"},
    {"ff79e8005b97f800", "-1.1369994528653062e+306"},
    {"1d44c8001b395840", "1.1012961594952657e-167"},
    {"91ce4380a263ee00", "-6.540861905678914e-223"},
    {"ab10860082dd3e00", "-2.9509515060272976e-101"},
    {"151796002ebf0e40", "4.59151689332951e-207"},
    {"6330c1005c905d00", "6.32286334783374e+169"},
    {"53cdc900d7dcc500", "4.9703699293237046e+95"},
    {"8b0610006a750000", "-1.469361098245196e-255"},
    {"f9d130003ab1a000", "-6.093527869386774e+278"},
    {"dc6150005bcf4000", "-1.006671951346432e+137"},
    {"bcbe70000335e000", "-4.224051690559739e-16"},
    {"083090380beea820", "3.135250173383254e-269"},
    {"f49785e0ba8e7000", "-4.3114995264569436e+253"},
    {"74c5e00042809000", "3.2075578200917414e+254"},
    {"dc9d8000ec0fb000", "-1.3722721659900609e+138"},
    {"6a4e2000d103d000", "1.1806313661208537e+204"},
    {"07ffc000d464f040", "3.7561921887864607e-270"},
    {"41adfc00e1dc7c00", "251527280.93063354"},
    {"40a8fc00ecbb7c00", "3198.001806124579"},
    {"d39bfc0088327c00", "-5.837331987134968e+94"},
    {"4746fc00e2017c00", "2.386835361065863e+35"},
    {"9669fc003de87c00", "-1.0608286436823162e-200"},
    {"19c4fc00e5a77c40", "1.5432951403002474e-184"},
    {"29ab9800965fe800", "5.874655874971617e-108"},
    {"af85f8005d9ac800", "-9.263958795324479e-80"},
    {"b3d758003f80a800", "-5.810741457879237e-59"},
    {"2cf7b800ef898800", "4.5483449499909174e-92"},
    {"14ff180039ed6840", "1.5132690548087254e-207"},
    {"e1591300c8b74800", "-8.813031441014433e+160"},
    {"fdf9d80053312800", "-6.760694794967154e+298"},
    {"561e38002fee0800", "6.930666785410689e+106"},
    {"1ec998001825e840", "2.2755493977573435e-160"},
    {"b6679380ce0afe00", "-1.2905183848673685e-46"},
    {"881256000a02ce00", "-8.676948660287581e-270"},
    {"71f5e640c75ab900", "9.126605517043269e+240"},
    {"9bfef400d1e61400", "-7.821808734031109e-174"},
    {"f10eb400561ad400", "-3.904894158485484e+236"},
    {"ce047400cb3d9400", "-6.892693572144007e+67"},
    {"c45034003dfe5400", "-1.1955798729274614e+21"},
    {"dae1f400c28d1400", "-6.222264719318998e+129"},
    {"4a29b4008099d400", "1.878258523736923e+49"},
    {"4050d8adab9f559b", "67.3856"},
    {"40405aee631f8a09", "32.7104"},
    {"c0571f212d773190", "-92.4864"},
    {"bff25460aa64c2f8", "-1.1456"},
    {"402fced916872b02", "15.904"},
    {"3f5cde0731cd827f", "0.00176192"},
    {"bf7630c3ed2a3a66", "-0.0054176"},
    {"c04d34d6a161e4f7", "-58.4128"},
    {"c123f38000000000", "-653760"},
    {"3f740a78ffc61e5d", "0.0048928"},
    {"412a640000000000", "864768"},
    {"bf62b63b0ff66d2f", "-0.00228416"},
    {"bf77fd21d43b2b24", "-0.00585664"},
    {"3f60f8a0bb20fdd1", "0.00207168"},
    {"3f645e5bd5e9ac01", "0.0024864"},
    {"3f7545e262604768", "0.0051936"},
    {"3f4f5a385aba60b9", "0.0009568"},
    {"c125288000000000", "-693312"},
    {"c120638000000000", "-537024"},
    {"c0426e978d4fdf3b", "-36.864"},
    {"bf827bd8937f7932", "-0.00902528"},
    {"c04b93f7ced91687", "-55.156"},
    {"412d708000000000", "964672"},
    {"bf62d113029129de", "-0.00229696"},
    {"404e5a1cac083127", "60.704"},
    {"bf604a251233335e", "-0.00198848"},
    {"3f65514af6487133", "0.00260224"},
    {"40522b020c49ba5e", "72.672"},
    {"bf7296b0861a35e1", "-0.00453824"},
    {"4044161e4f765fd9", "40.1728"},
    {"67113cb1efcff5ea", "3e+188"},
    {"0521d81dae6e221c", "6e-284"},
    {"2496b6b5b5155ff0", "2e-132"},
    {"4442f939c99edab8", "700000000000000000000"},
    {"2630ec4be0ad8f89", "1e-124"},
    {"4fc61bcca7119916", "2e+76"},
    {"6726fb97ea6a9d38", "8e+188"},
    {"3a47c4b90ebc4813", "6e-28"},
    {"74517571ddf6c814", "2e+252"},
    {"63b4b378469b6732", "2e+172"},
    {"4921efc659cf7d4c", "2e+44"},
    {"176de6815302e556", "8e-196"},
    {"6706fb97ea6a9d38", "2e+188"},
    {"5b83b94901a9542f", "7e+132"},
    {"5d32e4deec94e1e8", "9e+140"},
    {"4921efc659cf7d4c", "2e+44"},
    {"4c8dded757246ce6", "6e+60"},
    {"7465d2ce55747a19", "5.0000000000000005e+252"},
    {"1df26d73f9d764b9", "2e-164"},
    {"7113a825c100dd12", "5.000000000000001e+236"},
};

static void test_decode_numbers(void **state)
{
    (void)state;
    struct buf json = {0};
    struct sioa_broadcast b;
    char hex[128], want[64];
    for (size_t i = 0; i < sizeof doubles / sizeof *doubles; i++) {
        snprintf(hex, sizeof hex, "%s91cb%s%s", HEAD, doubles[i].bits, TAIL);
        snprintf(want, sizeof want, "[%s]", doubles[i].json);
        assert_int_equal(decode(hex, &b, &json), 0);
        assert_text(&json, want);
    }
    static const struct {
        const char *hex, *json;
    } cases[] = {
        {"ca3fc00000", "1.5"}, /* float32, which notepack reads too */
        {"cb7ff8000000000000", "null"},
        {"cb7ff0000000000000", "null"},
        {"cbfff0000000000000", "null"},
        {"cb8000000000000000", "0"},
        {"cfffffffffffffffff", "18446744073709551615"}, /* JSON.parse gives JavaScript's 18446744073709552000 */
        {"d38000000000000000", "-9223372036854775808"},
        {"d0ff", "-1"},
        {"d17fff", "32767"},
        {"d2ffffffff", "-1"},
        {"cc05", "5"},
        {"cf35c9adc5dea00000", "3875820019684212736"}, /* what notepack makes of 1e21 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(hex, sizeof hex, "%s91%s%s", HEAD, cases[i].hex, TAIL);
        snprintf(want, sizeof want, "[%s]", cases[i].json);
        assert_int_equal(decode(hex, &b, &json), 0);
        assert_text(&json, want);
    }
    buf_free(&json);
}

/* Strings as Node reads them (buffer.toString, then JSON.stringify); keys as JavaScript object keys. */
static void test_decode_strings_and_keys(void **state)
{
    (void)state;
    static const struct {
        const char *hex, *json;
    } cases[] = {
        {"a2c328", "\"\xef\xbf\xbd(\""},
        {"a2e282", "\"\xef\xbf\xbd\""},
        {"a3e228a1", "\"\xef\xbf\xbd(\xef\xbf\xbd\""},
        {"a3eda080", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
        {"a4f0908028", "\"\xef\xbf\xbd(\""},
        {"a4f4908080", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
        {"a2c0af", "\"\xef\xbf\xbd\xef\xbf\xbd\""},
        {"a1ff", "\"\xef\xbf\xbd\""},
        {"a180", "\"\xef\xbf\xbd\""},
        {"a2e0a0", "\"\xef\xbf\xbd\""},
        {"a3f09f98", "\"\xef\xbf\xbd\""},
        {"a4edbfbf41", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                       "A\""},
        {"a3efbfbd", "\"\xef\xbf\xbd\""},
        {"a4f09f9880", "\"\xf0\x9f\x98\x80\""},
        {"a3010d7f", "\"\\u0001\\r\x7f\""},
        {"d903616263", "\"abc\""}, /* str 8 for a short string: other encoders may */
        {"c403010203", "{\"_placeholder\":true,\"num\":0}"},
        {"83017f02a178d0ff00", "{\"1\":127,\"2\":\"x\",\"-1\":0}"},
        {"81a2c328c0", "{\"\xef\xbf\xbd(\":null}"},
        {"dc0000", "[]"},
        {"de0000", "{}"},
    };
    struct buf json = {0};
    struct sioa_broadcast b;
    char hex[128], want[64];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        print_message("%s\n", cases[i].hex);
        snprintf(hex, sizeof hex, "%s%s%s", HEAD, cases[i].hex, TAIL);
        assert_int_equal(decode(hex, &b, &json), 0);
        snprintf(want, sizeof want, "%s", cases[i].json);
        assert_text(&json, want);
    }
    buf_free(&json);
}

/* What Node's adapter reads leniently: key order, unknown keys (of any type, ext included), no nsp, no flags, no
 * rooms, extra top-level elements. */
static void test_decode_lenient(void **state)
{
    (void)state;
    struct buf json = {0};
    struct sioa_broadcast b;
    struct sioa_bytes s;
    /* @socket.io/redis-emitter style, keys reordered, flags set, an unknown opts key */
    assert_int_equal(decode("93a7656d697474657283a36e7370a62f61646d696ea46461746192a16501a4747970650284a66578636570"
                            "7491a178a5726f6f6d7391a172a5666c61677382a8766f6c6174696c65c3a774696d656f7574cd1388a56578"
                            "747261920181a16102",
                            &b, &json),
                     0);
    assert_span(b.uid, "emitter");
    assert_span(b.nsp, "/admin");
    assert_text(&json, "[\"e\",1]");
    assert_true(sioa_next_str(&b.rooms, &s));
    assert_span(s, "r");
    assert_true(sioa_next_str(&b.except, &s));
    assert_span(s, "x");
    /* no nsp, no flags */
    assert_int_equal(
        decode("93a6432d6e6f646582a47479706502a46461746191a16582a5726f6f6d7390a665786365707490", &b, &json), 0);
    assert_span(b.uid, "C-node");
    assert_span(b.nsp, "/");
    assert_text(&json, "[\"e\"]");
    /* unknown packet keys: ext 8, a non-string key with a map body, an id; empty opts; a fourth element */
    assert_int_equal(decode("94" UID "85a178c70201aabb81a16101c0a46461746190a269640ca47479706502"
                            "80"
                            "93c0c0c0",
                            &b, &json),
                     0);
    assert_text(&json, "[]");
    assert_int_equal(b.rooms.left, 0);
    assert_false(sioa_next_str(&b.except, &s));
    /* ACK and BINARY_ACK types are reported, BINARY_ACK as ACK */
    assert_int_equal(decode("93" UID "82a47479706506a46461746190" OPTS, &b, &json), 0);
    assert_int_equal(b.type, 3);
    buf_free(&json);
}

static void test_decode_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "c0", "80", "92" UID PACKET,
        "93"
        "01" PACKET OPTS,
        "93" UID "90" OPTS, "93" UID "c0" OPTS, "93" UID "82a46461746190a36e7370a12f" OPTS, /* no type */
        "93" UID "82a47479706502a36e7370a12f" OPTS,                                         /* no data */
        "93" UID "82a474797065a132a46461746190" OPTS,                                       /* type as a string */
        "93" UID "82a47479706507a46461746190" OPTS,                                         /* type 7 */
        "93" UID "82a474797065ffa46461746190" OPTS,                                         /* type -1 */
        "93" UID "82a474797065cb4000000000000000a46461746190" OPTS,                         /* type 2.0 */
        "93" UID "83a47479706502a46461746190a46461746190" OPTS,                             /* data twice */
        "93" UID "83a47479706502a47479706502a46461746190" OPTS,                             /* type twice */
        "93" UID "83a47479706502a46461746190a36e737001" OPTS,                               /* nsp as an int */
        "93" UID "84a47479706502a46461746190a36e7370a12fa36e7370a12f" OPTS,                 /* nsp twice */
        "93" UID PACKET "90",                                                               /* opts an array */
        "93" UID PACKET "81a5726f6f6d73a131",                                               /* rooms a string */
        "93" UID PACKET "81a5726f6f6d739101",                                               /* a room as an int */
        "93" UID PACKET "81a6657863657074"
        "91c0",                                                         /* except holds nil */
        "93" UID PACKET "81a5666c61677390",                             /* flags an array */
        "93" UID PACKET "81a5666c616773c0",                             /* flags nil */
        "93" UID PACKET "82a5726f6f6d7390a5726f6f6d7390",               /* rooms twice */
        EXAMPLE "c0",                                                   /* trailing bytes */
        "93" UID "82a47479706502a464617461d40100" OPTS,                 /* fixext in data */
        "93" UID "82a47479706502a46461746191c70100" OPTS,               /* ext 8 in data */
        "93" UID "82a47479706502a464617461c1" OPTS,                     /* the unused tag */
        "93" UID "83a47479706502a46461746190a178c1" OPTS,               /* ... in a skipped value */
        "93" UID "82a47479706502a46461746181c4010001" OPTS,             /* a bin key */
        "93" UID "82a47479706502a46461746181c001" OPTS,                 /* a nil key */
        "93" UID "82a47479706502a46461746181cb3ff000000000000001" OPTS, /* a float key */
        "93" UID "82a47479706502a4646174618190c0" OPTS,                 /* an array key */
        "93" UID "82a47479706502a4646174619181c2c0" OPTS,               /* a bool key */
        "93" UID "82a47479706502a4646174619192c0" OPTS,                 /* array shorter than its count */
        "93" UID "82a47479706502a464617461db000000ff616263" OPTS,       /* a str longer than the message */
        /* a literal placeholder object next to a binary: a client would swap in the binary */
        HEAD "93a16582ac5f706c616365686f6c646572c3a36e756d00c40109" TAIL,
        "93" UID "82a47479706502a464617461dd00000002"
        "c0" OPTS, /* array 32 short of its count */
    };
    struct buf json = {0};
    struct sioa_broadcast b;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        print_message("%zu: %s\n", i, bad[i]);
        assert_int_equal(decode(bad[i], &b, &json), -1);
        assert_int_equal(buf_len(&json), 0);
    }
    /* The last one is fine with a count of 1. */
    assert_int_equal(decode("93" UID "82a47479706502a464617461dd00000001c0" OPTS, &b, &json), 0);
    assert_text(&json, "[null]");
    buf_free(&json);
}

/* Every proper prefix of a valid message is truncated. */
static void test_decode_truncated(void **state)
{
    (void)state;
    static const char *const whole[] = {
        EXAMPLE,
        "93a7656d697474657283a36e7370a62f61646d696ea46461746192a16501a4747970650284a665786365707491a178a5726f6f6d7391a1"
        "72"
        "a5666c61677382a8766f6c6174696c65c3a774696d656f7574cd1388a56578747261920181a16102",
        HEAD "93a362696ec40301020381a16bc50003070707" TAIL,
        HEAD "9bcb3fe0000000000000ca3fc00000cfffffffffffffffffd38000000000000000d17fffd9036162630181a178c3c0dc0000de000"
             "0" TAIL,
        "94" UID "85a178c70201aabb81a16101c0a46461746190a269640ca47479706502"
        "80"
        "93c0c0c0",
    };
    struct buf json = {0};
    struct sioa_broadcast b;
    for (size_t i = 0; i < sizeof whole / sizeof *whole; i++) {
        size_t len;
        const uint8_t *msg = unhex(whole[i], &len);
        uint8_t *copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, msg, len);
        assert_int_equal(decode_bytes(copy, len, &b, &json), 0);
        for (size_t cut = 0; cut < len; cut++)
            assert_int_equal(decode_bytes(copy, cut, &b, &json), -1);
        free(copy);
    }
    buf_free(&json);
}

/* At most SIOA_ATTACH_MAX binaries. */
static void test_attachment_limit(void **state)
{
    (void)state;
    char hex[1024];
    struct buf json = {0};
    struct sioa_broadcast b;
    for (int n = SIOA_ATTACH_MAX; n <= SIOA_ATTACH_MAX + 1; n++) {
        int len = snprintf(hex, sizeof hex, "%sdc%04x", HEAD, n);
        for (int i = 0; i < n; i++)
            len += snprintf(hex + len, sizeof hex - (size_t)len, "c40141");
        snprintf(hex + len, sizeof hex - (size_t)len, "%s", TAIL);
        assert_int_equal(decode(hex, &b, &json), n == SIOA_ATTACH_MAX ? 0 : -1);
    }
    assert_int_equal(b.n_attachments, SIOA_ATTACH_MAX);
    buf_free(&json);
}

/* Output goes after what the buffer holds; on failure (here: the cap) the buffer is as it was. */
static void test_buffers(void **state)
{
    (void)state;
    struct buf out = {0}, json = {0};
    struct sioa_broadcast b;
    size_t len;
    const uint8_t *want = unhex(EXAMPLE, &len);
    assert_int_equal(buf_append(&out, "xxprefix", 8), 0);
    buf_consume(&out, 2); /* rpos != 0: offsets must survive compaction */
    const char *ev = "[\"chat\",\"hi\"]";
    assert_int_equal(sioa_encode(&out, "Nf-eCJ", 6, "/", 1, ev, strlen(ev), NULL, 0, NULL, 0, NULL, 0), 0);
    assert_int_equal(buf_len(&out), 6 + len);
    assert_memory_equal(buf_head(&out), "prefix", 6);
    assert_memory_equal(buf_head(&out) + 6, want, len);
    buf_free(&out);

    out.max = 32;
    assert_int_equal(buf_append(&out, "abc", 3), 0);
    assert_int_equal(sioa_encode(&out, "Nf-eCJ", 6, "/", 1, ev, strlen(ev), NULL, 0, NULL, 0, NULL, 0), -1);
    assert_int_equal(buf_len(&out), 3);
    assert_memory_equal(buf_head(&out), "abc", 3);
    buf_free(&out);

    json.max = 8;
    assert_int_equal(buf_append(&json, "42", 2), 0);
    assert_int_equal(sioa_decode(guarded(want, len), len, &b, &json), -1);
    assert_int_equal(buf_len(&json), 2);
    json.max = 0;
    assert_int_equal(sioa_decode(guarded(want, len), len, &b, &json), 0);
    assert_text(&json, "42[\"chat\",\"hi\"]");
    buf_free(&json);

    assert_int_equal(sioa_decode(NULL, 0, &b, &json), -1);
    assert_int_equal(sioa_encode(&out, "u", 1, "/", 1, NULL, 0, NULL, 0, NULL, 0, NULL, 0), -1);
    buf_free(&out);
}

static void test_channels(void **state)
{
    (void)state;
    struct sioa_bytes nsp, room;
    struct buf out = {0};
#define ROOM(s) sioa_channel_room(s, strlen(s), SIOA_PREFIX, strlen(SIOA_PREFIX), &nsp, &room)
    assert_int_equal(ROOM("socket.io#/#"), 0);
    assert_span(nsp, "/");
    assert_int_equal(room.len, 0);
    assert_int_equal(ROOM("socket.io#/admin#room 1#"), 1);
    assert_span(nsp, "/admin");
    assert_span(room, "room 1");
    assert_int_equal(ROOM("socket.io#/#a#b#"), 1); /* rooms may hold '#' */
    assert_span(room, "a#b");
    assert_int_equal(ROOM("socket.io#/##"), 0); /* an empty room: Node takes the whole namespace */
    assert_int_equal(ROOM("socket.io-request#/#"), -1);
    assert_int_equal(ROOM("socket.io#/"), -1);
    assert_int_equal(ROOM("socket.io##"), -1);
    assert_int_equal(ROOM("socket.io###"), -1);
    assert_int_equal(ROOM("socket.io#/#room"), -1);
    assert_int_equal(ROOM("socket.i"), -1);
    assert_int_equal(ROOM("xocket.io#/#"), -1);
#undef ROOM
    assert_int_equal(sioa_channel(&out, "socket.io", 9, "/", 1, NULL, 0), 0);
    assert_text(&out, "socket.io#/#");
    assert_int_equal(sioa_channel(&out, "socket.io", 9, "/chat", 5, "r1", 2), 0);
    assert_text(&out, "socket.io#/#socket.io#/chat#r1#");
    buf_free(&out);
    out.max = 4;
    assert_int_equal(sioa_channel(&out, "socket.io", 9, "/", 1, NULL, 0), -1);
    assert_int_equal(buf_len(&out), 0);
    buf_free(&out);
}

/* encode -> decode -> encode gives the same bytes, and decode is a fixpoint: re-encoding decoded JSON and decoding
 * again gives the same text (non-canonical inputs such as 1.0 change bytes once, then no more). */
static void test_round_trip(void **state)
{
    (void)state;
    static const char *const json[] = {
        "[\"chat\",\"hi\"]",
        "[\"e\",{\"a\":[1,-1,2.5,-1e-300,1e+21,true,false,null,\"\xc3\xa9\"]},[],{},\"\"]",
        "[\"\xf0\x9f\x98\x80\\n\\u0000\",18446744073709551615,-9223372036854775808,0.1]",
        "[\"e\",{\"_placeholder\":true,\"num\":0},[{\"_placeholder\":true,\"num\":1}]]",
        " [ 1.0 , 1E2 , -0 , 0.0 , \"\\ud800\" , 1e400 , 123456789012345678901234567890 ] ",
    };
    struct sioa_bytes att[] = {{"\x00\x01", 2}, {"", 0}};
    struct buf m1 = {0}, m2 = {0}, j1 = {0}, j2 = {0};
    struct sioa_broadcast b;
    for (size_t i = 0; i < sizeof json / sizeof *json; i++) {
        bool canonical = i + 1 < sizeof json / sizeof *json;
        print_message("%s\n", json[i]);
        assert_int_equal(encode(&m1, json[i], att, 2), 0);
        assert_int_equal(decode_bytes((const uint8_t *)buf_head(&m1), buf_len(&m1), &b, &j1), 0);
        if (canonical)
            assert_text(&j1, json[i]);
        assert_int_equal(reencode(&m2, &b, &j1), 0);
        if (canonical)
            assert_bytes(&m2, (const uint8_t *)buf_head(&m1), buf_len(&m1));
        assert_int_equal(decode_bytes((const uint8_t *)buf_head(&m2), buf_len(&m2), &b, &j2), 0);
        assert_int_equal(buf_len(&j1), buf_len(&j2));
        assert_memory_equal(buf_head(&j1), buf_head(&j2), buf_len(&j1));
    }
    assert_text(&j2, "[1,100,0,0,\"\xef\xbf\xbd\",null,1.2345678901234568e+29]");
    buf_free(&m1);
    buf_free(&m2);
    buf_free(&j1);
    buf_free(&j2);
}

/* ---- Requests and the answer writer ---- */

static int decode_request_text(const char *text, struct sioa_request *r, struct buf *scratch, struct buf *json)
{
    buf_free(json);
    return sioa_decode_request(guarded((const uint8_t *)text, strlen(text)), strlen(text), r, scratch, json);
}

static size_t count_strs(struct sioa_iter it, const char *first)
{
    struct sioa_bytes s;
    size_t n = 0;
    while (sioa_next_str(&it, &s))
        if (n++ == 0 && first)
            assert_span(s, first);
    return n;
}

/* The JSON requests of @socket.io/redis-adapter 8.3, as JSON.stringify writes them. */
static void test_json_requests(void **state)
{
    (void)state;
    struct buf scratch = {0}, json = {0};
    struct sioa_request r;
    assert_int_equal(decode_request_text("{\"uid\":\"Nf-eCJ\",\"requestId\":\"abc123\",\"type\":5,"
                                         "\"opts\":{\"rooms\":[\"r1\",\"r2\"],\"except\":[\"x\"]}}",
                                         &r, &scratch, &json),
                     0);
    assert_int_equal(r.type, SIOA_REQ_REMOTE_FETCH);
    assert_span(r.uid, "Nf-eCJ");
    assert_span(r.request_id, "abc123");
    assert_int_equal(count_strs(r.packet.rooms, "r1"), 2);
    assert_int_equal(count_strs(r.packet.except, "x"), 1);
    assert_int_equal(count_strs(r.rooms, NULL), 0);
    assert_int_equal(decode_request_text("{\"uid\":\"u\",\"requestId\":\"s\",\"type\":0,\"rooms\":[\"a\",\"b\"]}", &r,
                                         &scratch, &json),
                     0);
    assert_int_equal(r.type, SIOA_REQ_SOCKETS);
    assert_int_equal(count_strs(r.rooms, "a"), 2);
    assert_int_equal(decode_request_text(" {\"uid\":\"u\",\"requestId\":\"q1\",\"type\":1}", &r, &scratch, &json), -1);
    assert_int_equal(decode_request_text("{\"uid\":\"u\",\"requestId\":\"q1\",\"type\":1} ", &r, &scratch, &json), 0);
    assert_int_equal(r.type, SIOA_REQ_ALL_ROOMS);
    assert_int_equal(decode_request_text("{\"uid\":\"u\",\"type\":4,\"opts\":{\"rooms\":[\"sid\"],\"except\":[]},"
                                         "\"close\":true}",
                                         &r, &scratch, &json),
                     0);
    assert_int_equal(r.type, SIOA_REQ_REMOTE_DISCONNECT);
    assert_true(r.close);
    assert_int_equal(r.request_id.len, 0);
    assert_int_equal(r.sid.len, 0);
    /* serverSideEmit's data and other keys are skipped; a numeric requestId is left out */
    assert_int_equal(decode_request_text("{\"uid\":\"u\",\"type\":6,\"data\":[\"e\",{\"a\":[1]}],\"requestId\":7,"
                                         "\"extra\":null}",
                                         &r, &scratch, &json),
                     0);
    assert_int_equal(r.type, SIOA_REQ_SERVER_SIDE_EMIT);
    assert_int_equal(r.request_id.len, 0);
    buf_free(&scratch);
    buf_free(&json);
}

/* A BROADCAST (emit with acks) as notepack writes it: the packet's data comes out as JSON, binaries as spans. */
static void test_broadcast_request(void **state)
{
    (void)state;
    struct buf scratch = {0}, json = {0};
    struct sioa_request r;
    size_t len;
    const uint8_t *msg =
        unhex("85a3756964a64e662d65434aa9726571756573744964a27237a47479706507a67061636b657483a474797065"
              "02a46461746193a171a26869c4020102a36e7370a52f63686174a46f70747383a5726f6f6d7391a27231a6"
              "65786365707491a178a5666c61677381a774696d656f7574cd07d0",
              &len);
    assert_int_equal(sioa_decode_request(guarded(msg, len), len, &r, &scratch, &json), 0);
    assert_int_equal(r.type, SIOA_REQ_BROADCAST);
    assert_span(r.request_id, "r7");
    assert_span(r.packet.nsp, "/chat");
    assert_int_equal(r.packet.type, SIOA_EVENT);
    assert_text(&json, "[\"q\",\"hi\",{\"_placeholder\":true,\"num\":0}]");
    assert_int_equal(r.packet.n_attachments, 1);
    assert_int_equal(r.packet.attachments[0].len, 2);
    assert_int_equal(count_strs(r.packet.rooms, "r1"), 1);
    assert_int_equal(count_strs(r.packet.except, "x"), 1);
    buf_free(&scratch);
    buf_free(&json);
}

static void test_malformed_requests(void **state)
{
    (void)state;
    struct buf scratch = {0}, json = {0};
    struct sioa_request r;
    static const char *const bad[] = {
        "{\"uid\":\"u\",\"requestId\":\"a\"}",            /* no type */
        "{\"uid\":\"u\",\"type\":\"5\"}",                 /* type not a number */
        "{\"uid\":\"u\",\"type\":-1}",                    /* nor negative */
        "{\"uid\":\"u\",\"type\":7,\"requestId\":\"a\"}", /* BROADCAST without its packet */
        "{\"uid\":\"u\",\"type\":1,\"type\":1}",          /* a key twice */
        "{\"uid\":1,\"type\":1}",                         /* uid not a string */
        "{\"type\":0,\"rooms\":[1]}",                     /* rooms not strings */
        "{\"type\":4,\"close\":1}",                       /* close not a boolean */
        "{\"type\":5,\"opts\":[]}",                       /* opts not a map */
        "{\"type\":1}x",                                  /* trailing bytes */
        "{\"type\":1",                                    /* truncated */
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        buf_append(&json, "kept", 4);
        assert_int_equal(
            sioa_decode_request(guarded((const uint8_t *)bad[i], strlen(bad[i])), strlen(bad[i]), &r, &scratch, &json),
            -1);
        assert_text(&json, "kept");
        buf_free(&json);
    }
    size_t len;
    const uint8_t *msg = unhex("82a474797065", &len); /* msgpack map of 2, cut after a key */
    assert_int_equal(sioa_decode_request(guarded(msg, len), len, &r, &scratch, &json), -1);
    buf_free(&scratch);
    buf_free(&json);
}

/* The writer's bytes are notepack's for the same answers. */
static void test_answer_writer(void **state)
{
    (void)state;
    struct buf b = {0};
    struct sioa_writer w = {&b, false};
    const char *ack = "[{\"a\":[1,\"b\"]},2]";
    sioa_put_map(&w, 3);
    sioa_put_str(&w, "requestId", 9);
    sioa_put_str(&w, "r7", 2);
    sioa_put_str(&w, "type", 4);
    sioa_put_uint(&w, SIOA_REQ_BROADCAST_ACK);
    sioa_put_str(&w, "packet", 6);
    assert_true(sioa_put_json_first(&w, ack, strlen(ack), NULL, 0));
    assert_false(w.failed);
    assert_hex(&b, "83a9726571756573744964a27237a47479706509a67061636b657481a1619201a162");

    buf_free(&b);
    const struct sioa_bytes att = {"\xff", 1};
    const char *bin = "[{\"_placeholder\":true,\"num\":0}]";
    sioa_put_map(&w, 3);
    sioa_put_str(&w, "requestId", 9);
    sioa_put_str(&w, "r7", 2);
    sioa_put_str(&w, "type", 4);
    sioa_put_uint(&w, 9);
    sioa_put_str(&w, "packet", 6);
    assert_true(sioa_put_json_first(&w, bin, strlen(bin), &att, 1));
    assert_hex(&b, "83a9726571756573744964a27237a47479706509a67061636b6574c401ff");
    assert_false(sioa_put_json_first(&w, " [ ] ", 5, NULL, 0));
    assert_hex(&b, "83a9726571756573744964a27237a47479706509a67061636b6574c401ff");

    buf_free(&b);
    sioa_put_map(&w, 2);
    sioa_put_str(&w, "requestId", 9);
    sioa_put_str(&w, "abc", 3);
    sioa_put_str(&w, "sockets", 7);
    size_t at = sioa_begin_array(&w);
    sioa_put_map(&w, 4);
    sioa_put_str(&w, "id", 2);
    sioa_put_str(&w, "i1", 2);
    sioa_put_str(&w, "handshake", 9);
    sioa_put_map(&w, 1);
    sioa_put_str(&w, "query", 5);
    sioa_put_json(&w, "{\"room\":\"r\"}", 12, NULL, 0);
    sioa_put_str(&w, "rooms", 5);
    sioa_put_array(&w, 2);
    sioa_put_str(&w, "i1", 2);
    sioa_put_str(&w, "r", 1);
    sioa_put_str(&w, "data", 4);
    sioa_put_map(&w, 0);
    sioa_end_array(&w, at, 1);
    assert_false(w.failed);
    assert_hex(&b,
               "82a9726571756573744964a3616263a7736f636b6574739184a26964a26931a968616e647368616b6581a5717565727981a4"
               "726f6f6da172a5726f6f6d7392a26931a172a46461746180");
    sioa_put_json(&w, "[1,", 3, NULL, 0); /* malformed JSON: the error sticks */
    assert_true(w.failed);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notepack_vectors),
        cmocka_unit_test(test_strings_of_every_width),
        cmocka_unit_test(test_array_32),
        cmocka_unit_test(test_rooms_and_namespace),
        cmocka_unit_test(test_binary),
        cmocka_unit_test(test_bad_placeholders),
        cmocka_unit_test(test_encode_json_corners),
        cmocka_unit_test(test_encode_malformed),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_decode_numbers),
        cmocka_unit_test(test_decode_strings_and_keys),
        cmocka_unit_test(test_decode_lenient),
        cmocka_unit_test(test_decode_malformed),
        cmocka_unit_test(test_decode_truncated),
        cmocka_unit_test(test_attachment_limit),
        cmocka_unit_test(test_buffers),
        cmocka_unit_test(test_channels),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_json_requests),
        cmocka_unit_test(test_broadcast_request),
        cmocka_unit_test(test_malformed_requests),
        cmocka_unit_test(test_answer_writer),
    };
    return cmocka_run_group_tests_name("sioadapter", tests, NULL, unmap_guard);
}
