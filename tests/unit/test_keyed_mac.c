/* The keyed (user, secret) MAC (src/lib/keyed_mac.c) behind the guard's
 * password memory and the auth cache: known answers, the NUL that keeps
 * the two parts apart, and concurrent use of one key from several
 * threads, which is how the I/O threads and auth pool threads share it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include "lib/keyed_mac.h"
#include "lib/str.h"

static const unsigned char key0[KEYED_MAC_KEY_LEN] = {
    0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
};

static void mac_hex(const struct keyed_mac *km, const char *user, const char *secret,
                    char hex[2 * KEYED_MAC_LEN + 1])
{
    unsigned char mac[KEYED_MAC_LEN];

    assert_true(keyed_mac_pair(km, user, secret, strlen(secret), mac));
    str_hex(mac, sizeof(mac), hex);
}

/* The expected values are Python's hmac.new(bytes(range(32)), msg,
 * hashlib.sha256), an implementation other than the one under test. */
static void test_known_answers(void **state)
{
    struct keyed_mac *km = keyed_mac_new(key0);
    char hex[2 * KEYED_MAC_LEN + 1];

    (void)state;
    assert_non_null(km);
    mac_hex(km, "alice", "correct horse", hex);
    assert_string_equal(hex, "e5fec3bac60913c6af9468c23b8d2ef93013c11efdfbfb9c3b743387538a53ba");
    /* An empty secret still covers the NUL after the name. */
    mac_hex(km, "alice", "", hex);
    assert_string_equal(hex, "ddba9b6c0e0c40efb00e6e276d720c65321265ca0b8ba161fd2b86047a0a1e3c");
    /* The same key gives the same answer every time: nothing in the
     * shared state is used up by a call. */
    mac_hex(km, "alice", "correct horse", hex);
    assert_string_equal(hex, "e5fec3bac60913c6af9468c23b8d2ef93013c11efdfbfb9c3b743387538a53ba");
    keyed_mac_free(&km);
    assert_null(km);
    keyed_mac_free(&km);
}

static void test_parts_stay_apart(void **state)
{
    struct keyed_mac *km = keyed_mac_new(key0);
    char a[2 * KEYED_MAC_LEN + 1], b[2 * KEYED_MAC_LEN + 1];

    (void)state;
    assert_non_null(km);
    mac_hex(km, "ab", "c", a);
    mac_hex(km, "a", "bc", b);
    assert_string_not_equal(a, b);
    keyed_mac_free(&km);
}

/* Two daemons (or one restarted) do not share keys: a MAC from one
 * process is worthless to the next. */
static void test_random_keys_differ(void **state)
{
    struct keyed_mac *k1 = keyed_mac_new(NULL), *k2 = keyed_mac_new(NULL);
    char a[2 * KEYED_MAC_LEN + 1], b[2 * KEYED_MAC_LEN + 1];

    (void)state;
    assert_non_null(k1);
    assert_non_null(k2);
    mac_hex(k1, "alice", "correct horse", a);
    mac_hex(k2, "alice", "correct horse", b);
    assert_string_not_equal(a, b);
    mac_hex(k1, "alice", "correct horse", b);
    assert_string_equal(a, b);
    keyed_mac_free(&k1);
    keyed_mac_free(&k2);
}

struct worker_arg {
    const struct keyed_mac *km;
    int wrong;
};

static void *hammer(void *p)
{
    struct worker_arg *arg = p;
    char hex[2 * KEYED_MAC_LEN + 1];

    for (int i = 0; i < 2000; i++) {
        unsigned char mac[KEYED_MAC_LEN];

        if (!keyed_mac_pair(arg->km, "alice", "correct horse", 13, mac))
            arg->wrong++;
        str_hex(mac, sizeof(mac), hex);
        if (strcmp(hex, "e5fec3bac60913c6af9468c23b8d2ef93013c11efdfbfb9c3b743387538a53ba") != 0)
            arg->wrong++;
    }
    return NULL;
}

static void test_threads_share_one_key(void **state)
{
    struct keyed_mac *km = keyed_mac_new(key0);
    pthread_t t[4];
    struct worker_arg args[4];

    (void)state;
    assert_non_null(km);
    for (int i = 0; i < 4; i++) {
        args[i] = (struct worker_arg){.km = km};
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(args[i].wrong, 0);
    }
    keyed_mac_free(&km);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_parts_stay_apart),
        cmocka_unit_test(test_random_keys_differ),
        cmocka_unit_test(test_threads_share_one_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
