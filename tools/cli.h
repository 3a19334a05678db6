/*
** cli.h -- what the shardlog tool's files share (tools/).
**
** main.c parses the command line into a `cli` (global options, then the
** subcommand's --name value pairs, checked against the subcommand's table),
** and holds the helpers every subcommand uses: opening streams, reading
** option values, JSON output (jansson), base64 (libcrypto), times, a
** progress bar.  cmd_stream.c has the control plane, cmd_data.c puts and
** reads, cmd_ops.c stats, cost, advice, verification and maintenance.
**
** Exit status: 0 done; 1 the library or the system failed (not found, I/O,
** locked, key); 2 bad usage or input (unknown option, a value that does
** not parse, or one the library rejects as invalid); 3 `verify` found
** damage.
*/
#ifndef SHARDLOG_CLI_H
#define SHARDLOG_CLI_H

#include <shardlog.h>

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define EXIT_USAGE 2
#define EXIT_DAMAGE 3

typedef struct opt {
    const char *name;                /* without the leading "--" */
    int has_arg;                     /* 1: takes a value; 0: a flag */
    const char *help;
} opt;

typedef struct cli cli;
typedef struct cmd {
    const char *name;
    int (*run)(cli *c);
    const opt *opts;                 /* NULL-terminated */
    const char *summary;             /* one line */
    const char *usage;               /* the arguments, for --help */
    const char *details;             /* more, for --help (may be NULL) */
} cmd;

struct cli {
    const cmd *cmd;
    const char *root;                /* --root or $SHARDLOG_ROOT */
    bool json;                       /* --output json */
    const char *key_file;            /* --key-file or $SHARDLOG_KEY_FILE */
    sl_key_provider *kp;             /* opened from key_file on demand */
    size_t nval;
    const char *names[64];           /* the subcommand's options given */
    const char *vals[64];            /* their values (NULL for flags) */
};

/* Options. */
const char *arg_str(cli *c, const char *name);            /* NULL if absent */
bool arg_flag(cli *c, const char *name);
const char *arg_need(cli *c, const char *name);           /* usage error if absent */
uint64_t arg_u64(cli *c, const char *name, uint64_t def, uint64_t min, uint64_t max);
int64_t arg_time_ms(cli *c, const char *name, int64_t def); /* ms, s or ISO 8601 */

/* Failing: print "shardlog <cmd>: ..." to stderr and exit. */
_Noreturn void usage_fail(cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
_Noreturn void lib_fail(cli *c, int rc, const void *h, const char *what);
/* Check a library call: exit (2 for invalid input, 1 otherwise) on error. */
#define CK(c, call, h, what)                                                   \
    do {                                                                       \
        int ck_rc_ = (call);                                                   \
        if (ck_rc_ < 0) lib_fail((c), ck_rc_, (h), (what));                    \
    } while (0)

/* Streams: open --stream-name under the root, read-only or for writing
** (with the key provider of --key-file when one is given). */
sl_stream *open_stream(cli *c, bool write);
const sl_key_provider *keys(cli *c);                      /* NULL without --key-file */
void close_stream(cli *c, sl_stream *s);

/* Output. */
void json_print(json_t *v);                               /* steals v; one line */
char *b64_encode(const void *p, size_t n);                /* malloc'd */
int b64_decode(const char *s, unsigned char **out, size_t *n); /* 0 or -1 */
char *iso_time(char buf[40], int64_t ms);                 /* 2026-11-26T06:00:00.123Z */
const char *seq_str(char buf[SL_SEQ_STR_MAX], uint64_t seq);
bool printable(const void *p, size_t n);                  /* UTF-8 text without controls */
char *human_bytes(char buf[32], double n);                /* 1.5 MiB */
const char *mode_name(sl_stream_mode m);
/* A progress bar on stderr when it is a terminal (and not --output json);
** nothing otherwise.  done == total ends the line. */
void progress(cli *c, const char *what, uint64_t done, uint64_t total);

/* put-records' JSON Lines input (cmd_data.c): parse and check one line
** into an entry that owns its strings.  0; -1, bad input, with *why a
** malloc'd message without the "line N: " prefix (NULL without memory);
** -2, out of memory.  On failure *out holds nothing.  (Also run by
** fuzz/fuzz_jsonl.c.) */
typedef struct pentry {
    char *key, *ehk;
    unsigned char *data;
    size_t len;
} pentry;
int put_entry_parse(const char *line, pentry *out, char **why);
void pentry_free(pentry *e);

/* The subcommands. */
int cmd_create_stream(cli *c);
int cmd_delete_stream(cli *c);
int cmd_describe_stream(cli *c);
int cmd_describe_stream_summary(cli *c);
int cmd_list_streams(cli *c);
int cmd_list_shards(cli *c);
int cmd_increase_retention(cli *c);
int cmd_decrease_retention(cli *c);
int cmd_split_shard(cli *c);
int cmd_merge_shards(cli *c);
int cmd_update_shard_count(cli *c);
int cmd_register_consumer(cli *c);
int cmd_deregister_consumer(cli *c);
int cmd_list_consumers(cli *c);
int cmd_start_encryption(cli *c);
int cmd_stop_encryption(cli *c);
int cmd_create_key_file(cli *c);
int cmd_put_record(cli *c);
int cmd_put_records(cli *c);
int cmd_get_records(cli *c);
int cmd_tail(cli *c);
int cmd_stats(cli *c);
int cmd_cost(cli *c);
int cmd_advise(cli *c);
int cmd_verify(cli *c);
int cmd_compact(cli *c);
int cmd_metrics(cli *c);

/* Shard JSON in the AWS CLI's shape. */
json_t *shard_json(const sl_shard_info *si);

#endif
