#include "lib/keyed_mac.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

struct keyed_mac {
    /* Keyed and never updated: each MAC works on its own copy, so
     * concurrent callers only read it. */
    EVP_MAC_CTX *keyed;
};

struct keyed_mac *keyed_mac_new(const unsigned char *given_key)
{
    struct keyed_mac *km = calloc(1, sizeof(*km));
    EVP_MAC *hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    unsigned char key[KEYED_MAC_KEY_LEN];
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    bool ok;

    if (given_key != NULL)
        memcpy(key, given_key, sizeof(key));
    ok = km != NULL && hmac != NULL && (given_key != NULL || RAND_bytes(key, sizeof(key)) == 1) &&
         (km->keyed = EVP_MAC_CTX_new(hmac)) != NULL &&
         EVP_MAC_init(km->keyed, key, sizeof(key), params) == 1;

    OPENSSL_cleanse(key, sizeof(key));
    /* The context holds its own reference to the algorithm. */
    EVP_MAC_free(hmac);
    if (!ok)
        keyed_mac_free(&km);
    return km;
}

void keyed_mac_free(struct keyed_mac **kmp)
{
    struct keyed_mac *km = *kmp;

    if (km == NULL)
        return;
    EVP_MAC_CTX_free(km->keyed);
    free(km);
    *kmp = NULL;
}

bool keyed_mac_pair(const struct keyed_mac *km, const char *user, const void *secret, size_t len,
                    unsigned char out[KEYED_MAC_LEN])
{
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(km->keyed);
    size_t n = 0;
    bool ok = ctx != NULL &&
              EVP_MAC_update(ctx, (const unsigned char *)user, strlen(user) + 1) == 1 &&
              (len == 0 || EVP_MAC_update(ctx, secret, len) == 1) &&
              EVP_MAC_final(ctx, out, &n, KEYED_MAC_LEN) == 1 && n == KEYED_MAC_LEN;

    EVP_MAC_CTX_free(ctx);
    if (!ok) {
        /* A MAC that could not be computed must match nothing, not even
         * another failure (the guard would take a run of different wrong
         * passwords for one, the cache a wrong password for a right one):
         * a value that no other call returns. */
        static atomic_uint_least64_t failures;
        uint64_t v = atomic_fetch_add(&failures, 1) + 1;

        memset(out, 0xff, KEYED_MAC_LEN);
        memcpy(out, &v, sizeof(v));
    }
    return ok;
}
