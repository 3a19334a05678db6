/*
** test_record.c -- record framing: round trip, every single-bit flip of a
** record detected, zero slots, short regions, inconsistent headers.
*/
#include "testutil.h"

static void round_trip(void **state)
{
    (void)state;
    uint8_t buf[256] = {0};
    const char *key = "session-42", *data = "{\"type\":\"tool_call\"}";
    uint32_t kl = (uint32_t)strlen(key), dl = (uint32_t)strlen(data);
    uint64_t span = sl__rec_span(kl, dl);
    assert_int_equal(span % 8, 0);
    assert_true(span >= SL_REC_OVERHEAD + kl + dl && span < SL_REC_OVERHEAD + kl + dl + 8);
    sl__rec_write(buf, 77, 1234567, key, kl, data, dl, NULL);
    sl_recview v;
    assert_int_equal(sl__rec_parse(buf, sizeof buf, true, &v), SL_REC_OK);
    assert_int_equal(v.seq, 77);
    assert_int_equal(v.ms, 1234567);
    assert_int_equal(v.klen, kl);
    assert_int_equal(v.dlen, dl);
    assert_memory_equal(v.key, key, kl);
    assert_memory_equal(v.data, data, dl);
    assert_int_equal(v.span, span);
    /* padding is left zero: the next slot reads as the end */
    assert_int_equal(sl__rec_parse(buf + span, sizeof buf - span, true, &v), SL_REC_END);
    /* empty data is a valid record */
    uint8_t b2[64] = {0};
    sl__rec_write(b2, 1, 0, "k", 1, NULL, 0, NULL);
    assert_int_equal(sl__rec_parse(b2, sizeof b2, true, &v), SL_REC_OK);
    assert_int_equal(v.dlen, 0);
}

static void every_bit_flip_detected(void **state)
{
    (void)state;
    uint8_t buf[128] = {0};
    sl__rec_write(buf, 9, 99, "key", 3, "payload-bytes", 13, NULL);
    uint64_t span = sl__rec_span(3, 13);
    int detected = 0, total = 0;
    for (uint64_t byte = 0; byte < span; byte++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[byte] ^= (uint8_t)(1u << bit);
            sl_recview v;
            int r = sl__rec_parse(buf, sizeof buf, true, &v);
            /* a flip in the zero padding leaves the record valid, but the
            ** padding then is no longer zero... the record itself is intact */
            bool in_padding = byte >= SL_REC_OVERHEAD + 16;
            if (!in_padding) {
                total++;
                if (r != SL_REC_OK) detected++;
            }
            buf[byte] ^= (uint8_t)(1u << bit);
        }
    }
    assert_int_equal(detected, total);
    assert_int_equal(total, (SL_REC_OVERHEAD + 16) * 8);
}

static void short_and_inconsistent(void **state)
{
    (void)state;
    uint8_t buf[128] = {0};
    sl__rec_write(buf, 5, 5, "k", 1, "data", 4, NULL);
    uint64_t span = sl__rec_span(1, 4);
    sl_recview v;
    /* a region that ends inside the record */
    for (uint64_t avail = 0; avail < span; avail++)
        assert_int_not_equal(sl__rec_parse(buf, avail, true, &v), SL_REC_OK);
    /* all zero, however short: the end */
    uint8_t z[64] = {0};
    for (uint64_t avail = 0; avail <= sizeof z; avail++)
        assert_int_equal(sl__rec_parse(z, avail, true, &v), SL_REC_END);
    /* a header that disagrees with itself, even when its checksum is
    ** recomputed, is refused */
    uint8_t bad[128];
    memcpy(bad, buf, sizeof bad);
    sl__st16(bad + 24, 0);                        /* key length 0 */
    assert_int_equal(sl__rec_parse(bad, sizeof bad, false, &v), SL_REC_BAD);
    memcpy(bad, buf, sizeof bad);
    sl__st16(bad + 26, 1);                        /* reserved */
    assert_int_equal(sl__rec_parse(bad, sizeof bad, false, &v), SL_REC_BAD);
    memcpy(bad, buf, sizeof bad);
    sl__st32(bad + 4, 1);                         /* flags */
    assert_int_equal(sl__rec_parse(bad, sizeof bad, false, &v), SL_REC_BAD);
    memcpy(bad, buf, sizeof bad);
    sl__st32(bad + 28, 1000000);                  /* data past the region */
    sl__st32(bad, 40 + 1 + 1000000);
    assert_int_equal(sl__rec_parse(bad, sizeof bad, false, &v), SL_REC_BAD);
    memcpy(bad, buf, sizeof bad);
    sl__st16(bad + 24, 2000);                     /* key longer than allowed */
    sl__st32(bad, 40 + 2000 + 4);
    assert_int_equal(sl__rec_parse(bad, 4096, false, &v), SL_REC_BAD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(every_bit_flip_detected),
        cmocka_unit_test(short_and_inconsistent),
    };
    return cmocka_run_group_tests_name("record", tests, NULL, NULL);
}
