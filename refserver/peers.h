/* The participants of the bus as one of them hears them: every participant (a node, or each worker of a node)
 * PUBLISHes a heartbeat on PREFIX-nodes every second naming itself and the channels it holds, so that when Redis
 * answers a PUBLISH with its receiver count, the publisher can tell whether every participant that should hold the
 * channel got it. The heartbeat (its text is wire.h's) names the participant, its Socket.IO adapter key (a hash),
 * the namespaces it serves (each a pattern subscription KEY#NSP#*) and the /ws rooms (hashes) whose channel
 * PREFIX#ROOM Redis has confirmed for it. A participant
 * is alive while heard from in the last PEERS_ALIVE seconds of the hearer's own connected time (the clock stops while
 * the hearer is cut off from Redis, so after a Redis restart everyone heard before it is expected again); a bye (a
 * participant shutting down) forgets it at once. */
#ifndef REFSERVER_PEERS_H
#define REFSERVER_PEERS_H

#include "refserver/wire.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PEERS_MAX       256            /* participants remembered; more are ignored (and said once) */
#define PEERS_ROOMS_MAX WIRE_ROOMS_MAX /* rooms a heartbeat lists; a participant with more is not judged on rooms */
#define PEERS_ID_MAX    WIRE_ID_MAX    /* a bus id: a node id and ".wI" */
#define PEERS_ALIVE     3.0            /* seconds of the hearer's connected time */
#define PEERS_FORGET    60.0           /* seconds after which a silent participant is dropped from the table */
#define PEERS_NSP_MAX   16

struct buf;

/* What a publish is expected to reach: the holders of /ws room `room` (a peers_hash), or every participant with our
 * Socket.IO key serving our namespace `nsp` (an index into peers.nsps). */
struct peers_target {
    bool sio;
    uint64_t room;
    uint32_t nsp;
};

struct peer {
    char id[PEERS_ID_MAX + 1];
    uint32_t pid;
    double heard;     /* the hearer's clock when last heard */
    uint64_t sio_key; /* hash of its Socket.IO key; 0: none */
    uint32_t nsps;    /* bit i: it serves our namespace i */
    bool rooms_known; /* false: it holds more rooms than a heartbeat lists */
    uint64_t *rooms;  /* hashes of the /ws rooms it holds, sorted */
    size_t nrooms;
};

struct peers {
    const char *self;        /* our own id: our heartbeats come back to us and are skipped */
    uint64_t sio_key;        /* hash of our Socket.IO key; 0: none */
    const char *const *nsps; /* our namespaces */
    uint32_t nsp_count;
    struct peer *v; /* PEERS_MAX entries, n in use */
    size_t n;
    bool full_said;
};

/* FNV-1a 64 of s[0..len): room names and the Socket.IO key as heartbeats carry them. Never 0. */
uint64_t peers_hash(const char *s, size_t len);

/* An empty table for participant self. 0, or -1 on out of memory. */
int peers_init(struct peers *p, const char *self, const char *sio_key, const char *const *nsps, uint32_t nsp_count);
void peers_free(struct peers *p);

/* Append our heartbeat to out: rooms[0..nrooms) (nrooms > PEERS_ROOMS_MAX: "*"). 0, or -1 on out of memory. */
int peers_encode(struct buf *out, const struct peers *p, uint32_t pid, const uint64_t *rooms, size_t nrooms);
/* Append our bye to out. 0, or -1 on out of memory. */
int peers_encode_bye(struct buf *out, const struct peers *p, uint32_t pid);
/* A message on the heartbeat channel, heard at now: 1 when it named a participant new to us (or back after a
 * bye), 0 when it updated one or was our own, -1 when malformed or the table is full. */
int peers_on_message(struct peers *p, const char *msg, size_t len, double now);
/* Drop the participants silent for PEERS_FORGET seconds. */
void peers_prune(struct peers *p, double now);

/* The alive participants other than us that should get a publish to t; with names (may be NULL), their ids
 * separated by spaces, truncated to names_len. */
uint32_t peers_expect(const struct peers *p, const struct peers_target *t, double now, char *names, size_t names_len);
/* The alive participants other than us. */
uint32_t peers_alive(const struct peers *p, double now);

#endif
