#include "auth/auth.h"

#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

struct auth {
    struct passdb *db;
    struct pool *pool;
    struct auth_cache *cache;
};

struct auth *auth_new(struct passdb *db, struct pool *pool, struct auth_cache *cache)
{
    struct auth *a = calloc(1, sizeof(*a));

    if (a != NULL) {
        a->db = db;
        a->pool = pool;
        a->cache = cache;
    }
    return a;
}

void auth_free(struct auth **a)
{
    free(*a);
    *a = NULL;
}

/* Wipes what must not outlive the verification. */
static void wipe(struct auth_request *req)
{
    explicit_bzero(req->entry.hash, sizeof(req->entry.hash));
    explicit_bzero(req->secret, sizeof(req->secret));
    req->secret_len = 0;
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
    const char *error;
    bool ok = false;

    /* Reloading a changed passwd-file is the pool's work, not an I/O
     * thread's. */
    if (req->secret_len >= sizeof(req->secret) || !passdb_fresh(a->db) ||
        passdb_lookup(a->db, req->user, e, &error) != 1)
        return false;
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
    set_success(req);
    wipe(req);
    return true;
}

void auth_verify(struct auth *a, struct auth_request *req)
{
    struct passdb_entry *e = &req->entry;
    const char *error = "";
    bool ok = false, hashed = false;

    req->reason = "bad credentials";
    int found = passdb_lookup(a->db, req->user, e, &error);
    if (found < 0) {
        log_error("password database: %s", error);
        req->status = AUTH_TEMPFAIL;
        req->reason = "passdb unavailable";
        goto out;
    }
    if (found == 0) {
        req->reason = "unknown user";
    } else if (req->secret_len >= sizeof(req->secret)) {
        req->reason = "password too long";
    } else if (req->mech == AUTH_MECH_APOP) {
        req->secret[req->secret_len] = '\0';
        if (e->scheme == HASH_PLAIN)
            ok = hash_verify_apop(e->hash, req->apop_timestamp, req->secret);
        else
            req->reason = "APOP needs a PLAIN secret";
    } else if (a->cache != NULL &&
               auth_cache_check(a->cache, req->user, e->generation, req->secret, req->secret_len)) {
        ok = true;
        req->cached = true;
    } else {
        ok = hash_verify(e->scheme, e->hash, req->secret, req->secret_len);
        /* SCRAM keys cost a few milliseconds of PBKDF2, far less than
         * the dummy: their failures pay for the dummy as well. */
        hashed = e->scheme != HASH_PLAIN && e->scheme != HASH_SCRAM;
        /* APOP secrets change with every greeting: only passwords. */
        if (ok && e->scheme != HASH_PLAIN && a->cache != NULL)
            auth_cache_store(a->cache, req->user, e->generation, req->secret, req->secret_len);
    }
    if (!ok) {
        /* Spend what a real account costs: an unknown user, a PLAIN or
         * APOP mismatch and a wrong hashed password all take as long. */
        if (!hashed)
            hash_verify_dummy(req->secret,
                              req->secret_len < sizeof(req->secret) ? req->secret_len : 0);
        req->status = AUTH_FAIL;
        if (found == 1 && req->secret_len < sizeof(req->secret) &&
            (req->mech != AUTH_MECH_APOP || e->scheme == HASH_PLAIN))
            req->reason = "bad password";
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
