/*
 * The app-passwords line parser: the file is written by `postern
 * app-password` and by the server, but may be edited by hand; a broken
 * line must be refused, never crash the server. The input is split into
 * lines as apppass.c does. An accepted line must be sane, and formatting
 * it must give a line that parses to the same entry. The typed-password
 * normalizer gets the raw bytes too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/apppass.h"
#include "auth/passdb.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char norm[APPPASS_LEN + 1];
    char *buf = malloc(size + 1);

    check(buf != NULL, "out of memory");
    if (apppass_normalize((const char *)data, size, norm)) {
        check(strlen(norm) == APPPASS_LEN, "normalized length");
        check(strspn(norm, "abcdefghijklmnopqrstuvwxyz234567") == APPPASS_LEN, "alphabet");
    }
    memcpy(buf, data, size);
    buf[size] = '\0';
    for (char *line = buf, *next; line != NULL && *line != '\0'; line = next) {
        struct apppass_line l, back;
        const char *error = NULL;
        char out[1024];
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        int r = apppass_line_parse(line, &l, &error);
        check(r >= -1 && r <= 1, "bad return value");
        if (r < 0) {
            check(error != NULL && error[0] != '\0', "refused without a reason");
            continue;
        }
        if (r == 0)
            continue;
        check(inside(l.user, buf, size) && inside(l.label, buf, size), "pointer outside");
        check_user_name(l.user);
        check(apppass_label_valid(l.label), "bad label");
        check(l.created >= 0 && l.created <= APPPASS_TIME_MAX, "bad creation time");
        check(l.last_used >= 0 && l.last_used <= APPPASS_TIME_MAX, "bad last-use time");
        int n = apppass_line_format(&l, out, sizeof(out));
        check(n > 0 && strchr(out, '\n') == NULL, "format failed");
        check(apppass_line_parse(out, &back, &error) == 1, "formatted line refused");
        check(strcmp(back.user, l.user) == 0 && strcmp(back.label, l.label) == 0 &&
                  back.created == l.created && back.last_used == l.last_used &&
                  memcmp(back.salt, l.salt, sizeof(l.salt)) == 0 &&
                  memcmp(back.hash, l.hash, sizeof(l.hash)) == 0,
              "round trip changed the entry");
    }
    free(buf);
    return 0;
}
