/* loadgen's command line: defaults, strict numbers, durations, ratios, thresholds, source ranges, URLs, request
 * targets, rooms and the spectators topology, churn, headers, and one clear error line for every mistake. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "loadgen/opts.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define URL "ws://127.0.0.1:9001/ws"

/* Parse a NULL-terminated argument list (argv[0] is added). */
static enum lg_parse_result parse(struct lg_opts *o, char *err, const char *const *args)
{
    char *argv[64] = {"loadgen"};
    int argc = 1;
    while (args[argc - 1])
        argv[argc] = (char *)args[argc - 1], argc++;
    err[0] = '\0';
    return lg_opts_parse(o, argc, argv, err, 256);
}

#define PARSE(o, err, ...) parse(o, err, (const char *const[]){__VA_ARGS__, NULL})

static void expect_error(const char *contains, const char *const *args)
{
    struct lg_opts o;
    char err[256];
    enum lg_parse_result r = parse(&o, err, args);
    lg_opts_free(&o);
    if (r != LG_PARSE_ERROR || !strstr(err, contains) || strchr(err, '\n'))
        fail_msg("%s ...: result %d, error '%s', expected one line containing '%s'", args[0], r, err, contains);
}
#define EXPECT_ERROR(contains, ...) expect_error(contains, (const char *const[]){__VA_ARGS__, NULL})

static void test_defaults(void **state)
{
    (void)state;
    struct lg_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, URL), LG_PARSE_OK);
    assert_int_equal(o.clients, 100);
    assert_int_equal(o.rounds, 10);
    assert_int_equal(o.emitters, 1);
    assert_int_equal(o.payload, 100);
    assert_int_equal(o.workers, 0); /* auto: the plan decides (1 for a run that fits in one process) */
    assert_true(o.sources_auto && o.nsources == 0);
    assert_true(o.close_timeout_auto && o.close_timeout_ns == 2000000000 && o.close_phase_ns == 2000000000);
    assert_true(o.progress_ns == 5000000000);
    assert_int_equal(o.rooms, 1);
    assert_int_equal(o.max_inflight, 256);
    assert_true(o.interval_ns == 500000000 && o.deadline_ns == 5000000000 && o.connect_timeout_ns == 10000000000);
    assert_string_equal(o.node_header, "X-Node-Id");
    assert_string_equal(o.room_param, "room");
    assert_null(o.room);
    assert_int_equal(o.churn, 0);
    assert_true(o.churn_gap_ns == 100000000);
    assert_int_equal(o.ntargets, 1);
    assert_false(o.targets[0].tls);
    assert_string_equal(o.targets[0].path, "/ws");
    assert_string_equal(o.targets[0].host_header, "127.0.0.1:9001");
    lg_opts_free(&o);
}

static void test_all_options(void **state)
{
    (void)state;
    struct lg_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "-c", "5000", "--connect-rate", "2500.5", "--max-inflight", "64",
                           "--connect-timeout", "3s", "-r", "0", "-i", "0", "--deadline", "250ms", "-e", "3", "-s",
                           "4096", "--binary", "--echo", "--room", "lobby", "--rooms", "7", "--room-param", "channel",
                           "--node-header", "X-Srv", "--cookie", "SRV", "-w", "4", "--close-timeout", "1.5s", "--hold",
                           "2m", "-o", "r.json", "--hlog", "r.hlog", "-q", "-t", "p99<50ms", "-t", "errors<1%",
                           "--source", "127.0.0.2-127.0.0.4", "-H", "Origin: http://x", "--insecure", "--churn", "40",
                           "--churn-gap", "2.5s", URL, "wss://[::1]/a?b=c"),
                     LG_PARSE_OK);
    assert_int_equal(o.clients, 5000);
    assert_true(o.connect_rate > 2500.4 && o.connect_rate < 2500.6);
    assert_int_equal(o.max_inflight, 64);
    assert_true(o.connect_timeout_ns == 3000000000 && o.interval_ns == 0 && o.deadline_ns == 250000000);
    assert_int_equal(o.rounds, 0);
    assert_int_equal(o.emitters, 3);
    assert_int_equal(o.payload, 4096);
    assert_true(o.binary && o.echo && o.quiet && o.insecure);
    assert_string_equal(o.room, "lobby");
    assert_int_equal(o.rooms, 7);
    assert_string_equal(o.room_param, "channel");
    assert_string_equal(o.node_header, "X-Srv");
    assert_string_equal(o.cookie, "SRV");
    assert_int_equal(o.workers, 4);
    assert_true(o.close_timeout_ns == 1500000000 && o.hold_ns == 120000000000);
    assert_true(!o.close_timeout_auto && o.close_phase_ns == 1500000000 && !o.sources_auto);
    assert_true(o.churn == 40 && o.churn_gap_ns == 2500000000);
    assert_string_equal(o.out_json, "r.json");
    assert_string_equal(o.hlog, "r.hlog");
    assert_int_equal(o.nthresholds, 2);
    assert_true(o.errors_threshold && !o.delivery_threshold);
    assert_int_equal(o.nsources, 3);
    assert_int_equal(o.nheaders, 1);
    assert_int_equal(o.ntargets, 2);
    assert_true(o.targets[1].tls);
    assert_string_equal(o.targets[1].host, "::1");
    assert_string_equal(o.targets[1].host_header, "[::1]");
    assert_string_equal(o.targets[1].port, "443");
    assert_string_equal(o.targets[1].path, "/a?b=c");
    lg_opts_free(&o);
    lg_opts_free(&o); /* twice is harmless */
}

/* --workers, --source and --close-timeout take auto (the default) or a value; the last one given wins. */
static void test_auto_values(void **state)
{
    (void)state;
    struct lg_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "-w", "3", "--workers", "auto", "--close-timeout", "5s", "--close-timeout", "auto",
                           "--source", "127.0.0.2-127.0.0.4", "--source", "auto", URL),
                     LG_PARSE_OK);
    assert_true(o.workers == 0 && o.close_timeout_auto && o.close_timeout_ns == 2000000000);
    assert_true(o.sources_auto && o.nsources == 0 && !o.sources);
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "-c", "200", "-w", "auto", "-w", "128", "--source", "auto", "--source",
                           "127.0.0.2,127.0.0.3", "--source", "127.0.0.9", URL),
                     LG_PARSE_OK);
    assert_int_equal(o.workers, 128);
    assert_true(!o.sources_auto && o.nsources == 3); /* lists add up, as before */
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "--source", "127.0.0.2", "--source", "none", URL), LG_PARSE_OK);
    assert_true(!o.sources_auto && o.nsources == 0);
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "--progress", "0", URL), LG_PARSE_OK);
    assert_true(o.progress_ns == 0);
    lg_opts_free(&o);
}

static void test_numbers_are_strict(void **state)
{
    (void)state;
    EXPECT_ERROR("--clients", "-c", "0", URL);
    EXPECT_ERROR("--clients", "-c", "abc", URL);
    EXPECT_ERROR("--clients", "-c", "10x", URL);
    EXPECT_ERROR("--clients", "-c", "-5", URL);
    EXPECT_ERROR("--clients", "-c", "+5", URL);
    EXPECT_ERROR("--clients", "-c", "", URL);
    EXPECT_ERROR("--clients", "-c", "10000001", URL);
    EXPECT_ERROR("--clients", "-c", "99999999999999999999999", URL);
    EXPECT_ERROR("--rounds", "-r", "1.5", URL);
    EXPECT_ERROR("--workers", "-w", "0", URL);
    EXPECT_ERROR("--workers", "-w", "129", URL);
    EXPECT_ERROR("expected auto or a whole number from 1 to 128, got 'many'", "-w", "many", URL);
    EXPECT_ERROR("expected auto or a whole number", "--workers", "Auto", URL);
    EXPECT_ERROR("--close-timeout", "--close-timeout", "0", URL);
    EXPECT_ERROR("--close-timeout", "--close-timeout", "soon", URL);
    EXPECT_ERROR("(or auto, none)", "--source", "automatic", URL);
    EXPECT_ERROR("--progress", "--progress", "5", URL);
    EXPECT_ERROR("--progress", "--progress", "-1s", URL);
    EXPECT_ERROR("--max-inflight", "--max-inflight", "0", URL);
    EXPECT_ERROR("--rooms", "--rooms", "0", URL);
    EXPECT_ERROR("--payload", "-s", "86", URL);
    EXPECT_ERROR("--payload", "-s", "16777217", URL);
    EXPECT_ERROR("--connect-rate", "--connect-rate", "-1", URL);
    EXPECT_ERROR("--connect-rate", "--connect-rate", "fast", URL);
    EXPECT_ERROR("--emitters", "-c", "3", "-e", "4", URL);
    EXPECT_ERROR("--workers", "-c", "3", "-w", "4", URL);
    EXPECT_ERROR("--rooms", "-c", "3", "--rooms", "4", URL);
    EXPECT_ERROR("--deadline", "--deadline", "0", URL);
    EXPECT_ERROR("--interval", "-i", "5", URL);
    EXPECT_ERROR("unknown option", "--bogus", URL);
    EXPECT_ERROR("needs a value", URL, "-c");
    EXPECT_ERROR("no URL", "-c", "5");
    EXPECT_ERROR("--cacert", "--cacert", "/nonexistent/ca.pem", URL);
}

static void test_ratios(void **state)
{
    (void)state;
    char err[160];
    double r;
    assert_int_equal(lg_parse_ratio("0.01", &r, err, sizeof err), 0);
    assert_true(r > 0.0099 && r < 0.0101);
    assert_int_equal(lg_parse_ratio("99.9%", &r, err, sizeof err), 0);
    assert_true(r > 0.9989 && r < 0.9991);
    assert_int_equal(lg_parse_ratio("100%", &r, err, sizeof err), 0);
    assert_int_equal(lg_parse_ratio("0", &r, err, sizeof err), 0);
    static const char *const bad[] = {"", "%", "1.5", "101%", "-1%", "5 %", "1%%", "abc"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (lg_parse_ratio(bad[i], &r, err, sizeof err) != -1)
            fail_msg("ratio '%s' accepted", bad[i]);
}

static void test_thresholds(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        enum lg_th_metric metric;
        enum lg_th_stat stat;
        double pct;
        enum lg_th_op op;
        double value;
    } good[] = {
        {"p99<50ms", TH_LATENCY, TH_STAT_PCT, 99, TH_LT, 50e6},
        {"latency.p99.9<=200ms", TH_LATENCY, TH_STAT_PCT, 99.9, TH_LE, 200e6},
        {"connect.p95<1s", TH_CONNECT, TH_STAT_PCT, 95, TH_LT, 1e9},
        {"handshake.max<2s", TH_HANDSHAKE, TH_STAT_MAX, 0, TH_LT, 2e9},
        {"mean < 10ms", TH_LATENCY, TH_STAT_MEAN, 0, TH_LT, 10e6},
        {"min>1us", TH_LATENCY, TH_STAT_MIN, 0, TH_GT, 1e3},
        {"errors<1%", TH_ERRORS, TH_STAT_RATIO, 0, TH_LT, 0.01},
        {"delivery>=99.9%", TH_DELIVERY, TH_STAT_RATIO, 0, TH_GE, 0.999},
        {"delivery >= 1", TH_DELIVERY, TH_STAT_RATIO, 0, TH_GE, 1},
        {"p50<=0", TH_LATENCY, TH_STAT_PCT, 50, TH_LE, 0},
    };
    char err[256];
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        struct lg_threshold t;
        if (lg_parse_threshold(good[i].text, &t, err, sizeof err) != 0)
            fail_msg("'%s': %s", good[i].text, err);
        assert_string_equal(t.text, good[i].text);
        assert_int_equal(t.metric, good[i].metric);
        assert_int_equal(t.stat, good[i].stat);
        assert_int_equal(t.op, good[i].op);
        assert_true(t.pct > good[i].pct - 1e-9 && t.pct < good[i].pct + 1e-9);
        assert_true(t.value > good[i].value * 0.999999 - 1e-9 && t.value < good[i].value * 1.000001 + 1e-9);
    }
    static const struct {
        const char *text, *says;
    } bad[] = {
        {"p99", "expected METRIC<VALUE"}, {"p99=5ms", "expected METRIC<VALUE"}, {"<5ms", "unknown metric"},
        {"p100<5ms", "unknown metric"},   {"p0<5ms", "unknown metric"},         {"pxx<5ms", "unknown metric"},
        {"q99<5ms", "unknown metric"},    {"latency.<5ms", "unknown metric"},   {"connect.errors<1%", "unknown metric"},
        {"p99<50", "needs a duration"},   {"p99<50%", "needs a duration"},      {"p99<", "needs a duration"},
        {"errors<5ms", "not a ratio"},    {"delivery>=101%", "over 100%"},      {"errors<", "not a ratio"},
        {"median<5ms", "unknown metric"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct lg_threshold t;
        err[0] = '\0';
        if (lg_parse_threshold(bad[i].text, &t, err, sizeof err) != -1 || !strstr(err, bad[i].says))
            fail_msg("threshold '%s': error '%s', expected '%s'", bad[i].text, err, bad[i].says);
    }
    struct lg_opts o;
    assert_int_equal(PARSE(&o, err, "-t", "delivery>=99%", URL), LG_PARSE_OK);
    assert_true(o.delivery_threshold && !o.errors_threshold);
    lg_opts_free(&o);
}

static void test_sources(void **state)
{
    (void)state;
    char err[160];
    struct net_addr *list = NULL;
    uint32_t n = 0;
    assert_int_equal(lg_parse_sources("127.0.0.2-127.0.0.4,127.0.0.9,::1", &list, &n, err, sizeof err), 0);
    assert_int_equal(n, 5);
    char text[4][INET_ADDRSTRLEN];
    for (int i = 0; i < 4; i++)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&list[i].ss)->sin_addr, text[i], sizeof text[i]);
    assert_string_equal(text[0], "127.0.0.2");
    assert_string_equal(text[2], "127.0.0.4");
    assert_string_equal(text[3], "127.0.0.9");
    assert_int_equal(((struct sockaddr_in *)&list[0].ss)->sin_port, 0);
    assert_int_equal(list[4].ss.ss_family, AF_INET6);
    assert_int_equal(lg_parse_sources("127.0.255.255-127.1.0.1", &list, &n, err, sizeof err), 0); /* crosses a /16 */
    assert_int_equal(n, 8);
    static const char *const bad[] = {
        "127.0.0.9-127.0.0.2", "",          ",", "127.0.0.1,", "localhost", "127.0.0.300", "::1-::2",
        "10.0.0.0-10.1.0.0",   "127.0.0.1-"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        if (lg_parse_sources(bad[i], &list, &n, err, sizeof err) != -1 || !strstr(err, "--source"))
            fail_msg("source '%s' accepted or unclear: '%s'", bad[i], err);
    }
    free(list);
}

/* Every URL's clients go round robin over every source address: with 4 URLs and 8 sources, id % 8 would give each
 * URL only 2 of them (ids of URL t are t mod 4), a quarter of the ports it could have. */
static void test_client_source_spreads_each_url(void **state)
{
    (void)state;
    struct lg_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "--source", "127.0.0.2-127.0.0.9", "ws://127.0.0.1:9001/", "ws://127.0.0.1:9002/",
                           "ws://127.0.0.1:9003/", "ws://127.0.0.1:9004/"),
                     LG_PARSE_OK);
    for (uint32_t t = 0; t < 4; t++) {
        uint32_t used[8] = {0};
        for (uint32_t id = t; id < 800; id += 4) { /* client id goes to URL id % 4 */
            const struct net_addr *a = lg_client_source(&o, id);
            assert_non_null(a);
            used[a - o.sources]++;
        }
        for (int s = 0; s < 8; s++)
            if (used[s] != 25)
                fail_msg("URL %u: source %d holds %u of its 200 clients, expected 25", t, s, used[s]);
    }
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "--source", "127.0.0.2-127.0.0.5", URL), LG_PARSE_OK);
    for (uint32_t id = 0; id < 8; id++) /* one URL: plain round robin, as before */
        assert_ptr_equal(lg_client_source(&o, id), &o.sources[id % 4]);
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, URL), LG_PARSE_OK);
    assert_null(lg_client_source(&o, 7));
    lg_opts_free(&o);
}

static void test_urls(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        bool tls;
        const char *host, *port, *host_header, *path;
    } good[] = {
        {"ws://example.com", false, "example.com", "80", "example.com", "/"},
        {"wss://example.com/", true, "example.com", "443", "example.com", "/"},
        {"ws://example.com:80/ws", false, "example.com", "80", "example.com", "/ws"},
        {"wss://example.com:8443/ws?x=1", true, "example.com", "8443", "example.com:8443", "/ws?x=1"},
        {"http://127.0.0.1:9001?room=a", false, "127.0.0.1", "9001", "127.0.0.1:9001", "/?room=a"},
        {"HTTPS://h", true, "h", "443", "h", "/"},
        {"ws://[::1]:9001/ws", false, "::1", "9001", "[::1]:9001", "/ws"},
        {"wss://[2001:db8::1]", true, "2001:db8::1", "443", "[2001:db8::1]", "/"},
    };
    char err[256];
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        struct lg_target t;
        if (lg_parse_url(good[i].url, &t, false, err, sizeof err) != 0)
            fail_msg("'%s': %s", good[i].url, err);
        assert_int_equal(t.tls, good[i].tls);
        assert_string_equal(t.host, good[i].host);
        assert_string_equal(t.port, good[i].port);
        assert_string_equal(t.host_header, good[i].host_header);
        assert_string_equal(t.path, good[i].path);
        assert_string_equal(t.url, good[i].url);
    }
    static const char *const bad[] = {"example.com",   "ftp://x/",     "ws://",       "ws:///path",   "ws://h:0/",
                                      "ws://h:65536/", "ws://h:x/",    "ws://u:p@h/", "ws://h/#frag", "ws://h/a b",
                                      "ws://[::1/",    "ws://[::1]x/", "ws://h:/"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct lg_target t;
        err[0] = '\0';
        if (lg_parse_url(bad[i], &t, false, err, sizeof err) != -1 || !err[0])
            fail_msg("URL '%s' accepted", bad[i]);
    }
    struct lg_target t;
    assert_int_equal(lg_parse_url("ws://127.0.0.1:9001/", &t, true, err, sizeof err), 0);
    assert_int_equal(t.addr.ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&t.addr.ss)->sin_port), 9001);
}

static void test_request_target_and_rooms(void **state)
{
    (void)state;
    struct lg_target t;
    char err[256], out[64], room[32];
    lg_parse_url("ws://h/ws", &t, false, err, sizeof err);
    assert_int_equal(lg_request_target(&t, "room", "", out, sizeof out), 0);
    assert_string_equal(out, "/ws");
    assert_int_equal(lg_request_target(&t, "room", "a b/ü", out, sizeof out), 0);
    assert_string_equal(out, "/ws?room=a%20b%2F%C3%BC");
    lg_parse_url("ws://h/ws?token=x", &t, false, err, sizeof err);
    assert_int_equal(lg_request_target(&t, "channel", "r-1.x~_", out, sizeof out), 0);
    assert_string_equal(out, "/ws?token=x&channel=r-1.x~_");
    assert_int_equal(lg_request_target(&t, "room", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                                       out, sizeof out),
                     -1);
    struct lg_opts o;
    assert_int_equal(PARSE(&o, err, "-c", "10", "--rooms", "3", URL), LG_PARSE_OK);
    lg_client_room(&o, 7, room, sizeof room);
    assert_string_equal(room, "room-1");
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "-c", "10", "--rooms", "3", "--room", "chat", URL), LG_PARSE_OK);
    lg_client_room(&o, 5, room, sizeof room);
    assert_string_equal(room, "chat-2");
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "--room", "lobby", URL), LG_PARSE_OK);
    lg_client_room(&o, 5, room, sizeof room);
    assert_string_equal(room, "lobby");
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, URL), LG_PARSE_OK);
    lg_client_room(&o, 5, room, sizeof room);
    assert_string_equal(room, "");
    lg_opts_free(&o);
}

/* The spectators topology, on a small example (K = 3 small rooms, S = 5 in the big room, 20 clients): the exact room
 * of every client, the head count of every room, the names in the URL, and each rule of the validation. */
static void test_spectators(void **state)
{
    (void)state;
    struct lg_opts o;
    char err[256], room[32];
    assert_int_equal(PARSE(&o, err, "-c", "20", "--rooms", "3", "--spectators", "5", "-e", "4", URL), LG_PARSE_OK);
    assert_int_equal(o.spectators, 5);
    assert_int_equal(lg_room_count(&o), 4);
    /* 0 publishes in room 0; 1..3 one per small room; 4..7 watch in room 0; 8.. round robin over 1..3 */
    static const uint32_t want[20] = {0, 1, 2, 3, 0, 0, 0, 0, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3};
    uint32_t per_room[4] = {0};
    for (uint32_t i = 0; i < 20; i++) {
        uint32_t k = lg_room_index(&o, i);
        if (k != want[i])
            fail_msg("client %u: room %u, expected %u", i, k, want[i]);
        per_room[k]++;
    }
    assert_int_equal(per_room[0], 5); /* the publisher and S-1 = 4 watchers */
    for (int k = 1; k <= 3; k++)
        assert_int_equal(per_room[k], 5); /* one emitter and (20 - 3 - 5) / 3 = 4 more */
    lg_client_room(&o, 0, room, sizeof room);
    assert_string_equal(room, "room-0");
    lg_client_room(&o, 3, room, sizeof room);
    assert_string_equal(room, "room-3");
    lg_client_room(&o, 7, room, sizeof room);
    assert_string_equal(room, "room-0");
    lg_client_room(&o, 19, room, sizeof room);
    assert_string_equal(room, "room-3");
    lg_opts_free(&o);

    /* --room names the prefix; without --rooms there is one small room; K + S == clients is allowed */
    assert_int_equal(PARSE(&o, err, "-c", "4", "--spectators", "3", "--room", "live", URL), LG_PARSE_OK);
    assert_int_equal(lg_room_count(&o), 2);
    static const char *const names[4] = {"live-0", "live-1", "live-0", "live-0"};
    for (uint32_t i = 0; i < 4; i++) {
        lg_client_room(&o, i, room, sizeof room);
        assert_string_equal(room, names[i]);
    }
    lg_opts_free(&o);

    /* without --spectators the mapping is the plain i % K, and one room is index 0 */
    assert_int_equal(PARSE(&o, err, "-c", "10", "--rooms", "3", URL), LG_PARSE_OK);
    assert_int_equal(lg_room_count(&o), 3);
    assert_int_equal(o.spectators, 0);
    for (uint32_t i = 0; i < 10; i++)
        assert_int_equal(lg_room_index(&o, i), i % 3);
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, URL), LG_PARSE_OK);
    assert_int_equal(lg_room_count(&o), 1);
    assert_int_equal(lg_room_index(&o, 42), 0);
    lg_opts_free(&o);

    EXPECT_ERROR("--spectators: expected a whole number from 2", "--spectators", "1", URL);
    EXPECT_ERROR("--spectators: expected a whole number from 2", "--spectators", "0", URL);
    EXPECT_ERROR("--spectators: expected a whole number from 2", "--spectators", "x", URL);
    EXPECT_ERROR("--spectators: expected a whole number from 2", "--spectators", "-3", URL);
    EXPECT_ERROR("--spectators: expected a whole number from 2", "--spectators", "10000001", URL);
    EXPECT_ERROR("needs a value", URL, "--spectators");
    EXPECT_ERROR("--spectators 5 with --rooms 3: needs at least 8 clients", "-c", "7", "--rooms", "3", "--spectators",
                 "5", URL);
    EXPECT_ERROR("--spectators 100 with --rooms 1: needs at least 101 clients", "--spectators", "100", URL);
    EXPECT_ERROR("--emitters 21: more than the 20 clients", "-c", "20", "--rooms", "3", "--spectators", "5", "-e", "21",
                 URL);
}

/* --churn RATE (0..100000, 0 = off) and --churn-gap D (a duration, 0 allowed); churn needs two clients that are not
 * emitters, since emitters never leave. */
static void test_churn(void **state)
{
    (void)state;
    struct lg_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "--churn", "0", URL), LG_PARSE_OK);
    assert_int_equal(o.churn, 0);
    assert_true(o.churn_gap_ns == 100000000);
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "--churn", "100000", "--churn-gap", "0", URL), LG_PARSE_OK);
    assert_true(o.churn == 100000 && o.churn_gap_ns == 0);
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "--churn", "7", "--churn-gap", "1500us", URL), LG_PARSE_OK);
    assert_true(o.churn == 7 && o.churn_gap_ns == 1500000);
    lg_opts_free(&o);
    /* exactly two receivers is enough; a gap without churn is harmless */
    assert_int_equal(PARSE(&o, err, "-c", "3", "-e", "1", "--churn", "5", URL), LG_PARSE_OK);
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "-c", "1", "--churn-gap", "1s", URL), LG_PARSE_OK);
    lg_opts_free(&o);
    /* so is churn 0 with no receiver at all */
    assert_int_equal(PARSE(&o, err, "-c", "2", "-e", "2", "--churn", "0", URL), LG_PARSE_OK);
    lg_opts_free(&o);

    EXPECT_ERROR("--churn: expected a whole number from 0 to 100000, got '100001'", "--churn", "100001", URL);
    EXPECT_ERROR("--churn: expected a whole number from 0 to 100000, got '-1'", "--churn", "-1", URL);
    EXPECT_ERROR("--churn: expected a whole number from 0 to 100000, got '2.5'", "--churn", "2.5", URL);
    EXPECT_ERROR("--churn: expected a whole number from 0 to 100000, got 'x'", "--churn", "x", URL);
    EXPECT_ERROR("--churn: expected a whole number from 0 to 100000, got ''", "--churn", "", URL);
    EXPECT_ERROR("--churn needs a value", URL, "--churn");
    EXPECT_ERROR("--churn-gap", "--churn-gap", "100", URL);  /* no unit */
    EXPECT_ERROR("--churn-gap", "--churn-gap", "-5ms", URL); /* negative */
    EXPECT_ERROR("--churn-gap", "--churn-gap", "fast", URL);
    EXPECT_ERROR("--churn-gap needs a value", URL, "--churn-gap");
    EXPECT_ERROR("--churn 5: needs at least 2 clients that are not emitters to leave and come back, got 1 (3 clients, "
                 "2 emitters)",
                 "-c", "3", "-e", "2", "--churn", "5", URL);
    EXPECT_ERROR("--churn 1: needs at least 2 clients that are not emitters", "-c", "1", "--churn", "1", URL);
    EXPECT_ERROR("got 0 (4 clients, 4 emitters)", "-c", "4", "-e", "4", "--churn", "9", URL);
    /* the emitters' own check still comes first */
    EXPECT_ERROR("--emitters 5: more than the 4 clients", "-c", "4", "-e", "5", "--churn", "9", URL);
}

/* --duration: the rounds are the most whose intended start falls inside it; a count beside it is refused. */
static void test_duration(void **state)
{
    (void)state;
    struct lg_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, URL), LG_PARSE_OK);
    assert_true(o.duration_ns == 0 && o.rounds == 10);
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "--duration", "30s", URL), LG_PARSE_OK); /* 500ms default interval */
    assert_true(o.duration_ns == INT64_C(30000000000) && o.rounds == 60);
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "--duration", "2m", "-i", "7ms", URL), LG_PARSE_OK);
    assert_int_equal(o.rounds, 17143); /* ceil(120000 / 7): round 17143 is intended at 119.994 s */
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "-i", "1ms", "--duration", "1000s", URL), LG_PARSE_OK);
    assert_int_equal(o.rounds, 1000000);
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "--duration", "1ns", URL), LG_PARSE_OK);
    assert_int_equal(o.rounds, 1);
    lg_opts_free(&o);

    EXPECT_ERROR("--rounds and --duration together", "--duration", "10s", "-r", "5", URL);
    EXPECT_ERROR("--rounds and --duration together", "-r", "10", "--duration", "10s", URL);
    EXPECT_ERROR("--duration needs an --interval more than 0", "--duration", "10s", "-i", "0", URL);
    EXPECT_ERROR("--duration 1001.000s at --interval 1.000ms: 1001000 rounds, at most 1000000", "--duration", "1001s",
                 "-i", "1ms", URL);
    EXPECT_ERROR("--duration: must be more than 0", "--duration", "0s", URL);
    EXPECT_ERROR("--duration", "--duration", "30", URL); /* no unit */
    EXPECT_ERROR("--duration", "--duration", "-1s", URL);
    EXPECT_ERROR("--duration", "--duration", "soon", URL);
    EXPECT_ERROR("--duration needs a value", URL, "--duration");
}

static void test_headers(void **state)
{
    (void)state;
    struct lg_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "-H", "Authorization: Bearer abc", "-H", "X-Empty:", URL), LG_PARSE_OK);
    assert_int_equal(o.nheaders, 2);
    assert_string_equal(o.headers[0], "Authorization: Bearer abc");
    lg_opts_free(&o);
    EXPECT_ERROR("Name: value", "-H", "NoColon", URL);
    EXPECT_ERROR("Name: value", "-H", ": value", URL);
    EXPECT_ERROR("Name: value", "-H", "Bad Name: v", URL);
    EXPECT_ERROR("control", "-H", "X: a\r\nInjected: 1", URL);
    EXPECT_ERROR("sets Host itself", "-H", "Host: evil", URL);
    EXPECT_ERROR("itself", "-H", "sec-websocket-key: x", URL);
}

static void test_help_version_and_reparse(void **state)
{
    (void)state;
    struct lg_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "--help"), LG_PARSE_HELP);
    assert_int_equal(PARSE(&o, err, "-V"), LG_PARSE_VERSION);
    /* state left by an earlier getopt run must not leak into the next */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(PARSE(&o, err, "-c", "7", URL), LG_PARSE_OK);
        assert_int_equal(o.clients, 7);
        lg_opts_free(&o);
    }
    char usage[8192] = "";
    FILE *fp = fmemopen(usage, sizeof usage - 1, "w");
    lg_opts_usage(fp);
    fclose(fp);
    for (const char *const *opt =
             (const char *const[]){"--clients",       "--connect-rate", "--max-inflight", "--rounds",
                                   "--interval",      "--deadline",     "--emitters",     "--payload",
                                   "--rooms",         "--spectators",   "--workers",      "--source",
                                   "--out",           "--hlog",         "--threshold",    "--quiet",
                                   "--insecure",      "--cacert",       "--churn",        "--churn-gap",
                                   "--protocol",      "--transport",    "--namespace",    "--auth",
                                   "--event",         "--expect",       "--no-upgrade",   "--progress",
                                   "--close-timeout", "auto",           "exit",           NULL};
         *opt; opt++)
        if (!strstr(usage, *opt))
            fail_msg("--help does not mention %s", *opt);
}

static void test_socketio(void **state)
{
    (void)state;
    struct lg_opts o;
    char err[256], target[1100];
    /* defaults: plain WebSocket, paths as given */
    assert_int_equal(PARSE(&o, err, URL), LG_PARSE_OK);
    assert_int_equal(o.protocol, LG_PROTO_WEBSOCKET);
    assert_string_equal(o.targets[0].path, "/ws");
    lg_opts_free(&o);
    /* socketio: a bare path becomes /socket.io/, the Engine.IO query is added, then the room as before */
    assert_int_equal(PARSE(&o, err, "--protocol", "socketio", "--room", "r1", "ws://127.0.0.1:9001",
                           "ws://127.0.0.1:9002/", "ws://127.0.0.1:9003/io/?x=1"),
                     LG_PARSE_OK);
    assert_int_equal(o.protocol, LG_PROTO_SOCKETIO);
    assert_string_equal(o.sio_nsp, "/");
    assert_null(o.sio_auth);
    assert_string_equal(o.sio_event, "chat");
    assert_string_equal(o.sio_expect, "chat");
    assert_string_equal(o.targets[0].path, "/socket.io/?EIO=4&transport=websocket");
    assert_string_equal(o.targets[1].path, "/socket.io/?EIO=4&transport=websocket");
    assert_string_equal(o.targets[2].path, "/io/?x=1&EIO=4&transport=websocket");
    char room[64];
    lg_client_room(&o, 0, room, sizeof room);
    assert_int_equal(lg_request_target(&o.targets[0], o.room_param, room, target, sizeof target), 0);
    assert_string_equal(target, "/socket.io/?EIO=4&transport=websocket&room=r1");
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "--protocol", "socketio", "--transport", "websocket", "--namespace", "/admin",
                           "--auth", "{\"token\":\"x\"}", "--event", "msg", "--expect", "relay", URL),
                     LG_PARSE_OK);
    assert_string_equal(o.sio_nsp, "/admin");
    assert_string_equal(o.sio_auth, "{\"token\":\"x\"}");
    assert_string_equal(o.sio_event, "msg");
    assert_string_equal(o.sio_expect, "relay");
    assert_string_equal(o.targets[0].path, "/ws?EIO=4&transport=websocket");
    lg_opts_free(&o);
    /* --event alone: --expect follows it */
    assert_int_equal(PARSE(&o, err, "--event", "m", "--protocol", "socketio", URL), LG_PARSE_OK);
    assert_string_equal(o.sio_expect, "m");
    lg_opts_free(&o);

    expect_error("--protocol: expected websocket or socketio, got 'sio'",
                 (const char *const[]){"--protocol", "sio", URL, NULL});
    expect_error("--no-upgrade needs --transport polling",
                 (const char *const[]){"--protocol", "socketio", "--no-upgrade", URL, NULL});
    expect_error("--no-upgrade needs --protocol socketio", (const char *const[]){"--no-upgrade", URL, NULL});
    assert_int_equal(PARSE(&o, err, "--protocol", "socketio", "--transport", "polling", "--room", "r1", URL),
                     LG_PARSE_OK);
    assert_true(o.sio_polling);
    assert_true(o.sio_upgrade);
    assert_string_equal(o.targets[0].path, "/ws?EIO=4&transport=polling");
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "--protocol", "socketio", "--transport", "polling", "--no-upgrade", URL),
                     LG_PARSE_OK);
    assert_true(o.sio_polling);
    assert_false(o.sio_upgrade);
    lg_opts_free(&o);
    expect_error("--transport: expected websocket or polling",
                 (const char *const[]){"--protocol", "socketio", "--transport", "ws", URL, NULL});
    expect_error("--namespace needs --protocol socketio", (const char *const[]){"--namespace", "/a", URL, NULL});
    expect_error("--event needs --protocol socketio", (const char *const[]){"--event", "a", URL, NULL});
    expect_error("--transport needs --protocol socketio", (const char *const[]){"--transport", "websocket", URL, NULL});
    expect_error("--namespace 'admin': expected /NAME",
                 (const char *const[]){"--protocol", "socketio", "--namespace", "admin", URL, NULL});
    expect_error("--namespace '/a,b'",
                 (const char *const[]){"--protocol", "socketio", "--namespace", "/a,b", URL, NULL});
    expect_error("--auth: expected a JSON object",
                 (const char *const[]){"--protocol", "socketio", "--auth", "[1]", URL, NULL});
    expect_error("--auth: expected a JSON object",
                 (const char *const[]){"--protocol", "socketio", "--auth", "{\"a\":", URL, NULL});
    expect_error("--event 'connect': a name Socket.IO reserves",
                 (const char *const[]){"--protocol", "socketio", "--event", "connect", URL, NULL});
    expect_error("--expect 'a\"b'", (const char *const[]){"--protocol", "socketio", "--expect", "a\"b", URL, NULL});
    expect_error("--event: expected an event name",
                 (const char *const[]){"--protocol", "socketio", "--event", "", URL, NULL});
}

/* --ack and --binary with --protocol socketio: the options, the ack. threshold, and the combinations refused (the
 * encoders and the reassembly are in test_sio.c). */
#define SIO_URL "ws://127.0.0.1:9001/"

static void test_ack_and_binary(void **state)
{
    (void)state;
    struct lg_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, "--protocol", "socketio", "--binary", "--ack", "-t", "ack.p99<50ms", SIO_URL),
                     LG_PARSE_OK);
    assert_true(o.binary && o.sio_ack);
    assert_int_equal(o.nthresholds, 1);
    assert_int_equal(o.thresholds[0].metric, TH_ACK);
    assert_int_equal(o.thresholds[0].stat, TH_STAT_PCT);
    assert_true(o.thresholds[0].pct == 99 && o.thresholds[0].value == 50e6);
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "--protocol", "socketio", "--transport", "polling", "--binary", SIO_URL),
                     LG_PARSE_OK);
    assert_true(o.binary && !o.sio_ack);
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "--protocol", "socketio", SIO_URL), LG_PARSE_OK);
    assert_false(o.sio_ack);
    lg_opts_free(&o);
}

static void test_ack_threshold(void **state)
{
    (void)state;
    struct lg_threshold t;
    char err[256];
    assert_int_equal(lg_parse_threshold("ack.max<=2s", &t, err, sizeof err), 0);
    assert_true(t.metric == TH_ACK && t.stat == TH_STAT_MAX && t.op == TH_LE && t.value == 2e9);
    assert_int_equal(lg_parse_threshold("ack.mean<1ms", &t, err, sizeof err), 0);
    assert_true(t.metric == TH_ACK && t.stat == TH_STAT_MEAN);
    assert_int_equal(lg_parse_threshold("ack.<1ms", &t, err, sizeof err), -1);
    assert_non_null(strstr(err, "ack."));
    assert_int_equal(lg_parse_threshold("ack.p99<1%", &t, err, sizeof err), -1);
}

static void test_ack_refused(void **state)
{
    (void)state;
    EXPECT_ERROR("--ack needs --protocol socketio", "--ack", SIO_URL);
    EXPECT_ERROR("needs --ack", "--protocol", "socketio", "-t", "ack.p99<50ms", SIO_URL);
    EXPECT_ERROR("needs --ack", "-t", "ack.p50<1s", SIO_URL);
}

static void test_reconnect_options(void **state)
{
    (void)state;
    struct lg_opts o;
    char err[256];
    assert_int_equal(PARSE(&o, err, URL), LG_PARSE_OK); /* off by default, socket.io-client's values */
    assert_false(o.reconnect.enabled);
    assert_true(o.reconnect.delay_ns == 1000000000 && o.reconnect.delay_max_ns == 5000000000);
    assert_true(o.reconnect.jitter == 0.5 && o.reconnect.attempts == 0);
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "--reconnect", "--reconnect-delay", "100ms", "--reconnect-delay-max", "2s",
                           "--reconnect-jitter", "0.25", "--reconnect-attempts", "7", URL),
                     LG_PARSE_OK);
    assert_true(o.reconnect.enabled && o.reconnect.delay_ns == 100000000 && o.reconnect.delay_max_ns == 2000000000);
    assert_true(o.reconnect.jitter == 0.25 && o.reconnect.attempts == 7);
    lg_opts_free(&o);
    assert_int_equal(PARSE(&o, err, "--reconnect", "--reconnect-delay", "0", "--reconnect-jitter", "0", URL),
                     LG_PARSE_OK);
    lg_opts_free(&o);
    EXPECT_ERROR("--reconnect-delay needs --reconnect", "--reconnect-delay", "1s", URL);
    EXPECT_ERROR("--reconnect-attempts needs --reconnect", "--reconnect-attempts", "3", URL);
    EXPECT_ERROR("--reconnect-delay:", "--reconnect", "--reconnect-delay", "soon", URL);
    EXPECT_ERROR("--reconnect-delay:", "--reconnect", "--reconnect-delay", "-1s", URL);
    EXPECT_ERROR("--reconnect-delay-max 0.500s: less than --reconnect-delay 1.000s", "--reconnect",
                 "--reconnect-delay-max", "500ms", URL);
    EXPECT_ERROR("--reconnect-jitter: expected a fraction from 0 to 1", "--reconnect", "--reconnect-jitter", "1.5",
                 URL);
    EXPECT_ERROR("--reconnect-jitter", "--reconnect", "--reconnect-jitter", "x", URL);
    EXPECT_ERROR("--reconnect-attempts", "--reconnect", "--reconnect-attempts", "-2", URL);
    EXPECT_ERROR("--reconnect and --churn", "--reconnect", "--churn", "10", URL);
}

static void test_missed_threshold(void **state)
{
    (void)state;
    struct lg_threshold t;
    char err[256];
    assert_int_equal(lg_parse_threshold("missed<5%", &t, err, sizeof err), 0);
    assert_true(t.metric == TH_MISSED && t.stat == TH_STAT_RATIO && t.op == TH_LT && t.value == 0.05);
    assert_int_equal(lg_parse_threshold("missed<=0.1", &t, err, sizeof err), 0);
    assert_true(t.metric == TH_MISSED && t.op == TH_LE && t.value == 0.1);
    assert_int_equal(lg_parse_threshold("missed.p99<1%", &t, err, sizeof err), -1);
}

/* socket.io-client's schedule: first * 2^attempt capped at max, then +-jitter of it. */
static void test_backoff_schedule(void **state)
{
    (void)state;
    struct lg_reconnect r = {.enabled = true, .delay_ns = 1000000000, .delay_max_ns = 5000000000, .jitter = 0.5};
    const int64_t s = 1000000000;
    /* u = 0.5: no jitter */
    assert_true(lg_backoff_ns(&r, 0, 0.5) == 1 * s);
    assert_true(lg_backoff_ns(&r, 1, 0.5) == 2 * s);
    assert_true(lg_backoff_ns(&r, 2, 0.5) == 4 * s);
    assert_true(lg_backoff_ns(&r, 3, 0.5) == 5 * s); /* capped */
    assert_true(lg_backoff_ns(&r, 1000, 0.5) == 5 * s);
    /* the extremes: -50% and (almost) +50% */
    assert_true(lg_backoff_ns(&r, 0, 0) == s / 2);
    assert_true(lg_backoff_ns(&r, 2, 0) == 2 * s);
    assert_true(lg_backoff_ns(&r, 3, 0.0) == 5 * s / 2);
    int64_t hi = lg_backoff_ns(&r, 3, 0.999999);
    assert_true(hi > 7 * s && hi <= 15 * s / 2); /* jitter applies after the cap, as the options say */
    for (double u = 0; u < 1; u += 0.01) {
        int64_t d = lg_backoff_ns(&r, 1, u);
        assert_true(d >= s && d <= 3 * s);
    }
    r.jitter = 0;
    assert_true(lg_backoff_ns(&r, 0, 0) == s && lg_backoff_ns(&r, 0, 0.99) == s);
    r.delay_ns = 0;
    assert_true(lg_backoff_ns(&r, 5, 0.3) == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reconnect_options),
        cmocka_unit_test(test_missed_threshold),
        cmocka_unit_test(test_backoff_schedule),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_all_options),
        cmocka_unit_test(test_numbers_are_strict),
        cmocka_unit_test(test_ratios),
        cmocka_unit_test(test_thresholds),
        cmocka_unit_test(test_sources),
        cmocka_unit_test(test_auto_values),
        cmocka_unit_test(test_client_source_spreads_each_url),
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_request_target_and_rooms),
        cmocka_unit_test(test_spectators),
        cmocka_unit_test(test_churn),
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_help_version_and_reparse),
        cmocka_unit_test(test_socketio),
        cmocka_unit_test(test_ack_and_binary),
        cmocka_unit_test(test_ack_threshold),
        cmocka_unit_test(test_ack_refused),
    };
    return cmocka_run_group_tests_name("opts", tests, NULL, NULL);
}
