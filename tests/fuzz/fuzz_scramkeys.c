/*
 * SCRAM keys as stored (scram_keys_parse) and base64 (b64_decode), which
 * the SASL code also runs on what clients send. Whatever is accepted must
 * be in range and come back the same through the encoders: the decoder
 * accepts one encoding per byte string.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/scram.h"
#include "fuzz.h"

static void fuzz_b64(const char *in, size_t len)
{
    size_t room = len / 4 * 3;
    unsigned char *out = malloc(room + 1);
    char *again = malloc(len + 1);

    check(out != NULL && again != NULL, "out of memory");
    int n = b64_decode(in, len, out, room);
    if (n >= 0) {
        check(len % 4 == 0 && (size_t)n <= room && (size_t)n + 2 >= room, "bad length");
        check(b64_encode(out, (size_t)n, again, len + 1) == len, "encoded length differs");
        check(memcmp(in, again, len) == 0, "two encodings for one byte string");
        /* One byte too little room is refused. */
        if (n > 0)
            check(b64_decode(in, len, out, (size_t)n - 1) == -1, "wrote past the room");
    }
    free(out);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    struct scram_keys k;
    const char *error = NULL;

    check(s != NULL, "out of memory");
    memcpy(s, data, size);
    s[size] = '\0';
    fuzz_b64(s, size);
    if (scram_keys_parse(s, &k, &error) == 0) {
        char out[256];
        struct scram_keys again;
        check(k.iter >= SCRAM_ITER_MIN && k.iter <= INT_MAX, "iteration count out of range");
        check(k.salt_len >= 1 && k.salt_len <= SCRAM_SALT_MAX, "salt length out of range");
        check(scram_keys_format(&k, out, sizeof(out)) == 0, "cannot format parsed keys");
        check(scram_keys_parse(out, &again, &error) == 0, "formatted keys do not parse");
        check(memcmp(&k, &again, sizeof(k)) == 0, "round trip changed the keys");
        /* A proof check on any keys must not crash (the outcome is chance). */
        unsigned char proof[SCRAM_KEY_LEN] = {0}, sig[SCRAM_KEY_LEN];
        (void)scram_verify_proof(&k, s, size, proof, sig);
    } else {
        check(error != NULL && error[0] != '\0', "refused without a reason");
    }
    free(s);
    return 0;
}
