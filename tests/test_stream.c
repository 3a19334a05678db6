/*
** test_stream.c -- the stream handle: create (every configuration rule),
** describe, list, delete, the writer lock (same process and another one),
** read-only followers in another process, reopening, sequence numbers that
** are never reused, and file permissions.
*/
#include "testutil.h"

#include <poll.h>

static sl_stream_config base_cfg(const char *name)
{
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = name;
    c.durability = SL_DURABILITY_NONE;
    c.segment_bytes = SL_SEGMENT_BYTES_MIN;
    return c;
}

static void create_and_describe(void **state)
{
    sl_tag tags[] = {{"team", "agents"}, {"env", ""}, {"owner", "ops@example.com"},
                     {"\xC3\xA9t\xC3\xA9", "\xE2\x98\x83"}};
    sl_stream_config c = base_cfg("telemetry.v1");
    c.shard_count = 3;
    c.retention_hours = 168;
    c.encryption_type = SL_ENCRYPTION_KMS;
    c.kms_key_id = "alias/aws/kinesis";
    c.tags = tags;
    c.tag_count = 4;
    c.max_record_size_kib = 2048;
    c.durability = SL_DURABILITY_ALWAYS;
    /* KMS needs a key provider (test_crypto.c tests what it does) */
    char *kf = tu_path("%s/master.key", (const char *)*state);
    sl_key_provider *kp;
    assert_int_equal(sl_keyfile_create(kf), 0);
    assert_int_equal(sl_keyfile_provider_open(&kp, kf), 0);
    sl_open_opts oo = SL_OPEN_OPTS_INIT;
    oo.keys = kp;
    tu_opts to = {.keys = kp};
    sl_stream *s;
    assert_int_equal(sl_stream_create(&s, *state, &c, &oo), 0);
    for (int round = 0; round < 2; round++) {
        sl_stream_desc *d;
        assert_int_equal(sl_stream_describe(&d, s), 0);
        assert_string_equal(d->stream_name, "telemetry.v1");
        assert_string_equal(d->stream_status, "ACTIVE");
        assert_int_equal(d->stream_mode, SL_STREAM_MODE_PROVISIONED);
        assert_int_equal(d->retention_hours, 168);
        assert_int_equal(d->encryption_type, SL_ENCRYPTION_KMS);
        assert_string_equal(d->kms_key_id, "alias/aws/kinesis");
        assert_int_equal(d->max_record_size_kib, 2048);
        assert_int_equal(d->durability, SL_DURABILITY_ALWAYS);
        assert_int_equal(d->segment_bytes, SL_SEGMENT_BYTES_MIN);
        assert_int_equal(d->tag_count, 4);
        for (int i = 0; i < 4; i++) {
            assert_string_equal(d->tags[i].key, tags[i].key);
            assert_string_equal(d->tags[i].value, tags[i].value);
        }
        assert_int_equal(d->shard_count, 3);
        assert_int_equal(d->open_shard_count, 3);
        /* the N=3 split of AWS' own CLI example */
        assert_string_equal(d->shards[0].shard_id, "shardId-000000000000");
        assert_string_equal(d->shards[0].starting_hash_key, "0");
        assert_string_equal(d->shards[0].ending_hash_key, "113427455640312821154458202477256070484");
        assert_string_equal(d->shards[1].starting_hash_key, "113427455640312821154458202477256070485");
        assert_string_equal(d->shards[2].ending_hash_key, "340282366920938463463374607431768211455");
        assert_string_equal(d->shards[1].parent_shard_id, "");
        assert_true(d->shards[2].open);
        assert_int_equal(d->shards[2].ending_sequence, 0);
        assert_true(d->created_ms > 1600000000000LL);
        sl_stream_desc_free(d);
        /* the same after closing and reopening */
        assert_int_equal(sl_stream_close(s), 0);
        s = tu_open(*state, "telemetry.v1", &to);
    }
    sl_shard_list *l;
    assert_int_equal(sl_stream_list_shards(&l, s), 0);
    assert_int_equal(l->count, 3);
    assert_string_equal(l->shards[2].shard_id, "shardId-000000000002");
    sl_shard_list_free(l);
    assert_int_equal(sl_stream_close(s), 0);
    sl_keyfile_provider_close(kp);
    free(kf);
    /* create without opening */
    sl_stream_config c2 = base_cfg("plain");
    assert_int_equal(sl_stream_create(NULL, *state, &c2, NULL), 0);
    s = tu_open(*state, "plain", NULL);
    sl_stream_desc *d;
    assert_int_equal(sl_stream_describe(&d, s), 0);
    assert_int_equal(d->shard_count, 1);
    assert_int_equal(d->retention_hours, 24);
    assert_int_equal(d->encryption_type, SL_ENCRYPTION_NONE);
    assert_string_equal(d->kms_key_id, "");
    sl_stream_desc_free(d);
    assert_int_equal(sl_stream_close(s), 0);
}

static void config_rules(void **state)
{
    char longname[140];
    memset(longname, 'n', 129);
    longname[129] = '\0';
    sl_tag t51[51];
    char tk[51][8];
    for (int i = 0; i < 51; i++) {
        snprintf(tk[i], sizeof tk[i], "k%d", i);
        t51[i] = (sl_tag){tk[i], "v"};
    }
    char longkey[200], longval[300];
    memset(longkey, 'k', 129);
    longkey[129] = '\0';
    memset(longval, 'v', 257);
    longval[257] = '\0';
    sl_tag dup[] = {{"a", "1"}, {"a", "2"}};
    sl_tag awsk[] = {{"aws:x", "1"}};
    sl_tag lk[] = {{longkey, "1"}};
    sl_tag lv[] = {{"k", longval}};
    sl_tag ctl[] = {{"k\n", "1"}};
    struct {
        const char *what;
        int rc;
        const char *msg;
    } cases[] = {
        {"name null", SL_EVALIDATION, "streamName"},
        {"name chars", SL_EVALIDATION, "[a-zA-Z0-9_.-]+"},
        {"name long", SL_EVALIDATION, "between 1 and 128"},
        {"name dots", SL_EVALIDATION, "streamName"},
        {"shards", SL_ELIMIT, "10000"},
        {"retention low", SL_EINVAL, "24..8760"},
        {"retention high", SL_EINVAL, "24..8760"},
        {"mode", SL_EVALIDATION, "ON_DEMAND"},
        {"encryption", SL_EVALIDATION, "KMS"},
        {"kms without key", SL_EVALIDATION, "keyId"},
        {"key without kms", SL_EINVAL, "kms_key_id"},
        {"51 tags", SL_ELIMIT, "50"},
        {"dup tags", SL_EINVAL, "twice"},
        {"aws: tag", SL_EINVAL, "reserved"},
        {"long tag key", SL_EINVAL, "128"},
        {"long tag value", SL_EINVAL, "256"},
        {"control char tag", SL_EINVAL, "control"},
        {"max record low", SL_EVALIDATION, "maxRecordSizeInKiB"},
        {"max record high", SL_EVALIDATION, "10240"},
        {"segment small", SL_EINVAL, "segment_bytes"},
        {"segment large", SL_EINVAL, "segment_bytes"},
        {"durability", SL_EVALIDATION, "durability"},
        {"version", SL_EINVAL, "SL_STREAM_CONFIG_INIT"},
        {"interval", SL_EINVAL, "hour"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sl_stream_config c = base_cfg("ok");
        switch (i) {
        case 0: c.name = NULL; break;
        case 1: c.name = "bad/name"; break;
        case 2: c.name = longname; break;
        case 3: c.name = ".."; break;
        case 4: c.shard_count = 10001; break;
        case 5: c.retention_hours = 23; break;
        case 6: c.retention_hours = 8761; break;
        case 7: c.stream_mode = (sl_stream_mode)7; break;
        case 8: c.encryption_type = (sl_encryption)9; break;
        case 9: c.encryption_type = SL_ENCRYPTION_KMS; break;
        case 10: c.kms_key_id = "k"; break;
        case 11: c.tags = t51; c.tag_count = 51; break;
        case 12: c.tags = dup; c.tag_count = 2; break;
        case 13: c.tags = awsk; c.tag_count = 1; break;
        case 14: c.tags = lk; c.tag_count = 1; break;
        case 15: c.tags = lv; c.tag_count = 1; break;
        case 16: c.tags = ctl; c.tag_count = 1; break;
        case 17: c.max_record_size_kib = 1023; break;
        case 18: c.max_record_size_kib = 10241; break;
        case 19: c.segment_bytes = 4096; break;
        case 20: c.segment_bytes = (1ull << 32) + 1; break;
        case 21: c.durability = (sl_durability)9; break;
        case 22: c.version = 0; break;
        case 23: c.sync_interval_ms = 3600001; break;
        }
        sl_stream *s = (sl_stream *)&c;
        int rc = sl_stream_create(&s, *state, &c, NULL);
        if (rc != cases[i].rc) fail_msg("%s: rc %d, want %d (%s)", cases[i].what, rc, cases[i].rc, sl_errmsg(NULL));
        assert_null(s);
        if (!strstr(sl_errmsg(NULL), cases[i].msg))
            fail_msg("%s: message '%s' lacks '%s'", cases[i].what, sl_errmsg(NULL), cases[i].msg);
    }
    /* nothing was created by any of them */
    sl_name_list *l;
    assert_int_equal(sl_stream_list(&l, *state), 0);
    assert_int_equal(l->count, 0);
    sl_name_list_free(l);
    assert_int_equal(tu_count_files(*state, NULL), 0);
    /* limits themselves are fine */
    sl_stream_config c = base_cfg(longname + 1);   /* 128 characters */
    c.retention_hours = 8760;
    c.tags = t51;
    c.tag_count = 50;
    c.max_record_size_kib = 10240;
    assert_int_equal(sl_stream_create(NULL, *state, &c, NULL), 0);
    /* on-demand streams start with 4 shards */
    sl_stream_config od = base_cfg("od");
    od.stream_mode = SL_STREAM_MODE_ON_DEMAND;
    sl_stream *s;
    assert_int_equal(sl_stream_create(&s, *state, &od, NULL), 0);
    sl_stream_desc *d;
    assert_int_equal(sl_stream_describe(&d, s), 0);
    assert_int_equal(d->shard_count, 4);
    assert_int_equal(d->stream_mode, SL_STREAM_MODE_ON_DEMAND);
    sl_stream_desc_free(d);
    assert_int_equal(sl_stream_close(s), 0);
}

static void list_and_delete(void **state)
{
    const char *names[] = {"zeta", "alpha", "Mid-1", "b_2", ".dotted"};
    for (int i = 0; i < 5; i++) {
        sl_stream_config c = base_cfg(names[i]);
        assert_int_equal(sl_stream_create(NULL, *state, &c, NULL), 0);
    }
    /* things that are not streams are not listed */
    char *junk = tu_path("%s/not-a-stream", (char *)*state);
    assert_int_equal(mkdir(junk, 0700), 0);
    char *hidden = tu_path("%s/.hidden", (char *)*state);
    assert_int_equal(mkdir(hidden, 0700), 0);
    sl_name_list *l;
    assert_int_equal(sl_stream_list(&l, *state), 0);
    assert_int_equal(l->count, 5);
    assert_string_equal(l->names[0], ".dotted");   /* a valid Kinesis name */
    assert_string_equal(l->names[1], "Mid-1");
    assert_string_equal(l->names[2], "alpha");
    assert_string_equal(l->names[3], "b_2");
    assert_string_equal(l->names[4], "zeta");
    sl_name_list_free(l);
    /* an existing name */
    sl_stream_config c = base_cfg("alpha");
    assert_int_equal(sl_stream_create(NULL, *state, &c, NULL), SL_EINUSE);
    assert_non_null(strstr(sl_errmsg(NULL), "already exists"));
    /* delete: refused while a writer has it; gone afterwards */
    sl_stream *s = tu_open(*state, "alpha", NULL);
    assert_int_equal(sl_stream_delete(*state, "alpha"), SL_ELOCKED);
    assert_int_equal(sl_stream_close(s), 0);
    assert_int_equal(sl_stream_delete(*state, "alpha"), 0);
    assert_int_equal(sl_stream_open(&s, *state, "alpha", NULL), SL_ENOTFOUND);
    assert_non_null(strstr(sl_errmsg(NULL), "alpha"));
    assert_int_equal(sl_stream_delete(*state, "alpha"), SL_ENOTFOUND);
    assert_int_equal(sl_stream_delete(*state, "../x"), SL_EVALIDATION);
    assert_int_equal(sl_stream_list(&l, *state), 0);
    assert_int_equal(l->count, 4);
    sl_name_list_free(l);
    /* the name can be used again, for a new stream */
    assert_int_equal(sl_stream_create(NULL, *state, &c, NULL), 0);
    /* a root that does not exist has no streams */
    char *none = tu_path("%s/none", (char *)*state);
    assert_int_equal(sl_stream_list(&l, none), 0);
    assert_int_equal(l->count, 0);
    sl_name_list_free(l);
    free(none);
    free(junk);
    free(hidden);
}

/* Run fn in a child process; return its exit status. */
static int in_child(int (*fn)(const char *root), const char *root)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(fn(root));
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

static int child_open_writer(const char *root)
{
    sl_stream *s;
    int rc = sl_stream_open(&s, root, "lk", NULL);
    if (rc == SL_ELOCKED && strstr(sl_errmsg(NULL), "locked by another writer")) return 7;
    if (rc == 0) sl_stream_close(s);
    return rc == 0 ? 0 : 1;
}

static void second_writer_refused(void **state)
{
    sl_stream_config c = base_cfg("lk");
    sl_stream *s, *s2 = (sl_stream *)&c;
    assert_int_equal(sl_stream_create(&s, *state, &c, NULL), 0);
    /* same process */
    assert_int_equal(sl_stream_open(&s2, *state, "lk", NULL), SL_ELOCKED);
    assert_null(s2);
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    assert_non_null(strstr(sl_errmsg(NULL), pid));
    /* another process */
    assert_int_equal(in_child(child_open_writer, *state), 7);
    /* read-only opens are fine meanwhile */
    tu_opts ro = {.flags = SL_OPEN_READONLY};
    s2 = tu_open(*state, "lk", &ro);
    assert_int_equal(sl_stream_close(s2), 0);
    /* once closed, the lock is free for the other process */
    assert_int_equal(sl_stream_close(s), 0);
    assert_int_equal(in_child(child_open_writer, *state), 0);
}

/* ---- a follower in another process --------------------------------------- */

enum { FOLLOW_N = 3000 };

static int follower(const char *root, int ready_fd)
{
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.flags = SL_OPEN_READONLY;
    sl_stream *s;
    if (sl_stream_open(&s, root, "fol", &o)) return 2;
    sl_iter *it;
    if (sl_iter_open(&it, s, "shardId-000000000000", SL_ITER_TRIM_HORIZON, 0)) return 3;
    if (write(ready_fd, "r", 1) != 1) return 4;
    int got = 0;
    uint64_t prev = 0;
    static sl_record recs[500];
    while (got < FOLLOW_N) {
        int w = sl_iter_wait(it, 20000);      /* a lost wake-up fails the test */
        if (w != 1) return 5;
        sl_read_result r;
        int rc = sl_iter_read(it, recs, 500, &r);
        if (rc) return 6;
        for (size_t i = 0; i < r.count; i++) {
            char want[32];
            int n = snprintf(want, sizeof want, "k:%d|", got);
            if (recs[i].sequence <= prev || recs[i].data_len != (size_t)n + 250 ||
                memcmp(recs[i].data, want, (size_t)n))
                return 8;
            prev = recs[i].sequence;
            got++;
        }
    }
    sl_iter_close(it);
    sl_stream_close(s);
    return 0;
}

static void read_only_follower_in_another_process(void **state)
{
    sl_stream_config c = base_cfg("fol");
    sl_stream *s;
    assert_int_equal(sl_stream_create(&s, *state, &c, NULL), 0);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        _exit(follower(*state, pfd[1]));
    }
    close(pfd[1]);
    char b;
    assert_int_equal(read(pfd[0], &b, 1), 1);    /* the follower is in place */
    close(pfd[0]);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    /* 3000 x ~260 bytes: the follower crosses about a dozen segments */
    char d[300];
    for (int i = 0; i < FOLLOW_N; i++) {
        int n = snprintf(d, sizeof d, "k:%d|", i);
        memset(d + n, '.', 250);
        assert_int_equal(sl_put(p, "k", d, (size_t)n + 250, NULL), 0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void reopen_keeps_everything(void **state)
{
    sl_stream_config c = base_cfg("re");
    c.shard_count = 4;
    sl_stream *s;
    assert_int_equal(sl_stream_create(&s, *state, &c, NULL), 0);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    uint64_t maxseq = 0;
    for (int i = 0; i < 2000; i++) {
        char k[16];
        snprintf(k, sizeof k, "key%d", i % 50);
        uint64_t q = tu_put(p, k, i);
        if (q > maxseq) maxseq = q;
    }
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    s = tu_open(*state, "re", NULL);
    tu_recs all = {0};
    tu_read_all(s, &all);
    assert_int_equal(all.n, 2000);
    assert_int_equal(all.corrupt, 0);
    tu_recs_free(&all);
    assert_int_equal(sl_producer_open(&p, s), 0);
    assert_true(tu_put(p, "key1", 1) > maxseq);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

/* Delete every segment file (as retention will): new sequence numbers are
** still above every number ever issued. */
/* Sequence numbers lie below 2^63 (SL_SEQ_LIMIT).  A record numbered at or
** above it (forged: its checksum holds) is damage, not a record, and does
** not drag the writer's numbers along: they wrapped around past 2^64 to
** small, reused ones, and the put's own record could not be found (found
** by fuzz/fuzz_segment.c).  A valid record just below the limit leaves no
** numbers to issue: puts fail with SL_ELIMIT instead of wrapping. */
static void sequence_space_ends_loudly(void **state)
{
    const char *root = *state;
    int64_t now = (int64_t)time(NULL) * 1000;        /* (the streams' real clock) */
    for (int near = 0; near < 2; near++) {
        const char *name = near ? "near" : "past";
        sl_stream *s = tu_create(root, name, NULL);
        sl_producer *p;
        assert_int_equal(sl_producer_open(&p, s), 0);
        uint64_t first = tu_put(p, "k", 0);
        sl_producer_close(p);
        assert_int_equal(sl_stream_close(s), 0);
        uint64_t forged = near ? SL_SEQ_LIMIT - 3 : UINT64_MAX - 66;
        tu_forge_segment(root, name, 0, 2, forged, now, "forged");
        tu_reports rep = {0};
        tu_opts o = {.reports = &rep};
        s = tu_open(root, name, &o);
        tu_recs r = {0};
        tu_read_all(s, &r);
        assert_int_equal(r.n, near ? 2 : 1);
        assert_int_equal(r.v[0].seq, first);
        if (near) assert_true(r.v[1].seq == forged);
        tu_recs_free(&r);
        assert_int_equal(sl_producer_open(&p, s), 0);
        uint64_t seq = 0;
        int rc = sl_put(p, "k", "after", 5, &seq);
        if (near) {
            /* the writer resumes a wide gap above a number it did not
            ** reserve itself: past the limit, so none is left, now or later */
            for (int i = 0; i < 2; i++) {
                assert_int_equal(rc, SL_ELIMIT);
                assert_non_null(strstr(sl_errmsg(p), "sequence numbers exhausted"));
                rc = sl_put(p, "k", "after", 5, &seq);
            }
        } else {
            assert_int_equal(rc, 0);
            assert_true(seq > first);
            assert_true(tu_first_seq(s, "shardId-000000000000", SL_ITER_AT_SEQUENCE_NUMBER,
                                     seq) == seq);
        }
        sl_producer_close(p);
        assert_int_equal(sl_stream_close(s), 0);
    }
}

static void sequence_never_reused(void **state)
{
    sl_stream_config c = base_cfg("sq");
    c.shard_count = 2;
    sl_stream *s;
    uint64_t maxseq = 0;
    for (int round = 0; round < 3; round++) {
        if (round == 0) assert_int_equal(sl_stream_create(&s, *state, &c, NULL), 0);
        else s = tu_open(*state, "sq", NULL);
        sl_producer *p;
        assert_int_equal(sl_producer_open(&p, s), 0);
        /* unique, increasing per shard, and above every earlier round's
        ** (across shards within a round they interleave) */
        uint64_t seen[100], last[2] = {0, 0}, round_max = 0;
        for (int i = 0; i < 100; i++) {
            char k[8];
            snprintf(k, sizeof k, "%d", i);
            sl_put_entry e = {k, "x", 1, NULL};
            sl_put_result r;
            assert_int_equal(sl_producer_put(p, &e, &r), 0);
            assert_true(r.sequence > maxseq);
            assert_true(r.sequence > last[r.shard_index]);
            last[r.shard_index] = r.sequence;
            for (int j = 0; j < i; j++) assert_true(seen[j] != r.sequence);
            seen[i] = r.sequence;
            if (r.sequence > round_max) round_max = r.sequence;
        }
        maxseq = round_max;
        sl_producer_close(p);
        assert_int_equal(sl_stream_close(s), 0);
        for (int sh = 0; sh < 2; sh++) {
            char *d = tu_path("%s/sq/shardId-%012d", (char *)*state, sh);
            tu_rmrf(d);
            assert_int_equal(mkdir(d, 0700), 0);
            free(d);
        }
    }
    /* both reservation slots damaged: numbers resume far above the data */
    s = tu_open(*state, "sq", NULL);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    uint64_t before = tu_put(p, "x", 0);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    char *seq = tu_path("%s/sq/SEQ", (char *)*state);
    tu_flip_byte(seq, 20);
    tu_flip_byte(seq, 4096 + 20);
    tu_reports rep = {0};
    tu_opts o = {.reports = &rep};
    s = tu_open(*state, "sq", &o);
    assert_int_equal(rep.count, 1);
    assert_non_null(strstr(rep.last, "SEQ"));
    assert_int_equal(sl_producer_open(&p, s), 0);
    assert_true(tu_put(p, "x", 1) > before + (1ull << 31));
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    free(seq);
}

static void permissions_and_layout(void **state)
{
    char *root = tu_path("%s/new-root", (char *)*state);
    sl_stream_config c = base_cfg("perm");
    sl_stream *s;
    mode_t old = umask(0);                    /* the library must not rely on it */
    assert_int_equal(sl_stream_create(&s, root, &c, NULL), 0);
    umask(old);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    tu_put(p, "k", 1);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    const char *dirs[] = {"", "/perm", "/perm/shardId-000000000000"};
    for (int i = 0; i < 3; i++) {
        char *d = tu_path("%s%s", root, dirs[i]);
        struct stat st;
        assert_int_equal(stat(d, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
        free(d);
    }
    const char *files[] = {"MANIFEST", "SEQ", "LOCK", "WAKE", "shardId-000000000000/0000000000000001.seg"};
    for (int i = 0; i < 5; i++) {
        char *f = tu_path("%s/perm/%s", root, files[i]);
        struct stat st;
        assert_int_equal(stat(f, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);
        free(f);
    }
    /* no temporary leftovers */
    char *d = tu_path("%s/perm", root);
    assert_int_equal(tu_count_files(d, ".tmp"), 0);
    free(d);
    assert_int_equal(tu_count_files(root, NULL), 1);
    free(root);
}

static void bad_arguments(void **state)
{
    sl_stream *s = (sl_stream *)state;
    assert_int_equal(sl_stream_open(NULL, *state, "x", NULL), SL_EINVAL);
    assert_int_equal(sl_stream_open(&s, NULL, "x", NULL), SL_EINVAL);
    assert_null(s);
    assert_int_equal(sl_stream_open(&s, *state, "no/such", NULL), SL_EVALIDATION);
    assert_int_equal(sl_stream_open(&s, *state, "missing", NULL), SL_ENOTFOUND);
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    sl_stream_config c = base_cfg("x");
    assert_int_equal(sl_stream_create(NULL, *state, &c, NULL), 0);
    o.version = 99;
    assert_int_equal(sl_stream_open(&s, *state, "x", &o), SL_EINVAL);
    o = (sl_open_opts)SL_OPEN_OPTS_INIT;
    o.flags = 0x80;
    assert_int_equal(sl_stream_open(&s, *state, "x", &o), SL_EINVAL);
    o = (sl_open_opts)SL_OPEN_OPTS_INIT;
    o.durability = (sl_durability)8;
    assert_int_equal(sl_stream_open(&s, *state, "x", &o), SL_EVALIDATION);
    sl_clock bad = {SL_CLOCK_VERSION, NULL, NULL};
    o = (sl_open_opts)SL_OPEN_OPTS_INIT;
    o.clock = &bad;
    assert_int_equal(sl_stream_open(&s, *state, "x", &o), SL_EINVAL);
    assert_int_equal(sl_stream_close(NULL), 0);
    assert_int_equal(sl_stream_sync(NULL), SL_EINVAL);
    assert_int_equal(sl_stream_list(NULL, *state), SL_EINVAL);
    /* the durability override at open */
    o = (sl_open_opts)SL_OPEN_OPTS_INIT;
    o.durability = SL_DURABILITY_ALWAYS;
    assert_int_equal(sl_stream_open(&s, *state, "x", &o), 0);
    sl_stream_desc *d;
    assert_int_equal(sl_stream_describe(&d, s), 0);
    assert_int_equal(d->durability, SL_DURABILITY_ALWAYS);
    sl_stream_desc_free(d);
    assert_int_equal(sl_stream_close(s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(create_and_describe, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(config_rules, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(list_and_delete, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(second_writer_refused, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(read_only_follower_in_another_process, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(reopen_keeps_everything, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(sequence_never_reused, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(sequence_space_ends_loudly, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(permissions_and_layout, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(bad_arguments, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests_name("stream", tests, NULL, NULL);
}
