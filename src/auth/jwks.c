/*
 * JWKS files (RFC 7517): the public keys that tokens are verified with,
 * built with EVP_PKEY_fromdata() and checked by OpenSSL as they are loaded.
 * Also the strict base64url decoder the token side shares.
 */
#include "auth/jwt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>

#include "auth/json.h"
#include "auth/jwt-private.h"
#include "lib/base64.h"

#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192 /* a bigger key makes each verification slow */

/* base64url (RFC 4648 section 5), as JWK members and token parts use it. */

int jwt_b64url_value(unsigned char c)
{
    return b64_value(c, true);
}

bool jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t *out_len_r)
{
    size_t n = 0, i = 0;
    uint32_t acc = 0;
    unsigned bits = 0;

    if (len % 4 == 1)
        return false;
    for (i = 0; i < len; i++) {
        int v = jwt_b64url_value((unsigned char)in[i]);
        if (v < 0)
            return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0)
        return false;
    *out_len_r = n;
    return true;
}

/* JWKS */

static _Thread_local char jwks_error_buf[512];

static const char *jwks_error(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static const char *jwks_error(const char *path, const char *fmt, ...)
{
    size_t off = 0;
    if (path != NULL) {
        int n = snprintf(jwks_error_buf, sizeof(jwks_error_buf), "%s: ", path);
        if (n > 0)
            off = (size_t)n < sizeof(jwks_error_buf) ? (size_t)n : sizeof(jwks_error_buf) - 1;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(jwks_error_buf + off, sizeof(jwks_error_buf) - off, fmt, ap);
    va_end(ap);
    return jwks_error_buf;
}

/* A base64url member of a JWK, decoded into a new buffer. */
static unsigned char *jwk_bytes(const struct json_value *k, const char *name, size_t *len_r)
{
    const struct json_value *v = json_get(k, name);
    if (v == NULL || v->type != JSON_STRING || v->u.str.len == 0)
        return NULL;
    unsigned char *buf = malloc(v->u.str.len * 3 / 4 + 1);
    if (buf == NULL)
        return NULL;
    if (!jwt_b64url_decode(v->u.str.s, v->u.str.len, buf, len_r)) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* The key built from params, or NULL; also NULL when OpenSSL's public-key
 * check fails (an EC point off the curve, an even modulus...). */
static EVP_PKEY *pkey_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;

    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    if (pkey != NULL) {
        EVP_PKEY_CTX *check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (check == NULL || EVP_PKEY_public_check(check) != 1) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
        EVP_PKEY_CTX_free(check);
    }
    return pkey;
}

/* Returns 1 with *pkey_r, 0 when the key is usable by nobody (skipped), or
 * -1 with *error_r. */
static int rsa_from_jwk(const struct json_value *k, EVP_PKEY **pkey_r, const char **error_r)
{
    size_t n_len = 0, e_len = 0;
    unsigned char *n_bin = jwk_bytes(k, "n", &n_len);
    unsigned char *e_bin = jwk_bytes(k, "e", &e_len);
    BIGNUM *n = NULL, *e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    int ret = -1;

    if (n_bin == NULL || e_bin == NULL) {
        *error_r = "\"n\" and \"e\" must be base64url without padding";
        goto out;
    }
    n = BN_bin2bn(n_bin, (int)n_len, NULL);
    e = BN_bin2bn(e_bin, (int)e_len, NULL);
    if (n == NULL || e == NULL) {
        *error_r = "out of memory";
        goto out;
    }
    if (BN_num_bits(n) < RSA_MIN_BITS || BN_num_bits(n) > RSA_MAX_BITS) {
        ret = 0;
        goto out;
    }
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1) {
        *error_r = "out of memory";
        goto out;
    }
    *pkey_r = pkey_from_params("RSA", bld);
    if (*pkey_r == NULL) {
        *error_r = "not a valid RSA public key";
        goto out;
    }
    ret = 1;
out:
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    free(n_bin);
    free(e_bin);
    return ret;
}

static int ec_from_jwk(const struct json_value *k, EVP_PKEY **pkey_r, const char **error_r)
{
    const char *crv = json_string(json_get(k, "crv"));
    size_t x_len = 0, y_len = 0;
    unsigned char *x = NULL, *y = NULL;
    unsigned char point[1 + 2 * P256_COORD];
    OSSL_PARAM_BLD *bld = NULL;
    int ret = -1;

    if (crv == NULL) {
        *error_r = "\"crv\" missing";
        return -1;
    }
    if (strcmp(crv, "P-256") != 0)
        return 0;
    x = jwk_bytes(k, "x", &x_len);
    y = jwk_bytes(k, "y", &y_len);
    /* RFC 7518 6.2.1.2: coordinates have the full field size. */
    if (x == NULL || y == NULL || x_len != P256_COORD || y_len != P256_COORD) {
        *error_r = "\"x\" and \"y\" must be 32 bytes in base64url without padding";
        goto out;
    }
    point[0] = POINT_CONVERSION_UNCOMPRESSED;
    memcpy(point + 1, x, P256_COORD);
    memcpy(point + 1 + P256_COORD, y, P256_COORD);
    bld = OSSL_PARAM_BLD_new();
    if (bld == NULL ||
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, SN_X9_62_prime256v1, 0) !=
            1 ||
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)) != 1) {
        *error_r = "out of memory";
        goto out;
    }
    *pkey_r = pkey_from_params("EC", bld);
    if (*pkey_r == NULL) {
        *error_r = "not a valid P-256 public key (point not on the curve?)";
        goto out;
    }
    ret = 1;
out:
    OSSL_PARAM_BLD_free(bld);
    free(x);
    free(y);
    return ret;
}

/* Whether the JWK says it may verify signatures ("use", "key_ops"). */
static int jwk_for_signatures(const struct json_value *k, const char **error_r)
{
    const struct json_value *use = json_get(k, "use");
    if (use != NULL) {
        if (use->type != JSON_STRING) {
            *error_r = "\"use\" is not a string";
            return -1;
        }
        if (strcmp(use->u.str.s, "sig") != 0 || use->u.str.len != 3)
            return 0;
    }
    const struct json_value *ops = json_get(k, "key_ops");
    if (ops != NULL) {
        if (ops->type != JSON_ARRAY) {
            *error_r = "\"key_ops\" is not an array";
            return -1;
        }
        for (size_t i = 0; i < ops->u.arr.count; i++) {
            const char *op = json_string(&ops->u.arr.items[i]);
            if (op != NULL && strcmp(op, "verify") == 0)
                return 1;
        }
        return 0;
    }
    return 1;
}

/* Adds one JWK to keys: 1 added, 0 skipped, -1 error. */
static int jwk_add(struct jwks *keys, const struct json_value *k, const char **error_r)
{
    if (k->type != JSON_OBJECT) {
        *error_r = "not an object";
        return -1;
    }
    const char *kty = json_string(json_get(k, "kty"));
    if (kty == NULL) {
        *error_r = "\"kty\" missing";
        return -1;
    }
    const struct json_value *kid = json_get(k, "kid");
    if (kid != NULL && kid->type != JSON_STRING) {
        *error_r = "\"kid\" is not a string";
        return -1;
    }
    const struct json_value *alg_v = json_get(k, "alg");
    const char *alg = json_string(alg_v);
    if (alg_v != NULL && alg == NULL) {
        *error_r = "\"alg\" is not a string";
        return -1;
    }
    int r = jwk_for_signatures(k, error_r);
    if (r <= 0)
        return r;

    struct jwk key = {.pkey = NULL};
    if (strcmp(kty, "RSA") == 0) {
        if (alg != NULL && strcmp(alg, "RS256") != 0)
            return 0;
        key.type = KEY_RSA;
        r = rsa_from_jwk(k, &key.pkey, error_r);
    } else if (strcmp(kty, "EC") == 0) {
        if (alg != NULL && strcmp(alg, "ES256") != 0)
            return 0;
        key.type = KEY_EC;
        r = ec_from_jwk(k, &key.pkey, error_r);
    } else {
        return 0;
    }
    if (r <= 0)
        return r;
    if (kid != NULL) {
        key.kid_len = kid->u.str.len;
        key.kid = malloc(key.kid_len + 1);
        if (key.kid == NULL) {
            EVP_PKEY_free(key.pkey);
            *error_r = "out of memory";
            return -1;
        }
        memcpy(key.kid, kid->u.str.s, key.kid_len + 1);
    }
    keys->keys[keys->count++] = key;
    return 1;
}

static struct jwks *jwks_parse_at(const char *data, size_t len, const char *path,
                                  const char **error_r)
{
    const char *err = NULL;
    size_t off = 0;
    struct json_value *doc = json_parse(data, len, &err, &off);
    if (doc == NULL) {
        *error_r = jwks_error(path, "invalid JSON at byte %zu: %s", off, err);
        return NULL;
    }
    const struct json_value *list = json_get(doc, "keys");
    if (list == NULL || list->type != JSON_ARRAY) {
        *error_r = jwks_error(path, "not a JWKS: no \"keys\" array");
        json_free(&doc);
        return NULL;
    }
    if (list->u.arr.count > JWKS_MAX_KEYS) {
        *error_r = jwks_error(path, "%zu keys, more than the %d allowed", list->u.arr.count,
                              JWKS_MAX_KEYS);
        json_free(&doc);
        return NULL;
    }
    struct jwks *keys = calloc(1, sizeof(*keys));
    if (keys != NULL)
        keys->keys = calloc(list->u.arr.count + 1, sizeof(*keys->keys));
    if (keys == NULL || keys->keys == NULL) {
        free(keys);
        json_free(&doc);
        *error_r = jwks_error(path, "out of memory");
        return NULL;
    }

    ERR_set_mark();
    for (size_t i = 0; i < list->u.arr.count; i++) {
        const char *kerr = NULL;
        int r = jwk_add(keys, &list->u.arr.items[i], &kerr);
        if (r < 0) {
            *error_r = jwks_error(path, "key %zu: %s", i + 1, kerr);
            jwks_free(&keys);
            break;
        }
        if (r == 0)
            keys->skipped++;
    }
    ERR_pop_to_mark();
    json_free(&doc);
    if (keys != NULL && keys->count == 0) {
        *error_r = jwks_error(path,
                              "no usable key (%zu skipped; supported: RSA of 2048 to 8192 bits "
                              "for RS256, EC P-256 for ES256)",
                              keys->skipped);
        jwks_free(&keys);
    }
    return keys;
}

struct jwks *jwks_parse(const char *data, size_t len, const char **error_r)
{
    return jwks_parse_at(data, len, NULL, error_r);
}

struct jwks *jwks_load(const char *path, const char **error_r)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *error_r = jwks_error(path, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        *error_r = jwks_error(path, "cannot stat: %s", strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > JWKS_MAX_SIZE) {
        *error_r = jwks_error(path,
                              S_ISREG(st.st_mode) ? "larger than %d bytes"
                                                  : "not a regular file (limit %d bytes)",
                              JWKS_MAX_SIZE);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *data = malloc(size + 1);
    if (data == NULL) {
        *error_r = jwks_error(path, "out of memory");
        close(fd);
        return NULL;
    }
    /* Reads one byte more than fstat said, to notice a file that grew. */
    for (;;) {
        ssize_t n = read(fd, data + got, size + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *error_r = jwks_error(path, "cannot read: %s", strerror(errno));
            free(data);
            close(fd);
            return NULL;
        }
        if (n == 0 || (got += (size_t)n) > size)
            break;
    }
    close(fd);
    if (got > size) {
        *error_r = jwks_error(path, "changed while being read");
        free(data);
        return NULL;
    }
    struct jwks *keys = jwks_parse_at(data, got, path, error_r);
    free(data);
    return keys;
}

size_t jwks_count(const struct jwks *keys, size_t *skipped_r)
{
    if (skipped_r != NULL)
        *skipped_r = keys->skipped;
    return keys->count;
}

void jwks_free(struct jwks **keys)
{
    if (keys == NULL || *keys == NULL)
        return;
    for (size_t i = 0; i < (*keys)->count; i++) {
        EVP_PKEY_free((*keys)->keys[i].pkey);
        free((*keys)->keys[i].kid);
    }
    free((*keys)->keys);
    free(*keys);
    *keys = NULL;
}
