#include "net/tls.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* A ticket key is used to issue tickets for this long, then accepted (and
 * the ticket renewed) for as long again. */
#define TICKET_KEY_LIFETIME (12 * 3600)
#define SESSION_CACHE_SIZE  20000
#define SESSION_TIMEOUT     (12 * 3600)

struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
    time_t created;
    bool valid;
};

struct tls {
    struct tls_settings set;
    EVP_CIPHER *aes;       /* fetched once: OpenSSL 3 would look it up per ticket */
    pthread_mutex_t mutex; /* ctx and keys */
    SSL_CTX *ctx;
    struct ticket_key keys[2]; /* [0] current, [1] previous */
};

static _Thread_local char tls_err[512];

static const char *ssl_error(const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char buf[256];

    ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    snprintf(tls_err, sizeof(tls_err), "%s%s%s: %s", what, path != NULL ? " " : "",
             path != NULL ? path : "", e != 0 ? buf : "unknown error");
    return tls_err;
}

/* The ticket callbacks get the SSL object, not our struct: the struct is
 * reached through the context's ex_data. */
static int tls_ex_index = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void ex_init(void)
{
    tls_ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static int new_ticket_key(struct ticket_key *k)
{
    if (RAND_bytes(k->name, sizeof(k->name)) != 1 || RAND_bytes(k->aes, sizeof(k->aes)) != 1 ||
        RAND_bytes(k->hmac, sizeof(k->hmac)) != 1)
        return -1;
    k->created = time(NULL);
    k->valid = true;
    return 0;
}

/* Called with t->mutex held. */
static void rotate_keys(struct tls *t)
{
    time_t now = time(NULL);

    if (t->keys[0].valid && now - t->keys[0].created < TICKET_KEY_LIFETIME)
        return;
    struct ticket_key fresh;
    if (new_ticket_key(&fresh) < 0)
        return; /* keep the old key rather than issue none */
    OPENSSL_cleanse(&t->keys[1], sizeof(t->keys[1]));
    t->keys[1] = t->keys[0];
    t->keys[0] = fresh;
    OPENSSL_cleanse(&fresh, sizeof(fresh));
}

static int set_mac_key(EVP_MAC_CTX *hctx, unsigned char *key)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key, 32),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params);
}

static int ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
                     EVP_MAC_CTX *hctx, int enc)
{
    struct tls *t = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tls_ex_index);
    struct ticket_key k;
    int ret = 0;

    if (t == NULL)
        return -1;
    pthread_mutex_lock(&t->mutex);
    rotate_keys(t);
    if (enc) {
        k = t->keys[0];
        ret = k.valid ? 1 : -1;
    } else {
        for (int i = 0; i < 2; i++) {
            if (t->keys[i].valid && memcmp(name, t->keys[i].name, 16) == 0) {
                k = t->keys[i];
                /* A ticket under the previous key is accepted and renewed. */
                ret = i == 0 ? 1 : 2;
                break;
            }
        }
    }
    pthread_mutex_unlock(&t->mutex);
    if (ret <= 0)
        return ret;
    if (enc) {
        memcpy(name, k.name, 16);
        if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1 ||
            EVP_EncryptInit_ex(cctx, t->aes, NULL, k.aes, iv) != 1)
            ret = -1;
    } else if (EVP_DecryptInit_ex(cctx, t->aes, NULL, k.aes, iv) != 1) {
        ret = -1;
    } else if (ret == 1) {
        /* Resuming with a ticket under the current key: the client keeps
         * it (OpenSSL's stateless tickets may be used again until they
         * expire), so sealing a new one would only cost time. A ticket
         * under the previous key (ret 2) is replaced as usual. */
        SSL_set_num_tickets(ssl, 0);
    }
    if (ret > 0 && set_mac_key(hctx, k.hmac) != 1)
        ret = -1;
    OPENSSL_cleanse(&k, sizeof(k));
    return ret;
}

static int accept_any_client_cert(int preverify_ok, X509_STORE_CTX *store)
{
    (void)preverify_ok;
    (void)store;
    return 1; /* SSL_get_verify_result() still tells what the check found */
}

static SSL_CTX *ctx_load(struct tls *t, const char **error_r)
{
    const struct tls_settings *set = &t->set;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL) {
        *error_r = ssl_error("cannot create TLS context", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, set->min_version);
    /* IGNORE_UNEXPECTED_EOF: many mail clients just close the socket
     * after QUIT. Truncation cannot hurt a POP3 server (the client sends
     * only commands, and QUIT is explicit), so such a close counts as an
     * ordinary one, as it did before OpenSSL 3. */
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Idle sessions give their 34 KiB of record buffers back. The chain
     * sent is the one in the [tls] cert file (as fullchain.pem has it):
     * OpenSSL would otherwise try to build one from its empty store on
     * every handshake. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_NO_AUTO_CHAIN);
    if (set->ciphers != NULL && SSL_CTX_set_cipher_list(ctx, set->ciphers) != 1) {
        *error_r = ssl_error("[tls] ciphers", set->ciphers);
        goto fail;
    }
    if (set->ciphersuites != NULL && SSL_CTX_set_ciphersuites(ctx, set->ciphersuites) != 1) {
        *error_r = ssl_error("[tls] ciphersuites", set->ciphersuites);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, set->cert) != 1) {
        *error_r = ssl_error("cannot load certificate", set->cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, set->key, SSL_FILETYPE_PEM) != 1) {
        *error_r = ssl_error("cannot load key", set->key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        *error_r = ssl_error("key does not match certificate", set->key);
        goto fail;
    }
    if (set->ca != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, set->ca, NULL) != 1) {
            *error_r = ssl_error("cannot load [tls] ca", set->ca);
            goto fail;
        }
        /* Ask for a client certificate and check it when one comes, but
         * let every client in: the password remains the credential, and
         * the outcome of the check is logged (client_cert_ok), as Dovecot
         * does by default. */
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_client_cert);
    }
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"postern", 7);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, SESSION_CACHE_SIZE);
    SSL_CTX_set_timeout(ctx, SESSION_TIMEOUT);
    SSL_CTX_set_ex_data(ctx, tls_ex_index, t);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    /* One TLS 1.3 ticket per handshake (OpenSSL sends two): a mail client
     * keeps one connection per account, and each ticket costs a seal. */
    SSL_CTX_set_num_tickets(ctx, 1);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

struct tls *tls_new(const struct tls_settings *set, const char **error_r)
{
    struct tls *t = calloc(1, sizeof(*t));

    if (t == NULL) {
        *error_r = "out of memory";
        return NULL;
    }
    pthread_once(&ex_once, ex_init);
    t->set = *set;
    pthread_mutex_init(&t->mutex, NULL);
    t->aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    if (t->aes == NULL) {
        *error_r = "AES-256-CBC is not available for session tickets";
        tls_free(&t);
        return NULL;
    }
    if (new_ticket_key(&t->keys[0]) < 0) {
        *error_r = "cannot make a session ticket key";
        tls_free(&t);
        return NULL;
    }
    t->ctx = ctx_load(t, error_r);
    if (t->ctx == NULL) {
        tls_free(&t);
        return NULL;
    }
    return t;
}

int tls_reload(struct tls *t, const char **error_r)
{
    SSL_CTX *ctx = ctx_load(t, error_r), *old;

    if (ctx == NULL)
        return -1;
    pthread_mutex_lock(&t->mutex);
    old = t->ctx;
    t->ctx = ctx;
    pthread_mutex_unlock(&t->mutex);
    /* Sessions on the old context hold their own reference to it. */
    SSL_CTX_free(old);
    return 0;
}

SSL *tls_ssl_new(struct tls *t)
{
    pthread_mutex_lock(&t->mutex);
    SSL *ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->mutex);
    return ssl;
}

void tls_free(struct tls **tp)
{
    struct tls *t = *tp;

    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx);
    EVP_CIPHER_free(t->aes);
    OPENSSL_cleanse(t->keys, sizeof(t->keys));
    pthread_mutex_destroy(&t->mutex);
    free(t);
    *tp = NULL;
}
