/*
 * JWKS loading and JWT verification (src/auth/jwt.c) against keys made
 * here with OpenSSL: tokens are signed in the test, then verified, tampered
 * with, or built the way known attacks build them (alg none, HS256 keyed
 * with the RSA public key).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth/jwt.h"

#define NOW      1700000000L
#define USER     "alice@example.com"
#define ISSUER   "https://idp.example.com"
#define AUDIENCE "postern"
/* Claims that pass the policy's issuer and audience checks. */
#define IA "\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE "\","

static struct {
    char dir[64];
    char path[128];
    EVP_PKEY *rsa1, *rsa2, *ec1, *rsa_small, *ec_other;
    char *rsa1_pem; /* the RSA public key as PEM: the HS256 confusion "secret" */
    struct jwks *keys;
} t;

static const struct jwt_policy policy = {
    .issuer = ISSUER,
    .audience = AUDIENCE,
    .user_claim = NULL,
    .leeway = 0,
};

/* ------------------------------------------------------------------ */
/* helpers: base64url, JWK export, signing */

static char *b64url(const unsigned char *in, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(len * 4 / 3 + 4), *p = out;
    assert_non_null(out);
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *p++ = abc[v >> 18];
        *p++ = abc[(v >> 12) & 63];
        *p++ = abc[(v >> 6) & 63];
        *p++ = abc[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *p++ = abc[v >> 18];
        *p++ = abc[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *p++ = abc[v >> 18];
        *p++ = abc[(v >> 12) & 63];
        *p++ = abc[(v >> 6) & 63];
    }
    *p = '\0';
    return out;
}

static char *b64url_str(const char *s)
{
    return b64url((const unsigned char *)s, strlen(s));
}

static char *bn_b64url(const EVP_PKEY *pkey, const char *param, int pad)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    assert_int_equal(EVP_PKEY_get_bn_param(pkey, param, &bn), 1);
    int n = pad > 0 ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    assert_true(n > 0);
    BN_free(bn);
    return b64url(buf, (size_t)n);
}

/* The JWK of a public key, with extra members (",..." or ""). */
static char *jwk(const EVP_PKEY *pkey, const char *extra)
{
    char *out = malloc(4096);
    assert_non_null(out);
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        char *n = bn_b64url(pkey, OSSL_PKEY_PARAM_RSA_N, 0);
        char *e = bn_b64url(pkey, OSSL_PKEY_PARAM_RSA_E, 0);
        snprintf(out, 4096, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"%s}", n, e, extra);
        free(n);
        free(e);
    } else {
        char *x = bn_b64url(pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32);
        char *y = bn_b64url(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
        snprintf(out, 4096, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"%s}", x, y,
                 extra);
        free(x);
        free(y);
    }
    return out;
}

static unsigned char *sign(EVP_PKEY *pkey, const char *data, size_t *len_r)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t len = 0;
    assert_int_equal(EVP_DigestSignInit_ex(ctx, NULL, "SHA256", NULL, NULL, pkey, NULL), 1);
    assert_int_equal(EVP_DigestSign(ctx, NULL, &len, (const unsigned char *)data, strlen(data)), 1);
    unsigned char *sig = malloc(len);
    assert_non_null(sig);
    assert_int_equal(EVP_DigestSign(ctx, sig, &len, (const unsigned char *)data, strlen(data)), 1);
    EVP_MD_CTX_free(ctx);
    if (EVP_PKEY_is_a(pkey, "EC")) {
        /* DER ECDSA-Sig-Value to the JWS form R || S. */
        const unsigned char *p = sig;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)len);
        assert_non_null(es);
        unsigned char *raw = malloc(64);
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32), 32);
        assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32), 32);
        ECDSA_SIG_free(es);
        free(sig);
        sig = raw;
        len = 64;
    }
    *len_r = len;
    return sig;
}

/*
 * A token with this header and claims, signed by key (NULL: the signature
 * part is sig_b64 as given). Freed by the caller.
 */
static char *token_raw(const char *header, const char *claims, EVP_PKEY *key, const char *sig_b64)
{
    char *h = b64url_str(header), *c = b64url_str(claims);
    size_t n = strlen(h) + strlen(c) + 2;
    char *input = malloc(n);
    snprintf(input, n, "%s.%s", h, c);
    char *sig = NULL;
    if (key != NULL) {
        size_t len;
        unsigned char *bin = sign(key, input, &len);
        sig = b64url(bin, len);
        free(bin);
    } else {
        sig = strdup(sig_b64);
    }
    char *tok = malloc(strlen(input) + strlen(sig) + 2);
    sprintf(tok, "%s.%s", input, sig);
    free(h);
    free(c);
    free(input);
    free(sig);
    return tok;
}

/* The usual claims, valid at NOW, with extra members. */
static char *claims(const char *extra)
{
    size_t size = strlen(extra) + 512;
    char *out = malloc(size);
    snprintf(out, size,
             "{\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE "\",\"email\":\"" USER "\","
             "\"iat\":%ld,\"exp\":%ld%s}",
             NOW - 60, NOW + 300, extra);
    return out;
}

static char *token(const char *alg, const char *kid, EVP_PKEY *key, const char *claims_json)
{
    char header[256];
    if (kid != NULL)
        snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\",\"kid\":\"%s\"}", alg,
                 kid);
    else
        snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", alg);
    return token_raw(header, claims_json, key, NULL);
}

/* Verifies with a policy; returns the reason, or NULL and checks the user. */
static const char *verify_pol(const char *tok, const struct jwt_policy *pol, const char *user)
{
    char got[JWT_MAX_USER + 1];
    const char *reason = NULL;
    memset(got, 'x', sizeof(got));
    int r = jwt_verify(t.keys, tok, strlen(tok), pol, NOW, got, sizeof(got), &reason);
    if (r == 0) {
        assert_string_equal(got, user);
        return NULL;
    }
    assert_int_equal(r, -1);
    assert_non_null(reason);
    assert_string_equal(got, ""); /* nothing half-written on failure */
    return reason;
}

static const char *verify(const char *tok)
{
    return verify_pol(tok, &policy, USER);
}

static void expect(const char *tok, const char *reason)
{
    const char *got = verify(tok);
    if (reason == NULL && got != NULL)
        print_error("refused: %s\n", got);
    if (reason != NULL && (got == NULL || strcmp(got, reason) != 0))
        print_error("want '%s', got '%s'\n", reason, got ? got : "accepted");
    if (reason == NULL)
        assert_null(got);
    else
        assert_string_equal(got, reason);
}

/* Signs claims made from extra with kid rsa1 and checks the outcome. */
static void expect_claims(const char *claims_json, const char *reason)
{
    char *tok = token("RS256", "rsa1", t.rsa1, claims_json);
    expect(tok, reason);
    free(tok);
}

static void expect_extra(const char *extra, const char *reason)
{
    char *c = claims(extra);
    expect_claims(c, reason);
    free(c);
}

static void write_file(const char *path, const char *data)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(data, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* ------------------------------------------------------------------ */
/* setup */

static int setup(void **state)
{
    (void)state;
    strcpy(t.dir, "/tmp/postern-test-jwt-XXXXXX");
    if (mkdtemp(t.dir) == NULL)
        return -1;
    snprintf(t.path, sizeof(t.path), "%s/jwks.json", t.dir);
    t.rsa1 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    t.rsa2 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    t.rsa_small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    t.ec1 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    t.ec_other = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!t.rsa1 || !t.rsa2 || !t.rsa_small || !t.ec1 || !t.ec_other)
        return -1;

    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, t.rsa1);
    char *pem;
    long n = BIO_get_mem_data(bio, &pem);
    t.rsa1_pem = strndup(pem, (size_t)n);
    BIO_free(bio);

    /* rsa1 and ec1 with a kid, rsa2 without; three keys to skip. */
    char *k1 = jwk(t.rsa1, ",\"kid\":\"rsa1\",\"alg\":\"RS256\",\"use\":\"sig\"");
    char *k2 = jwk(t.rsa2, "");
    char *k3 = jwk(t.ec1, ",\"kid\":\"ec1\",\"alg\":\"ES256\"");
    char *k4 = jwk(t.rsa_small, ",\"kid\":\"small\"");
    char *k5 = jwk(t.ec_other, ",\"kid\":\"enc\",\"use\":\"enc\"");
    char doc[16384];
    snprintf(doc, sizeof(doc),
             "{\"keys\":[%s,\n%s,\n%s,\n%s,\n%s,\n"
             "{\"kty\":\"oct\",\"kid\":\"hmac\",\"k\":\"c2VjcmV0\"},\n"
             "{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"11qYAYKxCrfVS_"
             "7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}"
             "]}",
             k1, k2, k3, k4, k5);
    free(k1);
    free(k2);
    free(k3);
    free(k4);
    free(k5);
    write_file(t.path, doc);
    const char *error = NULL;
    t.keys = jwks_load(t.path, &error);
    if (t.keys == NULL) {
        fprintf(stderr, "jwks_load: %s\n", error);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    jwks_free(&t.keys);
    EVP_PKEY_free(t.rsa1);
    EVP_PKEY_free(t.rsa2);
    EVP_PKEY_free(t.rsa_small);
    EVP_PKEY_free(t.ec1);
    EVP_PKEY_free(t.ec_other);
    free(t.rsa1_pem);
    unlink(t.path);
    rmdir(t.dir);
    return 0;
}

/* ------------------------------------------------------------------ */
/* tests */

static void test_jwks_loaded(void **state)
{
    size_t skipped = 99;
    (void)state;
    /* small RSA, use=enc, oct and OKP are skipped. */
    assert_int_equal(jwks_count(t.keys, &skipped), 3);
    assert_int_equal(skipped, 4);
    assert_int_equal(jwks_count(t.keys, NULL), 3);
}

static void test_valid(void **state)
{
    char *c = claims("");
    (void)state;
    char *tok = token("RS256", "rsa1", t.rsa1, c);
    expect(tok, NULL);
    free(tok);
    tok = token("ES256", "ec1", t.ec1, c);
    expect(tok, NULL);
    free(tok);
    /* No kid: every key of the alg's type is tried (rsa1 first, then rsa2). */
    tok = token("RS256", NULL, t.rsa2, c);
    expect(tok, NULL);
    free(tok);
    tok = token("RS256", NULL, t.rsa1, c);
    expect(tok, NULL);
    free(tok);
    tok = token("ES256", NULL, t.ec1, c);
    expect(tok, NULL);
    free(tok);
    /* A user claim other than email; checks the policy can skip iss/aud. */
    struct jwt_policy open = {.user_claim = "sub"};
    free(c);
    c = strdup("{\"sub\":\"bob\",\"exp\":1700000001}");
    tok = token("ES256", "ec1", t.ec1, c);
    assert_null(verify_pol(tok, &open, "bob"));
    /* ... and that with the default claim it is missing. */
    open.user_claim = NULL;
    assert_string_equal(verify_pol(tok, &open, NULL), "no user claim");
    free(tok);
    free(c);
}

static void test_time(void **state)
{
    char extra[128];
    (void)state;
    /* exp: valid while now < exp (+ leeway). */
    struct {
        long exp;
        unsigned leeway;
        const char *reason;
    } exps[] = {
        {NOW + 1, 0, NULL},   {NOW, 0, "expired"},       {NOW - 10, 0, "expired"},
        {NOW - 10, 30, NULL}, {NOW - 30, 30, "expired"}, {NOW - 29, 30, NULL},
        {0, 0, "expired"},    {-1, 0, "expired"},
    };
    for (size_t i = 0; i < sizeof(exps) / sizeof(exps[0]); i++) {
        char c[256];
        snprintf(c, sizeof(c), "{\"email\":\"" USER "\",\"exp\":%ld}", exps[i].exp);
        char *tok = token("RS256", "rsa1", t.rsa1, c);
        struct jwt_policy pol = {.leeway = exps[i].leeway};
        const char *got = verify_pol(tok, &pol, USER);
        if (exps[i].reason == NULL)
            assert_null(got);
        else
            assert_string_equal(got, exps[i].reason);
        free(tok);
    }
    /* Fractional and huge dates. */
    expect_claims("{" IA "\"email\":\"" USER "\",\"exp\":1700000000.5}", NULL);
    expect_claims("{" IA "\"email\":\"" USER "\",\"exp\":1699999999.5}", "expired");
    expect_claims("{" IA "\"email\":\"" USER "\",\"exp\":9223372036854775807}", NULL);
    expect_claims("{" IA "\"email\":\"" USER "\",\"exp\":1e300}", NULL);
    expect_claims("{" IA "\"email\":\"" USER "\",\"exp\":-9223372036854775808}", "expired");
    /* exp is required and must be a number. */
    expect_claims("{" IA "\"email\":\"" USER "\"}", "malformed token");
    expect_claims("{" IA "\"email\":\"" USER "\",\"exp\":\"1800000000\"}", "malformed token");
    expect_claims("{" IA "\"email\":\"" USER "\",\"exp\":null}", "malformed token");
    expect_claims("{" IA "\"email\":\"" USER "\",\"exp\":[1800000000]}", "malformed token");

    /* nbf: valid once nbf <= now (+ leeway). */
    snprintf(extra, sizeof(extra), ",\"nbf\":%ld", NOW + 100);
    expect_extra(extra, "not yet valid");
    snprintf(extra, sizeof(extra), ",\"nbf\":%ld", NOW + 1);
    expect_extra(extra, "not yet valid");
    snprintf(extra, sizeof(extra), ",\"nbf\":%ld", NOW);
    expect_extra(extra, NULL);
    snprintf(extra, sizeof(extra), ",\"nbf\":%ld", NOW - 100);
    expect_extra(extra, NULL);
    expect_extra(",\"nbf\":9223372036854775807", "not yet valid");
    expect_extra(",\"nbf\":\"0\"", "malformed token");
    char c[256];
    snprintf(c, sizeof(c), "{\"email\":\"" USER "\",\"exp\":%ld,\"nbf\":%ld}", NOW + 100, NOW + 20);
    char *tok = token("RS256", "rsa1", t.rsa1, c);
    struct jwt_policy pol = {.leeway = 30};
    assert_null(verify_pol(tok, &pol, USER));
    pol.leeway = 10;
    assert_string_equal(verify_pol(tok, &pol, USER), "not yet valid");
    free(tok);
}

static void test_issuer_audience(void **state)
{
    (void)state;
    expect_claims("{\"iss\":\"https://evil.example\",\"aud\":\"postern\",\"email\":\"" USER
                  "\",\"exp\":1800000000}",
                  "wrong issuer");
    expect_claims("{\"aud\":\"postern\",\"email\":\"" USER "\",\"exp\":1800000000}",
                  "wrong issuer");
    expect_claims("{\"iss\":\"" ISSUER "/\",\"aud\":\"postern\",\"email\":\"" USER
                  "\",\"exp\":1800000000}",
                  "wrong issuer");
    expect_claims("{\"iss\":[\"" ISSUER "\"],\"aud\":\"postern\",\"email\":\"" USER
                  "\",\"exp\":1800000000}",
                  "wrong issuer");
    /* An issuer with a NUL inside does not match its prefix. */
    expect_claims("{\"iss\":\"" ISSUER "\\u0000x\",\"aud\":\"postern\",\"email\":\"" USER
                  "\",\"exp\":1800000000}",
                  "wrong issuer");

    const char *base = "{\"iss\":\"" ISSUER "\",\"email\":\"" USER "\",\"exp\":1800000000,";
    static const struct {
        const char *aud;
        const char *reason;
    } auds[] = {
        {"\"aud\":\"postern\"}", NULL},
        {"\"aud\":\"other\"}", "wrong audience"},
        {"\"aud\":\"Postern\"}", "wrong audience"},
        {"\"aud\":[\"other\",\"postern\"]}", NULL},
        {"\"aud\":[\"postern\"]}", NULL},
        {"\"aud\":[\"other\",\"more\"]}", "wrong audience"},
        {"\"aud\":[]}", "wrong audience"},
        {"\"aud\":[[\"postern\"]]}", "wrong audience"},
        {"\"aud\":{\"postern\":1}}", "wrong audience"},
        {"\"aud\":1}", "wrong audience"},
        {"\"aud\":null}", "wrong audience"},
        {"\"x\":1}", "wrong audience"},
    };
    for (size_t i = 0; i < sizeof(auds) / sizeof(auds[0]); i++) {
        char c[512];
        snprintf(c, sizeof(c), "%s%s", base, auds[i].aud);
        expect_claims(c, auds[i].reason);
    }
}

static void test_user_claim(void **state)
{
    char long_user[300], c[512];
    (void)state;
    expect_claims("{\"exp\":1800000000,\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE "\"}",
                  "no user claim");
    expect_extra(",\"email\":1", "malformed token"); /* duplicate name */
    expect_claims("{\"exp\":1800000000,\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE
                  "\",\"email\":7}",
                  "no user claim");
    expect_claims("{\"exp\":1800000000,\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE
                  "\",\"email\":null}",
                  "no user claim");
    static const char *bad[] = {
        "",      "..",    ".",     "a/b",       "../etc",    "a\\u0000b",
        "a\\nb", "a\\rb", "a\\tb", "a\\u007fb", "a\\u0085b", "\\u001b[31m",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(c, sizeof(c),
                 "{\"exp\":1800000000,\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE
                 "\",\"email\":\"%s\"}",
                 bad[i]);
        expect_claims(c, "bad user claim");
    }
    /* 255 bytes are allowed, 256 are not. */
    struct jwt_policy pol = policy;
    memset(long_user, 'u', 255);
    long_user[255] = '\0';
    snprintf(c, sizeof(c),
             "{\"exp\":1800000000,\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE
             "\",\"email\":\"%s\"}",
             long_user);
    char *tok = token("RS256", "rsa1", t.rsa1, c);
    assert_null(verify_pol(tok, &pol, long_user));
    /* A buffer too small for the user is a refusal, not a truncation. */
    char small[16];
    const char *reason = NULL;
    assert_int_equal(jwt_verify(t.keys, tok, strlen(tok), &pol, NOW, small, sizeof(small), &reason),
                     -1);
    assert_string_equal(reason, "bad user claim");
    free(tok);
    long_user[255] = 'u';
    long_user[256] = '\0';
    snprintf(c, sizeof(c),
             "{\"exp\":1800000000,\"iss\":\"" ISSUER "\",\"aud\":\"" AUDIENCE
             "\",\"email\":\"%s\"}",
             long_user);
    expect_claims(c, "bad user claim");
    /* Non-ASCII users are fine. */
    pol.issuer = pol.audience = NULL;
    tok = token("RS256", "rsa1", t.rsa1,
                "{\"exp\":1800000000,\"email\":\"j\\u00fcrgen@example.de\"}");
    assert_null(verify_pol(tok, &pol, "j\xc3\xbcrgen@example.de"));
    free(tok);
}

static void test_bad_signature(void **state)
{
    char *c = claims("");
    (void)state;
    const struct {
        const char *alg, *kid;
        EVP_PKEY *key;
    } keys[] = {{"RS256", "rsa1", t.rsa1}, {"ES256", "ec1", t.ec1}, {"RS256", NULL, t.rsa2}};
    for (size_t k = 0; k < 3; k++) {
        char *tok = token(keys[k].alg, keys[k].kid, keys[k].key, c);
        char *sig = strrchr(tok, '.') + 1;
        /* A character in the middle of the signature. */
        char save = sig[10];
        sig[10] = save == 'A' ? 'B' : 'A';
        expect(tok, "bad signature");
        sig[10] = save;
        /* A character of the payload: the signature no longer covers it. */
        char *payload = strchr(tok, '.') + 1;
        save = payload[4];
        payload[4] = save == 'A' ? 'B' : 'A';
        expect(tok, "bad signature");
        payload[4] = save;
        /* A truncated signature (still canonical base64url). */
        size_t sig_len = strlen(sig);
        sig[sig_len - sig_len % 4 - 4] = '\0';
        expect(tok, "bad signature");
        free(tok);
    }
    /* Signed by a key that is not in the set, with or without a kid. */
    char *tok = token("ES256", "ec1", t.ec_other, c);
    expect(tok, "bad signature");
    free(tok);
    tok = token("ES256", NULL, t.ec_other, c);
    expect(tok, "bad signature");
    free(tok);
    tok = token("RS256", "rsa1", t.rsa2, c);
    expect(tok, "bad signature");
    free(tok);
    /* ES256 with the DER signature instead of R || S. */
    char *hc = token("ES256", "ec1", t.ec1, c);
    *strrchr(hc, '.') = '\0';
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char der[128];
    size_t der_len = sizeof(der);
    assert_int_equal(EVP_DigestSignInit_ex(ctx, NULL, "SHA256", NULL, NULL, t.ec1, NULL), 1);
    assert_int_equal(EVP_DigestSign(ctx, der, &der_len, (const unsigned char *)hc, strlen(hc)), 1);
    EVP_MD_CTX_free(ctx);
    char *sig = b64url(der, der_len);
    char *full = malloc(strlen(hc) + strlen(sig) + 2);
    sprintf(full, "%s.%s", hc, sig);
    expect(full, "bad signature");
    free(full);
    free(sig);
    free(hc);
    /* An all-zero ES256 signature (R = S = 0). */
    unsigned char zero[64] = {0};
    sig = b64url(zero, sizeof(zero));
    char *h = b64url_str("{\"alg\":\"ES256\",\"kid\":\"ec1\"}");
    char *p = b64url_str(c);
    full = malloc(strlen(h) + strlen(p) + strlen(sig) + 3);
    sprintf(full, "%s.%s.%s", h, p, sig);
    expect(full, "bad signature");
    free(full);
    free(sig);
    free(h);
    free(p);
    free(c);
}

static void test_alg_attacks(void **state)
{
    char *c = claims("");
    (void)state;
    /* alg none, with an empty signature and with some signature. */
    char *tok = token_raw("{\"alg\":\"none\",\"typ\":\"JWT\"}", c, NULL, "");
    expect(tok, "malformed token");
    free(tok);
    tok = token_raw("{\"alg\":\"none\"}", c, NULL, "AAAA");
    expect(tok, "unsupported alg");
    free(tok);
    tok = token_raw("{\"alg\":\"None\",\"kid\":\"rsa1\"}", c, NULL, "AAAA");
    expect(tok, "unsupported alg");
    free(tok);

    /* HS256 keyed with the RSA public key, as a naive verifier would
     * check it: refused for its alg, whatever the MAC. */
    char *h = b64url_str("{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"rsa1\"}");
    char *p = b64url_str(c);
    char input[4096];
    snprintf(input, sizeof(input), "%s.%s", h, p);
    unsigned char mac[32];
    size_t mac_len = 0;
    assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, t.rsa1_pem, strlen(t.rsa1_pem),
                              (const unsigned char *)input, strlen(input), mac, sizeof(mac),
                              &mac_len));
    char *sig = b64url(mac, mac_len);
    tok = malloc(strlen(input) + strlen(sig) + 2);
    sprintf(tok, "%s.%s", input, sig);
    expect(tok, "unsupported alg");
    free(tok);
    free(sig);
    free(h);
    free(p);

    /* Other algs, signed properly or not, and odd alg values. */
    static const char *algs[] = {"HS256", "RS384", "RS512", "PS256",  "ES384",
                                 "ES512", "EdDSA", "rs256", "RS256 ", "ES256\\u0000"};
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        tok = token(algs[i], "rsa1", t.rsa1, c);
        expect(tok, "unsupported alg");
        free(tok);
    }
    tok = token_raw("{\"alg\":256,\"kid\":\"rsa1\"}", c, t.rsa1, NULL);
    expect(tok, "malformed token");
    free(tok);
    tok = token_raw("{\"kid\":\"rsa1\"}", c, t.rsa1, NULL);
    expect(tok, "malformed token");
    free(tok);

    /* Key type must match the alg: the EC key's kid with RS256, the RSA
     * key's with ES256. */
    tok = token("RS256", "ec1", t.rsa1, c);
    expect(tok, "unknown key");
    free(tok);
    tok = token("ES256", "rsa1", t.ec1, c);
    expect(tok, "unknown key");
    free(tok);

    /* A key embedded in the header is never used. */
    char *jwk_other = jwk(t.ec_other, "");
    char header[1024];
    snprintf(header, sizeof(header), "{\"alg\":\"ES256\",\"jwk\":%s}", jwk_other);
    tok = token_raw(header, c, t.ec_other, NULL);
    expect(tok, "bad signature");
    free(tok);
    free(jwk_other);

    /* crit names an extension we do not know. */
    tok = token_raw("{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"crit\":[\"exp\"],\"exp\":1}", c, t.rsa1,
                    NULL);
    expect(tok, "malformed token");
    free(tok);
    free(c);
}

static void test_kid(void **state)
{
    char *c = claims("");
    (void)state;
    char *tok = token("RS256", "nope", t.rsa1, c);
    expect(tok, "unknown key");
    free(tok);
    tok = token("ES256", "nope", t.ec1, c);
    expect(tok, "unknown key");
    free(tok);
    /* Skipped keys are unknown too, even when the signature is theirs. */
    tok = token("RS256", "small", t.rsa_small, c);
    expect(tok, "unknown key");
    free(tok);
    tok = token("ES256", "enc", t.ec_other, c);
    expect(tok, "unknown key");
    free(tok);
    /* A kid is compared exactly. */
    tok = token("RS256", "RSA1", t.rsa1, c);
    expect(tok, "unknown key");
    free(tok);
    tok = token("RS256", "rsa1\\u0000", t.rsa1, c);
    expect(tok, "unknown key");
    free(tok);
    tok = token_raw("{\"alg\":\"RS256\",\"kid\":1}", c, t.rsa1, NULL);
    expect(tok, "malformed token");
    free(tok);
    free(c);
}

static void test_malformed(void **state)
{
    char *c = claims("");
    (void)state;
    static const char *garbage[] = {
        "",
        ".",
        "..",
        "...",
        "abc",
        "a.b",
        "a.b.c.d",
        "e30.e30.",        /* {} . {} . empty signature */
        ".e30.AAAA",       /* empty header */
        "e30..AAAA",       /* empty payload */
        "e30.e30.AAAA",    /* header without alg */
        "W10.e30.AAAA",    /* header is [] */
        "bnVsbA.e30.AAAA", /* header is null */
        "eyJhbGciOiJSUzI1NiJ9 .e30.AAAA",
        "eyJhbGciOiJSUzI1NiJ9.e30.AAAA=",
        "eyJhbGciOiJSUzI1NiJ9.e30.AA+/",
        "eyJhbGciOiJSUzI1NiJ9=.e30.AAAA",
        "eyJhbGciOiJSUzI1NiJ9.e30.A",    /* 1 char mod 4 */
        "eyJhbGciOiJSUzI1NiJ8.e30.AAAA", /* header {"alg":"RS256"| */
        "e31.e30.AAAA",                  /* non-canonical: unused bits set */
        "Bearer eyJhbGciOiJSUzI1NiJ9.e30.AAAA",
    };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        const char *reason = verify(garbage[i]);
        if (reason == NULL || strcmp(reason, "malformed token") != 0)
            print_error("'%s': %s\n", garbage[i], reason ? reason : "accepted");
        assert_string_equal(reason, "malformed token");
    }

    /* Every prefix of a valid token is refused, and nothing crashes. */
    char *tok = token("ES256", "ec1", t.ec1, c);
    size_t len = strlen(tok);
    for (size_t n = 0; n < len; n++) {
        char *prefix = strndup(tok, n);
        assert_non_null(verify(prefix));
        free(prefix);
    }
    /* A token given by length need not be NUL-terminated. */
    char *padded = malloc(len + 8);
    memcpy(padded, tok, len);
    memcpy(padded + len, "garbage", 8);
    char user[JWT_MAX_USER + 1];
    const char *reason = NULL;
    assert_int_equal(jwt_verify(t.keys, padded, len, &policy, NOW, user, sizeof(user), &reason), 0);
    assert_string_equal(user, USER);
    /* ...and a NUL inside the length is refused. */
    padded[len - 3] = '\0';
    assert_int_equal(jwt_verify(t.keys, padded, len, &policy, NOW, user, sizeof(user), &reason),
                     -1);
    assert_string_equal(reason, "malformed token");
    free(padded);
    free(tok);

    /* Payload that is not a JSON object, or is invalid JSON, signed. */
    static const char *payloads[] = {
        "[]", "1", "\"x\"", "{", "{\"exp\":1e999}", "{\"a\":\"\xff\"}"};
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        tok = token("RS256", "rsa1", t.rsa1, payloads[i]);
        expect(tok, "malformed token");
        free(tok);
    }

    /* A signed payload whose base64url has unused bits set ("e30" is {},
     * "e31" decodes to the same bytes): one token, one spelling. */
    {
        char *h = b64url_str("{\"alg\":\"RS256\",\"kid\":\"rsa1\"}");
        char input[256];
        snprintf(input, sizeof(input), "%s.e31", h);
        size_t sig_len;
        unsigned char *bin = sign(t.rsa1, input, &sig_len);
        char *sig = b64url(bin, sig_len);
        char *nc = malloc(strlen(input) + strlen(sig) + 2);
        sprintf(nc, "%s.%s", input, sig);
        expect(nc, "malformed token");
        free(nc);
        free(sig);
        free(bin);
        free(h);
    }

    /* The size limit applies before anything else. */
    char *big = malloc(JWT_MAX_LEN + 2);
    memset(big, 'A', JWT_MAX_LEN + 1);
    big[JWT_MAX_LEN + 1] = '\0';
    big[10] = '.';
    big[20] = '.';
    expect(big, "malformed token");
    free(big);
    /* A large but allowed token still verifies. */
    char *pad = malloc(5001);
    memset(pad, 'p', 5000);
    pad[5000] = '\0';
    char *extra = malloc(5100);
    sprintf(extra, ",\"pad\":\"%s\"", pad);
    char *cl = claims(extra);
    tok = token("RS256", "rsa1", t.rsa1, cl);
    assert_true(strlen(tok) <= JWT_MAX_LEN);
    expect(tok, NULL);
    free(tok);
    free(cl);
    free(extra);
    free(pad);
    free(c);
}

static const char *load_doc(const char *doc, struct jwks **keys_r)
{
    const char *error = NULL;
    write_file(t.path, doc);
    *keys_r = jwks_load(t.path, &error);
    return *keys_r == NULL ? error : NULL;
}

static void test_jwks_errors(void **state)
{
    struct jwks *keys = NULL;
    const char *error = NULL;
    char doc[8192];
    (void)state;

    assert_null(jwks_load("/nonexistent/jwks.json", &error));
    assert_non_null(strstr(error, "/nonexistent/jwks.json: cannot open"));
    assert_null(jwks_load(t.dir, &error));
    assert_non_null(strstr(error, "not a regular file"));

    static const struct {
        const char *doc;
        const char *error;
    } bad[] = {
        {"", "invalid JSON at byte 0"},
        {"{\"keys\":[}", "invalid JSON at byte 9"},
        {"[]", "no \"keys\" array"},
        {"{\"keys\":{}}", "no \"keys\" array"},
        {"{\"keys\":[]}", "no usable key (0 skipped"},
        {"{\"keys\":[{\"kty\":\"oct\",\"k\":\"AA\"}]}", "no usable key (1 skipped"},
        {"{\"keys\":[1]}", "key 1: not an object"},
        {"{\"keys\":[{\"n\":\"AQAB\"}]}", "key 1: \"kty\" missing"},
        {"{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\"}]}", "key 1: \"n\" and \"e\""},
        {"{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB=\",\"e\":\"AQAB\"}]}", "key 1: \"n\" and \"e\""},
        {"{\"keys\":[{\"kty\":\"EC\",\"x\":\"AA\",\"y\":\"AA\"}]}", "key 1: \"crv\" missing"},
        {"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}]}",
         "key 1: \"x\" and \"y\" must be 32 bytes"},
        {"{\"keys\":[{\"kty\":\"RSA\",\"kid\":7}]}", "key 1: \"kid\" is not a string"},
        {"{\"keys\":[{\"kty\":\"RSA\",\"use\":1}]}", "key 1: \"use\" is not a string"},
        {"{\"keys\":[{\"kty\":\"RSA\",\"key_ops\":\"verify\"}]}", "key 1: \"key_ops\""},
        {"{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-384\"},{\"kty\":\"RSA\",\"alg\":\"RS512\"},"
         "{\"kty\":\"EC\",\"crv\":\"P-256\",\"alg\":\"ES384\"},{\"kty\":\"RSA\",\"key_ops\":["
         "\"sign\"]}]}",
         "no usable key (4 skipped"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        error = load_doc(bad[i].doc, &keys);
        if (error == NULL || strstr(error, bad[i].error) == NULL)
            print_error("'%s': %s\n", bad[i].doc, error ? error : "accepted");
        assert_null(keys);
        assert_non_null(strstr(error, bad[i].error));
        /* Errors name the file. */
        assert_memory_equal(error, t.path, strlen(t.path));
    }

    /* An EC point that is not on the curve. */
    char *good = jwk(t.ec1, "");
    char *y = strstr(good, "\"y\":\"") + 5;
    y[5] = y[5] == 'A' ? 'B' : 'A';
    snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", good);
    error = load_doc(doc, &keys);
    assert_non_null(error);
    assert_non_null(strstr(error, "key 1: not a valid P-256 public key"));
    free(good);

    /* An RSA key with an even modulus. */
    good = jwk(t.rsa1, "");
    char *n_end = strstr(good, "\",\"e\"");
    n_end[-1] = 'A'; /* clears the low bits */
    snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", good);
    error = load_doc(doc, &keys);
    assert_non_null(error);
    assert_non_null(strstr(error, "key 1: not a valid RSA public key"));
    free(good);

    /* Too many keys. */
    char *p = doc + sprintf(doc, "{\"keys\":[");
    for (int i = 0; i <= JWKS_MAX_KEYS; i++)
        p += sprintf(p, "%s{\"kty\":\"oct\"}", i ? "," : "");
    strcpy(p, "]}");
    error = load_doc(doc, &keys);
    assert_non_null(strstr(error, "more than the 64 allowed"));

    /* From memory, without a file name; one good key among skipped ones. */
    good = jwk(t.ec1, ",\"kid\":\"a\",\"key_ops\":[\"verify\"],\"use\":\"sig\"");
    snprintf(doc, sizeof(doc), "{\"keys\":[{\"kty\":\"oct\"},%s],\"extra\":true}", good);
    keys = jwks_parse(doc, strlen(doc), &error);
    assert_non_null(keys);
    size_t skipped = 0;
    assert_int_equal(jwks_count(keys, &skipped), 1);
    assert_int_equal(skipped, 1);
    jwks_free(&keys);
    assert_null(keys);
    jwks_free(&keys);
    free(good);
    assert_null(jwks_parse("{\"keys\":[]}", 11, &error));
    assert_string_equal(error, "no usable key (0 skipped; supported: RSA of 2048 to 8192 bits for "
                               "RS256, EC P-256 for ES256)");
}

/* Verifications on one key set from several threads at once. */
struct thread_arg {
    char *tokens[2];
    int failures;
};

static void *verify_thread(void *p)
{
    struct thread_arg *a = p;
    for (int i = 0; i < 200; i++) {
        const char *tok = a->tokens[i % 2];
        char user[JWT_MAX_USER + 1];
        const char *reason;
        if (jwt_verify(t.keys, tok, strlen(tok), &policy, NOW, user, sizeof(user), &reason) != 0 ||
            strcmp(user, USER) != 0)
            a->failures++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    char *c = claims("");
    (void)state;
    struct thread_arg arg[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        arg[i].tokens[0] = token("RS256", NULL, t.rsa2, c);
        arg[i].tokens[1] = token("ES256", "ec1", t.ec1, c);
        arg[i].failures = 0;
        assert_int_equal(pthread_create(&th[i], NULL, verify_thread, &arg[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(arg[i].failures, 0);
        free(arg[i].tokens[0]);
        free(arg[i].tokens[1]);
    }
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jwks_loaded), cmocka_unit_test(test_valid),
        cmocka_unit_test(test_time),        cmocka_unit_test(test_issuer_audience),
        cmocka_unit_test(test_user_claim),  cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_alg_attacks), cmocka_unit_test(test_kid),
        cmocka_unit_test(test_malformed),   cmocka_unit_test(test_jwks_errors),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
