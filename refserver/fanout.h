/* Fan-out: one message's frames, encoded once, offered to every member of a room. /ws (wsroom.c) and Socket.IO
 * (socketio.c) deliver through it, each with its own offer callback (which picks and queues). */
#ifndef REFSERVER_FANOUT_H
#define REFSERVER_FANOUT_H

#include "common/buf.h"
#include "refserver/room.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Offer frames[0..n) to member m (skip it, or queue a reference to each frame). True when m took them. */
typedef bool fanout_offer_fn(struct room_member *m, struct slice *const *frames, size_t n, void *ctx);

/* Offer frames[0..n) to each member of room through offer; how many took them. An offer may end its own member
 * (a slow consumer), which takes it out of the room, and the room with it when it was the last: every other member
 * is still offered the frames once. An offer must not take other members out. */
uint64_t fanout(struct room *room, struct slice *const *frames, size_t n, fanout_offer_fn *offer, void *ctx);

#endif
