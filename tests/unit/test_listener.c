/* listener: batched accepts over loopback listeners, the gate at max and its resume on listener_left, the back-off
 * on EMFILE (a lowered RLIMIT_NOFILE) with one warning per episode, the fail hook, and stop with a drain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/listener.h"
#include "common/log.h"
#include "common/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define MAX_CONNS 256

struct sink {
    uint32_t open; /* the gate's count: accepted and not yet "left" */
    int fds[MAX_CONNS], nfds;
    int index[MAX_CONNS];
    int fails, fail_err;
    bool claim; /* the fail hook says it logged the failure itself */
};

static void on_conn(void *ctx, int fd, int index, const struct net_addr *peer)
{
    struct sink *k = ctx;
    assert_int_equal(peer->ss.ss_family, AF_INET);
    assert_true(k->nfds < MAX_CONNS);
    k->index[k->nfds] = index;
    k->fds[k->nfds++] = fd;
    k->open++;
}

static bool on_fail(void *ctx, int err)
{
    struct sink *k = ctx;
    k->fails++;
    k->fail_err = err;
    return k->claim;
}

static int listen_loopback(int *port)
{
    struct net_addr a;
    char err[ERR_LEN];
    assert_int_equal(net_parse_addr("127.0.0.1:1", &a, err, sizeof err), 0);
    ((struct sockaddr_in *)&a.ss)->sin_port = 0;
    int fd = net_listen(&a, 512, false, err, sizeof err);
    assert_true(fd >= 0);
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    getsockname(fd, (struct sockaddr *)&sin, &len);
    *port = ntohs(sin.sin_port);
    return fd;
}

/* n blocking connects to port: on loopback each is complete (queued for accept) when connect returns. */
static void connect_n(int port, int n, int *out)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < n; i++) {
        out[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(out[i] >= 0);
        assert_int_equal(connect(out[i], (struct sockaddr *)&sin, sizeof sin), 0);
    }
}

static void close_all(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

static struct listener *start(struct ev_loop *loop, struct sink *k, const int *lfd, int n, uint32_t max)
{
    char err[ERR_LEN];
    struct listener_config c = {.who = "test",
                                .fds = lfd,
                                .nfds = n,
                                .max = max,
                                .count = &k->open,
                                .on_accept = on_conn,
                                .on_fail = on_fail,
                                .ctx = k};
    struct listener *l = listener_start(loop, &c, err, sizeof err);
    assert_non_null(l);
    return l;
}

static void test_batch(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct sink k = {0};
    int lfd[2], port[2], clients[100];
    lfd[0] = listen_loopback(&port[0]);
    lfd[1] = listen_loopback(&port[1]);
    struct listener *l = start(loop, &k, lfd, 2, 0);
    connect_n(port[1], 100, clients);
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(k.nfds, LISTENER_BATCH); /* one wakeup takes one batch; the rest wait for the next */
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(k.nfds, 100);
    for (int i = 0; i < k.nfds; i++)
        assert_int_equal(k.index[i], 1);
    assert_true(listener_active(l));
    listener_free(l);
    close_all(k.fds, k.nfds);
    close_all(clients, 100);
    close_all(lfd, 2);
    ev_loop_destroy(loop);
}

static void test_gate_and_left(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct sink k = {0};
    int port, clients[5];
    int lfd = listen_loopback(&port);
    struct listener *l = start(loop, &k, &lfd, 1, 3);
    connect_n(port, 5, clients);
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(k.nfds, 3);
    assert_false(listener_active(l)); /* at the gate: the other two wait in the backlog */
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(k.nfds, 3);
    listener_left(l); /* the count is still 3: nothing to resume */
    assert_false(listener_active(l));
    k.open--;
    listener_left(l);
    assert_true(listener_active(l));
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(k.nfds, 4);
    assert_false(listener_active(l));
    k.open -= 2;
    listener_left(l);
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(k.nfds, 5);
    assert_true(listener_active(l));
    listener_free(l);
    close_all(k.fds, k.nfds);
    close_all(clients, 5);
    close(lfd);
    ev_loop_destroy(loop);
}

/* Send stderr to a temporary file until captured_stderr() gives back what was written there. */
static int saved_stderr = -1;
static FILE *capture;

static void capture_stderr(void)
{
    fflush(stderr);
    capture = tmpfile();
    assert_non_null(capture);
    saved_stderr = dup(2);
    assert_true(saved_stderr >= 0);
    dup2(fileno(capture), 2);
}

static char *captured_stderr(void)
{
    static char text[8192];
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    rewind(capture);
    size_t n = fread(text, 1, sizeof text - 1, capture);
    text[n] = '\0';
    fclose(capture);
    return text;
}

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* Lower the soft open-files limit to the lowest free descriptor, so the next one anybody makes fails with EMFILE;
 * returns the limit to put back. */
static rlim_t starve(void)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rlim_t saved = rl.rlim_cur;
    int probe = dup(0);
    assert_true(probe >= 0);
    close(probe);
    rl.rlim_cur = (rlim_t)probe;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    return saved;
}

static void unstarve(rlim_t saved)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = saved;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

static void on_stop_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w, (void)revents;
    ev_break(loop, EVBREAK_ONE);
}

/* Run loop for s seconds. */
static void run_secs(struct ev_loop *loop, double s)
{
    ev_timer t;
    ev_timer_init(&t, on_stop_timer, s, 0);
    ev_timer_start(loop, &t);
    ev_run(loop, 0);
    ev_timer_stop(loop, &t);
}

static void test_emfile_backs_off_and_warns_once_per_episode(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct sink k = {0};
    int port, clients[3];
    int lfd = listen_loopback(&port);
    struct listener *l = start(loop, &k, &lfd, 1, 0);
    connect_n(port, 3, clients);
    capture_stderr();
    rlim_t saved = starve();
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(k.fails, 1);
    assert_int_equal(k.fail_err, EMFILE);
    assert_false(listener_active(l)); /* backing off: the queued connection would wake a level-triggered loop */
    run_secs(loop, 0.35);             /* the back-off ends, fails again, ... */
    int fails = k.fails;
    assert_in_range(fails, 2, 10); /* about one per LISTENER_BACKOFF_S, not a busy loop */
    unstarve(saved);
    run_secs(loop, 0.2);
    assert_int_equal(k.nfds, 3); /* after the back-off, the queue is served */
    assert_int_equal(k.fails, fails);
    char *log = captured_stderr();
    assert_int_equal(count(log, "test: accept: Too many open files (0 connections open); pausing accepts for 100 ms"),
                     1);
    assert_int_equal(count(log, "failures over"), 0); /* not quiet for LISTENER_QUIET_S yet */

    /* a success after a quiet LISTENER_QUIET_S ends the episode; the next failure begins another */
    capture_stderr();
    usleep((useconds_t)(LISTENER_QUIET_S * 1e6) + 50000);
    connect_n(port, 1, clients);
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(k.nfds, 4);
    connect_n(port, 1, clients + 1);
    saved = starve();
    ev_run(loop, EVRUN_NOWAIT);
    unstarve(saved);
    log = captured_stderr();
    char over[64];
    snprintf(over, sizeof over, "%d accept(s) failed meanwhile", fails);
    assert_int_equal(count(log, over), 1);
    assert_int_equal(count(log, "pausing accepts"), 1);
    assert_int_equal(k.fails, fails + 1);
    listener_free(l);
    close_all(k.fds, k.nfds);
    close_all(clients, 3);
    close(lfd);
    ev_loop_destroy(loop);
}

static void test_fail_hook_claims_the_log(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct sink k = {.claim = true};
    int port, client;
    int lfd = listen_loopback(&port);
    struct listener *l = start(loop, &k, &lfd, 1, 0);
    connect_n(port, 1, &client);
    capture_stderr();
    rlim_t saved = starve();
    ev_run(loop, EVRUN_NOWAIT);
    unstarve(saved);
    char *log = captured_stderr();
    assert_int_equal(k.fails, 1);
    assert_false(listener_active(l)); /* paused all the same */
    assert_int_equal(count(log, "accept"), 0);
    run_secs(loop, 0.3);
    assert_int_equal(k.nfds, 1);
    listener_free(l);
    close_all(k.fds, k.nfds);
    close(client);
    close(lfd);
    ev_loop_destroy(loop);
}

static void test_stop_drains_within_the_gate(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct sink k = {0};
    int port, clients[6];
    int lfd = listen_loopback(&port);
    struct listener *l = start(loop, &k, &lfd, 1, 4);
    connect_n(port, 3, clients);
    listener_stop(l, true); /* without running the loop: the queue is taken now */
    assert_int_equal(k.nfds, 3);
    assert_false(listener_active(l));
    connect_n(port, 3, clients + 3);
    listener_stop(l, true); /* once only */
    assert_int_equal(k.nfds, 3);
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(k.nfds, 3);
    k.open = 0;
    listener_left(l); /* a stopped listener stays stopped */
    assert_false(listener_active(l));
    listener_free(l);
    close_all(k.fds, k.nfds);
    close_all(clients, 6);
    close(lfd);
    ev_loop_destroy(loop);
}

static void test_bad_config(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char err[ERR_LEN] = "";
    int fd = 0;
    struct listener_config none = {.who = "x", .fds = &fd, .nfds = 0, .on_accept = on_conn};
    assert_null(listener_start(loop, &none, err, sizeof err));
    assert_true(strlen(err) > 0);
    struct listener_config no_count = {.who = "x", .fds = &fd, .nfds = 1, .max = 1, .on_accept = on_conn};
    assert_null(listener_start(loop, &no_count, err, sizeof err));
    listener_free(NULL);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_gate_and_left),
        cmocka_unit_test(test_emfile_backs_off_and_warns_once_per_episode),
        cmocka_unit_test(test_fail_hook_claims_the_log),
        cmocka_unit_test(test_stop_drains_within_the_gate),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests_name("listener", tests, NULL, NULL);
}
