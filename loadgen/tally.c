/* The workers' shared counters; see tally.h. */
#include "loadgen/tally.h"

#include <stdio.h>
#include <string.h>

void lg_tally_verror(struct lg_tally *t, enum lg_err k, const char *fmt, va_list ap)
{
    t->err_counts[k]++;
    if (!t->err_example[k][0])
        vsnprintf(t->err_example[k], sizeof t->err_example[k], fmt, ap);
}

/* status counted by n, in the first free entry if it is new. */
static void add_status(struct lg_tally *t, int status, uint32_t n)
{
    int i = 0;
    while (i < t->nstatus && t->status_codes[i] != status)
        i++;
    if (i == t->nstatus && t->nstatus == LG_MAX_STATUS)
        return;
    if (i == t->nstatus) {
        t->status_codes[t->nstatus++] = status;
        t->status_counts[i] = 0;
    }
    t->status_counts[i] += n;
}

void lg_tally_status(struct lg_tally *t, int status)
{
    add_status(t, status, 1);
}

/* name[0..len) (len < 64) counted by n. */
static void add_node(struct lg_nodes *t, const char *name, size_t len, uint32_t n)
{
    for (int i = 0; i < t->n; i++) {
        if (strlen(t->names[i]) == len && !memcmp(t->names[i], name, len)) {
            t->counts[i] += n;
            return;
        }
    }
    if (t->n == LG_MAX_NODES) {
        t->other += n;
        return;
    }
    memcpy(t->names[t->n], name, len);
    t->names[t->n][len] = '\0';
    t->counts[t->n++] = n;
}

void lg_tally_node(struct lg_nodes *n, const char *name, size_t len)
{
    if (!name) {
        n->unknown++;
        return;
    }
    add_node(n, name, len > 63 ? 63 : len, 1);
}

void lg_tally_merge_nodes(struct lg_nodes *dst, const struct lg_nodes *src)
{
    for (int i = 0; i < src->n; i++)
        add_node(dst, src->names[i], strlen(src->names[i]), src->counts[i]);
    dst->other += src->other;
    dst->unknown += src->unknown;
}

void lg_tally_merge(struct lg_tally *dst, const struct lg_tally *src)
{
    for (int k = 0; k < LG_ERR_COUNT; k++) {
        dst->err_counts[k] += src->err_counts[k];
        if (!dst->err_example[k][0])
            memcpy(dst->err_example[k], src->err_example[k], sizeof dst->err_example[k]);
    }
    for (int i = 0; i < src->nstatus; i++)
        add_status(dst, src->status_codes[i], src->status_counts[i]);
    lg_tally_merge_nodes(&dst->nodes, &src->nodes);
    dst->sio_upgraded += src->sio_upgraded;
    dst->sio_polling += src->sio_polling;
}

void lg_round_add(struct lg_round *dst, const struct lg_round *src)
{
#define ADD(field) dst->field += src->field;
    LG_ROUND_COUNTS(ADD)
#undef ADD
}
