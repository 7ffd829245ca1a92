#ifndef POSTERN_AUDIT_H
#define POSTERN_AUDIT_H

/*
 * The audit log: one logfmt line per event, with stable keys that
 * fail2ban, CrowdSec and `postern report` parse (DESIGN.md section 4):
 *   ts=2026-11-27T10:00:00.000Z level=info event=auth_fail sid=... ip=... user="..."
 * Values a client chose are always quoted and escaped, so no input can
 * forge a key or a second line. Never pass a password or a raw line.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUDIT_LINE_MAX 1024

struct audit_line {
    char buf[AUDIT_LINE_MAX];
    size_t len;
};

/* dest: "stderr", "syslog" or a file path (appended to). */
int audit_open(const char *dest, const char **error_r);
/* Opens a log file again (after logrotate moved it). */
void audit_reopen(void);
void audit_close(void);

void audit_begin(struct audit_line *a, const char *level, const char *event);
/* A value chosen by a client or containing spaces: always quoted. */
void audit_str(struct audit_line *a, const char *key, const char *value);
/* A value Postern made (ip, sid, mech): written as is when it is a plain
 * token, quoted otherwise. */
void audit_tok(struct audit_line *a, const char *key, const char *value);
void audit_uint(struct audit_line *a, const char *key, uint64_t value);
void audit_end(struct audit_line *a);

#endif
