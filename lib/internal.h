/*
** internal.h -- declarations shared by lib/ modules.  Never installed.
**
** Naming: internal non-static functions are sl__<module>_<verb> and hidden
** (the whole library is built with -fvisibility=hidden; only SL_API symbols
** are exported).  Tests link the static archive and may use what is here.
**
** Lock order (outermost first), documented where each lock lives:
**   sched->mu  >  stream->mu  >  shard->lock (append)  >  stream->seq_mu  >
**   shard->seglock  >  shard->gc.mu;  journal->gc.mu is taken alone;
**   consumer->mu  >  (what a checkpoint's sync takes);  stream->cons_mu;
**   leaves, taken with nothing inside: shard->rl->mu, stream->fault_mu,
**   stream->fail_mu, vclock->mu
** No lock is held across a user callback, except the report callback
** (sl_report_fn), which is documented as not calling into the stream.
*/
#ifndef SL_INTERNAL_H
#define SL_INTERNAL_H

#include "shardlog.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>

#define SL_HIDDEN __attribute__((visibility("hidden")))
#define SL_UNUSED __attribute__((unused))
#define SL_LIKELY(x) __builtin_expect(!!(x), 1)
#define SL_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- OS shim (os.c) -----------------------------------------------------
** Every system call whose failure matters goes through this table, so tests
** can make any of them fail (sl__os.fallocate = my_enospc;) and restore the
** real ones with sl__os_reset().  This table is the library's one piece of
** global mutable state; only tests change it. */
typedef struct sl_os {
    int (*open)(const char *path, int flags, mode_t mode);
    int (*close)(int fd);
    ssize_t (*pread)(int fd, void *buf, size_t n, off_t off);
    ssize_t (*pwrite)(int fd, const void *buf, size_t n, off_t off);
    ssize_t (*pwritev)(int fd, const struct iovec *iov, int n, off_t off);
    int (*fallocate)(int fd, int mode, off_t off, off_t len);
    int (*ftruncate)(int fd, off_t len);
    int (*fsync)(int fd);
    int (*fdatasync)(int fd);
    int (*msync)(void *addr, size_t len, int flags);
    int (*rename)(const char *from, const char *to);
    int (*unlink)(const char *path);
    int (*mkdir)(const char *path, mode_t mode);
    int (*rmdir)(const char *path);
    void *(*mmap)(void *addr, size_t len, int prot, int flags, int fd,
                  off_t off);
    int (*munmap)(void *addr, size_t len);
} sl_os;
extern SL_HIDDEN sl_os sl__os;
SL_HIDDEN void sl__os_reset(void);
/* fsync a directory by path (new or renamed entries made durable). */
SL_HIDDEN int sl__os_fsync_dir(const char *path);
/* Write a whole buffer at off (retrying short writes). 0 or -1/errno. */
SL_HIDDEN int sl__os_pwrite_all(int fd, const void *buf, size_t n, off_t off);
SL_HIDDEN int sl__os_pread_all(int fd, void *buf, size_t n, off_t off);
/* Atomically replace path with data: tmp file, fsync, rename, fsync dir. */
SL_HIDDEN int sl__os_replace_file(const char *path, const void *data,
                                  size_t n);
/* Remove a directory tree (best effort, no symlink following). */
SL_HIDDEN int sl__os_rmtree(const char *path);
/* Read a whole small file into a malloc'd, NUL-terminated buffer. */
SL_HIDDEN int sl__os_read_file(const char *path, char **out, size_t *len,
                               size_t max);
/* A hash of this boot's id (/proc/sys/kernel/random/boot_id); 0 if unknown.
** Unchanged means the page cache survived whatever happened. */
SL_HIDDEN uint64_t sl__boot_id(void);
SL_HIDDEN int sl__futex_wait(uint32_t *addr, uint32_t val, int timeout_ms);
SL_HIDDEN void sl__futex_wake(uint32_t *addr);
SL_HIDDEN uint64_t sl__random64(void);

/* ---- Errors (error.c) ---------------------------------------------------
** Internal code records the detail text with sl__err() and returns the code;
** the public entry point then binds the text to its handle with sl__ret().
** The text lives in a thread-local slot, so a shared stream never shows one
** thread's message to another. */
SL_HIDDEN int sl__err(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* As sl__err, appending ": <strerror(errnum)>". */
SL_HIDDEN int sl__errno(int code, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Map an errno from a failed write-side call to a code (ENOSPC/EDQUOT ->
** SL_ENOSPC, ENOMEM -> SL_ENOMEM, else SL_EIO). */
SL_HIDDEN int sl__errno_code(int errnum);
SL_HIDDEN int sl__ret(const void *h, int rc);
SL_HIDDEN const char *sl__errtext(void);

/* ---- Clock (clock.c) ---------------------------------------------------- */
SL_HIDDEN int64_t sl__realtime_ms(void);
SL_HIDDEN int64_t sl__monotonic_ms(void);
SL_HIDDEN extern const sl_clock sl__real_clock;
/* The virtual clock behind a provider, or NULL for any other clock. */
SL_HIDDEN sl_vclock *sl__vclock_of(const sl_clock *c);
/* Listeners: every advance or set bumps *word and futex-wakes it, so that a
** thread waiting for budget under a virtual clock wakes when time moves. */
SL_HIDDEN int sl__vclock_listen(sl_vclock *vc, uint32_t *word);
SL_HIDDEN void sl__vclock_unlisten(sl_vclock *vc, uint32_t *word);

/* ---- Hash keys (hashkey.c) ---------------------------------------------- */
typedef struct sl_u128 {
    uint64_t hi, lo;
} sl_u128;
#define SL_U128_MAX ((sl_u128){UINT64_MAX, UINT64_MAX})

static inline int sl__u128_cmp(sl_u128 a, sl_u128 b)
{
    if (a.hi != b.hi) return a.hi < b.hi ? -1 : 1;
    if (a.lo != b.lo) return a.lo < b.lo ? -1 : 1;
    return 0;
}
SL_HIDDEN sl_u128 sl__u128_from_be(const uint8_t b[16]);
SL_HIDDEN void sl__u128_to_be(uint8_t b[16], sl_u128 v);
/* Decimal, strict Kinesis pattern.  SL_EVALIDATION / SL_EINVAL. */
SL_HIDDEN int sl__u128_parse(sl_u128 *out, const char *s);
SL_HIDDEN char *sl__u128_format(char buf[40], sl_u128 v);
/* Kinesis' even split of the hash key space into n shards, shard i. */
SL_HIDDEN void sl__hashkey_split(sl_u128 *start, sl_u128 *end, uint32_t i,
                                 uint32_t n);
/* Validate UTF-8 (no overlongs, surrogates or values past U+10FFFF) and
** count code points and UTF-16 units.  -1 if invalid, *bytes then being the
** offset of the bad sequence. */
SL_HIDDEN int sl__utf8_scan(const char *s, size_t *bytes, size_t *points,
                            size_t *units);
/* Validate a partition key: well-formed UTF-8, 1..256 UTF-16 units.
** Returns 0 or SL_EVALIDATION with a message; *bytes = strlen. */
SL_HIDDEN int sl__partition_key_check(const char *key, size_t *bytes);

/* MD5 through libcrypto's EVP interface.  One per thread (producer). */
typedef struct sl_md5 sl_md5;
SL_HIDDEN int sl__md5_new(sl_md5 **out);
SL_HIDDEN void sl__md5_free(sl_md5 *m);
SL_HIDDEN int sl__md5(sl_md5 *m, const void *data, size_t n, uint8_t out[16]);
/* One-block MD5s (each key <= 55 bytes) in parallel lanes: sl__md5_lanes()
** is 16 (AVX-512), 8 (AVX2) or 0 (use sl__md5); run takes that many keys. */
#define SL_MD5_LANE_KEY_MAX 55u
SL_HIDDEN int sl__md5_lanes(void);
SL_HIDDEN void sl__md5_lanes_run(int lanes, const char *const *keys, const size_t *lens,
                                 uint8_t (*out)[16]);

/* ---- Records (record.c) -------------------------------------------------
** Framing: see the format comment at the top of segment.c. */
#define SL_REC_HDR 32u
#define SL_REC_OVERHEAD 40u           /* header + trailing XXH3 */
#define SL_KEY_BYTES_MAX 1024u        /* 256 UTF-16 units need <= 768 */

/* An encrypted record (rec_flags SL_REC_ENC) carries 24 more bytes: the
** data key version and the nonce salt before the ciphertext, the GCM tag
** after it. */
#define SL_REC_ENC 0x1u
#define SL_REC_ENC_EXTRA 24u
#define SL_REC_ENC_HDR 40u            /* header, key version, salt */
#define SL_GCM_TAG 16u

static inline uint64_t sl__pad8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }
static inline uint64_t sl__rec_span(size_t klen, size_t dlen)
{
    return sl__pad8(SL_REC_OVERHEAD + klen + dlen);
}
/* rec_bytes of a well-framed record with these flags (0 or SL_REC_ENC) */
static inline uint64_t sl__rec_bytes(uint32_t flags, size_t klen, size_t dlen)
{
    return SL_REC_OVERHEAD + (flags ? SL_REC_ENC_EXTRA : 0) + klen + dlen;
}

typedef struct sl_recview {
    uint64_t seq;
    int64_t ms;
    const uint8_t *key;               /* ciphertext if flags has SL_REC_ENC */
    const uint8_t *data;
    uint32_t klen, dlen;
    uint32_t flags;
    uint64_t span;                    /* padded size on disk */
} sl_recview;

/* A data key, unwrapped (crypto.c); wiped when the stream closes. */
typedef struct sl_dkey {
    uint32_t version;
    uint8_t key[SL_DATA_KEY_BYTES];
} sl_dkey;

/* What sealing a record needs: the current data key, the open's nonce salt,
** the shard's cipher context (under its lock) and what the associated data
** binds besides the record's header. */
typedef struct sl_seal {
    const sl_dkey *key;
    uint32_t salt;
    uint32_t shard_index;
    uint64_t stream_id;
    void **ctx;                       /* EVP_CIPHER_CTX *, made on first use */
    uint32_t *ctx_ver;                /* the key version ctx is set up for */
} sl_seal;

SL_HIDDEN uint64_t sl__xxh3(const void *p, size_t n);
/* Frame one record at dst (which has sl__rec_span bytes, zero-filled);
** with e, encrypted (span from sl__rec_bytes(SL_REC_ENC, ...)).  Fails
** (SL_EIO, dst left zero) only if libcrypto does. */
SL_HIDDEN int sl__rec_write(uint8_t *dst, uint64_t seq, int64_t ms,
                            const void *key, uint32_t klen, const void *data,
                            uint32_t dlen, const sl_seal *e);
/* Sequence numbers lie below 2^63.  A writer issuing 10 M/s would take
** 29,000 years to get there; a record, trailer or SEQ slot naming a number
** at or above it is damaged (or forged), and the writer refuses to issue
** numbers past it (SL_ELIMIT) rather than wrap around to reused ones. */
#define SL_SEQ_LIMIT ((uint64_t)1 << 63)
/* Results of sl__rec_parse. */
enum { SL_REC_OK = 0, SL_REC_END = 1, SL_REC_BAD = 2 };
/* Parse the record at p with `avail` bytes before the region's end.
** verify: also check the XXH3 (else only the header's consistency, the
** sequence number below SL_SEQ_LIMIT included).
** SL_REC_END: a zero slot (the end of what was ever written). */
SL_HIDDEN int sl__rec_parse(const uint8_t *p, uint64_t avail, bool verify,
                            sl_recview *out);

/* Little-endian access into mappings (all formats are little-endian). */
static inline uint16_t sl__ld16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t sl__ld32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t sl__ld64(const void *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline void sl__st16(void *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void sl__st32(void *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void sl__st64(void *p, uint64_t v) { memcpy(p, &v, 8); }
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "shardlog's file formats are little-endian; big-endian hosts need byte swaps here"
#endif

/* ---- Segments (segment.c) ----------------------------------------------- */
#define SL_SEG_HDR 256u
#define SL_SEG_TRAILER 128u
#define SL_IDX_ENTRY 32u
#define SL_IDX_STRIDE 4096u           /* one index entry per 4 KiB of data */

/* An index entry: the first record of a block of about 4 KiB, and the
** XXH3-64 of the whole block (0: none, e.g. the block is still open). */
typedef struct sl_idx {
    uint64_t seq;
    int64_t ms;
    uint64_t off;
    uint64_t sum;
} sl_idx;

typedef struct sl_shard sl_shard;
typedef struct sl_shard_rl sl_shard_rl;

/* ---- Durable commits (commit.c) -----------------------------------------
** Group commit: threads wait for a target (a shard's sequence number, or a
** journal ticket); one leads, running rounds that make everything committed
** durable, and each round wakes the waiters it covered. */
typedef struct sl_gc {
    pthread_mutex_t mu;
    bool leading;                     /* a leader is running rounds */
    bool spin;                        /* a lone waiter spins first (SMP) */
    uint64_t done;                    /* every target up to here is durable */
    struct sl_waiter *waiters;
} sl_gc;
/* A round: make all that is committed durable; *upto: the targets covered. */
typedef int (*sl_gc_round)(void *ctx, uint64_t *upto);
SL_HIDDEN void sl__gc_init(sl_gc *g);
SL_HIDDEN void sl__gc_destroy(sl_gc *g);
/* Return once `done` >= target, leading rounds when no one else is.  A
** failed round (or a stream already failed) fails every waiter, with a
** message naming `what`. */
SL_HIDDEN int sl__gc_wait(sl_gc *g, uint64_t target, sl_gc_round round, void *ctx,
                          sl_stream *s, const char *what);
/* Targets up to upto became durable another way (a sealed, synced segment). */
SL_HIDDEN void sl__gc_advance(sl_gc *g, uint64_t upto);
/* The ALWAYS-mode commit journal (format and protocol in commit.c). */
#define SL_JOURNAL_FILE "JOURNAL"
typedef struct sl_journal sl_journal;
/* Writer open, before the shards load: replay a journal left by a crash;
** then keep its file (ALWAYS mode will use it) or remove it. */
SL_HIDDEN int sl__journal_recover(sl_stream *s, bool keep_file);
/* Writer open in ALWAYS mode, after the shards load (syncs them once). */
SL_HIDDEN int sl__journal_open(sl_stream *s);
/* After appending: return once everything this thread committed is durable. */
SL_HIDDEN int sl__journal_commit(sl_stream *s);
/* Free the journal; `clear` (a clean close, after every shard was synced):
** clear it first, so that the next open has nothing to replay. */
SL_HIDDEN int sl__journal_close(sl_stream *s, bool clear);

/* One segment file.  Owned by its shard's list (shard->segs); the mapping
** exists while `users` > 0 (iterators, the writer, a sync in progress) and,
** for the writer's active segment, always.  Fields marked (W) belong to the
** writer and are guarded by the shard's append lock; (L) by shard->seglock;
** (S) belong to the shard's sync round (one at a time: the group-commit
** leader); (I) are immutable after the segment joins the list. */
typedef struct sl_seg {
    uint64_t ordinal;                 /* (I) */
    uint64_t file_bytes;              /* (I) from the header */
    uint64_t map_len;                 /* (I) bytes that may be mapped */
    uint8_t *base;                    /* (L) mapping or NULL */
    int users;                        /* (L) */
    bool writable;                    /* (I) mapped read-write (writer) */
    _Atomic bool sealed;              /* trailer valid, data_end final */
    uint64_t data_end;                /* valid once `sealed` (acquire) */
    /* summary, valid once sealed (from the trailer or a scan) */
    uint64_t first_seq, last_seq, count, payload;
    int64_t first_ms, last_ms;
    /* index kept in memory when the on-disk one is missing or damaged */
    sl_idx *mem_idx;                  /* (L) */
    uint32_t mem_nidx;
    bool idx_checked;                 /* (L) on-disk index checksum verified */
    bool last_block_damaged;          /* (W) after recovery: no block sum */
    bool loaded;                      /* (L) false: a stub (ordinal, path)
                                         read on first use (shard.c) */
    bool durable;                     /* (L) synced since sealed (writer) */
    bool removed;                     /* (L) deleted: off the list, freed
                                         by the last unpin */
    bool cold;                        /* (L) a cold (compressed) file; set
                                         at open, or by sl__seg_map when the
                                         file was rewritten cold since */
    bool dir_durable;                 /* (L) its directory entry is synced */
    /* read-only follower of a dead writer: cap the visible tail at `ro_cap`
    ** while the header's writer epoch is still `ro_epoch` */
    uint64_t ro_cap;
    uint32_t ro_epoch;
    /* writer state (W) */
    uint64_t tail;                    /* end of committed records */
    uint64_t idx_low;                 /* lowest byte of the index area */
    uint32_t nidx;
    uint64_t next_idx_off;            /* next record at/after this gets one */
    uint32_t soft_gen;                /* writer's copy of the header's */
    uint64_t hdr_synced;              /* (S) synced-tail hint when the
                                         header page was last synced */
    bool stamp_pending;               /* first commit stamps boot and epoch */
    /* the preparer thread populates pages ahead of the writer */
    _Atomic uint64_t pf_end;          /* populated up to here */
    _Atomic uint64_t kick_at;         /* a tail past this wakes the preparer */
    char *path;                       /* (I) */
    char *tmp_path;                   /* while prepared but not published */
    /* ---- cold state (segment.c, issue 5 "Cold compression") ----
    ** A cold segment is sealed from its open; data_end, first/last seq and
    ** ms, count and payload come from its cold trailer; file_bytes and
    ** map_len are the real file size.  Its mapping (read-only, while pinned)
    ** is read for the block table and compressed blocks only, never handed
    ** out as records: readers decompress a block at a time (iterator.c). */
    uint64_t hdr_sum;                 /* (L) hdr_xxh3 of the file read or
                                         written (0: unknown); sl__seg_map
                                         compares it to spot a file replaced
                                         since (rewritten cold, compacted) */
    uint32_t cold_nblk;               /* (L) blocks */
    uint64_t cold_tab_off;            /* (L) the block table's file offset */
    struct sl_cblk *cold_tab;         /* (L) the table rebuilt in memory by a
                                         scan when the file's is damaged, or
                                         NULL: read it through the mapping */
} sl_seg;

/* Header offsets (see the format comment in segment.c). */
#define SL_H_COMMIT_TAIL 64
#define SL_H_INDEX_COUNT 72
#define SL_H_STATE 76
#define SL_H_SYNCED_TAIL 80
#define SL_H_SYNCED_INDEX 88
#define SL_H_WRITER_EPOCH 92
#define SL_H_SYNCED_COUNT 96
#define SL_H_SYNCED_BYTES 104
#define SL_H_BOOT 112
#define SL_H_SOFT_GEN 120
#define SL_H_SOFT_COUNT 128
#define SL_H_SOFT_BYTES 136
#define SL_STATE_ACTIVE 0u
#define SL_STATE_SEALED 1u

static inline uint64_t *sl__hdr64(const sl_seg *g, unsigned off)
{
    return (uint64_t *)(void *)(g->base + off);
}
static inline uint32_t *sl__hdr32(const sl_seg *g, unsigned off)
{
    return (uint32_t *)(void *)(g->base + off);
}

/* Context for segment operations: where to report, which stream. */
typedef struct sl_segctx {
    uint64_t stream_id;
    uint32_t shard_index;
    const char *shard_id;
    int64_t now_ms;
    bool sync_now;                    /* ALWAYS: sync in create / seal;
                                         INTERVAL leaves it to the syncer */
    sl_report_fn report;
    void *report_ctx;
    uint64_t *damage_count;
} sl_segctx;

SL_HIDDEN char *sl__seg_path(const char *shard_dir, uint64_t ordinal);
/* Create, preallocate and map a new active segment.  SL_ENOSPC if the disk
** cannot hold it; nothing is left behind on failure. */
SL_HIDDEN int sl__seg_create(sl_seg **out, const sl_segctx *c,
                             const char *shard_dir, uint64_t ordinal,
                             uint64_t file_bytes);
/* Open an existing segment file and read its header and (if sealed) its
** trailer.  `writer`: recover (and map) it as the writer would; `last`: it
** is the newest segment of its shard.  Damage is reported through c.
** Returns 0 and *out (NULL if the file is unusable and was quarantined or
** skipped), or a hard error (SL_EIO, SL_ENOMEM, SL_ENOSPC). */
/* Set a damaged segment file aside: the writer renames it to .corrupt, a
** reader skips it; either way the damage is reported through c. */
SL_HIDDEN void sl__seg_quarantine(const sl_segctx *c, const char *path, bool writer,
                                  const char *why);
SL_HIDDEN int sl__seg_open(sl_seg **out, const sl_segctx *c,
                           const char *path, uint64_t ordinal, bool writer,
                           bool last, bool writer_alive);
SL_HIDDEN void sl__seg_free(sl_seg *g);
/* Map for a reader (caller holds seglock).  SL_EIO/SL_ECORRUPT on failure.
** A file replaced under g since it was read (rewritten cold or compacted;
** its header checksum differs from g->hdr_sum) is described again first. */
SL_HIDDEN int sl__seg_map(sl_seg *g, const sl_segctx *c);
SL_HIDDEN void sl__seg_unmap(sl_seg *g);

/* Writer: does a record of `span` bytes fit (with an index entry)? */
static inline bool sl__seg_fits(const sl_seg *g, uint64_t span)
{
    uint64_t need_idx = (g->tail >= g->next_idx_off) ? SL_IDX_ENTRY : 0;
    return g->tail + span + need_idx <= g->idx_low;
}
/* Writer: frame one record at the tail (not yet published); encrypted
** with e.  Fails only if libcrypto does (nothing appended). */
SL_HIDDEN int sl__seg_append(sl_seg *g, uint64_t seq, int64_t ms,
                             const void *key, uint32_t klen,
                             const void *data, uint32_t dlen, const sl_seal *e);
/* Writer: copy a framed record (parsed as v) to the tail (compaction). */
SL_HIDDEN void sl__seg_append_copy(sl_seg *g, const uint8_t *rec, const sl_recview *v);
/* Writer: publish the tail and index count to readers (store-release). */
SL_HIDDEN void sl__seg_publish(sl_seg *g);
/* Writer: write the trailer, sync if c->sync_now, mark sealed. */
SL_HIDDEN int sl__seg_seal(sl_seg *g, const sl_segctx *c);
/* Writer: a consistent mark of the committed state (under the append lock),
** then make the segment durable (msync) and record the mark as the hint. */
typedef struct sl_segmark {
    uint64_t tail;
    uint32_t nidx;
    uint64_t count, payload;
} sl_segmark;
SL_HIDDEN void sl__seg_mark(const sl_seg *g, sl_segmark *m);
/* with_index: everything from the header to m->tail, the index and the
** trailer.  Without (ALWAYS mode's group commit): the records written since
** the last sync, and the header page once per 16 MiB.  The index, trailer
** and header only speed recovery up; syncing them with every round cost a
** second write or flush per round. */
SL_HIDDEN int sl__seg_sync(sl_seg *g, const sl_segmark *m, bool with_index);
/* A sealed segment's data, index and trailer. */
SL_HIDDEN int sl__seg_sync_sealed(sl_seg *g);
/* Preparer: populate (MADV_POPULATE_WRITE) the pages up to `upto`, so the
** writer's copies do not fault.  -1 if the kernel cannot. */
SL_HIDDEN int sl__seg_populate(sl_seg *g, uint64_t upto);
/* Create a segment under its .tmp name, preallocated and mapped, not yet
** part of the shard; publish gives it its name; discard removes it. */
SL_HIDDEN int sl__seg_prepare(sl_seg **out, const sl_segctx *c,
                              const char *shard_dir, uint64_t ordinal,
                              uint64_t file_bytes, bool spare);
SL_HIDDEN int sl__seg_publish_file(sl_seg *g, const sl_segctx *c,
                                   const char *shard_dir);
SL_HIDDEN void sl__seg_discard(sl_seg *g);
/* Minimum file size able to hold one record of `span` bytes. */
SL_HIDDEN uint64_t sl__seg_bytes_for(uint64_t span, uint64_t configured);

/* Reader side. */
SL_HIDDEN uint64_t sl__seg_visible_end(sl_seg *g);
SL_HIDDEN bool sl__seg_is_sealed(sl_seg *g);
/* A follower: notice that another process sealed g (caller holds seglock,
** g mapped). */
SL_HIDDEN bool sl__seg_refresh_sealed(sl_seg *g);
/* Verify a sealed segment's index once (caller holds seglock, g mapped);
** rebuild it in memory if damaged. */
SL_HIDDEN void sl__seg_index_check(sl_seg *g, const sl_segctx *c);
SL_HIDDEN uint32_t sl__seg_index_count(sl_seg *g, uint64_t end);
SL_HIDDEN sl_idx sl__seg_index_get(sl_seg *g, uint32_t i);
/* Readers: if `off` starts an index block that is complete (it has a
** checksum and ends below `end`), return the block's end in *block_end and
** whether its checksum matches; *hint speeds up sequential calls.
** Returns -1 if off starts no complete block (then *block_end is the next
** block start at or after off, or `end`). */
SL_HIDDEN int sl__seg_block_check(sl_seg *g, uint64_t off, uint64_t end,
                                  uint32_t *hint, uint64_t *block_end);
/* First offset >= 128 whose record has key (seq or ms) >= target, within
** [SL_SEG_HDR, end).  Returns end if none. */
SL_HIDDEN uint64_t sl__seg_seek(sl_seg *g, uint64_t end, bool by_ms,
                                uint64_t target);
/* After damage at `bad`: the next offset at which a valid record starts
** (from the index), or end. */
SL_HIDDEN uint64_t sl__seg_resync(sl_seg *g, uint64_t bad, uint64_t end,
                                  uint64_t after_seq);
/* Count records and payload bytes in [SL_SEG_HDR, end) by hopping. */
SL_HIDDEN void sl__seg_count(sl_seg *g, uint64_t end, uint64_t *records,
                             uint64_t *payload);

/* Cold segments (format at the top of segment.c).  The offsets of a cold
** segment's records are those of its hot layout, so an iterator's position
** means the same in both kinds; block k holds the whole records of
** [raw_off, raw_off + raw_len).  For a cold segment, sl__seg_visible_end
** is data_end, sl__seg_seek decompresses the one block it needs (a damaged
** block: its start, where the read reports the damage), sl__seg_index_check
** verifies the block table (rebuilding it by a scan if damaged), and
** sl__seg_resync, sl__seg_count and sl__seg_block_check are not used on
** them (they answer without reading records). */
#define SL_COLD_BLOCK_RAW 65536u      /* raw bytes per block (whole records) */
struct ZSTD_DCtx_s;                   /* <zstd.h> */
typedef struct sl_cblk {
    uint64_t raw_off;                 /* first record's offset, hot layout */
    uint32_t raw_len, zlen;
    uint64_t file_off;                /* the zstd frame in the cold file */
    uint64_t first_seq;
    int64_t first_ms;
    uint64_t raw_xxh3;                /* of the decompressed bytes */
} sl_cblk;
/* Write g's cold version to tmp_path: g sealed, hot, mapped and loaded.
** O_EXCL 0600 through sl__os, written, fdatasync'd, closed; the caller
** renames it over g->path and syncs the directory.  SL_EINVAL (not sealed,
** already cold, not mapped), SL_ECORRUPT (damaged: nothing written),
** SL_EIO/SL_ENOSPC/SL_ENOMEM (tmp_path removed).  *file_bytes_out: the cold
** file's size. */
SL_HIDDEN int sl__seg_write_cold(sl_seg *g, const sl_segctx *c, const char *tmp_path,
                                 int level, uint64_t *file_bytes_out);
/* Block k of a pinned cold segment (k < g->cold_nblk). */
SL_HIDDEN sl_cblk sl__seg_cold_block(const sl_seg *g, uint32_t k);
/* The first block whose range ends after off (the block holding off, or
** the next one after a gap left by a damaged block); cold_nblk if none. */
SL_HIDDEN uint32_t sl__seg_cold_find(const sl_seg *g, uint64_t off);
/* Decompress block k of a pinned cold segment into dst (raw_len bytes) and
** verify its raw_xxh3.  dctx: a ZSTD_DCtx to reuse, or NULL.  0, SL_ENOMEM,
** or SL_ECORRUPT with *why set (a static string). */
SL_HIDDEN int sl__seg_cold_decode(const sl_seg *g, uint32_t k, struct ZSTD_DCtx_s *dctx,
                                  uint8_t *dst, const char **why);

/* ---- Shards (shard.c) --------------------------------------------------- */
#define SL_NO_SHARD UINT32_MAX
/* Shards a stream may have had, open and closed (the manifest's limit). */
#define SL_SHARDS_TOTAL_MAX (4u * SL_SHARDS_MAX)

/* Shards are allocated on their own cache lines (sl__shard_alloc), so two
** threads appending to two shards never share a line. */
struct sl_shard {
    /* identity and lineage (immutable while the stream is open) */
    uint32_t index;
    char id[SL_SHARD_ID_LEN + 1];
    sl_u128 start, end;
    _Atomic bool open;                /* cleared once, by a reshard */
    uint32_t parent, adjacent;
    uint64_t start_seq;
    _Atomic uint64_t end_seq;         /* set when closed */
    char *dir;
    sl_stream *s;

    /* append lock: the writer's state of this shard */
    pthread_mutex_t lock;
    sl_seg *active;                   /* current segment or NULL */
    uint64_t next_ordinal;            /* ordinal of the next new segment */
    uint64_t first_own_ordinal;       /* below: a dead writer's ordinals */
    bool leftovers;                   /* (preparer) its .tmp/.spare files */
    uint64_t last_seq;                /* last committed in this shard */
    int64_t last_ms;                  /* clamp for arrival times */
    sl_seg *spare;                    /* the next segment, prepared ahead */
    _Atomic uint64_t spare_bytes;     /* its file size, read lock-free */
    uint64_t seq_next, seq_end;       /* this shard's block of numbers */
    void *cctx;                       /* EVP_CIPHER_CTX sealing records, */
    uint32_t cctx_ver;                /* set up for this key version */

    /* segment list, oldest first; seglock guards the array and mappings */
    pthread_mutex_t seglock;
    sl_seg **segs;
    size_t nseg, capseg;

    /* wake-up slot in the stream's WAKE file: {u32 notify, u32 waiters} */
    uint32_t *wake;

    sl_shard_rl *rl;                  /* rate limits and counters */
    uint64_t gone_seq;                /* (seglock) largest deleted seq */
    bool gone_unknown;                /* (I) GONE damaged: the oldest
                                         segment left tells (shard.c) */
    pthread_mutex_t drop_mu;          /* one segment deletion at a time */
    uint64_t compacted_upto;          /* (maintenance) newest sealed ordinal
                                         at the last key compaction */

    /* group commit of this shard's segments: targets are sequence numbers */
    sl_gc gc;
};

/* One record to append (validated, routed). */
typedef struct sl_pending {
    const char *key;
    uint32_t klen;
    const void *data;
    uint32_t dlen;
    size_t entry;                     /* index in the caller's batch */
} sl_pending;

SL_HIDDEN sl_shard *sl__shard_alloc(void);
SL_HIDDEN int sl__shard_init(sl_shard *sh, sl_stream *s, uint32_t index);
SL_HIDDEN void sl__shard_destroy(sl_shard *sh);
/* Load the shard's segments (writer: recover; reader: follow). */
SL_HIDDEN int sl__shard_load(sl_shard *sh, bool writer, bool writer_alive);
/* Ordinals of the "<16 hex>.seg" files of the shard's directory above
** `after`, sorted (leftover .tmp/.spare/.corrupt files left out; a writer
** marks .tmp ones for removal).  *max_seen (may be NULL): the largest
** ordinal of any segment file name.  A missing directory is no segment for
** a reader. */
SL_HIDDEN int sl__shard_list_segs(sl_shard *sh, uint64_t after, bool writer, uint64_t **out,
                                  size_t *n, uint64_t *max_seen);
/* Append n records under one lock acquisition.  seqs[i] receives each
** record's sequence number; on failure at record k, records 0..k-1 are
** committed, *done = k, and the error is returned. */
SL_HIDDEN int sl__shard_append(sl_shard *sh, const sl_pending *recs, size_t n,
                               int64_t now_ms, uint64_t *seqs, size_t *done);
/* Returned (positive, internal) by sl__shard_append when a reshard closed
** the shard: route again. */
#define SL__RESHARDED 1
/* Reshard: take the shard's append lock and seal its active segment; the
** lock stays held until sl__shard_close_end, which marks it closed (or
** not, if the reshard failed).  *last_seq: its last record's number. */
SL_HIDDEN int sl__shard_close_begin(sl_shard *sh, uint64_t *last_seq);
SL_HIDDEN void sl__shard_close_end(sl_shard *sh, bool closed, uint64_t end_seq);
/* Return once every record up to seq is durable in the shard's segments. */
SL_HIDDEN int sl__shard_wait_durable(sl_shard *sh, uint64_t seq);
/* fdatasync a segment file through a descriptor of our own (the page cache
** is the file's, mappings included).  A file whose header says it was last
** written in an earlier boot needs none: what survived the reboot is on
** disk.  A missing file has nothing to sync.  *did: a sync was issued. */
SL_HIDDEN int sl__seg_file_sync(const char *path, bool *did);
/* Make everything committed so far durable (interval thread, stream sync),
** including segment files an earlier writer left (synced once). */
SL_HIDDEN int sl__shard_sync(sl_shard *sh);
SL_HIDDEN void sl__shard_wake(sl_shard *sh);
/* The preparer's work for one shard: populate pages ahead of the active
** segment's tail; prepare the next segment once the active one is half
** full.  Returns false if the kernel cannot populate (stop trying). */
SL_HIDDEN bool sl__shard_prepare(sl_shard *sh);
/* Reader helpers (take seglock internally). */
/* Pin the segment with the smallest ordinal > after (NULL if none yet). */
SL_HIDDEN int sl__shard_get_seg(sl_shard *sh, uint64_t after, sl_seg **out);
SL_HIDDEN void sl__shard_put_seg(sl_shard *sh, sl_seg *g);
/* The active segment, pinned (release with sl__shard_put_seg), and its
** committed tail; NULL if the shard has none. */
SL_HIDDEN sl_seg *sl__shard_pin_active(sl_shard *sh, uint64_t *tail);
/* Pin the oldest / newest / n-th segment; NULL if the shard has none. */
SL_HIDDEN int sl__shard_first_seg(sl_shard *sh, sl_seg **out);
SL_HIDDEN int sl__shard_last_seg(sl_shard *sh, sl_seg **out);
/* Pin the segment holding the first record whose key (sequence number, or
** arrival ms if by_ms) is >= target, and its offset (the visible end if no
** such record yet: the tip).  *seg_out NULL if the shard has no segment. */
SL_HIDDEN int sl__shard_seek(sl_shard *sh, bool by_ms, uint64_t target,
                             sl_seg **seg_out, uint64_t *off_out);
/* Has g been sealed (possibly by another process's writer)? */
SL_HIDDEN bool sl__shard_refresh_sealed(sl_shard *sh, sl_seg *g);
SL_HIDDEN void sl__shard_counts(sl_shard *sh, uint64_t *records,
                                uint64_t *payload);

/* ---- Rate limits and faults (ratelimit.c) ------------------------------
** Token buckets hold tokens x 1000 ("milli-tokens"), refilled continuously
** at `rate` tokens per second up to one second's worth; `milli` may go
** negative (debt) after a cost larger than what was left was forced.
** The rules (clock steps, waits, clamping) are at the top of ratelimit.c. */
typedef struct sl_bucket {
    int64_t milli;
    int64_t at_ms;                    /* last refill, stream clock */
    uint64_t rate;                    /* tokens per second; 0: unlimited */
} sl_bucket;
SL_HIDDEN void sl__bucket_init(sl_bucket *b, uint64_t rate, int64_t now_ms);
SL_HIDDEN void sl__bucket_refill(sl_bucket *b, int64_t now_ms);
/* Take `cost` if the bucket holds it, or if the bucket is full (a cost
** larger than a whole bucket then leaves it in debt).  Else return false
** and set *wait_ms to when it would succeed. */
SL_HIDDEN bool sl__bucket_take(sl_bucket *b, uint64_t cost, int64_t now_ms,
                               int64_t *wait_ms);
/* Take `cost` unconditionally (reads are charged after the fact). */
SL_HIDDEN void sl__bucket_charge(sl_bucket *b, uint64_t cost, int64_t now_ms);
/* ms until the bucket holds `cost` (0: now). */
SL_HIDDEN int64_t sl__bucket_wait(sl_bucket *b, uint64_t cost, int64_t now_ms);

/* A read budget: a shard's shared one (calls, records, bytes, penalty) or a
** dedicated consumer's on one shard (bytes only: calls and records have
** rate 0).  Not locked: the owner locks. */
typedef struct sl_rbudget {
    sl_bucket calls, recs, bytes;
    int64_t penalty_until;            /* stream clock ms; 0: none */
    uint32_t penalty_ms;              /* after a SL_GET_BYTES_MAX read; 0: none
                                         (dedicated) */
} sl_rbudget;
SL_HIDDEN void sl__rbudget_init(sl_rbudget *b, const sl_stream *s,
                                bool dedicated, int64_t now_ms);
/* ms until a read may start (0: now): the longest of the penalty, a call
** token, and the record and byte buckets getting out of debt (>= 0).  No
** side effects. */
SL_HIDDEN int64_t sl__rbudget_wait(sl_rbudget *b, int64_t now_ms);
/* A read starts (takes its call token) / returned recs and bytes (charged;
** a read of SL_GET_BYTES_MAX bytes starts the penalty). */
SL_HIDDEN void sl__rbudget_begin(sl_rbudget *b, int64_t now_ms);
SL_HIDDEN void sl__rbudget_end(sl_rbudget *b, int64_t now_ms, uint64_t recs,
                               uint64_t bytes);

/* Per-shard rate state (sh->rl; always allocated, used unless OFF). */
struct sl_shard_rl {
    pthread_mutex_t mu;
    sl_bucket wrecs, wbytes;          /* writes */
    sl_rbudget shared;                /* shared reads */
    sl_shard_counters c;
    /* offered write load per whole second of the stream clock (ON_DEMAND
    ** scaling): the second being counted, its records and bytes */
    int64_t od_sec;
    uint64_t od_recs, od_bytes;
};
/* Whole seconds in a row, up to now, in which the shard's offered write
** load passed its capacity. */
SL_HIDDEN uint32_t sl__rl_hot_seconds(sl_shard *sh, int64_t now_ms);
/* ON_DEMAND: split a hot shard at the middle of its range (reshard.c;
** caller holds nothing). */
SL_HIDDEN int sl__reshard_split_hot(sl_stream *s, sl_shard *sh);
SL_HIDDEN int sl__rl_init(sl_shard *sh);
SL_HIDDEN void sl__rl_destroy(sl_shard *sh);
/* Fill *out from `in` (NULL: all defaults): every zero field takes its
** Kinesis default. */
SL_HIDDEN void sl__limits_resolve(sl_limits *out, const sl_limits *in);
/* Writes: decide for recs[0..n) (one shard's entries of a put or batch, in
** order) at now_ms.  Entries that may not land (ENFORCE) get
** results[entry].error = SL_ETHROTTLED with retry_after_ms (and a static
** error_message; the detail text is in sl__errtext()) and are removed: the
** survivors are compacted to the front of recs, their count returned.
** Counts records_in / bytes_in for the survivors as if they landed (the
** caller un-counts failures with sl__rl_write_undo, which also refunds
** their tokens).  Injected put faults are not checked here: see
** sl__fault_put. */
SL_HIDDEN size_t sl__rl_write_admit(sl_shard *sh, sl_pending *recs, size_t n,
                                    int64_t now_ms, sl_put_result *results);
SL_HIDDEN void sl__rl_write_undo(sl_shard *sh, const sl_pending *recs,
                                 size_t n);
/* Shared reads: may a read call start now?  0: yes, the call token is
** taken; SL_ETHROTTLED (ENFORCE only) with *retry_ms.  *over: the read is
** over the budget (counted as read_throttled; in ACCOUNT mode it goes
** ahead). */
SL_HIDDEN int sl__rl_read_begin(sl_shard *sh, int64_t now_ms, int64_t *retry_ms,
                                bool *over);
/* ms until a shared read may start (0: now), without side effects. */
SL_HIDDEN int64_t sl__rl_read_wait(sl_shard *sh, int64_t now_ms);
/* A shared read (begun above) returned recs records of bytes. */
SL_HIDDEN void sl__rl_read_end(sl_shard *sh, int64_t now_ms, uint64_t recs,
                               uint64_t bytes, int64_t behind_ms, bool over);
/* A dedicated read returned recs records of bytes (counters only). */
SL_HIDDEN void sl__rl_count_out(sl_shard *sh, uint64_t recs, uint64_t bytes,
                                int64_t behind_ms);
/* An injected SL_FAULT_PUT_NTH / SL_FAULT_PUT_KEY for a validated put entry
** routed to sh, or 0.  The producer calls it for every such entry in request
** order (before grouping by shard), only while s->faults is not NULL; a hit
** entry fails with the returned code and sl__errtext(). */
SL_HIDDEN int sl__fault_put(sl_stream *s, const sl_shard *sh, const sl_pending *pd);
/* An injected SL_FAULT_READ_NTH for this read, or 0. */
SL_HIDDEN int sl__fault_read(sl_stream *s);
SL_HIDDEN void sl__faults_free(sl_stream *s);

/* ---- Retention (retention.c, with shard.c) ------------------------------- */
/* The newest expired arrival time: records with arrival_ms <= it are gone
** for readers. */
SL_HIDDEN int64_t sl__horizon(sl_stream *s, int64_t now_ms);
SL_HIDDEN uint64_t sl__size_cap_min(uint32_t shards, uint64_t segment_bytes);
/* Segment files on disk, all shards (stubs are stat'ed once). */
SL_HIDDEN uint64_t sl__stream_disk_bytes(sl_stream *s);
SL_HIDDEN uint64_t sl__shard_disk_bytes(sl_shard *sh);
/* Would `more` bytes pass the size cap? */
SL_HIDDEN bool sl__cap_tight(sl_stream *s, uint64_t more);
/* Make room for `more` bytes under the cap: DROP_OLDEST deletes oldest
** sealed segments (any shard); REFUSE returns SL_ENOSPC.  Takes no append
** lock (callers may hold their own shard's). */
SL_HIDDEN int sl__cap_make_room(sl_stream *s, uint64_t more, sl_maint_stats *st);
/* The shard's oldest segment if sealed (not the writer's): its last_ms. */
SL_HIDDEN bool sl__shard_oldest_sealed(sl_shard *sh, int64_t *last_ms);
/* Delete the oldest sealed segment if its last record is <= horizon
** (INT64_MAX: whatever it holds).  *did, *freed: what happened. */
SL_HIDDEN int sl__shard_drop_oldest(sl_shard *sh, int64_t horizon, uint64_t *freed,
                                    bool *did);
/* Seal the active segment if all its records are <= horizon. */
SL_HIDDEN int sl__shard_seal_expired(sl_shard *sh, int64_t horizon, bool *did);
/* Write the cold (zstd) version of a sealed segment to tmp_path, synced
** (segment.c).  SL_ECORRUPT: g is damaged, nothing written. */
SL_HIDDEN int sl__seg_write_cold(sl_seg *g, const sl_segctx *c, const char *tmp_path,
                                 int level, uint64_t *file_bytes_out);
/* Pin the segment `ordinal` (loaded); *out NULL if the shard has none. */
SL_HIDDEN int sl__shard_pin_ordinal(sl_shard *sh, uint64_t ordinal, sl_seg **out);
/* A rewrite is ready in tmp_path (whole, synced): rename it over segment
** `ordinal`, sync the directory, and put the new file in the list in place
** of the old one (freed by its last reader). */
SL_HIDDEN int sl__shard_replace(sl_shard *sh, uint64_t ordinal, const char *tmp_path);
/* The largest deleted sequence number of the shard (0: none known). */
SL_HIDDEN uint64_t sl__shard_gone_seq(sl_shard *sh);

/* ---- Consumers (consumer.c) --------------------------------------------- */
typedef struct sl_ccount {
    _Atomic uint64_t reads, records_out, bytes_out, read_throttled, deliveries;
    _Atomic int64_t age_ms;
    _Atomic bool subscribed;          /* a subscription holds this shard */
    /* checkpoints (consumer.c, under c->mu): segment files of this shard up
    ** to ordinal ck_synced were fdatasync'd through our own descriptors,
    ** and their names (the shard directory) up to ck_dir */
    uint64_t ck_synced, ck_dir;
} sl_ccount;
#define CCOUNT_CHUNK 256u
struct sl_consumer {
    sl_stream *s;
    sl_consumer_info info;
    char *dir;                        /* <stream>/consumers/<name> */
    int ckpt_fd;
    pthread_mutex_t mu;               /* checkpoint writes */
    _Atomic int subs;                 /* open subscriptions */
    /* counters by shard index, in chunks (sl__consumer_count) */
    _Atomic(sl_ccount *) chunks[(SL_SHARDS_TOTAL_MAX + CCOUNT_CHUNK - 1) / CCOUNT_CHUNK];
    sl_consumer *next;                /* stream->cons_open list */
};
/* The counters of (c, shard index); NULL only without memory. */
SL_HIDDEN sl_ccount *sl__consumer_count(sl_consumer *c, uint32_t shard);
/* for fuzz/: CONSUMER (168 bytes, found in directory `name`) and a
** CHECKPOINTS slot pair (128 bytes: the newest valid slot, 0 or 1, or -1) */
SL_HIDDEN bool sl__cons_decode(const uint8_t *b, size_t len, const char *name,
                               sl_consumer_info *ci, char *why, size_t whylen);
SL_HIDDEN int sl__ckpt_slot_pick(const uint8_t *pair, uint32_t shard, uint64_t id);

/* ---- Iterators (iterator.c) ---------------------------------------------- */
/* The read itself, without budgets, faults or expiry: up to limit records
** and max_bytes (at least one record if any). */
SL_HIDDEN int sl__iter_read(sl_iter *it, sl_record *recs, size_t limit,
                            uint64_t max_bytes, sl_read_result *res);
/* 0, or SL_EVALIDATION (Kinesis' text) for a bad iterator type. */
SL_HIDDEN int sl__iter_type_check(sl_iter_type type);
/* Count the iterator's reads as consumer c's. */
SL_HIDDEN void sl__iter_set_consumer(sl_iter *it, sl_consumer *c);
SL_HIDDEN sl_shard *sl__iter_shard(const sl_iter *it);
/* The last record returned (or the start bound): a continuation point. */
SL_HIDDEN uint64_t sl__iter_last(const sl_iter *it);
/* Records waiting (1), none (0), or an error. */
SL_HIDDEN int sl__iter_ready(sl_iter *it);
/* Headers only (metrics.c): sl__iter_read then returns encrypted records without
** decrypting them (partition_key NULL, data at the framed record; key_len,
** data_len, sequence and arrival_ms as framed), so that they are counted
** without a key.  Their tags are not checked; the checksums are. */
SL_HIDDEN void sl__iter_headers_only(sl_iter *it);
/* The iterator's position: its segment's ordinal (0: none yet) and *off. */
SL_HIDDEN uint64_t sl__iter_pos(const sl_iter *it, uint64_t *off);

/* ---- Manifest (manifest.c) ---------------------------------------------- */
typedef struct sl_mshard {
    uint32_t index;
    bool open;
    sl_u128 start, end;
    uint32_t parent, adjacent;        /* SL_NO_SHARD if none */
    uint64_t start_seq, end_seq;      /* end_seq 0 while open */
} sl_mshard;

typedef struct sl_mtag {
    char *key, *value;
} sl_mtag;

/* A data key, as the manifest keeps it: wrapped by the key provider. */
typedef struct sl_mkey {
    uint32_t version;
    uint8_t *wrapped;
    size_t len;
} sl_mkey;

typedef struct sl_manifest {
    uint64_t stream_id;
    char name[SL_STREAM_NAME_MAX + 1];
    int64_t created_ms;
    uint64_t generation;
    sl_stream_mode mode;
    uint32_t retention_hours;
    sl_encryption encryption;
    char *kms_key_id;                 /* NULL if none */
    uint32_t max_record_kib;
    uint64_t segment_bytes;
    sl_durability durability;
    uint32_t sync_interval_ms;
    uint64_t size_cap_bytes;          /* version 2; 0: none */
    sl_cap_policy size_cap_policy;
    int64_t trim_ms;                  /* INT64_MIN: nothing trimmed */
    uint32_t cold_after_hours;        /* version 2; 0: never */
    sl_compaction compaction;         /* version 2 */
    size_t nkeys;                     /* version 2: data keys, wrapped */
    sl_mkey *keys;
    uint32_t key_current;             /* 0: new records not encrypted */
    size_t ntags;
    sl_mtag *tags;
    uint32_t next_shard_index;
    size_t nshards;
    sl_mshard *shards;
} sl_manifest;

#define SL_MANIFEST_FILE "MANIFEST"
#define SL_MANIFEST_MAX (16u << 20)
SL_HIDDEN int sl__manifest_encode(const sl_manifest *m, char **out,
                                  size_t *len);
/* Decode; SL_ECORRUPT with a message naming the line on any damage. */
SL_HIDDEN int sl__manifest_decode(sl_manifest *m, const char *buf,
                                  size_t len);
SL_HIDDEN int sl__manifest_read(sl_manifest *m, const char *stream_dir);
SL_HIDDEN int sl__manifest_write(const sl_manifest *m, const char *stream_dir);
SL_HIDDEN void sl__manifest_free(sl_manifest *m);

/* ---- Encryption keys (crypto.c) ------------------------------------------ */
#define SL_DATA_KEYS_MAX 1024u        /* data keys per stream (rotations) */
/* Create: a first data key for a KMS stream, wrapped into m (SL_EKEY
** without a provider). */
SL_HIDDEN int sl__keys_create(sl_manifest *m, const sl_key_provider *kp);
/* Open: keep the provider, unwrap every data key of s->man into s->keys
** and set the current one for new records.  Followers call it again after
** re-reading the manifest (new keys only). */
SL_HIDDEN int sl__keys_open(sl_stream *s, const sl_key_provider *kp);
SL_HIDDEN int sl__keys_refresh(sl_stream *s, const sl_manifest *m);
SL_HIDDEN void sl__keys_wipe(sl_stream *s);
/* A KMS key id: 1..2048 characters, no control characters. */
SL_HIDDEN int sl__key_id_check(const char *id);
/* The data key of a version, or NULL if this handle has none. */
SL_HIDDEN const sl_dkey *sl__key_get(sl_stream *s, uint32_t version);
/* AES-256-GCM of a record (record.c frames, these cipher): seal encrypts
** n1 + n2 bytes from two pieces into out; open decrypts n bytes.  *ctx is a
** context cached across calls (freed by sl__gcm_free).  0, SL_EIO (seal),
** SL_ECORRUPT (open: the tag does not match). */
SL_HIDDEN int sl__gcm_seal(void **ctx, uint32_t *ctx_ver, const sl_dkey *k,
                           const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
                           const uint8_t *in1, size_t n1, const uint8_t *in2, size_t n2,
                           uint8_t *out, uint8_t tag[SL_GCM_TAG]);
SL_HIDDEN int sl__gcm_open(void **ctx, uint32_t *ctx_ver, const sl_dkey *k,
                           const uint8_t nonce[12], const uint8_t *aad, size_t aad_len,
                           const uint8_t *in, size_t n, uint8_t *out,
                           const uint8_t tag[SL_GCM_TAG]);
SL_HIDDEN void sl__gcm_free(void **ctx);
/* The nonce and associated data of the encrypted record at rec (header and
** salt written): nonce = seq || salt, aad = rec[0..40) || stream_id ||
** shard_index.  Returns the aad length. */
#define SL_REC_AAD 52u
SL_HIDDEN size_t sl__rec_nonce_aad(const uint8_t *rec, uint64_t stream_id, uint32_t shard,
                                   uint8_t nonce[12], uint8_t aad[SL_REC_AAD]);
/* Decrypt the encrypted record v (parsed from rec) into out (klen + dlen
** bytes).  SL_EKEY: its key exists but this handle has no provider;
** SL_ECORRUPT: it fails its tag, or names a key that was never made. */
SL_HIDDEN int sl__rec_decrypt(sl_stream *s, uint32_t shard, const uint8_t *rec,
                              const sl_recview *v, void **ctx, uint32_t *ctx_ver,
                              uint8_t *out);

/* ---- Stream (stream.c) --------------------------------------------------
** The struct is internal so that shard.c, producer.c and iterator.c can
** reach the shared state. */
#define SL_WAKE_FILE "WAKE"
#define SL_WAKE_SLOTS 4096u
#define SL_WAKE_SLOT_BYTES 64u
/* Bytes 8..15 of slot 0: the stream-wide {notify, waiters} pair, bumped on
** a commit to any shard while someone (a scheduler) waits on it. */
#define SL_WAKE_ANY_OFF 8u
#define SL_SEQ_FILE "SEQ"
#define SL_LOCK_FILE "LOCK"

struct sl_stream {
    char *root, *dir;
    sl_manifest man;
    bool readonly;
    sl_durability durability;
    uint32_t sync_interval_ms;
    sl_clock clock;
    sl_report_fn report;
    void *report_ctx;
    uint64_t damage;                  /* reports so far (relaxed) */

    pthread_mutex_t mu;               /* manifest, shard map; reshards */
    /* Shards by index, in an array that never moves (room for the most a
    ** manifest may list): resharding adds a shard by storing its pointer,
    ** then nshards (release); readers load nshards, then the pointers. */
    sl_shard **shards;
    _Atomic size_t nshards;
    /* Routing: the open shards sorted by start, replaced whole by a
    ** reshard (release) and never freed before close (retired list). */
    _Atomic(struct sl_routes *) rt;
    struct sl_routes *rt_retired;
    _Atomic int64_t refresh_ms;       /* followers: next manifest look */

    int lock_fd;                      /* writer lock, -1 for readers */
    uint8_t *wake_map;
    bool wake_writable;
    uint32_t *wake_any;               /* {notify, waiters}: any shard */

    /* sequence numbers: next to issue, and the durable reservation ceiling
    ** (every number below it may have been issued) */
    _Atomic uint64_t next_seq;
    _Atomic uint64_t seq_ceiling;
    pthread_mutex_t seq_mu;
    int seq_fd;
    uint64_t seq_gen;
    uint64_t seq_block;
    int64_t seq_last_reserve_ms;

    _Atomic int failed;               /* sticky SL_EIO after a failed sync */
    char failmsg[256];                /* why (under fail_mu, a leaf) */
    pthread_mutex_t fail_mu;
    _Atomic int children;             /* open producers and iterators */

    /* INTERVAL mode background sync */
    pthread_t syncer;
    bool syncer_running;
    pthread_mutex_t syncer_mu;
    pthread_cond_t syncer_cv;
    bool syncer_stop;
    bool syncer_inited;

    /* ALWAYS mode's commit journal (writers; NULL if it could not be made:
    ** then each shard's segments are synced instead) */
    sl_journal *jr;
    uint64_t jr_replayed;             /* bytes the last recovery restored */

    /* rate accounting, the KDS profile, injected faults (ratelimit.c) */
    sl_rate_mode rate_mode;           /* resolved: OFF, ACCOUNT or ENFORCE */
    sl_limits limits;                 /* resolved: no zero fields */
    bool kds;                         /* SL_OPEN_KDS_PROFILE */
    struct sl_faults *faults;         /* NULL until one is injected */
    pthread_mutex_t fault_mu;

    /* data keys, unwrapped (crypto.c); wiped at close.  keys[v-1] is
    ** version v; the table has SL_DATA_KEYS_MAX slots (allocated with the
    ** first key) and a slot is set before nkeys (release) covers it, so
    ** readers need no lock.  enc_key: the key of new records, NULL when
    ** encryption is off. */
    sl_dkey **keys;
    _Atomic size_t nkeys;
    _Atomic(const sl_dkey *) enc_key;
    uint32_t nonce_salt;              /* random, per open */
    sl_key_provider kp;               /* copied from the open options */
    bool has_kp;

    /* consumers open on this handle (consumer.c), under cons_mu */
    pthread_mutex_t cons_mu;
    sl_consumer *cons_open;

    /* retention (retention.c): from the manifest, changed under mu */
    _Atomic uint64_t retention_ms;
    _Atomic int64_t trim_ms;
    _Atomic uint64_t cap_bytes;       /* 0: no size cap */
    _Atomic uint64_t cold_after_ms;   /* 0: never */
    _Atomic int compaction;
    _Atomic int cap_policy;
    pthread_mutex_t cap_mu;           /* one cap enforcement at a time */
    pthread_t maint;
    bool maint_running, maint_stop;
    uint32_t maint_period_ms;
    pthread_mutex_t maint_mu;
    pthread_cond_t maint_cv;

    /* the preparer: populates pages and prepares segments off the append
    ** path (writers only) */
    pthread_t prep;
    bool prep_running, prep_stop, prep_kicked, prep_cv_inited;
    pthread_mutex_t prep_mu;
    pthread_cond_t prep_cv;
};

/* The open shards, sorted by start (stream.c). */
typedef struct sl_routes {
    size_t n;
    sl_shard **route;
    sl_u128 *start;                   /* route[i]->start, in one array */
    struct sl_routes *next_retired;
} sl_routes;

static inline size_t sl__nroute(sl_stream *s)
{
    return atomic_load_explicit(&s->rt, memory_order_acquire)->n;
}

static inline int64_t sl__now(sl_stream *s)
{
    return s->clock.now_ms(s->clock.ctx);
}
/* for fuzz/: a SEQ slot (64 bytes) of stream_id, or false */
SL_HIDDEN bool sl__seq_slot_decode(const uint8_t *b, uint64_t stream_id, uint64_t *gen,
                                   uint64_t *ceiling);
/* Take n consecutive sequence numbers (reserving durably when needed). */
SL_HIDDEN int sl__stream_take_seqs(sl_stream *s, uint64_t n, uint64_t *first);
SL_HIDDEN sl_shard *sl__stream_route(sl_stream *s, sl_u128 hash);
SL_HIDDEN int sl__stream_build_route(sl_stream *s);
/* Followers: pick up reshards the writer made since (reshard.c). */
SL_HIDDEN int sl__stream_refresh(sl_stream *s);
SL_HIDDEN sl_shard *sl__stream_shard_by_id(sl_stream *s, const char *id);
SL_HIDDEN int sl__stream_check_writable(sl_stream *s);
/* Wake the preparer (the writer crossed a segment's kick point). */
SL_HIDDEN void sl__stream_kick(sl_stream *s);
SL_HIDDEN void sl__stream_fail(sl_stream *s, int errnum, const char *what);
SL_HIDDEN void sl__stream_report(sl_stream *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
SL_HIDDEN void sl__segctx_init(sl_segctx *c, sl_shard *sh);
SL_HIDDEN void sl__report(const sl_segctx *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Kinesis-style "shardId-%012u". */
SL_HIDDEN void sl__shard_id(char out[SL_SHARD_ID_LEN + 1], uint32_t index);
SL_HIDDEN int sl__shard_id_parse(const char *id, uint32_t *index);
SL_HIDDEN bool sl__name_valid(const char *name, size_t max);

#endif /* SL_INTERNAL_H */
