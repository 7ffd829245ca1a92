/*
 * JWT (RS256, ES256) verification with OpenSSL 3's EVP interfaces; see
 * jwt.h for what is checked and why.
 */
#include "auth/jwt.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "auth/json.h"
#include "auth/jwt-private.h"

static bool verify_with(EVP_PKEY *pkey, const char *data, size_t len, const unsigned char *sig,
                        size_t sig_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx != NULL &&
              EVP_DigestVerifyInit_ex(ctx, NULL, "SHA256", NULL, NULL, pkey, NULL) == 1 &&
              EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)data, len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* JWS (RFC 7518 3.4) carries R || S; OpenSSL wants the DER ECDSA-Sig-Value.
 * Returns the DER length, 0 on failure; *der_r is freed with OPENSSL_free. */
static size_t es256_to_der(const unsigned char *raw, unsigned char **der_r)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(raw, P256_COORD, NULL);
    BIGNUM *s = BN_bin2bn(raw + P256_COORD, P256_COORD, NULL);
    int len = 0;

    if (sig != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(sig, r, s) == 1) {
        r = s = NULL; /* owned by sig now */
        *der_r = NULL;
        len = i2d_ECDSA_SIG(sig, der_r);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return len > 0 ? (size_t)len : 0;
}

static bool str_equals(const struct json_value *v, const char *want)
{
    return v != NULL && v->type == JSON_STRING && v->u.str.len == strlen(want) &&
           memcmp(v->u.str.s, want, v->u.str.len) == 0;
}

static bool is_number(const struct json_value *v)
{
    return v != NULL && (v->type == JSON_INT || v->type == JSON_DOUBLE);
}

/* now < exp + leeway, without overflow. */
static bool before_exp(const struct json_value *exp, time_t now, unsigned leeway)
{
    if (exp->type == JSON_INT) {
        if (exp->u.i > INT64_MAX - (int64_t)leeway)
            return true;
        return (int64_t)now < exp->u.i + (int64_t)leeway;
    }
    return (double)now < exp->u.d + (double)leeway;
}

/* nbf <= now + leeway, without overflow. */
static bool after_nbf(const struct json_value *nbf, time_t now, unsigned leeway)
{
    if (nbf->type == JSON_INT) {
        if ((int64_t)now > INT64_MAX - (int64_t)leeway)
            return true;
        return nbf->u.i <= (int64_t)now + (int64_t)leeway;
    }
    return nbf->u.d <= (double)now + (double)leeway;
}

static bool audience_ok(const struct json_value *aud, const char *want)
{
    if (aud == NULL)
        return false;
    if (aud->type == JSON_STRING)
        return str_equals(aud, want);
    if (aud->type != JSON_ARRAY)
        return false;
    for (size_t i = 0; i < aud->u.arr.count; i++)
        if (str_equals(&aud->u.arr.items[i], want))
            return true;
    return false;
}

/* The user becomes part of a mailbox path and of log lines. */
static bool user_ok(const struct json_value *v)
{
    const unsigned char *s = (const unsigned char *)v->u.str.s;
    size_t len = v->u.str.len;

    if (len == 0 || len > JWT_MAX_USER)
        return false;
    if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] == 0x7f || s[i] == '/')
            return false;
        /* C1 controls U+0080..U+009F are C2 80..C2 9F in UTF-8. */
        if (s[i] == 0xc2 && i + 1 < len && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f)
            return false;
    }
    return true;
}

/* Finds a key for the token's alg and kid whose signature matches.
 * Returns NULL on success, or the reason. */
static const char *check_signature(const struct jwks *keys, enum key_type type,
                                   const struct json_value *kid, const char *input,
                                   size_t input_len, const unsigned char *sig, size_t sig_len)
{
    unsigned char *der = NULL;
    bool candidate = false, ok = false;

    if (type == KEY_EC) {
        if (sig_len != 2 * P256_COORD)
            return "bad signature";
        sig_len = es256_to_der(sig, &der);
        if (sig_len == 0)
            return "bad signature";
        sig = der;
    }
    for (size_t i = 0; i < keys->count && !ok; i++) {
        const struct jwk *k = &keys->keys[i];
        if (k->type != type)
            continue;
        if (kid != NULL && (k->kid == NULL || k->kid_len != kid->u.str.len ||
                            memcmp(k->kid, kid->u.str.s, k->kid_len) != 0))
            continue;
        candidate = true;
        ok = verify_with(k->pkey, input, input_len, sig, sig_len);
    }
    OPENSSL_free(der);
    if (!candidate)
        return "unknown key";
    return ok ? NULL : "bad signature";
}

static const char *check_claims(const struct json_value *claims, const struct jwt_policy *pol,
                                time_t now, char *user_r, size_t user_size)
{
    const struct json_value *exp = json_get(claims, "exp");
    if (!is_number(exp))
        return "malformed token";
    if (!before_exp(exp, now, pol->leeway))
        return "expired";
    const struct json_value *nbf = json_get(claims, "nbf");
    if (nbf != NULL) {
        if (!is_number(nbf))
            return "malformed token";
        if (!after_nbf(nbf, now, pol->leeway))
            return "not yet valid";
    }
    if (pol->issuer != NULL && !str_equals(json_get(claims, "iss"), pol->issuer))
        return "wrong issuer";
    if (pol->audience != NULL && !audience_ok(json_get(claims, "aud"), pol->audience))
        return "wrong audience";

    const struct json_value *user =
        json_get(claims, pol->user_claim != NULL ? pol->user_claim : "email");
    if (user == NULL || user->type != JSON_STRING)
        return "no user claim";
    if (!user_ok(user) || user->u.str.len >= user_size)
        return "bad user claim";
    memcpy(user_r, user->u.str.s, user->u.str.len + 1);
    return NULL;
}

/* Splits a compact JWS into its three parts: offsets of the two dots. */
static bool split_token(const char *token, size_t len, size_t *dot1_r, size_t *dot2_r)
{
    size_t dots = 0;
    for (size_t i = 0; i < len; i++) {
        if (token[i] == '.') {
            if (dots == 2)
                return false;
            if (dots++ == 0)
                *dot1_r = i;
            else
                *dot2_r = i;
        } else if (jwt_b64url_value((unsigned char)token[i]) < 0) {
            return false;
        }
    }
    /* Header, payload and signature are never empty. */
    return dots == 2 && *dot1_r > 0 && *dot2_r > *dot1_r + 1 && *dot2_r + 1 < len;
}

static struct json_value *decode_json(const char *s, size_t len, unsigned char *buf)
{
    size_t n = 0;
    const char *err;
    if (!jwt_b64url_decode(s, len, buf, &n))
        return NULL;
    struct json_value *v = json_parse((const char *)buf, n, &err, NULL);
    if (v != NULL && v->type != JSON_OBJECT)
        json_free(&v);
    return v;
}

int jwt_verify(const struct jwks *keys, const char *token, size_t len, const struct jwt_policy *pol,
               time_t now, char *user_r, size_t user_size, const char **reason_r)
{
    const char *reason = "malformed token";
    struct json_value *header = NULL, *claims = NULL;
    unsigned char *buf = NULL;
    size_t dot1 = 0, dot2 = 0, sig_len = 0;

    if (user_size > 0)
        user_r[0] = '\0';
    if (len == 0 || len > JWT_MAX_LEN || !split_token(token, len, &dot1, &dot2))
        goto out;
    /* Each part decodes to at most 3/4 of its length: one buffer serves. */
    buf = malloc(len);
    if (buf == NULL)
        goto out;

    header = decode_json(token, dot1, buf);
    if (header == NULL)
        goto out;
    const struct json_value *alg = json_get(header, "alg");
    const struct json_value *kid = json_get(header, "kid");
    if (alg == NULL || alg->type != JSON_STRING || (kid != NULL && kid->type != JSON_STRING) ||
        json_get(header, "crit") != NULL)
        goto out;
    enum key_type type;
    if (str_equals(alg, "RS256")) {
        type = KEY_RSA;
    } else if (str_equals(alg, "ES256")) {
        type = KEY_EC;
    } else {
        reason = "unsupported alg";
        goto out;
    }

    if (!jwt_b64url_decode(token + dot2 + 1, len - dot2 - 1, buf, &sig_len))
        goto out;
    ERR_set_mark();
    reason = check_signature(keys, type, kid, token, dot2, buf, sig_len);
    ERR_pop_to_mark();
    if (reason != NULL)
        goto out;

    reason = "malformed token";
    claims = decode_json(token + dot1 + 1, dot2 - dot1 - 1, buf);
    if (claims == NULL)
        goto out;
    reason = check_claims(claims, pol, now, user_r, user_size);
out:
    json_free(&header);
    json_free(&claims);
    free(buf);
    if (reason != NULL) {
        if (user_size > 0)
            user_r[0] = '\0';
        *reason_r = reason;
        return -1;
    }
    return 0;
}
