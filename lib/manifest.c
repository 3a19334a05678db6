/*
** manifest.c -- encode and decode the stream manifest; replace it atomically.
**
** MANIFEST FORMAT, version 2 (version 1 is read too): UTF-8 text, one field per line, so that a
** person can read it with `cat`.  Strings that may hold arbitrary bytes (tag
** keys and values, the KMS key id) are hex-encoded; "-" stands for none.
**
**   shardlog-manifest 1                    always the first line
**   stream_id <16 hex>                     random; stamped in every segment
**   name <stream name>
**   created_ms <int>
**   generation <u64>                       +1 on every rewrite
**   mode PROVISIONED|ON_DEMAND
**   retention_hours <u32>
**   encryption NONE|KMS
**   kms_key_id <hex>|-
**   max_record_kib <u32>
**   segment_bytes <u64>
**   durability none|interval|always
**   sync_interval_ms <u32>
**   size_cap_bytes <u64>                   version 2: 0 for none
**   size_cap_policy drop_oldest|refuse     version 2
**   cold_after_hours <u32>                 version 2: 0 for never
**   compaction none|key                    version 2
**   data_key <u32 version> <hex wrapped>   version 3, 1.. lines, versions
**                                          1, 2, ...: a data key wrapped by
**                                          the key provider
**   data_key_current <u32>                 version 3: 0, or the key new
**                                          records are encrypted with
**   trim_ms <int>|-                        version 2: records that arrived
**                                          at or before it are gone, whatever
**                                          the retention period says
**   tag <hex key> <hex value>              0..50 lines
**   next_shard_index <u32>
**   shard <index> OPEN|CLOSED <start> <end> <parent>|- <adjacent>|-
**         <start_seq> <end_seq>            one line per shard, by index;
**                                          hash keys in decimal
**   checksum <16 hex>                      XXH3-64 of every byte before this
**                                          line; always the last line
**
** Every scalar field of the file's version appears exactly once (version 1
** files lack the five version 2 fields: no cap, nothing trimmed, no cold
** storage, no compaction; version 2 files lack data_key_current: no data
** keys).  A stream written as version 3 only once it has data keys.  A line the decoder does not know
** is an error (a newer writer bumps the version), as is any checksum
** mismatch: the manifest is never half-trusted.  It is replaced with
** write-temp, fsync, rename, fsync-directory (sl__os_replace_file), so a
** crash leaves the old or the new one, whole.
*/
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define MANIFEST_VERSION 3

static const char *mode_name(sl_stream_mode m)
{
    return m == SL_STREAM_MODE_ON_DEMAND ? "ON_DEMAND" : "PROVISIONED";
}
static const char *enc_name(sl_encryption e)
{
    return e == SL_ENCRYPTION_KMS ? "KMS" : "NONE";
}
static const char *dur_name(sl_durability d)
{
    return d == SL_DURABILITY_NONE ? "none"
         : d == SL_DURABILITY_ALWAYS ? "always" : "interval";
}

static void put_hex(FILE *f, const char *s)
{
    if (!s || !*s) {
        fputc('-', f);
        return;
    }
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        fprintf(f, "%02x", *p);
}

int sl__manifest_encode(const sl_manifest *m, char **out, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return sl__err(SL_ENOMEM, "encoding the manifest");
    char a[40], b[40];
    /* the lowest version that holds it: a stream that never had data keys
    ** stays readable by 0.2.0 */
    bool v3 = m->nkeys || m->key_current;
    fprintf(f, "shardlog-manifest %d\n", v3 ? 3 : 2);
    fprintf(f, "stream_id %016" PRIx64 "\n", m->stream_id);
    fprintf(f, "name %s\n", m->name);
    fprintf(f, "created_ms %" PRId64 "\n", m->created_ms);
    fprintf(f, "generation %" PRIu64 "\n", m->generation);
    fprintf(f, "mode %s\n", mode_name(m->mode));
    fprintf(f, "retention_hours %" PRIu32 "\n", m->retention_hours);
    fprintf(f, "encryption %s\n", enc_name(m->encryption));
    fputs("kms_key_id ", f);
    put_hex(f, m->kms_key_id);
    fputc('\n', f);
    fprintf(f, "max_record_kib %" PRIu32 "\n", m->max_record_kib);
    fprintf(f, "segment_bytes %" PRIu64 "\n", m->segment_bytes);
    fprintf(f, "durability %s\n", dur_name(m->durability));
    fprintf(f, "sync_interval_ms %" PRIu32 "\n", m->sync_interval_ms);
    fprintf(f, "size_cap_bytes %" PRIu64 "\n", m->size_cap_bytes);
    fprintf(f, "size_cap_policy %s\n",
            m->size_cap_policy == SL_CAP_REFUSE ? "refuse" : "drop_oldest");
    fprintf(f, "cold_after_hours %" PRIu32 "\n", m->cold_after_hours);
    fprintf(f, "compaction %s\n", m->compaction == SL_COMPACTION_KEY ? "key" : "none");
    for (size_t i = 0; i < m->nkeys; i++) {
        fprintf(f, "data_key %" PRIu32 " ", m->keys[i].version);
        for (size_t k = 0; k < m->keys[i].len; k++) fprintf(f, "%02x", m->keys[i].wrapped[k]);
        fputc('\n', f);
    }
    if (v3) fprintf(f, "data_key_current %" PRIu32 "\n", m->key_current);
    if (m->trim_ms == INT64_MIN) fputs("trim_ms -\n", f);
    else fprintf(f, "trim_ms %" PRId64 "\n", m->trim_ms);
    for (size_t i = 0; i < m->ntags; i++) {
        fputs("tag ", f);
        put_hex(f, m->tags[i].key);
        fputc(' ', f);
        put_hex(f, m->tags[i].value);
        fputc('\n', f);
    }
    fprintf(f, "next_shard_index %" PRIu32 "\n", m->next_shard_index);
    for (size_t i = 0; i < m->nshards; i++) {
        const sl_mshard *s = &m->shards[i];
        fprintf(f, "shard %" PRIu32 " %s %s %s ", s->index,
                s->open ? "OPEN" : "CLOSED", sl__u128_format(a, s->start),
                sl__u128_format(b, s->end));
        if (s->parent == SL_NO_SHARD) fputs("- ", f);
        else fprintf(f, "%" PRIu32 " ", s->parent);
        if (s->adjacent == SL_NO_SHARD) fputs("- ", f);
        else fprintf(f, "%" PRIu32 " ", s->adjacent);
        fprintf(f, "%" PRIu64 " %" PRIu64 "\n", s->start_seq, s->end_seq);
    }
    if (fflush(f) != 0) {
        fclose(f);
        free(buf);
        return sl__err(SL_ENOMEM, "encoding the manifest");
    }
    fprintf(f, "checksum %016" PRIx64 "\n", sl__xxh3(buf, n));
    if (fclose(f) != 0) {
        free(buf);
        return sl__err(SL_ENOMEM, "encoding the manifest");
    }
    *out = buf;
    *len = n;
    return 0;
}

/* ---- decoding ----------------------------------------------------------- */

typedef struct dec {
    int line;
    char *save;
} dec;

static int bad(const dec *d, const char *what)
{
    return sl__err(SL_ECORRUPT, "manifest line %d: %s", d->line, what);
}

static bool num_u64(const char *s, uint64_t *v)
{
    if (!s || !*s || (s[0] == '0' && s[1])) return false;
    uint64_t x = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        if (x > (UINT64_MAX - (uint64_t)(*s - '0')) / 10) return false;
        x = x * 10 + (uint64_t)(*s - '0');
    }
    *v = x;
    return true;
}

static bool num_u32(const char *s, uint32_t *v)
{
    uint64_t x;
    if (!num_u64(s, &x) || x > UINT32_MAX) return false;
    *v = (uint32_t)x;
    return true;
}

static bool num_i64(const char *s, int64_t *v)
{
    uint64_t x;
    bool neg = s && *s == '-';
    if (!num_u64(neg ? s + 1 : s, &x)) return false;
    if (x > (uint64_t)INT64_MAX + neg) return false;
    *v = neg ? (int64_t)(0 - x) : (int64_t)x;
    return true;
}

/* One lower-case hex digit's value, or -1. */
static int hexdig(char c)
{
    return (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

static bool hex_u64(const char *s, uint64_t *v)
{
    if (!s || strlen(s) != 16) return false;
    uint64_t x = 0;
    for (int i = 0; i < 16; i++) {
        int h = hexdig(s[i]);
        if (h < 0) return false;
        x = (x << 4) | (uint64_t)h;
    }
    *v = x;
    return true;
}

/* hex string -> malloc'd C string; "-" -> NULL; false on bad input */
static bool hex_str(const char *s, char **out)
{
    *out = NULL;
    if (!s) return false;
    if (!strcmp(s, "-")) return true;
    size_t n = strlen(s);
    if (n == 0 || n % 2) return false;
    char *r = malloc(n / 2 + 1);
    if (!r) return false;
    for (size_t i = 0; i < n; i += 2) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            int h = hexdig(s[i + k]);
            if (h < 0) {
                free(r);
                return false;
            }
            v = v * 16 + h;
        }
        if (v == 0) {
            free(r);
            return false;
        }
        r[i / 2] = (char)v;
    }
    r[n / 2] = '\0';
    *out = r;
    return true;
}

static char *tok(dec *d) { return strtok_r(NULL, " ", &d->save); }

static int parse_shard(dec *d, sl_manifest *m)
{
    sl_mshard s = {0};
    char *t;
    if (!num_u32(tok(d), &s.index)) return bad(d, "bad shard index");
    t = tok(d);
    if (t && !strcmp(t, "OPEN")) s.open = true;
    else if (!t || strcmp(t, "CLOSED")) return bad(d, "bad shard state");
    if (sl__u128_parse(&s.start, tok(d)) != 0) return bad(d, "bad starting hash key");
    if (sl__u128_parse(&s.end, tok(d)) != 0) return bad(d, "bad ending hash key");
    t = tok(d);
    if (t && !strcmp(t, "-")) s.parent = SL_NO_SHARD;
    else if (!num_u32(t, &s.parent)) return bad(d, "bad parent shard");
    t = tok(d);
    if (t && !strcmp(t, "-")) s.adjacent = SL_NO_SHARD;
    else if (!num_u32(t, &s.adjacent)) return bad(d, "bad adjacent parent shard");
    if (!num_u64(tok(d), &s.start_seq) || !num_u64(tok(d), &s.end_seq) || tok(d))
        return bad(d, "bad shard sequence range");
    if (sl__u128_cmp(s.start, s.end) > 0) return bad(d, "shard range is empty");
    if (m->nshards != s.index) return bad(d, "shards out of order");
    if (m->nshards >= SL_SHARDS_TOTAL_MAX) return bad(d, "too many shards");
    sl_mshard *n = realloc(m->shards, (m->nshards + 1) * sizeof *n);
    if (!n) return sl__err(SL_ENOMEM, "decoding the manifest");
    m->shards = n;
    m->shards[m->nshards++] = s;
    return 0;
}

enum {
    F_ID, F_NAME, F_CREATED, F_GEN, F_MODE, F_RET, F_ENC, F_KMS, F_MAXREC,
    F_SEGB, F_DUR, F_SYNCMS, F_NEXT, F_COUNT1,
    F_CAP = F_COUNT1, F_CAPPOL, F_TRIM, F_COLD, F_COMPACT, F_COUNT2,  /* version 2 */
    F_KEYCUR = F_COUNT2, F_COUNT3                                       /* version 3 */
};

static int parse_line(dec *d, sl_manifest *m, char *line, unsigned *seen, int version)
{
    char *key = strtok_r(line, " ", &d->save);
    char *v;
    int f = -1;
    if (!key) return bad(d, "empty line");
    if (!strcmp(key, "shard")) return parse_shard(d, m);
    if (version >= 3 && !strcmp(key, "data_key")) {
        uint32_t ver;
        char *hx = NULL;
        if (!num_u32(tok(d), &ver) || !ver || !(hx = tok(d)) || tok(d)) return bad(d, "bad data_key");
        size_t n = strlen(hx);
        if (n == 0 || n % 2 || n / 2 > SL_WRAPPED_KEY_MAX) return bad(d, "bad data_key");
        if (m->nkeys && m->keys[m->nkeys - 1].version >= ver) return bad(d, "data keys out of order");
        uint8_t *w = malloc(n / 2);
        sl_mkey *k = realloc(m->keys, (m->nkeys + 1) * sizeof *k);
        if (!w || !k) {
            free(w);
            if (k) m->keys = k;
            return sl__err(SL_ENOMEM, "decoding the manifest");
        }
        m->keys = k;
        for (size_t i = 0; i < n / 2; i++) {
            int hi = hexdig(hx[2 * i]), lo = hexdig(hx[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                free(w);
                return bad(d, "bad data_key");
            }
            w[i] = (uint8_t)(hi << 4 | lo);
        }
        m->keys[m->nkeys++] = (sl_mkey){ver, w, n / 2};
        return 0;
    }
    if (!strcmp(key, "tag")) {
        if (m->ntags >= SL_TAGS_MAX) return bad(d, "more than 50 tags");
        sl_mtag t = {0};
        char *k = tok(d), *val = tok(d);
        if (!hex_str(k, &t.key) || !t.key || !hex_str(val, &t.value) || tok(d)) {
            free(t.key);
            free(t.value);
            return bad(d, "bad tag");
        }
        sl_mtag *n = realloc(m->tags, (m->ntags + 1) * sizeof *n);
        if (!n) {
            free(t.key);
            free(t.value);
            return sl__err(SL_ENOMEM, "decoding the manifest");
        }
        m->tags = n;
        m->tags[m->ntags++] = t;
        return 0;
    }
    v = tok(d);
    if (!v || tok(d)) return bad(d, "expected one value");
    bool ok;
    if (!strcmp(key, "stream_id")) f = F_ID, ok = hex_u64(v, &m->stream_id);
    else if (!strcmp(key, "name")) {
        f = F_NAME;
        ok = sl__name_valid(v, SL_STREAM_NAME_MAX);
        if (ok) strcpy(m->name, v);
    } else if (!strcmp(key, "created_ms")) f = F_CREATED, ok = num_i64(v, &m->created_ms);
    else if (!strcmp(key, "generation")) f = F_GEN, ok = num_u64(v, &m->generation);
    else if (!strcmp(key, "mode")) {
        f = F_MODE;
        ok = true;
        if (!strcmp(v, "PROVISIONED")) m->mode = SL_STREAM_MODE_PROVISIONED;
        else if (!strcmp(v, "ON_DEMAND")) m->mode = SL_STREAM_MODE_ON_DEMAND;
        else ok = false;
    } else if (!strcmp(key, "retention_hours")) {
        f = F_RET;
        ok = num_u32(v, &m->retention_hours) && m->retention_hours >= SL_RETENTION_HOURS_MIN &&
             m->retention_hours <= SL_RETENTION_HOURS_MAX;
    } else if (!strcmp(key, "encryption")) {
        f = F_ENC;
        ok = true;
        if (!strcmp(v, "NONE")) m->encryption = SL_ENCRYPTION_NONE;
        else if (!strcmp(v, "KMS")) m->encryption = SL_ENCRYPTION_KMS;
        else ok = false;
    } else if (!strcmp(key, "kms_key_id")) {
        f = F_KMS;
        free(m->kms_key_id);
        ok = hex_str(v, &m->kms_key_id);
    } else if (!strcmp(key, "max_record_kib")) {
        f = F_MAXREC;
        ok = num_u32(v, &m->max_record_kib) && m->max_record_kib >= SL_RECORD_KIB_DEFAULT &&
             m->max_record_kib <= SL_RECORD_KIB_MAX;
    } else if (!strcmp(key, "segment_bytes")) {
        f = F_SEGB;
        ok = num_u64(v, &m->segment_bytes) && m->segment_bytes >= SL_SEGMENT_BYTES_MIN &&
             m->segment_bytes <= SL_SEGMENT_BYTES_MAX;
    } else if (!strcmp(key, "durability")) {
        f = F_DUR;
        ok = true;
        if (!strcmp(v, "none")) m->durability = SL_DURABILITY_NONE;
        else if (!strcmp(v, "interval")) m->durability = SL_DURABILITY_INTERVAL;
        else if (!strcmp(v, "always")) m->durability = SL_DURABILITY_ALWAYS;
        else ok = false;
    } else if (!strcmp(key, "sync_interval_ms")) {
        f = F_SYNCMS;
        ok = num_u32(v, &m->sync_interval_ms) && m->sync_interval_ms > 0;
    } else if (!strcmp(key, "next_shard_index")) {
        f = F_NEXT;
        ok = num_u32(v, &m->next_shard_index);
    } else if (version >= 2 && !strcmp(key, "size_cap_bytes")) {
        f = F_CAP;
        ok = num_u64(v, &m->size_cap_bytes);
    } else if (version >= 2 && !strcmp(key, "size_cap_policy")) {
        f = F_CAPPOL;
        ok = true;
        if (!strcmp(v, "drop_oldest")) m->size_cap_policy = SL_CAP_DROP_OLDEST;
        else if (!strcmp(v, "refuse")) m->size_cap_policy = SL_CAP_REFUSE;
        else ok = false;
    } else if (version >= 2 && !strcmp(key, "cold_after_hours")) {
        f = F_COLD;
        ok = num_u32(v, &m->cold_after_hours) && m->cold_after_hours <= SL_RETENTION_HOURS_MAX;
    } else if (version >= 2 && !strcmp(key, "compaction")) {
        f = F_COMPACT;
        ok = true;
        if (!strcmp(v, "none")) m->compaction = SL_COMPACTION_NONE;
        else if (!strcmp(v, "key")) m->compaction = SL_COMPACTION_KEY;
        else ok = false;
    } else if (version >= 3 && !strcmp(key, "data_key_current")) {
        f = F_KEYCUR;
        ok = num_u32(v, &m->key_current);
    } else if (version >= 2 && !strcmp(key, "trim_ms")) {
        f = F_TRIM;
        ok = !strcmp(v, "-") ? (m->trim_ms = INT64_MIN, true) : num_i64(v, &m->trim_ms);
    } else {
        return bad(d, "unknown field (written by a newer shardlog?)");
    }
    if (!ok) return bad(d, "bad value");
    if (*seen & (1u << f)) return bad(d, "field repeated");
    *seen |= 1u << f;
    return 0;
}

int sl__manifest_decode(sl_manifest *m, const char *buf, size_t len)
{
    memset(m, 0, sizeof *m);
    dec d = {0};
    /* the checksum line is the last; it covers everything before it */
    if (len < 2 || buf[len - 1] != '\n' || memchr(buf, '\0', len))
        return sl__err(SL_ECORRUPT, "manifest is truncated or not text");
    size_t cl = len - 1;
    while (cl > 0 && buf[cl - 1] != '\n') cl--;
    uint64_t want;
    char last[64];
    size_t ll = len - 1 - cl;
    if (ll >= sizeof last) return sl__err(SL_ECORRUPT, "manifest has no checksum line");
    memcpy(last, buf + cl, ll);
    last[ll] = '\0';
    if (strncmp(last, "checksum ", 9) || !hex_u64(last + 9, &want))
        return sl__err(SL_ECORRUPT, "manifest has no checksum line");
    if (sl__xxh3(buf, cl) != want)
        return sl__err(SL_ECORRUPT, "manifest checksum mismatch");

    char *text = malloc(cl + 1);
    if (!text) return sl__err(SL_ENOMEM, "decoding the manifest");
    memcpy(text, buf, cl);
    text[cl] = '\0';
    int rc = 0, version = 0;
    unsigned seen = 0;
    char *next = text;
    m->trim_ms = INT64_MIN;
    m->size_cap_policy = SL_CAP_DROP_OLDEST;
    m->compaction = SL_COMPACTION_NONE;
    while (rc == 0 && next && *next) {
        char *line = next;
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        next = nl ? nl + 1 : NULL;
        d.line++;
        if (d.line == 1) {
            if (!strcmp(line, "shardlog-manifest 1")) version = 1;
            else if (!strcmp(line, "shardlog-manifest 2")) version = 2;
            else if (!strcmp(line, "shardlog-manifest 3")) version = 3;
            else
                rc = sl__err(SL_ECORRUPT,
                             "manifest line 1: expected 'shardlog-manifest "
                             "%d' (a different format version?)",
                             MANIFEST_VERSION);
            continue;
        }
        rc = parse_line(&d, m, line, &seen, version);
    }
    free(text);
    if (rc == 0 && seen != (1u << (version >= 3   ? F_COUNT3
                                   : version == 2 ? F_COUNT2
                                                  : F_COUNT1)) - 1)
        rc = sl__err(SL_ECORRUPT, "manifest lacks a required field");
    if (rc == 0 && m->nshards == 0)
        rc = sl__err(SL_ECORRUPT, "manifest has no shards");
    if (rc == 0 && m->next_shard_index < m->nshards)
        rc = sl__err(SL_ECORRUPT, "manifest next_shard_index is too small");
    for (size_t i = 0; rc == 0 && i < m->nshards; i++) {
        const sl_mshard *s = &m->shards[i];
        if ((s->parent != SL_NO_SHARD && s->parent >= m->nshards) ||
            (s->adjacent != SL_NO_SHARD && s->adjacent >= m->nshards))
            rc = sl__err(SL_ECORRUPT, "manifest: shard %u names an unknown parent", s->index);
    }
    if (rc) sl__manifest_free(m);
    return rc;
}

int sl__manifest_read(sl_manifest *m, const char *stream_dir)
{
    char *path, *buf;
    size_t len;
    memset(m, 0, sizeof *m);
    if (asprintf(&path, "%s/%s", stream_dir, SL_MANIFEST_FILE) < 0)
        return sl__err(SL_ENOMEM, "reading the manifest");
    if (sl__os_read_file(path, &buf, &len, SL_MANIFEST_MAX) != 0) {
        int e = errno;
        int rc = e == ENOENT ? sl__err(SL_ENOTFOUND, "%s does not exist", path)
                             : sl__errno(e == EFBIG ? SL_ECORRUPT : SL_EIO, e,
                                         "reading %s", path);
        free(path);
        return rc;
    }
    int rc = sl__manifest_decode(m, buf, len);
    if (rc) {
        char why[400];
        snprintf(why, sizeof why, "%s", sl__errtext());
        sl__err(rc, "%s: %s", path, why);
    }
    free(buf);
    free(path);
    return rc;
}

int sl__manifest_write(const sl_manifest *m, const char *stream_dir)
{
    char *buf, *path;
    size_t len;
    int rc = sl__manifest_encode(m, &buf, &len);
    if (rc) return rc;
    if (asprintf(&path, "%s/%s", stream_dir, SL_MANIFEST_FILE) < 0) {
        free(buf);
        return sl__err(SL_ENOMEM, "writing the manifest");
    }
    rc = sl__os_replace_file(path, buf, len);
    free(path);
    free(buf);
    return rc;
}

void sl__manifest_free(sl_manifest *m)
{
    for (size_t i = 0; i < m->ntags; i++) {
        free(m->tags[i].key);
        free(m->tags[i].value);
    }
    free(m->tags);
    free(m->kms_key_id);
    free(m->shards);
    for (size_t i = 0; i < m->nkeys; i++) free(m->keys[i].wrapped);
    free(m->keys);
    memset(m, 0, sizeof *m);
}
