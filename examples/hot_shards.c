/*
** hot_shards.c -- why "one hot partition key" hurts, and what fixes it.
**
** A 4-shard stream takes 1,600 events of 400 bytes a second -- well within
** four shards' 4,000 records/s -- on a virtual clock, with rate limits in
** ACCOUNT mode (nothing is refused; what Kinesis would have throttled is
** counted).  Three runs of 10 simulated seconds:
**   1. bad keys: 70 % of the events carry one device id as partition key;
**   2. the same, after splitting the hot shard in two;
**   3. good keys: the hot device's events spread over 8 sub-keys
**      ("device-0042#3"), the others unchanged.
** Each prints records/s and throttles per shard.  Splitting adds capacity
** to the key range, but one key still lands in one shard: only better
** keys spread a single hot source.
**
**   make examples && build/default/examples/hot_shards
*/
#include <shardlog.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RATE 1600                    /* events a second */
#define SECONDS 10

static void die(int rc, const void *h, const char *what)
{
    fprintf(stderr, "hot_shards: %s: %s (%s)\n", what, sl_strerror(rc), sl_errmsg(h));
    exit(1);
}
#define CHECK(call, h, what)                                                   \
    do {                                                                       \
        int rc_ = (call);                                                      \
        if (rc_ < 0) die(rc_, h, what);                                        \
    } while (0)

/* Run SECONDS of traffic; print per open shard what it took. */
static void run(sl_stream *s, sl_vclock *vc, int good_keys, const char *title)
{
    sl_shard_list *l;
    CHECK(sl_stream_list_shards(&l, s), s, "sl_stream_list_shards");
    uint64_t rec0[64] = {0}, thr0[64] = {0};
    for (size_t i = 0; i < l->count && i < 64; i++) {
        sl_shard_counters c;
        CHECK(sl_shard_counters_get(s, l->shards[i].shard_id, &c), s, "counters");
        rec0[i] = c.records_in;
        thr0[i] = c.put_throttled;
    }
    sl_producer *p;
    CHECK(sl_producer_open(&p, s), s, "sl_producer_open");
    char data[400];
    memset(data, '.', sizeof data);
    uint64_t x = 42;
    for (int sec = 0; sec < SECONDS; sec++) {
        for (int i = 0; i < RATE; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            char key[32];
            if (x % 10 < 7)              /* the hot device */
                snprintf(key, sizeof key, good_keys ? "device-0042#%d" : "device-0042",
                         (int)(x >> 20) % 8);
            else
                snprintf(key, sizeof key, "device-%04d", (int)((x >> 8) % 1000));
            CHECK(sl_put(p, key, data, sizeof data, NULL), p, "sl_put");
            if (i % (RATE / 10) == RATE / 10 - 1) sl_vclock_advance(vc, 100);
        }
    }
    sl_producer_close(p);
    printf("%s\n%-22s %10s %12s\n", title, "shard", "rec/s", "throttled/s");
    for (size_t i = 0; i < l->count && i < 64; i++) {
        if (!l->shards[i].open) continue;
        sl_shard_counters c;
        CHECK(sl_shard_counters_get(s, l->shards[i].shard_id, &c), s, "counters");
        double r = (double)(c.records_in - rec0[i]) / SECONDS;
        double t = (double)(c.put_throttled - thr0[i]) / SECONDS;
        printf("%-22s %10.0f %12.0f%s\n", l->shards[i].shard_id, r, t,
               t > 0 ? "   <- hot: Kinesis would throttle" : "");
    }
    printf("\n");
    sl_shard_list_free(l);
}

/* The open shard with the most records put so far. */
static void hottest(sl_stream *s, char id[SL_SHARD_ID_LEN + 1])
{
    sl_shard_list *l;
    CHECK(sl_stream_list_shards(&l, s), s, "sl_stream_list_shards");
    uint64_t best = 0;
    for (size_t i = 0; i < l->count; i++) {
        sl_shard_counters c;
        CHECK(sl_shard_counters_get(s, l->shards[i].shard_id, &c), s, "counters");
        if (l->shards[i].open && c.records_in >= best) {
            best = c.records_in;
            memcpy(id, l->shards[i].shard_id, SL_SHARD_ID_LEN + 1);
        }
    }
    sl_shard_list_free(l);
}

int main(int argc, char **argv)
{
    char tmpl[] = "/tmp/shardlog-hot-XXXXXX";
    const char *root = argc > 1 ? argv[1] : mkdtemp(tmpl);
    if (!root) {
        perror("mkdtemp");
        return 1;
    }
    sl_vclock *vc;
    CHECK(sl_vclock_new(&vc, 1767225600000LL), NULL, "sl_vclock_new");
    sl_stream_config cfg = SL_STREAM_CONFIG_INIT;
    cfg.name = "devices";
    cfg.shard_count = 4;
    cfg.durability = SL_DURABILITY_NONE;
    sl_open_opts opts = SL_OPEN_OPTS_INIT;
    opts.clock = sl_vclock_clock(vc);
    opts.rate_mode = SL_RATE_ACCOUNT;     /* count what Kinesis would throttle */
    sl_stream *s;
    CHECK(sl_stream_create(&s, root, &cfg, &opts), NULL, "sl_stream_create");

    printf("%d events/s of 400 B into 4 shards (capacity 1,000 records/s and 1 MiB/s "
           "each), %d s per run.\n\n", RATE, SECONDS);
    run(s, vc, 0, "1. Bad keys: 70 % of the events use partition key \"device-0042\".");

    char hot[SL_SHARD_ID_LEN + 1];
    hottest(s, hot);
    sl_shard_list *l;
    CHECK(sl_stream_list_shards(&l, s), s, "sl_stream_list_shards");
    uint8_t a[16], b[16];
    for (size_t i = 0; i < l->count; i++) {
        if (strcmp(l->shards[i].shard_id, hot)) continue;
        CHECK(sl_hash_key_parse(a, l->shards[i].starting_hash_key), s, "parse");
        CHECK(sl_hash_key_parse(b, l->shards[i].ending_hash_key), s, "parse");
    }
    sl_shard_list_free(l);
    /* the middle of the hot shard's range: (a + b + 1) / 2, byte-wise */
    uint8_t mid[16];
    unsigned carry = 1;
    for (int i = 15; i >= 0; i--) {
        unsigned v = (unsigned)a[i] + b[i] + carry;
        mid[i] = (uint8_t)v;
        carry = v >> 8;
    }
    for (int i = 0; i < 16; i++) {      /* halve, the carry as the top bit */
        unsigned v = (carry << 8) | mid[i];
        mid[i] = (uint8_t)(v >> 1);
        carry = v & 1;
    }
    char at[40];
    sl_hash_key_format(at, mid);
    CHECK(sl_stream_split_shard(s, hot, at), s, "sl_stream_split_shard");
    printf("(split %s in two at %s)\n\n", hot, at);
    run(s, vc, 0, "2. The same keys after splitting the hot shard: its key still lands in one "
                  "child.");
    run(s, vc, 1, "3. Good keys: the hot device's events spread over 8 sub-keys.");
    printf("Splitting adds capacity to a range of keys; a single hot key needs better keys\n"
           "(or, if order per device matters, a sub-key per stream of events that must stay\n"
           "in order).\n");

    CHECK(sl_stream_close(s), NULL, "sl_stream_close");
    if (argc <= 1) {
        CHECK(sl_stream_delete(root, "devices"), NULL, "sl_stream_delete");
        rmdir(root);
    }
    sl_vclock_free(vc);
    return 0;
}
