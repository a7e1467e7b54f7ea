/* The codec as loadgen uses it (common/eio.c, common/jscan.c: every packet type, namespaces, ack ids, attachments,
 * heads of longer messages (cut), malformed input, the JSON helpers, the encoders' round trip), and loadgen/sio.c's
 * own helpers: the ping watchdog, attachment assembly, the strict polling split. test_eio.c has refserver's side. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "guard.h"
#include "loadgen/payload.h"
#include "loadgen/sio.h"

#include <stdio.h>
#include <string.h>

static int dec(const char *s, struct eio_packet *k)
{
    return eio_decode(s, strlen(s), true, k);
}

static void assert_span(struct jscan_span sp, const char *want)
{
    if (!sp.p || sp.len != strlen(want) || memcmp(sp.p, want, sp.len) != 0)
        fail_msg("span '%.*s', expected '%s'", sp.p ? (int)sp.len : 6, sp.p ? sp.p : "(null)", want);
}

static void test_engine_io(void **state)
{
    (void)state;
    struct eio_packet k;
    assert_int_equal(dec("0{\"sid\":\"abc\",\"upgrades\":[],\"pingInterval\":25000,\"pingTimeout\":20000}", &k), 0);
    assert_int_equal(k.eio, EIO_OPEN);
    assert_int_equal(k.type, -1);
    struct jscan_span v;
    assert_int_equal(jscan_member(k.data.p, k.data.len, "pingInterval", &v), 1);
    assert_span(v, "25000");
    assert_int_equal(jscan_member(k.data.p, k.data.len, "pingTimeout", &v), 1);
    assert_span(v, "20000");
    assert_int_equal(jscan_member(k.data.p, k.data.len, "maxPayload", &v), 0);
    static const struct {
        const char *s;
        int eio;
    } simple[] = {{"1", EIO_CLOSE}, {"2", EIO_PING},    {"2probe", EIO_PING},
                  {"3", EIO_PONG},  {"5", EIO_UPGRADE}, {"6", EIO_NOOP}};
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++) {
        assert_int_equal(dec(simple[i].s, &k), 0);
        assert_int_equal(k.eio, simple[i].eio);
    }
    assert_span(k.data, "");
    const char *bad[] = {"", "7", "x", "0", "0[]", "0{", "0{\"a\":}", "0{} x", "4", "47", "4x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (dec(bad[i], &k) != -1)
            fail_msg("'%s' decoded", bad[i]);
}

static void test_connect_disconnect(void **state)
{
    (void)state;
    struct eio_packet k;
    assert_int_equal(dec("40", &k), 0);
    assert_int_equal(k.type, EIO_CONNECT);
    assert_span(k.nsp, "/");
    assert_int_equal(dec("40{\"sid\":\"x1\"}", &k), 0);
    assert_span(k.data, "{\"sid\":\"x1\"}");
    assert_int_equal(dec("40/admin,{\"sid\":\"x1\",\"pid\":\"p\"}", &k), 0);
    assert_span(k.nsp, "/admin");
    assert_int_equal(k.ack, -1);
    assert_int_equal(dec("41", &k), 0);
    assert_int_equal(k.type, EIO_DISCONNECT);
    assert_int_equal(dec("41/admin,", &k), 0);
    assert_span(k.nsp, "/admin");
    assert_int_equal(dec("41/admin", &k), 0); /* socket.io-parser: the namespace runs to the end without a ',' */
    assert_span(k.nsp, "/admin");
    assert_int_equal(dec("44{\"message\":\"no\",\"data\":{\"a\":1}}", &k), 0);
    assert_int_equal(k.type, EIO_CONNECT_ERROR);
    assert_int_equal(dec("44/nope,{\"message\":\"Invalid namespace\"}", &k), 0);
    assert_span(k.nsp, "/nope");
    assert_int_equal(dec("44\"old style\"", &k), 0);
    const char *bad[] = {"40[1]", "40\"s\"", "41{}", "44", "44[]", "40{\"a\":1}{}", "48"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (dec(bad[i], &k) != -1)
            fail_msg("'%s' decoded", bad[i]);
}

/* socket.io-parser reads an ack id after any packet type (isPacketValid checks only that it is an integer); the
 * receiver ignores it where the type takes no ack. */
static void test_ack_id_on_any_type(void **state)
{
    (void)state;
    struct eio_packet k;
    assert_int_equal(dec("40123{}", &k), 0);
    assert_int_equal(k.type, EIO_CONNECT);
    assert_int_equal(k.ack, 123);
    assert_span(k.data, "{}");
    assert_int_equal(dec("41/admin,5", &k), 0);
    assert_int_equal(k.type, EIO_DISCONNECT);
    assert_int_equal(k.ack, 5);
    assert_int_equal(dec("447\"no\"", &k), 0);
    assert_int_equal(k.ack, 7);
}

/* An ACK carries its arguments (isPacketValid: an array), and a payload of whitespace only is not JSON (JSON.parse
 * throws, so socket.io-parser refuses it); an empty payload is fine where the type allows one. */
static void test_payload_required(void **state)
{
    (void)state;
    struct eio_packet k;
    const char *bad[] = {"43", "431", "43/admin,12", "461-", "40 ", "41\n", "43\t", "461- ", "431 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (dec(bad[i], &k) != -1)
            fail_msg("'%s' decoded", bad[i]);
    assert_int_equal(dec("40", &k), 0);
    assert_int_equal(dec("41/admin,", &k), 0);
    assert_int_equal(dec("431 [] ", &k), 0);
    assert_int_equal(eio_decode("40 ", 3, false, &k), 0); /* a head: the object may follow */
    assert_true(k.cut);
}

/* Depth counts every value, scalars too, as refserver's relay (sioadapter) counts it: 32 levels, the event's array
 * the first. */
static void test_depth_counts_scalars(void **state)
{
    (void)state;
    struct eio_packet k;
    char msg[256];
    for (int n = 30; n <= 32; n++) {
        snprintf(msg, sizeof msg, "42[\"e\",%.*s1%.*s]", n, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", n,
                 "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
        /* the array 1, n nested arrays 2..n+1, the scalar n+2 */
        assert_int_equal(dec(msg, &k), n + 2 <= 32 ? 0 : -1);
        snprintf(msg, sizeof msg, "42[\"e\",%.*s%.*s]", n, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", n,
                 "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]");
        assert_int_equal(dec(msg, &k), n + 1 <= 32 ? 0 : -1);
    }
}

/* A namespace is any bytes up to ',' (socket.io-parser), at most 128 of them (ours: a bound, as refserver's). */
static void test_namespace_bound(void **state)
{
    (void)state;
    struct eio_packet k;
    char msg[300] = "42/";
    memset(msg + 3, 'n', 127);
    strcpy(msg + 130, ",[\"e\"]");
    assert_int_equal(dec(msg, &k), 0);
    assert_int_equal(k.nsp.len, 128);
    memset(msg + 3, 'n', 128);
    strcpy(msg + 131, ",[\"e\"]");
    assert_int_equal(dec(msg, &k), -1);
    assert_int_equal(eio_decode(msg, 131, false, &k), -1); /* a head already past the bound */
    assert_int_equal(dec("42/x\"y z,[\"e\"]", &k), 0);
    assert_span(k.nsp, "/x\"y z");
}

static void test_events_and_acks(void **state)
{
    (void)state;
    struct eio_packet k;
    assert_int_equal(dec("42[\"chat\",\"hi\"]", &k), 0);
    assert_int_equal(k.type, EIO_EVENT);
    assert_span(k.event, "chat");
    assert_span(k.arg, "\"hi\"");
    assert_int_equal(dec("42[\"chat\"]", &k), 0);
    assert_int_equal(k.arg.len, 0);
    assert_int_equal(dec("421[\"chat\",\"x\"]", &k), 0);
    assert_int_equal(k.ack, 1);
    assert_int_equal(dec("42/admin,7[\"e\",{\"a\":[1,2.5e3,-0,true,false,null]}]", &k), 0);
    assert_span(k.nsp, "/admin");
    assert_int_equal(k.ack, 7);
    assert_span(k.event, "e");
    assert_span(k.arg, "{\"a\":[1,2.5e3,-0,true,false,null]}");
    /* connection state recovery: the offset is a last argument after ours */
    assert_int_equal(dec("42[\"chat\",\"x\",\"Q81OPqI\"]", &k), 0);
    assert_span(k.arg, "\"x\"");
    assert_int_equal(dec("42[ \"chat\" , \"x\" ]", &k), 0);
    assert_span(k.arg, "\"x\"");
    assert_int_equal(dec("42[12,\"x\"]", &k), 0); /* a number is a valid event name */
    assert_span(k.event, "12");
    assert_int_equal(dec("42[\"a\\\"b\",1]", &k), 0);
    assert_span(k.event, "a\\\"b");
    assert_int_equal(dec("431[\"got:x\"]", &k), 0);
    assert_int_equal(k.type, EIO_ACK);
    assert_int_equal(k.ack, 1);
    assert_int_equal(dec("43/admin,12[]", &k), 0);
    assert_int_equal(k.ack, 12);
    assert_int_equal(dec("451-[\"e\",{\"_placeholder\":true,\"num\":0}]", &k), 0);
    assert_int_equal(k.type, EIO_BINARY_EVENT);
    assert_int_equal(k.attachments, 1);
    assert_int_equal(dec("462-/admin,3[{\"_placeholder\":true,\"num\":1}]", &k), 0);
    assert_int_equal(k.type, EIO_BINARY_ACK);
    assert_int_equal(k.ack, 3);
    assert_span(k.nsp, "/admin");
    const char *bad[] = {"42",
                         "42[]",
                         "42{}",
                         "42[\"chat\",]",
                         "42[\"chat\"]x",
                         "42[\"connect\"]",
                         "42[\"disconnect\",1]",
                         "45[\"e\"]",
                         "45-[\"e\"]",
                         "45x-[\"e\"]",
                         "42[\"a\\q\"]",
                         "42[\"a\",01]",
                         "42[\"a\",1.]",
                         "42[\"a\",tru]",
                         "42[\"chat\",\"hi\"",
                         "42[true]",
                         "42[\"a\" \"b\"]",
                         "43[1",
                         "421234567890123456[\"a\"]",
                         "42[\"a\x01\"]",
                         "42[\"a\",{1:2}]",
                         "42[\"a\",{\"k\"}]",
                         "42/admin,x[\"a\"]"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (dec(bad[i], &k) != -1)
            fail_msg("'%s' decoded", bad[i]);
    char deep[128] = "42[\"a\",";
    for (int i = 0; i < 40; i++)
        strcat(deep, "[");
    for (int i = 0; i < 40; i++)
        strcat(deep, "]");
    strcat(deep, "]");
    assert_int_equal(dec(deep, &k), -1); /* nesting is bounded */
}

static void test_heads(void **state)
{
    (void)state;
    struct eio_packet k;
    const char *head = "42[\"chat\",\"{\\\"wsh\\\":1,\\\"e\\\":0";
    assert_int_equal(eio_decode(head, strlen(head), false, &k), 0);
    assert_true(k.cut);
    assert_span(k.event, "chat");
    assert_span(k.arg, "\"{\\\"wsh\\\":1,\\\"e\\\":0");
    assert_int_equal(eio_decode(head, strlen(head), true, &k), -1); /* as a whole message it is cut short */
    assert_int_equal(eio_decode("42[\"ch", 6, false, &k), 0);
    assert_true(k.cut);
    assert_null(k.event.p);
    assert_int_equal(eio_decode("42/adm", 6, false, &k), 0);
    assert_true(k.cut);
    assert_int_equal(eio_decode("431[", 4, false, &k), 0);
    assert_true(k.cut);
    assert_int_equal(eio_decode("40{\"sid\"", 8, false, &k), 0);
    assert_int_equal(eio_decode("42[\"chat\",x", 11, false, &k), -1); /* wrong bytes stay wrong */
    assert_int_equal(eio_decode("42[\"chat\",\"a\"]x", 15, false, &k), -1);
}

static void test_json_string(void **state)
{
    (void)state;
    char out[64];
    size_t n;
    const char *s = "\"a\\\"b\\\\c\\/\\n\\u0041\\u00e9\\u20ac\" tail";
    assert_int_equal(jscan_unescape(s, strlen(s), out, sizeof out, &n), 1);
    assert_int_equal(n, strlen("a\"b\\c/\nA\xc3\xa9\xe2\x82\xac"));
    assert_memory_equal(out, "a\"b\\c/\nA\xc3\xa9\xe2\x82\xac", n);
    assert_int_equal(jscan_unescape(s, 3, out, sizeof out, &n), 0); /* cut inside an escape */
    assert_int_equal(n, 1);
    assert_int_equal(jscan_unescape(s, strlen(s), out, 3, &n), 0); /* out of room */
    assert_int_equal(n, 3);
    assert_int_equal(jscan_unescape("\"\\x\"", 4, out, sizeof out, &n), -1);
    assert_int_equal(jscan_unescape("\"\\u00g1\"", 8, out, sizeof out, &n), -1);
    assert_int_equal(jscan_unescape("x", 1, out, sizeof out, &n), -1);
    assert_true(jscan_is_object("{\"token\":\"x\"}", 13));
    assert_true(jscan_is_object(" {} ", 4));
    assert_false(jscan_is_object("[]", 2));
    assert_false(jscan_is_object("{\"a\":1", 6));
    struct jscan_span v;
    assert_int_equal(jscan_member("{\"a\":{\"b\":1},\"b\":2}", 19, "b", &v), 1);
    assert_span(v, "2");
    assert_int_equal(jscan_member("{\"a\":1", 6, "a", &v), -1);
}

static void test_encode_round_trip(void **state)
{
    (void)state;
    struct lg_msg m = {.emitter = 7, .round = 3, .seq = 3, .send_ns = INT64_C(9223372036854775807)}, back;
    char payload[120], frame[1024], head[LG_PAYLOAD_PREFIX];
    assert_int_equal(lg_payload_encode(&m, payload, sizeof payload), (int)sizeof payload);
    const char *nsps[] = {"/", "/admin"};
    for (int i = 0; i < 2; i++) {
        size_t n = eio_encode_event(frame, sizeof frame, nsps[i], "chat", payload, sizeof payload);
        assert_true(n > sizeof payload);
        assert_true(n <= eio_event_max(strlen(nsps[i]), 4, sizeof payload));
        struct eio_packet k;
        assert_int_equal(eio_decode(frame, n, true, &k), 0);
        assert_int_equal(k.type, EIO_EVENT);
        assert_span(k.nsp, nsps[i]);
        assert_span(k.event, "chat");
        size_t hn;
        assert_int_equal(jscan_unescape(k.arg.p, k.arg.len, head, sizeof head, &hn), 1);
        assert_int_equal(hn, sizeof payload);
        assert_memory_equal(head, payload, hn);
        assert_int_equal(lg_payload_parse(head, hn, &back), 1);
        assert_int_equal(back.send_ns, m.send_ns);
    }
    assert_int_equal(eio_encode_event(frame, 10, "/", "chat", payload, sizeof payload), 0);
    size_t n = eio_encode_event(frame, sizeof frame, "/", "e", "a\"\\\x01", 4);
    assert_int_equal(n, strlen("42[\"e\",\"a\\\"\\\\\\u0001\"]"));
    assert_memory_equal(frame, "42[\"e\",\"a\\\"\\\\\\u0001\"]", n);
    n = eio_encode_control(frame, sizeof frame, EIO_CONNECT, "/", NULL);
    assert_memory_equal(frame, "40", n);
    assert_int_equal(n, 2);
    n = eio_encode_control(frame, sizeof frame, EIO_CONNECT, "/admin", "{\"token\":\"x\"}");
    assert_int_equal(n, strlen("40/admin,{\"token\":\"x\"}"));
    assert_memory_equal(frame, "40/admin,{\"token\":\"x\"}", n);
    n = eio_encode_control(frame, sizeof frame, EIO_DISCONNECT, "/admin", NULL);
    assert_int_equal(n, strlen("41/admin,"));
    assert_int_equal(eio_encode_control(frame, 3, EIO_CONNECT, "/admin", NULL), 0);
}

/* The ping watchdog's clock: the deadline is the wait after now, never 0, capped, and compared across the wrap. */
static void test_ping_deadline(void **state)
{
    (void)state;
    assert_int_equal(sio_ping_deadline(1000, 200, 200), 1400);
    assert_false(sio_ping_overdue(1400, 1399));
    assert_false(sio_ping_overdue(1400, 1400));
    assert_true(sio_ping_overdue(1400, 1401));
    assert_false(sio_ping_overdue(0, 123456)); /* not armed */
    /* 25 s + 20 s (the defaults) across the 2^32 ms wrap */
    uint32_t due = sio_ping_deadline(UINT32_MAX - 1000, 25000, 20000);
    assert_int_equal(due, 43999);
    assert_false(sio_ping_overdue(due, UINT32_MAX));
    assert_false(sio_ping_overdue(due, 43999));
    assert_true(sio_ping_overdue(due, 44000));
    assert_int_equal(sio_ping_deadline(UINT32_MAX - 399, 200, 200), 1); /* 0 would read as not armed */
    assert_true(sio_ping_overdue(1, 2));
    /* huge values are capped, so the comparison stays within half the clock */
    due = sio_ping_deadline(5, UINT32_MAX, UINT32_MAX);
    assert_int_equal(due, 5 + SIO_PING_WAIT_MAX);
    assert_false(sio_ping_overdue(due, 6));
    assert_true(sio_ping_overdue(due, due + 1));
}

/* Split a polling payload into "|"-joined items ("b:" before a binary one); -1 appended on a malformed one. */
static void split(const char *s, char *out, size_t cap)
{
    size_t len = strlen(s), off = 0, n = 0;
    const char *g = guarded(s, len);
    struct eio_item it;
    int rc;
    out[0] = '\0';
    while ((rc = sio_payload_next(g, len, &off, &it)) == 1)
        n += (size_t)snprintf(out + n, cap - n, "%s%s%.*s", n ? "|" : "", it.binary ? "b:" : "", (int)it.text.len,
                              it.text.p);
    if (rc < 0)
        snprintf(out + n, cap - n, "%s-1", n ? "|" : "");
}

static void test_payload_split(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"", "-1"},
        {"6", "6"},
        {"2\x1e"
         "40{\"sid\":\"x\"}",
         "2|40{\"sid\":\"x\"}"},
        {"42[\"chat\",\"a\x1f\"]\x1e"
         "3",
         "42[\"chat\",\"a\x1f\"]|3"},
        {"bAQID\x1e"
         "4hi",
         "b:bAQID|4hi"},
        {"b", "b:b"}, /* an empty attachment */
        {"\x1e"
         "4",
         "-1"},
        {"4\x1e", "4|-1"},
        {"4\x1e\x1e"
         "4",
         "4|-1"},
        {"bAQI\x1e"
         "4",
         "-1"}, /* not base64: a length that is not a multiple of 4 */
        {"4a\x1e"
         "b!!!!",
         "4a|-1"},
    };
    char got[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        split(cases[i].in, got, sizeof got);
        if (strcmp(got, cases[i].want) != 0)
            fail_msg("payload %zu: got '%s', want '%s'", i, got, cases[i].want);
    }
}

/* engine.io-parser's decodePayload: the items in order, an empty one (an empty body is one) is its error packet,
 * and what came before it still counts. */
static void test_payload_empty_items(void **state)
{
    (void)state;
    static const char *const cases[][2] = {{"", "-1"},
                                           {"3\x1e", "3|-1"},
                                           {"6\x1e\x1e", "6|-1"},
                                           {"\x1e", "-1"},
                                           {"2\x1e\x1e"
                                            "3",
                                            "2|-1"}};
    char got[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        split(cases[i][0], got, sizeof got);
        if (strcmp(got, cases[i][1]) != 0)
            fail_msg("payload %zu: got '%s', want '%s'", i, got, cases[i][1]);
    }
}

static void test_base64(void **state)
{
    (void)state;
    static const struct {
        const char *b64;
        long len;
    } ok[] = {{"", 0}, {"AQ==", 1}, {"AQI=", 2}, {"AQID", 3}, {"AQIDBA==", 4}, {"+/+/", 3}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        assert_int_equal(eio_base64_len(ok[i].b64, strlen(ok[i].b64)), ok[i].len);
    const char *bad[] = {"A",    "AQ=",   "AQ=A", "A===", "====", "AQ-=", "AR==" /* non-zero dropped bits */,
                         "AQJ=", "AQ== ", " AQ=", "AQ\n="};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (eio_base64_len(bad[i], strlen(bad[i])) != -1)
            fail_msg("'%s' taken as base64", bad[i]);
    unsigned char out[8];
    const char *in = guarded("AQIDBA==", 8);
    assert_int_equal(eio_base64_decode(in, 8, out, 4), 4); /* exactly the real length fits */
    assert_memory_equal(out, "\x01\x02\x03\x04", 4);
    assert_int_equal(eio_base64_decode(in, 8, out, 3), -1);
    assert_int_equal(eio_base64_decode("AQ=", 3, out, sizeof out), -1);
    /* round trip through the encoder, every length up to a few quanta */
    unsigned char data[10], back[10];
    char item[32];
    for (size_t n = 0; n <= sizeof data; n++) {
        for (size_t i = 0; i < n; i++)
            data[i] = (unsigned char)(0xf0 + i * 7);
        size_t il = eio_encode_binary(item, sizeof item, data, n);
        assert_int_equal(il, 1 + (n + 2) / 3 * 4);
        assert_int_equal(item[0], 'b');
        assert_int_equal(eio_base64_decode(item + 1, il - 1, back, n), (long)n);
        assert_memory_equal(back, data, n);
        assert_int_equal(eio_decode_binary(item, il), (long)n); /* in place, as refserver reads a POST */
        assert_memory_equal(item, data, n);
    }
    assert_int_equal(eio_encode_binary(item, 5, data, 3), 0); /* 1 + 4 + the NUL does not fit in 5 */
}

/* A POSTed binary item is base64 by the same rule as loadgen's: '=' only as the last padding, dropped bits zero. */
static void test_decode_binary_item(void **state)
{
    (void)state;
    const char *bad[] = {"", "AQ==", "b=QUJ", "bQ=Q=", "b====", "bQ===", "bQR==", "bQUJ=", "bQUJD\n==", "b QUJ"};
    char item[16];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        strcpy(item, bad[i]);
        if (eio_decode_binary(item, strlen(item)) != -1)
            fail_msg("'%s' decoded", bad[i]);
    }
    strcpy(item, "b");
    assert_int_equal(eio_decode_binary(item, 1), 0);
}

static void test_open_packet(void **state)
{
    (void)state;
    struct eio_open o;
    const char *why = NULL;
    const char *open = "{\"sid\":\"lv_VI97HAXpY6yYWAAAC\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,"
                       "\"pingTimeout\":20000,\"maxPayload\":1000000}";
    assert_int_equal(eio_open_parse(open, strlen(open), true, &o, &why), 0);
    assert_span(o.sid, "lv_VI97HAXpY6yYWAAAC");
    assert_int_equal(o.ping_interval, 25000);
    assert_int_equal(o.ping_timeout, 20000);
    assert_true(o.upgrade_ws);
    const char *ws = "{\"sid\":\"abc\",\"upgrades\":[],\"pingInterval\":300,\"pingTimeout\":200}";
    assert_int_equal(eio_open_parse(ws, strlen(ws), true, &o, &why), 0);
    assert_false(o.upgrade_ws);
    const char *bad[] = {"{\"sid\":\"abc\",\"pingInterval\":300}",
                         "{\"sid\":\"a b\",\"pingInterval\":3,\"pingTimeout\":2}",
                         "{\"sid\":5,\"pingInterval\":3,\"pingTimeout\":2}",
                         "{\"pingInterval\":3,\"pingTimeout\":2}",
                         "{\"sid\":\"a\",\"pingInterval\":-3,\"pingTimeout\":2}",
                         "{\"sid\":\"a\",\"pingInterval\":99999999999,\"pingTimeout\":2}",
                         "[1]",
                         "{"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        if (eio_open_parse(bad[i], strlen(bad[i]), true, &o, &why) != -1 || !why)
            fail_msg("open packet '%s' accepted", bad[i]);
    }
    /* over websocket the sid is not needed */
    assert_int_equal(eio_open_parse(bad[3], strlen(bad[3]), false, &o, &why), 0);
}

static void test_error_code(void **state)
{
    (void)state;
    const char *unknown = "{\"code\":1,\"message\":\"Session ID unknown\"}";
    assert_int_equal(eio_error_code(unknown, strlen(unknown)), 1);
    assert_int_equal(eio_error_code("{\"code\":3}", 10), 3);
    const char *bad[] = {"", "ok", "{\"code\":\"1\"}", "{\"code\":100}", "{\"message\":\"x\"}", "{\"code\":1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(eio_error_code(bad[i], strlen(bad[i])), -1);
}

/* 42ID[...] and 451-ID[...] with and without a namespace: what refserver and socket.io-parser read back. */
static void test_encode_ack_and_binary(void **state)
{
    (void)state;
    char out[256];
    struct eio_packet k;
    size_t n = eio_encode_emit(out, sizeof out, "/", "chat", 7, "m", 1);
    assert_int_equal(n, strlen("427[\"chat\",\"m\"]"));
    assert_memory_equal(out, "427[\"chat\",\"m\"]", n);
    n = eio_encode_emit(out, sizeof out, "/admin", "chat", 123, "m", 1);
    assert_memory_equal(out, "42/admin,123[\"chat\",\"m\"]", n);
    assert_int_equal(eio_decode(out, n, true, &k), 0);
    assert_int_equal(k.ack, 123);
    assert_span(k.nsp, "/admin");
    n = eio_encode_emit(out, sizeof out, "/", "chat", -1, "m", 1); /* no id: as eio_encode_event */
    assert_memory_equal(out, "42[\"chat\",\"m\"]", n);
    assert_int_equal(eio_encode_emit(out, sizeof out, "/", "chat", INT64_C(1000000000000000), "m", 1), 0);
    n = eio_encode_emit(out, eio_event_max(1, 4, 1), "/", "chat", INT64_C(999999999999999), "m", 1);
    assert_int_not_equal(n, 0);

    n = eio_encode_binary_event(out, sizeof out, "/", "chat", -1);
    assert_memory_equal(out, "451-[\"chat\",{\"_placeholder\":true,\"num\":0}]", n);
    assert_int_equal(eio_decode(out, n, true, &k), 0);
    assert_int_equal(k.type, EIO_BINARY_EVENT);
    assert_int_equal(k.attachments, 1);
    assert_int_equal(eio_placeholder_num(k.arg), 0);
    n = eio_encode_binary_event(out, sizeof out, "/admin", "chat", 42);
    assert_memory_equal(out, "451-/admin,42[\"chat\",{\"_placeholder\":true,\"num\":0}]", n);
    assert_int_equal(eio_decode(out, n, true, &k), 0);
    assert_int_equal(k.ack, 42);
    assert_int_equal(eio_encode_binary_event(out, 20, "/", "chat", 1), 0);
    assert_true(eio_encode_binary_event(out, EIO_BINARY_HEAD_MAX(6, 4), "/admin", "chat", 999999999999999) > 0);
}

/* The one head writer: every field, the namespace as a span (an echoed one need not end in NUL), the bounds. */
static void test_encode_head(void **state)
{
    (void)state;
    char out[EIO_HEAD_MAX(EIO_NSP_MAX)];
    struct eio_packet k;
    size_t n = eio_encode_head(out, sizeof out, EIO_CONNECT, 0, NULL, 0, -1);
    assert_memory_equal(out, "40", n);
    n = eio_encode_head(out, sizeof out, EIO_ACK, 0, "/", 1, 7);
    assert_memory_equal(out, "437", n);
    n = eio_encode_head(out, sizeof out, EIO_BINARY_ACK, 10, "/chatX", 5, 12);
    assert_int_equal(n, strlen("4610-/chat,12"));
    assert_memory_equal(out, "4610-/chat,12", n);
    memcpy(out + n, "[]", 2);
    assert_int_equal(eio_decode(out, n + 2, true, &k), 0);
    assert_int_equal(k.attachments, 10);
    assert_span(k.nsp, "/chat");
    assert_int_equal(k.ack, 12);
    n = eio_encode_head(out, sizeof out, EIO_CONNECT_ERROR, 0, "/a\"b", 4, -1);
    assert_memory_equal(out, "44/a\"b,", n);
    assert_int_equal(eio_encode_head(out, 7, EIO_DISCONNECT, 0, "/admin", 6, -1), 0); /* "41/admin," is 9 */
    assert_int_equal(eio_encode_head(out, 9, EIO_DISCONNECT, 0, "/admin", 6, -1), 9);
    assert_int_equal(eio_encode_head(out, sizeof out, 7, 0, NULL, 0, -1), 0);
    assert_int_equal(eio_encode_head(out, sizeof out, EIO_EVENT, 0, NULL, 0, INT64_C(1000000000000000)), 0);
    assert_int_equal(eio_encode_head(out, sizeof out, EIO_EVENT, 0, "/x", EIO_NSP_MAX + 1, -1), 0);
}

static void test_placeholder(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        int num;
    } cases[] = {
        {"{\"_placeholder\":true,\"num\":0}", 0},
        {"{ \"num\" : 3 , \"_placeholder\" : true }", 3},
        {"{\"_placeholder\":true,\"num\":9}", 9},
        {"{\"_placeholder\":true,\"num\":10}", -1},
        {"{\"_placeholder\":false,\"num\":0}", -1},
        {"{\"_placeholder\":true}", -1},
        {"{\"_placeholder\":true,\"num\":\"0\"}", -1},
        {"{\"_placeholder\":true,\"num\":0,\"x\":1}", -1},
        {"{\"_placeholder\":true,\"num\":0,\"x\":\",\"}", -1},
        {"{\"a\":\"_placeholder,num\",\"_placeholder\":true,\"num\":1}", -1},
        {"\"x\"", -1},
        {"{\"_placeholder\":true,\"num\":0", -1},
        {"", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct jscan_span v = {cases[i].json, strlen(cases[i].json)};
        if (eio_placeholder_num(v) != cases[i].num)
            fail_msg("%s: got %d, expected %d", cases[i].json, eio_placeholder_num(v), cases[i].num);
    }
}

/* Begin, attachments, the carrier, the end; a foreign event and a binary ack have no carrier; over 10 is refused. */
static void test_reassembly(void **state)
{
    (void)state;
    struct eio_packet k;
    struct sio_asm a;
    const char *why = NULL;
    bool done;
    assert_int_equal(dec("42[\"chat\",\"x\"]", &k), 0);
    assert_int_equal(sio_asm_begin(&a, &k, true, 5, &why), 0);
    assert_int_equal(dec("452-[\"chat\",{\"_placeholder\":true,\"num\":1},{\"_placeholder\":true,\"num\":0}]", &k), 0);
    assert_int_equal(sio_asm_begin(&a, &k, true, 5, &why), 1);
    assert_int_equal(a.want, 2);
    assert_int_equal(a.carrier, 1);
    assert_int_equal(a.since_ms, 5);
    assert_int_equal(sio_asm_attachment(&a, &done), 0);
    assert_false(done);
    assert_int_equal(sio_asm_attachment(&a, &done), 1);
    assert_true(done);
    assert_int_equal(sio_asm_begin(&a, &k, false, 5, &why), 1); /* not ours: no carrier */
    assert_int_equal(a.carrier, -1);
    assert_int_equal(dec("451-[\"chat\",{\"_placeholder\":true,\"num\":1}]", &k), 0); /* num past the count */
    assert_int_equal(sio_asm_begin(&a, &k, true, 5, &why), 1);
    assert_int_equal(a.carrier, -1);
    assert_int_equal(dec("461-3[{\"_placeholder\":true,\"num\":0}]", &k), 0);
    assert_int_equal(sio_asm_begin(&a, &k, true, 5, &why), 1);
    assert_int_equal(a.carrier, -1);
    assert_int_equal(k.ack, 3);
    assert_int_equal(dec("450-[\"chat\",1]", &k), 0); /* no attachment: complete at once */
    assert_int_equal(sio_asm_begin(&a, &k, true, 5, &why), 0);
    assert_int_equal(dec("4510-[\"chat\",1]", &k), 0);
    assert_int_equal(sio_asm_begin(&a, &k, true, 5, &why), 1);
    assert_int_equal(dec("4511-[\"chat\",1]", &k), 0);
    assert_int_equal(sio_asm_begin(&a, &k, true, 5, &why), -1);
    assert_non_null(why);
    assert_non_null(strstr(why, "more than 10"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_io),
        cmocka_unit_test(test_connect_disconnect),
        cmocka_unit_test(test_events_and_acks),
        cmocka_unit_test(test_heads),
        cmocka_unit_test(test_json_string),
        cmocka_unit_test(test_encode_round_trip),
        cmocka_unit_test(test_ping_deadline),
        cmocka_unit_test(test_payload_split),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_decode_binary_item),
        cmocka_unit_test(test_open_packet),
        cmocka_unit_test(test_error_code),
        cmocka_unit_test(test_encode_ack_and_binary),
        cmocka_unit_test(test_encode_head),
        cmocka_unit_test(test_placeholder),
        cmocka_unit_test(test_reassembly),
        cmocka_unit_test(test_ack_id_on_any_type),
        cmocka_unit_test(test_payload_required),
        cmocka_unit_test(test_depth_counts_scalars),
        cmocka_unit_test(test_payload_empty_items),
        cmocka_unit_test(test_namespace_bound),
    };
    return cmocka_run_group_tests(tests, NULL, unmap_guard);
}
