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

/* capa.c: writes the complete multi-line CAPA answer. */
void capa_write(struct pop3_session *s);
/* Whether USER/PASS (and later SASL) may be offered and used now. */
static inline bool session_credentials_allowed(const struct pop3_session *s)
{
    return s->secure || !s->set.require_tls;
}

#endif
