/*
 * The POP3 wire encoder. Runs of ordinary bytes are copied with memcpy;
 * only line ends and a '.' at the start of a line need attention, so a
 * message costs little more than a copy. A CR is held back until the next
 * byte shows whether it starts a CRLF, which makes the result the same
 * however the input is cut into chunks.
 */
#include "pop3/pop3.h"

#include <string.h>

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

        const unsigned char *lf = memchr(p, '\n', (size_t)(end - p));
        const unsigned char *stop = lf != NULL ? lf : end;
        const unsigned char *cr = memchr(p, '\r', (size_t)(stop - p));
        if (cr != NULL)
            stop = cr;
        if (stop > p) {
            memcpy(o, p, (size_t)(stop - p));
            o += stop - p;
            p = stop;
            d->bol = false;
        }
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
