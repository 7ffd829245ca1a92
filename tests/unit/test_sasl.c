/*
 * AUTH (RFC 5034) through the session's face, and the SASL decoders of
 * src/pop3/sasl/. The verification behind io->auth is scripted: these
 * tests check what the session asks and what it tells the client.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/base64.h"
#include "session_fx.h"
#include "pop3/sasl/sasl.h"

#define LOGIN_REPLY "+OK Logged in, 1 message (8 octets)\r\n"
#define ALL_MECHS   0xfcu

static int fx_new(void **state, bool require_tls, bool secure)
{
    struct fx *f = fx_alloc();

    f->io.random_byte = 0x40;
    mock_mailbox_add_str(f->mm, "u1", "x\r\n\r\ny\r\n");
    f->set.require_tls = require_tls;
    f->set.secure = secure;
    f->set.sasl_mechs = ALL_MECHS;
    return fx_start(state, f);
}

static int setup(void **state)
{
    return fx_new(state, false, false);
}

static int setup_tls_required(void **state)
{
    return fx_new(state, true, false);
}

/* The base64 of len bytes, in a static buffer. */
static const char *b64(const void *data, size_t len)
{
    static char out[4096];

    assert_true(len == 0 || b64_encode(data, len, out, sizeof(out)) > 0);
    if (len == 0)
        out[0] = '\0';
    return out;
}

/* Sends "AUTH MECH base64(data)". */
static void auth_ir(struct fx *f, const char *mech, const void *data, size_t len)
{
    char line[4200];

    snprintf(line, sizeof(line), "AUTH %s %s", mech, b64(data, len));
    cmd(f, line);
}

/* The same with a string literal, which may hold NULs and ^As. */
#define AUTH_IR_LIT(f, mech, lit) auth_ir(f, mech, lit, sizeof(lit) - 1)

/* The decoded text of a "+ base64" challenge that must be all the output. */
static const char *challenge(struct fx *f)
{
    static char text[1024];

    assert_true(f->io.out_len >= 4);
    assert_memory_equal(f->io.out, "+ ", 2);
    size_t len = f->io.out_len - 4;
    assert_memory_equal(f->io.out + 2 + len, "\r\n", 2);
    int n = b64_decode(f->io.out + 2, len, (unsigned char *)text, sizeof(text) - 1);
    assert_true(n >= 0);
    text[n] = '\0';
    mock_io_clear(&f->io);
    return text;
}

static void login_ok(struct fx *f)
{
    pop3_session_auth_done(f->s, POP3_AUTH_OK, mock_mailbox_box(f->mm));
    expect(f, LOGIN_REPLY);
    assert_int_equal(pop3_session_state(f->s), POP3_STATE_TRANSACTION);
}

/* --- CAPA and the mechanism list --- */

static void test_capa_lists_mechanisms(void **state)
{
    struct fx *f = *state;

    cmd(f, "CAPA");
    assert_non_null(
        strstr(f->io.out, "\r\nSASL PLAIN LOGIN SCRAM-SHA-256 OAUTHBEARER XOAUTH2\r\n"));
    mock_io_clear(&f->io);
    /* On TLS 1.3 the channel-bound variant joins. */
    f->io.cb_available = true;
    cmd(f, "CAPA");
    assert_non_null(
        strstr(f->io.out,
               "\r\nSASL PLAIN LOGIN SCRAM-SHA-256 SCRAM-SHA-256-PLUS OAUTHBEARER XOAUTH2\r\n"));
    mock_io_clear(&f->io);
}

static void test_capa_follows_configuration(void **state)
{
    struct fx *f = *state;

    pop3_session_destroy(&f->s);
    f->set.sasl_mechs = POP3_MECH_BIT(POP3_MECH_PLAIN) | POP3_MECH_BIT(POP3_MECH_SCRAM);
    f->s = pop3_session_new(&f->set, &f->io.io, &f->io);
    cmd(f, "CAPA");
    assert_non_null(strstr(f->io.out, "\r\nSASL PLAIN SCRAM-SHA-256\r\n"));
    mock_io_clear(&f->io);
    expect_cmd(f, "AUTH LOGIN", "-ERR Unsupported authentication mechanism\r\n");
    /* No mechanism at all: no SASL line. */
    pop3_session_destroy(&f->s);
    f->set.sasl_mechs = 0;
    f->s = pop3_session_new(&f->set, &f->io.io, &f->io);
    cmd(f, "CAPA");
    assert_null(strstr(f->io.out, "SASL"));
    mock_io_clear(&f->io);
}

static void test_auth_without_argument_lists(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "AUTH",
               "+OK Mechanisms follow\r\nPLAIN\r\nLOGIN\r\nSCRAM-SHA-256\r\n"
               "OAUTHBEARER\r\nXOAUTH2\r\n.\r\n");
}

static void test_tls_required(void **state)
{
    struct fx *f = *state;

    cmd(f, "CAPA");
    assert_null(strstr(f->io.out, "SASL"));
    mock_io_clear(&f->io);
    expect_cmd(f, "AUTH", "+OK Mechanisms follow\r\n.\r\n");
    expect_cmd(f, "AUTH PLAIN AGFsaWNlAHNlY3JldA==", "-ERR [AUTH] TLS is required\r\n");
    assert_int_equal(f->io.auth_calls, 0);
    assert_int_equal(f->io.n_events, 1);
    assert_int_equal(f->io.events[0].type, POP3_EVENT_CLEARTEXT);
    assert_string_equal(f->io.events[0].mech, "AUTH");
    /* After TLS the same works. */
    pop3_session_tls_started(f->s);
    cmd(f, "AUTH PLAIN AGFsaWNlAHNlY3JldA==");
    assert_int_equal(f->io.auth_calls, 1);
    login_ok(f);
}

/* --- PLAIN --- */

static void test_plain_initial_response(void **state)
{
    struct fx *f = *state;

    auth_ir(f, "PLAIN", "\0alice\0secret", 13);
    expect(f, "");
    assert_int_equal(f->io.auth_calls, 1);
    assert_int_equal(f->io.last_auth.mech, POP3_MECH_PLAIN);
    assert_int_equal(f->io.last_auth.step, POP3_STEP_VERIFY);
    assert_string_equal(f->io.last_auth.user, "alice");
    assert_int_equal(f->io.last_auth.secret_len, 6);
    assert_memory_equal(f->io.last_auth.secret, "secret", 6);
    assert_false(pop3_session_wants_input(f->s));
    login_ok(f);
    assert_string_equal(pop3_session_user(f->s), "alice");
}

static void test_plain_continuation(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "auth plain", "+ \r\n");
    assert_true(pop3_session_wants_input(f->s));
    cmd(f, b64("alice\0alice\0pw", 14));
    assert_int_equal(f->io.auth_calls, 1);
    assert_string_equal(f->io.last_auth.user, "alice");
    pop3_session_auth_done(f->s, POP3_AUTH_FAIL, NULL);
    expect(f, "-ERR [AUTH] Authentication failed\r\n");
    /* Commands again after the failure. */
    expect_cmd(f, "NOOP", "-ERR NOOP is not allowed before login\r\n");
}

static void test_plain_other_authzid_refused(void **state)
{
    struct fx *f = *state;

    auth_ir(f, "PLAIN", "bob\0alice\0secret", 16);
    expect(f, "-ERR [AUTH] Authorization identity must be empty or the user name\r\n");
    assert_int_equal(f->io.auth_calls, 0);
}

static void test_plain_malformed(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "AUTH PLAIN =",
               "-ERR Invalid PLAIN response: PLAIN response needs authzid NUL "
               "authcid NUL password\r\n");
    auth_ir(f, "PLAIN", "\0alice\0", 7);
    expect(f, "-ERR Invalid PLAIN response: empty password\r\n");
    auth_ir(f, "PLAIN", "\0\0pw", 4);
    expect(f, "-ERR Invalid PLAIN response: empty user name\r\n");
    auth_ir(f, "PLAIN", "\0al ice\0pw", 10);
    expect(f, "-ERR Invalid PLAIN response: user name contains a space, control character or "
              "'/'\r\n");
    auth_ir(f, "PLAIN", "\0a\0b\0c", 6);
    expect(f, "-ERR Invalid PLAIN response: PLAIN response has more than two NUL separators\r\n");
    expect_cmd(f, "AUTH PLAIN AGFsaWNl!AHB3", "-ERR Invalid base64 in authentication response\r\n");
    expect_cmd(f, "AUTH PLAIN AGFsaWNlAHB", "-ERR Invalid base64 in authentication response\r\n");
    expect_cmd(f, "AUTH PLAIN", "+ \r\n");
    expect_cmd(f, "",
               "-ERR Invalid PLAIN response: PLAIN response needs authzid NUL authcid NUL "
               "password\r\n");
    assert_int_equal(f->io.auth_calls, 0);
}

static void test_cancel(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "AUTH PLAIN", "+ \r\n");
    expect_cmd(f, "*", "-ERR Authentication cancelled\r\n");
    assert_int_equal(f->io.auth_calls, 0);
    /* "*" is a command again. */
    expect_cmd(f, "*", "-ERR Unknown command\r\n");
}

static void test_unknown_mechanism(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "AUTH CRAM-MD5", "-ERR Unsupported authentication mechanism\r\n");
    expect_cmd(f, "AUTH GSSAPI =", "-ERR Unsupported authentication mechanism\r\n");
    /* -PLUS without a channel to bind to is not usable. */
    expect_cmd(f, "AUTH SCRAM-SHA-256-PLUS", "-ERR Unsupported authentication mechanism\r\n");
    expect_cmd(f, "AUTH PLAIN a b", "-ERR Too many arguments for AUTH\r\n");
}

static void test_oversized_response(void **state)
{
    struct fx *f = *state;
    char *big = malloc(4000);

    assert_non_null(big);
    memset(big, 'A', 3999);
    big[3999] = '\0';
    expect_cmd(f, "AUTH PLAIN", "+ \r\n");
    /* 3996 characters are 2997 bytes: over the 2048 a password exchange takes. */
    big[3996] = '\0';
    expect_cmd(f, big, "-ERR Authentication response too long\r\n");
    free(big);
    assert_int_equal(f->io.auth_calls, 0);
}

/* --- LOGIN --- */

static void test_login_mechanism(void **state)
{
    struct fx *f = *state;

    cmd(f, "AUTH LOGIN");
    assert_string_equal(challenge(f), "Username:");
    cmd(f, b64("alice", 5));
    assert_string_equal(challenge(f), "Password:");
    cmd(f, b64("secret", 6));
    expect(f, "");
    assert_int_equal(f->io.last_auth.mech, POP3_MECH_LOGIN);
    assert_string_equal(f->io.last_auth.user, "alice");
    assert_memory_equal(f->io.last_auth.secret, "secret", 6);
    login_ok(f);
}

static void test_login_initial_response(void **state)
{
    struct fx *f = *state;

    auth_ir(f, "LOGIN", "alice", 5);
    assert_string_equal(challenge(f), "Password:");
    expect_cmd(f, "", "-ERR Invalid LOGIN response: empty password\r\n");
    assert_int_equal(f->io.auth_calls, 0);
}

/* --- SCRAM-SHA-256 --- */

#define CNONCE "rOprNGfwEbeRWgbNEkqO"
/* io->random gives 0x40..0x51: its base64. */
#define SNONCE "QEFCQ0RFRkdISUpLTE1OT1BR"
#define SALT   "W22ZaJ0SNY7soEsUEjb6gQ=="

static const unsigned char proof[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                        12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                        23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

/* client-first, then the salt answer; returns after the server-first. */
static void scram_first(struct fx *f, const char *mech, const char *first)
{
    auth_ir(f, mech, first, strlen(first));
    expect(f, "");
    assert_int_equal(f->io.last_auth.step, POP3_STEP_SCRAM_SALT);
    assert_false(pop3_session_wants_input(f->s));
    pop3_session_scram_salt(f->s, SALT, 4096);
    assert_string_equal(challenge(f), "r=" CNONCE SNONCE ",s=" SALT ",i=4096");
    assert_true(pop3_session_wants_input(f->s));
}

static void test_scram_exchange(void **state)
{
    struct fx *f = *state;
    char final[256];
    const unsigned char sig[32] = {0xaa};

    scram_first(f, "SCRAM-SHA-256", "n,,n=user,r=" CNONCE);
    assert_string_equal(f->io.last_auth.user, "user");
    assert_int_equal(f->io.last_auth.mech, POP3_MECH_SCRAM);
    snprintf(final, sizeof(final), "c=biws,r=" CNONCE SNONCE ",p=%s", b64(proof, 32));
    cmd(f, b64(final, strlen(final)));
    expect(f, "");
    assert_int_equal(f->io.last_auth.step, POP3_STEP_SCRAM_PROOF);
    assert_true(f->io.last_auth.has_proof);
    assert_memory_equal(f->io.last_auth.proof, proof, 32);
    /* AuthMessage = client-first-bare "," server-first "," final-without-proof. */
    const char *am =
        "n=user,r=" CNONCE ",r=" CNONCE SNONCE ",s=" SALT ",i=4096,c=biws,r=" CNONCE SNONCE;
    assert_int_equal(f->io.last_auth.secret_len, strlen(am));
    assert_memory_equal(f->io.last_auth.secret, am, strlen(am));

    pop3_session_scram_signature(f->s, sig);
    pop3_session_auth_done(f->s, POP3_AUTH_OK, mock_mailbox_box(f->mm));
    char v[64] = "v=";
    strcat(v, b64(sig, 32));
    assert_string_equal(challenge(f), v);
    /* Not in TRANSACTION until the client has accepted the signature. */
    assert_int_equal(pop3_session_state(f->s), POP3_STATE_AUTHORIZATION);
    expect_cmd(f, "", LOGIN_REPLY);
    assert_int_equal(pop3_session_state(f->s), POP3_STATE_TRANSACTION);
}

static void test_scram_cancel_after_signature(void **state)
{
    struct fx *f = *state;
    char final[256];
    const unsigned char sig[32] = {0};

    scram_first(f, "SCRAM-SHA-256", "n,,n=user,r=" CNONCE);
    snprintf(final, sizeof(final), "c=biws,r=" CNONCE SNONCE ",p=%s", b64(proof, 32));
    cmd(f, b64(final, strlen(final)));
    pop3_session_scram_signature(f->s, sig);
    pop3_session_auth_done(f->s, POP3_AUTH_OK, mock_mailbox_box(f->mm));
    (void)challenge(f);
    expect_cmd(f, "*", "-ERR Authentication cancelled\r\n");
    assert_int_equal(pop3_session_state(f->s), POP3_STATE_AUTHORIZATION);
    /* The mailbox went back. */
    assert_true(f->mm->closed);
}

static void test_scram_failures(void **state)
{
    struct fx *f = *state;
    char final[256];

    /* Proof refused behind io->auth. */
    scram_first(f, "SCRAM-SHA-256", "n,,n=user,r=" CNONCE);
    snprintf(final, sizeof(final), "c=biws,r=" CNONCE SNONCE ",p=%s", b64(proof, 32));
    cmd(f, b64(final, strlen(final)));
    pop3_session_auth_done(f->s, POP3_AUTH_FAIL, NULL);
    expect(f, "-ERR [AUTH] Authentication failed\r\n");

    /* A nonce that is not the one the server made. */
    scram_first(f, "SCRAM-SHA-256", "n,,n=user,r=" CNONCE);
    snprintf(final, sizeof(final), "c=biws,r=" CNONCE "XXXX,p=%s", b64(proof, 32));
    cmd(f, b64(final, strlen(final)));
    expect(f, "-ERR [AUTH] SCRAM nonce does not match\r\n");

    /* c= must repeat the gs2 header. */
    scram_first(f, "SCRAM-SHA-256", "n,,n=user,r=" CNONCE);
    snprintf(final, sizeof(final), "c=eSws,r=" CNONCE SNONCE ",p=%s", b64(proof, 32));
    cmd(f, b64(final, strlen(final)));
    expect(f, "-ERR [AUTH] SCRAM channel binding does not match\r\n");

    /* Short proof. */
    scram_first(f, "SCRAM-SHA-256", "n,,n=user,r=" CNONCE);
    snprintf(final, sizeof(final), "c=biws,r=" CNONCE SNONCE ",p=%s", b64(proof, 16));
    cmd(f, b64(final, strlen(final)));
    expect(f, "-ERR Invalid SCRAM message: SCRAM proof is not 32 bytes of base64\r\n");

    /* Another authorization identity. */
    auth_ir(f, "SCRAM-SHA-256", "n,a=bob,n=user,r=x", 18);
    expect(f, "-ERR [AUTH] Authorization identity must be empty or the user name\r\n");
    auth_ir(f, "SCRAM-SHA-256", "p=tls-exporter,,n=user,r=x", 26);
    expect(f, "-ERR Channel binding needs SCRAM-SHA-256-PLUS\r\n");
    auth_ir(f, "SCRAM-SHA-256", "p=tls-unique,,n=user,r=x", 24);
    expect(f, "-ERR Invalid SCRAM message: unsupported channel binding type (only "
              "tls-exporter)\r\n");
    auth_ir(f, "SCRAM-SHA-256", "n,,m=ext,n=user,r=x", 19);
    expect(f, "-ERR Invalid SCRAM message: mandatory SCRAM extension not supported\r\n");
    assert_int_equal(pop3_session_state(f->s), POP3_STATE_AUTHORIZATION);
}

static void test_scram_downgrade_detected(void **state)
{
    struct fx *f = *state;

    /* "y" (client could bind) while this server offers -PLUS: refused. */
    f->io.cb_available = true;
    auth_ir(f, "SCRAM-SHA-256", "y,,n=user,r=" CNONCE, 12 + strlen(CNONCE));
    expect(f, "-ERR [AUTH] Channel binding is supported: possible downgrade, refused\r\n");
    /* Without -PLUS on offer, "y" is fine and c= is "y,,". */
    f->io.cb_available = false;
    scram_first(f, "SCRAM-SHA-256", "y,,n=user,r=" CNONCE);
    char final[256];
    snprintf(final, sizeof(final), "c=eSws,r=" CNONCE SNONCE ",p=%s", b64(proof, 32));
    cmd(f, b64(final, strlen(final)));
    expect(f, "");
    assert_int_equal(f->io.last_auth.step, POP3_STEP_SCRAM_PROOF);
    pop3_session_auth_done(f->s, POP3_AUTH_FAIL, NULL);
    mock_io_clear(&f->io);
}

static void test_scram_plus(void **state)
{
    struct fx *f = *state;
    char final[256];
    const unsigned char sig[32] = {7};

    f->io.cb_available = true;
    memset(f->io.cb, 0x5a, 32);
    expect_cmd(f, "AUTH SCRAM-SHA-256-PLUS =", "-ERR Invalid SCRAM message: bad gs2 header\r\n");
    auth_ir(f, "SCRAM-SHA-256-PLUS", "n,,n=user,r=x", 13);
    expect(f, "-ERR SCRAM-SHA-256-PLUS needs channel binding p=tls-exporter\r\n");

    scram_first(f, "SCRAM-SHA-256-PLUS", "p=tls-exporter,,n=user,r=" CNONCE);
    assert_int_equal(f->io.last_auth.mech, POP3_MECH_SCRAM_PLUS);
    /* c= is the gs2 header followed by the exporter value. */
    unsigned char c[16 + 32];
    memcpy(c, "p=tls-exporter,,", 16);
    memcpy(c + 16, f->io.cb, 32);
    char cb64[128];
    strcpy(cb64, b64(c, sizeof(c)));
    snprintf(final, sizeof(final), "c=%s,r=" CNONCE SNONCE ",p=%s", cb64, b64(proof, 32));
    cmd(f, b64(final, strlen(final)));
    expect(f, "");
    assert_int_equal(f->io.last_auth.step, POP3_STEP_SCRAM_PROOF);
    pop3_session_scram_signature(f->s, sig);
    pop3_session_auth_done(f->s, POP3_AUTH_OK, mock_mailbox_box(f->mm));
    (void)challenge(f);
    expect_cmd(f, "", LOGIN_REPLY);

    /* A relay's exporter value differs: refused. */
    pop3_session_destroy(&f->s);
    f->mm->closed = false;
    f->s = pop3_session_new(&f->set, &f->io.io, &f->io);
    scram_first(f, "SCRAM-SHA-256-PLUS", "p=tls-exporter,,n=user,r=" CNONCE);
    c[20] ^= 1;
    strcpy(cb64, b64(c, sizeof(c)));
    snprintf(final, sizeof(final), "c=%s,r=" CNONCE SNONCE ",p=%s", cb64, b64(proof, 32));
    cmd(f, b64(final, strlen(final)));
    expect(f, "-ERR [AUTH] SCRAM channel binding does not match\r\n");
}

/* --- OAUTHBEARER and XOAUTH2 --- */

static void test_oauthbearer(void **state)
{
    struct fx *f = *state;
    const char ir[] = "n,a=alice,\001host=mail\001port=995\001auth=Bearer abc.DEF-_.x\001\001";

    auth_ir(f, "OAUTHBEARER", ir, sizeof(ir) - 1);
    expect(f, "");
    assert_int_equal(f->io.last_auth.mech, POP3_MECH_OAUTHBEARER);
    assert_string_equal(f->io.last_auth.user, "alice");
    assert_int_equal(f->io.last_auth.secret_len, 11);
    assert_memory_equal(f->io.last_auth.secret, "abc.DEF-_.x", 11);
    pop3_session_set_user(f->s, "alice");
    login_ok(f);
}

static void test_oauthbearer_failure_challenge(void **state)
{
    struct fx *f = *state;
    const char ir[] = "n,,\001auth=Bearer tok\001\001";

    auth_ir(f, "OAUTHBEARER", ir, sizeof(ir) - 1);
    assert_string_equal(f->io.last_auth.user, "");
    pop3_session_auth_done(f->s, POP3_AUTH_FAIL, NULL);
    /* RFC 7628 3.2.2: a JSON error, then the client's ^A, then -ERR. */
    assert_string_equal(challenge(f), "{\"status\":\"invalid_token\",\"schemes\":\"bearer\"}");
    expect_cmd(f, "AQ==", "-ERR [AUTH] Authentication failed\r\n");
    assert_int_equal(pop3_session_state(f->s), POP3_STATE_AUTHORIZATION);
}

static void test_xoauth2(void **state)
{
    struct fx *f = *state;
    const char ir[] = "user=alice@example.org\001auth=Bearer ya29.tok\001\001";

    expect_cmd(f, "AUTH XOAUTH2", "+ \r\n");
    cmd(f, b64(ir, sizeof(ir) - 1));
    assert_int_equal(f->io.last_auth.mech, POP3_MECH_XOAUTH2);
    assert_string_equal(f->io.last_auth.user, "alice@example.org");
    assert_memory_equal(f->io.last_auth.secret, "ya29.tok", 8);
    pop3_session_auth_done(f->s, POP3_AUTH_FAIL, NULL);
    (void)challenge(f);
    expect_cmd(f, "", "-ERR [AUTH] Authentication failed\r\n");
}

static void test_bearer_malformed(void **state)
{
    struct fx *f = *state;

    AUTH_IR_LIT(f, "OAUTHBEARER", "n,,\001auth=Basic x\001\001");
    expect(f, "-ERR Invalid bearer token response: auth value is not \"Bearer <token>\"\r\n");
    AUTH_IR_LIT(f, "OAUTHBEARER", "n,,\001auth=Bearer x\001");
    expect(f, "-ERR Invalid bearer token response: response does not end with ^A^A\r\n");
    AUTH_IR_LIT(f, "XOAUTH2", "auth=Bearer x\001\001");
    expect(f, "-ERR Invalid bearer token response: no user\r\n");
    AUTH_IR_LIT(f, "OAUTHBEARER", "p=tls-exporter,,\001auth=Bearer x\001\001");
    expect(f, "-ERR Invalid bearer token response: bad gs2 header\r\n");
    assert_int_equal(f->io.auth_calls, 0);
}

/* --- decoders, directly --- */

static void test_sasl_name_decode(void **state)
{
    char out[16];
    const char *error;

    (void)state;
    assert_int_equal(sasl_name_decode("a=2Cb=3Dc", 9, out, sizeof(out), &error), 0);
    assert_string_equal(out, "a,b=c");
    assert_int_equal(sasl_name_decode("a=2", 3, out, sizeof(out), &error), -1);
    assert_int_equal(sasl_name_decode("a=41", 4, out, sizeof(out), &error), -1);
    assert_int_equal(sasl_name_decode("a,b", 3, out, sizeof(out), &error), -1);
    assert_int_equal(sasl_name_decode("", 0, out, sizeof(out), &error), -1);
    assert_int_equal(sasl_name_decode("../etc", 6, out, sizeof(out), &error), -1);
    assert_int_equal(sasl_name_decode("0123456789abcdef", 16, out, sizeof(out), &error), -1);
    assert_string_equal(error, "user name too long");
}

static void test_scram_decoders(void **state)
{
    struct scram_client_first cf;
    struct scram_client_final fin;
    const char *error;

    (void)state;
    const char first[] = "n,a=user,n=user,r=abc,x=ext";
    assert_int_equal(scram_client_first_decode(first, strlen(first), &cf, &error), 0);
    assert_true(cf.has_authzid);
    assert_int_equal(cf.gs2_len, 9);
    assert_int_equal(cf.bare_len, strlen(first) - 9);
    assert_int_equal(cf.nonce_len, 3);
    assert_int_equal(scram_client_first_decode("n,,n=user", 9, &cf, &error), -1);
    assert_int_equal(scram_client_first_decode("n,,n=user,r=a,b", 15, &cf, &error), 0);
    assert_int_equal(scram_client_first_decode("x,,n=user,r=a", 13, &cf, &error), -1);
    assert_int_equal(scram_client_first_decode("n,n=user,r=a", 12, &cf, &error), -1);
    assert_int_equal(scram_client_first_decode("n,,n=u\001,r=a", 11, &cf, &error), -1);

    char final[128];
    snprintf(final, sizeof(final), "c=biws,r=abc,x=1,p=%s", b64(proof, 32));
    assert_int_equal(scram_client_final_decode(final, strlen(final), &fin, &error), 0);
    assert_int_equal(fin.without_proof_len, 16);
    assert_int_equal(fin.cbind_len, 3);
    assert_memory_equal(fin.proof, proof, 32);
    assert_int_equal(scram_client_final_decode("c=biws,r=abc", 12, &fin, &error), -1);
    assert_int_equal(scram_client_final_decode("c=b!ws,r=abc,p=AAAA", 19, &fin, &error), -1);
    assert_int_equal(scram_client_final_decode("r=abc,c=biws,p=AAAA", 19, &fin, &error), -1);
}

static void test_base64(void **state)
{
    unsigned char out[16];
    char enc[16];

    (void)state;
    /* RFC 4648 section 10. */
    const char *v[][2] = {{"", ""},
                          {"f", "Zg=="},
                          {"fo", "Zm8="},
                          {"foo", "Zm9v"},
                          {"foob", "Zm9vYg=="},
                          {"fooba", "Zm9vYmE="},
                          {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t n = strlen(v[i][0]);
        assert_int_equal(b64_decode(v[i][1], strlen(v[i][1]), out, sizeof(out)), (int)n);
        assert_memory_equal(out, v[i][0], n);
        if (n > 0) {
            assert_int_equal(b64_encode((const unsigned char *)v[i][0], n, enc, sizeof(enc)),
                             strlen(v[i][1]));
            assert_string_equal(enc, v[i][1]);
        }
    }
    assert_int_equal(b64_decode("Zg=", 3, out, sizeof(out)), -1);
    assert_int_equal(b64_decode("Zh==", 4, out, sizeof(out)), -1); /* non-zero pad bits */
    assert_int_equal(b64_decode("Z=g=", 4, out, sizeof(out)), -1);
    assert_int_equal(b64_decode("Zg==Zg==", 8, out, sizeof(out)), -1);
    assert_int_equal(b64_decode("Zm9v", 4, out, 2), -1);
    assert_int_equal(b64_encode((const unsigned char *)"foo", 3, enc, 4), 0);
}

int main(void)
{
#define T(name)     cmocka_unit_test_setup_teardown(name, setup, teardown)
#define T_TLS(name) cmocka_unit_test_setup_teardown(name, setup_tls_required, teardown)
    const struct CMUnitTest tests[] = {
        T(test_capa_lists_mechanisms),
        T(test_capa_follows_configuration),
        T(test_auth_without_argument_lists),
        T_TLS(test_tls_required),
        T(test_plain_initial_response),
        T(test_plain_continuation),
        T(test_plain_other_authzid_refused),
        T(test_plain_malformed),
        T(test_cancel),
        T(test_unknown_mechanism),
        T(test_oversized_response),
        T(test_login_mechanism),
        T(test_login_initial_response),
        T(test_scram_exchange),
        T(test_scram_cancel_after_signature),
        T(test_scram_failures),
        T(test_scram_downgrade_detected),
        T(test_scram_plus),
        T(test_oauthbearer),
        T(test_oauthbearer_failure_challenge),
        T(test_xoauth2),
        T(test_bearer_malformed),
        cmocka_unit_test(test_sasl_name_decode),
        cmocka_unit_test(test_scram_decoders),
        cmocka_unit_test(test_base64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
