/* The counters of src/guard/metrics.c and their Prometheus text: every
 * rendering is checked line by line against the exposition format 0.0.4,
 * and the values against what the test counted. */
#include <ctype.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guard/metrics.h"

struct text {
    char *buf;
    size_t len, cap;
};

static void collect(void *ctx, const char *data, size_t len)
{
    struct text *t = ctx;

    if (t->len + len + 1 > t->cap) {
        t->cap = (t->len + len + 1) * 2;
        t->buf = realloc(t->buf, t->cap);
        assert_non_null(t->buf);
    }
    memcpy(t->buf + t->len, data, len);
    t->len += len;
    t->buf[t->len] = '\0';
}

/* The whole rendering, NUL-terminated; free() it. */
static char *render(void)
{
    struct text t = {0};

    metrics_render(collect, &t);
    assert_non_null(t.buf);
    assert_int_equal(strlen(t.buf), t.len);
    return t.buf;
}

/* The value of one series, written exactly as `name{labels}`. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);

    for (const char *p = text; *p != '\0';) {
        const char *eol = strchr(p, '\n');
        if (strncmp(p, series, n) == 0 && p[n] == ' ') {
            char *end;
            double v = strtod(p + n + 1, &end);
            assert_ptr_equal(end, eol);
            return v;
        }
        p = eol + 1;
    }
    fail_msg("no series %s", series);
    return 0;
}

/* --- a strict reader of the exposition format --- */

struct family {
    char name[128];
    char type[16];
};

struct series {
    char key[1024]; /* name|labels|le */
};

static size_t name_len(const char *p, bool metric)
{
    size_t n = 0;

    while (isalpha((unsigned char)p[n]) || p[n] == '_' || (metric && p[n] == ':') ||
           (n > 0 && isdigit((unsigned char)p[n])))
        n++;
    return n;
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/*
 * Checks every line: HELP then TYPE once per family, before its samples;
 * sample names that belong to the family's type (a counter ends in _total,
 * a histogram has _bucket with le, _sum and _count); labels key="value";
 * a number as the value; no series twice; buckets cumulative and ending
 * with +Inf equal to _count. Returns the number of families.
 */
static size_t check_format(const char *text)
{
    static struct family fam[64];
    static struct series seen[1024];
    size_t n_fam = 0, n_seen = 0;
    struct family *cur = NULL;
    double last_bucket = -1, inf_bucket = -1;

    assert_true(text[0] != '\0' && text[strlen(text) - 1] == '\n');
    for (const char *line = text; *line != '\0';) {
        const char *eol = strchr(line, '\n');
        size_t len = (size_t)(eol - line);
        char buf[512];
        assert_true(len > 0 && len < sizeof(buf));
        memcpy(buf, line, len);
        buf[len] = '\0';
        line = eol + 1;

        if (strncmp(buf, "# HELP ", 7) == 0) {
            const char *name = buf + 7;
            size_t nl = name_len(name, true);
            assert_true(nl > 0 && name[nl] == ' ' && name[nl + 1] != '\0');
            assert_true(strncmp(name, "postern_", 8) == 0);
            for (size_t i = 0; i < n_fam; i++)
                assert_false(strlen(fam[i].name) == nl && strncmp(fam[i].name, name, nl) == 0);
            assert_true(n_fam < 64);
            cur = &fam[n_fam++];
            snprintf(cur->name, sizeof(cur->name), "%.*s", (int)nl, name);
            cur->type[0] = '\0';
            /* The TYPE line must come next. */
            eol = strchr(line, '\n');
            char type_line[256];
            snprintf(type_line, sizeof(type_line), "%.*s", (int)(eol - line), line);
            line = eol + 1;
            char expect[160];
            snprintf(expect, sizeof(expect), "# TYPE %s ", cur->name);
            assert_true(strncmp(type_line, expect, strlen(expect)) == 0);
            const char *type = type_line + strlen(expect);
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                        strcmp(type, "histogram") == 0);
            snprintf(cur->type, sizeof(cur->type), "%s", type);
            if (strcmp(type, "counter") == 0)
                assert_true(ends_with(cur->name, strlen(cur->name), "_total"));
            continue;
        }
        assert_true(buf[0] != '#'); /* no other comment, no TYPE without HELP */
        assert_non_null(cur);

        /* name{labels} value */
        size_t nl = name_len(buf, true);
        assert_true(nl > 0);
        const char *p = buf + nl;
        char le[32] = "";
        char other_labels[256] = "";
        if (*p == '{') {
            p++;
            while (*p != '}') {
                size_t kl = name_len(p, false);
                assert_true(kl > 0 && p[kl] == '=' && p[kl + 1] == '"');
                const char *v = p + kl + 2, *q = strchr(v, '"');
                assert_non_null(q);
                for (const char *c = v; c < q; c++)
                    assert_true(*c != '\\' && *c != '\n');
                if (kl == 2 && strncmp(p, "le", 2) == 0)
                    snprintf(le, sizeof(le), "%.*s", (int)(q - v), v);
                else
                    snprintf(other_labels + strlen(other_labels),
                             sizeof(other_labels) - strlen(other_labels), "%.*s;", (int)(q + 1 - p),
                             p);
                p = q + 1;
                if (*p == ',')
                    p++;
                else
                    assert_int_equal(*p, '}');
            }
            p++;
        }
        assert_int_equal(*p, ' ');
        char *end;
        double value = strtod(p + 1, &end);
        assert_true(end != p + 1 && *end == '\0');

        /* The name belongs to the family of the HELP above it. */
        size_t fl = strlen(cur->name);
        assert_true(strncmp(buf, cur->name, fl) == 0);
        const char *suffix = buf + fl;
        size_t sl = nl - fl;
        if (strcmp(cur->type, "histogram") == 0) {
            if (sl == 7 && strncmp(suffix, "_bucket", 7) == 0) {
                assert_true(le[0] != '\0');
                assert_true(value >= last_bucket);
                last_bucket = value;
                if (strcmp(le, "+Inf") == 0)
                    inf_bucket = value;
            } else if (sl == 4 && strncmp(suffix, "_sum", 4) == 0) {
                assert_true(le[0] == '\0' && value >= 0);
            } else {
                assert_true(sl == 6 && strncmp(suffix, "_count", 6) == 0 && le[0] == '\0');
                /* The +Inf bucket came right before and equals the count. */
                assert_true(inf_bucket >= 0);
                assert_true(value == inf_bucket);
                last_bucket = inf_bucket = -1;
            }
        } else {
            assert_int_equal(sl, 0);
            assert_true(le[0] == '\0');
            if (strcmp(cur->type, "counter") == 0)
                assert_true(value >= 0);
        }
        /* No series twice. */
        assert_true(n_seen < sizeof(seen) / sizeof(seen[0]));
        snprintf(seen[n_seen].key, sizeof(seen[n_seen].key), "%.*s|%s|%s", (int)nl, buf,
                 other_labels, le);
        for (size_t i = 0; i < n_seen; i++)
            assert_string_not_equal(seen[i].key, seen[n_seen].key);
        n_seen++;
    }
    return n_fam;
}

static int reset(void **state)
{
    (void)state;
    metrics_reset();
    return 0;
}

static void test_format(void **state)
{
    (void)state;
    /* Some of everything, so that no family renders only zeros. */
    metrics_conn_open(false);
    metrics_session_state(METRICS_NO_SESSION, POP3_STATE_AUTHORIZATION);
    metrics_login("PLAIN", POP3_AUTH_OK, 1500);
    metrics_command("STAT", 4, 20);
    metrics_command("RETR 1", 6, 3000000);
    metrics_alert("spray");
    metrics_ban_active(1);
    char *text = render();
    assert_int_equal(check_format(text), 12);
    assert_non_null(strstr(text, "# TYPE postern_command_duration_seconds histogram\n"));
    assert_non_null(strstr(text, "# TYPE postern_connections_open gauge\n"));
    assert_non_null(strstr(text, "# TYPE postern_logins_total counter\n"));
    free(text);
}

static void test_connections(void **state)
{
    (void)state;
    metrics_conn_open(false);
    metrics_conn_open(false);
    metrics_conn_open(true);
    metrics_conn_tls(true);  /* the POP3S handshake */
    metrics_conn_tls(false); /* STLS on one of the plain ones */
    metrics_conn_close(false, true);
    metrics_conn_close(true, true);
    char *t = render();
    assert_true(sample(t, "postern_connections_open{listener=\"pop3\",tls=\"no\"}") == 1);
    assert_true(sample(t, "postern_connections_open{listener=\"pop3\",tls=\"yes\"}") == 0);
    assert_true(sample(t, "postern_connections_open{listener=\"pop3s\",tls=\"no\"}") == 0);
    assert_true(sample(t, "postern_connections_open{listener=\"pop3s\",tls=\"yes\"}") == 0);
    assert_true(sample(t, "postern_connections_total{listener=\"pop3\"}") == 2);
    assert_true(sample(t, "postern_connections_total{listener=\"pop3s\"}") == 1);
    assert_true(sample(t, "postern_tls_handshakes_total{listener=\"pop3\"}") == 1);
    assert_true(sample(t, "postern_tls_handshakes_total{listener=\"pop3s\"}") == 1);
    free(t);
}

static void test_sessions_and_mail(void **state)
{
    struct pop3_event quit = {.type = POP3_EVENT_QUIT, .deleted = 4, .failed = 1};
    struct pop3_event retr = {.type = POP3_EVENT_RETR, .msg = 1, .uid = "u1", .size = 1234};
    struct pop3_event dele = {.type = POP3_EVENT_DELE, .msg = 1, .uid = "u1", .size = 1234};
    struct pop3_event clear = {.type = POP3_EVENT_CLEARTEXT, .mech = "USER"};

    (void)state;
    for (int i = 0; i < 3; i++)
        metrics_session_state(METRICS_NO_SESSION, POP3_STATE_AUTHORIZATION);
    metrics_session_state(POP3_STATE_AUTHORIZATION, POP3_STATE_TRANSACTION);
    metrics_session_state(POP3_STATE_AUTHORIZATION, POP3_STATE_TRANSACTION);
    /* A failed login leaves the state as it was. */
    metrics_session_state(POP3_STATE_AUTHORIZATION, POP3_STATE_AUTHORIZATION);
    metrics_pop3_event(&retr);
    metrics_pop3_event(&retr);
    /* DELE lines are written at QUIT too: counting them would count twice. */
    metrics_pop3_event(&dele);
    metrics_pop3_event(&clear);
    metrics_pop3_event(&quit); /* TRANSACTION -> UPDATE */
    char *t = render();
    assert_true(sample(t, "postern_sessions{state=\"authorization\"}") == 1);
    assert_true(sample(t, "postern_sessions{state=\"transaction\"}") == 1);
    assert_true(sample(t, "postern_sessions{state=\"update\"}") == 1);
    assert_true(sample(t, "postern_messages_retrieved_total") == 2);
    assert_true(sample(t, "postern_retrieved_bytes_total") == 2468);
    assert_true(sample(t, "postern_messages_deleted_total") == 4);
    free(t);

    metrics_session_state(POP3_STATE_UPDATE, METRICS_NO_SESSION);
    metrics_session_state(POP3_STATE_TRANSACTION, METRICS_NO_SESSION);
    metrics_session_state(POP3_STATE_AUTHORIZATION, METRICS_NO_SESSION);
    t = render();
    assert_true(sample(t, "postern_sessions{state=\"authorization\"}") == 0);
    assert_true(sample(t, "postern_sessions{state=\"transaction\"}") == 0);
    assert_true(sample(t, "postern_sessions{state=\"update\"}") == 0);
    free(t);
}

static void test_logins(void **state)
{
    char scram[] = "SCRAM-SHA-256"; /* not pop3_mech_name()'s own pointer */

    (void)state;
    metrics_login(pop3_mech_name(POP3_MECH_PLAIN), POP3_AUTH_OK, 1500);
    metrics_login(pop3_mech_name(POP3_MECH_PLAIN), POP3_AUTH_OK, 2500);
    metrics_login(pop3_mech_name(POP3_MECH_USER), POP3_AUTH_FAIL, 40000);
    metrics_login(scram, POP3_AUTH_IN_USE, 100);
    metrics_login("XOAUTH2", POP3_AUTH_DISABLED, 100);
    metrics_login("APOP", POP3_AUTH_TEMPFAIL, 100);
    metrics_login("OAUTHBEARER", POP3_AUTH_PERMFAIL, 100);
    /* Not counted: no mechanism, one of no name, a result out of range. */
    metrics_login(NULL, POP3_AUTH_OK, 100);
    metrics_login("CRAM-MD5", POP3_AUTH_OK, 100);
    metrics_login("PLAIN", (enum pop3_auth_result)99, 100);
    char *t = render();
    assert_true(sample(t, "postern_logins_total{mech=\"PLAIN\",result=\"ok\"}") == 2);
    assert_true(sample(t, "postern_logins_total{mech=\"PLAIN\",result=\"fail\"}") == 0);
    assert_true(sample(t, "postern_logins_total{mech=\"USER\",result=\"fail\"}") == 1);
    assert_true(sample(t, "postern_logins_total{mech=\"SCRAM-SHA-256\",result=\"in_use\"}") == 1);
    assert_true(sample(t, "postern_logins_total{mech=\"XOAUTH2\",result=\"disabled\"}") == 1);
    assert_true(sample(t, "postern_logins_total{mech=\"APOP\",result=\"tempfail\"}") == 1);
    assert_true(sample(t, "postern_logins_total{mech=\"OAUTHBEARER\",result=\"permfail\"}") == 1);
    assert_true(sample(t, "postern_logins_total{mech=\"SCRAM-SHA-256-PLUS\",result=\"ok\"}") == 0);
    assert_true(sample(t, "postern_login_duration_seconds_count") == 7);
    assert_true(sample(t, "postern_login_duration_seconds_bucket{le=\"0.0001\"}") == 4);
    assert_true(sample(t, "postern_login_duration_seconds_bucket{le=\"0.0025\"}") == 6);
    assert_true(sample(t, "postern_login_duration_seconds_bucket{le=\"0.025\"}") == 6);
    assert_true(sample(t, "postern_login_duration_seconds_bucket{le=\"0.05\"}") == 7);
    assert_non_null(strstr(t, "\npostern_login_duration_seconds_sum 0.044400\n"));
    free(t);
}

static void test_histogram_buckets(void **state)
{
    static const char *const le[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                                     "0.01",   "0.025",   "0.05",   "0.1",   "0.25",   "0.5",
                                     "1",      "2.5",     "5",      "10",    "+Inf"};
    /* A value falls in the first bucket whose bound is >= it. */
    static const struct {
        uint64_t usec;
        size_t first; /* index into le */
        const char *sum;
    } cases[] = {
        {0, 0, "0.000000"},          {1, 0, "0.000001"},
        {100, 0, "0.000100"},        {101, 1, "0.000101"},
        {250, 1, "0.000250"},        {999, 3, "0.000999"},
        {1000, 3, "0.001000"},       {1001, 4, "0.001001"},
        {99999, 9, "0.099999"},      {1000000, 12, "1.000000"},
        {1234567, 13, "1.234567"},   {10000000, 15, "10.000000"},
        {10000001, 16, "10.000001"}, {UINT32_MAX, 16, "4294.967295"},
    };

    (void)state;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        char series[128], sum[64];
        metrics_reset();
        metrics_command("NOOP", 4, cases[c].usec);
        char *t = render();
        for (size_t i = 0; i < sizeof(le) / sizeof(le[0]); i++) {
            snprintf(series, sizeof(series),
                     "postern_command_duration_seconds_bucket{command=\"NOOP\",le=\"%s\"}", le[i]);
            if (sample(t, series) != (i >= cases[c].first ? 1 : 0))
                fail_msg("%llu us: bucket le=%s", (unsigned long long)cases[c].usec, le[i]);
        }
        assert_true(sample(t, "postern_command_duration_seconds_count{command=\"NOOP\"}") == 1);
        snprintf(sum, sizeof(sum), "\npostern_command_duration_seconds_sum{command=\"NOOP\"} %s\n",
                 cases[c].sum);
        if (strstr(t, sum) == NULL)
            fail_msg("%llu us: no line %s", (unsigned long long)cases[c].usec, sum + 1);
        free(t);
    }
}

static void test_command_labels(void **state)
{
    static const struct {
        const char *line;
        size_t len;
        const char *command;
    } cases[] = {
        {"user alice", 10, "USER"},
        {"PASS pass word with spaces", 26, "PASS"},
        {"APOP a 0123", 11, "APOP"},
        {"AUTH PLAIN AGFsaWNlAHNlY3JldA==", 31, "AUTH"},
        {"Capa", 4, "CAPA"},
        {"STLS", 4, "STLS"},
        {"quit", 4, "QUIT"},
        {"STAT", 4, "STAT"},
        {"LIST 1", 6, "LIST"},
        {"UIDL", 4, "UIDL"},
        {"RETR 1", 6, "RETR"},
        {"TOP 1 2", 7, "TOP"},
        {"DELE 3", 6, "DELE"},
        {"NOOP", 4, "NOOP"},
        {"RSET", 4, "RSET"},
        /* Only the first word counts, and all of it. */
        {"TOPS", 4, "other"},
        {"NOOPX", 5, "other"},
        {"NOO", 3, "other"},
        {"", 0, "other"},
        {" NOOP", 5, "other"},
        {"XYZZY", 5, "other"},
        {"dGVzdA==", 8, "other"}, /* a SASL response */
        {"NO\0P", 4, "other"},
        /* The length given is what counts, not a NUL. */
        {"STATUS", 4, "STAT"},
    };
    size_t n = sizeof(cases) / sizeof(cases[0]);

    (void)state;
    for (size_t c = 0; c < n; c++)
        metrics_command(cases[c].line, cases[c].len, 50);
    char *t = render();
    for (size_t c = 0; c < n; c++) {
        char series[128];
        double expect = 0;
        for (size_t i = 0; i < n; i++)
            expect += strcmp(cases[i].command, cases[c].command) == 0;
        snprintf(series, sizeof(series), "postern_command_duration_seconds_count{command=\"%s\"}",
                 cases[c].command);
        if (sample(t, series) != expect)
            fail_msg("%s: %g, not %g (line \"%s\")", series, sample(t, series), expect,
                     cases[c].line);
    }
    free(t);
}

static void test_alerts_and_bans(void **state)
{
    static const char *const kinds[] = {
        "brute_force", "spray",     "account_under_attack", "new_location", "download_volume",
        "mass_delete", "cleartext", "attack_signature",
    };

    (void)state;
    for (size_t k = 0; k < 8; k++) {
        for (size_t i = 0; i <= k; i++)
            metrics_alert(kinds[k]);
    }
    metrics_alert("bogus");
    metrics_alert("SPRAY"); /* kinds are exact */
    metrics_alert(NULL);
    metrics_ban_active(1);
    metrics_ban_active(1);
    metrics_ban_active(1);
    metrics_ban_active(-1);
    char *t = render();
    for (size_t k = 0; k < 8; k++) {
        char series[96];
        snprintf(series, sizeof(series), "postern_alerts_total{kind=\"%s\"}", kinds[k]);
        assert_true(sample(t, series) == (double)(k + 1));
    }
    assert_true(sample(t, "postern_alerts_total{kind=\"other\"}") == 3);
    assert_true(sample(t, "postern_bans_active") == 2);
    free(t);

    /* A gauge is signed: a lift counted before its ban must show. */
    metrics_reset();
    metrics_ban_active(-1);
    t = render();
    assert_non_null(strstr(t, "\npostern_bans_active -1\n"));
    free(t);
}

#define THREADS    4
#define PER_THREAD 100000

static void *hammer(void *arg)
{
    (void)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        metrics_conn_open(false);
        metrics_command("NOOP", 4, 50);
        metrics_pop3_event(&(struct pop3_event){.type = POP3_EVENT_RETR, .size = 3});
        metrics_conn_close(false, false);
    }
    return NULL;
}

/* Threads counting at once lose nothing, shared shards or not. */
static void test_threads(void **state)
{
    pthread_t t[THREADS];

    (void)state;
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, NULL), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    char *text = render();
    assert_true(sample(text, "postern_connections_total{listener=\"pop3\"}") ==
                THREADS * PER_THREAD);
    assert_true(sample(text, "postern_connections_open{listener=\"pop3\",tls=\"no\"}") == 0);
    assert_true(sample(text, "postern_command_duration_seconds_count{command=\"NOOP\"}") ==
                THREADS * PER_THREAD);
    assert_true(sample(text, "postern_messages_retrieved_total") == THREADS * PER_THREAD);
    assert_true(sample(text, "postern_retrieved_bytes_total") == 3.0 * THREADS * PER_THREAD);
    assert_non_null(strstr(text, "\npostern_command_duration_seconds_sum{command=\"NOOP\"} "
                                 "20.000000\n"));
    check_format(text);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_format, reset),
        cmocka_unit_test_setup(test_connections, reset),
        cmocka_unit_test_setup(test_sessions_and_mail, reset),
        cmocka_unit_test_setup(test_logins, reset),
        cmocka_unit_test_setup(test_histogram_buckets, reset),
        cmocka_unit_test_setup(test_command_labels, reset),
        cmocka_unit_test_setup(test_alerts_and_bans, reset),
        cmocka_unit_test_setup(test_threads, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
