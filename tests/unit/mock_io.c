/* The scripted struct pop3_io of mock_io.h. */
#include "mock_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *why)
{
    fprintf(stderr, "mock_io: %s\n", why);
    abort();
}

static void io_write(void *ctx, const void *data, size_t size)
{
    struct mock_io *m = ctx;

    m->writes++;
    if (m->closes > 0)
        m->writes_after_close++;
    if (m->out_len + size + 1 > m->out_cap) {
        size_t cap = m->out_cap == 0 ? 4096 : m->out_cap;
        while (cap < m->out_len + size + 1)
            cap *= 2;
        char *out = realloc(m->out, cap);
        if (out == NULL)
            die("out of memory");
        m->out = out;
        m->out_cap = cap;
    }
    memcpy(m->out + m->out_len, data, size);
    m->out_len += size;
    m->out[m->out_len] = '\0';
    m->total_written += size;
    m->undrained += size;
    if (m->undrained > m->max_undrained)
        m->max_undrained = m->undrained;
}

static size_t io_pending(void *ctx)
{
    struct mock_io *m = ctx;

    return m->pending_fixed + (m->pending_tracks_output ? m->undrained : 0);
}

static void io_auth(void *ctx, const struct pop3_auth_req *req)
{
    struct mock_io *m = ctx;
    struct mock_auth_call *a = &m->last_auth;

    m->auth_calls++;
    memset(a, 0, sizeof(*a));
    a->mech = req->mech;
    a->step = req->step;
    if (req->proof != NULL) {
        memcpy(a->proof, req->proof, sizeof(a->proof));
        a->has_proof = true;
    }
    snprintf(a->user, sizeof(a->user), "%s", req->user);
    a->secret_len = req->secret_len;
    if (req->secret != NULL)
        memcpy(a->secret, req->secret,
               req->secret_len < sizeof(a->secret) - 1 ? req->secret_len : sizeof(a->secret) - 1);
}

static void io_close(void *ctx)
{
    struct mock_io *m = ctx;

    m->closes++;
}

static void io_event(void *ctx, const struct pop3_event *ev)
{
    struct mock_io *m = ctx;

    if (m->n_events == m->events_cap) {
        m->events_cap = m->events_cap == 0 ? 16 : m->events_cap * 2;
        m->events = realloc(m->events, m->events_cap * sizeof(*m->events));
        if (m->events == NULL)
            die("out of memory");
    }
    struct mock_event *e = &m->events[m->n_events++];
    memset(e, 0, sizeof(*e));
    e->type = ev->type;
    e->msg = ev->msg;
    if (ev->uid != NULL)
        snprintf(e->uid, sizeof(e->uid), "%s", ev->uid);
    e->size = ev->size;
    e->deleted = ev->deleted;
    e->failed = ev->failed;
    if (ev->user != NULL) {
        snprintf(e->user, sizeof(e->user), "%s", ev->user);
        e->has_user = true;
    }
    if (ev->mech != NULL)
        snprintf(e->mech, sizeof(e->mech), "%s", ev->mech);
}

/* The direct path of the message stream: room handed out, then the used
 * part committed as if written. */
static void *io_reserve(void *ctx, size_t size)
{
    struct mock_io *m = ctx;

    m->reserves++;
    if (size > m->resv_cap) {
        free(m->resv);
        m->resv = malloc(size);
        if (m->resv == NULL)
            die("out of memory");
        m->resv_cap = size;
    }
    m->resv_size = size;
    return m->resv;
}

static void io_commit(void *ctx, size_t used)
{
    struct mock_io *m = ctx;

    if (m->resv_size == 0 || used > m->resv_size)
        die("commit without reserve, or past it");
    m->resv_size = 0;
    io_write(ctx, m->resv, used);
}

static void io_starttls(void *ctx)
{
    struct mock_io *m = ctx;

    m->starttls_calls++;
    m->out_len_at_starttls = m->out_len;
}

static void io_random(void *ctx, void *buf, size_t size)
{
    struct mock_io *m = ctx;
    unsigned char *p = buf;

    for (size_t i = 0; i < size; i++)
        p[i] = (unsigned char)(m->random_byte + i);
}

static int io_channel_binding(void *ctx, unsigned char out[32])
{
    struct mock_io *m = ctx;

    if (!m->cb_available)
        return -1;
    memcpy(out, m->cb, 32);
    return 0;
}

void mock_io_init(struct mock_io *m)
{
    memset(m, 0, sizeof(*m));
    m->io.write = io_write;
    m->io.pending = io_pending;
    m->io.auth = io_auth;
    m->io.close = io_close;
    m->io.event = io_event;
    m->io.starttls = io_starttls;
    m->io.reserve = io_reserve;
    m->io.random = io_random;
    m->io.channel_binding = io_channel_binding;
    m->io.commit = io_commit;
    m->out_cap = 4096;
    m->out = malloc(m->out_cap);
    if (m->out == NULL)
        die("out of memory");
    m->out[0] = '\0';
}

void mock_io_free(struct mock_io *m)
{
    free(m->out);
    free(m->events);
    free(m->resv);
    m->resv = NULL;
    m->out = NULL;
    m->events = NULL;
    m->out_len = m->out_cap = 0;
    m->n_events = m->events_cap = 0;
}

void mock_io_clear(struct mock_io *m)
{
    m->out_len = 0;
    if (m->out != NULL)
        m->out[0] = '\0';
}

void mock_io_drain(struct mock_io *m)
{
    m->undrained = 0;
}
