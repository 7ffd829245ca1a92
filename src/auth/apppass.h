#ifndef POSTERN_APPPASS_H
#define POSTERN_APPPASS_H

/*
 * App passwords: generated secrets, one per device, that a user can give
 * a mail client instead of the account password and that the operator can
 * revoke one by one (`postern app-password`).
 *
 * They are 20 characters of the lowercase base32 alphabet (a-z2-7, 100
 * random bits), shown as xxxx-xxxx-xxxx-xxxx-xxxx. Because they are random
 * and long, they are stored as a salted SHA-256, not a slow hash: a user
 * with several app passwords must not cost several yescrypt runs per
 * login, and guessing 100 bits is hopeless at any speed.
 *
 * The file is <state_dir>/app-passwords, mode 0600, one line per app
 * password:
 *     user:label:created_unix:last_used_unix:salt_hex:sha256_hex
 * (last_used 0 = never; sha256 over the salt, then the 20 characters).
 * Every change is made under an exclusive flock on <path>.lock and
 * replaces the file atomically, by the CLI and by the server alike.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <time.h>

#define APPPASS_FILE      "app-passwords"
#define APPPASS_LEN       20 /* base32 characters: 100 bits */
#define APPPASS_SHOWN_LEN (APPPASS_LEN + APPPASS_LEN / 4 - 1)
#define APPPASS_LABEL_MAX 32
#define APPPASS_SALT_LEN  16
#define APPPASS_HASH_LEN  32
/* A successful login records its time at most this often per app
 * password, so that a busy account does not rewrite the file each time. */
#define APPPASS_LAST_USED_INTERVAL 60
/* Last uses waiting for apppass_flush() at most. */
#define APPPASS_USES_MAX 16384
/* The last second whose year has four digits (9999-12-31T23:59:59Z). */
#define APPPASS_TIME_MAX 253402300799LL

/*
 * One line, split in place. Returns 1 for an app password, 0 for an empty
 * line or a '#' comment, -1 with *error_r for anything else: exactly six
 * fields, a user name as the passwd-file allows it, a valid label, decimal
 * times up to APPPASS_TIME_MAX, 32 and 64 lowercase hex digits. One
 * trailing "\n" or "\r\n" is allowed.
 */
struct apppass_line {
    char *user;
    char *label;
    time_t created;
    time_t last_used; /* 0: never */
    unsigned char salt[APPPASS_SALT_LEN];
    unsigned char hash[APPPASS_HASH_LEN];
};
int apppass_line_parse(char *line, struct apppass_line *out, const char **error_r);

/* Writes the line (without '\n') into buf; returns its length, or -1 if
 * it does not fit. */
int apppass_line_format(const struct apppass_line *l, char *buf, size_t size);

/* 1-32 characters of [A-Za-z0-9._-]. */
bool apppass_label_valid(const char *label);

/* "<state_dir>/app-passwords", malloc'd (NULL when out of memory). */
char *apppass_file_path(const char *state_dir);

/*
 * A new app password: password_r gets the 20 characters (it must hold
 * APPPASS_LEN + 1 bytes), shown_r the grouped form to print
 * (APPPASS_SHOWN_LEN + 1 bytes), out the line to store with a fresh salt.
 * user and label are only pointed to. Returns 0, or -1 when the random
 * generator fails.
 */
int apppass_generate(const char *user, const char *label, time_t now, char *password_r,
                     char *shown_r, struct apppass_line *out);

/*
 * The typed form reduced to the stored one: '-' and ' ' removed, letters
 * lowercased. Returns false when the result is not 20 characters of the
 * alphabet (it then cannot be an app password). out holds APPPASS_LEN + 1.
 */
bool apppass_normalize(const char *typed, size_t len, char *out);

/*
 * The verifier the server keeps. Thread-safe: pool threads call it at
 * once. It holds no descriptor between calls; the file is read at the
 * first call and again whenever its inode, size or times change.
 */
struct apppass;

struct apppass *apppass_open(const char *path);
void apppass_close(struct apppass **a);

/*
 * 1: password is one of user's app passwords; its label is copied into
 * label_r and its last use is queued for apppass_flush() (at most once per
 * APPPASS_LAST_USED_INTERVAL). 0: no match, no app password for user, or no file. -1: the
 * file exists but cannot be read. Every app password of the user is
 * checked, in constant time each, whichever matches.
 */
int apppass_verify(struct apppass *a, const char *user, const char *password, size_t len,
                   time_t now, char *label_r, size_t label_size);

/*
 * Writes the queued last uses into the file in one change, under the
 * CLI's lock; the daemon's tick calls it every few seconds, and at
 * shutdown. One rewrite for all of them: recording each login's use as it
 * came rewrote the whole file once per login of every client polling less
 * often than once a minute. It never waits for the lock (the tick runs on
 * the daemon's main thread): when the CLI holds it, or the write fails,
 * the uses wait for the next call. A failure is logged (once a minute at
 * most), not returned.
 */
void apppass_flush(struct apppass *a);

/* The number of user's app passwords, or -1 when the file cannot be read. */
int apppass_count(struct apppass *a, const char *user);

/*
 * The file held for a change: exclusively locked, read whole, its lines
 * kept as they are (a NULL line is dropped at commit). Used by the CLI
 * and by the server's last-use records, so both take the same lock.
 * Errors in *error_r stay valid until apppass_edit_end().
 */
struct apppass_edit {
    char *path;
    int lock_fd;
    char **lines; /* without '\n' */
    size_t n, cap;
    bool existed;
    bool busy; /* nowait, and someone else holds the lock */
    struct stat st;
    char error[512];
};

/* Locks path.lock (created if needed) and reads path (a missing file is
 * empty). Returns 0, or -1 with *error_r. With nowait, a lock held by
 * another process is a failure with busy set, not a wait. */
int apppass_edit_begin(struct apppass_edit *e, const char *path, bool nowait, const char **error_r);
/* Appends a copy of line. Returns 0, or -1 when out of memory. */
int apppass_edit_append(struct apppass_edit *e, const char *line);
/* Writes a temporary file (the old one's owner and mode, else 0600),
 * fsyncs it, renames it over path and fsyncs the folder. Returns 0, or
 * -1 with *error_r. */
int apppass_edit_commit(struct apppass_edit *e, const char **error_r);
/* Frees everything and releases the lock. */
void apppass_edit_end(struct apppass_edit *e);

#endif
