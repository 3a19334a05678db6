/*
** fuzz_manifest.c -- libFuzzer target: the manifest decoder
** (lib/manifest.c, sl__manifest_decode), on bytes in memory.
**
** Each input is decoded twice: as given, and re-signed (its last line, if
** it is a checksum line, replaced by the right one; else one appended), so
** that mutations get past the checksum to the line parser.  A manifest
** that decodes must also round-trip: encode it, decode that (which must
** succeed) and encode again -- the two encodings are the same bytes, and
** the decoded fields the same.  A failure must leave a message naming what
** is wrong, and the manifest freed (LeakSanitizer).
** Seeds: fuzz/corpus/manifest/, written by make_corpus.c.
*/
#include "fuzz.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void same(const sl_manifest *a, const sl_manifest *b)
{
    bool ok = a->stream_id == b->stream_id && !strcmp(a->name, b->name) &&
              a->created_ms == b->created_ms && a->generation == b->generation &&
              a->mode == b->mode && a->retention_hours == b->retention_hours &&
              a->encryption == b->encryption &&
              !strcmp(a->kms_key_id ? a->kms_key_id : "", b->kms_key_id ? b->kms_key_id : "") &&
              a->max_record_kib == b->max_record_kib && a->segment_bytes == b->segment_bytes &&
              a->durability == b->durability && a->sync_interval_ms == b->sync_interval_ms &&
              a->size_cap_bytes == b->size_cap_bytes &&
              a->size_cap_policy == b->size_cap_policy && a->trim_ms == b->trim_ms &&
              a->cold_after_hours == b->cold_after_hours && a->compaction == b->compaction &&
              a->nkeys == b->nkeys && a->key_current == b->key_current &&
              a->ntags == b->ntags && a->next_shard_index == b->next_shard_index &&
              a->nshards == b->nshards;
    for (size_t i = 0; ok && i < a->nkeys; i++)
        ok = a->keys[i].version == b->keys[i].version && a->keys[i].len == b->keys[i].len &&
             !memcmp(a->keys[i].wrapped, b->keys[i].wrapped, a->keys[i].len);
    for (size_t i = 0; ok && i < a->ntags; i++)
        ok = !strcmp(a->tags[i].key, b->tags[i].key) &&
             !strcmp(a->tags[i].value ? a->tags[i].value : "",
                     b->tags[i].value ? b->tags[i].value : "");
    for (size_t i = 0; ok && i < a->nshards; i++)
        ok = !memcmp(&a->shards[i].start, &b->shards[i].start, sizeof(sl_u128)) &&
             !memcmp(&a->shards[i].end, &b->shards[i].end, sizeof(sl_u128)) &&
             a->shards[i].index == b->shards[i].index && a->shards[i].open == b->shards[i].open &&
             a->shards[i].parent == b->shards[i].parent &&
             a->shards[i].adjacent == b->shards[i].adjacent &&
             a->shards[i].start_seq == b->shards[i].start_seq &&
             a->shards[i].end_seq == b->shards[i].end_seq;
    if (!ok) fz_fail("a manifest does not decode back to the same fields");
}

static void one(const char *buf, size_t len)
{
    sl_manifest m;
    if (sl__manifest_decode(&m, buf, len) != 0) {
        const char *why = sl__errtext();
        if (!why || !*why) fz_fail("a manifest failed to decode without a message");
        return;
    }
    if (strlen(m.name) > SL_STREAM_NAME_MAX || m.nshards == 0 || m.next_shard_index < m.nshards)
        fz_fail("a decoded manifest breaks its own rules");
    char *e1, *e2;
    size_t n1, n2;
    if (sl__manifest_encode(&m, &e1, &n1) != 0) fz_fail("encoding a decoded manifest failed");
    sl_manifest m2;
    if (sl__manifest_decode(&m2, e1, n1) != 0)
        fz_fail("an encoded manifest does not decode: %s", sl__errtext());
    same(&m, &m2);
    if (sl__manifest_encode(&m2, &e2, &n2) != 0) fz_fail("encoding failed");
    if (n1 != n2 || memcmp(e1, e2, n1) != 0) fz_fail("encode(decode(encode(m))) != encode(m)");
    free(e1);
    free(e2);
    sl__manifest_free(&m);
    sl__manifest_free(&m2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20)) return 0;
    /* an exact-size heap copy: ASan sees any read past the end */
    char *b = malloc(size ? size : 1);
    if (!b) return 0;
    memcpy(b, data, size);
    one(b, size);
    /* re-signed: the body (without a last checksum line), then the sum */
    size_t body = size;
    if (size && b[size - 1] == '\n') {
        size_t cl = size - 1;
        while (cl > 0 && b[cl - 1] != '\n') cl--;
        if (size - cl > 9 && !memcmp(b + cl, "checksum ", 9)) body = cl;
    }
    char *r = malloc(body + 1 + 32);
    if (r) {
        memcpy(r, b, body);
        size_t n = body;
        if (n && r[n - 1] != '\n') r[n++] = '\n';
        n += (size_t)snprintf(r + n, 32, "checksum %016" PRIx64 "\n", sl__xxh3(r, n));
        one(r, n);
        free(r);
    }
    free(b);
    return 0;
}
