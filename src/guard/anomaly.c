/*
 * Alerts: the facts the sessions report, the thresholds of [guard], and
 * for each alert one audit line and alert_command. An alert fires at most
 * once per kind and subject within alert_window, so an attack that goes
 * on for an hour is one alert, not thousands.
 */
#include "guard/guard-private.h"

#include <ctype.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/audit.h"
#include "guard/metrics.h"
#include "lib/log.h"

extern char **environ;

static const char *const kinds[] = {"brute_force",  "spray",           "account_under_attack",
                                    "new_location", "download_volume", "mass_delete",
                                    "cleartext",    "attack_signature"};
#define N_KINDS (sizeof(kinds) / sizeof(kinds[0]))

struct alert_node {
    uint32_t hash;
    time_t last;
    struct alert_node *next;
    char key[]; /* "kind\0subject" */
};

static int kind_index(const char *kind)
{
    for (size_t i = 0; i < N_KINDS; i++) {
        if (strcmp(kinds[i], kind) == 0)
            return (int)i;
    }
    return -1;
}

void guard_alerts_free(struct guard *g)
{
    for (size_t b = 0; b < sizeof(g->alerts) / sizeof(g->alerts[0]); b++) {
        for (struct alert_node *n = g->alerts[b], *next; n != NULL; n = next) {
            next = n->next;
            free(n);
        }
        g->alerts[b] = NULL;
    }
}

/* True when this kind and subject may alert now (and records it). */
static bool alert_due(struct guard *g, const char *kind, const char *subject, time_t now)
{
    size_t kl = strlen(kind), sl = strlen(subject);
    char key[600];
    size_t nb = sizeof(g->alerts) / sizeof(g->alerts[0]);

    if (kl + sl + 1 >= sizeof(key))
        sl = sizeof(key) - kl - 2;
    memcpy(key, kind, kl + 1);
    memcpy(key + kl + 1, subject, sl);
    uint32_t h = guard_hash(key, kl + 1 + sl);
    bool due = true;

    pthread_mutex_lock(&g->alert_mutex);
    struct alert_node **head = &g->alerts[h % nb], *n;
    for (n = *head; n != NULL; n = n->next) {
        if (n->hash == h && memcmp(n->key, key, kl + 1 + sl) == 0)
            break;
    }
    if (n != NULL) {
        due = n->last <= now - (time_t)g->set.alert_window;
        if (due)
            n->last = now;
    } else if ((n = malloc(sizeof(*n) + kl + 1 + sl)) != NULL) {
        n->hash = h;
        n->last = now;
        memcpy(n->key, key, kl + 1 + sl);
        n->next = *head;
        *head = n;
    }
    /* Old entries are dropped as the table is walked. */
    for (struct alert_node **np = head; *np != NULL;) {
        if ((*np)->last <= now - (time_t)g->set.alert_window && *np != n) {
            struct alert_node *old = *np;
            *np = old->next;
            free(old);
            continue;
        }
        np = &(*np)->next;
    }
    int k = kind_index(kind);
    if (due && k >= 0)
        g->counts[k]++;
    pthread_mutex_unlock(&g->alert_mutex);
    return due;
}

/* POSTERN_ALERT_<KEY>=value, with the key in capitals. */
static char *env_pair(const char *key, const char *value)
{
    size_t kl = strlen(key), vl = strlen(value);
    char *e = malloc(14 + kl + 1 + vl + 1);

    if (e == NULL)
        return NULL;
    memcpy(e, "POSTERN_ALERT_", 14);
    for (size_t i = 0; i < kl; i++)
        e[14 + i] = (char)toupper((unsigned char)key[i]);
    e[14 + kl] = '=';
    /* A value a client chose must not smuggle control characters into a
     * script's environment. */
    for (size_t i = 0; i < vl; i++)
        e[15 + kl + i] = (unsigned char)value[i] < 0x20 || value[i] == 0x7f ? '?' : value[i];
    e[15 + kl + vl] = '\0';
    return e;
}

static void run_command(struct guard *g, const char *kind, const char *subject,
                        const char *const *facts)
{
    char *envp[32];
    size_t n = 0;

    for (char **e = environ; *e != NULL && n < 8; e++) {
        if (strncmp(*e, "PATH=", 5) == 0 || strncmp(*e, "LANG=", 5) == 0)
            envp[n++] = strdup(*e);
    }
    envp[n++] = env_pair("kind", kind);
    envp[n++] = env_pair("subject", subject);
    for (size_t i = 0; facts != NULL && facts[i] != NULL && facts[i + 1] != NULL && n < 30; i += 2)
        envp[n++] = env_pair(facts[i], facts[i + 1]);
    envp[n] = NULL;
    bool ok = true;
    for (size_t i = 0; i < n; i++)
        ok &= envp[i] != NULL;
    char *argv[] = {"/bin/sh", "-c", (char *)g->set.alert_command, NULL};
    pid_t pid;
    /* The child is reaped by the kernel (SIGCHLD is ignored in posternd). */
    if (ok && posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, envp) != 0)
        log_error("alert_command: cannot start /bin/sh");
    for (size_t i = 0; i < n; i++)
        free(envp[i]);
}

void guard_alert(struct guard *g, const char *kind, const char *subject, const char *const *facts,
                 time_t now)
{
    struct audit_line a;

    if (!alert_due(g, kind, subject, now))
        return;
    metrics_alert(kind);
    audit_begin(&a, strcmp(kind, "new_location") == 0 ? "info" : "warning", "alert");
    audit_tok(&a, "kind", kind);
    audit_str(&a, "subject", subject);
    for (size_t i = 0; facts != NULL && facts[i] != NULL && facts[i + 1] != NULL; i += 2)
        audit_str(&a, facts[i], facts[i + 1]);
    audit_end(&a);
    if (g->set.alert_command != NULL)
        run_command(g, kind, subject, facts);
}

void guard_raise(struct guard *g, const struct pending_alert *alerts, unsigned n, time_t now)
{
    for (unsigned i = 0; i < n; i++) {
        const struct pending_alert *p = &alerts[i];
        const char *facts[8];
        size_t f = 0;
        for (int j = 0; j < 3 && p->k[j] != NULL; j++) {
            facts[f++] = p->k[j];
            facts[f++] = p->v[j];
        }
        facts[f] = NULL;
        guard_alert(g, p->kind, p->subject, facts, now);
    }
}

unsigned long guard_alert_count(struct guard *g, const char *kind)
{
    int k = kind_index(kind);

    if (k < 0)
        return 0;
    pthread_mutex_lock(&g->alert_mutex);
    unsigned long n = g->counts[k];
    pthread_mutex_unlock(&g->alert_mutex);
    return n;
}

void guard_note_retr(struct guard *g, const char *user, uint64_t bytes, time_t now)
{
    const struct guard_settings *s = &g->set;
    char msgs[24], total[24];
    bool alert = false;

    if (s->download_messages == 0 && s->download_bytes == 0)
        return;
    pthread_mutex_lock(&g->mutex);
    struct user_node *u = guard_user_find(g, user, true);
    if (u != NULL) {
        if (u->dl_start <= now - (time_t)s->download_window) {
            u->dl_start = now;
            u->dl_messages = 0;
            u->dl_bytes = 0;
        }
        u->dl_messages++;
        u->dl_bytes += bytes;
        u->last_seen = now;
        alert = (s->download_messages > 0 && u->dl_messages > s->download_messages) ||
                (s->download_bytes > 0 && u->dl_bytes > s->download_bytes);
        snprintf(msgs, sizeof(msgs), "%llu", (unsigned long long)u->dl_messages);
        snprintf(total, sizeof(total), "%llu", (unsigned long long)u->dl_bytes);
    }
    pthread_mutex_unlock(&g->mutex);
    if (alert) {
        char window[16];
        snprintf(window, sizeof(window), "%u", s->download_window);
        const char *facts[] = {"messages", msgs, "bytes", total, "window", window, NULL};
        guard_alert(g, "download_volume", user, facts, now);
    }
}

void guard_note_quit(struct guard *g, const char *user, const char *sid, unsigned deleted,
                     unsigned total)
{
    const struct guard_settings *s = &g->set;

    if (deleted == 0)
        return;
    bool many = s->mass_delete_messages > 0 && deleted > s->mass_delete_messages;
    /* A share of a tiny mailbox says nothing: a client emptying 3 of 3
     * messages is what POP3 is for. The share counts from 20 messages. */
    bool share = s->mass_delete_percent > 0 && total >= 20 &&
                 (uint64_t)deleted * 100 > (uint64_t)total * s->mass_delete_percent;
    if (!many && !share)
        return;
    char d[16], t[16];
    snprintf(d, sizeof(d), "%u", deleted);
    snprintf(t, sizeof(t), "%u", total);
    const char *facts[] = {"deleted", d, "total", t, "sid", sid, NULL};
    guard_alert(g, "mass_delete", user, facts, time(NULL));
}

void guard_note_cleartext(struct guard *g, const char *ip, const char *user, const char *mech)
{
    const char *facts[] = {"mech", mech, user != NULL ? "user" : NULL, user, NULL};
    guard_alert(g, "cleartext", ip, facts, time(NULL));
}

void guard_note_attack(struct guard *g, const char *ip, const char *sid, const char *what)
{
    const char *facts[] = {"sid", sid, "what", what, NULL};
    guard_alert(g, "attack_signature", ip, facts, time(NULL));
}
