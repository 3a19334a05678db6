/*
** test_error.c -- error codes, their texts and Kinesis names, and the
** per-thread, per-handle detail message (sl_errmsg).
*/
#include "testutil.h"

#include <limits.h>

typedef struct code_row {
    int code;
    const char *name, *text, *kinesis;
} code_row;

static const code_row codes[] = {
#define SL_X_(name, value, text, kinesis) {name, #name, text, kinesis},
    SL_ERROR_LIST(SL_X_)
#undef SL_X_
};
#define NCODES (sizeof codes / sizeof *codes)

/* ---- codes and texts ------------------------------------------------------ */

static void every_code_has_text(void **state)
{
    (void)state;
    assert_true(NCODES >= 14);
    for (size_t i = 0; i < NCODES; i++) {
        const char *t = sl_strerror(codes[i].code);
        const char *k = sl_error_kinesis_name(codes[i].code);
        assert_true(codes[i].code < 0);
        assert_non_null(t);
        assert_true(t[0] != '\0');
        if (!strcmp(t, "unknown error")) fail_msg("%s has no text", codes[i].name);
        assert_string_not_equal(t, "success");
        assert_string_equal(t, codes[i].text);
        if (!k) fail_msg("%s has no Kinesis name", codes[i].name);
        assert_true(k[0] != '\0');
        assert_string_equal(k, codes[i].kinesis);
        /* Kinesis names are exception or error class names */
        assert_true(strstr(k, "Exception") || !strcmp(k, "InternalFailure"));
        for (size_t j = 0; j < i; j++) {
            if (codes[i].code == codes[j].code)
                fail_msg("%s and %s share code %d", codes[i].name, codes[j].name, codes[i].code);
            if (!strcmp(t, sl_strerror(codes[j].code)))
                fail_msg("%s and %s share the text '%s'", codes[i].name, codes[j].name, t);
        }
    }
    /* the ABI values of the first and last codes of version 0 */
    assert_int_equal(SL_EINVAL, -1);
    assert_int_equal(SL_ENOTFOUND, -6);
    assert_int_equal(SL_EVALIDATION, -12);
    assert_int_equal(SL_EREADONLY, -14);
}

static void ok_and_unknown_codes(void **state)
{
    (void)state;
    assert_string_equal(sl_strerror(SL_OK), "success");
    assert_non_null(sl_error_kinesis_name(SL_OK));
    assert_string_equal(sl_error_kinesis_name(SL_OK), "");

    int lowest = 0;
    for (size_t i = 0; i < NCODES; i++)
        if (codes[i].code < lowest) lowest = codes[i].code;
    const int unknown[] = {1, 2, 100, lowest - 1, lowest - 2, -1000, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        assert_string_equal(sl_strerror(unknown[i]), "unknown error");
        assert_null(sl_error_kinesis_name(unknown[i]));
    }
}

/* ---- sl_errmsg ------------------------------------------------------------- */

static void errmsg_after_failed_open(void **state)
{
    const char *root = *state;
    sl_stream *other = tu_create(root, "present", NULL);

    sl_stream *s = other;
    assert_int_equal(sl_stream_open(&s, root, "no-such-stream", NULL), SL_ENOTFOUND);
    assert_null(s);
    const char *msg = sl_errmsg(NULL);
    assert_non_null(msg);
    assert_true(msg[0] != '\0');
    assert_non_null(strstr(msg, "no-such-stream"));
    /* another handle has no message */
    assert_string_equal(sl_errmsg(other), "");
    assert_string_equal(sl_errmsg(&s), "");

    /* successful calls leave the latest failure's text in place */
    char saved[512];
    snprintf(saved, sizeof saved, "%s", msg);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, other), 0);
    tu_put(p, "k", 1);
    sl_producer_close(p);
    assert_string_equal(sl_errmsg(NULL), saved);

    /* a failure on a handle moves the message there */
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, other, "shardId-000000000009", SL_ITER_LATEST, 0),
                     SL_ENOTFOUND);
    assert_non_null(strstr(sl_errmsg(other), "shardId-000000000009"));
    assert_string_equal(sl_errmsg(NULL), "");

    /* a failed create of an invalid name names the rule */
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = "bad/name";
    assert_int_equal(sl_stream_create(NULL, root, &c, NULL), SL_EVALIDATION);
    assert_non_null(strstr(sl_errmsg(NULL), "bad/name"));
    assert_string_equal(sl_errmsg(other), "");

    assert_int_equal(sl_stream_close(other), 0);
}

/* Two threads fail on the same stream handle with different texts; each sees
** its own, round after round, after both have failed. */
#define ROUNDS 200

typedef struct thread_arg {
    sl_stream *s;
    pthread_barrier_t *bar;
    int which;
    int rc_bad;                      /* rounds whose return code was wrong */
    int msg_bad;                     /* rounds whose message was not ours */
    char last[512];
    char first_bad[512];
} thread_arg;

static void *fail_on_shared(void *arg)
{
    thread_arg *a = arg;
    for (int r = 0; r < ROUNDS; r++) {
        char id[SL_SHARD_ID_LEN + 1], want[64];
        sl_iter *it = NULL;
        int rc;
        if (a->which == 0) {
            /* a missing shard: the message names it */
            sl__shard_id(id, (uint32_t)(1000 + r));
            rc = sl_iter_open(&it, a->s, id, SL_ITER_TRIM_HORIZON, 0);
            if (rc != SL_ENOTFOUND) a->rc_bad++;
            snprintf(want, sizeof want, "%s", id);
        } else {
            /* a bad iterator type: the message names the field */
            rc = sl_iter_open(&it, a->s, "shardId-000000000000", (sl_iter_type)(100 + r), 0);
            if (rc != SL_EVALIDATION) a->rc_bad++;
            snprintf(want, sizeof want, "Value '%d' at 'shardIteratorType'", 100 + r);
        }
        if (it) sl_iter_close(it);
        pthread_barrier_wait(a->bar); /* both have failed */
        const char *m = sl_errmsg(a->s);
        snprintf(a->last, sizeof a->last, "%s", m);
        if (!strstr(m, want)) {
            if (!a->msg_bad) snprintf(a->first_bad, sizeof a->first_bad, "round %d: '%s'", r, m);
            a->msg_bad++;
        }
        pthread_barrier_wait(a->bar); /* both have looked */
    }
    return NULL;
}

static void errmsg_per_thread(void **state)
{
    tu_opts o = {.shards = 2};
    sl_stream *s = tu_create(*state, "shared", &o);
    pthread_barrier_t bar;
    assert_int_equal(pthread_barrier_init(&bar, NULL, 2), 0);
    thread_arg a[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].s = s;
        a[i].bar = &bar;
        a[i].which = i;
        assert_int_equal(pthread_create(&t[i], NULL, fail_on_shared, &a[i]), 0);
    }
    for (int i = 0; i < 2; i++) assert_int_equal(pthread_join(t[i], NULL), 0);
    pthread_barrier_destroy(&bar);
    for (int i = 0; i < 2; i++) {
        if (a[i].rc_bad) fail_msg("thread %d: %d wrong return codes", i, a[i].rc_bad);
        if (a[i].msg_bad)
            fail_msg("thread %d saw another's message in %d rounds; first %s", i, a[i].msg_bad,
                     a[i].first_bad);
    }
    /* the last texts differ, and the main thread, which failed on nothing,
    ** sees no message on the stream */
    assert_non_null(strstr(a[0].last, "shardId-000000001199"));
    assert_non_null(strstr(a[1].last, "shardIteratorType"));
    assert_string_not_equal(a[0].last, a[1].last);
    assert_string_equal(sl_errmsg(s), "");
    assert_int_equal(sl_stream_close(s), 0);
}

/* A failed call binds its message to the handle it was called on. */
static void errmsg_binds_to_handle(void **state)
{
    sl_stream *s = tu_create(*state, "binding", NULL);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);

    sl_put_entry e = {"", "d", 1, NULL};
    sl_put_result r;
    assert_int_equal(sl_producer_put(p, &e, &r), SL_EVALIDATION);
    assert_int_equal(r.error, SL_EVALIDATION);
    assert_non_null(r.error_message);
    assert_true(r.error_message[0] != '\0');
    assert_non_null(strstr(sl_errmsg(p), "partitionKey"));
    assert_string_equal(sl_errmsg(s), "");
    assert_string_equal(sl_errmsg(NULL), "");

    /* sl_put too */
    assert_int_equal(sl_put(p, "\xC0\x80", "d", 1, NULL), SL_EVALIDATION);
    assert_non_null(strstr(sl_errmsg(p), "UTF-8"));
    assert_string_equal(sl_errmsg(s), "");

    /* a later success on the same handle keeps the text */
    tu_put(p, "good", 1);
    assert_non_null(strstr(sl_errmsg(p), "UTF-8"));

    /* a failure on the stream moves the message to the stream */
    assert_int_equal(sl_stream_close(s), SL_EINUSE);
    assert_non_null(strstr(sl_errmsg(s), "binding"));
    assert_string_equal(sl_errmsg(p), "");

    /* a batch with a bad entry: the request succeeds, the entry carries the
    ** detail */
    sl_put_entry batch[2] = {{"ok", "d", 1, NULL}, {"", "d", 1, NULL}};
    sl_put_result res[2];
    size_t failed = 9;
    assert_int_equal(sl_producer_put_batch(p, batch, 2, res, &failed), 0);
    assert_int_equal(failed, 1);
    assert_int_equal(res[0].error, 0);
    assert_string_equal(res[0].error_message, "");
    assert_int_equal(res[1].error, SL_EVALIDATION);
    assert_non_null(strstr(res[1].error_message, "partitionKey"));

    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
}

/* ---- the internal recording helpers --------------------------------------- */

static void internal_helpers(void **state)
{
    (void)state;
    int h1, h2;
    /* a detail bound to a handle */
    assert_int_equal(sl__ret(&h1, sl__err(SL_EIO, "disk %d said no", 7)), SL_EIO);
    assert_string_equal(sl_errmsg(&h1), "disk 7 said no");
    assert_string_equal(sl_errmsg(&h2), "");
    assert_string_equal(sl_errmsg(NULL), "");

    /* a failure with no fresh detail gets the code's text, not a stale one */
    assert_int_equal(sl__ret(&h2, SL_ENOMEM), SL_ENOMEM);
    assert_string_equal(sl_errmsg(&h2), sl_strerror(SL_ENOMEM));
    assert_string_equal(sl_errmsg(&h1), "");

    /* success changes nothing */
    assert_int_equal(sl__ret(&h1, 0), 0);
    assert_string_equal(sl_errmsg(&h2), sl_strerror(SL_ENOMEM));

    /* sl__errno appends strerror */
    sl__errno(SL_EIO, ENOSPC, "writing %s", "f");
    assert_int_equal(sl__ret(&h1, SL_ENOSPC), SL_ENOSPC);
    char want[256];
    snprintf(want, sizeof want, "writing f: %s", strerror(ENOSPC));
    assert_string_equal(sl_errmsg(&h1), want);

    /* errno mapping */
    assert_int_equal(sl__errno_code(ENOSPC), SL_ENOSPC);
    assert_int_equal(sl__errno_code(EDQUOT), SL_ENOSPC);
    assert_int_equal(sl__errno_code(ENOMEM), SL_ENOMEM);
    assert_int_equal(sl__errno_code(EIO), SL_EIO);
    assert_int_equal(sl__errno_code(EACCES), SL_EIO);

    /* long texts are cut, not overflowed */
    char big[2000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    sl__ret(&h2, sl__err(SL_EINVAL, "%s", big));
    size_t n = strlen(sl_errmsg(&h2));
    assert_true(n > 100 && n < sizeof big - 1);
    sl__errno(SL_EIO, EIO, "%s", big);
    sl__ret(&h2, SL_EIO);
    assert_true(strlen(sl_errmsg(&h2)) == n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_code_has_text),
        cmocka_unit_test(ok_and_unknown_codes),
        cmocka_unit_test_setup_teardown(errmsg_after_failed_open, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(errmsg_per_thread, tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(errmsg_binds_to_handle, tu_setup, tu_teardown),
        cmocka_unit_test(internal_helpers),
    };
    return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
