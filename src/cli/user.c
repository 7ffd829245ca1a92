/*
 * `postern user`: account changes in the passwd-file. The file is changed
 * under an exclusive lock (FILE.lock) and replaced atomically (write a
 * temporary file, fsync, rename, fsync the folder), so the server, which
 * reads it without locking, always sees either the old or the new file.
 * Lines other than the one changed, comments included, are kept as they
 * are.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "auth/auth.h"
#include "auth/hash.h"
#include "auth/passdb.h"
#include "cli/cli.h"

#define PASSWORD_MIN 8

struct pwfile_edit {
    char *path;
    int lock_fd;
    char **lines; /* without '\n' */
    size_t n, cap;
    struct stat st;
    bool existed;
};

static void edit_free(struct pwfile_edit *pe)
{
    for (size_t i = 0; i < pe->n; i++)
        free(pe->lines[i]);
    free(pe->lines);
    free(pe->path);
    if (pe->lock_fd >= 0)
        close(pe->lock_fd); /* releases the lock */
}

static int add_line(struct pwfile_edit *pe, char *line)
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
static int edit_open(const struct config *cfg, struct pwfile_edit *pe)
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
        if (add_line(pe, line) < 0) {
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

static int edit_commit(struct pwfile_edit *pe)
{
    char tmp[4200], dir[4200];
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
    snprintf(dir, sizeof(dir), "%s", pe->path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL) {
        *slash = '\0';
        int dfd = open(dir[0] != '\0' ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return 0;
}

/* Index of the line for user name, or -1. */
static ssize_t find_user(const struct pwfile_edit *pe, const char *name)
{
    size_t len = strlen(name);

    for (size_t i = 0; i < pe->n; i++) {
        const char *l = pe->lines[i];
        if (l != NULL && strncmp(l, name, len) == 0 && (l[len] == ':' || l[len] == '\0'))
            return (ssize_t)i;
    }
    return -1;
}

/* New names are kept to characters that are safe in paths, logs and
 * addresses; existing lines may use anything the passwd-file allows. */
static bool valid_new_name(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > PASSDB_USER_MAX || name[0] == '.' || name[0] == '-')
        return false;
    for (const char *p = name; *p != '\0'; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-' || c == '@' || c == '+'))
            return false;
    }
    return true;
}

static int read_line_noecho(const char *prompt, char *buf, size_t size)
{
    struct termios old, quiet;
    bool tty = tcgetattr(STDIN_FILENO, &old) == 0;

    fputs(prompt, stderr);
    fflush(stderr);
    if (tty) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *r = fgets(buf, (int)size, stdin);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fputc('\n', stderr);
    }
    return r == NULL ? -1 : 0;
}

static void chomp(char *s)
{
    s[strcspn(s, "\r\n")] = '\0';
}

/*
 * The password from a prompt (twice) on a terminal, else the first line of
 * stdin. Checked against the policy; a refusal says why.
 */
static int read_password(const char *name, char *pw, size_t size)
{
    char again[AUTH_SECRET_MAX + 2];

    if (isatty(STDIN_FILENO)) {
        char prompt[300];
        snprintf(prompt, sizeof(prompt), "New password for %s: ", name);
        if (read_line_noecho(prompt, pw, size) < 0 ||
            read_line_noecho("Repeat it: ", again, sizeof(again)) < 0) {
            cli_error("no password given");
            return EXIT_DATAERR;
        }
        chomp(pw);
        chomp(again);
        bool same = strcmp(pw, again) == 0;
        explicit_bzero(again, sizeof(again));
        if (!same) {
            cli_error("the two passwords differ");
            return EXIT_DATAERR;
        }
    } else if (fgets(pw, (int)size, stdin) == NULL) {
        cli_error("no password on standard input");
        return EXIT_DATAERR;
    } else if (strchr(pw, '\n') == NULL && !feof(stdin)) {
        cli_error("password too long (at most %d characters)", AUTH_SECRET_MAX - 1);
        return EXIT_DATAERR;
    }
    chomp(pw);
    if (strlen(pw) < PASSWORD_MIN) {
        cli_error("password refused: shorter than %d characters", PASSWORD_MIN);
        return EXIT_DATAERR;
    }
    if (strcmp(pw, name) == 0) {
        cli_error("password refused: it is the user name");
        return EXIT_DATAERR;
    }
    return 0;
}

static int make_hash(const char *name, char *hash, size_t size)
{
    char pw[AUTH_SECRET_MAX + 2];
    const char *error;
    int ret = read_password(name, pw, sizeof(pw));

    if (ret == 0 && hash_make_yescrypt(pw, hash, size, &error) < 0) {
        cli_error("%s", error);
        ret = EXIT_SOFTWARE;
    }
    explicit_bzero(pw, sizeof(pw));
    return ret;
}

/* Splits a line into its 7 colon fields and the rest (extra fields, which
 * may contain colons themselves). Returns the number of fields present. */
static int split_fields(char *line, char *f[8])
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

static char *join_fields(char *f[8])
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

/* Rewrites the extra fields without pop3=/nologin, adding pop3=no if asked. */
static char *set_disabled(const char *line, bool disabled)
{
    char *copy = strdup(line), *f[8], extra[4096];
    size_t used = 0;

    if (copy == NULL)
        return NULL;
    split_fields(copy, f);
    extra[0] = '\0';
    for (char *t = f[7] != NULL ? strtok(f[7], " ") : NULL; t != NULL; t = strtok(NULL, " ")) {
        if (strncmp(t, "pop3=", 5) == 0 || strcmp(t, "nologin") == 0)
            continue;
        used +=
            (size_t)snprintf(extra + used, sizeof(extra) - used, "%s%s", used > 0 ? " " : "", t);
        if (used >= sizeof(extra)) {
            free(copy);
            return NULL;
        }
    }
    if (disabled)
        snprintf(extra + used, sizeof(extra) - used, "%spop3=no", used > 0 ? " " : "");
    f[7] = extra;
    char *out = join_fields(f);
    free(copy);
    return out;
}

static char *set_password(const char *line, const char *hash)
{
    char *copy = strdup(line), *f[8];

    if (copy == NULL)
        return NULL;
    split_fields(copy, f);
    f[1] = (char *)hash;
    char *out = join_fields(f);
    free(copy);
    return out;
}

static int user_list(const struct config *cfg)
{
    struct pwfile_edit pe;
    int ret = edit_open(cfg, &pe);

    if (ret != 0) {
        edit_free(&pe);
        return ret;
    }
    for (size_t i = 0; i < pe.n; i++) {
        struct passwd_line pl;
        const char *error;
        char *copy = strdup(pe.lines[i]);
        if (copy == NULL)
            break;
        int r = passwd_line_parse(copy, &pl, &error);
        if (r > 0) {
            const char *scheme = pl.scheme == HASH_PLAIN ? "PLAIN" : "CRYPT";
            printf("%-32s %-6s %s\n", pl.user, scheme, pl.pop3_disabled ? "disabled" : "enabled");
        } else if (r < 0) {
            fprintf(stderr, "postern: %s:%zu: %s\n", pe.path, i + 1, error);
        }
        free(copy);
    }
    edit_free(&pe);
    return 0;
}

int cmd_user(const struct config *cfg, int argc, char **argv)
{
    struct pwfile_edit pe;
    char hash[512];
    const char *verb = argc > 0 ? argv[0] : "";
    const char *name = argc > 1 ? argv[1] : NULL;
    int ret;

    if (strcmp(verb, "list") == 0 && argc == 1)
        return user_list(cfg);
    if (argc != 2 ||
        (strcmp(verb, "add") != 0 && strcmp(verb, "passwd") != 0 && strcmp(verb, "del") != 0 &&
         strcmp(verb, "disable") != 0 && strcmp(verb, "enable") != 0)) {
        cli_error("usage: postern user add|passwd|del|disable|enable NAME, or user list");
        return EXIT_USAGE;
    }
    if (strcmp(verb, "add") == 0 && !valid_new_name(name)) {
        cli_error("invalid user name \"%s\": use letters, digits and . _ - @ +", name);
        return EXIT_DATAERR;
    }
    /* Ask for the password before taking the lock: a prompt must not
     * block other edits. */
    if (strcmp(verb, "add") == 0 || strcmp(verb, "passwd") == 0) {
        ret = make_hash(name, hash, sizeof(hash));
        if (ret != 0)
            return ret;
    }
    ret = edit_open(cfg, &pe);
    if (ret != 0)
        goto out;
    ssize_t i = find_user(&pe, name);
    if (strcmp(verb, "add") == 0) {
        if (i >= 0) {
            cli_error("user %s exists already", name);
            ret = EXIT_DATAERR;
            goto out;
        }
        char *line = malloc(strlen(name) + strlen(hash) + 2);
        if (line == NULL || add_line(&pe, line) < 0) {
            free(line);
            ret = EXIT_SOFTWARE;
            goto out;
        }
        sprintf(line, "%s:%s", name, hash);
    } else {
        if (i < 0) {
            cli_error("no user %s in %s", name, pe.path);
            ret = EXIT_NOUSER;
            goto out;
        }
        char *line = NULL;
        if (strcmp(verb, "passwd") == 0)
            line = set_password(pe.lines[i], hash);
        else if (strcmp(verb, "disable") == 0 || strcmp(verb, "enable") == 0)
            line = set_disabled(pe.lines[i], strcmp(verb, "disable") == 0);
        if (strcmp(verb, "del") != 0 && line == NULL) {
            cli_error("cannot rewrite the line for %s", name);
            ret = EXIT_SOFTWARE;
            goto out;
        }
        free(pe.lines[i]);
        pe.lines[i] = line; /* NULL: deleted */
    }
    ret = edit_commit(&pe);
    if (ret == 0 && strcmp(verb, "del") == 0)
        printf("user %s removed; the mailbox is kept\n", name);
    /* An app password must not outlive its account (nor pass to a new
     * account of the same name). */
    if (ret == 0 && strcmp(verb, "del") == 0)
        ret = cli_apppass_remove_user(cfg, name);
out:
    explicit_bzero(hash, sizeof(hash));
    edit_free(&pe);
    return ret;
}
