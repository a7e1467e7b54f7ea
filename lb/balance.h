/* Per-request node choice without a key: smooth weighted round robin (nginx's algorithm: over any window of
 * sum(weights) picks each node gets exactly its weight, interleaved rather than in bursts) and leastconn (fewest
 * active sessions per unit of weight, ties broken by a rotating start so equal nodes share new sessions evenly).
 * Keyed choices (source, param) live in ring.h. Nodes that are down or draining are never picked. */
#ifndef LB_BALANCE_H
#define LB_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bal_node {
    uint32_t weight; /* 0 takes nothing new */
    bool usable;     /* up and not draining */
    uint32_t active; /* sessions open now (leastconn) */
    int64_t current; /* smooth round robin state; start at 0 */
};

/* The next node in smooth weighted round robin, or -1 when none is usable with a weight. */
int bal_roundrobin(struct bal_node *nodes, size_t n);

/* The usable node with the fewest active sessions per unit of weight, or -1. *rotor advances on each pick. */
int bal_leastconn(const struct bal_node *nodes, size_t n, uint32_t *rotor);

#endif
