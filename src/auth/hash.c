#include "auth/hash.h"

#include <crypt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <argon2.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "auth/scram.h"
#include "lib/str.h"

static const struct {
    const char *name;
    enum hash_scheme scheme;
} schemes[] = {
    {"CRYPT", HASH_CRYPT},       {"SHA512-CRYPT", HASH_CRYPT},  {"SHA256-CRYPT", HASH_CRYPT},
    {"BLF-CRYPT", HASH_CRYPT},   {"YESCRYPT", HASH_CRYPT},      {"MD5-CRYPT", HASH_CRYPT},
    {"PLAIN", HASH_PLAIN},       {"CLEAR", HASH_PLAIN},         {"CLEARTEXT", HASH_PLAIN},
    {"ARGON2ID", HASH_ARGON2ID}, {"SCRAM-SHA-256", HASH_SCRAM},
};

enum hash_scheme hash_scheme_lookup(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        if (str_eq_nocase(name, len, schemes[i].name))
            return schemes[i].scheme;
    }
    return HASH_UNKNOWN;
}

const char *hash_scheme_name(enum hash_scheme scheme)
{
    switch (scheme) {
    case HASH_CRYPT:
        return "CRYPT";
    case HASH_PLAIN:
        return "PLAIN";
    case HASH_ARGON2ID:
        return "ARGON2ID";
    case HASH_SCRAM:
        return "SCRAM-SHA-256";
    case HASH_UNKNOWN:
        break;
    }
    return "UNKNOWN";
}

/* struct crypt_data is 32 KiB: one per thread, not per call. The key's
 * destructor frees it when the thread ends (pool threads come and go). */
static _Thread_local struct crypt_data *crypt_buf;
static pthread_key_t crypt_key;
static pthread_once_t crypt_key_once = PTHREAD_ONCE_INIT;
static bool crypt_key_ok;

static void crypt_buf_free(void *p)
{
    explicit_bzero(p, sizeof(struct crypt_data));
    free(p);
}

static void crypt_key_init(void)
{
    crypt_key_ok = pthread_key_create(&crypt_key, crypt_buf_free) == 0;
}

static bool crypt_check(const char *stored, const char *password, size_t len)
{
    char pw[1024];
    bool ok = false;

    if (crypt_buf == NULL) {
        if ((crypt_buf = calloc(1, sizeof(*crypt_buf))) == NULL)
            return false;
        pthread_once(&crypt_key_once, crypt_key_init);
        if (crypt_key_ok)
            pthread_setspecific(crypt_key, crypt_buf);
    }
    if (len >= sizeof(pw))
        len = sizeof(pw) - 1; /* still hashed: the cost must not depend on the input */
    memcpy(pw, password, len);
    pw[len] = '\0';
    const char *out;
    if (shacrypt(pw, strlen(pw), stored, crypt_buf->output, sizeof(crypt_buf->output))) {
        out = crypt_buf->output;
    } else {
        hash_mem_enter();
        out = crypt_rn(pw, stored, crypt_buf, sizeof(*crypt_buf));
        hash_mem_leave();
    }
    explicit_bzero(pw, sizeof(pw));
    if (out != NULL && out[0] != '*') {
        size_t olen = strlen(out);
        ok = olen == strlen(stored) && CRYPTO_memcmp(out, stored, olen) == 0;
    }
    explicit_bzero(crypt_buf->output, sizeof(crypt_buf->output));
    return ok;
}

bool hash_verify(enum hash_scheme scheme, const char *stored, const char *password, size_t len)
{
    switch (scheme) {
    case HASH_CRYPT:
        return crypt_check(stored, password, len);
    case HASH_PLAIN: {
        /* Comparing digests hides the length of the stored secret. */
        unsigned char a[32], b[32];
        EVP_Digest(stored, strlen(stored), a, NULL, EVP_sha256(), NULL);
        EVP_Digest(password, len, b, NULL, EVP_sha256(), NULL);
        return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
    }
    case HASH_ARGON2ID:
        /* libargon2 compares in constant time and wipes its memory. */
        return strncmp(stored, "$argon2id$", 10) == 0 &&
               argon2id_verify(stored, password, len) == ARGON2_OK;
    case HASH_SCRAM: {
        struct scram_keys k;
        const char *error;
        bool ok =
            scram_keys_parse(stored, &k, &error) == 0 && scram_verify_password(&k, password, len);
        OPENSSL_cleanse(&k, sizeof(k));
        return ok;
    }
    case HASH_UNKNOWN:
        break;
    }
    return false;
}

static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char dummy_hash[CRYPT_OUTPUT_SIZE];

static void dummy_init(void)
{
    char pw[33];
    unsigned char rnd[16];
    const char *error;

    RAND_bytes(rnd, sizeof(rnd));
    str_hex(rnd, sizeof(rnd), pw);
    if (hash_make_yescrypt(pw, dummy_hash, sizeof(dummy_hash), &error) < 0)
        str_copy(dummy_hash, "{CRYPT}$6$postern$", sizeof(dummy_hash));
}

void hash_verify_dummy(const char *password, size_t len)
{
    pthread_once(&dummy_once, dummy_init);
    (void)crypt_check(dummy_hash + strlen("{CRYPT}"), password, len);
}

bool hash_verify_apop(const char *secret, const char *timestamp, const char *digest_hex)
{
    unsigned char md[16];
    char hex[33];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = false;

    if (ctx == NULL)
        return false;
    if (EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
        EVP_DigestUpdate(ctx, timestamp, strlen(timestamp)) == 1 &&
        EVP_DigestUpdate(ctx, secret, strlen(secret)) == 1 &&
        EVP_DigestFinal_ex(ctx, md, NULL) == 1) {
        str_hex(md, sizeof(md), hex);
        char given[33];
        size_t i;
        for (i = 0; i < 32 && digest_hex[i] != '\0'; i++) {
            char c = digest_hex[i];
            given[i] = c >= 'A' && c <= 'F' ? (char)(c + 32) : c;
        }
        given[i] = '\0';
        ok = i == 32 && digest_hex[32] == '\0' && CRYPTO_memcmp(hex, given, 32) == 0;
    }
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* A crypt(3) hash with a fresh salt for prefix ("$y$", "$6$", "$2y$") and
 * cost (0: libxcrypt's default), written "{name}hash". */
static int make_crypt(const char *prefix, unsigned long cost, const char *name,
                      const char *password, char *out, size_t size, const char **error_r)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data *cd = calloc(1, sizeof(*cd));

    if (cd == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    if (crypt_gensalt_rn(prefix, cost, NULL, 0, salt, sizeof(salt)) == NULL) {
        free(cd);
        *error_r = "cannot make a crypt salt";
        return -1;
    }
    const char *h = crypt_rn(password, salt, cd, sizeof(*cd));
    int ret = -1;
    if (h == NULL || h[0] == '*')
        *error_r = "crypt hashing failed";
    else if ((size_t)snprintf(out, size, "{%s}%s", name, h) >= size)
        *error_r = "hash too long";
    else
        ret = 0;
    explicit_bzero(cd, sizeof(*cd));
    free(cd);
    return ret;
}

int hash_make_yescrypt(const char *password, char *out, size_t size, const char **error_r)
{
    return make_crypt("$y$", 0, "CRYPT", password, out, size, error_r);
}

static int make_argon2id(const char *password, char *out, size_t size, const char **error_r)
{
    static const char name[] = "{ARGON2ID}";
    unsigned char salt[16];
    size_t len = strlen(password);

    if (RAND_bytes(salt, sizeof(salt)) != 1) {
        *error_r = "no random bytes for the salt";
        return -1;
    }
    size_t need = argon2_encodedlen(HASH_ARGON2ID_T, HASH_ARGON2ID_M_KIB, HASH_ARGON2ID_P,
                                    sizeof(salt), 32, Argon2_id);
    if (size < sizeof(name) - 1 + need) {
        *error_r = "hash too long";
        return -1;
    }
    memcpy(out, name, sizeof(name) - 1);
    int r = argon2id_hash_encoded(HASH_ARGON2ID_T, HASH_ARGON2ID_M_KIB, HASH_ARGON2ID_P, password,
                                  len, salt, sizeof(salt), 32, out + sizeof(name) - 1,
                                  size - (sizeof(name) - 1));
    if (r != ARGON2_OK) {
        *error_r = argon2_error_message(r);
        return -1;
    }
    return 0;
}

static int make_scram(const char *password, char *out, size_t size, const char **error_r)
{
    struct scram_keys k;
    int ret = -1;

    if (scram_keys_make(password, strlen(password), HASH_SCRAM_ITER, &k) < 0)
        *error_r = "SCRAM key derivation failed";
    else if (scram_keys_format(&k, out, size) < 0)
        *error_r = "hash too long";
    else
        ret = 0;
    OPENSSL_cleanse(&k, sizeof(k));
    return ret;
}

int hash_make(const char *scheme_name, const char *password, char *out, size_t size,
              const char **error_r)
{
    const char *s = scheme_name != NULL ? scheme_name : "YESCRYPT";
    size_t n = strlen(s);

    if (str_eq_nocase(s, n, "YESCRYPT"))
        return hash_make_yescrypt(password, out, size, error_r);
    if (str_eq_nocase(s, n, "SHA512-CRYPT"))
        return make_crypt("$6$", 0, "SHA512-CRYPT", password, out, size, error_r);
    /* $2y$ is the same algorithm as $2b$, and older bcrypt code (Dovecot
     * 2.2's own copy among it) knows only $2y$. */
    if (str_eq_nocase(s, n, "BLF-CRYPT"))
        return make_crypt("$2y$", HASH_BLF_COST, "BLF-CRYPT", password, out, size, error_r);
    if (str_eq_nocase(s, n, "ARGON2ID"))
        return make_argon2id(password, out, size, error_r);
    if (str_eq_nocase(s, n, "SCRAM-SHA-256"))
        return make_scram(password, out, size, error_r);
    if (str_eq_nocase(s, n, "PLAIN")) {
        if (strchr(password, ':') != NULL) {
            *error_r = "a PLAIN password cannot contain ':' (the passwd-file field separator)";
            return -1;
        }
        if ((size_t)snprintf(out, size, "{PLAIN}%s", password) >= size) {
            explicit_bzero(out, size);
            *error_r = "password too long";
            return -1;
        }
        return 0;
    }
    *error_r = "unknown scheme (use yescrypt, sha512-crypt, blf-crypt, argon2id, scram-sha-256 or "
               "plain)";
    return -1;
}
