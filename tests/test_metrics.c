/*
** test_metrics.c -- metrics.c: the observed workload (per-second load,
** peaks, what Kinesis would have throttled, PUT units and on-demand KiB,
** windows, progress, cold and encrypted records), the Kinesis bill and
** capacity advice against figures computed by hand, the snapshot (disk,
** counters, consumer lag), its Prometheus text, and bad arguments.
** Every stream runs on a virtual clock; nothing sleeps.
*/
#include "testutil.h"

#include <math.h>

#define SHARD0 "shardId-000000000000"
#define SHARD1 "shardId-000000000001"
#define SHARD2 "shardId-000000000002"
#define T0 1700000000000LL            /* a whole second */
#define HK0 "0"                       /* explicit hash keys: shard 0 ... */
#define HK1 "170141183460469231731687303715884105728"   /* 2^127: shard 1 of 2 */
#define HK1_SPLIT "255211775190703847597530955573826158592" /* 2^127 + 2^126 */

/* metrics.c's label escaper: hidden, and not in internal.h (only metrics.c
** and this test use it), so declared here. */
SL_HIDDEN size_t sl__prom_escape(char *out, size_t cap, const char *in);

/* |got - want| <= 1e-9 |want| (exact when want is 0) */
static void near(double got, double want, const char *what)
{
    double d = got - want, tol = 1e-9 * (want < 0 ? -want : want);
    if (d < 0) d = -d;
    if (!(d <= tol)) fail_msg("%s: got %.17g, want %.17g", what, got, want);
}

/* Put n records to the shard of explicit hash key hk, in batches of up to
** 500, each with a 10-byte partition key and dlen bytes of data. */
static void put_n(sl_producer *p, const char *hk, int n, size_t dlen)
{
    static char data[1 << 20];
    static char keys[500][16];
    sl_put_entry e[500];
    sl_put_result r[500];
    assert_true(dlen <= sizeof data);
    memset(data, 'x', dlen);
    while (n > 0) {
        int k = n > 500 ? 500 : n;
        for (int i = 0; i < k; i++) {
            snprintf(keys[i], sizeof keys[i], "k%09d", i);   /* 10 bytes */
            e[i] = (sl_put_entry){keys[i], data, dlen, hk};
        }
        size_t failed = 99;
        int rc = sl_producer_put_batch(p, e, (size_t)k, r, &failed);
        if (rc || failed) fprintf(stderr, "put_n: %s / %s\n", sl_errmsg(p), r[0].error_message);
        assert_int_equal(rc, 0);
        assert_int_equal(failed, 0);
        n -= k;
    }
}

/* ---- the synthetic workload -------------------------------------------------
** Two shards; every record is 10 key bytes + 990 data bytes = 1,000 bytes.
**   shard 0: seconds 0..9 after T0, 500 records a second, as batches of 100
**            at +0, +200, +400, +600 and +800 ms: 5,000 records.
**   shard 1: one burst in second 5: 500 records at each of T0+5000, +5400
**            and +5999 ms: 1,500 records.
** By hand:
**   shard 0: records 5,000, bytes 5,000,000; put_units 5,000 (1,000 bytes
**     < 25,000: 1 unit each); ondemand_kib 5,000 (1,000 <= 1,024: 1 KiB
**     each); first T0, last T0+9800; peak 500 rec/s and 500,000 B/s; over
**     seconds 0, over records 0; hot no (500 < 800, 500,000 < 838,861).
**   shard 1: records 1,500, bytes 1,500,000; put_units 1,500, ondemand_kib
**     1,500; first T0+5000, last T0+5999; peak 1,500 rec/s and 1,500,000
**     B/s; over seconds 1 (1,500 > 1,000 records); over records 500 (the
**     first 1,000 fit both limits: 1,000,000 <= 1,048,576 bytes; the other
**     500 come after 1,000 accepted records); hot yes.
**   stream: records 6,500, bytes 6,500,000, put_units 6,500, ondemand_kib
**     6,500; busiest second = second 5: 500 + 1,500 = 2,000 records and
**     2,000,000 bytes; busiest shard second 1,500 / 1,500,000; seconds =
**     floor(9800/1000) - floor(0/1000) + 1 = 10; window T0 .. T0+9800. */
static sl_stream *make_synthetic(const char *root, const char *name, sl_vclock *vc)
{
    tu_opts o = {.shards = 2, .segment_bytes = 1u << 20, .clock = sl_vclock_clock(vc)};
    sl_stream *s = tu_create(root, name, &o);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    for (int sec = 0; sec < 10; sec++) {
        for (int j = 0; j < 5; j++) {
            sl_vclock_set(vc, T0 + sec * 1000 + j * 200);
            put_n(p, HK0, 100, 990);
            if (sec == 5 && (j == 0 || j == 2)) put_n(p, HK1, 500, 990);   /* +5000, +5400 */
        }
        if (sec == 5) {
            sl_vclock_set(vc, T0 + 5999);
            put_n(p, HK1, 500, 990);
        }
    }
    sl_producer_close(p);
    return s;
}

static void check_synthetic(const sl_workload *w)
{
    assert_int_equal(w->shard_count, 2);
    assert_int_equal(w->records, 6500);
    assert_int_equal(w->bytes, 6500000);
    assert_int_equal(w->put_units, 6500);
    assert_int_equal(w->ondemand_kib, 6500);
    assert_int_equal(w->peak_records_s, 2000);
    assert_int_equal(w->peak_bytes_s, 2000000);
    assert_int_equal(w->shard_peak_records_s, 1500);
    assert_int_equal(w->shard_peak_bytes_s, 1500000);
    assert_true(w->seconds == 10.0);
    assert_int_equal(w->since_ms, T0);
    assert_int_equal(w->until_ms, T0 + 9800);
    assert_int_equal(w->mode, SL_STREAM_MODE_PROVISIONED);
    assert_int_equal(w->open_shards, 2);
    const sl_shard_load *a = &w->shards[0], *b = &w->shards[1];
    assert_string_equal(a->shard_id, SHARD0);
    assert_int_equal(a->open, 1);
    assert_int_equal(a->records, 5000);
    assert_int_equal(a->bytes, 5000000);
    assert_int_equal(a->put_units, 5000);
    assert_int_equal(a->ondemand_kib, 5000);
    assert_int_equal(a->first_ms, T0);
    assert_int_equal(a->last_ms, T0 + 9800);
    assert_int_equal(a->peak_records_s, 500);
    assert_int_equal(a->peak_bytes_s, 500000);
    assert_int_equal(a->over_seconds, 0);
    assert_int_equal(a->over_records, 0);
    assert_int_equal(a->hot, 0);
    assert_string_equal(b->shard_id, SHARD1);
    assert_int_equal(b->open, 1);
    assert_int_equal(b->records, 1500);
    assert_int_equal(b->bytes, 1500000);
    assert_int_equal(b->put_units, 1500);
    assert_int_equal(b->ondemand_kib, 1500);
    assert_int_equal(b->first_ms, T0 + 5000);
    assert_int_equal(b->last_ms, T0 + 5999);
    assert_int_equal(b->peak_records_s, 1500);
    assert_int_equal(b->peak_bytes_s, 1500000);
    assert_int_equal(b->over_seconds, 1);
    assert_int_equal(b->over_records, 500);
    assert_int_equal(b->hot, 1);
}

static sl_workload *observe(sl_stream *s, int64_t since, int64_t until)
{
    sl_workload *w = NULL;
    int rc = sl_workload_observe(&w, s, since, until, NULL, NULL);
    if (rc) fprintf(stderr, "observe: %s\n", sl_errmsg(s));
    assert_int_equal(rc, 0);
    assert_non_null(w);
    return w;
}

static void workload_synthetic(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = make_synthetic(root, "wl", vc);
    sl_vclock_set(vc, T0 + 60000);
    sl_workload *w = observe(s, INT64_MIN, INT64_MAX);
    check_synthetic(w);
    assert_int_equal(w->retention_hours, 24);
    assert_int_equal(w->shared_consumers, 0);
    assert_int_equal(w->dedicated_consumers, 0);
    sl_workload_free(w);

    /* windows.  [T0+5500, T0+5999]: shard 0's batches at +5600 and +5800
    ** (200 records), shard 1's at +5999 (500): 700 records in second 5,
    ** nothing over (500 <= 1,000 in shard 1), seconds 1. */
    w = observe(s, T0 + 5500, T0 + 5999);
    assert_int_equal(w->since_ms, T0 + 5500);
    assert_int_equal(w->until_ms, T0 + 5999);
    assert_int_equal(w->records, 700);
    assert_int_equal(w->shards[0].records, 200);
    assert_int_equal(w->shards[0].first_ms, T0 + 5600);
    assert_int_equal(w->shards[1].records, 500);
    assert_int_equal(w->shards[1].over_records, 0);
    assert_int_equal(w->shards[1].over_seconds, 0);
    assert_int_equal(w->shards[1].hot, 0);
    assert_int_equal(w->peak_records_s, 700);
    assert_int_equal(w->peak_bytes_s, 700000);
    assert_true(w->seconds == 1.0);
    sl_workload_free(w);
    /* ... up to T0+4999: shard 0's first 5 seconds (2,500), shard 1 none */
    w = observe(s, INT64_MIN, T0 + 4999);
    assert_int_equal(w->records, 2500);
    assert_int_equal(w->shards[1].records, 0);
    assert_int_equal(w->shards[1].first_ms, 0);
    assert_int_equal(w->shards[1].last_ms, 0);
    assert_int_equal(w->peak_records_s, 500);
    assert_true(w->seconds == 5.0);
    assert_int_equal(w->until_ms, T0 + 4999);
    assert_int_equal(w->since_ms, T0);            /* the first arrival */
    sl_workload_free(w);
    /* an empty window */
    w = observe(s, T0 + 100000, T0 + 200000);
    assert_int_equal(w->records, 0);
    assert_true(w->seconds == 1.0);
    assert_int_equal(w->peak_records_s, 0);
    sl_workload_free(w);

    /* a read-only follower sees the same workload */
    sl_stream *f = tu_open(root, "wl", &(tu_opts){.clock = sl_vclock_clock(vc),
                                                  .flags = SL_OPEN_READONLY});
    w = observe(f, INT64_MIN, INT64_MAX);
    check_synthetic(w);
    sl_workload_free(w);
    assert_int_equal(sl_stream_close(f), 0);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* PUT payload units and on-demand KiB per record, and the throttling rule
** with bytes.  One shard, five records at the same millisecond, of
** key + data = 5,000 / 45,000 / 1,000,000 / 25,000 / 25,001 bytes:
**   put_units (25 KB = 25,000-byte units, as Kinesis' examples 5 KB -> 1,
**     45 KB -> 2, 1 MB -> 40): 1 + 2 + 40 + 1 + 2 = 46
**   ondemand_kib (ceil(bytes / 1,024)): 5 + 44 + 977 + 25 + 25 = 1,076
**   accepted bytes in the second: 5,000, 50,000, then 1,000,000 would make
**     1,050,000 > 1,048,576: over (it takes no capacity), then 75,000 and
**     100,001: over_records 1; the second's offered bytes 1,100,001 >
**     1 MiB: over_seconds 1, peak_bytes_s 1,100,001, hot. */
static void workload_units(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0 + 250), 0);
    sl_stream *s = tu_create(root, "units", &(tu_opts){.clock = sl_vclock_clock(vc)});
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    static const size_t total[] = {5000, 45000, 1000000, 25000, 25001};
    for (size_t i = 0; i < 5; i++) put_n(p, HK0, 1, total[i] - 10);
    sl_producer_close(p);
    sl_workload *w = observe(s, INT64_MIN, INT64_MAX);
    assert_int_equal(w->records, 5);
    assert_int_equal(w->bytes, 1100001);
    assert_int_equal(w->put_units, 46);
    assert_int_equal(w->ondemand_kib, 1076);
    assert_int_equal(w->shards[0].over_records, 1);
    assert_int_equal(w->shards[0].over_seconds, 1);
    assert_int_equal(w->shards[0].peak_bytes_s, 1100001);
    assert_int_equal(w->shards[0].peak_records_s, 5);
    assert_int_equal(w->shards[0].hot, 1);
    assert_true(w->seconds == 1.0);
    sl_workload_free(w);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

typedef struct progress {
    int calls;
    uint64_t done[4], total[4];
    int stop_at;                     /* return non-zero at this call (1-based) */
} progress;

static int on_progress(void *ctx, uint64_t done, uint64_t total)
{
    progress *pr = ctx;
    if (pr->calls < 4) {
        pr->done[pr->calls] = done;
        pr->total[pr->calls] = total;
    }
    return ++pr->calls == pr->stop_at;
}

static void workload_progress(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = make_synthetic(root, "prog", vc);
    progress pr = {0};
    sl_workload *w = NULL;
    assert_int_equal(sl_workload_observe(&w, s, INT64_MIN, INT64_MAX, on_progress, &pr), 0);
    assert_int_equal(pr.calls, 2);
    assert_int_equal(pr.done[0], 1);
    assert_int_equal(pr.done[1], 2);
    assert_int_equal(pr.total[0], 2);
    assert_int_equal(pr.total[1], 2);
    check_synthetic(w);
    sl_workload_free(w);
    /* stopped after the first shard: 1, and the workload so far */
    pr = (progress){.stop_at = 1};
    assert_int_equal(sl_workload_observe(&w, s, INT64_MIN, INT64_MAX, on_progress, &pr), 1);
    assert_non_null(w);
    assert_int_equal(pr.calls, 1);
    assert_int_equal(w->shard_count, 2);
    assert_int_equal(w->records, 5000);
    assert_int_equal(w->shards[0].records, 5000);
    assert_int_equal(w->shards[1].records, 0);
    assert_string_equal(w->shards[1].shard_id, SHARD1);
    assert_int_equal(w->peak_records_s, 500);
    assert_true(w->seconds == 10.0);
    sl_workload_free(w);
    /* a stop after the last shard stops nothing */
    pr = (progress){.stop_at = 2};
    assert_int_equal(sl_workload_observe(&w, s, INT64_MIN, INT64_MAX, on_progress, &pr), 0);
    check_synthetic(w);
    sl_workload_free(w);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* ---- the bill -----------------------------------------------------------
** The synthetic workload, SL_PRICES_INIT, H = 730 h, f = 730 * 3600 / 10 =
** 262,800 (10 observed seconds scaled to a month), GB = 2^30:
**   gb_in = 6,500,000 * 262,800 / 2^30          = 1590.88522195816
**   put_units_million = 6,500 * 262,800 / 1e6   = 1708.2
**   ondemand_gb_in = 6,500 * 1,024 * 262,800 / 2^30 = 1629.06646728516
** (A) retention 24 h, no consumers (R = 1), 2 open shards:
**   shard_hours = 2 * 730 * 0.015 = 21.90; put_units = 1708.2 * 0.014 =
**   23.9148; extended, long, EFO 0; provisioned_total = 45.8148.
**   on-demand: stream hours 730 * 0.04 = 29.20; in = 1629.06646728516 *
**   0.08 = 130.325317382812; out = 1590.88522195816 * 0.04 =
**   63.6354088783264; total 223.160726261139.
** (B) retention 200 h: stored_gb_long = 6,500,000 / 10 * (200 - 168) *
**   3,600 / 2^30 = 69.737434387207; extended = 2 * 730 * 0.02 = 29.20;
**   long = 69.737434387207 * 0.023 = 1.60396099090576;
**   provisioned_total = 21.9 + 23.9148 + 29.2 + 1.60396099090576 =
**   76.6187609909058; on-demand total 29.2 + 130.325317382812 +
**   63.6354088783264 + 1.60396099090576 = 224.764687252045.
** (C) and one dedicated + one shared consumer registered: R = 2, gb_out =
**   3181.77044391632; efo_hours = 1 * 2 * 730 * 0.015 = 21.90; efo_gb =
**   1590.88522195816 * 0.013 = 20.6815078854561; provisioned_total =
**   119.200268876362; ondemand_out = 127.270817756653; ondemand_total =
**   288.400096130371.
** (D) readers 3, shards 4: gb_out = 4772.65566587448; shard_hours =
**   43.80; extended 58.40; efo_hours 43.80; provisioned_total =
**   192.200268876362; ondemand_out 190.906226634979, ondemand_total
**   352.035505008697. */
static void bill_synthetic(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = make_synthetic(root, "bill", vc);
    const sl_prices prices = SL_PRICES_INIT;
    sl_bill b;

    sl_workload *w = observe(s, INT64_MIN, INT64_MAX);      /* (A) */
    assert_int_equal(sl_bill_estimate(&b, w, &prices, 0, 0), 0);
    near(b.gb_in, 1590.88522195816, "gb_in");
    near(b.put_units_million, 1708.2, "put_units_million");
    near(b.ondemand_gb_in, 1629.06646728516, "ondemand_gb_in");
    near(b.gb_out, 1590.88522195816, "gb_out");
    near(b.stored_gb_long, 0, "stored_gb_long");
    assert_int_equal(b.shards, 2);
    near(b.shard_hours, 21.9, "shard_hours");
    near(b.put_units, 23.9148, "put_units");
    near(b.extended_retention, 0, "extended_retention");
    near(b.long_retention, 0, "long_retention");
    near(b.efo_hours, 0, "efo_hours");
    near(b.efo_gb, 0, "efo_gb");
    near(b.provisioned_total, 45.8148, "provisioned_total");
    near(b.ondemand_stream_hours, 29.2, "ondemand_stream_hours");
    near(b.ondemand_in, 130.325317382812, "ondemand_in");
    near(b.ondemand_out, 63.6354088783264, "ondemand_out");
    near(b.ondemand_long_retention, 0, "ondemand_long_retention");
    near(b.ondemand_total, 223.160726261139, "ondemand_total");
    sl_workload_free(w);

    assert_int_equal(sl_stream_increase_retention(s, 200), 0);  /* (B) */
    w = observe(s, INT64_MIN, INT64_MAX);
    assert_int_equal(w->retention_hours, 200);
    assert_int_equal(sl_bill_estimate(&b, w, &prices, 0, 0), 0);
    near(b.stored_gb_long, 69.737434387207, "stored_gb_long");
    near(b.extended_retention, 29.2, "extended_retention");
    near(b.long_retention, 1.60396099090576, "long_retention");
    near(b.provisioned_total, 76.6187609909058, "provisioned_total");
    near(b.ondemand_long_retention, 1.60396099090576, "ondemand_long_retention");
    near(b.ondemand_total, 224.764687252045, "ondemand_total");
    sl_workload_free(w);

    assert_int_equal(sl_consumer_register(s, "fan", SL_CONSUMER_DEDICATED), 0);   /* (C) */
    assert_int_equal(sl_consumer_register(s, "poll", SL_CONSUMER_SHARED), 0);
    w = observe(s, INT64_MIN, INT64_MAX);
    assert_int_equal(w->shared_consumers, 1);
    assert_int_equal(w->dedicated_consumers, 1);
    assert_int_equal(sl_bill_estimate(&b, w, &prices, 0, 0), 0);
    near(b.gb_out, 3181.77044391632, "gb_out");
    near(b.efo_hours, 21.9, "efo_hours");
    near(b.efo_gb, 20.6815078854561, "efo_gb");
    near(b.provisioned_total, 119.200268876362, "provisioned_total");
    near(b.ondemand_out, 127.270817756653, "ondemand_out");
    near(b.ondemand_total, 288.400096130371, "ondemand_total");

    assert_int_equal(sl_bill_estimate(&b, w, &prices, 4, 3), 0);                  /* (D) */
    assert_int_equal(b.shards, 4);
    near(b.gb_out, 4772.65566587448, "gb_out");
    near(b.shard_hours, 43.8, "shard_hours");
    near(b.extended_retention, 58.4, "extended_retention");
    near(b.efo_hours, 43.8, "efo_hours");
    near(b.efo_gb, 20.6815078854561, "efo_gb");
    near(b.provisioned_total, 192.200268876362, "provisioned_total");
    near(b.ondemand_out, 190.906226634979, "ondemand_out");
    near(b.ondemand_total, 352.035505008697, "ondemand_total");

    /* another price list: every line follows its price (shard_hour x 2) */
    sl_prices p2 = SL_PRICES_INIT;
    p2.shard_hour = 0.030;
    assert_int_equal(sl_bill_estimate(&b, w, &p2, 4, 3), 0);
    near(b.shard_hours, 87.6, "shard_hours at 0.030");
    near(b.provisioned_total, 192.200268876362 + 43.8, "provisioned_total at 0.030");
    sl_workload_free(w);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* ---- advice ---------------------------------------------------------------
** Heavy: the synthetic workload.  Busiest stream second 2,000 records and
** 2,000,000 bytes: shards_needed = max(1, ceil(2000/1000) = 2,
** ceil(2,000,000/1,048,576) = 2) = 2; hot shards 1 (shard 1); the bill at 2
** shards is (A): provisioned 45.8148 <= on-demand 223.160726261139:
** PROVISIONED, saving 177.345926261139.
** Light (bursty): one shard, 5,000 records of 1,000 bytes in one
** millisecond, then one more an hour later: records 5,001, bytes
** 5,001,000, seconds = 3600 - 0 + 1 = 3,601, busiest second 5,000 records
** / 5,000,000 bytes: shards_needed = max(5, ceil(4.77) = 5) = 5.  f = 730 *
** 3600 / 3601; provisioned at 5 shards: 5 * 730 * 0.015 = 54.75 + put units
** 5,001 * f / 1e6 * 0.014 = 0.0510960266592613 -> 54.8010960266593;
** on-demand: 29.2 + in 5,001 KiB * f / 2^30 * 0.08 = 0.27845124740198 +
** out 5,001,000 * f / 2^30 * 0.04 = 0.135962523145498 -> 29.6144137705475:
** ON_DEMAND, saving 25.1866822561118.
** Empty: one shard, nothing: shards_needed 1, provisioned 1 * 730 * 0.015
** = 10.95 vs on-demand 29.20: PROVISIONED, saving 18.25. */
static void advise(void **state)
{
    const char *root = *state;
    const sl_prices prices = SL_PRICES_INIT;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_advice a;

    sl_stream *s = make_synthetic(root, "heavy", vc);
    sl_workload *w = observe(s, INT64_MIN, INT64_MAX);
    assert_int_equal(sl_advise(&a, w, &prices, 0), 0);
    assert_int_equal(a.shards_needed, 2);
    assert_int_equal(a.hot_shards, 1);
    assert_int_equal(a.provisioned.shards, 2);
    near(a.provisioned.provisioned_total, 45.8148, "heavy provisioned_total");
    near(a.provisioned.ondemand_total, 223.160726261139, "heavy ondemand_total");
    assert_int_equal(a.cheaper, SL_STREAM_MODE_PROVISIONED);
    near(a.saving, 177.345926261139, "heavy saving");
    sl_workload_free(w);
    assert_int_equal(sl_stream_close(s), 0);

    sl_vclock_set(vc, T0);
    s = tu_create(root, "light", &(tu_opts){.segment_bytes = 1u << 20,
                                            .clock = sl_vclock_clock(vc)});
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    put_n(p, HK0, 5000, 990);
    sl_vclock_advance(vc, 3600 * 1000);
    put_n(p, HK0, 1, 990);
    sl_producer_close(p);
    w = observe(s, INT64_MIN, INT64_MAX);
    assert_int_equal(w->records, 5001);
    assert_true(w->seconds == 3601.0);
    assert_int_equal(w->peak_records_s, 5000);
    assert_int_equal(w->shards[0].over_records, 4000);   /* 1,000 fit */
    assert_int_equal(sl_advise(&a, w, &prices, 0), 0);
    assert_int_equal(a.shards_needed, 5);
    assert_int_equal(a.hot_shards, 1);
    assert_int_equal(a.provisioned.shards, 5);
    near(a.provisioned.provisioned_total, 54.8010960266593, "light provisioned_total");
    near(a.provisioned.ondemand_total, 29.6144137705475, "light ondemand_total");
    assert_int_equal(a.cheaper, SL_STREAM_MODE_ON_DEMAND);
    near(a.saving, 25.1866822561118, "light saving");
    sl_workload_free(w);
    assert_int_equal(sl_stream_close(s), 0);

    s = tu_create(root, "empty", &(tu_opts){.clock = sl_vclock_clock(vc)});
    w = observe(s, INT64_MIN, INT64_MAX);
    assert_int_equal(w->records, 0);
    assert_true(w->seconds == 1.0);
    assert_int_equal(w->since_ms, 0);
    assert_int_equal(w->until_ms, 0);
    assert_int_equal(sl_advise(&a, w, &prices, 0), 0);
    assert_int_equal(a.shards_needed, 1);
    assert_int_equal(a.hot_shards, 0);
    near(a.provisioned.provisioned_total, 10.95, "empty provisioned_total");
    near(a.provisioned.ondemand_total, 29.2, "empty ondemand_total");
    assert_int_equal(a.cheaper, SL_STREAM_MODE_PROVISIONED);
    near(a.saving, 18.25, "empty saving");
    sl_workload_free(w);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* ---- cold and encrypted records ----------------------------------------- */

static void workload_cold(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = tu_create(root, "cold", &(tu_opts){.clock = sl_vclock_clock(vc)});
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    for (int i = 0; i < 30; i++) {               /* 30 seconds of 10 records */
        sl_vclock_set(vc, T0 + i * 1000);
        put_n(p, HK0, 10, 990 + (size_t)i);
    }
    sl_producer_close(p);
    assert_true(tu_nsegs(root, "cold", 0) >= 3);
    sl_workload *hot = observe(s, INT64_MIN, INT64_MAX);
    /* bytes: 10 * sum over i of (1000 + i) = 10 * (30,000 + 435) */
    assert_int_equal(hot->records, 300);
    assert_int_equal(hot->bytes, 304350);
    assert_true(hot->seconds == 30.0);
    assert_int_equal(sl_stream_set_cold_after(s, 1), 0);
    sl_vclock_advance(vc, 2 * 3600 * 1000);
    sl_maint_stats st;
    assert_int_equal(sl_stream_maintain(s, -1, NULL, NULL, &st), 0);
    assert_true(st.segments_cold >= 2);
    sl_workload *cold = observe(s, INT64_MIN, INT64_MAX);
    const sl_shard_load *a = &hot->shards[0], *b = &cold->shards[0];
    assert_int_equal(b->records, a->records);
    assert_int_equal(b->bytes, a->bytes);
    assert_int_equal(b->put_units, a->put_units);
    assert_int_equal(b->ondemand_kib, a->ondemand_kib);
    assert_int_equal(b->first_ms, a->first_ms);
    assert_int_equal(b->last_ms, a->last_ms);
    assert_int_equal(b->peak_records_s, 10);
    assert_int_equal(b->peak_bytes_s, 10 * 1029);
    sl_workload_free(hot);
    sl_workload_free(cold);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* A stream that encrypted its first 20 records and then stopped opens
** without its key provider; reading those records then fails with SL_EKEY,
** but the workload and the consumer lag count them (headers only). */
static void workload_encrypted_without_key(void **state)
{
    const char *root = *state;
    char *kf = tu_path("%s/master.key", root);
    assert_int_equal(sl_keyfile_create(kf), 0);
    sl_key_provider *kp;
    assert_int_equal(sl_keyfile_provider_open(&kp, kf), 0);
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = "enc";
    c.encryption_type = SL_ENCRYPTION_KMS;
    c.kms_key_id = "alias/metrics-test";
    c.segment_bytes = SL_SEGMENT_BYTES_MIN;
    c.durability = SL_DURABILITY_NONE;
    sl_open_opts oo = SL_OPEN_OPTS_INIT;
    oo.clock = sl_vclock_clock(vc);
    oo.keys = kp;
    sl_stream *s;
    assert_int_equal(sl_stream_create(&s, root, &c, &oo), 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    put_n(p, HK0, 20, 90);                       /* 20 x 100 bytes, encrypted */
    assert_int_equal(sl_stream_stop_encryption(s), 0);
    sl_vclock_advance(vc, 1500);
    put_n(p, HK0, 5, 190);                       /* 5 x 200 bytes, clear */
    sl_producer_close(p);
    assert_int_equal(sl_consumer_register(s, "reader", SL_CONSUMER_SHARED), 0);
    assert_int_equal(sl_stream_close(s), 0);
    sl_keyfile_provider_close(kp);

    s = tu_open(root, "enc", &(tu_opts){.clock = sl_vclock_clock(vc)});
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, s, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    sl_record r[30];
    sl_read_result res;
    assert_int_equal(sl_iter_read(it, r, 30, &res), SL_EKEY);
    sl_iter_close(it);
    sl_workload *w = observe(s, INT64_MIN, INT64_MAX);
    assert_int_equal(w->records, 25);
    assert_int_equal(w->bytes, 20 * 100 + 5 * 200);
    assert_int_equal(w->ondemand_kib, 25);
    assert_int_equal(w->shards[0].first_ms, T0);
    assert_int_equal(w->shards[0].last_ms, T0 + 1500);
    assert_true(w->seconds == 2.0);
    assert_int_equal(w->shared_consumers, 1);
    sl_workload_free(w);
    sl_metrics *m;
    assert_int_equal(sl_metrics_get(&m, s), 0);
    assert_int_equal(m->shards[0].records, 25);
    assert_int_equal(m->consumer_count, 1);
    assert_int_equal(m->consumers[0].behind_records, 25);
    assert_int_equal(m->consumers[0].max_age_ms, 1500);
    sl_metrics_free(m);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
    free(kf);
}

/* ---- the snapshot -------------------------------------------------------- */

/* Put n records (10-byte key, 20 bytes of data) to the shard of hk at
** start + i * step ms; their sequence numbers in seqs. */
static void put_timed(sl_stream *s, sl_vclock *vc, const char *hk, int n, int64_t start,
                      int64_t step, uint64_t *seqs)
{
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    for (int i = 0; i < n; i++) {
        sl_vclock_set(vc, start + i * step);
        char key[16];
        snprintf(key, sizeof key, "k%09d", i);
        sl_put_entry e = {key, "twenty bytes of data", 20, hk};
        sl_put_result r;
        assert_int_equal(sl_producer_put(p, &e, &r), 0);
        seqs[i] = r.sequence;
    }
    sl_producer_close(p);
}

static uint64_t dir_seg_bytes(const char *root, const char *name, const char *shard)
{
    char *d = tu_path("%s/%s/%s", root, name, shard);
    DIR *dir = opendir(d);
    assert_non_null(dir);
    uint64_t sum = 0;
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
    return sum;
}

/* A 2-shard stream, counters on (ACCOUNT):
**   shard 0: 10 records at T0 + 0, 100, ..., 900 ms
**   shard 1:  4 records at T0 + 1000, 1010, 1020, 1030 ms
** each 10 + 20 = 30 bytes.  Consumers:
**   c-lag  (shared)    checkpoint shard 0 at its 4th record (+300 ms):
**          behind 6 + 4 (shard 1 never checkpointed) = 10; age max(900 -
**          400, 1030 - 1000) = 500
**   c-none (shared)    no checkpoint: behind 14, age max(900, 30) = 900
**   c-tip  (dedicated) both shards checkpointed at their last record: 0, 0 */
static sl_stream *make_lagged(const char *root, const char *name, sl_vclock *vc,
                              uint64_t *s0, uint64_t *s1)
{
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = name;
    c.shard_count = 2;
    c.segment_bytes = SL_SEGMENT_BYTES_MIN;
    c.durability = SL_DURABILITY_NONE;
    sl_open_opts oo = SL_OPEN_OPTS_INIT;
    oo.clock = sl_vclock_clock(vc);
    oo.rate_mode = SL_RATE_ACCOUNT;
    sl_stream *s;
    assert_int_equal(sl_stream_create(&s, root, &c, &oo), 0);
    put_timed(s, vc, HK0, 10, T0, 100, s0);
    put_timed(s, vc, HK1, 4, T0 + 1000, 10, s1);
    assert_int_equal(sl_consumer_register(s, "c-lag", SL_CONSUMER_SHARED), 0);
    assert_int_equal(sl_consumer_register(s, "c-none", SL_CONSUMER_SHARED), 0);
    assert_int_equal(sl_consumer_register(s, "c-tip", SL_CONSUMER_DEDICATED), 0);
    sl_consumer *cl, *ct;
    assert_int_equal(sl_consumer_open(&cl, s, "c-lag"), 0);
    assert_int_equal(sl_consumer_open(&ct, s, "c-tip"), 0);
    assert_int_equal(sl_consumer_checkpoint(cl, SHARD0, s0[3]), 0);
    assert_int_equal(sl_consumer_checkpoint(ct, SHARD0, s0[9]), 0);
    assert_int_equal(sl_consumer_checkpoint(ct, SHARD1, s1[3]), 0);
    assert_int_equal(sl_consumer_close(cl), 0);
    assert_int_equal(sl_consumer_close(ct), 0);
    return s;
}

static void check_consumer(const sl_consumer_metrics *c, const char *name,
                           sl_consumer_type type, uint64_t behind, int64_t age)
{
    assert_string_equal(c->name, name);
    assert_int_equal(c->type, type);
    assert_int_equal(c->behind_records, behind);
    assert_int_equal(c->max_age_ms, age);
}

static void metrics_snapshot(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    uint64_t s0[10], s1[4];
    sl_stream *s = make_lagged(root, "mt", vc, s0, s1);
    /* one shared read of shard 0: 10 records, 300 bytes, caught up */
    sl_iter *it;
    sl_record recs[20];
    sl_read_result res;
    assert_int_equal(sl_iter_open(&it, s, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    assert_int_equal(sl_iter_read(it, recs, 20, &res), 0);
    assert_int_equal(res.count, 10);
    sl_iter_close(it);

    for (int round = 0; round < 2; round++) {    /* metrics read nothing */
        sl_metrics *m = NULL;
        assert_int_equal(sl_metrics_get(&m, s), 0);
        assert_string_equal(m->stream_name, "mt");
        assert_int_equal(m->now_ms, sl_vclock_now(vc));
        assert_int_equal(m->shard_count, 2);
        const sl_shard_metrics *a = &m->shards[0], *b = &m->shards[1];
        assert_string_equal(a->shard_id, SHARD0);
        assert_string_equal(b->shard_id, SHARD1);
        assert_int_equal(a->open, 1);
        assert_int_equal(a->records, 10);
        assert_int_equal(a->bytes, 300);
        assert_int_equal(b->records, 4);
        assert_int_equal(b->bytes, 120);
        assert_int_equal(a->segments, (uint64_t)tu_nsegs(root, "mt", 0));
        assert_int_equal(b->segments, (uint64_t)tu_nsegs(root, "mt", 1));
        assert_int_equal(a->segments, 1);
        assert_int_equal(a->disk_bytes, dir_seg_bytes(root, "mt", SHARD0));
        assert_int_equal(b->disk_bytes, dir_seg_bytes(root, "mt", SHARD1));
        assert_true(a->disk_bytes >= SL_SEGMENT_BYTES_MIN);
        assert_int_equal(a->counters.records_in, 10);
        assert_int_equal(a->counters.bytes_in, 300);
        assert_int_equal(a->counters.reads, 1);
        assert_int_equal(a->counters.records_out, 10);
        assert_int_equal(a->counters.bytes_out, 300);
        assert_int_equal(a->counters.iterator_age_ms, 0);
        assert_int_equal(b->counters.records_in, 4);
        assert_int_equal(b->counters.reads, 0);
        assert_int_equal(m->consumer_count, 3);          /* sorted by name */
        check_consumer(&m->consumers[0], "c-lag", SL_CONSUMER_SHARED, 10, 500);
        check_consumer(&m->consumers[1], "c-none", SL_CONSUMER_SHARED, 14, 900);
        check_consumer(&m->consumers[2], "c-tip", SL_CONSUMER_DEDICATED, 0, 0);
        sl_metrics_free(m);
    }

    /* a new record in shard 0 at T0 + 2000: c-tip is 1 behind, age 0 (one
    ** record: newest minus itself); c-lag 7 + 4, age 2000 - 400 = 1600 */
    uint64_t more;
    put_timed(s, vc, HK0, 1, T0 + 2000, 0, &more);
    sl_metrics *m;
    assert_int_equal(sl_metrics_get(&m, s), 0);
    check_consumer(&m->consumers[0], "c-lag", SL_CONSUMER_SHARED, 11, 1600);
    check_consumer(&m->consumers[2], "c-tip", SL_CONSUMER_DEDICATED, 1, 0);
    assert_int_equal(m->shards[0].counters.records_in, 11);
    sl_metrics_free(m);

    /* split shard 1: it closes, its children (2, 3) are open and empty.
    ** Only open shards count: c-none 11 + 0 + 0, age 2000 (shard 0) */
    assert_int_equal(sl_stream_split_shard(s, SHARD1, HK1_SPLIT), 0);
    assert_int_equal(sl_metrics_get(&m, s), 0);
    assert_int_equal(m->shard_count, 4);
    assert_int_equal(m->shards[1].open, 0);
    assert_int_equal(m->shards[1].records, 4);
    assert_int_equal(m->shards[2].open, 1);
    assert_int_equal(m->shards[2].records, 0);
    assert_int_equal(m->shards[2].segments, 0);
    assert_string_equal(m->shards[3].shard_id, "shardId-000000000003");
    check_consumer(&m->consumers[0], "c-lag", SL_CONSUMER_SHARED, 7, 1600);
    check_consumer(&m->consumers[1], "c-none", SL_CONSUMER_SHARED, 11, 2000);
    check_consumer(&m->consumers[2], "c-tip", SL_CONSUMER_DEDICATED, 1, 0);
    sl_metrics_free(m);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* ---- Prometheus ------------------------------------------------------------ */

static char *prom(sl_stream *s, size_t *len)
{
    size_t need = 0;
    assert_int_equal(sl_metrics_prometheus(s, NULL, 0, &need), SL_ELIMIT);
    char *buf = malloc(need + 1);
    assert_non_null(buf);
    size_t n = 0;
    int rc = sl_metrics_prometheus(s, buf, need + 1, &n);
    if (rc) fprintf(stderr, "prom: %s\n", sl_errmsg(s));
    assert_int_equal(rc, 0);
    assert_int_equal(n, need);
    assert_int_equal(strlen(buf), n);
    *len = n;
    return buf;
}

static void prometheus_text(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    uint64_t s0[10], s1[4];
    sl_stream *s = make_lagged(root, "prom", vc, s0, s1);
    assert_int_equal(sl_stream_split_shard(s, SHARD1, HK1_SPLIT), 0);
    size_t len;
    char *t = prom(s, &len);
    /* exact lines */
    assert_non_null(strstr(t, "# HELP shardlog_shard_records_in_total "));
    assert_non_null(strstr(t, "\n# TYPE shardlog_shard_records_in_total counter\n"));
    assert_non_null(
        strstr(t, "\nshardlog_shard_records_in_total{stream=\"prom\",shard=\"" SHARD0 "\"} 10\n"));
    assert_non_null(
        strstr(t, "\nshardlog_shard_bytes_in_total{stream=\"prom\",shard=\"" SHARD1 "\"} 120\n"));
    assert_non_null(strstr(t, "\n# TYPE shardlog_shard_iterator_age_milliseconds gauge\n"));
    assert_non_null(strstr(t, "\n# TYPE shardlog_shard_disk_bytes gauge\n"));
    assert_non_null(
        strstr(t, "\nshardlog_shard_disk_records{stream=\"prom\",shard=\"" SHARD0 "\"} 10\n"));
    assert_non_null(strstr(t, "\nshardlog_shard_open{stream=\"prom\",shard=\"" SHARD1 "\"} 0\n"));
    assert_non_null(strstr(t, "\nshardlog_shard_open{stream=\"prom\",shard=\"" SHARD2 "\"} 1\n"));
    assert_non_null(strstr(t, "\n# TYPE shardlog_consumer_age_milliseconds gauge\n"));
    assert_non_null(
        strstr(t, "\nshardlog_consumer_age_milliseconds{stream=\"prom\",consumer=\"c-lag\"} 500\n"));
    /* shard 1 closed by the split: c-none counts shard 0's 10 records only */
    assert_non_null(
        strstr(t, "\nshardlog_consumer_behind_records{stream=\"prom\",consumer=\"c-none\"} 10\n"));
    /* the shape: every line is HELP, TYPE (once per family, before its
    ** samples, counters named _total) or a sample of the family just typed */
    char family[128] = "";
    int families = 0, samples = 0;
    for (char *line = t; *line;) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        if (!strncmp(line, "# HELP ", 7)) {
            assert_true(strlen(line) > 7 + strlen("shardlog_") + 1);
        } else if (!strncmp(line, "# TYPE ", 7)) {
            char type[16];
            assert_int_equal(sscanf(line + 7, "%127s %15s", family, type), 2);
            assert_true(!strcmp(type, "counter") || !strcmp(type, "gauge"));
            size_t fl = strlen(family);
            assert_int_equal(!strcmp(type, "counter"), fl > 6 && !strcmp(family + fl - 6, "_total"));
            families++;
        } else {
            size_t fl = strlen(family);
            assert_true(fl > 0);
            assert_memory_equal(line, family, fl);
            assert_memory_equal(line + fl, "{stream=\"prom\",", 15);
            char *brace = strstr(line, "} ");
            assert_non_null(brace);
            char *end;
            strtoll(brace + 2, &end, 10);
            assert_true(end > brace + 2 && *end == '\0');
            samples++;
        }
        line = nl + 1;
    }
    assert_int_equal(families, 16);               /* 14 per shard, 2 per consumer */
    assert_int_equal(samples, 14 * 4 + 2 * 3);
    free(t);

    /* snprintf-style: too small -> SL_ELIMIT, the length needed, a prefix */
    t = prom(s, &len);
    char small[16];
    size_t need = 0;
    assert_int_equal(sl_metrics_prometheus(s, small, sizeof small, &need), SL_ELIMIT);
    assert_int_equal(need, len);
    assert_memory_equal(small, t, sizeof small - 1);
    assert_int_equal(small[sizeof small - 1], '\0');
    assert_non_null(strstr(sl_errmsg(s), "needs"));
    char *exact = malloc(len + 1);
    assert_non_null(exact);
    assert_int_equal(sl_metrics_prometheus(s, exact, len, NULL), SL_ELIMIT);   /* no NUL room */
    assert_int_equal(exact[len - 1], '\0');
    assert_int_equal(sl_metrics_prometheus(s, exact, len + 1, NULL), 0);
    assert_string_equal(exact, t);
    free(exact);

    /* the fd variant writes the same bytes */
    char *path = tu_path("%s/metrics.prom", root);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(sl_metrics_prometheus_fd(s, fd), 0);
    char *back = malloc(len + 2);
    assert_non_null(back);
    assert_int_equal(pread(fd, back, len + 1, 0), (ssize_t)len);
    assert_memory_equal(back, t, len);
    close(fd);
    /* ... and a pipe, read after the write (the text fits a pipe buffer) */
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    assert_true(len < 65536);
    assert_int_equal(sl_metrics_prometheus_fd(s, pfd[1]), 0);
    close(pfd[1]);
    size_t got = 0;
    ssize_t r;
    while ((r = read(pfd[0], back + got, len + 1 - got)) > 0) got += (size_t)r;
    assert_int_equal(got, len);
    assert_memory_equal(back, t, len);
    close(pfd[0]);
    free(back);
    /* a descriptor that cannot be written: SL_EIO */
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(sl_metrics_prometheus_fd(s, fd), SL_EIO);
    assert_non_null(strstr(sl_errmsg(s), "writing the Prometheus text"));
    close(fd);
    free(path);
    free(t);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* Label values escape backslash, double quote and line feed (stream,
** shard and consumer names cannot hold them, so the escaper is tested
** alone). */
static void prometheus_escape(void **state)
{
    (void)state;
    char out[64];
    const char *in = "a\\b\"c\nd";
    const char *want = "a\\\\b\\\"c\\nd";          /* a \\ b \" c \n d */
    assert_int_equal(sl__prom_escape(out, sizeof out, in), strlen(want));
    assert_string_equal(out, want);
    assert_int_equal(sl__prom_escape(NULL, 0, in), 10);
    assert_int_equal(sl__prom_escape(out, 4, in), 10);     /* truncated, terminated */
    assert_string_equal(out, "a\\\\");
    assert_int_equal(sl__prom_escape(out, sizeof out, "shardId-000000000000"), 20);
    assert_string_equal(out, "shardId-000000000000");
    assert_int_equal(sl__prom_escape(out, sizeof out, ""), 0);
    assert_string_equal(out, "");
}

/* ---- bad arguments ------------------------------------------------------- */

static void bad_arguments(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = tu_create(root, "bad", &(tu_opts){.clock = sl_vclock_clock(vc)});
    sl_metrics *m = (sl_metrics *)1;
    assert_int_equal(sl_metrics_get(NULL, s), SL_EINVAL);
    assert_int_equal(sl_metrics_get(&m, NULL), SL_EINVAL);
    assert_null(m);
    sl_metrics_free(NULL);
    size_t len;
    char buf[8];
    assert_int_equal(sl_metrics_prometheus(NULL, buf, sizeof buf, &len), SL_EINVAL);
    assert_int_equal(sl_metrics_prometheus(s, NULL, 8, &len), SL_EINVAL);
    assert_int_equal(sl_metrics_prometheus_fd(NULL, 1), SL_EINVAL);
    assert_int_equal(sl_metrics_prometheus_fd(s, -1), SL_EINVAL);
    sl_workload *w = (sl_workload *)1;
    assert_int_equal(sl_workload_observe(NULL, s, 0, 1, NULL, NULL), SL_EINVAL);
    assert_int_equal(sl_workload_observe(&w, NULL, 0, 1, NULL, NULL), SL_EINVAL);
    assert_null(w);
    w = (sl_workload *)1;
    assert_int_equal(sl_workload_observe(&w, s, 2, 1, NULL, NULL), SL_EINVAL);
    assert_null(w);
    assert_non_null(strstr(sl_errmsg(s), "window"));
    sl_workload_free(NULL);

    w = observe(s, INT64_MIN, INT64_MAX);
    const sl_prices ok = SL_PRICES_INIT;
    sl_bill b;
    sl_advice a;
    assert_int_equal(sl_bill_estimate(&b, w, &ok, 0, 0), 0);
    assert_int_equal(sl_bill_estimate(NULL, w, &ok, 0, 0), SL_EINVAL);
    assert_int_equal(sl_bill_estimate(&b, NULL, &ok, 0, 0), SL_EINVAL);
    assert_int_equal(sl_bill_estimate(&b, w, NULL, 0, 0), SL_EINVAL);
    assert_int_equal(sl_advise(NULL, w, &ok, 0), SL_EINVAL);
    assert_int_equal(sl_advise(&a, NULL, &ok, 0), SL_EINVAL);
    assert_int_equal(sl_advise(&a, w, NULL, 0), SL_EINVAL);
    sl_prices p = ok;
    p.version = SL_PRICES_VERSION + 1;
    assert_int_equal(sl_bill_estimate(&b, w, &p, 0, 0), SL_EINVAL);
    assert_int_equal(sl_advise(&a, w, &p, 0), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(NULL), "version"));
    /* each price: negative, NaN or infinite is refused, naming it */
    static const struct {
        size_t off;
        const char *name;
    } f[] = {{offsetof(sl_prices, shard_hour), "shard_hour"},
             {offsetof(sl_prices, put_units_million), "put_units_million"},
             {offsetof(sl_prices, extended_retention_shard_hour), "extended_retention"},
             {offsetof(sl_prices, long_retention_gb_month), "long_retention_gb_month"},
             {offsetof(sl_prices, efo_consumer_shard_hour), "efo_consumer_shard_hour"},
             {offsetof(sl_prices, efo_gb), "efo_gb"},
             {offsetof(sl_prices, ondemand_stream_hour), "ondemand_stream_hour"},
             {offsetof(sl_prices, ondemand_gb_in), "ondemand_gb_in"},
             {offsetof(sl_prices, ondemand_gb_out), "ondemand_gb_out"},
             {offsetof(sl_prices, hours_per_month), "hours_per_month"}};
    const double bad[] = {-0.001, NAN, INFINITY};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        for (size_t k = 0; k < 3; k++) {
            p = ok;
            memcpy((char *)&p + f[i].off, &bad[k], sizeof(double));
            assert_int_equal(sl_bill_estimate(&b, w, &p, 0, 0), SL_EINVAL);
            assert_non_null(strstr(sl_errmsg(NULL), f[i].name));
            assert_int_equal(sl_advise(&a, w, &p, 0), SL_EINVAL);
        }
    }
    p = ok;
    p.shard_hour = 0;                             /* free is a price */
    assert_int_equal(sl_bill_estimate(&b, w, &p, 0, 0), 0);
    p.hours_per_month = 0;                        /* a month has hours */
    assert_int_equal(sl_bill_estimate(&b, w, &p, 0, 0), SL_EINVAL);
    sl_workload bw = *w;                          /* a hand-made workload */
    bw.seconds = 0;
    assert_int_equal(sl_bill_estimate(&b, &bw, &ok, 0, 0), SL_EINVAL);
    bw.seconds = NAN;
    assert_int_equal(sl_advise(&a, &bw, &ok, 0), SL_EINVAL);
    bw = *w;
    bw.shards = NULL;
    assert_int_equal(sl_advise(&a, &bw, &ok, 0), SL_EINVAL);
    sl_workload_free(w);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(workload_synthetic, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(workload_units, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(workload_progress, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(bill_synthetic, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(advise, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(workload_cold, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(workload_encrypted_without_key, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(metrics_snapshot, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(prometheus_text, tu_setup, tu_teardown),
        cmocka_unit_test(prometheus_escape),
        cmocka_unit_test_setup_teardown(bad_arguments, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
