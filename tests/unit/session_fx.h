/*
 * The fixture of the session tests (test_session.c, test_sasl.c): a
 * pop3_session over mock I/O and a mock mailbox, and the helpers that feed
 * it a line and check what it answered.
 */
#ifndef POSTERN_SESSION_FX_H
#define POSTERN_SESSION_FX_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mock_io.h"
#include "mock_mailbox.h"
#include "pop3/pop3-private.h"

struct fx {
    struct mock_io io;
    struct mock_mailbox *mm;
    struct pop3_session *s;
    struct pop3_settings set;
};

/* A fixture with empty settings and mailbox, for the caller to fill. */
static inline struct fx *fx_alloc(void)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    mock_io_init(&f->io);
    f->mm = mock_mailbox_new();
    f->set.greeting = "Postern ready";
    return f;
}

/* Starts the session on f's settings; f becomes the test's state. */
static inline int fx_start(void **state, struct fx *f)
{
    f->s = pop3_session_new(&f->set, &f->io.io, &f->io);
    assert_non_null(f->s);
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    struct fx *f = *state;

    pop3_session_destroy(&f->s);
    assert_null(f->s);
    /* Whatever happened, the mailbox was closed with no stream left. */
    if (f->mm != NULL)
        assert_int_equal(f->mm->open_streams, 0);
    mock_mailbox_free(&f->mm);
    mock_io_free(&f->io);
    free(f);
    return 0;
}

static inline void cmd(struct fx *f, const char *line)
{
    pop3_session_input(f->s, line, strlen(line));
}

/* The output since the last check must be exactly want; then forget it. */
static inline void expect(struct fx *f, const char *want)
{
    assert_string_equal(f->io.out, want);
    assert_int_equal(f->io.out_len, strlen(want));
    mock_io_clear(&f->io);
}

static inline void expect_cmd(struct fx *f, const char *line, const char *want)
{
    cmd(f, line);
    expect(f, want);
}

#endif
