/* OAUTHBEARER (RFC 7628 section 3.1) and XOAUTH2 (Google's older form). */
#include "pop3/sasl/sasl.h"

#include <string.h>
#include <strings.h>

#define KV_SEP '\x01'

/* "Bearer TOKEN" (the scheme is case-insensitive, RFC 6750); the token is
 * b64token: letters, digits and -._~+/ then '=' padding. */
static int bearer_value(const char *v, size_t len, struct sasl_bearer *out, const char **error_r)
{
    if (len < 8 || strncasecmp(v, "Bearer ", 7) != 0) {
        *error_r = "auth value is not \"Bearer <token>\"";
        return -1;
    }
    v += 7;
    len -= 7;
    size_t i = 0;
    while (i < len && ((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
                       (v[i] >= '0' && v[i] <= '9') || strchr("-._~+/", v[i]) != NULL))
        i++;
    while (i < len && v[i] == '=')
        i++;
    if (i == 0 || i != len) {
        *error_r = "bearer token has characters outside b64token";
        return -1;
    }
    out->token = v;
    out->token_len = len;
    return 0;
}

/* key=value pairs separated by ^A, ended by ^A^A. */
static int kvpairs(const char *p, const char *end, struct sasl_bearer *out, bool xoauth2,
                   const char **error_r)
{
    bool have_auth = false;

    for (;;) {
        const char *sep = memchr(p, KV_SEP, (size_t)(end - p));
        if (sep == NULL) {
            *error_r = "response does not end with ^A^A";
            return -1;
        }
        if (sep == p) {
            /* The empty pair: the end. Nothing may follow. */
            if (sep + 1 != end) {
                *error_r = "data after the final ^A";
                return -1;
            }
            break;
        }
        const char *eq = memchr(p, '=', (size_t)(sep - p));
        if (eq == NULL || eq == p) {
            *error_r = "bad key=value pair";
            return -1;
        }
        size_t klen = (size_t)(eq - p), vlen = (size_t)(sep - eq - 1);
        if (klen == 4 && memcmp(p, "auth", 4) == 0) {
            if (have_auth || bearer_value(eq + 1, vlen, out, error_r) < 0) {
                if (have_auth)
                    *error_r = "two auth values";
                return -1;
            }
            have_auth = true;
        } else if (xoauth2 && klen == 4 && memcmp(p, "user", 4) == 0) {
            if (vlen == 0 || vlen > SASL_USER_MAX) {
                *error_r = "bad user";
                return -1;
            }
            for (size_t i = 0; i < vlen; i++) {
                unsigned char c = (unsigned char)eq[1 + i];
                if (c <= 0x20 || c == 0x7f || c == '/') {
                    *error_r = "user name contains a space, control character or '/'";
                    return -1;
                }
            }
            memcpy(out->user, eq + 1, vlen);
            out->user[vlen] = '\0';
        } else {
            /* host=, port= and others: informational. Keys are ALPHA. */
            for (size_t i = 0; i < klen; i++) {
                char c = p[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) {
                    *error_r = "bad key in key=value pair";
                    return -1;
                }
            }
        }
        p = sep + 1;
    }
    if (!have_auth) {
        *error_r = "no auth value";
        return -1;
    }
    if (xoauth2 && out->user[0] == '\0') {
        *error_r = "no user";
        return -1;
    }
    return 0;
}

int sasl_oauthbearer_decode(const char *in, size_t len, struct sasl_bearer *out,
                            const char **error_r)
{
    const char *p = in, *end = in + len;

    memset(out, 0, sizeof(*out));
    if (memchr(in, '\0', len) != NULL) {
        *error_r = "NUL in response";
        return -1;
    }
    /* gs2-header: "n," or "y," (no channel binding for OAUTHBEARER), an
     * optional "a=user", ",". */
    if (len < 3 || (in[0] != 'n' && in[0] != 'y') || in[1] != ',') {
        *error_r = "bad gs2 header";
        return -1;
    }
    p += 2;
    if (*p == 'a' && p + 1 < end && p[1] == '=') {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        if (comma == NULL || sasl_name_decode(p + 2, (size_t)(comma - p - 2), out->user,
                                              sizeof(out->user), error_r) < 0) {
            if (comma == NULL)
                *error_r = "bad gs2 header";
            return -1;
        }
        p = comma + 1;
    } else if (*p == ',') {
        p++;
    } else {
        *error_r = "bad gs2 header";
        return -1;
    }
    if (p == end || *p != KV_SEP) {
        *error_r = "gs2 header not followed by ^A";
        return -1;
    }
    return kvpairs(p + 1, end, out, false, error_r);
}

int sasl_xoauth2_decode(const char *in, size_t len, struct sasl_bearer *out, const char **error_r)
{
    memset(out, 0, sizeof(*out));
    if (memchr(in, '\0', len) != NULL) {
        *error_r = "NUL in response";
        return -1;
    }
    return kvpairs(in, in + len, out, true, error_r);
}
