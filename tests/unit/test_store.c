/*
 * The store (src/store): wire sizes, the UIDL rule, mail locations, and
 * the Maildir backend with its index on real temporary directories.
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

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"

/* --- wire_counter --- */

static uint64_t wire_size_cut(const char *s, size_t len, const size_t *cuts, size_t n_cuts)
{
    struct wire_counter wc;
    size_t from = 0;

    wire_counter_init(&wc);
    for (size_t c = 0; c <= n_cuts; c++) {
        size_t to = c < n_cuts ? cuts[c] : len;
        wire_counter_add(&wc, s + from, to - from);
        from = to;
    }
    return wire_counter_finish(&wc);
}

static void test_wire_counter(void **state)
{
    static const struct {
        const char *in;
        size_t len;
        uint64_t size;
    } cases[] = {
        {"", 0, 0},
        {"a", 1, 3},         /* a CRLF */
        {"a\n", 2, 3},       /* a CRLF */
        {"a\r\n", 3, 3},     /* unchanged */
        {"\n", 1, 2},        /* CRLF */
        {"\n\n", 2, 4},      /* CRLF CRLF */
        {"\r", 1, 3},        /* a lone CR is content: CR CRLF */
        {"a\r", 2, 4},       /* a CR CRLF */
        {"\r\r\n", 3, 3},    /* CR CRLF */
        {"a\rb", 3, 5},      /* a CR b CRLF */
        {"a\nb", 3, 6},      /* a CRLF b CRLF */
        {"a\nb\r\nc", 6, 9}, /* a CRLF b CRLF c CRLF */
        {".\n", 2, 3},       /* before dot-stuffing: . CRLF */
        {"..\r\n", 4, 4},    /* . . CRLF */
        {"\0", 1, 3},        /* NUL CRLF */
        {"\n\r", 2, 5},      /* CRLF CR CRLF */
        {"Subject: x\n\nhi\n", 15, 18},
    };
    size_t cuts[16];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *in = cases[i].in;
        size_t len = cases[i].len;
        assert_int_equal(wire_size_cut(in, len, NULL, 0), cases[i].size);
        for (size_t k = 1; k < len; k++) {
            cuts[0] = k;
            assert_int_equal(wire_size_cut(in, len, cuts, 1), cases[i].size);
        }
        for (size_t k = 1; k < len; k++)
            cuts[k - 1] = k;
        assert_int_equal(wire_size_cut(in, len, cuts, len > 0 ? len - 1 : 0), cases[i].size);
    }
}

/* --- store_uid_from_base --- */

static bool is_hex32(const char *s)
{
    if (strlen(s) != 32)
        return false;
    for (size_t i = 0; i < 32; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

static void uid_of(const char *base, size_t len, char out[71])
{
    memset(out, 'Z', 71);
    store_uid_from_base(base, len, out);
}

static void test_uid_from_base(void **state)
{
    char out[71], again[71], name[80];

    (void)state;
    /* A usual Maildir name is the uid. */
    uid_of("1700000000.M1P2Q3.mail.example.org,S=12,W=13", 44, out);
    assert_string_equal(out, "1700000000.M1P2Q3.mail.example.org,S=12,W=13");
    uid_of("x", 1, out);
    assert_string_equal(out, "x");
    /* Every printable ASCII character except space is allowed. */
    for (int c = 0x21; c <= 0x7e; c++) {
        char b[1] = {(char)c};
        uid_of(b, 1, out);
        assert_int_equal(strlen(out), 1);
        assert_int_equal((unsigned char)out[0], c);
    }
    /* 70 characters: kept. */
    memset(name, 'a', 70);
    uid_of(name, 70, out);
    assert_int_equal(strlen(out), 70);
    assert_memory_equal(out, name, 70);
    /* Only len counts, not what follows. */
    name[70] = 'b';
    uid_of(name, 70, out);
    assert_int_equal(strlen(out), 70);

    /* 71: digested. */
    uid_of(name, 71, out);
    assert_true(is_hex32(out));
    uid_of(name, 71, again);
    assert_string_equal(out, again);
    /* The digest is SHA-256, cut to 128 bits: stable across versions. */
    uid_of("", 0, out);
    assert_string_equal(out, "e3b0c44298fc1c149afbf4c8996fb924");

    static const char *const bad[] = {"a b", " a", "a\x7f", "caf\xc3\xa9", "a\tb", "a\x01"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uid_of(bad[i], strlen(bad[i]), out);
        assert_true(is_hex32(out));
        uid_of(bad[i], strlen(bad[i]), again);
        assert_string_equal(out, again);
        /* Different names, different uids. */
        for (size_t j = 0; j < i; j++) {
            uid_of(bad[j], strlen(bad[j]), again);
            assert_string_not_equal(out, again);
        }
    }
    /* A NUL inside counts as a byte like any other. */
    uid_of("a\0b", 3, out);
    assert_true(is_hex32(out));
}

/* --- store_location_expand --- */

static void test_location_expand(void **state)
{
    static const struct {
        const char *location, *user, *home, *want;
    } good[] = {
        {"maildir:mail/%u/Maildir", "alice", NULL, "/base/mail/alice/Maildir"},
        {"maildir:/var/mail/%u", "alice", NULL, "/var/mail/alice"},
        {"maildir:/var/mail/%d/%n", "alice@example.org", NULL, "/var/mail/example.org/alice"},
        {"maildir:/var/mail/%u", "alice@example.org", NULL, "/var/mail/alice@example.org"},
        {"maildir:%h/Maildir", "alice", "/home/alice", "/home/alice/Maildir"},
        {"maildir:/m/%h", "alice", "/home/alice", "/m//home/alice"},
        {"maildir:/m/100%%/%u", "bob", NULL, "/m/100%/bob"},
        {"maildir:%%u", "bob", NULL, "/base/%u"},
        {"maildir:Maildir", "bob", NULL, "/base/Maildir"},
        {"maildir:/x/%n", "bob", NULL, "/x/bob"},
        {"maildir:/x/%u", "a..b", NULL, "/x/a..b"},
        {"maildir:/x/%u", ".alice", NULL, "/x/.alice"},
        {"maildir:/x/%n", "%..@x", NULL, "/x/%.."},
    };
    static const struct {
        const char *location, *user, *home, *error;
    } bad[] = {
        {"mbox:/var/mail/%u", "alice", NULL, "mail location must start with \"maildir:\""},
        {"maildir:", "alice", NULL, "mail location has no path"},
        {"maildir:/m/%x", "alice", NULL,
         "unknown %-variable in mail location (use %u, %n, %d, %h or %%)"},
        {"maildir:/m/%", "alice", NULL,
         "unknown %-variable in mail location (use %u, %n, %d, %h or %%)"},
        {"maildir:/m/%U", "alice", NULL,
         "unknown %-variable in mail location (use %u, %n, %d, %h or %%)"},
        {"maildir:/m/%u", "a/b", NULL, "user name cannot be used in a path"},
        {"maildir:/m/%u", "..", NULL, "user name cannot be used in a path"},
        {"maildir:/m/%u", ".", NULL, "user name cannot be used in a path"},
        {"maildir:/m/%n", "..@example.org", NULL, "user name cannot be used in a path"},
        {"maildir:/m/%d", "alice@../..", NULL, "user name cannot be used in a path"},
        {"maildir:/m/%d", "alice@a/b", NULL, "user name cannot be used in a path"},
        /* No domain: %d would be empty. */
        {"maildir:/m/%d/%n", "alice", NULL, "user name cannot be used in a path"},
        {"maildir:/m/%u", "a\nb", NULL, "user name cannot be used in a path"},
        {"maildir:/m/%u", "a\x7f", NULL, "user name cannot be used in a path"},
        {"maildir:/m/%u", "", NULL, "user name cannot be used in a path"},
        /* A name that starts with '%' is checked like any other. */
        {"maildir:/m/%u", "%/../../etc", NULL, "user name cannot be used in a path"},
        {"maildir:/m/%d", "a@%/..", NULL, "user name cannot be used in a path"},
        {"maildir:%h/Maildir", "alice", NULL, "%h used but the account has no absolute home"},
        {"maildir:%h/Maildir", "alice", "home/alice",
         "%h used but the account has no absolute home"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *error = NULL;
        char *path =
            store_location_expand(good[i].location, "/base", good[i].user, good[i].home, &error);
        if (path == NULL)
            print_error("%s: %s\n", good[i].location, error);
        assert_non_null(path);
        assert_string_equal(path, good[i].want);
        free(path);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *error = NULL;
        char *path =
            store_location_expand(bad[i].location, "/base", bad[i].user, bad[i].home, &error);
        if (path != NULL)
            print_error("%s with %s gave %s\n", bad[i].location, bad[i].user, path);
        assert_null(path);
        assert_string_equal(error, bad[i].error);
    }

    /* Too long for a path. */
    char *user = malloc(5000);
    const char *error = NULL;
    memset(user, 'u', 4999);
    user[4999] = '\0';
    assert_null(store_location_expand("maildir:/m/%u", "/base", user, NULL, &error));
    assert_string_equal(error, "mail location too long");
    free(user);
}

/* --- Maildir --- */

struct tmp {
    char root[64];
    char md[128]; /* root/Maildir */
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int md_setup(void **state)
{
    struct tmp *t = calloc(1, sizeof(*t));

    assert_non_null(t);
    strcpy(t->root, "/tmp/postern-test-store-XXXXXX");
    assert_non_null(mkdtemp(t->root));
    snprintf(t->md, sizeof(t->md), "%s/Maildir", t->root);
    *state = t;
    return 0;
}

static int md_teardown(void **state)
{
    struct tmp *t = *state;

    nftw(t->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(t);
    return 0;
}

static void mkmaildir(const struct tmp *t)
{
    char p[256];

    assert_int_equal(mkdir(t->md, 0700), 0);
    snprintf(p, sizeof(p), "%s/new", t->md);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/cur", t->md);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof(p), "%s/tmp", t->md);
    assert_int_equal(mkdir(p, 0700), 0);
}

/* Writes md/rel with content. */
static void put(const struct tmp *t, const char *rel, const char *content)
{
    char p[512];

    snprintf(p, sizeof(p), "%s/%s", t->md, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(content, 1, strlen(content), f), strlen(content));
    assert_int_equal(fclose(f), 0);
}

static bool exists(const struct tmp *t, const char *rel)
{
    char p[512];
    struct stat st;

    snprintf(p, sizeof(p), "%s/%s", t->md, rel);
    return lstat(p, &st) == 0;
}

static void md_rename(const struct tmp *t, const char *from, const char *to)
{
    char a[512], b[512];

    snprintf(a, sizeof(a), "%s/%s", t->md, from);
    snprintf(b, sizeof(b), "%s/%s", t->md, to);
    assert_int_equal(rename(a, b), 0);
}

static void md_truncate(const struct tmp *t, const char *rel)
{
    char p[512];

    snprintf(p, sizeof(p), "%s/%s", t->md, rel);
    assert_int_equal(truncate(p, 0), 0);
}

static char *slurp(const char *path, size_t *len_r)
{
    FILE *f = fopen(path, "r");
    char *buf = malloc(1 << 20);
    size_t n;

    assert_non_null(f);
    assert_non_null(buf);
    n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (len_r != NULL)
        *len_r = n;
    return buf;
}

static struct mailbox *open_ok(const struct tmp *t)
{
    struct mailbox *mb = NULL;
    const char *error = NULL;
    enum store_status st = maildir_open(t->md, &mb, &error);

    if (st != STORE_OK)
        print_error("maildir_open: %s\n", error);
    assert_int_equal(st, STORE_OK);
    assert_non_null(mb);
    return mb;
}

/* The whole message i, read through small buffers. */
static char *read_msg(struct mailbox *mb, unsigned i, size_t bufsize)
{
    struct mail_stream *st = NULL;
    const char *error = NULL;
    char *out = malloc(1 << 16);
    size_t len = 0;
    ssize_t n;

    assert_non_null(out);
    assert_int_equal(mailbox_msg_open(mb, i, &st, &error), 0);
    assert_non_null(st);
    while ((n = mail_stream_read(mb, st, out + len, bufsize)) > 0)
        len += (size_t)n;
    assert_int_equal(n, 0);
    mail_stream_close(mb, &st);
    assert_null(st);
    out[len] = '\0';
    return out;
}

static unsigned find_uid(struct mailbox *mb, const char *uid)
{
    for (unsigned i = 0; i < mailbox_count(mb); i++) {
        if (strcmp(mailbox_msg_uid(mb, i), uid) == 0)
            return i;
    }
    fail_msg("uid %s not found", uid);
    return 0;
}

static void test_maildir_created(void **state)
{
    struct tmp *t = *state;
    struct mailbox *mb;
    char deep[256];
    struct stat st;

    /* Parents too, as a first delivery would. */
    snprintf(t->md, sizeof(t->md), "%s/a/b/Maildir", t->root);
    mb = open_ok(t);
    assert_int_equal(mailbox_count(mb), 0);
    for (int i = 0; i < 3; i++) {
        snprintf(deep, sizeof(deep), "%s/%s", t->md, i == 0 ? "new" : i == 1 ? "cur" : "tmp");
        assert_int_equal(stat(deep, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0700);
    }
    mailbox_close(&mb);
    assert_null(mb);
}

static void test_maildir_missing_subdir(void **state)
{
    struct tmp *t = *state;
    struct mailbox *mb;

    /* A Maildir made by hand without tmp/ and cur/. */
    char p[256];
    assert_int_equal(mkdir(t->md, 0700), 0);
    snprintf(p, sizeof(p), "%s/new", t->md);
    assert_int_equal(mkdir(p, 0700), 0);
    put(t, "new/1700000000.A.host", "a\n");
    mb = open_ok(t);
    assert_int_equal(mailbox_count(mb), 1);
    assert_true(exists(t, "cur"));
    assert_true(exists(t, "tmp"));
    mailbox_close(&mb);
}

static void test_maildir_not_a_directory(void **state)
{
    struct tmp *t = *state;
    struct mailbox *mb = NULL;
    const char *error = NULL;

    FILE *f = fopen(t->md, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(maildir_open(t->md, &mb, &error), STORE_PERMFAIL);
    assert_null(mb);
    assert_non_null(error);
    assert_non_null(strstr(error, t->md));
}

static void test_maildir_order_and_contents(void **state)
{
    struct tmp *t = *state;
    struct mailbox *mb;

    mkmaildir(t);
    put(t, "new/1700000300.A.host", "fourth\n");
    put(t, "cur/1700000100.B.host:2,S", "second\r\n");
    put(t, "new/1700000200.C.host", "third");
    put(t, "new/1700000100.A.host", ".first\n\n");
    /* No time in the name: the file's mtime orders it. */
    put(t, "cur/no-time-here:2,", "x");
    char p[256];
    snprintf(p, sizeof(p), "%s/cur/no-time-here:2,", t->md);
    struct timespec ts[2] = {{1700000250, 0}, {1700000250, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);

    mb = open_ok(t);
    assert_int_equal(mailbox_count(mb), 5);
    static const char *const uids[] = {"1700000100.A.host", "1700000100.B.host",
                                       "1700000200.C.host", "no-time-here", "1700000300.A.host"};
    static const uint64_t sizes[] = {10, 8, 7, 3, 8};
    static const char *const bodies[] = {".first\n\n", "second\r\n", "third", "x", "fourth\n"};
    for (unsigned i = 0; i < 5; i++) {
        assert_string_equal(mailbox_msg_uid(mb, i), uids[i]);
        assert_int_equal(mailbox_msg_size(mb, i), sizes[i]);
        char *body = read_msg(mb, i, 3);
        assert_string_equal(body, bodies[i]);
        free(body);
    }
    mailbox_close(&mb);
}

static void test_maildir_snapshot(void **state)
{
    struct tmp *t = *state;
    struct mailbox *mb;

    mkmaildir(t);
    put(t, "new/1700000000.A.host", "a\n");
    mb = open_ok(t);
    /* Delivered during the session: not seen by it (DESIGN.md 6.3). */
    put(t, "new/1600000000.B.host", "b\n");
    assert_int_equal(mailbox_count(mb), 1);
    assert_string_equal(mailbox_msg_uid(mb, 0), "1700000000.A.host");
    mailbox_close(&mb);
    mb = open_ok(t);
    assert_int_equal(mailbox_count(mb), 2);
    assert_string_equal(mailbox_msg_uid(mb, 0), "1600000000.B.host");
    mailbox_close(&mb);
}

static void test_maildir_w_size_trusted(void **state)
{
    struct tmp *t = *state;
    struct mailbox *mb;

    mkmaildir(t);
    /* ",W=" in the name is believed without reading the file: a wrong
     * value is reported as it is (Dovecot and `postern deliver` write
     * it; whoever writes a wrong one breaks LIST for that message)...
     * unless ",S=" shows it cannot belong to the file (W < S or
     * W > 2S+2): then the file is measured. */
    put(t, "new/1700000001.M1.host,S=4,W=999", "abc\n");
    put(t, "cur/1700000002.M2.host,W=12:2,S", "abc\n");
    /* Not a valid W=: the file is measured. */
    put(t, "new/1700000003.M3.host,W=12x", "abc\n");
    put(t, "new/1700000004.M4.host,W=", "abc\n");
    put(t, "new/1700000005.M5.host,W=99999999999999999999", "abc\n");
    put(t, "new/1700000006.M6.host,W=7,S=3", "abc\n");
    put(t, "new/1700000007.M7.host,S=4,W=3", "abc\n");
    put(t, "new/1700000008.M8.host,S=4,W=10", "abc\n");
    mb = open_ok(t);
    assert_int_equal(mailbox_count(mb), 8);
    static const uint64_t sizes[] = {5, 12, 5, 5, 5, 7, 5, 10};
    for (unsigned i = 0; i < 8; i++)
        assert_int_equal(mailbox_msg_size(mb, i), sizes[i]);
    mailbox_close(&mb);
}

static void test_maildir_index_reused(void **state)
{
    struct tmp *t = *state;
    struct mailbox *mb;
    char path[256];

    mkmaildir(t);
    put(t, "new/1700000001.A.host", "line one\nline two\n");
    put(t, "cur/1700000002.B.host:2,S", "x\r\ny\r\n");
    mb = open_ok(t);
    assert_int_equal(mailbox_msg_size(mb, 0), 20);
    assert_int_equal(mailbox_msg_size(mb, 1), 6);
    mailbox_close(&mb);

    /* The index holds the listing: time, wire size, folder, file name;
     * the folders changed just now, so their times are not trusted. */
    snprintf(path, sizeof(path), "%s/postern-index", t->md);
    char *idx = slurp(path, NULL);
    assert_string_equal(idx, "postern-index 2 - -\n"
                             "1700000001 20 n 1700000001.A.host\n"
                             "1700000002 6 c 1700000002.B.host:2,S\n");
    free(idx);

    /* Emptied files: the sizes still come from the index, so no message
     * file was read to open the mailbox. (Truncation rather than chmod:
     * the tests may run as root.) */
    md_truncate(t, "new/1700000001.A.host");
    md_truncate(t, "cur/1700000002.B.host:2,S");
    mb = open_ok(t);
    assert_int_equal(mailbox_count(mb), 2);
    assert_int_equal(mailbox_msg_size(mb, 0), 20);
    assert_int_equal(mailbox_msg_size(mb, 1), 6);
    mailbox_close(&mb);

    /* Renamed with flags meanwhile: found by base name, still known. */
    md_rename(t, "new/1700000001.A.host", "cur/1700000001.A.host:2,RS");
    put(t, "new/1700000003.C.host", "new\n");
    mb = open_ok(t);
    assert_int_equal(mailbox_count(mb), 3);
    assert_int_equal(mailbox_msg_size(mb, 0), 20);
    assert_int_equal(mailbox_msg_size(mb, 2), 5);
    mailbox_close(&mb);
    idx = slurp(path, NULL);
    assert_string_equal(idx, "postern-index 2 - -\n"
                             "1700000001 20 c 1700000001.A.host:2,RS\n"
                             "1700000002 6 c 1700000002.B.host:2,S\n"
                             "1700000003 5 n 1700000003.C.host\n");
    free(idx);

    /* A message removed by someone else leaves the index too. */
    snprintf(path, sizeof(path), "%s/cur/1700000002.B.host:2,S", t->md);
    assert_int_equal(unlink(path), 0);
    mb = open_ok(t);
    assert_int_equal(mailbox_count(mb), 2);
    mailbox_close(&mb);
    snprintf(path, sizeof(path), "%s/postern-index", t->md);
    idx = slurp(path, NULL);
    assert_null(strstr(idx, "B.host"));
    free(idx);
}

/* Sets the modification time of a folder of the Maildir. */
static void md_mtime(const struct tmp *t, const char *sub, time_t sec, long nsec)
{
    char path[256];
    struct timespec ts[2] = {{sec, nsec}, {sec, nsec}};

    snprintf(path, sizeof(path), "%s/%s", t->md, sub);
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/*
 * An unchanged mailbox is opened from the index alone: when new/ and cur/
 * have the times the index recorded, no folder is read. (A file slipped
 * in with the folder's time put back proves it: it is not listed.) A real
 * change moves the folder's time, and the folders are read again.
 */
static void test_maildir_unchanged_not_scanned(void **state)
{
    struct tmp *t = *state;
    struct mailbox *mb;
    char path[256], want[256];
    time_t old = time(NULL) - 100;

    mkmaildir(t);
    put(t, "new/1700000001.A.host", "one\n");
    put(t, "cur/1700000002.B.host:2,S", "two\n");
    md_mtime(t, "new", old, 111111111);
    md_mtime(t, "cur", old, 222222222);
    mb = open_ok(t);
    assert_int_equal(mailbox_count(mb), 2);
    mailbox_close(&mb);
    snprintf(path, sizeof(path), "%s/postern-index", t->md);
    char *idx = slurp(path, NULL);
    snprintf(want, sizeof(want), "postern-index 2 %lld.111111111 %lld.222222222\n", (long long)old,
             (long long)old);
    assert_memory_equal(idx, want, strlen(want));
    free(idx);

    put(t, "new/1700000003.C.host", "three\n");
    md_mtime(t, "new", old, 111111111);
    mb = open_ok(t);
    assert_int_equal(mailbox_count(mb), 2); /* C not seen: no scan */
    assert_string_equal(mailbox_msg_uid(mb, 0), "1700000001.A.host");
    assert_string_equal(mailbox_msg_uid(mb, 1), "1700000002.B.host");
    assert_int_equal(mailbox_msg_size(mb, 1), 5);
    /* The listing has the flags part: the message opens where it is. */
    char *body = read_msg(mb, 1, 4096);
    assert_string_equal(body, "two\n");
    free(body);
    mailbox_close(&mb);

    /* The folder's time moves (a delivery does that): scanned again. */
    md_mtime(t, "new", old, 333333333);
    mb = open_ok(t);
    assert_int_equal(mailbox_count(mb), 3);
    assert_string_equal(mailbox_msg_uid(mb, 2), "1700000003.C.host");
    mailbox_close(&mb);

    /* Folders changed within the last seconds are not trusted: the index
     * says so, and the next open reads the folders. */
    put(t, "cur/1700000004.D.host:2,", "four\n");
    mb = open_ok(t);
    assert_int_equal(mailbox_count(mb), 4);
    mailbox_close(&mb);
    idx = slurp(path, NULL);
    assert_memory_equal(idx, "postern-index 2 - -\n", 20);
    free(idx);
}

/* A listing that is not in snapshot order (or lists a message twice) is
 * not believed, even with matching folder times. */
static void test_maildir_index_order_checked(void **state)
{
    struct tmp *t = *state;
    struct mailbox *mb;
    char path[256];
    time_t old = time(NULL) - 100;
    static const char *const bad[] = {
        "1700000002 5 n 1700000002.B.host\n1700000001 4 n 1700000001.A.host\n",
        "1700000001 4 n 1700000001.A.host\n1700000001 4 n 1700000001.A.host\n",
        "1700000001 4 n 1700000001.B.host\n1700000001 4 n 1700000001.A.host\n",
    };

    mkmaildir(t);
    put(t, "new/1700000001.A.host", "one\n");
    put(t, "new/1700000002.B.host", "two!\n");
    snprintf(path, sizeof(path), "%s/postern-index", t->md);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        md_mtime(t, "new", old, 5);
        md_mtime(t, "cur", old, 6);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fprintf(f, "postern-index 2 %lld.000000005 %lld.000000006\n%s", (long long)old,
                (long long)old, bad[i]);
        fclose(f);
        mb = open_ok(t);
        assert_int_equal(mailbox_count(mb), 2);
        assert_string_equal(mailbox_msg_uid(mb, 0), "1700000001.A.host");
        assert_string_equal(mailbox_msg_uid(mb, 1), "1700000002.B.host");
        mailbox_close(&mb);
    }
}

static void test_maildir_damaged_index(void **state)
{
    struct tmp *t = *state;
    static const char *const damaged[] = {
        "",
        "postern-index 1\n1700000001 3 1700000001.A.host\n",
        "postern-index 2\n1700000001 3 n 1700000001.A.host\n",
        "postern-index 2 - \n1700000001 3 n 1700000001.A.host\n",
        "postern-index 2 1.5 -\n1700000001 3 n 1700000001.A.host\n",
        "postern-index 2 - -\n1700000001 3 n 1700000001.A.host",                    /* torn */
        "postern-index 2 - -\n1700000001 3 n 1700000001.A.host\n1700000002 4 n 17", /* torn */
        "postern-index 2 - -\n1700000001 3 n 1700000001.A.host\n1700000002 x n B.host\n",
        "postern-index 2 - -\n1700000001 3 n 1700000001.A.host\n1700000002 4 n \n",
        "postern-index 2 - -\n1700000001 3 n 1700000001.A.host\n-1 4 n B.host\n",
        "postern-index 2 - -\n1700000001 3 n 1700000001.A.host\n1 99999999999999999999 n x\n",
        "postern-index 2 - -\n1700000001 3 n 1700000001.A.host\n1 2\n",
        "postern-index 2 - -\n1700000001 3 x 1700000001.A.host\n",
        "postern-index 2 - -\n1700000001 3 nn 1700000001.A.host\n",
        "postern-index 2 - -\n1700000001  3 n 1700000001.A.host\n",
        "postern-index 2 - -\n1700000001 3 n :2,S\n",
        "garbage\n",
    };
    char path[256];

    mkmaildir(t);
    put(t, "new/1700000001.A.host", "0123456789\n"); /* 12 on the wire */
    snprintf(path, sizeof(path), "%s/postern-index", t->md);
    for (size_t i = 0; i < sizeof(damaged) / sizeof(damaged[0]); i++) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(damaged[i], f);
        fclose(f);
        /* The wrong size "3" is not believed: the index is ignored as a
         * whole and the file measured. */
        struct mailbox *mb = open_ok(t);
        assert_int_equal(mailbox_count(mb), 1);
        if (mailbox_msg_size(mb, 0) != 12)
            print_error("index case %zu believed\n", i);
        assert_int_equal(mailbox_msg_size(mb, 0), 12);
        mailbox_close(&mb);
        /* ... and rewritten. */
        char *idx = slurp(path, NULL);
        assert_string_equal(idx, "postern-index 2 - -\n1700000001 12 n 1700000001.A.host\n");
        free(idx);
    }

    /* An index that is a directory is ignored too. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    struct mailbox *mb = open_ok(t);
    assert_int_equal(mailbox_msg_size(mb, 0), 12);
    mailbox_close(&mb);
}

static void test_maildir_renamed_after_open(void **state)
{
    struct tmp *t = *state;
    struct mailbox *mb;
    const char *error = NULL;

    mkmaildir(t);
    put(t, "new/1700000001.A.host", "hello\n");
    put(t, "new/1700000002.B.host", "world\n");
    mb = open_ok(t);
    /* An MUA moves both to cur/ and sets flags during the session. */
    md_rename(t, "new/1700000001.A.host", "cur/1700000001.A.host:2,S");
    md_rename(t, "new/1700000002.B.host", "cur/1700000002.B.host:2,");
    char *body = read_msg(mb, 0, 4096);
    assert_string_equal(body, "hello\n");
    free(body);
    /* And once more, flags changed again. */
    md_rename(t, "cur/1700000001.A.host:2,S", "cur/1700000001.A.host:2,RS");
    body = read_msg(mb, 0, 4096);
    assert_string_equal(body, "hello\n");
    free(body);
    assert_int_equal(mailbox_expunge(mb, 0, &error), 0);
    assert_int_equal(mailbox_expunge(mb, 1, &error), 0);
    assert_int_equal(mailbox_expunge_commit(mb, &error), 0);
    assert_false(exists(t, "cur/1700000001.A.host:2,RS"));
    assert_false(exists(t, "cur/1700000002.B.host:2,"));
    mailbox_close(&mb);
}

static void test_maildir_vanished(void **state)
{
    struct tmp *t = *state;
    struct mailbox *mb;
    struct mail_stream *st = NULL;
    const char *error = NULL;
    char path[256];

    mkmaildir(t);
    put(t, "new/1700000001.A.host", "hello\n");
    put(t, "cur/1700000002.B.host:2,S", "world\n");
    mb = open_ok(t);
    snprintf(path, sizeof(path), "%s/new/1700000001.A.host", t->md);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mailbox_msg_open(mb, 0, &st, &error), -1);
    assert_null(st);
    assert_string_equal(error, "message vanished");
    /* The other one is fine. */
    char *body = read_msg(mb, 1, 2);
    assert_string_equal(body, "world\n");
    free(body);
    /* Removing what is already gone is success (what DELE wanted). */
    assert_int_equal(mailbox_expunge(mb, 0, &error), 0);
    assert_int_equal(mailbox_expunge_commit(mb, &error), 0);
    assert_true(exists(t, "cur/1700000002.B.host:2,S"));
    mailbox_close(&mb);
}

static void test_maildir_expunge_and_close(void **state)
{
    struct tmp *t = *state;
    struct mailbox *mb;
    const char *error = NULL;

    mkmaildir(t);
    put(t, "new/1700000001.A.host", "a\n");
    put(t, "cur/1700000002.B.host:2,S", "b\n");
    put(t, "new/1700000003.C.host", "c\n");
    mb = open_ok(t);
    /* Closing removes nothing. */
    mailbox_close(&mb);
    mb = open_ok(t);
    assert_int_equal(mailbox_count(mb), 3);
    assert_int_equal(mailbox_expunge(mb, find_uid(mb, "1700000002.B.host"), &error), 0);
    assert_int_equal(mailbox_expunge(mb, find_uid(mb, "1700000003.C.host"), &error), 0);
    assert_int_equal(mailbox_expunge_commit(mb, &error), 0);
    mailbox_close(&mb);
    assert_true(exists(t, "new/1700000001.A.host"));
    assert_false(exists(t, "cur/1700000002.B.host:2,S"));
    assert_false(exists(t, "new/1700000003.C.host"));
    mb = open_ok(t);
    assert_int_equal(mailbox_count(mb), 1);
    mailbox_close(&mb);
}

static void test_maildir_in_use(void **state)
{
    struct tmp *t = *state;
    struct mailbox *mb, *mb2 = NULL;
    const char *error = NULL;
    char path[256];

    mkmaildir(t);
    put(t, "new/1700000001.A.host", "a\n");
    mb = open_ok(t);
    assert_int_equal(maildir_open(t->md, &mb2, &error), STORE_IN_USE);
    assert_null(mb2);
    /* The same directory by another name is the same mailbox. */
    snprintf(path, sizeof(path), "%s/Maildir/../Maildir/", t->root);
    assert_int_equal(maildir_open(path, &mb2, &error), STORE_IN_USE);
    mailbox_close(&mb);
    mb = open_ok(t);
    mailbox_close(&mb);

    /* Another process's lock, through the registry: a child opens the
     * mailbox and holds it until told to go. */
    const char *err = NULL;
    assert_int_equal(store_lock_init(t->root, &err), 0);
    int ready[2], go[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct mailbox *held = NULL;
        char c = 'x';
        /* Its own open of the registry, as another posternd would have. */
        if (store_lock_init(t->root, &err) < 0 || maildir_open(t->md, &held, &err) != STORE_OK)
            c = 'f';
        if (write(ready[1], &c, 1) != 1 || read(go[0], &c, 1) != 1)
            _exit(2);
        _exit(0);
    }
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    assert_int_equal(c, 'x');
    assert_int_equal(maildir_open(t->md, &mb2, &error), STORE_IN_USE);
    assert_null(mb2);
    /* The child ends (here as if it crashed): the kernel drops its lock. */
    assert_int_equal(write(go[1], "q", 1), 1);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    mb = open_ok(t);
    mailbox_close(&mb);
    /* The registry lives in state_dir, not in the Maildir. */
    snprintf(path, sizeof(path), "%s/postern-lock", t->md);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/" STORE_LOCK_FILE, t->root);
    assert_int_equal(access(path, F_OK), 0);
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);
    store_lock_deinit();
}

static void test_maildir_duplicates_and_ignored(void **state)
{
    struct tmp *t = *state;
    struct mailbox *mb;
    char path[256];

    mkmaildir(t);
    /* The same message in new/ and cur/ (a rename caught half way). */
    put(t, "new/1700000001.A.host", "a\n");
    put(t, "cur/1700000001.A.host:2,S", "a\n");
    /* Never messages: tmp/, dotfiles, a name with a newline. */
    put(t, "tmp/1700000002.T.host", "t\n");
    put(t, "new/.hidden", "h\n");
    put(t, "cur/.1700000003.D.host:2,", "d\n");
    put(t, "new/1700000004.N\nL.host", "n\n");
    put(t, "new/:2,S", "empty base\n");
    /* A subdirectory of tmp/ is not looked at either. */
    snprintf(path, sizeof(path), "%s/tmp/sub", t->md);
    assert_int_equal(mkdir(path, 0700), 0);
    mb = open_ok(t);
    assert_int_equal(mailbox_count(mb), 1);
    assert_string_equal(mailbox_msg_uid(mb, 0), "1700000001.A.host");
    /* Shown from cur/: expunge removes that one. */
    const char *error = NULL;
    assert_int_equal(mailbox_expunge(mb, 0, &error), 0);
    assert_false(exists(t, "cur/1700000001.A.host:2,S"));
    mailbox_close(&mb);
}

static void test_maildir_not_regular_files(void **state)
{
    struct tmp *t = *state;
    struct mailbox *mb;
    struct mail_stream *st = NULL;
    const char *error = NULL;
    char path[256];

    /* A FIFO would block open() forever: fail the test instead. */
    alarm(20);
    mkmaildir(t);
    put(t, "new/1700000001.A.host", "a\n");
    put(t, "new/1700000009.Z.host,W=3", "z\n");
    /* Not messages, whatever their names: they are left out, and the
     * mailbox still opens. */
    snprintf(path, sizeof(path), "%s/new/1700000002.dir", t->md);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/cur/1700000003.W.host,W=10:2,S", t->md);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/new/1700000004.fifo", t->md);
    assert_int_equal(mkfifo(path, 0600), 0);
    snprintf(path, sizeof(path), "%s/new/1700000005.link", t->md);
    assert_int_equal(symlink("1700000001.A.host", path), 0);
    mb = open_ok(t);
    assert_int_equal(mailbox_count(mb), 2);
    assert_string_equal(mailbox_msg_uid(mb, 0), "1700000001.A.host");
    mailbox_close(&mb);

    /* A FIFO put in place of a message after the snapshot: RETR fails,
     * it does not hang. */
    mb = open_ok(t);
    snprintf(path, sizeof(path), "%s/new/1700000009.Z.host,W=3", t->md);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(mailbox_msg_open(mb, 1, &st, &error), -1);
    assert_null(st);
    assert_string_equal(error, "message is not a regular file");
    mailbox_close(&mb);
    alarm(0);
}

static void test_maildir_long_names(void **state)
{
    struct tmp *t = *state;
    struct mailbox *mb;
    char name[300], rel[320], uid[71];

    mkmaildir(t);
    /* A base name longer than a UIDL may be: the uid is its digest. */
    int n = snprintf(name, sizeof(name), "1700000001.");
    memset(name + n, 'L', 200);
    name[n + 200] = '\0';
    snprintf(rel, sizeof(rel), "cur/%s:2,%s", name, "FRST");
    put(t, rel, "long\n");
    /* A base name with a space: also digested. */
    put(t, "new/1700000002.with space", "sp\n");
    mb = open_ok(t);
    assert_int_equal(mailbox_count(mb), 2);
    store_uid_from_base(name, strlen(name), uid);
    assert_string_equal(mailbox_msg_uid(mb, 0), uid);
    assert_true(is_hex32(mailbox_msg_uid(mb, 1)));
    store_uid_from_base("1700000002.with space", 21, uid);
    assert_string_equal(mailbox_msg_uid(mb, 1), uid);
    char *body = read_msg(mb, 0, 1);
    assert_string_equal(body, "long\n");
    free(body);
    mailbox_close(&mb);
    /* The same uids next time. */
    mb = open_ok(t);
    assert_string_equal(mailbox_msg_uid(mb, 1), uid);
    mailbox_close(&mb);
}

int main(void)
{
#define MD(name) cmocka_unit_test_setup_teardown(name, md_setup, md_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_counter),
        cmocka_unit_test(test_uid_from_base),
        cmocka_unit_test(test_location_expand),
        MD(test_maildir_created),
        MD(test_maildir_missing_subdir),
        MD(test_maildir_not_a_directory),
        MD(test_maildir_order_and_contents),
        MD(test_maildir_snapshot),
        MD(test_maildir_w_size_trusted),
        MD(test_maildir_index_reused),
        MD(test_maildir_unchanged_not_scanned),
        MD(test_maildir_index_order_checked),
        MD(test_maildir_damaged_index),
        MD(test_maildir_renamed_after_open),
        MD(test_maildir_vanished),
        MD(test_maildir_expunge_and_close),
        MD(test_maildir_in_use),
        MD(test_maildir_duplicates_and_ignored),
        MD(test_maildir_not_regular_files),
        MD(test_maildir_long_names),
    };
#undef MD
    return cmocka_run_group_tests(tests, NULL, NULL);
}
