/*
** test_iterator.c -- the five iterator types, their edge cases, reads
** (limits, views, millis_behind_latest) and waiting.
*/
#include "testutil.h"

#include <pthread.h>

#define T0 1700000000000LL

/* A 1-shard stream with a virtual clock, 64 KiB segments. */
typedef struct fx {
    sl_vclock *vc;
    sl_stream *s;
    sl_producer *p;
} fx;

static void fx_open(fx *f, const char *root, uint32_t shards)
{
    assert_int_equal(sl_vclock_new(&f->vc, T0), 0);
    tu_opts o = {.shards = shards, .clock = sl_vclock_clock(f->vc)};
    f->s = tu_create(root, "it", &o);
    assert_int_equal(sl_producer_open(&f->p, f->s), 0);
}

static void fx_close(fx *f)
{
    sl_producer_close(f->p);
    assert_int_equal(sl_stream_close(f->s), 0);
    sl_vclock_free(f->vc);
}

static size_t read_n(sl_iter *it, sl_record *recs, size_t limit)
{
    sl_read_result r;
    int rc = sl_iter_read(it, recs, limit, &r);
    if (rc) fprintf(stderr, "read: %s\n", sl_errmsg(it));
    assert_int_equal(rc, 0);
    return r.count;
}

#define SHARD0 "shardId-000000000000"

static void trim_horizon_on_empty_then_filled(void **state)
{
    fx f;
    fx_open(&f, *state, 1);
    sl_iter *it;
    sl_record recs[10];
    /* no segment exists yet: the iterator waits for the first */
    assert_int_equal(sl_iter_open(&it, f.s, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    assert_int_equal(read_n(it, recs, 10), 0);
    uint64_t a = tu_put(f.p, "k", 1), b = tu_put(f.p, "k", 2);
    assert_int_equal(read_n(it, recs, 10), 2);
    assert_int_equal(recs[0].sequence, a);
    assert_int_equal(recs[1].sequence, b);
    assert_int_equal(recs[0].data_len, 3);
    assert_memory_equal(recs[0].data, "k:1", 3);
    assert_int_equal(recs[0].key_len, 1);
    assert_memory_equal(recs[0].partition_key, "k", 1);
    assert_int_equal(recs[0].arrival_ms, T0);
    assert_int_equal(read_n(it, recs, 10), 0);
    sl_iter_close(it);
    fx_close(&f);
}

static void latest_sees_only_new(void **state)
{
    fx f;
    fx_open(&f, *state, 1);
    for (int i = 0; i < 5; i++) tu_put(f.p, "k", i);
    sl_iter *it;
    sl_record recs[10];
    assert_int_equal(sl_iter_open(&it, f.s, SHARD0, SL_ITER_LATEST, 0), 0);
    assert_int_equal(read_n(it, recs, 10), 0);
    uint64_t s5 = tu_put(f.p, "k", 5);
    tu_put(f.p, "k", 6);
    tu_put(f.p, "k", 7);
    assert_int_equal(read_n(it, recs, 10), 3);
    assert_int_equal(recs[0].sequence, s5);
    assert_memory_equal(recs[2].data, "k:7", 3);
    sl_iter_close(it);
    /* LATEST on an empty shard sees the first record */
    fx g;
    char *root2 = tu_path("%s/b", (char *)*state);
    fx_open(&g, root2, 1);
    assert_int_equal(sl_iter_open(&it, g.s, SHARD0, SL_ITER_LATEST, 0), 0);
    tu_put(g.p, "x", 1);
    assert_int_equal(read_n(it, recs, 10), 1);
    sl_iter_close(it);
    fx_close(&g);
    free(root2);
    fx_close(&f);
}

/* AT/AFTER for every record of a shard that spans many segments, before
** and after reopening (sealed segments then come from their trailers). */
static void at_and_after_every_sequence(void **state)
{
    fx f;
    fx_open(&f, *state, 1);
    enum { N = 600 };
    static uint64_t seq[N];
    char big[900];
    memset(big, 'd', sizeof big);
    for (int i = 0; i < N; i++) {
        sl_vclock_advance(f.vc, i % 3 == 0);
        assert_int_equal(sl_put(f.p, "key", big, 100 + (size_t)(i % 7) * 100, &seq[i]), 0);
        if (i) assert_true(seq[i] > seq[i - 1]);
    }
    assert_true(tu_nsegs(*state, "it", 0) > 3);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            sl_iter *it;
            sl_record r[2];
            assert_int_equal(sl_iter_open(&it, f.s, SHARD0, SL_ITER_AT_SEQUENCE_NUMBER, seq[i]), 0);
            assert_int_equal(read_n(it, r, 1), 1);
            assert_int_equal(r[0].sequence, seq[i]);
            assert_int_equal(r[0].data_len, 100 + (size_t)(i % 7) * 100);
            sl_iter_close(it);
            assert_int_equal(sl_iter_open(&it, f.s, SHARD0, SL_ITER_AFTER_SEQUENCE_NUMBER, seq[i]), 0);
            size_t n = read_n(it, r, 1);
            if (i + 1 < N) {
                /* the end of a sealed segment may need one more read */
                if (n == 0) n = read_n(it, r, 1);
                assert_int_equal(n, 1);
                assert_int_equal(r[0].sequence, seq[i + 1]);
            } else {
                assert_int_equal(n, 0);
            }
            sl_iter_close(it);
        }
        /* reopen: seeks now go through sealed trailers and footers */
        sl_producer_close(f.p);
        assert_int_equal(sl_stream_close(f.s), 0);
        tu_opts o = {.clock = sl_vclock_clock(f.vc)};
        f.s = tu_open(*state, "it", &o);
        assert_int_equal(sl_producer_open(&f.p, f.s), 0);
    }
    fx_close(&f);
}

static void sequence_errors(void **state)
{
    fx f;
    fx_open(&f, *state, 2);
    /* explicit hash keys put one record in each shard */
    sl_put_entry e0 = {"a", "x", 1, "0"}, e1 = {"b", "y", 1, "340282366920938463463374607431768211455"};
    sl_put_result r0, r1;
    assert_int_equal(sl_producer_put(f.p, &e0, &r0), 0);
    assert_int_equal(sl_producer_put(f.p, &e1, &r1), 0);
    assert_string_equal(r0.shard_id, "shardId-000000000000");
    assert_string_equal(r1.shard_id, "shardId-000000000001");
    sl_iter *it = (sl_iter *)&f;
    /* a number of the other shard, like Kinesis, is an invalid argument */
    assert_int_equal(sl_iter_open(&it, f.s, "shardId-000000000000", SL_ITER_AT_SEQUENCE_NUMBER, r1.sequence), SL_EINVAL);
    assert_null(it);
    assert_non_null(strstr(sl_errmsg(f.s), "not a record of shard shardId-000000000000"));
    assert_int_equal(sl_iter_open(&it, f.s, "shardId-000000000001", SL_ITER_AFTER_SEQUENCE_NUMBER, r0.sequence), SL_EINVAL);
    assert_int_equal(sl_iter_open(&it, f.s, "shardId-000000000000", SL_ITER_AT_SEQUENCE_NUMBER, 0), SL_EINVAL);
    assert_int_equal(sl_iter_open(&it, f.s, "shardId-000000000000", SL_ITER_AT_SEQUENCE_NUMBER, r1.sequence + 1000), SL_EINVAL);
    /* unknown shards and types */
    assert_int_equal(sl_iter_open(&it, f.s, "shardId-000000000002", SL_ITER_LATEST, 0), SL_ENOTFOUND);
    assert_non_null(strstr(sl_errmsg(f.s), "shardId-000000000002"));
    assert_int_equal(sl_iter_open(&it, f.s, "shard-0", SL_ITER_LATEST, 0), SL_ENOTFOUND);
    assert_int_equal(sl_iter_open(&it, f.s, NULL, SL_ITER_LATEST, 0), SL_ENOTFOUND);
    assert_int_equal(sl_iter_open(&it, f.s, "shardId-000000000000", (sl_iter_type)0, 0), SL_EVALIDATION);
    assert_int_equal(sl_iter_open(&it, f.s, "shardId-000000000000", (sl_iter_type)6, 0), SL_EVALIDATION);
    assert_int_equal(sl_iter_open(NULL, f.s, "shardId-000000000000", SL_ITER_LATEST, 0), SL_EINVAL);
    fx_close(&f);
}

static void at_timestamp(void **state)
{
    fx f;
    fx_open(&f, *state, 1);
    /* times T0, T0, T0+10, T0+10, ..., several segments' worth */
    enum { N = 400 };
    static uint64_t seq[N];
    static int64_t ms[N];
    char d[600];
    memset(d, 't', sizeof d);
    for (int i = 0; i < N; i++) {
        if (i && i % 2 == 0) sl_vclock_advance(f.vc, 10);
        ms[i] = sl_vclock_now(f.vc);
        assert_int_equal(sl_put(f.p, "k", d, sizeof d, &seq[i]), 0);
    }
    int64_t last = ms[N - 1];
    for (int64_t t = T0 - 5; t <= last + 20; t += 5) {
        sl_iter *it;
        sl_record r[1];
        assert_int_equal(sl_iter_open(&it, f.s, SHARD0, SL_ITER_AT_TIMESTAMP, (uint64_t)t), 0);
        int want = -1;
        for (int i = 0; i < N; i++)
            if (ms[i] >= t) {
                want = i;
                break;
            }
        size_t n = read_n(it, r, 1);
        if (n == 0 && want >= 0) n = read_n(it, r, 1);   /* segment end */
        if (want < 0) {
            /* past the newest record: an iterator at the tip, not a hang */
            assert_int_equal(n, 0);
            uint64_t s2 = tu_put(f.p, "k", 9);
            assert_int_equal(read_n(it, r, 1), 1);
            assert_int_equal(r[0].sequence, s2);
        } else {
            assert_int_equal(n, 1);
            assert_int_equal(r[0].sequence, seq[want]);
            assert_true(r[0].arrival_ms >= t);
        }
        sl_iter_close(it);
    }
    fx_close(&f);
}

static void read_limits_and_bytes_cap(void **state)
{
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    tu_opts o = {.segment_bytes = 64u << 20, .clock = sl_vclock_clock(vc)};
    sl_stream *s = tu_create(*state, "big", &o);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    size_t sz = (1u << 20) - 1;   /* with a 1-byte key: exactly 1 MiB */
    char *d = malloc(sz);
    assert_non_null(d);
    memset(d, 'b', sz);
    for (int i = 0; i < 12; i++) assert_int_equal(sl_put(p, "k", d, sz, NULL), 0);
    sl_iter *it;
    sl_record recs[100];
    sl_read_result r;
    assert_int_equal(sl_iter_open(&it, s, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    assert_int_equal(sl_iter_read(it, recs, 0, &r), SL_EVALIDATION);
    assert_int_equal(sl_iter_read(it, recs, 10001, &r), SL_EVALIDATION);
    assert_int_equal(sl_iter_read(it, recs, 100, &r), 0);
    assert_int_equal(r.count, 10);            /* 10 MiB per GetRecords */
    assert_int_equal(sl_iter_read(it, recs, 100, &r), 0);
    assert_int_equal(r.count, 2);
    sl_iter_close(it);
    assert_int_equal(sl_iter_open(&it, s, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    assert_int_equal(sl_iter_read(it, recs, 3, &r), 0);
    assert_int_equal(r.count, 3);             /* limit */
    assert_int_equal(r.last_sequence, recs[2].sequence);
    sl_iter_close(it);
    free(d);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

static void millis_behind_latest(void **state)
{
    fx f;
    fx_open(&f, *state, 1);
    tu_put(f.p, "k", 1);
    sl_vclock_advance(f.vc, 100);
    tu_put(f.p, "k", 2);
    sl_vclock_advance(f.vc, 100);
    tu_put(f.p, "k", 3);
    sl_vclock_advance(f.vc, 5000);
    sl_iter *it;
    sl_record r[3];
    sl_read_result res;
    assert_int_equal(sl_iter_open(&it, f.s, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    assert_int_equal(sl_iter_read(it, r, 1, &res), 0);
    /* the next unread record arrived at T0+100; now is T0+5200 */
    assert_int_equal(res.millis_behind_latest, 5100);
    assert_int_equal(sl_iter_read(it, r, 3, &res), 0);
    assert_int_equal(res.count, 2);
    assert_int_equal(res.millis_behind_latest, 0);
    sl_iter_close(it);
    fx_close(&f);
}

static void close_with_open_iterator(void **state)
{
    fx f;
    fx_open(&f, *state, 1);
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, f.s, SHARD0, SL_ITER_LATEST, 0), 0);
    sl_producer_close(f.p);
    assert_int_equal(sl_stream_close(f.s), SL_EINUSE);
    assert_non_null(strstr(sl_errmsg(f.s), "open"));
    sl_iter_close(it);
    assert_int_equal(sl_stream_close(f.s), 0);
    sl_vclock_free(f.vc);
}

/* ---- waiting ------------------------------------------------------------- */

typedef struct waiter {
    sl_iter *it;
    int rc;
    size_t got;
} waiter;

static void *wait_thread(void *arg)
{
    waiter *w = arg;
    /* a long timeout: if the wake-up were lost, the test would fail on the
    ** timeout (rc 0), not pass by luck */
    w->rc = sl_iter_wait(w->it, 20000);
    sl_record r[4];
    sl_read_result res;
    if (w->rc == 1 && sl_iter_read(w->it, r, 4, &res) == 0) w->got = res.count;
    return NULL;
}

static void wait_times_out_and_wakes(void **state)
{
    fx f;
    fx_open(&f, *state, 1);
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, f.s, SHARD0, SL_ITER_LATEST, 0), 0);
    assert_int_equal(sl_iter_wait(it, 0), 0);
    assert_int_equal(sl_iter_wait(it, 5), 0);
    tu_put(f.p, "k", 1);
    assert_int_equal(sl_iter_wait(it, 0), 1);
    sl_record r[2];
    assert_int_equal(read_n(it, r, 2), 1);
    /* a waiter in another thread wakes on commit */
    waiter w = {it, -99, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, wait_thread, &w), 0);
    tu_put(f.p, "k", 2);
    pthread_join(th, NULL);
    assert_int_equal(w.rc, 1);
    assert_int_equal(w.got, 1);
    sl_iter_close(it);
    fx_close(&f);
}

/* A waiter parked at the end of a segment wakes when the writer rolls over
** into a new one, and the read then moves across. */
static void wait_across_roll_over(void **state)
{
    fx f;
    fx_open(&f, *state, 1);
    char d[1000];
    memset(d, 'r', sizeof d);
    int n = 0;
    /* fill the first segment to just short of its end */
    while (tu_nsegs(*state, "it", 0) < 2) {
        assert_int_equal(sl_put(f.p, "k", d, sizeof d, NULL), 0);
        n++;
    }
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, f.s, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    tu_recs all = {0};
    tu_drain(it, &all);
    assert_int_equal(all.n, (size_t)n);
    waiter w = {it, -99, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, wait_thread, &w), 0);
    assert_int_equal(sl_put(f.p, "k", d, sizeof d, NULL), 0);
    pthread_join(th, NULL);
    assert_int_equal(w.rc, 1);
    assert_int_equal(w.got, 1);
    tu_recs_free(&all);
    sl_iter_close(it);
    fx_close(&f);
}

/* Key compaction removes older records of a key from sealed segments, but
** their numbers stay positions: a consumer that read one may checkpoint it
** (even once compaction removed it) and resume after it, and AT/AFTER_SEQUENCE_NUMBER
** of it start at the next record.  (Found by test_crashmatrix: a consumer
** could neither checkpoint nor resume, SL_EINVAL.)  Numbers that never
** were records still fail. */
static void compacted_numbers_stay_positions(void **state)
{
    fx f;
    fx_open(&f, *state, 1);
    assert_int_equal(sl_consumer_register(f.s, "c", SL_CONSUMER_SHARED), 0);
    sl_consumer *c;
    assert_int_equal(sl_consumer_open(&c, f.s, "c"), 0);
    enum { N = 300 };
    static uint64_t seq[N];
    char d[1000], key[16];
    memset(d, 'c', sizeof d);
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "k%d", i % 5);
        assert_int_equal(sl_put(f.p, key, d, sizeof d, &seq[i]), 0);
    }
    /* checkpointed before compaction removes it, and after */
    assert_int_equal(sl_consumer_checkpoint(c, SHARD0, seq[1]), 0);
    assert_int_equal(sl_stream_set_compaction(f.s, SL_COMPACTION_KEY), 0);
    sl_maint_stats st;
    assert_int_equal(sl_stream_maintain(f.s, -1, NULL, NULL, &st), 0);
    assert_true(st.records_compacted > 100);
    tu_recs all = {0};
    tu_read_shard(f.s, SHARD0, &all);
    size_t k = 0;
    while (k < all.n && all.v[k].seq <= seq[1]) assert_true(all.v[k++].seq != seq[1]);
    assert_true(k < all.n);
    uint64_t next = all.v[k].seq;
    sl_record r[1];
    sl_read_result res;
    for (int type = SL_ITER_AT_SEQUENCE_NUMBER; type <= SL_ITER_AFTER_SEQUENCE_NUMBER; type++) {
        sl_iter *it;
        assert_int_equal(sl_iter_open(&it, f.s, SHARD0, (sl_iter_type)type, seq[1]), 0);
        assert_int_equal(sl_iter_read(it, r, 1, &res), 0);
        assert_int_equal(res.count, 1);
        assert_int_equal(r[0].sequence, next);
        sl_iter_close(it);
    }
    sl_iter *it;
    assert_int_equal(sl_consumer_iter_open(&it, c, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    assert_int_equal(sl_iter_read(it, r, 1, &res), 0);
    assert_int_equal(r[0].sequence, next);
    sl_iter_close(it);
    assert_int_equal(sl_consumer_checkpoint(c, SHARD0, seq[6]), 0);
    uint64_t ck;
    assert_int_equal(sl_consumer_get_checkpoint(c, SHARD0, &ck), 0);
    assert_int_equal(ck, seq[6]);
    assert_int_equal(sl_consumer_iter_open(&it, c, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    assert_int_equal(sl_iter_read(it, r, 1, &res), 0);
    assert_true(r[0].sequence > seq[6]);
    sl_iter_close(it);
    /* past the end: never a record */
    assert_int_equal(sl_iter_open(&it, f.s, SHARD0, SL_ITER_AFTER_SEQUENCE_NUMBER, seq[N - 1] + 5),
                     SL_EINVAL);
    assert_int_equal(sl_consumer_checkpoint(c, SHARD0, seq[N - 1] + 5), SL_EINVAL);
    tu_recs_free(&all);
    assert_int_equal(sl_consumer_close(c), 0);
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(trim_horizon_on_empty_then_filled, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(latest_sees_only_new, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(at_and_after_every_sequence, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(sequence_errors, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(at_timestamp, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(read_limits_and_bytes_cap, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(millis_behind_latest, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(close_with_open_iterator, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(wait_times_out_and_wakes, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(wait_across_roll_over, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(compacted_numbers_stay_positions, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests_name("iterator", tests, NULL, NULL);
}
