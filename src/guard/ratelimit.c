/* Connection counting per client address, and the failure delay. */
#include "guard/guard.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define IP_BUCKETS 4096

struct ip_node {
    unsigned char ip[16];
    unsigned conns;
    struct ip_node *next;
};

struct guard {
    struct guard_settings set;
    pthread_mutex_t mutex;
    unsigned conns;
    struct ip_node *buckets[IP_BUCKETS];
};

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

static size_t ip_bucket(const unsigned char key[16])
{
    uint32_t h = 2166136261u;

    for (int i = 0; i < 16; i++) {
        h ^= key[i];
        h *= 16777619u;
    }
    return h % IP_BUCKETS;
}

struct guard *guard_new(const struct guard_settings *set)
{
    struct guard *g = calloc(1, sizeof(*g));

    if (g != NULL) {
        g->set = *set;
        pthread_mutex_init(&g->mutex, NULL);
    }
    return g;
}

void guard_free(struct guard **gp)
{
    struct guard *g = *gp;

    if (g == NULL)
        return;
    for (size_t i = 0; i < IP_BUCKETS; i++) {
        for (struct ip_node *n = g->buckets[i], *next; n != NULL; n = next) {
            next = n->next;
            free(n);
        }
    }
    pthread_mutex_destroy(&g->mutex);
    free(g);
    *gp = NULL;
}

enum guard_verdict guard_conn_open(struct guard *g, const struct sockaddr *sa)
{
    unsigned char key[16];
    enum guard_verdict v = GUARD_ACCEPT;
    struct ip_node *n;

    ip_key(sa, key);
    size_t b = ip_bucket(key);
    pthread_mutex_lock(&g->mutex);
    for (n = g->buckets[b]; n != NULL; n = n->next) {
        if (memcmp(n->ip, key, 16) == 0)
            break;
    }
    if (g->conns >= g->set.max_connections) {
        v = GUARD_TOO_MANY;
    } else if (n != NULL && n->conns >= g->set.max_connections_per_ip) {
        v = GUARD_TOO_MANY_FROM_IP;
    } else {
        if (n == NULL && (n = calloc(1, sizeof(*n))) != NULL) {
            memcpy(n->ip, key, 16);
            n->next = g->buckets[b];
            g->buckets[b] = n;
        }
        if (n == NULL) {
            v = GUARD_TOO_MANY;
        } else {
            n->conns++;
            g->conns++;
        }
    }
    pthread_mutex_unlock(&g->mutex);
    return v;
}

void guard_conn_close(struct guard *g, const struct sockaddr *sa)
{
    unsigned char key[16];

    ip_key(sa, key);
    size_t b = ip_bucket(key);
    pthread_mutex_lock(&g->mutex);
    for (struct ip_node **np = &g->buckets[b]; *np != NULL; np = &(*np)->next) {
        struct ip_node *n = *np;
        if (memcmp(n->ip, key, 16) != 0)
            continue;
        g->conns--;
        if (--n->conns == 0) {
            *np = n->next;
            free(n);
        }
        break;
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

unsigned guard_failure_delay_ms(struct guard *g, const struct sockaddr *sa)
{
    (void)sa; /* per-address doubling comes with the brute-force defence */
    return g->set.failure_delay * 1000;
}
