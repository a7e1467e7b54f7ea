/* common/eio.c (and its scanner, common/jscan.c): Engine.IO v4 / Socket.IO v5 packet decoding (strict), JSON
 * validation, ids, the open packet, polling payloads.
 * Every input is parsed from right before a guard page, so a read past the end crashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "guard.h"
#include "common/eio.h"

#include <stdio.h>
#include <string.h>

static int parse(const char *s, struct eio_packet *pk)
{
    size_t n = strlen(s);
    return eio_decode(guarded(s, n), n, true, pk);
}

static void assert_span(const char *p, size_t len, const char *want)
{
    assert_int_equal(len, strlen(want));
    assert_memory_equal(p, want, len);
}

static void test_engine_io_types(void **state)
{
    (void)state;
    struct eio_packet pk;
    assert_int_equal(parse("2", &pk), 0);
    assert_int_equal(pk.eio, EIO_PING);
    assert_int_equal(pk.data.len, 0);
    assert_int_equal(parse("3probe", &pk), 0);
    assert_int_equal(pk.eio, EIO_PONG);
    assert_span(pk.data.p, pk.data.len, "probe");
    assert_int_equal(parse("6", &pk), 0);
    assert_int_equal(pk.eio, EIO_NOOP);
    assert_int_equal(parse("1", &pk), 0);
    assert_int_equal(parse("", &pk), -1);
    assert_int_equal(parse("7", &pk), -1);
    assert_int_equal(parse("x", &pk), -1);
    assert_int_equal(parse("4", &pk), -1); /* a message needs a Socket.IO type */
}

/* An open packet carries the handshake, a JSON object (as a client reads it); anything else is malformed. */
static void test_open_is_an_object(void **state)
{
    (void)state;
    struct eio_packet pk;
    assert_int_equal(parse("0{\"sid\":\"x\"}", &pk), 0);
    assert_int_equal(pk.eio, EIO_OPEN);
    assert_int_equal(parse(" 0", &pk), -1);
    assert_int_equal(parse("0", &pk), -1);
    assert_int_equal(parse("0abc", &pk), -1);
    assert_int_equal(parse("0[]", &pk), -1);
    assert_int_equal(parse("0{", &pk), -1);
}

static void test_connect(void **state)
{
    (void)state;
    struct eio_packet pk;
    assert_int_equal(parse("40", &pk), 0);
    assert_int_equal(pk.eio, EIO_MESSAGE);
    assert_int_equal(pk.type, EIO_CONNECT);
    assert_span(pk.nsp.p, pk.nsp.len, "/");
    assert_int_equal(pk.data.len, 0);
    assert_int_equal(parse("40{\"token\":\"x\"}", &pk), 0);
    assert_span(pk.data.p, pk.data.len, "{\"token\":\"x\"}");
    assert_int_equal(parse("40/admin,{\"a\":[1,2.5e3,true,null]}", &pk), 0);
    assert_span(pk.nsp.p, pk.nsp.len, "/admin");
    assert_int_equal(parse("40/admin,", &pk), 0);
    assert_span(pk.nsp.p, pk.nsp.len, "/admin");
    assert_int_equal(parse("41/admin", &pk), 0); /* a namespace may end the packet */
    assert_int_equal(pk.type, EIO_DISCONNECT);
    assert_span(pk.nsp.p, pk.nsp.len, "/admin");
    assert_int_equal(parse("40[1]", &pk), -1); /* auth must be an object */
    assert_int_equal(parse("40\"x\"", &pk), -1);
    assert_int_equal(parse("40{", &pk), -1);
    assert_int_equal(parse("41{}", &pk), -1); /* DISCONNECT carries nothing */
}

/* A namespace is any bytes up to ',' (socket.io-parser): a server that does not serve it answers CONNECT_ERROR,
 * so the parser must not refuse it first. At most EIO_NSP_MAX bytes. */
static void test_namespace_bytes(void **state)
{
    (void)state;
    struct eio_packet pk;
    assert_int_equal(parse("40/a\"b,", &pk), 0);
    assert_span(pk.nsp.p, pk.nsp.len, "/a\"b");
    assert_int_equal(parse("42/x y\\,[\"e\"]", &pk), 0);
    assert_span(pk.nsp.p, pk.nsp.len, "/x y\\");
    assert_int_equal(parse("40/\x01\x7f\xc3\xa9", &pk), 0);
    assert_span(pk.nsp.p, pk.nsp.len, "/\x01\x7f\xc3\xa9");
    char msg[300] = "40/";
    memset(msg + 3, 'n', EIO_NSP_MAX);
    msg[3 + EIO_NSP_MAX] = '\0';
    assert_int_equal(parse(msg, &pk), -1);
    msg[2 + EIO_NSP_MAX] = '\0';
    assert_int_equal(parse(msg, &pk), 0);
}

static void test_event_and_ack_id(void **state)
{
    (void)state;
    struct eio_packet pk;
    assert_int_equal(parse("42[\"chat\",\"hi\"]", &pk), 0);
    assert_int_equal(pk.type, EIO_EVENT);
    assert_int_equal(pk.ack, -1);
    assert_span(pk.data.p, pk.data.len, "[\"chat\",\"hi\"]");
    assert_int_equal(parse("421[\"chat\",\"x\"]", &pk), 0);
    assert_true(pk.ack >= 0);
    assert_int_equal(pk.ack, 1);
    assert_int_equal(parse("42/admin,77[\"e\"]", &pk), 0);
    assert_span(pk.nsp.p, pk.nsp.len, "/admin");
    assert_int_equal(pk.ack, 77);
    assert_int_equal(parse("42[12,{\"k\":\"\\u00e9\\n\"}]", &pk), 0); /* a numeric event name */
    assert_int_equal(parse("42999999999999999[\"e\"]", &pk), 0);
    assert_int_equal(pk.ack, 999999999999999ull);
    assert_int_equal(parse("429999999999999999[\"e\"]", &pk), -1); /* ack id too long */
    assert_int_equal(parse("42[]", &pk), -1);
    assert_int_equal(parse("42{}", &pk), -1);
    assert_int_equal(parse("42", &pk), -1);
    assert_int_equal(parse("42[\"connect\"]", &pk), -1); /* reserved name */
    assert_int_equal(parse("42[\"disconnecting\",1]", &pk), -1);
    assert_int_equal(parse("42[true]", &pk), -1);
    assert_int_equal(parse("42[\"a\",]", &pk), -1);
    assert_int_equal(parse("42[\"a\"] x", &pk), -1);
    assert_int_equal(parse("42[\"a\"", &pk), -1);
    assert_int_equal(parse("43[]", &pk), 0);
    assert_int_equal(pk.type, EIO_ACK);
    assert_int_equal(parse("43{}", &pk), -1);
    assert_int_equal(parse("44{\"message\":\"x\"}", &pk), 0);
    assert_int_equal(parse("48[]", &pk), -1);
}

static void test_binary(void **state)
{
    (void)state;
    struct eio_packet pk;
    assert_int_equal(parse("451-[\"e\",{\"_placeholder\":true,\"num\":0}]", &pk), 0);
    assert_int_equal(pk.type, EIO_BINARY_EVENT);
    assert_int_equal(pk.attachments, 1);
    assert_int_equal(parse("4612-/admin,3[{}]", &pk), 0);
    assert_int_equal(pk.attachments, 12);
    assert_int_equal(pk.ack, 3);
    assert_int_equal(parse("45[\"e\"]", &pk), -1); /* attachments are required */
}

/* The count is read as socket.io-parser reads it (any digits before '-'; ours fit 32 bits: at most 9); the limit of
 * 10 attachments is the socket's to enforce (socketio.c), not the parser's. */
static void test_attachment_count(void **state)
{
    (void)state;
    struct eio_packet pk;
    assert_int_equal(parse("45123-[\"e\"]", &pk), 0);
    assert_int_equal(pk.attachments, 123);
    assert_int_equal(parse("46999999999-[]", &pk), 0);
    assert_int_equal(pk.attachments, 999999999);
    assert_int_equal(parse("451234567890-[\"e\"]", &pk), -1);
    assert_int_equal(parse("45-[\"e\"]", &pk), -1);
}

static void test_json(void **state)
{
    (void)state;
    static const char *const good[] = {"0",       "-0.5e+3", "\"\"", "[]", "{}", " [ 1 , { \"a\" : [ ] } ] ",
                                       "\"\\/\"", "1E9",     "null"};
    static const char *const bad[] = {"",        "01",        "1.",  "-",   ".5",    "[1,]",  "{\"a\"}", "{a:1}",
                                      "\"\\x\"", "\"\\u12\"", "\"a", "tru", "nulll", "[] []", "\"\x01\""};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_true(jscan_valid(guarded(good[i], strlen(good[i])), strlen(good[i])));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(jscan_valid(guarded(bad[i], strlen(bad[i])), strlen(bad[i])));
    char deep[2 * JSCAN_DEPTH + 4];
    memset(deep, '[', JSCAN_DEPTH);
    memset(deep + JSCAN_DEPTH, ']', JSCAN_DEPTH);
    assert_true(jscan_valid(guarded(deep, 2 * JSCAN_DEPTH), 2 * JSCAN_DEPTH));
    memset(deep, '[', JSCAN_DEPTH + 1);
    memset(deep + JSCAN_DEPTH + 1, ']', JSCAN_DEPTH + 1);
    assert_false(jscan_valid(guarded(deep, 2 * JSCAN_DEPTH + 2), 2 * JSCAN_DEPTH + 2));
}

static void test_ids_and_open_packet(void **state)
{
    (void)state;
    uint8_t rnd[EIO_ID_RANDOM];
    char id[EIO_ID_LEN + 1], pkt[EIO_OPEN_MAX];
    for (size_t i = 0; i < sizeof rnd; i++)
        rnd[i] = (uint8_t)(i * 37 + 250);
    eio_make_id(rnd, id);
    assert_int_equal(strlen(id), EIO_ID_LEN);
    assert_int_equal(strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), EIO_ID_LEN);
    memset(rnd, 0xff, sizeof rnd);
    eio_make_id(rnd, id);
    assert_string_equal(id, "____________________");
    size_t n = eio_open_packet(pkt, id, 25000, 20000, 1000000, false);
    assert_span(pkt, n,
                "0{\"sid\":\"____________________\",\"upgrades\":[],\"pingInterval\":25000,\"pingTimeout\":20000,"
                "\"maxPayload\":1000000}");
    assert_true(jscan_valid(pkt + 1, n - 1));
    n = eio_open_packet(pkt, id, 25000, 20000, 1000000, true);
    assert_span(pkt, n,
                "0{\"sid\":\"____________________\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,"
                "\"pingTimeout\":20000,\"maxPayload\":1000000}");
    assert_true(jscan_valid(pkt + 1, n - 1));
}

/* Split a polling payload into "|"-joined packets (the spans, with "<>" for the empty one that ends it). */
static void split(const char *payload, const char *want)
{
    size_t len = strlen(payload), off = 0;
    const char *p = guarded(payload, len);
    struct eio_item it;
    char got[256] = "";
    int count = 0, rc;
    while ((rc = eio_payload_next(p, len, &off, &it)) != 0) {
        assert_true(it.text.p >= p && it.text.p + it.text.len <= p + len);
        assert_true(++count < 20);
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%.*s", count > 1 ? "|" : "",
                 rc > 0 ? (int)it.text.len : 2, rc > 0 ? it.text.p : "<>");
        if (rc < 0)
            break;
    }
    assert_string_equal(got, want);
}

static void test_payload_split(void **state)
{
    (void)state;
    split("", "<>"); /* engine.io-parser: an empty payload is one (invalid) empty packet */
    split("2", "2");
    split("3\x1e"
          "42[\"a\"]",
          "3|42[\"a\"]");
    split("40\x1e"
          "42[\"x\"]\x1e"
          "3",
          "40|42[\"x\"]|3");
    split("3\x1e", "3|<>");
    split("\x1e", "<>"); /* decoding stops at the first empty packet, engine.io-parser's error packet */
    split("\x1e\x1e"
          "2",
          "<>");
    split("bAQI=\x1e"
          "3",
          "bAQI=|3");
}

static void split_event(const char *json, const char *name, const char *rest)
{
    const char *n, *r;
    size_t nl, rl;
    size_t len = strlen(json);
    assert_true(eio_event_split(guarded(json, len), len, &n, &nl, &r, &rl));
    assert_span(n, nl, name);
    assert_span(r, rl, rest);
}

static void test_id_round_trip(void **state)
{
    (void)state;
    uint8_t rnd[EIO_ID_RANDOM], back[EIO_ID_RANDOM];
    char id[EIO_ID_LEN + 1];
    for (int seed = 0; seed < 64; seed++) {
        for (size_t i = 0; i < sizeof rnd; i++)
            rnd[i] = (uint8_t)(seed * 37 + i * 101);
        eio_make_id(rnd, id);
        assert_true(eio_parse_id(id, EIO_ID_LEN, back));
        assert_memory_equal(back, rnd, sizeof rnd);
    }
    assert_false(eio_parse_id("abcdefghijklmnopqrs", 19, back));
    assert_false(eio_parse_id("abcdefghijklmnopqrs=", 20, back));
    assert_false(eio_parse_id("abcdefghijklmnopqr+/", 20, back));
}

static void test_event_split(void **state)
{
    (void)state;
    split_event("[\"message\",1,{\"a\":[2]}]", "\"message\"", ",1,{\"a\":[2]}");
    split_event("[\"e\"]", "\"e\"", "");
    split_event("[42,\"x\"]", "42", ",\"x\"");
    split_event(" [ \"e\\\"]\" , null ] ", "\"e\\\"]\"", " , null ");
    const char *n, *r;
    size_t nl, rl;
    assert_false(eio_event_split("{}", 2, &n, &nl, &r, &rl));
    assert_false(eio_event_split("[", 1, &n, &nl, &r, &rl));
    assert_false(eio_event_split("[\"e\"", 4, &n, &nl, &r, &rl));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_io_types),
        cmocka_unit_test(test_connect),
        cmocka_unit_test(test_event_and_ack_id),
        cmocka_unit_test(test_binary),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_ids_and_open_packet),
        cmocka_unit_test(test_payload_split),
        cmocka_unit_test(test_event_split),
        cmocka_unit_test(test_id_round_trip),
        cmocka_unit_test(test_namespace_bytes),
        cmocka_unit_test(test_attachment_count),
        cmocka_unit_test(test_open_is_an_object),
    };
    return cmocka_run_group_tests_name("eio", tests, NULL, unmap_guard);
}
