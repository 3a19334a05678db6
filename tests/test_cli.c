/*
** test_cli.c -- the shardlog tool, run as a user runs it: a child process
** per command (fork + exec of the built binary), its standard output and
** error captured, its exit status checked.  Covers: a round trip through
** put-records (JSON Lines) and get-records; `tail` in one process seeing a
** record put by another; `verify` on a clean and a damaged stream; `cost`
** on a workload with known rates, against figures computed by hand; every
** command rejecting bad input with exit status 2 and a message; and
** `--output json` parsed by a JSON parser.
*/
#include "testutil.h"

#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#ifndef SHARDLOG_CLI
#error "build through the Makefile: it names the tool's path"
#endif

typedef struct run_out {
    int status;                       /* exit status, or 128 + signal */
    char *out, *err;
} run_out;

static char *slurp(const char *path)
{
    char *b = NULL;
    size_t n = 0;
    if (sl__os_read_file(path, &b, &n, 64u << 20) != 0) return strdup("");
    return b;
}

static void run_free(run_out *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

/* Run the tool with argv (NULL-terminated, without the program name) and
** `in` on its standard input (NULL: /dev/null), under --root root. */
static run_out run_v(const char *root, const char *in, const char *const *argv)
{
    char *op = tu_path("%s/.out", root), *ep = tu_path("%s/.err", root),
         *ip = tu_path("%s/.in", root);
    FILE *f = fopen(ip, "w");
    assert_non_null(f);
    if (in) fputs(in, f);
    fclose(f);
    const char *args[64];
    size_t n = 0;
    args[n++] = SHARDLOG_CLI;
    args[n++] = "--root";
    args[n++] = root;
    for (size_t i = 0; argv[i]; i++) args[n++] = argv[i];
    args[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen(ip, "r", stdin) || !freopen(op, "w", stdout) || !freopen(ep, "w", stderr))
            _exit(99);
        unsetenv("SHARDLOG_ROOT");
        unsetenv("SHARDLOG_KEY_FILE");
        unsetenv("SHARDLOG_PRICES");
        execv(SHARDLOG_CLI, (char *const *)args);
        _exit(98);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    run_out r;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.out = slurp(op);
    r.err = slurp(ep);
    free(op);
    free(ep);
    free(ip);
    return r;
}
#define RUN(root, in, ...) run_v((root), (in), (const char *const[]){__VA_ARGS__, NULL})

static void expect_ok(const run_out *r)
{
    if (r->status != 0) fail_msg("exit %d; stderr: %s; stdout: %s", r->status, r->err, r->out);
}

/* Parse the tool's JSON output (one document), asserting it parses. */
static json_t *parse_json(const run_out *r)
{
    json_error_t e;
    json_t *j = json_loads(r->out, 0, &e);
    if (!j) fail_msg("not JSON (%s): %s", e.text, r->out);
    return j;
}

/* ---- put-records -> get-records --------------------------------------------- */

static void put_records_then_get_records_round_trip(void **state)
{
    const char *root = *state;
    run_out r = RUN(root, NULL, "create-stream", "--stream-name", "rt", "--shard-count", "1");
    expect_ok(&r);
    run_free(&r);
    /* text, base64 with every byte value, an empty record, a key with UTF-8 */
    unsigned char bin[256];
    for (int i = 0; i < 256; i++) bin[i] = (unsigned char)i;
    char b64[400];
    EVP_EncodeBlock((unsigned char *)b64, bin, sizeof bin);
    char *jsonl = tu_path("{\"PartitionKey\":\"user-1\",\"Text\":\"hello, world\"}\n"
                          "\n"
                          "{\"PartitionKey\":\"bin\",\"Data\":\"%s\"}\n"
                          "{\"PartitionKey\":\"\\u00e9t\\u00e9\",\"Text\":\"\"}\n"
                          "{\"PartitionKey\":\"k\",\"Data\":\"aGk=\",\"ExplicitHashKey\":\"7\"}\n",
                          b64);
    char *file = tu_path("%s/records.jsonl", root);
    FILE *f = fopen(file, "w");
    fputs(jsonl, f);
    fclose(f);
    r = RUN(root, NULL, "--output", "json", "put-records", "--stream-name", "rt", "--file", file);
    expect_ok(&r);
    json_t *j = parse_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "FailedRecordCount")), 0);
    assert_int_equal(json_array_size(json_object_get(j, "Records")), 4);
    json_decref(j);
    run_free(&r);
    /* the same from standard input, as a table */
    r = RUN(root, "{\"PartitionKey\":\"stdin\",\"Text\":\"from stdin\"}\n", "put-records",
            "--stream-name", "rt");
    expect_ok(&r);
    assert_non_null(strstr(r.out, "1 records, 0 failed"));
    run_free(&r);

    r = RUN(root, NULL, "--output", "json", "get-records", "--stream-name", "rt", "--shard-id",
            "shardId-000000000000", "--shard-iterator-type", "TRIM_HORIZON", "--limit", "100");
    expect_ok(&r);
    j = parse_json(&r);
    json_t *recs = json_object_get(j, "Records");
    assert_int_equal(json_array_size(recs), 5);
    const char *want_key[] = {"user-1", "bin", "\xc3\xa9t\xc3\xa9", "k", "stdin"};
    for (size_t i = 0; i < 5; i++) {
        json_t *x = json_array_get(recs, i);
        assert_string_equal(json_string_value(json_object_get(x, "PartitionKey")), want_key[i]);
        assert_non_null(json_object_get(x, "SequenceNumber"));
        assert_non_null(json_object_get(x, "ApproximateArrivalTimestamp"));
    }
    assert_string_equal(json_string_value(json_object_get(json_array_get(recs, 0), "Data")),
                        "aGVsbG8sIHdvcmxk");            /* "hello, world" */
    assert_string_equal(json_string_value(json_object_get(json_array_get(recs, 1), "Data")), b64);
    assert_string_equal(json_string_value(json_object_get(json_array_get(recs, 2), "Data")), "");
    assert_string_equal(json_string_value(json_object_get(json_array_get(recs, 3), "Data")), "aGk=");
    /* continue after the last one: nothing more */
    const char *last = json_string_value(json_object_get(j, "LastSequenceNumber"));
    assert_non_null(last);
    char lastbuf[32];
    snprintf(lastbuf, sizeof lastbuf, "%s", last);
    json_decref(j);
    run_free(&r);
    r = RUN(root, NULL, "get-records", "--stream-name", "rt", "--shard-id",
            "shardId-000000000000", "--shard-iterator-type", "AFTER_SEQUENCE_NUMBER",
            "--starting-sequence-number", lastbuf);
    expect_ok(&r);
    assert_non_null(strstr(r.out, "-- 0 records"));
    run_free(&r);
    /* the text table shows text as text and binary as base64 */
    r = RUN(root, NULL, "get-records", "--stream-name", "rt", "--shard-id",
            "shardId-000000000000");
    expect_ok(&r);
    assert_non_null(strstr(r.out, " user-1 hello, world\n"));
    assert_non_null(strstr(r.out, "base64:"));
    run_free(&r);
    free(jsonl);
    free(file);
}

/* ---- tail ---------------------------------------------------------------------- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* tail in one process (read-only) sees what put-record in another writes:
** the line appears within a second of the put returning. */
static void tail_sees_another_process(void **state)
{
    const char *root = *state;
    run_out r = RUN(root, NULL, "create-stream", "--stream-name", "tl", "--shard-count", "2");
    expect_ok(&r);
    run_free(&r);
    for (int whole = 0; whole < 2; whole++) {
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            dup2(pfd[1], 1);
            close(pfd[0]);
            close(pfd[1]);
            if (whole)
                execl(SHARDLOG_CLI, SHARDLOG_CLI, "--root", root, "tail", "--stream-name", "tl",
                      "--count", "1", "--timeout", "20", (char *)NULL);
            else
                execl(SHARDLOG_CLI, SHARDLOG_CLI, "--root", root, "tail", "--stream-name", "tl",
                      "--shard-id", "shardId-000000000001", "--count", "1", "--timeout", "20",
                      (char *)NULL);
            _exit(98);
        }
        close(pfd[1]);
        /* give tail time to open at LATEST: the record must come after it;
        ** poll for readiness the only way the tool offers -- retry puts
        ** until one is seen */
        char line[4096] = "";
        size_t got = 0;
        int64_t put_done = 0;
        for (int attempt = 0; attempt < 50 && !strchr(line, '\n'); attempt++) {
            /* partition key "b" goes to shard 1 of 2 */
            r = RUN(root, NULL, "put-record", "--stream-name", "tl", "--partition-key", "b",
                    "--data", "live record");
            expect_ok(&r);
            run_free(&r);
            put_done = mono_ms();
            struct pollfd p = {pfd[0], POLLIN, 0};
            while (poll(&p, 1, 1000) == 1 && !strchr(line, '\n')) {
                ssize_t k = read(pfd[0], line + got, sizeof line - 1 - got);
                if (k <= 0) break;
                got += (size_t)k;
                line[got] = '\0';
            }
        }
        int64_t seen = mono_ms();
        assert_non_null(strchr(line, '\n'));
        assert_non_null(strstr(line, " b live record\n"));
        if (seen - put_done > 1000) fail_msg("tail took %lld ms", (long long)(seen - put_done));
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        close(pfd[0]);
    }
}

/* ---- verify ------------------------------------------------------------------------ */

static void verify_clean_and_damaged(void **state)
{
    const char *root = *state;
    tu_opts o = {.shards = 1};
    sl_stream *s = tu_create(root, "vf", &o);     /* 64 KiB segments */
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    for (int i = 0; i < 3000; i++) tu_put(p, "key", i);
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    assert_true(tu_nsegs(root, "vf", 0) >= 2);
    run_out r = RUN(root, NULL, "verify", "--stream-name", "vf");
    expect_ok(&r);
    assert_non_null(strstr(r.out, "ok: "));
    run_free(&r);
    char *seg = tu_seg_path(root, "vf", 0, 1);
    tu_flip_byte(seg, SL_SEG_HDR + 100);
    free(seg);
    r = RUN(root, NULL, "verify", "--stream-name", "vf");
    assert_int_equal(r.status, 3);
    assert_non_null(strstr(r.out, "DAMAGE"));
    assert_non_null(strstr(r.out, "0000000000000001"));
    assert_non_null(strstr(r.out, "DAMAGED"));
    run_free(&r);
    r = RUN(root, NULL, "--output", "json", "verify", "--stream-name", "vf");
    assert_int_equal(r.status, 3);
    json_t *j = parse_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "Status")), "DAMAGED");
    assert_true(json_array_size(json_object_get(j, "Damage")) >= 1);
    json_decref(j);
    run_free(&r);
}

/* ---- cost ------------------------------------------------------------------------- */

static double num(json_t *j, const char *a, const char *b)
{
    json_t *x = json_object_get(json_object_get(j, a), b);
    if (!json_is_number(x)) fail_msg("%s.%s is not a number", a, b);
    return json_number_value(x);
}

/* A workload with known rates, written with a virtual clock an hour ago:
** 100 seconds, 10 records a second, each 1 key byte + 999 data bytes.
**   seconds 100, records 1,000, bytes 1,000,000; a month of 730 h scales
**   by f = 730 * 3600 / 100 = 26,280.
**   provisioned, 1 shard: shard-hours 730 * 0.015 = 10.95; PUT units (one
**     25 KB unit a record) 1,000 * f / 1e6 = 26.28 M * 0.014 = 0.36792;
**     retention 24 h and no consumers: nothing else; total 11.31792.
**   on-demand: stream-hours 730 * 0.04 = 29.20; in: each record rounds up
**     to 1 KiB, 1,000 KiB * 1024 * f / 2^30 = 25.06256103515625 GB * 0.08
**     = 2.0050048828125; out (one reader): 1e6 * f / 2^30 =
**     24.475157260894775 GB * 0.04 = 0.979006290435791; total
**     32.184011173248294. */
static void cost_of_a_known_workload(void **state)
{
    const char *root = *state;
    sl_vclock *vc;
    int64_t t0 = ((int64_t)time(NULL) - 3600) * 1000;
    assert_int_equal(sl_vclock_new(&vc, t0), 0);
    tu_opts o = {.shards = 1, .clock = sl_vclock_clock(vc)};
    sl_stream *s = tu_create(root, "bill", &o);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    char data[999];
    memset(data, 'x', sizeof data);
    for (int sec = 0; sec < 100; sec++) {
        for (int i = 0; i < 10; i++) assert_int_equal(sl_put(p, "k", data, sizeof data, NULL), 0);
        sl_vclock_advance(vc, 1000);
    }
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    sl_vclock_free(vc);

    run_out r = RUN(root, NULL, "--output", "json", "cost", "--stream-name", "bill");
    expect_ok(&r);
    json_t *j = parse_json(&r);
    assert_true(fabs(num(j, "Workload", "Seconds") - 100) < 1e-9);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "Workload"), "Records")),
                     1000);
    assert_true(fabs(num(j, "Provisioned", "ShardHours") - 10.95) < 1e-9);
    assert_true(fabs(num(j, "Provisioned", "PutPayloadUnits") - 0.36792) < 1e-9);
    assert_true(fabs(num(j, "Provisioned", "ExtendedRetention")) < 1e-12);
    assert_true(fabs(num(j, "Provisioned", "Total") - 11.31792) < 1e-9);
    assert_true(fabs(num(j, "OnDemand", "StreamHours") - 29.20) < 1e-9);
    assert_true(fabs(num(j, "OnDemand", "DataIn") - 2.0050048828125) < 1e-9);
    assert_true(fabs(num(j, "OnDemand", "DataOut") - 0.979006290435791) < 1e-9);
    assert_true(fabs(num(j, "OnDemand", "Total") - 32.184011173248294) < 1e-9);
    json_decref(j);
    run_free(&r);
    /* the table shows the same figures, rounded to cents */
    r = RUN(root, NULL, "cost", "--stream-name", "bill");
    expect_ok(&r);
    assert_non_null(strstr(r.out, "10.95"));
    assert_non_null(strstr(r.out, "11.32"));
    assert_non_null(strstr(r.out, "32.18"));
    run_free(&r);
    /* an edited price table: shard-hours at 0.03 doubles that line */
    char *pf = tu_path("%s/prices.json", root);
    FILE *f = fopen(pf, "w");
    fputs("{\"shard_hour\": 0.03}\n", f);
    fclose(f);
    r = RUN(root, NULL, "--output", "json", "cost", "--stream-name", "bill", "--prices", pf);
    expect_ok(&r);
    j = parse_json(&r);
    assert_true(fabs(num(j, "Provisioned", "ShardHours") - 21.90) < 1e-9);
    json_decref(j);
    run_free(&r);
    /* the default table printed is the one shipped in tools/prices.json */
    r = RUN(root, NULL, "cost", "--print-prices");
    expect_ok(&r);
    json_t *printed = parse_json(&r);
    json_error_t e;
    json_t *shipped = json_load_file(SHARDLOG_PRICES, 0, &e);
    assert_non_null(shipped);
    assert_true(json_equal(printed, shipped));
    json_decref(printed);
    json_decref(shipped);
    run_free(&r);
    /* advice: 10 records a second fits one shard; provisioned is cheaper */
    r = RUN(root, NULL, "--output", "json", "advise", "--stream-name", "bill");
    expect_ok(&r);
    j = parse_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "ShardsNeeded")), 1);
    assert_string_equal(json_string_value(json_object_get(j, "CheaperMode")), "PROVISIONED");
    json_decref(j);
    run_free(&r);
    free(pf);
}

/* ---- bad input ------------------------------------------------------------------------ */

static void bad_input_exits_2_with_a_message(void **state)
{
    const char *root = *state;
    run_out r = RUN(root, NULL, "create-stream", "--stream-name", "ok");
    expect_ok(&r);
    run_free(&r);
    static const char *const cases[][12] = {
        {"no-such-command"},
        {"--bogus", "list-streams"},
        {"list-streams", "--bogus"},
        {"list-streams", "extra"},
        {"create-stream"},
        {"create-stream", "--stream-name", "bad name!"},
        {"create-stream", "--stream-name", "x", "--shard-count", "0"},
        {"create-stream", "--stream-name", "x", "--shard-count", "abc"},
        {"create-stream", "--stream-name", "x", "--stream-mode", "FAST"},
        {"create-stream", "--stream-name", "x", "--kms-key-id", "k"},
        {"create-stream", "--stream-name", "x", "--durability", "maybe"},
        {"create-stream", "--stream-name", "x", "--stream-name", "y"},
        {"delete-stream"},
        {"describe-stream"},
        {"describe-stream-summary", "--stream-name"},
        {"list-shards", "--stream-name", "ok", "--shard-id", "x"},
        {"increase-stream-retention-period", "--stream-name", "ok"},
        {"increase-stream-retention-period", "--stream-name", "ok", "--retention-period-hours", "5"},
        {"decrease-stream-retention-period", "--stream-name", "ok", "--retention-period-hours", "-1"},
        {"split-shard", "--stream-name", "ok", "--shard-to-split", "shardId-000000000000"},
        {"split-shard", "--stream-name", "ok", "--shard-to-split", "shardId-000000000000",
         "--new-starting-hash-key", "abc"},
        {"merge-shards", "--stream-name", "ok", "--shard-to-merge", "shardId-000000000000"},
        {"update-shard-count", "--stream-name", "ok", "--target-shard-count", "99999"},
        {"update-shard-count", "--stream-name", "ok", "--target-shard-count", "2",
         "--scaling-type", "FANCY"},
        {"register-stream-consumer", "--stream-name", "ok"},
        {"register-stream-consumer", "--stream-name", "ok", "--consumer-name", "bad name"},
        {"deregister-stream-consumer", "--stream-name", "ok"},
        {"list-stream-consumers"},
        {"start-stream-encryption", "--stream-name", "ok", "--key-id", "k"},
        {"stop-stream-encryption", "--stream-name", "ok"},
        {"create-key-file"},
        {"put-record", "--stream-name", "ok", "--partition-key", "k"},
        {"put-record", "--stream-name", "ok", "--data", "d"},
        {"put-record", "--stream-name", "ok", "--partition-key", "k", "--data", "d",
         "--data-base64", "ZA=="},
        {"put-record", "--stream-name", "ok", "--partition-key", "k", "--data-base64", "!!"},
        {"put-record", "--stream-name", "ok", "--partition-key", "", "--data", "d"},
        {"put-record", "--stream-name", "ok", "--partition-key", "k", "--data", "d",
         "--explicit-hash-key", "-5"},
        {"put-records", "--stream-name", "ok"},
        {"get-records", "--stream-name", "ok"},
        {"get-records", "--stream-name", "ok", "--shard-id", "shardId-000000000000",
         "--shard-iterator-type", "SIDEWAYS"},
        {"get-records", "--stream-name", "ok", "--shard-id", "shardId-000000000000",
         "--shard-iterator-type", "AT_SEQUENCE_NUMBER"},
        {"get-records", "--stream-name", "ok", "--shard-id", "shardId-000000000000",
         "--shard-iterator-type", "AT_TIMESTAMP", "--timestamp", "yesterday"},
        {"get-records", "--stream-name", "ok", "--shard-id", "shardId-000000000000",
         "--limit", "0"},
        {"tail", "--stream-name", "ok", "--from", "AT_SEQUENCE_NUMBER"},
        {"tail", "--stream-name", "ok", "--count", "x"},
        {"stats", "--stream-name", "ok", "--window", "-3"},
        {"stats", "--stream-name", "ok", "--watch", "0"},
        {"cost", "--stream-name", "ok", "--readers", "0"},
        {"cost", "--stream-name", "ok", "--prices", "/nonexistent/prices.json"},
        {"advise", "--stream-name", "ok", "--window", "soon"},
        {"verify"},
        {"compact", "--stream-name", "ok", "--budget-ms", "fast"},
        {"metrics"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *argv[16];
        size_t n = 0;
        for (; n < 12 && cases[i][n]; n++) argv[n] = cases[i][n];
        argv[n] = NULL;
        r = run_v(root, NULL, argv);
        if (r.status != 2 || !r.err[0]) {
            char all[512] = "";
            for (size_t k = 0; k < n; k++)
                snprintf(all + strlen(all), sizeof all - strlen(all), " %s", argv[k]);
            fail_msg("shardlog%s: exit %d (want 2), stderr '%s'", all, r.status, r.err);
        }
        assert_non_null(strstr(r.err, "shardlog"));
        run_free(&r);
    }
    /* bad JSON Lines: nothing is written, the line is named */
    static const char *const lines[] = {
        "not json\n", "[1,2]\n", "{\"Text\":\"no key\"}\n",
        "{\"PartitionKey\":\"k\"}\n", "{\"PartitionKey\":\"k\",\"Data\":\"@@@\"}\n",
        "{\"PartitionKey\":\"k\",\"Text\":\"a\",\"Data\":\"YQ==\"}\n",
        "{\"PartitionKey\":\"k\",\"Text\":\"a\",\"Colour\":\"red\"}\n",
        "{\"PartitionKey\":7,\"Text\":\"a\"}\n",
        "{\"PartitionKey\":\"k\",\"Text\":\"ok\"}\n{\"PartitionKey\":\"k\",\"Text\":5}\n",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        r = RUN(root, lines[i], "put-records", "--stream-name", "ok");
        if (r.status != 2 || !strstr(r.err, "line ")) fail_msg("'%s': exit %d, '%s'", lines[i],
                                                              r.status, r.err);
        run_free(&r);
    }
    r = RUN(root, NULL, "--output", "json", "get-records", "--stream-name", "ok", "--shard-id",
            "shardId-000000000000");
    expect_ok(&r);
    json_t *j = parse_json(&r);
    assert_int_equal(json_array_size(json_object_get(j, "Records")), 0);
    json_decref(j);
    run_free(&r);
    /* a stream that does not exist is a failure (1), not bad usage */
    r = RUN(root, NULL, "describe-stream", "--stream-name", "missing");
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.err, "ResourceNotFoundException"));
    run_free(&r);
    /* --help for every command exits 0 and names it */
    r = RUN(root, NULL, "--help");
    expect_ok(&r);
    assert_non_null(strstr(r.out, "put-records"));
    run_free(&r);
    r = RUN(root, NULL, "tail", "--help");
    expect_ok(&r);
    assert_non_null(strstr(r.out, "--shard-id"));
    run_free(&r);
}

/* ---- --output json everywhere -------------------------------------------------------- */

static void json_output_parses(void **state)
{
    const char *root = *state;
    run_out r = RUN(root, NULL, "create-stream", "--stream-name", "js", "--shard-count", "2");
    expect_ok(&r);
    run_free(&r);
    r = RUN(root, NULL, "register-stream-consumer", "--stream-name", "js", "--consumer-name",
            "c1");
    expect_ok(&r);
    run_free(&r);
    r = RUN(root, NULL, "--output", "json", "put-record", "--stream-name", "js", "--partition-key",
            "a", "--data", "x");
    expect_ok(&r);
    json_t *j = parse_json(&r);
    assert_non_null(json_object_get(j, "SequenceNumber"));
    assert_non_null(json_object_get(j, "ShardId"));
    json_decref(j);
    run_free(&r);
    static const char *const cmds[][8] = {
        {"describe-stream", "--stream-name", "js"},
        {"describe-stream-summary", "--stream-name", "js"},
        {"list-streams"},
        {"list-shards", "--stream-name", "js"},
        {"list-stream-consumers", "--stream-name", "js"},
        {"get-records", "--stream-name", "js", "--shard-id", "shardId-000000000001"},
        {"stats", "--stream-name", "js"},
        {"cost", "--stream-name", "js"},
        {"advise", "--stream-name", "js"},
        {"verify", "--stream-name", "js"},
        {"compact", "--stream-name", "js"},
        {"split-shard", "--stream-name", "js", "--shard-to-split", "shardId-000000000000",
         "--new-starting-hash-key", "1000"},
    };
    static const char *const must[] = {"StreamDescription", "StreamDescriptionSummary",
                                       "StreamNames", "Shards", "Consumers", "Records",
                                       "Shards", "Provisioned", "ShardsNeeded", "Status",
                                       "SegmentsDeleted", NULL};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        const char *argv[12] = {"--output", "json"};
        size_t n = 2;
        for (size_t k = 0; k < 8 && cmds[i][k]; k++) argv[n++] = cmds[i][k];
        argv[n] = NULL;
        r = run_v(root, NULL, argv);
        expect_ok(&r);
        j = parse_json(&r);
        if (must[i] && !json_object_get(j, must[i])) fail_msg("%s: no %s in %s", cmds[i][0],
                                                              must[i], r.out);
        json_decref(j);
        run_free(&r);
    }
    /* describe-stream's shards have the AWS CLI's shape */
    r = RUN(root, NULL, "--output", "json", "describe-stream", "--stream-name", "js");
    expect_ok(&r);
    j = parse_json(&r);
    json_t *sh = json_object_get(json_object_get(j, "StreamDescription"), "Shards");
    assert_int_equal(json_array_size(sh), 4);                     /* 2 + the split's 2 */
    json_t *c0 = json_array_get(sh, 2);
    assert_string_equal(json_string_value(json_object_get(c0, "ParentShardId")),
                        "shardId-000000000000");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(c0, "HashKeyRange"), "StartingHashKey")), "0");
    assert_non_null(json_object_get(json_object_get(json_array_get(sh, 0), "SequenceNumberRange"),
                                    "EndingSequenceNumber"));
    json_decref(j);
    run_free(&r);
    /* the Prometheus text names the stream */
    r = RUN(root, NULL, "metrics", "--stream-name", "js");
    expect_ok(&r);
    assert_non_null(strstr(r.out, "# TYPE "));
    assert_non_null(strstr(r.out, "stream=\"js\""));
    run_free(&r);
}

/* Base64 with an '=' anywhere but as padding at the end, or with blanks
** before or inside it, is refused, in put-records' Data and in
** --data-base64, and nothing is written (the decoder took such an '=' as
** zero bits and skipped leading blanks; found by fuzz/fuzz_jsonl.c). */
static void misplaced_base64_padding_refused(void **state)
{
    const char *root = *state;
    run_out r = RUN(root, NULL, "create-stream", "--stream-name", "b64");
    expect_ok(&r);
    run_free(&r);
    static const char *const bad[] = {"AA=A", "=AAA", "YQ==YQ==", "Y===", "jGW=tGQ=",
                                      "    YWJj", "YW  YWJj"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char line[128];
        snprintf(line, sizeof line, "{\"PartitionKey\":\"k\",\"Data\":\"%s\"}\n", bad[i]);
        r = RUN(root, line, "put-records", "--stream-name", "b64");
        if (r.status != 2 || !strstr(r.err, "line 1: \"Data\" is not a base64 string"))
            fail_msg("'%s': exit %d, '%s'", bad[i], r.status, r.err);
        run_free(&r);
        r = RUN(root, NULL, "put-record", "--stream-name", "b64", "--partition-key", "k",
                "--data-base64", bad[i]);
        if (r.status != 2 || !strstr(r.err, "--data-base64: not base64"))
            fail_msg("--data-base64 '%s': exit %d, '%s'", bad[i], r.status, r.err);
        run_free(&r);
    }
    /* padding where it belongs still decodes */
    r = RUN(root, "{\"PartitionKey\":\"k\",\"Data\":\"YWI=\"}\n{\"PartitionKey\":\"k\","
                  "\"Data\":\"YQ==\"}\n",
            "put-records", "--stream-name", "b64");
    expect_ok(&r);
    run_free(&r);
    r = RUN(root, NULL, "get-records", "--stream-name", "b64", "--shard-id",
            "shardId-000000000000");
    expect_ok(&r);
    assert_non_null(strstr(r.out, " k ab\n"));
    assert_non_null(strstr(r.out, " k a\n"));
    assert_non_null(strstr(r.out, "-- 2 records"));
    run_free(&r);
}

/* ---- encryption through the tool ------------------------------------------------------- */

static void encrypted_stream_through_the_tool(void **state)
{
    const char *root = *state;
    char *kf = tu_path("%s/master.key", root);
    run_out r = RUN(root, NULL, "create-key-file", "--path", kf);
    expect_ok(&r);
    run_free(&r);
    r = RUN(root, NULL, "--key-file", kf, "create-stream", "--stream-name", "sec",
            "--kms-key-id", "alias/telemetry");
    expect_ok(&r);
    run_free(&r);
    r = RUN(root, NULL, "--key-file", kf, "put-record", "--stream-name", "sec", "--partition-key",
            "p", "--data", "a secret prompt");
    expect_ok(&r);
    run_free(&r);
    r = RUN(root, NULL, "get-records", "--stream-name", "sec", "--shard-id",
            "shardId-000000000000");
    assert_int_equal(r.status, 1);                 /* no key: a key error */
    assert_non_null(strstr(r.err, "--key-file"));
    run_free(&r);
    r = RUN(root, NULL, "--key-file", kf, "get-records", "--stream-name", "sec", "--shard-id",
            "shardId-000000000000");
    expect_ok(&r);
    assert_non_null(strstr(r.out, "a secret prompt"));
    run_free(&r);
    r = RUN(root, NULL, "--key-file", kf, "stop-stream-encryption", "--stream-name", "sec");
    expect_ok(&r);
    run_free(&r);
    r = RUN(root, NULL, "--output", "json", "describe-stream-summary", "--stream-name", "sec");
    expect_ok(&r);
    assert_non_null(strstr(r.out, "\"EncryptionType\":\"NONE\""));
    run_free(&r);
    r = RUN(root, NULL, "--key-file", kf, "start-stream-encryption", "--stream-name", "sec",
            "--encryption-type", "KMS", "--key-id", "alias/other");
    expect_ok(&r);
    run_free(&r);
    r = RUN(root, NULL, "--key-file", kf, "verify", "--stream-name", "sec");
    expect_ok(&r);
    run_free(&r);
    free(kf);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(put_records_then_get_records_round_trip, tu_setup,
                                        tu_teardown),
        cmocka_unit_test_setup_teardown(tail_sees_another_process, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(verify_clean_and_damaged, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(cost_of_a_known_workload, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(bad_input_exits_2_with_a_message, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(json_output_parses, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(encrypted_stream_through_the_tool, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(misplaced_base64_padding_refused, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
