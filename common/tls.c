/* OpenSSL behind enum io_status. Every SSL call is preceded by ERR_clear_error() and errno = 0, because
 * SSL_get_error() reads the thread's error queue and the caller's errno: stale entries from an earlier failure on
 * another connection would otherwise turn a WANT_READ into a fatal error. */
#include "common/tls.h"

#include "common/buf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct tls_ctx {
    SSL_CTX *ssl;
    bool server;
    bool verify;
};

struct tls_conn {
    SSL *ssl;
    unsigned long ssl_err; /* first queued OpenSSL error of the last failure, for tls_conn_error */
    bool failed;           /* a fatal error happened: OpenSSL forbids SSL_shutdown afterwards */
    /* The last read or handshake needed the socket writable; the last write needed it readable. Kept here, in
     * padding the struct had anyway, so that the owners of plain-or-TLS streams need no flags of their own. */
    bool read_wants_write, write_wants_read;
};

/* Text from the OpenSSL error queue, prefixed by what we were doing. */
static void queue_error(char *err, size_t errlen, const char *what, const char *arg)
{
    unsigned long e = ERR_get_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "%s%s%s: %s", what, arg ? " " : "", arg ? arg : "", reason ? reason : "unknown TLS error");
    ERR_clear_error();
}

/* The settings both roles share: TLS 1.2 at least, writes that may be partial and may be retried from a buffer
 * that moved (our struct buf reallocs), idle connections that hold no record buffers, and a peer closing without
 * close_notify read as a plain EOF (our protocols frame their own messages, so truncation cannot go unnoticed). */
static struct tls_ctx *ctx_new(const SSL_METHOD *method, bool server, char *err, size_t errlen)
{
    static bool initialised;
    if (!initialised && !OPENSSL_init_ssl(0, NULL)) {
        queue_error(err, errlen, "cannot initialise OpenSSL", NULL);
        return NULL;
    }
    initialised = true;
    struct tls_ctx *t = calloc(1, sizeof *t);
    if (!t || !(t->ssl = SSL_CTX_new(method))) {
        free(t);
        queue_error(err, errlen, "cannot create a TLS context", NULL);
        return NULL;
    }
    t->server = server;
    SSL_CTX_set_min_proto_version(t->ssl, TLS1_2_VERSION);
    SSL_CTX_set_mode(t->ssl,
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_options(t->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    return t;
}

struct tls_ctx *tls_client_ctx_new(const char *ca_file, bool verify, char *err, size_t errlen)
{
    struct tls_ctx *t = ctx_new(TLS_client_method(), false, err, errlen);
    if (!t || !verify)
        return t;
    int ok = ca_file ? SSL_CTX_load_verify_locations(t->ssl, ca_file, NULL) : SSL_CTX_set_default_verify_paths(t->ssl);
    if (!ok) {
        queue_error(err, errlen, "cannot load CA certificates from", ca_file ? ca_file : "the system store");
        tls_ctx_free(t);
        return NULL;
    }
    t->verify = true;
    SSL_CTX_set_verify(t->ssl, SSL_VERIFY_PEER, NULL);
    return t;
}

/* ALPN: we speak HTTP/1.1 only. A client offering only other protocols gets no ALPN answer rather than a fatal
 * alert, as nginx does, so it can still try HTTP/1.1. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *chosen;
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&chosen, outlen, ours, sizeof ours - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
}

struct tls_ctx *tls_server_ctx_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    static const unsigned char sid_ctx[] = "wsharness";
    struct tls_ctx *t = ctx_new(TLS_server_method(), true, err, errlen);
    if (!t)
        return NULL;
    if (SSL_CTX_use_certificate_chain_file(t->ssl, cert_file) != 1) {
        queue_error(err, errlen, "cannot load certificate", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(t->ssl, key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(t->ssl) != 1) {
        queue_error(err, errlen, "cannot use private key", key_file);
        goto fail;
    }
    SSL_CTX_set_options(t->ssl, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_session_id_context(t->ssl, sid_ctx, sizeof sid_ctx - 1);
    SSL_CTX_set_alpn_select_cb(t->ssl, select_alpn, NULL);
    return t;
fail:
    tls_ctx_free(t);
    return NULL;
}

void tls_ctx_free(struct tls_ctx *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ssl); /* reference-counted: live connections keep it alive */
    free(t);
}

/* Client side: SNI (never for an IP literal, RFC 6066) and the name the certificate must carry. */
static int set_peer_name(SSL *ssl, const char *name, bool verify)
{
    unsigned char addr[16];
    bool ip = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
    if (!ip && !SSL_set_tlsext_host_name(ssl, name))
        return -1;
    if (!verify)
        return 0;
    if (ip)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) ? 0 : -1;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set1_host(ssl, name) ? 0 : -1;
}

struct tls_conn *tls_conn_new(struct tls_ctx *ctx, int fd, const char *server_name)
{
    struct tls_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->ssl = SSL_new(ctx->ssl);
    if (!c->ssl || !SSL_set_fd(c->ssl, fd))
        goto fail;
    if (ctx->server) {
        SSL_set_accept_state(c->ssl);
        return c;
    }
    SSL_set_connect_state(c->ssl);
    if (server_name && set_peer_name(c->ssl, server_name, ctx->verify) < 0)
        goto fail;
    return c;
fail:
    ERR_clear_error();
    SSL_free(c->ssl);
    free(c);
    return NULL;
}

/* What a failed SSL call (rc <= 0, sys_errno = errno right after it) means. On IO_AGAIN *why is
 * SSL_ERROR_WANT_READ or SSL_ERROR_WANT_WRITE; on IO_ERR *err is an errno, EPROTO for TLS-level errors. */
static enum io_status failure(struct tls_conn *c, int rc, int sys_errno, int *why, int *err)
{
    *why = SSL_get_error(c->ssl, rc);
    switch (*why) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: return IO_AGAIN;
    case SSL_ERROR_ZERO_RETURN: return IO_EOF;
    case SSL_ERROR_SYSCALL:
        c->failed = true;
        c->ssl_err = ERR_get_error();
        if (!sys_errno && !c->ssl_err)
            return IO_EOF; /* the peer closed without a word */
        *err = sys_errno ? sys_errno : EPROTO;
        return IO_ERR;
    default:
        c->failed = true;
        c->ssl_err = ERR_get_error();
        if (ERR_GET_REASON(c->ssl_err) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
            return IO_EOF;
        *err = EPROTO;
        return IO_ERR;
    }
}

enum io_status tls_handshake(struct tls_conn *c, bool *want_write, char *err, size_t errlen)
{
    int why, e = 0;
    *want_write = c->read_wants_write = false;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(c->ssl);
    if (rc == 1)
        return IO_OK;
    enum io_status st = failure(c, rc, errno, &why, &e);
    if (st == IO_AGAIN)
        *want_write = c->read_wants_write = why == SSL_ERROR_WANT_WRITE;
    else if (st == IO_EOF)
        snprintf(err, errlen, "TLS handshake: connection closed by peer");
    else
        snprintf(err, errlen, "TLS handshake: %s", e == EPROTO ? tls_conn_error(c) : strerror(e));
    ERR_clear_error();
    return st;
}

enum io_status tls_read(struct tls_conn *c, struct buf *b, size_t want, bool *want_write, int *err)
{
    size_t n = 0;
    int why;
    *want_write = c->read_wants_write = false;
    if (buf_reserve(b, want) < 0) {
        *err = ENOBUFS;
        return IO_ERR;
    }
    ERR_clear_error();
    errno = 0;
    int rc = SSL_read_ex(c->ssl, buf_tail(b), buf_room(b), &n);
    if (rc == 1) {
        buf_commit(b, n);
        return IO_OK;
    }
    enum io_status st = failure(c, rc, errno, &why, err);
    *want_write = c->read_wants_write = st == IO_AGAIN && why == SSL_ERROR_WANT_WRITE;
    return st;
}

enum io_status tls_write(struct tls_conn *c, const void *data, size_t len, size_t *written, bool *want_read, int *err)
{
    int why;
    *written = 0;
    *want_read = c->write_wants_read = false;
    if (!len)
        return IO_OK; /* SSL_write of nothing is an error in some OpenSSL versions */
    ERR_clear_error();
    errno = 0;
    int rc = SSL_write_ex(c->ssl, data, len, written);
    if (rc == 1)
        return IO_OK;
    enum io_status st = failure(c, rc, errno, &why, err);
    *want_read = c->write_wants_read = st == IO_AGAIN && why == SSL_ERROR_WANT_READ;
    return st;
}

void tls_conn_wants(const struct tls_conn *c, bool *read_wants_write, bool *write_wants_read)
{
    *read_wants_write = c->read_wants_write;
    *write_wants_read = c->write_wants_read;
}

int tls_drain(struct tls_conn *c, int fd, struct buf *out, bool *want_write)
{
    bool want_read = false;
    int err = 0;
    *want_write = false;
    while (buf_len(out)) {
        size_t n = 0;
        enum io_status st;
        if (c) {
            st = tls_write(c, buf_head(out), buf_len(out), &n, &want_read, &err);
        } else {
            ssize_t w = send(fd, buf_head(out), buf_len(out), MSG_NOSIGNAL);
            err = errno;
            st = w > 0 ? IO_OK : w < 0 && (err == EAGAIN || err == EINTR) ? IO_AGAIN : IO_ERR;
            n = w > 0 ? (size_t)w : 0;
        }
        if (st == IO_AGAIN) {
            *want_write = !want_read;
            return 0;
        }
        if (st != IO_OK) {
            errno = st == IO_EOF ? EPIPE : err;
            return -1;
        }
        buf_consume(out, n);
    }
    buf_release_if_empty(out);
    return 0;
}

/* The text lives in a static buffer, valid until the next call (one loop per process, no threads). */
const char *tls_conn_error(const struct tls_conn *c)
{
    static char text[256];
    unsigned long e = c->ssl_err;
    if (!e)
        return "no TLS error recorded";
    if (ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        long v = SSL_get_verify_result(c->ssl);
        snprintf(text, sizeof text, "certificate verify failed: %s", X509_verify_cert_error_string(v));
        return text;
    }
    const char *reason = ERR_reason_error_string(e);
    if (reason)
        return reason;
    ERR_error_string_n(e, text, sizeof text);
    return text;
}

const char *tls_conn_alpn(const struct tls_conn *c)
{
    static char text[256];
    const unsigned char *p;
    unsigned int n;
    SSL_get0_alpn_selected(c->ssl, &p, &n);
    memcpy(text, p ? (const char *)p : "", p ? n : 0);
    text[p ? n : 0] = '\0';
    return text;
}

void tls_shutdown(struct tls_conn *c)
{
    if (!c || c->failed || !SSL_is_init_finished(c->ssl))
        return;
    ERR_clear_error();
    SSL_shutdown(c->ssl); /* one try: the peer's close_notify is not worth waiting for */
    ERR_clear_error();
}

void tls_conn_free(struct tls_conn *c)
{
    if (!c)
        return;
    SSL_free(c->ssl);
    free(c);
}
