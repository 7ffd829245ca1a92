#ifndef POSTERN_STORE_PRIVATE_H
#define POSTERN_STORE_PRIVATE_H

/* Shared by maildir.c and index.c. */

#include <sys/types.h>
#include <time.h>

#include "store/store.h"

/*
 * The per-mailbox index: what is known about each message, by base name
 * (the Maildir file name before ':'). Maildir files never change content,
 * so time and size stay valid as long as a file with that base name
 * exists; the folder and flags part are those of the last scan.
 */
struct index_entry {
    uint32_t base_off; /* NUL-terminated base name in the arena */
    uint32_t base_len;
    uint32_t suffix_off; /* NUL-terminated text after ':' in the arena, 0: no ':' */
    uint32_t hash;       /* set once the lookup table is built */
    int64_t time;        /* delivery time, for ordering */
    uint64_t size;       /* wire size */
    bool cur;            /* in cur/ rather than new/ */
    bool seen;           /* found in this scan */
};

struct index {
    struct index_entry *entries;
    size_t count, cap;
    uint32_t *slots; /* open addressing: entry number + 1; built on first lookup */
    size_t n_slots;
    char *arena; /* offset 0 is never a string */
    size_t arena_used, arena_cap;
    /* The modification times of new/ and cur/ the listing was taken at,
     * when they were old enough to be trusted (see maildir.c). */
    struct timespec dir_mtime[2];
    bool trusted;
    bool dirty; /* differs from the file */
};

#define INDEX_FILE_NAME "postern-index"

/* lock.c */
enum store_status store_lock_take(dev_t dev, ino_t ino, const char **error_r);
void store_lock_release(dev_t dev, ino_t ino);

void index_init(struct index *idx);
void index_free(struct index *idx);
/* Loads the index file of the Maildir; a missing or damaged file gives an
 * empty index (it is only a cache). Entries come in the file's order,
 * which is the order of the snapshot it was written from. */
void index_load(struct index *idx, int maildir_fd);
struct index_entry *index_find(struct index *idx, const char *base, size_t len);
struct index_entry *index_add(struct index *idx, const char *base, size_t len, bool cur,
                              const char *suffix, int64_t time, uint64_t size);
/* Records where the entry's file is now; marks the index dirty if that
 * changed. Returns -1 when out of memory. */
int index_place(struct index *idx, struct index_entry *e, bool cur, const char *suffix);
/* Adds a NUL-terminated string to the arena; returns its offset, 0 when
 * out of memory. */
uint32_t index_str(struct index *idx, const char *s, size_t len);
static inline const char *index_base(const struct index *idx, const struct index_entry *e)
{
    return idx->arena + e->base_off;
}
/* Writes the entries given by number, in that order, with the folder
 * times (NULL: not trusted). */
int index_save(struct index *idx, int maildir_fd, const uint32_t *order, size_t n,
               const struct timespec *dir_mtime, const char **error_r);

#endif
