/*
 * The metrics endpoint: a small HTTP/1.x server on its own thread and
 * event base. It shares nothing with the I/O threads but the lock-free
 * counters of guard/metrics.c, so a slow or stuck scraper cannot hold up a
 * POP3 session, and a busy server still answers scrapes.
 *
 * It is not evhttp: libevent 2.1's evhttp has no cap on connections, and
 * its timeout restarts with every byte, so anyone who reaches the port
 * could hold file descriptors (which POP3 sessions need) without bound.
 * Here a scrape is one request, answered and closed; at most
 * METRICS_MAX_CONNS are open at once, each has METRICS_HEAD_TIMEOUT
 * seconds to send its request however it trickles, and METRICS_TIMEOUT
 * more to take the answer.
 */
#include "net/metrics_http.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

#include "guard/metrics.h"

/* "localhost" gives two addresses; a name could give a few more. */
#define METRICS_MAX_FDS 8
/* A scrape is one short request: nothing else needs room or time. A
 * Prometheus pair and an operator's curl fit in the connections. */
#define METRICS_HEAD_TIMEOUT 3  /* seconds from accept to a whole request */
#define METRICS_TIMEOUT      10 /* seconds from the answer to the close */
#define METRICS_MAX_HEAD     8192
#define METRICS_MAX_CONNS    16

struct metrics_conn {
    struct metrics_http *m;
    struct bufferevent *bev;
    struct event *deadline;
    struct metrics_conn *prev, *next;
    bool answered; /* then the rest of the request is read and dropped */
    bool eof;      /* the client has closed its side */
};

struct metrics_http {
    int fds[METRICS_MAX_FDS]; /* -1 once a listener owns them */
    unsigned n_fds;
    struct event_base *base;
    struct evconnlistener *listeners[METRICS_MAX_FDS];
    struct event *retry_accept;
    struct metrics_conn *conns;
    unsigned n_conns;
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

/* --- the request --- */

static bool is_tchar(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const char *find_head_end(const char *buf, size_t len, size_t *head_len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i + 1] == '\n') {
            *head_len = i + 2;
            return buf + i;
        }
        if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n') {
            *head_len = i + 3;
            return buf + i;
        }
    }
    return NULL;
}

enum metrics_verdict metrics_http_judge(const char *buf, size_t len, size_t *head_len)
{
    size_t i = 0, mlen, tstart, tlen, skip = 0;

    *head_len = 0;
    /* An empty line before the request is ignored (RFC 9112 section 2.2). */
    if (len > 0 && buf[0] == '\n')
        skip = 1;
    else if (len > 1 && buf[0] == '\r' && buf[1] == '\n')
        skip = 2;
    buf += skip;
    len -= skip;
    /* The limit counts the skipped line: reading stops at it. */
    size_t limit = METRICS_MAX_HEAD - skip, seen = len < limit ? len : limit;
    const char *nl = memchr(buf, '\n', seen);
    if (nl == NULL)
        return len >= limit ? METRICS_TOO_LARGE : METRICS_INCOMPLETE;
    /* The request line: METHOD SP TARGET SP HTTP/1.x, judged as soon as it
     * is whole; the header lines only have to end. */
    size_t line = (size_t)(nl - buf);
    if (line > 0 && buf[line - 1] == '\r')
        line--;
    while (i < line && is_tchar((unsigned char)buf[i]))
        i++;
    mlen = i;
    if (mlen == 0 || mlen > 16 || i == line || buf[i] != ' ')
        return METRICS_BAD;
    tstart = ++i;
    while (i < line && (unsigned char)buf[i] > ' ' && buf[i] != 0x7f)
        i++;
    tlen = i - tstart;
    if (tlen == 0 || line - i != 9 || memcmp(buf + i, " HTTP/1.", 8) != 0 ||
        (buf[i + 8] != '0' && buf[i + 8] != '1'))
        return METRICS_BAD;
    if (find_head_end(buf, seen, head_len) == NULL)
        return len >= limit ? METRICS_TOO_LARGE : METRICS_INCOMPLETE;
    *head_len += skip;

    /* The path: the target without a query, from the absolute form too. */
    const char *t = buf + tstart, *end = t + tlen;
    const char *authority = tlen > 7 && strncasecmp(t, "http://", 7) == 0    ? t + 7
                            : tlen > 8 && strncasecmp(t, "https://", 8) == 0 ? t + 8
                                                                             : NULL;
    if (authority != NULL) {
        t = memchr(authority, '/', (size_t)(end - authority));
        if (t == NULL)
            t = end;
    }
    size_t plen = (size_t)(end - t), q = 0;
    while (q < plen && t[q] != '?' && t[q] != '#')
        q++;
    if (q != 8 || memcmp(t, "/metrics", 8) != 0)
        return METRICS_NOT_FOUND;
    if (mlen == 3 && memcmp(buf, "GET", 3) == 0)
        return METRICS_GET;
    if (mlen == 4 && memcmp(buf, "HEAD", 4) == 0)
        return METRICS_HEAD;
    return METRICS_NOT_ALLOWED;
}

/* --- the connection --- */

static void conn_free(struct metrics_conn *c)
{
    struct metrics_http *m = c->m;

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        m->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    m->n_conns--;
    bufferevent_free(c->bev);
    event_free(c->deadline);
    free(c);
}

/* Collects metrics_render()'s text in the reply body. */
static void add_to_buffer(void *ctx, const char *data, size_t len)
{
    evbuffer_add(ctx, data, len);
}

static int reply(struct metrics_conn *c, const char *status, const char *headers, const char *text,
                 bool with_body)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct evbuffer *body = evbuffer_new();

    if (body == NULL)
        return -1;
    if (text != NULL)
        evbuffer_add(body, text, strlen(text));
    else
        metrics_render(add_to_buffer, body);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %s\r\n%sContent-Length: %zu\r\nConnection: close\r\n"
                        "Cache-Control: no-store\r\n\r\n",
                        status, headers, evbuffer_get_length(body));
    if (with_body)
        evbuffer_add_buffer(out, body);
    evbuffer_free(body);
    c->answered = true;
    /* From now on the time is the answer's to leave. */
    struct timeval tv = {METRICS_TIMEOUT, 0};
    evtimer_add(c->deadline, &tv);
    return 0;
}

#define TEXT_PLAIN "Content-Type: text/plain; charset=utf-8\r\n"

static int answer(struct metrics_conn *c, enum metrics_verdict v)
{
    switch (v) {
    case METRICS_INCOMPLETE:
        return 0;
    case METRICS_GET:
    case METRICS_HEAD:
        return reply(c, "200 OK", "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n",
                     NULL, v == METRICS_GET);
    case METRICS_NOT_FOUND:
        return reply(c, "404 Not Found", TEXT_PLAIN, "Not found: the metrics are at /metrics\n",
                     true);
    case METRICS_NOT_ALLOWED:
        return reply(c, "405 Method Not Allowed", TEXT_PLAIN "Allow: GET, HEAD\r\n",
                     "Method not allowed: use GET\n", true);
    case METRICS_TOO_LARGE:
        return reply(c, "431 Request Header Fields Too Large", TEXT_PLAIN,
                     "Request head too large: a scrape needs no more than 8 KiB\n", true);
    case METRICS_BAD:
        break;
    }
    return reply(c, "400 Bad Request", TEXT_PLAIN, "Bad request: expected GET /metrics HTTP/1.1\n",
                 true);
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct metrics_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);

    if (c->answered) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    size_t len = evbuffer_get_length(in), head_len;
    const char *buf = (const char *)evbuffer_pullup(in, -1);
    if (buf == NULL && len > 0) {
        conn_free(c);
        return;
    }
    if (answer(c, metrics_http_judge(buf != NULL ? buf : "", len, &head_len)) < 0) {
        conn_free(c);
        return;
    }
    if (c->answered)
        evbuffer_drain(in, len);
}

/* The answer is out: say so, and wait for the client to close, so that
 * what it still sends (a body) does not turn the close into a reset that
 * could cut the answer short. A client that closed first is done. */
static void write_cb(struct bufferevent *bev, void *arg)
{
    struct metrics_conn *c = arg;

    if (!c->answered)
        return;
    if (c->eof)
        conn_free(c);
    else
        shutdown(bufferevent_getfd(bev), SHUT_WR);
}

/* A client may close its side right after the request (nc -N, a
 * shutdown(SHUT_WR)): the answer still goes out whole before the close. */
static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct metrics_conn *c = arg;

    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR) && c->answered &&
        evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
        c->eof = true;
        bufferevent_disable(bev, EV_READ);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        conn_free(c);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_free(arg);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct metrics_http *m = arg;
    struct timeval tv = {METRICS_HEAD_TIMEOUT, 0};
    struct metrics_conn *c;

    (void)l;
    (void)sa;
    (void)salen;
    if (m->n_conns >= METRICS_MAX_CONNS || (c = calloc(1, sizeof(*c))) == NULL) {
        close(fd);
        return;
    }
    c->m = m;
    c->bev = bufferevent_socket_new(m->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->deadline = evtimer_new(m->base, deadline_cb, c);
    if (c->bev == NULL || c->deadline == NULL || evtimer_add(c->deadline, &tv) < 0) {
        if (c->bev != NULL)
            bufferevent_free(c->bev);
        else
            close(fd);
        if (c->deadline != NULL)
            event_free(c->deadline);
        free(c);
        return;
    }
    c->next = m->conns;
    if (m->conns != NULL)
        m->conns->prev = c;
    m->conns = c;
    m->n_conns++;
    /* Reading stops at the head limit; read_cb then answers 431. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, METRICS_MAX_HEAD);
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_enable(c->bev, EV_READ);
}

static void set_listening(struct metrics_http *m, bool on)
{
    for (unsigned i = 0; i < m->n_fds; i++) {
        if (m->listeners[i] != NULL)
            (on ? evconnlistener_enable : evconnlistener_disable)(m->listeners[i]);
    }
}

static void retry_accept_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    set_listening(arg, true);
}

/* Out of file descriptors: accepting again at once would spin. */
static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct metrics_http *m = arg;
    struct timeval tv = {0, 200000};
    int err = EVUTIL_SOCKET_ERROR();

    (void)l;
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        set_listening(m, false);
        evtimer_add(m->retry_accept, &tv);
    }
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
    m->stop_ev = m->base != NULL ? event_new(m->base, -1, 0, stop_cb, m->base) : NULL;
    m->retry_accept = m->base != NULL ? evtimer_new(m->base, retry_accept_cb, m) : NULL;
    if (m->stop_ev == NULL || m->retry_accept == NULL) {
        *error_r = "cannot create the metrics HTTP server (out of memory)";
        return -1;
    }
    for (unsigned i = 0; i < m->n_fds; i++) {
        m->listeners[i] = evconnlistener_new(
            m->base, accept_cb, m, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, m->fds[i]);
        if (m->listeners[i] == NULL) {
            *error_r = "cannot watch the metrics socket";
            return -1;
        }
        evconnlistener_set_error_cb(m->listeners[i], accept_error_cb);
        m->fds[i] = -1; /* closed by evconnlistener_free */
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
    while (m->conns != NULL)
        conn_free(m->conns);
    for (unsigned i = 0; i < m->n_fds; i++) {
        if (m->listeners[i] != NULL)
            evconnlistener_free(m->listeners[i]);
    }
    if (m->stop_ev != NULL)
        event_free(m->stop_ev);
    if (m->retry_accept != NULL)
        event_free(m->retry_accept);
    if (m->base != NULL)
        event_base_free(m->base);
    free_fds(m);
    free(m);
    *mp = NULL;
}
