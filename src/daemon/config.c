#include "daemon/config.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>
#include <openssl/ssl.h>

#include "lib/str.h"
#include "guard/guard.h"
#include "pop3/pop3.h"

enum key_type {
    T_STR,
    T_PATH,
    T_UINT,
    T_BOOL,
    T_LISTEN,
    T_LOG,
    T_TEXT,
    T_TLS_VERSION,
    T_MECHS,
    T_ADDRESS
};

struct key {
    const char *section;
    const char *name;
    enum key_type type;
    size_t offset;
    unsigned min, max;
    bool required;
};

#define OFF(field) offsetof(struct config, field)

static const struct key keys[] = {
    /* listen and listen_tls: at least one of the two (checked after parsing). */
    {"server", "listen", T_LISTEN, OFF(listen), 0, 0, false},
    {"server", "listen_tls", T_LISTEN, OFF(listen_tls), 0, 0, false},
    {"server", "greeting", T_TEXT, OFF(greeting), 1, MAX_GREETING, false},
    {"server", "threads", T_UINT, OFF(threads), 0, MAX_THREADS, false},
    {"server", "state_dir", T_PATH, OFF(state_dir), 0, 0, false},
    {"auth", "passdb", T_STR, OFF(passdb), 0, 0, true},
    {"auth", "apop", T_BOOL, OFF(apop), 0, 0, false},
    {"auth", "cache", T_BOOL, OFF(auth_cache), 0, 0, false},
    {"auth", "cache_ttl", T_UINT, OFF(auth_cache_ttl), 1, MAX_TIMEOUT, false},
    {"auth", "require_tls", T_BOOL, OFF(require_tls), 0, 0, false},
    {"auth", "allow_plaintext_loopback", T_BOOL, OFF(allow_plaintext_loopback), 0, 0, false},
    {"auth", "mechanisms", T_MECHS, OFF(sasl_mechs), 0, 0, false},
    {"oauth", "jwks", T_PATH, OFF(oauth_jwks), 0, 0, false},
    {"oauth", "issuer", T_STR, OFF(oauth_issuer), 0, 0, false},
    {"oauth", "audience", T_STR, OFF(oauth_audience), 0, 0, false},
    {"oauth", "user_claim", T_STR, OFF(oauth_user_claim), 0, 0, false},
    {"tls", "cert", T_PATH, OFF(tls_cert), 0, 0, false},
    {"tls", "key", T_PATH, OFF(tls_key), 0, 0, false},
    {"tls", "ca", T_PATH, OFF(tls_ca), 0, 0, false},
    {"tls", "min_version", T_TLS_VERSION, OFF(tls_min_version), 0, 0, false},
    {"tls", "ciphers", T_STR, OFF(tls_ciphers), 0, 0, false},
    {"tls", "ciphersuites", T_STR, OFF(tls_ciphersuites), 0, 0, false},
    {"mail", "location", T_STR, OFF(location), 0, 0, true},
    {"limits", "login_timeout", T_UINT, OFF(login_timeout), 1, MAX_TIMEOUT, false},
    {"limits", "idle_timeout", T_UINT, OFF(idle_timeout), 1, MAX_TIMEOUT, false},
    {"limits", "max_connections", T_UINT, OFF(max_connections), 1, 1000000, false},
    {"limits", "max_connections_per_ip", T_UINT, OFF(max_connections_per_ip), 1, 1000000, false},
    {"limits", "max_line", T_UINT, OFF(max_line), MIN_MAX_LINE, MAX_MAX_LINE, false},
    {"guard", "failure_delay", T_UINT, OFF(failure_delay), 0, 60, false},
    {"guard", "failure_delay_max", T_UINT, OFF(failure_delay_max), 0, 600, false},
    {"guard", "max_preauth_per_ip", T_UINT, OFF(max_preauth_per_ip), 1, 1000000, false},
    {"guard", "max_auth_failures", T_UINT, OFF(max_auth_failures), 1, 100, false},
    {"guard", "max_bad_commands", T_UINT, OFF(max_bad_commands), 0, 100000, false},
    {"guard", "ban_after", T_UINT, OFF(ban_after), 0, 100, false},
    {"guard", "ban_window", T_UINT, OFF(ban_window), 1, 86400 * 7, false},
    {"guard", "ban_time", T_UINT, OFF(ban_time), 1, 86400 * 365, false},
    {"guard", "ipv6_prefix", T_UINT, OFF(ipv6_prefix), 32, 128, false},
    {"guard", "trusted", T_STR, OFF(trusted), 0, 0, false},
    {"guard", "account_failures", T_UINT, OFF(account_failures), 0, 100, false},
    {"guard", "account_window", T_UINT, OFF(account_window), 1, 86400 * 7, false},
    {"guard", "login_delay", T_UINT, OFF(login_delay), 0, 86400, false},
    {"guard", "alert_command", T_STR, OFF(alert_command), 0, 0, false},
    {"guard", "alert_window", T_UINT, OFF(alert_window), 1, 86400 * 7, false},
    {"guard", "spray_accounts", T_UINT, OFF(spray_accounts), 0, 63, false},
    {"guard", "attack_ips", T_UINT, OFF(attack_ips), 0, 63, false},
    {"guard", "download_messages", T_UINT, OFF(download_messages), 0, 100000000, false},
    {"guard", "download_mbytes", T_UINT, OFF(download_mbytes), 0, 100000000, false},
    {"guard", "download_window", T_UINT, OFF(download_window), 1, 86400 * 7, false},
    {"guard", "mass_delete_messages", T_UINT, OFF(mass_delete_messages), 0, 100000000, false},
    {"guard", "mass_delete_percent", T_UINT, OFF(mass_delete_percent), 0, 100, false},
    {"metrics", "listen", T_ADDRESS, OFF(metrics_listen), 0, 0, false},
    {"log", "audit", T_LOG, OFF(audit), 0, 0, false},
};
#define N_KEYS (sizeof(keys) / sizeof(keys[0]))
_Static_assert(N_KEYS <= CONFIG_MAX_KEYS, "raise CONFIG_MAX_KEYS");

struct parse_ctx {
    struct config *cfg;
    const char *text;
    size_t pos, len;
    unsigned line;
    bool seen[N_KEYS];
    char *err;
    size_t errlen;
    bool failed;
    unsigned fail_line; /* the line of the error in err */
};

static void fail(struct parse_ctx *p, const char *section, const char *name, const char *fmt,
                 const char *arg)
{
    char why[512];

    if (p->failed)
        return;
    p->failed = true;
    p->fail_line = p->line;
    snprintf(why, sizeof(why), fmt, arg);
    if (name != NULL && p->line == 0) /* a default value: no line to name */
        snprintf(p->err, p->errlen, "%s: [%s] %s: %s", p->cfg->path, section, name, why);
    else if (name != NULL)
        snprintf(p->err, p->errlen, "%s:%u: [%s] %s: %s", p->cfg->path, p->line, section, name,
                 why);
    else
        snprintf(p->err, p->errlen, "%s:%u: %s", p->cfg->path, p->line, why);
}

static bool known_section(const char *name, size_t len)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        if (strlen(keys[i].section) == len && strncmp(keys[i].section, name, len) == 0)
            return true;
    }
    return false;
}

/* inih tells the handler about keys only, so a section header is checked
 * here: "[tsl]" with nothing under it must not pass unnoticed. */
static void check_section(struct parse_ctx *p, const char *line)
{
    const char *s = line + strspn(line, " \t");
    const char *end;

    if (*s != '[' || (end = strchr(s, ']')) == NULL)
        return;
    s++;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (!known_section(s, (size_t)(end - s))) {
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)(end - s), s);
        fail(p, NULL, NULL, "unknown section [%s]", name);
    }
}

/* inih's reader: hands out one line at a time and counts them, so errors
 * can name the line, and refuses lines longer than inih's buffer instead
 * of letting them be split silently. */
static char *reader(char *str, int num, void *stream)
{
    struct parse_ctx *p = stream;
    size_t start = p->pos, n;
    const char *nl;

    if (p->pos >= p->len)
        return NULL;
    nl = memchr(p->text + start, '\n', p->len - start);
    n = nl != NULL ? (size_t)(nl - (p->text + start)) + 1 : p->len - start;
    p->pos += n;
    p->line++;
    if (n > (size_t)num - 1) {
        char limit[16];
        snprintf(limit, sizeof(limit), "%d", num - 2);
        fail(p, NULL, NULL, "line longer than %s characters", limit);
        n = 0; /* inih gets an empty line; the error above stands */
    }
    memcpy(str, p->text + start, n);
    str[n] = '\0';
    check_section(p, str);
    return str;
}

static char *resolve(const struct config *cfg, const char *value)
{
    if (value[0] == '/')
        return strdup(value);
    size_t n = strlen(cfg->dir) + strlen(value) + 2;
    char *s = malloc(n);
    if (s != NULL)
        snprintf(s, n, "%s/%s", cfg->dir, value);
    return s;
}

/* One ADDRESS:PORT, from s to e, of the value of key k. */
static bool address_ok(struct parse_ctx *p, const struct key *k, const char *value, const char *s,
                       const char *e)
{
    const char *colon = memrchr(s, ':', (size_t)(e - s));
    if (colon == NULL || colon + 1 == e || (s[0] == '[' && colon[-1] != ']') ||
        (s[0] != '[' && memchr(s, ':', (size_t)(colon - s)) != NULL)) {
        fail(p, k->section, k->name,
             "\"%s\": expected ADDRESS:PORT, with IPv6 addresses in brackets", value);
        return false;
    }
    uint64_t port;
    const char *error;
    if (str_parse_u64(colon + 1, (size_t)(e - colon - 1), 65535, &port, &error) < 0 || port == 0) {
        fail(p, k->section, k->name, "\"%s\": port must be 1-65535", value);
        return false;
    }
    return true;
}

static int set_listen(struct parse_ctx *p, const struct key *k, const char *value)
{
    struct config *cfg = p->cfg;
    const char *v = value;
    bool tls = strcmp(k->name, "listen_tls") == 0;
    char **list = tls ? cfg->listen_tls : cfg->listen;
    unsigned *n = tls ? &cfg->n_listen_tls : &cfg->n_listen;

    if (*v == '\0') {
        /* Else the key counts as set, with no address at all. */
        fail(p, k->section, k->name, "must not be empty%s", "");
        return 0;
    }
    while (*v != '\0') {
        size_t len = strcspn(v, ",");
        const char *s = v, *e = v + len;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e == s) {
            fail(p, k->section, k->name, "empty address in list \"%s\"", value);
            return 0;
        }
        if (!address_ok(p, k, value, s, e))
            return 0;
        if (*n == MAX_LISTEN) {
            fail(p, k->section, k->name, "more than %s addresses", "32");
            return 0;
        }
        list[(*n)++] = strndup(s, (size_t)(e - s));
        v += len;
        if (*v == ',' && *++v == '\0') {
            fail(p, k->section, k->name, "empty address in list \"%s\"", value);
            return 0;
        }
    }
    return 1;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    struct parse_ctx *p = user;
    struct config *cfg = p->cfg;
    const struct key *k = NULL;
    size_t i;

    for (i = 0; i < N_KEYS; i++) {
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0) {
            k = &keys[i];
            break;
        }
    }
    if (name[0] == '\0') {
        fail(p, NULL, NULL, "%s", "syntax error: a value without a key");
        return 0;
    }
    if (k == NULL) {
        if (!known_section(section, strlen(section)))
            fail(p, section, name, "unknown section [%s]", section);
        else
            fail(p, section, name, "unknown key%s", "");
        return 0;
    }
    if (p->seen[i]) {
        fail(p, section, name, "set twice (an indented line continues the one above)%s", "");
        return 0;
    }
    p->seen[i] = true;
    cfg->key_line[i] = p->line;
    void *field = (char *)cfg + k->offset;
    switch (k->type) {
    case T_LISTEN:
        return set_listen(p, k, value);
    case T_ADDRESS:
        if (value[0] == '\0' || strchr(value, ',') != NULL) {
            fail(p, section, name, "\"%s\": expected one ADDRESS:PORT", value);
            return 0;
        }
        if (!address_ok(p, k, value, value, value + strlen(value)))
            return 0;
        free(*(char **)field);
        *(char **)field = strdup(value);
        return 1;
    case T_TEXT:
        if (strlen(value) < k->min || strlen(value) > k->max || strpbrk(value, "\r\n") != NULL) {
            fail(p, section, name, "must be 1-200 printable characters%s", "");
            return 0;
        }
        /* fall through */
    case T_STR:
        if (value[0] == '\0') {
            fail(p, section, name, "must not be empty%s", "");
            return 0;
        }
        free(*(char **)field);
        *(char **)field = strdup(value);
        return 1;
    case T_PATH:
    case T_LOG:
        if (value[0] == '\0') {
            fail(p, section, name, "must not be empty%s", "");
            return 0;
        }
        free(*(char **)field);
        if (k->type == T_LOG && (strcmp(value, "stderr") == 0 || strcmp(value, "syslog") == 0))
            *(char **)field = strdup(value);
        else
            *(char **)field = resolve(cfg, value);
        return 1;
    case T_UINT: {
        uint64_t v;
        const char *error;
        char range[64];
        if (str_parse_u64(value, strlen(value), UINT_MAX, &v, &error) < 0 || v < k->min ||
            v > k->max) {
            snprintf(range, sizeof(range), "%u-%u", k->min, k->max);
            fail(p, section, name, "must be a whole number in %s", range);
            return 0;
        }
        *(unsigned *)field = (unsigned)v;
        return 1;
    }
    case T_TLS_VERSION:
        if (strcmp(value, "1.2") == 0 || strcmp(value, "TLSv1.2") == 0)
            *(int *)field = TLS1_2_VERSION;
        else if (strcmp(value, "1.3") == 0 || strcmp(value, "TLSv1.3") == 0)
            *(int *)field = TLS1_3_VERSION;
        else {
            fail(p, section, name, "must be 1.2 or 1.3, not \"%s\"", value);
            return 0;
        }
        return 1;
    case T_MECHS: {
        unsigned bits = 0;
        for (const char *v = value; *v != '\0';) {
            size_t n = strcspn(v, " ,\t");
            if (n > 0) {
                int m = pop3_mech_lookup(v, n);
                if (m < 0) {
                    char word[64];
                    snprintf(word, sizeof(word), "%.*s", (int)(n < 40 ? n : 40), v);
                    fail(p, section, name,
                         "unknown mechanism \"%s\" (PLAIN, LOGIN, SCRAM-SHA-256, "
                         "SCRAM-SHA-256-PLUS, OAUTHBEARER, XOAUTH2)",
                         word);
                    return 0;
                }
                bits |= POP3_MECH_BIT(m);
            }
            v += n;
            v += strspn(v, " ,\t");
        }
        *(unsigned *)field = bits;
        return 1;
    }
    case T_BOOL:
        if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0 || strcmp(value, "1") == 0)
            *(bool *)field = true;
        else if (strcmp(value, "no") == 0 || strcmp(value, "false") == 0 || strcmp(value, "0") == 0)
            *(bool *)field = false;
        else {
            fail(p, section, name, "must be yes or no, not \"%s\"", value);
            return 0;
        }
        return 1;
    }
    return 0;
}

static unsigned key_index(const char *section, const char *name)
{
    for (unsigned i = 0; i < N_KEYS; i++) {
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
            return i;
    }
    return 0;
}

/* Rules that involve more than one key, reported at the line of the key
 * that is missing its partner (or at the file when it has no line). */
static void check_combinations(struct parse_ctx *p)
{
    struct config *cfg = p->cfg;
    bool cert = cfg->tls_cert != NULL, key = cfg->tls_key != NULL;

#define AT(section, name) (p->line = cfg->key_line[key_index(section, name)])
    if (cfg->trusted != NULL) {
        struct guard_settings gs;
        const char *why;
        if (guard_parse_trusted(cfg->trusted, &gs, &why) < 0) {
            AT("guard", "trusted");
            fail(p, "guard", "trusted", "%s", why);
        }
    }
    if (cfg->failure_delay_max < cfg->failure_delay) {
        AT("guard", "failure_delay_max");
        fail(p, "guard", "failure_delay_max", "%s", "must be at least failure_delay");
    }
    unsigned bearer = POP3_MECH_BIT(POP3_MECH_OAUTHBEARER) | POP3_MECH_BIT(POP3_MECH_XOAUTH2);
    unsigned mi = key_index("auth", "mechanisms");
    if (cfg->oauth_jwks == NULL) {
        /* Bearer mechanisms are offered only with keys to check tokens. */
        if (p->seen[mi] && (cfg->sasl_mechs & bearer) != 0) {
            AT("auth", "mechanisms");
            fail(p, "auth", "mechanisms", "%s", "OAUTHBEARER and XOAUTH2 need [oauth] jwks");
        } else if (cfg->oauth_issuer != NULL || cfg->oauth_audience != NULL ||
                   cfg->oauth_user_claim != NULL) {
            const char *k = cfg->oauth_issuer != NULL     ? "issuer"
                            : cfg->oauth_audience != NULL ? "audience"
                                                          : "user_claim";
            AT("oauth", k);
            fail(p, "oauth", k, "%s", "needs [oauth] jwks");
        }
        if (!p->seen[mi])
            cfg->sasl_mechs &= ~bearer;
    } else if (cfg->oauth_issuer == NULL || cfg->oauth_audience == NULL) {
        /* Without both, a token another service obtained for itself
         * would open mailboxes here. */
        AT("oauth", "jwks");
        fail(p, "oauth", "jwks", "%s",
             cfg->oauth_issuer == NULL ? "needs [oauth] issuer too" : "needs [oauth] audience too");
    }
    if (cert != key) {
        AT("tls", cert ? "cert" : "key");
        fail(p, "tls", cert ? "cert" : "key", "%s",
             cert ? "needs [tls] key too" : "needs [tls] cert too");
    } else if (!cert && (cfg->tls_ca != NULL || cfg->tls_ciphers != NULL ||
                         p->seen[key_index("tls", "ciphersuites")] ||
                         p->seen[key_index("tls", "min_version")])) {
        const char *k = cfg->tls_ca != NULL                         ? "ca"
                        : cfg->tls_ciphers != NULL                  ? "ciphers"
                        : p->seen[key_index("tls", "ciphersuites")] ? "ciphersuites"
                                                                    : "min_version";
        AT("tls", k);
        fail(p, "tls", k, "%s", "has no effect without [tls] cert and key");
    } else if (!cert && cfg->n_listen_tls > 0) {
        AT("server", "listen_tls");
        fail(p, "server", "listen_tls", "%s", "needs [tls] cert and key");
    } else if (!cert && cfg->require_tls && !cfg->allow_plaintext_loopback) {
        /* Nobody could ever log in. */
        if (p->seen[key_index("auth", "require_tls")])
            AT("auth", "require_tls");
        else
            p->line = 0;
        fail(p, "auth", "require_tls", "%s",
             "is yes (the default) but there is no [tls] cert and key: no client could log in "
             "(configure TLS, or set require_tls = no)");
    }
#undef AT
}

static char *read_file(const char *path, size_t *len_r, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    char *buf = NULL;
    size_t cap = 0, len = 0, n;

    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    do {
        if (len + 4096 > cap) {
            cap = cap == 0 ? 8192 : cap * 2;
            char *b = realloc(buf, cap);
            if (b == NULL || cap > 16 * 1024 * 1024) {
                free(b != NULL ? b : buf);
                fclose(f);
                snprintf(err, errlen, "%s: too large", path);
                return NULL;
            }
            buf = b;
        }
        n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
    } while (n > 0);
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        snprintf(err, errlen, "%s: read error", path);
        return NULL;
    }
    buf[len] = '\0';
    *len_r = len;
    return buf;
}

int config_load(const char *path, struct config *cfg, char *err, size_t errlen)
{
    struct parse_ctx p = {.cfg = cfg, .err = err, .errlen = errlen};
    char abs[PATH_MAX];

    memset(cfg, 0, sizeof(*cfg));
    if (realpath(path, abs) == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    cfg->path = strdup(abs);
    char *slash = strrchr(abs, '/');
    *slash = '\0';
    cfg->dir = strdup(abs[0] != '\0' ? abs : "/");
    cfg->greeting = strdup(DEFAULT_GREETING);
    cfg->threads = DEFAULT_THREADS;
    cfg->login_timeout = DEFAULT_LOGIN_TIMEOUT;
    cfg->idle_timeout = DEFAULT_IDLE_TIMEOUT;
    cfg->max_connections = DEFAULT_MAX_CONNECTIONS;
    cfg->max_connections_per_ip = DEFAULT_MAX_CONN_PER_IP;
    cfg->max_line = DEFAULT_MAX_LINE;
    cfg->failure_delay = DEFAULT_FAILURE_DELAY;
    cfg->failure_delay_max = DEFAULT_FAILURE_DELAY_MAX;
    cfg->max_preauth_per_ip = DEFAULT_MAX_PREAUTH_PER_IP;
    cfg->max_auth_failures = DEFAULT_MAX_AUTH_FAILURES;
    cfg->max_bad_commands = DEFAULT_MAX_BAD_COMMANDS;
    cfg->ban_after = DEFAULT_BAN_AFTER;
    cfg->ban_window = DEFAULT_BAN_WINDOW;
    cfg->ban_time = DEFAULT_BAN_TIME;
    cfg->ipv6_prefix = DEFAULT_IPV6_PREFIX;
    cfg->account_failures = DEFAULT_ACCOUNT_FAILURES;
    cfg->account_window = DEFAULT_ACCOUNT_WINDOW;
    cfg->alert_window = DEFAULT_ALERT_WINDOW;
    cfg->spray_accounts = DEFAULT_SPRAY_ACCOUNTS;
    cfg->attack_ips = DEFAULT_ATTACK_IPS;
    cfg->download_messages = DEFAULT_DOWNLOAD_MESSAGES;
    cfg->download_mbytes = DEFAULT_DOWNLOAD_MBYTES;
    cfg->download_window = DEFAULT_DOWNLOAD_WINDOW;
    cfg->mass_delete_messages = DEFAULT_MASS_DELETE_MESSAGES;
    cfg->audit = strdup(DEFAULT_AUDIT);
    cfg->state_dir = resolve(cfg, DEFAULT_STATE_DIR);
    cfg->require_tls = true;
    cfg->auth_cache = true;
    cfg->auth_cache_ttl = DEFAULT_AUTH_CACHE_TTL;
    cfg->tls_min_version = TLS1_2_VERSION;
    cfg->tls_ciphersuites = strdup(DEFAULT_TLS_CIPHERSUITES);
    /* Every mechanism: the bearer ones drop out below unless [oauth] is
     * configured. */
    cfg->sasl_mechs = DEFAULT_SASL_MECHS;

    char *text = read_file(cfg->path, &p.len, err, errlen);
    if (text == NULL) {
        config_free(cfg);
        return -1;
    }
    p.text = text;
    int r = ini_parse_stream(reader, &p, handler, &p);
    free(text);
    /* inih goes on after a syntax error and tells only at the end: an
     * error the handler found on a later line must not hide it. */
    if (r > 0 && (!p.failed || (unsigned)r < p.fail_line)) {
        p.failed = false;
        p.line = (unsigned)r;
        fail(&p, NULL, NULL, "%s", "syntax error: expected [section] or key = value");
    } else if (r < 0 && !p.failed) {
        p.line = 0;
        fail(&p, NULL, NULL, "%s", "cannot parse (out of memory)");
    }
    if (!p.failed && cfg->n_listen == 0 && cfg->n_listen_tls == 0) {
        snprintf(err, errlen,
                 "%s: [server] listen: required key is missing (give listen, listen_tls or both)",
                 cfg->path);
        p.failed = true;
    }
    for (size_t i = 0; i < N_KEYS && !p.failed; i++) {
        if (keys[i].required && !p.seen[i]) {
            snprintf(err, errlen, "%s: [%s] %s: required key is missing", cfg->path,
                     keys[i].section, keys[i].name);
            p.failed = true;
        }
    }
    if (!p.failed)
        check_combinations(&p);
    if (p.failed) {
        config_free(cfg);
        return -1;
    }
    return 0;
}

const char *config_where(const struct config *cfg, const char *section, const char *key)
{
    static _Thread_local char buf[4200];

    for (size_t i = 0; i < N_KEYS; i++) {
        if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, key) == 0 &&
            cfg->key_line[i] != 0) {
            snprintf(buf, sizeof(buf), "%s:%u: [%s] %s", cfg->path, cfg->key_line[i], section, key);
            return buf;
        }
    }
    /* A default value: no line to point at. */
    snprintf(buf, sizeof(buf), "%s: [%s] %s", cfg->path, section, key);
    return buf;
}

void config_free(struct config *cfg)
{
    for (unsigned i = 0; i < cfg->n_listen; i++)
        free(cfg->listen[i]);
    for (unsigned i = 0; i < cfg->n_listen_tls; i++)
        free(cfg->listen_tls[i]);
    for (size_t i = 0; i < N_KEYS; i++) {
        if (keys[i].type == T_STR || keys[i].type == T_PATH || keys[i].type == T_LOG ||
            keys[i].type == T_ADDRESS || keys[i].type == T_TEXT) {
            char **f = (char **)((char *)cfg + keys[i].offset);
            free(*f);
        }
    }
    free(cfg->path);
    free(cfg->dir);
    memset(cfg, 0, sizeof(*cfg));
}
