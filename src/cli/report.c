/*
 * `postern report [--since DURATION] [--top N] LOGFILE`: reads the audit
 * log (or its lines inside a syslog file) and prints what an operator
 * looks at after an attack or on a Monday morning: who failed to log in
 * and from where, which nets are banned now, the guard's alerts, and how
 * much mail each account downloaded and deleted.
 *
 * The log is read as untrusted input: an attacker chose many of its
 * values (user names above all). Lines are parsed strictly, a bad line is
 * counted and never stops the report, tables are hashed with a random key
 * so crafted names cannot make them slow, and every value is escaped
 * before it reaches the terminal.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/report-private.h"
#include "lib/logfmt.h"
#include "lib/str.h"

#define DEFAULT_SINCE "24h"
#define DEFAULT_TOP   10
/* Durations above this are surely a typo (100 years). */
#define MAX_SINCE_S (100LL * 366 * 86400)

void *report_alloc(size_t size)
{
    void *p = calloc(1, size != 0 ? size : 1);

    if (p == NULL) {
        cli_error("out of memory");
        exit(EXIT_SOFTWARE);
    }
    return p;
}

void sbuf_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->s, cap);
        if (p == NULL) {
            cli_error("out of memory");
            exit(EXIT_SOFTWARE);
        }
        b->s = p;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void sbuf_escaped(struct sbuf *b, const char *s, bool quote)
{
    bool bare = s[0] != '\0';

    for (const char *p = s; bare && *p != '\0'; p++)
        bare = *p > 0x20 && *p < 0x7f && *p != '"' && *p != '=' && *p != '\\';
    quote = quote && !bare;
    if (quote)
        sbuf_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        char esc[8];
        if (*p == '\\' || (quote && *p == '"')) {
            esc[0] = '\\';
            esc[1] = (char)*p;
            sbuf_add(b, esc, 2);
        } else if (*p < 0x20 || *p > 0x7e) {
            snprintf(esc, sizeof(esc), "\\x%02x", *p);
            sbuf_add(b, esc, 4);
        } else {
            sbuf_add(b, (const char *)p, 1);
        }
    }
    if (quote)
        sbuf_add(b, "\"", 1);
    if (b->s == NULL)
        sbuf_add(b, "", 0);
}

char *report_display(const char *s)
{
    struct sbuf b = {0};

    sbuf_escaped(&b, s, false);
    return b.s;
}

/* --- the hash table: SipHash-1-3 with a random key --- */

static uint64_t sip_key[2];

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

static uint64_t siphash13(const char *data, size_t len)
{
    const unsigned char *in = (const unsigned char *)data;
    uint64_t v0 = sip_key[0] ^ 0x736f6d6570736575ULL, v1 = sip_key[1] ^ 0x646f72616e646f6dULL;
    uint64_t v2 = sip_key[0] ^ 0x6c7967656e657261ULL, v3 = sip_key[1] ^ 0x7465646279746573ULL;
    uint64_t m, last = (uint64_t)len << 56;
    size_t i;

    for (i = 0; i + 8 <= len; i += 8) {
        memcpy(&m, in + i, 8); /* little-endian hosts; the value only has to be stable */
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t j = 0; i + j < len; j++)
        last |= (uint64_t)in[i + j] << (8 * j);
    v3 ^= last;
    SIPROUND;
    v0 ^= last;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static void map_grow(struct map *m)
{
    size_t cap = m->cap == 0 ? 64 : m->cap * 2;
    struct map_entry **b = report_alloc(cap * sizeof(*b));

    for (size_t i = 0; i < m->cap; i++) {
        struct map_entry *e = m->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->hash & (cap - 1)];
            b[e->hash & (cap - 1)] = e;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->cap = cap;
}

/* The record for key, created zeroed (value_size bytes) when new. */
static void *map_get(struct map *m, const char *key, size_t key_len, size_t value_size,
                     bool *added_r)
{
    uint64_t h = siphash13(key, key_len);

    if (m->cap != 0) {
        for (struct map_entry *e = m->buckets[h & (m->cap - 1)]; e != NULL; e = e->next)
            if (e->hash == h && e->key_len == key_len && memcmp(e->key, key, key_len) == 0) {
                if (added_r != NULL)
                    *added_r = false;
                return e->value;
            }
    }
    if (m->count >= m->cap)
        map_grow(m);
    struct map_entry *e = report_alloc(sizeof(*e) + key_len + 1);
    memcpy(e->key, key, key_len);
    e->key_len = key_len;
    e->hash = h;
    e->value = report_alloc(value_size);
    e->next = m->buckets[h & (m->cap - 1)];
    m->buckets[h & (m->cap - 1)] = e;
    m->count++;
    if (added_r != NULL)
        *added_r = true;
    return e->value;
}

struct map_entry **map_entries(const struct map *m, size_t *count_r)
{
    struct map_entry **all = report_alloc((m->count + 1) * sizeof(*all));
    size_t n = 0;

    for (size_t i = 0; i < m->cap; i++)
        for (struct map_entry *e = m->buckets[i]; e != NULL; e = e->next)
            all[n++] = e;
    *count_r = n;
    return all;
}

static void map_free(struct map *m, void (*free_value)(void *))
{
    for (size_t i = 0; i < m->cap; i++) {
        struct map_entry *e = m->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            if (free_value != NULL)
                free_value(e->value);
            free(e->value);
            free(e);
        }
    }
    free(m->buckets);
    memset(m, 0, sizeof(*m));
}

static void ban_free(void *v)
{
    free(((struct ban_stat *)v)->failures);
}

/* --- one line --- */

static void malformed(struct report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void malformed(struct report *r, const char *fmt, ...)
{
    if (r->malformed < REPORT_MALFORMED_MAX) {
        struct malformed *m = &r->malformed_first[r->malformed];
        va_list ap;
        m->line = r->lines;
        va_start(ap, fmt);
        vsnprintf(m->why, sizeof(m->why), fmt, ap);
        va_end(ap);
    }
    r->malformed++;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/*
 * Recognises a syslog prefix: "Nov 27 10:00:00 host tag[pid]: " (BSD) or
 * "2026-11-27T10:00:00.123+00:00 host tag[pid]: " (RFC 3339 timestamps,
 * as rsyslog and journalctl -o short-iso write them). Returns the offset
 * of the message, with the tag in tag_r/tag_len_r, or 0 when the line does
 * not start like that.
 */
static size_t syslog_prefix(const char *s, size_t len, const char **tag_r, size_t *tag_len_r)
{
    size_t i;

    if (len > 16 && s[0] >= 'A' && s[0] <= 'Z' && s[3] == ' ' && s[6] == ' ' &&
        (s[4] == ' ' || is_digit(s[4])) && is_digit(s[5]) && is_digit(s[7]) && is_digit(s[8]) &&
        s[9] == ':' && s[12] == ':' && s[15] == ' ') {
        i = 16;
    } else if (len > 20 && is_digit(s[0]) && is_digit(s[3]) && s[4] == '-' && s[10] == 'T') {
        for (i = 0; i < len && s[i] != ' '; i++)
            if (!is_digit(s[i]) && (s[i] == '\0' || strchr("-T:.+Z", s[i]) == NULL))
                return 0;
        i++;
    } else {
        return 0;
    }
    /* The host. */
    size_t host = i;
    while (i < len && s[i] != ' ')
        i++;
    if (i == host || i >= len)
        return 0;
    i++;
    /* The tag, an optional [pid], and ": ". */
    size_t tag = i;
    while (i < len && s[i] != ' ' && s[i] != '[' && s[i] != ':')
        i++;
    if (i == tag)
        return 0;
    *tag_r = s + tag;
    *tag_len_r = i - tag;
    if (i < len && s[i] == '[') {
        while (i < len && s[i] != ']')
            i++;
        i++;
    }
    if (i + 1 >= len || s[i] != ':' || s[i + 1] != ' ')
        return 0;
    return i + 2;
}

enum line_kind { LINE_AUDIT, LINE_OTHER, LINE_MALFORMED };

/* Where the audit line starts inside a line of the log, if it has one. */
static enum line_kind find_audit(const char *s, size_t len, size_t *start_r)
{
    const char *tag;
    size_t tag_len;

    if (len >= 3 && memcmp(s, "ts=", 3) == 0) {
        *start_r = 0;
        return LINE_AUDIT;
    }
    size_t msg = syslog_prefix(s, len, &tag, &tag_len);
    if (msg > 0) {
        /* Other programs share a syslog file, and posternd's own
         * diagnostics go there too: neither is an error. */
        if (tag_len != 8 || memcmp(tag, "posternd", 8) != 0 || len - msg < 3 ||
            memcmp(s + msg, "ts=", 3) != 0)
            return LINE_OTHER;
        *start_r = msg;
        return LINE_AUDIT;
    }
    /* Any other prefix (RFC 5424, a container runtime) before " ts=". */
    const char *p = memmem(s, len, " ts=", 4);
    if (p == NULL)
        return LINE_MALFORMED;
    *start_r = (size_t)(p - s) + 1;
    return LINE_AUDIT;
}

static struct user_stat *user_of(struct report *r, const char *user)
{
    return map_get(&r->users, user, strlen(user), sizeof(struct user_stat), NULL);
}

static void count_failure(struct report *r, int64_t ts, const char *ip, const char *user)
{
    struct ip_stat *is = map_get(&r->ips, ip, strlen(ip), sizeof(*is), NULL);

    is->failures++;
    if (ts > is->last)
        is->last = ts;
    if (user == NULL || user[0] == '\0')
        return;
    struct user_stat *us = user_of(r, user);
    us->failures++;
    if (ts > us->last_failure)
        us->last_failure = ts;

    /* One set of (ip, user) pairs gives both distinct counts. */
    size_t il = strlen(ip), ul = strlen(user);
    char *pair = report_alloc(il + 1 + ul);
    bool added;
    memcpy(pair, ip, il);
    memcpy(pair + il + 1, user, ul);
    map_get(&r->pairs, pair, il + 1 + ul, 1, &added);
    free(pair);
    if (added) {
        is->users++;
        us->ips++;
    }
}

/* Keeps the REPORT_LAST_ALERTS latest alerts by (time, input order). */
static void keep_alert(struct report *r, int64_t ts, const struct logfmt *f)
{
    struct alert_rec *slot = NULL;

    if (r->last_alert_count < REPORT_LAST_ALERTS) {
        slot = &r->last_alerts[r->last_alert_count++];
    } else {
        for (size_t i = 0; i < REPORT_LAST_ALERTS; i++) {
            struct alert_rec *a = &r->last_alerts[i];
            if (slot == NULL || a->ts < slot->ts || (a->ts == slot->ts && a->seq < slot->seq))
                slot = a;
        }
        if (ts < slot->ts)
            return;
        free(slot->kind);
        free(slot->subject);
        free(slot->facts);
    }
    const char *subject = logfmt_get(f, "subject");
    struct sbuf facts = {0};
    for (size_t i = 0; i < f->count; i++) {
        const char *k = f->fields[i].key;
        if (strcmp(k, "ts") == 0 || strcmp(k, "level") == 0 || strcmp(k, "event") == 0 ||
            strcmp(k, "kind") == 0 || strcmp(k, "subject") == 0)
            continue;
        if (facts.len > 0)
            sbuf_add(&facts, " ", 1);
        sbuf_add(&facts, k, strlen(k));
        sbuf_add(&facts, "=", 1);
        sbuf_escaped(&facts, f->fields[i].value, true);
    }
    if (facts.s == NULL)
        sbuf_add(&facts, "", 0);
    slot->ts = ts;
    slot->seq = r->lines;
    slot->kind = report_display(logfmt_get(f, "kind"));
    slot->subject = report_display(subject != NULL ? subject : "");
    slot->facts = facts.s;
}

/* Bans are state, not history: they count whatever their age. */
static void ban_event(struct report *r, int64_t ts, const struct logfmt *f, bool ban)
{
    const char *net = logfmt_get(f, "net");
    struct ban_stat *b = map_get(&r->bans, net, strlen(net), sizeof(*b), NULL);

    if (!ban) {
        if (!b->unbanned || ts > b->unban_ts || (ts == b->unban_ts && r->lines > b->unban_seq)) {
            b->unbanned = true;
            b->unban_ts = ts;
            b->unban_seq = r->lines;
        }
        return;
    }
    if (b->seq == 0 || ts > b->ts || (ts == b->ts && r->lines > b->seq)) {
        const char *failures = logfmt_get(f, "failures");
        b->ts = ts;
        b->seq = r->lines;
        logfmt_parse_time(logfmt_get(f, "until"), &b->until);
        free(b->failures);
        b->failures = failures != NULL ? report_display(failures) : NULL;
    }
}

/*
 * What an event needs to be counted; NULL when it has it. Checked before
 * anything is counted, so a line is either counted or malformed.
 */
static const char *check_event(const char *event, const struct logfmt *f)
{
    const char *v;
    const char *error;
    int64_t t;
    uint64_t n;

    if (strcmp(event, "ban") == 0 || strcmp(event, "unban") == 0) {
        if (logfmt_get(f, "net") == NULL)
            return event[0] == 'b' ? "ban without net" : "unban without net";
        v = logfmt_get(f, "until");
        if (event[0] == 'b' && (v == NULL || logfmt_parse_time(v, &t) < 0))
            return "ban without a valid until";
    } else if (strcmp(event, "auth_fail") == 0) {
        if (logfmt_get(f, "ip") == NULL)
            return "auth_fail without ip";
    } else if (strcmp(event, "retr") == 0 || strcmp(event, "dele") == 0) {
        v = logfmt_get(f, "user");
        if (v == NULL || v[0] == '\0')
            return event[0] == 'r' ? "retr without user" : "dele without user";
        v = logfmt_get(f, "size");
        if (event[0] == 'r' &&
            (v == NULL || str_parse_u64(v, strlen(v), UINT64_MAX / 2, &n, &error) < 0))
            return "retr without a valid size";
    } else if (strcmp(event, "alert") == 0) {
        if (logfmt_get(f, "kind") == NULL)
            return "alert without kind";
    }
    return NULL;
}

/*
 * Failed logins that say nothing about the credentials: the password was
 * right (the mailbox was in use) or the server could not check it. They
 * are no sign of an attack, so they stay out of the failure tables, as
 * they stay out of the fail2ban filter.
 */
static bool server_side(const char *reason)
{
    static const char *const reasons[] = {"mailbox in use", "mailbox unavailable",
                                          "mailbox unusable", "passdb unavailable", "login delay"};

    for (size_t i = 0; reason != NULL && i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (strcmp(reason, reasons[i]) == 0)
            return true;
    return false;
}

static void one_line(struct report *r, char *s, size_t len)
{
    struct logfmt f;
    const char *error;
    size_t start, pos;
    int64_t ts;

    switch (find_audit(s, len, &start)) {
    case LINE_OTHER:
        r->other++;
        return;
    case LINE_MALFORMED:
        malformed(r, "not an audit line (no ts=)");
        return;
    case LINE_AUDIT:
        break;
    }
    if (logfmt_parse(s + start, len - start, &f, &error, &pos) < 0) {
        malformed(r, "%s at column %zu", error, start + pos + 1);
        return;
    }
    const char *tstext = logfmt_get(&f, "ts"), *event = logfmt_get(&f, "event");
    if (tstext == NULL || logfmt_parse_time(tstext, &ts) < 0) {
        malformed(r, tstext == NULL ? "no ts" : "ts is not a UTC ISO 8601 time");
        return;
    }
    if (event == NULL) {
        malformed(r, "no event");
        return;
    }
    if ((error = check_event(event, &f)) != NULL) {
        malformed(r, "%s", error);
        return;
    }
    r->audit++;
    if (strcmp(event, "ban") == 0 || strcmp(event, "unban") == 0)
        ban_event(r, ts, &f, event[0] == 'b');
    if (ts < r->cutoff)
        return;
    r->in_window++;

    const char *user = logfmt_get(&f, "user");
    if (strcmp(event, "auth_fail") == 0) {
        if (server_side(logfmt_get(&f, "reason"))) {
            r->auth_fail_server++;
            return;
        }
        r->auth_fail++;
        count_failure(r, ts, logfmt_get(&f, "ip"), user);
    } else if (strcmp(event, "auth_ok") == 0) {
        r->auth_ok++;
    } else if (strcmp(event, "refused") == 0) {
        r->refused++;
    } else if (strcmp(event, "ban") == 0) {
        r->bans_set++;
    } else if (strcmp(event, "retr") == 0) {
        const char *size = logfmt_get(&f, "size");
        uint64_t bytes = 0;
        str_parse_u64(size, strlen(size), UINT64_MAX / 2, &bytes, &error);
        struct user_stat *us = user_of(r, user);
        us->retrieved++;
        us->bytes = bytes > UINT64_MAX - us->bytes ? UINT64_MAX : us->bytes + bytes;
    } else if (strcmp(event, "dele") == 0) {
        user_of(r, user)->deleted++;
    } else if (strcmp(event, "alert") == 0) {
        const char *kind = logfmt_get(&f, "kind");
        r->alerts++;
        (*(uint64_t *)map_get(&r->kinds, kind, strlen(kind), sizeof(uint64_t), NULL))++;
        keep_alert(r, ts, &f);
    }
}

static int read_log(struct report *r, FILE *in)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;

    while ((n = getline(&line, &cap, in)) >= 0) {
        size_t len = (size_t)n;
        r->lines++;
        if (len > 0 && line[len - 1] == '\n')
            len--;
        /* A log copied through Windows keeps its lines. */
        if (len > 0 && line[len - 1] == '\r')
            len--;
        line[len] = '\0';
        if (len == 0)
            continue;
        one_line(r, line, len);
    }
    int err = ferror(in) ? errno : 0;
    free(line);
    if (err != 0) {
        cli_error("%s: read error: %s", r->source, strerror(err));
        return -1;
    }
    return 0;
}

/* --- the command --- */

/* "24h", "90m", "7d", "3600s": a whole number and one unit. */
static int parse_duration(const char *s, int64_t *ms_r)
{
    static const struct {
        char unit;
        int64_t seconds;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
    size_t len = strlen(s);
    const char *error;
    uint64_t n;

    if (len < 2 || str_parse_u64(s, len - 1, MAX_SINCE_S, &n, &error) < 0 || n == 0)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (s[len - 1] == units[i].unit) {
            if ((int64_t)n > MAX_SINCE_S / units[i].seconds)
                return -1;
            *ms_r = (int64_t)n * units[i].seconds * 1000;
            return 0;
        }
    return -1;
}

static const char *option_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);

    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        cli_error("%s needs a value", name);
        return "";
    }
    return argv[++*i];
}

#define REPORT_USAGE "usage: postern report [--since DURATION] [--top N] LOGFILE|-"

int cmd_report(int argc, char **argv)
{
    struct report r = {.since_text = DEFAULT_SINCE, .top = DEFAULT_TOP};
    const char *path = NULL, *v;
    const char *error;
    struct timespec now;

    for (int i = 0; i < argc; i++) {
        if ((v = option_value(argc, argv, &i, "--since")) != NULL) {
            r.since_text = v;
        } else if ((v = option_value(argc, argv, &i, "--top")) != NULL) {
            uint64_t top;
            if (str_parse_u64(v, strlen(v), 10000, &top, &error) < 0 || top == 0) {
                cli_error("--top %s: give a number of rows from 1 to 10000", v);
                return EXIT_USAGE;
            }
            r.top = (size_t)top;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            cli_error("unknown option %s", argv[i]);
            cli_error(REPORT_USAGE);
            return EXIT_USAGE;
        } else if (path == NULL) {
            path = argv[i];
        } else {
            cli_error(REPORT_USAGE);
            return EXIT_USAGE;
        }
    }
    if (path == NULL) {
        cli_error(REPORT_USAGE);
        return EXIT_USAGE;
    }
    if (parse_duration(r.since_text, &r.since_ms) < 0) {
        cli_error("--since %s: give a whole number and a unit, s, m, h or d (90m, 24h, 7d)",
                  r.since_text);
        return EXIT_USAGE;
    }

    FILE *in = stdin;
    r.source = "standard input";
    if (strcmp(path, "-") != 0) {
        in = fopen(path, "r");
        if (in == NULL) {
            cli_error("cannot open %s: %s", path, strerror(errno));
            return EXIT_NOINPUT;
        }
        r.source = path;
    }
    if (getrandom(sip_key, sizeof(sip_key), 0) != (ssize_t)sizeof(sip_key)) {
        cli_error("getrandom: %s", strerror(errno));
        if (in != stdin)
            fclose(in);
        return EXIT_SOFTWARE;
    }
    clock_gettime(CLOCK_REALTIME, &now);
    r.now = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    r.cutoff = r.now - r.since_ms;

    int ret = read_log(&r, in) < 0 ? EXIT_IOERR : 0;
    if (in != stdin)
        fclose(in);
    if (ret == 0)
        report_print(&r);

    for (size_t i = 0; i < r.last_alert_count; i++) {
        free(r.last_alerts[i].kind);
        free(r.last_alerts[i].subject);
        free(r.last_alerts[i].facts);
    }
    map_free(&r.ips, NULL);
    map_free(&r.users, NULL);
    map_free(&r.pairs, NULL);
    map_free(&r.bans, ban_free);
    map_free(&r.kinds, NULL);
    return ret;
}
