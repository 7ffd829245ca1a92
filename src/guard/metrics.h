#ifndef POSTERN_METRICS_H
#define POSTERN_METRICS_H

/*
 * Process-wide counters for Prometheus (issue 6): connections, sessions by
 * state, logins, retrieval and deletion, bans, alerts, command latency.
 *
 * Every call is a few relaxed atomic additions on a shard of counters that
 * belongs to the calling thread (threads are spread over METRICS_SHARDS
 * cache-line-aligned shards), so the I/O threads never fight over a cache
 * line; metrics_render() sums the shards. Nothing allocates, nothing locks,
 * every label set is fixed: any thread may call any function at any time.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pop3/pop3.h"

/* The "state" of a connection that has no session (before accept, after
 * close), for metrics_session_state(). */
#define METRICS_NO_SESSION 0

/* A connection was accepted on a listen (pop3s false) or listen_tls
 * (pop3s true) address; its TLS handshake completed (POP3S, or STLS on
 * pop3); it closed, tls telling whether TLS had been established. */
void metrics_conn_open(bool pop3s);
void metrics_conn_tls(bool pop3s);
void metrics_conn_close(bool pop3s, bool tls);

/* A session moved from one enum pop3_state to another; METRICS_NO_SESSION
 * on either side for a session that starts or ends. Equal states: no-op. */
void metrics_session_state(enum pop3_state from, enum pop3_state to);

/* A login attempt ended: mech is pop3_mech_name()'s name (others are not
 * counted), usec the time from the credentials handed over to the verdict
 * (any failure delay comes after and is not included). */
void metrics_login(const char *mech, enum pop3_auth_result result, uint64_t usec);

/* Session events: RETR counts a message and its octets, QUIT the messages
 * removed and the move to UPDATE. Others are ignored. */
void metrics_pop3_event(const struct pop3_event *ev);

/* Microseconds on the monotonic clock, to time what metrics_command() and
 * metrics_login() are given. */
uint64_t metrics_now_usec(void);

/* One command line (without CRLF) took usec from being complete to its
 * reply (or, for a long one, its start) being queued. Only the first word
 * is looked at, to pick the command label; anything that is not a POP3
 * command (SASL responses included) counts as "other". */
void metrics_command(const char *line, size_t len, uint64_t usec);

/* The guard: a ban was set (+1) or lifted (-1); an alert of kind (one of
 * the issue 6 kinds; any other counts as "other") was raised. */
void metrics_ban_active(int delta);
void metrics_alert(const char *kind);

/*
 * Writes the Prometheus text exposition format 0.0.4 through write(), a
 * line or a few at a time. Counters are read one by one, not under a lock:
 * each value is exact, the set is not a single instant (a histogram's
 * _count is the sum of its buckets, so those always agree).
 */
typedef void metrics_write_fn(void *ctx, const char *data, size_t len);
void metrics_render(metrics_write_fn *write, void *ctx);

/* Sets every counter to zero. For unit tests: not atomic with respect to
 * threads updating counters meanwhile. */
void metrics_reset(void);

#endif
