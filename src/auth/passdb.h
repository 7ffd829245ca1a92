#ifndef POSTERN_PASSDB_H
#define POSTERN_PASSDB_H

/*
 * Password databases behind one vtable. A lookup copies the account into
 * a caller-owned entry, so the database may reload itself between lookups
 * (a passwd-file edited by `postern user add` is seen at the next login).
 * Lookups may run on several threads at once.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/hash.h"

#define PASSDB_USER_MAX 255

struct passdb_entry {
    char user[PASSDB_USER_MAX + 1];
    enum hash_scheme scheme;
    char hash[1024];
    char home[512];
    char mail[1024]; /* per-account mail location, or "" */
    bool pop3_disabled;
    bool mfa_required;   /* extra "mfa=required": the password alone is refused */
    char totp[128];      /* extra "totp=BASE32SECRET", or "" */
    char scram[256];     /* extra "scram={SCRAM-SHA-256}iter,salt,stored,server", or "" */
    uint64_t generation; /* changes whenever the database is reloaded */
};

struct passdb;

struct passdb_vfuncs {
    /* 1 found, 0 no such user, -1 the database cannot be read. */
    int (*lookup)(struct passdb *db, const char *user, struct passdb_entry *entry_r,
                  const char **error_r);
    void (*destroy)(struct passdb *db);
    /* Optional: as lookup, but only from what is in memory: when the
     * database has changed since it was loaded, returns PASSDB_STALE
     * and reads nothing. For callers that must not wait on a disk read
     * (the I/O threads). Without it, lookup is taken to be that cheap. */
    int (*lookup_cached)(struct passdb *db, const char *user, struct passdb_entry *entry_r);
};

#define PASSDB_STALE (-2)

struct passdb {
    const struct passdb_vfuncs *v;
};

/* spec is "passwd-file:PATH" (relative to base_dir). Bad lines are logged
 * and skipped; *bad_lines_r counts them (for `postern check`). */
struct passdb *passdb_open(const char *spec, const char *base_dir, unsigned *bad_lines_r,
                           const char **error_r);

static inline int passdb_lookup(struct passdb *db, const char *user, struct passdb_entry *entry_r,
                                const char **error_r)
{
    return db->v->lookup(db, user, entry_r, error_r);
}

static inline int passdb_lookup_cached(struct passdb *db, const char *user,
                                       struct passdb_entry *entry_r)
{
    const char *error;

    if (db->v->lookup_cached == NULL)
        return db->v->lookup(db, user, entry_r, &error);
    return db->v->lookup_cached(db, user, entry_r);
}

static inline void passdb_destroy(struct passdb **db)
{
    if (*db != NULL)
        (*db)->v->destroy(*db);
    *db = NULL;
}

/*
 * One passwd-file line, split in place:
 * user:{SCHEME}hash:uid:gid:gecos:home:shell:extra
 * Returns 1 for an account, 0 for a blank or comment line, -1 with
 * *error_r for a line that cannot be used.
 */
struct passwd_line {
    char *user;
    enum hash_scheme scheme;
    char *hash;
    char *home;  /* NULL when absent */
    char *mail;  /* from extra "mail=", NULL when absent */
    char *totp;  /* from extra "totp=", NULL when absent */
    char *scram; /* from extra "scram=", NULL when absent */
    bool pop3_disabled;
    bool mfa_required;
};
int passwd_line_parse(char *line, struct passwd_line *pl, const char **error_r);

/* The path behind a "passwd-file:" spec, or NULL with *error_r. */
char *passwd_file_path(const char *spec, const char *base_dir, const char **error_r);

#endif
