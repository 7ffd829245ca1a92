#ifndef POSTERN_STORE_H
#define POSTERN_STORE_H

/*
 * Mailboxes behind one vtable. The protocol code sees only this face: a
 * snapshot of messages numbered 0..count-1, taken when the mailbox was
 * opened, each with its wire size (octets with CRLF line ends, before
 * dot-stuffing) and a unique id. Nothing here knows about POP3.
 *
 * An open mailbox holds the mailbox lock until mailbox_close(); closing
 * never removes anything, only mailbox_expunge() does.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mailbox;
struct mail_stream;

enum store_status {
    STORE_OK = 0,
    STORE_IN_USE,   /* another session holds the lock */
    STORE_TEMPFAIL, /* I/O error or the like: try again later */
    STORE_PERMFAIL, /* misconfiguration: the mailbox cannot be used */
    STORE_AGAIN,    /* maildir_open_quick: this one needs a scan */
};

struct mailbox_vfuncs {
    unsigned (*count)(const struct mailbox *mb);
    uint64_t (*size)(const struct mailbox *mb, unsigned i);
    const char *(*uid)(const struct mailbox *mb, unsigned i);
    /* -1 with *error_r when the message cannot be opened (vanished: it was
     * removed by another program after the snapshot). */
    int (*open_msg)(struct mailbox *mb, unsigned i, struct mail_stream **st_r,
                    const char **error_r);
    /* Bytes read, 0 at the end, -1 on error. */
    ssize_t (*read)(struct mail_stream *st, void *buf, size_t size);
    void (*close_msg)(struct mail_stream *st);
    /* Removes message i. 0 when it is gone (also when someone else removed
     * it first), -1 with *error_r when it is still there. */
    int (*expunge)(struct mailbox *mb, unsigned i, const char **error_r);
    /* Makes the removals durable (directory fsync). */
    int (*expunge_commit)(struct mailbox *mb, const char **error_r);
    void (*close)(struct mailbox *mb);
};

struct mailbox {
    const struct mailbox_vfuncs *v;
};

static inline unsigned mailbox_count(const struct mailbox *mb)
{
    return mb->v->count(mb);
}
static inline uint64_t mailbox_msg_size(const struct mailbox *mb, unsigned i)
{
    return mb->v->size(mb, i);
}
static inline const char *mailbox_msg_uid(const struct mailbox *mb, unsigned i)
{
    return mb->v->uid(mb, i);
}
static inline int mailbox_msg_open(struct mailbox *mb, unsigned i, struct mail_stream **st_r,
                                   const char **error_r)
{
    return mb->v->open_msg(mb, i, st_r, error_r);
}
static inline ssize_t mail_stream_read(struct mailbox *mb, struct mail_stream *st, void *buf,
                                       size_t size)
{
    return mb->v->read(st, buf, size);
}
static inline void mail_stream_close(struct mailbox *mb, struct mail_stream **st)
{
    if (*st != NULL)
        mb->v->close_msg(*st);
    *st = NULL;
}
static inline int mailbox_expunge(struct mailbox *mb, unsigned i, const char **error_r)
{
    return mb->v->expunge(mb, i, error_r);
}
static inline int mailbox_expunge_commit(struct mailbox *mb, const char **error_r)
{
    return mb->v->expunge_commit(mb, error_r);
}
static inline void mailbox_close(struct mailbox **mb)
{
    if (*mb != NULL)
        (*mb)->v->close(*mb);
    *mb = NULL;
}

/*
 * Maildir backend (maildir.c). Opens the Maildir at path (creating it, as
 * Postfix would on first delivery, when it does not exist), takes the lock
 * and a snapshot of new/ and cur/ ordered by delivery time then name.
 */
enum store_status maildir_open(const char *path, struct mailbox **mb_r, const char **error_r);
/* The same, but only when it takes a few system calls: an existing
 * Maildir whose index describes it as it is. Else STORE_AGAIN, having
 * changed nothing (an I/O thread calls this; a worker thread then calls
 * maildir_open). */
enum store_status maildir_open_quick(const char *path, struct mailbox **mb_r, const char **error_r);

/*
 * The lock registry (lock.c): one file under the server's state_dir in
 * which every Postern process takes its mailbox locks. Without it (tests,
 * tools), locks keep out other threads of this process only.
 */
#define STORE_LOCK_FILE "mailbox-locks"
int store_lock_init(const char *state_dir, const char **error_r);
void store_lock_deinit(void);

/* Creates the Maildir (and missing parent folders) with tmp/, new/ and cur/,
 * mode 0700; existing folders are fine. */
int maildir_create(const char *path, const char **error_r);

/*
 * Expands a mail location such as "maildir:mail/%u/Maildir" for one user:
 * %u user, %n local part, %d domain, %h home, %% a percent sign. A relative
 * path is taken relative to base_dir. Returns the path (malloc'd) without
 * the "maildir:" prefix, or NULL with *error_r.
 */
char *store_location_expand(const char *location, const char *base_dir, const char *user,
                            const char *home, const char **error_r);

/*
 * Wire size counting (index.c): the octets a message has on the wire
 * before dot-stuffing, with every bare LF counted as CRLF and a last line
 * without newline ended with CRLF. The same rules as src/pop3/dotstuff.c;
 * the unit tests hold the two together.
 */
struct wire_counter {
    uint64_t size;
    bool bol; /* at the beginning of a line */
    bool cr;  /* last byte was a CR that may start a CRLF */
};
void wire_counter_init(struct wire_counter *wc);
void wire_counter_add(struct wire_counter *wc, const void *data, size_t len);
uint64_t wire_counter_finish(struct wire_counter *wc);

/* UIDL rule: the base name when it is 1-70 characters of 0x21-0x7E, else a
 * stable digest of it (32 hex digits). out must hold 71 bytes. */
void store_uid_from_base(const char *base, size_t len, char out[71]);

#endif
