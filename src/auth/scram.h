#ifndef POSTERN_SCRAM_H
#define POSTERN_SCRAM_H

/*
 * SCRAM-SHA-256 (RFC 5802, RFC 7677) secrets and arithmetic, stored as
 * Dovecot stores them: "{SCRAM-SHA-256}ITER,SALT,STOREDKEY,SERVERKEY"
 * with standard, padded base64. The keys let the server check a SCRAM
 * proof, and a plaintext password (USER/PASS, PLAIN), without keeping the
 * password itself. Exchange state (nonces, messages) is the SASL code's.
 */

#include <stdbool.h>
#include <stddef.h>

/* The base64 the keys are written in (also used by the SASL code). */
#include "lib/base64.h"

#define SCRAM_KEY_LEN  32
#define SCRAM_SALT_MAX 64

/* Dovecot refuses fewer (RFC 7677 section 4: at least 4096). */
#define SCRAM_ITER_MIN 4096

struct scram_keys {
    unsigned iter;
    unsigned char salt[SCRAM_SALT_MAX];
    size_t salt_len;
    unsigned char stored_key[SCRAM_KEY_LEN], server_key[SCRAM_KEY_LEN];
};

/* "ITER,SALT_B64,STOREDKEY_B64,SERVERKEY_B64" (Dovecot's {SCRAM-SHA-256}
 * body; a leading "{SCRAM-SHA-256}" is accepted too, so the passwd-file's
 * scram= value parses as it is). ITER must be 4096..INT_MAX, the salt
 * 1..SCRAM_SALT_MAX bytes, each key 32 bytes. 0, or -1 with *error_r. */
int scram_keys_parse(const char *s, struct scram_keys *k, const char **error_r);

/* Writes "{SCRAM-SHA-256}ITER,SALT,STORED,SERVER". 0, or -1 when size is
 * too small. */
int scram_keys_format(const struct scram_keys *k, char *out, size_t size);

/* New keys for a password with a random 16-byte salt. 0 or -1. */
int scram_keys_make(const char *password, size_t len, unsigned iter, struct scram_keys *k);

/* Same with a given salt (tests, RFC vectors). 0, or -1 for a salt of 0
 * or more than SCRAM_SALT_MAX bytes, iter 0 or above INT_MAX. */
int scram_keys_derive(const char *password, size_t len, const unsigned char *salt, size_t salt_len,
                      unsigned iter, struct scram_keys *k);

/* USER/PASS or PLAIN against SCRAM keys: derives StoredKey and compares in
 * constant time. */
bool scram_verify_password(const struct scram_keys *k, const char *password, size_t len);

/* SCRAM proof check (RFC 5802 section 3): ClientSignature = HMAC(StoredKey,
 * AuthMessage); ClientKey = proof XOR ClientSignature; ok when
 * H(ClientKey) == StoredKey (constant time). On success writes
 * ServerSignature = HMAC(ServerKey, AuthMessage); on failure zeroes it. */
bool scram_verify_proof(const struct scram_keys *k, const char *auth_message, size_t len,
                        const unsigned char proof[SCRAM_KEY_LEN],
                        unsigned char server_sig_r[SCRAM_KEY_LEN]);

#endif
