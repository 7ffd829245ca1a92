#ifndef POSTERN_GUARD_H
#define POSTERN_GUARD_H

/*
 * Policy against abuse: connection limits (global and per client IP) and
 * the delay before a failed login is answered. Shared by all I/O threads.
 */

#include <stdbool.h>
#include <sys/socket.h>

struct guard_settings {
    unsigned max_connections;
    unsigned max_connections_per_ip;
    unsigned failure_delay; /* seconds */
};

enum guard_verdict {
    GUARD_ACCEPT,
    GUARD_TOO_MANY,        /* the server is full */
    GUARD_TOO_MANY_FROM_IP /* this client address has enough connections */
};

struct guard;

struct guard *guard_new(const struct guard_settings *set);
void guard_free(struct guard **g);

/* Counts a new connection, unless a limit says no. Every GUARD_ACCEPT must
 * be paired with guard_conn_close() for the same address. */
enum guard_verdict guard_conn_open(struct guard *g, const struct sockaddr *sa);
void guard_conn_close(struct guard *g, const struct sockaddr *sa);
unsigned guard_connections(struct guard *g);

/* Milliseconds to wait before answering a failed login from this address. */
unsigned guard_failure_delay_ms(struct guard *g, const struct sockaddr *sa);

#endif
