/* libFuzzer target for lb/conf.c: lb.conf is read from disk by an operator, but `lb --check` is meant to be run on
 * anything (CI checks configs people wrote), so no input may crash it, loop, or report nonsense.
 *
 * Input: any bytes, taken as a config file's text (cut at the first NUL, as a file read into a C string is).
 * Invariants abort():
 *  - the error count is >= 0, and every stored error has a line between 0 and the number of lines, and a message;
 *  - a config with no error has a listener and a backend, unique backend names and cookie ids, and values in range.
 * Host names would be resolved with getaddrinfo, which could wait on DNS: this file's getaddrinfo answers numeric
 * hosts only (it wins over libc's at link time), so the fuzzer stays fast and offline. */
#include "lb/conf.h"

#include <netdb.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    static struct addrinfo ai;
    static struct sockaddr_in sin;
    (void)hints;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    if (!node || inet_pton(AF_INET, node, &sin.sin_addr) != 1)
        return EAI_NONAME;
    sin.sin_port = htons((uint16_t)atoi(service ? service : "0"));
    ai = (struct addrinfo){
        .ai_family = AF_INET, .ai_socktype = SOCK_STREAM, .ai_addrlen = sizeof sin, .ai_addr = (struct sockaddr *)&sin};
    *res = &ai;
    return 0;
}

void freeaddrinfo(struct addrinfo *res)
{
    (void)res;
}

static void check(int ok)
{
    if (!ok)
        abort();
}

static void check_valid(const struct lb_conf *c)
{
    check(c->nlistens >= 1 && c->nlistens <= LB_MAX_LISTENS);
    check(c->nbackends >= 1 && c->nbackends <= LB_MAX_BACKENDS);
    for (int i = 0; i < c->nbackends; i++) {
        check(c->backends[i].weight <= 256 && c->backends[i].name[0] && c->backends[i].cookie[0]);
        for (int j = 0; j < i; j++)
            check(strcmp(c->backends[i].name, c->backends[j].name) != 0 &&
                  strcmp(c->backends[i].cookie, c->backends[j].cookie) != 0);
    }
    check(c->workers >= 1 && c->max_connections >= 1 && c->max_headers >= 1 && c->max_head >= 1024);
    check(!c->health.enabled || (c->health.timeout_ns > 0 && c->health.timeout_ns < c->health.interval_ns));
    check(c->timeout_connect_ns > 0 && c->timeout_head_ns > 0 && c->timeout_tunnel_ns > 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    int lines = 1;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    static struct lb_conf conf;
    struct lb_conf_error errs[8];
    int n = lb_conf_parse(text, &conf, errs, 8);
    check(n >= 0);
    for (int i = 0; i < n && i < 8; i++)
        check(errs[i].line >= 0 && errs[i].line <= lines && errs[i].msg[0]);
    if (n == 0)
        check_valid(&conf);
    free(text);
    return 0;
}
