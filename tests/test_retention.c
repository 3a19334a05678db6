/*
** test_retention.c -- time retention, retention changes, the trim signal
** for iterators and checkpoints, segment deletion, the size cap (both
** policies) with a stalled reader, readers pinned in deleted segments,
** maintenance budgets, failures while deleting, the background thread.
** Time is a virtual clock throughout.
*/
#include "testutil.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#define T0 1700000000000LL
#define HOUR 3600000LL
#define DAY (24 * HOUR)
#define SHARD0 "shardId-000000000000"
#define SHARD1 "shardId-000000000001"

static sl_stream *mk(const char *root, const char *name, sl_vclock *vc, uint32_t shards,
                     uint64_t cap, sl_cap_policy pol)
{
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = name;
    c.shard_count = shards;
    c.durability = SL_DURABILITY_NONE;
    c.segment_bytes = SL_SEGMENT_BYTES_MIN;   /* 64 KiB: many segments */
    c.size_cap_bytes = cap;
    c.size_cap_policy = pol;
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.clock = sl_vclock_clock(vc);
    sl_stream *s = NULL;
    int rc = sl_stream_create(&s, root, &c, &o);
    if (rc) fprintf(stderr, "create: %s\n", sl_errmsg(NULL));
    assert_int_equal(rc, 0);
    return s;
}

static sl_stream *reopen(const char *root, const char *name, sl_vclock *vc)
{
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.clock = sl_vclock_clock(vc);
    sl_stream *s = NULL;
    int rc = sl_stream_open(&s, root, name, &o);
    if (rc) fprintf(stderr, "open: %s\n", sl_errmsg(NULL));
    assert_int_equal(rc, 0);
    return s;
}

/* Put a record of `size` bytes to shard 0 (explicit hash key 0) or 1. */
static uint64_t put_to(sl_producer *p, int shard, size_t size)
{
    static char buf[8192];
    memset(buf, 'r', sizeof buf);
    sl_put_entry e = {"k", buf, size, shard ? "340282366920938463463374607431768211455" : "0"};
    sl_put_result r;
    int rc = sl_producer_put(p, &e, &r);
    if (rc) fprintf(stderr, "put: %s\n", sl_errmsg(p));
    assert_int_equal(rc, 0);
    return r.sequence;
}

/* Records visible from TRIM_HORIZON in a shard. */
static size_t visible(sl_stream *s, const char *shard)
{
    tu_recs r = {0};
    tu_read_shard(s, shard, &r);
    size_t n = r.n;
    tu_recs_free(&r);
    return n;
}

static uint64_t maintain(sl_stream *s, sl_maint_stats *st)
{
    sl_maint_stats x;
    int rc = sl_stream_maintain(s, -1, NULL, NULL, &x);
    if (rc < 0) fprintf(stderr, "maintain: %s\n", sl_errmsg(s));
    assert_int_equal(rc, 0);
    if (st) *st = x;
    return x.segments_deleted;
}

/* ---- the boundary ------------------------------------------------------------- */

static void records_expire_exactly_at_the_boundary(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = mk(root, "edge", vc, 1, 0, 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    uint64_t a = put_to(p, 0, 10);
    sl_vclock_advance(vc, 1000);
    uint64_t b = put_to(p, 0, 10);
    sl_iter *early;                     /* positioned at a */
    assert_int_equal(sl_iter_open(&early, s, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);

    sl_vclock_set(vc, T0 + DAY - 1);
    assert_int_equal(visible(s, SHARD0), 2);
    sl_vclock_set(vc, T0 + DAY);        /* a is exactly 24 h old */
    assert_int_equal(visible(s, SHARD0), 1);
    sl_record rec[4];
    sl_read_result res;
    assert_int_equal(sl_iter_read(early, rec, 4, &res), SL_ETRIMMED);
    assert_non_null(strstr(sl_errmsg(early), "expired"));
    sl_iter_close(early);
    /* AT_SEQUENCE_NUMBER of a: trimmed; AFTER a: b, nothing lost */
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, s, SHARD0, SL_ITER_AT_SEQUENCE_NUMBER, a), 0);
    assert_int_equal(sl_iter_read(it, rec, 4, &res), SL_ETRIMMED);
    sl_iter_close(it);
    assert_int_equal(sl_iter_open(&it, s, SHARD0, SL_ITER_AFTER_SEQUENCE_NUMBER, a), 0);
    assert_int_equal(sl_iter_read(it, rec, 4, &res), 0);
    assert_int_equal(res.count, 1);
    assert_int_equal(rec[0].sequence, b);
    sl_iter_close(it);
    /* AT_TIMESTAMP before the horizon starts at it */
    assert_int_equal(sl_iter_open(&it, s, SHARD0, SL_ITER_AT_TIMESTAMP, (uint64_t)T0), 0);
    assert_int_equal(sl_iter_read(it, rec, 4, &res), 0);
    assert_int_equal(res.count, 1);
    assert_int_equal(rec[0].sequence, b);
    sl_iter_close(it);

    sl_vclock_set(vc, T0 + 1000 + DAY);
    assert_int_equal(visible(s, SHARD0), 0);
    /* sequence numbers go on after everything expired */
    uint64_t c = put_to(p, 0, 10);
    assert_true(c > b);
    assert_int_equal(visible(s, SHARD0), 1);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* ---- deleting segments ---------------------------------------------------------- */

/* Fill n segments of shard 0, the clock one minute on per segment; returns
** the arrival time of the last record of the first new segment. */
static int64_t fill_segments(sl_stream *s, sl_vclock *vc, const char *root, const char *name,
                             int n)
{
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    int64_t first_last = 0;
    int seg = tu_nsegs(root, name, 0);
    int start = seg;
    if (start == 0) {                   /* the shard's first segment */
        put_to(p, 0, 4000);
        seg = start = 1;
    }
    while (seg < start + n) {
        int64_t t = sl_vclock_now(vc);
        put_to(p, 0, 4000);
        int now = tu_nsegs(root, name, 0);
        if (now != seg) {               /* a new segment: the next minute */
            if (!first_last) first_last = t;
            seg = now;
            sl_vclock_advance(vc, 60000);
        }
    }
    sl_producer_close(p);
    return first_last;
}

static void segments_deleted_when_wholly_expired(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = mk(root, "del", vc, 1, 0, 0);
    int64_t last1 = fill_segments(s, vc, root, "del", 4);
    int before = tu_nsegs(root, "del", 0);
    assert_true(before >= 4);
    /* the first segment's records all arrived at last1 (the clock moves
    ** on only once the next segment has begun) */
    sl_vclock_set(vc, last1 + DAY - 1);
    assert_int_equal(maintain(s, NULL), 0);
    assert_int_equal(tu_nsegs(root, "del", 0), before);
    sl_vclock_set(vc, last1 + DAY);
    sl_maint_stats st;
    assert_int_equal(maintain(s, &st), 1);
    assert_int_equal(tu_nsegs(root, "del", 0), before - 1);
    assert_true(st.bytes_freed >= SL_SEGMENT_BYTES_MIN);
    /* a day after everything: all sealed ones go, then the active one is
    ** sealed and goes too; the shard is empty and still takes puts */
    sl_vclock_advance(vc, 2 * DAY);
    maintain(s, &st);
    assert_true(st.segments_sealed == 1);
    assert_int_equal(tu_nsegs(root, "del", 0), 0);
    assert_int_equal(visible(s, SHARD0), 0);
    sl_stream_desc *d;
    assert_int_equal(sl_stream_describe(&d, s), 0);
    assert_int_equal(d->disk_bytes, 0);
    sl_stream_desc_free(d);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    put_to(p, 0, 10);
    sl_producer_close(p);
    assert_int_equal(visible(s, SHARD0), 1);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* A purge (everything expired and deleted) never resets sequence numbers:
** after it, and after a reopen, new records are numbered above every
** record that ever was. */
static void sequence_numbers_survive_a_purge(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = mk(root, "purge", vc, 1, 0, 0);
    fill_segments(s, vc, root, "purge", 3);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    uint64_t last = tu_put(p, "k", 1);
    sl_producer_close(p);
    sl_vclock_advance(vc, 3 * DAY);
    maintain(s, NULL);
    maintain(s, NULL);
    assert_int_equal(tu_nsegs(root, "purge", 0), 0);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(sl_producer_open(&p, s), 0);
        uint64_t next = tu_put(p, "k", 2);
        sl_producer_close(p);
        assert_true(next > last);
        last = next;
        sl_vclock_advance(vc, 3 * DAY);
        maintain(s, NULL);
        maintain(s, NULL);
        assert_int_equal(sl_stream_close(s), 0);
        s = reopen(root, "purge", vc);
    }
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

static void retention_changes(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = mk(root, "chg", vc, 1, 0, 0);
    assert_int_equal(sl_stream_increase_retention(s, 48), 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    put_to(p, 0, 10);
    sl_vclock_advance(vc, 30 * HOUR);
    put_to(p, 0, 10);
    assert_int_equal(visible(s, SHARD0), 2);
    /* decreasing takes effect at once */
    assert_int_equal(sl_stream_decrease_retention(s, 24), 0);
    assert_int_equal(visible(s, SHARD0), 1);
    /* increasing revives nothing, also across a reopen */
    assert_int_equal(sl_stream_increase_retention(s, 72), 0);
    assert_int_equal(visible(s, SHARD0), 1);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    s = reopen(root, "chg", vc);
    assert_int_equal(visible(s, SHARD0), 1);
    sl_stream_desc *d;
    assert_int_equal(sl_stream_describe(&d, s), 0);
    assert_int_equal(d->retention_hours, 72);
    sl_stream_desc_free(d);
    /* Kinesis' rules */
    assert_int_equal(sl_stream_increase_retention(s, 48), SL_EINVAL);
    assert_int_equal(sl_stream_decrease_retention(s, 100), SL_EINVAL);
    assert_int_equal(sl_stream_increase_retention(s, 8761), SL_EINVAL);
    assert_int_equal(sl_stream_decrease_retention(s, 23), SL_EINVAL);
    assert_int_equal(sl_stream_increase_retention(s, 8760), 0);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* ---- trimmed signals after deletion and reopen ---------------------------------- */

static void checkpoints_and_iterators_after_deletion(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = mk(root, "gone", vc, 1, 0, 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    uint64_t first = put_to(p, 0, 100);
    sl_producer_close(p);
    assert_int_equal(sl_consumer_register(s, "app", SL_CONSUMER_SHARED), 0);
    sl_consumer *c;
    assert_int_equal(sl_consumer_open(&c, s, "app"), 0);
    assert_int_equal(sl_consumer_checkpoint(c, SHARD0, first), 0);
    fill_segments(s, vc, root, "gone", 3);
    /* expire and delete the first segments: the checkpoint's successors
    ** are gone */
    sl_vclock_advance(vc, DAY - 60000);
    assert_true(maintain(s, NULL) >= 1);
    uint64_t seq;
    assert_int_equal(sl_consumer_get_checkpoint(c, SHARD0, &seq), SL_ETRIMMED);
    assert_int_equal(seq, first);
    sl_iter *it = NULL;
    assert_int_equal(sl_consumer_iter_open(&it, c, SHARD0, SL_ITER_TRIM_HORIZON, 0),
                     SL_ETRIMMED);
    assert_int_equal(sl_iter_open(&it, s, SHARD0, SL_ITER_AT_SEQUENCE_NUMBER, first),
                     SL_ETRIMMED);
    assert_int_equal(sl_consumer_close(c), 0);
    assert_int_equal(sl_stream_close(s), 0);
    /* the same after a reopen, even once every segment is gone */
    s = reopen(root, "gone", vc);
    sl_vclock_advance(vc, 2 * DAY);
    maintain(s, NULL);
    assert_int_equal(tu_nsegs(root, "gone", 0), 0);
    assert_int_equal(sl_stream_close(s), 0);
    s = reopen(root, "gone", vc);
    assert_int_equal(sl_consumer_open(&c, s, "app"), 0);
    assert_int_equal(sl_consumer_get_checkpoint(c, SHARD0, &seq), SL_ETRIMMED);
    assert_int_equal(sl_iter_open(&it, s, SHARD0, SL_ITER_AFTER_SEQUENCE_NUMBER, first),
                     SL_ETRIMMED);
    /* TRIM_HORIZON is fine: it starts after what is gone */
    assert_int_equal(sl_iter_open(&it, s, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    sl_record rec[2];
    sl_read_result res;
    assert_int_equal(sl_iter_read(it, rec, 2, &res), 0);
    assert_int_equal(res.count, 0);
    sl_iter_close(it);
    assert_int_equal(sl_consumer_close(c), 0);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* ---- a reader pinned in a deleted segment ---------------------------------------- */

static void reader_survives_deletion_of_its_segment(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = mk(root, "pin", vc, 1, 0, 0);
    fill_segments(s, vc, root, "pin", 3);
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, s, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    sl_record rec[4];
    sl_read_result res;
    assert_int_equal(sl_iter_read(it, rec, 4, &res), 0);
    assert_int_equal(res.count, 4);
    sl_vclock_advance(vc, 3 * DAY);
    assert_true(maintain(s, NULL) >= 3);
    char *seg1 = tu_seg_path(root, "pin", 0, 1);
    struct stat st;
    assert_int_equal(stat(seg1, &st), -1);      /* the file is gone ... */
    free(seg1);
    for (int i = 0; i < 4; i++) {               /* ... the views are not */
        assert_int_equal(rec[i].data_len, 4000);
        const char *d = rec[i].data;
        for (size_t k = 0; k < 4000; k++) assert_int_equal(d[k], 'r');
    }
    assert_int_equal(sl_iter_read(it, rec, 4, &res), SL_ETRIMMED);
    sl_iter_close(it);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* ---- the size cap ---------------------------------------------------------------- */

static uint64_t disk_bytes(const char *root, const char *name, int shards)
{
    uint64_t sum = 0;
    for (int k = 0; k < shards; k++) {
        char *d = tu_path("%s/%s/shardId-%012d", root, name, k);
        DIR *dir = opendir(d);
        assert_non_null(dir);
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            size_t l = strlen(e->d_name);
            if (l < 4 || strcmp(e->d_name + l - 4, ".seg")) continue;
            char *f = tu_path("%s/%s", d, e->d_name);
            struct stat st;
            assert_int_equal(stat(f, &st), 0);
            sum += (uint64_t)st.st_size;
            free(f);
        }
        closedir(dir);
        free(d);
    }
    return sum;
}

static void size_cap_drops_oldest_with_a_stalled_reader(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    const uint64_t seg = SL_SEGMENT_BYTES_MIN, cap = 6 * seg;
    sl_stream *s = mk(root, "cap", vc, 2, cap, SL_CAP_DROP_OLDEST);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    put_to(p, 0, 100);
    sl_iter *stalled;
    assert_int_equal(sl_iter_open(&stalled, s, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    sl_record rec[1];
    sl_read_result res;
    assert_int_equal(sl_iter_read(stalled, rec, 1, &res), 0);    /* pins segment 1 */
    uint64_t most = 0;
    for (int i = 0; i < 2000; i++) {    /* 8 MB through a 384 KiB cap */
        put_to(p, i & 1, 4000);
        if (i % 10 == 0) sl_vclock_advance(vc, 1);
        uint64_t used = disk_bytes(root, "cap", 2);
        if (used > most) most = used;
        assert_true(used <= cap + 2 * seg);          /* one segment per shard */
    }
    assert_true(most > cap / 2);
    sl_stream_desc *d;
    assert_int_equal(sl_stream_describe(&d, s), 0);
    assert_int_equal(d->disk_bytes, disk_bytes(root, "cap", 2));
    sl_stream_desc_free(d);
    /* the stalled reader finishes its pinned segment, then learns it fell
    ** behind what was dropped */
    int rc;
    do rc = sl_iter_read(stalled, rec, 1, &res);
    while (rc == 0 && res.count == 1);
    assert_int_equal(rc, SL_ETRIMMED);
    sl_iter_close(stalled);
    /* the newest records are all there */
    assert_true(visible(s, SHARD0) > 10);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

static void size_cap_refuses_until_space_frees(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    const uint64_t seg = SL_SEGMENT_BYTES_MIN, cap = 4 * seg;
    sl_stream *s = mk(root, "ref", vc, 1, cap, SL_CAP_REFUSE);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    static char buf[4000];
    memset(buf, 'x', sizeof buf);
    sl_put_entry e = {"k", buf, sizeof buf, NULL};
    sl_put_result r;
    int rc = 0, n = 0;
    while ((rc = sl_producer_put(p, &e, &r)) == 0) {
        n++;
        assert_true(disk_bytes(root, "ref", 1) <= cap + seg);
        assert_true(n < 10000);
    }
    assert_int_equal(rc, SL_ENOSPC);
    assert_non_null(strstr(sl_errmsg(p), "size cap"));
    assert_true(disk_bytes(root, "ref", 1) <= cap + seg);
    assert_int_equal(visible(s, SHARD0), (size_t)n);   /* nothing was dropped */
    /* maintenance frees nothing while nothing expired */
    maintain(s, NULL);
    assert_int_equal(sl_producer_put(p, &e, &r), SL_ENOSPC);
    /* a day later retention frees the space */
    sl_vclock_advance(vc, DAY);
    assert_true(maintain(s, NULL) >= 1);
    assert_int_equal(sl_producer_put(p, &e, &r), 0);
    /* raising the cap works at once, and is kept */
    assert_int_equal(sl_stream_set_size_cap(s, 100 * seg, SL_CAP_REFUSE), 0);
    assert_int_equal(sl_stream_set_size_cap(s, seg, SL_CAP_REFUSE), SL_EINVAL);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    s = reopen(root, "ref", vc);
    sl_stream_desc *d;
    assert_int_equal(sl_stream_describe(&d, s), 0);
    assert_int_equal(d->size_cap_bytes, 100 * seg);
    assert_int_equal(d->size_cap_policy, SL_CAP_REFUSE);
    sl_stream_desc_free(d);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

static int fail_at, calls;
static int failing_unlink(const char *path);
static int failing_rename(const char *a, const char *b);
static int failing_fsync(int fd);

/* ---- key compaction ------------------------------------------------------------- */

typedef struct krec {
    uint64_t seq;
    int key;
} krec;

/* Put n records with keys "key-<i % nkeys>" into shard 0 (explicit hash
** key), 200-byte payloads naming the record; returns them in order. */
static krec *put_keys(sl_stream *s, int n, int nkeys)
{
    krec *r = calloc((size_t)n, sizeof *r);
    assert_non_null(r);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    for (int i = 0; i < n; i++) {
        char key[32], data[200];
        snprintf(key, sizeof key, "key-%d", i % nkeys);
        memset(data, '.', sizeof data);
        snprintf(data, sizeof data, "record %d of %s", i, key);
        sl_put_entry e = {key, data, sizeof data, "0"};
        sl_put_result res;
        assert_int_equal(sl_producer_put(p, &e, &res), 0);
        r[i] = (krec){res.sequence, i % nkeys};
    }
    sl_producer_close(p);
    return r;
}

/* The first sequence number of shard 0's active segment (records from it
** on are never compacted). */
static uint64_t active_first(sl_stream *s)
{
    sl_shard *sh = s->shards[0];
    pthread_mutex_lock(&sh->lock);
    uint64_t f = sh->active && sh->active->count ? sh->active->first_seq : UINT64_MAX;
    pthread_mutex_unlock(&sh->lock);
    return f;
}

/* What compaction must leave: in sealed segments the newest record of
** each key, in the active one everything. */
static void expect_compacted(sl_stream *s, const krec *r, int n, int nkeys, uint64_t active)
{
    uint64_t *newest = calloc((size_t)nkeys, sizeof *newest);
    for (int i = 0; i < n; i++) newest[r[i].key] = r[i].seq;
    tu_recs got = {0};
    tu_read_shard(s, SHARD0, &got);
    assert_int_equal(got.corrupt, 0);
    size_t k = 0;
    for (int i = 0; i < n; i++) {
        bool keep = r[i].seq >= active || r[i].seq == newest[r[i].key];
        if (!keep) continue;
        assert_true(k < got.n);
        assert_int_equal(got.v[k].seq, r[i].seq);
        char want[64];
        snprintf(want, sizeof want, "record %d of key-%d", i, r[i].key);
        assert_int_equal(strncmp(got.v[k].data, want, strlen(want)), 0);
        k++;
    }
    assert_int_equal(k, got.n);
    tu_recs_free(&got);
    free(newest);
}

/* After a failed rewrite: reopen (watching for damage reports), let one
** more pass finish the job, and check what compaction must leave. */
static void reopen_finish_check(const char *root, const char *name, sl_vclock *vc,
                                const krec *r, int n, int nkeys, uint64_t active)
{
    tu_reports rep = {0};
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.clock = sl_vclock_clock(vc);
    o.report = tu_report_fn;
    o.report_ctx = &rep;
    sl_stream *s;
    assert_int_equal(sl_stream_open(&s, root, name, &o), 0);
    maintain(s, NULL);
    expect_compacted(s, r, n, nkeys, active);
    assert_int_equal(rep.count, 0);
    assert_int_equal(sl_stream_close(s), 0);
}

static void key_compaction_keeps_the_newest_per_key(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = mk(root, "kc", vc, 1, 0, 0);
    assert_int_equal(sl_stream_set_compaction(s, SL_COMPACTION_KEY), 0);
    const int n = 2000, nkeys = 37;
    krec *r = put_keys(s, n, nkeys);
    int files = tu_nsegs(root, "kc", 0);
    assert_true(files >= 5);
    uint64_t active = active_first(s);
    sl_maint_stats st;
    maintain(s, &st);
    assert_true(st.segments_compacted >= 4);
    assert_true(st.records_compacted > 1000);
    expect_compacted(s, r, n, nkeys, active);
    /* nothing more to do until a segment seals */
    maintain(s, &st);
    assert_int_equal(st.segments_compacted, 0);
    /* and the same after a reopen */
    assert_int_equal(sl_stream_close(s), 0);
    s = reopen(root, "kc", vc);
    expect_compacted(s, r, n, nkeys, active);
    sl_stream_desc *d;
    assert_int_equal(sl_stream_describe(&d, s), 0);
    assert_int_equal(d->compaction, SL_COMPACTION_KEY);
    sl_stream_desc_free(d);
    assert_int_equal(sl_stream_close(s), 0);
    free(r);
    sl_vclock_free(vc);
}

/* A rewrite fails at each of its system calls in turn: the stream stays
** readable with the old or the new segment, and reopens clean. */
static int fail_fallocate(int fd, int mode, off_t off, off_t len)
{
    if (++calls == fail_at) {
        errno = ENOSPC;
        return -1;
    }
    return fallocate(fd, mode, off, len);
}
static int fail_msync(void *a, size_t l, int f)
{
    if (++calls == fail_at) {
        errno = EIO;
        return -1;
    }
    return msync(a, l, f);
}

static void compaction_survives_failure_at_every_step(void **state)
{
    const char *root = *state;
    for (fail_at = 1; fail_at <= 10; fail_at++) {
        char name[32];
        snprintf(name, sizeof name, "kf%d", fail_at);
        sl_vclock *vc;
        assert_int_equal(sl_vclock_new(&vc, T0), 0);
        sl_stream *s = mk(root, name, vc, 1, 0, SL_CAP_DEFAULT);
        assert_int_equal(sl_stream_set_compaction(s, SL_COMPACTION_KEY), 0);
        const int n = 1200, nkeys = 11;
        krec *r = put_keys(s, n, nkeys);
        uint64_t active = active_first(s);
        calls = 0;
        sl__os.rename = failing_rename;
        sl__os.fsync = failing_fsync;
        sl__os.fallocate = fail_fallocate;
        sl__os.msync = fail_msync;
        sl__os.unlink = failing_unlink;
        int rc = sl_stream_maintain(s, -1, NULL, NULL, NULL);
        sl__os_reset();
        assert_true(rc == 0 || rc == SL_EIO || rc == SL_ENOSPC);
        /* every key's newest record is there, in order, nothing corrupt */
        tu_recs got = {0};
        tu_read_shard(s, SHARD0, &got);
        assert_int_equal(got.corrupt, 0);
        assert_true(got.n >= (size_t)nkeys);
        for (size_t i = 1; i < got.n; i++) assert_true(got.v[i].seq > got.v[i - 1].seq);
        tu_recs_free(&got);
        assert_int_equal(sl_stream_close(s), 0);
        reopen_finish_check(root, name, vc, r, n, nkeys, active);
        free(r);
        sl_vclock_free(vc);
    }
}

/* SIGKILL a child that compacts in a loop while writing: the stream opens
** clean, every key's newest acknowledged record is there. */
static void compaction_survives_sigkill(void **state)
{
    const char *root = *state;
    for (int round = 0; round < 6; round++) {
        char name[32];
        snprintf(name, sizeof name, "kk%d", round);
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            sl_vclock *vc;
            if (sl_vclock_new(&vc, T0)) _exit(2);
            sl_stream_config c = SL_STREAM_CONFIG_INIT;
            c.name = name;
            c.durability = SL_DURABILITY_NONE;
            c.segment_bytes = SL_SEGMENT_BYTES_MIN;
            c.compaction = SL_COMPACTION_KEY;
            sl_open_opts o = SL_OPEN_OPTS_INIT;
            o.clock = sl_vclock_clock(vc);
            sl_stream *s;
            if (sl_stream_create(&s, root, &c, &o)) _exit(3);
            sl_producer *p;
            if (sl_producer_open(&p, s)) _exit(4);
            for (int i = 0;; i++) {
                char key[32], data[300];
                snprintf(key, sizeof key, "key-%d", i % 13);
                memset(data, 'd', sizeof data);
                uint64_t seq;
                if (sl_put(p, key, data, sizeof data, &seq)) _exit(5);
                struct {
                    int key;
                    uint64_t seq;
                } ack = {i % 13, seq};
                if (write(pfd[1], &ack, sizeof ack) != (ssize_t)sizeof ack) _exit(6);
                if (i % 50 == 49 && sl_stream_maintain(s, -1, NULL, NULL, NULL) < 0) _exit(7);
            }
        }
        close(pfd[1]);
        uint64_t newest[13] = {0};
        struct {
            int key;
            uint64_t seq;
        } ack;
        int acks = 0, target = 600 + round * 250;
        while (acks < target && read(pfd[0], &ack, sizeof ack) == (ssize_t)sizeof ack) {
            newest[ack.key] = ack.seq;
            acks++;
        }
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        while (read(pfd[0], &ack, sizeof ack) == (ssize_t)sizeof ack) newest[ack.key] = ack.seq;
        close(pfd[0]);
        assert_true(acks >= target);
        sl_vclock *vc;
        assert_int_equal(sl_vclock_new(&vc, T0), 0);
        tu_reports rep = {0};
        sl_open_opts o = SL_OPEN_OPTS_INIT;
        o.clock = sl_vclock_clock(vc);
        o.report = tu_report_fn;
        o.report_ctx = &rep;
        sl_stream *s;
        assert_int_equal(sl_stream_open(&s, root, name, &o), 0);
        tu_recs got = {0};
        tu_read_all(s, &got);
        assert_int_equal(got.corrupt, 0);
        for (int k = 0; k < 13; k++) {
            bool found = false;
            for (size_t i = 0; i < got.n && !found; i++) found = got.v[i].seq == newest[k];
            if (!found) fail_msg("round %d: key-%d's newest record %" PRIu64 " is missing",
                                 round, k, newest[k]);
        }
        tu_recs_free(&got);
        assert_int_equal(rep.count, 0);
        assert_int_equal(sl_stream_close(s), 0);
        sl_vclock_free(vc);
    }
}

/* Cold rewrites fail at each system call in turn, as compaction above. */
static void cold_rewrite_survives_failure_at_every_step(void **state)
{
    const char *root = *state;
    for (fail_at = 1; fail_at <= 8; fail_at++) {
        char name[32];
        snprintf(name, sizeof name, "cf%d", fail_at);
        sl_vclock *vc;
        assert_int_equal(sl_vclock_new(&vc, T0), 0);
        sl_stream *s = mk(root, name, vc, 1, 0, SL_CAP_DEFAULT);
        const int n = 800, nkeys = 50;
        krec *r = put_keys(s, n, nkeys);
        assert_int_equal(sl_stream_set_cold_after(s, 1), 0);
        sl_vclock_advance(vc, 2 * HOUR);
        calls = 0;
        sl__os.rename = failing_rename;
        sl__os.fsync = failing_fsync;
        sl__os.unlink = failing_unlink;
        sl__os.fdatasync = failing_fsync;
        int rc = sl_stream_maintain(s, -1, NULL, NULL, NULL);
        sl__os_reset();
        assert_true(rc == 0 || rc == SL_EIO || rc == SL_ENOSPC);
        expect_compacted(s, r, n, nkeys, 0);        /* every record, untouched */
        assert_int_equal(sl_stream_close(s), 0);
        reopen_finish_check(root, name, vc, r, n, nkeys, 0);
        free(r);
        sl_vclock_free(vc);
    }
}

/* A damaged segment met by compaction and by the cold rewrite is skipped,
** reported and counted; the others are processed. */
static void damaged_segment_is_skipped(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    tu_reports rep = {0};
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = "dmg";
    c.durability = SL_DURABILITY_NONE;
    c.segment_bytes = SL_SEGMENT_BYTES_MIN;
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.clock = sl_vclock_clock(vc);
    o.report = tu_report_fn;
    o.report_ctx = &rep;
    sl_stream *s;
    assert_int_equal(sl_stream_create(&s, root, &c, &o), 0);
    krec *r = put_keys(s, 1500, 1500);          /* no key repeats: compaction */
    free(r);                                    /* only reads the segments */
    assert_int_equal(sl_stream_close(s), 0);
    assert_true(tu_nsegs(root, "dmg", 0) >= 4);
    char *seg2 = tu_seg_path(root, "dmg", 0, 2);
    tu_flip_byte(seg2, SL_SEG_HDR + 100);         /* inside the first record */
    free(seg2);
    assert_int_equal(sl_stream_open(&s, root, "dmg", &o), 0);
    assert_int_equal(sl_stream_set_compaction(s, SL_COMPACTION_KEY), 0);
    assert_int_equal(sl_stream_set_cold_after(s, 1), 0);
    sl_vclock_advance(vc, 2 * HOUR);
    int before = rep.count;
    sl_maint_stats st;
    assert_int_equal(sl_stream_maintain(s, -1, NULL, NULL, &st), 0);
    assert_true(st.damaged_skipped >= 2);       /* compaction's and cold's */
    assert_int_equal(st.segments_compacted, 0);
    assert_true(st.segments_cold >= 2);
    assert_true(rep.count > before);
    assert_non_null(strstr(rep.all, "0000000000000002"));
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* ---- budgets, failures, the thread --------------------------------------------------- */

static int stop_at_once(void *ctx, const sl_maint_stats *st)
{
    (void)st;
    ++*(int *)ctx;
    return 1;
}

static void maintenance_budget_and_progress(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = mk(root, "bud", vc, 1, 0, 0);
    fill_segments(s, vc, root, "bud", 3);
    int before = tu_nsegs(root, "bud", 0);
    sl_vclock_advance(vc, 2 * DAY);
    int ncalls = 0;
    sl_maint_stats st;
    assert_int_equal(sl_stream_maintain(s, -1, stop_at_once, &ncalls, &st), 1);
    assert_int_equal(ncalls, 1);
    assert_int_equal(st.segments_deleted, 0);
    assert_int_equal(tu_nsegs(root, "bud", 0), before);
    assert_int_equal(sl_stream_maintain(s, 0, NULL, NULL, &st), 1);   /* no time */
    assert_int_equal(sl_stream_maintain(s, 10000, NULL, NULL, &st), 0);
    assert_int_equal(tu_nsegs(root, "bud", 0), 0);
    assert_int_equal(sl_stream_close(s), 0);
    /* read-only handles do not maintain */
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.flags = SL_OPEN_READONLY;
    assert_int_equal(sl_stream_open(&s, root, "bud", &o), 0);
    assert_int_equal(sl_stream_maintain(s, -1, NULL, NULL, NULL), SL_EREADONLY);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* fail_at: the call that fails; calls: counted so far */
static int failing_unlink(const char *path)
{
    if (++calls == fail_at) {
        errno = EIO;
        return -1;
    }
    return unlink(path);
}
static int failing_rename(const char *a, const char *b)
{
    if (++calls == fail_at) {
        errno = EIO;
        return -1;
    }
    return rename(a, b);
}
static int failing_fsync(int fd)
{
    if (++calls == fail_at) {
        errno = EIO;
        return -1;
    }
    return fsync(fd);
}

/* Every step of a deletion fails in turn: maintenance reports it, nothing
** that had not expired is lost, and the stream reopens and reads clean. */
static void deletion_survives_failure_at_every_step(void **state)
{
    const char *root = *state;
    for (fail_at = 1; fail_at <= 8; fail_at++) {
        char name[32];
        snprintf(name, sizeof name, "f%d", fail_at);
        sl_vclock *vc;
        assert_int_equal(sl_vclock_new(&vc, T0), 0);
        sl_stream *s = mk(root, name, vc, 1, 0, 0);
        fill_segments(s, vc, root, name, 4);
        sl_vclock_advance(vc, DAY - 2 * 60000);     /* the first two expire */
        size_t live = visible(s, SHARD0);
        calls = 0;
        sl__os.unlink = failing_unlink;
        sl__os.rename = failing_rename;
        sl__os.fsync = failing_fsync;
        sl_maint_stats st;
        int rc = sl_stream_maintain(s, -1, NULL, NULL, &st);
        sl__os_reset();
        assert_true(rc == 0 || rc == SL_EIO || rc == SL_ENOSPC);
        assert_int_equal(visible(s, SHARD0), live);
        maintain(s, NULL);                          /* and it finishes */
        assert_int_equal(visible(s, SHARD0), live);
        assert_int_equal(sl_stream_close(s), 0);
        tu_reports rep = {0};
        sl_open_opts o = SL_OPEN_OPTS_INIT;
        o.clock = sl_vclock_clock(vc);
        o.report = tu_report_fn;
        o.report_ctx = &rep;
        assert_int_equal(sl_stream_open(&s, root, name, &o), 0);
        assert_int_equal(visible(s, SHARD0), live);
        assert_int_equal(rep.count, 0);
        assert_int_equal(sl_stream_close(s), 0);
        sl_vclock_free(vc);
    }
}

static void background_thread_deletes(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = mk(root, "bg", vc, 1, 0, 0);
    fill_segments(s, vc, root, "bg", 3);
    assert_int_equal(sl_stream_maintain_start(s, 5), 0);
    assert_int_equal(sl_stream_maintain_start(s, 5), SL_EINUSE);
    sl_vclock_advance(vc, 2 * DAY);
    /* a wait for an outcome, bounded generously; nothing measures time */
    for (int i = 0; i < 20000 && tu_nsegs(root, "bg", 0) > 0; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(tu_nsegs(root, "bg", 0), 0);
    assert_int_equal(sl_stream_maintain_stop(s), 0);
    assert_int_equal(sl_stream_maintain_stop(s), 0);
    assert_int_equal(sl_stream_maintain_start(s, 5), 0);   /* close stops it */
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(records_expire_exactly_at_the_boundary, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(segments_deleted_when_wholly_expired, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(sequence_numbers_survive_a_purge, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(retention_changes, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(checkpoints_and_iterators_after_deletion, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(reader_survives_deletion_of_its_segment, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(size_cap_drops_oldest_with_a_stalled_reader, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(size_cap_refuses_until_space_frees, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(maintenance_budget_and_progress, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(deletion_survives_failure_at_every_step, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(background_thread_deletes, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(key_compaction_keeps_the_newest_per_key, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(compaction_survives_failure_at_every_step, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(compaction_survives_sigkill, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(cold_rewrite_survives_failure_at_every_step, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(damaged_segment_is_skipped, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
