/* libFuzzer target for hist_decode_v2, which reads .hlog blobs from files we did not write. Whatever decodes must
 * re-encode and decode again to the same counts; the input is copied into an exact-size allocation so ASan flags any
 * read past its end. A huge declared layout is refused by hist_new's checks, not by running out of memory. */
#include "common/hist.h"

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
    struct hist *h = NULL, *again = NULL;
    char *b64 = NULL;
    size_t len = 0;
    if (hist_decode_v2(in, size, &h) == 0) {
        if (hist_encode_v2(h, &b64, &len) != 0 || hist_decode_v2(b64, len, &again) != 0)
            abort();
        if (hist_count(h) != hist_count(again) || hist_max(h) != hist_max(again) ||
            hist_percentile(h, 99) != hist_percentile(again, 99))
            abort();
    }
    hist_free(h);
    hist_free(again);
    free(b64);
    free(in);
    return 0;
}
