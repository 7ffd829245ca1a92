/*
 * The per-mailbox index ("postern-index" in the Maildir): one line per
 * message, "<time> <wire size> <base name>", so that opening an unchanged
 * mailbox reads no message file. It is a cache: when it is missing or
 * damaged, sizes are computed again from the files and it is rewritten.
 * The file buffer itself becomes the string arena (line ends turned into
 * NULs), so loading 100,000 entries costs one read and one pass.
 */
#include "store/store-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "lib/str.h"

#define INDEX_HEADER   "postern-index 1\n"
#define INDEX_MAX_FILE (256u * 1024 * 1024)

void wire_counter_init(struct wire_counter *wc)
{
    wc->size = 0;
    wc->bol = true;
    wc->cr = false;
}

void wire_counter_add(struct wire_counter *wc, const void *data, size_t len)
{
    const unsigned char *p = data, *end = p + len;

    if (len == 0)
        return;
    wc->size += len;
    /* Every LF not preceded by CR gains a CR on the wire. */
    if (wc->cr && *p == '\n')
        wc->size--; /* cancelled below: this LF has its CR */
    for (const unsigned char *lf = memchr(p, '\n', len); lf != NULL;
         lf = memchr(lf + 1, '\n', (size_t)(end - lf - 1))) {
        wc->size++;
        if (lf > p && lf[-1] == '\r')
            wc->size--;
        if (lf + 1 == end)
            break;
    }
    unsigned char last = end[-1];
    wc->cr = last == '\r';
    wc->bol = last == '\n';
}

uint64_t wire_counter_finish(struct wire_counter *wc)
{
    /* A last line without newline (a trailing lone CR is content) is ended
     * with CRLF. */
    if (!wc->bol && wc->size > 0) {
        wc->size += 2;
        wc->bol = true;
    }
    return wc->size;
}

void store_uid_from_base(const char *base, size_t len, char out[71])
{
    bool ok = len >= 1 && len <= 70;

    for (size_t i = 0; ok && i < len; i++)
        ok = (unsigned char)base[i] >= 0x21 && (unsigned char)base[i] <= 0x7e;
    if (ok) {
        memcpy(out, base, len);
        out[len] = '\0';
        return;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(base, len, md, &mdlen, EVP_sha256(), NULL);
    str_hex(md, 16, out);
}

static uint32_t hash_base(const char *s, size_t len)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

void index_init(struct index *idx)
{
    memset(idx, 0, sizeof(*idx));
}

void index_free(struct index *idx)
{
    free(idx->entries);
    free(idx->slots);
    free(idx->arena);
    memset(idx, 0, sizeof(*idx));
}

static int grow_slots(struct index *idx)
{
    size_t n = idx->n_slots == 0 ? 64 : idx->n_slots * 2;
    uint32_t *slots = calloc(n, sizeof(*slots));

    if (slots == NULL)
        return -1;
    for (size_t e = 0; e < idx->count; e++) {
        size_t i = idx->entries[e].hash & (n - 1);
        while (slots[i] != 0)
            i = (i + 1) & (n - 1);
        slots[i] = (uint32_t)e + 1;
    }
    free(idx->slots);
    idx->slots = slots;
    idx->n_slots = n;
    return 0;
}

struct index_entry *index_find(struct index *idx, const char *base, size_t len)
{
    if (idx->n_slots == 0)
        return NULL;
    uint32_t h = hash_base(base, len);
    for (size_t i = h & (idx->n_slots - 1); idx->slots[i] != 0; i = (i + 1) & (idx->n_slots - 1)) {
        struct index_entry *e = &idx->entries[idx->slots[i] - 1];
        if (e->hash == h && e->base_len == len && memcmp(idx->arena + e->base_off, base, len) == 0)
            return e;
    }
    return NULL;
}

/* Adds an entry whose base is already in the arena at off. */
static struct index_entry *add_entry(struct index *idx, uint32_t off, size_t len, int64_t time,
                                     uint64_t size)
{
    if (idx->count == UINT32_MAX - 1)
        return NULL;
    if ((idx->count + 1) * 2 > idx->n_slots && grow_slots(idx) < 0)
        return NULL;
    if (idx->count == idx->cap) {
        size_t cap = idx->cap == 0 ? 16 : idx->cap * 2;
        struct index_entry *e = realloc(idx->entries, cap * sizeof(*e));
        if (e == NULL)
            return NULL;
        idx->entries = e;
        idx->cap = cap;
    }
    struct index_entry *e = &idx->entries[idx->count];
    e->base_off = off;
    e->base_len = (uint32_t)len;
    e->time = time;
    e->size = size;
    e->hash = hash_base(idx->arena + off, len);
    e->seen = false;
    size_t i = e->hash & (idx->n_slots - 1);
    while (idx->slots[i] != 0)
        i = (i + 1) & (idx->n_slots - 1);
    idx->slots[i] = (uint32_t)idx->count + 1;
    idx->count++;
    return e;
}

struct index_entry *index_add(struct index *idx, const char *base, size_t len, int64_t time,
                              uint64_t size)
{
    if (idx->arena_used + len + 1 > idx->arena_cap) {
        size_t cap = idx->arena_cap == 0 ? 1024 : idx->arena_cap;
        while (cap < idx->arena_used + len + 1)
            cap *= 2;
        if (cap > UINT32_MAX)
            return NULL;
        char *a = realloc(idx->arena, cap);
        if (a == NULL)
            return NULL;
        idx->arena = a;
        idx->arena_cap = cap;
    }
    uint32_t off = (uint32_t)idx->arena_used;
    memcpy(idx->arena + off, base, len);
    idx->arena[off + len] = '\0';
    idx->arena_used += len + 1;
    idx->dirty = true;
    return add_entry(idx, off, len, time, size);
}

static bool parse_field(char **p, char *end, uint64_t max, uint64_t *v)
{
    char *sp = memchr(*p, ' ', (size_t)(end - *p));
    const char *error;

    if (sp == NULL || str_parse_u64(*p, (size_t)(sp - *p), max, v, &error) < 0)
        return false;
    *p = sp + 1;
    return true;
}

static bool parse_index(struct index *idx, char *buf, size_t len)
{
    size_t hl = sizeof(INDEX_HEADER) - 1;
    char *p = buf + hl, *end = buf + len;

    if (len < hl || memcmp(buf, INDEX_HEADER, hl) != 0)
        return false;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        uint64_t time, size;
        if (nl == NULL)
            return false; /* torn write */
        *nl = '\0';
        if (!parse_field(&p, nl, INT64_MAX, &time) || !parse_field(&p, nl, INT64_MAX, &size) ||
            p == nl)
            return false;
        if (index_find(idx, p, (size_t)(nl - p)) == NULL &&
            add_entry(idx, (uint32_t)(p - buf), (size_t)(nl - p), (int64_t)time, size) == NULL)
            return false;
        p = nl + 1;
    }
    return true;
}

void index_load(struct index *idx, int maildir_fd)
{
    int fd = openat(maildir_fd, INDEX_FILE_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    char *buf = NULL;
    size_t got = 0;

    if (fd < 0)
        return;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > INDEX_MAX_FILE)
        goto damaged;
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL)
        goto damaged;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    idx->arena = buf;
    idx->arena_used = got;
    idx->arena_cap = (size_t)st.st_size + 1;
    if (!parse_index(idx, buf, got)) {
        index_free(idx);
        buf = NULL;
        goto damaged;
    }
    close(fd);
    return;
damaged:
    free(buf);
    close(fd);
    idx->dirty = true;
}

int index_save(struct index *idx, int maildir_fd, const char **error_r)
{
    static const char tmp_name[] = INDEX_FILE_NAME ".tmp";
    char buf[65536];
    size_t used = 0;
    bool stale = false;
    int fd;

    for (size_t i = 0; i < idx->count && !stale; i++)
        stale = !idx->entries[i].seen;
    if (!idx->dirty && !stale)
        return 0;
    fd = openat(maildir_fd, tmp_name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        *error_r = "cannot create index file";
        return -1;
    }
    memcpy(buf, INDEX_HEADER, sizeof(INDEX_HEADER) - 1);
    used = sizeof(INDEX_HEADER) - 1;
    for (size_t i = 0; i <= idx->count; i++) {
        const struct index_entry *e = i < idx->count ? &idx->entries[i] : NULL;
        if (e == NULL || used + e->base_len + 48 > sizeof(buf)) {
            if (write(fd, buf, used) != (ssize_t)used) {
                close(fd);
                unlinkat(maildir_fd, tmp_name, 0);
                *error_r = "cannot write index file";
                return -1;
            }
            used = 0;
        }
        if (e == NULL || !e->seen)
            continue;
        if (e->base_len + 48 > sizeof(buf))
            continue; /* cannot be a real file name */
        used +=
            (size_t)snprintf(buf + used, sizeof(buf) - used, "%lld %llu %s\n", (long long)e->time,
                             (unsigned long long)e->size, index_base(idx, e));
    }
    close(fd);
    if (renameat(maildir_fd, tmp_name, maildir_fd, INDEX_FILE_NAME) < 0) {
        unlinkat(maildir_fd, tmp_name, 0);
        *error_r = "cannot rename index file";
        return -1;
    }
    idx->dirty = false;
    return 0;
}
