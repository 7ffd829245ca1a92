/*
 * TOTP arithmetic (RFC 4226, RFC 6238), base32 (RFC 4648) for the secrets
 * as authenticator apps show them, and the per-user record of the last
 * step used that makes every code single-use.
 */
#include "auth/totp.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "lib/log.h"
#include "lib/str.h"

static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

static int b32_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= '2' && c <= '7')
        return c - '2' + 26;
    return -1;
}

int base32_decode(const char *in, size_t len, unsigned char *out, size_t size)
{
    size_t pad = 0, n, written = 0;
    uint32_t acc = 0;
    unsigned bits = 0;

    while (pad < len && in[len - 1 - pad] == '=')
        pad++;
    n = len - pad;
    /* A group of 8 characters carries 5 bytes; 1, 3 or 6 characters left
     * over cannot come from any byte string. */
    switch (n % 8) {
    case 0:
    case 2:
    case 4:
    case 5:
    case 7:
        break;
    default:
        return -1;
    }
    if (pad > 0 && (pad >= 8 || (n + pad) % 8 != 0))
        return -1;
    size_t need = n / 8 * 5 + (n % 8) * 5 / 8;
    if (need > size || need > INT32_MAX)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = b32_value(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 5) | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            out[written++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return (int)written;
}

size_t base32_encode(const unsigned char *in, size_t len, char *out, size_t size)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;

    if (len > (SIZE_MAX - 4) / 8 || size < (len * 8 + 4) / 5 + 1)
        return 0;
    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = b32_alphabet[(acc >> bits) & 31];
        }
        acc &= (1u << bits) - 1;
    }
    if (bits > 0)
        out[o++] = b32_alphabet[(acc << (5 - bits)) & 31];
    out[o] = '\0';
    return o;
}

uint32_t hotp(const unsigned char *key, size_t keylen, uint64_t counter, unsigned digits)
{
    static const uint32_t mod[] = {1000000, 10000000, 100000000};
    static const unsigned char empty = 0;
    unsigned char msg[8], md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;

    if (digits < 6 || digits > 8 || keylen > INT32_MAX)
        return UINT32_MAX;
    for (int i = 7; i >= 0; i--) {
        msg[i] = (unsigned char)(counter & 0xff);
        counter >>= 8;
    }
    /* OpenSSL reads a NULL key as "keep the previous one": give it a real
     * pointer even for an empty key. */
    if (HMAC(EVP_sha1(), keylen > 0 ? key : &empty, (int)keylen, msg, sizeof(msg), md, &mdlen) ==
            NULL ||
        mdlen != SHA_DIGEST_LENGTH)
        return UINT32_MAX;
    unsigned off = md[mdlen - 1] & 0x0f;
    uint32_t bin = ((uint32_t)(md[off] & 0x7f) << 24) | ((uint32_t)md[off + 1] << 16) |
                   ((uint32_t)md[off + 2] << 8) | md[off + 3];
    OPENSSL_cleanse(md, sizeof(md));
    return bin % mod[digits - 6];
}

static bool all_digits(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

bool totp_verify(const char *secret_b32, const char *code, size_t code_len, time_t now,
                 uint64_t *step_r)
{
    unsigned char key[TOTP_SECRET_MAX];
    char want[16];
    uint64_t step, best = 0;
    bool matched = false;

    if (code_len != TOTP_DIGITS || !all_digits(code, code_len) || now < 0)
        return false;
    int keylen = base32_decode(secret_b32, strlen(secret_b32), key, sizeof(key));
    if (keylen < TOTP_SECRET_MIN) {
        OPENSSL_cleanse(key, sizeof(key));
        return false;
    }
    step = (uint64_t)now / TOTP_PERIOD;
    for (uint64_t s = step > 0 ? step - 1 : 0; s <= step + 1; s++) {
        uint32_t c = hotp(key, (size_t)keylen, s, TOTP_DIGITS);
        bool ok = c < 1000000;
        snprintf(want, sizeof(want), "%06" PRIu32, ok ? c : 0);
        ok &= CRYPTO_memcmp(want, code, TOTP_DIGITS) == 0;
        if (ok) {
            matched = true;
            best = s;
        }
    }
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(want, sizeof(want));
    if (matched && step_r != NULL)
        *step_r = best;
    return matched;
}

bool totp_split(const char *secret, size_t len, size_t *pw_len_r)
{
    if (len <= TOTP_DIGITS || !all_digits(secret + len - TOTP_DIGITS, TOTP_DIGITS))
        return false;
    *pw_len_r = len - TOTP_DIGITS;
    return true;
}

/* --- replay: the last step accepted per user --- */

struct replay_entry {
    struct replay_entry *next;
    uint64_t last;
    bool any; /* false: no step accepted yet */
    char user[];
};

struct totp_replay {
    pthread_mutex_t lock;
    char *dir; /* NULL: memory only */
    struct replay_entry **buckets;
    size_t nbuckets, n;
};

static size_t hash_user(const char *user)
{
    uint64_t h = 14695981039346656037u; /* FNV-1a */

    for (const unsigned char *p = (const unsigned char *)user; *p != '\0'; p++)
        h = (h ^ *p) * 1099511628211u;
    return (size_t)h;
}

struct totp_replay *totp_replay_new(const char *dir)
{
    struct totp_replay *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    pthread_mutex_init(&r->lock, NULL);
    r->nbuckets = 64;
    r->buckets = calloc(r->nbuckets, sizeof(*r->buckets));
    if (r->buckets == NULL || (dir != NULL && (r->dir = strdup(dir)) == NULL)) {
        totp_replay_free(r);
        errno = ENOMEM;
        return NULL;
    }
    if (dir != NULL && mkdir(dir, 0700) < 0 && errno != EEXIST) {
        int e = errno;
        totp_replay_free(r);
        errno = e;
        return NULL;
    }
    return r;
}

void totp_replay_free(struct totp_replay *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; r->buckets != NULL && i < r->nbuckets; i++) {
        for (struct replay_entry *e = r->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    }
    pthread_mutex_destroy(&r->lock);
    free(r->buckets);
    free(r->dir);
    free(r);
}

/*
 * The file name for a user: the name itself where it is made of safe
 * characters, others as %XX, a leading '.' too (no "..", no hidden or
 * temporary names). A name whose encoding would be too long for a file
 * name becomes "%H" and its SHA-256, which no encoding produces.
 */
static void user_file_name(const char *user, char *out, size_t size)
{
    size_t o = 0;

    for (const char *p = user; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        bool safe = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '@' || c == '+' || (c == '.' && p != user);
        if (o + 4 > size || o > 200) {
            unsigned char md[SHA256_DIGEST_LENGTH];
            SHA256((const unsigned char *)user, strlen(user), md);
            snprintf(out, size, "%%H");
            str_hex(md, sizeof(md), out + 2);
            return;
        }
        o += (size_t)(safe ? snprintf(out + o, size - o, "%c", c)
                           : snprintf(out + o, size - o, "%%%02X", c));
    }
    out[o] = '\0';
}

/* 1 and *last_r, 0 when nothing is stored, -1 when the file cannot be read. */
static int replay_load(const struct totp_replay *r, const char *user, uint64_t *last_r)
{
    char name[256], path[4352], buf[32];
    const char *error;

    user_file_name(user, name, sizeof(name));
    snprintf(path, sizeof(path), "%s/%s", r->dir, name);
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        log_error("totp: cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    ssize_t len = read(fd, buf, sizeof(buf) - 1);
    int e = errno;
    close(fd);
    if (len < 0) {
        log_error("totp: cannot read %s: %s", path, strerror(e));
        return -1;
    }
    while (len > 0 && buf[len - 1] == '\n')
        len--;
    if (str_parse_u64(buf, (size_t)len, UINT64_MAX, last_r, &error) < 0) {
        /* We write these files whole (rename); a broken one was edited by
         * hand. It is replaced at the next accepted code. */
        log_warn("totp: ignoring %s: %s", path, error);
        return 0;
    }
    return 1;
}

/* Written to a temporary file, synced, renamed: a crash leaves the old
 * step or the new one, never an empty file that would forget both. */
static int replay_store(const struct totp_replay *r, const char *user, uint64_t step)
{
    char name[256], path[4352], tmp[4400], buf[32];

    user_file_name(user, name, sizeof(name));
    snprintf(path, sizeof(path), "%s/%s", r->dir, name);
    snprintf(tmp, sizeof(tmp), "%s/.tmp.%d.%s", r->dir, (int)getpid(), name);
    int len = snprintf(buf, sizeof(buf), "%" PRIu64 "\n", step);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, buf, (size_t)len) != len || fsync(fd) < 0) {
        log_error("totp: cannot write %s: %s", tmp, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        return -1;
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        log_error("totp: cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int replay_grow(struct totp_replay *r)
{
    size_t nb = r->nbuckets * 2;
    struct replay_entry **b = calloc(nb, sizeof(*b));

    if (b == NULL)
        return -1;
    for (size_t i = 0; i < r->nbuckets; i++) {
        for (struct replay_entry *e = r->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            size_t h = hash_user(e->user) % nb;
            e->next = b[h];
            b[h] = e;
        }
    }
    free(r->buckets);
    r->buckets = b;
    r->nbuckets = nb;
    return 0;
}

/* The entry for user, loaded from its file the first time; NULL when it
 * cannot be known (out of memory, unreadable file): the code is refused. */
static struct replay_entry *replay_entry_get(struct totp_replay *r, const char *user)
{
    size_t h = hash_user(user) % r->nbuckets;
    uint64_t last = 0;
    int found = 0;

    for (struct replay_entry *e = r->buckets[h]; e != NULL; e = e->next) {
        if (strcmp(e->user, user) == 0)
            return e;
    }
    if (r->dir != NULL && (found = replay_load(r, user, &last)) < 0)
        return NULL;
    size_t len = strlen(user);
    struct replay_entry *e = malloc(sizeof(*e) + len + 1);
    if (e == NULL)
        return NULL;
    memcpy(e->user, user, len + 1);
    e->last = last;
    e->any = found > 0;
    if (r->n >= r->nbuckets * 2)
        (void)replay_grow(r); /* longer chains are slower, not wrong */
    h = hash_user(user) % r->nbuckets;
    e->next = r->buckets[h];
    r->buckets[h] = e;
    r->n++;
    return e;
}

bool totp_replay_use(struct totp_replay *r, const char *user, uint64_t step)
{
    bool ok = false;

    pthread_mutex_lock(&r->lock);
    struct replay_entry *e = replay_entry_get(r, user);
    if (e != NULL && (!e->any || step > e->last)) {
        e->last = step;
        e->any = true;
        ok = true;
        /* If the file cannot be written, the step is still refused by this
         * process; only a restart within the window would forget it. A
         * disk problem should not lock every TOTP user out. */
        if (r->dir != NULL)
            (void)replay_store(r, user, step);
    }
    pthread_mutex_unlock(&r->lock);
    return ok;
}
