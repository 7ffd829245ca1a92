/*
 * Maildir backend: new/ and cur/ (never tmp/), a snapshot at open, the
 * mailbox lock, and removal in UPDATE. Another program (an MUA, Dovecot)
 * may rename a message from new/ to cur/ or change its flags during a
 * session; such a message is found again by its base name. One that
 * vanished is reported, never a crash.
 *
 * Opening an unchanged mailbox takes no directory scan: the index holds
 * the last listing and the modification times of new/ and cur/ it was
 * taken at. Any delivery, rename or removal changes a folder's mtime;
 * the index records them only when they were at least MTIME_TRUST_SECS
 * old when read, so that a change made later, even within the same
 * timestamp tick, must have produced a different mtime.
 */
#include "store/store-private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/fsync.h"

#define MTIME_TRUST_SECS 2
#define QUICK_INDEX_MAX  (1024 * 1024)

struct maildir_msg {
    uint32_t entry; /* index entry: base name, place, time, size */
    uint32_t uid;   /* index arena offset of a digest uid; 0 = the base name */
};

struct maildir {
    struct mailbox box;
    char *path; /* for messages to the operator */
    int dir_fd; /* open while the snapshot is taken, then closed */
    bool locked;
    dev_t dev;
    ino_t ino;
    struct index idx;
    struct maildir_msg *msgs;
    unsigned count;
    bool expunged_new, expunged_cur;
};

struct mail_stream {
    int fd;
};

static _Thread_local char error_buf[512];

static const char *error_errno(const char *what, const char *path)
{
    /* A long path is cut short in the message, which is fine. */
    if (snprintf(error_buf, sizeof(error_buf), "%s %s: %s", what, path, strerror(errno)) < 0)
        return what;
    return error_buf;
}

static const struct index_entry *msg_entry(const struct maildir *md, const struct maildir_msg *m)
{
    return &md->idx.entries[m->entry];
}

static const char *msg_base(const struct maildir *md, const struct maildir_msg *m)
{
    return index_base(&md->idx, msg_entry(md, m));
}

/* "MAILDIR/cur/BASE:2,S". A session keeps no descriptor of the Maildir
 * open (an idle session holds only its socket), so messages are reached
 * by full path. */
static int msg_path(const struct maildir *md, const struct maildir_msg *m, char *buf, size_t size)
{
    const struct index_entry *e = msg_entry(md, m);
    int n = snprintf(buf, size, "%s/%s/%s%s%s", md->path, e->cur ? "cur" : "new",
                     index_base(&md->idx, e), e->suffix_off != 0 ? ":" : "",
                     e->suffix_off != 0 ? md->idx.arena + e->suffix_off : "");
    return n > 0 && (size_t)n < size ? 0 : -1;
}

/* Delivery time from a Maildir name "<seconds>.<unique>.<host>", or -1. */
static int64_t name_time(const char *name, size_t len)
{
    int64_t t = 0;
    size_t i;

    for (i = 0; i < len && i < 18 && name[i] >= '0' && name[i] <= '9'; i++)
        t = t * 10 + (name[i] - '0');
    return i > 0 && i < len && name[i] == '.' ? t : -1;
}

/* The number after ",<key>=" in a base name (",S=123,W=130"), if any. */
static bool name_number(const char *base, size_t len, char key, uint64_t *value_r)
{
    for (size_t i = 0; i + 3 < len; i++) {
        if (base[i] != ',' || base[i + 1] != key || base[i + 2] != '=')
            continue;
        uint64_t v = 0;
        size_t j = i + 3;
        for (; j < len && base[j] >= '0' && base[j] <= '9' && j < i + 3 + 19; j++)
            v = v * 10 + (uint64_t)(base[j] - '0');
        if (j > i + 3 && (j == len || base[j] == ',')) {
            *value_r = v;
            return true;
        }
    }
    return false;
}

/*
 * The wire size from the name, as Dovecot and `postern deliver` write it:
 * ",W=" is the size with CRLF line ends. ",S=" (the file size) cannot give
 * it alone, since the line ends are unknown, but it bounds it: the wire
 * size is at least the file size and at most twice it plus a final CRLF.
 * A W= outside those bounds was not made from this file and is ignored.
 */
static bool name_wire_size(const char *base, size_t len, uint64_t *size_r)
{
    uint64_t w, s;

    if (!name_number(base, len, 'W', &w))
        return false;
    if (name_number(base, len, 'S', &s) && (w < s || w > 2 * s + 2))
        return false;
    *size_r = w;
    return true;
}

/* Reads the file once to learn its wire size (and time, if the name has
 * none). Only for messages the index does not know yet. Returns 1 when
 * the name is not a regular file, hence not a message: a FIFO would block
 * the open (O_NONBLOCK), a directory fail the read, a symlink is refused. */
static int measure(int dir_fd, const char *name, bool need_time, int64_t *time_r, uint64_t *size_r,
                   bool need_size)
{
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;

    if (fd < 0)
        return errno == ELOOP ? 1 : -1;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return 1;
    }
    if (need_time)
        *time_r = (int64_t)st.st_mtime;
    if (need_size) {
        struct wire_counter wc;
        char buf[65536];
        ssize_t n;
        wire_counter_init(&wc);
        while ((n = read(fd, buf, sizeof(buf))) > 0)
            wire_counter_add(&wc, buf, (size_t)n);
        if (n < 0) {
            close(fd);
            return -1;
        }
        *size_r = wire_counter_finish(&wc);
    }
    close(fd);
    return 0;
}

/* One directory entry of the scan: found in the index (and where it is
 * now recorded), or measured and added. */
static int scan_entry(struct maildir *md, int dir_fd, bool cur, const char *name)
{
    const char *colon = strchr(name, ':');
    size_t blen = colon != NULL ? (size_t)(colon - name) : strlen(name);
    struct index_entry *e;

    if (blen == 0 || memchr(name, '\n', blen) != NULL)
        return 0; /* not a message a Maildir writer would make */
    e = index_find(&md->idx, name, blen);
    if (e != NULL && e->seen)
        return 0; /* the same message in new/ and cur/: show it once */
    if (e == NULL) {
        int64_t time = name_time(name, blen);
        uint64_t size = 0;
        bool have_size = name_wire_size(name, blen, &size);
        if (time < 0 || !have_size) {
            int r = measure(dir_fd, name, time < 0, &time, &size, !have_size);
            if (r > 0 || (r < 0 && errno == ENOENT))
                return 0; /* not a regular file, or renamed away (seen in cur/) */
            if (r < 0) {
                /* Running out of descriptors or memory passes: fail the
                 * login for now. A file that cannot be read (permissions,
                 * I/O error) is left out, as Dovecot does, rather than
                 * making the whole mailbox unusable; it stays on disk. */
                if (errno == EMFILE || errno == ENFILE || errno == ENOMEM)
                    return -1;
                log_warn("%s/%s/%s: %s; message left out of the session", md->path,
                         cur ? "cur" : "new", name, strerror(errno));
                return 0;
            }
        }
        e = index_add(&md->idx, name, blen, cur, colon != NULL ? colon + 1 : NULL, time, size);
        if (e == NULL)
            return -1;
    } else if (index_place(&md->idx, e, cur, colon != NULL ? colon + 1 : NULL) < 0) {
        return -1;
    }
    e->seen = true;
    return 0;
}

static int scan_dir(struct maildir *md, bool cur, const char **error_r)
{
    const char *sub = cur ? "cur" : "new";
    int fd = openat(md->dir_fd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d;
    struct dirent *de;

    if (fd < 0 || (d = fdopendir(fd)) == NULL) {
        *error_r = error_errno("cannot open", sub);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (de->d_type != DT_UNKNOWN && de->d_type != DT_REG)
            continue; /* not a message, even with ",W=" in its name */
        if (scan_entry(md, fd, cur, de->d_name) < 0) {
            *error_r = error_errno("cannot read message", de->d_name);
            closedir(d);
            return -1;
        }
        errno = 0;
    }
    int err = errno;
    closedir(d);
    if (err != 0) {
        errno = err;
        *error_r = error_errno("cannot read", sub);
        return -1;
    }
    return 0;
}

/* qsort has no context argument; the snapshot being sorted is per thread. */
static _Thread_local const struct maildir *sort_md;

static int msg_cmp(const void *a, const void *b)
{
    const struct maildir_msg *x = a, *y = b;
    const struct index_entry *ex = msg_entry(sort_md, x);
    const struct index_entry *ey = msg_entry(sort_md, y);

    if (ex->time != ey->time)
        return ex->time < ey->time ? -1 : 1;
    return strcmp(index_base(&sort_md->idx, ex), index_base(&sort_md->idx, ey));
}

static const struct mailbox_vfuncs maildir_vfuncs;
static int scan_dir(struct maildir *md, bool cur, const char **error_r);

static void maildir_free(struct maildir *md)
{
    free(md->path);
    index_free(&md->idx);
    free(md->msgs);
    if (md->locked)
        store_lock_release(md->dev, md->ino);
    if (md->dir_fd >= 0)
        close(md->dir_fd);
    free(md);
}

int maildir_create(const char *path, const char **error_r)
{
    static const char *const subs[] = {"tmp", "new", "cur"};
    char buf[4096];

    if (strlen(path) >= sizeof(buf) - 8) {
        *error_r = "mailbox path too long";
        return -1;
    }
    /* Parents first, as Postfix does for a first delivery. */
    for (char *p = strcpy(buf, path) + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        if (mkdir(buf, 0700) < 0 && errno != EEXIST) {
            *error_r = error_errno("cannot create", buf);
            return -1;
        }
        *p = '/';
    }
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        *error_r = error_errno("cannot create", path);
        return -1;
    }
    for (size_t i = 0; i < 3; i++) {
        snprintf(buf, sizeof(buf), "%s/%s", path, subs[i]);
        if (mkdir(buf, 0700) < 0 && errno != EEXIST) {
            *error_r = error_errno("cannot create", buf);
            return -1;
        }
    }
    return 0;
}

/* The snapshot's UIDL of an entry: its base name, or a digest stored in
 * the arena when the name cannot be one. */
static int set_uid(struct maildir *md, struct maildir_msg *m)
{
    const struct index_entry *e = msg_entry(md, m);
    const unsigned char *b = (const unsigned char *)index_base(&md->idx, e);
    bool ok = e->base_len >= 1 && e->base_len <= 70;

    for (size_t i = 0; ok && i < e->base_len; i++)
        ok = b[i] >= 0x21 && b[i] <= 0x7e;
    m->uid = 0;
    if (!ok) {
        char uid[71];
        store_uid_from_base((const char *)b, e->base_len, uid);
        if ((m->uid = index_str(&md->idx, uid, strlen(uid))) == 0)
            return -1;
    }
    return 0;
}

static bool same_time(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* (time, base) of b strictly after a: the order the index is written in,
 * which also rules out an entry listed twice. */
static bool in_order(const struct index *idx, const struct index_entry *a,
                     const struct index_entry *b)
{
    if (a->time != b->time)
        return a->time < b->time;
    return strcmp(index_base(idx, a), index_base(idx, b)) < 0;
}

/* An unchanged mailbox: the index's listing is the snapshot. Returns false
 * when the index does not qualify. */
static bool snapshot_from_index(struct maildir *md, const struct timespec mtime[2])
{
    struct index *idx = &md->idx;

    if (!idx->trusted || !same_time(&idx->dir_mtime[0], &mtime[0]) ||
        !same_time(&idx->dir_mtime[1], &mtime[1]) || idx->count > UINT32_MAX - 1)
        return false;
    md->msgs = malloc((idx->count + 1) * sizeof(*md->msgs));
    if (md->msgs == NULL)
        return false;
    for (size_t i = 0; i < idx->count; i++) {
        md->msgs[i].entry = (uint32_t)i;
        if ((i > 0 && !in_order(idx, &idx->entries[i - 1], &idx->entries[i])) ||
            set_uid(md, &md->msgs[i]) < 0) {
            free(md->msgs);
            md->msgs = NULL;
            return false;
        }
    }
    md->count = (unsigned)idx->count;
    return true;
}

/* Anything else: scan both folders, using the index for what it knows,
 * sort, and write the index again if anything differs. */
static int snapshot_from_scan(struct maildir *md, const struct timespec mtime[2],
                              bool mtimes_trusted, const char **error_r)
{
    struct index *idx = &md->idx;
    const char *error;

    /* cur/ first: a message present in both is shown from cur/. */
    if (scan_dir(md, true, error_r) < 0 || scan_dir(md, false, error_r) < 0)
        return -1;
    size_t seen = 0;
    for (size_t i = 0; i < idx->count; i++)
        seen += idx->entries[i].seen;
    md->msgs = malloc((seen + 1) * sizeof(*md->msgs));
    uint32_t *order = malloc((seen + 1) * sizeof(*order));
    if (md->msgs == NULL || order == NULL) {
        free(order);
        *error_r = "out of memory";
        return -1;
    }
    for (size_t i = 0; i < idx->count; i++) {
        if (idx->entries[i].seen)
            md->msgs[md->count++].entry = (uint32_t)i;
    }
    if (md->count > 1) {
        sort_md = md;
        qsort(md->msgs, md->count, sizeof(*md->msgs), msg_cmp);
        sort_md = NULL;
    }
    for (unsigned i = 0; i < md->count; i++) {
        order[i] = md->msgs[i].entry;
        if (set_uid(md, &md->msgs[i]) < 0) {
            free(order);
            *error_r = "out of memory";
            return -1;
        }
    }
    bool changed = idx->dirty || seen != idx->count || mtimes_trusted != idx->trusted ||
                   (mtimes_trusted && (!same_time(&idx->dir_mtime[0], &mtime[0]) ||
                                       !same_time(&idx->dir_mtime[1], &mtime[1])));
    /* The index is a cache: a read-only Maildir still works without it. */
    if (changed)
        (void)index_save(idx, md->dir_fd, order, md->count, mtimes_trusted ? mtime : NULL, &error);
    free(order);
    return 0;
}

/* quick: give up (-2) rather than scan. */
static int snapshot(struct maildir *md, bool quick, const char **error_r)
{
    static const char *const subs[] = {"new", "cur"};
    struct timespec mtime[2], now;
    struct stat st;
    bool trusted = true;

    /* The folders' times come first: a change during the scan below
     * leaves them older than the folders, so the next open scans again. */
    clock_gettime(CLOCK_REALTIME, &now);
    for (int i = 0; i < 2; i++) {
        if (fstatat(md->dir_fd, subs[i], &st, 0) < 0) {
            if (quick)
                return -2;
            /* A Maildir made by hand may lack one of its folders. */
            if (errno != ENOENT || mkdirat(md->dir_fd, subs[i], 0700) < 0 ||
                fstatat(md->dir_fd, subs[i], &st, 0) < 0) {
                *error_r = error_errno("cannot use", subs[i]);
                return -1;
            }
        }
        mtime[i] = st.st_mtim;
        trusted = trusted && now.tv_sec - st.st_mtim.tv_sec >= MTIME_TRUST_SECS;
    }
    /* An I/O thread reads a small index only: a big mailbox's (1 MiB is
     * about 16,000 messages) takes milliseconds, which other sessions on
     * that thread would wait for. */
    if (quick && (fstatat(md->dir_fd, INDEX_FILE_NAME, &st, 0) < 0 || st.st_size > QUICK_INDEX_MAX))
        return -2;
    index_load(&md->idx, md->dir_fd);
    if (snapshot_from_index(md, mtime))
        return 0;
    if (quick)
        return -2;
    mkdirat(md->dir_fd, "tmp", 0700);
    md->count = 0;
    return snapshot_from_scan(md, mtime, trusted, error_r);
}

static enum store_status open_maildir(const char *path, bool quick, struct mailbox **mb_r,
                                      const char **error_r)
{
    struct maildir *md = calloc(1, sizeof(*md));
    struct stat st;
    enum store_status status = STORE_TEMPFAIL;

    if (md == NULL) {
        *error_r = "out of memory";
        return STORE_TEMPFAIL;
    }
    md->box.v = &maildir_vfuncs;
    md->path = strdup(path);
    if (md->path == NULL) {
        free(md);
        *error_r = "out of memory";
        return STORE_TEMPFAIL;
    }
    md->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (md->dir_fd < 0 && errno == ENOENT && quick) {
        status = STORE_AGAIN;
        goto fail;
    }
    if (md->dir_fd < 0 && errno == ENOENT) {
        if (maildir_create(path, error_r) < 0) {
            status = STORE_PERMFAIL;
            goto fail;
        }
        md->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (md->dir_fd < 0 || fstat(md->dir_fd, &st) < 0) {
        status =
            errno == EACCES || errno == ENOTDIR || errno == ELOOP ? STORE_PERMFAIL : STORE_TEMPFAIL;
        *error_r = error_errno("cannot open mailbox", path);
        goto fail;
    }
    status = store_lock_take(st.st_dev, st.st_ino, error_r);
    if (status != STORE_OK)
        goto fail;
    md->locked = true;
    md->dev = st.st_dev;
    md->ino = st.st_ino;
    int r = snapshot(md, quick, error_r);
    if (r == -2)
        status = STORE_AGAIN;
    if (r < 0) {
        if (r == -1)
            status = STORE_TEMPFAIL;
        goto fail;
    }
    close(md->dir_fd);
    md->dir_fd = -1;
    *mb_r = &md->box;
    return STORE_OK;
fail:
    maildir_free(md);
    return status;
}

enum store_status maildir_open(const char *path, struct mailbox **mb_r, const char **error_r)
{
    return open_maildir(path, false, mb_r, error_r);
}

enum store_status maildir_open_quick(const char *path, struct mailbox **mb_r, const char **error_r)
{
    return open_maildir(path, true, mb_r, error_r);
}

static unsigned maildir_count(const struct mailbox *mb)
{
    return ((const struct maildir *)mb)->count;
}

static uint64_t maildir_size(const struct mailbox *mb, unsigned i)
{
    const struct maildir *md = (const struct maildir *)mb;
    return md->idx.entries[md->msgs[i].entry].size;
}

static const char *maildir_uid(const struct mailbox *mb, unsigned i)
{
    const struct maildir *md = (const struct maildir *)mb;
    const struct maildir_msg *m = &md->msgs[i];
    return m->uid != 0 ? md->idx.arena + m->uid : msg_base(md, m);
}

/* Looks for the message's base name in cur/ and new/ again, after another
 * program renamed it. Returns 1 found (m updated), 0 gone, -1 error. */
static int relocate(struct maildir *md, struct maildir_msg *m)
{
    struct index_entry *e = &md->idx.entries[m->entry];
    const char *base = index_base(&md->idx, e);
    size_t blen = e->base_len;

    for (int pass = 0; pass < 2; pass++) {
        bool cur = pass == 0;
        char dir[4200];
        snprintf(dir, sizeof(dir), "%s/%s", md->path, cur ? "cur" : "new");
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *de;
        if (d == NULL) {
            if (fd >= 0)
                close(fd);
            return -1;
        }
        while ((de = readdir(d)) != NULL) {
            if (strncmp(de->d_name, base, blen) != 0 ||
                (de->d_name[blen] != '\0' && de->d_name[blen] != ':'))
                continue;
            /* Where it is now: the snapshot only, the index file keeps
             * the listing it was written from (the folder's mtime changed,
             * so the next open scans again). */
            bool ok = index_place(&md->idx, e, cur,
                                  de->d_name[blen] == ':' ? de->d_name + blen + 1 : NULL) == 0;
            closedir(d);
            return ok ? 1 : -1;
        }
        closedir(d);
    }
    return 0;
}

static int maildir_open_msg(struct mailbox *mb, unsigned i, struct mail_stream **st_r,
                            const char **error_r)
{
    struct maildir *md = (struct maildir *)mb;
    struct maildir_msg *m = &md->msgs[i];
    char path[4400];
    int fd = -1;

    for (int attempt = 0; attempt < 3 && fd < 0; attempt++) {
        if (msg_path(md, m, path, sizeof(path)) < 0) {
            *error_r = "message path too long";
            return -1;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd >= 0)
            break;
        if (errno != ENOENT) {
            *error_r = error_errno("cannot open", path);
            return -1;
        }
        int r = relocate(md, m);
        if (r <= 0) {
            *error_r = r == 0 ? "message vanished" : error_errno("cannot search for", path);
            return -1;
        }
    }
    if (fd < 0) {
        *error_r = "message keeps moving";
        return -1;
    }
    /* Opened without blocking: a FIFO put in its place must not stall
     * the I/O thread. */
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        *error_r = "message is not a regular file";
        return -1;
    }
    struct mail_stream *st = malloc(sizeof(*st));
    if (st == NULL) {
        close(fd);
        *error_r = "out of memory";
        return -1;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    st->fd = fd;
    *st_r = st;
    return 0;
}

static ssize_t maildir_read(struct mail_stream *st, void *buf, size_t size)
{
    ssize_t n;

    do
        n = read(st->fd, buf, size);
    while (n < 0 && errno == EINTR);
    return n;
}

static void maildir_close_msg(struct mail_stream *st)
{
    close(st->fd);
    free(st);
}

static int maildir_expunge(struct mailbox *mb, unsigned i, const char **error_r)
{
    struct maildir *md = (struct maildir *)mb;
    struct maildir_msg *m = &md->msgs[i];
    char path[4400];

    for (int attempt = 0; attempt < 3; attempt++) {
        if (msg_path(md, m, path, sizeof(path)) < 0) {
            *error_r = "message path too long";
            return -1;
        }
        if (unlink(path) == 0) {
            if (msg_entry(md, m)->cur)
                md->expunged_cur = true;
            else
                md->expunged_new = true;
            return 0;
        }
        if (errno != ENOENT) {
            *error_r = error_errno("cannot remove", path);
            return -1;
        }
        int r = relocate(md, m);
        if (r == 0)
            return 0; /* already gone: what DELE asked for */
        if (r < 0) {
            *error_r = error_errno("cannot search for", path);
            return -1;
        }
    }
    *error_r = "message keeps moving";
    return -1;
}

static int maildir_expunge_commit(struct mailbox *mb, const char **error_r)
{
    struct maildir *md = (struct maildir *)mb;
    int ret = 0;

    for (int pass = 0; pass < 2; pass++) {
        if (!(pass == 0 ? md->expunged_new : md->expunged_cur))
            continue;
        const char *sub = pass == 0 ? "new" : "cur";
        char dir[4200];
        snprintf(dir, sizeof(dir), "%s/%s", md->path, sub);
        if (fsync_dir(dir) < 0) {
            *error_r = error_errno("cannot sync", sub);
            ret = -1;
        }
    }
    return ret;
}

static void maildir_close(struct mailbox *mb)
{
    maildir_free((struct maildir *)mb);
}

static const struct mailbox_vfuncs maildir_vfuncs = {
    .count = maildir_count,
    .size = maildir_size,
    .uid = maildir_uid,
    .open_msg = maildir_open_msg,
    .read = maildir_read,
    .close_msg = maildir_close_msg,
    .expunge = maildir_expunge,
    .expunge_commit = maildir_expunge_commit,
    .close = maildir_close,
};
