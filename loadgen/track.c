/* Per (receiver, emitter) exactly-once bookkeeping; see track.h. */
#include "loadgen/track.h"

enum lg_track_verdict lg_track_see(struct lg_track *t, uint32_t seq)
{
    if (seq == 0)
        return LG_TRACK_INVALID;
    if (seq > t->high) {
        uint32_t jump = seq - t->high;
        if (t->high == 0 || jump > LG_TRACK_WINDOW)
            t->window = 0;
        else if (jump == LG_TRACK_WINDOW)
            t->window = 1ull << (LG_TRACK_WINDOW - 1);
        else
            t->window = (t->window << jump) | (1ull << (jump - 1));
        t->high = seq;
        return LG_TRACK_IN_ORDER;
    }
    if (seq == t->high)
        return LG_TRACK_DUPLICATE;
    uint32_t back = t->high - 1 - seq;
    if (back >= LG_TRACK_WINDOW)
        return LG_TRACK_STALE;
    uint64_t bit = 1ull << back;
    if (t->window & bit)
        return LG_TRACK_DUPLICATE;
    t->window |= bit;
    return LG_TRACK_REORDERED;
}

int lg_track_seen(const struct lg_track *t, uint32_t seq)
{
    if (seq == 0 || seq > t->high)
        return 0;
    if (seq == t->high)
        return 1;
    uint32_t back = t->high - 1 - seq;
    return back < LG_TRACK_WINDOW && (t->window >> back & 1);
}
