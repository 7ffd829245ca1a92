#ifndef POSTERN_NET_PRIVATE_H
#define POSTERN_NET_PRIVATE_H

#include "net/net.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "auth/auth.h"
#include "daemon/defaults.h"
#include "guard/guard.h"
#include "pop3/pop3.h"

struct conn;

/* Encrypted bytes kept on the socket side of a TLS connection, each way. */
#define TLS_RAW_BUFFER (64 * 1024)
/* Per I/O thread; beyond that a socket with input unread is closed at
 * once, reset and all. */
#define LINGER_SLOTS 64

/* One login attempt on its way through the pool and back. */
struct login_job {
    struct auth_request req; /* first: the pool runs it */
    struct conn *conn;
    enum pop3_auth_result result;
    struct mailbox *mb;
    unsigned char pair[16]; /* keyed hash of (user, secret), for the guard */
    struct login_job *next; /* in the worker's done list */
};

struct worker {
    struct server *srv;
    unsigned id;
    struct event_base *base;
    pthread_t thread;
    struct evconnlistener *listeners[2 * MAX_LISTEN];
    struct listener_ctx {
        struct worker *w;
        bool tls;
    } listener_ctx[2 * MAX_LISTEN];
    struct event *retry_accept; /* after EMFILE: listeners paused briefly */
    struct event *stop_ev;
    /* Login results posted by pool threads, taken by this thread. */
    pthread_mutex_t done_mutex;
    struct login_job *done_head;
    struct event *done_ev;
    struct conn *conns; /* every open connection, for shutdown */
    /* Sockets closed with input unread, draining before the close (see
     * linger_close in conn.c); ev NULL: a free slot. */
    struct lingering {
        evutil_socket_t fd;
        struct event *ev;
        time_t until;
        size_t discarded;
    } lingering[LINGER_SLOTS];
};

struct server {
    struct net_settings set;
    int listen_fds[2 * MAX_LISTEN];
    bool listen_tls[2 * MAX_LISTEN];
    unsigned n_listen;
    struct worker *workers;
    unsigned n_workers;
    bool started;
    char hostname[256];
    uint64_t sid_base;
    struct keyed_mac *pair_mac; /* login_job.pair */
};

/* conn.c */
void conn_accept(struct worker *w, int fd, const struct sockaddr *sa, int salen, bool tls);
void conn_login_done(struct login_job *job);
void conn_close_all(struct worker *w);
/* Closes this worker's unauthenticated connections from the net. */
void conn_drop_net(struct worker *w, const struct guard_net *net);
/* Called on a pool thread: queue the job for its connection's worker. */
void worker_post(struct worker *w, struct login_job *job);

#endif
