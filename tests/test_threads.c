/*
** test_threads.c -- concurrency: writer threads on every shard with
** follower threads reading as they write, concurrent batches, concurrent
** ALWAYS-mode puts, describe while writing.  Built and run under
** ThreadSanitizer by `make SAN=thread test-threads` (in CI).
**
** Promises checked: every sequence number a put returned is readable
** exactly once, in its shard, and sequence numbers strictly increase in
** each shard, as followers see them and as a final read sees them.
*/
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#define NAME "thr"
#define SHARDS 4
#define WRITERS 4

static int scale(int n)
{
    /* sanitizers slow everything down ~10x; keep the same shapes */
    const char *e = getenv("SL_THREADS_SCALE");
    return e ? n * atoi(e) / 100 : n;
}

typedef struct wstate {
    sl_stream *s;
    int id, n;
    uint64_t *seq;
    uint32_t *shard;
} wstate;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void *writer(void *arg)
{
    wstate *w = arg;
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, w->s), 0);
    uint64_t rs = (uint64_t)w->id * 7777;
    char key[24], data[200];
    for (int i = 0; i < w->n; i++) {
        snprintf(key, sizeof key, "%016" PRIx64, splitmix(&rs));
        int n = snprintf(data, sizeof data, "w%d:%d:", w->id, i);
        memset(data + n, 'p', (size_t)(i % 150));
        sl_put_entry e = {key, data, (size_t)n + (size_t)(i % 150), NULL};
        sl_put_result r;
        assert_int_equal(sl_producer_put(p, &e, &r), 0);
        w->seq[i] = r.sequence;
        w->shard[i] = r.shard_index;
    }
    sl_producer_close(p);
    return NULL;
}

typedef struct fstate {
    sl_stream *s;
    char shard[SL_SHARD_ID_LEN + 1];
    _Atomic int *done;
    uint64_t *seen;
    size_t n, cap;
} fstate;

static void *follower(void *arg)
{
    fstate *f = arg;
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, f->s, f->shard, SL_ITER_TRIM_HORIZON, 0), 0);
    static _Thread_local sl_record recs[500];
    for (;;) {
        bool finished = atomic_load(f->done);
        sl_read_result r;
        assert_int_equal(sl_iter_read(it, recs, 500, &r), 0);
        for (size_t i = 0; i < r.count; i++) {
            if (f->n == f->cap) {
                f->cap = f->cap ? f->cap * 2 : 1024;
                f->seen = realloc(f->seen, f->cap * sizeof *f->seen);
                assert_non_null(f->seen);
            }
            f->seen[f->n++] = recs[i].sequence;
        }
        if (r.count == 0) {
            if (finished) break;          /* caught up after the writers ended */
            int w = sl_iter_wait(it, 50);
            assert_true(w >= 0);
        }
    }
    sl_iter_close(it);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void writers_and_followers(void **state)
{
    tu_opts o = {.shards = SHARDS};
    sl_stream *s = tu_create(*state, NAME, &o);
    int per = scale(20000);
    wstate w[WRITERS];
    fstate f[SHARDS];
    pthread_t wt[WRITERS], ft[SHARDS];
    _Atomic int done = 0;
    for (int i = 0; i < SHARDS; i++) {
        f[i] = (fstate){s, "", &done, NULL, 0, 0};
        snprintf(f[i].shard, sizeof f[i].shard, "shardId-%012d", i);
        assert_int_equal(pthread_create(&ft[i], NULL, follower, &f[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (wstate){s, i, per, calloc((size_t)per, 8), calloc((size_t)per, 4)};
        assert_int_equal(pthread_create(&wt[i], NULL, writer, &w[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++) pthread_join(wt[i], NULL);
    atomic_store(&done, 1);
    for (int i = 0; i < SHARDS; i++) pthread_join(ft[i], NULL);

    /* what the writers were told, per shard, sorted */
    for (int sh = 0; sh < SHARDS; sh++) {
        size_t n = 0;
        uint64_t *mine = malloc((size_t)per * WRITERS * 8);
        for (int i = 0; i < WRITERS; i++)
            for (int k = 0; k < per; k++)
                if (w[i].shard[k] == (uint32_t)sh) mine[n++] = w[i].seq[k];
        qsort(mine, n, 8, cmp_u64);
        for (size_t k = 1; k < n; k++) assert_true(mine[k] > mine[k - 1]);  /* unique */
        /* the follower saw exactly these, in increasing order */
        assert_int_equal(f[sh].n, n);
        for (size_t k = 0; k < n; k++) assert_int_equal(f[sh].seen[k], mine[k]);
        /* and so does a fresh read */
        tu_recs r = {0};
        tu_read_shard(s, f[sh].shard, &r);
        assert_int_equal(r.n, n);
        for (size_t k = 0; k < n; k++) assert_int_equal(r.v[k].seq, mine[k]);
        tu_recs_free(&r);
        free(mine);
        free(f[sh].seen);
    }
    /* each writer's own numbers increase in each shard */
    for (int i = 0; i < WRITERS; i++) {
        uint64_t last[SHARDS] = {0};
        for (int k = 0; k < per; k++) {
            assert_true(w[i].seq[k] > last[w[i].shard[k]]);
            last[w[i].shard[k]] = w[i].seq[k];
        }
        free(w[i].seq);
        free(w[i].shard);
    }
    assert_int_equal(sl_stream_close(s), 0);
}

typedef struct bstate {
    sl_stream *s;
    int id, rounds;
    uint64_t *seqs;
} bstate;

static void *batcher(void *arg)
{
    bstate *b = arg;
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, b->s), 0);
    enum { B = 100 };
    sl_put_entry e[B];
    sl_put_result r[B];
    char keys[B][16];
    for (int round = 0; round < b->rounds; round++) {
        for (int i = 0; i < B; i++) {
            snprintf(keys[i], sizeof keys[i], "b%d-%d", b->id, (round * B + i) % 37);
            e[i] = (sl_put_entry){keys[i], "batch-data", 10, NULL};
        }
        size_t failed = 1;
        assert_int_equal(sl_producer_put_batch(p, e, B, r, &failed), 0);
        assert_int_equal(failed, 0);
        for (int i = 0; i < B; i++) b->seqs[round * B + i] = r[i].sequence;
    }
    sl_producer_close(p);
    return NULL;
}

static void concurrent_batches(void **state)
{
    tu_opts o = {.shards = SHARDS};
    sl_stream *s = tu_create(*state, NAME, &o);
    int rounds = scale(40);
    bstate b[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        b[i] = (bstate){s, i, rounds, calloc((size_t)rounds * 100, 8)};
        assert_int_equal(pthread_create(&th[i], NULL, batcher, &b[i]), 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    size_t total = (size_t)rounds * 100 * 4, n = 0;
    uint64_t *all = malloc(total * 8);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < rounds * 100; k++) all[n++] = b[i].seqs[k];
    qsort(all, n, 8, cmp_u64);
    for (size_t k = 1; k < n; k++) assert_true(all[k] > all[k - 1]);
    tu_recs r = {0};
    tu_read_all(s, &r);
    assert_int_equal(r.n, total);
    uint64_t *got = malloc(total * 8);
    for (size_t k = 0; k < r.n; k++) got[k] = r.v[k].seq;
    qsort(got, r.n, 8, cmp_u64);
    for (size_t k = 0; k < total; k++) assert_int_equal(got[k], all[k]);
    tu_recs_free(&r);
    free(got);
    free(all);
    for (int i = 0; i < 4; i++) free(b[i].seqs);
    assert_int_equal(sl_stream_close(s), 0);
}

/* ALWAYS mode from many threads, with describe and sync calls racing. */
typedef struct astate {
    sl_stream *s;
    int n;
} astate;

static void *always_putter(void *arg)
{
    astate *a = arg;
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, a->s), 0);
    for (int i = 0; i < a->n; i++) {
        char k[8];
        snprintf(k, sizeof k, "%d", i % 11);
        assert_int_equal(sl_put(p, k, "durable", 7, NULL), 0);
    }
    sl_producer_close(p);
    return NULL;
}

static void *describer(void *arg)
{
    astate *a = arg;
    for (int i = 0; i < a->n; i++) {
        sl_stream_desc *d;
        assert_int_equal(sl_stream_describe(&d, a->s), 0);
        sl_stream_desc_free(d);
        assert_int_equal(sl_stream_sync(a->s), 0);
    }
    return NULL;
}

static void always_mode_threads(void **state)
{
    tu_opts o = {.shards = 2, .durability = SL_DURABILITY_ALWAYS};
    sl_stream *s = tu_create(*state, NAME, &o);
    int per = scale(60);
    astate a = {s, per}, d = {s, per / 4 + 1};
    pthread_t th[8], dt;
    for (int i = 0; i < 8; i++) assert_int_equal(pthread_create(&th[i], NULL, always_putter, &a), 0);
    assert_int_equal(pthread_create(&dt, NULL, describer, &d), 0);
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
    pthread_join(dt, NULL);
    tu_recs r = {0};
    tu_read_all(s, &r);
    assert_int_equal(r.n, (size_t)per * 8);
    tu_recs_free(&r);
    assert_int_equal(sl_stream_close(s), 0);
}

/* A sync fails while threads queue behind the group-commit leader: every
** thread comes back (none hangs on a leader that gave up), each put after
** its thread saw the failure fails too, and every acknowledged record is
** there after a reopen. */
static atomic_int syncs_left;

static int msync_fails_later(void *a, size_t l, int fl)
{
    if (atomic_fetch_sub(&syncs_left, 1) > 0) return msync(a, l, fl);
    errno = EIO;
    return -1;
}

static int fdatasync_fails_later(int fd)
{
    if (atomic_fetch_sub(&syncs_left, 1) > 0) return fdatasync(fd);
    errno = EIO;
    return -1;
}

typedef struct pstate {
    sl_stream *s;
    int id, n, acked;
    bool saw_eio, ok_after_eio;
} pstate;

static void *failing_putter(void *arg)
{
    pstate *f = arg;
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, f->s), 0);
    for (int i = 0; i < f->n; i++) {
        char k[16], d[16];
        snprintf(k, sizeof k, "%d", f->id);
        int n = snprintf(d, sizeof d, "%d:%d", f->id, i);
        int rc = sl_put(p, k, d, (size_t)n, NULL);
        if (rc == 0) {
            f->acked++;
            if (f->saw_eio) f->ok_after_eio = true;
        } else {
            assert_int_equal(rc, SL_EIO);
            f->saw_eio = true;
        }
    }
    sl_producer_close(p);
    return NULL;
}

static void sync_failure_releases_waiters(void **state)
{
    tu_opts o = {.shards = 1, .durability = SL_DURABILITY_ALWAYS};
    sl_stream *s = tu_create(*state, NAME, &o);
    atomic_store(&syncs_left, 40);
    sl__os.msync = msync_fails_later;         /* the segments' syncs */
    sl__os.fdatasync = fdatasync_fails_later; /* the journal's */
    enum { T = 8 };
    pstate f[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        f[i] = (pstate){s, i, scale(100), 0, false, false};
        assert_int_equal(pthread_create(&th[i], NULL, failing_putter, &f[i]), 0);
    }
    int acked = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_true(f[i].saw_eio);
        assert_false(f[i].ok_after_eio);
        acked += f[i].acked;
    }
    sl__os_reset();
    sl_stream_close(s);
    s = tu_open(*state, NAME, NULL);
    tu_recs r = {0};
    tu_read_all(s, &r);
    assert_int_equal(r.corrupt, 0);
    /* each thread's acknowledged records are its first `acked` ones;
    ** unacknowledged ones may be there too */
    assert_true(r.n >= (size_t)acked);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < f[t].acked; i++) {
            char d[16];
            int n = snprintf(d, sizeof d, "%d:%d", t, i);
            size_t j = 0;
            while (j < r.n && !(r.v[j].dlen == (size_t)n && memcmp(r.v[j].data, d, (size_t)n) == 0)) j++;
            if (j == r.n) fail_msg("acknowledged record %s is missing", d);
        }
    tu_recs_free(&r);
    assert_int_equal(sl_stream_close(s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(writers_and_followers, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(concurrent_batches, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(always_mode_threads, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(sync_failure_releases_waiters, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests_name("threads", tests, NULL, NULL);
}
