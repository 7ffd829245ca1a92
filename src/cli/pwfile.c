/*
 * Edits of the passwd-file shared by the `postern` subcommands that change
 * accounts (user, totp). The file is changed under an exclusive lock
 * (FILE.lock) and replaced atomically (write a temporary file, fsync,
 * rename, fsync the folder), so the server, which reads it without
 * locking, always sees either the old or the new file. Lines other than
 * the one changed, comments included, are kept as they are.
 */
#include "cli/pwfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "auth/passdb.h"
#include "cli/cli.h"
#include "lib/fsync.h"

void pwfile_edit_free(struct pwfile_edit *pe)
{
    for (size_t i = 0; i < pe->n; i++)
        free(pe->lines[i]);
    free(pe->lines);
    free(pe->path);
    if (pe->lock_fd >= 0)
        close(pe->lock_fd); /* releases the lock */
}

int pwfile_add_line(struct pwfile_edit *pe, char *line)
{
    if (pe->n == pe->cap) {
        size_t cap = pe->cap == 0 ? 64 : pe->cap * 2;
        char **l = realloc(pe->lines, cap * sizeof(*l));
        if (l == NULL)
            return -1;
        pe->lines = l;
        pe->cap = cap;
    }
    pe->lines[pe->n++] = line;
    return 0;
}

/* Locks and reads the passwd-file (a missing one counts as empty). */
int pwfile_edit_open(const struct config *cfg, struct pwfile_edit *pe)
{
    const char *error;
    char lock_path[4200];
    FILE *f;

    memset(pe, 0, sizeof(*pe));
    pe->lock_fd = -1;
    pe->path = passwd_file_path(cfg->passdb, cfg->dir, &error);
    if (pe->path == NULL) {
        cli_error("%s: %s", config_where(cfg, "auth", "passdb"), error);
        return EXIT_CONFIG;
    }
    snprintf(lock_path, sizeof(lock_path), "%s.lock", pe->path);
    pe->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (pe->lock_fd < 0 || flock(pe->lock_fd, LOCK_EX) < 0) {
        cli_error("cannot lock %s: %s", lock_path, strerror(errno));
        return EXIT_TEMPFAIL;
    }
    f = fopen(pe->path, "re");
    if (f == NULL) {
        if (errno != ENOENT) {
            cli_error("cannot read %s: %s", pe->path, strerror(errno));
            return EXIT_IOERR;
        }
        return 0;
    }
    pe->existed = fstat(fileno(f), &pe->st) == 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        if (pwfile_add_line(pe, line) < 0) {
            free(line);
            fclose(f);
            cli_error("out of memory");
            return EXIT_SOFTWARE;
        }
        line = NULL;
        cap = 0;
    }
    free(line);
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        cli_error("cannot read %s", pe->path);
        return EXIT_IOERR;
    }
    return 0;
}

int pwfile_edit_commit(struct pwfile_edit *pe)
{
    char tmp[4200];
    int fd;

    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", pe->path, (int)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        cli_error("cannot create %s: %s", tmp, strerror(errno));
        return EXIT_CANTCREAT;
    }
    /* The new file gets the old one's owner and mode (the server's user
     * must still be able to read it). */
    if (pe->existed) {
        if (fchown(fd, pe->st.st_uid, pe->st.st_gid) < 0) {
            /* Not root: the file stays ours, which is who edits it anyway. */
        }
        fchmod(fd, pe->st.st_mode & 07777);
    }
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        unlink(tmp);
        cli_error("out of memory");
        return EXIT_SOFTWARE;
    }
    for (size_t i = 0; i < pe->n; i++) {
        if (pe->lines[i] != NULL)
            fprintf(f, "%s\n", pe->lines[i]);
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0 || ferror(f)) {
        fclose(f);
        unlink(tmp);
        cli_error("cannot write %s: %s", tmp, strerror(errno));
        return EXIT_IOERR;
    }
    fclose(f);
    if (rename(tmp, pe->path) < 0) {
        unlink(tmp);
        cli_error("cannot replace %s: %s", pe->path, strerror(errno));
        return EXIT_IOERR;
    }
    fsync_parent(pe->path);
    return 0;
}

/* Index of the line for user name, or -1. */
ssize_t pwfile_find_user(const struct pwfile_edit *pe, const char *name)
{
    size_t len = strlen(name);

    for (size_t i = 0; i < pe->n; i++) {
        const char *l = pe->lines[i];
        if (l != NULL && strncmp(l, name, len) == 0 && (l[len] == ':' || l[len] == '\0'))
            return (ssize_t)i;
    }
    return -1;
}

/* Splits a line into its 7 colon fields and the rest (extra fields, which
 * may contain colons themselves). Returns the number of fields present. */
int pwfile_split_fields(char *line, char *f[8])
{
    int n = 0;
    char *p = line;

    memset(f, 0, 8 * sizeof(*f));
    while (p != NULL && n < 8) {
        f[n++] = p;
        if (n == 8)
            break;
        char *colon = strchr(p, ':');
        if (colon != NULL)
            *colon++ = '\0';
        p = colon;
    }
    return n;
}

char *pwfile_join_fields(char *f[8])
{
    int last = 7;
    size_t len = 0;

    while (last > 1 && (f[last] == NULL || f[last][0] == '\0'))
        last--;
    for (int i = 0; i <= last; i++)
        len += (f[i] != NULL ? strlen(f[i]) : 0) + 1;
    char *out = malloc(len + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (int i = 0; i <= last; i++) {
        if (i > 0)
            *o++ = ':';
        size_t l = f[i] != NULL ? strlen(f[i]) : 0;
        memcpy(o, f[i] != NULL ? f[i] : "", l);
        o += l;
    }
    *o = '\0';
    return out;
}

char *pwfile_set_extra(const char *line, const char *key, const char *value)
{
    char *copy = strdup(line), *f[8], *extra;
    size_t klen = strlen(key), used = 0, cap;

    if (copy == NULL)
        return NULL;
    pwfile_split_fields(copy, f);
    cap = (f[7] != NULL ? strlen(f[7]) : 0) + klen + (value != NULL ? strlen(value) : 0) + 3;
    extra = malloc(cap);
    if (extra == NULL) {
        free(copy);
        return NULL;
    }
    extra[0] = '\0';
    for (char *t = f[7] != NULL ? strtok(f[7], " ") : NULL; t != NULL; t = strtok(NULL, " ")) {
        if (strncmp(t, key, klen) == 0 && t[klen] == '=')
            continue;
        used += (size_t)snprintf(extra + used, cap - used, "%s%s", used > 0 ? " " : "", t);
    }
    if (value != NULL)
        snprintf(extra + used, cap - used, "%s%s=%s", used > 0 ? " " : "", key, value);
    f[7] = extra;
    char *out = pwfile_join_fields(f);
    free(extra);
    free(copy);
    return out;
}
