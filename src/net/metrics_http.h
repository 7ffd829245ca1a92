#ifndef POSTERN_METRICS_HTTP_H
#define POSTERN_METRICS_HTTP_H

/*
 * `[metrics] listen`: GET /metrics answered with metrics_render()'s text,
 * by libevent's evhttp on a thread and event loop of its own, so that a
 * scrape never waits for, or delays, an I/O thread.
 */

struct metrics_http;

/* Binds every address "HOST:PORT" ("[v6]:PORT", "*:PORT") resolves to.
 * Separate from metrics_http_start so that the sockets are bound, and
 * errors reported, before the daemon forks. */
struct metrics_http *metrics_http_new(const char *address, const char **error_r);
/* Starts serving on a new thread; returns at once. */
int metrics_http_start(struct metrics_http *m, const char **error_r);
/* Stops the thread (if started), closes the sockets and open scrapes. */
void metrics_http_free(struct metrics_http **m);

#endif
