/*
** test_consumer.c -- registered consumers and durable checkpoints:
** register / list / open / deregister and their rules (names, duplicates,
** the limit, leftovers of a crash), checkpoints per shard (round trip,
** backwards, bad sequence numbers, reopen), resuming iterators and their
** counters, damaged checkpoint slots, a child killed while checkpointing,
** read-only handles, injected I/O failures, and trimmed checkpoints.
*/
#include "testutil.h"

#include <pthread.h>

#define NAME "cons"
#define SHARD0 "shardId-000000000000"
#define SHARD1 "shardId-000000000001"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Put one record with `data_len` bytes of data; returns its sequence
** number and (if shard) its shard index. */
static uint64_t put_sized(sl_producer *p, const char *key, int i, size_t data_len,
                          uint32_t *shard)
{
    char buf[2048];
    assert_true(data_len < sizeof buf);
    int h = snprintf(buf, sizeof buf, "%s:%d|", key, i);
    if ((size_t)h < data_len) memset(buf + h, 'a' + i % 26, data_len - (size_t)h);
    sl_put_entry e = {key, buf, data_len > (size_t)h ? data_len : (size_t)h, NULL};
    sl_put_result r;
    int rc = sl_producer_put(p, &e, &r);
    if (rc) fprintf(stderr, "put_sized: %s\n", sl_errmsg(p));
    assert_int_equal(rc, 0);
    if (shard) *shard = r.shard_index;
    return r.sequence;
}

static char *ckpt_path(const char *root, const char *consumer)
{
    return tu_path("%s/%s/consumers/%s/CHECKPOINTS", root, NAME, consumer);
}

static uint64_t get_ckpt(sl_consumer *c, const char *shard)
{
    uint64_t seq = 12345;
    int rc = sl_consumer_get_checkpoint(c, shard, &seq);
    if (rc) fprintf(stderr, "get_ckpt: %s\n", sl_errmsg(c));
    assert_int_equal(rc, 0);
    return seq;
}

static void ckpt(sl_consumer *c, const char *shard, uint64_t seq)
{
    int rc = sl_consumer_checkpoint(c, shard, seq);
    if (rc) fprintf(stderr, "ckpt: %s\n", sl_errmsg(c));
    assert_int_equal(rc, 0);
}

/* ---- registration ----------------------------------------------------------- */

static void register_list_open_deregister(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, 1700000000000), 0);
    tu_opts o = {.shards = 2, .clock = sl_vclock_clock(vc)};
    sl_stream *s = tu_create(root, NAME, &o);

    sl_consumer_list *l;
    assert_int_equal(sl_consumer_list_get(&l, s), 0);   /* no consumers/ yet */
    assert_int_equal(l->count, 0);
    sl_consumer_list_free(l);

    /* names Kinesis allows that look like our own files must work */
    const char *names[] = {"beta", "alpha", ".tmp-x-1", "LOCK", ".dead-y-2"};
    for (int i = 0; i < 5; i++) {
        sl_vclock_advance(vc, 1000);
        assert_int_equal(sl_consumer_register(s, names[i], i == 0 ? SL_CONSUMER_DEDICATED
                                                                  : SL_CONSUMER_SHARED),
                         0);
    }
    struct stat st;
    char *p = tu_path("%s/%s/consumers", root, NAME);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    free(p);
    p = tu_path("%s/%s/consumers/alpha/CONSUMER", root, NAME);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    free(p);

    assert_int_equal(sl_consumer_list_get(&l, s), 0);
    assert_int_equal(l->count, 5);
    const char *sorted[] = {".dead-y-2", ".tmp-x-1", "LOCK", "alpha", "beta"};
    for (int i = 0; i < 5; i++) {
        assert_string_equal(l->consumers[i].name, sorted[i]);
        assert_true(l->consumers[i].id != 0);
        for (int j = 0; j < i; j++) assert_true(l->consumers[i].id != l->consumers[j].id);
    }
    assert_int_equal(l->consumers[4].type, SL_CONSUMER_DEDICATED);
    assert_int_equal(l->consumers[4].created_ms, 1700000001000);
    assert_int_equal(l->consumers[3].type, SL_CONSUMER_SHARED);
    assert_int_equal(l->consumers[3].created_ms, 1700000002000);
    uint64_t alpha_id = l->consumers[3].id;
    sl_consumer_list_free(l);

    sl_consumer *c;
    assert_int_equal(sl_consumer_open(&c, s, "alpha"), 0);
    const sl_consumer_info *ci = sl_consumer_get_info(c);
    assert_string_equal(ci->name, "alpha");
    assert_int_equal(ci->id, alpha_id);
    assert_int_equal(ci->type, SL_CONSUMER_SHARED);
    assert_null(sl_consumer_get_info(NULL));

    /* open: it cannot go, nor can the stream */
    assert_int_equal(sl_consumer_deregister(s, "alpha"), SL_EINUSE);
    assert_non_null(strstr(sl_errmsg(s), "alpha"));
    assert_int_equal(sl_stream_close(s), SL_EINUSE);
    /* open subscriptions keep a consumer open */
    atomic_store(&c->subs, 1);
    assert_int_equal(sl_consumer_close(c), SL_EINUSE);
    atomic_store(&c->subs, 0);
    assert_int_equal(sl_consumer_close(c), 0);
    assert_int_equal(sl_consumer_close(NULL), 0);

    assert_int_equal(sl_consumer_deregister(s, "alpha"), 0);
    assert_int_equal(sl_consumer_open(&c, s, "alpha"), SL_ENOTFOUND);
    assert_null(c);
    assert_int_equal(sl_consumer_deregister(s, "alpha"), SL_ENOTFOUND);
    assert_int_equal(sl_consumer_deregister(s, "nobody"), SL_ENOTFOUND);
    assert_int_equal(sl_consumer_deregister(s, ".tmp-x-1"), 0);
    assert_int_equal(sl_consumer_open(&c, s, "LOCK"), 0);
    assert_int_equal(sl_consumer_close(c), 0);

    /* registrations survive a reopen; a re-registered name is new */
    assert_int_equal(sl_stream_close(s), 0);
    s = tu_open(root, NAME, &o);
    assert_int_equal(sl_consumer_list_get(&l, s), 0);
    assert_int_equal(l->count, 3);
    assert_string_equal(l->consumers[0].name, ".dead-y-2");
    assert_string_equal(l->consumers[1].name, "LOCK");
    assert_string_equal(l->consumers[2].name, "beta");
    sl_consumer_list_free(l);
    assert_int_equal(sl_consumer_register(s, "alpha", SL_CONSUMER_SHARED), 0);
    assert_int_equal(sl_consumer_open(&c, s, "alpha"), 0);
    assert_true(sl_consumer_get_info(c)->id != alpha_id);
    assert_int_equal(sl_consumer_close(c), 0);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

static void name_and_type_rules(void **state)
{
    sl_stream *s = tu_create(*state, NAME, NULL);
    char long_name[200];
    memset(long_name, 'n', 129);
    long_name[129] = '\0';
    const char *bad[] = {NULL, "", long_name, "a/b", "a b", ".", "..", "caf\xC3\xA9", "x~y"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(sl_consumer_register(s, bad[i], SL_CONSUMER_SHARED), SL_EVALIDATION);
        assert_non_null(strstr(sl_errmsg(s), "'consumerName'"));
        assert_non_null(strstr(sl_errmsg(s), "1 validation error detected"));
        sl_consumer *c = (sl_consumer *)1;
        assert_int_equal(sl_consumer_open(&c, s, bad[i]), SL_EVALIDATION);
        assert_null(c);
        assert_int_equal(sl_consumer_deregister(s, bad[i]), SL_EVALIDATION);
    }
    assert_non_null(strstr(sl_errmsg(s), "[a-zA-Z0-9_.-]+"));
    long_name[128] = '\0';                      /* 128 is fine */
    assert_int_equal(sl_consumer_register(s, long_name, SL_CONSUMER_SHARED), 0);
    assert_int_equal(sl_consumer_register(s, "t", (sl_consumer_type)0), SL_EVALIDATION);
    assert_int_equal(sl_consumer_register(s, "t", (sl_consumer_type)3), SL_EVALIDATION);
    assert_int_equal(sl_consumer_register(s, "t", SL_CONSUMER_DEDICATED), 0);
    assert_int_equal(sl_consumer_register(s, "t", SL_CONSUMER_SHARED), SL_EINUSE);
    assert_non_null(strstr(sl_errmsg(s), "already exists"));
    assert_int_equal(sl_consumer_register(NULL, "t", SL_CONSUMER_SHARED), SL_EINVAL);
    assert_int_equal(sl_consumer_list_get(NULL, s), SL_EINVAL);
    assert_int_equal(sl_consumer_open(NULL, s, "t"), SL_EINVAL);
    assert_int_equal(sl_stream_close(s), 0);
}

static void limit_and_leftovers(void **state)
{
    const char *root = *state;
    sl_stream *s = tu_create(root, NAME, NULL);
    char n[32];
    for (int i = 0; i < 20; i++) {
        snprintf(n, sizeof n, "c%02d", i);
        assert_int_equal(sl_consumer_register(s, n, SL_CONSUMER_SHARED), 0);
    }
    assert_int_equal(sl_consumer_register(s, "c20", SL_CONSUMER_SHARED), SL_ELIMIT);
    assert_non_null(strstr(sl_errmsg(s), "20"));
    assert_int_equal(sl_consumer_deregister(s, "c07"), 0);
    assert_int_equal(sl_consumer_register(s, "c20", SL_CONSUMER_SHARED), 0);
    assert_int_equal(sl_consumer_register(s, "c21", SL_CONSUMER_SHARED), SL_ELIMIT);

    /* what a crash leaves: neither listed nor counted, and removed by the
    ** next registration */
    char *tmp = tu_path("%s/%s/consumers/~tmp~x~0123456789abcdef", root, NAME);
    char *dead = tu_path("%s/%s/consumers/~dead~c03~0123456789abcdef", root, NAME);
    char *f = tu_path("%s/CONSUMER", dead);
    assert_int_equal(mkdir(tmp, 0700), 0);
    assert_int_equal(mkdir(dead, 0700), 0);
    int fd = open(f, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    sl_consumer_list *l;
    assert_int_equal(sl_consumer_list_get(&l, s), 0);
    assert_int_equal(l->count, 20);
    sl_consumer_list_free(l);
    assert_int_equal(sl_consumer_deregister(s, "c00"), 0);
    assert_int_equal(sl_consumer_register(s, "c22", SL_CONSUMER_SHARED), 0);
    struct stat st;
    assert_int_equal(stat(tmp, &st), -1);
    assert_int_equal(stat(dead, &st), -1);
    free(tmp);
    free(dead);
    free(f);

    /* a damaged registration: open says so, the list leaves it out */
    tu_reports rep = {0};
    char *cf = tu_path("%s/%s/consumers/c05/CONSUMER", root, NAME);
    tu_flip_byte(cf, 40);
    assert_int_equal(sl_stream_close(s), 0);
    tu_opts o = {.reports = &rep};
    s = tu_open(root, NAME, &o);
    sl_consumer *c;
    assert_int_equal(sl_consumer_open(&c, s, "c05"), SL_ECORRUPT);
    assert_non_null(strstr(sl_errmsg(s), cf));
    assert_int_equal(sl_consumer_list_get(&l, s), 0);
    assert_int_equal(l->count, 19);
    sl_consumer_list_free(l);
    assert_int_equal(rep.count, 1);
    assert_int_equal(rep.last_code, SL_ECORRUPT);
    /* it still holds its name and place; deregistering removes it */
    assert_int_equal(sl_consumer_register(s, "c05", SL_CONSUMER_SHARED), SL_EINUSE);
    assert_int_equal(sl_consumer_deregister(s, "c05"), 0);
    assert_int_equal(sl_consumer_register(s, "c05", SL_CONSUMER_SHARED), 0);
    free(cf);
    assert_int_equal(sl_stream_close(s), 0);
}

/* ---- checkpoints -------------------------------------------------------------- */

typedef struct twoshards {
    uint64_t seq[2][64];
    int n[2];
} twoshards;

static void put_two_shards(sl_producer *p, twoshards *t, int each)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; t->n[0] < each || t->n[1] < each; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        uint32_t sh;
        uint64_t seq = put_sized(p, key, i, 40, &sh);
        assert_true(sh < 2);
        if (t->n[sh] < 64) t->seq[sh][t->n[sh]++] = seq;
    }
}

static void checkpoint_round_trip(void **state)
{
    const char *root = *state;
    tu_opts o = {.shards = 2};
    sl_stream *s = tu_create(root, NAME, &o);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    twoshards t;
    put_two_shards(p, &t, 8);
    assert_int_equal(sl_consumer_register(s, "app", SL_CONSUMER_SHARED), 0);
    sl_consumer *c;
    assert_int_equal(sl_consumer_open(&c, s, "app"), 0);

    uint64_t seq = 7;
    assert_int_equal(sl_consumer_get_checkpoint(c, SHARD0, &seq), SL_ENOTFOUND);
    assert_int_equal(seq, 0);
    ckpt(c, SHARD0, t.seq[0][3]);
    ckpt(c, SHARD1, t.seq[1][5]);
    assert_int_equal(get_ckpt(c, SHARD0), t.seq[0][3]);
    assert_int_equal(get_ckpt(c, SHARD1), t.seq[1][5]);
    ckpt(c, SHARD0, t.seq[0][6]);
    ckpt(c, SHARD0, t.seq[0][1]);               /* backwards is allowed */
    assert_int_equal(get_ckpt(c, SHARD0), t.seq[0][1]);

    /* not a record of the shard */
    assert_int_equal(sl_consumer_checkpoint(c, SHARD0, t.seq[1][2]), SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(c), SHARD0));
    uint64_t last = t.seq[0][t.n[0] - 1] > t.seq[1][t.n[1] - 1] ? t.seq[0][t.n[0] - 1]
                                                                 : t.seq[1][t.n[1] - 1];
    assert_int_equal(sl_consumer_checkpoint(c, SHARD0, last + 1), SL_EINVAL);
    assert_int_equal(sl_consumer_checkpoint(c, SHARD0, UINT64_MAX), SL_EINVAL);
    assert_int_equal(sl_consumer_checkpoint(c, SHARD0, 0), SL_EINVAL);
    assert_int_equal(sl_consumer_checkpoint(c, "shardId-000000000002", t.seq[0][1]),
                     SL_ENOTFOUND);
    assert_int_equal(sl_consumer_checkpoint(c, NULL, t.seq[0][1]), SL_ENOTFOUND);
    assert_int_equal(sl_consumer_checkpoint(c, "bogus", t.seq[0][1]), SL_ENOTFOUND);
    assert_int_equal(sl_consumer_get_checkpoint(c, "shardId-000000000009", &seq), SL_ENOTFOUND);
    assert_int_equal(sl_consumer_get_checkpoint(c, SHARD0, NULL), SL_EINVAL);
    assert_int_equal(sl_consumer_checkpoint(NULL, SHARD0, t.seq[0][1]), SL_EINVAL);
    /* failures changed nothing */
    assert_int_equal(get_ckpt(c, SHARD0), t.seq[0][1]);
    assert_int_equal(get_ckpt(c, SHARD1), t.seq[1][5]);

    /* the file: two slots per shard (shard 1 has used only its first) */
    char *cp = ckpt_path(root, "app");
    struct stat st;
    assert_int_equal(stat(cp, &st), 0);
    assert_int_equal(st.st_size, 128 + 64);
    assert_int_equal(st.st_mode & 0777, 0600);
    free(cp);

    /* survives a reopen of everything */
    assert_int_equal(sl_consumer_close(c), 0);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    s = tu_open(root, NAME, &o);
    assert_int_equal(sl_consumer_open(&c, s, "app"), 0);
    assert_int_equal(get_ckpt(c, SHARD0), t.seq[0][1]);
    assert_int_equal(get_ckpt(c, SHARD1), t.seq[1][5]);
    /* two handles on one consumer see each other's checkpoints */
    sl_consumer *c2;
    assert_int_equal(sl_consumer_open(&c2, s, "app"), 0);
    ckpt(c2, SHARD1, t.seq[1][7]);
    assert_int_equal(get_ckpt(c, SHARD1), t.seq[1][7]);
    assert_int_equal(sl_consumer_close(c2), 0);

    /* a new registration of the name starts without checkpoints */
    assert_int_equal(sl_consumer_close(c), 0);
    assert_int_equal(sl_consumer_deregister(s, "app"), 0);
    assert_int_equal(sl_consumer_register(s, "app", SL_CONSUMER_SHARED), 0);
    assert_int_equal(sl_consumer_open(&c, s, "app"), 0);
    assert_int_equal(sl_consumer_get_checkpoint(c, SHARD0, &seq), SL_ENOTFOUND);
    assert_int_equal(sl_consumer_get_checkpoint(c, SHARD1, &seq), SL_ENOTFOUND);
    assert_int_equal(sl_consumer_close(c), 0);
    assert_int_equal(sl_stream_close(s), 0);
}

/* Checkpoints from several threads, on the same shards: every call either
** succeeds or fails cleanly, and what is read back is one of the values
** written last by some thread. */
typedef struct cthread {
    sl_consumer *c;
    const uint64_t *seqs;
    int n, rc;
    const char *shard;
} cthread;

static void *ckpt_thread(void *arg)
{
    cthread *t = arg;
    for (int i = 0; i < t->n && !t->rc; i++) t->rc = sl_consumer_checkpoint(t->c, t->shard, t->seqs[i]);
    return NULL;
}

static void checkpoint_threads(void **state)
{
    tu_opts o = {.shards = 2};
    sl_stream *s = tu_create(*state, NAME, &o);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    twoshards t;
    put_two_shards(p, &t, 12);
    assert_int_equal(sl_consumer_register(s, "mt", SL_CONSUMER_SHARED), 0);
    sl_consumer *c;
    assert_int_equal(sl_consumer_open(&c, s, "mt"), 0);
    cthread ct[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        ct[i] = (cthread){c, &t.seq[i % 2][(i / 2) * 6], 6, 0, i % 2 ? SHARD1 : SHARD0};
        assert_int_equal(pthread_create(&th[i], NULL, ckpt_thread, &ct[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(ct[i].rc, 0);
    }
    for (int sh = 0; sh < 2; sh++) {
        uint64_t v = get_ckpt(c, sh ? SHARD1 : SHARD0);
        assert_true(v == t.seq[sh][5] || v == t.seq[sh][11]);
    }
    assert_int_equal(sl_consumer_close(c), 0);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

static void iterator_resumes_and_counts(void **state)
{
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, 1700000000000), 0);
    tu_opts o = {.clock = sl_vclock_clock(vc)};
    sl_stream *s = tu_create(*state, NAME, &o);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    uint64_t seqs[12];
    for (int i = 0; i < 10; i++) seqs[i] = tu_put(p, "k", i);
    assert_int_equal(sl_consumer_register(s, "resumer", SL_CONSUMER_SHARED), 0);
    assert_int_equal(sl_consumer_register(s, "fresh", SL_CONSUMER_DEDICATED), 0);
    sl_consumer *c, *f;
    assert_int_equal(sl_consumer_open(&c, s, "resumer"), 0);
    assert_int_equal(sl_consumer_open(&f, s, "fresh"), 0);
    ckpt(c, SHARD0, seqs[3]);

    /* with a checkpoint, (type, arg) is not used */
    sl_iter *it;
    assert_int_equal(sl_consumer_iter_open(&it, c, SHARD0, SL_ITER_LATEST, 0), 0);
    tu_recs r = {0};
    tu_drain(it, &r);
    assert_int_equal(r.n, 6);
    uint64_t bytes = 0;
    for (size_t i = 0; i < r.n; i++) {
        assert_int_equal(r.v[i].seq, seqs[4 + i]);
        char want[32];
        snprintf(want, sizeof want, "k:%zu", 4 + i);
        assert_string_equal(r.v[i].data, want);
        bytes += r.v[i].dlen + 1;
    }
    tu_recs_free(&r);
    sl_iter_close(it);
    sl_consumer_counters cn;
    assert_int_equal(sl_consumer_counters_get(c, SHARD0, &cn), 0);
    assert_int_equal(cn.reads, 2);              /* tu_drain: until an empty read */
    assert_int_equal(cn.records_out, 6);
    assert_int_equal(cn.bytes_out, bytes);
    assert_int_equal(cn.deliveries, 0);
    assert_int_equal(cn.iterator_age_ms, 0);
    assert_int_equal(sl_consumer_counters_get(c, "shardId-000000000001", &cn), SL_ENOTFOUND);
    assert_int_equal(sl_consumer_counters_get(c, SHARD0, NULL), SL_EINVAL);

    /* without one: (type, arg) */
    assert_int_equal(sl_consumer_iter_open(&it, f, SHARD0, SL_ITER_AT_SEQUENCE_NUMBER, seqs[2]), 0);
    sl_record rec[4];
    sl_read_result res;
    assert_int_equal(sl_iter_read(it, rec, 1, &res), 0);
    assert_int_equal(res.count, 1);
    assert_int_equal(rec[0].sequence, seqs[2]);
    sl_iter_close(it);
    assert_int_equal(sl_consumer_iter_open(&it, f, SHARD0, SL_ITER_LATEST, 0), 0);
    assert_int_equal(sl_iter_read(it, rec, 4, &res), 0);
    assert_int_equal(res.count, 0);
    sl_vclock_advance(vc, 250);
    seqs[10] = tu_put(p, "k", 10);
    seqs[11] = tu_put(p, "k", 11);
    sl_vclock_advance(vc, 750);
    assert_int_equal(sl_iter_read(it, rec, 1, &res), 0);
    assert_int_equal(res.count, 1);
    assert_int_equal(rec[0].sequence, seqs[10]);
    assert_int_equal(res.millis_behind_latest, 750);
    sl_iter_close(it);
    assert_int_equal(sl_consumer_counters_get(f, SHARD0, &cn), 0);
    assert_int_equal(cn.reads, 3);
    assert_int_equal(cn.records_out, 2);
    assert_int_equal(cn.iterator_age_ms, 750);
    /* the other consumer's counters did not move */
    assert_int_equal(sl_consumer_counters_get(c, SHARD0, &cn), 0);
    assert_int_equal(cn.records_out, 6);

    /* errors of the iterator come through, on the consumer's handle */
    sl_iter *bad = (sl_iter *)1;
    assert_int_equal(sl_consumer_iter_open(&bad, f, SHARD0, (sl_iter_type)9, 0), SL_EVALIDATION);
    assert_null(bad);
    assert_int_equal(sl_consumer_iter_open(&bad, f, SHARD0, SL_ITER_AT_SEQUENCE_NUMBER,
                                           seqs[11] + 5),
                     SL_EINVAL);
    assert_non_null(strstr(sl_errmsg(f), "Invalid StartingSequenceNumber"));
    assert_int_equal(sl_consumer_iter_open(&bad, f, "shardId-000000000003", SL_ITER_LATEST, 0),
                     SL_ENOTFOUND);
    assert_non_null(strstr(sl_errmsg(f), "not found"));

    /* a checkpoint at the newest record: resuming waits for the next */
    ckpt(c, SHARD0, seqs[11]);
    assert_int_equal(sl_consumer_iter_open(&it, c, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    assert_int_equal(sl_iter_read(it, rec, 4, &res), 0);
    assert_int_equal(res.count, 0);
    assert_int_equal(res.last_sequence, seqs[11]);
    sl_iter_close(it);

    assert_int_equal(sl_consumer_close(c), 0);
    assert_int_equal(sl_consumer_close(f), 0);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* ---- damaged slots ------------------------------------------------------------ */

static void damaged_slots(void **state)
{
    const char *root = *state;
    tu_opts o = {.shards = 2};
    sl_stream *s = tu_create(root, NAME, &o);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    twoshards t;
    put_two_shards(p, &t, 8);
    assert_int_equal(sl_consumer_register(s, "torn", SL_CONSUMER_SHARED), 0);
    assert_int_equal(sl_consumer_register(s, "other", SL_CONSUMER_SHARED), 0);
    sl_consumer *c;
    assert_int_equal(sl_consumer_open(&c, s, "torn"), 0);
    char *cp = ckpt_path(root, "torn");
    /* shard 1's pair is bytes 128..255: generation 1 in slot 0, 2 in slot 1 */
    ckpt(c, SHARD1, t.seq[1][2]);
    ckpt(c, SHARD1, t.seq[1][4]);
    ckpt(c, SHARD0, t.seq[0][1]);
    assert_int_equal(get_ckpt(c, SHARD1), t.seq[1][4]);
    tu_flip_byte(cp, 128 + 64 + 24);            /* the newest slot's sequence */
    assert_int_equal(get_ckpt(c, SHARD1), t.seq[1][2]);
    /* the next checkpoint goes into the damaged slot, as generation 2 */
    ckpt(c, SHARD1, t.seq[1][6]);
    assert_int_equal(get_ckpt(c, SHARD1), t.seq[1][6]);
    /* a torn write: the newest slot half written */
    int fd = open(cp, O_RDWR);
    assert_true(fd >= 0);
    uint8_t junk[32];
    memset(junk, 0xAB, sizeof junk);
    assert_int_equal(pwrite(fd, junk, sizeof junk, 128 + 64 + 32), 32);
    assert_int_equal(get_ckpt(c, SHARD1), t.seq[1][2]);
    /* both damaged: no checkpoint, and the iterator starts at (type, arg) */
    tu_flip_byte(cp, 128 + 3);
    uint64_t seq;
    assert_int_equal(sl_consumer_get_checkpoint(c, SHARD1, &seq), SL_ENOTFOUND);
    sl_iter *it;
    assert_int_equal(sl_consumer_iter_open(&it, c, SHARD1, SL_ITER_AT_SEQUENCE_NUMBER,
                                           t.seq[1][3]),
                     0);
    sl_record rec[1];
    sl_read_result res;
    assert_int_equal(sl_iter_read(it, rec, 1, &res), 0);
    assert_int_equal(rec[0].sequence, t.seq[1][3]);
    sl_iter_close(it);
    /* shard 0 was not touched */
    assert_int_equal(get_ckpt(c, SHARD0), t.seq[0][1]);
    /* and checkpoints work again */
    ckpt(c, SHARD1, t.seq[1][7]);
    assert_int_equal(get_ckpt(c, SHARD1), t.seq[1][7]);
    /* a slot of the right shard but another consumer is not ours */
    sl_consumer *oc;
    assert_int_equal(sl_consumer_open(&oc, s, "other"), 0);
    uint8_t pair[128];
    assert_int_equal(pread(fd, pair, sizeof pair, 0), 128);
    char *op = ckpt_path(root, "other");
    int ofd = open(op, O_RDWR);
    assert_true(ofd >= 0);
    assert_int_equal(pwrite(ofd, pair, sizeof pair, 0), 128);
    close(ofd);
    assert_int_equal(sl_consumer_get_checkpoint(oc, SHARD0, &seq), SL_ENOTFOUND);
    /* a slot moved to another shard's place is not that shard's */
    assert_int_equal(pwrite(fd, pair, sizeof pair, 128), 128);
    assert_int_equal(sl_consumer_get_checkpoint(c, SHARD1, &seq), SL_ENOTFOUND);
    assert_int_equal(get_ckpt(c, SHARD0), t.seq[0][1]);
    /* garbage everywhere, and a file cut short: no crash, no checkpoint */
    uint8_t big[256];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)rng();
    assert_int_equal(pwrite(fd, big, sizeof big, 0), 256);
    assert_int_equal(sl_consumer_get_checkpoint(c, SHARD0, &seq), SL_ENOTFOUND);
    assert_int_equal(ftruncate(fd, 100), 0);
    assert_int_equal(sl_consumer_get_checkpoint(c, SHARD1, &seq), SL_ENOTFOUND);
    ckpt(c, SHARD1, t.seq[1][1]);
    assert_int_equal(get_ckpt(c, SHARD1), t.seq[1][1]);
    close(fd);
    free(cp);
    free(op);
    assert_int_equal(sl_consumer_close(oc), 0);
    assert_int_equal(sl_consumer_close(c), 0);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

/* ---- a child killed while it checkpoints ------------------------------------- */

#define CRASH_ROUNDS 8

static void crash_child(const char *root, int fd, uint32_t round)
{
    sl_stream *s;
    sl_producer *p;
    sl_consumer *c;
    if (sl_stream_open(&s, root, NAME, NULL)) _exit(2);
    if (sl_producer_open(&p, s) || sl_consumer_open(&c, s, "worker")) _exit(3);
    char buf[400];
    for (uint32_t i = 0;; i++) {
        int n = snprintf(buf, sizeof buf, "r%ui%u|", round, i);
        memset(buf + n, 'a' + (int)(i % 26), 100 + (i * 37) % 200);
        uint64_t seq;
        if (sl_put(p, "key", buf, (size_t)n + 100 + (i * 37) % 200, &seq)) _exit(4);
        if (sl_consumer_checkpoint(c, SHARD0, seq)) _exit(5);
        if (write(fd, &seq, sizeof seq) != sizeof seq) _exit(6);
    }
}

static void crash_while_checkpointing(void **state)
{
    const char *root = *state;
    sl_stream *s = tu_create(root, NAME, NULL);
    assert_int_equal(sl_consumer_register(s, "worker", SL_CONSUMER_SHARED), 0);
    assert_int_equal(sl_stream_close(s), 0);
    uint64_t expect = 0;                        /* the last acknowledged */
    for (uint32_t round = 0; round < CRASH_ROUNDS; round++) {
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            crash_child(root, pfd[1], round);
        }
        close(pfd[1]);
        uint64_t target = round == 0 ? 0 : 1 + rng() % 120, n = 0, seq;
        bool killed = false;
        for (;;) {
            if (!killed && n >= target) {
                kill(pid, SIGKILL);
                killed = true;
            }
            ssize_t r = read(pfd[0], &seq, sizeof seq);
            if (r == 0) break;
            if (r < 0 && errno == EINTR) continue;
            assert_int_equal(r, (ssize_t)sizeof seq);
            assert_true(seq > expect);
            expect = seq;
            n++;
        }
        close(pfd[0]);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
            fail_msg("child ended by itself (status %d)", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        if (getenv("SL_CONSUMER_VERBOSE"))
            fprintf(stderr, "round %u: target %" PRIu64 ", %" PRIu64 " acknowledged\n", round,
                    target, n);

        s = tu_open(root, NAME, NULL);
        tu_recs all = {0};
        tu_read_shard(s, SHARD0, &all);
        assert_int_equal(all.corrupt, 0);
        /* the successor of the last acknowledged: the checkpoint in flight */
        uint64_t next = 0;
        for (size_t k = 0; k < all.n && !next; k++)
            if (all.v[k].seq > expect) next = all.v[k].seq;
        sl_consumer *c;
        assert_int_equal(sl_consumer_open(&c, s, "worker"), 0);
        uint64_t ck = 0;
        int rc = sl_consumer_get_checkpoint(c, SHARD0, &ck);
        if (rc == SL_ENOTFOUND) {
            assert_int_equal(expect, 0);
        } else {
            assert_int_equal(rc, 0);
            if (ck != expect && !(next && ck == next))
                fail_msg("round %u: checkpoint %" PRIu64 "; last acknowledged %" PRIu64
                         ", next record %" PRIu64,
                         round, ck, expect, next);
            if (getenv("SL_CONSUMER_VERBOSE"))
                fprintf(stderr, "round %u: %s\n", round,
                        ck == expect ? "last acknowledged" : "the one in flight");
            expect = ck;
        }
        /* resuming reads exactly the records after it */
        sl_iter *it;
        assert_int_equal(sl_consumer_iter_open(&it, c, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
        tu_recs r = {0};
        tu_drain(it, &r);
        sl_iter_close(it);
        size_t k = 0;
        while (k < all.n && all.v[k].seq <= expect) k++;
        assert_int_equal(r.n, all.n - k);
        for (size_t i = 0; i < r.n; i++) {
            assert_int_equal(r.v[i].seq, all.v[k + i].seq);
            assert_int_equal(r.v[i].dlen, all.v[k + i].dlen);
            assert_memory_equal(r.v[i].data, all.v[k + i].data, r.v[i].dlen);
        }
        tu_recs_free(&r);
        tu_recs_free(&all);
        assert_int_equal(sl_consumer_close(c), 0);
        assert_int_equal(sl_stream_close(s), 0);
    }
}

/* ---- read-only handles ----------------------------------------------------------- */

static int fdatasync_calls;
static int count_fdatasync(int fd)
{
    fdatasync_calls++;
    return fdatasync(fd);
}

static void readonly_handle(void **state)
{
    const char *root = *state;
    sl_stream *w = tu_create(root, NAME, NULL);
    tu_opts ro = {.flags = SL_OPEN_READONLY};
    sl_stream *r = tu_open(root, NAME, &ro);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, w), 0);
    uint64_t first = tu_put(p, "k", 0);
    assert_int_equal(sl_consumer_register(r, "follower", SL_CONSUMER_SHARED), 0);
    sl_consumer *c;
    assert_int_equal(sl_consumer_open(&c, r, "follower"), 0);
    ckpt(c, SHARD0, first);
    assert_int_equal(get_ckpt(c, SHARD0), first);

    /* the writer appends across several segments meanwhile */
    uint64_t last = 0;
    for (int i = 1; i < 250; i++) last = put_sized(p, "k", i, 1000, NULL);
    assert_true(tu_nsegs(root, NAME, 0) >= 3);
    sl__os.fdatasync = count_fdatasync;
    fdatasync_calls = 0;
    ckpt(c, SHARD0, last);
    int first_calls = fdatasync_calls;
    /* the checkpoint file, and every segment up to the active one */
    assert_true(first_calls >= 1 + tu_nsegs(root, NAME, 0) || sl__boot_id() == 0);
    fdatasync_calls = 0;
    ckpt(c, SHARD0, last);
    /* sealed segments are not synced again: the active one and the file */
    assert_int_equal(fdatasync_calls, 2);
    sl__os_reset();
    assert_int_equal(get_ckpt(c, SHARD0), last);

    /* the writer's handle sees the same checkpoint */
    sl_consumer *wc;
    assert_int_equal(sl_consumer_open(&wc, w, "follower"), 0);
    assert_int_equal(get_ckpt(wc, SHARD0), last);
    sl_iter *it;
    assert_int_equal(sl_consumer_iter_open(&it, c, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    uint64_t more = tu_put(p, "k", 999);
    tu_recs rs = {0};
    tu_drain(it, &rs);
    assert_int_equal(rs.n, 1);
    assert_int_equal(rs.v[0].seq, more);
    tu_recs_free(&rs);
    sl_iter_close(it);
    /* a read-only handle may deregister, but not what it has open */
    assert_int_equal(sl_consumer_register(r, "gone", SL_CONSUMER_SHARED), 0);
    assert_int_equal(sl_consumer_deregister(r, "gone"), 0);
    assert_int_equal(sl_consumer_deregister(r, "follower"), SL_EINUSE);

    assert_int_equal(sl_consumer_close(wc), 0);
    assert_int_equal(sl_consumer_close(c), 0);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(r), 0);
    assert_int_equal(sl_stream_close(w), 0);
}

/* ---- injected failures ------------------------------------------------------------ */

static int fail_fdatasync(int fd)
{
    (void)fd;
    errno = EIO;
    return -1;
}

static ssize_t enospc_pwrite(int fd, const void *b, size_t n, off_t off)
{
    (void)fd, (void)b, (void)n, (void)off;
    errno = ENOSPC;
    return -1;
}

static void io_failures(void **state)
{
    const char *root = *state;
    sl_stream *s = tu_create(root, NAME, NULL);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    uint64_t seq[4];
    for (int i = 0; i < 4; i++) seq[i] = tu_put(p, "k", i);
    assert_int_equal(sl_consumer_register(s, "io", SL_CONSUMER_SHARED), 0);
    sl_consumer *c;
    assert_int_equal(sl_consumer_open(&c, s, "io"), 0);
    ckpt(c, SHARD0, seq[1]);                    /* the records are durable now */

    /* the checkpoint's own sync fails */
    sl__os.fdatasync = fail_fdatasync;
    assert_int_equal(sl_consumer_checkpoint(c, SHARD0, seq[3]), SL_EIO);
    assert_non_null(strstr(sl_errmsg(c), "CHECKPOINTS"));
    sl__os_reset();
    assert_int_equal(get_ckpt(c, SHARD0), seq[1]);
    /* its write fails */
    sl__os.pwrite = enospc_pwrite;
    assert_int_equal(sl_consumer_checkpoint(c, SHARD0, seq[2]), SL_ENOSPC);
    sl__os_reset();
    assert_int_equal(get_ckpt(c, SHARD0), seq[1]);
    /* and then it works */
    ckpt(c, SHARD0, seq[3]);
    assert_int_equal(get_ckpt(c, SHARD0), seq[3]);
    ckpt(c, SHARD0, seq[2]);
    assert_int_equal(get_ckpt(c, SHARD0), seq[2]);

    /* read-only: syncing the data fails, so nothing is written */
    tu_opts ro = {.flags = SL_OPEN_READONLY};
    sl_stream *r = tu_open(root, NAME, &ro);
    sl_consumer *rc;
    assert_int_equal(sl_consumer_open(&rc, r, "io"), 0);
    uint64_t newer = tu_put(p, "k", 4);
    sl__os.fdatasync = fail_fdatasync;
    assert_int_equal(sl_consumer_checkpoint(rc, SHARD0, newer), SL_EIO);
    assert_non_null(strstr(sl_errmsg(rc), ".seg"));
    sl__os_reset();
    assert_int_equal(get_ckpt(rc, SHARD0), seq[2]);
    ckpt(rc, SHARD0, newer);
    assert_int_equal(get_ckpt(c, SHARD0), newer);

    /* registration: a failed sync leaves no consumer and no leftovers */
    sl__os.fdatasync = fail_fdatasync;
    sl__os.fsync = fail_fdatasync;
    assert_int_equal(sl_consumer_register(s, "never", SL_CONSUMER_SHARED), SL_EIO);
    sl__os_reset();
    sl_consumer *nc;
    assert_int_equal(sl_consumer_open(&nc, s, "never"), SL_ENOTFOUND);
    char *cd = tu_path("%s/%s/consumers", root, NAME);
    assert_int_equal(tu_count_files(cd, NULL), 2);     /* ~LOCK and io */
    free(cd);

    assert_int_equal(sl_consumer_close(rc), 0);
    assert_int_equal(sl_stream_close(r), 0);
    assert_int_equal(sl_consumer_close(c), 0);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

/* ---- trimmed checkpoints ------------------------------------------------------------ */

/* Retention does not exist yet; removing the oldest segment file of a
** closed stream is what it will do.  The shard loader takes the list of
** files as it finds it, so the stream opens with the rest. */
static void trimmed_checkpoint(void **state)
{
    const char *root = *state;
    sl_stream *s = tu_create(root, NAME, NULL);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    uint64_t seqs[200];
    for (int i = 0; i < 200; i++) seqs[i] = put_sized(p, "k", i, 1000, NULL);
    assert_true(tu_nsegs(root, NAME, 0) >= 3);
    assert_int_equal(sl_consumer_register(s, "late", SL_CONSUMER_SHARED), 0);
    sl_consumer *c;
    assert_int_equal(sl_consumer_open(&c, s, "late"), 0);
    ckpt(c, SHARD0, seqs[5]);
    assert_int_equal(sl_consumer_close(c), 0);
    sl_producer_close(p);
    /* the oldest segment deleted, as retention or the size cap does it */
    uint64_t freed;
    bool did;
    assert_int_equal(sl__shard_drop_oldest(s->shards[0], INT64_MAX, &freed, &did), 0);
    assert_true(did);
    char *seg1 = tu_seg_path(root, NAME, 0, 1);
    assert_int_equal(access(seg1, F_OK), -1);
    free(seg1);
    assert_int_equal(sl_stream_close(s), 0);
    s = tu_open(root, NAME, NULL);
    tu_recs all = {0};
    tu_read_shard(s, SHARD0, &all);
    assert_true(all.n > 0 && all.n < 200);
    uint64_t oldest = all.v[0].seq;
    assert_true(oldest > seqs[5]);
    tu_recs_free(&all);

    assert_int_equal(sl_consumer_open(&c, s, "late"), 0);
    uint64_t seq = 0;
    assert_int_equal(sl_consumer_get_checkpoint(c, SHARD0, &seq), SL_ETRIMMED);
    assert_int_equal(seq, seqs[5]);
    assert_non_null(strstr(sl_errmsg(c), "no longer available"));
    sl_iter *it = (sl_iter *)1;
    assert_int_equal(sl_consumer_iter_open(&it, c, SHARD0, SL_ITER_TRIM_HORIZON, 0), SL_ETRIMMED);
    assert_null(it);
    /* the record itself cannot be checkpointed any more; a later one can */
    assert_int_equal(sl_consumer_checkpoint(c, SHARD0, seqs[5]), SL_ETRIMMED);
    ckpt(c, SHARD0, oldest);
    assert_int_equal(get_ckpt(c, SHARD0), oldest);
    assert_int_equal(sl_consumer_iter_open(&it, c, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    sl_record rec[1];
    sl_read_result res;
    assert_int_equal(sl_iter_read(it, rec, 1, &res), 0);
    assert_true(rec[0].sequence > oldest);
    sl_iter_close(it);
    assert_int_equal(sl_consumer_close(c), 0);
    assert_int_equal(sl_stream_close(s), 0);
}

int main(void)
{
    uint64_t seed = (uint64_t)getpid() * 2654435761u;
    const char *env = getenv("SL_CONSUMER_SEED");
    if (env) seed = strtoull(env, NULL, 0);
    rng_state ^= seed;
    if (!rng_state) rng_state = 1;
    fprintf(stderr, "consumer: SL_CONSUMER_SEED=%" PRIu64 " reproduces this run\n", seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(register_list_open_deregister, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(name_and_type_rules, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(limit_and_leftovers, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(checkpoint_round_trip, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(checkpoint_threads, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(iterator_resumes_and_counts, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(damaged_slots, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(crash_while_checkpointing, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(readonly_handle, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(io_failures, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(trimmed_checkpoint, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests_name("consumer", tests, NULL, NULL);
}
