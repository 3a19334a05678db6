/*
** test_verify.c -- sl_stream_verify: a clean stream (sealed, active and cold
** segments, leftovers in the directory) verifies with exact counts; then
** one kind of damage at a time, each found once, at its segment and offset:
** a record, an index entry, a trailer, a header (skipped by a reader,
** quarantined by a writer), a cold frame, a cold trailer; an active
** segment's tail (a torn append and a power cut are not damage, committed
** records that are gone are); an encrypted record whose ciphertext and
** checksums were rewritten (found by its tag only, and not at all without
** the key); the callback stopping the walk; a follower and the writer
** itself verifying while the writer appends.
*/
#include "testutil.h"

#include <pthread.h>
#include <sys/mman.h>
#include <zstd.h>

#define SHARD0 "shardId-000000000000"
#define T0 1700000000000LL
#define HOUR 3600000LL
#define KEY_ID "arn:aws:kms:eu-west-1:111122223333:key/verify"

/* ---- the callback ------------------------------------------------------------ */

typedef struct vlog {
    int segs;                        /* calls with damage NULL */
    int ndmg;                        /* calls with a message */
    char msg[8][1024];
    int stop_segs, stop_dmg;         /* return 1 at this call (0: never) */
    bool inconsistent;               /* stats passed disagree with the calls */
} vlog;

static int vlog_fn(void *ctx, const sl_verify_stats *st, const char *damage)
{
    vlog *l = ctx;
    if (damage) {
        if (l->ndmg < 8) snprintf(l->msg[l->ndmg], sizeof l->msg[0], "%s", damage);
        l->ndmg++;
        if (st->damaged != (uint64_t)l->ndmg) l->inconsistent = true;
        return l->stop_dmg && l->ndmg >= l->stop_dmg;
    }
    l->segs++;
    if (st->segments != (uint64_t)l->segs || st->segments > st->segments_total)
        l->inconsistent = true;
    return l->stop_segs && l->segs >= l->stop_segs;
}

/* Verify s with a fresh log; checks what holds for every run. */
static int verify(sl_stream *s, vlog *l, sl_verify_stats *st)
{
    int ss = l->stop_segs, sd = l->stop_dmg;
    memset(l, 0, sizeof *l);
    l->stop_segs = ss;
    l->stop_dmg = sd;
    memset(st, 0xff, sizeof *st);
    int rc = sl_stream_verify(s, vlog_fn, l, st);
    assert_false(l->inconsistent);
    assert_int_equal(st->damaged, (uint64_t)l->ndmg);
    if (rc != 1) assert_int_equal(st->segments, (uint64_t)l->segs);
    for (int i = 0; i < l->ndmg && i < 8; i++) print_message("  damage: %s\n", l->msg[i]);
    return rc;
}

static void verify_clean(sl_stream *s, uint64_t segs, uint64_t recs)
{
    vlog l = {0};
    sl_verify_stats st;
    int rc = verify(s, &l, &st);
    if (rc) fprintf(stderr, "verify: %s\n", sl_errmsg(s));
    assert_int_equal(rc, 0);
    assert_int_equal(st.damaged, 0);
    assert_int_equal(st.segments_total, segs);
    assert_int_equal(st.segments, segs);
    assert_int_equal(st.records, recs);
}

/* Exactly one damage, whose message names the segment and offset (and
** holds `what`); returns the stats. */
static sl_verify_stats verify_one(sl_stream *s, uint64_t ordinal, uint64_t off, const char *what)
{
    vlog l = {0};
    sl_verify_stats st;
    assert_int_equal(verify(s, &l, &st), SL_ECORRUPT);
    assert_int_equal(st.damaged, 1);
    assert_int_equal(l.ndmg, 1);
    assert_int_equal(st.segments, st.segments_total);
    char want[128];
    snprintf(want, sizeof want, "%s segment %016" PRIx64 " (", SHARD0, ordinal);
    if (!strstr(l.msg[0], want)) fail_msg("'%s' not in '%s'", want, l.msg[0]);
    snprintf(want, sizeof want, ".seg) offset %" PRIu64 ": ", off);
    if (!strstr(l.msg[0], want))
        fail_msg("'%s' not in '%s'", want, l.msg[0]);
    if (!strstr(l.msg[0], what)) fail_msg("'%s' not in '%s'", what, l.msg[0]);
    /* the handle's message: the summary, then the first damage */
    const char *em = sl_errmsg(s);
    if (!strstr(em, "1 damaged place in 1 segment; first: ")) fail_msg("errmsg '%s'", em);
    assert_non_null(strstr(em, SHARD0));
    return st;
}

/* ---- streams and files --------------------------------------------------------- */

/* Put records from..to-1: key "k<i % 37>", data "record-<i>|" padded to a
** size that varies (100..300 bytes). */
static void put_range(sl_stream *s, int from, int to)
{
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    char key[16], data[400];
    for (int i = from; i < to; i++) {
        snprintf(key, sizeof key, "k%d", i % 37);
        int n = snprintf(data, sizeof data, "record-%d|", i);
        size_t len = 100 + (size_t)(i * 13) % 200;
        memset(data + n, 'a' + i % 26, len - (size_t)n);
        int rc = sl_put(p, key, data, len, NULL);
        if (rc) fprintf(stderr, "put: %s\n", sl_errmsg(p));
        assert_int_equal(rc, 0);
    }
    sl_producer_close(p);
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

/* Ordinals of shard `shard`'s *.seg files, sorted; returns how many. */
static int seg_ords(const char *root, const char *name, uint32_t shard, uint64_t *ords, int max)
{
    char *d = tu_path("%s/%s/shardId-%012u", root, name, shard);
    DIR *dir = opendir(d);
    assert_non_null(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l != 20 || strcmp(e->d_name + 16, ".seg")) continue;
        assert_true(n < max);
        ords[n++] = strtoull(e->d_name, NULL, 16);
    }
    closedir(dir);
    free(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && ords[j - 1] > ords[j]; j--) {
            uint64_t t = ords[j];
            ords[j] = ords[j - 1];
            ords[j - 1] = t;
        }
    return n;
}

/* Bytes of every *.seg file of the stream. */
static uint64_t seg_bytes(const char *root, const char *name, uint32_t shards)
{
    uint64_t sum = 0, ords[512];
    for (uint32_t sh = 0; sh < shards; sh++) {
        int n = seg_ords(root, name, sh, ords, 512);
        for (int i = 0; i < n; i++) {
            char *p = tu_seg_path(root, name, sh, ords[i]);
            sum += file_size(p);
            free(p);
        }
    }
    return sum;
}

typedef struct fmap {
    int fd;
    uint8_t *b;
    size_t len;
} fmap;

static fmap map_file(const char *path, bool rw)
{
    fmap m;
    m.fd = open(path, rw ? O_RDWR : O_RDONLY);
    assert_true(m.fd >= 0);
    m.len = (size_t)file_size(path);
    m.b = mmap(NULL, m.len, PROT_READ | (rw ? PROT_WRITE : 0), MAP_SHARED, m.fd, 0);
    assert_true(m.b != MAP_FAILED);
    return m;
}

static void unmap_file(fmap *m)
{
    munmap(m->b, m->len);
    close(m->fd);
}

/* A hot segment's records: their offsets (up to max), their end. */
static int rec_offsets(const char *path, uint64_t *offs, int max, uint64_t *end_out)
{
    fmap m = map_file(path, false);
    assert_int_equal(sl__ld32(m.b + 12), 0);                       /* hot */
    const uint8_t *t = m.b + m.len - SL_SEG_TRAILER;
    uint64_t end = sl__ld32(t) == 0x54464C53u ? sl__ld64(t + 48) : sl__ld64(m.b + SL_H_COMMIT_TAIL);
    int n = 0;
    for (uint64_t off = SL_SEG_HDR; off < end;) {
        sl_recview v;
        assert_int_equal(sl__rec_parse(m.b + off, end - off, true, &v), SL_REC_OK);
        if (n < max) offs[n] = off;
        n++;
        off += v.span;
    }
    if (end_out) *end_out = end;
    unmap_file(&m);
    return n;
}

/* Recompute a sealed hot segment's block checksums, index checksum and
** trailer checksum (after the test changed bytes on purpose). */
static void reseal(const char *path)
{
    fmap m = map_file(path, true);
    uint8_t *t = m.b + m.len - SL_SEG_TRAILER;
    assert_int_equal(sl__ld32(t), 0x54464C53u);
    uint32_t n = sl__ld32(t + 4);
    uint64_t end = sl__ld64(t + 48);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *e = t - SL_IDX_ENTRY * (i + 1);
        uint64_t from = sl__ld64(e + 16);
        uint64_t to = i + 1 < n ? sl__ld64(e - SL_IDX_ENTRY + 16) : end;
        if (sl__ld64(e + 24)) sl__st64(e + 24, sl__xxh3(m.b + from, (size_t)(to - from)));
    }
    sl__st64(t + 64, sl__xxh3(t - SL_IDX_ENTRY * n, (size_t)n * SL_IDX_ENTRY));
    sl__st64(t + 120, sl__xxh3(t, 120));
    unmap_file(&m);
}

static sl_stream *open_ro(const char *root, const char *name, tu_reports *rep)
{
    tu_opts o = {.flags = SL_OPEN_READONLY, .reports = rep};
    return tu_open(root, name, &o);
}

/* A 1-shard stream of n records in 64 KiB segments, closed (the last
** segment stays active).  Returns the number of segment files. */
static int make_stream(const char *root, const char *name, int n)
{
    tu_opts o = {0};
    sl_stream *s = tu_create(root, name, &o);
    put_range(s, 0, n);
    assert_int_equal(sl_stream_close(s), 0);
    int segs = tu_nsegs(root, name, 0);
    assert_true(segs >= 4);
    return segs;
}

/* ---- a clean stream ------------------------------------------------------------ */

/* Two shards; each with cold segments, sealed hot ones and an active one.
** The writer and a follower count exactly what was written; leftovers in a
** shard directory are not segments. */
static void clean_stream_exact_stats(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    tu_opts o = {.shards = 2, .clock = sl_vclock_clock(vc)};
    sl_stream *s = tu_create(root, "clean", &o);
    enum { N1 = 1500, N2 = 2500 };
    put_range(s, 0, N1);
    assert_int_equal(sl_stream_set_cold_after(s, 1), 0);
    sl_vclock_advance(vc, 2 * HOUR);
    sl_maint_stats ms;
    assert_int_equal(sl_stream_maintain(s, -1, NULL, NULL, &ms), 0);
    assert_true(ms.segments_cold >= 2);
    put_range(s, N1, N1 + N2);
    /* what is on disk: per shard, cold, sealed hot, and active segments */
    uint64_t ords[256];
    int total = 0;
    for (uint32_t sh = 0; sh < 2; sh++) {
        int n = seg_ords(root, "clean", sh, ords, 256), cold = 0, sealed = 0, active = 0;
        for (int i = 0; i < n; i++) {
            char *p = tu_seg_path(root, "clean", sh, ords[i]);
            fmap m = map_file(p, false);
            if (sl__ld32(m.b + 12) == 1) cold++;
            else if (sl__ld32(m.b + SL_H_STATE) == SL_STATE_SEALED) sealed++;
            else active++;
            unmap_file(&m);
            free(p);
        }
        assert_true(cold >= 1);
        assert_true(sealed >= 2);
        assert_int_equal(active, 1);
        total += n;
    }
    uint64_t bytes = seg_bytes(root, "clean", 2);
    vlog l = {0};
    sl_verify_stats st;
    assert_int_equal(verify(s, &l, &st), 0);
    assert_int_equal(st.segments_total, (uint64_t)total);
    assert_int_equal(st.segments, (uint64_t)total);
    assert_int_equal(l.segs, total);
    assert_int_equal(st.records, N1 + N2);
    assert_int_equal(st.bytes, bytes);
    assert_int_equal(st.damaged, 0);
    assert_int_equal(st.encrypted_unchecked, 0);
    assert_int_equal(l.ndmg, 0);
    /* fn and out are optional */
    assert_int_equal(sl_stream_verify(s, NULL, NULL, NULL), 0);
    assert_int_equal(sl_stream_verify(NULL, NULL, NULL, &st), SL_EINVAL);
    assert_int_equal(st.segments, 0);
    assert_int_equal(sl_stream_close(s), 0);
    /* leftovers of crashes and quarantines: not segments, not damage */
    const char *junk[] = {"00000000000000ff.seg.corrupt", "0000000000000100.seg.tmp",
                          "0000000000000101.seg.rw", "0000000000000102.seg.spare", "notes.txt"};
    for (size_t i = 0; i < sizeof junk / sizeof *junk; i++) {
        char *p = tu_path("%s/clean/%s/%s", root, SHARD0, junk[i]);
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fputs("not a segment", f);
        fclose(f);
        free(p);
    }
    tu_reports rep = {0};
    s = open_ro(root, "clean", &rep);
    l = (vlog){0};
    assert_int_equal(verify(s, &l, &st), 0);
    assert_int_equal(st.segments, (uint64_t)total);
    assert_int_equal(st.records, N1 + N2);
    assert_int_equal(st.bytes, bytes);
    assert_int_equal(rep.count, 0);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* ---- damage in hot segments --------------------------------------------------- */

/* Each flip is found once, named by segment and offset, then undone (the
** flip is an XOR) and the stream verifies clean again. */
static void damaged_record_index_and_trailer(void **state)
{
    const char *root = *state;
    enum { N = 2000 };
    int segs = make_stream(root, "hot", N);
    char *p2 = tu_seg_path(root, "hot", 0, 2);
    uint64_t offs[1024], end;
    int n2 = rec_offsets(p2, offs, 1024, &end);
    assert_true(n2 > 20);
    uint64_t fb = file_size(p2);
    tu_reports rep = {0};

    /* a byte of a record's data (its header intact: only it is lost) */
    uint64_t roff = offs[10];
    tu_flip_byte(p2, (off_t)(roff + 40));
    sl_stream *s = open_ro(root, "hot", &rep);
    sl_verify_stats st = verify_one(s, 2, roff, "record checksum mismatch");
    assert_int_equal(st.records, N - 1);
    assert_int_equal(st.segments, (uint64_t)segs);
    char want[64];
    snprintf(want, sizeof want, "records resume at offset %" PRIu64, offs[11]);
    assert_non_null(strstr(sl_errmsg(s), want));
    assert_int_equal(sl_stream_close(s), 0);
    tu_flip_byte(p2, (off_t)(roff + 40));

    /* its header: the record's length is lost, valid records resume at the
    ** next index entry */
    tu_flip_byte(p2, (off_t)(roff + 1));
    s = open_ro(root, "hot", &rep);
    st = verify_one(s, 2, roff, "inconsistent record header");
    assert_true(st.records < N - 1);
    assert_int_equal(sl_stream_close(s), 0);
    tu_flip_byte(p2, (off_t)(roff + 1));

    /* index entry 1's sequence number */
    uint64_t e1 = fb - SL_SEG_TRAILER - 2 * SL_IDX_ENTRY;
    tu_flip_byte(p2, (off_t)e1);
    s = open_ro(root, "hot", &rep);
    st = verify_one(s, 2, e1, "index entry 1: says sequence number");
    assert_int_equal(st.records, N);
    assert_int_equal(sl_stream_close(s), 0);
    tu_flip_byte(p2, (off_t)e1);

    /* index entry 2's offset: unaligned, or pointing elsewhere */
    uint64_t e2 = fb - SL_SEG_TRAILER - 3 * SL_IDX_ENTRY;
    tu_flip_byte(p2, (off_t)(e2 + 16));
    s = open_ro(root, "hot", &rep);
    st = verify_one(s, 2, e2, "is not a multiple of 8");
    assert_int_equal(st.records, N);
    assert_int_equal(sl_stream_close(s), 0);
    tu_flip_byte(p2, (off_t)(e2 + 16));
    for (int b = 17; b <= 18; b++) {
        tu_flip_byte(p2, (off_t)(e2 + b));
        s = open_ro(root, "hot", &rep);
        st = verify_one(s, 2, e2, "index entry 2: offset");
        assert_int_equal(st.records, N);
        assert_int_equal(sl_stream_close(s), 0);
        tu_flip_byte(p2, (off_t)(e2 + b));
    }

    /* index entry 2 moved back into the record before its own */
    fmap m = map_file(p2, true);
    uint64_t o2 = sl__ld64(m.b + e2 + 16);
    int i2 = 0;
    while (offs[i2] != o2) i2++;
    sl__st64(m.b + e2 + 16, offs[i2 - 1] + 8);
    unmap_file(&m);
    s = open_ro(root, "hot", &rep);
    snprintf(want, sizeof want, "starts no record (the record at %" PRIu64 " spans it)",
             offs[i2 - 1]);
    st = verify_one(s, 2, e2, want);
    assert_int_equal(st.records, N);
    assert_int_equal(sl_stream_close(s), 0);
    m = map_file(p2, true);
    sl__st64(m.b + e2 + 16, o2);
    unmap_file(&m);

    /* index entry 0's block checksum */
    uint64_t e0 = fb - SL_SEG_TRAILER - SL_IDX_ENTRY;
    tu_flip_byte(p2, (off_t)(e0 + 24));
    s = open_ro(root, "hot", &rep);
    st = verify_one(s, 2, SL_SEG_HDR, "fail the block checksum of index entry 0");
    assert_int_equal(st.records, N);
    assert_int_equal(sl_stream_close(s), 0);
    tu_flip_byte(p2, (off_t)(e0 + 24));

    /* entry 1's block checksum cleared ("none"): only the index checksum
    ** in the trailer can tell */
    m = map_file(p2, true);
    uint64_t sum1 = sl__ld64(m.b + e1 + 24);
    assert_true(sum1 != 0);
    sl__st64(m.b + e1 + 24, 0);
    uint32_t nidx = sl__ld32(m.b + fb - SL_SEG_TRAILER + 4);
    unmap_file(&m);
    s = open_ro(root, "hot", &rep);
    st = verify_one(s, 2, fb - SL_SEG_TRAILER - (uint64_t)SL_IDX_ENTRY * nidx,
                    "index checksum mismatch");
    assert_int_equal(st.records, N);
    assert_int_equal(sl_stream_close(s), 0);
    m = map_file(p2, true);
    sl__st64(m.b + e1 + 24, sum1);
    unmap_file(&m);

    /* records that verify but are out of order (their checksums, and the
    ** segment's, recomputed): an arrival time that falls, a sequence number
    ** that does not rise */
    for (int which = 0; which < 2; which++) {
        uint64_t ro = offs[12];
        m = map_file(p2, true);
        uint8_t save[8];
        memcpy(save, m.b + ro + (which ? 8 : 16), 8);
        if (which) sl__st64(m.b + ro + 8, sl__ld64(m.b + offs[11] + 8));
        else sl__st64(m.b + ro + 16, sl__ld64(m.b + offs[11] + 16) - 1);
        uint32_t rb = sl__ld32(m.b + ro);
        sl__st64(m.b + ro + rb - 8, sl__xxh3(m.b + ro, rb - 8));
        unmap_file(&m);
        reseal(p2);
        s = open_ro(root, "hot", &rep);
        st = verify_one(s, 2, ro, which ? "is not above the previous record's"
                                         : "is before the previous record's");
        assert_true(st.records <= N - 1);
        if (!which) assert_int_equal(st.records, N - 1);
        assert_int_equal(sl_stream_close(s), 0);
        m = map_file(p2, true);
        memcpy(m.b + ro + (which ? 8 : 16), save, 8);
        sl__st64(m.b + ro + rb - 8, sl__xxh3(m.b + ro, rb - 8));
        unmap_file(&m);
        reseal(p2);
    }

    /* the trailer's record count */
    uint64_t t = fb - SL_SEG_TRAILER;
    tu_flip_byte(p2, (off_t)(t + 8));
    s = open_ro(root, "hot", &rep);
    st = verify_one(s, 2, t, "trailer: checksum mismatch");
    assert_int_equal(st.records, N);
    assert_int_equal(sl_stream_close(s), 0);
    /* a writer handle reports it too, and leaves it as it is (loading the
    ** segment would rebuild the trailer) */
    tu_opts wo = {0};
    s = tu_open(root, "hot", &wo);
    st = verify_one(s, 2, t, "trailer: checksum mismatch");
    assert_int_equal(st.records, N);
    assert_int_equal(sl_stream_close(s), 0);
    m = map_file(p2, false);
    assert_true(sl__ld64(m.b + t + 120) != sl__xxh3(m.b + t, 120));
    unmap_file(&m);
    tu_flip_byte(p2, (off_t)(t + 8));

    /* a trailer whose checksum was recomputed over a wrong count */
    m = map_file(p2, true);
    uint64_t count = sl__ld64(m.b + t + 8);
    sl__st64(m.b + t + 8, count + 1);
    sl__st64(m.b + t + 120, sl__xxh3(m.b + t, 120));
    unmap_file(&m);
    s = open_ro(root, "hot", &rep);
    st = verify_one(s, 2, t + 8, "trailer disagrees with the records: record_count");
    assert_int_equal(sl_stream_close(s), 0);
    m = map_file(p2, true);
    sl__st64(m.b + t + 8, count);
    sl__st64(m.b + t + 120, sl__xxh3(m.b + t, 120));
    unmap_file(&m);

    /* undone: clean, through the writer too */
    s = open_ro(root, "hot", NULL);
    verify_clean(s, (uint64_t)segs, N);
    assert_int_equal(sl_stream_close(s), 0);
    tu_opts o = {0};
    s = tu_open(root, "hot", &o);
    verify_clean(s, (uint64_t)segs, N);
    assert_int_equal(sl_stream_close(s), 0);
    free(p2);
}

/* A damaged header: a reader skips the segment (verify still checks it
** from the file); a writer quarantines it when verify first loads it, and
** reports it under its new name; from then on it is a leftover. */
static void damaged_header(void **state)
{
    const char *root = *state;
    enum { N = 2000 };
    int segs = make_stream(root, "hdr", N);
    char *p3 = tu_seg_path(root, "hdr", 0, 3), *p2 = tu_seg_path(root, "hdr", 0, 2);
    uint64_t offs[1];
    int n3 = rec_offsets(p3, offs, 1, NULL);
    tu_reports rep = {0};
    /* flags a newer library would write, under a valid checksum: the library
    ** refuses the segment (a hard SL_ECORRUPT, never quarantined); verify
    ** reports it and goes on */
    fmap m = map_file(p2, true);
    sl__st32(m.b + 12, 0x4);
    sl__st64(m.b + 56, sl__xxh3(m.b, 56));
    unmap_file(&m);
    sl_stream *s = open_ro(root, "hdr", &rep);
    sl_verify_stats st = verify_one(s, 2, 12, "header: flags 0x4 (a hot segment has 0x0)");
    assert_non_null(strstr(sl_errmsg(s), "the library refuses this segment (SL_ECORRUPT)"));
    assert_null(strstr(sl_errmsg(s), "checksum"));
    assert_int_equal(st.records, N);
    assert_int_equal(sl_stream_close(s), 0);
    m = map_file(p2, true);
    sl__st32(m.b + 12, 0);
    sl__st64(m.b + 56, sl__xxh3(m.b, 56));
    unmap_file(&m);
    /* a damaged header */
    tu_flip_byte(p3, 40);                           /* the stream id */
    s = open_ro(root, "hdr", &rep);
    st = verify_one(s, 3, 40, "header: stream id");
    assert_non_null(strstr(sl_errmsg(s), "checksum mismatch"));
    assert_non_null(strstr(sl_errmsg(s), "the library skips this segment"));
    assert_int_equal(st.records, N);               /* its records are intact */
    assert_int_equal(st.segments, (uint64_t)segs);
    /* the reader skips it, and says so */
    tu_recs r = {0};
    tu_read_shard(s, SHARD0, &r);
    assert_int_equal(r.n, (size_t)(N - n3));
    tu_recs_free(&r);
    assert_true(rep.count >= 1);
    assert_int_equal(sl_stream_close(s), 0);
    /* the writer: verifying changes nothing (it checks the segments this
    ** handle has not loaded as files: loading one would quarantine it) */
    tu_opts o = {0};
    s = tu_open(root, "hdr", &o);
    for (int round = 0; round < 2; round++) {
        st = verify_one(s, 3, 40, "header: stream id");
        assert_int_equal(st.records, N);
        assert_int_equal(access(p3, F_OK), 0);
    }
    /* reading loads it: quarantined, reported; then it is a leftover */
    rep = (tu_reports){0};
    assert_int_equal(sl_stream_close(s), 0);
    o.reports = &rep;
    s = tu_open(root, "hdr", &o);
    tu_read_shard(s, SHARD0, &r);
    assert_int_equal(r.n, (size_t)(N - n3));
    tu_recs_free(&r);
    assert_int_equal(rep.count, 1);
    assert_non_null(strstr(rep.last, "quarantined as .corrupt"));
    assert_int_equal(access(p3, F_OK), -1);
    verify_clean(s, (uint64_t)segs - 1, N - (uint64_t)n3);
    assert_int_equal(sl_stream_close(s), 0);
    free(p3);
    free(p2);
}

/* ---- cold segments ---------------------------------------------------------- */

static void damaged_cold_segment(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    tu_opts o = {.clock = sl_vclock_clock(vc)};
    sl_stream *s = tu_create(root, "cold", &o);
    enum { N = 3000 };
    put_range(s, 0, N);
    assert_int_equal(sl_stream_set_cold_after(s, 1), 0);
    sl_vclock_advance(vc, 2 * HOUR);
    sl_maint_stats ms;
    assert_int_equal(sl_stream_maintain(s, -1, NULL, NULL, &ms), 0);
    assert_true(ms.segments_cold >= 3);
    assert_int_equal(sl_stream_close(s), 0);
    int segs = tu_nsegs(root, "cold", 0);
    char *p2 = tu_seg_path(root, "cold", 0, 2);
    fmap m = map_file(p2, false);
    assert_int_equal(sl__ld32(m.b + 12), 1);       /* cold */
    const uint8_t *t = m.b + m.len - SL_SEG_TRAILER;
    uint64_t tab = sl__ld64(t + 64), toff = m.len - SL_SEG_TRAILER;
    uint32_t nblk = sl__ld32(t + 4);
    uint64_t seg_count = sl__ld64(t + 8);          /* records of the segment */
    assert_true(nblk >= 1);
    /* block 0: where its frame is, how many records it holds */
    const uint8_t *e = m.b + tab;
    uint64_t foff = sl__ld64(e + 16);
    uint32_t raw_len = sl__ld32(e + 8), zlen = sl__ld32(e + 12);
    uint8_t *raw = malloc(raw_len);
    assert_non_null(raw);
    assert_int_equal(ZSTD_decompress(raw, raw_len, m.b + foff, zlen), raw_len);
    uint64_t nb0 = 0;
    for (uint64_t off = 0; off < raw_len; nb0++) {
        sl_recview v;
        assert_int_equal(sl__rec_parse(raw + off, raw_len - off, true, &v), SL_REC_OK);
        off += v.span;
    }
    free(raw);
    unmap_file(&m);
    tu_reports rep = {0};

    /* a byte inside the frame: that block is lost, nothing else */
    tu_flip_byte(p2, (off_t)(foff + zlen / 2));
    s = open_ro(root, "cold", &rep);
    sl_verify_stats st = verify_one(s, 2, foff, "block 0 (zstd frame of");
    assert_int_equal(st.records, N - nb0);
    assert_int_equal(st.segments, (uint64_t)segs);
    assert_int_equal(sl_stream_close(s), 0);
    tu_flip_byte(p2, (off_t)(foff + zlen / 2));

    /* the block table: walked frame by frame instead, every record found */
    tu_flip_byte(p2, (off_t)(tab + 30));
    s = open_ro(root, "cold", &rep);
    st = verify_one(s, 2, tab, "block table checksum mismatch");
    assert_int_equal(st.records, N);
    assert_int_equal(sl_stream_close(s), 0);
    tu_flip_byte(p2, (off_t)(tab + 30));

    /* the cold trailer: the same */
    tu_flip_byte(p2, (off_t)(toff + 8));
    s = open_ro(root, "cold", &rep);
    st = verify_one(s, 2, toff, "cold trailer: checksum mismatch");
    assert_int_equal(st.records, N);
    assert_int_equal(sl_stream_close(s), 0);
    tu_flip_byte(p2, (off_t)(toff + 8));

    s = open_ro(root, "cold", NULL);
    verify_clean(s, (uint64_t)segs, N);
    assert_int_equal(sl_stream_close(s), 0);
    s = tu_open(root, "cold", &o);
    verify_clean(s, (uint64_t)segs, N);
    assert_int_equal(sl_stream_close(s), 0);

    /* cut inside block 0's frame: the cut is the one damage (the frame it
    ** cuts is part of it) */
    uint64_t cut = foff + zlen / 2, size = file_size(p2);
    assert_int_equal(truncate(p2, (off_t)cut), 0);
    s = open_ro(root, "cold", &rep);
    char want[96];
    snprintf(want, sizeof want, "file truncated to %" PRIu64 " of %" PRIu64 " bytes: the cold",
             cut, size);
    st = verify_one(s, 2, cut, want);
    assert_int_equal(st.records, N - seg_count);   /* every frame is past the cut */
    assert_int_equal(sl_stream_close(s), 0);
    free(p2);
    sl_vclock_free(vc);
}

/* ---- the active segment's tail ------------------------------------------------ */

static void active_tail(void **state)
{
    const char *root = *state;
    enum { N = 2000 };
    int segs = make_stream(root, "tail", N);
    char *pa = tu_seg_path(root, "tail", 0, (uint64_t)segs);
    uint64_t offs[1024], tail;
    int na = rec_offsets(pa, offs, 1024, &tail);
    assert_true(na > 10 && na <= 1024);
    fmap m = map_file(pa, false);
    assert_int_equal(sl__ld32(m.b + SL_H_STATE), SL_STATE_ACTIVE);
    assert_int_equal(sl__ld64(m.b + SL_H_COMMIT_TAIL), tail);
    uint64_t fb = m.len;
    unmap_file(&m);
    sl_stream *s;

    /* a torn append after a crash: a record's header and stray bytes past
    ** the committed tail are not damage, nor are zeros */
    m = map_file(pa, true);
    memcpy(m.b + tail, m.b + offs[na - 1], 24);
    memset(m.b + tail + 24, 0x77, 100);
    unmap_file(&m);
    s = open_ro(root, "tail", NULL);
    verify_clean(s, (uint64_t)segs, N);
    assert_int_equal(sl_stream_close(s), 0);
    m = map_file(pa, true);
    memset(m.b + tail, 0, 124);
    unmap_file(&m);

    /* committed records that are zeros: damage (same boot: the page cache
    ** held them) */
    uint64_t from = offs[na - 2];
    uint8_t saved[4096];
    assert_true(tail - from <= sizeof saved);
    m = map_file(pa, true);
    memcpy(saved, m.b + from, (size_t)(tail - from));
    memset(m.b + from, 0, (size_t)(tail - from));
    unmap_file(&m);
    s = open_ro(root, "tail", NULL);
    sl_verify_stats st = verify_one(s, (uint64_t)segs, from, "zero bytes where a record should be");
    char want[96];
    snprintf(want, sizeof want, "end of the committed records at offset %" PRIu64, tail);
    assert_non_null(strstr(sl_errmsg(s), want));
    assert_int_equal(st.records, N - 2);
    assert_int_equal(sl_stream_close(s), 0);
    /* after a reboot the writer promised only what it synced (NONE: nothing):
    ** lost unsynced records are not damage */
    m = map_file(pa, true);
    uint64_t boot = sl__ld64(m.b + SL_H_BOOT);
    assert_int_equal(sl__ld64(m.b + SL_H_SYNCED_TAIL), 0);
    sl__st64(m.b + SL_H_BOOT, boot ^ 0x5a5a5a5a5a5aull);
    unmap_file(&m);
    s = open_ro(root, "tail", NULL);
    verify_clean(s, (uint64_t)segs, N - 2);
    assert_int_equal(sl_stream_close(s), 0);
    /* ... but a bad run that valid records follow still is */
    tu_flip_byte(pa, (off_t)(offs[3] + 45));
    s = open_ro(root, "tail", NULL);
    st = verify_one(s, (uint64_t)segs, offs[3], "record checksum mismatch");
    assert_int_equal(st.records, N - 3);
    assert_int_equal(sl_stream_close(s), 0);
    tu_flip_byte(pa, (off_t)(offs[3] + 45));
    m = map_file(pa, true);
    sl__st64(m.b + SL_H_BOOT, boot);
    memcpy(m.b + from, saved, (size_t)(tail - from));
    unmap_file(&m);
    s = open_ro(root, "tail", NULL);
    verify_clean(s, (uint64_t)segs, N);
    assert_int_equal(sl_stream_close(s), 0);

    /* a file cut inside the committed records: the cut is one damage */
    uint64_t cut = offs[na - 5] + 20;
    assert_int_equal(truncate(pa, (off_t)cut), 0);
    tu_reports rep = {0};
    s = open_ro(root, "tail", &rep);
    snprintf(want, sizeof want, "file truncated to %" PRIu64 " of %" PRIu64 " bytes", cut, fb);
    st = verify_one(s, (uint64_t)segs, cut, want);
    snprintf(want, sizeof want, "records from offset %" PRIu64 " to %" PRIu64, offs[na - 5], tail);
    assert_non_null(strstr(sl_errmsg(s), want));
    assert_int_equal(st.records, N - 5);
    assert_int_equal(st.bytes, seg_bytes(root, "tail", 1));
    assert_int_equal(sl_stream_close(s), 0);
    free(pa);
}

/* A big active segment cut inside its index (which grows down from the
** trailer over more than a page), verified by a read-only handle: the
** entries past the cut -- entry 0 first, the highest -- must not be read
** (they lie past the mapping; found by fuzz/fuzz_segment.c). */
static void cut_inside_index(void **state)
{
    const char *root = *state;
    tu_opts c = {.segment_bytes = 4u << 20};
    sl_stream *w = tu_create(root, "cut", &c);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, w), 0);
    char d[200];
    memset(d, 'v', sizeof d);
    for (int i = 0; i < 3000; i++) assert_int_equal(sl_put(p, "k", d, sizeof d, NULL), 0);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(w), 0);
    char *pa = tu_seg_path(root, "cut", 0, 1);
    fmap m = map_file(pa, false);
    assert_true(sl__ld32(m.b + SL_H_INDEX_COUNT) * SL_IDX_ENTRY > 4096);  /* over a page */
    unmap_file(&m);
    assert_int_equal(truncate(pa, (4 << 20) - 4096), 0);
    sl__os.mmap = tu_mmap_guarded;
    sl_stream *s = open_ro(root, "cut", NULL);
    char want[64];
    snprintf(want, sizeof want, "file truncated to %u of %u bytes", (4u << 20) - 4096, 4u << 20);
    sl_verify_stats st = verify_one(s, 1, (4u << 20) - 4096, want);
    assert_int_equal(st.records, 3000);
    assert_int_equal(sl_stream_close(s), 0);
    sl__os_reset();
    free(pa);
}

/* ---- encryption ---------------------------------------------------------------- */

static void encrypted_records(void **state)
{
    const char *root = *state;
    char *kf = tu_path("%s/master.key", root);
    assert_int_equal(sl_keyfile_create(kf), 0);
    sl_key_provider *kp;
    assert_int_equal(sl_keyfile_provider_open(&kp, kf), 0);
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = "enc";
    c.durability = SL_DURABILITY_NONE;
    c.segment_bytes = SL_SEGMENT_BYTES_MIN;
    c.encryption_type = SL_ENCRYPTION_KMS;
    c.kms_key_id = KEY_ID;
    sl_open_opts oo = SL_OPEN_OPTS_INIT;
    oo.keys = kp;
    sl_stream *s = NULL;
    assert_int_equal(sl_stream_create(&s, root, &c, &oo), 0);
    enum { N = 1500, M = 10 };
    put_range(s, 0, N);
    verify_clean(s, (uint64_t)tu_nsegs(root, "enc", 0), N);
    assert_int_equal(sl_stream_close(s), 0);
    int segs = tu_nsegs(root, "enc", 0);
    assert_true(segs >= 3);
    /* a byte of ciphertext in sealed segment 2, its record's checksum, the
    ** block checksums, the index checksum and the trailer recomputed: only
    ** the tag can tell */
    char *p2 = tu_seg_path(root, "enc", 0, 2);
    uint64_t offs[64];
    rec_offsets(p2, offs, 64, NULL);
    uint64_t roff = offs[7];
    fmap m = map_file(p2, true);
    assert_int_equal(sl__ld32(m.b + roff + 4), SL_REC_ENC);
    uint32_t rb = sl__ld32(m.b + roff);
    m.b[roff + SL_REC_ENC_HDR + 3] ^= 0x10;
    sl__st64(m.b + roff + rb - 8, sl__xxh3(m.b + roff, rb - 8));
    unmap_file(&m);
    reseal(p2);
    /* without the tag nothing is wrong */
    oo.flags = SL_OPEN_READONLY;
    assert_int_equal(sl_stream_open(&s, root, "enc", &oo), 0);
    sl_verify_stats st = verify_one(s, 2, roff, "fails authentication: its GCM tag does not match");
    assert_int_equal(st.records, N - 1);
    assert_int_equal(st.encrypted_unchecked, 0);
    assert_int_equal(sl_stream_close(s), 0);
    /* encryption stopped; opened without a provider: the encrypted records
    ** cannot be authenticated (counted), the clear ones can, and the
    ** tampered one passes for what it claims */
    oo.flags = 0;
    assert_int_equal(sl_stream_open(&s, root, "enc", &oo), 0);
    assert_int_equal(sl_stream_stop_encryption(s), 0);
    put_range(s, N, N + M);
    assert_int_equal(sl_stream_close(s), 0);
    tu_opts o = {.flags = SL_OPEN_READONLY};
    s = tu_open(root, "enc", &o);
    vlog l = {0};
    assert_int_equal(verify(s, &l, &st), 0);
    assert_int_equal(st.damaged, 0);
    assert_int_equal(st.encrypted_unchecked, N);
    assert_int_equal(st.records, N + M);
    assert_int_equal(st.segments, (uint64_t)tu_nsegs(root, "enc", 0));
    assert_int_equal(sl_stream_close(s), 0);
    sl_keyfile_provider_close(kp);
    free(p2);
    free(kf);
}

/* ---- the callback ------------------------------------------------------------- */

static void callback_stops(void **state)
{
    const char *root = *state;
    enum { N = 2000 };
    int segs = make_stream(root, "stop", N);
    sl_stream *s = open_ro(root, "stop", NULL);
    vlog l = {.stop_segs = 2};
    sl_verify_stats st;
    assert_int_equal(verify(s, &l, &st), 1);
    assert_int_equal(l.segs, 2);
    assert_int_equal(st.segments, 2);
    assert_int_equal(st.segments_total, (uint64_t)segs);
    assert_true(st.records > 0 && st.records < N);
    assert_int_equal(sl_stream_close(s), 0);
    /* stopped at the first damage: nothing after it */
    char *p1 = tu_seg_path(root, "stop", 0, 1);
    uint64_t offs[8];
    rec_offsets(p1, offs, 8, NULL);
    tu_flip_byte(p1, (off_t)(offs[2] + 40));
    tu_flip_byte(p1, (off_t)(offs[5] + 40));
    s = open_ro(root, "stop", NULL);
    l = (vlog){.stop_dmg = 1};
    assert_int_equal(verify(s, &l, &st), 1);
    assert_int_equal(l.ndmg, 1);
    assert_int_equal(st.damaged, 1);
    assert_int_equal(st.segments, 0);
    assert_int_equal(l.segs, 0);
    /* not stopped: both places, the whole stream */
    l = (vlog){0};
    assert_int_equal(verify(s, &l, &st), SL_ECORRUPT);
    assert_int_equal(st.damaged, 2);
    assert_int_equal(st.segments, (uint64_t)segs);
    assert_int_equal(st.records, N - 2);
    assert_non_null(strstr(sl_errmsg(s), "2 damaged places in 1 segment; first: "));
    assert_int_equal(sl_stream_close(s), 0);
    free(p1);
}

/* ---- verifying while the writer appends ---------------------------------------- */

typedef struct appender {
    sl_stream *s;
    _Atomic bool started, stop, done;
    _Atomic int written;
    int rc;
} appender;

#define APPEND_MAX 100000

static void *append_main(void *arg)
{
    appender *a = arg;
    sl_producer *p;
    a->rc = sl_producer_open(&p, a->s);
    atomic_store(&a->started, true);
    if (a->rc) {
        atomic_store(&a->done, true);
        return NULL;
    }
    char key[16], data[256];
    memset(data, 'z', sizeof data);
    for (int i = 0; !atomic_load(&a->stop) && i < APPEND_MAX; i++) {
        snprintf(key, sizeof key, "w%d", i % 101);
        if ((a->rc = sl_put(p, key, data, 64 + (size_t)i % 190, NULL)) != 0) break;
        atomic_fetch_add(&a->written, 1);
    }
    sl_producer_close(p);
    atomic_store(&a->done, true);
    return NULL;
}

/* Verification rounds, a follower's and the writer's own in turn, while a
** thread of the writer appends (rolling segments over): no false damage.
** Rounds go on until three of them saw appends while they ran (or the
** appender reached its end). */
static void verify_during_appends(void **state)
{
    const char *root = *state;
    tu_opts o = {.shards = 2};
    sl_stream *w = tu_create(root, "live", &o);
    enum { N0 = 3000 };
    put_range(w, 0, N0);
    tu_reports rep = {0};
    sl_stream *f = open_ro(root, "live", &rep);
    appender a = {.s = w};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, append_main, &a), 0);
    while (!atomic_load(&a.started)) sched_yield();
    uint64_t prev = 0;
    int rounds = 0, overlapped = 0;
    while (rounds < 6 || (overlapped < 3 && !atomic_load(&a.done))) {
        sl_stream *s = rounds % 3 == 2 ? w : f;
        int at_start = atomic_load(&a.written);
        vlog l = {0};
        sl_verify_stats st;
        int rc = verify(s, &l, &st);
        if (rc) fprintf(stderr, "round %d: %s\n", rounds, sl_errmsg(s));
        assert_int_equal(rc, 0);
        assert_int_equal(st.damaged, 0);
        assert_int_equal(st.segments, st.segments_total);
        assert_true(st.records >= N0 + (uint64_t)at_start);
        assert_true(st.records >= prev);
        prev = st.records;
        if (atomic_load(&a.written) > at_start) overlapped++;
        rounds++;
    }
    atomic_store(&a.stop, true);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(a.rc, 0);
    print_message("%d verification rounds, %d of them during appends; %d records appended\n",
                  rounds, overlapped, atomic_load(&a.written));
    assert_true(overlapped >= 1);
    if (rep.count) fprintf(stderr, "reports:\n%s", rep.all);
    assert_int_equal(rep.count, 0);
    /* quiet: exact */
    uint64_t total = (uint64_t)tu_nsegs(root, "live", 0) + (uint64_t)tu_nsegs(root, "live", 1);
    verify_clean(f, total, N0 + (uint64_t)atomic_load(&a.written));
    verify_clean(w, total, N0 + (uint64_t)atomic_load(&a.written));
    assert_int_equal(sl_stream_close(f), 0);
    assert_int_equal(sl_stream_close(w), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(clean_stream_exact_stats, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(damaged_record_index_and_trailer, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(damaged_header, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(damaged_cold_segment, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(active_tail, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(cut_inside_index, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(encrypted_records, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(callback_stops, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(verify_during_appends, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
