#ifndef POSTERN_JSON_H
#define POSTERN_JSON_H

/*
 * A small strict JSON parser (RFC 8259) for the documents authentication
 * reads: JWT headers and claims, and JWKS files. Strict, because these
 * documents decide who logs in: anything two parsers could read differently
 * is refused (duplicate member names, invalid UTF-8, lone surrogates, raw
 * control characters, a byte order mark, trailing data, numbers out of the
 * range of a double).
 *
 * The result is a tree owned by the caller; it is read-only after parsing,
 * so several threads may read one tree at once.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Arrays and objects nested deeper than this are refused; the parser and
 * json_free() recurse at most this deep. */
#define JSON_MAX_DEPTH 32

enum json_type {
    JSON_NULL,
    JSON_FALSE,
    JSON_TRUE,
    JSON_INT,    /* a number without fraction or exponent that fits int64_t */
    JSON_DOUBLE, /* any other number */
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
};

struct json_member;

struct json_value {
    enum json_type type;
    union {
        int64_t i;
        double d;
        /* UTF-8, NUL-terminated; len counts the bytes, since "\u0000"
         * can put a NUL inside. */
        struct {
            char *s;
            size_t len;
        } str;
        struct {
            struct json_value *items;
            size_t count;
        } arr;
        struct {
            struct json_member *members; /* in document order */
            size_t count;
        } obj;
    } u;
};

struct json_member {
    char *key; /* NUL-terminated, may hold a NUL like any string */
    size_t key_len;
    struct json_value value;
};

/*
 * Parses exactly one JSON value from len bytes (no NUL needed) with
 * optional whitespace around it. Returns the tree, or NULL with *error_r (a
 * static string) and, when offset_r is not NULL, the byte offset where the
 * problem was found.
 */
struct json_value *json_parse(const char *data, size_t len, const char **error_r, size_t *offset_r);

/* Frees the tree and sets *v to NULL; NULL and *v == NULL are no-ops. */
void json_free(struct json_value **v);

/* The member named key in an object, or NULL (also when v is not an
 * object). */
const struct json_value *json_get(const struct json_value *v, const char *key);

/* The string of a JSON_STRING without an embedded NUL, else NULL. */
const char *json_string(const struct json_value *v);

/* Whether v is a number; *value_r gets it as a double (exact for the
 * integers a date uses). */
bool json_number(const struct json_value *v, double *value_r);

#endif
