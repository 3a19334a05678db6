/*
** iterator.c -- shard iterators and GetRecords-style reads.
**
** An iterator is a position (segment, offset) in one shard.  It pins the
** segment it stands in, so the mapping under the record views it returned
** stays valid until its next read or close, whatever retention or the writer
** do meanwhile.  A read returns records from one segment at most; at the end
** of a sealed segment the next read moves on to the next one.  Every record
** is verified (XXH3) before it is returned; a bad one is reported with its
** shard, segment and offset, and the iterator skips past the damage.
**
** Waiting: see the wake-up protocol in shard.c.  A follower that cannot
** write the WAKE file (read-only filesystem, other user) falls back to
** checking every 10 ms; that is the only polling in the library.
*/
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define WAIT_SLICE_MS 250
#define POLL_FALLBACK_MS 10

struct sl_iter {
    sl_stream *s;
    sl_shard *sh;
    sl_seg *seg;                      /* pinned; NULL before the first one */
    uint64_t off;
    uint64_t last_seq;                /* last returned (or the start bound) */
    _Atomic bool cancel;              /* sl_iter_cancel_wait */
    /* block verification (see sl__seg_block_check): records below ok_end
    ** passed their block's checksum; below retry_at, check record by
    ** record; `blk` is the index position hint */
    uint64_t ok_end, retry_at;
    uint32_t blk;
    sl_consumer *consumer;            /* reads count as its (or NULL) */
    int64_t touched_ms;               /* opened or last read (KDS expiry) */
    bool expired;                     /* sl_iter_expire */
};

/* The KDS profile's iterator lifetime (Kinesis: 5 minutes). */
#define KDS_ITER_TTL_MS 300000

/* The iterator moved to another segment or position: forget the blocks. */
static void blocks_reset(sl_iter *it)
{
    it->ok_end = it->retry_at = 0;
    it->blk = 0;
}

/* Must the record at it->off have its own checksum verified? */
static bool need_record_check(sl_iter *it, sl_seg *g, uint64_t end)
{
    if (it->off < it->ok_end) return false;
    if (it->off < it->retry_at) return true;
    uint64_t bend;
    int r = sl__seg_block_check(g, it->off, end, &it->blk, &bend);
    if (r == 1) {
        it->ok_end = bend;
        return false;
    }
    /* no complete block here, or its checksum failed (then the records'
    ** own checksums find exactly what is damaged) */
    it->retry_at = bend > it->off ? bend : it->off + 1;
    return true;
}

static void iter_free(sl_iter *it)
{
    if (!it) return;
    sl__shard_put_seg(it->sh, it->seg);
    atomic_fetch_sub(&it->s->children, 1);
    free(it);
}

void sl_iter_close(sl_iter *it) { iter_free(it); }

int sl__iter_type_check(sl_iter_type type)
{
    if (type >= SL_ITER_AT_SEQUENCE_NUMBER && type <= SL_ITER_AT_TIMESTAMP) return 0;
    return sl__err(SL_EVALIDATION,
                   "1 validation error detected: Value '%d' at 'shardIteratorType' failed "
                   "to satisfy constraint: Member must satisfy enum value set: "
                   "[AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, "
                   "AT_TIMESTAMP]",
                   (int)type);
}

int sl_iter_open(sl_iter **out, sl_stream *s, const char *shard_id,
                 sl_iter_type type, uint64_t arg)
{
    if (!out || !s) return sl__ret(s, sl__err(SL_EINVAL, "out or stream is NULL"));
    *out = NULL;
    sl_shard *sh = shard_id ? sl__stream_shard_by_id(s, shard_id) : NULL;
    if (!sh)
        return sl__ret(s, sl__err(SL_ENOTFOUND, "Shard %.64s in stream %s not found.",
                                  shard_id ? shard_id : "(null)", s->man.name));
    int rc = sl__iter_type_check(type);
    if (rc) return sl__ret(s, rc);
    bool by_seq = type == SL_ITER_AT_SEQUENCE_NUMBER || type == SL_ITER_AFTER_SEQUENCE_NUMBER;
    if (by_seq && arg == 0)
        return sl__ret(s, sl__err(SL_EINVAL, "%s needs a starting sequence number",
                                  type == SL_ITER_AT_SEQUENCE_NUMBER ? "AT_SEQUENCE_NUMBER"
                                                                     : "AFTER_SEQUENCE_NUMBER"));
    sl_iter *it = calloc(1, sizeof *it);
    if (!it) return sl__ret(s, sl__err(SL_ENOMEM, "allocating an iterator"));
    it->s = s;
    it->sh = sh;
    it->touched_ms = sl__now(s);
    atomic_fetch_add(&s->children, 1);
    switch (type) {
    case SL_ITER_TRIM_HORIZON: {
        /* after what retention removed or hides */
        int64_t h = sl__horizon(s, it->touched_ms);
        it->last_seq = sl__shard_gone_seq(sh);
        if (h == INT64_MIN || h < 0) {
            rc = sl__shard_first_seg(sh, &it->seg);
            it->off = SL_SEG_HDR;
        } else {
            rc = sl__shard_seek(sh, true, (uint64_t)h + 1, &it->seg, &it->off);
        }
        break;
    }
    case SL_ITER_LATEST:
        rc = sl__shard_last_seg(sh, &it->seg);
        if (rc == 0 && it->seg) it->off = sl__seg_visible_end(it->seg);
        break;
    case SL_ITER_AT_TIMESTAMP: {
        /* older than the horizon: TRIM_HORIZON, as Kinesis */
        int64_t h = sl__horizon(s, it->touched_ms);
        it->last_seq = sl__shard_gone_seq(sh);
        if (h != INT64_MIN && (int64_t)arg <= h) arg = (uint64_t)h + 1;
        rc = sl__shard_seek(sh, true, arg, &it->seg, &it->off);
        break;
    }
    default: {
        uint64_t gone = sl__shard_gone_seq(sh);
        if (arg < gone || (arg == gone && type == SL_ITER_AT_SEQUENCE_NUMBER)) {
            char a[SL_SEQ_STR_MAX];
            rc = sl__err(SL_ETRIMMED,
                         "Sequence number %s of shard %s in stream %s was removed by "
                         "retention or the size cap; start from TRIM_HORIZON",
                         sl_seq_format(a, arg), sh->id, s->man.name);
            break;
        }
        rc = sl__shard_seek(sh, false, arg, &it->seg, &it->off);
        if (rc) break;
        sl_recview v;
        uint64_t end = it->seg ? sl__seg_visible_end(it->seg) : 0;
        if (!it->seg || it->off >= end ||
            sl__rec_parse(it->seg->base + it->off, end - it->off, true, &v) != SL_REC_OK ||
            v.seq != arg) {
            char a[SL_SEQ_STR_MAX];
            rc = sl__err(SL_EINVAL,
                         "Invalid StartingSequenceNumber. Sequence number %s is "
                         "not a record of shard %s in stream %s",
                         sl_seq_format(a, arg), sh->id, s->man.name);
            break;
        }
        it->last_seq = type == SL_ITER_AFTER_SEQUENCE_NUMBER ? v.seq : v.seq - 1;
        if (type == SL_ITER_AFTER_SEQUENCE_NUMBER) it->off += v.span;
    }
    }
    if (rc) {
        iter_free(it);
        return sl__ret(s, rc);
    }
    *out = it;
    return 0;
}

/* The iterator's next records were deleted (retention, the size cap). */
static int trimmed(sl_iter *it, const char *why)
{
    char a[SL_SEQ_STR_MAX];
    return sl__err(SL_ETRIMMED,
                   "%s: the records after sequence number %s %s; open a new iterator "
                   "(TRIM_HORIZON)",
                   it->sh->id, sl_seq_format(a, it->last_seq), why);
}

/* Move to the segment after the current (sealed, exhausted) one, if any. */
static int advance(sl_iter *it, bool *moved)
{
    sl_seg *next = NULL;
    *moved = false;
    int rc = sl__shard_get_seg(it->sh, it->seg ? it->seg->ordinal : 0, &next);
    if (rc) return rc;
    if (sl__shard_gone_seq(it->sh) > it->last_seq) {
        sl__shard_put_seg(it->sh, next);
        return trimmed(it, "were deleted by retention or the size cap");
    }
    if (!next) return 0;
    sl__shard_put_seg(it->sh, it->seg);
    it->seg = next;
    it->off = SL_SEG_HDR;
    blocks_reset(it);
    *moved = true;
    return 0;
}

static int64_t behind(sl_iter *it, uint64_t end)
{
    if (!it->seg || it->off >= end) return 0;
    sl_recview v;
    if (sl__rec_parse(it->seg->base + it->off, end - it->off, false, &v) != SL_REC_OK)
        return 0;
    int64_t d = sl__now(it->s) - v.ms;
    return d > 0 ? d : 0;
}

void sl__iter_set_consumer(sl_iter *it, sl_consumer *c) { it->consumer = c; }
sl_shard *sl__iter_shard(const sl_iter *it) { return it->sh; }
uint64_t sl__iter_last(const sl_iter *it) { return it->last_seq; }

int sl_iter_expire(sl_iter *it)
{
    if (!it) return sl__ret(NULL, sl__err(SL_EINVAL, "iterator is NULL"));
    it->expired = true;
    return 0;
}

int sl_iter_read(sl_iter *it, sl_record *recs, size_t limit, sl_read_result *res)
{
    if (!it || !recs || !res)
        return sl__ret(it, sl__err(SL_EINVAL, "iterator, recs or res is NULL"));
    res->count = 0;
    res->millis_behind_latest = 0;
    res->last_sequence = it->last_seq;
    res->retry_after_ms = 0;
    if (limit < 1 || limit > SL_GET_RECORDS_MAX)
        return sl__ret(it, sl__err(SL_EVALIDATION,
                                   "1 validation error detected: Value '%zu' at "
                                   "'limit' failed to satisfy constraint: Member "
                                   "must have value between 1 and %d",
                                   limit, SL_GET_RECORDS_MAX));
    sl_stream *s = it->s;
    int64_t now = sl__now(s);
    if (it->expired || (s->kds && now - it->touched_ms > KDS_ITER_TTL_MS)) {
        it->expired = true;
        return sl__ret(it, sl__err(SL_EEXPIRED,
                                   "Iterator expired. The iterator was created at "
                                   "time %" PRId64 " while right now it is %" PRId64
                                   " which is further in the future than the "
                                   "tolerated delay of %d milliseconds.",
                                   it->touched_ms, now, KDS_ITER_TTL_MS));
    }
    sl_ccount *cc = it->consumer ? sl__consumer_count(it->consumer, it->sh->index) : NULL;
    bool over = false;
    int rc = sl__fault_read(s);
    if (rc == 0 && s->rate_mode != SL_RATE_OFF)
        rc = sl__rl_read_begin(it->sh, now, &res->retry_after_ms, &over);
    if (cc && (over || rc == SL_ETHROTTLED))
        atomic_fetch_add_explicit(&cc->read_throttled, 1, memory_order_relaxed);
    if (rc) return sl__ret(it, rc);
    rc = sl__iter_read(it, recs, limit, SL_GET_BYTES_MAX, res);
    it->touched_ms = now;             /* a read that ran renews the iterator */
    uint64_t bytes = 0;
    for (size_t i = 0; i < res->count; i++) bytes += recs[i].key_len + recs[i].data_len;
    if (s->rate_mode != SL_RATE_OFF)
        sl__rl_read_end(it->sh, now, res->count, bytes, res->millis_behind_latest, over);
    if (cc) {
        atomic_fetch_add_explicit(&cc->reads, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&cc->records_out, res->count, memory_order_relaxed);
        atomic_fetch_add_explicit(&cc->bytes_out, bytes, memory_order_relaxed);
        atomic_store_explicit(&cc->age_ms, res->millis_behind_latest, memory_order_relaxed);
    }
    return sl__ret(it, rc);
}

int sl__iter_read(sl_iter *it, sl_record *recs, size_t limit, uint64_t max_bytes,
                  sl_read_result *res)
{
    res->count = 0;
    res->millis_behind_latest = 0;
    res->last_sequence = it->last_seq;
    /* records that arrived at or before the horizon are gone for readers;
    ** arrival times only grow along a shard, so the first record of a call
    ** is the one to look at */
    int64_t horizon = sl__horizon(it->s, sl__now(it->s));
    size_t n = 0;
    uint64_t bytes = 0, end = 0;
    int rc = 0;
    for (;;) {
        if (!it->seg) {
            bool moved;
            if ((rc = advance(it, &moved)) != 0 || !moved) break;
        }
        sl_seg *g = it->seg;
        end = sl__seg_visible_end(g);
        if (n == 0 && it->off < end && horizon != INT64_MIN) {
            sl_recview v;
            if (sl__rec_parse(g->base + it->off, end - it->off, false, &v) == SL_REC_OK &&
                v.ms <= horizon) {
                rc = trimmed(it, "expired (retention)");
                break;
            }
        }
        while (n < limit && it->off < end) {
            /* inside a block whose checksum matched: the bytes are what
            ** the writer wrote; check only what framing needs */
            while (it->off < it->ok_end && n < limit) {
                const uint8_t *q = g->base + it->off;
                uint32_t rb = sl__ld32(q), kl = sl__ld16(q + 24), dl = sl__ld32(q + 28);
                uint64_t seq = sl__ld64(q + 8), span = sl__pad8(rb);
                if (SL_UNLIKELY(rb != SL_REC_OVERHEAD + kl + dl || span > it->ok_end - it->off ||
                                seq <= it->last_seq || (n && bytes + kl + dl > max_bytes))) {
                    it->ok_end = it->off;           /* let the careful path decide */
                    break;
                }
                sl_record *o = &recs[n++];
                o->partition_key = (const char *)q + SL_REC_HDR;
                o->key_len = kl;
                o->data = q + SL_REC_HDR + kl;
                o->data_len = dl;
                o->sequence = seq;
                o->arrival_ms = (int64_t)sl__ld64(q + 16);
                bytes += kl + dl;
                it->off += span;
                it->last_seq = seq;
            }
            if (n == limit || it->off >= end) break;
            if (n && bytes >= max_bytes) goto done;
            sl_recview v;
            bool verify = need_record_check(it, g, end);
            int r = sl__rec_parse(g->base + it->off, end - it->off, verify, &v);
            if (r == SL_REC_OK && !verify && v.span > it->ok_end - it->off) r = SL_REC_BAD;
            if (r != SL_REC_OK || v.seq <= it->last_seq) {
                if (n) goto done;       /* return what we have first */
                uint64_t bad = it->off;
                it->off = sl__seg_resync(g, bad, end, it->last_seq);
                blocks_reset(it);
                rc = sl__err(SL_ECORRUPT,
                             "%s segment %016" PRIx64 " offset %" PRIu64 ": %s "
                             "after sequence number %" PRIu64 "; skipped to offset "
                             "%" PRIu64 " (records in between are lost)",
                             it->sh->id, g->ordinal, bad,
                             r == SL_REC_OK ? "sequence number out of order"
                                            : "record fails its checksum",
                             it->last_seq, it->off);
                sl__stream_report(it->s, SL_ECORRUPT, "%s", sl__errtext());
                return rc;
            }
            if (n && bytes + v.klen + v.dlen > max_bytes) goto done;
            sl_record *o = &recs[n++];
            o->partition_key = (const char *)v.key;
            o->key_len = v.klen;
            o->data = v.data;
            o->data_len = v.dlen;
            o->sequence = v.seq;
            o->arrival_ms = v.ms;
            bytes += v.klen + v.dlen;
            it->off += v.span;
            it->last_seq = v.seq;
        }
        if (n == limit || it->off < end || n) break;
        /* exhausted this segment with nothing read: move on if it is sealed */
        if (!sl__shard_refresh_sealed(it->sh, g)) break;
        end = g->data_end;
        if (it->off < end) continue;    /* the seal published more */
        bool moved;
        if ((rc = advance(it, &moved)) != 0 || !moved) break;
    }
done:
    res->count = n;
    res->last_sequence = it->last_seq;
    res->millis_behind_latest = behind(it, end);
    return rc;
}

/* Is there something to read, without moving the iterator?  (A wait must
** not invalidate the views of the previous read.) */
int sl__iter_ready(sl_iter *it)
{
    if (!it->seg) {
        bool moved;
        int rc = advance(it, &moved);   /* no views can exist yet */
        if (rc || !moved) return rc;
    }
    sl_seg *g = it->seg;
    if (it->off < sl__seg_visible_end(g)) return 1;
    if (!sl__shard_refresh_sealed(it->sh, g)) return 0;
    if (it->off < g->data_end) return 1;
    sl_seg *next = NULL;
    int rc = sl__shard_get_seg(it->sh, g->ordinal, &next);
    if (rc || !next) return rc;
    /* a new segment exists: that is news even if it is still empty, since
    ** the next read moves into it */
    sl__shard_put_seg(it->sh, next);
    return 1;
}

void sl_iter_cancel_wait(sl_iter *it)
{
    if (!it) return;
    atomic_store(&it->cancel, true);
    uint32_t *w = it->sh->wake;
    if (w && it->s->wake_writable) {
        __atomic_fetch_add(&w[0], 1, __ATOMIC_SEQ_CST);
        sl__futex_wake(&w[0]);
    }
}

int sl_iter_wait(sl_iter *it, int timeout_ms)
{
    if (!it) return sl__ret(NULL, sl__err(SL_EINVAL, "iterator is NULL"));
    int64_t deadline = timeout_ms >= 0 ? sl__monotonic_ms() + timeout_ms : INT64_MAX;
    uint32_t *w = it->sh->wake;
    bool futex = w && it->s->wake_writable;
    for (;;) {
        if (atomic_exchange(&it->cancel, false)) return 0;
        int r = sl__iter_ready(it);
        if (r) return r < 0 ? sl__ret(it, r) : 1;
        int64_t left = deadline - sl__monotonic_ms();
        if (left <= 0) return 0;
        int slice = left > (futex ? WAIT_SLICE_MS : POLL_FALLBACK_MS)
                        ? (futex ? WAIT_SLICE_MS : POLL_FALLBACK_MS)
                        : (int)left;
        if (!futex) {
            struct timespec ts = {0, (long)slice * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        __atomic_fetch_add(&w[1], 1, __ATOMIC_SEQ_CST);
        uint32_t v = __atomic_load_n(&w[0], __ATOMIC_SEQ_CST);
        r = sl__iter_ready(it);
        if (!r && !atomic_load(&it->cancel)) sl__futex_wait(&w[0], v, slice);
        /* leave, never taking the count below zero (a writer may have reset
        ** it while we slept) */
        uint32_t c = __atomic_load_n(&w[1], __ATOMIC_RELAXED);
        while (c && !__atomic_compare_exchange_n(&w[1], &c, c - 1, false,
                                                 __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
            ;
        if (r) return r < 0 ? sl__ret(it, r) : 1;
    }
}
