/*
** reshard.c -- SplitShard, MergeShards, UpdateShardCount.
**
** A reshard closes parents and opens children, in one transaction under
** s->mu:
**   1. the children are made in memory, with empty directories (a crash
**      here leaves directories no manifest names; the next writer open
**      removes them);
**   2. each parent's append lock is taken and its active segment sealed:
**      puts to it wait from here on;
**   3. the new manifest -- parents CLOSED with their ending sequence number,
**      children OPEN with their parents -- replaces the old one atomically
**      (write, fsync, rename, fsync the directory).  That is the commit: a
**      crash before it leaves the old shard map, after it the new one,
**      never a mix;
**   4. the children join the shard array, a new routing table is
**      published, the parents are marked closed and their locks released.
** A producer that routed to a parent before step 4 finds it closed under
** its lock (sl__shard_append returns SL__RESHARDED) and routes again, on
** the new table: every put lands in exactly one open shard, once.
**
** Sequence numbers come from the stream-wide counter in blocks, so a
** child's numbers are above every number issued before it was made: its
** StartingSequenceNumber is the counter at that moment, above its
** parents' EndingSequenceNumber.  Per-key order then holds for a reader
** that finishes a parent before reading its children.
*/
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

typedef struct kid {
    sl_u128 start, end;
    uint32_t parent, adjacent;
} kid;

static sl_u128 u128_add1(sl_u128 v)
{
    if (++v.lo == 0) v.hi++;
    return v;
}

static sl_u128 u128_sub1(sl_u128 v)
{
    if (v.lo-- == 0) v.hi--;
    return v;
}

/* Close parents[0..np) and open the children kids[0..nk) (see the top of
** the file).  Caller holds s->mu. */
static int reshard(sl_stream *s, sl_shard **parents, int np, const kid *kids, int nk)
{
    size_t ns = atomic_load(&s->nshards);
    if (sl__nroute(s) - (size_t)np + (size_t)nk > SL_SHARDS_MAX)
        return sl__err(SL_ELIMIT, "stream '%s' would have more than %d open shards",
                       s->man.name, SL_SHARDS_MAX);
    if (ns + (size_t)nk > SL_SHARDS_TOTAL_MAX || s->man.next_shard_index != ns)
        return sl__err(SL_ELIMIT, "stream '%s' has had %zu shards; the limit is %u",
                       s->man.name, ns, SL_SHARDS_TOTAL_MAX);
    sl_shard *made[2] = {NULL, NULL};
    int rc = 0;
    /* 1. children, empty */
    for (int nm = 0; nm < nk && rc == 0; nm++) {
        sl_shard *c = made[nm] = sl__shard_alloc();
        if (!c) {
            rc = sl__err(SL_ENOMEM, "allocating a shard");
            break;
        }
        if ((rc = sl__shard_init(c, s, (uint32_t)(ns + (size_t)nm))) != 0) break;
        c->start = kids[nm].start;
        c->end = kids[nm].end;
        c->parent = kids[nm].parent;
        c->adjacent = kids[nm].adjacent;
        atomic_store(&c->open, true);
        sl__os_rmtree(c->dir);          /* a crashed reshard's */
        if (sl__os.mkdir(c->dir, 0700) != 0) {
            rc = sl__errno(sl__errno_code(errno), errno, "creating %s", c->dir);
            break;
        }
        rc = sl__shard_load(c, true, true);
    }
    /* 2. parents: no more appends */
    uint64_t last[2] = {0, 0};
    int locked = 0;
    for (; rc == 0 && locked < np; locked++)
        if ((rc = sl__shard_close_begin(parents[locked], &last[locked])) != 0) {
            locked++;                   /* close_begin holds the lock anyway */
            break;
        }
    uint64_t start_seq = atomic_load(&s->next_seq);
    /* 3. the new manifest: the commit */
    sl_manifest m = s->man;
    sl_mshard *sh = NULL;
    if (rc == 0 && !(sh = malloc((ns + (size_t)nk) * sizeof *sh)))
        rc = sl__err(SL_ENOMEM, "resharding");
    if (rc == 0) {
        memcpy(sh, s->man.shards, ns * sizeof *sh);
        for (int i = 0; i < np; i++) {
            sl_mshard *p = &sh[parents[i]->index];
            p->open = false;
            p->end_seq = last[i] > p->start_seq ? last[i] : p->start_seq;
        }
        for (int i = 0; i < nk; i++) {
            made[i]->start_seq = start_seq;
            sh[ns + (size_t)i] = (sl_mshard){made[i]->index, true, kids[i].start, kids[i].end,
                                            kids[i].parent, kids[i].adjacent, start_seq, 0};
        }
        m.shards = sh;
        m.nshards = ns + (size_t)nk;
        m.next_shard_index = (uint32_t)(ns + (size_t)nk);
        m.generation++;
        rc = sl__manifest_write(&m, s->dir);
    }
    /* a failure after the rename (syncing the directory) leaves the new map
    ** in place, maybe not durable: keep the children's directories, and
    ** fail the stream, as any failed sync does; the next open reads
    ** whichever map survived, whole */
    bool renamed = false;
    if (rc && sh) {
        char why[512];
        snprintf(why, sizeof why, "%s", sl__errtext());
        sl_manifest now;
        if (sl__manifest_read(&now, s->dir) == 0) {
            renamed = now.generation == m.generation;
            sl__manifest_free(&now);
        }
        sl__err(rc, "%s", why);
        if (renamed) sl__stream_fail(s, EIO, why);
    }
    if (rc) {
        for (int i = 0; i < locked; i++) sl__shard_close_end(parents[i], false, 0);
        for (int i = 0; i < nk; i++) {        /* made[] holds what was made */
            if (!made[i]) continue;
            if (made[i]->dir && !renamed) sl__os_rmtree(made[i]->dir);
            sl__shard_destroy(made[i]);
            free(made[i]);
        }
        free(sh);
        return rc;
    }
    /* 4. publish */
    for (int i = 0; i < nk; i++) s->shards[ns + (size_t)i] = made[i];
    atomic_store_explicit(&s->nshards, ns + (size_t)nk, memory_order_release);
    for (int i = 0; i < np; i++) {
        atomic_store(&parents[i]->end_seq, sh[parents[i]->index].end_seq);
        atomic_store(&parents[i]->open, false);
    }
    /* only the fields that changed: producers read others (stream id,
    ** record size) without the lock */
    free(s->man.shards);
    s->man.shards = m.shards;
    s->man.nshards = m.nshards;
    s->man.next_shard_index = m.next_shard_index;
    s->man.generation = m.generation;
    rc = sl__stream_build_route(s);     /* only ENOMEM can fail here */
    for (int i = 0; i < np; i++)
        sl__shard_close_end(parents[i], true, sh[parents[i]->index].end_seq);
    if (rc) sl__stream_fail(s, ENOMEM, "resharding: the routing table could not be built");
    return rc;
}

/* Common checks; the shard by id, open. */
static int open_shard(sl_stream *s, const char *id, const char *what, sl_shard **out)
{
    *out = id ? sl__stream_shard_by_id(s, id) : NULL;
    if (!*out)
        return sl__err(SL_ENOTFOUND, "Shard %.64s in stream %s not found.", id ? id : "(null)",
                       s->man.name);
    if (!atomic_load(&(*out)->open))
        return sl__err(SL_EINVAL, "%s: shard %s in stream %s is closed; only open shards "
                                  "can be resharded",
                       what, id, s->man.name);
    return 0;
}

static int provisioned(sl_stream *s, const char *what)
{
    if (s->man.mode == SL_STREAM_MODE_ON_DEMAND)
        return sl__err(SL_EVALIDATION, "%s is not supported for stream %s because it is an "
                                       "on-demand stream",
                       what, s->man.name);
    return sl__stream_check_writable(s);
}

static int split_locked(sl_stream *s, sl_shard *p, sl_u128 at)
{
    if (sl__u128_cmp(at, p->start) <= 0 || sl__u128_cmp(at, p->end) > 0) {
        char a[40], b[40], c[40];
        return sl__err(SL_EINVAL, "NewStartingHashKey %s used in SplitShard() on shard %s in "
                                  "stream %s is not both greater than the shard's "
                                  "StartingHashKey %s and at most its EndingHashKey %s.",
                       sl__u128_format(a, at), p->id, s->man.name,
                       sl__u128_format(b, p->start), sl__u128_format(c, p->end));
    }
    kid k[2] = {{p->start, u128_sub1(at), p->index, SL_NO_SHARD},
                {at, p->end, p->index, SL_NO_SHARD}};
    return reshard(s, &p, 1, k, 2);
}

int sl_stream_split_shard(sl_stream *s, const char *shard_id, const char *new_starting_hash_key)
{
    if (!s) return sl__ret(NULL, sl__err(SL_EINVAL, "stream is NULL"));
    sl_u128 at;
    int rc = provisioned(s, "SplitShard");
    if (rc) return sl__ret(s, rc);
    if (!new_starting_hash_key)
        return sl__ret(s, sl__err(SL_EVALIDATION, "1 validation error detected: Value null at "
                                                  "'newStartingHashKey' failed to satisfy "
                                                  "constraint: Member must not be null"));
    if ((rc = sl__u128_parse(&at, new_starting_hash_key)) != 0) return sl__ret(s, rc);
    pthread_mutex_lock(&s->mu);
    sl_shard *p;
    if ((rc = open_shard(s, shard_id, "SplitShard", &p)) == 0) rc = split_locked(s, p, at);
    pthread_mutex_unlock(&s->mu);
    return sl__ret(s, rc);
}

static int merge_locked(sl_stream *s, sl_shard *a, sl_shard *b)
{
    bool a_first = sl__u128_cmp(u128_add1(a->end), b->start) == 0 &&
                   sl__u128_cmp(a->end, SL_U128_MAX) != 0;
    bool b_first = sl__u128_cmp(u128_add1(b->end), a->start) == 0 &&
                   sl__u128_cmp(b->end, SL_U128_MAX) != 0;
    if (a == b || (!a_first && !b_first))
        return sl__err(SL_EINVAL, "Shards %s and %s in stream %s are not adjacent: their hash "
                                  "key ranges do not meet.",
                       a->id, b->id, s->man.name);
    kid k = {a_first ? a->start : b->start, a_first ? b->end : a->end, a->index, b->index};
    sl_shard *ps[2] = {a->index < b->index ? a : b, a->index < b->index ? b : a};
    return reshard(s, ps, 2, &k, 1);
}

int sl_stream_merge_shards(sl_stream *s, const char *shard_id, const char *adjacent_shard_id)
{
    if (!s) return sl__ret(NULL, sl__err(SL_EINVAL, "stream is NULL"));
    int rc = provisioned(s, "MergeShards");
    if (rc) return sl__ret(s, rc);
    pthread_mutex_lock(&s->mu);
    sl_shard *a, *b;
    if ((rc = open_shard(s, shard_id, "MergeShards", &a)) == 0 &&
        (rc = open_shard(s, adjacent_shard_id, "MergeShards", &b)) == 0)
        rc = merge_locked(s, a, b);
    pthread_mutex_unlock(&s->mu);
    return sl__ret(s, rc);
}

int sl__reshard_split_hot(sl_stream *s, sl_shard *sh)
{
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (atomic_load(&sh->open) && sl__u128_cmp(sh->start, sh->end) != 0) {
        /* the middle of its range: start + (end - start) / 2 + 1 */
        sl_u128 w = {sh->end.hi - sh->start.hi - (sh->end.lo < sh->start.lo),
                     sh->end.lo - sh->start.lo};
        sl_u128 h = {w.hi >> 1, (w.lo >> 1) | (w.hi << 63)};
        sl_u128 at = {sh->start.hi + h.hi + (sh->start.lo + h.lo < sh->start.lo),
                      sh->start.lo + h.lo};
        rc = split_locked(s, sh, u128_add1(at));
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* The open shard whose range holds h (caller holds s->mu). */
static sl_shard *holder(sl_stream *s, sl_u128 h) { return sl__stream_route(s, h); }

int sl_stream_update_shard_count(sl_stream *s, uint32_t target)
{
    if (!s) return sl__ret(NULL, sl__err(SL_EINVAL, "stream is NULL"));
    int rc = provisioned(s, "UpdateShardCount");
    if (rc) return sl__ret(s, rc);
    pthread_mutex_lock(&s->mu);
    uint32_t n = (uint32_t)sl__nroute(s);
    if (target < 1 || target > SL_SHARDS_MAX || target > 2 * n || 2 * target < n) {
        pthread_mutex_unlock(&s->mu);
        return sl__ret(s, sl__err(SL_EINVAL, "UpdateShardCount from %u to %u shards for stream "
                                             "%s: the target must be between half and twice "
                                             "the open shards, and at most %d",
                                  n, target, s->man.name, SL_SHARDS_MAX));
    }
    /* Uniform scaling through splits and merges, as Kinesis does (it too
    ** makes short-lived shards): split wherever a target range starts
    ** inside an open shard, then merge the pieces of each target range. */
    for (uint32_t i = 1; i < target && rc == 0; i++) {
        sl_u128 b, e;
        sl__hashkey_split(&b, &e, i, target);
        sl_shard *h = holder(s, b);
        if (sl__u128_cmp(h->start, b) != 0) rc = split_locked(s, h, b);
    }
    for (uint32_t i = 0; i < target && rc == 0; i++) {
        sl_u128 b, e;
        sl__hashkey_split(&b, &e, i, target);
        for (;;) {
            sl_shard *h = holder(s, b);
            if (sl__u128_cmp(h->end, e) == 0) break;
            sl_shard *next = holder(s, u128_add1(h->end));
            if ((rc = merge_locked(s, h, next)) != 0) break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return sl__ret(s, rc);
}

/* ---- followers ------------------------------------------------------------------ */

/* A read-only handle learns of reshards (and retention changes) made by the
** writer since it opened: it re-reads the manifest -- at most every
** REFRESH_MS, when a reader finds nothing new -- closes the parents it
** names closed and loads the children. */
#define REFRESH_MS 100

int sl__stream_refresh(sl_stream *s)
{
    if (!s->readonly) return 0;
    int64_t now = sl__monotonic_ms();
    int64_t due = atomic_load_explicit(&s->refresh_ms, memory_order_relaxed);
    if (now < due ||
        !atomic_compare_exchange_strong(&s->refresh_ms, &due, now + REFRESH_MS))
        return 0;                       /* looked recently, or another does */
    sl_manifest m;
    int rc = sl__manifest_read(&m, s->dir);
    if (rc) return rc;
    pthread_mutex_lock(&s->mu);
    size_t ns = atomic_load(&s->nshards);
    if (m.generation <= s->man.generation || m.nshards < ns) {
        pthread_mutex_unlock(&s->mu);
        sl__manifest_free(&m);
        return 0;
    }
    for (size_t i = ns; i < m.nshards && rc == 0; i++) {    /* children */
        sl_shard *c = sl__shard_alloc();
        if (!c) {
            rc = sl__err(SL_ENOMEM, "allocating a shard");
            break;
        }
        if ((rc = sl__shard_init(c, s, (uint32_t)i)) == 0) {
            c->start = m.shards[i].start;
            c->end = m.shards[i].end;
            c->parent = m.shards[i].parent;
            c->adjacent = m.shards[i].adjacent;
            c->start_seq = m.shards[i].start_seq;
            atomic_store(&c->end_seq, m.shards[i].end_seq);
            atomic_store(&c->open, m.shards[i].open);
            rc = sl__shard_load(c, false, true);
        }
        if (rc) {
            sl__shard_destroy(c);
            free(c);
            break;
        }
        s->shards[i] = c;
        atomic_store_explicit(&s->nshards, i + 1, memory_order_release);
    }
    if (rc == 0) {
        for (size_t i = 0; i < ns; i++) {       /* parents closed since */
            sl_shard *p = s->shards[i];
            if (!m.shards[i].open && atomic_load(&p->open)) {
                atomic_store(&p->end_seq, m.shards[i].end_seq);
                atomic_store(&p->open, false);
                sl__shard_wake(p);
            }
        }
        /* keys added by rotations since (without a provider: none) */
        if (m.nkeys > s->man.nkeys && (rc = sl__keys_refresh(s, &m)) != 0) {
            pthread_mutex_unlock(&s->mu);
            sl__manifest_free(&m);
            return rc;
        }
        sl_mkey *ok = s->man.keys;
        size_t on = s->man.nkeys;
        char *oid = s->man.kms_key_id;
        s->man.keys = m.keys;
        s->man.nkeys = m.nkeys;
        s->man.key_current = m.key_current;
        s->man.encryption = m.encryption;
        s->man.kms_key_id = m.kms_key_id;
        m.keys = ok;
        m.nkeys = on;
        m.kms_key_id = oid;
        atomic_store(&s->retention_ms, (uint64_t)m.retention_hours * 3600000ull);
        atomic_store(&s->trim_ms, m.trim_ms);
        free(s->man.shards);
        s->man.shards = m.shards;
        s->man.nshards = m.nshards;
        s->man.next_shard_index = m.next_shard_index;
        s->man.generation = m.generation;
        s->man.retention_hours = m.retention_hours;
        s->man.trim_ms = m.trim_ms;
        m.shards = NULL;
        m.nshards = 0;
        rc = sl__stream_build_route(s);
    }
    pthread_mutex_unlock(&s->mu);
    sl__manifest_free(&m);
    return rc;
}

/* ---- the lineage reader ------------------------------------------------------ */

enum { LR_WAIT = 0, LR_READING = 1, LR_DONE = 2 };

struct sl_lreader {
    sl_stream *s;
    sl_consumer *c;
    sl_iter_type start;
    uint64_t arg;
    size_t n, cap;                    /* shards known */
    size_t initial;                   /* shards there when it opened */
    uint8_t *state;                   /* LR_..., by shard index */
    sl_iter **it;                     /* LR_READING: its iterator */
    size_t next;                      /* round-robin position */
};

static bool parent_done(const sl_lreader *lr, uint32_t p)
{
    return p == SL_NO_SHARD || (p < lr->n && lr->state[p] == LR_DONE);
}

/* Shards the reader has not seen yet (a reshard since): grow the tables. */
static int lr_grow(sl_lreader *lr)
{
    size_t ns = atomic_load_explicit(&lr->s->nshards, memory_order_acquire);
    if (ns <= lr->n) return 0;
    if (ns > lr->cap) {
        size_t cap = lr->cap ? lr->cap : 16;
        while (cap < ns) cap *= 2;
        uint8_t *st = realloc(lr->state, cap);
        if (st) lr->state = st;
        sl_iter **it = st ? realloc(lr->it, cap * sizeof *it) : NULL;
        if (!it) return sl__err(SL_ENOMEM, "growing a lineage reader");
        lr->it = it;
        lr->cap = cap;
    }
    for (size_t i = lr->n; i < ns; i++) {
        lr->state[i] = LR_WAIT;
        lr->it[i] = NULL;
        /* LATEST: what is closed when the reader opens holds nothing new */
        if (lr->start == SL_ITER_LATEST && lr->n == 0 && !atomic_load(&lr->s->shards[i]->open))
            lr->state[i] = LR_DONE;
    }
    lr->n = ns;
    return 0;
}

/* Start reading shard i, whose parents are done. */
static int lr_begin(sl_lreader *lr, size_t i)
{
    sl_shard *sh = lr->s->shards[i];
    /* AT_TIMESTAMP applies to every shard (order holds: parents first);
    ** LATEST to the shards there at the start; a shard made since begins
    ** at its beginning, its parents read to their ends */
    sl_iter_type t = lr->start == SL_ITER_AT_TIMESTAMP                   ? lr->start
                     : lr->start == SL_ITER_LATEST && i < lr->initial ? lr->start
                                                                       : SL_ITER_TRIM_HORIZON;
    int rc;
    if (lr->c) {
        uint64_t ck;
        if (sl_consumer_get_checkpoint(lr->c, sh->id, &ck) == 0 && !atomic_load(&sh->open) &&
            ck >= atomic_load(&sh->end_seq)) {
            lr->state[i] = LR_DONE;     /* read to its end before */
            return 0;
        }
        rc = sl_consumer_iter_open(&lr->it[i], lr->c, sh->id, t, lr->arg);
    } else {
        rc = sl_iter_open(&lr->it[i], lr->s, sh->id, t, lr->arg);
    }
    if (rc == 0) lr->state[i] = LR_READING;
    return rc;
}

int sl_lreader_open(sl_lreader **out, sl_stream *s, sl_consumer *c, sl_iter_type start,
                    uint64_t arg)
{
    if (!out || !s) return sl__ret(s, sl__err(SL_EINVAL, "out or stream is NULL"));
    *out = NULL;
    if (start != SL_ITER_TRIM_HORIZON && start != SL_ITER_LATEST && start != SL_ITER_AT_TIMESTAMP)
        return sl__ret(s, sl__err(SL_EINVAL, "a lineage reader starts at TRIM_HORIZON, LATEST "
                                             "or AT_TIMESTAMP"));
    sl_lreader *lr = calloc(1, sizeof *lr);
    if (!lr) return sl__ret(s, sl__err(SL_ENOMEM, "allocating a lineage reader"));
    *lr = (sl_lreader){s, c, start, arg, 0, 0, 0, NULL, NULL, 0};
    int rc = lr_grow(lr);
    if (rc) {
        free(lr->state);
        free(lr->it);
        free(lr);
        return sl__ret(s, rc);
    }
    lr->initial = lr->n;
    atomic_fetch_add(&s->children, 1);
    *out = lr;
    return 0;
}

void sl_lreader_close(sl_lreader *lr)
{
    if (!lr) return;
    for (size_t i = 0; i < lr->n; i++) sl_iter_close(lr->it[i]);
    atomic_fetch_sub(&lr->s->children, 1);
    free(lr->state);
    free(lr->it);
    free(lr);
}

int sl_lreader_read(sl_lreader *lr, sl_record *recs, size_t limit, sl_read_result *res,
                    char shard_id[SL_SHARD_ID_LEN + 1])
{
    if (!lr || !recs || !res || !shard_id)
        return sl__ret(lr ? (void *)lr->s : NULL,
                       sl__err(SL_EINVAL, "reader, recs, res or shard_id is NULL"));
    memset(res, 0, sizeof *res);
    shard_id[0] = '\0';
    int rc = lr_grow(lr);
    if (rc) return sl__ret(lr->s, rc);
    /* every shard at most once around, from where the last read left off */
    for (size_t k = 0; k < lr->n; k++) {
        size_t i = (lr->next + k) % lr->n;
        sl_shard *sh = lr->s->shards[i];
        if (lr->state[i] == LR_WAIT) {
            if (!parent_done(lr, sh->parent) || !parent_done(lr, sh->adjacent)) continue;
            if ((rc = lr_begin(lr, i)) != 0) {
                memcpy(shard_id, sh->id, sizeof sh->id);
                return sl__ret(lr->s, rc);
            }
        }
        if (lr->state[i] != LR_READING) continue;
        rc = sl_iter_read(lr->it[i], recs, limit, res);
        memcpy(shard_id, sh->id, sizeof sh->id);
        if (rc) {
            char why[512];
            snprintf(why, sizeof why, "%s", sl_errmsg(lr->it[i]));
            if (rc == SL_ETRIMMED) {    /* said once; the shard is behind us */
                sl_iter_close(lr->it[i]);
                lr->it[i] = NULL;
                lr->state[i] = LR_DONE;
            }
            return sl__ret(lr->s, sl__err(rc, "%s", why));
        }
        if (res->shard_end) {           /* its children may start now */
            sl_iter_close(lr->it[i]);
            lr->it[i] = NULL;
            lr->state[i] = LR_DONE;
            res->shard_end = 0;
            k = (size_t)-1;             /* look again from the start */
            lr->next = 0;
            continue;
        }
        if (res->count) {
            lr->next = (i + 1) % lr->n;
            return 0;
        }
    }
    shard_id[0] = '\0';
    return 0;
}
