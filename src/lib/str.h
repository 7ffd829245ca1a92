#ifndef POSTERN_STR_H
#define POSTERN_STR_H

/* Small string helpers shared by the protocol, the configuration and the CLI. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Parses a decimal number made of digits only (no sign, no spaces, no
 * trailing noise) that is at most max. Returns 0, or -1 with *error_r
 * naming the problem in words a client or operator can act on.
 */
int str_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *value_r, const char **error_r);
/* The *error_r of a number made of digits only that exceeds max: a caller
 * for which any such number means "all" (TOP) compares with it. */
extern const char str_error_too_large[];

/* Copies at most size-1 bytes and always terminates; returns strlen(src). */
size_t str_copy(char *dst, const char *src, size_t size);

/* Case-insensitive comparison of an ASCII keyword of known length. */
bool str_eq_nocase(const char *a, size_t alen, const char *b);

/* Hex-encodes len bytes into out, which must hold 2*len+1 bytes. */
void str_hex(const unsigned char *in, size_t len, char *out);

#endif
