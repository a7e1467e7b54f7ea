/* The "wsh1" bus wire format: room messages, heartbeats and byes; see wire.h. */
#include "refserver/wire.h"

#include "common/buf.h"
#include "common/ws.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HB_FIELDS 6 /* "wsh1-hb" ID PID SIOKEY NSPS and the room list (a bye has the first three) */

/* ---- room messages ---- */

size_t wire_room_header(char *out, const char *node_id, uint64_t client_id, uint8_t opcode)
{
    int n = snprintf(out, WIRE_HEADER_MAX, "wsh1 %s %" PRIu64 " %c\n", node_id, client_id,
                     opcode == WS_OP_BINARY ? 'b' : 't');
    return n < 0 || n >= WIRE_HEADER_MAX ? 0 : (size_t)n;
}

int wire_room_parse(const char *msg, size_t len, const char **node, size_t *node_len, uint8_t *opcode,
                    const char **payload, size_t *payload_len)
{
    const char *end = memchr(msg, '\n', len < WIRE_HEADER_MAX ? len : WIRE_HEADER_MAX);
    if (!end || len < 5 || memcmp(msg, "wsh1 ", 5) != 0)
        return -1;
    const char *p = msg + 5, *sp = memchr(p, ' ', (size_t)(end - p));
    if (!sp || sp == p)
        return -1;
    *node = p;
    *node_len = (size_t)(sp - p);
    /* The client id is informational: skip its digits. */
    const char *q = sp + 1;
    while (q < end && *q >= '0' && *q <= '9')
        q++;
    if (q == sp + 1 || q + 2 != end || q[0] != ' ' || (q[1] != 't' && q[1] != 'b'))
        return -1;
    *opcode = q[1] == 'b' ? WS_OP_BINARY : WS_OP_TEXT;
    *payload = end + 1;
    *payload_len = len - (size_t)(end + 1 - msg);
    return 0;
}

/* ---- heartbeats and byes ---- */

int wire_hb_encode(struct buf *out, const struct wire_hb_out *hb)
{
    int rc = buf_appendf(out, "wsh1-hb %s %" PRIu32 " ", hb->id, hb->pid);
    rc |= hb->sio_key ? buf_appendf(out, "%016" PRIx64 " ", hb->sio_key) : buf_append(out, "- ", 2);
    for (uint32_t i = 0; i < hb->nsp_count; i++)
        rc |= buf_appendf(out, "%s%s", i ? "," : "", hb->nsps[i]);
    rc |= hb->nsp_count ? 0 : buf_append(out, "-", 1);
    if (hb->nrooms > WIRE_ROOMS_MAX)
        return rc | buf_append(out, " *", 2);
    rc |= buf_appendf(out, " %zu", hb->nrooms);
    for (size_t i = 0; i < hb->nrooms; i++)
        rc |= buf_appendf(out, " %016" PRIx64, hb->rooms[i]);
    return rc ? -1 : 0;
}

int wire_bye_encode(struct buf *out, const char *id, uint32_t pid)
{
    return buf_appendf(out, "wsh1-bye %s %" PRIu32, id, pid);
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

int wire_hb_parse(const char *msg, size_t len, struct wire_hb *hb)
{
    const char *tok[HB_FIELDS];
    size_t tlen[HB_FIELDS], n = tokenize(msg, len, tok, tlen, HB_FIELDS);
    uint64_t pid, key = 0;
    if (n < 3 || tlen[1] == 0 || tlen[1] > WIRE_ID_MAX || !parse_u64(tok[2], tlen[2], 10, &pid))
        return -1;
    *hb = (struct wire_hb){.id = tok[1], .id_len = tlen[1], .pid = (uint32_t)pid};
    if (n == 3 && tlen[0] == 8 && !memcmp(tok[0], "wsh1-bye", 8)) {
        hb->bye = true;
        return 0;
    }
    if (n != HB_FIELDS || tlen[0] != 7 || memcmp(tok[0], "wsh1-hb", 7) != 0 ||
        !(tlen[3] == 1 && tok[3][0] == '-' ? true : tlen[3] == 16 && parse_u64(tok[3], 16, 16, &key)))
        return -1;
    hb->sio_key = key;
    hb->nsps = tok[4];
    hb->nsps_len = tlen[4];
    hb->rooms = tok[5];
    hb->rooms_len = tlen[5];
    return 0;
}

int wire_hb_rooms(const struct wire_hb *hb, uint64_t *rooms, size_t *n)
{
    const char *tok[2];
    size_t tlen[2], ntok = tokenize(hb->rooms, hb->rooms_len, tok, tlen, 2), at = 0, count;
    uint64_t want;
    if (ntok == 1 && tlen[0] == 1 && tok[0][0] == '*')
        return 0;
    if (ntok < 1 || !parse_u64(tok[0], tlen[0], 10, &want) || want > WIRE_ROOMS_MAX || (want > 0) != (ntok == 2))
        return -1;
    /* "h1 h2 ... hN": 16 hex digits each, one space between */
    for (count = 0; count < want && at + 16 <= tlen[1]; count++, at += 17)
        if ((at + 16 < tlen[1] && tok[1][at + 16] != ' ') || !parse_u64(tok[1] + at, 16, 16, &rooms[count]))
            break;
    if (count != want || (want && at != tlen[1] + 1))
        return -1;
    *n = (size_t)want;
    return 1;
}
