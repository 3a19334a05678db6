/*
** test_crashmatrix.c -- the crash matrix (issue 9): a writer in a child
** process, SIGKILLed at random points, for every combination of
**   writer threads      1, 4
**   durability          NONE, INTERVAL (20 ms), ALWAYS
**   encryption          off, KMS (a key-file provider; some rounds rotate)
**   maintenance         off, on: a maintenance thread every 5 ms, key
**                       compaction (bounded key set, 64 KiB segments, so
**                       segments seal and get compacted), and on every
**                       third round of a stream cold storage (the child's
**                       clock runs 2 hours ahead per round, so earlier
**                       rounds' sealed segments are old enough)
** The child also runs a consumer (registered once, opened, one consumer
** iterator per shard, a checkpoint after every read) that checks what it
** reads and tells the parent each checkpoint before and after it is made.
** Writers put single records and batches of up to BATCH_MAX, and
** acknowledge every successful put through the pipe (round, thread,
** index, sequence number, shard).
**
** The parent kills the child after a random number of acknowledgements,
** after a random delay (sometimes before any, so during open or recovery),
** or both.  Then it reopens the stream -- as the writer (recovery runs,
** with a report callback), or on some rounds read-only only, so that the
** next child recovers the crashed stream itself -- and checks the README's
** promises for a process crash:
**   - recovery and verification (sl_stream_verify) report no damage, and
**     no read returns SL_ECORRUPT;
**   - every acknowledged record is present, intact (content and partition
**     key derived from round, thread and index), with its acknowledged
**     sequence number; with compaction, an acknowledged record may be
**     missing only if a newer record of its partition key is present;
**   - per writer thread (so per partition key), records appear in put
**     order in each shard; at most the put in flight (one record or one
**     batch) beyond the acknowledged ones; nothing never written;
**   - sequence numbers strictly increase in each shard, are unique in the
**     stream, and every number of a round is above every number issued in
**     earlier rounds (a reopened writer continues from the reserved
**     ceiling: never reused);
**   - every record present at the previous check is still there, with the
**     same number (or, with compaction, superseded by a newer one of its
**     key): records of earlier rounds never disappear;
**   - the durable checkpoint of each shard is the last acknowledged one or
**     the one in flight, names a record that exists (or, with compaction,
**     existed and was superseded), is <= the shard's last record, and the
**     consumer resumes right after it.
**
** SL_CRASH_ITERS: rounds (kills) per case, default DEFAULT_ITERS (fewer
** under sanitizers); SL_CRASH_SEED reproduces a run's choices (timing
** still varies); SL_CRASH_ONLY=pattern runs the matching cases only (a
** cmocka filter, e.g. '4thr_always_*').  A fresh stream every FRESH_EVERY rounds keeps long runs
** linear.
*/
#include "testutil.h"

#include <poll.h>
#include <pthread.h>
#include <time.h>

#define NAME "matrix"
#define SHARDS 4
#define MAX_THREADS 4
#define NKEYS 64                       /* partition keys per writer thread */
#define BATCH_MAX 8
#define FRESH_EVERY 12                 /* rounds per stream */
#define REC_MAX 800
#define CONSUMER "matrix-reader"
#define KEY_ID "arn:aws:kms:eu-west-1:111122223333:key/crash-matrix"
#define HOUR_MS 3600000LL
#define STALL_MS 60000

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifdef SANITIZED
#define DEFAULT_ITERS 6
#else
#define DEFAULT_ITERS 14
#endif

/* ---- the matrix ------------------------------------------------------------ */

typedef struct mcase {
    int threads;
    sl_durability dur;
    bool enc, maint;
    char name[64];
} mcase;

static mcase cases[2 * 3 * 2 * 2];
static uint64_t seed;

static uint64_t rng_state = 88172645463325252ull;
static uint64_t xs(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}
static uint64_t rng(void) { return xs(&rng_state); }

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The stream clock: real time plus an offset (2 hours per round), so that
** cold storage finds earlier rounds' segments old enough. */
static int64_t skew_now(void *ctx)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + *(const int64_t *)ctx;
}

/* ---- records ------------------------------------------------------------------ */

static size_t rec_len(uint32_t round, uint32_t thread, uint32_t i)
{
    return 28 + (i * 7919u + thread * 31u + round * 17u) % 700;
}

static int fmt_rec(char *buf, uint32_t round, uint32_t thread, uint32_t i)
{
    int h = snprintf(buf, 40, "r%05ut%02ui%08u|", round, thread, i);
    size_t n = rec_len(round, thread, i);
    memset(buf + h, 'a' + (int)((round + thread + i) % 26), n - (size_t)h);
    return (int)n;
}

static void fmt_key(char *buf, size_t n, uint32_t thread, uint32_t i)
{
    snprintf(buf, n, "t%u-key-%u", thread, i % NKEYS);
}

/* Parse and check a record read back: 0, or -1 with a reason in why. */
static int check_rec(const char *key, size_t klen, const void *data, size_t dlen,
                     unsigned *rd, unsigned *t, unsigned *i, char *why, size_t wn)
{
    char head[40];
    size_t hn = dlen < sizeof head - 1 ? dlen : sizeof head - 1;
    memcpy(head, data, hn);
    head[hn] = '\0';
    if (sscanf(head, "r%5ut%2ui%8u|", rd, t, i) != 3 || *t >= MAX_THREADS) {
        snprintf(why, wn, "not a record of this test: '%.30s'", head);
        return -1;
    }
    char want[REC_MAX], wk[32];
    int n = fmt_rec(want, *rd, *t, *i);
    if (dlen != (size_t)n || memcmp(data, want, (size_t)n) != 0) {
        snprintf(why, wn, "record r%u t%u i%u: data differs (%zu bytes, %d expected)", *rd,
                 *t, *i, dlen, n);
        return -1;
    }
    fmt_key(wk, sizeof wk, *t, *i);
    if (klen != strlen(wk) || memcmp(key, wk, klen) != 0) {
        snprintf(why, wn, "record r%u t%u i%u: partition key '%.*s', expected '%s'", *rd, *t,
                 *i, (int)klen, key, wk);
        return -1;
    }
    return 0;
}

/* ---- the child ----------------------------------------------------------------- */

enum { M_PUT = 1, M_CK_INTENT = 2, M_CK_DONE = 3 };

typedef struct msg {
    uint32_t kind;
    uint32_t round, thread, i;         /* the record (put, or checkpointed) */
    uint32_t shard, pad;
    uint64_t seq;
} msg;

static _Noreturn void die(int code, const char *what, const char *detail)
{
    fprintf(stderr, "crashmatrix child: %s: %s\n", what, detail ? detail : "");
    _exit(code);
}

static void send_msg(int fd, const msg *m)
{
    if (write(fd, m, sizeof *m) != (ssize_t)sizeof *m) _exit(90);
}

static void child_report(void *ctx, int code, const char *message)
{
    (void)ctx;
    fprintf(stderr, "crashmatrix child: report %s: %s\n", sl_strerror(code), message);
    _exit(20);
}

typedef struct cthread {
    sl_stream *s;
    int fd;
    uint32_t round, thread;
    uint64_t seed;
} cthread;

static void *child_writer(void *arg)
{
    cthread *c = arg;
    sl_producer *p;
    if (sl_producer_open(&p, c->s)) die(11, "sl_producer_open", sl_errmsg(c->s));
    uint64_t r = c->seed | 1;
    static _Thread_local char buf[BATCH_MAX][REC_MAX], keys[BATCH_MAX][32];
    sl_put_entry e[BATCH_MAX];
    sl_put_result res[BATCH_MAX];
    for (uint32_t i = 0;;) {
        uint32_t n = xs(&r) % 4 == 0 ? 2 + (uint32_t)(xs(&r) % (BATCH_MAX - 1)) : 1;
        for (uint32_t k = 0; k < n; k++) {
            fmt_key(keys[k], sizeof keys[k], c->thread, i + k);
            int len = fmt_rec(buf[k], c->round, c->thread, i + k);
            e[k] = (sl_put_entry){keys[k], buf[k], (size_t)len, NULL};
        }
        if (n == 1) {
            int rc = sl_producer_put(p, &e[0], &res[0]);
            if (rc) die(12, "sl_producer_put", sl_errmsg(p));
        } else {
            size_t failed = 0;
            int rc = sl_producer_put_batch(p, e, n, res, &failed);
            if (rc || failed) die(13, "sl_producer_put_batch", rc ? sl_errmsg(p) : res[0].error_message);
        }
        for (uint32_t k = 0; k < n; k++) {
            msg m = {M_PUT, c->round, c->thread, i + k, res[k].shard_index, 0, res[k].sequence};
            send_msg(c->fd, &m);
        }
        i += n;
        /* a paced writer: a round lives long enough for maintenance and
        ** the consumer to be caught mid-work, with a bounded record count */
        struct timespec ts = {0, 40000 + (long)(xs(&r) % 80000)};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* The consumer: reads every shard after its checkpoint, checks each record,
** and checkpoints the last one read, telling the parent before and after. */
static void *child_consumer(void *arg)
{
    cthread *c = arg;
    int rc = sl_consumer_register(c->s, CONSUMER, SL_CONSUMER_SHARED);
    if (rc && rc != SL_EINUSE) die(30, "sl_consumer_register", sl_errmsg(c->s));
    sl_consumer *cons;
    if (sl_consumer_open(&cons, c->s, CONSUMER)) die(31, "sl_consumer_open", sl_errmsg(c->s));
    sl_iter *it[SHARDS] = {0};
    uint64_t last[SHARDS] = {0};
    static sl_record recs[256];
    for (;;) {
        bool any = false;
        for (uint32_t sh = 0; sh < SHARDS; sh++) {
            char id[SL_SHARD_ID_LEN + 1];
            snprintf(id, sizeof id, "shardId-%012u", sh);
            if (!it[sh]) {
                rc = sl_consumer_iter_open(&it[sh], cons, id, SL_ITER_TRIM_HORIZON, 0);
                if (rc) {
                    char d[600];
                    snprintf(d, sizeof d, "%s: %s", sl_strerror(rc), sl_errmsg(cons));
                    die(32, "sl_consumer_iter_open", d);
                }
            }
            sl_read_result res;
            rc = sl_iter_read(it[sh], recs, 256, &res);
            if (rc) {
                char d[600];
                snprintf(d, sizeof d, "%s: %s", sl_strerror(rc), sl_errmsg(it[sh]));
                die(33, "consumer sl_iter_read", d);
            }
            if (res.count == 0) continue;
            any = true;
            unsigned rd = 0, t = 0, i = 0;
            for (size_t k = 0; k < res.count; k++) {
                char why[200];
                if (recs[k].sequence <= last[sh]) die(34, "consumer", "sequence numbers go back");
                last[sh] = recs[k].sequence;
                if (check_rec(recs[k].partition_key, recs[k].key_len, recs[k].data,
                              recs[k].data_len, &rd, &t, &i, why, sizeof why))
                    die(35, "consumer read", why);
            }
            msg m = {M_CK_INTENT, rd, t, i, sh, 0, last[sh]};
            send_msg(c->fd, &m);
            if ((rc = sl_consumer_checkpoint(cons, id, last[sh])) != 0) {
                char d[600];
                snprintf(d, sizeof d, "%s: %s", sl_strerror(rc), sl_errmsg(cons));
                die(36, "sl_consumer_checkpoint", d);
            }
            m.kind = M_CK_DONE;
            send_msg(c->fd, &m);
        }
        if (!any) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

typedef struct child_args {
    const char *root, *keyfile;
    const mcase *mc;
    uint32_t round, ri;                /* global round; round in this stream */
    int64_t clock_offset;
} child_args;

static _Noreturn void child_main(const child_args *a, int fd)
{
    sl_key_provider *kp = NULL;
    if (a->mc->enc && sl_keyfile_provider_open(&kp, a->keyfile))
        die(2, "sl_keyfile_provider_open", a->keyfile);
    static int64_t offset;
    offset = a->clock_offset;
    sl_clock clk = {SL_CLOCK_VERSION, skew_now, &offset};
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.keys = kp;
    o.clock = &clk;
    o.report = child_report;
    sl_stream *s;
    if (sl_stream_open(&s, a->root, NAME, &o)) die(3, "sl_stream_open", sl_errmsg(NULL));
    uint64_t r = seed ^ ((uint64_t)a->round * 0x9E3779B97F4A7C15ull) ^ 0x5bd1e995u;
    if (!r) r = 1;
    /* manifest rewrites, which a kill may interrupt too */
    if (a->mc->enc && xs(&r) % 3 == 0 && sl_stream_rotate_key(s))
        die(4, "sl_stream_rotate_key", sl_errmsg(s));
    if (a->mc->maint) {
        if (sl_stream_set_compaction(s, SL_COMPACTION_KEY))
            die(5, "sl_stream_set_compaction", sl_errmsg(s));
        if (sl_stream_set_cold_after(s, a->ri % 2 == 1 ? 1 : 0))
            die(6, "sl_stream_set_cold_after", sl_errmsg(s));
        if (sl_stream_maintain_start(s, 5)) die(7, "sl_stream_maintain_start", sl_errmsg(s));
    }
    static cthread ct[MAX_THREADS + 1];
    pthread_t th;
    ct[MAX_THREADS] = (cthread){s, fd, a->round, 0, 0};
    if (pthread_create(&th, NULL, child_consumer, &ct[MAX_THREADS])) die(8, "pthread_create", "");
    for (int t = 0; t < a->mc->threads; t++) {
        ct[t] = (cthread){s, fd, a->round, (uint32_t)t, xs(&r)};
        if (t && pthread_create(&th, NULL, child_writer, &ct[t])) die(8, "pthread_create", "");
    }
    child_writer(&ct[0]);
    _exit(0);
}

/* ---- the parent's bookkeeping ---------------------------------------------------- */

typedef struct u64v {
    uint64_t *v;
    size_t n, cap;
} u64v;

static void u64v_set(u64v *a, size_t i, uint64_t x)
{
    if (i >= a->cap) {
        size_t nc = a->cap ? a->cap : 256;
        while (nc <= i) nc *= 2;
        a->v = realloc(a->v, nc * sizeof *a->v);
        assert_non_null(a->v);
        memset(a->v + a->cap, 0, (nc - a->cap) * sizeof *a->v);
        a->cap = nc;
    }
    a->v[i] = x;
    if (i >= a->n) a->n = i + 1;
}

static uint64_t u64v_get(const u64v *a, size_t i) { return i < a->n ? a->v[i] : 0; }

typedef struct ckpt {
    bool valid;
    uint32_t round, thread, i;
    uint64_t seq;
} ckpt;

/* One record seen at a check, to be found again at the next. */
typedef struct seen {
    uint64_t seq;
    uint32_t round, thread, i;
} seen;

typedef struct mstate {
    const mcase *mc;
    const char *root;
    char *keyfile;
    sl_key_provider *kp;
    uint32_t base;                     /* global round of this stream's first */
    /* per round in this stream and thread */
    u64v acked[FRESH_EVERY][MAX_THREADS];       /* sequence number by index */
    uint32_t nacked[FRESH_EVERY][MAX_THREADS];
    uint64_t floor[FRESH_EVERY];       /* every number issued before the round */
    uint64_t maxseq;                   /* every number known so far */
    /* the consumer */
    bool registered;                   /* a checkpoint was acknowledged */
    ckpt done[SHARDS], pending[SHARDS];
    /* the previous check */
    seen *prev;
    size_t nprev;
    /* totals for the report */
    uint64_t kills, acks, ckpts, superseded, ro_rounds, cold_files, early_kills;
} mstate;

static void mstate_reset_stream(mstate *m, uint32_t base)
{
    for (int r = 0; r < FRESH_EVERY; r++)
        for (int t = 0; t < MAX_THREADS; t++) free(m->acked[r][t].v);
    memset(m->acked, 0, sizeof m->acked);
    memset(m->nacked, 0, sizeof m->nacked);
    memset(m->floor, 0, sizeof m->floor);
    m->maxseq = 0;
    m->registered = false;
    memset(m->done, 0, sizeof m->done);
    memset(m->pending, 0, sizeof m->pending);
    free(m->prev);
    m->prev = NULL;
    m->nprev = 0;
    m->base = base;
}

static void create_stream(mstate *m)
{
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = NAME;
    c.shard_count = SHARDS;
    c.durability = m->mc->dur;
    c.sync_interval_ms = 20;
    c.segment_bytes = SL_SEGMENT_BYTES_MIN;
    c.retention_hours = SL_RETENTION_HOURS_MAX;   /* the clock runs ahead */
    if (m->mc->enc) {
        c.encryption_type = SL_ENCRYPTION_KMS;
        c.kms_key_id = KEY_ID;
    }
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.keys = m->kp;
    int rc = sl_stream_create(NULL, m->root, &c, &o);
    if (rc) fail_msg("creating the stream: %s", sl_errmsg(NULL));
}

/* ---- the check after a kill ------------------------------------------------------ */

typedef struct present {
    u64v seq[FRESH_EVERY][MAX_THREADS];         /* by index; 0 absent */
    uint64_t newest[MAX_THREADS][NKEYS];        /* newest present number of a key */
    uint64_t last[SHARDS];                      /* the shard's last record */
} present;

static bool is_present(const present *p, uint32_t ri, uint32_t t, uint32_t i, uint64_t seq)
{
    return u64v_get(&p->seq[ri][t], i) == seq;
}

/* A record with this number is gone because a newer one of its key is
** there (compaction). */
static bool superseded(const mstate *m, const present *p, uint32_t t, uint32_t i, uint64_t seq)
{
    return m->mc->maint && p->newest[t][i % NKEYS] > seq;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int count_cold(const char *root)
{
    int n = 0;
    for (uint32_t sh = 0; sh < SHARDS; sh++) {
        char *dir = tu_path("%s/%s/shardId-%012u", root, NAME, sh);
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            size_t l = strlen(e->d_name);
            if (l < 4 || strcmp(e->d_name + l - 4, ".seg")) continue;
            char *p = tu_path("%s/%s", dir, e->d_name);
            int fd = open(p, O_RDONLY);
            uint32_t flags = 0;
            if (fd >= 0 && pread(fd, &flags, 4, 12) == 4 && (flags & 1)) n++;
            if (fd >= 0) close(fd);
            free(p);
        }
        if (d) closedir(d);
        free(dir);
    }
    return n;
}

/* Reopen and check every promise; ri is the round just killed. */
static void check_stream(mstate *m, uint32_t ri, bool readonly, int64_t offset)
{
    const mcase *mc = m->mc;
    const uint32_t nthreads = (uint32_t)mc->threads;
    tu_reports rep = {0};
    int64_t off = offset;
    sl_clock clk = {SL_CLOCK_VERSION, skew_now, &off};
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.keys = m->kp;
    o.clock = &clk;
    o.report = tu_report_fn;
    o.report_ctx = &rep;
    o.flags = readonly ? SL_OPEN_READONLY : 0;
    sl_stream *s;
    int rc = sl_stream_open(&s, m->root, NAME, &o);
    if (rc) fail_msg("%s open after round %u: %s", readonly ? "read-only" : "writer",
                     m->base + ri, sl_errmsg(NULL));
    if (rep.count) fail_msg("recovery reported damage after round %u:\n%s", m->base + ri, rep.all);

    present *p = calloc(1, sizeof *p);
    assert_non_null(p);
    size_t total = 0, cap = 4096;
    seen *all = malloc(cap * sizeof *all);
    uint64_t *seqs = malloc(cap * sizeof *seqs);
    assert_non_null(all);
    assert_non_null(seqs);
    for (uint32_t sh = 0; sh < SHARDS; sh++) {
        char id[SL_SHARD_ID_LEN + 1];
        snprintf(id, sizeof id, "shardId-%012u", sh);
        tu_recs r = {0};
        tu_read_shard(s, id, &r);
        if (r.corrupt) fail_msg("round %u: %d corrupt reads in %s", m->base + ri, r.corrupt, id);
        /* per thread, in put order: (round, index) rises */
        uint64_t order[MAX_THREADS] = {0};
        bool any[MAX_THREADS] = {0};
        for (size_t k = 0; k < r.n; k++) {
            const tu_rec *x = &r.v[k];
            if (k && x->seq <= r.v[k - 1].seq)
                fail_msg("%s: sequence %" PRIu64 " after %" PRIu64, id, x->seq, r.v[k - 1].seq);
            unsigned rd, t, i;
            char why[200];
            if (check_rec(x->key, strlen(x->key), x->data, x->dlen, &rd, &t, &i, why, sizeof why))
                fail_msg("%s sequence %" PRIu64 ": %s", id, x->seq, why);
            if (rd < m->base || rd > m->base + ri || t >= nthreads)
                fail_msg("%s: record r%u t%u i%u was never written to this stream", id, rd, t, i);
            uint32_t xri = rd - m->base;
            if (x->seq <= m->floor[xri])
                fail_msg("%s: record r%u t%u i%u has sequence %" PRIu64 ", but %" PRIu64
                         " was issued before its round began (reused numbers)",
                         id, rd, t, i, x->seq, m->floor[xri]);
            uint64_t ord = (uint64_t)rd << 32 | i;
            if (any[t] && ord <= order[t])
                fail_msg("%s: thread %u's record r%u i%u after r%u i%u (put order broken)", id,
                         t, rd, i, (unsigned)(order[t] >> 32), (unsigned)order[t]);
            any[t] = true;
            order[t] = ord;
            if (i >= m->nacked[xri][t] + BATCH_MAX)
                fail_msg("%s: record r%u t%u i%u present, but only %u acknowledged and one put "
                         "of at most %d records in flight",
                         id, rd, t, i, m->nacked[xri][t], BATCH_MAX);
            if (u64v_get(&p->seq[xri][t], i))
                fail_msg("record r%u t%u i%u present twice", rd, t, i);
            u64v_set(&p->seq[xri][t], i, x->seq);
            if (x->seq > p->newest[t][i % NKEYS]) p->newest[t][i % NKEYS] = x->seq;
            p->last[sh] = x->seq;
            if (total == cap) {
                cap *= 2;
                all = realloc(all, cap * sizeof *all);
                seqs = realloc(seqs, cap * sizeof *seqs);
                assert_non_null(all);
                assert_non_null(seqs);
            }
            all[total] = (seen){x->seq, rd, t, i};
            seqs[total++] = x->seq;
        }
        tu_recs_free(&r);
    }
    /* numbers are unique across shards */
    qsort(seqs, total, sizeof *seqs, cmp_u64);
    for (size_t k = 1; k < total; k++)
        if (seqs[k] == seqs[k - 1]) fail_msg("sequence %" PRIu64 " used twice", seqs[k]);
    if (total && seqs[total - 1] > m->maxseq) m->maxseq = seqs[total - 1];
    free(seqs);

    /* every acknowledged record, with its number (or superseded) */
    for (uint32_t r = 0; r <= ri; r++)
        for (uint32_t t = 0; t < nthreads; t++)
            for (uint32_t i = 0; i < m->nacked[r][t]; i++) {
                uint64_t want = u64v_get(&m->acked[r][t], i);
                uint64_t got = u64v_get(&p->seq[r][t], i);
                if (got == want) continue;
                if (got == 0 && superseded(m, p, t, i, want)) {
                    m->superseded++;
                    continue;
                }
                fail_msg("round %u (killed after round %u), thread %u: acknowledged record %u "
                         "(sequence %" PRIu64 ") %s%s",
                         m->base + r, m->base + ri, t, i, want, got ? "has sequence " : "is lost",
                         got ? "another number" : (m->mc->maint ? " (and no newer record of "
                                                                  "its key is there)" : ""));
            }
    /* what the previous check saw is still there */
    for (size_t k = 0; k < m->nprev; k++) {
        const seen *x = &m->prev[k];
        uint32_t xri = x->round - m->base;
        if (is_present(p, xri, x->thread, x->i, x->seq)) continue;
        if (!u64v_get(&p->seq[xri][x->thread], x->i) &&
            superseded(m, p, x->thread, x->i, x->seq))
            continue;
        fail_msg("record r%u t%u i%u (sequence %" PRIu64 "), present after an earlier kill, "
                 "is gone after round %u",
                 x->round, x->thread, x->i, x->seq, m->base + ri);
    }
    free(m->prev);
    m->prev = all;
    m->nprev = total;

    /* the consumer's checkpoints */
    sl_consumer *c = NULL;
    rc = sl_consumer_open(&c, s, CONSUMER);
    if (rc == SL_ENOTFOUND) {
        if (m->registered) fail_msg("the consumer vanished after round %u", m->base + ri);
    } else {
        if (rc) fail_msg("sl_consumer_open: %s", sl_errmsg(s));
        for (uint32_t sh = 0; sh < SHARDS; sh++) {
            char id[SL_SHARD_ID_LEN + 1];
            snprintf(id, sizeof id, "shardId-%012u", sh);
            uint64_t v = 0;
            rc = sl_consumer_get_checkpoint(c, id, &v);
            const ckpt *d = &m->done[sh], *pe = &m->pending[sh];
            if (rc == SL_ENOTFOUND) {
                if (d->valid)
                    fail_msg("%s: acknowledged checkpoint %" PRIu64 " is lost", id, d->seq);
            } else {
                if (rc) fail_msg("%s: sl_consumer_get_checkpoint: %s", id, sl_errmsg(c));
                const ckpt *w = d->valid && v == d->seq ? d : pe->valid && v == pe->seq ? pe : NULL;
                if (!w)
                    fail_msg("%s: checkpoint %" PRIu64 " is neither the last acknowledged (%" PRIu64
                             ") nor the one in flight (%" PRIu64 ")",
                             id, v, d->valid ? d->seq : 0, pe->valid ? pe->seq : 0);
                if (v > p->last[sh])
                    fail_msg("%s: checkpoint %" PRIu64 " is ahead of the data (last record %" PRIu64
                             ")",
                             id, v, p->last[sh]);
                uint32_t wri = w->round - m->base;
                if (!is_present(p, wri, w->thread, w->i, v) &&
                    !(u64v_get(&p->seq[wri][w->thread], w->i) == 0 &&
                      superseded(m, p, w->thread, w->i, v)))
                    fail_msg("%s: checkpoint %" PRIu64 " names record r%u t%u i%u, which is not "
                             "there",
                             id, v, w->round, w->thread, w->i);
                m->done[sh] = *w;
                m->registered = true;
            }
            m->pending[sh].valid = false;
            /* resuming: right after the checkpoint */
            sl_iter *it;
            rc = sl_consumer_iter_open(&it, c, id, SL_ITER_TRIM_HORIZON, 0);
            if (rc)
                fail_msg("%s: sl_consumer_iter_open after checkpoint %" PRIu64 ": %s: %s", id,
                         m->done[sh].valid ? m->done[sh].seq : 0, sl_strerror(rc), sl_errmsg(c));
            sl_record one;
            sl_read_result res;
            rc = sl_iter_read(it, &one, 1, &res);
            if (rc) fail_msg("%s: consumer read: %s", id, sl_errmsg(it));
            uint64_t ck = m->done[sh].valid ? m->done[sh].seq : 0;
            if (res.count && one.sequence <= ck)
                fail_msg("%s: the consumer resumes at %" PRIu64 ", not after %" PRIu64, id,
                         one.sequence, ck);
            if (!res.count && p->last[sh] > ck)
                fail_msg("%s: the consumer resumes past the end", id);
            sl_iter_close(it);
        }
        assert_int_equal(sl_consumer_close(c), 0);
    }

    /* the files themselves */
    sl_verify_stats vs;
    rc = sl_stream_verify(s, NULL, NULL, &vs);
    if (rc || vs.damaged) fail_msg("sl_stream_verify after round %u: %s (%" PRIu64 " damaged)",
                                   m->base + ri, sl_strerror(rc), vs.damaged);
    if (rep.count) fail_msg("damage reported after round %u:\n%s", m->base + ri, rep.all);
    assert_int_equal(sl_stream_close(s), 0);
    for (int r = 0; r < FRESH_EVERY; r++)
        for (int t = 0; t < MAX_THREADS; t++) free(p->seq[r][t].v);
    free(p);
}

/* ---- one case --------------------------------------------------------------------- */

static size_t handle_msgs(mstate *m, uint32_t ri, const msg *v, size_t n)
{
    size_t puts = 0;
    for (size_t k = 0; k < n; k++) {
        const msg *x = &v[k];
        switch (x->kind) {
        case M_PUT:
            if (x->round != m->base + ri || x->thread >= (uint32_t)m->mc->threads)
                fail_msg("bad acknowledgement");
            if (x->i != m->nacked[ri][x->thread]) fail_msg("acknowledgements out of order");
            if (x->shard >= SHARDS) fail_msg("bad shard");
            u64v_set(&m->acked[ri][x->thread], x->i, x->seq);
            m->nacked[ri][x->thread]++;
            if (x->seq <= m->floor[ri])
                fail_msg("put acknowledged with sequence %" PRIu64 ", at or below %" PRIu64
                         " issued before",
                         x->seq, m->floor[ri]);
            if (x->seq > m->maxseq) m->maxseq = x->seq;
            puts++;
            break;
        case M_CK_INTENT:
            if (x->shard >= SHARDS) fail_msg("bad shard");
            m->pending[x->shard] = (ckpt){true, x->round, x->thread, x->i, x->seq};
            break;
        case M_CK_DONE:
            if (x->shard >= SHARDS) fail_msg("bad shard");
            m->done[x->shard] = (ckpt){true, x->round, x->thread, x->i, x->seq};
            m->pending[x->shard].valid = false;
            m->registered = true;
            m->ckpts++;
            break;
        default:
            fail_msg("bad message kind %u", x->kind);
        }
    }
    return puts;
}

static void run_case(const char *root, const mcase *mc)
{
    const char *env = getenv("SL_CRASH_ITERS");
    int iters = env ? atoi(env) : DEFAULT_ITERS;
    if (iters < 1) iters = 1;
    mstate *m = calloc(1, sizeof *m);
    assert_non_null(m);
    m->mc = mc;
    m->root = root;
    if (mc->enc) {
        m->keyfile = tu_path("%s/master.key", root);
        assert_int_equal(sl_keyfile_create(m->keyfile), 0);
        assert_int_equal(sl_keyfile_provider_open(&m->kp, m->keyfile), 0);
    }
    uint64_t max_target = mc->dur == SL_DURABILITY_ALWAYS ? 300 : 3000;
    int64_t t_start = now_ms();
    uint64_t case_seed = rng();
    for (uint32_t round = 0; round < (uint32_t)iters; round++) {
        uint32_t ri = round % FRESH_EVERY;
        if (ri == 0) {
            if (round) assert_int_equal(sl_stream_delete(root, NAME), 0);
            mstate_reset_stream(m, round);
            create_stream(m);
        }
        m->floor[ri] = m->maxseq;
        child_args a = {root, m->keyfile, mc, round, ri, (int64_t)(ri + 1) * 2 * HOUR_MS};
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        fflush(stderr);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            seed ^= case_seed;
            child_main(&a, pfd[1]);
        }
        close(pfd[1]);
        /* when to kill: soon (maybe during open and recovery), after a
        ** delay, or after some acknowledgements (and maybe a little more) */
        uint64_t style = rng() % 20, target = UINT64_MAX;
        int64_t t0 = now_ms(), deadline = INT64_MAX, extra = 0;
        if (style < 3) deadline = t0 + (int64_t)(rng() % 40);
        else if (style < 13) deadline = t0 + 40 + (int64_t)(rng() % 260);
        else target = 1 + rng() % max_target;
        if (style >= 17) extra = 1 + (int64_t)(rng() % 10);
        size_t puts = 0, have = 0;
        bool killed = false;
        int64_t last_msg = t0;
        static msg buf[4096];
        for (;;) {
            int64_t now = now_ms();
            if (!killed && (puts >= target || now >= deadline)) {
                if (puts >= target && extra) {
                    deadline = now + extra;
                    target = UINT64_MAX;
                    extra = 0;
                } else {
                    kill(pid, SIGKILL);
                    killed = true;
                    if (puts == 0) m->early_kills++;
                }
            }
            if (!killed && now - last_msg > STALL_MS) {
                kill(pid, SIGKILL);
                fail_msg("round %u: the child made no progress for %d s", round, STALL_MS / 1000);
            }
            int timeout = killed ? 1000 : deadline != INT64_MAX ? (int)(deadline - now) : 1000;
            if (timeout < 0) timeout = 0;
            if (timeout > 1000) timeout = 1000;
            struct pollfd pf = {pfd[0], POLLIN, 0};
            int pr = poll(&pf, 1, timeout);
            if (pr < 0 && errno == EINTR) continue;
            assert_true(pr >= 0);
            if (pr == 0) continue;
            ssize_t r = read(pfd[0], (char *)buf + have, sizeof buf - have);
            if (r < 0 && errno == EINTR) continue;
            assert_true(r >= 0);
            if (r == 0) break;                       /* the child is gone */
            have += (size_t)r;
            size_t whole = have / sizeof *buf;
            puts += handle_msgs(m, ri, buf, whole);
            have -= whole * sizeof *buf;
            memmove(buf, (char *)buf + whole * sizeof *buf, have);
            last_msg = now_ms();
        }
        close(pfd[0]);
        if (have) fail_msg("a torn message in the pipe");
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
            fail_msg("case %s round %u: the child ended by itself (%s %d): it failed", mc->name,
                     round, WIFEXITED(st) ? "exit" : "signal",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        m->kills++;
        m->acks += puts;
        /* a third of the rounds check read-only, so that the next child
        ** recovers the crashed stream itself (and may be killed doing it) */
        bool ro = rng() % 3 == 0;
        m->ro_rounds += ro;
        check_stream(m, ri, ro, a.clock_offset);
        if (mc->maint) {
            int n = count_cold(root);
            if ((uint64_t)n > m->cold_files) m->cold_files = (uint64_t)n;
        }
    }
    fprintf(stderr, "crashmatrix: %-28s %3" PRIu64 " kills (%" PRIu64 " before any ack, %" PRIu64
                    " checked read-only), %7" PRIu64 " acks, %5" PRIu64 " checkpoints, %6" PRIu64
                    " acked records compacted, max %" PRIu64 " cold files, %.1f s\n",
            mc->name, m->kills, m->early_kills, m->ro_rounds, m->acks, m->ckpts, m->superseded,
            m->cold_files, (double)(now_ms() - t_start) / 1000.0);
    mstate_reset_stream(m, 0);
    if (m->kp) sl_keyfile_provider_close(m->kp);
    free(m->keyfile);
    free(m);
}

/* ---- cmocka ------------------------------------------------------------------------ */

typedef struct fixture {
    char *root;
    const mcase *mc;
} fixture;

static int case_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->mc = *state;
    f->root = tu_tmpdir();
    if (!f->root) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int case_teardown(void **state)
{
    fixture *f = *state;
    sl__os_reset();
    if (f) {
        tu_rmrf(f->root);
        free(f->root);
        free(f);
    }
    return 0;
}

static void matrix_case(void **state)
{
    fixture *f = *state;
    run_case(f->root, f->mc);
}

int main(void)
{
    const char *env = getenv("SL_CRASH_SEED");
    seed = env ? strtoull(env, NULL, 0) : (uint64_t)getpid() * 2654435761u ^ (uint64_t)time(NULL);
    rng_state ^= seed;
    if (!rng_state) rng_state = 1;
    const char *it = getenv("SL_CRASH_ITERS");
    fprintf(stderr, "crashmatrix: SL_CRASH_SEED=%" PRIu64 " reproduces this run; %d rounds per "
                    "case (SL_CRASH_ITERS%s)\n",
            seed, it ? atoi(it) : DEFAULT_ITERS, it ? "" : " unset: the default");
    static struct CMUnitTest tests[sizeof cases / sizeof *cases];
    static const sl_durability durs[3] = {SL_DURABILITY_NONE, SL_DURABILITY_INTERVAL,
                                          SL_DURABILITY_ALWAYS};
    static const char *dn[3] = {"none", "interval", "always"};
    size_t n = 0;
    for (int th = 1; th <= 4; th += 3)
        for (int d = 0; d < 3; d++)
            for (int enc = 0; enc < 2; enc++)
                for (int mt = 0; mt < 2; mt++) {
                    mcase *c = &cases[n];
                    c->threads = th;
                    c->dur = durs[d];
                    c->enc = enc;
                    c->maint = mt;
                    snprintf(c->name, sizeof c->name, "%dthr_%s_%s_%s", th, dn[d],
                             enc ? "kms" : "clear", mt ? "maint" : "nomaint");
                    tests[n] = (struct CMUnitTest){c->name, matrix_case, case_setup,
                                                   case_teardown, c};
                    n++;
                }
    /* SL_CRASH_ONLY=1thr_always_kms_*: the cases whose names match */
    if (getenv("SL_CRASH_ONLY")) cmocka_set_test_filter(getenv("SL_CRASH_ONLY"));
    return cmocka_run_group_tests_name("crashmatrix", tests, NULL, NULL);
}
