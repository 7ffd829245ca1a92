/*
 * jwt_verify() on arbitrary input, against a small JWKS written and loaded
 * once (a fixed P-256 key and an RSA key made at start-up).
 *
 * The first byte picks the mode. Even: the rest is the token as a client
 * would send it; nearly all of these fail before or at the signature.
 * Odd: the rest is a header and a claims document separated by '\n',
 * which the target encodes and signs (bit 1: RSA, else EC), so that the
 * claim checks behind the signature are fuzzed too.
 *
 * Invariants: a failure gives one of the stable reasons and no user; a
 * success gives a user that obeys the documented rules.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth/jwt.h"
#include "fuzz.h"

/* Fixed, so that the seed corpus can hold tokens with valid signatures. */
static const char ec_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                             "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVqNXa3+C3exDoeBg\n"
                             "YgGVRuMxWcDeabANHCIHUs55R9yhRANCAASQ2t2bhK2iu+KHJJU6kKwjX8cmOP9c\n"
                             "EpHbc0cx8o7eJMT7elnhrd5KVx3Nm1yNdUhWP/pUvV1OAzBXGZ0WSvPt\n"
                             "-----END PRIVATE KEY-----\n";

static EVP_PKEY *ec_key, *rsa_key;
static struct jwks *keys;

static const struct jwt_policy policy = {
    .issuer = "https://idp.example.com",
    .audience = "postern",
    .user_claim = NULL,
    .leeway = 60,
};

static const char *const reasons[] = {
    "malformed token", "unsupported alg", "unknown key",    "bad signature", "expired",
    "not yet valid",   "wrong issuer",    "wrong audience", "no user claim", "bad user claim",
};

static char *b64url(const unsigned char *in, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(len * 4 / 3 + 4), *p = out;
    check(out != NULL, "out of memory");
    uint32_t acc = 0;
    unsigned bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            *p++ = abc[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        *p++ = abc[(acc << (6 - bits)) & 63];
    *p = '\0';
    return out;
}

static char *bn_param(EVP_PKEY *pkey, const char *name, int pad)
{
    BIGNUM *bn = NULL;
    unsigned char buf[512];
    check(EVP_PKEY_get_bn_param(pkey, name, &bn) == 1, "no key parameter");
    int n = pad > 0 ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    BN_free(bn);
    return b64url(buf, (size_t)n);
}

static void init(void)
{
    BIO *bio = BIO_new_mem_buf(ec_pem, -1);
    ec_key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    rsa_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    check(ec_key != NULL && rsa_key != NULL, "no keys");

    char *x = bn_param(ec_key, OSSL_PKEY_PARAM_EC_PUB_X, 32);
    char *y = bn_param(ec_key, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
    char *n = bn_param(rsa_key, OSSL_PKEY_PARAM_RSA_N, 0);
    char *e = bn_param(rsa_key, OSSL_PKEY_PARAM_RSA_E, 0);
    char path[64];
    snprintf(path, sizeof(path), "/tmp/postern-fuzz-jwt-%ld.json", (long)getpid());
    FILE *f = fopen(path, "w");
    check(f != NULL, "cannot write the JWKS");
    fprintf(
        f,
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"ec\",\"x\":\"%s\",\"y\":\"%s\"},"
        "{\"kty\":\"RSA\",\"kid\":\"rsa\",\"alg\":\"RS256\",\"n\":\"%s\",\"e\":\"%s\"},"
        "{\"kty\":\"oct\",\"kid\":\"hmac\",\"k\":\"c2VjcmV0\"}]}",
        x, y, n, e);
    check(fclose(f) == 0, "cannot write the JWKS");
    free(x);
    free(y);
    free(n);
    free(e);
    const char *error = NULL;
    keys = jwks_load(path, &error);
    unlink(path);
    if (keys == NULL)
        fprintf(stderr, "fuzz_jwt: %s\n", error);
    check(keys != NULL, "cannot load the JWKS");
}

/* header "\n" claims -> a token signed by key. */
static char *make_token(const uint8_t *data, size_t size, EVP_PKEY *key)
{
    const uint8_t *nl = memchr(data, '\n', size);
    size_t hlen = nl != NULL ? (size_t)(nl - data) : size;
    char *h = b64url(data, hlen);
    char *c = nl != NULL ? b64url(nl + 1, size - hlen - 1) : b64url(NULL, 0);
    size_t ilen = strlen(h) + strlen(c) + 1;
    char *input = malloc(ilen + 1);
    check(input != NULL, "out of memory");
    snprintf(input, ilen + 1, "%s.%s", h, c);
    free(h);
    free(c);

    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char sig[512], raw[64];
    size_t sig_len = sizeof(sig);
    check(EVP_DigestSignInit_ex(ctx, NULL, "SHA256", NULL, NULL, key, NULL) == 1 &&
              EVP_DigestSign(ctx, sig, &sig_len, (unsigned char *)input, ilen) == 1,
          "cannot sign");
    EVP_MD_CTX_free(ctx);
    const unsigned char *s = sig;
    if (key == ec_key) {
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)sig_len);
        check(es != NULL, "bad ECDSA signature");
        BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
        BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
        ECDSA_SIG_free(es);
        s = raw;
        sig_len = 64;
    }
    char *sig64 = b64url(s, sig_len);
    char *tok = malloc(ilen + strlen(sig64) + 2);
    check(tok != NULL, "out of memory");
    sprintf(tok, "%s.%s", input, sig64);
    free(input);
    free(sig64);
    return tok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (keys == NULL)
        init();
    if (size == 0)
        return 0;

    char *tok = NULL;
    const char *t;
    size_t len;
    if (data[0] & 1) {
        tok = make_token(data + 1, size - 1, (data[0] & 2) ? rsa_key : ec_key);
        t = tok;
        len = strlen(tok);
    } else {
        t = (const char *)data + 1;
        len = size - 1;
    }

    char user[JWT_MAX_USER + 1];
    const char *reason = NULL;
    memset(user, 'x', sizeof(user));
    int r = jwt_verify(keys, t, len, &policy, 1700000000, user, sizeof(user), &reason);
    if (r == 0) {
        size_t n = strlen(user);
        check(n >= 1 && n <= JWT_MAX_USER, "user length");
        check(strchr(user, '/') == NULL, "'/' in the user");
        check(strcmp(user, ".") != 0 && strcmp(user, "..") != 0, "dot user");
        for (size_t i = 0; i < n; i++)
            check((unsigned char)user[i] >= 0x20 && user[i] != 0x7f,
                  "control character in the user");
    } else {
        check(r == -1 && reason != NULL, "no reason");
        bool known = false;
        for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
            known = known || strcmp(reason, reasons[i]) == 0;
        check(known, "unknown reason");
        check(user[0] == '\0', "user left after a failure");
    }
    free(tok);
    return 0;
}
