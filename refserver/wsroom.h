/* The /ws application: GET /ws?room=NAME upgrades into room NAME; every message a client sends goes, unchanged, to
 * every other client of its room on this node (fanout.h) and, through sync.h's wsh1 channel, on the others. */
#ifndef REFSERVER_WSROOM_H
#define REFSERVER_WSROOM_H

#include <stddef.h>
#include <stdint.h>

struct conn;
struct http_head;
struct room;
struct server;

/* Precondition: c in CONN_HTTP with a GET /ws head. Next: CONN_WS in its room with the 101 queued (0), or closing
 * after a 4xx/503 (-1). */
int wsroom_upgrade(struct conn *c, const struct http_head *h);
/* sync_config.deliver (sync_deliver_fn), ctx the server: a message another node published on room's channel,
 * encoded once and offered to every local member. */
void wsroom_deliver(void *ctx, struct room *room, uint8_t opcode, const char *payload, size_t len);

#endif
