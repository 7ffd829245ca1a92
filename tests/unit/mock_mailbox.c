/* The in-memory mailbox of mock_mailbox.h. No cmocka here: the fuzz
 * targets link this file too, so a broken contract is an abort(). */
#include "mock_mailbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mock_stream {
    struct mock_mailbox *mm;
    unsigned i;
    size_t pos;
};

static void die(const char *why)
{
    fprintf(stderr, "mock_mailbox: %s\n", why);
    abort();
}

static void *xmalloc(size_t size)
{
    void *p = malloc(size != 0 ? size : 1);

    if (p == NULL)
        die("out of memory");
    return p;
}

static const struct mock_mailbox *check(const struct mailbox *mb, unsigned i)
{
    const struct mock_mailbox *mm = (const struct mock_mailbox *)mb;

    if (mm->closed)
        die("used after mailbox_close()");
    if (i >= mm->count)
        die("message number out of range");
    return mm;
}

static unsigned mock_count(const struct mailbox *mb)
{
    const struct mock_mailbox *mm = (const struct mock_mailbox *)mb;

    if (mm->closed)
        die("used after mailbox_close()");
    return mm->count;
}

static uint64_t mock_size(const struct mailbox *mb, unsigned i)
{
    return check(mb, i)->msgs[i].size;
}

static const char *mock_uid(const struct mailbox *mb, unsigned i)
{
    return check(mb, i)->msgs[i].uid;
}

static int mock_open_msg(struct mailbox *mb, unsigned i, struct mail_stream **st_r,
                         const char **error_r)
{
    struct mock_mailbox *mm = (struct mock_mailbox *)mb;

    check(mb, i);
    if (mm->msgs[i].vanished || mm->msgs[i].expunged) {
        *error_r = "message vanished";
        return -1;
    }
    struct mock_stream *st = xmalloc(sizeof(*st));
    st->mm = mm;
    st->i = i;
    st->pos = 0;
    mm->opens++;
    mm->open_streams++;
    *st_r = (struct mail_stream *)st;
    return 0;
}

static ssize_t mock_read(struct mail_stream *stream, void *buf, size_t size)
{
    struct mock_stream *st = (struct mock_stream *)stream;
    const struct mock_msg *m = &check(&st->mm->box, st->i)->msgs[st->i];
    size_t n = m->len - st->pos;

    if (size == 0)
        die("read of 0 bytes");
    if (m->fail_read && st->pos >= m->fail_read_at)
        return -1;
    if (n > size)
        n = size;
    if (st->mm->chunk != 0 && n > st->mm->chunk)
        n = st->mm->chunk;
    if (m->fail_read && st->pos + n > m->fail_read_at)
        n = m->fail_read_at - st->pos;
    memcpy(buf, m->data + st->pos, n);
    st->pos += n;
    return (ssize_t)n;
}

static void mock_close_msg(struct mail_stream *stream)
{
    struct mock_stream *st = (struct mock_stream *)stream;

    if (st->mm->open_streams == 0)
        die("close_msg without open_msg");
    st->mm->open_streams--;
    free(st);
}

static int mock_expunge(struct mailbox *mb, unsigned i, const char **error_r)
{
    struct mock_mailbox *mm = (struct mock_mailbox *)mb;

    check(mb, i);
    if (mm->forbid_expunge)
        die("expunge outside QUIT");
    if (mm->expunge_calls == 4 * mm->cap)
        die("message expunged again and again");
    mm->expunge_log[mm->expunge_calls++] = i;
    if (mm->msgs[i].fail_expunge) {
        *error_r = "injected expunge failure";
        return -1;
    }
    mm->msgs[i].expunged = true;
    return 0;
}

static int mock_expunge_commit(struct mailbox *mb, const char **error_r)
{
    struct mock_mailbox *mm = (struct mock_mailbox *)mb;

    if (mm->closed)
        die("used after mailbox_close()");
    if (mm->forbid_expunge)
        die("expunge_commit outside QUIT");
    mm->commits++;
    if (mm->fail_commit) {
        *error_r = "injected commit failure";
        return -1;
    }
    return 0;
}

static void mock_close(struct mailbox *mb)
{
    struct mock_mailbox *mm = (struct mock_mailbox *)mb;

    if (mm->closed)
        die("closed twice");
    if (mm->open_streams != 0)
        die("closed with a message stream still open");
    mm->closed = true;
}

static const struct mailbox_vfuncs mock_vfuncs = {
    .count = mock_count,
    .size = mock_size,
    .uid = mock_uid,
    .open_msg = mock_open_msg,
    .read = mock_read,
    .close_msg = mock_close_msg,
    .expunge = mock_expunge,
    .expunge_commit = mock_expunge_commit,
    .close = mock_close,
};

struct mock_mailbox *mock_mailbox_new(void)
{
    struct mock_mailbox *mm = xmalloc(sizeof(*mm));

    memset(mm, 0, sizeof(*mm));
    mm->box.v = &mock_vfuncs;
    return mm;
}

void mock_mailbox_free(struct mock_mailbox **mmp)
{
    struct mock_mailbox *mm = *mmp;

    if (mm == NULL)
        return;
    for (unsigned i = 0; i < mm->count; i++) {
        free(mm->msgs[i].uid);
        free(mm->msgs[i].data);
    }
    free(mm->msgs);
    free(mm->expunge_log);
    free(mm);
    *mmp = NULL;
}

unsigned mock_mailbox_add(struct mock_mailbox *mm, const char *uid, const void *data, size_t len)
{
    if (mm->count == mm->cap) {
        mm->cap = mm->cap == 0 ? 8 : mm->cap * 2;
        mm->msgs = realloc(mm->msgs, mm->cap * sizeof(*mm->msgs));
        /* Each message is expunged at most once per QUIT, but a buggy
         * session might try more often: room for a few rounds. */
        mm->expunge_log = realloc(mm->expunge_log, 4 * mm->cap * sizeof(*mm->expunge_log));
        if (mm->msgs == NULL || mm->expunge_log == NULL)
            die("out of memory");
    }
    struct mock_msg *m = &mm->msgs[mm->count];
    struct wire_counter wc;

    memset(m, 0, sizeof(*m));
    m->uid = xmalloc(strlen(uid) + 1);
    memcpy(m->uid, uid, strlen(uid) + 1);
    m->data = xmalloc(len);
    memcpy(m->data, data, len);
    m->len = len;
    wire_counter_init(&wc);
    wire_counter_add(&wc, data, len);
    m->size = wire_counter_finish(&wc);
    return mm->count++;
}

unsigned mock_mailbox_add_str(struct mock_mailbox *mm, const char *uid, const char *text)
{
    return mock_mailbox_add(mm, uid, text, strlen(text));
}

unsigned mock_mailbox_n_expunged(const struct mock_mailbox *mm)
{
    unsigned n = 0;

    for (unsigned i = 0; i < mm->count; i++)
        n += mm->msgs[i].expunged;
    return n;
}
