/* The wire format of refserver's own bus traffic ("wsh1"), the one place it is written and read: what nodes publish
 * to each other through Redis besides the Socket.IO adapter's messages (sioadapter.h). Text headers, so that
 * `redis-cli subscribe` shows something a person can read.
 *
 * On a /ws room's channel PREFIX#ROOM, one message per client message (sync.h):
 *
 *     "wsh1 " NODE_ID " " CLIENT_ID " " ("t" | "b") "\n" PAYLOAD
 *
 * NODE_ID lets a node drop its own publications, CLIENT_ID is informational, t/b is the WebSocket opcode, and the
 * payload goes on unchanged.
 *
 * On PREFIX-nodes, each participant's heartbeat every second and its bye when it shuts down (peers.h):
 *
 *     "wsh1-hb " ID " " PID " " SIOKEY " " NSPS " " NROOMS (" " ROOM)*      SIOKEY: 16 hex digits or "-"
 *     "wsh1-bye " ID " " PID                                                 NSPS: "/,/chat" or "-"
 *                                                                            NROOMS: a count, or "*" for too many
 * ID is 1 to WIRE_ID_MAX bytes, SIOKEY a hash of the Socket.IO adapter key, NSPS the namespaces served, each ROOM
 * the hash (16 hex digits) of a /ws room whose channel Redis has confirmed; at most WIRE_ROOMS_MAX are listed. */
#ifndef REFSERVER_WIRE_H
#define REFSERVER_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WIRE_HEADER_MAX 128 /* a room message's header, its newline included */
#define WIRE_ID_MAX     72  /* a bus id: a node id and ".wI" */
#define WIRE_ROOMS_MAX  512 /* rooms a heartbeat lists */

struct buf;

/* A room message's header into out (WIRE_HEADER_MAX bytes). Its length, or 0 when node_id is too long. */
size_t wire_room_header(char *out, const char *node_id, uint64_t client_id, uint8_t opcode);
/* Parse a room message: node id span, opcode, payload span. 0, or -1 when it is not one. */
int wire_room_parse(const char *msg, size_t len, const char **node, size_t *node_len, uint8_t *opcode,
                    const char **payload, size_t *payload_len);

/* A heartbeat's fields, as wire_hb_encode takes them. */
struct wire_hb_out {
    const char *id;
    uint32_t pid;
    uint64_t sio_key;        /* 0: none ("-") */
    const char *const *nsps; /* nsp_count names: none is "-" */
    uint32_t nsp_count;
    const uint64_t *rooms; /* nrooms hashes; more than WIRE_ROOMS_MAX: "*" */
    size_t nrooms;
};

/* Append the heartbeat hb to out. 0, or -1 on out of memory. */
int wire_hb_encode(struct buf *out, const struct wire_hb_out *hb);
/* Append the bye of participant id to out. 0, or -1 on out of memory. */
int wire_bye_encode(struct buf *out, const char *id, uint32_t pid);

/* A message on the heartbeat channel, as wire_hb_parse reads it: spans of the message. */
struct wire_hb {
    bool bye;
    const char *id;
    size_t id_len;
    uint32_t pid;
    uint64_t sio_key; /* heartbeat: 0 for "-" */
    const char *nsps; /* heartbeat: the comma list as written ("-": none) */
    size_t nsps_len;
    const char *rooms; /* heartbeat: NROOMS and the hashes as written (wire_hb_rooms reads them) */
    size_t rooms_len;
};

/* Split a heartbeat or a bye into hb: 0, or -1 when it is neither (the room list is read by wire_hb_rooms). */
int wire_hb_parse(const char *msg, size_t len, struct wire_hb *hb);
/* The room hashes of a parsed heartbeat into rooms (WIRE_ROOMS_MAX entries), unsorted: 1 with *n set, 0 for "*"
 * (too many to list), -1 when malformed. */
int wire_hb_rooms(const struct wire_hb *hb, uint64_t *rooms, size_t *n);

#endif
