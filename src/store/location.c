/* Mail location templates ("maildir:mail/%u/Maildir"), as Dovecot writes them. */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

/* A user name or part of one must not walk out of the mail root. */
static bool safe_component(const char *s, size_t len)
{
    if (len == 0 || (len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '/' || (unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    }
    return true;
}

static bool append(char *out, size_t *used, size_t cap, const char *s, size_t len)
{
    if (*used + len >= cap)
        return false;
    memcpy(out + *used, s, len);
    *used += len;
    return true;
}

char *store_location_expand(const char *location, const char *base_dir, const char *user,
                            const char *home, const char **error_r)
{
    static const char prefix[] = "maildir:";
    const char *at = strchr(user, '@');
    size_t nlen = at != NULL ? (size_t)(at - user) : strlen(user);
    const char *domain = at != NULL ? at + 1 : "";
    char out[4096];
    size_t used = 0;
    const char *p;

    if (strncmp(location, prefix, sizeof(prefix) - 1) != 0) {
        *error_r = "mail location must start with \"maildir:\"";
        return NULL;
    }
    p = location + sizeof(prefix) - 1;
    if (*p == '\0') {
        *error_r = "mail location has no path";
        return NULL;
    }
    /* "%h/Maildir" starts with the (absolute) home: not relative either. */
    bool relative = *p != '/' && strncmp(p, "%h", 2) != 0;
    if (relative && !append(out, &used, sizeof(out), base_dir, strlen(base_dir)))
        goto too_long;
    if (relative && !append(out, &used, sizeof(out), "/", 1))
        goto too_long;
    for (; *p != '\0'; p++) {
        const char *v;
        size_t vlen;
        if (*p != '%') {
            if (!append(out, &used, sizeof(out), p, 1))
                goto too_long;
            continue;
        }
        switch (*++p) {
        case 'u':
            v = user, vlen = strlen(user);
            break;
        case 'n':
            v = user, vlen = nlen;
            break;
        case 'd':
            v = domain, vlen = strlen(domain);
            break;
        case 'h':
            if (home == NULL || home[0] != '/') {
                *error_r = "%h used but the account has no absolute home";
                return NULL;
            }
            v = home, vlen = strlen(home);
            if (!append(out, &used, sizeof(out), v, vlen))
                goto too_long;
            continue;
        case '%':
            v = "%", vlen = 1;
            break;
        default:
            *error_r = "unknown %-variable in mail location (use %u, %n, %d, %h or %%)";
            return NULL;
        }
        if (*p != '%' && !safe_component(v, vlen)) { /* %% is literal */
            *error_r = "user name cannot be used in a path";
            return NULL;
        }
        if (!append(out, &used, sizeof(out), v, vlen))
            goto too_long;
    }
    out[used] = '\0';
    return strdup(out);
too_long:
    *error_r = "mail location too long";
    return NULL;
}
