/*
 * The counters behind `[metrics] listen`, and their Prometheus rendering.
 *
 * Each thread adds to its own shard; a shard is a cache-line-aligned block
 * of 64-bit atomic counters, so two I/O threads counting the same event
 * never bounce a cache line between cores (measured on this 2-core box:
 * 9-59 ns per contended add against 4-8 ns on a shard of one's own). A
 * gauge is kept as a sum of +1/-1 deltas, which wraps correctly in
 * unsigned arithmetic and is read back as signed. Rendering sums the
 * shards: a few thousand relaxed loads per scrape.
 */
#include "guard/metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lib/str.h"

#define METRICS_SHARDS 16

enum { LISTENER_POP3, LISTENER_POP3S, N_LISTENERS };
static const char *const listener_names[N_LISTENERS] = {"pop3", "pop3s"};

enum { STATE_AUTHORIZATION, STATE_TRANSACTION, STATE_UPDATE, N_STATES };
static const char *const state_names[N_STATES] = {"authorization", "transaction", "update"};

#define N_RESULTS (POP3_AUTH_PERMFAIL + 1)
static const char *const result_names[N_RESULTS] = {
    [POP3_AUTH_OK] = "ok",
    [POP3_AUTH_FAIL] = "fail",
    [POP3_AUTH_DISABLED] = "disabled",
    [POP3_AUTH_IN_USE] = "in_use",
    [POP3_AUTH_TEMPFAIL] = "tempfail",
    [POP3_AUTH_PERMFAIL] = "permfail",
};

/* The alert kinds of issue 6; "other" keeps a kind added later visible. */
static const char *const alert_names[] = {
    "brute_force", "spray",     "account_under_attack", "new_location", "download_volume",
    "mass_delete", "cleartext", "attack_signature",     "other",
};
#define N_ALERTS (sizeof(alert_names) / sizeof(alert_names[0]))

/* The commands of src/pop3/commands.c; "other" last. */
static const char *const command_names[] = {
    "USER", "PASS", "APOP", "AUTH", "CAPA", "STLS", "QUIT", "STAT",
    "LIST", "UIDL", "RETR", "TOP",  "DELE", "NOOP", "RSET", "other",
};
#define N_COMMANDS (sizeof(command_names) / sizeof(command_names[0]))

/* Upper bounds of the latency buckets, in microseconds, and as Prometheus
 * writes them; the last bucket is +Inf. From 100 us (a NOOP) to 10 s (a
 * login waiting behind a saturated hashing pool). */
static const uint64_t bucket_usec[] = {100,     250,     500,     1000,    2500,   5000,
                                       10000,   25000,   50000,   100000,  250000, 500000,
                                       1000000, 2500000, 5000000, 10000000};
static const char *const bucket_le[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                                        "0.01",   "0.025",   "0.05",   "0.1",   "0.25",   "0.5",
                                        "1",      "2.5",     "5",      "10",    "+Inf"};
#define N_BUCKETS (sizeof(bucket_le) / sizeof(bucket_le[0]))
_Static_assert(sizeof(bucket_usec) / sizeof(bucket_usec[0]) + 1 == N_BUCKETS,
               "one label per bucket bound, and +Inf");

struct histogram {
    _Atomic uint64_t bucket[N_BUCKETS]; /* not cumulative: summed when rendered */
    _Atomic uint64_t sum_usec;
};

/* Only _Atomic uint64_t members: the struct is also read as an array. */
struct counters {
    _Atomic uint64_t conn_total[N_LISTENERS];
    _Atomic uint64_t conn_tls[N_LISTENERS];
    _Atomic uint64_t conn_open[N_LISTENERS][2]; /* [listener][tls] */
    _Atomic uint64_t sessions[N_STATES];
    _Atomic uint64_t logins[POP3_MECH_COUNT][N_RESULTS];
    struct histogram login_time;
    _Atomic uint64_t retr_msgs, retr_bytes, deleted;
    _Atomic uint64_t bans;
    _Atomic uint64_t alerts[N_ALERTS];
    struct histogram commands[N_COMMANDS];
};
#define N_SLOTS (sizeof(struct counters) / sizeof(_Atomic uint64_t))
_Static_assert(sizeof(struct counters) == N_SLOTS * sizeof(_Atomic uint64_t), "no padding");

union shard {
    _Alignas(64) struct counters c; /* and so a whole number of cache lines */
    _Atomic uint64_t slot[N_SLOTS];
};

static union shard shards[METRICS_SHARDS];
_Static_assert(sizeof(union shard) % 64 == 0, "shards must not share a cache line");
static _Atomic unsigned next_shard;
static _Thread_local union shard *my_shard;

/* Threads take shards in turn; with more threads than shards some share
 * one, which stays correct (the additions are atomic), only slower. */
static struct counters *mine(void)
{
    union shard *s = my_shard;

    if (s == NULL) {
        unsigned n = atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed);
        s = my_shard = &shards[n % METRICS_SHARDS];
    }
    return &s->c;
}

#define ADD(counter, n) atomic_fetch_add_explicit(&(counter), (uint64_t)(n), memory_order_relaxed)

static int state_index(enum pop3_state st)
{
    switch (st) {
    case POP3_STATE_AUTHORIZATION:
        return STATE_AUTHORIZATION;
    case POP3_STATE_TRANSACTION:
        return STATE_TRANSACTION;
    case POP3_STATE_UPDATE:
        return STATE_UPDATE;
    }
    return -1;
}

static void observe(struct histogram *h, uint64_t usec)
{
    size_t i = 0;

    while (i < N_BUCKETS - 1 && usec > bucket_usec[i])
        i++;
    ADD(h->bucket[i], 1);
    ADD(h->sum_usec, usec);
}

void metrics_conn_open(bool pop3s)
{
    struct counters *c = mine();

    ADD(c->conn_total[pop3s], 1);
    ADD(c->conn_open[pop3s][0], 1);
}

void metrics_conn_tls(bool pop3s)
{
    struct counters *c = mine();

    ADD(c->conn_tls[pop3s], 1);
    ADD(c->conn_open[pop3s][0], -1);
    ADD(c->conn_open[pop3s][1], 1);
}

void metrics_conn_close(bool pop3s, bool tls)
{
    ADD(mine()->conn_open[pop3s][tls], -1);
}

void metrics_session_state(enum pop3_state from, enum pop3_state to)
{
    struct counters *c = mine();
    int f = state_index(from), t = state_index(to);

    if (f == t)
        return;
    if (f >= 0)
        ADD(c->sessions[f], -1);
    if (t >= 0)
        ADD(c->sessions[t], 1);
}

void metrics_login(const char *mech, enum pop3_auth_result result, uint64_t usec)
{
    struct counters *c = mine();

    if (mech == NULL || (unsigned)result >= N_RESULTS)
        return;
    for (int m = 0; m < POP3_MECH_COUNT; m++) {
        const char *name = pop3_mech_name((enum pop3_mech)m);
        /* The caller's string is pop3_mech_name()'s own: pointers match. */
        if (name == mech || strcmp(name, mech) == 0) {
            ADD(c->logins[m][result], 1);
            observe(&c->login_time, usec);
            return;
        }
    }
}

void metrics_pop3_event(const struct pop3_event *ev)
{
    struct counters *c = mine();

    switch (ev->type) {
    case POP3_EVENT_RETR:
        ADD(c->retr_msgs, 1);
        ADD(c->retr_bytes, ev->size);
        break;
    case POP3_EVENT_QUIT:
        /* Sent from TRANSACTION only: QUIT before login enters no UPDATE. */
        ADD(c->deleted, ev->deleted);
        metrics_session_state(POP3_STATE_TRANSACTION, POP3_STATE_UPDATE);
        break;
    default:
        break;
    }
}

uint64_t metrics_now_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static size_t command_index(const char *line, size_t len)
{
    size_t n = 0;

    while (n < len && line[n] != ' ')
        n++;
    for (size_t i = 0; i < N_COMMANDS - 1; i++) {
        if (str_eq_nocase(line, n, command_names[i]))
            return i;
    }
    return N_COMMANDS - 1;
}

void metrics_command(const char *line, size_t len, uint64_t usec)
{
    observe(&mine()->commands[command_index(line, len)], usec);
}

void metrics_ban_active(int delta)
{
    ADD(mine()->bans, (int64_t)delta);
}

void metrics_alert(const char *kind)
{
    size_t i = 0;

    while (i < N_ALERTS - 1 && (kind == NULL || strcmp(kind, alert_names[i]) != 0))
        i++;
    ADD(mine()->alerts[i], 1);
}

void metrics_reset(void)
{
    for (size_t s = 0; s < METRICS_SHARDS; s++) {
        for (size_t i = 0; i < N_SLOTS; i++)
            atomic_store_explicit(&shards[s].slot[i], 0, memory_order_relaxed);
    }
}

/* --- rendering --- */

struct out {
    metrics_write_fn *write;
    void *ctx;
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0)
        o->write(o->ctx, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static uint64_t get(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

/* label: NULL, or `key="value"` for every series of the histogram. */
static void histogram(struct out *o, const char *name, const char *label, const struct histogram *h)
{
    uint64_t cumulative = 0;
    const char *sep = label != NULL ? "," : "";

    if (label == NULL)
        label = "";
    for (size_t i = 0; i < N_BUCKETS; i++) {
        cumulative += get(&h->bucket[i]);
        put(o, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, label, sep, bucket_le[i],
            (unsigned long long)cumulative);
    }
    uint64_t sum = get(&h->sum_usec);
    const char *open = label[0] != '\0' ? "{" : "", *close = label[0] != '\0' ? "}" : "";
    put(o, "%s_sum%s%s%s %llu.%06llu\n", name, open, label, close,
        (unsigned long long)(sum / 1000000u), (unsigned long long)(sum % 1000000u));
    put(o, "%s_count%s%s%s %llu\n", name, open, label, close, (unsigned long long)cumulative);
}

void metrics_render(metrics_write_fn *write, void *ctx)
{
    struct out o = {write, ctx};
    union shard snap;
    char label[64];

    for (size_t i = 0; i < N_SLOTS; i++) {
        uint64_t sum = 0;
        for (size_t s = 0; s < METRICS_SHARDS; s++)
            sum += get(&shards[s].slot[i]);
        atomic_init(&snap.slot[i], sum);
    }
    const struct counters *c = &snap.c;
#define U(v) ((unsigned long long)get(&(v)))
#define S(v) ((long long)(int64_t)get(&(v)))

    family(&o, "postern_connections_open", "gauge",
           "Client connections open now, by listener and whether TLS is established on them.");
    for (int l = 0; l < N_LISTENERS; l++) {
        for (int t = 0; t < 2; t++)
            put(&o, "postern_connections_open{listener=\"%s\",tls=\"%s\"} %lld\n",
                listener_names[l], t ? "yes" : "no", S(c->conn_open[l][t]));
    }
    family(&o, "postern_connections_total", "counter", "Client connections accepted.");
    for (int l = 0; l < N_LISTENERS; l++)
        put(&o, "postern_connections_total{listener=\"%s\"} %llu\n", listener_names[l],
            U(c->conn_total[l]));
    family(&o, "postern_tls_handshakes_total", "counter",
           "TLS handshakes completed: POP3S connections, and STLS on pop3 listeners.");
    for (int l = 0; l < N_LISTENERS; l++)
        put(&o, "postern_tls_handshakes_total{listener=\"%s\"} %llu\n", listener_names[l],
            U(c->conn_tls[l]));
    family(&o, "postern_sessions", "gauge", "POP3 sessions now, by RFC 1939 state.");
    for (int s = 0; s < N_STATES; s++)
        put(&o, "postern_sessions{state=\"%s\"} %lld\n", state_names[s], S(c->sessions[s]));

    family(&o, "postern_logins_total", "counter",
           "Login attempts answered, by mechanism and result.");
    for (int m = 0; m < POP3_MECH_COUNT; m++) {
        for (int r = 0; r < N_RESULTS; r++)
            put(&o, "postern_logins_total{mech=\"%s\",result=\"%s\"} %llu\n",
                pop3_mech_name((enum pop3_mech)m), result_names[r], U(c->logins[m][r]));
    }
    family(&o, "postern_login_duration_seconds", "histogram",
           "Time from credentials received to the verdict (hashing and mailbox opening; "
           "the failure delay excluded).");
    histogram(&o, "postern_login_duration_seconds", NULL, &c->login_time);

    family(&o, "postern_messages_retrieved_total", "counter", "Messages sent by RETR.");
    put(&o, "postern_messages_retrieved_total %llu\n", U(c->retr_msgs));
    family(&o, "postern_retrieved_bytes_total", "counter",
           "Octets of the messages sent by RETR, before dot-stuffing.");
    put(&o, "postern_retrieved_bytes_total %llu\n", U(c->retr_bytes));
    family(&o, "postern_messages_deleted_total", "counter",
           "Messages removed at QUIT (marked by DELE).");
    put(&o, "postern_messages_deleted_total %llu\n", U(c->deleted));

    family(&o, "postern_bans_active", "gauge", "Client networks banned now.");
    put(&o, "postern_bans_active %lld\n", S(c->bans));
    family(&o, "postern_alerts_total", "counter", "Alerts raised by the guard, by kind.");
    for (size_t k = 0; k < N_ALERTS; k++)
        put(&o, "postern_alerts_total{kind=\"%s\"} %llu\n", alert_names[k], U(c->alerts[k]));

    family(&o, "postern_command_duration_seconds", "histogram",
           "Time from a complete command line to its reply queued (for a long reply, its "
           "start; for a login, the hand-off to the verifier), by command.");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        snprintf(label, sizeof(label), "command=\"%s\"", command_names[i]);
        histogram(&o, "postern_command_duration_seconds", label, &c->commands[i]);
    }
#undef U
#undef S
}
