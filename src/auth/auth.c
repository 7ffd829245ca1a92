#include "auth/auth.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/apppass.h"
#include "auth/jwt.h"
#include "auth/scram.h"
#include "auth/totp.h"
#include "lib/base64.h"
#include "lib/keyed_mac.h"
#include "lib/log.h"

/* What SCRAM announces for an account without SCRAM keys or without an
 * account: the count `postern user add --scram` uses, so the made-up
 * answer looks like a real one. */
#define SCRAM_FAKE_ITER 10000

struct auth {
    struct passdb *db;
    struct pool *pool;
    struct auth_cache *cache;
    struct auth_settings set;
    struct totp_replay *own_totp; /* when the settings bring none */
    /* set.jwks is replaced on SIGHUP while pool threads verify tokens. */
    pthread_rwlock_t jwks_lock;
    struct keyed_mac *fake_salt; /* made-up SCRAM salts */
};

struct auth *auth_new(struct passdb *db, struct pool *pool, struct auth_cache *cache)
{
    struct auth *a = calloc(1, sizeof(*a));

    if (a == NULL)
        return NULL;
    a->db = db;
    a->pool = pool;
    a->cache = cache;
    pthread_rwlock_init(&a->jwks_lock, NULL);
    a->own_totp = totp_replay_new(NULL);
    a->set.totp = a->own_totp;
    a->fake_salt = keyed_mac_new(NULL);
    if (a->own_totp == NULL || a->fake_salt == NULL) {
        auth_free(&a);
        return NULL;
    }
    return a;
}

struct jwks *auth_replace_jwks(struct auth *a, struct jwks *keys)
{
    pthread_rwlock_wrlock(&a->jwks_lock);
    struct jwks *old = a->set.jwks;
    a->set.jwks = keys;
    pthread_rwlock_unlock(&a->jwks_lock);
    return old;
}

void auth_configure(struct auth *a, const struct auth_settings *set)
{
    a->set = *set;
    if (a->set.totp == NULL)
        a->set.totp = a->own_totp;
}

void auth_free(struct auth **ap)
{
    struct auth *a = *ap;

    if (a == NULL)
        return;
    totp_replay_free(a->own_totp);
    a->own_totp = NULL;
    pthread_rwlock_destroy(&a->jwks_lock);
    keyed_mac_free(&a->fake_salt);
    free(a);
    *ap = NULL;
}

/* Wipes what must not outlive the verification. */
static void wipe(struct auth_request *req)
{
    explicit_bzero(req->entry.hash, sizeof(req->entry.hash));
    explicit_bzero(req->secret, sizeof(req->secret));
    req->secret_len = 0;
}

static void str_factor(struct auth_request *req, const char *factor)
{
    snprintf(req->factor, sizeof(req->factor), "%s", factor);
}

static void set_success(struct auth_request *req)
{
    if (req->entry.pop3_disabled) {
        req->status = AUTH_DISABLED;
        req->reason = "pop3 disabled";
    } else {
        req->status = AUTH_OK;
        req->reason = NULL;
    }
}

/*
 * The answer when it needs no hashing: the right password for an account
 * stored PLAIN (or a right APOP digest), or one the cache knows. Anything
 * else -- every failure included -- is left to auth_verify() on the pool,
 * so that all failures cost the same. Returns true when it answered.
 */
static bool verify_quick(struct auth *a, struct auth_request *req)
{
    struct passdb_entry *e = &req->entry;
    bool ok = false;

    /* Reloading a changed passwd-file is the pool's work, not an I/O
     * thread's. Only plain passwords and APOP take this way: second
     * factors, SCRAM and tokens always go to the pool. */
    if ((req->mech != AUTH_MECH_PASSWORD && req->mech != AUTH_MECH_APOP) ||
        req->secret_len >= AUTH_PASSWORD_MAX || passdb_lookup_cached(a->db, req->user, e) != 1)
        return false;
    if (e->totp[0] != '\0' || e->mfa_required) {
        explicit_bzero(e->hash, sizeof(e->hash));
        return false;
    }
    if (req->mech == AUTH_MECH_APOP) {
        req->secret[req->secret_len] = '\0';
        ok = e->scheme == HASH_PLAIN && hash_verify_apop(e->hash, req->apop_timestamp, req->secret);
    } else if (e->scheme == HASH_PLAIN) {
        ok = hash_verify(e->scheme, e->hash, req->secret, req->secret_len);
    } else if (a->cache != NULL) {
        ok = auth_cache_check(a->cache, req->user, e->generation, req->secret, req->secret_len);
        req->cached = ok;
    }
    if (!ok) {
        explicit_bzero(e->hash, sizeof(e->hash));
        return false;
    }
    str_factor(req, "password");
    set_success(req);
    wipe(req);
    return true;
}

/* The account's SCRAM keys: the scram= extra field, or the password
 * field itself when that is stored as {SCRAM-SHA-256}. */
static bool entry_scram_keys(const struct passdb_entry *e, struct scram_keys *k)
{
    static const char prefix[] = "{SCRAM-SHA-256}";
    const char *error;

    if (e->scram[0] != '\0') {
        const char *body = e->scram;
        if (strncmp(body, prefix, sizeof(prefix) - 1) == 0)
            body += sizeof(prefix) - 1;
        return scram_keys_parse(body, k, &error) == 0;
    }
    return e->scheme == HASH_SCRAM && scram_keys_parse(e->hash, k, &error) == 0;
}

/* The password itself, from the cache or by hashing. *hashed tells
 * whether the cost of a hash was spent. */
static bool check_password(struct auth *a, struct auth_request *req, const char *pw, size_t len,
                           bool *hashed)
{
    struct passdb_entry *e = &req->entry;

    if (a->cache != NULL && auth_cache_check(a->cache, req->user, e->generation, pw, len)) {
        req->cached = true;
        return true;
    }
    bool ok = hash_verify(e->scheme, e->hash, pw, len);
    /* SCRAM keys cost a few milliseconds of PBKDF2, far less than the
     * dummy: their failures pay for the dummy as well. */
    *hashed = e->scheme != HASH_PLAIN && e->scheme != HASH_SCRAM;
    if (ok && e->scheme != HASH_PLAIN && a->cache != NULL)
        auth_cache_store(a->cache, req->user, e->generation, pw, len);
    return ok;
}

/*
 * USER/PASS, PLAIN, LOGIN. In this order: an app password (random and
 * long, so a cheap comparison suffices), then for an account with TOTP
 * the password followed by the current code (both must be right; the
 * code counts as used only then), then the account password -- refused,
 * though checked, when the account requires a second factor.
 */
static bool verify_password(struct auth *a, struct auth_request *req, bool *hashed)
{
    struct passdb_entry *e = &req->entry;
    const char *pw = req->secret;
    size_t len = req->secret_len;
    char label[33]; /* labels are 1-32 characters */

    if (a->set.apppass != NULL &&
        apppass_verify(a->set.apppass, req->user, pw, len, time(NULL), label, sizeof(label)) == 1) {
        snprintf(req->factor, sizeof(req->factor), "app-password:%s", label);
        return true;
    }
    if (e->totp[0] != '\0') {
        size_t pw_len;
        uint64_t step;
        if (!totp_split(pw, len, &pw_len)) {
            /* Hash anyway: the answer must not come sooner. */
            (void)check_password(a, req, pw, len, hashed);
            req->reason = "TOTP code missing";
            return false;
        }
        if (!check_password(a, req, pw, pw_len, hashed))
            return false;
        if (!totp_verify(e->totp, pw + pw_len, len - pw_len, time(NULL), &step)) {
            req->reason = "bad TOTP code";
            return false;
        }
        if (!totp_replay_use(a->set.totp, req->user, step)) {
            req->reason = "TOTP code already used";
            return false;
        }
        str_factor(req, "password+totp");
        return true;
    }
    bool ok = check_password(a, req, pw, len, hashed);
    if (ok && e->mfa_required) {
        req->reason = "second factor required";
        return false;
    }
    if (ok)
        str_factor(req, "password");
    return ok;
}

static void scram_salt(struct auth *a, struct auth_request *req, int found)
{
    struct scram_keys k;

    if (found == 1 && entry_scram_keys(&req->entry, &k)) {
        b64_encode(k.salt, k.salt_len, req->scram_salt, sizeof(req->scram_salt));
        req->scram_iter = k.iter;
    } else {
        /* No account, or no keys: a salt that stays the same for the
         * name, so that asking twice does not tell the difference. */
        unsigned char mac[KEYED_MAC_LEN];
        keyed_mac_pair(a->fake_salt, req->user, NULL, 0, mac);
        b64_encode(mac, 16, req->scram_salt, sizeof(req->scram_salt));
        req->scram_iter = SCRAM_FAKE_ITER;
    }
    explicit_bzero(&k, sizeof(k));
    req->status = AUTH_OK;
    req->reason = NULL;
}

static bool scram_proof(struct auth_request *req, int found)
{
    struct scram_keys k;
    bool ok = false;

    if (found != 1) {
        req->reason = "unknown user";
        return false;
    }
    if (!entry_scram_keys(&req->entry, &k)) {
        req->reason = "no SCRAM keys for the account";
        return false;
    }
    if (req->secret_len >= sizeof(req->secret)) {
        req->reason = "SCRAM message too long";
    } else if (!scram_verify_proof(&k, req->secret, req->secret_len, req->scram_proof,
                                   req->scram_sig)) {
        req->reason = "bad password";
    } else if (req->entry.totp[0] != '\0' || req->entry.mfa_required) {
        /* SCRAM proves the password only. */
        req->reason = "second factor required";
    } else {
        ok = true;
        str_factor(req, "password");
    }
    explicit_bzero(&k, sizeof(k));
    return ok;
}

static bool bearer(struct auth *a, struct auth_request *req, const char **error_r)
{
    char user[PASSDB_USER_MAX + 1];
    const char *reason;
    struct jwt_policy pol = {
        .issuer = a->set.jwt_issuer,
        .audience = a->set.jwt_audience,
        .user_claim = a->set.jwt_user_claim,
        .leeway = 60,
    };

    if (req->secret_len >= sizeof(req->secret)) {
        req->reason = "token too long";
        return false;
    }
    pthread_rwlock_rdlock(&a->jwks_lock);
    int r = a->set.jwks == NULL ? 1
                                : jwt_verify(a->set.jwks, req->secret, req->secret_len, &pol,
                                             time(NULL), user, sizeof(user), &reason);
    pthread_rwlock_unlock(&a->jwks_lock);
    if (r != 0) {
        req->reason = r > 0 ? "bearer tokens not configured" : reason;
        return false;
    }
    if (req->user[0] != '\0' && strcmp(req->user, user) != 0) {
        req->reason = "token is for another user";
        return false;
    }
    memcpy(req->user, user, sizeof(user));
    int found = passdb_lookup(a->db, req->user, &req->entry, error_r);
    if (found != 1) {
        req->reason = found < 0 ? "passdb unavailable" : "unknown user";
        if (found < 0)
            req->status = AUTH_TEMPFAIL;
        return false;
    }
    str_factor(req, "token");
    return true;
}

void auth_verify(struct auth *a, struct auth_request *req)
{
    struct passdb_entry *e = &req->entry;
    const char *error = "";
    bool ok = false, hashed = false;

    req->reason = "bad credentials";
    req->factor[0] = '\0';
    if (req->mech == AUTH_MECH_BEARER) {
        req->status = AUTH_FAIL;
        if (bearer(a, req, &error))
            set_success(req);
        else if (req->status == AUTH_TEMPFAIL)
            log_error("password database: %s", error);
        goto out;
    }
    int found = passdb_lookup(a->db, req->user, e, &error);
    if (found < 0) {
        log_error("password database: %s", error);
        req->status = AUTH_TEMPFAIL;
        req->reason = "passdb unavailable";
        goto out;
    }
    if (req->mech == AUTH_MECH_SCRAM_SALT) {
        scram_salt(a, req, found);
        goto out;
    }
    if (req->mech == AUTH_MECH_SCRAM_PROOF) {
        if (scram_proof(req, found)) {
            set_success(req);
        } else {
            req->status = AUTH_FAIL;
        }
        goto out;
    }
    if (found == 0) {
        req->reason = "unknown user";
    } else if (req->secret_len >= AUTH_PASSWORD_MAX) {
        req->reason = "password too long";
    } else if (req->mech == AUTH_MECH_APOP) {
        req->secret[req->secret_len] = '\0';
        if (e->scheme != HASH_PLAIN)
            req->reason = "APOP needs a PLAIN secret";
        else if (!hash_verify_apop(e->hash, req->apop_timestamp, req->secret))
            req->reason = "bad password";
        else if (e->totp[0] != '\0' || e->mfa_required)
            req->reason = "second factor required";
        else {
            ok = true;
            str_factor(req, "password");
        }
    } else {
        req->reason = "bad password";
        ok = verify_password(a, req, &hashed);
    }
    if (!ok) {
        /* Spend what a real account costs: an unknown user, a PLAIN or
         * APOP mismatch and a wrong hashed password all take as long. */
        if (!hashed)
            hash_verify_dummy(req->secret,
                              req->secret_len < sizeof(req->secret) ? req->secret_len : 0);
        req->status = AUTH_FAIL;
        req->factor[0] = '\0';
    } else {
        set_success(req);
    }
out:
    wipe(req);
}

static void auth_job_run(struct pool_job *job)
{
    struct auth_request *req = (struct auth_request *)job;

    auth_verify(req->auth, req);
    req->callback(req);
}

void auth_request(struct auth *a, struct auth_request *req)
{
    req->auth = a;
    req->quick = verify_quick(a, req);
    if (req->quick) {
        req->callback(req);
        return;
    }
    req->job.run = auth_job_run;
    pool_submit(a->pool, &req->job);
}
