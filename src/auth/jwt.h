#ifndef POSTERN_JWT_H
#define POSTERN_JWT_H

/*
 * Local verification of OAuth bearer tokens that are JWTs (RFC 7519) signed
 * with RS256 or ES256 (RFC 7518), against public keys from a JWKS file
 * (RFC 7517). Nothing is fetched over the network: the operator puts the
 * identity provider's keys in the file, so a login never waits on, or
 * trusts, anything but that file.
 *
 * What jwt_verify() checks, and why:
 *  - The token is a compact JWS, three base64url parts without padding, at
 *    most JWT_MAX_LEN bytes: a bound on the work an unauthenticated client
 *    can ask for. Non-canonical base64url is refused, so a token has one
 *    spelling.
 *  - The header's "alg" is RS256 or ES256, nothing else. "none" would
 *    accept anything; HS256 with an RSA public key as the HMAC secret is
 *    the classic confusion attack, so the key type must match the alg and
 *    keys are never used as secrets. A "crit" header is refused (we
 *    understand no extension), and "jwk", "jku", "x5u" and "x5c" are
 *    ignored: keys come from the JWKS file only.
 *  - "kid", when present, selects the keys with that id (none: "unknown
 *    key"); without it each key of the alg's type is tried.
 *  - The signature is checked before any claim is read, so the reasons
 *    below past "bad signature" are only ever given for genuine tokens.
 *  - "exp" is required and now < exp + leeway; "nbf", when present, must be
 *    <= now + leeway: a stolen token is only good for a short time.
 *  - "iss" equals the policy's issuer and "aud" (a string, or an array
 *    holding it) the policy's audience, when the policy sets them: a token
 *    minted by another issuer or for another service is not ours.
 *  - The user claim is a string of 1 to JWT_MAX_USER bytes with no control
 *    character and no '/', and is not "." or "..": it becomes a mailbox
 *    name in a path.
 *  - JSON is parsed strictly (src/auth/json.h): duplicate member names and
 *    invalid UTF-8 are refused.
 *
 * The reasons are short stable strings for the audit log: "malformed token"
 * (also for a missing or non-numeric "exp"), "unsupported alg", "unknown
 * key", "bad signature", "expired", "not yet valid", "wrong issuer", "wrong
 * audience", "no user claim" (absent or not a string) and "bad user claim"
 * (fails the rules above). They never contain token data.
 *
 * A loaded struct jwks is read-only: any number of threads may call
 * jwt_verify() on it at once.
 */

#include <stddef.h>
#include <time.h>

#define JWT_MAX_LEN   8192 /* bytes of a whole token */
#define JWT_MAX_USER  255  /* bytes of the user claim */
#define JWKS_MAX_SIZE (1024 * 1024)
#define JWKS_MAX_KEYS 64

struct jwks;

struct jwt_policy {
    const char *issuer;     /* NULL: "iss" not checked */
    const char *audience;   /* NULL: "aud" not checked */
    const char *user_claim; /* NULL: "email" */
    unsigned leeway;        /* seconds of clock skew allowed for exp and nbf */
};

/*
 * Reads a JWKS file ({"keys": [...]}) and keeps its usable keys: RSA keys
 * of at least 2048 bits (kty "RSA", n, e) and EC keys on P-256 (kty "EC",
 * crv "P-256", x, y), with their kid and alg when given. Keys of other
 * types or curves, smaller RSA keys, keys whose "use" is not "sig", whose
 * "key_ops" lacks "verify" or whose "alg" is not RS256/ES256 (matching the
 * type) are skipped and counted. A supported key with bad fields, a file
 * that is not such a document, or one without any usable key is an error.
 * Returns the key set, or NULL with *error_r: a message for the operator,
 * valid until the next jwks_load() or jwks_parse() in this thread.
 */
struct jwks *jwks_load(const char *path, const char **error_r);

/* The same from a document in memory (len bytes, no NUL needed). */
struct jwks *jwks_parse(const char *data, size_t len, const char **error_r);

/* Usable keys, and in *skipped_r (when not NULL) the keys skipped. */
size_t jwks_count(const struct jwks *keys, size_t *skipped_r);

/* Frees the key set and sets *keys to NULL. */
void jwks_free(struct jwks **keys);

/*
 * Verifies a token of len bytes (no NUL needed) at time now. Returns 0 and
 * the user claim in user_r (NUL-terminated; user_size should be at least
 * JWT_MAX_USER + 1), or -1 with *reason_r (see above).
 */
int jwt_verify(const struct jwks *keys, const char *token, size_t len, const struct jwt_policy *pol,
               time_t now, char *user_r, size_t user_size, const char **reason_r);

#endif
