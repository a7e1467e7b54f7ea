/* Test helper shared by the TLS tests: a CA, another CA, and a server certificate for localhost and 127.0.0.1 signed
 * by the first, made by the openssl CLI in a fresh temporary directory (the tests skip when it fails). */
#ifndef TESTS_UNIT_CERTS_H
#define TESTS_UNIT_CERTS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* Make the files in a new directory /tmp/<prefix>.XXXXXX, named in dir: ca.crt, other.crt (and their keys),
 * server.crt and server.key. False when the openssl CLI could not make them (dir is still made: certs_remove it). */
static bool certs_make(char *dir, size_t dirlen, const char *prefix)
{
    char cmd[2048];
    snprintf(dir, dirlen, "/tmp/%s.XXXXXX", prefix);
    if (!mkdtemp(dir))
        return false;
    snprintf(cmd, sizeof cmd,
             "(cd %s && K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes' && "
             "openssl req -x509 $K -keyout ca.key -out ca.crt -subj /CN=wsh-test-ca -days 2 && "
             "openssl req -x509 $K -keyout other.key -out other.crt -subj /CN=wsh-other-ca -days 2 && "
             "openssl req $K -keyout server.key -out server.csr -subj /CN=localhost && "
             "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext && "
             "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt "
             "-days 2 -extfile san.ext) >/dev/null 2>&1",
             dir);
    return system(cmd) == 0;
}

/* Remove the directory certs_make made. 0, or -1. */
static int certs_remove(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

#endif
