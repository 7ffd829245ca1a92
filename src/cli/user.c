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
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>
#include <wchar.h>
#include <wctype.h>

#include <pwquality.h>

#include "auth/auth.h"
#include "auth/hash.h"
#include "auth/passdb.h"
#include "auth/scram.h"
#include "cli/cli.h"
#include "cli/pwfile.h"
#include "lib/str.h"

/* The floor of the policy: the site's pwquality.conf may raise it, never
 * lower it. */
#define PASSWORD_MIN 12

/* What --scheme accepts (any case); hash_make() knows each of them. */
static const char *const schemes[] = {
    "yescrypt", "sha512-crypt", "blf-crypt", "argon2id", "scram-sha-256", "plain",
};

struct user_opts {
    const char *scheme; /* NULL: yescrypt */
    int scram;          /* 1 --scram, 0 --no-scram, -1 neither */
};

static bool scheme_is(const char *scheme, const char *name)
{
    return scheme != NULL && str_eq_nocase(scheme, strlen(scheme), name);
}

static bool is_plain(const char *scheme)
{
    return scheme_is(scheme, "plain");
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

/* pwquality will not check a shorter word. */
#define CORE_MIN 6
/* What guessing rules bolt on to a word: "1", "!", "123", "2024!". A longer
 * addition is a secret of its own. */
#define ADDED_MAX 6

/*
 * Whether the character at s[0..n) is a letter; *size gets its length in
 * bytes. UTF-8 is read with glibc's built-in C.UTF-8 locale, whatever the
 * user's, so that "Password2024€" is a word with symbols added like
 * "Password2024!". Bytes that are not UTF-8 count as letters: they end the
 * padding rather than make a core of what may be none.
 */
static bool letter_at(const char *s, size_t n, size_t *size)
{
    static locale_t utf8;
    unsigned char c = (unsigned char)s[0];

    *size = 1;
    if (c < 0x80)
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (utf8 == (locale_t)0)
        utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (utf8 == (locale_t)0)
        return true;
    locale_t old = uselocale(utf8);
    mbstate_t st = {0};
    wchar_t wc;
    size_t r = mbrtowc(&wc, s, n, &st);
    uselocale(old);
    if (r == 0 || r > n)
        return true;
    *size = r;
    return iswalpha_l((wint_t)wc, utf8) != 0;
}

/*
 * pwquality judges the password as a whole, and cracklib lets a dictionary
 * word through once enough digits or symbols are added to it:
 * "Password2024!", "Welcome2025!", "p@ssw0rd1234" pass. Those are the
 * first guesses of every password sprayer, so when at most ADDED_MAX such
 * characters surround it, what lies between the first and the last letter
 * must pass on its own, with '@' and '$' read as the letters they stand
 * for (cracklib already reads 0, 1, 3 and 5 so).
 */
static int check_core(const char *name, const char *pw, pwquality_settings_t *site)
{
    size_t len = strlen(pw), first = 0, last = len, size, added = 0;
    char core[AUTH_SECRET_MAX + 2];
    char msg[PWQ_MAX_ERROR_MESSAGE_LEN];
    void *aux = NULL;
    int r;

    while (first < len && !letter_at(pw + first, len - first, &size)) {
        first += size;
        added++;
    }
    while (last > first) {
        /* Back to the start of the last character. */
        size_t k = last - 1;
        while (k > first && ((unsigned char)pw[k] & 0xc0) == 0x80)
            k--;
        if (letter_at(pw + k, last - k, &size) || k + size != last)
            break;
        last = k;
        added++;
    }
    /* Nothing added, too much added, or no word worth a check: pwquality
     * has said all there is. */
    if (first == 0 && last == len)
        return 0;
    if (added > ADDED_MAX || last - first < CORE_MIN)
        return 0;
    for (size_t i = first; i < last; i++)
        core[i - first] = pw[i] == '@' ? 'a' : pw[i] == '$' ? 's' : pw[i];
    core[last - first] = '\0';

    /* pwquality's defaults, not the site's file: this is about the word,
     * and the file's length and class rules were met by the whole. Only
     * the site's dictionary is the site's. */
    pwquality_settings_t *pwq = pwquality_default_settings();
    const char *dict = NULL;
    if (pwq == NULL) {
        explicit_bzero(core, sizeof(core));
        cli_error("out of memory");
        return EXIT_SOFTWARE;
    }
    if (pwquality_get_str_value(site, PWQ_SETTING_DICT_PATH, &dict) == 0 && dict != NULL)
        pwquality_set_str_value(pwq, PWQ_SETTING_DICT_PATH, dict);
    pwquality_set_int_value(pwq, PWQ_SETTING_MIN_LENGTH, CORE_MIN);
    pwquality_set_int_value(pwq, PWQ_SETTING_DICT_CHECK, 1);
    pwquality_set_int_value(pwq, PWQ_SETTING_USER_CHECK, 1);
    r = pwquality_check(pwq, core, NULL, name, &aux);
    explicit_bzero(core, sizeof(core));
    if (r < 0)
        cli_error("password refused: it is a weak word with digits or symbols added: %s",
                  pwquality_strerror(msg, sizeof(msg), r, aux));
    pwquality_free_settings(pwq);
    return r < 0 ? EXIT_DATAERR : 0;
}

/*
 * libpwquality with the site's pwquality.conf (as PAM applies it), at
 * least PASSWORD_MIN characters, the cracklib dictionary check, and the
 * user name check; then check_core(). A refusal says why, in pwquality's
 * words where it is pwquality's.
 */
static int check_policy(const char *name, const char *pw)
{
    pwquality_settings_t *pwq = pwquality_default_settings();
    char msg[PWQ_MAX_ERROR_MESSAGE_LEN];
    void *aux = NULL;
    int minlen = 0, r;

    if (pwq == NULL) {
        cli_error("out of memory");
        return EXIT_SOFTWARE;
    }
    /* A missing file is the usual case; a broken one is reported and the
     * defaults below apply, as pam_pwquality does. */
    r = pwquality_read_config(pwq, NULL, &aux);
    if (r != 0 && r != PWQ_ERROR_CFGFILE_OPEN)
        fprintf(stderr, "postern: warning: password policy file: %s\n",
                pwquality_strerror(msg, sizeof(msg), r, aux));
    aux = NULL;
    if (pwquality_get_int_value(pwq, PWQ_SETTING_MIN_LENGTH, &minlen) != 0 || minlen < PASSWORD_MIN)
        pwquality_set_int_value(pwq, PWQ_SETTING_MIN_LENGTH, PASSWORD_MIN);
    pwquality_set_int_value(pwq, PWQ_SETTING_DICT_CHECK, 1);
    pwquality_set_int_value(pwq, PWQ_SETTING_USER_CHECK, 1);
    r = pwquality_check(pwq, pw, NULL, name, &aux);
    if (r < 0)
        cli_error("password refused: %s", pwquality_strerror(msg, sizeof(msg), r, aux));
    r = r < 0 ? EXIT_DATAERR : check_core(name, pw, pwq);
    pwquality_free_settings(pwq);
    return r;
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
    return check_policy(name, pw);
}

/* The secrets for a new password: the password field and, when asked,
 * the scram= extra field ("" when not). */
struct new_secret {
    char hash[1024]; /* what passdb_entry.hash holds */
    char scram[256]; /* as passdb_entry.scram */
};

static int make_secret(const char *name, const struct user_opts *o, bool want_scram,
                       struct new_secret *ns)
{
    char pw[AUTH_SECRET_MAX + 2];
    const char *error;
    int ret = read_password(name, pw, sizeof(pw));

    if (ret != 0)
        goto out;
    if (is_plain(o->scheme) && strchr(pw, ':') != NULL) {
        cli_error("password refused: a PLAIN password cannot contain ':' (the field separator)");
        ret = EXIT_DATAERR;
        goto out;
    }
    if (hash_make(o->scheme, pw, ns->hash, sizeof(ns->hash), &error) < 0) {
        cli_error("cannot store the password: %s", error);
        ret = strcmp(error, "password too long") == 0 ? EXIT_DATAERR : EXIT_SOFTWARE;
        goto out;
    }
    if (want_scram) {
        struct scram_keys k;
        memcpy(ns->scram, "scram=", 6);
        if (scram_keys_make(pw, strlen(pw), HASH_SCRAM_ITER, &k) < 0 ||
            scram_keys_format(&k, ns->scram + 6, sizeof(ns->scram) - 6) < 0) {
            cli_error("cannot derive the SCRAM-SHA-256 keys");
            ret = EXIT_SOFTWARE;
        }
        explicit_bzero(&k, sizeof(k));
    }
out:
    explicit_bzero(pw, sizeof(pw));
    return ret;
}

/* Rewrites the extra fields without the ones named in drop (a name ending
 * in '=' drops every key=value of that key), then appends add if not NULL.
 * The order of the other fields is kept. */
static char *edit_extra(const char *line, const char *const *drop, const char *add)
{
    char *copy = strdup(line), *f[8], extra[4096];
    size_t used = 0;

    if (copy == NULL)
        return NULL;
    pwfile_split_fields(copy, f);
    extra[0] = '\0';
    for (char *t = f[7] != NULL ? strtok(f[7], " ") : NULL; t != NULL; t = strtok(NULL, " ")) {
        bool dropped = false;
        for (const char *const *d = drop; *d != NULL && !dropped; d++) {
            size_t n = strlen(*d);
            dropped = (*d)[n - 1] == '=' ? strncmp(t, *d, n) == 0 : strcmp(t, *d) == 0;
        }
        if (dropped)
            continue;
        used +=
            (size_t)snprintf(extra + used, sizeof(extra) - used, "%s%s", used > 0 ? " " : "", t);
        if (used >= sizeof(extra)) {
            free(copy);
            return NULL;
        }
    }
    if (add != NULL) {
        used +=
            (size_t)snprintf(extra + used, sizeof(extra) - used, "%s%s", used > 0 ? " " : "", add);
        if (used >= sizeof(extra)) {
            free(copy);
            return NULL;
        }
    }
    f[7] = extra;
    char *out = pwfile_join_fields(f);
    free(copy);
    return out;
}

static char *set_disabled(const char *line, bool disabled)
{
    static const char *const drop[] = {"pop3=", "nologin", NULL};

    return edit_extra(line, drop, disabled ? "pop3=no" : NULL);
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
            printf("%-32s %-13s %s%s\n", pl.user, hash_scheme_name(pl.scheme),
                   pl.pop3_disabled ? "disabled" : "enabled", pl.scram != NULL ? " scram" : "");
        } else if (r < 0) {
            fprintf(stderr, "postern: %s:%zu: %s\n", pe.path, i + 1, error);
        }
        explicit_bzero(copy, strlen(pe.lines[i]));
        free(copy);
    }
    pwfile_edit_free(&pe);
    return 0;
}

/* Options of add and passwd, anywhere after the verb. Returns the number
 * of names left in names[] (at most 2 kept), or -1 after an error. */
static int parse_options(int argc, char **argv, struct user_opts *o, const char *names[2])
{
    int n = 0;

    o->scheme = NULL;
    o->scram = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--scram") == 0) {
            o->scram = 1;
        } else if (strcmp(a, "--no-scram") == 0) {
            o->scram = 0;
        } else if (strcmp(a, "--scheme") == 0 || strncmp(a, "--scheme=", 9) == 0) {
            if (a[8] == '=')
                o->scheme = a + 9;
            else if (i + 1 < argc)
                o->scheme = argv[++i];
            else {
                cli_error("--scheme needs a value");
                return -1;
            }
            bool known = false;
            for (size_t k = 0; k < sizeof(schemes) / sizeof(schemes[0]); k++)
                known = known || scheme_is(o->scheme, schemes[k]);
            if (!known) {
                cli_error("unknown scheme \"%s\": use yescrypt (the default), sha512-crypt, "
                          "blf-crypt, argon2id, scram-sha-256 or plain",
                          o->scheme);
                return -1;
            }
        } else if (a[0] == '-' && a[1] == '-') {
            cli_error("unknown option %s", a);
            return -1;
        } else {
            if (n < 2)
                names[n] = a;
            n++;
        }
    }
    return n;
}

/* The account line after `user passwd`: the new password, and the scram=
 * field regenerated when the account had SCRAM keys (in scram= or as its
 * password), since keys of the old password would keep it working. */
static char *passwd_line(const char *old, const struct user_opts *o, const struct new_secret *ns)
{
    static const char *const drop[] = {"scram=", NULL};
    struct passwd_line pl;
    const char *error;
    char *copy = strdup(old);
    bool had_scram = false;

    if (copy == NULL)
        return NULL;
    if (passwd_line_parse(copy, &pl, &error) > 0)
        had_scram = pl.scram != NULL || pl.scheme == HASH_SCRAM;
    explicit_bzero(copy, strlen(old));
    free(copy);
    bool scram = o->scram == 1 || (o->scram == -1 && had_scram);
    /* Keys in the password field make a scram= copy pointless. */
    if (scheme_is(o->scheme, "scram-sha-256"))
        scram = false;
    char *line = set_password(old, ns->hash);
    if (line == NULL)
        return NULL;
    char *out = edit_extra(line, drop, scram ? ns->scram : NULL);
    explicit_bzero(line, strlen(line));
    free(line);
    return out;
}

int cmd_user(const struct config *cfg, int argc, char **argv)
{
    struct pwfile_edit pe;
    struct new_secret ns = {0};
    struct user_opts o = {NULL, -1};
    const char *names[2] = {NULL, NULL};
    const char *verb = argc > 0 ? argv[0] : "";
    bool add = strcmp(verb, "add") == 0, passwd = strcmp(verb, "passwd") == 0;
    int ret, n;

    if (strcmp(verb, "list") == 0 && argc == 1)
        return user_list(cfg);
    if (strcmp(verb, "mfa") == 0)
        return cmd_user_mfa(cfg, argc - 1, argv + 1);
    if (add || passwd) {
        if ((n = parse_options(argc, argv, &o, names)) < 0)
            return EXIT_USAGE;
    } else {
        n = argc - 1;
        names[0] = argc > 1 ? argv[1] : NULL;
    }
    const char *name = names[0];
    if (n != 1 || (!add && !passwd && strcmp(verb, "del") != 0 && strcmp(verb, "disable") != 0 &&
                   strcmp(verb, "enable") != 0)) {
        cli_error("usage: postern user add|passwd NAME [--scheme S] [--scram|--no-scram], "
                  "user del|disable|enable NAME, user list, or user mfa NAME required|optional");
        return EXIT_USAGE;
    }
    if (add && o.scram == 0)
        o.scram = -1; /* the default for a new account */
    if (add && !valid_new_name(name)) {
        cli_error("invalid user name \"%s\": use letters, digits and . _ - @ +", name);
        return EXIT_DATAERR;
    }
    /* Ask for the password before taking the lock: a prompt must not
     * block other edits. passwd derives SCRAM keys unless told not to:
     * whether the account has some is known only under the lock. */
    if (add || passwd) {
        bool want_scram =
            !scheme_is(o.scheme, "scram-sha-256") && (o.scram == 1 || (passwd && o.scram == -1));
        ret = make_secret(name, &o, want_scram, &ns);
        if (ret != 0)
            goto out_secret;
        if (is_plain(o.scheme))
            fprintf(stderr,
                    "postern: warning: %s's password is stored as PLAIN text: anyone "
                    "who can read the passwd-file can log in as %s\n",
                    name, name);
    }
    ret = pwfile_edit_open(cfg, &pe);
    if (ret != 0)
        goto out;
    ssize_t i = pwfile_find_user(&pe, name);
    if (add) {
        if (i >= 0) {
            cli_error("user %s exists already", name);
            ret = EXIT_DATAERR;
            goto out;
        }
        size_t len = strlen(name) + strlen(ns.hash) + strlen(ns.scram) + 9;
        char *line = malloc(len);
        if (line == NULL || pwfile_add_line(&pe, line) < 0) {
            free(line);
            ret = EXIT_SOFTWARE;
            goto out;
        }
        if (o.scram == 1 && ns.scram[0] != '\0')
            snprintf(line, len, "%s:%s::::::%s", name, ns.hash, ns.scram);
        else
            snprintf(line, len, "%s:%s", name, ns.hash);
    } else {
        if (i < 0) {
            cli_error("no user %s in %s", name, pe.path);
            ret = EXIT_NOUSER;
            goto out;
        }
        char *line = NULL;
        if (passwd)
            line = passwd_line(pe.lines[i], &o, &ns);
        else if (strcmp(verb, "disable") == 0 || strcmp(verb, "enable") == 0)
            line = set_disabled(pe.lines[i], strcmp(verb, "disable") == 0);
        if (strcmp(verb, "del") != 0 && line == NULL) {
            cli_error("cannot rewrite the line for %s", name);
            ret = EXIT_SOFTWARE;
            goto out;
        }
        explicit_bzero(pe.lines[i], strlen(pe.lines[i]));
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
    pwfile_edit_free(&pe);
out_secret:
    explicit_bzero(&ns, sizeof(ns));
    return ret;
}
