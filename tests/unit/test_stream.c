/* stream: plain and TLS over loopback TCP, outbound (connect, result, handshake) against inbound (accept, server
 * TLS): bytes both ways, writev order, drain past the socket buffers, a refused connect, a failed handshake's text,
 * the poll events and close. Certificates are made by the openssl CLI in a temporary directory, as test_tls does;
 * the TLS tests skip without it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/stream.h"
#include "tests/unit/certs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define STEPS 200

static char dir[64];
static bool have_certs;

struct ends {
    struct tls_ctx *cctx, *sctx;
    struct stream c, s;
    int lfd, cfd, sfd;
    char err[ERR_LEN];
};

static const char *path(const char *name)
{
    static char p[4][128];
    static int next;
    char *out = p[next++ % 4];
    snprintf(out, sizeof p[0], "%s/%s", dir, name);
    return out;
}

static void wait_for(int fd, int events)
{
    struct pollfd pf = {.fd = fd,
                        .events = (short)((events & STREAM_READ ? POLLIN : 0) | (events & STREAM_WRITE ? POLLOUT : 0))};
    assert_true(poll(&pf, 1, 5000) == 1);
}

static int setup(void **state)
{
    struct ends *e = calloc(1, sizeof *e);
    char err[ERR_LEN];
    struct net_addr a = {.len = sizeof(struct sockaddr_in)};
    struct sockaddr_in *in = (struct sockaddr_in *)&a.ss;
    in->sin_family = AF_INET; /* port 0: the kernel picks one (net_parse_addr refuses it) */
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    e->cfd = e->sfd = -1;
    *state = e;
    e->lfd = net_listen(&a, 16, false, err, sizeof err);
    return e->lfd < 0 ? -1 : 0;
}

static int teardown(void **state)
{
    struct ends *e = *state;
    stream_close(&e->c, e->cfd);
    stream_close(&e->s, e->sfd);
    close(e->lfd);
    tls_ctx_free(e->cctx);
    tls_ctx_free(e->sctx);
    free(e);
    return 0;
}

/* Connect to the listener (TLS when ctx, with name) and accept the other end (server TLS when sctx). */
static void open_ends(struct ends *e, struct tls_ctx *ctx, const char *name, struct tls_ctx *sctx)
{
    struct net_addr a = {.len = sizeof a.ss};
    assert_int_equal(getsockname(e->lfd, (struct sockaddr *)&a.ss, &a.len), 0);
    e->c.tls = (struct tls_conn *)&e->c; /* stream_connect must start plain whatever it held */
    e->cfd = stream_connect(&e->c, &a, NULL);
    assert_true(e->cfd >= 0);
    assert_null(e->c.tls);
    wait_for(e->cfd, STREAM_WRITE);
    assert_int_equal(stream_connected(&e->c, e->cfd), 0);
    assert_int_equal(stream_start_tls(&e->c, e->cfd, ctx, name), 0);
    assert_true(ctx ? e->c.tls != NULL : e->c.tls == NULL);
    wait_for(e->lfd, STREAM_READ);
    e->sfd = net_accept(e->lfd, NULL);
    assert_true(e->sfd >= 0);
    assert_int_equal(stream_accept(&e->s, e->sfd, sctx), 0);
    assert_true(sctx ? e->s.tls != NULL : e->s.tls == NULL);
}

/* Step both handshakes, each waiting for the events it asked for; the client's status. */
static enum io_status handshake(struct ends *e, enum io_status *server)
{
    enum io_status cs = IO_AGAIN, ss = IO_AGAIN;
    int cev = STREAM_WRITE, sev = STREAM_READ;
    char serr[ERR_LEN];
    for (int i = 0; i < STEPS && (cs == IO_AGAIN || ss == IO_AGAIN); i++) {
        if (cs == IO_AGAIN)
            cs = stream_handshake(&e->c, &cev, e->err, sizeof e->err);
        if (ss == IO_AGAIN)
            ss = stream_handshake(&e->s, &sev, serr, sizeof serr);
        if (cs == IO_AGAIN)
            assert_true(cev == STREAM_READ || cev == STREAM_WRITE);
    }
    *server = ss;
    return cs;
}

/* Send n bytes from one end to the other, draining a buf while reading the far side; the bytes received. */
static size_t transfer(struct stream *from, int ffd, struct stream *to, int tfd, const char *data, size_t n,
                       struct buf *in)
{
    struct buf out = {0};
    assert_int_equal(buf_append(&out, data, n), 0);
    for (int i = 0; i < 100000 && buf_len(in) < n; i++) {
        bool want_write = false;
        int err = 0;
        assert_int_equal(stream_drain(from, ffd, &out, &want_write), 0);
        assert_true(want_write == (buf_len(&out) > 0));
        enum io_status st;
        while ((st = stream_read(to, tfd, in, 16384, &err)) == IO_OK)
            ;
        assert_int_equal(st, IO_AGAIN);
        assert_int_equal(stream_events(to, STREAM_READ), STREAM_READ);
    }
    buf_free(&out);
    return buf_len(in);
}

/* Both ends talk: a megabyte one way (partial writes), a writev of three buffers (one empty) the other. */
static void exchange(struct ends *e)
{
    size_t n = 1 << 20;
    char *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 7);
    struct buf in = {0};
    assert_int_equal(transfer(&e->c, e->cfd, &e->s, e->sfd, data, n, &in), n);
    assert_memory_equal(buf_head(&in), data, n);
    buf_free(&in);
    free(data);

    struct iovec iov[3] = {{"abc", 3}, {"", 0}, {"defg", 4}};
    size_t written = 0;
    int err = 0;
    assert_int_equal(stream_writev(&e->s, e->sfd, iov, 3, &written, &err), IO_OK);
    assert_int_equal(written, 7);
    assert_int_equal(stream_write(&e->s, e->sfd, "h", 1, &written, &err), IO_OK);
    assert_int_equal(written, 1);
    for (int i = 0; i < STEPS && buf_len(&in) < 8; i++) {
        wait_for(e->cfd, STREAM_READ);
        while (stream_read(&e->c, e->cfd, &in, 1024, &err) == IO_OK)
            ;
    }
    assert_int_equal(buf_len(&in), 8);
    assert_memory_equal(buf_head(&in), "abcdefgh", 8);
    buf_free(&in);
}

static void test_plain(void **state)
{
    struct ends *e = *state;
    enum io_status ss;
    int ev = -1;
    open_ends(e, NULL, NULL, NULL);
    assert_int_equal(stream_handshake(&e->c, &ev, e->err, sizeof e->err), IO_OK); /* nothing to do */
    assert_int_equal(ev, 0);
    assert_int_equal(handshake(e, &ss), IO_OK);
    exchange(e);
    /* the caller's wants pass through untouched */
    assert_int_equal(stream_events(&e->c, STREAM_READ | STREAM_WRITE), STREAM_READ | STREAM_WRITE);
    assert_int_equal(stream_events(&e->c, 0), 0);
    assert_false(stream_read_wants_write(&e->c));
    assert_false(stream_write_wants_read(&e->c));
    assert_string_equal(stream_strerror(&e->c, EPROTO), strerror(EPROTO));
}

static void test_plain_eof_and_close(void **state)
{
    struct ends *e = *state;
    struct buf in = {0};
    int err = 0;
    open_ends(e, NULL, NULL, NULL);
    stream_close(&e->c, e->cfd);
    assert_int_equal(fcntl(e->cfd, F_GETFD), -1); /* the fd is closed */
    e->cfd = -1;
    wait_for(e->sfd, STREAM_READ);
    assert_int_equal(stream_read(&e->s, e->sfd, &in, 1024, &err), IO_EOF);
    buf_free(&in);
}

static void test_refused(void **state)
{
    struct ends *e = *state;
    struct net_addr a = {.len = sizeof a.ss};
    assert_int_equal(getsockname(e->lfd, (struct sockaddr *)&a.ss, &a.len), 0);
    close(e->lfd); /* nobody listens there now */
    e->lfd = -1;
    e->cfd = stream_connect(&e->c, &a, NULL);
    assert_true(e->cfd >= 0);
    wait_for(e->cfd, STREAM_WRITE);
    assert_int_equal(stream_connected(&e->c, e->cfd), ECONNREFUSED);
}

static void make_ctxs(struct ends *e, const char *ca)
{
    char err[ERR_LEN];
    if (!have_certs)
        skip();
    e->sctx = tls_server_ctx_new(path("server.crt"), path("server.key"), err, sizeof err);
    e->cctx = tls_client_ctx_new(path(ca), true, err, sizeof err);
    assert_non_null(e->sctx);
    assert_non_null(e->cctx);
}

static void test_tls(void **state)
{
    struct ends *e = *state;
    enum io_status ss;
    make_ctxs(e, "ca.crt");
    open_ends(e, e->cctx, "localhost", e->sctx);
    assert_int_equal(handshake(e, &ss), IO_OK);
    assert_int_equal(ss, IO_OK);
    exchange(e);
    assert_false(stream_read_wants_write(&e->c));
    assert_false(stream_write_wants_read(&e->c));
    assert_int_equal(stream_events(&e->c, STREAM_READ), STREAM_READ);
    assert_int_equal(stream_events(&e->c, STREAM_READ | STREAM_WRITE), STREAM_READ | STREAM_WRITE);
    stream_close(&e->c, e->cfd); /* close_notify first: the server reads a clean end */
    assert_null(e->c.tls);
    e->cfd = -1;
    struct buf in = {0};
    int err = 0;
    enum io_status st = IO_AGAIN;
    for (int i = 0; i < STEPS && st == IO_AGAIN; i++) {
        wait_for(e->sfd, STREAM_READ);
        st = stream_read(&e->s, e->sfd, &in, 1024, &err);
    }
    assert_int_equal(st, IO_EOF);
    buf_free(&in);
}

static void test_tls_wrong_ca(void **state)
{
    struct ends *e = *state;
    enum io_status ss;
    make_ctxs(e, "other.crt");
    open_ends(e, e->cctx, "localhost", e->sctx);
    assert_int_equal(handshake(e, &ss), IO_ERR);
    assert_non_null(strstr(e->err, "TLS handshake: "));
    assert_null(strstr(e->err, "TLS handshake: TLS handshake")); /* said once */
    assert_non_null(strstr(e->err, "certificate"));
}

/* Read from st until it leaves IO_AGAIN (bounded); the status. */
static enum io_status read_until(struct stream *st, int fd, struct buf *in)
{
    int err = 0;
    enum io_status r = IO_AGAIN;
    for (int i = 0; i < STEPS && r == IO_AGAIN; i++) {
        wait_for(fd, STREAM_READ);
        while ((r = stream_read(st, fd, in, 1024, &err)) == IO_OK)
            ;
    }
    return r;
}

/* stream_shutdown ends our direction only: the peer reads the end, and what it sends still arrives. */
static void shutdown_keeps_reading(struct ends *e)
{
    struct buf in = {0};
    size_t w = 0;
    int err = 0;
    stream_shutdown(&e->c, e->cfd);
    assert_int_equal(read_until(&e->s, e->sfd, &in), IO_EOF);
    assert_int_equal(stream_write(&e->s, e->sfd, "late", 4, &w, &err), IO_OK);
    assert_int_equal(w, 4);
    for (int i = 0; i < STEPS && buf_len(&in) < 4; i++) {
        wait_for(e->cfd, STREAM_READ);
        while (stream_read(&e->c, e->cfd, &in, 1024, &err) == IO_OK)
            ;
    }
    assert_int_equal(buf_len(&in), 4);
    assert_memory_equal(buf_head(&in), "late", 4);
    buf_free(&in);
    stream_drop(&e->c, e->cfd);
    assert_null(e->c.tls);
    assert_int_equal(fcntl(e->cfd, F_GETFD), -1);
    e->cfd = -1;
}

static void test_plain_shutdown(void **state)
{
    struct ends *e = *state;
    open_ends(e, NULL, NULL, NULL);
    shutdown_keeps_reading(e);
}

static void test_tls_shutdown(void **state)
{
    struct ends *e = *state;
    enum io_status ss;
    make_ctxs(e, "ca.crt");
    open_ends(e, e->cctx, "localhost", e->sctx);
    assert_int_equal(handshake(e, &ss), IO_OK);
    shutdown_keeps_reading(e);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    log_init("test_stream", LOG_LEVEL_ERR);
    have_certs = certs_make(dir, sizeof dir, "test_stream");
    return 0; /* without certificates the TLS tests skip */
}

static int group_teardown(void **state)
{
    (void)state;
    return certs_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_eof_and_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_wrong_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_shutdown, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
