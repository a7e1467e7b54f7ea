/* loadgen's Socket.IO client helpers on top of common/eio: the heartbeat watchdog and attachment assembly; see
 * sio.h. */
#include "loadgen/sio.h"

uint32_t sio_ping_deadline(uint32_t now_ms, uint32_t interval_ms, uint32_t timeout_ms)
{
    uint64_t wait = (uint64_t)interval_ms + timeout_ms;
    uint32_t due = now_ms + (uint32_t)(wait < SIO_PING_WAIT_MAX ? wait : SIO_PING_WAIT_MAX);
    return due ? due : 1;
}

bool sio_ping_overdue(uint32_t deadline, uint32_t now_ms)
{
    return deadline != 0 && (int32_t)(now_ms - deadline) > 0;
}

int sio_asm_begin(struct sio_asm *a, const struct eio_packet *k, bool ours, uint32_t now_ms, const char **why)
{
    if (k->type != EIO_BINARY_EVENT && k->type != EIO_BINARY_ACK)
        return 0;
    if (k->attachments > EIO_MAX_ATTACHMENTS) {
        *why = "a binary packet announcing more than 10 attachments";
        return -1;
    }
    if (k->attachments == 0)
        return 0;
    int num = ours && k->type == EIO_BINARY_EVENT ? eio_placeholder_num(k->arg) : -1;
    *a = (struct sio_asm){.want = k->attachments, .carrier = num < (int)k->attachments ? num : -1, .since_ms = now_ms};
    return 1;
}

int sio_asm_attachment(struct sio_asm *a, bool *done)
{
    uint32_t i = a->got++;
    *done = a->got >= a->want;
    return a->carrier >= 0 && (uint32_t)a->carrier == i;
}

int sio_payload_next(const char *buf, size_t len, size_t *off, struct eio_item *it)
{
    int rc = eio_payload_next(buf, len, off, it);
    if (rc == 1 && it->binary && eio_base64_len(it->text.p + 1, it->text.len - 1) < 0)
        return -1;
    return rc;
}
