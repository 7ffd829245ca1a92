/*
 * SCRAM-SHA-256 secrets (src/auth/scram.c): the RFC 7677 example, proofs
 * refused, Dovecot's stored format both ways, and base64 (RFC 4648).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "auth/scram.h"

/* RFC 7677 section 3. The server nonce is the RFC's
 * "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0". */
#define RFC_SALT   "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_NONCE  "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_CFB    "n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_SF     "r=" RFC_NONCE ",s=" RFC_SALT ",i=4096"
#define RFC_CFWP   "c=biws,r=" RFC_NONCE
#define RFC_AUTH   RFC_CFB "," RFC_SF "," RFC_CFWP
#define RFC_PROOF  "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
/* The keys behind it (computed with Python's hashlib and hmac). */
#define RFC_STORED_KEY "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
#define RFC_SERVER_KEY "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
#define RFC_STRING     "4096," RFC_SALT "," RFC_STORED_KEY "," RFC_SERVER_KEY

static void decode_exact(const char *b64, unsigned char *out, size_t want)
{
    assert_int_equal(b64_decode(b64, strlen(b64), out, want), (int)want);
}

static void rfc_keys(struct scram_keys *k)
{
    unsigned char salt[16];

    decode_exact(RFC_SALT, salt, sizeof(salt));
    assert_int_equal(scram_keys_derive("pencil", 6, salt, sizeof(salt), 4096, k), 0);
}

static void test_rfc7677_keys(void **state)
{
    struct scram_keys k;
    unsigned char want[SCRAM_KEY_LEN];
    char out[256];

    (void)state;
    rfc_keys(&k);
    assert_int_equal(k.iter, 4096);
    assert_int_equal(k.salt_len, 16);
    decode_exact(RFC_STORED_KEY, want, sizeof(want));
    assert_memory_equal(k.stored_key, want, SCRAM_KEY_LEN);
    decode_exact(RFC_SERVER_KEY, want, sizeof(want));
    assert_memory_equal(k.server_key, want, SCRAM_KEY_LEN);
    assert_int_equal(scram_keys_format(&k, out, sizeof(out)), 0);
    assert_string_equal(out, "{SCRAM-SHA-256}" RFC_STRING);
}

static void test_rfc7677_proof(void **state)
{
    struct scram_keys k;
    unsigned char proof[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], want[SCRAM_KEY_LEN];
    const char *am = RFC_AUTH;

    (void)state;
    rfc_keys(&k);
    decode_exact(RFC_PROOF, proof, sizeof(proof));
    decode_exact(RFC_SERVER, want, sizeof(want));
    memset(sig, 0xaa, sizeof(sig));
    assert_true(scram_verify_proof(&k, am, strlen(am), proof, sig));
    assert_memory_equal(sig, want, SCRAM_KEY_LEN);

    /* The same from keys read back from the stored string. */
    struct scram_keys parsed;
    const char *error = NULL;
    assert_int_equal(scram_keys_parse(RFC_STRING, &parsed, &error), 0);
    memset(sig, 0, sizeof(sig));
    assert_true(scram_verify_proof(&parsed, am, strlen(am), proof, sig));
    assert_memory_equal(sig, want, SCRAM_KEY_LEN);
}

static void test_wrong_proof_refused(void **state)
{
    struct scram_keys k;
    unsigned char proof[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], zero[SCRAM_KEY_LEN] = {0};
    const char *am = RFC_AUTH;

    (void)state;
    rfc_keys(&k);
    decode_exact(RFC_PROOF, proof, sizeof(proof));
    /* Any changed bit of the proof. */
    for (size_t i = 0; i < SCRAM_KEY_LEN * 8; i += 37) {
        proof[i / 8] ^= (unsigned char)(1u << (i % 8));
        memset(sig, 0xaa, sizeof(sig));
        assert_false(scram_verify_proof(&k, am, strlen(am), proof, sig));
        assert_memory_equal(sig, zero, SCRAM_KEY_LEN); /* nothing to show a client */
        proof[i / 8] ^= (unsigned char)(1u << (i % 8));
    }
    /* The right proof for another exchange (nonce changed). */
    char other[sizeof(RFC_AUTH)];
    memcpy(other, RFC_AUTH, sizeof(other));
    other[sizeof(other) - 2] ^= 1;
    assert_false(scram_verify_proof(&k, other, strlen(other), proof, sig));
    /* A shorter AuthMessage. */
    assert_false(scram_verify_proof(&k, am, strlen(am) - 1, proof, sig));
    /* Other keys (another password). */
    struct scram_keys k2;
    assert_int_equal(scram_keys_derive("pencil2", 7, k.salt, k.salt_len, 4096, &k2), 0);
    assert_false(scram_verify_proof(&k2, am, strlen(am), proof, sig));
    assert_true(scram_verify_proof(&k, am, strlen(am), proof, sig));
}

static void test_verify_password(void **state)
{
    struct scram_keys k;

    (void)state;
    rfc_keys(&k);
    assert_true(scram_verify_password(&k, "pencil", 6));
    assert_true(scram_verify_password(&k, "pencil and more", 6)); /* the length counts */
    assert_false(scram_verify_password(&k, "pencil", 5));
    assert_false(scram_verify_password(&k, "Pencil", 6));
    /* HMAC would take it for "pencil" (zero-padded key); refused. */
    assert_false(scram_verify_password(&k, "pencil\0", 7));
    assert_false(scram_verify_password(&k, "", 0));
    /* Same password, other salt or count: other keys. */
    struct scram_keys k2 = k;
    k2.iter = 4097;
    assert_false(scram_verify_password(&k2, "pencil", 6));
    k2 = k;
    k2.salt[0] ^= 1;
    assert_false(scram_verify_password(&k2, "pencil", 6));
}

static void test_make(void **state)
{
    struct scram_keys a, b;
    char sa[256], sb[256];
    const char *error = NULL;

    (void)state;
    assert_int_equal(scram_keys_make("correct horse battery", 21, 10000, &a), 0);
    assert_int_equal(scram_keys_make("correct horse battery", 21, 10000, &b), 0);
    assert_int_equal(a.iter, 10000);
    assert_int_equal(a.salt_len, 16);
    /* A fresh salt each time. */
    assert_memory_not_equal(a.salt, b.salt, 16);
    assert_memory_not_equal(a.stored_key, b.stored_key, SCRAM_KEY_LEN);
    assert_true(scram_verify_password(&a, "correct horse battery", 21));
    assert_true(scram_verify_password(&b, "correct horse battery", 21));
    assert_false(scram_verify_password(&a, "correct horse batterY", 21));
    assert_int_equal(scram_keys_format(&a, sa, sizeof(sa)), 0);
    assert_int_equal(scram_keys_format(&b, sb, sizeof(sb)), 0);
    assert_string_not_equal(sa, sb);
    assert_memory_equal(sa, "{SCRAM-SHA-256}10000,", 21);

    /* Refused inputs. */
    unsigned char salt[SCRAM_SALT_MAX + 1] = {1};
    assert_int_equal(scram_keys_derive("pw", 2, salt, 0, 4096, &a), -1);
    assert_int_equal(scram_keys_derive("pw", 2, salt, SCRAM_SALT_MAX + 1, 4096, &a), -1);
    assert_int_equal(scram_keys_derive("pw", 2, salt, 16, 0, &a), -1);
    assert_int_equal(scram_keys_derive("pw", 2, salt, SCRAM_SALT_MAX, 1, &a), 0);
    (void)error;
}

static void test_parse_format_round_trip(void **state)
{
    struct scram_keys k, again;
    char out[256], out2[256];
    const char *error = NULL;

    (void)state;
    /* Without and with the scheme prefix (any case), as Dovecot names it. */
    assert_int_equal(scram_keys_parse(RFC_STRING, &k, &error), 0);
    assert_int_equal(k.iter, 4096);
    assert_int_equal(k.salt_len, 16);
    assert_int_equal(scram_keys_format(&k, out, sizeof(out)), 0);
    assert_string_equal(out, "{SCRAM-SHA-256}" RFC_STRING);
    assert_int_equal(scram_keys_parse(out, &again, &error), 0);
    assert_memory_equal(&k, &again, sizeof(k));
    assert_int_equal(scram_keys_parse("{scram-sha-256}" RFC_STRING, &again, &error), 0);
    assert_memory_equal(&k, &again, sizeof(k));

    /* A salt of the largest size, and of one byte. */
    unsigned char salt[SCRAM_SALT_MAX];
    for (size_t i = 0; i < sizeof(salt); i++)
        salt[i] = (unsigned char)(i * 7 + 3);
    for (size_t len = 1; len <= SCRAM_SALT_MAX; len += SCRAM_SALT_MAX - 1) {
        assert_int_equal(scram_keys_derive("pw", 2, salt, len, 2147483647u / 1000, &k), 0);
        assert_int_equal(scram_keys_format(&k, out, sizeof(out)), 0);
        assert_int_equal(scram_keys_parse(out, &again, &error), 0);
        assert_memory_equal(&k, &again, sizeof(k));
        assert_int_equal(scram_keys_format(&again, out2, sizeof(out2)), 0);
        assert_string_equal(out, out2);
    }

    /* Too small a buffer. */
    assert_int_equal(scram_keys_parse(RFC_STRING, &k, &error), 0);
    size_t need = strlen("{SCRAM-SHA-256}" RFC_STRING);
    assert_int_equal(scram_keys_format(&k, out, need), -1);
    assert_int_equal(scram_keys_format(&k, out, need + 1), 0);
}

static void test_parse_malformed(void **state)
{
    static const struct {
        const char *s;
        const char *error;
    } cases[] = {
        {"", "4 comma-separated"},
        {"4096", "4 comma-separated"},
        {"4096," RFC_SALT "," RFC_STORED_KEY, "4 comma-separated"},
        {RFC_STRING ",", "4 comma-separated"},
        {RFC_STRING ",extra", "4 comma-separated"},
        {"{SCRAM-SHA-1}" RFC_STRING, "iteration count"},
        {"4095," RFC_SALT "," RFC_STORED_KEY "," RFC_SERVER_KEY, "iteration count"},
        {"0," RFC_SALT "," RFC_STORED_KEY "," RFC_SERVER_KEY, "iteration count"},
        {"-4096," RFC_SALT "," RFC_STORED_KEY "," RFC_SERVER_KEY, "iteration count"},
        {"+4096," RFC_SALT "," RFC_STORED_KEY "," RFC_SERVER_KEY, "iteration count"},
        {" 4096," RFC_SALT "," RFC_STORED_KEY "," RFC_SERVER_KEY, "iteration count"},
        {"4096x," RFC_SALT "," RFC_STORED_KEY "," RFC_SERVER_KEY, "iteration count"},
        {"2147483648," RFC_SALT "," RFC_STORED_KEY "," RFC_SERVER_KEY, "iteration count"},
        {"99999999999999999999," RFC_SALT "," RFC_STORED_KEY "," RFC_SERVER_KEY, "iteration count"},
        {"," RFC_SALT "," RFC_STORED_KEY "," RFC_SERVER_KEY, "iteration count"},
        {"4096,," RFC_STORED_KEY "," RFC_SERVER_KEY, "salt"},
        {"4096,W22ZaJ0SNY7soEsUEjb6gQ=," RFC_STORED_KEY "," RFC_SERVER_KEY, "salt"},
        {"4096,W22ZaJ0SNY7soEsUEjb6gQ," RFC_STORED_KEY "," RFC_SERVER_KEY, "salt"},
        {"4096,W22ZaJ0SNY7soEsUEjb6g!==," RFC_STORED_KEY "," RFC_SERVER_KEY, "salt"},
        /* 66 bytes of salt: more than SCRAM_SALT_MAX. */
        {"4096,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
         "AAAAAAAA," RFC_STORED_KEY "," RFC_SERVER_KEY,
         "salt"},
        {"4096," RFC_SALT ",," RFC_SERVER_KEY, "StoredKey"},
        /* 31 and 33 bytes. */
        {"4096," RFC_SALT ",WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4g==," RFC_SERVER_KEY,
         "StoredKey"},
        {"4096," RFC_SALT ",WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qYA," RFC_SERVER_KEY,
         "StoredKey"},
        {"4096," RFC_SALT ",WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY," RFC_SERVER_KEY,
         "StoredKey"},
        {"4096," RFC_SALT "," RFC_STORED_KEY ",", "ServerKey"},
        {"4096," RFC_SALT "," RFC_STORED_KEY ",wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU= ",
         "ServerKey"},
        {"4096," RFC_SALT "," RFC_STORED_KEY ",wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dV=",
         "ServerKey"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct scram_keys k;
        const char *error = NULL;
        int r = scram_keys_parse(cases[i].s, &k, &error);
        if (r != -1 || error == NULL || strstr(error, cases[i].error) == NULL)
            print_error("case %zu \"%s\": %d %s\n", i, cases[i].s, r,
                        error != NULL ? error : "(no error)");
        assert_int_equal(r, -1);
        assert_non_null(strstr(error, cases[i].error));
    }
}

/* RFC 4648 section 10. */
static void test_base64_vectors(void **state)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const enc[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    char out[16];
    unsigned char bytes[16];

    (void)state;
    for (size_t i = 0; i < 7; i++) {
        size_t len = strlen(plain[i]);
        assert_int_equal(b64_encode((const unsigned char *)plain[i], len, out, sizeof(out)),
                         strlen(enc[i]));
        assert_string_equal(out, enc[i]);
        assert_int_equal(b64_decode(enc[i], strlen(enc[i]), bytes, sizeof(bytes)), (int)len);
        assert_memory_equal(bytes, plain[i], len);
        /* Exactly enough room works; one byte less does not. */
        if (len > 0) {
            assert_int_equal(b64_decode(enc[i], strlen(enc[i]), bytes, len), (int)len);
            assert_int_equal(b64_decode(enc[i], strlen(enc[i]), bytes, len - 1), -1);
        }
        assert_int_equal(b64_encode((const unsigned char *)plain[i], len, out, strlen(enc[i])), 0);
    }
    /* Every byte value, through the whole alphabet. */
    unsigned char all[256], back[256];
    char wide[400];
    for (int i = 0; i < 256; i++)
        all[i] = (unsigned char)i;
    size_t n = b64_encode(all, sizeof(all), wide, sizeof(wide));
    assert_int_equal(n, 344);
    assert_memory_equal(wide, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4v",
                        64);
    assert_memory_equal(wide + 336, "/P3+/w==", 8);
    assert_int_equal(b64_decode(wide, n, back, sizeof(back)), 256);
    assert_memory_equal(all, back, 256);
}

static void test_base64_invalid(void **state)
{
    static const char *const bad[] = {
        "Zg",       "Zg=",  "Zm9",       "Z",        "Z===",  "====", "Zg=a",
        "Zh==",     "Zm9=", "Zm 9v",     "Zm9v\n",   " Zm9v", "=Zm9", "Zg==Zg==",
        "Zm9v====", "Zm-_", "Zm9v\0AAA", "Zm8=Zm9v", "Zm=v",  "Z=9v",
    };
    unsigned char out[16];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = strlen(bad[i]);
        if (i == 16)
            len = 8; /* includes the NUL */
        if (b64_decode(bad[i], len, out, sizeof(out)) != -1)
            print_error("accepted \"%s\"\n", bad[i]);
        assert_int_equal(b64_decode(bad[i], len, out, sizeof(out)), -1);
    }
    /* No room at all. */
    assert_int_equal(b64_decode("Zm9v", 4, out, 0), -1);
    assert_int_equal(b64_decode("", 0, out, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7677_keys),
        cmocka_unit_test(test_rfc7677_proof),
        cmocka_unit_test(test_wrong_proof_refused),
        cmocka_unit_test(test_verify_password),
        cmocka_unit_test(test_make),
        cmocka_unit_test(test_parse_format_round_trip),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_base64_vectors),
        cmocka_unit_test(test_base64_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
