#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

static const char *log_ident = "postern";
static bool log_stderr = true;
static enum log_level log_max = LOG_LEVEL_INFO;

void log_init(const char *ident, bool to_stderr)
{
    log_ident = ident;
    log_stderr = to_stderr;
    if (!to_stderr)
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_set_level(enum log_level max)
{
    log_max = max;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    char msg[1024];
    va_list ap;

    if (level > log_max)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!log_stderr) {
        syslog(prio[level], "%s", msg);
        return;
    }
    /* One write per message keeps lines from threads whole. */
    char line[1200];
    int n = snprintf(line, sizeof(line), "%s: %s: %s\n", log_ident, names[level], msg);
    if (n > (int)sizeof(line) - 1)
        n = sizeof(line) - 1;
    if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* Nowhere left to report a failing stderr. */
    }
}
