#include "auth/scram.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "lib/str.h"

#define SCRAM_PREFIX "{SCRAM-SHA-256}"

int scram_keys_derive(const char *password, size_t len, const unsigned char *salt, size_t salt_len,
                      unsigned iter, struct scram_keys *k)
{
    unsigned char salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
    unsigned int mdlen = 0;
    int ret = -1;

    memset(k, 0, sizeof(*k));
    if (salt_len == 0 || salt_len > SCRAM_SALT_MAX || iter == 0 || iter > INT_MAX || len > INT_MAX)
        return -1;
    /* SaltedPassword = Hi(password, salt, i), which is PBKDF2 with
     * HMAC-SHA-256 and one block (RFC 5802 section 2.2). */
    if (PKCS5_PBKDF2_HMAC(password, (int)len, salt, (int)salt_len, (int)iter, EVP_sha256(),
                          sizeof(salted), salted) != 1)
        goto out;
    if (HMAC(EVP_sha256(), salted, sizeof(salted), (const unsigned char *)"Client Key", 10,
             client_key, &mdlen) == NULL ||
        mdlen != SCRAM_KEY_LEN)
        goto out;
    if (EVP_Digest(client_key, sizeof(client_key), k->stored_key, &mdlen, EVP_sha256(), NULL) !=
            1 ||
        mdlen != SCRAM_KEY_LEN)
        goto out;
    if (HMAC(EVP_sha256(), salted, sizeof(salted), (const unsigned char *)"Server Key", 10,
             k->server_key, &mdlen) == NULL ||
        mdlen != SCRAM_KEY_LEN)
        goto out;
    memcpy(k->salt, salt, salt_len);
    k->salt_len = salt_len;
    k->iter = iter;
    ret = 0;
out:
    OPENSSL_cleanse(salted, sizeof(salted));
    OPENSSL_cleanse(client_key, sizeof(client_key));
    if (ret < 0)
        OPENSSL_cleanse(k, sizeof(*k));
    return ret;
}

int scram_keys_make(const char *password, size_t len, unsigned iter, struct scram_keys *k)
{
    unsigned char salt[16];

    if (RAND_bytes(salt, sizeof(salt)) != 1) {
        memset(k, 0, sizeof(*k));
        return -1;
    }
    return scram_keys_derive(password, len, salt, sizeof(salt), iter, k);
}

bool scram_verify_password(const struct scram_keys *k, const char *password, size_t len)
{
    struct scram_keys mine;
    bool ok;

    /* HMAC pads its key with zeros, so "pw" and "pw\0" would derive the
     * same keys; no stored password holds a NUL. */
    if (memchr(password, '\0', len) != NULL)
        return false;
    if (scram_keys_derive(password, len, k->salt, k->salt_len, k->iter, &mine) < 0)
        return false;
    ok = CRYPTO_memcmp(mine.stored_key, k->stored_key, SCRAM_KEY_LEN) == 0;
    OPENSSL_cleanse(&mine, sizeof(mine));
    return ok;
}

bool scram_verify_proof(const struct scram_keys *k, const char *auth_message, size_t len,
                        const unsigned char proof[SCRAM_KEY_LEN],
                        unsigned char server_sig_r[SCRAM_KEY_LEN])
{
    unsigned char sig[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
    unsigned int mdlen = 0;
    bool ok = false;

    memset(server_sig_r, 0, SCRAM_KEY_LEN);
    if (HMAC(EVP_sha256(), k->stored_key, SCRAM_KEY_LEN, (const unsigned char *)auth_message, len,
             sig, &mdlen) == NULL ||
        mdlen != SCRAM_KEY_LEN)
        goto out;
    for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
        client_key[i] = proof[i] ^ sig[i];
    if (EVP_Digest(client_key, sizeof(client_key), stored, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != SCRAM_KEY_LEN)
        goto out;
    if (CRYPTO_memcmp(stored, k->stored_key, SCRAM_KEY_LEN) != 0)
        goto out;
    ok = HMAC(EVP_sha256(), k->server_key, SCRAM_KEY_LEN, (const unsigned char *)auth_message, len,
              server_sig_r, &mdlen) != NULL &&
         mdlen == SCRAM_KEY_LEN;
    if (!ok)
        memset(server_sig_r, 0, SCRAM_KEY_LEN);
out:
    OPENSSL_cleanse(sig, sizeof(sig));
    OPENSSL_cleanse(client_key, sizeof(client_key));
    OPENSSL_cleanse(stored, sizeof(stored));
    return ok;
}

/* One base64 field of exactly want bytes (or, when exact is false, 1 to
 * want bytes). Returns the length or -1. */
static int decode_field(const char *s, size_t len, unsigned char *out, size_t want, bool exact)
{
    /* Room for one more byte than wanted, so that a longer value is
     * told apart from a value of the right size. */
    unsigned char buf[SCRAM_SALT_MAX + 3];
    int n = b64_decode(s, len, buf, want + 1 <= sizeof(buf) ? want + 1 : sizeof(buf));

    if (n < 1 || (size_t)n > want || (exact && (size_t)n != want)) {
        OPENSSL_cleanse(buf, sizeof(buf));
        return -1;
    }
    memcpy(out, buf, (size_t)n);
    OPENSSL_cleanse(buf, sizeof(buf));
    return n;
}

int scram_keys_parse(const char *s, struct scram_keys *k, const char **error_r)
{
    const char *f[4], *end;
    size_t flen[4];
    uint64_t iter;
    const char *error;
    int n;

    memset(k, 0, sizeof(*k));
    if (str_eq_nocase(s, strnlen(s, sizeof(SCRAM_PREFIX) - 1), SCRAM_PREFIX))
        s += sizeof(SCRAM_PREFIX) - 1;
    for (int i = 0; i < 4; i++) {
        f[i] = s;
        end = strchr(s, ',');
        if ((end == NULL) != (i == 3)) {
            *error_r = "SCRAM keys must be 4 comma-separated fields: ITER,SALT,STOREDKEY,SERVERKEY";
            return -1;
        }
        flen[i] = end != NULL ? (size_t)(end - s) : strlen(s);
        s = end != NULL ? end + 1 : NULL;
    }
    if (str_parse_u64(f[0], flen[0], INT_MAX, &iter, &error) < 0 || iter < SCRAM_ITER_MIN) {
        *error_r = "SCRAM iteration count must be a number from 4096 to 2147483647";
        return -1;
    }
    k->iter = (unsigned)iter;
    if ((n = decode_field(f[1], flen[1], k->salt, SCRAM_SALT_MAX, false)) < 0) {
        *error_r = "SCRAM salt must be base64 of 1 to 64 bytes";
        goto bad;
    }
    k->salt_len = (size_t)n;
    if (decode_field(f[2], flen[2], k->stored_key, SCRAM_KEY_LEN, true) < 0) {
        *error_r = "SCRAM StoredKey must be base64 of 32 bytes";
        goto bad;
    }
    if (decode_field(f[3], flen[3], k->server_key, SCRAM_KEY_LEN, true) < 0) {
        *error_r = "SCRAM ServerKey must be base64 of 32 bytes";
        goto bad;
    }
    return 0;
bad:
    OPENSSL_cleanse(k, sizeof(*k));
    return -1;
}

int scram_keys_format(const struct scram_keys *k, char *out, size_t size)
{
    /* Salt: at most 88 characters, keys 44 each. */
    char salt[((SCRAM_SALT_MAX + 2) / 3) * 4 + 1], stored[45], server[45];
    int ret = -1;

    if (k->salt_len == 0 || k->salt_len > SCRAM_SALT_MAX ||
        b64_encode(k->salt, k->salt_len, salt, sizeof(salt)) == 0 ||
        b64_encode(k->stored_key, SCRAM_KEY_LEN, stored, sizeof(stored)) == 0 ||
        b64_encode(k->server_key, SCRAM_KEY_LEN, server, sizeof(server)) == 0)
        goto out;
    int n = snprintf(out, size, SCRAM_PREFIX "%u,%s,%s,%s", k->iter, salt, stored, server);
    if (n >= 0 && (size_t)n < size)
        ret = 0;
    else if (size > 0)
        OPENSSL_cleanse(out, size);
out:
    OPENSSL_cleanse(stored, sizeof(stored));
    OPENSSL_cleanse(server, sizeof(server));
    return ret;
}
