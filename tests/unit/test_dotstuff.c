/*
 * The wire encoder (src/pop3/dotstuff.c): a table of input -> exact wire
 * bytes, each case also cut into every pair of chunks and byte by byte,
 * which must not change a thing; and a property test that holds the
 * encoder and the store's size computation (wire_counter, store.h)
 * together: what RETR sends, un-stuffed, is exactly what LIST announced.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pop3/pop3.h"
#include "store/store.h"

struct ds_case {
    const char *name;
    const char *in;
    size_t in_len; /* 0: strlen(in) */
    int64_t lines; /* TOP body lines, -1: the whole message */
    const char *out;
    size_t out_len; /* 0: strlen(out) */
};

#define B(s) s, sizeof(s) - 1 /* a literal with NUL bytes */

static const struct ds_case cases[] = {
    /* Line ends. */
    {"empty message", "", 0, -1, "", 0},
    {"one char, no newline", "a", 0, -1, "a\r\n", 0},
    {"LF", "a\n", 0, -1, "a\r\n", 0},
    {"CRLF", "a\r\n", 0, -1, "a\r\n", 0},
    {"LF only lines", "a\nb\nc\n", 0, -1, "a\r\nb\r\nc\r\n", 0},
    {"CRLF and LF mixed", "a\nb\r\nc\nd\r\n", 0, -1, "a\r\nb\r\nc\r\nd\r\n", 0},
    {"no final newline", "a\r\nb", 0, -1, "a\r\nb\r\n", 0},
    {"lone LF", "\n", 0, -1, "\r\n", 0},
    {"empty lines", "\n\n\r\n", 0, -1, "\r\n\r\n\r\n", 0},
    {"lone CR in a line", "a\rb\n", 0, -1, "a\rb\r\n", 0},
    {"CR at the end", "a\r", 0, -1, "a\r\r\n", 0},
    {"only a CR", "\r", 0, -1, "\r\r\n", 0},
    {"CR CR LF", "\r\r\n", 0, -1, "\r\r\n", 0},
    {"CR CR at the end", "a\r\r", 0, -1, "a\r\r\r\n", 0},
    {"LF CR", "a\n\rb", 0, -1, "a\r\n\rb\r\n", 0},
    /* Dots. */
    {"a dot alone", ".", 0, -1, "..\r\n", 0},
    {"a dot line", ".\r\n", 0, -1, "..\r\n", 0},
    {"two dots", "..", 0, -1, "...\r\n", 0},
    {"two dots line", "..\n", 0, -1, "...\r\n", 0},
    {"dot line in the middle", "a\r\n.\r\nb\r\n", 0, -1, "a\r\n..\r\nb\r\n", 0},
    {"dot line in the middle, LF", "a\n.\nb\n", 0, -1, "a\r\n..\r\nb\r\n", 0},
    {"dots at every line start", ".a\n.b\r\n.c", 0, -1, "..a\r\n..b\r\n..c\r\n", 0},
    {"dot not at line start", "a.b\n a.\n", 0, -1, "a.b\r\n a.\r\n", 0},
    {"dot after a lone CR", "\r.\n", 0, -1, "\r.\r\n", 0},
    {"dot after LF CR", "a\n\r.\n", 0, -1, "a\r\n\r.\r\n", 0},
    {"dot after the last newline", "a\n.", 0, -1, "a\r\n..\r\n", 0},
    {"end-of-data lookalike", "a\r\n.\r\n\r\nb", 0, -1, "a\r\n..\r\n\r\nb\r\n", 0},
    /* Bytes that are not text. */
    {"NUL and 0xff", B("\0\xff\n.\0"), -1, B("\0\xff\r\n..\0\r\n")},
    {"NUL line", B("\0\n\0"), -1, B("\0\r\n\0\r\n")},
    {"high bytes", "\xc3\xa9t\xc3\xa9\n\x80\x81", 0, -1, "\xc3\xa9t\xc3\xa9\r\n\x80\x81\r\n", 0},

    /* TOP: header, the empty line, then n body lines. */
    {"TOP 0", "H: 1\r\n\r\nl1\r\nl2\r\nl3\r\n", 0, 0, "H: 1\r\n\r\n", 0},
    {"TOP 1", "H: 1\r\n\r\nl1\r\nl2\r\nl3\r\n", 0, 1, "H: 1\r\n\r\nl1\r\n", 0},
    {"TOP 2", "H: 1\r\n\r\nl1\r\nl2\r\nl3\r\n", 0, 2, "H: 1\r\n\r\nl1\r\nl2\r\n", 0},
    {"TOP = body", "H: 1\r\n\r\nl1\r\nl2\r\nl3\r\n", 0, 3, "H: 1\r\n\r\nl1\r\nl2\r\nl3\r\n", 0},
    {"TOP > body", "H: 1\r\n\r\nl1\r\nl2\r\nl3\r\n", 0, 99, "H: 1\r\n\r\nl1\r\nl2\r\nl3\r\n", 0},
    {"TOP LF", "H: 1\nH: 2\n\nl1\nl2\n", 0, 1, "H: 1\r\nH: 2\r\n\r\nl1\r\n", 0},
    {"TOP no blank line", "H: 1\nH: 2\n", 0, 1, "H: 1\r\nH: 2\r\n", 0},
    {"TOP no blank line, no newline", "H: 1\nH: 2", 0, 0, "H: 1\r\nH: 2\r\n", 0},
    {"TOP header only, blank at end", "H: 1\r\n\r\n", 0, 5, "H: 1\r\n\r\n", 0},
    {"TOP body without final newline", "H\r\n\r\nbody", 0, 1, "H\r\n\r\nbody\r\n", 0},
    {"TOP body without final newline, 0", "H\r\n\r\nbody", 0, 0, "H\r\n\r\n", 0},
    {"TOP stops before no-newline line", "H\n\nb1\nb2", 0, 1, "H\r\n\r\nb1\r\n", 0},
    {"TOP empty message", "", 0, 0, "", 0},
    {"TOP empty message, 3", "", 0, 3, "", 0},
    {"TOP message starts with blank", "\nbody\n", 0, 0, "\r\n", 0},
    {"TOP message starts with blank, 1", "\nbody\nmore\n", 0, 1, "\r\nbody\r\n", 0},
    {"TOP dots in body", "H\n\n.x\n.y\n", 0, 1, "H\r\n\r\n..x\r\n", 0},
    {"TOP dot lines", "\r\n.\r\n..\r\n", 0, 1, "\r\n..\r\n", 0},
    {"TOP empty body lines count", "H\n\n\n\nx\n", 0, 2, "H\r\n\r\n\r\n\r\n", 0},
    {"TOP CRLF blank line after LF header", "H\n\r\nB\n\r\rX\nY\n", 0, 1, "H\r\n\r\nB\r\n", 0},
    {"TOP lone CR line in header", "H\n\r\rX\n\nB\nC\n", 0, 1, "H\r\n\r\rX\r\n\r\nB\r\n", 0},
    {"TOP CR held at the limit", "H\r\n\r\nb\r\nc\r", 0, 1, "H\r\n\r\nb\r\n", 0},
    {"TOP CR at the end of the body", "H\r\n\r\nb\r", 0, 1, "H\r\n\r\nb\r\r\n", 0},
};

/* Encodes in[0..len) cut at the given points (sorted, within 1..len-1). */
static size_t encode_cut(const char *in, size_t len, int64_t lines, const size_t *cuts,
                         size_t n_cuts, unsigned char *out)
{
    struct dotstuff d;
    size_t o = 0, from = 0;

    dotstuff_init(&d, lines);
    for (size_t c = 0; c <= n_cuts; c++) {
        size_t to = c < n_cuts ? cuts[c] : len;
        size_t n = dotstuff_encode(&d, in + from, to - from, out + o);
        assert_true(n <= DOTSTUFF_MAX_OUT(to - from));
        o += n;
        from = to;
    }
    o += dotstuff_finish(&d, out + o);
    return o;
}

static void check_out(const struct ds_case *c, const unsigned char *got, size_t got_len,
                      const char *how)
{
    size_t want_len = c->out_len != 0 ? c->out_len : strlen(c->out);

    if (got_len != want_len || memcmp(got, c->out, want_len) != 0) {
        print_error("case \"%s\" (%s): got %zu bytes, want %zu\n", c->name, how, got_len, want_len);
        fail();
    }
}

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct ds_case *c = &cases[i];
        size_t len = c->in_len != 0 ? c->in_len : strlen(c->in);
        unsigned char *out = malloc(DOTSTUFF_MAX_OUT(len) + 3);
        size_t *cuts = malloc((len + 1) * sizeof(*cuts));
        assert_non_null(out);
        assert_non_null(cuts);

        check_out(c, out, encode_cut(c->in, len, c->lines, NULL, 0, out), "whole");
        for (size_t k = 1; k < len; k++) {
            cuts[0] = k;
            check_out(c, out, encode_cut(c->in, len, c->lines, cuts, 1, out), "two chunks");
        }
        for (size_t k = 1; k < len; k++)
            cuts[k - 1] = k;
        check_out(c, out, encode_cut(c->in, len, c->lines, cuts, len > 0 ? len - 1 : 0, out),
                  "byte by byte");
        free(out);
        free(cuts);
    }
}

static void test_empty_chunks(void **state)
{
    struct dotstuff d;
    unsigned char out[64];
    size_t o = 0;

    (void)state;
    dotstuff_init(&d, -1);
    o += dotstuff_encode(&d, "", 0, out + o);
    o += dotstuff_encode(&d, "a\r", 2, out + o);
    o += dotstuff_encode(&d, "", 0, out + o);
    o += dotstuff_encode(&d, "\n.", 2, out + o);
    o += dotstuff_encode(&d, "", 0, out + o);
    o += dotstuff_finish(&d, out + o);
    assert_int_equal(o, 7);
    assert_memory_equal(out, "a\r\n..\r\n", 7);
}

static void test_top_done(void **state)
{
    struct dotstuff d;
    unsigned char out[64];
    static const char msg[] = "H\n\nb1\nb2\nb3\n";

    (void)state;
    dotstuff_init(&d, 1);
    assert_false(dotstuff_done(&d));
    size_t n = dotstuff_encode(&d, msg, sizeof(msg) - 1, out);
    assert_int_equal(n, 9);
    assert_memory_equal(out, "H\r\n\r\nb1\r\n", 9);
    assert_true(dotstuff_done(&d));
    /* The rest is ignored, and the end adds nothing. */
    assert_int_equal(dotstuff_encode(&d, "more\n", 5, out), 0);
    assert_int_equal(dotstuff_finish(&d, out), 0);

    /* The whole message is never "done" early. */
    dotstuff_init(&d, -1);
    n = dotstuff_encode(&d, msg, sizeof(msg) - 1, out);
    assert_int_equal(n, 17);
    assert_false(dotstuff_done(&d));
}

/* --- property: encoder and wire_counter agree --- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    /* xorshift64*: reproducible across runs and platforms. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

/* Dense: line ends and dots everywhere. Sparse: runs of ordinary bytes
 * long enough for the encoder's 16-byte steps, as in real mail. */
static void random_message(unsigned char *buf, size_t len, bool sparse)
{
    static const unsigned char alphabet[] = {'\r', '\n', '.', 'a', ' ', '\0', 0xff, '\n', '.'};

    for (size_t i = 0; i < len; i++) {
        if (sparse && rng() % 24 != 0)
            buf[i] = (unsigned char)('a' + rng() % 26);
        else
            buf[i] = rng() % 4 == 0 ? (unsigned char)rng() : alphabet[rng() % sizeof(alphabet)];
    }
}

/* What un-stuffing the wire must give back: every bare LF as CRLF, and a
 * CRLF after a last line that had none. */
static size_t normalize(const unsigned char *in, size_t len, unsigned char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
            out[o++] = '\r';
        out[o++] = in[i];
    }
    if (o > 0 && out[o - 1] != '\n') {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    return o;
}

/* Removes the dot-stuffing: a '.' starting a wire line is dropped. Wire
 * lines end in CRLF; a CR inside a line is never followed by LF. */
static size_t unstuff(const unsigned char *in, size_t len, unsigned char *out)
{
    size_t o = 0;
    bool bol = true;

    for (size_t i = 0; i < len; i++) {
        if (bol && in[i] == '.') {
            /* A stuffed line always starts with two dots. */
            assert_true(i + 1 < len && in[i + 1] == '.');
            i++;
        }
        out[o++] = in[i];
        bol = in[i] == '\n';
    }
    return o;
}

/* The encoder's output keeps the wire rules: CRLF only, no line that is
 * a single dot (that would end the reply), and a final CRLF. */
static void check_wire(const unsigned char *w, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (w[i] == '\n')
            assert_true(i > 0 && w[i - 1] == '\r');
        bool bol = i == 0 || w[i - 1] == '\n';
        if (bol && w[i] == '.')
            assert_true(i + 1 < len && w[i + 1] == '.');
    }
    if (len > 0)
        assert_memory_equal(w + len - 2, "\r\n", 2);
}

/* What TOP n must give: the full encoding up to the end of the header's
 * empty line, plus n lines (or all there is). */
static size_t top_reference(const unsigned char *full, size_t len, uint64_t n)
{
    size_t i = 0;
    bool header = true;

    while (i < len) {
        const unsigned char *e = NULL;
        for (size_t k = i; k + 1 < len; k++) {
            if (full[k] == '\r' && full[k + 1] == '\n') {
                e = full + k;
                break;
            }
        }
        assert_non_null(e);
        size_t line_len = (size_t)(e - (full + i));
        i += line_len + 2;
        if (header) {
            if (line_len == 0) {
                header = false;
                if (n == 0)
                    return i;
            }
        } else if (--n == 0) {
            return i;
        }
    }
    return len;
}

static void test_property_wire_counter(void **state)
{
    enum { MAX = 600 };
    unsigned char in[MAX], whole[DOTSTUFF_MAX_OUT(MAX) + 3], cut[DOTSTUFF_MAX_OUT(MAX) + 3],
        plain[DOTSTUFF_MAX_OUT(MAX) + 3], ref[DOTSTUFF_MAX_OUT(MAX) + 3];
    size_t cuts[MAX];

    (void)state;
    for (unsigned iter = 0; iter < 10000; iter++) {
        size_t len = (size_t)(rng() % (iter < 100 ? 8 : MAX));
        random_message(in, len, iter % 2 == 1);

        size_t wn = encode_cut((const char *)in, len, -1, NULL, 0, whole);
        check_wire(whole, wn);

        /* Random chunks give the same bytes. */
        size_t n_cuts = 0;
        for (size_t k = 1; k < len; k++) {
            if (rng() % 7 == 0)
                cuts[n_cuts++] = k;
        }
        size_t cn = encode_cut((const char *)in, len, -1, cuts, n_cuts, cut);
        assert_int_equal(cn, wn);
        assert_memory_equal(cut, whole, wn);

        /* Un-stuffed, it is exactly as long as the store says, counted
         * whole or in the same chunks. */
        struct wire_counter wc, wc2;
        wire_counter_init(&wc);
        wire_counter_add(&wc, in, len);
        uint64_t size = wire_counter_finish(&wc);
        wire_counter_init(&wc2);
        size_t from = 0;
        for (size_t c = 0; c <= n_cuts; c++) {
            size_t to = c < n_cuts ? cuts[c] : len;
            wire_counter_add(&wc2, in + from, to - from);
            from = to;
        }
        assert_int_equal(wire_counter_finish(&wc2), size);
        size_t pn = unstuff(whole, wn, plain);
        assert_int_equal(pn, size);
        assert_int_equal(normalize(in, len, ref), pn);
        assert_memory_equal(plain, ref, pn);

        /* TOP is a prefix of the whole, ending where the reference says. */
        uint64_t lines = rng() % 5;
        size_t tn = encode_cut((const char *)in, len, (int64_t)lines, cuts, n_cuts, cut);
        size_t want = top_reference(whole, wn, lines);
        assert_int_equal(tn, want);
        assert_memory_equal(cut, whole, tn);
    }
}

/* --- the 64-byte expand path against the portable code --- */

/* Mail-like text in the shapes the expand path must get right: lines of
 * every length (so that line ends fall on every position of a 64-byte
 * step, and on its edges), LF or CRLF ends, a CR alone at a block's last
 * byte, dot lines, empty lines and runs of line ends. */
static size_t mail_message(unsigned char *buf, size_t cap)
{
    size_t n = 0;
    bool crlf = rng() % 3 == 0;

    while (n + 200 < cap) {
        unsigned kind = (unsigned)(rng() % 16);
        size_t line = (size_t)(rng() % (rng() % 4 == 0 ? 130 : 80));
        if (kind == 0)
            buf[n++] = '.';
        for (size_t i = 0; i < line; i++)
            buf[n++] = kind == 1 && i % 9 == 0 ? '\r' : (unsigned char)('!' + rng() % 94);
        if (kind == 2)
            buf[n++] = '\r'; /* a CR before the line end, as in CR CR LF */
        if (crlf || kind == 3)
            buf[n++] = '\r';
        buf[n++] = '\n';
        if (kind == 4)
            buf[n++] = '\n';
    }
    /* Some end without a line end, or with a lone CR. */
    if (rng() % 3 == 0)
        n--;
    else if (rng() % 4 == 0)
        buf[n++] = '\r';
    return n;
}

/* The same input through the portable code and through the expand path;
 * returns the portable length, *fast_n the other. */
static size_t encode_both(const unsigned char *in, size_t len, int64_t lines, const size_t *cuts,
                          size_t n_cuts, unsigned char *portable, unsigned char *fast,
                          size_t *fast_n)
{
    dotstuff_portable_only(true);
    size_t pn = encode_cut((const char *)in, len, lines, cuts, n_cuts, portable);
    dotstuff_portable_only(false);
    *fast_n = encode_cut((const char *)in, len, lines, cuts, n_cuts, fast);
    return pn;
}

static void test_expand_same_bytes(void **state)
{
    enum { MAX = 8192 };
    static unsigned char in[MAX], fast[DOTSTUFF_MAX_OUT(MAX) + 3],
        portable[DOTSTUFF_MAX_OUT(MAX) + 3];
    static size_t cuts[MAX];

    (void)state;
    if (!dotstuff_expand_available())
        skip(); /* nothing to compare: both would be the portable code */
    for (unsigned iter = 0; iter < 4000; iter++) {
        size_t len;
        if (iter % 4 == 3) {
            len = (size_t)(rng() % MAX);
            random_message(in, len, iter % 8 == 3);
        } else {
            len = mail_message(in, (size_t)(300 + rng() % (MAX - 300)));
        }
        size_t n_cuts = 0;
        unsigned every = 1 + (unsigned)(rng() % 200);
        for (size_t k = 1; k < len; k++) {
            if (rng() % every == 0)
                cuts[n_cuts++] = k;
        }
        int64_t lines = iter % 5 == 0 ? (int64_t)(rng() % 20) : -1;

        size_t fn;
        size_t pn = encode_both(in, len, lines, cuts, n_cuts, portable, fast, &fn);
        if (fn != pn || memcmp(fast, portable, pn) != 0) {
            size_t at = 0;
            while (at < pn && at < fn && fast[at] == portable[at])
                at++;
            print_error("iteration %u: %zu bytes in, %zu cuts: expand path %zu bytes, portable "
                        "%zu, first difference at %zu\n",
                        iter, len, n_cuts, fn, pn, at);
            fail();
        }
        check_wire(fast, fn);
    }
}

/* The edges one at a time: a message of 'x' (or of LFs only, which doubles
 * in size: the most output there can be) with the given bytes at every
 * offset, so at and around the edges of the expand path's 64-byte steps. */
static void test_expand_block_edges(void **state)
{
    static const char *const inserts[] = {"\n", "\r", "\r\n", "\n.", "\n\n", ".", "\r\r\n", "\n\r"};
    static const size_t lens[] = {64, 65, 127, 128, 129, 191, 192};
    unsigned char in[192], fast[DOTSTUFF_MAX_OUT(192) + 3], portable[DOTSTUFF_MAX_OUT(192) + 3];

    (void)state;
    if (!dotstuff_expand_available())
        skip();
    for (size_t i = 0; i < 2 * sizeof(inserts) / sizeof(inserts[0]); i++) {
        const char *ins = inserts[i / 2];
        for (size_t at = 0; at + strlen(ins) <= sizeof(in); at++) {
            for (size_t l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
                size_t len = lens[l];
                memset(in, i % 2 == 0 ? 'x' : '\n', sizeof(in));
                memcpy(in + at, ins, strlen(ins));
                size_t fn;
                size_t pn = encode_both(in, len, -1, NULL, 0, portable, fast, &fn);
                assert_int_equal(fn, pn);
                assert_memory_equal(fast, portable, pn);
            }
        }
    }
}

static int portable_on(void **state)
{
    (void)state;
    dotstuff_portable_only(true);
    return 0;
}

static int portable_off(void **state)
{
    (void)state;
    dotstuff_portable_only(false);
    return 0;
}

int main(void)
{
    /* Each table and property test runs twice: with the expand path where
     * the CPU has it, and with the portable code alone. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_empty_chunks),
        cmocka_unit_test(test_top_done),
        cmocka_unit_test(test_property_wire_counter),
        {"test_table (portable)", test_table, portable_on, portable_off, NULL},
        {"test_property_wire_counter (portable)", test_property_wire_counter, portable_on,
         portable_off, NULL},
        cmocka_unit_test(test_expand_same_bytes),
        cmocka_unit_test(test_expand_block_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
