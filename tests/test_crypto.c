/*
** test_crypto.c -- encryption at rest: the key-file provider; data keys
** made at creation and kept only wrapped, unwrapped at open; records
** encrypted and authenticated (round trips across restarts, every bit flip
** detected, wrong or missing keys are key errors); starting, stopping and
** rotating; a SIGKILLed encrypted writer; compaction and cold storage of
** encrypted segments; nonces checked unique over a million records.
*/
#include "testutil.h"

#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define KEY_ID "arn:aws:kms:eu-west-1:111122223333:key/telemetry"

static char *keyfile(const char *root, const char *name)
{
    char *p = tu_path("%s/%s", root, name);
    assert_int_equal(sl_keyfile_create(p), 0);
    return p;
}

static void keyfile_wraps_and_unwraps(void **state)
{
    const char *root = *state;
    char *kf = keyfile(root, "master.key");
    struct stat st;
    assert_int_equal(stat(kf, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(sl_keyfile_create(kf), SL_EINUSE);
    sl_key_provider *p;
    assert_int_equal(sl_keyfile_provider_open(&p, kf), 0);
    uint8_t key[SL_DATA_KEY_BYTES], back[SL_DATA_KEY_BYTES], w[SL_WRAPPED_KEY_MAX];
    for (int i = 0; i < SL_DATA_KEY_BYTES; i++) key[i] = (uint8_t)(i * 7 + 1);
    size_t wl = sizeof w;
    assert_int_equal(p->wrap(p->ctx, KEY_ID, key, w, &wl), 0);
    assert_true(wl > SL_DATA_KEY_BYTES);
    assert_null(memmem(w, wl, key, sizeof key));             /* not in clear */
    assert_int_equal(p->unwrap(p->ctx, KEY_ID, w, wl, back), 0);
    assert_memory_equal(back, key, sizeof key);
    /* another key id, a flipped bit, a short input: key errors */
    assert_int_equal(p->unwrap(p->ctx, "other", w, wl, back), SL_EKEY);
    for (size_t b = 0; b < wl * 8; b += 37) {
        w[b / 8] ^= (uint8_t)(1u << (b % 8));
        assert_int_equal(p->unwrap(p->ctx, KEY_ID, w, wl, back), SL_EKEY);
        w[b / 8] ^= (uint8_t)(1u << (b % 8));
    }
    assert_int_equal(p->unwrap(p->ctx, KEY_ID, w, wl - 1, back), SL_EKEY);
    sl_keyfile_provider_close(p);
    /* a bad key file */
    char *bad = tu_path("%s/bad.key", root);
    FILE *f = fopen(bad, "w");
    fputs("not a key\n", f);
    fclose(f);
    assert_int_equal(sl_keyfile_provider_open(&p, bad), SL_EKEY);
    char *none = tu_path("%s/none.key", root);
    assert_int_equal(sl_keyfile_provider_open(&p, none), SL_EKEY);
    free(bad);
    free(none);
    free(kf);
}

static sl_stream *kms_stream(const char *root, const sl_key_provider *kp, int *rc)
{
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = "secret";
    c.durability = SL_DURABILITY_NONE;
    c.encryption_type = SL_ENCRYPTION_KMS;
    c.kms_key_id = KEY_ID;
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.keys = kp;
    sl_stream *s = NULL;
    *rc = sl_stream_create(&s, root, &c, &o);
    return s;
}

static void data_keys_are_made_kept_wrapped_and_loaded(void **state)
{
    const char *root = *state;
    char *kf = keyfile(root, "master.key"), *kf2 = keyfile(root, "other.key");
    sl_key_provider *p, *p2;
    assert_int_equal(sl_keyfile_provider_open(&p, kf), 0);
    assert_int_equal(sl_keyfile_provider_open(&p2, kf2), 0);
    int rc;
    /* creating an encrypted stream needs a provider */
    assert_null(kms_stream(root, NULL, &rc));
    assert_int_equal(rc, SL_EKEY);
    sl_stream *s = kms_stream(root, p, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(s->nkeys, 1);
    uint8_t dk[SL_DATA_KEY_BYTES];
    memcpy(dk, s->keys[0]->key, sizeof dk);
    assert_int_equal(sl_stream_close(s), 0);
    /* the manifest holds the key only wrapped */
    char *mp = tu_path("%s/secret/MANIFEST", root), *text;
    size_t len;
    assert_int_equal(sl__os_read_file(mp, &text, &len, 1 << 20), 0);
    char hex[2 * SL_DATA_KEY_BYTES + 1];
    for (int i = 0; i < SL_DATA_KEY_BYTES; i++) snprintf(hex + 2 * i, 3, "%02x", dk[i]);
    assert_null(strstr(text, hex));
    assert_null(memmem(text, len, dk, sizeof dk));
    assert_non_null(strstr(text, "data_key 1 "));
    assert_non_null(strstr(text, "data_key_current 1"));
    free(text);
    free(mp);
    /* opening: the right provider loads the same key; none or another is a
    ** key error, at open */
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.keys = p;
    assert_int_equal(sl_stream_open(&s, root, "secret", &o), 0);
    assert_memory_equal(s->keys[0]->key, dk, sizeof dk);
    assert_int_equal(sl_stream_close(s), 0);
    o.keys = NULL;
    assert_int_equal(sl_stream_open(&s, root, "secret", &o), SL_EKEY);
    assert_non_null(strstr(sl_errmsg(NULL), "key provider"));
    o.keys = p2;
    assert_int_equal(sl_stream_open(&s, root, "secret", &o), SL_EKEY);
    assert_non_null(strstr(sl_errmsg(NULL), "unwrap"));
    o.flags = SL_OPEN_READONLY;         /* followers too */
    assert_int_equal(sl_stream_open(&s, root, "secret", &o), SL_EKEY);
    o.keys = p;
    assert_int_equal(sl_stream_open(&s, root, "secret", &o), 0);
    assert_int_equal(sl_stream_close(s), 0);
    /* a stream without encryption needs no provider */
    tu_opts t = {0};
    s = tu_create(root, "plain", &t);
    assert_int_equal(s->nkeys, 0);
    assert_int_equal(sl_stream_close(s), 0);
    sl_keyfile_provider_close(p);
    sl_keyfile_provider_close(p2);
    free(kf);
    free(kf2);
}

/* ---- records ---------------------------------------------------------------- */

#define KEY_ID2 "arn:aws:kms:eu-west-1:111122223333:key/rotated"

typedef struct keys {
    char *kf, *kf2;
    sl_key_provider *p, *p2;
} keys;

static void keys_make(keys *k, const char *root)
{
    k->kf = keyfile(root, "master.key");
    k->kf2 = keyfile(root, "other.key");
    assert_int_equal(sl_keyfile_provider_open(&k->p, k->kf), 0);
    assert_int_equal(sl_keyfile_provider_open(&k->p2, k->kf2), 0);
}

static void keys_free(keys *k)
{
    sl_keyfile_provider_close(k->p);
    sl_keyfile_provider_close(k->p2);
    free(k->kf);
    free(k->kf2);
}

static sl_stream *enc_create(const char *root, const char *name, const sl_key_provider *kp,
                             uint32_t shards, uint64_t seg_bytes, const sl_clock *clk)
{
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = name;
    c.shard_count = shards;
    c.durability = SL_DURABILITY_NONE;
    c.segment_bytes = seg_bytes;
    c.encryption_type = SL_ENCRYPTION_KMS;
    c.kms_key_id = KEY_ID;
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.keys = kp;
    o.clock = clk;
    sl_stream *s = NULL;
    int rc = sl_stream_create(&s, root, &c, &o);
    if (rc) fprintf(stderr, "enc_create: %s\n", sl_errmsg(NULL));
    assert_int_equal(rc, 0);
    return s;
}

static sl_stream *enc_open(const char *root, const char *name, const sl_key_provider *kp,
                           uint32_t flags)
{
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.keys = kp;
    o.flags = flags;
    sl_stream *s = NULL;
    int rc = sl_stream_open(&s, root, name, &o);
    if (rc) fprintf(stderr, "enc_open: %s\n", sl_errmsg(NULL));
    assert_int_equal(rc, 0);
    return s;
}

/* Record i: key "user-<i % 37>", data "secret-payload-<i>" padded to a size
** that varies (0 bytes for every 50th). */
static size_t rec_data(char *buf, int i)
{
    if (i % 50 == 49) return 0;
    int n = snprintf(buf, 64, "secret-payload-%d|", i);
    size_t len = (size_t)n + (size_t)(i * 31) % 300;
    memset(buf + n, 'x', len - (size_t)n);
    return len;
}

static void put_range(sl_stream *s, int from, int to, uint64_t *seqs)
{
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    char key[32], data[512];
    for (int i = from; i < to; i++) {
        snprintf(key, sizeof key, "user-%d", i % 37);
        size_t n = rec_data(data, i);
        int rc = sl_put(p, key, data, n, &seqs[i]);
        if (rc) fprintf(stderr, "put_range: %s\n", sl_errmsg(p));
        assert_int_equal(rc, 0);
    }
    sl_producer_close(p);
}

/* Every record read back is record i of put_range, by its sequence number;
** returns how many of [from, to) were found. */
static int check_range(const tu_recs *r, const uint64_t *seqs, int from, int to)
{
    int found = 0;
    char key[32], data[512];
    for (size_t j = 0; j < r->n; j++) {
        int i = from;
        while (i < to && seqs[i] != r->v[j].seq) i++;
        if (i == to) continue;
        snprintf(key, sizeof key, "user-%d", i % 37);
        size_t n = rec_data(data, i);
        assert_string_equal(r->v[j].key, key);
        assert_int_equal(r->v[j].dlen, n);
        assert_memory_equal(r->v[j].data, data, n);
        found++;
    }
    return found;
}

/* Every segment file of a stream, mapped: fn(ctx, path, bytes, len). */
typedef void (*seg_fn)(void *ctx, const char *path, const uint8_t *b, size_t len);
static void each_seg_file(const char *root, const char *name, seg_fn fn, void *ctx)
{
    char *sd = tu_path("%s/%s", root, name);
    DIR *d = opendir(sd);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "shardId-", 8) != 0) continue;
        char *shd = tu_path("%s/%s", sd, e->d_name);
        DIR *d2 = opendir(shd);
        assert_non_null(d2);
        struct dirent *f;
        while ((f = readdir(d2)) != NULL) {
            size_t l = strlen(f->d_name);
            if (l < 4 || strcmp(f->d_name + l - 4, ".seg") != 0) continue;
            char *fp = tu_path("%s/%s", shd, f->d_name);
            int fd = open(fp, O_RDONLY);
            assert_true(fd >= 0);
            struct stat st;
            assert_int_equal(fstat(fd, &st), 0);
            void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
            assert_true(m != MAP_FAILED);
            fn(ctx, fp, m, (size_t)st.st_size);
            munmap(m, (size_t)st.st_size);
            close(fd);
            free(fp);
        }
        closedir(d2);
        free(shd);
    }
    closedir(d);
    free(sd);
}

static void no_clear_text(void *ctx, const char *path, const uint8_t *b, size_t len)
{
    (void)path;
    const char *needle = ctx;
    assert_null(memmem(b, len, needle, strlen(needle)));
}

static void mode_is(const char *path, unsigned mode)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    if ((st.st_mode & 0777) != mode) fail_msg("%s: mode %o, expected %o", path,
                                              st.st_mode & 0777, mode);
}

static void records_round_trip_across_restart(void **state)
{
    const char *root = *state;
    keys k;
    keys_make(&k, root);
    sl_stream *s = enc_create(root, "enc", k.p, 2, SL_SEGMENT_BYTES_MIN, NULL);
    enum { N = 600 };
    uint64_t seqs[N + 1];
    put_range(s, 0, N, seqs);
    /* one large record, many segments' worth */
    size_t big = 300 * 1024;
    char *bd = malloc(big);
    assert_non_null(bd);
    for (size_t i = 0; i < big; i++) bd[i] = (char)('a' + i % 23);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    assert_int_equal(sl_put(p, "big-one", bd, big, &seqs[N]), 0);
    sl_producer_close(p);
    for (int round = 0; round < 2; round++) {
        tu_recs r = {0};
        tu_read_all(s, &r);
        assert_int_equal(r.corrupt, 0);
        assert_int_equal(r.n, N + 1);
        assert_int_equal(check_range(&r, seqs, 0, N), N);
        bool seen = false;
        for (size_t j = 0; j < r.n; j++)
            if (r.v[j].seq == seqs[N]) {
                assert_string_equal(r.v[j].key, "big-one");
                assert_int_equal(r.v[j].dlen, big);
                assert_memory_equal(r.v[j].data, bd, big);
                seen = true;
            }
        assert_true(seen);
        tu_recs_free(&r);
        assert_int_equal(sl_stream_close(s), 0);
        s = enc_open(root, "enc", k.p, 0);
    }
    /* on disk: no key or data in clear; records flagged; files 0600 and
    ** directories 0700 */
    each_seg_file(root, "enc", no_clear_text, "secret-payload");
    each_seg_file(root, "enc", no_clear_text, "user-1");
    each_seg_file(root, "enc", no_clear_text, "abcdefghijklmnopqrstuvw");
    char *seg = tu_seg_path(root, "enc", 0, 1);
    int fd = open(seg, O_RDONLY);
    uint8_t h[8];
    assert_int_equal(pread(fd, h, 8, SL_SEG_HDR), 8);
    close(fd);
    assert_int_equal(sl__ld32(h + 4), 1);                /* rec_flags ENCRYPTED */
    mode_is(seg, 0600);
    free(seg);
    char *pth = tu_path("%s/enc", root);
    mode_is(pth, 0700);
    free(pth);
    pth = tu_path("%s/enc/shardId-000000000000", root);
    mode_is(pth, 0700);
    free(pth);
    pth = tu_path("%s/enc/MANIFEST", root);
    mode_is(pth, 0600);
    free(pth);
    assert_int_equal(sl_stream_close(s), 0);
    free(bd);
    keys_free(&k);
}

/* The key version of every record of the stream, in file order per shard. */
typedef struct versions {
    uint32_t v[256];
    size_t n;
} versions;

static void collect_versions(void *ctx, const char *path, const uint8_t *b, size_t len)
{
    (void)path;
    versions *vs = ctx;
    for (uint64_t off = SL_SEG_HDR; off < len;) {
        sl_recview v;
        if (sl__rec_parse(b + off, len - off, true, &v) != SL_REC_OK) break;
        assert_true(vs->n < 256);
        vs->v[vs->n++] = v.flags ? sl__ld32(b + off + 32) : 0;
        off += v.span;
    }
}

static void start_stop_rotate(void **state)
{
    const char *root = *state;
    keys k;
    keys_make(&k, root);
    tu_opts t = {0};
    sl_stream *s = tu_create(root, "ssr", &t);      /* NONE, no provider */
    uint64_t seqs[50];
    put_range(s, 0, 10, seqs);
    assert_int_equal(sl_stream_start_encryption(s, KEY_ID), SL_EKEY);   /* no provider */
    assert_int_equal(sl_stream_rotate_key(s), SL_EINVAL);
    assert_int_equal(sl_stream_close(s), 0);
    s = enc_open(root, "ssr", k.p, 0);
    assert_int_equal(sl_stream_rotate_key(s), SL_EINVAL);             /* not encrypting */
    assert_int_equal(sl_stream_start_encryption(s, ""), SL_EVALIDATION);
    assert_int_equal(sl_stream_start_encryption(s, NULL), SL_EVALIDATION);
    assert_int_equal(sl_stream_start_encryption(s, KEY_ID), 0);
    assert_int_equal(sl_stream_start_encryption(s, KEY_ID), 0);       /* no-op */
    /* a follower opened now learns of the rotations below */
    sl_stream *f = enc_open(root, "ssr", k.p, SL_OPEN_READONLY);
    put_range(s, 10, 20, seqs);
    assert_int_equal(sl_stream_rotate_key(s), 0);
    put_range(s, 20, 30, seqs);
    tu_recs fr = {0};
    tu_read_all(f, &fr);
    assert_int_equal(fr.corrupt, 0);
    assert_int_equal(check_range(&fr, seqs, 0, 30), 30);
    tu_recs_free(&fr);
    /* another master key id: every data key rewrapped under it */
    assert_int_equal(sl_stream_start_encryption(s, KEY_ID2), 0);
    put_range(s, 30, 40, seqs);
    sl_stream_desc *d;
    assert_int_equal(sl_stream_describe(&d, s), 0);
    assert_int_equal(d->encryption_type, SL_ENCRYPTION_KMS);
    assert_string_equal(d->kms_key_id, KEY_ID2);
    sl_stream_desc_free(d);
    assert_int_equal(sl_stream_stop_encryption(s), 0);
    assert_int_equal(sl_stream_stop_encryption(s), 0);                /* no-op */
    assert_int_equal(sl_stream_rotate_key(s), SL_EINVAL);
    put_range(s, 40, 50, seqs);
    assert_int_equal(sl_stream_describe(&d, s), 0);
    assert_int_equal(d->encryption_type, SL_ENCRYPTION_NONE);
    sl_stream_desc_free(d);
    assert_int_equal(sl_stream_close(s), 0);
    assert_int_equal(sl_stream_close(f), 0);
    /* on disk: clear, key 1, key 2, key 3 (made by the restart under the
    ** new id), clear */
    versions vs = {{0}, 0};
    each_seg_file(root, "ssr", collect_versions, &vs);
    assert_int_equal(vs.n, 50);
    for (int i = 0; i < 50; i++) {
        uint32_t want = i < 10 ? 0 : i < 40 ? (uint32_t)(i / 10) : 0;
        if (vs.v[i] != want) fail_msg("record %d: key version %u, want %u", i, vs.v[i], want);
    }
    /* every record readable after a restart, under both keys and in clear */
    s = enc_open(root, "ssr", k.p, 0);
    tu_recs r = {0};
    tu_read_all(s, &r);
    assert_int_equal(r.corrupt, 0);
    assert_int_equal(check_range(&r, seqs, 0, 50), 50);
    tu_recs_free(&r);
    assert_int_equal(sl_stream_close(s), 0);
    /* the old master key no longer unwraps them: they were rewrapped */
    char *mp = tu_path("%s/ssr/MANIFEST", root), *text;
    size_t len;
    assert_int_equal(sl__os_read_file(mp, &text, &len, 1 << 20), 0);
    assert_non_null(strstr(text, "data_key 3 "));
    assert_non_null(strstr(text, "data_key_current 0"));
    assert_non_null(strstr(text, "encryption NONE"));
    free(text);
    free(mp);
    /* stopped: opening needs no provider, but encrypted records are then a
    ** key error at read, never garbage; clear ones read */
    sl_stream *n = enc_open(root, "ssr", NULL, 0);
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, n, "shardId-000000000000", SL_ITER_AFTER_SEQUENCE_NUMBER,
                                  seqs[9]), 0);
    sl_record recs[10];
    sl_read_result res;
    assert_int_equal(sl_iter_read(it, recs, 10, &res), SL_EKEY);
    assert_int_equal(res.count, 0);
    assert_non_null(strstr(sl_errmsg(it), "data key 1"));
    assert_int_equal(sl_iter_read(it, recs, 10, &res), SL_EKEY);    /* it stays */
    sl_iter_close(it);
    assert_int_equal(sl_iter_open(&it, n, "shardId-000000000000", SL_ITER_TRIM_HORIZON, 0), 0);
    assert_int_equal(sl_iter_read(it, recs, 10, &res), 0);          /* the clear ones */
    assert_int_equal(res.count, 10);
    assert_int_equal(recs[9].sequence, seqs[9]);
    assert_int_equal(sl_iter_read(it, recs, 10, &res), SL_EKEY);
    sl_iter_close(it);
    assert_int_equal(sl_iter_open(&it, n, "shardId-000000000000", SL_ITER_AFTER_SEQUENCE_NUMBER,
                                  seqs[39]), 0);
    assert_int_equal(sl_iter_read(it, recs, 10, &res), 0);
    assert_int_equal(res.count, 10);
    sl_iter_close(it);
    assert_int_equal(sl_stream_start_encryption(n, KEY_ID), SL_EKEY);
    assert_int_equal(sl_stream_close(n), 0);
    /* the old master key cannot open it any more (rewrapped); wrong key */
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.keys = k.p2;
    assert_int_equal(sl_stream_open(&n, root, "ssr", &o), SL_EKEY);
    keys_free(&k);
}

/* ---- every bit flip ---------------------------------------------------------- */

static void every_bit_flip_detected(void **state)
{
    const char *root = *state;
    keys k;
    keys_make(&k, root);
    /* the sample is the second record of a sealed segment (in the active
    ** one of a dead writer, damage followed by no index entry would be a
    ** torn tail: dropped, not reported) */
    sl_stream *s = enc_create(root, "flip", k.p, 1, SL_SEGMENT_BYTES_MIN, NULL);
    enum { N = 400 };
    uint64_t seqs[N];
    put_range(s, 0, N, seqs);
    assert_int_equal(sl_stream_close(s), 0);
    assert_true(tu_nsegs(root, "flip", 0) >= 2);
    char *seg = tu_seg_path(root, "flip", 0, 1);
    int fd = open(seg, O_RDWR);
    assert_true(fd >= 0);
    uint8_t first[8];
    assert_int_equal(pread(fd, first, 8, SL_SEG_HDR), 8);
    off_t at = SL_SEG_HDR + (off_t)sl__pad8(sl__ld32(first));   /* the second record */
    uint8_t rec[1024];
    assert_int_equal(pread(fd, rec, 8, at), 8);
    uint32_t rb = sl__ld32(rec);
    assert_true(rb < sizeof rec);
    assert_int_equal(pread(fd, rec, rb, at), (ssize_t)rb);
    tu_reports rep = {0};
    tu_opts to = {.keys = k.p, .reports = &rep, .flags = SL_OPEN_READONLY};
    int flips = 0, tags = 0;
    for (int fixsum = 0; fixsum < 2; fixsum++) {
        for (uint32_t bit = 0; bit < rb * 8; bit++) {
            uint8_t bad[1024];
            memcpy(bad, rec, rb);
            bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
            /* fixsum: an attacker who also fixes the XXH3 (the GCM tag must
            ** catch it); flips in the checksum itself are then moot */
            if (fixsum) {
                if (bit / 8 >= rb - 8) continue;
                sl__st64(bad + rb - 8, sl__xxh3(bad, rb - 8));
            }
            assert_int_equal(pwrite(fd, bad, rb, at), (ssize_t)rb);
            memset(&rep, 0, sizeof rep);
            s = tu_open(root, "flip", &to);
            tu_recs r = {0};
            tu_read_all(s, &r);
            /* never the damaged record, never garbage: the other two, as
            ** written, and the damage reported */
            assert_true(r.n < N);
            for (size_t j = 0; j < r.n; j++) assert_true(r.v[j].seq != seqs[1]);
            assert_int_equal(check_range(&r, seqs, 0, N), (int)r.n);
            if (r.corrupt == 0) fail_msg("bit %u (fixsum %d): no corruption reported", bit, fixsum);
            /* a flip in the ciphertext or tag with a good checksum: the tag
            ** catches it, and the report names shard, segment and offset */
            if (fixsum && bit / 8 >= SL_REC_ENC_HDR) {
                if (!strstr(rep.all, "fails authentication"))
                    fail_msg("bit %u: %s", bit, rep.all);
                assert_non_null(strstr(rep.all, "shardId-000000000000 segment "
                                                "0000000000000001 offset"));
                tags++;
            }
            tu_recs_free(&r);
            assert_int_equal(sl_stream_close(s), 0);
            flips++;
        }
    }
    assert_true(flips > 1000);
    assert_true(tags > 500);
    assert_int_equal(pwrite(fd, rec, rb, at), (ssize_t)rb);         /* healed */
    close(fd);
    s = tu_open(root, "flip", &to);
    tu_recs r = {0};
    tu_read_all(s, &r);
    assert_int_equal(r.n, N);
    assert_int_equal(r.corrupt, 0);
    tu_recs_free(&r);
    assert_int_equal(sl_stream_close(s), 0);
    free(seg);
    keys_free(&k);
}

/* ---- compaction and cold storage ----------------------------------------------- */

#define T0 1700000000000LL
#define HOUR 3600000LL

static bool cold_flag_seen;
static void find_cold(void *ctx, const char *path, const uint8_t *b, size_t len)
{
    (void)ctx;
    (void)path;
    if (len >= SL_SEG_HDR && sl__ld32(b + 12) == 1) cold_flag_seen = true;
}

static void same_records(const tu_recs *a, const tu_recs *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t j = 0; j < a->n; j++) {
        assert_int_equal(a->v[j].seq, b->v[j].seq);
        assert_string_equal(a->v[j].key, b->v[j].key);
        assert_int_equal(a->v[j].dlen, b->v[j].dlen);
        assert_memory_equal(a->v[j].data, b->v[j].data, a->v[j].dlen);
    }
}

static void compaction_and_cold_of_encrypted_segments(void **state)
{
    const char *root = *state;
    keys k;
    keys_make(&k, root);
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = enc_create(root, "cc", k.p, 1, SL_SEGMENT_BYTES_MIN, sl_vclock_clock(vc));
    assert_int_equal(sl_stream_set_compaction(s, SL_COMPACTION_KEY), 0);
    enum { N = 2000, KEYS = 37 };
    uint64_t *seqs = calloc(2 * N, sizeof *seqs);
    assert_non_null(seqs);
    put_range(s, 0, N, seqs);
    assert_true(tu_nsegs(root, "cc", 0) >= 5);
    sl_maint_stats st;
    assert_int_equal(sl_stream_maintain(s, -1, NULL, NULL, &st), 0);
    assert_true(st.segments_compacted >= 3);
    assert_true(st.records_compacted > N / 2);
    tu_recs after = {0};
    tu_read_all(s, &after);
    assert_int_equal(after.corrupt, 0);
    /* exactly what was written, in order, fewer, and the newest of each key
    ** kept (compaction had to decrypt the keys to find them) */
    assert_int_equal(check_range(&after, seqs, 0, N), (int)after.n);
    assert_true(after.n < N / 2);
    for (size_t j = 1; j < after.n; j++) assert_true(after.v[j].seq > after.v[j - 1].seq);
    for (int key = 0; key < KEYS; key++) {
        int newest = N - 1;
        while (newest % KEYS != key) newest--;
        bool found = false;
        for (size_t j = 0; j < after.n; j++) found |= after.v[j].seq == seqs[newest];
        if (!found) fail_msg("the newest record of key %d is gone", key);
    }
    /* cold: zstd blocks of encrypted records, read back the same (more
    ** records first, uncompacted: compaction left the sealed segments empty,
    ** every key's newest record being in the active one) */
    assert_int_equal(sl_stream_set_compaction(s, SL_COMPACTION_NONE), 0);
    put_range(s, N, 2 * N, seqs);
    tu_recs_free(&after);
    tu_read_all(s, &after);
    assert_int_equal(check_range(&after, seqs, 0, 2 * N), (int)after.n);
    assert_int_equal(sl_stream_set_cold_after(s, 1), 0);
    sl_vclock_advance(vc, 2 * HOUR);
    assert_int_equal(sl_stream_maintain(s, -1, NULL, NULL, &st), 0);
    assert_true(st.segments_cold >= 3);
    assert_int_equal(st.damaged_skipped, 0);
    cold_flag_seen = false;
    each_seg_file(root, "cc", find_cold, NULL);
    assert_true(cold_flag_seen);
    each_seg_file(root, "cc", no_clear_text, "secret-payload");
    for (int round = 0; round < 2; round++) {
        tu_recs cold = {0};
        tu_read_all(s, &cold);
        assert_int_equal(cold.corrupt, 0);
        same_records(&after, &cold);
        tu_recs_free(&cold);
        assert_int_equal(sl_stream_close(s), 0);
        sl_open_opts o = SL_OPEN_OPTS_INIT;
        o.keys = k.p;
        o.clock = sl_vclock_clock(vc);
        assert_int_equal(sl_stream_open(&s, root, "cc", &o), 0);
    }
    assert_int_equal(sl_stream_close(s), 0);
    tu_recs_free(&after);
    free(seqs);
    sl_vclock_free(vc);
    keys_free(&k);
}

/* ---- resharding, dedicated delivery and retention of encrypted records ----------- */

static int collect(void *ctx, const sl_delivery *d)
{
    for (size_t i = 0; i < d->count; i++) tu_recs_add(ctx, &d->records[i]);
    return 0;
}

static void reshard_delivery_and_retention_of_encrypted(void **state)
{
    const char *root = *state;
    keys k;
    keys_make(&k, root);
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, T0), 0);
    sl_stream *s = enc_create(root, "rdr", k.p, 1, SL_SEGMENT_BYTES_MIN, sl_vclock_clock(vc));
    uint64_t seqs[200];
    put_range(s, 0, 100, seqs);
    /* children seal with their own shard index in the associated data */
    assert_int_equal(sl_stream_split_shard(s, "shardId-000000000000",
                                           "170141183460469231731687303715884105728"), 0);
    put_range(s, 100, 200, seqs);
    tu_recs all = {0};
    tu_read_all(s, &all);
    assert_int_equal(all.corrupt, 0);
    assert_int_equal(all.n, 200);
    assert_int_equal(check_range(&all, seqs, 0, 200), 200);
    tu_recs_free(&all);
    /* a dedicated consumer's deliveries are decrypted too */
    assert_int_equal(sl_consumer_register(s, "efo", SL_CONSUMER_DEDICATED), 0);
    sl_consumer *c;
    assert_int_equal(sl_consumer_open(&c, s, "efo"), 0);
    sl_sched *sc;
    assert_int_equal(sl_sched_new(&sc, s), 0);
    tu_recs got = {0};
    sl_sub *sub;
    assert_int_equal(sl_subscribe(&sub, sc, c, "shardId-000000000000", SL_ITER_TRIM_HORIZON, 0,
                                  30, collect, &got), 0);
    for (int i = 0; i < 100 && got.n < 100; i++) assert_true(sl_sched_dispatch(sc, 0) >= 0);
    assert_int_equal(got.n, 100);
    assert_int_equal(check_range(&got, seqs, 0, 100), 100);
    tu_recs_free(&got);
    sl_unsubscribe(sub);
    sl_sched_free(sc);
    assert_int_equal(sl_consumer_close(c), 0);
    /* retention: expired encrypted records are gone for readers and
    ** deleted by maintenance like any others */
    sl_vclock_advance(vc, 25 * HOUR);
    tu_read_all(s, &all);
    assert_int_equal(all.n, 0);
    sl_maint_stats st;
    assert_int_equal(sl_stream_maintain(s, -1, NULL, NULL, &st), 0);
    assert_true(st.segments_deleted + st.segments_sealed >= 1);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
    keys_free(&k);
}

/* ---- a SIGKILLed encrypted writer ------------------------------------------------ */

static void crash_child(const char *root, const char *kf, int fd, int round)
{
    sl_key_provider *kp;
    if (sl_keyfile_provider_open(&kp, kf)) _exit(2);
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.keys = kp;
    /* odd rounds: ALWAYS, through the journal (group commit) */
    o.durability = round % 2 ? SL_DURABILITY_ALWAYS : SL_DURABILITY_NONE;
    sl_stream *s;
    if (sl_stream_open(&s, root, "crash", &o)) _exit(3);
    sl_producer *p;
    if (sl_producer_open(&p, s)) _exit(4);
    char key[32], data[600];
    for (int i = 0;; i++) {
        snprintf(key, sizeof key, "r%d-k%d", round, i % 13);
        int n = snprintf(data, sizeof data, "round %d record %d ", round, i);
        memset(data + n, 'a' + i % 26, (size_t)(i * 13) % 500);
        uint64_t a[2] = {(uint64_t)i, 0};
        if (sl_put(p, key, data, (size_t)n + (size_t)(i * 13) % 500, &a[1])) _exit(5);
        if (write(fd, a, sizeof a) != sizeof a) _exit(6);
    }
}

static void crash_mid_append_keeps_earlier_records_decryptable(void **state)
{
    const char *root = *state;
    keys k;
    keys_make(&k, root);
    sl_stream *s = enc_create(root, "crash", k.p, 2, SL_SEGMENT_BYTES_MIN, NULL);
    assert_int_equal(sl_stream_close(s), 0);
    enum { ROUNDS = 6, MAXACK = 20000 };
    uint64_t (*acked)[2] = calloc(ROUNDS * MAXACK, sizeof *acked);
    size_t nack[ROUNDS] = {0};
    assert_non_null(acked);
    for (int round = 0; round < ROUNDS; round++) {
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            crash_child(root, k.kf, pfd[1], round);
        }
        close(pfd[1]);
        size_t target = round % 2 ? 50 + (size_t)round * 20 : 200 + (size_t)round * 1500, n = 0;
        uint64_t a[2];
        bool killed = false;
        for (;;) {
            if (!killed && n >= target) {
                kill(pid, SIGKILL);
                killed = true;
            }
            ssize_t r = read(pfd[0], a, sizeof a);
            if (r == 0) break;
            if (r < 0 && errno == EINTR) continue;
            assert_int_equal(r, (ssize_t)sizeof a);
            if (n < MAXACK) memcpy(acked[round * MAXACK + n], a, sizeof a);
            n++;
        }
        close(pfd[0]);
        nack[round] = n < MAXACK ? n : MAXACK;
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)) fail_msg("the child failed");
        /* every acknowledged record of every round so far: present and
        ** decrypted to what was written; nothing corrupt */
        tu_reports rep = {0};
        tu_opts to = {.keys = k.p, .reports = &rep};
        s = tu_open(root, "crash", &to);
        tu_recs r = {0};
        tu_read_all(s, &r);
        assert_int_equal(r.corrupt, 0);
        assert_int_equal(rep.count, 0);
        for (int rd = 0; rd <= round; rd++) {
            for (size_t j = 0; j < nack[rd]; j++) {
                uint64_t i = acked[rd * MAXACK + j][0], seq = acked[rd * MAXACK + j][1];
                size_t x = 0;
                while (x < r.n && r.v[x].seq != seq) x++;
                if (x == r.n) fail_msg("round %d: acknowledged record %" PRIu64 " lost", rd, i);
                char want[64];
                int wn = snprintf(want, sizeof want, "round %d record %" PRIu64 " ", rd, i);
                assert_true(r.v[x].dlen >= (size_t)wn);
                assert_memory_equal(r.v[x].data, want, (size_t)wn);
            }
        }
        tu_recs_free(&r);
        assert_int_equal(sl_stream_close(s), 0);
    }
    free(acked);
    keys_free(&k);
}

/* ---- rotation racing producers --------------------------------------------------- */

typedef struct racer {
    sl_stream *s;
    int id, n;
    uint64_t *seqs;
} racer;

static void *race_put(void *arg)
{
    racer *r = arg;
    sl_producer *p;
    if (sl_producer_open(&p, r->s)) return (void *)1;
    char key[32], data[64];
    for (int i = 0; i < r->n; i++) {
        snprintf(key, sizeof key, "t%d-%d", r->id, i % 11);
        int n = snprintf(data, sizeof data, "thread %d record %d", r->id, i);
        if (sl_put(p, key, data, (size_t)n, &r->seqs[i])) return (void *)2;
    }
    sl_producer_close(p);
    return NULL;
}

static void rotation_races_producers(void **state)
{
    const char *root = *state;
    keys k;
    keys_make(&k, root);
    sl_stream *s = enc_create(root, "race", k.p, 2, SL_SEGMENT_BYTES_MIN, NULL);
    enum { T = 2, N = 3000 };
    racer r[T];
    pthread_t th[T];
    for (int t = 0; t < T; t++) {
        r[t] = (racer){s, t, N, calloc(N, sizeof(uint64_t))};
        assert_non_null(r[t].seqs);
        assert_int_equal(pthread_create(&th[t], NULL, race_put, &r[t]), 0);
    }
    /* rotate, stop and start while they put */
    for (int i = 0; i < 30; i++) {
        int rc = i % 10 == 4 ? sl_stream_stop_encryption(s)
                 : i % 10 == 5 ? sl_stream_start_encryption(s, KEY_ID)
                               : sl_stream_rotate_key(s);
        assert_int_equal(rc, 0);
    }
    for (int t = 0; t < T; t++) {
        void *ret;
        assert_int_equal(pthread_join(th[t], &ret), 0);
        assert_null(ret);
    }
    for (int round = 0; round < 2; round++) {
        tu_recs all = {0};
        tu_read_all(s, &all);
        assert_int_equal(all.corrupt, 0);
        assert_int_equal(all.n, T * N);
        for (size_t j = 0; j < all.n; j++) {
            int t, i;
            assert_int_equal(sscanf(all.v[j].data, "thread %d record %d", &t, &i), 2);
            assert_true(t >= 0 && t < T && i >= 0 && i < N);
            assert_int_equal(r[t].seqs[i], all.v[j].seq);
        }
        tu_recs_free(&all);
        assert_int_equal(sl_stream_close(s), 0);
        s = enc_open(root, "race", k.p, 0);
    }
    assert_int_equal(sl_stream_close(s), 0);
    for (int t = 0; t < T; t++) free(r[t].seqs);
    keys_free(&k);
}

/* ---- nonces ---------------------------------------------------------------------- */

typedef struct nonce_set {
    uint8_t (*v)[16];                 /* key version, seq, salt */
    size_t n, cap;
} nonce_set;

static void collect_nonces(void *ctx, const char *path, const uint8_t *b, size_t len)
{
    (void)path;
    nonce_set *ns = ctx;
    for (uint64_t off = SL_SEG_HDR; off < len;) {
        sl_recview v;
        if (sl__rec_parse(b + off, len - off, true, &v) != SL_REC_OK) break;
        assert_true(v.flags == SL_REC_ENC);
        if (ns->n == ns->cap) {
            ns->cap = ns->cap ? 2 * ns->cap : 1 << 20;
            ns->v = realloc(ns->v, ns->cap * sizeof *ns->v);
            assert_non_null(ns->v);
        }
        memcpy(ns->v[ns->n], b + off + 32, 4);              /* key version */
        memcpy(ns->v[ns->n] + 4, b + off + 8, 8);           /* nonce: seq ... */
        memcpy(ns->v[ns->n] + 12, b + off + 36, 4);         /* ... and salt */
        ns->n++;
        off += v.span;
    }
}

static int cmp16(const void *a, const void *b) { return memcmp(a, b, 16); }

static void no_nonce_repeats_over_a_million_records(void **state)
{
    const char *root = *state;
    keys k;
    keys_make(&k, root);
    sl_stream *s = enc_create(root, "nonce", k.p, 4, 8u << 20, NULL);
    enum { OPENS = 5, PER_OPEN = 210000, BATCH = 500 };
    sl_put_entry e[BATCH];
    sl_put_result res[BATCH];
    char keyb[BATCH][24];
    uint64_t payload = 0;
    for (int o = 0; o < OPENS; o++) {
        if (o == 3) assert_int_equal(sl_stream_rotate_key(s), 0);
        sl_producer *p;
        assert_int_equal(sl_producer_open(&p, s), 0);
        for (int b = 0; b < PER_OPEN / BATCH; b++) {
            for (int i = 0; i < BATCH; i++) {
                snprintf(keyb[i], sizeof keyb[i], "k%d", (b * BATCH + i) % 1009);
                e[i] = (sl_put_entry){keyb[i], &payload, 8, NULL};
            }
            size_t failed;
            assert_int_equal(sl_producer_put_batch(p, e, BATCH, res, &failed), 0);
            assert_int_equal(failed, 0);
            payload++;
        }
        sl_producer_close(p);
        assert_int_equal(sl_stream_close(s), 0);
        s = enc_open(root, "nonce", k.p, 0);
    }
    assert_int_equal(sl_stream_close(s), 0);
    /* every nonce, read from the files: unique per key version */
    nonce_set ns = {0};
    each_seg_file(root, "nonce", collect_nonces, &ns);
    assert_int_equal(ns.n, (size_t)OPENS * PER_OPEN);
    assert_true(ns.n > 1000000);
    qsort(ns.v, ns.n, sizeof *ns.v, cmp16);
    for (size_t i = 1; i < ns.n; i++)
        if (!memcmp(ns.v[i], ns.v[i - 1], 16)) fail_msg("nonce repeated (entry %zu)", i);
    free(ns.v);
    keys_free(&k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(keyfile_wraps_and_unwraps, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(data_keys_are_made_kept_wrapped_and_loaded, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(records_round_trip_across_restart, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(start_stop_rotate, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(every_bit_flip_detected, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(compaction_and_cold_of_encrypted_segments, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(reshard_delivery_and_retention_of_encrypted, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(crash_mid_append_keeps_earlier_records_decryptable,
                                        tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(rotation_races_producers, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(no_nonce_repeats_over_a_million_records, tu_setup,
                                        tu_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
