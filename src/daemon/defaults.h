#ifndef POSTERN_DEFAULTS_H
#define POSTERN_DEFAULTS_H

/* Every default and limit of the configuration, in one place. */

#define DEFAULT_GREETING  "Postern ready"
#define DEFAULT_THREADS   0 /* one per core */
#define DEFAULT_STATE_DIR "state"
#define DEFAULT_AUDIT     "stderr"
/* OpenSSL's own TLS 1.3 order puts AES-256-GCM-SHA384 first. With the
 * server's order deciding, AES-128-GCM-SHA256 first (Mozilla's order, and
 * what NSS and BoringSSL clients ask for) costs less per handshake: its
 * key schedule is SHA-256, which CPUs do in hardware, and SHA-384 is not
 * (make bench: 20 us less server CPU per full handshake). */
#define DEFAULT_TLS_CIPHERSUITES                                                                   \
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

#define DEFAULT_LOGIN_TIMEOUT   60
#define DEFAULT_IDLE_TIMEOUT    600 /* RFC 1939 section 3: at least 10 minutes */
#define DEFAULT_MAX_CONNECTIONS 10000
#define DEFAULT_MAX_CONN_PER_IP 20
#define DEFAULT_MAX_LINE        8192

#define DEFAULT_FAILURE_DELAY      2
#define DEFAULT_FAILURE_DELAY_MAX  15
#define DEFAULT_MAX_PREAUTH_PER_IP 10
#define DEFAULT_MAX_AUTH_FAILURES  3
/* Clients probe with a few unknown commands (XTND, LAST, ...); twenty is
 * a session that is not a mail client. */
#define DEFAULT_MAX_BAD_COMMANDS 20
#define DEFAULT_BAN_AFTER        10
#define DEFAULT_BAN_WINDOW       600
#define DEFAULT_BAN_TIME         900
#define DEFAULT_IPV6_PREFIX      64
#define DEFAULT_ACCOUNT_FAILURES 20
#define DEFAULT_ACCOUNT_WINDOW   600
#define DEFAULT_ALERT_WINDOW     3600
#define DEFAULT_SPRAY_ACCOUNTS   10
#define DEFAULT_ATTACK_IPS       10
/* POP3 clients download whole mailboxes; these catch more than a person's
 * day of mail, not a phone catching up. */
#define DEFAULT_DOWNLOAD_MESSAGES 20000
#define DEFAULT_DOWNLOAD_MBYTES   4096
#define DEFAULT_DOWNLOAD_WINDOW   3600
/* Download-and-delete is POP3's normal use, so no share of the mailbox
 * alerts by default (mass_delete_percent = 0): only a large count. */
#define DEFAULT_MASS_DELETE_MESSAGES 5000

/* Like Dovecot's auth_cache_ttl; the cache is emptied in effect whenever
 * the passwd-file changes. */
#define DEFAULT_AUTH_CACHE_TTL 3600
/* PLAIN, LOGIN, SCRAM-SHA-256(-PLUS), OAUTHBEARER, XOAUTH2: bits 2-7 of
 * enum pop3_mech. */
#define DEFAULT_SASL_MECHS     0xfcu
#define AUTH_CACHE_MAX_ENTRIES 100000

/* Descriptors per logged-in session (socket, mailbox lock, Maildir
 * folder), and those kept for listeners, logs and the passwd-file. */
#define FDS_PER_SESSION 3
#define FDS_RESERVED    256

#define MAX_THREADS  256
#define MAX_LISTEN   32
#define MIN_MAX_LINE 256 /* RFC 2449: 255 octets per command line */
#define MAX_MAX_LINE 65536
#define MAX_GREETING 200
#define MAX_TIMEOUT  86400

/* Output kept queued per client before the session pauses (pop3.h has the
 * protocol's own high mark; this is where the socket layer wakes it). */
#define OUTPUT_LOW_WATER (64 * 1024)

#endif
