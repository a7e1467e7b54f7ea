/* An output file (--out, --hlog, --junit) opened before the run, so a path that cannot be written stops the run
 * before its first connection, and put in place after it: written to PATH.tmp, renamed over PATH at the end. */
#ifndef LOADGEN_OUTFILE_H
#define LOADGEN_OUTFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct lg_outfile {
    const char *flag; /* "--out", for messages */
    const char *path; /* NULL: not asked for */
    char tmp[4096];   /* "" for stdout */
    FILE *fp;         /* open between open and commit/abort */
};

/* Open flag's path for writing: "-" takes fp_std (kept), else PATH.tmp is created. path NULL: nothing, 0.
 * 0, or -1 with err ("--out /x/y.json: No such file or directory"). */
int lg_outfile_open(struct lg_outfile *f, const char *flag, const char *path, FILE *fp_std, char *err, size_t errlen);

/* Close and rename into place (fails on a write error). 0 (also when not open), or -1 with err; the temporary file
 * is removed on failure. */
int lg_outfile_commit(struct lg_outfile *f, char *err, size_t errlen);

/* Close and remove the temporary file: the run did not get to write it. */
void lg_outfile_abort(struct lg_outfile *f);

#endif
