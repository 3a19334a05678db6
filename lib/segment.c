/*
** segment.c -- one segment file: preallocate, map, append, seal, recover.
**
** SEGMENT FILE FORMAT, version 1.  Little-endian; records 8-byte aligned.
** The file is preallocated to file_bytes with fallocate (so a full disk is an
** error when the segment is created, never a SIGBUS later); unused bytes are
** zero.  Records grow up from the header, index entries grow down from the
** trailer:
**
**   0        256                      tail          idx_low   file_bytes-128
**   +--------+------------------------+----- free -----+---------+---------+
**   | header | records ->             |                 | <-index | trailer |
**   +--------+------------------------+-----------------+---------+---------+
**
** Header (256 bytes), immutable part (written once, before the file is named)
**    0  u32 magic        0x47534C53 ("SLSG" as bytes)
**    4  u16 version      1; another version is refused with SL_ECORRUPT
**    6  u16 header_bytes 256
**    8  u32 shard_index  N of shardId-N
**   12  u32 flags        0 (reserved: encryption, compression)
**   16  u64 ordinal      segment number in the shard, from 1; also the name
**   24  u64 file_bytes   preallocated size, a multiple of 4096
**   32  i64 created_ms   stream clock
**   40  u64 stream_id    random id of the owning stream
**   48  u64 reserved     0
**   56  u64 hdr_xxh3     XXH3-64 of bytes 0..55
** Header, mutable part: hints for readers and recovery, never trusted
**   64  u64 commit_tail  end of the last committed record (store-release)
**   72  u32 index_count  committed index entries (store-release)
**   76  u32 state        0 ACTIVE, 1 SEALED (store-release after trailer)
**   80  u64 synced_tail  a tail whose bytes were durable when written
**   88  u32 synced_index index_count at that moment
**   92  u32 writer_epoch bumped by every recovery (read-only followers)
**   96  u64 synced_count records below synced_tail
**  104  u64 synced_bytes their data + key bytes
**  112  u64 boot_id      the writer's boot (hash of the kernel's boot id)
**  120  u32 soft_gen     even: the soft hint is whole (odd while updated)
**  124  u32 reserved
**  128  u64 soft_count   records below commit_tail  } with commit_tail and
**  136  u64 soft_bytes   their data + key bytes     } index_count: the soft
**  144..255 reserved 0                              } hint, unsynced
** Record (from offset 256, each padded with zeros to 8 bytes)
**    0  u32 rec_bytes    40 + key_len + data_len (unpadded)
**    4  u32 rec_flags    0, or 1 ENCRYPTED (below); others reserved
**    8  u64 seq          > the previous record's
**   16  i64 arrival_ms   >= the previous record's (clamped by the writer)
**   24  u16 key_len      1..1024 (partition key, UTF-8)
**   26  u16 reserved     0
**   28  u32 data_len
**   32  key bytes, then data bytes
**   32+key_len+data_len  u64 rec_xxh3: XXH3-64 of all the bytes before it
** Encrypted record (rec_flags 1; issue 7): rec_bytes = 64 + key_len +
**   data_len, the same header, then
**   32  u32 key_version  the stream's data key (manifest `data_key`)
**   36  u32 nonce_salt   random per writer open
**   40  AES-256-GCM ciphertext of key bytes || data bytes
**   40+key_len+data_len  16-byte GCM tag, then u64 rec_xxh3 as above
**   nonce = seq (8 bytes LE) || nonce_salt (4 bytes); associated data =
**   record bytes 0..39 || u64 stream_id || u32 shard_index.  See crypto.c.
** Index entry i (32 bytes at file_bytes - 128 - 32*(i+1)): {u64 seq,
**   i64 arrival_ms, u64 offset, u64 block_xxh3} of the first record of the
**   segment and then of the first record at or past 4096 bytes after the
**   last indexed one, and of the first good record after damage.  Seeks by
**   sequence number or time binary-search the segments, then the index,
**   then hop < 4 KiB.  An entry and the next delimit a block of records;
**   block_xxh3 is the XXH3-64 of the block's bytes, written when the next
**   entry is (or, for the last block, at seal); 0 while the block is open
**   and for a block that holds damage.  Sequential readers verify a whole
**   block with it (one vectorised hash instead of one per record) and fall
**   back to the records' own checksums when it is missing or wrong.
** Trailer (128 bytes at file_bytes - 128; written when sealed)
**    0  u32 magic        0x54464C53 ("SLFT")
**    4  u32 index_count
**    8  u64 record_count
**   16  u64 first_seq    24 u64 last_seq
**   32  i64 first_ms     40 i64 last_ms
**   48  u64 data_end     the sealed tail
**   56  u64 payload      data + key bytes of all records
**   64  u64 index_xxh3   XXH3-64 of the index region (index_count * 32 B)
**   72  48 bytes reserved 0
**  120  u64 trailer_xxh3 XXH3-64 of trailer bytes 0..119
**
** Commit: frame the record (body, then its checksum), add its index entry,
** store commit_tail, then index_count, with release ordering; readers load
** them with acquire and never look past commit_tail, so they never see half
** a record.  Committed bytes are never rewritten.
**
** Recovery (writer open) never trusts commit_tail blindly.  After a crash
** of the process alone -- the boot id in the header is this boot's, so the
** page cache holds everything that was committed -- it starts from the soft
** hint (commit_tail with its counts, written on every commit, never
** synced); after a reboot, from the synced hint; either only if it checks
** out (hop from the last index entry before it, verifying, and land exactly
** on it).  So the cost is what follows the hint, not the segment's size.
** Otherwise it starts from offset 256.  It verifies records
** forward.  At the first bad or zero slot it asks the index whether any
** valid record follows: if none, that is a torn tail and the segment ends
** there; if one does, the bytes between are damage, reported with shard,
** segment and offset, and the scan resumes at the next good record (the
** segment is then sealed rather than appended to).  Opening reads only
** headers and trailers of sealed segments; their index is checksummed when
** first used and rebuilt in memory by a scan if it is damaged.
**
** COLD SEGMENT FILES (issue 5).  Maintenance rewrites a sealed segment that
** is old enough (the stream's cold_after_hours) as a cold file of the same
** name (sl__seg_write_cold to a temporary name, synced; the caller renames
** it over the segment and syncs the directory).  Same ordinal, shard,
** stream and records: the bytes of [256, data_end) of the hot layout,
** framing, padding and checksums included, cut at record boundaries into
** blocks of about 64 KiB (SL_COLD_BLOCK_RAW: records are added while the
** block stays within it; a larger record is a block by itself), each block
** one zstd frame (ZSTD_compress at the caller's level, 3), then a block
** table and a cold trailer:
**
**   0        256                                 table_off   file_bytes-128
**   +--------+--------+--------+-----+----------+-------------+---------+
**   | header | frame0 | frame1 | ... | pad < 8  | block table | trailer |
**   +--------+--------+--------+-----+----------+-------------+---------+
**
** Header: the 256 bytes above, with flags = 0x1 (COLD) and file_bytes = the
**   file's exact size (not a multiple of 4096); created_ms is the hot
**   segment's.  Mutable part: commit_tail = data_end, state 1 SEALED,
**   boot_id of the rewrite, the rest 0.  Flags other than 0 and 0x1 are
**   refused with SL_ECORRUPT ("unknown flags"), like an unknown version.
**   The version stays 1: a cold file is a new kind of version-1 file.
**   Libraries built before cold files existed require flags 0 and take a
**   cold file for a damaged one ("header fields out of range": a writer
**   renames it to .corrupt, a follower skips it), so a stream holding cold
**   files must not be opened by them.
** Block table entry k (48 bytes at table_off + 48*k, table_off 8-aligned)
**    0  u64 raw_off      offset of the block's first record in the HOT
**                        layout: 256 for block 0, then raw_off + raw_len
**                        of the block before; the last ends at data_end
**    8  u32 raw_len      bytes of whole records (a multiple of 8)
**   12  u32 zlen         the frame's size
**   16  u64 file_off     256 for block 0, then file_off + zlen before
**   24  u64 first_seq    of the block's first record (strictly rising)
**   32  i64 first_ms     its arrival time (never falling)
**   40  u64 raw_xxh3     XXH3-64 of the decompressed raw_len bytes
** Cold trailer (128 bytes at file_bytes - 128)
**    0  u32 magic        0x43464C53 ("SLFC")
**    4  u32 block_count
**    8  u64 record_count
**   16  u64 first_seq    24 u64 last_seq
**   32  i64 first_ms     40 i64 last_ms    (an empty segment: the keys it
**                                           carries, as a hot one)
**   48  u64 data_end     the hot layout's end
**   56  u64 payload      data + key bytes of all records
**   64  u64 table_off    72 u64 table_xxh3 (of block_count * 48 bytes)
**   80  u64 hot_bytes    the hot file's size (information)
**   88  u32 block_raw    SL_COLD_BLOCK_RAW when written (information)
**   92  28 bytes reserved 0
**  120  u64 trailer_xxh3 XXH3-64 of trailer bytes 0..119
**
** Reading a cold segment.  Its offsets are those of its hot layout, so an
** iterator's position means the same in both kinds.  Opening reads the
** header and trailer (pread).  The file is mapped read-only while pinned,
** for the table and the frames only: records are never read from the
** mapping.  The table is checksummed and checked (contiguous ranges, rising
** keys, within the file) when the segment is first pinned.  An iterator
** decompresses the block holding its position into its own buffer, checks
** raw_xxh3, then only each record's framing (as in a verified hot block),
** and returns views into that buffer: one block per read at most.  A block
** that fails (a zstd error, a wrong size, a checksum mismatch) is reported
** with shard, segment and block; that read returns SL_ECORRUPT and the
** iterator goes on with the next block.  Seeks binary-search the table by
** first_seq / first_ms, then decompress one block and hop.  A damaged
** trailer or table is reported and the table rebuilt in memory by walking
** the frames from offset 256 (a frame's size and content size are in its
** own header; every record of every frame is verified, and the rebuilt
** entries get checksums of verified bytes): a frame that fails is left
** out, reported; the walk stops where no frame starts.  A file replaced
** under a segment already described (rewritten cold or compacted while a
** follower had it unmapped) is noticed by its header checksum when it is
** next mapped, and its description read again.
*/
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define SEG_MAGIC 0x47534C53u
#define TRL_MAGIC 0x54464C53u
#define SEG_VERSION 1u
#define SEG_FLAG_COLD 0x1u
#define COLD_MAGIC 0x43464C53u
#define COLD_ENTRY 48u
/* sanity bound on a block's raw size (a record is at most 10 MiB) */
#define COLD_RAW_MAX (32u << 20)

/* cold segments (at the end of this file) */
static int cold_load(sl_seg *g, const sl_segctx *c, int fd, uint64_t size);
static void cold_index_check(sl_seg *g, const sl_segctx *c);
static uint64_t cold_seek(sl_seg *g, uint64_t end, bool by_ms, uint64_t target);

static inline uint64_t idx_slot_off(uint64_t file_bytes, uint32_t i)
{
    return file_bytes - SL_SEG_TRAILER - (uint64_t)SL_IDX_ENTRY * (i + 1);
}

/* lowest byte of the index area when it holds n entries */
static inline uint64_t idx_low_for(uint64_t file_bytes, uint32_t n)
{
    return file_bytes - SL_SEG_TRAILER - (uint64_t)SL_IDX_ENTRY * n;
}

static uint64_t max_index_entries(uint64_t file_bytes)
{
    return (file_bytes - SL_SEG_HDR - SL_SEG_TRAILER) / SL_IDX_ENTRY;
}

/* An entry's seq, ms and offset.  Its block checksum is read separately
** (idx_sum), and only once the block is known complete: the writer fills
** it in when it starts the next block. */
static inline sl_idx idx_read(const sl_seg *g, uint32_t i)
{
    const uint8_t *e = g->base + idx_slot_off(g->file_bytes, i);
    return (sl_idx){sl__ld64(e), (int64_t)sl__ld64(e + 8), sl__ld64(e + 16), 0};
}

static inline uint64_t idx_off(const sl_seg *g, uint32_t i)
{
    return sl__ld64(g->base + idx_slot_off(g->file_bytes, i) + 16);
}

static inline uint64_t idx_sum(const sl_seg *g, uint32_t i)
{
    return sl__ld64(g->base + idx_slot_off(g->file_bytes, i) + 24);
}

/* Stores that leave equal values alone: recovery rewrites what it finds,
** and a store into a page under writeback waits for the writeback. */
static inline void st64_if(uint8_t *p, uint64_t v)
{
    if (sl__ld64(p) != v) sl__st64(p, v);
}

static inline void idx_write(sl_seg *g, uint32_t i, uint64_t seq, int64_t ms, uint64_t off)
{
    uint8_t *e = g->base + idx_slot_off(g->file_bytes, i);
    sl__st64(e, seq);
    sl__st64(e + 8, (uint64_t)ms);
    sl__st64(e + 16, off);
    sl__st64(e + 24, 0);
}

/* Close entry i's block at `end`: store the checksum of its bytes. */
static inline void idx_close_block(sl_seg *g, uint32_t i, uint64_t end)
{
    uint8_t *e = g->base + idx_slot_off(g->file_bytes, i);
    uint64_t from = sl__ld64(e + 16);
    st64_if(e + 24, sl__xxh3(g->base + from, (size_t)(end - from)));
}

char *sl__seg_path(const char *shard_dir, uint64_t ordinal)
{
    char *p;
    if (asprintf(&p, "%s/%016" PRIx64 ".seg", shard_dir, ordinal) < 0)
        return NULL;
    return p;
}

uint64_t sl__seg_bytes_for(uint64_t span, uint64_t configured)
{
    uint64_t need = SL_SEG_HDR + span + SL_IDX_ENTRY + SL_SEG_TRAILER;
    uint64_t b = configured > need ? configured : need;
    return (b + 4095) & ~(uint64_t)4095;
}

void sl__report(const sl_segctx *c, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->damage_count)
        __atomic_fetch_add(c->damage_count, 1, __ATOMIC_RELAXED);
    if (c->report) c->report(c->report_ctx, code, msg);
}

static void hdr_encode(uint8_t h[SL_SEG_HDR], const sl_segctx *c,
                       uint64_t ordinal, uint64_t file_bytes)
{
    memset(h, 0, SL_SEG_HDR);
    sl__st32(h + 0, SEG_MAGIC);
    sl__st16(h + 4, SEG_VERSION);
    sl__st16(h + 6, SL_SEG_HDR);
    sl__st32(h + 8, c->shard_index);
    sl__st64(h + 16, ordinal);
    sl__st64(h + 24, file_bytes);
    sl__st64(h + 32, (uint64_t)c->now_ms);
    sl__st64(h + 40, c->stream_id);
    sl__st64(h + 56, sl__xxh3(h, 56));
    sl__st64(h + SL_H_BOOT, sl__boot_id());
}

/* 0: valid; 1: damaged (quarantine); negative: hard error (future version) */
static int hdr_check(const uint8_t h[SL_SEG_HDR], const sl_segctx *c,
                     uint64_t ordinal, const char *path, char *why,
                     size_t whylen)
{
    if (sl__ld32(h) != SEG_MAGIC) {
        snprintf(why, whylen, "bad magic");
        return 1;
    }
    if (sl__ld64(h + 56) != sl__xxh3(h, 56)) {
        snprintf(why, whylen, "header checksum mismatch");
        return 1;
    }
    uint16_t v = sl__ld16(h + 4);
    if (v != SEG_VERSION)
        return sl__err(SL_ECORRUPT,
                       "%s: segment format version %u; this library reads "
                       "version %u",
                       path, v, SEG_VERSION);
    /* a valid checksum over flags this library does not know: a newer
    ** library's file, refused like a newer version (never quarantined) */
    uint32_t flags = sl__ld32(h + 12);
    if (flags & ~SEG_FLAG_COLD)
        return sl__err(SL_ECORRUPT,
                       "%s: unknown flags 0x%x in the segment header; this "
                       "library reads flags 0 (hot) and 0x1 (cold)",
                       path, flags);
    uint64_t fb = sl__ld64(h + 24);
    bool fb_ok = (flags & SEG_FLAG_COLD)
                     ? fb >= SL_SEG_HDR + SL_SEG_TRAILER && fb <= (1ull << 40)
                     : fb % 4096 == 0 && fb >= SL_SEG_HDR + SL_SEG_TRAILER + 4096 &&
                           fb <= (1ull << 40);
    if (sl__ld16(h + 6) != SL_SEG_HDR || sl__ld64(h + 48) != 0 || !fb_ok) {
        snprintf(why, whylen, "header fields out of range");
        return 1;
    }
    if (sl__ld64(h + 16) != ordinal || sl__ld32(h + 8) != c->shard_index ||
        sl__ld64(h + 40) != c->stream_id) {
        snprintf(why, whylen,
                 "header names another segment (ordinal %" PRIu64
                 ", shard %u, stream %016" PRIx64 ")",
                 sl__ld64(h + 16), sl__ld32(h + 8), sl__ld64(h + 40));
        return 1;
    }
    return 0;
}

static void trailer_encode(uint8_t t[SL_SEG_TRAILER], const sl_seg *g,
                           uint32_t nidx, uint64_t count, uint64_t payload,
                           uint64_t first_seq, uint64_t last_seq,
                           int64_t first_ms, int64_t last_ms, uint64_t end)
{
    memset(t, 0, SL_SEG_TRAILER);
    sl__st32(t + 0, TRL_MAGIC);
    sl__st32(t + 4, nidx);
    sl__st64(t + 8, count);
    sl__st64(t + 16, first_seq);
    sl__st64(t + 24, last_seq);
    sl__st64(t + 32, (uint64_t)first_ms);
    sl__st64(t + 40, (uint64_t)last_ms);
    sl__st64(t + 48, end);
    sl__st64(t + 56, payload);
    uint64_t ix = 0;
    if (nidx && g->base)
        ix = sl__xxh3(g->base + idx_slot_off(g->file_bytes, nidx - 1),
                      (size_t)nidx * SL_IDX_ENTRY);
    sl__st64(t + 64, ix);
    sl__st64(t + 120, sl__xxh3(t, 120));
}

/* Validate a trailer read from disk and fill the summary. */
static bool trailer_load(sl_seg *g, const uint8_t t[SL_SEG_TRAILER])
{
    if (sl__ld32(t) != TRL_MAGIC || sl__ld64(t + 120) != sl__xxh3(t, 120))
        return false;
    uint32_t nidx = sl__ld32(t + 4);
    uint64_t end = sl__ld64(t + 48);
    uint64_t count = sl__ld64(t + 8);
    if (end < SL_SEG_HDR || end % 8 || nidx > max_index_entries(g->file_bytes) ||
        end > idx_low_for(g->file_bytes, nidx) ||
        (count == 0) != (end == SL_SEG_HDR) || (count > 0 && nidx == 0) ||
        sl__ld64(t + 24) >= SL_SEQ_LIMIT)
        return false;
    g->count = count;
    g->first_seq = sl__ld64(t + 16);
    g->last_seq = sl__ld64(t + 24);
    g->first_ms = (int64_t)sl__ld64(t + 32);
    g->last_ms = (int64_t)sl__ld64(t + 40);
    g->payload = sl__ld64(t + 56);
    g->data_end = end;
    g->nidx = nidx;
    g->tail = end;
    atomic_store_explicit(&g->sealed, true, memory_order_release);
    return true;
}

/* ---- mapping ------------------------------------------------------------ */

/* A writer's mapping asks for large page-cache folios (far fewer faults on
** sequential writes) -- except when every commit is synced (ALWAYS): the
** kernel tracks a mapping's dirty data per folio, so a sync after a 1 KiB
** store wrote the whole folio back (up to 2 MiB), and a round's sync ran
** 2-3x slower while other threads wrote into the folio under writeback. */
static int map_fd(sl_seg *g, int fd, bool writable, bool sync_often)
{
    int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    void *p = sl__os.mmap(NULL, g->map_len, prot, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return sl__errno(sl__errno_code(errno), errno, "mapping %s", g->path);
    g->base = p;
#ifdef MADV_HUGEPAGE
    if (writable && !sync_often) madvise(p, g->map_len, MADV_HUGEPAGE);
#else
    (void)sync_often;
#endif
    return 0;
}

/* The file under g's name is not the one g describes (maintenance renamed
** a rewrite over it: cold, or compacted): read the new one's description
** into g, which keeps its identity, its place in the list and its pins
** (there are none: it is unmapped).  Caller holds seglock. */
static int seg_reload(sl_seg *g, const sl_segctx *c)
{
    sl_seg *ng = NULL;
    int rc = sl__seg_open(&ng, c, g->path, g->ordinal, false, false, true);
    if (rc) return rc;
    if (!ng)                            /* reported by sl__seg_open */
        return sl__err(SL_ECORRUPT, "%s: replaced by an unusable file", g->path);
    if (!sl__seg_is_sealed(ng)) {
        sl__seg_free(ng);
        return sl__err(SL_ECORRUPT, "%s: replaced by an unsealed file", g->path);
    }
    g->file_bytes = ng->file_bytes;
    g->map_len = ng->map_len;
    g->data_end = ng->data_end;
    g->first_seq = ng->first_seq;
    g->last_seq = ng->last_seq;
    g->count = ng->count;
    g->payload = ng->payload;
    g->first_ms = ng->first_ms;
    g->last_ms = ng->last_ms;
    g->tail = ng->tail;
    g->nidx = ng->nidx;
    g->idx_low = ng->idx_low;
    g->next_idx_off = ng->next_idx_off;
    g->ro_cap = ng->ro_cap;
    g->ro_epoch = ng->ro_epoch;
    g->idx_checked = ng->idx_checked;
    g->cold = ng->cold;
    g->hdr_sum = ng->hdr_sum;
    g->cold_nblk = ng->cold_nblk;
    g->cold_tab_off = ng->cold_tab_off;
    sl_idx *mi = g->mem_idx;
    g->mem_idx = ng->mem_idx;
    g->mem_nidx = ng->mem_nidx;
    ng->mem_idx = mi;
    sl_cblk *ct = g->cold_tab;
    g->cold_tab = ng->cold_tab;
    ng->cold_tab = ct;
    atomic_store_explicit(&g->sealed, true, memory_order_release);
    sl__seg_free(ng);
    return 0;
}

int sl__seg_map(sl_seg *g, const sl_segctx *c)
{
    if (g->base) return 0;
    for (int tries = 0;; tries++) {
        int fd = sl__os.open(g->path, O_RDONLY | O_CLOEXEC, 0);
        if (fd < 0)
            return sl__errno(errno == ENOENT ? SL_ENOTFOUND : SL_EIO, errno,
                             "opening %s", g->path);
        /* the same file as described?  (its immutable header's checksum;
        ** a replaced file has another size or flags or creation time) */
        uint8_t h[64];
        if (g->hdr_sum && (sl__os_pread_all(fd, h, sizeof h, 0) != 0 ||
                           sl__ld64(h + 56) != g->hdr_sum)) {
            sl__os.close(fd);
            if (tries == 3 || !c)
                return sl__err(SL_ECORRUPT, "%s: the file changed under its segment",
                               g->path);
            int rc = seg_reload(g, c);
            if (rc) return rc;
            continue;
        }
        int rc = map_fd(g, fd, false, false);
        sl__os.close(fd);
        return rc;
    }
}

void sl__seg_unmap(sl_seg *g)
{
    if (g->base) {
        sl__os.munmap(g->base, g->map_len);
        g->base = NULL;
    }
}

void sl__seg_free(sl_seg *g)
{
    if (!g) return;
    sl__seg_unmap(g);
    free(g->mem_idx);
    free(g->cold_tab);
    free(g->path);
    free(g->tmp_path);
    free(g);
}

/* ---- creation ----------------------------------------------------------- */

/* Create "<ordinal>.seg.tmp", preallocate it, write its header (synced if
** c->sync_now) and map it.  It is not part of the shard until published. */
int sl__seg_prepare(sl_seg **out, const sl_segctx *c, const char *shard_dir,
                    uint64_t ordinal, uint64_t file_bytes, bool spare)
{
    *out = NULL;
    sl_seg *g = calloc(1, sizeof *g);
    int fd = -1, rc = 0;
    /* the preparer's spares and the writer's own creations have different
    ** temporary names: both may create the same ordinal at once (the
    ** loser's file is discarded), and neither may truncate the other's */
    if (!g || !(g->path = sl__seg_path(shard_dir, ordinal)) ||
        asprintf(&g->tmp_path, "%s%s", g->path, spare ? ".spare" : ".tmp") < 0) {
        if (g) g->tmp_path = NULL;
        rc = sl__err(SL_ENOMEM, "allocating a segment");
        goto fail;
    }
    const char *tmp = g->tmp_path;
    g->ordinal = ordinal;
    g->file_bytes = g->map_len = file_bytes;
    g->writable = true;
    g->loaded = true;
    g->idx_checked = true;                /* we write the index ourselves */

    fd = sl__os.open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = sl__errno(sl__errno_code(errno), errno, "creating %s", tmp);
        free(g->tmp_path);              /* not ours: never unlink it */
        g->tmp_path = NULL;
        goto fail;
    }
    if (sl__os.fallocate(fd, 0, 0, (off_t)file_bytes) != 0) {
        int e = errno;
        if (e == EOPNOTSUPP || e == ENOSYS) {
            /* a filesystem without fallocate: write the zeros ourselves so
            ** the blocks exist before they are mapped */
            static const uint8_t zero[65536];
            for (uint64_t o = 0; o < file_bytes && rc == 0; o += sizeof zero) {
                size_t n = file_bytes - o < sizeof zero ? (size_t)(file_bytes - o)
                                                        : sizeof zero;
                if (sl__os_pwrite_all(fd, zero, n, (off_t)o) != 0)
                    rc = sl__errno(sl__errno_code(errno), errno,
                                   "preallocating %" PRIu64 " bytes for %s "
                                   "segment %" PRIu64,
                                   file_bytes, c->shard_id, ordinal);
            }
        } else {
            rc = sl__errno(sl__errno_code(e), e,
                           "preallocating %" PRIu64 " bytes for %s segment "
                           "%" PRIu64,
                           file_bytes, c->shard_id, ordinal);
        }
        if (rc) goto fail;
    }
    uint8_t h[SL_SEG_HDR];
    hdr_encode(h, c, ordinal, file_bytes);
    g->hdr_sum = sl__ld64(h + 56);
    if (sl__os_pwrite_all(fd, h, sizeof h, 0) != 0) {
        rc = sl__errno(sl__errno_code(errno), errno, "writing %s", tmp);
        goto fail;
    }
    if (c->sync_now && sl__os.fdatasync(fd) != 0) {
        rc = sl__errno(SL_EIO, errno, "syncing %s", tmp);
        goto fail;
    }
    if ((rc = map_fd(g, fd, true, c->sync_now)) != 0) goto fail;
    sl__os.close(fd);
    g->tail = SL_SEG_HDR;
    g->idx_low = file_bytes - SL_SEG_TRAILER;
    g->next_idx_off = SL_SEG_HDR;
    atomic_init(&g->pf_end, SL_SEG_HDR);
    atomic_init(&g->kick_at, 0);
    g->users = 1;                                   /* the writer's pin */
    *out = g;
    return 0;
fail:
    if (fd >= 0) {
        sl__os.close(fd);
        sl__os.unlink(g->tmp_path);
    }
    sl__seg_free(g);
    return rc;
}

/* Give a prepared segment its name (and, if c->sync_now, a durable one). */
int sl__seg_publish_file(sl_seg *g, const sl_segctx *c, const char *shard_dir)
{
    if (sl__os.rename(g->tmp_path, g->path) != 0)
        return sl__errno(sl__errno_code(errno), errno, "renaming %s", g->tmp_path);
    free(g->tmp_path);
    g->tmp_path = NULL;
    if (c->sync_now && sl__os_fsync_dir(shard_dir) != 0) {
        /* the name may or may not survive a power cut: take it back; the
        ** caller fails the stream */
        int rc = sl__errno(SL_EIO, errno, "syncing directory %s", shard_dir);
        sl__os.unlink(g->path);
        return rc;
    }
    g->dir_durable = c->sync_now;
    return 0;
}

/* Drop a prepared segment that will not be used (removes its file). */
void sl__seg_discard(sl_seg *g)
{
    if (!g) return;
    if (g->tmp_path) sl__os.unlink(g->tmp_path);
    sl__seg_free(g);
}

int sl__seg_create(sl_seg **out, const sl_segctx *c, const char *shard_dir,
                   uint64_t ordinal, uint64_t file_bytes)
{
    int rc = sl__seg_prepare(out, c, shard_dir, ordinal, file_bytes, false);
    if (rc == 0 && (rc = sl__seg_publish_file(*out, c, shard_dir)) != 0) {
        sl__seg_discard(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- writer: append, publish, seal, sync -------------------------------- */

int sl__seg_populate(sl_seg *g, uint64_t upto)
{
    uint64_t from = atomic_load_explicit(&g->pf_end, memory_order_relaxed) & ~(uint64_t)4095;
    if (upto > g->file_bytes) upto = g->file_bytes;
    upto = (upto + 4095) & ~(uint64_t)4095;
    if (upto <= from) return 0;
#ifdef MADV_POPULATE_WRITE
    if (madvise(g->base + from, upto - from, MADV_POPULATE_WRITE) != 0)
        return errno == EINVAL || errno == ENOSYS ? -1 : 0;   /* -1: unsupported */
    atomic_store_explicit(&g->pf_end, upto, memory_order_relaxed);
    return 0;
#else
    return -1;
#endif
}

/* The bookkeeping of a record just framed at the tail. */
static void appended(sl_seg *g, uint64_t seq, int64_t ms, uint64_t payload, uint64_t span)
{
    uint64_t off = g->tail;
    if (off >= g->next_idx_off) {
        if (g->nidx) idx_close_block(g, g->nidx - 1, off);
        idx_write(g, g->nidx, seq, ms, off);
        g->nidx++;
        g->idx_low -= SL_IDX_ENTRY;
        g->next_idx_off = off + SL_IDX_STRIDE;
    }
    if (g->count == 0) {
        g->first_seq = seq;
        g->first_ms = ms;
    }
    g->last_seq = seq;
    g->last_ms = ms;
    g->count++;
    g->payload += payload;
    g->tail = off + span;
}

int sl__seg_append(sl_seg *g, uint64_t seq, int64_t ms, const void *key, uint32_t klen,
                   const void *data, uint32_t dlen, const sl_seal *e)
{
    int rc = sl__rec_write(g->base + g->tail, seq, ms, key, klen, data, dlen, e);
    if (rc) return rc;
    appended(g, seq, ms, (uint64_t)klen + dlen,
             sl__pad8(sl__rec_bytes(e ? SL_REC_ENC : 0, klen, dlen)));
    return 0;
}

void sl__seg_append_copy(sl_seg *g, const uint8_t *rec, const sl_recview *v)
{
    memcpy(g->base + g->tail, rec, sl__ld32(rec));
    appended(g, v->seq, v->ms, (uint64_t)v->klen + v->dlen, v->span);
}

void sl__seg_publish(sl_seg *g)
{
    if (SL_UNLIKELY(g->stamp_pending)) {
        /* the first commit of a new writer: its boot (for soft hints) and
        ** a new epoch (read-only followers capped at a dead writer's
        ** recovered tail now follow commit_tail) */
        g->stamp_pending = false;
        __atomic_fetch_add(sl__hdr32(g, SL_H_WRITER_EPOCH), 1, __ATOMIC_RELEASE);
        sl__st64(g->base + SL_H_BOOT, sl__boot_id());
    }
    /* the soft hint: counts, tail and index count change together inside an
    ** odd generation, so recovery can tell a whole one from a torn one */
    __atomic_store_n(sl__hdr32(g, SL_H_SOFT_GEN), ++g->soft_gen, __ATOMIC_RELAXED);
    __atomic_store_n(sl__hdr64(g, SL_H_SOFT_COUNT), g->count, __ATOMIC_RELAXED);
    __atomic_store_n(sl__hdr64(g, SL_H_SOFT_BYTES), g->payload, __ATOMIC_RELAXED);
    __atomic_store_n(sl__hdr64(g, SL_H_COMMIT_TAIL), g->tail, __ATOMIC_RELEASE);
    __atomic_store_n(sl__hdr32(g, SL_H_INDEX_COUNT), g->nidx, __ATOMIC_RELEASE);
    __atomic_store_n(sl__hdr32(g, SL_H_SOFT_GEN), ++g->soft_gen, __ATOMIC_RELEASE);
}

/* The recovery hints: a tail whose bytes are durable, with the index count,
** record count and payload that go with it.  Only the writer stores them,
** and only one sync runs per shard at a time. */
static void store_sync_hints(sl_seg *g, const sl_segmark *m)
{
    __atomic_store_n(sl__hdr64(g, SL_H_SYNCED_TAIL), m->tail, __ATOMIC_RELAXED);
    __atomic_store_n(sl__hdr32(g, SL_H_SYNCED_INDEX), m->nidx, __ATOMIC_RELAXED);
    __atomic_store_n(sl__hdr64(g, SL_H_SYNCED_COUNT), m->count, __ATOMIC_RELAXED);
    __atomic_store_n(sl__hdr64(g, SL_H_SYNCED_BYTES), m->payload, __ATOMIC_RELAXED);
}

void sl__seg_mark(const sl_seg *g, sl_segmark *m)
{
    m->tail = g->tail;
    m->nidx = g->nidx;
    m->count = g->count;
    m->payload = g->payload;
}

/* msync the pages that hold [from, to). */
static int sync_range(sl_seg *g, uint64_t from, uint64_t to)
{
    from &= ~(uint64_t)4095;
    to = (to + 4095) & ~(uint64_t)4095;
    if (to > g->map_len) to = g->map_len;
    return to > from ? sl__os.msync(g->base + from, to - from, MS_SYNC) : 0;
}

/* Sync what holds data: the header and the records below `tail`, and (if
** with_index) the index entries and trailer at the end -- never the free
** space between, where the preparer may have dirtied pages of zeros ahead
** of the writer (syncing those made each durable put write megabytes). */
static int sync_data(sl_seg *g, uint64_t tail, uint32_t nidx, bool with_index)
{
    if (sync_range(g, 0, tail) != 0 ||
        (with_index && sync_range(g, idx_low_for(g->file_bytes, nidx), g->file_bytes) != 0))
        return sl__errno(SL_EIO, errno, "syncing %s", g->path);
    return 0;
}

int sl__seg_sync_sealed(sl_seg *g)
{
    if (g->cold) return 0;              /* synced before it was named */
    return sync_data(g, g->data_end, g->nidx, true);
}

/* How far the synced-tail hint may run ahead of the copy of it on disk. */
#define HDR_SYNC_LAG (16u << 20)

/* A group-commit round (ALWAYS): only the records since the last round.
** Bytes below the synced-tail hint are durable already (it is stored only
** after they were synced), so the sync starts at its page.  The header
** page, which every commit rewrites, goes along only once the hint has
** moved HDR_SYNC_LAG: writing it each round cost a second write per
** round, and all recovery after a power cut takes from it is where to
** start its scan (an older hint means a longer scan, never a lost record). */
static int sync_round_data(sl_seg *g, uint64_t tail)
{
    uint64_t from = __atomic_load_n(sl__hdr64(g, SL_H_SYNCED_TAIL), __ATOMIC_RELAXED);
    if (from > tail) from = 0;
    bool hdr = from >= 4096 && tail - g->hdr_synced >= HDR_SYNC_LAG;
    if ((hdr && sync_range(g, 0, SL_SEG_HDR) != 0) || sync_range(g, from, tail) != 0)
        return sl__errno(SL_EIO, errno, "syncing %s", g->path);
    if (hdr) g->hdr_synced = from;      /* the hint the header page carried */
    return 0;
}

int sl__seg_sync(sl_seg *g, const sl_segmark *m, bool with_index)
{
    int rc = with_index ? sync_data(g, m->tail, m->nidx, true)
                        : sync_round_data(g, m->tail);
    if (rc) return rc;
    /* The hints reach the disk with a later sync; whenever they do, the
    ** bytes they describe are already durable. */
    if (m->tail > __atomic_load_n(sl__hdr64(g, SL_H_SYNCED_TAIL), __ATOMIC_RELAXED))
        store_sync_hints(g, m);
    return 0;
}

int sl__seg_seal(sl_seg *g, const sl_segctx *c)
{
    uint8_t t[SL_SEG_TRAILER];
    if (g->nidx && !g->last_block_damaged) idx_close_block(g, g->nidx - 1, g->tail);
    trailer_encode(t, g, g->nidx, g->count, g->payload, g->first_seq,
                   g->last_seq, g->first_ms, g->last_ms, g->tail);
    memcpy(g->base + g->file_bytes - SL_SEG_TRAILER, t, sizeof t);
    sl__seg_publish(g);
    if (c->sync_now && sync_data(g, g->tail, g->nidx, true) != 0) return SL_EIO;
    g->data_end = g->tail;
    atomic_store_explicit(&g->sealed, true, memory_order_release);
    __atomic_store_n(sl__hdr32(g, SL_H_STATE), SL_STATE_SEALED,
                     __ATOMIC_RELEASE);
    return 0;
}

/* ---- scanning (recovery, damaged segments) ------------------------------ */

typedef struct scan {
    uint64_t off;                     /* next record */
    uint64_t limit;                   /* records end before this */
    uint64_t prev_seq;
    int64_t prev_ms;
    uint32_t nidx;
    uint64_t next_idx_off;
    uint64_t count, payload, first_seq, last_seq;
    int64_t first_ms, last_ms;
    bool damaged;
    bool block_damaged;               /* the current index block holds damage */
    bool write_idx;                   /* rewrite entries in the mapping */
    sl_idx *mem;                      /* or collect them here */
    uint32_t nmem, capmem;
    sl_idx *snap;                     /* index as found, for resync */
    uint32_t nsnap;
    bool snapped;
    uint64_t ok_end;                  /* records below passed a block check */
} scan;

static int scan_add_idx(sl_seg *g, scan *s, const sl_recview *v, uint64_t off)
{
    if (s->write_idx) {
        /* close the previous block -- with no checksum if it holds damage,
        ** so that no reader takes damaged bytes as verified */
        if (s->nidx && !s->block_damaged) idx_close_block(g, s->nidx - 1, off);
        uint8_t *e = g->base + idx_slot_off(g->file_bytes, s->nidx);
        if (sl__ld64(e) != v->seq || sl__ld64(e + 8) != (uint64_t)v->ms || sl__ld64(e + 16) != off)
            idx_write(g, s->nidx, v->seq, v->ms, off);
        s->block_damaged = false;
    } else if (s->mem) {
        if (s->nmem == s->capmem) {
            uint32_t cap = s->capmem ? s->capmem * 2 : 64;
            sl_idx *m = realloc(s->mem, cap * sizeof *m);
            if (!m) return sl__err(SL_ENOMEM, "indexing %s", g->path);
            s->mem = m;
            s->capmem = cap;
        }
        s->mem[s->nmem++] = (sl_idx){v->seq, v->ms, off, 0};   /* no block sums */
    }
    s->nidx++;
    s->next_idx_off = off + SL_IDX_STRIDE;
    return 0;
}

/* Copy the index area as found, slot 0 down, until an empty or impossible
** entry.  Used to tell a torn tail (nothing valid follows) from damage. */
static int snapshot_index(sl_seg *g, scan *s)
{
    s->snapped = true;
    uint64_t max = max_index_entries(g->file_bytes);
    for (uint32_t i = 0; i < max; i++) {
        uint64_t o = idx_slot_off(g->file_bytes, i);
        if (o + SL_IDX_ENTRY > g->map_len) break;
        sl_idx e = idx_read(g, i);
        if (e.seq == 0 || e.off < SL_SEG_HDR || e.off % 8 || e.off >= o) break;
        e.sum = idx_sum(g, i);          /* recovery runs alone with the file */
        if (s->nsnap % 256 == 0) {
            sl_idx *n = realloc(s->snap, (s->nsnap + 256) * sizeof *n);
            if (!n) return sl__err(SL_ENOMEM, "indexing %s", g->path);
            s->snap = n;
        }
        s->snap[s->nsnap++] = e;
    }
    return 0;
}

/* If only the body of the record at `bad` is damaged, its header still
** says where the next record starts: return that offset if a valid record
** continuing the sequence is there, else 0. */
static uint64_t skip_by_header(const sl_seg *g, uint64_t bad, uint64_t end,
                               uint64_t after_seq, int64_t after_ms)
{
    sl_recview v, w;
    if (sl__rec_parse(g->base + bad, end - bad, false, &v) != SL_REC_OK ||
        v.seq <= after_seq || bad + v.span >= end)
        return 0;
    uint64_t next = bad + v.span;
    if (sl__rec_parse(g->base + next, end - next, true, &w) != SL_REC_OK ||
        w.seq <= v.seq || w.ms < after_ms)
        return 0;
    return next;
}

/* Where valid records resume after damage at `bad`: past the damaged record
** if its header is intact, else the first indexed record that is valid and
** continues the sequence; 0 if none (then `bad` is simply the end). */
static uint64_t scan_resync(sl_seg *g, scan *s, uint64_t bad)
{
    uint64_t h = skip_by_header(g, bad, s->limit, s->prev_seq, s->prev_ms);
    if (h) return h;
    if (!s->snapped) {
        /* Before any damage, the slots from s->nidx on still hold the index
        ** as found (the scan rewrote only those below, identically), so
        ** probe them in place; at a clean end the first one is empty.
        ** Only if something valid follows is this damage, and then the
        ** whole index is kept for further resyncs. */
        bool follows = false;
        uint64_t maxn = max_index_entries(g->file_bytes);
        for (uint32_t i = s->nidx; i < maxn && !follows; i++) {
            uint64_t o = idx_slot_off(g->file_bytes, i);
            if (o + SL_IDX_ENTRY > g->map_len) break;
            sl_idx e = idx_read(g, i);
            if (e.seq == 0 || e.off < SL_SEG_HDR || e.off % 8 || e.off >= o) break;
            sl_recview v;
            follows = e.off > bad && e.off < s->limit &&
                      sl__rec_parse(g->base + e.off, s->limit - e.off, true, &v) == SL_REC_OK &&
                      v.seq == e.seq && v.seq > s->prev_seq;
        }
        if (!follows) return 0;
        if (snapshot_index(g, s) != 0) return 0;
    }
    for (uint32_t i = 0; i < s->nsnap; i++) {
        const sl_idx *e = &s->snap[i];
        if (e->off <= bad || e->off >= s->limit) continue;
        sl_recview v;
        if (sl__rec_parse(g->base + e->off, s->limit - e->off, true, &v) ==
                SL_REC_OK &&
            v.seq == e->seq && v.ms == e->ms && v.seq > s->prev_seq &&
            v.ms >= s->prev_ms)
            return e->off;
    }
    return 0;
}

/* Verify records forward from s->off.  Stops at the end of valid data. */
/* Is off the start of a complete block (in the index as found) whose
** checksum matches?  Then its records need no checksums of their own: one
** vectorised hash per 4 KiB instead of one per record.  The entry for the
** block at off is the one the scan is about to (re)write, slot s->nidx,
** and the next slot bounds it; read from the mapping before the scan
** rewrites them (recovery runs alone with the file).  The sequence and
** time checks still apply to every record, so a stale block from an older
** run cannot pass for new data. */
static bool scan_block_ok(sl_seg *g, scan *s, uint64_t off, uint64_t lim)
{
    if (!s->write_idx || off < s->next_idx_off) return false;
    uint64_t next_slot = idx_slot_off(g->file_bytes, s->nidx + 1);
    if (next_slot < off || next_slot + SL_IDX_ENTRY > g->map_len) return false;
    sl_idx e = idx_read(g, s->nidx), f = idx_read(g, s->nidx + 1);
    uint64_t sum = idx_sum(g, s->nidx);
    if (e.off != off || !sum || !f.seq || f.off <= off || f.off > lim) return false;
    if (sl__xxh3(g->base + off, (size_t)(f.off - off)) != sum) return false;
    s->ok_end = f.off;
    return true;
}

static int scan_run(sl_seg *g, const sl_segctx *c, scan *s)
{
    for (;;) {
        uint64_t off = s->off;
        uint64_t idx_low = idx_low_for(g->file_bytes, s->nidx);
        uint64_t need_idx = off >= s->next_idx_off ? SL_IDX_ENTRY : 0;
        uint64_t lim = idx_low < s->limit ? idx_low : s->limit;
        sl_recview v;
        int r = SL_REC_END;
        bool verify = off >= s->ok_end && !scan_block_ok(g, s, off, lim - need_idx);
        if (off + need_idx < lim)
            r = sl__rec_parse(g->base + off, lim - need_idx - off, verify, &v);
        if (r == SL_REC_OK && (v.seq <= s->prev_seq || v.ms < s->prev_ms ||
                               (!verify && v.span > s->ok_end - off)))
            r = SL_REC_BAD;
        if (r != SL_REC_OK) {
            if (off + need_idx >= lim) return 0;    /* segment full */
            s->ok_end = 0;
            uint64_t next = scan_resync(g, s, off);
            if (!next) return 0;                    /* the end */
            sl__report(c, SL_ECORRUPT,
                       "%s segment %016" PRIx64 ": damaged records at "
                       "offset %" PRIu64 "..%" PRIu64 " (after sequence "
                       "number %" PRIu64 ") skipped",
                       c->shard_id, g->ordinal, off, next, s->prev_seq);
            s->damaged = true;
            s->block_damaged = true;                /* the block before `next` */
            s->off = next;
            s->next_idx_off = next;                 /* index the resync point */
            continue;
        }
        if (off >= s->next_idx_off) {
            int rc = scan_add_idx(g, s, &v, off);
            if (rc) return rc;
        }
        if (s->count == 0) {
            s->first_seq = v.seq;
            s->first_ms = v.ms;
        }
        s->last_seq = v.seq;
        s->last_ms = v.ms;
        s->count++;
        s->payload += v.klen + v.dlen;
        s->prev_seq = v.seq;
        s->prev_ms = v.ms;
        s->off = off + v.span;
    }
}

/* Start from the synced hint if it checks out; otherwise from the top. */
static void scan_start(sl_seg *g, scan *s)
{
    s->off = SL_SEG_HDR;
    s->next_idx_off = SL_SEG_HDR;
    s->prev_seq = 0;
    s->prev_ms = INT64_MIN;
    uint64_t ht, hc, hp;
    uint32_t hn;
    uint64_t boot = sl__boot_id();
    if (boot && sl__ld64(g->base + SL_H_BOOT) == boot && sl__ld32(g->base + SL_H_SOFT_GEN) % 2 == 0) {
        /* no reboot since the writer died: its page cache is all here */
        ht = sl__ld64(g->base + SL_H_COMMIT_TAIL);
        hn = sl__ld32(g->base + SL_H_INDEX_COUNT);
        hc = sl__ld64(g->base + SL_H_SOFT_COUNT);
        hp = sl__ld64(g->base + SL_H_SOFT_BYTES);
    } else {
        ht = sl__ld64(g->base + SL_H_SYNCED_TAIL);
        hn = sl__ld32(g->base + SL_H_SYNCED_INDEX);
        hc = sl__ld64(g->base + SL_H_SYNCED_COUNT);
        hp = sl__ld64(g->base + SL_H_SYNCED_BYTES);
    }
    /* (a reader maps a truncated file only as far as it goes: the entry
    ** must lie within the mapping) */
    if (ht <= SL_SEG_HDR || ht % 8 || hn == 0 || hn > max_index_entries(g->file_bytes) ||
        ht > idx_low_for(g->file_bytes, hn) || ht > s->limit || hc == 0 ||
        idx_slot_off(g->file_bytes, hn - 1) + SL_IDX_ENTRY > g->map_len)
        return;
    sl_idx e = idx_read(g, hn - 1);
    if (e.off < SL_SEG_HDR || e.off >= ht || e.off % 8) return;
    /* hop from the entry to the hint, verifying every record */
    uint64_t off = e.off, prev = 0, n = 0;
    int64_t pms = INT64_MIN;
    sl_recview v = {0};
    while (off < ht) {
        if (sl__rec_parse(g->base + off, ht - off, true, &v) != SL_REC_OK ||
            v.seq <= prev || v.ms < pms || (off == e.off && (v.seq != e.seq || v.ms != e.ms)))
            return;
        prev = v.seq;
        pms = v.ms;
        off += v.span;
        n++;
    }
    if (off != ht) return;
    s->off = ht;
    s->nidx = hn;
    s->next_idx_off = e.off + SL_IDX_STRIDE;
    s->prev_seq = prev;
    s->prev_ms = pms;
    s->count = hc;
    s->payload = hp;
    s->last_seq = prev;
    s->last_ms = pms;
    /* the first record never moves */
    sl_recview f;
    if (sl__rec_parse(g->base + SL_SEG_HDR, ht - SL_SEG_HDR, false, &f) == SL_REC_OK) {
        s->first_seq = f.seq;
        s->first_ms = f.ms;
    }
    (void)n;
}

static void scan_apply(sl_seg *g, const scan *s)
{
    g->tail = s->off;
    g->nidx = s->nidx;
    g->idx_low = idx_low_for(g->file_bytes, s->nidx);
    g->next_idx_off = s->next_idx_off;
    g->count = s->count;
    g->payload = s->payload;
    g->first_seq = s->first_seq;
    g->last_seq = s->last_seq;
    g->first_ms = s->first_ms;
    g->last_ms = s->last_ms;
}

/* Writer recovery of an unsealed segment (mapped read-write). */
static int recover_writer(sl_seg *g, const sl_segctx *c, bool last)
{
    scan s = {0};
    s.limit = g->file_bytes - SL_SEG_TRAILER;
    s.write_idx = true;
    if (last) scan_start(g, &s);
    else {
        s.off = s.next_idx_off = SL_SEG_HDR;
        s.prev_ms = INT64_MIN;
    }
    int rc = scan_run(g, c, &s);
    free(s.snap);
    if (rc) return rc;
    scan_apply(g, &s);
    g->last_block_damaged = s.block_damaged;
    g->idx_checked = true;                /* rebuilt by the scan */
    /* zero what a torn append left after the tail (tidiness: recovery does
    ** not depend on it, as stale records fail the sequence check) */
    uint64_t z = g->tail, zl = g->idx_low;
    while (z + 8 <= zl && sl__ld64(g->base + z) != 0) {
        sl__st64(g->base + z, 0);
        z += 8;
    }
    /* index slots past the rebuilt ones may hold stale entries: clear the
    ** next one so a later snapshot stops there */
    if (g->idx_low >= g->tail + SL_IDX_ENTRY) {
        uint8_t *e = g->base + g->idx_low - SL_IDX_ENTRY;
        if (sl__ld64(e) || sl__ld64(e + 8) || sl__ld64(e + 16) || sl__ld64(e + 24))
            memset(e, 0, SL_IDX_ENTRY);
    }
    /* a hint past the recovered tail is garbage: drop it */
    if (sl__ld64(g->base + SL_H_SYNCED_TAIL) > g->tail) {
        sl_segmark none = {SL_SEG_HDR, 0, 0, 0};
        store_sync_hints(g, &none);
    }
    /* Write the header only if recovery changed something: after a clean
    ** close or a crash between commits it did not, and the header page
    ** may be under writeback (a store would wait for it).  The new
    ** writer's stamp goes out with its first commit. */
    g->soft_gen = sl__ld32(g->base + SL_H_SOFT_GEN) & ~1u;
    g->stamp_pending = true;
    bool same = sl__ld32(g->base + SL_H_STATE) == SL_STATE_ACTIVE &&
                sl__ld64(g->base + SL_H_COMMIT_TAIL) == g->tail &&
                sl__ld32(g->base + SL_H_INDEX_COUNT) == g->nidx &&
                sl__ld64(g->base + SL_H_SOFT_COUNT) == g->count &&
                sl__ld64(g->base + SL_H_SOFT_BYTES) == g->payload &&
                sl__ld32(g->base + SL_H_SOFT_GEN) % 2 == 0;
    if (!same) {
        __atomic_store_n(sl__hdr32(g, SL_H_STATE), SL_STATE_ACTIVE, __ATOMIC_RELAXED);
        sl__seg_publish(g);
    }
    if (!last || s.damaged) return sl__seg_seal(g, c);
    return 0;
}

/* Read-only: find the valid end of an unsealed segment without writing. */
static int recover_reader(sl_seg *g, const sl_segctx *c, bool want_index)
{
    scan s = {0};
    s.limit = g->map_len < g->file_bytes - SL_SEG_TRAILER
                  ? g->map_len & ~(uint64_t)7
                  : g->file_bytes - SL_SEG_TRAILER;
    if (want_index) {
        s.off = s.next_idx_off = SL_SEG_HDR;
        s.prev_ms = INT64_MIN;
    } else {
        scan_start(g, &s);          /* a dead writer's newest segment */
    }
    if (want_index) {
        s.mem = malloc(64 * sizeof *s.mem);
        s.capmem = s.mem ? 64 : 0;
        if (!s.mem) return sl__err(SL_ENOMEM, "indexing %s", g->path);
    }
    int rc = scan_run(g, c, &s);
    free(s.snap);
    if (rc) {
        free(s.mem);
        return rc;
    }
    scan_apply(g, &s);
    if (want_index) {
        free(g->mem_idx);
        g->mem_idx = s.mem;
        g->mem_nidx = s.nmem;
        g->idx_checked = true;
    }
    return 0;
}

/* ---- open --------------------------------------------------------------- */

void sl__seg_quarantine(const sl_segctx *c, const char *path, bool writer, const char *why)
{
    if (writer) {
        char *q;
        if (asprintf(&q, "%s.corrupt", path) >= 0) {
            sl__os.rename(path, q);
            free(q);
        }
    }
    sl__report(c, SL_ECORRUPT, "%s: %s; segment %s", path, why,
               writer ? "quarantined as .corrupt" : "skipped");
}

int sl__seg_open(sl_seg **out, const sl_segctx *c, const char *path,
                 uint64_t ordinal, bool writer, bool last, bool writer_alive)
{
    *out = NULL;
    int fd = sl__os.open(path, (writer ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0);
    if (fd < 0) {
        if (errno == ENOENT) return 0;     /* raced with a rename: gone */
        return sl__errno(SL_EIO, errno, "opening %s", path);
    }
    int rc = 0;
    sl_seg *g = NULL;
    struct stat st;
    uint8_t h[SL_SEG_HDR];
    char why[160];
    if (fstat(fd, &st) != 0) {
        rc = sl__errno(SL_EIO, errno, "stat %s", path);
        goto out;
    }
    if (st.st_size < (off_t)SL_SEG_HDR) {
        sl__seg_quarantine(c, path, writer, "file shorter than a segment header");
        goto out;
    }
    if (sl__os_pread_all(fd, h, sizeof h, 0) != 0) {
        rc = sl__errno(SL_EIO, errno, "reading %s", path);
        goto out;
    }
    int hc = hdr_check(h, c, ordinal, path, why, sizeof why);
    if (hc < 0) {
        rc = hc;
        goto out;
    }
    if (hc > 0) {
        sl__seg_quarantine(c, path, writer, why);
        goto out;
    }
    if (!(g = calloc(1, sizeof *g)) || !(g->path = strdup(path))) {
        rc = sl__err(SL_ENOMEM, "opening %s", path);
        goto out;
    }
    g->ordinal = ordinal;
    g->loaded = true;
    g->durable = false;                 /* maybe dirty pages of a crashed
                                           writer: the next sync round
                                           writes them (shard.c) */
    g->dir_durable = true;
    g->hdr_sum = sl__ld64(h + 56);
    g->file_bytes = sl__ld64(h + 24);
    g->map_len = g->file_bytes;
    if (sl__ld32(h + 12) & SEG_FLAG_COLD) {
        if ((rc = cold_load(g, c, fd, (uint64_t)st.st_size)) != 0) goto out;
        goto done;
    }
    if ((uint64_t)st.st_size < g->file_bytes) {
        sl__report(c, SL_ECORRUPT,
                   "%s segment %016" PRIx64 ": file truncated to %lld of %" PRIu64
                   " bytes; records past the cut are lost",
                   c->shard_id, ordinal, (long long)st.st_size, g->file_bytes);
        if (writer) {
            if (sl__os.fallocate(fd, 0, 0, (off_t)g->file_bytes) != 0) {
                rc = sl__errno(sl__errno_code(errno), errno,
                               "re-extending truncated %s", path);
                goto out;
            }
        } else {
            g->map_len = (uint64_t)st.st_size;
        }
    }
    /* a trailer that checks out makes the segment sealed */
    if (g->map_len == g->file_bytes) {
        uint8_t t[SL_SEG_TRAILER];
        if (sl__os_pread_all(fd, t, sizeof t,
                             (off_t)(g->file_bytes - SL_SEG_TRAILER)) != 0) {
            rc = sl__errno(SL_EIO, errno, "reading %s", path);
            goto out;
        }
        if (trailer_load(g, t)) goto done;
        if (sl__ld32(h + SL_H_STATE) == SL_STATE_SEALED && !last)
            sl__report(c, SL_ECORRUPT,
                       "%s segment %016" PRIx64 ": trailer damaged; "
                       "rebuilding its index by a scan",
                       c->shard_id, ordinal);
    }
    if (writer) {
        g->writable = true;
        if ((rc = map_fd(g, fd, true, c->sync_now)) != 0) goto out;
        if ((rc = recover_writer(g, c, last)) != 0) goto out;
        if (atomic_load(&g->sealed)) {
            g->durable = c->sync_now;               /* resealed just now */
            sl__seg_unmap(g);
        } else {
            g->users = 1;                           /* the writer's pin */
            atomic_init(&g->pf_end, g->tail);       /* written pages exist */
            atomic_init(&g->kick_at, 0);
        }
    } else {
        if ((rc = map_fd(g, fd, false, false)) != 0) goto out;
        if (last && writer_alive) {
            /* follow the live writer's commit_tail */
        } else if (last) {
            if ((rc = recover_reader(g, c, false)) != 0) goto out;
            g->ro_cap = g->tail;
            g->ro_epoch = __atomic_load_n(sl__hdr32(g, SL_H_WRITER_EPOCH),
                                          __ATOMIC_ACQUIRE);
        } else {
            if ((rc = recover_reader(g, c, true)) != 0) goto out;
            g->data_end = g->tail;
            atomic_store_explicit(&g->sealed, true, memory_order_release);
        }
        sl__seg_unmap(g);
    }
done:
    *out = g;
    g = NULL;
out:
    sl__os.close(fd);
    sl__seg_free(g);
    return rc;
}

/* ---- reader side -------------------------------------------------------- */

bool sl__seg_is_sealed(sl_seg *g)
{
    return atomic_load_explicit(&g->sealed, memory_order_acquire);
}

bool sl__seg_refresh_sealed(sl_seg *g)
{
    if (atomic_load_explicit(&g->sealed, memory_order_acquire)) return true;
    if (!g->base || g->writable) return false;
    /* another process's writer sealed it: load the trailer it wrote */
    if (__atomic_load_n(sl__hdr32(g, SL_H_STATE), __ATOMIC_ACQUIRE) !=
        SL_STATE_SEALED)
        return false;
    if (g->map_len < g->file_bytes) return false;
    uint8_t t[SL_SEG_TRAILER];
    memcpy(t, g->base + g->file_bytes - SL_SEG_TRAILER, sizeof t);
    return trailer_load(g, t);
}

uint64_t sl__seg_visible_end(sl_seg *g)
{
    if (atomic_load_explicit(&g->sealed, memory_order_acquire))   /* cold too */
        return g->data_end;
    uint64_t t = __atomic_load_n(sl__hdr64(g, SL_H_COMMIT_TAIL), __ATOMIC_ACQUIRE);
    if (g->ro_cap &&
        __atomic_load_n(sl__hdr32(g, SL_H_WRITER_EPOCH), __ATOMIC_ACQUIRE) ==
            g->ro_epoch &&
        t > g->ro_cap)
        t = g->ro_cap;
    uint64_t lim = g->map_len < g->file_bytes - SL_SEG_TRAILER
                       ? g->map_len
                       : g->file_bytes - SL_SEG_TRAILER;
    if (t > lim || t % 8) t = t > lim ? lim & ~(uint64_t)7 : t & ~(uint64_t)7;
    return t < SL_SEG_HDR ? SL_SEG_HDR : t;
}

void sl__seg_index_check(sl_seg *g, const sl_segctx *c)
{
    if (g->idx_checked || !atomic_load(&g->sealed)) return;
    g->idx_checked = true;
    if (g->cold) {
        cold_index_check(g, c);
        return;
    }
    if (g->mem_idx || g->map_len < g->file_bytes) return;
    uint8_t t[SL_SEG_TRAILER];
    memcpy(t, g->base + g->file_bytes - SL_SEG_TRAILER, sizeof t);
    uint64_t want = sl__ld64(t + 64);
    uint64_t got = g->nidx ? sl__xxh3(g->base + idx_slot_off(g->file_bytes, g->nidx - 1),
                                      (size_t)g->nidx * SL_IDX_ENTRY)
                           : 0;
    if (got == want) return;
    sl__report(c, SL_ECORRUPT,
               "%s segment %016" PRIx64 ": index checksum mismatch; "
               "rebuilding it by a scan",
               c->shard_id, g->ordinal);
    uint64_t end = g->data_end;
    if (recover_reader(g, c, true) == 0) g->data_end = end;
}

uint32_t sl__seg_index_count(sl_seg *g, uint64_t end)
{
    (void)end;
    if (g->cold) return 0;                          /* no record index */
    if (g->mem_idx) return g->mem_nidx;
    if (atomic_load_explicit(&g->sealed, memory_order_acquire)) return g->nidx;
    uint32_t n = __atomic_load_n(sl__hdr32(g, SL_H_INDEX_COUNT), __ATOMIC_ACQUIRE);
    uint64_t max = max_index_entries(g->file_bytes);
    if (n > max) n = (uint32_t)max;
    /* entry 0 is the highest (the index grows down from the trailer): a
    ** file cut short below it (a reader maps what there is) has none */
    if (n && idx_slot_off(g->file_bytes, 0) + SL_IDX_ENTRY > g->map_len) n = 0;
    return n;
}

sl_idx sl__seg_index_get(sl_seg *g, uint32_t i)
{
    return g->mem_idx ? g->mem_idx[i] : idx_read(g, i);
}

int sl__seg_block_check(sl_seg *g, uint64_t off, uint64_t end, uint32_t *hint,
                        uint64_t *block_end)
{
    *block_end = end;
    if (g->mem_idx || g->cold) return -1;           /* rebuilt: no sums */
    bool sealed = sl__seg_is_sealed(g);
    uint32_t n = sl__seg_index_count(g, end), k = *hint;
    if (k >= n || idx_off(g, k) > off) {            /* reposition */
        uint32_t lo = 0, hi = n;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (idx_off(g, mid) < off) lo = mid + 1;
            else hi = mid;
        }
        k = lo;
    }
    while (k < n && idx_off(g, k) < off) k++;
    *hint = k;
    if (k >= n) return -1;
    uint64_t eoff = idx_off(g, k);
    if (eoff != off) {                              /* inside a block */
        *block_end = eoff < end ? eoff : end;
        return -1;
    }
    /* complete: the next entry was published after this block's checksum
    ** (both before the index count this reader loaded), or the segment was
    ** sealed (the seal writes the last one first) */
    uint64_t bend = k + 1 < n ? idx_off(g, k + 1) : sealed ? g->data_end : 0;
    if (!bend || bend > end || bend <= off) {
        *block_end = bend && bend <= end ? bend : end;
        return -1;
    }
    uint64_t sum = idx_sum(g, k);
    *block_end = bend;
    if (sum == 0) return -1;                        /* holds damage */
    *hint = k + 1;
    /* the hardware prefetchers stop at every 4 KiB page, and a block is
    ** about a page: ask for the next block while this one is hashed (+5 %
    ** on a scan of 100-byte records) */
    uint64_t pend = bend + SL_IDX_STRIDE < end ? bend + SL_IDX_STRIDE : end;
    for (uint64_t q = bend; q < pend; q += 64) __builtin_prefetch(g->base + q, 0, 3);
    return sl__xxh3(g->base + off, (size_t)(bend - off)) == sum;
}

/* Does the index entry point at a record with its sequence number? */
static bool entry_ok(sl_seg *g, const sl_idx *e, uint64_t end)
{
    sl_recview v;
    return e->off >= SL_SEG_HDR && e->off < end && e->off % 8 == 0 &&
           sl__rec_parse(g->base + e->off, end - e->off, false, &v) == SL_REC_OK &&
           v.seq == e->seq;
}

uint64_t sl__seg_seek(sl_seg *g, uint64_t end, bool by_ms, uint64_t target)
{
    if (g->cold) return cold_seek(g, end, by_ms, target);
    uint32_t n = sl__seg_index_count(g, end);
    /* largest entry whose key is < target (and that lies below end) */
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        sl_idx e = sl__seg_index_get(g, mid);
        uint64_t k = by_ms ? (uint64_t)e.ms : e.seq;
        bool less = by_ms ? (int64_t)k < (int64_t)target : k < target;
        if (less && e.off < end) lo = mid + 1;
        else hi = mid;
    }
    uint64_t off = SL_SEG_HDR;
    for (uint32_t i = lo; i > 0; i--) {
        sl_idx e = sl__seg_index_get(g, i - 1);
        if (entry_ok(g, &e, end)) {
            off = e.off;
            break;
        }
    }
    while (off < end) {
        sl_recview v;
        if (sl__rec_parse(g->base + off, end - off, false, &v) != SL_REC_OK)
            return off;                 /* let the read report it */
        bool ge = by_ms ? v.ms >= (int64_t)target : v.seq >= target;
        if (ge) return off;
        off += v.span;
    }
    return end;
}

uint64_t sl__seg_resync(sl_seg *g, uint64_t bad, uint64_t end,
                        uint64_t after_seq)
{
    if (g->cold) {                      /* not used on cold segments: the
                                           start of the next block */
        uint32_t k = sl__seg_cold_find(g, bad);
        if (k < g->cold_nblk && sl__seg_cold_block(g, k).raw_off <= bad) k++;
        uint64_t o = k < g->cold_nblk ? sl__seg_cold_block(g, k).raw_off : end;
        return o < end ? o : end;
    }
    uint64_t h = skip_by_header(g, bad, end, after_seq, INT64_MIN);
    if (h) return h;
    uint32_t n = sl__seg_index_count(g, end);
    for (uint32_t i = 0; i < n; i++) {
        sl_idx e = sl__seg_index_get(g, i);
        if (e.off <= bad || e.off >= end) continue;
        sl_recview v;
        if (sl__rec_parse(g->base + e.off, end - e.off, true, &v) == SL_REC_OK &&
            v.seq == e.seq && v.seq > after_seq)
            return e.off;
    }
    return end;
}

void sl__seg_count(sl_seg *g, uint64_t end, uint64_t *records,
                   uint64_t *payload)
{
    uint64_t off = SL_SEG_HDR, n = 0, p = 0;
    if (g->cold) {                      /* sealed: its trailer's counts */
        *records = g->count;
        *payload = g->payload;
        return;
    }
    while (off < end) {
        sl_recview v;
        if (sl__rec_parse(g->base + off, end - off, false, &v) != SL_REC_OK)
            break;
        n++;
        p += v.klen + v.dlen;
        off += v.span;
    }
    *records = n;
    *payload = p;
}

/* ---- cold segments ------------------------------------------------------ */

static void cold_entry_put(uint8_t *e, const sl_cblk *b)
{
    sl__st64(e + 0, b->raw_off);
    sl__st32(e + 8, b->raw_len);
    sl__st32(e + 12, b->zlen);
    sl__st64(e + 16, b->file_off);
    sl__st64(e + 24, b->first_seq);
    sl__st64(e + 32, (uint64_t)b->first_ms);
    sl__st64(e + 40, b->raw_xxh3);
}

static sl_cblk cold_entry_get(const uint8_t *e)
{
    return (sl_cblk){sl__ld64(e), sl__ld32(e + 8), sl__ld32(e + 12), sl__ld64(e + 16),
                     sl__ld64(e + 24), (int64_t)sl__ld64(e + 32), sl__ld64(e + 40)};
}

sl_cblk sl__seg_cold_block(const sl_seg *g, uint32_t k)
{
    if (g->cold_tab) return g->cold_tab[k];
    return cold_entry_get(g->base + g->cold_tab_off + (uint64_t)COLD_ENTRY * k);
}

uint32_t sl__seg_cold_find(const sl_seg *g, uint64_t off)
{
    uint32_t lo = 0, hi = g->cold_nblk;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        sl_cblk b = sl__seg_cold_block(g, mid);
        if (b.raw_off + b.raw_len <= off) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

int sl__seg_cold_decode(const sl_seg *g, uint32_t k, ZSTD_DCtx *dctx, uint8_t *dst,
                        const char **why)
{
    sl_cblk b = sl__seg_cold_block(g, k);
    ZSTD_DCtx *own = NULL;
    if (!dctx && !(dctx = own = ZSTD_createDCtx()))
        return sl__err(SL_ENOMEM, "decompressing a block of %s", g->path);
    size_t got = ZSTD_decompressDCtx(dctx, dst, b.raw_len, g->base + b.file_off, b.zlen);
    ZSTD_freeDCtx(own);
    if (ZSTD_isError(got)) *why = ZSTD_getErrorName(got);
    else if (got != b.raw_len) *why = "decompressed size differs from the block table's";
    else if (sl__xxh3(dst, b.raw_len) != b.raw_xxh3) *why = "checksum mismatch after decompression";
    else return 0;
    return SL_ECORRUPT;
}

/* Validate a cold trailer read from disk and fill the summary. */
static bool cold_trailer_load(sl_seg *g, const uint8_t t[SL_SEG_TRAILER])
{
    if (sl__ld32(t) != COLD_MAGIC || sl__ld64(t + 120) != sl__xxh3(t, 120)) return false;
    uint32_t nblk = sl__ld32(t + 4);
    uint64_t count = sl__ld64(t + 8), end = sl__ld64(t + 48), tab = sl__ld64(t + 64);
    if (tab < SL_SEG_HDR || tab % 8 || g->file_bytes < SL_SEG_TRAILER ||
        tab + (uint64_t)nblk * COLD_ENTRY != g->file_bytes - SL_SEG_TRAILER ||
        end < SL_SEG_HDR || end % 8 || (count == 0) != (end == SL_SEG_HDR) ||
        (count == 0) != (nblk == 0) || count < nblk || sl__ld64(t + 24) >= SL_SEQ_LIMIT)
        return false;
    g->count = count;
    g->first_seq = sl__ld64(t + 16);
    g->last_seq = sl__ld64(t + 24);
    g->first_ms = (int64_t)sl__ld64(t + 32);
    g->last_ms = (int64_t)sl__ld64(t + 40);
    g->payload = sl__ld64(t + 56);
    g->data_end = g->tail = end;
    g->cold_nblk = nblk;
    g->cold_tab_off = tab;
    return true;
}

/* Rebuild a cold segment's block table in memory by walking its zstd frames
** from offset 256 up to `lim` (g mapped).  Every record of every frame is
** verified; a frame that fails is left out and reported.  With `summary`,
** the counts, keys and data_end come from the walk too (the trailer is
** lost). */
static int cold_scan(sl_seg *g, const sl_segctx *c, uint64_t lim, bool summary)
{
    uint64_t pos = SL_SEG_HDR, raw = SL_SEG_HDR, prev_seq = 0;
    int64_t prev_ms = INT64_MIN;
    uint64_t count = 0, payload = 0, first_seq = 0, last_seq = 0;
    int64_t first_ms = 0, last_ms = 0;
    sl_cblk *tab = NULL;
    uint32_t n = 0, cap = 0;
    uint8_t *buf = NULL;
    size_t bcap = 0;
    int rc = 0;
    ZSTD_DCtx *d = ZSTD_createDCtx();
    if (!d) return sl__err(SL_ENOMEM, "rebuilding the block table of %s", g->path);
    if (lim > g->map_len) lim = g->map_len;
    while (pos + 4 <= lim && sl__ld32(g->base + pos) == ZSTD_MAGICNUMBER) {
        const uint8_t *f = g->base + pos;
        size_t zlen = ZSTD_findFrameCompressedSize(f, (size_t)(lim - pos));
        unsigned long long rlen = ZSTD_isError(zlen) ? ZSTD_CONTENTSIZE_ERROR
                                                     : ZSTD_getFrameContentSize(f, zlen);
        if (rlen == ZSTD_CONTENTSIZE_ERROR || rlen == ZSTD_CONTENTSIZE_UNKNOWN ||
            rlen < SL_REC_OVERHEAD || rlen > COLD_RAW_MAX || rlen % 8) {
            sl__report(c, SL_ECORRUPT,
                       "%s segment %016" PRIx64 ": no readable block at file offset "
                       "%" PRIu64 "; the records from offset %" PRIu64 " on are lost",
                       c->shard_id, g->ordinal, pos, raw);
            break;
        }
        if (rlen > bcap) {
            uint8_t *nb = realloc(buf, (size_t)rlen);
            if (!nb) {
                rc = sl__err(SL_ENOMEM, "rebuilding the block table of %s", g->path);
                break;
            }
            buf = nb;
            bcap = (size_t)rlen;
        }
        size_t got = ZSTD_decompressDCtx(d, buf, (size_t)rlen, f, zlen);
        bool ok = !ZSTD_isError(got) && got == rlen;
        uint64_t o = 0, bc = 0, bp = 0, ps = prev_seq, fs = 0;
        int64_t pm = prev_ms, fm = 0;
        while (ok && o < rlen) {
            sl_recview v;
            if (sl__rec_parse(buf + o, rlen - o, true, &v) != SL_REC_OK || v.seq <= ps ||
                v.ms < pm) {
                ok = false;
                break;
            }
            if (bc++ == 0) {
                fs = v.seq;
                fm = v.ms;
            }
            bp += v.klen + v.dlen;
            ps = v.seq;
            pm = v.ms;
            o += v.span;
        }
        if (ok) {
            if (n == cap) {
                uint32_t nc = cap ? cap * 2 : 64;
                sl_cblk *nt = realloc(tab, nc * sizeof *nt);
                if (!nt) {
                    rc = sl__err(SL_ENOMEM, "rebuilding the block table of %s", g->path);
                    break;
                }
                tab = nt;
                cap = nc;
            }
            tab[n++] = (sl_cblk){raw, (uint32_t)rlen, (uint32_t)zlen, pos, fs, fm,
                                 sl__xxh3(buf, (size_t)rlen)};
            if (count == 0) {
                first_seq = fs;
                first_ms = fm;
            }
            count += bc;
            payload += bp;
            last_seq = prev_seq = ps;
            last_ms = prev_ms = pm;
        } else {
            sl__report(c, SL_ECORRUPT,
                       "%s segment %016" PRIx64 ": block at file offset %" PRIu64
                       " (records at offset %" PRIu64 "..%" PRIu64 ") is damaged; "
                       "skipped",
                       c->shard_id, g->ordinal, pos, raw, raw + (uint64_t)rlen);
        }
        pos += zlen;
        raw += rlen;
    }
    ZSTD_freeDCtx(d);
    free(buf);
    if (rc) {
        free(tab);
        return rc;
    }
    free(g->cold_tab);
    g->cold_tab = tab;
    g->cold_nblk = n;
    if (summary) {
        g->count = count;
        g->payload = payload;
        if (count) {
            g->first_seq = first_seq;
            g->last_seq = last_seq;
            g->first_ms = first_ms;
            g->last_ms = last_ms;
        }
        g->data_end = g->tail = raw;
    }
    return 0;
}

/* Open: the summary from the cold trailer, or (trailer damaged, file
** truncated) from a walk of the frames. */
static int cold_load(sl_seg *g, const sl_segctx *c, int fd, uint64_t size)
{
    g->cold = true;
    g->writable = false;
    /* the file got its name only once written and synced (see
    ** sl__seg_write_cold): nothing of it waits for a sync */
    g->durable = true;
    const char *why;
    if (size >= g->file_bytes) {
        uint8_t t[SL_SEG_TRAILER];
        if (sl__os_pread_all(fd, t, sizeof t, (off_t)(g->file_bytes - SL_SEG_TRAILER)) != 0)
            return sl__errno(SL_EIO, errno, "reading %s", g->path);
        if (cold_trailer_load(g, t)) {
            atomic_store_explicit(&g->sealed, true, memory_order_release);
            return 0;           /* the table is checked when first pinned */
        }
        why = "cold trailer damaged";
    } else {
        why = "file truncated";
        g->map_len = size;
    }
    sl__report(c, SL_ECORRUPT,
               "%s segment %016" PRIx64 " (cold): %s; rebuilding its block table "
               "by a scan",
               c->shard_id, g->ordinal, why);
    int rc = map_fd(g, fd, false, false);
    if (rc) return rc;
    rc = cold_scan(g, c, g->map_len, true);
    sl__seg_unmap(g);
    if (rc) return rc;
    g->idx_checked = true;
    atomic_store_explicit(&g->sealed, true, memory_order_release);
    return 0;
}

/* First pin: is the table on disk whole and consistent? */
static bool cold_table_ok(const sl_seg *g)
{
    uint64_t n = g->cold_nblk, t = g->cold_tab_off;
    if (g->map_len < g->file_bytes || t + n * COLD_ENTRY > g->file_bytes - SL_SEG_TRAILER)
        return false;
    const uint8_t *tr = g->base + g->file_bytes - SL_SEG_TRAILER;
    if (sl__xxh3(g->base + t, (size_t)(n * COLD_ENTRY)) != sl__ld64(tr + 72)) return false;
    uint64_t raw = SL_SEG_HDR, pos = SL_SEG_HDR, ps = 0;
    int64_t pm = INT64_MIN;
    for (uint32_t k = 0; k < n; k++) {
        sl_cblk b = cold_entry_get(g->base + t + (uint64_t)COLD_ENTRY * k);
        if (b.raw_off != raw || b.file_off != pos || b.raw_len < SL_REC_OVERHEAD ||
            b.raw_len % 8 || b.raw_len > COLD_RAW_MAX || b.zlen == 0 ||
            b.file_off + b.zlen > t || (k && b.first_seq <= ps) || b.first_ms < pm)
            return false;
        raw += b.raw_len;
        pos += b.zlen;
        ps = b.first_seq;
        pm = b.first_ms;
    }
    if (raw != g->data_end) return false;
    if (n) {
        sl_cblk b = cold_entry_get(g->base + t);
        if (b.first_seq != g->first_seq || b.first_ms != g->first_ms) return false;
    }
    return true;
}

static void cold_index_check(sl_seg *g, const sl_segctx *c)
{
    if (g->cold_tab || cold_table_ok(g)) return;
    sl__report(c, SL_ECORRUPT,
               "%s segment %016" PRIx64 " (cold): block table damaged; rebuilding it "
               "by a scan",
               c->shard_id, g->ordinal);
    if (cold_scan(g, c, g->cold_tab_off, false) != 0) {
        sl__report(c, SL_ECORRUPT,
                   "%s segment %016" PRIx64 " (cold): %s; its records are not readable",
                   c->shard_id, g->ordinal, sl__errtext());
        g->cold_nblk = 0;
    }
}

/* The first record at or after `target` (seq, or ms if by_ms): binary search
** the table, then decompress the one block that may hold it and hop.  A
** block that cannot be decompressed: its start (the read reports it). */
static uint64_t cold_seek(sl_seg *g, uint64_t end, bool by_ms, uint64_t target)
{
    uint32_t lo = 0, hi = g->cold_nblk;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        sl_cblk b = sl__seg_cold_block(g, mid);
        bool less = by_ms ? b.first_ms < (int64_t)target : b.first_seq < target;
        if (less) lo = mid + 1;
        else hi = mid;
    }
    if (lo == 0) {
        uint64_t o = g->cold_nblk ? sl__seg_cold_block(g, 0).raw_off : end;
        return o < end ? o : end;
    }
    sl_cblk b = sl__seg_cold_block(g, lo - 1);      /* its first key < target */
    if (b.raw_off >= end) return end;
    uint8_t *buf = malloc(b.raw_len);
    const char *why;
    if (!buf || sl__seg_cold_decode(g, lo - 1, NULL, buf, &why) != 0) {
        free(buf);
        return b.raw_off;
    }
    uint64_t o = 0, res = b.raw_off + b.raw_len;
    while (o < b.raw_len) {
        sl_recview v;
        if (sl__rec_parse(buf + o, b.raw_len - o, false, &v) != SL_REC_OK) {
            res = b.raw_off + o;                    /* let the read report it */
            break;
        }
        if (by_ms ? v.ms >= (int64_t)target : v.seq >= target) {
            res = b.raw_off + o;
            break;
        }
        o += v.span;
    }
    free(buf);
    return res < end ? res : end;
}

/* ---- cold writer ---- */

/* Walk g's records, verifying each, and cut them into blocks. */
static int cold_plan(sl_seg *g, const sl_segctx *c, sl_cblk **out, uint32_t *nout,
                     uint32_t *max_raw)
{
    sl_cblk *v = NULL;
    uint32_t n = 0, cap = 0;
    uint64_t off = SL_SEG_HDR, end = g->data_end, count = 0, payload = 0, prev = 0;
    int64_t pms = INT64_MIN, first_ms = 0, last_ms = 0;
    uint64_t first_seq = 0;
    const char *bad = NULL;
    *max_raw = 0;
    while (off < end) {
        sl_recview r;
        if (sl__rec_parse(g->base + off, end - off, true, &r) != SL_REC_OK) {
            bad = "a record fails its checksum";
            break;
        }
        if (r.seq <= prev || r.ms < pms) {
            bad = "records out of order";
            break;
        }
        if (n && v[n - 1].raw_len + r.span <= SL_COLD_BLOCK_RAW) {
            v[n - 1].raw_len += (uint32_t)r.span;
        } else {
            if (n == cap) {
                uint32_t nc = cap ? cap * 2 : 64;
                sl_cblk *nv = realloc(v, nc * sizeof *nv);
                if (!nv) {
                    free(v);
                    return sl__err(SL_ENOMEM, "rewriting %s", g->path);
                }
                v = nv;
                cap = nc;
            }
            v[n++] = (sl_cblk){off, (uint32_t)r.span, 0, 0, r.seq, r.ms, 0};
        }
        if (v[n - 1].raw_len > *max_raw) *max_raw = v[n - 1].raw_len;
        if (count++ == 0) {
            first_seq = r.seq;
            first_ms = r.ms;
        }
        payload += r.klen + r.dlen;
        prev = r.seq;
        pms = last_ms = r.ms;
        off += r.span;
    }
    if (!bad && (count != g->count || payload != g->payload ||
                 (count && (first_seq != g->first_seq || prev != g->last_seq ||
                            first_ms != g->first_ms || last_ms != g->last_ms))))
        bad = "records differ from its trailer's summary";
    if (bad) {
        free(v);
        return sl__err(SL_ECORRUPT,
                       "%s segment %016" PRIx64 " is damaged (%s at offset %" PRIu64
                       "); not rewritten cold",
                       c->shard_id, g->ordinal, bad, off);
    }
    *out = v;
    *nout = n;
    return 0;
}

int sl__seg_write_cold(sl_seg *g, const sl_segctx *c, const char *tmp_path, int level,
                       uint64_t *file_bytes_out)
{
    if (file_bytes_out) *file_bytes_out = 0;
    if (!g || !c || !tmp_path) return sl__err(SL_EINVAL, "sl__seg_write_cold: NULL argument");
    if (g->cold)
        return sl__err(SL_EINVAL, "%s segment %016" PRIx64 " is cold already", c->shard_id,
                       g->ordinal);
    if (!g->loaded || !sl__seg_is_sealed(g))
        return sl__err(SL_EINVAL, "%s segment %016" PRIx64 " is not sealed", c->shard_id,
                       g->ordinal);
    if (!g->base)
        return sl__err(SL_EINVAL, "%s segment %016" PRIx64 " is not mapped", c->shard_id,
                       g->ordinal);
    if (g->mem_idx || g->map_len < g->file_bytes || g->data_end < SL_SEG_HDR ||
        g->data_end > g->file_bytes - SL_SEG_TRAILER)
        return sl__err(SL_ECORRUPT,
                       "%s segment %016" PRIx64 " is damaged (%s); not rewritten cold",
                       c->shard_id, g->ordinal,
                       g->mem_idx ? "its index was rebuilt" : "truncated or inconsistent");
    sl_cblk *blk = NULL;
    uint32_t n = 0, max_raw = 0;
    int rc = cold_plan(g, c, &blk, &n, &max_raw);
    if (rc) return rc;
    /* output staging: frames are compressed straight into it, written in
    ** runs of about 1 MiB */
    size_t obcap = 1u << 20, bound = ZSTD_compressBound(max_raw ? max_raw : 1);
    if (bound > obcap) obcap = bound;
    uint64_t tab_bytes = (uint64_t)n * COLD_ENTRY;
    uint8_t *ob = malloc(obcap), *tail = malloc((size_t)tab_bytes + 8 + SL_SEG_TRAILER);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    int fd = -1;
    if (!ob || !tail || !cc) {
        rc = sl__err(SL_ENOMEM, "rewriting %s", g->path);
        goto out;
    }
    fd = sl__os.open(tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {                       /* not ours: never remove it */
        rc = sl__errno(sl__errno_code(errno), errno, "creating %s", tmp_path);
        goto out;
    }
    uint64_t fpos = SL_SEG_HDR;         /* file offset of ob[0] */
    size_t olen = 0;
    for (uint32_t k = 0; k < n; k++) {
        sl_cblk *b = &blk[k];
        if (olen + ZSTD_compressBound(b->raw_len) > obcap) {
            if (sl__os_pwrite_all(fd, ob, olen, (off_t)fpos) != 0) {
                rc = sl__errno(sl__errno_code(errno), errno, "writing %s", tmp_path);
                goto out;
            }
            fpos += olen;
            olen = 0;
        }
        const uint8_t *src = g->base + b->raw_off;
        size_t z = ZSTD_compressCCtx(cc, ob + olen, obcap - olen, src, b->raw_len, level);
        if (ZSTD_isError(z)) {
            rc = sl__err(SL_ENOMEM, "compressing %s: %s", g->path, ZSTD_getErrorName(z));
            goto out;
        }
        b->zlen = (uint32_t)z;
        b->file_off = fpos + olen;
        b->raw_xxh3 = sl__xxh3(src, b->raw_len);
        olen += z;
    }
    if (olen && sl__os_pwrite_all(fd, ob, olen, (off_t)fpos) != 0) {
        rc = sl__errno(sl__errno_code(errno), errno, "writing %s", tmp_path);
        goto out;
    }
    fpos += olen;
    /* padding, the block table and the trailer, in one write */
    uint64_t tab_off = sl__pad8(fpos), pad = tab_off - fpos;
    uint64_t file_bytes = tab_off + tab_bytes + SL_SEG_TRAILER;
    memset(tail, 0, (size_t)(pad + tab_bytes + SL_SEG_TRAILER));
    for (uint32_t k = 0; k < n; k++) cold_entry_put(tail + pad + (uint64_t)COLD_ENTRY * k, &blk[k]);
    uint8_t *t = tail + pad + tab_bytes;
    sl__st32(t + 0, COLD_MAGIC);
    sl__st32(t + 4, n);
    sl__st64(t + 8, g->count);
    sl__st64(t + 16, g->first_seq);
    sl__st64(t + 24, g->last_seq);
    sl__st64(t + 32, (uint64_t)g->first_ms);
    sl__st64(t + 40, (uint64_t)g->last_ms);
    sl__st64(t + 48, g->data_end);
    sl__st64(t + 56, g->payload);
    sl__st64(t + 64, tab_off);
    sl__st64(t + 72, sl__xxh3(tail + pad, (size_t)tab_bytes));
    sl__st64(t + 80, g->file_bytes);
    sl__st32(t + 88, SL_COLD_BLOCK_RAW);
    sl__st64(t + 120, sl__xxh3(t, 120));
    if (sl__os_pwrite_all(fd, tail, (size_t)(pad + tab_bytes + SL_SEG_TRAILER), (off_t)fpos) != 0) {
        rc = sl__errno(sl__errno_code(errno), errno, "writing %s", tmp_path);
        goto out;
    }
    /* the header: the hot one's immutable part (identity, creation time)
    ** with flag COLD and the real size; sealed */
    uint8_t h[SL_SEG_HDR];
    memset(h, 0, sizeof h);
    memcpy(h, g->base, 56);
    sl__st32(h + 12, SEG_FLAG_COLD);
    sl__st64(h + 24, file_bytes);
    sl__st64(h + 56, sl__xxh3(h, 56));
    sl__st64(h + SL_H_COMMIT_TAIL, g->data_end);
    sl__st32(h + SL_H_STATE, SL_STATE_SEALED);
    sl__st64(h + SL_H_BOOT, sl__boot_id());
    if (sl__os_pwrite_all(fd, h, sizeof h, 0) != 0) {
        rc = sl__errno(sl__errno_code(errno), errno, "writing %s", tmp_path);
        goto out;
    }
    if (sl__os.fdatasync(fd) != 0) {
        rc = sl__errno(sl__errno_code(errno), errno, "syncing %s", tmp_path);
        goto out;
    }
    if (file_bytes_out) *file_bytes_out = file_bytes;
out:
    if (fd >= 0) {
        if (sl__os.close(fd) != 0 && rc == 0)
            rc = sl__errno(SL_EIO, errno, "closing %s", tmp_path);
        if (rc) sl__os.unlink(tmp_path);
    }
    if (rc && file_bytes_out) *file_bytes_out = 0;
    ZSTD_freeCCtx(cc);
    free(ob);
    free(tail);
    free(blk);
    return rc;
}
