/*
** fuzz_record.c -- libFuzzer target: record framing (lib/record.c,
** sl__rec_parse), hot and encrypted.
**
** The input is a region of records as a segment holds them (from offset
** 0; the region ends with the input).  It is walked as a scan does: parse
** at the offset (with and without the checksum); a good record moves on by
** its span, a bad one by 8 bytes, a zero slot ends the walk.  Checked:
**   - a record accepted with its checksum is accepted without it, with
**     the same view; its key and data lie inside the record and the
**     record inside the region (the input is an exact-size heap copy, so
**     ASan sees any read past it);
**   - a plain record framed again by sl__rec_write from its view is the
**     same bytes; an encrypted one (key version 1, fuzz.h's fixed key,
**     stream FZ_STREAM_ID, shard 0) that decrypts is sealed again to the
**     same bytes, and one that does not is never half-returned;
**   - parse is a pure function: the same answer twice.
** Each input runs twice: as given and re-signed (every parseable record's
** XXH3 recomputed, so that mutations reach what follows the checksum).
** Seeds: fuzz/corpus/record/, written by make_corpus.c.
*/
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

static void same_view(const sl_recview *a, const sl_recview *b)
{
    if (a->seq != b->seq || a->ms != b->ms || a->key != b->key || a->data != b->data ||
        a->klen != b->klen || a->dlen != b->dlen || a->flags != b->flags || a->span != b->span)
        fz_fail("sl__rec_parse gave two views of one record");
}

/* The record at p (parsed and checksummed as v) framed again. */
static void reframe(const uint8_t *p, const sl_recview *v)
{
    size_t rb = sl__ld32(p), span = (size_t)v->span;
    uint8_t *out = calloc(1, span);
    if (!out) fz_fail("out of memory");
    if (!v->flags) {
        if (sl__rec_write(out, v->seq, v->ms, v->key, v->klen, v->data, v->dlen, NULL) != 0)
            fz_fail("sl__rec_write failed");
        if (memcmp(out, p, rb) != 0) fz_fail("a plain record does not frame back to its bytes");
        free(out);
        return;
    }
    if (sl__ld32(p + 32) != 1) {
        free(out);
        return;
    }
    sl_dkey k = {1, {0}};
    memcpy(k.key, fz_data_key, sizeof k.key);
    static void *dctx, *ectx;
    static uint32_t dver, ever;
    uint8_t nonce[12], aad[SL_REC_AAD];
    size_t al = sl__rec_nonce_aad(p, FZ_STREAM_ID, 0, nonce, aad);
    size_t n = (size_t)v->klen + v->dlen;
    uint8_t *plain = malloc(n + 1);
    if (!plain) fz_fail("out of memory");
    memset(plain, 0xa5, n + 1);
    int r = sl__gcm_open(&dctx, &dver, &k, nonce, aad, al, v->key, n, plain, v->key + n);
    if (r != 0) {
        /* never half-returned: the output is wiped */
        for (size_t i = 0; i < n; i++)
            if (plain[i]) fz_fail("a record that fails its tag left plaintext behind");
    } else {
        sl_seal e = {&k, sl__ld32(p + 36), 0, FZ_STREAM_ID, &ectx, &ever};
        if (sl__rec_write(out, v->seq, v->ms, plain, v->klen, plain + v->klen, v->dlen, &e) != 0)
            fz_fail("sl__rec_write (encrypted) failed");
        if (memcmp(out, p, rb) != 0)
            fz_fail("an encrypted record does not seal back to its bytes");
    }
    free(plain);
    free(out);
}

static void walk(const uint8_t *b, size_t n)
{
    uint64_t off = 0;
    int budget = 1 << 16;
    while (off < n && budget-- > 0) {
        sl_recview v, w, x;
        memset(&v, 0, sizeof v);
        memset(&w, 0, sizeof w);
        int rv = sl__rec_parse(b + off, n - off, true, &v);
        int rn = sl__rec_parse(b + off, n - off, false, &w);
        if (sl__rec_parse(b + off, n - off, true, &x) != rv) fz_fail("sl__rec_parse is not pure");
        if (rv == SL_REC_END) {
            if (rn != SL_REC_END) fz_fail("a zero slot only with the checksum");
            break;
        }
        if (rv == SL_REC_OK && rn != SL_REC_OK) fz_fail("checksum ok but framing bad");
        if (rn == SL_REC_OK) {
            const uint8_t *lo = b + off, *hi = b + n;
            size_t at = w.flags ? SL_REC_ENC_HDR : SL_REC_HDR;
            size_t tail = w.flags ? SL_GCM_TAG + 8 : 8;
            if (w.span % 8 || w.span > n - off || w.klen < 1 || w.klen > SL_KEY_BYTES_MAX ||
                w.key != lo + at || w.data != w.key + w.klen ||
                w.data + w.dlen + tail > hi || w.data + w.dlen + tail > lo + w.span)
                fz_fail("a record view outside its record (span %llu, klen %u, dlen %u)",
                        (unsigned long long)w.span, w.klen, w.dlen);
            /* touch every byte of the view */
            volatile uint64_t h = fz_rec_hash(w.key, w.klen, w.data, w.dlen);
            (void)h;
        }
        if (rv == SL_REC_OK) {
            same_view(&v, &w);
            reframe(b + off, &v);
            off += v.span;
        } else {
            off += 8;
        }
    }
}

static bool resign(uint8_t *b, size_t n)
{
    bool ch = false;
    for (uint64_t off = 0; off < n;) {
        sl_recview v;
        if (sl__rec_parse(b + off, n - off, false, &v) != SL_REC_OK) {
            off += 8;
            continue;
        }
        uint32_t body = sl__ld32(b + off) - 8;
        uint64_t h = sl__xxh3(b + off, body);
        if (sl__ld64(b + off + body) != h) {
            sl__st64(b + off + body, h);
            ch = true;
        }
        off += v.span;
    }
    return ch;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20)) return 0;
    uint8_t *b = malloc(size ? size : 1);
    if (!b) return 0;
    memcpy(b, data, size);
    walk(b, size);
    if (resign(b, size)) walk(b, size);
    free(b);
    return 0;
}
