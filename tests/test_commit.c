/*
** test_commit.c -- ALWAYS mode's commit journal (lib/commit.c): one journal
** write and one fdatasync per round whatever the shards touched, group
** commit sharing a write, laps with checkpoints and growth, recovery after
** a simulated power cut (segments reduced to exactly what was synced to
** them) and after a process crash, a torn frame, a failing journal, no room
** for a journal, and reopening in another mode.
**
** The power cut is simulated in a child process: a hook on msync copies
** each synced range of a segment, as it is at that moment, into a shadow
** file, which starts as the segment's header (synced when the segment was
** made).  After the child dies, the shadow replaces the segment and the
** boot id is cleared, as after a reboot.  The journal is left as the page
** cache has it: a superset of what the disk would hold, which changes
** nothing for acknowledged records (each was in a completed fdatasync).
*/
#include "testutil.h"

#include <pthread.h>

#define NAME "jr"

static sl_os real;
static _Atomic int n_msync, n_fdatasync, n_pwritev;

/* the gate: when armed, the first journal write waits until opened */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_armed, gate_open, gate_entered;

static int count_msync(void *a, size_t l, int f)
{
    atomic_fetch_add(&n_msync, 1);
    return real.msync(a, l, f);
}

static int count_fdatasync(int fd)
{
    atomic_fetch_add(&n_fdatasync, 1);
    return real.fdatasync(fd);
}

static ssize_t count_pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    atomic_fetch_add(&n_pwritev, 1);
    pthread_mutex_lock(&gate_mu);
    if (gate_armed) {
        gate_armed = false;
        gate_entered = true;
        pthread_cond_broadcast(&gate_cv);
        while (!gate_open) pthread_cond_wait(&gate_cv, &gate_mu);
    }
    pthread_mutex_unlock(&gate_mu);
    return real.pwritev(fd, iov, n, off);
}

static void counting_on(void)
{
    sl__os_reset();
    real = sl__os;
    sl__os.msync = count_msync;
    sl__os.fdatasync = count_fdatasync;
    sl__os.pwritev = count_pwritev;
    atomic_store(&n_msync, 0);
    atomic_store(&n_fdatasync, 0);
    atomic_store(&n_pwritev, 0);
}

static sl_stream *make(const char *root, uint32_t shards, uint64_t seg_bytes)
{
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = NAME;
    c.shard_count = shards;
    c.durability = SL_DURABILITY_ALWAYS;
    c.segment_bytes = seg_bytes;
    sl_stream *s;
    assert_int_equal(sl_stream_create(&s, root, &c, NULL), 0);
    assert_non_null(s->jr);
    return s;
}

static char *journal_path(const char *root)
{
    return tu_path("%s/%s/JOURNAL", root, NAME);
}

static uint32_t journal_magic(const char *root)
{
    char *p = journal_path(root);
    int fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    uint32_t m = 1;
    assert_int_equal(pread(fd, &m, 4, 0), 4);
    close(fd);
    free(p);
    return m;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* Record i: "<i>|" then filler, `len` bytes. */
static size_t fill_rec(char *d, int i, size_t len)
{
    int h = snprintf(d, 24, "%d|", i);
    memset(d + h, 'a' + i % 26, len - (size_t)h);
    return len;
}

static void check_rec(const tu_rec *r, int i, size_t len)
{
    static char want[1100 << 10];
    fill_rec(want, i, len);
    assert_int_equal(r->dlen, len);
    assert_memory_equal(r->data, want, len);
}

/* ---- the write path -------------------------------------------------------- */

/* A put is one journal write and one fdatasync, not a segment sync; a batch
** over four shards is one of each too.  A clean close clears the journal,
** and the reopen has nothing to replay. */
static void one_write_per_commit(void **state)
{
    sl_stream *s = make(*state, 4, SL_SEGMENT_BYTES_MIN);
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
    for (int i = 0; i < 50; i++) tu_put(p, "k", i);
    assert_int_equal(atomic_load(&n_pwritev), 50);
    assert_int_equal(atomic_load(&n_fdatasync), 50);
    assert_int_equal(atomic_load(&n_msync), 0);
    for (int round = 0; round < 3; round++) {
        assert_int_equal(sl_producer_put_batch(p, e, N, r, &failed), 0);
        assert_int_equal(failed, 0);
    }
    assert_int_equal(atomic_load(&n_pwritev), 53);
    assert_int_equal(atomic_load(&n_fdatasync), 53);
    assert_int_equal(atomic_load(&n_msync), 0);
    bool seen[4] = {false};
    for (int i = 0; i < N; i++) seen[r[i].shard_index] = true;
    assert_true(seen[0] && seen[1] && seen[2] && seen[3]);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    sl__os_reset();
    assert_int_equal(journal_magic(*state), 0);
    s = tu_open(*state, NAME, NULL);
    assert_int_equal(s->jr_replayed, 0);
    tu_recs all = {0};
    tu_read_all(s, &all);
    assert_int_equal(all.n, 4 * N + 50);
    tu_recs_free(&all);
    assert_int_equal(sl_stream_close(s), 0);
}

/* The first put's journal write is held; seven more commit meanwhile (a
** reader sees them) and all seven share the next write. */
static void group_commit_shares_a_write(void **state)
{
    enum { T = 8 };
    sl_stream *s = make(*state, 1, SL_SEGMENT_BYTES_MIN);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    tu_put(p, "k", 0);
    sl_producer_close(p);
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, s, "shardId-000000000000", SL_ITER_LATEST, 0), 0);
    counting_on();
    gate_armed = true;
    gate_open = false;
    gate_entered = false;
    tu_putter pt[T];
    pthread_t th[T];
    pt[0] = (tu_putter){s, -99};
    assert_int_equal(pthread_create(&th[0], NULL, tu_put_one, &pt[0]), 0);
    pthread_mutex_lock(&gate_mu);
    while (!gate_entered) pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
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
    assert_int_equal(atomic_load(&n_pwritev), 2);   /* the held one, then one for seven */
    sl_iter_close(it);
    sl__os_reset();
    assert_int_equal(sl_stream_close(s), 0);
}

/* A round that does not fit in the lap's rest is a checkpoint (the segments
** are synced and a new lap starts); a lap that filled in under a second
** doubles the journal. */
static void laps_checkpoint_and_grow(void **state)
{
    sl_stream *s = make(*state, 1, 32u << 20);
    char *jp = journal_path(*state);
    assert_int_equal(file_size(jp), 1 << 20);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    static char d[1000 << 10];
    counting_on();
    for (int i = 0; i < 12; i++)
        assert_int_equal(sl_put(p, "k", d, fill_rec(d, i, sizeof d), NULL), 0);
    assert_true(atomic_load(&n_msync) > 0);                 /* checkpoints */
    assert_true(atomic_load(&n_pwritev) > 0);               /* and frames */
    assert_true(atomic_load(&n_pwritev) < 12);
    assert_true(file_size(jp) >= 4 << 20);                  /* grew */
    sl_producer_close(p);
    sl__os_reset();
    assert_int_equal(sl_stream_close(s), 0);
    s = tu_open(*state, NAME, NULL);
    tu_recs all = {0};
    tu_read_all(s, &all);
    assert_int_equal(all.n, 12);
    for (int i = 0; i < 12; i++) check_rec(&all.v[i], i, sizeof d);
    tu_recs_free(&all);
    assert_int_equal(sl_stream_close(s), 0);
    free(jp);
}

static ssize_t pwritev_eio(int fd, const struct iovec *iov, int n, off_t off)
{
    (void)fd;
    (void)iov;
    (void)n;
    (void)off;
    errno = EIO;
    return -1;
}

/* A failed journal write fails the put and the stream; what was
** acknowledged before is there after a reopen. */
static void failed_write_fails_the_stream(void **state)
{
    sl_stream *s = make(*state, 2, SL_SEGMENT_BYTES_MIN);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    for (int i = 0; i < 20; i++) tu_put(p, "k", i);
    sl__os.pwritev = pwritev_eio;
    assert_int_equal(sl_put(p, "k", "x", 1, NULL), SL_EIO);
    assert_non_null(strstr(sl_errmsg(p), "JOURNAL"));
    sl__os_reset();
    assert_int_equal(sl_put(p, "k", "x", 1, NULL), SL_EIO);     /* sticky */
    sl_producer_close(p);
    sl_stream_close(s);
    assert_int_not_equal(journal_magic(*state), 0);            /* not cleared */
    s = tu_open(*state, NAME, NULL);
    tu_recs all = {0};
    tu_read_all(s, &all);
    assert_true(all.n >= 20);
    for (int i = 0; i < 20; i++) assert_int_equal(atoi(strchr(all.v[i].data, ':') + 1), i);
    tu_recs_free(&all);
    assert_int_equal(sl_stream_close(s), 0);
}

/* No room for a journal: the open says so through the report callback and
** ALWAYS mode syncs each shard's segment instead. */
static void no_room_for_a_journal(void **state)
{
    tu_opts o = {.durability = SL_DURABILITY_ALWAYS};
    sl_stream *s = tu_create(*state, NAME, &o);
    sl_stream_close(s);
    tu_reports rep = {0};
    o.reports = &rep;
    sl__os.open = tu_open_no_journal;
    s = tu_open(*state, NAME, &o);
    sl__os_reset();
    assert_null(s->jr);
    assert_int_equal(rep.count, 1);
    assert_int_equal(rep.last_code, SL_ENOSPC);
    assert_non_null(strstr(rep.last, "syncs each shard"));
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    tu_put(p, "k", 0);
    counting_on();
    for (int i = 1; i <= 10; i++) tu_put(p, "k", i);
    assert_int_equal(atomic_load(&n_msync), 10);
    assert_int_equal(atomic_load(&n_pwritev), 0);
    sl_producer_close(p);
    sl__os_reset();
    assert_int_equal(sl_stream_close(s), 0);
}

/* ---- recovery -------------------------------------------------------------- */

#define SHADOW_SHARDS 2

static sl_stream *pc_stream;
static int pc_fd[SHADOW_SHARDS] = {-1, -1};

/* The child's msync: copy what was synced into the shard's shadow. */
static int shadow_msync(void *a, size_t l, int f)
{
    int rc = real.msync(a, l, f);
    uint8_t *p = a;
    for (size_t i = 0; rc == 0 && i < pc_stream->nshards && i < SHADOW_SHARDS; i++) {
        sl_seg *g = pc_stream->shards[i]->active;
        if (g && g->ordinal == 1 && p >= g->base && p + l <= g->base + g->map_len &&
            pwrite(pc_fd[i], p, l, p - g->base) != (ssize_t)l)
            _exit(3);
    }
    return rc;
}

/* A segment file as it was made: its header's first 64 bytes (immutable),
** everything else zero, boot id too (a reboot). */
static void start_shadow(const char *seg, const char *shadow)
{
    int in = open(seg, O_RDONLY), out = open(shadow, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(in >= 0 && out >= 0);
    uint8_t h[64];
    assert_int_equal(pread(in, h, sizeof h, 0), 64);
    assert_int_equal(pwrite(out, h, sizeof h, 0), 64);
    assert_int_equal(ftruncate(out, file_size(seg)), 0);
    close(in);
    close(out);
}

static char *seg_of(const char *root, uint32_t shard)
{
    return tu_seg_path(root, NAME, shard, 1);
}

/* The reboot: each shard's shadow becomes its segment, and the boot id it
** carries (if a checkpoint synced its header) is no longer this boot's. */
static void power_cut(const char *root, uint32_t shards)
{
    for (uint32_t i = 0; i < shards; i++) {
        char *seg = seg_of(root, i), *sh = tu_path("%s/shadow-%u", root, i);
        assert_int_equal(rename(sh, seg), 0);
        int fd = open(seg, O_RDWR);
        uint64_t other_boot = 0;
        assert_int_equal(pwrite(fd, &other_boot, 8, SL_H_BOOT), 8);
        close(fd);
        free(seg);
        free(sh);
    }
}

static size_t pc_len(int i)
{
    /* mostly small records, with runs of large ones that make laps, and so
    ** checkpoints and growth */
    if ((i >= 100 && i < 110) || (i >= 200 && i < 216)) return 600u << 10;
    return 20 + (size_t)(i * 7919) % 2000;
}

static const char *pc_key(int i) { return i % 2 ? "odd" : "even"; }

/* The child: create the stream's segments, start the shadows, append n
** records (ALWAYS), then die without closing.  Exits 0 when all were put. */
static void child_appends(const char *root, int n, bool shadows)
{
    real = sl__os;
    sl_stream *s = tu_open(root, NAME, NULL);
    if (!s->jr) _exit(6);
    sl_producer *p;
    if (sl_producer_open(&p, s)) _exit(1);
    static char d[600 << 10];
    for (int i = 0; i < n; i++) {
        /* even records to shard 0, odd ones to shard 1 */
        sl_put_entry e = {pc_key(i), d, fill_rec(d, i, pc_len(i)),
                          i % 2 ? "170141183460469231731687303715884105728" : "0"};
        sl_put_result r;
        if (sl_producer_put(p, &e, &r) || r.shard_index != (uint32_t)(i % 2)) _exit(1);
        if (i == 1 && shadows) {
            /* both shards have their segment now: from here the shadows
            ** follow every sync of a segment */
            for (uint32_t k = 0; k < s->nshards; k++) {
                char *seg = seg_of(root, k), *sh = tu_path("%s/shadow-%u", root, k);
                start_shadow(seg, sh);
                pc_fd[k] = open(sh, O_RDWR);
                if (pc_fd[k] < 0) _exit(2);
                free(seg);
                free(sh);
            }
            pc_stream = s;
            sl__os.msync = shadow_msync;
        }
    }
    _exit(0);
}

static void run_child(const char *root, int n, bool shadows)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) child_appends(root, n, shadows);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* every record 0..n-1, in order per key */
static void check_all(sl_stream *s, int n)
{
    tu_recs all = {0};
    tu_read_all(s, &all);
    assert_int_equal(all.corrupt, 0);
    assert_int_equal(all.n, (size_t)n);
    int next[2] = {0, 1};
    for (size_t k = 0; k < all.n; k++) {
        int i = atoi(all.v[k].data);
        int which = i % 2;
        assert_int_equal(i, next[which]);
        assert_string_equal(all.v[k].key, pc_key(i));
        check_rec(&all.v[k], i, pc_len(i));
        next[which] += 2;
    }
    tu_recs_free(&all);
}

static void make_two_shards(const char *root)
{
    sl_stream *s = make(root, SHADOW_SHARDS, 32u << 20);
    assert_int_equal(sl_stream_close(s), 0);
}

/* A power cut: the segments hold only what was synced to them (their
** headers, and whatever checkpoints synced), the journal the rest.  Every
** acknowledged record comes back, the journal is cleared, and nothing is
** reported as damage. */
static void power_cut_restores_from_journal(void **state)
{
    enum { N = 300 };
    make_two_shards(*state);
    run_child(*state, N, true);
    power_cut(*state, SHADOW_SHARDS);
    tu_reports rep = {0};
    tu_opts o = {.reports = &rep};
    sl_stream *s = tu_open(*state, NAME, &o);
    assert_true(s->jr_replayed > 0);
    assert_int_equal(rep.count, 0);
    check_all(s, N);
    assert_int_equal(journal_magic(*state), 0);
    assert_int_equal(sl_stream_close(s), 0);
    /* and again: nothing left to replay, nothing lost */
    s = tu_open(*state, NAME, NULL);
    assert_int_equal(s->jr_replayed, 0);
    check_all(s, N);
    assert_int_equal(sl_stream_close(s), 0);
}

/* A process crash: the page cache kept everything, so recovery writes
** nothing into the segments (it only makes them durable). */
static void process_crash_replays_nothing(void **state)
{
    enum { N = 120 };
    make_two_shards(*state);
    run_child(*state, N, false);
    assert_int_not_equal(journal_magic(*state), 0);
    sl_stream *s = tu_open(*state, NAME, NULL);
    assert_int_equal(s->jr_replayed, 0);
    check_all(s, N);
    assert_int_equal(sl_stream_close(s), 0);
}

/* Reopened in NONE mode after a power cut: the journal is replayed all the
** same, and then removed (that mode does not use it). */
static void reopen_in_another_mode(void **state)
{
    enum { N = 60 };
    make_two_shards(*state);
    run_child(*state, N, true);
    power_cut(*state, SHADOW_SHARDS);
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.durability = SL_DURABILITY_NONE;
    sl_stream *s;
    assert_int_equal(sl_stream_open(&s, *state, NAME, &o), 0);
    assert_null(s->jr);
    assert_true(s->jr_replayed > 0);
    char *jp = journal_path(*state);
    assert_int_equal(file_size(jp), -1);
    check_all(s, N);
    assert_int_equal(sl_stream_close(s), 0);
    free(jp);
}

/* A damaged frame ends the replay: the frames before it are applied, the
** ones after are not (they could be another lap's), nothing crashes, and
** no damaged record is returned. */
static void torn_frame_ends_replay(void **state)
{
    enum { N = 40, CUT = 25 };
    make_two_shards(*state);
    run_child(*state, N, true);
    power_cut(*state, SHADOW_SHARDS);
    /* single puts from one thread: frame k holds record k */
    char *jp = journal_path(*state);
    int fd = open(jp, O_RDWR);
    assert_true(fd >= 0);
    uint64_t off = 0, bytes;
    for (int k = 0; k < CUT; k++) {
        assert_int_equal(pread(fd, &bytes, 8, (off_t)off + 16), 8);
        off += bytes;
    }
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)off + 100), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)off + 100), 1);
    close(fd);
    free(jp);
    sl_stream *s = tu_open(*state, NAME, NULL);
    check_all(s, CUT);
    assert_int_equal(sl_stream_close(s), 0);
}

/* A segment rewritten after its records went through the journal (made
** cold here; key compaction likewise) must not get the journal's bytes
** back: the lap's offsets are the old file's.  Replay skips segments sealed
** on disk. */
static void rewritten_segment_is_not_replayed(void **state)
{
    const char *root = *state;
    enum { N = 100 };
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sl_vclock *vc;
        if (sl_vclock_new(&vc, 1700000000000LL)) _exit(2);
        sl_stream_config c = SL_STREAM_CONFIG_INIT;
        c.name = NAME;
        c.durability = SL_DURABILITY_ALWAYS;
        c.segment_bytes = SL_SEGMENT_BYTES_MIN;
        sl_open_opts o = SL_OPEN_OPTS_INIT;
        o.clock = sl_vclock_clock(vc);
        sl_stream *s;
        if (sl_stream_create(&s, root, &c, &o)) _exit(3);
        sl_producer *p;
        if (sl_producer_open(&p, s)) _exit(4);
        char data[1000];
        for (int i = 0; i < N; i++) {
            memset(data, 'a' + i % 26, sizeof data);
            if (sl_put(p, "k", data, sizeof data, NULL)) _exit(5);
        }
        if (sl_stream_set_cold_after(s, 1)) _exit(6);
        sl_vclock_advance(vc, 2 * 3600000);
        sl_maint_stats st;
        if (sl_stream_maintain(s, -1, NULL, NULL, &st) || st.segments_cold < 1) _exit(7);
        raise(SIGKILL);
        _exit(8);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_int_not_equal(journal_magic(root), 0);
    tu_reports rep = {0};
    sl_vclock *vc;                      /* the child's time: nothing expired */
    assert_int_equal(sl_vclock_new(&vc, 1700000000000LL + 2 * 3600000), 0);
    tu_opts o = {.reports = &rep, .clock = sl_vclock_clock(vc)};
    sl_stream *s = tu_open(root, NAME, &o);
    tu_recs all = {0};
    tu_read_all(s, &all);
    assert_int_equal(all.corrupt, 0);
    assert_int_equal(all.n, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(all.v[i].dlen, 1000);
        for (int k = 0; k < 1000; k++) assert_int_equal(all.v[i].data[k], 'a' + i % 26);
    }
    tu_recs_free(&all);
    assert_int_equal(rep.count, 0);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);
}

/* An entry for a segment that no longer exists (retention removed it) is
** skipped; the rest is restored. */
static void missing_segment_is_skipped(void **state)
{
    enum { N = 30 };
    make_two_shards(*state);
    run_child(*state, N, true);
    power_cut(*state, SHADOW_SHARDS);
    /* shard 1's segment goes (and its records with it) */
    uint32_t gone = 1;
    char *seg = seg_of(*state, gone);
    assert_int_equal(unlink(seg), 0);
    free(seg);
    tu_reports rep = {0};
    tu_opts o = {.reports = &rep};
    sl_stream *s = tu_open(*state, NAME, &o);
    assert_true(s->jr_replayed > 0);
    tu_recs all = {0};
    tu_read_all(s, &all);
    assert_int_equal(all.corrupt, 0);
    for (size_t k = 0; k < all.n; k++) check_rec(&all.v[k], atoi(all.v[k].data),
                                                 pc_len(atoi(all.v[k].data)));
    assert_true(all.n > 0 && all.n < N);
    tu_recs_free(&all);
    assert_int_equal(sl_stream_close(s), 0);
}

/* A journal of a newer format is neither replayed nor cleared: the writer
** open fails and says why. */
static void newer_journal_fails_the_open(void **state)
{
    make_two_shards(*state);
    char *jp = journal_path(*state);
    int fd = open(jp, O_RDWR);
    assert_true(fd >= 0);
    uint32_t h[2] = {0x464A4C53u, 2};                 /* "SLJF", version 2 */
    assert_int_equal(pwrite(fd, h, sizeof h, 0), (ssize_t)sizeof h);
    close(fd);
    sl_stream *s;
    assert_int_equal(sl_stream_open(&s, *state, NAME, NULL), SL_ECORRUPT);
    assert_non_null(strstr(sl_errmsg(NULL), "journal format version 2"));
    assert_int_equal(journal_magic(*state), 0x464A4C53u);
    sl_open_opts ro = SL_OPEN_OPTS_INIT;
    ro.flags = SL_OPEN_READONLY;                      /* readers do not care */
    assert_int_equal(sl_stream_open(&s, *state, NAME, &ro), 0);
    assert_int_equal(sl_stream_close(s), 0);
    free(jp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(one_write_per_commit, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(group_commit_shares_a_write, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(laps_checkpoint_and_grow, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(failed_write_fails_the_stream, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(no_room_for_a_journal, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(power_cut_restores_from_journal, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(rewritten_segment_is_not_replayed, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(process_crash_replays_nothing, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(reopen_in_another_mode, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(torn_frame_ends_replay, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(missing_segment_is_skipped, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(newer_journal_fails_the_open, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests_name("commit", tests, NULL, NULL);
}
