/* Byte buffers that grow under a cap, shared slices and their write queues (see buf.h). */
#include "common/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

int buf_reserve(struct buf *b, size_t n)
{
    if (buf_room(b) >= n)
        return 0;
    size_t len = buf_len(b);
    if (b->rpos && b->cap - len >= n) {
        memmove(b->data, b->data + b->rpos, len);
        b->rpos = 0;
        b->wpos = len;
        return 0;
    }
    if (n > SIZE_MAX / 2 - len)
        return -1;
    size_t need = len + n, cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    if (b->max && cap > b->max) {
        if (need > b->max)
            return -1;
        cap = b->max;
    }
    /* Compact while moving: only the live bytes are worth copying. */
    char *p = malloc(cap);
    if (!p)
        return -1;
    if (len)
        memcpy(p, b->data + b->rpos, len);
    free(b->data);
    b->data = p;
    b->cap = cap;
    b->rpos = 0;
    b->wpos = len;
    return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    if (buf_reserve(b, n) < 0)
        return -1;
    if (n)
        memcpy(b->data + b->wpos, p, n);
    b->wpos += n;
    return 0;
}

int buf_appendf(struct buf *b, const char *fmt, ...)
{
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    int rc = -1;
    if (n >= 0 && buf_reserve(b, (size_t)n + 1) == 0) { /* + 1: vsnprintf writes its NUL past the text */
        vsnprintf(buf_tail(b), (size_t)n + 1, fmt, again);
        b->wpos += (size_t)n;
        rc = 0;
    }
    va_end(again);
    return rc;
}

void buf_commit(struct buf *b, size_t n)
{
    b->wpos += n;
}

void buf_consume(struct buf *b, size_t n)
{
    b->rpos += n;
    if (b->rpos == b->wpos)
        b->rpos = b->wpos = 0;
}

void buf_release_if_empty(struct buf *b)
{
    if (b->data && buf_len(b) == 0)
        buf_free(b);
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->cap = b->rpos = b->wpos = 0;
}

struct slice *slice_new(size_t len)
{
    if (len > UINT32_MAX)
        return NULL;
    struct slice *s = malloc(sizeof *s + len);
    if (!s)
        return NULL;
    s->refs = 1;
    s->len = (uint32_t)len;
    return s;
}

void slice_unref(struct slice *s)
{
    if (s && --s->refs == 0)
        free(s);
}

static struct slice **sq_at(const struct slice_queue *q, uint32_t i)
{
    return &q->items[(q->head + i) & (q->cap - 1)];
}

/* Capacity stays a power of two so indices wrap with a mask. */
static int sq_grow(struct slice_queue *q)
{
    uint32_t cap = q->cap ? q->cap * 2 : 4;
    struct slice **items = malloc(cap * sizeof *items);
    if (!items)
        return -1;
    for (uint32_t i = 0; i < q->count; i++)
        items[i] = *sq_at(q, i);
    free(q->items);
    q->items = items;
    q->cap = cap;
    q->head = 0;
    return 0;
}

int sq_push(struct slice_queue *q, struct slice *s)
{
    if (q->count == q->cap && sq_grow(q) < 0)
        return -1;
    q->count++;
    *sq_at(q, q->count - 1) = slice_ref(s);
    q->bytes += s->len;
    return 0;
}

int sq_iov(const struct slice_queue *q, struct iovec *iov, int n)
{
    int k = 0;
    for (uint32_t i = 0; i < q->count && k < n; i++, k++) {
        struct slice *s = *sq_at(q, i);
        size_t skip = i == 0 ? q->offset : 0;
        iov[k].iov_base = s->data + skip;
        iov[k].iov_len = s->len - skip;
    }
    return k;
}

static void sq_pop(struct slice_queue *q)
{
    slice_unref(*sq_at(q, 0));
    q->head = (q->head + 1) & (q->cap - 1);
    q->count--;
    q->offset = 0;
}

void sq_consume(struct slice_queue *q, size_t n)
{
    q->bytes -= n;
    while (n && q->count) {
        struct slice *s = *sq_at(q, 0);
        size_t left = s->len - q->offset;
        if (n < left) {
            q->offset += (uint32_t)n;
            return;
        }
        n -= left;
        sq_pop(q);
    }
    if (q->count == 0)
        sq_free(q);
}

void sq_drop_unstarted(struct slice_queue *q)
{
    uint32_t keep = sq_mid_slice(q) ? 1 : 0;
    while (q->count > keep) {
        struct slice *s = *sq_at(q, q->count - 1);
        q->bytes -= s->len;
        slice_unref(s);
        q->count--;
    }
    if (q->count == 0)
        sq_free(q);
}

void sq_free(struct slice_queue *q)
{
    while (q->count)
        sq_pop(q);
    free(q->items);
    *q = (struct slice_queue){0};
}
