/*
 * lineserver: the protocol-free ceiling for the login benchmark.
 *
 *     lineserver --port N [--host 127.0.0.1] [--threads N]
 *
 * Greets with "+OK\r\n", answers every line with "+OK\r\n"; a line that
 * starts with QUIT (any case) is answered and the connection closed. It
 * parses nothing else, keeps no line in memory and allocates nothing per
 * connection once warm, so whatever rate a client reaches against it is what
 * the client and the kernel's loopback allow: no POP3 server can do better.
 * With --threads N, N threads each run their own epoll set on the one
 * listening socket.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_server.h"

#define MAX_EVENTS   256
#define ACCEPT_BATCH 64
/* Replies owed beyond this stop the reading until they are sent, so that a
 * client that pipelines and never reads cannot grow anything. */
#define MAX_OWED (64 * 1024)

struct conn {
    int fd;
    uint32_t owed;    /* bytes of "+OK\r\n" replies not yet sent */
    uint8_t phase;    /* offset into "+OK\r\n" of the next byte to send */
    uint8_t line_pos; /* bytes seen of the current line, up to 4 */
    bool quit;        /* close once everything owed is sent */
    bool out_wait;    /* waiting for EPOLLOUT (reading paused) */
    char prefix[4];
    struct conn *next_free;
};

struct worker {
    int ep;
    struct conn *free_list;
    pthread_t thread;
};

static int listen_fd;
/* The reply repeated, so that any number owed is one write from a phase
 * offset: 819 replies. */
static char pattern[4095];

static struct conn *conn_new(struct worker *w, int fd)
{
    struct conn *c = w->free_list;
    if (c != NULL)
        w->free_list = c->next_free;
    else if ((c = malloc(sizeof(*c))) == NULL)
        return NULL;
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    return c;
}

static void conn_close(struct worker *w, struct conn *c)
{
    close(c->fd);
    c->next_free = w->free_list;
    w->free_list = c;
}

/* Sends what is owed; false if the connection was closed. */
static bool conn_flush(struct worker *w, struct conn *c)
{
    while (c->owed > 0) {
        size_t len = sizeof(pattern) - c->phase;
        if (len > c->owed)
            len = c->owed;
        ssize_t n = send(c->fd, pattern + c->phase, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->owed -= (uint32_t)n;
            c->phase = (uint8_t)((c->phase + (size_t)n) % 5);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            if (!c->out_wait) {
                struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
                epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
                c->out_wait = true;
            }
            return true;
        }
        conn_close(w, c);
        return false;
    }
    if (c->quit) {
        conn_close(w, c);
        return false;
    }
    if (c->out_wait) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->out_wait = false;
    }
    return true;
}

static void conn_read(struct worker *w, struct conn *c)
{
    char buf[16384];
    ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        conn_close(w, c);
        return;
    }
    const char *p = buf, *end = buf + n;
    while (p < end && !c->quit) {
        const char *lf = memchr(p, '\n', (size_t)(end - p));
        const char *stop = lf != NULL ? lf : end;
        while (c->line_pos < 4 && p < stop)
            c->prefix[c->line_pos++] = *p++;
        if (lf == NULL)
            break;
        p = lf + 1;
        c->owed += 5;
        if (c->line_pos == 4 && (c->prefix[0] | 0x20) == 'q' && (c->prefix[1] | 0x20) == 'u' &&
            (c->prefix[2] | 0x20) == 'i' && (c->prefix[3] | 0x20) == 't')
            c->quit = true;
        c->line_pos = 0;
    }
    if (!conn_flush(w, c))
        return;
    if (c->owed > MAX_OWED && !c->out_wait) {
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
        epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->out_wait = true;
    }
}

static void accept_some(struct worker *w)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                perror("lineserver: accept4");
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = conn_new(w, fd);
        if (c == NULL) {
            close(fd);
            continue;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            conn_close(w, c);
            continue;
        }
        c->owed = 5; /* the greeting */
        conn_flush(w, c);
    }
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(w->ep, evs, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("lineserver: epoll_wait");
            exit(1);
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL) {
                accept_some(w);
            } else if (c->out_wait) {
                if (evs[i].events & (EPOLLERR | EPOLLHUP))
                    conn_close(w, c);
                else
                    conn_flush(w, c);
            } else {
                conn_read(w, c);
            }
        }
    }
    return NULL;
}

static void usage(void)
{
    fputs("usage: lineserver --port N [--host 127.0.0.1] [--threads N]\n", stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    long port = -1, threads = 1;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        char *end;
        if (strcmp(argv[i], "--port") == 0)
            port = strtol(argv[++i], &end, 10);
        else if (strcmp(argv[i], "--threads") == 0)
            threads = strtol(argv[++i], &end, 10);
        else if (strcmp(argv[i], "--host") == 0)
            host = argv[++i], end = "";
        else
            usage();
        if (*end != '\0')
            usage();
    }
    if (port < 0 || port > 65535 || threads < 1 || threads > 256)
        usage();
    bench_server_setup();
    for (size_t i = 0; i + 5 <= sizeof(pattern); i += 5)
        memcpy(pattern + i, "+OK\r\n", 5);

    unsigned bound;
    listen_fd = bench_server_listen(host, port, "lineserver: listen", &bound);
    if (listen_fd == -2)
        usage();
    if (listen_fd < 0)
        return 1;

    struct worker *ws = calloc((size_t)threads, sizeof(*ws));
    if (ws == NULL)
        return 1;
    for (long i = 0; i < threads; i++) {
        if ((ws[i].ep = bench_server_epoll(listen_fd, threads > 1)) < 0) {
            perror("lineserver: epoll");
            return 1;
        }
    }
    printf("ready port=%u\n", bound);
    fflush(stdout);
    for (long i = 1; i < threads; i++)
        if (pthread_create(&ws[i].thread, NULL, worker_run, &ws[i]) != 0) {
            perror("lineserver: pthread_create");
            return 1;
        }
    worker_run(&ws[0]);
    return 0;
}
