/*
** test_manifest.c -- the MANIFEST file: encoding, strict decoding (every
** damage is SL_ECORRUPT, never a crash or a half-read manifest), atomic
** replacement, and how a stream open reports a damaged or missing one.
*/
#include "testutil.h"

/* ---- a manifest with every feature --------------------------------------- */

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

/* Tags as the library stores them: an empty value is NULL. */
static const char *const sample_tags[][2] = {
    {"env", "prod"},
    {"owner", "Zo\xC3\xAB \xF0\x9F\x99\x82 \xE6\x97\xA5\xE6\x9C\xAC"}, /* UTF-8 */
    {"empty", NULL},
    {"key with spaces", "value with spaces and = signs"},
    {"\xC3\xA9t\xC3\xA9", "-"}, /* a value that is the encoding's "none" marker */
};
#define NSAMPLE_TAGS (sizeof sample_tags / sizeof *sample_tags)

static void sample_manifest(sl_manifest *m, size_t ntags)
{
    memset(m, 0, sizeof *m);
    m->stream_id = 0x0123456789abcdefull;
    snprintf(m->name, sizeof m->name, "%s", "orders.v2-test_1");
    m->created_ms = 1764115200123;
    m->generation = 42;
    m->mode = SL_STREAM_MODE_ON_DEMAND;
    m->retention_hours = 168;
    m->encryption = SL_ENCRYPTION_KMS;
    m->kms_key_id = xstrdup("arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-"
                            "1234567890ab alias/\xC3\xBC");
    m->max_record_kib = 2048;
    m->segment_bytes = SL_SEGMENT_BYTES_MAX;
    m->durability = SL_DURABILITY_ALWAYS;
    m->sync_interval_ms = 250;
    m->size_cap_bytes = 1ull << 33;
    m->size_cap_policy = SL_CAP_REFUSE;
    m->trim_ms = 1700000000123LL;
    m->cold_after_hours = 168;
    m->compaction = SL_COMPACTION_KEY;
    m->nkeys = 2;
    m->keys = calloc(2, sizeof *m->keys);
    assert_non_null(m->keys);
    for (uint32_t k = 0; k < 2; k++) {
        m->keys[k].version = k + 1;
        m->keys[k].len = 60;
        m->keys[k].wrapped = malloc(60);
        assert_non_null(m->keys[k].wrapped);
        for (int b = 0; b < 60; b++) m->keys[k].wrapped[b] = (uint8_t)(b * 3 + k);
    }
    m->key_current = 2;
    m->ntags = ntags;
    m->tags = calloc(ntags ? ntags : 1, sizeof *m->tags);
    assert_non_null(m->tags);
    for (size_t i = 0; i < ntags; i++) {
        if (i < NSAMPLE_TAGS) {
            m->tags[i].key = xstrdup(sample_tags[i][0]);
            m->tags[i].value = sample_tags[i][1] ? xstrdup(sample_tags[i][1]) : NULL;
        } else {
            char k[32], v[32];
            snprintf(k, sizeof k, "tag-%zu", i);
            snprintf(v, sizeof v, "value %zu", i);
            m->tags[i].key = xstrdup(k);
            m->tags[i].value = xstrdup(v);
        }
    }
    /* shard 0 split into 1 and 2, which were merged into 3; 4 and 5 split
    ** 3 again */
    sl_u128 half = {0x8000000000000000ull, 0};
    sl_u128 half_1 = {0x7fffffffffffffffull, UINT64_MAX};
    const sl_mshard shards[] = {
        {0, false, {0, 0}, SL_U128_MAX, SL_NO_SHARD, SL_NO_SHARD, 1, 100},
        {1, false, {0, 0}, half_1, 0, SL_NO_SHARD, 101, 200},
        {2, false, half, SL_U128_MAX, 0, SL_NO_SHARD, 101, 210},
        {3, false, {0, 0}, SL_U128_MAX, 1, 2, 211, 300},
        {4, true, {0, 0}, {0, 12345}, 3, SL_NO_SHARD, 301, 0},
        {5, true, {0, 12346}, SL_U128_MAX, 3, SL_NO_SHARD, 301, 0},
    };
    m->nshards = sizeof shards / sizeof *shards;
    m->shards = malloc(sizeof shards);
    assert_non_null(m->shards);
    memcpy(m->shards, shards, sizeof shards);
    m->next_shard_index = 7;
}

static void assert_str_or_null_equal(const char *a, const char *b)
{
    if (!a || !b) assert_ptr_equal(a, b);
    else assert_string_equal(a, b);
}

static void assert_manifest_equal(const sl_manifest *a, const sl_manifest *b)
{
    assert_true(a->stream_id == b->stream_id);
    assert_string_equal(a->name, b->name);
    assert_true(a->created_ms == b->created_ms);
    assert_true(a->generation == b->generation);
    assert_int_equal(a->mode, b->mode);
    assert_int_equal(a->retention_hours, b->retention_hours);
    assert_int_equal(a->encryption, b->encryption);
    assert_str_or_null_equal(a->kms_key_id, b->kms_key_id);
    assert_int_equal(a->max_record_kib, b->max_record_kib);
    assert_true(a->segment_bytes == b->segment_bytes);
    assert_int_equal(a->durability, b->durability);
    assert_int_equal(a->sync_interval_ms, b->sync_interval_ms);
    assert_int_equal(a->size_cap_bytes, b->size_cap_bytes);
    assert_int_equal(a->size_cap_policy, b->size_cap_policy);
    assert_true(a->trim_ms == b->trim_ms);
    assert_int_equal(a->cold_after_hours, b->cold_after_hours);
    assert_int_equal(a->compaction, b->compaction);
    assert_int_equal(a->nkeys, b->nkeys);
    assert_int_equal(a->key_current, b->key_current);
    for (size_t k = 0; k < a->nkeys; k++) {
        assert_int_equal(a->keys[k].version, b->keys[k].version);
        assert_int_equal(a->keys[k].len, b->keys[k].len);
        assert_memory_equal(a->keys[k].wrapped, b->keys[k].wrapped, a->keys[k].len);
    }
    assert_int_equal(a->ntags, b->ntags);
    for (size_t i = 0; i < a->ntags; i++) {
        assert_string_equal(a->tags[i].key, b->tags[i].key);
        assert_str_or_null_equal(a->tags[i].value, b->tags[i].value);
    }
    assert_int_equal(a->next_shard_index, b->next_shard_index);
    assert_int_equal(a->nshards, b->nshards);
    for (size_t i = 0; i < a->nshards; i++) {
        const sl_mshard *x = &a->shards[i], *y = &b->shards[i];
        assert_int_equal(x->index, y->index);
        assert_int_equal(x->open, y->open);
        assert_int_equal(sl__u128_cmp(x->start, y->start), 0);
        assert_int_equal(sl__u128_cmp(x->end, y->end), 0);
        assert_int_equal(x->parent, y->parent);
        assert_int_equal(x->adjacent, y->adjacent);
        assert_true(x->start_seq == y->start_seq);
        assert_true(x->end_seq == y->end_seq);
    }
}

/* A decoded manifest that failed must hold nothing. */
static void assert_manifest_empty(const sl_manifest *m)
{
    assert_null(m->tags);
    assert_null(m->shards);
    assert_null(m->kms_key_id);
    assert_int_equal(m->ntags, 0);
    assert_int_equal(m->nshards, 0);
}

/* Decode a private, exact-length copy (so a read past the end is caught by
** ASan) and expect SL_ECORRUPT. */
static void expect_corrupt(const char *buf, size_t len, const char *what)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len) memcpy(copy, buf, len);
    sl_manifest m;
    memset(&m, 0x5a, sizeof m);
    int rc = sl__manifest_decode(&m, copy, len);
    if (rc != SL_ECORRUPT) {
        if (rc == 0) sl__manifest_free(&m);
        free(copy);
        fail_msg("%s: decode returned %d, want SL_ECORRUPT", what, rc);
    }
    assert_manifest_empty(&m);
    assert_non_null(strstr(sl__errtext(), "manifest"));
    free(copy);
}

static void expect_ok(const char *buf, size_t len, sl_manifest *out)
{
    int rc = sl__manifest_decode(out, buf, len);
    if (rc) fail_msg("decode failed: %s", sl__errtext());
}

/* ---- editing encoded manifests --------------------------------------------
** The body is everything before the "checksum " line; edits work on its lines
** and with_checksum() appends a valid checksum again, so that the decoder's
** structural checks (not the checksum) must catch the edit. */

typedef struct lines {
    size_t n;
    char *v[256];
} lines;

static void split_body(const char *buf, size_t len, lines *l)
{
    l->n = 0;
    const char *p = buf, *end = buf + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        assert_non_null(nl);
        if (!strncmp(p, "checksum ", 9)) {
            assert_ptr_equal(nl + 1, end); /* it is the last line */
            return;
        }
        assert_true(l->n < 256);
        l->v[l->n++] = strndup(p, (size_t)(nl - p));
        assert_non_null(l->v[l->n - 1]);
        p = nl + 1;
    }
    fail_msg("no checksum line");
}

static void lines_free(lines *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    l->n = 0;
}

static void lines_remove(lines *l, size_t i)
{
    free(l->v[i]);
    memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof *l->v);
    l->n--;
}

static void lines_insert(lines *l, size_t i, const char *text)
{
    assert_true(l->n < 256);
    memmove(&l->v[i + 1], &l->v[i], (l->n - i) * sizeof *l->v);
    l->v[i] = xstrdup(text);
    l->n++;
}

static size_t lines_find(const lines *l, const char *prefix)
{
    for (size_t i = 0; i < l->n; i++)
        if (!strncmp(l->v[i], prefix, strlen(prefix))) return i;
    fail_msg("no line starting with '%s'", prefix);
    return 0;
}

/* Join the lines and append a valid checksum line. */
static char *with_checksum(const lines *l, size_t *len)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++) n += strlen(l->v[i]) + 1;
    char *buf = malloc(n + 64);
    assert_non_null(buf);
    size_t o = 0;
    for (size_t i = 0; i < l->n; i++) {
        size_t k = strlen(l->v[i]);
        memcpy(buf + o, l->v[i], k);
        buf[o + k] = '\n';
        o += k + 1;
    }
    o += (size_t)sprintf(buf + o, "checksum %016" PRIx64 "\n", sl__xxh3(buf, n));
    *len = o;
    return buf;
}

static void sample_lines(lines *l)
{
    sl_manifest m;
    char *buf;
    size_t len;
    sample_manifest(&m, NSAMPLE_TAGS);
    assert_int_equal(sl__manifest_encode(&m, &buf, &len), 0);
    split_body(buf, len, l);
    free(buf);
    sl__manifest_free(&m);
}

/* Rebuild l with a fresh checksum; expect SL_ECORRUPT with `needle` in the
** message (if not NULL). */
static void expect_edit_corrupt(const lines *l, const char *what, const char *needle)
{
    size_t len;
    char *buf = with_checksum(l, &len);
    expect_corrupt(buf, len, what);
    if (needle && !strstr(sl__errtext(), needle))
        fail_msg("%s: message '%s' lacks '%s'", what, sl__errtext(), needle);
    free(buf);
}

/* ---- encode / decode ------------------------------------------------------ */

static void roundtrip(void **state)
{
    (void)state;
    sl_manifest m, d;
    char *buf, *buf2;
    size_t len, len2;
    sample_manifest(&m, NSAMPLE_TAGS);
    assert_int_equal(sl__manifest_encode(&m, &buf, &len), 0);
    assert_int_equal(strlen(buf), len);
    assert_true(len > 0 && buf[len - 1] == '\n');
    assert_int_equal(strncmp(buf, "shardlog-manifest 3\n", 20), 0);   /* it has keys */
    expect_ok(buf, len, &d);
    assert_manifest_equal(&m, &d);

    /* re-encoding the decoded manifest gives the same bytes */
    assert_int_equal(sl__manifest_encode(&d, &buf2, &len2), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(buf2, buf, len);
    free(buf);
    free(buf2);
    sl__manifest_free(&d);
    sl__manifest_free(&m);

    /* the other enum values, no tags, no KMS key, negative time, extremes */
    sample_manifest(&m, 0);
    m.mode = SL_STREAM_MODE_PROVISIONED;
    m.encryption = SL_ENCRYPTION_NONE;
    free(m.kms_key_id);
    m.kms_key_id = NULL;
    m.durability = SL_DURABILITY_NONE;
    m.created_ms = -1;
    m.generation = UINT64_MAX;
    m.stream_id = UINT64_MAX;
    m.retention_hours = SL_RETENTION_HOURS_MAX;
    m.max_record_kib = SL_RECORD_KIB_MAX;
    m.segment_bytes = SL_SEGMENT_BYTES_MIN;
    m.sync_interval_ms = UINT32_MAX;
    memset(m.name, 'n', SL_STREAM_NAME_MAX);
    m.name[SL_STREAM_NAME_MAX] = '\0';
    m.shards[5].end_seq = UINT64_MAX;
    assert_int_equal(sl__manifest_encode(&m, &buf, &len), 0);
    expect_ok(buf, len, &d);
    assert_manifest_equal(&m, &d);
    sl__manifest_free(&d);
    free(buf);

    m.durability = SL_DURABILITY_INTERVAL;
    m.created_ms = INT64_MIN;
    assert_int_equal(sl__manifest_encode(&m, &buf, &len), 0);
    expect_ok(buf, len, &d);
    assert_manifest_equal(&m, &d);
    sl__manifest_free(&d);
    free(buf);
    sl__manifest_free(&m);
}

/* The edit helpers rebuild a manifest that decodes; the rejection tests below
** therefore fail for their edit, not for the helpers. */
static void edit_helpers_are_neutral(void **state)
{
    (void)state;
    lines l;
    sample_lines(&l);
    size_t len;
    char *buf = with_checksum(&l, &len);
    sl_manifest d, m;
    expect_ok(buf, len, &d);
    sample_manifest(&m, NSAMPLE_TAGS);
    assert_manifest_equal(&m, &d);
    sl__manifest_free(&d);
    sl__manifest_free(&m);
    free(buf);
    lines_free(&l);
}

static void rejects_flipped_bytes(void **state)
{
    (void)state;
    sl_manifest m;
    char *buf;
    size_t len;
    sample_manifest(&m, NSAMPLE_TAGS);
    assert_int_equal(sl__manifest_encode(&m, &buf, &len), 0);
    sl__manifest_free(&m);
    static const unsigned char masks[] = {0x01, 0x20, 0x5a, 0x80, 0xff};
    char *copy = malloc(len);
    assert_non_null(copy);
    for (size_t off = 0; off < len; off++) {
        for (size_t k = 0; k < sizeof masks; k++) {
            memcpy(copy, buf, len);
            copy[off] = (char)(copy[off] ^ masks[k]);
            char what[64];
            snprintf(what, sizeof what, "byte %zu ^ 0x%02x", off, masks[k]);
            expect_corrupt(copy, len, what);
        }
    }
    free(copy);
    free(buf);
}

static void rejects_truncation(void **state)
{
    (void)state;
    sl_manifest m;
    char *buf;
    size_t len;
    sample_manifest(&m, NSAMPLE_TAGS);
    assert_int_equal(sl__manifest_encode(&m, &buf, &len), 0);
    sl__manifest_free(&m);
    for (size_t n = 0; n < len; n++) {
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu of %zu bytes", n, len);
        expect_corrupt(buf, n, what);
    }
    /* and trailing garbage after the checksum line */
    char *longer = malloc(len + 8);
    assert_non_null(longer);
    memcpy(longer, buf, len);
    memcpy(longer + len, "extra\n", 6);
    expect_corrupt(longer, len + 6, "a line after the checksum");
    free(longer);
    free(buf);
}

static void rejects_missing_field(void **state)
{
    (void)state;
    static const char *const fields[] = {
        "shardlog-manifest ", "stream_id ", "name ", "created_ms ", "generation ", "mode ",
        "retention_hours ", "encryption ", "kms_key_id ", "max_record_kib ",
        "segment_bytes ", "durability ", "sync_interval_ms ", "next_shard_index ",
        "size_cap_bytes ", "size_cap_policy ", "trim_ms ", "cold_after_hours ", "compaction ",
        "data_key_current ",
    };
    for (size_t f = 0; f < sizeof fields / sizeof *fields; f++) {
        lines l;
        sample_lines(&l);
        lines_remove(&l, lines_find(&l, fields[f]));
        char what[64];
        snprintf(what, sizeof what, "without '%s'", fields[f]);
        expect_edit_corrupt(&l, what, NULL);
        lines_free(&l);
    }
    /* no shard at all */
    lines l;
    sample_lines(&l);
    while (l.n && !strncmp(l.v[l.n - 1], "shard ", 6)) lines_remove(&l, l.n - 1);
    expect_edit_corrupt(&l, "no shards", "no shards");
    lines_free(&l);
}

static void rejects_repeated_field(void **state)
{
    (void)state;
    static const char *const fields[] = {
        "stream_id ", "name ", "created_ms ", "generation ", "mode ", "retention_hours ",
        "encryption ", "kms_key_id ", "max_record_kib ", "segment_bytes ", "durability ",
        "sync_interval_ms ", "next_shard_index ",
    };
    for (size_t f = 0; f < sizeof fields / sizeof *fields; f++) {
        lines l;
        sample_lines(&l);
        size_t i = lines_find(&l, fields[f]);
        char *dup = xstrdup(l.v[i]);
        lines_insert(&l, i + 1, dup); /* the same value twice */
        char what[64];
        snprintf(what, sizeof what, "'%s' twice", fields[f]);
        expect_edit_corrupt(&l, what, "repeated");
        lines_free(&l);
        /* and repeated far from the first, before the shards */
        sample_lines(&l);
        lines_insert(&l, lines_find(&l, "shard "), dup);
        expect_edit_corrupt(&l, what, "repeated");
        lines_free(&l);
        free(dup);
    }
    /* the version line twice */
    lines l;
    sample_lines(&l);
    lines_insert(&l, 1, "shardlog-manifest 1");
    expect_edit_corrupt(&l, "header twice", NULL);
    lines_free(&l);
}

static void rejects_unknown_field(void **state)
{
    (void)state;
    lines l;
    sample_lines(&l);
    lines_insert(&l, l.n, "colour blue");
    expect_edit_corrupt(&l, "unknown field at the end", "unknown field");
    lines_free(&l);

    sample_lines(&l);
    lines_insert(&l, 1, "compression zstd");
    expect_edit_corrupt(&l, "unknown field after the header", "unknown field");
    lines_free(&l);

    /* known names in the wrong case, a blank line, a bare keyword */
    static const char *const odd[] = {"NAME x", "Shard 0 OPEN 0 1 - - 1 0", " ", "tag",
                                      "generation"};
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
        sample_lines(&l);
        lines_insert(&l, 3, odd[i]);
        char what[64];
        snprintf(what, sizeof what, "inserted line '%s'", odd[i]);
        expect_edit_corrupt(&l, what, NULL);
        lines_free(&l);
    }
}

/* Version 2 files (0.2.0, before data keys) still open, without keys; a
** manifest without keys is written as version 2 (0.2.0 can open it), and
** data key lines in a version 2 file are unknown fields. */
static void reads_and_writes_version_2(void **state)
{
    (void)state;
    lines l;
    sample_lines(&l);
    free(l.v[0]);
    l.v[0] = xstrdup("shardlog-manifest 2");
    lines_remove(&l, lines_find(&l, "data_key_current "));
    lines l2;
    sample_lines(&l2);
    free(l2.v[0]);
    l2.v[0] = xstrdup("shardlog-manifest 2");
    lines_remove(&l2, lines_find(&l2, "data_key_current "));
    expect_edit_corrupt(&l2, "version 2 with data_key lines", "line ");
    lines_free(&l2);
    for (size_t i = l.n; i-- > 0;)
        if (!strncmp(l.v[i], "data_key ", 9)) lines_remove(&l, i);
    size_t len;
    char *buf = with_checksum(&l, &len);
    sl_manifest d;
    expect_ok(buf, len, &d);
    assert_int_equal(d.nkeys, 0);
    assert_int_equal(d.key_current, 0);
    char *buf2;
    size_t len2;
    assert_int_equal(sl__manifest_encode(&d, &buf2, &len2), 0);
    assert_int_equal(strncmp(buf2, "shardlog-manifest 2\n", 20), 0);
    assert_null(strstr(buf2, "data_key"));
    free(buf2);
    sl__manifest_free(&d);
    free(buf);
    lines_free(&l);
}

/* Version 1 files (before size caps and trimming) still open: no cap,
** nothing trimmed; the version 2 fields are unknown in them. */
static void reads_version_1(void **state)
{
    (void)state;
    lines l;
    sample_lines(&l);
    free(l.v[0]);
    l.v[0] = xstrdup("shardlog-manifest 1");
    lines_remove(&l, lines_find(&l, "size_cap_bytes "));
    lines_remove(&l, lines_find(&l, "size_cap_policy "));
    lines_remove(&l, lines_find(&l, "trim_ms "));
    lines_remove(&l, lines_find(&l, "cold_after_hours "));
    lines_remove(&l, lines_find(&l, "compaction "));
    lines_remove(&l, lines_find(&l, "data_key_current "));
    for (size_t i = l.n; i-- > 0;)
        if (!strncmp(l.v[i], "data_key ", 9)) lines_remove(&l, i);
    size_t len;
    char *buf = with_checksum(&l, &len);
    sl_manifest d;
    expect_ok(buf, len, &d);
    assert_int_equal(d.size_cap_bytes, 0);
    assert_int_equal(d.size_cap_policy, SL_CAP_DROP_OLDEST);
    assert_true(d.trim_ms == INT64_MIN);
    assert_int_equal(d.cold_after_hours, 0);
    assert_int_equal(d.compaction, SL_COMPACTION_NONE);
    sl__manifest_free(&d);
    free(buf);
    lines_insert(&l, 3, "trim_ms 5");
    expect_edit_corrupt(&l, "a version 2 field in version 1", "unknown field");
    lines_free(&l);
}

static void rejects_other_version(void **state)
{
    (void)state;
    static const char *const headers[] = {
        "shardlog-manifest 4", "shardlog-manifest 0", "shardlog-manifest 10",
        "shardlog-manifest", "shardlog-manifest 2 ", "SHARDLOG-MANIFEST 2",
    };
    for (size_t i = 0; i < sizeof headers / sizeof *headers; i++) {
        lines l;
        sample_lines(&l);
        free(l.v[0]);
        l.v[0] = xstrdup(headers[i]);
        char what[64];
        snprintf(what, sizeof what, "header '%s'", headers[i]);
        expect_edit_corrupt(&l, what, "line 1");
        lines_free(&l);
    }
}

static void rejects_bad_shards(void **state)
{
    (void)state;
    lines l;
    size_t first;

    /* two shard lines swapped */
    sample_lines(&l);
    first = lines_find(&l, "shard ");
    char *t = l.v[first + 1];
    l.v[first + 1] = l.v[first + 2];
    l.v[first + 2] = t;
    expect_edit_corrupt(&l, "shards 0 2 1", "out of order");
    lines_free(&l);

    /* a gap */
    sample_lines(&l);
    lines_remove(&l, lines_find(&l, "shard ") + 2);
    expect_edit_corrupt(&l, "shard 2 missing", "out of order");
    lines_free(&l);

    /* a shard repeated */
    sample_lines(&l);
    first = lines_find(&l, "shard ");
    lines_insert(&l, first + 1, l.v[first]);
    expect_edit_corrupt(&l, "shard 0 twice", NULL);
    lines_free(&l);

    /* malformed shard lines */
    static const char *const bad[] = {
        "shard 6 OPEN 0 1 - - 1",                 /* a field short */
        "shard 6 OPEN 0 1 - - 1 0 9",             /* a field too many */
        "shard 6 open 0 1 - - 1 0",               /* state */
        "shard 6 OPEN 5 4 - - 1 0",               /* empty range */
        "shard 6 OPEN 0 340282366920938463463374607431768211456 - - 1 0", /* 2^128 */
        "shard 6 OPEN 01 5 - - 1 0",              /* leading zero */
        "shard 6 OPEN 0 5 9 - 1 0",               /* unknown parent */
        "shard 6 OPEN 0 5 - 9 1 0",               /* unknown adjacent parent */
        "shard 6 OPEN 0 5 x - 1 0",
        "shard 6 OPEN 0 5 - - -1 0",
        "shard 6 OPEN 0 5 - - 1 18446744073709551616",
        "shard x OPEN 0 5 - - 1 0",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sample_lines(&l);
        lines_insert(&l, l.n, bad[i]);
        char what[96];
        snprintf(what, sizeof what, "line '%s'", bad[i]);
        expect_edit_corrupt(&l, what, NULL);
        lines_free(&l);
    }
    /* the same well-formed line is accepted (so the cases above fail for
    ** their defect) */
    sample_lines(&l);
    lines_insert(&l, l.n, "shard 6 OPEN 0 5 5 - 1 0");
    size_t len;
    char *buf = with_checksum(&l, &len);
    sl_manifest d;
    expect_ok(buf, len, &d);
    assert_int_equal(d.nshards, 7);
    assert_int_equal(d.shards[6].parent, 5);
    sl__manifest_free(&d);
    free(buf);
    lines_free(&l);

    /* next_shard_index below the shard count */
    sample_lines(&l);
    first = lines_find(&l, "next_shard_index ");
    free(l.v[first]);
    l.v[first] = xstrdup("next_shard_index 5");
    expect_edit_corrupt(&l, "next_shard_index 5 with 6 shards", NULL);
    lines_free(&l);
}

static void rejects_bad_values(void **state)
{
    (void)state;
    static const char *const bad[][2] = {
        {"stream_id ", "stream_id 0123456789ABCDEF"},
        {"stream_id ", "stream_id 123"},
        {"name ", "name has/slash"},
        {"name ", "name .."},
        {"created_ms ", "created_ms 1.5"},
        {"created_ms ", "created_ms -9223372036854775809"},
        {"generation ", "generation 18446744073709551616"},
        {"mode ", "mode provisioned"},
        {"retention_hours ", "retention_hours 23"},
        {"retention_hours ", "retention_hours 8761"},
        {"encryption ", "encryption AES"},
        {"kms_key_id ", "kms_key_id 4"},      /* odd hex */
        {"kms_key_id ", "kms_key_id 00"},     /* a NUL byte */
        {"kms_key_id ", "kms_key_id 4G"},
        {"max_record_kib ", "max_record_kib 1023"},
        {"max_record_kib ", "max_record_kib 10241"},
        {"segment_bytes ", "segment_bytes 65535"},
        {"segment_bytes ", "segment_bytes 4294967297"},
        {"durability ", "durability ALWAYS"},
        {"sync_interval_ms ", "sync_interval_ms 0"},
        {"sync_interval_ms ", "sync_interval_ms 4294967296"},
        {"next_shard_index ", "next_shard_index"},
        {"next_shard_index ", "next_shard_index 7 8"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        lines l;
        sample_lines(&l);
        size_t at = lines_find(&l, bad[i][0]);
        free(l.v[at]);
        l.v[at] = xstrdup(bad[i][1]);
        char what[96];
        snprintf(what, sizeof what, "line '%s'", bad[i][1]);
        expect_edit_corrupt(&l, what, NULL);
        lines_free(&l);
    }
}

static void rejects_bad_tags(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "tag 6b",              /* no value */
        "tag 6b 76 77",        /* a field too many */
        "tag - 76",            /* no key */
        "tag 6 76",            /* odd hex */
        "tag 6b 7",
        "tag 6b00 76",         /* NUL in the key */
        "tag 6b 0076",         /* NUL in the value */
        "tag 6B 76",           /* upper-case hex */
        "tag zz 76",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        lines l;
        sample_lines(&l);
        lines_insert(&l, lines_find(&l, "next_shard_index "), bad[i]);
        char what[64];
        snprintf(what, sizeof what, "line '%s'", bad[i]);
        expect_edit_corrupt(&l, what, NULL);
        lines_free(&l);
    }
}

static void tag_limit(void **state)
{
    (void)state;
    sl_manifest m, d;
    char *buf;
    size_t len;

    /* 50 tags: the limit, accepted */
    sample_manifest(&m, SL_TAGS_MAX);
    assert_int_equal(sl__manifest_encode(&m, &buf, &len), 0);
    expect_ok(buf, len, &d);
    assert_manifest_equal(&m, &d);
    sl__manifest_free(&d);
    free(buf);
    sl__manifest_free(&m);

    /* 51 and more: rejected */
    static const size_t over[] = {SL_TAGS_MAX + 1, SL_TAGS_MAX + 2, 200};
    for (size_t i = 0; i < sizeof over / sizeof *over; i++) {
        sample_manifest(&m, over[i]);
        assert_int_equal(sl__manifest_encode(&m, &buf, &len), 0);
        char what[32];
        snprintf(what, sizeof what, "%zu tags", over[i]);
        expect_corrupt(buf, len, what);
        assert_non_null(strstr(sl__errtext(), "50 tags"));
        free(buf);
        sl__manifest_free(&m);
    }
}

/* ---- files ------------------------------------------------------------------ */

static char *slurp(const char *path, size_t *len)
{
    char *buf;
    assert_int_equal(sl__os_read_file(path, &buf, len, SL_MANIFEST_MAX), 0);
    return buf;
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void write_read_roundtrip(void **state)
{
    const char *dir = *state;
    char *mf = tu_path("%s/MANIFEST", dir), *tmp = tu_path("%s/MANIFEST.tmp", dir);
    sl_manifest m, d;
    sample_manifest(&m, NSAMPLE_TAGS);
    assert_int_equal(sl__manifest_write(&m, dir), 0);
    assert_false(exists(tmp));

    /* the file holds exactly the encoding, mode 0600 */
    char *enc, *file;
    size_t elen, flen;
    assert_int_equal(sl__manifest_encode(&m, &enc, &elen), 0);
    file = slurp(mf, &flen);
    assert_int_equal(flen, elen);
    assert_memory_equal(file, enc, elen);
    free(file);
    free(enc);
    struct stat st;
    assert_int_equal(stat(mf, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    memset(&d, 0x5a, sizeof d);
    assert_int_equal(sl__manifest_read(&d, dir), 0);
    assert_manifest_equal(&m, &d);
    sl__manifest_free(&d);

    /* a rewrite replaces it */
    m.generation++;
    m.shards[4].open = false;
    m.shards[4].end_seq = 400;
    assert_int_equal(sl__manifest_write(&m, dir), 0);
    assert_int_equal(sl__manifest_read(&d, dir), 0);
    assert_manifest_equal(&m, &d);
    assert_true(d.generation == 43);
    sl__manifest_free(&d);
    assert_false(exists(tmp));

    sl__manifest_free(&m);
    free(mf);
    free(tmp);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* A MANIFEST.tmp left by a crash in the middle of a rewrite is ignored by a
** read and replaced by the next write. */
static void leftover_tmp(void **state)
{
    const char *dir = *state;
    char *tmp = tu_path("%s/MANIFEST.tmp", dir);
    sl_manifest m, d;
    sample_manifest(&m, NSAMPLE_TAGS);
    assert_int_equal(sl__manifest_write(&m, dir), 0);

    /* half of a newer manifest */
    m.generation = 99;
    char *enc;
    size_t elen;
    assert_int_equal(sl__manifest_encode(&m, &enc, &elen), 0);
    enc[elen / 2] = '\0';
    write_file(tmp, enc);
    free(enc);

    assert_int_equal(sl__manifest_read(&d, dir), 0);
    assert_true(d.generation == 42);
    sl__manifest_free(&d);

    /* a complete, valid newer one is not picked up either: only a rename
    ** publishes */
    assert_int_equal(sl__manifest_encode(&m, &enc, &elen), 0);
    write_file(tmp, enc);
    free(enc);
    assert_int_equal(sl__manifest_read(&d, dir), 0);
    assert_true(d.generation == 42);
    sl__manifest_free(&d);

    /* the next write goes through the leftover */
    m.generation = 100;
    write_file(tmp, "garbage that is longer than nothing\n");
    assert_int_equal(sl__manifest_write(&m, dir), 0);
    assert_false(exists(tmp));
    assert_int_equal(sl__manifest_read(&d, dir), 0);
    assert_manifest_equal(&m, &d);
    sl__manifest_free(&d);
    sl__manifest_free(&m);
    free(tmp);
}

static int rename_calls;
static int fail_rename(const char *from, const char *to)
{
    (void)from;
    (void)to;
    rename_calls++;
    errno = EIO;
    return -1;
}

static int fsync_calls;
static int fail_fsync(int fd)
{
    (void)fd;
    fsync_calls++;
    errno = EIO;
    return -1;
}

static int fail_open_enospc(const char *path, int flags, mode_t mode)
{
    (void)path;
    (void)flags;
    (void)mode;
    errno = ENOSPC;
    return -1;
}

/* When the rename (or the sync before it) fails, the write fails, the old
** MANIFEST is intact and no temporary file is left. */
static void write_failure_keeps_old(void **state)
{
    const char *dir = *state;
    char *mf = tu_path("%s/MANIFEST", dir), *tmp = tu_path("%s/MANIFEST.tmp", dir);
    sl_manifest m, d;
    sample_manifest(&m, NSAMPLE_TAGS);
    assert_int_equal(sl__manifest_write(&m, dir), 0);
    size_t olen;
    char *old = slurp(mf, &olen);

    m.generation = 43;
    rename_calls = 0;
    sl__os.rename = fail_rename;
    int rc = sl__manifest_write(&m, dir);
    sl__os_reset();
    assert_int_equal(rc, SL_EIO);
    assert_int_equal(rename_calls, 1);
    assert_non_null(strstr(sl__errtext(), "renaming"));
    assert_false(exists(tmp));
    size_t nlen;
    char *now = slurp(mf, &nlen);
    assert_int_equal(nlen, olen);
    assert_memory_equal(now, old, olen);
    free(now);
    assert_int_equal(sl__manifest_read(&d, dir), 0);
    assert_true(d.generation == 42);
    sl__manifest_free(&d);

    /* the temporary file's fsync fails */
    fsync_calls = 0;
    sl__os.fsync = fail_fsync;
    rc = sl__manifest_write(&m, dir);
    sl__os_reset();
    assert_int_equal(rc, SL_EIO);
    assert_true(fsync_calls >= 1);
    assert_false(exists(tmp));
    assert_int_equal(sl__manifest_read(&d, dir), 0);
    assert_true(d.generation == 42);
    sl__manifest_free(&d);

    /* the temporary file cannot be created: the disk is full */
    sl__os.open = fail_open_enospc;
    rc = sl__manifest_write(&m, dir);
    sl__os_reset();
    assert_int_equal(rc, SL_ENOSPC);
    assert_false(exists(tmp));
    assert_int_equal(sl__manifest_read(&d, dir), 0);
    assert_true(d.generation == 42);
    sl__manifest_free(&d);

    /* with the shim restored, the write goes through */
    assert_int_equal(sl__manifest_write(&m, dir), 0);
    assert_int_equal(sl__manifest_read(&d, dir), 0);
    assert_true(d.generation == 43);
    sl__manifest_free(&d);

    free(old);
    sl__manifest_free(&m);
    free(mf);
    free(tmp);
}

static void read_errors(void **state)
{
    const char *dir = *state;
    sl_manifest d;
    /* no MANIFEST */
    memset(&d, 0x5a, sizeof d);
    assert_int_equal(sl__manifest_read(&d, dir), SL_ENOTFOUND);
    assert_manifest_empty(&d);
    assert_non_null(strstr(sl__errtext(), "MANIFEST"));

    /* a MANIFEST that is not one: the message names the file and the cause */
    char *mf = tu_path("%s/MANIFEST", dir);
    write_file(mf, "hello\nchecksum 0000000000000000\n");
    memset(&d, 0x5a, sizeof d);
    assert_int_equal(sl__manifest_read(&d, dir), SL_ECORRUPT);
    assert_manifest_empty(&d);
    assert_non_null(strstr(sl__errtext(), mf));
    assert_non_null(strstr(sl__errtext(), "checksum"));

    /* empty file */
    write_file(mf, "");
    assert_int_equal(sl__manifest_read(&d, dir), SL_ECORRUPT);
    assert_non_null(strstr(sl__errtext(), "MANIFEST"));
    free(mf);
}

/* ---- streams ---------------------------------------------------------------- */

static void stream_corrupt_manifest(void **state)
{
    const char *root = *state;
    tu_opts o = {.shards = 3};
    sl_stream *s = tu_create(root, "damaged", &o);
    assert_int_equal(sl_stream_close(s), 0);
    char *mf = tu_path("%s/damaged/MANIFEST", root);
    struct stat st;
    assert_int_equal(stat(mf, &st), 0);
    assert_true(st.st_size > 100);

    const off_t offs[] = {0, 25, st.st_size / 2, st.st_size - 5, st.st_size - 1};
    for (size_t i = 0; i < sizeof offs / sizeof *offs; i++) {
        tu_flip_byte(mf, offs[i]);
        s = (sl_stream *)mf; /* must be reset to NULL */
        int rc = sl_stream_open(&s, root, "damaged", NULL);
        if (rc != SL_ECORRUPT)
            fail_msg("MANIFEST byte %lld flipped: open returned %d (%s)", (long long)offs[i], rc,
                     sl_errmsg(NULL));
        assert_null(s);
        assert_non_null(strstr(sl_errmsg(NULL), "MANIFEST"));
        /* read-only opens refuse it too */
        sl_open_opts ro = SL_OPEN_OPTS_INIT;
        ro.flags = SL_OPEN_READONLY;
        assert_int_equal(sl_stream_open(&s, root, "damaged", &ro), SL_ECORRUPT);
        assert_null(s);
        assert_non_null(strstr(sl_errmsg(NULL), "MANIFEST"));

        /* the failed open left no lock behind: repaired, it opens */
        tu_flip_byte(mf, offs[i]);
        s = tu_open(root, "damaged", NULL);
        sl_shard_list *l;
        assert_int_equal(sl_stream_list_shards(&l, s), 0);
        assert_int_equal(l->count, 3);
        sl_shard_list_free(l);
        assert_int_equal(sl_stream_close(s), 0);
    }
    free(mf);
}

static void stream_missing_manifest(void **state)
{
    const char *root = *state;
    sl_stream *s = tu_create(root, "headless", NULL);
    assert_int_equal(sl_stream_close(s), 0);
    char *mf = tu_path("%s/headless/MANIFEST", root);
    assert_int_equal(unlink(mf), 0);
    s = (sl_stream *)mf;
    assert_int_equal(sl_stream_open(&s, root, "headless", NULL), SL_ENOTFOUND);
    assert_null(s);
    assert_true(sl_errmsg(NULL)[0] != '\0');
    sl_open_opts ro = SL_OPEN_OPTS_INIT;
    ro.flags = SL_OPEN_READONLY;
    assert_int_equal(sl_stream_open(&s, root, "headless", &ro), SL_ENOTFOUND);
    assert_null(s);
    free(mf);
}

/* A manifest renamed into another stream's directory names the wrong stream. */
static void stream_manifest_of_another_stream(void **state)
{
    const char *root = *state;
    sl_stream *a = tu_create(root, "alpha", NULL);
    sl_stream *b = tu_create(root, "beta", NULL);
    assert_int_equal(sl_stream_close(a), 0);
    assert_int_equal(sl_stream_close(b), 0);
    char *ma = tu_path("%s/alpha/MANIFEST", root), *mb = tu_path("%s/beta/MANIFEST", root);
    assert_int_equal(rename(ma, mb), 0);
    sl_stream *s;
    assert_int_equal(sl_stream_open(&s, root, "beta", NULL), SL_ECORRUPT);
    assert_null(s);
    assert_non_null(strstr(sl_errmsg(NULL), "MANIFEST"));
    free(ma);
    free(mb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roundtrip),
        cmocka_unit_test(edit_helpers_are_neutral),
        cmocka_unit_test(rejects_flipped_bytes),
        cmocka_unit_test(rejects_truncation),
        cmocka_unit_test(rejects_missing_field),
        cmocka_unit_test(rejects_repeated_field),
        cmocka_unit_test(rejects_unknown_field),
        cmocka_unit_test(rejects_other_version),
        cmocka_unit_test(reads_version_1),
        cmocka_unit_test(reads_and_writes_version_2),
        cmocka_unit_test(rejects_bad_shards),
        cmocka_unit_test(rejects_bad_values),
        cmocka_unit_test(rejects_bad_tags),
        cmocka_unit_test(tag_limit),
        cmocka_unit_test_setup_teardown(write_read_roundtrip, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(leftover_tmp, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(write_failure_keeps_old, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(read_errors, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(stream_corrupt_manifest, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(stream_missing_manifest, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(stream_manifest_of_another_stream, tu_setup,
                                        tu_teardown),
    };
    return cmocka_run_group_tests_name("manifest", tests, NULL, NULL);
}
