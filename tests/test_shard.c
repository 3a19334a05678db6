/*
** test_shard.c -- durability of the segments themselves: the exact number
** of syncs each mode makes, group commit (concurrent puts share one sync,
** shown deterministically by holding the first sync until the others have
** committed), the INTERVAL thread, explicit sl_stream_sync, and sealing.
** ALWAYS mode normally commits through the journal (test_commit.c); here
** its streams are opened where the journal cannot be made, so that they
** sync their segments: the path a full disk takes, and the one the
** journal's checkpoints use.
*/
#include "testutil.h"

#include <pthread.h>
#include <time.h>

#define NAME "dur"
#define SHARD0 "shardId-000000000000"
/* A whole-segment sync is two msyncs: the header and records, then the
** index and trailer (never the free space between).  ALWAYS mode's group
** commit syncs only the first. */
#define PER_SEGMENT 2

static sl_os real;
static _Atomic int n_msync, n_fdatasync, n_fsync;

/* the gate: when armed, the first msync waits until opened */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_armed, gate_open, gate_entered;

static int count_msync(void *a, size_t l, int f)
{
    atomic_fetch_add(&n_msync, 1);
    pthread_mutex_lock(&gate_mu);
    if (gate_armed) {
        gate_armed = false;
        gate_entered = true;
        pthread_cond_broadcast(&gate_cv);
        while (!gate_open) pthread_cond_wait(&gate_cv, &gate_mu);
    }
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    return real.msync(a, l, f);
}
static int count_fdatasync(int fd)
{
    atomic_fetch_add(&n_fdatasync, 1);
    return real.fdatasync(fd);
}
static int count_fsync(int fd)
{
    atomic_fetch_add(&n_fsync, 1);
    return real.fsync(fd);
}

static void counting_on(void)
{
    sl__os_reset();
    real = sl__os;
    sl__os.msync = count_msync;
    sl__os.fdatasync = count_fdatasync;
    sl__os.fsync = count_fsync;
    atomic_store(&n_msync, 0);
    atomic_store(&n_fdatasync, 0);
    atomic_store(&n_fsync, 0);
}

static sl_stream *create_no_journal(const char *root, const sl_stream_config *c)
{
    sl__os.open = tu_open_no_journal;
    sl_stream *s;
    assert_int_equal(sl_stream_create(&s, root, c, NULL), 0);
    sl__os_reset();
    assert_null(s->jr);
    return s;
}

static sl_stream *make(const char *root, const char *name, sl_durability d, uint32_t interval_ms)
{
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = name;
    c.durability = d;
    c.segment_bytes = SL_SEGMENT_BYTES_MIN;
    c.sync_interval_ms = interval_ms;
    return create_no_journal(root, &c);
}

static void puts_n(sl_producer *p, int n, size_t size)
{
    char d[2048];
    memset(d, 'x', sizeof d);
    for (int i = 0; i < n; i++) assert_int_equal(sl_put(p, "k", d, size, NULL), 0);
}

static void none_never_syncs_records(void **state)
{
    sl_stream *s = make(*state, NAME, SL_DURABILITY_NONE, 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    counting_on();
    puts_n(p, 1000, 200);                 /* several roll-overs */
    assert_true(tu_nsegs(*state, NAME, 0) >= 3);
    assert_int_equal(atomic_load(&n_msync), 0);
    assert_int_equal(atomic_load(&n_fsync), 0);      /* not even directories */
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    assert_int_equal(atomic_load(&n_msync), 0);
    /* the sequence reservation is the one thing NONE syncs: numbers must
    ** never repeat whatever the mode */
    assert_true(atomic_load(&n_fdatasync) <= 2);
}

static void always_syncs_every_put(void **state)
{
    sl_stream *s = make(*state, NAME, SL_DURABILITY_ALWAYS, 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    puts_n(p, 1, 100);                    /* the first segment exists */
    counting_on();
    puts_n(p, 100, 100);
    assert_int_equal(atomic_load(&n_msync), 100);
    /* a batch for one shard: one sync */
    sl_put_entry e[100];
    sl_put_result r[100];
    for (int i = 0; i < 100; i++) e[i] = (sl_put_entry){"k", "d", 1, NULL};
    size_t failed;
    assert_int_equal(sl_producer_put_batch(p, e, 100, r, &failed), 0);
    assert_int_equal(failed, 0);
    assert_int_equal(atomic_load(&n_msync), 101);
    /* nothing new: close needs no sync */
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    assert_int_equal(atomic_load(&n_msync), 101);
}

static int msync_eio(void *a, size_t l, int f)
{
    (void)a;
    (void)l;
    (void)f;
    atomic_fetch_add(&n_msync, 1);
    errno = EIO;
    return -1;
}

/* A durable batch over four shards: one sync per shard, and a failing
** sync fails exactly the entries it covers. */
static void always_batch_over_shards(void **state)
{
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = NAME;
    c.durability = SL_DURABILITY_ALWAYS;
    c.shard_count = 4;
    sl_stream *s = create_no_journal(*state, &c);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    enum { N = 200 };
    sl_put_entry e[N];
    sl_put_result r[N];
    char keys[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "key-%d", i);
        e[i] = (sl_put_entry){keys[i], "durable", 7, NULL};
    }
    size_t failed = 9;
    assert_int_equal(sl_producer_put_batch(p, e, N, r, &failed), 0);   /* segments exist */
    assert_int_equal(failed, 0);
    counting_on();
    for (int round = 0; round < 3; round++) {
        assert_int_equal(sl_producer_put_batch(p, e, N, r, &failed), 0);
        assert_int_equal(failed, 0);
    }
    assert_int_equal(atomic_load(&n_msync), 3 * 4);
    bool seen[4] = {false};
    for (int i = 0; i < N; i++) seen[r[i].shard_index] = true;
    assert_true(seen[0] && seen[1] && seen[2] && seen[3]);
    /* the disk fails: every entry fails, with the detail, and the stream
    ** is failed from then on */
    sl__os.msync = msync_eio;
    assert_int_equal(sl_producer_put_batch(p, e, N, r, &failed), 0);
    assert_int_equal(failed, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].error, SL_EIO);
        if (!strstr(r[i].error_message, "Input/output error") && !strstr(r[i].error_message, "failed"))
            fail_msg("entry %d: '%s'", i, r[i].error_message);
    }
    sl__os_reset();
    assert_int_equal(sl_put(p, "k", "x", 1, NULL), SL_EIO);
    sl_producer_close(p);
    sl_stream_close(s);
    /* everything acknowledged before the failure is there */
    s = tu_open(*state, NAME, NULL);
    tu_recs all = {0};
    tu_read_all(s, &all);
    assert_true(all.n >= 4 * N);
    tu_recs_free(&all);
    assert_int_equal(sl_stream_close(s), 0);
}

/* Rolling over in ALWAYS mode: the sealed segment is synced with its
** trailer, the new one is created durably (file and directory). */
static void always_roll_over(void **state)
{
    sl_stream *s = make(*state, NAME, SL_DURABILITY_ALWAYS, 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    puts_n(p, 1, 1000);
    counting_on();
    int n = 0;
    while (tu_nsegs(*state, NAME, 0) < 2) {
        puts_n(p, 1, 1000);
        n++;
    }
    /* one per put, plus the seal */
    assert_int_equal(atomic_load(&n_msync), n + PER_SEGMENT);
    assert_int_equal(atomic_load(&n_fdatasync), 1);   /* the new file */
    assert_int_equal(atomic_load(&n_fsync), 1);       /* its directory */
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

static void interval_syncs_on_demand_and_close(void **state)
{
    /* an hour: the thread never fires during the test */
    sl_stream *s = make(*state, NAME, SL_DURABILITY_INTERVAL, 3600000);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    counting_on();
    puts_n(p, 100, 100);
    assert_int_equal(atomic_load(&n_msync), 0);
    assert_int_equal(sl_stream_sync(s), 0);
    assert_int_equal(atomic_load(&n_msync), PER_SEGMENT);
    assert_int_equal(sl_stream_sync(s), 0);           /* nothing new */
    assert_int_equal(atomic_load(&n_msync), PER_SEGMENT);
    puts_n(p, 1, 100);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);          /* close syncs */
    assert_int_equal(atomic_load(&n_msync), 2 * PER_SEGMENT);
}

/* INTERVAL mode keeps syncs off the append path, roll-overs included; the
** next sync round covers the sealed segments, the active one and (once)
** the directory. */
static void interval_roll_over_defers_syncs(void **state)
{
    sl_stream *s = make(*state, NAME, SL_DURABILITY_INTERVAL, 3600000);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    puts_n(p, 1, 200);                    /* reserves sequence numbers (a sync) */
    counting_on();
    puts_n(p, 800, 200);
    int segs = tu_nsegs(*state, NAME, 0);
    assert_true(segs >= 3);
    assert_int_equal(atomic_load(&n_msync), 0);
    assert_int_equal(atomic_load(&n_fdatasync), 0);
    assert_int_equal(atomic_load(&n_fsync), 0);
    assert_int_equal(sl_stream_sync(s), 0);
    assert_int_equal(atomic_load(&n_msync), PER_SEGMENT * segs);
    assert_int_equal(atomic_load(&n_fsync), 1);
    assert_int_equal(sl_stream_sync(s), 0);
    assert_int_equal(atomic_load(&n_msync), PER_SEGMENT * segs);
    assert_int_equal(atomic_load(&n_fsync), 1);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

/* NONE mode, explicit sync: sealed segments (not synced when sealed) and
** the active one, each once. */
static void none_explicit_sync_covers_sealed(void **state)
{
    sl_stream *s = make(*state, NAME, SL_DURABILITY_NONE, 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    puts_n(p, 800, 200);
    int segs = tu_nsegs(*state, NAME, 0);
    assert_true(segs >= 3);
    counting_on();
    assert_int_equal(sl_stream_sync(s), 0);
    assert_int_equal(atomic_load(&n_msync), PER_SEGMENT * segs);
    assert_int_equal(sl_stream_sync(s), 0);
    assert_int_equal(atomic_load(&n_msync), PER_SEGMENT * segs);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

/* The INTERVAL thread syncs by itself.  The test waits for the event (with
** a generous bound), it does not sleep for a guessed time. */
static void interval_thread_fires(void **state)
{
    sl_stream *s = make(*state, NAME, SL_DURABILITY_INTERVAL, 20);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    counting_on();
    puts_n(p, 10, 100);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 20;
    pthread_mutex_lock(&gate_mu);
    while (atomic_load(&n_msync) == 0)
        if (pthread_cond_timedwait(&gate_cv, &gate_mu, &dl) != 0) break;
    pthread_mutex_unlock(&gate_mu);
    assert_true(atomic_load(&n_msync) >= 1);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

/* ---- group commit --------------------------------------------------------- */

static void group_commit_shares_a_sync(void **state)
{
    enum { T = 8 };
    sl_stream *s = make(*state, NAME, SL_DURABILITY_ALWAYS, 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    puts_n(p, 1, 10);                     /* the segment exists */
    sl_producer_close(p);
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, s, SHARD0, SL_ITER_LATEST, 0), 0);
    counting_on();
    gate_armed = true;
    gate_open = false;
    gate_entered = false;
    tu_putter pt[T];
    pthread_t th[T];
    /* the first put leads a sync and is held inside it */
    pt[0] = (tu_putter){s, -99};
    assert_int_equal(pthread_create(&th[0], NULL, tu_put_one, &pt[0]), 0);
    pthread_mutex_lock(&gate_mu);
    while (!gate_entered) pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    /* the other seven commit meanwhile and queue for durability */
    for (int i = 1; i < T; i++) {
        pt[i] = (tu_putter){s, -99};
        assert_int_equal(pthread_create(&th[i], NULL, tu_put_one, &pt[i]), 0);
    }
    size_t seen = 0;
    sl_record r[T];
    while (seen < T) {
        assert_int_equal(sl_iter_wait(it, 20000), 1);
        sl_read_result res;
        assert_int_equal(sl_iter_read(it, r, T, &res), 0);
        seen += res.count;
    }
    pthread_mutex_lock(&gate_mu);
    gate_open = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(pt[i].rc, 0);
    }
    /* the held sync, then one for all seven */
    assert_int_equal(atomic_load(&n_msync), 2);
    sl_iter_close(it);
    assert_int_equal(sl_stream_close(s), 0);
}

/* A group-commit round syncs the pages written since the last round, not
** everything from the segment's start; the header page (rewritten by every
** commit, and only a hint for recovery) goes along once per 16 MiB. */
static _Atomic size_t last_msync_len;

static int len_msync(void *a, size_t l, int f)
{
    atomic_store(&last_msync_len, l);
    return count_msync(a, l, f);
}

static void always_round_syncs_new_pages_only(void **state)
{
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = NAME;
    c.durability = SL_DURABILITY_ALWAYS;
    c.segment_bytes = 32u << 20;
    sl_stream *s = create_no_journal(*state, &c);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    puts_n(p, 1, 100);
    counting_on();
    sl__os.msync = len_msync;
    for (int i = 0; i < 50; i++) {
        puts_n(p, 1, 1000);
        assert_int_equal(atomic_load(&n_msync), i + 1);
        /* the pages of one 1 KiB record: at most two */
        assert_true(atomic_load(&last_msync_len) <= 8192);
    }
    size_t big = 1000u << 10;
    char *d = malloc(big);
    assert_non_null(d);
    memset(d, 'b', big);
    int header_syncs = 0;
    for (int i = 0; i < 20; i++) {
        int before = atomic_load(&n_msync);
        assert_int_equal(sl_put(p, "k", d, big, NULL), 0);
        int n = atomic_load(&n_msync) - before;
        assert_true(n == 1 || n == 2);
        header_syncs += n - 1;
        assert_true(atomic_load(&last_msync_len) <= big + 8192);
    }
    assert_int_equal(header_syncs, 1);    /* 20 MiB written: once */
    free(d);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    sl__os_reset();
}

/* A power cut in ALWAYS mode, simulated: a child appends, and each sync it
** makes copies the synced bytes, as they are at that moment, into a shadow
** of the segment: what the disk would hold.  The child then dies without
** closing; the parent puts the shadow in place of the segment, as after a
** reboot (the page cache is gone, the boot id differs), and every
** acknowledged record must be there, intact.  The shadow's header page is
** stale (rounds leave it out) and its index never synced: recovery must
** find the records by scanning from the old hint. */
static uint8_t *pc_base;
static size_t pc_len;
static int pc_fd = -1;

static int shadow_msync(void *a, size_t l, int f)
{
    int rc = real.msync(a, l, f);
    uint8_t *p = a;
    if (rc == 0 && p >= pc_base && p + l <= pc_base + pc_len &&
        pwrite(pc_fd, p, l, p - pc_base) != (ssize_t)l)
        _exit(3);
    return rc;
}

static size_t pc_size(int i)
{
    if (i >= 200 && i < 218) return 1000u << 10;    /* crosses 16 MiB */
    return 1 + (size_t)(i * 7919) % 3000;
}

static void pc_data(char *d, int i)
{
    size_t n = pc_size(i);
    memset(d, 'a' + i % 26, n);
    memcpy(d, &i, sizeof i < n ? sizeof i : n);
}

static void always_survives_power_cut(void **state)
{
    enum { N = 320 };
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = NAME;
    c.durability = SL_DURABILITY_ALWAYS;
    c.segment_bytes = 32u << 20;
    sl_stream *s;
    assert_int_equal(sl_stream_create(&s, *state, &c, NULL), 0);
    assert_int_equal(sl_stream_close(s), 0);
    char *seg = tu_seg_path(*state, NAME, 0, 1);
    char *shadow = tu_path("%s/shadow", (char *)*state);
    char *d = malloc(1000u << 10);
    assert_non_null(d);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sl__os.open = tu_open_no_journal;
        s = tu_open(*state, NAME, NULL);
        sl__os_reset();
        if (s->jr) _exit(5);
        sl_producer *p;
        if (sl_producer_open(&p, s)) _exit(1);
        pc_data(d, 0);
        if (sl_put(p, "k", d, pc_size(0), NULL)) _exit(1);
        /* the disk now holds what the first put synced: copy it all */
        sl_seg *g = s->shards[0]->active;
        pc_base = g->base;
        pc_len = g->map_len;
        pc_fd = open(shadow, O_RDWR | O_CREAT | O_TRUNC, 0600);
        if (pc_fd < 0 || pwrite(pc_fd, pc_base, pc_len, 0) != (ssize_t)pc_len) _exit(2);
        sl__os_reset();
        real = sl__os;
        sl__os.msync = shadow_msync;
        for (int i = 1; i < N; i++) {
            pc_data(d, i);
            if (sl_put(p, "k", d, pc_size(i), NULL)) _exit(1);
        }
        if (s->shards[0]->active != g) _exit(4);    /* one segment only */
        _exit(0);                                    /* no close: a crash */
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    /* the reboot: the shadow is the file, and the boot id has changed */
    assert_int_equal(rename(shadow, seg), 0);
    int fd = open(seg, O_RDWR);
    uint64_t other_boot = 0;
    assert_int_equal(pwrite(fd, &other_boot, 8, SL_H_BOOT), 8);
    close(fd);
    tu_reports rep = {0};
    tu_opts o = {.reports = &rep};
    s = tu_open(*state, NAME, &o);
    tu_recs r = {0};
    tu_read_all(s, &r);
    assert_int_equal(r.corrupt, 0);
    assert_int_equal(rep.count, 0);
    assert_int_equal(r.n, N);
    for (int i = 0; i < N; i++) {
        pc_data(d, i);
        assert_int_equal(r.v[i].dlen, pc_size(i));
        assert_memory_equal(r.v[i].data, d, pc_size(i));
    }
    tu_recs_free(&r);
    assert_int_equal(sl_stream_close(s), 0);
    free(d);
    free(seg);
    free(shadow);
}

/* Segments a previous writer left (here: NONE mode, closed without a
** sync, as a crash would) may hold dirty pages.  The next handle's
** sl_stream_sync writes them out, one fdatasync per file, once. */
static void sync_covers_inherited_segments(void **state)
{
    const char *root = *state;
    tu_opts o = {.durability = SL_DURABILITY_NONE};
    sl_stream *s = tu_create(root, "inh", &o);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    char data[1000];
    memset(data, 'x', sizeof data);
    for (int i = 0; i < 400; i++)                       /* 64 KiB segments: several */
        assert_int_equal(sl_put(p, "k", data, sizeof data, NULL), 0);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    int nseg = tu_nsegs(root, "inh", 0);
    assert_true(nseg >= 4);

    s = tu_open(root, "inh", &o);
    counting_on();
    assert_int_equal(sl_stream_sync(s), 0);
    /* every inherited file (sealed ones by fdatasync; the newest, recovered
    ** as the active segment, by msync) */
    assert_true(atomic_load(&n_fdatasync) >= nseg - 1);
    int first = atomic_load(&n_fdatasync);
    assert_int_equal(sl_stream_sync(s), 0);
    assert_true(atomic_load(&n_fdatasync) - first <= 1);   /* not again */
    sl__os_reset();
    assert_int_equal(sl_stream_close(s), 0);
}

/* ---- compacted segments (found by test_crashmatrix) ------------------------ */

/* 300 records of 1000 bytes, keys k0..k4, in a 1-shard compacting stream of
** 64 KiB segments: every sealed segment holds superseded records. */
static sl_stream *compacting(const char *root, sl_vclock *vc, uint64_t *seq, int n)
{
    tu_opts o = {.clock = vc ? sl_vclock_clock(vc) : NULL};
    sl_stream *s = tu_create(root, NAME, &o);
    assert_int_equal(sl_stream_set_compaction(s, SL_COMPACTION_KEY), 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    char d[1000], key[8];
    memset(d, 'k', sizeof d);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "k%d", i % 5);
        assert_int_equal(sl_put(p, key, d, sizeof d, &seq[i]), 0);
    }
    sl_producer_close(p);
    return s;
}

/* A segment compaction emptied keeps the keys of its records after a
** reopen: retention must not take it for expired at once, and deleting it
** must not make the shard look trimmed (SL_ETRIMMED for a consumer whose
** checkpoint compaction removed). */
static void compacted_empty_segment_keeps_its_keys(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    assert_int_equal(sl_vclock_new(&vc, 1700000000000LL), 0);
    enum { N = 300 };
    static uint64_t seq[N];
    sl_stream *s = compacting(root, vc, seq, N);
    assert_int_equal(sl_consumer_register(s, "c", SL_CONSUMER_SHARED), 0);
    sl_consumer *c;
    assert_int_equal(sl_consumer_open(&c, s, "c"), 0);
    assert_int_equal(sl_consumer_checkpoint(c, SHARD0, seq[1]), 0);
    assert_int_equal(sl_consumer_close(c), 0);
    sl_maint_stats st;
    assert_int_equal(sl_stream_maintain(s, -1, NULL, NULL, &st), 0);
    assert_true(st.segments_compacted >= 3);
    assert_int_equal(sl_stream_close(s), 0);
    /* segment 1 is empty now; reopened, maintenance leaves it alone */
    tu_opts o = {.clock = sl_vclock_clock(vc)};
    s = tu_open(root, NAME, &o);
    assert_int_equal(sl_stream_maintain(s, -1, NULL, NULL, &st), 0);
    assert_int_equal(st.segments_deleted, 0);
    char *seg1 = tu_seg_path(root, NAME, 0, 1);
    assert_int_equal(access(seg1, F_OK), 0);
    assert_int_equal(sl_consumer_open(&c, s, "c"), 0);
    uint64_t ck;
    assert_int_equal(sl_consumer_get_checkpoint(c, SHARD0, &ck), 0);
    assert_int_equal(ck, seq[1]);
    sl_iter *it;
    assert_int_equal(sl_consumer_iter_open(&it, c, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    sl_record r;
    sl_read_result res;
    assert_int_equal(sl_iter_read(it, &r, 1, &res), 0);
    assert_int_equal(res.count, 1);
    assert_true(r.sequence > seq[1]);
    sl_iter_close(it);
    /* once its records' time has passed, retention deletes it as any other */
    sl_vclock_advance(vc, 25 * 3600000LL);
    assert_int_equal(sl_stream_maintain(s, -1, NULL, NULL, &st), 0);
    assert_true(st.segments_deleted >= 1);
    assert_int_equal(access(seg1, F_OK), -1);
    assert_int_equal(sl_consumer_iter_open(&it, c, SHARD0, SL_ITER_TRIM_HORIZON, 0), SL_ETRIMMED);
    assert_int_equal(sl_consumer_close(c), 0);
    assert_int_equal(sl_stream_close(s), 0);
    free(seg1);
    sl_vclock_free(vc);
}

/* Wait (at most 5 s) until the preparer has taken the leftovers flag. */
static bool leftovers_taken(sl_shard *sh)
{
    for (int i = 0; i < 5000; i++) {
        if (!__atomic_load_n(&sh->leftovers, __ATOMIC_ACQUIRE)) return true;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static sl_stream *race_stream;
static bool race_done;
static int rename_racing_preparer(const char *from, const char *to)
{
    size_t n = strlen(from);
    if (!race_done && n > 8 && !strcmp(from + n - 8, ".seg.tmp")) {
        /* the preparer removes a dead writer's leftovers now, twice, so
        ** that its first pass is over when the second begins */
        race_done = true;
        sl_shard *sh = race_stream->shards[0];
        for (int pass = 0; pass < 2; pass++) {
            __atomic_store_n(&sh->leftovers, true, __ATOMIC_RELEASE);
            sl__stream_kick(race_stream);
            assert_true(leftovers_taken(sh));
        }
    }
    return rename(from, to);
}

/* The preparer removes the temporary files a dead writer left; a
** compaction rewrite of an old segment, whose temporary file has the same
** kind of name, must survive it. */
static void leftover_removal_spares_rewrites(void **state)
{
    const char *root = *state;
    enum { N = 300 };
    static uint64_t seq[N];
    sl_stream *s = compacting(root, NULL, seq, N);
    assert_int_equal(sl_stream_close(s), 0);
    /* a dead writer's rewrite of segment 2, and its spare */
    char *stale = tu_path("%s/%s/shardId-%012u/%016x.seg.tmp", root, NAME, 0u, 2u);
    char *spare = tu_path("%s/%s/shardId-%012u/%016x.seg.spare", root, NAME, 0u, 99u);
    int fd = open(stale, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_true((fd = open(spare, O_CREAT | O_WRONLY, 0600)) >= 0);
    close(fd);
    tu_reports rep = {0};
    tu_opts o = {.reports = &rep};
    s = race_stream = tu_open(root, NAME, &o);
    assert_true(leftovers_taken(s->shards[0]));
    race_done = false;
    sl__os.rename = rename_racing_preparer;
    sl_maint_stats st;
    int rc = sl_stream_maintain(s, -1, NULL, NULL, &st);
    sl__os_reset();
    if (rc) fprintf(stderr, "maintain: %s\n", sl_errmsg(s));
    assert_int_equal(rc, 0);
    assert_true(race_done);
    assert_true(st.segments_compacted >= 3);
    assert_int_equal(rep.count, 0);
    /* the dead writer's files are gone */
    assert_int_equal(access(stale, F_OK), -1);
    assert_int_equal(access(spare, F_OK), -1);
    assert_int_equal(sl_stream_close(s), 0);
    free(stale);
    free(spare);
}

/* A dead writer's spare segment takes an ordinal that no segment ever gets:
** a shard's first segment may be number 2.  Nothing was deleted (there is
** no GONE), so its records are no trimmed ones: a TRIM_HORIZON reader,
** opened before or after they came, reads them.  (Found by
** test_crashmatrix: a consumer got SL_ETRIMMED, "the records after sequence
** number 0 were deleted", on a stream without retention.) */
static void first_segment_after_a_dead_spare(void **state)
{
    const char *root = *state;
    tu_opts o = {.shards = 2};
    sl_stream *s = tu_create(root, NAME, &o);
    /* numbers issued elsewhere first (shard 1): the shard's first record
    ** is not number 1 */
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    sl_put_entry e = {"k", "x", 1, "340282366920938463463374607431768211455"};
    sl_put_result pr;
    assert_int_equal(sl_producer_put(p, &e, &pr), 0);
    assert_int_equal(pr.shard_index, 1);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    char *spare = tu_path("%s/%s/shardId-%012u/%016x.seg.spare", root, NAME, 0u, 1u);
    int fd = open(spare, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    s = tu_open(root, NAME, NULL);
    sl_iter *before;
    assert_int_equal(sl_iter_open(&before, s, SHARD0, SL_ITER_TRIM_HORIZON, 0), 0);
    assert_int_equal(sl_producer_open(&p, s), 0);
    e.explicit_hash_key = "0";
    assert_int_equal(sl_producer_put(p, &e, &pr), 0);
    assert_int_equal(pr.shard_index, 0);
    uint64_t seq = pr.sequence;
    assert_true(seq > 1);
    sl_producer_close(p);
    char *seg2 = tu_seg_path(root, NAME, 0, 2);
    assert_int_equal(access(seg2, F_OK), 0);         /* the scenario: no segment 1 */
    sl_record r;
    sl_read_result res;
    assert_int_equal(sl_iter_read(before, &r, 1, &res), 0);
    assert_int_equal(res.count, 1);
    assert_true(r.sequence == seq);
    sl_iter_close(before);
    for (int reopen = 0; reopen < 2; reopen++) {
        if (reopen) {
            assert_int_equal(sl_stream_close(s), 0);
            s = tu_open(root, NAME, &o);
        }
        assert_true(tu_first_seq(s, SHARD0, SL_ITER_AT_SEQUENCE_NUMBER, seq) == seq);
        assert_true(tu_first_seq(s, SHARD0, SL_ITER_TRIM_HORIZON, 0) == seq);
    }
    assert_int_equal(sl_stream_close(s), 0);
    free(seg2);
    free(spare);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(none_never_syncs_records, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(always_syncs_every_put, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(always_roll_over, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(always_batch_over_shards, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(interval_syncs_on_demand_and_close, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(interval_roll_over_defers_syncs, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(none_explicit_sync_covers_sealed, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(interval_thread_fires, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(group_commit_shares_a_sync, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(always_round_syncs_new_pages_only, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(always_survives_power_cut, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(sync_covers_inherited_segments, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(compacted_empty_segment_keeps_its_keys, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(leftover_removal_spares_rewrites, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(first_segment_after_a_dead_spare, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests_name("shard", tests, NULL, NULL);
}
