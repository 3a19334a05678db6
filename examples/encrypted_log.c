/*
** encrypted_log.c -- prompts and responses encrypted at rest.
**
** An agent runtime's telemetry carries what users typed.  This program:
**   1. makes a master key file (sl_keyfile_create: 64 hex digits, 0600) and
**      a key-file provider over it;
**   2. creates a stream with encryption KMS: the library makes a random data
**      key and keeps it in the manifest only wrapped by the provider;
**   3. logs prompt/response events, rotates the data key, logs more;
**   4. looks for a prompt's text in every file of the stream: it is not
**      there (the sequence number, time and lengths are in clear, bound to
**      the ciphertext; the partition key and data are not);
**   5. reopens the stream without the provider, then with another master
**      key: both are SL_EKEY at open, never garbage;
**   6. reopens it with the right key and reads every event back, across the
**      rotation.
**
**   make examples && build/default/examples/encrypted_log
*/
#include <shardlog.h>

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NAME "agent-telemetry"
#define KEY_ID "arn:aws:kms:eu-west-1:111122223333:key/agent-telemetry"
#define EVENTS 2000

static void die(int rc, const void *h, const char *what)
{
    fprintf(stderr, "encrypted_log: %s: %s (%s)\n", what, sl_strerror(rc), sl_errmsg(h));
    exit(1);
}
#define CHECK(call, h, what)                                                   \
    do {                                                                       \
        int rc_ = (call);                                                      \
        if (rc_ < 0) die(rc_, h, what);                                        \
    } while (0)

static int event(char *buf, size_t cap, int i)
{
    return snprintf(buf, cap,
                    "{\"session\":\"s-%03d\",\"turn\":%d,\"type\":\"%s\",\"text\":\"%s #%d\"}",
                    i % 40, i / 40, i % 2 ? "response" : "prompt",
                    i % 2 ? "Here is the itinerary you asked for" : "Plan my trip to Lisbon", i);
}

/* Does any file under dir (recursively) contain the bytes? */
static int found_in(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    struct dirent *e;
    size_t nl = strlen(needle);
    while (!found && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            found = found_in(path, needle);
            continue;
        }
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        char *buf = malloc((size_t)st.st_size + 1);
        size_t n = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
        for (size_t i = 0; buf && i + nl <= n && !found; i++)
            found = buf[i] == needle[0] && !memcmp(buf + i, needle, nl);
        free(buf);
        fclose(f);
    }
    closedir(d);
    return found;
}

int main(void)
{
    char root[4096], keyfile[4200], other[4200], sdir[4300];
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/shardlog-enc-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(keyfile, sizeof keyfile, "%s/master.key", root);
    snprintf(other, sizeof other, "%s/other.key", root);
    snprintf(sdir, sizeof sdir, "%s/%s", root, NAME);

    /* 1. the master key and its provider */
    sl_key_provider *kp, *wrong;
    CHECK(sl_keyfile_create(keyfile), NULL, "sl_keyfile_create");
    CHECK(sl_keyfile_create(other), NULL, "sl_keyfile_create");
    CHECK(sl_keyfile_provider_open(&kp, keyfile), NULL, "sl_keyfile_provider_open");
    CHECK(sl_keyfile_provider_open(&wrong, other), NULL, "sl_keyfile_provider_open");

    /* 2. an encrypted stream */
    sl_stream_config cfg = SL_STREAM_CONFIG_INIT;
    cfg.name = NAME;
    cfg.shard_count = 2;
    cfg.encryption_type = SL_ENCRYPTION_KMS;
    cfg.kms_key_id = KEY_ID;
    sl_open_opts opts = SL_OPEN_OPTS_INIT;
    opts.keys = kp;
    sl_stream *s;
    CHECK(sl_stream_create(&s, root, &cfg, &opts), NULL, "sl_stream_create");
    printf("shardlog %s: stream %s, encryption KMS under %s\n", sl_version(), sdir, KEY_ID);

    /* 3. events, a rotation halfway */
    sl_producer *p;
    CHECK(sl_producer_open(&p, s), s, "sl_producer_open");
    char buf[256], key[16];
    for (int i = 0; i < EVENTS; i++) {
        if (i == EVENTS / 2) {
            CHECK(sl_stream_rotate_key(s), s, "sl_stream_rotate_key");
            printf("  rotated the data key after %d events\n", i);
        }
        snprintf(key, sizeof key, "s-%03d", i % 40);
        CHECK(sl_put(p, key, buf, (size_t)event(buf, sizeof buf, i), NULL), p, "sl_put");
    }
    sl_producer_close(p);
    CHECK(sl_stream_close(s), s, "sl_stream_close");
    printf("  logged %d prompt/response events\n", EVENTS);

    /* 4. the files hold no prompt, response or session id in clear */
    int leaked = found_in(sdir, "Plan my trip") || found_in(sdir, "itinerary") ||
                 found_in(sdir, "s-007");
    printf("  \"Plan my trip\" in the stream's files: %s\n", leaked ? "FOUND" : "no");
    if (leaked) return 1;

    /* 5. no provider, or the wrong master key: a key error at open */
    sl_open_opts none = SL_OPEN_OPTS_INIT;
    int rc = sl_stream_open(&s, root, NAME, &none);
    printf("  open without a key provider: %s\n    %s\n", sl_strerror(rc), sl_errmsg(NULL));
    if (rc != SL_EKEY) return 1;
    sl_open_opts bad = SL_OPEN_OPTS_INIT;
    bad.keys = wrong;
    rc = sl_stream_open(&s, root, NAME, &bad);
    printf("  open with another master key: %s\n    %s\n", sl_strerror(rc), sl_errmsg(NULL));
    if (rc != SL_EKEY) return 1;

    /* 6. the right key reads everything back, under both data keys */
    CHECK(sl_stream_open(&s, root, NAME, &opts), NULL, "sl_stream_open");
    sl_shard_list *l;
    CHECK(sl_stream_list_shards(&l, s), s, "sl_stream_list_shards");
    static sl_record recs[1000];
    int read = 0, intact = 0;
    for (size_t i = 0; i < l->count; i++) {
        sl_iter *it;
        CHECK(sl_iter_open(&it, s, l->shards[i].shard_id, SL_ITER_TRIM_HORIZON, 0), s,
              "sl_iter_open");
        for (;;) {
            sl_read_result res;
            CHECK(sl_iter_read(it, recs, 1000, &res), it, "sl_iter_read");
            if (res.count == 0) break;
            for (size_t j = 0; j < res.count; j++) {
                int n, ev = -1;
                const char *hash = memchr(recs[j].data, '#', recs[j].data_len);
                if (hash) ev = atoi(hash + 1);
                n = ev >= 0 ? event(buf, sizeof buf, ev) : 0;
                intact += n > 0 && (size_t)n == recs[j].data_len &&
                          !memcmp(buf, recs[j].data, (size_t)n) && recs[j].key_len == 5;
                read++;
            }
        }
        sl_iter_close(it);
    }
    sl_shard_list_free(l);
    printf("  read back %d events, %d intact, with the right key\n", read, intact);
    CHECK(sl_stream_close(s), s, "sl_stream_close");
    CHECK(sl_stream_delete(root, NAME), NULL, "sl_stream_delete");
    sl_keyfile_provider_close(kp);
    sl_keyfile_provider_close(wrong);
    remove(keyfile);
    remove(other);
    remove(root);
    return read == EVENTS && intact == EVENTS ? 0 : 1;
}
