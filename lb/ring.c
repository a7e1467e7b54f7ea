/* Consistent hash ring; see ring.h. */
#include "lb/ring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t ring_hash(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64 */
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33; /* murmur3 fmix64 */
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static int cmp_point(const void *a, const void *b)
{
    const struct ring_point *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return x->node < y->node ? -1 : x->node > y->node; /* equal hashes: a fixed order, so lookups are stable */
}

int ring_build(struct ring *r, const struct ring_member *members, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (members[i].weight > RING_MAX_WEIGHT)
            return -1;
        total += (size_t)members[i].weight * RING_POINTS_PER_WEIGHT;
    }
    struct ring_point *points = total ? malloc(total * sizeof *points) : NULL;
    if (total && !points)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t count = members[i].weight * RING_POINTS_PER_WEIGHT;
        for (uint32_t j = 0; j < count; j++) {
            char label[300];
            int len = snprintf(label, sizeof label, "%s#%u", members[i].name, j);
            points[k++] = (struct ring_point){.hash = ring_hash(label, (size_t)len), .node = (uint32_t)i};
        }
    }
    if (total) /* qsort's pointer must not be NULL, even for no elements */
        qsort(points, total, sizeof *points, cmp_point);
    free(r->points);
    r->points = points;
    r->npoints = total;
    return 0;
}

void ring_free(struct ring *r)
{
    free(r->points);
    r->points = NULL;
    r->npoints = 0;
}

int ring_lookup(const struct ring *r, uint64_t key_hash, bool (*usable)(uint32_t node, void *arg), void *arg)
{
    if (r->npoints == 0)
        return -1;
    size_t lo = 0, hi = r->npoints; /* first point with hash >= key_hash */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->points[mid].hash < key_hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = 0; i < r->npoints; i++) {
        const struct ring_point *p = &r->points[(lo + i) % r->npoints];
        if (!usable || usable(p->node, arg))
            return (int)p->node;
    }
    return -1;
}
