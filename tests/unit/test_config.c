/*
 * The configuration file (src/daemon/config.c): the keys of DESIGN.md
 * section 4 that the key table knows, defaults, paths relative to the
 * file's folder, and errors of the shape "FILE:LINE: [section] key: why".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <limits.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "daemon/config.h"

static char dir[PATH_MAX];       /* the temporary folder, as realpath() gives it */
static char conf[PATH_MAX + 32]; /* dir/postern.conf */

static int group_setup(void **state)
{
    char tmpl[] = "/tmp/postern-test-config-XXXXXX";

    (void)state;
    if (mkdtemp(tmpl) == NULL || realpath(tmpl, dir) == NULL)
        return -1;
    snprintf(conf, sizeof(conf), "%s/postern.conf", dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    unlink(conf);
    rmdir(dir);
    return 0;
}

static void write_conf(const char *text)
{
    FILE *f = fopen(conf, "w");

    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void load_ok(const char *text, struct config *cfg)
{
    char err[1024] = "";

    write_conf(text);
    int r = config_load(conf, cfg, err, sizeof(err));
    if (r != 0)
        print_error("unexpected error: %s\n", err);
    assert_int_equal(r, 0);
}

/* Loads text and expects the error "<conf><suffix>". */
static void load_bad(const char *text, const char *suffix)
{
    struct config cfg;
    char err[1024] = "", want[PATH_MAX + 512];

    write_conf(text);
    assert_int_equal(config_load(conf, &cfg, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s%s", conf, suffix);
    assert_string_equal(err, want);
    /* Nothing is left allocated after a failure. */
    assert_null(cfg.path);
    assert_null(cfg.greeting);
    assert_int_equal(cfg.n_listen, 0);
}

#define REQUIRED                                                                                   \
    "[server]\nlisten = 127.0.0.1:1110\n[auth]\npassdb = passwd-file:users\nrequire_tls = no\n"    \
    "[mail]\nlocation = maildir:mail/%u/Maildir\n"

static void test_full(void **state)
{
    struct config cfg;
    char want[PATH_MAX + 64];

    (void)state;
    load_ok("; Postern\n"
            "# a comment of the other kind\n"
            "\n"
            "[server]\n"
            "listen = 127.0.0.1:1110, [::1]:1110 ; plain POP3\n"
            "greeting = Hello there ; inline comment\n"
            "threads = 4\n"
            "state_dir = state\n"
            "\n"
            "[auth]\n"
            "passdb = passwd-file:users\n"
            "apop = yes\n"
            "require_tls = no\n"
            "\n"
            "[mail]\n"
            "location = maildir:mail/%u/Maildir   ; %u user\n"
            "\n"
            "[limits]\n"
            "login_timeout = 30\n"
            "idle_timeout = 900\n"
            "max_connections = 100\n"
            "max_connections_per_ip = 5\n"
            "max_line = 1024\n"
            "\n"
            "[guard]\n"
            "failure_delay = 3\n"
            "\n"
            "[log]\n"
            "audit = audit.log\n",
            &cfg);
    assert_string_equal(cfg.path, conf);
    assert_string_equal(cfg.dir, dir);
    assert_int_equal(cfg.n_listen, 2);
    assert_string_equal(cfg.listen[0], "127.0.0.1:1110");
    assert_string_equal(cfg.listen[1], "[::1]:1110");
    assert_string_equal(cfg.greeting, "Hello there");
    assert_int_equal(cfg.threads, 4);
    snprintf(want, sizeof(want), "%s/state", dir);
    assert_string_equal(cfg.state_dir, want);
    /* The passdb and mail location are resolved by their own modules. */
    assert_string_equal(cfg.passdb, "passwd-file:users");
    assert_true(cfg.apop);
    assert_string_equal(cfg.location, "maildir:mail/%u/Maildir");
    assert_int_equal(cfg.login_timeout, 30);
    assert_int_equal(cfg.idle_timeout, 900);
    assert_int_equal(cfg.max_connections, 100);
    assert_int_equal(cfg.max_connections_per_ip, 5);
    assert_int_equal(cfg.max_line, 1024);
    assert_int_equal(cfg.failure_delay, 3);
    snprintf(want, sizeof(want), "%s/audit.log", dir);
    assert_string_equal(cfg.audit, want);
    config_free(&cfg);
    assert_null(cfg.path);
    assert_int_equal(cfg.n_listen, 0);
}

static void test_defaults(void **state)
{
    struct config cfg;
    char want[PATH_MAX + 64];

    (void)state;
    load_ok(REQUIRED, &cfg);
    assert_int_equal(cfg.n_listen, 1);
    assert_string_equal(cfg.greeting, "Postern ready");
    assert_int_equal(cfg.threads, 0);
    snprintf(want, sizeof(want), "%s/state", dir);
    assert_string_equal(cfg.state_dir, want);
    assert_false(cfg.apop);
    assert_int_equal(cfg.login_timeout, 60);
    assert_int_equal(cfg.idle_timeout, 600);
    assert_int_equal(cfg.max_connections, 10000);
    assert_int_equal(cfg.max_connections_per_ip, 20);
    assert_int_equal(cfg.max_line, 8192);
    assert_int_equal(cfg.failure_delay, 2);
    assert_string_equal(cfg.audit, "stderr");
    config_free(&cfg);
}

static void test_values(void **state)
{
    struct config cfg;

    (void)state;
    /* Absolute paths stay; "syslog" and "stderr" are not paths. */
    load_ok("[server]\nlisten = 0.0.0.0:110,[::]:110 , 10.0.0.1:65535\nstate_dir = /var/lib/p\n"
            "greeting = a;b\n"
            "[auth]\npassdb = passwd-file:/etc/users\napop = false\n"
            "allow_plaintext_loopback = yes\n"
            "[mail]\nlocation = maildir:/srv/%d/%n\n"
            "[log]\naudit = syslog\n",
            &cfg);
    assert_int_equal(cfg.n_listen, 3);
    assert_string_equal(cfg.listen[0], "0.0.0.0:110");
    assert_string_equal(cfg.listen[1], "[::]:110");
    assert_string_equal(cfg.listen[2], "10.0.0.1:65535");
    assert_string_equal(cfg.state_dir, "/var/lib/p");
    /* A ';' is a comment only after white space. */
    assert_string_equal(cfg.greeting, "a;b");
    assert_false(cfg.apop);
    /* TLS is required by default; without TLS only loopback may log in. */
    assert_true(cfg.require_tls);
    assert_true(cfg.allow_plaintext_loopback);
    assert_string_equal(cfg.audit, "syslog");
    config_free(&cfg);

    load_ok(REQUIRED "[auth]\napop = 1\n[log]\naudit = /var/log/postern.audit\n"
                     "[limits]\nmax_line = 256\nidle_timeout = 86400\n",
            &cfg);
    assert_true(cfg.apop);
    assert_string_equal(cfg.audit, "/var/log/postern.audit");
    assert_int_equal(cfg.max_line, 256);
    assert_int_equal(cfg.idle_timeout, 86400);
    config_free(&cfg);

    load_ok(REQUIRED "[auth]\napop = no\n[guard]\nfailure_delay = 0\n[server]\nthreads = 256\n",
            &cfg);
    assert_false(cfg.apop);
    assert_int_equal(cfg.failure_delay, 0);
    assert_int_equal(cfg.threads, 256);
    config_free(&cfg);
}

static void test_relative_config_path(void **state)
{
    struct config cfg;
    char err[1024], cwd[PATH_MAX], want[PATH_MAX + 64];

    (void)state;
    write_conf(REQUIRED "[log]\naudit = logs/audit\n");
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    int r = config_load("./postern.conf", &cfg, err, sizeof(err));
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(r, 0);
    assert_string_equal(cfg.path, conf);
    snprintf(want, sizeof(want), "%s/logs/audit", dir);
    assert_string_equal(cfg.audit, want);
    config_free(&cfg);
}

static void test_unknown(void **state)
{
    (void)state;
    load_bad("[server]\nlisten = a:1\nfoo = 1\n", ":3: [server] foo: unknown key");
    /* The section header itself is the error, with or without keys. */
    load_bad(REQUIRED "[bogus]\nx = 1\n", ":8: unknown section [bogus]");
    load_bad(REQUIRED "[ tsl ]\n", ":8: unknown section [tsl]");
    load_bad("threads = 1\n", ":1: [] threads: unknown section []");
    /* Keys are not shared between sections. */
    load_bad("[auth]\nthreads = 1\n", ":2: [auth] threads: unknown key");
    /* Names are case-sensitive. */
    load_bad("[Server]\nlisten = a:1\n", ":1: unknown section [Server]");
    load_bad("[server]\nListen = a:1\n", ":2: [server] Listen: unknown key");
}

static void test_bad_numbers(void **state)
{
    (void)state;
    load_bad("[server]\nthreads = abc\n", ":2: [server] threads: must be a whole number in 0-256");
    load_bad("[server]\nthreads = 257\n", ":2: [server] threads: must be a whole number in 0-256");
    load_bad("[server]\nthreads = -1\n", ":2: [server] threads: must be a whole number in 0-256");
    load_bad("[server]\nthreads = 4x\n", ":2: [server] threads: must be a whole number in 0-256");
    load_bad("[server]\nthreads = 4 4\n", ":2: [server] threads: must be a whole number in 0-256");
    load_bad("[server]\nthreads = 99999999999999999999\n",
             ":2: [server] threads: must be a whole number in 0-256");
    load_bad("[server]\nthreads =\n", ":2: [server] threads: must be a whole number in 0-256");
    load_bad("[limits]\nmax_line = 255\n",
             ":2: [limits] max_line: must be a whole number in 256-65536");
    load_bad("[limits]\nmax_line = 65537\n",
             ":2: [limits] max_line: must be a whole number in 256-65536");
    load_bad("[limits]\nlogin_timeout = 0\n",
             ":2: [limits] login_timeout: must be a whole number in 1-86400");
    load_bad("[limits]\nidle_timeout = 86401\n",
             ":2: [limits] idle_timeout: must be a whole number in 1-86400");
    load_bad("[limits]\nmax_connections = 0\n",
             ":2: [limits] max_connections: must be a whole number in 1-1000000");
    load_bad("[limits]\nmax_connections_per_ip = 1000001\n",
             ":2: [limits] max_connections_per_ip: must be a whole number in 1-1000000");
    load_bad("[guard]\nfailure_delay = 61\n",
             ":2: [guard] failure_delay: must be a whole number in 0-60");
}

static void test_bad_values(void **state)
{
    (void)state;
    load_bad("[auth]\napop = maybe\n", ":2: [auth] apop: must be yes or no, not \"maybe\"");
    load_bad("[auth]\napop = YES\n", ":2: [auth] apop: must be yes or no, not \"YES\"");
    load_bad("[auth]\napop =\n", ":2: [auth] apop: must be yes or no, not \"\"");
    load_bad("[auth]\npassdb =\n", ":2: [auth] passdb: must not be empty");
    load_bad("[server]\nlisten =\n"
             "[auth]\npassdb = passwd-file:u\n[mail]\nlocation = maildir:m\n",
             ":2: [server] listen: must not be empty");
    load_bad("[server]\nstate_dir =\n", ":2: [server] state_dir: must not be empty");
    load_bad("[log]\naudit =\n", ":2: [log] audit: must not be empty");
    load_bad("[server]\ngreeting =\n", ":2: [server] greeting: must be 1-200 printable characters");
}

static void test_bad_listen(void **state)
{
    static const char shape[] = "expected ADDRESS:PORT, with IPv6 addresses in brackets";
    static const struct {
        const char *value, *why;
    } cases[] = {
        {"127.0.0.1", "\"127.0.0.1\": %s"},
        {"127.0.0.1:", "\"127.0.0.1:\": %s"},
        {"::1:110", "\"::1:110\": %s"},
        {"[::1:110", "\"[::1:110\": %s"},
        {"a:1, b", "\"a:1, b\": %s"},
        {"a:0", "\"a:0\": port must be 1-65535"},
        {"a:65536", "\"a:65536\": port must be 1-65535"},
        {"a:http", "\"a:http\": port must be 1-65535"},
        {"a:1,,b:2", "empty address in list \"a:1,,b:2\""},
        {",a:1", "empty address in list \",a:1\""},
        {"a:1,", "empty address in list \"a:1,\""},
    };
    char text[256], why[256], want[512];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "[server]\nlisten = %s\n", cases[i].value);
        snprintf(why, sizeof(why), cases[i].why, shape);
        snprintf(want, sizeof(want), ":2: [server] listen: %s", why);
        load_bad(text, want);
    }
    /* More than 32 addresses. */
    size_t n = (size_t)snprintf(text, sizeof(text), "[server]\nlisten = ");
    for (int i = 0; i < 33; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "%sa:%d", i ? "," : "", i + 1);
    snprintf(text + n, sizeof(text) - n, "\n");
    load_bad(text, ":2: [server] listen: more than 32 addresses");
}

static void test_set_twice(void **state)
{
    (void)state;
    load_bad("[server]\nthreads = 1\nthreads = 2\n",
             ":3: [server] threads: set twice (an indented line continues the one above)");
    /* A section may come back, but not its keys. */
    load_bad("[server]\nthreads = 1\n[auth]\napop = no\n[server]\nthreads = 1\n",
             ":6: [server] threads: set twice (an indented line continues the one above)");
    /* An indented line continues the value above (inih). */
    load_bad("[server]\ngreeting = Hello\n  world\n",
             ":3: [server] greeting: set twice (an indented line continues the one above)");
    load_bad("[server]\nlisten = a:1\nlisten = b:2\n",
             ":3: [server] listen: set twice (an indented line continues the one above)");
}

#define REQUIRE_TLS_WHY                                                                            \
    "is yes (the default) but there is no [tls] cert and key: no client could log in "             \
    "(configure TLS, or set require_tls = no)"

static void test_tls_keys(void **state)
{
    struct config cfg;
    char want[PATH_MAX + 64];

    (void)state;
    load_ok("[server]\nlisten_tls = 127.0.0.1:1995\n"
            "[auth]\npassdb = passwd-file:users\n"
            "[mail]\nlocation = maildir:m\n"
            "[tls]\ncert = tls/cert.pem\nkey = /etc/k.pem\nca = ca.pem\nmin_version = 1.3\n"
            "ciphers = HIGH:!aNULL\nciphersuites = TLS_AES_256_GCM_SHA384\n",
            &cfg);
    assert_int_equal(cfg.n_listen, 0);
    assert_int_equal(cfg.n_listen_tls, 1);
    assert_string_equal(cfg.listen_tls[0], "127.0.0.1:1995");
    snprintf(want, sizeof(want), "%s/tls/cert.pem", dir);
    assert_string_equal(cfg.tls_cert, want);
    assert_string_equal(cfg.tls_key, "/etc/k.pem");
    assert_int_equal(cfg.tls_min_version, TLS1_3_VERSION);
    assert_string_equal(cfg.tls_ciphers, "HIGH:!aNULL");
    assert_string_equal(cfg.tls_ciphersuites, "TLS_AES_256_GCM_SHA384");
    assert_true(cfg.require_tls);
    assert_false(cfg.allow_plaintext_loopback);
    config_free(&cfg);

    load_ok("[server]\nlisten = a:1\n[auth]\npassdb = passwd-file:u\n[mail]\nlocation = maildir:m\n"
            "[tls]\ncert = c\nkey = k\n",
            &cfg);
    assert_int_equal(cfg.tls_min_version, TLS1_2_VERSION);
    assert_null(cfg.tls_ca);
    assert_string_equal(cfg.tls_ciphersuites, DEFAULT_TLS_CIPHERSUITES);
    config_free(&cfg);

#define BASE                                                                                       \
    "[server]\nlisten = a:1\n[auth]\npassdb = passwd-file:u\n[mail]\nlocation = maildir:m\n"
    load_bad(BASE "[tls]\ncert = c\nkey = k\nmin_version = 1.1\n",
             ":10: [tls] min_version: must be 1.2 or 1.3, not \"1.1\"");
    load_bad(BASE "[tls]\ncert = c\n", ":8: [tls] cert: needs [tls] key too");
    load_bad(BASE "[tls]\nkey = k\n", ":8: [tls] key: needs [tls] cert too");
    load_bad(BASE "[auth]\nrequire_tls = no\n[tls]\nca = x\n",
             ":10: [tls] ca: has no effect without [tls] cert and key");
    load_bad(BASE "[auth]\nrequire_tls = no\n[tls]\nciphersuites = TLS_AES_128_GCM_SHA256\n",
             ":10: [tls] ciphersuites: has no effect without [tls] cert and key");
    load_bad(BASE "[auth]\nrequire_tls = no\n[server]\nlisten_tls = b:2\n",
             ":10: [server] listen_tls: needs [tls] cert and key");
    /* require_tls with no TLS at all and no loopback exemption: nobody
     * could log in. */
    load_bad(BASE, ": [auth] require_tls: " REQUIRE_TLS_WHY);
    load_bad(BASE "[auth]\nrequire_tls = yes\n", ":8: [auth] require_tls: " REQUIRE_TLS_WHY);
    load_bad("[auth]\npassdb = passwd-file:u\nrequire_tls = no\n[mail]\nlocation = maildir:m\n",
             ": [server] listen: required key is missing (give listen, listen_tls or both)");
#undef BASE
}

static void test_missing_required(void **state)
{
    (void)state;
    /* No line to name: the file and the key. */
    load_bad("[server]\nlisten = a:1\n[mail]\nlocation = maildir:m\n",
             ": [auth] passdb: required key is missing");
    load_bad("[auth]\npassdb = passwd-file:u\n[mail]\nlocation = maildir:m\n",
             ": [server] listen: required key is missing (give listen, listen_tls or both)");
    load_bad("[server]\nlisten = a:1\n[auth]\npassdb = passwd-file:u\n",
             ": [mail] location: required key is missing");
    load_bad("", ": [server] listen: required key is missing (give listen, listen_tls or both)");
    load_bad("; nothing\n",
             ": [server] listen: required key is missing (give listen, listen_tls or both)");
}

static void test_syntax(void **state)
{
    (void)state;
    load_bad("[server\nlisten = a:1\n", ":1: syntax error: expected [section] or key = value");
    load_bad(REQUIRED "just some words\n", ":8: syntax error: expected [section] or key = value");
    load_bad(REQUIRED "[limits]\n= 5\n", ":9: syntax error: a value without a key");
    /* The first error is the one reported, whoever found it. */
    load_bad("[server]\nfoo = 1\nbar\n", ":2: [server] foo: unknown key");
    load_bad("[server]\nbar\nfoo = 1\n", ":2: syntax error: expected [section] or key = value");
}

static void test_long_line(void **state)
{
    struct config cfg;
    char text[4096], err[1024] = "", prefix[PATH_MAX + 64];

    (void)state;
    int n = snprintf(text, sizeof(text), "[server]\ngreeting = ");
    memset(text + n, 'x', 3000);
    snprintf(text + n + 3000, sizeof(text) - (size_t)n - 3000, "\nlisten = a:1\n");
    write_conf(text);
    assert_int_equal(config_load(conf, &cfg, err, sizeof(err)), -1);
    /* The limit is inih's line buffer; the message names it. */
    snprintf(prefix, sizeof(prefix), "%s:2: line longer than ", conf);
    assert_memory_equal(err, prefix, strlen(prefix));
    const char *num = err + strlen(prefix);
    char *end;
    long limit = strtol(num, &end, 10);
    assert_true(limit >= 100 && limit < 3000);
    assert_string_equal(end, " characters");

    /* Just under the limit is fine (limit counts the characters before the newline). */
    strcpy(text, REQUIRED "[server]\ngreeting = ");
    n = (int)strlen(text);
    size_t line_len = strlen("greeting = ");
    size_t fill = (size_t)limit - line_len;
    if (fill > 200)
        fill = 200; /* the greeting's own limit */
    memset(text + n, 'g', fill);
    snprintf(text + n + fill, sizeof(text) - (size_t)n - fill, "\n");
    load_ok(text, &cfg);
    assert_int_equal(strlen(cfg.greeting), fill);
    config_free(&cfg);
}

static void test_missing_file(void **state)
{
    struct config cfg;
    char err[1024], path[PATH_MAX + 32], want[PATH_MAX + 64];

    (void)state;
    snprintf(path, sizeof(path), "%s/nonexistent.conf", dir);
    assert_int_equal(config_load(path, &cfg, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s: No such file or directory", path);
    assert_string_equal(err, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full),       cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),     cmocka_unit_test(test_relative_config_path),
        cmocka_unit_test(test_unknown),    cmocka_unit_test(test_bad_numbers),
        cmocka_unit_test(test_bad_values), cmocka_unit_test(test_bad_listen),
        cmocka_unit_test(test_set_twice),  cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_tls_keys),   cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_long_line),  cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
