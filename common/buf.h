/* Byte buffers with a memory cap, and reference-counted slices for fan-out.
 *
 * struct buf is a read/write window over one heap block: bytes live in [rpos, wpos). Offsets, not pointers, so
 * growing (realloc) never invalidates a saved position. An all-zero struct is a valid empty buffer that owns no
 * memory, which is what keeps an idle connection small: buffers are freed when they drain (buf_release_if_empty).
 *
 * struct slice is one immutable block shared by many readers: a broadcast frame is encoded once into a slice and
 * every receiver's struct slice_queue holds a reference to it, never a copy. */
#ifndef COMMON_BUF_H
#define COMMON_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct iovec;

struct buf {
    char *data;
    size_t cap, rpos, wpos;
    size_t max; /* 0: unlimited; otherwise buf_reserve never lets cap exceed it */
};

/* Bytes readable at buf_head(b). */
static inline size_t buf_len(const struct buf *b)
{
    return b->wpos - b->rpos;
}
static inline char *buf_head(const struct buf *b)
{
    return b->data + b->rpos;
}
static inline char *buf_tail(const struct buf *b)
{
    return b->data + b->wpos;
}
static inline size_t buf_room(const struct buf *b)
{
    return b->cap - b->wpos;
}

/* Make room for n more bytes at buf_tail (compacting first, then growing). 0, or -1 when the cap or malloc says no. */
int buf_reserve(struct buf *b, size_t n);
/* Append n bytes. 0, or -1 (cap / out of memory; the buffer is unchanged). */
int buf_append(struct buf *b, const void *p, size_t n);
/* Append printf-formatted text, however long. 0, or -1 (cap / out of memory / bad format; unchanged). */
int buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Mark n bytes written at buf_tail (after a read() into it). */
void buf_commit(struct buf *b, size_t n);
/* Drop n bytes from the head; an emptied buffer rewinds to offset 0. */
void buf_consume(struct buf *b, size_t n);
/* Free the memory if nothing is buffered, so idle owners hold no heap block. */
void buf_release_if_empty(struct buf *b);
void buf_free(struct buf *b);

struct slice {
    uint32_t refs;
    uint32_t len;
    char data[];
};

/* A new slice of len bytes with one reference, contents uninitialised; NULL on out of memory. */
struct slice *slice_new(size_t len);
static inline struct slice *slice_ref(struct slice *s)
{
    s->refs++;
    return s;
}
void slice_unref(struct slice *s);

/* A FIFO of slice references, written out with writev. An all-zero struct is empty and owns no memory. */
struct slice_queue {
    struct slice **items;
    uint32_t cap, head, count;
    uint32_t offset; /* bytes of items[head] already written */
    size_t bytes;    /* unwritten bytes queued */
};

/* Take a new reference to s and queue it. 0, or -1 on out of memory. */
int sq_push(struct slice_queue *q, struct slice *s);
/* Fill iov (at most n entries) with the unwritten bytes, in order; returns the count filled. */
int sq_iov(const struct slice_queue *q, struct iovec *iov, int n);
/* Mark n bytes written; releases slices that are finished. */
void sq_consume(struct slice_queue *q, size_t n);
/* True when a slice is partly written: its rest must go out before anything else (frames must stay whole). */
static inline bool sq_mid_slice(const struct slice_queue *q)
{
    return q->count && q->offset;
}
/* Drop every slice not yet started (keeps a partly written one); for closing a slow consumer. */
void sq_drop_unstarted(struct slice_queue *q);
void sq_free(struct slice_queue *q);

#endif
