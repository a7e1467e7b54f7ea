/* The "wsh1" bus wire format (refserver/wire.h): room messages, heartbeats and byes. What peers makes of a heartbeat
 * is test_peers.c's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/ws.h"
#include "refserver/wire.h"

#include <stdio.h>
#include <string.h>

static void test_wire_header_round_trip(void **state)
{
    (void)state;
    char msg[WIRE_HEADER_MAX + 16];
    size_t h = wire_room_header(msg, "node-7", 42, WS_OP_BINARY);
    assert_string_equal(msg, "wsh1 node-7 42 b\n");
    memcpy(msg + h, "\0\1\2", 3);
    const char *node, *payload;
    size_t node_len, payload_len;
    uint8_t op;
    assert_int_equal(wire_room_parse(msg, h + 3, &node, &node_len, &op, &payload, &payload_len), 0);
    assert_int_equal(node_len, 6);
    assert_memory_equal(node, "node-7", 6);
    assert_int_equal(op, WS_OP_BINARY);
    assert_int_equal(payload_len, 3);
    assert_memory_equal(payload, "\0\1\2", 3);

    h = wire_room_header(msg, "n1", 1, WS_OP_TEXT);
    assert_int_equal(wire_room_parse(msg, h, &node, &node_len, &op, &payload, &payload_len), 0);
    assert_int_equal(op, WS_OP_TEXT);
    assert_int_equal(payload_len, 0);
}

static void test_wire_rejects_foreign_messages(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "hello",          "wsh1 n1 1 t",   "wsh2 n1 1 t\n",
        "wsh1  1 t\n",    "wsh1 n1 x t\n", "wsh1 n1 1 q\n",
        "wsh1 n1 1 tt\n", "wsh1 n1 t\n",   "",
    };
    const char *node, *payload;
    size_t node_len, payload_len;
    uint8_t op;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(wire_room_parse(bad[i], strlen(bad[i]), &node, &node_len, &op, &payload, &payload_len), -1);
}

/* A heartbeat written by wire_hb_encode reads back field by field, rooms in the order written; a bye too. */
static void test_heartbeat_round_trip(void **state)
{
    (void)state;
    static const char *const nsps[] = {"/", "/chat"};
    const uint64_t rooms[] = {0xfedcba9876543210u, 1};
    struct buf b = {0};
    struct wire_hb hb;
    uint64_t got[WIRE_ROOMS_MAX];
    size_t n = 0;
    assert_int_equal(
        wire_hb_encode(
            &b,
            &(struct wire_hb_out){
                .id = "n1.w0", .pid = 7, .sio_key = 0xab, .nsps = nsps, .nsp_count = 2, .rooms = rooms, .nrooms = 2}),
        0);
    assert_int_equal(wire_hb_parse(buf_head(&b), buf_len(&b), &hb), 0);
    assert_false(hb.bye);
    assert_memory_equal(hb.id, "n1.w0", hb.id_len);
    assert_int_equal(hb.pid, 7);
    assert_int_equal(hb.sio_key, 0xab);
    assert_int_equal(hb.nsps_len, strlen("/,/chat"));
    assert_memory_equal(hb.nsps, "/,/chat", hb.nsps_len);
    assert_int_equal(wire_hb_rooms(&hb, got, &n), 1);
    assert_int_equal(n, 2);
    assert_true(got[0] == rooms[0] && got[1] == rooms[1]);

    b.rpos = b.wpos = 0;
    assert_int_equal(
        wire_hb_encode(&b, &(struct wire_hb_out){.id = "n2", .rooms = rooms, .nrooms = WIRE_ROOMS_MAX + 1}), 0);
    assert_int_equal(wire_hb_parse(buf_head(&b), buf_len(&b), &hb), 0);
    assert_int_equal(hb.sio_key, 0);
    assert_int_equal(wire_hb_rooms(&hb, got, &n), 0); /* "*": too many to list */

    b.rpos = b.wpos = 0;
    assert_int_equal(wire_bye_encode(&b, "n2", 9), 0);
    assert_int_equal(wire_hb_parse(buf_head(&b), buf_len(&b), &hb), 0);
    assert_true(hb.bye);
    assert_int_equal(hb.pid, 9);
    assert_memory_equal(hb.id, "n2", 2);
    buf_free(&b);

    const char *room_msg = "wsh1 n2 12 t\nhello"; /* each channel's messages are the other's garbage */
    assert_int_equal(wire_hb_parse(room_msg, strlen(room_msg), &hb), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_header_round_trip),
        cmocka_unit_test(test_wire_rejects_foreign_messages),
        cmocka_unit_test(test_heartbeat_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
