/*
 * The JSON parser on arbitrary bytes. A document it accepts must hold only
 * well-formed UTF-8 strings and finite numbers, and must survive a round
 * trip: written out again and parsed, it gives the same tree.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/json.h"
#include "fuzz.h"

struct out {
    char *buf;
    size_t len, cap;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->len + n + 1 > o->cap) {
        o->cap = (o->len + n + 1) * 2;
        o->buf = realloc(o->buf, o->cap);
        check(o->buf != NULL, "out of memory");
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void put_string(struct out *o, const char *s, size_t len)
{
    put(o, "\"", 1);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c < 0x20 || c == '"' || c == '\\') {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            put(o, esc, 6);
        } else {
            put(o, s + i, 1);
        }
    }
    put(o, "\"", 1);
}

/* Recursion bounded by JSON_MAX_DEPTH, as in the parser. */
static void write_value(struct out *o, const struct json_value *v)
{
    char num[64];
    switch (v->type) {
    case JSON_NULL:
        put(o, "null", 4);
        break;
    case JSON_TRUE:
        put(o, "true", 4);
        break;
    case JSON_FALSE:
        put(o, "false", 5);
        break;
    case JSON_INT:
        put(o, num, (size_t)snprintf(num, sizeof(num), "%lld", (long long)v->u.i));
        break;
    case JSON_DOUBLE: {
        check(isfinite(v->u.d), "non-finite number");
        int n = snprintf(num, sizeof(num), "%.17g", v->u.d);
        /* Keep it a double when read back. */
        if (strpbrk(num, ".eE") == NULL)
            n += snprintf(num + n, sizeof(num) - (size_t)n, ".0");
        put(o, num, (size_t)n);
        break;
    }
    case JSON_STRING:
        check(v->u.str.s[v->u.str.len] == '\0', "string not terminated");
        put_string(o, v->u.str.s, v->u.str.len);
        break;
    case JSON_ARRAY:
        put(o, "[", 1);
        for (size_t i = 0; i < v->u.arr.count; i++) {
            if (i > 0)
                put(o, ",", 1);
            write_value(o, &v->u.arr.items[i]);
        }
        put(o, "]", 1);
        break;
    case JSON_OBJECT:
        put(o, "{", 1);
        for (size_t i = 0; i < v->u.obj.count; i++) {
            if (i > 0)
                put(o, ",", 1);
            put_string(o, v->u.obj.members[i].key, v->u.obj.members[i].key_len);
            put(o, ":", 1);
            write_value(o, &v->u.obj.members[i].value);
        }
        put(o, "}", 1);
        break;
    }
}

static bool same(const struct json_value *a, const struct json_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case JSON_INT:
        return a->u.i == b->u.i;
    case JSON_DOUBLE:
        return a->u.d == b->u.d;
    case JSON_STRING:
        return a->u.str.len == b->u.str.len && memcmp(a->u.str.s, b->u.str.s, a->u.str.len) == 0;
    case JSON_ARRAY:
        if (a->u.arr.count != b->u.arr.count)
            return false;
        for (size_t i = 0; i < a->u.arr.count; i++)
            if (!same(&a->u.arr.items[i], &b->u.arr.items[i]))
                return false;
        return true;
    case JSON_OBJECT:
        if (a->u.obj.count != b->u.obj.count)
            return false;
        for (size_t i = 0; i < a->u.obj.count; i++) {
            const struct json_member *x = &a->u.obj.members[i], *y = &b->u.obj.members[i];
            if (x->key_len != y->key_len || memcmp(x->key, y->key, x->key_len) != 0 ||
                !same(&x->value, &y->value))
                return false;
        }
        return true;
    default:
        return true;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *error = NULL;
    size_t off = 0;
    struct json_value *v = json_parse((const char *)data, size, &error, &off);
    if (v == NULL) {
        check(error != NULL && off <= size, "failure without a reason");
        return 0;
    }
    struct out o = {0};
    write_value(&o, v);
    struct json_value *w = json_parse(o.buf, o.len, &error, &off);
    if (w == NULL)
        fprintf(stderr, "fuzz_json: re-parse failed at %zu: %s\n%s\n", off, error, o.buf);
    check(w != NULL, "written document not accepted");
    check(same(v, w), "round trip changed the document");
    json_free(&v);
    json_free(&w);
    check(v == NULL && w == NULL, "json_free did not clear the pointer");
    free(o.buf);
    return 0;
}
