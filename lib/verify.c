/*
** verify.c -- sl_stream_verify: check every segment file of every shard.
**
** Reads only.  The segments are walked oldest first through the shard's
** list (sl__shard_get_seg pins and maps one at a time), so a follower can
** verify while a writer in another process appends, rolls over, seals,
** deletes or rewrites segments cold: a pinned segment's mapping stays valid
** whatever happens to its file.  The checks read the bytes of the mapping
** themselves (the format is the comment at the top of segment.c); they do
** not trust the summaries the library keeps in memory.
**
** WHAT IS DAMAGE.  Bytes that the committed state says are records (or
** index entries, block checksums, trailers, block tables, frames) and that
** do not verify.  The committed state of a segment is
**   - sealed (header state SEALED, or a trailer that checks out): the
**     trailer; its data_end, index_count, counts and checksums must agree
**     with the records.  A damaged trailer is damage; the records are then
**     checked up to the header's commit_tail (stored at the seal).
**   - active, with a live writer (ours, or a follower's that holds the
**     lock): commit_tail and index_count as loaded at the start (acquire);
**     nothing past them is read, so appends meanwhile are never seen.
**   - active, its writer dead: the tail that writer promised: commit_tail
**     if the header's boot id is this boot's (the page cache held every
**     committed byte), else synced_tail (only synced bytes survive a power
**     cut; records after it were never promised).  Records below that tail
**     that are missing, zero, or do not verify are damage.  Past it, records
**     are taken as far as they verify, as recovery and readers take them:
**     a zero slot, or bad bytes that no valid record follows (a torn
**     append), end them and are not damage; a bad run that valid records
**     follow is.
** A file shorter than its header's file_bytes is damage (truncated): the
** committed records past the cut, the index and the trailer are lost.
**
** Every record verifies its own checksum; sequence numbers rise strictly
** through a shard (across its segments), arrival times do not fall within a
** segment.  An encrypted record is authenticated (its GCM tag) when the
** handle has its data key; without a key provider it is counted in
** encrypted_unchecked (its checksum still verified).
**
** Damage is counted once per place: a run of bad records up to where valid
** records resume (the resync of readers: sl__seg_resync), one record that
** fails its authentication tag, one index entry, one block checksum that
** fails while every record of its block verifies, one trailer, one header,
** one cold block.  Consequences of a place already counted are not counted
** again (the block checksum over a bad record, the index checksum over a
** bad entry, the trailer's counts when records were lost).
**
** A segment that the library dropped from the list (a damaged header: a
** reader skips it, a writer renames it *.corrupt when it first loads it) or
** cannot load (an unknown version or flags) is still in the directory
** listing made at the start: it is checked from a read-only mapping of its
** own, and its header reported.  Other names in the shard directory
** (*.corrupt, *.tmp, *.spare, *.rw) are leftovers, not damage, and skipped
** silently.  On a writer handle, the segments the handle has not loaded yet
** (older, sealed ones: stubs) are checked that way too, because loading one
** is the writer's recovery (it quarantines a damaged header, rebuilds and
** rewrites a damaged trailer and index): verifying changes nothing, on any
** handle.  (Damage that recovery at open already repaired -- the newest
** segment's, a dead writer's -- was reported through the stream's report
** callback then, and is no longer in the files.)
**
** segments_total is the listing made at the start; a segment deleted before
** the walk reaches it (retention, the size cap) leaves it, so that
** segments == segments_total at the end of a walk that was not stopped.
*/
#include "internal.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

/* Format constants (the format comment at the top of segment.c). */
#define V_SEG_MAGIC 0x47534C53u
#define V_TRL_MAGIC 0x54464C53u
#define V_COLD_MAGIC 0x43464C53u
#define V_FLAG_COLD 0x1u
#define V_COLD_ENTRY 48u
#define V_COLD_RAW_MAX (32u << 20)

#define V_WHY 256
#define V_MSG 1024

typedef struct vctx {
    sl_stream *s;
    sl_verify_fn fn;
    void *ctx;
    sl_verify_stats st;
    bool stop;                        /* fn returned non-zero */
    int err;                          /* a hard error (its text in sl__err) */
    uint64_t bad_segs;                /* segments with damage */
    char first[V_MSG];                /* the first damage message */
    void *gcm;                        /* EVP context, cached across tags */
    uint32_t gcm_ver;
    uint8_t *pbuf;                    /* plaintext scratch (cleansed) */
    size_t pcap;
    ZSTD_DCtx *dctx;
    uint8_t *cbuf;                    /* one cold block */
    size_t ccap;
} vctx;

/* One segment being checked. */
typedef struct vseg {
    vctx *v;
    sl_shard *sh;
    sl_seg *g;                        /* pinned, or a stand-in (sl__seg_resync) */
    const char *path;
    const char *note;                 /* appended to the header's report */
    uint64_t ordinal;
    const uint8_t *base;
    uint64_t size;                    /* bytes mapped: the file's size */
    uint64_t fb;                      /* the header's file_bytes */
    uint64_t damage;                  /* places found in this segment */
    uint64_t rec_damage;              /* of them, records or blocks lost */
    /* the walk */
    uint64_t prev_seq;                /* the shard's last record so far */
    int64_t prev_ms;
    uint64_t count, payload, first_seq, last_seq;
    int64_t first_ms, last_ms;
} vseg;

static bool halted(const vctx *v) { return v->stop || v->err; }

static void damage(vseg *vs, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void damage(vseg *vs, uint64_t off, const char *fmt, ...)
{
    vctx *v = vs->v;
    if (halted(v)) return;
    char what[V_MSG / 2], msg[V_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(msg, sizeof msg, "%s segment %016" PRIx64 " (%s) offset %" PRIu64 ": %s",
             vs->sh->id, vs->ordinal, vs->path, off, what);
    v->st.damaged++;
    if (vs->damage++ == 0) v->bad_segs++;
    if (!v->first[0]) snprintf(v->first, sizeof v->first, "%s", msg);
    if (v->fn && v->fn(v->ctx, &v->st, msg) != 0) v->stop = true;
}

/* ---- records ------------------------------------------------------------ */

enum { REC_GOOD, REC_END, REC_BAD };

/* The record at p (avail bytes to the end of its region) as the next one of
** the walk: framing, checksum, order after vs->prev_*.  *why on failure. */
static int rec_next(const vseg *vs, const uint8_t *p, uint64_t avail, sl_recview *r,
                    char *why, size_t wl)
{
    int pr = sl__rec_parse(p, avail, true, r);
    if (pr == SL_REC_END) {
        snprintf(why, wl, "zero bytes where a record should be");
        return REC_END;
    }
    if (pr != SL_REC_OK) {
        sl_recview h;
        if (sl__rec_parse(p, avail, false, &h) == SL_REC_OK) {
            snprintf(why, wl, "record checksum mismatch (sequence number %" PRIu64 ")", h.seq);
        } else if (avail < SL_REC_OVERHEAD) {
            snprintf(why, wl, "%" PRIu64 " stray bytes at the end of the records", avail);
        } else {
            uint32_t rb = sl__ld32(p), fl = sl__ld32(p + 4), kl = sl__ld16(p + 24);
            uint32_t dl = sl__ld32(p + 28);
            if ((fl & ~SL_REC_ENC) == 0 && sl__ld16(p + 26) == 0 && kl >= 1 &&
                kl <= SL_KEY_BYTES_MAX && rb == sl__rec_bytes(fl, kl, dl))
                snprintf(why, wl, "a record of %" PRIu32 " bytes runs past the end of the "
                         "records (%" PRIu64 " bytes left)", rb, avail);
            else
                snprintf(why, wl, "inconsistent record header (rec_bytes %" PRIu32 ", flags "
                         "0x%" PRIx32 ", key_len %" PRIu32 ", data_len %" PRIu32 ")",
                         rb, fl, kl, dl);
        }
        return REC_BAD;
    }
    if (r->seq <= vs->prev_seq) {
        snprintf(why, wl, "sequence number %" PRIu64 " is not above the previous record's %"
                 PRIu64, r->seq, vs->prev_seq);
        return REC_BAD;
    }
    if (r->ms < vs->prev_ms) {
        snprintf(why, wl, "arrival time %" PRId64 " is before the previous record's %" PRId64,
                 r->ms, vs->prev_ms);
        return REC_BAD;
    }
    return REC_GOOD;
}

/* A good record: count it and move the order checks on. */
static void rec_take(vseg *vs, const sl_recview *r)
{
    if (vs->count++ == 0) {
        vs->first_seq = r->seq;
        vs->first_ms = r->ms;
    }
    vs->last_seq = r->seq;
    vs->last_ms = r->ms;
    vs->payload += (uint64_t)r->klen + r->dlen;
    vs->prev_seq = r->seq;
    vs->prev_ms = r->ms;
    vs->v->st.records++;
}

/* An encrypted record's tag: 0 good or not checkable (counted), 1 damaged
** (*why set), negative: a hard error. */
static int rec_auth(vseg *vs, const uint8_t *rec, const sl_recview *r, char *why, size_t wl)
{
    if (!(r->flags & SL_REC_ENC)) return 0;
    vctx *v = vs->v;
    size_t n = (size_t)r->klen + r->dlen;
    if (n > v->pcap) {
        size_t cap = n > 65536 ? n : 65536;
        uint8_t *b = malloc(cap);
        if (!b) return v->err = sl__err(SL_ENOMEM, "verifying: a buffer of %zu bytes", cap);
        if (v->pbuf) OPENSSL_cleanse(v->pbuf, v->pcap);
        free(v->pbuf);
        v->pbuf = b;
        v->pcap = cap;
    }
    int rc = sl__rec_decrypt(v->s, vs->sh->index, rec, r, &v->gcm, &v->gcm_ver, v->pbuf);
    if (rc == 0) return 0;
    if (rc == SL_EKEY) {
        v->st.encrypted_unchecked++;
        return 0;
    }
    snprintf(why, wl, "encrypted record (sequence number %" PRIu64 ", key version %" PRIu32
             ") fails authentication: %s", r->seq, sl__ld32(rec + 32),
             sl__key_get(v->s, sl__ld32(rec + 32)) ? "its GCM tag does not match"
                                                  : "its data key was never made");
    return 1;
}

/* ---- headers ------------------------------------------------------------ */

/* The immutable header (bytes 0..63): one report listing what is wrong, at
** the offset of the first bad field (56, the checksum, if only it fails). */
static void check_header(vseg *vs, bool cold)
{
    const uint8_t *h = vs->base;
    char why[V_WHY * 2] = "";
    size_t n = 0;
    uint64_t first = UINT64_MAX;
#define HBAD(o, ...)                                                              \
    do {                                                                          \
        if ((uint64_t)(o) < first) first = (o);                                   \
        if (n < sizeof why)                                                       \
            n += (size_t)snprintf(why + n, sizeof why - n, "%s", n ? "; " : "");  \
        if (n < sizeof why) n += (size_t)snprintf(why + n, sizeof why - n, __VA_ARGS__); \
    } while (0)
    uint64_t sum = sl__xxh3(h, 56), fb = sl__ld64(h + 24);
    uint32_t flags = sl__ld32(h + 12);
    if (sl__ld32(h) != V_SEG_MAGIC) HBAD(0, "bad magic 0x%08" PRIx32, sl__ld32(h));
    if (sl__ld16(h + 4) != 1) HBAD(4, "format version %u (this library reads 1)", sl__ld16(h + 4));
    if (sl__ld16(h + 6) != SL_SEG_HDR) HBAD(6, "header_bytes %u", sl__ld16(h + 6));
    if (sl__ld32(h + 8) != vs->sh->index)
        HBAD(8, "shard index %" PRIu32 " is not %" PRIu32, sl__ld32(h + 8), vs->sh->index);
    if (flags != (cold ? V_FLAG_COLD : 0))
        HBAD(12, "flags 0x%" PRIx32 " (a %s segment has 0x%x)", flags, cold ? "cold" : "hot",
             cold ? V_FLAG_COLD : 0);
    if (sl__ld64(h + 16) != vs->ordinal)
        HBAD(16, "ordinal %" PRIu64 " is not the file name's", sl__ld64(h + 16));
    if (cold ? fb != vs->fb
             : fb != vs->fb || fb % 4096 || fb < SL_SEG_HDR + SL_SEG_TRAILER + 4096)
        HBAD(24, "file_bytes %" PRIu64 " (the file has %" PRIu64 ")", fb, vs->size);
    if (sl__ld64(h + 40) != vs->v->s->man.stream_id)
        HBAD(40, "stream id %016" PRIx64 " is not this stream's %016" PRIx64, sl__ld64(h + 40),
             vs->v->s->man.stream_id);
    if (sl__ld64(h + 48) != 0) HBAD(48, "reserved bytes 48..55 not zero");
    if (sl__ld64(h + 56) != sum)
        HBAD(56, "checksum mismatch (XXH3 of bytes 0..55 is %016" PRIx64 ", stored %016" PRIx64
             ")", sum, sl__ld64(h + 56));
#undef HBAD
    if (first != UINT64_MAX) damage(vs, first, "header: %s%s", why, vs->note ? vs->note : "");
}

/* ---- hot segments: the index -------------------------------------------- */

typedef struct hidx {
    uint32_t n, k;                    /* entries to check; the next one */
    uint64_t low;                     /* lowest byte of the index area */
    int64_t cur;                      /* the entry opening the current block,
                                         -1 if unknown */
    bool cur_dmg;                     /* damage inside the current block */
    bool any_bad;                     /* an entry or block sum was reported */
} hidx;

static inline uint64_t slot_off(uint64_t fb, uint32_t i)
{
    return fb - SL_SEG_TRAILER - (uint64_t)SL_IDX_ENTRY * (i + 1);
}

static sl_idx idx_get(const vseg *vs, uint32_t i)
{
    const uint8_t *e = vs->base + slot_off(vs->fb, i);
    return (sl_idx){sl__ld64(e), (int64_t)sl__ld64(e + 8), sl__ld64(e + 16), sl__ld64(e + 24)};
}

static void idx_bad(vseg *vs, hidx *x, uint32_t k, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void idx_bad(vseg *vs, hidx *x, uint32_t k, const char *fmt, ...)
{
    char why[V_WHY];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    x->any_bad = true;
    damage(vs, slot_off(vs->fb, k), "index entry %" PRIu32 ": %s", k, why);
}

/* The block of entry i ends at `to`: its checksum, if it has one. */
static void block_check(vseg *vs, hidx *x, uint32_t i, uint64_t to)
{
    sl_idx e = idx_get(vs, i);
    if (!e.sum || to <= e.off) return;
    uint64_t got = sl__xxh3(vs->base + e.off, (size_t)(to - e.off));
    if (got == e.sum) return;
    x->any_bad = true;
    damage(vs, e.off, "the records at offset %" PRIu64 "..%" PRIu64 " fail the block checksum "
           "of index entry %" PRIu32 " (file offset %" PRIu64 "): stored %016" PRIx64
           ", computed %016" PRIx64 ", though each record verifies",
           e.off, to, i, slot_off(vs->fb, i), e.sum, got);
}

static bool off_possible(const hidx *x, uint64_t off)
{
    return off >= SL_SEG_HDR && off % 8 == 0 && off < x->low;
}

static const char *off_impossible(const hidx *x, uint64_t off)
{
    return off < SL_SEG_HDR ? "is inside the header"
           : off % 8        ? "is not a multiple of 8"
           : off >= x->low  ? "is not below the index"
                            : "";
}

/* A good record at off: the entries up to it. */
static void idx_record(vseg *vs, hidx *x, uint64_t off, const sl_recview *r, uint64_t last_good)
{
    while (x->k < x->n && !halted(vs->v)) {
        uint32_t k = x->k;
        sl_idx e = idx_get(vs, k);
        if (!off_possible(x, e.off)) {
            idx_bad(vs, x, k, "offset %" PRIu64 " %s", e.off, off_impossible(x, e.off));
        } else if (e.off < off) {
            idx_bad(vs, x, k, "offset %" PRIu64 " starts no record (the record at %" PRIu64
                    " spans it)", e.off, last_good);
        } else if (e.off > off) {
            /* out of order, if dropping it (not the next one) restores order */
            if (k + 1 < x->n) {
                sl_idx f = idx_get(vs, k + 1);
                uint64_t before = k ? idx_get(vs, k - 1).off : 0;
                if (off_possible(x, f.off) && f.off <= off && before < f.off) {
                    idx_bad(vs, x, k, "offset %" PRIu64 " is out of order (entry %" PRIu32
                            " has %" PRIu64 ")", e.off, k + 1, f.off);
                    x->k++;
                    x->cur = -1;
                    continue;
                }
            }
            return;
        } else {
            if (e.seq != r->seq || e.ms != r->ms)
                idx_bad(vs, x, k, "says sequence number %" PRIu64 " time %" PRId64 "; the "
                        "record at offset %" PRIu64 " has %" PRIu64 " time %" PRId64,
                        e.seq, e.ms, off, r->seq, r->ms);
            /* the boundary is right either way */
            if (x->cur >= 0 && !x->cur_dmg) block_check(vs, x, (uint32_t)x->cur, off);
            x->cur = k;
            x->cur_dmg = false;
            x->k++;
            return;
        }
        x->k++;
        x->cur = -1;
    }
}

/* A damaged run [a, b): entries inside it go with it. */
static void idx_damage(vseg *vs, hidx *x, uint64_t a, uint64_t b, uint64_t last_good)
{
    while (x->k < x->n && !halted(vs->v)) {
        sl_idx e = idx_get(vs, x->k);
        if (e.off >= b) break;
        if (!off_possible(x, e.off))
            idx_bad(vs, x, x->k, "offset %" PRIu64 " %s", e.off, off_impossible(x, e.off));
        else if (e.off < a)
            idx_bad(vs, x, x->k, "offset %" PRIu64 " starts no record (the record at %" PRIu64
                    " spans it)", e.off, last_good);
        x->k++;
        x->cur = -1;
    }
    x->cur_dmg = true;
}

/* ---- hot segments ------------------------------------------------------- */

typedef struct hplan {
    uint64_t end;                     /* where the committed records end */
    uint32_t nidx;                    /* index entries that go with them */
    bool trl_ok;                      /* sealed, the trailer checks out */
    bool sealed;                      /* the last block has its checksum */
    bool soft;                        /* a dead writer's: after `end`, records
                                         go on as far as they verify, as its
                                         recovery and readers take them (a
                                         zero slot or a torn tail ends them;
                                         damage is a bad run that valid
                                         records follow) */
} hplan;

/* Magic, checksum and ranges of the hot trailer at t.  false: *why. */
static bool trl_check(const vseg *vs, const uint8_t *t, char *why, size_t wl)
{
    if (sl__ld32(t) != V_TRL_MAGIC) {
        snprintf(why, wl, "bad magic 0x%08" PRIx32, sl__ld32(t));
        return false;
    }
    uint64_t sum = sl__xxh3(t, 120);
    if (sl__ld64(t + 120) != sum) {
        snprintf(why, wl, "checksum mismatch (XXH3 of its bytes 0..119 is %016" PRIx64
                 ", stored %016" PRIx64 ")", sum, sl__ld64(t + 120));
        return false;
    }
    uint32_t n = sl__ld32(t + 4);
    uint64_t end = sl__ld64(t + 48), count = sl__ld64(t + 8);
    uint64_t maxn = (vs->fb - SL_SEG_HDR - SL_SEG_TRAILER) / SL_IDX_ENTRY;
    if (end < SL_SEG_HDR || end % 8 || n > maxn ||
        end > vs->fb - SL_SEG_TRAILER - (uint64_t)SL_IDX_ENTRY * n ||
        (count == 0) != (end == SL_SEG_HDR) || (count > 0 && n == 0)) {
        snprintf(why, wl, "fields out of range (data_end %" PRIu64 ", index_count %" PRIu32
                 ", record_count %" PRIu64 ")", end, n, count);
        return false;
    }
    return true;
}

/* An index count as stored, capped to what the file can hold. */
static uint32_t idx_cap(const vseg *vs, uint64_t n)
{
    uint64_t maxn = (vs->fb - SL_SEG_HDR - SL_SEG_TRAILER) / SL_IDX_ENTRY;
    if (n > maxn) n = maxn;
    /* entry 0 is the highest (the index grows down from the trailer): in a
    ** file cut short below it, none can be read */
    if (n && slot_off(vs->fb, 0) + SL_IDX_ENTRY > vs->size) n = 0;
    return (uint32_t)n;
}

/* A tail stored in the header, if it can be one (else nothing is known to
** be committed: records are taken as far as they verify). */
static void plan_tail(const vseg *vs, hplan *p, uint64_t tail, uint64_t n)
{
    p->nidx = idx_cap(vs, n);
    if (tail < SL_SEG_HDR || tail % 8 || tail > vs->fb - SL_SEG_TRAILER) {
        p->soft = true;
        p->end = SL_SEG_HDR;
    } else {
        p->end = tail;
    }
}

/* A dead writer's active segment: the tail it promised (see the top), and
** what follows as far as it verifies. */
static void plan_dead(const vseg *vs, hplan *p)
{
    p->soft = true;
    const uint8_t *b = vs->base;
    uint64_t boot = sl__boot_id();
    if (boot && sl__ld64(b + SL_H_BOOT) == boot)
        plan_tail(vs, p, sl__ld64(b + SL_H_COMMIT_TAIL), sl__ld32(b + SL_H_INDEX_COUNT));
    else
        plan_tail(vs, p, sl__ld64(b + SL_H_SYNCED_TAIL), sl__ld32(b + SL_H_SYNCED_INDEX));
}

/* Sealed: the trailer, or (damaged: reported) the tail the seal published. */
static void plan_sealed(vseg *vs, hplan *p)
{
    p->sealed = true;
    if (vs->size < vs->fb) {            /* the trailer is past the cut */
        plan_tail(vs, p, sl__ld64(vs->base + SL_H_COMMIT_TAIL),
                  sl__ld32(vs->base + SL_H_INDEX_COUNT));
        return;
    }
    const uint8_t *t = vs->base + vs->fb - SL_SEG_TRAILER;
    char why[V_WHY];
    if (trl_check(vs, t, why, sizeof why)) {
        p->trl_ok = true;
        p->end = sl__ld64(t + 48);
        p->nidx = sl__ld32(t + 4);
        return;
    }
    damage(vs, vs->fb - SL_SEG_TRAILER, "trailer: %s; the records are checked up to the "
           "header's commit_tail", why);
    plan_tail(vs, p, sl__ld64(vs->base + SL_H_COMMIT_TAIL), sl__ld32(vs->base + SL_H_INDEX_COUNT));
}

/* Disagreements of a trailer's summary with the walk, as "name want
** (found got), ...", and the offset in the trailer of the first. */
typedef struct mism {
    char why[V_WHY * 2];
    size_t n;
    uint64_t first;
} mism;

static void mism_add(mism *m, uint64_t off, const char *name, int64_t want, int64_t got)
{
    if (off < m->first) m->first = off;
    if (m->n < sizeof m->why)
        m->n += (size_t)snprintf(m->why + m->n, sizeof m->why - m->n,
                                 "%s%s %" PRId64 " (found %" PRId64 ")", m->n ? ", " : "", name,
                                 want, got);
}

/* The fields hot and cold trailers share (record_count, first/last seq and
** ms, payload, at the same offsets) against the walk. */
static void summary_mism(const vseg *vs, const uint8_t *t, mism *m)
{
    m->why[0] = '\0';
    m->n = 0;
    m->first = UINT64_MAX;
    if (sl__ld64(t + 8) != vs->count)
        mism_add(m, 8, "record_count", (int64_t)sl__ld64(t + 8), (int64_t)vs->count);
    if (sl__ld64(t + 56) != vs->payload)
        mism_add(m, 56, "payload", (int64_t)sl__ld64(t + 56), (int64_t)vs->payload);
    if (!vs->count) return;
    if (sl__ld64(t + 16) != vs->first_seq)
        mism_add(m, 16, "first_seq", (int64_t)sl__ld64(t + 16), (int64_t)vs->first_seq);
    if (sl__ld64(t + 24) != vs->last_seq)
        mism_add(m, 24, "last_seq", (int64_t)sl__ld64(t + 24), (int64_t)vs->last_seq);
    if ((int64_t)sl__ld64(t + 32) != vs->first_ms)
        mism_add(m, 32, "first_ms", (int64_t)sl__ld64(t + 32), vs->first_ms);
    if ((int64_t)sl__ld64(t + 40) != vs->last_ms)
        mism_add(m, 40, "last_ms", (int64_t)sl__ld64(t + 40), vs->last_ms);
}

/* The trailer's summary against the walk (only when no records were lost:
** else it differs by them, counted already). */
static void trl_summary(vseg *vs)
{
    mism m;
    summary_mism(vs, vs->base + vs->fb - SL_SEG_TRAILER, &m);
    if (m.first != UINT64_MAX)
        damage(vs, vs->fb - SL_SEG_TRAILER + m.first, "trailer disagrees with the records: %s",
               m.why);
}

/* The index region as a whole: damage no entry check could judge (an entry
** inside a damaged run, a block checksum not checked). */
static void idx_summary(vseg *vs, const hplan *p, const hidx *x)
{
    const uint8_t *t = vs->base + vs->fb - SL_SEG_TRAILER;
    uint64_t want = sl__ld64(t + 64);
    uint64_t got = p->nidx ? sl__xxh3(vs->base + x->low, (size_t)p->nidx * SL_IDX_ENTRY) : 0;
    if (got != want && !x->any_bad)
        damage(vs, x->low, "index checksum mismatch over its %" PRIu32 " entries (trailer "
               "index_xxh3 %016" PRIx64 ", computed %016" PRIx64 ")", p->nidx, want, got);
}

static void walk_hot(vseg *vs, const hplan *p)
{
    vctx *v = vs->v;
    const uint8_t *b = vs->base;
    uint64_t rec_lim = vs->fb - SL_SEG_TRAILER;
    if (rec_lim > vs->size) rec_lim = vs->size & ~(uint64_t)7;
    /* committed records below `hard`; a dead writer's may go on to `lim` */
    uint64_t end = p->end, hard = end < rec_lim ? end : rec_lim;
    uint64_t lim = p->soft ? rec_lim : hard;
    bool cut = hard < end;              /* the file ends before the records */
    hidx x = {.n = p->nidx, .low = vs->fb - SL_SEG_TRAILER - (uint64_t)SL_IDX_ENTRY * p->nidx,
              .cur = -1};
    uint64_t off = SL_SEG_HDR, last_good = 0, lost_from = 0;
    vs->prev_ms = INT64_MIN;
    while (off < lim && !halted(v)) {
        sl_recview r;
        char why[V_WHY];
        bool soft = off >= hard;
        uint64_t w = soft ? lim : hard;
        int rc = rec_next(vs, b + off, w - off, &r, why, sizeof why);
        if (rc == REC_GOOD) {
            idx_record(vs, &x, off, &r, last_good);
            int a = rec_auth(vs, b + off, &r, why, sizeof why);
            if (a < 0) return;
            if (a > 0) {                /* framing intact, contents not */
                damage(vs, off, "%s", why);
                vs->rec_damage++;
                x.cur_dmg = true;
                vs->prev_seq = r.seq;
                vs->prev_ms = r.ms;
            } else {
                rec_take(vs, &r);
            }
            last_good = off;
            off += r.span;
            continue;
        }
        if (soft && rc == REC_END) break;               /* the end */
        uint64_t next = sl__seg_resync(vs->g, off, w, vs->prev_seq);
        if (next <= off || next > w) next = w;
        if (next == w && cut) {                         /* at the cut: below */
            lost_from = off;
            break;
        }
        if (next == w && soft) break;                   /* a torn tail */
        idx_damage(vs, &x, off, next, last_good);
        if (next < w)
            damage(vs, off, "%s; %" PRIu64 " bytes skipped, records resume at offset %" PRIu64,
                   why, next - off, next);
        else
            damage(vs, off, "%s; no valid record follows up to the end of the %s records at "
                   "offset %" PRIu64, why,
                   soft ? "written" : p->sealed ? "sealed" : "committed", w);
        vs->rec_damage++;
        off = next;
    }
    if (halted(v)) return;
    if (cut && !lost_from) lost_from = off;
    if (vs->size < vs->fb) {
        if (cut)
            damage(vs, vs->size, "file truncated to %" PRIu64 " of %" PRIu64 " bytes: the %s "
                   "records from offset %" PRIu64 " to %" PRIu64 ", the index and the trailer "
                   "are lost", vs->size, vs->fb, p->sealed ? "sealed" : "committed", lost_from,
                   end);
        else
            damage(vs, vs->size, "file truncated to %" PRIu64 " of %" PRIu64 " bytes: its index "
                   "and trailer area is lost", vs->size, vs->fb);
        return;
    }
    if (p->trl_ok) {
        /* every entry of a sealed index belongs to a record */
        while (x.k < x.n && !halted(v)) {
            sl_idx e = idx_get(vs, x.k);
            idx_bad(vs, &x, x.k, "offset %" PRIu64 " is past the data end %" PRIu64, e.off, end);
            x.k++;
            x.cur = -1;
        }
    }
    if (p->sealed && x.cur >= 0 && !x.cur_dmg) block_check(vs, &x, (uint32_t)x.cur, off);
    if (p->trl_ok && vs->rec_damage == 0 && !halted(v)) trl_summary(vs);
    if (p->trl_ok && !x.any_bad && !halted(v)) idx_summary(vs, p, &x);
}

/* ---- cold segments ------------------------------------------------------ */

typedef struct cplan {
    bool trl_ok;
    uint32_t nblk;
    uint64_t tab;                     /* the table's file offset */
    uint64_t data_end;
} cplan;

static bool cbuf_fit(vctx *v, size_t n)
{
    if (n <= v->ccap) return true;
    size_t cap = n > SL_COLD_BLOCK_RAW ? n : SL_COLD_BLOCK_RAW;
    free(v->cbuf);
    v->ccap = 0;
    if (!(v->cbuf = malloc(cap))) {
        v->err = sl__err(SL_ENOMEM, "verifying: a buffer for a cold block");
        return false;
    }
    v->ccap = cap;
    return true;
}

/* The records of a decompressed block (raw offsets from raw_off).  false:
** a record failed (reported as the block's damage). */
static bool cold_records(vseg *vs, uint32_t k, uint64_t file_off, uint64_t raw_off,
                         const uint8_t *buf, uint64_t len, const sl_cblk *want)
{
    uint64_t o = 0;
    bool first = true;
    while (o < len && !halted(vs->v)) {
        sl_recview r;
        char why[V_WHY];
        int rc = rec_next(vs, buf + o, len - o, &r, why, sizeof why);
        if (rc == REC_GOOD && first && want &&
            (r.seq != want->first_seq || r.ms != want->first_ms)) {
            snprintf(why, sizeof why, "its first record has sequence number %" PRIu64
                     " time %" PRId64 "; the block table says %" PRIu64 " time %" PRId64,
                     r.seq, r.ms, want->first_seq, want->first_ms);
            rc = REC_BAD;
        }
        if (rc == REC_GOOD) {
            int a = rec_auth(vs, buf + o, &r, why, sizeof why);
            if (a < 0) return false;
            if (a > 0) {
                damage(vs, file_off, "block %" PRIu32 ": the record at offset %" PRIu64 ": %s",
                       k, raw_off + o, why);
                vs->rec_damage++;
                vs->prev_seq = r.seq;
                vs->prev_ms = r.ms;
            } else {
                rec_take(vs, &r);
            }
            o += r.span;
            first = false;
            continue;
        }
        damage(vs, file_off, "block %" PRIu32 " (records at offset %" PRIu64 "..%" PRIu64
               "): the record at offset %" PRIu64 ": %s; the rest of the block is skipped",
               k, raw_off, raw_off + len, raw_off + o, why);
        vs->rec_damage++;
        return false;
    }
    return true;
}

/* Decompress block b into the scratch buffer and check it: 0, or the
** reason (static text). */
static const char *cold_decode(vseg *vs, const sl_cblk *b)
{
    vctx *v = vs->v;
    if (!cbuf_fit(v, b->raw_len)) return NULL;
    size_t got = ZSTD_decompressDCtx(v->dctx, v->cbuf, b->raw_len, vs->base + b->file_off,
                                     b->zlen);
    if (ZSTD_isError(got)) return ZSTD_getErrorName(got);
    if (got != b->raw_len) return "it decompresses to another size than the block table's";
    if (sl__xxh3(v->cbuf, b->raw_len) != b->raw_xxh3)
        return "checksum mismatch after decompression (raw_xxh3)";
    return "";
}

static sl_cblk centry(const uint8_t *e)
{
    return (sl_cblk){sl__ld64(e), sl__ld32(e + 8), sl__ld32(e + 12), sl__ld64(e + 16),
                     sl__ld64(e + 24), (int64_t)sl__ld64(e + 32), sl__ld64(e + 40)};
}

/* The block table: checksum, then each entry's ranges and keys.  false:
** reported (then the frames are walked instead). */
static bool cold_table_ok(vseg *vs, const cplan *c)
{
    const uint8_t *t = vs->base + vs->fb - SL_SEG_TRAILER;
    uint64_t bytes = (uint64_t)c->nblk * V_COLD_ENTRY;
    uint64_t got = sl__xxh3(vs->base + c->tab, (size_t)bytes);
    if (got != sl__ld64(t + 72)) {
        damage(vs, c->tab, "block table checksum mismatch (trailer table_xxh3 %016" PRIx64
               ", computed %016" PRIx64 "); its frames are walked instead",
               sl__ld64(t + 72), got);
        return false;
    }
    uint64_t raw = SL_SEG_HDR, pos = SL_SEG_HDR, ps = 0;
    int64_t pm = INT64_MIN;
    for (uint32_t k = 0; k < c->nblk; k++) {
        uint64_t eo = c->tab + (uint64_t)V_COLD_ENTRY * k;
        sl_cblk b = centry(vs->base + eo);
        const char *why = NULL;
        if (b.raw_off != raw) why = "raw_off does not follow the block before";
        else if (b.file_off != pos) why = "file_off does not follow the frame before";
        else if (b.raw_len < SL_REC_OVERHEAD || b.raw_len % 8 || b.raw_len > V_COLD_RAW_MAX)
            why = "raw_len out of range";
        else if (b.zlen == 0 || b.file_off + b.zlen > c->tab) why = "the frame runs into the table";
        else if (k && b.first_seq <= ps) why = "first_seq does not rise";
        else if (b.first_ms < pm) why = "first_ms falls";
        if (why) {
            damage(vs, eo, "block table entry %" PRIu32 ": %s; its frames are walked instead",
                   k, why);
            return false;
        }
        raw += b.raw_len;
        pos += b.zlen;
        ps = b.first_seq;
        pm = b.first_ms;
    }
    if (raw != c->data_end || c->tab - pos >= 8) {
        damage(vs, c->tab, "block table: its blocks end at offset %" PRIu64 " and file offset %"
               PRIu64 ", the trailer says data_end %" PRIu64 " and table_off %" PRIu64
               "; its frames are walked instead", raw, pos, c->data_end, c->tab);
        return false;
    }
    return true;
}

/* The table or the trailer is damaged: walk the frames from offset 256, as
** readers rebuild the table (each frame's header gives its sizes). */
static void cold_walk(vseg *vs, uint64_t lim, bool cut)
{
    uint64_t pos = SL_SEG_HDR, raw = SL_SEG_HDR;
    for (uint32_t k = 0; pos + 4 <= lim && !halted(vs->v); k++) {
        const uint8_t *f = vs->base + pos;
        if (sl__ld32(f) != ZSTD_MAGICNUMBER) break;     /* no more frames */
        size_t zlen = ZSTD_findFrameCompressedSize(f, (size_t)(lim - pos));
        unsigned long long rlen = ZSTD_isError(zlen) ? ZSTD_CONTENTSIZE_ERROR
                                                     : ZSTD_getFrameContentSize(f, zlen);
        if (rlen == ZSTD_CONTENTSIZE_ERROR || rlen == ZSTD_CONTENTSIZE_UNKNOWN ||
            rlen < SL_REC_OVERHEAD || rlen > V_COLD_RAW_MAX || rlen % 8) {
            if (!cut)
                damage(vs, pos, "no readable zstd frame (block %" PRIu32 "); the records from "
                       "offset %" PRIu64 " on are lost", k, raw);
            vs->rec_damage++;
            return;
        }
        sl_cblk b = {raw, (uint32_t)rlen, (uint32_t)zlen, pos, 0, 0, 0};
        if (!cbuf_fit(vs->v, b.raw_len)) return;
        size_t got = ZSTD_decompressDCtx(vs->v->dctx, vs->v->cbuf, b.raw_len, f, zlen);
        if (ZSTD_isError(got) || got != b.raw_len) {
            damage(vs, pos, "block %" PRIu32 " (zstd frame of %zu bytes, records at offset %"
                   PRIu64 "..%" PRIu64 "): %s", k, zlen, raw, raw + b.raw_len,
                   ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");
            vs->rec_damage++;
        } else {
            cold_records(vs, k, pos, raw, vs->v->cbuf, b.raw_len, NULL);
        }
        pos += zlen;
        raw += rlen;
    }
}

static void check_cold(vseg *vs)
{
    vctx *v = vs->v;
    if (!v->dctx && !(v->dctx = ZSTD_createDCtx())) {
        v->err = sl__err(SL_ENOMEM, "verifying: a zstd context");
        return;
    }
    vs->prev_ms = INT64_MIN;
    cplan c = {0};
    const uint8_t *t = NULL;
    bool cut = vs->size < vs->fb;
    if (!cut) {
        t = vs->base + vs->fb - SL_SEG_TRAILER;
        uint64_t sum = sl__xxh3(t, 120);
        c.nblk = sl__ld32(t + 4);
        c.tab = sl__ld64(t + 64);
        c.data_end = sl__ld64(t + 48);
        uint64_t count = sl__ld64(t + 8);
        if (sl__ld32(t) != V_COLD_MAGIC)
            damage(vs, vs->fb - SL_SEG_TRAILER, "cold trailer: bad magic 0x%08" PRIx32
                   "; its frames are walked instead", sl__ld32(t));
        else if (sl__ld64(t + 120) != sum)
            damage(vs, vs->fb - SL_SEG_TRAILER, "cold trailer: checksum mismatch (XXH3 of "
                   "its bytes 0..119 is %016" PRIx64 ", stored %016" PRIx64 "); its frames "
                   "are walked instead", sum, sl__ld64(t + 120));
        else if (c.tab < SL_SEG_HDR || c.tab % 8 ||
                 c.tab + (uint64_t)c.nblk * V_COLD_ENTRY != vs->fb - SL_SEG_TRAILER ||
                 c.data_end < SL_SEG_HDR || c.data_end % 8 ||
                 (count == 0) != (c.data_end == SL_SEG_HDR) || (count == 0) != (c.nblk == 0) ||
                 count < c.nblk)
            damage(vs, vs->fb - SL_SEG_TRAILER, "cold trailer: fields out of range (block_count %"
                   PRIu32 ", table_off %" PRIu64 ", data_end %" PRIu64 ", record_count %" PRIu64
                   "); its frames are walked instead", c.nblk, c.tab, c.data_end, count);
        else
            c.trl_ok = true;
    }
    if (halted(v)) return;
    uint64_t raw_end = SL_SEG_HDR;
    if (c.trl_ok && cold_table_ok(vs, &c)) {
        for (uint32_t k = 0; k < c.nblk && !halted(v); k++) {
            sl_cblk b = centry(vs->base + c.tab + (uint64_t)V_COLD_ENTRY * k);
            const char *why = cold_decode(vs, &b);
            if (!why) return;                           /* no memory */
            if (*why) {
                damage(vs, b.file_off, "block %" PRIu32 " (zstd frame of %" PRIu32 " bytes, "
                       "records at offset %" PRIu64 "..%" PRIu64 "): %s", k, b.zlen, b.raw_off,
                       b.raw_off + b.raw_len, why);
                vs->rec_damage++;
                continue;
            }
            cold_records(vs, k, b.file_off, b.raw_off, v->cbuf, b.raw_len, &b);
        }
        raw_end = c.data_end;
    } else {
        cold_walk(vs, c.trl_ok ? c.tab : vs->size, cut);
    }
    if (halted(v)) return;
    if (cut) {
        damage(vs, vs->size, "file truncated to %" PRIu64 " of %" PRIu64 " bytes: the cold "
               "trailer, the block table and the frames past the cut are lost",
               vs->size, vs->fb);
        return;
    }
    if (!c.trl_ok || vs->rec_damage || vs->damage) return;
    mism m;
    summary_mism(vs, t, &m);
    if (c.data_end != raw_end) mism_add(&m, 48, "data_end", (int64_t)c.data_end, (int64_t)raw_end);
    if (m.first != UINT64_MAX)
        damage(vs, vs->fb - SL_SEG_TRAILER + m.first, "cold trailer disagrees with the records: %s",
               m.why);
}

/* ---- one segment -------------------------------------------------------- */

/* A segment done: counted, and fn told. */
static void seg_done(vctx *v, uint64_t bytes)
{
    if (halted(v)) return;
    v->st.segments++;
    v->st.bytes += bytes;
    if (v->fn && v->fn(v->ctx, &v->st, NULL) != 0) v->stop = true;
}

/* A segment of the shard's list, pinned. */
static void check_pinned(vctx *v, sl_shard *sh, sl_seg *g, uint64_t *prev_seq)
{
    vseg vs = {.v = v, .sh = sh, .g = g, .path = g->path, .ordinal = g->ordinal,
               .base = g->base, .size = g->map_len, .fb = g->file_bytes,
               .prev_seq = *prev_seq};
    if (g->cold) {
        check_header(&vs, true);
        check_cold(&vs);
    } else {
        /* sealed (by another process's writer too), or followed live up to
        ** its commit_tail, or a dead writer's */
        bool lib_sealed = sl__shard_refresh_sealed(sh, g);
        bool dead = lib_sealed || (g->ro_cap && __atomic_load_n(sl__hdr32(g, SL_H_WRITER_EPOCH),
                                                                __ATOMIC_ACQUIRE) == g->ro_epoch);
        uint32_t state = __atomic_load_n(sl__hdr32(g, SL_H_STATE), __ATOMIC_ACQUIRE);
        hplan p = {0};
        char why[V_WHY];
        check_header(&vs, false);
        if (state == SL_STATE_SEALED ||
            (dead && vs.size >= vs.fb &&
             trl_check(&vs, vs.base + vs.fb - SL_SEG_TRAILER, why, sizeof why))) {
            plan_sealed(&vs, &p);
        } else if (dead) {
            plan_dead(&vs, &p);
        } else {
            /* the index count first: the tail loaded after it covers every
            ** entry it counts */
            uint32_t n = __atomic_load_n(sl__hdr32(g, SL_H_INDEX_COUNT), __ATOMIC_ACQUIRE);
            p.end = sl__seg_visible_end(g);
            p.nidx = idx_cap(&vs, n);
        }
        if (!halted(v)) walk_hot(&vs, &p);
    }
    if (vs.count) *prev_seq = vs.last_seq;
    seg_done(v, vs.size);
}

/* A segment file checked from a read-only mapping of its own: one the list
** does not hold (its header was refused: a reader skips it, a writer renamed
** it .corrupt), cannot load (an unknown version or flags), or holds as a
** stub on a writer handle.  why_unlisted ends a report of its header.  Gone
** (deleted by retention since the listing): not counted. */
static void check_file(vctx *v, sl_shard *sh, uint64_t ordinal, const char *why_unlisted,
                       uint64_t *prev_seq)
{
    char *path = sl__seg_path(sh->dir, ordinal), *alt = NULL;
    if (!path) {
        v->err = sl__err(SL_ENOMEM, "verifying %s", sh->id);
        return;
    }
    const char *note = why_unlisted;
    int fd = sl__os.open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0 && errno == ENOENT && asprintf(&alt, "%s.corrupt", path) >= 0) {
        fd = sl__os.open(alt, O_RDONLY | O_CLOEXEC, 0);
        note = "; quarantined as .corrupt";
    }
    const char *name = fd >= 0 && alt ? alt : path;
    struct stat st;
    if (fd < 0) {
        if (errno == ENOENT) v->st.segments_total--;
        else v->err = sl__errno(SL_EIO, errno, "opening %s", path);
        free(path);
        free(alt);
        return;
    }
    if (fstat(fd, &st) != 0) {
        v->err = sl__errno(SL_EIO, errno, "stat %s", name);
        sl__os.close(fd);
        free(path);
        free(alt);
        return;
    }
    uint64_t size = (uint64_t)st.st_size;
    sl_seg stand = {0};                 /* for sl__seg_resync */
    vseg vs = {.v = v, .sh = sh, .g = &stand, .path = name, .note = note, .ordinal = ordinal,
               .size = size, .fb = size, .prev_seq = *prev_seq};
    void *m = MAP_FAILED;
    if (size < SL_SEG_HDR + SL_SEG_TRAILER) {
        damage(&vs, 0, "file of %" PRIu64 " bytes, too short for a segment%s", size, note);
    } else if ((m = sl__os.mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0)) == MAP_FAILED) {
        v->err = sl__errno(sl__errno_code(errno), errno, "mapping %s", name);
    } else {
        vs.base = m;
        bool cold = (sl__ld32(vs.base + 12) & V_FLAG_COLD) &&
                    sl__ld32(vs.base + size - SL_SEG_TRAILER) == V_COLD_MAGIC;
        /* the header's size if it is the file's (else the file's: the
        ** header is what is damaged) */
        uint64_t hfb = sl__ld64(vs.base + 24);
        if (hfb > size && hfb % 4096 == 0 && !cold && hfb <= (1ull << 40)) vs.fb = hfb;
        check_header(&vs, cold);
        if (cold) {
            check_cold(&vs);
        } else if (!halted(v)) {
            stand.base = (uint8_t *)m;
            stand.file_bytes = vs.fb;
            stand.map_len = size;
            char why[V_WHY];
            hplan p = {0};
            bool trl = size >= vs.fb &&
                       trl_check(&vs, vs.base + vs.fb - SL_SEG_TRAILER, why, sizeof why);
            if (trl || sl__ld32(vs.base + SL_H_STATE) == SL_STATE_SEALED) {
                plan_sealed(&vs, &p);
                if (p.trl_ok) {
                    stand.nidx = p.nidx;
                    atomic_store(&stand.sealed, true);
                }
            } else {
                plan_dead(&vs, &p);
            }
            if (!halted(v)) walk_hot(&vs, &p);
        }
        sl__os.munmap(m, (size_t)size);
    }
    sl__os.close(fd);
    if (vs.count) *prev_seq = vs.last_seq;
    seg_done(v, size);
    free(path);
    free(alt);
}

/* ---- the walk ----------------------------------------------------------- */


/* The first ordinal > after in the shard's list (0 if none). */
static uint64_t list_next(sl_shard *sh, uint64_t after)
{
    uint64_t o = 0;
    pthread_mutex_lock(&sh->seglock);
    for (size_t i = 0; i < sh->nseg && !o; i++)
        if (sh->segs[i]->ordinal > after) o = sh->segs[i]->ordinal;
    pthread_mutex_unlock(&sh->seglock);
    return o;
}

/* Notes for a header found damaged in a file checked on its own. */
#define NOTE_SKIPPED "; the library skips this segment (a writer renames it .corrupt)"
#define NOTE_REFUSED "; the library refuses this segment (SL_ECORRUPT)"

/* A writer handle: the first segment of the list after `after` if it is a
** stub, not loaded yet (0 if it is loaded, or there is none).  Loading it
** would be the writer's recovery (see the top): it is checked as a file. */
static uint64_t stub_next(sl_shard *sh, uint64_t after)
{
    uint64_t o = 0;
    pthread_mutex_lock(&sh->seglock);
    for (size_t i = 0; i < sh->nseg; i++) {
        if (sh->segs[i]->ordinal <= after) continue;
        if (!sh->segs[i]->loaded) o = sh->segs[i]->ordinal;
        break;
    }
    pthread_mutex_unlock(&sh->seglock);
    return o;
}

/* Segment o of the list checked as a file: the listed ones before it first
** (not in the list: skipped by the library, or gone). */
static void check_as_file(vctx *v, sl_shard *sh, const uint64_t *ords, size_t n, size_t *j,
                          uint64_t o, const char *note, uint64_t *prev_seq)
{
    while (*j < n && ords[*j] < o && !halted(v))
        check_file(v, sh, ords[(*j)++], NOTE_SKIPPED, prev_seq);
    if (*j < n && ords[*j] == o) (*j)++;
    else v->st.segments_total++;        /* not listed: renamed into place since */
    if (!halted(v)) check_file(v, sh, o, note, prev_seq);
}

/* Every segment of sh present at the listing (ords), oldest first. */
static void verify_shard(vctx *v, sl_shard *sh, const uint64_t *ords, size_t n)
{
    uint64_t after = 0, prev_seq = 0, last = n ? ords[n - 1] : 0;
    size_t j = 0;
    while (!halted(v) && j < n) {
        uint64_t o = sh->s->readonly ? 0 : stub_next(sh, after);
        if (o && o <= last) {
            check_as_file(v, sh, ords, n, &j, o, NOTE_SKIPPED, &prev_seq);
            after = o;
            continue;
        }
        sl_seg *g = NULL;
        int rc = sl__shard_get_seg(sh, after, &g);
        if (rc == SL_ECORRUPT || rc == SL_ENOTFOUND) {
            /* a file the library refuses outright (an unknown version or
            ** flags), or one deleted since the list was read: check it as
            ** a file (a deleted one is not counted) */
            o = list_next(sh, after);
            if (!o || o > last) {
                v->err = rc;
                return;
            }
            check_as_file(v, sh, ords, n, &j, o, NOTE_REFUSED, &prev_seq);
            after = o;
            continue;
        }
        if (rc) {
            v->err = rc;
            return;
        }
        uint64_t go = g ? g->ordinal : UINT64_MAX;
        if (go > last) {                /* made since the listing: not ours */
            sl__shard_put_seg(sh, g);
            g = NULL;
            go = UINT64_MAX;
        }
        /* listed, but not in the list: refused when loaded, or gone */
        while (j < n && ords[j] < go && !halted(v))
            check_file(v, sh, ords[j++], NOTE_SKIPPED, &prev_seq);
        if (!g) break;
        if (j < n && ords[j] == go) j++;
        else v->st.segments_total++;    /* renamed into place since */
        if (!halted(v)) check_pinned(v, sh, g, &prev_seq);
        sl__shard_put_seg(sh, g);
        after = go;
    }
}

int sl_stream_verify(sl_stream *s, sl_verify_fn fn, void *ctx, sl_verify_stats *out)
{
    if (out) memset(out, 0, sizeof *out);
    if (!s) return sl__ret(NULL, sl__err(SL_EINVAL, "stream is NULL"));
    vctx v = {.s = s, .fn = fn, .ctx = ctx};
    size_t ns = atomic_load_explicit(&s->nshards, memory_order_acquire);
    uint64_t **ords = calloc(ns ? ns : 1, sizeof *ords);
    size_t *nords = calloc(ns ? ns : 1, sizeof *nords);
    int rc = 0;
    if (!ords || !nords) rc = sl__err(SL_ENOMEM, "verifying: listing %zu shards", ns);
    /* what there is to check, before starting */
    for (size_t i = 0; i < ns && rc == 0; i++) {
        sl_shard *sh = s->shards[i];
        if (!sh) continue;
        rc = sl__shard_list_segs(sh, 0, false, &ords[i], &nords[i], NULL);
        v.st.segments_total += nords[i];
    }
    for (size_t i = 0; i < ns && rc == 0 && !halted(&v); i++)
        if (s->shards[i]) verify_shard(&v, s->shards[i], ords[i], nords[i]);
    if (rc == 0) rc = v.err;
    for (size_t i = 0; ords && i < ns; i++) free(ords[i]);
    free(ords);
    free(nords);
    if (v.pbuf) OPENSSL_cleanse(v.pbuf, v.pcap);
    free(v.pbuf);
    sl__gcm_free(&v.gcm);
    ZSTD_freeDCtx(v.dctx);
    free(v.cbuf);
    if (out) *out = v.st;
    if (rc) return sl__ret(s, rc);
    if (v.stop) return 1;
    if (v.st.damaged)
        return sl__ret(s, sl__err(SL_ECORRUPT, "%" PRIu64 " damaged place%s in %" PRIu64
                                  " segment%s; first: %s", v.st.damaged,
                                  v.st.damaged == 1 ? "" : "s", v.bad_segs,
                                  v.bad_segs == 1 ? "" : "s", v.first));
    return 0;
}
