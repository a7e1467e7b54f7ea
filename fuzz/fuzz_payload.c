/* libFuzzer target for lg_payload_parse, which reads every message a server sends to loadgen's clients (servers we
 * did not write included). The input sits in an exact-size allocation so ASan flags any read past its end; whatever
 * parses must encode back to a message that parses to the same fields. */
#include "loadgen/payload.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size ? size : 1);
    if (!in)
        return 0;
    memcpy(in, data, size);
    struct lg_msg m, again;
    int rc = lg_payload_parse(in, size, &m);
    if (rc < -1 || rc > 1)
        abort();
    if (rc == 1 && m.send_ns >= 0) {
        char out[LG_PAYLOAD_MIN + 16];
        if (lg_payload_encode(&m, out, sizeof out) != (int)sizeof out || lg_payload_parse(out, sizeof out, &again) != 1)
            abort();
        if (again.emitter != m.emitter || again.round != m.round || again.seq != m.seq || again.send_ns != m.send_ns)
            abort();
    }
    free(in);
    return 0;
}
