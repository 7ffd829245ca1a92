/*
 * Accounts (src/auth): the passwd-file line parser, the passwd-file
 * database with its reload, the password schemes and APOP, and
 * auth_verify/auth_request on top of them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <argon2.h>
#include <crypt.h>
#include <ftw.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/auth.h"
#include "auth/hash.h"
#include "auth/passdb.h"
#include "auth/scram.h"
#include "lib/pool.h"

#define RFC_TS     "<1896.697170952@dbc.mtview.ca.us>"
#define RFC_DIGEST "c4c9334bac560ecc979e58001b3e22fb"
/* RFC 7677's keys for "pencil", in Dovecot's {SCRAM-SHA-256} format. */
#define SCRAM_PENCIL                                                                               \
    "4096,W22ZaJ0SNY7soEsUEjb6gQ==,WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"                  \
    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
/* The reference implementation's argon2id test vector (Argon2 test.c):
 * "password", salt "somesalt", t=2, m=65536, p=1. */
#define ARGON2ID_VECTOR                                                                            \
    "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"

/* --- passwd_line_parse --- */

static void test_line_good(void **state)
{
    static const struct {
        const char *line;
        const char *user, *hash, *home, *mail;
        enum hash_scheme scheme;
        bool disabled;
    } cases[] = {
        {"alice:{PLAIN}secret", "alice", "secret", NULL, NULL, HASH_PLAIN, false},
        {"alice:{plain}secret\n", "alice", "secret", NULL, NULL, HASH_PLAIN, false},
        {"alice:{CLEARTEXT}s3cr3t\r\n", "alice", "s3cr3t", NULL, NULL, HASH_PLAIN, false},
        {"bob:{SHA512-CRYPT}$6$salt$hash", "bob", "$6$salt$hash", NULL, NULL, HASH_CRYPT, false},
        {"bob:{SHA256-CRYPT}$5$salt$hash", "bob", "$5$salt$hash", NULL, NULL, HASH_CRYPT, false},
        {"bob:{BLF-CRYPT}$2b$05$abc", "bob", "$2b$05$abc", NULL, NULL, HASH_CRYPT, false},
        {"bob:{YESCRYPT}$y$j9T$a$b", "bob", "$y$j9T$a$b", NULL, NULL, HASH_CRYPT, false},
        /* A bare hash is CRYPT, as in Dovecot. */
        {"bob:$y$j9T$a$b", "bob", "$y$j9T$a$b", NULL, NULL, HASH_CRYPT, false},
        {"bob:$6$x$y:1000:1000", "bob", "$6$x$y", NULL, NULL, HASH_CRYPT, false},
        {"carol:{PLAIN}pw:1000:1000:Carol C:/home/carol:/bin/sh:pop3=no", "carol", "pw",
         "/home/carol", NULL, HASH_PLAIN, true},
        {"carol:{PLAIN}pw:::::: pop3=yes", "carol", "pw", NULL, NULL, HASH_PLAIN, false},
        {"dave:{PLAIN}pw::::/home/d::mail=maildir:/x:y pop3=yes", "dave", "pw", "/home/d",
         "maildir:/x:y", HASH_PLAIN, false},
        {"dave:{PLAIN}pw::::::totp=ABC mail=maildir:~/M userdb_quota=1G", "dave", "pw", NULL,
         "maildir:~/M", HASH_PLAIN, false},
        {"erin:{PLAIN}pw::::::nologin", "erin", "pw", NULL, NULL, HASH_PLAIN, true},
        {"erin:{PLAIN}pw:::::: nologin", "erin", "pw", NULL, NULL, HASH_PLAIN, true},
        {"frank:{PLAIN}pw:1:2", "frank", "pw", NULL, NULL, HASH_PLAIN, false},
        {"gina:{PLAIN}pw:1:2:g::", "gina", "pw", NULL, NULL, HASH_PLAIN, false},
        {"hal@example.org:{PLAIN}pw", "hal@example.org", "pw", NULL, NULL, HASH_PLAIN, false},
        /* A PLAIN password may hold what a hash would not. */
        {"ivan:{PLAIN}p w{}$", "ivan", "p w{}$", NULL, NULL, HASH_PLAIN, false},
        {"ann:{ARGON2ID}" ARGON2ID_VECTOR, "ann", ARGON2ID_VECTOR, NULL, NULL, HASH_ARGON2ID,
         false},
        {"ann:{argon2id}" ARGON2ID_VECTOR ":1:2", "ann", ARGON2ID_VECTOR, NULL, NULL, HASH_ARGON2ID,
         false},
        {"sam:{SCRAM-SHA-256}" SCRAM_PENCIL, "sam", SCRAM_PENCIL, NULL, NULL, HASH_SCRAM, false},
        {"sam:{scram-sha-256}" SCRAM_PENCIL "::::::pop3=no", "sam", SCRAM_PENCIL, NULL, NULL,
         HASH_SCRAM, true},
        {"tom:{CRYPT}$y$j9T$a$b::::::scram={SCRAM-SHA-256}" SCRAM_PENCIL " pop3=yes", "tom",
         "$y$j9T$a$b", NULL, NULL, HASH_CRYPT, false},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *line = strdup(cases[i].line);
        struct passwd_line pl;
        const char *error = NULL;
        int r = passwd_line_parse(line, &pl, &error);
        if (r != 1)
            print_error("%s: %s\n", cases[i].line, error != NULL ? error : "(no error)");
        assert_int_equal(r, 1);
        assert_string_equal(pl.user, cases[i].user);
        assert_int_equal(pl.scheme, cases[i].scheme);
        assert_string_equal(pl.hash, cases[i].hash);
        if (cases[i].home == NULL)
            assert_null(pl.home);
        else
            assert_string_equal(pl.home, cases[i].home);
        if (cases[i].mail == NULL)
            assert_null(pl.mail);
        else
            assert_string_equal(pl.mail, cases[i].mail);
        assert_int_equal(pl.pop3_disabled, cases[i].disabled);
        if (strstr(cases[i].line, "scram=") != NULL)
            assert_string_equal(pl.scram, "{SCRAM-SHA-256}" SCRAM_PENCIL);
        else
            assert_null(pl.scram);
        free(line);
    }
}

static void test_line_skipped(void **state)
{
    static const char *const lines[] = {"", "\n", "\r\n", "# a comment", "#alice:{PLAIN}x"};

    (void)state;
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        char *line = strdup(lines[i]);
        struct passwd_line pl;
        const char *error = NULL;
        assert_int_equal(passwd_line_parse(line, &pl, &error), 0);
        free(line);
    }
}

static void test_line_bad(void **state)
{
    static const char names_err[] = "user name contains a space, control character or '/'";
    static const char crypt_err[] =
        "crypt hash must start with '$' (yescrypt, bcrypt, sha512-crypt, ...)";
    static const struct {
        const char *line, *error;
    } cases[] = {
        {":{PLAIN}x", "empty user name"},
        {"al ice:{PLAIN}x", names_err},
        {"a/b:{PLAIN}x", names_err},
        {"a\tb:{PLAIN}x", names_err},
        {"a\x7f:{PLAIN}x", names_err},
        {" alice:{PLAIN}x", names_err},
        {"alice", "no password field"},
        {"alice:", "no password field"},
        {"alice::1000:1000", "no password field"},
        {"alice:{PLAIN}", "empty password"},
        {"alice:{PLAIN}:1000", "empty password"},
        {"alice:{FOO}x", "unknown password scheme"},
        {"alice:{}x", "unknown password scheme"},
        {"alice:{SHA1}x", "unknown password scheme"},
        {"alice:{PLAINx", "password scheme has no closing '}'"},
        {"alice:plaintext", crypt_err},
        {"alice:{CRYPT}plaintext", crypt_err},
        {"alice:{PLAIN}x:::::: pop3=maybe", "pop3= must be yes or no"},
        {"alice:{PLAIN}x::::::pop3=", "pop3= must be yes or no"},
        {"ann:{ARGON2ID}$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFh",
         "ARGON2ID hash must start with '$argon2id$'"},
        {"ann:{ARGON2ID}argon2id", "ARGON2ID hash must start with '$argon2id$'"},
        {"sam:{SCRAM-SHA-256}pencil",
         "SCRAM keys must be 4 comma-separated fields: ITER,SALT,STOREDKEY,SERVERKEY"},
        {"sam:{SCRAM-SHA-256}1000,W22ZaJ0SNY7soEsUEjb6gQ==,"
         "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
         "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
         "SCRAM iteration count must be a number from 4096 to 2147483647"},
        {"tom:{PLAIN}x::::::scram=" SCRAM_PENCIL,
         "scram= must be {SCRAM-SHA-256}ITER,SALT,STOREDKEY,SERVERKEY"},
        {"tom:{PLAIN}x::::::scram={SCRAM-SHA-256}4096,a,b,c",
         "scram=: SCRAM salt must be base64 of 1 to 64 bytes"},
        {"tom:{PLAIN}x:::::: scram={SCRAM-SHA-256}" SCRAM_PENCIL "x",
         "scram=: SCRAM ServerKey must be base64 of 32 bytes"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *line = strdup(cases[i].line);
        struct passwd_line pl;
        const char *error = NULL;
        int r = passwd_line_parse(line, &pl, &error);
        if (r != -1)
            print_error("%s accepted\n", cases[i].line);
        assert_int_equal(r, -1);
        assert_string_equal(error, cases[i].error);
        free(line);
    }

    /* 255 characters of user name, then 256. */
    char line[400];
    struct passwd_line pl;
    const char *error = NULL;
    memset(line, 'u', 255);
    strcpy(line + 255, ":{PLAIN}x");
    assert_int_equal(passwd_line_parse(line, &pl, &error), 1);
    assert_int_equal(strlen(pl.user), 255);
    memset(line, 'u', 256);
    strcpy(line + 256, ":{PLAIN}x");
    assert_int_equal(passwd_line_parse(line, &pl, &error), -1);
    assert_string_equal(error, "user name too long");
}

/* --- temporary files --- */

static char tmpdir[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/postern-test-passwd-XXXXXX");
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static void write_file(const char *name, const char *content)
{
    char path[256], tmp[300];

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(content, f);
    assert_int_equal(fclose(f), 0);
    /* Replaced atomically, as `postern user` does. */
    assert_int_equal(rename(tmp, path), 0);
}

/* A crypt(3) string for password with the given prefix ("$6$", ...). */
static void make_crypt(const char *prefix, const char *password, char *out, size_t size)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data cd;

    memset(&cd, 0, sizeof(cd));
    assert_non_null(crypt_gensalt_rn(prefix, 0, NULL, 0, salt, sizeof(salt)));
    const char *h = crypt_rn(password, salt, &cd, sizeof(cd));
    assert_non_null(h);
    assert_true(h[0] == '$');
    assert_true(strlen(h) < size);
    strcpy(out, h);
}

/* --- passdb --- */

static void test_passdb_lookup(void **state)
{
    struct passdb *db;
    struct passdb_entry e;
    const char *error = NULL;
    unsigned bad = 99;

    (void)state;
    write_file("users", "# accounts\n"
                        "\n"
                        "alice:{PLAIN}secret:1000:1000::/home/alice::mail=maildir:/m/alice\n"
                        "bad user:{PLAIN}x\n"
                        "bob:$6$abc$def\n"
                        "alice:{PLAIN}again\n"
                        "carol:{PLAIN}pw::::::pop3=no\n"
                        "dave:{PLAIN}no-newline-at-end");
    db = passdb_open("passwd-file:users", tmpdir, &bad, &error);
    assert_non_null(db);
    /* The line with a space and the second alice. */
    assert_int_equal(bad, 2);

    memset(&e, 0x55, sizeof(e));
    assert_int_equal(passdb_lookup(db, "alice", &e, &error), 1);
    assert_string_equal(e.user, "alice");
    assert_int_equal(e.scheme, HASH_PLAIN);
    assert_string_equal(e.hash, "secret"); /* the first one wins */
    assert_string_equal(e.home, "/home/alice");
    assert_string_equal(e.mail, "maildir:/m/alice");
    assert_false(e.pop3_disabled);

    assert_int_equal(passdb_lookup(db, "bob", &e, &error), 1);
    assert_int_equal(e.scheme, HASH_CRYPT);
    assert_string_equal(e.hash, "$6$abc$def");
    assert_string_equal(e.home, "");
    assert_string_equal(e.mail, "");
    assert_int_equal(passdb_lookup(db, "carol", &e, &error), 1);
    assert_true(e.pop3_disabled);
    assert_int_equal(passdb_lookup(db, "dave", &e, &error), 1);
    assert_string_equal(e.hash, "no-newline-at-end");

    assert_int_equal(passdb_lookup(db, "nobody", &e, &error), 0);
    assert_int_equal(passdb_lookup(db, "Alice", &e, &error), 0);
    assert_int_equal(passdb_lookup(db, "alic", &e, &error), 0);
    assert_int_equal(passdb_lookup(db, "", &e, &error), 0);
    assert_int_equal(passdb_lookup(db, "bad user", &e, &error), 0);
    passdb_destroy(&db);
    assert_null(db);
}

static void test_passdb_many_users(void **state)
{
    size_t cap = 2000 * 40;
    char *text = malloc(cap), user[32];
    size_t used = 0;
    struct passdb *db;
    struct passdb_entry e;
    const char *error = NULL;

    (void)state;
    assert_non_null(text);
    for (unsigned i = 0; i < 2000; i++)
        used += (size_t)snprintf(text + used, cap - used, "user%u:$6$pw%u\n", i, i);
    write_file("many", text);
    free(text);
    db = passdb_open("passwd-file:many", tmpdir, NULL, &error);
    assert_non_null(db);
    for (unsigned i = 0; i < 2000; i += 7) {
        char want[32];
        snprintf(user, sizeof(user), "user%u", i);
        snprintf(want, sizeof(want), "$6$pw%u", i);
        assert_int_equal(passdb_lookup(db, user, &e, &error), 1);
        assert_string_equal(e.hash, want);
    }
    assert_int_equal(passdb_lookup(db, "user2000", &e, &error), 0);
    passdb_destroy(&db);
}

static void test_passdb_reload(void **state)
{
    struct passdb *db;
    struct passdb_entry e;
    const char *error = NULL;
    char path[256];

    (void)state;
    write_file("reload", "alice:{PLAIN}one\n");
    snprintf(path, sizeof(path), "passwd-file:%s/reload", tmpdir);
    /* An absolute path ignores the base folder. */
    db = passdb_open(path, "/nonexistent", NULL, &error);
    assert_non_null(db);
    assert_int_equal(passdb_lookup(db, "alice", &e, &error), 1);
    assert_string_equal(e.hash, "one");
    assert_int_equal(passdb_lookup(db, "bob", &e, &error), 0);

    assert_int_equal(passdb_lookup_cached(db, "alice", &e), 1);
    assert_string_equal(e.hash, "one");
    assert_int_equal(passdb_lookup_cached(db, "bob", &e), 0);

    /* Replaced: the next lookup sees the new file. The cached lookup (an
     * I/O thread's) only says the file changed, however often it asks:
     * it never loads. */
    write_file("reload", "bob:{PLAIN}two\nalice:{PLAIN}three\n");
    assert_int_equal(passdb_lookup_cached(db, "bob", &e), PASSDB_STALE);
    assert_int_equal(passdb_lookup_cached(db, "alice", &e), PASSDB_STALE);
    assert_int_equal(passdb_lookup(db, "bob", &e, &error), 1);
    assert_string_equal(e.hash, "two");
    assert_int_equal(passdb_lookup(db, "alice", &e, &error), 1);
    assert_string_equal(e.hash, "three");

    /* An account removed is gone. */
    write_file("reload", "bob:{PLAIN}two\n");
    assert_int_equal(passdb_lookup(db, "alice", &e, &error), 0);

    /* A file that disappears, or cannot be read, leaves the accounts
     * read before in place. */
    snprintf(path, sizeof(path), "%s/reload", tmpdir);
    assert_int_equal(passdb_lookup_cached(db, "bob", &e), 1);
    assert_string_equal(e.hash, "two");
    assert_int_equal(passdb_lookup_cached(db, "alice", &e), 0);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(passdb_lookup_cached(db, "bob", &e), 1);
    assert_int_equal(passdb_lookup(db, "bob", &e, &error), 1);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(passdb_lookup(db, "bob", &e, &error), 1);
    assert_int_equal(rmdir(path), 0);
    write_file("reload", "carol:{PLAIN}four\n");
    assert_int_equal(passdb_lookup(db, "carol", &e, &error), 1);
    assert_int_equal(passdb_lookup(db, "bob", &e, &error), 0);
    passdb_destroy(&db);
}

static void test_passdb_open_errors(void **state)
{
    const char *error = NULL;
    char want[256];

    (void)state;
    assert_null(passdb_open("passwd-file:missing", tmpdir, NULL, &error));
    snprintf(want, sizeof(want), "cannot read %s/missing: No such file or directory", tmpdir);
    assert_string_equal(error, want);
    assert_null(passdb_open("file:/etc/passwd", tmpdir, NULL, &error));
    assert_string_equal(error, "passdb must be \"passwd-file:PATH\"");
    assert_null(passdb_open("passwd-file:", tmpdir, NULL, &error));
    assert_string_equal(error, "passdb must be \"passwd-file:PATH\"");
    assert_null(passdb_open("passwd-file:.", tmpdir, NULL, &error));
    snprintf(want, sizeof(want), "%s/. is not a regular file of reasonable size", tmpdir);
    assert_string_equal(error, want);

    char *p = passwd_file_path("passwd-file:etc/users", "/srv/postern", &error);
    assert_string_equal(p, "/srv/postern/etc/users");
    free(p);
    p = passwd_file_path("passwd-file:/etc/users", "/srv/postern", &error);
    assert_string_equal(p, "/etc/users");
    free(p);
}

/* --- hashes --- */

static void test_scheme_lookup(void **state)
{
    (void)state;
    assert_int_equal(hash_scheme_lookup("PLAIN", 5), HASH_PLAIN);
    assert_int_equal(hash_scheme_lookup("plain", 5), HASH_PLAIN);
    assert_int_equal(hash_scheme_lookup("CLEAR", 5), HASH_PLAIN);
    assert_int_equal(hash_scheme_lookup("SHA512-CRYPT", 12), HASH_CRYPT);
    assert_int_equal(hash_scheme_lookup("sha256-crypt", 12), HASH_CRYPT);
    assert_int_equal(hash_scheme_lookup("BLF-CRYPT", 9), HASH_CRYPT);
    assert_int_equal(hash_scheme_lookup("YESCRYPT", 8), HASH_CRYPT);
    assert_int_equal(hash_scheme_lookup("CRYPT", 5), HASH_CRYPT);
    /* Only the given length counts. */
    assert_int_equal(hash_scheme_lookup("PLAINTEXT", 5), HASH_PLAIN);
    assert_int_equal(hash_scheme_lookup("PLAI", 4), HASH_UNKNOWN);
    assert_int_equal(hash_scheme_lookup("PLAINX", 6), HASH_UNKNOWN);
    assert_int_equal(hash_scheme_lookup("", 0), HASH_UNKNOWN);
    assert_int_equal(hash_scheme_lookup("SHA1", 4), HASH_UNKNOWN);
    assert_int_equal(hash_scheme_lookup("ARGON2ID", 8), HASH_ARGON2ID);
    assert_int_equal(hash_scheme_lookup("argon2id", 8), HASH_ARGON2ID);
    assert_int_equal(hash_scheme_lookup("ARGON2I", 7), HASH_UNKNOWN);
    assert_int_equal(hash_scheme_lookup("SCRAM-SHA-256", 13), HASH_SCRAM);
    assert_int_equal(hash_scheme_lookup("SCRAM-SHA-1", 11), HASH_UNKNOWN);
    assert_string_equal(hash_scheme_name(HASH_CRYPT), "CRYPT");
    assert_string_equal(hash_scheme_name(HASH_PLAIN), "PLAIN");
    assert_string_equal(hash_scheme_name(HASH_ARGON2ID), "ARGON2ID");
    assert_string_equal(hash_scheme_name(HASH_SCRAM), "SCRAM-SHA-256");
}

static void test_verify_argon2id(void **state)
{
    char h[256];
    const char *const other = "$argon2i$v=19$m=1024,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    (void)state;
    /* The reference vector, as Dovecot and libsodium write it. */
    assert_true(hash_verify(HASH_ARGON2ID, ARGON2ID_VECTOR, "password", 8));
    assert_false(hash_verify(HASH_ARGON2ID, ARGON2ID_VECTOR, "Password", 8));
    assert_false(hash_verify(HASH_ARGON2ID, ARGON2ID_VECTOR, "passwor", 7));
    /* One made here, small enough to be quick. */
    assert_int_equal(
        argon2id_hash_encoded(2, 1024, 1, "hunter2", 7, "saltsaltsalt", 12, 32, h, sizeof(h)),
        ARGON2_OK);
    assert_memory_equal(h, "$argon2id$v=19$m=1024,t=2,p=1$", 30);
    assert_true(hash_verify(HASH_ARGON2ID, h, "hunter2", 7));
    assert_true(hash_verify(HASH_ARGON2ID, h, "hunter2 and more", 7));
    assert_false(hash_verify(HASH_ARGON2ID, h, "hunter3", 7));
    assert_false(hash_verify(HASH_ARGON2ID, h, "", 0));
    assert_false(hash_verify(HASH_CRYPT, h, "hunter2", 7));
    assert_false(hash_verify(HASH_PLAIN, h, "hunter2", 7));
    size_t n = strlen(h);
    h[n - 2] = h[n - 2] == 'A' ? 'B' : 'A';
    assert_false(hash_verify(HASH_ARGON2ID, h, "hunter2", 7));
    h[n - 10] = '\0';
    assert_false(hash_verify(HASH_ARGON2ID, h, "hunter2", 7));
    /* Only argon2id, and nothing that is not an argon2 string. */
    assert_false(hash_verify(HASH_ARGON2ID, other, "x", 1));
    assert_false(hash_verify(HASH_ARGON2ID, "", "", 0));
    assert_false(hash_verify(HASH_ARGON2ID, "$argon2id$", "", 0));
}

static void test_verify_scram(void **state)
{
    (void)state;
    /* USER/PASS against an account stored only as SCRAM keys. */
    assert_true(hash_verify(HASH_SCRAM, SCRAM_PENCIL, "pencil", 6));
    assert_true(hash_verify(HASH_SCRAM, "{SCRAM-SHA-256}" SCRAM_PENCIL, "pencil", 6));
    assert_false(hash_verify(HASH_SCRAM, SCRAM_PENCIL, "pencil2", 7));
    assert_false(hash_verify(HASH_SCRAM, SCRAM_PENCIL, "pencil", 5));
    assert_false(hash_verify(HASH_SCRAM, SCRAM_PENCIL, "", 0));
    assert_false(hash_verify(HASH_PLAIN, SCRAM_PENCIL, "pencil", 6));
    assert_false(hash_verify(HASH_SCRAM, "4096,x", "pencil", 6));
    assert_false(hash_verify(HASH_SCRAM, "", "", 0));
}

/* Every scheme `postern user --scheme` offers: the prefix it writes, and
 * that the line parser and hash_verify take it back. */
static void test_hash_make(void **state)
{
    static const struct {
        const char *name, *prefix;
        enum hash_scheme scheme;
    } cases[] = {
        {NULL, "{CRYPT}$y$", HASH_CRYPT},
        {"yescrypt", "{CRYPT}$y$", HASH_CRYPT},
        {"SHA512-CRYPT", "{SHA512-CRYPT}$6$", HASH_CRYPT},
        {"blf-crypt", "{BLF-CRYPT}$2y$10$", HASH_CRYPT},
        {"Argon2id", "{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$", HASH_ARGON2ID},
        {"scram-sha-256", "{SCRAM-SHA-256}10000,", HASH_SCRAM},
        {"plain", "{PLAIN}correct horse", HASH_PLAIN},
    };
    char out[512], line[600];
    const char *error = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(hash_make(cases[i].name, "correct horse", out, sizeof(out), &error), 0);
        if (strncmp(out, cases[i].prefix, strlen(cases[i].prefix)) != 0)
            print_error("%s: %s\n", cases[i].name != NULL ? cases[i].name : "default", out);
        assert_memory_equal(out, cases[i].prefix, strlen(cases[i].prefix));
        assert_null(strstr(out, ":"));
        snprintf(line, sizeof(line), "alice:%s:::::", out);
        struct passwd_line pl;
        assert_int_equal(passwd_line_parse(line, &pl, &error), 1);
        assert_int_equal(pl.scheme, cases[i].scheme);
        assert_true(hash_verify(pl.scheme, pl.hash, "correct horse", 13));
        assert_false(hash_verify(pl.scheme, pl.hash, "correct horsE", 13));
        /* A fresh salt each time (PLAIN has none). */
        char again[512];
        assert_int_equal(hash_make(cases[i].name, "correct horse", again, sizeof(again), &error),
                         0);
        if (cases[i].scheme != HASH_PLAIN)
            assert_string_not_equal(out, again);
    }
    error = NULL;
    assert_int_equal(hash_make("md5-crypt", "x", out, sizeof(out), &error), -1);
    assert_non_null(strstr(error, "unknown scheme"));
    assert_int_equal(hash_make("", "x", out, sizeof(out), &error), -1);
    assert_int_equal(hash_make("plain", "a:b", out, sizeof(out), &error), -1);
    assert_non_null(strstr(error, "':'"));
    /* Too small a buffer, for each kind of maker. */
    static const char *const names[] = {"yescrypt", "blf-crypt", "argon2id", "scram-sha-256",
                                        "plain"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        error = NULL;
        assert_int_equal(hash_make(names[i], "correct horse", out, 20, &error), -1);
        assert_non_null(error);
    }
}

static void test_verify_plain(void **state)
{
    (void)state;
    assert_true(hash_verify(HASH_PLAIN, "secret", "secret", 6));
    /* The length is what counts, not a terminator. */
    assert_true(hash_verify(HASH_PLAIN, "secret", "secretXYZ", 6));
    assert_false(hash_verify(HASH_PLAIN, "secret", "secre", 5));
    assert_false(hash_verify(HASH_PLAIN, "secret", "secrets", 7));
    assert_false(hash_verify(HASH_PLAIN, "secret", "Secret", 6));
    assert_false(hash_verify(HASH_PLAIN, "secret", "", 0));
    assert_false(hash_verify(HASH_PLAIN, "secret", "secret\0", 7));
    assert_false(hash_verify(HASH_UNKNOWN, "secret", "secret", 6));
}

static void test_verify_crypt(void **state)
{
    static const char *const prefixes[] = {"$6$", "$5$", "$2b$", "$y$"};
    char h[CRYPT_OUTPUT_SIZE];

    (void)state;
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        make_crypt(prefixes[i], "hunter2", h, sizeof(h));
        assert_memory_equal(h, prefixes[i], strlen(prefixes[i]));
        assert_true(hash_verify(HASH_CRYPT, h, "hunter2", 7));
        assert_true(hash_verify(HASH_CRYPT, h, "hunter2 and more", 7));
        assert_false(hash_verify(HASH_CRYPT, h, "hunter3", 7));
        assert_false(hash_verify(HASH_CRYPT, h, "hunter", 6));
        assert_false(hash_verify(HASH_CRYPT, h, "", 0));
        assert_false(hash_verify(HASH_PLAIN, h, "hunter2", 7));
        /* A damaged hash verifies nothing. */
        size_t n = strlen(h);
        h[n - 1] = h[n - 1] == 'a' ? 'b' : 'a';
        assert_false(hash_verify(HASH_CRYPT, h, "hunter2", 7));
        h[n - 3] = '\0';
        assert_false(hash_verify(HASH_CRYPT, h, "hunter2", 7));
    }
    assert_false(hash_verify(HASH_CRYPT, "", "", 0));
    assert_false(hash_verify(HASH_CRYPT, "*", "*", 1));
    assert_false(hash_verify(HASH_CRYPT, "!", "", 0));
    assert_false(hash_verify(HASH_CRYPT, "$unknown$x", "x", 1));
}

static void test_verify_apop(void **state)
{
    (void)state;
    /* RFC 1939, section 7. */
    assert_true(hash_verify_apop("tanstaaf", RFC_TS, RFC_DIGEST));
    assert_true(hash_verify_apop("tanstaaf", RFC_TS, "C4C9334BAC560ECC979E58001B3E22FB"));
    assert_false(hash_verify_apop("tanstaaF", RFC_TS, RFC_DIGEST));
    assert_false(hash_verify_apop("tanstaaf", "<1896.697170953@dbc.mtview.ca.us>", RFC_DIGEST));
    assert_false(hash_verify_apop("tanstaaf", RFC_TS, "c4c9334bac560ecc979e58001b3e22f"));
    assert_false(hash_verify_apop("tanstaaf", RFC_TS, "c4c9334bac560ecc979e58001b3e22fb0"));
    assert_false(hash_verify_apop("tanstaaf", RFC_TS, "c4c9334bac560ecc979e58001b3e22fc"));
    assert_false(hash_verify_apop("tanstaaf", RFC_TS, ""));
    assert_false(hash_verify_apop("", RFC_TS, RFC_DIGEST));
}

static void test_make_yescrypt(void **state)
{
    char a[256], b[256], tiny[16];
    const char *error = NULL;

    (void)state;
    assert_int_equal(hash_make_yescrypt("correct horse", a, sizeof(a), &error), 0);
    assert_memory_equal(a, "{CRYPT}$y$", 10);
    assert_true(hash_verify(HASH_CRYPT, a + 7, "correct horse", 13));
    assert_false(hash_verify(HASH_CRYPT, a + 7, "correct horsE", 13));
    /* A fresh salt each time. */
    assert_int_equal(hash_make_yescrypt("correct horse", b, sizeof(b), &error), 0);
    assert_string_not_equal(a, b);
    /* What it writes, the line parser reads. */
    char line[300];
    struct passwd_line pl;
    snprintf(line, sizeof(line), "alice:%s", a);
    assert_int_equal(passwd_line_parse(line, &pl, &error), 1);
    assert_int_equal(pl.scheme, HASH_CRYPT);
    assert_true(hash_verify(pl.scheme, pl.hash, "correct horse", 13));

    assert_int_equal(hash_make_yescrypt("x", tiny, sizeof(tiny), &error), -1);
    assert_string_equal(error, "hash too long");
}

/* --- auth_verify --- */

static char bob_hash[CRYPT_OUTPUT_SIZE];

static struct passdb *open_accounts(void)
{
    char text[1024];
    const char *error = NULL;

    make_crypt("$6$", "hunter2", bob_hash, sizeof(bob_hash));
    snprintf(text, sizeof(text),
             "alice:{PLAIN}secret::::/home/alice::mail=maildir:/m/a\n"
             "bob:{SHA512-CRYPT}%s\n"
             "carol:{PLAIN}pw::::::pop3=no\n"
             "mrose:{PLAIN}tanstaaf\n"
             "dave:%s\n",
             bob_hash, bob_hash);
    write_file("accounts", text);
    struct passdb *db = passdb_open("passwd-file:accounts", tmpdir, NULL, &error);
    assert_non_null(db);
    return db;
}

static void fill(struct auth_request *req, enum auth_mech mech, const char *user,
                 const char *secret)
{
    memset(req, 0, sizeof(*req));
    req->mech = mech;
    snprintf(req->user, sizeof(req->user), "%s", user);
    req->secret_len = strlen(secret);
    memcpy(req->secret, secret, req->secret_len);
    req->apop_timestamp = RFC_TS;
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++) {
        if (b[i] != 0)
            return false;
    }
    return true;
}

static void verify(struct auth *a, enum auth_mech mech, const char *user, const char *secret,
                   enum auth_status status, const char *reason)
{
    struct auth_request req;

    fill(&req, mech, user, secret);
    auth_verify(a, &req);
    if (req.status != status)
        print_error("%s/%s: status %d\n", user, secret, req.status);
    assert_int_equal(req.status, status);
    if (reason == NULL)
        assert_null(req.reason);
    else
        assert_string_equal(req.reason, reason);
    /* The secret and the stored hash do not outlive the check. */
    assert_true(all_zero(req.secret, sizeof(req.secret)));
    assert_int_equal(req.secret_len, 0);
    assert_true(all_zero(req.entry.hash, sizeof(req.entry.hash)));
}

static void test_auth_verify(void **state)
{
    struct passdb *db = open_accounts();
    struct auth *a = auth_new(db, NULL, NULL);

    (void)state;
    assert_non_null(a);
    verify(a, AUTH_MECH_PASSWORD, "alice", "secret", AUTH_OK, NULL);
    verify(a, AUTH_MECH_PASSWORD, "alice", "Secret", AUTH_FAIL, "bad password");
    verify(a, AUTH_MECH_PASSWORD, "alice", "", AUTH_FAIL, "bad password");
    verify(a, AUTH_MECH_PASSWORD, "nobody", "secret", AUTH_FAIL, "unknown user");
    verify(a, AUTH_MECH_PASSWORD, "ALICE", "secret", AUTH_FAIL, "unknown user");
    verify(a, AUTH_MECH_PASSWORD, "bob", "hunter2", AUTH_OK, NULL);
    verify(a, AUTH_MECH_PASSWORD, "bob", "hunter3", AUTH_FAIL, "bad password");
    /* pop3=no is told only to whoever knows the password. */
    verify(a, AUTH_MECH_PASSWORD, "carol", "pw", AUTH_DISABLED, "pop3 disabled");
    verify(a, AUTH_MECH_PASSWORD, "carol", "wrong", AUTH_FAIL, "bad password");
    /* APOP needs the secret itself. */
    verify(a, AUTH_MECH_APOP, "mrose", RFC_DIGEST, AUTH_OK, NULL);
    verify(a, AUTH_MECH_APOP, "mrose", "C4C9334BAC560ECC979E58001B3E22FB", AUTH_OK, NULL);
    verify(a, AUTH_MECH_APOP, "mrose", "c4c9334bac560ecc979e58001b3e22fc", AUTH_FAIL,
           "bad password");
    verify(a, AUTH_MECH_APOP, "dave", RFC_DIGEST, AUTH_FAIL, "APOP needs a PLAIN secret");
    verify(a, AUTH_MECH_APOP, "nobody", RFC_DIGEST, AUTH_FAIL, "unknown user");
    /* The password sent with USER/PASS is not an APOP digest and back. */
    verify(a, AUTH_MECH_PASSWORD, "mrose", RFC_DIGEST, AUTH_FAIL, "bad password");
    verify(a, AUTH_MECH_APOP, "alice", "secret", AUTH_FAIL, "bad password");

    /* The account comes back with the answer. */
    struct auth_request req;
    fill(&req, AUTH_MECH_PASSWORD, "alice", "secret");
    auth_verify(a, &req);
    assert_int_equal(req.status, AUTH_OK);
    assert_string_equal(req.entry.user, "alice");
    assert_string_equal(req.entry.home, "/home/alice");
    assert_string_equal(req.entry.mail, "maildir:/m/a");

    /* Longer than the request holds: refused, whatever it is. */
    fill(&req, AUTH_MECH_PASSWORD, "alice", "secret");
    req.secret_len = AUTH_SECRET_MAX;
    auth_verify(a, &req);
    assert_int_equal(req.status, AUTH_FAIL);
    assert_string_equal(req.reason, "password too long");

    auth_free(&a);
    assert_null(a);
    passdb_destroy(&db);
}

/* Whether verification was answered from the cache. */
static bool verify_cached(struct auth *a, const char *user, const char *pw, enum auth_status want)
{
    struct auth_request req;

    fill(&req, AUTH_MECH_PASSWORD, user, pw);
    auth_verify(a, &req);
    assert_int_equal(req.status, want);
    return req.cached;
}

static void test_auth_cache(void **state)
{
    struct passdb *db = open_accounts();
    struct auth_cache *cache = auth_cache_new(3600, 3);
    struct auth *a = auth_new(db, NULL, cache);

    (void)state;
    /* A success is cached, and only for that very password. */
    assert_false(verify_cached(a, "bob", "hunter2", AUTH_OK));
    assert_true(verify_cached(a, "bob", "hunter2", AUTH_OK));
    assert_false(verify_cached(a, "bob", "hunter3", AUTH_FAIL));
    assert_false(verify_cached(a, "bob", "hunter2x", AUTH_FAIL));
    assert_false(verify_cached(a, "bob", "hunter", AUTH_FAIL));
    assert_true(verify_cached(a, "bob", "hunter2", AUTH_OK));
    /* Failures are never cached: each one pays for the hash. */
    assert_false(verify_cached(a, "alice", "wrong", AUTH_FAIL));
    assert_false(verify_cached(a, "alice", "wrong", AUTH_FAIL));
    /* PLAIN needs no hash, so nothing to cache; pop3=no still holds. */
    assert_false(verify_cached(a, "carol", "pw", AUTH_DISABLED));
    assert_false(verify_cached(a, "carol", "pw", AUTH_DISABLED));
    /* The user is part of the key: dave has bob's hash, not his entry. */
    assert_false(verify_cached(a, "dave", "hunter2", AUTH_OK));
    /* Any change of the passwd-file invalidates every entry. */
    char other[256], line[300];
    make_crypt("$5$", "other", other, sizeof(other));
    snprintf(line, sizeof(line), "bob:{SHA256-CRYPT}%s\n", other);
    write_file("accounts.new", line);
    char from[600], to[600];
    snprintf(from, sizeof(from), "%s/accounts.new", tmpdir);
    snprintf(to, sizeof(to), "%s/accounts", tmpdir);
    assert_int_equal(rename(from, to), 0);
    assert_false(verify_cached(a, "bob", "hunter2", AUTH_FAIL));
    assert_false(verify_cached(a, "bob", "other", AUTH_OK));
    assert_true(verify_cached(a, "bob", "other", AUTH_OK));
    auth_free(&a);
    auth_cache_free(&cache);
    assert_null(cache);
    passdb_destroy(&db);

    /* An entry older than the ttl is not used (ttl 1 s: wait it out). */
    db = open_accounts();
    cache = auth_cache_new(1, 10);
    a = auth_new(db, NULL, cache);
    assert_false(verify_cached(a, "bob", "hunter2", AUTH_OK));
    assert_true(verify_cached(a, "bob", "hunter2", AUTH_OK));
    struct timespec ts = {2, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);
    assert_false(verify_cached(a, "bob", "hunter2", AUTH_OK));
    auth_free(&a);
    auth_cache_free(&cache);
    passdb_destroy(&db);
}

/* SHA-crypt with OpenSSL gives exactly what crypt(3) gives: random
 * passwords (empty, long, 8-bit), salts (short, the longest, too long)
 * and round counts, for $5$ and $6$; settings it does not handle in the
 * canonical way are declined, never computed differently. */
static void test_shacrypt_matches_crypt(void **state)
{
    static const char alphabet[] =
        "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    unsigned seed = 12345;
    char pw[300], setting[128], ours[CRYPT_OUTPUT_SIZE];

    (void)state;
    assert_non_null(cd);
    for (int i = 0; i < 600; i++) {
        size_t plen = (size_t)(rand_r(&seed) % (i < 100 ? 300 : 40));
        for (size_t j = 0; j < plen; j++)
            pw[j] = (char)(1 + rand_r(&seed) % 255); /* any byte but NUL */
        pw[plen] = '\0';
        size_t slen = 1 + (size_t)(rand_r(&seed) % 20); /* > 16 is cut to 16 */
        char salt[24];
        for (size_t j = 0; j < slen; j++)
            salt[j] = alphabet[rand_r(&seed) % 64];
        salt[slen] = '\0';
        const char *id = i % 2 == 0 ? "$6$" : "$5$";
        if (i % 3 == 0)
            snprintf(setting, sizeof(setting), "%s%s$", id, salt);
        else
            snprintf(setting, sizeof(setting), "%srounds=%d$%s$", id, 1000 + rand_r(&seed) % 1500,
                     salt);
        const char *want = crypt_rn(pw, setting, cd, sizeof(*cd));
        assert_non_null(want);
        assert_true(shacrypt(pw, plen, setting, ours, sizeof(ours)));
        if (strcmp(want, ours) != 0)
            print_error("case %d: %s != %s (setting %s, %zu bytes)\n", i, ours, want, setting,
                        plen);
        assert_string_equal(ours, want);
        /* Verifying against the full hash gives the same string again. */
        char again[CRYPT_OUTPUT_SIZE];
        assert_true(shacrypt(pw, plen, want, again, sizeof(again)));
        assert_string_equal(again, want);
    }
    /* Declined: left to crypt(3). */
    static const char *const declined[] = {
        "$6$rounds=999$salt$",
        "$6$rounds=0100$salt$",
        "$6$rounds=$salt$",
        "$6$rounds=12x$salt$",
        "$6$$",
        "$6$sa*lt$",
        "$1$salt$",
        "$y$j9T$salt$",
        "$6$rounds=1000000000$salt$",
    };
    for (size_t i = 0; i < sizeof(declined) / sizeof(declined[0]); i++)
        assert_false(shacrypt("pw", 2, declined[i], ours, sizeof(ours)));
    /* hash_verify takes either path to the same verdict. */
    const char *h6 = crypt_rn("hunter2", "$6$abcdefgh$", cd, sizeof(*cd));
    char stored[CRYPT_OUTPUT_SIZE];
    snprintf(stored, sizeof(stored), "%s", h6);
    assert_true(hash_verify(HASH_CRYPT, stored, "hunter2", 7));
    assert_false(hash_verify(HASH_CRYPT, stored, "hunter3", 7));
    free(cd);
}

/* yescrypt keeps its memory region between verifications on a thread,
 * and the verdicts are unchanged by it. */
static void test_yescrypt_region_reused(void **state)
{
    char hash[512], stored[512];
    const char *error = NULL;

    (void)state;
    assert_int_equal(hash_make_yescrypt("correct horse", hash, sizeof(hash), &error), 0);
    snprintf(stored, sizeof(stored), "%s", hash + strlen("{CRYPT}"));
    unsigned long before = hash_mem_reuses();
    for (int i = 0; i < 3; i++) {
        assert_true(hash_verify(HASH_CRYPT, stored, "correct horse", 13));
        assert_false(hash_verify(HASH_CRYPT, stored, "correct horsf", 13));
    }
    /* Six verifications: the first mapped the region, the rest reused it. */
    assert_true(hash_mem_reuses() - before >= 5);
}

/* Accounts stored as ARGON2ID, as SCRAM keys only, and as yescrypt with
 * scram=: USER/PASS works for each, APOP for none. */
static void test_auth_verify_new_schemes(void **state)
{
    char text[2048], argon[256], yes[256];
    const char *error = NULL;

    (void)state;
    assert_int_equal(argon2id_hash_encoded(2, 1024, 1, "argon pass", 10, "0123456789abcdef", 16, 32,
                                           argon, sizeof(argon)),
                     ARGON2_OK);
    assert_int_equal(hash_make_yescrypt("yes pass", yes, sizeof(yes), &error), 0);
    snprintf(text, sizeof(text),
             "ann:{ARGON2ID}%s\n"
             "sam:{SCRAM-SHA-256}" SCRAM_PENCIL "\n"
             "tom:%s::::::scram={SCRAM-SHA-256}" SCRAM_PENCIL "\n",
             argon, yes);
    write_file("schemes", text);
    struct passdb *db = passdb_open("passwd-file:schemes", tmpdir, NULL, &error);
    assert_non_null(db);
    struct auth *a = auth_new(db, NULL, NULL);
    verify(a, AUTH_MECH_PASSWORD, "ann", "argon pass", AUTH_OK, NULL);
    verify(a, AUTH_MECH_PASSWORD, "ann", "argon pasS", AUTH_FAIL, "bad password");
    verify(a, AUTH_MECH_PASSWORD, "sam", "pencil", AUTH_OK, NULL);
    verify(a, AUTH_MECH_PASSWORD, "sam", "pencils", AUTH_FAIL, "bad password");
    verify(a, AUTH_MECH_PASSWORD, "tom", "yes pass", AUTH_OK, NULL);
    /* The SCRAM keys are for SCRAM; the password is the password field's. */
    verify(a, AUTH_MECH_PASSWORD, "tom", "pencil", AUTH_FAIL, "bad password");
    verify(a, AUTH_MECH_APOP, "ann", RFC_DIGEST, AUTH_FAIL, "APOP needs a PLAIN secret");
    verify(a, AUTH_MECH_APOP, "sam", RFC_DIGEST, AUTH_FAIL, "APOP needs a PLAIN secret");
    struct passdb_entry e;
    assert_int_equal(passdb_lookup(db, "tom", &e, &error), 1);
    assert_string_equal(e.scram, "{SCRAM-SHA-256}" SCRAM_PENCIL);
    assert_int_equal(passdb_lookup(db, "sam", &e, &error), 1);
    assert_int_equal(e.scheme, HASH_SCRAM);
    assert_string_equal(e.hash, SCRAM_PENCIL);
    auth_free(&a);
    passdb_destroy(&db);
}

/* A database that cannot be read. */
static int broken_lookup(struct passdb *db, const char *user, struct passdb_entry *e,
                         const char **error_r)
{
    (void)db;
    (void)user;
    (void)e;
    *error_r = "injected failure";
    return -1;
}

static void broken_destroy(struct passdb *db)
{
    (void)db;
}

static void test_auth_tempfail(void **state)
{
    static const struct passdb_vfuncs v = {broken_lookup, broken_destroy};
    struct passdb db = {&v};
    struct auth *a = auth_new(&db, NULL, NULL);

    (void)state;
    verify(a, AUTH_MECH_PASSWORD, "alice", "secret", AUTH_TEMPFAIL, "passdb unavailable");
    auth_free(&a);
}

static atomic_uint callbacks;

static void on_done(struct auth_request *req)
{
    atomic_fetch_add(&callbacks, 1);
    *(enum auth_status *)req->ctx = req->status;
}

static void test_auth_request_async(void **state)
{
    struct passdb *db = open_accounts();
    const char *error = NULL;
    struct pool *pool = pool_new(2, &error);
    struct auth *a = auth_new(db, pool, NULL);
    struct auth_request reqs[6];
    enum auth_status got[6];
    static const char *const users[] = {"alice", "alice", "carol", "nobody", "bob", "mrose"};
    static const char *const secrets[] = {"secret", "nope", "pw", "x", "hunter2", "tanstaaf"};
    static const enum auth_status want[] = {AUTH_OK,   AUTH_FAIL, AUTH_DISABLED,
                                            AUTH_FAIL, AUTH_OK,   AUTH_OK};

    (void)state;
    assert_non_null(pool);
    atomic_store(&callbacks, 0);
    for (int i = 0; i < 6; i++) {
        fill(&reqs[i], AUTH_MECH_PASSWORD, users[i], secrets[i]);
        got[i] = (enum auth_status) - 1;
        reqs[i].ctx = &got[i];
        reqs[i].callback = on_done;
        auth_request(a, &reqs[i]);
    }
    /* Runs what is queued, then stops. */
    pool_destroy(&pool);
    assert_int_equal(atomic_load(&callbacks), 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(got[i], want[i]);
    /* Right PLAIN passwords were answered at once, without a hash; every
     * failure and every hashed password went to the pool. */
    static const bool quick[] = {true, false, true, false, false, true};
    for (int i = 0; i < 6; i++)
        assert_int_equal(reqs[i].quick, quick[i]);
    auth_free(&a);
    passdb_destroy(&db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_good),
        cmocka_unit_test(test_line_skipped),
        cmocka_unit_test(test_line_bad),
        cmocka_unit_test(test_passdb_lookup),
        cmocka_unit_test(test_passdb_many_users),
        cmocka_unit_test(test_passdb_reload),
        cmocka_unit_test(test_passdb_open_errors),
        cmocka_unit_test(test_scheme_lookup),
        cmocka_unit_test(test_verify_plain),
        cmocka_unit_test(test_verify_crypt),
        cmocka_unit_test(test_verify_apop),
        cmocka_unit_test(test_verify_argon2id),
        cmocka_unit_test(test_verify_scram),
        cmocka_unit_test(test_hash_make),
        cmocka_unit_test(test_auth_verify_new_schemes),
        cmocka_unit_test(test_make_yescrypt),
        cmocka_unit_test(test_auth_verify),
        cmocka_unit_test(test_auth_tempfail),
        cmocka_unit_test(test_auth_request_async),
        cmocka_unit_test(test_auth_cache),
        cmocka_unit_test(test_shacrypt_matches_crypt),
        cmocka_unit_test(test_yescrypt_region_reused),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
