/*
 * The tables of `postern report`. Every cell is display-safe text made by
 * report.c or here; columns are as wide as their widest cell, except that
 * a cell an attacker could make long (a user name) is cut, so one name
 * cannot push the other columns off the screen.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/report-private.h"

/* Widest cell before it is cut with "...", except in the last column. */
#define CELL_MAX 40

struct table {
    size_t ncols;
    const char *const *head;
    const char *right; /* 'r' per right-aligned column, e.g. "-rr-" */
    char **cells;
    size_t nrows, cap;
};

static void table_row(struct table *t, char **cells)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap == 0 ? 16 : t->cap * 2;
        char **c = report_alloc(t->cap * t->ncols * sizeof(*c));
        if (t->cells != NULL)
            memcpy(c, t->cells, t->nrows * t->ncols * sizeof(*c));
        free(t->cells);
        t->cells = c;
    }
    for (size_t i = 0; i < t->ncols; i++) {
        char *cell = cells[i];
        if (i + 1 < t->ncols && strlen(cell) > CELL_MAX)
            memcpy(cell + CELL_MAX - 3, "...", 4);
        t->cells[t->nrows * t->ncols + i] = cell;
    }
    t->nrows++;
}

static void table_print(struct table *t)
{
    size_t width[8] = {0};

    for (size_t c = 0; c < t->ncols; c++) {
        width[c] = strlen(t->head[c]);
        for (size_t r = 0; r < t->nrows; r++) {
            size_t w = strlen(t->cells[r * t->ncols + c]);
            if (w > width[c])
                width[c] = w;
        }
    }
    if (t->nrows == 0) {
        printf("  none\n");
        return;
    }
    for (size_t r = 0; r <= t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = r == 0 ? t->head[c] : t->cells[(r - 1) * t->ncols + c];
            int w = (int)width[c];
            if (c + 1 == t->ncols && t->right[c] != 'r')
                printf("  %s", cell);
            else
                printf(t->right[c] == 'r' ? "  %*s" : "  %-*s", w, cell);
        }
        fputs("\n", stdout);
    }
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s;

    va_start(ap, f);
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    if (n < 0) {
        cli_error("out of memory");
        exit(EXIT_SOFTWARE);
    }
    return s;
}

static char *fmt_time(int64_t ms)
{
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    struct tm tm;
    char buf[40];

    if (gmtime_r(&t, &tm) == NULL || strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return fmt("?");
    return fmt("%s", buf);
}

static char *fmt_u64(uint64_t v)
{
    return fmt("%llu", (unsigned long long)v);
}

/* The section title, with "(N of M)" when the table is cut at top. */
static void title(const char *name, size_t shown, size_t total)
{
    if (shown < total)
        printf("\n%s (%zu of %zu)\n", name, shown, total);
    else
        printf("\n%s\n", name);
}

static int by_ip(const void *a, const void *b)
{
    const struct map_entry *x = *(struct map_entry *const *)a, *y = *(struct map_entry *const *)b;
    const struct ip_stat *p = x->value, *q = y->value;

    if (p->failures != q->failures)
        return p->failures > q->failures ? -1 : 1;
    if (p->last != q->last)
        return p->last > q->last ? -1 : 1;
    return strcmp(x->key, y->key);
}

static int by_user_failures(const void *a, const void *b)
{
    const struct map_entry *x = *(struct map_entry *const *)a, *y = *(struct map_entry *const *)b;
    const struct user_stat *p = x->value, *q = y->value;

    if (p->failures != q->failures)
        return p->failures > q->failures ? -1 : 1;
    if (p->last_failure != q->last_failure)
        return p->last_failure > q->last_failure ? -1 : 1;
    return strcmp(x->key, y->key);
}

static int by_user_bytes(const void *a, const void *b)
{
    const struct map_entry *x = *(struct map_entry *const *)a, *y = *(struct map_entry *const *)b;
    const struct user_stat *p = x->value, *q = y->value;

    if (p->bytes != q->bytes)
        return p->bytes > q->bytes ? -1 : 1;
    if (p->retrieved != q->retrieved)
        return p->retrieved > q->retrieved ? -1 : 1;
    if (p->deleted != q->deleted)
        return p->deleted > q->deleted ? -1 : 1;
    return strcmp(x->key, y->key);
}

static int by_ban_time(const void *a, const void *b)
{
    const struct map_entry *x = *(struct map_entry *const *)a, *y = *(struct map_entry *const *)b;
    const struct ban_stat *p = x->value, *q = y->value;

    if (p->ts != q->ts)
        return p->ts > q->ts ? -1 : 1;
    return strcmp(x->key, y->key);
}

static int by_count(const void *a, const void *b)
{
    const struct map_entry *x = *(struct map_entry *const *)a, *y = *(struct map_entry *const *)b;
    uint64_t p = *(const uint64_t *)x->value, q = *(const uint64_t *)y->value;

    if (p != q)
        return p > q ? -1 : 1;
    return strcmp(x->key, y->key);
}

static int by_alert_time(const void *a, const void *b)
{
    const struct alert_rec *p = a, *q = b;

    if (p->ts != q->ts)
        return p->ts < q->ts ? -1 : 1;
    return p->seq < q->seq ? -1 : p->seq > q->seq;
}

/* Keeps the entries for which keep() is true, sorted; returns how many. */
static size_t select_sorted(struct map_entry **all, size_t n, bool (*keep)(const void *, int64_t),
                            int64_t now, int (*cmp)(const void *, const void *))
{
    size_t k = 0;

    for (size_t i = 0; i < n; i++)
        if (keep == NULL || keep(all[i]->value, now))
            all[k++] = all[i];
    qsort(all, k, sizeof(*all), cmp);
    return k;
}

static bool has_failures(const void *v, int64_t now)
{
    (void)now;
    return ((const struct user_stat *)v)->failures > 0;
}

static bool has_downloads(const void *v, int64_t now)
{
    const struct user_stat *u = v;
    (void)now;
    return u->retrieved > 0 || u->deleted > 0;
}

/* A ban in force: set, not yet expired, and not lifted after it was set. */
static bool ban_active(const void *v, int64_t now)
{
    const struct ban_stat *b = v;

    if (b->seq == 0 || b->until <= now)
        return false;
    return !b->unbanned || b->unban_ts < b->ts || (b->unban_ts == b->ts && b->unban_seq < b->seq);
}

static void print_failing_ips(const struct report *r)
{
    static const char *const head[] = {"IP", "FAILURES", "USERS", "LAST SEEN"};
    struct table t = {.ncols = 4, .head = head, .right = "-rr-"};
    size_t n;
    struct map_entry **all = map_entries(&r->ips, &n);

    n = select_sorted(all, n, NULL, 0, by_ip);
    title("Failed logins by IP", n < r->top ? n : r->top, n);
    for (size_t i = 0; i < n && i < r->top; i++) {
        const struct ip_stat *s = all[i]->value;
        char *row[] = {report_display(all[i]->key), fmt_u64(s->failures), fmt_u64(s->users),
                       fmt_time(s->last)};
        table_row(&t, row);
    }
    table_print(&t);
    free(all);
}

static void print_failing_users(const struct report *r)
{
    static const char *const head[] = {"ACCOUNT", "FAILURES", "IPS", "LAST SEEN"};
    struct table t = {.ncols = 4, .head = head, .right = "-rr-"};
    size_t n;
    struct map_entry **all = map_entries(&r->users, &n);

    n = select_sorted(all, n, has_failures, 0, by_user_failures);
    title("Failed logins by account", n < r->top ? n : r->top, n);
    for (size_t i = 0; i < n && i < r->top; i++) {
        const struct user_stat *s = all[i]->value;
        char *row[] = {report_display(all[i]->key), fmt_u64(s->failures), fmt_u64(s->ips),
                       fmt_time(s->last_failure)};
        table_row(&t, row);
    }
    table_print(&t);
    free(all);
}

static void print_bans(const struct report *r)
{
    static const char *const head[] = {"NET", "BANNED AT", "UNTIL", "FAILURES"};
    struct table t = {.ncols = 4, .head = head, .right = "---r"};
    size_t n;
    struct map_entry **all = map_entries(&r->bans, &n);

    n = select_sorted(all, n, ban_active, r->now, by_ban_time);
    title("Active bans", n < r->top ? n : r->top, n);
    for (size_t i = 0; i < n && i < r->top; i++) {
        const struct ban_stat *b = all[i]->value;
        char *row[] = {report_display(all[i]->key), fmt_time(b->ts), fmt_time(b->until),
                       fmt("%s", b->failures != NULL ? b->failures : "-")};
        table_row(&t, row);
    }
    table_print(&t);
    free(all);
}

static void print_alerts(const struct report *r)
{
    static const char *const kind_head[] = {"KIND", "COUNT"};
    static const char *const last_head[] = {"TIME", "KIND", "SUBJECT", "FACTS"};
    struct table kinds = {.ncols = 2, .head = kind_head, .right = "-r"};
    struct table last = {.ncols = 4, .head = last_head, .right = "----"};
    struct alert_rec recent[REPORT_LAST_ALERTS];
    size_t n;
    struct map_entry **all = map_entries(&r->kinds, &n);

    n = select_sorted(all, n, NULL, 0, by_count);
    title("Alerts by kind", n, n);
    for (size_t i = 0; i < n; i++) {
        char *row[] = {report_display(all[i]->key), fmt_u64(*(const uint64_t *)all[i]->value)};
        table_row(&kinds, row);
    }
    table_print(&kinds);
    free(all);

    if (r->last_alert_count == 0)
        return;
    memcpy(recent, r->last_alerts, r->last_alert_count * sizeof(recent[0]));
    qsort(recent, r->last_alert_count, sizeof(recent[0]), by_alert_time);
    title("Latest alerts", r->last_alert_count, r->last_alert_count);
    for (size_t i = 0; i < r->last_alert_count; i++) {
        char *row[] = {fmt_time(recent[i].ts), fmt("%s", recent[i].kind),
                       fmt("%s", recent[i].subject), fmt("%s", recent[i].facts)};
        table_row(&last, row);
    }
    table_print(&last);
}

static void print_downloads(const struct report *r)
{
    static const char *const head[] = {"ACCOUNT", "MESSAGES", "BYTES", "DELETED"};
    struct table t = {.ncols = 4, .head = head, .right = "-rrr"};
    size_t n;
    struct map_entry **all = map_entries(&r->users, &n);

    n = select_sorted(all, n, has_downloads, 0, by_user_bytes);
    title("Downloads by account", n < r->top ? n : r->top, n);
    for (size_t i = 0; i < n && i < r->top; i++) {
        const struct user_stat *s = all[i]->value;
        char *row[] = {report_display(all[i]->key), fmt_u64(s->retrieved), fmt_u64(s->bytes),
                       fmt_u64(s->deleted)};
        table_row(&t, row);
    }
    table_print(&t);
    free(all);
}

void report_print(const struct report *r)
{
    char *since = fmt_time(r->cutoff), *now = fmt_time(r->now);
    char *source = report_display(r->source);

    printf("Postern report: %s\n", source);
    printf("Window: the last %s, from %s to %s\n", r->since_text, since, now);
    printf("Lines: %llu read, %llu audit events (%llu in the window), %llu from other programs, "
           "%llu malformed\n",
           (unsigned long long)r->lines, (unsigned long long)r->audit,
           (unsigned long long)r->in_window, (unsigned long long)r->other,
           (unsigned long long)r->malformed);
    printf("Events: %llu logins, %llu failed logins (and %llu failed on the server's side), "
           "%llu connections refused, %llu bans set, %llu alerts\n",
           (unsigned long long)r->auth_ok, (unsigned long long)r->auth_fail,
           (unsigned long long)r->auth_fail_server, (unsigned long long)r->refused,
           (unsigned long long)r->bans_set, (unsigned long long)r->alerts);
    free(since);
    free(now);
    free(source);

    print_failing_ips(r);
    print_failing_users(r);
    print_bans(r);
    print_alerts(r);
    print_downloads(r);

    printf("\nMalformed lines: %llu", (unsigned long long)r->malformed);
    for (uint64_t i = 0; i < r->malformed && i < REPORT_MALFORMED_MAX; i++)
        printf("%sline %llu: %s", i == 0 ? " (" : "; ",
               (unsigned long long)r->malformed_first[i].line, r->malformed_first[i].why);
    printf("%s\n", r->malformed > 0 ? (r->malformed > REPORT_MALFORMED_MAX ? "; ...)" : ")") : "");
}
