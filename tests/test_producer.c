/*
** test_producer.c -- PutRecord and PutRecords: results, every validation
** rule of KINESIS.md (partition key, record size, explicit hash key, batch
** count and size), per-entry failure, ordering within a batch, read-only.
*/
#include "testutil.h"

#define NAME "prod"

typedef struct fx {
    sl_stream *s;
    sl_producer *p;
} fx;

static void fx_open(fx *f, const char *root, uint32_t shards, uint32_t max_kib)
{
    tu_opts o = {.shards = shards, .max_record_kib = max_kib, .segment_bytes = 32u << 20};
    f->s = tu_create(root, NAME, &o);
    assert_int_equal(sl_producer_open(&f->p, f->s), 0);
}

static void fx_close(fx *f)
{
    sl_producer_close(f->p);
    assert_int_equal(sl_stream_close(f->s), 0);
}

static char *repeat(const char *unit, int n)
{
    size_t u = strlen(unit);
    char *s = malloc(u * (size_t)n + 1);
    assert_non_null(s);
    for (int i = 0; i < n; i++) memcpy(s + u * (size_t)i, unit, u);
    s[u * (size_t)n] = '\0';
    return s;
}

static void put_result_fields(void **state)
{
    fx f;
    fx_open(&f, *state, 4, 0);
    sl_put_entry e = {"session-1", "hello", 5, NULL};
    sl_put_result r, r2;
    assert_int_equal(sl_producer_put(f.p, &e, &r), 0);
    assert_int_equal(r.error, 0);
    assert_string_equal(r.error_message, "");
    assert_true(r.sequence > 0);
    char want[SL_SHARD_ID_LEN + 1];
    snprintf(want, sizeof want, "shardId-%012u", r.shard_index);
    assert_string_equal(r.shard_id, want);
    /* the same key lands on the same shard, later */
    assert_int_equal(sl_producer_put(f.p, &e, &r2), 0);
    assert_string_equal(r2.shard_id, r.shard_id);
    assert_true(r2.sequence > r.sequence);
    /* res may be NULL; empty data is allowed */
    sl_put_entry empty = {"k", NULL, 0, NULL};
    assert_int_equal(sl_producer_put(f.p, &empty, NULL), 0);
    tu_recs all = {0};
    tu_read_all(f.s, &all);
    assert_int_equal(all.n, 3);
    int empties = 0;
    for (size_t i = 0; i < all.n; i++) empties += all.v[i].dlen == 0;
    assert_int_equal(empties, 1);
    tu_recs_free(&all);
    fx_close(&f);
}

static void partition_key_rules(void **state)
{
    fx f;
    fx_open(&f, *state, 2, 0);
    char *k256 = repeat("a", 256), *k257 = repeat("a", 257);
    char *smile128 = repeat("\xF0\x9F\x99\x82", 128), *smile129 = repeat("\xF0\x9F\x99\x82", 129);
    char *e200 = repeat("\xC3\xA9", 200);
    struct {
        const char *key;
        int rc;
        const char *msg;
    } cases[] = {
        {k256, 0, NULL},
        {k257, SL_EVALIDATION, "256"},
        {smile128, 0, NULL},          /* 256 UTF-16 units */
        {smile129, SL_EVALIDATION, "UTF-16"},
        {e200, 0, NULL},
        {"", SL_EVALIDATION, "partitionKey"},
        {NULL, SL_EVALIDATION, "partitionKey"},
        {"\x80", SL_EVALIDATION, "UTF-8"},
        {"a\xC0\x80", SL_EVALIDATION, "UTF-8"},      /* overlong NUL */
        {"\xED\xA0\x80", SL_EVALIDATION, "UTF-8"},   /* a surrogate */
        {"\xF5\x80\x80\x80", SL_EVALIDATION, "UTF-8"},
        {"\xE2\x82", SL_EVALIDATION, "UTF-8"},       /* truncated */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sl_put_entry e = {cases[i].key, "d", 1, NULL};
        sl_put_result r;
        int rc = sl_producer_put(f.p, &e, &r);
        assert_int_equal(rc, cases[i].rc);
        assert_int_equal(r.error, cases[i].rc);
        if (cases[i].msg) {
            if (!strstr(sl_errmsg(f.p), cases[i].msg))
                fail_msg("case %zu: message '%s' lacks '%s'", i, sl_errmsg(f.p), cases[i].msg);
        }
    }
    free(k256);
    free(k257);
    free(smile128);
    free(smile129);
    free(e200);
    fx_close(&f);
}

static void record_size_rules(void **state)
{
    fx f;
    fx_open(&f, *state, 1, 0);
    size_t max = 1u << 20;
    char *d = calloc(1, 2u << 20);
    assert_non_null(d);
    /* data + key counts: "kk" + (1 MiB - 2) fits exactly */
    assert_int_equal(sl_put(f.p, "kk", d, max - 2, NULL), 0);
    assert_int_equal(sl_put(f.p, "kk", d, max - 1, NULL), SL_EVALIDATION);
    assert_non_null(strstr(sl_errmsg(f.p), "1048576"));
    assert_non_null(strstr(sl_errmsg(f.p), "partition key"));
    /* data NULL with a length */
    sl_put_entry bad = {"k", NULL, 3, NULL};
    assert_int_equal(sl_producer_put(f.p, &bad, NULL), SL_EINVAL);
    assert_int_equal(sl_producer_put(f.p, NULL, NULL), SL_EINVAL);
    assert_int_equal(sl_producer_put(NULL, &bad, NULL), SL_EINVAL);
    fx_close(&f);
    /* a stream raised to 2 MiB records takes them */
    char *root2 = tu_path("%s/big", (char *)*state);
    fx_open(&f, root2, 1, 2048);
    assert_int_equal(sl_put(f.p, "k", d, (2u << 20) - 1, NULL), 0);
    assert_int_equal(sl_put(f.p, "k", d, 2u << 20, NULL), SL_EVALIDATION);
    assert_non_null(strstr(sl_errmsg(f.p), "2097152"));
    tu_recs all = {0};
    tu_read_all(f.s, &all);
    assert_int_equal(all.n, 1);
    assert_int_equal(all.v[0].dlen, (2u << 20) - 1);
    tu_recs_free(&all);
    fx_close(&f);
    free(root2);
    free(d);
}

static void explicit_hash_key_rules(void **state)
{
    fx f;
    fx_open(&f, *state, 4, 0);
    struct {
        const char *ehk;
        int rc;
        const char *shard;
    } cases[] = {
        {"0", 0, "shardId-000000000000"},
        {"85070591730234615865843651857942052863", 0, "shardId-000000000000"},
        {"85070591730234615865843651857942052864", 0, "shardId-000000000001"},
        {"340282366920938463463374607431768211455", 0, "shardId-000000000003"},
        {"340282366920938463463374607431768211456", SL_EINVAL, NULL},
        {"0123", SL_EVALIDATION, NULL},
        {"1e5", SL_EVALIDATION, NULL},
        {" 5", SL_EVALIDATION, NULL},
        {"-1", SL_EVALIDATION, NULL},
        {"", SL_EVALIDATION, NULL},
        {"1234567890123456789012345678901234567890", SL_EVALIDATION, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        /* the key hashes elsewhere: the explicit hash key must win */
        sl_put_entry e = {"any-key", "d", 1, cases[i].ehk};
        sl_put_result r;
        assert_int_equal(sl_producer_put(f.p, &e, &r), cases[i].rc);
        if (cases[i].shard) assert_string_equal(r.shard_id, cases[i].shard);
        else assert_non_null(strstr(sl_errmsg(f.p), cases[i].rc == SL_EINVAL ? "range" : "pattern"));
    }
    fx_close(&f);
}

static void batch_request_rules(void **state)
{
    fx f;
    fx_open(&f, *state, 2, 0);
    static sl_put_entry e[501];
    static sl_put_result r[501];
    for (int i = 0; i < 501; i++) e[i] = (sl_put_entry){"k", "d", 1, NULL};
    size_t failed = 99;
    assert_int_equal(sl_producer_put_batch(f.p, e, 0, r, &failed), SL_EVALIDATION);
    assert_int_equal(failed, 0);
    assert_int_equal(sl_producer_put_batch(f.p, e, 501, r, &failed), SL_EVALIDATION);
    assert_non_null(strstr(sl_errmsg(f.p), "500"));
    assert_int_equal(sl_producer_put_batch(f.p, NULL, 2, r, &failed), SL_EINVAL);
    assert_int_equal(sl_producer_put_batch(f.p, e, 2, NULL, &failed), SL_EINVAL);
    assert_int_equal(sl_producer_put_batch(f.p, e, 500, r, &failed), 0);
    assert_int_equal(failed, 0);
    /* 11 records of 1 MiB - 1 are each fine but 11 MiB in all: refused
    ** whole, nothing written */
    char *d = calloc(1, 1u << 20);
    for (int i = 0; i < 11; i++) e[i] = (sl_put_entry){"k", d, (1u << 20) - 1, NULL};
    assert_int_equal(sl_producer_put_batch(f.p, e, 11, r, &failed), SL_EVALIDATION);
    assert_non_null(strstr(sl_errmsg(f.p), "10485760"));
    assert_int_equal(sl_producer_put_batch(f.p, e, 10, r, &failed), 0);
    assert_int_equal(failed, 0);
    tu_recs all = {0};
    tu_read_all(f.s, &all);
    assert_int_equal(all.n, 510);
    tu_recs_free(&all);
    free(d);
    fx_close(&f);
}

/* One bad entry fails alone; results are in request order; entries of one
** shard keep request order. */
static void batch_partial_failure(void **state)
{
    fx f;
    fx_open(&f, *state, 4, 0);
    char *k257 = repeat("x", 257);
    char *big = calloc(1, 1u << 20);
    enum { N = 40 };
    sl_put_entry e[N];
    sl_put_result r[N];
    char keys[N][16], data[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "key-%d", i % 7);
        snprintf(data[i], sizeof data[i], "%d", i);
        e[i] = (sl_put_entry){keys[i], data[i], strlen(data[i]), NULL};
    }
    e[3].partition_key = k257;                       /* too long */
    e[10].partition_key = "";                        /* empty */
    e[17] = (sl_put_entry){"k", big, 1u << 20, NULL}; /* too big with its key */
    e[25].explicit_hash_key = "01";                  /* bad pattern */
    e[33].explicit_hash_key = "340282366920938463463374607431768211456";
    size_t failed = 0;
    assert_int_equal(sl_producer_put_batch(f.p, e, N, r, &failed), 0);
    assert_int_equal(failed, 5);
    int bad[] = {3, 10, 17, 25, 33};
    int codes[] = {SL_EVALIDATION, SL_EVALIDATION, SL_EVALIDATION, SL_EVALIDATION, SL_EINVAL};
    const char *words[] = {"256", "length", "1048576", "pattern", "range"};
    for (int b = 0; b < 5; b++) {
        assert_int_equal(r[bad[b]].error, codes[b]);
        assert_int_equal(r[bad[b]].sequence, 0);
        if (!strstr(r[bad[b]].error_message, words[b]))
            fail_msg("entry %d: '%s' lacks '%s'", bad[b], r[bad[b]].error_message, words[b]);
    }
    /* the other 35 landed; in each shard in request order */
    tu_recs all = {0};
    tu_read_all(f.s, &all);
    assert_int_equal(all.n, N - 5);
    for (int i = 0; i < N; i++) {
        bool isbad = i == 3 || i == 10 || i == 17 || i == 25 || i == 33;
        if (isbad) continue;
        assert_int_equal(r[i].error, 0);
        for (int j = 0; j < i; j++) {
            bool jbad = j == 3 || j == 10 || j == 17 || j == 25 || j == 33;
            if (!jbad && !strcmp(r[i].shard_id, r[j].shard_id))
                assert_true(r[i].sequence > r[j].sequence);
        }
        bool found = false;
        for (size_t k = 0; k < all.n; k++)
            if (all.v[k].seq == r[i].sequence) {
                assert_string_equal(all.v[k].data, data[i]);
                assert_string_equal(all.v[k].key, keys[i]);
                found = true;
            }
        assert_true(found);
    }
    tu_recs_free(&all);
    free(big);
    free(k257);
    fx_close(&f);
}

static void read_only_cannot_write(void **state)
{
    fx f;
    fx_open(&f, *state, 1, 0);
    tu_put(f.p, "k", 1);
    tu_opts o = {.flags = SL_OPEN_READONLY};
    sl_stream *ro = tu_open(*state, NAME, &o);
    sl_producer *p = (sl_producer *)&o;
    assert_int_equal(sl_producer_open(&p, ro), SL_EREADONLY);
    assert_null(p);
    assert_int_equal(sl_stream_sync(ro), SL_EREADONLY);
    tu_recs all = {0};
    tu_read_all(ro, &all);
    assert_int_equal(all.n, 1);
    tu_recs_free(&all);
    assert_int_equal(sl_stream_close(ro), 0);
    fx_close(&f);
}

/* A failed sync poisons the stream: later writes fail loudly instead of
** pretending. */
static int msync_eio(void *a, size_t l, int fl)
{
    (void)a;
    (void)l;
    (void)fl;
    errno = EIO;
    return -1;
}

static int fdatasync_eio(int fd)
{
    (void)fd;
    errno = EIO;
    return -1;
}

static void failed_sync_poisons(void **state)
{
    tu_opts o = {.durability = SL_DURABILITY_ALWAYS};
    sl_stream *s = tu_create(*state, NAME, &o);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    tu_put(p, "k", 1);
    sl__os.msync = msync_eio;           /* the segments' sync */
    sl__os.fdatasync = fdatasync_eio;   /* the journal's */
    assert_int_equal(sl_put(p, "k", "x", 1, NULL), SL_EIO);
    assert_non_null(strstr(sl_errmsg(p), "Input/output error"));
    sl__os_reset();
    /* even with the disk back, the handle stays failed */
    assert_int_equal(sl_put(p, "k", "x", 1, NULL), SL_EIO);
    assert_non_null(strstr(sl_errmsg(p), "failed earlier"));
    sl_put_entry e[2] = {{"k", "a", 1, NULL}, {"k", "b", 1, NULL}};
    sl_put_result r[2];
    assert_int_equal(sl_producer_put_batch(p, e, 2, r, NULL), SL_EIO);
    sl_producer_close(p);
    sl_stream_close(s);
    /* reopening recovers: the acknowledged record is there */
    s = tu_open(*state, NAME, NULL);
    tu_recs all = {0};
    tu_read_all(s, &all);
    assert_true(all.n >= 1);
    assert_string_equal(all.v[0].data, "k:1");
    tu_recs_free(&all);
    assert_int_equal(sl_stream_close(s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(put_result_fields, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(partition_key_rules, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(record_size_rules, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(explicit_hash_key_rules, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(batch_request_rules, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(batch_partial_failure, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(read_only_cannot_write, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(failed_sync_poisons, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests_name("producer", tests, NULL, NULL);
}
