/*
** fuzz.h -- what the libFuzzer targets in fuzz/ share (fixture.c).
**
** The targets (fuzz_<name>.c, one program each, built by `make fuzz`):
**   record     sl__rec_parse on raw bytes (hot and encrypted framing)
**   segment    a hot segment file, read through a real stream: read-only
**              open, every record by iterator, seeks, sl_stream_verify;
**              then a writer open (recovery), reads, one put
**   cold       the same with cold (zstd) segment files
**   manifest   sl__manifest_decode, then encode/decode round trips
**   slots      CONSUMER files, CHECKPOINTS slot pairs and SEQ slots
**   journal    an ALWAYS-mode JOURNAL replayed by a writer open
**   jsonl      one line of `shardlog put-records` JSON Lines input
** make_corpus.c writes their seed corpora (fuzz/corpus/<name>/).
**
** The fixture makes every stream-backed run reproducible from the input
** alone: the template stream has a fixed stream id (FZ_STREAM_ID) and an
** encryption key provider whose data key is a constant (fz_data_key), so a
** seed segment written by make_corpus.c in one process is a valid segment
** of the stream of any later run, encrypted records included.
**
** "Garbage": every record a read returns must be one the input holds --
** a validly framed record (its own XXH3, or an index block's XXH3 over
** it), with the same sequence number, arrival time, key and data
** (decrypted with the fixed key when encrypted).  fz_oracle collects them
** from the input bytes, independently of the library's readers.
*/
#ifndef SL_FUZZ_H
#define SL_FUZZ_H

#include "internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FZ_STREAM_ID 0x5eedf00dcafe0001ull
#define FZ_STREAM "fz"
#define FZ_SHARD "shardId-000000000000"
#define FZ_T0 1767225600000LL         /* 2026-01-01T00:00:00Z: the clock */
#define FZ_SALT 0x5a175a17u           /* nonce salt of encrypted seeds */
/* A segment header's boot id of 1 stands for "this boot": the harness
** writes the running machine's boot id there, so that seeds can take the
** soft-hint path of recovery on any machine.  (Offset 112 is a hint in the
** header's mutable part, outside its checksum.) */
#define FZ_BOOT_THIS 1u
/* Writer opens re-extend a file shorter than its header's file_bytes
** (up to 1 TiB); the harness skips the writer stage above this. */
#define FZ_EXTEND_MAX (4u << 20)

/* libFuzzer's entry point, defined by each fuzz_<name>.c */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

extern const uint8_t fz_data_key[SL_DATA_KEY_BYTES];
extern const sl_key_provider fz_keys;

/* Print what went wrong and abort (libFuzzer saves the input). */
_Noreturn void fz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- files ---- */
/* A fresh scratch directory (removed at exit): /dev/shm when it is
** writable, else $TMPDIR or /tmp; $FUZZ_TMPDIR overrides. */
char *fz_scratch(void);
void fz_write(const char *path, const void *p, size_t n);
/* Whole file into a malloc'd buffer; NULL if missing. */
uint8_t *fz_read(const char *path, size_t *n);
void fz_rm_contents(const char *dir);

/* ---- records and segments ---- */
/* One deterministic record of a built segment: i-th key "key-<i % 5>",
** data of dlen + i % 7 bytes. */
typedef struct fz_spec {
    uint64_t ordinal;                 /* 1.. */
    uint64_t file_bytes;              /* a multiple of 4096, >= 8192 */
    uint64_t seq0, seq_step;
    int n;                            /* records */
    size_t dlen;
    int enc_every;                    /* 0: plain; k: every k-th encrypted */
    bool seal, cold;
} fz_spec;
/* Write the segment sp describes with the library's own segment writer
** (sl__seg_create, sl__seg_append, sl__seg_seal, sl__seg_write_cold) in a
** scratch directory and return its bytes (malloc'd); its header's boot id
** is FZ_BOOT_THIS. */
uint8_t *fz_build_segment(const fz_spec *sp, size_t *len);
/* Encrypt-or-frame record i of sp at dst as the writer would (for the
** journal seeds); returns its padded size. */
size_t fz_frame_record(const fz_spec *sp, int i, uint8_t *dst, size_t cap);

/* The journal target's segment 1 (active) holds records 0..FZ_JOURNAL_HAVE-1
** of fz_journal_spec; the journal seeds bring back the others, as after a
** power cut that lost the segment's tail but not the journal. */
#define FZ_JOURNAL_HAVE 5
extern const fz_spec fz_journal_spec;

/* ---- the oracle ---- */
typedef struct fz_orec {
    uint64_t seq;
    int64_t ms;
    uint64_t hash;                    /* of key and data (plaintext) */
} fz_orec;
typedef struct fz_oracle {
    fz_orec *v;
    size_t n, cap;
} fz_oracle;
uint64_t fz_rec_hash(const void *key, size_t klen, const void *data, size_t dlen);
void fz_oracle_add(fz_oracle *o, uint64_t seq, int64_t ms, uint64_t hash);
/* Every validly framed record of a hot segment image (see above). */
void fz_oracle_hot(fz_oracle *o, const uint8_t *p, size_t n);
/* Every record of every zstd frame in a cold segment image. */
void fz_oracle_cold(fz_oracle *o, const uint8_t *p, size_t n);
/* Records framed back to back in raw bytes (no checksums needed). */
void fz_oracle_raw(fz_oracle *o, const uint8_t *p, size_t n, bool framing_only);
void fz_oracle_done(fz_oracle *o);             /* sort, for lookups */
bool fz_oracle_has(const fz_oracle *o, const sl_record *r);
void fz_oracle_free(fz_oracle *o);

/* Re-sign a segment image in place: every checksum whose bytes are
** otherwise valid is recomputed (records, index blocks, trailer, header;
** for cold files the blocks, table and trailer), so that a mutation of a
** field behind a checksum reaches the checks after it.  Returns whether
** anything changed. */
bool fz_resign_hot(uint8_t *p, size_t n);
bool fz_resign_cold(uint8_t *p, size_t n);

/* ---- the template stream ---- */
/* <scratch>/root with stream "fz" (1 shard, 64 KiB segments, KMS with
** fz_keys, durability NONE, fixed id), made once per process. */
const char *fz_root(void);
const char *fz_stream_dir(void);
const char *fz_shard_dir(void);
/* Back to the template: no segments, no JOURNAL, the template's SEQ and
** MANIFEST. */
void fz_reset(void);
/* Open options: fz_keys, a virtual clock at FZ_T0 + 1 hour, reports
** counted (and checked to be text). */
sl_open_opts fz_opts(bool readonly);
uint64_t fz_reports(void);

/* Read every record of the shard with one iterator of `type`, checking
** each against the oracle (and sequence numbers rising); fails on a
** record the input does not hold or on a read loop that makes no
** progress.  Returns the records read; *seqs (optional, up to nseqs)
** collects their sequence numbers. */
size_t fz_read_all(sl_stream *s, const fz_oracle *o, sl_iter_type type, uint64_t arg,
                   uint64_t max_reads, uint64_t *seqs, size_t nseqs, int64_t *mss);

/* The whole segment check: reset, write `file` as segment 1 (and, with
** `older`, a valid segment 2 after it), then the read-only and writer
** stages described at the top of fuzz_segment.c. */
void fz_segment_run(const uint8_t *file, size_t n, bool cold);

#endif /* SL_FUZZ_H */
