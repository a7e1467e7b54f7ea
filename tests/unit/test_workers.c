/* refserver --workers: the worker named in a sid, the bus identity per worker, the hand-over record's framing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/eio.h"
#include "refserver/server.h"
#include "refserver/workers.h"

#include <stdio.h>
#include <string.h>

static void test_every_worker_is_named_and_found(void **state)
{
    (void)state;
    uint8_t rnd[EIO_ID_RANDOM];
    char sid[EIO_ID_LEN + 1], before[EIO_ID_LEN + 1];
    for (uint32_t i = 0; i < WORKERS_MAX; i++) {
        memset(rnd, (int)(i * 37 + 11), sizeof rnd);
        eio_make_id(rnd, sid);
        memcpy(before, sid, sizeof sid);
        workers_sid_mark(sid, i);
        assert_int_equal(strlen(sid), EIO_ID_LEN);
        assert_memory_equal(sid + 1, before + 1, EIO_ID_LEN - 1); /* only the first character names the worker */
        assert_true(eio_parse_id(sid, EIO_ID_LEN, rnd));          /* still a well-formed id */
        assert_int_equal(workers_sid_owner(sid, EIO_ID_LEN, WORKERS_MAX), (int)i);
        assert_int_equal(workers_sid_owner(sid, EIO_ID_LEN, i + 1), (int)i);
        assert_int_equal(workers_sid_owner(sid, EIO_ID_LEN, i), -1); /* a worker that does not exist */
    }
}

static void test_malformed_sids_name_no_worker(void **state)
{
    (void)state;
    const char *bad[] = {"",
                         "A",
                         "AAAAAAAAAAAAAAAAAAA",
                         "AAAAAAAAAAAAAAAAAAAAA",
                         "AAAAAAAAA+AAAAAAAAAA",
                         "AAAAAAAAAAAAAAAAAAA=",
                         "/AAAAAAAAAAAAAAAAAAA",
                         "A AAAAAAAAAAAAAAAAAA",
                         "AAAAAAAAAAAAAAAAAAA\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(workers_sid_owner(bad[i], strlen(bad[i]), WORKERS_MAX), -1);
    char nul[EIO_ID_LEN] = "AAAAAAAAAAAAAAAAAAA"; /* a NUL inside the span */
    assert_int_equal(workers_sid_owner(nul, EIO_ID_LEN, WORKERS_MAX), -1);
    assert_int_equal(workers_sid_owner("DAAAAAAAAAAAAAAAAAAA", EIO_ID_LEN, 4), 3);
    assert_int_equal(workers_sid_owner("EAAAAAAAAAAAAAAAAAAA", EIO_ID_LEN, 4), -1);
    assert_int_equal(workers_sid_owner("_AAAAAAAAAAAAAAAAAAA", EIO_ID_LEN, WORKERS_MAX), WORKERS_MAX - 1);
}

static void test_bus_id_per_worker(void **state)
{
    (void)state;
    struct server_config cfg = {0};
    workers_bus_id(cfg.bus_id, sizeof cfg.bus_id, "n1", 2);
    assert_string_equal(cfg.bus_id, "n1.w2");
    char longest[NODE_ID_MAX + 1];
    memset(longest, 'x', NODE_ID_MAX);
    longest[NODE_ID_MAX] = '\0';
    workers_bus_id(cfg.bus_id, sizeof cfg.bus_id, longest, WORKERS_MAX - 1);
    assert_int_equal(strlen(cfg.bus_id), NODE_ID_MAX + 4); /* the longest node id and worker still fit whole */
    assert_string_equal(cfg.bus_id + NODE_ID_MAX, ".w63");
}

static void test_record_round_trip(void **state)
{
    (void)state;
    static uint8_t rec[WORKERS_MSG_HEADER + WORKERS_MSG_MAX];
    const size_t sizes[] = {1, 2, 255, 256, 65535, WORKERS_MSG_MAX};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const uint8_t *bytes = NULL;
        size_t len = 0;
        workers_msg_header(rec, sizes[i]);
        memset(rec + WORKERS_MSG_HEADER, 'a' + (int)i, sizes[i]);
        assert_int_equal(workers_msg_parse(rec, WORKERS_MSG_HEADER + sizes[i], &bytes, &len), 0);
        assert_ptr_equal(bytes, rec + WORKERS_MSG_HEADER);
        assert_int_equal(len, sizes[i]);
    }
}

static void test_bad_records_refused(void **state)
{
    (void)state;
    uint8_t rec[WORKERS_MSG_HEADER + 16];
    const uint8_t *bytes;
    size_t len;
    workers_msg_header(rec, 16);
    assert_int_equal(workers_msg_parse(rec, sizeof rec, &bytes, &len), 0);
    assert_int_equal(workers_msg_parse(rec, sizeof rec - 1, &bytes, &len), -1); /* cut short */
    assert_int_equal(workers_msg_parse(rec, WORKERS_MSG_HEADER - 1, &bytes, &len), -1);
    workers_msg_header(rec, 15);
    assert_int_equal(workers_msg_parse(rec, sizeof rec, &bytes, &len), -1); /* bytes beyond the count */
    workers_msg_header(rec, 0);
    assert_int_equal(workers_msg_parse(rec, WORKERS_MSG_HEADER, &bytes, &len), -1); /* a head is never empty */
    workers_msg_header(rec, 16);
    rec[2] = 2; /* another version */
    assert_int_equal(workers_msg_parse(rec, sizeof rec, &bytes, &len), -1);
    workers_msg_header(rec, 16);
    rec[0] = 'X';
    assert_int_equal(workers_msg_parse(rec, sizeof rec, &bytes, &len), -1);
    static uint8_t big[WORKERS_MSG_HEADER + WORKERS_MSG_MAX + 1];
    workers_msg_header(big, WORKERS_MSG_MAX + 1);
    assert_int_equal(workers_msg_parse(big, sizeof big, &bytes, &len), -1); /* over the most a worker hands over */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_worker_is_named_and_found),
        cmocka_unit_test(test_malformed_sids_name_no_worker),
        cmocka_unit_test(test_bus_id_per_worker),
        cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test(test_bad_records_refused),
    };
    return cmocka_run_group_tests_name("workers", tests, NULL, NULL);
}
