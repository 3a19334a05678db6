/*
** hashkey.c -- partition key -> 128-bit hash key, explicit hash keys, range
** arithmetic and Kinesis' even split of the key space.
**
** A hash key is an unsigned 128-bit integer.  Kinesis computes it as
** MD5(UTF-8 bytes of the partition key) read big-endian; an explicit hash key
** (a decimal string) replaces it.  CreateStream with N shards gives shard i
** the range [i*q, (i+1)*q - 1] with q = floor(2^128 / N), the last shard
** ending at 2^128 - 1 (tests/vectors/partition-keys.json, recorded from
** kinesalite and matching AWS' own CLI examples).
**
** Arithmetic is on {hi, lo} pairs and 32-bit limbs, not __int128, so the
** library builds for 32-bit edge targets too.
*/
/* MD5 goes through libcrypto.  Its low-level MD5_Init/Update/Final run on a
** stack context with no allocation and no provider dispatch, about twice
** as fast per 16-byte key as EVP here (EVP_DigestInit/Final allocate and
** cleanse every time).  OpenSSL 3 marks them deprecated but still ships
** them; a build with OPENSSL_NO_DEPRECATED_3_0 falls back to EVP. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "internal.h"

#include <openssl/evp.h>
#include <openssl/md5.h>
#include <stdlib.h>

#if !defined(OPENSSL_NO_DEPRECATED_3_0) && !defined(OPENSSL_NO_MD5)
#define SL_MD5_LOWLEVEL 1
#endif

sl_u128 sl__u128_from_be(const uint8_t b[16])
{
    uint64_t hi, lo;
    memcpy(&hi, b, 8);
    memcpy(&lo, b + 8, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    hi = __builtin_bswap64(hi);
    lo = __builtin_bswap64(lo);
#endif
    return (sl_u128){hi, lo};
}

void sl__u128_to_be(uint8_t b[16], sl_u128 v)
{
    for (int i = 7; i >= 0; i--, v.hi >>= 8) b[i] = (uint8_t)v.hi;
    for (int i = 15; i >= 8; i--, v.lo >>= 8) b[i] = (uint8_t)v.lo;
}

/* limbs[0] is the most significant 32 bits */
static void to_limbs(uint32_t l[4], sl_u128 v)
{
    l[0] = (uint32_t)(v.hi >> 32);
    l[1] = (uint32_t)v.hi;
    l[2] = (uint32_t)(v.lo >> 32);
    l[3] = (uint32_t)v.lo;
}

static sl_u128 from_limbs(const uint32_t l[4])
{
    return (sl_u128){((uint64_t)l[0] << 32) | l[1],
                     ((uint64_t)l[2] << 32) | l[3]};
}

/* v = v * m + a; returns the carry out of the top limb (non-zero: overflow) */
static uint32_t muladd_small(sl_u128 *v, uint32_t m, uint32_t a)
{
    uint32_t l[4];
    to_limbs(l, *v);
    uint64_t carry = a;
    for (int i = 3; i >= 0; i--) {
        uint64_t t = (uint64_t)l[i] * m + carry;
        l[i] = (uint32_t)t;
        carry = t >> 32;
    }
    *v = from_limbs(l);
    return (uint32_t)carry;
}

/* v = v / d; returns v % d */
static uint32_t divmod_small(sl_u128 *v, uint32_t d)
{
    uint32_t l[4];
    to_limbs(l, *v);
    uint64_t rem = 0;
    for (int i = 0; i < 4; i++) {
        uint64_t cur = (rem << 32) | l[i];
        l[i] = (uint32_t)(cur / d);
        rem = cur % d;
    }
    *v = from_limbs(l);
    return (uint32_t)rem;
}

int sl__u128_parse(sl_u128 *out, const char *s)
{
    static const char pattern[] = "0|([1-9]\\d{0,38})";
    size_t n = s ? strlen(s) : 0;
    bool ok = n >= 1 && n <= SL_HASH_KEY_DIGITS_MAX &&
              (s[0] != '0' || n == 1);
    for (size_t i = 0; ok && i < n; i++) ok = s[i] >= '0' && s[i] <= '9';
    if (!ok)
        return sl__err(SL_EVALIDATION,
                       "1 validation error detected: Value '%.64s' at "
                       "'explicitHashKey' failed to satisfy constraint: "
                       "Member must satisfy regular expression pattern: %s",
                       s ? s : "(null)", pattern);
    sl_u128 v = {0, 0};
    for (size_t i = 0; i < n; i++) {
        if (muladd_small(&v, 10, (uint32_t)(s[i] - '0')) != 0)
            return sl__err(SL_EINVAL,
                           "Invalid ExplicitHashKey. ExplicitHashKey must be "
                           "in the range: [0, 2^128-1]. Specified value was "
                           "%s",
                           s);
    }
    *out = v;
    return 0;
}

char *sl__u128_format(char buf[40], sl_u128 v)
{
    char tmp[40];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + divmod_small(&v, 10));
    } while (v.hi || v.lo);
    for (int i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return buf;
}

void sl__hashkey_split(sl_u128 *start, sl_u128 *end, uint32_t i, uint32_t n)
{
    /* q = floor(2^128 / n) = floor((2^128-1)/n) + ((2^128-1) % n == n-1) */
    sl_u128 q = SL_U128_MAX;
    uint32_t r = divmod_small(&q, n);
    if (r == n - 1) muladd_small(&q, 1, 1);
    sl_u128 s = q;
    muladd_small(&s, i, 0);
    *start = s;
    if (i + 1 == n) {
        *end = SL_U128_MAX;
    } else {
        sl_u128 e = q;
        muladd_small(&e, i + 1, 0);
        /* e - 1 */
        if (e.lo == 0) e.hi--;
        e.lo--;
        *end = e;
    }
}

int sl__utf8_scan(const char *str, size_t *bytes, size_t *points, size_t *units)
{
    const unsigned char *p = (const unsigned char *)str;
    size_t i = 0, np = 0, nu = 0, len = strlen(str);
    /* ASCII runs, 8 bytes at a time (keys are mostly ASCII) */
    while (i + 8 <= len) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull) break;
        i += 8;
    }
    np = nu = i;
    while (p[i]) {
        unsigned c = p[i], need, cp;
        if (c < 0x80) { cp = c; need = 0; }
        else if ((c & 0xE0) == 0xC0) { cp = c & 0x1F; need = 1; }
        else if ((c & 0xF0) == 0xE0) { cp = c & 0x0F; need = 2; }
        else if ((c & 0xF8) == 0xF0) { cp = c & 0x07; need = 3; }
        else goto bad;
        for (unsigned k = 1; k <= need; k++) {
            if ((p[i + k] & 0xC0) != 0x80) goto bad;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        /* overlong forms, surrogates and values past U+10FFFF */
        if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) ||
            (need == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            goto bad;
        np++;
        nu += cp >= 0x10000 ? 2 : 1;
        i += need + 1;
    }
    *bytes = i;
    if (points) *points = np;
    if (units) *units = nu;
    return 0;
bad:
    *bytes = i;
    return -1;
}

int sl__partition_key_check(const char *key, size_t *bytes)
{
    size_t units = 0;
    if (!key || !*key)
        return sl__err(SL_EVALIDATION,
                       "1 validation error detected: Value at "
                       "'partitionKey' failed to satisfy constraint: Member "
                       "must have length greater than or equal to 1");
    if (sl__utf8_scan(key, bytes, NULL, &units) != 0)
        return sl__err(SL_EVALIDATION,
                       "partition key is not valid UTF-8 (byte %zu)", *bytes);
    if (units > SL_PARTITION_KEY_MAX)
        return sl__err(SL_EVALIDATION,
                       "1 validation error detected: Value at 'partitionKey' "
                       "failed to satisfy constraint: Member must have length "
                       "less than or equal to %d (it has %zu UTF-16 code "
                       "units)",
                       SL_PARTITION_KEY_MAX, units);
    return 0;
}

/* ---- MD5 ---------------------------------------------------------------- */

struct sl_md5 {
    EVP_MD_CTX *ctx;
    EVP_MD *md;
};

int sl__md5_new(sl_md5 **out)
{
    sl_md5 *m = calloc(1, sizeof *m);
    *out = NULL;
    if (!m) return sl__err(SL_ENOMEM, "allocating an MD5 context");
    m->md = EVP_MD_fetch(NULL, "MD5", NULL);
    m->ctx = EVP_MD_CTX_new();
    if (!m->md || !m->ctx) {
        sl__md5_free(m);
        return sl__err(SL_EIO, "libcrypto has no MD5 (FIPS-only provider?)");
    }
    *out = m;
    return 0;
}

void sl__md5_free(sl_md5 *m)
{
    if (!m) return;
    EVP_MD_CTX_free(m->ctx);
    EVP_MD_free(m->md);
    free(m);
}

/* ---- MD5s in parallel lanes ------------------------------------------------
** A PutRecords batch hashes up to 500 partition keys, and MD5's rounds are
** a long dependency chain that leaves most of a core idle.  With AVX2 the
** rounds run on eight keys at once, one per 32-bit lane (about the cost of
** two scalar MD5s); with AVX-512 on sixteen, where a rotate and each round
** function are one instruction.  Only one-block keys (<= 55 bytes: a 16-byte
** key, a UUID, a session id) go this way; longer ones take sl__md5.  The
** result is RFC 1321's, checked against libcrypto in test_hashkey. */

/* Pad a one-block message (RFC 1321: 0x80, zeros, bit length LE). */
static void md5_pad1(uint32_t w[16], const void *data, size_t n)
{
    memset(w, 0, 64);
    memcpy(w, data, n);
    ((uint8_t *)w)[n] = 0x80;
    w[14] = (uint32_t)(n * 8);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define MD5_ROTL(x, r) _mm256_or_si256(_mm256_slli_epi32((x), (r)), _mm256_srli_epi32((x), 32 - (r)))
#define MD5_F(b, c, d) _mm256_xor_si256((d), _mm256_and_si256((b), _mm256_xor_si256((c), (d))))
#define MD5_G(b, c, d) _mm256_xor_si256((c), _mm256_and_si256((d), _mm256_xor_si256((b), (c))))
#define MD5_H(b, c, d) _mm256_xor_si256((b), _mm256_xor_si256((c), (d)))
#define MD5_I(b, c, d) _mm256_xor_si256((c), _mm256_or_si256((b), _mm256_xor_si256((d), ones)))
#define MD5_STEP(f, a, b, c, d, g, k, r)                                          \
    (a) = _mm256_add_epi32((b),                                                  \
              MD5_ROTL(_mm256_add_epi32(_mm256_add_epi32((a), f((b), (c), (d))),  \
                                        _mm256_add_epi32(m[g], _mm256_set1_epi32((int)(k)))), r))

__attribute__((target("avx2"))) static void md5_x8_avx2(const uint32_t w[8][16],
                                                        uint8_t out[8][16])
{
    const __m256i ones = _mm256_set1_epi32(-1);
    __m256i m[16];
    for (int j = 0; j < 16; j++)
        m[j] = _mm256_set_epi32((int)w[7][j], (int)w[6][j], (int)w[5][j], (int)w[4][j],
                                (int)w[3][j], (int)w[2][j], (int)w[1][j], (int)w[0][j]);
    const __m256i a0 = _mm256_set1_epi32(0x67452301), b0 = _mm256_set1_epi32((int)0xefcdab89u),
                  c0 = _mm256_set1_epi32((int)0x98badcfeu), d0 = _mm256_set1_epi32(0x10325476);
    __m256i a = a0, b = b0, c = c0, d = d0;
    MD5_STEP(MD5_F, a, b, c, d, 0, 0xd76aa478u, 7);   MD5_STEP(MD5_F, d, a, b, c, 1, 0xe8c7b756u, 12);
    MD5_STEP(MD5_F, c, d, a, b, 2, 0x242070dbu, 17);  MD5_STEP(MD5_F, b, c, d, a, 3, 0xc1bdceeeu, 22);
    MD5_STEP(MD5_F, a, b, c, d, 4, 0xf57c0fafu, 7);   MD5_STEP(MD5_F, d, a, b, c, 5, 0x4787c62au, 12);
    MD5_STEP(MD5_F, c, d, a, b, 6, 0xa8304613u, 17);  MD5_STEP(MD5_F, b, c, d, a, 7, 0xfd469501u, 22);
    MD5_STEP(MD5_F, a, b, c, d, 8, 0x698098d8u, 7);   MD5_STEP(MD5_F, d, a, b, c, 9, 0x8b44f7afu, 12);
    MD5_STEP(MD5_F, c, d, a, b, 10, 0xffff5bb1u, 17); MD5_STEP(MD5_F, b, c, d, a, 11, 0x895cd7beu, 22);
    MD5_STEP(MD5_F, a, b, c, d, 12, 0x6b901122u, 7);  MD5_STEP(MD5_F, d, a, b, c, 13, 0xfd987193u, 12);
    MD5_STEP(MD5_F, c, d, a, b, 14, 0xa679438eu, 17); MD5_STEP(MD5_F, b, c, d, a, 15, 0x49b40821u, 22);
    MD5_STEP(MD5_G, a, b, c, d, 1, 0xf61e2562u, 5);   MD5_STEP(MD5_G, d, a, b, c, 6, 0xc040b340u, 9);
    MD5_STEP(MD5_G, c, d, a, b, 11, 0x265e5a51u, 14); MD5_STEP(MD5_G, b, c, d, a, 0, 0xe9b6c7aau, 20);
    MD5_STEP(MD5_G, a, b, c, d, 5, 0xd62f105du, 5);   MD5_STEP(MD5_G, d, a, b, c, 10, 0x02441453u, 9);
    MD5_STEP(MD5_G, c, d, a, b, 15, 0xd8a1e681u, 14); MD5_STEP(MD5_G, b, c, d, a, 4, 0xe7d3fbc8u, 20);
    MD5_STEP(MD5_G, a, b, c, d, 9, 0x21e1cde6u, 5);   MD5_STEP(MD5_G, d, a, b, c, 14, 0xc33707d6u, 9);
    MD5_STEP(MD5_G, c, d, a, b, 3, 0xf4d50d87u, 14);  MD5_STEP(MD5_G, b, c, d, a, 8, 0x455a14edu, 20);
    MD5_STEP(MD5_G, a, b, c, d, 13, 0xa9e3e905u, 5);  MD5_STEP(MD5_G, d, a, b, c, 2, 0xfcefa3f8u, 9);
    MD5_STEP(MD5_G, c, d, a, b, 7, 0x676f02d9u, 14);  MD5_STEP(MD5_G, b, c, d, a, 12, 0x8d2a4c8au, 20);
    MD5_STEP(MD5_H, a, b, c, d, 5, 0xfffa3942u, 4);   MD5_STEP(MD5_H, d, a, b, c, 8, 0x8771f681u, 11);
    MD5_STEP(MD5_H, c, d, a, b, 11, 0x6d9d6122u, 16); MD5_STEP(MD5_H, b, c, d, a, 14, 0xfde5380cu, 23);
    MD5_STEP(MD5_H, a, b, c, d, 1, 0xa4beea44u, 4);   MD5_STEP(MD5_H, d, a, b, c, 4, 0x4bdecfa9u, 11);
    MD5_STEP(MD5_H, c, d, a, b, 7, 0xf6bb4b60u, 16);  MD5_STEP(MD5_H, b, c, d, a, 10, 0xbebfbc70u, 23);
    MD5_STEP(MD5_H, a, b, c, d, 13, 0x289b7ec6u, 4);  MD5_STEP(MD5_H, d, a, b, c, 0, 0xeaa127fau, 11);
    MD5_STEP(MD5_H, c, d, a, b, 3, 0xd4ef3085u, 16);  MD5_STEP(MD5_H, b, c, d, a, 6, 0x04881d05u, 23);
    MD5_STEP(MD5_H, a, b, c, d, 9, 0xd9d4d039u, 4);   MD5_STEP(MD5_H, d, a, b, c, 12, 0xe6db99e5u, 11);
    MD5_STEP(MD5_H, c, d, a, b, 15, 0x1fa27cf8u, 16); MD5_STEP(MD5_H, b, c, d, a, 2, 0xc4ac5665u, 23);
    MD5_STEP(MD5_I, a, b, c, d, 0, 0xf4292244u, 6);   MD5_STEP(MD5_I, d, a, b, c, 7, 0x432aff97u, 10);
    MD5_STEP(MD5_I, c, d, a, b, 14, 0xab9423a7u, 15); MD5_STEP(MD5_I, b, c, d, a, 5, 0xfc93a039u, 21);
    MD5_STEP(MD5_I, a, b, c, d, 12, 0x655b59c3u, 6);  MD5_STEP(MD5_I, d, a, b, c, 3, 0x8f0ccc92u, 10);
    MD5_STEP(MD5_I, c, d, a, b, 10, 0xffeff47du, 15); MD5_STEP(MD5_I, b, c, d, a, 1, 0x85845dd1u, 21);
    MD5_STEP(MD5_I, a, b, c, d, 8, 0x6fa87e4fu, 6);   MD5_STEP(MD5_I, d, a, b, c, 15, 0xfe2ce6e0u, 10);
    MD5_STEP(MD5_I, c, d, a, b, 6, 0xa3014314u, 15);  MD5_STEP(MD5_I, b, c, d, a, 13, 0x4e0811a1u, 21);
    MD5_STEP(MD5_I, a, b, c, d, 4, 0xf7537e82u, 6);   MD5_STEP(MD5_I, d, a, b, c, 11, 0xbd3af235u, 10);
    MD5_STEP(MD5_I, c, d, a, b, 2, 0x2ad7d2bbu, 15);  MD5_STEP(MD5_I, b, c, d, a, 9, 0xeb86d391u, 21);
    uint32_t r[4][8];
    _mm256_storeu_si256((__m256i *)(void *)r[0], _mm256_add_epi32(a, a0));
    _mm256_storeu_si256((__m256i *)(void *)r[1], _mm256_add_epi32(b, b0));
    _mm256_storeu_si256((__m256i *)(void *)r[2], _mm256_add_epi32(c, c0));
    _mm256_storeu_si256((__m256i *)(void *)r[3], _mm256_add_epi32(d, d0));
    _mm256_zeroupper();
    for (int l = 0; l < 8; l++) {
        uint32_t v[4] = {r[0][l], r[1][l], r[2][l], r[3][l]};   /* little-endian digest */
        memcpy(out[l], v, 16);
    }
}

#define MD5Z_ROTL(x, r) _mm512_rol_epi32((x), (r))
#define MD5Z_F(b, c, d) _mm512_ternarylogic_epi32((b), (c), (d), 0xca)   /* b ? c : d */
#define MD5Z_G(b, c, d) _mm512_ternarylogic_epi32((b), (c), (d), 0xe4)   /* d ? b : c */
#define MD5Z_H(b, c, d) _mm512_ternarylogic_epi32((b), (c), (d), 0x96)   /* b ^ c ^ d */
#define MD5Z_I(b, c, d) _mm512_ternarylogic_epi32((b), (c), (d), 0x39)   /* c ^ (b | ~d) */
#define MD5Z_STEP(f, a, b, c, d, g, k, r)                                          \
    (a) = _mm512_add_epi32((b),                                                  \
              MD5Z_ROTL(_mm512_add_epi32(_mm512_add_epi32((a), f((b), (c), (d))),  \
                                        _mm512_add_epi32(m[g], _mm512_set1_epi32((int)(k)))), r))

__attribute__((target("avx512f"))) static void md5_x16_avx512(const uint32_t w[16][16],
                                                              uint8_t out[16][16])
{
    __m512i m[16];
    /* word j of every lane: a gather of 16 words 16 apart */
    const __m512i lane = _mm512_set_epi32(240, 224, 208, 192, 176, 160, 144, 128, 112, 96, 80,
                                          64, 48, 32, 16, 0);
    for (int j = 0; j < 16; j++) m[j] = _mm512_i32gather_epi32(lane, &w[0][j], 4);
    const __m512i a0 = _mm512_set1_epi32(0x67452301), b0 = _mm512_set1_epi32((int)0xefcdab89u),
                  c0 = _mm512_set1_epi32((int)0x98badcfeu), d0 = _mm512_set1_epi32(0x10325476);
    __m512i a = a0, b = b0, c = c0, d = d0;
    MD5Z_STEP(MD5Z_F, a, b, c, d, 0, 0xd76aa478u, 7);   MD5Z_STEP(MD5Z_F, d, a, b, c, 1, 0xe8c7b756u, 12);
    MD5Z_STEP(MD5Z_F, c, d, a, b, 2, 0x242070dbu, 17);  MD5Z_STEP(MD5Z_F, b, c, d, a, 3, 0xc1bdceeeu, 22);
    MD5Z_STEP(MD5Z_F, a, b, c, d, 4, 0xf57c0fafu, 7);   MD5Z_STEP(MD5Z_F, d, a, b, c, 5, 0x4787c62au, 12);
    MD5Z_STEP(MD5Z_F, c, d, a, b, 6, 0xa8304613u, 17);  MD5Z_STEP(MD5Z_F, b, c, d, a, 7, 0xfd469501u, 22);
    MD5Z_STEP(MD5Z_F, a, b, c, d, 8, 0x698098d8u, 7);   MD5Z_STEP(MD5Z_F, d, a, b, c, 9, 0x8b44f7afu, 12);
    MD5Z_STEP(MD5Z_F, c, d, a, b, 10, 0xffff5bb1u, 17); MD5Z_STEP(MD5Z_F, b, c, d, a, 11, 0x895cd7beu, 22);
    MD5Z_STEP(MD5Z_F, a, b, c, d, 12, 0x6b901122u, 7);  MD5Z_STEP(MD5Z_F, d, a, b, c, 13, 0xfd987193u, 12);
    MD5Z_STEP(MD5Z_F, c, d, a, b, 14, 0xa679438eu, 17); MD5Z_STEP(MD5Z_F, b, c, d, a, 15, 0x49b40821u, 22);
    MD5Z_STEP(MD5Z_G, a, b, c, d, 1, 0xf61e2562u, 5);   MD5Z_STEP(MD5Z_G, d, a, b, c, 6, 0xc040b340u, 9);
    MD5Z_STEP(MD5Z_G, c, d, a, b, 11, 0x265e5a51u, 14); MD5Z_STEP(MD5Z_G, b, c, d, a, 0, 0xe9b6c7aau, 20);
    MD5Z_STEP(MD5Z_G, a, b, c, d, 5, 0xd62f105du, 5);   MD5Z_STEP(MD5Z_G, d, a, b, c, 10, 0x02441453u, 9);
    MD5Z_STEP(MD5Z_G, c, d, a, b, 15, 0xd8a1e681u, 14); MD5Z_STEP(MD5Z_G, b, c, d, a, 4, 0xe7d3fbc8u, 20);
    MD5Z_STEP(MD5Z_G, a, b, c, d, 9, 0x21e1cde6u, 5);   MD5Z_STEP(MD5Z_G, d, a, b, c, 14, 0xc33707d6u, 9);
    MD5Z_STEP(MD5Z_G, c, d, a, b, 3, 0xf4d50d87u, 14);  MD5Z_STEP(MD5Z_G, b, c, d, a, 8, 0x455a14edu, 20);
    MD5Z_STEP(MD5Z_G, a, b, c, d, 13, 0xa9e3e905u, 5);  MD5Z_STEP(MD5Z_G, d, a, b, c, 2, 0xfcefa3f8u, 9);
    MD5Z_STEP(MD5Z_G, c, d, a, b, 7, 0x676f02d9u, 14);  MD5Z_STEP(MD5Z_G, b, c, d, a, 12, 0x8d2a4c8au, 20);
    MD5Z_STEP(MD5Z_H, a, b, c, d, 5, 0xfffa3942u, 4);   MD5Z_STEP(MD5Z_H, d, a, b, c, 8, 0x8771f681u, 11);
    MD5Z_STEP(MD5Z_H, c, d, a, b, 11, 0x6d9d6122u, 16); MD5Z_STEP(MD5Z_H, b, c, d, a, 14, 0xfde5380cu, 23);
    MD5Z_STEP(MD5Z_H, a, b, c, d, 1, 0xa4beea44u, 4);   MD5Z_STEP(MD5Z_H, d, a, b, c, 4, 0x4bdecfa9u, 11);
    MD5Z_STEP(MD5Z_H, c, d, a, b, 7, 0xf6bb4b60u, 16);  MD5Z_STEP(MD5Z_H, b, c, d, a, 10, 0xbebfbc70u, 23);
    MD5Z_STEP(MD5Z_H, a, b, c, d, 13, 0x289b7ec6u, 4);  MD5Z_STEP(MD5Z_H, d, a, b, c, 0, 0xeaa127fau, 11);
    MD5Z_STEP(MD5Z_H, c, d, a, b, 3, 0xd4ef3085u, 16);  MD5Z_STEP(MD5Z_H, b, c, d, a, 6, 0x04881d05u, 23);
    MD5Z_STEP(MD5Z_H, a, b, c, d, 9, 0xd9d4d039u, 4);   MD5Z_STEP(MD5Z_H, d, a, b, c, 12, 0xe6db99e5u, 11);
    MD5Z_STEP(MD5Z_H, c, d, a, b, 15, 0x1fa27cf8u, 16); MD5Z_STEP(MD5Z_H, b, c, d, a, 2, 0xc4ac5665u, 23);
    MD5Z_STEP(MD5Z_I, a, b, c, d, 0, 0xf4292244u, 6);   MD5Z_STEP(MD5Z_I, d, a, b, c, 7, 0x432aff97u, 10);
    MD5Z_STEP(MD5Z_I, c, d, a, b, 14, 0xab9423a7u, 15); MD5Z_STEP(MD5Z_I, b, c, d, a, 5, 0xfc93a039u, 21);
    MD5Z_STEP(MD5Z_I, a, b, c, d, 12, 0x655b59c3u, 6);  MD5Z_STEP(MD5Z_I, d, a, b, c, 3, 0x8f0ccc92u, 10);
    MD5Z_STEP(MD5Z_I, c, d, a, b, 10, 0xffeff47du, 15); MD5Z_STEP(MD5Z_I, b, c, d, a, 1, 0x85845dd1u, 21);
    MD5Z_STEP(MD5Z_I, a, b, c, d, 8, 0x6fa87e4fu, 6);   MD5Z_STEP(MD5Z_I, d, a, b, c, 15, 0xfe2ce6e0u, 10);
    MD5Z_STEP(MD5Z_I, c, d, a, b, 6, 0xa3014314u, 15);  MD5Z_STEP(MD5Z_I, b, c, d, a, 13, 0x4e0811a1u, 21);
    MD5Z_STEP(MD5Z_I, a, b, c, d, 4, 0xf7537e82u, 6);   MD5Z_STEP(MD5Z_I, d, a, b, c, 11, 0xbd3af235u, 10);
    MD5Z_STEP(MD5Z_I, c, d, a, b, 2, 0x2ad7d2bbu, 15);  MD5Z_STEP(MD5Z_I, b, c, d, a, 9, 0xeb86d391u, 21);
    uint32_t r[4][16];
    _mm512_storeu_si512(r[0], _mm512_add_epi32(a, a0));
    _mm512_storeu_si512(r[1], _mm512_add_epi32(b, b0));
    _mm512_storeu_si512(r[2], _mm512_add_epi32(c, c0));
    _mm512_storeu_si512(r[3], _mm512_add_epi32(d, d0));
    _mm256_zeroupper();
    for (int l = 0; l < 16; l++) {
        uint32_t v[4] = {r[0][l], r[1][l], r[2][l], r[3][l]};   /* little-endian digest */
        memcpy(out[l], v, 16);
    }
}
#define SL_MD5_SIMD 1
#endif

int sl__md5_lanes(void)
{
#ifdef SL_MD5_SIMD
    if (__builtin_cpu_supports("avx512f")) return 16;
    if (__builtin_cpu_supports("avx2")) return 8;
#endif
    return 0;
}

void sl__md5_lanes_run(int lanes, const char *const *keys, const size_t *lens,
                       uint8_t (*out)[16])
{
    uint32_t w[16][16];
    for (int l = 0; l < lanes; l++) md5_pad1(w[l], keys[l], lens[l]);
#ifdef SL_MD5_SIMD
    if (lanes == 16) md5_x16_avx512((const uint32_t(*)[16])w, out);
    else md5_x8_avx2((const uint32_t(*)[16])w, out);
#else
    (void)out;
#endif
}

int sl__md5(sl_md5 *m, const void *data, size_t n, uint8_t out[16])
{
#ifdef SL_MD5_LOWLEVEL
    (void)m;
    MD5_CTX c;
    if (n <= 55) {
        /* one block: pad it here (RFC 1321: 0x80, zeros, the bit length
        ** little-endian in the last 8 bytes) and run libcrypto's
        ** compression function once; MD5_Update/Final would add their
        ** buffering and a cleanse of the context, a fifth of the cost
        ** for a 16-byte key */
        uint32_t block[16];
        md5_pad1(block, data, n);
        c.A = 0x67452301u;                      /* RFC 1321's initial state */
        c.B = 0xefcdab89u;
        c.C = 0x98badcfeu;
        c.D = 0x10325476u;
        MD5_Transform(&c, (const unsigned char *)block);
        uint32_t w[4] = {c.A, c.B, c.C, c.D};   /* the digest, little-endian */
        memcpy(out, w, 16);
        return 0;
    }
    if (MD5_Init(&c) == 1 && MD5_Update(&c, data, n) == 1 && MD5_Final(out, &c) == 1)
        return 0;
    return sl__err(SL_EIO, "MD5 failed in libcrypto");
#else
    unsigned int len = 0;
    if (EVP_DigestInit_ex2(m->ctx, m->md, NULL) != 1 ||
        EVP_DigestUpdate(m->ctx, data, n) != 1 ||
        EVP_DigestFinal_ex(m->ctx, out, &len) != 1 || len != 16)
        return sl__err(SL_EIO, "MD5 failed in libcrypto");
    return 0;
#endif
}

/* ---- public helpers ----------------------------------------------------- */

int sl_hash_partition_key(uint8_t out[16], const char *partition_key)
{
    size_t n;
    int rc;
    if (!out) return sl__ret(NULL, sl__err(SL_EINVAL, "out is NULL"));
    if ((rc = sl__partition_key_check(partition_key, &n)) != 0)
        return sl__ret(NULL, rc);
    unsigned int len = 0;
    if (EVP_Digest(partition_key, n, out, &len, EVP_md5(), NULL) != 1)
        return sl__ret(NULL, sl__err(SL_EIO, "MD5 failed in libcrypto"));
    return 0;
}

int sl_hash_key_parse(uint8_t out[16], const char *decimal)
{
    sl_u128 v;
    if (!out) return sl__ret(NULL, sl__err(SL_EINVAL, "out is NULL"));
    int rc = sl__u128_parse(&v, decimal);
    if (rc) return sl__ret(NULL, rc);
    sl__u128_to_be(out, v);
    return 0;
}

char *sl_hash_key_format(char *buf, const uint8_t key[16])
{
    return sl__u128_format(buf, sl__u128_from_be(key));
}

char *sl_seq_format(char *buf, uint64_t seq)
{
    char tmp[SL_SEQ_STR_MAX];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + seq % 10);
        seq /= 10;
    } while (seq);
    for (int i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return buf;
}

int sl_seq_parse(uint64_t *out, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    bool ok = out && n >= 1 && (s[0] != '0' || n == 1);
    for (size_t i = 0; ok && i < n; i++) ok = s[i] >= '0' && s[i] <= '9';
    uint64_t v = 0;
    for (size_t i = 0; ok && i < n; i++) {
        if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10) {
            return sl__ret(NULL, sl__err(SL_EINVAL,
                                         "sequence number %.40s is out of "
                                         "range (shardlog sequence numbers "
                                         "are 64-bit)",
                                         s));
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (!ok)
        return sl__ret(NULL, sl__err(SL_EVALIDATION,
                                     "1 validation error detected: Value "
                                     "'%.40s' at 'sequenceNumber' failed to "
                                     "satisfy constraint: Member must "
                                     "satisfy regular expression pattern: "
                                     "0|([1-9]\\d{0,128})",
                                     s ? s : "(null)"));
    *out = v;
    return 0;
}

/* ---- names -------------------------------------------------------------- */

bool sl__name_valid(const char *name, size_t max)
{
    size_t n = name ? strlen(name) : 0;
    if (n < 1 || n > max) return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    /* "." and ".." match the pattern but name directories we cannot use */
    return strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

void sl__shard_id(char out[SL_SHARD_ID_LEN + 1], uint32_t index)
{
    static const char prefix[] = "shardId-";
    memcpy(out, prefix, 8);
    uint32_t v = index;
    for (int i = SL_SHARD_ID_LEN - 1; i >= 8; i--, v /= 10)
        out[i] = (char)('0' + v % 10);
    out[SL_SHARD_ID_LEN] = '\0';
}

int sl__shard_id_parse(const char *id, uint32_t *index)
{
    if (!id || strlen(id) != SL_SHARD_ID_LEN || memcmp(id, "shardId-", 8))
        return -1;
    uint64_t v = 0;
    for (int i = 8; i < SL_SHARD_ID_LEN; i++) {
        if (id[i] < '0' || id[i] > '9') return -1;
        v = v * 10 + (uint64_t)(id[i] - '0');
    }
    if (v >= SL_NO_SHARD) return -1;
    *index = (uint32_t)v;
    return 0;
}
