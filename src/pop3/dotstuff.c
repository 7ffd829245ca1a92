/*
 * The POP3 wire encoder. Runs of ordinary bytes are copied in bulk;
 * only line ends and a '.' at the start of a line need attention, so a
 * message costs little more than a copy. A CR is held back until the next
 * byte shows whether it starts a CRLF, which makes the result the same
 * however the input is cut into chunks.
 */
#include "pop3/pop3.h"

#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_EXPAND 1
#endif

static bool portable_only;

void dotstuff_portable_only(bool on)
{
    portable_only = on;
}

void dotstuff_init(struct dotstuff *d, int64_t body_lines)
{
    memset(d, 0, sizeof(*d));
    d->bol = true;
    d->in_header = true;
    d->limited = body_lines >= 0;
    d->body_lines_left = body_lines >= 0 ? (uint64_t)body_lines : 0;
}

/* A line ended (empty tells whether it had no content). Returns true when
 * the TOP line limit is reached. */
static bool line_end(struct dotstuff *d, bool empty)
{
    d->bol = true;
    if (!d->limited)
        return false;
    if (d->in_header) {
        if (!empty)
            return false;
        d->in_header = false;
    } else {
        d->body_lines_left--;
    }
    if (d->body_lines_left == 0)
        d->done = true;
    return d->done;
}

/*
 * Copies bytes up to the next CR or LF (or end); returns where it stopped.
 * Lines of mail are short, so a memchr for each kind of line end and a
 * memcpy per line cost three calls per 70 bytes; this looks at 16 bytes at
 * a time and stores them before it knows how many are ordinary. The
 * stores stay inside DOTSTUFF_MAX_OUT: they happen only with 16 input
 * bytes left, whose output cannot be shorter.
 */
static const unsigned char *copy_run(const unsigned char *p, const unsigned char *end,
                                     unsigned char **op)
{
    unsigned char *o = *op;

#ifdef __SSE2__
    const __m128i lf = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r');
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        unsigned m =
            (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, lf), _mm_cmpeq_epi8(v, cr)));
        _mm_storeu_si128((__m128i *)(void *)o, v);
        if (m != 0) {
            unsigned k = (unsigned)__builtin_ctz(m);
            *op = o + k;
            return p + k;
        }
        p += 16;
        o += 16;
    }
#endif
    while (p < end && *p != '\n' && *p != '\r')
        *o++ = *p++;
    *op = o;
    return p;
}

#ifdef HAVE_EXPAND
/*
 * The copy above stops at every line end, and where the next one falls is
 * a branch the CPU cannot predict: that misprediction, once per line, was
 * a large part of the encoder's cost. This takes 64 bytes per step with no
 * branch that depends on the text: a CR goes in front of each LF not
 * already preceded by one, by byte-expand instructions (32 bytes in, up to
 * 64 out) whose masks (1: the next input byte, 0: a CR) come from the LF
 * positions by pdep/pext. A '.' at the start of a line, rare in mail,
 * stops it, as does a TOP line limit (the caller does not come here then);
 * the loop below takes over there. 1.5 to 1.8 times as fast as the copy
 * above on bench/ messages (a microbenchmark, 64 KiB chunks).
 *
 * The stores are whole 64-byte vectors, of which only the first 32 + (CRs
 * added) bytes count; masked stores, exact to the byte, were a sixth
 * slower. They stay inside DOTSTUFF_MAX_OUT(len): no input byte gives more
 * than two output bytes, so with 64 input bytes left the output so far is
 * at least 128 bytes short of the bound.
 *
 * Returns where it stopped; the CR state it leaves is the loop's: a block
 * that ends in a CR is given back (the CR is taken out again) so that the
 * loop sees it and decides with the next byte.
 */
__attribute__((target("avx512f,avx512bw,avx512vbmi2,bmi,bmi2,popcnt"))) static const unsigned char *
expand_run(struct dotstuff *d, const unsigned char *p, const unsigned char *end, unsigned char **op)
{
    const __m512i lf = _mm512_set1_epi8('\n'), cr = _mm512_set1_epi8('\r'),
                  dot = _mm512_set1_epi8('.');
    const uint64_t odd = 0xAAAAAAAAAAAAAAAAull, even = 0x5555555555555555ull;
    const unsigned char *start = p;
    unsigned char *o = *op;
    uint64_t bol = d->bol, after_cr = 0;

    while (end - p >= 64) {
        __m512i v = _mm512_loadu_si512((const void *)p);
        uint64_t m_lf = _mm512_cmpeq_epi8_mask(v, lf);
        uint64_t m_cr = _mm512_cmpeq_epi8_mask(v, cr);
        uint64_t m_dot = _mm512_cmpeq_epi8_mask(v, dot);
        if ((m_dot & ((m_lf << 1) | bol)) != 0)
            break;
        uint64_t ins = m_lf & ~((m_cr << 1) | after_cr);
        /* Two output slots per input byte, CR slot (even) then the byte
         * (odd); pext packs the slots in use: 1 where an input byte goes. */
        uint32_t ins_lo = (uint32_t)ins, ins_hi = (uint32_t)(ins >> 32);
        uint64_t keep_lo = _pext_u64(odd, odd | _pdep_u64(ins_lo, even));
        uint64_t keep_hi = _pext_u64(odd, odd | _pdep_u64(ins_hi, even));
        unsigned n_lo = 32 + (unsigned)__builtin_popcount(ins_lo);
        unsigned n_hi = 32 + (unsigned)__builtin_popcount(ins_hi);
        __m512i w_lo = _mm512_mask_expand_epi8(cr, keep_lo, v);
        __m512i w_hi = _mm512_mask_expand_epi8(cr, keep_hi, _mm512_shuffle_i64x2(v, v, 0xEE));
        _mm512_storeu_si512(o, w_lo);
        o += n_lo;
        _mm512_storeu_si512(o, w_hi);
        o += n_hi;
        p += 64;
        bol = m_lf >> 63;
        after_cr = m_cr >> 63;
    }
    if (p == start)
        return p;
    if (after_cr) {
        p--;
        o--;
    }
    d->bol = p[-1] == '\n';
    *op = o;
    return p;
}

static bool expand_usable(const struct dotstuff *d)
{
    return !d->limited && !portable_only && dotstuff_expand_available();
}
#endif

bool dotstuff_expand_available(void)
{
#ifdef HAVE_EXPAND
    return __builtin_cpu_supports("avx512vbmi2") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("bmi2");
#else
    return false;
#endif
}

size_t dotstuff_encode(struct dotstuff *d, const void *in, size_t len, void *out)
{
    const unsigned char *p = in, *end = p + len;
    unsigned char *o = out;

    if (d->done)
        return 0;
#ifdef HAVE_EXPAND
    bool expand = expand_usable(d);
#endif
    while (p < end) {
#ifdef HAVE_EXPAND
        if (expand && !d->cr) {
            p = expand_run(d, p, end, &o);
            if (p == end)
                break;
        }
#endif
        if (d->cr) {
            d->cr = false;
            if (*p == '\n') {
                bool empty = d->bol;
                *o++ = '\r';
                *o++ = '\n';
                p++;
                if (line_end(d, empty))
                    break;
                continue;
            }
            /* A CR not followed by LF is content. */
            *o++ = '\r';
            d->bol = false;
        }
        if (d->bol && *p == '.')
            *o++ = '.';

        const unsigned char *start = p;
        p = copy_run(p, end, &o);
        if (p > start)
            d->bol = false;
        if (p == end)
            break;
        if (*p == '\r') {
            d->cr = true;
            p++;
            continue;
        }
        /* A bare LF. */
        bool empty = d->bol;
        *o++ = '\r';
        *o++ = '\n';
        p++;
        if (line_end(d, empty))
            break;
    }
    return (size_t)(o - (unsigned char *)out);
}

size_t dotstuff_finish(struct dotstuff *d, void *out)
{
    unsigned char *o = out;

    if (d->done)
        return 0;
    if (d->cr) {
        *o++ = '\r';
        d->cr = false;
        d->bol = false;
    }
    if (!d->bol) {
        *o++ = '\r';
        *o++ = '\n';
        d->bol = true;
    }
    return (size_t)(o - (unsigned char *)out);
}
