/*
** make_corpus.c -- writes the seed corpora of the fuzz targets:
** `make fuzz-corpus` (build/fuzz/make_corpus fuzz/corpus).
**
** Deterministic: the segments come from the library's own segment writer
** through fixture.c's builder (fixed stream id, key, clock and salt), the
** other files from the formats' documented layouts, so a rerun rewrites
** the same bytes.  A handful of small valid and interesting inputs per
** target, well under 1 MiB in all:
**   record/    records as framed (plain, encrypted, back to back, zero)
**   segment/   hot segments: active, sealed, several index blocks, mixed
**              encryption, synced hints of another boot, a torn tail, a
**              damaged record, empty, one placed as an older segment
**   cold/      cold files: one block, several blocks, encrypted records,
**              empty, a damaged trailer (the table rebuilt by a scan)
**   manifest/  versions 1, 2 and 3, tags, resharded shard maps, data keys
**   slots/     CONSUMER files, CHECKPOINTS pairs, SEQ slots (fuzz_slots.c)
**   journal/   JOURNAL laps that restore records to fuzz_journal.c's segment
**   jsonl/     put-records lines, good and bad
*/
#include "fuzz.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *out_root;
static size_t total;

static void put(const char *target, const char *name, const void *p, size_t n)
{
    char *dir, *path;
    if (asprintf(&dir, "%s/%s", out_root, target) < 0) fz_fail("out of memory");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) fz_fail("mkdir %s: %s", dir, strerror(errno));
    if (asprintf(&path, "%s/%s", dir, name) < 0) fz_fail("out of memory");
    fz_write(path, p, n);
    total += n;
    free(path);
    free(dir);
}

static void put_str(const char *target, const char *name, const char *s)
{
    put(target, name, s, strlen(s));
}

/* ---- records ------------------------------------------------------------ */

static void records(void)
{
    uint8_t b[4096];
    fz_spec plain = {1, 8192, 7, 1, 4, 10, 0, false, false};
    fz_spec enc = {1, 8192, 9, 1, 4, 10, 1, false, false};
    size_t n = fz_frame_record(&plain, 0, b, sizeof b);
    put("record", "plain", b, n);
    n = fz_frame_record(&enc, 0, b, sizeof b);
    put("record", "encrypted", b, n);
    /* three back to back, the middle one encrypted, then a zero slot */
    fz_spec mix = {1, 8192, 20, 3, 3, 30, 2, false, false};
    n = 0;
    for (int i = 0; i < 3; i++) n += fz_frame_record(&mix, i + 1, b + n, sizeof b - n);
    memset(b + n, 0, 40);
    put("record", "three-then-zero", b, n + 40);
    /* a long key, empty data */
    memset(b, 0, sizeof b);
    char key[1024];
    memset(key, 'k', sizeof key);
    if (sl__rec_write(b, 5, FZ_T0, key, sizeof key, "", 0, NULL) != 0) fz_fail("rec_write");
    put("record", "key-1024", b, (size_t)sl__rec_span(sizeof key, 0));
    memset(b, 0, 64);
    put("record", "zero", b, 64);
}

/* ---- segments ----------------------------------------------------------- */

static void segment(const char *target, const char *name, const fz_spec *sp, bool older,
                    void (*edit)(uint8_t *, size_t))
{
    size_t n;
    uint8_t *b = fz_build_segment(sp, &n);
    if (edit) edit(b, n);
    if (older) b[255] |= 1;
    put(target, name, b, n);
    free(b);
}

/* the synced hint, as after a sync, and another boot's id: recovery
** after a reboot starts from it */
static void synced_other_boot(uint8_t *b, size_t n)
{
    (void)n;
    sl__st64(b + SL_H_SYNCED_TAIL, sl__ld64(b + SL_H_COMMIT_TAIL));
    sl__st32(b + SL_H_SYNCED_INDEX, sl__ld32(b + SL_H_INDEX_COUNT));
    sl__st64(b + SL_H_SYNCED_COUNT, sl__ld64(b + SL_H_SOFT_COUNT));
    sl__st64(b + SL_H_SYNCED_BYTES, sl__ld64(b + SL_H_SOFT_BYTES));
    sl__st64(b + SL_H_BOOT, 0x0123456789abcdefull);
}

/* a torn append: half a record after the committed tail */
static void torn_tail(uint8_t *b, size_t n)
{
    uint64_t t = sl__ld64(b + SL_H_COMMIT_TAIL);
    uint8_t rec[256];
    fz_spec sp = {1, 8192, 1000, 1, 1, 40, 0, false, false};
    size_t r = fz_frame_record(&sp, 0, rec, sizeof rec);
    if (t + r <= n) memcpy(b + t, rec, r / 2);
}

/* a flipped byte in the data of a record in the middle */
static void damaged_middle(uint8_t *b, size_t n)
{
    (void)n;
    uint64_t t = sl__ld64(b + SL_H_COMMIT_TAIL);
    b[SL_SEG_HDR + (t - SL_SEG_HDR) / 2] ^= 0x20;
}

/* the trailer's checksum broken: a reader rebuilds what it describes */
static void damaged_trailer(uint8_t *b, size_t n) { b[n - 128 + 8] ^= 1; }

static void segments(void)
{
    fz_spec active = {1, 8192, 1, 1, 12, 20, 0, false, false};
    segment("segment", "active-8k", &active, false, NULL);
    segment("segment", "active-8k-older", &active, true, NULL);
    segment("segment", "active-synced-other-boot", &active, false, synced_other_boot);
    segment("segment", "active-torn-tail", &active, false, torn_tail);
    fz_spec sealed = {1, 8192, 10, 3, 20, 30, 3, true, false};
    segment("segment", "sealed-mixed-encryption", &sealed, false, NULL);
    fz_spec blocks = {1, 16384, 1, 1, 120, 60, 0, true, false};
    segment("segment", "sealed-index-blocks", &blocks, false, NULL);
    segment("segment", "sealed-damaged-record", &blocks, false, damaged_middle);
    segment("segment", "sealed-damaged-record-older", &blocks, true, damaged_middle);
    fz_spec blocks_active = {1, 16384, 1, 1, 120, 60, 5, false, false};
    segment("segment", "active-index-blocks", &blocks_active, false, NULL);
    segment("segment", "active-damaged-record", &blocks_active, false, damaged_middle);
    fz_spec empty = {1, 8192, 1, 1, 0, 0, 0, false, false};
    segment("segment", "empty", &empty, false, NULL);
    fz_spec seg64 = {1, SL_SEGMENT_BYTES_MIN, 1, 1, 40, 100, 4, true, false};
    segment("segment", "sealed-64k", &seg64, false, NULL);

    fz_spec c1 = {1, 8192, 1, 1, 30, 40, 0, true, true};
    segment("cold", "one-block", &c1, false, NULL);
    segment("cold", "one-block-older", &c1, true, NULL);
    segment("cold", "damaged-trailer", &c1, false, damaged_trailer);
    fz_spec c2 = {1, 1u << 20, 1, 2, 70, 1500, 0, true, true};   /* 2 blocks */
    segment("cold", "blocks", &c2, false, NULL);
    fz_spec c3 = {1, 8192, 50, 1, 20, 30, 2, true, true};
    segment("cold", "encrypted", &c3, false, NULL);
    fz_spec c4 = {1, 8192, 1, 1, 0, 0, 0, true, true};
    segment("cold", "empty", &c4, false, NULL);
}

/* ---- manifests ---------------------------------------------------------- */

static void manifest_put(const char *name, const sl_manifest *m)
{
    char *b;
    size_t n;
    if (sl__manifest_encode(m, &b, &n) != 0) fz_fail("encoding a manifest");
    put("manifest", name, b, n);
    free(b);
}

/* Re-sign text (everything before the checksum line). */
static void manifest_text(const char *name, const char *body)
{
    char *s;
    if (asprintf(&s, "%schecksum %016" PRIx64 "\n", body, sl__xxh3(body, strlen(body))) < 0)
        fz_fail("out of memory");
    put_str("manifest", name, s);
    free(s);
}

static void manifests(void)
{
    sl_mshard one[1] = {{0, true, {0, 0}, SL_U128_MAX, SL_NO_SHARD, SL_NO_SHARD, 1, 0}};
    sl_manifest m = {0};
    m.stream_id = FZ_STREAM_ID;
    strcpy(m.name, FZ_STREAM);
    m.created_ms = FZ_T0;
    m.generation = 1;
    m.mode = SL_STREAM_MODE_PROVISIONED;
    m.retention_hours = 24;
    m.encryption = SL_ENCRYPTION_NONE;
    m.max_record_kib = 1024;
    m.segment_bytes = SL_SEGMENT_BYTES_MIN;
    m.durability = SL_DURABILITY_INTERVAL;
    m.sync_interval_ms = 1000;
    m.size_cap_policy = SL_CAP_DROP_OLDEST;
    m.trim_ms = INT64_MIN;
    m.compaction = SL_COMPACTION_NONE;
    m.next_shard_index = 1;
    m.nshards = 1;
    m.shards = one;
    manifest_put("v2-one-shard", &m);

    /* a split then a merge: closed parents, an adjacent parent; tags, a
    ** cap, cold storage, compaction, a trim */
    sl_u128 half = {UINT64_MAX >> 1, UINT64_MAX};
    sl_u128 half1 = {UINT64_MAX >> 1 | 1ull << 63, 0};
    sl_mshard map[4] = {
        {0, false, {0, 0}, SL_U128_MAX, SL_NO_SHARD, SL_NO_SHARD, 1, 500},
        {1, false, {0, 0}, half, 0, SL_NO_SHARD, 501, 900},
        {2, false, half1, SL_U128_MAX, 0, SL_NO_SHARD, 502, 901},
        {3, true, {0, 0}, SL_U128_MAX, 1, 2, 902, 0},
    };
    sl_mtag tags[2] = {{"team", "edge"}, {"cost-centre", NULL}};
    m.nshards = 4;
    m.shards = map;
    m.next_shard_index = 4;
    m.ntags = 2;
    m.tags = tags;
    m.mode = SL_STREAM_MODE_ON_DEMAND;
    m.durability = SL_DURABILITY_ALWAYS;
    m.size_cap_bytes = 1u << 30;
    m.size_cap_policy = SL_CAP_REFUSE;
    m.cold_after_hours = 48;
    m.compaction = SL_COMPACTION_KEY;
    m.trim_ms = FZ_T0 - 1000;
    m.generation = 17;
    manifest_put("v2-resharded-tags", &m);

    /* version 3: data keys (rotated twice), encryption on */
    uint8_t w1[] = "wrapped-key-1", w2[] = "wrapped-key-2", w3[] = "wrapped-key-3";
    sl_mkey keys[3] = {{1, w1, sizeof w1 - 1}, {2, w2, sizeof w2 - 1}, {3, w3, sizeof w3 - 1}};
    m.encryption = SL_ENCRYPTION_KMS;
    char kid[] = "arn:aws:kms:us-east-1:123456789012:key/fuzz";
    m.kms_key_id = kid;
    m.nkeys = 3;
    m.keys = keys;
    m.key_current = 3;
    manifest_put("v3-keys", &m);
    m.key_current = 0;                  /* encryption stopped */
    m.encryption = SL_ENCRYPTION_NONE;
    manifest_put("v3-keys-stopped", &m);

    /* version 1 (no version 2 fields), by hand */
    manifest_text("v1",
                  "shardlog-manifest 1\n"
                  "stream_id 4ed890ed02da0761\n"
                  "name telemetry\n"
                  "created_ms 1795657225111\n"
                  "generation 1\n"
                  "mode PROVISIONED\n"
                  "retention_hours 24\n"
                  "encryption NONE\n"
                  "kms_key_id -\n"
                  "max_record_kib 1024\n"
                  "segment_bytes 67108864\n"
                  "durability interval\n"
                  "sync_interval_ms 1000\n"
                  "tag 7465616d 65646765\n"
                  "next_shard_index 2\n"
                  "shard 0 OPEN 0 170141183460469231731687303715884105727 - - 1 0\n"
                  "shard 1 OPEN 170141183460469231731687303715884105728 "
                  "340282366920938463463374607431768211455 - - 1 0\n");
}

/* ---- consumer and sequence slots ----------------------------------------- */

static void cons_file(uint8_t b[168], const char *name, uint16_t type, uint64_t id)
{
    memset(b, 0, 168);
    sl__st32(b, 0x4E434C53u);
    sl__st16(b + 4, 1);
    sl__st16(b + 6, type);
    sl__st64(b + 8, (uint64_t)FZ_T0);
    sl__st64(b + 16, id);
    sl__st32(b + 24, (uint32_t)strlen(name));
    memcpy(b + 32, name, strlen(name));
    sl__st64(b + 160, sl__xxh3(b, 160));
}

static void ckpt_slot(uint8_t b[64], uint32_t shard, uint64_t gen, uint64_t seq, uint64_t id)
{
    memset(b, 0, 64);
    sl__st32(b, 0x4B434C53u);
    sl__st16(b + 4, 1);
    sl__st32(b + 8, shard);
    sl__st64(b + 16, gen);
    sl__st64(b + 24, seq);
    sl__st64(b + 32, (uint64_t)FZ_T0);
    sl__st64(b + 40, id);
    sl__st64(b + 56, sl__xxh3(b, 56));
}

static void seq_slot(uint8_t b[64], uint64_t gen, uint64_t ceiling)
{
    memset(b, 0, 64);
    sl__st32(b, 0x51534C53u);
    sl__st32(b + 4, 1);
    sl__st64(b + 8, gen);
    sl__st64(b + 16, ceiling);
    sl__st64(b + 24, FZ_STREAM_ID);
    sl__st64(b + 56, sl__xxh3(b, 56));
}

static void slots(void)
{
    uint8_t b[1 + 168];
    b[0] = 0;                           /* fuzz_slots.c: kind 0, CONSUMER */
    cons_file(b + 1, "consumer-1", 1, 0x1122334455667788ull);
    put("slots", "consumer-shared", b, sizeof b);
    char longname[129];
    memset(longname, 'n', 128);
    longname[128] = '\0';
    longname[0] = '.';
    cons_file(b + 1, longname, 2, 42);
    put("slots", "consumer-dedicated-128", b, sizeof b);
    uint8_t c[1 + 128];
    c[0] = 1;                           /* kind 1, a CHECKPOINTS pair */
    ckpt_slot(c + 1, 3, 6, 1000, 0x1122334455667788ull);
    ckpt_slot(c + 1 + 64, 3, 7, 1100, 0x1122334455667788ull);
    put("slots", "checkpoints-both", c, sizeof c);
    memset(c + 1 + 64, 0, 64);
    put("slots", "checkpoints-one", c, sizeof c);
    uint8_t s[1 + 128];
    s[0] = 2;                           /* kind 2, SEQ's two slots */
    seq_slot(s + 1, 4, 1u << 20);
    seq_slot(s + 1 + 64, 5, 2u << 20);
    put("slots", "seq-both", s, sizeof s);
    memset(s + 1, 0xff, 64);
    put("slots", "seq-one-damaged", s, sizeof s);
}

/* ---- journal ------------------------------------------------------------ */

typedef struct jentry {
    uint32_t shard;
    uint64_t ordinal, off, len;
    const uint8_t *bytes;
} jentry;

/* Append one frame of lap `lap` to b at *at. */
static void frame(uint8_t *b, size_t *at, uint64_t lap, const jentry *e, int n)
{
    size_t bytes = 64;
    for (int i = 0; i < n; i++) bytes += 32 + (size_t)e[i].len;
    uint8_t *f = b + *at;
    memset(f, 0, bytes);
    sl__st32(f, 0x464A4C53u);
    sl__st32(f + 4, 1);
    sl__st64(f + 8, lap);
    sl__st64(f + 16, bytes);
    sl__st32(f + 24, (uint32_t)n);
    size_t o = 64;
    for (int i = 0; i < n; i++) {
        sl__st32(f + o, e[i].shard);
        sl__st64(f + o + 8, e[i].ordinal);
        sl__st64(f + o + 16, e[i].off);
        sl__st64(f + o + 24, e[i].len);
        memcpy(f + o + 32, e[i].bytes, (size_t)e[i].len);
        o += 32 + (size_t)e[i].len;
    }
    sl__st64(f + 56, sl__xxh3(f, bytes));
    *at += bytes;
}

static void journals(void)
{
    /* the whole segment as the journal knows it, and the part the
    ** target's segment 1 lacks (its records FZ_JOURNAL_HAVE.. ) */
    fz_spec all = fz_journal_spec, have = fz_journal_spec;
    have.n = FZ_JOURNAL_HAVE;
    size_t na, nh;
    uint8_t *a = fz_build_segment(&all, &na), *h = fz_build_segment(&have, &nh);
    uint64_t t_have = sl__ld64(h + SL_H_COMMIT_TAIL), t_all = sl__ld64(a + SL_H_COMMIT_TAIL);
    static uint8_t j[64 << 10];
    size_t at = 0;
    uint64_t lap = 0x1a9d1a9d1a9d1a9dull;
    jentry lost = {0, 1, t_have, t_all - t_have, a + t_have};
    frame(j, &at, lap, &lost, 1);
    put("journal", "restore-tail", j, at);
    /* two frames: a record at a time, then an entry for a segment that
    ** does not exist (skipped) and the header page as it was */
    at = 0;
    uint64_t mid = t_have + sl__pad8(sl__ld32(a + t_have));
    jentry e1 = {0, 1, t_have, mid - t_have, a + t_have};
    jentry e2[2] = {{0, 1, mid, t_all - mid, a + mid}, {0, 9, 256, 64, a + 256}};
    frame(j, &at, lap, &e1, 1);
    frame(j, &at, lap, e2, 2);
    put("journal", "two-frames", j, at);
    /* the same bytes as the segment (nothing to restore), then another
    ** lap's frame (the end) */
    at = 0;
    jentry same = {0, 1, SL_SEG_HDR, t_have - SL_SEG_HDR, h + SL_SEG_HDR};
    frame(j, &at, lap, &same, 1);
    frame(j, &at, lap + 1, &lost, 1);
    put("journal", "nothing-lost-then-old-lap", j, at);
    /* cleared: frame 0's header zeroed at a clean close */
    memset(j, 0, 64);
    put("journal", "cleared", j, at);
    free(a);
    free(h);
}

/* ---- JSON Lines --------------------------------------------------------- */

static void jsonl(void)
{
    put_str("jsonl", "text", "{\"PartitionKey\":\"user-1\",\"Text\":\"hello\"}\n");
    put_str("jsonl", "data", "{\"PartitionKey\":\"k\",\"Data\":\"aGVsbG8gd29ybGQ=\"}\n");
    put_str("jsonl", "explicit-hash-key",
            "{\"PartitionKey\":\"k\",\"Text\":\"x\","
            "\"ExplicitHashKey\":\"170141183460469231731687303715884105728\"}\n");
    put_str("jsonl", "unicode",
            "{\"PartitionKey\":\"caf\\u00e9-\\ud83d\\ude00\",\"Text\":\"\\u00fcber\\n\"}\n");
    put_str("jsonl", "two-lines",
            "{\"PartitionKey\":\"a\",\"Data\":\"\"}\n  \n{\"PartitionKey\":\"b\",\"Text\":\"\"}\n");
    put_str("jsonl", "unknown-field", "{\"PartitionKey\":\"k\",\"Text\":\"a\",\"Colour\":\"red\"}\n");
    put_str("jsonl", "both", "{\"PartitionKey\":\"k\",\"Text\":\"a\",\"Data\":\"YQ==\"}\n");
    put_str("jsonl", "bad-base64", "{\"PartitionKey\":\"k\",\"Data\":\"@@@=\"}\n");
    put_str("jsonl", "not-an-object", "[1,2]\n");
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <corpus directory>\n", argv[0]);
        return 2;
    }
    out_root = argv[1];
    if (mkdir(out_root, 0755) != 0 && errno != EEXIST) fz_fail("mkdir %s", out_root);
    records();
    segments();
    manifests();
    slots();
    journals();
    jsonl();
    printf("make_corpus: %zu bytes of seeds in %s\n", total, out_root);
    return 0;
}
