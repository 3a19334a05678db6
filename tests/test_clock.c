/*
** test_clock.c -- the virtual clock, and how a stream's clock stamps records:
** arrival times follow the clock and never go backwards within a shard.
*/
#include "testutil.h"

#include <time.h>

#define T0 INT64_C(1700000000000)

/* ---- the virtual clock ------------------------------------------------------ */

static void vclock_basics(void **state)
{
    (void)state;
    sl_vclock *vc = NULL;
    assert_int_equal(sl_vclock_new(&vc, 1000), 0);
    assert_non_null(vc);
    const sl_clock *c = sl_vclock_clock(vc);
    assert_non_null(c);
    assert_int_equal(c->version, SL_CLOCK_VERSION);
    assert_non_null(c->now_ms);
    assert_ptr_equal(sl_vclock_clock(vc), c); /* stable */

    assert_true(sl_vclock_now(vc) == 1000);
    assert_true(c->now_ms(c->ctx) == 1000);

    sl_vclock_advance(vc, 5);
    assert_true(sl_vclock_now(vc) == 1005);
    assert_true(c->now_ms(c->ctx) == 1005);
    sl_vclock_advance(vc, 0);
    assert_true(sl_vclock_now(vc) == 1005);

    /* a negative advance is ignored */
    sl_vclock_advance(vc, -10);
    assert_true(sl_vclock_now(vc) == 1005);
    sl_vclock_advance(vc, INT64_MIN);
    assert_true(sl_vclock_now(vc) == 1005);

    /* set goes anywhere, backwards included */
    sl_vclock_set(vc, 500);
    assert_true(sl_vclock_now(vc) == 500);
    assert_true(c->now_ms(c->ctx) == 500);
    sl_vclock_set(vc, T0);
    assert_true(sl_vclock_now(vc) == T0);
    sl_vclock_set(vc, -42);
    assert_true(sl_vclock_now(vc) == -42);
    assert_true(c->now_ms(c->ctx) == -42);
    sl_vclock_advance(vc, 50);
    assert_true(sl_vclock_now(vc) == 8);

    /* two clocks are independent */
    sl_vclock *vc2 = NULL;
    assert_int_equal(sl_vclock_new(&vc2, -7), 0);
    assert_true(sl_vclock_now(vc2) == -7);
    sl_vclock_advance(vc2, 7);
    assert_true(sl_vclock_now(vc2) == 0);
    assert_true(sl_vclock_now(vc) == 8);
    assert_ptr_not_equal(sl_vclock_clock(vc2), c);
    assert_true(sl_vclock_clock(vc2)->now_ms(sl_vclock_clock(vc2)->ctx) == 0);

    sl_vclock_free(vc2);
    sl_vclock_free(vc);
    sl_vclock_free(NULL);

    assert_int_equal(sl_vclock_new(NULL, 0), SL_EINVAL);
    assert_null(sl_vclock_clock(NULL));
}

typedef struct adv_arg {
    sl_vclock *vc;
    _Atomic int *ready;
    int64_t not_increasing;          /* reads after an advance that did not
                                        move past the previous read */
} adv_arg;

static void *advancer(void *arg)
{
    adv_arg *a = arg;
    /* start both threads within nanoseconds of each other: a spin, not a
    ** sleep, so that the increments really contend */
    atomic_fetch_add(a->ready, 1);
    while (atomic_load(a->ready) < 2) {
    }
    int64_t prev = sl_vclock_now(a->vc);
    for (int i = 0; i < 10000; i++) {
        sl_vclock_advance(a->vc, 1);
        int64_t now = sl_vclock_now(a->vc);
        if (now <= prev) a->not_increasing++;
        prev = now;
    }
    return NULL;
}

/* Two threads advance one clock by 1 ms 10000 times each: no increment is
** lost.  Repeated, since one lost update per run is all a race needs. */
static void vclock_concurrent_advance(void **state)
{
    (void)state;
    for (int round = 0; round < 20; round++) {
        int64_t start = T0 + round * INT64_C(1000000);
        sl_vclock *vc;
        assert_int_equal(sl_vclock_new(&vc, start), 0);
        _Atomic int ready = 0;
        adv_arg a[2];
        pthread_t t[2];
        for (int i = 0; i < 2; i++) {
            memset(&a[i], 0, sizeof a[i]);
            a[i].vc = vc;
            a[i].ready = &ready;
            assert_int_equal(pthread_create(&t[i], NULL, advancer, &a[i]), 0);
        }
        for (int i = 0; i < 2; i++) assert_int_equal(pthread_join(t[i], NULL), 0);
        int64_t end = sl_vclock_now(vc);
        sl_vclock_free(vc);
        if (end != start + 20000)
            fail_msg("round %d: the clock ended at start + %" PRId64 ", want start + 20000",
                     round, end - start);
        assert_true(a[0].not_increasing == 0 && a[1].not_increasing == 0);
    }
}

/* ---- the real clock ---------------------------------------------------------- */

static void real_clock(void **state)
{
    (void)state;
    int64_t t = (int64_t)time(NULL) * 1000;
    int64_t r = sl__realtime_ms();
    int64_t c = sl__real_clock.now_ms(sl__real_clock.ctx);
    assert_int_equal(sl__real_clock.version, SL_CLOCK_VERSION);
    assert_true(r >= t - 2000 && r <= t + 2000);
    assert_true(c >= r && c <= r + 2000);
    int64_t m1 = sl__monotonic_ms(), m2 = sl__monotonic_ms();
    assert_true(m1 > 0 && m2 >= m1);
}

/* ---- streams on a virtual clock ---------------------------------------------- */

static sl_put_result put_hash(sl_producer *p, const char *hash_key, const char *data)
{
    sl_put_entry e = {"key", data, strlen(data), hash_key};
    sl_put_result r;
    int rc = sl_producer_put(p, &e, &r);
    if (rc) fail_msg("put %s: %s", data, sl_errmsg(p));
    return r;
}

#define HK_FIRST "0"
#define HK_LAST "340282366920938463463374607431768211455"

static void arrival_follows_vclock(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    tu_opts o = {.shards = 1, .clock = sl_vclock_clock(vc)};
    sl_stream *s = tu_create(root, "timed", &o);

    /* creation time is the stream clock's */
    sl_stream_desc *d;
    assert_int_equal(sl_stream_describe(&d, s), 0);
    assert_true(d->created_ms == T0);
    sl_stream_desc_free(d);

    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    const int64_t steps[] = {0, 1, 0, 999, 60000, 0, 3600000};
    int64_t want[16];
    size_t n = 0;
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        sl_vclock_advance(vc, steps[i]);
        want[n++] = sl_vclock_now(vc);
        tu_put(p, "k", (int)i);
    }
    /* one batch: one time for all its entries */
    sl_vclock_advance(vc, 5);
    sl_put_entry batch[3] = {{"a", "1", 1, NULL}, {"b", "2", 1, NULL}, {"c", "3", 1, NULL}};
    sl_put_result res[3];
    size_t failed = 1;
    assert_int_equal(sl_producer_put_batch(p, batch, 3, res, &failed), 0);
    assert_int_equal(failed, 0);
    for (int i = 0; i < 3; i++) want[n++] = sl_vclock_now(vc);
    sl_producer_close(p);

    tu_recs recs = {0};
    tu_read_shard(s, "shardId-000000000000", &recs);
    assert_int_equal(recs.n, n);
    for (size_t i = 0; i < n; i++)
        if (recs.v[i].ms != want[i])
            fail_msg("record %zu: arrival %" PRId64 ", clock was %" PRId64, i, recs.v[i].ms,
                     want[i]);
    tu_recs_free(&recs);

    /* AT_TIMESTAMP uses those times: the first record at or after T0 + 1 is
    ** the second one */
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, s, "shardId-000000000000", SL_ITER_AT_TIMESTAMP,
                                  (uint64_t)(T0 + 1)),
                     0);
    tu_drain(it, &recs);
    sl_iter_close(it);
    assert_int_equal(recs.n, n - 1);
    assert_true(recs.v[0].ms == T0 + 1);
    tu_recs_free(&recs);

    /* the clock moved only when told: nothing read it into the future */
    assert_true(sl_vclock_now(vc) == want[n - 1]);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

static void assert_arrivals(sl_stream *s, const char *shard, const int64_t *want, size_t n)
{
    tu_recs recs = {0};
    tu_read_shard(s, shard, &recs);
    assert_int_equal(recs.n, n);
    for (size_t i = 0; i < n; i++) {
        if (recs.v[i].ms != want[i])
            fail_msg("%s record %zu (%s): arrival %" PRId64 ", want %" PRId64, shard, i,
                     recs.v[i].data, recs.v[i].ms, want[i]);
        if (i) assert_true(recs.v[i].ms >= recs.v[i - 1].ms);
    }
    tu_recs_free(&recs);
}

/* A clock stepping backwards: arrival times in a shard are clamped to the
** shard's latest, per shard, across batches and across a reopen. */
static void arrival_clamped_per_shard(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0 + 10000), 0);
    tu_opts o = {.shards = 2, .clock = sl_vclock_clock(vc)};
    sl_stream *s = tu_create(root, "stepback", &o);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);

    assert_int_equal(put_hash(p, HK_FIRST, "a0").shard_index, 0);   /* T0+10000 */
    sl_vclock_set(vc, T0 + 5000);
    assert_int_equal(put_hash(p, HK_FIRST, "a1").shard_index, 0);   /* clamped */
    assert_int_equal(put_hash(p, HK_LAST, "b0").shard_index, 1);    /* own shard: 5000 */

    /* a batch over both shards at the earlier time */
    sl_put_entry batch[2] = {{"k", "a2", 2, HK_FIRST}, {"k", "b1", 2, HK_LAST}};
    sl_put_result res[2];
    size_t failed = 1;
    assert_int_equal(sl_producer_put_batch(p, batch, 2, res, &failed), 0);
    assert_int_equal(failed, 0);
    assert_int_equal(res[0].shard_index, 0);
    assert_int_equal(res[1].shard_index, 1);

    sl_vclock_set(vc, T0 + 12000);
    put_hash(p, HK_FIRST, "a3");                                     /* 12000 */
    sl_vclock_set(vc, T0 + 11000);
    put_hash(p, HK_FIRST, "a4");                                     /* clamped */
    put_hash(p, HK_LAST, "b2");                                      /* 11000 */
    sl_vclock_set(vc, INT64_C(0));
    put_hash(p, HK_LAST, "b3");                                      /* clamped */
    sl_producer_close(p);

    const int64_t want_a[] = {T0 + 10000, T0 + 10000, T0 + 10000, T0 + 12000, T0 + 12000};
    const int64_t want_b[] = {T0 + 5000, T0 + 5000, T0 + 11000, T0 + 11000};
    assert_arrivals(s, "shardId-000000000000", want_a, 5);
    assert_arrivals(s, "shardId-000000000001", want_b, 4);
    assert_int_equal(sl_stream_close(s), 0);

    /* reopened with the clock even further back: the clamp holds */
    sl_vclock_set(vc, T0 + 3000);
    s = tu_open(root, "stepback", &o);
    assert_int_equal(sl_producer_open(&p, s), 0);
    put_hash(p, HK_FIRST, "a5");
    put_hash(p, HK_LAST, "b4");
    sl_vclock_set(vc, T0 + 20000);
    put_hash(p, HK_FIRST, "a6");
    sl_producer_close(p);
    const int64_t want_a2[] = {T0 + 10000, T0 + 10000, T0 + 10000, T0 + 12000,
                               T0 + 12000, T0 + 12000, T0 + 20000};
    const int64_t want_b2[] = {T0 + 5000, T0 + 5000, T0 + 11000, T0 + 11000, T0 + 11000};
    assert_arrivals(s, "shardId-000000000000", want_a2, 7);
    assert_arrivals(s, "shardId-000000000001", want_b2, 5);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* Many records on a clock that steps back every few puts, across segment
** roll-overs: every shard's arrival times stay non-decreasing. */
static void arrival_monotonic_across_segments(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    tu_opts o = {.shards = 1, .clock = sl_vclock_clock(vc)};
    sl_stream *s = tu_create(root, "sawtooth", &o);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    char data[1000];
    memset(data, 'd', sizeof data);
    int64_t high = T0;
    const int N = 400; /* ~400 KB: several 64 KiB segments */
    int64_t *want = calloc((size_t)N, sizeof *want);
    assert_non_null(want);
    for (int i = 0; i < N; i++) {
        if (i % 7 == 6) sl_vclock_set(vc, sl_vclock_now(vc) - 50);
        else sl_vclock_advance(vc, 10);
        if (sl_vclock_now(vc) > high) high = sl_vclock_now(vc);
        want[i] = high;
        assert_int_equal(sl_put(p, "k", data, sizeof data, NULL), 0);
    }
    sl_producer_close(p);
    char *dir = tu_path("%s/sawtooth/shardId-000000000000", root);
    assert_true(tu_count_files(dir, ".seg") > 1);
    free(dir);
    assert_arrivals(s, "shardId-000000000000", want, (size_t)N);
    assert_int_equal(sl_stream_close(s), 0);
    free(want);
    sl_vclock_free(vc);
}

/* ---- clock providers that are not valid --------------------------------------- */

static int64_t fixed_now(void *ctx)
{
    (void)ctx;
    return T0;
}

static sl_clock bad_version = {0, fixed_now, NULL};
static sl_clock no_fn = {SL_CLOCK_VERSION, NULL, NULL};

static void bad_clock_rejected_at_open(void **state)
{
    const char *root = *state;
    const sl_clock *bad[] = {&bad_version, &no_fn};
    sl_stream *s = tu_create(root, "opened", NULL);
    assert_int_equal(sl_stream_close(s), 0);
    for (size_t i = 0; i < 2; i++) {
        sl_open_opts oo = SL_OPEN_OPTS_INIT;
        oo.clock = bad[i];
        s = (sl_stream *)&oo;
        assert_int_equal(sl_stream_open(&s, root, "opened", &oo), SL_EINVAL);
        assert_null(s);
        assert_non_null(strstr(sl_errmsg(NULL), "clock"));
    }
    /* and no lock was left behind */
    s = tu_open(root, "opened", NULL);
    assert_int_equal(sl_stream_close(s), 0);
}

/* sl_stream_create with a bad clock fails and, creation being atomic ("the
** stream appears whole or not at all"), leaves no stream behind: a retry
** with a good clock must not meet SL_EINUSE. */
static void bad_clock_rejected_at_create(void **state)
{
    const char *root = *state;
    const sl_clock *bad[] = {&bad_version, &no_fn};
    for (size_t i = 0; i < 2; i++) {
        sl_stream_config c = SL_STREAM_CONFIG_INIT;
        c.name = i ? "created-b" : "created-a";
        sl_open_opts oo = SL_OPEN_OPTS_INIT;
        oo.clock = bad[i];
        sl_stream *s = NULL;
        assert_int_equal(sl_stream_create(&s, root, &c, &oo), SL_EINVAL);
        assert_null(s);
        assert_non_null(strstr(sl_errmsg(NULL), "clock"));
        sl_name_list *l;
        assert_int_equal(sl_stream_list(&l, root), 0);
        size_t found = 0;
        for (size_t k = 0; k < l->count; k++) found += !strcmp(l->names[k], c.name);
        sl_name_list_free(l);
        if (found)
            fail_msg("sl_stream_create failed with SL_EINVAL (bad clock) but left "
                     "stream '%s' behind",
                     c.name);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vclock_basics),
        cmocka_unit_test(vclock_concurrent_advance),
        cmocka_unit_test(real_clock),
        cmocka_unit_test_setup_teardown(arrival_follows_vclock, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(arrival_clamped_per_shard, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(arrival_monotonic_across_segments, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(bad_clock_rejected_at_open, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(bad_clock_rejected_at_create, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests_name("clock", tests, NULL, NULL);
}
