#ifndef POSTERN_POOL_H
#define POSTERN_POOL_H

/*
 * A fixed set of threads for work that must not run on an I/O thread:
 * password hashing and mailbox scans. Jobs run in submission order as
 * threads become free; a job is not touched by the pool after its run()
 * has been called (it may free itself).
 */

struct pool_job {
    void (*run)(struct pool_job *job);
    struct pool_job *next;
};

struct pool;

struct pool *pool_new(unsigned threads, const char **error_r);
void pool_submit(struct pool *p, struct pool_job *job);
/* Runs the jobs already queued, then stops the threads and frees the pool. */
void pool_destroy(struct pool **p);

#endif
