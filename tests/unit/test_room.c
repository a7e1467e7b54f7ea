/* refserver rooms (open/close hooks, O(1) leave, many rooms). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "refserver/room.h"

#include <stdio.h>
#include <string.h>

struct hooks {
    int opened, closed;
    char last[ROOM_NAME_MAX + 1];
};

static void on_open(void *ctx, struct room *r)
{
    struct hooks *h = ctx;
    h->opened++;
    snprintf(h->last, sizeof h->last, "%s", r->name);
}

static void on_close(void *ctx, struct room *r)
{
    struct hooks *h = ctx;
    h->closed++;
    snprintf(h->last, sizeof h->last, "%s", r->name);
}

static void test_open_and_close_with_first_and_last_member(void **state)
{
    (void)state;
    struct hooks h = {0};
    struct room_registry reg;
    struct room_member a = {0}, b = {0};
    assert_int_equal(room_registry_init(&reg, on_open, on_close, &h), 0);
    assert_int_equal(room_join(&reg, &a, "lobby", 5), 0);
    assert_int_equal(room_join(&reg, &b, "lobby", 5), 0);
    assert_int_equal(h.opened, 1);
    assert_ptr_equal(a.room, b.room);
    assert_int_equal(a.room->count, 2);
    room_leave(&reg, &a);
    assert_int_equal(h.closed, 0);
    assert_null(a.room);
    room_leave(&reg, &a); /* leaving twice is harmless */
    room_leave(&reg, &b);
    assert_int_equal(h.closed, 1);
    assert_string_equal(h.last, "lobby");
    assert_null(room_find(&reg, "lobby", 5));
    assert_int_equal(reg.nrooms, 0);
    room_registry_free(&reg);
}

static void test_swap_remove_keeps_slots_consistent(void **state)
{
    (void)state;
    struct room_registry reg;
    struct room_member m[50] = {{0}};
    room_registry_init(&reg, NULL, NULL, NULL);
    for (int i = 0; i < 50; i++)
        assert_int_equal(room_join(&reg, &m[i], "r", 1), 0);
    for (int i = 0; i < 50; i += 3)
        room_leave(&reg, &m[i]);
    struct room *r = room_find(&reg, "r", 1);
    assert_non_null(r);
    assert_int_equal(r->count, 50 - 17);
    for (uint32_t i = 0; i < r->count; i++)
        assert_int_equal(r->members[i]->slot, i);
    for (int i = 0; i < 50; i++)
        assert_true((i % 3 == 0) == (m[i].room == NULL));
    room_registry_free(&reg);
    for (int i = 0; i < 50; i++)
        assert_null(m[i].room);
}

static void test_many_rooms_are_found_after_growth(void **state)
{
    (void)state;
    struct hooks h = {0};
    struct room_registry reg;
    static struct room_member m[5000];
    char name[16];
    room_registry_init(&reg, on_open, on_close, &h);
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(name, sizeof name, "room-%d", i);
        assert_int_equal(room_join(&reg, &m[i], name, (size_t)n), 0);
    }
    assert_int_equal(h.opened, 5000);
    assert_true(reg.nbuckets >= 4096);
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(name, sizeof name, "room-%d", i);
        struct room *r = room_find(&reg, name, (size_t)n);
        assert_non_null(r);
        assert_ptr_equal(r, m[i].room);
    }
    assert_null(room_find(&reg, "room-5000", 9));
    room_registry_free(&reg);
}

static void test_every_room_is_visited_once(void **state)
{
    (void)state;
    struct room_registry reg;
    struct room_member m[300] = {{0}};
    char name[16];
    room_registry_init(&reg, NULL, NULL, NULL);
    assert_null(room_next(&reg, NULL));
    for (int i = 0; i < 300; i++) { /* 150 rooms of two: the table grows, chains form */
        int n = snprintf(name, sizeof name, "r%d", i / 2);
        assert_int_equal(room_join(&reg, &m[i], name, (size_t)n), 0);
    }
    assert_int_equal(reg.nrooms, 150);
    int seen = 0;
    uint32_t members = 0;
    for (struct room *r = room_next(&reg, NULL); r; r = room_next(&reg, r)) {
        seen++;
        members += r->count;
        assert_ptr_equal(room_find(&reg, r->name, r->name_len), r);
    }
    assert_int_equal(seen, 150);
    assert_int_equal(members, 300);
    room_registry_free(&reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_and_close_with_first_and_last_member),
        cmocka_unit_test(test_swap_remove_keeps_slots_consistent),
        cmocka_unit_test(test_many_rooms_are_found_after_growth),
        cmocka_unit_test(test_every_room_is_visited_once),
    };
    return cmocka_run_group_tests_name("room", tests, NULL, NULL);
}
