/*
 * The POP3 state machine (src/pop3/session.c, commands.c, capa.c), driven
 * through its face (pop3.h) with the in-memory mailbox and the scripted
 * I/O. Replies are compared byte for byte wherever Postern defines them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "session_fx.h"

#define TS "<1896.697170952@dbc.mtview.ca.us>"

/* Stored bytes (M), the same with CRLF line ends (W: what LIST counts)
 * and on the wire (S: dot-stuffed). */
#define M1 "Subject: 1\r\n\r\nbody one\r\n"
#define M2 "Subject: 2\n\n.dot line\nlast"
#define S2 "Subject: 2\r\n\r\n..dot line\r\nlast\r\n"
#define M3 "Subject: 3\r\n\r\nl1\r\nl2\r\nl3\r\n"
/* strlen(M1) = 24, W2 = 31, strlen(M3) = 26 */
#define LOGIN_REPLY "+OK Logged in, 3 messages (81 octets)\r\n"

static int fx_new(void **state, const char *apop_ts)
{
    struct fx *f = fx_alloc();

    mock_mailbox_add_str(f->mm, "uid-one", M1);
    mock_mailbox_add_str(f->mm, "uid-two", M2);
    mock_mailbox_add_str(f->mm, "uid-three", M3);
    f->set.apop_timestamp = apop_ts;
    return fx_start(state, f);
}

static int setup(void **state)
{
    return fx_new(state, NULL);
}

static int setup_apop(void **state)
{
    return fx_new(state, TS);
}

/* USER/PASS and an OK answer with the fixture's mailbox. */
static void login(struct fx *f)
{
    unsigned calls = f->io.auth_calls;

    expect_cmd(f, "USER alice", "+OK Send PASS\r\n");
    expect_cmd(f, "PASS secret", "");
    assert_int_equal(f->io.auth_calls, calls + 1);
    pop3_session_auth_done(f->s, POP3_AUTH_OK, mock_mailbox_box(f->mm));
    expect(f, LOGIN_REPLY);
    assert_int_equal(pop3_session_state(f->s), POP3_STATE_TRANSACTION);
}

static void test_greeting(void **state)
{
    struct fx *f = *state;

    pop3_session_start(f->s);
    expect(f, "+OK Postern ready\r\n");
    assert_int_equal(pop3_session_state(f->s), POP3_STATE_AUTHORIZATION);
    assert_true(pop3_session_wants_input(f->s));
    assert_null(pop3_session_user(f->s));
}

static void test_greeting_apop(void **state)
{
    struct fx *f = *state;

    pop3_session_start(f->s);
    expect(f, "+OK Postern ready " TS "\r\n");
}

static void test_user_pass_ok(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "USER alice", "+OK Send PASS\r\n");
    assert_string_equal(pop3_session_user(f->s), "alice");
    expect_cmd(f, "PASS secret", "");
    assert_int_equal(f->io.auth_calls, 1);
    assert_int_equal(f->io.last_auth.mech, POP3_MECH_USER);
    assert_string_equal(f->io.last_auth.user, "alice");
    assert_int_equal(f->io.last_auth.secret_len, 6);
    assert_memory_equal(f->io.last_auth.secret, "secret", 6);
    /* While the answer is out, the session takes nothing. */
    assert_false(pop3_session_wants_input(f->s));
    assert_int_equal(pop3_session_state(f->s), POP3_STATE_AUTHORIZATION);

    pop3_session_auth_done(f->s, POP3_AUTH_OK, mock_mailbox_box(f->mm));
    expect(f, LOGIN_REPLY);
    assert_true(pop3_session_wants_input(f->s));
    assert_int_equal(pop3_session_state(f->s), POP3_STATE_TRANSACTION);
    assert_string_equal(pop3_session_user(f->s), "alice");
    assert_int_equal(f->io.closes, 0);
}

static void test_login_reply_singular_and_empty(void **state)
{
    struct fx *f = *state;
    struct mock_mailbox *one = mock_mailbox_new(), *none = mock_mailbox_new();
    struct pop3_session *s2;

    /* One message: no plural. */
    mock_mailbox_add_str(one, "u", "x\n");
    expect_cmd(f, "USER a", "+OK Send PASS\r\n");
    expect_cmd(f, "PASS b", "");
    pop3_session_auth_done(f->s, POP3_AUTH_OK, mock_mailbox_box(one));
    expect(f, "+OK Logged in, 1 message (3 octets)\r\n");
    pop3_session_destroy(&f->s);
    assert_true(one->closed);

    /* An empty mailbox. */
    s2 = pop3_session_new(&f->set, &f->io.io, &f->io);
    f->s = s2;
    expect_cmd(f, "USER a", "+OK Send PASS\r\n");
    expect_cmd(f, "PASS b", "");
    pop3_session_auth_done(f->s, POP3_AUTH_OK, mock_mailbox_box(none));
    expect(f, "+OK Logged in, 0 messages (0 octets)\r\n");
    expect_cmd(f, "STAT", "+OK 0 0\r\n");
    expect_cmd(f, "LIST", "+OK 0 messages (0 octets)\r\n.\r\n");
    expect_cmd(f, "UIDL", "+OK Unique-ID listing follows\r\n.\r\n");
    expect_cmd(f, "RETR 1", "-ERR No such message\r\n");
    expect_cmd(f, "LIST 1", "-ERR No such message\r\n");
    expect_cmd(f, "QUIT", "+OK Bye, 0 messages deleted\r\n");
    assert_int_equal(none->commits, 0);
    pop3_session_destroy(&f->s);
    assert_true(none->closed);
    mock_mailbox_free(&one);
    mock_mailbox_free(&none);
}

static void test_pass_secret_is_rest_of_line(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "USER alice", "+OK Send PASS\r\n");
    /* Spaces belong to the password, leading and trailing ones too. */
    expect_cmd(f, "PASS  two  words ", "");
    assert_int_equal(f->io.last_auth.secret_len, 12);
    assert_memory_equal(f->io.last_auth.secret, " two  words ", 12);
}

static void test_pass_without_user(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "PASS secret", "-ERR Send USER first\r\n");
    assert_int_equal(f->io.auth_calls, 0);
    assert_true(pop3_session_wants_input(f->s));
}

static void test_pass_missing_argument(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "USER alice", "+OK Send PASS\r\n");
    expect_cmd(f, "PASS", "-ERR PASS needs an argument\r\n");
    expect_cmd(f, "PASS ", "-ERR PASS needs an argument\r\n");
    assert_int_equal(f->io.auth_calls, 0);
}

static void test_user_arguments(void **state)
{
    struct fx *f = *state;
    char line[300];

    expect_cmd(f, "USER", "-ERR Missing argument for USER\r\n");
    expect_cmd(f, "USER a b", "-ERR Too many arguments for USER\r\n");
    expect_cmd(f, "USER a b c d", "-ERR Too many arguments for USER\r\n");
    /* 255 characters is the limit. */
    memcpy(line, "USER ", 5);
    memset(line + 5, 'x', 255);
    line[260] = '\0';
    expect_cmd(f, line, "+OK Send PASS\r\n");
    assert_int_equal(strlen(pop3_session_user(f->s)), 255);
    /* Several spaces separate like one. */
    expect_cmd(f, "USER   bob", "+OK Send PASS\r\n");
    assert_string_equal(pop3_session_user(f->s), "bob");
    expect_cmd(f, "USER carol ", "+OK Send PASS\r\n");
    assert_string_equal(pop3_session_user(f->s), "carol");
    /* Longer is not a name but a probe: the session ends, reporting it. */
    line[260] = 'x';
    line[261] = '\0';
    expect_cmd(f, line, "-ERR Protocol abuse, closing the connection\r\n");
    assert_int_equal(f->io.closes, 1);
    assert_int_equal(f->io.n_events, 1);
    assert_int_equal(f->io.events[0].type, POP3_EVENT_ATTACK);
}

static void test_attack_shapes_in_names(void **state)
{
    struct fx *f = *state;
    static const char *const probes[][2] = {
        {"USER %n%n%n", "format string"},      {"USER %s%s", "format string"},
        {"USER a;reboot", "shell characters"}, {"USER $(id)", "shell characters"},
        {"USER `id`", "shell characters"},     {"USER ../../etc/passwd", "path characters"},
        {"USER a/b", "path characters"},
    };

    /* Names that only look odd are names. */
    expect_cmd(f, "USER user%host@relay.example", "+OK Send PASS\r\n");
    expect_cmd(f, "USER first.last+tag@example.org", "+OK Send PASS\r\n");
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        struct pop3_session *s = pop3_session_new(&f->set, &f->io.io, &f->io);
        unsigned closes = f->io.closes, events = f->io.n_events;
        pop3_session_input(s, probes[i][0], strlen(probes[i][0]));
        expect(f, "-ERR Protocol abuse, closing the connection\r\n");
        assert_int_equal(f->io.closes, closes + 1);
        assert_int_equal(f->io.n_events, events + 1);
        assert_int_equal(f->io.events[events].type, POP3_EVENT_ATTACK);
        assert_int_equal(f->io.auth_calls, 0);
        pop3_session_destroy(&s);
    }
}

static void test_bad_commands_limit(void **state)
{
    struct fx *f = *state;

    pop3_session_destroy(&f->s);
    f->set.max_bad_commands = 3;
    f->s = pop3_session_new(&f->set, &f->io.io, &f->io);
    expect_cmd(f, "XTND", "-ERR Unknown command\r\n");
    expect_cmd(f, "", "-ERR Empty command\r\n");
    expect_cmd(f, "USER", "-ERR Missing argument for USER\r\n");
    assert_int_equal(f->io.closes, 0);
    /* Good commands do not reset the count. */
    expect_cmd(f, "USER alice", "+OK Send PASS\r\n");
    expect_cmd(f, "LAST", "-ERR Protocol abuse, closing the connection\r\n");
    assert_int_equal(f->io.closes, 1);
    assert_int_equal(f->io.events[0].type, POP3_EVENT_ATTACK);
}

static void test_login_delay(void **state)
{
    struct fx *f = *state;

    pop3_session_destroy(&f->s);
    f->set.login_delay = 900;
    f->s = pop3_session_new(&f->set, &f->io.io, &f->io);
    cmd(f, "CAPA");
    assert_non_null(strstr(f->io.out, "\r\nLOGIN-DELAY 900\r\n"));
    mock_io_clear(&f->io);
    expect_cmd(f, "USER alice", "+OK Send PASS\r\n");
    expect_cmd(f, "PASS secret", "");
    pop3_session_auth_done(f->s, POP3_AUTH_LOGIN_DELAY, NULL);
    expect(f, "-ERR [LOGIN-DELAY] Logged in too recently, wait 900 seconds between logins\r\n");
    assert_int_equal(pop3_session_state(f->s), POP3_STATE_AUTHORIZATION);
}

static void test_auth_fail_needs_user_again(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "USER alice", "+OK Send PASS\r\n");
    expect_cmd(f, "PASS wrong", "");
    pop3_session_auth_done(f->s, POP3_AUTH_FAIL, NULL);
    expect(f, "-ERR [AUTH] Authentication failed\r\n");
    assert_int_equal(pop3_session_state(f->s), POP3_STATE_AUTHORIZATION);
    assert_true(pop3_session_wants_input(f->s));
    assert_null(pop3_session_user(f->s));
    expect_cmd(f, "PASS secret", "-ERR Send USER first\r\n");
    assert_int_equal(f->io.auth_calls, 1);
    /* A second attempt works. */
    login(f);
    assert_int_equal(f->io.auth_calls, 2);
}

static void test_auth_result_codes(void **state)
{
    struct fx *f = *state;
    static const struct {
        enum pop3_auth_result result;
        const char *reply;
    } cases[] = {
        {POP3_AUTH_FAIL, "-ERR [AUTH] Authentication failed\r\n"},
        {POP3_AUTH_DISABLED, "-ERR [AUTH] POP3 access is disabled for this account\r\n"},
        {POP3_AUTH_IN_USE, "-ERR [IN-USE] Mailbox is in use by another session\r\n"},
        {POP3_AUTH_TEMPFAIL, "-ERR [SYS/TEMP] Temporary failure, try again later\r\n"},
        {POP3_AUTH_PERMFAIL, "-ERR [SYS/PERM] Mailbox is not available\r\n"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_cmd(f, "USER alice", "+OK Send PASS\r\n");
        expect_cmd(f, "PASS secret", "");
        assert_false(pop3_session_wants_input(f->s));
        pop3_session_auth_done(f->s, cases[i].result, NULL);
        expect(f, cases[i].reply);
        assert_int_equal(pop3_session_state(f->s), POP3_STATE_AUTHORIZATION);
        assert_true(pop3_session_wants_input(f->s));
        expect_cmd(f, "PASS secret", "-ERR Send USER first\r\n");
        expect_cmd(f, "STAT", "-ERR STAT is not allowed before login\r\n");
    }
    assert_int_equal(f->io.closes, 0);
    assert_int_equal(f->io.auth_calls, 5);
}

static void test_apop_disabled(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "APOP alice c4c9334bac560ecc979e58001b3e22fb",
               "-ERR APOP is not enabled on this server\r\n");
    assert_int_equal(f->io.auth_calls, 0);
    assert_null(pop3_session_user(f->s));
}

static void test_apop_enabled(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "APOP mrose c4c9334bac560ecc979e58001b3e22fb", "");
    assert_int_equal(f->io.auth_calls, 1);
    assert_int_equal(f->io.last_auth.mech, POP3_MECH_APOP);
    assert_string_equal(f->io.last_auth.user, "mrose");
    assert_int_equal(f->io.last_auth.secret_len, 32);
    assert_memory_equal(f->io.last_auth.secret, "c4c9334bac560ecc979e58001b3e22fb", 32);
    assert_false(pop3_session_wants_input(f->s));
    pop3_session_auth_done(f->s, POP3_AUTH_FAIL, NULL);
    expect(f, "-ERR [AUTH] Authentication failed\r\n");

    /* Upper-case hex is hex too. */
    expect_cmd(f, "apop mrose C4C9334BAC560ECC979E58001B3E22FB", "");
    assert_int_equal(f->io.auth_calls, 2);
    pop3_session_auth_done(f->s, POP3_AUTH_OK, mock_mailbox_box(f->mm));
    expect(f, LOGIN_REPLY);
    assert_string_equal(pop3_session_user(f->s), "mrose");
    expect_cmd(f, "APOP mrose c4c9334bac560ecc979e58001b3e22fb",
               "-ERR APOP is not allowed after login\r\n");
}

static void test_apop_bad_arguments(void **state)
{
    struct fx *f = *state;
    static const char *const bad[] = {
        "APOP mrose c4c9334bac560ecc979e58001b3e22f",   /* 31 */
        "APOP mrose c4c9334bac560ecc979e58001b3e22fbb", /* 33 */
        "APOP mrose g4c9334bac560ecc979e58001b3e22fb",  /* not hex */
        "APOP mrose c4c9334bac560ecc979e58001b3e22f ",  /* 31 and a space */
        "APOP mrose c4c9334bac560ecc979e58001b3e22-b",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_cmd(f, bad[i], "-ERR APOP digest must be 32 hex digits\r\n");
    expect_cmd(f, "APOP mrose", "-ERR Missing argument for APOP\r\n");
    expect_cmd(f, "APOP", "-ERR Missing argument for APOP\r\n");
    expect_cmd(f, "APOP mrose c4c9334bac560ecc979e58001b3e22fb x",
               "-ERR Too many arguments for APOP\r\n");
    assert_int_equal(f->io.auth_calls, 0);
}

static void test_apop_user_too_long(void **state)
{
    struct fx *f = *state;
    char line[400];

    int n = snprintf(line, sizeof(line), "APOP ");
    memset(line + n, 'u', 256);
    snprintf(line + n + 256, sizeof(line) - (size_t)n - 256, " c4c9334bac560ecc979e58001b3e22fb");
    expect_cmd(f, line, "-ERR Protocol abuse, closing the connection\r\n");
    assert_int_equal(f->io.auth_calls, 0);
    assert_int_equal(f->io.closes, 1);
}

static void test_transaction_commands_before_login(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "STAT", "-ERR STAT is not allowed before login\r\n");
    expect_cmd(f, "LIST", "-ERR LIST is not allowed before login\r\n");
    expect_cmd(f, "LIST 1", "-ERR LIST is not allowed before login\r\n");
    expect_cmd(f, "RETR 1", "-ERR RETR is not allowed before login\r\n");
    expect_cmd(f, "DELE 1", "-ERR DELE is not allowed before login\r\n");
    expect_cmd(f, "NOOP", "-ERR NOOP is not allowed before login\r\n");
    expect_cmd(f, "RSET", "-ERR RSET is not allowed before login\r\n");
    expect_cmd(f, "TOP 1 1", "-ERR TOP is not allowed before login\r\n");
    expect_cmd(f, "UIDL", "-ERR UIDL is not allowed before login\r\n");
    /* The state is checked before the arguments. */
    expect_cmd(f, "RETR", "-ERR RETR is not allowed before login\r\n");
    /* The name is the table's, whatever case the client used. */
    expect_cmd(f, "stat", "-ERR STAT is not allowed before login\r\n");
    assert_int_equal(f->io.closes, 0);
}

static void test_authorization_commands_after_login(void **state)
{
    struct fx *f = *state;

    login(f);
    expect_cmd(f, "USER bob", "-ERR USER is not allowed after login\r\n");
    expect_cmd(f, "PASS x", "-ERR PASS is not allowed after login\r\n");
    expect_cmd(f, "APOP bob c4c9334bac560ecc979e58001b3e22fb",
               "-ERR APOP is not allowed after login\r\n");
    assert_int_equal(f->io.auth_calls, 1);
    assert_string_equal(pop3_session_user(f->s), "alice");
}

static void test_unknown_empty_nul(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "FOO", "-ERR Unknown command\r\n");
    expect_cmd(f, "STATX", "-ERR Unknown command\r\n");
    expect_cmd(f, "STA", "-ERR Unknown command\r\n");
    expect_cmd(f, "AUTH PLAIN", "-ERR Unsupported authentication mechanism\r\n");
    expect_cmd(f, "", "-ERR Empty command\r\n");
    expect_cmd(f, " STAT", "-ERR Empty command\r\n");
    expect_cmd(f, "   ", "-ERR Empty command\r\n");
    /* A tab is not a separator. */
    expect_cmd(f, "USER\talice", "-ERR Unknown command\r\n");
    expect_cmd(f, "USER a", "+OK Send PASS\r\n");
    /* A NUL inside a password is refused before anything is checked, and
     * ends the session: no client sends one. */
    pop3_session_input(f->s, "PASS se\0cret", 12);
    expect(f, "-ERR Protocol abuse, closing the connection\r\n");
    assert_int_equal(f->io.auth_calls, 0);
    assert_int_equal(f->io.closes, 1);
}

static void test_case_insensitive(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "user alice", "+OK Send PASS\r\n");
    expect_cmd(f, "pAsS secret", "");
    pop3_session_auth_done(f->s, POP3_AUTH_OK, mock_mailbox_box(f->mm));
    expect(f, LOGIN_REPLY);
    expect_cmd(f, "stat", "+OK 3 81\r\n");
    expect_cmd(f, "List 2", "+OK 2 31\r\n");
    expect_cmd(f, "uIdL 3", "+OK 3 uid-three\r\n");
    expect_cmd(f, "noop", "+OK\r\n");
    expect_cmd(f, "dele 1", "+OK Message 1 marked for deletion\r\n");
    expect_cmd(f, "rset", "+OK 3 messages (81 octets)\r\n");
    expect_cmd(f, "top 1 0", "+OK Top of message follows\r\nSubject: 1\r\n\r\n.\r\n");
    expect_cmd(f, "retr 3", "+OK 26 octets\r\n" M3 ".\r\n");
    expect_cmd(f, "Quit", "+OK Bye, 0 messages deleted\r\n");
}

static void test_stat_dele_rset(void **state)
{
    struct fx *f = *state;

    login(f);
    expect_cmd(f, "STAT", "+OK 3 81\r\n");
    expect_cmd(f, "DELE 2", "+OK Message 2 marked for deletion\r\n");
    expect_cmd(f, "STAT", "+OK 2 50\r\n");
    expect_cmd(f, "DELE 2", "-ERR Message 2 is deleted\r\n");
    expect_cmd(f, "STAT", "+OK 2 50\r\n");
    expect_cmd(f, "DELE 1", "+OK Message 1 marked for deletion\r\n");
    expect_cmd(f, "STAT", "+OK 1 26\r\n");
    expect_cmd(f, "RETR 1", "-ERR Message 1 is deleted\r\n");
    expect_cmd(f, "TOP 2 0", "-ERR Message 2 is deleted\r\n");
    expect_cmd(f, "LIST 1", "-ERR Message 1 is deleted\r\n");
    expect_cmd(f, "UIDL 2", "-ERR Message 2 is deleted\r\n");
    expect_cmd(f, "RSET", "+OK 3 messages (81 octets)\r\n");
    expect_cmd(f, "STAT", "+OK 3 81\r\n");
    expect_cmd(f, "RETR 1", "+OK 24 octets\r\n" M1 ".\r\n");
    /* After RSET a message can be marked again. */
    expect_cmd(f, "DELE 3", "+OK Message 3 marked for deletion\r\n");
    expect_cmd(f, "STAT", "+OK 2 55\r\n");
    expect_cmd(f, "RSET x", "-ERR Too many arguments for RSET\r\n");
    expect_cmd(f, "STAT x", "-ERR Too many arguments for STAT\r\n");
    expect_cmd(f, "STAT", "+OK 2 55\r\n");
    /* Nothing was touched in the store. */
    assert_int_equal(f->mm->expunge_calls, 0);
}

static void test_list(void **state)
{
    struct fx *f = *state;

    login(f);
    expect_cmd(f, "LIST", "+OK 3 messages (81 octets)\r\n1 24\r\n2 31\r\n3 26\r\n.\r\n");
    expect_cmd(f, "LIST 1", "+OK 1 24\r\n");
    expect_cmd(f, "LIST 2", "+OK 2 31\r\n");
    expect_cmd(f, "LIST 3", "+OK 3 26\r\n");
    expect_cmd(f, "LIST  3 ", "+OK 3 26\r\n");
    expect_cmd(f, "DELE 2", "+OK Message 2 marked for deletion\r\n");
    expect_cmd(f, "LIST", "+OK 2 messages (50 octets)\r\n1 24\r\n3 26\r\n.\r\n");
    expect_cmd(f, "DELE 1", "+OK Message 1 marked for deletion\r\n");
    expect_cmd(f, "DELE 3", "+OK Message 3 marked for deletion\r\n");
    expect_cmd(f, "LIST", "+OK 0 messages (0 octets)\r\n.\r\n");
    expect_cmd(f, "LIST 1 2", "-ERR Too many arguments for LIST\r\n");
    assert_true(pop3_session_wants_input(f->s));
}

static void test_uidl(void **state)
{
    struct fx *f = *state;

    login(f);
    expect_cmd(f, "UIDL",
               "+OK Unique-ID listing follows\r\n1 uid-one\r\n2 uid-two\r\n3 uid-three\r\n.\r\n");
    expect_cmd(f, "UIDL 2", "+OK 2 uid-two\r\n");
    expect_cmd(f, "DELE 1", "+OK Message 1 marked for deletion\r\n");
    expect_cmd(f, "UIDL", "+OK Unique-ID listing follows\r\n2 uid-two\r\n3 uid-three\r\n.\r\n");
    expect_cmd(f, "UIDL 1", "-ERR Message 1 is deleted\r\n");
    expect_cmd(f, "UIDL 4", "-ERR No such message\r\n");
    expect_cmd(f, "UIDL 1 2", "-ERR Too many arguments for UIDL\r\n");
}

/* The argument parser, the same for every command that takes a number. */
static void test_message_number_errors(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *arg, *err;
    } cases[] = {
        {"0", "No such message"},
        {"4", "No such message"},
        {"00", "No such message"},
        {"4294967295", "No such message"},
        {"4294967296", "Invalid message number: number too large"},
        {"99999999999999999999999", "Invalid message number: number too large"},
        {"x", "Invalid message number: not a number"},
        {"-1", "Invalid message number: must not be negative"},
        {"+1", "Invalid message number: must not have a sign"},
        {"1x", "Invalid message number: trailing characters after number"},
        {"1.", "Invalid message number: trailing characters after number"},
        {"1\t", "Invalid message number: trailing characters after number"},
        {"0x1", "Invalid message number: trailing characters after number"},
    };
    static const char *const cmds[] = {"LIST", "UIDL", "RETR", "DELE", "TOP"};
    char line[128], want[128];

    login(f);
    for (size_t c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            snprintf(line, sizeof(line), "%s %s%s", cmds[c], cases[i].arg,
                     strcmp(cmds[c], "TOP") == 0 ? " 1" : "");
            snprintf(want, sizeof(want), "-ERR %s\r\n", cases[i].err);
            expect_cmd(f, line, want);
        }
    }
    /* A leading zero is still a number. */
    expect_cmd(f, "LIST 01", "+OK 1 24\r\n");
    /* Missing arguments. */
    expect_cmd(f, "RETR", "-ERR Missing argument for RETR\r\n");
    expect_cmd(f, "DELE", "-ERR Missing argument for DELE\r\n");
    expect_cmd(f, "TOP", "-ERR Missing argument for TOP\r\n");
    expect_cmd(f, "TOP 1", "-ERR Missing argument for TOP\r\n");
    expect_cmd(f, "RETR 1 2", "-ERR Too many arguments for RETR\r\n");
    expect_cmd(f, "DELE 1 2", "-ERR Too many arguments for DELE\r\n");
    expect_cmd(f, "TOP 1 2 3", "-ERR Too many arguments for TOP\r\n");
    /* Nothing was marked by any of that. */
    expect_cmd(f, "STAT", "+OK 3 81\r\n");
    assert_int_equal(f->mm->opens, 0);
    assert_int_equal(f->io.closes, 0);
}

static void test_retr(void **state)
{
    struct fx *f = *state;

    login(f);
    expect_cmd(f, "RETR 1", "+OK 24 octets\r\n" M1 ".\r\n");
    expect_cmd(f, "RETR 2", "+OK 31 octets\r\n" S2 ".\r\n");
    expect_cmd(f, "RETR 3", "+OK 26 octets\r\n" M3 ".\r\n");
    assert_int_equal(f->mm->opens, 3);
    assert_int_equal(f->mm->open_streams, 0);
    assert_true(pop3_session_wants_input(f->s));
    /* The message went straight into the output buffer... */
    assert_true(f->io.reserves >= 3);
    /* ...and without that, the same bytes through a copy. */
    unsigned reserves = f->io.reserves;
    f->io.io.reserve = NULL;
    expect_cmd(f, "RETR 2", "+OK 31 octets\r\n" S2 ".\r\n");
    expect_cmd(f, "TOP 2 1", "+OK Top of message follows\r\nSubject: 2\r\n\r\n..dot line\r\n.\r\n");
    assert_int_equal(f->io.reserves, reserves);
}

/* The invariant of DESIGN.md 6.6: the size LIST gives is what RETR sends
 * before dot-stuffing (the +OK line and the final dot excluded). */
static void test_retr_size_matches_list(void **state)
{
    struct fx *f = *state;
    static const char *const bodies[] = {
        "", "x", "\n", "\r", ".", "..\n.\n", "a\rb\r\n\nc", "\r\r\n\n\r", "line\nline\r\nend\r",
    };
    struct mock_mailbox *mm = mock_mailbox_new();
    char uid[16], line[32];

    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        snprintf(uid, sizeof(uid), "u%zu", i);
        mock_mailbox_add_str(mm, uid, bodies[i]);
    }
    cmd(f, "USER a");
    cmd(f, "PASS b");
    pop3_session_auth_done(f->s, POP3_AUTH_OK, mock_mailbox_box(mm));
    mock_io_clear(&f->io);
    for (unsigned i = 0; i < mm->count; i++) {
        snprintf(line, sizeof(line), "RETR %u", i + 1);
        cmd(f, line);
        char *body = strstr(f->io.out, "\r\n") + 2;
        size_t body_len = f->io.out_len - (size_t)(body - f->io.out);
        /* Undo the dot-stuffing: a '.' at a line start was doubled. */
        size_t n = 0;
        for (size_t k = 0; k < body_len - 3; k++) {
            bool bol = k == 0 || (k >= 2 && body[k - 1] == '\n' && body[k - 2] == '\r');
            if (bol && body[k] == '.')
                k++;
            n++;
        }
        assert_memory_equal(body + body_len - 3, ".\r\n", 3);
        assert_int_equal(n, mm->msgs[i].size);
        char want[64];
        snprintf(want, sizeof(want), "+OK %llu octets\r\n", (unsigned long long)mm->msgs[i].size);
        assert_memory_equal(f->io.out, want, strlen(want));
        mock_io_clear(&f->io);
    }
    pop3_session_destroy(&f->s);
    mock_mailbox_free(&mm);
}

static void test_retr_chunk_sizes(void **state)
{
    struct fx *f = *state;
    static const size_t chunks[] = {1, 2, 3, 5, 7, 16};

    login(f);
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        f->mm->chunk = chunks[i];
        expect_cmd(f, "RETR 2", "+OK 31 octets\r\n" S2 ".\r\n");
        expect_cmd(f, "TOP 2 1",
                   "+OK Top of message follows\r\nSubject: 2\r\n\r\n..dot line\r\n.\r\n");
    }
}

static void test_top(void **state)
{
    struct fx *f = *state;

    login(f);
    expect_cmd(f, "TOP 3 0", "+OK Top of message follows\r\nSubject: 3\r\n\r\n.\r\n");
    expect_cmd(f, "TOP 3 1", "+OK Top of message follows\r\nSubject: 3\r\n\r\nl1\r\n.\r\n");
    expect_cmd(f, "TOP 3 2", "+OK Top of message follows\r\nSubject: 3\r\n\r\nl1\r\nl2\r\n.\r\n");
    expect_cmd(f, "TOP 3 3", "+OK Top of message follows\r\n" M3 ".\r\n");
    expect_cmd(f, "TOP 3 100", "+OK Top of message follows\r\n" M3 ".\r\n");
    expect_cmd(f, "TOP 3 9223372036854775807", "+OK Top of message follows\r\n" M3 ".\r\n");
    expect_cmd(f, "TOP 2 0", "+OK Top of message follows\r\nSubject: 2\r\n\r\n.\r\n");
    expect_cmd(f, "TOP 2 2", "+OK Top of message follows\r\n" S2 ".\r\n");
    expect_cmd(f, "TOP 3 9223372036854775808", "+OK Top of message follows\r\n" M3 ".\r\n");
    expect_cmd(f, "TOP 3 99999999999999999999999", "+OK Top of message follows\r\n" M3 ".\r\n");
    expect_cmd(f, "TOP 3 x", "-ERR Invalid line count: not a number\r\n");
    expect_cmd(f, "TOP 3 -1", "-ERR Invalid line count: must not be negative\r\n");
    expect_cmd(f, "TOP 3 1x", "-ERR Invalid line count: trailing characters after number\r\n");
    /* The message number is checked first. */
    expect_cmd(f, "TOP 9 x", "-ERR No such message\r\n");
    assert_int_equal(f->mm->open_streams, 0);
}

static void test_noop_and_arguments(void **state)
{
    struct fx *f = *state;

    login(f);
    expect_cmd(f, "NOOP", "+OK\r\n");
    expect_cmd(f, "NOOP x", "-ERR Too many arguments for NOOP\r\n");
    expect_cmd(f, "NOOP ", "+OK\r\n");
    expect_cmd(f, "QUIT now", "-ERR Too many arguments for QUIT\r\n");
    expect_cmd(f, "CAPA x", "-ERR Too many arguments for CAPA\r\n");
    assert_int_equal(f->io.closes, 0);
    assert_int_equal(pop3_session_state(f->s), POP3_STATE_TRANSACTION);
}

#define CAPA_HEAD                                                                                  \
    "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n"               \
    "PIPELINING\r\nEXPIRE NEVER\r\n"

static void test_capa(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "CAPA", CAPA_HEAD "USER\r\nIMPLEMENTATION Postern\r\n.\r\n");
    expect_cmd(f, "capa", CAPA_HEAD "USER\r\nIMPLEMENTATION Postern\r\n.\r\n");
    login(f);
    /* RFC 2449 section 5: what AUTHORIZATION announced, TRANSACTION
     * announces too, though USER itself is refused there. */
    expect_cmd(f, "CAPA", CAPA_HEAD "USER\r\nIMPLEMENTATION Postern\r\n.\r\n");
    expect_cmd(f, "USER bob", "-ERR USER is not allowed after login\r\n");
}

static void test_quit_authorization(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "USER alice", "+OK Send PASS\r\n");
    expect_cmd(f, "QUIT", "+OK Bye\r\n");
    assert_int_equal(f->io.closes, 1);
    assert_false(pop3_session_wants_input(f->s));
    /* Nothing is taken or written after the end. */
    expect_cmd(f, "CAPA", "");
    pop3_session_line_too_long(f->s);
    expect(f, "");
    assert_int_equal(f->io.closes, 1);
    assert_int_equal(f->io.writes_after_close, 0);
}

static void test_quit_nothing_marked(void **state)
{
    struct fx *f = *state;

    login(f);
    expect_cmd(f, "RETR 1", "+OK 24 octets\r\n" M1 ".\r\n");
    expect_cmd(f, "QUIT", "+OK Bye, 0 messages deleted\r\n");
    assert_int_equal(pop3_session_state(f->s), POP3_STATE_UPDATE);
    assert_int_equal(f->io.closes, 1);
    assert_int_equal(f->mm->expunge_calls, 0);
    assert_int_equal(f->mm->commits, 0);
    assert_false(pop3_session_wants_input(f->s));
    expect_cmd(f, "STAT", "");
}

static void test_quit_expunges_marked(void **state)
{
    struct fx *f = *state;

    login(f);
    expect_cmd(f, "DELE 3", "+OK Message 3 marked for deletion\r\n");
    expect_cmd(f, "DELE 1", "+OK Message 1 marked for deletion\r\n");
    expect_cmd(f, "QUIT", "+OK Bye, 2 messages deleted\r\n");
    assert_int_equal(f->mm->expunge_calls, 2);
    assert_true(f->mm->msgs[0].expunged);
    assert_false(f->mm->msgs[1].expunged);
    assert_true(f->mm->msgs[2].expunged);
    assert_int_equal(f->mm->commits, 1);
    assert_int_equal(f->io.closes, 1);
    assert_int_equal(pop3_session_state(f->s), POP3_STATE_UPDATE);
}

static void test_quit_one_marked(void **state)
{
    struct fx *f = *state;

    login(f);
    expect_cmd(f, "DELE 2", "+OK Message 2 marked for deletion\r\n");
    expect_cmd(f, "QUIT", "+OK Bye, 1 message deleted\r\n");
    assert_int_equal(f->mm->expunge_calls, 1);
    assert_int_equal(f->mm->expunge_log[0], 1);
    assert_int_equal(f->mm->commits, 1);
}

static void test_quit_after_rset_expunges_nothing(void **state)
{
    struct fx *f = *state;

    login(f);
    expect_cmd(f, "DELE 1", "+OK Message 1 marked for deletion\r\n");
    expect_cmd(f, "DELE 2", "+OK Message 2 marked for deletion\r\n");
    expect_cmd(f, "RSET", "+OK 3 messages (81 octets)\r\n");
    expect_cmd(f, "QUIT", "+OK Bye, 0 messages deleted\r\n");
    assert_int_equal(f->mm->expunge_calls, 0);
    assert_int_equal(f->mm->commits, 0);
}

static void test_quit_expunge_failure(void **state)
{
    struct fx *f = *state;

    login(f);
    f->mm->msgs[1].fail_expunge = true;
    expect_cmd(f, "DELE 1", "+OK Message 1 marked for deletion\r\n");
    expect_cmd(f, "DELE 2", "+OK Message 2 marked for deletion\r\n");
    expect_cmd(f, "DELE 3", "+OK Message 3 marked for deletion\r\n");
    expect_cmd(f, "QUIT", "-ERR [SYS/TEMP] 1 of 3 messages could not be deleted\r\n");
    /* The others were still removed, and made durable. */
    assert_int_equal(f->mm->expunge_calls, 3);
    assert_true(f->mm->msgs[0].expunged);
    assert_false(f->mm->msgs[1].expunged);
    assert_true(f->mm->msgs[2].expunged);
    assert_int_equal(f->mm->commits, 1);
    assert_int_equal(f->io.closes, 1);
}

static void test_quit_all_expunges_fail(void **state)
{
    struct fx *f = *state;

    login(f);
    f->mm->msgs[0].fail_expunge = true;
    expect_cmd(f, "DELE 1", "+OK Message 1 marked for deletion\r\n");
    expect_cmd(f, "QUIT", "-ERR [SYS/TEMP] 1 of 1 messages could not be deleted\r\n");
    /* Nothing removed: nothing to make durable. */
    assert_int_equal(f->mm->commits, 0);
}

static void test_quit_commit_failure(void **state)
{
    struct fx *f = *state;

    login(f);
    f->mm->fail_commit = true;
    expect_cmd(f, "DELE 1", "+OK Message 1 marked for deletion\r\n");
    expect_cmd(f, "DELE 2", "+OK Message 2 marked for deletion\r\n");
    /* Removed but perhaps not durable: the client is not promised. */
    expect_cmd(f, "QUIT", "-ERR [SYS/TEMP] 2 messages deleted, but not yet safely on disk\r\n");
    assert_int_equal(f->mm->commits, 1);
    assert_int_equal(f->io.closes, 1);
}

static void test_destroy_without_quit(void **state)
{
    struct fx *f = *state;

    login(f);
    expect_cmd(f, "DELE 1", "+OK Message 1 marked for deletion\r\n");
    expect_cmd(f, "DELE 2", "+OK Message 2 marked for deletion\r\n");
    pop3_session_destroy(&f->s);
    assert_true(f->mm->closed);
    assert_int_equal(f->mm->expunge_calls, 0);
    assert_int_equal(f->mm->commits, 0);
    assert_int_equal(f->io.closes, 0);
}

static void test_destroy_while_streaming(void **state)
{
    struct fx *f = *state;

    login(f);
    expect_cmd(f, "DELE 1", "+OK Message 1 marked for deletion\r\n");
    /* A client that stopped reading just before the RETR. */
    f->io.pending_tracks_output = true;
    mock_io_drain(&f->io);
    f->io.pending_fixed = POP3_OUTPUT_HIGH - 10;
    expect_cmd(f, "RETR 2", "+OK 31 octets\r\n");
    assert_int_equal(f->mm->open_streams, 1);
    assert_false(pop3_session_wants_input(f->s));
    pop3_session_destroy(&f->s);
    assert_true(f->mm->closed);
    assert_int_equal(f->mm->open_streams, 0);
    assert_int_equal(f->mm->expunge_calls, 0);
    assert_int_equal(f->io.closes, 0);
}

static void test_destroy_before_login(void **state)
{
    struct fx *f = *state;

    expect_cmd(f, "USER alice", "+OK Send PASS\r\n");
    expect_cmd(f, "PASS secret", "");
    /* The connection ends while the answer is out: nothing to close. */
    pop3_session_destroy(&f->s);
    assert_false(f->mm->closed);
    assert_int_equal(f->io.closes, 0);
}

static void test_vanished_message(void **state)
{
    struct fx *f = *state;

    login(f);
    f->mm->msgs[1].vanished = true;
    expect_cmd(f, "RETR 2", "-ERR [SYS/TEMP] Message 2 is no longer available\r\n");
    expect_cmd(f, "TOP 2 0", "-ERR [SYS/TEMP] Message 2 is no longer available\r\n");
    /* The session goes on; the message still counts until QUIT. */
    assert_true(pop3_session_wants_input(f->s));
    expect_cmd(f, "STAT", "+OK 3 81\r\n");
    expect_cmd(f, "RETR 1", "+OK 24 octets\r\n" M1 ".\r\n");
    /* Deleting it works (the store says gone is gone). */
    expect_cmd(f, "DELE 2", "+OK Message 2 marked for deletion\r\n");
    expect_cmd(f, "QUIT", "+OK Bye, 1 message deleted\r\n");
    assert_int_equal(f->io.closes, 1);
}

static void test_read_error_mid_stream(void **state)
{
    struct fx *f = *state;

    login(f);
    f->mm->chunk = 4;
    f->mm->msgs[2].fail_read = true;
    f->mm->msgs[2].fail_read_at = 10;
    cmd(f, "RETR 3");
    /* The +OK and what could be read; no final dot, and the end. */
    expect(f, "+OK 26 octets\r\nSubject: 3");
    assert_int_equal(f->io.closes, 1);
    assert_false(pop3_session_wants_input(f->s));
    assert_int_equal(f->mm->open_streams, 0);
    expect_cmd(f, "STAT", "");
    pop3_session_output_drained(f->s);
    expect(f, "");
    assert_int_equal(f->io.writes_after_close, 0);
    /* Nothing is removed by an end that was not QUIT. */
    pop3_session_destroy(&f->s);
    assert_int_equal(f->mm->expunge_calls, 0);
}

static void test_read_error_first_read(void **state)
{
    struct fx *f = *state;

    login(f);
    expect_cmd(f, "DELE 1", "+OK Message 1 marked for deletion\r\n");
    f->mm->msgs[1].fail_read = true;
    f->mm->msgs[1].fail_read_at = 0;
    cmd(f, "TOP 2 5");
    expect(f, "+OK Top of message follows\r\n");
    assert_int_equal(f->io.closes, 1);
    assert_int_equal(f->mm->open_streams, 0);
    pop3_session_destroy(&f->s);
    assert_int_equal(f->mm->expunge_calls, 0);
}

static void test_line_too_long(void **state)
{
    struct fx *f = *state;

    pop3_session_line_too_long(f->s);
    expect(f, "-ERR Line too long\r\n");
    assert_int_equal(f->io.closes, 1);
    assert_false(pop3_session_wants_input(f->s));
    expect_cmd(f, "USER a", "");
}

static void test_line_too_long_in_transaction(void **state)
{
    struct fx *f = *state;

    login(f);
    expect_cmd(f, "DELE 1", "+OK Message 1 marked for deletion\r\n");
    pop3_session_line_too_long(f->s);
    expect(f, "-ERR Line too long\r\n");
    assert_int_equal(f->io.closes, 1);
    pop3_session_destroy(&f->s);
    assert_int_equal(f->mm->expunge_calls, 0);
}

static void test_pipelining_transaction(void **state)
{
    struct fx *f = *state;

    login(f);
    /* Commands arriving together are answered in order. */
    cmd(f, "STAT");
    cmd(f, "LIST 2");
    cmd(f, "UIDL");
    cmd(f, "DELE 2");
    cmd(f, "RETR 1");
    cmd(f, "STAT");
    expect(f, "+OK 3 81\r\n"
              "+OK 2 31\r\n"
              "+OK Unique-ID listing follows\r\n1 uid-one\r\n2 uid-two\r\n3 uid-three\r\n.\r\n"
              "+OK Message 2 marked for deletion\r\n"
              "+OK 24 octets\r\n" M1 ".\r\n"
              "+OK 2 50\r\n");
}

/* What the network layer does: offer lines while the session wants them. */
static void pump(struct fx *f, const char *const *lines, size_t n, size_t *next)
{
    while (*next < n && pop3_session_wants_input(f->s)) {
        cmd(f, lines[*next]);
        (*next)++;
    }
}

static void test_pipelining_during_auth(void **state)
{
    struct fx *f = *state;
    static const char *const lines[] = {"USER alice", "PASS secret", "STAT", "LIST 1", "QUIT"};
    size_t next = 0;

    pump(f, lines, 5, &next);
    /* Stopped at the password: the rest waits for the answer. */
    assert_int_equal(next, 2);
    expect(f, "+OK Send PASS\r\n");
    /* A caller that ignores wants_input gets nothing processed. */
    cmd(f, "STAT");
    expect(f, "");
    pop3_session_auth_done(f->s, POP3_AUTH_OK, mock_mailbox_box(f->mm));
    pump(f, lines, 5, &next);
    assert_int_equal(next, 5);
    expect(f, LOGIN_REPLY "+OK 3 81\r\n+OK 1 24\r\n+OK Bye, 0 messages deleted\r\n");
    assert_int_equal(f->io.closes, 1);
}

static void test_pipelining_after_failed_auth(void **state)
{
    struct fx *f = *state;
    static const char *const lines[] = {"USER alice", "PASS wrong", "PASS again", "USER alice",
                                        "PASS secret"};
    size_t next = 0;

    pump(f, lines, 5, &next);
    assert_int_equal(next, 2);
    pop3_session_auth_done(f->s, POP3_AUTH_FAIL, NULL);
    pump(f, lines, 5, &next);
    assert_int_equal(next, 5);
    assert_int_equal(f->io.auth_calls, 2);
    assert_memory_equal(f->io.last_auth.secret, "secret", 6);
    expect(f, "+OK Send PASS\r\n-ERR [AUTH] Authentication failed\r\n"
              "-ERR Send USER first\r\n+OK Send PASS\r\n");
}

/* A large message, every line starting with a dot (the most expansion). */
static char *dotted_message(size_t lines, size_t *len_r, char **wire_r, size_t *wire_len_r)
{
    static const char line[] = ".abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghi\n";
    size_t ll = sizeof(line) - 1;
    char *msg = malloc(lines * ll), *wire = malloc(lines * (ll + 2));

    assert_non_null(msg);
    assert_non_null(wire);
    for (size_t i = 0; i < lines; i++) {
        memcpy(msg + i * ll, line, ll);
        wire[i * (ll + 2)] = '.';
        memcpy(wire + i * (ll + 2) + 1, line, ll - 1);
        memcpy(wire + i * (ll + 2) + ll, "\r\n", 2);
    }
    *len_r = lines * ll;
    *wire_r = wire;
    *wire_len_r = lines * (ll + 2);
    return msg;
}

static void test_backpressure_retr(void **state)
{
    struct fx *f = *state;
    size_t len, wire_len;
    char *wire, *msg = dotted_message(16384, &len, &wire, &wire_len); /* 1 MiB */
    const size_t bound = POP3_OUTPUT_HIGH + DOTSTUFF_MAX_OUT(POP3_READ_CHUNK) + 3;
    char head[64];
    unsigned rounds = 0;

    mock_mailbox_add(f->mm, "big", msg, len);
    cmd(f, "USER a");
    cmd(f, "PASS b");
    pop3_session_auth_done(f->s, POP3_AUTH_OK, mock_mailbox_box(f->mm));
    mock_io_clear(&f->io);
    f->io.pending_tracks_output = true;
    mock_io_drain(&f->io);
    f->io.max_undrained = 0;

    cmd(f, "RETR 4");
    int hl = snprintf(head, sizeof(head), "+OK %llu octets\r\n",
                      (unsigned long long)f->mm->msgs[3].size);
    /* Stopped well before the end. */
    assert_true(f->io.out_len < (size_t)hl + wire_len);
    while (!pop3_session_wants_input(f->s)) {
        assert_true(f->io.undrained <= bound);
        assert_true(f->io.undrained >= POP3_OUTPUT_HIGH);
        /* Further input is refused while the reply is under way. */
        size_t before = f->io.out_len;
        cmd(f, "STAT");
        assert_int_equal(f->io.out_len, before);
        /* Nothing happens until the client has read. */
        pop3_session_output_drained(f->s);
        assert_int_equal(f->io.out_len, before);
        mock_io_drain(&f->io);
        pop3_session_output_drained(f->s);
        assert_true(++rounds < 1000);
    }
    assert_true(rounds >= wire_len / bound);
    assert_true(f->io.max_undrained <= bound);
    assert_int_equal(f->io.out_len, (size_t)hl + wire_len + 3);
    assert_memory_equal(f->io.out, head, (size_t)hl);
    assert_memory_equal(f->io.out + hl, wire, wire_len);
    assert_memory_equal(f->io.out + hl + wire_len, ".\r\n", 3);
    assert_int_equal(f->mm->open_streams, 0);
    /* Once it is over, commands are taken again. */
    mock_io_clear(&f->io);
    expect_cmd(f, "NOOP", "+OK\r\n");
    free(msg);
    free(wire);
}

static void test_backpressure_client_not_reading(void **state)
{
    struct fx *f = *state;
    unsigned rounds = 0;

    login(f);
    f->io.pending_fixed = POP3_OUTPUT_HIGH;
    assert_false(pop3_session_wants_input(f->s));
    f->io.pending_fixed = POP3_OUTPUT_HIGH - 1;
    assert_true(pop3_session_wants_input(f->s));
    /* The RETR starts, but no message byte goes out while the client
     * does not read. */
    f->io.pending_tracks_output = true;
    mock_io_drain(&f->io);
    expect_cmd(f, "RETR 2", "+OK 31 octets\r\n");
    assert_false(pop3_session_wants_input(f->s));
    pop3_session_output_drained(f->s);
    expect(f, "");
    cmd(f, "NOOP");
    expect(f, "");
    /* The client reads again. */
    f->io.pending_fixed = 0;
    while (!pop3_session_wants_input(f->s)) {
        mock_io_drain(&f->io);
        pop3_session_output_drained(f->s);
        assert_true(++rounds < 10);
    }
    expect(f, S2 ".\r\n");
    assert_int_equal(f->mm->open_streams, 0);
    expect_cmd(f, "NOOP", "+OK\r\n");
}

static void test_backpressure_list(void **state)
{
    struct fx *f = *state;
    struct mock_mailbox *mm = mock_mailbox_new();
    char uid[80];
    const unsigned n = 20000;
    unsigned rounds = 0;

    for (unsigned i = 0; i < n; i++) {
        /* 70 characters, the longest UIDL. */
        snprintf(uid, sizeof(uid), "%070u", i);
        mock_mailbox_add_str(mm, uid, "x\n");
    }
    cmd(f, "USER a");
    cmd(f, "PASS b");
    pop3_session_auth_done(f->s, POP3_AUTH_OK, mock_mailbox_box(mm));
    mock_io_clear(&f->io);
    cmd(f, "DELE 2");
    mock_io_clear(&f->io);
    f->io.pending_tracks_output = true;
    mock_io_drain(&f->io);
    f->io.max_undrained = 0;
    cmd(f, "UIDL");
    while (!pop3_session_wants_input(f->s)) {
        mock_io_drain(&f->io);
        pop3_session_output_drained(f->s);
        assert_true(++rounds < 1000);
    }
    /* ~1.5 MB (n lines of 77 octets) in rounds of at most HIGH + a chunk */
    assert_true(rounds >= (size_t)n * 77 / (POP3_OUTPUT_HIGH + POP3_LIST_CHUNK));
    assert_true(f->io.max_undrained <= POP3_OUTPUT_HIGH + POP3_LIST_CHUNK);
    /* Every line there, in order, without the deleted one. */
    const char *p = strstr(f->io.out, "\r\n") + 2;
    for (unsigned i = 0; i < n; i++) {
        if (i == 1)
            continue;
        char want[100];
        int wl = snprintf(want, sizeof(want), "%u %070u\r\n", i + 1, i);
        assert_memory_equal(p, want, (size_t)wl);
        p += wl;
    }
    assert_string_equal(p, ".\r\n");
    mock_io_clear(&f->io);
    pop3_session_destroy(&f->s);
    mock_mailbox_free(&mm);
}

static void test_events(void **state)
{
    struct fx *f = *state;

    login(f);
    expect_cmd(f, "RETR 2", "+OK 31 octets\r\n" S2 ".\r\n");
    expect_cmd(f, "TOP 1 0", "+OK Top of message follows\r\nSubject: 1\r\n\r\n.\r\n");
    assert_int_equal(f->io.n_events, 1);
    assert_int_equal(f->io.events[0].type, POP3_EVENT_RETR);
    assert_int_equal(f->io.events[0].msg, 2);
    assert_string_equal(f->io.events[0].uid, "uid-two");
    assert_int_equal(f->io.events[0].size, 31);
    f->mm->msgs[0].fail_expunge = true;
    cmd(f, "DELE 1");
    cmd(f, "DELE 3");
    mock_io_clear(&f->io);
    cmd(f, "QUIT");
    expect(f, "-ERR [SYS/TEMP] 1 of 2 messages could not be deleted\r\n");
    assert_int_equal(f->io.n_events, 3);
    assert_int_equal(f->io.events[1].type, POP3_EVENT_DELE);
    assert_int_equal(f->io.events[1].msg, 3);
    assert_string_equal(f->io.events[1].uid, "uid-three");
    assert_int_equal(f->io.events[1].size, 26);
    assert_int_equal(f->io.events[2].type, POP3_EVENT_QUIT);
    assert_int_equal(f->io.events[2].deleted, 1);
    assert_int_equal(f->io.events[2].failed, 1);
}

static void test_no_event_hook(void **state)
{
    struct fx *f = *state;

    f->io.io.event = NULL;
    login(f);
    expect_cmd(f, "RETR 1", "+OK 24 octets\r\n" M1 ".\r\n");
    expect_cmd(f, "DELE 1", "+OK Message 1 marked for deletion\r\n");
    expect_cmd(f, "QUIT", "+OK Bye, 1 message deleted\r\n");
    assert_int_equal(f->io.n_events, 0);
    assert_true(f->mm->msgs[0].expunged);
}

/* --- TLS: STLS and the requirement of TLS for credentials --- */

/* Starts the fixture's session again with other settings. */
static void renew(struct fx *f, bool stls, bool tls, bool secure, bool require_tls)
{
    pop3_session_destroy(&f->s);
    f->set.stls = stls;
    f->set.tls = tls;
    f->set.secure = secure;
    f->set.require_tls = require_tls;
    f->s = pop3_session_new(&f->set, &f->io.io, &f->io);
    assert_non_null(f->s);
    mock_io_clear(&f->io);
}

#define TCAPA_HEAD "+OK Capability list follows\r\n"
#define TCAPA_BODY "TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\nEXPIRE NEVER\r\n"
#define TCAPA_TAIL "IMPLEMENTATION Postern\r\n.\r\n"

static void test_stls_upgrade(void **state)
{
    struct fx *f = *state;

    renew(f, true, false, false, true);
    /* Before TLS: STLS offered, USER not. */
    expect_cmd(f, "CAPA", TCAPA_HEAD "STLS\r\n" TCAPA_BODY TCAPA_TAIL);
    expect_cmd(f, "USER alice", "-ERR [AUTH] TLS is required\r\n");
    assert_int_equal(f->io.n_events, 1);
    assert_int_equal(f->io.events[0].type, POP3_EVENT_CLEARTEXT);
    assert_string_equal(f->io.events[0].mech, "USER");
    assert_true(f->io.events[0].has_user);
    assert_string_equal(f->io.events[0].user, "alice");
    /* A password is never passed on as a user name. */
    expect_cmd(f, "PASS hunter2", "-ERR [AUTH] TLS is required\r\n");
    assert_int_equal(f->io.n_events, 2);
    assert_string_equal(f->io.events[1].mech, "PASS");
    assert_false(f->io.events[1].has_user);
    assert_int_equal(f->io.auth_calls, 0);

    expect_cmd(f, "stls", "+OK Begin TLS negotiation\r\n");
    assert_int_equal(f->io.starttls_calls, 1);
    /* The +OK went out before the handshake was asked for. */
    assert_int_equal(f->io.out_len_at_starttls, strlen("+OK Begin TLS negotiation\r\n"));
    /* Until the handshake is done, nothing is read or answered. */
    assert_false(pop3_session_wants_input(f->s));
    cmd(f, "CAPA");
    expect(f, "");
    pop3_session_tls_started(f->s);
    assert_true(pop3_session_wants_input(f->s));
    expect(f, ""); /* RFC 2595: no second greeting */
    expect_cmd(f, "CAPA", TCAPA_HEAD TCAPA_BODY "USER\r\n" TCAPA_TAIL);
    expect_cmd(f, "STLS", "-ERR Already using TLS\r\n");
    assert_int_equal(f->io.starttls_calls, 1);
    login(f);
    expect_cmd(f, "STLS", "-ERR STLS is not allowed after login\r\n");
}

static void test_stls_forgets_user(void **state)
{
    struct fx *f = *state;

    renew(f, true, false, false, false);
    /* require_tls = no: both offered. */
    expect_cmd(f, "CAPA", TCAPA_HEAD "STLS\r\n" TCAPA_BODY "USER\r\n" TCAPA_TAIL);
    expect_cmd(f, "USER alice", "+OK Send PASS\r\n");
    expect_cmd(f, "STLS", "+OK Begin TLS negotiation\r\n");
    pop3_session_tls_started(f->s);
    /* What was said in clear text does not carry over into TLS. */
    expect_cmd(f, "PASS secret", "-ERR Send USER first\r\n");
    assert_int_equal(f->io.auth_calls, 0);
    login(f);
}

static void test_capa_same_after_login_in_clear_text(void **state)
{
    struct fx *f = *state;

    /* require_tls = no, no TLS yet: STLS and USER are announced after
     * login as before it (RFC 2449 section 5, RFC 2595 section 4: "both"),
     * while the commands get -ERR. */
    renew(f, true, false, false, false);
    login(f);
    expect_cmd(f, "CAPA", TCAPA_HEAD "STLS\r\n" TCAPA_BODY "USER\r\n" TCAPA_TAIL);
    expect_cmd(f, "STLS", "-ERR STLS is not allowed after login\r\n");
    assert_int_equal(f->io.starttls_calls, 0);
}

static void test_stls_unavailable(void **state)
{
    struct fx *f = *state;

    renew(f, false, false, false, false);
    expect_cmd(f, "CAPA", TCAPA_HEAD TCAPA_BODY "USER\r\n" TCAPA_TAIL);
    expect_cmd(f, "STLS", "-ERR TLS is not available on this server\r\n");
    expect_cmd(f, "STLS x", "-ERR Too many arguments for STLS\r\n");
    assert_int_equal(f->io.starttls_calls, 0);
    login(f);
}

static void test_implicit_tls_and_exemption(void **state)
{
    struct fx *f = *state;

    /* POP3S: TLS from the start, no STLS. */
    renew(f, true, true, false, true);
    expect_cmd(f, "CAPA", TCAPA_HEAD TCAPA_BODY "USER\r\n" TCAPA_TAIL);
    expect_cmd(f, "STLS", "-ERR Already using TLS\r\n");
    login(f);
    pop3_session_destroy(&f->s);
    mock_mailbox_free(&f->mm);
    f->mm = mock_mailbox_new();
    mock_mailbox_add_str(f->mm, "uid-one", "a\r\n");
    unsigned calls = f->io.auth_calls;

    /* Exempt (loopback, or a proxy that ended TLS): credentials may be
     * sent, and STLS is still offered. */
    renew(f, true, false, true, true);
    expect_cmd(f, "CAPA", TCAPA_HEAD "STLS\r\n" TCAPA_BODY "USER\r\n" TCAPA_TAIL);
    expect_cmd(f, "USER alice", "+OK Send PASS\r\n");
    expect_cmd(f, "PASS secret", "");
    assert_int_equal(f->io.auth_calls, calls + 1);
    assert_int_equal(f->io.n_events, 0);
}

static void test_apop_needs_tls(void **state)
{
    struct fx *f = *state;

    renew(f, true, false, false, true);
    expect_cmd(f, "APOP alice c4c9334bac560ecc979e58001b3e22fb", "-ERR [AUTH] TLS is required\r\n");
    assert_int_equal(f->io.n_events, 1);
    assert_string_equal(f->io.events[0].mech, "APOP");
    assert_string_equal(f->io.events[0].user, "alice");
    assert_int_equal(f->io.auth_calls, 0);
}

int main(void)
{
#define T(name)      cmocka_unit_test_setup_teardown(name, setup, teardown)
#define T_APOP(name) cmocka_unit_test_setup_teardown(name, setup_apop, teardown)
    const struct CMUnitTest tests[] = {
        T(test_greeting),
        T_APOP(test_greeting_apop),
        T(test_stls_upgrade),
        T(test_stls_forgets_user),
        T(test_capa_same_after_login_in_clear_text),
        T(test_stls_unavailable),
        T(test_implicit_tls_and_exemption),
        T_APOP(test_apop_needs_tls),
        T(test_user_pass_ok),
        T(test_login_reply_singular_and_empty),
        T(test_pass_secret_is_rest_of_line),
        T(test_pass_without_user),
        T(test_pass_missing_argument),
        T(test_user_arguments),
        T(test_auth_fail_needs_user_again),
        T(test_auth_result_codes),
        T(test_apop_disabled),
        T_APOP(test_apop_enabled),
        T_APOP(test_apop_bad_arguments),
        T_APOP(test_apop_user_too_long),
        T(test_transaction_commands_before_login),
        T(test_authorization_commands_after_login),
        T(test_unknown_empty_nul),
        T(test_attack_shapes_in_names),
        T(test_bad_commands_limit),
        T(test_login_delay),
        T(test_case_insensitive),
        T(test_stat_dele_rset),
        T(test_list),
        T(test_uidl),
        T(test_message_number_errors),
        T(test_retr),
        T(test_retr_size_matches_list),
        T(test_retr_chunk_sizes),
        T(test_top),
        T(test_noop_and_arguments),
        T(test_capa),
        T(test_quit_authorization),
        T(test_quit_nothing_marked),
        T(test_quit_expunges_marked),
        T(test_quit_one_marked),
        T(test_quit_after_rset_expunges_nothing),
        T(test_quit_expunge_failure),
        T(test_quit_all_expunges_fail),
        T(test_quit_commit_failure),
        T(test_destroy_without_quit),
        T(test_destroy_while_streaming),
        T(test_destroy_before_login),
        T(test_vanished_message),
        T(test_read_error_mid_stream),
        T(test_read_error_first_read),
        T(test_line_too_long),
        T(test_line_too_long_in_transaction),
        T(test_pipelining_transaction),
        T(test_pipelining_during_auth),
        T(test_pipelining_after_failed_auth),
        T(test_backpressure_retr),
        T(test_backpressure_client_not_reading),
        T(test_backpressure_list),
        T(test_events),
        T(test_no_event_hook),
    };
#undef T
#undef T_APOP
    return cmocka_run_group_tests(tests, NULL, NULL);
}
