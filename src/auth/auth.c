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

void auth_verify(struct auth *a, struct auth_request *req)
{
    struct passdb_entry *e = &req->entry;
    const char *error = "";
    bool ok = false;

    req->reason = "bad credentials";
    int found = passdb_lookup(a->db, req->user, e, &error);
    if (found < 0) {
        log_error("password database: %s", error);
        req->status = AUTH_TEMPFAIL;
        req->reason = "passdb unavailable";
        goto out;
    }
    if (found == 0) {
        /* Spend what a real account costs: timing must not tell. */
        hash_verify_dummy(req->secret, req->secret_len);
        req->status = AUTH_FAIL;
        req->reason = "unknown user";
        goto out;
    }
    if (req->secret_len >= sizeof(req->secret)) {
        hash_verify_dummy(req->secret, 0);
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
        /* APOP secrets change with every greeting: only passwords. */
        if (ok && a->cache != NULL)
            auth_cache_store(a->cache, req->user, e->generation, req->secret, req->secret_len);
    }
    if (!ok) {
        req->status = AUTH_FAIL;
        if (req->secret_len >= sizeof(req->secret))
            req->reason = "password too long";
        else if (req->mech != AUTH_MECH_APOP || e->scheme == HASH_PLAIN)
            req->reason = "bad password";
    } else if (e->pop3_disabled) {
        req->status = AUTH_DISABLED;
        req->reason = "pop3 disabled";
    } else {
        req->status = AUTH_OK;
        req->reason = NULL;
    }
out:
    explicit_bzero(e->hash, sizeof(e->hash));
    explicit_bzero(req->secret, sizeof(req->secret));
    req->secret_len = 0;
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
    req->job.run = auth_job_run;
    pool_submit(a->pool, &req->job);
}
