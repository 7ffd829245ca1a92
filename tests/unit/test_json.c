/* The strict JSON parser (src/auth/json.c): what RFC 8259 allows, what it
 * does not, and the extra refusals (duplicate names, depth) that matter
 * when the document is a token. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth/json.h"

#define OK NULL

struct doc_case {
    const char *in;
    size_t len;        /* 0: strlen(in) */
    const char *error; /* NULL: accepted; else a substring of the error */
};

static struct json_value *parse_case(const struct doc_case *c, const char **error_r, size_t *off_r)
{
    size_t len = c->len != 0 ? c->len : strlen(c->in);
    return json_parse(c->in, len, error_r, off_r);
}

static void run_cases(const struct doc_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *error = NULL;
        size_t off = 0;
        struct json_value *v = parse_case(&cases[i], &error, &off);
        if (cases[i].error == NULL) {
            if (v == NULL)
                print_error("case %zu '%s' refused: %s at %zu\n", i, cases[i].in, error, off);
            assert_non_null(v);
        } else {
            if (v != NULL)
                print_error("case %zu '%s' accepted\n", i, cases[i].in);
            assert_null(v);
            assert_non_null(error);
            if (strstr(error, cases[i].error) == NULL)
                print_error("case %zu '%s': error '%s', want '%s'\n", i, cases[i].in, error,
                            cases[i].error);
            assert_non_null(strstr(error, cases[i].error));
        }
        json_free(&v);
        assert_null(v);
    }
}

static void test_documents(void **state)
{
    static const struct doc_case cases[] = {
        {"{}", 0, OK},
        {"[]", 0, OK},
        {" \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" : { } }\n ", 0, OK},
        {"0", 0, OK}, /* RFC 8259 allows any value at the top */
        {"\"x\"", 0, OK},
        {"true", 0, OK},
        {"false", 0, OK},
        {"null", 0, OK},
        {"[true,false,null]", 0, OK},
        {"", 0, "unexpected end"},
        {" ", 0, "unexpected end"},
        {"{", 0, "unexpected end"},
        {"[", 0, "unexpected end"},
        {"[1", 0, "unexpected end"},
        {"{\"a\"", 0, "expected ':'"},
        {"{\"a\":", 0, "unexpected end"},
        {"{\"a\":1", 0, "unexpected end"},
        {"{\"a\" 1}", 0, "expected ':'"},
        {"{a:1}", 0, "member name"},
        {"{'a':1}", 0, "member name"},
        {"{\"a\":1,}", 0, "member name"},
        {"[1,]", 0, "unexpected character"},
        {"[,1]", 0, "unexpected character"},
        {"[1 2]", 0, "expected ','"},
        {"{\"a\":1 \"b\":2}", 0, "expected ','"},
        {"1 2", 0, "trailing"},
        {"{} x", 0, "trailing"},
        {"{}}", 0, "trailing"},
        {"1\0", 2, "trailing"},
        {"\xef\xbb\xbf{}", 0, "unexpected character"}, /* no byte order mark */
        {"tru", 0, "unexpected character"},
        {"True", 0, "unexpected character"},
        {"nul", 0, "unexpected character"},
        {"nulls", 0, "trailing"},
        {"undefined", 0, "unexpected character"},
        {"[1]/*c*/", 0, "trailing"},
        {"\v1", 0, "unexpected character"}, /* not JSON whitespace */
        {"{\"a\":1,\"a\":2}", 0, "duplicate"},
        {"{\"a\":1,\"\\u0061\":2}", 0, "duplicate"}, /* equal once decoded */
        {"{\"a\":1,\"a\\u0000\":2}", 0, OK},
        {"{\"a\":{\"a\":1},\"b\":{\"a\":2}}", 0, OK}, /* same name, other objects */
        {"{\"\":1}", 0, OK},
    };
    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_strings(void **state)
{
    static const struct {
        const char *in;
        const char *want; /* decoded bytes; NULL: refused */
        size_t want_len;
    } cases[] = {
        {"\"\"", "", 0},
        {"\"abc\"", "abc", 3},
        {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8},
        {"\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac", 6},
        {"\"\\u0000\"", "\0", 1},
        {"\"\\u007f\\u0080\\u07ff\\u0800\\uffff\"", "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf",
         11},
        /* Surrogate pairs: U+1F600 and the extremes U+10000, U+10FFFF. */
        {"\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4},
        {"\"\\uD800\\uDC00\"", "\xf0\x90\x80\x80", 4},
        {"\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf", 4},
        /* Raw UTF-8 passes through; DEL is not a JSON control character. */
        {"\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
         "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14},
        {"\"\x7f\"", "\x7f", 1},
        {"\"\xf4\x8f\xbf\xbf\"", "\xf4\x8f\xbf\xbf", 4},
        /* Refused. */
        {"\"abc", NULL, 0},
        {"\"abc\\\"", NULL, 0},
        {"\"\\", NULL, 0},
        {"\"a\nb\"", NULL, 0},
        {"\"a\tb\"", NULL, 0},
        {"\"\x01\"", NULL, 0},
        {"\"\\x41\"", NULL, 0},
        {"\"\\U0041\"", NULL, 0},
        {"\"\\'\"", NULL, 0},
        {"\"\\u12\"", NULL, 0},
        {"\"\\u12G4\"", NULL, 0},
        {"\"\\ud83d\"", NULL, 0},        /* lone high surrogate */
        {"\"\\ude00\"", NULL, 0},        /* lone low surrogate */
        {"\"\\ud83dx\"", NULL, 0},       /* high surrogate then not an escape */
        {"\"\\ud83d\\u0041\"", NULL, 0}, /* high surrogate then not a low one */
        {"\"\\ud83d\\ud83d\"", NULL, 0},
        {"\"\\ude00\\ud83d\"", NULL, 0}, /* pair in the wrong order */
        {"\"\xc0\x80\"", NULL, 0},       /* overlong NUL */
        {"\"\xc1\xbf\"", NULL, 0},       /* overlong */
        {"\"\xe0\x80\xaf\"", NULL, 0},   /* overlong '/' */
        {"\"\xf0\x80\x80\xaf\"", NULL, 0},
        {"\"\xed\xa0\x80\"", NULL, 0},     /* UTF-8 encoded surrogate */
        {"\"\xf4\x90\x80\x80\"", NULL, 0}, /* above U+10FFFF */
        {"\"\xf5\x80\x80\x80\"", NULL, 0},
        {"\"\xff\"", NULL, 0},
        {"\"\x80\"", NULL, 0},         /* lone continuation byte */
        {"\"\xe2\x82\"", NULL, 0},     /* truncated sequence */
        {"\"\xe2\x82\"\"", NULL, 0},   /* truncated, the quote is not a continuation */
        {"\"\xc3\x28\"", NULL, 0},     /* bad continuation */
        {"\"\xf0\x9f\x98\"", NULL, 0}, /* truncated 4-byte sequence */
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *error = NULL;
        struct json_value *v = json_parse(cases[i].in, strlen(cases[i].in), &error, NULL);
        if ((v != NULL) != (cases[i].want != NULL))
            print_error("case %zu: %s\n", i, v != NULL ? "accepted" : error);
        if (cases[i].want == NULL) {
            assert_null(v);
            assert_non_null(error);
            continue;
        }
        assert_non_null(v);
        assert_int_equal(v->type, JSON_STRING);
        assert_int_equal(v->u.str.len, cases[i].want_len);
        assert_memory_equal(v->u.str.s, cases[i].want, cases[i].want_len);
        assert_int_equal(v->u.str.s[v->u.str.len], '\0');
        /* json_string() hides strings with a NUL inside. */
        if (memchr(cases[i].want, '\0', cases[i].want_len) != NULL)
            assert_null(json_string(v));
        else
            assert_string_equal(json_string(v), cases[i].want);
        json_free(&v);
    }
}

static void test_numbers(void **state)
{
    static const struct {
        const char *in;
        int type; /* JSON_INT, JSON_DOUBLE, or -1: refused */
        int64_t i;
        double d;
    } cases[] = {
        {"0", JSON_INT, 0, 0},
        {"-0", JSON_INT, 0, 0},
        {"7", JSON_INT, 7, 0},
        {"-7", JSON_INT, -7, 0},
        {"1700000000", JSON_INT, 1700000000, 0},
        {"9223372036854775807", JSON_INT, INT64_MAX, 0},
        {"-9223372036854775808", JSON_INT, INT64_MIN, 0},
        /* Integers beyond int64 become doubles rather than wrapping. */
        {"9223372036854775808", JSON_DOUBLE, 0, 9223372036854775808.0},
        {"-9223372036854775809", JSON_DOUBLE, 0, -9223372036854775809.0},
        {"100000000000000000000", JSON_DOUBLE, 0, 1e20},
        {"1.5", JSON_DOUBLE, 0, 1.5},
        {"-0.25", JSON_DOUBLE, 0, -0.25},
        {"1.0", JSON_DOUBLE, 0, 1.0},
        {"1e3", JSON_DOUBLE, 0, 1000.0},
        {"1E+2", JSON_DOUBLE, 0, 100.0},
        {"-1.25e-2", JSON_DOUBLE, 0, -0.0125},
        {"0e0", JSON_DOUBLE, 0, 0.0},
        {"1e-400", JSON_DOUBLE, 0, 0.0}, /* underflow is harmless */
        {"1e400", -1, 0, 0},             /* infinity is not JSON */
        {"-1e400", -1, 0, 0},
        {"01", -1, 0, 0},
        {"-01", -1, 0, 0},
        {"00", -1, 0, 0},
        {"-", -1, 0, 0},
        {"+1", -1, 0, 0},
        {"1.", -1, 0, 0},
        {".5", -1, 0, 0},
        {"1.e3", -1, 0, 0},
        {"1e", -1, 0, 0},
        {"1e+", -1, 0, 0},
        {"0x10", -1, 0, 0},
        {"1_000", -1, 0, 0},
        {"Infinity", -1, 0, 0},
        {"NaN", -1, 0, 0},
        {"- 1", -1, 0, 0},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *error = NULL;
        struct json_value *v = json_parse(cases[i].in, strlen(cases[i].in), &error, NULL);
        if ((v != NULL) != (cases[i].type >= 0))
            print_error("case '%s': %s\n", cases[i].in, v != NULL ? "accepted" : error);
        if (cases[i].type < 0) {
            assert_null(v);
            continue;
        }
        assert_non_null(v);
        assert_int_equal(v->type, cases[i].type);
        double d = -1;
        assert_true(json_number(v, &d));
        if (cases[i].type == JSON_INT) {
            assert_true(v->u.i == cases[i].i);
            assert_true(d == (double)cases[i].i);
        } else {
            assert_true(v->u.d == cases[i].d);
            assert_true(d == cases[i].d);
        }
        json_free(&v);
    }
}

/* n nested arrays (or objects) around a 1. */
static char *nested(unsigned n, bool objects)
{
    char *s = malloc(n * 6 + 2), *p = s;
    assert_non_null(s);
    for (unsigned i = 0; i < n; i++)
        p += sprintf(p, "%s", objects ? "{\"a\":" : "[");
    *p++ = '1';
    for (unsigned i = 0; i < n; i++)
        *p++ = objects ? '}' : ']';
    *p = '\0';
    return s;
}

static void test_depth(void **state)
{
    (void)state;
    for (int objects = 0; objects <= 1; objects++) {
        for (unsigned n = 30; n <= 34; n++) {
            char *s = nested(n, objects);
            const char *error = NULL;
            struct json_value *v = json_parse(s, strlen(s), &error, NULL);
            if (n <= JSON_MAX_DEPTH) {
                assert_non_null(v);
                /* Walk down to the 1 at the bottom. */
                const struct json_value *p = v;
                for (unsigned i = 0; i < n; i++)
                    p = objects ? json_get(p, "a") : &p->u.arr.items[0];
                assert_non_null(p);
                assert_int_equal(p->type, JSON_INT);
                assert_int_equal(p->u.i, 1);
            } else {
                assert_null(v);
                assert_string_equal(error, "nesting too deep");
            }
            json_free(&v);
            free(s);
        }
    }
    /* A deep input fails fast at the limit, without touching the stack. */
    size_t n = 1000000;
    char *deep = malloc(n);
    assert_non_null(deep);
    memset(deep, '[', n);
    const char *error = NULL;
    size_t off = 0;
    assert_null(json_parse(deep, n, &error, &off));
    assert_string_equal(error, "nesting too deep");
    assert_int_equal(off, JSON_MAX_DEPTH);
    free(deep);
}

static void test_tree(void **state)
{
    const char *doc = "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\"},{\"kty\":\"EC\"}],"
                      "\"x\":null,\"t\":true,\"f\":false,\"n\":-3,\"d\":2.5,\"s\":\"a\\u0000b\"}";
    const char *error = NULL;
    (void)state;
    struct json_value *v = json_parse(doc, strlen(doc), &error, NULL);
    assert_non_null(v);
    assert_int_equal(v->type, JSON_OBJECT);
    assert_int_equal(v->u.obj.count, 7);
    /* Document order is kept. */
    assert_string_equal(v->u.obj.members[0].key, "keys");
    assert_string_equal(v->u.obj.members[6].key, "s");

    const struct json_value *keys = json_get(v, "keys");
    assert_non_null(keys);
    assert_int_equal(keys->type, JSON_ARRAY);
    assert_int_equal(keys->u.arr.count, 2);
    assert_string_equal(json_string(json_get(&keys->u.arr.items[0], "kty")), "RSA");
    assert_string_equal(json_string(json_get(&keys->u.arr.items[0], "n")), "AQAB");
    assert_string_equal(json_string(json_get(&keys->u.arr.items[1], "kty")), "EC");
    assert_null(json_get(&keys->u.arr.items[1], "n"));

    assert_int_equal(json_get(v, "x")->type, JSON_NULL);
    assert_int_equal(json_get(v, "t")->type, JSON_TRUE);
    assert_int_equal(json_get(v, "f")->type, JSON_FALSE);
    assert_int_equal(json_get(v, "n")->u.i, -3);
    assert_true(json_get(v, "d")->u.d == 2.5);
    assert_int_equal(json_get(v, "s")->u.str.len, 3);
    assert_null(json_string(json_get(v, "s")));
    double d;
    assert_false(json_number(json_get(v, "s"), &d));
    assert_false(json_number(NULL, &d));

    /* Lookups on what is not an object, or a missing name. */
    assert_null(json_get(v, "missing"));
    assert_null(json_get(v, "KEYS"));
    assert_null(json_get(keys, "kty"));
    assert_null(json_get(NULL, "kty"));
    assert_null(json_string(keys));
    assert_null(json_string(NULL));
    json_free(&v);
    assert_null(v);
    json_free(&v); /* a second free is a no-op */
    json_free(NULL);
}

static void test_error_offset(void **state)
{
    const char *error = NULL;
    size_t off = 99;
    (void)state;
    assert_null(json_parse("{\"a\": [1, 2, x]}", 16, &error, &off));
    assert_string_equal(error, "unexpected character");
    assert_int_equal(off, 13);
    assert_null(json_parse("[\"ok\", \"b\x01\"]", 12, &error, &off));
    assert_string_equal(error, "control character in a string");
    assert_int_equal(off, 9);
}

/* An object with many members: duplicates are found anywhere. */
static void test_many_members(void **state)
{
    size_t n = 5000;
    char *s = malloc(n * 16 + 32), *p = s;
    const char *error = NULL;
    (void)state;
    assert_non_null(s);
    p += sprintf(p, "{");
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s\"k%zu\":%zu", i ? "," : "", i, i);
    strcpy(p, "}");
    struct json_value *v = json_parse(s, strlen(s), &error, NULL);
    assert_non_null(v);
    assert_int_equal(v->u.obj.count, n);
    assert_int_equal(json_get(v, "k4999")->u.i, 4999);
    json_free(&v);

    sprintf(p, ",\"k1234\":0}");
    assert_null(json_parse(s, strlen(s), &error, NULL));
    assert_string_equal(error, "duplicate member name");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_documents),    cmocka_unit_test(test_strings),
        cmocka_unit_test(test_numbers),      cmocka_unit_test(test_depth),
        cmocka_unit_test(test_tree),         cmocka_unit_test(test_error_offset),
        cmocka_unit_test(test_many_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
