/* loadgen: N WebSocket clients, one (or E) emit per round, every other client in the room must receive each
 * message exactly once and in order; measured with HDR histograms. `loadgen --help` for the options.
 *
 * Exit: 0 pass, 1 verification or threshold failure (or loadgen itself failed), 2 bad usage, 3 could not
 * connect. */
#include "common/log.h"
#include "common/version.h"
#include "loadgen/coord.h"
#include "loadgen/opts.h"
#include "loadgen/outfile.h"
#include "loadgen/plan.h"
#include "loadgen/report.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Each worker holds its share of the clients: raise the soft open-files limit to what the plan says a worker needs,
 * up to the hard limit (the plan already warned when that is short). Workers inherit it. */
static void raise_fd_limit(const struct lg_plan *p)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= p->fds_per_worker)
        return;
    rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < p->fds_per_worker ? rl.rlim_max : p->fds_per_worker;
    setrlimit(RLIMIT_NOFILE, &rl);
}

/* Plan the run (plan.h) and put the plan into o; warnings to stderr. 0, or -1 with err (bad usage: exit 2). */
static int plan_run(struct lg_opts *o, struct lg_plan *p, char *err, size_t errlen)
{
    struct lg_plan_env env;
    lg_plan_env_read(&env);
    if (lg_plan_make(o, &env, p, err, errlen) < 0 || lg_plan_apply(o, p, err, errlen) < 0)
        return -1;
    for (int i = 0; i < p->nwarnings; i++)
        fprintf(stderr, "loadgen: warning: %s\n", p->warnings[i]);
    raise_fd_limit(p);
    return 0;
}

/* The output files, opened before the run. */
struct outputs {
    struct lg_outfile out, hlog, junit;
};

/* "-" for more than one of them: they would share stdout. */
static int stdout_taken_twice(const struct lg_opts *o)
{
    const char *paths[] = {o->out_json, o->hlog, o->junit};
    int n = 0;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        n += paths[i] && !strcmp(paths[i], "-");
    return n > 1;
}

/* Open --out, --hlog and --junit before the first connection: a path that cannot be written is bad usage, found
 * before the run rather than after it. With "-" stdout is kept for that file alone and fd 1 becomes stderr, so the
 * header, progress and summary (and the workers' output) go there. 0, or -1 with err. */
static int open_outputs(struct outputs *f, const struct lg_opts *o, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    if (stdout_taken_twice(o)) {
        snprintf(err, errlen, "only one of --out, --hlog and --junit can be - (stdout)");
        return -1;
    }
    FILE *std = NULL;
    if ((o->out_json && !strcmp(o->out_json, "-")) || (o->hlog && !strcmp(o->hlog, "-")) ||
        (o->junit && !strcmp(o->junit, "-"))) {
        int keep = dup(STDOUT_FILENO);
        if (keep < 0 || !(std = fdopen(keep, "w")) || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
            snprintf(err, errlen, "stdout: %s", strerror(errno));
            return -1;
        }
    }
    if (lg_outfile_open(&f->out, "--out", o->out_json, std, err, errlen) < 0 ||
        lg_outfile_open(&f->hlog, "--hlog", o->hlog, std, err, errlen) < 0 ||
        lg_outfile_open(&f->junit, "--junit", o->junit, std, err, errlen) < 0) {
        lg_outfile_abort(&f->out);
        lg_outfile_abort(&f->hlog);
        return -1;
    }
    return 0;
}

/* Write the JSON and the JUnit XML and put every file in place; the first failure is reported, and fails the run. */
static int close_outputs(struct outputs *f, const struct lg_result *r)
{
    char err[512];
    int rc = 0;
    if (f->out.fp && lg_report_json_fp(f->out.fp, r) < 0)
        fprintf(stderr, "loadgen: --out %s: cannot write the report\n", f->out.path), rc = -1;
    if (f->junit.fp && lg_report_junit(f->junit.fp, r) < 0)
        fprintf(stderr, "loadgen: --junit %s: cannot write the report\n", f->junit.path), rc = -1;
    struct lg_outfile *all[] = {&f->out, &f->hlog, &f->junit};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (lg_outfile_commit(all[i], err, sizeof err) < 0)
            fprintf(stderr, "loadgen: %s\n", err), rc = -1;
    return rc;
}

static int finish(struct lg_result *r, const struct lg_opts *o, struct outputs *f, const char *run_err)
{
    lg_verdict(r);
    if (run_err && r->nreasons < LG_MAX_REASONS)
        snprintf(r->reasons[r->nreasons++], sizeof r->reasons[0], "loadgen failed: %.180s", run_err);
    if (r->interrupted && r->nreasons < LG_MAX_REASONS)
        snprintf(r->reasons[r->nreasons++], sizeof r->reasons[0], "interrupted before the end of the run");
    if ((run_err || r->interrupted) && r->exit_code == 0)
        r->exit_code = 1;
    if (!o->quiet) {
        lg_report_human(stdout, r);
    } else {
        for (int i = 0; i < r->nreasons; i++)
            fprintf(stderr, "loadgen: %s\n", r->reasons[i]);
    }
    fflush(stdout);
    if (close_outputs(f, r) < 0)
        return r->exit_code ? r->exit_code : 1;
    return r->exit_code;
}

/* --help, --version or bad usage: print it; the exit code. */
static int parse_exit(enum lg_parse_result parsed, const char *err)
{
    switch (parsed) {
    case LG_PARSE_HELP: lg_opts_usage(stdout); return 0;
    case LG_PARSE_VERSION: printf("loadgen %s (commit %s)\n", LG_VERSION, WSH_COMMIT); return 0;
    default: fprintf(stderr, "loadgen: %s (see loadgen --help)\n", err); return 2;
    }
}

/* The command line as given, for the report: getopt_long permutes argv. NULL when out of memory. */
static char **copy_argv(int argc, char **argv)
{
    char **copy = calloc((size_t)argc + 1, sizeof *copy);
    if (copy)
        memcpy(copy, argv, (size_t)argc * sizeof *copy);
    return copy;
}

int main(int argc, char **argv)
{
    struct lg_opts o;
    char err[512];
    char **given = copy_argv(argc, argv);
    log_init("loadgen", LOG_LEVEL_WARN);
    enum lg_parse_result parsed = lg_opts_parse(&o, argc, argv, err, sizeof err);
    if (parsed != LG_PARSE_OK) {
        free(given);
        return parse_exit(parsed, err);
    }
    struct lg_plan plan;
    struct outputs out;
    int bad = plan_run(&o, &plan, err, sizeof err) < 0 || (!o.plan_only && open_outputs(&out, &o, err, sizeof err) < 0);
    if (bad || o.plan_only) { /* a plan's warnings, if any, are already on stderr */
        if (bad)
            fprintf(stderr, "loadgen: %s\n", err);
        else
            lg_plan_print(stdout, &plan);
        lg_opts_free(&o);
        free(given);
        return bad ? 2 : 0;
    }
    signal(SIGPIPE, SIG_IGN);
    if (!o.quiet) { /* at once: a piped run shows what it is doing before its end */
        lg_report_head(stdout, &o, &plan);
        fflush(stdout);
    }
    struct lg_result r;
    int rc = lg_run(&o, &r, out.hlog.fp, err, sizeof err);
    r.plan = &plan;
    r.argc = given ? argc : 0;
    r.argv = given;
    int code = finish(&r, &o, &out, rc < 0 ? err : NULL);
    lg_result_free(&r);
    lg_opts_free(&o);
    free(given);
    return code;
}
