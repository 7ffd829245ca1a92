/*
 * App passwords (apppass.h): the line format, generation, and the
 * verifier the server keeps. The file is small and changes rarely, so it
 * is held in memory, sorted by user, and read again when its inode, size
 * or times change: an app password added or revoked with `postern
 * app-password` applies at the next login.
 */
#include "auth/apppass.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "auth/passdb.h"
#include "lib/log.h"
#include "lib/str.h"

#define APPPASS_FILE_MAX (64u * 1024 * 1024)
/* A typed app password is 20 characters plus a few separators; anything
 * far longer is some other password and is not worth normalizing. */
#define APPPASS_TYPED_MAX 128

static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz234567";

/* --- the line --- */

static int hex_decode(const char *hex, unsigned char *out, size_t n)
{
    if (strlen(hex) != 2 * n)
        return -1;
    for (size_t i = 0; i < 2 * n; i++) {
        char c = hex[i];
        unsigned v;
        if (c >= '0' && c <= '9')
            v = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v = (unsigned)(c - 'a' + 10);
        else
            return -1;
        if (i % 2 == 0)
            out[i / 2] = (unsigned char)(v << 4);
        else
            out[i / 2] |= (unsigned char)v;
    }
    return 0;
}

static int parse_time(const char *s, time_t *out)
{
    const char *error;
    uint64_t v;

    if (str_parse_u64(s, strlen(s), (uint64_t)APPPASS_TIME_MAX, &v, &error) < 0)
        return -1;
    *out = (time_t)v;
    return 0;
}

bool apppass_label_valid(const char *label)
{
    size_t len = strlen(label);

    if (len == 0 || len > APPPASS_LABEL_MAX)
        return false;
    for (const char *p = label; *p != '\0'; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

int apppass_line_parse(char *line, struct apppass_line *out, const char **error_r)
{
    size_t len = strlen(line);
    char *f[6], *p = line;

    memset(out, 0, sizeof(*out));
    if (len > 0 && line[len - 1] == '\n') {
        line[--len] = '\0';
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = '\0';
    }
    if (len == 0 || line[0] == '#')
        return 0;
    for (int i = 0; i < 6; i++) {
        char *colon = strchr(p, ':');
        f[i] = p;
        if (i < 5 && colon == NULL) {
            *error_r = "expected 6 fields (user:label:created:last_used:salt:sha256)";
            return -1;
        }
        if (i == 5 && colon != NULL) {
            *error_r = "more than 6 fields";
            return -1;
        }
        if (colon != NULL) {
            *colon = '\0';
            p = colon + 1;
        }
    }
    out->user = f[0];
    out->label = f[1];
    if (out->user[0] == '\0') {
        *error_r = "empty user name";
        return -1;
    }
    if (strlen(out->user) > PASSDB_USER_MAX) {
        *error_r = "user name too long";
        return -1;
    }
    for (const char *u = out->user; *u != '\0'; u++) {
        if ((unsigned char)*u <= 0x20 || *u == 0x7f || *u == '/') {
            *error_r = "user name contains a space, control character or '/'";
            return -1;
        }
    }
    if (!apppass_label_valid(out->label)) {
        *error_r = "label must be 1 to 32 of A-Z a-z 0-9 . _ -";
        return -1;
    }
    if (parse_time(f[2], &out->created) < 0) {
        *error_r = "creation time is not a number of seconds";
        return -1;
    }
    if (parse_time(f[3], &out->last_used) < 0) {
        *error_r = "last-use time is not a number of seconds";
        return -1;
    }
    if (hex_decode(f[4], out->salt, sizeof(out->salt)) < 0) {
        *error_r = "salt must be 32 lowercase hex digits";
        return -1;
    }
    if (hex_decode(f[5], out->hash, sizeof(out->hash)) < 0) {
        *error_r = "hash must be 64 lowercase hex digits";
        return -1;
    }
    return 1;
}

int apppass_line_format(const struct apppass_line *l, char *buf, size_t size)
{
    char salt[2 * APPPASS_SALT_LEN + 1], hash[2 * APPPASS_HASH_LEN + 1];

    str_hex(l->salt, sizeof(l->salt), salt);
    str_hex(l->hash, sizeof(l->hash), hash);
    int n = snprintf(buf, size, "%s:%s:%lld:%lld:%s:%s", l->user, l->label, (long long)l->created,
                     (long long)l->last_used, salt, hash);
    return n < 0 || (size_t)n >= size ? -1 : n;
}

char *apppass_file_path(const char *state_dir)
{
    size_t n = strlen(state_dir) + sizeof("/" APPPASS_FILE);
    char *path = malloc(n);

    if (path != NULL)
        snprintf(path, n, "%s/" APPPASS_FILE, state_dir);
    return path;
}

/* SHA-256 over the salt, then the 20 characters. */
static void apppass_hash(const unsigned char *salt, const char *password,
                         unsigned char out[APPPASS_HASH_LEN])
{
    unsigned char in[APPPASS_SALT_LEN + APPPASS_LEN];
    unsigned int n = 0;

    memcpy(in, salt, APPPASS_SALT_LEN);
    memcpy(in + APPPASS_SALT_LEN, password, APPPASS_LEN);
    if (EVP_Digest(in, sizeof(in), out, &n, EVP_sha256(), NULL) != 1 || n != APPPASS_HASH_LEN) {
        /* Cannot happen with a working libcrypto; a random value can match
         * nothing, whereas zeros left in out might. */
        RAND_bytes(out, APPPASS_HASH_LEN);
    }
    OPENSSL_cleanse(in, sizeof(in));
}

int apppass_generate(const char *user, const char *label, time_t now, char *password_r,
                     char *shown_r, struct apppass_line *out)
{
    unsigned char rnd[APPPASS_LEN];

    memset(out, 0, sizeof(*out));
    if (RAND_bytes(rnd, sizeof(rnd)) != 1 || RAND_bytes(out->salt, sizeof(out->salt)) != 1)
        return -1;
    /* 256 is a multiple of 32: taking 5 bits of each byte keeps every
     * character uniform. */
    for (size_t i = 0; i < APPPASS_LEN; i++)
        password_r[i] = alphabet[rnd[i] & 31];
    password_r[APPPASS_LEN] = '\0';
    OPENSSL_cleanse(rnd, sizeof(rnd));
    for (size_t i = 0, o = 0; i < APPPASS_LEN; i++) {
        if (i > 0 && i % 4 == 0)
            shown_r[o++] = '-';
        shown_r[o++] = password_r[i];
        shown_r[o] = '\0';
    }
    out->user = (char *)user;
    out->label = (char *)label;
    out->created = now;
    out->last_used = 0;
    apppass_hash(out->salt, password_r, out->hash);
    return 0;
}

bool apppass_normalize(const char *typed, size_t len, char *out)
{
    size_t n = 0;

    out[0] = '\0';
    if (len > APPPASS_TYPED_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = typed[i];
        if (c == '-' || c == ' ')
            continue;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7')) || n == APPPASS_LEN)
            return false;
        out[n++] = c;
    }
    out[n] = '\0';
    return n == APPPASS_LEN;
}

/* --- the verifier --- */

/* A last use waiting for apppass_flush(). */
struct apppass_use {
    char user[PASSDB_USER_MAX + 1];
    char label[APPPASS_LABEL_MAX + 1];
    unsigned char salt[APPPASS_SALT_LEN];
    time_t when;
};

struct apppass {
    pthread_mutex_t mutex;
    char *path;
    bool loaded; /* lines reflect the file as of st (or its absence) */
    bool missing;
    struct stat st;
    char *buf;                  /* the file, split in place */
    struct apppass_line *lines; /* sorted by user */
    size_t count;
    struct apppass_use *uses; /* kept apart from lines: a reload keeps them */
    size_t n_uses, cap_uses;
    time_t warned; /* the last flush failure logged */
};

struct apppass *apppass_open(const char *path)
{
    struct apppass *a = calloc(1, sizeof(*a));

    if (a == NULL)
        return NULL;
    a->path = strdup(path);
    if (a->path == NULL) {
        free(a);
        return NULL;
    }
    pthread_mutex_init(&a->mutex, NULL);
    return a;
}

static void data_clear(struct apppass *a)
{
    free(a->buf);
    free(a->lines);
    a->buf = NULL;
    a->lines = NULL;
    a->count = 0;
}

void apppass_close(struct apppass **ap)
{
    struct apppass *a = *ap;

    if (a == NULL)
        return;
    *ap = NULL;
    data_clear(a);
    free(a->uses);
    pthread_mutex_destroy(&a->mutex);
    free(a->path);
    free(a);
}

static int cmp_user(const void *x, const void *y)
{
    const struct apppass_line *a = x, *b = y;

    return strcmp(a->user, b->user);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Reads and parses the file. Bad lines are logged (never their content:
 * it holds hashes) and skipped. Returns -1 when the file cannot be read;
 * the verifier then holds nothing, so a revoked password cannot pass. */
static int load_locked(struct apppass *a)
{
    int fd = open(a->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    size_t got = 0, n_lines = 1, lineno = 0;
    struct stat st;

    data_clear(a);
    a->loaded = false;
    if (fd < 0 && errno == ENOENT) {
        a->missing = true;
        a->loaded = true;
        return 0;
    }
    if (fd < 0 || fstat(fd, &st) < 0) {
        log_error("cannot read %s: %s", a->path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > APPPASS_FILE_MAX) {
        log_error("%s is not a regular file of reasonable size", a->path);
        close(fd);
        return -1;
    }
    a->buf = malloc((size_t)st.st_size + 1);
    if (a->buf == NULL) {
        close(fd);
        log_error("%s: out of memory", a->path);
        return -1;
    }
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, a->buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            log_error("cannot read %s: %s", a->path, strerror(errno));
            close(fd);
            data_clear(a);
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    a->buf[got] = '\0';
    for (size_t i = 0; i < got; i++)
        n_lines += a->buf[i] == '\n';
    a->lines = calloc(n_lines, sizeof(*a->lines));
    if (a->lines == NULL) {
        data_clear(a);
        log_error("%s: out of memory", a->path);
        return -1;
    }
    for (char *line = a->buf, *next; line != NULL && *line != '\0'; line = next) {
        const char *error;
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        lineno++;
        int r = apppass_line_parse(line, &a->lines[a->count], &error);
        if (r < 0)
            log_warn("%s:%zu: %s; line ignored", a->path, lineno, error);
        else if (r > 0)
            a->count++;
    }
    qsort(a->lines, a->count, sizeof(*a->lines), cmp_user);
    a->st = st;
    a->missing = false;
    a->loaded = true;
    return 0;
}

static int refresh_locked(struct apppass *a)
{
    struct stat st;

    if (stat(a->path, &st) < 0) {
        if (errno != ENOENT) {
            log_error("cannot read %s: %s", a->path, strerror(errno));
            data_clear(a);
            a->loaded = false;
            return -1;
        }
        data_clear(a);
        a->missing = true;
        a->loaded = true;
        return 0;
    }
    if (a->loaded && !a->missing && same_file(&st, &a->st))
        return 0;
    return load_locked(a);
}

/* The user's entries: [*first, *first + count). */
static size_t find_user(const struct apppass *a, const char *user, size_t *first)
{
    size_t lo = 0, hi = a->count, n = 0;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(a->lines[mid].user, user) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *first = lo;
    while (lo + n < a->count && strcmp(a->lines[lo + n].user, user) == 0)
        n++;
    return n;
}

/* Forward only, so that two processes whose clocks differ a little do
 * not write turn about; a clock set back by more than a day (the stored
 * time was wrong) is followed. */
static bool last_used_due(time_t last, time_t now)
{
    return now >= last + APPPASS_LAST_USED_INTERVAL || now < last - 86400;
}

/* Room for one more waiting use; false past APPPASS_USES_MAX. */
static bool uses_room_locked(struct apppass *a)
{
    if (a->n_uses < a->cap_uses)
        return true;
    size_t cap = a->cap_uses ? 2 * a->cap_uses : 16;
    struct apppass_use *u = cap <= APPPASS_USES_MAX ? realloc(a->uses, cap * sizeof(*u)) : NULL;
    if (u == NULL)
        return false;
    a->uses = u;
    a->cap_uses = cap;
    return true;
}

/* Queues now as the last use of l for apppass_flush(). Past
 * APPPASS_USES_MAX waiting, a use is not recorded; the next login after
 * a flush records it. */
static void queue_use_locked(struct apppass *a, struct apppass_line *l, time_t now)
{
    if (!uses_room_locked(a))
        return;
    struct apppass_use *u = &a->uses[a->n_uses++];
    str_copy(u->user, l->user, sizeof(u->user));
    str_copy(u->label, l->label, sizeof(u->label));
    memcpy(u->salt, l->salt, sizeof(u->salt));
    u->when = now;
    l->last_used = now;
}

/* Uses a flush could not write wait for the next one, with those queued
 * meanwhile (the flush keeps the latest of each). */
static void requeue(struct apppass *a, const struct apppass_use *uses, size_t n)
{
    pthread_mutex_lock(&a->mutex);
    for (size_t i = 0; i < n && uses_room_locked(a); i++)
        a->uses[a->n_uses++] = uses[i];
    pthread_mutex_unlock(&a->mutex);
}

static int cmp_use(const void *x, const void *y)
{
    const struct apppass_use *a = x, *b = y;
    int c = strcmp(a->user, b->user);

    if (c == 0)
        c = strcmp(a->label, b->label);
    if (c == 0)
        c = memcmp(a->salt, b->salt, sizeof(a->salt));
    return c;
}

/* Latest first among uses of one entry, so that a search finds it. */
static int cmp_use_latest(const void *x, const void *y)
{
    const struct apppass_use *a = x, *b = y;
    int c = cmp_use(x, y);

    return c != 0 ? c : (a->when < b->when) - (a->when > b->when);
}

void apppass_flush(struct apppass *a)
{
    struct apppass_edit e;
    const char *error;
    size_t n;
    struct apppass_use *uses;
    bool changed = false;
    char buf[1024];

    pthread_mutex_lock(&a->mutex);
    uses = a->uses;
    n = a->n_uses;
    a->uses = NULL;
    a->n_uses = a->cap_uses = 0;
    pthread_mutex_unlock(&a->mutex);
    if (n == 0) {
        free(uses);
        return;
    }
    qsort(uses, n, sizeof(*uses), cmp_use_latest);
    size_t kept = 1;
    for (size_t i = 1; i < n; i++) {
        if (cmp_use(&uses[i], &uses[kept - 1]) != 0)
            uses[kept++] = uses[i];
    }
    /* The file as it is on disk now, every other line kept (the CLI may
     * have changed it since it was read). */
    int ret = apppass_edit_begin(&e, a->path, true, &error);
    for (size_t i = 0; ret == 0 && i < e.n; i++) {
        struct apppass_use key = {0};
        struct apppass_line pl;
        char *copy = strdup(e.lines[i]);
        if (copy == NULL)
            break;
        if (apppass_line_parse(copy, &pl, &error) > 0) {
            str_copy(key.user, pl.user, sizeof(key.user));
            str_copy(key.label, pl.label, sizeof(key.label));
            memcpy(key.salt, pl.salt, sizeof(key.salt));
            const struct apppass_use *u = bsearch(&key, uses, kept, sizeof(*uses), cmp_use);
            if (u != NULL && last_used_due(pl.last_used, u->when)) {
                pl.last_used = u->when;
                char *line = apppass_line_format(&pl, buf, sizeof(buf)) >= 0 ? strdup(buf) : NULL;
                if (line != NULL) {
                    free(e.lines[i]);
                    e.lines[i] = line;
                    changed = true;
                }
            }
        }
        free(copy);
    }
    if (ret == 0 && changed)
        ret = apppass_edit_commit(&e, &error);
    if (ret < 0) {
        requeue(a, uses, kept);
        /* The CLI holding the lock is normal; a full disk is said once a
         * minute, not at every tick. */
        time_t now = time(NULL);
        if (!e.busy && now - a->warned >= 60) {
            a->warned = now;
            log_warn("cannot record the last use of %zu app password%s in %s (kept for later): %s",
                     kept, kept == 1 ? "" : "s", a->path, error);
        }
    }
    apppass_edit_end(&e);
    free(uses);
}

int apppass_verify(struct apppass *a, const char *user, const char *password, size_t len,
                   time_t now, char *label_r, size_t label_size)
{
    char norm[APPPASS_LEN + 1];
    unsigned char h[APPPASS_HASH_LEN];
    size_t first, n, match = 0;
    unsigned found = 0;
    int ret;

    /* Not of the form: no app password can match, and the file need not
     * be read (an unreadable file must not block account passwords). */
    if (!apppass_normalize(password, len, norm)) {
        OPENSSL_cleanse(norm, sizeof(norm));
        return 0;
    }
    pthread_mutex_lock(&a->mutex);
    if (refresh_locked(a) < 0) {
        ret = -1;
        goto out;
    }
    n = find_user(a, user, &first);
    /* Every entry costs the same, matched or not, and the loop never
     * stops early: the time says nothing about which one matched. */
    for (size_t i = first; i < first + n; i++) {
        apppass_hash(a->lines[i].salt, norm, h);
        unsigned eq = (unsigned)(CRYPTO_memcmp(h, a->lines[i].hash, sizeof(h)) == 0);
        size_t mask = (size_t)0 - (size_t)eq;
        match = (match & ~mask) | (i & mask);
        found |= eq;
    }
    ret = found ? 1 : 0;
    if (found) {
        struct apppass_line *l = &a->lines[match];
        if (label_r != NULL && label_size > 0)
            str_copy(label_r, l->label, label_size);
        if (last_used_due(l->last_used, now))
            queue_use_locked(a, l, now);
    }
out:
    pthread_mutex_unlock(&a->mutex);
    OPENSSL_cleanse(norm, sizeof(norm));
    OPENSSL_cleanse(h, sizeof(h));
    return ret;
}

int apppass_count(struct apppass *a, const char *user)
{
    size_t first;
    int ret;

    pthread_mutex_lock(&a->mutex);
    ret = refresh_locked(a) < 0 ? -1 : (int)find_user(a, user, &first);
    pthread_mutex_unlock(&a->mutex);
    return ret;
}
