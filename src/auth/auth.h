#ifndef POSTERN_AUTH_H
#define POSTERN_AUTH_H

/*
 * Asynchronous authentication. The caller fills a request and submits it;
 * the password database lookup and the hashing run on the pool's threads,
 * never on an I/O thread, and req->callback is then called on that pool
 * thread. The callback may do further blocking work there (open the
 * mailbox) and must hand the result to its own thread itself.
 *
 * This is the seam where the auth process of DESIGN.md section 1 will be
 * cut out: the request travels over a socket instead, and callers do not
 * change.
 */

#include <stdbool.h>
#include <stddef.h>

#include "auth/passdb.h"
#include "lib/pool.h"

enum auth_mech {
    AUTH_MECH_PASSWORD, /* USER/PASS */
    AUTH_MECH_APOP,
};

enum auth_status {
    AUTH_OK,
    AUTH_FAIL,     /* unknown user or wrong secret: never told apart */
    AUTH_DISABLED, /* right secret, but POP3 is disabled for the account */
    AUTH_TEMPFAIL, /* the database could not be read */
};

#define AUTH_SECRET_MAX 1024

struct auth_request {
    struct pool_job job; /* must stay first */
    /* Filled by the caller. */
    enum auth_mech mech;
    char user[PASSDB_USER_MAX + 1];
    char secret[AUTH_SECRET_MAX]; /* wiped when verified */
    size_t secret_len;
    const char *apop_timestamp; /* for AUTH_MECH_APOP; must outlive the request */
    void (*callback)(struct auth_request *req);
    void *ctx;
    /* Filled before the callback. */
    enum auth_status status;
    const char *reason;        /* for the audit log: "unknown user", "bad password", ... */
    struct passdb_entry entry; /* the account, when status is AUTH_OK or AUTH_DISABLED */
    struct auth *auth;
};

struct auth;

struct auth *auth_new(struct passdb *db, struct pool *pool);
void auth_free(struct auth **a);
/* Takes the request; the callback will be called exactly once. */
void auth_request(struct auth *a, struct auth_request *req);
/* Verifies synchronously on the calling thread (the pool's job, and tests). */
void auth_verify(struct auth *a, struct auth_request *req);

#endif
