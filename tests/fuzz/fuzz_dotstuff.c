/*
 * The wire encoder against the store's size computation, for any bytes
 * cut into any chunks: the output keeps the wire rules, does not depend
 * on the chunking, un-stuffed is exactly wire_counter's size (LIST =
 * RETR, DESIGN.md 6.6), and TOP n is the right prefix of the whole;
 * where the CPU has the encoder's expand path, the portable code alone
 * gives the same bytes.
 *
 * Input: byte 0 is the TOP line count (0x80 set: no limit), byte 1 seeds
 * the chunk sizes, the rest is the message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3/pop3.h"
#include "store/store.h"
#include "fuzz.h"

/* Chunk sizes from a seed: 1 to 64 bytes, sometimes empty. */
static size_t next_chunk(uint32_t *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return (*seed >> 16) % 65;
}

static size_t encode(const uint8_t *in, size_t len, int64_t lines, uint32_t seed, bool whole,
                     uint8_t *out, struct wire_counter *wc)
{
    struct dotstuff d;
    size_t o = 0, i = 0;

    dotstuff_init(&d, lines);
    while (i < len) {
        size_t n = whole ? len : next_chunk(&seed);
        if (n > len - i)
            n = len - i;
        size_t m = dotstuff_encode(&d, in + i, n, out + o);
        check(m <= DOTSTUFF_MAX_OUT(n), "more output than DOTSTUFF_MAX_OUT");
        o += m;
        if (wc != NULL)
            wire_counter_add(wc, in + i, n);
        i += n;
    }
    size_t m = dotstuff_finish(&d, out + o);
    check(m <= 3, "finish wrote more than 3 bytes");
    return o + m;
}

/* CRLF only, no line that is a lone dot, a final CRLF. */
static void check_wire(const uint8_t *w, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (w[i] == '\n')
            check(i > 0 && w[i - 1] == '\r', "bare LF on the wire");
        if ((i == 0 || w[i - 1] == '\n') && w[i] == '.')
            check(i + 1 < len && w[i + 1] == '.', "unstuffed dot at a line start");
    }
    if (len > 0)
        check(len >= 2 && w[len - 2] == '\r' && w[len - 1] == '\n', "no final CRLF");
}

static size_t unstuffed_len(const uint8_t *w, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        if ((i == 0 || w[i - 1] == '\n') && w[i] == '.')
            continue;
        n++;
    }
    return n;
}

static size_t top_reference(const uint8_t *full, size_t len, uint64_t n)
{
    size_t i = 0;
    bool header = true;

    while (i < len) {
        size_t k = i;
        while (!(full[k] == '\r' && full[k + 1] == '\n'))
            k++;
        bool empty = k == i;
        i = k + 2;
        if (header) {
            if (empty) {
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int64_t lines = data[0] & 0x80 ? -1 : data[0] & 0x7f;
    uint32_t seed = data[1];
    const uint8_t *in = data + 2;
    size_t len = size - 2;
    uint8_t *whole = malloc(DOTSTUFF_MAX_OUT(len) + 3);
    uint8_t *cut = malloc(DOTSTUFF_MAX_OUT(len) + 3);
    struct wire_counter wc, wc_cut;

    check(whole != NULL && cut != NULL, "out of memory");
    wire_counter_init(&wc);
    wire_counter_init(&wc_cut);
    size_t wn = encode(in, len, -1, seed, true, whole, &wc);
    check_wire(whole, wn);
    uint64_t size_whole = wire_counter_finish(&wc);
    check(unstuffed_len(whole, wn) == size_whole, "un-stuffed length != wire_counter");

    size_t cn = encode(in, len, -1, seed, false, cut, &wc_cut);
    check(cn == wn && memcmp(cut, whole, wn) == 0, "output depends on the chunking");
    check(wire_counter_finish(&wc_cut) == size_whole, "wire_counter depends on the chunking");

    if (dotstuff_expand_available()) {
        dotstuff_portable_only(true);
        size_t pn = encode(in, len, -1, seed, false, cut, NULL);
        dotstuff_portable_only(false);
        check(pn == wn && memcmp(cut, whole, wn) == 0, "expand path != portable code");
    }

    if (lines >= 0) {
        size_t tn = encode(in, len, lines, seed, false, cut, NULL);
        size_t want = top_reference(whole, wn, (uint64_t)lines);
        check(tn == want && memcmp(cut, whole, tn) == 0, "TOP is not the right prefix");
    }
    free(whole);
    free(cut);
    return 0;
}
