/* bus: URL parsing, fail-fast publishing while down, and against real redis-server processes (started here on
 * free loopback ports and stopped by PID): ordered pub/sub, patterns, unsubscribe, reconnect after SIGKILL,
 * AUTH, TLS with a CA made here by the openssl CLI. A fake in-process server feeds garbage and resets. Every wait
 * is bounded; tests needing redis-server skip when it is not on PATH. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/bus.h"
#include "common/log.h"
#include "common/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_SECONDS 5.0
#define MAX_PROCS    4
#define MAX_FAKE_FDS 64

/* Run the loop until cond holds or secs pass; the fixture's tick timer bounds each EVRUN_ONCE. */
#define WAIT_FOR(f, cond, secs)                                                                                        \
    do {                                                                                                               \
        double until_ = now() + (secs);                                                                                \
        while (!(cond) && now() < until_)                                                                              \
            ev_run((f)->loop, EVRUN_ONCE);                                                                             \
    } while (0)

static char tmpdir[64];
static bool have_redis, have_certs;

/* What a bus told us. */
struct rec {
    char events[32]; /* 'U' and 'D' per on_link call */
    size_t nevents;
    size_t msgs, seq, bytes, probes;
    bool out_of_order;
    char channel[64], data[64];
    size_t channel_len, data_len;
    long long receivers[8]; /* on_published, in order */
    size_t nreplies;
};

struct fixture {
    struct ev_loop *loop;
    ev_timer tick;
    pid_t procs[MAX_PROCS];
    int port;
    struct bus *bus[4];
    struct rec rec[4];
    int lfd;
    ev_io accept_w;
    int fake_fds[MAX_FAKE_FDS];
    int nfake;
    double retry_max; /* for the buses open_bus makes */
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_message(void *ctx, const char *channel, size_t channel_len, const char *data, size_t len)
{
    struct rec *r = ctx;
    r->msgs++;
    r->bytes += len;
    r->probes += len == 5 && !memcmp(data, "probe", 5);
    r->channel_len = channel_len;
    memcpy(r->channel, channel, channel_len < sizeof r->channel ? channel_len : sizeof r->channel);
    r->data_len = len;
    memcpy(r->data, data, len < sizeof r->data ? len : sizeof r->data);
    /* "m<seq>" messages must arrive in publish order. */
    if (len > 1 && data[0] == 'm' && data[1] >= '0' && data[1] <= '9') {
        if (strtoul(data + 1, NULL, 10) != r->seq)
            r->out_of_order = true;
        r->seq++;
    }
}

static void on_link(void *ctx, bool up)
{
    struct rec *r = ctx;
    if (r->nevents < sizeof r->events - 1)
        r->events[r->nevents++] = up ? 'U' : 'D';
}

static void on_published(void *ctx, long long receivers)
{
    struct rec *r = ctx;
    if (r->nreplies < sizeof r->receivers / sizeof *r->receivers)
        r->receivers[r->nreplies] = receivers;
    r->nreplies++;
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

static bool on_path(const char *prog)
{
    const char *path = getenv("PATH");
    char buf[4096];
    while (path && *path) {
        size_t n = strcspn(path, ":");
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, path, prog);
        if (access(buf, X_OK) == 0)
            return true;
        path += n + (path[n] == ':');
    }
    return false;
}

static int free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static bool port_open(int port)
{
    struct sockaddr_in sin = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof sin) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* redis-server on f->port with the common options plus extra (NULL-terminated); waits until it accepts. */
static void start_redis(struct fixture *f, const char *const *extra)
{
    char port[16], logfile[128];
    const char *argv[32] = {"redis-server", "--bind", "127.0.0.1", "--save",    "",     "--appendonly",
                            "no",           "--dir",  tmpdir,      "--logfile", logfile};
    int n = 11, slot = 0;
    snprintf(port, sizeof port, "%d", f->port);
    snprintf(logfile, sizeof logfile, "%s/redis-%d.log", tmpdir, f->port);
    for (; *extra && n < 31; extra++)
        argv[n++] = strcmp(*extra, "PORT") ? *extra : port;
    argv[n] = NULL;
    while (slot < MAX_PROCS && f->procs[slot] > 0)
        slot++;
    assert_true(slot < MAX_PROCS);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 1);
        dup2(null, 2);
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    f->procs[slot] = pid;
    double until = now() + WAIT_SECONDS;
    while (!port_open(f->port) && now() < until && waitpid(pid, NULL, WNOHANG) == 0)
        usleep(10000);
    assert_true(port_open(f->port));
}

/* Stop every redis-server we started, by PID. */
static void stop_redis(struct fixture *f, int sig)
{
    for (int i = 0; i < MAX_PROCS; i++) {
        if (f->procs[i] <= 0)
            continue;
        kill(f->procs[i], sig);
        waitpid(f->procs[i], NULL, 0);
        f->procs[i] = 0;
    }
}

static struct bus *open_bus(struct fixture *f, int i, const char *url, const char *ca_file, bool insecure,
                            size_t max_pending)
{
    char err[ERR_LEN] = "";
    struct bus_options o = {.url = url,
                            .ca_file = ca_file,
                            .tls_insecure = insecure,
                            .max_pending = max_pending,
                            .on_message = on_message,
                            .on_link = on_link,
                            .on_published = on_published,
                            .retry_max = f->retry_max,
                            .ctx = &f->rec[i]};
    f->bus[i] = bus_new(f->loop, &o, err, sizeof err);
    if (!f->bus[i])
        fail_msg("bus_new(%s): %s", url, err);
    return f->bus[i];
}

/* "<prefix>:<port>", from a small ring of buffers so a test can hold a few at once. */
static const char *url_for(const struct fixture *f, const char *prefix)
{
    static char url[4][128];
    static int next;
    char *u = url[next++ % 4];
    snprintf(u, sizeof url[0], "%s:%d", prefix, f->port);
    return u;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    ev_timer_init(&f->tick, tick_cb, 0.02, 0.02);
    ev_timer_start(f->loop, &f->tick);
    f->port = free_port();
    f->lfd = -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 4; i++)
        bus_free(f->bus[i]);
    stop_redis(f, SIGTERM);
    ev_io_stop(f->loop, &f->accept_w);
    for (int i = 0; i < f->nfake; i++)
        if (f->fake_fds[i] >= 0)
            close(f->fake_fds[i]);
    if (f->lfd >= 0)
        close(f->lfd);
    ev_timer_stop(f->loop, &f->tick);
    ev_loop_destroy(f->loop);
    free(f);
    return 0;
}

/* ---- without a server ---- */

static void test_url_parsing(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *url, *describe;
    } good[] = {
        {"redis://127.0.0.1", "redis://127.0.0.1:6379"},
        {"redis://127.0.0.1:6380/0", "redis://127.0.0.1:6380"},
        {"rediss://:s3cret@example.com:6390", "rediss://example.com:6390"},
        {"redis://user:p%40ss@[::1]:7000/3", "redis://[::1]:7000"},
        {"REDIS://cache.internal", "redis://cache.internal:6379"},
        {"redis://u:p@ss@host:1", "redis://host:1"},
    };
    static const char *const bad[] = {"",
                                      "http://h",
                                      "redis:/h",
                                      "redis://",
                                      "redis://:6379",
                                      "redis://h:0",
                                      "redis://h:65536",
                                      "redis://h:abc",
                                      "redis://h:",
                                      "redis://[::1",
                                      "redis://[::1]x",
                                      "redis://::1:6379",
                                      "redis://user@h",
                                      "redis://:@h",
                                      "redis://:%zz@h",
                                      "redis://u:p@",
                                      "redis://:topsecret@h:99999",
                                      "redis://h:-1"};
    char err[ERR_LEN];
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        struct bus_options o = {.url = good[i].url, .tls_insecure = true, .on_message = on_message};
        struct bus *b = bus_new(f->loop, &o, err, sizeof err);
        if (!b)
            fail_msg("%s: %s", good[i].url, err);
        assert_string_equal(bus_describe(b), good[i].describe);
        assert_false(bus_is_up(b));
        bus_free(b);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct bus_options o = {.url = bad[i], .on_message = on_message};
        err[0] = '\0';
        if (bus_new(f->loop, &o, err, sizeof err))
            fail_msg("%s was accepted", bad[i]);
        assert_true(strlen(err) > 0);
        assert_null(strstr(err, "topsecret"));
    }
    struct bus_options o = {.url = NULL};
    assert_null(bus_new(f->loop, &o, err, sizeof err));
    o = (struct bus_options){.url = "rediss://127.0.0.1", .ca_file = "/nonexistent/ca.pem"};
    assert_null(bus_new(f->loop, &o, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
}

/* Nothing listens: the bus retries with backoff, never comes up, and refuses publishes (counted). */
static void test_down_publish_fails(void **state)
{
    struct fixture *f = *state;
    struct bus *b = open_bus(f, 0, url_for(f, "redis://127.0.0.1"), NULL, false, 0);
    assert_int_equal(bus_subscribe(b, "wsh#room", 8), 0);
    double until = now() + 1.0;
    WAIT_FOR(f, false, until - now());
    assert_false(bus_is_up(b));
    assert_int_equal(f->rec[0].nevents, 0);
    uint64_t errors = bus_get_stats(b)->errors;
    assert_true(errors >= 3 && errors <= 6); /* 0, ~0.1, ~0.3, ~0.7 s: backoff, not a spin */
    assert_int_equal(bus_publish(b, "wsh#room", 8, "x", 1), -1);
    assert_int_equal(bus_get_stats(b)->publish_failed, 1);
    assert_int_equal(bus_get_stats(b)->reconnects, 0);
}

/* ---- against redis-server ---- */

static void plain_redis(struct fixture *f)
{
    static const char *const args[] = {"--port", "PORT", NULL};
    if (!have_redis)
        skip();
    start_redis(f, args);
}

static bool both_up(const struct fixture *f)
{
    return bus_is_up(f->bus[0]) && bus_is_up(f->bus[1]);
}

static void test_pubsub_in_order(void **state)
{
    struct fixture *f = *state;
    plain_redis(f);
    struct bus *a = open_bus(f, 0, url_for(f, "redis://127.0.0.1"), NULL, false, 0);
    struct bus *b = open_bus(f, 1, url_for(f, "redis://127.0.0.1"), NULL, false, 0);
    assert_int_equal(bus_subscribe(a, "wsh#room", 8), 0);
    WAIT_FOR(f, both_up(f), WAIT_SECONDS);
    assert_true(both_up(f));
    assert_string_equal(f->rec[0].events, "U");
    char msg[32];
    size_t bytes = 0;
    for (int i = 0; i < 1000; i++) {
        size_t n = (size_t)snprintf(msg, sizeof msg, "m%d", i);
        assert_int_equal(bus_publish(b, "wsh#room", 8, msg, n), 0);
        bytes += n;
    }
    WAIT_FOR(f, f->rec[0].msgs == 1000 && bus_get_stats(b)->published == 1000, WAIT_SECONDS);
    assert_int_equal(f->rec[0].msgs, 1000);
    assert_false(f->rec[0].out_of_order);
    assert_memory_equal(f->rec[0].channel, "wsh#room", 8);
    assert_int_equal(bus_get_stats(a)->received, 1000);
    assert_int_equal(bus_get_stats(b)->published, 1000);
    assert_int_equal(bus_get_stats(b)->publish_failed, 0);
    assert_int_equal(f->rec[1].msgs, 0); /* b subscribed to nothing */

    /* Large messages: partial writes on our side, replies split across reads on theirs. */
    size_t big = 300000;
    char *p = malloc(big);
    memset(p, 'x', big);
    for (int i = 0; i < 20; i++)
        assert_int_equal(bus_publish(b, "wsh#room", 8, p, big), 0);
    free(p);
    WAIT_FOR(f, f->rec[0].msgs == 1020, WAIT_SECONDS);
    assert_int_equal(f->rec[0].msgs, 1020);
    assert_int_equal(f->rec[0].bytes, bytes + 20 * big);
}

/* max_pending bounds what a live link may hold unsent. */
static void test_publish_over_max_pending(void **state)
{
    struct fixture *f = *state;
    plain_redis(f);
    struct bus *b = open_bus(f, 0, url_for(f, "redis://127.0.0.1"), NULL, false, 4096);
    WAIT_FOR(f, bus_is_up(b), WAIT_SECONDS);
    assert_true(bus_is_up(b));
    static char big[5000];
    assert_int_equal(bus_publish(b, "c", 1, big, sizeof big), -1);
    assert_int_equal(bus_publish(b, "c", 1, big, 100), 0);
    assert_int_equal(bus_get_stats(b)->publish_failed, 1);
    WAIT_FOR(f, bus_get_stats(b)->published == 1, WAIT_SECONDS);
    assert_int_equal(bus_get_stats(b)->published, 1);
}

/* Publish probe on channel until a receives something there (a subscription made while up has no confirmation
 * the caller can see, so we wait for its effect). */
static void probe(struct fixture *f, const char *channel, size_t len)
{
    size_t before = f->rec[0].msgs;
    double until = now() + WAIT_SECONDS;
    while (f->rec[0].msgs == before && now() < until) {
        bus_publish(f->bus[1], channel, len, "probe", 5);
        WAIT_FOR(f, f->rec[0].msgs != before, 0.05);
    }
    assert_true(f->rec[0].msgs > before);
}

static void test_pattern_and_binary_channels(void **state)
{
    struct fixture *f = *state;
    plain_redis(f);
    struct bus *a = open_bus(f, 0, url_for(f, "redis://127.0.0.1"), NULL, false, 0);
    open_bus(f, 1, url_for(f, "redis://127.0.0.1"), NULL, false, 0);
    assert_int_equal(bus_psubscribe(a, "wsh#*", 5), 0);
    WAIT_FOR(f, both_up(f), WAIT_SECONDS);
    assert_true(both_up(f));
    assert_int_equal(bus_publish(f->bus[1], "wsh#lobby", 9, "hello", 5), 0);
    assert_int_equal(bus_publish(f->bus[1], "other", 5, "nope", 4), 0);
    WAIT_FOR(f, f->rec[0].msgs == 1, WAIT_SECONDS);
    WAIT_FOR(f, false, 0.1); /* "other" must not show up */
    assert_int_equal(f->rec[0].msgs, 1);
    assert_int_equal(f->rec[0].channel_len, 9);
    assert_memory_equal(f->rec[0].channel, "wsh#lobby", 9); /* the actual channel, not the pattern */
    assert_memory_equal(f->rec[0].data, "hello", 5);

    /* Subscribed while up, with a NUL inside the name. */
    static const char bin[] = {'b', 'i', 'n', '\0', 'x'};
    assert_int_equal(bus_subscribe(a, bin, sizeof bin), 0);
    probe(f, bin, sizeof bin);
    assert_int_equal(f->rec[0].channel_len, sizeof bin);
    assert_memory_equal(f->rec[0].channel, bin, sizeof bin);
    assert_int_equal(bus_punsubscribe(a, "wsh#*", 5), 0);
    size_t before = f->rec[0].msgs - f->rec[0].probes;
    assert_int_equal(bus_publish(f->bus[1], "wsh#lobby", 9, "late", 4), 0);
    probe(f, bin, sizeof bin); /* published after "late" on the same connection, so "late" had its chance */
    assert_int_equal(f->rec[0].msgs - f->rec[0].probes, before);
}

/* Subscribers Redis counts on channel (through hiredis' own client: a test-side probe only). */
static long long numsub(const struct fixture *f, const char *channel)
{
    redisContext *c = redisConnect("127.0.0.1", f->port);
    assert_true(c && !c->err);
    redisReply *r = redisCommand(c, "PUBSUB NUMSUB %s", channel);
    assert_true(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2);
    long long n = r->element[1]->integer;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

static void test_unsubscribe_refcounted(void **state)
{
    struct fixture *f = *state;
    plain_redis(f);
    struct bus *a = open_bus(f, 0, url_for(f, "redis://127.0.0.1"), NULL, false, 0);
    open_bus(f, 1, url_for(f, "redis://127.0.0.1"), NULL, false, 0);
    assert_int_equal(bus_subscribe(a, "wsh#room", 8), 0);
    assert_int_equal(bus_subscribe(a, "wsh#room", 8), 0);
    assert_int_equal(bus_subscribe(a, "wsh#sentinel", 12), 0);
    WAIT_FOR(f, both_up(f), WAIT_SECONDS);
    assert_true(both_up(f));
    assert_int_equal(numsub(f, "wsh#room"), 1);
    assert_int_equal(bus_unsubscribe(a, "wsh#room", 8), 0); /* one reference left */
    probe(f, "wsh#sentinel", 12);
    assert_int_equal(numsub(f, "wsh#room"), 1);
    assert_int_equal(bus_publish(f->bus[1], "wsh#room", 8, "still", 5), 0);
    WAIT_FOR(f, f->rec[0].data_len == 5 && !memcmp(f->rec[0].data, "still", 5), WAIT_SECONDS);
    assert_memory_equal(f->rec[0].data, "still", 5);

    assert_int_equal(bus_unsubscribe(a, "wsh#room", 8), 0); /* the last one: UNSUBSCRIBE */
    assert_int_equal(bus_unsubscribe(a, "never", 5), 0);    /* unknown: a no-op */
    size_t before = f->rec[0].msgs - f->rec[0].probes;
    for (int i = 0; i < 5; i++)
        assert_int_equal(bus_publish(f->bus[1], "wsh#room", 8, "gone", 4), 0);
    probe(f, "wsh#sentinel", 12);
    assert_int_equal(f->rec[0].msgs - f->rec[0].probes, before); /* only probes */
    assert_int_equal(numsub(f, "wsh#room"), 0);
}

/* SIGKILL Redis: both buses see one loss, publishes fail (counted, none lost from the books), and after a
 * restart on the same port both come back, re-subscribed. */
static void test_reconnect_after_kill(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = {"--port", "PORT", NULL};
    plain_redis(f);
    struct bus *a = open_bus(f, 0, url_for(f, "redis://127.0.0.1"), NULL, false, 0);
    struct bus *b = open_bus(f, 1, url_for(f, "redis://127.0.0.1"), NULL, false, 0);
    assert_int_equal(bus_subscribe(a, "wsh#room", 8), 0);
    WAIT_FOR(f, both_up(f), WAIT_SECONDS);
    assert_true(both_up(f));
    for (int i = 0; i < 50; i++)
        assert_int_equal(bus_publish(b, "wsh#room", 8, "m", 1), 0);
    stop_redis(f, SIGKILL);
    WAIT_FOR(f, f->rec[0].nevents == 2 && f->rec[1].nevents == 2, WAIT_SECONDS);
    assert_string_equal(f->rec[0].events, "UD");
    assert_string_equal(f->rec[1].events, "UD");
    assert_false(bus_is_up(a));
    assert_int_equal(bus_publish(b, "wsh#room", 8, "m", 1), -1);
    const struct bus_stats *st = bus_get_stats(b);
    assert_int_equal(st->published + st->publish_failed, 51);
    assert_true(bus_get_stats(a)->errors >= 1);

    start_redis(f, args);
    WAIT_FOR(f, both_up(f), WAIT_SECONDS);
    assert_string_equal(f->rec[0].events, "UDU");
    assert_string_equal(f->rec[1].events, "UDU");
    assert_int_equal(bus_get_stats(a)->reconnects, 1);
    assert_int_equal(bus_get_stats(b)->reconnects, 1);
    size_t before = f->rec[0].msgs;
    assert_int_equal(bus_publish(b, "wsh#room", 8, "again", 5), 0);
    WAIT_FOR(f, f->rec[0].msgs == before + 1, WAIT_SECONDS);
    assert_memory_equal(f->rec[0].data, "again", 5);
}

/* Each PUBLISH's receiver count comes back in order; Redis' confirmation of each subscription is known. */
static void test_receivers_and_confirmations(void **state)
{
    struct fixture *f = *state;
    plain_redis(f);
    struct bus *a = open_bus(f, 0, url_for(f, "redis://127.0.0.1"), NULL, false, 0);
    struct bus *b = open_bus(f, 1, url_for(f, "redis://127.0.0.1"), NULL, false, 0);
    assert_int_equal(bus_subscribe(a, "wsh#room", 8), 0);
    assert_int_equal(bus_psubscribe(a, "p#*", 3), 0);
    assert_false(bus_confirmed(a, false, "wsh#room", 8));
    WAIT_FOR(f, both_up(f), WAIT_SECONDS);
    assert_true(bus_confirmed(a, false, "wsh#room", 8));
    assert_true(bus_confirmed(a, true, "p#*", 3));
    assert_false(bus_confirmed(a, false, "p#*", 3));
    assert_false(bus_confirmed(a, false, "wsh#other", 9));
    assert_int_equal(bus_down_since(a), 0);
    assert_int_equal(bus_publish(b, "wsh#room", 8, "m0", 2), 0);
    assert_int_equal(bus_publish(b, "wsh#other", 9, "m", 1), 0);
    assert_int_equal(bus_publish(b, "p#x", 3, "m1", 2), 0);
    WAIT_FOR(f, f->rec[1].nreplies == 3, WAIT_SECONDS);
    assert_int_equal(f->rec[1].nreplies, 3);
    assert_int_equal(f->rec[1].receivers[0], 1);
    assert_int_equal(f->rec[1].receivers[1], 0);
    assert_int_equal(f->rec[1].receivers[2], 1);
    /* a new subscription is unconfirmed until Redis answers */
    assert_int_equal(bus_subscribe(a, "wsh#late", 8), 0);
    assert_false(bus_confirmed(a, false, "wsh#late", 8));
    WAIT_FOR(f, bus_confirmed(a, false, "wsh#late", 8), WAIT_SECONDS);
    assert_true(bus_confirmed(a, false, "wsh#late", 8));
    assert_int_equal(bus_unsubscribe(a, "wsh#late", 8), 0);
    assert_false(bus_confirmed(a, false, "wsh#late", 8));
}

/* With retry_max, a bus that has been down a while is back within about retry_max of Redis' return, and says why
 * it was down meanwhile. Without it the backoff would have grown to seconds. */
static void test_fast_retry_after_a_long_outage(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = {"--port", "PORT", NULL};
    f->retry_max = 0.25;
    plain_redis(f);
    struct bus *a = open_bus(f, 0, url_for(f, "redis://127.0.0.1"), NULL, false, 0);
    struct bus *b = open_bus(f, 1, url_for(f, "redis://127.0.0.1"), NULL, false, 0);
    assert_int_equal(bus_subscribe(a, "wsh#room", 8), 0);
    WAIT_FOR(f, both_up(f), WAIT_SECONDS);
    assert_true(both_up(f));
    stop_redis(f, SIGKILL);
    WAIT_FOR(f, false, 4.0); /* long enough for a doubling backoff to pass 2 s */
    assert_false(bus_is_up(a));
    assert_true(bus_down_since(a) > 0);
    assert_false(bus_confirmed(a, false, "wsh#room", 8));
    assert_non_null(strstr(bus_last_error(a), "refused"));
    start_redis(f, args);
    double t0 = now();
    WAIT_FOR(f, both_up(f), WAIT_SECONDS);
    assert_true(both_up(f));
    if (now() - t0 > 1.5)
        fail_msg("back %.2f s after Redis was, with retry_max 0.25 s", now() - t0);
    assert_true(bus_confirmed(a, false, "wsh#room", 8));
    (void)b;
}

static void test_auth(void **state)
{
    struct fixture *f = *state;
    static const char *const args[] = {"--port", "PORT", "--requirepass", "s3cret", NULL};
    if (!have_redis)
        skip();
    start_redis(f, args);
    struct bus *a = open_bus(f, 0, url_for(f, "redis://:s3cret@127.0.0.1"), NULL, false, 0);
    struct bus *b = open_bus(f, 1, url_for(f, "redis://default:s3cret@127.0.0.1"), NULL, false, 0);
    struct bus *wrong = open_bus(f, 2, url_for(f, "redis://:wrong@127.0.0.1"), NULL, false, 0);
    struct bus *none = open_bus(f, 3, url_for(f, "redis://127.0.0.1"), NULL, false, 0);
    assert_int_equal(bus_subscribe(a, "wsh#room", 8), 0);
    assert_int_equal(bus_subscribe(none, "wsh#room", 8), 0); /* SUBSCRIBE answered with NOAUTH */
    WAIT_FOR(f, both_up(f), WAIT_SECONDS);
    assert_true(both_up(f));
    assert_int_equal(bus_publish(b, "wsh#room", 8, "secret-ok", 9), 0);
    WAIT_FOR(f, f->rec[0].msgs == 1, WAIT_SECONDS);
    assert_memory_equal(f->rec[0].data, "secret-ok", 9);
    WAIT_FOR(f, false, 0.3);
    assert_false(bus_is_up(wrong));
    assert_false(bus_is_up(none));
    assert_true(bus_get_stats(wrong)->errors >= 1);
    assert_true(bus_get_stats(none)->errors >= 1);
    assert_int_equal(f->rec[2].nevents + f->rec[3].nevents, 0);
    assert_null(strstr(bus_describe(a), "s3cret"));
}

/* A CA, a server certificate for localhost/127.0.0.1 signed by it, and an unrelated CA, in tmpdir. */
static bool make_certs(void)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd %s && K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes' && "
             "openssl req -x509 $K -keyout ca.key -out ca.crt -subj /CN=wsh-test-ca -days 2 && "
             "openssl req -x509 $K -keyout other.key -out other.crt -subj /CN=wsh-other-ca -days 2 && "
             "openssl req $K -keyout server.key -out server.csr -subj /CN=localhost && "
             "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext && "
             "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt "
             "-days 2 -extfile san.ext",
             tmpdir);
    char quiet[2200];
    snprintf(quiet, sizeof quiet, "(%s) >/dev/null 2>&1", cmd);
    return system(quiet) == 0;
}

static void test_tls(void **state)
{
    struct fixture *f = *state;
    char cert[128], key[128], ca[128], other[128];
    if (!have_redis || !have_certs)
        skip();
    snprintf(cert, sizeof cert, "%s/server.crt", tmpdir);
    snprintf(key, sizeof key, "%s/server.key", tmpdir);
    snprintf(ca, sizeof ca, "%s/ca.crt", tmpdir);
    snprintf(other, sizeof other, "%s/other.crt", tmpdir);
    const char *const args[] = {"--port",
                                "0",
                                "--tls-port",
                                "PORT",
                                "--tls-cert-file",
                                cert,
                                "--tls-key-file",
                                key,
                                "--tls-ca-cert-file",
                                ca,
                                "--tls-auth-clients",
                                "no",
                                NULL};
    start_redis(f, args);
    struct bus *a = open_bus(f, 0, url_for(f, "rediss://127.0.0.1"), ca, false, 0);
    struct bus *b = open_bus(f, 1, url_for(f, "rediss://127.0.0.1"), ca, false, 0);
    struct bus *wrong = open_bus(f, 2, url_for(f, "rediss://127.0.0.1"), other, false, 0);
    struct bus *insecure = open_bus(f, 3, url_for(f, "rediss://127.0.0.1"), other, true, 0);
    assert_int_equal(bus_subscribe(a, "wsh#room", 8), 0);
    WAIT_FOR(f, both_up(f) && bus_is_up(insecure), WAIT_SECONDS);
    assert_true(both_up(f));
    assert_true(bus_is_up(insecure));
    assert_string_equal(bus_describe(a), url_for(f, "rediss://127.0.0.1"));
    char msg[32];
    for (int i = 0; i < 500; i++)
        assert_int_equal(bus_publish(b, "wsh#room", 8, msg, (size_t)snprintf(msg, sizeof msg, "m%d", i)), 0);
    size_t big = 200000;
    char *p = calloc(1, big);
    for (int i = 0; i < 10; i++)
        assert_int_equal(bus_publish(b, "wsh#room", 8, p, big), 0);
    free(p);
    WAIT_FOR(f, f->rec[0].msgs == 510 && bus_get_stats(b)->published == 510, WAIT_SECONDS);
    assert_int_equal(f->rec[0].msgs, 510);
    assert_false(f->rec[0].out_of_order);
    assert_int_equal(bus_get_stats(b)->published, 510);
    WAIT_FOR(f, bus_get_stats(wrong)->errors >= 2, WAIT_SECONDS);
    assert_false(bus_is_up(wrong)); /* verification against the wrong CA fails, again and again */
    assert_true(bus_get_stats(wrong)->errors >= 2);
    assert_int_equal(f->rec[2].nevents, 0);
}

/* ---- a fake server that misbehaves ---- */

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct fixture *f = (struct fixture *)(void *)((char *)w - offsetof(struct fixture, accept_w));
    int fd;
    (void)loop;
    (void)revents;
    while ((fd = net_accept(f->lfd, NULL)) >= 0) {
        if (f->nfake < MAX_FAKE_FDS)
            f->fake_fds[f->nfake++] = fd;
        else
            close(fd);
    }
}

enum fake_end { KEEP = 0, FIN, RST };

/* Send bytes to the connections accepted since index from, then keep them, close them or reset them. */
static void fake_send(struct fixture *f, int from, const char *bytes, size_t len, enum fake_end end)
{
    for (int i = from; i < f->nfake; i++) {
        if (f->fake_fds[i] < 0)
            continue;
        if (len)
            assert_int_equal(write(f->fake_fds[i], bytes, len), (ssize_t)len);
        if (end == KEEP)
            continue;
        if (end == RST) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            setsockopt(f->fake_fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        }
        close(f->fake_fds[i]);
        f->fake_fds[i] = -1;
    }
}

static void test_fake_server_garbage(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *bytes;
        enum fake_end end;
    } rounds[] = {
        {"!!garbage\r\n", KEEP},                                                /* not RESP */
        {"*3\r\n$7\r\nmessage\r\n$1\r\nx", RST},                                /* cut mid-reply, then RST */
        {"$999999999\r\nabc", FIN},                                             /* a huge bulk that never comes */
        {"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n", KEEP}, /* nested too deep */
        {":1\r\n", KEEP},                                                       /* an answer to nothing */
        {"*2\r\n$7\r\nmessage\r\n$1\r\nx\r\n", KEEP},                           /* a push of the wrong shape */
        {"", RST},                                                              /* plain RST */
    };
    struct net_addr addr;
    char err[ERR_LEN], text[64];
    snprintf(text, sizeof text, "127.0.0.1:%d", f->port);
    assert_int_equal(net_parse_addr(text, &addr, err, sizeof err), 0);
    f->lfd = net_listen(&addr, 16, false, err, sizeof err);
    assert_true(f->lfd >= 0);
    ev_io_init(&f->accept_w, accept_cb, f->lfd, EV_READ);
    ev_io_start(f->loop, &f->accept_w);
    struct bus *b = open_bus(f, 0, url_for(f, "redis://127.0.0.1"), NULL, false, 0);
    for (size_t i = 0; i < sizeof rounds / sizeof *rounds; i++) {
        int accepted = f->nfake;
        WAIT_FOR(f, bus_is_up(b) && f->nfake == accepted + 2, WAIT_SECONDS);
        assert_true(bus_is_up(b)); /* no password, no subscriptions: up once both connect */
        assert_int_equal(f->nfake, accepted + 2);
        if (i == 0)
            assert_int_equal(bus_publish(b, "c", 1, "x", 1), 0); /* pending on a link about to break */
        fake_send(f, accepted, rounds[i].bytes, strlen(rounds[i].bytes), rounds[i].end);
        if (i == 6) {
            /* Publish into the reset before the loop sees it: the write fails outside the bus's callbacks. */
            usleep(20000);
            assert_int_equal(bus_publish(b, "c", 1, "x", 1), 0);
        }
        WAIT_FOR(f, !bus_is_up(b), WAIT_SECONDS);
        assert_false(bus_is_up(b));
    }
    assert_int_equal(f->rec[0].nevents, 2 * sizeof rounds / sizeof *rounds);
    assert_int_equal(bus_get_stats(b)->publish_failed, 2);
    assert_int_equal(bus_get_stats(b)->received, 0);
    assert_true(bus_get_stats(b)->errors >= sizeof rounds / sizeof *rounds);
    assert_int_equal(bus_get_stats(b)->reconnects, sizeof rounds / sizeof *rounds - 1);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    log_init("test_bus", getenv("BUS_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERR);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_bus.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    have_redis = on_path("redis-server");
    have_certs = on_path("openssl") && make_certs();
    return 0;
}

static int group_teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_url_parsing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_down_publish_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pubsub_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_over_max_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pattern_and_binary_channels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsubscribe_refcounted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconnect_after_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receivers_and_confirmations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fast_retry_after_a_long_outage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fake_server_garbage, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
