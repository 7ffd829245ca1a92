/* The SCRAM message decoders (src/pop3/sasl/scram.c) on any bytes. */
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
    struct scram_client_first cf;
    struct scram_client_final fin;
    const char *error;

    check(in != NULL, "out of memory");
    memcpy(in, data, size);
    if (scram_client_first_decode(in, size, &cf, &error) == 0) {
        check(cf.gs2_len + cf.bare_len == size, "gs2 header and bare do not make the message");
        check(cf.nonce >= cf.bare && cf.nonce + cf.nonce_len <= in + size, "nonce outside");
        check(cf.user[0] != '\0', "empty user accepted");
    }
    if (scram_client_final_decode(in, size, &fin, &error) == 0) {
        check(fin.without_proof_len < size, "proof not inside");
        check(fin.nonce + fin.nonce_len <= in + fin.without_proof_len, "nonce after the proof");
    }
    free(in);
    return 0;
}
