/* The PLAIN decoder and SASL names (src/pop3/sasl/plain.c) on any bytes:
 * no crash, and what they return stays inside the input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3/sasl/sasl.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes: ASan sees any read past the end. */
    char *in = malloc(size ? size : 1);
    struct sasl_plain p;
    const char *error;
    char name[SASL_USER_MAX + 1];

    check(in != NULL, "out of memory");
    memcpy(in, data, size);
    if (sasl_plain_decode(in, size, &p, &error) == 0) {
        check(p.authcid >= in && p.authcid + p.authcid_len <= in + size, "authcid outside");
        check(p.passwd >= in && p.passwd + p.passwd_len == in + size, "passwd not the rest");
        check(p.authcid_len > 0 && p.passwd_len > 0, "empty part accepted");
        check(memchr(p.authcid, '/', p.authcid_len) == NULL, "'/' in a user name");
    }
    if (sasl_name_decode(in, size, name, sizeof(name), &error) == 0)
        check(strlen(name) <= size && strchr(name, '/') == NULL, "bad decoded name");
    free(in);
    return 0;
}
