/*
 * postern: the administration tool. Reads the same configuration file as
 * posternd, and changes accounts and mailboxes with the same atomic
 * file operations the server relies on.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "lib/log.h"

#define DEFAULT_CONFIG "/etc/postern/postern.conf"

static void usage(FILE *f)
{
    fprintf(f, "usage: postern [-c FILE] COMMAND ...\n"
               "  user add NAME         add an account (password from stdin or a prompt)\n"
               "  user passwd NAME      change its password\n"
               "    [--scheme S]        yescrypt (default), sha512-crypt, blf-crypt, argon2id,\n"
               "                        scram-sha-256 or plain\n"
               "    [--scram|--no-scram]  also store SCRAM-SHA-256 keys (passwd: keeps them)\n"
               "  user del NAME         remove the account (its mail stays)\n"
               "  user list             list accounts\n"
               "  user disable NAME     refuse POP3 logins for the account\n"
               "  user enable NAME      allow them again\n"
               "  user mfa NAME required|optional\n"
               "                        require a second factor for NAME, or not\n"
               "  totp enroll NAME [--force] [--no-qr]\n"
               "                        new TOTP secret: prints it, its otpauth URI, a QR code\n"
               "  totp disable NAME     remove NAME's TOTP secret\n"
               "  app-password add NAME LABEL\n"
               "                        a new app password for one mail client, shown once\n"
               "  app-password list NAME\n"
               "                        its app passwords: label, created, last used\n"
               "  app-password revoke NAME LABEL\n"
               "                        revoke one\n"
               "  deliver NAME          deliver the message on stdin into NAME's Maildir\n"
               "  check                 validate the configuration and the passwd-file\n"
               "  report [--since DURATION] [--top N] LOGFILE\n"
               "                        failed logins, bans, alerts and downloads from the\n"
               "                        audit log (- for stdin; DURATION 24h (default), 90m, 7d)\n"
               "FILE defaults to $POSTERN_CONFIG, then " DEFAULT_CONFIG ".\n");
}

void cli_error(const char *fmt, ...)
{
    va_list ap;

    fputs("postern: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int main(int argc, char **argv)
{
    const char *path = getenv("POSTERN_CONFIG");
    struct config cfg;
    char err[1024];
    int opt, ret;

    while ((opt = getopt(argc, argv, "+c:h")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    argc -= optind;
    argv += optind;
    if (argc < 1) {
        usage(stderr);
        return EXIT_USAGE;
    }
    /* The report reads a log file, not the configuration. */
    if (strcmp(argv[0], "report") == 0)
        return cmd_report(argc - 1, argv + 1);
    if (path == NULL)
        path = DEFAULT_CONFIG;
    log_init("postern", true);
    if (config_load(path, &cfg, err, sizeof(err)) < 0) {
        cli_error("%s", err);
        return EXIT_CONFIG;
    }
    if (strcmp(argv[0], "user") == 0)
        ret = cmd_user(&cfg, argc - 1, argv + 1);
    else if (strcmp(argv[0], "totp") == 0)
        ret = cmd_totp(&cfg, argc - 1, argv + 1);
    else if (strcmp(argv[0], "app-password") == 0)
        ret = cmd_app_password(&cfg, argc - 1, argv + 1);
    else if (strcmp(argv[0], "deliver") == 0)
        ret = cmd_deliver(&cfg, argc - 1, argv + 1);
    else if (strcmp(argv[0], "check") == 0 && argc == 1)
        ret = cmd_check(&cfg, path);
    else {
        usage(stderr);
        ret = EXIT_USAGE;
    }
    config_free(&cfg);
    return ret;
}
