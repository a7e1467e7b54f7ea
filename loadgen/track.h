/* Exactly-once, in-order bookkeeping for one (receiver, emitter) pair, in 16 bytes so 10k receivers times a few
 * emitters each stay small.
 *
 * Messages from one emitter carry seq 1, 2, 3, ...; the receiver must see each once, in that order. The tracker
 * keeps the highest seq seen and a bitmap of which of the LG_TRACK_WINDOW seqs below it were seen, which is exact
 * for anything within the window and calls an older arrival "stale" (it is certainly late: rounds have deadlines
 * far shorter than 64 rounds). */
#ifndef LOADGEN_TRACK_H
#define LOADGEN_TRACK_H

#include <stdint.h>

#define LG_TRACK_WINDOW 64

struct lg_track {
    uint32_t high; /* highest seq seen, 0 = none yet */
    uint32_t pad_;
    uint64_t window; /* bit i set: seq high-1-i was seen (i = 0 .. LG_TRACK_WINDOW-1) */
};

enum lg_track_verdict {
    LG_TRACK_IN_ORDER = 0, /* first arrival, above every seq seen before */
    LG_TRACK_REORDERED,    /* first arrival, but a higher seq came before it */
    LG_TRACK_DUPLICATE,    /* seen before */
    LG_TRACK_STALE,        /* older than the window: cannot tell, certainly late */
    LG_TRACK_INVALID,      /* seq 0 */
};

/* Record the arrival of seq and classify it. A zeroed struct lg_track is ready to use. */
enum lg_track_verdict lg_track_see(struct lg_track *t, uint32_t seq);

/* Was seq seen (false for 0, for anything above high and for anything older than the window)? */
int lg_track_seen(const struct lg_track *t, uint32_t seq);

#endif
