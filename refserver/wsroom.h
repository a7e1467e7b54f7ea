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
/* A message another node published on room's channel: encoded once, offered to every local member. */
void wsroom_deliver(struct server *s, struct room *room, uint8_t opcode, const char *payload, size_t len);

#endif
