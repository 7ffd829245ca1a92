#ifndef POSTERN_MOCK_IO_H
#define POSTERN_MOCK_IO_H

/*
 * A scripted struct pop3_io: the "network layer" a session test talks to.
 * Everything the session writes is kept in one growing, NUL-terminated
 * buffer; authentication requests, close calls and audit events are
 * recorded; and pending() returns what the test wants, to play a client
 * that does not read:
 *
 *   pending() = pending_fixed + (pending_tracks_output ? undrained : 0)
 *
 * where undrained counts the bytes written since the last mock_io_drain().
 * Hand &m->io and m as ctx to pop3_session_new(). No cmocka here: the fuzz
 * targets use it too.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pop3/pop3.h"

struct mock_auth_call {
    enum pop3_mech mech;
    enum pop3_auth_step step;
    unsigned char proof[32];
    bool has_proof;
    char user[512];
    char secret[2048];
    size_t secret_len;
};

struct mock_event {
    enum pop3_event_type type;
    unsigned msg;
    char uid[128];
    uint64_t size;
    unsigned deleted, failed;
    char user[512]; /* CLEARTEXT */
    char mech[16];  /* CLEARTEXT */
    bool has_user;
};

struct mock_io {
    struct pop3_io io; /* must stay first */

    /* Output since the last mock_io_clear(). */
    char *out;
    size_t out_len, out_cap;
    size_t total_written;

    /* The client's reading speed. */
    size_t pending_fixed;
    bool pending_tracks_output;
    size_t undrained, max_undrained;

    /* Calls. */
    unsigned writes;
    unsigned writes_after_close;
    unsigned closes;
    unsigned starttls_calls;
    unsigned reserves; /* io->reserve calls (set io.reserve = NULL to test without) */
    unsigned char *resv;
    size_t resv_cap, resv_size;
    size_t out_len_at_starttls; /* output written before the handshake began */
    unsigned auth_calls;
    /* io->random gives random_byte, random_byte+1, ...; io->channel_binding
     * gives cb when cb_available. */
    unsigned char random_byte;
    bool cb_available;
    unsigned char cb[32];
    struct mock_auth_call last_auth;
    struct mock_event *events;
    unsigned n_events, events_cap;
};

void mock_io_init(struct mock_io *m);
void mock_io_free(struct mock_io *m);
/* Forgets the output collected so far (undrained is kept). */
void mock_io_clear(struct mock_io *m);
/* The client read everything: undrained becomes 0. */
void mock_io_drain(struct mock_io *m);

#endif
