#ifndef POSTERN_CLI_H
#define POSTERN_CLI_H

/* The subcommands of `postern`. Each returns the process exit status. */

#include "daemon/config.h"

/* sysexits(3) codes, so that an MTA calling `postern deliver` knows a
 * temporary failure (retry) from a permanent one (bounce). */
#define EXIT_USAGE     64
#define EXIT_DATAERR   65
#define EXIT_NOINPUT   66
#define EXIT_NOUSER    67
#define EXIT_SOFTWARE  70
#define EXIT_CANTCREAT 73
#define EXIT_IOERR     74
#define EXIT_TEMPFAIL  75
#define EXIT_CONFIG    78

int cmd_user(const struct config *cfg, int argc, char **argv);
int cmd_deliver(const struct config *cfg, int argc, char **argv);
int cmd_check(const struct config *cfg, const char *path);
/* src/cli/totp.c: `postern totp ...` and `postern user mfa ...`. */
int cmd_totp(const struct config *cfg, int argc, char **argv);
int cmd_user_mfa(const struct config *cfg, int argc, char **argv);
int cmd_app_password(const struct config *cfg, int argc, char **argv);
/* src/cli/report.c: `postern report`, which needs no configuration. */
int cmd_report(int argc, char **argv);
/* Removes every app password of name (for `user del`). */
int cli_apppass_remove_user(const struct config *cfg, const char *name);

/* Prints "postern: <message>" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
