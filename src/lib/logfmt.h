#ifndef POSTERN_LOGFMT_H
#define POSTERN_LOGFMT_H

/*
 * Reading the audit log back: a strict parser for the logfmt lines that
 * src/guard/audit.c writes, for `postern report` and for anything else
 * that must trust what it reads from that file.
 *
 * A line is key=value tokens separated by single spaces. Keys are
 * [A-Za-z_][A-Za-z0-9_]* and unique. A value is either bare (1 or more
 * bytes 0x21-0x7E other than '"', '=' and '\') or double-quoted, with
 * printable ASCII inside and the escapes \" \\ and \xHH. Nothing else is
 * accepted: no control byte, no byte above 0x7E, no leading, trailing or
 * doubled space. A value that decodes to a NUL byte is refused, so every
 * value is a plain C string.
 */

#include <stddef.h>
#include <stdint.h>

/* An audit line has about 15 fields; a line with more is not one of ours. */
#define LOGFMT_MAX_FIELDS 64

struct logfmt_field {
    const char *key;
    const char *value; /* decoded, NUL-terminated */
    size_t value_len;
};

struct logfmt {
    size_t count;
    struct logfmt_field fields[LOGFMT_MAX_FIELDS];
};

/*
 * Parses line[0..len) in place: keys and decoded values are written over
 * the line, which must have room for len + 1 bytes. Returns 0, or -1 with
 * *error_r saying what is wrong and *pos_r the offset where it was found.
 */
int logfmt_parse(char *line, size_t len, struct logfmt *out, const char **error_r, size_t *pos_r);

/* The value of key, or NULL when the line has no such key. */
const char *logfmt_get(const struct logfmt *f, const char *key);

/*
 * The timestamps the audit log writes, in UTC: 2026-11-27T10:00:00.123Z,
 * also without fraction (the until= of a ban). A fraction of 1 to 9
 * digits is accepted and cut to milliseconds. Returns 0 with the
 * milliseconds since the epoch, or -1 for anything else, including
 * impossible dates (2026-02-30) and time zones other than Z.
 */
int logfmt_parse_time(const char *s, int64_t *ms_r);

#endif
