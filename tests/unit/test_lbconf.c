/* lb.conf: every directive, the defaults, and errors reported with their line numbers, all in one pass; the
 * address a re-resolved backend name settles on; max-connections bound to the open-files limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lb/conf.h"
#include "lb/resolve.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define SEC INT64_C(1000000000)

static struct lb_conf conf;
static struct lb_conf_error errs[16];

static int parse(const char *text)
{
    memset(errs, 0, sizeof errs);
    return lb_conf_parse(text, &conf, errs, 16);
}

static void test_full_config(void **state)
{
    (void)state;
    const char *text = "# an lb\n"
                       "listen 127.0.0.1:8080\n"
                       "listen [::1]:8443 tls cert=/etc/lb/c.pem key=/etc/lb/k.pem   # TLS\n"
                       "admin 127.0.0.1:9100\n"
                       "\n"
                       "backend n1 127.0.0.1:9001 weight=3 cookie=a1\n"
                       "backend n2 localhost:9002\n"
                       "balance param:room\n"
                       "sticky prefix:io\n"
                       "health path=/healthz interval=500ms timeout=200ms rise=1 fall=2\n"
                       "timeout connect 2s\ntimeout tunnel 2h\ntimeout head 3s\ntimeout grace 5s\n"
                       "timeout server 1m\ntimeout client 45s\n"
                       "max-connections 50000\nmax-head 32k\nmax-headers 64\nworkers 2\nretries 0\n"
                       "forwarded-for off\nproxy-protocol on\nabort-on-close on\nresolve-interval 30s\n"
                       "panic-threshold 75%\n";
    assert_int_equal(parse(text), 0);
    assert_int_equal(conf.nlistens, 2);
    assert_false(conf.listens[0].tls);
    assert_true(conf.listens[1].tls);
    assert_string_equal(conf.listens[1].cert, "/etc/lb/c.pem");
    assert_int_equal(conf.listens[1].addr.ss.ss_family, AF_INET6);
    assert_true(conf.has_admin);
    assert_int_equal(conf.nbackends, 2);
    assert_string_equal(conf.backends[0].name, "n1");
    assert_int_equal(conf.backends[0].weight, 3);
    assert_string_equal(conf.backends[0].cookie, "a1");
    assert_string_equal(conf.backends[1].cookie, "n2"); /* defaults to the name */
    assert_int_equal(conf.backends[1].weight, 1);
    assert_int_equal(conf.balance, LB_BAL_PARAM);
    assert_string_equal(conf.balance_param, "room");
    assert_int_equal(conf.sticky, LB_STICKY_PREFIX);
    assert_string_equal(conf.cookie_name, "io");
    assert_string_equal(conf.health.path, "/healthz");
    assert_true(conf.health.interval_ns == SEC / 2 && conf.health.timeout_ns == SEC / 5);
    assert_true(conf.health.rise == 1 && conf.health.fall == 2);
    assert_true(conf.timeout_connect_ns == 2 * SEC && conf.timeout_tunnel_ns == 7200 * SEC);
    assert_true(conf.timeout_head_ns == 3 * SEC && conf.grace_ns == 5 * SEC);
    assert_true(conf.timeout_server_ns == 60 * SEC && conf.timeout_client_ns == 45 * SEC);
    assert_int_equal(conf.max_connections, 50000);
    assert_true(conf.max_connections_set);
    assert_int_equal(conf.panic_threshold, 75);
    assert_int_equal(conf.max_head, 32768);
    assert_int_equal(conf.max_headers, 64);
    assert_int_equal(conf.workers, 2);
    assert_int_equal(conf.retries, 0);
    assert_false(conf.forwarded_for);
    assert_true(conf.proxy_protocol);
    assert_true(conf.abort_on_close);
    assert_true(conf.resolve_interval_ns == 30 * SEC);
    /* only a name is looked up again; its parts are kept for that */
    assert_false(conf.backends[0].by_name);
    assert_true(conf.backends[1].by_name);
    assert_string_equal(conf.backends[1].host, "localhost");
    assert_string_equal(conf.backends[1].port, "9002");
}

static void test_defaults(void **state)
{
    (void)state;
    assert_int_equal(parse("listen 127.0.0.1:8080\nbackend n1 127.0.0.1:9001\n"), 0);
    assert_int_equal(conf.balance, LB_BAL_ROUNDROBIN);
    assert_int_equal(conf.sticky, LB_STICKY_NONE);
    assert_string_equal(conf.cookie_name, "SRVID");
    assert_true(conf.health.enabled);
    assert_string_equal(conf.health.path, "/");
    assert_true(conf.timeout_connect_ns == 5 * SEC && conf.timeout_tunnel_ns == 3600 * SEC);
    assert_true(conf.forwarded_for && !conf.proxy_protocol && !conf.abort_on_close);
    assert_int_equal(conf.max_head, 16384);
    assert_true(conf.resolve_interval_ns == 10 * SEC);
    assert_int_equal(conf.panic_threshold, 50); /* Envoy's default */
    assert_false(conf.max_connections_set);
    assert_int_equal(parse("listen 127.0.0.1:8080\nbackend n1 127.0.0.1:9001\npanic-threshold 0\n"), 0);
    assert_int_equal(conf.panic_threshold, 0);
    assert_int_equal(parse("listen :8080\nbackend n1 127.0.0.1:9001\nsticky cookie\nhealth off\n"), 0);
    assert_int_equal(conf.sticky, LB_STICKY_COOKIE);
    assert_string_equal(conf.cookie_name, "SRVID");
    assert_false(conf.health.enabled);
    assert_int_equal(parse("listen :8080\nbackend n1 [::1]:9001\nbackend n2 :9002\nresolve-interval off\n"), 0);
    assert_int_equal(conf.resolve_interval_ns, 0);
    assert_false(conf.backends[0].by_name); /* IP literals, v6 and the empty host too, never change */
    assert_false(conf.backends[1].by_name);
}

/* Each bad line must be reported with its own line number, and the good lines around it still apply. */
static void test_errors_carry_line_numbers(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "listen",                               /* no address */
        "listen 127.0.0.1",                     /* no port */
        "listen 127.0.0.1:0",                   /* port 0 */
        "listen 127.0.0.1:8443 tls",            /* no cert */
        "listen 127.0.0.1:8443 cert=a.pem",     /* cert without tls */
        "listen 127.0.0.1:80 http2",            /* unknown option */
        "backend n9",                           /* no address */
        "backend n9 127.0.0.1:9009 weight=300", /* weight */
        "backend n9 127.0.0.1:9009 weight=x",   /* weight */
        "backend n~9 127.0.0.1:9009",           /* name with the prefix separator */
        "backend n9 127.0.0.1:9009 cookie=a;b", /* cookie id */
        "backend n9 127.0.0.1:9009 color=red",  /* unknown option */
        "balance random",                       /* unknown algorithm */
        "balance param:",                       /* empty param */
        "sticky cookie:bad name",               /* two words */
        "sticky cookie:a=b",                    /* not a token */
        "sticky session",                       /* unknown */
        "health interval=0",                    /* zero */
        "health rise=0",                        /* out of range */
        "health path=healthz",                  /* no slash */
        "health every=2s",                      /* unknown */
        "timeout connect 5",                    /* no unit */
        "timeout forever 5s",                   /* unknown kind */
        "timeout tunnel",                       /* no value */
        "max-connections 0",                    /* out of range */
        "max-head 100",                         /* too small */
        "workers 65",                           /* too many */
        "forwarded-for yes",                    /* not on/off */
        "resolve-interval 0",                   /* zero: off says that */
        "resolve-interval abc",                 /* not a duration */
        "panic-threshold 101",                  /* over 100 */
        "panic-threshold half",                 /* not a number */
        "panic-threshold %",                    /* no number */
        "frobnicate 1",                         /* unknown directive */
    };
    char text[4096] = "listen 127.0.0.1:8080\nbackend n1 127.0.0.1:9001\n";
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        strcat(text, bad[i]);
        strcat(text, "\n");
    }
    memset(errs, 0, sizeof errs);
    struct lb_conf_error many[40];
    int n = lb_conf_parse(text, &conf, many, 40);
    assert_int_equal(n, (int)(sizeof bad / sizeof *bad));
    for (int i = 0; i < n; i++) {
        if (many[i].line != i + 3 || !many[i].msg[0])
            fail_msg("'%s': reported at line %d ('%s'), expected line %d", bad[i], many[i].line, many[i].msg, i + 3);
    }
    assert_non_null(strstr(many[0].msg, "listen"));
    assert_non_null(strstr(many[12].msg, "random"));
    assert_non_null(strstr(many[28].msg, "resolve-interval: must be more than 0"));
    assert_non_null(strstr(many[29].msg, "resolve-interval: 'abc' is not a duration"));
    assert_non_null(strstr(many[30].msg, "panic-threshold: '101' is not a percentage"));
    assert_non_null(strstr(many[33].msg, "frobnicate"));
    assert_int_equal(conf.nbackends, 1); /* the bad backends were not added */
}

static void test_whole_config_checks(void **state)
{
    (void)state;
    assert_int_equal(parse("# nothing\n"), 2);
    assert_non_null(strstr(errs[0].msg, "no listen"));
    assert_non_null(strstr(errs[1].msg, "no backend"));
    assert_int_equal(errs[0].line, 0);
    assert_int_equal(parse("listen 127.0.0.1:8080\nbackend n1 127.0.0.1:9001\nbackend n1 127.0.0.1:9002\n"), 1);
    assert_non_null(strstr(errs[0].msg, "used twice"));
    assert_int_equal(parse("listen 127.0.0.1:8080\nbackend n1 127.0.0.1:9001 cookie=x\n"
                           "backend n2 127.0.0.1:9002 cookie=x\n"),
                     1);
    assert_non_null(strstr(errs[0].msg, "cookie id"));
    assert_int_equal(parse("listen 127.0.0.1:8080\nadmin 127.0.0.1:8080\nbackend n1 127.0.0.1:9001\n"), 1);
    assert_non_null(strstr(errs[0].msg, "admin"));
    assert_int_equal(parse("listen 127.0.0.1:8080\nbackend n1 127.0.0.1:9001\nhealth interval=1s timeout=2s\n"), 1);
    assert_non_null(strstr(errs[0].msg, "shorter"));
}

static void test_error_cap_counts_all(void **state)
{
    (void)state;
    char text[2048] = "";
    for (int i = 0; i < 30; i++)
        strcat(text, "bogus\n");
    struct lb_conf_error few[3];
    assert_int_equal(lb_conf_parse(text, &conf, few, 3), 32); /* 30 lines + no listen + no backend */
    assert_int_equal(few[2].line, 3);
}

static struct net_addr v4(const char *ip, int port)
{
    struct net_addr a = {.len = sizeof(struct sockaddr_in)};
    struct sockaddr_in *in = (struct sockaddr_in *)&a.ss;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, ip, &in->sin_addr);
    return a;
}

/* A name with several addresses keeps the node where it is while that address is still among them (no flapping
 * on DNS round robin); otherwise the first. */
static void test_resolve_choose_is_stable(void **state)
{
    (void)state;
    struct net_addr cands[3] = {v4("10.0.0.1", 9001), v4("10.0.0.2", 9001), v4("10.0.0.3", 9001)};
    struct net_addr cur = v4("10.0.0.3", 9001);
    assert_int_equal(resolve_choose(&cur, cands, 3), 2);
    cur = v4("10.0.0.9", 9001);
    assert_int_equal(resolve_choose(&cur, cands, 3), 0);
    cur = v4("10.0.0.2", 9002); /* another port is another address */
    assert_int_equal(resolve_choose(&cur, cands, 3), 0);
}

/* Each worker has its own open-files limit; a connection takes 2 (client and node), LB_FD_RESERVE stay free. */
/* source: one address or an IPv4 range, numeric, of the backends' family; bad ones named with their line. */
static void test_source_addresses(void **state)
{
    (void)state;
    const char *base = "listen 127.0.0.1:8080\nbackend n1 127.0.0.1:9001\n";
    char text[256];
    snprintf(text, sizeof text, "%ssource 127.0.1.1-127.0.1.8\n", base);
    assert_int_equal(parse(text), 0);
    assert_int_equal(conf.nsources, 8);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&conf.source.ss;
    assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000101);
    assert_int_equal(sin->sin_port, 0);
    snprintf(text, sizeof text, "%ssource 127.0.1.9\n", base);
    assert_int_equal(parse(text), 0);
    assert_int_equal(conf.nsources, 1);
    assert_int_equal(parse(base), 0);
    assert_int_equal(conf.nsources, 0); /* default: the kernel picks */
    static const char *const bad[] = {"source 127.0.1.9-127.0.1.8", "source 10.0.0.0-10.0.1.0", "source nope", "source",
                                      "source 127.0.0.1:80",        "source 127.0.0.1-::2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(text, sizeof text, "%s%s\n", base, bad[i]);
        assert_int_equal(parse(text), 1);
        assert_int_equal(errs[0].line, 3);
        assert_non_null(strstr(errs[0].msg, "source:"));
    }
    snprintf(text, sizeof text, "%ssource ::1\n", base); /* an IPv6 source for an IPv4 node cannot bind */
    assert_int_equal(parse(text), 1);
    assert_non_null(strstr(errs[0].msg, "backend n1 is IPv4"));
}

static void test_max_connections_from_nofile(void **state)
{
    (void)state;
    assert_int_equal(lb_conf_fd_max_connections(20000, 1), (20000 - LB_FD_RESERVE) / 2);
    assert_int_equal(lb_conf_fd_max_connections(256, 1), 112);
    assert_int_equal(lb_conf_fd_max_connections(257, 1), 112); /* an odd descriptor left over buys nothing */
    assert_int_equal(lb_conf_fd_max_connections(256, 4), 448);
    assert_int_equal(lb_conf_fd_max_connections(LB_FD_RESERVE, 2), 2); /* at least one a worker */
    assert_int_equal(lb_conf_fd_max_connections(UINT64_MAX, 64), LB_MAX_CONNECTIONS);
    char warn[512];
    assert_int_equal(parse("listen :8080\nbackend n1 127.0.0.1:9001\nworkers 2\n"), 0);
    lb_conf_fit_descriptors(&conf, 256, warn, sizeof warn);
    assert_int_equal(conf.max_connections, 224); /* derived: 2 x 112 */
    assert_string_equal(warn, "");
    assert_int_equal(parse("listen :8080\nbackend n1 127.0.0.1:9001\nworkers 2\nmax-connections 224\n"), 0);
    lb_conf_fit_descriptors(&conf, 256, warn, sizeof warn);
    assert_int_equal(conf.max_connections, 224); /* configured, and it fits exactly */
    assert_string_equal(warn, "");
    assert_int_equal(parse("listen :8080\nbackend n1 127.0.0.1:9001\nworkers 2\nmax-connections 225\n"), 0);
    lb_conf_fit_descriptors(&conf, 256, warn, sizeof warn);
    assert_int_equal(conf.max_connections, 225); /* kept: a warning, not an error */
    /* 113 a worker x 2 + 32 = 258 > 256: the numbers, and the remedies */
    assert_non_null(strstr(warn, "max-connections 225 does not fit the open-files limit 256"));
    assert_non_null(strstr(warn, "need 258 per worker"));
    assert_non_null(strstr(warn, "ulimit -n 258"));
    assert_non_null(strstr(warn, "max-connections 224 or less"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_errors_carry_line_numbers),
        cmocka_unit_test(test_whole_config_checks),
        cmocka_unit_test(test_error_cap_counts_all),
        cmocka_unit_test(test_resolve_choose_is_stable),
        cmocka_unit_test(test_max_connections_from_nofile),
        cmocka_unit_test(test_source_addresses),
    };
    return cmocka_run_group_tests_name("lbconf", tests, NULL, NULL);
}
