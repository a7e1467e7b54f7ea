/* The bus's participants as heard on the heartbeat channel; see peers.h. */
#include "refserver/peers.h"

#include "common/buf.h"
#include "common/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKENS_MAX 8 /* the fixed fields of a heartbeat; the room hashes are taken one by one after them */

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
    int rc = buf_appendf(out, "wsh1-hb %s %" PRIu32 " ", p->self, pid);
    rc |= p->sio_key ? buf_appendf(out, "%016" PRIx64 " ", p->sio_key) : buf_append(out, "- ", 2);
    for (uint32_t i = 0; i < p->nsp_count; i++)
        rc |= buf_appendf(out, "%s%s", i ? "," : "", p->nsps[i]);
    rc |= p->nsp_count ? 0 : buf_append(out, "-", 1);
    if (nrooms > PEERS_ROOMS_MAX)
        return rc | buf_append(out, " *", 2);
    rc |= buf_appendf(out, " %zu", nrooms);
    for (size_t i = 0; i < nrooms; i++)
        rc |= buf_appendf(out, " %016" PRIx64, rooms[i]);
    return rc ? -1 : 0;
}

int peers_encode_bye(struct buf *out, const struct peers *p, uint32_t pid)
{
    return buf_appendf(out, "wsh1-bye %s %" PRIu32, p->self, pid);
}

/* Split msg at spaces into at most max tokens; the last one keeps the rest of the line. The count. */
static size_t tokenize(const char *msg, size_t len, const char **tok, size_t *tlen, size_t max)
{
    size_t n = 0, i = 0;
    while (i < len && n < max) {
        size_t end = i;
        if (n + 1 < max)
            while (end < len && msg[end] != ' ')
                end++;
        else
            end = len;
        tok[n] = msg + i;
        tlen[n++] = end - i;
        i = end + 1;
    }
    return n;
}

static bool parse_u64(const char *s, size_t len, int base, uint64_t *v)
{
    char tmp[24], *end;
    if (!len || len >= sizeof tmp)
        return false;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    if (tmp[0] == '-' || tmp[0] == '+')
        return false;
    *v = strtoull(tmp, &end, base);
    return *end == '\0';
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

/* The room hashes of a heartbeat ("N h1 h2 ..." or "*") into pe: sorted, or rooms_known false. 0, or -1. */
static int parse_rooms(struct peer *pe, const char *s, size_t len)
{
    const char *tok[2];
    size_t tlen[2], ntok = tokenize(s, len, tok, tlen, 2), at = 0, count;
    uint64_t n;
    if (ntok == 1 && tlen[0] == 1 && tok[0][0] == '*') {
        pe->rooms_known = false;
        pe->nrooms = 0;
        return 0;
    }
    if (ntok < 1 || !parse_u64(tok[0], tlen[0], 10, &n) || n > PEERS_ROOMS_MAX || (n > 0) != (ntok == 2))
        return -1;
    uint64_t *rooms = n ? malloc(n * sizeof *rooms) : NULL;
    if (n && !rooms)
        return -1;
    /* "h1 h2 ... hN": 16 hex digits each, one space between */
    for (count = 0; count < n && at + 16 <= tlen[1]; count++, at += 17)
        if ((at + 16 < tlen[1] && tok[1][at + 16] != ' ') || !parse_u64(tok[1] + at, 16, 16, &rooms[count]))
            break;
    if (count != n || (n && at != tlen[1] + 1)) {
        free(rooms);
        return -1;
    }
    if (n) /* rooms is NULL for "0": qsort must not be handed a null array, even empty */
        qsort(rooms, n, sizeof *rooms, cmp_u64);
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
    const char *tok[TOKENS_MAX];
    size_t tlen[TOKENS_MAX], n = tokenize(msg, len, tok, tlen, 6);
    uint64_t pid, key = 0;
    if (n < 3 || tlen[1] == 0 || tlen[1] > PEERS_ID_MAX || !parse_u64(tok[2], tlen[2], 10, &pid))
        return -1;
    bool self = strlen(p->self) == tlen[1] && !memcmp(p->self, tok[1], tlen[1]);
    if (n == 3 && tlen[0] == 8 && !memcmp(tok[0], "wsh1-bye", 8))
        return self ? 0 : on_bye(p, tok[1], tlen[1]);
    if (n != 6 || tlen[0] != 7 || memcmp(tok[0], "wsh1-hb", 7) != 0 ||
        !(tlen[3] == 1 && tok[3][0] == '-' ? true : tlen[3] == 16 && parse_u64(tok[3], 16, 16, &key)))
        return -1;
    if (self)
        return 0;
    bool fresh;
    struct peer *pe = peer_slot(p, tok[1], tlen[1], &fresh);
    if (!pe)
        return -1;
    if (parse_rooms(pe, tok[5], tlen[5]) < 0) {
        if (fresh)
            peer_drop(p, p->n - 1);
        return -1;
    }
    pe->pid = (uint32_t)pid;
    pe->heard = now;
    pe->sio_key = key;
    pe->nsps = nsp_mask(p, tok[4], tlen[4]);
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
