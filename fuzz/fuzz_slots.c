/*
** fuzz_slots.c -- libFuzzer target: the small checksummed files of
** lib/consumer.c and lib/stream.c, on bytes in memory: CONSUMER
** (sl__cons_decode), a CHECKPOINTS slot pair (sl__ckpt_slot_pick) and
** SEQ's slots (sl__seq_slot_decode).  Those decoders are static; the
** sl__ wrappers exist for this target.
**
** Input: byte 0 picks the file (0 CONSUMER, 1 CHECKPOINTS, 2 SEQ, 3 all
** three), the rest is its bytes (zero-padded to a pair's 128 or a slot's
** 64 bytes, as pread_zero reads past a short file; CONSUMER is decoded at
** its length).  Each runs twice: as given and re-signed (checksums
** recomputed).  Checked against the formats (README "On-disk format"):
**   CONSUMER     accepted only when every rule holds, for the name of its
**                directory (the name it holds, and another); the name
**                returned is that name; a refusal explains itself;
**   CHECKPOINTS  the slot picked is valid for its shard and consumer id,
**                and the newer one when both are;
**   SEQ          accepted exactly when magic, version, stream id and
**                checksum hold and the ceiling is at most SL_SEQ_LIMIT,
**                with the fields as stored.
** Seeds: fuzz/corpus/slots/, written by make_corpus.c.
*/
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

static void consumer(const uint8_t *p, size_t n)
{
    char names[2][160];
    uint32_t nl = n >= 28 ? sl__ld32(p + 24) : 0;
    size_t take = nl <= 128 && n >= 32 + (size_t)nl ? nl : 0;
    memcpy(names[0], p + (take ? 32 : 0), take);
    names[0][take] = '\0';
    strcpy(names[1], "consumer-1");
    for (int k = 0; k < 2; k++) {
        sl_consumer_info ci;
        char why[160];
        memset(&ci, 0x5a, sizeof ci);
        memset(why, 0x5a, sizeof why);
        bool ok = sl__cons_decode(p, n, names[k], &ci, why, sizeof why);
        if (!ok) {
            if (!memchr(why, '\0', sizeof why) || !why[0])
                fz_fail("CONSUMER refused without a reason");
            continue;
        }
        bool rules = n == 168 && sl__ld32(p) == 0x4E434C53u && sl__ld16(p + 4) == 1 &&
                     (sl__ld16(p + 6) == 1 || sl__ld16(p + 6) == 2) && sl__ld64(p + 16) != 0 &&
                     nl >= 1 && nl <= 128 && sl__ld32(p + 28) == 0 &&
                     sl__ld64(p + 160) == sl__xxh3(p, 160);
        for (uint32_t i = nl; rules && i < 128; i++) rules = p[32 + i] == 0;
        if (!rules) fz_fail("CONSUMER accepted against the format's rules");
        if (!memchr(ci.name, '\0', sizeof ci.name) || strcmp(ci.name, names[k]) ||
            ci.id != sl__ld64(p + 16) || ci.created_ms != (int64_t)sl__ld64(p + 8) ||
            (int)ci.type != sl__ld16(p + 6))
            fz_fail("CONSUMER decoded to other values");
    }
}

static bool ckpt_valid(const uint8_t *s, uint32_t shard, uint64_t id)
{
    return sl__ld32(s) == 0x4B434C53u && sl__ld16(s + 4) == 1 && sl__ld16(s + 6) == 0 &&
           sl__ld32(s + 8) == shard && sl__ld32(s + 12) == 0 && sl__ld64(s + 40) == id &&
           sl__ld64(s + 48) == 0 && sl__ld64(s + 56) == sl__xxh3(s, 56);
}

static void checkpoints(const uint8_t *pair)
{
    /* the shard and consumer of slot 0, of slot 1, and others */
    uint32_t shards[3] = {sl__ld32(pair + 8), sl__ld32(pair + 64 + 8), 0};
    uint64_t ids[3] = {sl__ld64(pair + 40), sl__ld64(pair + 64 + 40), 1};
    for (int k = 0; k < 3; k++) {
        int w = sl__ckpt_slot_pick(pair, shards[k], ids[k]);
        bool v0 = ckpt_valid(pair, shards[k], ids[k]), v1 = ckpt_valid(pair + 64, shards[k], ids[k]);
        int want = v0 && v1 ? (sl__ld64(pair + 64 + 16) > sl__ld64(pair + 16)) : v1 ? 1 : v0 ? 0 : -1;
        if (w != want) fz_fail("CHECKPOINTS picked slot %d, not %d", w, want);
    }
}

static void seq(const uint8_t *slots)
{
    for (int i = 0; i < 2; i++) {
        const uint8_t *b = slots + 64 * i;
        uint64_t ids[2] = {sl__ld64(b + 24), FZ_STREAM_ID};
        for (int k = 0; k < 2; k++) {
            uint64_t gen = 7, ceil = 7;
            bool ok = sl__seq_slot_decode(b, ids[k], &gen, &ceil);
            bool want = sl__ld32(b) == 0x51534C53u && sl__ld32(b + 4) == 1 &&
                        sl__ld64(b + 24) == ids[k] && sl__ld64(b + 56) == sl__xxh3(b, 56) &&
                        sl__ld64(b + 16) <= SL_SEQ_LIMIT;
            if (ok != want) fz_fail("SEQ slot %s against the format", ok ? "accepted" : "refused");
            if (ok && (gen != sl__ld64(b + 8) || ceil != sl__ld64(b + 16)))
                fz_fail("SEQ slot decoded to other values");
            if (!ok && (gen != 7 || ceil != 7)) fz_fail("a refused SEQ slot wrote its outputs");
        }
    }
}

static void run(int kind, uint8_t *p, size_t n, uint8_t *pad)
{
    if (kind == 0 || kind == 3) consumer(p, n);
    if (kind == 1 || kind == 3) checkpoints(pad);
    if (kind == 2 || kind == 3) seq(pad);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096) return 0;
    int kind = data[0] % 4;
    size_t n = size - 1;
    uint8_t *p = malloc(n ? n : 1);             /* exact size, for ASan */
    uint8_t pad[128];
    if (!p) return 0;
    memcpy(p, data + 1, n);
    memset(pad, 0, sizeof pad);
    memcpy(pad, p, n < sizeof pad ? n : sizeof pad);
    run(kind, p, n, pad);
    /* re-signed */
    if (n >= 168) sl__st64(p + 160, sl__xxh3(p, 160));
    for (int i = 0; i < 2; i++) sl__st64(pad + 64 * i + 56, sl__xxh3(pad + 64 * i, 56));
    run(kind, p, n, pad);
    free(p);
    return 0;
}
