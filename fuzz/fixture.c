/*
** fixture.c -- the fuzz targets' shared fixture (see fuzz.h): scratch
** directories, a template stream with a fixed identity, a deterministic
** segment builder, the "garbage" oracle, checksum re-signing, and the
** segment check that fuzz_segment.c and fuzz_cold.c run.
*/
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

const uint8_t fz_data_key[SL_DATA_KEY_BYTES] = {
    0x66, 0x75, 0x7a, 0x7a, 0x2d, 0x64, 0x61, 0x74, 0x61, 0x2d, 0x6b, 0x65, 0x79, 0x2d, 0x30, 0x31,
    0x9e, 0x37, 0x79, 0xb9, 0x7f, 0x4a, 0x7c, 0x15, 0xf3, 0x9c, 0xc0, 0x60, 0x5c, 0xed, 0xc8, 0x34};

/* The provider "wraps" every data key as the same bytes and unwraps
** anything to fz_data_key: the stream's data key 1 is then fz_data_key in
** every process. */
static int fz_wrap(void *ctx, const char *key_id, const uint8_t key[SL_DATA_KEY_BYTES],
                   uint8_t *out, size_t *out_len)
{
    static const char w[] = "fuzz-wrapped-data-key";
    (void)ctx, (void)key_id, (void)key;
    if (*out_len < sizeof w - 1) return SL_EINVAL;
    memcpy(out, w, sizeof w - 1);
    *out_len = sizeof w - 1;
    return 0;
}

static int fz_unwrap(void *ctx, const char *key_id, const uint8_t *in, size_t in_len,
                     uint8_t key[SL_DATA_KEY_BYTES])
{
    (void)ctx, (void)key_id, (void)in, (void)in_len;
    memcpy(key, fz_data_key, SL_DATA_KEY_BYTES);
    return 0;
}

const sl_key_provider fz_keys = {SL_KEY_PROVIDER_VERSION, fz_wrap, fz_unwrap, NULL};

void fz_fail(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "\n==fuzz== check failed: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    abort();
}

/* ---- files -------------------------------------------------------------- */

static char *scratch_dirs[8];
static int nscratch;

static void scratch_cleanup(void)
{
    for (int i = 0; i < nscratch; i++) {
        sl__os_rmtree(scratch_dirs[i]);
        free(scratch_dirs[i]);
    }
    nscratch = 0;
}

char *fz_scratch(void)
{
    const char *base = getenv("FUZZ_TMPDIR");
    struct stat st;
    if (!base || !*base) {
        if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0)
            base = "/dev/shm";
        else if (!(base = getenv("TMPDIR")) || !*base)
            base = "/tmp";
    }
    char *p;
    if (nscratch == (int)(sizeof scratch_dirs / sizeof scratch_dirs[0]) ||
        asprintf(&p, "%s/shardlog-fuzz-XXXXXX", base) < 0)
        fz_fail("fz_scratch: out of slots or memory");
    if (!mkdtemp(p)) fz_fail("mkdtemp %s: %s", p, strerror(errno));
    if (nscratch == 0) atexit(scratch_cleanup);
    scratch_dirs[nscratch++] = p;
    return p;
}

void fz_write(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) fz_fail("creating %s: %s", path, strerror(errno));
    if (n && sl__os_pwrite_all(fd, p, n, 0) != 0) fz_fail("writing %s: %s", path, strerror(errno));
    close(fd);
}

uint8_t *fz_read(const char *path, size_t *n)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) fz_fail("stat %s: %s", path, strerror(errno));
    uint8_t *b = malloc((size_t)st.st_size + 1);
    if (!b) fz_fail("reading %s: out of memory", path);
    if (st.st_size && sl__os_pread_all(fd, b, (size_t)st.st_size, 0) != 0)
        fz_fail("reading %s: %s", path, strerror(errno));
    close(fd);
    *n = (size_t)st.st_size;
    return b;
}

void fz_rm_contents(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p;
        if (asprintf(&p, "%s/%s", dir, e->d_name) < 0) fz_fail("out of memory");
        if (unlink(p) != 0 && (errno == EISDIR || errno == EPERM)) sl__os_rmtree(p);
        free(p);
    }
    closedir(d);
}

/* ---- records and segments ---------------------------------------------- */

static void spec_rec(const fz_spec *sp, int i, uint64_t *seq, int64_t *ms, char key[16],
                     uint32_t *klen, uint8_t *data, uint32_t *dlen)
{
    *seq = sp->seq0 + (uint64_t)i * (sp->seq_step ? sp->seq_step : 1);
    *ms = FZ_T0 + i;
    *klen = (uint32_t)snprintf(key, 16, "key-%d", i % 5);
    *dlen = (uint32_t)(sp->dlen + (size_t)(i % 7));
    for (uint32_t k = 0; k < *dlen; k++) data[k] = (uint8_t)('a' + (i * 7 + (int)k) % 26);
}

const fz_spec fz_journal_spec = {1, 8192, 100, 1, 8, 24, 3, false, false};

static bool spec_enc(const fz_spec *sp, int i) { return sp->enc_every && i % sp->enc_every == 0; }

static sl_seal fz_seal(sl_dkey *k, void **ctx, uint32_t *ver)
{
    k->version = 1;
    memcpy(k->key, fz_data_key, sizeof k->key);
    return (sl_seal){k, FZ_SALT, 0, FZ_STREAM_ID, ctx, ver};
}

size_t fz_frame_record(const fz_spec *sp, int i, uint8_t *dst, size_t cap)
{
    uint64_t seq;
    int64_t ms;
    char key[16];
    uint32_t kl, dl;
    uint8_t *data = malloc(sp->dlen + 8);
    if (!data) fz_fail("out of memory");
    spec_rec(sp, i, &seq, &ms, key, &kl, data, &dl);
    bool enc = spec_enc(sp, i);
    size_t span = (size_t)sl__pad8(sl__rec_bytes(enc ? SL_REC_ENC : 0, kl, dl));
    if (span > cap) fz_fail("fz_frame_record: no room");
    memset(dst, 0, span);
    sl_dkey k;
    void *ctx = NULL;
    uint32_t ver = 0;
    sl_seal e = fz_seal(&k, &ctx, &ver);
    if (sl__rec_write(dst, seq, ms, key, kl, data, dl, enc ? &e : NULL) != 0)
        fz_fail("sl__rec_write: %s", sl__errtext());
    sl__gcm_free(&ctx);
    free(data);
    return span;
}

uint8_t *fz_build_segment(const fz_spec *sp, size_t *len)
{
    static char *dir;
    if (!dir) dir = fz_scratch();
    sl_segctx c = {.stream_id = FZ_STREAM_ID, .shard_index = 0, .shard_id = FZ_SHARD,
                   .now_ms = FZ_T0};
    sl_seg *g;
    if (sl__seg_create(&g, &c, dir, sp->ordinal, sp->file_bytes) != 0)
        fz_fail("sl__seg_create: %s", sl__errtext());
    sl_dkey k;
    void *ctx = NULL;
    uint32_t ver = 0;
    sl_seal e = fz_seal(&k, &ctx, &ver);
    uint8_t *data = malloc(sp->dlen + 8);
    if (!data) fz_fail("out of memory");
    for (int i = 0; i < sp->n; i++) {
        uint64_t seq;
        int64_t ms;
        char key[16];
        uint32_t kl, dl;
        spec_rec(sp, i, &seq, &ms, key, &kl, data, &dl);
        bool enc = spec_enc(sp, i);
        if (!sl__seg_fits(g, sl__pad8(sl__rec_bytes(enc ? SL_REC_ENC : 0, kl, dl)))) break;
        if (sl__seg_append(g, seq, ms, key, kl, data, dl, enc ? &e : NULL) != 0)
            fz_fail("sl__seg_append: %s", sl__errtext());
        sl__seg_publish(g);
    }
    free(data);
    sl__gcm_free(&ctx);
    if ((sp->seal || sp->cold) && sl__seg_seal(g, &c) != 0) fz_fail("sl__seg_seal: %s", sl__errtext());
    uint8_t *b;
    if (sp->cold) {
        char *tmp;
        if (asprintf(&tmp, "%s.cold", g->path) < 0) fz_fail("out of memory");
        uint64_t fb;
        if (sl__seg_write_cold(g, &c, tmp, 3, &fb) != 0)
            fz_fail("sl__seg_write_cold: %s", sl__errtext());
        b = fz_read(tmp, len);
        unlink(tmp);
        free(tmp);
    } else {
        b = fz_read(g->path, len);
    }
    if (!b) fz_fail("reading back a built segment");
    unlink(g->path);
    sl__seg_free(g);
    sl__st64(b + SL_H_BOOT, FZ_BOOT_THIS);
    return b;
}

/* ---- the oracle --------------------------------------------------------- */

uint64_t fz_rec_hash(const void *key, size_t klen, const void *data, size_t dlen)
{
    return (sl__xxh3(key, klen) * 0x9e3779b97f4a7c15ull) ^ sl__xxh3(data, dlen) ^
           ((uint64_t)klen << 40) ^ dlen;
}

void fz_oracle_add(fz_oracle *o, uint64_t seq, int64_t ms, uint64_t hash)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 256;
        fz_orec *v = realloc(o->v, cap * sizeof *v);
        if (!v) fz_fail("out of memory");
        o->v = v;
        o->cap = cap;
    }
    o->v[o->n++] = (fz_orec){seq, ms, hash};
}

/* The plaintext hash of a parsed record; false if it does not decrypt
** under the fixed key (the stream has data key 1 only). */
static bool rec_hash(const uint8_t *rec, const sl_recview *v, uint64_t *h)
{
    if (!v->flags) {
        *h = fz_rec_hash(v->key, v->klen, v->data, v->dlen);
        return true;
    }
    if (sl__ld32(rec + 32) != 1) return false;
    static void *ctx;
    static uint32_t ver;
    static uint8_t *buf;
    static size_t cap;
    sl_dkey k;
    sl_seal e = fz_seal(&k, &ctx, &ver);
    (void)e;
    uint8_t nonce[12], aad[SL_REC_AAD];
    size_t al = sl__rec_nonce_aad(rec, FZ_STREAM_ID, 0, nonce, aad);
    size_t n = (size_t)v->klen + v->dlen;
    if (n + 1 > cap) {
        free(buf);
        cap = n + 1;
        if (!(buf = malloc(cap))) fz_fail("out of memory");
    }
    if (sl__gcm_open(&ctx, &ver, &k, nonce, aad, al, v->key, n, buf, v->key + n) != 0)
        return false;
    *h = fz_rec_hash(buf, v->klen, buf + v->klen, v->dlen);
    return true;
}

static void add_parsed(fz_oracle *o, const uint8_t *rec, const sl_recview *v)
{
    uint64_t h;
    if (rec_hash(rec, v, &h)) fz_oracle_add(o, v->seq, v->ms, h);
}

/* A record framed at p whose own checksum is not needed (inside a block
** whose checksum matched): what the library's fast paths check. */
static bool parse_framing(const uint8_t *p, uint64_t avail, sl_recview *v)
{
    if (avail < SL_REC_OVERHEAD) return false;
    uint32_t rb = sl__ld32(p), fl = sl__ld32(p + 4), kl = sl__ld16(p + 24), dl = sl__ld32(p + 28);
    if (fl > SL_REC_ENC || rb != sl__rec_bytes(fl, kl, dl) || sl__pad8(rb) > avail) return false;
    uint32_t at = fl ? SL_REC_ENC_HDR : SL_REC_HDR;
    *v = (sl_recview){sl__ld64(p + 8), (int64_t)sl__ld64(p + 16), p + at, p + at + kl, kl, dl,
                      fl, sl__pad8(rb)};
    return true;
}

void fz_oracle_raw(fz_oracle *o, const uint8_t *p, size_t n, bool framing_only)
{
    sl_recview v;
    if (framing_only) {
        for (uint64_t off = 0; off < n && parse_framing(p + off, n - off, &v); off += v.span)
            add_parsed(o, p + off, &v);
        return;
    }
    for (uint64_t off = 0; off + SL_REC_OVERHEAD <= n; off += 8)
        if (sl__rec_parse(p + off, n - off, true, &v) == SL_REC_OK) add_parsed(o, p + off, &v);
}

void fz_oracle_hot(fz_oracle *o, const uint8_t *p, size_t n)
{
    if (n <= SL_SEG_HDR) return;
    fz_oracle_raw(o, p + SL_SEG_HDR, n - SL_SEG_HDR, false);
    /* records vouched for by an index block's checksum: any pair of
    ** adjacent index slots, or the last slot and the trailer's data_end */
    uint64_t fb = sl__ld64(p + 24);
    if (fb > n || fb < SL_SEG_HDR + SL_SEG_TRAILER + SL_IDX_ENTRY) fb = n;
    uint64_t trl_end = fb >= SL_SEG_TRAILER ? sl__ld64(p + fb - SL_SEG_TRAILER + 48) : 0;
    for (uint32_t i = 0; i < 2048; i++) {
        uint64_t slot = fb - SL_SEG_TRAILER - (uint64_t)SL_IDX_ENTRY * (i + 1);
        if (slot < SL_SEG_HDR || slot + SL_IDX_ENTRY > fb) break;
        uint64_t off = sl__ld64(p + slot + 16), sum = sl__ld64(p + slot + 24);
        if (!sum || off < SL_SEG_HDR || off % 8 || off >= n) continue;
        uint64_t ends[2] = {trl_end, 0};
        if (slot >= SL_SEG_HDR + SL_IDX_ENTRY) ends[1] = sl__ld64(p + slot - SL_IDX_ENTRY + 16);
        for (int k = 0; k < 2; k++) {
            uint64_t end = ends[k];
            if (end <= off || end > n || (k == 1 && end == ends[0])) continue;
            if (sl__xxh3(p + off, (size_t)(end - off)) == sum)
                fz_oracle_raw(o, p + off, (size_t)(end - off), true);
        }
    }
}

/* Decompress the frames of [s, e) (one or several back to back, as a
** block of the table may name); NULL if they do not decompress. */
static uint8_t *cold_frames(const uint8_t *s, size_t n, size_t *out_n)
{
    /* streaming, into a buffer that grows up to the library's block
    ** bound (a frame need not state its size) */
    ZSTD_DStream *d = ZSTD_createDStream();
    if (!d) fz_fail("out of memory");
    size_t cap = 1u << 16, len = 0;
    uint8_t *b = malloc(cap);
    if (!b) fz_fail("out of memory");
    ZSTD_inBuffer in = {s, n, 0};
    bool ok = true;
    while (ok && in.pos < in.size) {
        if (len == cap) {
            if (cap >= (32u << 20)) {
                ok = false;
                break;
            }
            cap *= 2;
            uint8_t *nb = realloc(b, cap);
            if (!nb) fz_fail("out of memory");
            b = nb;
        }
        ZSTD_outBuffer out = {b, cap, len};
        size_t r = ZSTD_decompressStream(d, &out, &in);
        len = out.pos;
        if (ZSTD_isError(r)) ok = false;
        else if (r == 0 && in.pos == in.size) break;
        else if (out.pos < out.size && in.pos == in.size) ok = false;   /* truncated */
    }
    ZSTD_freeDStream(d);
    if (!ok) {
        free(b);
        return NULL;
    }
    *out_n = len;
    return b;
}

void fz_oracle_cold(fz_oracle *o, const uint8_t *p, size_t n)
{
    /* frame starts and ends (a rebuilt table starts a block at every
    ** frame; a table entry may span two frames back to back) */
    size_t starts[256], ends[256], ns = 0;
    for (size_t off = SL_SEG_HDR; off + 4 <= n && ns < 256; off++) {
        if (sl__ld32(p + off) != ZSTD_MAGICNUMBER) continue;
        size_t z = ZSTD_findFrameCompressedSize(p + off, n - off);
        if (ZSTD_isError(z)) continue;
        starts[ns] = off;
        ends[ns++] = off + z;
    }
    for (size_t i = 0; i < ns; i++) {
        for (size_t j = i; j < ns && j < i + 2; j++) {
            if (j > i && starts[j] != ends[j - 1]) break;
            size_t rn;
            uint8_t *raw = cold_frames(p + starts[i], ends[j] - starts[i], &rn);
            if (!raw) break;
            fz_oracle_raw(o, raw, rn, true);
            free(raw);
        }
    }
}

static int orec_cmp(const void *a, const void *b)
{
    const fz_orec *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void fz_oracle_done(fz_oracle *o)
{
    if (o->n) qsort(o->v, o->n, sizeof *o->v, orec_cmp);
}

bool fz_oracle_has(const fz_oracle *o, const sl_record *r)
{
    if (!r->partition_key || (r->key_len + r->data_len && !r->data && r->data_len)) return false;
    uint64_t h = fz_rec_hash(r->partition_key, r->key_len, r->data ? r->data : "", r->data_len);
    size_t lo = 0, hi = o->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (o->v[mid].seq < r->sequence) lo = mid + 1;
        else hi = mid;
    }
    for (size_t i = lo; i < o->n && o->v[i].seq == r->sequence; i++)
        if (o->v[i].hash == h && (o->v[i].ms == r->arrival_ms || o->v[i].ms == INT64_MIN))
            return true;
    return false;
}

void fz_oracle_free(fz_oracle *o)
{
    free(o->v);
    memset(o, 0, sizeof *o);
}

/* ---- re-signing --------------------------------------------------------- */

static void resign64(uint8_t *at, uint64_t v, bool *changed)
{
    if (sl__ld64(at) != v) {
        sl__st64(at, v);
        *changed = true;
    }
}

bool fz_resign_hot(uint8_t *p, size_t n)
{
    bool ch = false;
    if (n >= 64 && sl__ld32(p) == 0x47534C53u) resign64(p + 56, sl__xxh3(p, 56), &ch);
    if (n < SL_SEG_HDR + SL_SEG_TRAILER) return ch;
    uint64_t fb = sl__ld64(p + 24);
    if (fb > n || fb < SL_SEG_HDR + SL_SEG_TRAILER) fb = n & ~(uint64_t)7;
    uint64_t lim = fb - SL_SEG_TRAILER;
    /* records, from the top while their framing holds */
    uint64_t off = SL_SEG_HDR;
    sl_recview v;
    while (off < lim && sl__rec_parse(p + off, lim - off, false, &v) == SL_REC_OK) {
        uint32_t body = sl__ld32(p + off) - 8;
        resign64(p + off + body, sl__xxh3(p + off, body), &ch);
        off += v.span;
    }
    uint64_t tail = off;
    /* index blocks whose records all check out now */
    uint8_t *t = p + fb - SL_SEG_TRAILER;
    uint32_t nidx = sl__ld32(p + SL_H_INDEX_COUNT);
    if (sl__ld32(t) == 0x54464C53u) nidx = sl__ld32(t + 4);
    uint64_t maxn = (fb - SL_SEG_HDR - SL_SEG_TRAILER) / SL_IDX_ENTRY;
    if (nidx > maxn) nidx = (uint32_t)maxn;
    for (uint32_t i = 0; i < nidx; i++) {
        uint8_t *e = p + fb - SL_SEG_TRAILER - (uint64_t)SL_IDX_ENTRY * (i + 1);
        uint64_t from = sl__ld64(e + 16);
        uint64_t to = i + 1 < nidx ? sl__ld64(e - SL_IDX_ENTRY + 16) : sl__ld64(t + 48);
        if (from < SL_SEG_HDR || to <= from || to > tail) continue;
        uint64_t o2 = from;
        while (o2 < to && sl__rec_parse(p + o2, to - o2, true, &v) == SL_REC_OK) o2 += v.span;
        if (o2 == to) resign64(e + 24, sl__xxh3(p + from, (size_t)(to - from)), &ch);
    }
    /* the trailer: its index checksum and its own */
    if (sl__ld32(t) == 0x54464C53u) {
        uint32_t tn = sl__ld32(t + 4);
        if (tn && tn <= maxn)
            resign64(t + 64,
                     sl__xxh3(p + fb - SL_SEG_TRAILER - (uint64_t)SL_IDX_ENTRY * tn,
                              (size_t)tn * SL_IDX_ENTRY),
                     &ch);
        resign64(t + 120, sl__xxh3(t, 120), &ch);
    }
    return ch;
}

bool fz_resign_cold(uint8_t *p, size_t n)
{
    bool ch = false;
    if (n >= 64 && sl__ld32(p) == 0x47534C53u) resign64(p + 56, sl__xxh3(p, 56), &ch);
    if (n < SL_SEG_HDR + SL_SEG_TRAILER) return ch;
    uint64_t fb = sl__ld64(p + 24);
    if (fb > n || fb < SL_SEG_HDR + SL_SEG_TRAILER) fb = n;
    uint8_t *t = p + fb - SL_SEG_TRAILER;
    if (sl__ld32(t) == 0x43464C53u) {
        uint32_t nb = sl__ld32(t + 4);
        uint64_t tab = sl__ld64(t + 64);
        if (tab >= SL_SEG_HDR && tab <= fb - SL_SEG_TRAILER &&
            nb <= (fb - SL_SEG_TRAILER - tab) / 48) {
            for (uint32_t k = 0; k < nb; k++) {
                uint8_t *e = p + tab + 48ull * k;
                uint64_t fo = sl__ld64(e + 16);
                uint32_t rl = sl__ld32(e + 8), zl = sl__ld32(e + 12);
                if (fo < SL_SEG_HDR || fo > tab || zl > tab - fo || rl > (1u << 20)) continue;
                uint8_t *raw = malloc(rl + 1);
                if (!raw) fz_fail("out of memory");
                size_t got = ZSTD_decompress(raw, rl, p + fo, zl);
                if (!ZSTD_isError(got) && got == rl) resign64(e + 40, sl__xxh3(raw, rl), &ch);
                free(raw);
            }
            resign64(t + 72, sl__xxh3(p + tab, (size_t)nb * 48), &ch);
        }
        resign64(t + 120, sl__xxh3(t, 120), &ch);
    }
    return ch;
}

/* ---- the template stream ----------------------------------------------- */

static char *g_root, *g_sdir, *g_shdir, *g_seg1, *g_seg2, *g_journal;
static uint8_t *g_man, *g_seq;
static size_t g_man_n, g_seq_n;
static sl_vclock *g_vc;
static uint64_t g_reports;

static void fz_report(void *ctx, int code, const char *msg)
{
    (void)ctx;
    if (code >= 0 || !msg || !*msg) fz_fail("a report with code %d and no text", code);
    g_reports++;
}

uint64_t fz_reports(void) { return g_reports; }

static void template_make(void)
{
    char *scr = fz_scratch();
    if (asprintf(&g_root, "%s/root", scr) < 0 || asprintf(&g_sdir, "%s/" FZ_STREAM, g_root) < 0 ||
        asprintf(&g_shdir, "%s/" FZ_SHARD, g_sdir) < 0 ||
        asprintf(&g_seg1, "%s/0000000000000001.seg", g_shdir) < 0 ||
        asprintf(&g_seg2, "%s/0000000000000002.seg", g_shdir) < 0 ||
        asprintf(&g_journal, "%s/" SL_JOURNAL_FILE, g_sdir) < 0)
        fz_fail("out of memory");
    if (sl_vclock_new(&g_vc, FZ_T0) != 0) fz_fail("sl_vclock_new");
    sl_stream_config cfg = SL_STREAM_CONFIG_INIT;
    cfg.name = FZ_STREAM;
    cfg.shard_count = 1;
    cfg.segment_bytes = SL_SEGMENT_BYTES_MIN;
    cfg.encryption_type = SL_ENCRYPTION_KMS;
    cfg.kms_key_id = "fuzz";
    cfg.durability = SL_DURABILITY_NONE;
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.keys = &fz_keys;
    o.clock = sl_vclock_clock(g_vc);
    if (sl_stream_create(NULL, g_root, &cfg, &o) != 0)
        fz_fail("creating the template stream: %s", sl_errmsg(NULL));
    /* the fixed identity: the manifest's stream id and a SEQ for it */
    sl_manifest m;
    if (sl__manifest_read(&m, g_sdir) != 0) fz_fail("reading the manifest: %s", sl__errtext());
    m.stream_id = FZ_STREAM_ID;
    if (sl__manifest_write(&m, g_sdir) != 0) fz_fail("writing the manifest: %s", sl__errtext());
    sl__manifest_free(&m);
    char *p;
    if (asprintf(&p, "%s/" SL_MANIFEST_FILE, g_sdir) < 0) fz_fail("out of memory");
    if (!(g_man = fz_read(p, &g_man_n))) fz_fail("reading %s", p);
    free(p);
    g_seq_n = 4096 + 64;
    if (!(g_seq = calloc(1, g_seq_n))) fz_fail("out of memory");
    /* slot 1, generation 1, a ceiling above the seeds' records (1 << 50),
    ** so that the common path is an intact reservation */
    uint8_t *b = g_seq + 4096;
    sl__st32(b, 0x51534C53u);
    sl__st32(b + 4, 1);
    sl__st64(b + 8, 1);
    sl__st64(b + 16, 1ull << 50);
    sl__st64(b + 24, FZ_STREAM_ID);
    sl__st64(b + 56, sl__xxh3(b, 56));
}

const char *fz_root(void)
{
    if (!g_root) template_make();
    return g_root;
}
const char *fz_stream_dir(void) { return fz_root(), g_sdir; }
const char *fz_shard_dir(void) { return fz_root(), g_shdir; }

void fz_reset(void)
{
    fz_root();
    fz_rm_contents(g_shdir);
    unlink(g_journal);
    char *p;
    if (asprintf(&p, "%s/" SL_SEQ_FILE, g_sdir) < 0) fz_fail("out of memory");
    fz_write(p, g_seq, g_seq_n);
    free(p);
    if (asprintf(&p, "%s/" SL_MANIFEST_FILE, g_sdir) < 0) fz_fail("out of memory");
    fz_write(p, g_man, g_man_n);
    free(p);
    sl_vclock_set(g_vc, FZ_T0 + 3600 * 1000);
}

sl_open_opts fz_opts(bool readonly)
{
    fz_root();
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.flags = readonly ? SL_OPEN_READONLY : 0;
    o.durability = SL_DURABILITY_NONE;
    o.clock = sl_vclock_clock(g_vc);
    o.report = fz_report;
    o.keys = &fz_keys;
    return o;
}

/* ---- reading ------------------------------------------------------------ */

size_t fz_read_all(sl_stream *s, const fz_oracle *o, sl_iter_type type, uint64_t arg,
                   uint64_t max_reads, uint64_t *seqs, size_t nseqs, int64_t *mss)
{
    sl_iter *it;
    if (sl_iter_open(&it, s, FZ_SHARD, type, arg) != 0) return 0;
    static sl_record recs[40];
    size_t got = 0;
    uint64_t prev = 0;
    for (uint64_t reads = 0;; reads++) {
        if (reads > max_reads)
            fz_fail("no progress: %" PRIu64 " reads, %zu records, last sequence %" PRIu64,
                    reads, got, prev);
        sl_read_result res;
        int rc = sl_iter_read(it, recs, 40, &res);
        if (res.count > 40) fz_fail("a read returned %zu records for a limit of 40", res.count);
        if (rc && res.count) fz_fail("a read failed (%d) and returned %zu records", rc, res.count);
        for (size_t i = 0; i < res.count; i++) {
            const sl_record *r = &recs[i];
            if (r->sequence <= prev)
                fz_fail("sequence %" PRIu64 " after %" PRIu64, r->sequence, prev);
            if (!fz_oracle_has(o, r))
                fz_fail("record %" PRIu64 " (ms %" PRId64 ", key %zu bytes, data %zu bytes) "
                        "is not in the input",
                        r->sequence, r->arrival_ms, r->key_len, r->data_len);
            prev = r->sequence;
            if (got < nseqs) {
                if (seqs) seqs[got] = r->sequence;
                if (mss) mss[got] = r->arrival_ms;
            }
            got++;
        }
        if (res.millis_behind_latest < 0) fz_fail("negative millis_behind_latest");
        if (rc == SL_ECORRUPT) continue;
        if (rc || res.count == 0) break;
    }
    sl_iter_close(it);
    return got;
}

/* ---- the segment check -------------------------------------------------- */

static uint8_t *g_next;                 /* a valid segment 2 (active) */

/* FUZZ_VERBOSE=1: what each stage saw, on stderr */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("FUZZ_VERBOSE") != NULL;
    if (!verbose) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}
static size_t g_next_n;

/* Seeks to records the first pass returned land on them. */
static void check_seeks(sl_stream *s, const fz_oracle *o, const uint64_t *seqs,
                        const int64_t *mss, size_t n, uint64_t max_reads)
{
    size_t pick[3] = {0, n / 2, n - 1};
    for (int k = 0; k < 3 && n; k++) {
        uint64_t seq = seqs[pick[k]], first = 0;
        size_t got = fz_read_all(s, o, SL_ITER_AT_SEQUENCE_NUMBER, seq, max_reads, &first, 1,
                                 NULL);
        if (got && first != seq)
            fz_fail("AT_SEQUENCE_NUMBER %" PRIu64 " read %" PRIu64 " first", seq, first);
        int64_t ms = 0;
        got = fz_read_all(s, o, SL_ITER_AT_TIMESTAMP, (uint64_t)mss[pick[k]], max_reads, NULL,
                          0, NULL);
        (void)ms;
        (void)got;
    }
}

static int verify_cb(void *ctx, const sl_verify_stats *st, const char *damage)
{
    (void)ctx, (void)st;
    if (damage && !*damage) fz_fail("sl_stream_verify reported empty damage text");
    return 0;
}

static bool writer_safe(const uint8_t *p, size_t n)
{
    if (n < SL_SEG_HDR) return true;
    uint64_t fb = sl__ld64(p + 24);
    return fb <= n || fb <= FZ_EXTEND_MAX;
}

static void run_one(const uint8_t *file, size_t n, bool cold, bool older)
{
    fz_reset();
    if (!g_next) {
        fz_spec sp = {2, 16384, 1ull << 40, 3, 6, 40, 2, false, false};
        g_next = fz_build_segment(&sp, &g_next_n);
    }
    /* the file, with the boot id stand-in replaced */
    uint8_t *img = malloc(n + 1);
    if (!img) fz_fail("out of memory");
    memcpy(img, file, n);
    if (n >= SL_H_BOOT + 8 && sl__ld64(img + SL_H_BOOT) == FZ_BOOT_THIS)
        sl__st64(img + SL_H_BOOT, sl__boot_id());
    fz_write(g_seg1, img, n);
    free(img);
    fz_oracle o = {0};
    if (cold) fz_oracle_cold(&o, file, n);
    else fz_oracle_hot(&o, file, n);
    if (older) {
        uint8_t *nx = malloc(g_next_n);
        if (!nx) fz_fail("out of memory");
        memcpy(nx, g_next, g_next_n);
        sl__st64(nx + SL_H_BOOT, sl__boot_id());
        fz_write(g_seg2, nx, g_next_n);
        free(nx);
        fz_oracle_hot(&o, g_next, g_next_n);
    }
    fz_oracle_done(&o);
    uint64_t max_reads = (n + g_next_n) / 8 + 64;

    /* read-only: no writer alive, so the newest segment is scanned */
    sl_open_opts ro = fz_opts(true);
    sl_stream *s;
    int orc = sl_stream_open(&s, fz_root(), FZ_STREAM, &ro);
    say("segment %s (%zu bytes%s): read-only open %d%s%s\n", cold ? "cold" : "hot", n,
        older ? ", older" : "", orc, orc ? ": " : "", orc ? sl_errmsg(NULL) : "");
    if (orc == 0) {
        uint64_t seqs[256];
        int64_t mss[256];
        size_t got = fz_read_all(s, &o, SL_ITER_TRIM_HORIZON, 0, max_reads, seqs, 256, mss);
        say("read-only: %zu records, %" PRIu64 " reports so far\n", got, g_reports);
        if (got > 256) got = 256;
        check_seeks(s, &o, seqs, mss, got, max_reads);
        fz_read_all(s, &o, SL_ITER_LATEST, 0, max_reads, NULL, 0, NULL);
        sl_verify_stats st;
        sl_stream_verify(s, verify_cb, NULL, &st);
        if (sl_stream_close(s) != 0) fz_fail("closing a read-only stream: %s", sl_errmsg(NULL));
    }

    /* a writer: recovery, reads, one put that must read back */
    if (writer_safe(file, n)) {
        sl_open_opts rw = fz_opts(false);
        sl_stream *w;
        int wrc = sl_stream_open(&w, fz_root(), FZ_STREAM, &rw);
        say("writer open %d%s%s\n", wrc, wrc ? ": " : "", wrc ? sl_errmsg(NULL) : "");
        if (wrc == 0) {
            size_t wgot = fz_read_all(w, &o, SL_ITER_TRIM_HORIZON, 0, max_reads, NULL, 0, NULL);
            say("writer: %zu records, %" PRIu64 " reports so far\n", wgot, g_reports);
            uint64_t last = 0;
            sl_iter *it;
            sl_producer *p;
            if (sl_producer_open(&p, w) != 0) fz_fail("sl_producer_open: %s", sl_errmsg(w));
            static const char data[] = "put after recovery";
            uint64_t seq = 0;
            int rc = sl_put(p, "fz-put", data, sizeof data - 1, &seq);
            say("put: %d, sequence %" PRIu64 "\n", rc, seq);
            if (rc == 0) {
                fz_oracle_add(&o, seq, INT64_MIN, fz_rec_hash("fz-put", 6, data, sizeof data - 1));
                fz_oracle_done(&o);
                /* it is the shard's newest record: read from the top, the
                ** last record returned is it */
                int irc = sl_iter_open(&it, w, FZ_SHARD, SL_ITER_AT_SEQUENCE_NUMBER, seq);
                /* (an older segment of an unknown format version or flags
                ** fails the seek that reaches it: README "Format versions") */
                bool newer_format =
                    irc == SL_ECORRUPT && strstr(sl_errmsg(w), "this library reads");
                if (irc != 0 && !newer_format)
                    fz_fail("the record just put (%" PRIu64 ") cannot be found: %s", seq,
                            sl_errmsg(w));
                sl_iter_close(it);
                if (!newer_format) {
                    size_t got = fz_read_all(w, &o, SL_ITER_AT_SEQUENCE_NUMBER, seq,
                                             max_reads + 4, &last, 1, NULL);
                    if (got != 1 || last != seq)
                        fz_fail("the record just put (%" PRIu64 ") reads back as %zu records "
                                "from %" PRIu64, seq, got, last);
                }
            }
            sl_producer_close(p);
            if (sl_stream_close(w) != 0) fz_fail("closing the writer: %s", sl_errmsg(NULL));
            /* what the writer left, read-only */
            if (sl_stream_open(&s, fz_root(), FZ_STREAM, &ro) == 0) {
                fz_read_all(s, &o, SL_ITER_TRIM_HORIZON, 0, max_reads + 4, NULL, 0, NULL);
                if (sl_stream_close(s) != 0) fz_fail("closing a read-only stream");
            }
        }
    }
    fz_oracle_free(&o);
}

void fz_segment_run(const uint8_t *file, size_t n, bool cold)
{
    /* byte 255 (reserved, in the header's mutable part, which the library
    ** never reads) picks the placement: bit 0, the input is an older
    ** segment with a valid newer one after it */
    bool older = n > 255 && (file[255] & 1);
    run_one(file, n, cold, older);
    uint8_t *copy = malloc(n + 1);
    if (!copy) fz_fail("out of memory");
    memcpy(copy, file, n);
    if (cold ? fz_resign_cold(copy, n) : fz_resign_hot(copy, n)) run_one(copy, n, cold, older);
    free(copy);
}
