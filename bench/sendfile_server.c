/*
 * sendfile_server: the physical limit for the retr benchmark.
 *
 *     sendfile_server --port N [--host 127.0.0.1] [--threads N] FILE...
 *
 * On every connection it sends the concatenation of the files with
 * sendfile(), then closes; it reads nothing. The bytes go from the page
 * cache to the socket without passing through user space, so a client
 * reading them (loadgen raw) sees what loopback TCP carries at best: the
 * most a POP3 server could deliver, before any dot-stuffing or line-end
 * work.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_server.h"

#define MAX_EVENTS   256
#define ACCEPT_BATCH 64
/* One call never asks for more than this, so that one connection cannot
 * keep the thread from the others for long. */
#define CHUNK (4 * 1024 * 1024)

struct conn {
    int fd;
    unsigned file;
    off_t off;
    struct conn *next_free;
};

struct worker {
    int ep;
    struct conn *free_list;
    pthread_t thread;
};

static int listen_fd;
static int *file_fds;
static off_t *file_sizes;
static unsigned nfiles;

static void conn_close(struct worker *w, struct conn *c)
{
    close(c->fd);
    c->next_free = w->free_list;
    w->free_list = c;
}

static void pump(struct worker *w, struct conn *c)
{
    while (c->file < nfiles) {
        off_t left = file_sizes[c->file] - c->off;
        if (left <= 0) {
            c->file++;
            c->off = 0;
            continue;
        }
        /* The offset is ours: the file descriptors are shared. */
        ssize_t n =
            sendfile(c->fd, file_fds[c->file], &c->off, left < CHUNK ? (size_t)left : CHUNK);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return; /* edge-triggered EPOLLOUT brings us back */
        /* n == 0: the file shrank under us; an error: the client left. */
        break;
    }
    /* close() still delivers what the socket holds, then the FIN. */
    conn_close(w, c);
}

static void accept_some(struct worker *w)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                perror("sendfile_server: accept4");
            return;
        }
        struct conn *c = w->free_list;
        if (c != NULL)
            w->free_list = c->next_free;
        else if ((c = malloc(sizeof(*c))) == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->file = 0;
        c->off = 0;
        struct epoll_event ev = {.events = EPOLLOUT | EPOLLET, .data.ptr = c};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            conn_close(w, c);
            continue;
        }
        pump(w, c);
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
            perror("sendfile_server: epoll_wait");
            exit(1);
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == NULL)
                accept_some(w);
            else if (evs[i].events & (EPOLLERR | EPOLLHUP))
                conn_close(w, c);
            else
                pump(w, c);
        }
    }
    return NULL;
}

static void usage(void)
{
    fputs("usage: sendfile_server --port N [--host 127.0.0.1] [--threads N] FILE...\n", stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    long port = -1, threads = 1;
    int i;
    for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (i + 1 >= argc)
            usage();
        char *end = "";
        if (strcmp(argv[i], "--port") == 0)
            port = strtol(argv[++i], &end, 10);
        else if (strcmp(argv[i], "--threads") == 0)
            threads = strtol(argv[++i], &end, 10);
        else if (strcmp(argv[i], "--host") == 0)
            host = argv[++i];
        else
            usage();
        if (*end != '\0')
            usage();
    }
    if (port < 0 || port > 65535 || threads < 1 || threads > 256 || i >= argc)
        usage();
    nfiles = (unsigned)(argc - i);
    file_fds = calloc(nfiles, sizeof(*file_fds));
    file_sizes = calloc(nfiles, sizeof(*file_sizes));
    if (file_fds == NULL || file_sizes == NULL)
        return 1;
    off_t total = 0;
    for (unsigned f = 0; f < nfiles; f++, i++) {
        struct stat st;
        file_fds[f] = open(argv[i], O_RDONLY | O_CLOEXEC);
        if (file_fds[f] < 0 || fstat(file_fds[f], &st) < 0) {
            fprintf(stderr, "sendfile_server: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        file_sizes[f] = st.st_size;
        total += st.st_size;
    }
    bench_server_setup();

    unsigned bound;
    listen_fd = bench_server_listen(host, port, "sendfile_server: listen", &bound);
    if (listen_fd == -2)
        usage();
    if (listen_fd < 0)
        return 1;

    struct worker *ws = calloc((size_t)threads, sizeof(*ws));
    if (ws == NULL)
        return 1;
    for (long t = 0; t < threads; t++) {
        if ((ws[t].ep = bench_server_epoll(listen_fd, threads > 1)) < 0) {
            perror("sendfile_server: epoll");
            return 1;
        }
    }
    printf("ready port=%u bytes=%lld\n", bound, (long long)total);
    fflush(stdout);
    for (long t = 1; t < threads; t++)
        if (pthread_create(&ws[t].thread, NULL, worker_run, &ws[t]) != 0) {
            perror("sendfile_server: pthread_create");
            return 1;
        }
    worker_run(&ws[0]);
    return 0;
}
