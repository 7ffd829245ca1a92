#ifndef POSTERN_GUARD_PRIVATE_H
#define POSTERN_GUARD_PRIVATE_H

/* Shared by ratelimit.c and anomaly.c. */

#include "guard/guard.h"

#include <pthread.h>

#define GUARD_BUCKETS       4096
#define GUARD_RECENT_PAIRS  10  /* (user, password) pairs that do not count again */
#define GUARD_RING          100 /* failure times kept: ban_after and account_failures at most */
#define GUARD_SPRAY_MAX     64
#define GUARD_ATTACK_MAX    64
#define GUARD_KNOWN_IPS     8
#define GUARD_KNOWN_IP_DAYS 30
/* Seconds between saves of known-nets after a new net, after refreshes. */
#define GUARD_KNOWN_SAVE_NEW     60
#define GUARD_KNOWN_SAVE_TOUCHED 3600

struct ip_node {
    unsigned char ip[16];
    unsigned conns, preauth;
    struct ip_node *next;
};

struct net_node {
    struct guard_net net;
    unsigned consecutive; /* failures since the last success: the delay */
    time_t fail_times[GUARD_RING];
    unsigned n_fail;
    unsigned char pairs[GUARD_RECENT_PAIRS][16];
    unsigned n_pairs, pair_pos;
    time_t banned_until;
    uint32_t users[GUARD_SPRAY_MAX]; /* accounts tried, for spray */
    time_t user_times[GUARD_SPRAY_MAX];
    unsigned n_users;
    time_t last_seen;
    struct net_node *next;
};

/* What only an account that fails needs: allocated at its first failure,
 * so that the accounts that just log in cost little. */
struct user_fails {
    time_t fail_times[GUARD_RING];
    unsigned n_fail;
    struct {
        struct guard_net net;
        time_t t;
    } fail_nets[GUARD_ATTACK_MAX];
    unsigned n_fail_nets;
};

struct user_node {
    struct user_fails *f; /* NULL until the first failure */
    struct {
        struct guard_net net;
        time_t last_ok;
    } known[GUARD_KNOWN_IPS];
    unsigned n_known;
    time_t last_login;
    time_t dl_start;
    uint64_t dl_messages, dl_bytes;
    time_t last_seen;
    struct user_node *next;
    char name[];
};

struct alert_node;

struct guard {
    struct guard_settings set;
    pthread_mutex_t mutex;
    unsigned conns;
    unsigned bans;
    struct ip_node *ips[GUARD_BUCKETS];
    struct net_node *nets[GUARD_BUCKETS];
    struct user_node *users[GUARD_BUCKETS];
    bool known_new;     /* an account logged in from a new net since the save */
    bool known_touched; /* one refreshed a known net's last login */
    time_t known_saved;
    /* anomaly.c */
    pthread_mutex_t alert_mutex;
    struct alert_node *alerts[256];
    unsigned long counts[8];
};

/* An alert found under the mutex, raised after it. */
struct pending_alert {
    const char *kind;
    char subject[256];
    const char *k[3];
    char v[3][64];
};

uint32_t guard_hash(const void *data, size_t len);
struct net_node *guard_net_find(struct guard *g, const struct guard_net *net, bool create);
struct user_node *guard_user_find(struct guard *g, const char *user, bool create);
void guard_raise(struct guard *g, const struct pending_alert *alerts, unsigned n, time_t now);
void guard_alerts_free(struct guard *g);

#endif
