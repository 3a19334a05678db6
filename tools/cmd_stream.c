/*
** cmd_stream.c -- the control plane: streams, shards, retention,
** resharding, consumers, encryption.  JSON output has the AWS CLI's field
** names (StreamDescription, Shards, HashKeyRange, ...).
*/
#include "cli.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const char *enc_name(sl_encryption e) { return e == SL_ENCRYPTION_KMS ? "KMS" : "NONE"; }

json_t *shard_json(const sl_shard_info *si)
{
    char a[SL_SEQ_STR_MAX], b[SL_SEQ_STR_MAX];
    json_t *j = json_object();
    json_object_set_new(j, "ShardId", json_string(si->shard_id));
    if (si->parent_shard_id[0])
        json_object_set_new(j, "ParentShardId", json_string(si->parent_shard_id));
    if (si->adjacent_parent_shard_id[0])
        json_object_set_new(j, "AdjacentParentShardId", json_string(si->adjacent_parent_shard_id));
    json_object_set_new(j, "HashKeyRange",
                        json_pack("{s:s,s:s}", "StartingHashKey", si->starting_hash_key,
                                  "EndingHashKey", si->ending_hash_key));
    json_t *r = json_pack("{s:s}", "StartingSequenceNumber", seq_str(a, si->starting_sequence));
    if (!si->open)
        json_object_set_new(r, "EndingSequenceNumber", json_string(seq_str(b, si->ending_sequence)));
    json_object_set_new(j, "SequenceNumberRange", r);
    return j;
}

static void shards_table(const sl_shard_info *sh, size_t n)
{
    printf("%-22s %-6s %-22s %-22s %12s %12s  %s\n", "shard", "state", "parent", "adjacent",
           "records", "bytes", "sequence numbers");
    for (size_t i = 0; i < n; i++) {
        const sl_shard_info *si = &sh[i];
        char a[SL_SEQ_STR_MAX], b[SL_SEQ_STR_MAX], hb[32];
        printf("%-22s %-6s %-22s %-22s %12" PRIu64 " %12s  %s..%s\n", si->shard_id,
               si->open ? "OPEN" : "CLOSED", si->parent_shard_id[0] ? si->parent_shard_id : "-",
               si->adjacent_parent_shard_id[0] ? si->adjacent_parent_shard_id : "-", si->records,
               human_bytes(hb, (double)si->bytes), seq_str(a, si->starting_sequence),
               si->open ? "" : seq_str(b, si->ending_sequence));
        printf("%-22s hash keys %s..%s\n", "", si->starting_hash_key, si->ending_hash_key);
    }
}

int cmd_create_stream(cli *c)
{
    sl_stream_config cfg = SL_STREAM_CONFIG_INIT;
    cfg.name = arg_need(c, "stream-name");
    cfg.shard_count = (uint32_t)arg_u64(c, "shard-count", 0, 1, SL_SHARDS_MAX);
    cfg.retention_hours =
        (uint32_t)arg_u64(c, "retention-period-hours", 0, SL_RETENTION_HOURS_MIN,
                          SL_RETENTION_HOURS_MAX);
    cfg.segment_bytes = arg_u64(c, "segment-bytes", 0, SL_SEGMENT_BYTES_MIN, SL_SEGMENT_BYTES_MAX);
    const char *m = arg_str(c, "stream-mode");
    if (m && !strcmp(m, "ON_DEMAND")) cfg.stream_mode = SL_STREAM_MODE_ON_DEMAND;
    else if (m && strcmp(m, "PROVISIONED")) usage_fail(c, "--stream-mode: '%s' is not "
                                                          "PROVISIONED or ON_DEMAND", m);
    const char *d = arg_str(c, "durability");
    if (d) {
        if (!strcmp(d, "none")) cfg.durability = SL_DURABILITY_NONE;
        else if (!strcmp(d, "interval")) cfg.durability = SL_DURABILITY_INTERVAL;
        else if (!strcmp(d, "always")) cfg.durability = SL_DURABILITY_ALWAYS;
        else usage_fail(c, "--durability: '%s' is not none, interval or always", d);
    }
    const char *kid = arg_str(c, "kms-key-id");
    if (kid) {
        if (!c->key_file) usage_fail(c, "--kms-key-id needs --key-file (the master key)");
        cfg.encryption_type = SL_ENCRYPTION_KMS;
        cfg.kms_key_id = kid;
    }
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.keys = keys(c);
    CK(c, sl_stream_create(NULL, c->root, &cfg, &o), NULL, "creating the stream");
    if (c->json) json_print(json_object());
    else printf("created stream %s under %s\n", cfg.name, c->root);
    return 0;
}

int cmd_delete_stream(cli *c)
{
    const char *name = arg_need(c, "stream-name");
    CK(c, sl_stream_delete(c->root, name), NULL, "deleting the stream");
    if (c->json) json_print(json_object());
    else printf("deleted stream %s\n", name);
    return 0;
}

static json_t *describe_json(const sl_stream_desc *d, bool shards, size_t consumers)
{
    char t[40];
    json_t *j = json_object();
    json_object_set_new(j, "StreamName", json_string(d->stream_name));
    json_object_set_new(j, "StreamStatus", json_string(d->stream_status));
    json_object_set_new(j, "StreamModeDetails",
                        json_pack("{s:s}", "StreamMode", mode_name(d->stream_mode)));
    if (shards) {
        json_t *a = json_array();
        for (size_t i = 0; i < d->shard_count; i++) json_array_append_new(a, shard_json(&d->shards[i]));
        json_object_set_new(j, "Shards", a);
        json_object_set_new(j, "HasMoreShards", json_false());
    }
    json_object_set_new(j, "RetentionPeriodHours", json_integer(d->retention_hours));
    json_object_set_new(j, "StreamCreationTimestamp", json_string(iso_time(t, d->created_ms)));
    json_object_set_new(j, "EncryptionType", json_string(enc_name(d->encryption_type)));
    if (d->kms_key_id[0]) json_object_set_new(j, "KeyId", json_string(d->kms_key_id));
    if (!shards) {
        json_object_set_new(j, "OpenShardCount", json_integer((json_int_t)d->open_shard_count));
        json_object_set_new(j, "ConsumerCount", json_integer((json_int_t)consumers));
    }
    /* shardlog's own, beside the AWS fields */
    json_object_set_new(j, "MaxRecordSizeInKiB", json_integer(d->max_record_size_kib));
    json_object_set_new(j, "DiskBytes", json_integer((json_int_t)d->disk_bytes));
    return j;
}

static int describe(cli *c, bool full)
{
    sl_stream *s = open_stream(c, false);
    sl_stream_desc *d;
    CK(c, sl_stream_describe(&d, s), s, "describing the stream");
    sl_consumer_list *cl;
    CK(c, sl_consumer_list_get(&cl, s), s, "listing consumers");
    if (c->json) {
        json_print(json_pack("{s:o}", full ? "StreamDescription" : "StreamDescriptionSummary",
                             describe_json(d, full, cl->count)));
    } else {
        char t[40], hb[32];
        printf("stream      %s (%s, %s)\n", d->stream_name, d->stream_status,
               mode_name(d->stream_mode));
        printf("created     %s\n", iso_time(t, d->created_ms));
        printf("shards      %zu open, %zu in all\n", d->open_shard_count, d->shard_count);
        printf("retention   %u hours\n", d->retention_hours);
        printf("encryption  %s%s%s\n", enc_name(d->encryption_type), d->kms_key_id[0] ? " " : "",
               d->kms_key_id);
        printf("consumers   %zu\n", cl->count);
        printf("disk        %s in segment files\n", human_bytes(hb, (double)d->disk_bytes));
        printf("records     up to %u KiB each; segments of %s\n", d->max_record_size_kib,
               human_bytes(hb, (double)d->segment_bytes));
        if (full) {
            printf("\n");
            shards_table(d->shards, d->shard_count);
        }
    }
    sl_consumer_list_free(cl);
    sl_stream_desc_free(d);
    close_stream(c, s);
    return 0;
}

int cmd_describe_stream(cli *c) { return describe(c, true); }
int cmd_describe_stream_summary(cli *c) { return describe(c, false); }

int cmd_list_streams(cli *c)
{
    sl_name_list *l;
    CK(c, sl_stream_list(&l, c->root), NULL, "listing streams");
    if (c->json) {
        json_t *a = json_array();
        for (size_t i = 0; i < l->count; i++) json_array_append_new(a, json_string(l->names[i]));
        json_print(json_pack("{s:o,s:b}", "StreamNames", a, "HasMoreStreams", 0));
    } else {
        for (size_t i = 0; i < l->count; i++) puts(l->names[i]);
    }
    sl_name_list_free(l);
    return 0;
}

int cmd_list_shards(cli *c)
{
    sl_stream *s = open_stream(c, false);
    sl_shard_list *l;
    CK(c, sl_stream_list_shards(&l, s), s, "listing shards");
    if (c->json) {
        json_t *a = json_array();
        for (size_t i = 0; i < l->count; i++) json_array_append_new(a, shard_json(&l->shards[i]));
        json_print(json_pack("{s:o}", "Shards", a));
    } else {
        shards_table(l->shards, l->count);
    }
    sl_shard_list_free(l);
    close_stream(c, s);
    return 0;
}

static int retention(cli *c, bool up)
{
    uint32_t h = (uint32_t)arg_u64(c, "retention-period-hours", 0, 0, UINT32_MAX);
    arg_need(c, "retention-period-hours");
    sl_stream *s = open_stream(c, true);
    CK(c, up ? sl_stream_increase_retention(s, h) : sl_stream_decrease_retention(s, h), s,
       up ? "increasing the retention period" : "decreasing the retention period");
    close_stream(c, s);
    if (c->json) json_print(json_object());
    else printf("retention period of %s: %u hours\n", arg_str(c, "stream-name"), h);
    return 0;
}

int cmd_increase_retention(cli *c) { return retention(c, true); }
int cmd_decrease_retention(cli *c) { return retention(c, false); }

/* After a reshard: the open shards, as a table or JSON. */
static void show_open(cli *c, sl_stream *s, const char *what)
{
    sl_shard_list *l;
    CK(c, sl_stream_list_shards(&l, s), s, "listing shards");
    if (c->json) {
        json_print(json_object());
    } else {
        size_t open = 0;
        for (size_t i = 0; i < l->count; i++) open += l->shards[i].open;
        printf("%s: %zu open shards\n", what, open);
        for (size_t i = 0; i < l->count; i++)
            if (l->shards[i].open)
                printf("  %s  %s..%s\n", l->shards[i].shard_id, l->shards[i].starting_hash_key,
                       l->shards[i].ending_hash_key);
    }
    sl_shard_list_free(l);
}

int cmd_split_shard(cli *c)
{
    const char *shard = arg_need(c, "shard-to-split"), *key = arg_need(c, "new-starting-hash-key");
    sl_stream *s = open_stream(c, true);
    CK(c, sl_stream_split_shard(s, shard, key), s, "splitting the shard");
    show_open(c, s, "split");
    close_stream(c, s);
    return 0;
}

int cmd_merge_shards(cli *c)
{
    const char *a = arg_need(c, "shard-to-merge"), *b = arg_need(c, "adjacent-shard-to-merge");
    sl_stream *s = open_stream(c, true);
    CK(c, sl_stream_merge_shards(s, a, b), s, "merging the shards");
    show_open(c, s, "merged");
    close_stream(c, s);
    return 0;
}

int cmd_update_shard_count(cli *c)
{
    arg_need(c, "target-shard-count");
    uint32_t n = (uint32_t)arg_u64(c, "target-shard-count", 0, 1, SL_SHARDS_MAX);
    const char *st = arg_str(c, "scaling-type");
    if (st && strcmp(st, "UNIFORM_SCALING"))
        usage_fail(c, "--scaling-type: '%s' is not UNIFORM_SCALING", st);
    sl_stream *s = open_stream(c, true);
    CK(c, sl_stream_update_shard_count(s, n), s, "updating the shard count");
    if (c->json)
        json_print(json_pack("{s:s,s:I}", "StreamName", arg_str(c, "stream-name"),
                             "TargetShardCount", (json_int_t)n));
    else show_open(c, s, "updated");
    close_stream(c, s);
    return 0;
}

static json_t *consumer_json(const sl_consumer_info *ci)
{
    char t[40];
    return json_pack("{s:s,s:s,s:s,s:s}", "ConsumerName", ci->name, "ConsumerStatus", "ACTIVE",
                     "ConsumerCreationTimestamp", iso_time(t, ci->created_ms), "ConsumerType",
                     ci->type == SL_CONSUMER_DEDICATED ? "DEDICATED" : "SHARED");
}

int cmd_register_consumer(cli *c)
{
    const char *name = arg_need(c, "consumer-name");
    sl_stream *s = open_stream(c, false);   /* read-only handles may register */
    CK(c, sl_consumer_register(s, name, arg_flag(c, "shared") ? SL_CONSUMER_SHARED
                                                                : SL_CONSUMER_DEDICATED),
       s, "registering the consumer");
    sl_consumer_list *l;
    CK(c, sl_consumer_list_get(&l, s), s, "listing consumers");
    for (size_t i = 0; i < l->count; i++)
        if (!strcmp(l->consumers[i].name, name)) {
            if (c->json) json_print(json_pack("{s:o}", "Consumer", consumer_json(&l->consumers[i])));
            else printf("registered %s consumer %s\n",
                        l->consumers[i].type == SL_CONSUMER_DEDICATED ? "dedicated" : "shared",
                        name);
        }
    sl_consumer_list_free(l);
    close_stream(c, s);
    return 0;
}

int cmd_deregister_consumer(cli *c)
{
    const char *name = arg_need(c, "consumer-name");
    sl_stream *s = open_stream(c, false);
    CK(c, sl_consumer_deregister(s, name), s, "deregistering the consumer");
    close_stream(c, s);
    if (c->json) json_print(json_object());
    else printf("deregistered consumer %s\n", name);
    return 0;
}

int cmd_list_consumers(cli *c)
{
    sl_stream *s = open_stream(c, false);
    sl_consumer_list *l;
    CK(c, sl_consumer_list_get(&l, s), s, "listing consumers");
    if (c->json) {
        json_t *a = json_array();
        for (size_t i = 0; i < l->count; i++) json_array_append_new(a, consumer_json(&l->consumers[i]));
        json_print(json_pack("{s:o}", "Consumers", a));
    } else {
        char t[40];
        for (size_t i = 0; i < l->count; i++)
            printf("%-30s %-9s %s\n", l->consumers[i].name,
                   l->consumers[i].type == SL_CONSUMER_DEDICATED ? "dedicated" : "shared",
                   iso_time(t, l->consumers[i].created_ms));
    }
    sl_consumer_list_free(l);
    close_stream(c, s);
    return 0;
}

static void need_kms(cli *c)
{
    const char *t = arg_str(c, "encryption-type");
    if (t && strcmp(t, "KMS")) usage_fail(c, "--encryption-type: '%s' is not KMS", t);
    if (!c->key_file) usage_fail(c, "needs --key-file (the master key file)");
}

int cmd_start_encryption(cli *c)
{
    need_kms(c);
    const char *id = arg_need(c, "key-id");
    sl_stream *s = open_stream(c, true);
    CK(c, sl_stream_start_encryption(s, id), s, "starting encryption");
    close_stream(c, s);
    if (c->json) json_print(json_object());
    else printf("new records of %s are encrypted under %s\n", arg_str(c, "stream-name"), id);
    return 0;
}

int cmd_stop_encryption(cli *c)
{
    need_kms(c);
    sl_stream *s = open_stream(c, true);
    CK(c, sl_stream_stop_encryption(s), s, "stopping encryption");
    close_stream(c, s);
    if (c->json) json_print(json_object());
    else printf("new records of %s are written in clear\n", arg_str(c, "stream-name"));
    return 0;
}

int cmd_create_key_file(cli *c)
{
    const char *path = arg_need(c, "path");
    CK(c, sl_keyfile_create(path), NULL, "creating the key file");
    if (c->json) json_print(json_pack("{s:s}", "Path", path));
    else printf("wrote a new master key to %s (mode 0600); keep it safe: without it the "
                "streams encrypted under it cannot be read\n", path);
    return 0;
}
