/*
** ratelimit.c -- token buckets, per-shard rate accounting, fault injection.
**
** BUCKETS hold milli-tokens (tokens x 1000) so that refill needs no
** fractions: a bucket of `rate` tokens per second gains exactly `rate`
** milli-tokens per millisecond of the stream's clock, up to its capacity of
** one second's worth (rate x 1000).  A clock that steps backwards refills
** nothing: the bucket keeps the latest time it saw (at_ms) and refills again
** only once the clock passes it; waits then include the time until it does.
** A cost is taken when the bucket holds it, or when the bucket is full: a
** single cost larger than the whole bucket then leaves it in debt (milli < 0)
** and the next cost waits until the debt is repaid.  When a cost does not
** fit, the wait is ceil(missing / rate) ms, and for a cost larger than the
** capacity the time until the bucket is full (when the full-bucket rule lets
** it through).  Rate 0 means unlimited.  Rates and costs are clamped to 2^40
** so that the arithmetic cannot overflow; a rate that high is unlimited in
** practice.
**
** RESOLVED LIMITS (sl__limits_resolve): zero fields take the Kinesis values
** (writes 1000 records/s and 1 MiB/s per shard; shared reads 2000 records/s,
** 5 calls/s and 2 MiB/s per shard; dedicated reads 2 MiB/s; a 5000 ms
** penalty after a read of SL_GET_BYTES_MAX bytes; 20 consumers).
**
** WRITES (sl__rl_write_admit): each entry of a shard's group, in request
** order, takes 1 record and data + key bytes from the shard's two write
** buckets, both or neither.  An entry that does not fit is counted in
** put_throttled; ENFORCE fails it (SL_ETHROTTLED, retry_after_ms = the
** longer of the two waits) and ACCOUNT lets it land WITHOUT charging the
** buckets, so that ACCOUNT counts exactly the entries ENFORCE would fail
** for the same puts at the same times (a charged over-budget entry would
** drive the buckets ever deeper into debt and count nearly everything).
** Entries decide alone: a small entry after a throttled large one may land.
**
** SHARED READS (sl__rl_read_begin/end, sl_rbudget): a read may start when a
** call token is left, no penalty runs and the record and byte buckets are
** not in debt (milli >= 0; an exactly empty bucket does not block, so a
** read of 4000 records at 2000/s blocks reads for exactly 1000 ms).  The
** read takes its call token when it starts (in ACCOUNT mode also when over
** the budget, possibly into debt) and is charged what it returned when it
** ends, possibly into debt: a 10 MiB read is allowed and takes five seconds
** to repay.  A read that returned SL_GET_BYTES_MAX bytes (the per-call cap)
** starts read_penalty_ms in which every shared read is throttled.  A
** dedicated budget has only a byte bucket and no penalty.
**
** COUNTERS are kept in every mode but OFF.  iterator_age_ms is the
** millis_behind_latest of the shard's latest read, shared or dedicated.
**
** FAULTS (sl_fault_inject): at most MAX_FAULTS per stream handle, kept in
** one struct sl_faults allocated at the first injection, published with a
** release store (the append path tests s->faults with one atomic load) and
** freed only when the stream closes.  Every field is guarded by fault_mu.
** Put entries that passed validation are numbered in request order (the
** producer asks sl__fault_put before it groups a batch by shard) and reads
** are numbered in the order they reach sl__fault_read; a NTH fault fires at
** number (count at injection + nth) and is then removed; a PUT_KEY fault
** stays until sl_fault_clear.  Nothing is counted while no fault is set.
** An entry or read hit by a fault is not charged to any budget and is not
** counted in the shard counters.
**
** Locks: rl->mu and fault_mu are leaves: nothing else is taken under them.
*/
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define RATE_MAX (1ull << 40)         /* tokens/s; higher is clamped */
#define COST_MAX (1ull << 40)         /* tokens per take or charge */
#define MILLI_FLOOR (INT64_MIN / 4)   /* debt never goes below this */
#define MAX_FAULTS 64

/* ---- limits --------------------------------------------------------------- */

#define DEF_WRITE_RECORDS 1000u
#define DEF_WRITE_BYTES (1ull << 20)
#define DEF_READ_RECORDS 2000u
#define DEF_READ_CALLS 5u
#define DEF_READ_BYTES (2ull << 20)
#define DEF_DEDICATED_BYTES (2ull << 20)
#define DEF_PENALTY_MS 5000u
#define DEF_MAX_CONSUMERS 20u

void sl__limits_resolve(sl_limits *out, const sl_limits *in)
{
    sl_limits l = in ? *in : (sl_limits)SL_LIMITS_INIT;
    l.version = SL_LIMITS_VERSION;
    if (!l.write_records_per_s) l.write_records_per_s = DEF_WRITE_RECORDS;
    if (!l.write_bytes_per_s) l.write_bytes_per_s = DEF_WRITE_BYTES;
    if (!l.read_records_per_s) l.read_records_per_s = DEF_READ_RECORDS;
    if (!l.read_calls_per_s) l.read_calls_per_s = DEF_READ_CALLS;
    if (!l.read_bytes_per_s) l.read_bytes_per_s = DEF_READ_BYTES;
    if (!l.dedicated_bytes_per_s) l.dedicated_bytes_per_s = DEF_DEDICATED_BYTES;
    if (!l.read_penalty_ms) l.read_penalty_ms = DEF_PENALTY_MS;
    if (!l.max_consumers) l.max_consumers = DEF_MAX_CONSUMERS;
    if (!l.on_demand_window_s) l.on_demand_window_s = 60;
    *out = l;
}

/* ---- token buckets -------------------------------------------------------- */

static int64_t cap_of(const sl_bucket *b) { return (int64_t)b->rate * 1000; }

static int64_t milli_of(uint64_t cost)
{
    return (int64_t)(cost > COST_MAX ? COST_MAX : cost) * 1000;
}

void sl__bucket_init(sl_bucket *b, uint64_t rate, int64_t now_ms)
{
    b->rate = rate > RATE_MAX ? RATE_MAX : rate;
    b->milli = cap_of(b);
    b->at_ms = now_ms;
}

/* The level at now_ms, without changing the bucket. */
static int64_t level(const sl_bucket *b, int64_t now_ms)
{
    int64_t cap = cap_of(b);
    if (now_ms <= b->at_ms || b->milli >= cap) return b->milli;
    uint64_t dt = (uint64_t)now_ms - (uint64_t)b->at_ms;  /* no signed overflow */
    uint64_t need = (uint64_t)(cap - b->milli);
    if (dt >= (need + b->rate - 1) / b->rate) return cap;
    return b->milli + (int64_t)(dt * b->rate);
}

void sl__bucket_refill(sl_bucket *b, int64_t now_ms)
{
    if (b->rate == 0 || now_ms <= b->at_ms) return;   /* backwards: nothing */
    b->milli = level(b, now_ms);
    b->at_ms = now_ms;
}

/* ms from now_ms until the level reaches `target` milli-tokens. */
static int64_t wait_level(const sl_bucket *b, int64_t target, int64_t now_ms)
{
    if (b->rate == 0) return 0;
    int64_t lv = level(b, now_ms);
    if (lv >= target) return 0;
    /* a clock behind the bucket's time first has to catch up with it */
    uint64_t behind = b->at_ms > now_ms ? (uint64_t)b->at_ms - (uint64_t)now_ms : 0;
    uint64_t d = (uint64_t)(target - lv);
    uint64_t w = behind + (d + b->rate - 1) / b->rate;
    return w > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)w;
}

/* May `c` milli-tokens be taken now (after a refill)? */
static bool fits(const sl_bucket *b, int64_t c)
{
    return b->rate == 0 || b->milli >= c || b->milli >= cap_of(b);
}

static void take_milli(sl_bucket *b, int64_t c)
{
    if (b->rate == 0) return;
    b->milli = b->milli - c < MILLI_FLOOR ? MILLI_FLOOR : b->milli - c;
}

int64_t sl__bucket_wait(sl_bucket *b, uint64_t cost, int64_t now_ms)
{
    if (b->rate == 0) return 0;
    int64_t c = milli_of(cost), cap = cap_of(b);
    /* a cost above the capacity goes through once the bucket is full */
    return wait_level(b, c < cap ? c : cap, now_ms);
}

bool sl__bucket_take(sl_bucket *b, uint64_t cost, int64_t now_ms, int64_t *wait_ms)
{
    if (b->rate == 0) return true;
    sl__bucket_refill(b, now_ms);
    int64_t c = milli_of(cost);
    if (fits(b, c)) {
        take_milli(b, c);
        return true;
    }
    if (wait_ms) *wait_ms = sl__bucket_wait(b, cost, now_ms);
    return false;
}

void sl__bucket_charge(sl_bucket *b, uint64_t cost, int64_t now_ms)
{
    if (b->rate == 0) return;
    sl__bucket_refill(b, now_ms);
    take_milli(b, milli_of(cost));
}

/* Give back what a take took (the record did not land), up to full. */
static void refund(sl_bucket *b, uint64_t cost)
{
    if (b->rate == 0) return;
    int64_t cap = cap_of(b), m = b->milli + milli_of(cost);
    b->milli = m > cap ? cap : m;
}

/* ---- read budgets --------------------------------------------------------- */

void sl__rbudget_init(sl_rbudget *b, const sl_stream *s, bool dedicated, int64_t now_ms)
{
    const sl_limits *l = &s->limits;
    if (dedicated) {
        sl__bucket_init(&b->calls, 0, now_ms);
        sl__bucket_init(&b->recs, 0, now_ms);
        sl__bucket_init(&b->bytes, l->dedicated_bytes_per_s, now_ms);
        b->penalty_ms = 0;
    } else {
        sl__bucket_init(&b->calls, l->read_calls_per_s, now_ms);
        sl__bucket_init(&b->recs, l->read_records_per_s, now_ms);
        sl__bucket_init(&b->bytes, l->read_bytes_per_s, now_ms);
        b->penalty_ms = l->read_penalty_ms;
    }
    b->penalty_until = 0;
}

int64_t sl__rbudget_wait(sl_rbudget *b, int64_t now_ms)
{
    int64_t w = b->penalty_until > now_ms ? b->penalty_until - now_ms : 0;
    int64_t x = sl__bucket_wait(&b->calls, 1, now_ms);
    if (x > w) w = x;
    if ((x = wait_level(&b->recs, 0, now_ms)) > w) w = x;      /* out of debt */
    if ((x = wait_level(&b->bytes, 0, now_ms)) > w) w = x;
    return w;
}

void sl__rbudget_begin(sl_rbudget *b, int64_t now_ms)
{
    sl__bucket_charge(&b->calls, 1, now_ms);
}

void sl__rbudget_end(sl_rbudget *b, int64_t now_ms, uint64_t recs, uint64_t bytes)
{
    sl__bucket_charge(&b->recs, recs, now_ms);
    sl__bucket_charge(&b->bytes, bytes, now_ms);
    if (bytes >= SL_GET_BYTES_MAX && b->penalty_ms)
        b->penalty_until = now_ms + (int64_t)b->penalty_ms;
}

/* ---- per-shard state ------------------------------------------------------ */

int sl__rl_init(sl_shard *sh)
{
    sl_stream *s = sh->s;
    size_t sz = (sizeof(sl_shard_rl) + 63) & ~(size_t)63;
    sl_shard_rl *rl = aligned_alloc(64, sz);
    if (!rl) return sl__err(SL_ENOMEM, "allocating the rate state of %s", sh->id);
    memset(rl, 0, sz);
    pthread_mutex_init(&rl->mu, NULL);
    int64_t now = sl__now(s);
    sl__bucket_init(&rl->wrecs, s->limits.write_records_per_s, now);
    sl__bucket_init(&rl->wbytes, s->limits.write_bytes_per_s, now);
    sl__rbudget_init(&rl->shared, s, false, now);
    sh->rl = rl;
    return 0;
}

void sl__rl_destroy(sl_shard *sh)
{
    if (!sh->rl) return;
    pthread_mutex_destroy(&sh->rl->mu);
    free(sh->rl);
    sh->rl = NULL;
}

/* Close the seconds before `sec` of the offered-load count (caller holds
** rl->mu): a whole second over capacity extends the streak, any other
** (an idle one included) ends it. */
static void od_roll(sl_stream *s, sl_shard_rl *rl, int64_t sec)
{
    if (sec <= rl->od_sec) return;
    bool hot = rl->od_recs > s->limits.write_records_per_s ||
               rl->od_bytes > s->limits.write_bytes_per_s;
    rl->c.hot_seconds = hot && sec == rl->od_sec + 1 ? rl->c.hot_seconds + 1 : 0;
    rl->od_sec = sec;
    rl->od_recs = rl->od_bytes = 0;
}

static int64_t sec_of(int64_t ms) { return ms >= 0 ? ms / 1000 : (ms - 999) / 1000; }

uint32_t sl__rl_hot_seconds(sl_shard *sh, int64_t now_ms)
{
    sl_shard_rl *rl = sh->rl;
    pthread_mutex_lock(&rl->mu);
    od_roll(sh->s, rl, sec_of(now_ms));
    uint32_t h = rl->c.hot_seconds;
    pthread_mutex_unlock(&rl->mu);
    return h;
}

size_t sl__rl_write_admit(sl_shard *sh, sl_pending *recs, size_t n, int64_t now_ms,
                          sl_put_result *results)
{
    sl_stream *s = sh->s;
    sl_shard_rl *rl = sh->rl;
    if (s->rate_mode == SL_RATE_OFF) return n;
    bool enforce = s->rate_mode == SL_RATE_ENFORCE;
    size_t k = 0, failed = 0;
    pthread_mutex_lock(&rl->mu);
    sl__bucket_refill(&rl->wrecs, now_ms);
    sl__bucket_refill(&rl->wbytes, now_ms);
    od_roll(s, rl, sec_of(now_ms));
    for (size_t i = 0; i < n; i++) {
        uint64_t cost = (uint64_t)recs[i].klen + recs[i].dlen;
        rl->od_recs++;                  /* offered, whatever happens to it */
        rl->od_bytes += cost;
        int64_t cb = milli_of(cost);
        bool ok = fits(&rl->wrecs, 1000) && fits(&rl->wbytes, cb);
        if (ok) {
            take_milli(&rl->wrecs, 1000);
            take_milli(&rl->wbytes, cb);
        } else {
            rl->c.put_throttled++;
        }
        if (ok || !enforce) {
            rl->c.records_in++;
            rl->c.bytes_in += cost;
            recs[k++] = recs[i];
            continue;
        }
        int64_t w = sl__bucket_wait(&rl->wrecs, 1, now_ms);
        int64_t wb = sl__bucket_wait(&rl->wbytes, cost, now_ms);
        sl_put_result *r = &results[recs[i].entry];
        memset(r, 0, sizeof *r);
        r->error = SL_ETHROTTLED;
        r->error_message = sl_strerror(SL_ETHROTTLED);
        r->retry_after_ms = wb > w ? wb : w;
        failed++;
    }
    pthread_mutex_unlock(&rl->mu);
    if (failed)
        sl__err(SL_ETHROTTLED, "Rate exceeded for shard %s in stream %s.", sh->id,
                s->man.name);
    return k;
}

void sl__rl_write_undo(sl_shard *sh, const sl_pending *recs, size_t n)
{
    sl_shard_rl *rl = sh->rl;
    if (sh->s->rate_mode == SL_RATE_OFF || n == 0) return;
    pthread_mutex_lock(&rl->mu);
    for (size_t i = 0; i < n; i++) {
        uint64_t cost = (uint64_t)recs[i].klen + recs[i].dlen;
        rl->c.records_in--;
        rl->c.bytes_in -= cost;
        /* ACCOUNT may have let it through uncharged; then this gives back
        ** a little more than was taken, within the capacity */
        refund(&rl->wrecs, 1);
        refund(&rl->wbytes, cost);
    }
    pthread_mutex_unlock(&rl->mu);
}

int sl__rl_read_begin(sl_shard *sh, int64_t now_ms, int64_t *retry_ms, bool *over)
{
    sl_stream *s = sh->s;
    sl_shard_rl *rl = sh->rl;
    *over = false;
    if (s->rate_mode == SL_RATE_OFF) return 0;
    pthread_mutex_lock(&rl->mu);
    int64_t w = sl__rbudget_wait(&rl->shared, now_ms);
    if (w > 0) {
        *over = true;
        rl->c.read_throttled++;
        if (s->rate_mode == SL_RATE_ENFORCE) {
            pthread_mutex_unlock(&rl->mu);
            *retry_ms = w;
            return sl__err(SL_ETHROTTLED, "Rate exceeded for Shard - %s in stream %s.",
                           sh->id, s->man.name);
        }
    }
    /* an ACCOUNT-mode read over the budget is counted, not charged (as
    ** writes): read_throttled then equals what ENFORCE would refuse */
    if (!*over) sl__rbudget_begin(&rl->shared, now_ms);
    rl->c.reads++;
    pthread_mutex_unlock(&rl->mu);
    return 0;
}

int64_t sl__rl_read_wait(sl_shard *sh, int64_t now_ms)
{
    if (sh->s->rate_mode == SL_RATE_OFF) return 0;
    pthread_mutex_lock(&sh->rl->mu);
    int64_t w = sl__rbudget_wait(&sh->rl->shared, now_ms);
    pthread_mutex_unlock(&sh->rl->mu);
    return w;
}

void sl__rl_read_end(sl_shard *sh, int64_t now_ms, uint64_t recs, uint64_t bytes,
                     int64_t behind_ms, bool over)
{
    sl_shard_rl *rl = sh->rl;
    if (sh->s->rate_mode == SL_RATE_OFF) return;
    pthread_mutex_lock(&rl->mu);
    if (!over) sl__rbudget_end(&rl->shared, now_ms, recs, bytes);
    rl->c.records_out += recs;
    rl->c.bytes_out += bytes;
    rl->c.iterator_age_ms = behind_ms;
    pthread_mutex_unlock(&rl->mu);
}

void sl__rl_count_out(sl_shard *sh, uint64_t recs, uint64_t bytes, int64_t behind_ms)
{
    sl_shard_rl *rl = sh->rl;
    if (sh->s->rate_mode == SL_RATE_OFF) return;
    pthread_mutex_lock(&rl->mu);
    rl->c.records_out += recs;
    rl->c.bytes_out += bytes;
    rl->c.iterator_age_ms = behind_ms;
    pthread_mutex_unlock(&rl->mu);
}

int sl_shard_counters_get(sl_stream *s, const char *shard_id, sl_shard_counters *out)
{
    if (!s || !out || !shard_id)
        return sl__ret(s, sl__err(SL_EINVAL, "stream, shard_id or out is NULL"));
    sl_shard *sh = sl__stream_shard_by_id(s, shard_id);
    if (!sh)
        return sl__ret(s, sl__err(SL_ENOTFOUND, "Shard %.64s in stream %s not found.",
                                  shard_id, s->man.name));
    pthread_mutex_lock(&sh->rl->mu);
    *out = sh->rl->c;
    pthread_mutex_unlock(&sh->rl->mu);
    return 0;
}

/* ---- fault injection ------------------------------------------------------ */

typedef struct fault {
    sl_fault_kind kind;
    uint64_t at;                      /* NTH: the number that fires */
    char *key;                        /* PUT_KEY */
    size_t klen;
    int error;
} fault;

struct sl_faults {
    size_t n;
    fault v[MAX_FAULTS];
    uint64_t puts, reads;             /* numbered while a fault is set */
};

static const char *kind_name(sl_fault_kind k)
{
    switch (k) {
    case SL_FAULT_PUT_NTH: return "SL_FAULT_PUT_NTH";
    case SL_FAULT_PUT_KEY: return "SL_FAULT_PUT_KEY";
    case SL_FAULT_READ_NTH: return "SL_FAULT_READ_NTH";
    }
    return "?";
}

static void fault_remove(struct sl_faults *f, size_t i)
{
    free(f->v[i].key);
    memmove(&f->v[i], &f->v[i + 1], (f->n - i - 1) * sizeof f->v[0]);
    f->n--;
}

int sl_fault_inject(sl_stream *s, const sl_fault *f)
{
    if (!s || !f) return sl__ret(s, sl__err(SL_EINVAL, "stream or fault is NULL"));
    if (f->version != SL_FAULT_VERSION)
        return sl__ret(s, sl__err(SL_EINVAL, "sl_fault.version is %u; this library "
                                             "knows version %u",
                                  f->version, SL_FAULT_VERSION));
    if ((int)f->kind < SL_FAULT_PUT_NTH || (int)f->kind > SL_FAULT_READ_NTH)
        return sl__ret(s, sl__err(SL_EINVAL, "sl_fault.kind %d is not a fault kind",
                                  (int)f->kind));
    if (f->kind != SL_FAULT_PUT_KEY && f->nth < 1)
        return sl__ret(s, sl__err(SL_EINVAL, "sl_fault.nth must be at least 1 "
                                             "(1: the very next one)"));
    size_t klen = 0;
    if (f->kind == SL_FAULT_PUT_KEY) {
        if (!f->partition_key)
            return sl__ret(s, sl__err(SL_EINVAL, "SL_FAULT_PUT_KEY needs a partition_key"));
        int rc = sl__partition_key_check(f->partition_key, &klen);
        if (rc) return sl__ret(s, sl__err(SL_EINVAL, "sl_fault.partition_key: %s",
                                          sl__errtext()));
    }
    if (f->error > 0 || (f->error < 0 && !sl_error_kinesis_name(f->error)))
        return sl__ret(s, sl__err(SL_EINVAL, "sl_fault.error %d is not an SL_E... code",
                                  f->error));
    char *key = NULL;
    if (klen && !(key = malloc(klen + 1)))
        return sl__ret(s, sl__err(SL_ENOMEM, "copying a fault's partition key"));
    if (key) memcpy(key, f->partition_key, klen + 1);
    int rc = 0;
    pthread_mutex_lock(&s->fault_mu);
    struct sl_faults *fs = s->faults;
    if (!fs) {
        if ((fs = calloc(1, sizeof *fs)) != NULL)
            __atomic_store_n(&s->faults, fs, __ATOMIC_RELEASE);
        else
            rc = sl__err(SL_ENOMEM, "allocating faults");
    }
    if (rc == 0 && fs->n >= MAX_FAULTS)
        rc = sl__err(SL_ELIMIT, "stream '%s' already has %d injected faults; "
                                "sl_fault_clear removes them",
                     s->man.name, MAX_FAULTS);
    if (rc == 0) {
        fault *x = &fs->v[fs->n++];
        x->kind = f->kind;
        x->error = f->error ? f->error : SL_ETHROTTLED;
        x->key = key;
        x->klen = klen;
        uint64_t base = f->kind == SL_FAULT_READ_NTH ? fs->reads : fs->puts;
        x->at = base + f->nth < base ? UINT64_MAX : base + f->nth;
        key = NULL;
    }
    pthread_mutex_unlock(&s->fault_mu);
    free(key);
    return sl__ret(s, rc);
}

void sl_fault_clear(sl_stream *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->fault_mu);
    struct sl_faults *f = s->faults;
    if (f) {
        for (size_t i = 0; i < f->n; i++) free(f->v[i].key);
        f->n = 0;
    }
    pthread_mutex_unlock(&s->fault_mu);
}

void sl__faults_free(sl_stream *s)
{
    struct sl_faults *f = s->faults;
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) free(f->v[i].key);
    free(f);
    s->faults = NULL;
}

/* The message of an entry or read hit by a fault of kind k. */
static int fault_err(sl_stream *s, const sl_shard *sh, int code, sl_fault_kind k)
{
    if (code == SL_ETHROTTLED && sh)
        return sl__err(code, "Rate exceeded for shard %s in stream %s. (injected by "
                             "sl_fault_inject: %s)",
                       sh->id, s->man.name, kind_name(k));
    return sl__err(code, "%s in stream %s (injected by sl_fault_inject: %s)",
                   sl_strerror(code), s->man.name, kind_name(k));
}

int sl__fault_put(sl_stream *s, const sl_shard *sh, const sl_pending *pd)
{
    struct sl_faults *f = __atomic_load_n(&s->faults, __ATOMIC_ACQUIRE);
    if (!f) return 0;
    int code = 0;
    sl_fault_kind kind = SL_FAULT_PUT_NTH;
    pthread_mutex_lock(&s->fault_mu);
    if (f->n == 0) {
        pthread_mutex_unlock(&s->fault_mu);
        return 0;
    }
    uint64_t no = ++f->puts;
    for (size_t i = 0; i < f->n;) {
        fault *x = &f->v[i];
        if (x->kind == SL_FAULT_PUT_NTH && x->at == no) {
            if (!code) code = x->error;
            fault_remove(f, i);       /* one-shot; every fault aimed here */
            continue;
        }
        i++;
    }
    for (size_t i = 0; !code && i < f->n; i++) {
        fault *x = &f->v[i];
        if (x->kind == SL_FAULT_PUT_KEY && x->klen == pd->klen &&
            memcmp(x->key, pd->key, pd->klen) == 0) {
            code = x->error;
            kind = SL_FAULT_PUT_KEY;
        }
    }
    pthread_mutex_unlock(&s->fault_mu);
    return code ? fault_err(s, sh, code, kind) : 0;
}

int sl__fault_read(sl_stream *s)
{
    struct sl_faults *f = __atomic_load_n(&s->faults, __ATOMIC_ACQUIRE);
    if (!f) return 0;
    int code = 0;
    pthread_mutex_lock(&s->fault_mu);
    if (f->n == 0) {
        pthread_mutex_unlock(&s->fault_mu);
        return 0;
    }
    uint64_t no = ++f->reads;
    for (size_t i = 0; i < f->n;) {
        fault *x = &f->v[i];
        if (x->kind == SL_FAULT_READ_NTH && x->at == no) {
            if (!code) code = x->error;
            fault_remove(f, i);
            continue;
        }
        i++;
    }
    pthread_mutex_unlock(&s->fault_mu);
    return code ? fault_err(s, NULL, code, SL_FAULT_READ_NTH) : 0;
}
