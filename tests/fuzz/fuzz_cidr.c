/* The [guard] trusted list and its CIDRs (src/guard/ratelimit.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct guard_settings set;
    struct guard_cidr c;
    const char *error;
    char *s = malloc(size + 1);

    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (guard_parse_cidr(s, size, &c) == 0 && c.bits > 128)
        abort();
    memset(&set, 0, sizeof(set));
    if (guard_parse_trusted(s, &set, &error) == 0 && set.n_trusted > GUARD_MAX_TRUSTED)
        abort();
    free(s);
    return 0;
}
