/*
 * The audit-log reader on arbitrary bytes. An accepted line must give
 * valid, unique keys and NUL-free values, and must survive a round trip:
 * written out again the way src/guard/audit.c writes values and parsed,
 * it gives the same fields. Accepted timestamps must format back to
 * themselves (at millisecond precision).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/logfmt.h"
#include "fuzz.h"

/* audit_tok() for plain tokens, audit_str() for everything else. */
static size_t encode(const struct logfmt *f, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < f->count; i++) {
        const char *v = f->fields[i].value;
        int bare = v[0] != '\0';
        for (const char *p = v; bare && *p != '\0'; p++)
            bare = *p > 0x20 && *p < 0x7f && *p != '"' && *p != '=' && *p != '\\';
        o += (size_t)sprintf(out + o, "%s%s=", i > 0 ? " " : "", f->fields[i].key);
        if (bare) {
            o += (size_t)sprintf(out + o, "%s", v);
            continue;
        }
        out[o++] = '"';
        for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++) {
            if (*p == '"' || *p == '\\') {
                out[o++] = '\\';
                out[o++] = (char)*p;
            } else if (*p < 0x20 || *p >= 0x7f) {
                o += (size_t)sprintf(out + o, "\\x%02x", *p);
            } else {
                out[o++] = (char)*p;
            }
        }
        out[o++] = '"';
    }
    out[o] = '\0';
    return o;
}

static void check_time(const char *s)
{
    int64_t ms;
    if (logfmt_parse_time(s, &ms) < 0)
        return;
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    struct tm tm;
    char buf[64];
    check(gmtime_r(&t, &tm) != NULL, "time out of range");
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms - t * 1000LL));
    int64_t again;
    check(logfmt_parse_time(buf, &again) == 0, "formatted time refused");
    check(again == ms, "time round trip changed the value");
    check(strncmp(buf, s, 19) == 0, "time round trip changed the date");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(size + 1);
    struct logfmt f, g;
    const char *error = NULL;
    size_t pos = 0;

    check(line != NULL, "out of memory");
    memcpy(line, data, size);
    if (logfmt_parse(line, size, &f, &error, &pos) < 0) {
        check(error != NULL && pos <= size, "failure without a reason or place");
        free(line);
        return 0;
    }
    for (size_t i = 0; i < f.count; i++) {
        check(strlen(f.fields[i].value) == f.fields[i].value_len, "NUL inside a value");
        check(f.fields[i].key[0] != '\0', "empty key");
        for (size_t j = 0; j < i; j++)
            check(strcmp(f.fields[i].key, f.fields[j].key) != 0, "duplicate key accepted");
        check_time(f.fields[i].value);
    }
    /* Each value grows at most 4 times plus quotes. */
    char *out = malloc(size * 4 + 16);
    check(out != NULL, "out of memory");
    size_t n = encode(&f, out);
    int r = logfmt_parse(out, n, &g, &error, &pos);
    if (r != 0)
        fprintf(stderr, "fuzz_logfmt: re-parse failed at %zu: %s\n", pos, error);
    check(r == 0, "written line not accepted");
    check(g.count == f.count, "round trip changed the field count");
    for (size_t i = 0; i < f.count; i++) {
        check(strcmp(f.fields[i].key, g.fields[i].key) == 0, "round trip changed a key");
        check(f.fields[i].value_len == g.fields[i].value_len &&
                  memcmp(f.fields[i].value, g.fields[i].value, f.fields[i].value_len) == 0,
              "round trip changed a value");
    }
    free(out);
    free(line);
    return 0;
}
