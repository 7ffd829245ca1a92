/* The small string helpers (src/lib/str.c), str_parse_u64 above all: it
 * guards every number a client or the configuration gives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "lib/str.h"

#define NAN_ "not a number"
#define JUNK "trailing characters after number"
#define BIG  "number too large"
#define NEG  "must not be negative"
#define SIGN "must not have a sign"

static void test_parse_u64(void **state)
{
    static const struct {
        const char *s;
        uint64_t max;
        const char *error; /* NULL: accepted */
        uint64_t value;
    } cases[] = {
        {"0", 10, NULL, 0},
        {"7", 10, NULL, 7},
        {"10", 10, NULL, 10},
        {"11", 10, BIG, 0},
        {"100", 10, BIG, 0},
        {"007", 10, NULL, 7},
        {"0000000000000000000000000000001", UINT64_MAX, NULL, 1},
        {"", 10, NAN_, 0},
        {"x", 10, NAN_, 0},
        {"-1", 10, NEG, 0},
        {"+1", 10, SIGN, 0},
        {"-", 10, NEG, 0},
        {"--1", 10, NEG, 0},
        {" 1", 10, NAN_, 0},
        {"1 ", 10, JUNK, 0},
        {"1x", 10, JUNK, 0},
        {"1.0", 10, JUNK, 0},
        {"0x1", 10, JUNK, 0},
        {"1/", 10, JUNK, 0}, /* '/' is just below '0' */
        {"1:", 10, JUNK, 0}, /* ':' is just above '9' */
        {"\xb1", 10, NAN_, 0},
        /* max = 0 allows only zero. */
        {"0", 0, NULL, 0},
        {"00", 0, NULL, 0},
        {"1", 0, BIG, 0},
        /* The 64-bit boundary. */
        {"18446744073709551615", UINT64_MAX, NULL, UINT64_MAX},
        {"18446744073709551616", UINT64_MAX, BIG, 0},
        {"18446744073709551620", UINT64_MAX, BIG, 0},
        {"99999999999999999999", UINT64_MAX, BIG, 0},
        {"184467440737095516150", UINT64_MAX, BIG, 0},
        /* The limits the protocol uses. */
        {"4294967295", UINT32_MAX, NULL, UINT32_MAX},
        {"4294967296", UINT32_MAX, BIG, 0},
        {"9223372036854775807", INT64_MAX, NULL, INT64_MAX},
        {"9223372036854775808", INT64_MAX, BIG, 0},
        /* A max that is not a power of ten minus one. */
        {"65535", 65535, NULL, 65535},
        {"65536", 65535, BIG, 0},
        {"65540", 65535, BIG, 0},
        {"70000", 65535, BIG, 0},
        {"06553", 65535, NULL, 6553},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t v = 12345;
        const char *error = NULL;
        int r = str_parse_u64(cases[i].s, strlen(cases[i].s), cases[i].max, &v, &error);
        if (cases[i].error == NULL) {
            if (r != 0)
                print_error("\"%s\" refused: %s\n", cases[i].s, error);
            assert_int_equal(r, 0);
            assert_int_equal(v, cases[i].value);
        } else {
            if (r != -1)
                print_error("\"%s\" accepted\n", cases[i].s);
            assert_int_equal(r, -1);
            assert_string_equal(error, cases[i].error);
            /* The output is left alone on failure. */
            assert_int_equal(v, 12345);
        }
    }
}

static void test_parse_u64_length(void **state)
{
    uint64_t v = 0;
    const char *error = NULL;

    (void)state;
    /* Only len bytes are looked at: no terminator needed. */
    assert_int_equal(str_parse_u64("123abc", 3, 1000, &v, &error), 0);
    assert_int_equal(v, 123);
    assert_int_equal(str_parse_u64("123", 2, 1000, &v, &error), 0);
    assert_int_equal(v, 12);
    assert_int_equal(str_parse_u64("5\0"
                                   "5",
                                   3, 1000, &v, &error),
                     -1);
    assert_string_equal(error, JUNK);
    assert_int_equal(str_parse_u64("123", 0, 1000, &v, &error), -1);
    assert_string_equal(error, NAN_);
}

static void test_copy(void **state)
{
    char buf[4];

    (void)state;
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(str_copy(buf, "ab", sizeof(buf)), 2);
    assert_string_equal(buf, "ab");
    assert_int_equal(str_copy(buf, "abcdef", sizeof(buf)), 6);
    assert_string_equal(buf, "abc");
    assert_int_equal(str_copy(buf, "", sizeof(buf)), 0);
    assert_string_equal(buf, "");
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(str_copy(buf, "abc", 0), 3);
    assert_int_equal(buf[0], 'x');
    assert_int_equal(str_copy(buf, "abc", 1), 3);
    assert_string_equal(buf, "");
}

static void test_eq_nocase(void **state)
{
    (void)state;
    assert_true(str_eq_nocase("retr", 4, "RETR"));
    assert_true(str_eq_nocase("ReTr", 4, "RETR"));
    assert_true(str_eq_nocase("RETR 1", 4, "RETR"));
    assert_false(str_eq_nocase("RET", 3, "RETR"));
    assert_false(str_eq_nocase("RETRX", 5, "RETR"));
    assert_false(str_eq_nocase("", 0, "RETR"));
    assert_true(str_eq_nocase("", 0, ""));
    assert_false(str_eq_nocase("TOP", 3, "TOQ"));
    /* Only ASCII letters fold: '@' is not '`', '[' is not '{'. */
    assert_false(str_eq_nocase("@", 1, "`"));
    assert_false(str_eq_nocase("[", 1, "{"));
    assert_true(str_eq_nocase("sha512-crypt", 12, "SHA512-CRYPT"));
    /* A NUL in the input does not end it early. */
    assert_false(str_eq_nocase("TO\0", 3, "TO"));
}

static void test_hex(void **state)
{
    char out[9];
    static const unsigned char in[] = {0x00, 0x0f, 0xa5, 0xff};

    (void)state;
    memset(out, 'x', sizeof(out));
    str_hex(in, sizeof(in), out);
    assert_string_equal(out, "000fa5ff");
    str_hex(in, 0, out);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_u64), cmocka_unit_test(test_parse_u64_length),
        cmocka_unit_test(test_copy),      cmocka_unit_test(test_eq_nocase),
        cmocka_unit_test(test_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
