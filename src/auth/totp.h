#ifndef POSTERN_TOTP_H
#define POSTERN_TOTP_H

/*
 * Time-based one-time passwords (RFC 6238 over RFC 4226 HOTP), the second
 * factor of an account with "totp=BASE32SECRET" in the passwd-file. The
 * parameters are the ones every authenticator app supports without being
 * told: HMAC-SHA-1, 30-second steps, 6 digits, one step of clock drift
 * either way. A code is good once: totp_replay refuses a step already used.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define TOTP_DIGITS 6
#define TOTP_PERIOD 30
/* RFC 4226 asks for 128 bits; 80 bits (16 base32 characters) is what
 * many existing enrolments carry, so that is the least accepted. */
#define TOTP_SECRET_MIN 10
#define TOTP_SECRET_MAX 128
/* What `postern totp enroll` generates: 160 bits, the length of a SHA-1
 * output, as RFC 4226 recommends. */
#define TOTP_SECRET_NEW 20

/*
 * RFC 4648 base32 (A-Z, 2-7), case-insensitive, with or without '='
 * padding. Anything else, including spaces, and lengths that no encoding
 * produces, is refused. Returns the number of bytes written, or -1 when
 * the input is not base32 or does not fit in size bytes.
 */
int base32_decode(const char *in, size_t len, unsigned char *out, size_t size);

/* Encodes without padding and terminates out. Returns the length written,
 * or 0 when out (which needs (len * 8 + 4) / 5 + 1 bytes) is too small. */
size_t base32_encode(const unsigned char *in, size_t len, char *out, size_t size);

/* RFC 4226 HOTP with HMAC-SHA-1 and dynamic truncation, reduced to digits
 * (6..8) decimal digits. UINT32_MAX (never a valid code) if HMAC fails. */
uint32_t hotp(const unsigned char *key, size_t keylen, uint64_t counter, unsigned digits);

/*
 * True when code is exactly 6 ASCII digits and equals the TOTP of the
 * base32 secret for the step of now, the one before or the one after.
 * *step_r (may be NULL) is the matching step, the latest when several
 * match, for totp_replay_use. Codes are compared in constant time and all
 * three steps are always computed, so timing reveals neither the code nor
 * which step matched.
 */
bool totp_verify(const char *secret_b32, const char *code, size_t code_len, time_t now,
                 uint64_t *step_r);

/*
 * A login with TOTP sends the password immediately followed by the
 * current code. True when the last 6 characters are digits and something
 * precedes them; *pw_len_r is then the length of the password part.
 */
bool totp_split(const char *secret, size_t len, size_t *pw_len_r);

/*
 * The last step accepted per user, so that a code seen once (on the wire,
 * over a shoulder) cannot log in again within its 90-second window.
 * With a dir, each user's last step is also kept in a file there, so a
 * restart does not open the window again; dir NULL keeps it in memory
 * only. Safe to use from several threads.
 */
struct totp_replay;

/* Creates dir (mode 0700) if needed. NULL with errno set on failure. */
struct totp_replay *totp_replay_new(const char *dir);
/* True, and step recorded, when step is later than the last step accepted
 * for user; false for a step already used or older. */
bool totp_replay_use(struct totp_replay *r, const char *user, uint64_t step);
void totp_replay_free(struct totp_replay *r);

#endif
