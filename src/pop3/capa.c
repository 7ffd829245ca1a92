/* The CAPA answer (RFC 2449): what this session can do in its state. */
#include "pop3/pop3-private.h"

#include <stdio.h>
#include <string.h>

void capa_write(struct pop3_session *s)
{
    char buf[512];
    size_t n = 0;

#define LINE(text)                                                                                 \
    do {                                                                                           \
        memcpy(buf + n, text "\r\n", sizeof(text) + 1);                                            \
        n += sizeof(text) + 1;                                                                     \
    } while (0)

    LINE("+OK Capability list follows");
    /* The same list in both states: RFC 2449 section 5 requires what
     * AUTHORIZATION offers to be announced in TRANSACTION too, and its
     * USER and SASL (and RFC 2595's STLS) say "both / no" differences.
     * The commands themselves still get -ERR after login. Only TLS may
     * change the list (RFC 2595 section 4: the client discards it). */
    if (s->set.stls && !s->tls)
        LINE("STLS");
    LINE("TOP");
    LINE("UIDL");
    LINE("RESP-CODES");
    LINE("AUTH-RESP-CODE");
    LINE("PIPELINING");
    /* Postern never removes mail on its own. */
    LINE("EXPIRE NEVER");
    /* Before TLS, where TLS is required, USER is not offered (RFC 2595
     * section 4: a client must not send a password it was not invited to). */
    if (session_credentials_allowed(s)) {
        LINE("USER");
        /* SASL, and only the mechanisms this connection can use. */
        size_t start = n;
        for (int m = POP3_MECH_PLAIN; m < POP3_MECH_COUNT; m++) {
            if (!sasl_mech_usable(s, (enum pop3_mech)m))
                continue;
            const char *name = pop3_mech_name((enum pop3_mech)m);
            if (n == start) {
                memcpy(buf + n, "SASL", 4);
                n += 4;
            }
            buf[n++] = ' ';
            memcpy(buf + n, name, strlen(name));
            n += strlen(name);
        }
        if (n != start) {
            buf[n++] = '\r';
            buf[n++] = '\n';
        }
    }
    if (s->set.login_delay > 0) {
        /* RFC 2449 section 6.5: the delay, in the state it applies to. */
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "LOGIN-DELAY %u\r\n", s->set.login_delay);
    }
    LINE("IMPLEMENTATION Postern");
    LINE(".");
#undef LINE
    session_write(s, buf, n);
}
