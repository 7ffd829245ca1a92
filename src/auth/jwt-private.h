#ifndef POSTERN_JWT_PRIVATE_H
#define POSTERN_JWT_PRIVATE_H

/* Shared by jwks.c (loading keys) and jwt.c (verifying tokens). */

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

#define P256_COORD 32 /* bytes of a P-256 coordinate, and of R and S */

enum key_type { KEY_RSA, KEY_EC };

struct jwk {
    enum key_type type;
    char *kid; /* NULL when the JWK has none */
    size_t kid_len;
    EVP_PKEY *pkey; /* a public key, checked by OpenSSL when loaded */
};

struct jwks {
    struct jwk *keys;
    size_t count;
    size_t skipped;
};

/* The value of a base64url character (RFC 4648 section 5), or -1. */
int jwt_b64url_value(unsigned char c);

/*
 * Decodes len characters without padding into out, which holds at least
 * len * 3 / 4 + 1 bytes. Padding and unused bits that are not zero are
 * refused, so every byte string has exactly one encoding.
 */
bool jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t *out_len_r);

#endif
