/*
** commit.c -- durable commits: the group-commit engine, and ALWAYS mode's
** commit journal.
**
** Group commit (sl_gc).  A thread that needs its records durable calls
** sl__gc_wait with a target: a shard's sequence number, or a journal ticket.
** One thread at a time leads: it runs rounds (a callback that makes all
** that is committed durable and says up to which target), moves `done`, and
** wakes just the waiters the round covered (each sleeps on its own
** condition: a broadcast to every waiter after every round cost more than
** the round).  While others wait, the leader runs up to two more rounds, then
** hands the lead to a waiter (the newest, who has the most to make durable):
** the next round starts at once instead of after a wake-up.
**
** The journal.  In ALWAYS mode a round used to sync each touched shard's
** segment: a device flush per shard (four for a batch over four shards),
** and a sync of mapped pages costs more than one of written pages.  Instead
** a round copies what every shard committed since the last round, straight
** from the mappings, into one file with pwritev, and makes it durable with
** one fdatasync:
**
**   <stream>/JOURNAL   written with zeros when made (so overwriting it
**                      changes no file metadata), used in laps
**   frame: a 64-byte header, then its entries (little-endian, 8-aligned)
**      0 u32 magic "SLJF"    4 u32 version (1)    8 u64 lap id (random)
**     16 u64 frame bytes    24 u32 entries       28 u32 0
**     32 u64 0, 0, 0        56 u64 XXH3-64 of the frame with this field 0
**   entry: a 32-byte header, then `len` bytes copied from the segment
**      0 u32 shard index     4 u32 0              8 u64 segment ordinal
**     16 u64 offset         24 u64 len (a multiple of 8)
**
** A lap starts at offset 0 with a new random id, and frames follow each
** other.  When a round's frame does not fit in what is left, the round
** becomes a checkpoint instead: every shard's segment is synced (all the lap
** held is then in the segments) and the next round starts a new lap.  The
** journal starts at 1 MiB and doubles, up to 64 MiB, when a lap lasted less
** than a second.  A clean close checkpoints and clears frame 0's header.
** Sealing still syncs the sealed segment (and a new segment's header and
** name), so only active segments have records that live in the journal.
**
** Recovery (every writer open, before the shards load): if frame 0 is
** valid, read the lap's frames in order until one is not (another lap's,
** torn, past the end) and write each entry's bytes into its segment where
** they differ.  After a process crash none differ (the page cache kept
** them); after a power cut the acknowledged records come back.  Then
** fdatasync the segments touched and clear frame 0.  The segments' own
** recovery then finds the records (it verifies every one).  A segment that
** no longer exists (retention) or is sealed on disk (sealing synced it; a
** rewrite by compaction or cold storage may have moved its bytes) is
** skipped.
*/
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

/* ---- group commit --------------------------------------------------------- */

typedef struct sl_waiter {
    struct sl_waiter *next;
    uint64_t target;
    pthread_cond_t cv;
    bool done, lead;
} sl_waiter;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Spinning is bounded by time (a `pause` costs 10 to 140 cycles depending
** on the core): a waiter spins up to GC_SPIN_NS before it sleeps. */
#define GC_SPIN_NS 200000
static inline void gc_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

void sl__gc_init(sl_gc *g)
{
    pthread_mutex_init(&g->mu, NULL);
    g->leading = false;
    g->done = 0;
    g->waiters = NULL;
    g->spin = sysconf(_SC_NPROCESSORS_ONLN) > 1;   /* never on one CPU */
}

void sl__gc_destroy(sl_gc *g) { pthread_mutex_destroy(&g->mu); }

/* Caller holds g->mu: wake every waiter `done` now covers. */
static void wake_covered(sl_gc *g)
{
    for (sl_waiter **pp = &g->waiters; *pp;) {
        sl_waiter *w = *pp;
        if (w->target <= g->done) {
            *pp = w->next;
            __atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
            pthread_cond_signal(&w->cv);
        } else {
            pp = &w->next;
        }
    }
}

void sl__gc_advance(sl_gc *g, uint64_t upto)
{
    pthread_mutex_lock(&g->mu);
    if (upto > g->done) g->done = upto;
    wake_covered(g);
    pthread_mutex_unlock(&g->mu);
}

static int failed_err(const char *what)
{
    return sl__err(SL_EIO, "%s: an earlier sync failed; the stream takes no more writes",
                   what);
}

int sl__gc_wait(sl_gc *g, uint64_t target, sl_gc_round round, void *ctx,
                sl_stream *s, const char *what)
{
    int rc = 0;
    pthread_mutex_lock(&g->mu);
    if (g->done >= target) goto out;
    if (g->leading) {
        sl_waiter w = {g->waiters, target, PTHREAD_COND_INITIALIZER, false, false};
        g->waiters = &w;
        if (!w.next && g->spin) {
            /* the only waiter: one round away.  A sleep and a wake-up cost
            ** about 30 us on a virtual machine, a quarter of a round, and
            ** with two committers every round paid it; so spin for about
            ** a round first.  (With more waiters, the rounds are full.) */
            pthread_mutex_unlock(&g->mu);
            uint64_t until = mono_ns() + GC_SPIN_NS;
            for (int i = 0; !__atomic_load_n(&w.done, __ATOMIC_ACQUIRE) &&
                            !__atomic_load_n(&w.lead, __ATOMIC_ACQUIRE);
                 i++) {
                gc_pause();
                if ((i & 63) == 63 && mono_ns() > until) break;
            }
            pthread_mutex_lock(&g->mu);
        }
        while (!w.done && !w.lead) pthread_cond_wait(&w.cv, &g->mu);
        pthread_cond_destroy(&w.cv);
        if (w.done) {
            if (g->done < target) rc = failed_err(what);
            goto out;
        }
        /* promoted: lead from here (leading stayed true) */
    } else {
        g->leading = true;
    }
    for (int extra = 0;; extra++) {
        if (atomic_load(&s->failed)) {
            rc = failed_err(what);
            break;
        }
        pthread_mutex_unlock(&g->mu);
        uint64_t upto = 0;
        rc = round(ctx, &upto);
        pthread_mutex_lock(&g->mu);
        if (rc) break;
        if (upto > g->done) g->done = upto;
        wake_covered(g);
        if (g->done >= target && (!g->waiters || extra >= 2)) break;
    }
    if (rc) {                           /* the stream is failed: release all */
        while (g->waiters) {
            sl_waiter *w = g->waiters;
            g->waiters = w->next;
            __atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
            pthread_cond_signal(&w->cv);
        }
    }
    if (g->waiters) {                   /* hand the lead on; leading stays */
        sl_waiter *w = g->waiters;
        g->waiters = w->next;
        __atomic_store_n(&w->lead, true, __ATOMIC_RELEASE);
        pthread_cond_signal(&w->cv);
    } else {
        g->leading = false;
    }
out:
    pthread_mutex_unlock(&g->mu);
    return rc;
}

/* ---- the journal ------------------------------------------------------------ */

#define JR_MAGIC 0x464A4C53u            /* "SLJF" */
#define JR_VERSION 1u
#define JR_FRAME_HDR 64u
#define JR_ENTRY_HDR 32u
#define JR_MIN_BYTES (1u << 20)
#define JR_MAX_BYTES (64u << 20)
#define JR_FAST_LAP_NS 1000000000ull    /* a lap shorter than this grows it */
#define JR_GATHER_NS 30000              /* a round waits this long at most for
                                           the committers of the last one */

typedef struct jr_span {                /* one shard's part of a round */
    sl_shard *sh;
    sl_seg *g;                          /* pinned */
    size_t i;                           /* shard position */
    uint64_t from, to;
} jr_span;

struct sl_journal {
    int fd;
    char *path;
    uint64_t cap, head, lap;
    uint64_t lap_start_ns;
    _Atomic uint64_t tickets;           /* commits that asked to be durable */
    uint64_t covered;                   /* (leader) tickets the rounds covered */
    uint64_t last_round;                /* (leader) commits in the last round */
    sl_gc gc;
    /* per shard (by position in s->shards; sized at open, so resharding
    ** will have to grow them), owned by the round's leader: the segment and
    ** offset from which its records are not yet durable */
    size_t n;
    uint64_t *ord, *off;
    jr_span *spans;
    struct iovec *iov;
    uint8_t *ehdr;
    XXH3_state_t *xs;
    uint64_t replayed;                  /* bytes recovery wrote (tests) */
};

static char *jr_path(const sl_stream *s)
{
    char *p;
    return asprintf(&p, "%s/%s", s->dir, SL_JOURNAL_FILE) < 0 ? NULL : p;
}

/* Frame header fields that recovery checks before trusting the size. */
static bool frame_hdr_ok(const uint8_t h[JR_FRAME_HDR], uint64_t lap, uint64_t off,
                         uint64_t file_bytes)
{
    uint64_t bytes = sl__ld64(h + 16);
    return sl__ld32(h) == JR_MAGIC && sl__ld32(h + 4) == JR_VERSION &&
           sl__ld64(h + 8) == lap && bytes >= JR_FRAME_HDR && bytes % 8 == 0 &&
           bytes <= file_bytes - off && sl__ld32(h + 28) == 0;
}

/* ---- recovery ---- */

typedef struct jr_file {                /* a segment recovery writes into */
    uint32_t shard;
    uint64_t ordinal;
    int fd;                             /* -1: missing, skip its entries */
    uint64_t bytes;
    bool wrote;
} jr_file;

typedef struct jr_replay {
    sl_stream *s;
    jr_file *f;
    size_t nf, capf;
    uint64_t wrote;
} jr_replay;

static jr_file *replay_file(jr_replay *r, uint32_t shard, uint64_t ordinal, int *rc)
{
    for (size_t k = 0; k < r->nf; k++)
        if (r->f[k].shard == shard && r->f[k].ordinal == ordinal) return &r->f[k];
    if (r->nf == r->capf) {
        size_t cap = r->capf ? 2 * r->capf : 8;
        jr_file *f = realloc(r->f, cap * sizeof *f);
        if (!f) {
            *rc = sl__err(SL_ENOMEM, "replaying the journal");
            return NULL;
        }
        r->f = f;
        r->capf = cap;
    }
    jr_file *f = &r->f[r->nf++];
    *f = (jr_file){shard, ordinal, -1, 0, false};
    char id[SL_SHARD_ID_LEN + 1], *dir, *path = NULL;
    sl__shard_id(id, shard);
    if (asprintf(&dir, "%s/%s", r->s->dir, id) >= 0) {
        path = sl__seg_path(dir, ordinal);
        free(dir);
    }
    if (!path) {
        *rc = sl__err(SL_ENOMEM, "replaying the journal");
        return NULL;
    }
    f->fd = sl__os.open(path, O_RDWR | O_CLOEXEC, 0);
    struct stat st;
    uint8_t h[SL_SEG_HDR];
    int hr = f->fd >= 0 ? sl__os_pread_all(f->fd, h, sizeof h, 0) : -1;
    if (hr != 0 && f->fd >= 0 && errno != ENODATA) {
        /* unreadable is not unsealed: replaying into a segment rewritten
        ** since would overwrite it (the descriptor closes with the others) */
        *rc = sl__errno(SL_EIO, errno, "reading %s", path);
        free(path);
        return NULL;
    }
    if (hr == 0 && (sl__ld32(h + 12) != 0 || sl__ld32(h + SL_H_STATE) == SL_STATE_SEALED)) {
        /* sealed on disk: sealing synced it (ALWAYS), so the journal holds
        ** nothing it lacks -- and it may since have been rewritten (key
        ** compaction, cold storage), where the lap's offsets mean nothing */
        sl__os.close(f->fd);
        f->fd = -1;
    } else if (f->fd >= 0 && fstat(f->fd, &st) == 0) {
        f->bytes = (uint64_t)st.st_size;
    } else if (f->fd < 0 && errno != ENOENT) {
        *rc = sl__errno(SL_EIO, errno, "opening %s", path);
        free(path);
        return NULL;
    }
    free(path);
    return f;
}

/* Write `len` journal bytes at `off` of segment f where they differ. */
static int replay_entry(jr_replay *r, jr_file *f, uint64_t off, const uint8_t *p,
                        uint64_t len)
{
    uint8_t buf[65536];
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done < sizeof buf ? (size_t)(len - done) : sizeof buf;
        if (sl__os_pread_all(f->fd, buf, n, (off_t)(off + done)) != 0)
            return sl__errno(SL_EIO, errno, "reading a segment of shard %u", f->shard);
        if (memcmp(buf, p + done, n) != 0) {
            if (sl__os_pwrite_all(f->fd, p + done, n, (off_t)(off + done)) != 0)
                return sl__errno(sl__errno_code(errno), errno,
                                 "restoring records of shard %u from the journal", f->shard);
            f->wrote = true;
            r->wrote += n;
        }
        done += n;
    }
    return 0;
}

static int replay_frame(jr_replay *r, const uint8_t *fr, uint64_t bytes)
{
    uint32_t n = sl__ld32(fr + 24);
    uint64_t at = JR_FRAME_HDR;
    for (uint32_t k = 0; k < n; k++) {
        if (bytes - at < JR_ENTRY_HDR) return 0;            /* cannot happen */
        const uint8_t *e = fr + at;
        uint32_t shard = sl__ld32(e);
        uint64_t ordinal = sl__ld64(e + 8), off = sl__ld64(e + 16), len = sl__ld64(e + 24);
        at += JR_ENTRY_HDR;
        if (len > bytes - at) return 0;
        int rc = 0;
        jr_file *f = replay_file(r, shard, ordinal, &rc);
        if (!f) return rc;
        if (f->fd >= 0) {
            if (off < SL_SEG_HDR || off > f->bytes || len > f->bytes - off) {
                sl__stream_report(r->s, SL_ECORRUPT,
                                  "journal: an entry for shard %u segment %016" PRIx64
                                  " lies outside the file; skipped",
                                  shard, ordinal);
            } else if ((rc = replay_entry(r, f, off, fr + at, len)) != 0) {
                return rc;
            }
        }
        at += len;
    }
    return 0;
}

static int clear_frame0(int fd, const char *path)
{
    static const uint8_t zero[JR_FRAME_HDR];
    if (sl__os_pwrite_all(fd, zero, sizeof zero, 0) != 0 || sl__os.fdatasync(fd) != 0)
        return sl__errno(SL_EIO, errno, "clearing %s", path);
    return 0;
}

int sl__journal_recover(sl_stream *s, bool keep_file)
{
    char *path = jr_path(s);
    if (!path) return sl__err(SL_ENOMEM, "allocating a path");
    int fd = sl__os.open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        free(path);
        return e == ENOENT ? 0 : sl__errno(SL_EIO, e, "opening the journal of %s", s->dir);
    }
    jr_replay r = {s, NULL, 0, 0, 0};
    uint8_t h[JR_FRAME_HDR], *fr = NULL;
    size_t frcap = 0;
    int rc = 0;
    struct stat st;
    uint64_t file_bytes = fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    if (file_bytes < JR_FRAME_HDR) goto done;
    if (sl__os_pread_all(fd, h, sizeof h, 0) != 0) {
        /* unreadable is not empty: it stays, for an open that can read it */
        rc = sl__errno(SL_EIO, errno, "reading %s", path);
        goto done;
    }
    if (sl__ld32(h) != JR_MAGIC) goto done;     /* cleared or never used */
    if (sl__ld32(h + 4) != JR_VERSION) {
        /* a newer library's journal: clearing it could lose records */
        rc = sl__err(SL_ECORRUPT, "%s: journal format version %u; this library reads version %u",
                     path, sl__ld32(h + 4), JR_VERSION);
        goto done;
    }
    uint64_t lap = sl__ld64(h + 8);
    for (uint64_t off = 0; off + JR_FRAME_HDR <= file_bytes;) {
        if (sl__os_pread_all(fd, h, sizeof h, (off_t)off) != 0) {
            rc = sl__errno(SL_EIO, errno, "reading %s", path);
            break;
        }
        if (!frame_hdr_ok(h, lap, off, file_bytes)) break;
        uint64_t bytes = sl__ld64(h + 16);
        if (bytes > frcap) {
            uint8_t *nb = realloc(fr, (size_t)bytes);
            if (!nb) {
                rc = sl__err(SL_ENOMEM, "replaying the journal");
                break;
            }
            fr = nb;
            frcap = (size_t)bytes;
        }
        if (sl__os_pread_all(fd, fr, (size_t)bytes, (off_t)off) != 0) {
            rc = sl__errno(SL_EIO, errno, "reading %s", path);
            break;
        }
        uint64_t sum = sl__ld64(fr + 56);
        sl__st64(fr + 56, 0);
        if (XXH3_64bits(fr, (size_t)bytes) != sum) break;  /* torn: the end */
        if ((rc = replay_frame(&r, fr, bytes)) != 0) break;
        off += bytes;
    }
    /* the restored bytes must be durable before the journal forgets them */
    for (size_t k = 0; k < r.nf && rc == 0; k++) {
        jr_file *f = &r.f[k];
        if (f->fd < 0) continue;
        if (f->wrote) {
            /* the segment's header hints describe it without these records:
            ** make its recovery scan instead of trusting them */
            static const uint8_t zero8[8];
            if (sl__os_pwrite_all(f->fd, zero8, sizeof zero8, SL_H_BOOT) != 0)
                rc = sl__errno(SL_EIO, errno, "restoring a segment of shard %u", f->shard);
        }
        if (rc == 0 && sl__os.fdatasync(f->fd) != 0)
            rc = sl__errno(SL_EIO, errno, "syncing a segment of shard %u", f->shard);
    }
    if (rc == 0) rc = clear_frame0(fd, path);
done:
    if (rc == 0 && !keep_file) sl__os.unlink(path);   /* a lost unlink is harmless */
    for (size_t k = 0; k < r.nf; k++)
        if (r.f[k].fd >= 0) sl__os.close(r.f[k].fd);
    free(r.f);
    free(fr);
    s->jr_replayed = r.wrote;
    sl__os.close(fd);
    free(path);
    return rc;
}

/* ---- writing ---- */

static void journal_free(sl_journal *j)
{
    if (!j) return;
    if (j->fd >= 0) sl__os.close(j->fd);
    sl__gc_destroy(&j->gc);
    free(j->path);
    free(j->ord);
    free(j->off);
    free(j->spans);
    free(j->iov);
    free(j->ehdr);
    if (j->xs) XXH3_freeState(j->xs);
    free(j);
}

/* Write zeros over [from, to) and make them durable. */
static int zero_fill(sl_journal *j, uint64_t from, uint64_t to)
{
    static const uint8_t zero[65536];
    for (uint64_t o = from; o < to; o += sizeof zero) {
        size_t n = to - o < sizeof zero ? (size_t)(to - o) : sizeof zero;
        if (sl__os_pwrite_all(j->fd, zero, n, (off_t)o) != 0)
            return sl__errno(sl__errno_code(errno), errno, "preparing %s", j->path);
    }
    if (sl__os.fdatasync(j->fd) != 0) return sl__errno(SL_EIO, errno, "syncing %s", j->path);
    return 0;
}

static void new_lap(sl_journal *j)
{
    j->head = 0;
    j->lap = sl__random64();
    j->lap_start_ns = mono_ns();
}

int sl__journal_open(sl_stream *s)
{
    sl_journal *j = calloc(1, sizeof *j);
    if (!j) return sl__err(SL_ENOMEM, "allocating the journal");
    j->fd = -1;
    sl__gc_init(&j->gc);
    j->n = s->nshards;
    int rc = 0;
    if (!(j->path = jr_path(s)) || !(j->ord = calloc(j->n, sizeof *j->ord)) ||
        !(j->off = calloc(j->n, sizeof *j->off)) ||
        !(j->spans = calloc(j->n, sizeof *j->spans)) ||
        !(j->iov = calloc(1 + 2 * j->n, sizeof *j->iov)) ||
        !(j->ehdr = calloc(j->n, JR_ENTRY_HDR)) || !(j->xs = XXH3_createState())) {
        journal_free(j);
        return sl__err(SL_ENOMEM, "allocating the journal");
    }
    j->fd = sl__os.open(j->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (j->fd < 0) {
        rc = sl__errno(sl__errno_code(errno), errno, "creating %s", j->path);
        journal_free(j);
        return rc;
    }
    /* an existing journal keeps its size: its blocks are written already */
    struct stat st;
    uint64_t have = fstat(j->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    j->cap = have >= JR_MIN_BYTES ? (have > JR_MAX_BYTES ? JR_MAX_BYTES : have & ~(uint64_t)4095)
                                  : JR_MIN_BYTES;
    if (have < j->cap && (rc = zero_fill(j, have, j->cap)) != 0) {
        /* give a full disk its space back */
        if (have == 0) sl__os.unlink(j->path);
        else (void)sl__os.ftruncate(j->fd, (off_t)have);
        journal_free(j);
        return rc;
    }
    if (have < j->cap && sl__os_fsync_dir(s->dir) != 0) {
        rc = sl__errno(SL_EIO, errno, "syncing directory %s", s->dir);
        journal_free(j);
        return rc;
    }
    /* Records committed before this open are in the segments' page cache,
    ** not all durable: sync them, so the journal need only hold what comes
    ** next.  Each shard's journaling then starts at its current tail. */
    for (size_t i = 0; i < s->nshards && rc == 0; i++) {
        sl_shard *sh = s->shards[i];
        if (!sh) continue;
        if ((rc = sl__shard_sync(sh)) != 0) break;
        uint64_t tail;
        sl_seg *g = sl__shard_pin_active(sh, &tail);
        if (g) {
            j->ord[i] = g->ordinal;
            j->off[i] = tail;
            sl__shard_put_seg(sh, g);
        }
    }
    if (rc) {
        journal_free(j);
        return rc;
    }
    new_lap(j);
    s->jr = j;
    return 0;
}

/* A reshard added shards: the per-shard tables follow (the round's leader
** owns them, so no lock is needed). */
static int jr_grow(sl_journal *j, size_t n)
{
    uint64_t *ord = realloc(j->ord, n * sizeof *ord);
    if (ord) j->ord = ord;
    uint64_t *off = ord ? realloc(j->off, n * sizeof *off) : NULL;
    if (off) j->off = off;
    jr_span *sp = off ? realloc(j->spans, n * sizeof *sp) : NULL;
    if (sp) j->spans = sp;
    struct iovec *iov = sp ? realloc(j->iov, (1 + 2 * n) * sizeof *iov) : NULL;
    if (iov) j->iov = iov;
    uint8_t *eh = iov ? realloc(j->ehdr, n * JR_ENTRY_HDR) : NULL;
    if (eh) j->ehdr = eh;
    if (!eh) return -1;
    for (size_t i = j->n; i < n; i++) j->ord[i] = j->off[i] = 0;
    j->n = n;
    return 0;
}

/* Everything committed is made durable in the segments themselves; the lap
** can start over. */
static int checkpoint(sl_stream *s, sl_journal *j)
{
    int rc = 0;
    for (size_t i = 0; i < s->nshards && rc == 0; i++)
        if (s->shards[i]) rc = sl__shard_sync(s->shards[i]);
    if (rc) return rc;
    if (j->cap < JR_MAX_BYTES && mono_ns() - j->lap_start_ns < JR_FAST_LAP_NS &&
        zero_fill(j, j->cap, 2 * j->cap) == 0)
        j->cap *= 2;                    /* a full disk just keeps it as it is */
    new_lap(j);
    return 0;
}

/* pwritev all of iov[0..n) at off, in IOV_MAX pieces, retrying short writes. */
static int write_iov(int fd, struct iovec *iov, int n, uint64_t off)
{
    while (n > 0) {
        int k = n < IOV_MAX ? n : IOV_MAX;
        ssize_t w = sl__os.pwritev(fd, iov, k, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = EIO;        /* no progress: never loop */
            return -1;
        }
        off += (uint64_t)w;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0 && w > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* One round (the gc leader): copy each shard's new records into a frame,
** write it, fdatasync.  *upto: the tickets it covers. */
static int journal_round(void *ctx, uint64_t *upto)
{
    sl_stream *s = ctx;
    sl_journal *j = s->jr;
    /* Gather: when the last round covered more commits than are waiting
    ** now, the others are most likely a few microseconds from theirs (the
    ** producers that round released, back with their next put).  Wait a
    ** little for them, or two committers alternate forever, one commit per
    ** round, each round's leader blocked on the other's sync. */
    uint64_t tickets = atomic_load(&j->tickets);
    if (j->last_round > 1 && tickets - j->covered < j->last_round) {
        uint64_t until = mono_ns() + JR_GATHER_NS;
        while (tickets - j->covered < j->last_round && mono_ns() < until) {
            gc_pause();
            tickets = atomic_load(&j->tickets);
        }
    }
    /* every commit with a ticket up to here was appended before we look */
    size_t ns = 0, nsh = atomic_load_explicit(&s->nshards, memory_order_acquire);
    uint64_t bytes = JR_FRAME_HDR;
    if (nsh > j->n && jr_grow(j, nsh) != 0) {
        *upto = j->covered;             /* nothing covered; waiters fail */
        return sl__err(SL_ENOMEM, "growing the journal's shard tables");
    }
    for (size_t i = 0; i < nsh; i++) {
        sl_shard *sh = s->shards[i];
        uint64_t tail;
        sl_seg *g = sh ? sl__shard_pin_active(sh, &tail) : NULL;
        if (!g) continue;
        if (g->ordinal != j->ord[i]) {
            /* a new segment: the old one was synced when sealed, and this
            ** one's header and name when created */
            j->ord[i] = g->ordinal;
            j->off[i] = SL_SEG_HDR;
        }
        if (tail <= j->off[i]) {
            sl__shard_put_seg(sh, g);
            continue;
        }
        j->spans[ns++] = (jr_span){sh, g, i, j->off[i], tail};
        bytes += JR_ENTRY_HDR + (tail - j->off[i]);
    }
    int rc = 0;
    if (ns == 0) goto out;
    if (bytes > j->cap - j->head) {
        rc = checkpoint(s, j);
        goto done;
    }
    uint8_t fh[JR_FRAME_HDR] = {0};
    sl__st32(fh, JR_MAGIC);
    sl__st32(fh + 4, JR_VERSION);
    sl__st64(fh + 8, j->lap);
    sl__st64(fh + 16, bytes);
    sl__st32(fh + 24, (uint32_t)ns);
    XXH3_64bits_reset(j->xs);
    XXH3_64bits_update(j->xs, fh, sizeof fh);
    int niov = 1;
    for (size_t k = 0; k < ns; k++) {
        const jr_span *sp = &j->spans[k];
        uint8_t *e = j->ehdr + k * JR_ENTRY_HDR;
        sl__st32(e, sp->sh->index);
        sl__st32(e + 4, 0);
        sl__st64(e + 8, sp->g->ordinal);
        sl__st64(e + 16, sp->from);
        sl__st64(e + 24, sp->to - sp->from);
        XXH3_64bits_update(j->xs, e, JR_ENTRY_HDR);
        XXH3_64bits_update(j->xs, sp->g->base + sp->from, (size_t)(sp->to - sp->from));
        j->iov[niov++] = (struct iovec){e, JR_ENTRY_HDR};
        j->iov[niov++] = (struct iovec){sp->g->base + sp->from, (size_t)(sp->to - sp->from)};
    }
    sl__st64(fh + 56, XXH3_64bits_digest(j->xs));
    j->iov[0] = (struct iovec){fh, sizeof fh};
    if (write_iov(j->fd, j->iov, niov, j->head) != 0 || sl__os.fdatasync(j->fd) != 0) {
        rc = sl__errno(SL_EIO, errno, "writing %s", j->path);
        sl__stream_fail(s, EIO, sl__errtext());
        goto done;
    }
    j->head += bytes;
done:
    for (size_t k = 0; k < ns; k++) {
        const jr_span *sp = &j->spans[k];
        if (rc == 0) j->off[sp->i] = sp->to;
        sl__shard_put_seg(sp->sh, sp->g);
    }
out:
    j->last_round = tickets - j->covered;
    j->covered = tickets;
    *upto = tickets;
    return rc;
}

int sl__journal_commit(sl_stream *s)
{
    sl_journal *j = s->jr;
    uint64_t ticket = atomic_fetch_add(&j->tickets, 1) + 1;
    return sl__gc_wait(&j->gc, ticket, journal_round, s, s, s->man.name);
}

int sl__journal_close(sl_stream *s, bool clear)
{
    sl_journal *j = s->jr;
    if (!j) return 0;
    int rc = clear ? clear_frame0(j->fd, j->path) : 0;
    journal_free(j);
    s->jr = NULL;
    return rc;
}
