/*
** testutil.h -- helpers shared by the cmocka tests.  Header-only; each test
** program includes it once.  Tests link the static archive, so they may use
** lib/ internals (internal.h), above all the OS shim sl__os.
**
** Conventions: a test's `state` is a fresh temporary root directory (setup
** tu_setup, teardown tu_teardown, which also restores the OS shim).  No test
** sleeps to wait for time: streams that need time use a virtual clock.
*/
#ifndef SL_TESTUTIL_H
#define SL_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

#define TU_UNUSED __attribute__((unused))

/* ---- temporary directories ---------------------------------------------- */

static TU_UNUSED char *tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *p;
    if (asprintf(&p, "%s/shardlog-test-XXXXXX", base && *base ? base : "/tmp") < 0) return NULL;
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

static TU_UNUSED void tu_rmrf(const char *path)
{
    sl__os_reset();
    sl__os_rmtree(path);
}

static TU_UNUSED int tu_setup(void **state)
{
    char *d = tu_tmpdir();
    if (!d) return -1;
    *state = d;
    return 0;
}

static TU_UNUSED int tu_teardown(void **state)
{
    sl__os_reset();
    if (*state) {
        tu_rmrf(*state);
        free(*state);
    }
    return 0;
}

static TU_UNUSED char *tu_path(const char *fmt, ...)
{
    va_list ap;
    char *p;
    va_start(ap, fmt);
    if (vasprintf(&p, fmt, ap) < 0) p = NULL;
    va_end(ap);
    return p;
}

/* ---- damage reports ----------------------------------------------------- */

typedef struct tu_reports {
    int count;
    int last_code;
    char last[512];
    char all[4096];
} tu_reports;

static TU_UNUSED void tu_report_fn(void *ctx, int code, const char *msg)
{
    tu_reports *r = ctx;
    r->count++;
    r->last_code = code;
    snprintf(r->last, sizeof r->last, "%s", msg);
    size_t n = strlen(r->all);
    snprintf(r->all + n, sizeof r->all - n, "%s\n", msg);
}

/* ---- streams ------------------------------------------------------------ */

typedef struct tu_opts {
    uint32_t shards;                 /* 0: 1 */
    sl_durability durability;        /* 0: NONE (fast tests) */
    uint64_t segment_bytes;          /* 0: 64 KiB (roll-overs happen) */
    uint32_t max_record_kib;
    const sl_clock *clock;
    tu_reports *reports;
    uint32_t flags;
    const sl_key_provider *keys;     /* streams with encryption KMS */
} tu_opts;

static TU_UNUSED sl_open_opts tu_open_opts(const tu_opts *o)
{
    sl_open_opts oo = SL_OPEN_OPTS_INIT;
    if (o) {
        oo.clock = o->clock;
        oo.flags = o->flags;
        oo.keys = o->keys;
        if (o->reports) {
            oo.report = tu_report_fn;
            oo.report_ctx = o->reports;
        }
    }
    return oo;
}

/* Create <root>/<name> and open it for writing; asserts success. */
static TU_UNUSED sl_stream *tu_create(const char *root, const char *name, const tu_opts *o)
{
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = name;
    c.shard_count = o && o->shards ? o->shards : 1;
    c.durability = o && o->durability ? o->durability : SL_DURABILITY_NONE;
    c.segment_bytes = o && o->segment_bytes ? o->segment_bytes : SL_SEGMENT_BYTES_MIN;
    c.max_record_size_kib = o ? o->max_record_kib : 0;
    sl_open_opts oo = tu_open_opts(o);
    sl_stream *s = NULL;
    int rc = sl_stream_create(&s, root, &c, &oo);
    if (rc) fprintf(stderr, "tu_create: %s\n", sl_errmsg(NULL));
    assert_int_equal(rc, 0);
    assert_non_null(s);
    return s;
}

static TU_UNUSED sl_stream *tu_open(const char *root, const char *name, const tu_opts *o)
{
    sl_open_opts oo = tu_open_opts(o);
    sl_stream *s = NULL;
    int rc = sl_stream_open(&s, root, name, &oo);
    if (rc) fprintf(stderr, "tu_open: %s\n", sl_errmsg(NULL));
    assert_int_equal(rc, 0);
    return s;
}

/* Put one record whose data is "<key>:<i>"; returns its sequence number. */
static TU_UNUSED uint64_t tu_put(sl_producer *p, const char *key, int i)
{
    char data[1100];
    int n = snprintf(data, sizeof data, "%s:%d", key, i);
    if (n >= (int)sizeof data) n = (int)sizeof data - 1;
    uint64_t seq = 0;
    int rc = sl_put(p, key, data, (size_t)n, &seq);
    if (rc) fprintf(stderr, "tu_put: %s\n", sl_errmsg(p));
    assert_int_equal(rc, 0);
    return seq;
}

/* A record copied out of the mapping. */
typedef struct tu_rec {
    uint64_t seq;
    int64_t ms;
    char key[1025];
    size_t dlen;
    char *data;
} tu_rec;

typedef struct tu_recs {
    size_t n, cap;
    tu_rec *v;
    int corrupt;                     /* SL_ECORRUPT reads met */
} tu_recs;

static TU_UNUSED void tu_recs_free(tu_recs *r)
{
    for (size_t i = 0; i < r->n; i++) free(r->v[i].data);
    free(r->v);
    memset(r, 0, sizeof *r);
}

static TU_UNUSED void tu_recs_add(tu_recs *r, const sl_record *x)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
        assert_non_null(r->v);
    }
    tu_rec *o = &r->v[r->n++];
    o->seq = x->sequence;
    o->ms = x->arrival_ms;
    assert_true(x->key_len <= 1024);
    memcpy(o->key, x->partition_key, x->key_len);
    o->key[x->key_len] = '\0';
    o->dlen = x->data_len;
    o->data = malloc(x->data_len + 1);
    assert_non_null(o->data);
    memcpy(o->data, x->data, x->data_len);
    o->data[x->data_len] = '\0';
}

/* Read an iterator to its current end (until a read returns nothing),
** counting SL_ECORRUPT results; asserts no other error. */
static TU_UNUSED void tu_drain(sl_iter *it, tu_recs *out)
{
    static sl_record recs[1000];
    for (int guard = 0; guard < 1000000; guard++) {
        sl_read_result r;
        int rc = sl_iter_read(it, recs, 1000, &r);
        if (rc == SL_ECORRUPT) {
            out->corrupt++;
            continue;
        }
        if (rc) fprintf(stderr, "tu_drain: %s\n", sl_errmsg(it));
        assert_int_equal(rc, 0);
        if (r.count == 0) return;
        for (size_t i = 0; i < r.count; i++) tu_recs_add(out, &recs[i]);
    }
    fail_msg("tu_drain: no end");
}

/* Every record of shard `shard_id` from TRIM_HORIZON. */
static TU_UNUSED void tu_read_shard(sl_stream *s, const char *shard_id, tu_recs *out)
{
    sl_iter *it;
    int rc = sl_iter_open(&it, s, shard_id, SL_ITER_TRIM_HORIZON, 0);
    if (rc) fprintf(stderr, "tu_read_shard: %s\n", sl_errmsg(s));
    assert_int_equal(rc, 0);
    tu_drain(it, out);
    sl_iter_close(it);
}

/* Every record of every shard, shard by shard. */
static TU_UNUSED void tu_read_all(sl_stream *s, tu_recs *out)
{
    sl_shard_list *l;
    assert_int_equal(sl_stream_list_shards(&l, s), 0);
    for (size_t i = 0; i < l->count; i++) tu_read_shard(s, l->shards[i].shard_id, out);
    sl_shard_list_free(l);
}

/* The sequence number of the first record an iterator of (type, arg)
** reads in shard_id: there must be one. */
static TU_UNUSED uint64_t tu_first_seq(sl_stream *s, const char *shard_id, sl_iter_type type,
                                       uint64_t arg)
{
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, s, shard_id, type, arg), 0);
    sl_record r;
    sl_read_result res;
    assert_int_equal(sl_iter_read(it, &r, 1, &res), 0);
    assert_int_equal(res.count, 1);
    sl_iter_close(it);
    return r.sequence;
}

static TU_UNUSED int tu_count_files(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    size_t sl = suffix ? strlen(suffix) : 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        size_t l = strlen(e->d_name);
        if (!suffix || (l >= sl && !strcmp(e->d_name + l - sl, suffix))) n++;
    }
    closedir(d);
    return n;
}

/* Number of segment files of shard `shard` of stream root/name. */
static TU_UNUSED int tu_nsegs(const char *root, const char *name, uint32_t shard)
{
    char *d = tu_path("%s/%s/shardId-%012u", root, name, shard);
    int n = tu_count_files(d, ".seg");
    free(d);
    return n;
}

/* Path of segment `ordinal` of shard `index` of stream root/name. */
/* An mmap for sl__os.mmap with nothing readable after the mapping (64 KiB
** of PROT_NONE), so that a read past the end of a truncated file faults at
** once.  The library unmaps len bytes; the guard stays reserved. */
static TU_UNUSED void *tu_mmap_guarded(void *addr, size_t len, int prot, int flags, int fd,
                                       off_t off)
{
    size_t mapped = (len + 4095) & ~(size_t)4095, guard = 1u << 16;
    void *r = mmap(addr, mapped + guard, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) return r;
    void *p = mmap(r, len, prot, flags | MAP_FIXED, fd, off);
    if (p == MAP_FAILED) munmap(r, mapped + guard);
    return p;
}

static TU_UNUSED char *tu_seg_path(const char *root, const char *name, uint32_t shard,
                                   uint64_t ordinal)
{
    return tu_path("%s/%s/shardId-%012u/%016" PRIx64 ".seg", root, name, shard, ordinal);
}

/* Forge segment `ordinal` of shard 0 of stream `name` by hand, with the
** library's segment writer: one record (key "k", `data`) numbered seq,
** arriving at ms, left active (as a crashed writer leaves its newest
** segment); or, with data NULL, an empty sealed segment carrying the keys
** (seq, ms).  stream_id 0: segment 1's. */
static TU_UNUSED void tu_forge_segment(const char *root, const char *name, uint64_t stream_id,
                                       uint64_t ordinal, uint64_t seq, int64_t ms,
                                       const char *data)
{
    char *dir = tu_path("%s/%s/shardId-%012u", root, name, 0u);
    if (!stream_id) {
        char *seg1 = tu_seg_path(root, name, 0, 1);
        int fd = open(seg1, O_RDONLY);
        assert_true(fd >= 0);
        uint8_t h[64];
        assert_int_equal(pread(fd, h, sizeof h, 0), (ssize_t)sizeof h);
        close(fd);
        stream_id = sl__ld64(h + 40);
        free(seg1);
    }
    sl_segctx c = {.stream_id = stream_id, .shard_index = 0,
                   .shard_id = "shardId-000000000000", .now_ms = ms};
    sl_seg *g;
    assert_int_equal(sl__seg_create(&g, &c, dir, ordinal, SL_SEGMENT_BYTES_MIN), 0);
    if (data) {
        assert_int_equal(sl__seg_append(g, seq, ms, "k", 1, data, (uint32_t)strlen(data), NULL),
                         0);
        sl__seg_publish(g);
    } else {
        g->first_seq = g->last_seq = seq;
        g->first_ms = g->last_ms = ms;
        assert_int_equal(sl__seg_seal(g, &c), 0);
    }
    sl__seg_free(g);
    free(dir);
}


/* Flip one byte of a file in place. */
static TU_UNUSED void tu_flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

/* ---- durability helpers ------------------------------------------------- */

/* For sl__os.open: no JOURNAL exists and there is no room to make one, so
** an ALWAYS stream opened meanwhile syncs its segments instead. */
static TU_UNUSED int tu_open_no_journal(const char *path, int flags, mode_t mode)
{
    size_t n = strlen(path);
    if (n >= 8 && strcmp(path + n - 8, "/JOURNAL") == 0) {
        errno = (flags & O_CREAT) ? ENOSPC : ENOENT;
        return -1;
    }
    return open(path, flags, mode);
}

/* A thread that opens a producer, puts one record with key "k", closes. */
typedef struct tu_putter {
    sl_stream *s;
    int rc;
} tu_putter;

static TU_UNUSED void *tu_put_one(void *arg)
{
    tu_putter *pt = arg;
    sl_producer *p;
    pt->rc = sl_producer_open(&p, pt->s);
    if (pt->rc == 0) {
        pt->rc = sl_put(p, "k", "payload", 7, NULL);
        sl_producer_close(p);
    }
    return NULL;
}

#endif
