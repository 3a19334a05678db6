/*
** producer.c -- PutRecord and PutRecords: validation, routing, batching.
**
** A producer is one thread's writing context: a reusable MD5 context and
** scratch space for batches, including the per-entry error texts that
** sl_put_result.error_message points at (valid until the producer's next
** call).  Validation follows Kinesis: a bad entry fails alone with a
** ValidationException-style message naming the field and the limit.
** A batch is grouped by shard (request order holds within a shard, in
** linear time, with no sort) and each shard's group is appended under one
** lock acquisition.
**
** Rate limits and injected faults (ratelimit.c) sit between validation and
** the append.  A validated entry first meets the injected put faults, in
** request order (so that SL_FAULT_PUT_NTH counts a batch's entries as the
** caller wrote them); then each shard group meets its shard's write budget
** (sl__rl_write_admit), which fails the entries over it in ENFORCE mode and
** removes them from the group; what an append could not land is un-counted
** (sl__rl_write_undo).  With rate_mode OFF and no fault ever injected, the
** whole cost is two predictable branches per call (and one per entry).
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
    /* batch scratch, SL_BATCH_RECORDS_MAX entries each */
    char (*msgs)[MSG_MAX];            /* per-entry error texts */
    sl_pending *pend;                 /* validated entries, by entry */
    sl_shard **shard_of;
    int32_t *next;                    /* next entry of the same shard */
    sl_pending *grp;                  /* one shard's entries, in order */
    uint64_t *seqs;                   /* sequence number, by entry */
    uint64_t *gseq;                   /* one shard's sequence numbers */
    char (*gmsg)[256];                /* a group's append error text */
    char (*dmsg)[256];                /* a group's sync error text */
    uint8_t (*dig)[16];               /* MD5 of the entry's key, by entry, */
    bool *has_dig;                    /* when computed eight at a time */
    /* grouping by shard without sorting or clearing: a shard's group is
    ** valid in this batch when its stamp is the batch's generation */
    uint32_t *stamp;
    uint16_t *group_of;
    size_t nstamp;
    uint32_t gen;
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
    free(p->next);
    free(p->grp);
    free(p->seqs);
    free(p->gseq);
    free(p->gmsg);
    free(p->dmsg);
    free(p->dig);
    free(p->has_dig);
    free(p->stamp);
    free(p->group_of);
    free(p);
}

/* Validate one entry and route it.  Fills *pd and *shard. */
static int prepare(sl_producer *p, const sl_put_entry *e, sl_pending *pd,
                   sl_shard **shard, const uint8_t *digest)
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
    } else if (sl__nroute(s) == 1) {
        h = (sl_u128){0, 0};          /* one open shard: no need to hash */
    } else if (digest) {
        h = sl__u128_from_be(digest);
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
    r->retry_after_ms = 0;
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

/* A single put's entry meets the injected faults and the shard's write
** budget.  0: it may be appended; else its error (*retry: when it may). */
static int admit_one(sl_stream *s, sl_shard *sh, sl_pending *pd, int64_t now,
                     int64_t *retry)
{
    int rc = sl__fault_put(s, sh, pd);
    if (rc || s->rate_mode == SL_RATE_OFF) return rc;
    sl_put_result r = {0};
    pd->entry = 0;
    if (sl__rl_write_admit(sh, pd, 1, now, &r) == 1) return 0;
    *retry = r.retry_after_ms;
    return r.error;                     /* the text is in sl__errtext() */
}

/* Route and append one entry; a reshard that closed the shard meanwhile
** (SL__RESHARDED) routes it again, on the new map. */
static int put_routed(sl_producer *p, const sl_put_entry *e, sl_pending *pd, sl_shard **sh,
                      uint64_t *seq, int64_t *retry)
{
    sl_stream *s = p->s;
    int rc = prepare(p, e, pd, sh, NULL);
    for (int again = 0; rc == 0; again++) {
        size_t done = 0;
        int64_t now = sl__now(s);
        bool rl = s->rate_mode != SL_RATE_OFF;
        if (SL_UNLIKELY(rl || __atomic_load_n(&s->faults, __ATOMIC_ACQUIRE)))
            rc = admit_one(s, *sh, pd, now, retry);
        if (rc == 0) {
            rc = sl__shard_append(*sh, pd, 1, now, seq, &done);
            if (SL_UNLIKELY(rl) && done == 0) sl__rl_write_undo(*sh, pd, 1);
        }
        if (SL_LIKELY(rc != SL__RESHARDED)) break;
        if (again == 64) {              /* reshards faster than a put: give up */
            rc = sl__err(SL_EIO, "the shard map kept changing under the put");
            break;
        }
        /* route again from the start: with one open shard the key was not
        ** even hashed */
        rc = prepare(p, e, pd, sh, NULL);
    }
    return rc;
}

int sl_producer_put(sl_producer *p, const sl_put_entry *e, sl_put_result *res)
{
    if (!p) return sl__ret(NULL, sl__err(SL_EINVAL, "producer is NULL"));
    sl_stream *s = p->s;
    sl_pending pd;
    sl_shard *sh = NULL;
    uint64_t seq = 0;
    int64_t retry = 0;
    int rc = sl__stream_check_writable(s);
    if (rc == 0) rc = put_routed(p, e, &pd, &sh, &seq, &retry);
    if (rc == 0 && s->durability == SL_DURABILITY_ALWAYS)
        rc = s->jr ? sl__journal_commit(s) : sl__shard_wait_durable(sh, seq);
    if (res) {
        if (rc == 0) result_ok(res, sh, seq);
        else {
            memset(res, 0, sizeof *res);
            res->error = rc;
            snprintf(p->msg1, sizeof p->msg1, "%s", sl__errtext());
            res->error_message = p->msg1;
            res->retry_after_ms = retry;
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
    size_t ns = p->s->nshards;
    if (p->pend && p->nstamp >= ns) return 0;
    if (!p->pend) {
        size_t n = SL_BATCH_RECORDS_MAX;
        char (*msgs)[MSG_MAX] = malloc(n * sizeof *msgs);
        sl_pending *pend = malloc(n * sizeof *pend), *grp = malloc(n * sizeof *grp);
        sl_shard **shard_of = malloc(n * sizeof *shard_of);
        int32_t *next = malloc(n * sizeof *next);
        uint64_t *seqs = malloc(n * sizeof *seqs), *gseq = malloc(n * sizeof *gseq);
        char (*gmsg)[256] = malloc(n * sizeof *gmsg), (*dmsg)[256] = malloc(n * sizeof *dmsg);
        uint8_t(*dig)[16] = malloc(n * sizeof *dig);
        bool *has_dig = malloc(n * sizeof *has_dig);
        if (!msgs || !pend || !grp || !shard_of || !next || !seqs || !gseq || !gmsg || !dmsg ||
            !dig || !has_dig) {
            free(dig);
            free(has_dig);
            free(msgs);
            free(pend);
            free(grp);
            free(shard_of);
            free(next);
            free(seqs);
            free(gseq);
            free(gmsg);
            free(dmsg);
            return sl__err(SL_ENOMEM, "allocating batch space");
        }
        p->gseq = gseq;
        p->gmsg = gmsg;
        p->dmsg = dmsg;
        p->msgs = msgs;
        p->pend = pend;
        p->grp = grp;
        p->shard_of = shard_of;
        p->next = next;
        p->seqs = seqs;
        p->dig = dig;
        p->has_dig = has_dig;
    }
    uint32_t *st = realloc(p->stamp, ns * sizeof *st);
    if (st) p->stamp = st;
    uint16_t *go = realloc(p->group_of, ns * sizeof *go);
    if (go) p->group_of = go;
    if (!st || !go) return sl__err(SL_ENOMEM, "allocating batch space");
    memset(p->stamp + p->nstamp, 0, (ns - p->nstamp) * sizeof *st);
    p->nstamp = ns;
    return 0;
}

/* Give the entries of group `head` that admission failed their message
** (sl__errtext(), set by sl__rl_write_admit), in this producer's storage. */
static void throttled_msgs(sl_producer *p, int32_t head, sl_put_result *results)
{
    const char *text = sl__errtext();
    for (int32_t i = head; i >= 0; i = p->next[i]) {
        if (!results[i].error) continue;
        snprintf(p->msgs[i], MSG_MAX, "%s", text);
        results[i].error_message = p->msgs[i];
    }
}

/* Hash the batch's one-block partition keys in parallel lanes (before they
** are validated: a key that then fails validation only cost its lane).
** Returns whether any digest was computed (p->has_dig says which). */
static bool hash_ahead(sl_producer *p, const sl_put_entry *entries, size_t n)
{
    int lanes = sl__nroute(p->s) > 1 ? sl__md5_lanes() : 0;
    if (!lanes || n < (size_t)lanes) return false;
    const char *keys[16];
    size_t lens[16], at[16], k = 0;
    uint8_t out[16][16];
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        const sl_put_entry *e = &entries[i];
        p->has_dig[i] = false;
        if (!e->partition_key || e->explicit_hash_key) continue;
        size_t len = strnlen(e->partition_key, SL_MD5_LANE_KEY_MAX + 1);
        if (len > SL_MD5_LANE_KEY_MAX) continue;
        keys[k] = e->partition_key;
        lens[k] = len;
        at[k++] = i;
        if (k < (size_t)lanes) continue;
        sl__md5_lanes_run(lanes, keys, lens, out);
        for (size_t j = 0; j < k; j++) {
            memcpy(p->dig[at[j]], out[j], 16);
            p->has_dig[at[j]] = true;
        }
        k = 0;
        any = true;
    }
    return any;                         /* the last few keys: sl__md5 */
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

    /* validate and route every entry; chain each shard's entries in
    ** request order (heads/tails per group, groups in order of first use) */
    size_t failed = 0, ngroups = 0;
    int32_t head[SL_BATCH_RECORDS_MAX], tail[SL_BATCH_RECORDS_MAX];
    if (++p->gen == 0) {                /* wrapped: forget every stamp */
        memset(p->stamp, 0, p->nstamp * sizeof *p->stamp);
        p->gen = 1;
    }
    bool faults = __atomic_load_n(&s->faults, __ATOMIC_ACQUIRE) != NULL;
    bool rl = s->rate_mode != SL_RATE_OFF;
    bool dig = hash_ahead(p, entries, n);
    for (size_t i = 0; i < n; i++) {
        sl_shard *sh;
        int r = prepare(p, &entries[i], &p->pend[i], &sh,
                        dig && p->has_dig[i] ? p->dig[i] : NULL);
        if (SL_UNLIKELY(faults) && r == 0) r = sl__fault_put(s, sh, &p->pend[i]);
        if (r) {
            result_err(p, &results[i], i, r);
            failed++;
            continue;
        }
        p->pend[i].entry = i;
        p->shard_of[i] = sh;
        p->next[i] = -1;
        results[i].error = 0;
        uint32_t si = sh->index;
        if (SL_UNLIKELY(si >= p->nstamp) && (r = scratch(p)) != 0) {
            result_err(p, &results[i], i, r);   /* a reshard made shards since */
            failed++;
            continue;
        }
        if (p->stamp[si] != p->gen) {
            p->stamp[si] = p->gen;
            p->group_of[si] = (uint16_t)ngroups;
            head[ngroups] = tail[ngroups] = (int32_t)i;
            ngroups++;
        } else {
            uint16_t g = p->group_of[si];
            p->next[tail[g]] = (int32_t)i;
            tail[g] = (int32_t)i;
        }
    }

    /* one append per shard group, one clock read per batch */
    int64_t now = ngroups ? sl__now(s) : 0;
    uint64_t glast[SL_BATCH_RECORDS_MAX];
    int grc[SL_BATCH_RECORDS_MAX];
    size_t gdone[SL_BATCH_RECORDS_MAX], nsync = 0;
    for (size_t g = 0; g < ngroups; g++) {
        size_t k = 0;
        for (int32_t i = head[g]; i >= 0; i = p->next[i]) p->grp[k++] = p->pend[i];
        sl_shard *sh = p->shard_of[head[g]];
        if (SL_UNLIKELY(rl)) {
            /* entries over the budget leave the group, failed (ENFORCE) */
            size_t m = sl__rl_write_admit(sh, p->grp, k, now, results);
            if (m < k) throttled_msgs(p, head[g], results);
            k = m;
        }
        grc[g] = 0;
        gdone[g] = 0;
        if (SL_LIKELY(k)) grc[g] = sl__shard_append(sh, p->grp, k, now, p->gseq, &gdone[g]);
        if (SL_UNLIKELY(rl) && gdone[g] < k)
            sl__rl_write_undo(sh, p->grp + gdone[g], k - gdone[g]);
        for (size_t j = 0; j < k; j++) p->seqs[p->grp[j].entry] = j < gdone[g] ? p->gseq[j] : 0;
        if (SL_UNLIKELY(grc[g] == SL__RESHARDED)) {
            /* closed by a reshard since routed: each entry again, alone */
            for (int32_t i = head[g]; i >= 0; i = p->next[i]) {
                if (SL_UNLIKELY(rl) && results[i].error) continue;
                sl_put_result *r = &results[i];
                if (sl_producer_put(p, &entries[i], r) != 0) {
                    snprintf(p->msgs[i], MSG_MAX, "%s", r->error_message);
                    r->error_message = p->msgs[i];
                }
            }
            continue;
        }
        if (grc[g]) snprintf(p->gmsg[g], sizeof p->gmsg[g], "%s", sl__errtext());
        if (gdone[g]) glast[g] = p->gseq[gdone[g] - 1];
    }
    /* ALWAYS: committed is not enough.  With the journal, one commit covers
    ** every shard the batch touched; without it, each shard is synced. */
    int drc[SL_BATCH_RECORDS_MAX];
    if (s->durability == SL_DURABILITY_ALWAYS) {
        int jrc = 0;
        bool any = false;
        for (size_t g = 0; g < ngroups; g++) any |= gdone[g] != 0;
        if (any && s->jr) {
            jrc = sl__journal_commit(s);
            if (jrc) snprintf(p->dmsg[0], sizeof p->dmsg[0], "%s", sl__errtext());
        }
        for (size_t g = 0; g < ngroups; g++) {
            if (!gdone[g]) continue;
            if (s->jr) {
                drc[nsync] = jrc;
                if (jrc && nsync) memcpy(p->dmsg[nsync], p->dmsg[0], sizeof p->dmsg[0]);
            } else if ((drc[nsync] = sl__shard_wait_durable(p->shard_of[head[g]], glast[g])) != 0) {
                snprintf(p->dmsg[nsync], sizeof p->dmsg[nsync], "%s", sl__errtext());
            }
            nsync++;
        }
    }
    for (size_t g = 0, d = 0; g < ngroups; g++) {
        int dr = 0;
        const char *dm = "";
        if (s->durability == SL_DURABILITY_ALWAYS && gdone[g]) {
            dr = drc[d];
            dm = p->dmsg[d];
            d++;
        }
        size_t j = 0;                   /* the entry's place in the append */
        if (SL_UNLIKELY(grc[g] == SL__RESHARDED)) {     /* put one by one above */
            for (int32_t i = head[g]; i >= 0; i = p->next[i]) failed += results[i].error != 0;
            continue;
        }
        for (int32_t i = head[g]; i >= 0; i = p->next[i]) {
            if (SL_UNLIKELY(rl) && results[i].error) {
                failed++;               /* failed at admission */
                continue;
            }
            bool landed = j++ < gdone[g];
            if (landed && dr == 0) {
                result_ok(&results[i], p->shard_of[i], p->seqs[i]);
            } else {
                sl__err(landed ? dr : grc[g], "%s", landed ? dm : p->gmsg[g]);
                result_err(p, &results[i], (size_t)i, landed ? dr : grc[g]);
                failed++;
            }
        }
    }
    if (failed_out) *failed_out = failed;
    return 0;
}
