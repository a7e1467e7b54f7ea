/* Exactly-once, in-order bookkeeping for one (receiver, emitter) pair; see track.h.
 *
 * Seqs are uint32_t and never wrap (a run has far fewer than 2^32 rounds), so every comparison is a plain one and
 * a jump to UINT32_MAX is just a big jump. Bit i of the window stands for seq high-1-i; a shift by LG_TRACK_WINDOW
 * or more would be undefined, so those jumps are handled apart. */
#include "loadgen/track.h"

/* Move high up to seq (> high), keeping the bits that stay within the window and marking the old high seen. */
static void advance(struct lg_track *t, uint32_t seq)
{
    uint32_t jump = seq - t->high;
    if (t->high == 0 || jump > LG_TRACK_WINDOW)
        t->window = 0; /* nothing seen yet, or the old high falls out of the window */
    else if (jump == LG_TRACK_WINDOW)
        t->window = 1ull << (LG_TRACK_WINDOW - 1); /* bit 63 is the old high; the rest falls out */
    else
        t->window = t->window << jump | 1ull << (jump - 1);
    t->high = seq;
}

enum lg_track_verdict lg_track_see(struct lg_track *t, uint32_t seq)
{
    if (seq == 0)
        return LG_TRACK_INVALID;
    if (seq > t->high) {
        advance(t, seq);
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
