/*
** test_crypto.c -- envelope keys: the key-file provider, data keys made at
** creation and kept only wrapped, unwrapped at open; a missing or wrong
** key is a key error at open.  (Record encryption is the next step.)
*/
#include "testutil.h"

#include <sys/stat.h>

#define KEY_ID "arn:aws:kms:eu-west-1:111122223333:key/telemetry"

static char *keyfile(const char *root, const char *name)
{
    char *p = tu_path("%s/%s", root, name);
    assert_int_equal(sl_keyfile_create(p), 0);
    return p;
}

static void keyfile_wraps_and_unwraps(void **state)
{
    const char *root = *state;
    char *kf = keyfile(root, "master.key");
    struct stat st;
    assert_int_equal(stat(kf, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(sl_keyfile_create(kf), SL_EINUSE);
    sl_key_provider *p;
    assert_int_equal(sl_keyfile_provider_open(&p, kf), 0);
    uint8_t key[SL_DATA_KEY_BYTES], back[SL_DATA_KEY_BYTES], w[SL_WRAPPED_KEY_MAX];
    for (int i = 0; i < SL_DATA_KEY_BYTES; i++) key[i] = (uint8_t)(i * 7 + 1);
    size_t wl = sizeof w;
    assert_int_equal(p->wrap(p->ctx, KEY_ID, key, w, &wl), 0);
    assert_true(wl > SL_DATA_KEY_BYTES);
    assert_null(memmem(w, wl, key, sizeof key));             /* not in clear */
    assert_int_equal(p->unwrap(p->ctx, KEY_ID, w, wl, back), 0);
    assert_memory_equal(back, key, sizeof key);
    /* another key id, a flipped bit, a short input: key errors */
    assert_int_equal(p->unwrap(p->ctx, "other", w, wl, back), SL_EKEY);
    for (size_t b = 0; b < wl * 8; b += 37) {
        w[b / 8] ^= (uint8_t)(1u << (b % 8));
        assert_int_equal(p->unwrap(p->ctx, KEY_ID, w, wl, back), SL_EKEY);
        w[b / 8] ^= (uint8_t)(1u << (b % 8));
    }
    assert_int_equal(p->unwrap(p->ctx, KEY_ID, w, wl - 1, back), SL_EKEY);
    sl_keyfile_provider_close(p);
    /* a bad key file */
    char *bad = tu_path("%s/bad.key", root);
    FILE *f = fopen(bad, "w");
    fputs("not a key\n", f);
    fclose(f);
    assert_int_equal(sl_keyfile_provider_open(&p, bad), SL_EKEY);
    char *none = tu_path("%s/none.key", root);
    assert_int_equal(sl_keyfile_provider_open(&p, none), SL_EKEY);
    free(bad);
    free(none);
    free(kf);
}

static sl_stream *kms_stream(const char *root, const sl_key_provider *kp, int *rc)
{
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = "secret";
    c.durability = SL_DURABILITY_NONE;
    c.encryption_type = SL_ENCRYPTION_KMS;
    c.kms_key_id = KEY_ID;
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.keys = kp;
    sl_stream *s = NULL;
    *rc = sl_stream_create(&s, root, &c, &o);
    return s;
}

static void data_keys_are_made_kept_wrapped_and_loaded(void **state)
{
    const char *root = *state;
    char *kf = keyfile(root, "master.key"), *kf2 = keyfile(root, "other.key");
    sl_key_provider *p, *p2;
    assert_int_equal(sl_keyfile_provider_open(&p, kf), 0);
    assert_int_equal(sl_keyfile_provider_open(&p2, kf2), 0);
    int rc;
    /* creating an encrypted stream needs a provider */
    assert_null(kms_stream(root, NULL, &rc));
    assert_int_equal(rc, SL_EKEY);
    sl_stream *s = kms_stream(root, p, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(s->nkeys, 1);
    uint8_t dk[SL_DATA_KEY_BYTES];
    memcpy(dk, s->keys[0].key, sizeof dk);
    assert_int_equal(sl_stream_close(s), 0);
    /* the manifest holds the key only wrapped */
    char *mp = tu_path("%s/secret/MANIFEST", root), *text;
    size_t len;
    assert_int_equal(sl__os_read_file(mp, &text, &len, 1 << 20), 0);
    char hex[2 * SL_DATA_KEY_BYTES + 1];
    for (int i = 0; i < SL_DATA_KEY_BYTES; i++) snprintf(hex + 2 * i, 3, "%02x", dk[i]);
    assert_null(strstr(text, hex));
    assert_null(memmem(text, len, dk, sizeof dk));
    assert_non_null(strstr(text, "data_key 1 "));
    assert_non_null(strstr(text, "data_key_current 1"));
    free(text);
    free(mp);
    /* opening: the right provider loads the same key; none or another is a
    ** key error, at open */
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.keys = p;
    assert_int_equal(sl_stream_open(&s, root, "secret", &o), 0);
    assert_memory_equal(s->keys[0].key, dk, sizeof dk);
    assert_int_equal(sl_stream_close(s), 0);
    o.keys = NULL;
    assert_int_equal(sl_stream_open(&s, root, "secret", &o), SL_EKEY);
    assert_non_null(strstr(sl_errmsg(NULL), "key provider"));
    o.keys = p2;
    assert_int_equal(sl_stream_open(&s, root, "secret", &o), SL_EKEY);
    assert_non_null(strstr(sl_errmsg(NULL), "unwrap"));
    o.flags = SL_OPEN_READONLY;         /* followers too */
    assert_int_equal(sl_stream_open(&s, root, "secret", &o), SL_EKEY);
    o.keys = p;
    assert_int_equal(sl_stream_open(&s, root, "secret", &o), 0);
    assert_int_equal(sl_stream_close(s), 0);
    /* a stream without encryption needs no provider */
    tu_opts t = {0};
    s = tu_create(root, "plain", &t);
    assert_int_equal(s->nkeys, 0);
    assert_int_equal(sl_stream_close(s), 0);
    sl_keyfile_provider_close(p);
    sl_keyfile_provider_close(p2);
    free(kf);
    free(kf2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(keyfile_wraps_and_unwraps, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(data_keys_are_made_kept_wrapped_and_loaded, tu_setup,
                                        tu_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
