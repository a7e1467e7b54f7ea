/* loadgen: N WebSocket clients, one (or E) emit per round, every other client in the room must receive each
 * message exactly once and in order; measured with HDR histograms. `loadgen --help` for the options.
 *
 * Exit: 0 pass, 1 verification or threshold failure (or loadgen itself failed), 2 bad usage, 3 could not
 * connect. */
#include "common/log.h"
#include "loadgen/coord.h"
#include "loadgen/opts.h"
#include "loadgen/report.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#define FD_RESERVE 64 /* descriptors besides the clients': stdio, epoll, pipes, TLS files */

/* Each worker holds its share of the clients: raise the soft open-files limit to what that needs, up to the hard
 * limit, and say so up front when even that is short (the run goes on, and each refused socket is reported as
 * EMFILE with the remedy). */
static void check_fd_limit(const struct lg_opts *o)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    /* A polling client holds two: its held GET and its POST connection (a third, briefly, while it upgrades). */
    rlim_t per = o->protocol == LG_PROTO_SOCKETIO && o->sio_polling ? 2 : 1;
    rlim_t need = (rlim_t)(o->clients / o->workers + 1) * per + FD_RESERVE;
    if (rl.rlim_cur >= need)
        return;
    rlim_t want = need < rl.rlim_max ? need : rl.rlim_max;
    struct rlimit raised = {.rlim_cur = want, .rlim_max = rl.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0 && want >= need)
        return;
    uint64_t fit = rl.rlim_max > (rlim_t)FD_RESERVE * 2 ? (uint64_t)(rl.rlim_max - FD_RESERVE) / per : 0;
    uint64_t workers = fit ? (o->clients + fit - 1) / fit : 0;
    fprintf(stderr, "loadgen: warning: %u clients over %u worker(s) need %llu descriptors each, the limit is %llu: ",
            o->clients, o->workers, (unsigned long long)need, (unsigned long long)rl.rlim_max);
    if (workers && workers <= LG_MAX_WORKERS)
        fprintf(stderr, "use --workers %llu or more\n", (unsigned long long)workers);
    else
        fprintf(stderr, "raise the limit (ulimit -n)\n");
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
    case LG_PARSE_VERSION: printf("loadgen %s\n", LG_VERSION); return 0;
    case LG_PARSE_ERROR: fprintf(stderr, "loadgen: %s (see loadgen --help)\n", err); return 2;
    case LG_PARSE_OK: break;
    }
    FILE *hlog = NULL;
    if (o.hlog && !(hlog = fopen(o.hlog, "w"))) {
        fprintf(stderr, "loadgen: --hlog %s: %s\n", o.hlog, strerror(errno));
        lg_opts_free(&o);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    check_fd_limit(&o);
    struct lg_result r;
    int rc = lg_run(&o, &r, hlog, err, sizeof err);
    if (hlog && fclose(hlog) != 0 && rc == 0) {
        snprintf(err, sizeof err, "--hlog %s: %s", o.hlog, strerror(errno));
        rc = -1;
    }
    int code = finish(&r, &o, rc < 0 ? err : NULL);
    lg_result_free(&r);
    lg_opts_free(&o);
    return code;
}
