#ifndef POSTERN_MOCK_MAILBOX_H
#define POSTERN_MOCK_MAILBOX_H

/*
 * An in-memory mailbox behind the store vtable (store.h), so that the
 * protocol code can be driven without files (DESIGN.md section 2: "unit
 * tests drive src/pop3 with an in-memory mailbox").
 *
 * The test owns it. The session's mailbox_close() only marks it closed;
 * any use after that, an index out of range or a read after close_msg
 * abort() (ASan reports the latter), so the same mock serves the fuzz
 * targets, which have no cmocka. mock_mailbox_free() releases it.
 *
 * Failures are injected per message: a message that vanished (open
 * fails), a read that fails once some bytes were returned, an expunge
 * that fails; and per mailbox: reads cut into small chunks, a failing
 * expunge_commit. What the session did is recorded in the fields below.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct mock_msg {
    char *uid;
    unsigned char *data;
    size_t len;
    uint64_t size; /* reported size: the wire size unless overridden */
    bool vanished;
    bool fail_read;
    size_t fail_read_at; /* reads fail once this many bytes were returned */
    bool fail_expunge;
    bool expunged;
};

struct mock_mailbox {
    struct mailbox box; /* must stay first */
    struct mock_msg *msgs;
    unsigned count, cap;

    /* Behaviour. */
    size_t chunk;        /* largest read; 0: as much as asked */
    bool fail_commit;    /* expunge_commit fails */
    bool forbid_expunge; /* expunge or expunge_commit abort() (fuzz invariant) */

    /* Observations. */
    bool closed;
    unsigned opens;        /* successful open_msg calls */
    unsigned open_streams; /* opened and not yet closed */
    unsigned expunge_calls;
    unsigned commits;
    unsigned *expunge_log; /* message numbers (0-based) in call order */
};

struct mock_mailbox *mock_mailbox_new(void);
void mock_mailbox_free(struct mock_mailbox **mm);
/* Adds a message and returns its 0-based number. */
unsigned mock_mailbox_add(struct mock_mailbox *mm, const char *uid, const void *data, size_t len);
unsigned mock_mailbox_add_str(struct mock_mailbox *mm, const char *uid, const char *text);
static inline struct mailbox *mock_mailbox_box(struct mock_mailbox *mm)
{
    return &mm->box;
}
/* Number of messages removed successfully. */
unsigned mock_mailbox_n_expunged(const struct mock_mailbox *mm);

#endif
