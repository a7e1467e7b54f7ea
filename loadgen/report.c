/* loadgen's verdict, human summary and JSON report; see report.h and docs/loadgen-json.md. */
#define _GNU_SOURCE
#include "loadgen/report.h"

#include "common/hist.h"
#include "common/version.h"
#include "loadgen/plan.h"

#include <ev.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>


#define ROUNDS_LISTED 3   /* rounds named in a reason before "and N more" */
#define BUSY_WARN     0.8 /* share of a core */
#define LAG_WARN_NS   INT64_C(10000000)

static const char *const err_names[LG_ERR_COUNT] = {
    "refused",
    "connect_timeout",
    "emfile",
    "eaddrnotavail",
    "connect",
    "tls",
    "handshake_timeout",
    "http_status",
    "bad_upgrade",
    "handshake_closed",
    "socketio_refused",
    "socketio_upgrade_failed",
    "socketio_session_unknown",
    "dropped",
    "protocol",
    "socketio_ping_timeout",
    "socketio_http_error",
    "socketio_poll_timeout",
    "close",
    "close_timeout",
};

const char *lg_err_name(enum lg_err k)
{
    return (unsigned)k < LG_ERR_COUNT ? err_names[k] : "unknown";
}

void lg_format_duration(int64_t ns, char *out, size_t outlen)
{
    static const struct {
        double div;
        const char *unit;
    } units[] = {{1e9, "s"}, {1e6, "ms"}, {1e3, "us"}};
    double v = (double)ns;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (v < units[i].div && i + 1 < sizeof units / sizeof units[0])
            continue;
        if (v < units[i].div) {
            snprintf(out, outlen, "%" PRId64 "ns", ns);
            return;
        }
        double x = v / units[i].div;
        snprintf(out, outlen, x >= 100 ? "%.0f%s" : x >= 10 ? "%.1f%s" : "%.2f%s", x, units[i].unit);
        return;
    }
}

/* ---- verdict ---- */

static void reason(struct lg_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reason(struct lg_result *r, const char *fmt, ...)
{
    if (r->nreasons == LG_MAX_REASONS)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reasons[r->nreasons++], sizeof r->reasons[0], fmt, ap);
    va_end(ap);
}

static void warning(struct lg_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warning(struct lg_result *r, const char *fmt, ...)
{
    if (r->nwarnings == LG_MAX_WARNINGS)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->warnings[r->nwarnings++], sizeof r->warnings[0], fmt, ap);
    va_end(ap);
}

static double share(uint64_t part, uint64_t whole)
{
    return whole ? (double)part / (double)whole : 0;
}

/* Closing handshakes that failed: answered wrongly or broken (close), or out of time (close_timeout). */
static uint32_t close_errors(const struct lg_result *r)
{
    return r->tally.err_counts[LG_ERR_CLOSE] + r->tally.err_counts[LG_ERR_CLOSE_TIMEOUT];
}

/* Clients lost after connecting that count as failed: with --reconnect those that never came back. */
static uint32_t lost_clients(const struct lg_result *r)
{
    return r->opts->reconnect.enabled ? r->recon.never_back : r->dropped;
}

/* The share of clients that failed at any point: in the connect phase, lost afterwards, not closing cleanly, or
 * not getting back in after a leave (--churn). */
static double error_share(const struct lg_result *r)
{
    return share((uint64_t)r->failed + lost_clients(r) + close_errors(r) + r->churn_failed, r->attempted);
}

/* The share of the messages due to a client that it missed while away. */
static double missed_share(const struct lg_result *r)
{
    return share(r->total.missed, r->total.expected + r->total.missed);
}

static double delivery_ratio(const struct lg_result *r)
{
    return r->total.expected ? share(r->total.received, r->total.expected) : 1.0;
}

static const struct lg_threshold *find_threshold(const struct lg_opts *o, enum lg_th_metric m)
{
    for (int i = 0; i < o->nthresholds; i++)
        if (o->thresholds[i].metric == m)
            return &o->thresholds[i];
    return NULL;
}

static bool compare(double actual, enum lg_th_op op, double limit)
{
    switch (op) {
    case TH_LT: return actual < limit;
    case TH_LE: return actual <= limit;
    case TH_GT: return actual > limit;
    case TH_GE: return actual >= limit;
    }
    return false;
}

/* Within the errors threshold (without one: no error at all)? */
static bool errors_ok(const struct lg_result *r, double value)
{
    const struct lg_threshold *t = find_threshold(r->opts, TH_ERRORS);
    return t ? compare(value, t->op, t->value) : value == 0;
}

/* ": refused 3, tls 1" for the connect-phase kinds that occurred ("" when none), into out. */
static void connect_kinds(const struct lg_result *r, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    for (int k = 0; k < LG_ERR_COUNT && n < outlen; k++)
        if (LG_ERR_IS_CONNECT(k) && r->tally.err_counts[k])
            n += (size_t)snprintf(out + n, outlen - n, "%s%s %u", n ? ", " : ": ", lg_err_name(k),
                                  r->tally.err_counts[k]);
}

static void connect_verdict(struct lg_result *r)
{
    if (r->connected > 0 && errors_ok(r, share(r->failed, r->attempted)))
        return;
    char kinds[160];
    connect_kinds(r, kinds, sizeof kinds);
    reason(r, "%u of %u clients could not connect%s", r->failed, r->attempted, kinds);
    for (int k = 0; k < LG_ERR_COUNT; k++)
        if (LG_ERR_IS_CONNECT(k) && r->tally.err_counts[k] && r->tally.err_example[k][0])
            reason(r, "  e.g. %s", r->tally.err_example[k]);
    if (r->tally.err_counts[LG_ERR_EMFILE])
        reason(r, "hint: out of file descriptors: raise `ulimit -n` or spread the clients over more --workers");
    if (r->tally.err_counts[LG_ERR_EADDRNOTAVAIL])
        reason(r, "hint: out of source ports: add --source 127.0.0.2-127.0.0.60 or widen "
                  "net.ipv4.ip_local_port_range");
    if (r->tally.err_counts[LG_ERR_TLS])
        reason(r, "hint: TLS failed: see --cacert FILE, or --insecure to skip verification");
    if (r->opts->protocol == LG_PROTO_SOCKETIO && r->tally.err_counts[LG_ERR_HTTP_STATUS])
        reason(r, "hint: --protocol socketio: the Engine.IO handshake was answered with an HTTP error: is the URL a "
                  "Socket.IO server (path /socket.io/)? A plain WebSocket one needs --protocol websocket");
    if (r->tally.err_counts[LG_ERR_SIO_SESSION_UNKNOWN])
        reason(r, "hint: Session ID unknown: a polling request reached a node without its session; the balancer "
                  "needs sticky sessions (a cookie, or the client address)");
    r->exit_code = 3;
}

/* "round 3: 12 of 99 missing; round 4: ...; and N more" for the counter at offset off in struct lg_round. */
static void per_round_reason(struct lg_result *r, const char *what, size_t off, uint64_t total)
{
    char text[200];
    size_t n = (size_t)snprintf(text, sizeof text, "%" PRIu64 " %s", total, what);
    uint32_t listed = 0, more = 0;
    for (uint32_t i = 0; i < r->rounds_run; i++) {
        uint64_t v;
        memcpy(&v, (const char *)&r->rounds[i] + off, sizeof v);
        if (!v)
            continue;
        if (listed++ < ROUNDS_LISTED && n < sizeof text)
            n += (size_t)snprintf(text + n, sizeof text - n, "%s round %u: %" PRIu64 " of %" PRIu64,
                                  listed == 1 ? ":" : ";", i + 1, v, r->rounds[i].expected);
        else
            more++;
    }
    if (more && n < sizeof text)
        snprintf(text + n, sizeof text - n, "; and %u more round(s)", more);
    reason(r, "%s", text);
}

/* --ack: every emit acked once, in time, and no ack for something never asked. */
static void ack_verdict(struct lg_result *r)
{
    const struct lg_acks *a = &r->acks;
    if (!r->opts->sio_ack)
        return;
    if (a->missing)
        reason(r, "%" PRIu64 " of %" PRIu64 " ack(s) missing (never came)", a->missing, a->expected);
    if (a->late)
        reason(r, "%" PRIu64 " of %" PRIu64 " ack(s) late (after --deadline)", a->late, a->expected);
    if (a->duplicate)
        reason(r, "%" PRIu64 " duplicate ack(s)", a->duplicate);
    if (a->unknown)
        reason(r, "%" PRIu64 " ack(s) for an id no emit was waiting for", a->unknown);
}

/* The first open-client kind that occurred with its example: "dropped: client 3: connection closed ...". */
static void first_loss(const struct lg_result *r, char *out, size_t outlen)
{
    out[0] = '\0';
    for (int k = 0; k < LG_ERR_COUNT; k++)
        if (LG_ERR_IS_OPEN(k) && k != LG_ERR_CLOSE && k != LG_ERR_CLOSE_TIMEOUT && r->tally.err_counts[k]) {
            snprintf(out, outlen, " (%s: %s)", lg_err_name(k), r->tally.err_example[k]);
            return;
        }
}

/* Clients lost after connecting (with --reconnect: not back by the end), and closes that failed. */
static void lost_verdict(struct lg_result *r)
{
    uint32_t lost = lost_clients(r);
    if (!r->connected || errors_ok(r, error_share(r)) || (!lost && !close_errors(r)))
        return;
    char first[200];
    first_loss(r, first, sizeof first);
    if (lost && r->opts->reconnect.enabled)
        reason(r, "%u client(s) lost after connecting never came back (%u losses, %u reconnected)%s", lost,
               r->recon.drops, r->recon.reconnected, first);
    else if (lost)
        reason(r, "%u client(s) lost after connecting%s", lost, first);
    if (close_errors(r))
        reason(r, "%u closing handshake(s) failed (%u out of time)", close_errors(r),
               r->tally.err_counts[LG_ERR_CLOSE_TIMEOUT]);
    for (int k = 0; k < LG_ERR_COUNT; k++) /* the kind already named in the first reason is not repeated */
        if (LG_ERR_IS_OPEN(k) && r->tally.err_counts[k] && r->tally.err_example[k][0] &&
            !(lost && strstr(first, r->tally.err_example[k])))
            reason(r, "  e.g. %s: %s", lg_err_name(k), r->tally.err_example[k]);
    if (r->tally.err_counts[LG_ERR_SIO_SESSION_UNKNOWN] && r->exit_code != 3)
        reason(r, "hint: Session ID unknown: the balancer needs sticky sessions for long-polling");
    if (r->tally.err_counts[LG_ERR_CLOSE_TIMEOUT])
        reason(r, "hint: close_timeout: the server answered closes too slowly or not at all; give it longer "
                  "(--close-timeout) or fewer at once (--max-inflight)");
}

/* Nothing of ours came back although messages were owed: the usual cause is an app with its own message shape (it
 * drops or wraps loadgen's message) or one that wants a join first. Say where to look instead of only "missing":
 * beside the failure it explains, or as a warning when a delivery threshold allows the loss. */
static void shape_hint(struct lg_result *r, bool allowed)
{
    const struct lg_round *t = &r->total;
    if (t->received || t->late || t->duplicate || !t->expected || !t->emitted)
        return;
    void (*say)(struct lg_result *, const char *, ...) = allowed ? warning : reason;
    if (r->foreign)
        say(r,
            "none of the %" PRIu64 " message(s) that came back carried loadgen's message where it looked%s: "
            "if the app wraps messages, --find says where it is (and --send shapes what is sent)",
            r->foreign, r->opts->find_text ? " (--find)" : "");
    else
        say(r, "no message came back at all: if the app expects its own message shape or a join first, see "
               "--send, --find and --on-open");
}

static void delivery_verdict(struct lg_result *r)
{
    const struct lg_round *t = &r->total;
    const struct lg_threshold *dt = find_threshold(r->opts, TH_DELIVERY);
    bool fail0 = r->exit_code == 0;
    lost_verdict(r); /* the cause first: what a loss did to delivery is only counted as missed while away */
    if (!dt && t->missing)
        per_round_reason(r, "lost (missing: owed while connected, never arrived)", offsetof(struct lg_round, missing),
                         t->missing);
    if (!dt && t->late)
        per_round_reason(r, "late (after --deadline)", offsetof(struct lg_round, late), t->late);
    if (t->duplicate)
        per_round_reason(r, "duplicate", offsetof(struct lg_round, duplicate), t->duplicate);
    if (t->reordered)
        per_round_reason(r, "out of order", offsetof(struct lg_round, reordered), t->reordered);
    if (r->echoed)
        reason(r, "%" PRIu64 " message(s) came back to their emitter (use --echo if the server echoes)", r->echoed);
    if (r->corrupt)
        reason(r, "%" PRIu64 " corrupt message(s): garbled, or from an emitter of another room", r->corrupt);
    shape_hint(r, dt != NULL);
    ack_verdict(r);
    if (r->churn_failed && !errors_ok(r, error_share(r))) {
        char kinds[160];
        connect_kinds(r, kinds, sizeof kinds);
        reason(r, "%u of %u return(s) after a leave (--churn) could not connect%s", r->churn_failed, r->churn_left,
               kinds);
    }
    if (fail0 && r->nreasons)
        r->exit_code = 1;
}

static const struct hist *threshold_hist(const struct lg_result *r, const struct lg_threshold *t)
{
    return t->metric == TH_CONNECT     ? r->connect
           : t->metric == TH_HANDSHAKE ? r->handshake
           : t->metric == TH_ACK       ? r->ack
                                       : r->latency;
}

static double threshold_actual(const struct lg_result *r, const struct lg_threshold *t, bool *empty)
{
    const struct hist *h = threshold_hist(r, t);
    *empty = false;
    switch (t->stat) {
    case TH_STAT_RATIO:
        return t->metric == TH_ERRORS ? error_share(r) : t->metric == TH_MISSED ? missed_share(r) : delivery_ratio(r);
    case TH_STAT_MIN: *empty = hist_count(h) == 0; return (double)hist_min(h);
    case TH_STAT_MAX: *empty = hist_count(h) == 0; return (double)hist_max(h);
    case TH_STAT_MEAN: *empty = hist_count(h) == 0; return hist_mean(h);
    case TH_STAT_PCT: *empty = hist_count(h) == 0; return (double)hist_percentile(h, t->pct);
    }
    return 0;
}

/* A threshold's actual value as its expression reads: "0.250%" for a ratio, "12.3ms" for a latency. */
static void threshold_shown(const struct lg_threshold *t, double v, char *out, size_t outlen)
{
    if (t->stat == TH_STAT_RATIO)
        snprintf(out, outlen, "%.3f%%", v * 100);
    else
        lg_format_duration((int64_t)v, out, outlen);
}

static void threshold_verdict(struct lg_result *r)
{
    const struct lg_opts *o = r->opts;
    for (int i = 0; i < o->nthresholds; i++) {
        const struct lg_threshold *t = &o->thresholds[i];
        bool empty;
        double v = threshold_actual(r, t, &empty);
        r->threshold_actual[i] = v;
        r->threshold_ok[i] = !empty && compare(v, t->op, t->value);
        if (r->threshold_ok[i])
            continue;
        char shown[32];
        threshold_shown(t, v, shown, sizeof shown);
        if (empty)
            reason(r, "threshold %s failed: no samples", t->text);
        else
            reason(r, "threshold %s failed: actual %s", t->text, shown);
        if (r->exit_code == 0)
            r->exit_code = 1;
    }
}

/* A worker whose loop ran late: loadgen is the bottleneck only when the worker itself kept its core busy. A late
 * loop in an idle worker waited for a CPU that others (or the hypervisor) held: that is the machine's contention,
 * and adding --workers would only add to it. */
static void late_loop_warning(struct lg_result *r, uint32_t i)
{
    const struct lg_worker_self *w = &r->workers[i];
    double lag_ms = (double)w->lag_p99_ns / 1e6;
    if (w->busy_ratio > BUSY_WARN) {
        warning(r,
                "loadgen may be the bottleneck: worker %u used %.0f%% of a core, event-loop lag p99 %.1fms; "
                "add --workers",
                i, w->busy_ratio * 100, lag_ms);
        return;
    }
    const struct hostcpu_use *m = &r->machine;
    if (m->ok)
        warning(r,
                "the machine was contended, not loadgen: worker %u's loop ran late (lag p99 %.1fms) while it used "
                "%.0f%% of a core; all processes kept %.1f of %u cores busy, %.1f%% stolen",
                i, lag_ms, w->busy_ratio * 100, m->busy_cores, m->cores, m->steal_ratio * 100);
    else
        warning(r,
                "the machine was contended, not loadgen: worker %u's loop ran late (lag p99 %.1fms) while it used "
                "%.0f%% of a core; other processes held the CPU",
                i, lag_ms, w->busy_ratio * 100);
}

static void self_warnings(struct lg_result *r)
{
    for (uint32_t i = 0; i < r->nworkers; i++) {
        const struct lg_worker_self *w = &r->workers[i];
        if (w->busy_ratio > BUSY_WARN || w->lag_p99_ns > LAG_WARN_NS)
            late_loop_warning(r, i);
    }
    /* a client away (--churn) at the end, or that could not get back in, has no final close */
    uint64_t gone = (uint64_t)lost_clients(r) + r->churn_failed + r->churn_pending;
    uint32_t should = r->connected > gone ? r->connected - (uint32_t)gone : 0;
    if (r->closed_clean < should)
        warning(r, "%u of %u closing handshakes were not clean", should - r->closed_clean, should);
}

/* A schedule that could not keep up is no failure (latency already counts it) but must not pass silently. */
static void schedule_warning(struct lg_result *r)
{
    if (!r->rounds_late)
        return;
    char most[16], mean[16], every[16];
    lg_format_duration(r->lateness_max_ns, most, sizeof most);
    lg_format_duration(r->lateness_sum_ns / r->rounds_run, mean, sizeof mean);
    lg_format_duration(r->opts->interval_ns, every, sizeof every);
    warning(r,
            "schedule fell behind: %u of %u rounds started late, by up to %s (mean %s, interval %s): the server "
            "or loadgen could not keep up; latency is measured from the intended send times",
            r->rounds_late, r->rounds_run, most, mean, every);
}

void lg_verdict(struct lg_result *r)
{
    r->exit_code = 0;
    r->nreasons = r->nwarnings = 0;
    connect_verdict(r);
    r->reasons_connect = r->nreasons;
    if (r->connected)
        delivery_verdict(r);
    r->reasons_checks = r->nreasons;
    threshold_verdict(r);
    r->reasons_thresholds = r->nreasons;
    self_warnings(r);
    schedule_warning(r);
}

/* ---- human summary ---- */

static void hist_row(FILE *fp, const char *name, const struct hist *h)
{
    static const double pcts[] = {50, 90, 99, 99.9};
    char v[8][16];
    lg_format_duration(hist_min(h), v[0], sizeof v[0]);
    for (int i = 0; i < 4; i++)
        lg_format_duration(hist_percentile(h, pcts[i]), v[i + 1], sizeof v[0]);
    lg_format_duration(hist_max(h), v[5], sizeof v[0]);
    lg_format_duration((int64_t)hist_mean(h), v[6], sizeof v[0]);
    if (hist_count(h) == 0) {
        fprintf(fp, "%-10s %9d        -\n", name, 0);
        return;
    }
    fprintf(fp, "%-10s %9" PRId64 " %8s %8s %8s %8s %8s %8s %8s\n", name, hist_count(h), v[0], v[1], v[2], v[3], v[4],
            v[5], v[6]);
}

void lg_report_head(FILE *fp, const struct lg_opts *o, const struct lg_plan *p)
{
    fprintf(fp, "loadgen %s: %u clients -> %s", LG_VERSION, o->clients, o->targets[0].url);
    if (o->ntargets > 1)
        fprintf(fp, " (+%d more URL%s)", o->ntargets - 1, o->ntargets > 2 ? "s" : "");
    fprintf(fp, ", %u rounds, %u emitter%s, %u B, %u worker%s\n", o->rounds, o->emitters, o->emitters > 1 ? "s" : "",
            o->payload, o->workers, o->workers > 1 ? "s" : "");
    if (p)
        lg_plan_print(fp, p);
}

static void human_reconnect(FILE *fp, const struct lg_result *r)
{
    const struct lg_recon *c = &r->recon;
    char p50[16], p99[16];
    lg_format_duration(hist_percentile(r->away, 50), p50, sizeof p50);
    lg_format_duration(hist_percentile(r->away, 99), p99, sizeof p99);
    fprintf(fp, "reconnect %u lost, %u reconnected (away p50 %s, p99 %s), %u failed attempts, %u never back", c->drops,
            c->reconnected, p50, p99, c->failed_attempts, c->never_back);
    if (c->nodes.n)
        fprintf(fp, "; landed:");
    for (int i = 0; i < c->nodes.n; i++)
        fprintf(fp, " %s %u", c->nodes.names[i], c->nodes.counts[i]);
    fputc('\n', fp);
}

static void human_head(FILE *fp, const struct lg_result *r)
{
    const struct lg_opts *o = r->opts;
    char d[16];
    lg_format_duration(r->connect_ns, d, sizeof d);
    double rate = r->connect_ns > 0 ? (double)r->connected / ((double)r->connect_ns / 1e9) : 0;
    fprintf(fp, "connect   %u/%u in %s (%.0f/s)", r->connected, r->attempted, d, rate);
    if (r->tally.nodes.n || r->tally.nodes.unknown || r->tally.nodes.other) {
        fprintf(fp, "   nodes:");
        for (int i = 0; i < r->tally.nodes.n; i++)
            fprintf(fp, " %s %u", r->tally.nodes.names[i], r->tally.nodes.counts[i]);
        if (r->tally.nodes.other)
            fprintf(fp, " other %u", r->tally.nodes.other);
        if (r->tally.nodes.unknown)
            fprintf(fp, " unknown %u", r->tally.nodes.unknown);
    }
    if (o->sio_polling)
        fprintf(fp, "   transport: %u upgraded, %u polling", r->tally.sio_upgraded, r->tally.sio_polling);
    fputc('\n', fp);
    const struct lg_round *t = &r->total;
    fprintf(fp,
            "rounds    %u run: %" PRIu64 "/%" PRIu64 " delivered, %" PRIu64 " lost, %" PRIu64 " late, %" PRIu64
            " duplicate, %" PRIu64 " reordered; %" PRIu64 " missed while away",
            r->rounds_run, t->received, t->expected, t->missing, t->late, t->duplicate, t->reordered, t->missed);
    if (r->emitter_gone_rounds)
        fprintf(fp, "; %u round(s) with an emitter gone", r->emitter_gone_rounds);
    if (r->echoed || r->corrupt || r->foreign)
        fprintf(fp, "; %" PRIu64 " echoed, %" PRIu64 " corrupt, %" PRIu64 " foreign", r->echoed, r->corrupt,
                r->foreign);
    fputc('\n', fp);
    if (o->sio_ack)
        fprintf(fp,
                "acks      %" PRIu64 "/%" PRIu64 " acked, %" PRIu64 " missing, %" PRIu64 " late, %" PRIu64
                " duplicate, %" PRIu64 " unknown\n",
                r->acks.received, r->acks.expected, r->acks.missing, r->acks.late, r->acks.duplicate, r->acks.unknown);
    if (o->reconnect.enabled)
        human_reconnect(fp, r);
    if (o->churn) {
        lg_format_duration(o->churn_gap_ns, d, sizeof d);
        fprintf(fp,
                "churn     %u/s, back after %s: %u left, %u rejoined, %u rejoin failed, %u pending; %" PRIu64
                " deliveries churned (to receivers not there for the whole round)\n",
                o->churn, d, r->churn_left, r->churn_rejoined, r->churn_failed, r->churn_pending, t->churned);
    }
}

/* Every threshold with its outcome, as k6 lists them: "✓ p99<50ms  actual 3.20ms". Empty histograms say so. */
static void human_thresholds(FILE *fp, const struct lg_result *r)
{
    const struct lg_opts *o = r->opts;
    for (int i = 0; i < o->nthresholds; i++) {
        const struct lg_threshold *t = &o->thresholds[i];
        char shown[32];
        threshold_shown(t, r->threshold_actual[i], shown, sizeof shown);
        bool empty = t->stat != TH_STAT_RATIO && hist_count(threshold_hist(r, t)) == 0;
        fprintf(fp, "%-9s %s %-24s %s%s\n", i ? "" : "threshold", r->threshold_ok[i] ? "\u2713" : "\u2717", t->text,
                empty ? "no samples" : "actual ", empty ? "" : shown);
    }
}

void lg_report_human(FILE *fp, const struct lg_result *r)
{
    human_head(fp, r);
    fprintf(fp, "%-10s %9s %8s %8s %8s %8s %8s %8s %8s\n", "", "count", "min", "p50", "p90", "p99", "p99.9", "max",
            "mean");
    hist_row(fp, "latency", r->latency);
    hist_row(fp, "service", r->service);
    hist_row(fp, "connect", r->connect);
    hist_row(fp, "handshake", r->handshake);
    if (r->opts->sio_ack && r->ack)
        hist_row(fp, "ack", r->ack);
    bool any = false;
    for (int k = 0; k < LG_ERR_COUNT; k++) {
        if (!r->tally.err_counts[k])
            continue;
        fprintf(fp, "%-9s %s %u (%s)\n", any ? "" : "errors", lg_err_name(k), r->tally.err_counts[k],
                r->tally.err_example[k]);
        any = true;
    }
    if (!any)
        fprintf(fp, "errors    none\n");
    double cpu = r->coord_cpu_s;
    for (uint32_t i = 0; i < r->nworkers; i++)
        cpu += r->workers[i].cpu_user_s + r->workers[i].cpu_sys_s;
    fprintf(fp, "self      %.2fs CPU over %u worker(s)", cpu, r->nworkers);
    for (uint32_t i = 0; i < r->nworkers; i++)
        fprintf(fp, "; w%u busy %.0f%%, lag p99 %.1fms, rss %" PRIu64 " KB", i, r->workers[i].busy_ratio * 100,
                (double)r->workers[i].lag_p99_ns / 1e6, r->workers[i].rss_kb);
    fputc('\n', fp);
    for (int i = 0; i < r->nwarnings; i++)
        fprintf(fp, "warning   %s\n", r->warnings[i]);
    human_thresholds(fp, r);
    if (r->exit_code == 0)
        fprintf(fp, "verdict   PASS\n");
    else
        fprintf(fp, "verdict   FAIL (exit %d)\n", r->exit_code);
    for (int i = 0; i < r->nreasons; i++)
        fprintf(fp, "          %s\n", r->reasons[i]);
}

/* ---- JSON ---- */

static json_t *ms(int64_t ns)
{
    return json_real((double)(ns / 1000) / 1000.0); // NOLINT(bugprone-integer-division): truncate to whole us
}

static json_t *hist_json(const struct hist *h)
{
    return json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "count", (json_int_t)hist_count(h), "min_ms",
                     ms(hist_min(h)), "p50_ms", ms(hist_percentile(h, 50)), "p90_ms", ms(hist_percentile(h, 90)),
                     "p99_ms", ms(hist_percentile(h, 99)), "p99_9_ms", ms(hist_percentile(h, 99.9)), "max_ms",
                     ms(hist_max(h)), "mean_ms", ms((int64_t)hist_mean(h)));
}

/* --protocol, and with socketio its settings; the auth object itself may hold a secret: only whether it was given. */
static json_t *protocol_json(json_t *j, const struct lg_opts *o)
{
    bool sio = o->protocol == LG_PROTO_SOCKETIO;
    json_object_set_new(j, "protocol", json_string(sio ? "socketio" : "websocket"));
    if (sio)
        json_object_set_new(j, "socketio",
                            json_pack("{s:s, s:b, s:s, s:b, s:s, s:s, s:b}", "transport",
                                      o->sio_polling ? "polling" : "websocket", "upgrade", o->sio_upgrade, "namespace",
                                      o->sio_nsp, "auth", o->sio_auth != NULL, "event", o->sio_event, "expect",
                                      o->sio_expect, "ack", o->sio_ack));
    return j;
}

/* --send, --find, --on-open: only when given, so a run without them keeps its old shape. */
static json_t *shape_json(json_t *j, const struct lg_opts *o)
{
    if (o->send_text)
        json_object_set_new(j, "send", json_string(o->send_text));
    if (o->find_text)
        json_object_set_new(j, "find", json_string(o->find_text));
    if (o->non_open) {
        json_t *a = json_array();
        for (int i = 0; i < o->non_open; i++)
            json_array_append_new(a, json_string(o->on_open[i]));
        json_object_set_new(j, "on_open", a);
    }
    return j;
}

static json_t *options_json(const struct lg_opts *o)
{
    json_t *urls = json_array(), *th = json_array();
    for (int i = 0; i < o->ntargets; i++)
        json_array_append_new(urls, json_string(o->targets[i].url));
    for (int i = 0; i < o->nthresholds; i++)
        json_array_append_new(th, json_string(o->thresholds[i].text));
    return shape_json(
        protocol_json(
            json_pack("{s:I, s:o, s:I, s:o, s:o, s:I, s:I, s:I, s:I, s:s?, s:I, s:f, s:I, s:o, s:b, s:b, s:I, "
                      "s:o, s:o, s:I, s:o}",
                      "clients", (json_int_t)o->clients, "urls", urls, "rounds", (json_int_t)o->rounds, "interval_ms",
                      ms(o->interval_ns), "deadline_ms", ms(o->deadline_ns), "emitters", (json_int_t)o->emitters,
                      "payload", (json_int_t)o->payload, "rooms", (json_int_t)o->rooms, "spectators",
                      (json_int_t)o->spectators, "room", o->room, "workers", (json_int_t)o->workers, "connect_rate",
                      o->connect_rate, "max_inflight", (json_int_t)o->max_inflight, "connect_timeout_ms",
                      ms(o->connect_timeout_ns), "echo", o->echo, "binary", o->binary, "sources",
                      (json_int_t)o->nsources, "thresholds", th, "hold_ms", ms(o->hold_ns), "churn",
                      (json_int_t)o->churn, "churn_gap_ms", ms(o->churn_gap_ns)),
            o),
        o);
}

/* How far the rounds fell behind their intended start times (see coord.c). */
static json_t *schedule_json(const struct lg_result *r)
{
    int64_t mean = r->rounds_run ? r->lateness_sum_ns / r->rounds_run : 0;
    return json_pack("{s:o, s:o, s:I, s:I, s:o, s:o}", "interval_ms", ms(r->opts->interval_ns), "late_tolerance_ms",
                     ms(r->late_tolerance_ns), "rounds", (json_int_t)r->rounds_run, "rounds_late",
                     (json_int_t)r->rounds_late, "lateness_max_ms", ms(r->lateness_max_ns), "lateness_mean_ms",
                     ms(mean));
}

static json_t *options_reconnect_json(const struct lg_opts *o)
{
    const struct lg_reconnect *c = &o->reconnect;
    return json_pack("{s:b, s:o, s:o, s:f, s:I}", "enabled", c->enabled, "delay_ms", ms(c->delay_ns), "delay_max_ms",
                     ms(c->delay_max_ns), "jitter", c->jitter, "attempts", (json_int_t)c->attempts);
}

/* --churn's counters of a round (or the totals): only with --churn, so a run without it keeps its old shape. */
static void churn_json(json_t *j, const struct lg_round *rd, const struct lg_opts *o)
{
    if (!o->churn)
        return;
    json_object_set_new(j, "churned", json_integer((json_int_t)rd->churned));
    json_object_set_new(j, "left", json_integer(rd->left));
    json_object_set_new(j, "rejoined", json_integer(rd->rejoined));
    json_object_set_new(j, "rejoin_failed", json_integer(rd->rejoin_failed));
}

static json_t *round_json(const struct lg_round *rd, uint32_t number, const struct lg_opts *o)
{
    json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "round", (json_int_t)number, "emitted",
                          (json_int_t)rd->emitted, "expected", (json_int_t)rd->expected, "received",
                          (json_int_t)rd->received, "late", (json_int_t)rd->late, "missing", (json_int_t)rd->missing,
                          "duplicate", (json_int_t)rd->duplicate, "reordered", (json_int_t)rd->reordered);
    json_object_set_new(j, "start_ms", ms(rd->start_ns));
    json_object_set_new(j, "duration_ms", ms(rd->duration_ns));
    json_object_set_new(j, "timed_out", json_boolean(rd->timed_out));
    json_object_set_new(j, "p50_ms", ms(rd->p50_ns));
    json_object_set_new(j, "p99_ms", ms(rd->p99_ns));
    json_object_set_new(j, "max_ms", ms(rd->max_ns));
    json_object_set_new(j, "lateness_ms", ms(rd->lateness_ns));
    json_object_set_new(j, "missed_while_away", json_integer((json_int_t)rd->missed));
    json_object_set_new(j, "emitter_gone", json_boolean(rd->emitter_gone));
    churn_json(j, rd, o);
    return j;
}

static json_t *totals_json(const struct lg_result *r)
{
    const struct lg_round *t = &r->total;
    json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}", "emitted", (json_int_t)t->emitted, "expected",
                          (json_int_t)t->expected, "received", (json_int_t)t->received, "late", (json_int_t)t->late,
                          "missing", (json_int_t)t->missing, "duplicate", (json_int_t)t->duplicate, "reordered",
                          (json_int_t)t->reordered, "delivery", delivery_ratio(r));
    json_object_set_new(j, "missed_while_away", json_integer((json_int_t)t->missed));
    json_object_set_new(j, "emitter_gone", json_integer(r->emitter_gone_rounds));
    churn_json(j, t, r->opts);
    return j;
}

/* A node table as {"name": count, ..., "other": n, "unknown": n} (other and unknown only when not 0). */
static json_t *nodes_json(const struct lg_nodes *t)
{
    json_t *nodes = json_object();
    for (int i = 0; i < t->n; i++)
        json_object_set_new(nodes, t->names[i], json_integer(t->counts[i]));
    if (t->other)
        json_object_set_new(nodes, "other", json_integer(t->other));
    if (t->unknown)
        json_object_set_new(nodes, "unknown", json_integer(t->unknown));
    return nodes;
}

/* --reconnect's top-level object (docs/loadgen-json.md). */
static json_t *reconnect_json(const struct lg_result *r)
{
    const struct lg_recon *c = &r->recon;
    json_t *nodes = nodes_json(&c->nodes), *eps = json_array(), *kinds = json_object();
    for (uint32_t i = 0; i < c->nepisodes; i++) {
        const struct lg_episode *e = &r->episodes[i];
        json_array_append_new(eps, json_pack("[o, o]", ms(e->lost_ns), e->back_ns < 0 ? json_null() : ms(e->back_ns)));
    }
    for (int k = 0; k < LG_ERR_COUNT; k++)
        if (c->fail_kinds[k])
            json_object_set_new(kinds, lg_err_name(k), json_integer(c->fail_kinds[k]));
    json_t *j = json_pack("{s:I, s:I, s:I, s:I, s:o, s:o}", "drops", (json_int_t)c->drops, "reconnected",
                          (json_int_t)c->reconnected, "failed_attempts", (json_int_t)c->failed_attempts, "never_back",
                          (json_int_t)c->never_back, "nodes", nodes, "away", hist_json(r->away));
    json_object_set_new(j, "failed_kinds", kinds);
    json_object_set_new(j, "episodes", eps);
    json_object_set_new(j, "episodes_dropped", json_integer(c->episodes_dropped));
    return j;
}

static json_t *nodes_errors_json(const struct lg_result *r, json_t **errors, json_t **status)
{
    json_t *nodes = nodes_json(&r->tally.nodes);
    *errors = json_object();
    for (int k = 0; k < LG_ERR_COUNT; k++)
        if (r->tally.err_counts[k])
            json_object_set_new(*errors, lg_err_name(k),
                                json_pack("{s:I, s:s}", "count", (json_int_t)r->tally.err_counts[k], "example",
                                          r->tally.err_example[k]));
    *status = json_object();
    for (int i = 0; i < r->tally.nstatus; i++) {
        char code[12];
        snprintf(code, sizeof code, "%d", r->tally.status_codes[i]);
        json_object_set_new(*status, code, json_integer(r->tally.status_counts[i]));
    }
    return nodes;
}

static json_t *self_json(const struct lg_result *r)
{
    json_t *workers = json_array();
    for (uint32_t i = 0; i < r->nworkers; i++) {
        const struct lg_worker_self *w = &r->workers[i];
        json_array_append_new(
            workers, json_pack("{s:I, s:f, s:f, s:f, s:o, s:o, s:I}", "clients", (json_int_t)w->clients, "cpu_user_s",
                               w->cpu_user_s, "cpu_sys_s", w->cpu_sys_s, "busy_ratio", w->busy_ratio, "lag_p99_ms",
                               ms(w->lag_p99_ns), "lag_max_ms", ms(w->lag_max_ns), "rss_kb", (json_int_t)w->rss_kb));
    }
    json_t *machine = r->machine.ok ? json_pack("{s:I, s:f, s:f}", "cores", (json_int_t)r->machine.cores, "busy_cores",
                                                r->machine.busy_cores, "steal_ratio", r->machine.steal_ratio)
                                    : json_null();
    return json_pack("{s:f, s:o, s:o}", "coordinator_cpu_s", r->coord_cpu_s, "workers", workers, "machine", machine);
}

/* How the run was spread (plan.h), and why. */
static json_t *plan_json(const struct lg_plan *p)
{
    json_t *dests = json_array();
    for (uint32_t i = 0; i < p->ndests; i++)
        json_array_append_new(dests, json_pack("{s:s, s:I, s:I}", "address", p->dests[i].name, "connections",
                                               (json_int_t)p->dests[i].conns, "per_source",
                                               (json_int_t)p->dests[i].per_source));
    json_t *j = json_pack("{s:I, s:b, s:I, s:I, s:I, s:I, s:I, s:I}", "workers", (json_int_t)p->workers, "workers_auto",
                          p->workers_auto, "workers_needed", (json_int_t)p->workers_needed, "descriptors_per_client",
                          (json_int_t)p->per_client, "fd_limit", (json_int_t)p->env.fd_limit, "fd_reserve",
                          (json_int_t)p->fd_reserve, "descriptors_per_worker", (json_int_t)p->fd_budget,
                          "clients_per_worker", (json_int_t)p->clients_per_worker);
    json_object_set_new(j, "sources", json_integer(p->sources));
    json_object_set_new(j, "sources_auto", json_boolean(p->sources_auto));
    json_object_set_new(j, "sources_needed", json_integer(p->sources_needed));
    json_object_set_new(j, "port_range", json_pack("[I, I]", (json_int_t)p->env.port_lo, (json_int_t)p->env.port_hi));
    json_object_set_new(j, "ports_per_source", json_integer(p->ports));
    json_object_set_new(j, "destinations", dests);
    json_object_set_new(j, "close_timeout_ms", ms(p->close_timeout_ns));
    json_object_set_new(j, "close_timeout_auto", json_boolean(p->close_auto));
    return j;
}

static json_t *verdict_json(const struct lg_result *r, json_t **thresholds)
{
    *thresholds = json_array();
    const struct lg_opts *o = r->opts;
    for (int i = 0; i < o->nthresholds; i++) {
        const struct lg_threshold *t = &o->thresholds[i];
        double a = r->threshold_actual[i];
        json_array_append_new(*thresholds, json_pack("{s:s, s:b, s:f}", "expr", t->text, "ok", r->threshold_ok[i],
                                                     "actual", t->stat == TH_STAT_RATIO ? a : a / 1e6));
    }
    json_t *reasons = json_array(), *warnings = json_array();
    for (int i = 0; i < r->nreasons; i++)
        json_array_append_new(reasons, json_string(r->reasons[i]));
    for (int i = 0; i < r->nwarnings; i++)
        json_array_append_new(warnings, json_string(r->warnings[i]));
    return json_pack("{s:b, s:i, s:o, s:o}", "pass", r->exit_code == 0, "exit_code", r->exit_code, "reasons", reasons,
                     "warnings", warnings);
}

/* --ack's histogram and counts: only with --ack, so other runs keep their shape. */
static void acks_json(json_t *doc, const struct lg_result *r)
{
    if (r->opts->sio_ack && r->ack) {
        const struct lg_acks *a = &r->acks;
        json_object_set_new(doc, "ack", hist_json(r->ack));
        json_object_set_new(doc, "acks",
                            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "expected", (json_int_t)a->expected, "received",
                                      (json_int_t)a->received, "late", (json_int_t)a->late, "missing",
                                      (json_int_t)a->missing, "duplicate", (json_int_t)a->duplicate, "unknown",
                                      (json_int_t)a->unknown));
    }
}

/* What made the numbers: the build (commit and library versions), the machine, the command line. */
static void provenance_json(json_t *doc, const struct lg_result *r)
{
    char libev[32];
    snprintf(libev, sizeof libev, "%d.%d", ev_version_major(), ev_version_minor());
    json_object_set_new(doc, "build",
                        json_pack("{s:s, s:s, s:s, s:s, s:s}", "commit", WSH_COMMIT, "loadgen", LG_VERSION, "openssl",
                                  OpenSSL_version(OPENSSL_VERSION), "libev", libev, "jansson", JANSSON_VERSION));
    struct utsname u;
    struct sysinfo si;
    if (uname(&u) < 0)
        memset(&u, 0, sizeof u);
    json_t *mem =
        sysinfo(&si) == 0 ? json_integer((json_int_t)((double)si.totalram * si.mem_unit / 1024)) : json_null();
    json_object_set_new(doc, "machine",
                        json_pack("{s:I, s:o, s:s, s:s, s:s}", "cores", (json_int_t)sysconf(_SC_NPROCESSORS_ONLN),
                                  "memory_kb", mem, "kernel", u.sysname, "kernel_release", u.release, "arch",
                                  u.machine));
    json_t *argv = json_array();
    for (int i = 0; i < r->argc && r->argv; i++)
        json_array_append_new(argv, json_string(r->argv[i]));
    json_object_set_new(doc, "command_line", argv);
}

static json_t *document(const struct lg_result *r)
{
    char when[40];
    time_t sec = (time_t)r->start_epoch;
    struct tm tm;
    gmtime_r(&sec, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *rounds = json_array(), *errors, *status, *thresholds;
    for (uint32_t i = 0; i < r->rounds_run; i++)
        json_array_append_new(rounds, round_json(&r->rounds[i], i + 1, r->opts));
    json_t *nodes = nodes_errors_json(r, &errors, &status);
    json_t *verdict = verdict_json(r, &thresholds);
    json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:o}", "schema", LG_JSON_SCHEMA, "version", r->version, "time", when,
                            "host", r->host, "options", options_json(r->opts));
    provenance_json(doc, r);
    json_object_set_new(json_object_get(doc, "options"), "reconnect", options_reconnect_json(r->opts));
    json_object_set_new(json_object_get(doc, "options"), "duration_ms", ms(r->opts->duration_ns));
    json_object_set_new(doc, "start_unix_ms", json_real(r->start_unix_ms));
    if (r->plan)
        json_object_set_new(doc, "plan", plan_json(r->plan));
    json_object_set_new(doc, "phases",
                        json_pack("{s:o, s:o, s:o, s:o, s:o}", "connect_ms", ms(r->connect_ns), "rounds_ms",
                                  ms(r->rounds_ns), "verify_ms", ms(r->verify_ns), "close_ms", ms(r->close_ns),
                                  "total_ms", ms(r->total_ns)));
    json_object_set_new(doc, "clients",
                        json_pack("{s:I, s:I, s:I, s:I, s:I}", "attempted", (json_int_t)r->attempted, "connected",
                                  (json_int_t)r->connected, "failed", (json_int_t)r->failed, "dropped",
                                  (json_int_t)r->dropped, "closed_clean", (json_int_t)r->closed_clean));
    if (r->opts->sio_polling) /* where the connect phase left each client: upgraded, or on polling */
        json_object_set_new(json_object_get(doc, "clients"), "transport",
                            json_pack("{s:I, s:I}", "upgraded", (json_int_t)r->tally.sio_upgraded, "polling",
                                      (json_int_t)r->tally.sio_polling));
    json_object_set_new(doc, "latency", hist_json(r->latency));
    json_object_set_new(doc, "service_time", hist_json(r->service));
    json_object_set_new(doc, "schedule", schedule_json(r));
    json_object_set_new(doc, "connect", hist_json(r->connect));
    json_object_set_new(doc, "handshake", hist_json(r->handshake));
    acks_json(doc, r);
    json_object_set_new(doc, "rounds", rounds);
    json_object_set_new(doc, "totals", totals_json(r));
    json_object_set_new(doc, "echoed", json_integer((json_int_t)r->echoed));
    json_object_set_new(doc, "foreign", json_integer((json_int_t)r->foreign));
    json_object_set_new(doc, "corrupt", json_integer((json_int_t)r->corrupt));
    if (r->opts->churn) /* over the whole run: left = rejoined + rejoin_failed + pending */
        json_object_set_new(doc, "churn",
                            json_pack("{s:I, s:I, s:I, s:I}", "left", (json_int_t)r->churn_left, "rejoined",
                                      (json_int_t)r->churn_rejoined, "rejoin_failed", (json_int_t)r->churn_failed,
                                      "pending", (json_int_t)r->churn_pending));
    if (r->opts->reconnect.enabled)
        json_object_set_new(doc, "reconnect", reconnect_json(r));
    json_object_set_new(doc, "nodes", nodes);
    json_object_set_new(doc, "errors", errors);
    json_object_set_new(doc, "http_status", status);
    json_object_set_new(doc, "self", self_json(r));
    json_object_set_new(doc, "thresholds", thresholds);
    json_object_set_new(doc, "interrupted", json_boolean(r->interrupted));
    json_object_set_new(doc, "verdict", verdict);
    return doc;
}

int lg_report_json_fp(FILE *fp, const struct lg_result *r)
{
    json_t *doc = document(r);
    if (!doc)
        return -1;
    int rc = json_dumpf(doc, fp, JSON_INDENT(2));
    json_decref(doc);
    return rc < 0 || fputc('\n', fp) == EOF ? -1 : 0;
}

int lg_report_json(const char *path, const struct lg_result *r, char *err, size_t errlen)
{
    json_t *doc = document(r);
    if (!doc) {
        snprintf(err, errlen, "--out: cannot build the JSON document (out of memory)");
        return -1;
    }
    int rc = 0;
    if (!strcmp(path, "-")) {
        rc = json_dumpf(doc, stdout, JSON_INDENT(2)) < 0 ? -1 : 0;
        fputc('\n', stdout);
    } else {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        if (json_dump_file(doc, tmp, JSON_INDENT(2)) < 0 || rename(tmp, path) < 0) {
            snprintf(err, errlen, "--out %s: cannot write it", path);
            unlink(tmp);
            rc = -1;
        }
    }
    json_decref(doc);
    return rc;
}
