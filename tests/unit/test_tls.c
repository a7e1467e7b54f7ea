/* tls: contexts from files (and their errors), handshakes over a non-blocking socketpair stepped by hand,
 * verification (CA, DNS name, IP), ALPN, a transfer larger than the socket buffers, EOF, garbage. Certificates
 * are made by the openssl CLI in a temporary directory; the tests skip without it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/net.h"
#include "common/tls.h"
#include "tests/unit/certs.h"

#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define STEPS 200

static char dir[64];
static bool have_certs;

struct pair {
    struct tls_ctx *cctx, *sctx;
    struct tls_conn *c, *s;
    int cfd, sfd;
    char cerr[ERR_LEN], serr[ERR_LEN];
};

static const char *path(const char *name)
{
    static char p[4][128];
    static int next;
    char *out = p[next++ % 4];
    snprintf(out, sizeof p[0], "%s/%s", dir, name);
    return out;
}

static int setup(void **state)
{
    struct pair *p = calloc(1, sizeof *p);
    char err[ERR_LEN];
    int sv[2];
    p->cfd = p->sfd = -1;
    *state = p;
    if (!have_certs)
        return 0;
    p->sctx = tls_server_ctx_new(path("server.crt"), path("server.key"), err, sizeof err);
    if (!p->sctx || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
        return -1;
    p->cfd = sv[0];
    p->sfd = sv[1];
    return 0;
}

static int teardown(void **state)
{
    struct pair *p = *state;
    tls_conn_free(p->c);
    tls_conn_free(p->s);
    tls_ctx_free(p->cctx);
    tls_ctx_free(p->sctx);
    if (p->cfd >= 0)
        close(p->cfd);
    if (p->sfd >= 0)
        close(p->sfd);
    free(p);
    return 0;
}

/* A client context (ca: file name in dir, or NULL for no verification) and both connections. */
static void connect_pair(struct pair *p, const char *ca, const char *name)
{
    char err[ERR_LEN];
    if (!have_certs)
        skip();
    p->cctx = tls_client_ctx_new(ca ? path(ca) : NULL, ca != NULL, err, sizeof err);
    if (!p->cctx)
        fail_msg("client ctx: %s", err);
    p->c = tls_conn_new(p->cctx, p->cfd, name);
    p->s = tls_conn_new(p->sctx, p->sfd, NULL);
    assert_non_null(p->c);
    assert_non_null(p->s);
}

/* Step both handshakes until neither wants more (or STEPS); returns the client's status. */
static enum io_status handshake(struct pair *p, enum io_status *server)
{
    enum io_status cs = IO_AGAIN, ss = IO_AGAIN;
    bool ww;
    for (int i = 0; i < STEPS && (cs == IO_AGAIN || ss == IO_AGAIN); i++) {
        if (cs == IO_AGAIN)
            cs = tls_handshake(p->c, &ww, p->cerr, sizeof p->cerr);
        if (ss == IO_AGAIN)
            ss = tls_handshake(p->s, &ww, p->serr, sizeof p->serr);
    }
    *server = ss;
    return cs;
}

static void test_ctx_errors(void **state)
{
    (void)state;
    char err[ERR_LEN];
    if (!have_certs)
        skip();
    assert_null(tls_server_ctx_new(path("missing.crt"), path("server.key"), err, sizeof err));
    assert_non_null(strstr(err, "missing.crt"));
    assert_null(tls_server_ctx_new(path("server.crt"), path("other.key"), err, sizeof err));
    assert_non_null(strstr(err, "other.key"));
    assert_null(tls_client_ctx_new(path("missing-ca.crt"), true, err, sizeof err));
    assert_non_null(strstr(err, "missing-ca.crt"));
    struct tls_ctx *t = tls_client_ctx_new(path("missing-ca.crt"), false, err, sizeof err);
    assert_non_null(t); /* not verifying: the CA file is not read */
    tls_ctx_free(t);
}

/* Move n bytes from->to through TLS, stepping both sides by hand; returns the bytes received. */
static size_t transfer(struct tls_conn *from, struct tls_conn *to, const char *data, size_t n, struct buf *in)
{
    size_t sent = 0;
    for (int i = 0; i < 100000 && buf_len(in) < n; i++) {
        size_t w = 0;
        bool flag;
        int e = 0;
        enum io_status st = tls_write(from, data + sent, n - sent, &w, &flag, &e);
        assert_true(st == IO_OK || st == IO_AGAIN);
        sent += w;
        while ((st = tls_read(to, in, 16384, &flag, &e)) == IO_OK)
            ;
        assert_int_equal(st, IO_AGAIN);
    }
    return buf_len(in);
}

static void test_handshake_and_transfer(void **state)
{
    struct pair *p = *state;
    enum io_status ss;
    connect_pair(p, "ca.crt", "localhost");
    assert_int_equal(handshake(p, &ss), IO_OK);
    assert_int_equal(ss, IO_OK);
    assert_string_equal(tls_conn_alpn(p->s), ""); /* our client offers none */

    size_t n = 1 << 20; /* well past the socketpair's buffers: partial writes and IO_AGAIN */
    char *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (char)(i * 7);
    struct buf in = {0};
    assert_int_equal(transfer(p->c, p->s, data, n, &in), n);
    assert_memory_equal(buf_head(&in), data, n);
    buf_free(&in);
    assert_int_equal(transfer(p->s, p->c, "pong", 4, &in), 4);
    assert_memory_equal(buf_head(&in), "pong", 4);
    buf_free(&in);
    free(data);
}

static void test_ip_address_name(void **state)
{
    struct pair *p = *state;
    enum io_status ss;
    connect_pair(p, "ca.crt", "127.0.0.1"); /* matched against the IP SAN; no SNI sent */
    assert_int_equal(handshake(p, &ss), IO_OK);
}

static void test_wrong_ca(void **state)
{
    struct pair *p = *state;
    enum io_status ss;
    connect_pair(p, "other.crt", "localhost");
    assert_int_equal(handshake(p, &ss), IO_ERR);
    assert_non_null(strstr(p->cerr, "certificate verify failed"));
    assert_true(ss == IO_ERR || ss == IO_EOF); /* the client's alert */
    assert_true(strlen(p->serr) > 0);
}

static void test_name_mismatch(void **state)
{
    struct pair *p = *state;
    enum io_status ss;
    connect_pair(p, "ca.crt", "example.com");
    assert_int_equal(handshake(p, &ss), IO_ERR);
    assert_non_null(strstr(p->cerr, "hostname mismatch"));
}

static void test_insecure_accepts_anything(void **state)
{
    struct pair *p = *state;
    enum io_status ss;
    connect_pair(p, NULL, "example.com");
    assert_int_equal(handshake(p, &ss), IO_OK);
}

static void test_eof(void **state)
{
    struct pair *p = *state;
    enum io_status ss;
    struct buf in = {0};
    bool ww;
    int e = 0;
    connect_pair(p, "ca.crt", "localhost");
    assert_int_equal(handshake(p, &ss), IO_OK);
    assert_int_equal(tls_read(p->c, &in, 1024, &ww, &e), IO_AGAIN);
    tls_shutdown(p->s); /* close_notify */
    assert_int_equal(tls_read(p->c, &in, 1024, &ww, &e), IO_EOF);
    buf_free(&in);
}

static void test_bare_close_mid_session(void **state)
{
    struct pair *p = *state;
    enum io_status ss;
    struct buf in = {0};
    bool ww;
    int e = 0;
    connect_pair(p, "ca.crt", "localhost");
    assert_int_equal(handshake(p, &ss), IO_OK);
    close(p->sfd);
    p->sfd = -1;
    assert_int_equal(tls_read(p->c, &in, 1024, &ww, &e), IO_EOF);
    buf_free(&in);
}

static void test_garbage_peer(void **state)
{
    struct pair *p = *state;
    bool ww;
    connect_pair(p, "ca.crt", "localhost");
    static const char reply[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
    assert_int_equal(write(p->sfd, reply, sizeof reply - 1), (ssize_t)(sizeof reply - 1));
    enum io_status st = IO_AGAIN;
    for (int i = 0; i < STEPS && st == IO_AGAIN; i++)
        st = tls_handshake(p->c, &ww, p->cerr, sizeof p->cerr);
    assert_int_equal(st, IO_ERR);
    assert_true(strlen(p->cerr) > strlen("TLS handshake: "));
}

/* A client we do not write (raw OpenSSL) offering protos: what does our server pick? */
static const char *alpn_with(struct pair *p, const unsigned char *protos, unsigned len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = SSL_new(ctx);
    bool ww;
    SSL_set_fd(ssl, p->cfd);
    SSL_set_connect_state(ssl);
    assert_int_equal(SSL_set_alpn_protos(ssl, protos, len), 0);
    p->s = tls_conn_new(p->sctx, p->sfd, NULL);
    enum io_status ss = IO_AGAIN;
    int rc = -1;
    for (int i = 0; i < STEPS && (rc != 1 || ss == IO_AGAIN); i++) {
        if (rc != 1)
            rc = SSL_do_handshake(ssl);
        if (ss == IO_AGAIN)
            ss = tls_handshake(p->s, &ww, p->serr, sizeof p->serr);
    }
    assert_int_equal(rc, 1);
    assert_int_equal(ss, IO_OK);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    return tls_conn_alpn(p->s);
}

static void test_alpn(void **state)
{
    struct pair *p = *state;
    if (!have_certs)
        skip();
    assert_string_equal(alpn_with(p, (const unsigned char *)"\x02h2\x08http/1.1", 12), "http/1.1");
}

static void test_alpn_none_in_common(void **state)
{
    struct pair *p = *state;
    if (!have_certs)
        skip();
    assert_string_equal(alpn_with(p, (const unsigned char *)"\x02h2", 3), ""); /* no alert: handshake goes on */
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    log_init("test_tls", LOG_LEVEL_ERR);
    have_certs = certs_make(dir, sizeof dir, "test_tls");
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
        cmocka_unit_test(test_ctx_errors),
        cmocka_unit_test_setup_teardown(test_handshake_and_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ip_address_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_insecure_accepts_anything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bare_close_mid_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_peer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alpn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alpn_none_in_common, setup, teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
