/* refserver's split objects: the fan-out over a room's members, room_param, and what a connection costs (a /ws
 * client is one struct conn; Socket.IO adds an Engine.IO session and a socket). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "refserver/conn.h"
#include "refserver/eiosession.h"
#include "refserver/fanout.h"
#include "refserver/room.h"

#include <stdio.h>
#include <string.h>

/* struct client, the one object every connection was before the split, was 536 bytes on x86-64. */
#define CLIENT_BEFORE_SPLIT 536

struct member {
    struct room_member m;
    int got;
};

struct offer_ctx {
    const struct member *skip;
    size_t frames_seen;
};

static bool offer(struct room_member *m, struct slice *const *frames, size_t n, void *ctx)
{
    struct offer_ctx *o = ctx;
    struct member *to = (struct member *)(void *)m;
    o->frames_seen += n;
    (void)frames;
    if (to == o->skip)
        return false;
    to->got++;
    return true;
}

static void test_fanout_offers_every_member_and_counts_takers(void **state)
{
    (void)state;
    struct room_registry reg;
    struct member v[5] = {0};
    assert_int_equal(room_registry_init(&reg, NULL, NULL, NULL), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(room_join(&reg, &v[i].m, "r", 1), 0);
    struct slice *f = slice_new(3);
    assert_non_null(f);
    struct offer_ctx o = {.skip = &v[2]};
    struct slice *frames[2] = {f, f};
    assert_int_equal(fanout(room_find(&reg, "r", 1), frames, 2, offer, &o), 4);
    assert_int_equal(o.frames_seen, 10);
    for (int i = 0; i < 5; i++)
        assert_int_equal(v[i].got, i == 2 ? 0 : 1);
    slice_unref(f);
    room_registry_free(&reg);
}

/* An offer that ends its member, as a slow poller is ended, takes it out of the room. */
struct leaving_ctx {
    struct room_registry *reg;
    struct member *leaver;
};

static bool offer_and_leave(struct room_member *m, struct slice *const *frames, size_t n, void *ctx)
{
    struct leaving_ctx *l = ctx;
    struct member *to = (struct member *)(void *)m;
    (void)frames, (void)n;
    if (to == l->leaver || !l->leaver) {
        room_leave(l->reg, m);
        return false;
    }
    to->got++;
    return true;
}

static void test_fanout_survives_a_member_leaving(void **state)
{
    (void)state;
    struct room_registry reg;
    assert_int_equal(room_registry_init(&reg, NULL, NULL, NULL), 0);
    for (int leaver = 0; leaver < 4; leaver++) { /* the first member leaves, a middle one, the last one */
        struct member v[4] = {0};
        for (int i = 0; i < 4; i++)
            assert_int_equal(room_join(&reg, &v[i].m, "r", 1), 0);
        struct leaving_ctx l = {&reg, &v[leaver]};
        assert_int_equal(fanout(room_find(&reg, "r", 1), NULL, 0, offer_and_leave, &l), 3);
        for (int i = 0; i < 4; i++)
            assert_int_equal(v[i].got, i == leaver ? 0 : 1);
        for (int i = 0; i < 4; i++)
            room_leave(&reg, &v[i].m);
    }
    /* Every member leaves, the room with the last one: nothing is read from it afterwards (ASan would say). */
    struct member v[3] = {0};
    for (int i = 0; i < 3; i++)
        assert_int_equal(room_join(&reg, &v[i].m, "gone", 4), 0);
    struct leaving_ctx all = {&reg, NULL};
    assert_int_equal(fanout(room_find(&reg, "gone", 4), NULL, 0, offer_and_leave, &all), 0);
    assert_null(room_find(&reg, "gone", 4));
    room_registry_free(&reg);
}

static void test_room_param(void **state)
{
    (void)state;
    char room[ROOM_NAME_MAX + 1];
    assert_int_equal(room_param("/ws", 3, "all", room), 3);
    assert_string_equal(room, "all");
    assert_int_equal(room_param("/socket.io/?EIO=4", 17, "", room), 0);
    assert_string_equal(room, "");
    assert_int_equal(room_param("/ws?room=a%20b", 14, "all", room), -1); /* a space is not a room name */
    assert_int_equal(room_param("/ws?room=lobby", 14, "all", room), 5);
    assert_string_equal(room, "lobby");
}

/* A /ws client pays for one struct conn and nothing of Engine.IO or Socket.IO. */
static void test_ws_client_costs_less_than_before_the_split(void **state)
{
    (void)state;
    printf("sizeof: struct conn %zu (a /ws client), struct eio_session %zu (a Socket.IO websocket's, plus socketio.c's "
           "socket; a polling session's is larger); struct client was %d\n",
           sizeof(struct conn), sizeof(struct eio_session), CLIENT_BEFORE_SPLIT);
    assert_true(sizeof(struct conn) <= CLIENT_BEFORE_SPLIT);
    /* and a Socket.IO websocket's session stays small: no polling queue, GET or timer of its own */
    assert_true(sizeof(struct eio_session) <= 128);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fanout_offers_every_member_and_counts_takers),
        cmocka_unit_test(test_fanout_survives_a_member_leaving),
        cmocka_unit_test(test_room_param),
        cmocka_unit_test(test_ws_client_costs_less_than_before_the_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
