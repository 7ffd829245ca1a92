/*
 * Connection limits, failure delays, bans and the per-account throttle
 * (guard.h). One mutex guards every table: each login takes it once or
 * twice for a few hash look-ups, which is small next to the rest of a
 * login; alerts found under it are raised after it is released.
 */
#include "guard/guard-private.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guard/audit.h"
#include "guard/metrics.h"
#include "lib/log.h"
#include "lib/fsync.h"

/* IPv4 and IPv4-mapped IPv6 addresses become the same 16-byte key. */
static void ip_key(const struct sockaddr *sa, unsigned char key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

static bool key_is_v4(const unsigned char key[16])
{
    static const unsigned char prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(key, prefix, 12) == 0;
}

static void mask(unsigned char key[16], unsigned bits)
{
    for (unsigned i = 0; i < 16; i++) {
        unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * i : 0;
        key[i] &= (unsigned char)(0xff00u >> keep);
    }
}

uint32_t guard_hash(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

void guard_net_of(const struct guard *g, const struct sockaddr *sa, struct guard_net *net)
{
    ip_key(sa, net->key);
    if (!key_is_v4(net->key))
        mask(net->key, g->set.ipv6_prefix);
}

bool guard_net_equal(const struct guard_net *a, const struct guard_net *b)
{
    return memcmp(a->key, b->key, 16) == 0;
}

void guard_net_format(const struct guard *g, const struct guard_net *net, char *out, size_t size)
{
    char addr[INET6_ADDRSTRLEN];

    if (key_is_v4(net->key)) {
        inet_ntop(AF_INET, net->key + 12, addr, sizeof(addr));
        snprintf(out, size, "%s/32", addr);
    } else {
        inet_ntop(AF_INET6, net->key, addr, sizeof(addr));
        snprintf(out, size, "%s/%u", addr, g->set.ipv6_prefix);
    }
}

int guard_parse_cidr(const char *s, size_t len, struct guard_cidr *out)
{
    char buf[INET6_ADDRSTRLEN + 8];
    unsigned bits;

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *slash = strchr(buf, '/');
    if (slash != NULL) {
        char *end;
        errno = 0;
        unsigned long b = strtoul(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || errno != 0 || b > 128)
            return -1;
        bits = (unsigned)b;
        *slash = '\0';
    } else {
        bits = 128;
    }
    memset(out->addr, 0, 16);
    struct in_addr a4;
    if (inet_pton(AF_INET, buf, &a4) == 1) {
        if (slash != NULL && bits > 32)
            return -1;
        out->addr[10] = out->addr[11] = 0xff;
        memcpy(out->addr + 12, &a4, 4);
        out->bits = slash != NULL ? 96 + bits : 128;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->bits = bits;
    } else {
        return -1;
    }
    mask(out->addr, out->bits);
    return 0;
}

int guard_parse_trusted(const char *list, struct guard_settings *set, const char **error_r)
{
    set->n_trusted = 0;
    for (const char *p = list; *p != '\0';) {
        size_t n = strcspn(p, " ,\t");
        if (n > 0) {
            if (set->n_trusted == GUARD_MAX_TRUSTED) {
                *error_r = "too many networks (at most 32)";
                return -1;
            }
            if (guard_parse_cidr(p, n, &set->trusted[set->n_trusted]) < 0) {
                *error_r = "not an address or ADDRESS/BITS";
                return -1;
            }
            set->n_trusted++;
        }
        p += n;
        p += strspn(p, " ,\t");
    }
    return 0;
}

bool guard_is_trusted(const struct guard *g, const struct sockaddr *sa)
{
    unsigned char key[16];

    ip_key(sa, key);
    for (unsigned i = 0; i < g->set.n_trusted; i++) {
        unsigned char k[16];
        memcpy(k, key, 16);
        mask(k, g->set.trusted[i].bits);
        if (memcmp(k, g->set.trusted[i].addr, 16) == 0)
            return true;
    }
    return false;
}

/* --- tables --- */

static struct ip_node *ip_find(struct guard *g, const unsigned char key[16], bool create)
{
    size_t b = guard_hash(key, 16) % GUARD_BUCKETS;

    for (struct ip_node *n = g->ips[b]; n != NULL; n = n->next) {
        if (memcmp(n->ip, key, 16) == 0)
            return n;
    }
    if (!create)
        return NULL;
    struct ip_node *n = calloc(1, sizeof(*n));
    if (n != NULL) {
        memcpy(n->ip, key, 16);
        n->next = g->ips[b];
        g->ips[b] = n;
    }
    return n;
}

static void ip_release(struct guard *g, const unsigned char key[16])
{
    size_t b = guard_hash(key, 16) % GUARD_BUCKETS;

    for (struct ip_node **np = &g->ips[b]; *np != NULL; np = &(*np)->next) {
        struct ip_node *n = *np;
        if (memcmp(n->ip, key, 16) == 0) {
            if (n->conns == 0) {
                *np = n->next;
                free(n);
            }
            return;
        }
    }
}

struct net_node *guard_net_find(struct guard *g, const struct guard_net *net, bool create)
{
    size_t b = guard_hash(net->key, 16) % GUARD_BUCKETS;

    for (struct net_node *n = g->nets[b]; n != NULL; n = n->next) {
        if (guard_net_equal(&n->net, net))
            return n;
    }
    if (!create)
        return NULL;
    struct net_node *n = calloc(1, sizeof(*n));
    if (n != NULL) {
        n->net = *net;
        n->next = g->nets[b];
        g->nets[b] = n;
    }
    return n;
}

struct user_node *guard_user_find(struct guard *g, const char *user, bool create)
{
    size_t len = strlen(user);
    size_t b = guard_hash(user, len) % GUARD_BUCKETS;

    if (len > 255)
        return NULL;
    for (struct user_node *n = g->users[b]; n != NULL; n = n->next) {
        if (strcmp(n->name, user) == 0)
            return n;
    }
    if (!create)
        return NULL;
    struct user_node *n = calloc(1, sizeof(*n) + len + 1);
    if (n != NULL) {
        memcpy(n->name, user, len + 1);
        n->next = g->users[b];
        g->users[b] = n;
    }
    return n;
}

/* --- bans kept across restarts --- */

/* Under the mutex (bans are rare: the file is small and seldom written). */
static void bans_save(struct guard *g)
{
    char path[4096], *text = NULL;
    size_t len = 0;

    if (g->set.state_dir == NULL)
        return;
    snprintf(path, sizeof(path), "%s/bans", g->set.state_dir);
    FILE *m = open_memstream(&text, &len);
    if (m == NULL) {
        log_error("cannot write %s: out of memory", path);
        return;
    }
    fputs("# posternd: banned networks and when the ban ends (unix time)\n", m);
    for (size_t b = 0; b < GUARD_BUCKETS; b++) {
        for (struct net_node *n = g->nets[b]; n != NULL; n = n->next) {
            if (n->banned_until == 0)
                continue;
            char net[64];
            guard_net_format(g, &n->net, net, sizeof(net));
            fprintf(m, "%s %lld\n", net, (long long)n->banned_until);
        }
    }
    if (fclose(m) != 0 || fsync_replace(path, text, len) < 0)
        log_error("cannot write %s: %s", path, strerror(errno));
    free(text);
}

static void bans_load(struct guard *g, time_t now)
{
    char path[4096], line[256];

    if (g->set.state_dir == NULL)
        return;
    snprintf(path, sizeof(path), "%s/bans", g->set.state_dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL) {
        struct guard_cidr c;
        long long until;
        char net[128];
        if (line[0] == '#' || sscanf(line, "%127s %lld", net, &until) != 2 ||
            guard_parse_cidr(net, strlen(net), &c) < 0) {
            continue;
        }
        if (until <= now)
            continue;
        struct guard_net gn;
        memcpy(gn.key, c.addr, 16);
        struct net_node *n = guard_net_find(g, &gn, true);
        if (n != NULL && n->banned_until == 0) {
            n->banned_until = (time_t)until;
            n->last_seen = now;
            g->bans++;
            metrics_ban_active(1);
        }
    }
    fclose(f);
    if (g->bans > 0)
        log_info("%u ban%s kept from before the restart", g->bans, g->bans == 1 ? "" : "s");
}

/*
 * The networks each account logged in from (the account throttle spares
 * them): read at start-up, so that a restart during an attack does not
 * lock the owners out. Lines: "user net last_ok". Written at shutdown, and
 * by the tick a minute at most after an account gains a net (an hour
 * after mere refreshes), so that a crash loses little. The text is made
 * under the mutex and written after it: logins do not wait on the disk.
 */
static char *known_text(struct guard *g, size_t *len)
{
    char *text = NULL;
    FILE *m = open_memstream(&text, len);

    if (m == NULL)
        return NULL;
    fputs("# posternd: networks each account logged in from (user net last-login)\n", m);
    for (size_t b = 0; b < GUARD_BUCKETS; b++) {
        for (struct user_node *u = g->users[b]; u != NULL; u = u->next) {
            for (unsigned i = 0; i < u->n_known; i++) {
                char net[64];
                guard_net_format(g, &u->known[i].net, net, sizeof(net));
                fprintf(m, "%s %s %lld\n", u->name, net, (long long)u->known[i].last_ok);
            }
        }
    }
    if (fclose(m) != 0) {
        free(text);
        return NULL;
    }
    g->known_new = false;
    g->known_touched = false;
    return text;
}

/* A failed write (a full disk) is tried again a minute later. */
static void known_write(struct guard *g, char *text, size_t len)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/known-nets", g->set.state_dir);
    if (fsync_replace(path, text, len) < 0) {
        log_error("cannot write %s: %s", path, strerror(errno));
        pthread_mutex_lock(&g->mutex);
        g->known_new = true;
        pthread_mutex_unlock(&g->mutex);
    }
    free(text);
}

/* Under the mutex: the text to write now, or NULL. */
static char *known_due(struct guard *g, time_t now, bool force, size_t *len)
{
    if (g->set.state_dir == NULL)
        return NULL;
    if (!force && !(g->known_new && now - g->known_saved >= GUARD_KNOWN_SAVE_NEW) &&
        !(g->known_touched && now - g->known_saved >= GUARD_KNOWN_SAVE_TOUCHED))
        return NULL;
    char *text = known_text(g, len);
    if (text == NULL)
        log_error("cannot save the known networks: out of memory");
    else
        g->known_saved = now;
    return text;
}

void guard_save_known(struct guard *g)
{
    size_t len = 0;

    pthread_mutex_lock(&g->mutex);
    char *text = known_due(g, time(NULL), true, &len);
    pthread_mutex_unlock(&g->mutex);
    if (text != NULL)
        known_write(g, text, len);
}

static void known_load(struct guard *g, time_t now)
{
    char path[4096], line[512];

    if (g->set.state_dir == NULL)
        return;
    snprintf(path, sizeof(path), "%s/known-nets", g->set.state_dir);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL) {
        char user[256], net[128];
        long long last;
        struct guard_cidr c;
        if (line[0] == '#' || sscanf(line, "%255s %127s %lld", user, net, &last) != 3 ||
            guard_parse_cidr(net, strlen(net), &c) < 0 || last <= now - GUARD_KNOWN_IP_DAYS * 86400)
            continue;
        struct user_node *u = guard_user_find(g, user, true);
        if (u == NULL || u->n_known == GUARD_KNOWN_IPS)
            continue;
        memcpy(u->known[u->n_known].net.key, c.addr, 16);
        u->known[u->n_known].last_ok = (time_t)last;
        u->n_known++;
        u->last_seen = now;
    }
    fclose(f);
}

/* --- the face --- */

struct guard *guard_new(const struct guard_settings *set)
{
    struct guard *g = calloc(1, sizeof(*g));

    if (g == NULL)
        return NULL;
    g->set = *set;
    if (g->set.ipv6_prefix < 32 || g->set.ipv6_prefix > 128)
        g->set.ipv6_prefix = 64;
    pthread_mutex_init(&g->mutex, NULL);
    pthread_mutex_init(&g->alert_mutex, NULL);
    bans_load(g, time(NULL));
    /* What was read is what the file holds: refreshes need not be saved
     * for an hour, a first new net at once. */
    time_t now = time(NULL);
    g->known_saved = now - GUARD_KNOWN_SAVE_NEW;
    known_load(g, now);
    return g;
}

void guard_free(struct guard **gp)
{
    struct guard *g = *gp;

    if (g == NULL)
        return;
    for (size_t i = 0; i < GUARD_BUCKETS; i++) {
        for (struct ip_node *n = g->ips[i], *next; n != NULL; n = next) {
            next = n->next;
            free(n);
        }
        for (struct net_node *n = g->nets[i], *next; n != NULL; n = next) {
            next = n->next;
            free(n);
        }
        for (struct user_node *n = g->users[i], *next; n != NULL; n = next) {
            next = n->next;
            free(n->f);
            free(n);
        }
    }
    guard_alerts_free(g);
    pthread_mutex_destroy(&g->mutex);
    pthread_mutex_destroy(&g->alert_mutex);
    free(g);
    *gp = NULL;
}

enum guard_verdict guard_conn_open(struct guard *g, const struct sockaddr *sa)
{
    unsigned char key[16];
    struct guard_net net;
    enum guard_verdict v = GUARD_ACCEPT;
    bool trusted = guard_is_trusted(g, sa);
    time_t now = time(NULL);

    ip_key(sa, key);
    guard_net_of(g, sa, &net);
    pthread_mutex_lock(&g->mutex);
    struct ip_node *n = ip_find(g, key, false);
    struct net_node *nn = g->bans > 0 && !trusted ? guard_net_find(g, &net, false) : NULL;
    if (nn != NULL && nn->banned_until > now) {
        v = GUARD_BANNED;
    } else if (g->conns >= g->set.max_connections) {
        v = GUARD_TOO_MANY;
    } else if (n != NULL && n->conns >= g->set.max_connections_per_ip) {
        v = GUARD_TOO_MANY_FROM_IP;
    } else if (n != NULL && !trusted && n->preauth >= g->set.max_preauth_per_ip) {
        v = GUARD_TOO_MANY_PREAUTH;
    } else if (n == NULL && (n = ip_find(g, key, true)) == NULL) {
        v = GUARD_TOO_MANY;
    } else {
        n->conns++;
        n->preauth++;
        g->conns++;
    }
    pthread_mutex_unlock(&g->mutex);
    return v;
}

void guard_conn_authenticated(struct guard *g, const struct sockaddr *sa)
{
    unsigned char key[16];

    ip_key(sa, key);
    pthread_mutex_lock(&g->mutex);
    struct ip_node *n = ip_find(g, key, false);
    if (n != NULL && n->preauth > 0)
        n->preauth--;
    pthread_mutex_unlock(&g->mutex);
}

void guard_conn_close(struct guard *g, const struct sockaddr *sa, bool authenticated)
{
    unsigned char key[16];

    ip_key(sa, key);
    pthread_mutex_lock(&g->mutex);
    struct ip_node *n = ip_find(g, key, false);
    if (n != NULL) {
        g->conns--;
        n->conns--;
        if (!authenticated && n->preauth > 0)
            n->preauth--;
        ip_release(g, key);
    }
    pthread_mutex_unlock(&g->mutex);
}

unsigned guard_connections(struct guard *g)
{
    pthread_mutex_lock(&g->mutex);
    unsigned n = g->conns;
    pthread_mutex_unlock(&g->mutex);
    return n;
}

unsigned guard_bans_active(struct guard *g)
{
    pthread_mutex_lock(&g->mutex);
    unsigned n = g->bans;
    pthread_mutex_unlock(&g->mutex);
    return n;
}

/* Times within the window, oldest dropped first; returns how many remain
 * after adding now. */
static unsigned ring_add(time_t *ring, unsigned *count, unsigned cap, time_t now, unsigned window)
{
    unsigned kept = 0;

    for (unsigned i = 0; i < *count; i++) {
        if (ring[i] > now - (time_t)window)
            ring[kept++] = ring[i];
    }
    if (kept == cap) {
        memmove(ring, ring + 1, (cap - 1) * sizeof(*ring));
        kept--;
    }
    ring[kept++] = now;
    *count = kept;
    return kept;
}

static bool user_knows_net(const struct user_node *u, const struct guard_net *net, time_t now)
{
    for (unsigned i = 0; i < u->n_known; i++) {
        if (guard_net_equal(&u->known[i].net, net) &&
            u->known[i].last_ok > now - GUARD_KNOWN_IP_DAYS * 86400)
            return true;
    }
    return false;
}

/* Remembers a net the account logged in from; returns true when it is new
 * while the account has other recent ones (new_location). */
static bool user_add_known(struct guard *g, struct user_node *u, const struct guard_net *net,
                           time_t now)
{
    unsigned oldest = 0;
    bool others = false;

    for (unsigned i = 0; i < u->n_known; i++) {
        if (guard_net_equal(&u->known[i].net, net)) {
            u->known[i].last_ok = now;
            g->known_touched = true;
            return false;
        }
        if (u->known[i].last_ok > now - GUARD_KNOWN_IP_DAYS * 86400)
            others = true;
        if (u->known[i].last_ok < u->known[oldest].last_ok)
            oldest = i;
    }
    unsigned slot = u->n_known < GUARD_KNOWN_IPS ? u->n_known++ : oldest;
    u->known[slot].net = *net;
    u->known[slot].last_ok = now;
    g->known_new = true;
    return others;
}

void guard_login(struct guard *g, const struct guard_attempt *at, struct guard_decision *d)
{
    const struct guard_settings *s = &g->set;
    bool trusted = guard_is_trusted(g, at->sa);
    struct pending_alert alerts[4];
    unsigned n_alerts = 0;
    time_t now = at->now;

    memset(d, 0, sizeof(*d));
    guard_net_of(g, at->sa, &d->net);
    pthread_mutex_lock(&g->mutex);
    /* Only failures need a network's record; a success only resets one. */
    struct net_node *nn = guard_net_find(g, &d->net, !at->ok && at->failure);
    struct user_node *u = at->user[0] != '\0' ? guard_user_find(g, at->user, true) : NULL;
    if (nn != NULL)
        nn->last_seen = now;
    if (u != NULL)
        u->last_seen = now;
    /* A connection of a banned net that was already waiting for its answer
     * learns nothing more: even the right password is refused. */
    if (nn != NULL && nn->banned_until > now && !trusted) {
        d->refused = true;
        d->delay_ms = s->failure_delay_max * 1000;
        pthread_mutex_unlock(&g->mutex);
        return;
    }

    /* Spraying from many nets at one account: attempts from nets that
     * never logged into it wait, whatever their outcome; its owner does
     * not. */
    if (u != NULL && s->account_failures > 0 && !trusted && !user_knows_net(u, &d->net, now)) {
        unsigned recent = 0;
        for (unsigned i = 0; u->f != NULL && i < u->f->n_fail; i++)
            recent += u->f->fail_times[i] > now - (time_t)s->account_window;
        if (recent >= s->account_failures)
            d->delay_ms = s->failure_delay_max * 1000;
    }

    if (at->ok) {
        if (nn != NULL)
            nn->consecutive = 0;
        if (u != NULL) {
            if (s->login_delay > 0 && u->last_login != 0 &&
                now - u->last_login < (time_t)s->login_delay)
                d->too_soon = true;
            else
                u->last_login = now;
            if (!d->too_soon && user_add_known(g, u, &d->net, now) && n_alerts < 4) {
                struct pending_alert *a = &alerts[n_alerts++];
                memset(a, 0, sizeof(*a));
                a->kind = "new_location";
                snprintf(a->subject, sizeof(a->subject), "%s", at->user);
                snprintf(a->v[0], sizeof(a->v[0]), "%s", at->ip);
                a->k[0] = "ip";
            }
        }
    } else if (at->failure && nn != NULL && !trusted) {
        bool repeat = false;
        for (unsigned i = 0; at->pair != NULL && i < nn->n_pairs; i++)
            repeat |= memcmp(nn->pairs[i], at->pair, 16) == 0;
        if (!repeat) {
            if (at->pair != NULL) {
                memcpy(nn->pairs[nn->pair_pos], at->pair, 16);
                nn->pair_pos = (nn->pair_pos + 1) % GUARD_RECENT_PAIRS;
                if (nn->n_pairs < GUARD_RECENT_PAIRS)
                    nn->n_pairs++;
            }
            nn->consecutive++;
            unsigned fails = s->ban_after > 0 ? ring_add(nn->fail_times, &nn->n_fail, GUARD_RING,
                                                         now, s->ban_window)
                                              : 0;
            if (s->ban_after > 0 && fails >= s->ban_after && nn->banned_until <= now) {
                nn->banned_until = now + s->ban_time;
                g->bans++;
                metrics_ban_active(1);
                d->banned = true;
                nn->n_fail = 0;
            }
            /* One net trying many accounts. */
            if (u != NULL && s->spray_accounts > 0) {
                uint32_t h = guard_hash(at->user, strlen(at->user));
                unsigned kept = 0;
                bool seen = false;
                for (unsigned i = 0; i < nn->n_users; i++) {
                    if (nn->user_times[i] <= now - (time_t)s->alert_window)
                        continue;
                    nn->users[kept] = nn->users[i];
                    nn->user_times[kept++] = nn->user_times[i];
                    seen |= nn->users[i] == h;
                }
                nn->n_users = kept;
                if (!seen && kept < GUARD_SPRAY_MAX) {
                    nn->users[kept] = h;
                    nn->user_times[kept] = now;
                    nn->n_users++;
                }
                if (nn->n_users > s->spray_accounts && n_alerts < 4) {
                    struct pending_alert *a = &alerts[n_alerts++];
                    memset(a, 0, sizeof(*a));
                    a->kind = "spray";
                    snprintf(a->subject, sizeof(a->subject), "%s", at->ip);
                    a->k[0] = "accounts";
                    snprintf(a->v[0], sizeof(a->v[0]), "%u", nn->n_users);
                    a->k[1] = "window";
                    snprintf(a->v[1], sizeof(a->v[1]), "%u", s->alert_window);
                }
            }
        }
        /* The delay doubles with each new guess, up to the maximum. */
        unsigned shift = nn->consecutive > 0 ? nn->consecutive - 1 : 0;
        uint64_t ms = (uint64_t)s->failure_delay * 1000 << (shift > 20 ? 20 : shift);
        if (ms > (uint64_t)s->failure_delay_max * 1000)
            ms = (uint64_t)s->failure_delay_max * 1000;
        if (ms > d->delay_ms)
            d->delay_ms = (unsigned)ms;
        if (d->banned && n_alerts < 4) {
            struct pending_alert *a = &alerts[n_alerts++];
            memset(a, 0, sizeof(*a));
            a->kind = "brute_force";
            guard_net_format(g, &nn->net, a->subject, sizeof(a->subject));
            a->k[0] = "failures";
            snprintf(a->v[0], sizeof(a->v[0]), "%u", s->ban_after);
            a->k[1] = "window";
            snprintf(a->v[1], sizeof(a->v[1]), "%u", s->ban_window);
        }
    }
    /* Failures for one account, from anywhere (trusted nets too: the
     * account is what is attacked). */
    if (!at->ok && at->failure && u != NULL && u->f == NULL)
        u->f = calloc(1, sizeof(*u->f));
    if (!at->ok && at->failure && u != NULL && u->f != NULL) {
        struct user_fails *uf = u->f;
        ring_add(uf->fail_times, &uf->n_fail, GUARD_RING, now,
                 s->account_window > s->alert_window ? s->account_window : s->alert_window);
        if (s->attack_ips > 0) {
            unsigned kept = 0;
            bool seen = false;
            for (unsigned i = 0; i < uf->n_fail_nets; i++) {
                if (uf->fail_nets[i].t <= now - (time_t)s->alert_window)
                    continue;
                seen |= guard_net_equal(&uf->fail_nets[i].net, &d->net);
                uf->fail_nets[kept++] = uf->fail_nets[i];
            }
            uf->n_fail_nets = kept;
            if (!seen && kept < GUARD_ATTACK_MAX) {
                uf->fail_nets[kept].net = d->net;
                uf->fail_nets[kept].t = now;
                uf->n_fail_nets++;
            }
            if (uf->n_fail_nets > s->attack_ips && n_alerts < 4) {
                struct pending_alert *a = &alerts[n_alerts++];
                memset(a, 0, sizeof(*a));
                a->kind = "account_under_attack";
                snprintf(a->subject, sizeof(a->subject), "%s", at->user);
                a->k[0] = "ips";
                snprintf(a->v[0], sizeof(a->v[0]), "%u", uf->n_fail_nets);
                a->k[1] = "window";
                snprintf(a->v[1], sizeof(a->v[1]), "%u", s->alert_window);
            }
        }
    }
    if (trusted)
        d->delay_ms = 0;
    pthread_mutex_unlock(&g->mutex);

    if (d->banned) {
        struct audit_line a;
        char net[64], until[32];
        struct tm tm;
        time_t end = now + s->ban_time;
        gmtime_r(&end, &tm);
        strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", &tm);
        guard_net_format(g, &d->net, net, sizeof(net));
        audit_begin(&a, "warning", "ban");
        audit_tok(&a, "ip", at->ip);
        audit_tok(&a, "net", net);
        audit_uint(&a, "failures", s->ban_after);
        audit_uint(&a, "window", s->ban_window);
        audit_tok(&a, "until", until);
        audit_end(&a);
        pthread_mutex_lock(&g->mutex);
        bans_save(g);
        pthread_mutex_unlock(&g->mutex);
    }
    guard_raise(g, alerts, n_alerts, now);
}

void guard_expire(struct guard *g, time_t now)
{
    const struct guard_settings *s = &g->set;
    time_t idle = (time_t)(s->ban_window > s->account_window ? s->ban_window : s->account_window);
    bool changed = false;
    char lifted[16][64];
    unsigned n_lifted = 0;

    if (idle < (time_t)s->alert_window)
        idle = (time_t)s->alert_window;
    if (idle < (time_t)s->download_window)
        idle = (time_t)s->download_window;
    pthread_mutex_lock(&g->mutex);
    for (size_t b = 0; b < GUARD_BUCKETS; b++) {
        for (struct net_node **np = &g->nets[b]; *np != NULL;) {
            struct net_node *n = *np;
            if (n->banned_until != 0 && n->banned_until <= now) {
                n->banned_until = 0;
                g->bans--;
                metrics_ban_active(-1);
                changed = true;
                if (n_lifted < 16)
                    guard_net_format(g, &n->net, lifted[n_lifted++], sizeof(lifted[0]));
            }
            if (n->banned_until == 0 && n->last_seen < now - idle - 60) {
                *np = n->next;
                free(n);
                continue;
            }
            np = &n->next;
        }
        /* Accounts keep their known nets for 30 days; others go when idle. */
        for (struct user_node **up = &g->users[b]; *up != NULL;) {
            struct user_node *u = *up;
            if (u->last_seen < now - GUARD_KNOWN_IP_DAYS * 86400 ||
                (u->n_known == 0 && u->last_seen < now - idle - 60 &&
                 u->last_login < now - (time_t)s->login_delay)) {
                *up = u->next;
                free(u->f);
                free(u);
                continue;
            }
            if (u->f != NULL && u->last_seen < now - idle - 60) {
                free(u->f);
                u->f = NULL;
            }
            up = &u->next;
        }
    }
    if (changed)
        bans_save(g);
    size_t known_len = 0;
    char *known = known_due(g, now, false, &known_len);
    pthread_mutex_unlock(&g->mutex);
    if (known != NULL)
        known_write(g, known, known_len);
    for (unsigned i = 0; i < n_lifted; i++) {
        struct audit_line a;
        audit_begin(&a, "info", "unban");
        audit_tok(&a, "net", lifted[i]);
        audit_tok(&a, "reason", "expired");
        audit_end(&a);
    }
}
