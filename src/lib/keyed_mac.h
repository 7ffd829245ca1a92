#ifndef POSTERN_KEYED_MAC_H
#define POSTERN_KEYED_MAC_H

/*
 * HMAC-SHA256 of a (user, secret) pair under a random key made at
 * start-up. The guard uses it to recognise a client repeating the same
 * wrong password, the auth cache to recognise a verified one; neither
 * keeps the password itself. With no secret, it gives the made-up SCRAM
 * salt of an unknown user: the same for a name as long as the daemon
 * runs.
 *
 * The key schedule and the algorithm lookups are done once, in
 * keyed_mac_new(); every MAC starts from a copy of that state. OpenSSL 3's
 * one-shot HMAC() fetches HMAC and SHA-256 from the provider store on
 * every call, under its locks: with two I/O threads that was 3 us, 4.7%
 * of the server's CPU, in a 70 us plain login.
 */

#include <stdbool.h>
#include <stddef.h>

#define KEYED_MAC_LEN     32
#define KEYED_MAC_KEY_LEN 32

struct keyed_mac;

/* Under key[0..KEYED_MAC_KEY_LEN), or under a fresh random key if key is
 * NULL (the daemon's case; a given key lets tests check known answers).
 * NULL if OpenSSL has no HMAC or no randomness. */
struct keyed_mac *keyed_mac_new(const unsigned char *key);
void keyed_mac_free(struct keyed_mac **km);

/* out = HMAC-SHA256(key, user NUL secret[0..len)): the NUL keeps
 * "ab"+"c" apart from "a"+"bc". Safe to call from several threads at
 * once. If OpenSSL fails, returns false and fills out with a value that
 * no other call returns, so that it matches nothing. */
bool keyed_mac_pair(const struct keyed_mac *km, const char *user, const void *secret, size_t len,
                    unsigned char out[KEYED_MAC_LEN]);

#endif
