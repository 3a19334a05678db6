/*
** cmd_data.c -- the data plane: put-record, put-records (JSON Lines),
** get-records, tail.
*/
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *iter_type_name[] = {
    [SL_ITER_AT_SEQUENCE_NUMBER] = "AT_SEQUENCE_NUMBER",
    [SL_ITER_AFTER_SEQUENCE_NUMBER] = "AFTER_SEQUENCE_NUMBER",
    [SL_ITER_TRIM_HORIZON] = "TRIM_HORIZON",
    [SL_ITER_LATEST] = "LATEST",
    [SL_ITER_AT_TIMESTAMP] = "AT_TIMESTAMP",
};

static sl_iter_type iter_type(cli *c, const char *opt_name, const char *def)
{
    const char *v = arg_str(c, opt_name);
    if (!v) v = def;
    for (int t = SL_ITER_AT_SEQUENCE_NUMBER; t <= SL_ITER_AT_TIMESTAMP; t++)
        if (iter_type_name[t] && !strcmp(v, iter_type_name[t])) return (sl_iter_type)t;
    usage_fail(c, "--%s: '%s' is not an iterator type", opt_name, v);
}

/* ---- put ---------------------------------------------------------------- */

static json_t *result_json(const sl_put_result *r)
{
    char a[SL_SEQ_STR_MAX];
    if (r->error)
        return json_pack("{s:s,s:s}", "ErrorCode", sl_error_kinesis_name(r->error), "ErrorMessage",
                         r->error_message ? r->error_message : sl_strerror(r->error));
    return json_pack("{s:s,s:s}", "SequenceNumber", seq_str(a, r->sequence), "ShardId",
                     r->shard_id);
}

int cmd_put_record(cli *c)
{
    const char *key = arg_need(c, "partition-key");
    const char *text = arg_str(c, "data"), *b64 = arg_str(c, "data-base64");
    if (!!text == !!b64) usage_fail(c, "give exactly one of --data and --data-base64");
    unsigned char *bin = NULL;
    size_t n = 0;
    if (b64 && b64_decode(b64, &bin, &n) != 0) usage_fail(c, "--data-base64: not base64");
    sl_put_entry e = {key, b64 ? (const void *)bin : text, b64 ? n : strlen(text),
                      arg_str(c, "explicit-hash-key")};
    sl_stream *s = open_stream(c, true);
    sl_producer *p;
    CK(c, sl_producer_open(&p, s), s, "opening a producer");
    sl_put_result r;
    CK(c, sl_producer_put(p, &e, &r), p, "putting the record");
    char a[SL_SEQ_STR_MAX];
    if (c->json) {
        json_print(result_json(&r));
    } else {
        printf("%s %s\n", r.shard_id, seq_str(a, r.sequence));
    }
    sl_producer_close(p);
    free(bin);
    close_stream(c, s);
    return 0;
}

void pentry_free(pentry *e)
{
    free(e->key);
    free(e->ehk);
    free(e->data);
    memset(e, 0, sizeof *e);
}

/* A malloc'd message for put_entry_parse (NULL if even that fails). */
static char *msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *msg(const char *fmt, ...)
{
    va_list ap;
    char *m;
    va_start(ap, fmt);
    int r = vasprintf(&m, fmt, ap);
    va_end(ap);
    return r < 0 ? NULL : m;
}

/* (cli.h) */
int put_entry_parse(const char *line, pentry *out, char **why)
{
    json_error_t err;
    int rc = 0;
    *why = NULL;
    memset(out, 0, sizeof *out);
    json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, &err);
    if (!j) {
        *why = msg("not JSON: %s", err.text);
        return -1;
    }
    if (!json_is_object(j)) {
        *why = msg("not a JSON object");
        json_decref(j);
        return -1;
    }
    json_t *k = json_object_get(j, "PartitionKey"), *d = json_object_get(j, "Data"),
           *t = json_object_get(j, "Text"), *h = json_object_get(j, "ExplicitHashKey");
    const char *key;
    json_object_foreach(j, key, k) {
        if (strcmp(key, "PartitionKey") && strcmp(key, "Data") && strcmp(key, "Text") &&
            strcmp(key, "ExplicitHashKey")) {
            *why = msg("unknown field \"%s\" (PartitionKey, Data, Text, ExplicitHashKey)", key);
            rc = -1;
            goto out;
        }
    }
    k = json_object_get(j, "PartitionKey");
    rc = -1;
    if (!json_is_string(k)) {
        *why = msg("\"PartitionKey\" must be a string");
        goto out;
    }
    if (!!d == !!t) {
        *why = msg("give exactly one of \"Data\" (base64) and \"Text\"");
        goto out;
    }
    if (h && !json_is_string(h)) {
        *why = msg("\"ExplicitHashKey\" must be a string");
        goto out;
    }
    out->key = strdup(json_string_value(k));
    out->ehk = h ? strdup(json_string_value(h)) : NULL;
    if (d) {
        if (!json_is_string(d) || b64_decode(json_string_value(d), &out->data, &out->len) != 0) {
            *why = msg("\"Data\" is not a base64 string");
            goto out;
        }
    } else {
        if (!json_is_string(t)) {
            *why = msg("\"Text\" must be a string");
            goto out;
        }
        out->len = json_string_length(t);
        out->data = malloc(out->len + 1);
        if (out->data) memcpy(out->data, json_string_value(t), out->len);
    }
    rc = !out->key || (!out->data && out->len) || (h && !out->ehk) ? -2 : 0;
out:
    json_decref(j);
    if (rc) pentry_free(out);
    return rc;
}

/* Parse one line; on error, print it with the line number and exit 2. */
static void parse_line(cli *c, const char *line, size_t lineno, pentry *out)
{
    char *why;
    int r = put_entry_parse(line, out, &why);
    if (r == -1) usage_fail(c, "line %zu: %s", lineno, why ? why : "out of memory");
    if (r) {
        fprintf(stderr, "shardlog put-records: out of memory\n");
        exit(1);
    }
}

int cmd_put_records(cli *c)
{
    const char *path = arg_str(c, "file");
    FILE *in = path ? fopen(path, "r") : stdin;
    if (!in) usage_fail(c, "--file %s: %s", path, strerror(errno));
    /* read and check every line first: bad input changes nothing */
    size_t cap = 0, n = 0, lineno = 0, llen = 0;
    pentry *v = NULL;
    char *line = NULL;
    ssize_t got;
    while ((got = getline(&line, &llen, in)) >= 0) {
        lineno++;
        size_t a = 0;
        while (a < (size_t)got && strchr(" \t\r\n", line[a])) a++;
        if (a == (size_t)got) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            v = realloc(v, cap * sizeof *v);
            if (!v) {
                fprintf(stderr, "shardlog put-records: out of memory\n");
                return 1;
            }
        }
        memset(&v[n], 0, sizeof v[n]);
        parse_line(c, line, lineno, &v[n++]);
    }
    free(line);
    if (path) fclose(in);
    if (n == 0) usage_fail(c, "no records on the input");
    sl_stream *s = open_stream(c, true);
    sl_producer *p;
    CK(c, sl_producer_open(&p, s), s, "opening a producer");
    sl_put_entry e[SL_BATCH_RECORDS_MAX];
    sl_put_result r[SL_BATCH_RECORDS_MAX];
    json_t *all = json_array();
    size_t failed_all = 0;
    for (size_t at = 0; at < n;) {
        /* a batch: up to 500 entries and 10 MiB */
        size_t k = 0, bytes = 0;
        while (at + k < n && k < SL_BATCH_RECORDS_MAX &&
               (k == 0 || bytes + v[at + k].len + strlen(v[at + k].key) <= SL_BATCH_BYTES_MAX)) {
            pentry *x = &v[at + k];
            e[k] = (sl_put_entry){x->key, x->data, x->len, x->ehk};
            bytes += x->len + strlen(x->key);
            k++;
        }
        size_t failed = 0;
        int rc = sl_producer_put_batch(p, e, k, r, &failed);
        if (rc < 0 && rc != SL_EVALIDATION) lib_fail(c, rc, p, "putting records");
        for (size_t i = 0; i < k; i++) {
            if (rc == SL_EVALIDATION && !r[i].error) r[i].error = rc;
            if (c->json) json_array_append_new(all, result_json(&r[i]));
            else {
                char a[SL_SEQ_STR_MAX];
                if (r[i].error)
                    printf("%zu FAILED %s: %s\n", at + i + 1, sl_error_kinesis_name(r[i].error),
                           r[i].error_message ? r[i].error_message : sl_errmsg(p));
                else printf("%zu %s %s\n", at + i + 1, r[i].shard_id, seq_str(a, r[i].sequence));
            }
            failed_all += r[i].error != 0;
        }
        at += k;
    }
    if (c->json)
        json_print(json_pack("{s:I,s:o}", "FailedRecordCount", (json_int_t)failed_all,
                             "Records", all));
    else {
        json_decref(all);
        printf("%zu records, %zu failed\n", n, failed_all);
    }
    sl_producer_close(p);
    for (size_t i = 0; i < n; i++) pentry_free(&v[i]);
    free(v);
    close_stream(c, s);
    return failed_all ? 1 : 0;
}

/* ---- reading ------------------------------------------------------------ */

static json_t *record_json(const sl_record *r, const char *shard)
{
    char a[SL_SEQ_STR_MAX], t[40];
    char *d = b64_encode(r->data, r->data_len);
    json_t *j = json_pack("{s:s,s:s,s:s,s:s%}", "SequenceNumber", seq_str(a, r->sequence),
                          "ApproximateArrivalTimestamp", iso_time(t, r->arrival_ms), "Data",
                          d ? d : "", "PartitionKey", r->partition_key, r->key_len);
    if (shard) json_object_set_new(j, "ShardId", json_string(shard));
    free(d);
    return j;
}

static void record_line(const sl_record *r, const char *shard)
{
    char a[SL_SEQ_STR_MAX], t[40];
    printf("%s%s%s %s %.*s ", shard ? shard : "", shard ? " " : "", seq_str(a, r->sequence),
           iso_time(t, r->arrival_ms), (int)r->key_len, r->partition_key);
    if (printable(r->data, r->data_len)) {
        fwrite(r->data, 1, r->data_len, stdout);
        putchar('\n');
    } else {
        char *d = b64_encode(r->data, r->data_len);
        printf("base64:%s\n", d ? d : "");
        free(d);
    }
}

int cmd_get_records(cli *c)
{
    const char *shard = arg_need(c, "shard-id");
    sl_iter_type type = iter_type(c, "shard-iterator-type", "TRIM_HORIZON");
    size_t limit = (size_t)arg_u64(c, "limit", 100, 1, SL_GET_RECORDS_MAX);
    uint64_t arg = 0;
    const char *sn = arg_str(c, "starting-sequence-number");
    if (type == SL_ITER_AT_SEQUENCE_NUMBER || type == SL_ITER_AFTER_SEQUENCE_NUMBER) {
        if (!sn) usage_fail(c, "%s needs --starting-sequence-number", iter_type_name[type]);
        if (sl_seq_parse(&arg, sn) != 0)
            usage_fail(c, "--starting-sequence-number: '%s' is not a sequence number", sn);
    } else if (sn) {
        usage_fail(c, "--starting-sequence-number goes with AT_ or AFTER_SEQUENCE_NUMBER");
    }
    if (type == SL_ITER_AT_TIMESTAMP) {
        if (!arg_str(c, "timestamp")) usage_fail(c, "AT_TIMESTAMP needs --timestamp");
        arg = (uint64_t)arg_time_ms(c, "timestamp", 0);
    } else if (arg_str(c, "timestamp")) {
        usage_fail(c, "--timestamp goes with AT_TIMESTAMP");
    }
    sl_stream *s = open_stream(c, false);
    sl_iter *it;
    CK(c, sl_iter_open(&it, s, shard, type, arg), s, "opening the iterator");
    sl_record *recs = calloc(limit, sizeof *recs);
    if (!recs) {
        fprintf(stderr, "shardlog get-records: out of memory\n");
        return 1;
    }
    sl_read_result res;
    CK(c, sl_iter_read(it, recs, limit, &res), it, "reading");
    char a[SL_SEQ_STR_MAX];
    if (c->json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < res.count; i++) json_array_append_new(arr, record_json(&recs[i], NULL));
        json_t *j = json_pack("{s:o,s:I}", "Records", arr, "MillisBehindLatest",
                              (json_int_t)res.millis_behind_latest);
        if (res.last_sequence)
            json_object_set_new(j, "LastSequenceNumber", json_string(seq_str(a, res.last_sequence)));
        if (res.shard_end) {
            json_t *ch = json_array();
            for (size_t i = 0; i < res.child_count; i++)
                json_array_append_new(ch, json_pack("{s:s}", "ShardId", res.child_shard_ids[i]));
            json_object_set_new(j, "ChildShards", ch);
        }
        json_print(j);
    } else {
        for (size_t i = 0; i < res.count; i++) record_line(&recs[i], NULL);
        printf("-- %zu records; %" PRId64 " ms behind latest", res.count, res.millis_behind_latest);
        if (res.last_sequence) printf("; continue AFTER_SEQUENCE_NUMBER %s", seq_str(a, res.last_sequence));
        if (res.shard_end) {
            printf("; shard ended, children:");
            for (size_t i = 0; i < res.child_count; i++) printf(" %s", res.child_shard_ids[i]);
        }
        printf("\n");
    }
    free(recs);
    sl_iter_close(it);
    close_stream(c, s);
    return 0;
}

static volatile sig_atomic_t stop_flag;
static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Print what a read returned; true once --count is reached. */
static bool emit(cli *c, const sl_record *recs, size_t n, const char *shard, uint64_t *seen,
                 uint64_t count)
{
    for (size_t i = 0; i < n; i++) {
        if (c->json) json_print(record_json(&recs[i], shard));
        else record_line(&recs[i], shard);
        if (count && ++*seen >= count) {
            fflush(stdout);
            return true;
        }
    }
    fflush(stdout);
    return false;
}

int cmd_tail(cli *c)
{
    const char *shard = arg_str(c, "shard-id");
    sl_iter_type from = iter_type(c, "from", "LATEST");
    if (from != SL_ITER_LATEST && from != SL_ITER_TRIM_HORIZON)
        usage_fail(c, "--from: LATEST or TRIM_HORIZON");
    uint64_t count = arg_u64(c, "count", 0, 1, UINT64_MAX);
    double timeout = (double)arg_u64(c, "timeout", 0, 1, 1u << 30);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sl_stream *s = open_stream(c, false);
    static sl_record recs[1000];
    sl_read_result res;
    uint64_t seen = 0;
    double last = mono_s();
    if (shard) {
        /* one shard: block on its commits */
        sl_iter *it;
        CK(c, sl_iter_open(&it, s, shard, from, 0), s, "opening the iterator");
        while (!stop_flag) {
            int rc = sl_iter_read(it, recs, 1000, &res);
            if (rc == SL_ECORRUPT) {
                fprintf(stderr, "shardlog tail: %s\n", sl_errmsg(it));
                continue;
            }
            CK(c, rc, it, "reading");
            if (res.count) last = mono_s();
            if (emit(c, recs, res.count, NULL, &seen, count)) break;
            if (res.shard_end) break;
            if (timeout && mono_s() - last >= timeout) break;
            if (!res.count) {
                rc = sl_iter_wait(it, 200);
                CK(c, rc, it, "waiting");
            }
        }
        sl_iter_close(it);
    } else {
        /* the whole stream, parents before children */
        sl_lreader *lr;
        CK(c, sl_lreader_open(&lr, s, NULL, from, 0), s, "opening the reader");
        char sid[SL_SHARD_ID_LEN + 1];
        while (!stop_flag) {
            int rc = sl_lreader_read(lr, recs, 1000, &res, sid);
            if (rc == SL_ECORRUPT || rc == SL_ETRIMMED) {
                fprintf(stderr, "shardlog tail: %s\n", sl_errmsg(lr));
                continue;
            }
            CK(c, rc, lr, "reading");
            if (res.count) last = mono_s();
            if (emit(c, recs, res.count, sid, &seen, count)) break;
            if (timeout && mono_s() - last >= timeout) break;
            if (!res.count) {
                /* nothing in any shard: look again shortly (a commit in
                ** another process shows at the next look) */
                struct timespec ts = {0, 20 * 1000000L};
                nanosleep(&ts, NULL);
            }
        }
        sl_lreader_close(lr);
    }
    close_stream(c, s);
    return 0;
}
