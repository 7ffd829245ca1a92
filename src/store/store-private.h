#ifndef POSTERN_STORE_PRIVATE_H
#define POSTERN_STORE_PRIVATE_H

/* Shared by maildir.c and index.c. */

#include "store/store.h"

/*
 * The per-mailbox index: what is known about each message, by base name
 * (the Maildir file name before ':'). Maildir files never change content,
 * so an entry stays valid as long as a file with that base name exists.
 */
struct index_entry {
    uint32_t base_off; /* into the index's string arena */
    uint32_t base_len;
    int64_t time;  /* delivery time, for ordering */
    uint64_t size; /* wire size */
    uint32_t hash;
    bool seen; /* found in this scan */
};

struct index {
    struct index_entry *entries;
    size_t count, cap;
    uint32_t *slots; /* open addressing: entry number + 1, 0 = empty */
    size_t n_slots;
    char *arena;
    size_t arena_used, arena_cap;
    bool dirty;
};

#define INDEX_FILE_NAME "postern-index"

void index_init(struct index *idx);
void index_free(struct index *idx);
/* Loads the index file of the Maildir; a missing or damaged file gives an
 * empty index (it is only a cache). */
void index_load(struct index *idx, int maildir_fd);
struct index_entry *index_find(struct index *idx, const char *base, size_t len);
struct index_entry *index_add(struct index *idx, const char *base, size_t len, int64_t time,
                              uint64_t size);
static inline const char *index_base(const struct index *idx, const struct index_entry *e)
{
    return idx->arena + e->base_off;
}
/* Writes the entries seen in this scan, if anything changed. */
int index_save(struct index *idx, int maildir_fd, const char **error_r);

#endif
