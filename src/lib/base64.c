#include "lib/base64.h"

#include <stdint.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int b64_value(unsigned char c, bool url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

int b64_decode(const char *in, size_t len, unsigned char *out, size_t size)
{
    size_t n = 0;

    if (len % 4 != 0)
        return -1;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        unsigned pad = 0;
        for (unsigned j = 0; j < 4; j++) {
            unsigned char c = (unsigned char)in[i + j];
            /* '=' only at the end, and only in the last two places. */
            if (c == '=' && i + 4 == len && j >= 2 && (j == 3 || in[i + 3] == '=')) {
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad > 0 || (v[j] = b64_value(c, false)) < 0)
                return -1;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        /* Bits hidden under the padding must be zero: one encoding per
         * byte string keeps the decoder's answers unambiguous. */
        if ((pad == 1 && (w & 0xff) != 0) || (pad == 2 && (w & 0xffff) != 0))
            return -1;
        unsigned bytes = 3 - pad;
        if (n + bytes > size)
            return -1;
        out[n++] = (unsigned char)(w >> 16);
        if (bytes > 1)
            out[n++] = (unsigned char)(w >> 8);
        if (bytes > 2)
            out[n++] = (unsigned char)w;
    }
    return (int)n;
}

size_t b64_encode(const unsigned char *in, size_t len, char *out, size_t size)
{
    size_t need = B64_ENCODED_LEN(len);
    size_t n = 0;

    if (size < need + 1)
        return 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t w = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            w |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            w |= in[i + 2];
        out[n++] = alphabet[w >> 18 & 63];
        out[n++] = alphabet[w >> 12 & 63];
        out[n++] = i + 1 < len ? alphabet[w >> 6 & 63] : '=';
        out[n++] = i + 2 < len ? alphabet[w & 63] : '=';
    }
    out[n] = '\0';
    return n;
}
