/*
 * The POP3 session under arbitrary client input (DESIGN.md 6.8: no input
 * can crash the server). The input is cut into lines as the network
 * layer does (LF, with an optional CR before it), offered only while the
 * session wants input; authentication is answered with results that
 * rotate through every pop3_auth_result, and a client that reads slowly
 * is played by draining the output only when the session stalls.
 *
 * Input: byte 0 chooses APOP, the client's speed and where the auth
 * results start; byte 1 the mailbox's failures; byte 2 the TLS settings
 * (STLS offered, TLS required, exempt, SASL off, a channel binding) -- a STLS handshake always
 * succeeds and no credential is ever requested before TLS where it is
 * required; the rest is the
 * conversation. Beyond "no crash, no leak" (the sanitizers) it checks:
 * nothing is removed except during QUIT, no write after close, every
 * reply to a command starts with +OK or -ERR, output between drains stays
 * bounded, and no message stream is left open.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pop3/pop3.h"
#include "mock_io.h"
#include "mock_mailbox.h"
#include "fuzz.h"

#define MAX_LINE 512 /* a small max_line, as the network layer would enforce */

static char *big;
static size_t big_len;

/* More than POP3_OUTPUT_HIGH on the wire, with dots and mixed line ends. */
static void make_big(void)
{
    static const char *const lines[] = {".dot line\n", "plain line\r\n", "..\n", "\n", "x\r"};

    big_len = 0;
    big = malloc(80 * 1024);
    check(big != NULL, "out of memory");
    for (size_t i = 0; big_len + 16 < 80 * 1024; i++) {
        const char *l = lines[i % 5];
        memcpy(big + big_len, l, strlen(l));
        big_len += strlen(l);
    }
}

static struct mock_mailbox *make_mailbox(uint8_t flags)
{
    struct mock_mailbox *mm = mock_mailbox_new();

    mock_mailbox_add_str(mm, "uid-1", "Subject: a\r\n\r\nhello\r\n");
    mock_mailbox_add_str(mm, "uid-2", "Subject: b\n\n.dot\n..two\nno newline");
    mock_mailbox_add_str(mm, "uid-3", "");
    mock_mailbox_add_str(mm, "uid-4", "\r\r\n.\r\n\r");
    mock_mailbox_add(mm, "uid-5", big, big_len);
    static const size_t chunks[] = {0, 1, 3, 7, 64, 1000, 4096, 0}; /* 0: whole reads */
    mm->chunk = chunks[flags & 7];
    mm->msgs[1].vanished = flags & 8;
    if (flags & 16) {
        mm->msgs[4].fail_read = true;
        mm->msgs[4].fail_read_at = 70000;
    }
    mm->msgs[0].fail_expunge = flags & 32;
    mm->fail_commit = flags & 64;
    if (flags & 128) {
        mm->msgs[3].fail_read = true;
        mm->msgs[3].fail_read_at = 0;
    }
    mm->forbid_expunge = true;
    return mm;
}

static bool is_quit(const char *line, size_t len)
{
    return (len == 4 || (len > 4 && line[4] == ' ')) && strncasecmp(line, "QUIT", 4) == 0;
}

struct run {
    struct mock_io io;
    struct pop3_session *s;
    struct mock_mailbox *mm;
    uint8_t mb_flags;
    unsigned answered, next_result, handshakes;
    bool slow;
    bool tls, must_have_tls; /* credentials only over TLS */
};

/* Does what the network layer does while the session takes no input:
 * answers authentication, or lets the client read. */
static void unblock(struct run *r)
{
    static const enum pop3_auth_result results[] = {
        POP3_AUTH_FAIL,   POP3_AUTH_OK,       POP3_AUTH_DISABLED,
        POP3_AUTH_IN_USE, POP3_AUTH_TEMPFAIL, POP3_AUTH_PERMFAIL,
    };
    unsigned rounds = 0;

    while (r->io.closes == 0 && !pop3_session_wants_input(r->s)) {
        check(++rounds < 100000, "session never takes input again");
        if (r->io.starttls_calls > r->handshakes) {
            r->handshakes++;
            r->tls = true;
            pop3_session_tls_started(r->s);
        } else if (r->io.auth_calls > r->answered) {
            enum pop3_auth_result res = results[r->next_result++ % 6];
            r->answered++;
            struct mailbox *mb = NULL;
            if (r->io.last_auth.step == POP3_STEP_SCRAM_SALT && res != POP3_AUTH_TEMPFAIL) {
                pop3_session_scram_salt(r->s, "c2FsdA==", 4096);
                continue;
            }
            if (res == POP3_AUTH_OK && r->io.last_auth.step == POP3_STEP_SCRAM_PROOF) {
                static const unsigned char sig[32];
                pop3_session_scram_signature(r->s, sig);
            }
            /* A mailbox handed over and given back (SCRAM cancelled
             * after the server signature) may be replaced. */
            if (res == POP3_AUTH_OK && r->mm != NULL && r->mm->closed)
                mock_mailbox_free(&r->mm);
            if (res == POP3_AUTH_OK) {
                check(r->mm == NULL, "second login");
                r->mm = make_mailbox(r->mb_flags);
                mb = mock_mailbox_box(r->mm);
            }
            pop3_session_auth_done(r->s, res, mb);
        } else {
            /* Stalled on output: only then does the slow client read. */
            check(r->io.io.pending(&r->io) >= POP3_OUTPUT_HIGH,
                  "no input taken, but nothing to wait for");
            mock_io_drain(&r->io);
            mock_io_clear(&r->io);
            pop3_session_output_drained(r->s);
        }
        if (r->slow)
            check(r->io.undrained <= POP3_OUTPUT_HIGH + DOTSTUFF_MAX_OUT(POP3_READ_CHUNK) + 8,
                  "output not bounded");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run r;
    struct pop3_settings set = {.greeting = "Postern ready"};

    if (size < 3)
        return 0;
    if (big == NULL)
        make_big();
    memset(&r, 0, sizeof(r));
    mock_io_init(&r.io);
    r.slow = data[0] & 2;
    r.io.pending_tracks_output = r.slow;
    r.next_result = (data[0] >> 4) % 6;
    r.mb_flags = data[1];
    if (data[0] & 1)
        set.apop_timestamp = "<1896.697170952@dbc.mtview.ca.us>";
    set.stls = data[2] & 1;
    set.tls = data[2] & 2;
    set.secure = data[2] & 4;
    set.require_tls = data[2] & 8;
    /* Every SASL mechanism, and sometimes a TLS 1.3 channel to bind to. */
    set.sasl_mechs = data[2] & 16 ? 0 : 0xfcu;
    r.io.cb_available = data[2] & 32;
    r.tls = set.tls;
    r.must_have_tls = set.require_tls && !set.secure;
    r.s = pop3_session_new(&set, &r.io.io, &r.io);
    check(r.s != NULL, "out of memory");
    pop3_session_start(r.s);

    const char *p = (const char *)data + 3, *end = (const char *)data + size;
    while (p < end && r.io.closes == 0) {
        unblock(&r);
        if (r.io.closes != 0)
            break;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl != NULL ? nl : end) - p);
        if (len >= MAX_LINE) {
            pop3_session_line_too_long(r.s);
            break;
        }
        if (nl == NULL)
            break; /* an unfinished line is never handed over */
        size_t cmd_len = len > 0 && p[len - 1] == '\r' ? len - 1 : len;
        if (r.mm != NULL)
            r.mm->forbid_expunge = !is_quit(p, cmd_len);
        mock_io_clear(&r.io);
        unsigned auths = r.io.auth_calls;
        pop3_session_input(r.s, p, cmd_len);
        check(r.io.auth_calls == auths || r.tls || !r.must_have_tls,
              "credentials accepted before TLS");
        /* "+ " is a SASL challenge (RFC 5034). */
        if (r.io.out_len > 0)
            check(memcmp(r.io.out, "+OK", 3) == 0 || memcmp(r.io.out, "-ERR", 4) == 0 ||
                      memcmp(r.io.out, "+ ", 2) == 0,
                  "reply without +OK, -ERR or +");
        if (r.mm != NULL)
            r.mm->forbid_expunge = true;
        p = nl + 1;
    }
    /* Sometimes the conversation ends in the middle of a reply or of an
     * authentication: destroy must cope. */
    if (data[0] & 4)
        unblock(&r);
    check(r.io.writes_after_close == 0, "write after close");
    pop3_session_destroy(&r.s);
    if (r.mm != NULL) {
        check(r.mm->closed, "mailbox not closed");
        check(r.mm->open_streams == 0, "stream left open");
        mock_mailbox_free(&r.mm);
    }
    mock_io_free(&r.io);
    return 0;
}
