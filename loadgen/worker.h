/* A worker process: its share of the clients (global ids w, w + W, w + 2W, ...), the connect phase, its part of
 * every round (emitting, and counting what its clients receive against what they should), the close handshake,
 * and its report to the coordinator. Driven by the coordinator's messages (ipc.h) on fd. */
#ifndef LOADGEN_WORKER_H
#define LOADGEN_WORKER_H

#include "loadgen/opts.h"

#include <stdint.h>

/* Run worker w of W until the coordinator says close (or goes away); t0 is the run's zero (CLOCK_MONOTONIC ns), which
 * the reconnect episodes count from. Returns the process exit status. */
int lg_worker_main(const struct lg_opts *o, uint32_t w, uint32_t nworkers, int fd, int64_t t0);

#endif
