/*
 * Listening sockets and I/O threads. Every thread runs its own event loop
 * and its own evconnlistener on every listening socket: the kernel hands
 * each new connection to one of them, and from then on the connection
 * lives on that thread alone, so sessions need no locks.
 */
#include "net/net-private.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/thread.h>
#include <openssl/rand.h>

#include "lib/keyed_mac.h"
#include "lib/log.h"

struct server *server_new(const struct net_settings *set, const char **error_r)
{
    static bool threads_ready;
    struct server *srv;

    /* Pool threads wake I/O loops with event_active(): libevent must lock. */
    if (!threads_ready && evthread_use_pthreads() < 0) {
        *error_r = "libevent has no pthreads support";
        return NULL;
    }
    threads_ready = true;
    srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        *error_r = "out of memory";
        return NULL;
    }
    srv->set = *set;
    srv->pair_mac = keyed_mac_new(NULL);
    if (srv->pair_mac == NULL) {
        free(srv);
        *error_r = "no HMAC-SHA256 or no randomness in OpenSSL";
        return NULL;
    }
    if (gethostname(srv->hostname, sizeof(srv->hostname) - 1) < 0)
        strcpy(srv->hostname, "localhost");
    RAND_bytes((unsigned char *)&srv->sid_base, sizeof(srv->sid_base));
    srv->sid_base &= 0xffffff000000ULL; /* the low bits count sessions */
    return srv;
}

static int bind_one(struct server *srv, const struct addrinfo *ai, const char *address, bool tls,
                    const char **error_r)
{
    static _Thread_local char err[512];
    int fd, one = 1;

    if (srv->n_listen == 2 * MAX_LISTEN) {
        *error_r = "too many listening addresses";
        return -1;
    }
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* "[::]:110" and "0.0.0.0:110" may both be listed. */
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0)
        goto fail;
    srv->listen_tls[srv->n_listen] = tls;
    srv->listen_fds[srv->n_listen++] = fd;
    return 0;
fail:
    snprintf(err, sizeof(err), "cannot listen on %s: %s", address, strerror(errno));
    *error_r = err;
    if (fd >= 0)
        close(fd);
    return -1;
}

int server_listen(struct server *srv, const char *address, bool tls, const char **error_r)
{
    static _Thread_local char err[512];
    char host[256];
    const char *colon = strrchr(address, ':');
    struct addrinfo hints = {0}, *res, *ai;
    size_t hlen;

    if (colon == NULL) {
        *error_r = "address must be HOST:PORT";
        return -1;
    }
    hlen = (size_t)(colon - address);
    if (address[0] == '[' && hlen >= 2 && address[hlen - 1] == ']') {
        address++;
        hlen -= 2;
    }
    if (hlen >= sizeof(host)) {
        *error_r = "host name too long";
        return -1;
    }
    memcpy(host, address, hlen);
    host[hlen] = '\0';
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int r = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, colon + 1, &hints, &res);
    if (r != 0) {
        snprintf(err, sizeof(err), "cannot resolve %s: %s", host, gai_strerror(r));
        *error_r = err;
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        if (bind_one(srv, ai, colon[-1] == ']' ? address - 1 : address, tls, error_r) < 0) {
            freeaddrinfo(res);
            return -1;
        }
    }
    freeaddrinfo(res);
    return 0;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct listener_ctx *lc = arg;

    (void)l;
    conn_accept(lc->w, fd, sa, salen, lc->tls);
}

static void set_listening(struct worker *w, bool on)
{
    for (unsigned i = 0; i < w->srv->n_listen; i++) {
        if (on)
            evconnlistener_enable(w->listeners[i]);
        else
            evconnlistener_disable(w->listeners[i]);
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
    struct worker *w = ((struct listener_ctx *)arg)->w;
    struct timeval tv = {0, 200000};
    int err = EVUTIL_SOCKET_ERROR();

    (void)l;
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        log_warn("cannot accept: %s; pausing for 200 ms", strerror(err));
        set_listening(w, false);
        evtimer_add(w->retry_accept, &tv);
    }
}

static void done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    struct login_job *jobs;

    (void)fd;
    (void)what;
    pthread_mutex_lock(&w->done_mutex);
    jobs = w->done_head;
    w->done_head = NULL;
    pthread_mutex_unlock(&w->done_mutex);
    /* The list was pushed at the front: restore arrival order. */
    struct login_job *rev = NULL;
    while (jobs != NULL) {
        struct login_job *next = jobs->next;
        jobs->next = rev;
        rev = jobs;
        jobs = next;
    }
    while (rev != NULL) {
        struct login_job *next = rev->next;
        conn_login_done(rev);
        rev = next;
    }
}

struct drop_job {
    struct worker *w;
    struct guard_net net;
};

static void drop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct drop_job *j = arg;

    (void)fd;
    (void)what;
    conn_drop_net(j->w, &j->net);
    free(j);
}

void server_drop_net(struct server *srv, const struct guard_net *net)
{
    static const struct timeval now = {0, 0};

    for (unsigned i = 0; i < srv->n_workers; i++) {
        struct drop_job *j = malloc(sizeof(*j));
        if (j == NULL)
            continue;
        j->w = &srv->workers[i];
        j->net = *net;
        /* Each I/O thread closes its own connections. */
        if (event_base_once(j->w->base, -1, EV_TIMEOUT, drop_cb, j, &now) < 0)
            free(j);
    }
}

void worker_post(struct worker *w, struct login_job *job)
{
    pthread_mutex_lock(&w->done_mutex);
    job->next = w->done_head;
    w->done_head = job;
    pthread_mutex_unlock(&w->done_mutex);
    event_active(w->done_ev, EV_READ, 0);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;

    (void)fd;
    (void)what;
    set_listening(w, false);
    conn_close_all(w);
    /* Not loopbreak: a freed bufferevent may still hold a deferred
     * callback, which must run once more to release it. */
    event_base_loopexit(w->base, NULL);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    event_base_dispatch(w->base);
    return NULL;
}

int server_start(struct server *srv, struct auth *auth, struct pool *pool, const char **error_r)
{
    srv->set.auth = auth;
    srv->set.pool = pool;
    srv->n_workers = srv->set.threads > 0 ? srv->set.threads : 1;
    srv->workers = calloc(srv->n_workers, sizeof(*srv->workers));
    if (srv->workers == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    for (unsigned i = 0; i < srv->n_workers; i++) {
        struct worker *w = &srv->workers[i];
        w->srv = srv;
        w->id = i;
        pthread_mutex_init(&w->done_mutex, NULL);
        w->base = event_base_new();
        if (w->base == NULL) {
            *error_r = "cannot create event loop";
            return -1;
        }
        w->done_ev = event_new(w->base, -1, EV_PERSIST, done_cb, w);
        w->stop_ev = event_new(w->base, -1, 0, stop_cb, w);
        w->retry_accept = evtimer_new(w->base, retry_accept_cb, w);
        for (unsigned j = 0; j < srv->n_listen; j++) {
            w->listener_ctx[j].w = w;
            w->listener_ctx[j].tls = srv->listen_tls[j];
            w->listeners[j] = evconnlistener_new(w->base, accept_cb, &w->listener_ctx[j],
                                                 LEV_OPT_CLOSE_ON_EXEC, 0, srv->listen_fds[j]);
            if (w->listeners[j] == NULL) {
                *error_r = "cannot watch listening socket";
                return -1;
            }
            evconnlistener_set_error_cb(w->listeners[j], accept_error_cb);
        }
        if (w->done_ev == NULL || w->stop_ev == NULL || w->retry_accept == NULL) {
            *error_r = "out of memory";
            return -1;
        }
        event_add(w->done_ev, NULL);
    }
    for (unsigned i = 0; i < srv->n_workers; i++) {
        if (pthread_create(&srv->workers[i].thread, NULL, worker_main, &srv->workers[i]) != 0) {
            *error_r = "cannot start I/O thread";
            srv->n_workers = i;
            server_stop(srv);
            return -1;
        }
    }
    srv->started = true;
    return 0;
}

void server_stop(struct server *srv)
{
    if (srv->workers == NULL)
        return;
    for (unsigned i = 0; i < srv->n_workers; i++)
        event_active(srv->workers[i].stop_ev, EV_READ, 0);
    for (unsigned i = 0; i < srv->n_workers; i++)
        pthread_join(srv->workers[i].thread, NULL);
    srv->started = false;
}

void server_free(struct server **srvp)
{
    struct server *srv = *srvp;

    if (srv == NULL)
        return;
    for (unsigned i = 0; srv->workers != NULL && i < srv->n_workers; i++) {
        struct worker *w = &srv->workers[i];
        /* Login results that arrived after the loop stopped. */
        done_cb(-1, 0, w);
        for (unsigned j = 0; j < srv->n_listen; j++) {
            if (w->listeners[j] != NULL)
                evconnlistener_free(w->listeners[j]);
        }
        if (w->done_ev != NULL)
            event_free(w->done_ev);
        if (w->stop_ev != NULL)
            event_free(w->stop_ev);
        if (w->retry_accept != NULL)
            event_free(w->retry_accept);
        if (w->base != NULL)
            event_base_free(w->base);
        pthread_mutex_destroy(&w->done_mutex);
    }
    for (unsigned i = 0; i < srv->n_listen; i++)
        close(srv->listen_fds[i]);
    free(srv->workers);
    keyed_mac_free(&srv->pair_mac);
    free(srv);
    *srvp = NULL;
}
