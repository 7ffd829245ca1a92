#ifndef POSTERN_CONFIG_H
#define POSTERN_CONFIG_H

/*
 * The configuration file (DESIGN.md section 4): INI, parsed by inih.
 * Every key is known here; an unknown key, a bad value or a missing
 * required key stops start-up with file, line, key and the reason.
 * Relative paths are resolved against the file's folder.
 */

#include <stdbool.h>
#include <stddef.h>

#include "daemon/defaults.h"

#define CONFIG_MAX_KEYS 96

struct config {
    char *path; /* absolute path of the file */
    char *dir;  /* its folder: the base of relative paths */

    /* [server] */
    char *listen[MAX_LISTEN]; /* plain POP3 (STLS offered with [tls]) */
    unsigned n_listen;
    char *listen_tls[MAX_LISTEN]; /* implicit TLS (POP3S) */
    unsigned n_listen_tls;
    char *greeting;
    unsigned threads;
    char *state_dir;

    /* [auth] */
    char *passdb;
    bool apop;
    bool auth_cache;               /* default yes */
    unsigned auth_cache_ttl;       /* seconds */
    bool require_tls;              /* default yes */
    bool allow_plaintext_loopback; /* default no */
    unsigned sasl_mechs;           /* POP3_MECH_BIT()s; "mechanisms" */

    /* [oauth]: bearer tokens (JWT) checked against local keys */
    char *oauth_jwks;
    char *oauth_issuer;
    char *oauth_audience;
    char *oauth_user_claim; /* NULL: "email" */

    /* [tls]: all NULL when TLS is not configured */
    char *tls_cert;
    char *tls_key;
    char *tls_ca;
    int tls_min_version; /* TLS1_2_VERSION (default) or TLS1_3_VERSION */
    char *tls_ciphers;
    char *tls_ciphersuites;

    /* [mail] */
    char *location;

    /* [limits] */
    unsigned login_timeout;
    unsigned idle_timeout;
    unsigned max_connections;
    unsigned max_connections_per_ip;
    unsigned max_line;

    /* [guard] */
    unsigned failure_delay;
    unsigned failure_delay_max;
    unsigned max_preauth_per_ip;
    unsigned max_auth_failures; /* per connection */
    unsigned max_bad_commands;  /* per session */
    unsigned ban_after, ban_window, ban_time;
    unsigned ipv6_prefix;
    char *trusted; /* CIDR list */
    unsigned account_failures, account_window;
    unsigned login_delay;
    char *alert_command;
    unsigned alert_window;
    unsigned spray_accounts, attack_ips;
    unsigned download_messages, download_mbytes, download_window;
    unsigned mass_delete_messages, mass_delete_percent;

    /* [metrics] */
    char *metrics_listen; /* ADDRESS:PORT of the Prometheus endpoint; NULL: off */

    /* [log] */
    char *audit; /* "stderr", "syslog" or an absolute path */

    /* The line each key was set on (0: default), in key-table order. */
    unsigned key_line[CONFIG_MAX_KEYS];
};

/* Returns 0, or -1 with a message "FILE:LINE: [section] key: why" in err. */
int config_load(const char *path, struct config *cfg, char *err, size_t errlen);
void config_free(struct config *cfg);

/* "FILE:LINE: [section] key", for errors found after parsing (a passdb
 * file that cannot be read, an address that cannot be bound). */
const char *config_where(const struct config *cfg, const char *section, const char *key);

#endif
