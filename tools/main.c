/*
** main.c -- the shardlog command-line tool: options, help, shared helpers.
**
**   shardlog [--root DIR] [--output json|table] [--key-file F] COMMAND [options]
**
** The commands mirror `aws kinesis` verbs and their option names
** (--stream-name, --shard-id, --shard-iterator-type, ...) where one exists.
** See cli.h for the exit codes.
*/
#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- the commands ------------------------------------------------------ */

#define STREAM {"stream-name", 1, "the stream (required)"}
#define END {NULL, 0, NULL}

static const opt o_create[] = {
    STREAM,
    {"shard-count", 1, "shards, 1..10000 (default 1; 4 for ON_DEMAND)"},
    {"stream-mode", 1, "PROVISIONED (default) or ON_DEMAND"},
    {"retention-period-hours", 1, "24..8760 (default 24)"},
    {"kms-key-id", 1, "encrypt at rest under this key id (needs --key-file)"},
    {"durability", 1, "none, interval (default) or always"},
    {"segment-bytes", 1, "segment file size (default 64 MiB)"},
    END};
static const opt o_stream[] = {STREAM, END};
static const opt o_delete[] = {STREAM, {"enforce-consumer-deletion", 0, "accepted (no effect)"}, END};
static const opt o_list_streams[] = {END};
static const opt o_retention[] = {STREAM, {"retention-period-hours", 1, "24..8760 (required)"}, END};
static const opt o_split[] = {
    STREAM, {"shard-to-split", 1, "shard id (required)"},
    {"new-starting-hash-key", 1, "decimal hash key (required)"}, END};
static const opt o_merge[] = {
    STREAM, {"shard-to-merge", 1, "shard id (required)"},
    {"adjacent-shard-to-merge", 1, "shard id (required)"}, END};
static const opt o_update[] = {
    STREAM, {"target-shard-count", 1, "1..10000 (required)"},
    {"scaling-type", 1, "UNIFORM_SCALING (the only one)"}, END};
static const opt o_register[] = {
    STREAM, {"consumer-name", 1, "the consumer (required)"},
    {"shared", 0, "a shared (polling) consumer instead of a dedicated one"}, END};
static const opt o_deregister[] = {STREAM, {"consumer-name", 1, "the consumer (required)"}, END};
static const opt o_start_enc[] = {
    STREAM, {"encryption-type", 1, "KMS (the only one)"},
    {"key-id", 1, "the master key id the data keys are wrapped under (required)"}, END};
static const opt o_stop_enc[] = {
    STREAM, {"encryption-type", 1, "KMS"}, {"key-id", 1, "accepted (as aws kinesis)"}, END};
static const opt o_keyfile[] = {{"path", 1, "the file to create (required)"}, END};
static const opt o_put[] = {
    STREAM, {"partition-key", 1, "the partition key (required)"},
    {"data", 1, "the data, as text"}, {"data-base64", 1, "the data, base64"},
    {"explicit-hash-key", 1, "a decimal hash key instead of the MD5 of the key"}, END};
static const opt o_put_records[] = {
    STREAM, {"file", 1, "JSON Lines to read instead of standard input"}, END};
static const opt o_get[] = {
    STREAM, {"shard-id", 1, "the shard (required)"},
    {"shard-iterator-type", 1,
     "TRIM_HORIZON (default), LATEST, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, AT_TIMESTAMP"},
    {"starting-sequence-number", 1, "for AT_/AFTER_SEQUENCE_NUMBER"},
    {"timestamp", 1, "for AT_TIMESTAMP: ISO 8601, or seconds since the epoch"},
    {"limit", 1, "records, 1..10000 (default 100)"}, END};
static const opt o_tail[] = {
    STREAM, {"shard-id", 1, "follow one shard (default: every shard, by lineage)"},
    {"from", 1, "LATEST (default) or TRIM_HORIZON"},
    {"count", 1, "stop after this many records"},
    {"timeout", 1, "stop after this many seconds without a record"}, END};
static const opt o_stats[] = {
    STREAM, {"window", 1, "seconds of arrivals to look at (default: everything retained)"},
    {"watch", 1, "refresh every N seconds until interrupted"}, END};
static const opt o_cost[] = {
    STREAM, {"window", 1, "seconds of arrivals to price (default: everything retained)"},
    {"prices", 1, "a price table (JSON; see --print-prices)"},
    {"readers", 1, "consumers that read everything (default: the registered ones, >= 1)"},
    {"shards", 1, "provisioned shard count to price (default: the open shards)"},
    {"print-prices", 0, "print the default price table and exit"}, END};
static const opt o_advise[] = {
    STREAM, {"window", 1, "seconds of arrivals to look at (default: everything retained)"},
    {"prices", 1, "a price table (JSON)"}, {"readers", 1, "as for cost"}, END};
static const opt o_verify[] = {STREAM, END};
static const opt o_compact[] = {STREAM, {"budget-ms", 1, "stop after this long (default: none)"}, END};

static const cmd cmds[] = {
    {"create-stream", cmd_create_stream, o_create, "create a stream", "--stream-name NAME [...]",
     "With --kms-key-id the stream is encrypted at rest; --key-file names the master key\n"
     "file (make one with create-key-file)."},
    {"delete-stream", cmd_delete_stream, o_delete, "delete a stream no writer has open",
     "--stream-name NAME", NULL},
    {"describe-stream", cmd_describe_stream, o_stream, "the configuration and every shard",
     "--stream-name NAME", NULL},
    {"describe-stream-summary", cmd_describe_stream_summary, o_stream,
     "the configuration, counts, disk use", "--stream-name NAME", NULL},
    {"list-streams", cmd_list_streams, o_list_streams, "the streams under the root", "", NULL},
    {"list-shards", cmd_list_shards, o_stream, "every shard, with lineage and sequence ranges",
     "--stream-name NAME", NULL},
    {"increase-stream-retention-period", cmd_increase_retention, o_retention,
     "raise the retention period", "--stream-name NAME --retention-period-hours H", NULL},
    {"decrease-stream-retention-period", cmd_decrease_retention, o_retention,
     "lower the retention period", "--stream-name NAME --retention-period-hours H", NULL},
    {"split-shard", cmd_split_shard, o_split, "split a shard at a hash key",
     "--stream-name NAME --shard-to-split ID --new-starting-hash-key KEY", NULL},
    {"merge-shards", cmd_merge_shards, o_merge, "merge two adjacent shards",
     "--stream-name NAME --shard-to-merge ID --adjacent-shard-to-merge ID", NULL},
    {"update-shard-count", cmd_update_shard_count, o_update, "scale to a shard count",
     "--stream-name NAME --target-shard-count N", NULL},
    {"register-stream-consumer", cmd_register_consumer, o_register,
     "register a consumer (dedicated, enhanced fan-out, unless --shared)",
     "--stream-name NAME --consumer-name C [--shared]", NULL},
    {"deregister-stream-consumer", cmd_deregister_consumer, o_deregister,
     "remove a consumer and its checkpoints", "--stream-name NAME --consumer-name C", NULL},
    {"list-stream-consumers", cmd_list_consumers, o_stream, "the registered consumers",
     "--stream-name NAME", NULL},
    {"start-stream-encryption", cmd_start_encryption, o_start_enc,
     "encrypt new records (needs --key-file)",
     "--stream-name NAME --encryption-type KMS --key-id ID", NULL},
    {"stop-stream-encryption", cmd_stop_encryption, o_stop_enc,
     "write new records in clear (needs --key-file)", "--stream-name NAME", NULL},
    {"create-key-file", cmd_create_key_file, o_keyfile,
     "write a new random master key file (0600) for --key-file", "--path FILE", NULL},
    {"put-record", cmd_put_record, o_put, "put one record",
     "--stream-name NAME --partition-key K (--data TEXT | --data-base64 B64)", NULL},
    {"put-records", cmd_put_records, o_put_records,
     "put records read as JSON Lines, 500 a batch",
     "--stream-name NAME [--file F] < records.jsonl",
     "Each line is an object: {\"PartitionKey\": \"k\", \"Data\": \"<base64>\"} as aws kinesis\n"
     "put-records takes it, or with \"Text\": \"...\" instead of \"Data\" for text, and an\n"
     "optional \"ExplicitHashKey\": \"<decimal>\".  Blank lines are skipped.  Prints each\n"
     "record's result; exits 1 if any record failed."},
    {"get-records", cmd_get_records, o_get, "read records from a shard",
     "--stream-name NAME --shard-id ID [--shard-iterator-type T] [--limit N]",
     "Opens the stream read-only, so a writer may run meanwhile.  Continue with\n"
     "AFTER_SEQUENCE_NUMBER and the LastSequenceNumber printed."},
    {"tail", cmd_tail, o_tail, "follow a stream (or a shard) like tail -f",
     "--stream-name NAME [--shard-id ID] [--from LATEST|TRIM_HORIZON]",
     "Read-only: another process writes.  Prints one line per record (text, or base64\n"
     "for binary data), or one JSON object per line with --output json."},
    {"stats", cmd_stats, o_stats, "per-shard load, throttles, hot shards, consumer lag",
     "--stream-name NAME [--window S] [--watch S]",
     "Load comes from the records' arrival times and sizes (what any writer put);\n"
     "'throttled' counts what Kinesis would have refused at 1,000 records/s or 1 MiB/s\n"
     "per shard.  A shard whose busiest second reached 80 % of a limit is marked HOT."},
    {"cost", cmd_cost, o_cost, "the monthly Kinesis bill of the observed workload",
     "--stream-name NAME [--window S] [--prices FILE] [--readers N] [--shards N]",
     "The workload's rates over the window observed, for a month of 730 hours, priced in\n"
     "both capacity modes.  Prices: us-east-1, from third-party sources dated 2023-09-21\n"
     "(AWS renders its page with JavaScript); edit a copy of --print-prices and pass it\n"
     "with --prices."},
    {"advise", cmd_advise, o_advise, "the shard count the observed peak needs, the cheaper mode",
     "--stream-name NAME [--window S] [--prices FILE]", NULL},
    {"verify", cmd_verify, o_verify, "check every segment; exit 3 on damage",
     "--stream-name NAME",
     "Checks headers, every record's checksum (and authentication tag, with --key-file),\n"
     "indexes, trailers and cold blocks.  Read-only: a writer may run meanwhile."},
    {"compact", cmd_compact, o_compact,
     "run maintenance now: retention, size cap, compaction, cold storage",
     "--stream-name NAME [--budget-ms MS]", NULL},
    {"metrics", cmd_metrics, o_stream, "the metrics in Prometheus text format",
     "--stream-name NAME", NULL},
};
#define NCMDS (sizeof cmds / sizeof cmds[0])

/* ---- failing ------------------------------------------------------------ */

void usage_fail(cli *c, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "shardlog%s%s: ", c && c->cmd ? " " : "", c && c->cmd ? c->cmd->name : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'shardlog %s--help'.\n", c && c->cmd ? c->cmd->name : "");
    if (c && c->cmd) fputc('\n', stderr);
    exit(EXIT_USAGE);
}

void lib_fail(cli *c, int rc, const void *h, const char *what)
{
    const char *msg = sl_errmsg(h);
    fprintf(stderr, "shardlog %s: %s: %s (%s)%s%s\n", c->cmd->name, what, sl_strerror(rc),
            sl_error_kinesis_name(rc), msg && *msg ? ": " : "", msg ? msg : "");
    exit(rc == SL_EVALIDATION || rc == SL_EINVAL ? EXIT_USAGE : 1);
}

/* ---- options ------------------------------------------------------------ */

static const opt *find_opt(const opt *opts, const char *name, size_t len)
{
    for (const opt *o = opts; o->name; o++)
        if (strlen(o->name) == len && !strncmp(o->name, name, len)) return o;
    return NULL;
}

const char *arg_str(cli *c, const char *name)
{
    for (size_t i = 0; i < c->nval; i++)
        if (!strcmp(c->names[i], name)) return c->vals[i] ? c->vals[i] : "";
    return NULL;
}

bool arg_flag(cli *c, const char *name) { return arg_str(c, name) != NULL; }

const char *arg_need(cli *c, const char *name)
{
    const char *v = arg_str(c, name);
    if (!v) usage_fail(c, "--%s is required", name);
    return v;
}

uint64_t arg_u64(cli *c, const char *name, uint64_t def, uint64_t min, uint64_t max)
{
    const char *v = arg_str(c, name);
    if (!v) return def;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (!*v || *end || errno || v[0] == '-' || x < min || x > max)
        usage_fail(c, "--%s: '%s' is not a whole number in %" PRIu64 "..%" PRIu64, name, v, min,
                   max);
    return x;
}

int64_t arg_time_ms(cli *c, const char *name, int64_t def)
{
    const char *v = arg_str(c, name);
    if (!v) return def;
    char *end;
    errno = 0;
    double sec = strtod(v, &end);
    if (*v && !*end && !errno && isfinite(sec) && sec >= 0 && sec < 1e13)
        return (int64_t)llround(sec * 1000.0);
    struct tm tm = {0};
    const char *rest = strptime(v, "%Y-%m-%dT%H:%M:%S", &tm);
    int ms = 0;
    if (rest && *rest == '.') {
        int digits = 0;
        for (rest++; *rest >= '0' && *rest <= '9'; rest++, digits++)
            if (digits < 3) ms = ms * 10 + (*rest - '0');
        for (; digits < 3; digits++) ms *= 10;
    }
    if (rest && *rest == 'Z') rest++;
    if (!rest || *rest)
        usage_fail(c, "--%s: '%s' is neither seconds since the epoch nor "
                      "YYYY-MM-DDTHH:MM:SS[.mmm][Z] (UTC)", name, v);
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/* ---- streams ------------------------------------------------------------ */

const sl_key_provider *keys(cli *c)
{
    if (!c->key_file) return NULL;
    if (!c->kp) CK(c, sl_keyfile_provider_open(&c->kp, c->key_file), NULL, c->key_file);
    return c->kp;
}

sl_stream *open_stream(cli *c, bool write)
{
    const char *name = arg_need(c, "stream-name");
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.flags = write ? 0 : SL_OPEN_READONLY;
    o.keys = keys(c);
    sl_stream *s = NULL;
    int rc = sl_stream_open(&s, c->root, name, &o);
    if (rc == SL_ELOCKED)
        fprintf(stderr, "shardlog %s: another process has stream '%s' open for writing; "
                        "this command needs the writer's lock\n", c->cmd->name, name);
    if (rc == SL_EKEY && !c->key_file)
        fprintf(stderr, "shardlog %s: stream '%s' is encrypted: pass --key-file FILE (or set "
                        "SHARDLOG_KEY_FILE)\n", c->cmd->name, name);
    CK(c, rc, NULL, "opening the stream");
    return s;
}

void close_stream(cli *c, sl_stream *s) { CK(c, sl_stream_close(s), s, "closing the stream"); }

/* ---- output ------------------------------------------------------------- */

void json_print(json_t *v)
{
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_PRESERVE_ORDER);
    if (t) {
        puts(t);
        free(t);
    }
    json_decref(v);
}

char *b64_encode(const void *p, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (!out) return NULL;
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

int b64_decode(const char *s, unsigned char **out, size_t *n)
{
    size_t len = strlen(s);
    while (len && (s[len - 1] == '\n' || s[len - 1] == ' ')) len--;
    if (len % 4 || len > INT_MAX) return -1;
    /* the alphabet only, and '=' only as padding at the end ("xx==",
    ** "xxx="): EVP_DecodeBlock skips leading blanks and takes an '='
    ** anywhere as zero bits, so "    AAAA" and "AA=A" would decode */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '+' || c == '/')
            continue;
        if (c == '=' && i + 2 >= len && s[len - 1] == '=') continue;
        return -1;
    }
    unsigned char *buf = malloc(len / 4 * 3 + 1);
    if (!buf) return -1;
    int got = len ? EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len) : 0;
    if (got < 0) {
        free(buf);
        return -1;
    }
    /* EVP_DecodeBlock counts the padding as data: take it off */
    if (len && s[len - 1] == '=') got--;
    if (len > 1 && s[len - 2] == '=') got--;
    *out = buf;
    *n = (size_t)got;
    return 0;
}

char *iso_time(char buf[40], int64_t ms)
{
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, 40 - n, ".%03dZ", (int)(((ms % 1000) + 1000) % 1000));
    return buf;
}

const char *seq_str(char buf[SL_SEQ_STR_MAX], uint64_t seq) { return sl_seq_format(buf, seq); }

bool printable(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n;) {
        unsigned char x = b[i];
        if (x < 0x80) {
            if ((x < 0x20 && x != '\t') || x == 0x7f) return false;
            i++;
            continue;
        }
        size_t k = x >= 0xf0 && x < 0xf5 ? 4 : x >= 0xe0 ? 3 : x >= 0xc2 && x < 0xe0 ? 2 : 0;
        if (!k || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if ((b[i + j] & 0xc0) != 0x80) return false;
        i += k;
    }
    return true;
}

char *human_bytes(char buf[32], double n)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (n >= 1024 && u < 4) n /= 1024, u++;
    snprintf(buf, 32, u ? "%.1f %s" : "%.0f %s", n, unit[u]);
    return buf;
}

const char *mode_name(sl_stream_mode m)
{
    return m == SL_STREAM_MODE_ON_DEMAND ? "ON_DEMAND" : "PROVISIONED";
}

void progress(cli *c, const char *what, uint64_t done, uint64_t total)
{
    if (c->json || !isatty(2) || !total) return;
    int width = 30, fill = (int)(done * (uint64_t)width / total);
    fprintf(stderr, "\r%s [%.*s%*s] %3d%% %" PRIu64 "/%" PRIu64, what, fill,
            "##############################", width - fill, "", (int)(done * 100 / total), done,
            total);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

/* ---- help and dispatch -------------------------------------------------- */

static void help_all(FILE *f)
{
    fprintf(f, "usage: shardlog [--root DIR] [--output json|table] [--key-file FILE] COMMAND "
               "[options]\n\n"
               "shardlog %s: a Kinesis-style stream log in a directory, no server.  The commands\n"
               "mirror `aws kinesis`.  --root (or SHARDLOG_ROOT) is the directory of streams;\n"
               "--key-file (or SHARDLOG_KEY_FILE) the master key of encrypted streams.\n\n",
            sl_version());
    for (size_t i = 0; i < NCMDS; i++) fprintf(f, "  %-34s %s\n", cmds[i].name, cmds[i].summary);
    fprintf(f, "\n'shardlog COMMAND --help' describes a command.  Exit status: 0 done, 1 failed,\n"
               "2 bad usage or input, 3 damage found (verify).\n");
}

static void help_cmd(const cmd *k)
{
    printf("usage: shardlog [global options] %s %s\n\n%s.\n", k->name, k->usage, k->summary);
    if (k->details) printf("\n%s\n", k->details);
    if (k->opts[0].name) printf("\noptions:\n");
    for (const opt *o = k->opts; o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s", o->name, o->has_arg ? " VALUE" : "");
        printf("  %-36s %s\n", left, o->help);
    }
    printf("\nglobal options: --root DIR, --output json|table, --key-file FILE, --help\n");
}

/* The options of one command: --name value, --name=value, --flag. */
static void parse(cli *c, int argc, char **argv, int i)
{
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || !a[2]) usage_fail(c, "unexpected argument '%s'", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const char *val = eq ? eq + 1 : NULL;
        if (len == 4 && !strncmp(name, "help", 4)) {
            help_cmd(c->cmd);
            exit(0);
        }
        /* global options are accepted after the command too */
        if ((len == 4 && !strncmp(name, "root", 4)) || (len == 6 && !strncmp(name, "output", 6)) ||
            (len == 8 && !strncmp(name, "key-file", 8))) {
            if (!val && ++i >= argc) usage_fail(c, "--%.*s needs a value", (int)len, name);
            const char *v = val ? val : argv[i];
            if (name[0] == 'r') c->root = v;
            else if (name[0] == 'k') c->key_file = v;
            else if (!strcmp(v, "json") || !strcmp(v, "table") || !strcmp(v, "text"))
                c->json = !strcmp(v, "json");
            else usage_fail(c, "--output: '%s' is not json or table", v);
            continue;
        }
        const opt *o = find_opt(c->cmd->opts, name, len);
        if (!o) usage_fail(c, "unknown option '--%.*s'", (int)len, name);
        if (o->has_arg && !val) {
            if (++i >= argc) usage_fail(c, "--%s needs a value", o->name);
            val = argv[i];
        }
        if (!o->has_arg && val) usage_fail(c, "--%s takes no value", o->name);
        for (size_t k = 0; k < c->nval; k++)
            if (!strcmp(c->names[k], o->name)) usage_fail(c, "--%s given twice", o->name);
        if (c->nval == sizeof c->names / sizeof c->names[0]) usage_fail(c, "too many options");
        c->names[c->nval] = o->name;
        c->vals[c->nval++] = val;
    }
}

int main(int argc, char **argv)
{
    cli c = {0};
    c.root = getenv("SHARDLOG_ROOT");
    c.key_file = getenv("SHARDLOG_KEY_FILE");
    if (c.key_file && !*c.key_file) c.key_file = NULL;
    int i = 1;
    for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
        const char *a = argv[i] + 2, *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        if (!strcmp(a, "help")) {
            help_all(stdout);
            return 0;
        }
        if (!strcmp(a, "version")) {
            printf("shardlog %s\n", sl_version());
            return 0;
        }
        if (!((len == 4 && !strncmp(a, "root", 4)) || (len == 6 && !strncmp(a, "output", 6)) ||
              (len == 8 && !strncmp(a, "key-file", 8))))
            usage_fail(NULL, "unknown option '%s'", argv[i]);
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) usage_fail(NULL, "%s needs a value", argv[i]);
        if (a[0] == 'r') c.root = v;
        else if (a[0] == 'k') c.key_file = v;
        else if (!strcmp(v, "json") || !strcmp(v, "table") || !strcmp(v, "text"))
            c.json = !strcmp(v, "json");
        else usage_fail(NULL, "--output: '%s' is not json or table", v);
    }
    if (i >= argc) {
        help_all(stderr);
        return EXIT_USAGE;
    }
    for (size_t k = 0; k < NCMDS; k++)
        if (!strcmp(cmds[k].name, argv[i])) c.cmd = &cmds[k];
    if (!c.cmd) usage_fail(NULL, "'%s' is not a command; 'shardlog --help' lists them", argv[i]);
    parse(&c, argc, argv, i + 1);
    if (!c.root || !*c.root) c.root = ".";
    int rc = c.cmd->run(&c);
    if (c.kp) sl_keyfile_provider_close(c.kp);
    return rc;
}
