/*
** metrics.c -- the metrics snapshot, its Prometheus text, the observed
** workload, the Kinesis bill and capacity advice.
**
** SNAPSHOT (sl_metrics_get).  Per shard, by index: what is on disk now
** (records and their data + key bytes as the shard keeps them: sealed
** segments from their trailers, the active one from memory, older ones
** loaded on first use -- sl__shard_counts; segment files and their sizes,
** a writer's preallocated spare included), and this handle's counters
** (copied under the shard's rate lock, as sl_shard_counters_get does).
** Per registered consumer, over the OPEN shards: the records after its
** checkpoint (a shard never checkpointed counts from its first retained
** record) and the age of the oldest of them, the newest record's arrival
** minus its arrival.  They are counted by reading the records after the
** checkpoint: the work is proportional to the backlog, fine for a CLI or
** a scrape every few seconds, not for a hot loop.
**
** Reading.  Every read here goes through sl__iter_read, not sl_iter_read,
** so observing a stream takes no read budget, counts no reads, hits no
** injected fault and never expires; and in headers-only mode
** (sl__iter_headers_only), so encrypted records are counted without their
** key: only arrival time, sequence number and lengths are used, all in
** clear in the record header (see the format at the top of segment.c).
** Cold segments are decompressed block by block by the iterator.  Damage
** is skipped as any reader skips it (each damaged region is reported
** through the stream's report callback and not counted); only damage that
** stops a reader where it stands (a segment that cannot be mapped) fails
** the call with SL_ECORRUPT.  Records that expire while a shard is read
** (SL_ETRIMMED) are left out: the read starts again at the trim horizon,
** after the last record counted.
**
** WORKLOAD (sl_workload_observe).  Counting rules, per record, with
** bytes = key_len + data_len:
**   put_units    += max(1, ceil(bytes / 25,000)).  Kinesis bills PUT
**                   payload units of 25 KB; its examples (5 KB -> 1,
**                   45 KB -> 2, 1 MB -> 40) hold exactly with decimal
**                   units: 25 KB = 25,000 bytes and 1 MB = 1,000,000.
**   ondemand_kib += max(1, ceil(bytes / 1,024)) (on-demand rounds each
**                   record up to 1 KiB).
** Per shard, records fall in whole seconds of arrival time,
** floor(arrival_ms / 1000) (arrival times are non-decreasing within a
** shard; one that is not is counted in the second being counted).  For
** each second: its records and bytes (the peaks are the largest), whether
** it was over 1,000 records or 1,048,576 bytes (over_seconds), and, taking
** its records in order, those Kinesis would have throttled (over_records):
** a record is over if 1,000 records were already accepted in that second,
** or if it would take the second's accepted bytes past 1,048,576; a
** throttled record takes no capacity.  hot: a peak at or over 80 % of
** either limit (800 records, 838,861 bytes).  Stream-wide peaks come from
** the per-second series of every shard, merged shard after shard (one
** entry per second that had records: no dense array over the window).
** seconds = floor(last_ms / 1000) - floor(first_ms / 1000) + 1 over every
** record observed (1 if none).  The window reported: since_ms / until_ms
** as asked, INT64_MIN / INT64_MAX replaced by the first / last arrival
** observed (0 if none).
**
** BILL (sl_bill_estimate).  H = hours_per_month, f = H * 3600 / seconds
** (the window's rates scaled to a month), GB = 2^30 bytes:
**   gb_in = bytes * f / GB          put_units_million = put_units * f / 1e6
**   ondemand_gb_in = ondemand_kib * 1024 * f / GB
**   gb_out = R * gb_in, R = readers, or (0) the registered consumers, >= 1
**   stored_gb_long = retention > 168 h ? bytes / seconds * (retention -
**                    168) * 3600 / GB : 0  (the average volume kept past 7 d)
** Provisioned with N shards (the argument, or the open shards, >= 1):
**   shard_hours = N H shard_hour          put_units = put_units_million * price
**   extended_retention = retention > 24 h ? N H extended_retention_shard_hour : 0
**   long_retention = stored_gb_long * long_retention_gb_month
**   efo_hours = D N H efo_consumer_shard_hour, efo_gb = D gb_in efo_gb
**   (D: dedicated consumers)
** On-demand: ondemand_stream_hours = H ondemand_stream_hour, ondemand_in =
** ondemand_gb_in * price, ondemand_out = gb_out * price, and the same long
** retention.  ADVICE: shards_needed = max(1, ceil(peak_records_s / 1000),
** ceil(peak_bytes_s / 1 MiB)) from the stream-wide peaks; the cheaper mode
** is PROVISIONED when its total at shards_needed is <= the on-demand total.
**
** No global state; every function is safe on a stream shared by threads
** (the snapshot is per shard consistent, not across shards).
*/
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define SCAN_BATCH 4096u              /* records per internal read */
#define SCAN_REOPENS 64               /* SL_ETRIMMED restarts per shard */
#define PUT_UNIT_BYTES 25000u         /* 25 KB, decimal (see above) */
#define LIMIT_RECORDS_S 1000u         /* Kinesis' write limits per shard */
#define LIMIT_BYTES_S 1048576u
#define HOT_RECORDS_S 800u            /* 80 % of them */
#define HOT_BYTES_S 838861u           /* ceil(0.8 * 1 MiB) */
#define GIB 1073741824.0

/* A public call inside ours failed: keep its text, unbound, for our own
** sl__ret (as consumer.c's rebind). */
static int rebind(int rc)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", sl__errtext());
    return sl__err(rc, "%s", msg);
}

static int64_t sec_of(int64_t ms)
{
    int64_t q = ms / 1000;
    return (ms % 1000 < 0) ? q - 1 : q;
}

/* ---- reading a shard's record headers ------------------------------------ */

typedef struct scan {
    sl_stream *s;
    sl_shard *sh;
    sl_iter *it;
    uint64_t skip;                    /* records up to this sequence are not
                                         returned (already counted) */
    int reopens;
    sl_record *recs;                  /* SCAN_BATCH */
} scan;

static int scan_open(scan *sc, sl_iter_type type, uint64_t arg)
{
    sl_iter_close(sc->it);
    sc->it = NULL;
    int rc = sl_iter_open(&sc->it, sc->s, sc->sh->id, type, arg);
    if (rc) return rebind(rc);
    sl__iter_headers_only(sc->it);
    return 0;
}

static void scan_close(scan *sc)
{
    sl_iter_close(sc->it);
    sc->it = NULL;
}

/* The next records (at most SCAN_BATCH) with sequence numbers above
** sc->skip, in *n; 0 records: caught up with everything committed. */
static int scan_next(scan *sc, size_t *n)
{
    *n = 0;
    for (;;) {
        sl_read_result r;
        uint64_t off0, off1;
        uint64_t ord0 = sl__iter_pos(sc->it, &off0);
        int rc = sl__iter_read(sc->it, sc->recs, SCAN_BATCH, SL_GET_BYTES_MAX, &r);
        size_t k = 0;
        for (size_t i = 0; i < r.count; i++)
            if (sc->recs[i].sequence > sc->skip) sc->recs[k++] = sc->recs[i];
        if (k) sc->skip = sc->recs[k - 1].sequence;
        if (rc == SL_ECORRUPT) {
            /* skipped past the damage (reported by the iterator), unless
            ** the read could not move at all */
            uint64_t ord1 = sl__iter_pos(sc->it, &off1);
            if (ord1 == ord0 && off1 == off0 && r.count == 0) return rc;
            rc = 0;
            if (!k) continue;
        }
        if (rc == SL_ETRIMMED) {
            /* what comes next expired or was deleted meanwhile: go on from
            ** the trim horizon, after what was counted */
            if (++sc->reopens > SCAN_REOPENS) return rc;
            if ((rc = scan_open(sc, SL_ITER_TRIM_HORIZON, 0)) != 0) return rc;
            if (!k) continue;
        } else if (rc) {
            return rc;
        }
        if (!k && r.count) continue;     /* all at or below skip */
        *n = k;
        return 0;
    }
}

/* ---- the workload ------------------------------------------------------ */

typedef struct sec_load {
    int64_t sec;
    uint64_t recs, bytes;
} sec_load;

typedef struct series {
    sec_load *v;
    size_t n, cap;
} series;

static int series_push(series *s, int64_t sec, uint64_t recs, uint64_t bytes)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        sec_load *v = realloc(s->v, cap * sizeof *v);
        if (!v) return sl__err(SL_ENOMEM, "a per-second series of %zu entries", cap);
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (sec_load){sec, recs, bytes};
    return 0;
}

/* into = into + add, second by second (both sorted by second). */
static int series_merge(series *into, const series *add)
{
    if (!add->n) return 0;
    size_t cap = into->n + add->n;
    sec_load *v = malloc(cap * sizeof *v);
    if (!v) return sl__err(SL_ENOMEM, "merging per-second series (%zu entries)", cap);
    size_t i = 0, j = 0, n = 0;
    while (i < into->n || j < add->n) {
        if (j == add->n || (i < into->n && into->v[i].sec < add->v[j].sec)) {
            v[n++] = into->v[i++];
        } else if (i == into->n || add->v[j].sec < into->v[i].sec) {
            v[n++] = add->v[j++];
        } else {
            v[n] = into->v[i++];
            v[n].recs += add->v[j].recs;
            v[n++].bytes += add->v[j++].bytes;
        }
    }
    free(into->v);
    into->v = v;
    into->n = n;
    into->cap = cap;
    return 0;
}

/* One shard being observed: the second being counted. */
typedef struct acc {
    sl_shard_load *ld;
    bool any;
    int64_t cur;                      /* the second */
    uint64_t recs, bytes;             /* offered in it */
    uint64_t arecs, abytes;           /* accepted in it (under the limits) */
    series ser;
} acc;

static int acc_close_second(acc *a)
{
    if (!a->any) return 0;
    sl_shard_load *ld = a->ld;
    if (a->recs > ld->peak_records_s) ld->peak_records_s = a->recs;
    if (a->bytes > ld->peak_bytes_s) ld->peak_bytes_s = a->bytes;
    if (a->recs > LIMIT_RECORDS_S || a->bytes > LIMIT_BYTES_S) ld->over_seconds++;
    return series_push(&a->ser, a->cur, a->recs, a->bytes);
}

static int acc_record(acc *a, int64_t ms, uint64_t bytes)
{
    sl_shard_load *ld = a->ld;
    int64_t sec = sec_of(ms);
    if (!a->any || sec > a->cur) {
        int rc = acc_close_second(a);
        if (rc) return rc;
        if (!a->any) ld->first_ms = ms;
        a->any = true;
        a->cur = sec;
        a->recs = a->bytes = a->arecs = a->abytes = 0;
    }
    if (ms > ld->last_ms || ld->records == 0) ld->last_ms = ms;
    ld->records++;
    ld->bytes += bytes;
    uint64_t units = (bytes + PUT_UNIT_BYTES - 1) / PUT_UNIT_BYTES;
    uint64_t kib = (bytes + 1023) / 1024;
    ld->put_units += units ? units : 1;
    ld->ondemand_kib += kib ? kib : 1;
    a->recs++;
    a->bytes += bytes;
    if (a->arecs >= LIMIT_RECORDS_S || a->abytes + bytes > LIMIT_BYTES_S) {
        ld->over_records++;
    } else {
        a->arecs++;
        a->abytes += bytes;
    }
    return 0;
}

/* Observe shard sh over [since, until] into a->ld and a->ser. */
static int observe_shard(sl_stream *s, sl_shard *sh, int64_t since, int64_t until, acc *a,
                         sl_record *recs)
{
    scan sc = {.s = s, .sh = sh, .recs = recs};
    int rc = since > 0 ? scan_open(&sc, SL_ITER_AT_TIMESTAMP, (uint64_t)since)
                       : scan_open(&sc, SL_ITER_TRIM_HORIZON, 0);
    bool done = false;
    while (rc == 0 && !done) {
        size_t n;
        if ((rc = scan_next(&sc, &n)) != 0 || n == 0) break;
        for (size_t i = 0; i < n && rc == 0; i++) {
            const sl_record *r = &recs[i];
            if (r->arrival_ms < since) continue;
            if (r->arrival_ms > until) {     /* arrival times only grow */
                done = true;
                break;
            }
            rc = acc_record(a, r->arrival_ms, (uint64_t)r->key_len + r->data_len);
        }
    }
    scan_close(&sc);
    if (rc == 0) rc = acc_close_second(a);
    if (rc) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sl__errtext());
        rc = sl__err(rc, "observing %s: %s", sh->id, msg);
    }
    return rc;
}

/* The registered consumers by type (0 each if none). */
static int consumer_counts(sl_stream *s, uint32_t *shared, uint32_t *dedicated)
{
    *shared = *dedicated = 0;
    sl_consumer_list *l;
    int rc = sl_consumer_list_get(&l, s);
    if (rc) return rebind(rc);
    for (size_t i = 0; i < l->count; i++) {
        if (l->consumers[i].type == SL_CONSUMER_DEDICATED) (*dedicated)++;
        else (*shared)++;
    }
    sl_consumer_list_free(l);
    return 0;
}

void sl_workload_free(sl_workload *w)
{
    if (!w) return;
    free(w->shards);
    free(w);
}

int sl_workload_observe(sl_workload **out, sl_stream *s, int64_t since_ms, int64_t until_ms,
                        sl_progress_fn fn, void *ctx)
{
    if (out) *out = NULL;
    if (!out || !s) return sl__ret(s, sl__err(SL_EINVAL, "out or stream is NULL"));
    if (since_ms > until_ms)
        return sl__ret(s, sl__err(SL_EINVAL, "window [%" PRId64 ", %" PRId64 "] ends before "
                                             "it starts", since_ms, until_ms));
    if (s->readonly) (void)sl__stream_refresh(s);     /* reshards since */
    size_t ns = atomic_load_explicit(&s->nshards, memory_order_acquire);
    sl_workload *w = calloc(1, sizeof *w);
    sl_record *recs = malloc(SCAN_BATCH * sizeof *recs);
    if (!w || !recs || !(w->shards = calloc(ns ? ns : 1, sizeof *w->shards))) {
        free(recs);
        sl_workload_free(w);
        return sl__ret(s, sl__err(SL_ENOMEM, "observing a workload of %zu shards", ns));
    }
    w->shard_count = ns;
    pthread_mutex_lock(&s->mu);
    w->mode = s->man.mode;
    w->retention_hours = s->man.retention_hours;
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < ns; i++) {
        sl_shard *sh = s->shards[i];
        memcpy(w->shards[i].shard_id, sh->id, sizeof w->shards[i].shard_id);
        w->shards[i].open = atomic_load(&sh->open) ? 1 : 0;
        w->open_shards += (uint32_t)w->shards[i].open;
    }
    int rc = consumer_counts(s, &w->shared_consumers, &w->dedicated_consumers);
    series all = {0};
    bool stopped = false, any = false;
    int64_t first = 0, last = 0;
    for (size_t i = 0; rc == 0 && i < ns && !stopped; i++) {
        acc a = {.ld = &w->shards[i]};
        rc = observe_shard(s, s->shards[i], since_ms, until_ms, &a, recs);
        if (rc == 0) rc = series_merge(&all, &a.ser);
        free(a.ser.v);
        if (rc) break;
        sl_shard_load *ld = &w->shards[i];
        if (ld->records) {
            if (!any || ld->first_ms < first) first = ld->first_ms;
            if (!any || ld->last_ms > last) last = ld->last_ms;
            any = true;
        }
        ld->hot = ld->peak_records_s >= HOT_RECORDS_S || ld->peak_bytes_s >= HOT_BYTES_S;
        w->records += ld->records;
        w->bytes += ld->bytes;
        w->put_units += ld->put_units;
        w->ondemand_kib += ld->ondemand_kib;
        if (ld->peak_records_s > w->shard_peak_records_s)
            w->shard_peak_records_s = ld->peak_records_s;
        if (ld->peak_bytes_s > w->shard_peak_bytes_s) w->shard_peak_bytes_s = ld->peak_bytes_s;
        /* no lock is held across the callback */
        if (fn && fn(ctx, i + 1, ns) != 0 && i + 1 < ns) stopped = true;
    }
    free(recs);
    for (size_t k = 0; k < all.n; k++) {
        if (all.v[k].recs > w->peak_records_s) w->peak_records_s = all.v[k].recs;
        if (all.v[k].bytes > w->peak_bytes_s) w->peak_bytes_s = all.v[k].bytes;
    }
    free(all.v);
    if (rc) {
        sl_workload_free(w);
        return sl__ret(s, rc);
    }
    w->seconds = any ? (double)(sec_of(last) - sec_of(first) + 1) : 1.0;
    w->since_ms = since_ms != INT64_MIN ? since_ms : any ? first : 0;
    w->until_ms = until_ms != INT64_MAX ? until_ms : any ? last : 0;
    *out = w;
    return stopped ? 1 : 0;
}

/* ---- the bill and the advice ------------------------------------------- */

static bool price_ok(double v) { return isfinite(v) && v >= 0; }

static int bill_check(const sl_workload *w, const sl_prices *p)
{
    if (!w || !p) return sl__err(SL_EINVAL, "workload or prices is NULL");
    if (p->version != SL_PRICES_VERSION)
        return sl__err(SL_EINVAL, "prices version %" PRIu32 " is not %d (SL_PRICES_VERSION)",
                       p->version, SL_PRICES_VERSION);
    static const struct {
        size_t off;
        const char *name;
    } f[] = {
#define PF_(x) {offsetof(sl_prices, x), #x}
        PF_(shard_hour), PF_(put_units_million), PF_(extended_retention_shard_hour),
        PF_(long_retention_gb_month), PF_(efo_consumer_shard_hour), PF_(efo_gb),
        PF_(ondemand_stream_hour), PF_(ondemand_gb_in), PF_(ondemand_gb_out),
        PF_(hours_per_month),
#undef PF_
    };
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        double v;
        memcpy(&v, (const char *)p + f[i].off, sizeof v);
        if (!price_ok(v))
            return sl__err(SL_EINVAL, "price %s is %g: prices are finite and >= 0", f[i].name, v);
    }
    if (!(p->hours_per_month > 0))
        return sl__err(SL_EINVAL, "hours_per_month is %g: a month has hours", p->hours_per_month);
    if (!isfinite(w->seconds) || !(w->seconds > 0))
        return sl__err(SL_EINVAL, "workload seconds is %g: it must be finite and > 0",
                       w->seconds);
    if (w->shard_count && !w->shards)
        return sl__err(SL_EINVAL, "workload has %zu shards but no shard array", w->shard_count);
    return 0;
}

static void bill(sl_bill *o, const sl_workload *w, const sl_prices *p, uint32_t shards,
                 uint32_t readers)
{
    memset(o, 0, sizeof *o);
    double H = p->hours_per_month;
    double f = H * 3600.0 / w->seconds;
    double ret = (double)w->retention_hours;
    double dedicated = (double)w->dedicated_consumers;
    uint64_t consumers = (uint64_t)w->shared_consumers + w->dedicated_consumers;
    double R = readers ? (double)readers : consumers ? (double)consumers : 1.0;
    o->gb_in = (double)w->bytes * f / GIB;
    o->put_units_million = (double)w->put_units * f / 1e6;
    o->ondemand_gb_in = (double)w->ondemand_kib * 1024.0 * f / GIB;
    o->gb_out = R * o->gb_in;
    o->stored_gb_long =
        w->retention_hours > 168 ? ((double)w->bytes / w->seconds) * (ret - 168.0) * 3600.0 / GIB
                                 : 0.0;
    uint32_t n = shards ? shards : w->open_shards ? w->open_shards : 1;
    double N = (double)n;
    o->shards = n;
    o->shard_hours = N * H * p->shard_hour;
    o->put_units = o->put_units_million * p->put_units_million;
    o->extended_retention = w->retention_hours > 24 ? N * H * p->extended_retention_shard_hour
                                                    : 0.0;
    o->long_retention = o->stored_gb_long * p->long_retention_gb_month;
    o->efo_hours = dedicated * N * H * p->efo_consumer_shard_hour;
    o->efo_gb = dedicated * o->gb_in * p->efo_gb;
    o->provisioned_total = o->shard_hours + o->put_units + o->extended_retention +
                           o->long_retention + o->efo_hours + o->efo_gb;
    o->ondemand_stream_hours = H * p->ondemand_stream_hour;
    o->ondemand_in = o->ondemand_gb_in * p->ondemand_gb_in;
    o->ondemand_out = o->gb_out * p->ondemand_gb_out;
    o->ondemand_long_retention = o->stored_gb_long * p->long_retention_gb_month;
    o->ondemand_total = o->ondemand_stream_hours + o->ondemand_in + o->ondemand_out +
                        o->ondemand_long_retention;
}

int sl_bill_estimate(sl_bill *out, const sl_workload *w, const sl_prices *p, uint32_t shards,
                     uint32_t readers)
{
    if (!out) return sl__ret(NULL, sl__err(SL_EINVAL, "out is NULL"));
    int rc = bill_check(w, p);
    if (rc) return sl__ret(NULL, rc);
    bill(out, w, p, shards, readers);
    return 0;
}

static uint64_t div_up(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

int sl_advise(sl_advice *out, const sl_workload *w, const sl_prices *p, uint32_t readers)
{
    if (!out) return sl__ret(NULL, sl__err(SL_EINVAL, "out is NULL"));
    int rc = bill_check(w, p);
    if (rc) return sl__ret(NULL, rc);
    memset(out, 0, sizeof *out);
    uint64_t need = 1, byrec = div_up(w->peak_records_s, LIMIT_RECORDS_S),
             bybytes = div_up(w->peak_bytes_s, LIMIT_BYTES_S);
    if (byrec > need) need = byrec;
    if (bybytes > need) need = bybytes;
    out->shards_needed = need > UINT32_MAX ? UINT32_MAX : (uint32_t)need;
    for (size_t i = 0; i < w->shard_count; i++) out->hot_shards += w->shards[i].hot ? 1 : 0;
    bill(&out->provisioned, w, p, out->shards_needed, readers);
    double pt = out->provisioned.provisioned_total, ot = out->provisioned.ondemand_total;
    out->cheaper = pt <= ot ? SL_STREAM_MODE_PROVISIONED : SL_STREAM_MODE_ON_DEMAND;
    out->saving = pt <= ot ? ot - pt : pt - ot;
    return 0;
}

/* ---- the snapshot -------------------------------------------------------- */

void sl_metrics_free(sl_metrics *m)
{
    if (!m) return;
    free(m->shards);
    free(m->consumers);
    free(m);
}

/* Consumer c's lag in shard sh: records after its checkpoint, and the
** newest one's arrival minus the first one's. */
static int consumer_lag(sl_consumer *c, sl_shard *sh, sl_record *recs, uint64_t *behind,
                        int64_t *age)
{
    sl_stream *s = c->s;
    *behind = 0;
    *age = 0;
    uint64_t ck = 0;
    int rc = sl_consumer_get_checkpoint(c, sh->id, &ck);
    bool have = rc == 0;
    if (rc == SL_ENOTFOUND) ck = 0;     /* never checkpointed: from the first */
    else if (rc && rc != SL_ETRIMMED) return rebind(rc);
    /* SL_ETRIMMED: what followed it is gone; count what is retained */
    scan sc = {.s = s, .sh = sh, .recs = recs, .skip = ck};
    rc = have ? scan_open(&sc, SL_ITER_AFTER_SEQUENCE_NUMBER, ck) : SL_EINVAL;
    if (rc == SL_EINVAL || rc == SL_ETRIMMED)
        rc = scan_open(&sc, SL_ITER_TRIM_HORIZON, 0);   /* skip <= ck filters */
    int64_t first = 0, last = 0;
    while (rc == 0) {
        size_t n;
        if ((rc = scan_next(&sc, &n)) != 0 || n == 0) break;
        if (*behind == 0) first = recs[0].arrival_ms;
        last = recs[n - 1].arrival_ms;
        *behind += n;
    }
    scan_close(&sc);
    if (rc == 0 && *behind) *age = last > first ? last - first : 0;
    return rc;
}

static int consumer_metrics(sl_stream *s, const sl_consumer_info *ci, size_t ns,
                            sl_record *recs, sl_consumer_metrics *o, bool *gone)
{
    *gone = false;
    memset(o, 0, sizeof *o);
    memcpy(o->name, ci->name, sizeof o->name);
    o->type = ci->type;
    sl_consumer *c;
    int rc = sl_consumer_open(&c, s, ci->name);
    if (rc == SL_ENOTFOUND) {            /* deregistered meanwhile */
        *gone = true;
        return 0;
    }
    if (rc) return rebind(rc);
    for (size_t i = 0; i < ns && rc == 0; i++) {
        sl_shard *sh = s->shards[i];
        if (!atomic_load(&sh->open)) continue;
        uint64_t behind;
        int64_t age;
        if ((rc = consumer_lag(c, sh, recs, &behind, &age)) != 0) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", sl__errtext());
            rc = sl__err(rc, "consumer '%s' in %s: %s", ci->name, sh->id, msg);
            break;
        }
        o->behind_records += behind;
        if (age > o->max_age_ms) o->max_age_ms = age;
    }
    sl_consumer_close(c);
    return rc;
}

static int metrics_build(sl_metrics **out, sl_stream *s)
{
    *out = NULL;
    if (s->readonly) (void)sl__stream_refresh(s);
    size_t ns = atomic_load_explicit(&s->nshards, memory_order_acquire);
    sl_metrics *m = calloc(1, sizeof *m);
    if (!m || !(m->shards = calloc(ns ? ns : 1, sizeof *m->shards))) {
        sl_metrics_free(m);
        return sl__err(SL_ENOMEM, "metrics of %zu shards", ns);
    }
    m->now_ms = sl__now(s);
    /* the shards, as sl_stream_describe reads them */
    pthread_mutex_lock(&s->mu);
    memcpy(m->stream_name, s->man.name, sizeof m->stream_name);
    for (size_t i = 0; i < ns; i++) {
        sl_shard *sh = s->shards[i];
        sl_shard_metrics *o = &m->shards[i];
        memcpy(o->shard_id, sh->id, sizeof o->shard_id);
        o->open = atomic_load(&sh->open) ? 1 : 0;
        sl__shard_counts(sh, &o->records, &o->bytes);
        pthread_mutex_lock(&sh->seglock);
        o->segments = sh->nseg;
        pthread_mutex_unlock(&sh->seglock);
        o->disk_bytes = sl__shard_disk_bytes(sh);
        pthread_mutex_lock(&sh->rl->mu);
        o->counters = sh->rl->c;
        pthread_mutex_unlock(&sh->rl->mu);
    }
    m->shard_count = ns;
    pthread_mutex_unlock(&s->mu);
    /* the consumers (reads: no stream lock held) */
    sl_consumer_list *l;
    int rc = sl_consumer_list_get(&l, s);
    if (rc) {
        sl_metrics_free(m);
        return rebind(rc);
    }
    sl_record *recs = l->count ? malloc(SCAN_BATCH * sizeof *recs) : NULL;
    if (l->count && (!recs || !(m->consumers = calloc(l->count, sizeof *m->consumers))))
        rc = sl__err(SL_ENOMEM, "metrics of %zu consumers", l->count);
    for (size_t i = 0; rc == 0 && i < l->count; i++) {
        bool gone;
        rc = consumer_metrics(s, &l->consumers[i], ns, recs, &m->consumers[m->consumer_count],
                              &gone);
        if (rc == 0 && !gone) m->consumer_count++;
    }
    free(recs);
    sl_consumer_list_free(l);
    if (rc) {
        sl_metrics_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int sl_metrics_get(sl_metrics **out, sl_stream *s)
{
    if (out) *out = NULL;
    if (!out || !s) return sl__ret(s, sl__err(SL_EINVAL, "out or stream is NULL"));
    return sl__ret(s, metrics_build(out, s));
}

/* ---- Prometheus text (exposition format 0.0.4) ------------------------- */

/* Escape a label value: backslash, double quote and line feed become \\,
** \" and \n.  Writes at most cap bytes, NUL included (out may be NULL
** when cap is 0); returns the length the whole escaped text needs.
** Hidden, for the tests. */
SL_HIDDEN size_t sl__prom_escape(char *out, size_t cap, const char *in);
size_t sl__prom_escape(char *out, size_t cap, const char *in)
{
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        char e = *p == '\\' ? '\\' : *p == '"' ? '"' : *p == '\n' ? 'n' : 0;
        char two[2] = {e ? '\\' : *p, e};
        for (int k = 0; k < (e ? 2 : 1); k++, n++)
            if (n + 1 < cap) out[n] = two[k];
    }
    if (cap) out[n < cap ? n : cap - 1] = '\0';
    return n;
}

typedef struct sb {
    char *p;
    size_t len, cap;
    bool oom;
} sb;

static bool sb_room(sb *b, size_t more)
{
    if (b->oom) return false;
    if (b->len + more + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

static void sb_puts(sb *b, const char *s)
{
    size_t n = strlen(s);
    if (!sb_room(b, n)) return;
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

static void sb_label(sb *b, const char *name, const char *value, bool first)
{
    sb_puts(b, first ? "" : ",");
    sb_puts(b, name);
    sb_puts(b, "=\"");
    size_t n = sl__prom_escape(NULL, 0, value);
    if (sb_room(b, n)) {
        sl__prom_escape(b->p + b->len, n + 1, value);
        b->len += n;
    }
    sb_puts(b, "\"");
}

static void sb_family(sb *b, const char *name, const char *type, const char *help)
{
    /* HELP text escapes backslash and line feed; ours have neither */
    sb_puts(b, "# HELP ");
    sb_puts(b, name);
    sb_puts(b, " ");
    sb_puts(b, help);
    sb_puts(b, "\n# TYPE ");
    sb_puts(b, name);
    sb_puts(b, " ");
    sb_puts(b, type);
    sb_puts(b, "\n");
}

enum {
    SM_RECORDS_IN, SM_BYTES_IN, SM_PUT_THROTTLED, SM_READS, SM_RECORDS_OUT, SM_BYTES_OUT,
    SM_READ_THROTTLED, SM_AGE, SM_HOT, SM_DISK_RECORDS, SM_DISK_RECORD_BYTES, SM_SEGMENTS,
    SM_DISK_BYTES, SM_OPEN, SM_COUNT
};

static const struct {
    const char *name, *type, *help;
} shard_fam[SM_COUNT] = {
    [SM_RECORDS_IN] = {"shardlog_shard_records_in_total", "counter",
                       "Records put into the shard through this handle since it opened."},
    [SM_BYTES_IN] = {"shardlog_shard_bytes_in_total", "counter",
                     "Data and partition key bytes put into the shard through this handle."},
    [SM_PUT_THROTTLED] = {"shardlog_shard_put_throttled_total", "counter",
                          "Put entries over the shard's write budget (throttled, or counted "
                          "in ACCOUNT mode)."},
    [SM_READS] = {"shardlog_shard_reads_total", "counter",
                  "Read calls on the shard's shared read budget."},
    [SM_RECORDS_OUT] = {"shardlog_shard_records_out_total", "counter",
                        "Records read from the shard, shared and dedicated."},
    [SM_BYTES_OUT] = {"shardlog_shard_bytes_out_total", "counter",
                      "Data and partition key bytes read from the shard."},
    [SM_READ_THROTTLED] = {"shardlog_shard_read_throttled_total", "counter",
                           "Shared reads over the shard's read budget."},
    [SM_AGE] = {"shardlog_shard_iterator_age_milliseconds", "gauge",
                "millis_behind_latest of the shard's latest read."},
    [SM_HOT] = {"shardlog_shard_hot_seconds", "gauge",
                "Whole seconds in a row the shard's offered write load passed its capacity."},
    [SM_DISK_RECORDS] = {"shardlog_shard_disk_records", "gauge", "Records on disk now."},
    [SM_DISK_RECORD_BYTES] = {"shardlog_shard_disk_record_bytes", "gauge",
                              "Data and partition key bytes of the records on disk now."},
    [SM_SEGMENTS] = {"shardlog_shard_disk_segments", "gauge", "Segment files of the shard."},
    [SM_DISK_BYTES] = {"shardlog_shard_disk_bytes", "gauge",
                       "Size of the shard's segment files in bytes."},
    [SM_OPEN] = {"shardlog_shard_open", "gauge", "1 if the shard is open, 0 once closed by a "
                                                 "reshard."},
};

static void shard_value(char buf[32], const sl_shard_metrics *sm, int k)
{
    const sl_shard_counters *c = &sm->counters;
    uint64_t v = 0;
    switch (k) {
    case SM_RECORDS_IN: v = c->records_in; break;
    case SM_BYTES_IN: v = c->bytes_in; break;
    case SM_PUT_THROTTLED: v = c->put_throttled; break;
    case SM_READS: v = c->reads; break;
    case SM_RECORDS_OUT: v = c->records_out; break;
    case SM_BYTES_OUT: v = c->bytes_out; break;
    case SM_READ_THROTTLED: v = c->read_throttled; break;
    case SM_AGE: snprintf(buf, 32, "%" PRId64, c->iterator_age_ms); return;
    case SM_HOT: v = c->hot_seconds; break;
    case SM_DISK_RECORDS: v = sm->records; break;
    case SM_DISK_RECORD_BYTES: v = sm->bytes; break;
    case SM_SEGMENTS: v = sm->segments; break;
    case SM_DISK_BYTES: v = sm->disk_bytes; break;
    case SM_OPEN: v = (uint64_t)(sm->open != 0); break;
    }
    snprintf(buf, 32, "%" PRIu64, v);
}

/* The whole text of snapshot m, malloc'd, in *text (length *len). */
static int prom_text(const sl_metrics *m, char **text, size_t *len)
{
    sb b = {0};
    char v[32];
    for (int k = 0; k < SM_COUNT; k++) {
        sb_family(&b, shard_fam[k].name, shard_fam[k].type, shard_fam[k].help);
        for (size_t i = 0; i < m->shard_count; i++) {
            sb_puts(&b, shard_fam[k].name);
            sb_puts(&b, "{");
            sb_label(&b, "stream", m->stream_name, true);
            sb_label(&b, "shard", m->shards[i].shard_id, false);
            shard_value(v, &m->shards[i], k);
            sb_puts(&b, "} ");
            sb_puts(&b, v);
            sb_puts(&b, "\n");
        }
    }
    static const char *cname[2] = {"shardlog_consumer_age_milliseconds",
                                   "shardlog_consumer_behind_records"};
    static const char *chelp[2] = {
        "Newest record's arrival minus that of the oldest record after the consumer's "
        "checkpoint, over the open shards.",
        "Records after the consumer's checkpoints, all open shards."};
    for (int k = 0; k < 2; k++) {
        sb_family(&b, cname[k], "gauge", chelp[k]);
        for (size_t i = 0; i < m->consumer_count; i++) {
            const sl_consumer_metrics *c = &m->consumers[i];
            sb_puts(&b, cname[k]);
            sb_puts(&b, "{");
            sb_label(&b, "stream", m->stream_name, true);
            sb_label(&b, "consumer", c->name, false);
            if (k == 0) snprintf(v, sizeof v, "%" PRId64, c->max_age_ms);
            else snprintf(v, sizeof v, "%" PRIu64, c->behind_records);
            sb_puts(&b, "} ");
            sb_puts(&b, v);
            sb_puts(&b, "\n");
        }
    }
    if (b.oom || !sb_room(&b, 0)) {
        free(b.p);
        return sl__err(SL_ENOMEM, "the Prometheus text");
    }
    *text = b.p;
    *len = b.len;
    return 0;
}

static int prom_build(sl_stream *s, char **text, size_t *len)
{
    sl_metrics *m;
    int rc = metrics_build(&m, s);
    if (rc) return rc;
    rc = prom_text(m, text, len);
    sl_metrics_free(m);
    return rc;
}

int sl_metrics_prometheus(sl_stream *s, char *buf, size_t cap, size_t *len)
{
    if (!s) return sl__ret(NULL, sl__err(SL_EINVAL, "stream is NULL"));
    if (!buf && cap) return sl__ret(s, sl__err(SL_EINVAL, "buf is NULL with cap %zu", cap));
    char *text;
    size_t n;
    int rc = prom_build(s, &text, &n);
    if (rc) return sl__ret(s, rc);
    if (len) *len = n;
    if (cap) {
        size_t k = n < cap ? n : cap - 1;
        memcpy(buf, text, k);
        buf[k] = '\0';
    }
    free(text);
    if (n >= cap)
        return sl__ret(s, sl__err(SL_ELIMIT, "the Prometheus text needs %zu bytes and a NUL; "
                                             "the buffer holds %zu",
                                  n, cap));
    return 0;
}

int sl_metrics_prometheus_fd(sl_stream *s, int fd)
{
    if (!s) return sl__ret(NULL, sl__err(SL_EINVAL, "stream is NULL"));
    if (fd < 0) return sl__ret(s, sl__err(SL_EINVAL, "file descriptor %d", fd));
    char *text;
    size_t n;
    int rc = prom_build(s, &text, &n);
    if (rc) return sl__ret(s, rc);
    for (size_t done = 0; done < n;) {
        ssize_t w = write(fd, text + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            rc = sl__errno(SL_EIO, w < 0 ? errno : EIO,
                           "writing the Prometheus text to descriptor %d (%zu of %zu bytes "
                           "written)",
                           fd, done, n);
            break;
        }
        done += (size_t)w;
    }
    free(text);
    return sl__ret(s, rc);
}
