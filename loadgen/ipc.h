/* The coordinator and its worker processes talk over one AF_UNIX stream socketpair per worker, in messages of a
 * small header plus a body. Both ends are the same binary (fork, no exec), so bodies are plain structs.
 *
 * Writes block: the coordinator only sends a few small control messages, and a worker's big final message is read
 * by a coordinator that is waiting for nothing else, so neither side can wedge the other. Reads are driven by the
 * event loop and gathered into a buffer until a whole message is there. */
#ifndef LOADGEN_IPC_H
#define LOADGEN_IPC_H

#include "common/buf.h"
#include "loadgen/result.h"

#include <stddef.h>
#include <stdint.h>

enum ipc_type {
    /* worker -> coordinator */
    IPC_PROGRESS = 1, /* struct ipc_progress: counts so far, every 100 ms (the progress line) */
    IPC_READY,        /* struct ipc_ready + n_emitters uint32 ids + connect blob + handshake blob */
    IPC_ROUND_DONE,   /* struct ipc_round_done + latency blob (deliveries since the last one) + ncand uint32
                         candidates, one per gone slot of the round's IPC_SENT: the worker's next open client of
                         that slot's room after its emitter (UINT32_MAX: none) */
    IPC_FINAL,        /* struct ipc_final + rounds * struct lg_round + latency blob (the tail) + ack blob +
                         away blob + recon.nepisodes struct lg_episode */
    IPC_FATAL,        /* a NUL-terminated message: the worker cannot go on */
    IPC_EMITTED,      /* struct ipc_sent + n_sent + n_gone uint32 slots: the slots whose emitter is here, after the
                         round's emits: which sent their message, which could not (lost, away) */
    /* coordinator -> worker */
    IPC_EMITTERS, /* uint32 ids of the emitters that are open, sorted */
    IPC_ROUND,    /* struct ipc_round */
    IPC_CLOSE,    /* empty: close every client and send IPC_FINAL */
    IPC_SENT,     /* struct ipc_sent + lists as IPC_EMITTED, over every worker: what the round owes, to whom */
    IPC_HANDOVER, /* uint32 pairs (slot, client id): the slot's emitter from the next round on */
};

/* A slot is an emitter's place (the id of the client that emitted first, < --emitters); its emitter may change
 * (IPC_HANDOVER) when it is lost. */
struct ipc_sent {
    uint32_t round, n_sent, n_gone;
    uint32_t pad_;
};

struct ipc_hdr {
    uint32_t type, len; /* len: body bytes */
};

struct ipc_progress {
    uint32_t connected, failed; /* the connect phase */
    uint32_t dropped;           /* open clients lost (--reconnect: lost and not back yet) */
    uint32_t closed;            /* closes over in the close phase, clean or not */
    uint32_t close_errors;      /* close + close_timeout */
    uint32_t pad_;
};

/* A histogram travels as an HdrHistogram V2 blob plus its exact extremes (the blob only knows bucket bounds). */
struct ipc_hist_hdr {
    int64_t min, max;
    uint32_t blob_len;
    uint32_t pad_;
};

struct ipc_ready {
    uint32_t connected, failed, n_emitters;
    uint32_t pad_;
};

struct ipc_round {
    uint32_t round; /* 1-based */
    uint32_t pad_;
    int64_t start_ns; /* CLOCK_MONOTONIC, read before the round was sent to any worker: earlier than every send */
    /* round 1's start: round r's intended send time is sched0 + (r - 1) * --interval */
    int64_t sched0_ns;
};

struct ipc_round_done {
    uint32_t round;
    uint32_t timed_out;
    int64_t first_send_ns;   /* CLOCK_MONOTONIC; 0 when this worker sent nothing this round */
    int64_t last_arrival_ns; /* 0 when nothing arrived */
    uint32_t ncand;          /* candidates after the latency blob */
    uint32_t pad_;
};

struct ipc_final {
    uint32_t connected, failed, dropped, closed_clean;
    struct lg_tally tally;
    struct lg_recon recon; /* --reconnect */
    uint64_t echoed, foreign, corrupt;
    uint32_t churn_left, churn_rejoined, churn_failed; /* over the whole run (the rounds' counts may miss a round
                                                          the coordinator did not finish) */
    uint32_t pad2_;
    struct lg_acks acks; /* --ack (missing is the coordinator's to work out) */
    struct lg_worker_self self;
    uint32_t rounds; /* struct lg_round entries that follow (only their LG_ROUND_COUNTS are set) */
    uint32_t pad_;
};

/* Send one message (header and body, blocking). 0, or -1 with errno. */
int ipc_send(int fd, uint32_t type, const void *body, size_t len);
/* Like ipc_send with the body in parts (writev). */
int ipc_sendv(int fd, uint32_t type, const struct iovec *parts, int nparts);

/* Read what is available into in (the fd may be blocking: call it when readable). 1 data read, 0 EOF, -1 error. */
int ipc_fill(int fd, struct buf *in);
/* Take the next whole message from in: 1 with *hdr and *body (pointing into in, valid until the next ipc_fill or
 * ipc_take), 0 when none is complete yet, -1 when the header is impossible (len over 1 GiB). */
int ipc_take(struct buf *in, struct ipc_hdr *hdr, const char **body);

/* Append a histogram as struct ipc_hist_hdr + blob to out. 0, or -1 out of memory. */
int ipc_put_hist(struct buf *out, const struct hist *h);
/* Read one from body[*pos..len) and merge it into dst (restoring exact min and max). 0, or -1 malformed. */
int ipc_get_hist(const char *body, size_t len, size_t *pos, struct hist *dst);

#endif
