/*
** test_reshard.c -- SplitShard, MergeShards and UpdateShardCount: the
** Kinesis rules for ranges, ids, parents and sequence ranges; reads at the
** end of a closed shard; even coverage after scaling; per-key order and
** no loss or duplicate with producers racing random reshards; failures and
** SIGKILL during a reshard.
*/
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>

#define NAME "rs"
#define HALF "170141183460469231731687303715884105728" /* 2^127 */
#define MAXK "340282366920938463463374607431768211455" /* 2^128-1 */

static sl_shard_info *find(sl_shard_list *l, const char *id)
{
    for (size_t i = 0; i < l->count; i++)
        if (!strcmp(l->shards[i].shard_id, id)) return &l->shards[i];
    fail_msg("no shard %s", id);
    return NULL;
}

static uint64_t put_hk(sl_producer *p, const char *hk)
{
    sl_put_entry e = {"k", "v", 1, hk};
    sl_put_result r;
    assert_int_equal(sl_producer_put(p, &e, &r), 0);
    return r.sequence;
}

static void split_and_merge_follow_kinesis(void **state)
{
    const char *root = *state;
    sl_stream *s = tu_create(root, NAME, NULL);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    uint64_t before = put_hk(p, "5");
    /* bad requests */
    assert_int_equal(sl_stream_split_shard(s, "shardId-000000000009", HALF), SL_ENOTFOUND);
    assert_int_equal(sl_stream_split_shard(s, "shardId-000000000000", "0"), SL_EINVAL);
    assert_int_equal(sl_stream_split_shard(s, "shardId-000000000000", "0123"), SL_EVALIDATION);
    assert_int_equal(sl_stream_split_shard(s, "shardId-000000000000", NULL), SL_EVALIDATION);
    assert_int_equal(sl_stream_split_shard(s, "shardId-000000000000",
                                           "340282366920938463463374607431768211456"),
                     SL_EINVAL);
    /* split at 2^127 */
    assert_int_equal(sl_stream_split_shard(s, "shardId-000000000000", HALF), 0);
    sl_shard_list *l;
    assert_int_equal(sl_stream_list_shards(&l, s), 0);
    assert_int_equal(l->count, 3);
    sl_shard_info *p0 = find(l, "shardId-000000000000"), *c1 = find(l, "shardId-000000000001"),
                  *c2 = find(l, "shardId-000000000002");
    assert_int_equal(p0->open, 0);
    assert_true(p0->ending_sequence >= before);
    assert_string_equal(c1->starting_hash_key, "0");
    assert_string_equal(c1->ending_hash_key, "170141183460469231731687303715884105727");
    assert_string_equal(c2->starting_hash_key, HALF);
    assert_string_equal(c2->ending_hash_key, MAXK);
    assert_string_equal(c1->parent_shard_id, "shardId-000000000000");
    assert_string_equal(c2->parent_shard_id, "shardId-000000000000");
    assert_string_equal(c1->adjacent_parent_shard_id, "");
    assert_true(c1->open && c2->open);
    assert_true(c1->starting_sequence > p0->ending_sequence);
    sl_shard_list_free(l);
    /* puts go to the children by hash key */
    sl_put_entry e = {"k", "v", 1, "5"};
    sl_put_result r;
    assert_int_equal(sl_producer_put(p, &e, &r), 0);
    assert_string_equal(r.shard_id, "shardId-000000000001");
    e.explicit_hash_key = HALF;
    assert_int_equal(sl_producer_put(p, &e, &r), 0);
    assert_string_equal(r.shard_id, "shardId-000000000002");
    assert_true(r.sequence > before);
    /* a closed shard cannot be split or merged */
    assert_int_equal(sl_stream_split_shard(s, "shardId-000000000000", "7"), SL_EINVAL);
    assert_int_equal(sl_stream_merge_shards(s, "shardId-000000000000", "shardId-000000000001"),
                     SL_EINVAL);
    assert_int_equal(sl_stream_merge_shards(s, "shardId-000000000001", "shardId-000000000001"),
                     SL_EINVAL);
    /* merge, in the "wrong" order: the child names shard 2 parent, 1 adjacent */
    assert_int_equal(sl_stream_merge_shards(s, "shardId-000000000002", "shardId-000000000001"),
                     0);
    assert_int_equal(sl_stream_list_shards(&l, s), 0);
    assert_int_equal(l->count, 4);
    sl_shard_info *m = find(l, "shardId-000000000003");
    assert_string_equal(m->starting_hash_key, "0");
    assert_string_equal(m->ending_hash_key, MAXK);
    assert_string_equal(m->parent_shard_id, "shardId-000000000002");
    assert_string_equal(m->adjacent_parent_shard_id, "shardId-000000000001");
    assert_true(m->starting_sequence > find(l, "shardId-000000000002")->ending_sequence);
    sl_shard_list_free(l);
    /* the map survives a reopen */
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    s = tu_open(root, NAME, NULL);
    assert_int_equal(sl_stream_list_shards(&l, s), 0);
    assert_int_equal(l->count, 4);
    assert_int_equal(find(l, "shardId-000000000003")->open, 1);
    assert_int_equal(find(l, "shardId-000000000001")->open, 0);
    sl_shard_list_free(l);
    assert_int_equal(sl_stream_close(s), 0);

    /* on-demand streams are not resharded by hand */
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = "od";
    c.stream_mode = SL_STREAM_MODE_ON_DEMAND;
    c.durability = SL_DURABILITY_NONE;
    assert_int_equal(sl_stream_create(&s, root, &c, NULL), 0);
    assert_int_equal(sl_stream_split_shard(s, "shardId-000000000000", HALF), SL_EVALIDATION);
    assert_int_equal(sl_stream_update_shard_count(s, 8), SL_EVALIDATION);
    assert_int_equal(sl_stream_close(s), 0);
}

static void reading_to_the_end_of_a_closed_shard(void **state)
{
    const char *root = *state;
    sl_stream *s = tu_create(root, NAME, NULL);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    for (int i = 0; i < 5; i++) put_hk(p, "9");
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, s, "shardId-000000000000", SL_ITER_TRIM_HORIZON, 0), 0);
    sl_record rec[10];
    sl_read_result res;
    assert_int_equal(sl_iter_read(it, rec, 3, &res), 0);
    assert_int_equal(res.count, 3);
    assert_int_equal(res.shard_end, 0);
    assert_int_equal(sl_stream_split_shard(s, "shardId-000000000000", HALF), 0);
    put_hk(p, "9");                     /* to a child */
    assert_int_equal(sl_iter_read(it, rec, 10, &res), 0);
    assert_int_equal(res.count, 2);     /* the rest of the parent ... */
    assert_int_equal(res.shard_end, 0);
    assert_int_equal(sl_iter_read(it, rec, 10, &res), 0);
    assert_int_equal(res.count, 0);     /* ... then its end, and the children */
    assert_int_equal(res.shard_end, 1);
    assert_int_equal(res.child_count, 2);
    assert_string_equal(res.child_shard_ids[0], "shardId-000000000001");
    assert_string_equal(res.child_shard_ids[1], "shardId-000000000002");
    assert_int_equal(sl_iter_read(it, rec, 10, &res), 0);
    assert_int_equal(res.shard_end, 1);
    sl_iter_close(it);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

/* A subscription to a parent ends at its end, naming the children. */
typedef struct ends {
    size_t records;
    int end;
    size_t kids;
    char kid[2][SL_SHARD_ID_LEN + 1];
} ends;

static int on_sub(void *ctx, const sl_delivery *d)
{
    ends *e = ctx;
    e->records += d->count;
    if (d->end) {
        e->end = d->end;
        e->kids = d->child_count;
        for (size_t i = 0; i < d->child_count && i < 2; i++)
            snprintf(e->kid[i], sizeof e->kid[i], "%s", d->child_shard_ids[i]);
    }
    return 0;
}

static void subscription_ends_with_the_children(void **state)
{
    const char *root = *state;
    sl_stream *s = tu_create(root, NAME, NULL);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    for (int i = 0; i < 7; i++) put_hk(p, "3");
    assert_int_equal(sl_consumer_register(s, "c", SL_CONSUMER_DEDICATED), 0);
    sl_consumer *c;
    assert_int_equal(sl_consumer_open(&c, s, "c"), 0);
    sl_sched *sc;
    assert_int_equal(sl_sched_new(&sc, s), 0);
    ends e = {0};
    sl_sub *sub;
    assert_int_equal(sl_subscribe(&sub, sc, c, "shardId-000000000000", SL_ITER_TRIM_HORIZON, 0,
                                  100, on_sub, &e), 0);
    while (sl_sched_dispatch(sc, 0) > 0)
        ;
    assert_int_equal(e.records, 7);
    assert_int_equal(e.end, 0);
    assert_int_equal(sl_stream_split_shard(s, "shardId-000000000000", HALF), 0);
    while (sl_sched_dispatch(sc, 0) > 0)
        ;
    assert_int_equal(e.end, SL_SUB_END_SHARD_END);
    assert_int_equal(e.kids, 2);
    assert_string_equal(e.kid[0], "shardId-000000000001");
    assert_string_equal(e.kid[1], "shardId-000000000002");
    /* and the children can be subscribed to, counters and all */
    sl_sub *sub2;
    assert_int_equal(sl_subscribe(&sub2, sc, c, "shardId-000000000001", SL_ITER_TRIM_HORIZON, 0,
                                  100, on_sub, &e), 0);
    put_hk(p, "3");
    while (sl_sched_dispatch(sc, 0) > 0)
        ;
    assert_int_equal(e.records, 8);
    sl_unsubscribe(sub);
    sl_unsubscribe(sub2);
    sl_sched_free(sc);
    assert_int_equal(sl_consumer_close(c), 0);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

/* ON_DEMAND: a shard over its write capacity for the window (here 10
** whole seconds) splits at the next maintenance, not a second earlier. */
static void on_demand_splits_a_hot_shard_on_time(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, 1700000000000LL), 0);
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = "od";
    c.stream_mode = SL_STREAM_MODE_ON_DEMAND;
    c.shard_count = 2;
    c.durability = SL_DURABILITY_NONE;
    sl_limits lim = SL_LIMITS_INIT;
    lim.on_demand_window_s = 10;
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.clock = sl_vclock_clock(vc);
    o.limits = &lim;
    sl_stream *s;
    assert_int_equal(sl_stream_create(&s, root, &c, &o), 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    sl_maint_stats st;
    for (int sec = 0; sec < 10; sec++) {
        /* 1,200 records a second into shard 0 (over 1,000), 10 into shard 1 */
        for (int i = 0; i < 1200; i++) put_hk(p, "7");
        for (int i = 0; i < 10; i++) put_hk(p, MAXK);
        sl_vclock_advance(vc, 999);
        assert_int_equal(sl_stream_maintain(s, -1, NULL, NULL, &st), 0);
        assert_int_equal(st.shards_split, 0);   /* the second is not whole yet */
        sl_vclock_advance(vc, 1);
        if (sec < 9) {
            assert_int_equal(sl_stream_maintain(s, -1, NULL, NULL, &st), 0);
            assert_int_equal(st.shards_split, 0);
            sl_shard_counters sc;
            assert_int_equal(sl_shard_counters_get(s, "shardId-000000000000", &sc), 0);
            assert_int_equal(sc.hot_seconds, sec + 1);
            assert_true(sc.put_throttled > 0);  /* ACCOUNT: counted, not refused */
        }
    }
    assert_int_equal(sl_stream_maintain(s, -1, NULL, NULL, &st), 0);
    assert_int_equal(st.shards_split, 1);
    sl_shard_list *l;
    assert_int_equal(sl_stream_list_shards(&l, s), 0);
    assert_int_equal(l->count, 4);
    assert_int_equal(l->shards[0].open, 0);
    assert_int_equal(l->shards[1].open, 1);     /* the cool one stays */
    assert_string_equal(l->shards[2].parent_shard_id, "shardId-000000000000");
    sl_shard_list_free(l);
    /* a cool second breaks a streak */
    for (int i = 0; i < 1200; i++) put_hk(p, MAXK);
    sl_vclock_advance(vc, 1000);
    sl_vclock_advance(vc, 1000);                /* idle */
    assert_int_equal(sl_stream_maintain(s, -1, NULL, NULL, &st), 0);
    sl_shard_counters sc;
    assert_int_equal(sl_shard_counters_get(s, "shardId-000000000001", &sc), 0);
    assert_int_equal(sc.hot_seconds, 0);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* The open shards tile the key space in the even ranges of n shards. */
static void expect_even(sl_stream *s, uint32_t n)
{
    sl_shard_list *l;
    assert_int_equal(sl_stream_list_shards(&l, s), 0);
    uint32_t open = 0;
    for (uint32_t i = 0; i < n; i++) {
        sl_u128 b, e;
        sl__hashkey_split(&b, &e, i, n);
        char bs[40], es[40];
        sl__u128_format(bs, b);
        sl__u128_format(es, e);
        bool found = false;
        for (size_t k = 0; k < l->count && !found; k++)
            found = l->shards[k].open && !strcmp(l->shards[k].starting_hash_key, bs) &&
                    !strcmp(l->shards[k].ending_hash_key, es);
        if (!found) fail_msg("no open shard [%s, %s] of %u", bs, es, n);
    }
    for (size_t k = 0; k < l->count; k++) open += (uint32_t)l->shards[k].open;
    assert_int_equal(open, n);
    sl_shard_list_free(l);
}

static void update_shard_count_scales_evenly(void **state)
{
    const char *root = *state;
    tu_opts o = {.shards = 4};
    sl_stream *s = tu_create(root, NAME, &o);
    assert_int_equal(sl_stream_update_shard_count(s, 8), 0);
    expect_even(s, 8);
    /* Kinesis: at least half the current count */
    assert_int_equal(sl_stream_update_shard_count(s, 3), SL_EINVAL);
    assert_int_equal(sl_stream_update_shard_count(s, 17), SL_EINVAL);
    assert_int_equal(sl_stream_update_shard_count(s, 4), 0);
    expect_even(s, 4);
    assert_int_equal(sl_stream_update_shard_count(s, 3), 0);
    expect_even(s, 3);
    assert_int_equal(sl_stream_update_shard_count(s, 5), 0);
    expect_even(s, 5);
    assert_int_equal(sl_stream_close(s), 0);
    s = tu_open(root, NAME, NULL);
    expect_even(s, 5);
    assert_int_equal(sl_stream_close(s), 0);
}

/* ---- producers racing reshards ------------------------------------------------- */

#define THREADS 4
#define KEYS 16
#define PER_THREAD 3000

typedef struct racer {
    sl_stream *s;
    int t;
    uint64_t *seqs;                     /* by put number */
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    sl_producer *p;
    if (sl_producer_open(&p, r->s) != 0) abort();
    for (int i = 0; i < PER_THREAD;) {
        if (i % 3 == 0 && PER_THREAD - i >= 20) {   /* batches, too */
            sl_put_entry e[20];
            sl_put_result res[20];
            char keys[20][32], data[20][32];
            for (int j = 0; j < 20; j++) {
                snprintf(keys[j], 32, "t%d-key%d", r->t, (i + j) % KEYS);
                snprintf(data[j], 32, "%d:%d", r->t, i + j);
                e[j] = (sl_put_entry){keys[j], data[j], strlen(data[j]), NULL};
            }
            size_t failed;
            int rc = sl_producer_put_batch(p, e, 20, res, &failed);
            if (rc || failed) {                 /* no cmocka asserts off the main thread */
                for (int j = 0; j < 20; j++)
                    if (res[j].error) fprintf(stderr, "entry %d: %s\n", j, res[j].error_message);
                fprintf(stderr, "put_batch: %d, %zu failed: %s\n", rc, failed, sl_errmsg(p));
                abort();
            }
            for (int j = 0; j < 20; j++) r->seqs[i + j] = res[j].sequence;
            i += 20;
        } else {
            char key[32], data[32];
            snprintf(key, sizeof key, "t%d-key%d", r->t, i % KEYS);
            snprintf(data, sizeof data, "%d:%d", r->t, i);
            if (sl_put(p, key, data, strlen(data), &r->seqs[i]) != 0) {
                fprintf(stderr, "put: %s\n", sl_errmsg(p));
                abort();
            }
            i++;
        }
    }
    sl_producer_close(p);
    return NULL;
}

static void per_key_order_across_random_reshards(void **state)
{
    const char *root = *state;
    for (int round = 0; round < 3; round++) {
        char name[16];
        snprintf(name, sizeof name, "race%d", round);
        tu_opts o = {.shards = 2};
        sl_stream *s = tu_create(root, name, &o);
        racer r[THREADS];
        pthread_t th[THREADS];
        for (int t = 0; t < THREADS; t++) {
            r[t] = (racer){s, t, calloc(PER_THREAD, sizeof(uint64_t))};
            assert_int_equal(pthread_create(&th[t], NULL, race, &r[t]), 0);
        }
        /* random reshards while they write (no assert before the joins:
        ** the threads use this frame) */
        uint64_t x = 0x1234567ull + (uint64_t)round;
        int bad = 0;
        char why[512] = "";
        for (int k = 0; k < 12 && !bad; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            sl_shard_list *l;
            if (sl_stream_list_shards(&l, s) != 0) {
                bad = 1;
                break;
            }
            size_t open = 0;
            for (size_t i = 0; i < l->count; i++) open += (size_t)l->shards[i].open;
            int op = (int)(x % 3), rc = 0;
            if (op == 0 && open > 1) {
                rc = sl_stream_update_shard_count(s, (uint32_t)(open + 1) / 2);
            } else if (op == 1 && open < 12) {
                rc = sl_stream_update_shard_count(s, (uint32_t)open + 1);
            } else {
                /* split the widest open shard in its middle */
                sl_u128 best = {0, 0}, at = {0, 0};
                const char *id = NULL;
                for (size_t i = 0; i < l->count; i++) {
                    if (!l->shards[i].open) continue;
                    sl_u128 a, b;
                    sl__u128_parse(&a, l->shards[i].starting_hash_key);
                    sl__u128_parse(&b, l->shards[i].ending_hash_key);
                    sl_u128 w = {b.hi - a.hi - (b.lo < a.lo), b.lo - a.lo};
                    if (!id || sl__u128_cmp(w, best) > 0) {
                        best = w;
                        id = l->shards[i].shard_id;
                        sl_u128 h = {w.hi >> 1, (w.lo >> 1) | (w.hi << 63)};
                        at = (sl_u128){a.hi + h.hi + (a.lo + h.lo < a.lo), a.lo + h.lo};
                        if (++at.lo == 0) at.hi++;
                    }
                }
                char mid[40];
                sl__u128_format(mid, at);
                rc = sl_stream_split_shard(s, id, mid);
            }
            if (rc) {
                bad = 1;
                snprintf(why, sizeof why, "op %d with %zu open: %s", op, open, sl_errmsg(s));
            }
            sl_shard_list_free(l);
        }
        for (int t = 0; t < THREADS; t++) assert_int_equal(pthread_join(th[t], NULL), 0);
        if (bad) fail_msg("round %d: a reshard failed: %s", round, why);
        /* read parents before children: shards in index order (a child's
        ** index is above its parents') */
        tu_recs all = {0};
        int shard_of[THREADS * PER_THREAD + 1];
        {
            sl_shard_list *l;
            assert_int_equal(sl_stream_list_shards(&l, s), 0);
            for (size_t i = 0; i < l->count; i++) {
                size_t before = all.n;
                tu_read_shard(s, l->shards[i].shard_id, &all);
                for (size_t k = before; k < all.n && k <= THREADS * PER_THREAD; k++)
                    shard_of[k] = (int)l->shards[i].index;
            }
            sl_shard_list_free(l);
        }
        assert_int_equal(all.corrupt, 0);
        assert_int_equal(all.n, THREADS * PER_THREAD);
        uint64_t last[THREADS][KEYS] = {{0}};
        char *seen = calloc(THREADS * PER_THREAD, 1);
        for (size_t i = 0; i < all.n; i++) {
            int t, n, k;
            assert_int_equal(sscanf(all.v[i].data, "%d:%d", &t, &n), 2);
            assert_int_equal(sscanf(all.v[i].key, "t%*d-key%d", &k), 1);
            assert_true(t >= 0 && t < THREADS && n >= 0 && n < PER_THREAD);
            assert_int_equal(seen[t * PER_THREAD + n], 0);   /* never twice */
            seen[t * PER_THREAD + n] = 1;
            assert_int_equal(all.v[i].seq, r[t].seqs[n]);      /* as acknowledged */
            if (all.v[i].seq <= last[t][k])                    /* per-key order */
            {
                size_t prev = i;
                while (prev-- > 0) {
                    int pt, pk;
                    sscanf(all.v[prev].data, "%d:%*d", &pt);
                    sscanf(all.v[prev].key, "t%*d-key%d", &pk);
                    if (pt == t && pk == k) break;
                }
                sl_shard_list *l;
                sl_stream_list_shards(&l, s);
                for (size_t q = 0; q < l->count; q++)
                    fprintf(stderr, "shard %u [%s, %s] parent %s adj %s seq %" PRIu64 "..%" PRIu64 " %s\n",
                            l->shards[q].index, l->shards[q].starting_hash_key, l->shards[q].ending_hash_key, l->shards[q].parent_shard_id,
                            l->shards[q].adjacent_parent_shard_id, l->shards[q].starting_sequence,
                            l->shards[q].ending_sequence, l->shards[q].open ? "open" : "closed");
                sl_shard_list_free(l);
                {
                    uint8_t hk[16];
                    char kb[32], hs[40];
                    snprintf(kb, sizeof kb, "t%d-key%d", t, k);
                    sl_hash_partition_key(hk, kb);
                    fprintf(stderr, "hash of %s: %s\n", kb, sl_hash_key_format(hs, hk));
                }
                fail_msg("round %d: t%d key%d: record %zu (put %d, shard %d) has seq %" PRIu64
                         " after %" PRIu64 " (%s, shard %d)", round, t, k, i, n, shard_of[i],
                         all.v[i].seq, last[t][k], all.v[prev].data, shard_of[prev]);
            }
            last[t][k] = all.v[i].seq;
        }
        free(seen);
        tu_recs_free(&all);
        for (int t = 0; t < THREADS; t++) free(r[t].seqs);
        assert_int_equal(sl_stream_close(s), 0);
    }
}

/* A lineage reader follows the stream live while producers write and
** reshards happen: each key's records come in order, every acknowledged
** record comes once. */
typedef struct live {
    sl_stream *s;
    _Atomic int producers_done;
    size_t got;
    int bad;                            /* 0, or what went wrong */
    char why[256];
} live;

static void *live_reader(void *arg)
{
    live *lv = arg;
    sl_lreader *lr;
    if (sl_lreader_open(&lr, lv->s, NULL, SL_ITER_TRIM_HORIZON, 0) != 0) {
        lv->bad = 1;
        return NULL;
    }
    static uint64_t last[THREADS][KEYS];
    static char seen[THREADS * PER_THREAD];
    memset(last, 0, sizeof last);
    memset(seen, 0, sizeof seen);
    sl_record rec[256];
    for (;;) {
        sl_read_result res;
        char shard[SL_SHARD_ID_LEN + 1];
        int rc = sl_lreader_read(lr, rec, 256, &res, shard);
        if (rc) {
            snprintf(lv->why, sizeof lv->why, "read: %s", sl_errmsg(lv->s));
            lv->bad = 1;
            break;
        }
        for (size_t i = 0; i < res.count; i++) {
            int t, n, k;
            char data[32] = {0}, key[32] = {0};
            memcpy(data, rec[i].data, rec[i].data_len < 31 ? rec[i].data_len : 31);
            memcpy(key, rec[i].partition_key, rec[i].key_len < 31 ? rec[i].key_len : 31);
            if (sscanf(data, "%d:%d", &t, &n) != 2 || sscanf(key, "t%*d-key%d", &k) != 1 ||
                t < 0 || t >= THREADS || n < 0 || n >= PER_THREAD) {
                lv->bad = 1;
                snprintf(lv->why, sizeof lv->why, "bad record in %s", shard);
                break;
            }
            if (seen[t * PER_THREAD + n]++ || rec[i].sequence <= last[t][k]) {
                lv->bad = 1;
                snprintf(lv->why, sizeof lv->why, "t%d key%d put %d in %s: %s", t, k, n, shard,
                         seen[t * PER_THREAD + n] > 1 ? "twice" : "out of order");
                break;
            }
            last[t][k] = rec[i].sequence;
            lv->got++;
        }
        if (lv->bad) break;
        if (res.count == 0) {
            if (atomic_load(&lv->producers_done) && lv->got == THREADS * PER_THREAD) break;
            sched_yield();
        }
    }
    sl_lreader_close(lr);
    return NULL;
}

static void lineage_reader_follows_reshards_live(void **state)
{
    const char *root = *state;
    tu_opts o = {.shards = 2};
    sl_stream *s = tu_create(root, "live", &o);
    live lv = {.s = s};
    pthread_t reader;
    assert_int_equal(pthread_create(&reader, NULL, live_reader, &lv), 0);
    racer r[THREADS];
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) {
        r[t] = (racer){s, t, calloc(PER_THREAD, sizeof(uint64_t))};
        assert_int_equal(pthread_create(&th[t], NULL, race, &r[t]), 0);
    }
    int bad = 0;
    for (int k = 0; k < 10 && !bad; k++) {
        uint32_t open = 0;
        sl_shard_list *l;
        if (sl_stream_list_shards(&l, s) != 0) break;
        for (size_t i = 0; i < l->count; i++) open += (uint32_t)l->shards[i].open;
        sl_shard_list_free(l);
        bad = sl_stream_update_shard_count(s, k % 2 ? (open + 1) / 2 : open + 1) != 0;
    }
    for (int t = 0; t < THREADS; t++) assert_int_equal(pthread_join(th[t], NULL), 0);
    atomic_store(&lv.producers_done, 1);
    assert_int_equal(pthread_join(reader, NULL), 0);
    assert_int_equal(bad, 0);
    if (lv.bad) fail_msg("lineage reader: %s", lv.why);
    assert_int_equal(lv.got, THREADS * PER_THREAD);
    for (int t = 0; t < THREADS; t++) free(r[t].seqs);
    assert_int_equal(sl_stream_close(s), 0);
}

/* With a consumer, a lineage reader resumes after each shard's checkpoint
** and skips shards checkpointed at their end. */
static void lineage_reader_resumes_from_checkpoints(void **state)
{
    const char *root = *state;
    sl_stream *s = tu_create(root, NAME, NULL);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    uint64_t a[4];
    for (int i = 0; i < 4; i++) a[i] = put_hk(p, "5");
    assert_int_equal(sl_stream_split_shard(s, "shardId-000000000000", HALF), 0);
    uint64_t b = put_hk(p, "5"), c2 = put_hk(p, HALF);
    assert_int_equal(sl_consumer_register(s, "app", SL_CONSUMER_SHARED), 0);
    sl_consumer *c;
    assert_int_equal(sl_consumer_open(&c, s, "app"), 0);
    assert_int_equal(sl_consumer_checkpoint(c, "shardId-000000000000", a[3]), 0);  /* its end */
    sl_lreader *lr;
    assert_int_equal(sl_lreader_open(&lr, s, c, SL_ITER_TRIM_HORIZON, 0), 0);
    sl_record rec[16];
    sl_read_result res;
    char shard[SL_SHARD_ID_LEN + 1];
    uint64_t got[8];
    size_t n = 0;
    for (int round = 0; round < 10; round++) {
        assert_int_equal(sl_lreader_read(lr, rec, 16, &res, shard), 0);
        for (size_t i = 0; i < res.count && n < 8; i++) got[n++] = rec[i].sequence;
    }
    assert_int_equal(n, 2);             /* the parent was done: only the children */
    assert_true((got[0] == b && got[1] == c2) || (got[0] == c2 && got[1] == b));
    sl_lreader_close(lr);
    assert_int_equal(sl_stream_close(s), SL_EINUSE);
    assert_int_equal(sl_consumer_close(c), 0);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

/* A read-only follower learns of a reshard made after it opened: the
** parent's end, then the children. */
static void follower_sees_a_reshard(void **state)
{
    const char *root = *state;
    sl_stream *w = tu_create(root, NAME, NULL);
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.flags = SL_OPEN_READONLY;
    sl_stream *f;
    assert_int_equal(sl_stream_open(&f, root, NAME, &o), 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, w), 0);
    for (int i = 0; i < 3; i++) put_hk(p, "11");
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, f, "shardId-000000000000", SL_ITER_TRIM_HORIZON, 0), 0);
    sl_record rec[8];
    sl_read_result res;
    assert_int_equal(sl_iter_read(it, rec, 8, &res), 0);
    assert_int_equal(res.count, 3);
    assert_int_equal(sl_stream_split_shard(w, "shardId-000000000000", HALF), 0);
    uint64_t child = put_hk(p, "11");
    /* a wait at the parent's end returns: the end is news */
    assert_int_equal(sl_iter_wait(it, 5000), 1);
    assert_int_equal(sl_iter_read(it, rec, 8, &res), 0);
    assert_int_equal(res.count, 0);
    assert_int_equal(res.shard_end, 1);
    assert_int_equal(res.child_count, 2);
    sl_iter_close(it);
    sl_shard_list *l;
    assert_int_equal(sl_stream_list_shards(&l, f), 0);
    assert_int_equal(l->count, 3);
    sl_shard_list_free(l);
    assert_int_equal(sl_iter_open(&it, f, "shardId-000000000001", SL_ITER_TRIM_HORIZON, 0), 0);
    assert_int_equal(sl_iter_read(it, rec, 8, &res), 0);
    assert_int_equal(res.count, 1);
    assert_int_equal(rec[0].sequence, child);
    sl_iter_close(it);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(f), 0);
    assert_int_equal(sl_stream_close(w), 0);
}

/* ---- failures and crashes --------------------------------------------------------- */

static int fail_at, calls;
static int fail_rename(const char *a, const char *b)
{
    if (++calls == fail_at) {
        errno = EIO;
        return -1;
    }
    return rename(a, b);
}
static int fail_mkdir(const char *path, mode_t mode)
{
    if (++calls == fail_at) {
        errno = ENOSPC;
        return -1;
    }
    return mkdir(path, mode);
}
static int fail_fsync(int fd)
{
    if (++calls == fail_at) {
        errno = EIO;
        return -1;
    }
    return fsync(fd);
}
static int fail_msync(void *a, size_t l, int f)
{
    if (++calls == fail_at) {
        errno = EIO;
        return -1;
    }
    return msync(a, l, f);
}

/* The shard map after a failed or interrupted reshard: the open shards
** tile the key space (the open fails otherwise), and every record put
** before is there. */
static void expect_consistent(const char *root, const char *name, size_t records)
{
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.durability = SL_DURABILITY_NONE;
    sl_stream *s;
    int rc = sl_stream_open(&s, root, name, &o);
    if (rc) fail_msg("reopen: %s", sl_errmsg(NULL));
    tu_recs all = {0};
    tu_read_all(s, &all);
    assert_int_equal(all.corrupt, 0);
    assert_true(all.n >= records);
    tu_recs_free(&all);
    assert_int_equal(sl_stream_close(s), 0);
}

static void failure_at_every_step_leaves_one_map(void **state)
{
    const char *root = *state;
    for (fail_at = 1; fail_at <= 12; fail_at++) {
        char name[16];
        snprintf(name, sizeof name, "f%d", fail_at);
        tu_opts o = {.shards = 2};
        sl_stream *s = tu_create(root, name, &o);
        sl_producer *p;
        assert_int_equal(sl_producer_open(&p, s), 0);
        for (int i = 0; i < 50; i++) tu_put(p, "key", i);
        calls = 0;
        sl__os.rename = fail_rename;
        sl__os.mkdir = fail_mkdir;
        sl__os.fsync = fail_fsync;
        sl__os.msync = fail_msync;
        int rc = sl_stream_update_shard_count(s, 4);
        sl__os_reset();
        assert_true(rc == 0 || rc == SL_EIO || rc == SL_ENOSPC);
        /* the stream goes on taking puts and reads all */
        if (rc != SL_EIO || !atomic_load(&s->failed)) {
            for (int i = 0; i < 10; i++) tu_put(p, "after", i);
        }
        sl_producer_close(p);
        sl_stream_close(s);
        expect_consistent(root, name, 50);
    }
}

static void sigkill_during_reshards_reopens_consistent(void **state)
{
    const char *root = *state;
    for (int round = 0; round < 8; round++) {
        char name[16];
        snprintf(name, sizeof name, "k%d", round);
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            sl_stream_config c = SL_STREAM_CONFIG_INIT;
            c.name = name;
            c.shard_count = 2;
            c.durability = SL_DURABILITY_NONE;
            c.segment_bytes = SL_SEGMENT_BYTES_MIN;
            sl_stream *s;
            if (sl_stream_create(&s, root, &c, NULL)) _exit(2);
            sl_producer *p;
            if (sl_producer_open(&p, s)) _exit(3);
            for (int i = 0;; i++) {
                char key[16];
                snprintf(key, sizeof key, "key%d", i % 50);
                if (sl_put(p, key, "x", 1, NULL)) _exit(4);
                if (write(pfd[1], &i, sizeof i) != (ssize_t)sizeof i) _exit(5);
                if (i % 40 == 39 &&
                    sl_stream_update_shard_count(s, (uint32_t)(2 + (i / 40) % 3)) != 0)
                    _exit(6);
            }
        }
        close(pfd[1]);
        int acks = 0, v;
        while (acks < 100 + round * 37 && read(pfd[0], &v, sizeof v) == (ssize_t)sizeof v) acks++;
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        while (read(pfd[0], &v, sizeof v) == (ssize_t)sizeof v) acks++;
        close(pfd[0]);
        expect_consistent(root, name, (size_t)acks);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(split_and_merge_follow_kinesis, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(reading_to_the_end_of_a_closed_shard, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(update_shard_count_scales_evenly, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(subscription_ends_with_the_children, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(on_demand_splits_a_hot_shard_on_time, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(per_key_order_across_random_reshards, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(lineage_reader_follows_reshards_live, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(lineage_reader_resumes_from_checkpoints, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(follower_sees_a_reshard, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(failure_at_every_step_leaves_one_map, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(sigkill_during_reshards_reopens_consistent, tu_setup,
                                        tu_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
