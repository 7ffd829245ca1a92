#ifndef POSTERN_METRICS_HTTP_H
#define POSTERN_METRICS_HTTP_H

#include <stddef.h>

/*
 * `[metrics] listen`: GET /metrics answered with metrics_render()'s text,
 * on a thread and event loop of its own, so that a scrape never waits
 * for, or delays, an I/O thread.
 */

struct metrics_http;

enum metrics_verdict {
    METRICS_INCOMPLETE, /* the head has not ended yet */
    METRICS_GET,
    METRICS_HEAD,
    METRICS_NOT_FOUND,   /* 404: another path, whatever the method */
    METRICS_NOT_ALLOWED, /* 405: /metrics, another method */
    METRICS_TOO_LARGE,   /* 431 */
    METRICS_BAD,         /* 400: not METHOD SP TARGET SP HTTP/1.x */
};

/* Judges the request head at the start of buf[0..len). When it is whole,
 * *head_len is its length (request line, header lines, empty line). */
enum metrics_verdict metrics_http_judge(const char *buf, size_t len, size_t *head_len);

/* Binds every address "HOST:PORT" ("[v6]:PORT", "*:PORT") resolves to.
 * Separate from metrics_http_start so that the sockets are bound, and
 * errors reported, before the daemon forks. */
struct metrics_http *metrics_http_new(const char *address, const char **error_r);
/* Starts serving on a new thread; returns at once. */
int metrics_http_start(struct metrics_http *m, const char **error_r);
/* Stops the thread (if started), closes the sockets and open scrapes. */
void metrics_http_free(struct metrics_http **m);

#endif
