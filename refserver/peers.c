/* The bus's participants as heard on the heartbeat channel; see peers.h. */
#include "refserver/peers.h"

#include "common/buf.h"
#include "common/log.h"
#include "refserver/wire.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t peers_hash(const char *s, size_t len)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
    return h ? h : 1;
}

int peers_init(struct peers *p, const char *self, const char *sio_key, const char *const *nsps, uint32_t nsp_count)
{
    *p = (struct peers){.self = self,
                        .sio_key = sio_key ? peers_hash(sio_key, strlen(sio_key)) : 0,
                        .nsps = nsps,
                        .nsp_count = nsp_count < PEERS_NSP_MAX ? nsp_count : PEERS_NSP_MAX};
    p->v = calloc(PEERS_MAX, sizeof *p->v);
    return p->v ? 0 : -1;
}

void peers_free(struct peers *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].rooms);
    free(p->v);
    p->v = NULL;
    p->n = 0;
}

int peers_encode(struct buf *out, const struct peers *p, uint32_t pid, const uint64_t *rooms, size_t nrooms)
{
    return wire_hb_encode(out, &(struct wire_hb_out){.id = p->self,
                                                     .pid = pid,
                                                     .sio_key = p->sio_key,
                                                     .nsps = p->nsps,
                                                     .nsp_count = p->nsp_count,
                                                     .rooms = rooms,
                                                     .nrooms = nrooms});
}

int peers_encode_bye(struct buf *out, const struct peers *p, uint32_t pid)
{
    return wire_bye_encode(out, p->self, pid);
}

/* The bit mask of our namespaces in the comma list s[0..len) ("-": none). */
static uint32_t nsp_mask(const struct peers *p, const char *s, size_t len)
{
    uint32_t mask = 0;
    for (size_t i = 0; i < len && !(len == 1 && s[0] == '-');) {
        const char *comma = memchr(s + i, ',', len - i);
        size_t n = comma ? (size_t)(comma - (s + i)) : len - i;
        for (uint32_t k = 0; k < p->nsp_count; k++)
            if (strlen(p->nsps[k]) == n && !memcmp(p->nsps[k], s + i, n))
                mask |= 1u << k;
        i += n + 1;
    }
    return mask;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The room hashes of heartbeat hb into pe: sorted, or rooms_known false ("*"). 0, or -1 when malformed. */
static int take_rooms(struct peer *pe, const struct wire_hb *hb)
{
    uint64_t listed[WIRE_ROOMS_MAX];
    size_t n = 0;
    int rc = wire_hb_rooms(hb, listed, &n);
    if (rc <= 0) {
        if (rc == 0) {
            pe->rooms_known = false;
            pe->nrooms = 0;
        }
        return rc;
    }
    uint64_t *rooms = n ? malloc(n * sizeof *rooms) : NULL;
    if (n && !rooms)
        return -1;
    if (n) { /* rooms is NULL for "0": qsort must not be handed a null array, even empty */
        memcpy(rooms, listed, n * sizeof *rooms);
        qsort(rooms, n, sizeof *rooms, cmp_u64);
    }
    free(pe->rooms);
    pe->rooms = rooms;
    pe->nrooms = n;
    pe->rooms_known = true;
    return 0;
}

/* The entry for id, made when new (NULL when the table is full). *fresh says it was made. */
static struct peer *peer_slot(struct peers *p, const char *id, size_t len, bool *fresh)
{
    *fresh = false;
    for (size_t i = 0; i < p->n; i++)
        if (strlen(p->v[i].id) == len && !memcmp(p->v[i].id, id, len))
            return &p->v[i];
    if (p->n == PEERS_MAX) {
        if (!p->full_said)
            LOG_WARN("more than %d participants on the bus: the others are not tracked", PEERS_MAX);
        p->full_said = true;
        return NULL;
    }
    struct peer *pe = &p->v[p->n++];
    *pe = (struct peer){0};
    memcpy(pe->id, id, len);
    *fresh = true;
    return pe;
}

static void peer_drop(struct peers *p, size_t i)
{
    free(p->v[i].rooms);
    p->v[i] = p->v[--p->n];
}

/* "wsh1-bye ID PID": the participant is leaving; forget it now rather than expect it for PEERS_ALIVE more. */
static int on_bye(struct peers *p, const char *id, size_t len)
{
    for (size_t i = 0; i < p->n; i++)
        if (strlen(p->v[i].id) == len && !memcmp(p->v[i].id, id, len)) {
            peer_drop(p, i);
            break;
        }
    return 0;
}

int peers_on_message(struct peers *p, const char *msg, size_t len, double now)
{
    struct wire_hb hb;
    if (wire_hb_parse(msg, len, &hb) < 0)
        return -1;
    bool self = strlen(p->self) == hb.id_len && !memcmp(p->self, hb.id, hb.id_len);
    if (hb.bye)
        return self ? 0 : on_bye(p, hb.id, hb.id_len);
    if (self)
        return 0;
    bool fresh;
    struct peer *pe = peer_slot(p, hb.id, hb.id_len, &fresh);
    if (!pe)
        return -1;
    if (take_rooms(pe, &hb) < 0) {
        if (fresh)
            peer_drop(p, p->n - 1);
        return -1;
    }
    pe->pid = hb.pid;
    pe->heard = now;
    pe->sio_key = hb.sio_key;
    pe->nsps = nsp_mask(p, hb.nsps, hb.nsps_len);
    return fresh ? 1 : 0;
}

void peers_prune(struct peers *p, double now)
{
    for (size_t i = p->n; i-- > 0;)
        if (now - p->v[i].heard > PEERS_FORGET)
            peer_drop(p, i);
}

static bool holds(const struct peers *p, const struct peer *pe, const struct peers_target *t)
{
    if (t->sio)
        return p->sio_key && pe->sio_key == p->sio_key && t->nsp < PEERS_NSP_MAX && (pe->nsps >> t->nsp & 1u);
    return pe->rooms_known && pe->nrooms && bsearch(&t->room, pe->rooms, pe->nrooms, sizeof t->room, cmp_u64);
}

uint32_t peers_expect(const struct peers *p, const struct peers_target *t, double now, char *names, size_t names_len)
{
    uint32_t n = 0;
    size_t used = 0;
    if (names && names_len)
        names[0] = '\0';
    for (size_t i = 0; i < p->n; i++) {
        const struct peer *pe = &p->v[i];
        if (now - pe->heard > PEERS_ALIVE || !holds(p, pe, t))
            continue;
        n++;
        if (!names || used >= names_len)
            continue;
        int w = snprintf(names + used, names_len - used, "%s%s", used ? " " : "", pe->id);
        used = w < 0 ? names_len : used + (size_t)w;
    }
    return n;
}

uint32_t peers_alive(const struct peers *p, double now)
{
    uint32_t n = 0;
    for (size_t i = 0; i < p->n; i++)
        n += now - p->v[i].heard <= PEERS_ALIVE;
    return n;
}
