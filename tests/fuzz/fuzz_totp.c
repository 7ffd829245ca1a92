/*
 * TOTP secrets come from the passwd-file and codes from the network
 * (the tail of a password): neither may crash the auth side. The input
 * is "SECRET\nCODE". Checked: base32 decoding stays in bounds and
 * round-trips through the encoder, totp_verify accepts only 6 digits and
 * a step inside the window, and accepts the code the secret really gives.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/totp.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const time_t times[] = {0, 59, 1111111111, 20000000000};
    unsigned char key[TOTP_SECRET_MAX], again[TOTP_SECRET_MAX];
    char enc[TOTP_SECRET_MAX * 2];
    char *buf = malloc(size + 1);

    check(buf != NULL, "out of memory");
    memcpy(buf, data, size);
    buf[size] = '\0';

    int n = base32_decode(buf, size, key, sizeof(key));
    check(n >= -1 && n <= (int)sizeof(key), "decoded length out of range");
    if (n >= 0) {
        size_t e = base32_encode(key, (size_t)n, enc, sizeof(enc));
        check(e > 0 || n == 0, "encoder refused what fits");
        check(base32_decode(enc, e, again, sizeof(again)) == n, "round trip changed the length");
        check(memcmp(key, again, (size_t)n) == 0, "round trip changed the bytes");
    }

    char *nl = memchr(buf, '\n', size);
    const char *code = nl != NULL ? nl + 1 : "";
    size_t code_len = nl != NULL ? size - (size_t)(code - buf) : 0;
    if (nl != NULL)
        *nl = '\0';
    int keylen = base32_decode(buf, strlen(buf), key, sizeof(key));
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        uint64_t step = UINT64_MAX, now_step = (uint64_t)times[i] / TOTP_PERIOD;
        if (totp_verify(buf, code, code_len, times[i], &step)) {
            check(code_len == TOTP_DIGITS, "accepted a code that is not 6 characters");
            for (size_t j = 0; j < code_len; j++)
                check(code[j] >= '0' && code[j] <= '9', "accepted a non-digit");
            check(step + 1 >= now_step && step <= now_step + 1, "step outside the window");
        }
        if (keylen >= TOTP_SECRET_MIN) {
            char good[8];
            snprintf(good, sizeof(good), "%06u",
                     (unsigned)hotp(key, (size_t)keylen, now_step, TOTP_DIGITS));
            check(totp_verify(buf, good, TOTP_DIGITS, times[i], &step) && step >= now_step,
                  "the right code refused");
        }
    }
    size_t pw_len = 0;
    if (totp_split((const char *)data, size, &pw_len))
        check(pw_len > 0 && pw_len + TOTP_DIGITS == size, "bad split");
    free(buf);
    return 0;
}
