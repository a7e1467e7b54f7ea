/* The room registry: members per room, and the open/close calls that drive SUBSCRIBE (see room.h). */
#include "refserver/room.h"

#include "common/http.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a: room names are short and chosen by clients; the table only needs a cheap, decent spread. */
static uint32_t name_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

int room_registry_init(struct room_registry *reg, void (*on_open)(void *, struct room *),
                       void (*on_close)(void *, struct room *), void *ctx)
{
    *reg = (struct room_registry){.nbuckets = 64, .on_open = on_open, .on_close = on_close, .ctx = ctx};
    reg->buckets = calloc(reg->nbuckets, sizeof *reg->buckets);
    return reg->buckets ? 0 : -1;
}

static void room_free(struct room *r)
{
    for (uint32_t i = 0; i < r->count; i++)
        r->members[i]->room = NULL;
    free(r->members);
    free(r);
}

void room_registry_free(struct room_registry *reg)
{
    for (uint32_t b = 0; b < reg->nbuckets; b++) {
        struct room *r = reg->buckets[b];
        while (r) {
            struct room *next = r->next_in_bucket;
            room_free(r);
            r = next;
        }
    }
    free(reg->buckets);
    reg->buckets = NULL;
}

struct room *room_find(const struct room_registry *reg, const char *name, size_t len)
{
    uint32_t h = name_hash(name, len);
    for (struct room *r = reg->buckets[h & (reg->nbuckets - 1)]; r; r = r->next_in_bucket)
        if (r->hash == h && r->name_len == len && !memcmp(r->name, name, len))
            return r;
    return NULL;
}

/* Double the bucket array when rooms outnumber buckets; a failed grow only costs longer chains. */
static void maybe_grow(struct room_registry *reg)
{
    if (reg->nrooms < reg->nbuckets)
        return;
    uint32_t n = reg->nbuckets * 2;
    struct room **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (uint32_t i = 0; i < reg->nbuckets; i++) {
        struct room *r = reg->buckets[i];
        while (r) {
            struct room *next = r->next_in_bucket;
            r->next_in_bucket = b[r->hash & (n - 1)];
            b[r->hash & (n - 1)] = r;
            r = next;
        }
    }
    free(reg->buckets);
    reg->buckets = b;
    reg->nbuckets = n;
}

static struct room *room_create(struct room_registry *reg, const char *name, size_t len)
{
    struct room *r = calloc(1, sizeof *r + len + 1);
    if (!r)
        return NULL;
    memcpy(r->name, name, len);
    r->name_len = len;
    r->hash = name_hash(name, len);
    maybe_grow(reg);
    struct room **head = &reg->buckets[r->hash & (reg->nbuckets - 1)];
    r->next_in_bucket = *head;
    *head = r;
    reg->nrooms++;
    if (reg->on_open)
        reg->on_open(reg->ctx, r);
    return r;
}

static void room_destroy(struct room_registry *reg, struct room *r)
{
    struct room **p = &reg->buckets[r->hash & (reg->nbuckets - 1)];
    while (*p != r)
        p = &(*p)->next_in_bucket;
    *p = r->next_in_bucket;
    reg->nrooms--;
    if (reg->on_close)
        reg->on_close(reg->ctx, r);
    room_free(r);
}

int room_join(struct room_registry *reg, struct room_member *m, const char *name, size_t len)
{
    struct room *r = room_find(reg, name, len);
    if (!r && !(r = room_create(reg, name, len)))
        return -1;
    if (r->count == r->cap) {
        uint32_t cap = r->cap ? r->cap * 2 : 8;
        struct room_member **mm = realloc(r->members, cap * sizeof *mm);
        if (!mm) {
            if (r->count == 0)
                room_destroy(reg, r);
            return -1;
        }
        r->members = mm;
        r->cap = cap;
    }
    m->room = r;
    m->slot = r->count;
    r->members[r->count++] = m;
    return 0;
}

void room_leave(struct room_registry *reg, struct room_member *m)
{
    struct room *r = m->room;
    if (!r)
        return;
    /* Swap-remove: broadcast order within a node is not promised between receivers, only per receiver. */
    struct room_member *last = r->members[--r->count];
    r->members[m->slot] = last;
    last->slot = m->slot;
    m->room = NULL;
    if (r->count == 0)
        room_destroy(reg, r);
}

struct room *room_next(const struct room_registry *reg, const struct room *r)
{
    if (r && r->next_in_bucket)
        return r->next_in_bucket;
    for (uint32_t b = r ? (r->hash & (reg->nbuckets - 1)) + 1 : 0; b < reg->nbuckets; b++)
        if (reg->buckets[b])
            return reg->buckets[b];
    return NULL;
}

static bool valid_room(const char *name)
{
    if (!*name)
        return false;
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return false;
    return true;
}

int room_param(const char *target, size_t target_len, const char *dflt, char *out)
{
    int found = http_query_param(target, target_len, "room", out, ROOM_NAME_MAX + 1);
    if (found == 0)
        snprintf(out, ROOM_NAME_MAX + 1, "%s", dflt);
    return found < 0 || (found > 0 && !valid_room(out)) ? -1 : (int)strlen(out);
}
