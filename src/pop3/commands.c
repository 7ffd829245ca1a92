/*
 * The command table and the handlers. The dispatcher in session.c has
 * already checked state and argument count; a handler parses its own
 * arguments, fills s->reply and returns what the dispatcher should write.
 */
#include "pop3/pop3-private.h"

#include <stdio.h>
#include <string.h>

#include "lib/str.h"

#define ERR(...) (snprintf(s->reply, sizeof(s->reply), __VA_ARGS__), CMD_ERR)
#define OK(...)  (snprintf(s->reply, sizeof(s->reply), __VA_ARGS__), CMD_OK)

/* Parses a message number argument into a 0-based index of a message that
 * exists and is not deleted, or fills the precise -ERR reply. */
static int msg_arg(struct pop3_session *s, const char *arg, size_t len, unsigned *i_r)
{
    uint64_t n;
    const char *error;

    if (str_parse_u64(arg, len, UINT32_MAX, &n, &error) < 0) {
        snprintf(s->reply, sizeof(s->reply), "Invalid message number: %s", error);
        return -1;
    }
    if (n == 0 || n > s->count) {
        snprintf(s->reply, sizeof(s->reply), "No such message");
        return -1;
    }
    if (session_is_deleted(s, (unsigned)n - 1)) {
        snprintf(s->reply, sizeof(s->reply), "Message %u is deleted", (unsigned)n);
        return -1;
    }
    *i_r = (unsigned)n - 1;
    return 0;
}

static void emit(struct pop3_session *s, enum pop3_event_type type, unsigned i)
{
    struct pop3_event ev = {.type = type, .msg = i + 1};

    if (s->io->event == NULL)
        return;
    if (s->mb != NULL && i < s->count) {
        ev.uid = mailbox_msg_uid(s->mb, i);
        ev.size = mailbox_msg_size(s->mb, i);
    }
    s->io->event(s->ctx, &ev);
}

/*
 * Credentials before TLS where TLS is required: refused, and reported (the
 * guard alerts on it). The name is passed on only when the command is
 * USER or APOP: a PASS argument is a password.
 */
bool session_cleartext_refused(struct pop3_session *s, const char *mech, const char *user,
                               size_t len)
{
    char name[POP3_USER_MAX + 1];

    if (session_credentials_allowed(s))
        return false;
    if (s->io->event != NULL) {
        struct pop3_event ev = {.type = POP3_EVENT_CLEARTEXT, .mech = mech};
        if (user != NULL) {
            if (len > POP3_USER_MAX)
                len = POP3_USER_MAX;
            memcpy(name, user, len);
            name[len] = '\0';
            ev.user = name;
        }
        s->io->event(s->ctx, &ev);
    }
    snprintf(s->reply, sizeof(s->reply), "[AUTH] TLS is required");
    return true;
}

static enum cmd_result cmd_user(struct pop3_session *s, const struct pop3_args *a)
{
    if (session_cleartext_refused(s, "USER", a->arg[0], a->len[0]))
        return CMD_ERR;
    if (session_name_attack(s, a->arg[0], a->len[0]))
        return CMD_DONE;
    if (a->len[0] > POP3_USER_MAX) {
        s->have_user = false;
        return ERR("User name too long");
    }
    memcpy(s->user, a->arg[0], a->len[0]);
    s->user[a->len[0]] = '\0';
    s->have_user = true;
    /* The same answer for every name: USER must not tell who exists. */
    return OK("Send PASS");
}

enum cmd_result session_start_auth(struct pop3_session *s, enum pop3_mech mech, const char *secret,
                                   size_t len)
{
    struct pop3_auth_req req = {
        .mech = mech,
        .step = POP3_STEP_VERIFY,
        .user = s->user,
        .secret = secret,
        .secret_len = len,
    };

    s->auth_pending = true;
    s->io->auth(s->ctx, &req);
    return CMD_ASYNC;
}

static enum cmd_result cmd_pass(struct pop3_session *s, const struct pop3_args *a)
{
    if (session_cleartext_refused(s, "PASS", NULL, 0))
        return CMD_ERR;
    if (!s->have_user)
        return ERR("Send USER first");
    return session_start_auth(s, POP3_MECH_USER, a->rest, a->rest_len);
}

static enum cmd_result cmd_apop(struct pop3_session *s, const struct pop3_args *a)
{
    if (s->set.apop_timestamp == NULL)
        return ERR("APOP is not enabled on this server");
    if (session_cleartext_refused(s, "APOP", a->arg[0], a->len[0]))
        return CMD_ERR;
    if (session_name_attack(s, a->arg[0], a->len[0]))
        return CMD_DONE;
    if (a->len[0] > POP3_USER_MAX)
        return ERR("User name too long");
    if (a->len[1] != 32)
        return ERR("APOP digest must be 32 hex digits");
    for (size_t i = 0; i < 32; i++) {
        char c = a->arg[1][i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return ERR("APOP digest must be 32 hex digits");
    }
    memcpy(s->user, a->arg[0], a->len[0]);
    s->user[a->len[0]] = '\0';
    s->have_user = true;
    return session_start_auth(s, POP3_MECH_APOP, a->arg[1], a->len[1]);
}

static enum cmd_result cmd_quit(struct pop3_session *s, const struct pop3_args *a)
{
    unsigned deleted = 0, failed = 0;
    const char *error;
    (void)a;

    if (s->state == POP3_STATE_AUTHORIZATION) {
        session_reply(s, "+OK Bye");
        session_close(s);
        return CMD_DONE;
    }
    s->state = POP3_STATE_UPDATE;
    for (unsigned i = 0; i < s->count; i++) {
        if (!session_is_deleted(s, i))
            continue;
        if (mailbox_expunge(s->mb, i, &error) < 0) {
            failed++;
            continue;
        }
        deleted++;
        emit(s, POP3_EVENT_DELE, i);
    }
    /* Removed, but a crash could bring them back: say so rather than
     * promise (a client keeps its copies either way). */
    bool unsynced = deleted > 0 && mailbox_expunge_commit(s->mb, &error) < 0;
    if (s->io->event != NULL) {
        struct pop3_event ev = {.type = POP3_EVENT_QUIT,
                                .msg = s->count,
                                .deleted = deleted,
                                .failed = failed,
                                .unsynced = unsynced};
        s->io->event(s->ctx, &ev);
    }
    if (failed > 0)
        session_reply(s, "-ERR [SYS/TEMP] %u of %u messages could not be deleted", failed,
                      s->n_deleted);
    else if (unsynced)
        session_reply(s, "-ERR [SYS/TEMP] %u messages deleted, but not yet safely on disk",
                      deleted);
    else
        session_reply(s, "+OK Bye, %u message%s deleted", deleted, deleted == 1 ? "" : "s");
    session_close(s);
    return CMD_DONE;
}

static enum cmd_result cmd_stat(struct pop3_session *s, const struct pop3_args *a)
{
    (void)a;
    return OK("%u %llu", s->count - s->n_deleted,
              (unsigned long long)(s->total_size - s->deleted_size));
}

static enum cmd_result cmd_list_or_uidl(struct pop3_session *s, const struct pop3_args *a,
                                        enum out_kind kind)
{
    unsigned i;

    if (a->count == 0) {
        s->out = kind;
        s->cursor = 0;
        if (kind == OUT_LIST)
            snprintf(s->reply, sizeof(s->reply), "%u messages (%llu octets)",
                     s->count - s->n_deleted,
                     (unsigned long long)(s->total_size - s->deleted_size));
        else
            snprintf(s->reply, sizeof(s->reply), "Unique-ID listing follows");
        return CMD_STREAM;
    }
    if (msg_arg(s, a->arg[0], a->len[0], &i) < 0)
        return CMD_ERR;
    if (kind == OUT_LIST)
        return OK("%u %llu", i + 1, (unsigned long long)mailbox_msg_size(s->mb, i));
    return OK("%u %s", i + 1, mailbox_msg_uid(s->mb, i));
}

static enum cmd_result cmd_list(struct pop3_session *s, const struct pop3_args *a)
{
    return cmd_list_or_uidl(s, a, OUT_LIST);
}

static enum cmd_result cmd_uidl(struct pop3_session *s, const struct pop3_args *a)
{
    return cmd_list_or_uidl(s, a, OUT_UIDL);
}

static enum cmd_result start_message(struct pop3_session *s, unsigned i, int64_t lines)
{
    const char *error;

    if (mailbox_msg_open(s->mb, i, &s->stream, &error) < 0)
        return ERR("[SYS/TEMP] Message %u is no longer available", i + 1);
    dotstuff_init(&s->ds, lines);
    s->out = OUT_MSG;
    if (lines < 0) {
        emit(s, POP3_EVENT_RETR, i);
        snprintf(s->reply, sizeof(s->reply), "%llu octets",
                 (unsigned long long)mailbox_msg_size(s->mb, i));
    } else {
        snprintf(s->reply, sizeof(s->reply), "Top of message follows");
    }
    return CMD_STREAM;
}

static enum cmd_result cmd_retr(struct pop3_session *s, const struct pop3_args *a)
{
    unsigned i;

    if (msg_arg(s, a->arg[0], a->len[0], &i) < 0)
        return CMD_ERR;
    return start_message(s, i, -1);
}

static enum cmd_result cmd_top(struct pop3_session *s, const struct pop3_args *a)
{
    unsigned i;
    uint64_t lines;
    const char *error;

    if (msg_arg(s, a->arg[0], a->len[0], &i) < 0)
        return CMD_ERR;
    if (str_parse_u64(a->arg[1], a->len[1], INT64_MAX, &lines, &error) < 0) {
        /* RFC 1939: a count beyond the body's lines sends the whole
         * message, however many digits it has. */
        if (error != str_error_too_large)
            return ERR("Invalid line count: %s", error);
        lines = INT64_MAX;
    }
    return start_message(s, i, (int64_t)lines);
}

static enum cmd_result cmd_dele(struct pop3_session *s, const struct pop3_args *a)
{
    unsigned i;

    if (msg_arg(s, a->arg[0], a->len[0], &i) < 0)
        return CMD_ERR;
    s->deleted[i / 8] |= (uint8_t)(1u << (i % 8));
    s->n_deleted++;
    s->deleted_size += mailbox_msg_size(s->mb, i);
    return OK("Message %u marked for deletion", i + 1);
}

static enum cmd_result cmd_noop(struct pop3_session *s, const struct pop3_args *a)
{
    (void)s;
    (void)a;
    return CMD_OK;
}

static enum cmd_result cmd_rset(struct pop3_session *s, const struct pop3_args *a)
{
    (void)a;
    memset(s->deleted, 0, (s->count + 7) / 8);
    s->n_deleted = 0;
    s->deleted_size = 0;
    return OK("%u messages (%llu octets)", s->count, (unsigned long long)s->total_size);
}

static enum cmd_result cmd_stls(struct pop3_session *s, const struct pop3_args *a)
{
    (void)a;
    if (s->tls)
        return ERR("Already using TLS");
    if (!s->set.stls || s->io->starttls == NULL)
        return ERR("TLS is not available on this server");
    session_reply(s, "+OK Begin TLS negotiation");
    s->have_user = false;
    s->tls_pending = true;
    s->io->starttls(s->ctx);
    return CMD_DONE;
}

static enum cmd_result cmd_capa(struct pop3_session *s, const struct pop3_args *a)
{
    (void)a;
    capa_write(s);
    return CMD_DONE;
}

#define AUTH  POP3_STATE_AUTHORIZATION
#define TRANS POP3_STATE_TRANSACTION

static const struct pop3_command commands[] = {
    /* name,  states,        min, max, raw, handler */
    {"USER", AUTH, 1, 1, false, cmd_user},      {"PASS", AUTH, 1, 1, true, cmd_pass},
    {"APOP", AUTH, 2, 2, false, cmd_apop},      {"CAPA", AUTH | TRANS, 0, 0, false, cmd_capa},
    {"STLS", AUTH, 0, 0, false, cmd_stls},      {"QUIT", AUTH | TRANS, 0, 0, false, cmd_quit},
    {"STAT", TRANS, 0, 0, false, cmd_stat},     {"LIST", TRANS, 0, 1, false, cmd_list},
    {"UIDL", TRANS, 0, 1, false, cmd_uidl},     {"RETR", TRANS, 1, 1, false, cmd_retr},
    {"TOP", TRANS, 2, 2, false, cmd_top},       {"DELE", TRANS, 1, 1, false, cmd_dele},
    {"NOOP", TRANS, 0, 0, false, cmd_noop},     {"RSET", TRANS, 0, 0, false, cmd_rset},
    {"AUTH", AUTH, 0, 2, false, sasl_cmd_auth},
};

const struct pop3_command *pop3_command_find(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (str_eq_nocase(name, len, commands[i].name))
            return &commands[i];
    }
    return NULL;
}
