/* The guard's arithmetic (src/guard/ratelimit.c): networks, CIDR lists,
 * the doubling delay, repeated pairs, bans and their expiry, LOGIN-DELAY. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "guard/audit.h"
#include "guard/guard.h"

static struct sockaddr_storage addr(const char *ip)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (strchr(ip, ':') != NULL) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
    }
    return ss;
}

static struct guard_settings settings(void)
{
    struct guard_settings s = {
        .max_connections = 100,
        .max_connections_per_ip = 10,
        .max_preauth_per_ip = 2,
        .failure_delay = 2,
        .failure_delay_max = 15,
        .ban_after = 4,
        .ban_window = 600,
        .ban_time = 900,
        .ipv6_prefix = 64,
        .alert_window = 3600,
    };
    return s;
}

static unsigned attempt(struct guard *g, const char *ip, const char *user, unsigned char pairbyte,
                        bool ok, time_t now, struct guard_decision *d)
{
    struct sockaddr_storage ss = addr(ip);
    unsigned char pair[16];

    memset(pair, pairbyte, sizeof(pair));
    struct guard_attempt at = {.sa = (struct sockaddr *)&ss,
                               .ip = ip,
                               .user = user,
                               .pair = pair,
                               .ok = ok,
                               .failure = !ok,
                               .now = now};
    guard_login(g, &at, d);
    return d->delay_ms;
}

static void test_nets_and_cidrs(void **state)
{
    struct guard_settings s = settings();
    const char *error;
    char out[64];
    (void)state;

    struct guard *g = guard_new(&s);
    struct sockaddr_storage a = addr("2001:db8:1:2:aaaa::1"), b = addr("2001:db8:1:2:bbbb::2"),
                            c = addr("2001:db8:1:3::1"), v4 = addr("203.0.113.7");
    struct guard_net na, nb, nc, n4;
    guard_net_of(g, (struct sockaddr *)&a, &na);
    guard_net_of(g, (struct sockaddr *)&b, &nb);
    guard_net_of(g, (struct sockaddr *)&c, &nc);
    guard_net_of(g, (struct sockaddr *)&v4, &n4);
    assert_true(guard_net_equal(&na, &nb)); /* one /64 */
    assert_false(guard_net_equal(&na, &nc));
    guard_net_format(g, &na, out, sizeof(out));
    assert_string_equal(out, "2001:db8:1:2::/64");
    guard_net_format(g, &n4, out, sizeof(out));
    assert_string_equal(out, "203.0.113.7/32");

    assert_int_equal(guard_parse_trusted("10.0.0.0/8, 2001:db8::/32,192.0.2.1", &s, &error), 0);
    assert_int_equal(s.n_trusted, 3);
    guard_free(&g);
    g = guard_new(&s);
    struct sockaddr_storage t1 = addr("10.200.3.4"), t2 = addr("2001:db8:ffff::1"),
                            t3 = addr("192.0.2.1"), u1 = addr("192.0.2.2"), u2 = addr("11.0.0.1");
    assert_true(guard_is_trusted(g, (struct sockaddr *)&t1));
    assert_true(guard_is_trusted(g, (struct sockaddr *)&t2));
    assert_true(guard_is_trusted(g, (struct sockaddr *)&t3));
    assert_false(guard_is_trusted(g, (struct sockaddr *)&u1));
    assert_false(guard_is_trusted(g, (struct sockaddr *)&u2));
    guard_free(&g);

    struct guard_cidr cidr;
    assert_int_equal(guard_parse_cidr("10.0.0.0/33", 11, &cidr), -1);
    assert_int_equal(guard_parse_cidr("10.0.0.0/", 9, &cidr), -1);
    assert_int_equal(guard_parse_cidr("::/129", 6, &cidr), -1);
    assert_int_equal(guard_parse_cidr("example.org", 11, &cidr), -1);
    assert_int_equal(guard_parse_trusted("10.0.0.0/8 junk", &s, &error), -1);
}

static void test_delay_doubles_repeats_and_bans(void **state)
{
    struct guard_settings s = settings();
    struct guard_decision d;
    /* guard_conn_open() looks at the clock itself. */
    const time_t T = time(NULL);
    (void)state;

    struct guard *g = guard_new(&s);
    assert_int_equal(attempt(g, "198.51.100.1", "alice", 1, false, T + 0, &d), 2000);
    assert_int_equal(attempt(g, "198.51.100.1", "alice", 2, false, T + 1, &d), 4000);
    /* The same pair again: no higher, and it does not count to the ban. */
    assert_int_equal(attempt(g, "198.51.100.1", "alice", 2, false, T + 2, &d), 4000);
    assert_int_equal(attempt(g, "198.51.100.1", "alice", 3, false, T + 3, &d), 8000);
    assert_false(d.banned);
    assert_int_equal(attempt(g, "198.51.100.1", "bob", 4, false, T + 4, &d), 15000); /* capped */
    assert_true(d.banned);
    assert_int_equal(guard_bans_active(g), 1);
    /* A connection of the banned net that was still waiting for an answer
     * is refused even with the right password. */
    attempt(g, "198.51.100.1", "alice", 7, true, T + 5, &d);
    assert_true(d.refused);
    assert_int_equal(d.delay_ms, 15000);
    struct sockaddr_storage ss = addr("198.51.100.1");
    assert_int_equal(guard_conn_open(g, (struct sockaddr *)&ss), GUARD_BANNED);
    /* Another address: untouched. A success resets only its own net. */
    assert_int_equal(attempt(g, "198.51.100.2", "alice", 1, false, T + 5, &d), 2000);
    attempt(g, "198.51.100.2", "alice", 9, true, T + 6, &d);
    assert_int_equal(attempt(g, "198.51.100.2", "alice", 5, false, T + 7, &d), 2000);
    /* The ban ends. */
    guard_expire(g, T + 4 + 900);
    assert_int_equal(guard_bans_active(g), 0);
    assert_int_equal(guard_conn_open(g, (struct sockaddr *)&ss), GUARD_ACCEPT);
    guard_conn_close(g, (struct sockaddr *)&ss, false);
    guard_free(&g);
}

static void test_preauth_and_login_delay(void **state)
{
    struct guard_settings s = settings();
    struct guard_decision d;
    (void)state;

    s.login_delay = 60;
    struct guard *g = guard_new(&s);
    struct sockaddr_storage ss = addr("192.0.2.9");
    struct sockaddr *sa = (struct sockaddr *)&ss;
    assert_int_equal(guard_conn_open(g, sa), GUARD_ACCEPT);
    assert_int_equal(guard_conn_open(g, sa), GUARD_ACCEPT);
    assert_int_equal(guard_conn_open(g, sa), GUARD_TOO_MANY_PREAUTH);
    guard_conn_authenticated(g, sa);
    assert_int_equal(guard_conn_open(g, sa), GUARD_ACCEPT);
    guard_conn_close(g, sa, true);
    guard_conn_close(g, sa, false);
    guard_conn_close(g, sa, false);
    assert_int_equal(guard_connections(g), 0);

    attempt(g, "192.0.2.9", "carol", 1, true, 5000, &d);
    assert_false(d.too_soon);
    attempt(g, "192.0.2.9", "carol", 1, true, 5030, &d);
    assert_true(d.too_soon);
    attempt(g, "192.0.2.9", "carol", 1, true, 5061, &d);
    assert_false(d.too_soon);
    guard_free(&g);
}

int main(void)
{
    const char *error;

    /* Audit lines (ban, unban) go to stderr. */
    audit_open("stderr", &error);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nets_and_cidrs),
        cmocka_unit_test(test_delay_doubles_repeats_and_bans),
        cmocka_unit_test(test_preauth_and_login_delay),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    audit_close();
    return r;
}
