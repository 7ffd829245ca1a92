#include "lib/pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct pool {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    struct pool_job *head, *tail;
    bool stopping;
    unsigned n_threads;
    pthread_t threads[];
};

static void *pool_thread(void *arg)
{
    struct pool *p = arg;

    for (;;) {
        pthread_mutex_lock(&p->mutex);
        while (p->head == NULL && !p->stopping)
            pthread_cond_wait(&p->cond, &p->mutex);
        struct pool_job *job = p->head;
        if (job == NULL) {
            pthread_mutex_unlock(&p->mutex);
            return NULL;
        }
        p->head = job->next;
        if (p->head == NULL)
            p->tail = NULL;
        pthread_mutex_unlock(&p->mutex);
        job->run(job);
    }
}

struct pool *pool_new(unsigned threads, const char **error_r)
{
    struct pool *p = calloc(1, sizeof(*p) + threads * sizeof(pthread_t));

    if (p == NULL) {
        *error_r = "out of memory";
        return NULL;
    }
    pthread_mutex_init(&p->mutex, NULL);
    pthread_cond_init(&p->cond, NULL);
    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_thread, p) != 0) {
            *error_r = "cannot start worker thread";
            pool_destroy(&p);
            return NULL;
        }
        p->n_threads++;
    }
    return p;
}

void pool_submit(struct pool *p, struct pool_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&p->mutex);
    if (p->tail != NULL)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->mutex);
}

void pool_destroy(struct pool **pp)
{
    struct pool *p = *pp;

    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mutex);
    p->stopping = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mutex);
    for (unsigned i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mutex);
    pthread_cond_destroy(&p->cond);
    free(p);
    *pp = NULL;
}
