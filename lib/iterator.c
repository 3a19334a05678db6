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
** Cold segments (zstd blocks, see segment.c) are never read through the
** mapping: the iterator decompresses the block holding its position into
** its own buffer (the window), checks the block's checksum, and returns
** views into that buffer -- the records of one block at most per read,
** valid until the next read or close, as views into a mapping are.  A wait
** never touches the window.  A damaged block is reported with shard,
** segment and block; that read returns SL_ECORRUPT and the next one goes on
** with the following block.  Positions are offsets of the hot layout in
** both kinds, and the code branches on the kind once per read.
**
** Waiting: see the wake-up protocol in shard.c.  A follower that cannot
** write the WAKE file (read-only filesystem, other user) falls back to
** checking every 10 ms; that is the only polling in the library.
*/
#include "internal.h"

#include <openssl/crypto.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <zstd.h>

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
    /* cold segments: the window, block win_blk of win_seg decompressed into
    ** cbuf, holding the records of [win_lo, win_hi) (hot-layout offsets);
    ** win_seg NULL: none.  Reset whenever the iterator changes segment. */
    sl_seg *win_seg;
    uint64_t win_lo, win_hi;
    uint32_t win_blk;
    uint8_t *cbuf;
    size_t ccap;
    ZSTD_DCtx *dctx;                  /* made by the first cold read */
    /* encrypted records: a read emits them with partition_key NULL and
    ** data at the framed record, then decrypts them all into dbuf (the
    ** views of the read); dctx_ver: the key version cctx is set up for */
    size_t nenc;
    uint8_t *dbuf;
    size_t dcap;
    void *cctx;
    uint32_t cctx_ver;
    bool headers_only;                /* sl__iter_headers_only (metrics.c) */
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
    free(it->cbuf);
    ZSTD_freeDCtx(it->dctx);
    if (it->dbuf) OPENSSL_cleanse(it->dbuf, it->dcap);
    free(it->dbuf);
    sl__gcm_free(&it->cctx);
    free(it);
}

/* ---- cold segments ---- */

#define COLD_GAP 1

/* Make the window hold the block of cold segment g that holds `off`
** (decompressing it invalidates the views of the previous read).  0: it
** does; COLD_GAP: no block holds off (a damaged block left out of a rebuilt
** table, or past the last one), it->win_blk is the next block (or
** g->cold_nblk); SL_ECORRUPT: block it->win_blk is damaged, *why says how;
** SL_ENOMEM. */
static int cold_window(sl_iter *it, sl_seg *g, uint64_t off, const char **why)
{
    if (it->win_seg == g && off >= it->win_lo && off < it->win_hi) return 0;
    uint32_t k;
    if (it->win_seg == g && it->win_blk + 1 < g->cold_nblk &&
        sl__seg_cold_block(g, it->win_blk + 1).raw_off == off)
        k = it->win_blk + 1;                        /* the next block: no search */
    else
        k = sl__seg_cold_find(g, off);
    it->win_seg = NULL;
    it->win_blk = k;
    if (k >= g->cold_nblk) return COLD_GAP;
    sl_cblk b = sl__seg_cold_block(g, k);
    if (b.raw_off > off) return COLD_GAP;
    /* a buffer grown for a large record is given back at the next block */
    if (b.raw_len > it->ccap || (it->ccap > 4 * SL_COLD_BLOCK_RAW && b.raw_len <= SL_COLD_BLOCK_RAW)) {
        size_t cap = b.raw_len > SL_COLD_BLOCK_RAW ? b.raw_len : SL_COLD_BLOCK_RAW;
        free(it->cbuf);
        it->ccap = 0;
        if (!(it->cbuf = malloc(cap)))
            return sl__err(SL_ENOMEM, "%s: a buffer for a cold block", it->sh->id);
        it->ccap = cap;
    }
    if (!it->dctx && !(it->dctx = ZSTD_createDCtx()))
        return sl__err(SL_ENOMEM, "%s: a zstd context", it->sh->id);
    int rc = sl__seg_cold_decode(g, k, it->dctx, it->cbuf, why);
    if (rc) return rc;
    it->win_seg = g;
    it->win_lo = b.raw_off;
    it->win_hi = b.raw_off + b.raw_len;
    return 0;
}

/* The record bytes at it->off of the current segment and how many bytes
** remain before `end` (in the window, for a cold segment: NULL if the
** window does not hold it->off). */
static const uint8_t *rec_at(sl_iter *it, uint64_t end, uint64_t *avail)
{
    sl_seg *g = it->seg;
    if (!g->cold) {
        *avail = end - it->off;
        return g->base + it->off;
    }
    if (it->win_seg != g || it->off < it->win_lo || it->off >= it->win_hi) return NULL;
    *avail = (it->win_hi < end ? it->win_hi : end) - it->off;
    return it->cbuf + (it->off - it->win_lo);
}

/* After a seek into a cold segment: load the block and make sure it->off is
** the first record with a key >= target (sl__seg_seek already put it there
** unless it could not decompress the block).  Damage is left for the
** read to report. */
static int cold_settle(sl_iter *it, bool by_ms, uint64_t target)
{
    sl_seg *g = it->seg;
    if (!g || !g->cold) return 0;
    uint64_t end = sl__seg_visible_end(g), avail;
    const char *why;
    if (it->off >= end) return 0;
    int rc = cold_window(it, g, it->off, &why);
    if (rc) return rc == SL_ENOMEM ? rc : 0;
    const uint8_t *p;
    while ((p = rec_at(it, end, &avail)) != NULL) {
        sl_recview v;
        if (sl__rec_parse(p, avail, false, &v) != SL_REC_OK) break;
        if (by_ms ? v.ms >= (int64_t)target : v.seq >= target) break;
        it->off += v.span;
    }
    return 0;
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

/* After a seek by sequence number that found no record with that number:
** could key compaction have removed it?  Only on a compacting stream, and
** only from sealed segments: the seek landed in a sealed one, or at the
** first record of the unsealed one with sealed ones before it.  (Such a
** number cannot be told from a number that never was a record there.) */
static bool compacted_gap(sl_iter *it)
{
    if (atomic_load(&it->s->compaction) != SL_COMPACTION_KEY || !it->seg) return false;
    if (sl__seg_is_sealed(it->seg)) return true;
    if (it->off != SL_SEG_HDR) return false;
    sl_seg *first = NULL;
    if (sl__shard_first_seg(it->sh, &first) != 0 || !first) return false;
    bool after_sealed = first->ordinal < it->seg->ordinal;
    sl__shard_put_seg(it->sh, first);
    return after_sealed;
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
            if (rc == 0) rc = cold_settle(it, true, (uint64_t)h + 1);
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
        if (rc == 0) rc = cold_settle(it, true, arg);
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
        if (rc == 0) rc = cold_settle(it, false, arg);
        if (rc) break;
        sl_recview v;
        uint64_t end = it->seg ? sl__seg_visible_end(it->seg) : 0, avail = 0;
        const uint8_t *p = it->seg && it->off < end ? rec_at(it, end, &avail) : NULL;
        bool ok = p && sl__rec_parse(p, avail, true, &v) == SL_REC_OK;
        if ((ok ? v.seq > arg : it->seg && it->off >= end) && compacted_gap(it)) {
            /* key compaction removed that record: the position stays, just
            ** before the next record (a consumer may have checkpointed it) */
            it->last_seq = type == SL_ITER_AFTER_SEQUENCE_NUMBER ? arg : arg - 1;
            break;
        }
        if (!ok || v.seq != arg) {
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
    it->win_seg = NULL;
    blocks_reset(it);
    *moved = true;
    return 0;
}

/* Never loads a block: the views of the read just made point into it. */
static int64_t behind(sl_iter *it, uint64_t end)
{
    if (!it->seg || it->off >= end) return 0;
    sl_recview v;
    uint64_t avail;
    const uint8_t *p = rec_at(it, end, &avail);
    if (p) {
        if (sl__rec_parse(p, avail, false, &v) != SL_REC_OK) return 0;
    } else {
        /* a cold segment, past the window: the next block's first record
        ** (the table has its time) */
        sl_seg *g = it->seg;
        uint32_t k = sl__seg_cold_find(g, it->off);
        if (k >= g->cold_nblk) return 0;
        sl_cblk b = sl__seg_cold_block(g, k);
        if (b.raw_off != it->off) return 0;
        v.ms = b.first_ms;
    }
    int64_t d;                          /* v is unverified: any time */
    if (__builtin_sub_overflow(sl__now(it->s), v.ms, &d)) d = v.ms < 0 ? INT64_MAX : 0;
    return d > 0 ? d : 0;
}

static int dbuf_reserve(sl_iter *it, size_t need)
{
    if (need <= it->dcap) return 0;
    size_t cap = need > 2 * it->dcap ? need : 2 * it->dcap;
    uint8_t *b = malloc(cap);
    if (!b) return sl__err(SL_ENOMEM, "decrypting %zu bytes", need);
    if (it->dbuf) OPENSSL_cleanse(it->dbuf, it->dcap);
    free(it->dbuf);
    it->dbuf = b;
    it->dcap = cap;
    return 0;
}

/* May the arrival time of record v (at q) decide that the read is past
** the retention horizon?  An encrypted record's time is authenticated only
** by its tag: check it first (a forged time must be reported as damage by
** the read, not taken for expiry).  Without its key, it is taken. */
static bool time_trusted(sl_iter *it, const uint8_t *q, const sl_recview *v)
{
    if (!v->flags) return true;
    if (dbuf_reserve(it, (size_t)v->klen + v->dlen) != 0) return false;
    int r = sl__rec_decrypt(it->s, it->sh->index, q, v, &it->cctx, &it->cctx_ver, it->dbuf);
    return r != SL_ECORRUPT;
}

/* Fill a record view from the framed record q (flags fl checked by the
** caller); an encrypted one is decrypted at the end of the read. */
static inline void emit(sl_iter *it, sl_record *o, const uint8_t *q, uint32_t fl, uint32_t kl,
                        uint32_t dl, uint64_t seq, int64_t ms)
{
    if (SL_UNLIKELY(fl)) {
        o->partition_key = NULL;
        o->data = q;
        it->nenc++;
    } else {
        o->partition_key = (const char *)q + SL_REC_HDR;
        o->data = q + SL_REC_HDR + kl;
    }
    o->key_len = kl;
    o->data_len = dl;
    o->sequence = seq;
    o->arrival_ms = ms;
}

/* A read in a cold segment, from the first record of the call: the records
** of the block holding it->off, up to limit and max_bytes. */
static int cold_read(sl_iter *it, sl_seg *g, uint64_t end, int64_t horizon, sl_record *recs,
                     size_t limit, uint64_t max_bytes, size_t *np)
{
    size_t n = 0;
    uint64_t bytes = 0;
    const char *why = NULL;
    *np = 0;
    if (it->off >= end) return 0;
    int rc = cold_window(it, g, it->off, &why);
    if (rc == SL_ENOMEM) return rc;
    if (rc == 0) {
        uint64_t lim = it->win_hi < end ? it->win_hi : end;
        const uint8_t *q = it->cbuf + (it->off - it->win_lo);
        sl_recview v;
        if (horizon != INT64_MIN &&
            sl__rec_parse(q, lim - it->off, false, &v) == SL_REC_OK && v.ms <= horizon &&
            time_trusted(it, q, &v))
            return trimmed(it, "expired (retention)");
        /* the block's checksum matched: check only what framing needs, as
        ** in a verified hot block */
        while (n < limit && it->off < lim) {
            q = it->cbuf + (it->off - it->win_lo);
            uint64_t room = lim - it->off;
            if (SL_UNLIKELY(room < SL_REC_OVERHEAD)) {
                why = "a record cut by the block's end";
                break;
            }
            uint32_t rb = sl__ld32(q), fl = sl__ld32(q + 4), kl = sl__ld16(q + 24),
                     dl = sl__ld32(q + 28);
            uint64_t seq = sl__ld64(q + 8), span = sl__pad8(rb);
            if (SL_UNLIKELY(fl > SL_REC_ENC || rb != sl__rec_bytes(fl, kl, dl) || span > room)) {
                why = "a record's framing is wrong";
                break;
            }
            if (SL_UNLIKELY(seq <= it->last_seq)) {
                why = "sequence number out of order";
                break;
            }
            if (n && bytes + kl + dl > max_bytes) break;
            emit(it, &recs[n++], q, fl, kl, dl, seq, (int64_t)sl__ld64(q + 16));
            bytes += kl + dl;
            it->off += span;
            it->last_seq = seq;
        }
        *np = n;
        if (!why || n) return 0;        /* what we have first */
    }
    /* damage: go on with the next block */
    uint64_t bad = it->off, next;
    uint32_t k = it->win_blk;
    it->win_seg = NULL;
    if (rc == COLD_GAP) {
        why = "block missing (damaged: left out of the rebuilt table)";
        next = k < g->cold_nblk ? sl__seg_cold_block(g, k).raw_off : end;
    } else {
        sl_cblk b = sl__seg_cold_block(g, k);
        next = b.raw_off + b.raw_len;
    }
    it->off = next < end ? next : end;
    rc = sl__err(SL_ECORRUPT,
                 "%s segment %016" PRIx64 " (cold) block %" PRIu32 " at offset %" PRIu64
                 ": %s after sequence number %" PRIu64 "; skipped to offset %" PRIu64
                 " (records in between are lost)",
                 it->sh->id, g->ordinal, k, bad, why, it->last_seq, it->off);
    sl__stream_report(it->s, SL_ECORRUPT, "%s", sl__errtext());
    return rc;
}

void sl__iter_set_consumer(sl_iter *it, sl_consumer *c) { it->consumer = c; }
/* For metrics.c: reads that leave encrypted records undecrypted, and the
** position (to tell damage skipped from damage that stops a read) */
void sl__iter_headers_only(sl_iter *it) { it->headers_only = true; }
uint64_t sl__iter_pos(const sl_iter *it, uint64_t *off)
{
    *off = it->off;
    return it->seg ? it->seg->ordinal : 0;
}
sl_shard *sl__iter_shard(const sl_iter *it) { return it->sh; }
uint64_t sl__iter_last(const sl_iter *it) { return it->last_seq; }

/* A closed shard read to its end: say so, and name its children. */
static void shard_end(sl_iter *it, sl_read_result *res)
{
    sl_stream *s = it->s;
    res->shard_end = 1;
    size_t ns = atomic_load_explicit(&s->nshards, memory_order_acquire);
    for (size_t i = 0; i < ns && res->child_count < 2; i++) {
        const sl_shard *c = s->shards[i];
        if (c->parent == it->sh->index || c->adjacent == it->sh->index)
            memcpy(res->child_shard_ids[res->child_count++], c->id, sizeof c->id);
    }
}

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
    res->shard_end = 0;
    res->child_count = 0;
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
    if (rc == 0 && res->count == 0 && s->readonly) sl__stream_refresh(s);
    if (rc == 0 && res->count == 0 && !atomic_load(&it->sh->open) && sl__iter_ready(it) == 0)
        shard_end(it, res);
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

/* The hot-layout offset of a framed record a read emitted. */
static uint64_t rec_offset(const sl_iter *it, const uint8_t *q)
{
    const sl_seg *g = it->seg;
    return g->cold ? it->win_lo + (uint64_t)(q - it->cbuf) : (uint64_t)(q - g->base);
}

/* The end of a read that emitted encrypted records: decrypt them into dbuf.
** A record that cannot be decrypted ends the read before it (the records
** before it are returned, and the iterator moves back to it); met first,
** it is the call's error: SL_ECORRUPT (its tag fails: it is skipped and
** reported, as damage) or SL_EKEY (no key for it here: the iterator stays
** on it). */
static int decrypt_read(sl_iter *it, sl_record *recs, size_t *np, uint64_t last0)
{
    size_t n = *np, need = 0;
    for (size_t i = 0; i < n; i++)
        if (!recs[i].partition_key) need += recs[i].key_len + recs[i].data_len;
    int rc = dbuf_reserve(it, need);
    if (rc) return rc;
    uint8_t *out = it->dbuf;
    for (size_t i = 0; i < n; i++) {
        sl_record *o = &recs[i];
        if (o->partition_key) continue;
        const uint8_t *q = o->data;
        sl_recview v;
        v.key = q + SL_REC_ENC_HDR;
        v.klen = (uint32_t)o->key_len;
        v.dlen = (uint32_t)o->data_len;
        int r = sl__rec_decrypt(it->s, it->sh->index, q, &v, &it->cctx, &it->cctx_ver, out);
        if (r == 0) {
            o->partition_key = (const char *)out;
            o->data = out + o->key_len;
            out += o->key_len + o->data_len;
            continue;
        }
        uint64_t off = rec_offset(it, q);
        *np = i;
        if (i) {                         /* what we have first */
            it->off = off;
            it->last_seq = recs[i - 1].sequence;
            return 0;
        }
        if (r == SL_EKEY) {
            it->off = off;
            it->last_seq = last0;
            return sl__err(SL_EKEY, "%s segment %016" PRIx64 " offset %" PRIu64 ": record %"
                           PRIu64 " is encrypted under data key %" PRIu32 ", which this handle "
                           "does not hold (open the stream with its key provider)",
                           it->sh->id, it->seg->ordinal, off, o->sequence, sl__ld32(q + 32));
        }
        it->off = off + sl__pad8(sl__ld32(q));
        it->last_seq = o->sequence;
        r = sl__err(SL_ECORRUPT, "%s segment %016" PRIx64 " offset %" PRIu64 ": record %" PRIu64
                    " fails authentication (AES-GCM tag or key version); skipped",
                    it->sh->id, it->seg->ordinal, off, o->sequence);
        sl__stream_report(it->s, SL_ECORRUPT, "%s", sl__errtext());
        return r;
    }
    return 0;
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
    uint64_t bytes = 0, end = 0, last0 = it->last_seq;
    int rc = 0;
    it->nenc = 0;
    for (;;) {
        if (!it->seg) {
            bool moved;
            if ((rc = advance(it, &moved)) != 0 || !moved) break;
        }
        sl_seg *g = it->seg;
        end = sl__seg_visible_end(g);
        if (SL_UNLIKELY(g->cold)) {     /* always n == 0 here */
            rc = cold_read(it, g, end, horizon, recs, limit, max_bytes, &n);
            if (rc || n || it->off < end) break;
            bool moved;
            if ((rc = advance(it, &moved)) != 0 || !moved) break;
            continue;
        }
        if (n == 0 && it->off < end && horizon != INT64_MIN) {
            /* a damaged record's time is not trusted: the careful path
            ** below reports it */
            sl_recview v;
            if (sl__rec_parse(g->base + it->off, end - it->off, need_record_check(it, g, end),
                              &v) == SL_REC_OK &&
                v.ms <= horizon && time_trusted(it, g->base + it->off, &v)) {
                rc = trimmed(it, "expired (retention)");
                break;
            }
        }
        while (n < limit && it->off < end) {
            /* inside a block whose checksum matched: the bytes are what
            ** the writer wrote; check only what framing needs */
            while (it->off < it->ok_end && n < limit) {
                const uint8_t *q = g->base + it->off;
                uint32_t rb = sl__ld32(q), fl = sl__ld32(q + 4), kl = sl__ld16(q + 24),
                         dl = sl__ld32(q + 28);
                uint64_t seq = sl__ld64(q + 8), span = sl__pad8(rb);
                if (SL_UNLIKELY(fl > SL_REC_ENC || rb != sl__rec_bytes(fl, kl, dl) ||
                                span > it->ok_end - it->off || seq <= it->last_seq ||
                                (n && bytes + kl + dl > max_bytes))) {
                    it->ok_end = it->off;           /* let the careful path decide */
                    break;
                }
                emit(it, &recs[n++], q, fl, kl, dl, seq, (int64_t)sl__ld64(q + 16));
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
            emit(it, &recs[n++], g->base + it->off, v.flags, v.klen, v.dlen, v.seq, v.ms);
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
    if (SL_UNLIKELY(it->nenc) && n && !it->headers_only) rc = decrypt_read(it, recs, &n, last0);
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
        /* the end of a closed shard is news too: the next read says so */
        if (it->s->readonly) sl__stream_refresh(it->s);
        if (!atomic_load(&it->sh->open)) return 1;
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
