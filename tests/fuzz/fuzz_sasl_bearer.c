/* The OAUTHBEARER and XOAUTH2 decoders (src/pop3/sasl/oauthbearer.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3/sasl/sasl.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exactly size bytes: ASan sees any read past the end. */
    char *in = malloc(size ? size : 1);
    struct sasl_bearer b;
    const char *error;

    check(in != NULL, "out of memory");
    memcpy(in, data, size);
    for (int x = 0; x < 2; x++) {
        int r = x ? sasl_xoauth2_decode(in, size, &b, &error)
                  : sasl_oauthbearer_decode(in, size, &b, &error);
        if (r == 0) {
            check(b.token >= in && b.token + b.token_len <= in + size, "token outside");
            check(b.token_len > 0, "empty token");
            check(!x || b.user[0] != '\0', "XOAUTH2 without user");
        }
    }
    free(in);
    return 0;
}
