#ifndef POSTERN_BASE64_H
#define POSTERN_BASE64_H

/* Base64 (RFC 4648 section 4, the standard alphabet), as SASL (RFC 4422)
 * and SCRAM (RFC 5802) use it: padding required, no line breaks, no
 * characters outside the alphabet. */

#include <stdbool.h>
#include <stddef.h>

/* Returns the number of bytes written to out, or -1 when in is not valid
 * base64 or out (size bytes) is too small. */
int b64_decode(const char *in, size_t len, unsigned char *out, size_t size);

/* Writes the encoding and a NUL into out; returns its length, or 0 when
 * out (size bytes) is too small. */
size_t b64_encode(const unsigned char *in, size_t len, char *out, size_t size);

/* The 6-bit value of one character, in the standard alphabet or (url) in
 * base64url's (RFC 4648 section 5); -1 for any other character. */
int b64_value(unsigned char c, bool url);

#define B64_ENCODED_LEN(n) (((n) + 2) / 3 * 4)

#endif
