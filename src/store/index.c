/*
 * The per-mailbox index ("postern-index" in the Maildir):
 *
 *   postern-index 2 <new/ mtime> <cur/ mtime>
 *   <time> <wire size> <n|c> <file name>        one line per message
 *
 * The lines are the snapshot the file was written from, in its order
 * (delivery time, then name); the mtimes ("SEC.NSEC", or "-" when they
 * were too recent to be trusted) say which state of the two folders that
 * listing describes, so that opening an unchanged mailbox needs no
 * directory scan and reads no message file. It is a cache: when it is
 * missing or damaged, the folders are scanned, sizes computed again from
 * the files, and it is rewritten. The file buffer itself becomes the
 * string arena (separators turned into NULs): loading 100,000 entries
 * costs one read and one pass.
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

#define INDEX_MAGIC    "postern-index 2 "
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

static void slot_insert(struct index *idx, size_t e)
{
    size_t i = idx->entries[e].hash & (idx->n_slots - 1);

    while (idx->slots[i] != 0)
        i = (i + 1) & (idx->n_slots - 1);
    idx->slots[i] = (uint32_t)e + 1;
}

/* The lookup table is built only when a lookup is needed: an unchanged
 * mailbox is opened without any. */
static int ensure_table(struct index *idx, size_t entries)
{
    if (idx->n_slots >= 2 * (entries + 1))
        return 0;
    size_t n = 64;
    while (n < 4 * (entries + 1))
        n *= 2;
    uint32_t *slots = calloc(n, sizeof(*slots));
    if (slots == NULL)
        return -1;
    bool had_table = idx->n_slots > 0;
    free(idx->slots);
    idx->slots = slots;
    idx->n_slots = n;
    for (size_t e = 0; e < idx->count; e++) {
        if (!had_table)
            idx->entries[e].hash =
                hash_base(idx->arena + idx->entries[e].base_off, idx->entries[e].base_len);
        slot_insert(idx, e);
    }
    return 0;
}

struct index_entry *index_find(struct index *idx, const char *base, size_t len)
{
    if (ensure_table(idx, idx->count) < 0)
        return NULL;
    uint32_t h = hash_base(base, len);
    for (size_t i = h & (idx->n_slots - 1); idx->slots[i] != 0; i = (i + 1) & (idx->n_slots - 1)) {
        struct index_entry *e = &idx->entries[idx->slots[i] - 1];
        if (e->hash == h && e->base_len == len && memcmp(idx->arena + e->base_off, base, len) == 0)
            return e;
    }
    return NULL;
}

uint32_t index_str(struct index *idx, const char *s, size_t len)
{
    if (idx->arena_used == 0)
        idx->arena_used = 1; /* offset 0 means "none" */
    if (idx->arena_used + len + 1 > idx->arena_cap) {
        size_t cap = idx->arena_cap < 1024 ? 1024 : idx->arena_cap;
        while (cap < idx->arena_used + len + 1)
            cap *= 2;
        if (cap > UINT32_MAX)
            return 0;
        char *a = realloc(idx->arena, cap);
        if (a == NULL)
            return 0;
        idx->arena = a;
        idx->arena_cap = cap;
    }
    uint32_t off = (uint32_t)idx->arena_used;
    memcpy(idx->arena + off, s, len);
    idx->arena[off + len] = '\0';
    idx->arena_used += len + 1;
    return off;
}

static struct index_entry *new_entry(struct index *idx)
{
    if (idx->count == UINT32_MAX - 1)
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
    memset(e, 0, sizeof(*e));
    return e;
}

struct index_entry *index_add(struct index *idx, const char *base, size_t len, bool cur,
                              const char *suffix, int64_t time, uint64_t size)
{
    if (ensure_table(idx, idx->count + 1) < 0)
        return NULL;
    uint32_t off = index_str(idx, base, len);
    struct index_entry *e = off != 0 ? new_entry(idx) : NULL;
    if (e == NULL)
        return NULL;
    e->base_off = off;
    e->base_len = (uint32_t)len;
    e->time = time;
    e->size = size;
    e->hash = hash_base(base, len);
    if (index_place(idx, e, cur, suffix) < 0)
        return NULL;
    slot_insert(idx, idx->count);
    idx->count++;
    idx->dirty = true;
    return e;
}

int index_place(struct index *idx, struct index_entry *e, bool cur, const char *suffix)
{
    const char *old = e->suffix_off != 0 ? idx->arena + e->suffix_off : NULL;

    if (e->cur != cur) {
        e->cur = cur;
        idx->dirty = true;
    }
    if ((old == NULL) != (suffix == NULL) || (old != NULL && strcmp(old, suffix) != 0)) {
        e->suffix_off = 0;
        if (suffix != NULL && (e->suffix_off = index_str(idx, suffix, strlen(suffix))) == 0)
            return -1;
        idx->dirty = true;
    }
    return 0;
}

/* Digits up to a space: the fields of a line. */
static bool parse_num(char **p, const char *end, uint64_t *v)
{
    uint64_t n = 0;
    char *s = *p;
    size_t digits = 0;

    for (; s < end && *s >= '0' && *s <= '9'; s++, digits++) {
        if (digits == 18) /* enough for any time or size; no overflow */
            return false;
        n = n * 10 + (uint64_t)(*s - '0');
    }
    if (digits == 0 || s >= end || *s != ' ')
        return false;
    *v = n;
    *p = s + 1;
    return true;
}

/* "SEC.NSEC" or "-", followed by sep. */
static bool parse_mtime(char **p, const char *end, char sep, struct timespec *ts, bool *trusted)
{
    uint64_t sec = 0, nsec = 0;
    char *s = *p;

    if (s < end && *s == '-') {
        *trusted = false;
        s++;
    } else {
        size_t d = 0;
        for (; s < end && *s >= '0' && *s <= '9' && d < 18; s++, d++)
            sec = sec * 10 + (uint64_t)(*s - '0');
        if (d == 0 || s >= end || *s != '.')
            return false;
        s++;
        for (d = 0; s < end && *s >= '0' && *s <= '9' && d < 9; s++, d++)
            nsec = nsec * 10 + (uint64_t)(*s - '0');
        if (d != 9)
            return false;
        ts->tv_sec = (time_t)sec;
        ts->tv_nsec = (long)nsec;
    }
    if (s >= end || *s != sep)
        return false;
    *p = s + 1;
    return true;
}

static bool parse_index(struct index *idx, char *buf, size_t len)
{
    size_t ml = sizeof(INDEX_MAGIC) - 1;
    char *p = buf + ml, *end = buf + len;
    bool trusted_new = true, trusted_cur = true;

    if (len < ml || memcmp(buf, INDEX_MAGIC, ml) != 0 ||
        !parse_mtime(&p, end, ' ', &idx->dir_mtime[0], &trusted_new) ||
        !parse_mtime(&p, end, '\n', &idx->dir_mtime[1], &trusted_cur))
        return false;
    idx->trusted = trusted_new && trusted_cur;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        uint64_t time, size;
        if (nl == NULL)
            return false; /* torn write */
        *nl = '\0';
        if (!parse_num(&p, nl, &time) || !parse_num(&p, nl, &size) || nl - p < 3 ||
            (p[0] != 'n' && p[0] != 'c') || p[1] != ' ')
            return false;
        bool cur = p[0] == 'c';
        char *name = p + 2, *colon = memchr(name, ':', (size_t)(nl - name));
        size_t blen = (size_t)((colon != NULL ? colon : nl) - name);
        if (blen == 0 || time > INT64_MAX)
            return false;
        struct index_entry *e = new_entry(idx);
        if (e == NULL)
            return false;
        e->base_off = (uint32_t)(name - buf);
        e->base_len = (uint32_t)blen;
        e->time = (int64_t)time;
        e->size = size;
        e->cur = cur;
        if (colon != NULL) {
            *colon = '\0';
            e->suffix_off = (uint32_t)(colon + 1 - buf);
        }
        idx->count++;
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
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > INDEX_MAX_FILE ||
        st.st_size == 0)
        goto damaged;
    /* One spare byte: offset 0 of the arena must not be a string. */
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL)
        goto damaged;
    buf[0] = '\0';
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + 1 + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    idx->arena = buf;
    idx->arena_used = got + 1;
    idx->arena_cap = (size_t)st.st_size + 1;
    if (!parse_index(idx, buf + 1, got)) {
        index_free(idx);
        buf = NULL;
        goto damaged;
    }
    /* parse_index counted offsets from buf + 1. */
    for (size_t i = 0; i < idx->count; i++) {
        idx->entries[i].base_off += 1;
        if (idx->entries[i].suffix_off != 0)
            idx->entries[i].suffix_off += 1;
    }
    close(fd);
    return;
damaged:
    free(buf);
    close(fd);
    idx->dirty = true;
}

/* Appends v in decimal; returns the new end. */
static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;

    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

int index_save(struct index *idx, int maildir_fd, const uint32_t *order, size_t n,
               const struct timespec *dir_mtime, const char **error_r)
{
    static const char tmp_name[] = INDEX_FILE_NAME ".tmp";
    char buf[65536];
    size_t used;
    int fd;

    fd = openat(maildir_fd, tmp_name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        *error_r = "cannot create index file";
        return -1;
    }
    if (dir_mtime != NULL)
        used = (size_t)snprintf(buf, sizeof(buf), INDEX_MAGIC "%lld.%09ld %lld.%09ld\n",
                                (long long)dir_mtime[0].tv_sec, dir_mtime[0].tv_nsec,
                                (long long)dir_mtime[1].tv_sec, dir_mtime[1].tv_nsec);
    else
        used = (size_t)snprintf(buf, sizeof(buf), INDEX_MAGIC "- -\n");
    for (size_t i = 0; i <= n; i++) {
        const struct index_entry *e = i < n ? &idx->entries[order[i]] : NULL;
        const char *suffix = e != NULL && e->suffix_off != 0 ? idx->arena + e->suffix_off : NULL;
        size_t slen = suffix != NULL ? strlen(suffix) + 1 : 0;
        if (e == NULL || used + e->base_len + slen + 48 > sizeof(buf)) {
            if (write(fd, buf, used) != (ssize_t)used) {
                close(fd);
                unlinkat(maildir_fd, tmp_name, 0);
                *error_r = "cannot write index file";
                return -1;
            }
            used = 0;
        }
        if (e == NULL || e->base_len + slen + 48 > sizeof(buf))
            continue; /* cannot be a real file name */
        char *p = put_u64(buf + used, e->time < 0 ? 0 : (uint64_t)e->time);
        *p++ = ' ';
        p = put_u64(p, e->size);
        *p++ = ' ';
        *p++ = e->cur ? 'c' : 'n';
        *p++ = ' ';
        memcpy(p, idx->arena + e->base_off, e->base_len);
        p += e->base_len;
        if (suffix != NULL) {
            *p++ = ':';
            memcpy(p, suffix, slen - 1);
            p += slen - 1;
        }
        *p++ = '\n';
        used = (size_t)(p - buf);
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
