/* The verdict and the outputs of a run: the human summary, the JSON document (schema "wsh-loadgen/1",
 * documented in docs/loadgen-json.md) and the self-monitoring warnings. Reads a struct lg_result. */
#ifndef LOADGEN_REPORT_H
#define LOADGEN_REPORT_H

#include "loadgen/result.h"

#include <stddef.h>
#include <stdio.h>

#define LG_JSON_SCHEMA "wsh-loadgen/1"

/* Judge the run; fills r->exit_code, reasons, threshold_ok/actual and warnings. Rules, in order:
 *  - connect failures: exit 3 when no client connected, or when the share of failed clients exceeds the errors
 *    threshold (without one: any failure). Reason names the counts by kind, with a hint for EMFILE (open-files
 *    limit, --workers) and EADDRNOTAVAIL (--source, ip_local_port_range).
 *  - verification (exit 1): any duplicate, reordered, echoed or corrupt message; missing + late over the delivery
 *    threshold (without one: any); clients dropped or protocol errors beyond the errors threshold (without one: any).
 *    Reasons name the rounds ("round 3: 12 of 99 missing") — at most a few rounds listed, then "and N more".
 *  - thresholds (exit 1): each one evaluated on the merged histograms / ratios; a latency threshold with an empty
 *    histogram fails ("no samples").
 * Exit 3 wins over 1. Warnings (not failures): a worker busy over 80% of a core during the rounds or with event-loop
 * lag p99 over 10 ms ("loadgen may be the bottleneck: ..."); unclean closes. */
void lg_verdict(struct lg_result *r);

struct lg_plan;

/* What the run is about to do, before it starts: "loadgen VERSION: N clients -> URL, ..." and, with p, the plan's
 * lines (plan.h). */
void lg_report_head(FILE *fp, const struct lg_opts *o, const struct lg_plan *p);

/* The human summary after the run, below lg_report_head's lines (several lines: clients and where they landed, rounds,
 * latency table with min p50 p90 p99 p99.9 max mean count for delivery, connect and handshake, errors by kind,
 * self-monitoring, verdict). */
void lg_report_human(FILE *fp, const struct lg_result *r);

/* Write the JSON document to path ("-" = stdout), atomically (a temporary file renamed). 0, or -1 with err. */
int lg_report_json(const char *path, const struct lg_result *r, char *err, size_t errlen);

/* The JSON document into fp (the caller opened it: outfile.h). 0, or -1. */
int lg_report_json_fp(FILE *fp, const struct lg_result *r);

/* The verdict as JUnit XML into fp: one testsuite, testcases "connect", "delivery" (every other check), one per
 * threshold ("threshold p99<50ms") and "run" (loadgen failed or was interrupted), each failing with its reasons. */
int lg_report_junit(FILE *fp, const struct lg_result *r);

/* "12.3ms", "850us", "1.52s" for a duration in ns, into out. */
void lg_format_duration(int64_t ns, char *out, size_t outlen);

#endif
