/*
** cmd_ops.c -- looking after a stream: stats, cost, advise, verify,
** compact, metrics.  The figures come from the library (metrics.c:
** sl_workload_observe, sl_metrics_get, sl_bill_estimate, sl_advise;
** verify.c: sl_stream_verify); this file prints them.
*/
#include "cli.h"

#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- prices --------------------------------------------------------------
** The price table is JSON with the fields of sl_prices (tools/prices.json
** is the default, installed to share/shardlog/; `cost --print-prices`
** prints the same).  Fields left out keep their defaults; an unknown field
** is an error, so that a typo is never silently priced at the default. */

static const struct {
    const char *name;
    size_t off;
} price_fields[] = {
#define PF(f) {#f, offsetof(sl_prices, f)}
    PF(shard_hour), PF(put_units_million), PF(extended_retention_shard_hour),
    PF(long_retention_gb_month), PF(efo_consumer_shard_hour), PF(efo_gb),
    PF(ondemand_stream_hour), PF(ondemand_gb_in), PF(ondemand_gb_out), PF(hours_per_month),
#undef PF
};
#define NPF (sizeof price_fields / sizeof price_fields[0])
#define PRICE_SOURCE                                                                           \
    "us-east-1, USD. Third-party sources (AWS renders its pricing page with JavaScript): "     \
    "trek10.com 2023-09-21 (shard-hour, PUT units, on-demand), c3x.dev and "                   \
    "awsnegotiations.com (extended retention, EFO); long-term retention is third-party only " \
    "and conflicting (0.023 or 0.10 per GB-month). Collected 2026-11; check before quoting."

static double *price_at(sl_prices *p, size_t i) { return (double *)((char *)p + price_fields[i].off); }

static json_t *prices_json(const sl_prices *p)
{
    json_t *j = json_pack("{s:s,s:s}", "source", PRICE_SOURCE, "currency", "USD");
    for (size_t i = 0; i < NPF; i++)
        json_object_set_new(j, price_fields[i].name, json_real(*price_at((sl_prices *)p, i)));
    return j;
}

static void load_prices(cli *c, sl_prices *p)
{
    *p = (sl_prices)SL_PRICES_INIT;
    const char *path = arg_str(c, "prices");
    if (!path) path = getenv("SHARDLOG_PRICES");
    if (!path || !*path) return;
    json_error_t err;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
    if (!j) usage_fail(c, "--prices %s: line %d: %s", path, err.line, err.text);
    if (!json_is_object(j)) usage_fail(c, "--prices %s: not a JSON object", path);
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        if (!strcmp(key, "source") || !strcmp(key, "currency") || !strcmp(key, "comment"))
            continue;
        size_t i = 0;
        while (i < NPF && strcmp(price_fields[i].name, key)) i++;
        if (i == NPF) usage_fail(c, "--prices %s: unknown field \"%s\"", path, key);
        if (!json_is_number(v) || json_number_value(v) < 0 || !isfinite(json_number_value(v)))
            usage_fail(c, "--prices %s: \"%s\" must be a number >= 0", path, key);
        *price_at(p, i) = json_number_value(v);
    }
    if (p->hours_per_month <= 0) usage_fail(c, "--prices %s: hours_per_month must be > 0", path);
    json_decref(j);
}

/* ---- the workload ------------------------------------------------------- */

static int observe_progress(void *ctx, uint64_t done, uint64_t total)
{
    progress(ctx, "reading", done, total);
    return 0;
}

static sl_workload *observe(cli *c, sl_stream *s)
{
    int64_t since = INT64_MIN;
    uint64_t window = arg_u64(c, "window", 0, 1, 100ull * 365 * 86400);
    if (window) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        since = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 - (int64_t)window * 1000;
    }
    sl_workload *w;
    CK(c, sl_workload_observe(&w, s, since, INT64_MAX, observe_progress, c), s,
       "reading the workload");
    return w;
}

static json_t *workload_json(const sl_workload *w)
{
    char a[40], b[40];
    return json_pack("{s:s,s:s,s:f,s:I,s:I,s:I,s:I,s:I,s:I,s:i}", "From",
                     w->records ? iso_time(a, w->since_ms) : "", "To",
                     w->records ? iso_time(b, w->until_ms) : "", "Seconds", w->seconds,
                     "Records", (json_int_t)w->records, "Bytes", (json_int_t)w->bytes,
                     "PutPayloadUnits", (json_int_t)w->put_units, "PeakRecordsPerSecond",
                     (json_int_t)w->peak_records_s, "PeakBytesPerSecond",
                     (json_int_t)w->peak_bytes_s, "OpenShards", (json_int_t)w->open_shards,
                     "RetentionPeriodHours", (int)w->retention_hours);
}

/* ---- stats -------------------------------------------------------------- */

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void stats_once(cli *c, sl_stream *s)
{
    sl_workload *w = observe(c, s);
    sl_metrics *m;
    CK(c, sl_metrics_get(&m, s), s, "reading metrics");
    if (c->json) {
        json_t *sh = json_array();
        for (size_t i = 0; i < w->shard_count; i++) {
            const sl_shard_load *l = &w->shards[i];
            const sl_shard_metrics *sm = i < m->shard_count ? &m->shards[i] : NULL;
            json_array_append_new(
                sh, json_pack("{s:s,s:b,s:I,s:I,s:f,s:I,s:I,s:I,s:I,s:b,s:I}", "ShardId",
                              l->shard_id, "Open", l->open, "Records", (json_int_t)l->records,
                              "Bytes", (json_int_t)l->bytes, "RecordsPerSecond",
                              (double)l->records / w->seconds, "PeakRecordsPerSecond",
                              (json_int_t)l->peak_records_s, "PeakBytesPerSecond",
                              (json_int_t)l->peak_bytes_s, "SecondsOverLimit",
                              (json_int_t)l->over_seconds, "WouldThrottleRecords",
                              (json_int_t)l->over_records, "Hot", l->hot, "DiskBytes",
                              (json_int_t)(sm ? sm->disk_bytes : 0)));
        }
        json_t *cs = json_array();
        for (size_t i = 0; i < m->consumer_count; i++)
            json_array_append_new(
                cs, json_pack("{s:s,s:s,s:I,s:I}", "ConsumerName", m->consumers[i].name,
                              "ConsumerType",
                              m->consumers[i].type == SL_CONSUMER_DEDICATED ? "DEDICATED"
                                                                             : "SHARED",
                              "IteratorAgeMilliseconds", (json_int_t)m->consumers[i].max_age_ms,
                              "BehindRecords", (json_int_t)m->consumers[i].behind_records));
        json_print(json_pack("{s:s,s:o,s:o,s:o}", "StreamName", m->stream_name, "Workload",
                             workload_json(w), "Shards", sh, "Consumers", cs));
    } else {
        char t1[40], t2[40], b1[32], b2[32], b3[32];
        printf("stream %s: %" PRIu64 " records, %s, over %.0f s", m->stream_name, w->records,
               human_bytes(b1, (double)w->bytes), w->seconds);
        if (w->records) printf(" (%s .. %s)", iso_time(t1, w->since_ms), iso_time(t2, w->until_ms));
        printf("\n\n%-22s %-6s %10s %10s %9s %9s %11s %10s %s\n", "shard", "state", "records",
               "bytes", "rec/s", "peak r/s", "peak B/s", "throttled", "");
        for (size_t i = 0; i < w->shard_count; i++) {
            const sl_shard_load *l = &w->shards[i];
            printf("%-22s %-6s %10" PRIu64 " %10s %9.1f %9" PRIu64 " %11s %10" PRIu64 " %s\n",
                   l->shard_id, l->open ? "OPEN" : "CLOSED", l->records,
                   human_bytes(b2, (double)l->bytes), (double)l->records / w->seconds,
                   l->peak_records_s, human_bytes(b3, (double)l->peak_bytes_s), l->over_records,
                   l->hot ? "HOT" : "");
        }
        printf("\n'throttled': records beyond 1,000/s or 1 MiB/s in their shard's second (what "
               "Kinesis would refuse); HOT: a second at 80 %% of a limit\n");
        if (m->consumer_count) {
            printf("\n%-30s %-9s %14s %14s\n", "consumer", "type", "iterator age", "behind");
            for (size_t i = 0; i < m->consumer_count; i++)
                printf("%-30s %-9s %11.1f s %14" PRIu64 "\n", m->consumers[i].name,
                       m->consumers[i].type == SL_CONSUMER_DEDICATED ? "dedicated" : "shared",
                       (double)m->consumers[i].max_age_ms / 1000.0,
                       m->consumers[i].behind_records);
        }
    }
    sl_metrics_free(m);
    sl_workload_free(w);
}

int cmd_stats(cli *c)
{
    uint64_t watch = arg_u64(c, "watch", 0, 1, 86400);
    sl_stream *s = open_stream(c, false);
    if (!watch) {
        stats_once(c, s);
    } else {
        struct sigaction sa = {.sa_handler = on_signal};
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        while (!stop_flag) {
            if (!c->json && isatty(1)) printf("\033[H\033[2J");
            stats_once(c, s);
            fflush(stdout);
            for (uint64_t i = 0; i < watch * 10 && !stop_flag; i++) {
                struct timespec ts = {0, 100 * 1000000L};
                nanosleep(&ts, NULL);
            }
        }
    }
    close_stream(c, s);
    return 0;
}

/* ---- cost and advice ---------------------------------------------------- */

static json_t *bill_json(const sl_bill *b)
{
    return json_pack("{s:{s:i,s:f,s:f,s:f,s:f,s:f,s:f,s:f},s:{s:f,s:f,s:f,s:f,s:f},"
                     "s:{s:f,s:f,s:f,s:f,s:f}}",
                     "Provisioned", "Shards", (int)b->shards, "ShardHours", b->shard_hours,
                     "PutPayloadUnits", b->put_units, "ExtendedRetention", b->extended_retention,
                     "LongTermRetention", b->long_retention, "EfoConsumerShardHours",
                     b->efo_hours, "EfoDataRetrieval", b->efo_gb, "Total", b->provisioned_total,
                     "OnDemand", "StreamHours", b->ondemand_stream_hours, "DataIn",
                     b->ondemand_in, "DataOut", b->ondemand_out, "LongTermRetention",
                     b->ondemand_long_retention, "Total", b->ondemand_total, "Quantities",
                     "GBIn", b->gb_in, "PutPayloadUnitsMillions", b->put_units_million,
                     "OnDemandGBIn", b->ondemand_gb_in, "GBOut", b->gb_out, "StoredGBBeyond7Days",
                     b->stored_gb_long);
}

static void bill_table(const sl_bill *b, const sl_prices *p)
{
    printf("\nprovisioned, %u shard%s                        per month\n", b->shards,
           b->shards == 1 ? " " : "s");
    printf("  shard-hours         %8.0f h x $%.4f     %10.2f\n",
           b->shards * p->hours_per_month, p->shard_hour, b->shard_hours);
    printf("  PUT payload units   %8.2f M x $%.4f     %10.2f\n", b->put_units_million,
           p->put_units_million, b->put_units);
    printf("  extended retention                          %10.2f\n", b->extended_retention);
    printf("  long-term retention %8.2f GB x $%.4f    %10.2f\n", b->stored_gb_long,
           p->long_retention_gb_month, b->long_retention);
    printf("  EFO consumer-shard-hours                    %10.2f\n", b->efo_hours);
    printf("  EFO data retrieved                          %10.2f\n", b->efo_gb);
    printf("  total                                       %10.2f\n", b->provisioned_total);
    printf("on-demand\n");
    printf("  stream-hours        %8.0f h x $%.4f     %10.2f\n", p->hours_per_month,
           p->ondemand_stream_hour, b->ondemand_stream_hours);
    printf("  data in             %8.2f GB x $%.4f    %10.2f\n", b->ondemand_gb_in,
           p->ondemand_gb_in, b->ondemand_in);
    printf("  data out            %8.2f GB x $%.4f    %10.2f\n", b->gb_out, p->ondemand_gb_out,
           b->ondemand_out);
    printf("  long-term retention                         %10.2f\n", b->ondemand_long_retention);
    printf("  total                                       %10.2f\n", b->ondemand_total);
}

static uint32_t readers_arg(cli *c) { return (uint32_t)arg_u64(c, "readers", 0, 1, 1000000); }

int cmd_cost(cli *c)
{
    sl_prices p;
    load_prices(c, &p);
    if (arg_flag(c, "print-prices")) {
        json_t *j = prices_json(&p);
        char *t = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (t) puts(t);
        free(t);
        json_decref(j);
        return 0;
    }
    uint32_t shards = (uint32_t)arg_u64(c, "shards", 0, 1, SL_SHARDS_MAX);
    uint32_t readers = readers_arg(c);
    sl_stream *s = open_stream(c, false);
    sl_workload *w = observe(c, s);
    sl_bill b;
    CK(c, sl_bill_estimate(&b, w, &p, shards, readers), s, "pricing");
    if (c->json) {
        json_t *j = bill_json(&b);
        json_object_set_new(j, "Workload", workload_json(w));
        json_object_set_new(j, "Prices", prices_json(&p));
        json_print(j);
    } else {
        char b1[32];
        printf("observed: %" PRIu64 " records, %s in %.0f s (%.1f records/s, %s/s); "
               "a month = %.0f hours\n", w->records, human_bytes(b1, (double)w->bytes),
               w->seconds, (double)w->records / w->seconds, human_bytes(b1, (double)w->bytes / w->seconds),
               p.hours_per_month);
        bill_table(&b, &p);
        printf("\nprices: %s\n", PRICE_SOURCE);
    }
    sl_workload_free(w);
    close_stream(c, s);
    return 0;
}

int cmd_advise(cli *c)
{
    sl_prices p;
    load_prices(c, &p);
    uint32_t readers = readers_arg(c);
    sl_stream *s = open_stream(c, false);
    sl_workload *w = observe(c, s);
    sl_advice a;
    CK(c, sl_advise(&a, w, &p, readers), s, "advising");
    if (c->json) {
        json_t *hot = json_array();
        for (size_t i = 0; i < w->shard_count; i++)
            if (w->shards[i].hot) json_array_append_new(hot, json_string(w->shards[i].shard_id));
        json_print(json_pack("{s:i,s:i,s:o,s:s,s:f,s:f,s:f,s:o}", "ShardsNeeded",
                             (int)a.shards_needed, "OpenShards", (int)w->open_shards, "HotShards",
                             hot, "CheaperMode", mode_name(a.cheaper), "ProvisionedMonthly",
                             a.provisioned.provisioned_total, "OnDemandMonthly",
                             a.provisioned.ondemand_total, "MonthlySaving", a.saving, "Workload",
                             workload_json(w)));
    } else {
        char b1[32];
        printf("busiest second: %" PRIu64 " records, %s (limits per shard: 1,000 records, "
               "1 MiB)\n", w->peak_records_s, human_bytes(b1, (double)w->peak_bytes_s));
        printf("shards needed:  %u (the stream has %u open)\n", a.shards_needed, w->open_shards);
        if (a.hot_shards) {
            printf("hot shards:    ");
            for (size_t i = 0; i < w->shard_count; i++)
                if (w->shards[i].hot) printf(" %s", w->shards[i].shard_id);
            printf(" -- one partition key lands in one shard: spread hot keys, or split "
                   "these shards\n");
        }
        printf("cheaper mode:   %s: provisioned with %u shard%s $%.2f a month, on-demand $%.2f "
               "(saves $%.2f)\n", mode_name(a.cheaper), a.shards_needed,
               a.shards_needed == 1 ? "" : "s",
               a.provisioned.provisioned_total, a.provisioned.ondemand_total, a.saving);
    }
    sl_workload_free(w);
    close_stream(c, s);
    return 0;
}

/* ---- verify, compact, metrics ------------------------------------------- */

typedef struct vctx {
    cli *c;
    json_t *damage;
} vctx;

static int verify_fn(void *ctx, const sl_verify_stats *st, const char *damage)
{
    vctx *v = ctx;
    if (damage) {
        if (v->c->json) json_array_append_new(v->damage, json_string(damage));
        else {
            if (isatty(2) && !v->c->json) fputc('\n', stderr);
            printf("DAMAGE %s\n", damage);
            fflush(stdout);
        }
    }
    progress(v->c, "verify", st->segments, st->segments_total);
    return 0;
}

int cmd_verify(cli *c)
{
    sl_stream *s = open_stream(c, false);
    vctx v = {c, json_array()};
    sl_verify_stats st;
    int rc = sl_stream_verify(s, verify_fn, &v, &st);
    if (rc < 0 && rc != SL_ECORRUPT) lib_fail(c, rc, s, "verifying");
    if (c->json) {
        json_print(json_pack("{s:s,s:I,s:I,s:I,s:I,s:o}", "Status",
                             rc == SL_ECORRUPT ? "DAMAGED" : "OK", "Segments",
                             (json_int_t)st.segments, "Records", (json_int_t)st.records,
                             "Damaged", (json_int_t)st.damaged, "EncryptedUnchecked",
                             (json_int_t)st.encrypted_unchecked, "Damage", v.damage));
    } else {
        json_decref(v.damage);
        char b[32];
        printf("%s: %" PRIu64 " segments, %" PRIu64 " records, %s checked; %" PRIu64
               " damaged place%s\n", rc == SL_ECORRUPT ? "DAMAGED" : "ok", st.segments,
               st.records, human_bytes(b, (double)st.bytes), st.damaged,
               st.damaged == 1 ? "" : "s");
        if (st.encrypted_unchecked)
            printf("%" PRIu64 " encrypted records' tags not checked (no --key-file)\n",
                   st.encrypted_unchecked);
    }
    close_stream(c, s);
    return rc == SL_ECORRUPT ? EXIT_DAMAGE : 0;
}

static int maint_fn(void *ctx, const sl_maint_stats *st)
{
    cli *c = ctx;
    if (!c->json && isatty(2)) {
        fprintf(stderr, "\rcompact: %" PRIu64 " deleted, %" PRIu64 " compacted, %" PRIu64
                        " made cold", st->segments_deleted, st->segments_compacted,
                st->segments_cold);
        fflush(stderr);
    }
    return 0;
}

int cmd_compact(cli *c)
{
    int budget = (int)arg_u64(c, "budget-ms", 0, 1, 86400000);
    sl_stream *s = open_stream(c, true);
    sl_maint_stats st;
    int rc = sl_stream_maintain(s, budget ? budget : -1, maint_fn, c, &st);
    if (!c->json && isatty(2)) fputc('\n', stderr);
    CK(c, rc, s, "maintaining");
    char b[32], d[32];
    if (c->json)
        json_print(json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:I}", "Finished", rc == 0,
                             "SegmentsDeleted", (json_int_t)st.segments_deleted,
                             "SegmentsCompacted", (json_int_t)st.segments_compacted,
                             "RecordsCompacted", (json_int_t)st.records_compacted, "SegmentsCold",
                             (json_int_t)st.segments_cold, "BytesFreed",
                             (json_int_t)st.bytes_freed, "DiskBytes", (json_int_t)st.disk_bytes));
    else
        printf("%s: %" PRIu64 " segments deleted, %" PRIu64 " compacted (%" PRIu64
               " records), %" PRIu64 " made cold; %s freed, %s on disk\n",
               rc == 0 ? "done" : "stopped (budget)", st.segments_deleted,
               st.segments_compacted, st.records_compacted, st.segments_cold,
               human_bytes(b, (double)st.bytes_freed), human_bytes(d, (double)st.disk_bytes));
    close_stream(c, s);
    return 0;
}

int cmd_metrics(cli *c)
{
    sl_stream *s = open_stream(c, false);
    fflush(stdout);
    CK(c, sl_metrics_prometheus_fd(s, 1), s, "writing metrics");
    close_stream(c, s);
    return 0;
}
