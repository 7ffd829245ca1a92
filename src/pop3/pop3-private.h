#ifndef POSTERN_POP3_PRIVATE_H
#define POSTERN_POP3_PRIVATE_H

/* Shared between session.c, commands.c and capa.c; not part of the face. */

#include "pop3/pop3.h"

/* RFC 2449 allows 40 octets per argument; user names get some slack for
 * long addresses, and the protocol has no reason to take more. */
#define POP3_USER_MAX  255
#define POP3_MAX_ARGS  2
#define POP3_REPLY_MAX 256
/* LIST and UIDL lines are written in batches of this size. */
#define POP3_LIST_CHUNK (16 * 1024)
/* A gs2 header: "p=tls-exporter,a=" and an escaped name. */
#define SASL_USER_MAX_GS2 (20 + 3 * POP3_USER_MAX)

enum cmd_result {
    CMD_OK,     /* dispatcher writes "+OK <reply>" */
    CMD_ERR,    /* dispatcher writes "-ERR <reply>" */
    CMD_STREAM, /* "+OK <reply>", then the continuation in s->out runs */
    CMD_ASYNC,  /* the answer comes later (authentication) */
    CMD_DONE,   /* the handler wrote everything itself */
};

enum out_kind { OUT_NONE, OUT_LIST, OUT_UIDL, OUT_MSG };

struct pop3_args {
    unsigned count;
    const char *arg[POP3_MAX_ARGS];
    size_t len[POP3_MAX_ARGS];
    /* Everything after the command and one space, untouched (PASS). */
    const char *rest;
    size_t rest_len;
};

/* Where an AUTH exchange stands: the next client line is a response. */
enum sasl_phase {
    SASL_IDLE,         /* no exchange: lines are commands */
    SASL_INITIAL,      /* "+ " sent, waiting for the first response */
    SASL_LOGIN_PASS,   /* LOGIN: user name received, password asked */
    SASL_SCRAM_FINAL,  /* server-first-message sent */
    SASL_SCRAM_OK,     /* "v=" sent with the mailbox open; an empty response ends it */
    SASL_BEARER_ERROR, /* RFC 7628 error sent; the client's dummy response ends it */
};

/* Limits of a decoded response; bearer tokens are the long ones. */
#define SASL_RESPONSE_MAX 2048
#define SASL_TOKEN_MAX    8192

/* SCRAM's state between its messages: "client-first-bare,server-first",
 * the gs2 header and the whole nonce, and the server signature once the
 * proof checked. Allocated only during a SCRAM exchange: an idle session
 * should not carry a kilobyte it will most likely never use. */
struct sasl_scram {
    char *messages;
    size_t messages_len;
    char gs2[SASL_USER_MAX_GS2];
    size_t gs2_len;
    int cbind; /* enum scram_cbind */
    char nonce[160];
    size_t nonce_len;
    unsigned char server_sig[32];
    bool have_sig;
};

struct sasl_exchange {
    enum pop3_mech mech;
    enum sasl_phase phase;
    struct sasl_scram *scram;
    struct mailbox *mb; /* SCRAM_OK: logged in, not yet in TRANSACTION */
};

struct pop3_session {
    struct pop3_settings set;
    const struct pop3_io *io;
    void *ctx;

    enum pop3_state state;
    bool tls;         /* the connection is TLS */
    bool secure;      /* credentials may be sent: TLS, or exempt from it */
    bool tls_pending; /* STLS answered, handshake not done */
    bool auth_pending;
    bool closed;
    unsigned bad_commands;
    bool have_user;
    char user[POP3_USER_MAX + 1];

    struct mailbox *mb;
    unsigned count;
    uint64_t total_size;
    unsigned n_deleted;
    uint64_t deleted_size;
    uint8_t *deleted; /* bitmap, count bits */

    enum out_kind out;
    unsigned cursor;
    struct mail_stream *stream;
    struct dotstuff ds;

    struct sasl_exchange sasl;

    char reply[POP3_REPLY_MAX];
};

typedef enum cmd_result cmd_handler_t(struct pop3_session *s, const struct pop3_args *args);

struct pop3_command {
    const char *name;
    unsigned states; /* enum pop3_state bits */
    unsigned char min_args, max_args;
    bool raw; /* takes the rest of the line as it is (PASS) */
    cmd_handler_t *handler;
};

const struct pop3_command *pop3_command_find(const char *name, size_t len);

void session_write(struct pop3_session *s, const void *data, size_t size);
void session_reply(struct pop3_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void session_close(struct pop3_session *s);
void session_continue(struct pop3_session *s);

static inline bool session_is_deleted(const struct pop3_session *s, unsigned i)
{
    return (s->deleted[i / 8] >> (i % 8)) & 1;
}

/* Credentials before TLS where TLS is required: reports the attempt and
 * fills s->reply; true when the command must be refused. */
bool session_cleartext_refused(struct pop3_session *s, const char *mech, const char *user,
                               size_t len);
/* Protocol abuse: -ERR, the ATTACK event, and the end of the session. */
void session_attack(struct pop3_session *s, const char *what);
/* A user name that is an attack shape (format string, shell or path
 * characters, overlong): handled with session_attack(); true then. */
bool session_name_attack(struct pop3_session *s, const char *name, size_t len);
/* An unknown or malformed command: counted; true when that was one too
 * many and the session is closed. */
bool session_bad_command(struct pop3_session *s);
/* Starts io->auth for a password-like secret. */
enum cmd_result session_start_auth(struct pop3_session *s, enum pop3_mech mech, const char *secret,
                                   size_t len);
/* Logged in: the mailbox is the session's, TRANSACTION begins. */
void session_enter_transaction(struct pop3_session *s, struct mailbox *mb);

/* sasl/sasl.c: the AUTH command and the responses that follow it. */
enum cmd_result sasl_cmd_auth(struct pop3_session *s, const struct pop3_args *a);
void sasl_input(struct pop3_session *s, const char *line, size_t len);
/* Ends an exchange, wiping and releasing what it held. */
void sasl_reset(struct pop3_session *s);
/* Whether the mechanism can be used on this connection now. */
bool sasl_mech_usable(struct pop3_session *s, enum pop3_mech m);
/* pop3_session_auth_done() calls this first: true when the exchange
 * takes the result itself (SCRAM's last step, bearer errors). */
bool sasl_auth_done(struct pop3_session *s, enum pop3_auth_result result, struct mailbox *mb);

/* capa.c: writes the complete multi-line CAPA answer. */
void capa_write(struct pop3_session *s);
/* Whether USER/PASS (and later SASL) may be offered and used now. */
static inline bool session_credentials_allowed(const struct pop3_session *s)
{
    return s->secure || !s->set.require_tls;
}

#endif
