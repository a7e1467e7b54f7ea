/* Engine.IO v4 long-polling for one loadgen client (../shared/SOCKETIO.md section 1): the HTTP side. Two
 * keep-alive connections per client, opened when first needed: one for the GET that is always outstanding while
 * the client polls (the server holds it until it owes packets), one for the POSTs that carry the client's own
 * packets (queued packets are joined by \x1e and go in the next POST while one is in flight, as engine.io-client
 * batches its write buffer). Every request carries the session's cookies (the jar keeps what any response set),
 * which is how a cookie-sticky balancer keeps the session on one node.
 *
 * This module knows HTTP, not Engine.IO: what a GET's payload means, and what a failure means in the client's
 * phase, is client.c's (lg_client_poll_event / lg_client_poll_fail). After any call back into client.c the
 * client may be gone (and this state freed): a callback's -1 says so, and nothing here touches it after.
 *
 * Memory: one struct eiop (about 1 KB, the jar included) per polling client; buffers hold a heap block only while
 * a response is partly read or a request partly written. */
#ifndef LOADGEN_EIOPOLL_H
#define LOADGEN_EIOPOLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct eiop;
struct lg_client;
struct lg_engine;

/* A new polling state for c (no connection yet), or NULL out of memory. */
struct eiop *eiop_new(struct lg_engine *e, struct lg_client *c);
/* Close its connections and free it (no callback). */
void eiop_free(struct eiop *p);

/* Send the handshake GET (no sid) on a new connection. Its TCP connect is reported (LG_POLL_TCP), then its
 * response head and payload (LG_POLL_PAYLOAD with the head). -1 when c is gone (the failure reported). */
int eiop_open(struct eiop *p);
/* The session id from the open packet: every later request carries it. 0, or -1 when it does not fit. */
int eiop_set_sid(struct eiop *p, const char *sid, size_t len);
/* Keep a GET outstanding from now on: one is sent at once if none is, and again after each response, until
 * eiop_pause. -1 when c is gone. */
int eiop_poll(struct eiop *p);
/* Queue one packet for the POST connection. -1 when c is gone (the failure reported). */
int eiop_send(struct eiop *p, const char *pkt, size_t len);
/* Send no more GETs (the upgrade, or the close): once no GET and no POST is in flight, LG_POLL_IDLE is reported
 * once (at once if nothing is). -1 when c is gone. */
int eiop_pause(struct eiop *p);
/* Bytes queued for the POST after the one in flight. */
size_t eiop_queued(const struct eiop *p);
/* Start the jar with jar ("name=value; ..."; cut at the jar's size): a reconnect's earlier cookies. */
void eiop_seed_cookies(struct eiop *p, const char *jar);
/* The cookies the session's responses set, as a Cookie header value ("" when none). */
const char *eiop_cookies(const struct eiop *p);
/* Is a request overdue at now_ms (a millisecond clock that wraps: lg_engine_ms)? A POST sent more than post_ms
 * ago, or a GET more than get_ms ago, still without its whole response: "polling POST" or "polling GET" with
 * *waited_ms set; else NULL. */
const char *eiop_overdue(const struct eiop *p, uint32_t now_ms, uint32_t post_ms, uint32_t get_ms, uint32_t *waited_ms);
/* The sid ("" before eiop_set_sid). */
const char *eiop_sid(const struct eiop *p);

#endif
