/* Strict value parsers and a line tokenizer shared by every C command line and config file (refserver's flags,
 * loadgen's options, lb.conf; scenarios/ in Python follows the same spellings): one spelling of durations, sizes and
 * numbers for the whole project, and no strtod/strtoull surprises (signs, exponents, hex, "inf", trailing junk, silent
 * overflow). */
#ifndef COMMON_CONF_H
#define COMMON_CONF_H

#include <stddef.h>
#include <stdint.h>

/* A plain non-negative decimal ("12", "0.5", ".5"; no sign, exponent or hex); *end gets what follows it. 0, or -1. */
int conf_parse_number(const char *s, double *v, const char **end);
/* A whole number lo..hi with nothing after it. 0, or -1. */
int conf_parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
/* A duration with a unit: ns, us, ms, s, m, h ("250ms", "1.5s"); a bare "0" is allowed. 0, or -1 with err naming
 * what is wrong ("'5' needs a unit (ns, us, ms, s, m, h)"). */
int conf_parse_duration(const char *s, int64_t *ns, char *err, size_t errlen);
/* A byte count: digits, optionally k, m or g (powers of 1024, either case), at most 1 TiB. 0, or -1. */
int conf_parse_bytes(const char *s, uint64_t *bytes);

/* Write the message into err (errlen bytes) and return -1: the one shape of every parser's error path. */
int conf_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define CONF_MAX_WORDS 32

/* Split one config line in place into words separated by spaces or tabs; '#' starts a comment (outside a word's
 * start it is part of the word, as in "a#b"). Returns the number of words (0 for a blank or comment line), or -1
 * when there are more than max. */
int conf_split(char *line, char **words, int max);

#endif
