/* loadgen's verdict (connect failures, delivery, thresholds, warnings), the JSON document read back with jansson,
 * and duration formatting. Results are built by hand, so each rule is tested on its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/hist.h"
#include "loadgen/report.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ROUNDS 5
#define MS     INT64_C(1000000)

static struct lg_opts opts;
static struct lg_round rounds[ROUNDS];
static struct lg_result res;

/* 100 clients, all connected, 5 rounds of 99 deliveries each at 1..99 ms, every one received. */
static int setup(void **state)
{
    (void)state;
    memset(&opts, 0, sizeof opts);
    opts.clients = 100;
    opts.rounds = ROUNDS;
    opts.emitters = 1;
    opts.payload = 100;
    opts.workers = 1;
    opts.rooms = 1;
    opts.ntargets = 1;
    snprintf(opts.targets[0].url, sizeof opts.targets[0].url, "ws://127.0.0.1:9001/ws");
    memset(&res, 0, sizeof res);
    memset(rounds, 0, sizeof rounds);
    res.opts = &opts;
    snprintf(res.version, sizeof res.version, "test");
    res.attempted = res.connected = res.closed_clean = 100;
    res.connect = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    res.handshake = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    res.latency = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    res.service = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    res.rounds = rounds;
    res.rounds_run = ROUNDS;
    for (int i = 0; i < ROUNDS; i++) {
        rounds[i] = (struct lg_round){.emitted = 1, .expected = 99, .received = 99};
        for (int v = 1; v <= 99; v++)
            hist_record(res.latency, v * MS);
    }
    for (int i = 0; i < 100; i++) {
        hist_record(res.connect, 2 * MS);
        hist_record(res.handshake, 3 * MS);
    }
    res.total = (struct lg_round){.emitted = ROUNDS, .expected = 99 * ROUNDS, .received = 99 * ROUNDS};
    res.nworkers = 1;
    res.workers[0] = (struct lg_worker_self){.clients = 100, .busy_ratio = 0.1, .lag_p99_ns = MS};
    res.tally.nodes.n = 2;
    snprintf(res.tally.nodes.names[0], sizeof res.tally.nodes.names[0], "n1");
    snprintf(res.tally.nodes.names[1], sizeof res.tally.nodes.names[1], "n2");
    res.tally.nodes.counts[0] = res.tally.nodes.counts[1] = 50;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hist_free(res.connect);
    hist_free(res.handshake);
    hist_free(res.latency);
    hist_free(res.service);
    return 0;
}

static bool has_reason(const char *text)
{
    for (int i = 0; i < res.nreasons; i++)
        if (strstr(res.reasons[i], text))
            return true;
    return false;
}

static void add_threshold(const char *metric_text, enum lg_th_metric m, enum lg_th_stat st, double pct,
                          enum lg_th_op op, double value)
{
    struct lg_threshold *t = &opts.thresholds[opts.nthresholds++];
    *t = (struct lg_threshold){.metric = m, .stat = st, .pct = pct, .op = op, .value = value};
    snprintf(t->text, sizeof t->text, "%s", metric_text);
    opts.errors_threshold |= m == TH_ERRORS;
    opts.delivery_threshold |= m == TH_DELIVERY;
}

static void miss(int round, uint64_t n)
{
    rounds[round - 1].received -= n;
    rounds[round - 1].missing += n;
    res.total.received -= n;
    res.total.missing += n;
}

static void test_pass(void **state)
{
    (void)state;
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 0);
    assert_int_equal(res.nreasons, 0);
    assert_int_equal(res.nwarnings, 0);
}

static void test_missing_names_the_round(void **state)
{
    (void)state;
    miss(3, 12);
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 1);
    assert_true(has_reason("12 lost (missing"));
    assert_true(has_reason("round 3: 12 of 99"));
}

static void test_many_rounds_are_abridged(void **state)
{
    (void)state;
    for (int r = 1; r <= ROUNDS; r++)
        miss(r, 1);
    lg_verdict(&res);
    assert_true(has_reason("and 2 more round(s)"));
}

static void test_delivery_threshold(void **state)
{
    (void)state;
    add_threshold("delivery>=99%", TH_DELIVERY, TH_STAT_RATIO, 0, TH_GE, 0.99);
    miss(2, 2); /* 2 of 495: 0.4% */
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 0);
    assert_true(res.threshold_ok[0]);
    miss(4, 8); /* 10 of 495: 2% */
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 1);
    assert_false(res.threshold_ok[0]);
    assert_true(has_reason("threshold delivery>=99% failed"));
}

static void test_duplicates_fail_even_with_a_delivery_threshold(void **state)
{
    (void)state;
    add_threshold("delivery>=50%", TH_DELIVERY, TH_STAT_RATIO, 0, TH_GE, 0.5);
    rounds[1].duplicate = 3;
    res.total.duplicate = 3;
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 1);
    assert_true(has_reason("3 duplicate"));
    res.total.duplicate = rounds[1].duplicate = 0;
    rounds[2].reordered = res.total.reordered = 1;
    lg_verdict(&res);
    assert_true(has_reason("out of order"));
    res.total.reordered = rounds[2].reordered = 0;
    res.echoed = 4;
    lg_verdict(&res);
    assert_true(has_reason("--echo"));
    res.echoed = 0;
    res.corrupt = 1;
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 1);
    assert_true(has_reason("corrupt"));
}

static void test_connect_failures(void **state)
{
    (void)state;
    res.connected = 95;
    res.failed = 5;
    res.tally.err_counts[LG_ERR_REFUSED] = 3;
    res.tally.err_counts[LG_ERR_EMFILE] = 2;
    snprintf(res.tally.err_example[LG_ERR_REFUSED], sizeof res.tally.err_example[0],
             "connect to x: Connection refused");
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 3);
    assert_true(has_reason("5 of 100 clients could not connect: refused 3, emfile 2"));
    assert_true(has_reason("Connection refused"));
    assert_true(has_reason("ulimit -n"));
    assert_true(has_reason("--workers"));
    /* an errors threshold of 10% tolerates 5% */
    add_threshold("errors<10%", TH_ERRORS, TH_STAT_RATIO, 0, TH_LT, 0.10);
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 0);
    assert_true(res.threshold_ok[0]);
}

static void test_nobody_connected(void **state)
{
    (void)state;
    add_threshold("errors<=100%", TH_ERRORS, TH_STAT_RATIO, 0, TH_LE, 1.0);
    res.connected = 0;
    res.failed = 100;
    res.tally.err_counts[LG_ERR_EADDRNOTAVAIL] = 60;
    res.tally.err_counts[LG_ERR_TLS] = 40;
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 3);
    assert_true(has_reason("--source"));
    assert_true(has_reason("--cacert"));
}

static void test_dropped_clients(void **state)
{
    (void)state;
    res.dropped = 2;
    res.tally.err_counts[LG_ERR_DROPPED] = 2;
    snprintf(res.tally.err_example[LG_ERR_DROPPED], sizeof res.tally.err_example[0], "client 7: connection reset");
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 1);
    assert_true(has_reason("2 client(s) lost"));
    assert_true(has_reason("connection reset"));
}

/* Both close kinds fail the run (and count in the errors share), told apart, with the remedy for the timeout. */
static void test_close_errors(void **state)
{
    (void)state;
    res.closed_clean = 90;
    res.tally.err_counts[LG_ERR_CLOSE] = 3;
    res.tally.err_counts[LG_ERR_CLOSE_TIMEOUT] = 7;
    snprintf(res.tally.err_example[LG_ERR_CLOSE_TIMEOUT], sizeof res.tally.err_example[0],
             "client 7: no answer to our close before the close phase's 2.1s ran out");
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 1);
    assert_true(has_reason("10 closing handshake(s) failed (7 out of time)"));
    assert_true(has_reason("e.g. close_timeout: client 7: no answer"));
    assert_true(has_reason("hint: close_timeout"));
    assert_true(has_reason("--close-timeout"));
    add_threshold("errors<10%", TH_ERRORS, TH_STAT_RATIO, 0, TH_LT, 0.1);
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 1); /* 10 of 100 is not under 10% */
    res.tally.err_counts[LG_ERR_CLOSE] = 2;
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 0);
    assert_string_equal(lg_err_name(LG_ERR_CLOSE_TIMEOUT), "close_timeout");
}

static void test_latency_thresholds(void **state)
{
    (void)state;
    /* latency: 1..99 ms, 5 times each: p99 = 99 ms (within 0.1%), max 99 ms, mean 50 ms */
    add_threshold("p99<100ms", TH_LATENCY, TH_STAT_PCT, 99, TH_LT, 100e6);
    add_threshold("p99<98ms", TH_LATENCY, TH_STAT_PCT, 99, TH_LT, 98e6);
    add_threshold("mean<=51ms", TH_LATENCY, TH_STAT_MEAN, 0, TH_LE, 51e6);
    add_threshold("min>=2ms", TH_LATENCY, TH_STAT_MIN, 0, TH_GE, 2e6);
    add_threshold("connect.max<3ms", TH_CONNECT, TH_STAT_MAX, 0, TH_LT, 3e6);
    add_threshold("handshake.p50>4ms", TH_HANDSHAKE, TH_STAT_PCT, 50, TH_GT, 4e6);
    lg_verdict(&res);
    bool want[] = {true, false, true, false, true, false};
    for (int i = 0; i < 6; i++)
        if (res.threshold_ok[i] != want[i])
            fail_msg("%s: ok=%d actual=%f", opts.thresholds[i].text, res.threshold_ok[i], res.threshold_actual[i]);
    assert_int_equal(res.exit_code, 1);
    assert_true(has_reason("threshold p99<98ms failed: actual 99"));
    assert_true(res.threshold_actual[0] > 98.9e6 && res.threshold_actual[0] < 99.2e6);
}

static void test_empty_histogram_fails_a_latency_threshold(void **state)
{
    (void)state;
    hist_reset(res.latency);
    add_threshold("p99<1s", TH_LATENCY, TH_STAT_PCT, 99, TH_LT, 1e9);
    lg_verdict(&res);
    assert_false(res.threshold_ok[0]);
    assert_true(has_reason("no samples"));
}

static void test_warnings(void **state)
{
    (void)state;
    res.workers[0].busy_ratio = 0.93;
    res.closed_clean = 97;
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 0); /* warnings never fail a run */
    assert_int_equal(res.nwarnings, 2);
    assert_non_null(strstr(res.warnings[0], "loadgen may be the bottleneck: worker 0 used 93%"));
    assert_non_null(strstr(res.warnings[1], "3 of 100"));
}

/* A late loop in an idle worker is the machine's contention (issue 14: "3% of a core" was blamed on loadgen). */
static void test_late_loop_in_an_idle_worker_blames_the_machine(void **state)
{
    (void)state;
    res.workers[0].busy_ratio = 0.03;
    res.workers[0].lag_p99_ns = 371 * MS;
    res.machine = (struct hostcpu_use){.busy_cores = 1.94, .steal_ratio = 0.021, .cores = 2, .ok = true};
    lg_verdict(&res);
    assert_int_equal(res.nwarnings, 1);
    assert_null(strstr(res.warnings[0], "bottleneck"));
    assert_non_null(strstr(res.warnings[0], "the machine was contended, not loadgen: worker 0's loop ran late "
                                            "(lag p99 371.0ms) while it used 3% of a core; all processes kept 1.9 "
                                            "of 2 cores busy, 2.1% stolen"));
    res.machine.ok = false; /* no /proc/stat: still not loadgen's fault */
    lg_verdict(&res);
    assert_non_null(strstr(res.warnings[0], "while it used 3% of a core; other processes held the CPU"));
}

/* A schedule that fell behind warns with its numbers, and only past the tolerance (coord.c counts rounds_late). */
static void test_schedule_warning(void **state)
{
    (void)state;
    opts.interval_ns = MS;
    res.late_tolerance_ns = MS;
    lg_verdict(&res);
    assert_int_equal(res.nwarnings, 0);
    res.rounds_late = 4;
    res.lateness_max_ns = 9200 * 1000;
    res.lateness_sum_ns = 20 * MS;
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 0); /* latency already counts the lateness: a warning, not a failure */
    assert_int_equal(res.nwarnings, 1);
    assert_string_equal(res.warnings[0], "schedule fell behind: 4 of 5 rounds started late, by up to 9.20ms (mean "
                                         "4.00ms, interval 1.00ms): the server or loadgen could not keep up; latency "
                                         "is measured from the intended send times");
}

static void test_err_names(void **state)
{
    (void)state;
    for (int a = 0; a < LG_ERR_COUNT; a++) {
        assert_non_null(lg_err_name(a));
        for (int b = 0; b < a; b++)
            assert_string_not_equal(lg_err_name(a), lg_err_name(b));
    }
    assert_string_equal(lg_err_name(LG_ERR_REFUSED), "refused");
    assert_string_equal(lg_err_name(LG_ERR_EMFILE), "emfile");
}

static void test_json_document(void **state)
{
    (void)state;
    char path[] = "/tmp/wsh-report-XXXXXX", err[200];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    miss(2, 1);
    res.tally.err_counts[LG_ERR_HTTP_STATUS] = 4;
    snprintf(res.tally.err_example[LG_ERR_HTTP_STATUS], sizeof res.tally.err_example[0], "x answered 503");
    res.tally.nstatus = 1;
    res.tally.status_codes[0] = 503;
    res.tally.status_counts[0] = 4;
    res.failed = 4;
    res.connected = 96;
    add_threshold("errors<5%", TH_ERRORS, TH_STAT_RATIO, 0, TH_LT, 0.05);
    add_threshold("p99<1s", TH_LATENCY, TH_STAT_PCT, 99, TH_LT, 1e9);
    lg_verdict(&res);
    assert_int_equal(lg_report_json(path, &res, err, sizeof err), 0);
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    unlink(path);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "schema")), LG_JSON_SCHEMA);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "clients"), "connected")), 96);
    assert_int_equal(json_array_size(json_object_get(doc, "rounds")), ROUNDS);
    json_t *r2 = json_array_get(json_object_get(doc, "rounds"), 1);
    assert_int_equal(json_integer_value(json_object_get(r2, "round")), 2);
    assert_int_equal(json_integer_value(json_object_get(r2, "missing")), 1);
    json_t *totals = json_object_get(doc, "totals");
    assert_int_equal(json_integer_value(json_object_get(totals, "received")), 99 * ROUNDS - 1);
    assert_true(json_real_value(json_object_get(totals, "delivery")) < 1.0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "nodes"), "n2")), 50);
    json_t *e = json_object_get(json_object_get(doc, "errors"), "http_status");
    assert_int_equal(json_integer_value(json_object_get(e, "count")), 4);
    assert_string_equal(json_string_value(json_object_get(e, "example")), "x answered 503");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "http_status"), "503")), 4);
    json_t *lat = json_object_get(doc, "latency");
    assert_int_equal(json_integer_value(json_object_get(lat, "count")), 99 * ROUNDS);
    assert_true(json_real_value(json_object_get(lat, "max_ms")) > 98.9 &&
                json_real_value(json_object_get(lat, "max_ms")) < 99.1);
    json_t *th = json_object_get(doc, "thresholds");
    assert_int_equal(json_array_size(th), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(th, 0), "expr")), "errors<5%");
    assert_true(json_is_true(json_object_get(json_array_get(th, 0), "ok")));
    json_t *v = json_object_get(doc, "verdict");
    assert_true(json_is_false(json_object_get(v, "pass")));
    assert_int_equal(json_integer_value(json_object_get(v, "exit_code")), 1);
    assert_true(json_array_size(json_object_get(v, "reasons")) >= 1);
    assert_int_equal(json_array_size(json_object_get(json_object_get(doc, "self"), "workers")), 1);
    json_decref(doc);
    assert_int_equal(lg_report_json("/nonexistent-dir/x.json", &res, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent-dir/x.json"));
}

/* The report as lg_report_json writes it, read back (never NULL). */
static json_t *report_doc(void)
{
    char path[] = "/tmp/wsh-report-XXXXXX", err[200];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(lg_report_json(path, &res, err, sizeof err), 0);
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    unlink(path);
    assert_non_null(doc);
    return doc;
}

/* The cause first: lost clients come before what their loss did to delivery. */
static void test_lost_clients_come_first(void **state)
{
    (void)state;
    res.dropped = 10;
    res.tally.err_counts[LG_ERR_DROPPED] = 10;
    snprintf(res.tally.err_example[LG_ERR_DROPPED], sizeof res.tally.err_example[0], "client 7: connection closed");
    miss(3, 5);
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 1);
    assert_true(res.nreasons >= 2);
    assert_string_equal(res.reasons[0], "10 client(s) lost after connecting (dropped: client 7: connection closed)");
    assert_true(has_reason("5 lost (missing"));
    assert_false(has_reason("e.g. dropped")); /* named once, in the first reason */
}

/* missed_while_away never fails by itself; a missed threshold bounds its share of what was due. */
static void test_missed_threshold(void **state)
{
    (void)state;
    res.total.missed = 55; /* of 495 + 55 */
    rounds[4].missed = 55;
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 0);
    add_threshold("missed<5%", TH_MISSED, TH_STAT_RATIO, 0, TH_LT, 0.05);
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 1);
    assert_true(has_reason("threshold missed<5% failed: actual 10.000%"));
    opts.thresholds[0].value = 0.2;
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 0);
    assert_true(res.threshold_ok[0] && res.threshold_actual[0] > 0.0999 && res.threshold_actual[0] < 0.1001);
}

/* --reconnect: drops that came back are no failure, clients never back are; the reconnect object's keys. */
static void test_reconnect_verdict_and_json(void **state)
{
    (void)state;
    struct lg_episode eps[2] = {{.lost_ns = 1500 * MS, .back_ns = 2750 * MS}, {.lost_ns = 1600 * MS, .back_ns = -1}};
    opts.reconnect =
        (struct lg_reconnect){.enabled = true, .delay_ns = 1000 * MS, .delay_max_ns = 5000 * MS, .jitter = 0.5};
    res.away = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    hist_record(res.away, 1250 * MS);
    res.episodes = eps;
    res.dropped = 2;
    res.tally.err_counts[LG_ERR_DROPPED] = 3;
    snprintf(res.tally.err_example[LG_ERR_DROPPED], sizeof res.tally.err_example[0], "client 7: connection closed");
    res.recon = (struct lg_recon){.drops = 3, .reconnected = 2, .failed_attempts = 4, .never_back = 0, .nepisodes = 2};
    res.recon.fail_kinds[LG_ERR_REFUSED] = 4;
    res.recon.nodes.n = 1;
    snprintf(res.recon.nodes.names[0], sizeof res.recon.nodes.names[0], "n2");
    res.recon.nodes.counts[0] = 2;
    rounds[2].emitter_gone = true;
    res.emitter_gone_rounds = 1;
    res.start_unix_ms = 1795357569331.25;
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 0); /* every drop came back */
    res.recon.never_back = 1;
    lg_verdict(&res);
    assert_int_equal(res.exit_code, 1);
    assert_string_equal(res.reasons[0], "1 client(s) lost after connecting never came back (3 losses, 2 reconnected) "
                                        "(dropped: client 7: connection closed)");
    json_t *doc = report_doc();
    assert_true(json_real_value(json_object_get(doc, "start_unix_ms")) == 1795357569331.25);
    json_t *o = json_object_get(json_object_get(doc, "options"), "reconnect");
    assert_true(json_is_true(json_object_get(o, "enabled")));
    assert_true(json_real_value(json_object_get(o, "delay_ms")) == 1000 &&
                json_real_value(json_object_get(o, "delay_max_ms")) == 5000);
    assert_true(json_real_value(json_object_get(o, "jitter")) == 0.5);
    assert_int_equal(json_integer_value(json_object_get(o, "attempts")), 0);
    json_t *rc = json_object_get(doc, "reconnect");
    assert_int_equal(json_integer_value(json_object_get(rc, "drops")), 3);
    assert_int_equal(json_integer_value(json_object_get(rc, "reconnected")), 2);
    assert_int_equal(json_integer_value(json_object_get(rc, "failed_attempts")), 4);
    assert_int_equal(json_integer_value(json_object_get(rc, "never_back")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(rc, "nodes"), "n2")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(rc, "failed_kinds"), "refused")), 4);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(rc, "away"), "count")), 1);
    json_t *ep = json_object_get(rc, "episodes");
    assert_int_equal(json_array_size(ep), 2);
    assert_true(json_real_value(json_array_get(json_array_get(ep, 0), 0)) == 1500);
    assert_true(json_real_value(json_array_get(json_array_get(ep, 0), 1)) == 2750);
    assert_true(json_is_null(json_array_get(json_array_get(ep, 1), 1)));
    assert_int_equal(json_integer_value(json_object_get(rc, "episodes_dropped")), 0);
    json_t *r3 = json_array_get(json_object_get(doc, "rounds"), 2);
    assert_true(json_is_true(json_object_get(r3, "emitter_gone")));
    assert_int_equal(json_integer_value(json_object_get(r3, "missed_while_away")), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "totals"), "emitter_gone")), 1);
    json_decref(doc);
    hist_free(res.away);
    res.away = NULL;
    res.episodes = NULL;
}

static void test_human_summary(void **state)
{
    (void)state;
    miss(3, 5);
    lg_verdict(&res);
    char text[8192] = "";
    FILE *fp = fmemopen(text, sizeof text - 1, "w");
    lg_report_human(fp, &res);
    fclose(fp);
    assert_non_null(strstr(text, "100/100"));
    assert_non_null(strstr(text, "n1 50 n2 50"));
    assert_non_null(strstr(text, "490/495 delivered, 5 lost"));
    assert_non_null(strstr(text, "verdict   FAIL (exit 1)"));
    assert_non_null(strstr(text, "round 3: 5 of 99"));
}

/* Every threshold listed with its outcome, passing ones too (k6's check and cross), an empty one as "no samples". */
static void test_human_lists_every_threshold(void **state)
{
    (void)state;
    add_threshold("p99<100ms", TH_LATENCY, TH_STAT_PCT, 99, TH_LT, 100e6);
    add_threshold("errors<1%", TH_ERRORS, TH_STAT_RATIO, 0, TH_LT, 0.01);
    add_threshold("ack.p99<1s", TH_ACK, TH_STAT_PCT, 99, TH_LT, 1e9);
    res.ack = hist_new(HIST_NS_LOWEST, HIST_NS_HIGHEST, HIST_NS_DIGITS);
    lg_verdict(&res);
    char text[8192] = "";
    FILE *fp = fmemopen(text, sizeof text - 1, "w");
    lg_report_human(fp, &res);
    fclose(fp);
    hist_free(res.ack);
    assert_non_null(strstr(text, "threshold \u2713 p99<100ms                actual 99"));
    assert_non_null(strstr(text, "\n          \u2713 errors<1%                actual 0.000%\n"));
    assert_non_null(strstr(text, "\n          \u2717 ack.p99<1s               no samples\n"));
    assert_true(strstr(text, "threshold ") < strstr(text, "verdict   FAIL"));
}

/* JUnit: a testcase per check and threshold, each failing with its own reasons, the text escaped. */
static void test_junit(void **state)
{
    (void)state;
    miss(2, 3);
    add_threshold("p99<1ms", TH_LATENCY, TH_STAT_PCT, 99, TH_LT, 1e6);
    add_threshold("p99<1s", TH_LATENCY, TH_STAT_PCT, 99, TH_LT, 1e9);
    lg_verdict(&res);
    snprintf(res.reasons[res.nreasons++], sizeof res.reasons[0], "interrupted before the end of the run");
    char text[8192] = "";
    FILE *fp = fmemopen(text, sizeof text - 1, "w");
    assert_int_equal(lg_report_junit(fp, &res), 0);
    fclose(fp);
    assert_non_null(strstr(text, "<testsuite name=\"loadgen ws://127.0.0.1:9001/ws\" tests=\"5\" failures=\"3\""));
    assert_non_null(strstr(text, "<testcase classname=\"loadgen\" name=\"connect\"/>"));
    assert_non_null(strstr(text, "name=\"delivery\">\n      <failure message=\"3 lost"));
    assert_non_null(
        strstr(text, "name=\"threshold p99&lt;1ms\">\n      <failure message=\"threshold p99&lt;1ms failed"));
    assert_non_null(strstr(text, "name=\"threshold p99&lt;1s\"/>"));
    assert_non_null(strstr(text, "name=\"run\">\n      <failure message=\"interrupted before the end"));
    assert_null(strstr(text, "p99<1"));
}

static void test_format_duration(void **state)
{
    (void)state;
    static const struct {
        int64_t ns;
        const char *text;
    } cases[] = {{0, "0ns"},           {850, "850ns"},       {12345, "12.3us"},     {1250000, "1.25ms"},
                 {99400000, "99.4ms"}, {123456789, "123ms"}, {1520000000, "1.52s"}, {250000000000, "250s"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[32];
        lg_format_duration(cases[i].ns, out, sizeof out);
        assert_string_equal(out, cases[i].text);
    }
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_pass),
        T(test_missing_names_the_round),
        T(test_many_rounds_are_abridged),
        T(test_delivery_threshold),
        T(test_duplicates_fail_even_with_a_delivery_threshold),
        T(test_connect_failures),
        T(test_nobody_connected),
        T(test_dropped_clients),
        T(test_close_errors),
        T(test_latency_thresholds),
        T(test_empty_histogram_fails_a_latency_threshold),
        T(test_warnings),
        T(test_late_loop_in_an_idle_worker_blames_the_machine),
        T(test_schedule_warning),
        T(test_err_names),
        T(test_json_document),
        T(test_lost_clients_come_first),
        T(test_missed_threshold),
        T(test_reconnect_verdict_and_json),
        T(test_human_summary),
        T(test_human_lists_every_threshold),
        T(test_junit),
        T(test_format_duration),
    };
    return cmocka_run_group_tests_name("report", tests, NULL, NULL);
}
