/*
** core_bench.c -- shardlog's core benchmark: append, scan and reopen.
**
** One run measures, as the median (and min, max) of --rounds rounds after
** one discarded warm-up round, each round on a fresh stream of 4 shards with
** durability NONE and 16-byte random partition keys (routed by MD5):
**   - append 100-byte records (2,000,000), in batches of 500, and again
**     one sl_put (PutRecord) at a time
**   - append 64 KiB records (10,000 = 640 MiB), in batches of up to 10 MiB
**   - scan both back through iterators from TRIM_HORIZON, summing every data
**     byte (and checking the sum), so no work can be skipped
**   - reopen (sl_stream_open, read-write) after a crash: a forked child writes
**     1 GiB of 1 KiB records and kills itself with SIGKILL without closing;
**     and, for comparison, reopen after a clean close
**   - the machine's memcpy bandwidth over a 64 MiB buffer, the yardstick for
**     the "vs memcpy" column (shardlog MB/s / memcpy MB/s)
** MB counts record data only (10^6 bytes; keys and framing not counted).
** Output: a Markdown table on stdout; progress goes to stderr.
**
** Usage: core_bench [--rounds N] [--quick] [--reopen-gib G] [--dir DIR]
**   --quick divides every size by 10.  Only the public API is used.
*/
#include <shardlog.h>

#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/utsname.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SHARDS 4
#define KEY_LEN 16
#define SMALL 100u
#define LARGE (64u << 10)
#define CRASH_REC 1024u
#define POOL (1u << 20)               /* random data records are cut from */
#define MEMCPY_BYTES (64u << 20)
#define READ_LIMIT SL_GET_RECORDS_MAX

static void die(int rc, const void *h, const char *what)
{
    fprintf(stderr, "core_bench: %s: %s: %s\n", what, sl_strerror(rc), sl_errmsg(h));
    exit(1);
}
#define CHECK(call, h, what)                                                   \
    do {                                                                       \
        int rc_ = (call);                                                      \
        if (rc_ < 0) die(rc_, (h), (what));                                    \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* A random 16-character partition key (hex of 64 random bits). */
static void make_key(char out[KEY_LEN + 1], uint64_t *rng)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v = splitmix(rng);
    for (int i = 0; i < KEY_LEN; i++, v >>= 4) out[i] = hex[v & 15];
    out[KEY_LEN] = '\0';
}

static uint64_t sum_bytes(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t s = 0, w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, b + i, 8);
        s += (w & 0x00ff00ff00ff00ffu) + ((w >> 8) & 0x00ff00ff00ff00ffu);
    }
    s = (s & 0xffffu) + ((s >> 16) & 0xffffu) + ((s >> 32) & 0xffffu) + (s >> 48);
    for (; i < n; i++) s += b[i];
    return s;
}

/* ---- shared inputs ------------------------------------------------------ */

static char tmp_root[4096];          /* our temporary directory */
static pid_t root_owner;              /* the process that removes it */
static char (*keys)[KEY_LEN + 1];    /* one per record of the largest run */
static unsigned char *pool;           /* POOL + LARGE random bytes */

/* Record i's data: any record of up to LARGE bytes fits from here. */
static const void *data_of(size_t i)
{
    return pool + (i * 4099u) % POOL;
}

static sl_stream *create(const char *root, const char *name)
{
    sl_stream_config cfg = SL_STREAM_CONFIG_INIT;
    cfg.name = name;
    cfg.shard_count = SHARDS;
    cfg.durability = SL_DURABILITY_NONE;
    sl_stream *s;
    CHECK(sl_stream_create(&s, root, &cfg, NULL), NULL, "sl_stream_create");
    return s;
}

static void close_and_delete(sl_stream *s, const char *root, const char *name)
{
    int rc = sl_stream_close(s);
    if (rc < 0) die(rc, rc == SL_EINUSE ? (const void *)s : NULL, "sl_stream_close");
    CHECK(sl_stream_delete(root, name), NULL, "sl_stream_delete");
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* At exit, even after a failure: remove the temporary directory. */
static void cleanup(void)
{
    if (root_owner == getpid()) nftw(tmp_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- workloads ---------------------------------------------------------- */

typedef struct sample {
    double append_s, scan_s;
} sample;

/* Append n records of `size` bytes (in batches, or one sl_put at a time if
** `single`), then scan them back; one fresh stream. */
static sample append_and_scan(const char *root, size_t n, size_t size, bool single)
{
    static sl_put_entry entries[SL_BATCH_RECORDS_MAX];
    static sl_put_result results[SL_BATCH_RECORDS_MAX];
    sample out;
    size_t per_batch = SL_BATCH_BYTES_MAX / (size + KEY_LEN);
    if (per_batch > SL_BATCH_RECORDS_MAX) per_batch = SL_BATCH_RECORDS_MAX;
    uint64_t want = 0;                /* expected scan sum, not timed */
    for (size_t i = 0; i < n; i++) want += sum_bytes(data_of(i), size);

    sl_stream *s = create(root, "bench");
    sl_producer *p;
    CHECK(sl_producer_open(&p, s), s, "sl_producer_open");
    double t0 = now_s();
    for (size_t i = 0; single && i < n; i++)
        CHECK(sl_put(p, keys[i], data_of(i), size, NULL), p, "sl_put");
    for (size_t i = 0; !single && i < n;) {
        size_t k = n - i < per_batch ? n - i : per_batch, failed;
        for (size_t j = 0; j < k; j++)
            entries[j] = (sl_put_entry){keys[i + j], data_of(i + j), size, NULL};
        CHECK(sl_producer_put_batch(p, entries, k, results, &failed), p, "sl_producer_put_batch");
        if (failed) {
            for (size_t j = 0; j < k; j++)
                if (results[j].error)
                    die(results[j].error, NULL, results[j].error_message);
        }
        i += k;
    }
    out.append_s = now_s() - t0;
    sl_producer_close(p);

    static sl_record recs[READ_LIMIT];
    sl_shard_list *shards;
    CHECK(sl_stream_list_shards(&shards, s), s, "sl_stream_list_shards");
    uint64_t sum = 0, count = 0;
    t0 = now_s();
    for (size_t si = 0; si < shards->count; si++) {
        sl_iter *it;
        sl_read_result res;
        CHECK(sl_iter_open(&it, s, shards->shards[si].shard_id, SL_ITER_TRIM_HORIZON, 0), s,
              "sl_iter_open");
        do {
            CHECK(sl_iter_read(it, recs, READ_LIMIT, &res), it, "sl_iter_read");
            for (size_t j = 0; j < res.count; j++) sum += sum_bytes(recs[j].data, recs[j].data_len);
            count += res.count;
        } while (res.count > 0);
        sl_iter_close(it);
    }
    out.scan_s = now_s() - t0;
    sl_shard_list_free(shards);
    if (count != n || sum != want) {
        fprintf(stderr, "core_bench: scan of %zu-byte records read %" PRIu64 " records "
                "(sum %" PRIu64 "), wrote %zu (sum %" PRIu64 ")\n", size, count, sum, n, want);
        exit(1);
    }
    close_and_delete(s, root, "bench");
    return out;
}

/* The child: write `bytes` of 1 KiB records, report the count, SIGKILL. */
static void crash_child(const char *root, uint64_t bytes, int fd)
{
    static sl_put_entry entries[SL_BATCH_RECORDS_MAX];
    static sl_put_result results[SL_BATCH_RECORDS_MAX];
    static char ckeys[SL_BATCH_RECORDS_MAX][KEY_LEN + 1];
    uint64_t rng = 7, n = bytes / CRASH_REC, done = 0;
    sl_stream *s = create(root, "crash");
    sl_producer *p;
    CHECK(sl_producer_open(&p, s), s, "sl_producer_open (child)");
    while (done < n) {
        size_t k = n - done < SL_BATCH_RECORDS_MAX ? (size_t)(n - done) : SL_BATCH_RECORDS_MAX;
        size_t failed;
        for (size_t j = 0; j < k; j++) {
            make_key(ckeys[j], &rng);
            entries[j] = (sl_put_entry){ckeys[j], data_of(done + j), CRASH_REC, NULL};
        }
        CHECK(sl_producer_put_batch(p, entries, k, results, &failed), p, "put_batch (child)");
        if (failed) _exit(3);
        done += k;
    }
    if (write(fd, &done, sizeof done) != (ssize_t)sizeof done) _exit(4);
    raise(SIGKILL);                   /* no close: the stream is left open */
    _exit(5);
}

/* Time sl_stream_open after a crash, then after a clean close. */
static void reopen(const char *root, uint64_t bytes, double *crash_s, double *clean_s)
{
    int pfd[2];
    uint64_t committed = 0;
    fflush(NULL);
    if (pipe(pfd) != 0) { perror("core_bench: pipe"); exit(1); }
    pid_t pid = fork();
    if (pid < 0) { perror("core_bench: fork"); exit(1); }
    if (pid == 0) {
        close(pfd[0]);
        crash_child(root, bytes, pfd[1]);
    }
    close(pfd[1]);
    ssize_t got = read(pfd[0], &committed, sizeof committed);
    close(pfd[0]);
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL ||
        got != (ssize_t)sizeof committed) {
        fprintf(stderr, "core_bench: the crash child failed (status 0x%x)\n", st);
        exit(1);
    }

    sl_stream *s;
    double t0 = now_s();
    CHECK(sl_stream_open(&s, root, "crash", NULL), NULL, "sl_stream_open after crash");
    *crash_s = now_s() - t0;
    sl_shard_list *shards;          /* a crash of the process loses nothing */
    CHECK(sl_stream_list_shards(&shards, s), s, "sl_stream_list_shards");
    uint64_t found = 0;
    for (size_t i = 0; i < shards->count; i++) found += shards->shards[i].records;
    sl_shard_list_free(shards);
    if (found != committed) {
        fprintf(stderr, "core_bench: after the crash %" PRIu64 " records, the child "
                "committed %" PRIu64 "\n", found, committed);
        exit(1);
    }
    int rc = sl_stream_close(s);
    if (rc < 0) die(rc, NULL, "sl_stream_close");
    t0 = now_s();
    CHECK(sl_stream_open(&s, root, "crash", NULL), NULL, "sl_stream_open after close");
    *clean_s = now_s() - t0;
    close_and_delete(s, root, "crash");
}

/* Bytes per second of memcpy over MEMCPY_BYTES (best of 4 copies). */
static double memcpy_rate(void)
{
    static unsigned char *src, *dst;
    static volatile unsigned char sink;
    if (!src) {
        src = malloc(MEMCPY_BYTES);
        dst = malloc(MEMCPY_BYTES);
        if (!src || !dst) { fprintf(stderr, "core_bench: out of memory\n"); exit(1); }
        memset(src, 1, MEMCPY_BYTES);
        memset(dst, 2, MEMCPY_BYTES);
    }
    double best = 1e9;
    for (int r = 0; r < 4; r++) {
        src[r] = (unsigned char)r;
        double t0 = now_s();
        memcpy(dst, src, MEMCPY_BYTES);
        double t = now_s() - t0;
        sink = dst[r] ^ dst[MEMCPY_BYTES - 1];
        if (t < best) best = t;
    }
    (void)sink;
    return MEMCPY_BYTES / best;
}

/* ---- statistics and report ---------------------------------------------- */

/* The measurements of one round (rates in MB/s or records/s, times in ms). */
enum { MEMCPY, AS_R, AS_B, AP_R, AP_B, AL_R, AL_B, SS_R, SS_B, SL_R, SL_B, RE_CRASH, RE_CLEAN, NM };

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct stat3 {
    double med, min, max;
} stat3;

static stat3 stats(const double *v, int n)
{
    double *c = malloc((size_t)n * sizeof *c);
    if (!c) exit(1);
    memcpy(c, v, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_double);
    stat3 s = {n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2, c[0], c[n - 1]};
    free(c);
    return s;
}

/* v with `digits` decimals and, from 10,000 up, thousands separators. */
static void num(char out[32], double v, int digits)
{
    char t[32];
    int n = snprintf(t, sizeof t, "%.*f", digits, v), j = 0;
    int intlen = digits ? n - digits - 1 : n;
    for (int i = 0; i < n; i++) {
        if (v >= 10000 && i && i < intlen && (intlen - i) % 3 == 0) out[j++] = ',';
        out[j++] = t[i];
    }
    out[j] = '\0';
}

/* One table row: measurement k of every round, shown times `scale`; with
** memcpy_mbs > 0, the "vs memcpy" ratio of the medians. */
static void row(double (*m)[NM], int rounds, int k, const char *name, const char *unit,
                double scale, double memcpy_mbs)
{
    double v[64];
    for (int r = 0; r < rounds; r++) v[r] = m[r][k] * scale;
    stat3 s = stats(v, rounds);
    int digits = s.med >= 100 ? 0 : s.med >= 10 ? 1 : 2;
    char a[32], b[32], c[32], ratio[32] = "";
    num(a, s.med, digits);
    num(b, s.min, digits);
    num(c, s.max, digits);
    if (memcpy_mbs > 0) snprintf(ratio, sizeof ratio, "%.3f", s.med / scale / memcpy_mbs);
    printf("| %s | %s | %s | %s | %s | %s |\n", name, a, b, c, unit, ratio);
}

/* The filesystem type of path, for the report. */
static const char *fs_name(const char *path)
{
    static const struct { unsigned long magic; const char *name; } fs[] = {
        {0xEF53, "ext2/3/4"}, {0x58465342, "xfs"}, {0x01021994, "tmpfs"},
        {0x9123683E, "btrfs"}, {0x794C7630, "overlayfs"}, {0x2FC12FC1, "zfs"},
        {0xF2F52010, "f2fs"}, {0x6969, "nfs"}};
    struct statfs st;
    if (statfs(path, &st) != 0) return "unknown filesystem";
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        if ((unsigned long)st.f_type == fs[i].magic) return fs[i].name;
    return "other filesystem";
}

static void usage(void)
{
    fprintf(stderr, "usage: core_bench [--rounds N] [--quick] [--reopen-gib G] [--dir DIR]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int rounds = 5;
    bool quick = false;
    double gib = 1.0;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quick")) quick = true;
        else if (i + 1 >= argc) usage();
        else if (!strcmp(a, "--rounds")) rounds = atoi(argv[++i]);
        else if (!strcmp(a, "--reopen-gib")) gib = atof(argv[++i]);
        else if (!strcmp(a, "--dir")) dir = argv[++i];
        else usage();
    }
    if (rounds < 1 || rounds > 64 || gib <= 0) usage();
    int div = quick ? 10 : 1;
    size_t small_n = 2000000 / div, large_n = 10000 / div;
    uint64_t crash_bytes = (uint64_t)(gib * (1u << 30) / div);

    /* a fresh directory under --dir, $TMPDIR or /tmp */
    const char *parent = dir ? dir : getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR")
                                                                            : "/tmp";
    snprintf(tmp_root, sizeof tmp_root, "%s/core-bench-XXXXXX", parent);
    if (!mkdtemp(tmp_root)) { perror("core_bench: mkdtemp"); return 1; }
    root_owner = getpid();
    atexit(cleanup);
    const char *root = tmp_root, *fstype = fs_name(root);

    uint64_t rng = 0x5eed;
    size_t nkeys = small_n > large_n ? small_n : large_n;
    keys = malloc(nkeys * sizeof *keys);
    pool = malloc(POOL + LARGE);
    if (!keys || !pool) { fprintf(stderr, "core_bench: out of memory\n"); return 1; }
    for (size_t i = 0; i < nkeys; i++) make_key(keys[i], &rng);
    for (size_t i = 0; i < POOL + LARGE; i += 8) {
        uint64_t v = splitmix(&rng);
        memcpy(pool + i, &v, 8);
    }

    /* per round: memcpy, small and large append + scan, reopen */
    double (*m)[NM] = calloc((size_t)rounds, sizeof *m);
    if (!m) return 1;
    for (int r = 0; r <= rounds; r++) {
        fprintf(stderr, "core_bench: %s %d/%d\n", r ? "round" : "warm-up", r, rounds);
        double *v = m[r ? r - 1 : 0];
        v[MEMCPY] = memcpy_rate() / 1e6;
        sample a = append_and_scan(root, small_n, SMALL, false);
        v[AS_R] = small_n / a.append_s;
        v[AS_B] = small_n * (double)SMALL / a.append_s / 1e6;
        v[SS_R] = small_n / a.scan_s;
        v[SS_B] = small_n * (double)SMALL / a.scan_s / 1e6;
        a = append_and_scan(root, small_n, SMALL, true);
        v[AP_R] = small_n / a.append_s;
        v[AP_B] = small_n * (double)SMALL / a.append_s / 1e6;
        a = append_and_scan(root, large_n, LARGE, false);
        v[AL_R] = large_n / a.append_s;
        v[AL_B] = large_n * (double)LARGE / a.append_s / 1e6;
        v[SL_R] = large_n / a.scan_s;
        v[SL_B] = large_n * (double)LARGE / a.scan_s / 1e6;
        reopen(root, crash_bytes, &v[RE_CRASH], &v[RE_CLEAN]);
        v[RE_CRASH] *= 1e3;
        v[RE_CLEAN] *= 1e3;
    }

    /* the report */
    double col[64];
    char when[64], line[1024] = "", name[128];
    time_t t = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %Z", localtime(&t));
    for (int i = 0; i < argc; i++)
        snprintf(line + strlen(line), sizeof line - strlen(line), "%s%s", i ? " " : "", argv[i]);
    struct utsname u;
    uname(&u);
    char cpu[128] = "unknown CPU", buf[256];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(buf, sizeof buf, f)) {
        char *colon = strchr(buf, ':');
        if (!strncmp(buf, "model name", 10) && colon) {
            snprintf(cpu, sizeof cpu, "%s", colon + 2);
            cpu[strcspn(cpu, "\n")] = '\0';
            break;
        }
    }
    if (f) fclose(f);
    printf("## shardlog %s core benchmark\n\n", sl_version());
    printf("- command: `%s`\n- date: %s\n", line, when);
    printf("- host: %s %s %s; %ld x %s\n", u.sysname, u.release, u.machine,
           sysconf(_SC_NPROCESSORS_ONLN), cpu);
    printf("- directory: %s (%s)\n", parent, fstype);
    printf("- %d shards, durability NONE, 16-byte random partition keys (MD5 routing); "
           "median of %d round%s after a discarded warm-up; MB = 10^6 bytes of record data\n\n",
           SHARDS, rounds, rounds == 1 ? "" : "s");
    printf("| workload | median | min | max | unit | vs memcpy |\n");
    printf("|---|---:|---:|---:|---|---:|\n");
    for (int r = 0; r < rounds; r++) col[r] = m[r][MEMCPY];
    double mc = stats(col, rounds).med;
    size_t large_batch = SL_BATCH_BYTES_MAX / (LARGE + KEY_LEN);
    double gibs = crash_bytes / (double)(1u << 30);
    row(m, rounds, MEMCPY, "memcpy, 64 MiB buffer", "GB/s", 1e-3, mc);
    char ns[32], nl[32];
    num(ns, (double)small_n, 0);
    num(nl, (double)large_n, 0);
    snprintf(name, sizeof name, "append %s x 100 B, batches of 500", ns);
    row(m, rounds, AS_R, name, "records/s", 1, 0);
    row(m, rounds, AS_B, name, "MB/s", 1, mc);
    snprintf(name, sizeof name, "append %s x 100 B, one sl_put each", ns);
    row(m, rounds, AP_R, name, "records/s", 1, 0);
    row(m, rounds, AP_B, name, "MB/s", 1, mc);
    snprintf(name, sizeof name, "append %s x 64 KiB, batches of %zu", nl, large_batch);
    row(m, rounds, AL_R, name, "records/s", 1, 0);
    row(m, rounds, AL_B, name, "MB/s", 1, mc);
    snprintf(name, sizeof name, "scan %s x 100 B", ns);
    row(m, rounds, SS_R, name, "records/s", 1, 0);
    row(m, rounds, SS_B, name, "MB/s", 1, mc);
    snprintf(name, sizeof name, "scan %s x 64 KiB", nl);
    row(m, rounds, SL_R, name, "records/s", 1, 0);
    row(m, rounds, SL_B, name, "MB/s", 1, mc);
    snprintf(name, sizeof name, "reopen after SIGKILL, %.2f GiB of 1 KiB records", gibs);
    row(m, rounds, RE_CRASH, name, "ms", 1, 0);
    snprintf(name, sizeof name, "reopen after clean close, %.2f GiB", gibs);
    row(m, rounds, RE_CLEAN, name, "ms", 1, 0);
    free(m);
    free(keys);
    free(pool);
    return 0;
}
