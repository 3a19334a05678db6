/*
** sys_shardlog.c -- shardlog's side of every workload, through the public
** API only (include/shardlog.h).
*/
#include "systems.h"

#include <shardlog.h>

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define STREAM "s"

static void sl_die(int rc, const void *h, const char *what)
{
    die("shardlog: %s: %s: %s", what, sl_strerror(rc), sl_errmsg(h));
}
#define SLCHECK(call, h, what)                                                 \
    do {                                                                       \
        int rc_ = (call);                                                      \
        if (rc_ < 0) sl_die(rc_, (h), (what));                                 \
    } while (0)

/* keys: NULL for a stream in clear (encryption NONE, no open options, as
** every workload but section 7's), else encryption KMS under ENC_KEY_ID
** with this provider; the stream's description must then say KMS. */
static sl_stream *create_keyed(const char *root, sl_durability d, const sl_key_provider *keys)
{
    sl_stream_config cfg = SL_STREAM_CONFIG_INIT;
    cfg.name = STREAM;
    cfg.shard_count = SHARDS;
    cfg.durability = d;
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    if (keys) {
        cfg.encryption_type = SL_ENCRYPTION_KMS;
        cfg.kms_key_id = ENC_KEY_ID;
        o.keys = keys;
    }
    sl_stream *s;
    SLCHECK(sl_stream_create(&s, root, &cfg, keys ? &o : NULL), NULL, "sl_stream_create");
    if (keys) {
        sl_stream_desc *desc;
        SLCHECK(sl_stream_describe(&desc, s), s, "sl_stream_describe");
        bool kms = desc->encryption_type == SL_ENCRYPTION_KMS &&
                   !strcmp(desc->kms_key_id, ENC_KEY_ID);
        sl_stream_desc_free(desc);
        if (!kms) die("shardlog: the stream created with encryption KMS does not describe so");
    }
    return s;
}

static sl_stream *create(const char *root, sl_durability d)
{
    return create_keyed(root, d, NULL);
}

static void close_stream(sl_stream *s)
{
    int rc = sl_stream_close(s);
    if (rc < 0) sl_die(rc, rc == SL_EINUSE ? (const void *)s : NULL, "sl_stream_close");
}

/* Committed records per shard, from ListShards. */
static void shard_records(sl_stream *s, uint64_t out[SHARDS])
{
    sl_shard_list *l;
    SLCHECK(sl_stream_list_shards(&l, s), s, "sl_stream_list_shards");
    if (l->count != SHARDS) die("shardlog: %zu shards, expected %d", l->count, SHARDS);
    for (size_t i = 0; i < l->count; i++) out[i] = l->shards[i].records;
    sl_shard_list_free(l);
}

/* ---- append + scan ------------------------------------------------------ */

typedef struct ap_ctx {
    const ap_job *job;
    sl_producer *p[2];
    sl_put_entry *entries[2];
    sl_put_result *results[2];
} ap_ctx;

static void ap_worker(void *arg, int t)
{
    ap_ctx *c = arg;
    const ap_job *job = c->job;
    size_t n = job->n / (size_t)job->threads, base = (size_t)t * n, size = job->size;
    char (*keys)[KEY_LEN + 1] = job->ks->keys[t];
    sl_producer *p = c->p[t];
    if (!job->batch) {
        for (size_t i = 0; i < n; i++) {
            int rc = sl_put(p, keys[i], rec_data(base + i), size, NULL);
            if (rc < 0) sl_die(rc, p, "sl_put");
        }
        return;
    }
    sl_put_entry *e = c->entries[t];
    sl_put_result *res = c->results[t];
    size_t per = (size_t)job->batch;
    for (size_t i = 0; i < n;) {
        size_t k = n - i < per ? n - i : per, failed = 0;
        for (size_t j = 0; j < k; j++) {
            e[j].partition_key = keys[i + j];
            e[j].data = rec_data(base + i + j);
            e[j].data_len = size;
            e[j].explicit_hash_key = NULL;
        }
        int rc = sl_producer_put_batch(p, e, k, res, &failed);
        if (rc < 0) sl_die(rc, p, "sl_producer_put_batch");
        if (failed)
            for (size_t j = 0; j < k; j++)
                if (res[j].error) sl_die(res[j].error, NULL, res[j].error_message);
        i += k;
    }
}

static void scan(sl_stream *s, ap_result *out)
{
    static sl_record *recs;
    if (!recs && !(recs = malloc(SL_GET_RECORDS_MAX * sizeof *recs))) die("out of memory");
    sl_shard_list *l;
    SLCHECK(sl_stream_list_shards(&l, s), s, "sl_stream_list_shards");
    uint64_t sum = 0, count = 0;
    double t0 = now_s();
    for (size_t i = 0; i < l->count; i++) {
        sl_iter *it;
        sl_read_result res;
        SLCHECK(sl_iter_open(&it, s, l->shards[i].shard_id, SL_ITER_TRIM_HORIZON, 0), s,
                "sl_iter_open");
        do {
            SLCHECK(sl_iter_read(it, recs, SL_GET_RECORDS_MAX, &res), it, "sl_iter_read");
            for (size_t j = 0; j < res.count; j++) sum += sum_bytes(recs[j].data, recs[j].data_len);
            count += res.count;
        } while (res.count > 0);
        sl_iter_close(it);
    }
    out->scan_s = now_s() - t0;
    sl_shard_list_free(l);
    out->scan_records = count;
    out->scan_sum = sum;
}

void slb_append(const ap_job *job, ap_result *out)
{
    slb_append_keyed(job, NULL, out);
}

void slb_append_keyed(const ap_job *job, const sl_key_provider *keys, ap_result *out)
{
    memset(out, 0, sizeof *out);
    sl_stream *s = create_keyed(job->dir, SL_DURABILITY_NONE, keys);
    ap_ctx c = {.job = job};
    for (int t = 0; t < job->threads; t++) {
        SLCHECK(sl_producer_open(&c.p[t], s), s, "sl_producer_open");
        if (job->batch) {
            c.entries[t] = calloc((size_t)job->batch, sizeof *c.entries[t]);
            c.results[t] = calloc((size_t)job->batch, sizeof *c.results[t]);
            if (!c.entries[t] || !c.results[t]) die("out of memory");
        }
    }
    out->append_s = run_timed(job->threads, ap_worker, &c);
    for (int t = 0; t < job->threads; t++) {
        sl_producer_close(c.p[t]);
        free(c.entries[t]);
        free(c.results[t]);
    }
    if (job->threads == 2) {          /* did each thread keep to its shards? */
        uint64_t r[SHARDS];
        shard_records(s, r);
        if (r[0] + r[1] != job->n / 2 || r[2] + r[3] != job->n / 2)
            die("shardlog: two-thread routing: shards hold %" PRIu64 " %" PRIu64 " %" PRIu64
                " %" PRIu64, r[0], r[1], r[2], r[3]);
    }
    if (job->scan) scan(s, out);
    close_stream(s);
}

/* ---- durable ------------------------------------------------------------ */

typedef struct dur_ctx {
    sl_stream *s;
    const keyset *ks;
    sl_producer **p;
    uint64_t *count;
    double seconds;
} dur_ctx;

static void dur_worker(void *arg, int t)
{
    dur_ctx *c = arg;
    sl_producer *p = c->p[t];
    size_t nk = c->ks->cap, k = ((size_t)t * 7919u) % nk;
    uint64_t end = now_ns() + (uint64_t)(c->seconds * 1e9), n = 0;
    do {
        int rc = sl_put(p, c->ks->keys[0][k], rec_data(k), DURABLE_SIZE, NULL);
        if (rc < 0) sl_die(rc, p, "sl_put (ALWAYS)");
        n++;
        if (++k == nk) k = 0;
    } while (now_ns() < end);
    c->count[t] = n;
}

double slb_durable_always(const char *dir, const keyset *ks, int threads, double seconds)
{
    sl_stream *s = create(dir, SL_DURABILITY_ALWAYS);
    dur_ctx c = {s, ks, calloc((size_t)threads, sizeof(sl_producer *)),
                 calloc((size_t)threads, sizeof(uint64_t)), seconds};
    if (!c.p || !c.count) die("out of memory");
    for (int t = 0; t < threads; t++) SLCHECK(sl_producer_open(&c.p[t], s), s, "sl_producer_open");
    double el = run_timed(threads, dur_worker, &c);
    uint64_t total = 0;
    for (int t = 0; t < threads; t++) {
        total += c.count[t];
        sl_producer_close(c.p[t]);
    }
    uint64_t r[SHARDS], onshards = 0;
    shard_records(s, r);
    for (int i = 0; i < SHARDS; i++) onshards += r[i];
    if (onshards != total) die("shardlog: ALWAYS: %" PRIu64 " records put, %" PRIu64 " stored",
                               total, onshards);
    close_stream(s);
    free(c.p);
    free(c.count);
    return (double)total / el;
}

/* The peers' contract in ALWAYS mode: one thread, PutRecords of
** DURABLE_EVERY records, each batch returning once all of it is on stable
** storage (its shards synced together). */
double slb_durable_batch(const char *dir, const keyset *ks, double seconds)
{
    sl_stream *s = create(dir, SL_DURABILITY_ALWAYS);
    sl_producer *p;
    SLCHECK(sl_producer_open(&p, s), s, "sl_producer_open");
    sl_put_entry e[DURABLE_EVERY];
    sl_put_result res[DURABLE_EVERY];
    uint64_t n = 0;
    size_t i = 0;
    double t0 = now_s(), end = t0 + seconds, t;
    do {
        for (unsigned j = 0; j < DURABLE_EVERY; j++, i = (i + 1) % ks->cap)
            e[j] = (sl_put_entry){ks->keys[0][i], rec_data(i), DURABLE_SIZE, NULL};
        size_t failed;
        SLCHECK(sl_producer_put_batch(p, e, DURABLE_EVERY, res, &failed), p,
                "sl_producer_put_batch (ALWAYS)");
        if (failed) die("shardlog: ALWAYS batch: %zu entries failed: %s", failed,
                        res[0].error_message ? res[0].error_message : "");
        n += DURABLE_EVERY;
    } while ((t = now_s()) < end);
    sl_producer_close(p);
    close_stream(s);
    return (double)n / (t - t0);
}

double slb_durable_sync(const char *dir, const keyset *ks, double seconds)
{
    sl_stream *s = create(dir, SL_DURABILITY_NONE);
    sl_producer *p;
    SLCHECK(sl_producer_open(&p, s), s, "sl_producer_open");
    uint64_t n = 0;
    size_t i = 0;
    double t0 = now_s(), end = t0 + seconds, t;
    do {
        for (unsigned j = 0; j < DURABLE_EVERY; j++, i = (i + 1) % ks->cap, n++)
            SLCHECK(sl_put(p, ks->keys[0][i], rec_data(i), DURABLE_SIZE, NULL), p, "sl_put");
        SLCHECK(sl_stream_sync(s), s, "sl_stream_sync");
    } while ((t = now_s()) < end);
    sl_producer_close(p);
    close_stream(s);
    return (double)n / (t - t0);
}

/* ---- wake-up latency ---------------------------------------------------- */

/* The writer puts into shard 0; the reader, blocked in sl_iter_wait on
** shard 0, timestamps its wake-up, consumes the record and answers with a
** put into shard 1, on which the writer waits.  Explicit hash keys pick the
** shards (no MD5).  One record is in flight at a time. */
#define HK_SHARD0 "0"
#define HK_SHARD1 "85070591730234615865843651857942052864" /* 2^126 */
#define WARM_SAMPLES 200

typedef struct wk_ctx {
    sl_stream *s;
    sl_iter *fwd;                     /* shard 0, the reader's */
    int total;
    _Atomic uint64_t t0;
    double *lat;
} wk_ctx;

static void *wk_reader(void *arg)
{
    wk_ctx *c = arg;
    pin_to(1);
    sl_producer *p;
    SLCHECK(sl_producer_open(&p, c->s), c->s, "sl_producer_open (reader)");
    sl_put_entry back = {"r", "x", 1, HK_SHARD1};
    sl_record recs[4];
    sl_read_result res;
    for (int i = 0; i < c->total; i++) {
        int rc = sl_iter_wait(c->fwd, 10000);
        uint64_t t1 = now_ns();
        if (rc != 1) sl_die(rc < 0 ? rc : SL_EIO, c->fwd, "sl_iter_wait (reader)");
        c->lat[i] = (double)(t1 - atomic_load(&c->t0)) / 1e3;
        SLCHECK(sl_iter_read(c->fwd, recs, 4, &res), c->fwd, "sl_iter_read (reader)");
        if (res.count != 1) die("shardlog: wake-up: read %zu records, expected 1", res.count);
        SLCHECK(sl_producer_put(p, &back, NULL), p, "sl_producer_put (reader)");
    }
    sl_producer_close(p);
    return NULL;
}

static void lat_stats(double *lat, int total, double *med_us, double *p99_us)
{
    size_t n = (size_t)(total - WARM_SAMPLES);
    double *v = lat + WARM_SAMPLES;
    *med_us = percentile(v, n, 0.5);
    *p99_us = percentile(v, n, 0.99);
}

void slb_wakeup(const char *dir, int samples, uint64_t gap_ns, double *med_us, double *p99_us)
{
    wk_ctx c = {.total = samples + WARM_SAMPLES};
    c.lat = calloc((size_t)c.total, sizeof *c.lat);
    if (!c.lat) die("out of memory");
    c.s = create(dir, SL_DURABILITY_NONE);
    sl_producer *p;
    sl_iter *back;
    SLCHECK(sl_producer_open(&p, c.s), c.s, "sl_producer_open");
    SLCHECK(sl_iter_open(&c.fwd, c.s, "shardId-000000000000", SL_ITER_LATEST, 0), c.s,
            "sl_iter_open");
    SLCHECK(sl_iter_open(&back, c.s, "shardId-000000000001", SL_ITER_LATEST, 0), c.s,
            "sl_iter_open");
    pthread_t th;
    pin_to(0);
    if (pthread_create(&th, NULL, wk_reader, &c) != 0) die("pthread_create");
    sl_put_entry fwd = {"w", "x", 1, HK_SHARD0};
    sl_record recs[4];
    sl_read_result res;
    for (int i = 0; i < c.total; i++) {
        spin_ns(gap_ns);              /* let the reader fall asleep */
        atomic_store(&c.t0, now_ns());
        SLCHECK(sl_producer_put(p, &fwd, NULL), p, "sl_producer_put (writer)");
        int rc = sl_iter_wait(back, 10000);
        if (rc != 1) sl_die(rc < 0 ? rc : SL_EIO, back, "sl_iter_wait (writer)");
        SLCHECK(sl_iter_read(back, recs, 4, &res), back, "sl_iter_read (writer)");
    }
    pthread_join(th, NULL);
    pin_restore();
    sl_iter_close(back);
    sl_iter_close(c.fwd);
    sl_producer_close(p);
    close_stream(c.s);
    lat_stats(c.lat, c.total, med_us, p99_us);
    free(c.lat);
}

/* Through the scheduler: the handler runs on the scheduler's thread, which
** sleeps on the stream-wide wake-up word until the writer's commit. */
typedef struct wks_ctx {
    sl_producer *p;                   /* the handler's, answering on shard 1 */
    int seen, total;
    bool pinned;
    _Atomic uint64_t t0;
    double *lat;
} wks_ctx;

static int wks_handler(void *ctx, const sl_delivery *d)
{
    uint64_t t1 = now_ns();
    wks_ctx *c = ctx;
    if (!c->pinned) c->pinned = pin_to(1) || true;
    if (d->end) die("shardlog: wake-up: the subscription ended (%d, %d)", d->end, d->error);
    if (d->count != 1) die("shardlog: wake-up: delivered %zu records, expected 1", d->count);
    if (c->seen < c->total) c->lat[c->seen++] = (double)(t1 - atomic_load(&c->t0)) / 1e3;
    sl_put_entry back = {"r", "x", 1, HK_SHARD1};
    SLCHECK(sl_producer_put(c->p, &back, NULL), c->p, "sl_producer_put (handler)");
    return 0;
}

void slb_wakeup_sub(const char *dir, int samples, uint64_t gap_ns, double *med_us, double *p99_us)
{
    wks_ctx c = {.total = samples + WARM_SAMPLES};
    c.lat = calloc((size_t)c.total, sizeof *c.lat);
    if (!c.lat) die("out of memory");
    sl_stream *s = create(dir, SL_DURABILITY_NONE);
    sl_producer *p;
    sl_iter *back;
    sl_consumer *con;
    sl_sched *sc;
    sl_sub *sub;
    SLCHECK(sl_producer_open(&p, s), s, "sl_producer_open");
    SLCHECK(sl_producer_open(&c.p, s), s, "sl_producer_open");
    SLCHECK(sl_consumer_register(s, "efo", SL_CONSUMER_DEDICATED), s, "sl_consumer_register");
    SLCHECK(sl_consumer_open(&con, s, "efo"), s, "sl_consumer_open");
    SLCHECK(sl_sched_new(&sc, s), s, "sl_sched_new");
    SLCHECK(sl_subscribe(&sub, sc, con, "shardId-000000000000", SL_ITER_LATEST, 0, 16,
                         wks_handler, &c), s, "sl_subscribe");
    SLCHECK(sl_iter_open(&back, s, "shardId-000000000001", SL_ITER_LATEST, 0), s,
            "sl_iter_open");
    SLCHECK(sl_sched_start(sc), s, "sl_sched_start");
    pin_to(0);
    sl_put_entry fwd = {"w", "x", 1, HK_SHARD0};
    sl_record recs[4];
    sl_read_result res;
    for (int i = 0; i < c.total; i++) {
        spin_ns(gap_ns);              /* let the scheduler fall asleep */
        atomic_store(&c.t0, now_ns());
        SLCHECK(sl_producer_put(p, &fwd, NULL), p, "sl_producer_put (writer)");
        int rc = sl_iter_wait(back, 10000);
        if (rc != 1) sl_die(rc < 0 ? rc : SL_EIO, back, "sl_iter_wait (writer)");
        SLCHECK(sl_iter_read(back, recs, 4, &res), back, "sl_iter_read (writer)");
    }
    pin_restore();
    SLCHECK(sl_sched_stop(sc), s, "sl_sched_stop");
    sl_unsubscribe(sub);
    sl_sched_free(sc);
    SLCHECK(sl_consumer_close(con), s, "sl_consumer_close");
    sl_iter_close(back);
    sl_producer_close(c.p);
    sl_producer_close(p);
    close_stream(s);
    if (c.seen != c.total) die("shardlog: wake-up: %d deliveries, expected %d", c.seen, c.total);
    lat_stats(c.lat, c.total, med_us, p99_us);
    free(c.lat);
}

/* The bare ping-pong: each side sets the turn under the mutex, unlocks and
** then signals (the faster order: the woken thread does not find the mutex
** still held). */
typedef struct pp_ctx {
    pthread_mutex_t m;
    pthread_cond_t to_reader, to_writer;
    int turn;                         /* 1: the reader's, 0: the writer's */
    uint64_t t0;
    int total;
    double *lat;
} pp_ctx;

static void *pp_reader(void *arg)
{
    pp_ctx *c = arg;
    pin_to(1);
    for (int i = 0; i < c->total; i++) {
        pthread_mutex_lock(&c->m);
        while (c->turn != 1) pthread_cond_wait(&c->to_reader, &c->m);
        uint64_t t1 = now_ns();
        c->lat[i] = (double)(t1 - c->t0) / 1e3;
        c->turn = 0;
        pthread_mutex_unlock(&c->m);
        pthread_cond_signal(&c->to_writer);
    }
    return NULL;
}

void condvar_pingpong(int samples, uint64_t gap_ns, double *med_us, double *p99_us)
{
    pp_ctx c = {.m = PTHREAD_MUTEX_INITIALIZER, .to_reader = PTHREAD_COND_INITIALIZER,
                .to_writer = PTHREAD_COND_INITIALIZER, .total = samples + WARM_SAMPLES};
    c.lat = calloc((size_t)c.total, sizeof *c.lat);
    if (!c.lat) die("out of memory");
    pthread_t th;
    pin_to(0);
    if (pthread_create(&th, NULL, pp_reader, &c) != 0) die("pthread_create");
    for (int i = 0; i < c.total; i++) {
        spin_ns(gap_ns);
        uint64_t t0 = now_ns();
        pthread_mutex_lock(&c.m);
        c.t0 = t0;
        c.turn = 1;
        pthread_mutex_unlock(&c.m);
        pthread_cond_signal(&c.to_reader);
        pthread_mutex_lock(&c.m);
        while (c.turn != 0) pthread_cond_wait(&c.to_writer, &c.m);
        pthread_mutex_unlock(&c.m);
    }
    pthread_join(th, NULL);
    pin_restore();
    lat_stats(c.lat, c.total, med_us, p99_us);
    free(c.lat);
}

/* ---- reopen after SIGKILL ----------------------------------------------- */

#define CRASH_REC 1024u

static void crash_child(const char *dir, uint64_t bytes, int fd)
{
    static sl_put_entry e[BATCH_MAX];
    static sl_put_result res[BATCH_MAX];
    static char k[BATCH_MAX][KEY_LEN + 1];
    uint64_t rng = 7, n = bytes / CRASH_REC, done = 0;
    sl_stream *s = create(dir, SL_DURABILITY_NONE);
    sl_producer *p;
    SLCHECK(sl_producer_open(&p, s), s, "sl_producer_open (child)");
    double t0 = now_s();
    while (done < n) {
        size_t m = n - done < BATCH_MAX ? (size_t)(n - done) : BATCH_MAX, failed;
        for (size_t j = 0; j < m; j++) {
            make_key(k[j], &rng);
            e[j] = (sl_put_entry){k[j], rec_data(done + j), CRASH_REC, NULL};
        }
        SLCHECK(sl_producer_put_batch(p, e, m, res, &failed), p, "put_batch (child)");
        if (failed) _exit(3);
        done += m;
    }
    double rate = (double)(done * CRASH_REC) / (now_s() - t0);
    uint64_t msg[2];
    msg[0] = done;
    memcpy(&msg[1], &rate, sizeof rate);
    if (write(fd, msg, sizeof msg) != (ssize_t)sizeof msg) _exit(4);
    raise(SIGKILL);                   /* no close: the stream is left open */
    _exit(5);
}

double slb_reopen(const char *dir, uint64_t bytes, double *crash_ms, double *clean_ms)
{
    int pfd[2];
    uint64_t msg[2] = {0, 0};
    fflush(NULL);
    if (pipe(pfd) != 0) die("pipe");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        close(pfd[0]);
        crash_child(dir, bytes, pfd[1]);
    }
    close(pfd[1]);
    ssize_t got = read(pfd[0], msg, sizeof msg);
    close(pfd[0]);
    int st = 0;
    if (waitpid(pid, &st, 0) != pid || !WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL ||
        got != (ssize_t)sizeof msg)
        die("shardlog: the crash child failed (status 0x%x)", st);
    double rate;
    memcpy(&rate, &msg[1], sizeof rate);

    sl_stream *s;
    double t0 = now_s();
    SLCHECK(sl_stream_open(&s, dir, STREAM, NULL), NULL, "sl_stream_open after SIGKILL");
    *crash_ms = (now_s() - t0) * 1e3;
    uint64_t r[SHARDS], found = 0;   /* a crash of the process loses nothing */
    shard_records(s, r);
    for (int i = 0; i < SHARDS; i++) found += r[i];
    if (found != msg[0])
        die("shardlog: after SIGKILL %" PRIu64 " records, the child committed %" PRIu64, found,
            msg[0]);
    close_stream(s);
    t0 = now_s();
    SLCHECK(sl_stream_open(&s, dir, STREAM, NULL), NULL, "sl_stream_open after close");
    *clean_ms = (now_s() - t0) * 1e3;
    close_stream(s);
    return rate;
}

/* ---- maintenance (issue 5) --------------------------------------------------- */

/* One telemetry event, deterministic in i: a JSON object of 300-600 bytes. */
static size_t telemetry(char *buf, size_t cap, uint64_t i, char key[32])
{
    static const char *const types[] = {"tool_call", "llm_request", "llm_response", "trace",
                                        "retrieval", "error"};
    static const char *const tools[] = {"search", "browser", "python", "sql", "shell"};
    uint64_t h = i * 0x9e3779b97f4a7c15ull;
    unsigned sess = (unsigned)(h % 1000);
    snprintf(key, 32, "session-%04u", sess);
    size_t pad = 60 + (size_t)((h >> 20) % 300);
    int n = snprintf(buf, cap,
                     "{\"ts\":%" PRIu64 ",\"session\":\"%s\",\"type\":\"%s\",\"tool\":\"%s\","
                     "\"latency_ms\":%u,\"tokens_in\":%u,\"tokens_out\":%u,\"status\":\"%s\","
                     "\"trace_id\":\"%016" PRIx64 "\",\"model\":\"agent-model-v2\","
                     "\"prompt\":\"",
                     (uint64_t)(1790000000000ull + i * 37), key, types[(h >> 8) % 6], tools[(h >> 12) % 5],
                     (unsigned)((h >> 24) % 5000), (unsigned)((h >> 32) % 4000),
                     (unsigned)((h >> 40) % 2000), (h >> 48) % 50 ? "ok" : "error", h);
    static const char words[] = "the user asked the agent to find the latest report and "
                                "summarise the findings for the weekly review meeting ";
    for (size_t k = 0; k < pad && (size_t)n + 4 < cap; k++) buf[n++] = words[(k + i) % (sizeof words - 1)];
    n += snprintf(buf + n, cap - (size_t)n, "\"}");
    return (size_t)n;
}

double slb_maint_append(const char *dir, size_t n, bool maint, sl_maint_stats *st)
{
    sl_vclock *vc;
    SLCHECK(sl_vclock_new(&vc, 1790000000000LL), NULL, "sl_vclock_new");
    sl_stream_config cfg = SL_STREAM_CONFIG_INIT;
    cfg.name = STREAM;
    cfg.shard_count = SHARDS;
    cfg.durability = SL_DURABILITY_NONE;
    cfg.segment_bytes = 4u << 20;
    cfg.compaction = SL_COMPACTION_KEY;
    cfg.cold_after_hours = 1;
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.clock = sl_vclock_clock(vc);
    sl_stream *s;
    SLCHECK(sl_stream_create(&s, dir, &cfg, &o), NULL, "sl_stream_create");
    sl_producer *p;
    SLCHECK(sl_producer_open(&p, s), s, "sl_producer_open");
    static char bufs[500][700];
    static char keys[500][32];
    static sl_put_entry e[500];
    static sl_put_result r[500];
    /* the run spans 36 hours of stream time, whatever n */
    int64_t step = (int64_t)(36 * 3600000LL / (int64_t)((n + 499) / 500));
    if (maint) SLCHECK(sl_stream_maintain_start(s, 10), s, "sl_stream_maintain_start");
    double t0 = now_s();
    for (size_t i = 0; i < n; i += 500) {
        size_t k = n - i < 500 ? n - i : 500;
        for (size_t j = 0; j < k; j++) {
            size_t len = telemetry(bufs[j], sizeof bufs[j], i + j, keys[j]);
            e[j] = (sl_put_entry){keys[j], bufs[j], len, NULL};
        }
        size_t failed;
        SLCHECK(sl_producer_put_batch(p, e, k, r, &failed), p, "sl_producer_put_batch");
        if (failed) sl_die(r[0].error ? r[0].error : SL_EIO, p, "a batch entry failed");
        sl_vclock_advance(vc, step);
    }
    double t = now_s() - t0;
    if (maint) {
        SLCHECK(sl_stream_maintain_stop(s), s, "sl_stream_maintain_stop");
        /* what it did, plus one last pass to report the totals */
        sl_maint_stats last;
        SLCHECK(sl_stream_maintain(s, -1, NULL, NULL, &last), s, "sl_stream_maintain");
        *st = last;
    }
    sl_producer_close(p);
    close_stream(s);
    sl_vclock_free(vc);
    return (double)n / t;
}

static void scan_one(sl_stream *s, uint64_t *count, uint64_t *sum)
{
    static sl_record recs[SL_GET_RECORDS_MAX];
    sl_iter *it;
    sl_read_result res;
    SLCHECK(sl_iter_open(&it, s, "shardId-000000000000", SL_ITER_TRIM_HORIZON, 0), s,
            "sl_iter_open");
    do {
        SLCHECK(sl_iter_read(it, recs, SL_GET_RECORDS_MAX, &res), it, "sl_iter_read");
        for (size_t j = 0; j < res.count; j++) *sum += sum_bytes(recs[j].data, recs[j].data_len);
        *count += res.count;
    } while (res.count > 0);
    sl_iter_close(it);
}

void slb_cold(const char *dir, size_t n, double *hot_rate, double *cold_rate, double *ratio)
{
    sl_vclock *vc;
    SLCHECK(sl_vclock_new(&vc, 1790000000000LL), NULL, "sl_vclock_new");
    sl_stream_config cfg = SL_STREAM_CONFIG_INIT;
    cfg.name = STREAM;
    cfg.shard_count = 1;
    cfg.durability = SL_DURABILITY_NONE;
    cfg.segment_bytes = 16u << 20;
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.clock = sl_vclock_clock(vc);
    sl_stream *s;
    SLCHECK(sl_stream_create(&s, dir, &cfg, &o), NULL, "sl_stream_create");
    sl_producer *p;
    SLCHECK(sl_producer_open(&p, s), s, "sl_producer_open");
    static char buf[700];
    char key[32];
    for (size_t i = 0; i < n; i++) {
        size_t len = telemetry(buf, sizeof buf, i, key);
        SLCHECK(sl_put(p, key, buf, len, NULL), p, "sl_put");
    }
    sl_producer_close(p);
    uint64_t c1 = 0, s1 = 0, c2 = 0, s2 = 0;
    double t0 = now_s();
    scan_one(s, &c1, &s1);
    *hot_rate = (double)c1 / (now_s() - t0);
    SLCHECK(sl_stream_set_cold_after(s, 1), s, "sl_stream_set_cold_after");
    sl_vclock_advance(vc, 2 * 3600000);
    sl_maint_stats st;
    SLCHECK(sl_stream_maintain(s, -1, NULL, NULL, &st), s, "sl_stream_maintain");
    if (!st.segments_cold) die("shardlog: no segment turned cold");
    *ratio = (double)st.cold_bytes_before / (double)st.cold_bytes_after;
    t0 = now_s();
    scan_one(s, &c2, &s2);
    *cold_rate = (double)c2 / (now_s() - t0);
    if (c1 != n || c2 != n || s1 != s2)
        die("shardlog: cold scan read %" PRIu64 " records (sum %" PRIu64 "), hot %" PRIu64
            " (sum %" PRIu64 ")", c2, s2, c1, s1);
    close_stream(s);
    sl_vclock_free(vc);
}
