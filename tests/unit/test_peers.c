/* refserver/peers.c: the heartbeat's wire format, who is alive, and whom a publish should reach. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "refserver/peers.h"

#include <stdio.h>
#include <string.h>

static const char *const NSPS[] = {"/", "/chat"};

static uint64_t H(const char *room)
{
    return peers_hash(room, strlen(room));
}

/* A heartbeat of participant id (serving nsps[0..nnsp) with key) holding rooms, as its own encoder writes it. */
static void hello(struct buf *out, const char *id, const char *key, uint32_t nnsp, const char *const *rooms,
                  size_t nrooms)
{
    struct peers other;
    uint64_t h[8];
    assert_true(nrooms <= 8);
    for (size_t i = 0; i < nrooms; i++)
        h[i] = H(rooms[i]);
    assert_int_equal(peers_init(&other, id, key, NSPS, nnsp), 0);
    out->rpos = out->wpos = 0;
    assert_int_equal(peers_encode(out, &other, 4242, h, nrooms), 0);
    peers_free(&other);
}

static void test_heartbeat_round_trip_and_expectations(void **state)
{
    (void)state;
    struct peers p;
    struct buf b = {0};
    assert_int_equal(peers_init(&p, "n1", "socket.io", NSPS, 2), 0);
    hello(&b, "n2.w0", "socket.io", 1, (const char *const[]){"all", "lobby"}, 2);
    assert_memory_equal(buf_head(&b), "wsh1-hb n2.w0 4242 ", 19);
    assert_int_equal(peers_on_message(&p, buf_head(&b), buf_len(&b), 10.0), 1);
    assert_int_equal(peers_on_message(&p, buf_head(&b), buf_len(&b), 10.5), 0); /* known: updated */
    hello(&b, "n3", "other-key", 2, (const char *const[]){"all"}, 1);
    assert_int_equal(peers_on_message(&p, buf_head(&b), buf_len(&b), 10.5), 1);
    assert_int_equal(peers_alive(&p, 11.0), 2);

    char names[64];
    struct peers_target all = {.room = H("all")}, lobby = {.room = H("lobby")}, none = {.room = H("nobody")};
    assert_int_equal(peers_expect(&p, &all, 11.0, names, sizeof names), 2);
    assert_string_equal(names, "n2.w0 n3");
    assert_int_equal(peers_expect(&p, &lobby, 11.0, NULL, 0), 1);
    assert_int_equal(peers_expect(&p, &none, 11.0, names, sizeof names), 0);
    assert_string_equal(names, "");
    /* Socket.IO: only a participant with our key serving the namespace (n2 serves "/" but not "/chat") */
    struct peers_target root = {.sio = true, .nsp = 0}, chat = {.sio = true, .nsp = 1};
    assert_int_equal(peers_expect(&p, &root, 11.0, NULL, 0), 1);
    assert_int_equal(peers_expect(&p, &chat, 11.0, NULL, 0), 0);

    /* alive for PEERS_ALIVE seconds of the hearer's clock, then no longer expected; pruned after PEERS_FORGET */
    hello(&b, "n3", "other-key", 2, (const char *const[]){"all"}, 1);
    assert_int_equal(peers_on_message(&p, buf_head(&b), buf_len(&b), 12.0), 0);
    assert_int_equal(peers_expect(&p, &all, 10.5 + PEERS_ALIVE - 0.1, NULL, 0), 2);
    assert_int_equal(peers_expect(&p, &all, 10.5 + PEERS_ALIVE + 0.1, names, sizeof names), 1);
    assert_string_equal(names, "n3");
    assert_int_equal(peers_alive(&p, 12.0 + PEERS_ALIVE + 0.1), 0);
    peers_prune(&p, 11.0 + PEERS_FORGET);
    assert_int_equal(p.n, 1);
    peers_free(&p);
    buf_free(&b);
}

static void test_own_heartbeat_bye_and_too_many_rooms(void **state)
{
    (void)state;
    struct peers p;
    struct buf b = {0};
    assert_int_equal(peers_init(&p, "n1", NULL, NSPS, 0), 0);
    hello(&b, "n1", NULL, 0, NULL, 0); /* our own comes back to us */
    assert_int_equal(peers_on_message(&p, buf_head(&b), buf_len(&b), 1.0), 0);
    assert_int_equal(p.n, 0);
    hello(&b, "n2", NULL, 0, (const char *const[]){"all"}, 1);
    assert_int_equal(peers_on_message(&p, buf_head(&b), buf_len(&b), 1.0), 1);
    assert_int_equal(p.n, 1);
    struct peers_target all = {.room = H("all")};
    assert_int_equal(peers_expect(&p, &all, 1.0, NULL, 0), 1);

    /* more rooms than a heartbeat lists: "*", and the participant is not judged on /ws rooms */
    struct peers n2;
    uint64_t many[PEERS_ROOMS_MAX + 1] = {0};
    assert_int_equal(peers_init(&n2, "n2", NULL, NSPS, 0), 0);
    b.rpos = b.wpos = 0;
    assert_int_equal(peers_encode(&b, &n2, 7, many, PEERS_ROOMS_MAX + 1), 0);
    assert_int_equal(b.data[b.wpos - 1], '*');
    assert_int_equal(peers_on_message(&p, buf_head(&b), buf_len(&b), 2.0), 0);
    assert_int_equal(peers_expect(&p, &all, 2.0, NULL, 0), 0);
    assert_int_equal(peers_alive(&p, 2.0), 1);

    b.rpos = b.wpos = 0;
    assert_int_equal(peers_encode_bye(&b, &n2, 7), 0);
    assert_int_equal(peers_on_message(&p, buf_head(&b), buf_len(&b), 2.5), 0);
    assert_int_equal(peers_alive(&p, 2.5), 0);
    assert_int_equal(p.n, 0);
    peers_free(&n2);
    peers_free(&p);
    buf_free(&b);
}

static void test_malformed_heartbeats_are_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "wsh1-hb",
        "wsh1-hb n2",
        "wsh1-hb n2 12 - - 0 extra",                             /* no rooms, yet more */
        "wsh1-hb n2 x - - 0",                                    /* pid */
        "wsh1-hb n2 -1 - - 0",                                   /* pid */
        "wsh1-hb n2 12 zz - 0",                                  /* key */
        "wsh1-hb n2 12 - - 2 0123456789abcdef",                  /* fewer rooms than said */
        "wsh1-hb n2 12 - - 1 0123456789abcdef 0123456789abcdef", /* more */
        "wsh1-hb n2 12 - - 1 0123456789abcdeg",                  /* not hex */
        "wsh1-hb n2 12 - - 1 0123456789abcde",                   /* short */
        "wsh1-hb n2 12 - - 999999999999999999999",               /* count */
        "wsh1-hb n2 12 - - 600",                                 /* over PEERS_ROOMS_MAX */
        "wsh1-bye n2",                                           /* no pid */
        "wsh1 n2 12 t\nhello",                                   /* a room message */
        "wsh1-hb n2 12 - - 1 0123456789abcdef0123456789abcdef",  /* no separator */
        "wsh1-hb n2 12 - - 1 0123456789abcdef ",                 /* trailing space */
    };
    struct peers p;
    assert_int_equal(peers_init(&p, "n1", NULL, NSPS, 0), 0);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (peers_on_message(&p, bad[i], strlen(bad[i]), 1.0) != -1)
            fail_msg("accepted: '%s'", bad[i]);
        assert_int_equal(p.n, 0);
    }
    const char *ok = "wsh1-hb n2 12 - - 1 0123456789abcdef";
    assert_int_equal(peers_on_message(&p, ok, strlen(ok), 1.0), 1);
    /* a malformed update leaves the participant as it was */
    assert_int_equal(peers_on_message(&p, bad[7], strlen(bad[7]), 2.0), -1);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.v[0].nrooms, 1);
    peers_free(&p);
}

static void test_table_is_bounded(void **state)
{
    (void)state;
    struct peers p;
    char msg[64];
    assert_int_equal(peers_init(&p, "n1", NULL, NSPS, 0), 0);
    for (int i = 0; i < PEERS_MAX + 5; i++) {
        int n = snprintf(msg, sizeof msg, "wsh1-hb p%d 1 - - 0", i);
        assert_int_equal(peers_on_message(&p, msg, (size_t)n, 1.0), i < PEERS_MAX ? 1 : -1);
    }
    assert_int_equal(p.n, PEERS_MAX);
    peers_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heartbeat_round_trip_and_expectations),
        cmocka_unit_test(test_own_heartbeat_bye_and_too_many_rooms),
        cmocka_unit_test(test_malformed_heartbeats_are_refused),
        cmocka_unit_test(test_table_is_bounded),
    };
    return cmocka_run_group_tests_name("peers", tests, NULL, NULL);
}
