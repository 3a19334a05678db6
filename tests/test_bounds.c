/*
** test_bounds.c -- resources stay bounded: resident memory, open file
** descriptors and mappings, under sustained puts at the size cap with a
** stalled consumer, and with thousands of segments on disk.  Measured from
** /proc/self (statm, fd/, maps) of this process; the budgets are stated
** here and in the README.  (Reopen time at 1 and 8 GiB is measured by
** `make bench`, section 5: benchmarks are not tests.)
*/
#include "testutil.h"

#include <dirent.h>

#define MIB (1024.0 * 1024.0)

static long count_dir(const char *path)
{
    DIR *d = opendir(path);
    assert_non_null(d);
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* Mappings of segment files (deleted ones included): the library's own,
** whatever the allocator (or a sanitizer's) maps besides. */
static long count_seg_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    long n = 0;
    char line[4096];
    while (fgets(line, sizeof line, f)) n += strstr(line, ".seg") != NULL;
    fclose(f);
    return n;
}

/* Resident memory of this process, in MiB. */
static double rss_mib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    assert_non_null(f);
    long size = 0, res = 0;
    assert_int_equal(fscanf(f, "%ld %ld", &size, &res), 2);
    fclose(f);
    return (double)res * (double)sysconf(_SC_PAGESIZE) / MIB;
}

typedef struct usage {
    long fds, maps;
    double rss;
} usage;

static usage now(void)
{
    return (usage){count_dir("/proc/self/fd"), count_seg_maps(), rss_mib()};
}

static sl_stream *mk(const char *root, const char *name, uint32_t shards, uint64_t cap)
{
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = name;
    c.shard_count = shards;
    c.durability = SL_DURABILITY_NONE;
    c.segment_bytes = SL_SEGMENT_BYTES_MIN;     /* 64 KiB: thousands of segments */
    c.size_cap_bytes = cap;
    c.size_cap_policy = SL_CAP_DROP_OLDEST;
    sl_stream *s = NULL;
    int rc = sl_stream_create(&s, root, &c, NULL);
    if (rc) fprintf(stderr, "create: %s\n", sl_errmsg(NULL));
    assert_int_equal(rc, 0);
    return s;
}

/* Sustained puts into a 2-shard stream capped at 4 MiB, 1 KiB records,
** about 300 MiB in all (~4,600 segments made and dropped), while a
** consumer's iterator sits at TRIM_HORIZON and never reads, and another
** reads a little and stalls mid-stream.  Budgets, beyond what the process
** used before the stream opened: resident memory 48 MiB (the mapped
** segments of the cap, the stalled readers' pinned segments, the
** preparer's window); 16 file descriptors; 32 mappings of segment files.  The disk stays
** within the cap plus one segment per shard. */
static void sustained_puts_at_the_cap_with_stalled_readers(void **state)
{
    const char *root = *state;
    usage base = now();
    const uint64_t cap = 4u << 20;
    sl_stream *s = mk(root, "cap", 2, cap);
    sl_iter *stalled, *slow;
    assert_int_equal(sl_iter_open(&stalled, s, "shardId-000000000000", SL_ITER_TRIM_HORIZON, 0), 0);
    assert_int_equal(sl_iter_open(&slow, s, "shardId-000000000001", SL_ITER_TRIM_HORIZON, 0), 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    char data[1024], key[16];
    memset(data, 'd', sizeof data);
    usage peak = base;
    sl_record recs[100];
    sl_read_result res;
    const int n = 300000;
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "k%d", i % 1000);
        assert_int_equal(sl_put(p, key, data, sizeof data, NULL), 0);
        if (i == 1000) assert_int_equal(sl_iter_read(slow, recs, 100, &res), 0);
        if (i % 20000 == 0) {
            assert_int_equal(sl_stream_maintain(s, -1, NULL, NULL, NULL), 0);
            usage u = now();
            if (u.fds > peak.fds) peak.fds = u.fds;
            if (u.maps > peak.maps) peak.maps = u.maps;
            if (u.rss > peak.rss) peak.rss = u.rss;
            sl_stream_desc *d;
            assert_int_equal(sl_stream_describe(&d, s), 0);
            if (d->disk_bytes > cap + 2 * (uint64_t)SL_SEGMENT_BYTES_MIN * 2)
                fail_msg("disk %" PRIu64 " bytes over the cap %" PRIu64, d->disk_bytes, cap);
            sl_stream_desc_free(d);
        }
    }
    printf("    at the cap: fds +%ld, mappings +%ld, resident +%.1f MiB (peaks)\n",
           peak.fds - base.fds, peak.maps - base.maps, peak.rss - base.rss);
    assert_true(peak.fds - base.fds <= 16);
    assert_true(peak.maps - base.maps <= 32);
    assert_true(peak.rss - base.rss <= 48.0);
    /* the stalled readers still hold valid records (their segments were
    ** dropped under them: they learn it is trimmed, never garbage) */
    int rc = sl_iter_read(stalled, recs, 100, &res);
    assert_true(rc == 0 || rc == SL_ETRIMMED);
    for (size_t i = 0; rc == 0 && i < res.count; i++) assert_int_equal(recs[i].data_len, 1024);
    sl_producer_close(p);
    sl_iter_close(stalled);
    sl_iter_close(slow);
    assert_int_equal(sl_stream_close(s), 0);
    usage after = now();
    assert_true(after.fds <= base.fds + 1);
    assert_true(after.maps <= base.maps);
}

/* Thousands of segments on disk (no cap): writing them, reopening the
** stream, and reading every record keeps descriptors and mappings bounded
** (segments are opened and mapped when used, and a reader's segment is let
** go when it moves on). */
static void thousands_of_segments_stay_bounded(void **state)
{
    const char *root = *state;
    usage base = now();
    sl_stream *s = mk(root, "many", 1, 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    char data[1024];
    memset(data, 'm', sizeof data);
    usage peak = base;
    const int n = 130000;                        /* ~2,000 segments of 64 KiB */
    for (int i = 0; i < n; i++) {
        assert_int_equal(sl_put(p, "k", data, sizeof data, NULL), 0);
        if (i % 10000 == 0) {
            usage u = now();
            if (u.fds > peak.fds) peak.fds = u.fds;
            if (u.maps > peak.maps) peak.maps = u.maps;
        }
    }
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    long nseg = tu_nsegs(root, "many", 0);
    assert_true(nseg >= 1900);
    printf("    %ld segments: writing: fds +%ld, mappings +%ld\n", nseg, peak.fds - base.fds,
           peak.maps - base.maps);
    assert_true(peak.fds - base.fds <= 16);
    assert_true(peak.maps - base.maps <= 32);
    /* reopen and read everything, twice (a writer and a follower) */
    for (int ro = 0; ro < 2; ro++) {
        tu_opts o = {.flags = ro ? SL_OPEN_READONLY : 0};
        s = tu_open(root, "many", &o);
        usage opened = now();
        sl_iter *it;
        assert_int_equal(sl_iter_open(&it, s, "shardId-000000000000", SL_ITER_TRIM_HORIZON, 0), 0);
        static sl_record recs[1000];
        sl_read_result res;
        long got = 0;
        usage rpeak = opened;
        for (;;) {
            assert_int_equal(sl_iter_read(it, recs, 1000, &res), 0);
            if (!res.count) break;
            got += (long)res.count;
            if (got % 20000 < 1000) {
                usage u = now();
                if (u.fds > rpeak.fds) rpeak.fds = u.fds;
                if (u.maps > rpeak.maps) rpeak.maps = u.maps;
                if (u.rss > rpeak.rss) rpeak.rss = u.rss;
            }
        }
        assert_int_equal(got, n);
        printf("    %s: open fds +%ld, mappings +%ld; reading all: fds +%ld, mappings +%ld, "
               "resident +%.1f MiB\n", ro ? "follower" : "writer", opened.fds - base.fds,
               opened.maps - base.maps, rpeak.fds - base.fds, rpeak.maps - base.maps,
               rpeak.rss - base.rss);
        assert_true(rpeak.fds - base.fds <= 16);
        assert_true(rpeak.maps - base.maps <= 32);
        sl_iter_close(it);
        assert_int_equal(sl_stream_close(s), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(sustained_puts_at_the_cap_with_stalled_readers, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(thousands_of_segments_stay_bounded, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
