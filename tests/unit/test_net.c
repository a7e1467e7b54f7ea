/* net: address parsing, listen/accept/connect over loopback with a chosen source address, read/write status;
 * log: level names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

static void test_parse_addr(void **state)
{
    (void)state;
    struct net_addr a;
    char err[ERR_LEN], s[80];
    assert_int_equal(net_parse_addr("127.0.0.1:9001", &a, err, sizeof err), 0);
    net_addr_str(&a, s, sizeof s);
    assert_string_equal(s, "127.0.0.1:9001");
    assert_int_equal(net_parse_addr("[::1]:80", &a, err, sizeof err), 0);
    net_addr_str(&a, s, sizeof s);
    assert_string_equal(s, "[::1]:80");
    assert_int_equal(net_parse_addr(":8080", &a, err, sizeof err), 0);
    static const char *const bad[] = {"127.0.0.1",    "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:http",
                                      "localhost:80", "[::1:80",     "1.2.3.4.5:80",    "127.0.0.1:-1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        assert_int_equal(net_parse_addr(bad[i], &a, err, sizeof err), -1);
        assert_true(strlen(err) > 0);
    }
}

static int bound_port(int fd)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    getsockname(fd, (struct sockaddr *)&sin, &len);
    return ntohs(sin.sin_port);
}

static void wait_fd(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};
    assert_int_equal(poll(&p, 1, 2000), 1);
}

static void test_listen_connect_from_source(void **state)
{
    (void)state;
    struct net_addr la, dst, src;
    char err[ERR_LEN], text[64];
    net_parse_addr("127.0.0.1:1", &la, err, sizeof err);
    ((struct sockaddr_in *)&la.ss)->sin_port = 0;
    int lfd = net_listen(&la, 16, true, err, sizeof err);
    assert_true(lfd >= 0);
    snprintf(text, sizeof text, "127.0.0.1:%d", bound_port(lfd));
    net_parse_addr(text, &dst, err, sizeof err);
    net_parse_addr("127.0.0.7:1", &src, err, sizeof err);
    ((struct sockaddr_in *)&src.ss)->sin_port = 0;
    int cfd = net_connect(&dst, &src);
    assert_true(cfd >= 0);
    wait_fd(cfd, POLLOUT);
    assert_int_equal(net_connect_result(cfd), 0);
    wait_fd(lfd, POLLIN);
    struct net_addr peer;
    int sfd = net_accept(lfd, &peer);
    assert_true(sfd >= 0);
    net_addr_str(&peer, text, sizeof text);
    assert_memory_equal(text, "127.0.0.7:", 10); /* the chosen source address was used */

    struct iovec iov[2] = {{"ab", 2}, {"cde", 3}};
    size_t written;
    int e = 0;
    assert_int_equal(net_writev(cfd, iov, 2, &written, &e), IO_OK);
    assert_int_equal(written, 5);
    wait_fd(sfd, POLLIN);
    struct buf b = {0};
    assert_int_equal(net_read(sfd, &b, 64, &e), IO_OK);
    assert_int_equal(buf_len(&b), 5);
    assert_memory_equal(buf_head(&b), "abcde", 5);
    assert_int_equal(net_read(sfd, &b, 64, &e), IO_AGAIN);
    close(cfd);
    wait_fd(sfd, POLLIN);
    assert_int_equal(net_read(sfd, &b, 64, &e), IO_EOF);
    buf_free(&b);
    close(sfd);
    close(lfd);
}

static void test_listen_in_use_and_refused(void **state)
{
    (void)state;
    struct net_addr a;
    char err[ERR_LEN], text[64];
    net_parse_addr("127.0.0.1:1", &a, err, sizeof err);
    ((struct sockaddr_in *)&a.ss)->sin_port = 0;
    int lfd = net_listen(&a, 16, false, err, sizeof err);
    assert_true(lfd >= 0);
    snprintf(text, sizeof text, "127.0.0.1:%d", bound_port(lfd));
    net_parse_addr(text, &a, err, sizeof err);
    assert_int_equal(net_listen(&a, 16, false, err, sizeof err), -1);
    assert_non_null(strstr(err, "in use"));
    close(lfd);
    /* the port is free now (nobody listens): a connect is refused */
    int cfd = net_connect(&a, NULL);
    assert_true(cfd >= 0);
    wait_fd(cfd, POLLOUT);
    assert_int_equal(net_connect_result(cfd), ECONNREFUSED);
    close(cfd);
}

static void test_log_levels(void **state)
{
    (void)state;
    assert_int_equal(log_level_parse("err"), LOG_LEVEL_ERR);
    assert_int_equal(log_level_parse("error"), LOG_LEVEL_ERR);
    assert_int_equal(log_level_parse("debug"), LOG_LEVEL_DEBUG);
    assert_int_equal(log_level_parse("loud"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test(test_listen_connect_from_source),
        cmocka_unit_test(test_listen_in_use_and_refused),
        cmocka_unit_test(test_log_levels),
    };
    return cmocka_run_group_tests_name("net", tests, NULL, NULL);
}
