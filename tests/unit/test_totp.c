/*
 * TOTP (src/auth/totp.c): base32 against RFC 4648 section 10, HOTP
 * against RFC 4226 appendix D, TOTP against RFC 6238 appendix B, the
 * verification window, the password+code split, and replay refusal in
 * memory, on disk across restarts, and between threads.
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

#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth/totp.h"

/* RFC 6238 appendix B, SHA-1: the ASCII seed, and its base32 spelling. */
#define SEED     "12345678901234567890"
#define SEED_B32 "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"

static char tmpdir[] = "/tmp/test_totp.XXXXXX";

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
    return mkdtemp(tmpdir) != NULL ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* --- base32 --- */

static const struct {
    const char *plain, *padded, *bare;
} rfc4648[] = {
    {"", "", ""},
    {"f", "MY======", "MY"},
    {"fo", "MZXQ====", "MZXQ"},
    {"foo", "MZXW6===", "MZXW6"},
    {"foob", "MZXW6YQ=", "MZXW6YQ"},
    {"fooba", "MZXW6YTB", "MZXW6YTB"},
    {"foobar", "MZXW6YTBOI======", "MZXW6YTBOI"},
};

static void test_base32_rfc4648(void **state)
{
    unsigned char out[32];
    char enc[32], lower[32];

    (void)state;
    for (size_t i = 0; i < sizeof(rfc4648) / sizeof(rfc4648[0]); i++) {
        const char *p = rfc4648[i].plain;
        size_t plen = strlen(p);

        assert_int_equal(base32_encode((const unsigned char *)p, plen, enc, sizeof(enc)),
                         strlen(rfc4648[i].bare));
        assert_string_equal(enc, rfc4648[i].bare);

        assert_int_equal(base32_decode(rfc4648[i].padded, strlen(rfc4648[i].padded), out, 32),
                         (int)plen);
        assert_memory_equal(out, p, plen);
        assert_int_equal(base32_decode(rfc4648[i].bare, strlen(rfc4648[i].bare), out, 32),
                         (int)plen);
        assert_memory_equal(out, p, plen);

        size_t n = strlen(rfc4648[i].padded);
        for (size_t j = 0; j <= n; j++)
            lower[j] = (char)((rfc4648[i].padded[j] >= 'A' && rfc4648[i].padded[j] <= 'Z')
                                  ? rfc4648[i].padded[j] - 'A' + 'a'
                                  : rfc4648[i].padded[j]);
        assert_int_equal(base32_decode(lower, n, out, 32), (int)plen);
        assert_memory_equal(out, p, plen);
    }
    assert_int_equal(base32_decode(SEED_B32, strlen(SEED_B32), out, sizeof(out)), 20);
    assert_memory_equal(out, SEED, 20);
}

static void test_base32_refused(void **state)
{
    static const char *const bad[] = {
        "A",          /* 1 character left over: no byte string gives that */
        "MZX",        /* 3 */
        "MZXW6Y",     /* 6 */
        "MY=",        /* padding that does not fill the group */
        "MY=======",  /* too much padding */
        "MZXW6===X",  /* data after the padding */
        "M=Y=====",   /* padding inside */
        "MY1=====",   /* '1' is not in the alphabet */
        "MZXW 6YTB",  /* spaces */
        "MZXW6YT8",   /* '8' */
        "MZXW6YTB\n", /* newline */
        "========",   /* padding only */
    };
    unsigned char out[32];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(base32_decode(bad[i], strlen(bad[i]), out, sizeof(out)), -1);
    /* The length is honoured: a NUL or junk past it is not read. */
    assert_int_equal(base32_decode("MZXW6YTB!!", 8, out, sizeof(out)), 5);
    /* Output that would not fit is refused, not truncated. */
    assert_int_equal(base32_decode("MZXW6YTBOI", 10, out, 5), -1);
    assert_int_equal(base32_decode("MZXW6YTBOI", 10, out, 6), 6);
}

static void test_base32_roundtrip_and_space(void **state)
{
    unsigned char in[64], out[64];
    char enc[128];

    (void)state;
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (unsigned char)(i * 37 + 11);
    for (size_t len = 0; len <= sizeof(in); len++) {
        size_t need = (len * 8 + 4) / 5 + 1;
        assert_int_equal(base32_encode(in, len, enc, need), need - 1);
        assert_int_equal(base32_decode(enc, need - 1, out, sizeof(out)), (int)len);
        assert_memory_equal(out, in, len);
        /* One byte short of the terminator: nothing written. */
        assert_int_equal(base32_encode(in, len, enc, need - 1), 0);
    }
}

/* --- HOTP, RFC 4226 appendix D --- */

static void test_hotp_rfc4226(void **state)
{
    static const uint32_t want[10] = {755224, 287082, 359152, 969429, 338314,
                                      254676, 287922, 162583, 399871, 520489};

    (void)state;
    for (uint64_t c = 0; c < 10; c++)
        assert_int_equal(hotp((const unsigned char *)SEED, 20, c, 6), want[c]);
    /* Digits outside 6..8 are refused with a value no code can equal. */
    assert_int_equal(hotp((const unsigned char *)SEED, 20, 0, 5), UINT32_MAX);
    assert_int_equal(hotp((const unsigned char *)SEED, 20, 0, 9), UINT32_MAX);
}

/* --- TOTP, RFC 6238 appendix B (SHA-1, 8 digits) --- */

static void test_totp_rfc6238(void **state)
{
    static const struct {
        time_t t;
        uint32_t code;
    } vec[] = {
        {59, 94287082},         {1111111109, 7081804},  {1111111111, 14050471},
        {1234567890, 89005924}, {2000000000, 69279037}, {20000000000, 65353130},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
        uint64_t step = (uint64_t)vec[i].t / TOTP_PERIOD, got = 0;
        char code[8];

        assert_int_equal(hotp((const unsigned char *)SEED, 20, step, 8), vec[i].code);
        /* The 6-digit code of totp_verify is the same truncation. */
        snprintf(code, sizeof(code), "%06u", (unsigned)(vec[i].code % 1000000));
        assert_true(totp_verify(SEED_B32, code, 6, vec[i].t, &got));
        assert_int_equal(got, step);
    }
}

static void code_at(uint64_t step, char code[7])
{
    snprintf(code, 7, "%06u", (unsigned)hotp((const unsigned char *)SEED, 20, step, 6));
}

static void test_totp_window(void **state)
{
    const time_t now = 1111111111;
    const uint64_t step = (uint64_t)now / TOTP_PERIOD;
    char c[5][7];
    uint64_t got;

    (void)state;
    for (int d = -2; d <= 2; d++)
        code_at(step + (uint64_t)(int64_t)d, c[d + 2]);
    /* With this seed the five codes differ, so each test below is about
     * one step only. */
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            assert_string_not_equal(c[i], c[j]);

    for (int d = -1; d <= 1; d++) {
        got = 0;
        assert_true(totp_verify(SEED_B32, c[d + 2], 6, now, &got));
        assert_int_equal(got, step + (uint64_t)(int64_t)d);
    }
    got = 42;
    assert_false(totp_verify(SEED_B32, c[0], 6, now, &got));
    assert_false(totp_verify(SEED_B32, c[4], 6, now, &got));
    assert_int_equal(got, 42); /* untouched on refusal */
    /* The step boundary: the last second of a step and the first of the
     * next both accept the code of either. */
    time_t edge = (time_t)(step * TOTP_PERIOD);
    assert_true(totp_verify(SEED_B32, c[2], 6, edge - 1, NULL));
    assert_true(totp_verify(SEED_B32, c[2], 6, edge + TOTP_PERIOD, NULL));
    assert_false(totp_verify(SEED_B32, c[2], 6, edge + 2 * TOTP_PERIOD, NULL));
    /* Step 0 has no previous step. */
    char c0[7];
    code_at(0, c0);
    assert_true(totp_verify(SEED_B32, c0, 6, 0, &got));
    assert_int_equal(got, 0);
    assert_false(totp_verify(SEED_B32, c0, 6, -1, NULL));
    /* Lowercase and padded spellings of the secret are the same secret. */
    assert_true(totp_verify("gezdgnbvgy3tqojqgezdgnbvgy3tqojq", c[2], 6, now, NULL));
}

static void test_totp_malformed(void **state)
{
    const time_t now = 1111111111;
    char good[7], buf[16];

    (void)state;
    code_at((uint64_t)now / TOTP_PERIOD, good);
    assert_true(totp_verify(SEED_B32, good, 6, now, NULL));
    /* 5 and 7 digits: a prefix of the right code, and the right code
     * with one more digit. */
    assert_false(totp_verify(SEED_B32, good, 5, now, NULL));
    snprintf(buf, sizeof(buf), "%s0", good);
    assert_false(totp_verify(SEED_B32, buf, 7, now, NULL));
    snprintf(buf, sizeof(buf), "0%s", good);
    assert_false(totp_verify(SEED_B32, buf, 7, now, NULL));
    assert_false(totp_verify(SEED_B32, "", 0, now, NULL));
    static const char *const junk[] = {"12345a", " 12345", "12345 ", "+12345",
                                       "-12345", "12 345", "ABCDEF", "12345\n"};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        assert_false(totp_verify(SEED_B32, junk[i], 6, now, NULL));
    /* A digit replaced by a non-digit with the same low bits. */
    memcpy(buf, good, 7);
    buf[5] = (char)(buf[5] + 0x30);
    assert_false(totp_verify(SEED_B32, buf, 6, now, NULL));
    /* Secrets that are not base32, empty, or too short to be safe. */
    assert_false(totp_verify("not base32!", good, 6, now, NULL));
    assert_false(totp_verify("", good, 6, now, NULL));
    /* A different secret ("1234567890", 80 bits) gives other codes, and
     * is the shortest accepted; 72 bits are refused. */
    assert_false(totp_verify("GEZDGNBVGY3TQOJQ", good, 6, now, NULL));
    char code10[7];
    snprintf(
        code10, sizeof(code10), "%06u",
        (unsigned)hotp((const unsigned char *)"1234567890", 10, (uint64_t)now / TOTP_PERIOD, 6));
    assert_true(totp_verify("GEZDGNBVGY3TQOJQ", code10, 6, now, NULL));
    assert_false(totp_verify("GEZDGNBVGY3TQOI", code10, 6, now, NULL));
}

/* --- password followed by the code --- */

static void test_totp_split(void **state)
{
    static const struct {
        const char *in;
        bool ok;
        size_t pw_len;
    } cases[] = {
        {"secret123456", true, 6},
        {"password1234567", true, 9}, /* the code is the last six digits */
        {"x000000", true, 1},
        {"123456", false, 0}, /* a code with no password */
        {"1234567", true, 1}, /* a 1-digit password */
        {"pw12345", false, 0},
        {"secret12345x", false, 0},
        {"secret 12345", false, 0},
        {"", false, 0},
        {"abc", false, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t pw_len = 999;
        bool ok = totp_split(cases[i].in, strlen(cases[i].in), &pw_len);
        assert_int_equal(ok, cases[i].ok);
        if (ok)
            assert_int_equal(pw_len, cases[i].pw_len);
        else
            assert_int_equal(pw_len, 999);
    }
    /* The length decides, not a NUL. */
    assert_false(totp_split("pass123456", 9, &(size_t){0}));
}

/* --- replay --- */

static void test_replay_memory(void **state)
{
    struct totp_replay *r = totp_replay_new(NULL);

    (void)state;
    assert_non_null(r);
    assert_true(totp_replay_use(r, "alice", 100));
    assert_false(totp_replay_use(r, "alice", 100)); /* the same code again */
    assert_false(totp_replay_use(r, "alice", 99));  /* an older one */
    assert_true(totp_replay_use(r, "alice", 101));
    assert_false(totp_replay_use(r, "alice", 100));
    /* Users are independent. */
    assert_true(totp_replay_use(r, "bob", 100));
    assert_true(totp_replay_use(r, "alice2", 0));
    assert_false(totp_replay_use(r, "alice2", 0));
    /* Enough users to grow the table; every one keeps its own step. */
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "user%d", i);
        assert_true(totp_replay_use(r, name, (uint64_t)i + 10));
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "user%d", i);
        assert_false(totp_replay_use(r, name, (uint64_t)i + 10));
        assert_true(totp_replay_use(r, name, (uint64_t)i + 11));
    }
    totp_replay_free(r);
    totp_replay_free(NULL);
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;

    assert_non_null(d);
    for (struct dirent *de; (de = readdir(d)) != NULL;)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void test_replay_persisted(void **state)
{
    char dir[256], path[512], buf[64], longname[256];

    (void)state;
    snprintf(dir, sizeof(dir), "%s/totp", tmpdir);
    struct totp_replay *r = totp_replay_new(dir);
    assert_non_null(r);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    memset(longname, 'x', 255);
    longname[255] = '\0';
    assert_true(totp_replay_use(r, "alice", 100));
    assert_true(totp_replay_use(r, "../evil", 7));
    assert_true(totp_replay_use(r, longname, 8));
    totp_replay_free(r);

    /* One file per user, none outside the folder, no temporary left. */
    assert_int_equal(count_entries(tmpdir), 1);
    assert_int_equal(count_entries(dir), 3);
    snprintf(path, sizeof(path), "%s/alice", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(buf, sizeof(buf), f));
    fclose(f);
    assert_string_equal(buf, "100\n");

    /* A new process (a restart) still refuses what was used. */
    r = totp_replay_new(dir);
    assert_non_null(r);
    assert_false(totp_replay_use(r, "alice", 100));
    assert_false(totp_replay_use(r, "alice", 99));
    assert_false(totp_replay_use(r, "../evil", 7));
    assert_false(totp_replay_use(r, longname, 8));
    assert_true(totp_replay_use(r, "alice", 101));
    assert_true(totp_replay_use(r, "carol", 1));
    totp_replay_free(r);

    r = totp_replay_new(dir);
    assert_false(totp_replay_use(r, "alice", 101));
    assert_false(totp_replay_use(r, "carol", 1));
    totp_replay_free(r);

    /* A file edited into nonsense is replaced at the next code. */
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("garbage\n", f);
    fclose(f);
    r = totp_replay_new(dir);
    assert_true(totp_replay_use(r, "alice", 50));
    assert_false(totp_replay_use(r, "alice", 50));
    totp_replay_free(r);

    /* A folder that cannot be created. */
    snprintf(path, sizeof(path), "%s/missing/totp", tmpdir);
    assert_null(totp_replay_new(path));
}

#define RACE_STEPS 200

struct race {
    struct totp_replay *r;
    pthread_barrier_t *start;
    bool won[RACE_STEPS + 1];
};

static void *race_thread(void *arg)
{
    struct race *rc = arg;

    pthread_barrier_wait(rc->start);
    for (uint64_t step = 1; step <= RACE_STEPS; step++)
        rc->won[step] = totp_replay_use(rc->r, "alice", step);
    return NULL;
}

/* Threads presenting the same codes at once: each step wins once. */
static void test_replay_threads(void **state)
{
    pthread_barrier_t start;
    pthread_t t[4];
    static struct race rc[4];

    (void)state;
    struct totp_replay *r = totp_replay_new(NULL);
    assert_non_null(r);
    pthread_barrier_init(&start, NULL, 4);
    for (int i = 0; i < 4; i++) {
        memset(&rc[i], 0, sizeof(rc[i]));
        rc[i].r = r;
        rc[i].start = &start;
        assert_int_equal(pthread_create(&t[i], NULL, race_thread, &rc[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    /* A thread may lose steps another has passed already; no step is
     * won twice, and the last one is won exactly once. */
    for (int step = 1; step <= RACE_STEPS; step++) {
        int n = 0;
        for (int i = 0; i < 4; i++)
            n += rc[i].won[step];
        assert_true(n <= 1);
        if (step == RACE_STEPS)
            assert_int_equal(n, 1);
    }
    assert_false(totp_replay_use(r, "alice", RACE_STEPS));
    totp_replay_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base32_rfc4648),
        cmocka_unit_test(test_base32_refused),
        cmocka_unit_test(test_base32_roundtrip_and_space),
        cmocka_unit_test(test_hotp_rfc4226),
        cmocka_unit_test(test_totp_rfc6238),
        cmocka_unit_test(test_totp_window),
        cmocka_unit_test(test_totp_malformed),
        cmocka_unit_test(test_totp_split),
        cmocka_unit_test(test_replay_memory),
        cmocka_unit_test(test_replay_persisted),
        cmocka_unit_test(test_replay_threads),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
