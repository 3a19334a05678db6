/*
** limits.c -- the machine's limits, measured in the same run as the
** workloads (once per round, at its start):
**   memcpy bandwidth (64 MiB buffers, warm; fastest of 4 copies)
**   write() of 1 MiB chunks to a new file (page cache; not synced)
**   memcpy into a MAP_SHARED file mapping, pages prefaulted first with
**     MADV_POPULATE_WRITE (not timed), and with pages not yet present
**   MD5 of a 16-byte key: MD5_Init/Update/Final (what shardlog's producer
**     calls) and EVP_Digest one-shot (what sl_hash_partition_key calls)
**   XXH3-64 of a 100 B / 1 KiB / 64 KiB record: xxhash.h with XXH_INLINE_ALL,
**     and libxxhash's run-time dispatcher (which shardlog uses above 240 B)
**   clock_gettime(CLOCK_REALTIME), a bare system call (getppid), and a 4 KiB
**     append + fdatasync.
*/
#define OPENSSL_SUPPRESS_DEPRECATED
#include "systems.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/md5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#if defined(__x86_64__) || defined(__i386__)
extern XXH64_hash_t XXH3_64bits_dispatch(const void *input, size_t len);
#define HAVE_XXH_DISPATCH 1
#endif

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static volatile uint64_t sink;        /* keeps results alive */
static bool populate_missing;         /* MADV_POPULATE_WRITE unsupported */

static double memcpy_gbs(void)
{
    static unsigned char *src, *dst;
    const size_t n = 64u << 20;
    if (!src) {
        src = malloc(n);
        dst = malloc(n);
        if (!src || !dst) die("out of memory");
        memset(src, 1, n);
        memset(dst, 2, n);
    }
    double best = 1e9;
    for (int r = 0; r < 4; r++) {
        src[r * 4096] = (unsigned char)r;
        double t0 = now_s();
        memcpy(dst, src, n);
        double t = now_s() - t0;
        sink += dst[r * 4096] ^ dst[n - 1];
        if (t < best) best = t;
    }
    return (double)n / best / 1e9;
}

static double pagecache_write_gbs(size_t total)
{
    char path[4200];
    path_in_root(path, sizeof path, "limits-write");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) die("open %s: %s", path, strerror(errno));
    const size_t chunk = 1u << 20;
    double t0 = now_s();
    for (size_t off = 0; off < total; off += chunk)
        if (write(fd, pool + off % POOL_SPAN, chunk) != (ssize_t)chunk)
            die("write %s: %s", path, strerror(errno));
    double t = now_s() - t0;
    close(fd);
    unlink(path);
    return (double)total / t / 1e9;
}

/* memcpy 1 MiB at a time into a fresh MAP_SHARED mapping of a preallocated
** file; with `populate`, its pages are prefaulted first (not timed). */
static double mmap_write_gbs(size_t total, bool populate)
{
    char path[4200];
    path_in_root(path, sizeof path, "limits-mmap");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) die("open %s: %s", path, strerror(errno));
    if (posix_fallocate(fd, 0, (off_t)total) != 0) die("posix_fallocate %s", path);
    unsigned char *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) die("mmap %s: %s", path, strerror(errno));
    if (populate && madvise(m, total, MADV_POPULATE_WRITE) != 0) {
        populate_missing = true;      /* older kernel: touch every page */
        for (size_t off = 0; off < total; off += 4096) m[off] = 0;
    }
    const size_t chunk = 1u << 20;
    double t0 = now_s();
    for (size_t off = 0; off < total; off += chunk) memcpy(m + off, pool + off % POOL_SPAN, chunk);
    double t = now_s() - t0;
    munmap(m, total);
    close(fd);
    unlink(path);
    return (double)total / t / 1e9;
}

static double md5_lowlevel_ns(size_t n)
{
    char k[KEY_LEN + 1];
    uint64_t rng = 99, acc = 0;
    make_key(k, &rng);
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        unsigned char h[16];
        k[i & 15] = (char)('a' + (i & 7));
        MD5_CTX c;
        MD5_Init(&c);
        MD5_Update(&c, k, KEY_LEN);
        MD5_Final(h, &c);
        acc += h[0];
    }
    double t = now_s() - t0;
    sink += acc;
    return t / (double)n * 1e9;
}

static double md5_evp_ns(size_t n)
{
    char k[KEY_LEN + 1];
    uint64_t rng = 99, acc = 0;
    make_key(k, &rng);
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        unsigned char h[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        k[i & 15] = (char)('a' + (i & 7));
        if (EVP_Digest(k, KEY_LEN, h, &len, EVP_md5(), NULL) != 1) die("EVP_Digest");
        acc += h[0];
    }
    double t = now_s() - t0;
    sink += acc;
    return t / (double)n * 1e9;
}

/* ns per XXH3-64 of `size` bytes, over records spread through the pool. */
static double xxh3_ns(size_t size, bool dispatch, size_t bytes)
{
    size_t n = bytes / size;
    if (n < 1000) n = 1000;
    uint64_t acc = 0;
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = rec_data(i);
#ifdef HAVE_XXH_DISPATCH
        acc += dispatch ? XXH3_64bits_dispatch(p, size) : XXH3_64bits(p, size);
#else
        (void)dispatch;
        acc += XXH3_64bits(p, size);
#endif
    }
    double t = now_s() - t0;
    sink += acc;
    return t / (double)n * 1e9;
}

static double clock_ns(size_t n)
{
    struct timespec ts;
    uint64_t acc = 0;
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        clock_gettime(CLOCK_REALTIME, &ts);
        acc += (uint64_t)ts.tv_nsec;
    }
    double t = now_s() - t0;
    sink += acc;
    return t / (double)n * 1e9;
}

static double syscall_ns(size_t n)
{
    uint64_t acc = 0;
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) acc += (uint64_t)syscall(SYS_getppid);
    double t = now_s() - t0;
    sink += acc;
    return t / (double)n * 1e9;
}

/* µs per 4 KiB write() appended to a file + fdatasync. */
static double fdatasync_us(int n)
{
    char path[4200];
    path_in_root(path, sizeof path, "limits-sync");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
    if (fd < 0) die("open %s: %s", path, strerror(errno));
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        if (write(fd, pool + (size_t)i * 4096, 4096) != 4096) die("write: %s", strerror(errno));
        if (fdatasync(fd) != 0) die("fdatasync: %s", strerror(errno));
    }
    double t = now_s() - t0;
    close(fd);
    unlink(path);
    return t / n * 1e6;
}

void limits_round(int r, bool quick)
{
    size_t big = quick ? (128u << 20) : (512u << 20);
    rec_put(r, memcpy_gbs(), "lim/memcpy");
    rec_put(r, pagecache_write_gbs(big), "lim/write");
    rec_put(r, mmap_write_gbs(big / 2, true), "lim/mmap_pop");
    rec_put(r, mmap_write_gbs(big / 4, false), "lim/mmap_fault");
    rec_put(r, md5_lowlevel_ns(quick ? 300000 : 1000000), "lim/md5");
    rec_put(r, md5_evp_ns(quick ? 100000 : 300000), "lim/md5_evp");
    size_t xb = quick ? (64u << 20) : (256u << 20);
    rec_put(r, xxh3_ns(100, false, xb / 4), "lim/xxh3/100");
    rec_put(r, xxh3_ns(1024, false, xb), "lim/xxh3/1024");
    rec_put(r, xxh3_ns(65536, false, xb), "lim/xxh3/65536");
    rec_put(r, xxh3_ns(1024, true, xb), "lim/xxh3d/1024");
    rec_put(r, xxh3_ns(65536, true, xb), "lim/xxh3d/65536");
    rec_put(r, clock_ns(quick ? 300000 : 1000000), "lim/clock");
    rec_put(r, syscall_ns(quick ? 50000 : 200000), "lim/syscall");
    rec_put(r, fdatasync_us(quick ? 50 : 200), "lim/fdatasync");
}

static void lim_row(const char *what, const char *name, const char *unit, double scale,
                    const char *note)
{
    st3 s = metric("%s", name);
    printf("| %s | %s | %s | %s | %s |\n", what, fmed(s, scale), fspread(s, scale), unit, note);
}

static const char *per_gbs(const char *name, double bytes)
{
    static char buf[4][64];
    static int k;
    char *out = buf[k++ & 3];
    st3 s = metric("%s", name);
    snprintf(out, 64, "%s GB/s", s.n ? fnum(bytes / s.med) : "n/a");
    return out;
}

void limits_print(void)
{
    printf("### Machine limits (measured in this run)\n\n");
    printf("| limit | median | spread (min–max) | unit | note |\n");
    printf("|---|---:|---:|---|---|\n");
    lim_row("memcpy, 64 MiB buffers, warm (fastest of 4 copies)", "lim/memcpy", "GB/s", 1, "");
    lim_row("write() of 1 MiB chunks to a new file (page cache)", "lim/write", "GB/s", 1,
            "not synced");
    lim_row("memcpy into a MAP_SHARED file mapping, pages prefaulted", "lim/mmap_pop", "GB/s",
            1, populate_missing ? "MADV_POPULATE_WRITE unsupported: pages touched instead"
                                : "MADV_POPULATE_WRITE before (not timed)");
    st3 f = metric("lim/mmap_fault");
    char note[128] = "n/a";
    if (f.n) snprintf(note, sizeof note, "≈ %s µs per 4 KiB page (first-touch fault + copy)",
                      fnum(4096 / (f.med * 1e9) * 1e6));
    lim_row("memcpy into a MAP_SHARED file mapping, pages not present", "lim/mmap_fault", "GB/s",
            1, note);
    lim_row("MD5 of a 16-byte key, MD5_Init/Update/Final (shardlog's producer)", "lim/md5", "ns",
            1, "the peers pay the same per record");
    lim_row("MD5 of a 16-byte key, EVP_Digest one-shot (sl_hash_partition_key)", "lim/md5_evp",
            "ns", 1, "");
    lim_row("XXH3-64 of a 100 B record (XXH_INLINE_ALL)", "lim/xxh3/100", "ns", 1,
            per_gbs("lim/xxh3/100", 100));
    lim_row("XXH3-64 of a 1 KiB record (XXH_INLINE_ALL)", "lim/xxh3/1024", "ns", 1,
            per_gbs("lim/xxh3/1024", 1024));
    lim_row("XXH3-64 of a 64 KiB record (XXH_INLINE_ALL)", "lim/xxh3/65536", "ns", 1,
            per_gbs("lim/xxh3/65536", 65536));
#ifdef HAVE_XXH_DISPATCH
    lim_row("XXH3-64 of a 1 KiB record (libxxhash dispatcher, as shardlog > 240 B)",
            "lim/xxh3d/1024", "ns", 1, per_gbs("lim/xxh3d/1024", 1024));
    lim_row("XXH3-64 of a 64 KiB record (libxxhash dispatcher, as shardlog > 240 B)",
            "lim/xxh3d/65536", "ns", 1, per_gbs("lim/xxh3d/65536", 65536));
#endif
    lim_row("clock_gettime(CLOCK_REALTIME)", "lim/clock", "ns", 1, "vDSO");
    lim_row("system call: getppid", "lim/syscall", "ns", 1, "syscall(SYS_getppid)");
    lim_row("4 KiB write() appended + fdatasync", "lim/fdatasync", "µs", 1,
            "the floor of a durable put");
    printf("\n");
}
