/*
 * Changes to the app-passwords file (apppass.h): the CLI adds and revokes,
 * the server records last uses. Both take an exclusive flock on
 * FILE.lock, read the file as it is now, and replace it atomically
 * (temporary file, fsync, rename, fsync of the folder), so a reader
 * without the lock always sees either the old or the new file and no
 * writer loses another's change.
 */
#include "auth/apppass.h"
#include "lib/fsync.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static int fail(struct apppass_edit *e, const char **error_r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct apppass_edit *e, const char **error_r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(e->error, sizeof(e->error), fmt, ap);
    va_end(ap);
    *error_r = e->error;
    return -1;
}

/* The folder of path, into dir (which holds PATH_MAX). */
static void folder_of(const char *path, char *dir, size_t size)
{
    snprintf(dir, size, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, size, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
}

/* A file created by root (the CLI run with sudo) is given to the owner of
 * the state folder, which is the server's user: otherwise the server
 * could neither read the app passwords nor take the lock. */
static void own_like_folder(int fd, const char *path)
{
    char dir[4096];
    struct stat st;

    if (geteuid() != 0)
        return;
    folder_of(path, dir, sizeof(dir));
    if (stat(dir, &st) == 0 && fchown(fd, st.st_uid, st.st_gid) < 0) {
        /* Then it stays root's, as it would without this. */
    }
}

int apppass_edit_append(struct apppass_edit *e, const char *line)
{
    char *copy = strdup(line);

    if (copy == NULL)
        return -1;
    if (e->n == e->cap) {
        size_t cap = e->cap == 0 ? 32 : e->cap * 2;
        char **l = realloc(e->lines, cap * sizeof(*l));
        if (l == NULL) {
            free(copy);
            return -1;
        }
        e->lines = l;
        e->cap = cap;
    }
    e->lines[e->n++] = copy;
    return 0;
}

int apppass_edit_begin(struct apppass_edit *e, const char *path, bool nowait, const char **error_r)
{
    char lock_path[4200];
    struct stat lst;
    FILE *f;

    memset(e, 0, sizeof(*e));
    e->lock_fd = -1;
    e->path = strdup(path);
    if (e->path == NULL)
        return fail(e, error_r, "out of memory");
    if ((size_t)snprintf(lock_path, sizeof(lock_path), "%s.lock", path) >= sizeof(lock_path))
        return fail(e, error_r, "path too long: %s", path);
    e->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (e->lock_fd < 0)
        return fail(e, error_r, "cannot open %s: %s", lock_path, strerror(errno));
    if (fstat(e->lock_fd, &lst) == 0 && lst.st_uid == 0)
        own_like_folder(e->lock_fd, path);
    if (flock(e->lock_fd, LOCK_EX | (nowait ? LOCK_NB : 0)) < 0) {
        e->busy = errno == EWOULDBLOCK;
        return fail(e, error_r, "cannot lock %s: %s", lock_path,
                    e->busy ? "held by another process" : strerror(errno));
    }
    f = fopen(path, "re");
    if (f == NULL) {
        if (errno != ENOENT)
            return fail(e, error_r, "cannot read %s: %s", path, strerror(errno));
        return 0;
    }
    e->existed = fstat(fileno(f), &e->st) == 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int ret = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        if (apppass_edit_append(e, line) < 0) {
            ret = fail(e, error_r, "out of memory");
            break;
        }
    }
    free(line);
    if (ret == 0 && ferror(f))
        ret = fail(e, error_r, "cannot read %s", path);
    fclose(f);
    return ret;
}

int apppass_edit_commit(struct apppass_edit *e, const char **error_r)
{
    char tmp[4200];
    int fd;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%d", e->path, (int)getpid()) >= sizeof(tmp))
        return fail(e, error_r, "path too long: %s", e->path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return fail(e, error_r, "cannot create %s: %s", tmp, strerror(errno));
    /* The server's user must still be able to read the new file. */
    if (e->existed) {
        if (fchown(fd, e->st.st_uid, e->st.st_gid) < 0) {
            /* Not root: the file stays ours, which is who edits it anyway. */
        }
        fchmod(fd, e->st.st_mode & 07777);
    } else {
        own_like_folder(fd, e->path);
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        unlink(tmp);
        return fail(e, error_r, "out of memory");
    }
    for (size_t i = 0; i < e->n; i++) {
        if (e->lines[i] != NULL)
            fprintf(f, "%s\n", e->lines[i]);
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0 || ferror(f)) {
        int err = errno;
        fclose(f);
        unlink(tmp);
        return fail(e, error_r, "cannot write %s: %s", tmp, strerror(err));
    }
    if (fclose(f) != 0) {
        int err = errno;
        unlink(tmp);
        return fail(e, error_r, "cannot write %s: %s", tmp, strerror(err));
    }
    if (rename(tmp, e->path) < 0) {
        int err = errno;
        unlink(tmp);
        return fail(e, error_r, "cannot replace %s: %s", e->path, strerror(err));
    }
    fsync_parent(e->path);
    return 0;
}

void apppass_edit_end(struct apppass_edit *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->lines[i]);
    free(e->lines);
    free(e->path);
    if (e->lock_fd >= 0)
        close(e->lock_fd); /* releases the lock */
    e->lines = NULL;
    e->path = NULL;
    e->n = e->cap = 0;
    e->lock_fd = -1;
}
