/* A consistent hash ring with weights, for `balance source` (the client's address) and `balance param:NAME` (a
 * query parameter such as the room: one room, one node).
 *
 * Each node owns weight * RING_POINTS_PER_WEIGHT points at hash(name, i), so a node's points depend on its name
 * only: adding or removing a node moves only the keys that land on (or leave) that node, and a restart or a reload
 * with the same names maps every key as before. A key goes to the first point at or after its hash, wrapping; a node
 * that is down is skipped, so its keys spread over the next points (the other nodes) and come back when it does.
 * Points per weight unit: ketama's 160 (nginx `hash ... consistent`) and HAProxy's 16 leave the busiest of N equal
 * nodes 10-20% over the average; 1024 keeps it within 7% for 2 to 16 nodes over 100k keys (tests/unit/test_ring.c),
 * for 16 KB per node of weight 1 and a lookup that stays a binary search. */
#ifndef LB_RING_H
#define LB_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RING_POINTS_PER_WEIGHT 1024
#define RING_MAX_WEIGHT        256

struct ring_point {
    uint64_t hash;
    uint32_t node; /* index into the members given to ring_build */
};

struct ring {
    struct ring_point *points; /* sorted by hash */
    size_t npoints;
};

struct ring_member {
    const char *name; /* stable identity: the server's name in the config */
    uint32_t weight;  /* 0 (owns no key) .. RING_MAX_WEIGHT */
};

/* Build r for n members (replacing what r held). 0, or -1 on a weight over RING_MAX_WEIGHT or out of memory
 * (r unchanged). */
int ring_build(struct ring *r, const struct ring_member *members, size_t n);
void ring_free(struct ring *r);

/* The member for key_hash: the first point at or after it whose node usable() accepts (NULL: all are). -1 when the
 * ring is empty or no node is usable. */
int ring_lookup(const struct ring *r, uint64_t key_hash, bool (*usable)(uint32_t node, void *arg), void *arg);

/* The 64-bit hash used for keys and points (FNV-1a, then a murmur3 finaliser so nearby inputs such as consecutive
 * client addresses land far apart). */
uint64_t ring_hash(const void *data, size_t len);

#endif
