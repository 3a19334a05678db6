/*
** clock.c -- the real clock and the virtual clock.
**
** Every time-dependent rule reads the stream's sl_clock.  The virtual clock
** holds its time in one atomic, so it is safe to advance from one thread
** while streams read it from others.
*/
#include "internal.h"

#include <pthread.h>

#include <stdlib.h>
#include <time.h>

int64_t sl__realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t sl__monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t real_now(void *ctx)
{
    (void)ctx;
    return sl__realtime_ms();
}

const sl_clock sl__real_clock = {SL_CLOCK_VERSION, real_now, NULL};

/* Listeners are words that every change of the time bumps and wakes (a
** scheduler waiting for budget under a virtual clock).  A few at most. */
#define VC_LISTENERS 16

struct sl_vclock {
    _Atomic int64_t now;
    sl_clock clock;
    pthread_mutex_t mu;               /* the listeners */
    uint32_t *listen[VC_LISTENERS];
    int nlisten;
};

static int64_t vclock_now(void *ctx)
{
    return atomic_load_explicit(&((sl_vclock *)ctx)->now,
                                memory_order_acquire);
}

int sl_vclock_new(sl_vclock **out, int64_t start_ms)
{
    if (!out) return sl__ret(NULL, sl__err(SL_EINVAL, "out is NULL"));
    sl_vclock *vc = calloc(1, sizeof *vc);
    *out = vc;
    if (!vc) return sl__ret(NULL, sl__err(SL_ENOMEM, "allocating a vclock"));
    atomic_init(&vc->now, start_ms);
    vc->clock = (sl_clock){SL_CLOCK_VERSION, vclock_now, vc};
    pthread_mutex_init(&vc->mu, NULL);
    return 0;
}

void sl_vclock_free(sl_vclock *vc)
{
    if (!vc) return;
    pthread_mutex_destroy(&vc->mu);
    free(vc);
}

sl_vclock *sl__vclock_of(const sl_clock *c)
{
    return c && c->now_ms == vclock_now ? (sl_vclock *)c->ctx : NULL;
}

int sl__vclock_listen(sl_vclock *vc, uint32_t *word)
{
    int rc = 0;
    pthread_mutex_lock(&vc->mu);
    if (vc->nlisten < VC_LISTENERS)
        vc->listen[vc->nlisten++] = word;
    else
        rc = sl__err(SL_ELIMIT, "more than %d schedulers on one virtual clock",
                     VC_LISTENERS);
    pthread_mutex_unlock(&vc->mu);
    return rc;
}

void sl__vclock_unlisten(sl_vclock *vc, uint32_t *word)
{
    pthread_mutex_lock(&vc->mu);
    for (int i = 0; i < vc->nlisten; i++) {
        if (vc->listen[i] == word) {
            vc->listen[i] = vc->listen[--vc->nlisten];
            break;
        }
    }
    pthread_mutex_unlock(&vc->mu);
}

static void vclock_ring(sl_vclock *vc)
{
    pthread_mutex_lock(&vc->mu);
    for (int i = 0; i < vc->nlisten; i++) {
        __atomic_fetch_add(vc->listen[i], 1, __ATOMIC_SEQ_CST);
        sl__futex_wake(vc->listen[i]);
    }
    pthread_mutex_unlock(&vc->mu);
}

const sl_clock *sl_vclock_clock(sl_vclock *vc) { return vc ? &vc->clock : NULL; }

int64_t sl_vclock_now(const sl_vclock *vc)
{
    return atomic_load_explicit(&((sl_vclock *)vc)->now, memory_order_acquire);
}

void sl_vclock_advance(sl_vclock *vc, int64_t delta_ms)
{
    if (!vc || delta_ms <= 0) return;
    atomic_fetch_add_explicit(&vc->now, delta_ms, memory_order_acq_rel);
    vclock_ring(vc);
}

void sl_vclock_set(sl_vclock *vc, int64_t now_ms)
{
    if (!vc) return;
    atomic_store_explicit(&vc->now, now_ms, memory_order_release);
    vclock_ring(vc);
}
