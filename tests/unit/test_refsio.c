/* refserver/refsio.c: Engine.IO v4 / Socket.IO v5 packet parsing (strict), JSON validation, ids and the open packet.
 * Every input is parsed from right before a guard page, so a read past the end crashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "guard.h"
#include "refserver/refsio.h"

#include <stdio.h>
#include <string.h>

static int parse(const char *s, struct refsio_packet *pk)
{
    size_t n = strlen(s);
    return refsio_parse(guarded(s, n), n, pk);
}

static void assert_span(const char *p, size_t len, const char *want)
{
    assert_int_equal(len, strlen(want));
    assert_memory_equal(p, want, len);
}

static void test_engine_io_types(void **state)
{
    (void)state;
    struct refsio_packet pk;
    assert_int_equal(parse("2", &pk), 0);
    assert_int_equal(pk.eio, REFSIO_EIO_PING);
    assert_int_equal(pk.data_len, 0);
    assert_int_equal(parse("3probe", &pk), 0);
    assert_int_equal(pk.eio, REFSIO_EIO_PONG);
    assert_span(pk.data, pk.data_len, "probe");
    assert_int_equal(parse("6", &pk), 0);
    assert_int_equal(pk.eio, REFSIO_EIO_NOOP);
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
    struct refsio_packet pk;
    assert_int_equal(parse("0{\"sid\":\"x\"}", &pk), 0);
    assert_int_equal(pk.eio, REFSIO_EIO_OPEN);
    assert_int_equal(parse(" 0", &pk), -1);
    assert_int_equal(parse("0", &pk), -1);
    assert_int_equal(parse("0abc", &pk), -1);
    assert_int_equal(parse("0[]", &pk), -1);
    assert_int_equal(parse("0{", &pk), -1);
}

static void test_connect(void **state)
{
    (void)state;
    struct refsio_packet pk;
    assert_int_equal(parse("40", &pk), 0);
    assert_int_equal(pk.eio, REFSIO_EIO_MESSAGE);
    assert_int_equal(pk.type, REFSIO_CONNECT);
    assert_span(pk.nsp, pk.nsp_len, "/");
    assert_int_equal(pk.data_len, 0);
    assert_int_equal(parse("40{\"token\":\"x\"}", &pk), 0);
    assert_span(pk.data, pk.data_len, "{\"token\":\"x\"}");
    assert_int_equal(parse("40/admin,{\"a\":[1,2.5e3,true,null]}", &pk), 0);
    assert_span(pk.nsp, pk.nsp_len, "/admin");
    assert_int_equal(parse("40/admin,", &pk), 0);
    assert_span(pk.nsp, pk.nsp_len, "/admin");
    assert_int_equal(parse("41/admin", &pk), 0); /* a namespace may end the packet */
    assert_int_equal(pk.type, REFSIO_DISCONNECT);
    assert_span(pk.nsp, pk.nsp_len, "/admin");
    assert_int_equal(parse("40[1]", &pk), -1); /* auth must be an object */
    assert_int_equal(parse("40\"x\"", &pk), -1);
    assert_int_equal(parse("40{", &pk), -1);
    assert_int_equal(parse("41{}", &pk), -1); /* DISCONNECT carries nothing */
}

/* A namespace is any bytes up to ',' (socket.io-parser): a server that does not serve it answers CONNECT_ERROR,
 * so the parser must not refuse it first. At most REFSIO_NSP_MAX bytes. */
static void test_namespace_bytes(void **state)
{
    (void)state;
    struct refsio_packet pk;
    assert_int_equal(parse("40/a\"b,", &pk), 0);
    assert_span(pk.nsp, pk.nsp_len, "/a\"b");
    assert_int_equal(parse("42/x y\\,[\"e\"]", &pk), 0);
    assert_span(pk.nsp, pk.nsp_len, "/x y\\");
    assert_int_equal(parse("40/\x01\x7f\xc3\xa9", &pk), 0);
    assert_span(pk.nsp, pk.nsp_len, "/\x01\x7f\xc3\xa9");
    char msg[300] = "40/";
    memset(msg + 3, 'n', REFSIO_NSP_MAX);
    msg[3 + REFSIO_NSP_MAX] = '\0';
    assert_int_equal(parse(msg, &pk), -1);
    msg[2 + REFSIO_NSP_MAX] = '\0';
    assert_int_equal(parse(msg, &pk), 0);
}

static void test_event_and_ack_id(void **state)
{
    (void)state;
    struct refsio_packet pk;
    assert_int_equal(parse("42[\"chat\",\"hi\"]", &pk), 0);
    assert_int_equal(pk.type, REFSIO_EVENT);
    assert_false(pk.has_ack);
    assert_span(pk.data, pk.data_len, "[\"chat\",\"hi\"]");
    assert_int_equal(parse("421[\"chat\",\"x\"]", &pk), 0);
    assert_true(pk.has_ack);
    assert_int_equal(pk.ack, 1);
    assert_int_equal(parse("42/admin,77[\"e\"]", &pk), 0);
    assert_span(pk.nsp, pk.nsp_len, "/admin");
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
    assert_int_equal(pk.type, REFSIO_ACK);
    assert_int_equal(parse("43{}", &pk), -1);
    assert_int_equal(parse("44{\"message\":\"x\"}", &pk), 0);
    assert_int_equal(parse("48[]", &pk), -1);
}

static void test_binary(void **state)
{
    (void)state;
    struct refsio_packet pk;
    assert_int_equal(parse("451-[\"e\",{\"_placeholder\":true,\"num\":0}]", &pk), 0);
    assert_int_equal(pk.type, REFSIO_BINARY_EVENT);
    assert_int_equal(pk.attachments, 1);
    assert_int_equal(parse("4612-/admin,3[{}]", &pk), 0);
    assert_int_equal(pk.attachments, 12);
    assert_int_equal(pk.ack, 3);
    assert_int_equal(parse("45[\"e\"]", &pk), -1);     /* attachments are required */
}

/* The count is read as socket.io-parser reads it (any digits before '-'; ours fit 32 bits: at most 9); the limit of
 * 10 attachments is the socket's to enforce (socketio.c), not the parser's. */
static void test_attachment_count(void **state)
{
    (void)state;
    struct refsio_packet pk;
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
        assert_true(refsio_json_valid(guarded(good[i], strlen(good[i])), strlen(good[i])));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(refsio_json_valid(guarded(bad[i], strlen(bad[i])), strlen(bad[i])));
    char deep[2 * REFSIO_JSON_DEPTH + 4];
    memset(deep, '[', REFSIO_JSON_DEPTH);
    memset(deep + REFSIO_JSON_DEPTH, ']', REFSIO_JSON_DEPTH);
    assert_true(refsio_json_valid(guarded(deep, 2 * REFSIO_JSON_DEPTH), 2 * REFSIO_JSON_DEPTH));
    memset(deep, '[', REFSIO_JSON_DEPTH + 1);
    memset(deep + REFSIO_JSON_DEPTH + 1, ']', REFSIO_JSON_DEPTH + 1);
    assert_false(refsio_json_valid(guarded(deep, 2 * REFSIO_JSON_DEPTH + 2), 2 * REFSIO_JSON_DEPTH + 2));
}

static void test_ids_and_open_packet(void **state)
{
    (void)state;
    uint8_t rnd[REFSIO_ID_RANDOM];
    char id[REFSIO_ID_LEN + 1], pkt[REFSIO_OPEN_MAX];
    for (size_t i = 0; i < sizeof rnd; i++)
        rnd[i] = (uint8_t)(i * 37 + 250);
    refsio_make_id(rnd, id);
    assert_int_equal(strlen(id), REFSIO_ID_LEN);
    assert_int_equal(strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), REFSIO_ID_LEN);
    memset(rnd, 0xff, sizeof rnd);
    refsio_make_id(rnd, id);
    assert_string_equal(id, "____________________");
    size_t n = refsio_open_packet(pkt, id, 25000, 20000, 1000000, false);
    assert_span(pkt, n,
                "0{\"sid\":\"____________________\",\"upgrades\":[],\"pingInterval\":25000,\"pingTimeout\":20000,"
                "\"maxPayload\":1000000}");
    assert_true(refsio_json_valid(pkt + 1, n - 1));
    n = refsio_open_packet(pkt, id, 25000, 20000, 1000000, true);
    assert_span(pkt, n,
                "0{\"sid\":\"____________________\",\"upgrades\":[\"websocket\"],\"pingInterval\":25000,"
                "\"pingTimeout\":20000,\"maxPayload\":1000000}");
    assert_true(refsio_json_valid(pkt + 1, n - 1));
}

/* Split a polling payload into "|"-joined packets (the spans, with "<>" for an empty one). */
static void split(const char *payload, const char *want)
{
    size_t len = strlen(payload);
    const char *p = guarded(payload, len), *pos = p, *pkt;
    size_t plen;
    bool started = false;
    char got[256] = "";
    int count = 0;
    while (refsio_payload_next(&pos, p + len, &started, &pkt, &plen)) {
        assert_true(pkt >= p && pkt + plen <= p + len);
        assert_true(++count < 20);
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%.*s", count > 1 ? "|" : "", plen ? (int)plen : 2,
                 plen ? pkt : "<>");
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
    split("\x1e", "<>|<>");
    split("\x1e\x1e"
          "2",
          "<>|<>|2");
    split("bAQI=\x1e"
          "3",
          "bAQI=|3");
}

static void split_event(const char *json, const char *name, const char *rest)
{
    const char *n, *r;
    size_t nl, rl;
    size_t len = strlen(json);
    assert_true(refsio_event_split(guarded(json, len), len, &n, &nl, &r, &rl));
    assert_span(n, nl, name);
    assert_span(r, rl, rest);
}

static void test_id_round_trip(void **state)
{
    (void)state;
    uint8_t rnd[REFSIO_ID_RANDOM], back[REFSIO_ID_RANDOM];
    char id[REFSIO_ID_LEN + 1];
    for (int seed = 0; seed < 64; seed++) {
        for (size_t i = 0; i < sizeof rnd; i++)
            rnd[i] = (uint8_t)(seed * 37 + i * 101);
        refsio_make_id(rnd, id);
        assert_true(refsio_parse_id(id, REFSIO_ID_LEN, back));
        assert_memory_equal(back, rnd, sizeof rnd);
    }
    assert_false(refsio_parse_id("abcdefghijklmnopqrs", 19, back));
    assert_false(refsio_parse_id("abcdefghijklmnopqrs=", 20, back));
    assert_false(refsio_parse_id("abcdefghijklmnopqr+/", 20, back));
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
    assert_false(refsio_event_split("{}", 2, &n, &nl, &r, &rl));
    assert_false(refsio_event_split("[", 1, &n, &nl, &r, &rl));
    assert_false(refsio_event_split("[\"e\"", 4, &n, &nl, &r, &rl));
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
    return cmocka_run_group_tests_name("refsio", tests, NULL, unmap_guard);
}
