/*
** shard.c -- one shard: its segment list, append and roll-over, group
** commit, wake-ups, and the reader's way through its segments.
**
** Locks (order: lock > seglock > gc.mu; see internal.h for the rest):
**   lock      the writer's state: active segment, its tail and index, the
**             shard's last sequence number and arrival time.  Held for the
**             length of an append (memcpy of the batch for this shard).
**   seglock   the segment list and each segment's mapping and `users`
**             count.  Held briefly when a reader moves between segments.
**   gc.mu     group commit (commit.c): one leader at a time, how far
**             the segments are durable, the queue of waiters.
** Readers never take `lock`: they follow commit_tail in the mapping.
**
** Invariants: segments in `segs` are in ordinal order, all sealed except
** possibly the last; the writer's active segment is the last and is always
** mapped (the writer holds one of its `users`).  Sequence numbers and
** arrival times never decrease along the list.
*/
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEQ_SHARD_BLOCK 1024u

void sl__segctx_init(sl_segctx *c, sl_shard *sh)
{
    sl_stream *s = sh->s;
    c->stream_id = s->man.stream_id;
    c->shard_index = sh->index;
    c->shard_id = sh->id;
    c->now_ms = sl__now(s);
    c->sync_now = s->durability == SL_DURABILITY_ALWAYS;
    c->report = s->report;
    c->report_ctx = s->report_ctx;
    c->damage_count = &s->damage;
}

sl_shard *sl__shard_alloc(void)
{
    size_t sz = (sizeof(sl_shard) + 63) & ~(size_t)63;
    sl_shard *sh = aligned_alloc(64, sz);
    if (sh) memset(sh, 0, sz);
    return sh;
}

int sl__shard_init(sl_shard *sh, sl_stream *s, uint32_t index)
{
    memset(sh, 0, sizeof *sh);
    sh->s = s;
    sh->index = index;
    sl__shard_id(sh->id, index);
    sh->parent = sh->adjacent = SL_NO_SHARD;
    sh->next_ordinal = 1;
    if (asprintf(&sh->dir, "%s/%s", s->dir, sh->id) < 0) {
        sh->dir = NULL;
        return sl__err(SL_ENOMEM, "allocating a shard");
    }
    pthread_mutex_init(&sh->lock, NULL);
    pthread_mutex_init(&sh->seglock, NULL);
    pthread_mutex_init(&sh->drop_mu, NULL);
    sl__gc_init(&sh->gc);
    if (s->wake_map)
        sh->wake = (uint32_t *)(void *)(s->wake_map + (size_t)(index % SL_WAKE_SLOTS) *
                                                  SL_WAKE_SLOT_BYTES);
    return sl__rl_init(sh);
}

void sl__shard_destroy(sl_shard *sh)
{
    sl__rl_destroy(sh);
    sl__gcm_free(&sh->cctx);
    if (!sh->dir) return;
    sl__seg_discard(sh->spare);
    for (size_t i = 0; i < sh->nseg; i++) sl__seg_free(sh->segs[i]);
    free(sh->segs);
    free(sh->dir);
    pthread_mutex_destroy(&sh->lock);
    pthread_mutex_destroy(&sh->seglock);
    pthread_mutex_destroy(&sh->drop_mu);
    sl__gc_destroy(&sh->gc);
    sh->dir = NULL;
}

/* ---- the segment list --------------------------------------------------- */

static int list_push(sl_shard *sh, sl_seg *g)
{
    if (sh->nseg == sh->capseg) {
        size_t cap = sh->capseg ? sh->capseg * 2 : 8;
        sl_seg **n = realloc(sh->segs, cap * sizeof *n);
        if (!n) return sl__err(SL_ENOMEM, "growing the segment list of %s", sh->id);
        sh->segs = n;
        sh->capseg = cap;
    }
    sh->segs[sh->nseg++] = g;
    return 0;
}

/* ---- lazy segments ---------------------------------------------------------
** Opening a stream reads only its directory listing and the newest segment
** of each shard.  Older segments enter the list as stubs (ordinal and path)
** and are read -- header, trailer -- the first time something needs them
** (a seek, a read, a describe).  So open costs the same at 1 GiB as at
** 8 GiB, and never waits on the disk for a cold segment's pages.  A stub
** that proves unusable (damaged header: reported, and quarantined by a
** writer) leaves the list. */

static sl_seg *stub_new(sl_shard *sh, uint64_t ordinal)
{
    sl_seg *g = calloc(1, sizeof *g);
    if (!g || !(g->path = sl__seg_path(sh->dir, ordinal))) {
        free(g);
        return NULL;
    }
    g->ordinal = ordinal;
    /* written before this handle: its name is durable (the writer that
    ** made it synced the directory, or a reboot since did), its data maybe
    ** not (a writer in NONE mode that crashed leaves dirty pages; a sync
    ** round writes them out with one fdatasync of the file) */
    g->dir_durable = true;
    return g;
}

/* An empty sealed segment carries the keys of the segment before it, so
** that last keys never decrease along the list (seeks binary-search it). */
static int carry_into(sl_shard *sh, size_t i);

/* The number of loaded segment n's first record, if it has one: a sealed
** segment's summary, or an active one's first record as its commit tail
** publishes it (the summary of an active segment is the writer's, and may
** be mid-update in another thread). */
static bool first_record_seq(sl_seg *n, uint64_t *seq)
{
    if (sl__seg_is_sealed(n) || !n->base) {   /* (unmapped: not a writer's active one) */
        *seq = n->first_seq;
        return n->count > 0;
    }
    uint64_t end = sl__seg_visible_end(n);
    sl_recview v;
    if (end <= SL_SEG_HDR ||
        sl__rec_parse(n->base + SL_SEG_HDR, end - SL_SEG_HDR, false, &v) != SL_REC_OK)
        return false;
    *seq = v.seq;
    return true;
}

/* Make segs[i] loaded (caller holds seglock).  On return segs[i] may be
** another segment (the stub was unusable and left the list): callers
** re-read the list.  Hard errors (an unknown format version) are returned. */
static int ensure_loaded(sl_shard *sh, size_t i)
{
    sl_seg *stub = sh->segs[i];
    if (stub->loaded) return 0;
    sl_segctx c;
    sl__segctx_init(&c, sh);
    sl_seg *g = NULL;
    int rc = sl__seg_open(&g, &c, stub->path, stub->ordinal, !sh->s->readonly, false, true);
    if (rc) return rc;
    bool durable = stub->durable;
    sl__seg_free(stub);
    sl_seg *n = i + 1 < sh->nseg ? sh->segs[i + 1] : NULL;
    uint64_t nf;
    if (g && n && n->loaded && (g->count || g->last_seq) && first_record_seq(n, &nf) &&
        g->last_seq >= nf) {
        /* numbers rise along the list (seeks binary-search it; the writer
        ** continues from the newest segment): one that reaches into the
        ** next segment's -- by its records, or by the keys an empty one
        ** carries -- is damaged or forged, its checksums notwithstanding,
        ** and is set aside like a damaged header */
        char why[128];
        snprintf(why, sizeof why,
                 "sequence numbers up to %" PRIu64 " reach into the next segment's (from %" PRIu64
                 ")", g->last_seq, nf);
        sl__seg_quarantine(&c, g->path, !sh->s->readonly, why);
        sl__seg_free(g);
        g = NULL;
    }
    if (!g) {                                       /* unusable: drop it */
        memmove(&sh->segs[i], &sh->segs[i + 1], (sh->nseg - i - 1) * sizeof *sh->segs);
        sh->nseg--;
        return 0;
    }
    g->durable |= durable;
    sh->segs[i] = g;
    return g->count || !sl__seg_is_sealed(g) ? 0 : carry_into(sh, i);
}

static int carry_into(sl_shard *sh, size_t i)
{
    sl_seg *g = sh->segs[i];
    /* its trailer carries keys already: sealed empty (the shard's keys then)
    ** or emptied by key compaction (its own records' keys, which retention
    ** must judge it by, and GONE record, when it is deleted) */
    if (g->last_seq) return 0;
    uint64_t seq = 0;
    int64_t ms = INT64_MIN;
    for (size_t k = i; k > 0; k--) {
        uint64_t ord = sh->segs[k - 1]->ordinal;
        int rc = ensure_loaded(sh, k - 1);
        if (rc) return rc;
        if (k - 1 >= sh->nseg || sh->segs[k - 1]->ordinal != ord) {
            /* the list moved: a stub proved unusable and left it.  Giving
            ** up here left g's keys at 0, out of order for the seeks'
            ** binary search; find the place again by ordinal and go on
            ** with the segment below it (or with it, if it stayed) */
            size_t j = 0;
            while (j < sh->nseg && sh->segs[j]->ordinal < ord) j++;
            if (j < sh->nseg && sh->segs[j]->ordinal == ord) j++;
            k = j + 1;
            continue;
        }
        sl_seg *p = sh->segs[k - 1];
        if (p->count || !sl__seg_is_sealed(p)) {
            seq = p->last_seq;
            ms = p->last_ms;
            break;
        }
        if (p->last_seq) {                          /* already carried */
            seq = p->last_seq;
            ms = p->last_ms;
            break;
        }
    }
    g->first_seq = g->last_seq = seq;
    g->first_ms = g->last_ms = ms;
    return 0;
}

/* Load every stub (describe, counts). */
static int load_all(sl_shard *sh)
{
    for (size_t i = 0; i < sh->nseg; i++) {
        int rc = ensure_loaded(sh, i);
        if (rc) return rc;
    }
    return 0;
}

#define SEG_NAME_LEN 20                 /* "<16 hex>.seg" */

static bool parse_seg_name(const char *name, uint64_t *ord, bool *corrupt,
                           bool *tmp)
{
    size_t n = strlen(name);
    if (n < SEG_NAME_LEN || memcmp(name + 16, ".seg", 4) != 0) return false;
    const char *rest = name + SEG_NAME_LEN;
    *corrupt = !strcmp(rest, ".corrupt");
    *tmp = !strcmp(rest, ".tmp") || !strcmp(rest, ".spare") || !strcmp(rest, ".rw");
    if (*rest && !*corrupt && !*tmp) return false;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) return false;
        v = (v << 4) | (uint64_t)d;
    }
    *ord = v;
    return v > 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* (internal.h) */
int sl__shard_list_segs(sl_shard *sh, uint64_t after, bool writer, uint64_t **out,
                        size_t *n, uint64_t *max_seen)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(sh->dir);
    if (!d) {
        if (errno == ENOENT && !writer) return 0;   /* not created yet */
        return sl__errno(errno == ENOENT ? SL_ECORRUPT : SL_EIO, errno,
                         "opening shard directory %s", sh->dir);
    }
    size_t cap = 0;
    uint64_t *v = NULL;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t ord;
        bool corrupt, tmp;
        if (!parse_seg_name(e->d_name, &ord, &corrupt, &tmp)) continue;
        if (max_seen && ord > *max_seen) *max_seen = ord;
        if (tmp) {
            /* a dead writer's half-made or spare segment: the preparer
            ** removes it (freeing a preallocated file's blocks can take
            ** milliseconds; it has no place on the open path).  Its ordinal
            ** counts in max_seen, so no new segment ever takes its name. */
            if (writer) __atomic_store_n(&sh->leftovers, true, __ATOMIC_RELEASE);
            continue;
        }
        if (corrupt || ord <= after) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                rc = sl__err(SL_ENOMEM, "listing %s", sh->dir);
                break;
            }
            v = nv;
        }
        v[(*n)++] = ord;
    }
    closedir(d);
    if (rc) {
        free(v);
        *n = 0;
        return rc;
    }
    if (*n) qsort(v, *n, sizeof *v, cmp_u64);
    *out = v;
    return 0;
}

/* Add the segment files numbered above `after` to the list: the newest
** opened (recovered by a writer), the others as stubs (lazy = true) or
** opened too.  Caller holds seglock or is alone with the shard. */
static int load_from(sl_shard *sh, uint64_t after, bool writer, bool writer_alive,
                     bool lazy, uint64_t *max_seen)
{
    uint64_t *ords;
    size_t n, first = sh->nseg;
    int rc = sl__shard_list_segs(sh, after, writer, &ords, &n, max_seen);
    if (rc) return rc;
    sl_segctx c;
    sl__segctx_init(&c, sh);
    for (size_t i = 0; i < n && rc == 0; i++) {
        sl_seg *g = NULL;
        if (lazy && i + 1 < n) {
            if (!(g = stub_new(sh, ords[i]))) rc = sl__err(SL_ENOMEM, "opening %s", sh->id);
        } else {
            char *path = sl__seg_path(sh->dir, ords[i]);
            if (!path) rc = sl__err(SL_ENOMEM, "opening %s", sh->id);
            else rc = sl__seg_open(&g, &c, path, ords[i], writer, i + 1 == n, writer_alive);
            free(path);
        }
        if (rc == 0 && g && (rc = list_push(sh, g)) != 0) sl__seg_free(g);
    }
    free(ords);
    for (size_t i = first; rc == 0 && i < sh->nseg; i++)
        if (sh->segs[i]->loaded && !sh->segs[i]->count && sl__seg_is_sealed(sh->segs[i]))
            rc = carry_into(sh, i);
    return rc;
}

static int gone_read(sl_shard *sh, uint64_t *gone);

int sl__shard_load(sl_shard *sh, bool writer, bool writer_alive)
{
    uint64_t max_seen = 0;
    int rc = gone_read(sh, &sh->gone_seq);
    if (rc) return rc;
    rc = load_from(sh, 0, writer, writer_alive, true, &max_seen);
    if (rc) return rc;
    sh->next_ordinal = sh->first_own_ordinal = max_seen + 1;
    /* the shard's last sequence number and time: from the newest segment
    ** that has records (loading older stubs only if the newest is empty) */
    for (size_t i = sh->nseg; i > 0; i--) {
        if ((rc = ensure_loaded(sh, i - 1)) != 0) return rc;
        if (i - 1 >= sh->nseg) continue;
        sl_seg *g = sh->segs[i - 1];
        if (g->count || !sl__seg_is_sealed(g)) {
            sh->last_seq = g->last_seq;
            sh->last_ms = g->last_ms;
            break;
        }
    }
    if (writer && sh->nseg && !sl__seg_is_sealed(sh->segs[sh->nseg - 1]))
        sh->active = sh->segs[sh->nseg - 1];
    return 0;
}

/* Followers: pick up segments another process's writer created since. */
static int refresh_locked(sl_shard *sh)
{
    if (!sh->s->readonly) return 0;
    return load_from(sh, sh->nseg ? sh->segs[sh->nseg - 1]->ordinal : 0, false, true, false,
                     NULL);
}

/* Pin g: map it if needed, check its index once. Caller holds seglock. */
static int pin_locked(sl_shard *sh, sl_seg *g)
{
    if (!g->base) {
        sl_segctx c;
        sl__segctx_init(&c, sh);
        int rc = sl__seg_map(g, &c);
        if (rc) return rc;
    }
    if (!g->idx_checked && sl__seg_is_sealed(g)) {
        sl_segctx c;
        sl__segctx_init(&c, sh);
        sl__seg_index_check(g, &c);
    }
    g->users++;
    return 0;
}

static void unpin_locked(sl_shard *sh, sl_seg *g)
{
    if (--g->users > 0 || g == sh->active) return;
    if (g->removed) sl__seg_free(g);    /* deleted while we read it */
    else sl__seg_unmap(g);
}

void sl__shard_put_seg(sl_shard *sh, sl_seg *g)
{
    if (!g) return;
    pthread_mutex_lock(&sh->seglock);
    unpin_locked(sh, g);
    pthread_mutex_unlock(&sh->seglock);
}

sl_seg *sl__shard_pin_active(sl_shard *sh, uint64_t *tail)
{
    pthread_mutex_lock(&sh->lock);
    pthread_mutex_lock(&sh->seglock);
    sl_seg *g = sh->active;
    if (g) {
        g->users++;                     /* the active segment is mapped */
        *tail = g->tail;
    }
    pthread_mutex_unlock(&sh->seglock);
    pthread_mutex_unlock(&sh->lock);
    return g;
}

/* Load and pin segs[i] (or whatever takes its place if it proves unusable).
** Caller holds seglock.  *out NULL if the list ends before i. */
static int load_pin_locked(sl_shard *sh, size_t i, sl_seg **out)
{
    *out = NULL;
    int rc = 0;
    while (i < sh->nseg && !sh->segs[i]->loaded && (rc = ensure_loaded(sh, i)) == 0)
        ;
    if (rc || i >= sh->nseg) return rc;
    if ((rc = pin_locked(sh, sh->segs[i])) == 0) *out = sh->segs[i];
    return rc;
}

/* The pinned segment with the smallest ordinal > after (NULL if none). */
int sl__shard_get_seg(sl_shard *sh, uint64_t after, sl_seg **out)
{
    *out = NULL;
    pthread_mutex_lock(&sh->seglock);
    int rc = 0;
    for (int pass = 0; pass < 2 && !*out && rc == 0; pass++) {
        if (pass == 1 && (rc = refresh_locked(sh)) != 0) break;
        size_t i = 0;
        while (i < sh->nseg && sh->segs[i]->ordinal <= after) i++;
        rc = load_pin_locked(sh, i, out);
        if (!sh->s->readonly) break;
    }
    pthread_mutex_unlock(&sh->seglock);
    return rc;
}

int sl__shard_first_seg(sl_shard *sh, sl_seg **out)
{
    return sl__shard_get_seg(sh, 0, out);
}

int sl__shard_last_seg(sl_shard *sh, sl_seg **out)
{
    *out = NULL;
    pthread_mutex_lock(&sh->seglock);
    int rc = refresh_locked(sh);
    /* the newest segment is never a stub, but may be dropped as unusable */
    while (rc == 0 && sh->nseg && !*out) {
        size_t last = sh->nseg - 1;
        rc = load_pin_locked(sh, last, out);
        if (!*out && last > 0 && sh->nseg == last) continue;
        break;
    }
    pthread_mutex_unlock(&sh->seglock);
    return rc;
}

bool sl__shard_refresh_sealed(sl_shard *sh, sl_seg *g)
{
    if (sl__seg_is_sealed(g)) return true;
    pthread_mutex_lock(&sh->seglock);
    bool sealed = sl__seg_refresh_sealed(g);
    if (sealed && !g->idx_checked) {
        sl_segctx c;
        sl__segctx_init(&c, sh);
        sl__seg_index_check(g, &c);
    }
    pthread_mutex_unlock(&sh->seglock);
    return sealed;
}

int sl__shard_seek(sl_shard *sh, bool by_ms, uint64_t target, sl_seg **seg_out,
                   uint64_t *off_out)
{
    *seg_out = NULL;
    *off_out = SL_SEG_HDR;
    pthread_mutex_lock(&sh->seglock);
    int rc = refresh_locked(sh);
    if (rc || sh->nseg == 0) {
        pthread_mutex_unlock(&sh->seglock);
        return rc;
    }
    /* the first segment whose last key is >= target; unsealed ones (only
    ** the newest) count as +infinity */
    size_t lo = 0, hi = sh->nseg;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        size_t before = sh->nseg;
        if ((rc = ensure_loaded(sh, mid)) != 0) break;
        if (sh->nseg != before) {                   /* a stub left the list */
            lo = 0;
            hi = sh->nseg;
            continue;
        }
        sl_seg *g = sh->segs[mid];
        bool below;
        if (!sl__seg_is_sealed(g)) below = false;
        else if (by_ms) below = g->last_ms < (int64_t)target;
        else below = g->last_seq < target;
        if (below) lo = mid + 1;
        else hi = mid;
    }
    /* an empty sealed segment holds no record to land on: the next one's
    ** first is the place (its keys are carried, from the segment before it
    ** or from records compaction removed -- or forged) */
    while (rc == 0 && lo + 1 < sh->nseg) {
        size_t before = sh->nseg;
        if ((rc = ensure_loaded(sh, lo)) != 0 || sh->nseg != before) break;
        if (!sl__seg_is_sealed(sh->segs[lo]) || sh->segs[lo]->count) break;
        lo++;
    }
    sl_seg *g = NULL;
    bool tip = lo >= sh->nseg;          /* every record is below the target */
    if (rc == 0 && sh->nseg) rc = load_pin_locked(sh, tip ? sh->nseg - 1 : lo, &g);
    pthread_mutex_unlock(&sh->seglock);
    if (rc || !g) return rc;
    uint64_t end = sl__seg_visible_end(g);
    *off_out = tip ? end : sl__seg_seek(g, end, by_ms, target);
    *seg_out = g;
    return 0;
}

void sl__shard_counts(sl_shard *sh, uint64_t *records, uint64_t *payload)
{
    uint64_t r = 0, p = 0;
    pthread_mutex_lock(&sh->lock);
    pthread_mutex_lock(&sh->seglock);
    load_all(sh);                       /* a stub that fails is not counted */
    for (size_t i = 0; i < sh->nseg; i++) {
        sl_seg *g = sh->segs[i];
        if (!g->loaded) continue;
        if (sl__seg_is_sealed(g) || g == sh->active) {
            r += g->count;
            p += g->payload;
        } else if (pin_locked(sh, g) == 0) {
            uint64_t nr, np;
            sl__seg_count(g, sl__seg_visible_end(g), &nr, &np);
            r += nr;
            p += np;
            unpin_locked(sh, g);
        }
    }
    pthread_mutex_unlock(&sh->seglock);
    pthread_mutex_unlock(&sh->lock);
    *records = r;
    *payload = p;
}

/* ---- wake-ups ------------------------------------------------------------
** Each shard has a slot {u32 notify, u32 waiters} in the stream's WAKE file,
** shared by every process.  A waiter increments `waiters`, reads `notify`,
** re-checks for data, and futex-waits on `notify`.  The writer publishes,
** then (after a full fence) looks at `waiters` and only if someone waits
** bumps `notify` and wakes them: no system call on the append path while
** nobody waits.  A second pair, at SL_WAKE_ANY_OFF in slot 0, works the
** same way for a commit to any shard (the read scheduler waits there). */
void sl__shard_wake(sl_shard *sh)
{
    uint32_t *w = sh->wake;
    if (!w || !sh->s->wake_writable) return;
    atomic_thread_fence(memory_order_seq_cst);
    if (__atomic_load_n(&w[1], __ATOMIC_RELAXED) != 0) {
        __atomic_fetch_add(&w[0], 1, __ATOMIC_SEQ_CST);
        sl__futex_wake(&w[0]);
    }
    /* the stream-wide pair, for schedulers waiting on many shards */
    uint32_t *any = sh->s->wake_any;
    if (__atomic_load_n(&any[1], __ATOMIC_RELAXED) != 0) {
        __atomic_fetch_add(&any[0], 1, __ATOMIC_SEQ_CST);
        sl__futex_wake(&any[0]);
    }
}

/* ---- append ------------------------------------------------------------- */

static int seal_active_locked(sl_shard *sh);

/* Seal the active segment and start the next.  Caller holds lock. */
static int roll(sl_shard *sh, uint64_t span)
{
    sl_stream *s = sh->s;
    sl_segctx c;
    sl__segctx_init(&c, sh);
    if (sh->active) {
        int rc = seal_active_locked(sh);
        if (rc) return rc;
        sl__shard_wake(sh);
    }
    uint64_t bytes = sl__seg_bytes_for(span, s->man.segment_bytes);
    sl_seg *g = sh->spare;
    int rc = 0;
    sh->spare = NULL;
    atomic_store_explicit(&sh->spare_bytes, 0, memory_order_relaxed);
    if (g && (g->ordinal != sh->next_ordinal || g->file_bytes < bytes)) {
        sl__seg_discard(g);                 /* too small for this record */
        g = NULL;
    }
    if (g && (rc = sl__seg_publish_file(g, &c, sh->dir)) != 0) {
        sl__seg_discard(g);
        g = NULL;
    }
    if (!g && atomic_load_explicit(&s->cap_bytes, memory_order_relaxed))
        rc = sl__cap_make_room(s, bytes, NULL);    /* the size cap */
    if (!g && rc == 0) rc = sl__seg_create(&g, &c, sh->dir, sh->next_ordinal, bytes);
    if (rc) {
        if (rc == SL_EIO) sl__stream_fail(s, EIO, sl__errtext());
        return rc;
    }
    sh->next_ordinal++;
    pthread_mutex_lock(&sh->seglock);
    rc = list_push(sh, g);
    if (rc == 0) sh->active = g;
    pthread_mutex_unlock(&sh->seglock);
    if (rc) {
        sl__os.unlink(g->path);
        sl__seg_free(g);
        return rc;
    }
    sl__shard_wake(sh);
    return 0;
}

int sl__shard_append(sl_shard *sh, const sl_pending *recs, size_t n,
                     int64_t now_ms, uint64_t *seqs, size_t *done)
{
    sl_stream *s = sh->s;
    size_t i = 0;
    int rc;
    pthread_mutex_lock(&sh->lock);
    if ((rc = sl__stream_check_writable(s)) != 0) goto out;
    if (SL_UNLIKELY(!atomic_load_explicit(&sh->open, memory_order_relaxed))) {
        rc = SL__RESHARDED;             /* closed since the caller routed */
        goto out;
    }
    if (SL_UNLIKELY(sh->seq_end - sh->seq_next < n)) {
        /* a new block of numbers for this shard: the stream-wide counter
        ** (an atomic shared by every writer thread) is touched once per
        ** block, not per record.  Numbers stay unique in the stream and
        ** increasing in the shard; across shards they interleave, which
        ** Kinesis does not promise either. */
        uint64_t want = n > SEQ_SHARD_BLOCK ? n : SEQ_SHARD_BLOCK, f;
        if ((rc = sl__stream_take_seqs(s, want, &f)) != 0) goto out;
        sh->seq_next = f;
        sh->seq_end = f + want;
    }
    uint64_t first = sh->seq_next;
    sh->seq_next += n;
    int64_t ms = now_ms > sh->last_ms ? now_ms : sh->last_ms;
    /* encryption: the current key, read once per batch (a rotation takes
    ** effect at the next batch) */
    const sl_dkey *key = atomic_load_explicit(&s->enc_key, memory_order_acquire);
    sl_seal seal, *e = NULL;
    if (SL_UNLIKELY(key != NULL)) {
        seal = (sl_seal){key, s->nonce_salt, sh->index, s->man.stream_id, &sh->cctx,
                         &sh->cctx_ver};
        e = &seal;
    }
    for (; i < n; i++) {
        const sl_pending *r = &recs[i];
        uint64_t span = sl__pad8(sl__rec_bytes(e ? SL_REC_ENC : 0, r->klen, r->dlen));
        sl_seg *g = sh->active;
        if (SL_UNLIKELY(!g || !sl__seg_fits(g, span))) {
            if (g && i) sl__seg_publish(g);
            if ((rc = roll(sh, span)) != 0) break;
            g = sh->active;
        }
        if (SL_UNLIKELY((rc = sl__seg_append(g, first + i, ms, r->key, r->klen, r->data,
                                             r->dlen, e)) != 0))
            break;
        seqs[i] = first + i;
    }
    if (i) {
        /* after a failed roll-over the records are in the sealed segment,
        ** already published by the seal */
        if (sh->active) sl__seg_publish(sh->active);
        sh->last_seq = first + i - 1;
        sh->last_ms = ms;
    }
out:;
    /* past the kick point: the preparer should populate further ahead */
    sl_seg *a = sh->active;
    bool kick = a && a->tail > atomic_load_explicit(&a->kick_at, memory_order_relaxed);
    if (kick) atomic_store_explicit(&a->kick_at, UINT64_MAX, memory_order_relaxed);
    pthread_mutex_unlock(&sh->lock);
    if (i) sl__shard_wake(sh);
    if (kick) sl__stream_kick(s);
    *done = i;
    return rc;
}

/* ---- the preparer's work ---------------------------------------------------
** Populating pages (MADV_POPULATE_WRITE) makes the kernel allocate and zero
** page-cache folios: the largest cost of appending to a fresh file.  Done
** here, on the preparer thread, a window ahead of the tail, the writer's
** copies meet pages that exist.  The window is bounded so that few zero
** pages are dirtied long before use (they would be written back twice). */
#define PREP_WINDOW (8u << 20)

/* Remove the .tmp and .spare files a dead writer left (preparer thread). */
static void remove_leftovers(sl_shard *sh)
{
    DIR *d = opendir(sh->dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint64_t ord;
        bool corrupt, tmp;
        if (!parse_seg_name(e->d_name, &ord, &corrupt, &tmp) || !tmp) continue;
        /* only the dead writer's: ours are numbered from next_ordinal on */
        pthread_mutex_lock(&sh->lock);
        bool theirs = ord < sh->first_own_ordinal;
        pthread_mutex_unlock(&sh->lock);
        char *p;
        if (theirs && asprintf(&p, "%s/%s", sh->dir, e->d_name) >= 0) {
            /* beside a live segment it is a rewrite's (compaction ".tmp",
            ** cold ".rw"), which this process's maintenance may be writing
            ** right now: left to the next rewrite of that segment, which
            ** removes a stale one first (or to a later open, once the
            ** segment is deleted) */
            size_t seg_len = strlen(p) - strlen(e->d_name) + SEG_NAME_LEN;
            char c = p[seg_len];
            p[seg_len] = '\0';
            bool live = access(p, F_OK) == 0;
            p[seg_len] = c;
            if (!live) sl__os.unlink(p);
            free(p);
        }
    }
    closedir(d);
}

bool sl__shard_prepare(sl_shard *sh)
{
    sl_stream *s = sh->s;
    bool ok = true;
    if (SL_UNLIKELY(__atomic_load_n(&sh->leftovers, __ATOMIC_ACQUIRE))) {
        __atomic_store_n(&sh->leftovers, false, __ATOMIC_RELEASE);
        remove_leftovers(sh);
    }
    pthread_mutex_lock(&sh->seglock);
    sl_seg *g = sh->active;
    if (g) g->users++;
    pthread_mutex_unlock(&sh->seglock);
    uint64_t tail = 0;
    if (g) {
        tail = __atomic_load_n(sl__hdr64(g, SL_H_COMMIT_TAIL), __ATOMIC_ACQUIRE);
        if (!sl__seg_is_sealed(g)) {
            uint64_t upto = tail + PREP_WINDOW;
            if (atomic_load_explicit(&g->pf_end, memory_order_relaxed) < upto) {
                ok = sl__seg_populate(g, upto) == 0;
                uint64_t pf = atomic_load_explicit(&g->pf_end, memory_order_relaxed);
                atomic_store_explicit(&g->kick_at, pf - PREP_WINDOW / 2 > tail ? pf - PREP_WINDOW / 2 : tail,
                                      memory_order_relaxed);
            }
        }
        sl__shard_put_seg(sh, g);
    }
    /* the next segment, once the active one is half full */
    pthread_mutex_lock(&sh->lock);
    bool want = !sh->spare && sh->active == g && g && !atomic_load(&s->failed) &&
                tail > g->file_bytes / 2;
    uint64_t ordinal = sh->next_ordinal;
    pthread_mutex_unlock(&sh->lock);
    /* under a size cap, a spare only where it fits (the roll-over makes
    ** room itself, by the cap's policy) */
    if (want && sl__cap_tight(s, s->man.segment_bytes)) want = false;
    if (want) {
        sl_segctx c;
        sl__segctx_init(&c, sh);
        sl_seg *sp;
        /* a failure here (a full disk) is the writer's to report, when it
        ** needs the segment */
        if (sl__seg_prepare(&sp, &c, sh->dir, ordinal, s->man.segment_bytes, true) == 0) {
            if (ok) sl__seg_populate(sp, SL_SEG_HDR + PREP_WINDOW);
            pthread_mutex_lock(&sh->lock);
            if (!sh->spare && sh->next_ordinal == ordinal) {
                sh->spare = sp;
                atomic_store_explicit(&sh->spare_bytes, sp->file_bytes, memory_order_relaxed);
                sp = NULL;
            }
            pthread_mutex_unlock(&sh->lock);
            sl__seg_discard(sp);
        }
    }
    return ok;
}

/* ---- retention (see retention.c) ----------------------------------------- */

uint64_t sl__shard_disk_bytes(sl_shard *sh)
{
    uint64_t sum = 0;
    pthread_mutex_lock(&sh->seglock);
    for (size_t i = 0; i < sh->nseg; i++) {
        sl_seg *g = sh->segs[i];
        if (!g->file_bytes) {           /* a stub: its size, once */
            struct stat st;
            if (stat(g->path, &st) == 0) g->file_bytes = (uint64_t)st.st_size;
        }
        sum += g->file_bytes;
    }
    pthread_mutex_unlock(&sh->seglock);
    /* not under sh->lock: roll-over asks while holding it */
    return sum + atomic_load_explicit(&sh->spare_bytes, memory_order_relaxed);
}

/* The oldest segment, loaded, if it is sealed and not the writer's (caller
** holds seglock).  NULL otherwise. */
static sl_seg *oldest_sealed_locked(sl_shard *sh, int *rc)
{
    *rc = 0;
    while (sh->nseg && !sh->segs[0]->loaded && (*rc = ensure_loaded(sh, 0)) == 0)
        ;
    if (*rc || !sh->nseg) return NULL;
    sl_seg *g = sh->segs[0];
    return g != sh->active && sl__seg_is_sealed(g) ? g : NULL;
}

bool sl__shard_oldest_sealed(sl_shard *sh, int64_t *last_ms)
{
    int rc;
    pthread_mutex_lock(&sh->seglock);
    sl_seg *g = oldest_sealed_locked(sh, &rc);
    if (g) *last_ms = g->last_ms;
    pthread_mutex_unlock(&sh->seglock);
    return g != NULL;
}

/* <shard>/GONE: {u64 gone_seq, u64 XXH3 of those 8 bytes}, replaced
** atomically before a segment file is deleted, so that after a reopen the
** shard still knows how far its records were removed, even when nothing of
** it is left.  A missing file means 0 (nothing was ever deleted); a damaged
** one, that the oldest remaining segment tells, if it is not the shard's
** first (sl__shard_gone_seq). */
#define GONE_FILE "GONE"

static int gone_write(sl_shard *sh, uint64_t gone)
{
    uint8_t b[16];
    sl__st64(b, gone);
    sl__st64(b + 8, sl__xxh3(b, 8));
    char *path;
    if (asprintf(&path, "%s/%s", sh->dir, GONE_FILE) < 0)
        return sl__err(SL_ENOMEM, "writing %s/GONE", sh->dir);
    int rc = sl__os_replace_file(path, b, sizeof b) == 0
                 ? 0
                 : sl__errno(sl__errno_code(errno), errno, "writing %s", path);
    free(path);
    return rc;
}

static int gone_read(sl_shard *sh, uint64_t *gone)
{
    char *path, *buf = NULL;
    size_t len = 0;
    int rc = 0;
    *gone = 0;
    if (asprintf(&path, "%s/%s", sh->dir, GONE_FILE) < 0)
        return sl__err(SL_ENOMEM, "reading %s/GONE", sh->dir);
    if (sl__os_read_file(path, &buf, &len, 64) == 0) {
        if (len == 16 && sl__xxh3(buf, 8) == sl__ld64(buf + 8)) *gone = sl__ld64(buf);
        else sh->gone_unknown = true;
    } else if (errno == EFBIG || errno == ENODATA) {
        sh->gone_unknown = true;
    } else if (errno != ENOENT) {
        /* missing or damaged means 0; unreadable is an error (taken for 0,
        ** positions in deleted records would no longer be trimmed) */
        rc = sl__errno(SL_EIO, errno, "reading %s", path);
    }
    free(buf);
    free(path);
    return rc;
}

int sl__shard_drop_oldest(sl_shard *sh, int64_t horizon, uint64_t *freed, bool *did)
{
    int rc;
    *did = false;
    *freed = 0;
    pthread_mutex_lock(&sh->drop_mu);           /* one deleter per shard */
    pthread_mutex_lock(&sh->seglock);
    sl_seg *g = oldest_sealed_locked(sh, &rc);
    bool go = g && (horizon == INT64_MAX || g->last_ms <= horizon);
    uint64_t gone = sh->gone_seq, ord = g ? g->ordinal : 0;
    if (go && g->last_seq > gone) gone = g->last_seq;
    pthread_mutex_unlock(&sh->seglock);
    /* first the record of how far records are gone, then the list, then
    ** the file (readers of the segment keep their mapping) */
    if (go && gone > sh->gone_seq && (rc = gone_write(sh, gone)) != 0) go = false;
    char *path = NULL;
    if (go) {
        pthread_mutex_lock(&sh->seglock);
        g = sh->nseg ? sh->segs[0] : NULL;
        if (g && g->ordinal == ord) {               /* still the oldest */
            memmove(&sh->segs[0], &sh->segs[1], (sh->nseg - 1) * sizeof *sh->segs);
            sh->nseg--;
            sh->gone_seq = gone;
            *freed = g->file_bytes;
            path = strdup(g->path);
            g->removed = true;
            if (g->users == 0) sl__seg_free(g);
            else g = NULL;                           /* the last unpin frees it */
            if (!path) rc = sl__err(SL_ENOMEM, "deleting a segment of %s", sh->id);
        }
        pthread_mutex_unlock(&sh->seglock);
    }
    if (path) {
        if (sl__os.unlink(path) != 0 && errno != ENOENT)
            rc = sl__errno(SL_EIO, errno, "deleting %s", path);
        free(path);
        *did = true;
    }
    pthread_mutex_unlock(&sh->drop_mu);
    return rc;
}

/* Seal the active segment, leaving the shard without one (the next put
** makes a new one).  Caller holds sh->lock. */
static int seal_active_locked(sl_shard *sh)
{
    sl_seg *old = sh->active;
    sl_segctx c;
    sl__segctx_init(&c, sh);
    if (old->count == 0) {              /* carry keys (see carry_keys) */
        old->first_seq = old->last_seq = sh->last_seq;
        old->first_ms = old->last_ms = sh->last_ms;
    }
    int rc = sl__seg_seal(old, &c);
    if (rc) {
        sl__stream_fail(sh->s, EIO, sl__errtext());
        return rc;
    }
    if (c.sync_now) sl__gc_advance(&sh->gc, old->last_seq);
    pthread_mutex_lock(&sh->seglock);
    old->durable = c.sync_now;
    sh->active = NULL;
    unpin_locked(sh, old);
    pthread_mutex_unlock(&sh->seglock);
    return 0;
}

int sl__shard_seal_expired(sl_shard *sh, int64_t horizon, bool *did)
{
    *did = false;
    int rc = 0;
    pthread_mutex_lock(&sh->lock);
    sl_seg *old = sh->active;
    if (old && old->tail > SL_SEG_HDR && sh->last_ms <= horizon)
        *did = (rc = seal_active_locked(sh)) == 0;
    pthread_mutex_unlock(&sh->lock);
    if (*did) sl__shard_wake(sh);
    return rc;
}

int sl__shard_close_begin(sl_shard *sh, uint64_t *last_seq)
{
    pthread_mutex_lock(&sh->lock);
    int rc = sh->active ? seal_active_locked(sh) : 0;
    *last_seq = sh->last_seq;
    return rc;
}

void sl__shard_close_end(sl_shard *sh, bool closed, uint64_t end_seq)
{
    if (closed) {
        atomic_store(&sh->end_seq, end_seq);
        atomic_store_explicit(&sh->open, false, memory_order_release);
        sl__seg_discard(sh->spare);     /* a closed shard takes no segment */
        sh->spare = NULL;
        atomic_store_explicit(&sh->spare_bytes, 0, memory_order_relaxed);
    }
    pthread_mutex_unlock(&sh->lock);
    sl__shard_wake(sh);                 /* readers waiting at its end */
}

int sl__shard_pin_ordinal(sl_shard *sh, uint64_t ordinal, sl_seg **out)
{
    *out = NULL;
    pthread_mutex_lock(&sh->seglock);
    int rc = 0;
    for (size_t i = 0; i < sh->nseg && rc == 0; i++) {
        if (sh->segs[i]->ordinal != ordinal) continue;
        rc = load_pin_locked(sh, i, out);
        if (*out && (*out)->ordinal != ordinal) {   /* it proved unusable */
            unpin_locked(sh, *out);
            *out = NULL;
        }
        break;
    }
    pthread_mutex_unlock(&sh->seglock);
    return rc;
}

int sl__shard_replace(sl_shard *sh, uint64_t ordinal, const char *tmp_path)
{
    char *path = sl__seg_path(sh->dir, ordinal);
    if (!path) return sl__err(SL_ENOMEM, "replacing a segment of %s", sh->id);
    int rc = 0;
    /* the new file is whole and synced: renaming it over the old one is the
    ** one step that switches, atomically */
    if (sl__os.rename(tmp_path, path) != 0) {
        rc = sl__errno(sl__errno_code(errno), errno, "renaming %s", tmp_path);
        sl__os.unlink(tmp_path);
        free(path);
        return rc;
    }
    if (sl__os_fsync_dir(sh->dir) != 0)
        rc = sl__errno(SL_EIO, errno, "syncing directory %s", sh->dir);
    sl_segctx c;
    sl__segctx_init(&c, sh);
    sl_seg *ng = NULL;
    pthread_mutex_lock(&sh->seglock);
    int orc = sl__seg_open(&ng, &c, path, ordinal, !sh->s->readonly, false, true);
    if (orc == 0 && ng) {
        ng->durable = true;
        ng->dir_durable = rc == 0;
        for (size_t i = 0; i < sh->nseg; i++) {
            if (sh->segs[i]->ordinal != ordinal) continue;
            sl_seg *old = sh->segs[i];
            sh->segs[i] = ng;
            ng = NULL;
            old->removed = true;        /* readers in it keep the old file */
            if (old->users == 0) sl__seg_free(old);
            break;
        }
    }
    pthread_mutex_unlock(&sh->seglock);
    sl__seg_free(ng);                   /* deleted meanwhile: not needed */
    free(path);
    return rc ? rc : orc;
}

uint64_t sl__shard_gone_seq(sl_shard *sh)
{
    int rc;
    pthread_mutex_lock(&sh->seglock);
    uint64_t gone = sh->gone_seq;
    /* Every deletion writes GONE first, so a missing GONE means nothing was
    ** deleted.  (An oldest segment that is not the shard's first does not
    ** tell: a dead writer's spare or half-made segment takes an ordinal that
    ** no segment ever gets, and a shard's first segment may be number 2.)
    ** Only a damaged GONE leaves the oldest segment to tell: everything
    ** below it may have been deleted. */
    if (sh->gone_unknown && sh->nseg) {
        while (sh->nseg && !sh->segs[0]->loaded && (rc = ensure_loaded(sh, 0)) == 0)
            ;
        if (sh->nseg && sh->segs[0]->ordinal > 1 && sh->segs[0]->first_seq > gone + 1 &&
            sh->segs[0]->count)
            gone = sh->segs[0]->first_seq - 1;
    }
    pthread_mutex_unlock(&sh->seglock);
    return gone;
}

/* ---- durability --------------------------------------------------------- */

int sl__seg_file_sync(const char *path, bool *did)
{
    *did = false;
    int fd = sl__os.open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return errno == ENOENT ? 0 : sl__errno(SL_EIO, errno, "opening %s", path);
    uint8_t b[8];
    uint64_t boot = sl__boot_id();
    bool earlier = boot && sl__os_pread_all(fd, b, sizeof b, SL_H_BOOT) == 0 &&
                   sl__ld64(b) != 0 && sl__ld64(b) != boot;
    int rc = 0;
    if (!earlier) {
        if (sl__os.fdatasync(fd) != 0) rc = sl__errno(SL_EIO, errno, "syncing %s", path);
        else *did = true;
    }
    sl__os.close(fd);
    return rc;
}

/* Segment files written before this handle opened (not mapped for
** writing): sync each by path once (sl__seg_file_sync), then mark it
** durable.  Frees paths. */
static int sync_inherited(sl_shard *sh, char **paths, size_t n, int rc)
{
    for (size_t i = 0; i < n; i++) {
        bool did;
        if (rc == 0 && paths[i] && (rc = sl__seg_file_sync(paths[i], &did)) == 0) {
            /* the list holds the file by path; its entry may have been
            ** replaced (a stub loaded) meanwhile */
            pthread_mutex_lock(&sh->seglock);
            for (size_t k = 0; k < sh->nseg; k++)
                if (strcmp(sh->segs[k]->path, paths[i]) == 0) sh->segs[k]->durable = true;
            pthread_mutex_unlock(&sh->seglock);
        }
        free(paths[i]);
    }
    free(paths);
    return rc;
}

/* One sync round.  Under the append lock (where roll-overs happen) take a
** consistent picture: the last sequence number, the active segment with its
** mark, and every sealed segment not yet synced (sealing syncs only in
** ALWAYS mode).  Every record up to that number is in one of them.  Then
** sync them all outside the lock.  One round runs per shard at a time (the
** caller leads the group commit). */
static int sync_round(sl_shard *sh, uint64_t *upto)
{
    sl_segmark m;
    pthread_mutex_lock(&sh->lock);
    pthread_mutex_lock(&sh->seglock);
    *upto = sh->last_seq;
    sl_seg *act = sh->active;
    size_t n = 0;
    /* usually the active segment alone, or a few sealed ones with it: no
    ** allocation on the group-commit path unless the list is long */
    sl_seg *local[16], **todo = sh->nseg <= 16 ? local : malloc(sh->nseg * sizeof *todo);
    int rc = todo ? 0 : sl__err(SL_ENOMEM, "syncing %s", sh->id);
    bool new_names = false;             /* segments created without a
                                           directory sync (not ALWAYS) */
    size_t nsnap = sh->nseg;
    size_t ninh = 0;                    /* inherited files, synced by path */
    char **inh = NULL;
    for (size_t i = 0; rc == 0 && i < sh->nseg; i++) {
        sl_seg *x = sh->segs[i];
        new_names |= !x->dir_durable;
        if (x == act || x->durable) continue;
        if (!x->writable) {
            if (!inh && !(inh = calloc(sh->nseg, sizeof *inh)))
                rc = sl__err(SL_ENOMEM, "syncing %s", sh->id);
            else if (!(inh[ninh++] = strdup(x->path)))
                rc = sl__err(SL_ENOMEM, "syncing %s", sh->id);
        } else if (sl__seg_is_sealed(x) && (rc = pin_locked(sh, x)) == 0) {
            todo[n++] = x;
        }
    }
    if (rc == 0 && act) {
        sl__seg_mark(act, &m);
        act->users++;                   /* keep the mapping while we sync */
    }
    pthread_mutex_unlock(&sh->seglock);
    pthread_mutex_unlock(&sh->lock);
    if (rc == 0 && new_names && sl__os_fsync_dir(sh->dir) != 0)
        rc = sl__errno(SL_EIO, errno, "syncing directory %s", sh->dir);
    if (ninh) rc = sync_inherited(sh, inh, ninh, rc);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) rc = sl__seg_sync_sealed(todo[i]);
        pthread_mutex_lock(&sh->seglock);
        if (rc == 0) todo[i]->durable = true;
        unpin_locked(sh, todo[i]);
        pthread_mutex_unlock(&sh->seglock);
    }
    if (act) {
        if (rc == 0) rc = sl__seg_sync(act, &m, sh->s->durability != SL_DURABILITY_ALWAYS);
        sl__shard_put_seg(sh, act);
    }
    if (rc == 0 && new_names) {
        /* every segment that existed at the snapshot now has a durable name
        ** (the list only grows at its end) */
        pthread_mutex_lock(&sh->seglock);
        for (size_t k = 0; k < nsnap; k++) sh->segs[k]->dir_durable = true;
        pthread_mutex_unlock(&sh->seglock);
    }
    if (todo != local) free(todo);
    if (rc && rc != SL_ENOMEM) sl__stream_fail(sh->s, EIO, sl__errtext());
    return rc;
}

static int shard_round(void *ctx, uint64_t *upto) { return sync_round(ctx, upto); }

int sl__shard_wait_durable(sl_shard *sh, uint64_t seq)
{
    return sl__gc_wait(&sh->gc, seq, shard_round, sh, sh->s, sh->id);
}

int sl__shard_sync(sl_shard *sh)
{
    pthread_mutex_lock(&sh->lock);
    uint64_t last = sh->last_seq;
    pthread_mutex_unlock(&sh->lock);
    return sl__shard_wait_durable(sh, last);
}
