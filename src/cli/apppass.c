/*
 * `postern app-password add|list|revoke`: per-device passwords a user can
 * give a mail client instead of the account password, and that can be
 * revoked one at a time (src/auth/apppass.h has the format and why it is
 * a salted SHA-256). The secret is generated here, printed once and never
 * stored; only its hash is.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/crypto.h>

#include "auth/apppass.h"
#include "auth/passdb.h"
#include "cli/cli.h"

/* 1 when the passwd-file has an account called name, 0 when not, or an
 * exit status (negated) when the file cannot be read. */
static int account_exists(const struct config *cfg, const char *name)
{
    const char *error;
    char *path = passwd_file_path(cfg->passdb, cfg->dir, &error);
    char *line = NULL;
    size_t cap = 0;
    int found = 0;
    FILE *f;

    if (path == NULL) {
        cli_error("%s: %s", config_where(cfg, "auth", "passdb"), error);
        return -EXIT_CONFIG;
    }
    f = fopen(path, "re");
    if (f == NULL) {
        if (errno == ENOENT) {
            free(path);
            return 0;
        }
        cli_error("cannot read %s: %s", path, strerror(errno));
        free(path);
        return -EXIT_IOERR;
    }
    while (found == 0 && getline(&line, &cap, f) >= 0) {
        struct passwd_line pl;
        if (passwd_line_parse(line, &pl, &error) > 0 && strcmp(pl.user, name) == 0)
            found = 1;
    }
    free(line);
    fclose(f);
    free(path);
    return found;
}

/*
 * Locks and reads the app-passwords file. With create, the state folder
 * is made when missing (as posternd does at start); without, a missing
 * folder means no app passwords, and e is left empty and unlocked.
 */
static int open_file(const struct config *cfg, struct apppass_edit *e, bool create)
{
    const char *error;
    struct stat st;
    char *path;

    memset(e, 0, sizeof(*e));
    e->lock_fd = -1;
    if (create && mkdir(cfg->state_dir, 0700) < 0 && errno != EEXIST) {
        cli_error("%s: cannot create %s: %s", config_where(cfg, "server", "state_dir"),
                  cfg->state_dir, strerror(errno));
        return EXIT_CANTCREAT;
    }
    if (!create && stat(cfg->state_dir, &st) < 0 && errno == ENOENT)
        return 0;
    path = apppass_file_path(cfg->state_dir);
    if (path == NULL) {
        cli_error("out of memory");
        return EXIT_SOFTWARE;
    }
    int r = apppass_edit_begin(e, path, false, &error);
    free(path);
    if (r < 0) {
        cli_error("%s", error);
        return EXIT_IOERR;
    }
    return 0;
}

/* Each line that belongs to name (and label, when not NULL) is passed to
 * fn (when not NULL); lines that do not parse are left alone, and named
 * on stderr with warn. Returns the number of lines for name (and label). */
static size_t for_each(struct apppass_edit *e, const char *name, const char *label, bool warn,
                       void (*fn)(struct apppass_edit *e, size_t i, const struct apppass_line *l))
{
    size_t n = 0;

    for (size_t i = 0; i < e->n; i++) {
        struct apppass_line l;
        const char *error;
        if (e->lines[i] == NULL)
            continue;
        char *copy = strdup(e->lines[i]);
        if (copy == NULL)
            continue;
        int r = apppass_line_parse(copy, &l, &error);
        if (r < 0 && warn)
            fprintf(stderr, "postern: %s:%zu: %s; line ignored\n", e->path, i + 1, error);
        if (r > 0 && strcmp(l.user, name) == 0 && (label == NULL || strcmp(l.label, label) == 0)) {
            if (fn != NULL)
                fn(e, i, &l);
            n++;
        }
        free(copy);
    }
    return n;
}

static void drop_line(struct apppass_edit *e, size_t i, const struct apppass_line *l)
{
    (void)l;
    free(e->lines[i]);
    e->lines[i] = NULL;
}

static void iso_time(time_t t, char *buf, size_t size)
{
    struct tm tm;

    if (t == 0)
        snprintf(buf, size, "never");
    else if (gmtime_r(&t, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "%lld", (long long)t);
}

static void print_line(struct apppass_edit *e, size_t i, const struct apppass_line *l)
{
    char created[32], used[32];

    (void)e;
    (void)i;
    iso_time(l->created, created, sizeof(created));
    iso_time(l->last_used, used, sizeof(used));
    printf("%-32s %-20s %s\n", l->label, created, used);
}

static int no_user(const struct config *cfg, const char *name)
{
    int r = account_exists(cfg, name);

    if (r < 0)
        return -r;
    if (r == 0) {
        cli_error("no user %s in the passwd-file", name);
        return EXIT_NOUSER;
    }
    return 0;
}

static int app_add(const struct config *cfg, const char *name, const char *label)
{
    struct apppass_edit e;
    struct apppass_line l;
    char password[APPPASS_LEN + 1], shown[APPPASS_SHOWN_LEN + 1], line[1024];
    const char *error;
    int ret;

    if (!apppass_label_valid(label)) {
        cli_error("invalid label \"%s\": use 1 to %d letters, digits and . _ -", label,
                  APPPASS_LABEL_MAX);
        return EXIT_DATAERR;
    }
    ret = open_file(cfg, &e, true);
    if (ret != 0)
        goto out;
    /* Checked under the lock: `user del` removes the account first, then
     * its app passwords under this lock, so none can be left behind for
     * a later account of the same name. */
    ret = no_user(cfg, name);
    if (ret != 0)
        goto out;
    if (for_each(&e, name, label, false, NULL) > 0) {
        cli_error("%s has an app password labelled %s already (revoke it first)", name, label);
        ret = EXIT_DATAERR;
        goto out;
    }
    if (apppass_generate(name, label, time(NULL), password, shown, &l) < 0) {
        cli_error("the random generator failed");
        ret = EXIT_SOFTWARE;
        goto out;
    }
    if (apppass_line_format(&l, line, sizeof(line)) < 0 || apppass_edit_append(&e, line) < 0) {
        cli_error("out of memory");
        ret = EXIT_SOFTWARE;
        goto out;
    }
    if (apppass_edit_commit(&e, &error) < 0) {
        cli_error("%s", error);
        ret = EXIT_IOERR;
        goto out;
    }
    /* The secret alone on stdout, so that a script can capture it; the
     * notice on stderr. */
    printf("%s\n", shown);
    fflush(stdout);
    fprintf(stderr,
            "postern: app password %s for %s: it will not be shown again; "
            "type it with or without the dashes\n",
            label, name);
out:
    OPENSSL_cleanse(password, sizeof(password));
    OPENSSL_cleanse(shown, sizeof(shown));
    apppass_edit_end(&e);
    return ret;
}

static int app_list(const struct config *cfg, const char *name)
{
    struct apppass_edit e;
    int ret = open_file(cfg, &e, false);

    /* None is fine, for an account that exists. */
    if (ret == 0 && for_each(&e, name, NULL, true, print_line) == 0)
        ret = no_user(cfg, name);
    apppass_edit_end(&e);
    return ret;
}

static int app_revoke(const struct config *cfg, const char *name, const char *label)
{
    struct apppass_edit e;
    const char *error;
    int ret = open_file(cfg, &e, false);

    if (ret != 0)
        goto out;
    if (for_each(&e, name, label, false, drop_line) == 0) {
        cli_error("%s has no app password labelled %s", name, label);
        ret = EXIT_DATAERR;
        goto out;
    }
    if (apppass_edit_commit(&e, &error) < 0) {
        cli_error("%s", error);
        ret = EXIT_IOERR;
        goto out;
    }
    printf("app password %s of %s revoked\n", label, name);
out:
    apppass_edit_end(&e);
    return ret;
}

int cli_apppass_remove_user(const struct config *cfg, const char *name)
{
    struct apppass_edit e;
    const char *error;
    int ret = open_file(cfg, &e, false);
    size_t n;

    if (ret == 0 && (n = for_each(&e, name, NULL, false, drop_line)) > 0) {
        if (apppass_edit_commit(&e, &error) < 0) {
            cli_error("%s", error);
            ret = EXIT_IOERR;
        } else {
            printf("%zu app password%s of %s removed\n", n, n == 1 ? "" : "s", name);
        }
    }
    apppass_edit_end(&e);
    return ret;
}

int cmd_app_password(const struct config *cfg, int argc, char **argv)
{
    const char *verb = argc > 0 ? argv[0] : "";

    if (strcmp(verb, "add") == 0 && argc == 3)
        return app_add(cfg, argv[1], argv[2]);
    if (strcmp(verb, "list") == 0 && argc == 2)
        return app_list(cfg, argv[1]);
    if (strcmp(verb, "revoke") == 0 && argc == 3)
        return app_revoke(cfg, argv[1], argv[2]);
    cli_error("usage: postern app-password add NAME LABEL | list NAME | revoke NAME LABEL");
    return EXIT_USAGE;
}
