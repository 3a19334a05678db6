/*
** scheduler.c -- the read scheduler: subscriptions, budgets, fair turns.
**
** A scheduler serves every subscription made on it.  Work happens in
** sweeps; a dispatch runs sweeps until one delivers nothing, then waits.
** One sweep, in a fixed order (so the sequence of deliveries depends only
** on the records and the clock):
**   1. every dedicated subscription, in subscription order, gets at most one
**      delivery: its next batch, if it has records and (ENFORCE) its own
**      budget is not in debt;
**   2. every shard with shared subscriptions, by shard index, gets at most
**      one turn: one read call on the shard's shared budget, given to the
**      subscription with records waiting that has received the fewest bytes
**      (ties: the older subscription).  A subscription that had nothing
**      waiting is brought up to the least-served busy one when it comes
**      back, so idleness earns no credit.  Any two backlogged shared
**      subscriptions thus differ by at most one batch.  A turn reads at
**      most batch_max records and one quantum of bytes (read_bytes_per_s /
**      read_calls_per_s: 400 KiB by default), so a greedy subscription
**      cannot empty the budget for seconds or set off the 10 MiB penalty
**      for everyone.
** Budgets pace deliveries only in SL_RATE_ENFORCE mode.  In ACCOUNT mode a
** read over the budget is counted and goes ahead; in OFF nothing is kept.
**
** Waiting.  A commit to any shard bumps the stream-wide pair in the WAKE
** file while someone waits on it (shard.c), so one futex word covers every
** subscribed shard, in this process or another.  Advancing a virtual clock
** bumps the same word (clock.c listeners), and so do subscribe and stop.
** The protocol is the iterator's: after a sweep that delivered nothing,
** register as a waiter, read the word, sweep again, and sleep only if that
** sweep delivered nothing either.  Where the WAKE file cannot be written
** (a follower without write access) the scheduler checks every 10 ms.
**
** Handlers run with no lock held.  A subscription being delivered is
** `busy`; sl_unsubscribe from another thread waits for the handler to
** return, so once it returns the handler's ctx may be freed.
*/
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define KDS_SUB_TTL_MS 300000         /* Kinesis: a subscription lasts 5 min */
#define WAIT_SLICE_MS 250
#define POLL_FALLBACK_MS 10

struct sl_sub {
    sl_sched *sc;
    sl_consumer *c;
    sl_shard *sh;
    sl_iter *it;
    sl_ccount *cc;
    size_t batch_max;
    sl_deliver_fn fn;
    void *ctx;
    bool dedicated;
    sl_rbudget budget;                /* dedicated: its own bytes/s */
    uint64_t served;                  /* bytes delivered (shared turns) */
    bool backlogged;                  /* had records at its last turn */
    int64_t started_ms;               /* stream clock (KDS expiry) */
    uint64_t order;                   /* subscription order */
    bool ended;                       /* its last delivery was made */
    bool busy;                        /* the dispatcher is working on it */
    bool dead;                        /* unsubscribed while busy */
};

struct sl_sched {
    sl_stream *s;
    pthread_mutex_t mu;               /* subs and the flags below */
    pthread_cond_t cv;                /* busy cleared; idle reached */
    sl_sub **subs;                    /* by order */
    size_t nsubs, capsubs;
    uint64_t next_order;
    bool dispatching;                 /* a host thread or ours */
    pthread_t dispatcher;             /* valid while dispatching */
    sl_record *recs;                  /* SL_GET_RECORDS_MAX views */
    uint32_t *word, *waiters;         /* the stream's pair, or own[] */
    uint32_t own[2];
    bool commits_wake;                /* commits bump *word */
    sl_vclock *vc;                    /* listened to, or NULL */
    pthread_t thread;
    bool running, stop;
    bool idle;                        /* the thread sleeps, having seen */
    uint32_t idle_word;               /* ... *word at this value */
};

static void kick(sl_sched *sc)
{
    __atomic_fetch_add(sc->word, 1, __ATOMIC_SEQ_CST);
    sl__futex_wake(sc->word);
}

/* ---- subscriptions -------------------------------------------------------- */

int sl_sched_new(sl_sched **out, sl_stream *s)
{
    if (!out || !s) return sl__ret(s, sl__err(SL_EINVAL, "out or stream is NULL"));
    *out = NULL;
    sl_sched *sc = calloc(1, sizeof *sc);
    sl_record *recs = calloc(SL_GET_RECORDS_MAX, sizeof *recs);
    if (!sc || !recs) {
        free(sc);
        free(recs);
        return sl__ret(s, sl__err(SL_ENOMEM, "allocating a scheduler"));
    }
    sc->s = s;
    sc->recs = recs;
    pthread_mutex_init(&sc->mu, NULL);
    pthread_cond_init(&sc->cv, NULL);
    sc->commits_wake = s->wake_any && s->wake_writable;
    sc->word = sc->commits_wake ? &s->wake_any[0] : &sc->own[0];
    sc->waiters = sc->commits_wake ? &s->wake_any[1] : &sc->own[1];
    sc->vc = sl__vclock_of(&s->clock);
    if (sc->vc) {
        int rc = sl__vclock_listen(sc->vc, sc->word);
        if (rc) {
            pthread_cond_destroy(&sc->cv);
            pthread_mutex_destroy(&sc->mu);
            free(recs);
            free(sc);
            return sl__ret(s, rc);
        }
    }
    atomic_fetch_add(&s->children, 1);
    *out = sc;
    return 0;
}

/* Caller holds mu; sub is not busy. */
static void sub_release(sl_sub *sub)
{
    if (!sub->ended && sub->cc) atomic_store(&sub->cc->subscribed, false);
    sub->ended = true;
}

static void sub_free(sl_sub *sub)
{
    sl_iter_close(sub->it);
    atomic_fetch_sub(&sub->c->subs, 1);
    free(sub);
}

/* Remove sub from the list (caller holds mu). */
static void sub_unlink(sl_sched *sc, sl_sub *sub)
{
    for (size_t i = 0; i < sc->nsubs; i++) {
        if (sc->subs[i] == sub) {
            memmove(&sc->subs[i], &sc->subs[i + 1], (sc->nsubs - i - 1) * sizeof *sc->subs);
            sc->nsubs--;
            return;
        }
    }
}

int sl_subscribe(sl_sub **out, sl_sched *sc, sl_consumer *c, const char *shard_id,
                 sl_iter_type type, uint64_t arg, size_t batch_max,
                 sl_deliver_fn fn, void *ctx)
{
    if (!out || !sc || !c || !fn)
        return sl__ret(sc ? (void *)sc->s : NULL,
                       sl__err(SL_EINVAL, "out, scheduler, consumer or handler is NULL"));
    *out = NULL;
    sl_stream *s = sc->s;
    if (c->s != s)
        return sl__ret(s, sl__err(SL_EINVAL, "consumer %s belongs to another stream handle",
                                  c->info.name));
    if (batch_max < 1 || batch_max > SL_GET_RECORDS_MAX)
        return sl__ret(s, sl__err(SL_EVALIDATION,
                                  "1 validation error detected: Value '%zu' at "
                                  "'batchMax' failed to satisfy constraint: Member "
                                  "must have value between 1 and %d",
                                  batch_max, SL_GET_RECORDS_MAX));
    sl_shard *sh = shard_id ? sl__stream_shard_by_id(s, shard_id) : NULL;
    if (!sh)
        return sl__ret(s, sl__err(SL_ENOTFOUND, "Shard %.64s in stream %s not found.",
                                  shard_id ? shard_id : "(null)", s->man.name));
    sl_ccount *cc = sl__consumer_count(c, sh->index);
    if (!cc) return sl__ret(s, sl__err(SL_ENOMEM, "subscribing %s", c->info.name));
    bool no = false;
    if (!atomic_compare_exchange_strong(&cc->subscribed, &no, true))
        return sl__ret(s, sl__err(SL_EINUSE,
                                  "Consumer %s is already subscribed to shard %s of "
                                  "stream %s.",
                                  c->info.name, sh->id, s->man.name));
    sl_sub *sub = calloc(1, sizeof *sub);
    int rc = sub ? 0 : sl__err(SL_ENOMEM, "allocating a subscription");
    if (rc == 0) rc = sl_iter_open(&sub->it, s, shard_id, type, arg);
    if (rc) {
        atomic_store(&cc->subscribed, false);
        free(sub);
        return sl__ret(s, rc);
    }
    int64_t now = sl__now(s);
    sub->sc = sc;
    sub->c = c;
    sub->sh = sh;
    sub->cc = cc;
    sub->batch_max = batch_max;
    sub->fn = fn;
    sub->ctx = ctx;
    sub->dedicated = c->info.type == SL_CONSUMER_DEDICATED;
    if (sub->dedicated) sl__rbudget_init(&sub->budget, s, true, now);
    sub->started_ms = now;
    atomic_fetch_add(&c->subs, 1);

    pthread_mutex_lock(&sc->mu);
    if (sc->nsubs == sc->capsubs) {
        size_t cap = sc->capsubs ? sc->capsubs * 2 : 8;
        sl_sub **a = realloc(sc->subs, cap * sizeof *a);
        if (!a) {
            pthread_mutex_unlock(&sc->mu);
            atomic_store(&cc->subscribed, false);
            sub_free(sub);
            return sl__ret(s, sl__err(SL_ENOMEM, "allocating a subscription"));
        }
        sc->subs = a;
        sc->capsubs = cap;
    }
    /* a newcomer to a shard's shared group starts level with the least
    ** served busy member, so the others' past earns it nothing either way */
    uint64_t floor = UINT64_MAX;
    for (size_t i = 0; i < sc->nsubs; i++) {
        sl_sub *o = sc->subs[i];
        if (!o->dedicated && !o->ended && o->sh == sh && o->backlogged && o->served < floor)
            floor = o->served;
    }
    sub->served = floor == UINT64_MAX ? 0 : floor;
    sub->order = sc->next_order++;
    sc->subs[sc->nsubs++] = sub;
    pthread_mutex_unlock(&sc->mu);
    kick(sc);
    *out = sub;
    return 0;
}

void sl_unsubscribe(sl_sub *sub)
{
    if (!sub) return;
    sl_sched *sc = sub->sc;
    pthread_mutex_lock(&sc->mu);
    if (sub->busy && sc->dispatching && pthread_equal(sc->dispatcher, pthread_self())) {
        /* from a handler (of another subscription): the dispatcher frees it */
        sub->dead = true;
        pthread_mutex_unlock(&sc->mu);
        return;
    }
    while (sub->busy) pthread_cond_wait(&sc->cv, &sc->mu);
    sub_unlink(sc, sub);
    sub_release(sub);
    pthread_mutex_unlock(&sc->mu);
    sub_free(sub);
}

/* ---- one delivery ---------------------------------------------------------- */

enum { TURN_NONE = 0, TURN_DELIVERED = 1, TURN_AGAIN = 2 };

/* Deliver the end of a subscription (caller: the dispatcher, sub busy). */
static void deliver_end(sl_sched *sc, sl_sub *sub, int why, int error)
{
    pthread_mutex_lock(&sc->mu);
    sub_release(sub);
    pthread_mutex_unlock(&sc->mu);
    sl_delivery d = {sub->c->info.name, sub->sh->id, sc->recs, 0,
                     sl__iter_last(sub->it), 0, why, error, 0, NULL};
    const char *kids[2];
    if (why == SL_SUB_END_SHARD_END) {  /* a closed shard's children */
        sl_stream *s = sc->s;
        size_t ns = atomic_load_explicit(&s->nshards, memory_order_acquire);
        for (size_t i = 0; i < ns && d.child_count < 2; i++) {
            const sl_shard *k = s->shards[i];
            if (k->parent == sub->sh->index || k->adjacent == sub->sh->index)
                kids[d.child_count++] = k->id;
        }
        d.child_shard_ids = kids;
    }
    sub->fn(sub->ctx, &d);
}

/* Must sub end now (KDS expiry, end of a closed shard)?  SL_SUB_END_... */
static int end_due(sl_sched *sc, sl_sub *sub, int64_t now)
{
    if (sc->s->kds && now - sub->started_ms >= KDS_SUB_TTL_MS) return SL_SUB_END_EXPIRED;
    if (!sub->sh->open && sl__iter_ready(sub->it) == 0) return SL_SUB_END_SHARD_END;
    return SL_SUB_END_NONE;
}

/* ms until sub may read (ENFORCE pacing); 0 now. */
static int64_t budget_wait(sl_sched *sc, sl_sub *sub, int64_t now)
{
    if (sc->s->rate_mode != SL_RATE_ENFORCE) return 0;
    if (sub->dedicated) return sl__rbudget_wait(&sub->budget, now);
    return sl__rl_read_wait(sub->sh, now);
}

/* One turn for sub: read its next batch and hand it over.  *wait_ms is
** lowered to the budget wait of a sub that has records but no budget. */
static int turn(sl_sched *sc, sl_sub *sub, int64_t now, int64_t *wait_ms)
{
    sl_stream *s = sc->s;
    int r = sl__iter_ready(sub->it);
    if (r < 0) {
        deliver_end(sc, sub, SL_SUB_END_ERROR, r);
        return TURN_DELIVERED;
    }
    if (r == 0) return TURN_NONE;
    int64_t w = budget_wait(sc, sub, now);
    if (w > 0) {
        if (w < *wait_ms) *wait_ms = w;
        return TURN_NONE;
    }
    int f = sl__fault_read(s);
    if (f == SL_ETHROTTLED) {
        atomic_fetch_add_explicit(&sub->cc->read_throttled, 1, memory_order_relaxed);
        return TURN_AGAIN;
    }
    if (f) {
        deliver_end(sc, sub, SL_SUB_END_ERROR, f);
        return TURN_DELIVERED;
    }
    bool accounting = s->rate_mode != SL_RATE_OFF;
    bool over = false;
    uint64_t max_bytes = SL_GET_BYTES_MAX;
    if (sub->dedicated) {
        if (accounting) {
            sl__bucket_refill(&sub->budget.bytes, now);
            over = sl__rbudget_wait(&sub->budget, now) > 0;
            int64_t avail = sub->budget.bytes.milli / 1000;
            /* a delivery takes what the budget holds (at least a record) */
            if (s->rate_mode == SL_RATE_ENFORCE && avail < (int64_t)max_bytes)
                max_bytes = avail > 0 ? (uint64_t)avail : 1;
            sl__rbudget_begin(&sub->budget, now);
        }
    } else {
        /* a shared turn reads at most one fair quantum: no consumer's turn
        ** can take the shard's budget for seconds, or set off the 10 MiB
        ** penalty that would throttle everyone */
        uint32_t calls = s->limits.read_calls_per_s ? s->limits.read_calls_per_s : 1;
        uint64_t q = s->limits.read_bytes_per_s / calls;
        if (q < max_bytes) max_bytes = q ? q : 1;
        if (accounting) {
            int64_t retry;
            (void)sl__rl_read_begin(sub->sh, now, &retry, &over);   /* paced above */
        }
    }
    if (over) atomic_fetch_add_explicit(&sub->cc->read_throttled, 1, memory_order_relaxed);

    sl_read_result res;
    int rc = sl__iter_read(sub->it, sc->recs, sub->batch_max, max_bytes, &res);
    uint64_t bytes = 0;
    for (size_t i = 0; i < res.count; i++) bytes += sc->recs[i].key_len + sc->recs[i].data_len;
    if (accounting) {
        if (sub->dedicated) {
            sl__rbudget_end(&sub->budget, now, res.count, bytes);
            sl__rl_count_out(sub->sh, res.count, bytes, res.millis_behind_latest);
        } else {
            sl__rl_read_end(sub->sh, now, res.count, bytes, res.millis_behind_latest, over);
        }
    }
    sl_ccount *cc = sub->cc;
    atomic_fetch_add_explicit(&cc->reads, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&cc->records_out, res.count, memory_order_relaxed);
    atomic_fetch_add_explicit(&cc->bytes_out, bytes, memory_order_relaxed);
    atomic_store_explicit(&cc->age_ms, res.millis_behind_latest, memory_order_relaxed);
    if (rc && rc != SL_ECORRUPT) {
        deliver_end(sc, sub, SL_SUB_END_ERROR, rc);
        return TURN_DELIVERED;
    }
    if (res.count == 0) return rc ? TURN_AGAIN : TURN_NONE;   /* skipped damage */
    sub->served += bytes;
    atomic_fetch_add_explicit(&cc->deliveries, 1, memory_order_relaxed);
    sl_delivery d = {sub->c->info.name, sub->sh->id, sc->recs, res.count,
                     res.last_sequence, res.millis_behind_latest, SL_SUB_END_NONE, 0, 0, NULL};
    if (sub->fn(sub->ctx, &d) != 0) {
        pthread_mutex_lock(&sc->mu);
        sub_release(sub);
        pthread_mutex_unlock(&sc->mu);
    }
    return TURN_DELIVERED;
}

/* ---- sweeps ----------------------------------------------------------------- */

/* The dispatcher is done with sub: free it if it was unsubscribed meanwhile
** (from a handler), and let a waiting sl_unsubscribe go on. */
static void sub_done(sl_sched *sc, sl_sub *sub)
{
    pthread_mutex_lock(&sc->mu);
    sub->busy = false;
    bool dead = sub->dead;
    if (dead) {
        sub_unlink(sc, sub);
        sub_release(sub);
    }
    pthread_cond_broadcast(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
    if (dead) sub_free(sub);
}

/* The live subscription with the smallest order >= from that `want`
** accepts, marked busy (caller holds mu); NULL if none. */
typedef bool (*sub_pred)(sl_sched *sc, sl_sub *sub, void *arg);

static sl_sub *claim_next(sl_sched *sc, uint64_t from, sub_pred want, void *arg)
{
    for (size_t i = 0; i < sc->nsubs; i++) {
        sl_sub *sub = sc->subs[i];
        if (sub->order < from || sub->ended || sub->dead) continue;
        if (want && !want(sc, sub, arg)) continue;
        sub->busy = true;
        return sub;
    }
    return NULL;
}

static bool is_dedicated(sl_sched *sc, sl_sub *sub, void *arg)
{
    (void)sc;
    (void)arg;
    return sub->dedicated;
}

static bool end_is_due(sl_sched *sc, sl_sub *sub, void *arg)
{
    return end_due(sc, sub, *(int64_t *)arg) != SL_SUB_END_NONE;
}

/* The next shard index >= from with a live shared subscription, or
** SL_NO_SHARD (caller holds mu). */
static uint32_t next_shared_shard(sl_sched *sc, uint32_t from)
{
    uint32_t best = SL_NO_SHARD;
    for (size_t i = 0; i < sc->nsubs; i++) {
        sl_sub *sub = sc->subs[i];
        if (sub->dedicated || sub->ended || sub->dead) continue;
        if (sub->sh->index >= from && sub->sh->index < best) best = sub->sh->index;
    }
    return best;
}

/* Shard `index`'s shared turn goes to the least-served subscription with
** records waiting (caller holds mu).  A subscription that was idle comes
** back level with the least-served busy one. */
static sl_sub *pick_shared(sl_sched *sc, uint32_t index)
{
    uint64_t floor = UINT64_MAX;
    for (size_t i = 0; i < sc->nsubs; i++) {
        sl_sub *sub = sc->subs[i];
        if (sub->dedicated || sub->ended || sub->dead || sub->sh->index != index) continue;
        bool ready = sl__iter_ready(sub->it) != 0;       /* errors: let turn() see them */
        if (!ready) sub->backlogged = false;
        else if (sub->backlogged && sub->served < floor) floor = sub->served;
    }
    sl_sub *best = NULL;
    for (size_t i = 0; i < sc->nsubs; i++) {
        sl_sub *sub = sc->subs[i];
        if (sub->dedicated || sub->ended || sub->dead || sub->sh->index != index) continue;
        if (!sub->backlogged) {
            if (sl__iter_ready(sub->it) == 0) continue;
            sub->backlogged = true;
            if (floor != UINT64_MAX && sub->served < floor) sub->served = floor;
        }
        if (!best || sub->served < best->served) best = sub;
    }
    if (best) best->busy = true;
    return best;
}

/* One sweep (see the top of the file).  Returns the number of deliveries;
** *again: something happened that is worth another sweep even without a
** delivery; *wait_ms: lowered to the shortest budget wait met. */
static int sweep(sl_sched *sc, bool *again, int64_t *wait_ms)
{
    if (sc->s->readonly) sl__stream_refresh(sc->s);   /* a writer's reshards */
    int64_t now = sl__now(sc->s);
    int delivered = 0;
    sl_sub *sub;
    /* 0: endings */
    for (uint64_t from = 0;;) {
        pthread_mutex_lock(&sc->mu);
        sub = claim_next(sc, from, end_is_due, &now);
        pthread_mutex_unlock(&sc->mu);
        if (!sub) break;
        from = sub->order + 1;
        int why = end_due(sc, sub, now);
        if (why != SL_SUB_END_NONE) {
            deliver_end(sc, sub, why, 0);
            delivered++;
        }
        sub_done(sc, sub);
    }
    /* 1: dedicated subscriptions, one batch each */
    for (uint64_t from = 0;;) {
        pthread_mutex_lock(&sc->mu);
        sub = claim_next(sc, from, is_dedicated, NULL);
        pthread_mutex_unlock(&sc->mu);
        if (!sub) break;
        from = sub->order + 1;
        int t = turn(sc, sub, now, wait_ms);
        if (t == TURN_DELIVERED) delivered++;
        if (t == TURN_AGAIN) *again = true;
        sub_done(sc, sub);
    }
    /* 2: one shared turn per shard */
    for (uint32_t index = 0;;) {
        pthread_mutex_lock(&sc->mu);
        index = next_shared_shard(sc, index);
        sub = index == SL_NO_SHARD ? NULL : pick_shared(sc, index);
        pthread_mutex_unlock(&sc->mu);
        if (index == SL_NO_SHARD) break;
        index++;
        if (!sub) continue;
        int t = turn(sc, sub, now, wait_ms);
        if (t == TURN_DELIVERED) delivered++;
        if (t == TURN_AGAIN) *again = true;
        sub_done(sc, sub);
    }
    return delivered;
}

/* Sweep until a sweep changes nothing. */
static int sweep_all(sl_sched *sc, int64_t *wait_ms)
{
    int total = 0;
    for (;;) {
        bool again = false;
        *wait_ms = INT64_MAX;
        int n = sweep(sc, &again, wait_ms);
        total += n;
        if (!n && !again) return total;
    }
}

/* Sleep until the word moves past v, or ms (real time) pass. */
static void sleep_on(sl_sched *sc, uint32_t v, int64_t ms)
{
    int slice = sc->commits_wake ? WAIT_SLICE_MS : POLL_FALLBACK_MS;
    if (ms >= 0 && ms < slice) slice = (int)ms;
    if (slice > 0) sl__futex_wait(sc->word, v, slice);
}

static void waiter_leave(sl_sched *sc)
{
    uint32_t c = __atomic_load_n(sc->waiters, __ATOMIC_RELAXED);
    while (c && !__atomic_compare_exchange_n(sc->waiters, &c, c - 1, false,
                                             __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
        ;
}

/* How long to sleep when nothing could be delivered: until the deadline,
** capped by a budget wait on a real clock (a virtual clock's advance rings
** the word instead). */
static int64_t sleep_ms(sl_sched *sc, int64_t wait_ms, int64_t deadline)
{
    int64_t ms = deadline == INT64_MAX ? -1 : deadline - sl__monotonic_ms();
    if (ms < 0 && deadline != INT64_MAX) ms = 0;
    if (!sc->vc && wait_ms != INT64_MAX && (ms < 0 || wait_ms < ms)) ms = wait_ms;
    return ms;
}

/* The dispatch loop shared by the host's calls and the thread. */
static int run(sl_sched *sc, int timeout_ms, bool thread)
{
    int64_t deadline = timeout_ms >= 0 ? sl__monotonic_ms() + timeout_ms : INT64_MAX;
    int total = 0;
    for (;;) {
        if (thread && __atomic_load_n(&sc->stop, __ATOMIC_ACQUIRE)) return total;
        int64_t wait_ms;
        int n = sweep_all(sc, &wait_ms);
        total += n;
        if (!thread && total > 0) return total;
        if (n > 0) continue;
        /* nothing to do: register, look once more, sleep */
        __atomic_fetch_add(sc->waiters, 1, __ATOMIC_SEQ_CST);
        uint32_t v = __atomic_load_n(sc->word, __ATOMIC_SEQ_CST);
        n = sweep_all(sc, &wait_ms);
        total += n;
        if (n > 0 || (thread && __atomic_load_n(&sc->stop, __ATOMIC_ACQUIRE))) {
            waiter_leave(sc);
            if (!thread) return total;
            continue;
        }
        int64_t ms = sleep_ms(sc, wait_ms, deadline);
        if (!thread && ms == 0) {
            waiter_leave(sc);
            return total;
        }
        if (thread) {
            pthread_mutex_lock(&sc->mu);
            sc->idle = true;
            sc->idle_word = v;
            pthread_cond_broadcast(&sc->cv);
            pthread_mutex_unlock(&sc->mu);
        }
        sleep_on(sc, v, ms);
        waiter_leave(sc);
        if (thread) {
            pthread_mutex_lock(&sc->mu);
            sc->idle = false;
            pthread_mutex_unlock(&sc->mu);
        }
    }
}

static int enter(sl_sched *sc)
{
    pthread_mutex_lock(&sc->mu);
    bool busy = sc->dispatching;
    if (!busy) {
        sc->dispatching = true;
        sc->dispatcher = pthread_self();
    }
    pthread_mutex_unlock(&sc->mu);
    return busy ? sl__err(SL_EINUSE, "the scheduler is already being dispatched "
                                     "(its thread runs, or another thread dispatches)")
                : 0;
}

static void leave(sl_sched *sc)
{
    pthread_mutex_lock(&sc->mu);
    sc->dispatching = false;
    pthread_cond_broadcast(&sc->cv);
    pthread_mutex_unlock(&sc->mu);
}

int sl_sched_dispatch(sl_sched *sc, int timeout_ms)
{
    if (!sc) return sl__ret(NULL, sl__err(SL_EINVAL, "scheduler is NULL"));
    int rc = enter(sc);
    if (rc) return sl__ret(sc->s, rc);
    int n = run(sc, timeout_ms, false);
    leave(sc);
    return n;
}

static void *thread_main(void *arg)
{
    sl_sched *sc = arg;
    pthread_mutex_lock(&sc->mu);
    sc->dispatcher = pthread_self();
    pthread_mutex_unlock(&sc->mu);
    run(sc, -1, true);
    return NULL;
}

int sl_sched_start(sl_sched *sc)
{
    if (!sc) return sl__ret(NULL, sl__err(SL_EINVAL, "scheduler is NULL"));
    int rc = enter(sc);
    if (rc) return sl__ret(sc->s, rc);
    sc->stop = false;
    sc->idle = false;
    int e = pthread_create(&sc->thread, NULL, thread_main, sc);
    if (e) {
        leave(sc);
        return sl__ret(sc->s, sl__errno(SL_ENOMEM, e, "starting the scheduler thread"));
    }
    sc->running = true;
    return 0;
}

int sl_sched_stop(sl_sched *sc)
{
    if (!sc) return sl__ret(NULL, sl__err(SL_EINVAL, "scheduler is NULL"));
    if (!sc->running) return 0;
    __atomic_store_n(&sc->stop, true, __ATOMIC_RELEASE);
    kick(sc);
    pthread_join(sc->thread, NULL);
    sc->running = false;
    pthread_mutex_lock(&sc->mu);
    sc->idle = false;
    pthread_mutex_unlock(&sc->mu);
    leave(sc);
    return 0;
}

int sl_sched_wait_idle(sl_sched *sc, int timeout_ms)
{
    if (!sc) return sl__ret(NULL, sl__err(SL_EINVAL, "scheduler is NULL"));
    if (!sc->running)
        return sl__ret(sc->s, sl__err(SL_EINVAL, "the scheduler's thread is not running"));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (int64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000;
    ts.tv_sec += ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    int r = 1;
    pthread_mutex_lock(&sc->mu);
    while (!(sc->idle && sc->idle_word == __atomic_load_n(sc->word, __ATOMIC_SEQ_CST))) {
        if (timeout_ms == 0) { r = 0; break; }
        if (timeout_ms < 0) {
            /* the word may move without the thread waking us: re-check */
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 10000000;
            if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
            pthread_cond_timedwait(&sc->cv, &sc->mu, &ts);
            continue;
        }
        if (pthread_cond_timedwait(&sc->cv, &sc->mu, &ts) == ETIMEDOUT) {
            r = sc->idle && sc->idle_word == __atomic_load_n(sc->word, __ATOMIC_SEQ_CST);
            break;
        }
    }
    pthread_mutex_unlock(&sc->mu);
    return r;
}

void sl_sched_free(sl_sched *sc)
{
    if (!sc) return;
    sl_sched_stop(sc);
    pthread_mutex_lock(&sc->mu);
    while (sc->dispatching) pthread_cond_wait(&sc->cv, &sc->mu);
    while (sc->nsubs) {
        sl_sub *sub = sc->subs[sc->nsubs - 1];
        sc->nsubs--;
        sub_release(sub);
        sub_free(sub);
    }
    pthread_mutex_unlock(&sc->mu);
    if (sc->vc) sl__vclock_unlisten(sc->vc, sc->word);
    atomic_fetch_sub(&sc->s->children, 1);
    pthread_cond_destroy(&sc->cv);
    pthread_mutex_destroy(&sc->mu);
    free(sc->subs);
    free(sc->recs);
    free(sc);
}
