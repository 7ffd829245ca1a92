#ifndef POSTERN_FSYNC_H
#define POSTERN_FSYNC_H

/*
 * Making a rename durable: rename() changes the folder, and only an fsync
 * of the folder puts that change on disk. Shared by delivery, the
 * passwd-file and app-password editors, the Maildir expunge and the
 * guard's state files.
 */

#include <stddef.h>

/* fsyncs the folder dir. Returns 0, or -1 with errno set. */
int fsync_dir(const char *dir);

/* fsyncs the folder that holds path ("." for a bare name). Returns 0, or
 * -1 with errno set. */
int fsync_parent(const char *path);

/* Replaces path with data[0..len) for good: written to path.tmp (mode
 * 0666 less the umask), fsynced, renamed over path, the folder fsynced.
 * Returns 0, or -1 with errno set and path as it was. */
int fsync_replace(const char *path, const void *data, size_t len);

#endif
