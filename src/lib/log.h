#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

/*
 * Diagnostics for operators: start-up problems, I/O errors, configuration
 * warnings. Audit events (who logged in, what was deleted) are not written
 * here but by src/guard/audit.c, in their own stable format.
 */

#include <stdbool.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* to_stderr: foreground programs write to stderr; daemons to syslog(mail). */
void log_init(const char *ident, bool to_stderr);
/* Messages above this level are dropped (default: LOG_LEVEL_INFO). */
void log_set_level(enum log_level max);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)

#endif
