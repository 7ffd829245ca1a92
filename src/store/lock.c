/*
 * Mailbox locks: one session per mailbox, across the threads of this
 * process (a table of device and inode numbers) and across processes (a
 * byte-range lock in one registry file under state_dir, at an offset
 * derived from the same numbers). The registry holds all the locks on a
 * single descriptor, so a session keeps no descriptor for its lock: with
 * the 20,000 descriptors a process may have here, that is the difference
 * between 6,600 and 19,000 idle sessions. The kernel drops the locks when
 * a process dies, so no stale lock survives a crash.
 *
 * Open-file-description locks (F_OFD_SETLK) belong to the registry's open
 * file, not to a thread, and all of this process's locks are on one open
 * file; they only keep other processes out. Between threads the table
 * decides.
 */
#include "store/store-private.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOCK_BUCKETS 1024

struct lock_node {
    dev_t dev;
    ino_t ino;
    struct lock_node *next;
};

static struct lock_node *lock_table[LOCK_BUCKETS];
static pthread_mutex_t lock_mutex = PTHREAD_MUTEX_INITIALIZER;
static int registry_fd = -1;

int store_lock_init(const char *state_dir, const char **error_r)
{
    static char err[600];
    char path[4096];

    if ((size_t)snprintf(path, sizeof(path), "%s/" STORE_LOCK_FILE, state_dir) >= sizeof(path)) {
        *error_r = "state_dir path too long";
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        /* A long path is cut short in the message. */
        if (snprintf(err, sizeof(err), "cannot open %s: %s", path, strerror(errno)) < 0)
            err[0] = '\0';
        *error_r = err;
        return -1;
    }
    if (registry_fd >= 0)
        close(registry_fd);
    registry_fd = fd;
    return 0;
}

void store_lock_deinit(void)
{
    if (registry_fd >= 0)
        close(registry_fd);
    registry_fd = -1;
}

/* A byte of the registry per mailbox: 62 bits of a hash of the Maildir's
 * device and inode (a collision would make two mailboxes share a lock
 * between processes, which is safe, and is vanishingly rare). */
static off_t registry_offset(dev_t dev, ino_t ino)
{
    uint64_t h = 1469598103934665603ULL;
    uint64_t v[2] = {(uint64_t)dev, (uint64_t)ino};
    const unsigned char *p = (const unsigned char *)v;

    for (size_t i = 0; i < sizeof(v); i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return (off_t)(h & 0x3fffffffffffffffULL);
}

static int registry_lock(dev_t dev, ino_t ino, short type)
{
    struct flock fl = {
        .l_type = type,
        .l_whence = SEEK_SET,
        .l_start = registry_offset(dev, ino),
        .l_len = 1,
    };

    if (registry_fd < 0)
        return 0; /* no registry (tests, tools): threads only */
    return fcntl(registry_fd, F_OFD_SETLK, &fl);
}

static size_t bucket(dev_t dev, ino_t ino)
{
    return (size_t)(ino ^ dev) % LOCK_BUCKETS;
}

enum store_status store_lock_take(dev_t dev, ino_t ino, const char **error_r)
{
    size_t b = bucket(dev, ino);
    enum store_status st = STORE_OK;

    pthread_mutex_lock(&lock_mutex);
    for (struct lock_node *n = lock_table[b]; n != NULL; n = n->next) {
        if (n->dev == dev && n->ino == ino) {
            st = STORE_IN_USE;
            break;
        }
    }
    if (st == STORE_OK && registry_lock(dev, ino, F_WRLCK) < 0) {
        st = errno == EAGAIN || errno == EACCES ? STORE_IN_USE : STORE_TEMPFAIL;
        if (st == STORE_TEMPFAIL)
            *error_r = "cannot take the lock in the registry";
    }
    if (st == STORE_OK) {
        struct lock_node *n = malloc(sizeof(*n));
        if (n == NULL) {
            registry_lock(dev, ino, F_UNLCK);
            st = STORE_TEMPFAIL;
            *error_r = "out of memory";
        } else {
            n->dev = dev;
            n->ino = ino;
            n->next = lock_table[b];
            lock_table[b] = n;
        }
    }
    if (st == STORE_IN_USE)
        *error_r = "mailbox in use";
    pthread_mutex_unlock(&lock_mutex);
    return st;
}

void store_lock_release(dev_t dev, ino_t ino)
{
    size_t b = bucket(dev, ino);

    pthread_mutex_lock(&lock_mutex);
    for (struct lock_node **np = &lock_table[b]; *np != NULL; np = &(*np)->next) {
        if ((*np)->dev == dev && (*np)->ino == ino) {
            struct lock_node *n = *np;
            *np = n->next;
            free(n);
            registry_lock(dev, ino, F_UNLCK);
            break;
        }
    }
    pthread_mutex_unlock(&lock_mutex);
}
