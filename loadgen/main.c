/* loadgen: N WebSocket clients, one (or E) emit per round, every other client in the room must receive each
 * message exactly once and in order; measured with HDR histograms. `loadgen --help` for the options.
 *
 * Exit: 0 pass, 1 verification or threshold failure (or loadgen itself failed), 2 bad usage, 3 could not
 * connect. */
#include "common/log.h"
#include "common/version.h"
#include "loadgen/coord.h"
#include "loadgen/opts.h"
#include "loadgen/plan.h"
#include "loadgen/report.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

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

static int finish(struct lg_result *r, const struct lg_opts *o, const char *run_err)
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
    if (o->out_json) {
        char err[256];
        if (lg_report_json(o->out_json, r, err, sizeof err) < 0) {
            fprintf(stderr, "loadgen: %s\n", err);
            return r->exit_code ? r->exit_code : 1;
        }
    }
    return r->exit_code;
}

int main(int argc, char **argv)
{
    struct lg_opts o;
    char err[512];
    log_init("loadgen", LOG_LEVEL_WARN);
    switch (lg_opts_parse(&o, argc, argv, err, sizeof err)) {
    case LG_PARSE_HELP: lg_opts_usage(stdout); return 0;
    case LG_PARSE_VERSION: printf("loadgen %s (commit %s)\n", LG_VERSION, WSH_COMMIT); return 0;
    case LG_PARSE_ERROR: fprintf(stderr, "loadgen: %s (see loadgen --help)\n", err); return 2;
    case LG_PARSE_OK: break;
    }
    struct lg_plan plan;
    if (plan_run(&o, &plan, err, sizeof err) < 0) {
        fprintf(stderr, "loadgen: %s\n", err);
        lg_opts_free(&o);
        return 2;
    }
    if (o.plan_only) { /* warnings, if any, are already on stderr */
        lg_plan_print(stdout, &plan);
        lg_opts_free(&o);
        return 0;
    }
    FILE *hlog = NULL;
    if (o.hlog && !(hlog = fopen(o.hlog, "w"))) {
        fprintf(stderr, "loadgen: --hlog %s: %s\n", o.hlog, strerror(errno));
        lg_opts_free(&o);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (!o.quiet) { /* at once: a piped run shows what it is doing before its end */
        lg_report_head(stdout, &o, &plan);
        fflush(stdout);
    }
    struct lg_result r;
    int rc = lg_run(&o, &r, hlog, err, sizeof err);
    r.plan = &plan;
    if (hlog && fclose(hlog) != 0 && rc == 0) {
        snprintf(err, sizeof err, "--hlog %s: %s", o.hlog, strerror(errno));
        rc = -1;
    }
    int code = finish(&r, &o, rc < 0 ? err : NULL);
    lg_result_free(&r);
    lg_opts_free(&o);
    return code;
}
