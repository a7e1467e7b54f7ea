/* loadgen's plan: workers from the open-files limit, source addresses from ip_local_port_range and the
 * destinations, the close phase's limit; for 100, 30k, 100k and 1M clients through one URL and through four,
 * websocket and polling, on this project's host (20000 descriptors a process, ports 32768-60999). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "loadgen/plan.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct lg_plan_env HOST = {.fd_limit = 20000, .port_lo = 32768, .port_hi = 60999, .port_range_read = true};

#define ONE_URL   "ws://127.0.0.1:9001/ws"
#define FOUR_URLS "ws://127.0.0.1:9001/ws", "ws://127.0.0.1:9002/ws", "ws://127.0.0.1:9003/ws", "ws://127.0.0.1:9004/ws"
#define POLLING   "--protocol", "socketio", "--transport", "polling"

static struct lg_opts O;
static struct lg_plan P;
static char err[512];

/* Parse a NULL-terminated argument list (argv[0] added) into O and plan it on env: lg_plan_make's result. */
static int plan_on(const struct lg_plan_env *env, const char *const *args)
{
    char *argv[32] = {"loadgen"};
    int argc = 1;
    while (args[argc - 1])
        argv[argc] = (char *)args[argc - 1], argc++;
    lg_opts_free(&O);
    if (lg_opts_parse(&O, argc, argv, err, sizeof err) != LG_PARSE_OK)
        fail_msg("parse: %s", err);
    err[0] = '\0';
    return lg_plan_make(&O, env, &P, err, sizeof err);
}

#define PLAN(...)         plan_on(&HOST, (const char *const[]){__VA_ARGS__, NULL})
#define PLAN_ON(env, ...) plan_on(env, (const char *const[]){__VA_ARGS__, NULL})

static int teardown(void **state)
{
    (void)state;
    lg_opts_free(&O);
    return 0;
}

/* workers, clients a worker, sources (0: none), connections a source holds to the busiest destination */
static void expect(uint32_t workers, uint32_t per_worker, uint32_t sources, uint64_t per_source)
{
    const struct lg_plan_dest *d = &P.dests[P.busiest];
    if (P.workers != workers || P.clients_per_worker != per_worker || P.sources != sources ||
        d->per_source != per_source)
        fail_msg("%u clients: %u workers of %u, %u sources, %llu a source to %s; expected %u of %u, %u, %llu",
                 P.clients, P.workers, P.clients_per_worker, P.sources, (unsigned long long)d->per_source, d->name,
                 workers, per_worker, sources, (unsigned long long)per_source);
    assert_true(P.clients_per_worker * (uint64_t)P.per_client + P.fd_reserve <= HOST.fd_limit);
    assert_true(d->per_source <= P.ports);
    assert_int_equal(P.nwarnings, 0);
}

static void test_websocket_one_url(void **state)
{
    (void)state;
    assert_int_equal(PLAN("-c", "100", ONE_URL), 0);
    expect(1, 100, 0, 100); /* a small run is what it always was: 1 worker, the kernel's source address */
    assert_int_equal(P.per_client, 1);
    assert_int_equal(P.fd_budget, 20000 - LG_PLAN_FD_RESERVE);
    assert_int_equal(P.ports, 14116 - 1411); /* half of 32768-60999, less 10% */
    assert_int_equal(P.ndests, 1);
    assert_string_equal(P.dests[0].name, "127.0.0.1:9001");
    assert_true(P.loopback && P.workers_auto && P.sources_auto && P.close_auto);
    assert_int_equal(PLAN("-c", "30000", ONE_URL), 0);
    expect(2, 15000, 3, 10000); /* the run: 30000 > 19936 descriptors and > 12705 ports */
    assert_int_equal(PLAN("-c", "100000", ONE_URL), 0);
    expect(6, 16667, 8, 12500);
    assert_int_equal(PLAN("-c", "1000000", ONE_URL), 0);
    expect(51, 19608, 79, 12659);
    assert_int_equal(P.workers_needed, 51);
    assert_int_equal(P.sources_needed, 79);
}

static void test_websocket_four_urls(void **state)
{
    (void)state;
    assert_int_equal(PLAN("-c", "100", FOUR_URLS), 0);
    expect(1, 100, 0, 25);
    assert_int_equal(P.ndests, 4);
    assert_int_equal(PLAN("-c", "30000", FOUR_URLS), 0);
    expect(2, 15000, 0, 7500);
    assert_int_equal(PLAN("-c", "100000", FOUR_URLS), 0);
    expect(6, 16667, 2, 12500); /* 25000 a destination: past the fast half of one address's ports */
    assert_int_equal(PLAN("-c", "1000000", FOUR_URLS), 0);
    expect(51, 19608, 20, 12500);
    for (int d = 0; d < 4; d++)
        assert_int_equal(P.dests[d].conns, 250000);
}

static void test_polling(void **state)
{
    (void)state;
    /* 2 descriptors a client, and up to --max-inflight upgrades holding a third: 20000 - 64 - 256 = 19680 */
    assert_int_equal(PLAN("-c", "100", POLLING, ONE_URL), 0);
    expect(1, 100, 0, 200);
    assert_int_equal(P.per_client, 2);
    assert_int_equal(P.fd_budget, 19680);
    assert_int_equal(PLAN("-c", "30000", POLLING, ONE_URL), 0);
    expect(4, 7500, 5, 12000);
    assert_int_equal(PLAN("-c", "100000", POLLING, ONE_URL), 0);
    expect(11, 9091, 16, 12500);
    assert_int_equal(PLAN("-c", "1000000", POLLING, ONE_URL), 0);
    expect(102, 9804, 158, 12660);
    assert_int_equal(PLAN("-c", "1000000", POLLING, FOUR_URLS), 0);
    expect(102, 9804, 40, 12500);
    assert_int_equal(PLAN("-c", "30000", POLLING, FOUR_URLS), 0);
    expect(4, 7500, 2, 7500);
    /* without the upgrade no third descriptor: only the reserve */
    assert_int_equal(PLAN("-c", "30000", POLLING, "--no-upgrade", ONE_URL), 0);
    assert_int_equal(P.fd_budget, 20000 - LG_PLAN_FD_RESERVE);
}

/* Two URLs on one host:port are one destination: their clients share its ports. */
static void test_urls_sharing_a_destination(void **state)
{
    (void)state;
    assert_int_equal(PLAN("-c", "60000", "ws://127.0.0.1:9001/a", "ws://127.0.0.1:9001/b", "ws://127.0.0.1:9002/"), 0);
    assert_int_equal(P.ndests, 2);
    assert_int_equal(P.dests[P.busiest].conns, 40000);
    assert_string_equal(P.dests[P.busiest].name, "127.0.0.1:9001");
    expect(4, 15000, 4, 10000);
}

static void test_not_loopback(void **state)
{
    (void)state;
    /* one source is enough: fine anywhere */
    assert_int_equal(
        PLAN("-c", "40000", "ws://10.0.0.1:80/", "ws://10.0.0.2:80/", "ws://10.0.0.3:80/", "ws://10.0.0.4:80/"), 0);
    expect(3, 13334, 0, 10000);
    assert_false(P.loopback);
    /* more is not ours to pick: a clear error with the remedy */
    assert_int_equal(PLAN("-c", "30000", "ws://10.0.0.1:80/"), -1);
    assert_non_null(strstr(err, "--source auto"));
    assert_non_null(strstr(err, "30000 connections to 10.0.0.1:80 need 3 source addresses"));
    assert_non_null(strstr(err, "--source LIST"));
    assert_non_null(strstr(err, "ip_local_port_range"));
    assert_null(strchr(err, '\n'));
    /* IPv6 loopback: 127.0.0.x cannot reach it */
    assert_int_equal(PLAN("-c", "30000", "ws://[::1]:9001/"), -1);
    assert_non_null(strstr(err, "IPv4 loopback"));
    /* a list given is used as it is */
    assert_int_equal(PLAN("-c", "30000", "--source", "10.0.0.7,10.0.0.8,10.0.0.9", "ws://10.0.0.1:80/"), 0);
    expect(2, 15000, 3, 10000);
    assert_false(P.sources_auto);
}

/* Values given are kept, with a warning naming the remedy when they are short of the plan. */
static void test_given_values_are_kept_and_warned(void **state)
{
    (void)state;
    assert_int_equal(PLAN("-c", "30000", "-w", "1", "--source", "none", ONE_URL), 0);
    assert_int_equal(P.workers, 1);
    assert_int_equal(P.sources, 0);
    assert_int_equal(P.nwarnings, 2);
    assert_non_null(strstr(P.warnings[0], "use --workers 2 or more"));
    assert_non_null(strstr(P.warnings[1], "30000 connections to 127.0.0.1:9001 need 3 source addresses"));
    assert_non_null(strstr(P.warnings[1], "eaddrnotavail"));
    assert_int_equal(PLAN("-c", "30000", "-w", "3", "--source", "127.0.0.5", ONE_URL), 0);
    assert_int_equal(P.workers, 3);
    assert_int_equal(P.nwarnings, 1);
    assert_non_null(strstr(P.warnings[0], "--source gives 1"));
    assert_int_equal(PLAN("-c", "30000", "-w", "3", "--source", "127.0.0.5-127.0.0.7", ONE_URL), 0);
    expect(3, 10000, 3, 10000);
}

static void test_limits(void **state)
{
    (void)state;
    /* a tiny open-files limit keeps half of it for the worker itself */
    struct lg_plan_env tiny = HOST;
    tiny.fd_limit = 48;
    assert_int_equal(PLAN_ON(&tiny, "-c", "100", ONE_URL), 0);
    assert_int_equal(P.fd_reserve, 24);
    assert_int_equal(P.workers, 5);
    /* more workers than loadgen runs: raise the limit */
    struct lg_plan_env small = HOST;
    small.fd_limit = 1024;
    assert_int_equal(PLAN_ON(&small, "-c", "1000000", ONE_URL), -1);
    assert_non_null(strstr(err, "--workers auto"));
    assert_non_null(strstr(err, "ulimit -n"));
    /* a narrow port range needs more sources */
    struct lg_plan_env narrow = HOST;
    narrow.port_lo = 50000;
    narrow.port_hi = 50999;
    assert_int_equal(PLAN_ON(&narrow, "-c", "10000", ONE_URL), 0);
    assert_int_equal(P.ports, 450);
    assert_int_equal(P.sources, 23);
    narrow.port_hi = narrow.port_lo - 1;
    assert_int_equal(PLAN_ON(&narrow, "-c", "10", ONE_URL), -1);
    assert_non_null(strstr(err, "ip_local_port_range"));
}

static void test_close_timeout(void **state)
{
    (void)state;
    assert_int_equal(PLAN("-c", "30000", ONE_URL), 0);
    assert_true(P.close_auto);
    assert_true(P.close_timeout_ns == INT64_C(2000000000) + INT64_C(30000) * 1000000000 / LG_CLOSE_RATE);
    assert_int_equal(PLAN("-c", "100", "--close-timeout", "auto", ONE_URL), 0);
    assert_true(P.close_auto && P.close_timeout_ns == INT64_C(2100000000));
    assert_int_equal(PLAN("-c", "30000", "--close-timeout", "5s", ONE_URL), 0);
    assert_false(P.close_auto);
    assert_true(P.close_timeout_ns == INT64_C(5000000000));
    assert_true(O.close_timeout_ns == INT64_C(5000000000)); /* a --churn leave's too */
}

static void test_apply(void **state)
{
    (void)state;
    assert_int_equal(PLAN("-c", "1000000", ONE_URL), 0);
    assert_int_equal(lg_plan_apply(&O, &P, err, sizeof err), 0);
    assert_int_equal(O.workers, 51);
    assert_int_equal(O.nsources, 79);
    char first[INET_ADDRSTRLEN], last[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &((struct sockaddr_in *)&O.sources[0].ss)->sin_addr, first, sizeof first);
    inet_ntop(AF_INET, &((struct sockaddr_in *)&O.sources[78].ss)->sin_addr, last, sizeof last);
    assert_string_equal(first, "127.0.0.2");
    assert_string_equal(last, "127.0.0.80");
    assert_true(O.close_phase_ns == P.close_timeout_ns);
    /* a list given stays as it is */
    assert_int_equal(PLAN("-c", "100", "--source", "127.0.0.9", ONE_URL), 0);
    assert_int_equal(lg_plan_apply(&O, &P, err, sizeof err), 0);
    assert_int_equal(O.nsources, 1);
    assert_int_equal(O.workers, 1);
}

static void test_print(void **state)
{
    (void)state;
    assert_int_equal(PLAN("-c", "30000", ONE_URL), 0);
    char text[1024] = "";
    FILE *fp = fmemopen(text, sizeof text - 1, "w");
    lg_plan_print(fp, &P);
    fclose(fp);
    assert_non_null(strstr(text, "plan      2 workers (auto: 30000 clients x 1 descriptor, 19936 a worker under the "
                                 "open-files limit 20000): 15000 clients a worker\n"));
    assert_non_null(strstr(text, "plan      3 source addresses (auto, from 127.0.0.2): 30000 connections to "
                                 "127.0.0.1:9001, 10000 a source, of 12705 ports a source (half of 32768-60999, "
                                 "less 10%)"));
    assert_non_null(strstr(text, "close timeout 32.0s (auto)\n"));
    assert_int_equal(PLAN("-c", "100", "--close-timeout", "3s", FOUR_URLS), 0);
    fp = fmemopen(text, sizeof text - 1, "w");
    lg_plan_print(fp, &P);
    fclose(fp);
    assert_non_null(strstr(text, "plan      1 worker (auto: 100 clients"));
    assert_non_null(strstr(text, "plan      the kernel's source address (auto: one is enough): 25 connections to "
                                 "127.0.0.1:9001 (the busiest), of 12705 ports a source"));
    assert_non_null(strstr(text, "close timeout 3.0s\n"));
}

/* This host's values are read, whatever they are. */
static void test_env_read(void **state)
{
    (void)state;
    struct lg_plan_env env;
    lg_plan_env_read(&env);
    assert_true(env.fd_limit > 0);
    assert_true(env.port_lo > 0 && env.port_lo <= env.port_hi && env.port_hi <= 65535);
}

int main(void)
{
#define T(f) cmocka_unit_test_teardown(f, teardown)
    const struct CMUnitTest tests[] = {
        T(test_websocket_one_url),
        T(test_websocket_four_urls),
        T(test_polling),
        T(test_urls_sharing_a_destination),
        T(test_not_loopback),
        T(test_given_values_are_kept_and_warned),
        T(test_limits),
        T(test_close_timeout),
        T(test_apply),
        T(test_print),
        T(test_env_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
