/*
** producer.c -- PutRecord and PutRecords: validation, routing, batching.
**
** A producer is one thread's writing context: a reusable MD5 context and
** scratch space for batches, including the per-entry error texts that
** sl_put_result.error_message points at (valid until the producer's next
** call).  Validation follows Kinesis: a bad entry fails alone with a
** ValidationException-style message naming the field and the limit.
** A batch is grouped by shard (stable, so request order holds within a
** shard) and each shard's group is appended under one lock acquisition.
*/
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define MSG_MAX 256

struct sl_producer {
    sl_stream *s;
    sl_md5 *md5;
    char msg1[MSG_MAX];               /* error text of the last single put */
    char (*msgs)[MSG_MAX];            /* per-entry error texts */
    sl_pending *pend;                 /* batch scratch, SL_BATCH_RECORDS_MAX */
    uint32_t *shard_of;
    size_t *order;
    uint64_t *seqs;
};

int sl_producer_open(sl_producer **out, sl_stream *s)
{
    if (!out || !s) return sl__ret(s, sl__err(SL_EINVAL, "out or stream is NULL"));
    *out = NULL;
    if (s->readonly)
        return sl__ret(s, sl__err(SL_EREADONLY, "stream '%s' is open read-only", s->man.name));
    sl_producer *p = calloc(1, sizeof *p);
    if (!p) return sl__ret(s, sl__err(SL_ENOMEM, "allocating a producer"));
    p->s = s;
    int rc = sl__md5_new(&p->md5);
    if (rc) {
        free(p);
        return sl__ret(s, rc);
    }
    atomic_fetch_add(&s->children, 1);
    *out = p;
    return 0;
}

void sl_producer_close(sl_producer *p)
{
    if (!p) return;
    atomic_fetch_sub(&p->s->children, 1);
    sl__md5_free(p->md5);
    free(p->msgs);
    free(p->pend);
    free(p->shard_of);
    free(p->order);
    free(p->seqs);
    free(p);
}

/* Validate one entry and route it.  Fills *pd and *shard. */
static int prepare(sl_producer *p, const sl_put_entry *e, sl_pending *pd,
                   sl_shard **shard)
{
    sl_stream *s = p->s;
    size_t klen;
    int rc;
    if (!e) return sl__err(SL_EINVAL, "entry is NULL");
    if ((rc = sl__partition_key_check(e->partition_key, &klen)) != 0) return rc;
    if (e->data_len && !e->data) return sl__err(SL_EINVAL, "data is NULL but data_len is %zu", e->data_len);
    uint64_t max = (uint64_t)s->man.max_record_kib * 1024;
    if ((uint64_t)e->data_len + klen > max)
        return sl__err(SL_EVALIDATION,
                       "1 validation error detected: Value at 'data' failed to "
                       "satisfy constraint: Member must have length less than "
                       "or equal to %" PRIu64 " (data %zu + partition key %zu "
                       "bytes; raise max_record_size_kib for larger records)",
                       max, e->data_len, klen);
    sl_u128 h;
    if (e->explicit_hash_key) {
        if ((rc = sl__u128_parse(&h, e->explicit_hash_key)) != 0) return rc;
    } else if (s->nroute == 1) {
        h = (sl_u128){0, 0};          /* one open shard: no need to hash */
    } else {
        uint8_t d[16];
        if ((rc = sl__md5(p->md5, e->partition_key, klen, d)) != 0) return rc;
        h = sl__u128_from_be(d);
    }
    *shard = sl__stream_route(s, h);
    pd->key = e->partition_key;
    pd->klen = (uint32_t)klen;
    pd->data = e->data;
    pd->dlen = (uint32_t)e->data_len;
    return 0;
}

static void result_ok(sl_put_result *r, const sl_shard *sh, uint64_t seq)
{
    if (!r) return;
    r->error = 0;
    r->sequence = seq;
    r->shard_index = sh->index;
    memcpy(r->shard_id, sh->id, sizeof r->shard_id);
    r->error_message = "";
}

static void result_err(sl_producer *p, sl_put_result *r, size_t i, int code)
{
    if (!r) return;
    memset(r, 0, sizeof *r);
    r->error = code;
    if (p->msgs) {
        snprintf(p->msgs[i], MSG_MAX, "%s", sl__errtext());
        r->error_message = p->msgs[i];
    } else {
        r->error_message = sl_strerror(code);
    }
}

int sl_producer_put(sl_producer *p, const sl_put_entry *e, sl_put_result *res)
{
    if (!p) return sl__ret(NULL, sl__err(SL_EINVAL, "producer is NULL"));
    sl_stream *s = p->s;
    sl_pending pd;
    sl_shard *sh;
    int rc = sl__stream_check_writable(s);
    if (rc == 0) rc = prepare(p, e, &pd, &sh);
    uint64_t seq = 0;
    size_t done = 0;
    if (rc == 0) rc = sl__shard_append(sh, &pd, 1, sl__now(s), &seq, &done);
    if (rc == 0 && s->durability == SL_DURABILITY_ALWAYS) rc = sl__shard_wait_durable(sh, seq);
    if (res) {
        if (rc == 0) result_ok(res, sh, seq);
        else {
            memset(res, 0, sizeof *res);
            res->error = rc;
            snprintf(p->msg1, sizeof p->msg1, "%s", sl__errtext());
            res->error_message = p->msg1;
        }
    }
    return sl__ret(p, rc);
}

int sl_put(sl_producer *p, const char *partition_key, const void *data,
           size_t data_len, uint64_t *seq_out)
{
    sl_put_entry e = {partition_key, data, data_len, NULL};
    sl_put_result r;
    int rc = sl_producer_put(p, &e, &r);
    if (seq_out) *seq_out = rc == 0 ? r.sequence : 0;
    return rc;
}

static int scratch(sl_producer *p)
{
    if (p->pend) return 0;
    size_t n = SL_BATCH_RECORDS_MAX;
    p->msgs = malloc(n * sizeof *p->msgs);
    p->pend = malloc(n * sizeof *p->pend);
    p->shard_of = malloc(n * sizeof *p->shard_of);
    p->order = malloc(n * sizeof *p->order);
    p->seqs = malloc(n * sizeof *p->seqs);
    if (p->msgs && p->pend && p->shard_of && p->order && p->seqs) return 0;
    free(p->msgs);
    free(p->pend);
    free(p->shard_of);
    free(p->order);
    free(p->seqs);
    p->msgs = NULL;
    p->pend = NULL;
    p->shard_of = NULL;
    p->order = NULL;
    p->seqs = NULL;
    return sl__err(SL_ENOMEM, "allocating batch space");
}

static int cmp_order(const void *a, const void *b, void *ctx)
{
    const uint32_t *shard_of = ctx;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    if (shard_of[x] != shard_of[y]) return shard_of[x] < shard_of[y] ? -1 : 1;
    return x < y ? -1 : x > y;          /* stable: request order */
}

int sl_producer_put_batch(sl_producer *p, const sl_put_entry *entries, size_t n,
                          sl_put_result *results, size_t *failed_out)
{
    if (failed_out) *failed_out = 0;
    if (!p) return sl__ret(NULL, sl__err(SL_EINVAL, "producer is NULL"));
    sl_stream *s = p->s;
    int rc;
    if (n < 1 || n > SL_BATCH_RECORDS_MAX)
        return sl__ret(p, sl__err(SL_EVALIDATION,
                                  "1 validation error detected: Value '%zu' at "
                                  "'records' failed to satisfy constraint: Member "
                                  "must have length between 1 and %d",
                                  n, SL_BATCH_RECORDS_MAX));
    if (!entries || !results)
        return sl__ret(p, sl__err(SL_EINVAL, "entries or results is NULL"));
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += entries[i].data_len +
                 (entries[i].partition_key ? strlen(entries[i].partition_key) : 0);
    if (total > SL_BATCH_BYTES_MAX)
        return sl__ret(p, sl__err(SL_EVALIDATION,
                                  "request holds %" PRIu64 " bytes of data and "
                                  "partition keys; PutRecords allows %u",
                                  total, SL_BATCH_BYTES_MAX));
    if ((rc = sl__stream_check_writable(s)) != 0 || (rc = scratch(p)) != 0)
        return sl__ret(p, rc);

    size_t failed = 0, ok = 0;
    for (size_t i = 0; i < n; i++) {
        sl_shard *sh;
        int r = prepare(p, &entries[i], &p->pend[i], &sh);
        if (r) {
            result_err(p, &results[i], i, r);
            failed++;
            continue;
        }
        p->pend[i].entry = i;
        p->shard_of[i] = sh->index;
        p->order[ok++] = i;
        results[i].error = 0;
    }
    qsort_r(p->order, ok, sizeof *p->order, cmp_order, p->shard_of);

    /* one append per shard group */
    sl_pending grp[SL_BATCH_RECORDS_MAX];
    for (size_t a = 0; a < ok;) {
        size_t b = a;
        uint32_t si = p->shard_of[p->order[a]];
        while (b < ok && p->shard_of[p->order[b]] == si) {
            grp[b - a] = p->pend[p->order[b]];
            b++;
        }
        sl_shard *sh = s->shards[si];
        size_t done = 0;
        int r = sl__shard_append(sh, grp, b - a, sl__now(s), p->seqs, &done);
        int dr = 0;                     /* ALWAYS: committed is not enough */
        if (done && s->durability == SL_DURABILITY_ALWAYS)
            dr = sl__shard_wait_durable(sh, p->seqs[done - 1]);
        for (size_t k = 0; k < b - a; k++) {
            size_t i = grp[k].entry;
            if (k < done && dr == 0) {
                result_ok(&results[i], sh, p->seqs[k]);
            } else {
                result_err(p, &results[i], i, k < done ? dr : r);
                failed++;
            }
        }
        a = b;
    }
    if (failed_out) *failed_out = failed;
    return 0;
}
