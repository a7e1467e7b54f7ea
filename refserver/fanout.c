/* Fan-out of one message to a room's members; see fanout.h. */
#include "refserver/fanout.h"

uint64_t fanout(struct room *room, struct slice *const *frames, size_t n, fanout_offer_fn *offer, void *ctx)
{
    uint64_t took = 0;
    uint32_t left = room->count; /* room->count, kept here: the room is freed when its last member leaves */
    for (uint32_t i = 0; i < left;) {
        struct room_member *m = room->members[i];
        took += offer(m, frames, n, ctx);
        if (m->room == room)
            i++;
        else
            left--; /* m left (ended by its offer): the last member took slot i, and is offered next */
    }
    return took;
}
