/*
 * `postern deliver NAME < message`: Maildir delivery as Postfix does it.
 * The message is written to tmp/ under a unique name, fsynced, renamed
 * into new/, and new/ is fsynced: once this exits 0 the message survives
 * a crash, and a reader never sees half a message. The final name carries
 * ",S=<size>,W=<wire size>" so the server knows the size without reading.
 * Exit codes follow sysexits(3) for use from an MTA.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "auth/passdb.h"
#include "auth/jwt.h"
#include "cli/cli.h"
#include "lib/log.h"
#include "net/tls.h"
#include "store/store.h"
#include "lib/fsync.h"

/* The host part of a Maildir name, with '/' and ':' encoded as the
 * Maildir specification asks. */
static void maildir_host(char *out, size_t size)
{
    char host[256];
    size_t o = 0;

    if (gethostname(host, sizeof(host) - 1) < 0)
        strcpy(host, "localhost");
    host[sizeof(host) - 1] = '\0';
    for (const char *h = host; *h != '\0' && o + 5 < size; h++) {
        if (*h == '/')
            o += (size_t)snprintf(out + o, size - o, "\\057");
        else if (*h == ':')
            o += (size_t)snprintf(out + o, size - o, "\\072");
        else
            out[o++] = *h;
    }
    out[o] = '\0';
}

int cmd_deliver(const struct config *cfg, int argc, char **argv)
{
    const char *error;
    struct passdb_entry entry;
    unsigned bad;

    if (argc != 1) {
        cli_error("usage: postern deliver NAME < message");
        return EXIT_USAGE;
    }
    /* An MTA's delivery log is no place for passwd-file warnings; they
     * belong to `postern check` and the server's start-up. */
    log_set_level(LOG_LEVEL_ERROR);
    struct passdb *db = passdb_open(cfg->passdb, cfg->dir, &bad, &error);
    if (db == NULL) {
        cli_error("%s: %s", config_where(cfg, "auth", "passdb"), error);
        return EXIT_TEMPFAIL;
    }
    int found = passdb_lookup(db, argv[0], &entry, &error);
    passdb_destroy(&db);
    if (found <= 0) {
        cli_error("no user %s", argv[0]);
        return found < 0 ? EXIT_TEMPFAIL : EXIT_NOUSER;
    }
    explicit_bzero(entry.hash, sizeof(entry.hash));
    const char *location = entry.mail[0] != '\0' ? entry.mail : cfg->location;
    char *path = store_location_expand(location, cfg->dir, entry.user, entry.home, &error);
    if (path == NULL) {
        cli_error("mail location for %s: %s", entry.user, error);
        return EXIT_CONFIG;
    }
    if (maildir_create(path, &error) < 0) {
        cli_error("%s", error);
        free(path);
        return EXIT_CANTCREAT;
    }

    char host[256], base[512], tmp_path[4800], new_path[4800];
    struct timeval tv;
    int fd = -1;
    maildir_host(host, sizeof(host));
    for (int attempt = 0; attempt < 20 && fd < 0; attempt++) {
        gettimeofday(&tv, NULL);
        snprintf(base, sizeof(base), "%lld.M%06ldP%dQ%d.%s", (long long)tv.tv_sec, (long)tv.tv_usec,
                 (int)getpid(), attempt, host);
        snprintf(tmp_path, sizeof(tmp_path), "%s/tmp/%s", path, base);
        fd = open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        cli_error("cannot create %s: %s", tmp_path, strerror(errno));
        free(path);
        return EXIT_TEMPFAIL;
    }

    struct wire_counter wc;
    uint64_t size = 0;
    char buf[65536];
    ssize_t n;
    wire_counter_init(&wc);
    while ((n = read(STDIN_FILENO, buf, sizeof(buf))) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto io_error;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                goto io_error;
            off += w;
        }
        wire_counter_add(&wc, buf, (size_t)n);
        size += (uint64_t)n;
    }
    if (fsync(fd) < 0)
        goto io_error;
    close(fd);
    fd = -1;
    snprintf(new_path, sizeof(new_path), "%s/new/%s,S=%llu,W=%llu", path, base,
             (unsigned long long)size, (unsigned long long)wire_counter_finish(&wc));
    if (rename(tmp_path, new_path) < 0)
        goto io_error;
    snprintf(buf, sizeof(buf), "%s/new", path);
    if (fsync_dir(buf) < 0)
        goto io_error;
    free(path);
    return 0;

io_error:
    cli_error("delivery to %s failed: %s", argv[0], strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(tmp_path);
    free(path);
    return EXIT_TEMPFAIL;
}

int cmd_check(const struct config *cfg, const char *path)
{
    const char *error;
    unsigned bad = 0;
    int ret = 0;

    struct passdb *db = passdb_open(cfg->passdb, cfg->dir, &bad, &error);
    if (db == NULL) {
        cli_error("%s: %s", config_where(cfg, "auth", "passdb"), error);
        return EXIT_CONFIG;
    }
    passdb_destroy(&db);
    if (bad > 0) {
        cli_error("%s: %u bad line%s in the passwd-file (see above)", path, bad,
                  bad == 1 ? "" : "s");
        ret = EXIT_CONFIG;
    }
    char *mail =
        store_location_expand(cfg->location, cfg->dir, "user@example.org", "/home/user", &error);
    if (mail == NULL) {
        cli_error("%s: %s", config_where(cfg, "mail", "location"), error);
        ret = EXIT_CONFIG;
    }
    free(mail);
    if (cfg->tls_cert != NULL) {
        struct tls_settings ts = {
            .cert = cfg->tls_cert,
            .key = cfg->tls_key,
            .ca = cfg->tls_ca,
            .min_version = cfg->tls_min_version,
            .ciphers = cfg->tls_ciphers,
            .ciphersuites = cfg->tls_ciphersuites,
        };
        struct tls *tls = tls_new(&ts, &error);
        if (tls == NULL) {
            cli_error("%s: %s", config_where(cfg, "tls", "cert"), error);
            ret = EXIT_CONFIG;
        }
        tls_free(&tls);
    }
    /* The keys the server would load for bearer tokens. */
    if (cfg->oauth_jwks != NULL) {
        struct jwks *keys = jwks_load(cfg->oauth_jwks, &error);
        size_t skipped = 0;
        if (keys == NULL) {
            cli_error("%s: %s", config_where(cfg, "oauth", "jwks"), error);
            ret = EXIT_CONFIG;
        } else if (jwks_count(keys, &skipped) > 0 && skipped > 0) {
            cli_error("%s: %zu key%s of unsupported type or use skipped",
                      config_where(cfg, "oauth", "jwks"), skipped, skipped == 1 ? "" : "s");
        }
        jwks_free(&keys);
    }
    if (ret == 0)
        printf("%s: OK\n", cfg->path);
    return ret;
}
