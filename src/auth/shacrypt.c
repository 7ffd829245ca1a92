/*
 * SHA-crypt ($5$ SHA256-CRYPT, $6$ SHA512-CRYPT: Ulrich Drepper's
 * specification, as glibc and libxcrypt implement it) computed with
 * OpenSSL's SHA-2, whose assembly is much faster than libxcrypt's portable
 * C: a SHA512-CRYPT verification (5,000 rounds) takes about half the time.
 * It is used only to verify, and only for settings in the canonical form
 * libxcrypt itself writes; anything else is left to crypt(3). The unit
 * tests compare it with crypt(3) over thousands of random inputs.
 */
#define OPENSSL_SUPPRESS_DEPRECATED    /* the one-shot SHA256/SHA512 contexts: EVP costs more per  \
                                          round than the round */
#include "auth/hash.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#define ROUNDS_DEFAULT 5000
#define ROUNDS_MIN     1000
#define ROUNDS_MAX     999999999
#define SALT_MAX       16

static const char b64[] = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* A tiny interface over the two digests so that the rounds are written once. */
struct sha {
    int bits; /* 256 or 512 */
    union {
        SHA256_CTX c256;
        SHA512_CTX c512;
    } u;
};

static void sha_init(struct sha *s)
{
    if (s->bits == 256)
        SHA256_Init(&s->u.c256);
    else
        SHA512_Init(&s->u.c512);
}

static void sha_update(struct sha *s, const void *data, size_t len)
{
    if (s->bits == 256)
        SHA256_Update(&s->u.c256, data, len);
    else
        SHA512_Update(&s->u.c512, data, len);
}

static void sha_final(struct sha *s, unsigned char *out)
{
    if (s->bits == 256)
        SHA256_Final(out, &s->u.c256);
    else
        SHA512_Final(out, &s->u.c512);
}

static char *put_b64(char *p, unsigned b2, unsigned b1, unsigned b0, int n)
{
    unsigned w = (b2 << 16) | (b1 << 8) | b0;

    while (n-- > 0) {
        *p++ = b64[w & 0x3f];
        w >>= 6;
    }
    return p;
}

/* The byte orders of the specification's final encoding. */
static const unsigned char order512[22][3] = {
    {0, 21, 42},  {22, 43, 1},  {44, 2, 23},  {3, 24, 45},  {25, 46, 4},  {47, 5, 26},
    {6, 27, 48},  {28, 49, 7},  {50, 8, 29},  {9, 30, 51},  {31, 52, 10}, {53, 11, 32},
    {12, 33, 54}, {34, 55, 13}, {56, 14, 35}, {15, 36, 57}, {37, 58, 16}, {59, 17, 38},
    {18, 39, 60}, {40, 61, 19}, {62, 20, 41},
};
static const unsigned char order256[10][3] = {
    {0, 10, 20}, {21, 1, 11}, {12, 22, 2}, {3, 13, 23}, {24, 4, 14},
    {15, 25, 5}, {6, 16, 26}, {27, 7, 17}, {18, 28, 8}, {9, 19, 29},
};

/* Parses "$5$" or "$6$", an optional canonical "rounds=N$" and the salt.
 * Returns false for anything libxcrypt might read differently. */
static bool parse_setting(const char *setting, int *bits, unsigned long *rounds, bool *custom,
                          const char **salt, size_t *salt_len)
{
    const char *p;

    if (strncmp(setting, "$6$", 3) == 0)
        *bits = 512;
    else if (strncmp(setting, "$5$", 3) == 0)
        *bits = 256;
    else
        return false;
    p = setting + 3;
    *rounds = ROUNDS_DEFAULT;
    *custom = false;
    if (strncmp(p, "rounds=", 7) == 0) {
        unsigned long n = 0;
        const char *d = p + 7;
        size_t digits = 0;
        for (; *d >= '0' && *d <= '9' && digits < 10; d++, digits++)
            n = n * 10 + (unsigned long)(*d - '0');
        if (digits == 0 || *d != '$' || p[7] == '0' || n < ROUNDS_MIN || n > ROUNDS_MAX)
            return false;
        *rounds = n;
        *custom = true;
        p = d + 1;
    }
    size_t n = 0;
    while (p[n] != '\0' && p[n] != '$' && n < SALT_MAX) {
        if (strchr(b64, p[n]) == NULL)
            return false;
        n++;
    }
    if (n == 0)
        return false;
    *salt = p;
    *salt_len = n;
    return true;
}

bool shacrypt(const char *key, size_t klen, const char *setting, char *out, size_t size)
{
    int bits;
    unsigned long rounds;
    bool custom;
    const char *salt;
    size_t slen;
    unsigned char alt[64], tmp[64], p_bytes[1024], s_bytes[SALT_MAX];
    struct sha a, b;

    if (!parse_setting(setting, &bits, &rounds, &custom, &salt, &slen) || klen > sizeof(p_bytes))
        return false;
    size_t dlen = (size_t)bits / 8;
    a.bits = b.bits = bits;

    /* B = H(key salt key) */
    sha_init(&b);
    sha_update(&b, key, klen);
    sha_update(&b, salt, slen);
    sha_update(&b, key, klen);
    sha_final(&b, alt);
    /* A = H(key salt B-bytes...) */
    sha_init(&a);
    sha_update(&a, key, klen);
    sha_update(&a, salt, slen);
    size_t cnt;
    for (cnt = klen; cnt > dlen; cnt -= dlen)
        sha_update(&a, alt, dlen);
    sha_update(&a, alt, cnt);
    for (cnt = klen; cnt > 0; cnt >>= 1) {
        if (cnt & 1)
            sha_update(&a, alt, dlen);
        else
            sha_update(&a, key, klen);
    }
    sha_final(&a, alt);
    /* P: H(key repeated klen times), stretched to klen bytes. */
    sha_init(&b);
    for (cnt = 0; cnt < klen; cnt++)
        sha_update(&b, key, klen);
    sha_final(&b, tmp);
    for (cnt = 0; cnt + dlen <= klen; cnt += dlen)
        memcpy(p_bytes + cnt, tmp, dlen);
    memcpy(p_bytes + cnt, tmp, klen - cnt);
    /* S: H(salt repeated 16 + A[0] times), cut to slen bytes. */
    sha_init(&b);
    for (cnt = 0; cnt < 16u + alt[0]; cnt++)
        sha_update(&b, salt, slen);
    sha_final(&b, tmp);
    memcpy(s_bytes, tmp, slen);

    for (unsigned long r = 0; r < rounds; r++) {
        sha_init(&a);
        if (r & 1)
            sha_update(&a, p_bytes, klen);
        else
            sha_update(&a, alt, dlen);
        if (r % 3 != 0)
            sha_update(&a, s_bytes, slen);
        if (r % 7 != 0)
            sha_update(&a, p_bytes, klen);
        if (r & 1)
            sha_update(&a, alt, dlen);
        else
            sha_update(&a, p_bytes, klen);
        sha_final(&a, alt);
    }

    char buf[160], *p = buf;
    p += snprintf(p, 40, "$%c$", bits == 512 ? '6' : '5');
    if (custom)
        p += snprintf(p, 40, "rounds=%lu$", rounds);
    memcpy(p, salt, slen);
    p += slen;
    *p++ = '$';
    if (bits == 512) {
        for (size_t i = 0; i < 21; i++)
            p = put_b64(p, alt[order512[i][0]], alt[order512[i][1]], alt[order512[i][2]], 4);
        p = put_b64(p, 0, 0, alt[63], 2);
    } else {
        for (size_t i = 0; i < 10; i++)
            p = put_b64(p, alt[order256[i][0]], alt[order256[i][1]], alt[order256[i][2]], 4);
        p = put_b64(p, 0, alt[31], alt[30], 3);
    }
    *p = '\0';
    OPENSSL_cleanse(alt, sizeof(alt));
    OPENSSL_cleanse(tmp, sizeof(tmp));
    OPENSSL_cleanse(p_bytes, sizeof(p_bytes));
    OPENSSL_cleanse(s_bytes, sizeof(s_bytes));
    OPENSSL_cleanse(&a, sizeof(a));
    OPENSSL_cleanse(&b, sizeof(b));
    bool fits = (size_t)(p - buf) < size;
    if (fits)
        memcpy(out, buf, (size_t)(p - buf) + 1);
    OPENSSL_cleanse(buf, sizeof(buf));
    return fits;
}
