/*
** agent_telemetry.c -- shardlog's demo: the telemetry log of an agent runtime.
**
** An agent runtime runs many sessions at once.  Each session logs small JSON
** events -- a session_start, then turns of a prompt, some tool calls and a
** response:
**
**   {"session":"s-0007","event":12,"turn":3,"type":"tool_call",
**    "tool":"web.search","latency_ms":182,"ok":true}
**
** This program shows, with the public API only (<shardlog.h>):
**   1. sl_stream_create: a 4-shard stream in a fresh temporary directory.
**   2. A follower thread: an iterator at LATEST on one shard, woken by
**      sl_iter_wait as records are committed, counting them as they arrive.
**   3. A producer.  The partition key is the session id, so all of a
**      session's events land in one shard, in the order they were put.  Each
**      session's first event goes through sl_producer_put; the rest are
**      batched, up to 500 at a time, through sl_producer_put_batch.
**   4. A consumer: every shard read from TRIM_HORIZON with sl_iter_read.  It
**      checks that sequence numbers rise within each shard, that every
**      session's "event" counter rises by exactly one (so each event is seen
**      once and in order), and that the follower saw all of its shard.
**
** Every call is checked: a failure prints sl_strerror(rc) and sl_errmsg(h)
** and exits 1.  Exit status 0 means that every check passed.
**
** Usage: agent_telemetry [--events N] [--sessions N]
**                        [--durability none|interval|always] [--dir DIR] [--keep]
*/
#include <shardlog.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define STREAM_NAME "agent-telemetry"
#define SHARDS 4
#define PAYLOAD_MAX 192                  /* our events are shorter */
#define READ_LIMIT 1000                  /* records per sl_iter_read */

/* ---- helpers ------------------------------------------------------------ */

static void die(int rc, const void *handle, const char *what)
{
    fprintf(stderr, "FAILED: %s: %s: %s\n", what, sl_strerror(rc), sl_errmsg(handle));
    exit(1);
}
/* Run a shardlog call; if it returns a negative code, say why and exit 1. */
#define CHECK(call, handle, what)                                              \
    do {                                                                       \
        int rc_ = (call);                                                      \
        if (rc_ < 0) die(rc_, (handle), (what));                               \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rng_next(uint64_t *state)     /* splitmix64 */
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static const char *commas(char buf[32], uint64_t v)     /* 1234567 -> 1,234,567 */
{
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%" PRIu64, v), j = 0;
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0) buf[j++] = ',';
        buf[j++] = digits[i];
    }
    buf[j] = '\0';
    return buf;
}

/* ---- sessions and their events ------------------------------------------ */

typedef struct session {
    char id[16];                 /* "s-0007", also the partition key */
    uint64_t total;              /* events this session will log */
    uint64_t logged;             /* events logged: the next "event" number */
    unsigned turn, tools_left;
    bool in_turn;                /* a prompt is waiting for its response */
    uint64_t seen;               /* consumer: events read back */
    bool in_order;               /* consumer: "event" went 0, 1, 2, ... */
    int shard;                   /* consumer: the shard it was found in */
} session;

static session *sess;
static uint64_t nsessions, nevents;
static uint64_t written[SHARDS];     /* puts acknowledged, by shard index */

static const char *const TOOLS[] = {"web.search", "code.exec", "file.read",
                                    "calendar.lookup", "db.query"};

/* Write session ss's next event into buf; returns its length. */
static size_t next_event(session *ss, uint64_t *rng, char *buf)
{
    uint64_t r = rng_next(rng);
    int n = snprintf(buf, PAYLOAD_MAX, "{\"session\":\"%s\",\"event\":%" PRIu64,
                     ss->id, ss->logged);
    char *rest = buf + n;
    size_t room = PAYLOAD_MAX - (size_t)n;
    if (ss->logged++ == 0) {
        n += snprintf(rest, room, ",\"type\":\"session_start\",\"agent\":\"%s\"}",
                      r & 1 ? "researcher" : "planner");
    } else if (!ss->in_turn) {
        ss->turn++;
        ss->in_turn = true;
        ss->tools_left = (unsigned)(r % 4);
        n += snprintf(rest, room, ",\"turn\":%u,\"type\":\"prompt\",\"tokens\":%u}",
                      ss->turn, (unsigned)(r >> 8) % 2000 + 20);
    } else if (ss->tools_left > 0) {
        ss->tools_left--;
        n += snprintf(rest, room, ",\"turn\":%u,\"type\":\"tool_call\",\"tool\":\"%s\","
                      "\"latency_ms\":%u,\"ok\":%s}", ss->turn, TOOLS[(r >> 8) % 5],
                      (unsigned)(r >> 16) % 900 + 5, (r >> 40) % 20 ? "true" : "false");
    } else {
        ss->in_turn = false;
        n += snprintf(rest, room, ",\"turn\":%u,\"type\":\"response\",\"tokens\":%u,"
                      "\"latency_ms\":%u}", ss->turn, (unsigned)(r >> 8) % 800 + 1,
                      (unsigned)(r >> 24) % 3000 + 200);
    }
    return (size_t)n;
}

/* ---- the producer ------------------------------------------------------- */

typedef struct batch {
    size_t n;
    sl_put_entry entries[SL_BATCH_RECORDS_MAX];
    sl_put_result results[SL_BATCH_RECORDS_MAX];
    char payloads[SL_BATCH_RECORDS_MAX][PAYLOAD_MAX];  /* live until the put */
} batch;

static void flush(sl_producer *p, batch *b)
{
    size_t failed = 0;
    if (b->n == 0) return;
    CHECK(sl_producer_put_batch(p, b->entries, b->n, b->results, &failed), p,
          "sl_producer_put_batch");
    for (size_t i = 0; i < b->n; i++) {
        const sl_put_result *r = &b->results[i];
        if (r->error) {          /* entries fail one by one: show the first */
            fprintf(stderr, "FAILED: %zu of %zu batch entries, first %s: %s: %s\n",
                    failed, b->n, b->entries[i].partition_key,
                    sl_strerror(r->error), r->error_message);
            exit(1);
        }
        written[r->shard_index]++;
    }
    b->n = 0;
}

/* Log every session's events, sessions taking turns at random as in a busy
** runtime.  Returns the payload bytes written. */
static uint64_t produce(sl_stream *s)
{
    static batch b;
    size_t *active = malloc(nsessions * sizeof *active), nactive = nsessions;
    uint64_t rng = 42, bytes = 0;
    if (!active) { fprintf(stderr, "FAILED: out of memory\n"); exit(1); }
    for (size_t i = 0; i < nsessions; i++) active[i] = i;
    sl_producer *p;
    CHECK(sl_producer_open(&p, s), s, "sl_producer_open");
    while (nactive > 0) {
        size_t k = rng_next(&rng) % nactive;
        session *ss = &sess[active[k]];
        if (ss->logged == 0) {
            /* A session's first event: one put; its result says where the
            ** record went. */
            char buf[PAYLOAD_MAX];
            sl_put_entry e = {ss->id, buf, next_event(ss, &rng, buf), NULL};
            sl_put_result r;
            CHECK(sl_producer_put(p, &e, &r), p, "sl_producer_put");
            if (ss == &sess[0])
                printf("session %s starts in %s at sequence number %" PRIu64 "\n",
                       ss->id, r.shard_id, r.sequence);
            written[r.shard_index]++;
            bytes += e.data_len;
        } else {
            char *buf = b.payloads[b.n];
            b.entries[b.n] = (sl_put_entry){ss->id, buf, next_event(ss, &rng, buf), NULL};
            bytes += b.entries[b.n++].data_len;
            if (b.n == SL_BATCH_RECORDS_MAX) flush(p, &b);
        }
        if (ss->logged == ss->total) active[k] = active[--nactive];
    }
    flush(p, &b);
    sl_producer_close(p);
    free(active);
    return bytes;
}

/* ---- the follower: wakes on commits to one shard ------------------------ */

typedef struct follower {
    sl_iter *it;
    atomic_bool stop;            /* set once every put has returned */
    uint64_t seen, wakeups;
} follower;

static void *follow(void *arg)
{
    follower *f = arg;
    sl_record recs[READ_LIMIT];
    sl_read_result res;
    for (;;) {
        bool stop = atomic_load(&f->stop);
        int ready = sl_iter_wait(f->it, stop ? 0 : 50);   /* 1, 0 or < 0 */
        if (ready < 0) die(ready, f->it, "sl_iter_wait (follower)");
        if (!ready && stop) break;     /* all is written and all is read */
        if (ready && !stop) f->wakeups++;
        do {                           /* read what is there */
            CHECK(sl_iter_read(f->it, recs, READ_LIMIT, &res), f->it,
                  "sl_iter_read (follower)");
            f->seen += res.count;
        } while (res.count > 0);
    }
    return NULL;
}

/* ---- the consumer ------------------------------------------------------- */

typedef struct tally {
    uint64_t events[SHARDS], sessions[SHARDS], total;
    bool seq_ok, keys_ok;
} tally;

/* Read every shard from its oldest record and check every event. */
static void consume(sl_stream *s, const sl_shard_list *shards, tally *t)
{
    static sl_record recs[READ_LIMIT];
    t->seq_ok = t->keys_ok = true;
    for (size_t si = 0; si < shards->count; si++) {
        sl_iter *it;
        sl_read_result res;
        uint64_t last_seq = 0;
        CHECK(sl_iter_open(&it, s, shards->shards[si].shard_id, SL_ITER_TRIM_HORIZON, 0),
              s, "sl_iter_open (TRIM_HORIZON)");
        do {   /* nothing is being written now: an empty read is the end */
            CHECK(sl_iter_read(it, recs, READ_LIMIT, &res), it, "sl_iter_read");
            for (size_t i = 0; i < res.count; i++) {
                const sl_record *r = &recs[i];
                if (r->sequence <= last_seq) t->seq_ok = false;
                last_seq = r->sequence;
                /* key "s-0007" (not NUL-terminated) -> session 7; the
                ** payload must name the same session */
                char key[16], want[48];
                unsigned sid = 0;
                snprintf(key, sizeof key, "%.*s", (int)r->key_len, r->partition_key);
                int n = snprintf(want, sizeof want, "\"session\":\"%s\",\"event\":", key);
                const char *at = memmem(r->data, r->data_len, want, (size_t)n);
                if (!at || sscanf(key, "s-%u", &sid) != 1 || sid >= nsessions) {
                    fprintf(stderr, "FAILED: key %.*s, unexpected event %.*s\n",
                            (int)r->key_len, r->partition_key, (int)r->data_len,
                            (const char *)r->data);
                    exit(1);
                }
                uint64_t ev = strtoull(at + n, NULL, 10);   /* ends at ',' or '}' */
                session *ss = &sess[sid];
                if (ss->seen == 0) { ss->shard = (int)si; t->sessions[si]++; }
                if (ss->shard != (int)si) t->keys_ok = false;   /* session split */
                if (ev != ss->seen) ss->in_order = false;       /* not +1 */
                ss->seen++;
            }
            t->events[si] += res.count;
        } while (res.count > 0);
        t->total += t->events[si];
        sl_iter_close(it);
    }
}

/* ---- main --------------------------------------------------------------- */

static void usage(const char *argv0)
{
    fprintf(stderr, "usage: %s [--events N] [--sessions N] "
            "[--durability none|interval|always] [--dir DIR] [--keep]\n"
            "  --dir DIR  create the stream under DIR and keep it (default: a\n"
            "             temporary directory, removed at the end unless --keep)\n",
            argv0);
    exit(2);
}

/* A check's result; a failed one gets a FAILED line. */
static bool verdict(bool ok, const char *what)
{
    if (!ok) printf("FAILED: %s\n", what);
    return ok;
}

int main(int argc, char **argv)
{
    sl_durability durability = SL_DURABILITY_INTERVAL;
    const char *dir = NULL, *dname = "interval";
    bool keep = false;
    nevents = 200000;
    nsessions = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--keep")) { keep = true; continue; }
        if (!v) usage(argv[0]);
        i++;
        if (!strcmp(a, "--events")) nevents = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--sessions")) nsessions = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--dir")) dir = v;
        else if (!strcmp(a, "--durability")) {
            dname = v;
            if (!strcmp(v, "none")) durability = SL_DURABILITY_NONE;
            else if (!strcmp(v, "interval")) durability = SL_DURABILITY_INTERVAL;
            else if (!strcmp(v, "always")) durability = SL_DURABILITY_ALWAYS;
            else usage(argv[0]);
        } else usage(argv[0]);
    }
    if (nsessions < 1 || nsessions > 9999 || nevents < nsessions) {
        fprintf(stderr, "FAILED: need 1 <= --sessions <= 9999 and --events >= --sessions\n");
        return 1;
    }

    /* 1. A 4-shard stream in a fresh directory. */
    char root[4096];
    if (dir) {
        snprintf(root, sizeof root, "%s", dir);
        keep = true;
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(root, sizeof root, "%s/shardlog-demo-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(root)) { perror("FAILED: mkdtemp"); return 1; }
    }
    sl_stream_config cfg = SL_STREAM_CONFIG_INIT;
    cfg.name = STREAM_NAME;
    cfg.shard_count = SHARDS;
    cfg.durability = durability;
    sl_stream *s;
    int rc = sl_stream_create(&s, root, &cfg, NULL);
    if (rc == SL_EINUSE) fprintf(stderr, "(delete %s/%s or choose another --dir)\n", root, STREAM_NAME);
    CHECK(rc, NULL, "sl_stream_create");
    sl_shard_list *shards;
    CHECK(sl_stream_list_shards(&shards, s), s, "sl_stream_list_shards");
    printf("shardlog %s demo: %" PRIu64 " agent telemetry events from %" PRIu64
           " sessions, durability %s\nstream %s/%s, %zu shards\n\n",
           sl_version(), nevents, nsessions, dname, root, STREAM_NAME, shards->count);

    /* 2. The follower, positioned at LATEST before anything is written. */
    follower fol = {.seen = 0};
    atomic_init(&fol.stop, false);
    CHECK(sl_iter_open(&fol.it, s, shards->shards[0].shard_id, SL_ITER_LATEST, 0), s,
          "sl_iter_open (LATEST)");
    pthread_t fol_thread;
    if (pthread_create(&fol_thread, NULL, follow, &fol) != 0) {
        fprintf(stderr, "FAILED: pthread_create\n");
        return 1;
    }

    /* 3. The producer. */
    sess = calloc(nsessions, sizeof *sess);
    if (!sess) { fprintf(stderr, "FAILED: out of memory\n"); return 1; }
    for (size_t i = 0; i < nsessions; i++) {
        snprintf(sess[i].id, sizeof sess[i].id, "s-%04u", (unsigned)i);
        sess[i].total = nevents / nsessions + (i < nevents % nsessions);
        sess[i].in_order = true;
    }
    double t0 = now_s();
    uint64_t bytes = produce(s);
    double write_s = now_s() - t0;
    atomic_store(&fol.stop, true);
    pthread_join(fol_thread, NULL);
    sl_iter_close(fol.it);

    /* 4. The consumer. */
    tally t = {.total = 0};
    t0 = now_s();
    consume(s, shards, &t);
    double read_s = now_s() - t0;

    /* 5. The report. */
    char c1[32], c2[32], c3[32];
    printf("\n  %-22s %10s %7s %9s\n", "shard", "events", "share", "sessions");
    for (size_t si = 0; si < shards->count; si++)
        printf("  %-22s %10s %6.1f%% %9" PRIu64 "\n", shards->shards[si].shard_id,
               commas(c1, t.events[si]), 100.0 * t.events[si] / nevents, t.sessions[si]);
    printf("  %-22s %10s %6.1f%% %9" PRIu64 "\n\n", "total", commas(c1, t.total),
           100.0 * t.total / nevents, nsessions);
    uint64_t ordered = 0, complete = 0;
    bool per_shard_ok = true;
    for (size_t i = 0; i < nsessions; i++) {
        ordered += sess[i].in_order;
        complete += sess[i].in_order && sess[i].seen == sess[i].total;
    }
    for (size_t si = 0; si < SHARDS; si++) per_shard_ok &= t.events[si] == written[si];
    bool once = complete == nsessions && t.total == nevents && per_shard_ok;
    double mb = bytes / 1e6;
    printf("  per-session order   %s (%" PRIu64 " of %" PRIu64 " sessions verified)\n",
           ordered == nsessions ? "yes" : "NO", ordered, nsessions);
    printf("  each event once     %s (%s written, %s read)\n", once ? "yes" : "NO",
           commas(c1, nevents), commas(c2, t.total));
    printf("  sequence numbers    %s\n",
           t.seq_ok ? "strictly increasing in every shard" : "NOT INCREASING");
    printf("  partition keys      %s\n",
           t.keys_ok ? "match the payloads; one shard per session" : "WRONG");
    printf("  follower (LATEST)   saw %s of %s events of %s live, %s wake-ups\n",
           commas(c1, fol.seen), commas(c2, t.events[0]), shards->shards[0].shard_id,
           commas(c3, fol.wakeups));
    printf("  write               %10s events/s %7.1f MB/s  (%.3f s; %" PRIu64
           " single puts, the rest in batches of up to %d)\n",
           commas(c1, (uint64_t)(nevents / write_s)), mb / write_s, write_s, nsessions,
           SL_BATCH_RECORDS_MAX);
    printf("  read                %10s events/s %7.1f MB/s  (%.3f s, checks included)\n\n",
           commas(c1, (uint64_t)(t.total / read_s)), mb / read_s, read_s);
    bool ok = verdict(ordered == nsessions, "events out of order");
    ok &= verdict(once, "events lost or duplicated");
    ok &= verdict(t.seq_ok, "sequence numbers not increasing within a shard");
    ok &= verdict(t.keys_ok, "partition keys or routing wrong");
    ok &= verdict(fol.seen == t.events[0], "the follower missed events");

    /* 6. Clean up: producers and iterators are closed; now their stream. */
    sl_shard_list_free(shards);
    free(sess);
    rc = sl_stream_close(s);     /* on SL_EIO the handle is freed all the same */
    if (rc < 0) die(rc, rc == SL_EINUSE ? (const void *)s : NULL, "sl_stream_close");
    if (keep) {
        printf("stream kept in %s/%s\n", root, STREAM_NAME);
    } else {
        CHECK(sl_stream_delete(root, STREAM_NAME), NULL, "sl_stream_delete");
        if (rmdir(root) != 0) perror("rmdir");
    }
    printf("%s\n", ok ? "all checks passed" : "FAILED: see above");
    return ok ? 0 : 1;
}
