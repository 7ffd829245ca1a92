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
#include "cli/pwfile.h"

#define PASSWORD_MIN 8

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

/* Rewrites the extra fields without pop3=/nologin, adding pop3=no if asked. */
static char *set_disabled(const char *line, bool disabled)
{
    char *copy = strdup(line), *f[8], extra[4096];
    size_t used = 0;

    if (copy == NULL)
        return NULL;
    pwfile_split_fields(copy, f);
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
    char *out = pwfile_join_fields(f);
    free(copy);
    return out;
}

static char *set_password(const char *line, const char *hash)
{
    char *copy = strdup(line), *f[8];

    if (copy == NULL)
        return NULL;
    pwfile_split_fields(copy, f);
    f[1] = (char *)hash;
    char *out = pwfile_join_fields(f);
    free(copy);
    return out;
}

static int user_list(const struct config *cfg)
{
    struct pwfile_edit pe;
    int ret = pwfile_edit_open(cfg, &pe);

    if (ret != 0) {
        pwfile_edit_free(&pe);
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
    pwfile_edit_free(&pe);
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
    if (strcmp(verb, "mfa") == 0)
        return cmd_user_mfa(cfg, argc - 1, argv + 1);
    if (argc != 2 ||
        (strcmp(verb, "add") != 0 && strcmp(verb, "passwd") != 0 && strcmp(verb, "del") != 0 &&
         strcmp(verb, "disable") != 0 && strcmp(verb, "enable") != 0)) {
        cli_error("usage: postern user add|passwd|del|disable|enable NAME, user list, "
                  "or user mfa NAME required|optional");
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
    ret = pwfile_edit_open(cfg, &pe);
    if (ret != 0)
        goto out;
    ssize_t i = pwfile_find_user(&pe, name);
    if (strcmp(verb, "add") == 0) {
        if (i >= 0) {
            cli_error("user %s exists already", name);
            ret = EXIT_DATAERR;
            goto out;
        }
        char *line = malloc(strlen(name) + strlen(hash) + 2);
        if (line == NULL || pwfile_add_line(&pe, line) < 0) {
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
    ret = pwfile_edit_commit(&pe);
    if (ret == 0 && strcmp(verb, "del") == 0)
        printf("user %s removed; the mailbox is kept\n", name);
    /* An app password must not outlive its account (nor pass to a new
     * account of the same name). */
    if (ret == 0 && strcmp(verb, "del") == 0)
        ret = cli_apppass_remove_user(cfg, name);
out:
    explicit_bzero(hash, sizeof(hash));
    pwfile_edit_free(&pe);
    return ret;
}
