/* Shared value parsers; see conf.h. */
#include "common/conf.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int conf_parse_number(const char *s, double *v, const char **end)
{
    if (!isdigit((unsigned char)s[0]) && !(s[0] == '.' && isdigit((unsigned char)s[1])))
        return -1;
    size_t digits = strspn(s, "0123456789."), dots = 0;
    for (size_t i = 0; i < digits; i++)
        dots += s[i] == '.';
    if (dots > 1)
        return -1;
    char *e;
    errno = 0;
    *v = strtod(s, &e);
    if (errno || !isfinite(*v) || e != s + digits)
        return -1;
    *end = e;
    return 0;
}

int conf_parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!isdigit((unsigned char)s[0]))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || errno || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int conf_fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

int conf_parse_duration(const char *s, int64_t *ns, char *err, size_t errlen)
{
    static const struct {
        const char *name;
        double ns;
    } units[] = {{"ns", 1}, {"us", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
    double v;
    const char *unit;
    if (strcmp(s, "0") == 0) {
        *ns = 0;
        return 0;
    }
    if (conf_parse_number(s, &v, &unit) < 0)
        return conf_fail(err, errlen, "'%s' is not a duration (e.g. 250ms, 1.5s)", s);
    if (!*unit)
        return conf_fail(err, errlen, "'%s' needs a unit (ns, us, ms, s, m, h)", s);
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(unit, units[i].name) != 0)
            continue;
        double total = v * units[i].ns;
        if (total > 9e18)
            return conf_fail(err, errlen, "'%s' is too long", s);
        *ns = (int64_t)llround(total);
        return 0;
    }
    return conf_fail(err, errlen, "'%s': unknown unit '%s' (ns, us, ms, s, m, h)", s, unit);
}

int conf_parse_bytes(const char *s, uint64_t *bytes)
{
    size_t digits = strspn(s, "0123456789");
    if (digits == 0 || digits > 13)
        return -1;
    uint64_t v = strtoull(s, NULL, 10), mult = 1;
    const char *suffix = s + digits;
    if (*suffix == 'k' || *suffix == 'K')
        mult = 1024;
    else if (*suffix == 'm' || *suffix == 'M')
        mult = UINT64_C(1) << 20;
    else if (*suffix == 'g' || *suffix == 'G')
        mult = UINT64_C(1) << 30;
    else if (*suffix)
        return -1;
    if ((*suffix && suffix[1]) || v > (UINT64_C(1) << 40) / mult)
        return -1;
    *bytes = v * mult;
    return 0;
}

int conf_split(char *line, char **words, int max)
{
    int n = 0;
    char *p = line;
    for (;;) {
        p += strspn(p, " \t\r\n");
        if (!*p || *p == '#')
            return n;
        if (n == max)
            return -1;
        words[n++] = p;
        p += strcspn(p, " \t\r\n");
        if (!*p)
            return n;
        *p++ = '\0';
    }
}
