/* PLAIN (RFC 4616) and the SASL name rules shared by the mechanisms. */
#include "pop3/sasl/sasl.h"

#include <string.h>

static bool name_byte_ok(unsigned char c)
{
    /* Names become mailbox paths and log fields: no controls, no spaces,
     * no '/'. */
    return c > 0x20 && c != 0x7f && c != '/';
}

int sasl_name_decode(const char *in, size_t len, char *out, size_t size, const char **error_r)
{
    size_t n = 0;

    if (len == 0) {
        *error_r = "empty user name";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '=') {
            if (i + 2 < len && in[i + 1] == '2' && in[i + 2] == 'C')
                c = ',';
            else if (i + 2 < len && in[i + 1] == '3' && in[i + 2] == 'D')
                c = '=';
            else {
                *error_r = "bad '=' escape in user name";
                return -1;
            }
            i += 2;
        } else if (c == ',') {
            *error_r = "unescaped ',' in user name";
            return -1;
        }
        if (!name_byte_ok((unsigned char)c)) {
            *error_r = "user name contains a space, control character or '/'";
            return -1;
        }
        if (n + 1 >= size) {
            *error_r = "user name too long";
            return -1;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    return 0;
}

int sasl_plain_decode(const char *in, size_t len, struct sasl_plain *out, const char **error_r)
{
    const char *nul1 = memchr(in, '\0', len);
    const char *nul2 = nul1 == NULL ? NULL : memchr(nul1 + 1, '\0', len - (size_t)(nul1 + 1 - in));

    memset(out, 0, sizeof(*out));
    if (nul2 == NULL) {
        *error_r = "PLAIN response needs authzid NUL authcid NUL password";
        return -1;
    }
    out->authzid = in;
    out->authzid_len = (size_t)(nul1 - in);
    out->authcid = nul1 + 1;
    out->authcid_len = (size_t)(nul2 - out->authcid);
    out->passwd = nul2 + 1;
    out->passwd_len = len - (size_t)(out->passwd - in);
    if (memchr(out->passwd, '\0', out->passwd_len) != NULL) {
        *error_r = "PLAIN response has more than two NUL separators";
        return -1;
    }
    if (out->authcid_len == 0 || out->authcid_len > SASL_USER_MAX) {
        *error_r = out->authcid_len == 0 ? "empty user name" : "user name too long";
        return -1;
    }
    for (size_t i = 0; i < out->authcid_len; i++) {
        if (!name_byte_ok((unsigned char)out->authcid[i])) {
            *error_r = "user name contains a space, control character or '/'";
            return -1;
        }
    }
    if (out->passwd_len == 0) {
        *error_r = "empty password";
        return -1;
    }
    return 0;
}
