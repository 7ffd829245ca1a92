/*
 * Strict JSON (RFC 8259) by recursive descent. The recursion is bounded by
 * JSON_MAX_DEPTH, so no input can exhaust the stack; memory is bounded by a
 * small multiple of the input size, which the caller limits.
 */
#include "auth/json.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct parser {
    const unsigned char *start, *p, *end;
    const char *error;
    unsigned depth;
};

static bool parse_value(struct parser *ps, struct json_value *out);
static void value_clear(struct json_value *v);

static bool fail(struct parser *ps, const char *error)
{
    if (ps->error == NULL)
        ps->error = error;
    return false;
}

static void skip_ws(struct parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static bool parse_literal(struct parser *ps, const char *word, enum json_type type,
                          struct json_value *out)
{
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return fail(ps, "unexpected character");
    ps->p += n;
    out->type = type;
    return true;
}

/* strtod() reads the decimal point of the current locale; JSON's is '.'. */
static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool parse_number(struct parser *ps, struct json_value *out)
{
    const unsigned char *s = ps->p, *p = ps->p;
    bool integer = true;

    if (p < ps->end && *p == '-')
        p++;
    if (p >= ps->end || !is_digit(*p))
        return fail(ps, "invalid number");
    if (*p == '0') {
        p++;
        /* RFC 8259: no leading zeros, so "01" is two values, i.e. junk. */
        if (p < ps->end && is_digit(*p))
            return fail(ps, "invalid number (leading zero)");
    } else {
        while (p < ps->end && is_digit(*p))
            p++;
    }
    if (p < ps->end && *p == '.') {
        integer = false;
        p++;
        if (p >= ps->end || !is_digit(*p))
            return fail(ps, "invalid number (no digit after '.')");
        while (p < ps->end && is_digit(*p))
            p++;
    }
    if (p < ps->end && (*p == 'e' || *p == 'E')) {
        integer = false;
        p++;
        if (p < ps->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= ps->end || !is_digit(*p))
            return fail(ps, "invalid number (no digit in the exponent)");
        while (p < ps->end && is_digit(*p))
            p++;
    }
    ps->p = p;

    if (integer) {
        /* Accumulated as a negative number so that INT64_MIN fits too. */
        bool neg = *s == '-';
        int64_t v = 0;
        const unsigned char *d = neg ? s + 1 : s;
        for (; d < p; d++) {
            int digit = *d - '0';
            if (v < (INT64_MIN + digit) / 10)
                break;
            v = v * 10 - digit;
        }
        if (d == p && (neg || v != INT64_MIN)) {
            out->type = JSON_INT;
            out->u.i = neg ? v : -v;
            return true;
        }
        /* Out of int64 range: kept as a double like any other number. */
    }

    size_t n = (size_t)(p - s);
    char small[64], *buf = n < sizeof(small) ? small : malloc(n + 1);
    if (buf == NULL)
        return fail(ps, "out of memory");
    memcpy(buf, s, n);
    buf[n] = '\0';
    pthread_once(&c_locale_once, c_locale_init);
    errno = 0;
    double d = c_locale != (locale_t)0 ? strtod_l(buf, NULL, c_locale) : strtod(buf, NULL);
    int err = errno;
    if (buf != small)
        free(buf);
    /* Underflow gives 0 or a subnormal, which is harmless; overflow gives
     * infinity, which JSON cannot express. */
    if (isinf(d) || (err == ERANGE && fabs(d) > 1.0)) {
        ps->p = s;
        return fail(ps, "number out of range");
    }
    out->type = JSON_DOUBLE;
    out->u.d = d;
    return true;
}

static int hex4(const unsigned char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

static size_t put_utf8(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/*
 * Length of the well-formed UTF-8 sequence at p (RFC 3629: no overlong
 * forms, no encoded surrogates, nothing above U+10FFFF), or 0.
 */
static size_t utf8_len(const unsigned char *p, const unsigned char *end)
{
    size_t avail = (size_t)(end - p);
    unsigned char c = p[0];
    unsigned char lo = 0x80, hi = 0xbf;
    size_t n;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (avail < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

/* ps->p is on the opening quote. The decoded string is never longer than
 * its encoded form, so one allocation of that size is enough. */
static bool parse_string(struct parser *ps, char **s_r, size_t *len_r)
{
    const unsigned char *p = ps->p + 1, *q = p;

    while (q < ps->end && *q != '"') {
        if (*q == '\\' && ps->end - q < 2) {
            q = ps->end;
            break;
        }
        q += *q == '\\' ? 2 : 1;
    }
    if (q >= ps->end)
        return fail(ps, "unterminated string");

    char *buf = malloc((size_t)(q - p) + 1);
    if (buf == NULL)
        return fail(ps, "out of memory");
    size_t n = 0;
    while (p < q) {
        ps->p = p;
        unsigned char c = *p;
        if (c < 0x20) {
            free(buf);
            return fail(ps, "control character in a string");
        }
        if (c != '\\') {
            size_t l = utf8_len(p, q);
            if (l == 0) {
                free(buf);
                return fail(ps, "invalid UTF-8");
            }
            memcpy(buf + n, p, l);
            n += l;
            p += l;
            continue;
        }
        char e = (char)p[1];
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e != '\0' && simple != NULL) {
            static const char map[] = "\"\\/\b\f\n\r\t";
            buf[n++] = map[simple - "\"\\/bfnrt"];
            p += 2;
            continue;
        }
        if (e != 'u') {
            free(buf);
            return fail(ps, "invalid escape");
        }
        int cp = (q - p) >= 6 ? hex4(p + 2) : -1;
        if (cp < 0) {
            free(buf);
            return fail(ps, "invalid \\u escape");
        }
        p += 6;
        if (cp >= 0xdc00 && cp <= 0xdfff) {
            free(buf);
            return fail(ps, "lone low surrogate");
        }
        if (cp >= 0xd800 && cp <= 0xdbff) {
            int lo = (q - p) >= 6 && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2) : -1;
            if (lo < 0xdc00 || lo > 0xdfff) {
                free(buf);
                return fail(ps, "lone high surrogate");
            }
            p += 6;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        n += put_utf8(buf + n, (uint32_t)cp);
    }
    buf[n] = '\0';
    ps->p = q + 1;
    *s_r = buf;
    *len_r = n;
    return true;
}

/* Containers grow by doubling; count is bounded by the input size. */
static bool grow(struct parser *ps, void **items, size_t *cap, size_t count, size_t size)
{
    if (count < *cap)
        return true;
    size_t ncap = *cap == 0 ? 4 : *cap * 2;
    void *n = realloc(*items, ncap * size);
    if (n == NULL)
        return fail(ps, "out of memory");
    *items = n;
    *cap = ncap;
    return true;
}

static bool enter(struct parser *ps)
{
    if (++ps->depth > JSON_MAX_DEPTH)
        return fail(ps, "nesting too deep");
    ps->p++;
    skip_ws(ps);
    return true;
}

static bool parse_array(struct parser *ps, struct json_value *out)
{
    out->type = JSON_ARRAY;
    out->u.arr.items = NULL;
    out->u.arr.count = 0;
    if (!enter(ps))
        return false;
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        ps->depth--;
        return true;
    }
    size_t cap = 0;
    for (;;) {
        if (!grow(ps, (void **)&out->u.arr.items, &cap, out->u.arr.count,
                  sizeof(*out->u.arr.items)))
            return false;
        if (!parse_value(ps, &out->u.arr.items[out->u.arr.count])) {
            value_clear(&out->u.arr.items[out->u.arr.count]);
            return false;
        }
        out->u.arr.count++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            ps->depth--;
            return true;
        }
        return fail(ps, ps->p < ps->end ? "expected ',' or ']'" : "unexpected end of input");
    }
}

static int member_cmp(const void *a, const void *b)
{
    const struct json_member *x = *(const struct json_member *const *)a;
    const struct json_member *y = *(const struct json_member *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c != 0)
        return c;
    return (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

/*
 * Parsers disagree on which of two equal names wins ({"sub":"a","sub":"b"}),
 * which has been used to slip claims past one of them: refuse them. Sorting
 * pointers keeps this O(n log n) on objects with many members.
 */
static bool check_duplicates(struct parser *ps, const struct json_value *obj)
{
    size_t n = obj->u.obj.count;
    if (n < 2)
        return true;
    const struct json_member **sorted = malloc(n * sizeof(*sorted));
    if (sorted == NULL)
        return fail(ps, "out of memory");
    for (size_t i = 0; i < n; i++)
        sorted[i] = &obj->u.obj.members[i];
    qsort(sorted, n, sizeof(*sorted), member_cmp);
    bool dup = false;
    for (size_t i = 1; i < n && !dup; i++)
        dup = member_cmp(&sorted[i - 1], &sorted[i]) == 0;
    free(sorted);
    return dup ? fail(ps, "duplicate member name") : true;
}

static bool parse_object(struct parser *ps, struct json_value *out)
{
    out->type = JSON_OBJECT;
    out->u.obj.members = NULL;
    out->u.obj.count = 0;
    if (!enter(ps))
        return false;
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        ps->depth--;
        return true;
    }
    size_t cap = 0;
    for (;;) {
        if (ps->p >= ps->end || *ps->p != '"')
            return fail(ps, ps->p < ps->end ? "expected a member name" : "unexpected end of input");
        if (!grow(ps, (void **)&out->u.obj.members, &cap, out->u.obj.count,
                  sizeof(*out->u.obj.members)))
            return false;
        struct json_member *m = &out->u.obj.members[out->u.obj.count];
        if (!parse_string(ps, &m->key, &m->key_len))
            return false;
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != ':') {
            free(m->key);
            return fail(ps, "expected ':'");
        }
        ps->p++;
        if (!parse_value(ps, &m->value)) {
            value_clear(&m->value);
            free(m->key);
            return false;
        }
        out->u.obj.count++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            skip_ws(ps);
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            ps->depth--;
            return check_duplicates(ps, out);
        }
        return fail(ps, ps->p < ps->end ? "expected ',' or '}'" : "unexpected end of input");
    }
}

/* On failure *out holds whatever was built so far, valid for value_clear(). */
static bool parse_value(struct parser *ps, struct json_value *out)
{
    out->type = JSON_NULL;
    skip_ws(ps);
    if (ps->p >= ps->end)
        return fail(ps, "unexpected end of input");
    switch (*ps->p) {
    case '{':
        return parse_object(ps, out);
    case '[':
        return parse_array(ps, out);
    case '"':
        if (!parse_string(ps, &out->u.str.s, &out->u.str.len))
            return false;
        out->type = JSON_STRING;
        return true;
    case 't':
        return parse_literal(ps, "true", JSON_TRUE, out);
    case 'f':
        return parse_literal(ps, "false", JSON_FALSE, out);
    case 'n':
        return parse_literal(ps, "null", JSON_NULL, out);
    default:
        if (*ps->p == '-' || is_digit(*ps->p))
            return parse_number(ps, out);
        return fail(ps, "unexpected character");
    }
}

/* Recursion is bounded by JSON_MAX_DEPTH: only parsed trees reach here. */
static void value_clear(struct json_value *v)
{
    switch (v->type) {
    case JSON_STRING:
        free(v->u.str.s);
        break;
    case JSON_ARRAY:
        for (size_t i = 0; i < v->u.arr.count; i++)
            value_clear(&v->u.arr.items[i]);
        free(v->u.arr.items);
        break;
    case JSON_OBJECT:
        for (size_t i = 0; i < v->u.obj.count; i++) {
            free(v->u.obj.members[i].key);
            value_clear(&v->u.obj.members[i].value);
        }
        free(v->u.obj.members);
        break;
    default:
        break;
    }
    v->type = JSON_NULL;
}

struct json_value *json_parse(const char *data, size_t len, const char **error_r, size_t *offset_r)
{
    struct parser ps = {
        .start = (const unsigned char *)data,
        .p = (const unsigned char *)data,
        .end = (const unsigned char *)data + len,
    };
    struct json_value *v = malloc(sizeof(*v));
    if (v == NULL) {
        *error_r = "out of memory";
        if (offset_r != NULL)
            *offset_r = 0;
        return NULL;
    }
    if (parse_value(&ps, v)) {
        skip_ws(&ps);
        if (ps.p == ps.end)
            return v;
        fail(&ps, "trailing data after the value");
    }
    value_clear(v);
    free(v);
    *error_r = ps.error;
    if (offset_r != NULL)
        *offset_r = (size_t)(ps.p - ps.start);
    return NULL;
}

void json_free(struct json_value **v)
{
    if (v == NULL || *v == NULL)
        return;
    value_clear(*v);
    free(*v);
    *v = NULL;
}

const struct json_value *json_get(const struct json_value *v, const char *key)
{
    if (v == NULL || v->type != JSON_OBJECT)
        return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < v->u.obj.count; i++) {
        const struct json_member *m = &v->u.obj.members[i];
        if (m->key_len == n && memcmp(m->key, key, n) == 0)
            return &m->value;
    }
    return NULL;
}

const char *json_string(const struct json_value *v)
{
    if (v == NULL || v->type != JSON_STRING || strlen(v->u.str.s) != v->u.str.len)
        return NULL;
    return v->u.str.s;
}

bool json_number(const struct json_value *v, double *value_r)
{
    if (v == NULL)
        return false;
    if (v->type == JSON_INT)
        *value_r = (double)v->u.i;
    else if (v->type == JSON_DOUBLE)
        *value_r = v->u.d;
    else
        return false;
    return true;
}
