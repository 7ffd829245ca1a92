/* What the fuzz targets share. */
#ifndef POSTERN_FUZZ_H
#define POSTERN_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/passdb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken invariant aborts, so that libFuzzer keeps the input. */
#define check(ok, what) fuzz_check((ok), (what), __FILE__)

static inline void fuzz_check(bool ok, const char *what, const char *file)
{
    if (!ok) {
        fprintf(stderr, "%s: %s\n", file, what);
        abort();
    }
}

/* p points into buf (its terminating NUL included). */
static inline bool inside(const char *p, const char *buf, size_t size)
{
    return p >= buf && p <= buf + size;
}

/* A user name a passwd-style parser accepted, as DESIGN.md allows them. */
static inline void check_user_name(const char *user)
{
    size_t len = strlen(user);

    check(len > 0 && len <= PASSDB_USER_MAX, "bad user name length");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)user[i];
        check(c > 0x20 && c != 0x7f && c != '/' && c != ':', "bad user name byte");
    }
}

#endif
