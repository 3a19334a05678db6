/*
** fuzz_cold.c -- libFuzzer target: a cold segment file (header flags 0x1,
** zstd frames, block table, cold trailer), read through a real stream.
**
** The same stages as fuzz_segment.c (read-only open, reads, seeks,
** verification, writer open, a put, a last read-only open), with cold
** seeds: the reader's table check (cold_table_ok), the block decoder
** (sl__seg_cold_decode), the table rebuilt by walking the frames
** (cold_scan) when the trailer or table is damaged, cold seeks and the
** iterator's block window.  The oracle decompresses every zstd frame in
** the input (alone and with its neighbours, as a table entry may span
** frames) and takes the records framed in them.  The re-signed run
** recomputes each block's raw_xxh3, the table and trailer checksums and
** the header's (fixture.c fz_resign_cold).
** Seeds: fuzz/corpus/cold/, written by make_corpus.c.
*/
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20)) return 0;
    fz_segment_run(data, size, true);
    return 0;
}
