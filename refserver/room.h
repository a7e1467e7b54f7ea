/* Rooms: which local clients share a broadcast scope. A room exists while it has members; the registry tells its
 * owner when a room opens and closes so the node can SUBSCRIBE and UNSUBSCRIBE its Redis channel. Members are
 * embedded struct room_member handles, so the registry knows nothing about clients and removal is O(1). */
#ifndef REFSERVER_ROOM_H
#define REFSERVER_ROOM_H

#include <stddef.h>
#include <stdint.h>

#define ROOM_NAME_MAX 128

struct room_member {
    struct room *room; /* NULL when in no room */
    uint32_t slot;     /* index in room->members */
};

struct room {
    struct room *next_in_bucket;
    struct room_member **members;
    uint32_t count, cap;
    uint32_t hash;
    size_t name_len;
    char name[]; /* NUL-terminated */
};

struct room_registry {
    struct room **buckets;
    uint32_t nbuckets, nrooms;
    void (*on_open)(void *ctx, struct room *room);  /* the first member joined */
    void (*on_close)(void *ctx, struct room *room); /* the last member left; room is freed after the call */
    void *ctx;
};

/* An empty registry with the given hooks (either may be NULL). 0, or -1 on out of memory. */
int room_registry_init(struct room_registry *reg, void (*on_open)(void *, struct room *),
                       void (*on_close)(void *, struct room *), void *ctx);
/* Free every room (members are only detached). */
void room_registry_free(struct room_registry *reg);
/* The room with this name, or NULL. */
struct room *room_find(const struct room_registry *reg, const char *name, size_t len);
/* Put m in room name (creating it). 0, or -1 on out of memory (m stays in no room). */
int room_join(struct room_registry *reg, struct room_member *m, const char *name, size_t len);
/* Take m out of its room, if any; closes the room when it empties. */
void room_leave(struct room_registry *reg, struct room_member *m);
/* Every room, in no particular order: room_next(reg, NULL) is the first, NULL follows the last. The registry must
 * not change between two calls (take the next room before delivering to the current one). */
struct room *room_next(const struct room_registry *reg, const struct room *r);
/* The room a request target's query names (room=NAME) into out (ROOM_NAME_MAX + 1 bytes), dflt when it names none.
 * Its length, or -1 when it is not a valid room name (1-128 visible ASCII characters). */
int room_param(const char *target, size_t target_len, const char *dflt, char *out);

#endif
