/*
** test_cold.c -- cold segments (issue 5): sealed segments rewritten as zstd
** blocks with a block table (sl__seg_write_cold), then read through the
** same iterators: every record byte-identical across hot and cold segments,
** seeks by sequence number and time into cold blocks, LATEST, limit-1
** stepping, damage in a block, the table or the trailer, refusals and
** failed writes, read-only followers, and a file rewritten under an open
** stream.  The compression ratio is printed, never timed.
*/
#include "testutil.h"

#define SHARD0 "shardId-000000000000"
#define T0 1700000000000LL

/* ---- data ----------------------------------------------------------------- */

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* One telemetry-like JSON event of varied size. */
static size_t telemetry(char *buf, size_t cap, int i)
{
    static const char *events[] = {"tool_call", "llm_request", "llm_response", "step",
                                   "error", "checkpoint", "user_message"};
    static const char *tools[] = {"search", "python", "browser", "shell", "retriever"};
    static const char *words[] = {"the", "agent", "planned", "a", "query", "over",
                                  "documents", "returned", "results", "with", "latency",
                                  "retry", "cache", "miss", "hit", "tokens"};
    int n = snprintf(buf, cap,
                     "{\"ts\":%lld,\"session\":\"sess-%04d\",\"agent\":\"planner-%d\","
                     "\"event\":\"%s\",\"tool\":\"%s\",\"latency_ms\":%d,"
                     "\"tokens\":{\"in\":%d,\"out\":%d},\"status\":\"%s\",\"msg\":\"",
                     (long long)(T0 + i), (int)(rng() % 64), (int)(rng() % 4),
                     events[rng() % 7], tools[rng() % 5], (int)(rng() % 5000),
                     (int)(rng() % 4096), (int)(rng() % 1024), rng() % 10 ? "ok" : "failed");
    size_t len = (size_t)n;
    int nw = (int)(rng() % 60);
    for (int w = 0; w < nw && len + 24 < cap; w++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", w ? " " : "", words[rng() % 16]);
    len += (size_t)snprintf(buf + len, cap - len, "\"}");
    return len;
}

/* Write n telemetry records to shard 0 (one with the big record at index
** `big_at`, of big_size bytes), the clock moving 1 ms every 3 records. */
static void write_telemetry(sl_stream *s, sl_vclock *vc, int n, int big_at, size_t big_size)
{
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    char *buf = malloc(big_size > 4096 ? big_size : 4096);
    assert_non_null(buf);
    for (int i = 0; i < n; i++) {
        size_t len;
        if (i == big_at) {
            len = 0;
            while (len + 1024 < big_size) len += telemetry(buf + len, big_size - len, i);
        } else {
            len = telemetry(buf, 4096, i);
        }
        char key[32];
        snprintf(key, sizeof key, "sess-%04d", i % 64);
        assert_int_equal(sl_put(p, key, buf, len, NULL), 0);
        if (i % 3 == 2) sl_vclock_advance(vc, 1);
    }
    free(buf);
    sl_producer_close(p);
}

typedef struct fixture {
    char *root;
    const char *name;
    sl_vclock *vc;
    tu_recs ref;                     /* every record, read while all hot */
    uint64_t nseg;                   /* segment files (the last one active) */
} fixture;

static sl_stream *fx_open(fixture *f, tu_reports *rep, uint32_t flags)
{
    tu_opts o = {.clock = sl_vclock_clock(f->vc), .reports = rep, .flags = flags};
    return tu_open(f->root, f->name, &o);
}

/* A 1-shard stream of n telemetry records in segments of seg_bytes, closed;
** f->ref holds its records. */
static void fx_make(fixture *f, const char *root, const char *name, uint64_t seg_bytes, int n,
                    int big_at, bool seal_last)
{
    memset(f, 0, sizeof *f);
    f->root = (char *)root;
    f->name = name;
    assert_int_equal(sl_vclock_new(&f->vc, T0), 0);
    tu_opts o = {.segment_bytes = seg_bytes, .max_record_kib = 2048,
                 .clock = sl_vclock_clock(f->vc)};
    sl_stream *s = tu_create(root, name, &o);
    write_telemetry(s, f->vc, n, big_at, 150000);
    if (seal_last) {
        bool did;
        assert_int_equal(sl__shard_seal_expired(sl__stream_shard_by_id(s, SHARD0), INT64_MAX, &did), 0);
        assert_true(did);
    }
    tu_read_shard(s, SHARD0, &f->ref);
    assert_int_equal(f->ref.n, (size_t)n);
    assert_int_equal(f->ref.corrupt, 0);
    assert_int_equal(sl_stream_close(s), 0);
    f->nseg = (uint64_t)tu_nsegs(root, name, 0);
    assert_true(f->nseg >= 3);
}

static void fx_free(fixture *f)
{
    tu_recs_free(&f->ref);
    sl_vclock_free(f->vc);
}

static size_t ref_index(const fixture *f, uint64_t seq)
{
    for (size_t i = 0; i < f->ref.n; i++)
        if (f->ref.v[i].seq == seq) return i;
    fail_msg("sequence number %" PRIu64 " not in the reference", seq);
    return 0;
}

static void rec_equal(const tu_rec *a, const sl_record *b)
{
    assert_int_equal(a->seq, b->sequence);
    assert_int_equal(a->ms, b->arrival_ms);
    assert_int_equal(strlen(a->key), b->key_len);
    assert_memory_equal(a->key, b->partition_key, b->key_len);
    assert_int_equal(a->dlen, b->data_len);
    assert_memory_equal(a->data, b->data, b->data_len);
}

/* Every record of r matches the reference record with its sequence number,
** in order; returns how many. */
static size_t check_subset(const fixture *f, const tu_recs *r)
{
    size_t j = 0;
    for (size_t i = 0; i < r->n; i++) {
        while (j < f->ref.n && f->ref.v[j].seq != r->v[i].seq) j++;
        assert_true(j < f->ref.n);
        const tu_rec *a = &f->ref.v[j], *b = &r->v[i];
        assert_int_equal(a->ms, b->ms);
        assert_string_equal(a->key, b->key);
        assert_int_equal(a->dlen, b->dlen);
        assert_memory_equal(a->data, b->data, a->dlen);
        j++;
    }
    return r->n;
}

static void check_all(const fixture *f, const tu_recs *r)
{
    assert_int_equal(r->n, f->ref.n);
    assert_int_equal(r->corrupt, 0);
    check_subset(f, r);
}

/* ---- segments through the internal interface ------------------------------ */

/* A segctx like sl__segctx_init's, from the file's own header. */
static void ctx_for(const char *path, sl_segctx *c, tu_reports *rep)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t h[64];
    assert_int_equal(pread(fd, h, sizeof h, 0), (ssize_t)sizeof h);
    close(fd);
    memset(c, 0, sizeof *c);
    c->stream_id = sl__ld64(h + 40);
    c->shard_index = sl__ld32(h + 8);
    c->shard_id = SHARD0;
    c->now_ms = T0;
    if (rep) {
        c->report = tu_report_fn;
        c->report_ctx = rep;
    }
}

static sl_seg *seg_open(const char *path, uint64_t ord, sl_segctx *c)
{
    sl_seg *g = NULL;
    assert_int_equal(sl__seg_open(&g, c, path, ord, false, false, true), 0);
    assert_non_null(g);
    return g;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

/* Rewrite segment `ord` cold, as maintenance does: write, rename over.
** Checks the new file opens as the same segment.  Returns its size. */
static uint64_t to_cold(const fixture *f, uint64_t ord, uint64_t *hot_bytes)
{
    char *path = tu_seg_path(f->root, f->name, 0, ord);
    char *tmp = tu_path("%s.cold", path);
    sl_segctx c;
    ctx_for(path, &c, NULL);
    sl_seg *g = seg_open(path, ord, &c);
    assert_true(sl__seg_is_sealed(g));
    assert_false(g->cold);
    assert_int_equal(sl__seg_map(g, &c), 0);
    uint64_t fb = 0;
    int rc = sl__seg_write_cold(g, &c, tmp, 3, &fb);
    if (rc) fprintf(stderr, "to_cold: %s\n", sl__errtext());
    assert_int_equal(rc, 0);
    assert_int_equal(file_size(tmp), fb);
    struct stat st;
    assert_int_equal(stat(tmp, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(rename(tmp, path), 0);
    if (hot_bytes) *hot_bytes = g->file_bytes;
    /* the cold file: the same segment, sealed, with the real size */
    sl_seg *k = seg_open(path, ord, &c);
    assert_true(k->cold);
    assert_true(sl__seg_is_sealed(k));
    assert_int_equal(k->file_bytes, fb);
    assert_int_equal(k->count, g->count);
    assert_int_equal(k->payload, g->payload);
    assert_int_equal(k->first_seq, g->first_seq);
    assert_int_equal(k->last_seq, g->last_seq);
    assert_int_equal(k->first_ms, g->first_ms);
    assert_int_equal(k->last_ms, g->last_ms);
    assert_int_equal(k->data_end, g->data_end);
    assert_int_equal(sl__seg_visible_end(k), g->data_end);
    sl__seg_free(k);
    sl__seg_free(g);
    free(tmp);
    free(path);
    return fb;
}

/* The block table of cold segment `ord` (copied out), through a stream;
** *last_seq: the segment's last record. */
static uint32_t blocks_of(sl_stream *s, uint64_t ord, sl_cblk *out, uint32_t max,
                          uint64_t *last_seq)
{
    sl_shard *sh = sl__stream_shard_by_id(s, SHARD0);
    sl_seg *g = NULL;
    assert_int_equal(sl__shard_get_seg(sh, ord - 1, &g), 0);
    assert_non_null(g);
    assert_int_equal(g->ordinal, ord);
    assert_true(g->cold);
    uint32_t n = g->cold_nblk;
    assert_true(n <= max);
    for (uint32_t k = 0; k < n; k++) out[k] = sl__seg_cold_block(g, k);
    if (last_seq) *last_seq = g->last_seq;
    sl__shard_put_seg(sh, g);
    return n;
}

static sl_iter *iter(sl_stream *s, sl_iter_type type, uint64_t arg)
{
    sl_iter *it = NULL;
    int rc = sl_iter_open(&it, s, SHARD0, type, arg);
    if (rc) fprintf(stderr, "iter: %s\n", sl_errmsg(s));
    assert_int_equal(rc, 0);
    return it;
}

/* The first record an iterator returns. */
static void first_is(sl_stream *s, sl_iter_type type, uint64_t arg, const tu_rec *want)
{
    sl_iter *it = iter(s, type, arg);
    sl_record r[10];
    sl_read_result res;
    assert_int_equal(sl_iter_read(it, r, 10, &res), 0);
    assert_true(res.count >= 1);
    rec_equal(want, &r[0]);
    sl_iter_close(it);
}

/* ---- tests ------------------------------------------------------------------ */

/* Small segments (64 KiB: one block each), one record of 150 KB in its own
** segment; every other sealed segment cold.  Everything reads back byte-
** identical, in sequence, across hot and cold segments. */
static void reads_back_identical(void **state)
{
    fixture f;
    fx_make(&f, *state, "small", SL_SEGMENT_BYTES_MIN, 1500, 700, false);
    uint64_t hot = 0, cold = 0, big_hot = 0, big_cold = 0;
    for (uint64_t ord = 1; ord < f.nseg; ord++) {
        if (ord % 4 == 3) continue;                 /* some stay hot */
        uint64_t hb, cb = to_cold(&f, ord, &hb);
        assert_true(cb < hb);
        if (hb > SL_SEGMENT_BYTES_MIN) {            /* the big record's own */
            big_hot = hb;
            big_cold = cb;
        } else {
            hot += hb;
            cold += cb;
        }
    }
    assert_true(big_hot > 0);
    print_message("cold ratio (64 KiB segments of telemetry JSON): %" PRIu64 " -> %" PRIu64
                  " bytes, %.2fx; the 150 KB record's segment %" PRIu64 " -> %" PRIu64 "\n",
                  hot, cold, (double)hot / (double)cold, big_hot, big_cold);
    tu_reports rep = {0};
    sl_stream *s = fx_open(&f, &rep, 0);
    tu_recs r = {0};
    tu_read_shard(s, SHARD0, &r);
    check_all(&f, &r);
    tu_recs_free(&r);
    sl_stream_desc *d;
    assert_int_equal(sl_stream_describe(&d, s), 0);
    assert_int_equal(d->shards[0].records, f.ref.n);
    sl_stream_desc_free(d);
    /* and again with a writer that appends after them */
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    uint64_t seq = tu_put(p, "late", 1);
    sl_producer_close(p);
    tu_read_shard(s, SHARD0, &r);
    assert_int_equal(r.n, f.ref.n + 1);
    assert_int_equal(r.v[r.n - 1].seq, seq);
    free(r.v[--r.n].data);
    check_all(&f, &r);
    tu_recs_free(&r);
    assert_int_equal(sl_stream_close(s), 0);
    assert_int_equal(rep.count, 0);
    fx_free(&f);
}

/* 1 MiB segments: many blocks per cold segment, the big record a block of
** its own among others.  Seeks at the start, middle and end of blocks and
** segments; AT_TIMESTAMP; limit-1 stepping through a whole segment. */
static void seeks_into_blocks(void **state)
{
    fixture f;
    fx_make(&f, *state, "big", 1u << 20, 9000, 4000, false);
    uint64_t hot = 0, cold = 0;
    for (uint64_t ord = 1; ord < f.nseg; ord++) {
        uint64_t hb;
        cold += to_cold(&f, ord, &hb);
        hot += hb;
    }
    print_message("cold ratio (1 MiB segments of telemetry JSON): %" PRIu64 " -> %" PRIu64
                  " bytes, %.2fx\n",
                  hot, cold, (double)hot / (double)cold);
    sl_stream *s = fx_open(&f, NULL, SL_OPEN_READONLY);
    static sl_cblk blk[256];
    bool saw_big = false;
    for (uint64_t ord = 1; ord < f.nseg; ord++) {
        uint64_t seg_last;
        uint32_t n = blocks_of(s, ord, blk, 256, &seg_last);
        assert_true(n >= 2);
        for (uint32_t k = 0; k < n; k++) {
            if (blk[k].raw_len > SL_COLD_BLOCK_RAW) saw_big = true;
            size_t i = ref_index(&f, blk[k].first_seq);
            /* the block's first record: AT it, AFTER the one before */
            first_is(s, SL_ITER_AT_SEQUENCE_NUMBER, f.ref.v[i].seq, &f.ref.v[i]);
            if (i > 0) {
                first_is(s, SL_ITER_AFTER_SEQUENCE_NUMBER, f.ref.v[i - 1].seq, &f.ref.v[i]);
                first_is(s, SL_ITER_AT_SEQUENCE_NUMBER, f.ref.v[i - 1].seq, &f.ref.v[i - 1]);
            }
            /* the middle and the last record of the block */
            size_t last = k + 1 < n ? ref_index(&f, blk[k + 1].first_seq) - 1
                                    : ref_index(&f, seg_last);
            size_t mid = i + (last - i) / 2;
            first_is(s, SL_ITER_AT_SEQUENCE_NUMBER, f.ref.v[mid].seq, &f.ref.v[mid]);
            first_is(s, SL_ITER_AT_SEQUENCE_NUMBER, f.ref.v[last].seq, &f.ref.v[last]);
            if (last + 1 < f.ref.n)
                first_is(s, SL_ITER_AFTER_SEQUENCE_NUMBER, f.ref.v[last].seq,
                         &f.ref.v[last + 1]);
            /* a time inside the block: the first record at or after it */
            int64_t t = f.ref.v[mid].ms;
            size_t w = 0;
            while (f.ref.v[w].ms < t) w++;
            first_is(s, SL_ITER_AT_TIMESTAMP, (uint64_t)t, &f.ref.v[w]);
        }
        /* a sequence number between two records is not a record */
        sl_iter *it;
        size_t i = ref_index(&f, blk[1].first_seq);
        if (f.ref.v[i].seq - f.ref.v[i - 1].seq > 1) {
            assert_int_equal(sl_iter_open(&it, s, SHARD0, SL_ITER_AT_SEQUENCE_NUMBER,
                                          f.ref.v[i].seq - 1),
                             SL_EINVAL);
        }
    }
    assert_true(saw_big);
    /* limit 1 through the whole of cold segment 2, then into segment 3 */
    uint32_t n = blocks_of(s, 2, blk, 256, NULL);
    blocks_of(s, 3, blk + n, 256 - n, NULL);
    size_t from = ref_index(&f, blk[0].first_seq), to = ref_index(&f, blk[n].first_seq);
    sl_iter *it = iter(s, SL_ITER_AT_SEQUENCE_NUMBER, f.ref.v[from].seq);
    for (size_t i = from; i <= to; i++) {
        sl_record r;
        sl_read_result res;
        assert_int_equal(sl_iter_read(it, &r, 1, &res), 0);
        assert_int_equal(res.count, 1);
        rec_equal(&f.ref.v[i], &r);
        assert_int_equal(res.last_sequence, f.ref.v[i].seq);
        assert_true(res.millis_behind_latest >= 0);
    }
    sl_iter_close(it);
    /* a read of a cold segment returns one block at most, and its records
    ** stay valid until the next read */
    it = iter(s, SL_ITER_AT_SEQUENCE_NUMBER, blk[0].first_seq);
    static sl_record rr[10000];
    sl_read_result res;
    assert_int_equal(sl_iter_read(it, rr, 10000, &res), 0);
    assert_true(res.count >= 1 && res.count < 10000);
    for (size_t i = 0; i < res.count; i++) rec_equal(&f.ref.v[from + i], &rr[i]);
    assert_int_equal(sl_iter_wait(it, 0), 1);      /* a wait leaves them alone */
    for (size_t i = 0; i < res.count; i++) rec_equal(&f.ref.v[from + i], &rr[i]);
    /* millis_behind_latest: the next record's age (the next block's first) */
    int64_t now = sl_vclock_now(f.vc);
    assert_int_equal(res.millis_behind_latest, now - f.ref.v[from + res.count].ms);
    sl_iter_close(it);
    /* TRIM_HORIZON from the start, everything */
    tu_recs r = {0};
    tu_read_shard(s, SHARD0, &r);
    check_all(&f, &r);
    tu_recs_free(&r);
    assert_int_equal(sl_stream_close(s), 0);
    fx_free(&f);
}

/* Every segment sealed and cold: LATEST stands at the end of the last cold
** one; TRIM_HORIZON with an expiry horizon inside a cold segment. */
static void latest_and_horizon(void **state)
{
    fixture f;
    fx_make(&f, *state, "all", 1u << 20, 9000, -1, true);
    for (uint64_t ord = 1; ord <= f.nseg; ord++) to_cold(&f, ord, NULL);
    sl_stream *s = fx_open(&f, NULL, 0);
    sl_iter *it = iter(s, SL_ITER_LATEST, 0);
    sl_record r[100];
    sl_read_result res;
    assert_int_equal(sl_iter_read(it, r, 100, &res), 0);
    assert_int_equal(res.count, 0);
    assert_int_equal(sl_iter_wait(it, 0), 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    uint64_t seq = tu_put(p, "after", 1);
    sl_producer_close(p);
    assert_int_equal(sl_iter_wait(it, 0), 1);
    assert_int_equal(sl_iter_read(it, r, 100, &res), 0);
    if (res.count == 0) assert_int_equal(sl_iter_read(it, r, 100, &res), 0);
    assert_int_equal(res.count, 1);
    assert_int_equal(r[0].sequence, seq);
    sl_iter_close(it);
    /* records before t expired: TRIM_HORIZON starts at the first after it,
    ** in the middle of a cold block; a reader past the horizon is told */
    size_t mid = f.ref.n / 2 + 17;
    int64_t t = f.ref.v[mid].ms;
    sl_iter *old = iter(s, SL_ITER_AT_SEQUENCE_NUMBER, f.ref.v[10].seq);
    sl_vclock_set(f.vc, t + 24 * 3600 * 1000LL);  /* retention 24 h: <= t gone */
    size_t w = mid;
    while (f.ref.v[w].ms <= t) w++;
    first_is(s, SL_ITER_TRIM_HORIZON, 0, &f.ref.v[w]);
    first_is(s, SL_ITER_AT_TIMESTAMP, (uint64_t)f.ref.v[5].ms, &f.ref.v[w]);
    assert_int_equal(sl_iter_read(old, r, 100, &res), SL_ETRIMMED);
    sl_iter_close(old);
    assert_int_equal(sl_stream_close(s), 0);
    fx_free(&f);
}

/* A flipped byte inside a compressed block: that read fails naming the
** segment and block, the next goes on with the next block; nothing wrong
** is ever returned. */
static void damaged_block(void **state)
{
    fixture f;
    fx_make(&f, *state, "dmg", 1u << 20, 9000, -1, false);
    to_cold(&f, 2, NULL);
    sl_stream *s = fx_open(&f, NULL, SL_OPEN_READONLY);
    static sl_cblk blk[256];
    uint32_t n = blocks_of(s, 2, blk, 256, NULL);
    assert_true(n > 4);
    assert_int_equal(sl_stream_close(s), 0);
    char *path = tu_seg_path(f.root, f.name, 0, 2);
    tu_flip_byte(path, (off_t)(blk[3].file_off + blk[3].zlen / 2));
    tu_reports rep = {0};
    s = fx_open(&f, &rep, 0);
    sl_iter *it = iter(s, SL_ITER_TRIM_HORIZON, 0);
    tu_recs r = {0};
    static sl_record recs[1000];
    int corrupt = 0;
    for (;;) {
        sl_read_result res;
        int rc = sl_iter_read(it, recs, 1000, &res);
        if (rc == SL_ECORRUPT) {
            corrupt++;
            assert_int_equal(res.count, 0);
            assert_non_null(strstr(sl_errmsg(it), "segment 0000000000000002 (cold) block 3 "));
            continue;
        }
        assert_int_equal(rc, 0);
        if (res.count == 0) break;
        for (size_t i = 0; i < res.count; i++) tu_recs_add(&r, &recs[i]);
    }
    sl_iter_close(it);
    assert_int_equal(corrupt, 1);
    assert_int_equal(rep.count, 1);
    assert_non_null(strstr(rep.last, "block 3"));
    /* exactly block 3's records are missing */
    size_t lost_from = ref_index(&f, blk[3].first_seq), lost_to = ref_index(&f, blk[4].first_seq);
    assert_int_equal(check_subset(&f, &r), f.ref.n - (lost_to - lost_from));
    for (size_t i = 0; i < r.n; i++)
        assert_true(r.v[i].seq < blk[3].first_seq || r.v[i].seq >= blk[4].first_seq);
    tu_recs_free(&r);
    /* a seek into the damaged block: the read reports it, then goes on */
    it = iter(s, SL_ITER_AT_TIMESTAMP, (uint64_t)f.ref.v[lost_from + 2].ms);
    sl_read_result res;
    assert_int_equal(sl_iter_read(it, recs, 1000, &res), SL_ECORRUPT);
    assert_int_equal(sl_iter_read(it, recs, 1000, &res), 0);
    assert_true(res.count > 0);
    rec_equal(&f.ref.v[lost_to], &recs[0]);
    sl_iter_close(it);
    assert_int_equal(sl_stream_close(s), 0);
    free(path);
    fx_free(&f);
}

/* A flipped byte in the block table, in the trailer, or a truncated file:
** reported; the table is rebuilt from the frames and nothing wrong is
** returned. */
static void damaged_table_and_trailer(void **state)
{
    fixture f;
    fx_make(&f, *state, "tab", 1u << 20, 9000, -1, false);
    to_cold(&f, 1, NULL);
    to_cold(&f, 2, NULL);
    char *p1 = tu_seg_path(f.root, f.name, 0, 1), *p2 = tu_seg_path(f.root, f.name, 0, 2);
    sl_segctx c;
    ctx_for(p1, &c, NULL);
    sl_seg *g = seg_open(p1, 1, &c);
    uint64_t tab = g->cold_tab_off;
    sl__seg_free(g);
    tu_flip_byte(p1, (off_t)(tab + 48 * 2 + 24));   /* block 2's first_seq */
    tu_flip_byte(p2, (off_t)(file_size(p2) - 128 + 8));   /* record_count */
    tu_reports rep = {0};
    sl_stream *s = fx_open(&f, &rep, 0);
    tu_recs r = {0};
    tu_read_shard(s, SHARD0, &r);
    check_all(&f, &r);
    tu_recs_free(&r);
    assert_int_equal(rep.count, 2);
    assert_non_null(strstr(rep.all, "segment 0000000000000001 (cold): block table damaged"));
    assert_non_null(strstr(rep.all, "segment 0000000000000002 (cold): cold trailer damaged"));
    /* seeks work on the rebuilt tables */
    first_is(s, SL_ITER_AT_SEQUENCE_NUMBER, f.ref.v[1234].seq, &f.ref.v[1234]);
    size_t w = 5000;
    while (f.ref.v[w - 1].ms == f.ref.v[5000].ms) w--;
    first_is(s, SL_ITER_AT_TIMESTAMP, (uint64_t)f.ref.v[5000].ms, &f.ref.v[w]);
    assert_int_equal(sl_stream_close(s), 0);
    /* truncated in the middle of its frames: the records of the whole
    ** blocks before the cut come back, the rest is reported lost */
    assert_int_equal(truncate(p2, (off_t)(file_size(p2) / 2)), 0);
    memset(&rep, 0, sizeof rep);
    s = fx_open(&f, &rep, SL_OPEN_READONLY);
    tu_read_shard(s, SHARD0, &r);
    assert_int_equal(r.corrupt, 0);
    size_t got = check_subset(&f, &r);
    assert_true(got < f.ref.n && got > f.ref.n / 4);
    assert_true(rep.count >= 2);
    assert_non_null(strstr(rep.all, "file truncated"));
    tu_recs_free(&r);
    assert_int_equal(sl_stream_close(s), 0);
    free(p1);
    free(p2);
    fx_free(&f);
}

static ssize_t pwrite_enospc(int fd, const void *b, size_t n, off_t off)
{
    (void)fd, (void)b, (void)n, (void)off;
    errno = ENOSPC;
    return -1;
}

static int fdatasync_eio(int fd)
{
    (void)fd;
    errno = EIO;
    return -1;
}

/* Refused: an active segment, a cold one, an unmapped one, a damaged one
** (nothing written).  A failed write or sync leaves no file behind. */
static void refusals_and_failures(void **state)
{
    fixture f;
    fx_make(&f, *state, "ref", SL_SEGMENT_BYTES_MIN, 800, -1, false);
    char *p1 = tu_seg_path(f.root, f.name, 0, 1), *p2 = tu_seg_path(f.root, f.name, 0, 2);
    char *tmp = tu_path("%s.cold", p1);
    uint64_t fb = 7;
    sl_segctx c;
    ctx_for(p1, &c, NULL);
    /* the active segment of an open stream */
    sl_stream *s = fx_open(&f, NULL, 0);
    sl_shard *sh = sl__stream_shard_by_id(s, SHARD0);
    uint64_t tail;
    sl_seg *act = sl__shard_pin_active(sh, &tail);
    assert_non_null(act);
    sl_segctx sc;
    sl__segctx_init(&sc, sh);
    assert_int_equal(sl__seg_write_cold(act, &sc, tmp, 3, &fb), SL_EINVAL);
    assert_int_equal(fb, 0);
    sl__shard_put_seg(sh, act);
    assert_int_equal(sl_stream_close(s), 0);
    assert_int_not_equal(access(tmp, F_OK), 0);
    /* not mapped */
    sl_seg *g = seg_open(p1, 1, &c);
    assert_int_equal(sl__seg_write_cold(g, &c, tmp, 3, &fb), SL_EINVAL);
    /* write failures: an error, and no file left */
    assert_int_equal(sl__seg_map(g, &c), 0);
    sl__os.pwrite = pwrite_enospc;
    assert_int_equal(sl__seg_write_cold(g, &c, tmp, 3, &fb), SL_ENOSPC);
    sl__os_reset();
    assert_int_not_equal(access(tmp, F_OK), 0);
    sl__os.fdatasync = fdatasync_eio;
    assert_int_equal(sl__seg_write_cold(g, &c, tmp, 3, &fb), SL_EIO);
    sl__os_reset();
    assert_int_not_equal(access(tmp, F_OK), 0);
    assert_int_equal(fb, 0);
    /* someone else's file at the temporary name: an error, and it stays */
    int fd = open(tmp, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_not_equal(sl__seg_write_cold(g, &c, tmp, 3, &fb), 0);
    assert_int_equal(access(tmp, F_OK), 0);
    unlink(tmp);
    sl__seg_free(g);
    /* a cold segment */
    to_cold(&f, 1, NULL);
    g = seg_open(p1, 1, &c);
    assert_int_equal(sl__seg_map(g, &c), 0);
    assert_int_equal(sl__seg_write_cold(g, &c, tmp, 3, &fb), SL_EINVAL);
    sl__seg_free(g);
    assert_int_not_equal(access(tmp, F_OK), 0);
    /* a damaged one: a record fails its checksum; nothing is written */
    tu_flip_byte(p2, 256 + 100);
    char *tmp2 = tu_path("%s.cold", p2);
    g = seg_open(p2, 2, &c);
    assert_int_equal(sl__seg_map(g, &c), 0);
    assert_int_equal(sl__seg_write_cold(g, &c, tmp2, 3, &fb), SL_ECORRUPT);
    assert_non_null(strstr(sl__errtext(), "damaged"));
    assert_int_not_equal(access(tmp2, F_OK), 0);
    sl__seg_free(g);
    free(tmp2);
    free(tmp);
    free(p1);
    free(p2);
    fx_free(&f);
}

/* Read-only followers read cold segments; one that had a segment described
** (hot) while the file was rewritten cold under it reads the new file; and
** so does the writer's own handle. */
static void followers_and_rewrites(void **state)
{
    fixture f;
    fx_make(&f, *state, "fol", SL_SEGMENT_BYTES_MIN, 1500, -1, false);
    sl_stream *w = fx_open(&f, NULL, 0);            /* the writer, kept open */
    sl_stream *ro = fx_open(&f, NULL, SL_OPEN_READONLY);
    tu_recs r = {0};
    tu_read_shard(ro, SHARD0, &r);                  /* every segment described, hot */
    check_all(&f, &r);
    tu_recs_free(&r);
    tu_read_shard(w, SHARD0, &r);
    check_all(&f, &r);
    tu_recs_free(&r);
    for (uint64_t ord = 1; ord < f.nseg; ord++) to_cold(&f, ord, NULL);
    tu_read_shard(ro, SHARD0, &r);                  /* read through the new files */
    check_all(&f, &r);
    tu_recs_free(&r);
    tu_read_shard(w, SHARD0, &r);
    check_all(&f, &r);
    tu_recs_free(&r);
    sl_shard *sh = sl__stream_shard_by_id(ro, SHARD0);
    sl_seg *g = NULL;
    assert_int_equal(sl__shard_get_seg(sh, 0, &g), 0);
    assert_true(g->cold);
    sl__shard_put_seg(sh, g);
    /* a new follower, and the writer appending meanwhile */
    sl_stream *ro2 = fx_open(&f, NULL, SL_OPEN_READONLY);
    sl_iter *it = iter(ro2, SL_ITER_AT_SEQUENCE_NUMBER, f.ref.v[f.ref.n / 3].seq);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, w), 0);
    uint64_t seq = tu_put(p, "live", 1);
    sl_producer_close(p);
    tu_drain(it, &r);
    assert_int_equal(r.n, f.ref.n - f.ref.n / 3 + 1);
    assert_int_equal(r.v[r.n - 1].seq, seq);
    tu_recs_free(&r);
    sl_iter_close(it);
    assert_int_equal(sl_stream_close(ro2), 0);
    assert_int_equal(sl_stream_close(ro), 0);
    assert_int_equal(sl_stream_close(w), 0);
    fx_free(&f);
}

/* An empty sealed segment (it carries its keys) goes cold too. */
static void empty_segment(void **state)
{
    char *dir = tu_path("%s/shard", (char *)*state);
    assert_int_equal(mkdir(dir, 0700), 0);
    sl_segctx c = {.stream_id = 0x1234, .shard_index = 0, .shard_id = SHARD0, .now_ms = T0};
    sl_seg *g;
    assert_int_equal(sl__seg_create(&g, &c, dir, 1, SL_SEGMENT_BYTES_MIN), 0);
    g->first_seq = g->last_seq = 77;
    g->first_ms = g->last_ms = T0 - 5;
    assert_int_equal(sl__seg_seal(g, &c), 0);
    char *tmp = tu_path("%s.cold", g->path);
    uint64_t fb;
    assert_int_equal(sl__seg_write_cold(g, &c, tmp, 3, &fb), 0);
    assert_int_equal(fb, 256 + 128);
    assert_int_equal(rename(tmp, g->path), 0);
    sl_seg *k = seg_open(g->path, 1, &c);
    assert_true(k->cold && sl__seg_is_sealed(k));
    assert_int_equal(k->count, 0);
    assert_int_equal(k->cold_nblk, 0);
    assert_int_equal(k->last_seq, 77);
    assert_int_equal(k->last_ms, T0 - 5);
    assert_int_equal(sl__seg_visible_end(k), SL_SEG_HDR);
    assert_int_equal(sl__seg_map(k, &c), 0);
    sl__seg_index_check(k, &c);
    assert_int_equal(sl__seg_seek(k, SL_SEG_HDR, false, 5), SL_SEG_HDR);
    sl__seg_free(k);
    sl__seg_free(g);
    free(tmp);
    free(dir);
}

/* Flags other than 0 and COLD: refused as a newer library's file, named. */
static void unknown_flags(void **state)
{
    fixture f;
    fx_make(&f, *state, "flg", SL_SEGMENT_BYTES_MIN, 800, -1, false);
    char *p1 = tu_seg_path(f.root, f.name, 0, 1);
    int fd = open(p1, O_RDWR);
    assert_true(fd >= 0);
    uint8_t h[64];
    assert_int_equal(pread(fd, h, 64, 0), 64);
    sl__st32(h + 12, 0x4);
    sl__st64(h + 56, sl__xxh3(h, 56));
    assert_int_equal(pwrite(fd, h, 64, 0), 64);
    close(fd);
    sl_segctx c;
    ctx_for(p1, &c, NULL);
    sl_seg *g = NULL;
    assert_int_equal(sl__seg_open(&g, &c, p1, 1, false, false, true), SL_ECORRUPT);
    assert_null(g);
    assert_non_null(strstr(sl__errtext(), "unknown flags 0x4"));
    assert_int_equal(access(p1, F_OK), 0);          /* not quarantined */
    free(p1);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(reads_back_identical, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(seeks_into_blocks, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(latest_and_horizon, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(damaged_block, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(damaged_table_and_trailer, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(refusals_and_failures, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(followers_and_rewrites, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(empty_segment, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(unknown_flags, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
