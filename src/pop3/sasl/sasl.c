/*
 * The AUTH command (RFC 5034): mechanism choice, "+ " challenges, base64
 * responses, "*" to cancel, and the steps of each mechanism. The
 * decoders (plain.c, scram.c, oauthbearer.c) check syntax; credentials
 * are judged behind io->auth like those of USER/PASS. LOGIN has no
 * message format of its own and lives here.
 */
#include "pop3/pop3-private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base64.h"
#include "lib/str.h"
#include "pop3/sasl/sasl.h"

static const char *const mech_names[POP3_MECH_COUNT] = {
    [POP3_MECH_USER] = "USER",
    [POP3_MECH_APOP] = "APOP",
    [POP3_MECH_PLAIN] = "PLAIN",
    [POP3_MECH_LOGIN] = "LOGIN",
    [POP3_MECH_SCRAM] = "SCRAM-SHA-256",
    [POP3_MECH_SCRAM_PLUS] = "SCRAM-SHA-256-PLUS",
    [POP3_MECH_OAUTHBEARER] = "OAUTHBEARER",
    [POP3_MECH_XOAUTH2] = "XOAUTH2",
};

const char *pop3_mech_name(enum pop3_mech m)
{
    return m < POP3_MECH_COUNT ? mech_names[m] : "?";
}

int pop3_mech_lookup(const char *name, size_t len)
{
    for (int m = POP3_MECH_PLAIN; m < POP3_MECH_COUNT; m++) {
        if (str_eq_nocase(name, len, mech_names[m]))
            return m;
    }
    return -1;
}

bool sasl_mech_usable(struct pop3_session *s, enum pop3_mech m)
{
    unsigned char cb[32];

    if (m < POP3_MECH_PLAIN || m >= POP3_MECH_COUNT || (s->set.sasl_mechs & POP3_MECH_BIT(m)) == 0)
        return false;
    if ((m == POP3_MECH_SCRAM || m == POP3_MECH_SCRAM_PLUS) && s->io->random == NULL)
        return false;
    if (m == POP3_MECH_SCRAM_PLUS)
        return s->io->channel_binding != NULL && s->io->channel_binding(s->ctx, cb) == 0;
    return true;
}

void sasl_reset(struct pop3_session *s)
{
    struct sasl_exchange *x = &s->sasl;

    if (x->scram != NULL) {
        if (x->scram->messages != NULL) {
            explicit_bzero(x->scram->messages, x->scram->messages_len);
            free(x->scram->messages);
        }
        explicit_bzero(x->scram, sizeof(*x->scram));
        free(x->scram);
    }
    if (x->mb != NULL)
        mailbox_close(&x->mb);
    explicit_bzero(x, sizeof(*x));
    x->phase = SASL_IDLE;
}

/* "+ " and the base64 of a challenge. */
static void send_challenge(struct pop3_session *s, const void *data, size_t len)
{
    size_t size = B64_ENCODED_LEN(len) + 5;
    char *line = malloc(size);

    if (line == NULL) {
        session_reply(s, "-ERR [SYS/TEMP] Out of memory");
        sasl_reset(s);
        return;
    }
    line[0] = '+';
    line[1] = ' ';
    size_t n = len == 0 ? 0 : b64_encode(data, len, line + 2, size - 2);
    memcpy(line + 2 + n, "\r\n", 2);
    session_write(s, line, n + 4);
    free(line);
}

/* Ends the exchange with -ERR; what it held is released. */
static void fail(struct pop3_session *s, const char *fmt, const char *detail)
{
    sasl_reset(s);
    s->have_user = false;
    if (detail != NULL)
        session_reply(s, fmt, detail);
    else
        session_reply(s, "%s", fmt);
}

/* Takes the name unless it is an attack shape (which ends the session). */
static bool take_user(struct pop3_session *s, const char *user, size_t len)
{
    if (session_name_attack(s, user, len)) {
        sasl_reset(s);
        return false;
    }
    memcpy(s->user, user, len);
    s->user[len] = '\0';
    s->have_user = true;
    return true;
}

static void set_user(struct pop3_session *s, const char *user, size_t len)
{
    memcpy(s->user, user, len);
    s->user[len] = '\0';
    s->have_user = true;
}

static void step_plain(struct pop3_session *s, const char *in, size_t len)
{
    struct sasl_plain p;
    const char *error;

    if (sasl_plain_decode(in, len, &p, &error) < 0) {
        fail(s, "-ERR Invalid PLAIN response: %s", error);
        return;
    }
    /* Acting as somebody else is not something POP3 accounts do. */
    if (p.authzid_len > 0 &&
        (p.authzid_len != p.authcid_len || memcmp(p.authzid, p.authcid, p.authcid_len) != 0)) {
        fail(s, "-ERR [AUTH] Authorization identity must be empty or the user name", NULL);
        return;
    }
    if (!take_user(s, p.authcid, p.authcid_len))
        return;
    sasl_reset(s);
    session_start_auth(s, POP3_MECH_PLAIN, p.passwd, p.passwd_len);
}

static void step_login(struct pop3_session *s, const char *in, size_t len)
{
    const char *error;
    char name[POP3_USER_MAX + 1];

    if (s->sasl.phase != SASL_LOGIN_PASS) {
        /* The user name: as a SASL name it may not hold '=' escapes, but
         * LOGIN predates them; only the byte rules apply. */
        if (len == 0 || len > POP3_USER_MAX || memchr(in, ',', len) != NULL ||
            sasl_name_decode(in, len, name, sizeof(name), &error) < 0) {
            fail(s, "-ERR Invalid LOGIN user name", NULL);
            return;
        }
        if (!take_user(s, in, len))
            return;
        s->sasl.phase = SASL_LOGIN_PASS;
        send_challenge(s, "Password:", 9);
        return;
    }
    if (len == 0) {
        fail(s, "-ERR Invalid LOGIN response: empty password", NULL);
        return;
    }
    sasl_reset(s);
    session_start_auth(s, POP3_MECH_LOGIN, in, len);
}

static void step_scram_first(struct pop3_session *s, const char *in, size_t len)
{
    struct sasl_exchange *ex = &s->sasl;
    struct scram_client_first cf;
    const char *error;
    unsigned char rnd[18];

    if (scram_client_first_decode(in, len, &cf, &error) < 0) {
        fail(s, "-ERR Invalid SCRAM message: %s", error);
        return;
    }
    if (ex->mech == POP3_MECH_SCRAM_PLUS && cf.cbind != SCRAM_CBIND_EXPORTER) {
        fail(s, "-ERR SCRAM-SHA-256-PLUS needs channel binding p=tls-exporter", NULL);
        return;
    }
    if (ex->mech == POP3_MECH_SCRAM && cf.cbind == SCRAM_CBIND_EXPORTER) {
        fail(s, "-ERR Channel binding needs SCRAM-SHA-256-PLUS", NULL);
        return;
    }
    /* "y": the client could bind but believes the server cannot. If this
     * server offers -PLUS here, someone removed it from the list on the
     * way (RFC 5802 section 6). */
    if (cf.cbind == SCRAM_CBIND_CAN && sasl_mech_usable(s, POP3_MECH_SCRAM_PLUS)) {
        fail(s, "-ERR [AUTH] Channel binding is supported: possible downgrade, refused", NULL);
        return;
    }
    if (cf.has_authzid && strcmp(cf.authzid, cf.user) != 0) {
        fail(s, "-ERR [AUTH] Authorization identity must be empty or the user name", NULL);
        return;
    }
    struct sasl_scram *x = ex->scram = calloc(1, sizeof(*ex->scram));
    if (x == NULL) {
        fail(s, "-ERR [SYS/TEMP] Out of memory", NULL);
        return;
    }
    if (cf.nonce_len + 24 >= sizeof(x->nonce) || cf.gs2_len > sizeof(x->gs2)) {
        fail(s, "-ERR Invalid SCRAM message: nonce too long", NULL);
        return;
    }
    x->cbind = (int)cf.cbind;
    memcpy(x->gs2, in, cf.gs2_len);
    x->gs2_len = cf.gs2_len;
    s->io->random(s->ctx, rnd, sizeof(rnd));
    memcpy(x->nonce, cf.nonce, cf.nonce_len);
    x->nonce_len = cf.nonce_len + b64_encode(rnd, sizeof(rnd), x->nonce + cf.nonce_len,
                                             sizeof(x->nonce) - cf.nonce_len);
    /* client-first-bare now; ",server-first" once the salt is known. */
    x->messages = malloc(cf.bare_len + 1);
    if (x->messages == NULL) {
        fail(s, "-ERR [SYS/TEMP] Out of memory", NULL);
        return;
    }
    memcpy(x->messages, cf.bare, cf.bare_len);
    x->messages_len = cf.bare_len;
    if (!take_user(s, cf.user, strlen(cf.user)))
        return;

    struct pop3_auth_req req = {.mech = ex->mech, .step = POP3_STEP_SCRAM_SALT, .user = s->user};
    s->auth_pending = true;
    s->io->auth(s->ctx, &req);
}

void pop3_session_scram_salt(struct pop3_session *s, const char *salt_b64, unsigned iter)
{
    struct sasl_scram *x = s->sasl.scram;
    char first[512];

    s->auth_pending = false;
    if (x == NULL) {
        fail(s, "-ERR [SYS/TEMP] Cannot continue SCRAM", NULL);
        return;
    }
    int n = snprintf(first, sizeof(first), "r=%.*s,s=%s,i=%u", (int)x->nonce_len, x->nonce,
                     salt_b64, iter);
    char *m = n > 0 && (size_t)n < sizeof(first)
                  ? realloc(x->messages, x->messages_len + 1 + (size_t)n)
                  : NULL;
    if (m == NULL) {
        fail(s, "-ERR [SYS/TEMP] Cannot continue SCRAM", NULL);
        return;
    }
    x->messages = m;
    m[x->messages_len] = ',';
    memcpy(m + x->messages_len + 1, first, (size_t)n);
    x->messages_len += 1 + (size_t)n;
    s->sasl.phase = SASL_SCRAM_FINAL;
    send_challenge(s, first, (size_t)n);
}

static void step_scram_final(struct pop3_session *s, const char *in, size_t len)
{
    struct sasl_scram *x = s->sasl.scram;
    struct scram_client_final cf;
    const char *error;
    unsigned char expect[sizeof(x->gs2) + 32];
    size_t expect_len = x->gs2_len;

    if (scram_client_final_decode(in, len, &cf, &error) < 0) {
        fail(s, "-ERR Invalid SCRAM message: %s", error);
        return;
    }
    if (cf.nonce_len != x->nonce_len || memcmp(cf.nonce, x->nonce, x->nonce_len) != 0) {
        fail(s, "-ERR [AUTH] SCRAM nonce does not match", NULL);
        return;
    }
    /* c= repeats the gs2 header, followed for -PLUS by the exporter
     * value of this very TLS connection: a relay cannot forward it. */
    memcpy(expect, x->gs2, x->gs2_len);
    if (x->cbind == SCRAM_CBIND_EXPORTER) {
        if (s->io->channel_binding == NULL ||
            s->io->channel_binding(s->ctx, expect + x->gs2_len) < 0) {
            fail(s, "-ERR [AUTH] Channel binding is not available", NULL);
            return;
        }
        expect_len += 32;
    }
    if (cf.cbind_len != expect_len || memcmp(cf.cbind, expect, expect_len) != 0) {
        fail(s, "-ERR [AUTH] SCRAM channel binding does not match", NULL);
        return;
    }
    size_t total = x->messages_len + 1 + cf.without_proof_len;
    char *auth_message = malloc(total);
    if (auth_message == NULL) {
        fail(s, "-ERR [SYS/TEMP] Out of memory", NULL);
        return;
    }
    memcpy(auth_message, x->messages, x->messages_len);
    auth_message[x->messages_len] = ',';
    memcpy(auth_message + x->messages_len + 1, in, cf.without_proof_len);

    struct pop3_auth_req req = {
        .mech = s->sasl.mech,
        .step = POP3_STEP_SCRAM_PROOF,
        .user = s->user,
        .secret = auth_message,
        .secret_len = total,
        .proof = cf.proof,
    };
    s->auth_pending = true;
    s->io->auth(s->ctx, &req);
    free(auth_message);
}

void pop3_session_scram_signature(struct pop3_session *s, const unsigned char sig[32])
{
    if (s->sasl.scram == NULL)
        return;
    memcpy(s->sasl.scram->server_sig, sig, 32);
    s->sasl.scram->have_sig = true;
}

static void step_bearer(struct pop3_session *s, const char *in, size_t len)
{
    struct sasl_bearer b;
    const char *error;
    int r = s->sasl.mech == POP3_MECH_XOAUTH2 ? sasl_xoauth2_decode(in, len, &b, &error)
                                              : sasl_oauthbearer_decode(in, len, &b, &error);

    if (r < 0) {
        fail(s, "-ERR Invalid bearer token response: %s", error);
        return;
    }
    if (b.user[0] != '\0' && !take_user(s, b.user, strlen(b.user)))
        return;
    set_user(s, b.user, strlen(b.user));
    s->sasl.phase = SASL_IDLE;
    session_start_auth(s, s->sasl.mech, b.token, b.token_len);
}

/* One decoded response, to the mechanism's current step. */
static void step(struct pop3_session *s, const char *in, size_t len)
{
    switch (s->sasl.mech) {
    case POP3_MECH_PLAIN:
        step_plain(s, in, len);
        break;
    case POP3_MECH_LOGIN:
        step_login(s, in, len);
        break;
    case POP3_MECH_SCRAM:
    case POP3_MECH_SCRAM_PLUS:
        if (s->sasl.phase == SASL_SCRAM_FINAL)
            step_scram_final(s, in, len);
        else
            step_scram_first(s, in, len);
        break;
    case POP3_MECH_OAUTHBEARER:
    case POP3_MECH_XOAUTH2:
        step_bearer(s, in, len);
        break;
    default:
        fail(s, "-ERR Unsupported authentication mechanism", NULL);
        break;
    }
}

/* Decodes a base64 response (may be empty) and passes it on. */
static void respond(struct pop3_session *s, const char *b64, size_t len)
{
    size_t max = s->sasl.mech == POP3_MECH_OAUTHBEARER || s->sasl.mech == POP3_MECH_XOAUTH2
                     ? SASL_TOKEN_MAX
                     : SASL_RESPONSE_MAX;

    if (len / 4 * 3 > max + 2) {
        fail(s, "-ERR Authentication response too long", NULL);
        return;
    }
    char *buf = malloc(max + 3);
    if (buf == NULL) {
        fail(s, "-ERR [SYS/TEMP] Out of memory", NULL);
        return;
    }
    int n = b64_decode(b64, len, (unsigned char *)buf, max + 2);
    if (n < 0)
        fail(s, "-ERR Invalid base64 in authentication response", NULL);
    else if ((size_t)n > max)
        fail(s, "-ERR Authentication response too long", NULL);
    else
        step(s, buf, (size_t)n);
    /* Passwords went through here. */
    explicit_bzero(buf, max + 3);
    free(buf);
}

void sasl_input(struct pop3_session *s, const char *line, size_t len)
{
    struct sasl_exchange *x = &s->sasl;

    /* No [AUTH] on a cancel or a malformed exchange: RFC 3206 keeps that
     * code for the credentials, and a client may drop its stored
     * password on seeing it. */
    if (len == 1 && line[0] == '*') {
        fail(s, "-ERR Authentication cancelled", NULL);
        return;
    }
    switch (x->phase) {
    case SASL_SCRAM_OK: {
        /* The client has checked v= and answers with nothing. */
        if (len != 0) {
            fail(s, "-ERR Expected an empty response after the server signature", NULL);
            return;
        }
        struct mailbox *mb = x->mb;
        x->mb = NULL;
        sasl_reset(s);
        session_enter_transaction(s, mb);
        return;
    }
    case SASL_BEARER_ERROR:
        /* RFC 7628 section 3.2.3: the client's dummy response (^A) ends
         * the exchange with a failure. */
        fail(s, "-ERR [AUTH] Authentication failed", NULL);
        return;
    case SASL_INITIAL:
    case SASL_LOGIN_PASS:
    case SASL_SCRAM_FINAL:
        respond(s, line, len);
        return;
    case SASL_IDLE:
        break;
    }
}

bool sasl_auth_done(struct pop3_session *s, enum pop3_auth_result result, struct mailbox *mb)
{
    struct sasl_exchange *x = &s->sasl;

    if (result == POP3_AUTH_OK && x->phase == SASL_SCRAM_FINAL) {
        if (x->scram == NULL || !x->scram->have_sig) {
            mailbox_close(&mb);
            fail(s, "-ERR [SYS/TEMP] Temporary failure, try again later", NULL);
            return true;
        }
        char v[3 + B64_ENCODED_LEN(32) + 1] = "v=";
        b64_encode(x->scram->server_sig, 32, v + 2, sizeof(v) - 2);
        x->mb = mb;
        x->phase = SASL_SCRAM_OK;
        send_challenge(s, v, strlen(v));
        return true;
    }
    if (result == POP3_AUTH_FAIL &&
        (x->mech == POP3_MECH_OAUTHBEARER || x->mech == POP3_MECH_XOAUTH2)) {
        /* RFC 7628 section 3.2.2: the error is a JSON challenge. */
        static const char err[] = "{\"status\":\"invalid_token\",\"schemes\":\"bearer\"}";
        s->have_user = false;
        x->phase = SASL_BEARER_ERROR;
        send_challenge(s, err, sizeof(err) - 1);
        return true;
    }
    sasl_reset(s);
    return false;
}

enum cmd_result sasl_cmd_auth(struct pop3_session *s, const struct pop3_args *a)
{
    if (a->count == 0) {
        /* RFC 1734 clients ask for the list this way. */
        session_write(s, "+OK Mechanisms follow\r\n", 23);
        if (session_credentials_allowed(s)) {
            for (int m = POP3_MECH_PLAIN; m < POP3_MECH_COUNT; m++) {
                if (sasl_mech_usable(s, (enum pop3_mech)m))
                    session_reply(s, "%s", pop3_mech_name((enum pop3_mech)m));
            }
        }
        session_write(s, ".\r\n", 3);
        return CMD_DONE;
    }
    if (session_cleartext_refused(s, "AUTH", NULL, 0))
        return CMD_ERR;
    int m = pop3_mech_lookup(a->arg[0], a->len[0]);
    if (m < 0 || !sasl_mech_usable(s, (enum pop3_mech)m)) {
        if (session_bad_command(s))
            return CMD_DONE;
        snprintf(s->reply, sizeof(s->reply), "Unsupported authentication mechanism");
        return CMD_ERR;
    }
    sasl_reset(s);
    s->have_user = false;
    s->sasl.mech = (enum pop3_mech)m;
    s->sasl.phase = SASL_INITIAL;
    if (a->count == 2) {
        /* An initial response; "=" is the empty one (RFC 5034 section 4). */
        if (a->len[1] == 1 && a->arg[1][0] == '=')
            respond(s, "", 0);
        else
            respond(s, a->arg[1], a->len[1]);
    } else if (m == POP3_MECH_LOGIN) {
        send_challenge(s, "Username:", 9);
    } else {
        send_challenge(s, "", 0);
    }
    return CMD_DONE;
}
