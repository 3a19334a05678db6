/*
** fuzz_journal.c -- libFuzzer target: ALWAYS mode's commit journal
** (lib/commit.c, sl__journal_recover), replayed by a writer open.
**
** The template stream (fixture.c) gets an active segment 1 holding the
** first FZ_JOURNAL_HAVE records of fz_journal_spec, and the input as its
** JOURNAL; then a writer open replays the journal (frames of the lap of
** frame 0, each checked, entries written into their segments where they
** differ) and recovers the segment; every record is read, one put must
** read back, and a read-only open reads what the writer left.  Checked:
** no crash or hang, and every record read is one that the segment holds
** or that the journal's entries put there (fixture.c's oracle over the
** segment as given and as the frames would patch it -- computed here
** independently of commit.c), sequence numbers rising.  Each input runs
** twice: as given and re-signed (every frame's XXH3 recomputed along the
** lap, so that mutations of the entries reach the replay).
** Seeds: fuzz/corpus/journal/, written by make_corpus.c.
*/
#include "fuzz.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define JR_MAGIC 0x464A4C53u

static uint8_t *seg;
static size_t seg_n;

/* Walk the lap of frame 0 as recovery does: frame headers checked, each
** frame's checksum either checked or (resign) recomputed.  patch: apply
** the entries for shard 0 segment 1 to img (n bytes).  Returns whether
** resigning changed anything. */
static bool lap(uint8_t *j, size_t jn, bool resign, uint8_t *img, size_t n)
{
    bool ch = false;
    if (jn < 64 || sl__ld32(j) != JR_MAGIC || sl__ld32(j + 4) != 1) return false;
    uint64_t id = sl__ld64(j + 8);
    for (uint64_t off = 0; off + 64 <= jn;) {
        uint8_t *f = j + off;
        uint64_t bytes = sl__ld64(f + 16);
        if (sl__ld32(f) != JR_MAGIC || sl__ld32(f + 4) != 1 || sl__ld64(f + 8) != id ||
            bytes < 64 || bytes % 8 || bytes > jn - off || sl__ld32(f + 28) != 0)
            break;
        uint64_t sum = sl__ld64(f + 56);
        sl__st64(f + 56, 0);
        uint64_t h = sl__xxh3(f, (size_t)bytes);
        sl__st64(f + 56, resign ? h : sum);
        if (resign) ch |= sum != h;
        else if (sum != h) break;
        uint32_t ne = sl__ld32(f + 24);
        uint64_t at = 64;
        for (uint32_t k = 0; k < ne && bytes - at >= 32; k++) {
            const uint8_t *e = f + at;
            uint64_t eo = sl__ld64(e + 16), len = sl__ld64(e + 24);
            at += 32;
            if (len > bytes - at) break;
            if (img && sl__ld32(e) == 0 && sl__ld64(e + 8) == 1 && eo >= SL_SEG_HDR && eo <= n &&
                len <= n - eo)
                memcpy(img + eo, e + 32, (size_t)len);
            at += len;
        }
        off += bytes;
    }
    return ch;
}

static void run(const uint8_t *journal, size_t jn)
{
    fz_reset();
    char *p;
    if (asprintf(&p, "%s/0000000000000001.seg", fz_shard_dir()) < 0) fz_fail("out of memory");
    uint8_t *img = malloc(seg_n);
    if (!img) fz_fail("out of memory");
    memcpy(img, seg, seg_n);
    sl__st64(img + SL_H_BOOT, sl__boot_id());
    fz_write(p, img, seg_n);
    free(p);
    if (asprintf(&p, "%s/" SL_JOURNAL_FILE, fz_stream_dir()) < 0) fz_fail("out of memory");
    fz_write(p, journal, jn);
    free(p);
    /* the oracle: the segment as it is, and as the lap would patch it */
    fz_oracle o = {0};
    fz_oracle_hot(&o, seg, seg_n);
    memcpy(img, seg, seg_n);
    uint8_t *jc = malloc(jn ? jn : 1);
    if (!jc) fz_fail("out of memory");
    memcpy(jc, journal, jn);
    lap(jc, jn, false, img, seg_n);
    free(jc);
    fz_oracle_hot(&o, img, seg_n);
    free(img);
    fz_oracle_done(&o);
    uint64_t max_reads = seg_n / 8 + 64;

    sl_open_opts rw = fz_opts(false);
    sl_stream *w;
    if (sl_stream_open(&w, fz_root(), FZ_STREAM, &rw) == 0) {
        fz_read_all(w, &o, SL_ITER_TRIM_HORIZON, 0, max_reads, NULL, 0, NULL);
        sl_producer *pr;
        if (sl_producer_open(&pr, w) != 0) fz_fail("sl_producer_open: %s", sl_errmsg(w));
        static const char data[] = "put after replay";
        uint64_t seq = 0, last = 0;
        if (sl_put(pr, "fz-put", data, sizeof data - 1, &seq) == 0) {
            fz_oracle_add(&o, seq, INT64_MIN, fz_rec_hash("fz-put", 6, data, sizeof data - 1));
            fz_oracle_done(&o);
            size_t got = fz_read_all(w, &o, SL_ITER_AT_SEQUENCE_NUMBER, seq, max_reads, &last, 1,
                                     NULL);
            if (got != 1 || last != seq)
                fz_fail("the record just put (%" PRIu64 ") reads back as %zu records from %" PRIu64,
                        seq, got, last);
        }
        sl_producer_close(pr);
        if (sl_stream_close(w) != 0) fz_fail("closing the writer: %s", sl_errmsg(NULL));
        sl_open_opts ro = fz_opts(true);
        sl_stream *s;
        if (sl_stream_open(&s, fz_root(), FZ_STREAM, &ro) == 0) {
            fz_read_all(s, &o, SL_ITER_TRIM_HORIZON, 0, max_reads, NULL, 0, NULL);
            if (sl_stream_close(s) != 0) fz_fail("closing a read-only stream");
        }
    }
    fz_oracle_free(&o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20)) return 0;
    if (!seg) {
        fz_spec sp = fz_journal_spec;
        sp.n = FZ_JOURNAL_HAVE;
        seg = fz_build_segment(&sp, &seg_n);
    }
    run(data, size);
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    if (lap(copy, size, true, NULL, 0)) run(copy, size);
    free(copy);
    return 0;
}
