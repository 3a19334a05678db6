/*
** stream.c -- the stream handle: create, open, close, delete, list,
** describe; the writer lock; sequence-number reservation; routing; the
** INTERVAL-mode sync thread.
**
** A stream is the directory <root>/<name>/ holding
**   MANIFEST           configuration and shard map (manifest.c)
**   SEQ                sequence reservation, two checksummed 64-byte slots
**   LOCK               the writer lock (an OFD write lock on byte 0; the
**                      file's text is the holder's pid, for messages)
**   WAKE               4096 wake-up slots of 64 bytes, mapped by every
**                      process that opens the stream (shard.c)
**   shardId-NNNN.../   one directory of segment files per shard
**
** OFD locks rather than flock: they conflict between two opens in one
** process as flock does, and F_OFD_GETLK lets a read-only follower ask
** whether a writer is alive without taking the lock (and so without ever
** making a starting writer fail).
**
** SEQ FILE FORMAT, version 1: slots at offsets 0 and 4096, each
**    0 u32 magic 0x51534C53 ("SLSQ")   4 u32 version 1
**    8 u64 generation                  16 u64 ceiling
**   24 u64 stream_id                   32..55 reserved 0
**   56 u64 XXH3-64 of bytes 0..55
** The valid slot with the higher generation wins.  Every sequence number
** below its ceiling may have been issued; an opening writer issues from
** the ceiling on.  A writer reserves a block (64 Ki numbers, doubling up to
** 16 Mi while reservations come faster than once a second), writes the
** other slot and fdatasyncs before issuing any number from the block, so
** no number is ever issued twice -- not after a power cut, not after every
** record was deleted.
**
** Locks: `mu` guards the shard map and manifest; `seq_mu` serializes
** reservations (taken inside a shard's append lock).
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
#include <time.h>
#include <unistd.h>

#define SEQ_MAGIC 0x51534C53u
#define SEQ_SLOT 4096u
#define SEQ_BLOCK_MIN (1ull << 16)
#define SEQ_BLOCK_MAX (1ull << 24)
#define SEQ_LOST_GAP (1ull << 32)
#define WAKE_BYTES ((size_t)SL_WAKE_SLOTS * SL_WAKE_SLOT_BYTES)
#define SYNC_INTERVAL_MAX 3600000u

static _Thread_local char fail_text[256];

/* ---- small helpers ------------------------------------------------------ */

static int name_check(const char *what, const char *name)
{
    if (!name)
        return sl__err(SL_EVALIDATION, "1 validation error detected: Value null "
                                       "at '%s' failed to satisfy constraint: "
                                       "Member must not be null", what);
    size_t n = strlen(name);
    if (n < 1 || n > SL_STREAM_NAME_MAX)
        return sl__err(SL_EVALIDATION,
                       "1 validation error detected: Value '%.40s%s' at '%s' "
                       "failed to satisfy constraint: Member must have length "
                       "between 1 and %d",
                       name, n > 40 ? "..." : "", what, SL_STREAM_NAME_MAX);
    if (!sl__name_valid(name, SL_STREAM_NAME_MAX))
        return sl__err(SL_EVALIDATION,
                       "1 validation error detected: Value '%s' at '%s' failed "
                       "to satisfy constraint: Member must satisfy regular "
                       "expression pattern: [a-zA-Z0-9_.-]+",
                       name, what);
    return 0;
}

static char *join(const char *a, const char *b)
{
    char *p;
    return asprintf(&p, "%s/%s", a, b) < 0 ? NULL : p;
}

void sl__stream_report(sl_stream *s, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    __atomic_fetch_add(&s->damage, 1, __ATOMIC_RELAXED);
    if (s->report) s->report(s->report_ctx, code, msg);
}

void sl__stream_fail(sl_stream *s, int errnum, const char *what)
{
    (void)errnum;
    int expect = 0;
    if (atomic_compare_exchange_strong(&s->failed, &expect, 1)) {
        pthread_mutex_lock(&s->fail_mu);
        snprintf(s->failmsg, sizeof s->failmsg, "%s", what);
        pthread_mutex_unlock(&s->fail_mu);
        sl__stream_report(s, SL_EIO, "stream '%s' failed and takes no more "
                                     "writes: %s", s->man.name, what);
    }
}

int sl__stream_check_writable(sl_stream *s)
{
    if (s->readonly)
        return sl__err(SL_EREADONLY, "stream '%s' is open read-only", s->man.name);
    if (SL_UNLIKELY(atomic_load_explicit(&s->failed, memory_order_acquire))) {
        pthread_mutex_lock(&s->fail_mu);
        snprintf(fail_text, sizeof fail_text, "%s", s->failmsg);
        pthread_mutex_unlock(&s->fail_mu);
        return sl__err(SL_EIO, "stream '%s' failed earlier and takes no more "
                               "writes (%s); close and reopen it",
                       s->man.name, fail_text);
    }
    return 0;
}

/* ---- sequence numbers --------------------------------------------------- */

static void seq_slot_encode(uint8_t b[64], uint64_t gen, uint64_t ceiling,
                            uint64_t stream_id)
{
    memset(b, 0, 64);
    sl__st32(b, SEQ_MAGIC);
    sl__st32(b + 4, 1);
    sl__st64(b + 8, gen);
    sl__st64(b + 16, ceiling);
    sl__st64(b + 24, stream_id);
    sl__st64(b + 56, sl__xxh3(b, 56));
}

static bool seq_slot_decode(const uint8_t b[64], uint64_t stream_id,
                            uint64_t *gen, uint64_t *ceiling)
{
    if (sl__ld32(b) != SEQ_MAGIC || sl__ld32(b + 4) != 1 ||
        sl__ld64(b + 56) != sl__xxh3(b, 56) || sl__ld64(b + 24) != stream_id ||
        sl__ld64(b + 16) > SL_SEQ_LIMIT)
        return false;
    *gen = sl__ld64(b + 8);
    *ceiling = sl__ld64(b + 16);
    return true;
}

/* for fuzz/ (fuzz_slots.c): the SEQ slot decoder above */
bool sl__seq_slot_decode(const uint8_t *b, uint64_t stream_id, uint64_t *gen, uint64_t *ceiling)
{
    return seq_slot_decode(b, stream_id, gen, ceiling);
}

/* Write the new ceiling durably.  Caller holds seq_mu (or is alone). */
static int seq_write(sl_stream *s, uint64_t ceiling)
{
    uint8_t b[64];
    uint64_t gen = s->seq_gen + 1;
    seq_slot_encode(b, gen, ceiling, s->man.stream_id);
    if (sl__os_pwrite_all(s->seq_fd, b, sizeof b, (off_t)((gen % 2) * SEQ_SLOT)) != 0)
        return sl__errno(sl__errno_code(errno), errno,
                         "reserving sequence numbers in %s/SEQ", s->dir);
    if (sl__os.fdatasync(s->seq_fd) != 0) {
        int rc = sl__errno(SL_EIO, errno, "syncing %s/SEQ", s->dir);
        sl__stream_fail(s, EIO, sl__errtext());
        return rc;
    }
    s->seq_gen = gen;
    atomic_store_explicit(&s->seq_ceiling, ceiling, memory_order_release);
    return 0;
}

static int seq_reserve(sl_stream *s, uint64_t need_end)
{
    int64_t now = sl__monotonic_ms();
    if (s->seq_last_reserve_ms && now - s->seq_last_reserve_ms < 1000 &&
        s->seq_block < SEQ_BLOCK_MAX)
        s->seq_block *= 2;
    s->seq_last_reserve_ms = now;
    uint64_t c = atomic_load(&s->seq_ceiling);
    uint64_t base = need_end > c ? need_end : c;
    if (base > SL_SEQ_LIMIT)
        return sl__err(SL_ELIMIT, "sequence numbers exhausted: the stream has issued numbers "
                                  "up to %" PRIu64 ", the limit", SL_SEQ_LIMIT);
    uint64_t block = s->seq_block < SL_SEQ_LIMIT - base ? s->seq_block : SL_SEQ_LIMIT - base;
    return seq_write(s, base + block);
}

int sl__stream_take_seqs(sl_stream *s, uint64_t n, uint64_t *first)
{
    uint64_t f = atomic_fetch_add_explicit(&s->next_seq, n, memory_order_relaxed);
    uint64_t end = f + n;
    int rc = 0;
    if (SL_UNLIKELY(end > atomic_load_explicit(&s->seq_ceiling, memory_order_acquire))) {
        pthread_mutex_lock(&s->seq_mu);
        if (end > atomic_load(&s->seq_ceiling)) rc = seq_reserve(s, end);
        pthread_mutex_unlock(&s->seq_mu);
    }
    *first = f;
    return rc;
}

/* A ceiling a wide gap above max_seen, within the sequence space. */
static uint64_t seq_above(uint64_t max_seen)
{
    return max_seen < SL_SEQ_LIMIT - SEQ_LOST_GAP ? max_seen + SEQ_LOST_GAP : SL_SEQ_LIMIT;
}

/* Writer: load the reservation ceiling (the first put reserves a block). */
static int seq_open(sl_stream *s, uint64_t max_seen)
{
    char *path = join(s->dir, SL_SEQ_FILE);
    if (!path) return sl__err(SL_ENOMEM, "opening SEQ");
    s->seq_fd = sl__os.open(path, O_RDWR | O_CLOEXEC, 0);
    if (s->seq_fd < 0) {
        int rc = sl__errno(errno == ENOENT ? SL_ECORRUPT : SL_EIO, errno, "opening %s", path);
        free(path);
        return rc;
    }
    uint8_t b[2][64];
    uint64_t gen[2] = {0, 0}, ceil[2] = {0, 0};
    bool ok[2];
    for (int i = 0; i < 2; i++) {
        if (sl__os_pread_all(s->seq_fd, b[i], 64, (off_t)(i * SEQ_SLOT)) != 0) {
            /* a short file is a damaged slot; an unreadable one is not:
            ** taking the other slot's older ceiling would reissue numbers */
            if (errno != ENODATA) {
                int rc = sl__errno(SL_EIO, errno, "reading %s", path);
                free(path);
                return rc;
            }
            ok[i] = false;
            continue;
        }
        ok[i] = seq_slot_decode(b[i], s->man.stream_id, &gen[i], &ceil[i]);
    }
    uint64_t ceiling;
    if (ok[0] || ok[1]) {
        int w = (ok[0] && ok[1]) ? (gen[1] > gen[0]) : ok[1];
        s->seq_gen = gen[w];
        ceiling = ceil[w];
    } else {
        /* Both slots damaged: we cannot know how far numbers were issued
        ** (a power cut may have lost records that readers saw), so leave a
        ** wide gap above everything on disk. */
        ceiling = seq_above(max_seen);
        s->seq_gen = 0;
        sl__stream_report(s, SL_ECORRUPT,
                          "%s: both reservation slots damaged; sequence numbers "
                          "resume at %" PRIu64 " (above every record on disk)",
                          path, ceiling);
    }
    free(path);
    if (ceiling <= max_seen) {
        sl__stream_report(s, SL_ECORRUPT,
                          "%s/SEQ: ceiling %" PRIu64 " is below record %" PRIu64
                          " on disk; resuming above it",
                          s->dir, ceiling, max_seen);
        ceiling = seq_above(max_seen);
    }
    /* nothing is reserved yet: the first put reserves a block (and pays the
    ** fdatasync).  Syncing at open would make every reopen wait for the
    ** filesystem journal, which after a crash with gigabytes unsynced
    ** waits for their writeback. */
    atomic_store(&s->next_seq, ceiling);
    atomic_store(&s->seq_ceiling, ceiling);
    s->seq_block = SEQ_BLOCK_MIN;
    return 0;
}

/* ---- routing ------------------------------------------------------------ */

static int cmp_route(const void *a, const void *b)
{
    const sl_shard *x = *(sl_shard *const *)a, *y = *(sl_shard *const *)b;
    return sl__u128_cmp(x->start, y->start);
}

/* Build the routing table of the open shards and publish it (caller holds
** s->mu or is alone with s).  The previous table is retired, not freed:
** producers may still be reading it. */
int sl__stream_build_route(sl_stream *s)
{
    size_t n = 0, ns = atomic_load(&s->nshards);
    for (size_t i = 0; i < ns; i++) n += s->shards[i]->open;
    sl_routes *t = calloc(1, sizeof *t);
    sl_shard **r = malloc((n ? n : 1) * sizeof *r);
    sl_u128 *st = malloc((n ? n : 1) * sizeof *st);
    if (!t || !r || !st) {
        free(t);
        free(r);
        free(st);
        return sl__err(SL_ENOMEM, "building the shard map");
    }
    n = 0;
    for (size_t i = 0; i < ns; i++)
        if (s->shards[i]->open) r[n++] = s->shards[i];
    qsort(r, n, sizeof *r, cmp_route);
    /* the open shards must tile the key space exactly */
    bool ok = n > 0 && r[0]->start.hi == 0 && r[0]->start.lo == 0 &&
              sl__u128_cmp(r[n - 1]->end, SL_U128_MAX) == 0;
    for (size_t i = 1; ok && i < n; i++) {
        sl_u128 e = r[i - 1]->end;
        if (++e.lo == 0) e.hi++;
        ok = sl__u128_cmp(e, r[i]->start) == 0;
    }
    if (!ok) {
        free(t);
        free(r);
        free(st);
        return sl__err(SL_ECORRUPT, "manifest: open shards of stream '%s' do not "
                                    "cover the hash key space exactly",
                       s->man.name);
    }
    for (size_t i = 0; i < n; i++) st[i] = r[i]->start;
    t->n = n;
    t->route = r;
    t->start = st;
    sl_routes *old = atomic_exchange_explicit(&s->rt, t, memory_order_acq_rel);
    if (old) {
        old->next_retired = s->rt_retired;
        s->rt_retired = old;
    }
    return 0;
}

static void routes_free(sl_stream *s)
{
    sl_routes *t = atomic_load(&s->rt);
    if (t) {
        t->next_retired = s->rt_retired;
        s->rt_retired = t;
    }
    while (s->rt_retired) {
        sl_routes *x = s->rt_retired;
        s->rt_retired = x->next_retired;
        free(x->route);
        free(x->start);
        free(x);
    }
    atomic_store(&s->rt, NULL);
}

sl_shard *sl__stream_route(sl_stream *s, sl_u128 h)
{
    const sl_routes *t = atomic_load_explicit(&s->rt, memory_order_acquire);
    const sl_u128 *st = t->start;
    size_t n = t->n;
    if (n <= 16) {
        /* count the starts <= h, without branches: a hash key is random,
        ** so a binary search mispredicts about once per level */
        size_t k = 0;
        for (size_t i = 1; i < n; i++)
            k += (st[i].hi < h.hi) | ((st[i].hi == h.hi) & (st[i].lo <= h.lo));
        return t->route[k];
    }
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {               /* last shard whose start <= h */
        size_t mid = lo + (hi - lo) / 2;
        if (sl__u128_cmp(st[mid], h) <= 0) lo = mid;
        else hi = mid;
    }
    return t->route[lo];
}

sl_shard *sl__stream_shard_by_id(sl_stream *s, const char *id)
{
    uint32_t idx;
    if (sl__shard_id_parse(id, &idx) != 0 || idx >= s->nshards) return NULL;
    return s->shards[idx];
}

/* ---- INTERVAL mode ------------------------------------------------------ */

static void *syncer_main(void *arg)
{
    sl_stream *s = arg;
    pthread_mutex_lock(&s->syncer_mu);
    while (!s->syncer_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)s->sync_interval_ms * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        pthread_cond_timedwait(&s->syncer_cv, &s->syncer_mu, &ts);
        if (s->syncer_stop) break;
        pthread_mutex_unlock(&s->syncer_mu);
        for (size_t i = 0; i < s->nshards && !atomic_load(&s->failed); i++)
            sl__shard_sync(s->shards[i]);
        pthread_mutex_lock(&s->syncer_mu);
    }
    pthread_mutex_unlock(&s->syncer_mu);
    return NULL;
}

static int syncer_start(sl_stream *s)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->syncer_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->syncer_mu, NULL);
    s->syncer_inited = true;
    if (pthread_create(&s->syncer, NULL, syncer_main, s) != 0)
        return sl__err(SL_ENOMEM, "starting the sync thread");
    s->syncer_running = true;
    return 0;
}

static void syncer_stop(sl_stream *s)
{
    if (s->syncer_running) {
        pthread_mutex_lock(&s->syncer_mu);
        s->syncer_stop = true;
        pthread_cond_signal(&s->syncer_cv);
        pthread_mutex_unlock(&s->syncer_mu);
        pthread_join(s->syncer, NULL);
        s->syncer_running = false;
    }
    if (s->syncer_inited) {
        pthread_cond_destroy(&s->syncer_cv);
        pthread_mutex_destroy(&s->syncer_mu);
        s->syncer_inited = false;
    }
}

/* ---- the preparer ------------------------------------------------------- */

void sl__stream_kick(sl_stream *s)
{
    pthread_mutex_lock(&s->prep_mu);
    s->prep_kicked = true;
    pthread_cond_signal(&s->prep_cv);
    pthread_mutex_unlock(&s->prep_mu);
}

static void *prep_main(void *arg)
{
    sl_stream *s = arg;
    bool populate = true;
    pthread_mutex_lock(&s->prep_mu);
    while (!s->prep_stop) {
        if (!s->prep_kicked) {
            /* kicks drive it; the timeout catches a spare to prepare */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += 50 * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&s->prep_cv, &s->prep_mu, &ts);
            if (s->prep_stop) break;
        }
        s->prep_kicked = false;
        pthread_mutex_unlock(&s->prep_mu);
        for (size_t i = 0; i < s->nshards && populate; i++)
            populate = sl__shard_prepare(s->shards[i]);
        pthread_mutex_lock(&s->prep_mu);
    }
    pthread_mutex_unlock(&s->prep_mu);
    return NULL;
}

static int prep_start(sl_stream *s)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->prep_cv, &ca);
    pthread_condattr_destroy(&ca);
    s->prep_cv_inited = true;
    if (pthread_create(&s->prep, NULL, prep_main, s) != 0)
        return sl__err(SL_ENOMEM, "starting the preparer thread");
    s->prep_running = true;
    return 0;
}

static void prep_stop(sl_stream *s)
{
    if (!s->prep_running) return;
    pthread_mutex_lock(&s->prep_mu);
    s->prep_stop = true;
    pthread_cond_signal(&s->prep_cv);
    pthread_mutex_unlock(&s->prep_mu);
    pthread_join(s->prep, NULL);
    s->prep_running = false;
}

/* ---- open / close ------------------------------------------------------- */

static void stream_free(sl_stream *s)
{
    if (!s) return;
    sl_stream_maintain_stop(s);
    syncer_stop(s);
    prep_stop(s);
    sl__journal_close(s, false);
    for (size_t i = 0; s->shards && i < s->nshards; i++) {   /* (an open may fail
                                                              ** before they exist) */
        if (s->shards[i]) {
            sl__shard_destroy(s->shards[i]);
            free(s->shards[i]);
        }
    }
    free(s->shards);
    routes_free(s);
    if (s->wake_map) sl__os.munmap(s->wake_map, WAKE_BYTES);
    if (s->seq_fd >= 0) sl__os.close(s->seq_fd);
    if (s->lock_fd >= 0) sl__os.close(s->lock_fd);   /* releases the lock */
    sl__manifest_free(&s->man);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->seq_mu);
    pthread_mutex_destroy(&s->prep_mu);
    sl__faults_free(s);
    sl__keys_wipe(s);
    pthread_mutex_destroy(&s->fault_mu);
    pthread_mutex_destroy(&s->fail_mu);
    pthread_mutex_destroy(&s->cons_mu);
    pthread_mutex_destroy(&s->cap_mu);
    pthread_mutex_destroy(&s->maint_mu);
    if (s->prep_cv_inited) pthread_cond_destroy(&s->prep_cv);
    free(s->root);
    free(s->dir);
    free(s);
}

/* Take the writer lock: an OFD write lock on LOCK, never waiting. */
static int lock_take(const char *dir, const char *name, int *fd_out)
{
    char *path = join(dir, SL_LOCK_FILE);
    if (!path) return sl__err(SL_ENOMEM, "locking");
    int fd = sl__os.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int rc = sl__errno(SL_EIO, errno, "opening %s", path);
        free(path);
        return rc;
    }
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    if (fcntl(fd, F_OFD_SETLK, &fl) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, " \n")] = '\0';
        sl__os.close(fd);
        free(path);
        if (e == EAGAIN || e == EACCES)
            return sl__err(SL_ELOCKED, "stream '%s' is locked by another writer%s%s%s",
                           name, *pid ? " (pid " : "", pid, *pid ? ")" : "");
        return sl__errno(SL_EIO, e, "locking stream '%s'", name);
    }
    /* the holder's pid, for messages: fixed width, overwritten in place
    ** (truncating would free the file's block -- a discard on some mounts --
    ** and make ext4 flush the file when it is closed) */
    char pid[24];
    snprintf(pid, sizeof pid, "%-22ld\n", (long)getpid());
    (void)!pwrite(fd, pid, 23, 0);
    free(path);
    *fd_out = fd;
    return 0;
}

/* Does a writer hold the stream's lock (in any process)? */
static bool writer_alive(const char *dir)
{
    char *path = join(dir, SL_LOCK_FILE);
    if (!path) return true;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    if (fd < 0) return false;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    bool alive = fcntl(fd, F_OFD_GETLK, &fl) != 0 || fl.l_type != F_UNLCK;
    close(fd);
    return alive;
}

static int wake_open(sl_stream *s, bool writer)
{
    char *path = join(s->dir, SL_WAKE_FILE);
    if (!path) return sl__err(SL_ENOMEM, "opening WAKE");
    int fd = sl__os.open(path, O_RDWR | O_CLOEXEC | (writer ? O_CREAT : 0), 0600);
    bool rw = fd >= 0;
    if (fd < 0 && !writer) fd = sl__os.open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
        /* followers without the file (or the right to it) poll instead */
        int rc = writer ? sl__errno(SL_EIO, errno, "opening %s", path) : 0;
        free(path);
        return rc;
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) rc = sl__errno(SL_EIO, errno, "stat %s", path);
    else if ((size_t)st.st_size < WAKE_BYTES) {
        if (!writer) goto done;                     /* not ours to fix */
        if (sl__os.ftruncate(fd, (off_t)WAKE_BYTES) != 0)
            rc = sl__errno(sl__errno_code(errno), errno, "sizing %s", path);
    }
    if (rc == 0) {
        void *p = sl__os.mmap(NULL, WAKE_BYTES, PROT_READ | (rw ? PROT_WRITE : 0),
                              MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) rc = sl__errno(SL_EIO, errno, "mapping %s", path);
        else {
            s->wake_map = p;
            s->wake_writable = rw;
        }
    }
done:
    sl__os.close(fd);
    free(path);
    return rc;
}

/* Version 1 of sl_open_opts ends at report_ctx: its rate fields must not
** be read (the caller's struct may be shorter), and take their defaults. */
/* A reshard that crashed before its manifest was written leaves the
** children's directories, which no manifest names: remove them. */
static void remove_unborn_shards(sl_stream *s)
{
    DIR *d = opendir(s->dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint32_t idx;
        if (strncmp(e->d_name, "shardId-", 8) || sl__shard_id_parse(e->d_name, &idx) != 0 ||
            idx < s->man.next_shard_index)
            continue;
        char *p = join(s->dir, e->d_name);
        if (p) sl__os_rmtree(p);
        free(p);
    }
    closedir(d);
}

static int opts_check(const sl_open_opts *opts)
{
    if (opts && (opts->version < 1 || opts->version > SL_OPEN_OPTS_VERSION))
        return sl__err(SL_EINVAL, "sl_open_opts.version is %u; this library "
                                  "knows versions 1..%u",
                       opts->version, SL_OPEN_OPTS_VERSION);
    if (opts && (opts->flags & ~(SL_OPEN_READONLY | SL_OPEN_KDS_PROFILE)))
        return sl__err(SL_EINVAL, "unknown sl_open_opts.flags 0x%x",
                       opts->flags & ~(SL_OPEN_READONLY | SL_OPEN_KDS_PROFILE));
    if (opts && opts->version >= 2) {
        if ((unsigned)opts->rate_mode > SL_RATE_ENFORCE)
            return sl__err(SL_EVALIDATION, "sl_open_opts.rate_mode %d is not a "
                                           "rate mode", (int)opts->rate_mode);
        if (opts->limits && opts->limits->version != SL_LIMITS_VERSION)
            return sl__err(SL_EINVAL, "sl_limits.version is %u; this library "
                                      "knows version %u (use SL_LIMITS_INIT)",
                           opts->limits->version, SL_LIMITS_VERSION);
    }
    if (opts && (unsigned)opts->durability > SL_DURABILITY_ALWAYS)
        return sl__err(SL_EVALIDATION, "sl_open_opts.durability %d is not a "
                                       "durability mode", (int)opts->durability);
    if (opts && opts->clock && (opts->clock->version < 1 || !opts->clock->now_ms))
        return sl__err(SL_EINVAL, "sl_open_opts.clock has no now_ms or a bad version");
    if (opts && opts->sync_interval_ms > SYNC_INTERVAL_MAX)
        return sl__err(SL_EINVAL, "sl_open_opts.sync_interval_ms %u exceeds one hour",
                       opts->sync_interval_ms);
    return 0;
}

static int open_common(sl_stream **out, const char *root, const char *name,
                       const sl_open_opts *opts)
{
    *out = NULL;
    int rc;
    if (!root) return sl__err(SL_EINVAL, "root is NULL");
    if ((rc = name_check("streamName", name)) != 0) return rc;
    if ((rc = opts_check(opts)) != 0) return rc;

    sl_stream *s = calloc(1, sizeof *s);
    if (!s) return sl__err(SL_ENOMEM, "allocating a stream");
    s->lock_fd = s->seq_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->seq_mu, NULL);
    pthread_mutex_init(&s->prep_mu, NULL);
    pthread_mutex_init(&s->fault_mu, NULL);
    pthread_mutex_init(&s->fail_mu, NULL);
    pthread_mutex_init(&s->cons_mu, NULL);
    pthread_mutex_init(&s->cap_mu, NULL);
    pthread_mutex_init(&s->maint_mu, NULL);
    s->readonly = opts && (opts->flags & SL_OPEN_READONLY);
    s->clock = (opts && opts->clock) ? *opts->clock : sl__real_clock;
    /* rate accounting: resolved before the shards make their buckets */
    bool v2 = opts && opts->version >= 2;
    s->kds = opts && (opts->flags & SL_OPEN_KDS_PROFILE);
    s->rate_mode = v2 ? opts->rate_mode : SL_RATE_DEFAULT;
    /* SL_RATE_DEFAULT is resolved once the manifest is read (ON_DEMAND) */
    sl__limits_resolve(&s->limits, v2 ? opts->limits : NULL);
    if (opts) {
        s->report = opts->report;
        s->report_ctx = opts->report_ctx;
    }
    if (!(s->root = strdup(root)) || !(s->dir = join(root, name))) {
        stream_free(s);
        return sl__err(SL_ENOMEM, "allocating a stream");
    }
    struct stat st;
    if (stat(s->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        int e = errno;
        rc = (e == EACCES || e == EIO)
                 ? sl__errno(SL_EIO, e, "stat %s", s->dir)
                 : sl__err(SL_ENOTFOUND, "Stream %s under %s not found.", name, root);
        stream_free(s);
        return rc;
    }
    bool writer = !s->readonly;
    bool alive = true;
    if (writer) rc = lock_take(s->dir, name, &s->lock_fd);
    else alive = writer_alive(s->dir);
    if (rc == 0) rc = sl__manifest_read(&s->man, s->dir);
    if (rc == 0) rc = sl__keys_open(s, opts && opts->version >= 3 ? opts->keys : NULL);
    if (rc == 0 && s->rate_mode == SL_RATE_DEFAULT)
        s->rate_mode = s->kds ? SL_RATE_ENFORCE
                              : s->man.mode == SL_STREAM_MODE_ON_DEMAND ? SL_RATE_ACCOUNT
                                                                        : SL_RATE_OFF;
    if (rc == 0 && strcmp(s->man.name, name) != 0)
        rc = sl__err(SL_ECORRUPT, "%s/MANIFEST names stream '%s', not '%s'",
                     s->dir, s->man.name, name);
    if (rc) {
        stream_free(s);
        return rc;
    }
    atomic_store(&s->retention_ms, (uint64_t)s->man.retention_hours * 3600000ull);
    atomic_store(&s->trim_ms, s->man.trim_ms);
    atomic_store(&s->cap_bytes, s->man.size_cap_bytes);
    atomic_store(&s->cap_policy, (int)s->man.size_cap_policy);
    atomic_store(&s->cold_after_ms, (uint64_t)s->man.cold_after_hours * 3600000ull);
    atomic_store(&s->compaction, (int)s->man.compaction);
    s->durability = (opts && opts->durability) ? opts->durability : s->man.durability;
    s->sync_interval_ms = (opts && opts->sync_interval_ms) ? opts->sync_interval_ms
                                                            : s->man.sync_interval_ms;
    /* acknowledged records a power cut took from the segments come back
    ** from the journal before the segments are recovered */
    if (writer && (rc = sl__journal_recover(s, s->durability == SL_DURABILITY_ALWAYS)) != 0)
        goto fail;
    if ((rc = wake_open(s, writer)) != 0) goto fail;
    if (writer && s->wake_map) {
        /* waiter counts left by processes that died waiting; live waiters
        ** re-register within their wait slice */
        for (size_t i = 0; i < SL_WAKE_SLOTS; i++) {
            uint32_t *w = (uint32_t *)(void *)(s->wake_map + i * SL_WAKE_SLOT_BYTES);
            if (__atomic_load_n(&w[1], __ATOMIC_RELAXED))
                __atomic_store_n(&w[1], 0, __ATOMIC_RELAXED);
        }
        uint32_t *any = (uint32_t *)(void *)(s->wake_map + SL_WAKE_ANY_OFF);
        if (__atomic_load_n(&any[1], __ATOMIC_RELAXED))
            __atomic_store_n(&any[1], 0, __ATOMIC_RELAXED);
    }
    if (s->wake_map) s->wake_any = (uint32_t *)(void *)(s->wake_map + SL_WAKE_ANY_OFF);

    if (writer) remove_unborn_shards(s);
    atomic_store(&s->nshards, s->man.nshards);
    s->shards = calloc(SL_SHARDS_TOTAL_MAX, sizeof *s->shards);
    if (!s->shards) {
        rc = sl__err(SL_ENOMEM, "allocating shards");
        goto fail;
    }
    uint64_t max_seen = 0;
    for (size_t i = 0; i < s->nshards; i++) {
        const sl_mshard *m = &s->man.shards[i];
        sl_shard *sh = sl__shard_alloc();
        if (!sh) {
            rc = sl__err(SL_ENOMEM, "allocating shards");
            goto fail;
        }
        s->shards[i] = sh;
        if ((rc = sl__shard_init(sh, s, m->index)) != 0) goto fail;
        sh->start = m->start;
        sh->end = m->end;
        sh->open = m->open;
        sh->parent = m->parent;
        sh->adjacent = m->adjacent;
        sh->start_seq = m->start_seq;
        sh->end_seq = m->end_seq;
        if ((rc = sl__shard_load(sh, writer, alive)) != 0) goto fail;
        if (sh->last_seq > max_seen) max_seen = sh->last_seq;
    }
    if ((rc = sl__stream_build_route(s)) != 0) goto fail;
    if (writer && (rc = seq_open(s, max_seen)) != 0) goto fail;
    if (writer && s->durability == SL_DURABILITY_ALWAYS && (rc = sl__journal_open(s)) != 0) {
        if (rc != SL_ENOSPC) goto fail;
        /* no room for it: each shard's segments are synced instead */
        sl__stream_report(s, SL_ENOSPC, "%s; ALWAYS mode syncs each shard instead",
                          sl__errtext());
        rc = 0;
    }
    if (writer && s->durability == SL_DURABILITY_INTERVAL && (rc = syncer_start(s)) != 0)
        goto fail;
    if (writer && (rc = prep_start(s)) != 0) goto fail;
    *out = s;
    return 0;
fail:
    stream_free(s);
    return rc;
}

int sl_stream_open(sl_stream **out, const char *root, const char *name,
                   const sl_open_opts *opts)
{
    if (!out) return sl__ret(NULL, sl__err(SL_EINVAL, "out is NULL"));
    *out = NULL;
    return sl__ret(NULL, open_common(out, root, name, opts));
}

int sl_stream_sync(sl_stream *s)
{
    if (!s) return sl__ret(NULL, sl__err(SL_EINVAL, "stream is NULL"));
    if (s->readonly)
        return sl__ret(s, sl__err(SL_EREADONLY, "stream '%s' is open read-only", s->man.name));
    int rc = 0;
    for (size_t i = 0; i < s->nshards && rc == 0; i++) rc = sl__shard_sync(s->shards[i]);
    return sl__ret(s, rc);
}

int sl_stream_close(sl_stream *s)
{
    if (!s) return 0;
    int n = atomic_load(&s->children);
    if (n > 0)
        return sl__ret(s, sl__err(SL_EINUSE, "stream '%s' still has %d open producer(s), "
                                             "iterator(s), consumer(s) or scheduler(s)",
                                  s->man.name, n));
    syncer_stop(s);
    int rc = 0;
    if (!s->readonly && s->durability != SL_DURABILITY_NONE && !atomic_load(&s->failed)) {
        for (size_t i = 0; i < s->nshards; i++) {
            int r = sl__shard_sync(s->shards[i]);
            if (r && !rc) rc = r;
        }
    }
    if (s->jr) {
        int r = sl__journal_close(s, rc == 0 && !atomic_load(&s->failed));
        if (r && !rc) rc = r;
    }
    if (rc) rc = sl__ret(NULL, rc);
    stream_free(s);
    return rc;
}

/* ---- create ------------------------------------------------------------- */

static int tag_check(const sl_tag *t, size_t i)
{
    if (!t->key || !*t->key)
        return sl__err(SL_EINVAL, "tag %zu: key must have 1..%d characters", i, SL_TAG_KEY_MAX);
    const char *what[2] = {"key", "value"};
    const char *str[2] = {t->key, t->value ? t->value : ""};
    size_t max[2] = {SL_TAG_KEY_MAX, SL_TAG_VALUE_MAX};
    for (int k = 0; k < 2; k++) {
        size_t bytes, chars;
        if (sl__utf8_scan(str[k], &bytes, &chars, NULL) != 0)
            return sl__err(SL_EINVAL, "tag %zu: %s is not valid UTF-8 (byte %zu)", i, what[k], bytes);
        if (chars > max[k])
            return sl__err(SL_EINVAL, "tag %zu: %s has %zu characters; the limit is %zu", i,
                           what[k], chars, max[k]);
        for (const unsigned char *p = (const unsigned char *)str[k]; *p; p++)
            if (*p < 0x20 || *p == 0x7f)
                return sl__err(SL_EINVAL, "tag %zu: %s holds a control character", i, what[k]);
    }
    if (!strncmp(t->key, "aws:", 4))
        return sl__err(SL_EINVAL, "tag %zu: keys starting with 'aws:' are reserved", i);
    return 0;
}

/* Validate cfg and fill m (defaults applied). */
static int config_to_manifest(const sl_stream_config *cfg, sl_manifest *m,
                              int64_t now)
{
    int rc;
    memset(m, 0, sizeof *m);
    if (!cfg) return sl__err(SL_EINVAL, "cfg is NULL");
    if (cfg->version != 1 && cfg->version != SL_STREAM_CONFIG_VERSION)
        return sl__err(SL_EINVAL, "sl_stream_config.version is %u; use "
                                  "SL_STREAM_CONFIG_INIT",
                       cfg->version);
    if ((rc = name_check("streamName", cfg->name)) != 0) return rc;
    if ((unsigned)cfg->stream_mode > SL_STREAM_MODE_ON_DEMAND)
        return sl__err(SL_EVALIDATION, "1 validation error detected: Value '%d' at "
                                       "'streamModeDetails.streamMode' failed to "
                                       "satisfy constraint: Member must satisfy enum "
                                       "value set: [PROVISIONED, ON_DEMAND]",
                       (int)cfg->stream_mode);
    m->mode = cfg->stream_mode ? cfg->stream_mode : SL_STREAM_MODE_PROVISIONED;
    uint32_t shards = cfg->shard_count;
    if (shards == 0) shards = m->mode == SL_STREAM_MODE_ON_DEMAND ? 4 : 1;
    if (shards > SL_SHARDS_MAX)
        return sl__err(SL_ELIMIT, "shard count %u exceeds the per-stream limit of %d",
                       shards, SL_SHARDS_MAX);
    uint32_t ret = cfg->retention_hours ? cfg->retention_hours : 24;
    if (ret < SL_RETENTION_HOURS_MIN || ret > SL_RETENTION_HOURS_MAX)
        return sl__err(SL_EINVAL, "retention period %u hours is outside %d..%d hours",
                       ret, SL_RETENTION_HOURS_MIN, SL_RETENTION_HOURS_MAX);
    if ((unsigned)cfg->encryption_type > SL_ENCRYPTION_KMS)
        return sl__err(SL_EVALIDATION, "1 validation error detected: Value '%d' at "
                                       "'encryptionType' failed to satisfy constraint: "
                                       "Member must satisfy enum value set: [NONE, KMS]",
                       (int)cfg->encryption_type);
    m->encryption = cfg->encryption_type ? cfg->encryption_type : SL_ENCRYPTION_NONE;
    size_t kl = cfg->kms_key_id ? strlen(cfg->kms_key_id) : 0;
    if (m->encryption == SL_ENCRYPTION_KMS && (rc = sl__key_id_check(cfg->kms_key_id)) != 0)
        return rc;
    if (m->encryption == SL_ENCRYPTION_NONE && kl)
        return sl__err(SL_EINVAL, "kms_key_id is set but encryption_type is NONE");
    if (cfg->tag_count > SL_TAGS_MAX)
        return sl__err(SL_ELIMIT, "%zu tags; a stream may have at most %d",
                       cfg->tag_count, SL_TAGS_MAX);
    if (cfg->tag_count && !cfg->tags) return sl__err(SL_EINVAL, "tag_count is set but tags is NULL");
    for (size_t i = 0; i < cfg->tag_count; i++) {
        if ((rc = tag_check(&cfg->tags[i], i)) != 0) return rc;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(cfg->tags[i].key, cfg->tags[j].key))
                return sl__err(SL_EINVAL, "tag key '%s' appears twice", cfg->tags[i].key);
    }
    m->max_record_kib = cfg->max_record_size_kib ? cfg->max_record_size_kib : SL_RECORD_KIB_DEFAULT;
    if (m->max_record_kib < SL_RECORD_KIB_DEFAULT || m->max_record_kib > SL_RECORD_KIB_MAX)
        return sl__err(SL_EVALIDATION, "1 validation error detected: Value '%u' at "
                                       "'maxRecordSizeInKiB' failed to satisfy "
                                       "constraint: Member must have value between %d "
                                       "and %d",
                       m->max_record_kib, SL_RECORD_KIB_DEFAULT, SL_RECORD_KIB_MAX);
    uint64_t sb = cfg->segment_bytes ? cfg->segment_bytes : SL_SEGMENT_BYTES_DEFAULT;
    if (sb < SL_SEGMENT_BYTES_MIN || sb > SL_SEGMENT_BYTES_MAX)
        return sl__err(SL_EINVAL, "segment_bytes %" PRIu64 " is outside %u..%llu",
                       sb, SL_SEGMENT_BYTES_MIN, (unsigned long long)SL_SEGMENT_BYTES_MAX);
    m->segment_bytes = (sb + 4095) & ~(uint64_t)4095;
    if ((unsigned)cfg->durability > SL_DURABILITY_ALWAYS)
        return sl__err(SL_EVALIDATION, "durability %d is not a durability mode",
                       (int)cfg->durability);
    m->durability = cfg->durability ? cfg->durability : SL_DURABILITY_INTERVAL;
    m->sync_interval_ms = cfg->sync_interval_ms ? cfg->sync_interval_ms : 1000;
    if (m->sync_interval_ms > SYNC_INTERVAL_MAX)
        return sl__err(SL_EINVAL, "sync_interval_ms %u exceeds one hour", m->sync_interval_ms);

    m->trim_ms = INT64_MIN;
    m->size_cap_policy = SL_CAP_DROP_OLDEST;
    m->compaction = SL_COMPACTION_NONE;
    if (cfg->version >= 2) {
        uint64_t floor = sl__size_cap_min(shards, m->segment_bytes);
        if (cfg->size_cap_bytes && cfg->size_cap_bytes < floor)
            return sl__err(SL_EINVAL, "size_cap_bytes %" PRIu64 " is below two segments per "
                                      "shard (%" PRIu64 ")",
                           cfg->size_cap_bytes, floor);
        if ((unsigned)cfg->size_cap_policy > SL_CAP_REFUSE)
            return sl__err(SL_EINVAL, "size_cap_policy %d is not a policy",
                           (int)cfg->size_cap_policy);
        m->size_cap_bytes = cfg->size_cap_bytes;
        if (cfg->size_cap_policy) m->size_cap_policy = cfg->size_cap_policy;
        if (cfg->cold_after_hours > SL_RETENTION_HOURS_MAX)
            return sl__err(SL_EINVAL, "cold_after_hours %u exceeds %d", cfg->cold_after_hours,
                           SL_RETENTION_HOURS_MAX);
        if ((unsigned)cfg->compaction > SL_COMPACTION_KEY)
            return sl__err(SL_EINVAL, "compaction %d is not a policy", (int)cfg->compaction);
        m->cold_after_hours = cfg->cold_after_hours;
        if (cfg->compaction) m->compaction = cfg->compaction;
    }
    m->stream_id = sl__random64() | 1;
    strcpy(m->name, cfg->name);
    m->created_ms = now;
    m->generation = 1;
    m->retention_hours = ret;
    if (kl && !(m->kms_key_id = strdup(cfg->kms_key_id))) goto nomem;
    if (cfg->tag_count && !(m->tags = calloc(cfg->tag_count, sizeof *m->tags))) goto nomem;
    for (size_t i = 0; i < cfg->tag_count; i++) {
        m->ntags++;
        if (!(m->tags[i].key = strdup(cfg->tags[i].key))) goto nomem;
        if (cfg->tags[i].value && *cfg->tags[i].value &&
            !(m->tags[i].value = strdup(cfg->tags[i].value)))
            goto nomem;
    }
    if (!(m->shards = calloc(shards, sizeof *m->shards))) goto nomem;
    m->nshards = shards;
    m->next_shard_index = shards;
    for (uint32_t i = 0; i < shards; i++) {
        sl_mshard *sh = &m->shards[i];
        sh->index = i;
        sh->open = true;
        sh->parent = sh->adjacent = SL_NO_SHARD;
        sl__hashkey_split(&sh->start, &sh->end, i, shards);
        sh->start_seq = 1;
    }
    return 0;
nomem:
    sl__manifest_free(m);
    return sl__err(SL_ENOMEM, "creating the manifest");
}

static int create_files(const char *dir, const sl_manifest *m)
{
    int rc;
    if ((rc = sl__manifest_write(m, dir)) != 0) return rc;
    char *p = join(dir, SL_SEQ_FILE);
    if (!p) return sl__err(SL_ENOMEM, "creating SEQ");
    int fd = sl__os.open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) rc = sl__errno(sl__errno_code(errno), errno, "creating %s", p);
    else {
        uint8_t b[64];
        seq_slot_encode(b, 1, 1, m->stream_id);   /* generation 1 in slot 1 */
        if (sl__os_pwrite_all(fd, b, sizeof b, SEQ_SLOT) != 0 ||
            sl__os.fsync(fd) != 0)
            rc = sl__errno(sl__errno_code(errno), errno, "writing %s", p);
        sl__os.close(fd);
    }
    free(p);
    if (rc) return rc;
    for (size_t i = 0; i < m->nshards; i++) {
        char id[SL_SHARD_ID_LEN + 1];
        sl__shard_id(id, m->shards[i].index);
        if (!(p = join(dir, id))) return sl__err(SL_ENOMEM, "creating shards");
        if (sl__os.mkdir(p, 0700) != 0) rc = sl__errno(sl__errno_code(errno), errno, "creating %s", p);
        free(p);
        if (rc) return rc;
    }
    if (!(p = join(dir, SL_WAKE_FILE))) return sl__err(SL_ENOMEM, "creating WAKE");
    fd = sl__os.open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || sl__os.ftruncate(fd, (off_t)WAKE_BYTES) != 0)
        rc = sl__errno(sl__errno_code(errno), errno, "creating %s", p);
    if (fd >= 0) sl__os.close(fd);
    free(p);
    if (rc) return rc;
    if (!(p = join(dir, SL_LOCK_FILE))) return sl__err(SL_ENOMEM, "creating LOCK");
    fd = sl__os.open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) rc = sl__errno(sl__errno_code(errno), errno, "creating %s", p);
    else sl__os.close(fd);
    free(p);
    if (rc) return rc;
    if (sl__os_fsync_dir(dir) != 0) return sl__errno(SL_EIO, errno, "syncing %s", dir);
    return 0;
}

int sl_stream_create(sl_stream **out, const char *root,
                     const sl_stream_config *cfg, const sl_open_opts *opts)
{
    if (out) *out = NULL;
    if (!root) return sl__ret(NULL, sl__err(SL_EINVAL, "root is NULL"));
    int rc = opts_check(opts);              /* before anything exists */
    if (rc) return sl__ret(NULL, rc);
    if (opts && (opts->flags & SL_OPEN_READONLY) && out)
        return sl__ret(NULL, sl__err(SL_EINVAL, "SL_OPEN_READONLY makes no sense for "
                                                "sl_stream_create with an out handle"));
    const sl_clock *clk = (opts && opts->clock) ? opts->clock : &sl__real_clock;
    sl_manifest m;
    rc = config_to_manifest(cfg, &m, clk->now_ms(clk->ctx));
    if (rc == 0)
        rc = sl__keys_create(&m, opts && opts->version >= 3 ? opts->keys : NULL);
    if (rc) {
        sl__manifest_free(&m);
        return sl__ret(NULL, rc);
    }
    if (sl__os.mkdir(root, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        rc = e == ENOENT ? sl__err(SL_ENOTFOUND, "cannot create root directory %s: its "
                                                 "parent does not exist", root)
                         : sl__errno(sl__errno_code(e), e, "creating root directory %s", root);
        sl__manifest_free(&m);
        return sl__ret(NULL, rc);
    }
    char *final = join(root, cfg->name), *tmp = NULL;
    /* '~' cannot appear in a stream name: work directories never collide
    ** with a stream, and sl_stream_list skips them as invalid names */
    if (!final || asprintf(&tmp, "%s/~creating~%s~%ld~%08" PRIx64, root, cfg->name,
                           (long)getpid(), sl__random64() & 0xffffffffu) < 0) {
        free(final);
        sl__manifest_free(&m);
        return sl__ret(NULL, sl__err(SL_ENOMEM, "creating a stream"));
    }
    struct stat st;
    if (stat(final, &st) == 0) {
        rc = sl__err(SL_EINUSE, "Stream %s under %s already exists", cfg->name, root);
        goto out;
    }
    if (sl__os.mkdir(tmp, 0700) != 0) {
        rc = sl__errno(sl__errno_code(errno), errno, "creating %s", tmp);
        goto out;
    }
    if ((rc = create_files(tmp, &m)) != 0) {
        sl__os_rmtree(tmp);
        goto out;
    }
    /* appear whole or not at all; never replace an existing entry */
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_NOREPLACE) != 0) {
        int e = errno;
        if (e == EINVAL || e == ENOSYS) {         /* no RENAME_NOREPLACE here */
            if (stat(final, &st) == 0) e = EEXIST;
            else if (sl__os.rename(tmp, final) == 0) e = 0;
            else e = errno;
        }
        if (e) {
            sl__os_rmtree(tmp);
            rc = (e == EEXIST || e == ENOTEMPTY)
                     ? sl__err(SL_EINUSE, "Stream %s under %s already exists", cfg->name, root)
                     : sl__errno(sl__errno_code(e), e, "renaming %s", tmp);
            goto out;
        }
    }
    if (sl__os_fsync_dir(root) != 0) {
        rc = sl__errno(SL_EIO, errno, "syncing %s", root);
        goto out;
    }
    if (out) rc = open_common(out, root, cfg->name, opts);
out:
    free(final);
    free(tmp);
    sl__manifest_free(&m);
    return sl__ret(NULL, rc);
}

/* ---- delete, list ------------------------------------------------------- */

int sl_stream_delete(const char *root, const char *name)
{
    int rc;
    if (!root) return sl__ret(NULL, sl__err(SL_EINVAL, "root is NULL"));
    if ((rc = name_check("streamName", name)) != 0) return sl__ret(NULL, rc);
    char *dir = join(root, name), *tomb = NULL, *mf = NULL;
    int fd = -1;
    if (!dir || !(mf = join(dir, SL_MANIFEST_FILE))) {
        rc = sl__err(SL_ENOMEM, "deleting");
        goto out;
    }
    struct stat st;
    if (stat(mf, &st) != 0) {
        rc = sl__err(SL_ENOTFOUND, "Stream %s under %s not found.", name, root);
        goto out;
    }
    if ((rc = lock_take(dir, name, &fd)) != 0) goto out;
    if (asprintf(&tomb, "%s/~deleting~%s~%ld~%08" PRIx64, root, name, (long)getpid(),
                 sl__random64() & 0xffffffffu) < 0) {
        tomb = NULL;
        rc = sl__err(SL_ENOMEM, "deleting");
        goto out;
    }
    if (sl__os.rename(dir, tomb) != 0) {
        rc = sl__errno(SL_EIO, errno, "renaming %s", dir);
        goto out;
    }
    sl__os_fsync_dir(root);
    if (sl__os_rmtree(tomb) != 0)
        rc = sl__errno(SL_EIO, errno, "removing %s (the stream is gone; remove "
                                      "the leftover by hand)", tomb);
out:
    if (fd >= 0) sl__os.close(fd);
    free(dir);
    free(mf);
    free(tomb);
    return sl__ret(NULL, rc);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int sl_stream_list(sl_name_list **out, const char *root)
{
    if (!out || !root) return sl__ret(NULL, sl__err(SL_EINVAL, "out or root is NULL"));
    *out = NULL;
    sl_name_list *l = calloc(1, sizeof *l);
    if (!l) return sl__ret(NULL, sl__err(SL_ENOMEM, "listing streams"));
    DIR *d = opendir(root);
    if (!d) {
        if (errno == ENOENT) {          /* no root yet: no streams */
            *out = l;
            return 0;
        }
        free(l);
        return sl__ret(NULL, sl__errno(SL_EIO, errno, "opening %s", root));
    }
    size_t cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && rc == 0) {
        if (!sl__name_valid(e->d_name, SL_STREAM_NAME_MAX)) continue;
        char *mf;
        struct stat st;
        if (asprintf(&mf, "%s/%s/%s", root, e->d_name, SL_MANIFEST_FILE) < 0) {
            rc = sl__err(SL_ENOMEM, "listing streams");
            break;
        }
        bool is = stat(mf, &st) == 0 && S_ISREG(st.st_mode);
        free(mf);
        if (!is) continue;
        if (l->count == cap) {
            cap = cap ? cap * 2 : 16;
            char **n = realloc(l->names, cap * sizeof *n);
            if (!n) {
                rc = sl__err(SL_ENOMEM, "listing streams");
                break;
            }
            l->names = n;
        }
        if (!(l->names[l->count] = strdup(e->d_name))) rc = sl__err(SL_ENOMEM, "listing streams");
        else l->count++;
    }
    closedir(d);
    if (rc) {
        sl_name_list_free(l);
        return sl__ret(NULL, rc);
    }
    if (l->count) qsort(l->names, l->count, sizeof *l->names, cmp_str);
    *out = l;
    return 0;
}

void sl_name_list_free(sl_name_list *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->count; i++) free(l->names[i]);
    free(l->names);
    free(l);
}

/* ---- describe ----------------------------------------------------------- */

static void shard_info(sl_stream *s, sl_shard *sh, sl_shard_info *o)
{
    memset(o, 0, sizeof *o);
    memcpy(o->shard_id, sh->id, sizeof o->shard_id);
    if (sh->parent != SL_NO_SHARD) sl__shard_id(o->parent_shard_id, sh->parent);
    if (sh->adjacent != SL_NO_SHARD) sl__shard_id(o->adjacent_parent_shard_id, sh->adjacent);
    sl__u128_format(o->starting_hash_key, sh->start);
    sl__u128_format(o->ending_hash_key, sh->end);
    o->starting_sequence = sh->start_seq;
    o->ending_sequence = sh->end_seq;
    o->open = sh->open;
    o->index = sh->index;
    sl__shard_counts(sh, &o->records, &o->bytes);
    (void)s;
}

int sl_stream_list_shards(sl_shard_list **out, sl_stream *s)
{
    if (!out || !s) return sl__ret(s, sl__err(SL_EINVAL, "out or stream is NULL"));
    *out = NULL;
    sl_shard_list *l = calloc(1, sizeof *l);
    if (!l || !(l->shards = calloc(s->nshards, sizeof *l->shards))) {
        free(l);
        return sl__ret(s, sl__err(SL_ENOMEM, "listing shards"));
    }
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nshards; i++) shard_info(s, s->shards[i], &l->shards[i]);
    l->count = s->nshards;
    pthread_mutex_unlock(&s->mu);
    *out = l;
    return 0;
}

void sl_shard_list_free(sl_shard_list *l)
{
    if (!l) return;
    free(l->shards);
    free(l);
}

int sl_stream_describe(sl_stream_desc **out, sl_stream *s)
{
    if (!out || !s) return sl__ret(s, sl__err(SL_EINVAL, "out or stream is NULL"));
    *out = NULL;
    sl_stream_desc *d = calloc(1, sizeof *d);
    if (!d) return sl__ret(s, sl__err(SL_ENOMEM, "describing"));
    pthread_mutex_lock(&s->mu);
    const sl_manifest *m = &s->man;
    int rc = 0;
    sl_shard_info *shards = calloc(s->nshards, sizeof *shards);
    sl_tag *tags = m->ntags ? calloc(m->ntags, sizeof *tags) : NULL;
    char *kms = strdup(m->kms_key_id ? m->kms_key_id : "");
    d->shards = shards;
    d->tags = tags;
    d->kms_key_id = kms;
    if (!shards || (m->ntags && !tags) || !kms) rc = SL_ENOMEM;
    for (size_t i = 0; rc == 0 && i < m->ntags; i++) {
        tags[i].key = strdup(m->tags[i].key);
        tags[i].value = strdup(m->tags[i].value ? m->tags[i].value : "");
        d->tag_count = i + 1;
        if (!tags[i].key || !tags[i].value) rc = SL_ENOMEM;
    }
    if (rc == 0) {
        strcpy(d->stream_name, m->name);
        d->stream_status = "ACTIVE";
        d->stream_mode = m->mode;
        d->retention_hours = m->retention_hours;
        d->encryption_type = m->encryption;
        d->max_record_size_kib = m->max_record_kib;
        d->segment_bytes = m->segment_bytes;
        d->size_cap_bytes = m->size_cap_bytes;
        d->size_cap_policy = m->size_cap_policy;
        d->cold_after_hours = m->cold_after_hours;
        d->compaction = m->compaction;
        d->disk_bytes = sl__stream_disk_bytes(s);
        d->durability = s->durability;
        d->sync_interval_ms = s->sync_interval_ms;
        d->created_ms = m->created_ms;
        d->shard_count = s->nshards;
        for (size_t i = 0; i < s->nshards; i++) {
            shard_info(s, s->shards[i], &shards[i]);
            d->open_shard_count += shards[i].open;
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (rc) {
        sl_stream_desc_free(d);
        return sl__ret(s, sl__err(SL_ENOMEM, "describing"));
    }
    *out = d;
    return 0;
}

void sl_stream_desc_free(sl_stream_desc *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->tag_count; i++) {
        free((char *)d->tags[i].key);
        free((char *)d->tags[i].value);
    }
    free((sl_tag *)d->tags);
    free((char *)d->kms_key_id);
    free((sl_shard_info *)d->shards);
    free(d);
}
