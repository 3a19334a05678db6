/*
** test_crash.c -- crash recovery with real processes: a child appends
** (one or several threads, each durability mode), acknowledging every
** successful put to the parent through a pipe; the parent SIGKILLs it at a
** random point, reopens the stream, and checks the promises:
**   - every acknowledged record is present, intact, with the acknowledged
**     sequence number (a process crash loses nothing in any mode: the page
**     cache survives it);
**   - per writer thread, the records present are a gap-free prefix of what
**     it wrote (nothing half-written in the middle);
**   - no corrupt record is returned, and recovery reports no damage (a torn
**     tail is not damage);
**   - sequence numbers strictly increase in each shard and are never
**     reused across rounds; records of earlier rounds never disappear.
** Iterations per case: SL_CRASH_ITERS (default 25; `make stress` raises it);
** a fresh stream every 40 iterations keeps long runs linear.
*/
#include "testutil.h"

#include <poll.h>
#include <pthread.h>

#define NAME "crash"
#define MAX_THREADS 4
#define MAX_ROUNDS 1000

typedef struct ack {
    uint32_t round, thread, i, pad;
    uint64_t seq;
} ack;

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static size_t rec_len(uint32_t i) { return 24 + (i * 7919u) % 700; }

static int fmt_rec(char *buf, uint32_t round, uint32_t thread, uint32_t i)
{
    int h = snprintf(buf, 32, "r%04ut%02ui%08u|", round, thread, i);
    size_t n = rec_len(i);
    memset(buf + h, 'a' + (int)(i % 26), n - (size_t)h);
    return (int)n;
}

/* ---- the child ------------------------------------------------------------ */

typedef struct child_thread {
    sl_stream *s;
    int fd;
    uint32_t round, thread;
} child_thread;

static void *child_writer(void *arg)
{
    child_thread *c = arg;
    sl_producer *p;
    if (sl_producer_open(&p, c->s)) _exit(3);
    char buf[800], key[16];
    for (uint32_t i = 0;; i++) {
        snprintf(key, sizeof key, "t%ui%u", c->thread, i % 97);
        int n = fmt_rec(buf, c->round, c->thread, i);
        uint64_t seq;
        int rc = sl_put(p, key, buf, (size_t)n, &seq);
        if (rc) _exit(4);
        ack a = {c->round, c->thread, i, 0, seq};
        if (write(c->fd, &a, sizeof a) != sizeof a) _exit(5);
    }
    return NULL;
}

static void child_main(const char *root, int fd, uint32_t round, int threads)
{
    sl_stream *s;
    if (sl_stream_open(&s, root, NAME, NULL)) _exit(2);
    child_thread ct[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        ct[t] = (child_thread){s, fd, round, (uint32_t)t};
        if (t) pthread_create(&th[t], NULL, child_writer, &ct[t]);
    }
    child_writer(&ct[0]);
    _exit(0);
}

/* ---- the parent ----------------------------------------------------------- */

typedef struct expect {
    uint32_t acked[MAX_ROUNDS][MAX_THREADS];   /* acknowledged count */
    uint64_t maxseq_before;                     /* of all earlier rounds */
    size_t records_before;
} expect;

static void verify(const char *root, expect *ex, uint32_t rounds, int threads)
{
    tu_reports rep = {0};
    tu_opts o = {.reports = &rep};
    sl_stream *s = tu_open(root, NAME, &o);
    if (rep.count) fail_msg("recovery reported damage: %s", rep.all);
    sl_shard_list *l;
    assert_int_equal(sl_stream_list_shards(&l, s), 0);
    static uint32_t seen[MAX_ROUNDS][MAX_THREADS];
    memset(seen, 0, sizeof seen);
    size_t total = 0;
    uint64_t maxseq = 0;
    for (size_t sh = 0; sh < l->count; sh++) {
        tu_recs r = {0};
        tu_read_shard(s, l->shards[sh].shard_id, &r);
        assert_int_equal(r.corrupt, 0);
        for (size_t k = 0; k < r.n; k++) {
            const tu_rec *x = &r.v[k];
            if (k) assert_true(x->seq > r.v[k - 1].seq);
            if (x->seq > maxseq) maxseq = x->seq;
            unsigned rd, t, i;
            if (sscanf(x->data, "r%4ut%2ui%8u|", &rd, &t, &i) != 3) fail_msg("bad record '%.40s'", x->data);
            assert_true(rd < rounds && t < (unsigned)threads);
            char want[800];
            int n = fmt_rec(want, rd, t, i);
            assert_int_equal(x->dlen, (size_t)n);
            assert_memory_equal(x->data, want, (size_t)n);
            /* per thread and round, records arrive in put order (a thread's
            ** keys spread over shards, so count rather than compare) */
            seen[rd][t]++;
        }
        total += r.n;
        tu_recs_free(&r);
    }
    sl_shard_list_free(l);
    /* every acknowledged record is there; no more than a put in flight
    ** beyond, per thread */
    for (uint32_t rd = 0; rd < rounds; rd++)
        for (int t = 0; t < threads; t++) {
            if (seen[rd][t] < ex->acked[rd][t])
                fail_msg("round %u thread %d: %u acknowledged, %u present", rd, t,
                         ex->acked[rd][t], seen[rd][t]);
            if (seen[rd][t] > ex->acked[rd][t] + 1)
                fail_msg("round %u thread %d: %u acknowledged, %u present", rd, t,
                         ex->acked[rd][t], seen[rd][t]);
        }
    /* records of earlier rounds never disappear; numbers only grow */
    assert_true(total >= ex->records_before);
    assert_true(maxseq >= ex->maxseq_before);
    ex->records_before = total;
    ex->maxseq_before = maxseq;
    assert_int_equal(sl_stream_close(s), 0);
}

/* An acknowledged sequence number must be the one found for that record. */
static void check_ack_seqs(const char *root, const ack *acks, size_t n)
{
    if (n == 0) return;
    sl_stream *s = tu_open(root, NAME, NULL);
    /* spot-check up to 64 acknowledgements by AT_SEQUENCE_NUMBER lookups */
    for (size_t k = 0; k < 64 && k < n; k++) {
        const ack *a = &acks[(k * 7919) % n];
        bool found = false;
        for (int sh = 0; sh < 4 && !found; sh++) {
            char id[SL_SHARD_ID_LEN + 1];
            snprintf(id, sizeof id, "shardId-%012d", sh);
            sl_iter *it;
            if (sl_iter_open(&it, s, id, SL_ITER_AT_SEQUENCE_NUMBER, a->seq) != 0) continue;
            sl_record r[1];
            sl_read_result res;
            assert_int_equal(sl_iter_read(it, r, 1, &res), 0);
            assert_int_equal(res.count, 1);
            char want[800];
            int len = fmt_rec(want, a->round, a->thread, a->i);
            assert_int_equal(r[0].data_len, (size_t)len);
            assert_memory_equal(r[0].data, want, (size_t)len);
            found = true;
            sl_iter_close(it);
        }
        if (!found) fail_msg("acknowledged sequence %" PRIu64 " not found", a->seq);
    }
    assert_int_equal(sl_stream_close(s), 0);
}

static void crash_case(const char *root, sl_durability mode, int threads)
{
    int iters = getenv("SL_CRASH_ITERS") ? atoi(getenv("SL_CRASH_ITERS")) : 25;
    if (iters > MAX_ROUNDS) iters = MAX_ROUNDS;
    tu_opts o = {.shards = 4, .durability = mode};
    sl_stream *s = tu_create(root, NAME, &o);
    assert_int_equal(sl_stream_close(s), 0);
    expect *ex = calloc(1, sizeof *ex);
    size_t cap = 1 << 16;
    ack *acks = malloc(cap * sizeof *acks);
    assert_non_null(ex);
    assert_non_null(acks);
    /* ALWAYS mode pays a sync per put: fewer acknowledgements per round */
    uint64_t max_target = mode == SL_DURABILITY_ALWAYS ? 150 : 3000;
    for (int round = 0; round < iters; round++) {
        if (round && round % 40 == 0) {
            /* a fresh stream now and then keeps long runs linear */
            assert_int_equal(sl_stream_delete(root, NAME), 0);
            s = tu_create(root, NAME, &o);
            assert_int_equal(sl_stream_close(s), 0);
            memset(ex, 0, sizeof *ex);
        }
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            child_main(root, pfd[1], (uint32_t)round, threads);
        }
        close(pfd[1]);
        /* read acknowledgements until the random kill point */
        uint64_t target = 1 + rng() % max_target;
        size_t n = 0;
        ack a;
        bool killed = false;
        for (;;) {
            if (!killed && n >= target) {
                kill(pid, SIGKILL);
                killed = true;
            }
            ssize_t r = read(pfd[0], &a, sizeof a);
            if (r == 0) break;                       /* the child is gone */
            if (r < 0 && errno == EINTR) continue;
            assert_int_equal(r, (ssize_t)sizeof a);
            assert_int_equal(a.round, (uint32_t)round);
            if (ex->acked[round][a.thread] != a.i) fail_msg("ack out of order");
            ex->acked[round][a.thread] = a.i + 1;
            if (n < cap) acks[n] = a;
            n++;
        }
        close(pfd[0]);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
            fail_msg("child ended by itself (status %d): it failed", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        verify(root, ex, (uint32_t)round + 1, threads);
        check_ack_seqs(root, acks, n < cap ? n : cap);
    }
    free(acks);
    free(ex);
}

static void crash_none_1(void **state) { crash_case(*state, SL_DURABILITY_NONE, 1); }
static void crash_none_4(void **state) { crash_case(*state, SL_DURABILITY_NONE, 4); }
static void crash_interval_1(void **state) { crash_case(*state, SL_DURABILITY_INTERVAL, 1); }
static void crash_interval_4(void **state) { crash_case(*state, SL_DURABILITY_INTERVAL, 4); }
static void crash_always_1(void **state) { crash_case(*state, SL_DURABILITY_ALWAYS, 1); }
static void crash_always_4(void **state) { crash_case(*state, SL_DURABILITY_ALWAYS, 4); }

int main(void)
{
    const char *env = getenv("SL_CRASH_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)getpid() * 2654435761u;
    rng_state ^= seed;
    if (!rng_state) rng_state = 1;
    fprintf(stderr, "crash: SL_CRASH_SEED=%" PRIu64 " reproduces this run\n", seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(crash_none_1, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(crash_none_4, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(crash_interval_1, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(crash_interval_4, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(crash_always_1, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(crash_always_4, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests_name("crash", tests, NULL, NULL);
}
