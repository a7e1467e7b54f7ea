/* Levelled logging to stderr: one line per event, with a timestamp and the program's name.
 * Hot paths bump counters instead of logging; errno is always passed explicitly (log_msg never reads it). */
#ifndef COMMON_LOG_H
#define COMMON_LOG_H

enum log_level { LOG_LEVEL_ERR = 0, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

#define ERR_LEN 256

/* Name shown on every line (e.g. "refserver n1") and the most verbose level printed. */
void log_init(const char *name, enum log_level level);
/* Parse "err|warn|info|debug"; -1 if it is none of them. */
int log_level_parse(const char *s);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_ERR(...)   log_msg(LOG_LEVEL_ERR, __VA_ARGS__)
#define LOG_WARN(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define LOG_INFO(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define LOG_DEBUG(...) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
