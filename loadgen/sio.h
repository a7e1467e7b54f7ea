/* loadgen's Socket.IO client helpers on top of the shared codec (common/eio.h): the heartbeat watchdog, the assembly
 * of binary packets, and the polling payload as loadgen reads it (base64 checked strictly). */
#ifndef LOADGEN_SIO_H
#define LOADGEN_SIO_H

#include "common/eio.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The heartbeat watchdog (../shared/SOCKETIO.md section 1): a client that heard the open packet or a ping at
 * now_ms must hear the next ping by the deadline returned, now_ms + interval_ms + timeout_ms on a millisecond
 * clock that wraps (the sum capped at SIO_PING_WAIT_MAX). Never 0, which stands for "not armed". */
#define SIO_PING_WAIT_MAX (UINT32_C(1) << 30)
uint32_t sio_ping_deadline(uint32_t now_ms, uint32_t interval_ms, uint32_t timeout_ms);

/* Is deadline (armed: not 0) past at now_ms? Wrap-safe for deadlines set less than 2^31 ms before now_ms. */
bool sio_ping_overdue(uint32_t deadline, uint32_t now_ms);

/* ---- binary packets (BINARY_EVENT 5, BINARY_ACK 6) ----
 * 45<n>-[/nsp,][id][...] is followed by n attachments, each its own binary message (a binary frame, or a b<base64>
 * polling item); an argument {"_placeholder":true,"num":i} stands for attachment i. socket.io-parser refuses more
 * than 10 attachments, and a text packet, or a binary message, that comes when it does not expect one. */

/* A binary packet being put together: only while its attachments are due. */
struct sio_asm {
    uint32_t want;     /* attachments announced */
    uint32_t got;      /* attachments received so far */
    int32_t carrier;   /* the attachment that carries the message (the placeholder num of our event), or -1 */
    uint32_t since_ms; /* when the packet came (the caller's millisecond clock) */
};

/* A packet k (decoded, eio EIO_MESSAGE) came while no binary packet was being assembled. ours: k is the event
 * the caller verifies (its first argument may then name the carrier). Returns 1 when k is a binary packet whose
 * attachments follow (*a set), 0 when nothing follows (any other packet, or a binary one with no attachment), -1
 * (*why a static string) for more than EIO_MAX_ATTACHMENTS. */
int sio_asm_begin(struct sio_asm *a, const struct eio_packet *k, bool ours, uint32_t now_ms, const char **why);

/* One attachment of a (begun) assembly: 1 when it is the carrier, else 0; *done when it was the last one. */
int sio_asm_attachment(struct sio_asm *a, bool *done);

/* eio_payload_next, and -1 also for a 'b' item that is not valid base64 (eio_base64_len): loadgen refuses the
 * payload there rather than when it decodes the attachment. */
int sio_payload_next(const char *buf, size_t len, size_t *off, struct eio_item *it);

#endif
