/* Prometheus text exposition; see prom.h. */
#include "common/prom.h"

#include "common/buf.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void prom_init(struct prom *p, struct buf *out)
{
    memset(p, 0, sizeof *p);
    p->out = out;
}

static void put(struct prom *p, const char *s, size_t n)
{
    if (!p->failed && buf_append(p->out, s, n) < 0)
        p->failed = true;
}

/* s with backslash and newline escaped, and double quote too when quote is set (HELP text leaves quotes alone). */
static void put_escaped(struct prom *p, const char *s, bool quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : quote && *s == '"' ? "\\\"" : NULL;
        if (!esc)
            continue;
        put(p, run, (size_t)(s - run));
        put(p, esc, 2);
        run = s + 1;
    }
    put(p, run, (size_t)(s - run));
}

void prom_family(struct prom *p, enum prom_type type, const char *name, const char *help)
{
    if (strcmp(p->family, name) == 0)
        return;
    if (strlen(name) >= sizeof p->family) {
        p->failed = true; /* no metric name of ours comes near; refuse rather than write samples under a cut name */
        return;
    }
    snprintf(p->family, sizeof p->family, "%s", name);
    put(p, "# HELP ", 7);
    put(p, name, strlen(name));
    put(p, " ", 1);
    put_escaped(p, help, false);
    put(p, "\n# TYPE ", 8);
    put(p, name, strlen(name));
    put(p, type == PROM_COUNTER ? " counter\n" : " gauge\n", type == PROM_COUNTER ? 9 : 7);
}

/* The sample's name and label set, up to the space before the value. */
static void sample_head(struct prom *p, const struct prom_label *labels, size_t n)
{
    put(p, p->family, strlen(p->family));
    for (size_t i = 0; i < n; i++) {
        put(p, i ? "," : "{", 1);
        put(p, labels[i].name, strlen(labels[i].name));
        put(p, "=\"", 2);
        put_escaped(p, labels[i].value, true);
        put(p, "\"", 1);
    }
    put(p, n ? "} " : " ", n ? 2 : 1);
}

void prom_u64(struct prom *p, const struct prom_label *labels, size_t n, uint64_t value)
{
    char v[32];
    sample_head(p, labels, n);
    put(p, v, (size_t)snprintf(v, sizeof v, "%" PRIu64 "\n", value));
}

/* value in the fewest digits that read back as the same double, and a newline; the length written. */
static size_t shortest(char *v, size_t size, double value)
{
    int len = snprintf(v, size, "%.15g", value);
    if (strtod(v, NULL) != value)
        len = snprintf(v, size, "%.17g", value);
    len += snprintf(v + len, size - (size_t)len, "\n");
    return (size_t)len;
}

void prom_double(struct prom *p, const struct prom_label *labels, size_t n, double value)
{
    char v[40];
    sample_head(p, labels, n);
    if (isnan(value))
        put(p, "NaN\n", 4);
    else if (isinf(value))
        put(p, value > 0 ? "+Inf\n" : "-Inf\n", 5);
    else
        put(p, v, shortest(v, sizeof v, value));
}

void prom_scalar(struct prom *p, enum prom_type type, const char *name, const char *help, uint64_t value)
{
    prom_family(p, type, name, help);
    prom_u64(p, NULL, 0, value);
}

int prom_error(const struct prom *p)
{
    return p->failed ? -1 : 0;
}
