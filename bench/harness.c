/*
** harness.c -- timing, inputs, routing, measurements and formatting shared
** by every part of the benchmark (see harness.h).
*/
#define OPENSSL_SUPPRESS_DEPRECATED
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/md5.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

/* ---- failure and progress ----------------------------------------------- */

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void progress(const char *fmt, ...)
{
    static double t0;
    if (t0 == 0) t0 = now_s();
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bench [%6.1f s] ", now_s() - t0);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- time --------------------------------------------------------------- */

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double now_s(void)
{
    return (double)now_ns() / 1e9;
}

void spin_ns(uint64_t ns)
{
    uint64_t end = now_ns() + ns;
    while (now_ns() < end) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
}

typedef struct runner {
    pthread_barrier_t *go;
    worker_fn fn;
    void *ctx;
    int t;
    double end;
} runner;

static void *run_one(void *arg)
{
    runner *r = arg;
    pthread_barrier_wait(r->go);
    r->fn(r->ctx, r->t);
    r->end = now_s();
    return NULL;
}

double run_timed(int n, worker_fn fn, void *ctx)
{
    if (n == 1) {
        double t0 = now_s();
        fn(ctx, 0);
        return now_s() - t0;
    }
    runner *r = calloc((size_t)n, sizeof *r);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    pthread_barrier_t go;
    if (!r || !th) die("out of memory");
    if (pthread_barrier_init(&go, NULL, (unsigned)n + 1) != 0) die("pthread_barrier_init");
    for (int t = 0; t < n; t++) {
        r[t].go = &go;
        r[t].fn = fn;
        r[t].ctx = ctx;
        r[t].t = t;
        if (pthread_create(&th[t], NULL, run_one, &r[t]) != 0) die("pthread_create");
    }
    pthread_barrier_wait(&go);
    double t0 = now_s(), end = t0;
    for (int t = 0; t < n; t++) {
        pthread_join(th[t], NULL);
        if (r[t].end > end) end = r[t].end;
    }
    pthread_barrier_destroy(&go);
    free(r);
    free(th);
    return end - t0;
}

static cpu_set_t initial_mask;
static bool have_initial_mask;

bool pin_to(int k)
{
    cpu_set_t all, one;
    if (!have_initial_mask) {
        if (sched_getaffinity(0, sizeof initial_mask, &initial_mask) != 0) return false;
        have_initial_mask = true;
    }
    all = initial_mask;
    CPU_ZERO(&one);
    for (int c = 0, seen = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &all) && seen++ == k) {
            CPU_SET(c, &one);
            return pthread_setaffinity_np(pthread_self(), sizeof one, &one) == 0;
        }
    return false;
}

void pin_restore(void)
{
    if (have_initial_mask)
        pthread_setaffinity_np(pthread_self(), sizeof initial_mask, &initial_mask);
}

/* ---- inputs ------------------------------------------------------------- */

unsigned char *pool;

uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

void make_key(char out[KEY_LEN + 1], uint64_t *rng)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t v = rng_next(rng);
    for (int i = 0; i < KEY_LEN; i++, v >>= 4) out[i] = hex[v & 15];
    out[KEY_LEN] = '\0';
}

uint64_t sum_bytes(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t s = 0, w;
    size_t i = 0;
    /* 8 bytes at a time, as byte lanes; a lane of 16-bit sums cannot
    ** overflow within 256 words, so fold every 128 */
    while (i + 8 <= n) {
        uint64_t acc = 0;
        size_t end = i + 8 * 128 < n ? i + 8 * 128 : n;
        for (; i + 8 <= end; i += 8) {
            memcpy(&w, b + i, 8);
            acc += (w & 0x00ff00ff00ff00ffu) + ((w >> 8) & 0x00ff00ff00ff00ffu);
        }
        s += (acc & 0xffffu) + ((acc >> 16) & 0xffffu) + ((acc >> 32) & 0xffffu) + (acc >> 48);
    }
    for (; i < n; i++) s += b[i];
    return s;
}

void keyset_init(keyset *ks, int threads, size_t total, uint64_t seed)
{
    memset(ks, 0, sizeof *ks);
    ks->threads = threads;
    ks->cap = total / (size_t)threads;
    for (int t = 0; t < threads; t++) {
        ks->keys[t] = malloc(ks->cap * sizeof *ks->keys[t]);
        if (!ks->keys[t]) die("out of memory for keys");
    }
    uint64_t rng = seed;
    if (threads == 1) {
        for (size_t i = 0; i < ks->cap; i++) make_key(ks->keys[0][i], &rng);
        return;
    }
    size_t have[2] = {0, 0};
    char k[KEY_LEN + 1];
    while (have[0] < ks->cap || have[1] < ks->cap) {
        make_key(k, &rng);
        int t = route(k) >> 1;        /* shards 0,1 -> thread 0; 2,3 -> 1 */
        if (have[t] < ks->cap) memcpy(ks->keys[t][have[t]++], k, sizeof k);
    }
}

void keyset_free(keyset *ks)
{
    for (int t = 0; t < 2; t++) free(ks->keys[t]);
    memset(ks, 0, sizeof *ks);
}

uint64_t expected_sum(size_t n, size_t size)
{
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++) s += sum_bytes(rec_data(i), size);
    return s;
}

void md5_key(const void *key, size_t len, unsigned char out[16])
{
    MD5_CTX c;
    if (MD5_Init(&c) != 1 || MD5_Update(&c, key, len) != 1 || MD5_Final(out, &c) != 1)
        die("MD5 failed in libcrypto");
}

size_t batch_for(size_t size)
{
    size_t k = BATCH_BYTES / (size + KEY_LEN);
    return k > BATCH_MAX ? BATCH_MAX : k;
}

/* ---- measurements ------------------------------------------------------- */

int n_rounds;

typedef struct series {
    char name[96];
    double v[MAX_ROUNDS];
    int n;
} series;

static series *all;
static size_t n_all, cap_all;

static series *find(const char *name, bool create)
{
    for (size_t i = 0; i < n_all; i++)
        if (!strcmp(all[i].name, name)) return &all[i];
    if (!create) return NULL;
    if (n_all == cap_all) {
        cap_all = cap_all ? 2 * cap_all : 64;
        all = realloc(all, cap_all * sizeof *all);
        if (!all) die("out of memory");
    }
    series *s = &all[n_all++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    return s;
}

void rec_put(int r, double v, const char *fmt, ...)
{
    if (r < 0) return;
    char name[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    series *s = find(name, true);
    if (r >= MAX_ROUNDS) die("too many rounds");
    s->v[r] = v;
    if (s->n < r + 1) s->n = r + 1;
}

const double *rec_get(int *count, const char *fmt, ...)
{
    char name[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    series *s = find(name, false);
    *count = s ? s->n : 0;
    return s ? s->v : NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

st3 stats(const double *v, int n)
{
    st3 s = {0, 0, 0, 0};
    if (n <= 0) return s;
    double c[MAX_ROUNDS];
    memcpy(c, v, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_double);
    s.med = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
    s.min = c[0];
    s.max = c[n - 1];
    s.n = n;
    return s;
}

st3 metric(const char *fmt, ...)
{
    char name[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    int n;
    const double *v = rec_get(&n, "%s", name);
    return stats(v, n);
}

st3 ratio_stats(const char *a, const char *b)
{
    int na, nb;
    const double *va = rec_get(&na, "%s", a), *vb = rec_get(&nb, "%s", b);
    double r[MAX_ROUNDS];
    int n = 0;
    for (int i = 0; i < na && i < nb; i++)
        if (vb[i] != 0) r[n++] = va[i] / vb[i];
    return stats(r, n);
}

double percentile(double *v, size_t n, double p)
{
    if (n == 0) return 0;
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

/* ---- formatting --------------------------------------------------------- */

static char *slot(void)
{
    static char bufs[32][48];
    static int next;
    return bufs[next++ & 31];
}

const char *fnum(double v)
{
    char *out = slot(), t[48];
    double a = v < 0 ? -v : v;
    int digits = a >= 100 ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : a >= 0.1 ? 3 : 4;
    int n = snprintf(t, sizeof t, "%.*f", digits, v), j = 0;
    int neg = v < 0, intlen = (digits ? n - digits - 1 : n) - neg;
    if (neg) out[j++] = '-';
    for (int i = neg; i < n; i++) {
        int pos = i - neg;
        if (a >= 10000 && pos && pos < intlen && (intlen - pos) % 3 == 0) out[j++] = ',';
        out[j++] = t[i];
    }
    out[j] = '\0';
    return out;
}

const char *fmed(st3 s, double scale)
{
    if (!s.n) return "n/a";
    return fnum(s.med * scale);
}

const char *fspread(st3 s, double scale)
{
    if (!s.n) return "n/a";
    char *out = slot();
    snprintf(out, 48, "%s–%s", fnum(s.min * scale), fnum(s.max * scale));
    return out;
}

const char *fratio(double r)
{
    char *out = slot();
    if (r != r || r == 0) return "n/a";
    snprintf(out, 48, "%.*f×", r >= 10 ? 1 : 2, r);
    return out;
}

/* ---- files -------------------------------------------------------------- */

char bench_root[4096];
static pid_t root_owner;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        die("removing %s: %s", path, strerror(errno));
}

static void root_cleanup(void)
{
    if (root_owner == getpid() && bench_root[0]) rm_rf(bench_root);
}

void root_init(const char *parent)
{
    snprintf(bench_root, sizeof bench_root, "%s/shardlog-bench-XXXXXX", parent);
    if (!mkdtemp(bench_root)) die("mkdtemp under %s: %s", parent, strerror(errno));
    root_owner = getpid();
    atexit(root_cleanup);
}

void path_in_root(char *out, size_t cap, const char *name)
{
    if ((size_t)snprintf(out, cap, "%s/%s", bench_root, name) >= cap) die("path too long");
}

void mkdir_p1(const char *path)
{
    if (mkdir(path, 0700) != 0 && errno != EEXIST) die("mkdir %s: %s", path, strerror(errno));
}

static const void *tc_needle;          /* tree_contains' search (nftw has no context) */
static size_t tc_len;

static int tc_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag != FTW_F || !S_ISREG(st->st_mode) || (size_t)st->st_size < tc_len) return 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) die("open %s: %s", path, strerror(errno));
    void *m = mmap(NULL, (size_t)st->st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) die("mmap %s: %s", path, strerror(errno));
    bool hit = memmem(m, (size_t)st->st_size, tc_needle, tc_len) != NULL;
    munmap(m, (size_t)st->st_size);
    return hit;                       /* non-zero stops the walk */
}

bool tree_contains(const char *dir, const void *needle, size_t n)
{
    tc_needle = needle;
    tc_len = n;
    int rc = nftw(dir, tc_one, 16, FTW_PHYS);
    if (rc < 0) die("walking %s: %s", dir, strerror(errno));
    return rc > 0;
}

uint64_t free_bytes(const char *path)
{
    struct statvfs st;
    if (statvfs(path, &st) != 0) return 0;
    return (uint64_t)st.f_bavail * st.f_frsize;
}

const char *fs_type(const char *path)
{
    static const struct {
        unsigned long magic;
        const char *name;
    } fs[] = {{0xEF53, "ext4 (ext2/3/4 magic)"}, {0x58465342, "xfs"}, {0x01021994, "tmpfs"},
              {0x9123683E, "btrfs"}, {0x794C7630, "overlayfs"}, {0x2FC12FC1, "zfs"},
              {0xF2F52010, "f2fs"}, {0x6969, "nfs"}};
    struct statfs st;
    if (statfs(path, &st) != 0) return "unknown";
    for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
        if ((unsigned long)st.f_type == fs[i].magic) return fs[i].name;
    return "other";
}
