/*
 * The passwd-file line parser: the file is written by administrators and
 * by `postern user`, but a broken line must be refused, never crash the
 * auth side. The input is split into lines as passwd_file.c does; an
 * accepted line must give a sane account.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/passdb.h"
#include "auth/scram.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);

    check(buf != NULL, "out of memory");
    memcpy(buf, data, size);
    buf[size] = '\0';
    (void)hash_scheme_lookup(buf, strnlen(buf, 32));
    for (char *line = buf, *next; line != NULL && *line != '\0'; line = next) {
        struct passwd_line pl;
        const char *error = NULL;
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        int r = passwd_line_parse(line, &pl, &error);
        check(r >= -1 && r <= 1, "bad return value");
        if (r < 0) {
            check(error != NULL && error[0] != '\0', "refused without a reason");
            continue;
        }
        if (r == 0)
            continue;
        check(inside(pl.user, buf, size) && inside(pl.hash, buf, size), "pointer outside");
        check_user_name(pl.user);
        check(pl.scheme == HASH_CRYPT || pl.scheme == HASH_PLAIN || pl.scheme == HASH_ARGON2ID ||
                  pl.scheme == HASH_SCRAM,
              "bad scheme");
        check(pl.hash[0] != '\0', "empty password accepted");
        check(strchr(pl.hash, ':') == NULL, "':' in the password field");
        if (pl.scheme == HASH_CRYPT)
            check(pl.hash[0] == '$', "crypt hash without '$'");
        if (pl.scheme == HASH_ARGON2ID)
            check(strncmp(pl.hash, "$argon2id$", 10) == 0, "argon2id hash without its prefix");
        if (pl.scheme == HASH_SCRAM || pl.scram != NULL) {
            struct scram_keys k;
            check(scram_keys_parse(pl.scheme == HASH_SCRAM ? pl.hash : pl.scram, &k, &error) == 0,
                  "SCRAM keys accepted that do not parse");
        }
        if (pl.scram != NULL)
            check(inside(pl.scram, buf, size) && strncmp(pl.scram, "{SCRAM-SHA-256}", 15) == 0,
                  "bad scram=");
        if (pl.home != NULL)
            check(inside(pl.home, buf, size) && pl.home[0] != '\0', "bad home");
        if (pl.mail != NULL)
            check(inside(pl.mail, buf, size) && strchr(pl.mail, ' ') == NULL, "bad mail");
    }
    free(buf);
    return 0;
}
