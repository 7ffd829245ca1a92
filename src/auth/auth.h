#ifndef POSTERN_AUTH_H
#define POSTERN_AUTH_H

/*
 * Asynchronous authentication. The caller fills a request and submits it;
 * hashing runs on the pool's threads, never on the caller's, and
 * req->callback is then called on that pool thread. When the answer needs
 * no hashing (the right password of an account stored PLAIN, or one the
 * cache knows) the callback is called at once, on the caller's thread,
 * with req->quick set: a thread hop would cost more than the check. Every
 * failure takes the pool's way and the cost of a hash. The callback may
 * do further blocking work on a pool thread (open the mailbox), and must
 * hand the result to its own thread itself.
 *
 * This is the seam where the auth process of DESIGN.md section 1 will be
 * cut out: the request travels over a socket instead, and callers do not
 * change.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/passdb.h"
#include "lib/pool.h"

enum auth_mech {
    AUTH_MECH_PASSWORD,    /* USER/PASS, PLAIN, LOGIN: may be an app password, or
                              the password followed by a TOTP code */
    AUTH_MECH_APOP,        /* secret: the hex digest */
    AUTH_MECH_SCRAM_SALT,  /* fills scram_salt and scram_iter */
    AUTH_MECH_SCRAM_PROOF, /* secret: the AuthMessage; fills scram_sig */
    AUTH_MECH_BEARER,      /* secret: the token; user may be "" and is filled */
};

enum auth_status {
    AUTH_OK,
    AUTH_FAIL,     /* unknown user or wrong secret: never told apart */
    AUTH_DISABLED, /* right secret, but POP3 is disabled for the account */
    AUTH_TEMPFAIL, /* the database could not be read */
};

/* Bearer tokens are the longest secrets. */
#define AUTH_SECRET_MAX 8200
/* Passwords (and APOP digests) are refused from this length on. */
#define AUTH_PASSWORD_MAX 1024

struct auth_request {
    struct pool_job job; /* must stay first */
    /* Filled by the caller. */
    enum auth_mech mech;
    char user[PASSDB_USER_MAX + 1];
    char secret[AUTH_SECRET_MAX]; /* wiped when verified */
    size_t secret_len;
    const char *apop_timestamp; /* for AUTH_MECH_APOP; must outlive the request */
    unsigned char scram_proof[32];
    /* Filled for SCRAM. */
    char scram_salt[96]; /* base64 */
    unsigned scram_iter;
    unsigned char scram_sig[32];
    /* The factor that succeeded, for the audit log: "password",
     * "password+totp", "app-password:LABEL", "token". */
    char factor[64];
    void (*callback)(struct auth_request *req);
    void *ctx;
    /* Filled before the callback. */
    enum auth_status status;
    const char *reason;        /* for the audit log: "unknown user", "bad password", ... */
    bool cached;               /* verified from the cache, without hashing */
    bool quick;                /* answered on the caller's thread (see above) */
    struct passdb_entry entry; /* the account, when status is AUTH_OK or AUTH_DISABLED */
    struct auth *auth;
};

struct auth;
struct auth_cache;
struct apppass;
struct jwks;
struct totp_replay;

/* cache may be NULL (no cache); auth_free() does not free it. */
struct auth *auth_new(struct passdb *db, struct pool *pool, struct auth_cache *cache);

/* The second factors and tokens. Every member may be NULL: no app
 * passwords, TOTP codes checked for replay in memory only, bearer tokens
 * refused. auth_free() frees none of them. */
struct auth_settings {
    struct apppass *apppass;
    struct totp_replay *totp;
    struct jwks *jwks;
    const char *jwt_issuer, *jwt_audience, *jwt_user_claim;
};
void auth_configure(struct auth *a, const struct auth_settings *set);
/* Puts new bearer-token keys in place (SIGHUP) and returns the old ones,
 * which no verification uses any more: the caller frees them. */
struct jwks *auth_replace_jwks(struct auth *a, struct jwks *keys);
void auth_free(struct auth **a);
/* Takes the request; the callback will be called exactly once. */
void auth_request(struct auth *a, struct auth_request *req);
/* Verifies synchronously on the calling thread (the pool's job, and tests). */
void auth_verify(struct auth *a, struct auth_request *req);

/*
 * The cache of verified passwords (cache.c): per user, an HMAC of the last
 * password that verified, valid for one passdb generation and ttl seconds.
 * Only successes are cached; the functions are thread-safe.
 */
struct auth_cache *auth_cache_new(unsigned ttl, size_t max_entries);
void auth_cache_free(struct auth_cache **c);
bool auth_cache_check(struct auth_cache *c, const char *user, uint64_t generation,
                      const char *secret, size_t len);
void auth_cache_store(struct auth_cache *c, const char *user, uint64_t generation,
                      const char *secret, size_t len);

#endif
