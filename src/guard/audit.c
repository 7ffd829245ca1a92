#include "guard/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

enum audit_dest { DEST_STDERR, DEST_SYSLOG, DEST_FILE };

static enum audit_dest dest = DEST_STDERR;
static int audit_fd = STDERR_FILENO;
static char audit_path[4096];
static pthread_mutex_t reopen_lock = PTHREAD_MUTEX_INITIALIZER;

int audit_open(const char *d, const char **error_r)
{
    static char err[600];

    if (strcmp(d, "stderr") == 0) {
        dest = DEST_STDERR;
        audit_fd = STDERR_FILENO;
        return 0;
    }
    if (strcmp(d, "syslog") == 0) {
        dest = DEST_SYSLOG;
        openlog("posternd", LOG_PID | LOG_NDELAY, LOG_MAIL);
        return 0;
    }
    int fd = open(d, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd < 0) {
        snprintf(err, sizeof(err), "cannot open audit log %s: %s", d, strerror(errno));
        *error_r = err;
        return -1;
    }
    snprintf(audit_path, sizeof(audit_path), "%s", d);
    dest = DEST_FILE;
    audit_fd = fd;
    return 0;
}

void audit_reopen(void)
{
    if (dest != DEST_FILE)
        return;
    pthread_mutex_lock(&reopen_lock);
    int fd = open(audit_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd >= 0) {
        /* dup2 swaps atomically: a writer never sees a closed descriptor. */
        dup2(fd, audit_fd);
        close(fd);
    }
    pthread_mutex_unlock(&reopen_lock);
}

void audit_close(void)
{
    if (dest == DEST_FILE)
        close(audit_fd);
    dest = DEST_STDERR;
    audit_fd = STDERR_FILENO;
}

static void put(struct audit_line *a, const char *s, size_t n)
{
    /* Keep room for the newline. */
    if (a->len + n > sizeof(a->buf) - 1)
        n = sizeof(a->buf) - 1 - a->len;
    memcpy(a->buf + a->len, s, n);
    a->len += n;
}

void audit_begin(struct audit_line *a, const char *level, const char *event)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    a->len = (size_t)snprintf(a->buf, sizeof(a->buf),
                              "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s",
                              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                              tm.tm_sec, ts.tv_nsec / 1000000, level, event);
}

static void put_quoted(struct audit_line *a, const char *v)
{
    put(a, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
        char esc[5];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(a, esc, 2);
        } else if (*p < 0x20 || *p >= 0x7f) {
            snprintf(esc, sizeof(esc), "\\x%02x", *p);
            put(a, esc, 4);
        } else {
            put(a, (const char *)p, 1);
        }
    }
    put(a, "\"", 1);
}

void audit_str(struct audit_line *a, const char *key, const char *value)
{
    put(a, " ", 1);
    put(a, key, strlen(key));
    put(a, "=", 1);
    put_quoted(a, value != NULL ? value : "");
}

void audit_tok(struct audit_line *a, const char *key, const char *value)
{
    bool plain = value != NULL && value[0] != '\0';

    for (const char *p = value; plain && *p != '\0'; p++)
        plain = *p > 0x20 && *p < 0x7f && *p != '"' && *p != '=' && *p != '\\';
    if (!plain) {
        audit_str(a, key, value);
        return;
    }
    put(a, " ", 1);
    put(a, key, strlen(key));
    put(a, "=", 1);
    put(a, value, strlen(value));
}

void audit_uint(struct audit_line *a, const char *key, uint64_t value)
{
    char num[24];

    snprintf(num, sizeof(num), "%llu", (unsigned long long)value);
    audit_tok(a, key, num);
}

void audit_end(struct audit_line *a)
{
    if (dest == DEST_SYSLOG) {
        a->buf[a->len] = '\0';
        syslog(LOG_INFO, "%s", a->buf);
        return;
    }
    a->buf[a->len++] = '\n';
    /* One write(2) per line: lines from many threads never interleave. */
    if (write(audit_fd, a->buf, a->len) < 0) {
        /* The audit log is gone; the diagnostics say so at start-up. */
    }
}
