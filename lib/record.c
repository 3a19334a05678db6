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

uint64_t sl__xxh3(const void *p, size_t n) { return XXH3_64bits(p, n); }

void sl__rec_write(uint8_t *dst, uint64_t seq, int64_t ms, const void *key,
                   uint32_t klen, const void *data, uint32_t dlen)
{
    uint32_t body = SL_REC_HDR + klen + dlen;
    sl__st32(dst + 0, body + 8);
    sl__st32(dst + 4, 0);
    sl__st64(dst + 8, seq);
    sl__st64(dst + 16, (uint64_t)ms);
    sl__st16(dst + 24, (uint16_t)klen);
    sl__st16(dst + 26, 0);
    sl__st32(dst + 28, dlen);
    memcpy(dst + SL_REC_HDR, key, klen);
    if (dlen) memcpy(dst + SL_REC_HDR + klen, data, dlen);
    sl__st64(dst + body, XXH3_64bits(dst, body));
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
    if (flags != 0 || sl__ld16(p + 26) != 0 || klen == 0 ||
        klen > SL_KEY_BYTES_MAX ||
        (uint64_t)rec_bytes != (uint64_t)SL_REC_OVERHEAD + klen + dlen ||
        sl__pad8(rec_bytes) > avail)
        return SL_REC_BAD;
    uint32_t body = rec_bytes - 8;
    if (verify && XXH3_64bits(p, body) != sl__ld64(p + body))
        return SL_REC_BAD;
    out->seq = sl__ld64(p + 8);
    out->ms = (int64_t)sl__ld64(p + 16);
    out->key = p + SL_REC_HDR;
    out->klen = klen;
    out->data = p + SL_REC_HDR + klen;
    out->dlen = dlen;
    out->span = sl__pad8(rec_bytes);
    return SL_REC_OK;
}
