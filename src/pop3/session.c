/*
 * The session state machine: input framing into command and arguments,
 * dispatch through the command table (which checks state and argument
 * count once for every command), authentication results, and the
 * continuation that produces long replies as fast as the client reads.
 */
#include "pop3/pop3-private.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pop3_session *pop3_session_new(const struct pop3_settings *set, const struct pop3_io *io,
                                      void *ctx)
{
    struct pop3_session *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    s->set = *set;
    s->io = io;
    s->ctx = ctx;
    s->state = POP3_STATE_AUTHORIZATION;
    s->tls = set->tls;
    s->secure = set->tls || set->secure;
    return s;
}

void pop3_session_destroy(struct pop3_session **sp)
{
    struct pop3_session *s = *sp;

    if (s == NULL)
        return;
    if (s->mb != NULL) {
        mail_stream_close(s->mb, &s->stream);
        mailbox_close(&s->mb);
    }
    sasl_reset(s);
    free(s->deleted);
    free(s);
    *sp = NULL;
}

void session_write(struct pop3_session *s, const void *data, size_t size)
{
    if (!s->closed)
        s->io->write(s->ctx, data, size);
}

/* Formats one reply line and adds CRLF. */
void session_reply(struct pop3_session *s, const char *fmt, ...)
{
    char line[POP3_REPLY_MAX + 16];
    va_list ap;

    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 3)
        n = (int)sizeof(line) - 3;
    line[n++] = '\r';
    line[n++] = '\n';
    session_write(s, line, (size_t)n);
}

void session_close(struct pop3_session *s)
{
    if (s->closed)
        return;
    s->closed = true;
    sasl_reset(s);
    /* The mailbox (and its lock) goes now, not when the connection is
     * torn down: a client may log in again the moment it has read +OK. */
    if (s->mb != NULL) {
        mail_stream_close(s->mb, &s->stream);
        mailbox_close(&s->mb);
    }
    s->out = OUT_NONE;
    s->io->close(s->ctx);
}

void pop3_session_start(struct pop3_session *s)
{
    if (s->set.apop_timestamp != NULL)
        session_reply(s, "+OK %s %s", s->set.greeting, s->set.apop_timestamp);
    else
        session_reply(s, "+OK %s", s->set.greeting);
}

bool pop3_session_wants_input(const struct pop3_session *s)
{
    return !s->closed && !s->auth_pending && !s->tls_pending && s->out == OUT_NONE &&
           s->io->pending(s->ctx) < POP3_OUTPUT_HIGH;
}

void pop3_session_tls_started(struct pop3_session *s)
{
    s->tls_pending = false;
    s->tls = true;
    s->secure = true;
    /* Nothing said before TLS carries over into it. */
    sasl_reset(s);
    s->have_user = false;
    explicit_bzero(s->user, sizeof(s->user));
}

enum pop3_state pop3_session_state(const struct pop3_session *s)
{
    return s->state;
}

void pop3_session_set_user(struct pop3_session *s, const char *user)
{
    size_t len = strlen(user);

    if (len > POP3_USER_MAX)
        len = POP3_USER_MAX;
    memcpy(s->user, user, len);
    s->user[len] = '\0';
    s->have_user = true;
}

const char *pop3_session_user(const struct pop3_session *s)
{
    return s->have_user || s->state != POP3_STATE_AUTHORIZATION ? s->user : NULL;
}

void pop3_session_line_too_long(struct pop3_session *s)
{
    session_reply(s, "-ERR Line too long");
    if (s->io->event != NULL) {
        struct pop3_event ev = {.type = POP3_EVENT_ATTACK, .what = "overlong line"};
        s->io->event(s->ctx, &ev);
    }
    session_close(s);
}

void session_attack(struct pop3_session *s, const char *what)
{
    session_reply(s, "-ERR Protocol abuse, closing the connection");
    if (s->io->event != NULL) {
        struct pop3_event ev = {.type = POP3_EVENT_ATTACK, .what = what};
        s->io->event(s->ctx, &ev);
    }
    session_close(s);
}

bool session_name_attack(struct pop3_session *s, const char *name, size_t len)
{
    const char *what = NULL;

    if (len > POP3_USER_MAX) {
        what = "overlong name";
    } else {
        unsigned directives = 0;
        for (size_t i = 0; i < len && what == NULL; i++) {
            char c = name[i];
            /* A mail address has none of these; a probe for format string,
             * shell or path bugs in whatever reads the logs has them. One
             * "%x" alone may be an old "user%host" route: %n, or two
             * directives, is a probe. */
            if (c == '%') {
                size_t j = i + 1;
                while (j < len && name[j] >= '0' && name[j] <= '9')
                    j++;
                if (j < len && name[j] == 'n')
                    what = "format string";
                else if (j < len && strchr("sxdpc", name[j]) != NULL && ++directives >= 2)
                    what = "format string";
            } else if (strchr("`$;|&<>", c) != NULL)
                what = "shell characters";
            else if (c == '/' || (c == '.' && i + 1 < len && name[i + 1] == '.'))
                what = "path characters";
        }
    }
    if (what == NULL)
        return false;
    session_attack(s, what);
    return true;
}

bool session_bad_command(struct pop3_session *s)
{
    if (s->set.max_bad_commands == 0 || ++s->bad_commands <= s->set.max_bad_commands)
        return false;
    session_attack(s, "bad commands");
    return true;
}

/*
 * Splits "CMD arg1 arg2" at runs of spaces and returns the command length.
 * *too_many_r tells that there are more arguments than any command takes.
 */
static size_t parse_line(const char *line, size_t len, struct pop3_args *a, bool *too_many_r)
{
    size_t i = 0, n;

    memset(a, 0, sizeof(*a));
    *too_many_r = false;
    while (i < len && line[i] != ' ')
        i++;
    n = i;
    if (i < len) {
        a->rest = line + i + 1;
        a->rest_len = len - i - 1;
    }
    for (;;) {
        while (i < len && line[i] == ' ')
            i++;
        if (i == len)
            break;
        size_t start = i;
        while (i < len && line[i] != ' ')
            i++;
        if (a->count == POP3_MAX_ARGS) {
            *too_many_r = true;
            break;
        }
        a->arg[a->count] = line + start;
        a->len[a->count] = i - start;
        a->count++;
    }
    return n;
}

static const char *state_name(enum pop3_state st)
{
    return st == POP3_STATE_AUTHORIZATION ? "before login" : "after login";
}

void pop3_session_input(struct pop3_session *s, const char *line, size_t len)
{
    struct pop3_args args;
    const struct pop3_command *cmd;
    enum cmd_result r;

    if (!pop3_session_wants_input(s))
        return;
    if (s->sasl.phase != SASL_IDLE) {
        sasl_input(s, line, len);
        return;
    }
    if (memchr(line, '\0', len) != NULL) {
        /* No client puts a NUL in a command line. */
        session_attack(s, "NUL byte");
        return;
    }
    bool too_many;
    size_t n = parse_line(line, len, &args, &too_many);
    if (n == 0) {
        if (!session_bad_command(s))
            session_reply(s, "-ERR Empty command");
        return;
    }
    cmd = pop3_command_find(line, n);
    if (cmd == NULL) {
        if (!session_bad_command(s))
            session_reply(s, "-ERR Unknown command");
        return;
    }
    if ((cmd->states & s->state) == 0) {
        session_reply(s, "-ERR %s is not allowed %s", cmd->name, state_name(s->state));
        return;
    }
    if (cmd->raw) {
        if (args.rest_len == 0) {
            if (!session_bad_command(s))
                session_reply(s, "-ERR %s needs an argument", cmd->name);
            return;
        }
    } else if (too_many || args.count > cmd->max_args) {
        if (!session_bad_command(s))
            session_reply(s, "-ERR Too many arguments for %s", cmd->name);
        return;
    } else if (args.count < cmd->min_args) {
        if (!session_bad_command(s))
            session_reply(s, "-ERR Missing argument for %s", cmd->name);
        return;
    }

    s->reply[0] = '\0';
    r = cmd->handler(s, &args);
    switch (r) {
    case CMD_OK:
    case CMD_STREAM:
        session_reply(s, s->reply[0] != '\0' ? "+OK %s" : "+OK", s->reply);
        if (r == CMD_STREAM)
            session_continue(s);
        break;
    case CMD_ERR:
        session_reply(s, "-ERR %s", s->reply);
        break;
    case CMD_ASYNC:
    case CMD_DONE:
        break;
    }
}

void pop3_session_auth_done(struct pop3_session *s, enum pop3_auth_result result,
                            struct mailbox *mb)
{
    s->auth_pending = false;
    if (sasl_auth_done(s, result, mb))
        return;
    if (result != POP3_AUTH_OK) {
        s->have_user = false;
        switch (result) {
        case POP3_AUTH_DISABLED:
            session_reply(s, "-ERR [AUTH] POP3 access is disabled for this account");
            break;
        case POP3_AUTH_IN_USE:
            session_reply(s, "-ERR [IN-USE] Mailbox is in use by another session");
            break;
        case POP3_AUTH_TEMPFAIL:
            session_reply(s, "-ERR [SYS/TEMP] Temporary failure, try again later");
            break;
        case POP3_AUTH_PERMFAIL:
            session_reply(s, "-ERR [SYS/PERM] Mailbox is not available");
            break;
        case POP3_AUTH_LOGIN_DELAY:
            session_reply(s,
                          "-ERR [LOGIN-DELAY] Logged in too recently, wait %u seconds "
                          "between logins",
                          s->set.login_delay);
            break;
        default:
            session_reply(s, "-ERR [AUTH] Authentication failed");
            break;
        }
        return;
    }
    session_enter_transaction(s, mb);
}

void session_enter_transaction(struct pop3_session *s, struct mailbox *mb)
{
    unsigned count = mailbox_count(mb);
    s->deleted = calloc((count + 7) / 8 + 1, 1);
    if (s->deleted == NULL) {
        mailbox_close(&mb);
        session_reply(s, "-ERR [SYS/TEMP] Out of memory");
        return;
    }
    s->mb = mb;
    s->count = count;
    for (unsigned i = 0; i < count; i++)
        s->total_size += mailbox_msg_size(mb, i);
    s->state = POP3_STATE_TRANSACTION;
    session_reply(s, "+OK Logged in, %u message%s (%llu octets)", count, count == 1 ? "" : "s",
                  (unsigned long long)s->total_size);
}

/* Decimal digits of v at p; returns the end. (snprintf is most of the cost
 * of listing a mailbox of 100,000 messages.) */
static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;

    do
        tmp[n++] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

/* Appends LIST or UIDL lines while the client keeps up. */
static void continue_listing(struct pop3_session *s)
{
    char buf[POP3_LIST_CHUNK];
    char *p = buf;

    while (s->cursor < s->count) {
        unsigned i = s->cursor;
        /* A line is at most 10 + 1 + 70 (a UIDL) + 2 octets. */
        if ((size_t)(p - buf) + 100 > sizeof(buf)) {
            session_write(s, buf, (size_t)(p - buf));
            p = buf;
            if (s->io->pending(s->ctx) >= POP3_OUTPUT_HIGH)
                return;
        }
        s->cursor++;
        if (session_is_deleted(s, i))
            continue;
        p = put_u64(p, i + 1);
        *p++ = ' ';
        if (s->out == OUT_LIST) {
            p = put_u64(p, mailbox_msg_size(s->mb, i));
        } else {
            const char *uid = mailbox_msg_uid(s->mb, i);
            size_t len = strnlen(uid, 70);
            memcpy(p, uid, len);
            p += len;
        }
        *p++ = '\r';
        *p++ = '\n';
    }
    memcpy(p, ".\r\n", 3);
    session_write(s, buf, (size_t)(p - buf) + 3);
    s->out = OUT_NONE;
}

/* Sends message bytes through the encoder until the output is full. The
 * encoder writes straight into the caller's output buffer when it offers
 * room (io->reserve), else into a buffer here that is then copied. */
static void continue_message(struct pop3_session *s)
{
    static _Thread_local unsigned char in[POP3_READ_CHUNK];
    static _Thread_local unsigned char spare[DOTSTUFF_MAX_OUT(POP3_READ_CHUNK) + 3];

    while (s->io->pending(s->ctx) < POP3_OUTPUT_HIGH) {
        ssize_t n = dotstuff_done(&s->ds) ? 0 : mail_stream_read(s->mb, s->stream, in, sizeof(in));
        if (n < 0) {
            /* The +OK has gone out: a -ERR now would be read as message
             * text. Closing without the final dot tells the client the
             * message is incomplete, and nothing is deleted. */
            session_close(s);
            return;
        }
        size_t room = n == 0 ? 6 : DOTSTUFF_MAX_OUT((size_t)n);
        unsigned char *out = s->io->reserve != NULL ? s->io->reserve(s->ctx, room) : NULL;
        bool direct = out != NULL;
        if (!direct)
            out = spare;
        size_t m;
        if (n == 0) {
            m = dotstuff_finish(&s->ds, out);
            memcpy(out + m, ".\r\n", 3);
            m += 3;
        } else {
            m = dotstuff_encode(&s->ds, in, (size_t)n, out);
        }
        if (direct)
            s->io->commit(s->ctx, m);
        else
            session_write(s, out, m);
        if (n == 0) {
            mail_stream_close(s->mb, &s->stream);
            s->out = OUT_NONE;
            return;
        }
    }
}

void session_continue(struct pop3_session *s)
{
    if (s->closed)
        return;
    switch (s->out) {
    case OUT_LIST:
    case OUT_UIDL:
        continue_listing(s);
        break;
    case OUT_MSG:
        continue_message(s);
        break;
    case OUT_NONE:
        break;
    }
}

void pop3_session_output_drained(struct pop3_session *s)
{
    session_continue(s);
}
