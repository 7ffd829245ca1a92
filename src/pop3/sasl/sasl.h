#ifndef POSTERN_SASL_H
#define POSTERN_SASL_H

/*
 * SASL mechanism decoders (RFC 4422 family): pure functions over a client
 * response that is already base64-decoded. They check the syntax and pull
 * out the parts; what the parts are worth is decided elsewhere (the
 * exchange in sasl.c, the verification behind io->auth). Every decoder has
 * a fuzz target.
 */

#include <stdbool.h>
#include <stddef.h>

#define SASL_USER_MAX 255

/* PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd. */
struct sasl_plain {
    const char *authzid, *authcid, *passwd;
    size_t authzid_len, authcid_len, passwd_len;
};
int sasl_plain_decode(const char *in, size_t len, struct sasl_plain *out, const char **error_r);

/* A SASL name (RFC 5802 "saslname": "=2C" is ',', "=3D" is '='), into
 * out (a C string); also refuses names a mailbox path could not use. */
int sasl_name_decode(const char *in, size_t len, char *out, size_t size, const char **error_r);

/* SCRAM client-first-message (RFC 5802 section 7). */
enum scram_cbind {
    SCRAM_CBIND_NONE,    /* "n": client does not support channel binding */
    SCRAM_CBIND_CAN,     /* "y": client does, thinks the server does not */
    SCRAM_CBIND_EXPORTER /* "p=tls-exporter" (RFC 9266) */
};
struct scram_client_first {
    enum scram_cbind cbind;
    char user[SASL_USER_MAX + 1];
    bool has_authzid;
    char authzid[SASL_USER_MAX + 1];
    size_t gs2_len;   /* length of the gs2-header, which starts the message */
    const char *bare; /* client-first-message-bare */
    size_t bare_len;
    const char *nonce;
    size_t nonce_len;
};
int scram_client_first_decode(const char *in, size_t len, struct scram_client_first *out,
                              const char **error_r);

/* SCRAM client-final-message. */
#define SCRAM_PROOF_LEN 32
struct scram_client_final {
    unsigned char cbind[128]; /* the decoded c= value */
    size_t cbind_len;
    const char *nonce;
    size_t nonce_len;
    size_t without_proof_len; /* client-final-message-without-proof */
    unsigned char proof[SCRAM_PROOF_LEN];
};
int scram_client_final_decode(const char *in, size_t len, struct scram_client_final *out,
                              const char **error_r);

/* OAUTHBEARER (RFC 7628) and XOAUTH2 (Google's): the user (may be empty
 * for OAUTHBEARER, whose user then comes from the token) and the bearer
 * token. */
struct sasl_bearer {
    char user[SASL_USER_MAX + 1];
    const char *token;
    size_t token_len;
};
int sasl_oauthbearer_decode(const char *in, size_t len, struct sasl_bearer *out,
                            const char **error_r);
int sasl_xoauth2_decode(const char *in, size_t len, struct sasl_bearer *out, const char **error_r);

#endif
