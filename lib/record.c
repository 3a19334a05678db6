/*
** record.c -- record framing and checksums (XXH3-64).
**
** The byte layout is documented with the segment format at the top of
** segment.c.  A record is valid when its header is self-consistent
** (rec_bytes == 40 + key_len + data_len, flags and reserved zero, key_len in
** 1..1024, it fits in the region) and its XXH3-64 matches.  An all-zero
** header is the end of what was ever written.
*/
#include "internal.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

/* XXH3 up to 240 bytes is a short scalar path: inlined here it is fastest.
** Longer inputs run its vector loop, which the inlined build compiles for
** SSE2 only (13-17 GB/s here); libxxhash's run-time dispatcher picks AVX2
** or AVX-512 (41 GB/s at 64 KiB).  Same algorithm, same hash value.
** The dispatcher (Debian's libxxhash 0.8.1) returns with the upper halves
** of the vector registers dirty, which makes every later SSE instruction in
** the process pay a transition penalty: 100-byte appends ran 40% slower
** after a single call.  So a vzeroupper follows each call. */
#if defined(__x86_64__) || defined(__i386__)
extern XXH64_hash_t XXH3_64bits_dispatch(const void *input, size_t len);

static uint64_t xxh3_long(const void *p, size_t n)
{
    uint64_t h = XXH3_64bits_dispatch(p, n);
    if (__builtin_cpu_supports("avx")) __asm__ volatile("vzeroupper" ::: "memory");
    return h;
}
#else
#define xxh3_long XXH3_64bits
#endif

static inline uint64_t xxh3(const void *p, size_t n)
{
    return n <= 240 ? XXH3_64bits(p, n) : xxh3_long(p, n);
}

uint64_t sl__xxh3(const void *p, size_t n) { return xxh3(p, n); }

int sl__rec_write(uint8_t *dst, uint64_t seq, int64_t ms, const void *key,
                  uint32_t klen, const void *data, uint32_t dlen, const sl_seal *e)
{
    uint32_t body = (uint32_t)sl__rec_bytes(e ? SL_REC_ENC : 0, klen, dlen) - 8;
    sl__st32(dst + 0, body + 8);
    sl__st32(dst + 4, e ? SL_REC_ENC : 0);
    sl__st64(dst + 8, seq);
    sl__st64(dst + 16, (uint64_t)ms);
    sl__st16(dst + 24, (uint16_t)klen);
    sl__st16(dst + 26, 0);
    sl__st32(dst + 28, dlen);
    if (SL_UNLIKELY(e != NULL)) {
        uint8_t nonce[12], aad[SL_REC_AAD];
        sl__st32(dst + 32, e->key->version);
        sl__st32(dst + 36, e->salt);
        size_t al = sl__rec_nonce_aad(dst, e->stream_id, e->shard_index, nonce, aad);
        uint8_t *ct = dst + SL_REC_ENC_HDR;
        if (sl__gcm_seal(e->ctx, e->ctx_ver, e->key, nonce, aad, al, key, klen, data, dlen, ct,
                         ct + klen + dlen) != 0) {
            memset(dst, 0, body);
            return sl__err(SL_EIO, "libcrypto failed to encrypt a record");
        }
    } else {
        memcpy(dst + SL_REC_HDR, key, klen);
        if (dlen) memcpy(dst + SL_REC_HDR + klen, data, dlen);
    }
    sl__st64(dst + body, xxh3(dst, body));
    return 0;
}

int sl__rec_parse(const uint8_t *p, uint64_t avail, bool verify,
                  sl_recview *out)
{
    if (avail < SL_REC_OVERHEAD) {
        /* too little room for a record: the end if it is all zero */
        for (uint64_t i = 0; i < avail; i++)
            if (p[i]) return SL_REC_BAD;
        return SL_REC_END;
    }
    uint32_t rec_bytes = sl__ld32(p);
    uint32_t flags = sl__ld32(p + 4);
    if (rec_bytes == 0 && flags == 0 && sl__ld64(p + 8) == 0)
        return SL_REC_END;
    uint32_t klen = sl__ld16(p + 24), dlen = sl__ld32(p + 28);
    if ((flags & ~SL_REC_ENC) != 0 || sl__ld16(p + 26) != 0 || klen == 0 ||
        klen > SL_KEY_BYTES_MAX || (uint64_t)rec_bytes != sl__rec_bytes(flags, klen, dlen) ||
        sl__pad8(rec_bytes) > avail || sl__ld64(p + 8) >= SL_SEQ_LIMIT)
        return SL_REC_BAD;
    uint32_t body = rec_bytes - 8;
    if (verify && xxh3(p, body) != sl__ld64(p + body))
        return SL_REC_BAD;
    uint32_t at = flags ? SL_REC_ENC_HDR : SL_REC_HDR;
    out->seq = sl__ld64(p + 8);
    out->ms = (int64_t)sl__ld64(p + 16);
    out->key = p + at;
    out->klen = klen;
    out->data = p + at + klen;
    out->dlen = dlen;
    out->flags = flags;
    out->span = sl__pad8(rec_bytes);
    return SL_REC_OK;
}
