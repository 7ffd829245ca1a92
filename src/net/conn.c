/*
 * One client connection: the socket (a bufferevent), the line framer in
 * front of the POP3 session, timeouts, and the login round trip through
 * the worker pool. A connection lives on one I/O thread from accept to
 * close; only its login job visits a pool thread, and while it is away the
 * connection outlives even a client that hung up ("zombie") so the job
 * always has somewhere to come back to.
 */
#include "net/net-private.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/bufferevent_struct.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "guard/audit.h"
#include "guard/guard.h"
#include "guard/metrics.h"
#include "lib/keyed_mac.h"
#include "lib/log.h"
#include "net/tls.h"
#include "store/store.h"

struct conn {
    struct worker *w;
    struct bufferevent *bev;
    struct pop3_session *session;
    struct sockaddr_storage addr;
    char ip[INET6_ADDRSTRLEN];
    unsigned port;
    char sid[13];
    struct event *login_timer;
    struct event *delay_timer; /* holds a failed login's answer back */
    struct login_job *job;     /* in the pool, or waiting for the delay */
    bool in_pool;
    bool zombie;  /* the client is gone; freed when the job returns */
    bool closing; /* flushing the last reply */
    bool eof;     /* the client will send nothing more */
    bool logged_in;
    bool tls;                 /* the transport is TLS (POP3S, or after STLS) */
    bool pop3s;               /* accepted on a listen_tls address */
    bool handshaking;         /* TLS handshake under way: nothing can be said */
    bool starttls;            /* STLS answered: switch once its line is consumed */
    bool session_started;     /* greeting sent (POP3S: after the handshake) */
    bool raw_watch;           /* closing: waiting for the socket side to drain */
    bool close_notify_sent;   /* TLS ended with close_notify */
    bool read_ahead;          /* POP3S: OpenSSL reads the socket ahead, see kick_tls_read */
    const char *close_reason; /* for the disconnect line */
    const char *mech;
    unsigned auth_failures;
    uint64_t bytes_in, bytes_out;
    time_t started;
    uint64_t auth_started; /* metrics_now_usec() when credentials went to the verifier */
    char *apop_ts;
    struct evbuffer_iovec resv; /* output space lent to the session */
    struct evbuffer *stage;     /* replies held for a direct write, see batch_end */
    unsigned batch;             /* nesting of batch_begin() */
    struct conn *prev, *next;
};

static void process_input(struct conn *c);
static void kick_tls_read(struct conn *c);
static void conn_free(struct conn *c, const char *reason);
static void stage_flush(struct conn *c);

static void audit_conn(struct audit_line *a, struct conn *c, const char *level, const char *event)
{
    audit_begin(a, level, event);
    audit_tok(a, "sid", c->sid);
    audit_tok(a, "ip", c->ip);
    audit_uint(a, "port", c->port);
}

/* --- struct pop3_io --- */

/*
 * Replies are written straight to the socket when they can be. Through the
 * bufferevent, every reply arms EPOLLOUT (epoll_ctl), waits a loop pass for
 * it and disarms it again (epoll_ctl): two system calls and a pass per
 * reply, which made up a tenth of a plain login's server time. So while
 * the connection handles input or a login result (a batch), short replies
 * gather in c->stage, and batch_end() writes them with one call when the
 * bufferevent has nothing queued; what the socket does not take, and every
 * reply outside a batch, goes through the bufferevent as before. Long
 * output (RETR, a long LIST) always takes the bufferevent, whose write
 * callback drives it.
 */
#define STAGE_MAX (16 * 1024)

/* Writing is enabled on first need: enabled from the start, libevent arms
 * EPOLLOUT at once and disarms it on the first, empty, pass (two epoll_ctl
 * and a loop pass per connection, and as many again after a handshake). */
static void out_queued(struct conn *c)
{
    if (!(bufferevent_get_enabled(c->bev) & EV_WRITE))
        bufferevent_enable(c->bev, EV_WRITE);
}

static void batch_begin(struct conn *c)
{
    c->batch++;
}

static void batch_end(struct conn *c)
{
    if (--c->batch == 0)
        stage_flush(c);
}

/* The staged bytes go to the bufferevent, behind anything queued there. */
static void stage_spill(struct conn *c)
{
    if (evbuffer_get_length(c->stage) > 0) {
        evbuffer_add_buffer(bufferevent_get_output(c->bev), c->stage);
        out_queued(c);
    }
}

/*
 * Writes the staged replies now if nothing is queued before them. Plain
 * sockets and POP3S (an OpenSSL socket BIO) are written directly; after
 * STLS the TLS layer is a filter over another bufferevent, which keeps its
 * own queue, so there the bytes just move to the bufferevent. If SSL_write
 * must wait, the same bytes, still in one piece, become the head of the
 * bufferevent's queue: libevent retries the write with them, as OpenSSL
 * requires (SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER is set by libevent).
 */
static void stage_flush(struct conn *c)
{
    size_t len = evbuffer_get_length(c->stage);

    if (len == 0)
        return;
    if (!c->handshaking && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        if (!c->tls) {
            evbuffer_write(c->stage, bufferevent_getfd(c->bev));
        } else if (c->pop3s) {
            SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
            unsigned char *data = evbuffer_pullup(c->stage, -1);
            ERR_clear_error();
            int r = SSL_write(ssl, data, (int)len);
            if (r > 0)
                evbuffer_drain(c->stage, (size_t)r);
        }
    }
    stage_spill(c);
}

static void io_write(void *ctx, const void *data, size_t size)
{
    struct conn *c = ctx;
    size_t staged = evbuffer_get_length(c->stage);

    c->bytes_out += size;
    if (c->batch > 0 && !c->handshaking && !c->closing && staged + size <= STAGE_MAX &&
        (staged > 0 || evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)) {
        evbuffer_add(c->stage, data, size);
        return;
    }
    stage_spill(c);
    bufferevent_write(c->bev, data, size);
    out_queued(c);
}

static size_t io_pending(void *ctx)
{
    struct conn *c = ctx;

    return evbuffer_get_length(c->stage) + evbuffer_get_length(bufferevent_get_output(c->bev));
}

static void *io_reserve(void *ctx, size_t size)
{
    struct conn *c = ctx;

    stage_spill(c);
    if (evbuffer_reserve_space(bufferevent_get_output(c->bev), (ssize_t)size, &c->resv, 1) != 1 ||
        c->resv.iov_len < size)
        return NULL;
    return c->resv.iov_base;
}

static void io_commit(void *ctx, size_t used)
{
    struct conn *c = ctx;

    c->resv.iov_len = used;
    evbuffer_commit_space(bufferevent_get_output(c->bev), &c->resv, 1);
    out_queued(c);
    c->bytes_out += used;
}

static void job_auth_done(struct auth_request *req);

/*
 * (user, secret) reduced to 16 bytes under a key made at start-up: enough
 * for the guard to recognise a client repeating the same wrong password,
 * useless for learning the password.
 */
static void pair_hash(const struct server *srv, const char *user, const char *secret, size_t len,
                      unsigned char out[16])
{
    unsigned char mac[KEYED_MAC_LEN];

    if (len > AUTH_SECRET_MAX)
        len = AUTH_SECRET_MAX;
    keyed_mac_pair(srv->pair_mac, user, secret, len, mac);
    memcpy(out, mac, 16);
    explicit_bzero(mac, sizeof(mac));
}

static enum auth_mech auth_mech_for(const struct pop3_auth_req *r)
{
    switch (r->mech) {
    case POP3_MECH_APOP:
        return AUTH_MECH_APOP;
    case POP3_MECH_SCRAM:
    case POP3_MECH_SCRAM_PLUS:
        return r->step == POP3_STEP_SCRAM_SALT ? AUTH_MECH_SCRAM_SALT : AUTH_MECH_SCRAM_PROOF;
    case POP3_MECH_OAUTHBEARER:
    case POP3_MECH_XOAUTH2:
        return AUTH_MECH_BEARER;
    default:
        return AUTH_MECH_PASSWORD;
    }
}

static void io_auth(void *ctx, const struct pop3_auth_req *r)
{
    struct conn *c = ctx;
    struct login_job *job = calloc(1, sizeof(*job));

    if (job == NULL) {
        pop3_session_auth_done(c->session, POP3_AUTH_TEMPFAIL, NULL);
        return;
    }
    job->conn = c;
    job->req.mech = auth_mech_for(r);
    c->mech = pop3_mech_name(r->mech);
    snprintf(job->req.user, sizeof(job->req.user), "%s", r->user);
    /* An oversized secret still goes to the pool (and fails there) so it
     * costs the same time as any other failure. */
    job->req.secret_len = r->secret_len;
    if (r->secret_len > 0)
        memcpy(job->req.secret, r->secret,
               r->secret_len < sizeof(job->req.secret) ? r->secret_len : sizeof(job->req.secret));
    if (r->proof != NULL)
        memcpy(job->req.scram_proof, r->proof, sizeof(job->req.scram_proof));
    pair_hash(c->w->srv, r->user, r->secret, r->secret_len, job->pair);
    job->req.apop_timestamp = c->apop_ts;
    job->req.callback = job_auth_done;
    c->auth_started = metrics_now_usec();
    c->job = job;
    c->in_pool = true;
    auth_request(c->w->srv->set.auth, &job->req);
}

static void io_random(void *ctx, void *buf, size_t size)
{
    (void)ctx;
    /* A SCRAM nonce only has to be unpredictable; should OpenSSL fail,
     * the exchange still cannot succeed with a guessed one because the
     * proof covers it, so the fallback is no weaker than a refusal. */
    if (RAND_bytes(buf, (int)size) != 1)
        memset(buf, 0, size);
}

static int io_channel_binding(void *ctx, unsigned char out[32])
{
    struct conn *c = ctx;

    if (!c->tls || c->handshaking)
        return -1;
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    /* RFC 9266: tls-exporter is defined for TLS 1.3 only. */
    if (ssl == NULL || SSL_version(ssl) != TLS1_3_VERSION)
        return -1;
    static const char label[] = "EXPORTER-Channel-Binding";
    return SSL_export_keying_material(ssl, out, 32, label, sizeof(label) - 1, NULL, 0, 1) == 1 ? 0
                                                                                               : -1;
}

/* Ends the connection once the reply queued last has been sent. */
static void conn_close_after_flush(struct conn *c, const char *reason)
{
    if (c->closing)
        return;
    stage_flush(c);
    c->closing = true;
    c->close_reason = reason;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    /* Deferred: this may run inside the session, which must not be freed
     * under its own feet. */
    bufferevent_trigger(c->bev, EV_WRITE, BEV_TRIG_DEFER_CALLBACKS);
}

static void io_close(void *ctx)
{
    struct conn *c = ctx;

    conn_close_after_flush(c, pop3_session_state(c->session) == POP3_STATE_UPDATE ? "logout"
                                                                                  : "closed");
}

static void io_starttls(void *ctx)
{
    struct conn *c = ctx;

    /* The switch happens in process_input(), after the STLS line has
     * been consumed: the input buffer must not change under it. */
    c->starttls = true;
}

static void io_event(void *ctx, const struct pop3_event *ev)
{
    struct conn *c = ctx;
    struct audit_line a;
    const char *user = pop3_session_user(c->session);

    metrics_pop3_event(ev);
    switch (ev->type) {
    case POP3_EVENT_RETR:
    case POP3_EVENT_DELE:
        audit_conn(&a, c, "info", ev->type == POP3_EVENT_RETR ? "retr" : "dele");
        audit_str(&a, "user", user);
        audit_uint(&a, "msg", ev->msg);
        audit_str(&a, "uidl", ev->uid);
        audit_uint(&a, "size", ev->size);
        audit_end(&a);
        if (ev->type == POP3_EVENT_RETR && user != NULL)
            guard_note_retr(c->w->srv->set.guard, user, ev->size, time(NULL));
        return;
    case POP3_EVENT_ATTACK:
        /* The alert is the audit line; the session closes itself. */
        c->close_reason = "protocol abuse";
        guard_note_attack(c->w->srv->set.guard, c->ip, c->sid, ev->what);
        return;
    case POP3_EVENT_QUIT:
        audit_conn(&a, c, ev->failed > 0 || ev->unsynced ? "warning" : "info", "quit");
        audit_str(&a, "user", user);
        audit_uint(&a, "deleted", ev->deleted);
        audit_uint(&a, "failed", ev->failed);
        if (ev->unsynced)
            audit_tok(&a, "sync", "failed");
        audit_end(&a);
        if (user != NULL)
            guard_note_quit(c->w->srv->set.guard, user, c->sid, ev->deleted, ev->msg);
        return;
    case POP3_EVENT_CLEARTEXT:
        /* Credentials offered in clear text: the guard alerts on these. */
        audit_conn(&a, c, "warning", "auth_fail");
        if (ev->user != NULL)
            audit_str(&a, "user", ev->user);
        audit_tok(&a, "mech", ev->mech);
        audit_tok(&a, "tls", "no");
        audit_str(&a, "reason", "cleartext");
        audit_end(&a);
        guard_note_cleartext(c->w->srv->set.guard, c->ip, ev->user, ev->mech);
        return;
    default:
        return;
    }
    audit_end(&a);
}

static const struct pop3_io conn_io = {
    .write = io_write,
    .pending = io_pending,
    .reserve = io_reserve,
    .commit = io_commit,
    .auth = io_auth,
    .close = io_close,
    .event = io_event,
    .starttls = io_starttls,
    .random = io_random,
    .channel_binding = io_channel_binding,
};

/* --- login round trip --- */

/*
 * Opens the account's mailbox for a login job: on a pool thread, or with
 * quick on the I/O thread, where only maildir_open_quick() may run.
 * Returns false when a quick open must be finished on the pool.
 */
static bool open_mailbox(struct login_job *job, bool quick)
{
    const struct net_settings *set = &job->conn->w->srv->set;
    struct auth_request *req = &job->req;
    const char *error;
    const char *location = req->entry.mail[0] != '\0' ? req->entry.mail : set->mail_location;
    char *path =
        store_location_expand(location, set->base_dir, req->entry.user, req->entry.home, &error);

    if (path == NULL) {
        log_error("mail location for %s: %s", req->entry.user, error);
        job->result = POP3_AUTH_PERMFAIL;
        return true;
    }
    enum store_status st =
        quick ? maildir_open_quick(path, &job->mb, &error) : maildir_open(path, &job->mb, &error);
    switch (st) {
    case STORE_OK:
        job->result = POP3_AUTH_OK;
        break;
    case STORE_IN_USE:
        job->result = POP3_AUTH_IN_USE;
        break;
    case STORE_TEMPFAIL:
        log_error("mailbox %s: %s", path, error);
        job->result = POP3_AUTH_TEMPFAIL;
        break;
    case STORE_PERMFAIL:
        log_error("mailbox %s: %s", path, error);
        job->result = POP3_AUTH_PERMFAIL;
        break;
    case STORE_AGAIN:
        free(path);
        return false;
    }
    free(path);
    return true;
}

static void job_open_run(struct pool_job *pj)
{
    struct login_job *job = (struct login_job *)pj;

    open_mailbox(job, false);
    worker_post(job->conn->w, job);
}

/*
 * The credentials are checked: on a pool thread, or (req->quick) at once
 * on the I/O thread when that needed no hashing. The mailbox is opened
 * where the check ran -- unless that was the I/O thread and opening needs
 * a directory scan, which then goes to the pool.
 */
static void job_auth_done(struct auth_request *req)
{
    struct login_job *job = (struct login_job *)req;

    switch (req->status) {
    case AUTH_OK:
        /* The first SCRAM round only fetched the salt: nothing to open. */
        if (req->mech == AUTH_MECH_SCRAM_SALT) {
            job->result = POP3_AUTH_OK;
            break;
        }
        if (!open_mailbox(job, req->quick)) {
            job->req.job.run = job_open_run;
            pool_submit(job->conn->w->srv->set.pool, &job->req.job);
            return;
        }
        break;
    case AUTH_FAIL:
        job->result = POP3_AUTH_FAIL;
        break;
    case AUTH_DISABLED:
        job->result = POP3_AUTH_DISABLED;
        break;
    case AUTH_TEMPFAIL:
        job->result = POP3_AUTH_TEMPFAIL;
        break;
    }
    /* From the I/O thread itself this only queues: the session hears the
     * answer after io->auth has returned, as pop3.h asks. */
    worker_post(job->conn->w, job);
}

static void job_free(struct login_job **jobp)
{
    struct login_job *job = *jobp;

    if (job == NULL)
        return;
    mailbox_close(&job->mb);
    explicit_bzero(job, sizeof(*job));
    free(job);
    *jobp = NULL;
}

static void deliver_result(struct conn *c)
{
    struct login_job *job = c->job;
    enum pop3_auth_result result = job->result;
    struct mailbox *mb = job->mb;

    batch_begin(c);
    job->mb = NULL;
    if (result == POP3_AUTH_OK) {
        c->logged_in = true;
        guard_conn_authenticated(c->w->srv->set.guard, (const struct sockaddr *)&c->addr);
        evtimer_del(c->login_timer);
        if (job->req.mech == AUTH_MECH_SCRAM_PROOF)
            pop3_session_scram_signature(c->session, job->req.scram_sig);
        /* A bearer token names its user itself. */
        pop3_session_set_user(c->session, job->req.user);
    }
    job_free(&c->job);
    pop3_session_auth_done(c->session, result, mb);
    metrics_session_state(POP3_STATE_AUTHORIZATION, pop3_session_state(c->session));
    /* Parallel guessing on one connection ends here (the delay already
     * applies per address). */
    if (result == POP3_AUTH_FAIL && c->auth_failures >= c->w->srv->set.max_auth_failures) {
        /* Said, like the idle timeout: a client that only saw the
         * connection drop would retry at once, or blame the network. */
        static const char msg[] = "-ERR Too many failed logins, closing the connection\r\n";
        io_write(c, msg, sizeof(msg) - 1);
        conn_close_after_flush(c, "too many failed logins");
    } else
        process_input(c);
    batch_end(c);
}

static void delay_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    deliver_result(arg);
}

static const char *result_reason(const struct login_job *job)
{
    switch (job->result) {
    case POP3_AUTH_OK:
        return NULL;
    case POP3_AUTH_IN_USE:
        return "mailbox in use";
    case POP3_AUTH_TEMPFAIL:
        return job->req.status == AUTH_TEMPFAIL ? "passdb unavailable" : "mailbox unavailable";
    case POP3_AUTH_PERMFAIL:
        return "mailbox unusable";
    case POP3_AUTH_LOGIN_DELAY:
        return "login delay";
    default:
        return job->req.reason;
    }
}

void conn_login_done(struct login_job *job)
{
    struct conn *c = job->conn;
    struct audit_line a;

    c->in_pool = false;
    if (c->zombie) {
        job_free(&job);
        free(c);
        return;
    }
    if (job->req.mech == AUTH_MECH_SCRAM_SALT && job->result == POP3_AUTH_OK) {
        /* Half-way through SCRAM: nothing to log yet. */
        char salt[sizeof(job->req.scram_salt)];
        unsigned iter = job->req.scram_iter;
        memcpy(salt, job->req.scram_salt, sizeof(salt));
        job_free(&c->job);
        pop3_session_scram_salt(c->session, salt, iter);
        process_input(c);
        return;
    }
    struct guard_attempt at = {
        .sa = (const struct sockaddr *)&c->addr,
        .ip = c->ip,
        .user = job->req.user,
        .pair = job->pair,
        .ok = job->result == POP3_AUTH_OK,
        .failure = job->result == POP3_AUTH_FAIL,
        .now = time(NULL),
    };
    struct guard_decision d;
    guard_login(c->w->srv->set.guard, &at, &d);
    if (d.banned)
        server_drop_net(c->w->srv, &d.net);
    if (d.too_soon) {
        /* RFC 2449 LOGIN-DELAY: right credentials, too soon. */
        mailbox_close(&job->mb);
        job->result = POP3_AUTH_LOGIN_DELAY;
    }
    if (d.refused) {
        mailbox_close(&job->mb);
        job->result = POP3_AUTH_FAIL;
        job->req.reason = "banned";
        job->req.factor[0] = '\0';
        c->auth_failures = c->w->srv->set.max_auth_failures; /* and the connection ends */
    }
    if (job->result == POP3_AUTH_FAIL)
        c->auth_failures++;
    metrics_login(c->mech, job->result, metrics_now_usec() - c->auth_started);
    const char *reason = result_reason(job);
    audit_conn(&a, c, "info", reason == NULL ? "auth_ok" : "auth_fail");
    audit_str(&a, "user", job->req.user);
    audit_tok(&a, "mech", c->mech);
    if (job->req.factor[0] != '\0')
        audit_tok(&a, "factor", job->req.factor);
    audit_tok(&a, "tls", c->tls ? "yes" : "no");
    if (reason != NULL)
        audit_str(&a, "reason", reason);
    audit_end(&a);

    {
        /* A guesser waits; the answer is the same for every failure. */
        unsigned ms = d.delay_ms;
        /* The delay counts from when the credentials arrived, not from the
         * end of their check: every failure is answered after the same
         * time, whichever scheme the account's hash uses (argon2id takes
         * longer than the dummy yescrypt of an unknown user). */
        if (ms > 0) {
            uint64_t spent_ms = (metrics_now_usec() - c->auth_started) / 1000;
            ms = spent_ms < ms ? ms - (unsigned)spent_ms : 1;
        }
        if (ms > 0) {
            struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
            if (c->delay_timer == NULL)
                c->delay_timer = evtimer_new(c->w->base, delay_cb, c);
            if (c->delay_timer != NULL && evtimer_add(c->delay_timer, &tv) == 0)
                return;
        }
    }
    deliver_result(c);
}

/* --- socket callbacks --- */

static bool has_line(struct evbuffer *in)
{
    struct evbuffer_ptr p = evbuffer_search(in, "\n", 1, NULL);
    return p.pos >= 0;
}

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

/* Callbacks, watermarks and timeouts of the bufferevent the session
 * talks through (the socket, or the TLS layer over it). */
static void setup_bev(struct conn *c)
{
    const struct net_settings *set = &c->w->srv->set;
    struct timeval idle = {set->idle_timeout, 0};

    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, set->max_line);
    bufferevent_setwatermark(c->bev, EV_WRITE, OUTPUT_LOW_WATER, 0);
    /* libevent writes 16 KiB per wake-up by default: a message would take
     * eight times the system calls it needs. */
    bufferevent_set_max_single_write(c->bev, POP3_OUTPUT_HIGH + 2 * POP3_READ_CHUNK);
    bufferevent_set_timeouts(c->bev, &idle, &idle);
}

/*
 * STLS was answered: whatever the client sent after the STLS line was
 * sent in clear text before TLS and is dropped unread, so it can never be
 * taken for a command made inside TLS (CVE-2011-0411). The TLS layer then
 * goes over the socket's bufferevent; the +OK already queued there goes
 * out first, in clear text, as RFC 2595 wants.
 */
static void start_tls(struct conn *c)
{
    struct bufferevent *plain = c->bev;
    struct evbuffer *in = bufferevent_get_input(plain);
    SSL *ssl = tls_ssl_new(c->w->srv->set.tls);

    c->starttls = false;
    evbuffer_drain(in, evbuffer_get_length(in));
    if (ssl == NULL) {
        conn_close_after_flush(c, "TLS unavailable");
        return;
    }
    /* The TLS layer reads whole records below and bounds its own input;
     * the socket side keeps at most 64 KiB each way, which is what
     * makes a slow reader push back through TLS. */
    bufferevent_setwatermark(plain, EV_READ, 0, TLS_RAW_BUFFER);
    bufferevent_setwatermark(plain, EV_WRITE, 0, TLS_RAW_BUFFER);
    /* The write (stall) timeout lives on the socket side: libevent 2.1
     * never disarms a filter's write timer when its output empties, so
     * on the TLS layer it would fire idle_timeout after the last reply
     * and end an idle session without its -ERR, before the read (idle)
     * timeout could. The TLS layer keeps the read timeout only. */
    struct timeval idle = {c->w->srv->set.idle_timeout, 0};
    bufferevent_set_timeouts(plain, NULL, &idle);
    struct bufferevent *bev = bufferevent_openssl_filter_new(
        c->w->base, plain, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        conn_close_after_flush(c, "TLS unavailable");
        return;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    c->bev = bev;
    c->handshaking = true;
    setup_bev(c);
    bufferevent_set_timeouts(c->bev, &idle, NULL);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* The greeting: at connect, or for POP3S once the handshake is done. */
static void start_session(struct conn *c)
{
    c->session_started = true;
    batch_begin(c);
    pop3_session_start(c->session);
    batch_end(c);
}

/* The handshake is done (POP3S at connect, or after STLS). */
static void tls_established(struct conn *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    struct audit_line a;

    c->handshaking = false;
    c->tls = true;
    metrics_conn_tls(c->pop3s);
    audit_conn(&a, c, "info", "tls");
    audit_tok(&a, "version", SSL_get_version(ssl));
    audit_tok(&a, "cipher", SSL_get_cipher_name(ssl));
    audit_tok(&a, "resumed", SSL_session_reused(ssl) ? "yes" : "no");
    X509 *peer = SSL_get0_peer_certificate(ssl);
    if (peer != NULL) {
        char subject[256];
        X509_NAME_oneline(X509_get_subject_name(peer), subject, sizeof(subject));
        audit_str(&a, "client_cert", subject);
        long verify = SSL_get_verify_result(ssl);
        audit_tok(&a, "client_cert_ok", verify == X509_V_OK ? "yes" : "no");
        if (verify != X509_V_OK)
            audit_str(&a, "client_cert_error", X509_verify_cert_error_string(verify));
    }
    audit_end(&a);
    if (c->session_started) {
        pop3_session_tls_started(c->session);
        process_input(c);
    } else {
        start_session(c);
        kick_tls_read(c);
    }
}

/* Why a TLS connection failed, for the disconnect line. */
static const char *tls_failure(struct conn *c, char *buf, size_t size)
{
    unsigned long e = bufferevent_get_openssl_error(c->bev);

    if (e == 0)
        return c->handshaking ? "TLS handshake failed" : "connection error";
    snprintf(buf, size, "%s: %s", c->handshaking ? "TLS handshake failed" : "TLS error",
             ERR_reason_error_string(e) != NULL ? ERR_reason_error_string(e) : "unknown");
    return buf;
}

/*
 * POP3S sockets are read ahead: one read() takes a whole flight of TLS
 * records instead of two per record (header, then body), which saves a
 * third of the system calls of a login. But libevent 2.1 stops reading a
 * socket-based TLS bufferevent once the record it decrypted is used up, and
 * records OpenSSL has already taken off the socket wake no epoll: pipelined
 * commands sent as separate records, or a command that came with the
 * client's Finished, would wait forever. So wherever reading may resume
 * with such records held, the read event is run by hand. (STLS sessions
 * read through a filter bufferevent that keeps reading until OpenSSL wants
 * more, and are not read ahead.)
 */
static void kick_tls_read(struct conn *c)
{
    if (!c->read_ahead || c->closing)
        return;
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    if (ssl != NULL && SSL_has_pending(ssl) && (bufferevent_get_enabled(c->bev) & EV_READ))
        event_active(&c->bev->ev_read, EV_READ, 1);
}

static void process_lines(struct conn *c);

static void process_input(struct conn *c)
{
    batch_begin(c);
    process_lines(c);
    batch_end(c);
}

static void process_lines(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    unsigned max_line = c->w->srv->set.max_line;

    while (!c->closing && pop3_session_wants_input(c->session)) {
        size_t len = evbuffer_get_length(in), eol_len;
        if (len == 0)
            break;
        struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF);
        if ((eol.pos < 0 && len >= max_line) || (eol.pos >= 0 && (size_t)eol.pos + 2 > max_line)) {
            pop3_session_line_too_long(c->session);
            break;
        }
        if (eol.pos < 0)
            break;
        size_t total = (size_t)eol.pos + eol_len;
        char *line = (char *)evbuffer_pullup(in, (ssize_t)total);
        c->bytes_in += total;
        uint64_t t0 = metrics_now_usec();
        pop3_session_input(c->session, line, (size_t)eol.pos);
        metrics_command(line, (size_t)eol.pos, metrics_now_usec() - t0);
        /* The line may have been a password. */
        explicit_bzero(line, total);
        evbuffer_drain(in, total);
        if (c->starttls) {
            /* The +OK goes out in clear text, before the TLS layer. */
            stage_flush(c);
            start_tls(c);
            return;
        }
    }
    if (c->closing)
        return;
    bool idle = pop3_session_wants_input(c->session);
    if (c->eof) {
        /* Whatever the client asked for before it stopped sending still
         * reaches it; then the connection ends (removing nothing). */
        if (idle && !has_line(in))
            conn_close_after_flush(c, "client closed");
        return;
    }
    /* A session busy with a reply reads nothing: pipelined commands wait
     * in the kernel, and the idle timer runs on the output side. While
     * only a login is being checked, reading goes on (the input buffer is
     * capped at a line), which spares two epoll_ctl per login. */
    if (idle) {
        bufferevent_enable(c->bev, EV_READ);
        kick_tls_read(c);
    } else if (!c->in_pool) {
        bufferevent_disable(c->bev, EV_READ);
    }
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    process_input(arg);
}

/* After STLS the socket's own bufferevent sits below the TLS layer and
 * may still hold encrypted bytes when the TLS layer's output is empty. */
static void raw_output_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    struct conn *c = arg;

    if (info->n_deleted > 0 && evbuffer_get_length(buf) == 0)
        bufferevent_trigger(c->bev, EV_WRITE,
                            BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;

    if (c->closing) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) > 0)
            return;
        if (c->tls && !c->close_notify_sent) {
            /* Everything went through TLS: end it properly, so the client
             * can tell the end of the session from a cut connection. */
            c->close_notify_sent = true;
            SSL_shutdown(bufferevent_openssl_get_ssl(bev));
        }
        struct bufferevent *raw = bufferevent_get_underlying(bev);
        struct evbuffer *raw_out = raw != NULL ? bufferevent_get_output(raw) : NULL;
        if (raw_out != NULL && evbuffer_get_length(raw_out) > 0) {
            if (!c->raw_watch) {
                c->raw_watch = true;
                evbuffer_add_cb(raw_out, raw_output_cb, c);
            }
            return;
        }
        conn_free(c, c->close_reason);
        return;
    }
    pop3_session_output_drained(c->session);
    process_input(c);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    static const char idle_msg[] = "-ERR Disconnected for inactivity\r\n";

    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        tls_established(c);
        return;
    }
    if ((what & BEV_EVENT_EOF) && !c->handshaking) {
        c->eof = true;
        if (!c->closing)
            process_input(c);
        return;
    }
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && !c->closing) {
        io_write(c, idle_msg, sizeof(idle_msg) - 1);
        conn_close_after_flush(c, "idle timeout");
        /* The flush gets the idle time again, then the connection goes. */
        return;
    }
    char why[256];
    conn_free(c, (what & BEV_EVENT_TIMEOUT) ? "timeout"
                 : c->tls || c->handshaking ? tls_failure(c, why, sizeof(why))
                                            : "connection error");
}

static void login_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    static const char msg[] = "-ERR Login timeout, closing\r\n";

    (void)fd;
    (void)what;
    if (c->handshaking) {
        /* A stalled handshake: there is no channel to say anything on. */
        conn_free(c, "login timeout in TLS handshake");
        return;
    }
    if (c->closing)
        return;
    io_write(c, msg, sizeof(msg) - 1);
    conn_close_after_flush(c, "login timeout");
}

/* --- life cycle --- */

#define LINGER_SECS      2
#define LINGER_MAX_BYTES (256 * 1024)

static void linger_end(struct lingering *l)
{
    event_free(l->ev);
    l->ev = NULL;
    close(l->fd);
}

static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lingering *l = arg;
    char buf[16384];
    ssize_t n;

    if (what & EV_READ) {
        do
            n = read(fd, buf, sizeof(buf));
        while (n > 0 && (l->discarded += (size_t)n) < LINGER_MAX_BYTES);
        if (n < 0 && (errno == EAGAIN || errno == EINTR) && time(NULL) < l->until)
            return;
    }
    /* The client's FIN, an error, the time or the byte budget is up. */
    linger_end(l);
}

/*
 * A socket closed with input unread sends a reset instead of a FIN, and
 * on a real network a reset can overtake the last reply still in flight
 * (the "-ERR Line too long", or the "+OK" of a QUIT with more commands
 * pipelined behind it): the client would see only the reset. Such a
 * socket is shut for writing after the reply and kept a little while,
 * what the client still sends being discarded, as Apache's lingering
 * close does. A duplicate descriptor keeps it open once the bufferevent
 * has closed its own.
 */
static void linger_close(struct worker *w, evutil_socket_t fd)
{
    static const struct timeval tv = {LINGER_SECS, 0};
    struct lingering *l = NULL;
    int unread = 0;

    if (fd < 0 || ioctl(fd, FIONREAD, &unread) < 0 || unread <= 0)
        return;
    for (unsigned i = 0; i < LINGER_SLOTS && l == NULL; i++) {
        if (w->lingering[i].ev == NULL)
            l = &w->lingering[i];
    }
    if (l == NULL)
        return;
    evutil_socket_t dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0)
        return;
    l->ev = event_new(w->base, dup, EV_READ | EV_PERSIST, linger_cb, l);
    if (l->ev == NULL) {
        close(dup);
        return;
    }
    l->fd = dup;
    l->until = time(NULL) + LINGER_SECS;
    l->discarded = 0;
    shutdown(dup, SHUT_WR);
    event_add(l->ev, &tv);
}

static void conn_free(struct conn *c, const char *reason)
{
    struct worker *w = c->w;
    struct audit_line a;
    const char *user = c->session != NULL ? pop3_session_user(c->session) : NULL;

    audit_conn(&a, c, "info", "disconnect");
    if (c->logged_in && user != NULL)
        audit_str(&a, "user", user);
    audit_str(&a, "reason", reason);
    audit_uint(&a, "in", c->bytes_in);
    audit_uint(&a, "out", c->bytes_out);
    audit_uint(&a, "secs", (uint64_t)(time(NULL) - c->started));
    audit_end(&a);

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    guard_conn_close(w->srv->set.guard, (const struct sockaddr *)&c->addr, c->logged_in);
    metrics_conn_close(c->pop3s, c->tls);
    metrics_session_state(pop3_session_state(c->session), METRICS_NO_SESSION);
    /* Ends the session: an open mailbox is closed, nothing is removed. */
    pop3_session_destroy(&c->session);
    linger_close(w, bufferevent_getfd(c->bev));
    bufferevent_free(c->bev);
    evbuffer_free(c->stage);
    event_free(c->login_timer);
    if (c->delay_timer != NULL)
        event_free(c->delay_timer);
    free(c->apop_ts);
    if (c->in_pool) {
        c->zombie = true;
        return;
    }
    job_free(&c->job);
    free(c);
}

void conn_close_all(struct worker *w)
{
    while (w->conns != NULL)
        conn_free(w->conns, "server shutdown");
    for (unsigned i = 0; i < LINGER_SLOTS; i++) {
        if (w->lingering[i].ev != NULL)
            linger_end(&w->lingering[i]);
    }
}

void conn_drop_net(struct worker *w, const struct guard_net *net)
{
    static const char msg[] =
        "-ERR [SYS/TEMP] Too many failed logins from your network, try again later\r\n";
    struct guard *g = w->srv->set.guard;

    for (struct conn *c = w->conns; c != NULL; c = c->next) {
        struct guard_net n;
        /* One with a login under way keeps it (its job must come back to
         * it); the three-failure limit ends it soon. */
        if (c->logged_in || c->closing || c->zombie || c->job != NULL)
            continue;
        guard_net_of(g, (const struct sockaddr *)&c->addr, &n);
        if (!guard_net_equal(&n, net))
            continue;
        if (!c->handshaking)
            io_write(c, msg, sizeof(msg) - 1);
        conn_close_after_flush(c, "banned");
    }
}

/* 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

/* A connection the guard turned away: one line of explanation (in clear
 * text, also on the POP3S port: it is all the client can be told) and, for
 * the cases an operator wants to see, an audit line. */
static void refuse(int fd, const struct sockaddr *sa, enum guard_verdict v)
{
    static const char full[] = "-ERR [SYS/TEMP] Too many connections, try again later\r\n";
    static const char banned[] =
        "-ERR [SYS/TEMP] Too many failed logins from your network, try again later\r\n";
    static const char preauth[] =
        "-ERR [SYS/TEMP] Too many connections not logged in from your address\r\n";
    const char *msg = v == GUARD_BANNED ? banned : v == GUARD_TOO_MANY_PREAUTH ? preauth : full;

    /* The audit line is written before the client is told, so whoever has
     * seen the answer (a test, an operator) also finds the line. */
    if (v == GUARD_BANNED || v == GUARD_TOO_MANY_PREAUTH) {
        char ip[INET6_ADDRSTRLEN] = "";
        unsigned port = 0;
        if (sa->sa_family == AF_INET6) {
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof(ip));
            port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
        } else if (sa->sa_family == AF_INET) {
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
            port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
        }
        struct audit_line a;
        audit_begin(&a, "warning", "refused");
        audit_tok(&a, "ip", ip);
        audit_uint(&a, "port", port);
        audit_str(&a, "reason", v == GUARD_BANNED ? "banned" : "too many unauthenticated");
        audit_end(&a);
    }
    if (send(fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        /* The client goes away without the explanation. */
    }
    close(fd);
}

void conn_accept(struct worker *w, int fd, const struct sockaddr *sa, int salen, bool tls)
{
    struct server *srv = w->srv;
    const struct net_settings *set = &srv->set;
    struct conn *c;
    int one = 1;

    if ((size_t)salen > sizeof(c->addr))
        salen = sizeof(c->addr);
    enum guard_verdict v = guard_conn_open(set->guard, sa);
    c = v == GUARD_ACCEPT ? calloc(1, sizeof(*c)) : NULL;
    if (c == NULL) {
        refuse(fd, sa, v);
        if (v == GUARD_ACCEPT)
            guard_conn_close(set->guard, sa, false);
        return;
    }
    c->w = w;
    c->started = time(NULL);
    memcpy(&c->addr, sa, (size_t)salen);
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, c->ip, sizeof(c->ip));
        c->port = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, c->ip, sizeof(c->ip));
        c->port = ntohs(s4->sin_port);
    }
    uint64_t n = __atomic_fetch_add(&srv->sid_base, 1, __ATOMIC_RELAXED);
    snprintf(c->sid, sizeof(c->sid), "%012llx", (unsigned long long)(n & 0xffffffffffffULL));
    /* Replies are whole lines already: Nagle would only add a delay. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (tls) {
        /* POP3S: the handshake comes first, the greeting after it. */
        SSL *ssl = tls_ssl_new(set->tls);
        if (ssl != NULL) {
            c->bev = bufferevent_openssl_socket_new(w->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                                    BEV_OPT_CLOSE_ON_FREE);
            if (c->bev == NULL) {
                SSL_free(ssl);
            } else {
                bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
                SSL_set_read_ahead(ssl, 1);
                c->read_ahead = true;
                /* libevent enables writing for the handshake from the
                 * start, though the server speaks only after the
                 * ClientHello (and libevent arms EPOLLOUT itself should a
                 * flight not fit). Left on, it is armed again once the
                 * session opens, for a wake-up with nothing to write. */
                bufferevent_disable(c->bev, EV_WRITE);
            }
        }
        c->handshaking = true;
    } else {
        c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    c->login_timer = evtimer_new(w->base, login_timeout_cb, c);
    c->stage = evbuffer_new();
    if (set->apop) {
        /* Unique is all RFC 1939 asks, but a timestamp one can predict
         * lets a fake server have a client answer it ahead of time and
         * replay that digest here later; 64 random bits prevent that. The
         * session number keeps it unique should the generator fail. */
        unsigned char rnd[8] = {0};
        (void)RAND_bytes(rnd, sizeof(rnd));
        uint64_t r;
        memcpy(&r, rnd, sizeof(r));
        if (asprintf(&c->apop_ts, "<%d.%llx.%016llx.%lld@%s>", (int)getpid(),
                     (unsigned long long)(n & 0xffffffffffffULL), (unsigned long long)r,
                     (long long)c->started, srv->hostname) < 0)
            c->apop_ts = NULL;
    }
    struct pop3_settings ps = {
        .greeting = set->greeting,
        .apop_timestamp = c->apop_ts,
        .stls = set->tls != NULL && !tls,
        .tls = tls,
        /* The flag lives on the connection, not the port: a trusted proxy
         * that ended TLS will set it the same way. */
        .secure = set->allow_plaintext_loopback && is_loopback(sa),
        .require_tls = set->require_tls,
        .sasl_mechs = set->sasl_mechs,
        .max_bad_commands = set->max_bad_commands,
        .login_delay = set->login_delay,
    };
    if (c->bev != NULL && c->login_timer != NULL && c->stage != NULL)
        c->session = pop3_session_new(&ps, &conn_io, c);
    if (c->session == NULL || (set->apop && c->apop_ts == NULL)) {
        log_error("out of memory for a new connection");
        if (c->bev != NULL)
            bufferevent_free(c->bev);
        else
            close(fd);
        if (c->login_timer != NULL)
            event_free(c->login_timer);
        if (c->stage != NULL)
            evbuffer_free(c->stage);
        pop3_session_destroy(&c->session);
        free(c->apop_ts);
        free(c);
        guard_conn_close(set->guard, sa, false);
        return;
    }
    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    c->pop3s = tls;
    metrics_conn_open(tls);
    metrics_session_state(METRICS_NO_SESSION, POP3_STATE_AUTHORIZATION);

    struct timeval login = {set->login_timeout, 0};
    setup_bev(c);
    evtimer_add(c->login_timer, &login);

    struct audit_line a;
    audit_conn(&a, c, "info", "connect");
    audit_tok(&a, "listener", tls ? "pop3s" : "pop3");
    audit_end(&a);

    if (!tls)
        start_session(c);
    /* EV_WRITE comes with the first output, see out_queued(). */
    bufferevent_enable(c->bev, EV_READ);
}
