#ifndef POSTERN_TLS_H
#define POSTERN_TLS_H

/*
 * The server's TLS context: certificate, key, protocol floor, ciphers,
 * session cache and session-ticket keys. The context can be replaced at
 * run time (SIGHUP): new connections get the new one, open sessions keep
 * the one they started with, and a context that fails to load leaves the
 * old one in place. Ticket keys live outside any one context and rotate,
 * so tickets issued before a reload still resume after it.
 */

#include <openssl/ssl.h>

struct tls_settings {
    const char *cert; /* PEM, leaf first, then the chain */
    const char *key;
    const char *ca;           /* optional: CAs for client certificates (not required) */
    int min_version;          /* TLS1_2_VERSION or TLS1_3_VERSION */
    const char *ciphers;      /* TLS <= 1.2 list, NULL: OpenSSL's default */
    const char *ciphersuites; /* TLS 1.3 list, NULL: OpenSSL's default */
};

struct tls;

struct tls *tls_new(const struct tls_settings *set, const char **error_r);
/* Loads the files again; on failure the current context stays. */
int tls_reload(struct tls *t, const char **error_r);
/* A server-side SSL object from the current context, or NULL. */
SSL *tls_ssl_new(struct tls *t);
void tls_free(struct tls **t);

#endif
