/*
 * `postern totp enroll|disable NAME` and `postern user mfa NAME
 * required|optional`: the second factor of an account, kept as the extra
 * fields totp= and mfa= of its passwd-file line, changed with the same
 * locked, atomic edit as every other account change.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <qrencode.h>

#include "auth/passdb.h"
#include "auth/totp.h"
#include "cli/cli.h"
#include "cli/pwfile.h"

#define ISSUER "Postern"
/* Quiet zone around the QR code, in modules. The standard asks for 4;
 * 2 is what phone scanners need in practice. With it and the lowest error
 * correction (a screen does not get dirty), the code for a usual name
 * fits an 80x24 terminal. */
#define QR_MARGIN 2

struct account {
    ssize_t index; /* of its line in the edit */
    bool has_totp;
    bool mfa_required;
};

/*
 * Locks the passwd-file and finds NAME's line. Returns 0, or an exit
 * status with the error printed (the file is then left as it was).
 */
static int account_open(const struct config *cfg, const char *name, struct pwfile_edit *pe,
                        struct account *acc_r)
{
    struct passwd_line pl;
    const char *error;
    int ret = pwfile_edit_open(cfg, pe);

    if (ret != 0)
        return ret;
    acc_r->index = pwfile_find_user(pe, name);
    if (acc_r->index < 0) {
        cli_error("no user %s in %s", name, pe->path);
        return EXIT_NOUSER;
    }
    char *copy = strdup(pe->lines[acc_r->index]);
    if (copy == NULL) {
        cli_error("out of memory");
        return EXIT_SOFTWARE;
    }
    int r = passwd_line_parse(copy, &pl, &error);
    if (r <= 0) {
        /* The server skips this line; changing part of it would hide
         * the problem rather than fix it. */
        cli_error("%s:%zd: the line of %s cannot be used (%s); fix it first", pe->path,
                  acc_r->index + 1, name, r < 0 ? error : "empty");
        free(copy);
        return EXIT_DATAERR;
    }
    acc_r->has_totp = pl.totp != NULL && pl.totp[0] != '\0';
    acc_r->mfa_required = pl.mfa_required;
    free(copy);
    return 0;
}

/* Sets (value) or removes (NULL) the extra field key of NAME's line. */
static int account_set(struct pwfile_edit *pe, const struct account *acc, const char *key,
                       const char *value)
{
    char *line = pwfile_set_extra(pe->lines[acc->index], key, value);

    if (line == NULL) {
        cli_error("out of memory");
        return EXIT_SOFTWARE;
    }
    /* The old line may hold the old secret. */
    OPENSSL_cleanse(pe->lines[acc->index], strlen(pe->lines[acc->index]));
    free(pe->lines[acc->index]);
    pe->lines[acc->index] = line;
    return pwfile_edit_commit(pe);
}

/* RFC 3986: everything but the unreserved characters as %XX. */
static void percent_encode(const char *in, char *out, size_t size)
{
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)in; *p != '\0' && o + 4 <= size; p++) {
        unsigned char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, size - o, "%%%02X", c);
    }
    out[o] = '\0';
}

static bool qr_dark(const QRcode *qr, int x, int y)
{
    if (x < 0 || y < 0 || x >= qr->width || y >= qr->width)
        return false; /* the quiet zone */
    return qr->data[y * qr->width + x] & 1;
}

/*
 * Two rows of modules per line of text with the half-block characters.
 * The blocks draw the light modules, so the code reads right on the usual
 * light-on-dark terminal; on a terminal the colours are also set
 * explicitly (white on black), so a light theme shows it right too.
 */
static void qr_print(const QRcode *qr, FILE *out)
{
    static const char *const cell[4] = {" ", "\u2584", "\u2580", "\u2588"};
    bool colour = isatty(fileno(out));
    int lo = -QR_MARGIN, hi = qr->width + QR_MARGIN;

    for (int y = lo; y < hi; y += 2) {
        if (colour)
            fputs("\033[40;97m", out);
        for (int x = lo; x < hi; x++) {
            bool top = !qr_dark(qr, x, y);
            /* Below the last row (odd height) is the terminal, not code. */
            bool bottom = y + 1 < hi && !qr_dark(qr, x, y + 1);
            fputs(cell[(top ? 2 : 0) | (bottom ? 1 : 0)], out);
        }
        if (colour)
            fputs("\033[0m", out);
        fputc('\n', out);
    }
}

static int totp_enroll(const struct config *cfg, const char *name, bool force, bool qr)
{
    unsigned char key[TOTP_SECRET_NEW];
    char secret[TOTP_SECRET_NEW * 8 / 5 + 2];
    char label[PASSDB_USER_MAX * 3 + 1], uri[sizeof(label) + sizeof(secret) + 128];
    struct pwfile_edit pe;
    struct account acc;
    int ret;

    if (RAND_bytes(key, sizeof(key)) != 1) {
        cli_error("cannot get random bytes from OpenSSL");
        return EXIT_SOFTWARE;
    }
    base32_encode(key, sizeof(key), secret, sizeof(secret));
    OPENSSL_cleanse(key, sizeof(key));
    ret = account_open(cfg, name, &pe, &acc);
    if (ret == 0 && acc.has_totp && !force) {
        cli_error("%s is enrolled already; --force replaces the secret (the old one stops "
                  "working)",
                  name);
        ret = EXIT_DATAERR;
    }
    if (ret == 0)
        ret = account_set(&pe, &acc, "totp", secret);
    pwfile_edit_free(&pe);
    if (ret != 0) {
        OPENSSL_cleanse(secret, sizeof(secret));
        return ret;
    }
    percent_encode(name, label, sizeof(label));
    snprintf(uri, sizeof(uri),
             "otpauth://totp/" ISSUER ":%s?secret=%s&issuer=" ISSUER
             "&algorithm=SHA1&digits=%d&period=%d",
             label, secret, TOTP_DIGITS, TOTP_PERIOD);
    printf("TOTP secret for %s: %s\n%s\n", name, secret, uri);
    if (qr) {
        QRcode *code = QRcode_encodeString(uri, 0, QR_ECLEVEL_L, QR_MODE_8, 1);
        if (code == NULL) {
            cli_error("cannot draw the QR code; enter the secret by hand");
        } else {
            putchar('\n');
            qr_print(code, stdout);
            QRcode_free(code);
        }
    }
    printf("Log in with the password immediately followed by the %d-digit code.\n", TOTP_DIGITS);
    fflush(stdout);
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(uri, sizeof(uri));
    return 0;
}

static int totp_disable(const struct config *cfg, const char *name)
{
    struct pwfile_edit pe;
    struct account acc;
    int ret = account_open(cfg, name, &pe, &acc);

    if (ret == 0 && !acc.has_totp) {
        printf("%s has no TOTP secret; nothing changed\n", name);
    } else if (ret == 0) {
        ret = account_set(&pe, &acc, "totp", NULL);
        if (ret == 0 && acc.mfa_required)
            fprintf(stderr,
                    "postern: warning: %s still has mfa=required: its password alone is "
                    "refused\n",
                    name);
    }
    pwfile_edit_free(&pe);
    return ret;
}

int cmd_totp(const struct config *cfg, int argc, char **argv)
{
    const char *verb = argc > 0 ? argv[0] : "", *name = NULL;
    bool enroll = strcmp(verb, "enroll") == 0, force = false, qr = true, bad = false;

    for (int i = 1; i < argc; i++) {
        if (enroll && strcmp(argv[i], "--force") == 0)
            force = true;
        else if (enroll && strcmp(argv[i], "--no-qr") == 0)
            qr = false;
        else if (name == NULL && argv[i][0] != '-')
            name = argv[i];
        else
            bad = true; /* an unknown option or a second name */
    }
    if (bad || name == NULL || (!enroll && strcmp(verb, "disable") != 0)) {
        cli_error("usage: postern totp enroll NAME [--force] [--no-qr], or totp disable NAME");
        return EXIT_USAGE;
    }
    if (enroll)
        return totp_enroll(cfg, name, force, qr);
    return totp_disable(cfg, name);
}

int cmd_user_mfa(const struct config *cfg, int argc, char **argv)
{
    struct pwfile_edit pe;
    struct account acc;
    bool required;
    int ret;

    if (argc != 2 || (strcmp(argv[1], "required") != 0 && strcmp(argv[1], "optional") != 0)) {
        cli_error("usage: postern user mfa NAME required|optional");
        return EXIT_USAGE;
    }
    required = strcmp(argv[1], "required") == 0;
    ret = account_open(cfg, argv[0], &pe, &acc);
    /* "optional" is the default, so it is written as no field at all. */
    if (ret == 0)
        ret = account_set(&pe, &acc, "mfa", required ? "required" : NULL);
    pwfile_edit_free(&pe);
    if (ret == 0 && required && !acc.has_totp)
        fprintf(stderr,
                "postern: warning: %s has no TOTP secret: its password alone is now refused, "
                "so it needs another factor (postern totp enroll %s)\n",
                argv[0], argv[0]);
    return ret;
}
