/* libFuzzer target for loadgen/template.c's lg_find_extract: it walks every message a server sends when --find is
 * given (servers we did not write included), often only the head of a longer message.
 *
 * Input: the first byte picks a --find path (JSON pointers of several depths, array indexes, an escaped token, a
 * regex); the rest is the received message, placed at the very end of an exact-size allocation so ASan flags a read
 * past it. Invariants abort(): the answer is -1 or a length within the output's capacity; the same answer comes
 * twice (no hidden state); a pointer's answer on a head never exceeds what the head holds plus unescaping's
 * shrinkage (the output is at most as long as the input). */
#include "loadgen/template.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const PATHS[] = {"",       "/text",     "/a/b",    "/data/0/msg",
                                    "/0",     "/x~1y/~0z", "/1/text", "re:\"text\":\"([^\"]*)\"",
                                    "re:wsh", "re:^(.*)$"};

static void check(bool ok)
{
    if (!ok)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct lg_find finds[sizeof PATHS / sizeof PATHS[0]];
    static bool ready;
    if (!ready) {
        char err[160];
        for (size_t i = 0; i < sizeof PATHS / sizeof PATHS[0]; i++)
            check(lg_find_parse(PATHS[i], &finds[i], err, sizeof err) == 0);
        ready = true;
    }
    if (size < 1)
        return 0;
    const struct lg_find *f = &finds[data[0] % (sizeof PATHS / sizeof PATHS[0])];
    size_t len = size - 1;
    char *msg = malloc(len ? len : 1);
    if (!msg)
        return 0;
    memcpy(msg, data + 1, len);
    char out[LG_PAYLOAD_PREFIX], again[LG_PAYLOAD_PREFIX];
    long n = lg_find_extract(f, msg, len, out, sizeof out);
    check(n >= -1 && n <= (long)sizeof out);
    check(n <= (long)len || n == -1);
    long m = lg_find_extract(f, msg, len, again, sizeof again);
    check(m == n && (n <= 0 || memcmp(out, again, (size_t)n) == 0));
    free(msg);
    return 0;
}
