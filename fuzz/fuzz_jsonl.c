/*
** fuzz_jsonl.c -- libFuzzer target: the JSON Lines input of `shardlog
** put-records` (tools/cmd_data.c).
**
** The tool's own parser runs: put_entry_parse, the check of one line that
** cmd_put_records calls (through parse_line, which prints the message with
** the line number and exits 2 -- the function returns instead, so that it
** can run here).  It is linked with the rest of the tool's sources (main()
** renamed, see the Makefile).  The input is split into lines as getline
** does, and blank lines skipped, as the tool does.  Checked for every line:
**   - accepted: the entry holds exactly the line's PartitionKey, Text (its
**     bytes) or Data, and ExplicitHashKey, as jansson reads them; Data was
**     valid base64 (RFC 4648, with padding, trailing blanks allowed as the
**     tool trims them) and decodes to the same bytes as an independent
**     decoder here; then the key and hash key go through the checks a put
**     makes (sl__partition_key_check, sl_hash_partition_key,
**     sl_hash_key_parse), which must not crash;
**   - refused: with a message, and valid base64 is never refused as such;
**   - nothing leaks (LeakSanitizer), on either path.
** Seeds: fuzz/corpus/jsonl/, written by make_corpus.c.
*/
#include "fuzz.h"

#include "cli.h"

#include <stdlib.h>
#include <string.h>

static int b64v(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26
         : c >= '0' && c <= '9' ? c - '0' + 52 : c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Strict base64 (after the trailing blanks the tool trims): malloc'd
** bytes, or NULL if s is not base64. */
static unsigned char *strict_b64(const char *s, size_t *n)
{
    size_t len = strlen(s);
    while (len && (s[len - 1] == '\n' || s[len - 1] == ' ')) len--;
    if (len % 4) return NULL;
    size_t pad = len >= 1 && s[len - 1] == '=' ? (len >= 2 && s[len - 2] == '=' ? 2 : 1) : 0;
    unsigned char *out = malloc(len / 4 * 3 + 1);
    if (!out) fz_fail("out of memory");
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        uint32_t acc = 0;
        for (size_t k = 0; k < 4; k++) {
            int v = (i + k >= len - pad) ? 0 : b64v((unsigned char)s[i + k]);
            if (v < 0) {
                free(out);
                return NULL;
            }
            acc = acc << 6 | (uint32_t)v;
        }
        out[o++] = (unsigned char)(acc >> 16);
        out[o++] = (unsigned char)(acc >> 8);
        out[o++] = (unsigned char)acc;
    }
    *n = o - pad;
    return out;
}

static void check_accepted(const char *line, const pentry *e)
{
    json_error_t err;
    json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, &err);
    if (!j || !json_is_object(j)) fz_fail("put_entry_parse accepted what jansson refuses");
    json_t *k = json_object_get(j, "PartitionKey"), *d = json_object_get(j, "Data"),
           *t = json_object_get(j, "Text"), *h = json_object_get(j, "ExplicitHashKey");
    if (!json_is_string(k) || !e->key || strcmp(e->key, json_string_value(k)))
        fz_fail("the entry's key is not the line's PartitionKey");
    if (!!h != !!e->ehk || (h && strcmp(e->ehk, json_string_value(h))))
        fz_fail("the entry's hash key is not the line's ExplicitHashKey");
    if (!!d == !!t) fz_fail("accepted with both or neither of Data and Text");
    if (e->len && !e->data) fz_fail("an entry with a length and no data");
    if (t) {
        if (e->len != json_string_length(t) || memcmp(e->data, json_string_value(t), e->len))
            fz_fail("the entry's data is not the line's Text");
    } else {
        size_t n;
        unsigned char *want = strict_b64(json_string_value(d), &n);
        if (!want) fz_fail("Data accepted, but it is not base64: \"%s\"", json_string_value(d));
        if (n != e->len || memcmp(want, e->data, n))
            fz_fail("Data decoded to other bytes than base64 says");
        free(want);
    }
    json_decref(j);
    /* what a put checks next */
    size_t bytes;
    (void)sl__partition_key_check(e->key, &bytes);
    uint8_t hk[16];
    (void)sl_hash_partition_key(hk, e->key);
    if (e->ehk) (void)sl_hash_key_parse(hk, e->ehk);
}

static void check_refused(const char *line, const char *why)
{
    if (!why || !*why) fz_fail("a line refused without a message");
    /* valid base64 is never what is wrong with a line */
    if (strstr(why, "\"Data\" is not a base64 string")) {
        json_t *j = json_loads(line, JSON_REJECT_DUPLICATES, NULL);
        json_t *d = j ? json_object_get(j, "Data") : NULL;
        size_t n;
        unsigned char *b = json_is_string(d) ? strict_b64(json_string_value(d), &n) : NULL;
        if (b) fz_fail("valid base64 refused: \"%s\"", json_string_value(d));
        json_decref(j);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 16)) return 0;
    size_t at = 0;
    while (at < size) {
        const uint8_t *nl = memchr(data + at, '\n', size - at);
        size_t got = nl ? (size_t)(nl - (data + at)) + 1 : size - at;
        char *line = malloc(got + 1);
        if (!line) return 0;
        memcpy(line, data + at, got);
        line[got] = '\0';
        at += got;
        size_t a = 0;                   /* blank: skipped (cmd_put_records) */
        while (a < got && strchr(" \t\r\n", line[a])) a++;
        if (a < got) {
            pentry e;
            char *why = NULL;
            int rc = put_entry_parse(line, &e, &why);
            if (rc == 0) {
                if (why) fz_fail("accepted with a message");
                check_accepted(line, &e);
                pentry_free(&e);
            } else if (rc == -1) {
                if (e.key || e.ehk || e.data) fz_fail("a refused entry holds something");
                check_refused(line, why);
            } else {
                fz_fail("put_entry_parse returned %d", rc);
            }
            free(why);
        }
        free(line);
    }
    return 0;
}
