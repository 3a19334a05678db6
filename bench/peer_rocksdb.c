/*
** peer_rocksdb.c -- RocksDB through its C API (rocksdb/c.h) as a 4-shard log.
**
** Layout: one database with one column family per shard ("s0".."s3"); with
** two producer threads, the same database written concurrently, thread t
** writing the column families of shards 2t and 2t+1 (RocksDB takes
** concurrent writers in one database: its write group and concurrent
** memtable inserts).  Keys are a big-endian 64-bit sequence (one counter per
** thread), values the 16-byte partition key followed by the payload.  The
** shard is MD5(partition key) through libcrypto's MD5_Init/Update/Final, per
** record.
**
** Options: WAL on, writes not synced (rocksdb_writeoptions_set_sync(wo, 0));
** compression off (shardlog does not compress, and the payloads are random);
** 64 MiB write buffers (the default), background jobs = 2 (the cores).
** Single puts: rocksdb_put_cf of the value assembled in a buffer.  Batched:
** rocksdb_writebatch_putv_cf (key and payload as two slices, no copy on our
** side) and one rocksdb_write per batch_for(size) records, shardlog's batch.
** Scans: the memtables are flushed first (not timed), then one iterator per
** column family with verify_checksums on (RocksDB's block checksums).
** Durable: single puts, sync = 1 on every DURABLE_EVERY-th (the WAL fsync
** covers every earlier write).
*/
#include "systems.h"

#include <rocksdb/c.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef BENCH_ROCKSDB_VERSION
#define BENCH_ROCKSDB_VERSION "?"
#endif

const char *rocks_version_str(void)
{
    return BENCH_ROCKSDB_VERSION;
}

static void rk_check(char *err, const char *what)
{
    if (err) die("rocksdb: %s: %s", what, err);
}

typedef struct rdb {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_column_family_handle_t *cf[SHARDS + 1]; /* [0] is "default" */
    rocksdb_writeoptions_t *wo, *wo_sync;
} rdb;

static void rdb_open(rdb *r, const char *path)
{
    r->opts = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(r->opts, 1);
    rocksdb_options_set_create_missing_column_families(r->opts, 1);
    rocksdb_options_set_compression(r->opts, rocksdb_no_compression);
    rocksdb_options_set_write_buffer_size(r->opts, 64u << 20);
    rocksdb_options_increase_parallelism(r->opts, 2);
    rocksdb_options_set_max_background_jobs(r->opts, 2);
    const char *names[SHARDS + 1] = {"default", "s0", "s1", "s2", "s3"};
    const rocksdb_options_t *cfo[SHARDS + 1];
    for (int i = 0; i <= SHARDS; i++) cfo[i] = r->opts;
    char *err = NULL;
    r->db = rocksdb_open_column_families(r->opts, path, SHARDS + 1, names, cfo, r->cf, &err);
    rk_check(err, "rocksdb_open_column_families");
    r->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(r->wo, 0);
    r->wo_sync = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(r->wo_sync, 1);
}

static void rdb_close(rdb *r)
{
    for (int i = 0; i <= SHARDS; i++) rocksdb_column_family_handle_destroy(r->cf[i]);
    rocksdb_close(r->db);
    rocksdb_writeoptions_destroy(r->wo);
    rocksdb_writeoptions_destroy(r->wo_sync);
    rocksdb_options_destroy(r->opts);
}

typedef struct rk_ctx {
    const ap_job *job;
    rdb r;
} rk_ctx;

static void rk_worker(void *arg, int t)
{
    rk_ctx *c = arg;
    const ap_job *job = c->job;
    size_t n = job->n / (size_t)job->threads, base = (size_t)t * n, size = job->size;
    char (*keys)[KEY_LEN + 1] = job->ks->keys[t];
    uint64_t seq = 0;
    char kb[8], *err = NULL;
    if (!job->batch) {
        char *buf = malloc(KEY_LEN + size);
        if (!buf) die("out of memory");
        for (size_t i = 0; i < n; i++) {
            int shard = route(keys[i]);
            put_be64((unsigned char *)kb, ++seq);
            memcpy(buf, keys[i], KEY_LEN);
            memcpy(buf + KEY_LEN, rec_data(base + i), size);
            rocksdb_put_cf(c->r.db, c->r.wo, c->r.cf[1 + shard], kb, 8, buf, KEY_LEN + size, &err);
            rk_check(err, "rocksdb_put_cf");
        }
        free(buf);
        return;
    }
    rocksdb_writebatch_t *b = rocksdb_writebatch_create();
    size_t per = (size_t)job->batch, in = 0;
    const size_t klen = 8, vlens[2] = {KEY_LEN, size};
    for (size_t i = 0; i < n; i++) {
        int shard = route(keys[i]);
        put_be64((unsigned char *)kb, ++seq);
        const char *kp = kb, *vp[2] = {keys[i], (const char *)rec_data(base + i)};
        rocksdb_writebatch_putv_cf(b, c->r.cf[1 + shard], 1, &kp, &klen, 2, vp, vlens);
        if (++in == per || i + 1 == n) {
            rocksdb_write(c->r.db, c->r.wo, b, &err);
            rk_check(err, "rocksdb_write");
            rocksdb_writebatch_clear(b);
            in = 0;
        }
    }
    rocksdb_writebatch_destroy(b);
}

static void rk_scan(rdb *r, ap_result *out)
{
    char *err = NULL;
    rocksdb_flushoptions_t *fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    for (int i = 1; i <= SHARDS; i++) {
        rocksdb_flush_cf(r->db, fo, r->cf[i], &err);
        rk_check(err, "rocksdb_flush_cf");
    }
    rocksdb_flushoptions_destroy(fo);
    rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
    rocksdb_readoptions_set_verify_checksums(ro, 1);
    uint64_t sum = 0, count = 0;
    double t0 = now_s();
    for (int i = 1; i <= SHARDS; i++) {
        rocksdb_iterator_t *it = rocksdb_create_iterator_cf(r->db, ro, r->cf[i]);
        for (rocksdb_iter_seek_to_first(it); rocksdb_iter_valid(it); rocksdb_iter_next(it)) {
            size_t vlen;
            const char *v = rocksdb_iter_value(it, &vlen);
            sum += sum_bytes(v + KEY_LEN, vlen - KEY_LEN);
            count++;
        }
        rocksdb_iter_get_error(it, &err);
        rk_check(err, "rocksdb iterator");
        rocksdb_iter_destroy(it);
    }
    out->scan_s = now_s() - t0;
    rocksdb_readoptions_destroy(ro);
    out->scan_records = count;
    out->scan_sum = sum;
}

void rocks_append(const ap_job *job, ap_result *out)
{
    memset(out, 0, sizeof *out);
    rk_ctx c = {.job = job};
    char path[4200];
    snprintf(path, sizeof path, "%s/db", job->dir);
    rdb_open(&c.r, path);
    out->append_s = run_timed(job->threads, rk_worker, &c);
    if (job->scan) rk_scan(&c.r, out);
    rdb_close(&c.r);
}

double rocks_durable(const char *dir, const keyset *ks, double seconds)
{
    rdb r;
    char path[4200], kb[8], buf[KEY_LEN + DURABLE_SIZE], *err = NULL;
    snprintf(path, sizeof path, "%s/db", dir);
    rdb_open(&r, path);
    uint64_t seq = 0;
    size_t i = 0;
    double t0 = now_s(), end = t0 + seconds, t;
    do {
        for (unsigned j = 0; j < DURABLE_EVERY; j++, i = (i + 1) % ks->cap) {
            int shard = route(ks->keys[0][i]);
            put_be64((unsigned char *)kb, ++seq);
            memcpy(buf, ks->keys[0][i], KEY_LEN);
            memcpy(buf + KEY_LEN, rec_data(i), DURABLE_SIZE);
            rocksdb_put_cf(r.db, j + 1 == DURABLE_EVERY ? r.wo_sync : r.wo, r.cf[1 + shard], kb,
                           8, buf, sizeof buf, &err);
            rk_check(err, "rocksdb_put_cf");
        }
    } while ((t = now_s()) < end);
    rdb_close(&r);
    return (double)seq / (t - t0);
}
