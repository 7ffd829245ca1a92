#ifndef POSTERN_HASH_H
#define POSTERN_HASH_H

/* Password schemes as Dovecot names them: "{SCHEME}data". */

#include <stdbool.h>
#include <stddef.h>

enum hash_scheme {
    HASH_UNKNOWN = 0,
    HASH_CRYPT,    /* any crypt(3) string: yescrypt, bcrypt, sha512-crypt, ... */
    HASH_PLAIN,    /* the password itself (needed by APOP) */
    HASH_ARGON2ID, /* "$argon2id$v=19$m=...,t=...,p=...$salt$hash" (libargon2) */
    HASH_SCRAM,    /* SCRAM-SHA-256 keys, "ITER,SALT,STOREDKEY,SERVERKEY" (scram.h) */
};

/* Scheme from its name ("SHA512-CRYPT", "PLAIN", ...), case-insensitive. */
enum hash_scheme hash_scheme_lookup(const char *name, size_t len);

/* The name `postern user list` shows: "CRYPT", "PLAIN", "ARGON2ID", ... */
const char *hash_scheme_name(enum hash_scheme scheme);

/* Constant-time as far as the scheme allows. password need not be
 * NUL-terminated. */
bool hash_verify(enum hash_scheme scheme, const char *stored, const char *password, size_t len);

/* Spends the time of a yescrypt verification and fails: used for unknown
 * users, so that they cost what a real account costs. */
void hash_verify_dummy(const char *password, size_t len);

/* APOP (RFC 1939): hex MD5 of timestamp followed by the shared secret. */
bool hash_verify_apop(const char *secret, const char *timestamp, const char *digest_hex);

/* "{CRYPT}$y$..." for a new password (yescrypt, default cost), written
 * with the {CRYPT} name so that Dovecot reads the same file. Returns 0, or
 * -1 with *error_r. */
int hash_make_yescrypt(const char *password, char *out, size_t size, const char **error_r);

/* Parameters of new hashes (see hash_make). */
#define HASH_ARGON2ID_M_KIB 19456
#define HASH_ARGON2ID_T     2
#define HASH_ARGON2ID_P     1
#define HASH_BLF_COST       10
#define HASH_SCRAM_ITER     10000

/*
 * "{SCHEME}..." for a new password, with a fresh salt. scheme_name is
 * case-insensitive: YESCRYPT (the default when NULL; written {CRYPT}$y$),
 * SHA512-CRYPT, BLF-CRYPT, ARGON2ID, SCRAM-SHA-256 or PLAIN. A PLAIN
 * password cannot contain ':' (the field separator). Returns 0, or -1
 * with *error_r.
 */
int hash_make(const char *scheme_name, const char *password, char *out, size_t size,
              const char **error_r);

/* hash_mem.c: around a crypt call, lets the thread keep yescrypt's memory
 * region for its next call. */
void hash_mem_enter(void);
void hash_mem_leave(void);
unsigned long hash_mem_reuses(void); /* this thread's reuses, for tests */

/* shacrypt.c: $5$ and $6$ (SHA-crypt) with OpenSSL's SHA-2 code, which is
 * faster than libxcrypt's portable one. Writes the full crypt string for
 * password and setting into out; returns false for a setting it does not
 * handle exactly as libxcrypt would (the caller then uses crypt(3)). */
bool shacrypt(const char *password, size_t len, const char *setting, char *out, size_t size);

#endif
