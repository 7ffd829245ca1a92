#include "lib/logfmt.h"

#include <stdbool.h>
#include <string.h>

static bool key_start(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool key_char(unsigned char c)
{
    return key_start(c) || (c >= '0' && c <= '9');
}

/* What audit_tok() writes without quotes. */
static bool bare_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '"' && c != '=' && c != '\\';
}

static int hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int fail(const char *error, size_t pos, const char **error_r, size_t *pos_r)
{
    *error_r = error;
    *pos_r = pos;
    return -1;
}

/*
 * Decodes the quoted value starting at line[*r] == '"' into line[*w...];
 * w <= r throughout, so decoding in place never overwrites unread input.
 */
static int parse_quoted(char *line, size_t len, size_t *r_io, size_t *w_io, const char **error_r,
                        size_t *pos_r)
{
    size_t r = *r_io + 1, w = *w_io;

    for (;;) {
        if (r >= len)
            return fail("unterminated quoted value", r, error_r, pos_r);
        unsigned char c = (unsigned char)line[r];
        if (c == '"')
            break;
        if (c < 0x20 || c > 0x7e)
            return fail("control or non-ASCII byte", r, error_r, pos_r);
        if (c != '\\') {
            line[w++] = (char)c;
            r++;
            continue;
        }
        if (r + 1 >= len)
            return fail("unterminated quoted value", r + 1, error_r, pos_r);
        unsigned char e = (unsigned char)line[r + 1];
        if (e == '"' || e == '\\') {
            line[w++] = (char)e;
            r += 2;
        } else if (e == 'x') {
            int hi = r + 2 < len ? hex_digit((unsigned char)line[r + 2]) : -1;
            int lo = r + 3 < len ? hex_digit((unsigned char)line[r + 3]) : -1;
            if (hi < 0 || lo < 0)
                return fail("\\x not followed by two hex digits", r, error_r, pos_r);
            if (hi == 0 && lo == 0)
                return fail("NUL byte in value", r, error_r, pos_r);
            line[w++] = (char)(hi * 16 + lo);
            r += 4;
        } else {
            return fail("unknown escape (only \\\" \\\\ \\xHH)", r, error_r, pos_r);
        }
    }
    line[w] = '\0';
    *r_io = r + 1; /* past the closing quote */
    *w_io = w;
    return 0;
}

int logfmt_parse(char *line, size_t len, struct logfmt *out, const char **error_r, size_t *pos_r)
{
    size_t r = 0;

    out->count = 0;
    if (len == 0)
        return fail("empty line", 0, error_r, pos_r);
    while (r < len) {
        size_t key_at = r;
        if (!key_start((unsigned char)line[r]))
            return fail("expected a key", r, error_r, pos_r);
        while (r < len && key_char((unsigned char)line[r]))
            r++;
        if (r >= len || line[r] != '=')
            return fail("expected '=' after the key", r, error_r, pos_r);
        line[r++] = '\0';
        for (size_t i = 0; i < out->count; i++)
            if (strcmp(out->fields[i].key, line + key_at) == 0)
                return fail("duplicate key", key_at, error_r, pos_r);
        if (out->count == LOGFMT_MAX_FIELDS)
            return fail("too many fields", key_at, error_r, pos_r);

        size_t value_at = r;
        bool quoted = r < len && line[r] == '"';
        if (quoted) {
            size_t w = r;
            if (parse_quoted(line, len, &r, &w, error_r, pos_r) < 0)
                return -1;
            out->fields[out->count].value_len = w - value_at;
        } else {
            while (r < len && bare_char((unsigned char)line[r]))
                r++;
            if (r == value_at)
                return fail("empty value (write \"\")", r, error_r, pos_r);
            out->fields[out->count].value_len = r - value_at;
        }
        /* Only a single space or the end may follow a value. */
        if (r < len && line[r] != ' ')
            return fail(!quoted && (line[r] == '"' || line[r] == '=' || line[r] == '\\')
                            ? "unexpected character in a bare value"
                            : "expected a space between fields",
                        r, error_r, pos_r);
        if (r + 1 == len)
            return fail("trailing space", r, error_r, pos_r);
        /* Checked before: writing the terminator loses nothing. */
        line[r] = '\0';
        out->fields[out->count].key = line + key_at;
        out->fields[out->count].value = line + value_at;
        out->count++;
        r++;
    }
    return 0;
}

const char *logfmt_get(const struct logfmt *f, const char *key)
{
    for (size_t i = 0; i < f->count; i++)
        if (strcmp(f->fields[i].key, key) == 0)
            return f->fields[i].value;
    return NULL;
}

/* Reads exactly n digits. */
static bool digits(const char **p, int n, int *v_r)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        unsigned d = (unsigned char)(*p)[i] - '0';
        if (d > 9)
            return false;
        v = v * 10 + (int)d;
    }
    *p += n;
    *v_r = v;
    return true;
}

static bool expect(const char **p, char c)
{
    if (**p != c)
        return false;
    (*p)++;
    return true;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (H. Hinnant's days_from_civil): no time zone, no libc state. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

int logfmt_parse_time(const char *s, int64_t *ms_r)
{
    int y, mo, d, h, mi, sec, ms = 0;
    const char *p = s;

    if (!digits(&p, 4, &y) || !expect(&p, '-') || !digits(&p, 2, &mo) || !expect(&p, '-') ||
        !digits(&p, 2, &d) || !expect(&p, 'T') || !digits(&p, 2, &h) || !expect(&p, ':') ||
        !digits(&p, 2, &mi) || !expect(&p, ':') || !digits(&p, 2, &sec))
        return -1;
    if (*p == '.') {
        int n = 0;
        p++;
        for (; *p >= '0' && *p <= '9'; p++, n++)
            if (n < 3)
                ms = ms * 10 + (*p - '0');
        if (n == 0 || n > 9)
            return -1;
        for (; n < 3; n++)
            ms *= 10;
    }
    if (!expect(&p, 'Z') || *p != '\0')
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 59)
        return -1;
    int64_t days = days_from_civil(y, mo, d);
    *ms_r = ((days * 24 + h) * 60 + mi) * 60000 + (int64_t)sec * 1000 + ms;
    return 0;
}
