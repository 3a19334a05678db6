/*
** systems.h -- the entry points bench.c drives: shardlog's side of each
** workload, each peer's, and the machine's limits.
**
** Append (+ scan): <sys>_append(job, out) creates its store(s) in job->dir,
** appends job->n records of job->size bytes from job->threads threads (thread
** t writes keys ks->keys[t][0 .. n/threads)), timing only the appends; if
** job->scan, reads everything back in shard order summing payload bytes
** (timed separately); then closes.  The caller deletes job->dir.
**
** Durable: <peer>_durable(dir, ks, seconds) appends records of DURABLE_SIZE
** bytes from one thread, syncing every DURABLE_EVERY records, until `seconds`
** have passed (checked at sync points), and returns records per second.
*/
#ifndef BENCH_SYSTEMS_H
#define BENCH_SYSTEMS_H

#include "harness.h"

#include <shardlog.h>
#include <stdbool.h>

#define DURABLE_SIZE 1024u
#define DURABLE_EVERY 100u

/* ---- shardlog (sys_shardlog.c) ------------------------------------------ */
void slb_append(const ap_job *job, ap_result *out);
/* The same on a stream created with encryption KMS (key id ENC_KEY_ID) and
** this key provider in its open options; NULL keys: slb_append. */
#define ENC_KEY_ID "bench-key"
void slb_append_keyed(const ap_job *job, const sl_key_provider *keys, ap_result *out);
/* ALWAYS mode, `threads` producers putting until `seconds` have passed;
** returns records/s. */
double slb_durable_always(const char *dir, const keyset *ks, int threads, double seconds);
/* NONE mode with sl_stream_sync after every DURABLE_EVERY sl_put, as the
** peers' durable runs; records/s. */
double slb_durable_sync(const char *dir, const keyset *ks, double seconds);
/* ALWAYS mode, one thread, PutRecords of DURABLE_EVERY; records/s. */
double slb_durable_batch(const char *dir, const keyset *ks, double seconds);
/* Commit -> sl_iter_wait wake-up latency, one-way, in microseconds. */
void slb_wakeup(const char *dir, int samples, uint64_t gap_ns, double *med_us, double *p99_us);
/* The same through the read scheduler: a dedicated consumer's subscription
** to shard 0, delivered by the scheduler's thread to a handler. */
void slb_wakeup_sub(const char *dir, int samples, uint64_t gap_ns, double *med_us, double *p99_us);
/* Maintenance (issue 5).  Telemetry-like JSON records (about 300-600 B,
** 1,000 session keys) into 4 shards of 4 MiB segments, PutRecords of 500,
** on a virtual clock that covers 36 hours over the run, so that over it
** segments expire, seal, compact (key compaction on) and turn cold (after
** one hour).  maint: a maintenance thread runs every 10 ms meanwhile.
** Returns the append rate (records/s, wall time); *st what maintenance did
** (with maint). */
double slb_maint_append(const char *dir, size_t n, bool maint, sl_maint_stats *st);
/* Cold segments: n telemetry records into one shard of 16 MiB segments;
** scan them hot, make every sealed segment cold, scan again (sums checked).
** Rates in records/s; *ratio = hot bytes / cold bytes of what turned cold. */
void slb_cold(const char *dir, size_t n, double *hot_rate, double *cold_rate, double *ratio);
void condvar_pingpong(int samples, uint64_t gap_ns, double *med_us, double *p99_us);
/* Fill a stream to `bytes` of 1 KiB records in a child that then SIGKILLs
** itself; time the read-write sl_stream_open after it and after a clean
** close.  Returns the fill rate (bytes/s, as seen by the child). */
double slb_reopen(const char *dir, uint64_t bytes, double *crash_ms, double *clean_ms);

/* ---- peers -------------------------------------------------------------- */
void lmdb_append(const ap_job *job, ap_result *out);
double lmdb_durable(const char *dir, const keyset *ks, double seconds);
void rocks_append(const ap_job *job, ap_result *out);
double rocks_durable(const char *dir, const keyset *ks, double seconds);
void sqlite_append(const ap_job *job, ap_result *out);
double sqlite_durable(const char *dir, const keyset *ks, double seconds);
const char *lmdb_version_str(void);
const char *rocks_version_str(void);
const char *sqlite_version_str(void);

/* ---- the machine (limits.c) --------------------------------------------- */
/* Measure every limit once and store it for round r (see bench.c). */
void limits_round(int r, bool quick);
void limits_print(void);

#endif
