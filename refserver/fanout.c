/* Fan-out of one message to a room's members; see fanout.h. */
#include "refserver/fanout.h"

uint64_t fanout(struct room *room, struct slice *const *frames, size_t n, fanout_offer_fn *offer, void *ctx)
{
    uint64_t took = 0;
    for (uint32_t i = 0; i < room->count; i++)
        took += offer(room->members[i], frames, n, ctx);
    return took;
}
