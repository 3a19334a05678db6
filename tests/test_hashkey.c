/*
** test_hashkey.c -- partition keys, hash keys, routing, sequence numbers and
** shard ids, checked against tests/vectors/partition-keys.json (recorded from
** kinesalite; see tests/vectors/README.md).
**
** The vectors are found through $SL_VECTORS, else at the path relative to
** the repository root (make runs tests from there).
*/
#include "testutil.h"

#include <jansson.h>

#define VECTORS_DEFAULT "tests/vectors/partition-keys.json"

/* ---- helpers ------------------------------------------------------------- */

static json_t *load_vectors(void)
{
    const char *path = getenv("SL_VECTORS");
    if (!path || !*path) path = VECTORS_DEFAULT;
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root)
        fail_msg("cannot load test vectors %s: %s (line %d); run from the "
                 "repository root or set SL_VECTORS",
                 path, err.text, err.line);
    assert_true(json_is_object(root));
    return root;
}

static json_t *jget(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    if (!v) fail_msg("test vectors: no field '%s'", k);
    return v;
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = jget(o, k);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static json_t *vector_keys(json_t *root)
{
    json_t *keys = jget(jget(root, "partition_keys"), "keys");
    assert_true(json_is_array(keys));
    /* a vacuous loop would prove nothing */
    assert_true(json_array_size(keys) >= 100);
    return keys;
}

/* The shard counts the per-key "shards" maps cover: {1, 2, 4, 7}. */
static size_t vector_shard_counts(json_t *root, uint32_t *out, size_t max)
{
    json_t *a = jget(jget(root, "partition_keys"), "shard_counts");
    assert_true(json_is_array(a));
    size_t n = json_array_size(a);
    assert_true(n >= 1 && n <= max);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        assert_true(json_is_integer(v));
        json_int_t x = json_integer_value(v);
        assert_in_range(x, 1, SL_SHARDS_MAX);
        out[i] = (uint32_t)x;
    }
    return n;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode the vector's key_utf8_hex into a malloc'd C string. */
static char *unhex(const char *hex, size_t *len)
{
    size_t n = strlen(hex);
    assert_true(n % 2 == 0);
    char *out = malloc(n / 2 + 1);
    assert_non_null(out);
    for (size_t i = 0; i < n; i += 2) {
        int a = hexval(hex[i]), b = hexval(hex[i + 1]);
        assert_true(a >= 0 && b >= 0);
        out[i / 2] = (char)(a * 16 + b);
    }
    out[n / 2] = '\0';
    *len = n / 2;
    return out;
}

static void to_hex(char out[33], const uint8_t d[16])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[32] = '\0';
}

/* The key of vector entry e as a C string, checked against its hex form. */
static char *vector_key(json_t *e, size_t *len)
{
    char *key = unhex(jstr(e, "key_utf8_hex"), len);
    json_t *k = jget(e, "key");
    assert_true(json_is_string(k));
    assert_int_equal(json_string_length(k), *len);
    assert_memory_equal(json_string_value(k), key, *len);
    assert_int_equal(strlen(key), *len); /* no U+0000 in the vectors */
    return key;
}

/* The vector's shard id for N shards, as an index. */
static uint32_t vector_shard(json_t *e, uint32_t n)
{
    char nb[16];
    snprintf(nb, sizeof nb, "%u", n);
    const char *id = jstr(jget(e, "shards"), nb);
    uint32_t idx = UINT32_MAX;
    assert_int_equal(sl__shard_id_parse(id, &idx), 0);
    assert_true(idx < n);
    return idx;
}

static char *repeat(const char *unit, size_t times)
{
    size_t ul = strlen(unit);
    char *s = malloc(ul * times + 1);
    assert_non_null(s);
    for (size_t i = 0; i < times; i++) memcpy(s + i * ul, unit, ul);
    s[ul * times] = '\0';
    return s;
}

static sl_u128 u128(const char *dec)
{
    sl_u128 v;
    assert_int_equal(sl__u128_parse(&v, dec), 0);
    return v;
}

/* ---- vectors: MD5 and hash key ------------------------------------------- */

static void vectors_md5_and_hash_key(void **state)
{
    (void)state;
    json_t *root = load_vectors();
    json_t *keys = vector_keys(root);
    size_t i;
    json_t *e;
    json_array_foreach(keys, i, e) {
        size_t len, bytes = 0;
        char *key = vector_key(e, &len);
        char khex[2 * 1024 + 1];
        snprintf(khex, sizeof khex, "%s", jstr(e, "key_utf8_hex"));

        /* accepted, and its byte length is what the vector says */
        if (sl__partition_key_check(key, &bytes) != 0)
            fail_msg("key #%zu (%s) rejected: %s", i, khex, sl__errtext());
        assert_int_equal(bytes, len);
        assert_int_equal(json_integer_value(jget(e, "utf8_bytes")), len);

        uint8_t d[16];
        char hex[33], dec[40];
        assert_int_equal(sl_hash_partition_key(d, key), 0);
        to_hex(hex, d);
        if (strcmp(hex, jstr(e, "md5_hex")) != 0)
            fail_msg("key #%zu (%s): MD5 %s, want %s", i, khex, hex, jstr(e, "md5_hex"));
        sl_hash_key_format(dec, d);
        if (strcmp(dec, jstr(e, "hash_key")) != 0)
            fail_msg("key #%zu (%s): hash key %s, want %s", i, khex, dec,
                     jstr(e, "hash_key"));

        /* the decimal form parses back to the same 16 bytes */
        uint8_t back[16];
        assert_int_equal(sl_hash_key_parse(back, dec), 0);
        assert_memory_equal(back, d, 16);
        free(key);
    }
    json_decref(root);
}

/* ---- vectors: the even split --------------------------------------------- */

static void vectors_hash_key_ranges(void **state)
{
    (void)state;
    json_t *root = load_vectors();
    json_t *ranges = jget(root, "hash_key_ranges");
    assert_true(json_is_object(ranges));
    static const uint32_t want_counts[] = {1, 2, 3, 4, 7, 16};
    assert_int_equal(json_object_size(ranges), sizeof want_counts / sizeof *want_counts);
    for (size_t c = 0; c < sizeof want_counts / sizeof *want_counts; c++) {
        uint32_t n = want_counts[c];
        char nb[16];
        snprintf(nb, sizeof nb, "%u", n);
        json_t *arr = jget(ranges, nb);
        assert_true(json_is_array(arr));
        assert_int_equal(json_array_size(arr), n);
        for (uint32_t i = 0; i < n; i++) {
            json_t *r = json_array_get(arr, i);
            sl_u128 s, en;
            char sb[40], eb[40], id[SL_SHARD_ID_LEN + 1];
            sl__hashkey_split(&s, &en, i, n);
            sl__u128_format(sb, s);
            sl__u128_format(eb, en);
            sl__shard_id(id, i);
            if (strcmp(sb, jstr(r, "StartingHashKey")) != 0 ||
                strcmp(eb, jstr(r, "EndingHashKey")) != 0)
                fail_msg("N=%u shard %u: split gives [%s, %s], want [%s, %s]", n, i, sb, eb,
                         jstr(r, "StartingHashKey"), jstr(r, "EndingHashKey"));
            assert_string_equal(id, jstr(r, "ShardId"));
        }
    }
    json_decref(root);
}

/* The split tiles the key space for shard counts the vectors do not cover,
** up to the per-stream maximum. */
static void split_tiles_key_space(void **state)
{
    (void)state;
    static const uint32_t counts[] = {1, 2, 3, 5, 6, 8, 9, 10, 11, 13, 17, 31, 32, 33,
                                      64, 100, 127, 128, 255, 256, 1000, 4096, 9999,
                                      SL_SHARDS_MAX};
    for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
        uint32_t n = counts[c];
        sl_u128 prev_end = {0, 0};
        for (uint32_t i = 0; i < n; i++) {
            sl_u128 s, e;
            sl__hashkey_split(&s, &e, i, n);
            assert_true(sl__u128_cmp(s, e) <= 0);
            if (i == 0) {
                assert_true(s.hi == 0 && s.lo == 0);
            } else {
                sl_u128 next = prev_end;
                if (++next.lo == 0) next.hi++;
                assert_int_equal(sl__u128_cmp(next, s), 0);
            }
            prev_end = e;
        }
        assert_int_equal(sl__u128_cmp(prev_end, SL_U128_MAX), 0);
    }
    /* spot values: q = floor(2^128 / 3) = 113427455640312821154458202477256070485 */
    sl_u128 s, e;
    sl__hashkey_split(&s, &e, 1, 3);
    assert_int_equal(sl__u128_cmp(s, u128("113427455640312821154458202477256070485")), 0);
    sl__hashkey_split(&s, &e, 9999, 10000);
    assert_int_equal(sl__u128_cmp(s, u128("340248338684246369617028269971025033179")), 0);
    assert_int_equal(sl__u128_cmp(e, SL_U128_MAX), 0);
}

/* ---- vectors: routing by the split ---------------------------------------- */

static void vectors_routing_by_split(void **state)
{
    (void)state;
    json_t *root = load_vectors();
    json_t *keys = vector_keys(root);
    uint32_t counts[16];
    size_t nc = vector_shard_counts(root, counts, 16);
    size_t i;
    json_t *e;
    json_array_foreach(keys, i, e) {
        size_t len;
        char *key = vector_key(e, &len);
        uint8_t d[16];
        assert_int_equal(sl_hash_partition_key(d, key), 0);
        sl_u128 h = sl__u128_from_be(d);
        assert_int_equal(sl__u128_cmp(h, u128(jstr(e, "hash_key"))), 0);
        assert_int_equal(json_object_size(jget(e, "shards")), nc);
        for (size_t c = 0; c < nc; c++) {
            uint32_t n = counts[c], want = vector_shard(e, n), found = 0, hits = 0;
            for (uint32_t s = 0; s < n; s++) {
                sl_u128 a, b;
                sl__hashkey_split(&a, &b, s, n);
                if (sl__u128_cmp(a, h) <= 0 && sl__u128_cmp(h, b) <= 0) {
                    found = s;
                    hits++;
                }
            }
            assert_int_equal(hits, 1);
            if (found != want)
                fail_msg("key #%zu (%s), N=%u: in the range of shard %u, vector says %u", i,
                         jstr(e, "key_utf8_hex"), n, found, want);
        }
        free(key);
    }
    json_decref(root);
}

/* ---- vectors: routing through the public API ------------------------------ */

static void vectors_routing_streams(void **state)
{
    const char *root_dir = *state;
    json_t *root = load_vectors();
    json_t *keys = vector_keys(root);
    uint32_t counts[16];
    size_t nc = vector_shard_counts(root, counts, 16);
    /* the brief and the README promise 1, 2, 4 and 7 */
    assert_int_equal(nc, 4);
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 2);
    assert_int_equal(counts[2], 4);
    assert_int_equal(counts[3], 7);
    size_t nkeys = json_array_size(keys);

    for (size_t c = 0; c < nc; c++) {
        uint32_t n = counts[c];
        char name[32];
        snprintf(name, sizeof name, "route-%u", n);
        tu_opts o = {.shards = n};
        sl_stream *s = tu_create(root_dir, name, &o);

        /* the shard map is the recorded one */
        char nb[16];
        snprintf(nb, sizeof nb, "%u", n);
        json_t *ranges = jget(jget(root, "hash_key_ranges"), nb);
        sl_shard_list *l;
        assert_int_equal(sl_stream_list_shards(&l, s), 0);
        assert_int_equal(l->count, n);
        for (uint32_t i = 0; i < n; i++) {
            json_t *r = json_array_get(ranges, i);
            assert_string_equal(l->shards[i].shard_id, jstr(r, "ShardId"));
            assert_string_equal(l->shards[i].starting_hash_key, jstr(r, "StartingHashKey"));
            assert_string_equal(l->shards[i].ending_hash_key, jstr(r, "EndingHashKey"));
        }
        sl_shard_list_free(l);

        sl_producer *p;
        assert_int_equal(sl_producer_open(&p, s), 0);
        uint32_t *per_shard = calloc(n, sizeof *per_shard);
        assert_non_null(per_shard);
        size_t i;
        json_t *e;
        json_array_foreach(keys, i, e) {
            size_t len;
            char *key = vector_key(e, &len);
            char data[32];
            int dl = snprintf(data, sizeof data, "rec-%zu", i);
            sl_put_entry pe = {key, data, (size_t)dl, NULL};
            sl_put_result res;
            memset(&res, 0xab, sizeof res);
            int rc = sl_producer_put(p, &pe, &res);
            if (rc) fail_msg("N=%u key #%zu: put failed: %s", n, i, sl_errmsg(p));
            assert_int_equal(res.error, 0);
            assert_string_equal(res.error_message, "");
            uint32_t want = vector_shard(e, n);
            if (strcmp(res.shard_id, jstr(jget(e, "shards"), nb)) != 0)
                fail_msg("N=%u key #%zu (%s): routed to %s, vector says %s", n, i,
                         jstr(e, "key_utf8_hex"), res.shard_id, jstr(jget(e, "shards"), nb));
            assert_int_equal(res.shard_index, want);
            per_shard[want]++;
            free(key);
        }
        sl_producer_close(p);

        /* read back: every record sits in the shard its vector names */
        size_t total = 0;
        for (uint32_t sh = 0; sh < n; sh++) {
            char id[SL_SHARD_ID_LEN + 1];
            sl__shard_id(id, sh);
            tu_recs recs = {0};
            tu_read_shard(s, id, &recs);
            assert_int_equal(recs.corrupt, 0);
            assert_int_equal(recs.n, per_shard[sh]);
            for (size_t r = 0; r < recs.n; r++) {
                size_t k;
                assert_int_equal(sscanf(recs.v[r].data, "rec-%zu", &k), 1);
                assert_true(k < nkeys);
                json_t *ke = json_array_get(keys, k);
                size_t len;
                char *key = vector_key(ke, &len);
                assert_string_equal(recs.v[r].key, key);
                assert_int_equal(vector_shard(ke, n), sh);
                free(key);
            }
            total += recs.n;
            tu_recs_free(&recs);
        }
        assert_int_equal(total, nkeys);
        free(per_shard);
        assert_int_equal(sl_stream_close(s), 0);
    }
    json_decref(root);
}

/* PutRecords hashes one-block keys in parallel lanes (AVX2, AVX-512): the
** routing must be the vectors' all the same, in batches of every size. */
static void vectors_routing_batches(void **state)
{
    const char *root_dir = *state;
    json_t *root = load_vectors();
    json_t *keys = vector_keys(root);
    size_t nkeys = json_array_size(keys);
    const uint32_t counts[2] = {4, 7};
    for (size_t c = 0; c < 2; c++) {
        uint32_t n = counts[c];
        char name[32], nb[16];
        snprintf(name, sizeof name, "batch-%u", n);
        snprintf(nb, sizeof nb, "%u", n);
        tu_opts o = {.shards = n};
        sl_stream *s = tu_create(root_dir, name, &o);
        sl_producer *p;
        assert_int_equal(sl_producer_open(&p, s), 0);
        size_t sizes[5] = {500, 8, 16, 13, 1};
        size_t at = 0;
        for (size_t b = 0; at < nkeys; b++) {
            size_t m = sizes[b % 5];
            if (m > nkeys - at) m = nkeys - at;
            sl_put_entry e[500];
            sl_put_result r[500];
            char *k[500];
            for (size_t j = 0; j < m; j++) {
                size_t len;
                k[j] = vector_key(json_array_get(keys, at + j), &len);
                e[j] = (sl_put_entry){k[j], "x", 1, NULL};
            }
            size_t failed = 99;
            assert_int_equal(sl_producer_put_batch(p, e, m, r, &failed), 0);
            assert_int_equal(failed, 0);
            for (size_t j = 0; j < m; j++) {
                json_t *v = json_array_get(keys, at + j);
                if (r[j].shard_index != vector_shard(v, n))
                    fail_msg("N=%u key #%zu (%s): routed to %s, vector says %s", n, at + j,
                             jstr(v, "key_utf8_hex"), r[j].shard_id, jstr(jget(v, "shards"), nb));
                free(k[j]);
            }
            at += m;
        }
        sl_producer_close(p);
        assert_int_equal(sl_stream_close(s), 0);
    }
    json_decref(root);
}

/* The lane MD5s against libcrypto, every one-block length, at every width
** this CPU has. */
static void md5_lanes_match_libcrypto(void **state)
{
    (void)state;
    int top = sl__md5_lanes();
    if (!top) {
        /* no AVX2 on this CPU: the library uses sl__md5 only, which the
        ** vectors above check; nothing else to compare */
        skip();
    }
    sl_md5 *m;
    assert_int_equal(sl__md5_new(&m), 0);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    char buf[16][SL_MD5_LANE_KEY_MAX + 1];
    for (int lanes = 8; lanes <= top; lanes *= 2) {
        for (int round = 0; round < 64; round++) {
            const char *keys[16];
            size_t lens[16];
            for (int l = 0; l < lanes; l++) {
                lens[l] = (size_t)(round * lanes + l) % (SL_MD5_LANE_KEY_MAX + 1);
                for (size_t i = 0; i < lens[l]; i++) {
                    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                    buf[l][i] = (char)x;
                }
                keys[l] = buf[l];
            }
            uint8_t got[16][16], want[16];
            sl__md5_lanes_run(lanes, keys, lens, got);
            for (int l = 0; l < lanes; l++) {
                assert_int_equal(sl__md5(m, keys[l], lens[l], want), 0);
                assert_memory_equal(got[l], want, 16);
            }
        }
    }
    sl__md5_free(m);
}

/* Routing by ranges on a stream of more shards than the branch-free scan
** covers (16): each key lands in the shard whose range holds its MD5. */
static void routing_many_shards(void **state)
{
    const char *root_dir = *state;
    tu_opts o = {.shards = 37};
    sl_stream *s = tu_create(root_dir, "many", &o);
    sl_shard_list *l;
    assert_int_equal(sl_stream_list_shards(&l, s), 0);
    uint8_t lo[37][16], hi[37][16];
    for (size_t i = 0; i < l->count; i++) {
        assert_int_equal(sl_hash_key_parse(lo[i], l->shards[i].starting_hash_key), 0);
        assert_int_equal(sl_hash_key_parse(hi[i], l->shards[i].ending_hash_key), 0);
    }
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    char keys[500][24];
    sl_put_entry e[500];
    sl_put_result r[500];
    for (int i = 0; i < 500; i++) {
        snprintf(keys[i], sizeof keys[i], "user-%d", i * 7919);
        e[i] = (sl_put_entry){keys[i], "x", 1, NULL};
    }
    size_t failed;
    assert_int_equal(sl_producer_put_batch(p, e, 500, r, &failed), 0);
    assert_int_equal(failed, 0);
    for (int i = 0; i < 500; i++) {
        uint8_t h[16];
        assert_int_equal(sl_hash_partition_key(h, keys[i]), 0);
        uint32_t k = r[i].shard_index;
        assert_true(k < 37);
        assert_true(memcmp(lo[k], h, 16) <= 0 && memcmp(h, hi[k], 16) <= 0);
        sl_put_result one;
        assert_int_equal(sl_producer_put(p, &e[i], &one), 0);
        assert_int_equal(one.shard_index, k);
    }
    sl_shard_list_free(l);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

/* ---- explicit hash keys ----------------------------------------------------- */

static void hash_key_parse_valid(void **state)
{
    (void)state;
    uint8_t k[16], want[16];
    char buf[40];

    memset(k, 0xee, sizeof k);
    memset(want, 0, sizeof want);
    assert_int_equal(sl_hash_key_parse(k, "0"), 0);
    assert_memory_equal(k, want, 16);
    assert_string_equal(sl_hash_key_format(buf, k), "0");

    memset(want, 0xff, sizeof want);
    assert_int_equal(sl_hash_key_parse(k, "340282366920938463463374607431768211455"), 0);
    assert_memory_equal(k, want, 16);
    assert_string_equal(sl_hash_key_format(buf, k), "340282366920938463463374607431768211455");

    /* 2^64: big-endian, the 1 lands in byte 7 */
    memset(want, 0, sizeof want);
    want[7] = 1;
    assert_int_equal(sl_hash_key_parse(k, "18446744073709551616"), 0);
    assert_memory_equal(k, want, 16);

    /* 2^64 - 1 */
    memset(want, 0, sizeof want);
    memset(want + 8, 0xff, 8);
    assert_int_equal(sl_hash_key_parse(k, "18446744073709551615"), 0);
    assert_memory_equal(k, want, 16);

    /* round trips, including 39 digits below the maximum */
    static const char *const ok[] = {
        "1", "9", "10", "255", "256", "4294967296", "100000000000000000000000000000000000000",
        "340282366920938463463374607431768211454", "170141183460469231731687303715884105728",
        "123456789012345678901234567890123456789",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        assert_int_equal(sl_hash_key_parse(k, ok[i]), 0);
        assert_string_equal(sl_hash_key_format(buf, k), ok[i]);
    }
}

static void hash_key_parse_invalid(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int code;
    } bad[] = {
        {"340282366920938463463374607431768211456", SL_EINVAL},      /* 2^128 */
        {"999999999999999999999999999999999999999", SL_EINVAL},      /* 39 nines */
        {"340282366920938463463374607431768211460", SL_EINVAL},
        {"0123", SL_EVALIDATION},
        {"00", SL_EVALIDATION},
        {"1e5", SL_EVALIDATION},
        {" 5", SL_EVALIDATION},
        {"5 ", SL_EVALIDATION},
        {"-1", SL_EVALIDATION},
        {"+1", SL_EVALIDATION},
        {"abc1", SL_EVALIDATION},
        {"1abc", SL_EVALIDATION},
        {"", SL_EVALIDATION},
        {"1234567890123456789012345678901234567890", SL_EVALIDATION}, /* 40 digits */
        {"0000000000000000000000000000000000000001", SL_EVALIDATION},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint8_t k[16];
        int rc = sl_hash_key_parse(k, bad[i].s);
        if (rc != bad[i].code)
            fail_msg("'%s': got %d, want %d", bad[i].s, rc, bad[i].code);
        /* no handle: the detail is on NULL */
        assert_true(sl_errmsg(NULL)[0] != '\0');
        if (bad[i].code == SL_EVALIDATION)
            assert_non_null(strstr(sl_errmsg(NULL), "explicitHashKey"));
        else
            assert_non_null(strstr(sl_errmsg(NULL), "2^128-1"));
    }
    uint8_t k[16];
    assert_int_equal(sl_hash_key_parse(k, NULL), SL_EVALIDATION);
    assert_int_equal(sl_hash_key_parse(NULL, "1"), SL_EINVAL);
}

/* Explicit hash keys at every shard boundary land on the shard that owns
** them, whatever the partition key's MD5 says. */
static void explicit_hash_key_boundaries(void **state)
{
    const char *root_dir = *state;
    static const uint32_t counts[] = {4, 2, 7};
    for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
        uint32_t n = counts[c];
        char name[32];
        snprintf(name, sizeof name, "ehk-%u", n);
        tu_opts o = {.shards = n};
        sl_stream *s = tu_create(root_dir, name, &o);
        sl_producer *p;
        assert_int_equal(sl_producer_open(&p, s), 0);
        uint32_t *count = calloc(n, sizeof *count);
        assert_non_null(count);
        for (uint32_t i = 0; i < n; i++) {
            sl_u128 b[2];
            sl__hashkey_split(&b[0], &b[1], i, n);
            for (int end = 0; end < 2; end++) {
                char dec[40];
                sl__u128_format(dec, b[end]);
                sl_put_entry e = {"same-key-every-time", "x", 1, dec};
                sl_put_result r;
                int rc = sl_producer_put(p, &e, &r);
                if (rc) fail_msg("N=%u %s: %s", n, dec, sl_errmsg(p));
                if (r.shard_index != i)
                    fail_msg("N=%u: explicit hash key %s (the %s of shard %u) went to %s", n,
                             dec, end ? "end" : "start", i, r.shard_id);
                char id[SL_SHARD_ID_LEN + 1];
                sl__shard_id(id, i);
                assert_string_equal(r.shard_id, id);
                count[i]++;
            }
        }
        /* what was read back agrees */
        for (uint32_t i = 0; i < n; i++) {
            char id[SL_SHARD_ID_LEN + 1];
            sl__shard_id(id, i);
            tu_recs recs = {0};
            tu_read_shard(s, id, &recs);
            assert_int_equal(recs.n, count[i]);
            assert_int_equal(count[i], 2);
            tu_recs_free(&recs);
        }
        free(count);

        /* a bad explicit hash key fails the put, naming the field */
        sl_put_entry e = {"k", "x", 1, "0123"};
        sl_put_result r;
        assert_int_equal(sl_producer_put(p, &e, &r), SL_EVALIDATION);
        assert_int_equal(r.error, SL_EVALIDATION);
        assert_non_null(strstr(sl_errmsg(p), "explicitHashKey"));
        e.explicit_hash_key = "340282366920938463463374607431768211456";
        assert_int_equal(sl_producer_put(p, &e, &r), SL_EINVAL);
        assert_int_equal(r.error, SL_EINVAL);
        sl_producer_close(p);
        assert_int_equal(sl_stream_close(s), 0);
    }
}

/* ---- partition key validation ------------------------------------------- */

static void check_key(const char *key, int want, size_t want_bytes)
{
    size_t bytes = 12345;
    int rc = sl__partition_key_check(key, &bytes);
    if (rc != want)
        fail_msg("key of %zu bytes: check gave %d (%s), want %d", key ? strlen(key) : 0, rc,
                 sl__errtext(), want);
    if (want == 0) assert_int_equal(bytes, want_bytes);
    /* the public hash agrees with the check */
    uint8_t d[16];
    assert_int_equal(sl_hash_partition_key(d, key), want);
    if (want) assert_true(sl_errmsg(NULL)[0] != '\0');
}

static void partition_key_length(void **state)
{
    (void)state;
    char *k;

    k = repeat("a", 256);
    check_key(k, 0, 256);
    free(k);
    k = repeat("a", 257);
    check_key(k, SL_EVALIDATION, 0);
    assert_non_null(strstr(sl_errmsg(NULL), "256"));
    free(k);
    check_key("a", 0, 1);

    /* U+1F642 is two UTF-16 units: 128 fit, 129 do not */
    k = repeat("\xF0\x9F\x99\x82", 128);
    check_key(k, 0, 512);
    free(k);
    k = repeat("\xF0\x9F\x99\x82", 129);
    check_key(k, SL_EVALIDATION, 0);
    assert_non_null(strstr(sl_errmsg(NULL), "256"));
    free(k);

    /* U+00E9 is two UTF-8 bytes but one UTF-16 unit */
    k = repeat("\xC3\xA9", 200);
    check_key(k, 0, 400);
    free(k);
    k = repeat("\xC3\xA9", 256);
    check_key(k, 0, 512);
    free(k);
    k = repeat("\xC3\xA9", 257);
    check_key(k, SL_EVALIDATION, 0);
    free(k);

    /* three-byte characters are one unit: 256 x U+20AC = 768 bytes */
    k = repeat("\xE2\x82\xAC", 256);
    check_key(k, 0, 768);
    free(k);

    /* a surrogate pair straddling the limit */
    char mixed[300 + 4];
    memset(mixed, 'b', 254);
    memcpy(mixed + 254, "\xF0\x9F\x99\x82", 5);
    check_key(mixed, 0, 258); /* 254 + 2 = 256 units */
    memset(mixed, 'b', 255);
    memcpy(mixed + 255, "\xF0\x9F\x99\x82", 5);
    check_key(mixed, SL_EVALIDATION, 0); /* 255 + 2 = 257 units */

    /* empty and NULL */
    check_key("", SL_EVALIDATION, 0);
    check_key(NULL, SL_EVALIDATION, 0);
}

static void partition_key_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *k;
        int ok;
    } cases[] = {
        {"\x80", 0},                    /* lone continuation byte */
        {"a\x80z", 0},
        {"\xC0\x80", 0},                /* overlong U+0000 */
        {"\xC1\xBF", 0},                /* overlong U+007F */
        {"\xE0\x80\x80", 0},            /* overlong, 3 bytes */
        {"\xE0\x9F\xBF", 0},            /* overlong U+07FF */
        {"\xF0\x80\x80\x80", 0},        /* overlong, 4 bytes */
        {"\xF0\x8F\xBF\xBF", 0},        /* overlong U+FFFF */
        {"\xED\xA0\x80", 0},            /* U+D800, a surrogate */
        {"\xED\xBF\xBF", 0},            /* U+DFFF */
        {"\xED\xA0\xBD\xED\xB9\x82", 0}, /* CESU-8 pair for U+1F642 */
        {"\xF5", 0},                    /* never valid */
        {"\xF5\x80\x80\x80", 0},
        {"\xF4\x90\x80\x80", 0},        /* U+110000 */
        {"\xF8\x88\x80\x80\x80", 0},
        {"\xFF", 0},
        {"\xFE", 0},
        {"\xC3", 0},                    /* truncated sequences */
        {"\xE2\x82", 0},
        {"\xF0\x9F\x99", 0},
        {"ab\xF0\x9F\x99", 0},
        {"\xC3\x28", 0},                /* bad continuation */
        {"\xE2\x28\xA1", 0},
        {"\xC3\xA9", 1},                /* U+00E9 */
        {"\xDF\xBF", 1},                /* U+07FF */
        {"\xE0\xA0\x80", 1},            /* U+0800 */
        {"\xED\x9F\xBF", 1},            /* U+D7FF */
        {"\xEE\x80\x80", 1},            /* U+E000 */
        {"\xEF\xBF\xBF", 1},            /* U+FFFF */
        {"\xF0\x90\x80\x80", 1},        /* U+10000 */
        {"\xF4\x8F\xBF\xBF", 1},        /* U+10FFFF */
        {"\x7F", 1},
        {"\x01", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t bytes = 0;
        int rc = sl__partition_key_check(cases[i].k, &bytes);
        if (cases[i].ok) {
            if (rc != 0) fail_msg("case %zu rejected: %s", i, sl__errtext());
            assert_int_equal(bytes, strlen(cases[i].k));
        } else {
            if (rc != SL_EVALIDATION) fail_msg("case %zu: got %d, want SL_EVALIDATION", i, rc);
        }
        uint8_t d[16];
        assert_int_equal(sl_hash_partition_key(d, cases[i].k), cases[i].ok ? 0 : SL_EVALIDATION);
        if (!cases[i].ok) assert_non_null(strstr(sl_errmsg(NULL), "UTF-8"));
    }
}

/* The producer applies the same rules and writes nothing for a bad key. */
static void producer_key_validation(void **state)
{
    sl_stream *s = tu_create(*state, "keys", NULL);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    char *k257 = repeat("a", 257), *e129 = repeat("\xF0\x9F\x99\x82", 129);
    const char *bad[] = {"", k257, e129, "\x80", "\xC0\x80", "\xED\xA0\x80", "\xF5\x80\x80\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sl_put_entry e = {bad[i], "d", 1, NULL};
        sl_put_result r;
        assert_int_equal(sl_producer_put(p, &e, &r), SL_EVALIDATION);
        assert_int_equal(r.error, SL_EVALIDATION);
        assert_true(sl_errmsg(p)[0] != '\0');
        uint64_t seq = 77;
        assert_int_equal(sl_put(p, bad[i], "d", 1, &seq), SL_EVALIDATION);
        assert_int_equal(seq, 0);
    }
    sl_put_entry null_key = {NULL, "d", 1, NULL};
    assert_int_equal(sl_producer_put(p, &null_key, NULL), SL_EVALIDATION);

    char *k256 = repeat("a", 256), *e128 = repeat("\xF0\x9F\x99\x82", 128),
         *e200 = repeat("\xC3\xA9", 200);
    const char *good[] = {k256, e128, e200};
    /* (not tu_put: its 128-byte data buffer is too small for these keys) */
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        uint64_t seq = 0;
        int rc = sl_put(p, good[i], "d", 1, &seq);
        if (rc) fail_msg("good key %zu rejected: %s", i, sl_errmsg(p));
        assert_true(seq > 0);
    }
    sl_producer_close(p);

    tu_recs recs = {0};
    tu_read_shard(s, "shardId-000000000000", &recs);
    assert_int_equal(recs.n, 3);
    for (size_t i = 0; i < 3; i++) assert_string_equal(recs.v[i].key, good[i]);
    tu_recs_free(&recs);
    free(k257);
    free(e129);
    free(k256);
    free(e128);
    free(e200);
    assert_int_equal(sl_stream_close(s), 0);
}

/* ---- sequence numbers ----------------------------------------------------- */

static void seq_format_parse(void **state)
{
    (void)state;
    static const struct {
        uint64_t v;
        const char *s;
    } ok[] = {
        {0, "0"},
        {1, "1"},
        {9, "9"},
        {10, "10"},
        {4294967296ull, "4294967296"},
        {10000000000000000000ull, "10000000000000000000"},
        {UINT64_MAX - 1, "18446744073709551614"},
        {UINT64_MAX, "18446744073709551615"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        char buf[SL_SEQ_STR_MAX];
        memset(buf, 'z', sizeof buf);
        assert_ptr_equal(sl_seq_format(buf, ok[i].v), buf);
        assert_string_equal(buf, ok[i].s);
        uint64_t v = 12345;
        assert_int_equal(sl_seq_parse(&v, ok[i].s), 0);
        assert_true(v == ok[i].v);
    }
    /* a dense sweep of round trips */
    for (uint64_t x = 1; x != 0 && x < UINT64_MAX / 3; x = x * 3 + 1) {
        char buf[SL_SEQ_STR_MAX];
        uint64_t v;
        assert_int_equal(sl_seq_parse(&v, sl_seq_format(buf, x)), 0);
        assert_true(v == x);
    }

    static const struct {
        const char *s;
        int code;
    } bad[] = {
        {"01", SL_EVALIDATION},
        {"00", SL_EVALIDATION},
        {"", SL_EVALIDATION},
        {"x", SL_EVALIDATION},
        {"1x", SL_EVALIDATION},
        {"-1", SL_EVALIDATION},
        {"+1", SL_EVALIDATION},
        {" 1", SL_EVALIDATION},
        {"1 ", SL_EVALIDATION},
        {"18446744073709551616", SL_EINVAL},    /* 2^64 */
        {"18446744073709551620", SL_EINVAL},
        {"99999999999999999999", SL_EINVAL},
        {"100000000000000000000", SL_EINVAL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint64_t v = 4242;
        int rc = sl_seq_parse(&v, bad[i].s);
        if (rc != bad[i].code) fail_msg("'%s': got %d, want %d", bad[i].s, rc, bad[i].code);
        assert_true(v == 4242);
        assert_true(sl_errmsg(NULL)[0] != '\0');
    }
    uint64_t v;
    assert_true(sl_seq_parse(&v, NULL) < 0);
}

/* ---- shard ids ------------------------------------------------------------ */

static void shard_id_roundtrip(void **state)
{
    (void)state;
    static const struct {
        uint32_t i;
        const char *s;
    } ok[] = {
        {0, "shardId-000000000000"},
        {1, "shardId-000000000001"},
        {42, "shardId-000000000042"},
        {9999, "shardId-000000009999"},
        {123456789, "shardId-000123456789"},
        {UINT32_MAX - 1, "shardId-004294967294"},
    };
    for (size_t k = 0; k < sizeof ok / sizeof *ok; k++) {
        char id[SL_SHARD_ID_LEN + 1];
        memset(id, 'z', sizeof id);
        sl__shard_id(id, ok[k].i);
        assert_string_equal(id, ok[k].s);
        assert_int_equal(strlen(id), SL_SHARD_ID_LEN);
        uint32_t idx = 7;
        assert_int_equal(sl__shard_id_parse(id, &idx), 0);
        assert_int_equal(idx, ok[k].i);
    }
    static const char *const bad[] = {
        "shardId-00000000000x", "shardId-0", "foo", "", "shardId-", "shardId-0000000000000",
        "ShardId-000000000000", "shardid-000000000000", "shardId_000000000000",
        "shardId-00000000000 ", " shardId-00000000000", "shardId--00000000001",
        "shardId-+00000000001",
        "shardId-004294967295",  /* SL_NO_SHARD */
        "shardId-999999999999",  /* past 32 bits */
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        uint32_t idx = 7;
        if (sl__shard_id_parse(bad[k], &idx) == 0) fail_msg("'%s' was accepted", bad[k]);
        assert_int_equal(idx, 7);
    }
    uint32_t idx;
    assert_int_not_equal(sl__shard_id_parse(NULL, &idx), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(vectors_md5_and_hash_key),
        cmocka_unit_test(vectors_hash_key_ranges),
        cmocka_unit_test(split_tiles_key_space),
        cmocka_unit_test(vectors_routing_by_split),
        cmocka_unit_test_setup_teardown(vectors_routing_streams, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(vectors_routing_batches, tu_setup, tu_teardown),
        cmocka_unit_test(md5_lanes_match_libcrypto),
        cmocka_unit_test_setup_teardown(routing_many_shards, tu_setup, tu_teardown),
        cmocka_unit_test(hash_key_parse_valid),
        cmocka_unit_test(hash_key_parse_invalid),
        cmocka_unit_test_setup_teardown(explicit_hash_key_boundaries, tu_setup, tu_teardown),
        cmocka_unit_test(partition_key_length),
        cmocka_unit_test(partition_key_utf8),
        cmocka_unit_test_setup_teardown(producer_key_validation, tu_setup, tu_teardown),
        cmocka_unit_test(seq_format_parse),
        cmocka_unit_test(shard_id_roundtrip),
    };
    return cmocka_run_group_tests_name("hashkey", tests, NULL, NULL);
}
