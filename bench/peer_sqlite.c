/*
** peer_sqlite.c -- SQLite (libsqlite3) as a 4-shard log.
**
** Layout: one database file with one table per shard,
**   CREATE TABLE sN(seq INTEGER PRIMARY KEY, pk BLOB NOT NULL, data BLOB NOT NULL)
** (the 16-byte partition key and the payload, so the bytes stored match
** shardlog's).  With two producer threads, two database files (SQLite
** takes one writer per database), thread t's holding shards 2t and 2t+1,
** each thread with its own connection (SQLITE_OPEN_NOMUTEX).  seq is a
** per-connection counter bound explicitly.  The shard is MD5(partition key)
** through libcrypto's MD5_Init/Update/Final, per record.
**
** No-fsync workloads: journal_mode=WAL, synchronous=OFF, cache_size 64 MiB,
** mmap_size 1 GiB (for the scans), default 4 KiB pages and automatic
** checkpoints; one prepared INSERT per table (blobs bound SQLITE_STATIC),
** a COMMIT every TXN_ROWS rows or TXN_BYTES bytes.
** Durable: journal_mode=WAL, synchronous=FULL, one transaction per
** DURABLE_EVERY rows: every COMMIT fsyncs the WAL.
** Scans: SELECT data FROM sN ORDER BY seq, per table in shard order.
*/
#include "systems.h"

#include <sqlite3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TXN_ROWS 10000u
#define TXN_BYTES (64u << 20)

const char *sqlite_version_str(void)
{
    return sqlite3_libversion();
}

static void sq_die(sqlite3 *db, const char *what)
{
    die("sqlite: %s: %s", what, db ? sqlite3_errmsg(db) : "?");
}

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        die("sqlite: %s: %s", sql, err ? err : "?");
}

typedef struct sdb {
    sqlite3 *db;
    sqlite3_stmt *ins[SHARDS];
    int first, count;
} sdb;

static void sdb_open(sdb *d, const char *path, bool durable, int first, int count)
{
    d->first = first;
    d->count = count;
    if (sqlite3_open_v2(path, &d->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK)
        sq_die(d->db, "sqlite3_open_v2");
    exec(d->db, "PRAGMA journal_mode=WAL");
    exec(d->db, durable ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF");
    exec(d->db, "PRAGMA cache_size=-65536");
    exec(d->db, "PRAGMA mmap_size=1073741824");
    for (int i = 0; i < count; i++) {
        char sql[160];
        snprintf(sql, sizeof sql,
                 "CREATE TABLE s%d(seq INTEGER PRIMARY KEY, pk BLOB NOT NULL, "
                 "data BLOB NOT NULL)", first + i);
        exec(d->db, sql);
        snprintf(sql, sizeof sql, "INSERT INTO s%d(seq, pk, data) VALUES(?, ?, ?)", first + i);
        if (sqlite3_prepare_v2(d->db, sql, -1, &d->ins[i], NULL) != SQLITE_OK)
            sq_die(d->db, "prepare INSERT");
    }
}

static void sdb_close(sdb *d)
{
    for (int i = 0; i < d->count; i++) sqlite3_finalize(d->ins[i]);
    if (sqlite3_close(d->db) != SQLITE_OK) sq_die(d->db, "sqlite3_close");
}

static void insert(sdb *d, int shard, int64_t seq, const char *key, const void *data,
                   size_t size)
{
    sqlite3_stmt *st = d->ins[shard - d->first];
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_blob(st, 2, key, KEY_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, data, (int)size, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) sq_die(d->db, "INSERT");
    sqlite3_reset(st);
}

typedef struct sq_ctx {
    const ap_job *job;
    sdb d[2];
} sq_ctx;

static void sq_worker(void *arg, int t)
{
    sq_ctx *c = arg;
    const ap_job *job = c->job;
    sdb *d = &c->d[t];
    size_t n = job->n / (size_t)job->threads, base = (size_t)t * n, size = job->size;
    char (*keys)[KEY_LEN + 1] = job->ks->keys[t];
    size_t in_txn = 0, bytes = 0;
    exec(d->db, "BEGIN");
    for (size_t i = 0; i < n; i++) {
        insert(d, route(keys[i]), (int64_t)i + 1, keys[i], rec_data(base + i), size);
        bytes += KEY_LEN + size;
        if (++in_txn == TXN_ROWS || bytes >= TXN_BYTES) {
            exec(d->db, "COMMIT");
            exec(d->db, "BEGIN");
            in_txn = bytes = 0;
        }
    }
    exec(d->db, "COMMIT");
}

static void sq_scan(sdb *d, ap_result *out)
{
    uint64_t sum = 0, count = 0;
    double t0 = now_s();
    for (int i = 0; i < d->count; i++) {
        char sql[64];
        sqlite3_stmt *st;
        snprintf(sql, sizeof sql, "SELECT data FROM s%d ORDER BY seq", d->first + i);
        if (sqlite3_prepare_v2(d->db, sql, -1, &st, NULL) != SQLITE_OK) sq_die(d->db, "SELECT");
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            const void *v = sqlite3_column_blob(st, 0);
            sum += sum_bytes(v, (size_t)sqlite3_column_bytes(st, 0));
            count++;
        }
        if (rc != SQLITE_DONE) sq_die(d->db, "SELECT step");
        sqlite3_finalize(st);
    }
    out->scan_s = now_s() - t0;
    out->scan_records = count;
    out->scan_sum = sum;
}

void sqlite_append(const ap_job *job, ap_result *out)
{
    memset(out, 0, sizeof *out);
    sq_ctx c = {.job = job};
    int per = SHARDS / job->threads;
    for (int t = 0; t < job->threads; t++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/db%d.sqlite", job->dir, t);
        sdb_open(&c.d[t], path, false, t * per, per);
    }
    out->append_s = run_timed(job->threads, sq_worker, &c);
    if (job->scan) sq_scan(&c.d[0], out);
    for (int t = 0; t < job->threads; t++) sdb_close(&c.d[t]);
}

double sqlite_durable(const char *dir, const keyset *ks, double seconds)
{
    sdb d;
    char path[4200];
    snprintf(path, sizeof path, "%s/db0.sqlite", dir);
    sdb_open(&d, path, true, 0, SHARDS);
    int64_t seq = 0;
    size_t i = 0;
    double t0 = now_s(), end = t0 + seconds, t;
    do {
        exec(d.db, "BEGIN");
        for (unsigned j = 0; j < DURABLE_EVERY; j++, i = (i + 1) % ks->cap)
            insert(&d, route(ks->keys[0][i]), ++seq, ks->keys[0][i], rec_data(i), DURABLE_SIZE);
        exec(d.db, "COMMIT");
    } while ((t = now_s()) < end);
    sdb_close(&d);
    return (double)seq / (t - t0);
}
