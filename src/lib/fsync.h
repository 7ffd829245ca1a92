#ifndef POSTERN_FSYNC_H
#define POSTERN_FSYNC_H

/*
 * Making a rename durable: rename() changes the folder, and only an fsync
 * of the folder puts that change on disk. Shared by delivery, the
 * passwd-file and app-password editors, the Maildir expunge and the
 * guard's state files.
 */

/* fsyncs the folder dir. Returns 0, or -1 with errno set. */
int fsync_dir(const char *dir);

/* fsyncs the folder that holds path ("." for a bare name). Returns 0, or
 * -1 with errno set. */
int fsync_parent(const char *path);

#endif
