/*
** test_scheduler.c -- the read scheduler: dedicated budgets, fair shared
** turns, pacing, in-order exactly-once delivery, the thread and the host
** loop agreeing under a virtual clock, KDS expiry, faults, wake-ups.
** Everything time-dependent runs on a virtual clock; nothing sleeps.
*/
#include "testutil.h"

#include <pthread.h>

#define T0 1700000000000LL
#define KIB 1024u
#define MIB (1024u * 1024u)

/* Writes are not what these tests measure: make them unlimited. */
static sl_limits big_writes(void)
{
    sl_limits l = SL_LIMITS_INIT;
    l.write_records_per_s = 1000000000u;
    l.write_bytes_per_s = 1ull << 40;
    return l;
}

static sl_stream *mk(const char *root, const char *name, uint32_t shards,
                     sl_rate_mode mode, uint32_t flags, sl_vclock *vc)
{
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = name;
    c.shard_count = shards;
    c.durability = SL_DURABILITY_NONE;
    c.segment_bytes = 4u * MIB;
    sl_limits l = big_writes();
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.clock = vc ? sl_vclock_clock(vc) : NULL;
    o.rate_mode = mode;
    o.limits = &l;
    o.flags = flags;
    sl_stream *s = NULL;
    int rc = sl_stream_create(&s, root, &c, &o);
    if (rc) fprintf(stderr, "create: %s\n", sl_errmsg(NULL));
    assert_int_equal(rc, 0);
    return s;
}

/* n records of `size` data bytes, keys "k<i>". */
static void fill(sl_stream *s, int n, size_t size)
{
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    char *buf = malloc(size + 1);
    assert_non_null(buf);
    for (int i = 0; i < n; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d", i);
        memset(buf, 'a' + i % 26, size);
        assert_int_equal(sl_put(p, key, buf, size, NULL), 0);
    }
    free(buf);
    sl_producer_close(p);
}

static sl_consumer *consumer(sl_stream *s, const char *name, sl_consumer_type t)
{
    assert_int_equal(sl_consumer_register(s, name, t), 0);
    sl_consumer *c;
    assert_int_equal(sl_consumer_open(&c, s, name), 0);
    return c;
}

/* ---- a log of deliveries -------------------------------------------------- */

#define LOG_MAX 100000

typedef struct ev {
    int sub;                         /* which subscription */
    uint64_t first, last;
    size_t count;
    int end, error;
    uint64_t cont;
} ev;

typedef struct sink {
    int id;
    struct book *book;
    size_t batches;
    uint64_t bytes, records;
    uint64_t last_seq;               /* strictly increasing check */
    uint64_t max_delivery;           /* bytes of the biggest delivery */
    int stop_after;                  /* >0: return 1 after this many */
    int ends;
    int end_why, end_error;
    uint64_t end_cont;
} sink;

typedef struct book {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ev *log;
    size_t n;
} book;

static void book_init(book *b)
{
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    b->log = calloc(LOG_MAX, sizeof *b->log);
    assert_non_null(b->log);
    b->n = 0;
}

static void book_free(book *b)
{
    free(b->log);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
}

static int on_delivery(void *ctx, const sl_delivery *d)
{
    sink *k = ctx;
    book *b = k->book;
    pthread_mutex_lock(&b->mu);
    ev e = {k->id, d->count ? d->records[0].sequence : 0,
            d->count ? d->records[d->count - 1].sequence : 0, d->count, d->end, d->error,
            d->continuation_sequence};
    if (b->n < LOG_MAX) b->log[b->n++] = e;
    uint64_t bytes = 0;
    for (size_t i = 0; i < d->count; i++) {
        /* in order, never twice */
        if (d->records[i].sequence <= k->last_seq) k->last_seq = UINT64_MAX;
        else k->last_seq = d->records[i].sequence;
        bytes += d->records[i].data_len + d->records[i].key_len;
    }
    if (d->count) {
        k->batches++;
        k->records += d->count;
        k->bytes += bytes;
        if (bytes > k->max_delivery) k->max_delivery = bytes;
    }
    if (d->end) {
        k->ends++;
        k->end_why = d->end;
        k->end_error = d->error;
        k->end_cont = d->continuation_sequence;
    }
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->mu);
    return k->stop_after > 0 && (int)k->batches >= k->stop_after;
}

/* Deliver everything possible now (host-driven). */
static int drain(sl_sched *sc)
{
    int total = 0, n;
    while ((n = sl_sched_dispatch(sc, 0)) > 0) total += n;
    assert_true(n == 0);
    return total;
}

/* ---- budgets ------------------------------------------------------------------ */

/* Bytes the dedicated consumer receives in `steps` x 100 ms, with or without
** three shared consumers (one greedy) reading the same shard. */
static uint64_t dedicated_bytes(const char *root, const char *name, bool crowd, int steps)
{
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = mk(root, name, 1, SL_RATE_ENFORCE, 0, vc);
    fill(s, 3000, 10 * KIB);
    book b;
    book_init(&b);
    sl_consumer *cd = consumer(s, "efo", SL_CONSUMER_DEDICATED);
    sl_consumer *cs[3] = {0};
    sink kd = {.id = 0, .book = &b}, ks[3];
    sl_sched *sc;
    assert_int_equal(sl_sched_new(&sc, s), 0);
    sl_sub *sd, *ss[3] = {0};
    assert_int_equal(sl_subscribe(&sd, sc, cd, "shardId-000000000000", SL_ITER_TRIM_HORIZON, 0,
                                  100, on_delivery, &kd), 0);
    if (crowd) {
        for (int i = 0; i < 3; i++) {
            char nm[16];
            snprintf(nm, sizeof nm, "poll%d", i);
            cs[i] = consumer(s, nm, SL_CONSUMER_SHARED);
            ks[i] = (sink){.id = i + 1, .book = &b};
            assert_int_equal(sl_subscribe(&ss[i], sc, cs[i], "shardId-000000000000",
                                          SL_ITER_TRIM_HORIZON, 0, i == 2 ? 10000 : 20,
                                          on_delivery, &ks[i]), 0);
        }
    }
    for (int t = 0; t < steps; t++) {
        drain(sc);
        sl_vclock_advance(vc, 100);
    }
    drain(sc);
    assert_true(kd.last_seq != UINT64_MAX);
    uint64_t got = kd.bytes;
    if (crowd) {
        /* the shared ones did read meanwhile */
        for (int i = 0; i < 3; i++) assert_true(ks[i].records > 0);
    }
    sl_sched_free(sc);
    assert_int_equal(sl_consumer_close(cd), 0);
    for (int i = 0; i < 3; i++) assert_int_equal(sl_consumer_close(cs[i]), 0);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
    book_free(&b);
    return got;
}

static void dedicated_unaffected_by_shared(void **state)
{
    const char *root = *state;
    int steps = 50;                  /* 5 s */
    uint64_t alone = dedicated_bytes(root, "alone", false, steps);
    uint64_t crowded = dedicated_bytes(root, "crowded", true, steps);
    assert_int_equal(alone, crowded);
    /* 2 MiB/s: a full bucket (2 MiB) plus 5 s of refill, within a record */
    uint64_t rec = 10 * KIB + 8;
    assert_true(alone >= 12ull * MIB - rec);
    assert_true(alone <= 12ull * MIB + rec);
}

static void shared_consumers_share_fairly(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = mk(root, "fair", 1, SL_RATE_ENFORCE, 0, vc);
    fill(s, 8000, 1 * KIB);
    book b;
    book_init(&b);
    sl_sched *sc;
    assert_int_equal(sl_sched_new(&sc, s), 0);
    sl_consumer *c[3];
    sink k[3];
    sl_sub *sub[3];
    size_t batch[3] = {50, 50, 2000};   /* the third is greedy */
    for (int i = 0; i < 3; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "c%d", i);
        c[i] = consumer(s, nm, SL_CONSUMER_SHARED);
        k[i] = (sink){.id = i, .book = &b};
        assert_int_equal(sl_subscribe(&sub[i], sc, c[i], "shardId-000000000000",
                                      SL_ITER_TRIM_HORIZON, 0, batch[i], on_delivery, &k[i]), 0);
    }
    uint64_t biggest = 0;
    for (int t = 0; t < 40; t++) {   /* 4 s: nobody runs out of records */
        drain(sc);
        for (int i = 0; i < 3; i++) {
            assert_true(k[i].last_seq != UINT64_MAX);
            if (k[i].max_delivery > biggest) biggest = k[i].max_delivery;
        }
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                if (k[i].bytes > k[j].bytes) assert_true(k[i].bytes - k[j].bytes <= biggest);
        sl_vclock_advance(vc, 100);
    }
    for (int i = 0; i < 3; i++) {
        assert_true(k[i].records > 0);
        assert_true(k[i].records < 8000);   /* still backlogged: the test is meaningful */
    }
    /* the shard's shared budget: 5 calls at once, then one per 200 ms */
    sl_shard_counters sc0;
    assert_int_equal(sl_shard_counters_get(s, "shardId-000000000000", &sc0), 0);
    assert_true(sc0.reads <= 5 + 20);
    sl_sched_free(sc);
    for (int i = 0; i < 3; i++) assert_int_equal(sl_consumer_close(c[i]), 0);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
    book_free(&b);
}

static void shared_turns_paced_five_per_second(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = mk(root, "paced", 1, SL_RATE_ENFORCE, 0, vc);
    fill(s, 100, 10);
    book b;
    book_init(&b);
    sl_sched *sc;
    assert_int_equal(sl_sched_new(&sc, s), 0);
    sl_consumer *c = consumer(s, "poller", SL_CONSUMER_SHARED);
    sink k = {.id = 0, .book = &b};
    sl_sub *sub;
    assert_int_equal(sl_subscribe(&sub, sc, c, "shardId-000000000000", SL_ITER_TRIM_HORIZON, 0,
                                  1, on_delivery, &k), 0);
    assert_int_equal(drain(sc), 5);
    sl_vclock_advance(vc, 199);
    assert_int_equal(drain(sc), 0);
    sl_vclock_advance(vc, 1);
    assert_int_equal(drain(sc), 1);
    assert_int_equal(k.records, 6);
    /* ACCOUNT mode would not pace; OFF neither: checked by the agreement
    ** and wake-up tests, which run unpaced */
    sl_unsubscribe(sub);
    sl_sched_free(sc);
    assert_int_equal(sl_consumer_close(c), 0);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
    book_free(&b);
}

/* ---- the host loop and the thread agree ---------------------------------------- */

static void run_agreement(const char *root, const char *name, bool thread, book *b)
{
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = mk(root, name, 2, SL_RATE_ENFORCE, 0, vc);
    fill(s, 600, 3000);
    sl_sched *sc;
    assert_int_equal(sl_sched_new(&sc, s), 0);
    sl_consumer *c[3] = {consumer(s, "efo", SL_CONSUMER_DEDICATED),
                         consumer(s, "a", SL_CONSUMER_SHARED),
                         consumer(s, "b", SL_CONSUMER_SHARED)};
    sink k[6];
    sl_sub *sub[6];
    const char *shard[2] = {"shardId-000000000000", "shardId-000000000001"};
    for (int i = 0; i < 6; i++) {
        k[i] = (sink){.id = i, .book = b};
        assert_int_equal(sl_subscribe(&sub[i], sc, c[i % 3], shard[i / 3], SL_ITER_TRIM_HORIZON, 0,
                                      i % 3 == 2 ? 500 : 40, on_delivery, &k[i]), 0);
    }
    if (thread) assert_int_equal(sl_sched_start(sc), 0);
    for (int t = 0; t < 30; t++) {
        if (thread) assert_int_equal(sl_sched_wait_idle(sc, 10000), 1);
        else drain(sc);
        sl_vclock_advance(vc, 50);
    }
    if (thread) {
        assert_int_equal(sl_sched_wait_idle(sc, 10000), 1);
        assert_int_equal(sl_sched_dispatch(sc, 0), SL_EINUSE);
        assert_int_equal(sl_sched_stop(sc), 0);
    } else {
        drain(sc);
    }
    sl_sched_free(sc);
    for (int i = 0; i < 3; i++) assert_int_equal(sl_consumer_close(c[i]), 0);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

static void thread_and_host_deliver_the_same_sequence(void **state)
{
    const char *root = *state;
    book a, b;
    book_init(&a);
    book_init(&b);
    run_agreement(root, "host", false, &a);
    run_agreement(root, "thread", true, &b);
    assert_true(a.n > 30);
    assert_int_equal(a.n, b.n);
    for (size_t i = 0; i < a.n; i++) {
        assert_int_equal(a.log[i].sub, b.log[i].sub);
        assert_int_equal(a.log[i].first, b.log[i].first);
        assert_int_equal(a.log[i].count, b.log[i].count);
    }
    book_free(&a);
    book_free(&b);
}

/* ---- in order, exactly once, woken by commits ----------------------------------- */

typedef struct producer_arg {
    sl_stream *s;
    int n;
    uint64_t *seqs;
} producer_arg;

static void *produce(void *arg)
{
    producer_arg *a = arg;
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, a->s), 0);
    for (int i = 0; i < a->n; i++) {
        char key[32];
        snprintf(key, sizeof key, "key-%d", i % 7);
        assert_int_equal(sl_put(p, key, &i, sizeof i, &a->seqs[i]), 0);
    }
    sl_producer_close(p);
    return NULL;
}

static void delivers_in_order_exactly_once_while_writing(void **state)
{
    const char *root = *state;
    sl_stream *s = mk(root, "live", 1, SL_RATE_OFF, 0, NULL);
    book b;
    book_init(&b);
    sl_sched *sc;
    assert_int_equal(sl_sched_new(&sc, s), 0);
    sl_consumer *c = consumer(s, "tail", SL_CONSUMER_DEDICATED);
    sink k = {.id = 0, .book = &b};
    sl_sub *sub;
    assert_int_equal(sl_subscribe(&sub, sc, c, "shardId-000000000000", SL_ITER_LATEST, 0, 64,
                                  on_delivery, &k), 0);
    assert_int_equal(sl_sched_start(sc), 0);
    enum { N = 20000 };
    producer_arg pa = {s, N, calloc(N, sizeof(uint64_t))};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, produce, &pa), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    /* every record arrives (the thread sleeps between commits: it is woken) */
    pthread_mutex_lock(&b.mu);
    while (k.records < N) pthread_cond_wait(&b.cv, &b.mu);
    pthread_mutex_unlock(&b.mu);
    assert_int_equal(sl_sched_stop(sc), 0);
    assert_int_equal(k.records, N);
    assert_int_equal(k.last_seq, pa.seqs[N - 1]);
    /* exactly the records put, in order */
    size_t i = 0;
    for (size_t e = 0; e < b.n; e++) {
        assert_int_equal(b.log[e].first, pa.seqs[i]);
        i += b.log[e].count;
        assert_int_equal(b.log[e].last, pa.seqs[i - 1]);
    }
    sl_consumer_counters cc;
    assert_int_equal(sl_consumer_counters_get(c, "shardId-000000000000", &cc), 0);
    assert_int_equal(cc.records_out, N);
    assert_int_equal(cc.deliveries, b.n);
    free(pa.seqs);
    sl_sched_free(sc);
    assert_int_equal(sl_consumer_close(c), 0);
    assert_int_equal(sl_stream_close(s), 0);
    book_free(&b);
}

/* ---- endings --------------------------------------------------------------------- */

static void kds_subscription_expires_after_five_minutes(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = mk(root, "kds", 1, SL_RATE_DEFAULT, SL_OPEN_KDS_PROFILE, vc);
    fill(s, 10, 100);
    book b;
    book_init(&b);
    sl_sched *sc;
    assert_int_equal(sl_sched_new(&sc, s), 0);
    sl_consumer *c = consumer(s, "efo", SL_CONSUMER_DEDICATED);
    sink k = {.id = 0, .book = &b, .stop_after = 0};
    sl_sub *sub;
    assert_int_equal(sl_subscribe(&sub, sc, c, "shardId-000000000000", SL_ITER_TRIM_HORIZON, 0, 4,
                                  on_delivery, &k), 0);
    drain(sc);
    assert_int_equal(k.records, 10);
    assert_int_equal(k.batches, 3);
    sl_vclock_advance(vc, 299999);
    drain(sc);
    assert_int_equal(k.ends, 0);
    fill(s, 2, 100);
    sl_vclock_advance(vc, 1);
    drain(sc);
    /* expired: no more records, the end, and where to go on from */
    assert_int_equal(k.records, 10);
    assert_int_equal(k.ends, 1);
    assert_int_equal(k.end_why, SL_SUB_END_EXPIRED);
    assert_int_equal(k.end_cont, k.last_seq);
    /* a second subscription while the first is live is refused; after the
    ** end, resubscribing goes on exactly where it stopped */
    sl_sub *again;
    assert_int_equal(sl_subscribe(&again, sc, c, "shardId-000000000000",
                                  SL_ITER_AFTER_SEQUENCE_NUMBER, k.end_cont, 4, on_delivery, &k), 0);
    sl_sub *third;
    assert_int_equal(sl_subscribe(&third, sc, c, "shardId-000000000000", SL_ITER_LATEST, 0, 4,
                                  on_delivery, &k), SL_EINUSE);
    drain(sc);
    assert_int_equal(k.records, 12);
    assert_true(k.last_seq != UINT64_MAX);
    assert_int_equal(sl_consumer_close(c), SL_EINUSE);   /* subscriptions remain */
    sl_unsubscribe(sub);
    sl_unsubscribe(again);
    sl_sched_free(sc);
    assert_int_equal(sl_consumer_close(c), 0);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
    book_free(&b);
}

static void handler_ends_its_subscription(void **state)
{
    const char *root = *state;
    sl_stream *s = mk(root, "stop", 1, SL_RATE_OFF, 0, NULL);
    fill(s, 50, 10);
    book b;
    book_init(&b);
    sl_sched *sc;
    assert_int_equal(sl_sched_new(&sc, s), 0);
    sl_consumer *c = consumer(s, "c", SL_CONSUMER_SHARED);
    sink k = {.id = 0, .book = &b, .stop_after = 2};
    sl_sub *sub;
    assert_int_equal(sl_subscribe(&sub, sc, c, "shardId-000000000000", SL_ITER_TRIM_HORIZON, 0, 10,
                                  on_delivery, &k), 0);
    drain(sc);
    assert_int_equal(k.batches, 2);
    assert_int_equal(k.records, 20);
    /* the claim was released: a new subscription may start after it */
    sink k2 = {.id = 1, .book = &b};
    sl_sub *sub2;
    assert_int_equal(sl_subscribe(&sub2, sc, c, "shardId-000000000000",
                                  SL_ITER_AFTER_SEQUENCE_NUMBER, k.last_seq, 10, on_delivery, &k2),
                     0);
    drain(sc);
    assert_int_equal(k2.records, 30);
    sl_unsubscribe(sub);
    sl_unsubscribe(sub2);
    /* bad arguments */
    assert_int_equal(sl_subscribe(&sub2, sc, c, "shardId-000000000000", SL_ITER_LATEST, 0, 0,
                                  on_delivery, &k2), SL_EVALIDATION);
    assert_int_equal(sl_subscribe(&sub2, sc, c, "shardId-000000000009", SL_ITER_LATEST, 0, 1,
                                  on_delivery, &k2), SL_ENOTFOUND);
    assert_int_equal(sl_subscribe(&sub2, sc, c, "shardId-000000000000", SL_ITER_LATEST, 0, 1, NULL,
                                  &k2), SL_EINVAL);
    sl_sched_free(sc);
    assert_int_equal(sl_consumer_close(c), 0);
    assert_int_equal(sl_stream_close(s), 0);
    book_free(&b);
}

static void injected_read_faults(void **state)
{
    const char *root = *state;
    sl_stream *s = mk(root, "faults", 1, SL_RATE_OFF, 0, NULL);
    fill(s, 30, 10);
    book b;
    book_init(&b);
    sl_sched *sc;
    assert_int_equal(sl_sched_new(&sc, s), 0);
    sl_consumer *c = consumer(s, "c", SL_CONSUMER_DEDICATED);
    sink k = {.id = 0, .book = &b};
    sl_sub *sub;
    assert_int_equal(sl_subscribe(&sub, sc, c, "shardId-000000000000", SL_ITER_TRIM_HORIZON, 0, 10,
                                  on_delivery, &k), 0);
    /* a throttle on the 2nd read: that turn is skipped, nothing is lost */
    sl_fault f = {SL_FAULT_VERSION, SL_FAULT_READ_NTH, 2, NULL, 0};
    assert_int_equal(sl_fault_inject(s, &f), 0);
    drain(sc);
    assert_int_equal(k.records, 30);
    sl_consumer_counters cc;
    assert_int_equal(sl_consumer_counters_get(c, "shardId-000000000000", &cc), 0);
    assert_int_equal(cc.read_throttled, 1);
    /* an I/O error on the next read ends the subscription, saying why */
    fill(s, 5, 10);
    f.nth = 1;
    f.error = SL_EIO;
    assert_int_equal(sl_fault_inject(s, &f), 0);
    drain(sc);
    assert_int_equal(k.records, 30);
    assert_int_equal(k.ends, 1);
    assert_int_equal(k.end_why, SL_SUB_END_ERROR);
    assert_int_equal(k.end_error, SL_EIO);
    assert_int_equal(k.end_cont, k.last_seq);
    sl_unsubscribe(sub);
    sl_sched_free(sc);
    assert_int_equal(sl_consumer_close(c), 0);
    assert_int_equal(sl_stream_close(s), 0);
    book_free(&b);
}

/* sl_unsubscribe from another thread waits for a running handler. */
typedef struct slow {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int in, release, done;
} slow;

static int slow_handler(void *ctx, const sl_delivery *d)
{
    (void)d;
    slow *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->in = 1;
    pthread_cond_broadcast(&w->cv);
    while (!w->release) pthread_cond_wait(&w->cv, &w->mu);
    w->done = 1;
    pthread_mutex_unlock(&w->mu);
    return 0;
}

static void *unsub_thread(void *arg)
{
    sl_unsubscribe(arg);
    return NULL;
}

static void unsubscribe_waits_for_the_handler(void **state)
{
    const char *root = *state;
    sl_stream *s = mk(root, "unsub", 1, SL_RATE_OFF, 0, NULL);
    fill(s, 5, 10);
    sl_sched *sc;
    assert_int_equal(sl_sched_new(&sc, s), 0);
    sl_consumer *c = consumer(s, "c", SL_CONSUMER_DEDICATED);
    slow w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0};
    sl_sub *sub;
    assert_int_equal(sl_subscribe(&sub, sc, c, "shardId-000000000000", SL_ITER_TRIM_HORIZON, 0, 10,
                                  slow_handler, &w), 0);
    assert_int_equal(sl_sched_start(sc), 0);
    pthread_mutex_lock(&w.mu);
    while (!w.in) pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, unsub_thread, sub), 0);
    pthread_mutex_lock(&w.mu);
    w.release = 1;
    pthread_cond_broadcast(&w.cv);
    pthread_mutex_unlock(&w.mu);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(w.done, 1);     /* the handler had returned */
    sl_sched_free(sc);
    assert_int_equal(sl_consumer_close(c), 0);
    assert_int_equal(sl_stream_close(s), 0);
}

static void stream_close_waits_for_the_scheduler(void **state)
{
    const char *root = *state;
    sl_stream *s = mk(root, "busy", 1, SL_RATE_OFF, 0, NULL);
    sl_sched *sc;
    assert_int_equal(sl_sched_new(&sc, s), 0);
    assert_int_equal(sl_stream_close(s), SL_EINUSE);
    assert_int_equal(sl_sched_wait_idle(sc, 0), SL_EINVAL);   /* no thread */
    assert_int_equal(sl_sched_dispatch(sc, 0), 0);             /* nothing to do */
    sl_sched_free(sc);
    assert_int_equal(sl_stream_close(s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(dedicated_unaffected_by_shared, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(shared_consumers_share_fairly, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(shared_turns_paced_five_per_second, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(thread_and_host_deliver_the_same_sequence, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(delivers_in_order_exactly_once_while_writing, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(kds_subscription_expires_after_five_minutes, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(handler_ends_its_subscription, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(injected_read_faults, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(unsubscribe_waits_for_the_handler, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(stream_close_waits_for_the_scheduler, tu_setup,
                                        tu_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
