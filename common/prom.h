/* Prometheus text exposition (format 0.0.4) written into a struct buf.
 *
 * A family is opened with prom_family (its # HELP and # TYPE lines) and its samples follow with prom_u64 or
 * prom_double; the format wants a family's samples together, so open each family once, just before its samples.
 * Errors (out of memory, the buf's cap) are sticky: writing goes on as a no-op and prom_error says so at the end,
 * so a writer checks once instead of after every line. */
#ifndef COMMON_PROM_H
#define COMMON_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

enum prom_type { PROM_COUNTER = 0, PROM_GAUGE };

/* One label; value is escaped on output (backslash, double quote, newline). */
struct prom_label {
    const char *name, *value;
};

struct prom {
    struct buf *out;
    char family[128]; /* the open family's name: samples are written under it */
    bool failed;
};

/* A writer appending to out. */
void prom_init(struct prom *p, struct buf *out);
/* Open the family name: writes its HELP (escaped) and TYPE lines, unless name is already the open family. */
void prom_family(struct prom *p, enum prom_type type, const char *name, const char *help);
/* One sample of the open family with n labels (labels may be NULL when n is 0). */
void prom_u64(struct prom *p, const struct prom_label *labels, size_t n, uint64_t value);
/* The same with a floating value (NaN and the infinities written as the format spells them). */
void prom_double(struct prom *p, const struct prom_label *labels, size_t n, double value);
/* A family with a single unlabelled sample. */
void prom_scalar(struct prom *p, enum prom_type type, const char *name, const char *help, uint64_t value);
/* 0, or -1 if anything could not be written (the output then lacks lines). */
int prom_error(const struct prom *p);

#endif
