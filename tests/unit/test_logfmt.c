/* The audit-log reader (src/lib/logfmt.c): it must read back exactly what
 * src/guard/audit.c writes, whatever bytes a client put in a value, and
 * refuse everything else with the place of the error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guard/audit.h"
#include "lib/logfmt.h"

struct kv {
    const char *key, *value;
};

struct line_case {
    const char *in;
    const char *error; /* NULL: accepted; else the exact error */
    size_t pos;        /* where the error is */
    struct kv want[6]; /* accepted: the fields in order */
};

static const struct line_case cases[] = {
    /* What the server writes. */
    {"ts=2026-11-27T10:00:00.000Z level=info event=auth_fail sid=4f2a ip=203.0.113.7 port=51234",
     NULL,
     0,
     {{"ts", "2026-11-27T10:00:00.000Z"},
      {"level", "info"},
      {"event", "auth_fail"},
      {"sid", "4f2a"},
      {"ip", "203.0.113.7"},
      {"port", "51234"}}},
    {"user=\"alice\" reason=\"bad password\" ip=2001:db8::1",
     NULL,
     0,
     {{"user", "alice"}, {"reason", "bad password"}, {"ip", "2001:db8::1"}}},
    {"net=2001:db8:1:2::/64 until=2026-11-27T10:15:00Z",
     NULL,
     0,
     {{"net", "2001:db8:1:2::/64"}, {"until", "2026-11-27T10:15:00Z"}}},
    /* Escapes: \" \\ and \xHH in either case. */
    {"u=\"a\\\"b\\\\c\\x1b\\x7F\\xe9\"", NULL, 0, {{"u", "a\"b\\c\x1b\x7f\xe9"}}},
    {"u=\"\"", NULL, 0, {{"u", ""}}},
    {"u=\"x ip=6.6.6.6 y\" ip=1.2.3.4", NULL, 0, {{"u", "x ip=6.6.6.6 y"}, {"ip", "1.2.3.4"}}},
    {"_k9=v K_=\"=\"", NULL, 0, {{"_k9", "v"}, {"K_", "="}}},
    {"a=b", NULL, 0, {{"a", "b"}}},
    /* Refused, with the offset of the problem. */
    {"", "empty line", 0, {{0}}},
    {" a=b", "expected a key", 0, {{0}}},
    {"a=b ", "trailing space", 3, {{0}}},
    {"a=b  c=d", "expected a key", 4, {{0}}},
    {"a=b\tc=d", "expected a space between fields", 3, {{0}}},
    {"9a=b", "expected a key", 0, {{0}}},
    {"a-b=c", "expected '=' after the key", 1, {{0}}},
    {"ab", "expected '=' after the key", 2, {{0}}},
    {"a=", "empty value (write \"\")", 2, {{0}}},
    {"a= b=c", "empty value (write \"\")", 2, {{0}}},
    {"a=b=c", "unexpected character in a bare value", 3, {{0}}},
    {"a=b\"c\"", "unexpected character in a bare value", 3, {{0}}},
    {"a=b\\", "unexpected character in a bare value", 3, {{0}}},
    {"a=\"b\"c", "expected a space between fields", 5, {{0}}},
    {"a=\"b", "unterminated quoted value", 4, {{0}}},
    {"a=\"b\\", "unterminated quoted value", 5, {{0}}},
    {"a=\"\\n\"", "unknown escape (only \\\" \\\\ \\xHH)", 3, {{0}}},
    {"a=\"\\x4\"", "\\x not followed by two hex digits", 3, {{0}}},
    {"a=\"\\xg0\"", "\\x not followed by two hex digits", 3, {{0}}},
    {"a=\"\\x00\"", "NUL byte in value", 3, {{0}}},
    {"a=\"tab\there\"", "control or non-ASCII byte", 6, {{0}}},
    {"a=\"caf\xc3\xa9\"", "control or non-ASCII byte", 6, {{0}}},
    {"a=\"del\x7f\"", "control or non-ASCII byte", 6, {{0}}},
    {"a=caf\xc3\xa9", "expected a space between fields", 5, {{0}}},
    {"a=b\r", "expected a space between fields", 3, {{0}}},
    {"a=1 b=2 a=3", "duplicate key", 8, {{0}}},
};

static void test_lines(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct line_case *c = &cases[i];
        size_t len = strlen(c->in);
        char *buf = malloc(len + 1);
        struct logfmt f;
        const char *error = NULL;
        size_t pos = 12345;

        memcpy(buf, c->in, len + 1);
        int r = logfmt_parse(buf, len, &f, &error, &pos);
        if (c->error == NULL) {
            if (r != 0)
                print_error("case %zu '%s': %s at %zu\n", i, c->in, error, pos);
            assert_int_equal(r, 0);
            size_t n = 0;
            while (n < 6 && c->want[n].key != NULL)
                n++;
            assert_int_equal(f.count, n);
            for (size_t k = 0; k < n; k++) {
                assert_string_equal(f.fields[k].key, c->want[k].key);
                assert_string_equal(f.fields[k].value, c->want[k].value);
                assert_int_equal(f.fields[k].value_len, strlen(c->want[k].value));
                assert_string_equal(logfmt_get(&f, c->want[k].key), c->want[k].value);
            }
        } else {
            if (r == 0 || strcmp(error, c->error) != 0 || pos != c->pos)
                print_error("case %zu '%s': got %s at %zu\n", i, c->in, r == 0 ? "OK" : error, pos);
            assert_int_equal(r, -1);
            assert_string_equal(error, c->error);
            assert_int_equal(pos, c->pos);
        }
        free(buf);
    }
}

static void test_get_missing(void **state)
{
    char line[] = "a=1 b=\"2\"";
    struct logfmt f;
    const char *error;
    size_t pos;

    (void)state;
    assert_int_equal(logfmt_parse(line, strlen(line), &f, &error, &pos), 0);
    assert_null(logfmt_get(&f, "c"));
    assert_null(logfmt_get(&f, "A"));
    assert_string_equal(logfmt_get(&f, "b"), "2");
}

static void test_too_many_fields(void **state)
{
    char line[LOGFMT_MAX_FIELDS * 8 + 16];
    size_t len = 0;
    struct logfmt f;
    const char *error;
    size_t pos;

    (void)state;
    for (int i = 0; i < LOGFMT_MAX_FIELDS; i++)
        len += (size_t)sprintf(line + len, "%sk%d=v", i ? " " : "", i);
    char *copy = strdup(line);
    assert_int_equal(logfmt_parse(copy, len, &f, &error, &pos), 0);
    assert_int_equal(f.count, LOGFMT_MAX_FIELDS);
    free(copy);
    len += (size_t)sprintf(line + len, " one=more");
    assert_int_equal(logfmt_parse(line, len, &f, &error, &pos), -1);
    assert_string_equal(error, "too many fields");
}

/* Every byte a client can put in a user name comes back unchanged from a
 * line written by the audit module itself. */
static void test_audit_round_trip(void **state)
{
    char user[256];
    struct audit_line a;
    struct logfmt f;
    const char *error;
    size_t pos;

    (void)state;
    for (int i = 1; i < 256; i++)
        user[i - 1] = (char)i;
    user[255] = '\0';
    audit_begin(&a, "info", "auth_fail");
    audit_tok(&a, "sid", "4f2a");
    audit_tok(&a, "ip", "2001:db8::1");
    audit_uint(&a, "port", 51234);
    audit_str(&a, "user", user);
    audit_tok(&a, "reason", "bad password"); /* a token with a space is quoted */
    audit_str(&a, "empty", "");
    assert_true(a.len < sizeof(a.buf));
    a.buf[a.len] = '\0';
    int r = logfmt_parse(a.buf, a.len, &f, &error, &pos);
    if (r != 0)
        print_error("%s at %zu\n", error, pos);
    assert_int_equal(r, 0);
    assert_int_equal(f.count, 9);
    assert_string_equal(logfmt_get(&f, "event"), "auth_fail");
    assert_string_equal(logfmt_get(&f, "port"), "51234");
    assert_string_equal(logfmt_get(&f, "user"), user);
    assert_string_equal(logfmt_get(&f, "reason"), "bad password");
    assert_string_equal(logfmt_get(&f, "empty"), "");
    int64_t ms;
    assert_int_equal(logfmt_parse_time(logfmt_get(&f, "ts"), &ms), 0);
    assert_true(ms > 1700000000000LL);
}

static void test_time(void **state)
{
    static const struct {
        const char *in;
        int ok;
        int64_t ms;
    } t[] = {
        {"1970-01-01T00:00:00Z", 1, 0},
        {"1970-01-01T00:00:00.001Z", 1, 1},
        {"2026-11-27T10:00:00.000Z", 1, 1795773600000LL},
        {"2026-11-27T10:00:00Z", 1, 1795773600000LL},
        {"2026-11-27T10:00:00.123Z", 1, 1795773600123LL},
        {"2026-11-27T10:00:00.5Z", 1, 1795773600500LL},
        {"2026-11-27T10:00:00.123456789Z", 1, 1795773600123LL},
        {"2000-02-29T23:59:59Z", 1, 951868799000LL},
        {"1999-12-31T23:59:59Z", 1, 946684799000LL},
        {"2038-01-19T03:14:08Z", 1, 2147483648000LL},
        {"2100-03-01T00:00:00Z", 1, 4107542400000LL},
        {"2024-02-29T00:00:00Z", 1, 1709164800000LL},
        {"2023-02-29T00:00:00Z", 0, 0},
        {"2100-02-29T00:00:00Z", 0, 0},
        {"2026-04-31T00:00:00Z", 0, 0},
        {"2026-00-10T00:00:00Z", 0, 0},
        {"2026-13-10T00:00:00Z", 0, 0},
        {"2026-11-00T00:00:00Z", 0, 0},
        {"2026-11-27T24:00:00Z", 0, 0},
        {"2026-11-27T10:60:00Z", 0, 0},
        {"2026-11-27T10:00:60Z", 0, 0},
        {"2026-11-27T10:00:00", 0, 0},
        {"2026-11-27T10:00:00+00:00", 0, 0},
        {"2026-11-27 10:00:00Z", 0, 0},
        {"2026-11-27T10:00:00.Z", 0, 0},
        {"2026-11-27T10:00:00.1234567890Z", 0, 0},
        {"2026-11-27T10:00:00ZZ", 0, 0},
        {"2026-11-7T10:00:00Z", 0, 0},
        {"+026-11-27T10:00:00Z", 0, 0},
        {"", 0, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        int64_t ms = -1;
        int r = logfmt_parse_time(t[i].in, &ms);
        if ((r == 0) != t[i].ok || (r == 0 && ms != t[i].ms))
            print_error("case %zu '%s': r=%d ms=%lld\n", i, t[i].in, r, (long long)ms);
        assert_int_equal(r == 0, t[i].ok);
        if (t[i].ok)
            assert_int_equal(ms, t[i].ms);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_get_missing),
        cmocka_unit_test(test_too_many_fields),
        cmocka_unit_test(test_audit_round_trip),
        cmocka_unit_test(test_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
