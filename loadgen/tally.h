/* Counting into struct lg_tally (result.h), the block of counters each worker keeps and the coordinator adds up:
 * one definition and one merge, so a worker's engine, the IPC message and the run's result cannot drift apart. */
#ifndef LOADGEN_TALLY_H
#define LOADGEN_TALLY_H

#include "loadgen/result.h"

#include <stdarg.h>
#include <stddef.h>

/* One error of kind k; fmt and ap become the kind's example if it has none yet. */
void lg_tally_verror(struct lg_tally *t, enum lg_err k, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* One refused upgrade answered status (past LG_MAX_STATUS distinct statuses, not broken down). */
void lg_tally_status(struct lg_tally *t, int status);
/* One client at node name[0..len) (cut at 63 bytes; NULL: unknown; past LG_MAX_NODES names: other). */
void lg_tally_node(struct lg_nodes *n, const char *name, size_t len);
/* Add the node table src into dst (names dst has no room for go to other). */
void lg_tally_merge_nodes(struct lg_nodes *dst, const struct lg_nodes *src);
/* Add src into dst: counts summed, dst's examples kept (src's fill the kinds dst has none for). */
void lg_tally_merge(struct lg_tally *dst, const struct lg_tally *src);
/* Add src's counts (LG_ROUND_COUNTS) into dst: a worker's round into the run's, a round into the total. */
void lg_round_add(struct lg_round *dst, const struct lg_round *src);

#endif
