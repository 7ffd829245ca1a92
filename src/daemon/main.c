/*
 * posternd: reads the configuration, binds the listeners, and runs the I/O
 * threads until SIGTERM or SIGINT. Everything runs in one process for now;
 * the auth side is already behind auth_request() (DESIGN.md section 1).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "auth/apppass.h"
#include "auth/auth.h"
#include "auth/jwt.h"
#include "auth/totp.h"
#include "daemon/config.h"
#include "guard/audit.h"
#include "guard/guard.h"
#include "lib/log.h"
#include "lib/pool.h"
#include "net/metrics_http.h"
#include "net/net.h"
#include "net/tls.h"
#include "store/store.h"

static void usage(void)
{
    fprintf(stderr, "usage: posternd -c FILE [-f]\n"
                    "  -c FILE  configuration file\n"
                    "  -f       stay in the foreground and log to stderr\n");
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    log_info("signal %d: stopping", (int)sig);
    event_base_loopbreak(arg);
}

/* SIGHUP: new certificate and key for new connections (open sessions keep
 * theirs), and the audit log opened again after rotation. */
struct hup_ctx {
    struct tls *tls;
    const struct config *cfg;
    struct auth *auth;
    struct auth_settings *second;
};

/* New keys of the identity provider are picked up without a restart;
 * keys that cannot be read leave the old ones in place. */
static void reload_jwks(struct hup_ctx *h)
{
    const char *error;

    if (h->cfg->oauth_jwks == NULL)
        return;
    struct jwks *keys = jwks_load(h->cfg->oauth_jwks, &error);
    if (keys == NULL) {
        log_error("SIGHUP: %s: %s; keeping the keys loaded before",
                  config_where(h->cfg, "oauth", "jwks"), error);
        return;
    }
    size_t n = jwks_count(keys, NULL);
    struct jwks *old = auth_replace_jwks(h->auth, keys);
    h->second->jwks = keys;
    jwks_free(&old);
    log_info("SIGHUP: %zu bearer-token key%s loaded from %s", n, n == 1 ? "" : "s",
             h->cfg->oauth_jwks);
}

static void hup_cb(evutil_socket_t sig, short what, void *arg)
{
    struct hup_ctx *h = arg;
    struct tls *tls = h->tls;
    const char *error;

    (void)sig;
    (void)what;
    audit_reopen();
    reload_jwks(h);
    if (tls == NULL) {
        log_info("SIGHUP: audit log reopened");
    } else if (tls_reload(tls, &error) < 0) {
        log_error("SIGHUP: %s; keeping the certificate loaded before", error);
    } else {
        log_info("SIGHUP: audit log reopened, certificate and key reloaded");
    }
}

static int daemonize(void)
{
    pid_t pid = fork();

    if (pid < 0)
        return -1;
    if (pid > 0)
        _exit(0);
    if (setsid() < 0)
        return -1;
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid > 0)
        _exit(0);
    if (chdir("/") < 0)
        return -1;
    int fd = open("/dev/null", O_RDWR);
    if (fd < 0)
        return -1;
    dup2(fd, STDIN_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    if (fd > STDERR_FILENO)
        close(fd);
    return 0;
}

/*
 * Every session holds its socket, and once logged in the mailbox lock and
 * the Maildir's folder: three descriptors. The default soft limit (1024)
 * would stop a server at a few hundred sessions, so it is raised to what
 * max_connections needs, as far as the hard limit allows (root may raise
 * that too).
 */
static void raise_fd_limit(unsigned max_connections)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)max_connections * FDS_PER_SESSION + FDS_RESERVED;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_cur >= need)
        return;
    if (rl.rlim_max < need) {
        struct rlimit want = {need, need};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            return;
    }
    rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < need)
        log_warn("max_connections = %u needs about %llu file descriptors, but the limit is "
                 "%llu: raise it (LimitNOFILE= in systemd) or lower max_connections",
                 max_connections, (unsigned long long)need, (unsigned long long)rl.rlim_cur);
}

/*
 * App passwords (state_dir/app-passwords), TOTP replay memory
 * (state_dir/totp/) and the keys of bearer tokens. A JWKS that cannot be
 * loaded stops start-up: running without it would refuse every token
 * with no sign why.
 */
static int configure_auth(const struct config *cfg, struct auth *auth, struct auth_settings *set)
{
    const char *error;
    char *path = apppass_file_path(cfg->state_dir);
    char totp_dir[PATH_MAX];

    set->apppass = path != NULL ? apppass_open(path) : NULL;
    free(path);
    snprintf(totp_dir, sizeof(totp_dir), "%s/totp", cfg->state_dir);
    set->totp = totp_replay_new(totp_dir);
    if (set->apppass == NULL || set->totp == NULL) {
        log_error("%s: cannot set up app passwords or %s: %s",
                  config_where(cfg, "server", "state_dir"), totp_dir, strerror(errno));
        return -1;
    }
    if (cfg->oauth_jwks != NULL) {
        set->jwks = jwks_load(cfg->oauth_jwks, &error);
        if (set->jwks == NULL) {
            log_error("%s: %s", config_where(cfg, "oauth", "jwks"), error);
            return -1;
        }
        size_t skipped = 0;
        if (jwks_count(set->jwks, &skipped) > 0 && skipped > 0)
            log_warn("%s: %zu key%s of unsupported type or use skipped",
                     config_where(cfg, "oauth", "jwks"), skipped, skipped == 1 ? "" : "s");
        set->jwt_issuer = cfg->oauth_issuer;
        set->jwt_audience = cfg->oauth_audience;
        set->jwt_user_claim = cfg->oauth_user_claim;
    }
    auth_configure(auth, set);
    return 0;
}

struct tick_ctx {
    struct guard *guard;
    struct apppass *apppass;
};

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tick_ctx *t = arg;

    (void)fd;
    (void)what;
    guard_expire(t->guard, time(NULL));
    apppass_flush(t->apppass);
}

static unsigned cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL, *error;
    bool foreground = false;
    struct config cfg;
    struct metrics_http *metrics = NULL;
    char err[1024];
    int opt, status = 1;

    while ((opt = getopt(argc, argv, "c:fh")) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'f':
            foreground = true;
            break;
        default:
            usage();
            return opt == 'h' ? 0 : 2;
        }
    }
    if (config_path == NULL || optind != argc) {
        usage();
        return 2;
    }
    log_init("posternd", true);
    if (config_load(config_path, &cfg, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return 1;
    }
    if (cfg.idle_timeout < 600)
        log_warn("idle_timeout %u is below the 600 seconds RFC 1939 asks for", cfg.idle_timeout);
    /* Without -f, audit lines meant for stderr go to syslog instead. */
    if (audit_open(!foreground && strcmp(cfg.audit, "stderr") == 0 ? "syslog" : cfg.audit, &error) <
        0) {
        log_error("%s: %s", config_where(&cfg, "log", "audit"), error);
        goto out_config;
    }
    if (mkdir(cfg.state_dir, 0700) < 0 && errno != EEXIST) {
        log_error("%s: cannot create %s: %s", config_where(&cfg, "server", "state_dir"),
                  cfg.state_dir, strerror(errno));
        goto out_config;
    }
    if (store_lock_init(cfg.state_dir, &error) < 0) {
        log_error("%s: %s", config_where(&cfg, "server", "state_dir"), error);
        goto out_config;
    }
    unsigned bad = 0;
    struct passdb *db = passdb_open(cfg.passdb, cfg.dir, &bad, &error);
    if (db == NULL) {
        log_error("%s: %s", config_where(&cfg, "auth", "passdb"), error);
        goto out_config;
    }

    unsigned threads = cfg.threads > 0 ? cfg.threads : cpu_count();
    struct guard_settings gs = {
        .max_connections = cfg.max_connections,
        .max_connections_per_ip = cfg.max_connections_per_ip,
        .max_preauth_per_ip = cfg.max_preauth_per_ip,
        .failure_delay = cfg.failure_delay,
        .failure_delay_max = cfg.failure_delay_max,
        .ban_after = cfg.ban_after,
        .ban_window = cfg.ban_window,
        .ban_time = cfg.ban_time,
        .ipv6_prefix = cfg.ipv6_prefix,
        .account_failures = cfg.account_failures,
        .account_window = cfg.account_window,
        .login_delay = cfg.login_delay,
        .state_dir = cfg.state_dir,
        .alert_command = cfg.alert_command,
        .alert_window = cfg.alert_window,
        .spray_accounts = cfg.spray_accounts,
        .attack_ips = cfg.attack_ips,
        .download_messages = cfg.download_messages,
        .download_bytes = (uint64_t)cfg.download_mbytes << 20,
        .download_window = cfg.download_window,
        .mass_delete_messages = cfg.mass_delete_messages,
        .mass_delete_percent = cfg.mass_delete_percent,
    };
    if (cfg.trusted != NULL)
        guard_parse_trusted(cfg.trusted, &gs, &error); /* checked by config_load */
    struct guard *guard = guard_new(&gs);
    struct tls *tls = NULL;
    if (cfg.tls_cert != NULL) {
        struct tls_settings ts = {
            .cert = cfg.tls_cert,
            .key = cfg.tls_key,
            .ca = cfg.tls_ca,
            .min_version = cfg.tls_min_version,
            .ciphers = cfg.tls_ciphers,
            .ciphersuites = cfg.tls_ciphersuites,
        };
        tls = tls_new(&ts, &error);
        if (tls == NULL) {
            log_error("%s: %s", config_where(&cfg, "tls", "cert"), error);
            goto out_db;
        }
    } else if (cfg.require_tls) {
        log_warn("%s: yes, but there is no [tls]: only loopback clients can log in",
                 config_where(&cfg, "auth", "require_tls"));
    }
    struct net_settings ns = {
        .threads = threads,
        .login_timeout = cfg.login_timeout,
        .idle_timeout = cfg.idle_timeout,
        .max_line = cfg.max_line,
        .greeting = cfg.greeting,
        .apop = cfg.apop,
        .mail_location = cfg.location,
        .base_dir = cfg.dir,
        .guard = guard,
        .auth = NULL, /* given to server_start: the pool starts after fork */
        .tls = tls,
        .require_tls = cfg.require_tls,
        .allow_plaintext_loopback = cfg.allow_plaintext_loopback,
        .sasl_mechs = cfg.sasl_mechs,
        .max_auth_failures = cfg.max_auth_failures,
        .max_bad_commands = cfg.max_bad_commands,
        .login_delay = cfg.login_delay,
    };
    struct server *srv = guard != NULL ? server_new(&ns, &error) : NULL;
    if (srv == NULL) {
        log_error("%s", guard == NULL ? "out of memory" : error);
        goto out_db;
    }
    for (unsigned i = 0; i < cfg.n_listen; i++) {
        if (server_listen(srv, cfg.listen[i], false, &error) < 0) {
            log_error("%s: %s", config_where(&cfg, "server", "listen"), error);
            goto out_srv;
        }
    }
    for (unsigned i = 0; i < cfg.n_listen_tls; i++) {
        if (server_listen(srv, cfg.listen_tls[i], true, &error) < 0) {
            log_error("%s: %s", config_where(&cfg, "server", "listen_tls"), error);
            goto out_srv;
        }
    }
    if (cfg.metrics_listen != NULL &&
        (metrics = metrics_http_new(cfg.metrics_listen, &error)) == NULL) {
        log_error("%s: %s", config_where(&cfg, "metrics", "listen"), error);
        goto out_srv;
    }
    /* Fork before any thread exists; errors up to here reach the terminal. */
    if (!foreground) {
        if (daemonize() < 0) {
            log_error("cannot become a daemon: %s", strerror(errno));
            goto out_srv;
        }
        log_init("posternd", false);
    }
    signal(SIGPIPE, SIG_IGN);
    /* Messages leave through output chunks of 128 KiB and more. With
     * glibc's defaults a freed chunk at the top of a heap goes back to the
     * kernel and the next one faults its pages in again, and before that
     * each one is its own mmap: 5-9% of the server's CPU at RETR with 16
     * clients (make bench). Freed memory is kept for reuse instead, up to
     * 64 MiB per heap; allocations of 4 MiB and more are still mapped. */
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    /* alert_command's children are reaped by the kernel. */
    signal(SIGCHLD, SIG_IGN);
    raise_fd_limit(cfg.max_connections);

    struct auth_settings second = {0};
    struct pool *pool = pool_new(cpu_count(), &error);
    struct auth_cache *cache = NULL;
    if (cfg.auth_cache &&
        (cache = auth_cache_new(cfg.auth_cache_ttl, AUTH_CACHE_MAX_ENTRIES)) == NULL)
        log_warn("cannot create the authentication cache; running without it");
    struct auth *auth = pool != NULL ? auth_new(db, pool, cache) : NULL;
    struct event_base *base = event_base_new();
    if (pool == NULL || auth == NULL || base == NULL) {
        log_error("cannot start: %s", pool == NULL ? error : "out of memory");
        goto out_pool;
    }
    if (configure_auth(&cfg, auth, &second) < 0)
        goto out_pool;
    if (metrics != NULL && metrics_http_start(metrics, &error) < 0) {
        log_error("%s: %s", config_where(&cfg, "metrics", "listen"), error);
        goto out_pool;
    }
    if (server_start(srv, auth, pool, &error) < 0) {
        log_error("cannot start: %s", error);
        goto out_pool;
    }
    struct event *sigterm = evsignal_new(base, SIGTERM, stop_cb, base);
    struct event *sigint = evsignal_new(base, SIGINT, stop_cb, base);
    struct hup_ctx hup = {.tls = tls, .cfg = &cfg, .auth = auth, .second = &second};
    struct event *sighup = evsignal_new(base, SIGHUP, hup_cb, &hup);
    event_add(sigterm, NULL);
    event_add(sigint, NULL);
    event_add(sighup, NULL);
    /* Bans end, idle entries go and app password uses are written every
     * few seconds. */
    struct tick_ctx tick_ctx = {.guard = guard, .apppass = second.apppass};
    struct event *tick = event_new(base, -1, EV_PERSIST, tick_cb, &tick_ctx);
    struct timeval every = {5, 0};
    event_add(tick, &every);
    if (metrics != NULL)
        log_info("metrics: http://%s/metrics", cfg.metrics_listen);
    log_info("ready: %u I/O threads, %u listening sockets", threads,
             cfg.n_listen + cfg.n_listen_tls);
    event_base_dispatch(base);

    /* Sessions end without removing anything; then login jobs still in
     * the pool finish and are dropped by server_free. */
    metrics_http_free(&metrics);
    server_stop(srv);
    guard_save_known(guard);
    pool_destroy(&pool);
    apppass_flush(second.apppass);
    event_free(sigterm);
    event_free(sigint);
    event_free(sighup);
    event_free(tick);
    status = 0;

out_pool:
    if (base != NULL)
        event_base_free(base);
    auth_free(&auth);
    apppass_close(&second.apppass);
    totp_replay_free(second.totp);
    jwks_free(&second.jwks);
    pool_destroy(&pool);
    auth_cache_free(&cache);
out_srv:
    metrics_http_free(&metrics);
    server_free(&srv);
out_db:
    tls_free(&tls);
    guard_free(&guard);
    passdb_destroy(&db);
out_config:
    store_lock_deinit();
    audit_close();
    config_free(&cfg);
    return status;
}
