/*
 * The authentication cache: remembers, per user, that a given password
 * was verified, so that a client that logs in every minute with the same
 * password does not pay for yescrypt each time. Only successes are kept,
 * and never the password: the entry is an HMAC of it under a key made at
 * start-up, so a memory dump gives an attacker nothing to test offline
 * that the passwd-file would not give them. Failures always run the full
 * hash, so the cache cannot speed up guessing. An entry is valid for one
 * generation of the password database (any change to the file empties
 * it in effect) and for ttl seconds.
 */
#include "auth/auth.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "lib/keyed_mac.h"

#define CACHE_BUCKETS 4096

struct cache_entry {
    struct cache_entry *next;
    uint64_t generation;
    time_t expires;
    unsigned char mac[KEYED_MAC_LEN];
    char user[];
};

struct auth_cache {
    pthread_mutex_t mutex;
    unsigned ttl;
    size_t max_entries, n_entries;
    struct keyed_mac *mac;
    struct cache_entry *buckets[CACHE_BUCKETS];
};

struct auth_cache *auth_cache_new(unsigned ttl, size_t max_entries)
{
    struct auth_cache *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->mac = keyed_mac_new(NULL);
    if (c->mac == NULL) {
        free(c);
        return NULL;
    }
    pthread_mutex_init(&c->mutex, NULL);
    c->ttl = ttl;
    c->max_entries = max_entries;
    return c;
}

static void clear_locked(struct auth_cache *c)
{
    for (size_t i = 0; i < CACHE_BUCKETS; i++) {
        for (struct cache_entry *e = c->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            OPENSSL_cleanse(e->mac, sizeof(e->mac));
            free(e);
        }
        c->buckets[i] = NULL;
    }
    c->n_entries = 0;
}

void auth_cache_free(struct auth_cache **cp)
{
    struct auth_cache *c = *cp;

    if (c == NULL)
        return;
    clear_locked(c);
    keyed_mac_free(&c->mac);
    pthread_mutex_destroy(&c->mutex);
    free(c);
    *cp = NULL;
}

static size_t bucket_of(const char *user)
{
    uint32_t h = 2166136261u;

    for (; *user != '\0'; user++) {
        h ^= (unsigned char)*user;
        h *= 16777619u;
    }
    return h % CACHE_BUCKETS;
}

bool auth_cache_check(struct auth_cache *c, const char *user, uint64_t generation,
                      const char *secret, size_t len)
{
    unsigned char mac[KEYED_MAC_LEN];
    bool hit = false;
    time_t now = time(NULL);

    keyed_mac_pair(c->mac, user, secret, len, mac);
    pthread_mutex_lock(&c->mutex);
    for (struct cache_entry *e = c->buckets[bucket_of(user)]; e != NULL; e = e->next) {
        if (strcmp(e->user, user) != 0)
            continue;
        hit = e->generation == generation && e->expires > now &&
              CRYPTO_memcmp(e->mac, mac, sizeof(mac)) == 0;
        break;
    }
    pthread_mutex_unlock(&c->mutex);
    OPENSSL_cleanse(mac, sizeof(mac));
    return hit;
}

void auth_cache_store(struct auth_cache *c, const char *user, uint64_t generation,
                      const char *secret, size_t len)
{
    size_t b = bucket_of(user), ulen = strlen(user);
    struct cache_entry *e;

    pthread_mutex_lock(&c->mutex);
    for (e = c->buckets[b]; e != NULL; e = e->next) {
        if (strcmp(e->user, user) == 0)
            break;
    }
    if (e == NULL) {
        /* Full: start over rather than track ages; a miss costs one hash. */
        if (c->n_entries >= c->max_entries)
            clear_locked(c);
        e = malloc(sizeof(*e) + ulen + 1);
        if (e == NULL) {
            pthread_mutex_unlock(&c->mutex);
            return;
        }
        memcpy(e->user, user, ulen + 1);
        e->next = c->buckets[b];
        c->buckets[b] = e;
        c->n_entries++;
    }
    keyed_mac_pair(c->mac, user, secret, len, e->mac);
    e->generation = generation;
    e->expires = time(NULL) + (time_t)c->ttl;
    pthread_mutex_unlock(&c->mutex);
}
