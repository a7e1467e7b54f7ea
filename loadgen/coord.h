/* The coordinator: forks the workers, paces the phases (connect, ready, rounds, verify, close), merges what the
 * workers report into a struct lg_result, writes the .hlog and draws the progress line. It holds no client
 * connection itself, so one code path serves one worker or many. */
#ifndef LOADGEN_COORD_H
#define LOADGEN_COORD_H

#include "loadgen/opts.h"
#include "loadgen/result.h"

#include <stdio.h>

/* Run the whole test. r is zeroed and filled (its histograms allocated: free with lg_result_free). hlog: an open
 * file for the interval log, or NULL. 0 when the run completed (whatever its verdict), -1 when loadgen itself
 * failed (a worker died, fork failed): err says why and r holds what was gathered. SIGINT/SIGTERM end the rounds
 * early: the run then closes, reports and counts as failed (r->reasons says so). */
int lg_run(const struct lg_opts *o, struct lg_result *r, FILE *hlog, char *err, size_t errlen);
void lg_result_free(struct lg_result *r);

#endif
