/* SCRAM message decoders (RFC 5802 section 7, RFC 9266 for tls-exporter). */
#include "pop3/sasl/sasl.h"

#include <string.h>

#include "lib/base64.h"

/* The attribute "x=" at *p, up to the next ',' or the end: value and its
 * length; *p moves past the ','. */
static bool attr(const char **p, const char *end, char name, const char **val_r, size_t *len_r)
{
    const char *s = *p;

    if (end - s < 2 || s[0] != name || s[1] != '=')
        return false;
    s += 2;
    const char *comma = memchr(s, ',', (size_t)(end - s));
    const char *stop = comma != NULL ? comma : end;
    *val_r = s;
    *len_r = (size_t)(stop - s);
    *p = comma != NULL ? comma + 1 : end;
    return true;
}

static bool printable_nonce(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e || c == ',')
            return false;
    }
    return true;
}

int scram_client_first_decode(const char *in, size_t len, struct scram_client_first *out,
                              const char **error_r)
{
    const char *p = in, *end = in + len, *v;
    size_t vlen;

    memset(out, 0, sizeof(*out));
    if (memchr(in, '\0', len) != NULL) {
        *error_r = "NUL in SCRAM message";
        return -1;
    }
    if (len >= 2 && in[0] == 'n' && in[1] == ',') {
        out->cbind = SCRAM_CBIND_NONE;
        p += 2;
    } else if (len >= 2 && in[0] == 'y' && in[1] == ',') {
        out->cbind = SCRAM_CBIND_CAN;
        p += 2;
    } else if (attr(&p, end, 'p', &v, &vlen)) {
        if (vlen != 12 || memcmp(v, "tls-exporter", 12) != 0) {
            *error_r = "unsupported channel binding type (only tls-exporter)";
            return -1;
        }
        out->cbind = SCRAM_CBIND_EXPORTER;
        if (p == end || p[-1] != ',') {
            *error_r = "bad gs2 header";
            return -1;
        }
    } else {
        *error_r = "bad gs2 header";
        return -1;
    }
    if (p < end && *p == ',') {
        p++;
    } else if (attr(&p, end, 'a', &v, &vlen)) {
        if (p == end || p[-1] != ',' ||
            sasl_name_decode(v, vlen, out->authzid, sizeof(out->authzid), error_r) < 0) {
            if (p == end || p[-1] != ',')
                *error_r = "bad gs2 header";
            return -1;
        }
        out->has_authzid = true;
    } else {
        *error_r = "bad gs2 header";
        return -1;
    }
    out->gs2_len = (size_t)(p - in);
    out->bare = p;
    out->bare_len = (size_t)(end - p);
    if (end - p >= 2 && p[0] == 'm' && p[1] == '=') {
        *error_r = "mandatory SCRAM extension not supported";
        return -1;
    }
    if (!attr(&p, end, 'n', &v, &vlen)) {
        *error_r = "SCRAM message has no user name";
        return -1;
    }
    if (sasl_name_decode(v, vlen, out->user, sizeof(out->user), error_r) < 0)
        return -1;
    if (p == end || p[-1] != ',' || !attr(&p, end, 'r', &out->nonce, &out->nonce_len) ||
        !printable_nonce(out->nonce, out->nonce_len)) {
        *error_r = "SCRAM message has no valid nonce";
        return -1;
    }
    /* Optional extensions may follow; they are not understood and not
     * mandatory, so they are ignored (RFC 5802 section 5.1). */
    return 0;
}

int scram_client_final_decode(const char *in, size_t len, struct scram_client_final *out,
                              const char **error_r)
{
    const char *p = in, *end = in + len, *v;
    size_t vlen;
    int n;

    memset(out, 0, sizeof(*out));
    if (memchr(in, '\0', len) != NULL) {
        *error_r = "NUL in SCRAM message";
        return -1;
    }
    if (!attr(&p, end, 'c', &v, &vlen) ||
        (n = b64_decode(v, vlen, out->cbind, sizeof(out->cbind))) < 0) {
        *error_r = "SCRAM final message has no valid channel binding";
        return -1;
    }
    out->cbind_len = (size_t)n;
    if (p == end || p[-1] != ',' || !attr(&p, end, 'r', &out->nonce, &out->nonce_len) ||
        !printable_nonce(out->nonce, out->nonce_len)) {
        *error_r = "SCRAM final message has no valid nonce";
        return -1;
    }
    /* The proof is the last attribute: everything before ",p=" is signed. */
    const char *proof = NULL;
    for (const char *q = p; q + 3 <= end; q++) {
        if (q[0] == 'p' && q[1] == '=' && q[-1] == ',')
            proof = q;
    }
    if (proof == NULL) {
        *error_r = "SCRAM final message has no proof";
        return -1;
    }
    out->without_proof_len = (size_t)(proof - 1 - in);
    n = b64_decode(proof + 2, (size_t)(end - proof - 2), out->proof, sizeof(out->proof));
    if (n != SCRAM_PROOF_LEN) {
        *error_r = "SCRAM proof is not 32 bytes of base64";
        return -1;
    }
    return 0;
}
