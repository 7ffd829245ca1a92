/*
 * loadgen: the benchmark's POP3 load generator (interface in bench/PROTOCOL.md).
 *
 * One process, one thread, one epoll set. The generator shares the machine
 * with the server it measures, so whatever a session costs here is taken
 * from the server: one shared read buffer (of a message nothing is kept but
 * its running octet count), no allocation per line or per command, commands
 * built once at start-up, latencies in a fixed-size histogram, no stdio
 * until the run is over.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The ENGINE calls of direct_key_decoding() are deprecated in OpenSSL 3. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/engine.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define NS_PER_S  1000000000LL
#define NS_PER_MS 1000000LL
/* Big enough that a RETR of a large message costs few system calls. */
#define RBUF_SIZE  (256 * 1024)
#define LINE_CAP   256
#define MAX_EVENTS 512
/* After a failure a slot waits before reconnecting, so that a server that
 * refuses everything is not hammered in a tight loop. */
#define BACKOFF_NS (10 * NS_PER_MS)
#define SWEEP_NS   (10 * NS_PER_MS)
#define GRACE_NS   (30 * NS_PER_S)
/* idle: logins in flight at once while the sessions are being opened (a
 * burst of 10,000 connects overflows the listen backlog and costs SYN
 * retransmits of a second each). */
#define IDLE_PARALLEL   128
#define IDLE_ATTEMPTS   3
#define MAX_ERROR_LINES 10
/* guess: a slot turned away waits this long, as a patient attacker would
 * (reconnecting at once would only measure how fast -ERR greetings come). */
#define REFUSED_WAIT_NS (1 * NS_PER_S)
/* --sources: 127.0.0.2 .. 127.0.0.201 */
#define MAX_SOURCES 200

enum mode { M_LOGIN, M_RETR, M_IDLE, M_BIGBOX, M_RAW, M_GUESS };
static const char *const mode_names[] = {"login", "retr", "idle", "bigbox", "raw", "guess"};

enum step {
    ST_FREE, /* no connection and none coming */
    ST_WAIT, /* backing off; reconnects at deadline */
    ST_HANDSHAKE,
    ST_GREETING,
    ST_USER,
    ST_PASS,
    ST_STAT,
    ST_LIST,
    ST_RETR,
    ST_UIDL,
    ST_READY, /* idle: logged in, nothing outstanding */
    ST_NOOP,
    ST_QUIT,
    ST_EOF, /* QUIT answered; waiting for the server to close */
    ST_RAW,
};

/* What the bytes arriving now are. */
enum rx { RX_LINE, RX_MULTI, RX_BODY, RX_IGNORE, RX_RAW };

/* Un-stuffer states: at a line start, after a dot at a line start, after
 * ".\r" at a line start, inside a line. */
enum body { B_LS, B_DOT, B_DOTCR, B_MID };

struct user {
    char *user_cmd, *pass_cmd;
    uint32_t user_len, pass_len;
};

struct msg {
    uint64_t size;
    uint32_t num;
};

struct slot {
    int fd;
    uint32_t gen; /* bumped on close: stale epoll events are recognised */
    SSL *ssl;
    SSL_SESSION *sess; /* --resume: offered on the next connection */
    const struct user *user;
    const char *out; /* unsent rest of the current command */
    uint32_t out_len;
    uint8_t step, rx, bstate, attempts;
    bool out_wait; /* EPOLLOUT registered (plain connections) */
    bool failed;   /* the session saw an error: not counted as a session */
    bool bad_stuff, reused;
    bool tls_done; /* close_notify seen after QUIT: now waiting for the TCP close */
    int64_t t_start, t_cmd, deadline;
    uint64_t octets; /* un-stuffed octets of the current message, or raw bytes */
    uint32_t lines;  /* lines of the current multi-line answer */
    uint32_t nmsgs, cap, cur;
    struct msg *msgs;
    uint32_t line_len;
    char cmd[32];
    char line[LINE_CAP];
};

/* Latencies in ns: exact below 128 ns, then 64 buckets per power of two
 * (1.6% resolution) up to 2^63. */
#define H_BUCKETS (128 + 57 * 64)
struct hist {
    uint64_t n;
    uint64_t b[H_BUCKETS];
};

static struct {
    /* configuration */
    enum mode mode;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    unsigned conc;
    double duration, warmup, hold, timeout_s;
    int64_t timeout;
    bool tls, resume, tls12;
    long long count;
    struct user *users;
    size_t nusers;
    unsigned sources; /* 0: the kernel picks the source address */

    /* run state */
    int ep;
    SSL_CTX *ctx;
    char *rbuf;
    struct slot *slots;
    unsigned busy; /* slots not ST_FREE */
    int64_t t0, t_meas0, t_meas1, t_deadline;
    bool measuring, ended, finished;
    struct rusage ru0, ru1;
    int64_t wall0, wall1;

    /* idle */
    bool holding, quitting;
    unsigned idle_next, idle_pending, idle_ready, idle_dead;
    uint64_t noop_cursor;
    int64_t setup_deadline;

    /* guess: passwords tried so far, numbered */
    uint64_t guess_seq;

    /* results */
    uint64_t sessions, errors, messages, bytes, resumed, noops, guesses, refused;
    unsigned error_lines;
    struct hist lat;
    double times_ms[3];
} G;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

/* ---------------------------------------------------------------- histogram */

static unsigned hist_index(uint64_t v)
{
    if (v < 128)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    return 128 + (e - 7) * 64 + (unsigned)((v >> (e - 6)) & 63);
}

static uint64_t hist_mid(unsigned i)
{
    if (i < 128)
        return i;
    unsigned e = (i - 128) / 64 + 7, sub = (i - 128) % 64;
    uint64_t low = (1ULL << e) | ((uint64_t)sub << (e - 6));
    return low + (1ULL << (e - 6)) / 2;
}

static void hist_add(struct hist *h, int64_t v)
{
    h->b[hist_index(v < 0 ? 0 : (uint64_t)v)]++;
    h->n++;
}

static double hist_pct_ms(const struct hist *h, double p)
{
    if (h->n == 0)
        return 0;
    uint64_t rank = (uint64_t)(p * (double)h->n + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t acc = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        acc += h->b[i];
        if (acc >= rank)
            return (double)hist_mid(i) / 1e6;
    }
    return 0;
}

/* ---------------------------------------------------------------- accounting */

static bool counting(int64_t t)
{
    return t >= G.t_meas0 && t < G.t_meas1;
}

static void note_error(struct slot *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_error(struct slot *s, const char *fmt, ...)
{
    /* A connection counts once, however many of its steps then fail (an
     * -ERR greeting is usually followed by the server closing). */
    if (s == NULL || !s->failed)
        G.errors++;
    if (s != NULL)
        s->failed = true;
    if (G.error_lines++ >= MAX_ERROR_LINES)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: slot %ld: ", s != NULL ? (long)(s - G.slots) : -1L);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void record_session(struct slot *s, int64_t now)
{
    if (s->failed || !counting(now) || G.mode == M_IDLE)
        return;
    G.sessions++;
    if (s->reused)
        G.resumed++;
    if (G.mode == M_LOGIN)
        hist_add(&G.lat, now - s->t_start);
}

/* ---------------------------------------------------------------- slots */

static void slot_connect(struct slot *s, int64_t now);
static void on_readable(struct slot *s, uint32_t ev);
static void on_eof(struct slot *s);

static void slot_free(struct slot *s)
{
    if (s->step != ST_FREE) {
        s->step = ST_FREE;
        G.busy--;
    }
}

static void slot_close(struct slot *s, bool clean)
{
    if (s->ssl != NULL) {
        if (clean) {
            /* The server has closed already, so no close_notify is sent;
             * marking the shutdown done keeps OpenSSL from declaring the
             * session unresumable when the SSL is freed. */
            SSL_set_shutdown(s->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
            if (G.resume) {
                SSL_SESSION *ns = SSL_get1_session(s->ssl);
                if (ns != NULL && SSL_SESSION_is_resumable(ns)) {
                    if (s->sess != NULL)
                        SSL_SESSION_free(s->sess);
                    s->sess = ns;
                } else if (ns != NULL) {
                    SSL_SESSION_free(ns);
                }
            }
        }
        SSL_free(s->ssl);
        s->ssl = NULL;
        ERR_clear_error();
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    s->gen++;
    s->out_len = 0;
    s->out_wait = false;
}

static void backoff(struct slot *s, int64_t now)
{
    s->step = ST_WAIT;
    s->deadline = now + (G.mode == M_GUESS ? REFUSED_WAIT_NS : BACKOFF_NS);
}

static void idle_fill(int64_t now)
{
    while (!G.holding && G.idle_pending < IDLE_PARALLEL && G.idle_next < G.conc) {
        struct slot *s = &G.slots[G.idle_next++];
        G.idle_pending++;
        G.busy++;
        s->step = ST_WAIT;
        slot_connect(s, now);
    }
}

/* After a connection has closed: what the slot does next. */
static void slot_after(struct slot *s, int64_t now, bool ok)
{
    switch (G.mode) {
    case M_BIGBOX:
        slot_free(s);
        G.finished = true;
        return;
    case M_IDLE:
        if (!G.holding && !ok && ++s->attempts < IDLE_ATTEMPTS) {
            backoff(s, now);
            return;
        }
        if (!G.holding) {
            G.idle_pending--;
            G.idle_dead++;
            slot_free(s);
            idle_fill(now);
            return;
        }
        slot_free(s);
        return;
    default:
        if (now >= G.t_meas1)
            slot_free(s);
        else if (ok)
            slot_connect(s, now);
        else
            backoff(s, now);
    }
}

static void slot_fail(struct slot *s, int64_t now)
{
    slot_close(s, false);
    slot_after(s, now, false);
}

static void slot_done(struct slot *s, int64_t now)
{
    bool ok = !s->failed;
    slot_close(s, true);
    slot_after(s, now, ok);
}

/* Sends what is left of s->out. On a fatal error the slot is closed (its
 * gen changes; callers check). */
static void out_flush(struct slot *s)
{
    if (s->ssl != NULL) {
        ERR_clear_error();
        int n = SSL_write(s->ssl, s->out, (int)s->out_len);
        if (n > 0) {
            s->out_len = 0;
            return;
        }
        int e = SSL_get_error(s->ssl, n);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return; /* EPOLLOUT is always registered for TLS */
        if (G.mode == M_GUESS && e == SSL_ERROR_SYSCALL) {
            on_eof(s);
            return;
        }
        note_error(s, "SSL_write: error %d", e);
        slot_fail(s, now_ns());
        return;
    }
    for (;;) {
        ssize_t n = send(s->fd, s->out, s->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t)s->out_len) {
            s->out_len = 0;
            return;
        }
        if (n >= 0) {
            s->out += n;
            s->out_len -= (uint32_t)n;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            break;
        if (G.mode == M_GUESS && (errno == ECONNRESET || errno == EPIPE)) {
            /* Hung up on while the next guess was going out. */
            on_eof(s);
            return;
        }
        note_error(s, "send: %s", strerror(errno));
        slot_fail(s, now_ns());
        return;
    }
    if (!s->out_wait) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.u64 = (uint64_t)(s - G.slots) | ((uint64_t)s->gen << 32)};
        epoll_ctl(G.ep, EPOLL_CTL_MOD, s->fd, &ev);
        s->out_wait = true;
    }
}

static void send_cmd(struct slot *s, const char *p, size_t len, enum step step, enum rx rx,
                     int64_t now)
{
    s->out = p;
    s->out_len = (uint32_t)len;
    s->step = (uint8_t)step;
    s->rx = (uint8_t)rx;
    s->line_len = 0;
    s->t_cmd = now;
    s->deadline = now + G.timeout;
    out_flush(s);
}

#define SEND_CONST(s, lit, step, rx, now) send_cmd(s, lit, sizeof(lit) - 1, step, rx, now)

static void send_quit(struct slot *s, int64_t now)
{
    SEND_CONST(s, "QUIT\r\n", ST_QUIT, RX_LINE, now);
}

static void send_retr(struct slot *s, int64_t now)
{
    if (s->cur >= s->nmsgs || now >= G.t_meas1) {
        send_quit(s, now);
        return;
    }
    /* "RETR " + decimal + CRLF, without stdio */
    char digits[12];
    unsigned nd = 0;
    uint32_t v = s->msgs[s->cur].num;
    do {
        digits[nd++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    memcpy(s->cmd, "RETR ", 5);
    size_t len = 5;
    while (nd > 0)
        s->cmd[len++] = digits[--nd];
    s->cmd[len++] = '\r';
    s->cmd[len++] = '\n';
    send_cmd(s, s->cmd, len, ST_RETR, RX_LINE, now);
}

static void slot_connect(struct slot *s, int64_t now)
{
    s->failed = false;
    s->reused = false;
    s->tls_done = false;
    s->line_len = 0;
    s->out_len = 0;
    s->out_wait = false;
    s->t_start = now;
    s->deadline = now + G.timeout;
    int fd = socket(G.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        note_error(s, "socket: %s", strerror(errno));
        slot_after(s, now, false);
        return;
    }
    /* A plain command always follows an answer, which acknowledged all we
     * sent, so Nagle never holds one back; TLS may write twice in a row. */
    if (G.tls) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (G.sources > 0) {
        /* Many client addresses on loopback need no aliases: all of
         * 127.0.0.0/8 is local. The port is left to connect(), which may
         * reuse one that another address is using. */
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000002u + (uint32_t)((s - G.slots) % G.sources));
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0)
            die("bind to 127.0.0.%u: %s", 2 + (unsigned)((s - G.slots) % G.sources),
                strerror(errno));
    }
    if (connect(fd, (struct sockaddr *)&G.addr, G.addrlen) < 0 && errno != EINPROGRESS) {
        note_error(s, "connect: %s", strerror(errno));
        close(fd);
        slot_after(s, now, false);
        return;
    }
    s->fd = fd;
    /* Plain connections wait for the greeting only: no wake-up for the
     * connect completing. TLS writes first, so it wants EPOLLOUT too. */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET | (G.tls ? EPOLLOUT : 0),
                             .data.u64 = (uint64_t)(s - G.slots) | ((uint64_t)s->gen << 32)};
    if (epoll_ctl(G.ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
    s->rx = G.mode == M_RAW ? RX_RAW : RX_LINE;
    s->octets = 0;
    if (!G.tls) {
        s->step = G.mode == M_RAW ? ST_RAW : ST_GREETING;
        return;
    }
    s->ssl = SSL_new(G.ctx);
    if (s->ssl == NULL)
        die("SSL_new failed");
    SSL_set_fd(s->ssl, fd);
    SSL_set_connect_state(s->ssl);
    if (G.resume && s->sess != NULL)
        SSL_set_session(s->ssl, s->sess);
    s->step = ST_HANDSHAKE;
    /* The ClientHello goes out now; the answer comes as an event. */
    on_readable(s, 0);
}

/* ---------------------------------------------------------------- parsing */

static const char *parse_u64(const char *p, const char *end, uint64_t *out)
{
    while (p < end && *p == ' ')
        p++;
    if (p == end || *p < '0' || *p > '9')
        return NULL;
    uint64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        if (v > (UINT64_MAX - 9) / 10)
            return NULL;
        v = v * 10 + (uint64_t)(*p++ - '0');
    }
    *out = v;
    return p;
}

static void idle_ready(struct slot *s, int64_t now)
{
    s->step = ST_READY;
    s->deadline = INT64_MAX;
    if (!G.holding) {
        G.idle_pending--;
        G.idle_ready++;
        if (s->reused)
            G.resumed++;
        idle_fill(now);
    } else if (G.quitting) {
        send_quit(s, now);
    }
}

/* An -ERR, or an answer that makes no sense: counted, then a polite QUIT. */
static void answer_error(struct slot *s, const char *what, const char *line, size_t len,
                         int64_t now)
{
    note_error(s, "%s: %.*s", what, (int)(len > 120 ? 120 : len), line);
    send_quit(s, now);
}

/* ---------------------------------------------------------------- guess */

/* The connection is over; the slot comes back after `wait` (at once if 0),
 * or not at all once the run is over. */
static void guess_reconnect(struct slot *s, int64_t now, int64_t wait)
{
    slot_close(s, false);
    if (now >= G.t_meas1) {
        slot_free(s);
    } else if (wait == 0) {
        slot_connect(s, now);
    } else {
        s->step = ST_WAIT;
        s->deadline = now + wait;
    }
}

/* Turned away (an -ERR greeting, a ban dropping the session, a server that
 * hangs up before greeting): the attacker waits and tries again. */
static void guess_refused(struct slot *s, int64_t now)
{
    if (counting(now))
        G.refused++;
    guess_reconnect(s, now, REFUSED_WAIT_NS);
}

/* The server closed (after its limit of failures per connection, say). */
static void guess_closed(struct slot *s, int64_t now)
{
    if (s->step == ST_GREETING || s->step == ST_HANDSHAKE)
        guess_refused(s, now);
    else
        guess_reconnect(s, now, 0);
}

/* "PASS g<n>": a password never sent before, so that no server can treat
 * it as a client retrying a stale one. */
static void send_guess(struct slot *s, int64_t now)
{
    char digits[24];
    unsigned nd = 0;
    uint64_t v = ++G.guess_seq;
    do {
        digits[nd++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    memcpy(s->cmd, "PASS g", 6);
    size_t len = 6;
    while (nd > 0)
        s->cmd[len++] = digits[--nd];
    s->cmd[len++] = '\r';
    s->cmd[len++] = '\n';
    send_cmd(s, s->cmd, len, ST_PASS, RX_LINE, now);
}

static bool is_temp(const char *line, size_t len)
{
    return memmem(line, len, "[SYS/TEMP]", 10) != NULL;
}

static void guess_status(struct slot *s, const char *line, size_t len, int64_t now)
{
    bool ok = len >= 3 && memcmp(line, "+OK", 3) == 0;
    int shown = (int)(len > 120 ? 120 : len);
    switch (s->step) {
    case ST_GREETING:
        if (!ok)
            return guess_refused(s, now);
        if (counting(now))
            G.sessions++;
        send_cmd(s, s->user->user_cmd, s->user->user_len, ST_USER, RX_LINE, now);
        return;
    case ST_USER:
        if (ok)
            return send_guess(s, now);
        if (is_temp(line, len))
            return guess_refused(s, now);
        /* The session is ending: a server may say why it closes after its
         * limit of failures per connection (Postern does), and that line
         * arrives as the answer to the next USER. */
        if (len >= 4 && memcmp(line, "-ERR", 4) == 0)
            return guess_reconnect(s, now, 0);
        note_error(s, "USER: %.*s", shown, line);
        slot_fail(s, now);
        return;
    case ST_PASS:
        if (ok) {
            note_error(s, "PASS: a wrong password was accepted: %.*s", shown, line);
            slot_fail(s, now);
            return;
        }
        /* A session dropped by a ban, not an answer to the guess. */
        if (is_temp(line, len))
            return guess_refused(s, now);
        if (counting(now)) {
            G.guesses++;
            hist_add(&G.lat, now - s->t_cmd);
        }
        /* A failed PASS puts the session back before USER (RFC 1939). */
        send_cmd(s, s->user->user_cmd, s->user->user_len, ST_USER, RX_LINE, now);
        return;
    default:
        note_error(s, "unexpected line in step %d: %.*s", s->step, shown, line);
        slot_fail(s, now);
        return;
    }
}

static void guess_stop_all(void)
{
    for (unsigned i = 0; i < G.conc; i++) {
        struct slot *s = &G.slots[i];
        if (s->step != ST_FREE) {
            slot_close(s, false);
            slot_free(s);
        }
    }
}

static void on_status(struct slot *s, const char *line, size_t len, int64_t now)
{
    if (G.mode == M_GUESS)
        return guess_status(s, line, len, now);
    bool ok = len >= 3 && memcmp(line, "+OK", 3) == 0;
    switch (s->step) {
    case ST_GREETING:
        if (!ok)
            return answer_error(s, "greeting", line, len, now);
        send_cmd(s, s->user->user_cmd, s->user->user_len, ST_USER, RX_LINE, now);
        return;
    case ST_USER:
        if (!ok)
            return answer_error(s, "USER", line, len, now);
        send_cmd(s, s->user->pass_cmd, s->user->pass_len, ST_PASS, RX_LINE, now);
        return;
    case ST_PASS:
        if (!ok)
            return answer_error(s, "PASS", line, len, now);
        switch (G.mode) {
        case M_RETR:
            s->nmsgs = 0;
            s->cur = 0;
            SEND_CONST(s, "LIST\r\n", ST_LIST, RX_LINE, now);
            return;
        case M_IDLE:
            idle_ready(s, now);
            return;
        default:
            SEND_CONST(s, "STAT\r\n", ST_STAT, RX_LINE, now);
            return;
        }
    case ST_STAT:
        if (!ok)
            return answer_error(s, "STAT", line, len, now);
        if (G.mode == M_BIGBOX) {
            uint64_t n = 0;
            if (parse_u64(line + 3, line + len, &n) == NULL)
                return answer_error(s, "STAT answer", line, len, now);
            G.messages = n;
            G.times_ms[0] = (double)(now - s->t_start) / 1e6;
            if (G.count >= 0 && n != (uint64_t)G.count)
                note_error(s, "STAT says %" PRIu64 " messages, expected %lld", n, G.count);
            SEND_CONST(s, "LIST\r\n", ST_LIST, RX_LINE, now);
            return;
        }
        send_quit(s, now);
        return;
    case ST_LIST:
    case ST_UIDL:
        if (!ok)
            return answer_error(s, s->step == ST_LIST ? "LIST" : "UIDL", line, len, now);
        s->rx = RX_MULTI;
        s->lines = 0;
        return;
    case ST_RETR:
        if (!ok) {
            note_error(s, "RETR: %.*s", (int)(len > 120 ? 120 : len), line);
            s->cur++;
            send_retr(s, now);
            return;
        }
        s->rx = RX_BODY;
        s->bstate = B_LS;
        s->octets = 0;
        s->bad_stuff = false;
        return;
    case ST_NOOP:
        if (!ok)
            note_error(s, "NOOP: %.*s", (int)(len > 120 ? 120 : len), line);
        else if (counting(s->t_cmd)) {
            G.noops++;
            hist_add(&G.lat, now - s->t_cmd);
        }
        idle_ready(s, now);
        return;
    case ST_QUIT:
        if (!ok)
            note_error(s, "QUIT: %.*s", (int)(len > 120 ? 120 : len), line);
        record_session(s, now);
        s->step = ST_EOF;
        s->rx = RX_IGNORE;
        s->deadline = now + G.timeout;
        return;
    default:
        note_error(s, "unexpected line in step %d: %.*s", s->step, (int)(len > 120 ? 120 : len),
                   line);
        slot_fail(s, now);
        return;
    }
}

static void on_multi_end(struct slot *s, int64_t now)
{
    if (G.mode == M_RETR) {
        send_retr(s, now);
        return;
    }
    /* bigbox */
    if (s->lines != G.messages)
        note_error(s, "%s has %u lines, STAT said %" PRIu64, s->step == ST_LIST ? "LIST" : "UIDL",
                   s->lines, G.messages);
    if (s->step == ST_LIST) {
        G.times_ms[1] = (double)(now - s->t_cmd) / 1e6;
        SEND_CONST(s, "UIDL\r\n", ST_UIDL, RX_LINE, now);
    } else {
        G.times_ms[2] = (double)(now - s->t_cmd) / 1e6;
        send_quit(s, now);
    }
}

static void on_multi_line(struct slot *s, const char *line, size_t len, int64_t now)
{
    if (len == 1 && line[0] == '.') {
        on_multi_end(s, now);
        return;
    }
    s->lines++;
    if (G.mode != M_RETR)
        return;
    if (len > 0 && line[0] == '.') {
        line++;
        len--;
    }
    uint64_t num, size;
    const char *p = parse_u64(line, line + len, &num);
    if (p == NULL || parse_u64(p, line + len, &size) == NULL || num == 0 || num > UINT32_MAX) {
        note_error(s, "LIST line: %.*s", (int)(len > 120 ? 120 : len), line);
        return;
    }
    if (s->nmsgs == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 64;
        struct msg *m = realloc(s->msgs, (size_t)cap * sizeof(*m));
        if (m == NULL)
            die("out of memory");
        s->msgs = m;
        s->cap = cap;
    }
    s->msgs[s->nmsgs].num = (uint32_t)num;
    s->msgs[s->nmsgs].size = size;
    s->nmsgs++;
}

static void on_body_end(struct slot *s, int64_t now)
{
    const struct msg *m = &s->msgs[s->cur];
    if (s->octets != m->size || s->bad_stuff) {
        note_error(s, "RETR %u: %" PRIu64 " octets after un-stuffing, LIST said %" PRIu64 "%s",
                   m->num, s->octets, m->size, s->bad_stuff ? " (unstuffed dot line)" : "");
    } else if (counting(now)) {
        G.messages++;
        G.bytes += s->octets;
        hist_add(&G.lat, now - s->t_cmd);
    }
    s->cur++;
    send_retr(s, now);
}

/*
 * The first LF in p[i, n) that a dot follows, or that ends the buffer
 * (the next read may begin with a dot); n if there is none. Only those
 * lines need the byte-by-byte states: the others are counted whole. The
 * generator shares the machine with the server, so scanning a message a
 * line at a time (a memchr call per 70 bytes took 42% of its CPU in
 * retr) would take cores from the server it measures.
 */
static size_t find_line_dot(const char *p, size_t i, size_t n)
{
#ifdef __SSE2__
    const __m128i lf = _mm_set1_epi8('\n'), dot = _mm_set1_epi8('.');
    for (; i + 17 <= n; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(p + i + 1));
        int m = _mm_movemask_epi8(_mm_and_si128(_mm_cmpeq_epi8(a, lf), _mm_cmpeq_epi8(b, dot)));
        if (m != 0)
            return i + (size_t)__builtin_ctz((unsigned)m);
    }
#endif
    for (; i < n; i++) {
        if (p[i] == '\n' && (i + 1 == n || p[i + 1] == '.'))
            return i;
    }
    return n;
}

/* Consumes a RETR body up to and including its terminating ".\r\n";
 * returns the bytes used. Content octets are counted as the message had
 * them before dot-stuffing; nothing is copied. */
static size_t feed_body(struct slot *s, const char *p, size_t n, int64_t now)
{
    size_t i = 0;
    uint64_t oct = s->octets;
    int st = s->bstate;
    while (i < n) {
        if (st == B_MID) {
            size_t lf = find_line_dot(p, i, n);
            if (lf == n) {
                oct += n - i;
                i = n;
                break;
            }
            oct += lf + 1 - i;
            i = lf + 1;
            st = B_LS;
            continue;
        }
        char c = p[i++];
        if (st == B_LS) {
            if (c == '.') {
                st = B_DOT;
            } else {
                oct++;
                st = c == '\n' ? B_LS : B_MID;
            }
        } else if (st == B_DOT) {
            if (c == '\r') {
                st = B_DOTCR;
            } else {
                /* The dot is stuffing; without a second dot the server
                 * failed to stuff a line (RFC 1939 still strips it). */
                if (c != '.')
                    s->bad_stuff = true;
                oct++;
                st = c == '\n' ? B_LS : B_MID;
            }
        } else { /* B_DOTCR */
            if (c == '\n') {
                s->octets = oct;
                s->bstate = B_LS;
                s->rx = RX_IGNORE;
                on_body_end(s, now);
                return i;
            }
            s->bad_stuff = true;
            oct++; /* the CR */
            i--;
            st = B_MID;
        }
    }
    s->octets = oct;
    s->bstate = (uint8_t)st;
    return i;
}

static void line_append(struct slot *s, const char *p, size_t n)
{
    size_t room = LINE_CAP - s->line_len;
    size_t c = n < room ? n : room;
    memcpy(s->line + s->line_len, p, c);
    s->line_len += (uint32_t)c;
}

/* One line (status or multi-line), copied only when it spans reads; what
 * does not fit in s->line is dropped (only the start of a line matters). */
static size_t feed_line(struct slot *s, const char *p, size_t n, int64_t now)
{
    const char *lf = memchr(p, '\n', n);
    if (lf == NULL) {
        line_append(s, p, n);
        return n;
    }
    size_t take = (size_t)(lf - p) + 1;
    const char *line = p;
    size_t len = take - 1;
    if (s->line_len > 0) {
        line_append(s, p, len);
        line = s->line;
        len = s->line_len;
    }
    if (len > 0 && line[len - 1] == '\r')
        len--;
    s->line_len = 0;
    if (s->rx == RX_MULTI)
        on_multi_line(s, line, len, now);
    else
        on_status(s, line, len, now);
    return take;
}

static void feed(struct slot *s, const char *p, size_t n)
{
    uint32_t gen = s->gen;
    int64_t now = now_ns();
    while (n > 0) {
        size_t used;
        switch (s->rx) {
        case RX_LINE:
        case RX_MULTI:
            used = feed_line(s, p, n, now);
            break;
        case RX_BODY:
            used = feed_body(s, p, n, now);
            break;
        case RX_RAW:
            s->octets += n;
            if (counting(now))
                G.bytes += n;
            used = n;
            break;
        default:
            used = n;
            break;
        }
        if (s->gen != gen)
            return;
        p += used;
        n -= used;
    }
}

static void on_eof(struct slot *s)
{
    int64_t now = now_ns();
    if (G.mode == M_GUESS) {
        guess_closed(s, now);
        return;
    }
    if (s->step == ST_EOF) {
        slot_done(s, now);
        return;
    }
    if (s->step == ST_RAW) {
        if (G.count >= 0 && s->octets != (uint64_t)G.count)
            note_error(s, "raw: %" PRIu64 " bytes, expected %lld", s->octets, G.count);
        record_session(s, now);
        slot_done(s, now);
        return;
    }
    note_error(s, "connection closed by the server (step %d)", s->step);
    slot_fail(s, now);
}

/* ---------------------------------------------------------------- events */

static bool handshake(struct slot *s)
{
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        s->reused = SSL_session_reused(s->ssl) == 1;
        s->step = G.mode == M_RAW ? ST_RAW : ST_GREETING;
        return true;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return false;
    if (G.mode == M_GUESS) {
        /* A refusal on the POP3S port comes as clear text, before any
         * handshake: the handshake fails on it. */
        guess_refused(s, now_ns());
        return false;
    }
    unsigned long le = ERR_peek_error();
    char buf[160];
    ERR_error_string_n(le, buf, sizeof(buf));
    note_error(s, "TLS handshake: error %d (%s)", e, le ? buf : strerror(errno));
    slot_fail(s, now_ns());
    return false;
}

static void on_readable(struct slot *s, uint32_t ev)
{
    uint32_t gen = s->gen;
    if (s->step == ST_HANDSHAKE && !handshake(s))
        return;
    if (s->out_len > 0) {
        out_flush(s);
        if (s->gen != gen || s->out_len > 0)
            return;
    }
    if (s->ssl != NULL && !s->tls_done) {
        for (;;) {
            ERR_clear_error();
            int n = SSL_read(s->ssl, G.rbuf, RBUF_SIZE);
            if (n > 0) {
                feed(s, G.rbuf, (size_t)n);
                if (s->gen != gen)
                    return;
                continue;
            }
            int e = SSL_get_error(s->ssl, n);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
                if (s->step != ST_EOF) {
                    on_eof(s);
                    return;
                }
                /* The session ends, as in plain text, when the server has
                 * closed the connection, not at its close_notify: a server
                 * may release the mailbox between the two, and a client
                 * that reconnects earlier finds it in use. */
                s->tls_done = true;
                break;
            }
            if (G.mode == M_GUESS && e == SSL_ERROR_SYSCALL) {
                on_eof(s);
                return;
            }
            note_error(s, "SSL_read: error %d", e);
            slot_fail(s, now_ns());
            return;
        }
    }
    for (;;) {
        ssize_t n = recv(s->fd, G.rbuf, RBUF_SIZE, 0);
        if (n > 0) {
            feed(s, G.rbuf, (size_t)n);
            if (s->gen != gen)
                return;
            /* A short read emptied the socket; anything arriving later,
             * the FIN after QUIT included, raises a new edge. Only a FIN
             * already reported is worth another call now. */
            if ((size_t)n < RBUF_SIZE && !(ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                return;
            continue;
        }
        if (n == 0) {
            on_eof(s);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return;
        if (G.mode == M_GUESS && errno == ECONNRESET) {
            on_eof(s);
            return;
        }
        note_error(s, "recv: %s", strerror(errno));
        slot_fail(s, now_ns());
        return;
    }
}

static void sweep(int64_t now)
{
    for (unsigned i = 0; i < G.conc; i++) {
        struct slot *s = &G.slots[i];
        if (s->step == ST_FREE)
            continue;
        if (s->step == ST_WAIT) {
            if (G.mode != M_IDLE && now >= G.t_meas1)
                slot_free(s);
            else if (now >= s->deadline)
                slot_connect(s, now);
            continue;
        }
        if (s->fd >= 0 && now >= s->deadline) {
            note_error(s, "timeout after %.1f s (step %d)", G.timeout_s, s->step);
            slot_fail(s, now);
        }
    }
}

/* ---------------------------------------------------------------- idle */

static void idle_start_hold(int64_t now)
{
    /* Logins still in flight when the setup time is up are abandoned, so
     * that the count printed is the count held. */
    for (unsigned i = 0; i < G.conc; i++) {
        struct slot *s = &G.slots[i];
        if (s->step != ST_FREE && s->step != ST_READY) {
            note_error(s, "login not done when the setup time ran out");
            slot_close(s, false);
            slot_free(s);
        }
    }
    G.holding = true;
    G.t_meas0 = now;
    G.t_meas1 = now + (int64_t)(G.hold * NS_PER_S);
    G.t_deadline = G.t_meas1 + GRACE_NS;
    G.sessions = G.idle_ready;
    printf("{\"ready\": true, \"sessions\": %u}\n", G.idle_ready);
    fflush(stdout);
}

static void idle_pace(int64_t now)
{
    if (now >= G.t_meas1)
        return;
    /* Every slot in turn, all of them once a second. */
    uint64_t target = (uint64_t)((double)(now - G.t_meas0) * G.conc / NS_PER_S);
    while (G.noop_cursor < target) {
        struct slot *s = &G.slots[G.noop_cursor++ % G.conc];
        if (s->step == ST_READY)
            SEND_CONST(s, "NOOP\r\n", ST_NOOP, RX_LINE, now);
    }
}

static void idle_quit_all(int64_t now)
{
    G.quitting = true;
    for (unsigned i = 0; i < G.conc; i++)
        if (G.slots[i].step == ST_READY)
            send_quit(&G.slots[i], now);
}

/* ---------------------------------------------------------------- set-up */

static void usage(void) __attribute__((noreturn));
static void usage(void)
{
    fputs("usage: loadgen MODE --port N [--host 127.0.0.1] [--concurrency C]\n"
          "               [--duration S] [--warmup S] [--users FILE] [--tls] [--tls12] [--resume]\n"
          "               [--count N] [--hold S] [--timeout S] [--sources N] [--user NAME]\n"
          "MODE: login | retr | idle | bigbox | raw | guess (see bench/PROTOCOL.md)\n"
          "--timeout: seconds any one answer may take (default 10; bigbox and guess 60)\n"
          "--sources N: slot i connects from 127.0.0.(2 + i % N), N <= 200\n"
          "guess: wrong passwords for --user NAME; --warmup defaults to 0\n"
          "idle: --hold S (default 10) replaces --warmup and --duration\n"
          "--count: bigbox: messages STAT must report; raw: bytes every connection\n"
          "         must deliver (default: not checked)\n",
          stderr);
    exit(2);
}

static void load_users(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        die("%s: %s", path, strerror(errno));
    char buf[1024];
    size_t cap = 0;
    while (fgets(buf, sizeof(buf), f) != NULL) {
        char *save = NULL;
        char *u = strtok_r(buf, " \t\r\n", &save);
        char *p = strtok_r(NULL, " \t\r\n", &save);
        if (u == NULL)
            continue;
        if (p == NULL)
            die("%s: a line without a password", path);
        if (G.nusers == cap) {
            cap = cap ? cap * 2 : 64;
            G.users = realloc(G.users, cap * sizeof(*G.users));
            if (G.users == NULL)
                die("out of memory");
        }
        struct user *us = &G.users[G.nusers++];
        size_t ul = strlen(u) + 7, pl = strlen(p) + 7;
        us->user_cmd = malloc(ul + 1);
        us->pass_cmd = malloc(pl + 1);
        if (us->user_cmd == NULL || us->pass_cmd == NULL)
            die("out of memory");
        snprintf(us->user_cmd, ul + 1, "USER %s\r\n", u);
        snprintf(us->pass_cmd, pl + 1, "PASS %s\r\n", p);
        us->user_len = (uint32_t)ul;
        us->pass_len = (uint32_t)pl;
    }
    fclose(f);
    if (G.nusers == 0)
        die("%s: no users", path);
}

static double num_arg(const char *opt, const char *v, double min)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (v[0] == '\0' || *end != '\0' || errno != 0 || d < min || d > 1e9)
        die("%s: bad value %s", opt, v);
    return d;
}

static void raise_nofile(unsigned need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        /* Only root (CAP_SYS_RESOURCE) may raise the hard limit. */
        struct rlimit up = {need, need};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl = up;
    }
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)G.conc + 16)
        fprintf(stderr, "loadgen: file limit %llu is too low for %u sessions\n",
                (unsigned long long)rl.rlim_cur, G.conc);
}

static void parse_args(int argc, char **argv)
{
    if (argc < 2)
        usage();
    size_t m;
    for (m = 0; m < sizeof(mode_names) / sizeof(mode_names[0]); m++)
        if (strcmp(argv[1], mode_names[m]) == 0)
            break;
    if (m == sizeof(mode_names) / sizeof(mode_names[0]))
        usage();
    G.mode = (enum mode)m;
    const char *host = "127.0.0.1", *users = NULL, *victim = NULL;
    long port = -1;
    G.conc = 1;
    G.duration = 5;
    /* An attacker's first guesses are the cheapest ones: all count. */
    G.warmup = G.mode == M_GUESS ? 0 : 1;
    G.hold = 10;
    /* guess: above any failure delay a server is likely to impose
     * (Postern's failure_delay_max and Dovecot's penalty are 15 s). */
    G.timeout_s = G.mode == M_BIGBOX || G.mode == M_GUESS ? 60 : 10;
    G.count = -1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--tls") == 0) {
            G.tls = true;
            continue;
        }
        if (strcmp(a, "--resume") == 0) {
            G.resume = true;
            continue;
        }
        if (strcmp(a, "--tls12") == 0) {
            G.tls12 = true;
            continue;
        }
        if (v == NULL)
            usage();
        i++;
        if (strcmp(a, "--port") == 0)
            port = (long)num_arg(a, v, 1);
        else if (strcmp(a, "--host") == 0)
            host = v;
        else if (strcmp(a, "--concurrency") == 0)
            G.conc = (unsigned)num_arg(a, v, 1);
        else if (strcmp(a, "--duration") == 0)
            G.duration = num_arg(a, v, 0);
        else if (strcmp(a, "--warmup") == 0)
            G.warmup = num_arg(a, v, 0);
        else if (strcmp(a, "--hold") == 0)
            G.hold = num_arg(a, v, 0);
        else if (strcmp(a, "--timeout") == 0)
            G.timeout_s = num_arg(a, v, 0.001);
        else if (strcmp(a, "--count") == 0)
            G.count = (long long)num_arg(a, v, 0);
        else if (strcmp(a, "--users") == 0)
            users = v;
        else if (strcmp(a, "--user") == 0)
            victim = v;
        else if (strcmp(a, "--sources") == 0)
            G.sources = (unsigned)num_arg(a, v, 0);
        else
            usage();
    }
    if (port < 1 || port > 65535)
        die("--port is required (1-65535)");
    if (G.mode == M_BIGBOX)
        G.conc = 1;
    if (G.conc > 1000000)
        die("--concurrency too large");
    if (G.sources > MAX_SOURCES)
        die("--sources: at most %d (127.0.0.2 .. 127.0.0.%d)", MAX_SOURCES, MAX_SOURCES + 1);
    if ((G.mode == M_GUESS) != (victim != NULL))
        die("--user NAME goes with guess, and guess needs it");
    if (G.mode == M_GUESS && (users != NULL || G.resume))
        die("guess takes --user, not --users or --resume");
    G.timeout = (int64_t)(G.timeout_s * NS_PER_S);
    memset(&G.addr, 0, sizeof(G.addr));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&G.addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&G.addr;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        G.addrlen = sizeof(*a4);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        G.addrlen = sizeof(*a6);
    } else {
        die("--host must be a numeric address: %s", host);
    }
    if (G.sources > 0 && a4->sin_family != AF_INET)
        die("--sources needs an IPv4 --host");
    if (victim != NULL) {
        /* USER is sent many times; the PASS line is built per guess. */
        size_t ul = strlen(victim) + 7;
        if (strpbrk(victim, " \t\r\n") != NULL || ul > 256)
            die("--user: no spaces, at most 249 characters");
        static struct user one;
        one.user_cmd = malloc(ul + 1);
        if (one.user_cmd == NULL)
            die("out of memory");
        snprintf(one.user_cmd, ul + 1, "USER %s\r\n", victim);
        one.user_len = (uint32_t)ul;
        G.users = &one;
        G.nusers = 1;
    } else if (users != NULL) {
        load_users(users);
        if (G.nusers < G.conc && G.mode != M_LOGIN)
            fprintf(stderr, "loadgen: %zu users for %u sessions: mailboxes are shared\n", G.nusers,
                    G.conc);
    } else {
        /* lineserver and sendfile_server take anything */
        static char uc[] = "USER bench\r\n", pc[] = "PASS bench\r\n";
        static struct user dflt = {uc, pc, sizeof(uc) - 1, sizeof(pc) - 1};
        G.users = &dflt;
        G.nusers = 1;
    }
}

/* SSL_VERIFY_NONE ignores the verdict; this skips working it out. */
static int no_chain_check(X509_STORE_CTX *store, void *arg)
{
    (void)store;
    (void)arg;
    return 1;
}

/*
 * OpenSSL 3.0 decodes the public key of every certificate it receives
 * through its provider decoders, and builds the decoder chain anew each
 * time: in a profile of `login --tls` that was 29% of the generator's CPU
 * (about 120 us of its 430 per full handshake), time the two servers then
 * lacked on this two-core machine. OpenSSL takes its older, direct decoding
 * (ameth->pub_decode, as in 1.1.1) for key types an engine claims, so this
 * engine claims RSA and EC and hands back OpenSSL's own methods for them:
 * the keys are parsed and the signatures checked by the same OpenSSL code,
 * only without the decoder search. Key shares (X25519) are left alone. The
 * same generator drives every server, so this changes no ratio by itself;
 * it leaves more of the machine to the servers.
 */
static int builtin_pkey_meths(ENGINE *e, EVP_PKEY_METHOD **pmeth, const int **nids, int nid)
{
    static const int claimed[] = {EVP_PKEY_RSA, EVP_PKEY_EC};

    (void)e;
    if (pmeth == NULL) {
        *nids = claimed;
        return (int)(sizeof(claimed) / sizeof(claimed[0]));
    }
    *pmeth = nid == EVP_PKEY_RSA || nid == EVP_PKEY_EC ? (EVP_PKEY_METHOD *)EVP_PKEY_meth_find(nid)
                                                       : NULL;
    return *pmeth != NULL;
}

static void direct_key_decoding(void)
{
    ENGINE *e = ENGINE_new();

    if (e == NULL || ENGINE_set_id(e, "loadgen-direct-keys") != 1 ||
        ENGINE_set_name(e, "OpenSSL's RSA and EC methods, decoded directly") != 1 ||
        ENGINE_set_pkey_meths(e, builtin_pkey_meths) != 1 || ENGINE_init(e) != 1 ||
        ENGINE_set_default_pkey_meths(e) != 1)
        die("cannot set up direct key decoding");
    ENGINE_free(e); /* the functional reference from ENGINE_init keeps it */
}

static void tls_init(void)
{
    direct_key_decoding();
    G.ctx = SSL_CTX_new(TLS_client_method());
    if (G.ctx == NULL)
        die("SSL_CTX_new failed");
    SSL_CTX_set_verify(G.ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_cert_verify_callback(G.ctx, no_chain_check, NULL);
    SSL_CTX_set_min_proto_version(G.ctx, TLS1_2_VERSION);
    /* --tls12: what older clients negotiate; its resumption needs no key
     * exchange at all, unlike TLS 1.3's (psk_dhe_ke). */
    if (G.tls12)
        SSL_CTX_set_max_proto_version(G.ctx, TLS1_2_VERSION);
    /* A server that closes without close_notify after QUIT is an EOF, not
     * an error. */
    SSL_CTX_set_options(G.ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (G.mode == M_IDLE)
        SSL_CTX_set_mode(G.ctx, SSL_MODE_RELEASE_BUFFERS);
}

static double tv_s(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void print_result(void)
{
    double dur;
    if (G.mode == M_BIGBOX)
        dur = (double)(G.wall1 - G.wall0) / NS_PER_S;
    else if (G.mode == M_IDLE)
        dur = G.hold;
    else
        dur = G.duration;
    double per = dur > 0 ? 1.0 / dur : 0;
    double wall = (double)(G.wall1 - G.wall0) / NS_PER_S;
    double cu = tv_s(G.ru1.ru_utime) - tv_s(G.ru0.ru_utime);
    double cs = tv_s(G.ru1.ru_stime) - tv_s(G.ru0.ru_stime);
    double rate = G.mode == M_BIGBOX  ? 0.0
                  : G.mode == M_GUESS ? (double)G.guesses * per
                                      : (double)(G.mode == M_IDLE ? G.noops : G.sessions) * per;
    if (G.error_lines > MAX_ERROR_LINES)
        fprintf(stderr, "loadgen: %" PRIu64 " errors in all, the first %d shown\n", G.errors,
                MAX_ERROR_LINES);
    char times[160] = "{}";
    if (G.mode == M_BIGBOX)
        snprintf(times, sizeof(times), "{\"login_stat\": %.3f, \"list\": %.3f, \"uidl\": %.3f}",
                 G.times_ms[0], G.times_ms[1], G.times_ms[2]);
    printf("{\"mode\": \"%s\", \"concurrency\": %u, \"tls\": %s, \"duration\": %.3f, "
           "\"sessions\": %" PRIu64 ", \"errors\": %" PRIu64 ", \"rate\": %.1f, "
           "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"messages\": %" PRIu64 ", \"bytes\": %" PRIu64
           ", \"msgs_per_s\": %.1f, \"mb_per_s\": %.2f, \"resumed\": %" PRIu64 ", "
           "\"guesses\": %" PRIu64 ", \"guesses_per_s\": %.3f, \"refused\": %" PRIu64 ", "
           "\"cpu_user_s\": %.3f, \"cpu_sys_s\": %.3f, \"cpu_pct\": %.1f, \"times_ms\": %s}\n",
           mode_names[G.mode], G.conc, G.tls ? "true" : "false", dur, G.sessions, G.errors, rate,
           hist_pct_ms(&G.lat, 0.50), hist_pct_ms(&G.lat, 0.99), G.messages, G.bytes,
           G.mode == M_RETR ? (double)G.messages * per : 0.0,
           G.mode == M_RETR || G.mode == M_RAW ? (double)G.bytes / 1e6 * per : 0.0, G.resumed,
           G.guesses, (double)G.guesses * per, G.refused, cu, cs,
           wall > 0 ? (cu + cs) / wall * 100 : 0.0, times);
    fflush(stdout);
}

static void run(void)
{
    struct epoll_event evs[MAX_EVENTS];
    int64_t now = now_ns();
    int64_t next_sweep = now + SWEEP_NS;
    G.t0 = now;
    if (G.mode == M_IDLE) {
        G.t_meas0 = G.t_meas1 = INT64_MAX;
        G.setup_deadline = now + GRACE_NS + (int64_t)G.conc * NS_PER_S / 100;
        G.t_deadline = G.setup_deadline + (int64_t)(G.hold * NS_PER_S) + GRACE_NS;
    } else if (G.mode == M_BIGBOX) {
        G.t_meas0 = now;
        G.t_meas1 = INT64_MAX;
        G.t_deadline = now + (int64_t)((G.warmup + G.duration) * NS_PER_S) + GRACE_NS;
        if (G.t_deadline < now + 4 * G.timeout)
            G.t_deadline = now + 4 * G.timeout;
    } else {
        G.t_meas0 = now + (int64_t)(G.warmup * NS_PER_S);
        G.t_meas1 = G.t_meas0 + (int64_t)(G.duration * NS_PER_S);
        G.t_deadline = G.t_meas1 + GRACE_NS;
    }
    if (G.mode != M_IDLE && now >= G.t_meas0) {
        getrusage(RUSAGE_SELF, &G.ru0);
        G.wall0 = now;
        G.measuring = true;
    }
    if (G.mode == M_IDLE) {
        idle_fill(now);
    } else {
        for (unsigned i = 0; i < G.conc; i++) {
            G.slots[i].step = ST_WAIT;
            G.busy++;
            slot_connect(&G.slots[i], now);
        }
    }

    for (;;) {
        now = now_ns();
        /* Phase changes. */
        if (G.mode == M_IDLE) {
            if (!G.holding && (G.idle_ready + G.idle_dead == G.conc || now >= G.setup_deadline)) {
                idle_start_hold(now);
                getrusage(RUSAGE_SELF, &G.ru0);
                G.wall0 = now;
                G.measuring = true;
            }
            if (G.holding && !G.quitting && now >= G.t_meas1) {
                getrusage(RUSAGE_SELF, &G.ru1);
                G.wall1 = now;
                G.ended = true;
                idle_quit_all(now);
            }
            if (G.holding && !G.quitting)
                idle_pace(now);
            if (G.quitting && G.busy == 0)
                break;
        } else {
            if (!G.measuring && now >= G.t_meas0) {
                getrusage(RUSAGE_SELF, &G.ru0);
                G.wall0 = now;
                G.measuring = true;
            }
            if (!G.ended && (now >= G.t_meas1 || G.finished)) {
                getrusage(RUSAGE_SELF, &G.ru1);
                G.wall1 = now;
                G.ended = true;
                /* Guesses still waiting for their delayed answer are
                 * abandoned: the run lasts --duration, not a delay more. */
                if (G.mode == M_GUESS)
                    guess_stop_all();
            }
            if (G.finished || (G.ended && G.busy == 0))
                break;
        }
        if (now >= G.t_deadline)
            break;
        if (now >= next_sweep) {
            sweep(now);
            next_sweep = now + SWEEP_NS;
            continue;
        }

        int64_t wake = next_sweep;
        if (!G.measuring && G.t_meas0 < wake)
            wake = G.t_meas0;
        if (G.measuring && !G.ended && G.t_meas1 < wake)
            wake = G.t_meas1;
        if (G.mode == M_IDLE && G.holding && !G.quitting && now + NS_PER_MS < wake)
            wake = now + NS_PER_MS;
        int64_t wait = wake - now;
        int ms = wait <= 0 ? 0 : (int)((wait + NS_PER_MS - 1) / NS_PER_MS);
        int n = epoll_wait(G.ep, evs, MAX_EVENTS, ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            uint32_t idx = (uint32_t)evs[i].data.u64, gen = (uint32_t)(evs[i].data.u64 >> 32);
            struct slot *s = &G.slots[idx];
            if (s->gen != gen || s->fd < 0)
                continue;
            on_readable(s, evs[i].events);
        }
    }

    now = now_ns();
    if (!G.measuring) {
        getrusage(RUSAGE_SELF, &G.ru0);
        G.wall0 = now;
    }
    if (!G.ended) {
        getrusage(RUSAGE_SELF, &G.ru1);
        G.wall1 = now;
    }
    /* What is still open at the deadline hung. */
    for (unsigned i = 0; i < G.conc; i++) {
        struct slot *s = &G.slots[i];
        if (s->fd >= 0) {
            note_error(s, "still open at the end of the run (step %d)", s->step);
            slot_close(s, false);
        }
    }
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile(2 * G.conc + 100);
    if (G.tls)
        tls_init();
    G.ep = epoll_create1(EPOLL_CLOEXEC);
    if (G.ep < 0)
        die("epoll_create1: %s", strerror(errno));
    G.rbuf = malloc(RBUF_SIZE);
    G.slots = calloc(G.conc, sizeof(*G.slots));
    if (G.rbuf == NULL || G.slots == NULL)
        die("out of memory");
    for (unsigned i = 0; i < G.conc; i++) {
        G.slots[i].fd = -1;
        G.slots[i].step = ST_FREE;
        G.slots[i].user = &G.users[i % G.nusers];
    }
    run();
    print_result();
    return 0;
}
