/*
** test_segment.c -- segment files: roll-over, sealed segments after reopen,
** oversize records, recovery of torn tails, detection of flipped bytes and
** truncation, quarantine of bad headers, format versions, and full disks
** (a fault hook on fallocate, and a real tmpfs when running as root).
*/
#include "testutil.h"

#include <sys/mount.h>

#define SHARD0 "shardId-000000000000"
#define NAME "seg"

/* Write n records "k:<i>" of about `size` bytes each to a 1-shard stream. */
static void fill(sl_producer *p, int from, int n, size_t size, uint64_t *seqs)
{
    char *d = malloc(size + 32);
    assert_non_null(d);
    for (int i = from; i < from + n; i++) {
        int h = snprintf(d, 32, "%08d|", i);
        memset(d + h, 'a' + i % 26, size - (size_t)h);
        uint64_t s;
        assert_int_equal(sl_put(p, "k", d, size, &s), 0);
        if (seqs) seqs[i] = s;
    }
    free(d);
}

/* Check the records are exactly those fill() wrote, in order. */
static void check_fill(const tu_recs *r, const uint64_t *seqs, int from, int n, size_t size)
{
    assert_int_equal(r->n, (size_t)n);
    for (int i = 0; i < n; i++) {
        const tu_rec *x = &r->v[i];
        assert_int_equal(x->dlen, size);
        assert_int_equal(atoi(x->data), from + i);
        if (seqs) assert_int_equal(x->seq, seqs[from + i]);
    }
}

/* Create the stream, write n records of `size` bytes with fill(), close. */
static void seed(const char *root, int n, size_t size, uint64_t *seqs)
{
    sl_stream *s = tu_create(root, NAME, NULL);      /* 64 KiB segments */
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    fill(p, 0, n, size, seqs);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

static sl_stream *reopen(sl_stream *s, sl_producer **p, const char *root, tu_reports *rep)
{
    if (p && *p) sl_producer_close(*p);
    assert_int_equal(sl_stream_close(s), 0);
    tu_opts o = {.reports = rep};
    s = tu_open(root, NAME, &o);
    if (p) assert_int_equal(sl_producer_open(p, s), 0);
    return s;
}

static void roll_over_and_reopen(void **state)
{
    sl_stream *s = tu_create(*state, NAME, NULL);   /* 64 KiB segments */
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    static uint64_t seqs[2000];
    fill(p, 0, 1000, 300, seqs);
    int nseg = tu_nsegs(*state, NAME, 0);
    assert_true(nseg >= 5);
    tu_recs r = {0};
    tu_read_all(s, &r);
    check_fill(&r, seqs, 0, 1000, 300);
    tu_recs_free(&r);
    /* reopen: sealed segments come back from their trailers, the active
    ** one from recovery; appends go on in the same active segment */
    tu_reports rep = {0};
    s = reopen(s, &p, *state, &rep);
    assert_int_equal(rep.count, 0);
    fill(p, 1000, 1000, 300, seqs);
    assert_true(seqs[1000] > seqs[999]);
    tu_read_all(s, &r);
    check_fill(&r, seqs, 0, 2000, 300);
    tu_recs_free(&r);
    sl_stream_desc *d;
    assert_int_equal(sl_stream_describe(&d, s), 0);
    assert_int_equal(d->shards[0].records, 2000);
    assert_int_equal(d->shards[0].bytes, 2000 * 301);   /* data + 1-byte key */
    sl_stream_desc_free(d);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

static void oversize_record_gets_its_own_segment(void **state)
{
    tu_opts o = {.max_record_kib = 1024};
    sl_stream *s = tu_create(*state, NAME, &o);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    static uint64_t seqs[3];
    fill(p, 0, 1, 100, seqs);
    fill(p, 1, 1, 300000, seqs);     /* larger than a 64 KiB segment */
    fill(p, 2, 1, 100, seqs);
    char *big = tu_seg_path(*state, NAME, 0, 2);
    struct stat st;
    assert_int_equal(stat(big, &st), 0);
    assert_true(st.st_size >= 300000 && st.st_size % 4096 == 0);
    free(big);
    s = reopen(s, &p, *state, NULL);
    tu_recs r = {0};
    tu_read_all(s, &r);
    assert_int_equal(r.n, 3);
    assert_int_equal(r.v[1].dlen, 300000);
    assert_int_equal(atoi(r.v[1].data), 1);
    tu_recs_free(&r);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

/* Garbage after the tail of the active segment (a torn append) is cut
** quietly; the stream goes on. */
static void torn_tail_is_cut(void **state)
{
    static uint64_t seqs[100];
    seed(*state, 50, 200, seqs);
    sl_stream *s;
    sl_producer *p;
    /* the active segment is number 1 (50 x 248 bytes fit); write a half
    ** record after the last one */
    char *path = tu_seg_path(*state, NAME, 0, 1);
    uint64_t tail = SL_SEG_HDR + 50 * sl__rec_span(1, 200);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t rec[256] = {0};
    sl__rec_write(rec, 999999, 1, "k", 1, "torn", 4, NULL);
    rec[40] ^= 1;   /* the checksum no longer matches */
    assert_int_equal(pwrite(fd, rec, 48, (off_t)tail), 48);
    close(fd);
    tu_reports rep = {0};
    tu_opts o = {.reports = &rep};
    s = tu_open(*state, NAME, &o);
    assert_int_equal(rep.count, 0);   /* a torn tail is not damage */
    assert_int_equal(sl_producer_open(&p, s), 0);
    fill(p, 50, 50, 200, seqs);
    tu_recs r = {0};
    tu_read_all(s, &r);
    check_fill(&r, seqs, 0, 100, 200);
    assert_int_equal(r.corrupt, 0);
    tu_recs_free(&r);
    free(path);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

/* A flipped byte inside a sealed segment's record: the open succeeds, the
** read that meets it reports shard, segment and offset, and reading goes
** on past it. */
static void flipped_byte_in_sealed_segment(void **state)
{
    sl_stream *s = tu_create(*state, NAME, NULL);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    static uint64_t seqs[600];
    fill(p, 0, 600, 200, seqs);
    sl_producer_close(p);
    assert_true(tu_nsegs(*state, NAME, 0) >= 3);
    s = reopen(s, NULL, *state, NULL);
    char *path = tu_seg_path(*state, NAME, 0, 1);
    uint64_t off = SL_SEG_HDR + 5 * sl__rec_span(1, 200) + 60;   /* record 5's data */
    tu_flip_byte(path, (off_t)off);
    /* a fresh iterator meets the damage */
    sl_iter *it;
    sl_record recs[1000];
    sl_read_result res;
    assert_int_equal(sl_iter_open(&it, s, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    assert_int_equal(sl_iter_read(it, recs, 1000, &res), 0);
    assert_int_equal(res.count, 5);           /* the good records before it */
    assert_int_equal(sl_iter_read(it, recs, 1000, &res), SL_ECORRUPT);
    const char *m = sl_errmsg(it);
    assert_non_null(strstr(m, SHARD0));
    assert_non_null(strstr(m, "segment 0000000000000001"));
    assert_non_null(strstr(m, "offset 1496"));   /* 256 + 5 * 248 */
    /* the damaged record's header is intact, so only that record is lost */
    tu_recs r = {0};
    tu_drain(it, &r);
    assert_int_equal(r.corrupt, 0);
    assert_int_equal(r.n, 594);
    assert_int_equal(atoi(r.v[0].data), 6);
    for (size_t i = 1; i < r.n; i++) assert_true(r.v[i].seq > r.v[i - 1].seq);
    for (size_t i = 0; i < r.n; i++) assert_int_equal(r.v[i].dlen, 200);
    tu_recs_free(&r);
    sl_iter_close(it);
    free(path);
    assert_int_equal(sl_stream_close(s), 0);
}

/* Every byte of a sealed segment's trailer, flipped, is noticed at open and
** reported; the records stay readable (rebuilt by a scan). */
static void damaged_trailer_and_index(void **state)
{
    static uint64_t seqs[600];
    seed(*state, 600, 200, seqs);
    sl_stream *s;
    char *path = tu_seg_path(*state, NAME, 0, 1);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    off_t trailer = st.st_size - 128;
    /* read-only opens leave the file as it is, so each flip is undone */
    for (off_t b = 0; b < 128; b += 7) {
        tu_flip_byte(path, trailer + b);
        tu_reports rep = {0};
        tu_opts o = {.reports = &rep, .flags = SL_OPEN_READONLY};
        s = tu_open(*state, NAME, &o);
        tu_recs r = {0};
        tu_read_all(s, &r);
        assert_int_equal(rep.count, 1);
        assert_non_null(strstr(rep.last, "trailer damaged"));
        check_fill(&r, seqs, 0, 600, 200);
        assert_int_equal(r.corrupt, 0);
        tu_recs_free(&r);
        assert_int_equal(sl_stream_close(s), 0);
        tu_flip_byte(path, trailer + b);           /* restore */
    }
    /* a writer repairs it: reported once, then never again */
    tu_flip_byte(path, trailer + 9);
    for (int round = 0; round < 2; round++) {
        tu_reports rep = {0};
        tu_opts o = {.reports = &rep};
        s = tu_open(*state, NAME, &o);
        tu_recs r = {0};
        tu_read_all(s, &r);
        assert_int_equal(rep.count, round == 0 ? 1 : 0);
        check_fill(&r, seqs, 0, 600, 200);
        tu_recs_free(&r);
        assert_int_equal(sl_stream_close(s), 0);
    }
    /* a flipped byte in the index: reported on first use; seeks and reads
    ** still give every record */
    off_t idx = trailer - 24 + 3;                  /* entry 0's sequence */
    tu_flip_byte(path, idx);
    tu_reports rep = {0};
    tu_opts o = {.reports = &rep};
    s = tu_open(*state, NAME, &o);
    if (rep.count) fprintf(stderr, "%s", rep.all);
    assert_int_equal(rep.count, 0);                /* lazily checked */
    for (int i = 0; i < 600; i += 37) {
        sl_iter *it;
        sl_record rr[1];
        sl_read_result res;
        assert_int_equal(sl_iter_open(&it, s, SHARD0, SL_ITER_AT_SEQUENCE_NUMBER, seqs[i]), 0);
        assert_int_equal(sl_iter_read(it, rr, 1, &res), 0);
        assert_int_equal(rr[0].sequence, seqs[i]);
        sl_iter_close(it);
    }
    assert_true(rep.count >= 1);
    assert_non_null(strstr(rep.all, "index checksum mismatch"));
    assert_int_equal(sl_stream_close(s), 0);
    free(path);
}

/* A damaged header makes the segment unusable: it is quarantined (renamed
** .corrupt) and reported, and the rest of the stream stays readable. */
static void bad_header_quarantined(void **state)
{
    static uint64_t seqs[601];
    seed(*state, 600, 200, seqs);
    sl_stream *s;
    sl_producer *p;
    char *path = tu_seg_path(*state, NAME, 0, 2);
    tu_flip_byte(path, 20);                          /* inside the ordinal */
    tu_reports rep = {0};
    tu_opts o = {.reports = &rep};
    s = tu_open(*state, NAME, &o);
    /* older segments are read when first used, not at open */
    assert_int_equal(rep.count, 0);
    tu_recs r = {0};
    tu_read_all(s, &r);
    assert_int_equal(rep.count, 1);
    assert_non_null(strstr(rep.last, "quarantined"));
    assert_int_equal(access(path, F_OK), -1);
    char *q = tu_path("%s.corrupt", path);
    assert_int_equal(access(q, F_OK), 0);
    size_t per = (65536 - 256) / 248;                /* about 263 per segment */
    assert_true(r.n < 600 && r.n >= 600 - per - 1);
    for (size_t i = 1; i < r.n; i++) assert_true(r.v[i].seq > r.v[i - 1].seq);
    tu_recs_free(&r);
    /* writes go on, in a new segment whose number was never used */
    assert_int_equal(sl_producer_open(&p, s), 0);
    fill(p, 600, 1, 200, seqs);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    free(q);
    free(path);
}

/* A segment with a newer format version is refused, never quarantined. */
static void future_version_refused(void **state)
{
    seed(*state, 10, 100, NULL);
    char *path = tu_seg_path(*state, NAME, 0, 1);
    int fd = open(path, O_RDWR);
    uint8_t h[128];
    assert_int_equal(pread(fd, h, 128, 0), 128);
    sl__st16(h + 4, 2);
    sl__st64(h + 56, sl__xxh3(h, 56));
    assert_int_equal(pwrite(fd, h, 128, 0), 128);
    close(fd);
    sl_stream *s2 = NULL;
    assert_int_equal(sl_stream_open(&s2, *state, NAME, NULL), SL_ECORRUPT);
    assert_null(s2);
    assert_non_null(strstr(sl_errmsg(NULL), "version 2"));
    assert_int_equal(access(path, F_OK), 0);         /* untouched */
    free(path);
}

/* Truncated files: a sealed one loses the records past the cut, reported;
** the active one is re-extended and appended to. No SIGBUS either way. */
static void truncated_segments(void **state)
{
    static uint64_t seqs[1000];
    seed(*state, 600, 200, seqs);
    sl_stream *s;
    sl_producer *p;
    int last = tu_nsegs(*state, NAME, 0);
    char *sealed = tu_seg_path(*state, NAME, 0, 1);
    char *active = tu_seg_path(*state, NAME, 0, (uint64_t)last);
    assert_int_equal(truncate(sealed, SL_SEG_HDR + 100 * 248 + 17), 0);   /* mid-record */
    assert_int_equal(truncate(active, 4096), 0);
    tu_reports rep = {0};
    tu_opts o = {.reports = &rep};
    s = tu_open(*state, NAME, &o);
    assert_int_equal(rep.count, 1);                  /* the active one, at open */
    tu_recs r = {0};
    tu_read_all(s, &r);
    assert_true(rep.count >= 2);                     /* the sealed one, when read
                                                        (its trailer went too) */
    assert_non_null(strstr(rep.all, "truncated"));
    assert_int_equal(r.corrupt, 0);
    assert_int_equal(atoi(r.v[99].data), 99);
    assert_true(atoi(r.v[100].data) > 200);          /* the cut lost a run */
    for (size_t i = 1; i < r.n; i++) assert_true(r.v[i].seq > r.v[i - 1].seq);
    size_t before = r.n;
    tu_recs_free(&r);
    struct stat st;
    assert_int_equal(stat(active, &st), 0);
    assert_int_equal(st.st_size, 65536);             /* re-extended */
    assert_int_equal(sl_producer_open(&p, s), 0);
    fill(p, 600, 300, 200, seqs);
    tu_read_all(s, &r);
    assert_int_equal(r.n, before + 300);
    tu_recs_free(&r);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    free(sealed);
    free(active);
}

/* A read-only open (no writer alive) of an active segment cut short after
** its records but before its index: the header's recovery hint names an
** index entry past the end of the file, which must not be read (it lies
** past the mapping; found by fuzz/fuzz_segment.c). */
static void truncated_before_hinted_index_entry(void **state)
{
    static uint64_t seqs[40];
    seed(*state, 40, 200, seqs);                     /* 3 index entries */
    char *active = tu_seg_path(*state, NAME, 0, 1);
    assert_int_equal(truncate(active, 16384), 0);    /* past the tail */
    sl__os.mmap = tu_mmap_guarded;
    tu_reports rep = {0};
    tu_opts o = {.reports = &rep, .flags = SL_OPEN_READONLY};
    sl_stream *s = tu_open(*state, NAME, &o);
    tu_recs r = {0};
    tu_read_all(s, &r);
    check_fill(&r, seqs, 0, 40, 200);
    assert_non_null(strstr(rep.all, "truncated"));
    tu_recs_free(&r);
    assert_int_equal(sl_stream_close(s), 0);
    sl__os_reset();
    free(active);
}

/* A read-only open of a big active segment cut short inside its index
** (the index grows down from the trailer over more than a page): the
** entries past the cut -- entry 0 first, the highest -- must not be read,
** by reads or by seeks (they lie past the mapping; found by
** fuzz/fuzz_segment.c). */
static void truncated_inside_index(void **state)
{
    static uint64_t seqs[3000];
    tu_opts c = {.segment_bytes = 4u << 20};
    sl_stream *w = tu_create(*state, NAME, &c);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, w), 0);
    fill(p, 0, 3000, 200, seqs);                     /* ~180 index entries */
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(w), 0);
    assert_int_equal(tu_nsegs(*state, NAME, 0), 1);
    char *active = tu_seg_path(*state, NAME, 0, 1);
    assert_int_equal(truncate(active, (4u << 20) - 4096), 0);   /* the index's last page */
    sl__os.mmap = tu_mmap_guarded;
    tu_opts o = {.flags = SL_OPEN_READONLY};
    sl_stream *s = tu_open(*state, NAME, &o);
    tu_recs r = {0};
    tu_read_all(s, &r);
    check_fill(&r, seqs, 0, 3000, 200);
    tu_recs_free(&r);
    for (int i = 0; i < 3000; i += 777) {
        sl_iter *it;
        assert_int_equal(sl_iter_open(&it, s, SHARD0, SL_ITER_AT_SEQUENCE_NUMBER, seqs[i]), 0);
        sl_record rec;
        sl_read_result res;
        assert_int_equal(sl_iter_read(it, &rec, 1, &res), 0);
        assert_int_equal(res.count, 1);
        assert_int_equal(rec.sequence, seqs[i]);
        sl_iter_close(it);
    }
    assert_int_equal(sl_stream_close(s), 0);
    sl__os_reset();
    free(active);
}

/* Sequence numbers rise along a shard's segments: seeks binary-search them
** and the writer continues from the newest.  An older segment whose numbers
** reach into the next one's (damaged or forged, its checksums valid) is set
** aside -- skipped by a reader, quarantined by the writer -- and seeks and
** new puts work.  (Found by fuzz/fuzz_segment.c: the put after recovery
** could not be found, SL_EINVAL.) */
static void overlapping_older_segment_set_aside(void **state)
{
    const char *root = *state;
    static uint64_t seqs[40];
    seed(root, 40, 200, seqs);                       /* segment 1, active */
    /* segment 2 by hand: one record numbered inside segment 1's range */
    tu_forge_segment(root, NAME, 0, 2, seqs[20], (int64_t)time(NULL) * 1000, "forged");
    char *seg1 = tu_seg_path(root, NAME, 0, 1);
    for (int writer = 0; writer < 2; writer++) {
        tu_reports rep = {0};
        tu_opts o = {.reports = &rep, .flags = writer ? 0 : SL_OPEN_READONLY};
        sl_stream *s = tu_open(root, NAME, &o);
        tu_recs r = {0};
        tu_read_all(s, &r);
        if (r.n != 1) fail_msg("writer %d: %zu records; reports: %s", writer, r.n, rep.all);
        assert_int_equal(r.v[0].seq, seqs[20]);
        assert_memory_equal(r.v[0].data, "forged", 6);
        tu_recs_free(&r);
        assert_non_null(strstr(rep.all, "reach into the next segment's"));
        assert_non_null(strstr(rep.all, writer ? "quarantined" : "skipped"));
        assert_int_equal(access(seg1, F_OK), writer ? -1 : 0);
        assert_true(tu_first_seq(s, SHARD0, SL_ITER_AT_SEQUENCE_NUMBER, seqs[20]) == seqs[20]);
        if (writer) {
            sl_producer *p;
            assert_int_equal(sl_producer_open(&p, s), 0);
            uint64_t seq = tu_put(p, "k", 1);
            assert_true(seq > seqs[39]);
            assert_true(tu_first_seq(s, SHARD0, SL_ITER_AT_SEQUENCE_NUMBER, seq) == seq);
            sl_producer_close(p);
        }
        assert_int_equal(sl_stream_close(s), 0);
    }
    free(seg1);
}

/* An empty sealed segment carries keys (the segment before it's, or those
** of records compaction removed).  Keys that reach past the next segment's
** records (forged: its checksums hold) must not hide them from a seek: the
** record just put is found.  (Found by fuzz/fuzz_cold.c: an empty cold
** segment with keys 2^61, then SL_EINVAL for the put's own number.) */
static void empty_segment_keys_do_not_hide_records(void **state)
{
    const char *root = *state;
    sl_stream *s = tu_create(root, NAME, NULL);
    uint64_t id = s->man.stream_id;
    assert_int_equal(sl_stream_close(s), 0);
    int64_t now = (int64_t)time(NULL) * 1000;        /* (the stream's real clock) */
    tu_forge_segment(root, NAME, id, 1, (uint64_t)1 << 61, now, NULL);
    s = tu_open(root, NAME, NULL);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    uint64_t seq = tu_put(p, "k", 0);
    sl_producer_close(p);
    assert_true(seq < (uint64_t)1 << 61);
    assert_true(tu_first_seq(s, SHARD0, SL_ITER_AT_SEQUENCE_NUMBER, seq) == seq);
    assert_true(tu_first_seq(s, SHARD0, SL_ITER_TRIM_HORIZON, 0) == seq);
    assert_int_equal(sl_stream_close(s), 0);
}

/* Damage in the middle of the active segment (not at its tail) is not
** mistaken for a torn tail: the records after it are kept, the segment is
** sealed, and writes continue in a new one. */
static void damage_inside_active_segment(void **state)
{
    for (int rebooted = 0; rebooted < 2; rebooted++) {
        char *root = tu_path("%s/%d", (char *)*state, rebooted);
        sl_stream *s = tu_create(root, NAME, NULL);
        sl_producer *p;
        assert_int_equal(sl_producer_open(&p, s), 0);
        static uint64_t seqs[300];
        fill(p, 0, 200, 200, seqs);                   /* one segment */
        sl_producer_close(p);
        assert_int_equal(sl_stream_close(s), 0);
        assert_int_equal(tu_nsegs(root, NAME, 0), 1);
        char *path = tu_seg_path(root, NAME, 0, 1);
        tu_flip_byte(path, SL_SEG_HDR + 3 * 248 + 50);
        if (rebooted) {
            /* as after a reboot: the writer's soft hint no longer counts */
            int fd = open(path, O_RDWR);
            uint64_t zero = 0;
            assert_int_equal(pwrite(fd, &zero, 8, SL_H_BOOT), 8);
            close(fd);
        }
        tu_reports rep = {0};
        tu_opts o = {.reports = &rep};
        s = tu_open(root, NAME, &o);
        if (rebooted) {
            /* the full scan finds the damage, keeps what follows it, seals
            ** the segment; writing goes on in a new one */
            assert_int_equal(rep.count, 1);
            assert_non_null(strstr(rep.last, "damaged records at offset 1000"));  /* 256+3*248 */
        } else {
            /* recovery checks only what follows the hint; the reader finds
            ** the damage below it */
            assert_int_equal(rep.count, 0);
        }
        assert_int_equal(sl_producer_open(&p, s), 0);
        fill(p, 200, 10, 200, seqs);
        assert_int_equal(tu_nsegs(root, NAME, 0), rebooted ? 2 : 1);
        tu_recs r = {0};
        tu_read_all(s, &r);
        assert_int_equal(r.corrupt, 1);
        assert_int_equal(r.n, 209);                   /* only record 3 lost */
        assert_int_equal(atoi(r.v[3].data), 4);
        assert_int_equal(atoi(r.v[r.n - 1].data), 209);
        assert_non_null(strstr(rep.last, "offset 1000"));
        tu_recs_free(&r);
        sl_producer_close(p);
        assert_int_equal(sl_stream_close(s), 0);
        free(path);
        free(root);
    }
}

static int fallocate_enospc(int fd, int mode, off_t off, off_t len)
{
    (void)fd;
    (void)mode;
    (void)off;
    (void)len;
    errno = ENOSPC;
    return -1;
}

static void full_disk_fault_hook(void **state)
{
    sl_stream *s = tu_create(*state, NAME, NULL);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    static uint64_t seqs[400];
    fill(p, 0, 250, 200, seqs);                       /* almost one segment */
    sl__os.fallocate = fallocate_enospc;
    char d[200];
    memset(d, 'z', sizeof d);
    int rc = 0, i;
    for (i = 0; i < 100 && rc == 0; i++) rc = sl_put(p, "k", d, sizeof d, NULL);
    assert_int_equal(rc, SL_ENOSPC);
    assert_non_null(strstr(sl_errmsg(p), "preallocating"));
    assert_non_null(strstr(sl_errmsg(p), "No space"));
    char *dir = tu_path("%s/%s/" SHARD0, (char *)*state, NAME);
    assert_int_equal(tu_count_files(dir, ".tmp"), 0);       /* nothing half-made */
    assert_int_equal(tu_count_files(dir, ".seg"), 1);
    assert_int_equal(sl_put(p, "k", d, sizeof d, NULL), SL_ENOSPC);   /* still full */
    sl__os_reset();                                          /* space is back */
    assert_int_equal(sl_put(p, "k", d, sizeof d, NULL), 0);
    tu_recs r = {0};
    tu_read_all(s, &r);
    assert_int_equal(r.n, 250 + (size_t)(i - 1) + 1);
    for (int k = 0; k < 250; k++) assert_int_equal(atoi(r.v[k].data), k);
    tu_recs_free(&r);
    free(dir);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

/* A batch that runs out of disk in the middle: the entries that fit are
** committed and reported so; the rest fail with SL_ENOSPC. */
static void full_disk_mid_batch(void **state)
{
    sl_stream *s = tu_create(*state, NAME, NULL);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    fill(p, 0, 200, 200, NULL);                       /* most of a segment */
    sl__os.fallocate = fallocate_enospc;
    enum { N = 200 };
    sl_put_entry e[N];
    sl_put_result r[N];
    static char d[N][200];
    for (int i = 0; i < N; i++) {
        snprintf(d[i], sizeof d[i], "%08d|", 200 + i);
        e[i] = (sl_put_entry){"k", d[i], sizeof d[i], NULL};
    }
    size_t failed = 0;
    assert_int_equal(sl_producer_put_batch(p, e, N, r, &failed), 0);
    assert_true(failed > 0 && failed < N);
    size_t ok = N - failed;
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(r[i].error, i < ok ? 0 : SL_ENOSPC);
        if (i >= ok) assert_non_null(strstr(r[i].error_message, "preallocating"));
    }
    sl__os_reset();
    tu_recs all = {0};
    tu_read_all(s, &all);
    assert_int_equal(all.n, 200 + ok);
    assert_int_equal(atoi(all.v[all.n - 1].data), 200 + (int)ok - 1);
    tu_recs_free(&all);
    /* space is back: writing goes on in a new segment */
    fill(p, 1000, 1, 200, NULL);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

/* A real full disk: a 1 MiB tmpfs.  Needs root (mount); skipped, and says
** so, otherwise.  The fault-hook test above covers the same path without. */
static void full_disk_real_tmpfs(void **state)
{
    if (geteuid() != 0) {
        fprintf(stderr, "full_disk_real_tmpfs: skipped (mounting a tmpfs needs root)\n");
        skip();
    }
    char *mnt = tu_path("%s/mnt", (char *)*state);
    assert_int_equal(mkdir(mnt, 0700), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") != 0) {
        fprintf(stderr, "full_disk_real_tmpfs: skipped (mount failed: %s; a container "
                        "without CAP_SYS_ADMIN?)\n", strerror(errno));
        free(mnt);
        skip();
    }
    tu_opts o = {.durability = SL_DURABILITY_ALWAYS};
    sl_stream *s = tu_create(mnt, NAME, &o);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    char d[1000];
    memset(d, 'f', sizeof d);
    int rc = 0, n = 0;
    while (rc == 0 && n < 100000) {
        snprintf(d, 16, "%08d|", n);
        rc = sl_put(p, "k", d, sizeof d, NULL);
        if (rc == 0) n++;
    }
    assert_int_equal(rc, SL_ENOSPC);
    assert_true(n > 100);
    /* every acknowledged record is intact and readable */
    tu_recs r = {0};
    tu_read_all(s, &r);
    assert_int_equal(r.n, (size_t)n);
    for (int i = 0; i < n; i++) assert_int_equal(atoi(r.v[i].data), i);
    tu_recs_free(&r);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    /* and it reopens cleanly on the full disk */
    s = tu_open(mnt, NAME, NULL);
    tu_read_all(s, &r);
    assert_int_equal(r.n, (size_t)n);
    tu_recs_free(&r);
    assert_int_equal(sl_stream_close(s), 0);
    assert_int_equal(umount(mnt), 0);
    free(mnt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(roll_over_and_reopen, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(oversize_record_gets_its_own_segment, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(torn_tail_is_cut, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(flipped_byte_in_sealed_segment, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(damaged_trailer_and_index, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(bad_header_quarantined, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(future_version_refused, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(truncated_segments, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(truncated_before_hinted_index_entry, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(truncated_inside_index, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(overlapping_older_segment_set_aside, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(empty_segment_keys_do_not_hide_records, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(damage_inside_active_segment, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(full_disk_fault_hook, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(full_disk_mid_batch, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(full_disk_real_tmpfs, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests_name("segment", tests, NULL, NULL);
}
