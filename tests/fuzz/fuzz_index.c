/*
 * The Maildir index parser (src/store/index.c) on arbitrary files: the
 * data becomes "postern-index" in a temporary Maildir holding a few
 * messages, which is then opened. Whatever the index says, the mailbox
 * opens, shows every message once with a valid UIDL, each message reads,
 * and a second open agrees with the first (what was written back is read
 * back the same).
 */
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "fuzz.h"

#define N_MSGS 4

static char root[64], md[96], index_path[128];

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void cleanup(void)
{
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void put(const char *rel, const char *content)
{
    char p[256];

    snprintf(p, sizeof(p), "%s/%s", md, rel);
    FILE *f = fopen(p, "w");
    check(f != NULL, "cannot create a message");
    fputs(content, f);
    fclose(f);
}

static void setup(void)
{
    static const char *const subs[] = {"", "/new", "/cur", "/tmp"};
    char p[160];

    strcpy(root, "/tmp/postern-fuzz-index-XXXXXX");
    check(mkdtemp(root) != NULL, "mkdtemp");
    snprintf(md, sizeof(md), "%s/Maildir", root);
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s%s", md, subs[i]);
        check(mkdir(p, 0700) == 0, "mkdir");
    }
    snprintf(index_path, sizeof(index_path), "%s/postern-index", md);
    put("new/1700000001.A.host", "hello\n");
    put("cur/1700000002.B.host:2,S", "world\r\n.\r\n");
    put("new/no-time-in-name", "x");
    put("new/1700000003.C.host,W=5", "abc\n");
    atexit(cleanup);
}

struct snapshot {
    unsigned count;
    char uid[N_MSGS][71];
    uint64_t size[N_MSGS];
};

static bool uid_ok(const char *uid)
{
    size_t n = strlen(uid);

    if (n < 1 || n > 70)
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)uid[i] < 0x21 || (unsigned char)uid[i] > 0x7e)
            return false;
    }
    return true;
}

static void open_and_check(struct snapshot *snap)
{
    struct mailbox *mb = NULL;
    const char *error = NULL;

    check(maildir_open(md, &mb, &error) == STORE_OK, "maildir_open failed");
    snap->count = mailbox_count(mb);
    check(snap->count == N_MSGS, "wrong message count");
    for (unsigned i = 0; i < snap->count; i++) {
        const char *uid = mailbox_msg_uid(mb, i);
        check(uid_ok(uid), "bad uid");
        for (unsigned j = 0; j < i; j++)
            check(strcmp(snap->uid[j], uid) != 0, "message shown twice");
        strcpy(snap->uid[i], uid);
        snap->size[i] = mailbox_msg_size(mb, i);

        struct mail_stream *st = NULL;
        char buf[64];
        ssize_t n;
        check(mailbox_msg_open(mb, i, &st, &error) == 0, "message does not open");
        while ((n = mail_stream_read(mb, st, buf, sizeof(buf))) > 0)
            ;
        check(n == 0, "read error");
        mail_stream_close(mb, &st);
    }
    mailbox_close(&mb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct snapshot a, b;

    if (root[0] == '\0')
        setup();
    int fd = open(index_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    check(fd >= 0, "cannot write the index");
    check(write(fd, data, size) == (ssize_t)size, "cannot write the index");
    close(fd);

    open_and_check(&a);
    open_and_check(&b);
    for (unsigned i = 0; i < N_MSGS; i++) {
        check(strcmp(a.uid[i], b.uid[i]) == 0, "order changed between opens");
        check(a.size[i] == b.size[i], "size changed between opens");
    }
    return 0;
}
