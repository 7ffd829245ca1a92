/* The metrics endpoint's request judge (src/net/metrics_http.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/metrics_http.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly size bytes: a read past the end is caught. */
    char *buf = malloc(size ? size : 1);
    size_t head_len = 12345;

    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    enum metrics_verdict v = metrics_http_judge(buf, size, &head_len);
    switch (v) {
    case METRICS_GET:
    case METRICS_HEAD:
    case METRICS_NOT_FOUND:
    case METRICS_NOT_ALLOWED:
        /* A whole head, within the buffer and the limit. */
        if (head_len == 0 || head_len > size || head_len > 8192)
            abort();
        break;
    case METRICS_INCOMPLETE:
        if (size >= 8192)
            abort();
        break;
    case METRICS_TOO_LARGE:
    case METRICS_BAD:
        break;
    default:
        abort();
    }
    free(buf);
    return 0;
}
