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

size_t dotstuff_encode(struct dotstuff *d, const void *in, size_t len, void *out)
{
    const unsigned char *p = in, *end = p + len;
    unsigned char *o = out;

    if (d->done)
        return 0;
    while (p < end) {
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
