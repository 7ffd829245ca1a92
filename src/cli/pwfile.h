#ifndef POSTERN_PWFILE_H
#define POSTERN_PWFILE_H

/*
 * Locked, atomic edits of the passwd-file named by [auth] passdb, for the
 * subcommands that change accounts. Open, change lines in memory, commit;
 * free always (it releases the lock).
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "daemon/config.h"

struct pwfile_edit {
    char *path;
    int lock_fd;
    char **lines; /* without '\n'; a NULL line is dropped at commit */
    size_t n, cap;
    struct stat st;
    bool existed;
};

/* Locks and reads the passwd-file (a missing one counts as empty).
 * Returns 0 or an exit status, the error already printed. */
int pwfile_edit_open(const struct config *cfg, struct pwfile_edit *pe);
/* Writes the lines to a new file and renames it over the old one. */
int pwfile_edit_commit(struct pwfile_edit *pe);
void pwfile_edit_free(struct pwfile_edit *pe);
/* Appends a malloc'ed line, which the edit then owns. */
int pwfile_add_line(struct pwfile_edit *pe, char *line);
/* Index of the line for user name, or -1. */
ssize_t pwfile_find_user(const struct pwfile_edit *pe, const char *name);

/* Splits a line in place into its 7 colon fields and the rest (the extra
 * fields, which may contain colons themselves). Returns the fields found. */
int pwfile_split_fields(char *line, char *f[8]);
/* Joins them again, leaving out empty trailing fields. malloc'ed. */
char *pwfile_join_fields(char *f[8]);
/* A copy of line whose extra fields have no "key=..." and, when value is
 * not NULL, end with "key=value". Other fields are kept in order.
 * NULL when out of memory. */
char *pwfile_set_extra(const char *line, const char *key, const char *value);

#endif
