/* Test helper shared by the parser tests: put an input right before an unreadable page, as picohttpparser's tests
 * do, so a parser that reads one byte too far crashes instead of passing. Include after <cmocka.h>. */
#ifndef TESTS_UNIT_GUARD_H
#define TESTS_UNIT_GUARD_H

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static char *guard_map;
static size_t guard_map_len;

/* A writable copy of s[0..n) whose last byte sits right before a PROT_NONE page. Valid until the next call. */
static void *guarded(const void *s, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data = n ? (n + page - 1) / page * page : page;
    if (guard_map)
        munmap(guard_map, guard_map_len);
    guard_map_len = data + page;
    guard_map = mmap(NULL, guard_map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(guard_map != MAP_FAILED);
    assert_int_equal(mprotect(guard_map + data, page, PROT_NONE), 0);
    char *p = guard_map + data - n;
    if (n)
        memcpy(p, s, n);
    return p;
}

/* cmocka group teardown. */
static int unmap_guard(void **state)
{
    (void)state;
    if (guard_map)
        munmap(guard_map, guard_map_len);
    guard_map = NULL;
    return 0;
}

#endif
