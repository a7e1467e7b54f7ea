/* Messages between loadgen's coordinator and workers; see ipc.h. */
#include "loadgen/ipc.h"

#include "common/hist.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define IPC_MAX_BODY (1u << 30)

static int write_all_v(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        size_t left = (size_t)w;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

int ipc_sendv(int fd, uint32_t type, const struct iovec *parts, int nparts)
{
    struct iovec iov[9];
    struct ipc_hdr hdr = {.type = type, .len = 0};
    if (nparts > 8) {
        errno = EINVAL;
        return -1;
    }
    iov[0] = (struct iovec){.iov_base = &hdr, .iov_len = sizeof hdr};
    for (int i = 0; i < nparts; i++) {
        iov[i + 1] = parts[i];
        hdr.len += (uint32_t)parts[i].iov_len;
    }
    return write_all_v(fd, iov, nparts + 1);
}

int ipc_send(int fd, uint32_t type, const void *body, size_t len)
{
    struct iovec part = {.iov_base = (void *)body, .iov_len = len};
    return ipc_sendv(fd, type, &part, len ? 1 : 0);
}

int ipc_fill(int fd, struct buf *in)
{
    for (;;) {
        if (buf_reserve(in, 65536) < 0)
            return -1;
        ssize_t n = read(fd, buf_tail(in), buf_room(in));
        if (n > 0) {
            buf_commit(in, (size_t)n);
            return 1;
        }
        if (n == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

int ipc_take(struct buf *in, struct ipc_hdr *hdr, const char **body)
{
    if (buf_len(in) < sizeof *hdr)
        return 0;
    memcpy(hdr, buf_head(in), sizeof *hdr);
    if (hdr->len > IPC_MAX_BODY)
        return -1;
    if (buf_len(in) < sizeof *hdr + hdr->len)
        return 0;
    *body = buf_head(in) + sizeof *hdr;
    buf_consume(in, sizeof *hdr + hdr->len); /* moves offsets only: the bytes stay until the next fill */
    return 1;
}

int ipc_put_hist(struct buf *out, const struct hist *h)
{
    char *blob = NULL;
    size_t len = 0;
    if (hist_encode_v2(h, &blob, &len) < 0)
        return -1;
    struct ipc_hist_hdr hh = {.min = hist_min(h), .max = hist_max(h), .blob_len = (uint32_t)len};
    int rc = buf_append(out, &hh, sizeof hh) < 0 || buf_append(out, blob, len) < 0 ? -1 : 0;
    free(blob);
    return rc;
}

int ipc_get_hist(const char *body, size_t len, size_t *pos, struct hist *dst)
{
    struct ipc_hist_hdr hh;
    if (len - *pos < sizeof hh)
        return -1;
    memcpy(&hh, body + *pos, sizeof hh);
    *pos += sizeof hh;
    if (len - *pos < hh.blob_len)
        return -1;
    struct hist *h = NULL;
    if (hist_decode_v2(body + *pos, hh.blob_len, &h) < 0)
        return -1;
    *pos += hh.blob_len;
    if (hist_count(h) > 0) {
        h->min = hh.min;
        h->max = hh.max;
    }
    int rc = hist_merge(dst, h);
    hist_free(h);
    return rc;
}
