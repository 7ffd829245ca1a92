/*
 * The configuration loader on arbitrary files: a bad file is refused with
 * a message that names the file, a good one gives every required value.
 * The data is written to a fixed file under /tmp (one per process).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/config.h"
#include "fuzz.h"

static char path[64];

static void cleanup(void)
{
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config cfg;
    char err[1024];

    if (path[0] == '\0') {
        snprintf(path, sizeof(path), "/tmp/postern-fuzz-config-%ld.conf", (long)getpid());
        atexit(cleanup);
    }
    FILE *f = fopen(path, "w");
    check(f != NULL, "cannot write the temporary file");
    check(fwrite(data, 1, size, f) == size, "cannot write the temporary file");
    check(fclose(f) == 0, "cannot write the temporary file");

    err[0] = '\0';
    if (config_load(path, &cfg, err, sizeof(err)) == 0) {
        check(cfg.path != NULL && cfg.dir != NULL, "no path");
        check(cfg.n_listen + cfg.n_listen_tls >= 1 && cfg.n_listen <= MAX_LISTEN &&
                  cfg.n_listen_tls <= MAX_LISTEN,
              "listen count");
        for (unsigned i = 0; i < cfg.n_listen_tls; i++)
            check(cfg.listen_tls[i] != NULL && strchr(cfg.listen_tls[i], ':') != NULL,
                  "bad listen_tls");
        check((cfg.tls_cert == NULL) == (cfg.tls_key == NULL), "cert without key");
        for (unsigned i = 0; i < cfg.n_listen; i++)
            check(cfg.listen[i] != NULL && strchr(cfg.listen[i], ':') != NULL, "bad listen");
        check(cfg.passdb != NULL && cfg.passdb[0] != '\0', "no passdb");
        check(cfg.location != NULL && cfg.location[0] != '\0', "no location");
        check(cfg.greeting != NULL && strlen(cfg.greeting) <= MAX_GREETING, "bad greeting");
        check(strpbrk(cfg.greeting, "\r\n") == NULL, "line end in the greeting");
        check(cfg.threads <= MAX_THREADS, "threads out of range");
        check(cfg.max_line >= MIN_MAX_LINE && cfg.max_line <= MAX_MAX_LINE, "max_line range");
        check(cfg.login_timeout >= 1 && cfg.idle_timeout >= 1, "timeouts");
        check(cfg.state_dir != NULL && cfg.state_dir[0] == '/', "state_dir not absolute");
        check(cfg.audit != NULL && (cfg.audit[0] == '/' || strcmp(cfg.audit, "stderr") == 0 ||
                                    strcmp(cfg.audit, "syslog") == 0),
              "bad audit");
        config_free(&cfg);
    } else {
        /* "FILE: ..." or "FILE:LINE: ..." with the absolute path. */
        check(strncmp(err, "/tmp/", 5) == 0 && strstr(err, ".conf:") != NULL,
              "error does not name the file");
        check(cfg.path == NULL, "not freed after an error");
    }
    return 0;
}
