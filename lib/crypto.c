/*
** crypto.c -- envelope keys for encryption at rest (libcrypto EVP).
**
** A stream with encryption KMS has data keys: 256-bit random keys made by
** the library, kept in the manifest only wrapped by the host's key provider
** under the stream's master key id (`data_key <version> <hex wrapped>`),
** the newest one current.  Opening such a stream needs the provider: each
** wrapped key is unwrapped into the handle's memory (never written in
** clear) and wiped when the handle closes.  A missing provider, or one
** whose master key cannot unwrap them, fails the open with SL_EKEY -- a
** key error, never garbage later.
**
** The key-file provider wraps with AES-256-GCM under a master key read
** from a file of 64 hex digits: wrapped = nonce (12 random bytes) ||
** ciphertext (32) || tag (16), the key id bound as associated data, so a
** wrapped key cannot be moved to another key id unnoticed.
**
** (0.2.0 makes, protects and loads data keys; encrypting records with them
** is the next step of issue 7.)
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

int sl__keys_create(sl_manifest *m, const sl_key_provider *kp)
{
    if (m->encryption != SL_ENCRYPTION_KMS) return 0;
    int rc = provider_ok(kp, "creating the stream");
    if (rc) return rc;
    uint8_t key[SL_DATA_KEY_BYTES], w[SL_WRAPPED_KEY_MAX];
    size_t wl = sizeof w;
    if (RAND_bytes(key, sizeof key) != 1) return sl__err(SL_EIO, "no random bytes");
    rc = kp->wrap(kp->ctx, m->kms_key_id, key, w, &wl);
    OPENSSL_cleanse(key, sizeof key);
    if (rc) return sl__err(rc, "the key provider could not wrap a data key under %s",
                           m->kms_key_id);
    if (wl == 0 || wl > SL_WRAPPED_KEY_MAX) return sl__err(SL_EKEY, "the key provider "
                                                                    "returned a bad length");
    sl_mkey *k = calloc(1, sizeof *k);
    if (!k || !(k->wrapped = malloc(wl))) {
        free(k);
        return sl__err(SL_ENOMEM, "creating a data key");
    }
    memcpy(k->wrapped, w, wl);
    k->len = wl;
    k->version = 1;
    m->keys = k;
    m->nkeys = 1;
    m->key_current = 1;
    return 0;
}

int sl__keys_open(sl_stream *s, const sl_key_provider *kp)
{
    if (s->man.nkeys == 0) return 0;
    int rc = provider_ok(kp, "opening the stream");
    if (rc) return rc;
    if (!(s->keys = calloc(s->man.nkeys, sizeof *s->keys)))
        return sl__err(SL_ENOMEM, "loading data keys");
    for (size_t i = 0; i < s->man.nkeys; i++) {
        const sl_mkey *k = &s->man.keys[i];
        s->keys[i].version = k->version;
        rc = kp->unwrap(kp->ctx, s->man.kms_key_id, k->wrapped, k->len, s->keys[i].key);
        if (rc) {
            sl__keys_wipe(s);
            return sl__err(rc == SL_EKEY ? SL_EKEY : rc,
                           "stream '%s': the key provider could not unwrap data key %u under "
                           "%s (a wrong master key?)",
                           s->man.name, k->version, s->man.kms_key_id);
        }
        s->nkeys = i + 1;
    }
    return 0;
}

void sl__keys_wipe(sl_stream *s)
{
    if (s->keys) OPENSSL_cleanse(s->keys, s->man.nkeys * sizeof *s->keys);
    free(s->keys);
    s->keys = NULL;
    s->nkeys = 0;
}
