/*
 * Dovecot-compatible passwd-file. The whole file is parsed into memory and
 * parsed again when its inode, size or times change, so edits made with
 * `postern user` (which replaces the file atomically) apply at the next
 * login without a restart.
 */
#include "auth/passdb.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/scram.h"
#include "lib/log.h"
#include "lib/str.h"

#define PASSWD_FILE_MAX (64u * 1024 * 1024)

struct pwfile_data {
    char *buf; /* the file, split in place */
    struct passwd_line *lines;
    size_t count;
    uint32_t *slots; /* open addressing: line number + 1 */
    size_t n_slots;
};

struct pwfile {
    struct passdb db;
    char *path;
    pthread_rwlock_t lock;
    struct pwfile_data data;
    struct stat st;
    uint64_t generation;
};

static char *next_field(char **p)
{
    char *start = *p, *colon;

    if (start == NULL)
        return NULL;
    colon = strchr(start, ':');
    if (colon != NULL) {
        *colon = '\0';
        *p = colon + 1;
    } else {
        *p = NULL;
    }
    return start;
}

static bool scram_valid(const char *s, const char **error_r)
{
    struct scram_keys keys;
    bool ok = scram_keys_parse(s, &keys, error_r) == 0;

    explicit_bzero(&keys, sizeof(keys));
    return ok;
}

int passwd_line_parse(char *line, struct passwd_line *pl, const char **error_r)
{
    char *p = line, *pw;

    memset(pl, 0, sizeof(*pl));
    line[strcspn(line, "\r\n")] = '\0';
    if (line[0] == '\0' || line[0] == '#')
        return 0;
    pl->user = next_field(&p);
    pw = next_field(&p);
    if (pl->user[0] == '\0') {
        *error_r = "empty user name";
        return -1;
    }
    for (const char *u = pl->user; *u != '\0'; u++) {
        if ((unsigned char)*u <= 0x20 || *u == 0x7f || *u == '/') {
            *error_r = "user name contains a space, control character or '/'";
            return -1;
        }
    }
    if (strlen(pl->user) > PASSDB_USER_MAX) {
        *error_r = "user name too long";
        return -1;
    }
    if (pw == NULL || pw[0] == '\0') {
        *error_r = "no password field";
        return -1;
    }
    if (pw[0] == '{') {
        char *end = strchr(pw, '}');
        if (end == NULL) {
            *error_r = "password scheme has no closing '}'";
            return -1;
        }
        pl->scheme = hash_scheme_lookup(pw + 1, (size_t)(end - pw - 1));
        pl->hash = end + 1;
    } else {
        /* Dovecot's default scheme for a bare hash. */
        pl->scheme = HASH_CRYPT;
        pl->hash = pw;
    }
    if (pl->scheme == HASH_UNKNOWN) {
        *error_r = "unknown password scheme";
        return -1;
    }
    /* "{PLAIN}" alone would be an empty password, which APOP accepts
     * from anyone who can compute MD5(timestamp). */
    if (pl->hash[0] == '\0') {
        *error_r = "empty password";
        return -1;
    }
    if (pl->scheme == HASH_CRYPT && pl->hash[0] != '$') {
        *error_r = "crypt hash must start with '$' (yescrypt, bcrypt, sha512-crypt, ...)";
        return -1;
    }
    if (pl->scheme == HASH_ARGON2ID && strncmp(pl->hash, "$argon2id$", 10) != 0) {
        *error_r = "ARGON2ID hash must start with '$argon2id$'";
        return -1;
    }
    /* SCRAM keys are checked now, so that `postern check` names a broken
     * line instead of the login failing later. */
    if (pl->scheme == HASH_SCRAM && !scram_valid(pl->hash, error_r))
        return -1;
    (void)next_field(&p); /* uid */
    (void)next_field(&p); /* gid */
    (void)next_field(&p); /* gecos */
    pl->home = next_field(&p);
    (void)next_field(&p); /* shell */
    if (pl->home != NULL && pl->home[0] == '\0')
        pl->home = NULL;
    /* Extra fields: space-separated key=value (mail= may contain ':'). */
    for (char *f = p; f != NULL && *f != '\0';) {
        char *sp = strchr(f, ' ');
        if (sp != NULL)
            *sp = '\0';
        if (strncmp(f, "pop3=", 5) == 0) {
            if (strcmp(f + 5, "no") == 0)
                pl->pop3_disabled = true;
            else if (strcmp(f + 5, "yes") != 0) {
                *error_r = "pop3= must be yes or no";
                return -1;
            }
        } else if (strcmp(f, "nologin") == 0) {
            pl->pop3_disabled = true;
        } else if (strncmp(f, "mail=", 5) == 0) {
            pl->mail = f + 5;
        } else if (strncmp(f, "totp=", 5) == 0) {
            pl->totp = f + 5;
        } else if (strncmp(f, "scram=", 6) == 0) {
            static _Thread_local char err[160];
            const char *error;
            pl->scram = f + 6;
            /* Only the prefixed form: a bare value could be mistaken for
             * another scheme's by whoever reads the file next. */
            if (strncmp(pl->scram, "{SCRAM-SHA-256}", 15) != 0) {
                *error_r = "scram= must be {SCRAM-SHA-256}ITER,SALT,STOREDKEY,SERVERKEY";
                return -1;
            }
            if (!scram_valid(pl->scram, &error)) {
                snprintf(err, sizeof(err), "scram=: %s", error);
                *error_r = err;
                return -1;
            }
        } else if (strncmp(f, "mfa=", 4) == 0) {
            /* Anything but a known value would silently weaken the
             * account: refuse the line instead. */
            if (strcmp(f + 4, "required") == 0)
                pl->mfa_required = true;
            else if (strcmp(f + 4, "optional") != 0) {
                *error_r = "mfa= must be required or optional";
                return -1;
            }
        }
        f = sp != NULL ? sp + 1 : NULL;
    }
    return 1;
}

static uint32_t hash_user(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

static void data_free(struct pwfile_data *d)
{
    free(d->buf);
    free(d->lines);
    free(d->slots);
    memset(d, 0, sizeof(*d));
}

static const struct passwd_line *data_find(const struct pwfile_data *d, const char *user)
{
    if (d->n_slots == 0)
        return NULL;
    for (size_t i = hash_user(user) & (d->n_slots - 1); d->slots[i] != 0;
         i = (i + 1) & (d->n_slots - 1)) {
        const struct passwd_line *pl = &d->lines[d->slots[i] - 1];
        if (strcmp(pl->user, user) == 0)
            return pl;
    }
    return NULL;
}

/* Parses the file into d. Returns -1 when it cannot be read. */
static int data_load(const char *path, struct pwfile_data *d, struct stat *st_r, unsigned *bad_r,
                     const char **error_r)
{
    static _Thread_local char err[512];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t got = 0, n_lines = 0, lineno = 0;
    unsigned bad = 0;

    memset(d, 0, sizeof(*d));
    if (fd < 0 || fstat(fd, st_r) < 0) {
        snprintf(err, sizeof(err), "cannot read %s: %s", path, strerror(errno));
        *error_r = err;
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(st_r->st_mode) || (uint64_t)st_r->st_size > PASSWD_FILE_MAX) {
        snprintf(err, sizeof(err), "%s is not a regular file of reasonable size", path);
        *error_r = err;
        close(fd);
        return -1;
    }
    d->buf = malloc((size_t)st_r->st_size + 1);
    if (d->buf == NULL) {
        close(fd);
        *error_r = "out of memory";
        return -1;
    }
    while (got < (size_t)st_r->st_size) {
        ssize_t r = read(fd, d->buf + got, (size_t)st_r->st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    d->buf[got] = '\0';
    for (size_t i = 0; i < got; i++)
        n_lines += d->buf[i] == '\n';
    d->lines = calloc(n_lines + 1, sizeof(*d->lines));
    for (d->n_slots = 16; d->n_slots < 2 * (n_lines + 1);)
        d->n_slots *= 2;
    d->slots = calloc(d->n_slots, sizeof(*d->slots));
    if (d->lines == NULL || d->slots == NULL) {
        data_free(d);
        *error_r = "out of memory";
        return -1;
    }
    for (char *line = d->buf, *next; line != NULL && *line != '\0'; line = next) {
        const char *error;
        struct passwd_line pl;
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        lineno++;
        int r = passwd_line_parse(line, &pl, &error);
        if (r < 0) {
            log_warn("%s:%zu: %s; line ignored", path, lineno, error);
            bad++;
            continue;
        }
        if (r == 0)
            continue;
        if (data_find(d, pl.user) != NULL) {
            log_warn("%s:%zu: user %s appears again; line ignored", path, lineno, pl.user);
            bad++;
            continue;
        }
        d->lines[d->count] = pl;
        size_t i = hash_user(pl.user) & (d->n_slots - 1);
        while (d->slots[i] != 0)
            i = (i + 1) & (d->n_slots - 1);
        d->slots[i] = (uint32_t)d->count + 1;
        d->count++;
    }
    if (bad_r != NULL)
        *bad_r = bad;
    return 0;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static void copy_entry(const struct passwd_line *pl, struct passdb_entry *e)
{
    str_copy(e->user, pl->user, sizeof(e->user));
    e->scheme = pl->scheme;
    str_copy(e->hash, pl->hash, sizeof(e->hash));
    str_copy(e->home, pl->home != NULL ? pl->home : "", sizeof(e->home));
    str_copy(e->mail, pl->mail != NULL ? pl->mail : "", sizeof(e->mail));
    e->pop3_disabled = pl->pop3_disabled;
    str_copy(e->totp, pl->totp != NULL ? pl->totp : "", sizeof(e->totp));
    str_copy(e->scram, pl->scram != NULL ? pl->scram : "", sizeof(e->scram));
    e->mfa_required = pl->mfa_required;
}

/* Copies user's account into e; the caller holds pf->lock. */
static int find_locked(const struct pwfile *pf, const char *user, struct passdb_entry *e)
{
    const struct passwd_line *pl = data_find(&pf->data, user);

    if (pl == NULL)
        return 0;
    copy_entry(pl, e);
    e->generation = pf->generation;
    return 1;
}

static int pwfile_lookup(struct passdb *db, const char *user, struct passdb_entry *e,
                         const char **error_r)
{
    struct pwfile *pf = (struct pwfile *)db;
    struct stat st;
    int ret;

    if (stat(pf->path, &st) == 0 && !same_file(&st, &pf->st)) {
        pthread_rwlock_wrlock(&pf->lock);
        /* Another thread may have reloaded while this one waited. */
        if (!same_file(&st, &pf->st)) {
            struct pwfile_data d;
            struct stat nst;
            const char *error;
            if (data_load(pf->path, &d, &nst, NULL, &error) == 0) {
                data_free(&pf->data);
                pf->data = d;
                pf->st = nst;
                pf->generation++;
            } else {
                log_error("%s; keeping the accounts read before", error);
                pf->st = st;
            }
        }
        pthread_rwlock_unlock(&pf->lock);
    }
    pthread_rwlock_rdlock(&pf->lock);
    ret = find_locked(pf, user, e);
    pthread_rwlock_unlock(&pf->lock);
    (void)error_r;
    return ret;
}

/* One stat() for both the freshness check and the lookup: the I/O
 * threads ask this on every quick login. */
static int pwfile_lookup_cached(struct passdb *db, const char *user, struct passdb_entry *e)
{
    struct pwfile *pf = (struct pwfile *)db;
    struct stat st;
    /* Unreadable now: a full lookup would keep what it has, so this one
     * answers from it too. */
    bool readable = stat(pf->path, &st) == 0;
    int ret;

    pthread_rwlock_rdlock(&pf->lock);
    if (readable && !same_file(&st, &pf->st))
        ret = PASSDB_STALE;
    else
        ret = find_locked(pf, user, e);
    pthread_rwlock_unlock(&pf->lock);
    return ret;
}

static void pwfile_destroy(struct passdb *db)
{
    struct pwfile *pf = (struct pwfile *)db;

    data_free(&pf->data);
    pthread_rwlock_destroy(&pf->lock);
    free(pf->path);
    free(pf);
}

static const struct passdb_vfuncs pwfile_vfuncs = {
    .lookup = pwfile_lookup,
    .destroy = pwfile_destroy,
    .lookup_cached = pwfile_lookup_cached,
};

char *passwd_file_path(const char *spec, const char *base_dir, const char **error_r)
{
    static const char prefix[] = "passwd-file:";
    char *path;

    if (strncmp(spec, prefix, sizeof(prefix) - 1) != 0 || spec[sizeof(prefix) - 1] == '\0') {
        *error_r = "passdb must be \"passwd-file:PATH\"";
        return NULL;
    }
    spec += sizeof(prefix) - 1;
    if (spec[0] == '/')
        return strdup(spec);
    size_t n = strlen(base_dir) + strlen(spec) + 2;
    path = malloc(n);
    if (path != NULL)
        snprintf(path, n, "%s/%s", base_dir, spec);
    return path;
}

struct passdb *passdb_open(const char *spec, const char *base_dir, unsigned *bad_lines_r,
                           const char **error_r)
{
    struct pwfile *pf = calloc(1, sizeof(*pf));

    if (pf == NULL) {
        *error_r = "out of memory";
        return NULL;
    }
    pf->db.v = &pwfile_vfuncs;
    pf->path = passwd_file_path(spec, base_dir, error_r);
    if (pf->path == NULL || data_load(pf->path, &pf->data, &pf->st, bad_lines_r, error_r) < 0) {
        free(pf->path);
        free(pf);
        return NULL;
    }
    pthread_rwlock_init(&pf->lock, NULL);
    for (size_t i = 0; i < pf->data.count; i++) {
        if (pf->data.lines[i].scheme == HASH_PLAIN)
            log_warn("%s: user %s has a PLAIN password: anyone who reads the file can log in",
                     pf->path, pf->data.lines[i].user);
    }
    return &pf->db;
}
