/*
 * tls_floor: what OpenSSL's handshakes alone cost on this machine, with no
 * sockets, no event loop and no POP3 -- the floor under every TLS row of
 * the benchmark, and the ceiling of the ratio "resumed / full handshake
 * rate" that any server built on this OpenSSL can show.
 *
 *   tls_floor CERT KEY [COUNT]
 *
 * Client and server run in this one thread over a BIO pair; each side's
 * SSL calls are timed with the thread's CPU clock. The server is set up as
 * posternd sets up its own: the same TLS 1.3 suite order with server
 * preference, one ticket per full handshake and none on resumption, stateless
 * tickets. The client is set up as build/bench/loadgen: no chain check,
 * and each connection resumes with the session of the previous one.
 * Prints one JSON object per protocol version on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

/* posternd's default (src/daemon/defaults.h, DEFAULT_TLS_CIPHERSUITES). */
#define SUITES     "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define WARMUP     50
#define TLSEXT_PSK 41

static double cpu_now(void)
{
    struct timespec t;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "tls_floor: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

/* As loadgen: SSL_VERIFY_NONE ignores the verdict, so do not work it out. */
static int no_chain_check(X509_STORE_CTX *store, void *arg)
{
    (void)store;
    (void)arg;
    return 1;
}

/* As posternd: a resumed session keeps its ticket and gets no new one. */
static int hello_cb(SSL *s, int *alert, void *arg)
{
    const unsigned char *ext;
    size_t len;

    (void)alert;
    (void)arg;
    if (SSL_client_hello_get0_ext(s, TLSEXT_PSK, &ext, &len) == 1)
        SSL_set_num_tickets(s, 0);
    return SSL_CLIENT_HELLO_SUCCESS;
}

struct cost {
    double server, client; /* seconds over the counted handshakes */
    int reused;
};

static double timed_handshake(SSL *s, int *done)
{
    double t = cpu_now();
    *done = SSL_do_handshake(s) == 1;
    return cpu_now() - t;
}

/* n handshakes after WARMUP; with resume, each offers the last session. */
static struct cost run(SSL_CTX *sctx, SSL_CTX *cctx, int n, int resume)
{
    struct cost k = {0, 0, 0};
    SSL_SESSION *sess = NULL;

    for (int i = -WARMUP; i < n; i++) {
        SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
        BIO *sb, *cb;
        int done_s = 0, done_c = 0;
        double ts = 0, tc = 0, t;
        char buf[64];

        if (s == NULL || c == NULL || BIO_new_bio_pair(&sb, 0, &cb, 0) != 1)
            die("out of memory");
        SSL_set_bio(s, sb, sb);
        SSL_set_bio(c, cb, cb);
        SSL_set_accept_state(s);
        SSL_set_connect_state(c);
        if (resume && sess != NULL)
            SSL_set_session(c, sess);
        for (int round = 0; round < 10 && !(done_s && done_c); round++) {
            if (!done_c)
                tc += timed_handshake(c, &done_c);
            if (!done_s)
                ts += timed_handshake(s, &done_s);
        }
        if (!done_s || !done_c)
            die("handshake failed");
        /* A TLS 1.3 ticket comes after the handshake: the client takes it
         * in with its first read, as loadgen does with the greeting. */
        t = cpu_now();
        if (SSL_read(c, buf, sizeof(buf)) > 0)
            die("unexpected data");
        tc += cpu_now() - t;
        if (resume) {
            SSL_SESSION *ns = SSL_get1_session(c);
            if (ns != NULL && SSL_SESSION_is_resumable(ns)) {
                SSL_SESSION_free(sess);
                sess = ns;
            } else {
                SSL_SESSION_free(ns);
            }
        }
        if (i >= 0)
            k.reused += SSL_session_reused(c) == 1;
        /* Both sides closed cleanly: otherwise SSL_free marks the session
         * unresumable. */
        SSL_set_shutdown(c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_set_shutdown(s, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        t = cpu_now();
        SSL_free(c);
        tc += cpu_now() - t;
        t = cpu_now();
        SSL_free(s);
        ts += cpu_now() - t;
        if (i >= 0) {
            k.server += ts;
            k.client += tc;
        }
    }
    SSL_SESSION_free(sess);
    return k;
}

static SSL_CTX *server_ctx(const char *cert, const char *key, int version)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        die("cannot load the certificate and key");
    SSL_CTX_set_min_proto_version(ctx, version);
    SSL_CTX_set_max_proto_version(ctx, version);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_set_ciphersuites(ctx, SUITES) != 1)
        die("cannot set the TLS 1.3 suites");
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"floor", 5);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_client_hello_cb(ctx, hello_cb, NULL);
    return ctx;
}

static SSL_CTX *client_ctx(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    if (ctx == NULL)
        die("out of memory");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, no_chain_check, NULL);
    return ctx;
}

int main(int argc, char **argv)
{
    int n = argc > 3 ? atoi(argv[3]) : 2000;

    if (argc < 3 || n < 1) {
        fprintf(stderr, "usage: tls_floor CERT KEY [COUNT]\n");
        return 2;
    }
    for (int v = 0; v < 2; v++) {
        int version = v == 0 ? TLS1_3_VERSION : TLS1_2_VERSION;
        SSL_CTX *sctx = server_ctx(argv[1], argv[2], version), *cctx = client_ctx();
        struct cost full = run(sctx, cctx, n, 0), resumed = run(sctx, cctx, n, 1);
        double f = (full.server + full.client) / n, r = (resumed.server + resumed.client) / n;

        printf("{\"version\": \"%s\", \"handshakes\": %d, \"full_server_us\": %.1f, "
               "\"full_client_us\": %.1f, \"resumed_server_us\": %.1f, "
               "\"resumed_client_us\": %.1f, \"resumed_count\": %d, "
               "\"full_reused\": %d, \"ratio\": %.2f}\n",
               v == 0 ? "TLSv1.3" : "TLSv1.2", n, full.server / n * 1e6, full.client / n * 1e6,
               resumed.server / n * 1e6, resumed.client / n * 1e6, resumed.reused, full.reused,
               f / r);
        SSL_CTX_free(sctx);
        SSL_CTX_free(cctx);
    }
    return 0;
}
