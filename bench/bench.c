/*
** bench.c -- shardlog side by side with LMDB, RocksDB and SQLite, and with
** the machine's limits, in one run (issue 3).
**
** Every round (after one discarded warm-up round) runs, in this order:
**   0. the machine's limits (limits.c)
**   1. append, 4 shards, 16-byte random partition keys routed by MD5, no
**      fsync: 100 B, 1 KiB and 64 KiB records; one producer thread, then
**      two; shardlog with one sl_put per record and with
**      sl_producer_put_batch, the peers as described in their files
**   3. right after each single-thread append (shardlog's batched run,
**      RocksDB's batched run, LMDB, SQLite): a scan of everything, in shard
**      order, summing every payload byte (checked against what was written)
**   2. durable 1 KiB appends: the peers sync every 100 records; shardlog in
**      ALWAYS mode with 1, 2, 8 and 32 producer threads, and with NONE mode
**      plus sl_stream_sync every 100 records
**   4. commit -> waiting reader wake-up latency, and a bare condition-
**      variable ping-pong measured the same way
**   5. reopen (read-write sl_stream_open) after a SIGKILLed writer filled the
**      stream with 1 GiB and 8 GiB (quick: 1 and 2 GiB) of 1 KiB records
**   6. maintenance beside appends, and cold segments
**   7. encryption at rest: section 1's single-thread batched appends of
**      100 B, 1 KiB and 64 KiB records, and section 3's scans of the first
**      two, on a stream in clear and on one with encryption KMS, back to
**      back per workload
** Within a round, every system runs the same workload back to back before
** the next workload starts, in an order rotated by one each round, so that
** machine noise and leftover writeback hit all alike.  Each run gets a fresh
** stream or database, deleted right after it.
**
** Output: Markdown tables on stdout (medians, min–max over the rounds,
** ratios shardlog ÷ peer of the medians, and a goals table); progress on
** stderr.
**
** Usage: bench [--quick] [--rounds N] [--dir DIR] [--only GROUPS]
**              [--cmd TEXT]
**   --quick   3 rounds, sizes / 5, durable and latency runs shorter, reopen
**             at 1 and 2 GiB
**   --only    comma-separated subset of limits,append,durable,wakeup,reopen,
**             maint,encrypt
**   --cmd     the command line to print at the top (make passes its own)
*/
#include "systems.h"

#include <shardlog.h>

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <inttypes.h>
#include <unistd.h>

/* ---- configuration ------------------------------------------------------ */

typedef struct size_cfg {
    size_t size, n_full;
    const char *label;
} size_cfg;
static const size_cfg SIZES[] = {
    {100, 2000000, "100 B"}, {1024, 200000, "1 KiB"}, {65536, 10000, "64 KiB"}};
#define NSIZES (sizeof SIZES / sizeof SIZES[0])

enum { SL_PUT, SL_BATCH, LMDB, LMDB_1, RK_PUT, RK_BATCH, SQLITE, NSYS };
typedef struct sysdesc {
    const char *id, *label;
    void (*fn)(const ap_job *, ap_result *);
    int batch;                        /* 0 none, -1 batch_for(size), else it */
    bool scan;
} sysdesc;
static const sysdesc SYS[NSYS] = {
    [SL_PUT] = {"sl_put", "shardlog, sl_put per record", slb_append, 0, false},
    [SL_BATCH] = {"sl_batch", "shardlog, sl_producer_put_batch", slb_append, -1, true},
    [LMDB] = {"lmdb", "LMDB (WRITEMAP, NOSYNC, APPEND), commit per 10,000", lmdb_append, 0, true},
    [LMDB_1] = {"lmdb_1", "LMDB (WRITEMAP, NOSYNC, APPEND), commit per record", lmdb_append, 1,
                false},
    [RK_PUT] = {"rk_put", "RocksDB, rocksdb_put_cf per record", rocks_append, 0, false},
    [RK_BATCH] = {"rk_batch", "RocksDB, rocksdb_write of a writebatch", rocks_append, -1, true},
    [SQLITE] = {"sqlite", "SQLite (WAL, synchronous=OFF), commit per 10,000", sqlite_append, 0,
                true},
};

static const int ALWAYS_THREADS[] = {1, 2, 8, 32};
#define NALWAYS 4

typedef struct opts {
    bool quick;
    int rounds;
    const char *dir, *only, *cmd;
} opts;
static opts O;
static int div_;                      /* size divisor: 1 or 5 */
static uint64_t reopen_bytes[2];
static size_t n_samples;
static double durable_s;      /* seconds per durable run */
static uint64_t gap_ns = 100000;      /* the writer's pause before each put */

static bool want(const char *group)
{
    if (!O.only) return true;
    size_t n = strlen(group);
    for (const char *p = O.only; (p = strstr(p, group)); p += n)
        if ((p == O.only || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return true;
    return false;
}

static size_t n_of(size_t i)
{
    return SIZES[i].n_full / (size_t)div_;
}

/* ---- running ------------------------------------------------------------ */

static keyset ks1, ks2;               /* 1 thread; 2 threads on own shards */
static uint64_t want_sum[NSIZES];

static void fresh_dir(char *out, size_t cap, const char *name)
{
    path_in_root(out, cap, name);
    rm_rf(out);
    mkdir_p1(out);
}

static void run_append(int r, size_t si, int threads)
{
    size_t n = n_of(si), size = SIZES[si].size;
    for (int k = 0; k < NSYS; k++) {
        int sys = (k + (r < 0 ? 0 : r)) % NSYS;
        const sysdesc *d = &SYS[sys];
        char dir[4200];
        fresh_dir(dir, sizeof dir, "run");
        ap_job job = {dir, threads == 1 ? &ks1 : &ks2, n, size, threads,
                      d->batch < 0 ? (int)batch_for(size) : d->batch, threads == 1 && d->scan};
        ap_result res;
        d->fn(&job, &res);
        rm_rf(dir);
        rec_put(r, (double)n / res.append_s, "ap/%zu/%d/%s", size, threads, d->id);
        if (job.scan) {
            if (res.scan_records != n || res.scan_sum != want_sum[si])
                die("%s: the scan of %zu x %zu B read %llu records (sum %llu), expected "
                    "%zu (sum %llu)", d->id, n, size, (unsigned long long)res.scan_records,
                    (unsigned long long)res.scan_sum, n, (unsigned long long)want_sum[si]);
            rec_put(r, (double)n / res.scan_s, "scan/%zu/%s", size, d->id);
        }
    }
}

static void run_durable(int r)
{
    enum { NDUR = 5 + NALWAYS };
    for (int k = 0; k < NDUR; k++) {
        int which = (k + (r < 0 ? 0 : r)) % NDUR;
        char dir[4200];
        fresh_dir(dir, sizeof dir, "run");
        switch (which) {
        case 0: rec_put(r, lmdb_durable(dir, &ks1, durable_s), "dur/lmdb"); break;
        case 1: rec_put(r, rocks_durable(dir, &ks1, durable_s), "dur/rocks"); break;
        case 2: rec_put(r, sqlite_durable(dir, &ks1, durable_s), "dur/sqlite"); break;
        case 3: rec_put(r, slb_durable_sync(dir, &ks1, durable_s), "dur/sl_sync"); break;
        case 4: rec_put(r, slb_durable_batch(dir, &ks1, durable_s), "dur/always_batch"); break;
        default: {
            int t = ALWAYS_THREADS[which - 5];
            rec_put(r, slb_durable_always(dir, &ks1, t, durable_s), "dur/always/%d", t);
        }
        }
        rm_rf(dir);
    }
}

static void run_wakeup(int r)
{
    for (int k = 0; k < 3; k++) {
        double med, p99;
        int which = (k + (r < 0 ? 0 : r)) % 3;
        if (which == 0) {
            char dir[4200];
            fresh_dir(dir, sizeof dir, "run");
            slb_wakeup(dir, (int)n_samples, gap_ns, &med, &p99);
            rm_rf(dir);
            rec_put(r, med, "wake/sl/med");
            rec_put(r, p99, "wake/sl/p99");
        } else if (which == 1) {
            char dir[4200];
            fresh_dir(dir, sizeof dir, "run");
            slb_wakeup_sub(dir, (int)n_samples, gap_ns, &med, &p99);
            rm_rf(dir);
            rec_put(r, med, "wake/sub/med");
            rec_put(r, p99, "wake/sub/p99");
        } else {
            condvar_pingpong((int)n_samples, gap_ns, &med, &p99);
            rec_put(r, med, "wake/cv/med");
            rec_put(r, p99, "wake/cv/p99");
        }
    }
}

/* Maintenance: appends with and without the maintenance thread, in turn;
** cold segments: scan rate hot and cold, compression ratio. */
static sl_maint_stats maint_last;
static void run_maint(int r)
{
    size_t n = O.quick ? 40000 : 200000;
    for (int k = 0; k < 2; k++) {
        bool with = (k + (r < 0 ? 0 : r)) % 2 == 1;
        char dir[4200];
        fresh_dir(dir, sizeof dir, "run");
        sl_maint_stats st = {0};
        double rate = slb_maint_append(dir, n, with, &st);
        rm_rf(dir);
        rec_put(r, rate, with ? "maint/with" : "maint/without");
        if (with && r >= 0) maint_last = st;
    }
    char dir[4200];
    fresh_dir(dir, sizeof dir, "run");
    double hot, cold, ratio;
    slb_cold(dir, O.quick ? 40000 : 200000, &hot, &cold, &ratio);
    rm_rf(dir);
    rec_put(r, hot, "cold/hot_scan");
    rec_put(r, cold, "cold/cold_scan");
    rec_put(r, ratio, "cold/ratio");
}

static void print_maint(void)
{
    printf("### 6. Maintenance beside appends, and cold segments\n\n");
    printf("Appends: %s telemetry-like JSON events (300-600 B, 1,000 session keys as partition "
           "keys) into 4 shards of 4 MiB segments, PutRecords of 500, durability NONE, on a "
           "virtual clock that covers 36 hours over the run, so that during it segments seal, "
           "expire after 24 h and are deleted, are key-compacted, and turn cold after an hour "
           "(zstd level 3).  With: a maintenance thread runs every 10 ms (real time) during "
           "the appends; without: no maintenance.  Cold: the same events into one shard of "
           "16 MiB segments, scanned (sl_iter_read, checksums verified, every payload byte "
           "summed) hot, then every sealed segment made cold and scanned again; the ratio is "
           "the segment files' bytes before and after.\n\n",
           fnum(O.quick ? 40000 : 200000));
    st3 w = metric("maint/with"), wo = metric("maint/without");
    printf("| measure | median | spread |\n|---|---:|---:|\n");
    printf("| appends without maintenance (records/s) | %s | %s |\n", fmed(wo, 1), fspread(wo, 1));
    printf("| appends with the maintenance thread (records/s) | %s | %s |\n", fmed(w, 1),
           fspread(w, 1));
    st3 rr = ratio_stats("maint/with", "maint/without");
    printf("| ratio with ÷ without | %s | %s |\n", fratio(rr.med), fspread(rr, 1));
    st3 h = metric("cold/hot_scan"), c = metric("cold/cold_scan"), z = metric("cold/ratio");
    printf("| scan of hot segments (records/s) | %s | %s |\n", fmed(h, 1), fspread(h, 1));
    printf("| scan of cold segments (records/s) | %s | %s |\n", fmed(c, 1), fspread(c, 1));
    st3 cr = ratio_stats("cold/cold_scan", "cold/hot_scan");
    printf("| ratio cold ÷ hot scan | %s | %s |\n", fratio(cr.med), fspread(cr, 1));
    printf("| compression ratio (hot bytes ÷ cold bytes) | %s | %s |\n\n", fmed(z, 1),
           fspread(z, 1));
    printf("After the last round with maintenance, one more pass (the thread stopped) still "
           "deleted %" PRIu64 " segments, compacted %" PRIu64 " (removing %" PRIu64 " older "
           "records of a key) and made %" PRIu64 " cold, and found %" PRIu64 " damaged: what "
           "the thread had not caught up with.\n\n",
           maint_last.segments_deleted, maint_last.segments_compacted,
           maint_last.records_compacted, maint_last.segments_cold, maint_last.damaged_skipped);
}

static bool reopen_skipped[2];

static void run_reopen(int r)
{
    for (int i = 0; i < 2; i++) {
        if (r < 0 && i > 0) break;    /* warm-up: the small one only */
        uint64_t b = reopen_bytes[i];
        uint64_t need = b + b / 10 + (1ull << 30), have = free_bytes(bench_root);
        if (have < need) {
            if (!reopen_skipped[i])
                fprintf(stderr, "bench: SKIPPING reopen at %.0f GiB: %.1f GiB free under %s, "
                        "%.1f GiB needed\n", (double)b / (1 << 30), (double)have / (1 << 30),
                        bench_root, (double)need / (1 << 30));
            reopen_skipped[i] = true;
            continue;
        }
        char dir[4200];
        fresh_dir(dir, sizeof dir, "run");
        double crash_ms, clean_ms;
        double rate = slb_reopen(dir, b, &crash_ms, &clean_ms);
        rm_rf(dir);
        rec_put(r, crash_ms, "reopen/%d/crash", i);
        rec_put(r, clean_ms, "reopen/%d/clean", i);
        rec_put(r, rate / 1e9, "reopen/%d/fill", i);
    }
}

/* Encryption at rest (section 7): section 1's single-thread put_batch
** appends of every size (and section 3's scans of 100 B and 1 KiB) on a
** stream in clear and on one with encryption KMS, back to back per
** workload, the first of the two alternating by round. */
#define ENC_SCAN_MAX 1024u            /* sizes scanned back */
static sl_key_provider *enc_keys;     /* a key file's, made once per run */

static void enc_init(void)
{
    char path[4200];
    path_in_root(path, sizeof path, "bench.key");
    int rc = sl_keyfile_create(path);
    if (rc < 0) die("sl_keyfile_create %s: %s", path, sl_strerror(rc));
    if ((rc = sl_keyfile_provider_open(&enc_keys, path)) < 0)
        die("sl_keyfile_provider_open %s: %s", path, sl_strerror(rc));
}

/* Whether the first 32 bytes of any of records 0..7's payloads are in a file
** under dir (they are in clear in a stream without encryption). */
static bool plaintext_in(const char *dir, size_t size)
{
    for (size_t i = 0; i < 8; i++)
        if (tree_contains(dir, rec_data(i), size < 32 ? size : 32)) return true;
    return false;
}

static void run_encrypt(int r)
{
    for (size_t si = 0; si < NSIZES; si++) {
        size_t n = n_of(si), size = SIZES[si].size;
        for (int k = 0; k < 2; k++) {
            bool kms = (k + (r < 0 ? 0 : r)) % 2 == 1;
            const char *v = kms ? "kms" : "clear";
            char dir[4200];
            fresh_dir(dir, sizeof dir, "run");
            ap_job job = {dir, &ks1, n, size, 1, (int)batch_for(size), size <= ENC_SCAN_MAX};
            ap_result res;
            slb_append_keyed(&job, kms ? enc_keys : NULL, &res);
            /* once, untimed: is the encrypted stream's data really not in clear? */
            if (r < 0 && size == 1024 && plaintext_in(dir, size) != !kms)
                die("encryption: payload bytes %s in the %s stream's files", kms ? "found" :
                    "not found (the check is broken)", v);
            rm_rf(dir);
            rec_put(r, (double)n / res.append_s, "enc/ap/%zu/%s", size, v);
            if (!job.scan) continue;
            if (res.scan_records != n || res.scan_sum != want_sum[si])
                die("encryption (%s): the scan of %zu x %zu B read %llu records (sum %llu), "
                    "expected %zu (sum %llu)", v, n, size, (unsigned long long)res.scan_records,
                    (unsigned long long)res.scan_sum, n, (unsigned long long)want_sum[si]);
            rec_put(r, (double)n / res.scan_s, "enc/scan/%zu/%s", size, v);
        }
    }
}

/* ---- report ------------------------------------------------------------- */

static void header(int argc, char **argv)
{
    char when[64], line[1024] = "", commit[300] = "unknown", buf[256];
    time_t t = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %Z", localtime(&t));
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--cmd") && i + 1 < argc) {
            i++;                      /* printed separately */
            continue;
        }
        snprintf(line + strlen(line), sizeof line - strlen(line), "%s%s", i ? " " : "", argv[i]);
    }
    FILE *f = popen("git rev-parse --short HEAD 2>/dev/null", "r");
    if (f) {
        if (fgets(buf, sizeof buf, f)) {
            buf[strcspn(buf, "\n")] = '\0';
            snprintf(commit, sizeof commit, "%s", buf);
        }
        pclose(f);
    }
    bool dirty = false;
    f = popen("git status --porcelain 2>/dev/null", "r");
    if (f) {
        dirty = fgets(buf, sizeof buf, f) != NULL;
        pclose(f);
    }
    struct utsname u;
    uname(&u);
    char cpu[128] = "unknown CPU";
    f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(buf, sizeof buf, f)) {
        char *colon = strchr(buf, ':');
        if (!strncmp(buf, "model name", 10) && colon) {
            snprintf(cpu, sizeof cpu, "%s", colon + 2);
            cpu[strcspn(cpu, "\n")] = '\0';
            break;
        }
    }
    if (f) fclose(f);
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);

    printf("## shardlog %s benchmark: side by side with LMDB, RocksDB and SQLite\n\n",
           sl_version());
    if (O.cmd) printf("- command: `%s` (runs `%s`)\n", O.cmd, line);
    else printf("- command: `%s`\n", line);
    printf("- date: %s\n", when);
    printf("- git commit: %s%s\n", commit, dirty ? " (with uncommitted changes in the tree)" : "");
    printf("- kernel: %s %s %s\n", u.sysname, u.release, u.machine);
    printf("- CPU: %ld x %s; memory %.1f GiB\n", sysconf(_SC_NPROCESSORS_ONLN), cpu,
           (double)pages * (double)psz / (1 << 30));
    printf("- filesystem: %s (%s), %.0f GiB free at the start\n", bench_root, fs_type(bench_root),
           (double)free_bytes(bench_root) / (1 << 30));
    printf("- peers: LMDB %s, RocksDB %s, SQLite %s (Debian packages)\n", lmdb_version_str(), rocks_version_str(),
           sqlite_version_str());
    printf("- %d rounds after one discarded warm-up round%s; medians and min–max over the "
           "rounds; ratios are shardlog ÷ peer of the medians (higher is better for shardlog, "
           "except latencies and times); MB = 10^6 bytes of payload (keys and framing not "
           "counted); M = 10^6 records\n\n",
           O.rounds, O.quick ? " (--quick: record counts / 5, shorter durable and latency runs)"
                             : "");
}

static const char *rate(st3 s)
{
    static char b[8][48];
    static int k;
    char *out = b[k++ & 7];
    if (!s.n) return "n/a";
    if (s.med >= 1e6) snprintf(out, 48, "%.2f M", s.med / 1e6);
    else if (s.med >= 1e3) snprintf(out, 48, "%.1f k", s.med / 1e3);
    else snprintf(out, 48, "%.0f", s.med);
    return out;
}

static const char *rspread(st3 s)
{
    static char b[8][64];
    static int k;
    char *out = b[k++ & 7];
    if (!s.n) return "n/a";
    double d = s.max >= 1e6 ? 1e6 : s.max >= 1e3 ? 1e3 : 1;
    const char *u = d == 1e6 ? " M" : d == 1e3 ? " k" : "";
    int dig = d == 1e6 ? 2 : d == 1e3 ? 1 : 0;
    snprintf(out, 64, "%.*f–%.*f%s", dig, s.min / d, dig, s.max / d, u);
    return out;
}

static const char *bw(st3 s, size_t size)      /* MB/s or GB/s of payload */
{
    static char b[8][48];
    static int k;
    char *out = b[k++ & 7];
    if (!s.n) return "n/a";
    double mbs = s.med * (double)size / 1e6;
    if (mbs >= 1000) snprintf(out, 48, "%.2f GB/s", mbs / 1e3);
    else snprintf(out, 48, "%.0f MB/s", mbs);
    return out;
}

static double ratio(st3 a, st3 b)
{
    return a.n && b.n && b.med > 0 ? a.med / b.med : 0;
}

static void print_append(int threads)
{
    printf("### 1. Append, %d producer thread%s (4 shards, 16-byte random partition keys routed "
           "by MD5, no fsync)\n\n", threads, threads == 1 ? "" : "s");
    if (threads == 1)
        printf("Every system routes each record by MD5 of its 16-byte partition key (libcrypto "
               "MD5_Init/Update/Final, as shardlog's producer) to one of 4 shards and stores the "
               "key with the payload.  shardlog: durability NONE, one producer.  LMDB: one "
               "environment, one named database per shard, big-endian sequence keys with "
               "MDB_APPEND | MDB_RESERVE, value = key + payload.  RocksDB: one database, one "
               "column family per shard, WAL on without sync, no compression, 64 MiB write "
               "buffers.  SQLite: one file, one table per shard (seq INTEGER PRIMARY KEY, pk, "
               "data), prepared INSERTs.  Batches: shardlog's PutRecords limits (500 records, "
               "10 MiB), RocksDB the same.\n\n");
    if (threads == 2)
        printf("shardlog: one stream, one producer per thread; thread t's partition keys were "
               "chosen (before timing) to route by MD5 to shards 2t and 2t+1, and each put still "
               "computes the MD5.  LMDB: two environments, one per thread (one write "
               "transaction per environment at a time), each with its two shards' databases.  "
               "RocksDB: one database written by both threads, each to its own two column "
               "families.  SQLite: two database files, one per thread.  The n records are split "
               "evenly between the threads; rates are n ÷ wall time.\n\n");
    printf("| records | system | records/s | spread | payload | sl_put ÷ this | put_batch ÷ "
           "this |%s\n", threads == 2 ? " this ÷ its 1-thread |" : "");
    printf("|---|---|---:|---:|---:|---:|---:|%s\n", threads == 2 ? "---:|" : "");
    for (size_t si = 0; si < NSIZES; si++) {
        size_t size = SIZES[si].size;
        st3 slp = metric("ap/%zu/%d/sl_put", size, threads);
        st3 slb = metric("ap/%zu/%d/sl_batch", size, threads);
        for (int k = 0; k < NSYS; k++) {
            st3 s = metric("ap/%zu/%d/%s", size, threads, SYS[k].id);
            if (!s.n) continue;
            char batch[48] = "";
            if (SYS[k].batch < 0) snprintf(batch, sizeof batch, " of %zu", batch_for(size));
            printf("| %s × %s | %s%s | %s | %s | %s | %s | %s |", fnum((double)n_of(si)),
                   SIZES[si].label, SYS[k].label, batch, rate(s), rspread(s), bw(s, size),
                   k == SL_PUT ? "—" : fratio(ratio(slp, s)),
                   k == SL_BATCH ? "—" : fratio(ratio(slb, s)));
            if (threads == 2)
                printf(" %s |", fratio(ratio(s, metric("ap/%zu/1/%s", size, SYS[k].id))));
            printf("\n");
        }
    }
    printf("\n");
}

static void print_scan(void)
{
    printf("### 3. Scan everything back in shard order, summing every payload byte\n\n");
    printf("Each scan reads what the single-thread append just wrote (shardlog's and RocksDB's "
           "batched runs), one shard after another.  shardlog verifies each record's XXH3-64 "
           "(sl_iter_read, 10,000 records per call); LMDB: a cursor per database in one read "
           "transaction (LMDB keeps no checksums); RocksDB: memtables flushed first (not timed), "
           "an iterator per column family with verify_checksums on (block checksums); SQLite: "
           "`SELECT data FROM sN ORDER BY seq` (no checksums).  The byte sum is checked against "
           "what was written.\n\n");
    printf("| records | system | records/s | spread | payload | shardlog ÷ this |\n");
    printf("|---|---|---:|---:|---:|---:|\n");
    static const int who[] = {SL_BATCH, LMDB, RK_BATCH, SQLITE};
    static const char *name[] = {"shardlog, sl_iter_read", "LMDB, cursor", "RocksDB, iterator",
                                 "SQLite, SELECT"};
    for (size_t si = 0; si < NSIZES; si++) {
        size_t size = SIZES[si].size;
        st3 sl = metric("scan/%zu/sl_batch", size);
        for (int k = 0; k < 4; k++) {
            st3 s = metric("scan/%zu/%s", size, SYS[who[k]].id);
            if (!s.n) continue;
            printf("| %s × %s | %s | %s | %s | %s | %s |\n", fnum((double)n_of(si)),
                   SIZES[si].label, name[k], rate(s), rspread(s), bw(s, size),
                   k == 0 ? "—" : fratio(ratio(sl, s)));
        }
    }
    printf("\n");
}

/* The best peer's durable series name (by median). */
static const char *best_durable_peer(st3 *out)
{
    static const char *names[] = {"dur/lmdb", "dur/rocks", "dur/sqlite"};
    const char *best = NULL;
    st3 b = {0, 0, 0, 0};
    for (int i = 0; i < 3; i++) {
        st3 s = metric("%s", names[i]);
        if (s.n && (!best || s.med > b.med)) best = names[i], b = s;
    }
    *out = b;
    return best;
}

static int best_always(st3 *out)
{
    int best = 0;
    st3 b = {0, 0, 0, 0};
    for (int i = 0; i < NALWAYS; i++) {
        st3 s = metric("dur/always/%d", ALWAYS_THREADS[i]);
        if (s.n && (!b.n || s.med > b.med)) best = ALWAYS_THREADS[i], b = s;
    }
    *out = b;
    return best;
}

static void print_durable(void)
{
    printf("### 2. Durable appends of 1 KiB records (4 shards, MD5 routing)\n\n");
    printf("Every run appends for %.1f s (peers: checked at sync points), rate = records ÷ "
           "wall time.  Peers: one thread, a sync every %u records: LMDB in its default "
           "(pwrite) mode, one write transaction per %u records, each commit fdatasyncs data "
           "and meta page (MDB_WRITEMAP and MDB_NOSYNC + mdb_env_sync were slower here); "
           "RocksDB single puts, sync=1 on every %uth (one WAL fsync covers the earlier ones); "
           "SQLite WAL with synchronous=FULL, one transaction per %u rows (the COMMIT fsyncs "
           "the WAL).  shardlog ALWAYS: every put returns after its record is on stable storage "
           "(group commit through the stream's commit journal: one write and one fdatasync "
           "per round, whatever the shards), T producer threads with random keys.  shardlog ALWAYS, "
           "PutRecords of %u: the peers' contract (each call returns once its %u records are "
           "on stable storage).  shardlog NONE + "
           "sl_stream_sync every %u puts: the same contract through an explicit sync.\n\n",
           durable_s, DURABLE_EVERY, DURABLE_EVERY, DURABLE_EVERY, DURABLE_EVERY, DURABLE_EVERY,
           DURABLE_EVERY, DURABLE_EVERY);
    st3 bp;
    const char *bpn = best_durable_peer(&bp);
    st3 a1 = metric("dur/always/1");
    printf("| system | records/s | spread | ÷ best peer | ÷ shardlog ALWAYS, 1 thread |\n");
    printf("|---|---:|---:|---:|---:|\n");
    struct { const char *name, *label; } rows[] = {
        {"dur/lmdb", "LMDB, commit (synced) per 100"},
        {"dur/rocks", "RocksDB, sync=1 every 100th put"},
        {"dur/sqlite", "SQLite WAL synchronous=FULL, commit per 100"},
        {"dur/always_batch", "shardlog ALWAYS, PutRecords of 100, 1 thread"},
        {"dur/sl_sync", "shardlog NONE, sl_put + sl_stream_sync every 100"},
        {"dur/always/1", "shardlog ALWAYS, 1 producer thread"},
        {"dur/always/2", "shardlog ALWAYS, 2 producer threads"},
        {"dur/always/8", "shardlog ALWAYS, 8 producer threads"},
        {"dur/always/32", "shardlog ALWAYS, 32 producer threads"}};
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        st3 s = metric("%s", rows[i].name);
        if (!s.n) continue;
        bool peer = i < 3;
        printf("| %s%s | %s | %s | %s | %s |\n", rows[i].label,
               bpn && !strcmp(bpn, rows[i].name) ? " (best peer)" : "", rate(s), rspread(s),
               fratio(ratio(s, bp)), peer ? "" : fratio(ratio(s, a1)));
    }
    printf("\n");
}

static void print_wakeup(void)
{
    printf("### 4. Commit → waiting reader wake-up latency (one-way, µs)\n\n");
    printf("Writer and reader are pinned to different CPUs (otherwise the scheduler now and "
           "then puts both on one CPU, where a wake-up is a 1.5 µs context switch, and rounds "
           "turn bimodal).  "
           "shardlog: a reader thread blocked in sl_iter_wait on shard 0; the writer thread "
           "pauses %.0f µs (spinning, so the reader is asleep), reads CLOCK_MONOTONIC and puts "
           "one 1-byte record (explicit hash key, no MD5); the reader reads the clock as soon "
           "as sl_iter_wait returns, consumes the record and answers with a put to shard 1, on "
           "which the writer waits: one record in flight.  The subscription row is the same with the reader replaced by a dedicated consumer's subscription to shard 0, delivered by the read scheduler's thread (sl_sched_start) to a handler that timestamps and answers.  Ping-pong: the same with a mutex and "
           "two condition variables (set the turn under the mutex, unlock, signal), "
           "timestamps just before taking the lock and right after pthread_cond_wait returns.  %s samples per round after %d warm-up "
           "samples; per round the median and the 99th percentile, then the median (and "
           "spread) of those over the rounds.\n\n",
           (double)gap_ns / 1e3, fnum((double)n_samples), 200);
    st3 sm = metric("wake/sl/med"), sp = metric("wake/sl/p99");
    st3 cm = metric("wake/cv/med"), cp = metric("wake/cv/p99");
    printf("| mechanism | median | spread | p99 | spread |\n|---|---:|---:|---:|---:|\n");
    printf("| shardlog: sl_producer_put → sl_iter_wait | %s | %s | %s | %s |\n", fmed(sm, 1),
           fspread(sm, 1), fmed(sp, 1), fspread(sp, 1));
    st3 bm = metric("wake/sub/med"), bp = metric("wake/sub/p99");
    printf("| shardlog: sl_producer_put → subscription handler (scheduler thread) | %s | %s | "
           "%s | %s |\n", fmed(bm, 1), fspread(bm, 1), fmed(bp, 1), fspread(bp, 1));
    printf("| bare condition-variable ping-pong | %s | %s | %s | %s |\n", fmed(cm, 1),
           fspread(cm, 1), fmed(cp, 1), fspread(cp, 1));
    printf("| ratio sl_iter_wait ÷ ping-pong | %s | | %s | |\n", fratio(ratio(sm, cm)),
           fratio(ratio(sp, cp)));
    printf("| ratio subscription ÷ ping-pong | %s | | %s | |\n\n", fratio(ratio(bm, cm)),
           fratio(ratio(bp, cp)));
}

static void print_reopen(void)
{
    printf("### 5. Reopen (read-write sl_stream_open) after SIGKILL\n\n");
    printf("A forked child creates a 4-shard stream (durability NONE), writes 1 KiB records "
           "with random keys in batches of 500 until the size below, and raises SIGKILL "
           "without closing; the parent times sl_stream_open, checks that every record the "
           "child committed is there, closes, and times a second open after the clean close.  "
           "The stream is deleted right after.%s\n\n",
           O.quick ? "  (--quick: 1 GiB and 2 GiB; the full run uses 1 GiB and 8 GiB.)" : "");
    printf("| written | open after SIGKILL (ms) | spread | open after clean close (ms) | spread "
           "| child's fill rate |\n|---|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < 2; i++) {
        st3 c = metric("reopen/%d/crash", i), k = metric("reopen/%d/clean", i);
        st3 f = metric("reopen/%d/fill", i);
        if (!c.n) {
            printf("| %.0f GiB | skipped: not enough free disk space | | | | |\n",
                   (double)reopen_bytes[i] / (1 << 30));
            continue;
        }
        printf("| %.0f GiB | %s | %s | %s | %s | %s GB/s |\n", (double)reopen_bytes[i] / (1 << 30),
               fmed(c, 1), fspread(c, 1), fmed(k, 1), fspread(k, 1), fmed(f, 1));
    }
    st3 a = metric("reopen/0/crash"), b = metric("reopen/1/crash");
    if (a.n && b.n)
        printf("| ratio %.0f GiB ÷ 1 GiB | %s | | | | |\n", (double)reopen_bytes[1] / (1 << 30),
               fratio(ratio(b, a)));
    printf("\n");
}

/* ---- goals -------------------------------------------------------------- */

static const char *val_spread(st3 s, double scale, const char *unit)
{
    static char b[16][96];
    static int k;
    char *out = b[k++ & 15];
    if (!s.n) return "n/a";
    snprintf(out, 96, "%s %s (%s)", fnum(s.med * scale), unit, fspread(s, scale));
    return out;
}

static const char *ratio_spread(const char *a, const char *b)
{
    static char buf[16][64];
    static int k;
    char *out = buf[k++ & 15];
    st3 ra = metric("%s", a), rb = metric("%s", b), per = ratio_stats(a, b);
    if (!ra.n || !rb.n) return "n/a";
    snprintf(out, 64, "%s (per round %s–%s)", fratio(ra.med / rb.med), fnum(per.min),
             fnum(per.max));
    return out;
}

static bool goal_ge(const char *a, const char *b, double g)
{
    st3 ra = metric("%s", a), rb = metric("%s", b);
    return ra.n && rb.n && ra.med / rb.med >= g;
}

static const char *yn(bool measured, bool ok)
{
    return !measured ? "not measured" : ok ? "yes" : "**no**";
}

/* The better of two series by median (the shardlog variant a goal uses). */
static const char *better(const char *a, const char *b)
{
    st3 sa = metric("%s", a), sb = metric("%s", b);
    return sb.n && (!sa.n || sb.med > sa.med) ? b : a;
}

/* A goals row for a workload this run did not measure (--only). */
static bool unmeasured(const char *probe, const char *workload, const char *goal)
{
    if (metric("%s", probe).n) return false;
    printf("| %s | not measured in this run | | | %s | not measured |\n", workload, goal);
    return true;
}

/* The CPU flags OpenSSL's AES-GCM code can use, from /proc/cpuinfo. */
static const char *aes_flags(void)
{
    static char out[128];
    static const char *const want_f[] = {"aes", "pclmulqdq", "avx", "avx2", "vaes",
                                         "vpclmulqdq", "avx512f"};
    char buf[8192];
    bool have[sizeof want_f / sizeof want_f[0]] = {false};
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(buf, sizeof buf, f)) {
        if (strncmp(buf, "flags", 5)) continue;
        for (char *t = strtok(strchr(buf, ':') ? strchr(buf, ':') + 1 : buf, " \n"); t;
             t = strtok(NULL, " \n"))
            for (size_t i = 0; i < sizeof want_f / sizeof want_f[0]; i++)
                if (!strcmp(t, want_f[i])) have[i] = true;
        break;
    }
    if (f) fclose(f);
    out[0] = '\0';
    for (size_t i = 0; i < sizeof want_f / sizeof want_f[0]; i++)
        if (have[i])
            snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s", out[0] ? ", " : "",
                     want_f[i]);
    return out[0] ? out : "none of aes, pclmulqdq, avx, avx2, vaes, vpclmulqdq, avx512f";
}

static void print_encrypt(void)
{
    printf("### 7. Encryption at rest: appends and scans, in clear and encrypted\n\n");
    printf("The single-thread batched appends of section 1 (4 shards, 16-byte random partition "
           "keys routed by MD5, durability NONE, sl_producer_put_batch of up to 500 records "
           "and 10 MiB, the same payloads) and the scans of section 3 (right after the append, "
           "every shard in order through sl_iter_read, 10,000 records a call, every payload "
           "byte summed and checked), on a stream in clear (encryption NONE) and on the same "
           "stream created with encryption KMS (key id \"%s\", a key-file provider: "
           "sl_keyfile_create once per run, sl_keyfile_provider_open).  Creating the stream "
           "(making and wrapping its data key) is not timed.  Per round, each workload runs in "
           "clear and encrypted back to back, the first of the two alternating by round; the "
           "ratio is of the medians, the per-round range is of the ratio within each round.  "
           "The warm-up round checks that payload bytes are in the files of the stream in "
           "clear and in none of the encrypted one's.  The section took %s s a round "
           "(median; %s).\n\n", ENC_KEY_ID, fmed(metric("enc/section_s"), 1),
           fspread(metric("enc/section_s"), 1));
    printf("| workload | clear | encrypted | ratio encrypted ÷ clear |\n|---|---:|---:|---:|\n");
    for (int scan = 0; scan < 2; scan++)
        for (size_t si = 0; si < NSIZES; si++) {
            size_t size = SIZES[si].size;
            if (scan && size > ENC_SCAN_MAX) continue;
            char a[64], b[64];
            snprintf(a, sizeof a, "enc/%s/%zu/kms", scan ? "scan" : "ap", size);
            snprintf(b, sizeof b, "enc/%s/%zu/clear", scan ? "scan" : "ap", size);
            st3 k = metric("%s", a), c = metric("%s", b);
            bool gb = size >= 65536;  /* big records: payload GB/s */
            double scale = gb ? (double)size * 1e-9 : 1e-6;
            const char *unit = gb ? "GB/s" : "M rec/s";
            printf("| %s %s × %s | %s | %s | %s |\n", scan ? "scan" : "append",
                   fnum((double)n_of(si)), SIZES[si].label, val_spread(c, scale, unit),
                   val_spread(k, scale, unit), ratio_spread(a, b));
        }
    printf("\nMeasured: AES-256-GCM per record (the partition key and data encrypted, the "
           "record's clear fields authenticated, a 16-byte tag) through OpenSSL's EVP "
           "interface (%s, which picks its AES-GCM code for the CPU at run time: AES-NI, and "
           "VAES/VPCLMULQDQ where it has such code; this CPU: %s%s), on the producer's thread "
           "when appending; when scanning, each record is authenticated and decrypted into the "
           "iterator's buffer, where a scan in clear gets zero-copy views.\n\n",
           OpenSSL_version(OPENSSL_VERSION), aes_flags(),
           getenv("OPENSSL_ia32cap") ? "; OPENSSL_ia32cap is set and may mask some" : "");
}

static void print_goals(void)
{
    char sl[64], lm[64], rk[64], sq[64], sl2[64], tmp[64];
    printf("### Goals (issue 3), from this run's medians\n\n");
    printf("shardlog's append rows use its better variant of this run (named in the row); "
           "RocksDB's, its better of single puts and batches.  Ratios are of the medians; the "
           "per-round range is of the ratio within each round (the systems ran back to back).  "
           "“Close to linearly” is taken as: ALWAYS throughput with T threads ≥ 0.75 × T × "
           "its 1-thread figure, for T = 2, 8, 32.\n\n");
    printf("| workload | shardlog | peer(s) | ratio | goal | met? |\n|---|---|---|---|---|---|\n");

    /* append 100 B, 1 thread */
    snprintf(sl, sizeof sl, "%s", better("ap/100/1/sl_put", "ap/100/1/sl_batch"));
    const char *slv = strstr(sl, "sl_batch") ? "put_batch" : "sl_put";
    snprintf(lm, sizeof lm, "ap/100/1/lmdb");
    snprintf(rk, sizeof rk, "%s", better("ap/100/1/rk_put", "ap/100/1/rk_batch"));
    snprintf(sq, sizeof sq, "ap/100/1/sqlite");
    if (!unmeasured("ap/100/1/sl_put", "append 100 B, 1 thread",
                    "≥ 1.5× LMDB, ≥ 6× RocksDB and SQLite")) {
        st3 s = metric("%s", sl);
        bool m = s.n && metric("%s", lm).n && metric("%s", rk).n && metric("%s", sq).n;
        bool ok = goal_ge(sl, lm, 1.5) && goal_ge(sl, rk, 6) && goal_ge(sl, sq, 6);
        printf("| append 100 B, 1 thread | %s rec/s [%s] | LMDB %s; RocksDB %s [%s]; SQLite %s | "
               "LMDB %s; RocksDB %s; SQLite %s | ≥ 1.5× LMDB, ≥ 6× RocksDB and SQLite | %s |\n",
               val_spread(s, 1e-6, "M"), slv, val_spread(metric("%s", lm), 1e-6, "M"),
               val_spread(metric("%s", rk), 1e-6, "M"), strstr(rk, "batch") ? "batches" : "puts",
               val_spread(metric("%s", sq), 1e-6, "M"), ratio_spread(sl, lm),
               ratio_spread(sl, rk), ratio_spread(sl, sq), yn(m, ok));
    }
    /* append 1 KiB, 1 thread */
    snprintf(tmp, sizeof tmp, "%s", better("ap/1024/1/sl_put", "ap/1024/1/sl_batch"));
    if (!unmeasured("ap/1024/1/sl_put", "append 1 KiB, 1 thread", "≥ 2× LMDB")) {
        st3 s = metric("%s", tmp), l = metric("ap/1024/1/lmdb");
        printf("| append 1 KiB, 1 thread | %s rec/s [%s] | LMDB %s | %s | ≥ 2× LMDB | %s |\n",
               val_spread(s, 1e-6, "M"), strstr(tmp, "batch") ? "put_batch" : "sl_put",
               val_spread(l, 1e-6, "M"), ratio_spread(tmp, "ap/1024/1/lmdb"),
               yn(s.n && l.n, goal_ge(tmp, "ap/1024/1/lmdb", 2)));
    }
    /* append 64 KiB, 1 thread (GB/s of payload) */
    snprintf(tmp, sizeof tmp, "%s", better("ap/65536/1/sl_put", "ap/65536/1/sl_batch"));
    if (!unmeasured("ap/65536/1/sl_put", "append 64 KiB, 1 thread", "≥ 1.3× LMDB")) {
        st3 s = metric("%s", tmp), l = metric("ap/65536/1/lmdb");
        printf("| append 64 KiB, 1 thread | %s [%s] | LMDB %s | %s | ≥ 1.3× LMDB | %s |\n",
               val_spread(s, 65536e-9, "GB/s"), strstr(tmp, "batch") ? "put_batch" : "sl_put",
               val_spread(l, 65536e-9, "GB/s"), ratio_spread(tmp, "ap/65536/1/lmdb"),
               yn(s.n && l.n, goal_ge(tmp, "ap/65536/1/lmdb", 1.3)));
    }
    /* append 100 B, 2 threads vs own 1 thread (same variant as the 1-thread row) */
    snprintf(sl2, sizeof sl2, "ap/100/2/%s", strstr(sl, "sl_batch") ? "sl_batch" : "sl_put");
    if (!unmeasured(sl2, "append 100 B, 2 threads on different shards",
                    "≥ 1.7× shardlog's own 1-thread figure")) {
        st3 s2 = metric("%s", sl2), s1 = metric("%s", sl);
        printf("| append 100 B, 2 threads on different shards | %s rec/s [%s] | — (shardlog 1 "
               "thread: %s) | %s | ≥ 1.7× shardlog's own 1-thread figure | %s |\n",
               val_spread(s2, 1e-6, "M"), slv, val_spread(s1, 1e-6, "M"), ratio_spread(sl2, sl),
               yn(s2.n && s1.n, goal_ge(sl2, sl, 1.7)));
    }
    /* scan 100 B */
    if (!unmeasured("scan/100/sl_batch", "scan 100 B, checksums verified", "≥ 1.2× LMDB")) {
        st3 s = metric("scan/100/sl_batch"), l = metric("scan/100/lmdb");
        printf("| scan 100 B, checksums verified | %s rec/s | LMDB cursor %s | %s | ≥ 1.2× LMDB "
               "| %s |\n", val_spread(s, 1e-6, "M"), val_spread(l, 1e-6, "M"),
               ratio_spread("scan/100/sl_batch", "scan/100/lmdb"),
               yn(s.n && l.n, goal_ge("scan/100/sl_batch", "scan/100/lmdb", 1.2)));
    }
    /* durable */
    if (!unmeasured("dur/always/1", "durable appends, a sync every 100 × 1 KiB",
                    "≥ 1.5× the best peer; ALWAYS grows close to linearly with producer "
                    "threads up to 32")) {
        /* 1.5x: the peers' contract (PutRecords of 100 in ALWAYS mode) against
        ** the best peer; linear: ALWAYS single puts, T threads vs 1 */
        st3 bp, ba;
        const char *bpn = best_durable_peer(&bp);
        int bt = best_always(&ba);
        st3 bb = metric("dur/always_batch");
        bool lin = true, lin_m = true;
        char scal[160] = "";
        for (int i = 1; i < NALWAYS; i++) {
            int t = ALWAYS_THREADS[i];
            char nt[32];
            snprintf(nt, sizeof nt, "dur/always/%d", t);
            st3 r = metric("%s", nt), one = metric("dur/always/1");
            if (!r.n || !one.n) { lin_m = false; continue; }
            double x = r.med / one.med;
            if (x < 0.75 * t) lin = false;
            snprintf(scal + strlen(scal), sizeof scal - strlen(scal), "%s%d thr %s", i > 1 ? ", " : "",
                     t, fratio(x));
        }
        const char *pl = !bpn ? "n/a" : !strcmp(bpn, "dur/lmdb") ? "LMDB"
                                      : !strcmp(bpn, "dur/rocks") ? "RocksDB" : "SQLite";
        bool fast = bpn && bb.n && goal_ge("dur/always_batch", bpn, 1.5);
        printf("| durable appends, a sync every 100 × 1 KiB | ALWAYS, PutRecords of 100: %s "
               "rec/s; ALWAYS single puts, best (%d threads): %s, 1 thread: %s | best peer %s "
               "%s (LMDB %s; RocksDB %s; SQLite %s) | PutRecords of 100 %s; single-put "
               "scaling vs 1 thread: %s | ≥ 1.5× the best peer; ALWAYS grows close to linearly "
               "with producer threads up to 32 | %s (1.5×: %s; linear: %s) |\n",
               val_spread(bb, 1e-3, "k"), bt, val_spread(ba, 1e-3, "k"),
               val_spread(metric("dur/always/1"), 1e-3, "k"), pl, val_spread(bp, 1e-3, "k"),
               val_spread(metric("dur/lmdb"), 1e-3, "k"),
               val_spread(metric("dur/rocks"), 1e-3, "k"),
               val_spread(metric("dur/sqlite"), 1e-3, "k"),
               bpn ? ratio_spread("dur/always_batch", bpn) : "n/a", scal,
               yn(bb.n && bp.n && lin_m, fast && lin), fast ? "yes" : "no", lin ? "yes" : "no");
    }
    /* wake-up */
    if (!unmeasured("wake/sl/med", "wake-up latency", "median ≤ 1.5×, p99 ≤ 3× the ping-pong")) {
        st3 sm = metric("wake/sl/med"), sp = metric("wake/sl/p99");
        st3 cm = metric("wake/cv/med"), cp = metric("wake/cv/p99");
        bool m = sm.n && cm.n, okm = m && sm.med <= 1.5 * cm.med, okp = m && sp.med <= 3 * cp.med;
        printf("| wake-up latency | median %s, p99 %s | ping-pong median %s, p99 %s | median "
               "%s, p99 %s | median ≤ 1.5×, p99 ≤ 3× the ping-pong | %s (median: %s; p99: %s) "
               "|\n", val_spread(sm, 1, "µs"), val_spread(sp, 1, "µs"), val_spread(cm, 1, "µs"),
               val_spread(cp, 1, "µs"), ratio_spread("wake/sl/med", "wake/cv/med"),
               ratio_spread("wake/sl/p99", "wake/cv/p99"), yn(m, okm && okp),
               okm ? "yes" : "no", okp ? "yes" : "no");
    }
    /* reopen */
    if (!unmeasured("reopen/0/crash", "reopen after kill -9",
                    "≤ 50 ms at 1 GiB; 8 GiB ÷ 1 GiB ≤ 1.5")) {
        st3 a = metric("reopen/0/crash"), b = metric("reopen/1/crash");
        bool oka = a.n && a.med <= 50, okr = a.n && b.n && b.med / a.med <= 1.5;
        printf("| reopen after kill -9 | 1 GiB: %s; %.0f GiB: %s | — | %.0f GiB ÷ 1 GiB: %s | "
               "≤ 50 ms at 1 GiB; 8 GiB ÷ 1 GiB ≤ 1.5%s | %s (50 ms: %s; ratio: %s) |\n",
               val_spread(a, 1, "ms"), (double)reopen_bytes[1] / (1 << 30),
               val_spread(b, 1, "ms"), (double)reopen_bytes[1] / (1 << 30),
               ratio_spread("reopen/1/crash", "reopen/0/crash"),
               O.quick ? " (--quick measures 2 GiB instead of 8)" : "",
               yn(a.n && b.n, oka && okr), oka ? "yes" : "no", okr ? "yes" : "no");
    }
    printf("\n");
}

/* ---- main --------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: bench [--quick] [--rounds N] [--dir DIR] [--only GROUPS] "
                    "[--cmd TEXT]\n  GROUPS: comma-separated limits,append,durable,wakeup,"
                    "reopen,maint,encrypt\n");
    exit(2);
}

int main(int argc, char **argv)
{
    O.rounds = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quick")) O.quick = true;
        else if (i + 1 >= argc) usage();
        else if (!strcmp(a, "--rounds")) O.rounds = atoi(argv[++i]);
        else if (!strcmp(a, "--dir")) O.dir = argv[++i];
        else if (!strcmp(a, "--only")) O.only = argv[++i];
        else if (!strcmp(a, "--cmd")) O.cmd = argv[++i];
        else usage();
    }
    if (!O.rounds) O.rounds = O.quick ? 3 : 5;
    if (O.rounds < 1 || O.rounds > MAX_ROUNDS) usage();
    n_rounds = O.rounds;
    div_ = O.quick ? 5 : 1;
    n_samples = O.quick ? 2000 : 5000;
    durable_s = O.quick ? 0.4 : 1.5;
    reopen_bytes[0] = 1ull << 30;
    reopen_bytes[1] = O.quick ? 2ull << 30 : 8ull << 30;

    const char *tmp = getenv("TMPDIR");
    root_init(O.dir ? O.dir : tmp && *tmp ? tmp : "/tmp");
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);

    double t_start = now_s();
    progress("preparing inputs (keys, payloads, expected sums)");
    pool = malloc(POOL_BYTES);
    if (!pool) die("out of memory");
    uint64_t rng = 0x5eed;
    for (size_t i = 0; i < POOL_BYTES; i += 8) {
        uint64_t v = rng_next(&rng);
        memcpy(pool + i, &v, 8);
    }
    size_t nmax = n_of(0);
    keyset_init(&ks1, 1, nmax, 1);
    keyset_init(&ks2, 2, nmax, 2);
    for (size_t si = 0; si < NSIZES; si++) want_sum[si] = expected_sum(n_of(si), SIZES[si].size);
    if (want("encrypt")) enc_init();

    for (int r = -1; r < O.rounds; r++) {
        const char *what = r < 0 ? "warm-up" : "round";
        int shown = r < 0 ? 0 : r + 1;
        if (want("limits")) {
            progress("%s %d/%d: machine limits", what, shown, O.rounds);
            limits_round(r, O.quick);
        }
        if (want("append"))
            for (int threads = 1; threads <= 2; threads++)
                for (size_t si = 0; si < NSIZES; si++) {
                    progress("%s %d/%d: append %s x %s, %d thread%s%s", what, shown, O.rounds,
                             fnum((double)n_of(si)), SIZES[si].label, threads,
                             threads == 1 ? "" : "s", threads == 1 ? " (+ scan)" : "");
                    run_append(r, si, threads);
                }
        if (want("durable")) {
            progress("%s %d/%d: durable 1 KiB appends", what, shown, O.rounds);
            run_durable(r);
        }
        if (want("wakeup")) {
            progress("%s %d/%d: wake-up latency", what, shown, O.rounds);
            run_wakeup(r);
        }
        if (want("reopen")) {
            progress("%s %d/%d: reopen after SIGKILL", what, shown, O.rounds);
            run_reopen(r);
        }
        if (want("maint")) {
            progress("%s %d/%d: maintenance and cold segments", what, shown, O.rounds);
            run_maint(r);
        }
        if (want("encrypt")) {
            progress("%s %d/%d: encryption at rest, clear vs encrypted (100 B, 1 KiB, 64 KiB)",
                     what, shown, O.rounds);
            double t0 = now_s();
            run_encrypt(r);
            rec_put(r, now_s() - t0, "enc/section_s");
        }
    }
    progress("done in %.0f s", now_s() - t_start);

    header(argc, argv);
    if (want("limits")) limits_print();
    if (want("append")) {
        print_append(1);
        print_append(2);
        print_scan();
    }
    if (want("durable")) print_durable();
    if (want("wakeup")) print_wakeup();
    if (want("reopen")) print_reopen();
    if (want("maint")) print_maint();
    if (want("encrypt")) print_encrypt();
    print_goals();
    printf("_Measured in %.0f s._\n", now_s() - t_start);
    sl_keyfile_provider_close(enc_keys);
    keyset_free(&ks1);
    keyset_free(&ks2);
    free(pool);
    return 0;
}
