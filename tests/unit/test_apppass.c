/*
 * App passwords (src/auth/apppass.c, apppass_edit.c): the strict line
 * parser, generation and normalization, and the verifier with its reload
 * and its throttled last-use records. Hashes are checked against values
 * computed independently (Python's hashlib: SHA-256 of salt || password).
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

#include <ftw.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/apppass.h"

/* Salt 00..0f, password "abcdefghijklmnopqrst". */
#define SALT1 "000102030405060708090a0b0c0d0e0f"
#define HASH1 "9e83739a0badf3225f64fac1a65065170d372d812472f5703addcd7703826af3"
#define PW1   "abcdefghijklmnopqrst"
/* Salt ff..ff, password "234567abcdefghijklmn". */
#define SALT2 "ffffffffffffffffffffffffffffffff"
#define HASH2 "8be8401de1f27e8468cc89e5390ee4d4b8ee8b4ff1a40e7c50c91686e3c48449"
#define PW2   "234567abcdefghijklmn"
/* Salt a5..a5, password "zzzzyyyyxxxxwwww2222". */
#define SALT3 "a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5"
#define HASH3 "e2ad414a1e518723f6437db35b8e5948304aef79cc918c0f5027d65431879cba"
#define PW3   "zzzzyyyyxxxxwwww2222"

#define LINE1 "alice:laptop:1700000000:0:" SALT1 ":" HASH1
#define LINE2 "alice:phone:1700000100:1700000200:" SALT2 ":" HASH2
#define LINE3 "bob:tablet:1700000300:0:" SALT3 ":" HASH3

/* --- apppass_line_parse --- */

static void test_line_good(void **state)
{
    static const struct {
        const char *line;
        const char *user, *label;
        long long created, last_used;
    } cases[] = {
        {LINE1, "alice", "laptop", 1700000000, 0},
        {LINE1 "\n", "alice", "laptop", 1700000000, 0},
        {LINE1 "\r\n", "alice", "laptop", 1700000000, 0},
        {LINE2, "alice", "phone", 1700000100, 1700000200},
        {"hal@example.org:A.b_c-9:0:253402300799:" SALT1 ":" HASH1, "hal@example.org", "A.b_c-9", 0,
         253402300799LL},
        {"u:12345678901234567890123456789012:1:2:" SALT1 ":" HASH1, "u",
         "12345678901234567890123456789012", 1, 2},
        {"u:x:0001:0:" SALT1 ":" HASH1, "u", "x", 1, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *line = strdup(cases[i].line);
        struct apppass_line l;
        const char *error = NULL;
        int r = apppass_line_parse(line, &l, &error);
        if (r != 1)
            print_error("%s: %s\n", cases[i].line, error != NULL ? error : "(no error)");
        assert_int_equal(r, 1);
        assert_string_equal(l.user, cases[i].user);
        assert_string_equal(l.label, cases[i].label);
        assert_int_equal((long long)l.created, cases[i].created);
        assert_int_equal((long long)l.last_used, cases[i].last_used);
        free(line);
    }

    /* The fields decode to the bytes, and format gives the line back. */
    char line[] = LINE2 "\n", out[512];
    struct apppass_line l;
    const char *error;
    assert_int_equal(apppass_line_parse(line, &l, &error), 1);
    assert_int_equal(l.salt[0], 0xff);
    assert_int_equal(l.hash[0], 0x8b);
    assert_int_equal(l.hash[31], 0x49);
    assert_int_equal(apppass_line_format(&l, out, sizeof(out)), (int)strlen(LINE2));
    assert_string_equal(out, LINE2);
    assert_int_equal(apppass_line_format(&l, out, strlen(LINE2)), -1);
}

static void test_line_skipped(void **state)
{
    static const char *const cases[] = {"", "\n", "\r\n", "# a note", "#:::::\n"};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *line = strdup(cases[i]);
        struct apppass_line l;
        const char *error = NULL;
        assert_int_equal(apppass_line_parse(line, &l, &error), 0);
        free(line);
    }
}

static void test_line_bad(void **state)
{
    static const char *const cases[] = {
        "alice",
        "alice:laptop:1700000000:0:" SALT1,                             /* 5 fields */
        LINE1 ":",                                                      /* 7 fields */
        LINE1 ":extra",                                                 /* 7 fields */
        ":laptop:1:0:" SALT1 ":" HASH1,                                 /* no user */
        "al ice:laptop:1:0:" SALT1 ":" HASH1,                           /* space */
        "al/ice:laptop:1:0:" SALT1 ":" HASH1,                           /* slash */
        "al\tice:laptop:1:0:" SALT1 ":" HASH1,                          /* control */
        "alice::1:0:" SALT1 ":" HASH1,                                  /* no label */
        "alice:123456789012345678901234567890123:1:0:" SALT1 ":" HASH1, /* 33 */
        "alice:lap top:1:0:" SALT1 ":" HASH1,
        "alice:lap/top:1:0:" SALT1 ":" HASH1,
        "alice:lap+top:1:0:" SALT1 ":" HASH1,
        "alice:l\xc3\xa4ptop:1:0:" SALT1 ":" HASH1,
        "alice:laptop::0:" SALT1 ":" HASH1, /* empty time */
        "alice:laptop:-1:0:" SALT1 ":" HASH1,
        "alice:laptop:+1:0:" SALT1 ":" HASH1,
        "alice:laptop: 1:0:" SALT1 ":" HASH1,
        "alice:laptop:1x:0:" SALT1 ":" HASH1,
        "alice:laptop:253402300800:0:" SALT1 ":" HASH1, /* year 10000 */
        "alice:laptop:1:99999999999999999999999:" SALT1 ":" HASH1,
        "alice:laptop:1:never:" SALT1 ":" HASH1,
        "alice:laptop:1:0::" HASH1,                                 /* no salt */
        "alice:laptop:1:0:0001:" HASH1,                             /* short salt */
        "alice:laptop:1:0:" SALT1 "00:" HASH1,                      /* long salt */
        "alice:laptop:1:0:000102030405060708090A0B0C0D0E0F:" HASH1, /* upper */
        "alice:laptop:1:0:g00102030405060708090a0b0c0d0e0f:" HASH1,
        "alice:laptop:1:0:" SALT1 ":",           /* no hash */
        "alice:laptop:1:0:" SALT1 ":" SALT1,     /* short hash */
        "alice:laptop:1:0:" SALT1 ":" HASH1 "0", /* long hash */
        "alice:laptop:1:0:" SALT1 ":" HASH1 " ",
        "alice:laptop:1:0:" SALT1 ":" HASH1 "\r", /* CR without LF */
        "alice:laptop:1:0:" SALT1 ":" HASH1 "\n\n",
        " " LINE1,
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *line = strdup(cases[i]);
        struct apppass_line l;
        const char *error = NULL;
        int r = apppass_line_parse(line, &l, &error);
        if (r != -1)
            print_error("accepted: %s\n", cases[i]);
        assert_int_equal(r, -1);
        assert_non_null(error);
        assert_true(error[0] != '\0');
        free(line);
    }
}

static void test_label_valid(void **state)
{
    (void)state;
    assert_true(apppass_label_valid("laptop"));
    assert_true(apppass_label_valid("Work-Phone_2.0"));
    assert_true(apppass_label_valid("12345678901234567890123456789012"));
    assert_false(apppass_label_valid(""));
    assert_false(apppass_label_valid("123456789012345678901234567890123"));
    assert_false(apppass_label_valid("a:b"));
    assert_false(apppass_label_valid("a b"));
    assert_false(apppass_label_valid("a\n"));
}

/* --- generation and normalization --- */

static void test_normalize(void **state)
{
    static const struct {
        const char *typed;
        const char *out; /* NULL: refused */
    } cases[] = {
        {PW1, PW1},
        {"abcd-efgh-ijkl-mnop-qrst", PW1},
        {"ABCD-EFGH-IJKL-MNOP-QRST", PW1},
        {"abcd efgh ijkl mnop qrst", PW1},
        {" AbCd--eFgH ijkl-MNOPqrst ", PW1},
        {"2345-67ab-cdef-ghij-klmn", PW2},
        {"abcd-efgh-ijkl-mnop-qrs", NULL},   /* 19 */
        {"abcd-efgh-ijkl-mnop-qrstu", NULL}, /* 21 */
        {"abcd-efgh-ijkl-mnop-qrs1", NULL},  /* not base32 */
        {"abcd-efgh-ijkl-mnop-qrs8", NULL},
        {"abcd_efgh_ijkl_mnop_qrst", NULL},
        {"abcd\tefgh-ijkl-mnop-qrst", NULL},
        {"", NULL},
        {"----", NULL},
        {"correct horse battery staple", NULL},
    };
    char out[APPPASS_LEN + 1];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool ok = apppass_normalize(cases[i].typed, strlen(cases[i].typed), out);
        if (ok != (cases[i].out != NULL))
            print_error("%s\n", cases[i].typed);
        assert_int_equal(ok, cases[i].out != NULL);
        if (ok)
            assert_string_equal(out, cases[i].out);
    }
    /* The length given counts, not a NUL: the password may be a slice. */
    assert_true(apppass_normalize(PW1 "xyz", APPPASS_LEN, out));
    assert_string_equal(out, PW1);
    /* Over-long input is refused before it is looked at. */
    char big[400];
    memset(big, '-', sizeof(big));
    memcpy(big, PW1, APPPASS_LEN);
    assert_false(apppass_normalize(big, sizeof(big), out));
}

static void test_generate(void **state)
{
    char pw[APPPASS_LEN + 1], shown[APPPASS_SHOWN_LEN + 1], norm[APPPASS_LEN + 1];
    char pw2[APPPASS_LEN + 1], shown2[APPPASS_SHOWN_LEN + 1], line[512];
    struct apppass_line l, l2, back;
    const char *error;
    unsigned seen[32] = {0};

    (void)state;
    assert_int_equal(apppass_generate("alice", "laptop", 1700000000, pw, shown, &l), 0);
    assert_int_equal(strlen(pw), APPPASS_LEN);
    assert_int_equal(strlen(shown), 24);
    for (size_t i = 0; i < 24; i++) {
        if (i % 5 == 4)
            assert_int_equal(shown[i], '-');
        else
            assert_non_null(strchr("abcdefghijklmnopqrstuvwxyz234567", shown[i]));
    }
    assert_true(apppass_normalize(shown, strlen(shown), norm));
    assert_string_equal(norm, pw);
    assert_string_equal(l.user, "alice");
    assert_string_equal(l.label, "laptop");
    assert_int_equal((long long)l.created, 1700000000);
    assert_int_equal((long long)l.last_used, 0);
    /* The stored line parses back to the same entry. */
    assert_true(apppass_line_format(&l, line, sizeof(line)) > 0);
    assert_int_equal(apppass_line_parse(line, &back, &error), 1);
    assert_memory_equal(back.salt, l.salt, APPPASS_SALT_LEN);
    assert_memory_equal(back.hash, l.hash, APPPASS_HASH_LEN);

    /* Fresh secret and salt each time; every character of the alphabet
     * turns up over a few hundred draws. */
    assert_int_equal(apppass_generate("alice", "phone", 1, pw2, shown2, &l2), 0);
    assert_string_not_equal(pw, pw2);
    assert_memory_not_equal(l.salt, l2.salt, APPPASS_SALT_LEN);
    for (int n = 0; n < 200; n++) {
        assert_int_equal(apppass_generate("a", "b", 1, pw2, shown2, &l2), 0);
        for (size_t i = 0; i < APPPASS_LEN; i++)
            seen[strchr("abcdefghijklmnopqrstuvwxyz234567", pw2[i]) -
                 "abcdefghijklmnopqrstuvwxyz234567"]++;
    }
    for (size_t i = 0; i < 32; i++)
        assert_true(seen[i] > 0);
}

/* --- the verifier --- */

static char tmpdir[64];
static char path[128];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/postern-test-apppass-XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/" APPPASS_FILE, tmpdir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* Replaced atomically, as the CLI does. */
static void write_file(const char *content)
{
    char tmp[200];

    snprintf(tmp, sizeof(tmp), "%s.new", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(content, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static char *read_file(void)
{
    static char buf[8192];
    FILE *f = fopen(path, "r");

    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static int verify(struct apppass *a, const char *user, const char *pw, time_t now, char *label)
{
    return apppass_verify(a, user, pw, strlen(pw), now, label, APPPASS_LABEL_MAX + 1);
}

static void test_verify(void **state)
{
    struct apppass *a = apppass_open(path);
    char label[APPPASS_LABEL_MAX + 1];

    (void)state;
    assert_non_null(a);
    /* No file yet: nobody has an app password. */
    assert_int_equal(verify(a, "alice", PW1, 1, label), 0);
    assert_int_equal(apppass_count(a, "alice"), 0);

    write_file("# app passwords\n" LINE1 "\n" LINE3 "\n" LINE2 "\n");
    assert_int_equal(apppass_count(a, "alice"), 2);
    assert_int_equal(apppass_count(a, "bob"), 1);
    assert_int_equal(apppass_count(a, "carol"), 0);
    assert_int_equal(apppass_count(a, "alic"), 0);

    strcpy(label, "?");
    assert_int_equal(verify(a, "alice", PW1, 1700000000, label), 1);
    assert_string_equal(label, "laptop");
    assert_int_equal(verify(a, "alice", PW2, 1700000200, label), 1);
    assert_string_equal(label, "phone");
    /* Dashes, spaces and capitals as a user may type them. */
    assert_int_equal(verify(a, "alice", "ABCD-efgh-IJKL-mnop-QRST", 1700000000, label), 1);
    assert_int_equal(verify(a, "alice", "abcd efgh ijkl mnop qrst", 1700000000, label), 1);
    assert_int_equal(verify(a, "bob", "zzzz-yyyy-xxxx-wwww-2222", 1700000300, label), 1);
    assert_string_equal(label, "tablet");

    /* Wrong password, another user's, an unknown user, not the form. */
    strcpy(label, "?");
    assert_int_equal(verify(a, "alice", "abcd-efgh-ijkl-mnop-qrsa", 1, label), 0);
    assert_int_equal(verify(a, "alice", PW3, 1, label), 0);
    assert_int_equal(verify(a, "bob", PW1, 1, label), 0);
    assert_int_equal(verify(a, "carol", PW1, 1, label), 0);
    assert_int_equal(verify(a, "alice", "secret", 1, label), 0);
    assert_int_equal(verify(a, "alice", "", 1, label), 0);
    assert_string_equal(label, "?");
    /* label_r may be left out. */
    assert_int_equal(apppass_verify(a, "alice", PW1, strlen(PW1), 1700000000, NULL, 0), 1);

    /* Revoked: the line is gone from the file, the password with it. */
    write_file(LINE2 "\n" LINE3 "\n");
    assert_int_equal(verify(a, "alice", PW1, 1700000000, label), 0);
    assert_int_equal(verify(a, "alice", PW2, 1700000200, label), 1);
    assert_int_equal(apppass_count(a, "alice"), 1);

    /* Removed file: nothing matches any more. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(verify(a, "alice", PW2, 1700000200, label), 0);
    apppass_close(&a);
    assert_null(a);
    apppass_close(&a);
}

static void test_reload_in_place(void **state)
{
    struct apppass *a = apppass_open(path);
    char label[APPPASS_LABEL_MAX + 1];

    (void)state;
    write_file(LINE3 "\n");
    assert_int_equal(verify(a, "alice", PW1, 1700000000, label), 0);
    /* Rewritten in place (same inode, as an editor might): seen too. */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(LINE3 "\n" LINE1 "\n", f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(verify(a, "alice", PW1, 1700000000, label), 1);
    assert_string_equal(label, "laptop");
    apppass_close(&a);
}

static void test_bad_lines_skipped(void **state)
{
    struct apppass *a = apppass_open(path);
    char label[APPPASS_LABEL_MAX + 1];

    (void)state;
    write_file("garbage\n" LINE1 "\nalice:x:1:0:zz:zz\n" LINE2);
    assert_int_equal(apppass_count(a, "alice"), 2);
    assert_int_equal(verify(a, "alice", PW2, 1700000200, label), 1);
    apppass_close(&a);
}

static void test_unreadable(void **state)
{
    struct apppass *a = apppass_open(path);
    char label[APPPASS_LABEL_MAX + 1];

    (void)state;
    /* A folder where the file should be: there, but not readable as one. */
    unlink(path);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(verify(a, "alice", PW1, 1, label), -1);
    assert_int_equal(apppass_count(a, "alice"), -1);
    /* A password that cannot be an app password does not need the file. */
    assert_int_equal(verify(a, "alice", "secret", 1, label), 0);
    assert_int_equal(rmdir(path), 0);
    write_file(LINE1 "\n");
    assert_int_equal(verify(a, "alice", PW1, 1700000000, label), 1);
    apppass_close(&a);
}

/* A login, then the daemon's tick. */
static int vflush(struct apppass *a, const char *user, const char *pw, time_t now, char *label)
{
    int r = verify(a, user, pw, now, label);

    apppass_flush(a);
    return r;
}

static void test_last_used(void **state)
{
    static const char head[] = "# kept\nnot a valid line\n" LINE3 "\n";
    struct apppass *a = apppass_open(path);
    char label[APPPASS_LABEL_MAX + 1], want[4096];
    struct stat st;

    (void)state;
    write_file("# kept\nnot a valid line\n" LINE3 "\n" LINE1 "\n" LINE2 "\n");
    assert_int_equal(chmod(path, 0640), 0);

    /* First use: written, other lines untouched, mode kept. */
    assert_int_equal(vflush(a, "alice", PW1, 1800000000, label), 1);
    snprintf(want, sizeof(want),
             "%salice:laptop:1700000000:1800000000:" SALT1 ":" HASH1 "\n" LINE2 "\n", head);
    assert_string_equal(read_file(), want);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);

    /* Within a minute: not written again. */
    assert_int_equal(vflush(a, "alice", PW1, 1800000059, label), 1);
    assert_string_equal(read_file(), want);

    /* A minute later: written. */
    assert_int_equal(vflush(a, "alice", PW1, 1800000060, label), 1);
    snprintf(want, sizeof(want),
             "%salice:laptop:1700000000:1800000060:" SALT1 ":" HASH1 "\n" LINE2 "\n", head);
    assert_string_equal(read_file(), want);

    /* Another entry has its own clock; a failed login writes nothing. */
    assert_int_equal(vflush(a, "alice", PW2, 1800000061, label), 1);
    assert_int_equal(vflush(a, "bob", PW1, 1900000000, label), 0);
    snprintf(want, sizeof(want),
             "%salice:laptop:1700000000:1800000060:" SALT1 ":" HASH1
             "\nalice:phone:1700000100:1800000061:" SALT2 ":" HASH2 "\n",
             head);
    assert_string_equal(read_file(), want);

    /* Recording one entry keeps every other line as it is on disk, even
     * a duplicate added by hand. */
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs(LINE1 "\n", f);
    fclose(f);
    assert_int_equal(vflush(a, "bob", PW3, 1800000000, label), 1);
    snprintf(want, sizeof(want),
             "%salice:laptop:1700000000:1800000060:" SALT1 ":" HASH1
             "\nalice:phone:1700000100:1800000061:" SALT2 ":" HASH2 "\n" LINE1 "\n",
             "# kept\nnot a valid line\nbob:tablet:1700000300:1800000000:" SALT3 ":" HASH3 "\n");
    assert_string_equal(read_file(), want);

    /* Time does not run backwards by a little (two processes' clocks)... */
    assert_int_equal(vflush(a, "bob", PW3, 1799999000, label), 1);
    assert_string_equal(read_file(), want);
    /* ...but a clock set back by more than a day is followed. */
    assert_int_equal(vflush(a, "bob", PW3, 1700000400, label), 1);
    assert_non_null(strstr(read_file(), "bob:tablet:1700000300:1700000400:"));
    apppass_close(&a);
}

/* Uses wait for the flush, and one flush writes them all at once. */
static void test_last_used_batched(void **state)
{
    struct apppass *a = apppass_open(path);
    char label[APPPASS_LABEL_MAX + 1], want[4096];
    struct stat before, after;

    (void)state;
    write_file(LINE1 "\n" LINE2 "\n" LINE3 "\n");
    assert_int_equal(stat(path, &before), 0);
    assert_int_equal(verify(a, "alice", PW1, 1800000000, label), 1);
    assert_int_equal(verify(a, "bob", PW3, 1800000001, label), 1);
    /* The same entry again within the interval is not queued twice. */
    assert_int_equal(verify(a, "alice", PW1, 1800000002, label), 1);
    assert_string_equal(read_file(), LINE1 "\n" LINE2 "\n" LINE3 "\n");
    apppass_flush(a);
    snprintf(want, sizeof(want),
             "alice:laptop:1700000000:1800000000:" SALT1 ":" HASH1 "\n" LINE2
             "\nbob:tablet:1700000300:1800000001:" SALT3 ":" HASH3 "\n");
    assert_string_equal(read_file(), want);
    assert_int_equal(stat(path, &after), 0);
    assert_int_not_equal(before.st_ino, after.st_ino); /* replaced once, atomically */

    /* Nothing queued: the file is left alone. */
    apppass_flush(a);
    assert_int_equal(stat(path, &before), 0);
    assert_int_equal(before.st_ino, after.st_ino);

    /* A use queued before the CLI changes the file survives the reload,
     * and the CLI's change is kept. */
    assert_int_equal(verify(a, "alice", PW2, 1800000100, label), 1);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs("# added by hand\n", f);
    fclose(f);
    assert_int_equal(verify(a, "bob", PW3, 1800000200, label), 1);
    apppass_flush(a);
    assert_non_null(strstr(read_file(), "alice:phone:1700000100:1800000100:"));
    assert_non_null(strstr(read_file(), "bob:tablet:1700000300:1800000200:"));
    assert_non_null(strstr(read_file(), "# added by hand\n"));

    /* While the CLI holds the lock the flush does not wait: the use stays
     * queued and the next flush writes it. */
    struct apppass_edit e;
    const char *error;
    assert_int_equal(apppass_edit_begin(&e, path, false, &error), 0);
    assert_int_equal(verify(a, "alice", PW1, 1800000300, label), 1);
    apppass_flush(a);
    assert_null(strstr(read_file(), ":1800000300:"));
    apppass_edit_end(&e);
    apppass_flush(a);
    assert_non_null(strstr(read_file(), "alice:laptop:1700000000:1800000300:"));
    apppass_close(&a);
}

static void test_edit(void **state)
{
    struct apppass_edit e;
    const char *error;
    char lock[200];
    struct stat st;

    (void)state;
    unlink(path);
    assert_int_equal(apppass_edit_begin(&e, path, false, &error), 0);
    assert_int_equal(e.n, 0);
    assert_false(e.existed);
    assert_int_equal(apppass_edit_append(&e, LINE1), 0);
    assert_int_equal(apppass_edit_append(&e, LINE2), 0);
    free(e.lines[0]);
    e.lines[0] = NULL; /* dropped */
    assert_int_equal(apppass_edit_commit(&e, &error), 0);
    apppass_edit_end(&e);
    assert_string_equal(read_file(), LINE2 "\n");
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    snprintf(lock, sizeof(lock), "%s.lock", path);
    assert_int_equal(stat(lock, &st), 0);

    /* A last line without '\n' is read whole. */
    write_file(LINE1 "\n" LINE3);
    assert_int_equal(apppass_edit_begin(&e, path, false, &error), 0);
    assert_int_equal(e.n, 2);
    assert_string_equal(e.lines[1], LINE3);
    apppass_edit_end(&e);

    /* No folder: a clear error, and end is still safe. */
    assert_int_equal(apppass_edit_begin(&e, "/nonexistent-postern/app-passwords", false, &error),
                     -1);
    assert_non_null(strstr(error, "/nonexistent-postern/app-passwords.lock"));
    apppass_edit_end(&e);
}

/* --- threads --- */

struct worker {
    struct apppass *a;
    int ok;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    char label[APPPASS_LABEL_MAX + 1];

    for (int i = 0; i < 300; i++) {
        const char *user = i % 3 == 2 ? "bob" : "alice";
        const char *pw = i % 3 == 0 ? PW1 : i % 3 == 1 ? "abcd-efgh-ijkl-mnop-qrsa" : PW3;
        int want = i % 3 == 1 ? 0 : 1;
        /* A few distinct times, so that some logins record a last use. */
        w->ok += apppass_verify(w->a, user, pw, strlen(pw), 1800000000 + (i / 100) * 60, label,
                                sizeof(label)) == want;
    }
    return NULL;
}

static void test_threads(void **state)
{
    struct worker w[4];
    pthread_t t[4];
    struct apppass *a = apppass_open(path);

    (void)state;
    write_file(LINE1 "\n" LINE2 "\n" LINE3 "\n");
    for (int i = 0; i < 4; i++) {
        w[i].a = a;
        w[i].ok = 0;
        assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].ok, 300);
    }
    apppass_flush(a);
    assert_non_null(strstr(read_file(), "alice:laptop:1700000000:1800000120:"));
    assert_non_null(strstr(read_file(), "bob:tablet:1700000300:1800000120:"));
    assert_int_equal(apppass_count(a, "alice"), 2);
    apppass_close(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_good),
        cmocka_unit_test(test_line_skipped),
        cmocka_unit_test(test_line_bad),
        cmocka_unit_test(test_label_valid),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_generate),
        cmocka_unit_test_setup_teardown(test_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reload_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_lines_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_used, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_used_batched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_edit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
