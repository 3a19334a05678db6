/*
** crypto.c -- encryption at rest: envelope keys and record sealing
** (AES-256-GCM through libcrypto's EVP interface).
**
** KEYS.  A stream with encryption KMS has data keys: 256-bit random keys
** made by the library (RAND_bytes), versions 1, 2, ..., kept in the
** manifest only wrapped by the host's key provider under the stream's
** master key id (`data_key <version> <hex wrapped>`; data_key_current names
** the one new records use, 0 when encryption is stopped).  Opening the
** stream unwraps every one into the handle's memory -- never written in
** clear -- and closing wipes them (OPENSSL_cleanse; EVP contexts cleanse
** their key schedules when freed).  A missing provider (while the stream
** encrypts), or one whose master key cannot unwrap, fails the open with
** SL_EKEY.  Starting, stopping and rotating are one manifest rewrite each,
** durable before any record uses the new state; a new master key id
** rewraps every data key under it.  A follower loads keys added since it
** opened when it meets a record under one.
**
** RECORDS (format in segment.c).  Each record is sealed on its own: the
** partition key and data are one GCM message; the header (sequence number,
** time, lengths, flags, key version, salt) is associated data with the
** stream id and shard index, so a record can be neither altered nor moved.
** Per record rather than per block, because a record is visible to readers
** and durable the moment it is committed: a block would have to be
** readable unauthenticated until it closed.  The cost is libcrypto's fixed
** per-message overhead (about 300 ns here for EVP init, tag and final; see
** the README's benchmark).
**
** NONCES.  nonce = sequence number (8 bytes) || salt (4 bytes).  Sequence
** numbers are unique in a stream and never reused, across crashes too (the
** SEQ reservation is synced before a number above it is issued), so one key
** never sees a nonce twice; the salt, drawn at random by every writer open,
** keeps that so even if the SEQ file were lost (numbers then resume above
** what is on disk, which cannot know of records a power cut took).  Rewrites (compaction, cold storage)
** copy sealed records as they are: the same bytes, not a new encryption.
**
** The key-file provider wraps with AES-256-GCM under a master key read
** from a file of 64 hex digits: wrapped = nonce (12 random bytes) ||
** ciphertext (32) || tag (16), the key id bound as associated data, so a
** wrapped key cannot be moved to another key id unnoticed.
*/
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define KF_NONCE 12
#define KF_TAG 16
#define KF_WRAPPED (KF_NONCE + SL_DATA_KEY_BYTES + KF_TAG)

typedef struct keyfile {
    sl_key_provider p;
    uint8_t master[32];
} keyfile;

/* AES-256-GCM of n bytes in one go; enc or dec.  0 or -1 (a bad tag). */
static int gcm(bool enc, const uint8_t key[32], const uint8_t nonce[KF_NONCE], const char *aad,
               const uint8_t *in, size_t n, uint8_t *out, uint8_t tag[KF_TAG])
{
    EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
    int ok = x != NULL, len = 0;
    ok = ok && (enc ? EVP_EncryptInit_ex(x, EVP_aes_256_gcm(), NULL, key, nonce)
                    : EVP_DecryptInit_ex(x, EVP_aes_256_gcm(), NULL, key, nonce)) == 1;
    if (ok && aad && *aad)
        ok = (enc ? EVP_EncryptUpdate(x, NULL, &len, (const uint8_t *)aad, (int)strlen(aad))
                  : EVP_DecryptUpdate(x, NULL, &len, (const uint8_t *)aad, (int)strlen(aad))) == 1;
    ok = ok && (enc ? EVP_EncryptUpdate(x, out, &len, in, (int)n)
                    : EVP_DecryptUpdate(x, out, &len, in, (int)n)) == 1;
    if (ok && enc)
        ok = EVP_EncryptFinal_ex(x, out + len, &len) == 1 &&
             EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, KF_TAG, tag) == 1;
    else if (ok)
        ok = EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, KF_TAG, tag) == 1 &&
             EVP_DecryptFinal_ex(x, out + len, &len) == 1;
    EVP_CIPHER_CTX_free(x);
    return ok ? 0 : -1;
}

static int kf_wrap(void *ctx, const char *key_id, const uint8_t key[SL_DATA_KEY_BYTES],
                   uint8_t *out, size_t *out_len)
{
    keyfile *k = ctx;
    if (*out_len < KF_WRAPPED) return SL_EINVAL;
    if (RAND_bytes(out, KF_NONCE) != 1) return SL_EIO;
    if (gcm(true, k->master, out, key_id, key, SL_DATA_KEY_BYTES, out + KF_NONCE,
            out + KF_NONCE + SL_DATA_KEY_BYTES) != 0)
        return SL_EIO;
    *out_len = KF_WRAPPED;
    return 0;
}

static int kf_unwrap(void *ctx, const char *key_id, const uint8_t *in, size_t in_len,
                     uint8_t key[SL_DATA_KEY_BYTES])
{
    keyfile *k = ctx;
    if (in_len != KF_WRAPPED) return SL_EKEY;
    uint8_t tag[KF_TAG];
    memcpy(tag, in + KF_NONCE + SL_DATA_KEY_BYTES, KF_TAG);
    return gcm(false, k->master, in, key_id, in + KF_NONCE, SL_DATA_KEY_BYTES, key, tag) == 0
               ? 0
               : SL_EKEY;
}

static int hexval(int c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int sl_keyfile_create(const char *path)
{
    if (!path) return sl__ret(NULL, sl__err(SL_EINVAL, "path is NULL"));
    uint8_t key[32];
    char hex[66];
    if (RAND_bytes(key, sizeof key) != 1)
        return sl__ret(NULL, sl__err(SL_EIO, "no random bytes from libcrypto"));
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", key[i]);
    hex[64] = '\n';
    OPENSSL_cleanse(key, sizeof key);
    int fd = sl__os.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int rc = 0;
    if (fd < 0) {
        rc = errno == EEXIST ? sl__err(SL_EINUSE, "%s exists", path)
                             : sl__errno(sl__errno_code(errno), errno, "creating %s", path);
    } else {
        if (sl__os_pwrite_all(fd, hex, 65, 0) != 0 || sl__os.fsync(fd) != 0)
            rc = sl__errno(sl__errno_code(errno), errno, "writing %s", path);
        sl__os.close(fd);
        if (rc) sl__os.unlink(path);
    }
    OPENSSL_cleanse(hex, sizeof hex);
    return sl__ret(NULL, rc);
}

int sl_keyfile_provider_open(sl_key_provider **out, const char *path)
{
    if (!out || !path) return sl__ret(NULL, sl__err(SL_EINVAL, "out or path is NULL"));
    *out = NULL;
    char *buf = NULL;
    size_t len = 0;
    if (sl__os_read_file(path, &buf, &len, 4096) != 0)
        return sl__ret(NULL, sl__errno(errno == ENOENT ? SL_EKEY : SL_EIO, errno, "reading key "
                                                                                  "file %s",
                                       path));
    keyfile *k = calloc(1, sizeof *k);
    int rc = k ? 0 : sl__err(SL_ENOMEM, "allocating a key provider");
    size_t n = len;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
    if (rc == 0 && n != 64) rc = sl__err(SL_EKEY, "key file %s: expected 64 hex digits", path);
    for (size_t i = 0; rc == 0 && i < 32; i++) {
        int hi = hexval(buf[2 * i]), lo = hexval(buf[2 * i + 1]);
        if (hi < 0 || lo < 0) rc = sl__err(SL_EKEY, "key file %s: not hex", path);
        else k->master[i] = (uint8_t)(hi << 4 | lo);
    }
    OPENSSL_cleanse(buf, len);
    free(buf);
    if (rc) {
        if (k) OPENSSL_cleanse(k, sizeof *k);
        free(k);
        return sl__ret(NULL, rc);
    }
    k->p = (sl_key_provider){SL_KEY_PROVIDER_VERSION, kf_wrap, kf_unwrap, k};
    *out = &k->p;
    return 0;
}

void sl_keyfile_provider_close(sl_key_provider *p)
{
    if (!p) return;
    keyfile *k = (keyfile *)p;          /* p is its first member */
    OPENSSL_cleanse(k, sizeof *k);
    free(k);
}

/* ---- record encryption ------------------------------------------------- */

/* The cached context ready for key k (the cipher set once, the key
** schedule when the version changes). */
static EVP_CIPHER_CTX *gcm_ready(void **ctx, uint32_t *ver, const sl_dkey *k, bool enc)
{
    EVP_CIPHER_CTX *x = *ctx;
    if (!x) {
        if (!(x = EVP_CIPHER_CTX_new())) return NULL;
        if ((enc ? EVP_EncryptInit_ex(x, EVP_aes_256_gcm(), NULL, NULL, NULL)
                 : EVP_DecryptInit_ex(x, EVP_aes_256_gcm(), NULL, NULL, NULL)) != 1) {
            EVP_CIPHER_CTX_free(x);
            return NULL;
        }
        *ctx = x;
        *ver = 0;
    }
    if (*ver != k->version) {
        if ((enc ? EVP_EncryptInit_ex(x, NULL, NULL, k->key, NULL)
                 : EVP_DecryptInit_ex(x, NULL, NULL, k->key, NULL)) != 1)
            return NULL;
        *ver = k->version;
    }
    return x;
}

int sl__gcm_seal(void **ctx, uint32_t *ctx_ver, const sl_dkey *k, const uint8_t nonce[12],
                 const uint8_t *aad, size_t aad_len, const uint8_t *in1, size_t n1,
                 const uint8_t *in2, size_t n2, uint8_t *out, uint8_t tag[SL_GCM_TAG])
{
    EVP_CIPHER_CTX *x = gcm_ready(ctx, ctx_ver, k, true);
    int len = 0;
    if (!x || EVP_EncryptInit_ex(x, NULL, NULL, NULL, nonce) != 1 ||
        EVP_EncryptUpdate(x, NULL, &len, aad, (int)aad_len) != 1 ||
        EVP_EncryptUpdate(x, out, &len, in1, (int)n1) != 1 ||
        (n2 && EVP_EncryptUpdate(x, out + n1, &len, in2, (int)n2) != 1) ||
        EVP_EncryptFinal_ex(x, out + n1 + n2, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, SL_GCM_TAG, tag) != 1) {
        *ctx_ver = 0;                   /* set the key again next time */
        return SL_EIO;
    }
    return 0;
}

int sl__gcm_open(void **ctx, uint32_t *ctx_ver, const sl_dkey *k, const uint8_t nonce[12],
                 const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t n, uint8_t *out,
                 const uint8_t tag[SL_GCM_TAG])
{
    EVP_CIPHER_CTX *x = gcm_ready(ctx, ctx_ver, k, false);
    int len = 0;
    if (!x || EVP_DecryptInit_ex(x, NULL, NULL, NULL, nonce) != 1 ||
        EVP_DecryptUpdate(x, NULL, &len, aad, (int)aad_len) != 1 ||
        EVP_DecryptUpdate(x, out, &len, in, (int)n) != 1 ||
        EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_SET_TAG, SL_GCM_TAG, (void *)tag) != 1 ||
        EVP_DecryptFinal_ex(x, out + n, &len) != 1) {
        *ctx_ver = 0;
        OPENSSL_cleanse(out, n);        /* never hand out unauthenticated bytes */
        return SL_ECORRUPT;
    }
    return 0;
}

void sl__gcm_free(void **ctx)
{
    EVP_CIPHER_CTX_free(*ctx);          /* cleanses the key schedule */
    *ctx = NULL;
}

size_t sl__rec_nonce_aad(const uint8_t *rec, uint64_t stream_id, uint32_t shard,
                         uint8_t nonce[12], uint8_t aad[SL_REC_AAD])
{
    memcpy(nonce, rec + 8, 8);          /* the sequence number */
    memcpy(nonce + 8, rec + 36, 4);     /* the open's salt */
    memcpy(aad, rec, SL_REC_ENC_HDR);
    sl__st64(aad + SL_REC_ENC_HDR, stream_id);
    sl__st32(aad + SL_REC_ENC_HDR + 8, shard);
    return SL_REC_AAD;
}

int sl__rec_decrypt(sl_stream *s, uint32_t shard, const uint8_t *rec, const sl_recview *v,
                    void **ctx, uint32_t *ctx_ver, uint8_t *out)
{
    uint32_t ver = sl__ld32(rec + 32);
    const sl_dkey *k = sl__key_get(s, ver);
    if (!k && ver && s->has_kp && s->readonly) {
        /* a follower: the writer may have rotated since it read the
        ** manifest (it writes the manifest before using a new key) */
        atomic_store(&s->refresh_ms, 0);
        sl__stream_refresh(s);
        k = sl__key_get(s, ver);
    }
    /* with a provider every key of the manifest is loaded: a version
    ** without one was never made -- damage, like version 0 */
    if (!k) return ver && !s->has_kp ? SL_EKEY : SL_ECORRUPT;
    uint8_t nonce[12], aad[SL_REC_AAD];
    size_t al = sl__rec_nonce_aad(rec, s->man.stream_id, shard, nonce, aad);
    size_t n = (size_t)v->klen + v->dlen;
    return sl__gcm_open(ctx, ctx_ver, k, nonce, aad, al, v->key, n, out, v->key + n);
}

/* ---- the stream's data keys --------------------------------------------- */

static int provider_ok(const sl_key_provider *kp, const char *what)
{
    if (!kp)
        return sl__err(SL_EKEY, "%s: the stream is encrypted (KMS) and sl_open_opts.keys "
                                "names no key provider",
                       what);
    if (kp->version < 1 || !kp->wrap || !kp->unwrap)
        return sl__err(SL_EINVAL, "%s: the key provider lacks wrap/unwrap or has a bad "
                                  "version",
                       what);
    return 0;
}

/* Wrap a data key under key_id into a manifest entry. */
static int wrap_key(const sl_key_provider *kp, const char *key_id, uint32_t version,
                    const uint8_t key[SL_DATA_KEY_BYTES], sl_mkey *out)
{
    uint8_t w[SL_WRAPPED_KEY_MAX];
    size_t wl = sizeof w;
    int rc = kp->wrap(kp->ctx, key_id, key, w, &wl);
    if (rc) return sl__err(rc < 0 ? rc : SL_EKEY, "the key provider could not wrap a data key "
                                                  "under %s", key_id);
    if (wl == 0 || wl > SL_WRAPPED_KEY_MAX)
        return sl__err(SL_EKEY, "the key provider returned a wrapped key of %zu bytes", wl);
    if (!(out->wrapped = malloc(wl))) return sl__err(SL_ENOMEM, "wrapping a data key");
    memcpy(out->wrapped, w, wl);
    out->len = wl;
    out->version = version;
    return 0;
}

static void mkeys_free(sl_mkey *k, size_t n)
{
    for (size_t i = 0; k && i < n; i++) free(k[i].wrapped);
    free(k);
}

int sl__keys_create(sl_manifest *m, const sl_key_provider *kp)
{
    if (m->encryption != SL_ENCRYPTION_KMS) return 0;
    int rc = provider_ok(kp, "creating the stream");
    if (rc) return rc;
    uint8_t key[SL_DATA_KEY_BYTES];
    sl_mkey *k = calloc(1, sizeof *k);
    if (!k) return sl__err(SL_ENOMEM, "creating a data key");
    if (RAND_bytes(key, sizeof key) != 1) rc = sl__err(SL_EIO, "no random bytes");
    if (rc == 0) rc = wrap_key(kp, m->kms_key_id, 1, key, k);
    OPENSSL_cleanse(key, sizeof key);
    if (rc) {
        free(k);
        return rc;
    }
    m->keys = k;
    m->nkeys = 1;
    m->key_current = 1;
    return 0;
}

const sl_dkey *sl__key_get(sl_stream *s, uint32_t version)
{
    size_t n = atomic_load_explicit(&s->nkeys, memory_order_acquire);
    return version >= 1 && version <= n ? s->keys[version - 1] : NULL;
}

/* Publish key version v (slot v-1) to readers. */
static int key_publish(sl_stream *s, sl_dkey *k)
{
    if (!s->keys && !(s->keys = calloc(SL_DATA_KEYS_MAX, sizeof *s->keys)))
        return sl__err(SL_ENOMEM, "loading data keys");
    s->keys[k->version - 1] = k;
    atomic_store_explicit(&s->nkeys, k->version, memory_order_release);
    return 0;
}

/* Unwrap the keys of m that this handle lacks (caller holds s->mu or is
** alone).  Without a provider, none: reading their records is SL_EKEY. */
static int keys_load(sl_stream *s, const sl_manifest *m)
{
    if (!s->has_kp) return 0;
    for (size_t i = atomic_load(&s->nkeys); i < m->nkeys; i++) {
        const sl_mkey *mk = &m->keys[i];
        if (mk->version != i + 1 || i >= SL_DATA_KEYS_MAX)
            return sl__err(SL_ECORRUPT, "stream '%s': data key %zu has version %" PRIu32,
                           m->name, i + 1, mk->version);
        sl_dkey *k = malloc(sizeof *k);
        if (!k) return sl__err(SL_ENOMEM, "loading data keys");
        k->version = mk->version;
        int rc = s->kp.unwrap(s->kp.ctx, m->kms_key_id, mk->wrapped, mk->len, k->key);
        if (rc == 0) rc = key_publish(s, k);
        else rc = sl__err(rc < 0 && rc != SL_EIO ? SL_EKEY : rc,
                          "stream '%s': the key provider could not unwrap data key %" PRIu32
                          " under %s (a wrong master key?)",
                          m->name, mk->version, m->kms_key_id);
        if (rc) {
            OPENSSL_cleanse(k, sizeof *k);
            free(k);
            return rc;
        }
    }
    return 0;
}

static void set_current(sl_stream *s)
{
    atomic_store_explicit(&s->enc_key,
                          s->man.key_current ? sl__key_get(s, s->man.key_current) : NULL,
                          memory_order_release);
}

static int keys_change(sl_stream *s, const char *key_id, bool add, bool on);

int sl__keys_open(sl_stream *s, const sl_key_provider *kp)
{
    if (kp) {
        int rc = provider_ok(kp, "opening the stream");
        if (rc) return rc;
        s->kp = *kp;
        s->has_kp = true;
    } else if (s->man.key_current || s->man.encryption == SL_ENCRYPTION_KMS) {
        return sl__err(SL_EKEY, "stream '%s' is encrypted (KMS key id %s): opening it needs "
                                "the key provider in sl_open_opts.keys",
                       s->man.name, s->man.kms_key_id ? s->man.kms_key_id : "-");
    }
    if (!s->readonly && RAND_bytes((uint8_t *)&s->nonce_salt, sizeof s->nonce_salt) != 1)
        return sl__err(SL_EIO, "no random bytes from libcrypto");
    int rc = keys_load(s, &s->man);
    if (rc) return rc;
    if (s->man.key_current > s->man.nkeys)
        return sl__err(SL_ECORRUPT, "stream '%s': the current data key %" PRIu32 " is missing",
                       s->man.name, s->man.key_current);
    /* a KMS stream without a data key (made by 0.2.0, which stored the
    ** setting only): its writer makes one now */
    if (!s->readonly && s->man.encryption == SL_ENCRYPTION_KMS && !s->man.key_current)
        return keys_change(s, NULL, true, true);
    set_current(s);
    return 0;
}

int sl__keys_refresh(sl_stream *s, const sl_manifest *m)
{
    return keys_load(s, m);
}

void sl__keys_wipe(sl_stream *s)
{
    size_t n = atomic_load(&s->nkeys);
    for (size_t i = 0; i < n; i++) {
        OPENSSL_cleanse(s->keys[i], sizeof *s->keys[i]);
        free(s->keys[i]);
    }
    free(s->keys);
    s->keys = NULL;
    atomic_store(&s->nkeys, 0);
    atomic_store(&s->enc_key, NULL);
    OPENSSL_cleanse(&s->kp, sizeof s->kp);
    s->has_kp = false;
}

/* ---- starting, stopping, rotating ----------------------------------------
** Each is one manifest rewrite under s->mu: the new list of wrapped keys
** (all rewrapped when the master key id changes), a fresh data key when
** one is added, the current version.  Only after the manifest is durable
** do new records use the new key. */
static int keys_change(sl_stream *s, const char *key_id, bool add, bool on)
{
    if (!s->has_kp) return provider_ok(NULL, "changing encryption");
    size_t old = s->man.nkeys, n = old + (add ? 1 : 0);
    if (n > SL_DATA_KEYS_MAX)
        return sl__err(SL_ELIMIT, "stream '%s' has %u data keys, the most a stream may have",
                       s->man.name, SL_DATA_KEYS_MAX);
    bool rewrap = key_id && strcmp(key_id, s->man.kms_key_id ? s->man.kms_key_id : "") != 0;
    const char *id = key_id ? key_id : s->man.kms_key_id;
    sl_mkey *mk = calloc(n ? n : 1, sizeof *mk);
    char *idcopy = rewrap ? strdup(key_id) : NULL;
    sl_dkey *nk = add ? calloc(1, sizeof *nk) : NULL;
    int rc = !mk || (rewrap && !idcopy) || (add && !nk) ? sl__err(SL_ENOMEM, "changing keys") : 0;
    for (size_t i = 0; rc == 0 && i < old; i++) {
        if (rewrap) {
            const sl_dkey *k = sl__key_get(s, (uint32_t)i + 1);
            rc = k ? wrap_key(&s->kp, id, k->version, k->key, &mk[i])
                   : sl__err(SL_EKEY, "data key %zu is not loaded", i + 1);
        } else if (!(mk[i].wrapped = malloc(s->man.keys[i].len))) {
            rc = sl__err(SL_ENOMEM, "changing keys");
        } else {
            memcpy(mk[i].wrapped, s->man.keys[i].wrapped, s->man.keys[i].len);
            mk[i].len = s->man.keys[i].len;
            mk[i].version = s->man.keys[i].version;
        }
    }
    if (rc == 0 && add) {
        nk->version = (uint32_t)n;
        rc = RAND_bytes(nk->key, sizeof nk->key) == 1 ? wrap_key(&s->kp, id, nk->version,
                                                                 nk->key, &mk[n - 1])
                                                      : sl__err(SL_EIO, "no random bytes");
    }
    sl_manifest m = s->man;
    m.keys = mk;
    m.nkeys = n;
    m.key_current = on ? (add ? (uint32_t)n : s->man.key_current) : 0;
    m.encryption = on ? SL_ENCRYPTION_KMS : SL_ENCRYPTION_NONE;
    if (rewrap) m.kms_key_id = idcopy;
    m.generation++;
    if (rc == 0) rc = sl__manifest_write(&m, s->dir);
    if (rc == 0 && nk) rc = key_publish(s, nk);
    if (rc) {
        mkeys_free(mk, n);
        free(idcopy);
        if (nk) OPENSSL_cleanse(nk, sizeof *nk);
        free(nk);
        return rc;
    }
    /* only these fields change (others are read without s->mu) */
    mkeys_free(s->man.keys, old);
    if (rewrap) free(s->man.kms_key_id);
    s->man.keys = m.keys;
    s->man.nkeys = m.nkeys;
    s->man.key_current = m.key_current;
    s->man.encryption = m.encryption;
    s->man.kms_key_id = m.kms_key_id;
    s->man.generation = m.generation;
    set_current(s);
    return 0;
}

int sl__key_id_check(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n < 1 || n > SL_KMS_KEY_ID_MAX)
        return sl__err(SL_EVALIDATION, "1 validation error detected: Value at 'keyId' failed to "
                                       "satisfy constraint: Member must have length between 1 "
                                       "and %d (required with encryption KMS)",
                       SL_KMS_KEY_ID_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20)
            return sl__err(SL_EVALIDATION, "kms_key_id holds a control character");
    return 0;
}

/* The common entry: checks, then keys_change under s->mu. */
static int change(sl_stream *s, const char *key_id, int op)
{
    if (!s) return sl__ret(NULL, sl__err(SL_EINVAL, "stream is NULL"));
    int rc = sl__stream_check_writable(s);
    if (rc == 0 && op == 0) rc = sl__key_id_check(key_id);
    if (rc) return sl__ret(s, rc);
    pthread_mutex_lock(&s->mu);
    bool on = s->man.key_current != 0;
    const char *cur = s->man.kms_key_id ? s->man.kms_key_id : "";
    if (op == 0)                        /* start: a no-op if already so */
        rc = on && !strcmp(key_id, cur) ? 0 : keys_change(s, key_id, true, true);
    else if (op == 1)                   /* stop */
        rc = on ? keys_change(s, NULL, false, false) : 0;
    else if (!on)                       /* rotate */
        rc = sl__err(SL_EINVAL, "stream '%s' is not encrypted: start encryption first",
                     s->man.name);
    else
        rc = keys_change(s, NULL, true, true);
    pthread_mutex_unlock(&s->mu);
    return sl__ret(s, rc);
}

int sl_stream_start_encryption(sl_stream *s, const char *kms_key_id)
{
    return change(s, kms_key_id, 0);
}

int sl_stream_stop_encryption(sl_stream *s) { return change(s, NULL, 1); }

int sl_stream_rotate_key(sl_stream *s) { return change(s, NULL, 2); }
