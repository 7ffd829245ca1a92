#ifndef POSTERN_REPORT_PRIVATE_H
#define POSTERN_REPORT_PRIVATE_H

/* Shared by src/cli/report.c (reading and counting) and
 * src/cli/report_print.c (the tables). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REPORT_LAST_ALERTS   5
#define REPORT_MALFORMED_MAX 3

/* A hash table from byte strings to zeroed, caller-shaped records. */
struct map_entry {
    struct map_entry *next;
    void *value;
    uint64_t hash;
    size_t key_len;
    char key[]; /* key_len bytes and a NUL */
};

struct map {
    struct map_entry **buckets;
    size_t cap; /* a power of two, or 0 before the first insert */
    size_t count;
};

struct ip_stat {
    uint64_t failures;
    uint64_t users; /* distinct user names tried */
    int64_t last;   /* ms since the epoch */
};

struct user_stat {
    uint64_t failures;
    uint64_t ips; /* distinct addresses that failed on it */
    int64_t last_failure;
    uint64_t retrieved, bytes, deleted;
};

/* The latest ban of one net and the latest unban, with their order in the
 * input for events of the same millisecond. */
struct ban_stat {
    int64_t ts, until;
    uint64_t seq;
    char *failures; /* as logged, or NULL */
    bool unbanned;
    int64_t unban_ts;
    uint64_t unban_seq;
};

struct alert_rec {
    int64_t ts;
    uint64_t seq;
    char *kind, *subject, *facts; /* display-safe */
};

struct malformed {
    uint64_t line;
    char why[96];
};

struct report {
    const char *source;
    int64_t now, since_ms, cutoff;
    const char *since_text;
    size_t top;

    uint64_t lines, audit, in_window, other, malformed;
    struct malformed malformed_first[REPORT_MALFORMED_MAX];
    uint64_t auth_ok, auth_fail, auth_fail_server, refused, bans_set, alerts;

    struct map ips, users, pairs, bans, kinds;
    struct alert_rec last_alerts[REPORT_LAST_ALERTS];
    size_t last_alert_count;
};

void report_print(const struct report *r);

/* The map's entries in an array (to sort); *count_r of them. */
struct map_entry **map_entries(const struct map *m, size_t *count_r);

/* malloc that does not come back empty: the CLI exits on exhaustion. */
void *report_alloc(size_t size);

/* A growing string, always NUL-terminated once something was added. */
struct sbuf {
    char *s;
    size_t len, cap;
};

void sbuf_add(struct sbuf *b, const char *s, size_t n);
/*
 * Appends s escaped so that no byte can act on a terminal: '\' and bytes
 * outside 0x20-0x7E become \\ and \xHH. With quote, the result is also a
 * logfmt value: quoted (with \" inside) when empty or not a bare token.
 */
void sbuf_escaped(struct sbuf *b, const char *s, bool quote);
/* A new display-safe copy of s (sbuf_escaped without quotes). */
char *report_display(const char *s);

#endif
