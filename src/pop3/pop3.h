#ifndef POSTERN_POP3_H
#define POSTERN_POP3_H

/*
 * The POP3 protocol, pure: no sockets, no files, no clock. The caller feeds
 * command lines in and receives bytes out through struct pop3_io; the
 * mailbox arrives through the store vtable once authentication succeeded.
 *
 * Flow control: the session writes through io->write and never lets more
 * than POP3_OUTPUT_HIGH bytes wait in the caller's output (io->pending).
 * Long replies (LIST, UIDL, RETR, TOP) stop there and continue when the
 * caller reports pop3_session_output_drained(). While a reply or an
 * authentication is under way the session takes no input
 * (pop3_session_wants_input() is false), so pipelined commands are
 * answered in order and the caller's input buffer stays bounded.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* Output allowed to wait for the client before a long reply pauses, and
 * the size in which a message is read: one read and one large write per
 * round keep system calls few; a session streaming a message holds about
 * POP3_OUTPUT_HIGH + 2 * POP3_READ_CHUNK, whatever the message size. */
#define POP3_OUTPUT_HIGH (256 * 1024)
#define POP3_READ_CHUNK  (64 * 1024)

enum pop3_state {
    POP3_STATE_AUTHORIZATION = 1 << 0,
    POP3_STATE_TRANSACTION = 1 << 1,
    POP3_STATE_UPDATE = 1 << 2,
};

enum pop3_mech {
    POP3_MECH_USER, /* USER + PASS */
    POP3_MECH_APOP,
    /* SASL (RFC 5034), in the order CAPA lists them. */
    POP3_MECH_PLAIN,
    POP3_MECH_LOGIN,
    POP3_MECH_SCRAM,      /* SCRAM-SHA-256 */
    POP3_MECH_SCRAM_PLUS, /* SCRAM-SHA-256-PLUS, tls-exporter binding */
    POP3_MECH_OAUTHBEARER,
    POP3_MECH_XOAUTH2,
    POP3_MECH_COUNT
};
#define POP3_MECH_BIT(m) (1u << (m))

/* "PLAIN", "SCRAM-SHA-256", ... ("USER" and "APOP" for the others). */
const char *pop3_mech_name(enum pop3_mech m);
/* A SASL mechanism by name (case-insensitive), or -1. */
int pop3_mech_lookup(const char *name, size_t len);

enum pop3_auth_step {
    POP3_STEP_VERIFY,      /* user + secret: answered by pop3_session_auth_done() */
    POP3_STEP_SCRAM_SALT,  /* user: answered by pop3_session_scram_salt() (or auth_done
                              with a failure) */
    POP3_STEP_SCRAM_PROOF, /* user + AuthMessage + proof: pop3_session_scram_signature()
                              then pop3_session_auth_done() */
};

/* What the session asks the caller to verify. */
struct pop3_auth_req {
    enum pop3_mech mech;
    enum pop3_auth_step step;
    /* For OAUTHBEARER without an authorization identity this is "": the
     * user comes from the token (the caller then names it with
     * pop3_session_set_user() before pop3_session_auth_done()). */
    const char *user;
    /* The password, for APOP the hex digest, for OAUTHBEARER and XOAUTH2
     * the bearer token, for SCRAM_PROOF the AuthMessage. Only valid
     * during the io->auth call: the session wipes it afterwards and keeps
     * no copy of a password. */
    const char *secret;
    size_t secret_len;
    const unsigned char *proof; /* SCRAM_PROOF: the 32-byte ClientProof */
};

/* The caller's answer, given to pop3_session_auth_done(). */
enum pop3_auth_result {
    POP3_AUTH_OK,          /* mailbox must be non-NULL */
    POP3_AUTH_FAIL,        /* bad user or password: the same answer for both */
    POP3_AUTH_DISABLED,    /* account exists but may not use POP3 */
    POP3_AUTH_IN_USE,      /* mailbox locked by another session */
    POP3_AUTH_TEMPFAIL,    /* passdb or mailbox temporarily unusable */
    POP3_AUTH_PERMFAIL,    /* mailbox cannot be used (configuration) */
    POP3_AUTH_LOGIN_DELAY, /* right, but sooner than LOGIN-DELAY allows */
};

enum pop3_event_type {
    POP3_EVENT_RETR,      /* msg, uid, size */
    POP3_EVENT_DELE,      /* msg, uid, size: removed in UPDATE */
    POP3_EVENT_QUIT,      /* deleted, failed; msg = messages in the mailbox */
    POP3_EVENT_CLEARTEXT, /* credentials offered before TLS: user (may be NULL), mech */
    POP3_EVENT_ATTACK,    /* protocol abuse; the session closes: what */
};

struct pop3_event {
    enum pop3_event_type type;
    unsigned msg; /* 1-based */
    const char *uid;
    uint64_t size;
    unsigned deleted, failed;
    bool unsynced;    /* QUIT: the removals could not be made durable */
    const char *user; /* CLEARTEXT: the name given, if any */
    const char *mech; /* CLEARTEXT: "USER", "PASS", "APOP", "AUTH" */
    const char *what; /* ATTACK: "format string", "shell characters", "path characters",
                         "overlong name", "NUL byte", "overlong line", "bad commands" */
};

struct pop3_io {
    /* Queues bytes for the client. */
    void (*write)(void *ctx, const void *data, size_t size);
    /* Bytes queued and not yet sent. */
    size_t (*pending)(void *ctx);
    /* Optional, for the message stream: room for size bytes at the end of
     * the output, to encode into directly (saving a copy); then commit()
     * queues the first used bytes of it. NULL: not available now. */
    void *(*reserve)(void *ctx, size_t size);
    void (*commit)(void *ctx, size_t used);
    /* Starts verifying credentials; the answer comes later through
     * pop3_session_auth_done() (it must not be called from inside). */
    void (*auth)(void *ctx, const struct pop3_auth_req *req);
    /* The session is over: send what is queued, then close. */
    void (*close)(void *ctx);
    /* STLS was answered +OK: once that line is sent, discard whatever the
     * client sent after STLS and start the TLS handshake; report the
     * outcome with pop3_session_tls_started() or close the connection. */
    void (*starttls)(void *ctx);
    /* Audit hook; may be NULL. */
    void (*event)(void *ctx, const struct pop3_event *ev);
    /* Fills buf with unpredictable bytes (SCRAM nonces). May be NULL:
     * SCRAM is then not offered. */
    void (*random)(void *ctx, void *buf, size_t size);
    /* The tls-exporter channel binding (RFC 9266): 32 bytes, available
     * on TLS 1.3 only. Returns 0, or -1 when there is none. May be NULL. */
    int (*channel_binding)(void *ctx, unsigned char out[32]);
};

struct pop3_settings {
    const char *greeting;       /* text after "+OK " */
    const char *apop_timestamp; /* "<...>" in the greeting, or NULL: no APOP */
    bool stls;                  /* TLS is configured: STLS may be offered */
    bool tls;                   /* the connection is TLS already (POP3S) */
    bool secure;                /* counts as TLS without being it (trusted proxy, loopback) */
    bool require_tls;           /* no credentials unless tls or secure */
    unsigned sasl_mechs;        /* POP3_MECH_BIT()s of the SASL mechanisms offered */
    unsigned max_bad_commands;  /* unknown or malformed commands before the session
                                   closes; 0 = no limit */
    unsigned login_delay;       /* LOGIN-DELAY to announce in CAPA (RFC 2449), 0 = none */
};

struct pop3_session;

struct pop3_session *pop3_session_new(const struct pop3_settings *set, const struct pop3_io *io,
                                      void *ctx);
/* Frees the session; an open mailbox is closed without removing anything. */
void pop3_session_destroy(struct pop3_session **s);

/* Sends the greeting. */
void pop3_session_start(struct pop3_session *s);
/* One command line, without its CRLF or LF. */
void pop3_session_input(struct pop3_session *s, const char *line, size_t len);
/* The client sent a line longer than the caller accepts: -ERR and close. */
void pop3_session_line_too_long(struct pop3_session *s);
bool pop3_session_wants_input(const struct pop3_session *s);
void pop3_session_output_drained(struct pop3_session *s);
/* Completes io->auth. With POP3_AUTH_OK the session takes mb (and closes
 * it when destroyed); any other result ignores mb (pass NULL). */
void pop3_session_auth_done(struct pop3_session *s, enum pop3_auth_result result,
                            struct mailbox *mb);
/* SCRAM: the answer to POP3_STEP_SCRAM_SALT. For an unknown user the
 * caller answers with a made-up salt, so that SCRAM does not tell who
 * exists; the proof step then fails. */
void pop3_session_scram_salt(struct pop3_session *s, const char *salt_b64, unsigned iter);
/* SCRAM: the ServerSignature, given before pop3_session_auth_done() with
 * POP3_AUTH_OK; the session sends it to the client as "v=". */
void pop3_session_scram_signature(struct pop3_session *s, const unsigned char sig[32]);
/* The user the credentials turned out to belong to (bearer tokens). */
void pop3_session_set_user(struct pop3_session *s, const char *user);
/* The STLS handshake completed: the session starts over in AUTHORIZATION,
 * now on TLS (RFC 2595: no new greeting; the client asks CAPA again). */
void pop3_session_tls_started(struct pop3_session *s);
enum pop3_state pop3_session_state(const struct pop3_session *s);
const char *pop3_session_user(const struct pop3_session *s);

/*
 * Wire encoder (dotstuff.c): message bytes in, POP3 wire bytes out. LF or
 * CRLF line ends become CRLF, a '.' at the start of a line is doubled, a
 * last line without newline is ended with CRLF. With a line limit (TOP) it
 * sends the header, the empty line and that many body lines, then stops.
 */
struct dotstuff {
    bool bol;       /* at the beginning of a line */
    bool cr;        /* last byte was a CR that may start a CRLF */
    bool in_header; /* before the empty line that ends the header */
    bool done;      /* line limit reached: ignore the rest */
    uint64_t body_lines_left;
    bool limited;
};

/* body_lines < 0: the whole message. */
void dotstuff_init(struct dotstuff *d, int64_t body_lines);
/* out must hold DOTSTUFF_MAX_OUT(len) bytes; returns bytes written. */
#define DOTSTUFF_MAX_OUT(len) (2 * (len) + 3)
size_t dotstuff_encode(struct dotstuff *d, const void *in, size_t len, void *out);
/* Whether this CPU runs the 64-byte expand path (AVX-512 VBMI2, BMI2);
 * tests: dotstuff_portable_only(true) keeps to the portable code, which
 * must give the same bytes. */
bool dotstuff_expand_available(void);
void dotstuff_portable_only(bool on);
/* Ends the message (without the terminating ".\r\n"); out holds 3 bytes. */
size_t dotstuff_finish(struct dotstuff *d, void *out);
static inline bool dotstuff_done(const struct dotstuff *d)
{
    return d->done;
}

#endif
