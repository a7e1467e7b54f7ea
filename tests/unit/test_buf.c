/* buf: growth, the memory cap, compaction; slices and slice queues: sharing, partial writes, dropping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"

#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

static void test_zero_buf_is_empty_and_owns_nothing(void **state)
{
    (void)state;
    struct buf b = {0};
    assert_int_equal(buf_len(&b), 0);
    buf_release_if_empty(&b);
    buf_free(&b);
    assert_null(b.data);
}

static void test_append_consume_rewinds(void **state)
{
    (void)state;
    struct buf b = {0};
    assert_int_equal(buf_append(&b, "hello world", 11), 0);
    buf_consume(&b, 6);
    assert_int_equal(buf_len(&b), 5);
    assert_memory_equal(buf_head(&b), "world", 5);
    buf_consume(&b, 5);
    assert_int_equal(b.rpos, 0);
    assert_int_equal(b.wpos, 0);
    buf_release_if_empty(&b);
    assert_null(b.data);
}

static void test_growth_keeps_content(void **state)
{
    (void)state;
    struct buf b = {0};
    char chunk[1000];
    for (int i = 0; i < 100; i++) {
        memset(chunk, 'a' + i % 26, sizeof chunk);
        assert_int_equal(buf_append(&b, chunk, sizeof chunk), 0);
    }
    assert_int_equal(buf_len(&b), 100000);
    for (int i = 0; i < 100; i++)
        assert_int_equal(buf_head(&b)[i * 1000 + 999], 'a' + i % 26);
    buf_free(&b);
}

static void test_cap_refuses_and_leaves_buffer_unchanged(void **state)
{
    (void)state;
    struct buf b = {.max = 300};
    char big[400] = {0};
    assert_int_equal(buf_append(&b, big, 250), 0);
    assert_int_equal(buf_append(&b, big, 100), -1);
    assert_int_equal(buf_len(&b), 250);
    assert_true(b.cap <= 300);
    /* consuming makes room again: compaction, not growth */
    buf_consume(&b, 200);
    assert_int_equal(buf_append(&b, big, 200), 0);
    assert_int_equal(buf_len(&b), 250);
    assert_true(b.cap <= 300);
    buf_free(&b);
}

/* Formatted text of any length lands whole after what is there; over the cap nothing changes. */
static void test_appendf(void **state)
{
    (void)state;
    struct buf b = {0};
    assert_int_equal(buf_append(&b, "x", 1), 0);
    char long_word[2000];
    memset(long_word, 'w', sizeof long_word - 1);
    long_word[sizeof long_word - 1] = '\0';
    assert_int_equal(buf_appendf(&b, "%d %s.", 42, long_word), 0);
    assert_int_equal(buf_len(&b), 1 + 3 + 1999 + 1);
    assert_memory_equal(buf_head(&b), "x42 ww", 6);
    assert_memory_equal(buf_head(&b) + buf_len(&b) - 2, "w.", 2);
    buf_free(&b);

    struct buf capped = {.max = 16};
    assert_int_equal(buf_appendf(&capped, "%s", "0123456789"), 0);
    assert_int_equal(buf_appendf(&capped, "%s", "0123456789"), -1);
    assert_int_equal(buf_len(&capped), 10);
    assert_memory_equal(buf_head(&capped), "0123456789", 10);
    buf_free(&capped);
}

static void test_reserve_commit(void **state)
{
    (void)state;
    struct buf b = {0};
    assert_int_equal(buf_reserve(&b, 64), 0);
    assert_true(buf_room(&b) >= 64);
    memcpy(buf_tail(&b), "abc", 3);
    buf_commit(&b, 3);
    assert_int_equal(buf_len(&b), 3);
    assert_memory_equal(buf_head(&b), "abc", 3);
    buf_free(&b);
}

static struct slice *slice_of(const char *s)
{
    struct slice *x = slice_new(strlen(s));
    memcpy(x->data, s, strlen(s));
    return x;
}

static void test_one_slice_many_queues(void **state)
{
    (void)state;
    struct slice *f = slice_of("frame");
    struct slice_queue q[3] = {{0}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(sq_push(&q[i], f), 0);
    assert_int_equal(f->refs, 4);
    slice_unref(f); /* the encoder's reference */
    for (int i = 0; i < 3; i++) {
        struct iovec iov[4];
        assert_int_equal(sq_iov(&q[i], iov, 4), 1);
        assert_ptr_equal(iov[0].iov_base, f->data); /* shared, not copied */
        sq_consume(&q[i], 5);
        assert_int_equal(q[i].count, 0);
    }
    /* the last consume freed it; ASan would report a leak or double free otherwise */
}

static void test_partial_writes_across_slices(void **state)
{
    (void)state;
    struct slice_queue q = {0};
    struct slice *a = slice_of("abc"), *b = slice_of("defgh");
    sq_push(&q, a);
    sq_push(&q, b);
    slice_unref(a);
    slice_unref(b);
    assert_int_equal(q.bytes, 8);
    sq_consume(&q, 2);
    assert_true(sq_mid_slice(&q));
    struct iovec iov[4];
    assert_int_equal(sq_iov(&q, iov, 4), 2);
    assert_int_equal(iov[0].iov_len, 1);
    assert_memory_equal(iov[0].iov_base, "c", 1);
    sq_consume(&q, 3); /* "c" + "de" */
    assert_int_equal(q.count, 1);
    assert_int_equal(q.bytes, 3);
    assert_int_equal(sq_iov(&q, iov, 4), 1);
    assert_memory_equal(iov[0].iov_base, "fgh", 3);
    sq_free(&q);
}

static void test_queue_wraps_and_grows(void **state)
{
    (void)state;
    struct slice_queue q = {0};
    struct slice *s[100];
    char name[16];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "%03d", i);
        s[i] = slice_of(name);
    }
    /* interleave pushes and pops so head wraps around before the queue grows */
    int next_pop = 0;
    for (int i = 0; i < 100; i++) {
        sq_push(&q, s[i]);
        if (i % 3 == 2) {
            struct iovec iov[1];
            sq_iov(&q, iov, 1);
            snprintf(name, sizeof name, "%03d", next_pop++);
            assert_memory_equal(iov[0].iov_base, name, 3);
            sq_consume(&q, 3);
        }
    }
    while (q.count) {
        struct iovec iov[1];
        sq_iov(&q, iov, 1);
        snprintf(name, sizeof name, "%03d", next_pop++);
        assert_memory_equal(iov[0].iov_base, name, 3);
        sq_consume(&q, 3);
    }
    assert_int_equal(next_pop, 100);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(s[i]->refs, 1);
        slice_unref(s[i]);
    }
}

static void test_drop_unstarted_keeps_partial_frame(void **state)
{
    (void)state;
    struct slice_queue q = {0};
    struct slice *a = slice_of("first"), *b = slice_of("second"), *c = slice_of("third");
    sq_push(&q, a);
    sq_push(&q, b);
    sq_push(&q, c);
    sq_consume(&q, 2);
    sq_drop_unstarted(&q);
    assert_int_equal(q.count, 1);
    assert_int_equal(q.bytes, 3);
    assert_int_equal(b->refs, 1);
    sq_free(&q);
    assert_int_equal(a->refs, 1);
    slice_unref(a);
    slice_unref(b);
    slice_unref(c);

    struct slice_queue q2 = {0};
    struct slice *d = slice_of("whole");
    sq_push(&q2, d);
    sq_drop_unstarted(&q2);
    assert_int_equal(q2.count, 0);
    assert_int_equal(q2.bytes, 0);
    slice_unref(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zero_buf_is_empty_and_owns_nothing),
        cmocka_unit_test(test_append_consume_rewinds),
        cmocka_unit_test(test_growth_keeps_content),
        cmocka_unit_test(test_cap_refuses_and_leaves_buffer_unchanged),
        cmocka_unit_test(test_appendf),
        cmocka_unit_test(test_reserve_commit),
        cmocka_unit_test(test_one_slice_many_queues),
        cmocka_unit_test(test_partial_writes_across_slices),
        cmocka_unit_test(test_queue_wraps_and_grows),
        cmocka_unit_test(test_drop_unstarted_keeps_partial_frame),
    };
    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
