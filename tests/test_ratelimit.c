/*
** test_ratelimit.c -- rate accounting (token buckets, write admission,
** shared reads and the 10 MiB penalty), the KDS profile, fault injection,
** sl_open_opts versions.  Everything runs on a virtual clock: no test
** sleeps or measures time.
*/
#include "testutil.h"

#include <stddef.h>

#define NAME "rate"
#define T0 1000000                    /* the virtual clock's start, ms */
#define SHARD0 "shardId-000000000000"
#define SHARD1 "shardId-000000000001"
#define EHK_FIRST "0"                 /* explicit hash keys: first shard */
#define EHK_LAST "340282366920938463463374607431768211455"   /* last shard */
#define MIB (1u << 20)

typedef struct fxo {
    const char *name;                 /* NULL: NAME */
    sl_rate_mode mode;
    const sl_limits *limits;
    uint32_t flags;
    uint32_t shards;                  /* 0: 1 */
    uint32_t max_kib;
    uint64_t segment_bytes;           /* 0: 32 MiB (reads stay in one) */
} fxo;

typedef struct fx {
    sl_vclock *vc;
    sl_stream *s;
    sl_producer *p;
} fx;

static void fx_open(fx *f, const char *root, const fxo *o)
{
    assert_int_equal(sl_vclock_new(&f->vc, T0), 0);
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = o->name ? o->name : NAME;
    c.shard_count = o->shards ? o->shards : 1;
    c.durability = SL_DURABILITY_NONE;
    c.segment_bytes = o->segment_bytes ? o->segment_bytes : (32u << 20);
    c.max_record_size_kib = o->max_kib;
    sl_open_opts oo = SL_OPEN_OPTS_INIT;
    oo.clock = sl_vclock_clock(f->vc);
    oo.flags = o->flags;
    oo.rate_mode = o->mode;
    oo.limits = o->limits;
    int rc = sl_stream_create(&f->s, root, &c, &oo);
    if (rc) fprintf(stderr, "fx_open: %s\n", sl_errmsg(NULL));
    assert_int_equal(rc, 0);
    assert_int_equal(sl_producer_open(&f->p, f->s), 0);
}

static void fx_close(fx *f)
{
    sl_producer_close(f->p);
    assert_int_equal(sl_stream_close(f->s), 0);
    sl_vclock_free(f->vc);
}

static void advance(fx *f, int64_t ms) { sl_vclock_advance(f->vc, ms); }

static char zeros[2 * MIB + 16];

/* Put one record of `len` bytes of data; returns the call's code. */
static int put(fx *f, const char *key, const char *ehk, size_t len, sl_put_result *r)
{
    sl_put_entry e = {key, zeros, len, ehk};
    sl_put_result tmp;
    return sl_producer_put(f->p, &e, r ? r : &tmp);
}

/* Put n small records to the shard of `ehk`; assert every one lands. */
static void put_ok(fx *f, const char *ehk, int n)
{
    for (int i = 0; i < n; i++) {
        int rc = put(f, "k", ehk, 1, NULL);
        if (rc) fail_msg("put %d: %s", i, sl_errmsg(f->p));
    }
}

static sl_shard_counters counters(fx *f, const char *shard)
{
    sl_shard_counters c;
    assert_int_equal(sl_shard_counters_get(f->s, shard, &c), 0);
    return c;
}

static sl_iter *iter(fx *f, const char *shard)
{
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, f->s, shard, SL_ITER_TRIM_HORIZON, 0), 0);
    return it;
}

static sl_record recs[SL_GET_RECORDS_MAX];

static int rd(sl_iter *it, sl_read_result *r) { return sl_iter_read(it, recs, SL_GET_RECORDS_MAX, r); }

/* Every record of every shard; a throttled read advances the clock. */
static void drain_all(fx *f, tu_recs *out)
{
    for (size_t i = 0; i < f->s->nshards; i++) {
        char id[SL_SHARD_ID_LEN + 1];
        sl__shard_id(id, (uint32_t)i);
        sl_iter *it = iter(f, id);
        for (;;) {
            sl_read_result r;
            int rc = rd(it, &r);
            if (rc == SL_ETHROTTLED) {
                assert_true(r.retry_after_ms > 0);
                advance(f, r.retry_after_ms);
                continue;
            }
            assert_int_equal(rc, 0);
            if (!r.count) break;
            for (size_t k = 0; k < r.count; k++) tu_recs_add(out, &recs[k]);
        }
        sl_iter_close(it);
    }
}

/* ---- token buckets ------------------------------------------------------- */

static void bucket_rules(void **state)
{
    (void)state;
    sl_bucket b;
    int64_t w = -1;
    sl__bucket_init(&b, 10, 1000);                  /* 10/s: 10 milli per ms */
    for (int i = 0; i < 10; i++) assert_true(sl__bucket_take(&b, 1, 1000, &w));
    assert_false(sl__bucket_take(&b, 1, 1000, &w));
    assert_int_equal(w, 100);
    assert_int_equal(sl__bucket_wait(&b, 3, 1000), 300);
    assert_int_equal(sl__bucket_wait(&b, 50, 1000), 1000);  /* > capacity: until full */
    /* a clock stepping backwards refills nothing, and waits for it */
    assert_false(sl__bucket_take(&b, 1, 900, &w));
    assert_int_equal(w, 200);
    assert_false(sl__bucket_take(&b, 1, 1099, &w));
    assert_true(sl__bucket_take(&b, 1, 1100, &w));
    /* capacity is one second: a long pause refills 10, not more */
    for (int i = 0; i < 10; i++) assert_true(sl__bucket_take(&b, 1, 100000, &w));
    assert_false(sl__bucket_take(&b, 1, 100000, &w));
    /* a cost above the capacity passes a full bucket and leaves debt */
    assert_false(sl__bucket_take(&b, 25, 100500, &w));
    assert_int_equal(w, 500);
    assert_true(sl__bucket_take(&b, 25, 101000, &w));
    assert_int_equal(b.milli, -15000);
    assert_int_equal(sl__bucket_wait(&b, 1, 101000), 1600);
    sl__bucket_charge(&b, 5, 101000);
    assert_int_equal(b.milli, -20000);
    /* rate 0: unlimited */
    sl__bucket_init(&b, 0, 0);
    for (int i = 0; i < 1000; i++) assert_true(sl__bucket_take(&b, UINT64_MAX, 0, &w));
    assert_int_equal(sl__bucket_wait(&b, UINT64_MAX, 0), 0);
    /* huge rates and costs do not overflow */
    sl__bucket_init(&b, UINT64_MAX, INT64_MIN + 1);
    assert_true(sl__bucket_take(&b, UINT64_MAX, INT64_MAX, &w));
    assert_true(b.milli <= 0);
}

/* ---- writes -------------------------------------------------------------- */

static void write_records_per_second(void **state)
{
    static const sl_rate_mode modes[] = {SL_RATE_OFF, SL_RATE_ACCOUNT, SL_RATE_ENFORCE};
    static const char *names[] = {"off", "account", "enforce"};
    for (int m = 0; m < 3; m++) {
        fx f;
        fxo o = {.name = names[m], .mode = modes[m]};
        fx_open(&f, *state, &o);
        put_ok(&f, NULL, 1000);
        sl_put_result r;
        int rc = put(&f, "k", NULL, 1, &r);
        sl_shard_counters c = counters(&f, SHARD0);
        if (modes[m] == SL_RATE_ENFORCE) {
            assert_int_equal(rc, SL_ETHROTTLED);
            assert_int_equal(r.error, SL_ETHROTTLED);
            assert_int_equal(r.retry_after_ms, 1);
            assert_non_null(strstr(sl_errmsg(f.p), "Rate exceeded for shard " SHARD0
                                                   " in stream enforce"));
            assert_string_equal(r.error_message, sl_errmsg(f.p));
            assert_int_equal(c.records_in, 1000);
            assert_int_equal(c.bytes_in, 2000);
            assert_int_equal(c.put_throttled, 1);
            /* one more each millisecond */
            advance(&f, 1);
            assert_int_equal(put(&f, "k", NULL, 1, NULL), 0);
            assert_int_equal(put(&f, "k", NULL, 1, &r), SL_ETHROTTLED);
            assert_int_equal(r.retry_after_ms, 1);
            /* capacity is one second: a long pause gives 1,000, not more */
            advance(&f, 5000);
            put_ok(&f, NULL, 1000);
            assert_int_equal(put(&f, "k", NULL, 1, NULL), SL_ETHROTTLED);
            c = counters(&f, SHARD0);
            assert_int_equal(c.records_in, 2001);
            assert_int_equal(c.put_throttled, 3);
        } else if (modes[m] == SL_RATE_ACCOUNT) {
            assert_int_equal(rc, 0);                /* it lands anyway */
            assert_int_equal(r.retry_after_ms, 0);
            assert_int_equal(c.records_in, 1001);
            assert_int_equal(c.put_throttled, 1);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(c.records_in, 0);      /* OFF counts nothing */
            assert_int_equal(c.put_throttled, 0);
        }
        tu_recs all = {0};
        drain_all(&f, &all);
        assert_int_equal(all.n, modes[m] == SL_RATE_ENFORCE ? 2001 : 1001);
        tu_recs_free(&all);
        fx_close(&f);
    }
}

static void write_bytes_per_second(void **state)
{
    sl_limits lim = SL_LIMITS_INIT;
    lim.write_records_per_s = 100000;               /* let bytes decide */
    fx f;
    fxo o = {.mode = SL_RATE_ENFORCE, .limits = &lim};
    fx_open(&f, *state, &o);
    /* 1 KiB records (data + key): exactly 1024 per second */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 1024; i++) assert_int_equal(put(&f, "k", NULL, 1023, NULL), 0);
        sl_put_result r;
        assert_int_equal(put(&f, "k", NULL, 1023, &r), SL_ETHROTTLED);
        assert_int_equal(r.retry_after_ms, 1);
        advance(&f, 1000);
    }
    sl_shard_counters c = counters(&f, SHARD0);
    assert_int_equal(c.records_in, 2048);
    assert_int_equal(c.bytes_in, 2048u * 1024);
    assert_int_equal(c.put_throttled, 2);
    fx_close(&f);
}

static void record_larger_than_bucket(void **state)
{
    /* a 2 MiB record against the default 1 MiB/s */
    char *root = tu_path("%s/a", (char *)*state);
    fx f;
    fxo o = {.mode = SL_RATE_ENFORCE, .max_kib = 2048};
    fx_open(&f, root, &o);
    sl_put_result r;
    assert_int_equal(put(&f, "k", NULL, 1, NULL), 0);
    /* the bucket is not full: wait until it is */
    assert_int_equal(put(&f, "k", NULL, 2 * MIB - 1, &r), SL_ETHROTTLED);
    assert_int_equal(r.retry_after_ms, 1);
    advance(&f, 1);
    assert_int_equal(put(&f, "k", NULL, 2 * MIB - 1, &r), 0);   /* full: in debt */
    /* the next one waits until the 1 MiB debt (plus its 2 bytes) is repaid */
    assert_int_equal(put(&f, "k", NULL, 1, &r), SL_ETHROTTLED);
    assert_int_equal(r.retry_after_ms, 1001);
    advance(&f, 1000);
    assert_int_equal(put(&f, "k", NULL, 1, &r), SL_ETHROTTLED);
    assert_int_equal(r.retry_after_ms, 1);
    advance(&f, 1);
    assert_int_equal(put(&f, "k", NULL, 1, &r), 0);
    fx_close(&f);
    free(root);

    /* a small byte budget: 1000 bytes/s, a 5000-byte record */
    root = tu_path("%s/b", (char *)*state);
    sl_limits lim = SL_LIMITS_INIT;
    lim.write_bytes_per_s = 1000;
    o = (fxo){.mode = SL_RATE_ENFORCE, .limits = &lim};
    fx_open(&f, root, &o);
    assert_int_equal(put(&f, "k", NULL, 4999, &r), 0);
    assert_int_equal(put(&f, "k", NULL, 1, &r), SL_ETHROTTLED);
    assert_int_equal(r.retry_after_ms, 4002);       /* 4000 debt + 2 bytes */
    advance(&f, 4001);
    assert_int_equal(put(&f, "k", NULL, 1, &r), SL_ETHROTTLED);
    assert_int_equal(r.retry_after_ms, 1);
    advance(&f, 1);
    assert_int_equal(put(&f, "k", NULL, 1, &r), 0);
    /* the large one again needs a full bucket */
    assert_int_equal(put(&f, "k", NULL, 4999, &r), SL_ETHROTTLED);
    assert_int_equal(r.retry_after_ms, 1000);       /* until full */
    fx_close(&f);
    free(root);
}

static void batch_partly_throttled(void **state)
{
    fx f;
    fxo o = {.mode = SL_RATE_ENFORCE, .shards = 2};
    fx_open(&f, *state, &o);
    put_ok(&f, EHK_FIRST, 700);
    enum { N = 500 };
    static sl_put_entry e[N];
    static sl_put_result r[N];
    static char d[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(d[i], sizeof d[i], "b%d", i);
        e[i] = (sl_put_entry){"k", d[i], strlen(d[i]), EHK_FIRST};
    }
    size_t failed = 99;
    assert_int_equal(sl_producer_put_batch(f.p, e, N, r, &failed), 0);
    assert_int_equal(failed, 200);
    for (int i = 0; i < N; i++) {
        if (i < 300) {
            assert_int_equal(r[i].error, 0);
            assert_string_equal(r[i].shard_id, SHARD0);
            assert_int_equal(r[i].retry_after_ms, 0);
            if (i) assert_true(r[i].sequence > r[i - 1].sequence);
        } else {
            assert_int_equal(r[i].error, SL_ETHROTTLED);
            assert_int_equal(r[i].retry_after_ms, 1);
            assert_int_equal(r[i].sequence, 0);
            assert_non_null(strstr(r[i].error_message, "Rate exceeded for shard " SHARD0));
        }
    }
    /* a mixed batch: the full shard's entries fail, the other's land */
    for (int i = 0; i < 100; i++) e[i].explicit_hash_key = i % 2 ? EHK_LAST : EHK_FIRST;
    assert_int_equal(sl_producer_put_batch(f.p, e, 100, r, &failed), 0);
    assert_int_equal(failed, 50);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(r[i].error, i % 2 ? 0 : SL_ETHROTTLED);
        if (i % 2) assert_string_equal(r[i].shard_id, SHARD1);
    }
    /* 50 ms later: exactly 50 more, the first 50 in request order */
    advance(&f, 50);
    for (int i = 0; i < 100; i++) e[i].explicit_hash_key = EHK_FIRST;
    assert_int_equal(sl_producer_put_batch(f.p, e, 100, r, &failed), 0);
    assert_int_equal(failed, 50);
    for (int i = 0; i < 100; i++) assert_int_equal(r[i].error, i < 50 ? 0 : SL_ETHROTTLED);
    assert_int_equal(counters(&f, SHARD0).records_in, 1050);
    assert_int_equal(counters(&f, SHARD0).put_throttled, 300);
    assert_int_equal(counters(&f, SHARD1).records_in, 50);
    tu_recs got = {0};
    drain_all(&f, &got);
    assert_int_equal(got.n, 1100);
    for (int i = 0; i < 300; i++) assert_int_equal(atoi(got.v[700 + i].data + 1), i);
    for (int i = 0; i < 50; i++) assert_int_equal(atoi(got.v[1000 + i].data + 1), i);
    tu_recs_free(&got);
    fx_close(&f);
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

/* Records an append could not land are not counted (sl__rl_write_undo). */
static void failed_append_uncounted(void **state)
{
    sl_limits lim = SL_LIMITS_INIT;
    lim.write_records_per_s = 100000;
    fx f;
    fxo o = {.mode = SL_RATE_ACCOUNT, .limits = &lim, .segment_bytes = SL_SEGMENT_BYTES_MIN};
    fx_open(&f, *state, &o);
    for (int i = 0; i < 200; i++) assert_int_equal(put(&f, "k", NULL, 200, NULL), 0);
    sl__os.fallocate = fallocate_enospc;
    enum { N = 200 };
    sl_put_entry e[N];
    sl_put_result r[N];
    for (int i = 0; i < N; i++) e[i] = (sl_put_entry){"k", zeros, 200, NULL};
    size_t failed = 0;
    assert_int_equal(sl_producer_put_batch(f.p, e, N, r, &failed), 0);
    sl__os_reset();
    sl_shard_counters c = counters(&f, SHARD0);
    assert_int_equal(c.records_in, 200 + N - failed);
    assert_int_equal(c.bytes_in, (200 + N - failed) * 201);
    fx_close(&f);
}

/* The same puts at the same times land the same in OFF and ACCOUNT mode,
** and ACCOUNT counts exactly what ENFORCE fails. */
static void account_changes_nothing(void **state)
{
    static const sl_rate_mode modes[] = {SL_RATE_OFF, SL_RATE_ACCOUNT, SL_RATE_ENFORCE};
    static const char *names[] = {"off", "account", "enforce"};
    size_t landed[3] = {0, 0, 0}, failed_total[3] = {0, 0, 0};
    uint64_t throttled[3];
    enum { N = 300 };
    static sl_put_entry e[N];
    static sl_put_result r[N];
    for (int m = 0; m < 3; m++) {
        fx f;
        fxo o = {.name = names[m], .mode = modes[m], .shards = 2};
        fx_open(&f, *state, &o);
        uint32_t x = 12345;
        for (int round = 0; round < 40; round++) {
            x = x * 1103515245u + 12345u;
            size_t n = 1 + (x >> 8) % N;
            for (size_t i = 0; i < n; i++) {
                x = x * 1103515245u + 12345u;
                e[i] = (sl_put_entry){(x >> 9) % 3 ? "a" : "b", zeros, (x >> 4) % 4000, NULL};
            }
            size_t failed;
            assert_int_equal(sl_producer_put_batch(f.p, e, n, r, &failed), 0);
            failed_total[m] += failed;
            advance(&f, (x >> 12) % 300);
        }
        tu_recs all = {0};
        drain_all(&f, &all);
        landed[m] = all.n;
        tu_recs_free(&all);
        throttled[m] = counters(&f, SHARD0).put_throttled + counters(&f, SHARD1).put_throttled;
        fx_close(&f);
    }
    assert_int_equal(failed_total[0], 0);
    assert_int_equal(failed_total[1], 0);
    assert_int_equal(landed[0], landed[1]);
    assert_int_equal(throttled[0], 0);
    assert_true(failed_total[2] > 0);
    assert_int_equal(throttled[1], failed_total[2]);
    assert_int_equal(throttled[2], failed_total[2]);
    assert_int_equal(landed[2] + failed_total[2], landed[1]);
}

/* ---- shared reads -------------------------------------------------------- */

static void read_calls_per_second(void **state)
{
    fx f;
    fxo o = {.mode = SL_RATE_ENFORCE};
    fx_open(&f, *state, &o);
    put_ok(&f, NULL, 10);
    sl_iter *it = iter(&f, SHARD0);
    sl_read_result r;
    for (int i = 0; i < 5; i++) assert_int_equal(rd(it, &r), 0);
    assert_int_equal(rd(it, &r), SL_ETHROTTLED);
    assert_int_equal(r.retry_after_ms, 200);
    assert_int_equal(r.count, 0);
    assert_non_null(strstr(sl_errmsg(it), "Rate exceeded for Shard - " SHARD0 " in stream " NAME));
    advance(&f, 199);
    assert_int_equal(rd(it, &r), SL_ETHROTTLED);
    assert_int_equal(r.retry_after_ms, 1);
    advance(&f, 1);
    assert_int_equal(rd(it, &r), 0);
    assert_int_equal(r.retry_after_ms, 0);
    sl_shard_counters c = counters(&f, SHARD0);
    assert_int_equal(c.reads, 6);
    assert_int_equal(c.read_throttled, 2);
    assert_int_equal(c.records_out, 10);
    assert_int_equal(c.bytes_out, 20);
    sl_iter_close(it);
    fx_close(&f);
}

static void read_records_and_bytes_per_second(void **state)
{
    sl_limits lim = SL_LIMITS_INIT;
    lim.write_records_per_s = 1000000;
    lim.write_bytes_per_s = 1ull << 30;
    fx f;
    fxo o = {.mode = SL_RATE_ENFORCE, .limits = &lim};
    fx_open(&f, *state, &o);
    /* 4000 records: 2000 over the 2000/s; repaid in exactly 1000 ms */
    put_ok(&f, NULL, 4000);
    sl_iter *it = iter(&f, SHARD0);
    sl_read_result r;
    assert_int_equal(rd(it, &r), 0);
    assert_int_equal(r.count, 4000);
    advance(&f, 999);
    assert_int_equal(rd(it, &r), SL_ETHROTTLED);
    assert_int_equal(r.retry_after_ms, 1);
    advance(&f, 1);
    assert_int_equal(rd(it, &r), 0);
    assert_int_equal(r.count, 0);
    /* 3 MiB: 1 MiB over the 2 MiB/s; repaid in 500 ms */
    for (int i = 0; i < 48; i++) assert_int_equal(put(&f, "k", NULL, 64 * 1024 - 1, NULL), 0);
    advance(&f, 1000);
    assert_int_equal(rd(it, &r), 0);
    assert_int_equal(r.count, 48);
    advance(&f, 499);
    assert_int_equal(rd(it, &r), SL_ETHROTTLED);
    assert_int_equal(r.retry_after_ms, 1);
    advance(&f, 1);
    assert_int_equal(rd(it, &r), 0);
    sl_shard_counters c = counters(&f, SHARD0);
    assert_int_equal(c.records_out, 4048);
    assert_int_equal(c.bytes_out, 8000 + 48ull * 64 * 1024);
    assert_int_equal(c.read_throttled, 2);
    sl_iter_close(it);
    fx_close(&f);
}

/* A read that returns SL_GET_BYTES_MAX throttles every read for 5 s. */
static void ten_mib_penalty(void **state)
{
    for (int pass = 0; pass < 2; pass++) {
        sl_limits lim = SL_LIMITS_INIT;
        lim.write_bytes_per_s = 1ull << 30;
        if (pass == 1) {
            lim.read_penalty_ms = 1234;
            lim.read_bytes_per_s = 100 * MIB;   /* no debt: the penalty alone */
        }
        fx f;
        fxo o = {.name = pass ? "custom" : "default", .mode = SL_RATE_ENFORCE, .limits = &lim};
        fx_open(&f, *state, &o);
        /* 12 records of exactly 1 MiB (data + key) */
        for (int i = 0; i < 12; i++) assert_int_equal(put(&f, "k", NULL, MIB - 1, NULL), 0);
        sl_iter *it = iter(&f, SHARD0);
        sl_read_result r;
        assert_int_equal(rd(it, &r), 0);
        assert_int_equal(r.count, 10);                  /* 10 MiB: the cap */
        int64_t penalty = pass ? 1234 : 5000;
        advance(&f, penalty - 1);
        assert_int_equal(rd(it, &r), SL_ETHROTTLED);
        assert_int_equal(r.retry_after_ms, 1);
        advance(&f, 1);
        assert_int_equal(rd(it, &r), 0);
        assert_int_equal(r.count, 2);                   /* no new penalty */
        advance(&f, 1000);
        assert_int_equal(rd(it, &r), 0);
        sl_iter_close(it);
        fx_close(&f);
    }
}

/* In ACCOUNT mode reads over the budget go ahead and are counted. */
static void account_reads(void **state)
{
    fx f;
    fxo o = {.mode = SL_RATE_ACCOUNT};
    fx_open(&f, *state, &o);
    put_ok(&f, NULL, 3);
    sl_iter *it = iter(&f, SHARD0);
    sl_read_result r;
    for (int i = 0; i < 8; i++) {
        assert_int_equal(rd(it, &r), 0);
        assert_int_equal(r.retry_after_ms, 0);
    }
    sl_shard_counters c = counters(&f, SHARD0);
    assert_int_equal(c.reads, 8);
    assert_int_equal(c.read_throttled, 3);
    assert_int_equal(c.records_out, 3);
    sl_iter_close(it);
    fx_close(&f);
}

static void counters_and_age(void **state)
{
    fx f;
    fxo o = {.mode = SL_RATE_ACCOUNT, .shards = 2};
    fx_open(&f, *state, &o);
    sl_shard_counters c;
    assert_int_equal(sl_shard_counters_get(f.s, "shardId-000000000009", &c), SL_ENOTFOUND);
    assert_non_null(strstr(sl_errmsg(f.s), "not found"));
    assert_int_equal(sl_shard_counters_get(f.s, "nonsense", &c), SL_ENOTFOUND);
    assert_int_equal(sl_shard_counters_get(f.s, NULL, &c), SL_EINVAL);
    assert_int_equal(sl_shard_counters_get(f.s, SHARD0, NULL), SL_EINVAL);
    assert_int_equal(sl_shard_counters_get(NULL, SHARD0, &c), SL_EINVAL);
    put_ok(&f, EHK_FIRST, 5);
    advance(&f, 700);
    sl_iter *it = iter(&f, SHARD0);
    sl_read_result r;
    assert_int_equal(sl_iter_read(it, recs, 2, &r), 0);
    assert_int_equal(r.millis_behind_latest, 700);
    assert_int_equal(counters(&f, SHARD0).iterator_age_ms, 700);
    assert_int_equal(sl_iter_read(it, recs, 10, &r), 0);
    assert_int_equal(counters(&f, SHARD0).iterator_age_ms, 0);     /* caught up */
    c = counters(&f, SHARD0);
    assert_int_equal(c.records_in, 5);
    assert_int_equal(c.records_out, 5);
    assert_int_equal(c.reads, 2);
    c = counters(&f, SHARD1);
    assert_int_equal(c.records_in + c.reads + c.records_out, 0);
    sl_iter_close(it);
    fx_close(&f);
}

/* ---- the KDS profile ------------------------------------------------------ */

static void kds_profile(void **state)
{
    fx f;
    fxo o = {.flags = SL_OPEN_KDS_PROFILE};
    fx_open(&f, *state, &o);
    assert_int_equal(f.s->rate_mode, SL_RATE_ENFORCE);
    assert_true(f.s->kds);
    put_ok(&f, NULL, 1000);
    assert_int_equal(put(&f, "k", NULL, 1, NULL), SL_ETHROTTLED);
    /* iterators expire 300,000 ms after they were opened or last read */
    sl_iter *it = iter(&f, SHARD0), *it2 = iter(&f, SHARD0);
    sl_read_result r;
    advance(&f, 299999);
    assert_int_equal(rd(it, &r), 0);
    assert_int_equal(r.count, 1000);
    advance(&f, 300001);
    assert_int_equal(rd(it, &r), SL_EEXPIRED);
    assert_non_null(strstr(sl_errmsg(it), "Iterator expired"));
    assert_int_equal(rd(it2, &r), SL_EEXPIRED);
    advance(&f, 1000);
    assert_int_equal(rd(it, &r), SL_EEXPIRED);    /* and stays expired */
    sl_iter_close(it);
    sl_iter_close(it2);
    /* sl_iter_expire */
    it = iter(&f, SHARD0);
    assert_int_equal(rd(it, &r), 0);
    assert_int_equal(sl_iter_expire(it), 0);
    assert_int_equal(rd(it, &r), SL_EEXPIRED);
    sl_iter_close(it);
    assert_int_equal(sl_iter_expire(NULL), SL_EINVAL);
    fx_close(&f);

    /* an explicit mode wins over the profile; no profile: no expiry */
    char *root = tu_path("%s/b", (char *)*state);
    o = (fxo){.flags = SL_OPEN_KDS_PROFILE, .mode = SL_RATE_OFF};
    fx_open(&f, root, &o);
    assert_int_equal(f.s->rate_mode, SL_RATE_OFF);
    fx_close(&f);
    free(root);
    root = tu_path("%s/c", (char *)*state);
    o = (fxo){.mode = SL_RATE_DEFAULT};
    fx_open(&f, root, &o);
    assert_int_equal(f.s->rate_mode, SL_RATE_OFF);
    put_ok(&f, NULL, 2000);
    it = iter(&f, SHARD0);
    advance(&f, 10000000);
    assert_int_equal(rd(it, &r), 0);
    sl_iter_close(it);
    fx_close(&f);
    free(root);
}

/* ---- faults -------------------------------------------------------------- */

static sl_fault fault(sl_fault_kind kind, uint64_t nth, const char *key, int error)
{
    sl_fault x = {SL_FAULT_VERSION, kind, nth, key, error};
    return x;
}

static void fault_put_nth(void **state)
{
    fx f;
    fxo o = {.shards = 2};
    fx_open(&f, *state, &o);
    sl_fault x = fault(SL_FAULT_PUT_NTH, 3, NULL, 0);
    assert_int_equal(sl_fault_inject(f.s, &x), 0);
    sl_put_result r;
    assert_int_equal(put(&f, "k", NULL, 1, &r), 0);
    assert_int_equal(put(&f, "k", NULL, 1, &r), 0);
    assert_int_equal(put(&f, "k", NULL, 1, &r), SL_ETHROTTLED);
    assert_int_equal(r.error, SL_ETHROTTLED);
    assert_non_null(strstr(sl_errmsg(f.p), "injected"));
    assert_non_null(strstr(sl_errmsg(f.p), "SL_FAULT_PUT_NTH"));
    assert_int_equal(put(&f, "k", NULL, 1, &r), 0);      /* one-shot */
    for (int i = 0; i < 20; i++) assert_int_equal(put(&f, "k", NULL, 1, &r), 0);

    /* entries of batches count one by one, in request order across shards;
    ** an entry that fails validation does not count */
    enum { N = 8 };
    sl_put_entry e[N];
    sl_put_result rs[N];
    for (int i = 0; i < N; i++)
        e[i] = (sl_put_entry){"k", "d", 1, i % 2 ? EHK_FIRST : EHK_LAST};
    e[1].partition_key = "";                            /* invalid */
    x = fault(SL_FAULT_PUT_NTH, 4, NULL, SL_EIO);
    assert_int_equal(sl_fault_inject(f.s, &x), 0);
    x = fault(SL_FAULT_PUT_NTH, 9, NULL, 0);
    assert_int_equal(sl_fault_inject(f.s, &x), 0);
    assert_int_equal(put(&f, "k", NULL, 1, &r), 0);     /* 1 */
    size_t failed;
    /* valid entries 0, 2, 3, 4, ... are numbers 2, 3, 4 (= e[3]), 5, ...
    ** (by shard group, e[4] would be the third: groups do not count) */
    assert_int_equal(sl_producer_put_batch(f.p, e, N, rs, &failed), 0);
    assert_int_equal(failed, 2);
    for (int i = 0; i < N; i++)
        assert_int_equal(rs[i].error, i == 1 ? SL_EVALIDATION : i == 3 ? SL_EIO : 0);
    assert_non_null(strstr(rs[3].error_message, "injected"));
    assert_string_equal(rs[4].shard_id, SHARD1);
    /* the batch used numbers 2..8; the next single put is number 9 */
    assert_int_equal(put(&f, "k", NULL, 1, &r), SL_ETHROTTLED);
    assert_int_equal(sl_producer_put_batch(f.p, e, N, rs, &failed), 0);
    assert_int_equal(failed, 1);
    fx_close(&f);
}

static void fault_put_nth_batch(void **state)
{
    fx f;
    fxo o = {.shards = 3};
    fx_open(&f, *state, &o);
    enum { N = 10 };
    sl_put_entry e[N];
    sl_put_result rs[N];
    char keys[N][8];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "key%d", i);
        e[i] = (sl_put_entry){keys[i], "d", 1, NULL};
    }
    sl_fault x = fault(SL_FAULT_PUT_NTH, 5, NULL, 0);
    assert_int_equal(sl_fault_inject(f.s, &x), 0);
    size_t failed;
    assert_int_equal(sl_producer_put_batch(f.p, e, N, rs, &failed), 0);
    assert_int_equal(failed, 1);
    for (int i = 0; i < N; i++) assert_int_equal(rs[i].error, i == 4 ? SL_ETHROTTLED : 0);
    assert_non_null(strstr(rs[4].error_message, "Rate exceeded for shard"));
    assert_non_null(strstr(rs[4].error_message, "injected"));
    assert_int_equal(sl_producer_put_batch(f.p, e, N, rs, &failed), 0);
    assert_int_equal(failed, 0);
    fx_close(&f);
}

static void fault_put_key(void **state)
{
    fx f;
    fxo o = {.mode = SL_RATE_ACCOUNT};
    fx_open(&f, *state, &o);
    sl_fault x = fault(SL_FAULT_PUT_KEY, 0, "bad", SL_EKEY);
    assert_int_equal(sl_fault_inject(f.s, &x), 0);
    sl_put_entry e[4] = {{"good", "1", 1, NULL}, {"bad", "2", 1, NULL},
                         {"badder", "3", 1, NULL}, {"bad", "4", 1, NULL}};
    sl_put_result rs[4];
    size_t failed;
    for (int round = 0; round < 3; round++) {
        assert_int_equal(sl_producer_put_batch(f.p, e, 4, rs, &failed), 0);
        assert_int_equal(failed, 2);
        for (int i = 0; i < 4; i++) assert_int_equal(rs[i].error, i % 2 ? SL_EKEY : 0);
        assert_non_null(strstr(rs[1].error_message, "injected"));
        assert_non_null(strstr(rs[1].error_message, "SL_FAULT_PUT_KEY"));
    }
    sl_put_result r;
    assert_int_equal(put(&f, "bad", NULL, 1, &r), SL_EKEY);
    assert_int_equal(r.error, SL_EKEY);
    /* faulted entries are neither charged nor counted */
    sl_shard_counters c = counters(&f, SHARD0);
    assert_int_equal(c.records_in, 6);
    assert_int_equal(c.put_throttled, 0);
    sl_fault_clear(f.s);
    assert_int_equal(sl_producer_put_batch(f.p, e, 4, rs, &failed), 0);
    assert_int_equal(failed, 0);
    sl_fault_clear(f.s);                                /* twice is fine */
    sl_fault_clear(NULL);
    fx_close(&f);
}

static void fault_read_nth(void **state)
{
    fx f;
    fxo o = {0};
    fx_open(&f, *state, &o);
    put_ok(&f, NULL, 5);
    sl_iter *it = iter(&f, SHARD0);
    sl_read_result r;
    sl_fault x = fault(SL_FAULT_READ_NTH, 3, NULL, 0);
    assert_int_equal(sl_fault_inject(f.s, &x), 0);
    x = fault(SL_FAULT_READ_NTH, 5, NULL, SL_EEXPIRED);
    assert_int_equal(sl_fault_inject(f.s, &x), 0);
    /* put faults and reads do not disturb each other's numbering */
    x = fault(SL_FAULT_PUT_NTH, 2, NULL, 0);
    assert_int_equal(sl_fault_inject(f.s, &x), 0);
    assert_int_equal(sl_iter_read(it, recs, 1, &r), 0);     /* read 1 */
    put_ok(&f, NULL, 1);
    assert_int_equal(sl_iter_read(it, recs, 1, &r), 0);     /* read 2 */
    assert_int_equal(sl_iter_read(it, recs, 1, &r), SL_ETHROTTLED);
    assert_int_equal(r.count, 0);
    assert_non_null(strstr(sl_errmsg(it), "injected"));
    assert_non_null(strstr(sl_errmsg(it), "SL_FAULT_READ_NTH"));
    assert_int_equal(sl_iter_read(it, recs, 1, &r), 0);     /* read 4 */
    assert_int_equal(recs[0].data_len, 1);
    assert_int_equal(sl_iter_read(it, recs, 1, &r), SL_EEXPIRED);
    assert_int_equal(sl_iter_read(it, recs, 10, &r), 0);    /* one-shot */
    assert_int_equal(r.count, 3);
    assert_int_equal(put(&f, "k", NULL, 1, NULL), SL_ETHROTTLED);  /* put 2 */
    sl_iter_close(it);
    fx_close(&f);
}

static void fault_validation(void **state)
{
    fx f;
    fxo o = {0};
    fx_open(&f, *state, &o);
    sl_fault ok = fault(SL_FAULT_PUT_NTH, 1, NULL, 0);
    assert_int_equal(sl_fault_inject(NULL, &ok), SL_EINVAL);
    assert_int_equal(sl_fault_inject(f.s, NULL), SL_EINVAL);
    struct {
        sl_fault f;
        const char *msg;
    } bad[] = {
        {{0, SL_FAULT_PUT_NTH, 1, NULL, 0}, "version"},
        {{SL_FAULT_VERSION, (sl_fault_kind)0, 1, NULL, 0}, "kind"},
        {{SL_FAULT_VERSION, (sl_fault_kind)4, 1, NULL, 0}, "kind"},
        {{SL_FAULT_VERSION, SL_FAULT_PUT_NTH, 0, NULL, 0}, "nth"},
        {{SL_FAULT_VERSION, SL_FAULT_READ_NTH, 0, NULL, 0}, "nth"},
        {{SL_FAULT_VERSION, SL_FAULT_PUT_KEY, 0, NULL, 0}, "partition_key"},
        {{SL_FAULT_VERSION, SL_FAULT_PUT_KEY, 0, "", 0}, "partition_key"},
        {{SL_FAULT_VERSION, SL_FAULT_PUT_KEY, 0, "\x80", 0}, "partition_key"},
        {{SL_FAULT_VERSION, SL_FAULT_PUT_NTH, 1, NULL, 5}, "error"},
        {{SL_FAULT_VERSION, SL_FAULT_PUT_NTH, 1, NULL, -99}, "error"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(sl_fault_inject(f.s, &bad[i].f), SL_EINVAL);
        if (!strstr(sl_errmsg(f.s), bad[i].msg))
            fail_msg("case %zu: '%s' lacks '%s'", i, sl_errmsg(f.s), bad[i].msg);
    }
    /* every known code is accepted; 64 faults at once, not 65 */
    sl_fault x = fault(SL_FAULT_PUT_NTH, 1000, NULL, SL_ETRIMMED);
    assert_int_equal(sl_fault_inject(f.s, &x), 0);
    x = fault(SL_FAULT_PUT_KEY, 0, "some-key", SL_EINVAL);
    assert_int_equal(sl_fault_inject(f.s, &x), 0);
    for (int i = 2; i < 64; i++) {
        x = fault(SL_FAULT_READ_NTH, (uint64_t)i, NULL, 0);
        assert_int_equal(sl_fault_inject(f.s, &x), 0);
    }
    assert_int_equal(sl_fault_inject(f.s, &x), SL_ELIMIT);
    assert_non_null(strstr(sl_errmsg(f.s), "64"));
    sl_fault_clear(f.s);
    assert_int_equal(sl_fault_inject(f.s, &x), 0);
    x = fault(SL_FAULT_PUT_NTH, UINT64_MAX, NULL, 0);     /* never fires */
    assert_int_equal(sl_fault_inject(f.s, &x), 0);
    put_ok(&f, NULL, 3);
    fx_close(&f);
}

/* ---- options ------------------------------------------------------------- */

static void open_options(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = NAME;
    c.durability = SL_DURABILITY_NONE;
    assert_int_equal(sl_stream_create(NULL, root, &c, NULL), 0);
    sl_stream *s = NULL;

    /* version 1: the struct ends at report_ctx (ASan sees any read past it) */
    size_t v1 = offsetof(sl_open_opts, report_ctx) + sizeof(void *);
    sl_open_opts full = SL_OPEN_OPTS_INIT;
    full.version = 1;
    full.flags = SL_OPEN_KDS_PROFILE;
    full.clock = sl_vclock_clock(vc);
    unsigned char *o1 = malloc(v1);
    assert_non_null(o1);
    memcpy(o1, &full, v1);
    assert_int_equal(sl_stream_open(&s, root, NAME, (const sl_open_opts *)(void *)o1), 0);
    assert_int_equal(s->rate_mode, SL_RATE_ENFORCE);    /* the profile's default */
    assert_int_equal(s->limits.write_records_per_s, 1000);
    assert_int_equal(sl_stream_close(s), 0);
    free(o1);
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.version = 1;
    o.rate_mode = (sl_rate_mode)99;                     /* ignored in version 1 */
    o.limits = (const sl_limits *)(uintptr_t)1;
    assert_int_equal(sl_stream_open(&s, root, NAME, &o), 0);
    assert_int_equal(s->rate_mode, SL_RATE_OFF);
    assert_int_equal(sl_stream_close(s), 0);

    /* version 2: resolved limits */
    sl_limits lim = SL_LIMITS_INIT;
    lim.read_calls_per_s = 7;
    lim.max_consumers = 3;
    o = (sl_open_opts)SL_OPEN_OPTS_INIT;
    o.rate_mode = SL_RATE_ACCOUNT;
    o.limits = &lim;
    assert_int_equal(sl_stream_open(&s, root, NAME, &o), 0);
    assert_int_equal(s->rate_mode, SL_RATE_ACCOUNT);
    assert_false(s->kds);
    assert_int_equal(s->limits.version, SL_LIMITS_VERSION);
    assert_int_equal(s->limits.write_records_per_s, 1000);
    assert_int_equal(s->limits.write_bytes_per_s, 1u << 20);
    assert_int_equal(s->limits.read_records_per_s, 2000);
    assert_int_equal(s->limits.read_calls_per_s, 7);
    assert_int_equal(s->limits.read_bytes_per_s, 2u << 20);
    assert_int_equal(s->limits.dedicated_bytes_per_s, 2u << 20);
    assert_int_equal(s->limits.read_penalty_ms, 5000);
    assert_int_equal(s->limits.max_consumers, 3);
    assert_int_equal(sl_stream_close(s), 0);

    /* rejected */
    o = (sl_open_opts)SL_OPEN_OPTS_INIT;
    o.rate_mode = (sl_rate_mode)4;
    assert_int_equal(sl_stream_open(&s, root, NAME, &o), SL_EVALIDATION);
    assert_non_null(strstr(sl_errmsg(NULL), "rate_mode"));
    assert_null(s);
    o = (sl_open_opts)SL_OPEN_OPTS_INIT;
    lim.version = 2;
    o.limits = &lim;
    assert_int_equal(sl_stream_open(&s, root, NAME, &o), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(NULL), "sl_limits.version"));
    o = (sl_open_opts)SL_OPEN_OPTS_INIT;
    o.flags = 0x4;
    assert_int_equal(sl_stream_open(&s, root, NAME, &o), SL_EINVAL);
    o = (sl_open_opts)SL_OPEN_OPTS_INIT;
    o.version = SL_OPEN_OPTS_VERSION + 1;
    assert_int_equal(sl_stream_open(&s, root, NAME, &o), SL_EINVAL);
    o.version = 0;
    assert_int_equal(sl_stream_open(&s, root, NAME, &o), SL_EINVAL);
    /* sl_stream_create checks them before anything exists */
    c.name = "other";
    o = (sl_open_opts)SL_OPEN_OPTS_INIT;
    o.rate_mode = (sl_rate_mode)-1;
    assert_int_equal(sl_stream_create(&s, root, &c, &o), SL_EVALIDATION);
    assert_int_equal(sl_stream_open(&s, root, "other", NULL), SL_ENOTFOUND);
    sl_vclock_free(vc);
}

/* A read-only follower accounts its own reads. */
static void readonly_reads(void **state)
{
    fx f;
    fxo o = {0};
    fx_open(&f, *state, &o);
    put_ok(&f, NULL, 3);
    sl_open_opts ro = SL_OPEN_OPTS_INIT;
    ro.flags = SL_OPEN_READONLY | SL_OPEN_KDS_PROFILE;
    ro.clock = sl_vclock_clock(f.vc);
    sl_stream *s2;
    assert_int_equal(sl_stream_open(&s2, *state, NAME, &ro), 0);
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, s2, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    sl_read_result r;
    for (int i = 0; i < 5; i++) assert_int_equal(sl_iter_read(it, recs, 100, &r), 0);
    assert_int_equal(sl_iter_read(it, recs, 100, &r), SL_ETHROTTLED);
    sl_shard_counters c;
    assert_int_equal(sl_shard_counters_get(s2, SHARD0, &c), 0);
    assert_int_equal(c.records_out, 3);
    assert_int_equal(c.read_throttled, 1);
    sl_iter_close(it);
    assert_int_equal(sl_stream_close(s2), 0);
    fx_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bucket_rules),
        cmocka_unit_test_setup_teardown(write_records_per_second, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(write_bytes_per_second, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(record_larger_than_bucket, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(batch_partly_throttled, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(failed_append_uncounted, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(account_changes_nothing, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(read_calls_per_second, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(read_records_and_bytes_per_second, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(ten_mib_penalty, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(account_reads, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(counters_and_age, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(kds_profile, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(fault_put_nth, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(fault_put_nth_batch, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(fault_put_key, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(fault_read_nth, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(fault_validation, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(open_options, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(readonly_reads, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
