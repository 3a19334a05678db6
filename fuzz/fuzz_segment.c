/*
** fuzz_segment.c -- libFuzzer target: a hot segment file (header, records,
** index, trailer), read through a real stream.
**
** The input is written as segment 1 of the template stream (fixture.c:
** 1 shard, 64 KiB segments, encrypted with a fixed key, fixed stream id),
** then:
**   1. a read-only open (no writer alive: the newest segment is scanned),
**      every record read with a TRIM_HORIZON iterator, seeks
**      (AT_SEQUENCE_NUMBER, AT_TIMESTAMP, LATEST) and sl_stream_verify;
**   2. a writer open (recovery: scan, torn tail, damage, seal,
**      quarantine), every record read, one put that must read back as the
**      shard's newest record;
**   3. a read-only open of what the writer left.
** Every record returned must be one the input holds (fuzz.h, "garbage"),
** sequence numbers must rise, and reads must make progress (a bounded
** number of calls).  Each input runs twice: as given, and re-signed
** (fixture.c fz_resign_hot: checksums recomputed, so that mutations behind
** them reach the checks that follow).  Bit 0 of byte 255 (reserved, in the
** header's mutable part; the library never reads it) makes the input an
** older segment, followed by a valid segment 2.  A header boot id of 1
** means this machine's boot (fuzz.h FZ_BOOT_THIS).
** Seeds: fuzz/corpus/segment/, written by make_corpus.c.
*/
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20)) return 0;
    fz_segment_run(data, size, false);
    return 0;
}
