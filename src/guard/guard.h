#ifndef POSTERN_GUARD_H
#define POSTERN_GUARD_H

/*
 * Policy against abuse, shared by all I/O threads (ratelimit.c): connection
 * limits (global, per client IP, unauthenticated per IP), the failure delay
 * that doubles per failure, bans of a network after repeated failures (kept
 * across restarts under state_dir), the per-account throttle against
 * spraying, and LOGIN-DELAY. anomaly.c turns what it sees into alerts: one
 * audit line each, and alert_command.
 *
 * Clients are counted per "net": the IPv4 address, or the IPv6 address cut
 * to ipv6_prefix bits (a /64 is what one subscriber gets), so an attacker
 * cannot step around a ban by changing the low bits.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#define GUARD_MAX_TRUSTED 32

struct guard_cidr {
    unsigned char addr[16]; /* IPv4 as ::ffff:a.b.c.d */
    unsigned bits;          /* of the 128 */
};

struct guard_settings {
    unsigned max_connections;
    unsigned max_connections_per_ip;
    unsigned max_preauth_per_ip; /* connections not yet logged in */
    unsigned failure_delay;      /* seconds, doubled per consecutive failure */
    unsigned failure_delay_max;  /* seconds */
    unsigned ban_after;          /* failures from one net within ban_window: 0 = never */
    unsigned ban_window;         /* seconds */
    unsigned ban_time;           /* seconds */
    unsigned ipv6_prefix;        /* bits, 32-128 */
    struct guard_cidr trusted[GUARD_MAX_TRUSTED];
    unsigned n_trusted;
    unsigned account_failures; /* failures for one account within account_window: 0 = off */
    unsigned account_window;
    unsigned login_delay;  /* RFC 2449 LOGIN-DELAY seconds, 0 = off */
    const char *state_dir; /* bans are kept in state_dir/bans; NULL = memory only */
    /* anomaly.c */
    const char *alert_command; /* run with the facts in its environment; NULL = none */
    unsigned alert_window;     /* seconds: one alert per kind and subject */
    unsigned spray_accounts;   /* distinct accounts one IP tried */
    unsigned attack_ips;       /* distinct IPs failing one account */
    unsigned download_messages;
    uint64_t download_bytes;
    unsigned download_window;
    unsigned mass_delete_messages;
    unsigned mass_delete_percent;
};

enum guard_verdict {
    GUARD_ACCEPT,
    GUARD_TOO_MANY,         /* the server is full */
    GUARD_TOO_MANY_FROM_IP, /* this client address has enough connections */
    GUARD_TOO_MANY_PREAUTH, /* ... or enough that have not logged in */
    GUARD_BANNED,           /* its net is banned */
};

/* A net, as the key of the tables and of a ban. */
struct guard_net {
    unsigned char key[16];
};

struct guard;

struct guard *guard_new(const struct guard_settings *set);
void guard_free(struct guard **g);

/* "CIDR, CIDR ..." into set->trusted; -1 with *error_r. */
int guard_parse_trusted(const char *list, struct guard_settings *set, const char **error_r);
/* "203.0.113.0/24" or "2001:db8::/64": 0, or -1. */
int guard_parse_cidr(const char *s, size_t len, struct guard_cidr *out);

/* Counts a new connection, unless a limit or a ban says no. Every
 * GUARD_ACCEPT must be paired with guard_conn_close() for the same
 * address; the connection counts as unauthenticated until
 * guard_conn_authenticated(). */
enum guard_verdict guard_conn_open(struct guard *g, const struct sockaddr *sa);
void guard_conn_authenticated(struct guard *g, const struct sockaddr *sa);
void guard_conn_close(struct guard *g, const struct sockaddr *sa, bool authenticated);
unsigned guard_connections(struct guard *g);

void guard_net_of(const struct guard *g, const struct sockaddr *sa, struct guard_net *net);
bool guard_net_equal(const struct guard_net *a, const struct guard_net *b);
/* "203.0.113.7/32", "2001:db8:1:2::/64". */
void guard_net_format(const struct guard *g, const struct guard_net *net, char *out, size_t size);
bool guard_is_trusted(const struct guard *g, const struct sockaddr *sa);

/* A login attempt that got an answer. */
struct guard_attempt {
    const struct sockaddr *sa;
    const char *ip;   /* printable, for audit lines */
    const char *user; /* as given (may be "") */
    /* A keyed hash of (user, secret): the same wrong password sent again
     * is a misconfigured client, not a new guess. */
    const unsigned char *pair; /* 16 bytes, or NULL */
    bool ok;                   /* credentials right */
    bool failure;              /* a guessing failure (bad credentials), not a tempfail */
    time_t now;
};

/* What to do with the answer. */
struct guard_decision {
    unsigned delay_ms;    /* hold the answer this long */
    bool too_soon;        /* ok, but LOGIN-DELAY refuses it */
    bool banned;          /* this failure banned the net */
    bool refused;         /* the net is banned: whatever the outcome, refuse */
    struct guard_net net; /* the client's net */
};

void guard_login(struct guard *g, const struct guard_attempt *at, struct guard_decision *d);

/* Lifts expired bans (logging event=unban) and forgets idle entries;
 * called every few seconds. */
void guard_expire(struct guard *g, time_t now);
unsigned guard_bans_active(struct guard *g);
/* Writes the networks each account logged in from to state_dir/known-nets
 * (read back by guard_new()); called at shutdown. */
void guard_save_known(struct guard *g);

/* anomaly.c: facts from the sessions. */
void guard_note_retr(struct guard *g, const char *user, uint64_t bytes, time_t now);
void guard_note_quit(struct guard *g, const char *user, const char *sid, unsigned deleted,
                     unsigned total);
void guard_note_cleartext(struct guard *g, const char *ip, const char *user, const char *mech);
void guard_note_attack(struct guard *g, const char *ip, const char *sid, const char *what);

/* An alert: one audit line "event=alert kind=... subject=..." with the
 * facts (key, value pairs ending with NULL), and alert_command, at most
 * once per kind and subject within alert_window. */
void guard_alert(struct guard *g, const char *kind, const char *subject, const char *const *facts,
                 time_t now);
/* Alerts raised so far by kind (for tests and metrics). */
unsigned long guard_alert_count(struct guard *g, const char *kind);

#endif
