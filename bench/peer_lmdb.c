/*
** peer_lmdb.c -- LMDB (liblmdb) as a 4-shard log.
**
** Layout: one environment holding one named database per shard ("s0".."s3");
** with two producer threads, two environments (LMDB allows one write
** transaction per environment at a time), thread t's holding shards 2t and
** 2t+1.  Keys are a big-endian 64-bit sequence (one counter per environment,
** so increasing within every database) put with MDB_APPEND; the value is the
** 16-byte partition key followed by the payload, written straight into the
** map with MDB_RESERVE.  The shard is MD5(partition key) through libcrypto's
** MD5_Init/Update/Final, the call shardlog's producer makes, per record.
**
** No-fsync workloads: MDB_WRITEMAP | MDB_NOSYNC | MDB_NOMETASYNC, a commit
** every TXN_RECORDS records or TXN_BYTES bytes -- or, with job->batch == 1,
** a commit per record (each record visible on its own, as after sl_put).  Durable: the default
** (pwrite) mode with full syncs, one transaction per DURABLE_EVERY records,
** so that every commit is one sync point (see lmdb_durable).
*/
#include "systems.h"

#include <lmdb.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TXN_RECORDS 10000u
#define TXN_BYTES (64u << 20)

static void lm_die(int rc, const char *what)
{
    die("lmdb: %s: %s", what, mdb_strerror(rc));
}
#define LMCHECK(call, what)                                                    \
    do {                                                                       \
        int rc_ = (call);                                                      \
        if (rc_ != MDB_SUCCESS) lm_die(rc_, what);                             \
    } while (0)

const char *lmdb_version_str(void)
{
    static char v[32];
    int a, b, c;
    mdb_version(&a, &b, &c);
    snprintf(v, sizeof v, "%d.%d.%d", a, b, c);
    return v;
}

typedef struct lenv {
    MDB_env *env;
    MDB_dbi dbi[SHARDS];
    int first, count;                 /* the shards it holds */
} lenv;

static void lenv_open(lenv *e, const char *dir, size_t mapsize, unsigned flags, int first,
                      int count)
{
    e->first = first;
    e->count = count;
    mkdir_p1(dir);
    LMCHECK(mdb_env_create(&e->env), "mdb_env_create");
    LMCHECK(mdb_env_set_maxdbs(e->env, SHARDS), "mdb_env_set_maxdbs");
    LMCHECK(mdb_env_set_mapsize(e->env, mapsize), "mdb_env_set_mapsize");
    LMCHECK(mdb_env_open(e->env, dir, flags, 0600), "mdb_env_open");
    MDB_txn *txn;
    LMCHECK(mdb_txn_begin(e->env, NULL, 0, &txn), "mdb_txn_begin");
    for (int i = 0; i < count; i++) {
        char name[8];
        snprintf(name, sizeof name, "s%d", first + i);
        LMCHECK(mdb_dbi_open(txn, name, MDB_CREATE, &e->dbi[i]), "mdb_dbi_open");
    }
    LMCHECK(mdb_txn_commit(txn), "mdb_txn_commit");
}

/* Room for n records of `size` bytes in one environment, generously. */
static size_t map_for(size_t n, size_t size)
{
    size_t per = size + KEY_LEN + 8 + 16;
    if (size > 2000) per = (size + KEY_LEN + 4095 + 64) / 4096 * 4096;
    return n * per * 2 + (256u << 20);
}

typedef struct lm_ctx {
    const ap_job *job;
    lenv env[2];
} lm_ctx;

static void lm_worker(void *arg, int t)
{
    lm_ctx *c = arg;
    const ap_job *job = c->job;
    lenv *e = &c->env[t];
    size_t n = job->n / (size_t)job->threads, base = (size_t)t * n, size = job->size;
    char (*keys)[KEY_LEN + 1] = job->ks->keys[t];
    uint64_t seq = 0;
    size_t in_txn = 0, bytes = 0, per_txn = job->batch ? (size_t)job->batch : TXN_RECORDS;
    unsigned char kb[8];
    MDB_txn *txn;
    LMCHECK(mdb_txn_begin(e->env, NULL, 0, &txn), "mdb_txn_begin");
    for (size_t i = 0; i < n; i++) {
        int shard = route(keys[i]) - e->first;
        put_be64(kb, ++seq);
        MDB_val k = {8, kb}, v = {KEY_LEN + size, NULL};
        int rc = mdb_put(txn, e->dbi[shard], &k, &v, MDB_APPEND | MDB_RESERVE);
        if (rc) lm_die(rc, "mdb_put");
        memcpy(v.mv_data, keys[i], KEY_LEN);
        memcpy((char *)v.mv_data + KEY_LEN, rec_data(base + i), size);
        bytes += size + KEY_LEN;
        if (++in_txn == per_txn || bytes >= TXN_BYTES) {
            LMCHECK(mdb_txn_commit(txn), "mdb_txn_commit");
            LMCHECK(mdb_txn_begin(e->env, NULL, 0, &txn), "mdb_txn_begin");
            in_txn = bytes = 0;
        }
    }
    LMCHECK(mdb_txn_commit(txn), "mdb_txn_commit");
}

static void lm_scan(lenv *e, ap_result *out)
{
    uint64_t sum = 0, count = 0;
    double t0 = now_s();
    MDB_txn *txn;
    LMCHECK(mdb_txn_begin(e->env, NULL, MDB_RDONLY, &txn), "mdb_txn_begin (read)");
    for (int i = 0; i < e->count; i++) {
        MDB_cursor *cur;
        MDB_val k, v;
        LMCHECK(mdb_cursor_open(txn, e->dbi[i], &cur), "mdb_cursor_open");
        int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        while (rc == MDB_SUCCESS) {
            sum += sum_bytes((const char *)v.mv_data + KEY_LEN, v.mv_size - KEY_LEN);
            count++;
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        }
        if (rc != MDB_NOTFOUND) lm_die(rc, "mdb_cursor_get");
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    out->scan_s = now_s() - t0;
    out->scan_records = count;
    out->scan_sum = sum;
}

void lmdb_append(const ap_job *job, ap_result *out)
{
    memset(out, 0, sizeof *out);
    lm_ctx c = {.job = job};
    int per = SHARDS / job->threads;
    for (int t = 0; t < job->threads; t++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/env%d", job->dir, t);
        lenv_open(&c.env[t], dir, map_for(job->n / (size_t)job->threads, job->size),
                  MDB_WRITEMAP | MDB_NOSYNC | MDB_NOMETASYNC, t * per, per);
    }
    out->append_s = run_timed(job->threads, lm_worker, &c);
    if (job->scan) lm_scan(&c.env[0], out);
    for (int t = 0; t < job->threads; t++) mdb_env_close(c.env[t].env);
}

/* Durable: the default mode (pages written with pwrite, data and meta page
** fdatasync'ed at every commit: MDB_WRITEMAP's msync was slower here), one
** write transaction per DURABLE_EVERY records, so a commit is the sync point
** every DURABLE_EVERY records and a crash loses at most the open one. */
double lmdb_durable(const char *dir, const keyset *ks, double seconds)
{
    lenv e;
    char d[4200];
    snprintf(d, sizeof d, "%s/env0", dir);
    lenv_open(&e, d, (size_t)4 << 30, 0, 0, SHARDS);
    unsigned char kb[8];
    uint64_t seq = 0;
    size_t i = 0;
    double t0 = now_s(), end = t0 + seconds, t;
    do {
        MDB_txn *txn;
        LMCHECK(mdb_txn_begin(e.env, NULL, 0, &txn), "mdb_txn_begin");
        for (unsigned j = 0; j < DURABLE_EVERY; j++, i = (i + 1) % ks->cap) {
            int shard = route(ks->keys[0][i]);
            put_be64(kb, ++seq);
            MDB_val k = {8, kb}, v = {KEY_LEN + DURABLE_SIZE, NULL};
            LMCHECK(mdb_put(txn, e.dbi[shard], &k, &v, MDB_APPEND | MDB_RESERVE), "mdb_put");
            memcpy(v.mv_data, ks->keys[0][i], KEY_LEN);
            memcpy((char *)v.mv_data + KEY_LEN, rec_data(i), DURABLE_SIZE);
        }
        LMCHECK(mdb_txn_commit(txn), "mdb_txn_commit");
    } while ((t = now_s()) < end);
    mdb_env_close(e.env);
    return (double)seq / (t - t0);
}
