/* Round robin and leastconn; see balance.h. */
#include "lb/balance.h"

int bal_roundrobin(struct bal_node *nodes, size_t n)
{
    int64_t total = 0;
    int best = -1;
    for (size_t i = 0; i < n; i++) {
        struct bal_node *b = &nodes[i];
        if (!b->usable || b->weight == 0)
            continue;
        b->current += b->weight;
        total += b->weight;
        if (best < 0 || b->current > nodes[best].current)
            best = (int)i;
    }
    if (best >= 0)
        nodes[best].current -= total;
    return best;
}

int bal_leastconn(const struct bal_node *nodes, size_t n, uint32_t *rotor)
{
    int best = -1;
    for (size_t k = 0; k < n; k++) {
        size_t i = (*rotor + k) % n;
        const struct bal_node *b = &nodes[i];
        if (!b->usable || b->weight == 0)
            continue;
        /* active/weight < best.active/best.weight, in integers */
        if (best < 0 || (uint64_t)b->active * nodes[best].weight < (uint64_t)nodes[best].active * b->weight)
            best = (int)i;
    }
    if (n)
        *rotor = (*rotor + 1) % (uint32_t)n;
    return best;
}
