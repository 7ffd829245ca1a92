#ifndef POSTERN_NET_H
#define POSTERN_NET_H

/*
 * Sockets to sessions: listeners, one libevent loop per I/O thread, the
 * connection (framing, timeouts, backpressure) and the hand-off of login
 * results from the worker pool back to the connection's own thread.
 */

#include <stdbool.h>

struct auth;
struct guard;
struct pool;
struct tls;

struct net_settings {
    unsigned threads; /* I/O threads, at least 1 */
    unsigned login_timeout;
    unsigned idle_timeout;
    unsigned max_line;
    const char *greeting;
    bool apop;
    const char *mail_location; /* "maildir:..." template */
    const char *base_dir;      /* for a relative mail location */
    struct auth *auth;
    struct pool *pool; /* for mailbox scans that an I/O thread must not do */
    struct guard *guard;
    struct tls *tls; /* NULL: no TLS (no STLS, no POP3S listeners) */
    bool require_tls;
    bool allow_plaintext_loopback;
    unsigned sasl_mechs;        /* POP3_MECH_BIT()s offered by AUTH */
    unsigned max_auth_failures; /* per connection, then it is closed */
    unsigned max_bad_commands;
    unsigned login_delay;
};

struct server;

struct server *server_new(const struct net_settings *set, const char **error_r);
/* Binds every address "HOST:PORT" ("[v6]:PORT", "*:PORT") resolves to;
 * tls: implicit TLS (POP3S) rather than plain POP3 with STLS. */
int server_listen(struct server *srv, const char *address, bool tls, const char **error_r);
/* Starts the I/O threads, which verify logins through auth; returns at
 * once. Separate from server_new so that listeners can be bound before the
 * daemon forks and threads started after. */
int server_start(struct server *srv, struct auth *auth, struct pool *pool, const char **error_r);
/* Stops accepting, ends every session (removing nothing) and joins the
 * threads. Call from the main thread. */
void server_stop(struct server *srv);
void server_free(struct server **srv);
/* Ends the unauthenticated sessions of a banned net on every I/O thread. */
struct guard_net;
void server_drop_net(struct server *srv, const struct guard_net *net);

#endif
