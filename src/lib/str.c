#include "lib/str.h"

#include <string.h>

const char str_error_too_large[] = "number too large";

int str_parse_u64(const char *s, size_t len, uint64_t max, uint64_t *value_r, const char **error_r)
{
    uint64_t v = 0;

    if (len == 0) {
        *error_r = "not a number";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned char)s[i] - '0';
        if (d > 9) {
            if (i > 0)
                *error_r = "trailing characters after number";
            else if (s[0] == '-')
                *error_r = "must not be negative";
            else
                *error_r = s[0] == '+' ? "must not have a sign" : "not a number";
            return -1;
        }
        if (v > max / 10 || (v == max / 10 && d > max % 10)) {
            *error_r = str_error_too_large;
            return -1;
        }
        v = v * 10 + d;
    }
    *value_r = v;
    return 0;
}

size_t str_copy(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);

    if (size > 0) {
        size_t c = n < size - 1 ? n : size - 1;
        memcpy(dst, src, c);
        dst[c] = '\0';
    }
    return n;
}

bool str_eq_nocase(const char *a, size_t alen, const char *b)
{
    size_t i;

    for (i = 0; i < alen; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (y == '\0')
            return false;
        if (x >= 'a' && x <= 'z')
            x -= 32;
        if (y >= 'a' && y <= 'z')
            y -= 32;
        if (x != y)
            return false;
    }
    return b[i] == '\0';
}

void str_hex(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}
