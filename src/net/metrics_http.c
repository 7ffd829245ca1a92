/*
 * The metrics endpoint: a small evhttp server on its own thread and event
 * base. It shares nothing with the I/O threads but the lock-free counters
 * of guard/metrics.c, so a slow or stuck scraper cannot hold up a POP3
 * session, and a busy server still answers scrapes.
 */
#include "net/metrics_http.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>

#include "guard/metrics.h"

/* "localhost" gives two addresses; a name could give a few more. */
#define METRICS_MAX_FDS 8
/* A scrape is one short request: nothing else needs room or time. */
#define METRICS_TIMEOUT     10 /* seconds */
#define METRICS_MAX_HEADERS 8192
#define METRICS_MAX_BODY    4096

struct metrics_http {
    int fds[METRICS_MAX_FDS]; /* -1 once evhttp owns them */
    unsigned n_fds;
    struct event_base *base;
    struct evhttp *http;
    struct event *stop_ev;
    pthread_t thread;
    bool running;
};

static void free_fds(struct metrics_http *m)
{
    for (unsigned i = 0; i < m->n_fds; i++) {
        if (m->fds[i] >= 0)
            close(m->fds[i]);
        m->fds[i] = -1;
    }
}

struct metrics_http *metrics_http_new(const char *address, const char **error_r)
{
    static _Thread_local char err[512];
    char host[256];
    const char *colon = strrchr(address, ':'), *h = address;
    struct addrinfo hints = {0}, *res = NULL, *ai;
    struct metrics_http *m;
    size_t hlen;

    if (colon == NULL) {
        *error_r = "address must be HOST:PORT";
        return NULL;
    }
    hlen = (size_t)(colon - address);
    if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen >= sizeof(host)) {
        *error_r = "host name too long";
        return NULL;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    m = calloc(1, sizeof(*m));
    if (m == NULL) {
        *error_r = "out of memory";
        return NULL;
    }
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int r = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, colon + 1, &hints, &res);
    if (r != 0) {
        snprintf(err, sizeof(err), "cannot resolve %s: %s", host, gai_strerror(r));
        *error_r = err;
        free(m);
        return NULL;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int one = 1, fd;
        if (m->n_fds == METRICS_MAX_FDS)
            break;
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0) {
            m->fds[m->n_fds++] = fd;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
            /* "[::]:9110" and "0.0.0.0:9110" may both resolve from "*". */
            if (ai->ai_family == AF_INET6)
                setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        }
        if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
            snprintf(err, sizeof(err), "cannot listen on %s: %s", address, strerror(errno));
            *error_r = err;
            freeaddrinfo(res);
            free_fds(m);
            free(m);
            return NULL;
        }
    }
    freeaddrinfo(res);
    return m;
}

/* Collects metrics_render()'s text in the reply body. */
static void add_to_buffer(void *ctx, const char *data, size_t len)
{
    evbuffer_add(ctx, data, len);
}

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *text)
{
    struct evbuffer *body = evbuffer_new();

    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    if (body != NULL)
        evbuffer_add(body, text, strlen(text));
    evhttp_send_reply(req, code, reason, body);
    if (body != NULL)
        evbuffer_free(body);
}

static void handle_request(struct evhttp_request *req, void *arg)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);

    (void)arg;
    if (path == NULL || strcmp(path, "/metrics") != 0) {
        reply_text(req, HTTP_NOTFOUND, "Not Found", "Not found: the metrics are at /metrics\n");
        return;
    }
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
        evhttp_add_header(headers, "Allow", "GET, HEAD");
        reply_text(req, 405, "Method Not Allowed", "Method not allowed: use GET\n");
        return;
    }
    struct evbuffer *body = evbuffer_new();
    if (body == NULL) {
        evhttp_send_error(req, HTTP_INTERNAL, NULL);
        return;
    }
    metrics_render(add_to_buffer, body);
    evhttp_add_header(headers, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    /* Every scrape must see the values of now. */
    evhttp_add_header(headers, "Cache-Control", "no-store");
    evhttp_send_reply(req, HTTP_OK, "OK", body);
    evbuffer_free(body);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void *metrics_main(void *arg)
{
    struct metrics_http *m = arg;

    event_base_dispatch(m->base);
    return NULL;
}

int metrics_http_start(struct metrics_http *m, const char **error_r)
{
    /* The main thread wakes this loop to stop it: libevent must lock.
     * (Harmless when server_new() has done it already.) */
    if (evthread_use_pthreads() < 0) {
        *error_r = "libevent has no pthreads support";
        return -1;
    }
    m->base = event_base_new();
    m->http = m->base != NULL ? evhttp_new(m->base) : NULL;
    m->stop_ev = m->base != NULL ? event_new(m->base, -1, 0, stop_cb, m->base) : NULL;
    if (m->http == NULL || m->stop_ev == NULL) {
        *error_r = "cannot create the metrics HTTP server (out of memory)";
        return -1;
    }
    evhttp_set_timeout(m->http, METRICS_TIMEOUT);
    evhttp_set_max_headers_size(m->http, METRICS_MAX_HEADERS);
    evhttp_set_max_body_size(m->http, METRICS_MAX_BODY);
    /* Else evhttp answers other methods 501 itself, before the handler
     * could say 405 and which ones are allowed. */
    evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(m->http, handle_request, m);
    for (unsigned i = 0; i < m->n_fds; i++) {
        if (evhttp_accept_socket_with_handle(m->http, m->fds[i]) == NULL) {
            *error_r = "cannot watch the metrics socket";
            return -1;
        }
        m->fds[i] = -1; /* closed by evhttp_free */
    }
    if (pthread_create(&m->thread, NULL, metrics_main, m) != 0) {
        *error_r = "cannot start the metrics thread";
        return -1;
    }
    m->running = true;
    return 0;
}

void metrics_http_free(struct metrics_http **mp)
{
    struct metrics_http *m = *mp;

    if (m == NULL)
        return;
    if (m->running) {
        event_active(m->stop_ev, EV_READ, 0);
        pthread_join(m->thread, NULL);
    }
    if (m->http != NULL)
        evhttp_free(m->http);
    if (m->stop_ev != NULL)
        event_free(m->stop_ev);
    if (m->base != NULL)
        event_base_free(m->base);
    free_fds(m);
    free(m);
    *mp = NULL;
}
