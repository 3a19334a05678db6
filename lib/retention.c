/*
** retention.c -- the trim horizon, retention changes, the size cap, and the
** maintenance that deletes segments.
**
** The horizon.  A record is expired once the stream clock is the retention
** period past its arrival: now - arrival_ms >= retention.  The horizon is
** the newest expired arrival time, max(now - retention, trim_ms), where
** trim_ms (in the manifest) remembers how far a shorter period reached, so
** that raising the period revives nothing.  Arrival times are
** non-decreasing within a shard, so "expired" is a prefix of every shard;
** readers compare the next record's arrival time with the horizon (one
** comparison per read call).
**
** Deleting.  Only whole sealed segments are deleted, oldest first within a
** shard: those whose last record expired (maintenance), and, under a
** DROP_OLDEST size cap, the segment with the oldest last record across all
** shards when a new one would pass the cap (at roll-over, on the append
** path, and in maintenance).  An active segment whose records have all
** expired is sealed by maintenance first.  A deleted segment leaves its
** shard's list at once; its mapping lives on until its last reader unpins
** it (shard.c).  Then its file is unlinked and, once per pass, the shard
** directory synced.  An unlink is atomic: a crash leaves the file or not,
** and a file that comes back (an unsynced unlink) is hidden by the horizon
** or, for a cap drop, was never meant to be lost.
**
** Readers learn of deleted data through the shard's gone_seq: the largest
** sequence number deleted, in memory and in the shard's GONE file (written
** before each deletion; if it is damaged, the number just below the oldest
** segment left when that is not the shard's first).
*/
#include "internal.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define HOUR_MS 3600000LL
#define MAINT_PERIOD_MS 1000u

uint64_t sl__size_cap_min(uint32_t shards, uint64_t segment_bytes)
{
    return 2ull * shards * segment_bytes;
}

int64_t sl__horizon(sl_stream *s, int64_t now_ms)
{
    int64_t ret = (int64_t)atomic_load_explicit(&s->retention_ms, memory_order_relaxed);
    int64_t h = now_ms - ret;
    int64_t t = atomic_load_explicit(&s->trim_ms, memory_order_relaxed);
    return h > t ? h : t;
}

/* ---- configuration ----------------------------------------------------- */

/* Rewrite the manifest with the caller's changes (caller holds s->mu). */
static int man_commit(sl_stream *s, const sl_manifest *m)
{
    int rc = sl__manifest_write(m, s->dir);
    if (rc) return rc;
    s->man.retention_hours = m->retention_hours;
    s->man.trim_ms = m->trim_ms;
    s->man.size_cap_bytes = m->size_cap_bytes;
    s->man.size_cap_policy = m->size_cap_policy;
    s->man.cold_after_hours = m->cold_after_hours;
    s->man.compaction = m->compaction;
    s->man.generation = m->generation;
    atomic_store(&s->cold_after_ms, (uint64_t)m->cold_after_hours * HOUR_MS);
    atomic_store(&s->compaction, (int)m->compaction);
    atomic_store(&s->trim_ms, m->trim_ms);
    atomic_store(&s->retention_ms, (uint64_t)m->retention_hours * HOUR_MS);
    atomic_store(&s->cap_bytes, m->size_cap_bytes);
    atomic_store(&s->cap_policy, (int)m->size_cap_policy);
    return 0;
}

static int set_retention(sl_stream *s, uint32_t hours, bool increase)
{
    if (!s) return sl__ret(NULL, sl__err(SL_EINVAL, "stream is NULL"));
    int rc = sl__stream_check_writable(s);
    if (rc) return sl__ret(s, rc);
    if (hours < SL_RETENTION_HOURS_MIN || hours > SL_RETENTION_HOURS_MAX)
        return sl__ret(s, sl__err(SL_EINVAL, "Minimum allowed retention period is %d hours. "
                                             "Maximum allowed retention period is %d hours. "
                                             "Requested retention period (%u hours) is out "
                                             "of range.",
                                  SL_RETENTION_HOURS_MIN, SL_RETENTION_HOURS_MAX, hours));
    pthread_mutex_lock(&s->mu);
    uint32_t cur = s->man.retention_hours;
    if (increase ? hours < cur : hours > cur) {
        pthread_mutex_unlock(&s->mu);
        return sl__ret(s, sl__err(SL_EINVAL, "Requested retention period (%u hours) for stream "
                                             "%s can not be %s than existing retention period "
                                             "(%u hours). Use %sStreamRetentionPeriod API.",
                                  hours, s->man.name, increase ? "shorter" : "longer", cur,
                                  increase ? "Decrease" : "Increase"));
    }
    sl_manifest m = s->man;
    m.retention_hours = hours;
    m.generation++;
    /* what has expired stays expired: remember the horizon reached so far */
    if (increase) m.trim_ms = sl__horizon(s, sl__now(s));
    rc = man_commit(s, &m);
    pthread_mutex_unlock(&s->mu);
    return sl__ret(s, rc);
}

int sl_stream_increase_retention(sl_stream *s, uint32_t hours)
{
    return set_retention(s, hours, true);
}

int sl_stream_decrease_retention(sl_stream *s, uint32_t hours)
{
    return set_retention(s, hours, false);
}

int sl_stream_set_size_cap(sl_stream *s, uint64_t bytes, sl_cap_policy policy)
{
    if (!s) return sl__ret(NULL, sl__err(SL_EINVAL, "stream is NULL"));
    int rc = sl__stream_check_writable(s);
    if (rc) return sl__ret(s, rc);
    if ((unsigned)policy > SL_CAP_REFUSE)
        return sl__ret(s, sl__err(SL_EINVAL, "size cap policy %d is not a policy", (int)policy));
    pthread_mutex_lock(&s->mu);
    uint64_t floor = sl__size_cap_min((uint32_t)sl__nroute(s), s->man.segment_bytes);
    if (bytes && bytes < floor) {
        pthread_mutex_unlock(&s->mu);
        return sl__ret(s, sl__err(SL_EINVAL, "size cap %" PRIu64 " is below two segments per "
                                             "open shard (%" PRIu64 ")",
                                  bytes, floor));
    }
    sl_manifest m = s->man;
    m.size_cap_bytes = bytes;
    m.size_cap_policy = policy ? policy : SL_CAP_DROP_OLDEST;
    m.generation++;
    rc = man_commit(s, &m);
    pthread_mutex_unlock(&s->mu);
    return sl__ret(s, rc);
}

int sl_stream_set_cold_after(sl_stream *s, uint32_t hours)
{
    if (!s) return sl__ret(NULL, sl__err(SL_EINVAL, "stream is NULL"));
    int rc = sl__stream_check_writable(s);
    if (rc) return sl__ret(s, rc);
    if (hours > SL_RETENTION_HOURS_MAX)
        return sl__ret(s, sl__err(SL_EINVAL, "cold_after_hours %u exceeds %d", hours,
                                  SL_RETENTION_HOURS_MAX));
    pthread_mutex_lock(&s->mu);
    sl_manifest m = s->man;
    m.cold_after_hours = hours;
    m.generation++;
    rc = man_commit(s, &m);
    pthread_mutex_unlock(&s->mu);
    return sl__ret(s, rc);
}

int sl_stream_set_compaction(sl_stream *s, sl_compaction policy)
{
    if (!s) return sl__ret(NULL, sl__err(SL_EINVAL, "stream is NULL"));
    int rc = sl__stream_check_writable(s);
    if (rc) return sl__ret(s, rc);
    if ((unsigned)policy > SL_COMPACTION_KEY)
        return sl__ret(s, sl__err(SL_EINVAL, "compaction %d is not a policy", (int)policy));
    pthread_mutex_lock(&s->mu);
    sl_manifest m = s->man;
    m.compaction = policy ? policy : SL_COMPACTION_NONE;
    m.generation++;
    rc = man_commit(s, &m);
    pthread_mutex_unlock(&s->mu);
    return sl__ret(s, rc);
}

/* ---- the size cap ------------------------------------------------------- */

uint64_t sl__stream_disk_bytes(sl_stream *s)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < s->nshards; i++)
        if (s->shards[i]) sum += sl__shard_disk_bytes(s->shards[i]);
    return sum;
}

/* The shard whose oldest sealed segment holds the oldest last record. */
static sl_shard *oldest_shard(sl_stream *s, const sl_shard *skip_active_of)
{
    (void)skip_active_of;
    sl_shard *best = NULL;
    int64_t best_ms = INT64_MAX;
    for (size_t i = 0; i < s->nshards; i++) {
        sl_shard *sh = s->shards[i];
        int64_t ms;
        if (sh && sl__shard_oldest_sealed(sh, &ms) && (!best || ms < best_ms)) {
            best = sh;
            best_ms = ms;
        }
    }
    return best;
}

bool sl__cap_tight(sl_stream *s, uint64_t more)
{
    uint64_t cap = atomic_load_explicit(&s->cap_bytes, memory_order_relaxed);
    return cap && sl__stream_disk_bytes(s) + more > cap;
}

int sl__cap_make_room(sl_stream *s, uint64_t more, sl_maint_stats *st)
{
    uint64_t cap = atomic_load_explicit(&s->cap_bytes, memory_order_relaxed);
    if (!cap) return 0;
    pthread_mutex_lock(&s->cap_mu);
    int rc = 0;
    for (;;) {
        uint64_t used = sl__stream_disk_bytes(s);
        if (used + more <= cap) break;
        if (atomic_load(&s->cap_policy) == SL_CAP_REFUSE) {
            rc = sl__err(SL_ENOSPC, "stream '%s' is at its size cap: %" PRIu64 " bytes of "
                                    "segments, %" PRIu64 " more needed, cap %" PRIu64
                                    " (policy refuse: puts fail until retention or a higher "
                                    "cap frees space)",
                         s->man.name, used, more, cap);
            break;
        }
        sl_shard *sh = oldest_shard(s, NULL);
        uint64_t freed = 0;
        bool did = false;
        if (!sh || (rc = sl__shard_drop_oldest(sh, INT64_MAX, &freed, &did)) != 0 || !did)
            break;                      /* nothing sealed left: one segment
                                           per shard over, as documented */
        if (st) {
            st->segments_deleted++;
            st->segments_dropped++;
            st->bytes_freed += freed;
        }
    }
    pthread_mutex_unlock(&s->cap_mu);
    return rc;
}

/* ---- key compaction -------------------------------------------------------- */

/* partition key -> the newest sequence number of it in the shard */
typedef struct kent {
    uint64_t hash, seq;
    char *key;
    uint32_t klen;
} kent;
typedef struct kmap {
    kent *v;
    size_t cap, n;
} kmap;

static void kmap_free(kmap *m)
{
    for (size_t i = 0; i < m->cap; i++) free(m->v[i].key);
    free(m->v);
    memset(m, 0, sizeof *m);
}

static kent *kmap_slot(kmap *m, const uint8_t *key, uint32_t klen, uint64_t h)
{
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        kent *e = &m->v[i];
        if (!e->key || (e->hash == h && e->klen == klen && !memcmp(e->key, key, klen))) return e;
    }
}

static int kmap_put(kmap *m, const uint8_t *key, uint32_t klen, uint64_t seq)
{
    if (2 * (m->n + 1) > m->cap) {          /* grow: at most half full */
        kmap old = *m;
        m->cap = old.cap ? old.cap * 2 : 1024;
        m->n = 0;
        if (!(m->v = calloc(m->cap, sizeof *m->v))) {
            *m = old;
            return sl__err(SL_ENOMEM, "compaction: key map");
        }
        for (size_t i = 0; i < old.cap; i++) {
            if (!old.v[i].key) continue;
            *kmap_slot(m, (uint8_t *)old.v[i].key, old.v[i].klen, old.v[i].hash) = old.v[i];
            m->n++;
        }
        free(old.v);
    }
    uint64_t h = sl__xxh3(key, klen);
    kent *e = kmap_slot(m, key, klen, h);
    if (!e->key) {
        if (!(e->key = malloc(klen ? klen : 1))) return sl__err(SL_ENOMEM, "compaction: key map");
        memcpy(e->key, key, klen);
        e->klen = klen;
        e->hash = h;
        m->n++;
    }
    if (seq > e->seq) e->seq = seq;
    return 0;
}

static uint64_t kmap_newest(kmap *m, const uint8_t *key, uint32_t klen)
{
    kent *e = kmap_slot(m, key, klen, sl__xxh3(key, klen));
    return e->key ? e->seq : 0;
}

/* Decrypting partition keys: a compaction of encrypted records compares
** their clear keys (each record has its own nonce, so equal keys never
** have equal ciphertexts) and copies the records as they are. */
typedef struct kdec {
    sl_shard *sh;
    void *cctx;
    uint32_t ver;
    uint8_t *buf;
    size_t cap;
} kdec;

static void kdec_free(kdec *d)
{
    if (d->buf) OPENSSL_cleanse(d->buf, d->cap);
    free(d->buf);
    sl__gcm_free(&d->cctx);
}

/* Walk the committed records of a pinned hot segment, each with its framed
** bytes; false on damage (a record that fails its checksum or its tag).
** SL_EKEY in *rc: an encrypted record whose key this handle lacks. */
typedef int (*rec_fn)(void *ctx, const sl_recview *v, const uint8_t *rec);
static bool each_record(sl_seg *g, kdec *d, rec_fn fn, void *ctx, int *rc)
{
    uint64_t end = sl__seg_is_sealed(g) ? g->data_end : sl__seg_visible_end(g);
    for (uint64_t off = SL_SEG_HDR; off < end;) {
        sl_recview v;
        const uint8_t *rec = g->base + off;
        int r = sl__rec_parse(rec, end - off, true, &v);
        if (r == SL_REC_END) break;
        if (r != SL_REC_OK) return false;
        if (v.flags) {
            size_t n = (size_t)v.klen + v.dlen;
            if (n > d->cap) {
                uint8_t *b = malloc(n);
                if (!b) {
                    *rc = sl__err(SL_ENOMEM, "compaction: decrypting");
                    return true;
                }
                if (d->buf) OPENSSL_cleanse(d->buf, d->cap);
                free(d->buf);
                d->buf = b;
                d->cap = n;
            }
            r = sl__rec_decrypt(d->sh->s, d->sh->index, rec, &v, &d->cctx, &d->ver, d->buf);
            if (r == SL_EKEY) {
                *rc = r;
                return true;
            }
            if (r) return false;
            v.key = d->buf;
        }
        if ((*rc = fn(ctx, &v, rec)) != 0) return true;
        off += v.span;
    }
    return true;
}

static int map_add(void *ctx, const sl_recview *v, const uint8_t *rec)
{
    (void)rec;
    return kmap_put(ctx, v->key, v->klen, v->seq);
}

typedef struct csum {
    kmap *m;
    uint64_t keep, drop, bytes;       /* records kept and removed; kept spans */
    sl_seg *out;                      /* the rewrite, when writing */
} csum;

static int count_superseded(void *ctx, const sl_recview *v, const uint8_t *rec)
{
    csum *c = ctx;
    (void)rec;
    if (kmap_newest(c->m, v->key, v->klen) > v->seq) c->drop++;
    else {
        c->keep++;
        c->bytes += v->span;
    }
    return 0;
}

static int copy_newest(void *ctx, const sl_recview *v, const uint8_t *rec)
{
    csum *c = ctx;
    if (kmap_newest(c->m, v->key, v->klen) > v->seq) return 0;
    sl__seg_append_copy(c->out, rec, v);
    return 0;
}

/* Rewrite segment `ord` of sh keeping only the newest record of each key:
** a new file (its .tmp name) built with the segment writer, sealed,
** synced, then sl__shard_replace.  *done: a rewrite happened. */
static int compact_segment(sl_shard *sh, sl_seg *g, kmap *m, kdec *d, sl_maint_stats *st)
{
    csum c = {m, 0, 0, 0, NULL};
    int rc = 0;
    if (!each_record(g, d, count_superseded, &c, &rc) || rc) {
        if (rc == SL_EKEY) {
            sl__stream_report(sh->s, SL_EKEY, "%s segment %016" PRIx64 ": holds records "
                              "under a data key this handle lacks (no key provider); "
                              "compaction skips it", sh->id, g->ordinal);
            return 0;
        }
        if (rc == 0) {
            sl__stream_report(sh->s, SL_ECORRUPT, "%s segment %016" PRIx64 ": damaged; "
                              "compaction skips it", sh->id, g->ordinal);
            if (st) st->damaged_skipped++;
        }
        return rc;
    }
    if (c.drop == 0) return 0;
    /* room for the kept records, their index and the trailer */
    uint64_t bytes = SL_SEG_HDR + c.bytes + (c.bytes / SL_IDX_STRIDE + 2) * SL_IDX_ENTRY +
                     SL_SEG_TRAILER;
    bytes = (bytes + 4095) & ~(uint64_t)4095;
    if (bytes < SL_SEG_HDR + SL_SEG_TRAILER + 4096) bytes = SL_SEG_HDR + SL_SEG_TRAILER + 4096;
    bytes = (bytes + 4095) & ~(uint64_t)4095;
    sl_segctx ctx;
    sl__segctx_init(&ctx, sh);
    ctx.sync_now = false;               /* synced whole below */
    char *tmp = sl__seg_path(sh->dir, g->ordinal);
    if (!tmp) return sl__err(SL_ENOMEM, "compacting %s", sh->id);
    char *stale;
    int n = asprintf(&stale, "%s.tmp", tmp);
    free(tmp);
    if (n < 0) return sl__err(SL_ENOMEM, "compacting %s", sh->id);
    sl__os.unlink(stale);                           /* a crashed rewrite's */
    free(stale);
    sl_seg *ng = NULL;
    if ((rc = sl__seg_prepare(&ng, &ctx, sh->dir, g->ordinal, bytes, false)) != 0) return rc;
    c.out = ng;
    each_record(g, d, copy_newest, &c, &rc);
    if (ng->count == 0) {               /* an empty segment keeps its keys */
        ng->first_seq = ng->last_seq = g->last_seq;
        ng->first_ms = ng->last_ms = g->last_ms;
    }
    if (rc == 0 && (rc = sl__seg_seal(ng, &ctx)) == 0 && sl__seg_sync_sealed(ng) != 0)
        rc = sl__errno(SL_EIO, errno, "syncing %s", ng->tmp_path);
    char *path = rc == 0 ? strdup(ng->tmp_path) : NULL;
    if (rc == 0 && !path) rc = sl__err(SL_ENOMEM, "compacting %s", sh->id);
    if (rc) {
        sl__seg_discard(ng);            /* removes the file */
        return rc;
    }
    free(ng->tmp_path);                 /* the file stays: replace renames it */
    ng->tmp_path = NULL;
    sl__seg_free(ng);
    rc = sl__shard_replace(sh, g->ordinal, path);
    free(path);
    if (rc == 0 && st) {
        st->segments_compacted++;
        st->records_compacted += c.drop;
        st->bytes_freed += g->file_bytes > bytes ? g->file_bytes - bytes : 0;
    }
    return rc;
}

/* Key compaction of one shard: when a segment was sealed since the last
** run, map every key to its newest sequence number (hot segments and the
** active one; cold ones are older than anything that could supersede them
** and are not rewritten), then rewrite the sealed segments that hold older
** records of some key. */
static int compact_shard(sl_shard *sh, sl_maint_stats *st, int64_t deadline, bool *more)
{
    uint64_t newest_sealed = 0;
    int rc = 0;
    {
        sl_seg *g = NULL;
        uint64_t after = 0;
        while ((rc = sl__shard_get_seg(sh, after, &g)) == 0 && g) {
            if (sl__seg_is_sealed(g)) newest_sealed = g->ordinal;
            after = g->ordinal;
            sl__shard_put_seg(sh, g);
        }
        if (rc) return rc;
    }
    if (newest_sealed <= sh->compacted_upto) return 0;
    kmap m = {0};
    kdec d = {.sh = sh};
    uint64_t after = 0;
    sl_seg *g = NULL;
    while (rc == 0 && (rc = sl__shard_get_seg(sh, after, &g)) == 0 && g) {
        after = g->ordinal;
        if (!g->cold) each_record(g, &d, map_add, &m, &rc);   /* damage: its keys count less */
        if (rc == SL_EKEY) rc = 0;      /* reported when its segment is met */
        sl__shard_put_seg(sh, g);
    }
    after = 0;
    while (rc == 0) {
        if (sl__monotonic_ms() > deadline) {
            *more = true;
            break;
        }
        if ((rc = sl__shard_get_seg(sh, after, &g)) != 0 || !g) break;
        after = g->ordinal;
        bool candidate = sl__seg_is_sealed(g) && !g->cold && g->ordinal <= newest_sealed;
        if (candidate) rc = compact_segment(sh, g, &m, &d, st);
        sl__shard_put_seg(sh, g);
    }
    kmap_free(&m);
    kdec_free(&d);
    if (rc == 0 && !*more) sh->compacted_upto = newest_sealed;
    return rc;
}

/* ---- cold segments ----------------------------------------------------------- */

/* Rewrite the sealed hot segments of sh whose last record is older than
** the cold age as zstd blocks (sl__seg_write_cold), oldest first, each
** through "<ordinal>.seg.rw" and sl__shard_replace. */
static int cold_shard(sl_shard *sh, int64_t now, sl_maint_stats *st, int64_t deadline,
                      bool *more)
{
    uint64_t age = atomic_load(&sh->s->cold_after_ms);
    if (!age) return 0;
    int64_t before = now - (int64_t)age;
    uint64_t after = 0;
    int rc = 0;
    for (;;) {
        if (sl__monotonic_ms() > deadline) {
            *more = true;
            break;
        }
        sl_seg *g;
        if ((rc = sl__shard_get_seg(sh, after, &g)) != 0 || !g) break;
        after = g->ordinal;
        bool sealed = sl__seg_is_sealed(g);
        bool go = sealed && !g->cold && g->count && g->last_ms <= before;
        if (!go) {
            sl__shard_put_seg(sh, g);
            if (!sealed) break;         /* the active one: nothing after it */
            continue;
        }
        char *tmp;
        if (asprintf(&tmp, "%s.rw", g->path) < 0) {
            sl__shard_put_seg(sh, g);
            return sl__err(SL_ENOMEM, "making %s cold", sh->id);
        }
        sl__os.unlink(tmp);             /* a crashed rewrite's */
        sl_segctx c;
        sl__segctx_init(&c, sh);
        uint64_t bytes = 0, old_bytes = g->file_bytes;
        rc = sl__seg_write_cold(g, &c, tmp, 3, &bytes);
        sl__shard_put_seg(sh, g);
        if (rc == SL_ECORRUPT) {        /* damaged: left as it is, reported */
            sl__stream_report(sh->s, SL_ECORRUPT, "%s", sl__errtext());
            st->damaged_skipped++;
            rc = 0;
        } else if (rc == 0 && (rc = sl__shard_replace(sh, after, tmp)) == 0) {
            st->segments_cold++;
            st->cold_bytes_before += old_bytes;
            st->cold_bytes_after += bytes;
            st->bytes_freed += old_bytes > bytes ? old_bytes - bytes : 0;
        }
        free(tmp);
        if (rc) break;
    }
    return rc;
}

/* ---- maintenance ----------------------------------------------------------- */

static int64_t mono_ms(void) { return sl__monotonic_ms(); }

/* ON_DEMAND scaling: split each open shard that has been over its write
** capacity for on_demand_window_s whole seconds in a row (stream clock, so
** a virtual clock decides it exactly), at the middle of its range.  Cold
** shards are not merged back: a merge would have to guess that the load
** stays down, and an idle shard costs nothing here. */
static int on_demand(sl_stream *s, sl_maint_stats *st)
{
    int64_t now = sl__now(s);
    size_t ns = atomic_load_explicit(&s->nshards, memory_order_acquire);
    int rc = 0;
    for (size_t i = 0; i < ns && rc == 0; i++) {
        sl_shard *sh = s->shards[i];
        if (!atomic_load(&sh->open) ||
            sl__rl_hot_seconds(sh, now) < s->limits.on_demand_window_s)
            continue;
        if ((rc = sl__reshard_split_hot(s, sh)) == 0) st->shards_split++;
    }
    return rc;
}

int sl_stream_maintain(sl_stream *s, int budget_ms, sl_maint_fn fn, void *ctx,
                       sl_maint_stats *out)
{
    if (!s) return sl__ret(NULL, sl__err(SL_EINVAL, "stream is NULL"));
    int rc = sl__stream_check_writable(s);
    if (rc) return sl__ret(s, rc);
    sl_maint_stats st = {0};
    int64_t deadline = budget_ms >= 0 ? mono_ms() + budget_ms : INT64_MAX;
    bool more = false;
    for (size_t i = 0; i < s->nshards && rc == 0 && !more; i++) {
        sl_shard *sh = s->shards[i];
        if (!sh) continue;
        bool synced_dir = true;
        for (;;) {
            if (mono_ms() > deadline || (fn && fn(ctx, &st) != 0)) {
                more = true;
                break;
            }
            int64_t h = sl__horizon(s, sl__now(s));
            uint64_t freed = 0;
            bool did = false;
            if ((rc = sl__shard_drop_oldest(sh, h, &freed, &did)) != 0) break;
            if (did) {
                st.segments_deleted++;
                st.bytes_freed += freed;
                synced_dir = false;
                continue;
            }
            /* nothing sealed left to expire: the active segment, if all of
            ** it has */
            if ((rc = sl__shard_seal_expired(sh, h, &did)) != 0) break;
            if (!did) break;
            st.segments_sealed++;
        }
        if (!synced_dir && sl__os_fsync_dir(sh->dir) != 0 && rc == 0)
            rc = sl__errno(SL_EIO, errno, "syncing directory %s", sh->dir);
        if (rc == 0 && !more && atomic_load(&s->compaction) == SL_COMPACTION_KEY)
            rc = compact_shard(sh, &st, deadline, &more);
        if (rc == 0 && !more) rc = cold_shard(sh, sl__now(s), &st, deadline, &more);
    }
    if (rc == 0 && !more) rc = sl__cap_make_room(s, 0, &st);
    if (rc == 0 && !more && s->man.mode == SL_STREAM_MODE_ON_DEMAND) rc = on_demand(s, &st);
    st.disk_bytes = sl__stream_disk_bytes(s);
    if (fn && rc == 0 && !more) fn(ctx, &st);          /* the final tally */
    if (out) *out = st;
    if (rc) return sl__ret(s, rc);
    return more ? 1 : 0;
}

static void *maint_main(void *arg)
{
    sl_stream *s = arg;
    pthread_mutex_lock(&s->maint_mu);
    while (!s->maint_stop) {
        pthread_mutex_unlock(&s->maint_mu);
        int rc = sl_stream_maintain(s, -1, NULL, NULL, NULL);
        if (rc < 0) sl__stream_report(s, rc, "maintenance: %s", sl_errmsg(s));
        pthread_mutex_lock(&s->maint_mu);
        if (s->maint_stop) break;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)s->maint_period_ms * 1000000ull;
        ts.tv_sec += (time_t)(ns / 1000000000ull);
        ts.tv_nsec = (long)(ns % 1000000000ull);
        pthread_cond_timedwait(&s->maint_cv, &s->maint_mu, &ts);
    }
    pthread_mutex_unlock(&s->maint_mu);
    return NULL;
}

int sl_stream_maintain_start(sl_stream *s, uint32_t period_ms)
{
    if (!s) return sl__ret(NULL, sl__err(SL_EINVAL, "stream is NULL"));
    int rc = sl__stream_check_writable(s);
    if (rc) return sl__ret(s, rc);
    pthread_mutex_lock(&s->maint_mu);
    if (s->maint_running) {
        pthread_mutex_unlock(&s->maint_mu);
        return sl__ret(s, sl__err(SL_EINUSE, "maintenance thread already running"));
    }
    s->maint_period_ms = period_ms ? period_ms : MAINT_PERIOD_MS;
    s->maint_stop = false;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->maint_cv, &ca);
    pthread_condattr_destroy(&ca);
    int e = pthread_create(&s->maint, NULL, maint_main, s);
    if (e) {
        pthread_cond_destroy(&s->maint_cv);
        pthread_mutex_unlock(&s->maint_mu);
        return sl__ret(s, sl__errno(SL_ENOMEM, e, "starting the maintenance thread"));
    }
    s->maint_running = true;
    pthread_mutex_unlock(&s->maint_mu);
    return 0;
}

int sl_stream_maintain_stop(sl_stream *s)
{
    if (!s) return sl__ret(NULL, sl__err(SL_EINVAL, "stream is NULL"));
    pthread_mutex_lock(&s->maint_mu);
    if (!s->maint_running) {
        pthread_mutex_unlock(&s->maint_mu);
        return 0;
    }
    s->maint_stop = true;
    pthread_cond_signal(&s->maint_cv);
    pthread_mutex_unlock(&s->maint_mu);
    pthread_join(s->maint, NULL);
    pthread_mutex_lock(&s->maint_mu);
    s->maint_running = false;
    pthread_cond_destroy(&s->maint_cv);
    pthread_mutex_unlock(&s->maint_mu);
    return 0;
}
