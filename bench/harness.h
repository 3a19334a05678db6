/*
** harness.h -- what every part of the shardlog benchmark shares: timing,
** the PRNG, partition keys and payloads, MD5 routing as shardlog does it,
** the per-round measurement store, statistics, Markdown formatting and the
** temporary directory.
**
** The benchmark is one program (bench/bench.c) built from every file here:
**   harness.c      this header's implementation
**   limits.c       the machine's limits (memcpy, page cache, mmap, MD5, ...)
**   sys_shardlog.c shardlog's side of every workload (public API only)
**   peer_lmdb.c, peer_rocksdb.c, peer_sqlite.c   the peers
*/
#ifndef BENCH_HARNESS_H
#define BENCH_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHARDS 4                      /* every stream and peer database */
#define KEY_LEN 16                    /* partition keys: 16 hex characters */
#define POOL_SPAN (8u << 20)          /* record payloads are cut from here */
#define POOL_BYTES (POOL_SPAN + (64u << 10))
#define MAX_ROUNDS 32
#define BATCH_MAX 500                 /* PutRecords entries, and peer batches */
#define BATCH_BYTES (10u << 20)       /* PutRecords' 10 MiB limit */

/* ---- failure and progress ----------------------------------------------- */
__attribute__((noreturn, format(printf, 1, 2))) void die(const char *fmt, ...);
__attribute__((format(printf, 1, 2))) void progress(const char *fmt, ...);

/* ---- time --------------------------------------------------------------- */
double now_s(void);                   /* CLOCK_MONOTONIC, seconds */
uint64_t now_ns(void);                /* CLOCK_MONOTONIC, nanoseconds */
void spin_ns(uint64_t ns);            /* busy-wait */

/* Run fn(ctx, t) for t in 0..n-1, each on its own thread (inline for n == 1),
** released together by a barrier; returns the wall time from the release to
** the last thread's end.  Thread creation is not timed. */
typedef void (*worker_fn)(void *ctx, int t);
double run_timed(int n, worker_fn fn, void *ctx);

/* Pin the calling thread to the k-th CPU this process may use (false if
** there are not k+1 of them); pin_restore() undoes it for the main thread. */
bool pin_to(int k);
void pin_restore(void);

/* ---- inputs ------------------------------------------------------------- */
uint64_t rng_next(uint64_t *s);       /* splitmix64 */
void make_key(char out[KEY_LEN + 1], uint64_t *rng);

extern unsigned char *pool;           /* POOL_BYTES random bytes */
/* Payload of record number idx (any size up to 64 KiB). */
static inline const unsigned char *rec_data(size_t idx)
{
    return pool + (idx * 4099u) % POOL_SPAN;
}
uint64_t sum_bytes(const void *p, size_t n);  /* what scans compute */

/* Partition keys for up to `cap` records, for 1 thread (any shard) or for 2
** threads, where thread t's keys all route (by MD5) to shards 2t and 2t+1.
** A workload of n records uses thread t's first n/threads keys; record j of
** thread t has payload rec_data(t * (n / threads) + j), so both layouts
** write the same payloads. */
typedef struct keyset {
    int threads;
    size_t cap;                       /* keys per thread */
    char (*keys[2])[KEY_LEN + 1];
} keyset;
void keyset_init(keyset *ks, int threads, size_t total, uint64_t seed);
void keyset_free(keyset *ks);
/* The sum_bytes of the payloads of records 0..n-1 of `size` bytes. */
uint64_t expected_sum(size_t n, size_t size);

/* MD5 of a key through libcrypto's low-level MD5_Init/Update/Final, as
** shardlog's producer calls it, and the shard it routes to among SHARDS
** (Kinesis' even split of the 128-bit key space: the top two bits). */
void md5_key(const void *key, size_t len, unsigned char out[16]);
static inline int route(const char *key)
{
    unsigned char h[16];
    md5_key(key, KEY_LEN, h);
    return h[0] >> 6;
}
static inline void put_be64(unsigned char *b, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8) b[i] = (unsigned char)v;
}

/* ---- workloads' common shapes -------------------------------------------- */
typedef struct ap_job {
    const char *dir;                  /* an empty directory for this run */
    const keyset *ks;
    size_t n;                         /* records in all */
    size_t size;                      /* payload bytes per record */
    int threads;                      /* 1 or 2 (== ks->threads) */
    int batch;                        /* 0: one put per record; else batch */
    bool scan;                        /* scan everything back afterwards */
} ap_job;

typedef struct ap_result {
    double append_s, scan_s;
    uint64_t scan_records, scan_sum;  /* checked against the job */
} ap_result;

/* Records per batch for `size`-byte records: 500, or fewer so that a batch
** stays within PutRecords' 10 MiB (159 at 64 KiB).  Peers use the same. */
size_t batch_for(size_t size);

/* ---- measurements ------------------------------------------------------- */
/* Store value v of metric `name` for round r (r < 0: the warm-up, ignored). */
__attribute__((format(printf, 3, 4))) void rec_put(int r, double v, const char *name, ...);
/* The values stored for a metric over the rounds; NULL if none. */
const double *rec_get(int *count, const char *name, ...)
    __attribute__((format(printf, 2, 3)));
extern int n_rounds;                  /* rounds measured (warm-up excluded) */

typedef struct st3 {
    double med, min, max;
    int n;                            /* 0: no data */
} st3;
st3 stats(const double *v, int n);
st3 metric(const char *name, ...) __attribute__((format(printf, 1, 2)));
/* Per-round ratio a[r] / b[r] of two metrics, as stats (paired rounds). */
st3 ratio_stats(const char *a, const char *b);
double percentile(double *v, size_t n, double p);  /* sorts v */

/* ---- formatting --------------------------------------------------------- */
/* v scaled by `scale`, 3 significant digits (thousands separators above
** 9999).  Each returns a pointer into a rotating set of static buffers, so
** up to 32 of them may appear in one printf. */
const char *fnum(double v);
const char *fspread(st3 s, double scale);   /* "min–max" */
const char *fmed(st3 s, double scale);      /* median, or "n/a" */
const char *fratio(double r);               /* "1.23×" */

/* ---- files -------------------------------------------------------------- */
extern char bench_root[4096];         /* our temporary directory */
void root_init(const char *parent);   /* mkdtemp; removed at exit */
void path_in_root(char *out, size_t cap, const char *name);
void rm_rf(const char *path);
void mkdir_p1(const char *path);      /* one level; dies on failure */
uint64_t free_bytes(const char *path);
/* Whether any regular file under dir holds these n bytes. */
bool tree_contains(const char *dir, const void *needle, size_t n);
const char *fs_type(const char *path);

#endif
