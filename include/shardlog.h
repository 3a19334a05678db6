/*
** shardlog.h -- an embeddable, Kinesis-style data stream over memory-mapped
** segment files.  This header is the whole public API and its manual.
**
** GUARANTEES
**   - A record whose put returned success is never lost within its stream's
**     durability mode (below), and a torn or corrupt record is never returned
**     as data: every record is checksummed (XXH3-64) and verified on read.
**   - Sequence numbers come from one 64-bit counter per stream.  They are
**     unique in the stream, strictly increasing within every shard, and never
**     reused -- not after a crash, a power cut, or deletion of every record.
**   - Bad input, bad files and full disks produce an error code and a message
**     (sl_errmsg), never an abort, a SIGBUS or memory corruption.
**
** DURABILITY MODES (per stream, stored in its manifest, overridable at open)
**   SL_DURABILITY_NONE      records live in the page cache.  A crash of the
**                           process loses nothing; a power cut may lose the
**                           records written since the kernel last wrote back.
**   SL_DURABILITY_INTERVAL  as NONE, plus a background thread makes everything
**                           durable every sync_interval_ms (default 1000 ms,
**                           at most one hour): a power cut loses at most that
**                           window plus the time one sync takes.  No sync
**                           runs on the append path.  The default.
**   SL_DURABILITY_ALWAYS    a put returns after its record is on stable
**                           storage: in the stream's commit journal (the
**                           JOURNAL file, 1..64 MiB), which concurrent puts
**                           and batches share, whatever their shards: one
**                           write and one fdatasync per round (group
**                           commit).  A PutRecords batch is one commit.
**                           After a power cut the next writer open replays
**                           the journal into the segments.
**
** DELIBERATE DIFFERENCES FROM KINESIS
**   - Sequence numbers are a stream-wide 64-bit counter (formatted as decimal
**     strings where Kinesis uses strings), not 56-digit opaque numbers.
**   - No control-plane TPS limits, no account quotas, no CREATING state:
**     operations complete before they return.
**   - Iterators are handles, not tokens, and do not expire.
**   - Partition keys are C strings, so they cannot contain U+0000.  Their
**     length is counted in UTF-16 code units, as Kinesis' Java front end and
**     kinesalite count it (128 x U+1F642 is accepted, 129 x U+1F642 is not).
**
** HAZARDS
**   - fork(): a child must not use handles inherited from its parent; it
**     shares the parent's writer lock and mappings.  Open new handles.
**   - Network filesystems (NFS, SMB) and copy-on-write filesystems (btrfs,
**     ZFS) are not supported: shardlog relies on shared mappings being
**     coherent between processes and on fallocate reserving blocks, so that a
**     full disk is reported at segment creation rather than as SIGBUS later.
**   - Do not truncate or edit segment files under a running process.  Files
**     damaged while closed are detected and reported at open or read.
**
** THREADS
**   sl_stream, sl_consumer and sl_sched are shareable by any number of
**   threads.  sl_producer, sl_iter and sl_lreader are used by one thread at
**   a time (any thread; not concurrently).  Appends to different shards run
**   in parallel; readers never block the writer; a reshard or maintenance
**   pass holds no lock a reader needs for longer than a list update.
*/
#ifndef SHARDLOG_H
#define SHARDLOG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SL_API __attribute__((visibility("default")))
#else
#define SL_API
#endif

/* ---- Version ------------------------------------------------------------
** SL_ABI_VERSION is the SONAME major: it changes only when a released
** signature or struct layout changes incompatibly. */
#define SL_VERSION_MAJOR 0
#define SL_VERSION_MINOR 4
#define SL_VERSION_PATCH 0
#define SL_VERSION_STRING "0.4.0"
#define SL_ABI_VERSION 1

/* The version of the library actually linked (may differ from the header). */
SL_API const char *sl_version(void);

/* ---- Errors -------------------------------------------------------------
** Every function that can fail returns 0 or a negative SL_E... code.  Codes
** are ABI: new ones are added at the end, never renumbered or reused.  The
** third column is the Kinesis exception each code stands for. */
#define SL_ERROR_LIST(X)                                                       \
    X(SL_EINVAL, -1, "invalid argument", "InvalidArgumentException")           \
    X(SL_ENOMEM, -2, "out of memory", "InternalFailure")                       \
    X(SL_EIO, -3, "I/O error", "InternalFailure")                              \
    X(SL_ENOSPC, -4, "no space left on device", "InternalFailure")             \
    X(SL_ECORRUPT, -5, "corrupt data on disk", "InternalFailure")              \
    X(SL_ENOTFOUND, -6, "not found", "ResourceNotFoundException")              \
    X(SL_ELOCKED, -7, "stream locked by another writer",                       \
      "ResourceInUseException")                                                \
    X(SL_ETHROTTLED, -8, "throughput exceeded",                                \
      "ProvisionedThroughputExceededException")                                \
    X(SL_EEXPIRED, -9, "iterator expired", "ExpiredIteratorException")         \
    X(SL_ELIMIT, -10, "limit exceeded", "LimitExceededException")              \
    X(SL_EINUSE, -11, "resource in use", "ResourceInUseException")             \
    X(SL_EVALIDATION, -12, "validation error", "ValidationException")          \
    X(SL_EKEY, -13, "encryption key unavailable", "KMSAccessDeniedException")  \
    X(SL_EREADONLY, -14, "stream is open read-only", "AccessDeniedException") \
    X(SL_ETRIMMED, -15, "position was trimmed by retention",                   \
      "InvalidArgumentException")

enum sl_error {
    SL_OK = 0,
#define SL_X_(name, value, text, kinesis) name = value,
    SL_ERROR_LIST(SL_X_)
#undef SL_X_
};

/* Static text naming a code ("unknown error" for unknown codes). */
SL_API const char *sl_strerror(int code);
/* The Kinesis exception name for a code ("" for SL_OK, NULL if unknown). */
SL_API const char *sl_error_kinesis_name(int code);
/* Detail of this thread's latest failure on handle h (a stream, producer or
** iterator), e.g. "partition key is 257 UTF-16 units long; the limit is 256".
** Pass NULL for failures that left no handle (a failed open or create).
** Returns "" if this thread's latest failure was on another handle.  The text
** is valid until this thread's next failing call. */
SL_API const char *sl_errmsg(const void *h);

/* ---- Limits (Kinesis values unless noted) ------------------------------- */
#define SL_STREAM_NAME_MAX 128           /* [a-zA-Z0-9_.-]{1,128} */
#define SL_PARTITION_KEY_MAX 256         /* UTF-16 code units */
#define SL_HASH_KEY_DIGITS_MAX 39        /* explicit hash key, decimal */
#define SL_BATCH_RECORDS_MAX 500         /* PutRecords entries */
#define SL_BATCH_BYTES_MAX (10u << 20)   /* PutRecords data + keys */
#define SL_RECORD_KIB_DEFAULT 1024       /* data + key, 1 MiB */
#define SL_RECORD_KIB_MAX 10240          /* raised per stream, up to 10 MiB */
#define SL_GET_RECORDS_MAX 10000         /* records per read */
#define SL_GET_BYTES_MAX (10u << 20)     /* bytes per read */
#define SL_RETENTION_HOURS_MIN 24
#define SL_RETENTION_HOURS_MAX 8760
#define SL_TAGS_MAX 50
#define SL_TAG_KEY_MAX 128
#define SL_TAG_VALUE_MAX 256
#define SL_KMS_KEY_ID_MAX 2048
#define SL_SHARDS_MAX 10000              /* per stream (UpdateShardCount cap) */
#define SL_SEGMENT_BYTES_DEFAULT (64u << 20)
#define SL_SEGMENT_BYTES_MIN (64u << 10) /* shardlog's own limits */
#define SL_SEGMENT_BYTES_MAX (1ull << 32)
#define SL_SHARD_ID_LEN 20               /* "shardId-" + 12 digits */
#define SL_SEQ_STR_MAX 21                /* decimal u64 + NUL */

/* ---- Handles ------------------------------------------------------------
** Opaque; only the library allocates or frees them.
**   sl_stream    an open stream directory      shareable across threads
**   sl_producer  appends records               one thread at a time
**   sl_iter      a read position in a shard    one thread at a time
**   sl_vclock    a virtual clock for tests     shareable across threads
**   sl_consumer  a registered consumer         shareable across threads
**   sl_sched     the read scheduler            shareable across threads
**   sl_sub       a subscription (push reads)   owned by its scheduler
**   sl_lreader   reads a stream by lineage     one thread at a time
** Producers, iterators, consumers and schedulers borrow their stream: close
** them first.
** sl_stream_close() on a stream with open children returns SL_EINUSE and
** changes nothing. */
typedef struct sl_stream sl_stream;
typedef struct sl_producer sl_producer;
typedef struct sl_iter sl_iter;
typedef struct sl_vclock sl_vclock;
typedef struct sl_consumer sl_consumer;
typedef struct sl_sched sl_sched;
typedef struct sl_sub sl_sub;

/* ---- Providers ----------------------------------------------------------
** Versioned structs of callbacks; they only ever grow at the end. */

/* A clock.  now_ms returns milliseconds since the Unix epoch; it is called on
** every put (once per batch) and must be thread-safe.  A clock that steps
** backwards is tolerated: arrival times are clamped to be non-decreasing
** within a shard. */
#define SL_CLOCK_VERSION 1
typedef struct sl_clock {
    uint32_t version;                /* SL_CLOCK_VERSION */
    int64_t (*now_ms)(void *ctx);
    void *ctx;
} sl_clock;

/* A virtual clock for deterministic tests: time moves only when told.
** sl_vclock_clock() returns a provider to pass in sl_open_opts.clock; the
** vclock must outlive every stream using it. */
SL_API int sl_vclock_new(sl_vclock **out, int64_t start_ms);
SL_API void sl_vclock_free(sl_vclock *vc);
SL_API const sl_clock *sl_vclock_clock(sl_vclock *vc);
SL_API int64_t sl_vclock_now(const sl_vclock *vc);
SL_API void sl_vclock_advance(sl_vclock *vc, int64_t delta_ms); /* >= 0 */
SL_API void sl_vclock_set(sl_vclock *vc, int64_t now_ms);       /* any */

/* A key provider (KMS-like envelope encryption): it wraps a stream's data
** keys under a master key id and unwraps them, so data keys are stored
** only wrapped (in the manifest).  wrap: *out_len holds out's capacity
** (SL_WRAPPED_KEY_MAX) and receives the length written.  Both return 0 or
** a negative SL_E code (SL_EKEY: this master key cannot do it).  Called
** from the thread that opens, creates or rotates; key bytes passed in are
** wiped by the library after the call.  sl_keyfile_provider_open makes one
** from a key file (the CLI's and the examples'). */
#define SL_DATA_KEY_BYTES 32
#define SL_WRAPPED_KEY_MAX 512
#define SL_KEY_PROVIDER_VERSION 1
typedef struct sl_key_provider {
    uint32_t version;                /* SL_KEY_PROVIDER_VERSION */
    int (*wrap)(void *ctx, const char *key_id, const uint8_t key[SL_DATA_KEY_BYTES],
                uint8_t *out, size_t *out_len);
    int (*unwrap)(void *ctx, const char *key_id, const uint8_t *in, size_t in_len,
                  uint8_t key[SL_DATA_KEY_BYTES]);
    void *ctx;
} sl_key_provider;

/* Write a new random 256-bit master key, hex, to a new file (0600; fails
** with SL_EINUSE if it exists). */
SL_API int sl_keyfile_create(const char *path);
/* A provider over a key file: AES-256-GCM key wrapping under the file's
** master key, the key id bound as associated data.  Free with
** sl_keyfile_provider_close (it wipes the master key). */
SL_API int sl_keyfile_provider_open(sl_key_provider **out, const char *path);
SL_API void sl_keyfile_provider_close(sl_key_provider *p);

/* A report callback: damage found while opening or reading (code is
** SL_ECORRUPT or SL_EIO) with a message naming shard, segment and offset.
** Called from the thread that found it; it must not call back into the
** stream. */
typedef void (*sl_report_fn)(void *ctx, int code, const char *message);

/* ---- Stream -------------------------------------------------------------
** A stream lives in <root>/<name>/: a manifest (configuration, shard map),
** a sequence-reservation file, a lock file, a wake-up file and one directory
** per shard holding its segment files.  Files are created 0600 and
** directories 0700. */

typedef enum sl_stream_mode {
    SL_STREAM_MODE_DEFAULT = 0,      /* PROVISIONED */
    SL_STREAM_MODE_PROVISIONED = 1,
    SL_STREAM_MODE_ON_DEMAND = 2
} sl_stream_mode;

typedef enum sl_encryption {
    SL_ENCRYPTION_DEFAULT = 0,       /* NONE */
    SL_ENCRYPTION_NONE = 1,
    SL_ENCRYPTION_KMS = 2            /* data keys under a key provider */
} sl_encryption;

typedef enum sl_durability {
    SL_DURABILITY_DEFAULT = 0,       /* create: INTERVAL; open: as stored */
    SL_DURABILITY_NONE = 1,
    SL_DURABILITY_INTERVAL = 2,
    SL_DURABILITY_ALWAYS = 3
} sl_durability;

/* What a stream does when its size cap is reached (see RETENTION). */
typedef enum sl_cap_policy {
    SL_CAP_DEFAULT = 0,              /* DROP_OLDEST */
    SL_CAP_DROP_OLDEST = 1,          /* delete the oldest sealed segments */
    SL_CAP_REFUSE = 2                /* fail puts with SL_ENOSPC until space
                                        frees (retention, a higher cap) */
} sl_cap_policy;

/* Key compaction (Kafka's cleanup.policy=compact), see RETENTION. */
typedef enum sl_compaction {
    SL_COMPACTION_DEFAULT = 0,       /* NONE */
    SL_COMPACTION_NONE = 1,
    SL_COMPACTION_KEY = 2            /* sealed segments keep only the newest
                                        record of each partition key */
} sl_compaction;

/* Tags: keys 1..128 and values 0..256 characters of valid UTF-8 without
** control characters; keys are unique and may not start with "aws:". */
typedef struct sl_tag {
    const char *key;
    const char *value;               /* NULL = "" */
} sl_tag;

/* The fields of Terraform's aws_kinesis_stream, plus storage settings.
** Zero fields take the defaults noted.  Only read during the call. */
#define SL_STREAM_CONFIG_VERSION 2
typedef struct sl_stream_config {
    uint32_t version;                /* SL_STREAM_CONFIG_VERSION */
    const char *name;                /* [a-zA-Z0-9_.-]{1,128}; required */
    uint32_t shard_count;            /* 1..SL_SHARDS_MAX; 0: 1 (4 on-demand) */
    uint32_t retention_hours;        /* 24..8760; 0: 24 */
    sl_stream_mode stream_mode;
    sl_encryption encryption_type;
    const char *kms_key_id;          /* required with KMS; 1..2048 chars */
    const sl_tag *tags;              /* up to 50, unique keys */
    size_t tag_count;
    uint32_t max_record_size_kib;    /* 1024..10240; 0: 1024 */
    uint64_t segment_bytes;          /* 64 KiB..4 GiB; 0: 64 MiB */
    sl_durability durability;        /* 0: INTERVAL */
    uint32_t sync_interval_ms;       /* INTERVAL period; 0: 1000 */
    /* version 2 */
    uint64_t size_cap_bytes;         /* 0: none; else >= 2 segments/shard */
    sl_cap_policy size_cap_policy;
    uint32_t cold_after_hours;       /* sealed segments this old are stored
                                        zstd-compressed; 0: never */
    sl_compaction compaction;
} sl_stream_config;
#define SL_STREAM_CONFIG_INIT {SL_STREAM_CONFIG_VERSION, NULL, 0, 0, \
    SL_STREAM_MODE_DEFAULT, SL_ENCRYPTION_DEFAULT, NULL, NULL, 0, 0, 0, \
    SL_DURABILITY_DEFAULT, 0, 0, SL_CAP_DEFAULT, 0, SL_COMPACTION_DEFAULT}

/* SL_OPEN_READONLY: follow a writer; never modify the stream's data.
**   Consumer registrations and checkpoints (the consumers/ directory) may
**   still be written, so that a consumer process can checkpoint.
** SL_OPEN_KDS_PROFILE: Kinesis' quirks, for code that will run against
**   Kinesis: iterators expire 5 minutes (stream clock) after they were
**   opened or last read (SL_EEXPIRED), subscriptions end after 5 minutes
**   (SL_SUB_END_EXPIRED), and rate_mode defaults to SL_RATE_ENFORCE. */
#define SL_OPEN_READONLY 0x1u
#define SL_OPEN_KDS_PROFILE 0x2u

/* Rate accounting (token buckets on the stream clock; see RATE LIMITS). */
typedef enum sl_rate_mode {
    SL_RATE_DEFAULT = 0,             /* OFF; ENFORCE under the KDS profile;
                                        ACCOUNT for ON_DEMAND streams (their
                                        scaling watches the load) */
    SL_RATE_OFF = 1,                 /* no accounting at all */
    SL_RATE_ACCOUNT = 2,             /* count what Kinesis would throttle */
    SL_RATE_ENFORCE = 3              /* fail it with SL_ETHROTTLED */
} sl_rate_mode;

/* Per-stream limits; zero fields take the Kinesis defaults noted. */
#define SL_LIMITS_VERSION 1
typedef struct sl_limits {
    uint32_t version;                /* SL_LIMITS_VERSION */
    uint32_t write_records_per_s;    /* per shard; 0: 1000 */
    uint64_t write_bytes_per_s;      /* per shard, data + key; 0: 1 MiB */
    uint32_t read_records_per_s;     /* shared, per shard; 0: 2000 */
    uint32_t read_calls_per_s;       /* shared, per shard; 0: 5 */
    uint64_t read_bytes_per_s;       /* shared, per shard; 0: 2 MiB */
    uint64_t dedicated_bytes_per_s;  /* per dedicated consumer per shard;
                                        0: 2 MiB */
    uint32_t read_penalty_ms;        /* after a read that returned
                                        SL_GET_BYTES_MAX; 0: 5000 */
    uint32_t max_consumers;          /* per stream; 0: 20 */
    uint32_t on_demand_window_s;     /* ON_DEMAND streams: a shard over its
                                        write capacity this many whole
                                        seconds in a row is split; 0: 60 */
} sl_limits;
#define SL_LIMITS_INIT {SL_LIMITS_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0}

#define SL_OPEN_OPTS_VERSION 3
typedef struct sl_open_opts {
    uint32_t version;                /* SL_OPEN_OPTS_VERSION (1 accepted:
                                        the fields up to report_ctx) */
    uint32_t flags;                  /* SL_OPEN_... */
    sl_durability durability;        /* 0: as stored in the manifest */
    uint32_t sync_interval_ms;       /* 0: as stored */
    const sl_clock *clock;           /* NULL: real time.  Copied; its ctx is
                                        borrowed until sl_stream_close */
    sl_report_fn report;             /* NULL: damage is only counted */
    void *report_ctx;
    /* version 2 */
    sl_rate_mode rate_mode;          /* 0: see sl_rate_mode */
    const sl_limits *limits;         /* NULL: defaults.  Copied */
    /* version 3 */
    const sl_key_provider *keys;     /* required by streams with encryption
                                        KMS (create and open): SL_EKEY
                                        without it.  Copied; its ctx is
                                        borrowed until sl_stream_close */
} sl_open_opts;
#define SL_OPEN_OPTS_INIT {SL_OPEN_OPTS_VERSION, 0, SL_DURABILITY_DEFAULT, 0, \
    NULL, NULL, NULL, SL_RATE_DEFAULT, NULL, NULL}

/* Create the stream cfg->name under root (root is created if missing, one
** level) and, if out is not NULL, open it for writing.  Creation is atomic:
** the stream appears whole or not at all.
** @return 0, SL_EVALIDATION / SL_EINVAL / SL_ELIMIT (a field breaks a rule;
**         the message names it and the limit), SL_EINUSE (a stream of that
**         name exists), SL_ENOTFOUND (root's parent is missing), SL_EIO,
**         SL_ENOSPC.
** Thread-safety: any thread. */
SL_API int sl_stream_create(sl_stream **out, const char *root,
                            const sl_stream_config *cfg,
                            const sl_open_opts *opts);

/* Open the stream <root>/<name>.  Read-write opens take the stream's writer
** lock (one per stream across all processes) and recover from a crash:
** the active segments' unsynced tails are validated and a torn tail is cut.
** Read-only opens take no lock and follow a writer in another process.
** Opening reads the newest segment of each shard; older segments are read
** when first used (a seek, a read, a describe), so opening costs the same
** whatever the stream's size.  Damage found in segments is reported through
** opts->report -- at open for the newest, on first use for the others --
** and does not fail the open.  What does: a damaged manifest, a missing
** shard directory or (writers) SEQ file, and a newest segment written in a
** format version this library does not know (an older one fails the read
** that reaches it; either way the file is left untouched).
** @param[out] out  the handle; NULL on failure
** @param opts      NULL for defaults; only read during the call
** @return 0, SL_ENOTFOUND, SL_ELOCKED (another writer holds the stream),
**         SL_ECORRUPT (manifest damaged), SL_EVALIDATION, SL_EIO, SL_ENOSPC,
**         SL_ENOMEM.  sl_errmsg(NULL) has the detail. */
SL_API int sl_stream_open(sl_stream **out, const char *root, const char *name,
                          const sl_open_opts *opts);

/* Close a stream: stop its background thread, make everything durable if
** the durability mode is INTERVAL or ALWAYS, unmap, release the lock.
** Accepts NULL.  Returns SL_EINUSE (and changes nothing; sl_errmsg(s) says
** why) while producers or iterators are open on it; SL_EIO if the final
** sync failed -- the handle is freed all the same, so that detail is in
** sl_errmsg(NULL). */
SL_API int sl_stream_close(sl_stream *s);

/* Make every committed record durable now, whatever the durability mode.
** @return 0, SL_EIO (the stream is then failed: later writes return
**         SL_EIO), SL_EREADONLY. */
SL_API int sl_stream_sync(sl_stream *s);

/* Delete the stream <root>/<name> and all its records.  Fails with
** SL_ELOCKED while a writer (in any process) has it open.  Read-only
** followers keep what they have mapped. */
SL_API int sl_stream_delete(const char *root, const char *name);

/* The names of the streams under root, sorted.  Free with
** sl_name_list_free. */
typedef struct sl_name_list {
    size_t count;
    char **names;
} sl_name_list;
SL_API int sl_stream_list(sl_name_list **out, const char *root);
SL_API void sl_name_list_free(sl_name_list *list);

/* One shard, as ListShards / DescribeStream show it. */
typedef struct sl_shard_info {
    char shard_id[SL_SHARD_ID_LEN + 1];
    char parent_shard_id[SL_SHARD_ID_LEN + 1];          /* "" if none */
    char adjacent_parent_shard_id[SL_SHARD_ID_LEN + 1]; /* "" if none */
    char starting_hash_key[SL_HASH_KEY_DIGITS_MAX + 1]; /* decimal */
    char ending_hash_key[SL_HASH_KEY_DIGITS_MAX + 1];   /* inclusive */
    uint64_t starting_sequence;      /* every record's sequence is >= this */
    uint64_t ending_sequence;        /* 0 while the shard is open */
    int open;                        /* 1 OPEN, 0 CLOSED */
    uint32_t index;                  /* N of shardId-N */
    uint64_t records;                /* committed records on disk now */
    uint64_t bytes;                  /* their data + key bytes */
} sl_shard_info;

/* DescribeStream: the configuration and every shard.  Everything is owned by
** the description; free it with sl_stream_desc_free. */
typedef struct sl_stream_desc {
    char stream_name[SL_STREAM_NAME_MAX + 1];
    const char *stream_status;       /* "ACTIVE" */
    sl_stream_mode stream_mode;
    uint32_t retention_hours;
    sl_encryption encryption_type;
    const char *kms_key_id;          /* "" if none */
    uint32_t max_record_size_kib;
    uint64_t segment_bytes;
    uint64_t size_cap_bytes;         /* 0: none */
    sl_cap_policy size_cap_policy;
    uint32_t cold_after_hours;       /* 0: never */
    sl_compaction compaction;
    uint64_t disk_bytes;             /* segment files on disk now */
    sl_durability durability;        /* in effect for this handle */
    uint32_t sync_interval_ms;
    int64_t created_ms;
    size_t tag_count;
    const sl_tag *tags;
    size_t open_shard_count;
    size_t shard_count;              /* open and closed */
    const sl_shard_info *shards;     /* by index */
} sl_stream_desc;
SL_API int sl_stream_describe(sl_stream_desc **out, sl_stream *s);
SL_API void sl_stream_desc_free(sl_stream_desc *d);

/* ListShards: the same shard entries, without the configuration. */
typedef struct sl_shard_list {
    size_t count;
    sl_shard_info *shards;
} sl_shard_list;
SL_API int sl_stream_list_shards(sl_shard_list **out, sl_stream *s);
SL_API void sl_shard_list_free(sl_shard_list *list);

/* ---- Retention and maintenance -------------------------------------------
** RETENTION.  A record expires once the stream's clock is retention_hours
** past its arrival time (now - arrival_ms >= retention): from then on no
** reader sees it.  TRIM_HORIZON starts after the expired records; an
** iterator whose next record expired gets SL_ETRIMMED from sl_iter_read
** (open a new one, e.g. TRIM_HORIZON); AT/AFTER_SEQUENCE_NUMBER of an
** expired record and a checkpoint followed by expired records report
** SL_ETRIMMED; AT_TIMESTAMP older than the horizon starts at it.  Raising
** the period does not revive what had expired; lowering it takes effect at
** once.  Sequence numbers are never reused, whatever was removed.
** Maintenance (sl_stream_maintain, or its thread) deletes the segment files
** whose records have all expired -- sealing an active segment first once
** all of its records have -- and enforces the size cap.  Readers keep the
** records they hold: a segment is unmapped when its last reader moves on.
** SIZE CAP.  size_cap_bytes bounds the stream's segment files on disk.
** Usage may pass it by at most one segment per shard (a segment is
** allocated whole).  DROP_OLDEST deletes the oldest sealed segments, by
** arrival time, across shards, as new ones are needed (so a stalled
** consumer may find its position trimmed); REFUSE fails a put that needs
** a new segment with SL_ENOSPC until maintenance frees space.
** KEY COMPACTION keeps, in sealed segments, only the newest record of each
** partition key (newer ones may be anywhere later in the shard, the active
** segment included), with their sequence numbers and order; a reader sees
** fewer records, never a changed one.  COLD segments (sealed ones older
** than cold_after_hours by their last record) are rewritten as zstd blocks
** and read through the same iterators (decoded into the iterator's own
** buffer).  Every rewrite is a new file, synced, renamed over the old one,
** and the directory synced: a crash leaves the old or the new file whole,
** and a reader holding the old one keeps it until it moves on. */

/* Increase/DecreaseStreamRetentionPeriod: 24..8760 hours; increase refuses
** a smaller value and decrease a larger one (SL_EINVAL), as Kinesis does.
** Durable (the manifest is rewritten) and immediate. */
SL_API int sl_stream_increase_retention(sl_stream *s, uint32_t hours);
SL_API int sl_stream_decrease_retention(sl_stream *s, uint32_t hours);
/* Set or clear (bytes 0) the size cap; durable and immediate. */
SL_API int sl_stream_set_size_cap(sl_stream *s, uint64_t bytes,
                                  sl_cap_policy policy);
/* Cold storage after `hours` (0: never; at most 8760) and the compaction
** policy; durable, applied by the next maintenance. */
SL_API int sl_stream_set_cold_after(sl_stream *s, uint32_t hours);
SL_API int sl_stream_set_compaction(sl_stream *s, sl_compaction policy);

/* ENCRYPTION AT REST.  A stream with encryption KMS encrypts each record's
** partition key and data with AES-256-GCM under its current data key; the
** sequence number, arrival time and lengths stay in clear and are
** authenticated with it (with the stream and shard), so a changed bit is
** SL_ECORRUPT, never data.  Data keys are random, made by the library, and
** stored only wrapped by the key provider of sl_open_opts.keys under the
** stream's KMS key id.  Opening an encrypting stream needs the provider
** (SL_EKEY without it, or if it cannot unwrap the keys: a wrong master
** key); a stream that stopped encrypting opens without one, and reading
** its encrypted records then fails with SL_EKEY.  Reads return decrypted
** copies (in the iterator's buffer, valid as views are).  The record format
** and the nonce scheme are in the README.
**
** StartStreamEncryption: new records are encrypted under a fresh data key
** (a no-op if already encrypting under this key id).  A different key id
** rewraps every existing data key under it.  Needs the provider. */
SL_API int sl_stream_start_encryption(sl_stream *s, const char *kms_key_id);
/* StopStreamEncryption: new records are written in clear; records already
** encrypted stay readable (with the provider). */
SL_API int sl_stream_stop_encryption(sl_stream *s);
/* Rotate: a fresh data key for new records; older ones keep theirs.  At
** most 1024 data keys per stream (SL_ELIMIT).  SL_EINVAL if the stream is
** not encrypting. */
SL_API int sl_stream_rotate_key(sl_stream *s);

typedef struct sl_maint_stats {
    uint64_t segments_deleted;       /* expired, or dropped for the cap */
    uint64_t segments_dropped;       /* of which for the cap */
    uint64_t segments_sealed;        /* active segments sealed, expired */
    uint64_t bytes_freed;
    uint64_t damaged_skipped;        /* segments that could not be judged or
                                        rewritten (reported, left as they are) */
    uint64_t segments_compacted;     /* rewritten by key compaction */
    uint64_t records_compacted;      /* older records of a key removed */
    uint64_t segments_cold;          /* rewritten zstd-compressed */
    uint64_t cold_bytes_before;      /* their size before ... */
    uint64_t cold_bytes_after;       /* ... and after */
    uint64_t shards_split;           /* ON_DEMAND: hot shards split */
    uint64_t disk_bytes;             /* segment files on disk afterwards */
} sl_maint_stats;
/* Called between steps; return non-zero to stop early. */
typedef int (*sl_maint_fn)(void *ctx, const sl_maint_stats *st);

/* Run maintenance on the caller's thread for at most budget_ms (real
** time; <0 no limit), one segment at a time, never holding a lock the
** append path needs for longer than a list update.  A writer handle only.
** @return 0 done, 1 the budget (or fn) stopped it with work left, or
**         SL_EREADONLY, SL_EIO.  *out (may be NULL) counts this call. */
SL_API int sl_stream_maintain(sl_stream *s, int budget_ms, sl_maint_fn fn,
                              void *ctx, sl_maint_stats *out);
/* A thread that runs maintenance every period_ms (real time; 0: 1000). */
SL_API int sl_stream_maintain_start(sl_stream *s, uint32_t period_ms);
SL_API int sl_stream_maintain_stop(sl_stream *s);

/* ---- Resharding -----------------------------------------------------------
** SplitShard, MergeShards and UpdateShardCount (UNIFORM_SCALING).  Parents
** close with an ending sequence number; children take the next shard
** indexes and name their parents; routing switches atomically, so a put
** racing with a reshard lands in exactly one open shard, once.  The shard
** map is replaced in one atomic manifest write: a crash leaves the old map
** or the new one.  Children's sequence numbers are above their parents',
** so per-key order holds for a reader that reads a parent to its end
** (sl_read_result.shard_end) before its children.  Provisioned streams
** only (SL_EVALIDATION on ON_DEMAND, as Kinesis).  Writers only. */

/* Split shard_id at new_starting_hash_key (decimal; greater than the
** shard's starting hash key, at most its ending one): records hashing
** below it go to the first child, the others to the second.
** @return 0, SL_ENOTFOUND, SL_EINVAL (closed shard, key outside the
**         range), SL_EVALIDATION, SL_ELIMIT, SL_EIO. */
SL_API int sl_stream_split_shard(sl_stream *s, const char *shard_id,
                                 const char *new_starting_hash_key);
/* Merge two adjacent open shards (either order); the child's
** ParentShardId is shard_id, its AdjacentParentShardId adjacent_shard_id.
** @return 0, SL_ENOTFOUND, SL_EINVAL (closed, not adjacent), ... */
SL_API int sl_stream_merge_shards(sl_stream *s, const char *shard_id,
                                  const char *adjacent_shard_id);
/* Scale to `target` open shards covering the key space in even ranges,
** through splits and merges (between half and twice the open shards).
** @return 0, SL_EINVAL (target), SL_EVALIDATION, SL_ELIMIT, SL_EIO. */
SL_API int sl_stream_update_shard_count(sl_stream *s, uint32_t target);

/* ---- Hash keys and sequence numbers -------------------------------------
** A hash key is a 128-bit unsigned integer, here as 16 big-endian bytes. */

/* MD5(partition_key) as Kinesis computes it. */
SL_API int sl_hash_partition_key(uint8_t out[16], const char *partition_key);
/* Parse an explicit hash key: decimal, pattern 0|([1-9][0-9]{0,38}), at most
** 2^128-1.  SL_EVALIDATION for a pattern failure, SL_EINVAL out of range. */
SL_API int sl_hash_key_parse(uint8_t out[16], const char *decimal);
/* Format a hash key as decimal; buf holds at least 40 bytes. */
SL_API char *sl_hash_key_format(char *buf, const uint8_t key[16]);
/* Format / parse a sequence number as a decimal string (Kinesis pattern
** 0|([1-9][0-9]*)); buf holds at least SL_SEQ_STR_MAX bytes. */
SL_API char *sl_seq_format(char *buf, uint64_t seq);
SL_API int sl_seq_parse(uint64_t *out, const char *decimal);

/* ---- Producer -----------------------------------------------------------
** A producer appends records.  It keeps per-thread state (a reusable MD5
** context and the per-entry error texts of its last call), so use one per
** thread. */
SL_API int sl_producer_open(sl_producer **out, sl_stream *s);
SL_API void sl_producer_close(sl_producer *p);           /* accepts NULL */

typedef struct sl_put_entry {
    const char *partition_key;       /* required: valid UTF-8, 1..256 UTF-16
                                        code units (so 256..768 bytes) */
    const void *data;                /* may be NULL when data_len is 0 */
    size_t data_len;                 /* data_len + key bytes <= max record */
    const char *explicit_hash_key;   /* NULL, or decimal; overrides the MD5 */
} sl_put_entry;

typedef struct sl_put_result {
    int error;                       /* 0 or SL_E...; per entry */
    uint64_t sequence;               /* assigned sequence number */
    char shard_id[SL_SHARD_ID_LEN + 1];
    uint32_t shard_index;
    const char *error_message;       /* "" on success; valid until the next
                                        call on this producer */
    int64_t retry_after_ms;          /* SL_ETHROTTLED: when the shard's
                                        budget allows this entry (stream
                                        clock ms from now); else 0 */
} sl_put_result;

/* PutRecord.  On success the record is committed (visible to readers) and,
** in ALWAYS mode, durable.  res may be NULL.
** @return 0, SL_EVALIDATION / SL_EINVAL (bad entry; the message names the
**         field and the limit), SL_ENOSPC (a new segment could not be
**         preallocated; earlier records are intact), SL_EIO, SL_EREADONLY. */
SL_API int sl_producer_put(sl_producer *p, const sl_put_entry *e,
                           sl_put_result *res);

/* Shorthand for sl_producer_put with a NUL-free key and no explicit hash
** key.  seq_out may be NULL. */
SL_API int sl_put(sl_producer *p, const char *partition_key, const void *data,
                  size_t data_len, uint64_t *seq_out);

/* PutRecords: 1..500 entries, at most 10 MiB of data and keys in all.  Each
** entry succeeds or fails alone; results[i] belongs to entries[i].  Entries
** for one shard are appended in request order under one lock acquisition.
** @param failed_out  number of failed entries (FailedRecordCount); may be NULL
** @return 0 if the request was well-formed (entries may still fail),
**         SL_EVALIDATION for a bad request (count or total size), or
**         SL_EREADONLY / SL_EIO for a stream that cannot take writes. */
SL_API int sl_producer_put_batch(sl_producer *p, const sl_put_entry *entries,
                                 size_t n, sl_put_result *results,
                                 size_t *failed_out);

/* ---- Iterator -----------------------------------------------------------
** A read position in one shard (GetShardIterator + GetRecords). */
typedef enum sl_iter_type {
    SL_ITER_AT_SEQUENCE_NUMBER = 1,  /* arg: a sequence number in the shard */
    SL_ITER_AFTER_SEQUENCE_NUMBER = 2,
    SL_ITER_TRIM_HORIZON = 3,        /* the oldest record; arg ignored */
    SL_ITER_LATEST = 4,              /* just after the newest; arg ignored */
    SL_ITER_AT_TIMESTAMP = 5         /* arg: ms since epoch (int64 as u64);
                                        the first record that arrived at or
                                        after it, or the tip if none */
} sl_iter_type;

/* Position an iterator in shard_id ("shardId-000000000003").  Seeking by
** sequence number or time costs O(log n) in the shard's records.
** @return 0, SL_ENOTFOUND (no such shard), SL_EVALIDATION (bad type),
**         SL_EINVAL (the sequence number is not a record of this shard, as
**         Kinesis rejects a number from another shard).  On a stream with
**         SL_COMPACTION_KEY, the number of a record compaction removed from
**         a sealed segment is still a position: the read starts at the next
**         record there. */
SL_API int sl_iter_open(sl_iter **out, sl_stream *s, const char *shard_id,
                        sl_iter_type type, uint64_t arg);
SL_API void sl_iter_close(sl_iter *it);                  /* accepts NULL */

/* A zero-copy view of one record.  The pointers are into the segment mapping
** and are valid until the next sl_iter_read or sl_iter_close on the iterator
** that returned them. key is NOT NUL-terminated. */
typedef struct sl_record {
    const char *partition_key;
    size_t key_len;
    const void *data;
    size_t data_len;
    uint64_t sequence;
    int64_t arrival_ms;              /* ApproximateArrivalTimestamp */
} sl_record;

typedef struct sl_read_result {
    size_t count;                    /* records stored in recs[] */
    int64_t millis_behind_latest;    /* 0 when caught up */
    uint64_t last_sequence;          /* the iterator's position: the last
                                        record it returned (or that it was
                                        opened after; 0 if none).  Resume
                                        with AFTER_SEQUENCE_NUMBER. */
    int64_t retry_after_ms;          /* SL_ETHROTTLED: ms until a read may
                                        succeed; else 0 */
    /* a closed shard read to its end: no record will ever follow; read
    ** its children (NextShardIterator null, ChildShards) */
    int shard_end;
    size_t child_count;
    char child_shard_ids[2][SL_SHARD_ID_LEN + 1];
} sl_read_result;

/* GetRecords: up to `limit` (1..10000) records and at most 10 MiB.  A read
** steps across segment boundaries itself, so zero records means the
** iterator has caught up with everything committed when it looked (more
** than Kinesis promises); sl_iter_wait then blocks until there is more.
** A corrupt record is never returned: the call that meets it returns
** SL_ECORRUPT with the shard, segment and offset in sl_errmsg(it), after
** moving the iterator past the damage, so the next call goes on reading.
** Every read is one call on the shard's shared read budget (see RATE
** LIMITS); with SL_RATE_ENFORCE a read beyond it returns SL_ETHROTTLED,
** no records, and res->retry_after_ms.
** @return 0, SL_EVALIDATION (limit), SL_EINVAL, SL_ECORRUPT, SL_EIO,
**         SL_ETHROTTLED, SL_EEXPIRED (KDS profile: unused for 5 minutes, or
**         sl_iter_expire). */
SL_API int sl_iter_read(sl_iter *it, sl_record *recs, size_t limit,
                        sl_read_result *res);

/* Block until the iterator has records to read, or timeout_ms passes
** (real time; <0 waits forever).  Wakes within microseconds of a commit in
** this or another process.
** @return 1 records are ready, 0 timed out, or a negative code. */
SL_API int sl_iter_wait(sl_iter *it, int timeout_ms);

/* Make a concurrent (or the next) sl_iter_wait on `it` return 0 at once,
** e.g. to stop a follower thread.  The one function on an sl_iter that may
** be called from another thread while the iterator is in use. */
SL_API void sl_iter_cancel_wait(sl_iter *it);

/* A lineage reader reads a whole stream, every shard, each parent to its
** end before any of its children, so per-partition-key order holds across
** any sequence of splits and merges.  Shards a reshard adds while it reads
** are picked up.  With a consumer, each shard resumes after the consumer's
** checkpoint (a shard checkpointed at its ending sequence number counts as
** read) and the reads count as the consumer's; checkpointing is the
** caller's, per shard, as with iterators.  Used by one thread at a time. */
typedef struct sl_lreader sl_lreader;
/* start: SL_ITER_TRIM_HORIZON (everything), SL_ITER_LATEST (what comes
** next: closed shards count as read) or SL_ITER_AT_TIMESTAMP (arg ms; for
** every shard with no parent left to read). */
SL_API int sl_lreader_open(sl_lreader **out, sl_stream *s, sl_consumer *c,
                           sl_iter_type start, uint64_t arg);
/* Up to `limit` records of one shard, named in shard_id; views valid until
** the next read or close.  0 records: nothing to read in any readable shard
** now (res->shard_end is not used).  Errors as sl_iter_read (SL_ETRIMMED:
** the shard named was trimmed under the reader; it is skipped after). */
SL_API int sl_lreader_read(sl_lreader *lr, sl_record *recs, size_t limit,
                           sl_read_result *res, char shard_id[SL_SHARD_ID_LEN + 1]);
SL_API void sl_lreader_close(sl_lreader *lr);       /* accepts NULL */

/* ---- Rate limits ----------------------------------------------------------
** Token buckets per shard, on the stream's clock, refilled continuously and
** holding at most one second of their rate (so a shard takes exactly 1,000
** records in a burst, and one more each millisecond after that).  A cost is
** taken when the bucket holds it; a single record larger than a whole
** bucket is let through when the bucket is full and leaves it in debt, as
** Kinesis lets large records burst and then refill.
**   writes         records/s and bytes/s (data + partition key) per shard,
**                  PutRecord and PutRecords together.  In a batch only the
**                  entries over the budget fail (SL_ETHROTTLED, with
**                  retry_after_ms); the others land.
**   shared reads   per shard, shared by every iterator read and every
**                  shared consumer's subscription: calls/s, records/s and
**                  bytes/s.  A read may start when a call token is left and
**                  the record and byte buckets are not in debt; what it
**                  returns is then charged (possibly into debt: a 10 MiB
**                  read is allowed and takes five seconds to repay).  A read
**                  that returned SL_GET_BYTES_MAX bytes is followed by
**                  read_penalty_ms in which every read is throttled.
**   dedicated      per dedicated consumer per shard: bytes/s only.
** SL_RATE_ACCOUNT takes the same decisions but only counts them
** (put_throttled, read_throttled); SL_RATE_ENFORCE acts on them, and the
** read scheduler then paces subscriptions to their budgets.  Counters are
** kept in every mode but OFF, since the stream was opened, by this handle. */
typedef struct sl_shard_counters {
    uint64_t records_in, bytes_in;   /* accepted puts (bytes: data + key) */
    uint64_t put_throttled;          /* entries over the write budget */
    uint64_t reads;                  /* read calls on the shared budget */
    uint64_t records_out, bytes_out; /* all reads, shared and dedicated */
    uint64_t read_throttled;         /* shared reads over the budget */
    uint32_t hot_seconds;            /* whole seconds in a row over the
                                        write capacity (offered load) */
    int64_t iterator_age_ms;         /* millis_behind_latest of the shard's
                                        latest read (shared or dedicated) */
} sl_shard_counters;
/* @return 0, SL_ENOTFOUND (no such shard), SL_EINVAL. */
SL_API int sl_shard_counters_get(sl_stream *s, const char *shard_id,
                                 sl_shard_counters *out);

/* ---- Fault injection (tests) ---------------------------------------------
** Deterministic failures, so that code written for Kinesis can be tested
** against throttling and expiry.  Faults belong to the stream handle. */
typedef enum sl_fault_kind {
    SL_FAULT_PUT_NTH = 1,            /* the nth put entry from now fails */
    SL_FAULT_PUT_KEY = 2,            /* every entry with this partition key
                                        fails, until sl_fault_clear */
    SL_FAULT_READ_NTH = 3            /* the nth read from now fails (iterator
                                        reads and subscription reads) */
} sl_fault_kind;
#define SL_FAULT_VERSION 1
typedef struct sl_fault {
    uint32_t version;                /* SL_FAULT_VERSION */
    sl_fault_kind kind;
    uint64_t nth;                    /* 1: the very next one */
    const char *partition_key;       /* SL_FAULT_PUT_KEY; copied */
    int error;                       /* 0: SL_ETHROTTLED; or any SL_E... */
} sl_fault;
/* Each put entry of a batch counts as one put.  Up to 64 faults at once.
** @return 0, SL_EINVAL, SL_ELIMIT. */
SL_API int sl_fault_inject(sl_stream *s, const sl_fault *f);
SL_API void sl_fault_clear(sl_stream *s);
/* Expire an iterator now: its next read returns SL_EEXPIRED (and so does
** every later one; open a new iterator, e.g. AFTER_SEQUENCE_NUMBER). */
SL_API int sl_iter_expire(sl_iter *it);

/* ---- Consumers -------------------------------------------------------------
** RegisterStreamConsumer, with durable checkpoints.  A consumer is a name
** (1..128 of [a-zA-Z0-9_.-], unique per stream) and a type:
**   SHARED     polls: iterator reads, or subscriptions through the read
**              scheduler, all on each shard's shared read budget.
**   DEDICATED  enhanced fan-out: subscriptions with their own read budget
**              per shard (sl_limits.dedicated_bytes_per_s).
** Registrations and checkpoints live in <stream>/consumers/ and survive
** restarts.  At most sl_limits.max_consumers (20) per stream. */
typedef enum sl_consumer_type {
    SL_CONSUMER_SHARED = 1,
    SL_CONSUMER_DEDICATED = 2
} sl_consumer_type;

/* @return 0, SL_EVALIDATION (name, type), SL_EINUSE (the name exists),
**         SL_ELIMIT (too many consumers), SL_EIO, SL_ENOSPC. */
SL_API int sl_consumer_register(sl_stream *s, const char *name,
                                sl_consumer_type type);
/* Remove a consumer and its checkpoints.
** @return 0, SL_ENOTFOUND, SL_EINUSE (open in this process), SL_EIO. */
SL_API int sl_consumer_deregister(sl_stream *s, const char *name);

typedef struct sl_consumer_info {
    char name[SL_STREAM_NAME_MAX + 1];
    sl_consumer_type type;
    int64_t created_ms;              /* ConsumerCreationTimestamp */
    uint64_t id;                     /* random; new for every registration */
} sl_consumer_info;
typedef struct sl_consumer_list {
    size_t count;
    sl_consumer_info *consumers;     /* sorted by name */
} sl_consumer_list;
SL_API int sl_consumer_list_get(sl_consumer_list **out, sl_stream *s);
SL_API void sl_consumer_list_free(sl_consumer_list *list);

/* Open a registered consumer (checkpoints, subscriptions, counters).
** @return 0, SL_ENOTFOUND, SL_ECORRUPT, SL_EIO. */
SL_API int sl_consumer_open(sl_consumer **out, sl_stream *s, const char *name);
/* Accepts NULL.  Its subscriptions must be gone (SL_EINUSE otherwise). */
SL_API int sl_consumer_close(sl_consumer *c);
SL_API const sl_consumer_info *sl_consumer_get_info(const sl_consumer *c);

/* Checkpoint: record durably and atomically that the consumer has
** processed shard_id up to and including `sequence`.  The record is made
** durable first (a checkpoint is never durable before the data it points
** to).  A checkpoint may move backwards (reprocessing is the caller's
** choice).  Thread-safe; one checkpoint file write + fdatasync.
** @return 0, SL_ENOTFOUND (shard), SL_EINVAL (not a record of the shard:
**         e.g. past its end), SL_EIO, SL_ENOSPC. */
SL_API int sl_consumer_checkpoint(sl_consumer *c, const char *shard_id,
                                  uint64_t sequence);
/* The latest checkpoint of shard_id.
** @return 0, SL_ENOTFOUND (none yet), SL_ETRIMMED (it points into data
**         retention has removed; *sequence is still set). */
SL_API int sl_consumer_get_checkpoint(sl_consumer *c, const char *shard_id,
                                      uint64_t *sequence);
/* An iterator that resumes after the consumer's checkpoint of shard_id, or,
** without one, starts at (type, arg).  Its reads count as this consumer's.
** @return as sl_iter_open, and SL_ETRIMMED (as sl_consumer_get_checkpoint;
**         no iterator is made: decide, e.g. TRIM_HORIZON, and open one). */
SL_API int sl_consumer_iter_open(sl_iter **out, sl_consumer *c,
                                 const char *shard_id, sl_iter_type type,
                                 uint64_t arg);

typedef struct sl_consumer_counters {
    uint64_t reads;                  /* read calls (iterator or subscription) */
    uint64_t records_out, bytes_out;
    uint64_t read_throttled;         /* reads over the budget (ACCOUNT mode:
                                        would have been) */
    uint64_t deliveries;             /* subscription deliveries */
    int64_t iterator_age_ms;         /* millis_behind_latest of its last read */
} sl_consumer_counters;
/* This process's counters for the consumer on one shard since it opened. */
SL_API int sl_consumer_counters_get(sl_consumer *c, const char *shard_id,
                                    sl_consumer_counters *out);

/* ---- The read scheduler ----------------------------------------------------
** One object decides who reads next, for every subscription of a stream:
**   - a DEDICATED consumer's subscription (SubscribeToShard) reads on its
**     own budget, whatever else reads the shard;
**   - SHARED consumers' subscriptions (a polling loop run for them) share
**     the shard's shared read budget: each turn is one read call, given to
**     the subscription that has received the fewest bytes so far among
**     those with records waiting, so a greedy consumer (big batches, fast
**     handler) cannot starve the others: any two backlogged shared
**     consumers' totals differ by at most one batch.  A turn reads at most
**     batch_max records and a fair quantum of bytes (read_bytes_per_s /
**     read_calls_per_s, 400 KiB by default), so no consumer's turn sets off
**     the 10 MiB penalty for the others.
** Records are delivered in order per shard, each exactly once per
** subscription while the process lives.  Budgets pace deliveries only in
** SL_RATE_ENFORCE mode; otherwise records are delivered as they come.
**
** The host drives the scheduler (sl_sched_dispatch) or starts its thread
** (sl_sched_start), not both at once.  The order of deliveries is a
** function of the records and the clock alone, so under a virtual clock
** both deliver the same sequence.  A scheduler waiting for records wakes
** within microseconds of a commit (this or another process), and at once
** when a virtual clock is advanced. */

/* Why a subscription ended (sl_delivery.end). */
enum {
    SL_SUB_END_NONE = 0,             /* it goes on */
    SL_SUB_END_EXPIRED = 1,          /* KDS profile: 5 minutes passed */
    SL_SUB_END_SHARD_END = 2,        /* a closed shard was read to its end */
    SL_SUB_END_ERROR = 3             /* a read failed; `error` says why */
};

typedef struct sl_delivery {
    const char *consumer;            /* its name */
    const char *shard_id;
    const sl_record *records;        /* valid during the call only */
    size_t count;                    /* 0 only with `end` set */
    uint64_t continuation_sequence;  /* the last record delivered (so far):
                                        checkpoint it, or resubscribe with
                                        AFTER_SEQUENCE_NUMBER */
    int64_t millis_behind_latest;
    int end;                         /* SL_SUB_END_...: the last delivery */
    int error;                       /* with SL_SUB_END_ERROR */
    size_t child_count;              /* with SL_SUB_END_SHARD_END: the */
    const char *const *child_shard_ids; /* shards to subscribe to next */
} sl_delivery;

/* A handler, called from the dispatching thread with no library lock held.
** Return 0 to go on, non-zero to end the subscription (the records of this
** delivery count as delivered).  It may put records and checkpoint; it must
** not call sl_sched_dispatch, sl_sched_stop, sl_sched_free or
** sl_unsubscribe. */
typedef int (*sl_deliver_fn)(void *ctx, const sl_delivery *d);

SL_API int sl_sched_new(sl_sched **out, sl_stream *s);
/* Stop the thread, end and free every subscription.  Accepts NULL. */
SL_API void sl_sched_free(sl_sched *sc);

/* Subscribe consumer c to shard_id from (type, arg), delivering at most
** batch_max (1..10000) records per call to fn.  One subscription per
** consumer and shard at a time.
** @return 0, SL_ENOTFOUND (shard), SL_EINUSE (already subscribed),
**         SL_EVALIDATION (batch_max, type), SL_EINVAL (as sl_iter_open). */
SL_API int sl_subscribe(sl_sub **out, sl_sched *sc, sl_consumer *c,
                        const char *shard_id, sl_iter_type type, uint64_t arg,
                        size_t batch_max, sl_deliver_fn fn, void *ctx);
/* End and free a subscription (not from its own handler: return non-zero
** there).  Safe while the scheduler's thread runs.  Accepts NULL. */
SL_API void sl_unsubscribe(sl_sub *sub);

/* Deliver everything that can be delivered now; if nothing could, wait up
** to timeout_ms (real time; <0 forever) for records, budget or a clock
** advance, and deliver what became possible.
** @return the number of deliveries (>= 0), SL_EINUSE (the thread runs, or
**         another thread dispatches). */
SL_API int sl_sched_dispatch(sl_sched *sc, int timeout_ms);
/* Start / stop a thread that dispatches until stopped. */
SL_API int sl_sched_start(sl_sched *sc);
SL_API int sl_sched_stop(sl_sched *sc);
/* Wait until the thread has delivered everything it can deliver now
** (records or budget are what is missing).  For tests with a virtual
** clock: advance, then wait for idle.
** @return 1 idle, 0 timed out (real time), SL_EINVAL (no thread). */
SL_API int sl_sched_wait_idle(sl_sched *sc, int timeout_ms);

/* ---- Metrics, capacity advice and the Kinesis bill (metrics.c) -----------
** Two views of a stream.  The SNAPSHOT (sl_metrics_get) is cheap: this
** handle's counters (what it put and read since it opened, see
** sl_shard_counters), what each shard holds on disk, and how far each
** registered consumer's checkpoint is behind.  The WORKLOAD
** (sl_workload_observe) reads the records themselves -- arrival times and
** sizes, never the data -- so it sees what any writer, in any process, put:
** per-second load per shard, the busiest seconds, what Kinesis would have
** throttled.  Cost and advice are computed from a workload. */

typedef struct sl_shard_metrics {
    char shard_id[SL_SHARD_ID_LEN + 1];
    int open;
    uint64_t records, bytes;         /* on disk now (bytes: data + key) */
    uint64_t segments, disk_bytes;   /* segment files and their sizes */
    sl_shard_counters counters;      /* this handle's, since it opened */
} sl_shard_metrics;

typedef struct sl_consumer_metrics {
    char name[SL_STREAM_NAME_MAX + 1];
    sl_consumer_type type;
    int64_t max_age_ms;              /* over the open shards: the newest
                                        record's arrival minus that of the
                                        record after the checkpoint (0 when
                                        caught up; a shard never
                                        checkpointed counts from its first
                                        record) */
    uint64_t behind_records;         /* records after the checkpoints, all
                                        open shards */
} sl_consumer_metrics;

typedef struct sl_metrics {
    char stream_name[SL_STREAM_NAME_MAX + 1];
    int64_t now_ms;                  /* stream clock */
    size_t shard_count;              /* every shard, open and closed, by index */
    sl_shard_metrics *shards;
    size_t consumer_count;
    sl_consumer_metrics *consumers;
} sl_metrics;
/* @return 0, SL_EINVAL, SL_ENOMEM, SL_EIO, SL_ECORRUPT (a shard that
**         cannot be read past damage). */
SL_API int sl_metrics_get(sl_metrics **out, sl_stream *s);
SL_API void sl_metrics_free(sl_metrics *m);           /* accepts NULL */

/* The snapshot in Prometheus text exposition format (version 0.0.4), for
** a gateway's scraper: shardlog_shard_records_in_total{stream=,shard=}
** and the other counters, shardlog_shard_disk_bytes, shardlog_consumer_
** age_milliseconds, each with HELP and TYPE lines.  As snprintf: writes
** at most cap bytes, a NUL-terminated prefix when it does not fit (buf may
** be NULL with cap 0); *len (may be NULL) receives the length the whole
** text needs (without the NUL).
** @return 0, SL_ELIMIT (cap too small: nothing useful written; call again
**         with *len + 1), SL_EINVAL. */
SL_API int sl_metrics_prometheus(sl_stream *s, char *buf, size_t cap, size_t *len);
/* The same text written to a file descriptor (all of it, or SL_EIO). */
SL_API int sl_metrics_prometheus_fd(sl_stream *s, int fd);

/* A shard's observed load, in whole seconds of arrival time. */
typedef struct sl_shard_load {
    char shard_id[SL_SHARD_ID_LEN + 1];
    int open;
    uint64_t records, bytes;         /* observed (bytes: data + key) */
    uint64_t put_units;              /* PUT payload units: ceil(bytes of a
                                        record / 25,000), at least 1, summed */
    uint64_t ondemand_kib;           /* each record rounded up to 1 KiB */
    int64_t first_ms, last_ms;       /* arrival times observed (0 if none) */
    uint64_t peak_records_s;         /* the busiest whole second */
    uint64_t peak_bytes_s;
    uint64_t over_seconds;           /* seconds over 1,000 records or 1 MiB */
    uint64_t over_records;           /* records beyond the limits in them:
                                        what Kinesis would have throttled */
    int hot;                         /* peak >= 80 % of either limit */
} sl_shard_load;

typedef struct sl_workload {
    int64_t since_ms, until_ms;      /* the window observed (arrival times) */
    double seconds;                  /* its length used for rates (>= 1):
                                        first to last arrival, whole seconds */
    sl_stream_mode mode;
    uint32_t open_shards;
    uint32_t retention_hours;
    uint32_t shared_consumers, dedicated_consumers;   /* registered now */
    uint64_t records, bytes, put_units, ondemand_kib; /* all shards */
    uint64_t peak_records_s, peak_bytes_s;            /* stream-wide second */
    uint64_t shard_peak_records_s, shard_peak_bytes_s;/* max over shards */
    size_t shard_count;
    sl_shard_load *shards;           /* every shard, by index */
} sl_workload;
/* Observe the records that arrived in [since_ms, until_ms] (INT64_MIN /
** INT64_MAX: everything retained; reported as the first and last arrival
** seen), reading headers only (encrypted streams need no key).  Damaged
** records are skipped and reported, as readers do.  fn (may be NULL) is called after each shard with
** the shards done and the total; non-zero stops it (the call returns 1
** with the workload so far in *out).
** @return 0, 1 (stopped by fn), SL_EINVAL, SL_ENOMEM, SL_ECORRUPT. */
typedef int (*sl_progress_fn)(void *ctx, uint64_t done, uint64_t total);
SL_API int sl_workload_observe(sl_workload **out, sl_stream *s, int64_t since_ms,
                               int64_t until_ms, sl_progress_fn fn, void *ctx);
SL_API void sl_workload_free(sl_workload *w);     /* accepts NULL */

/* Prices, us-east-1, in US dollars.  SL_PRICES_INIT holds the defaults of
** KINESIS.md section 2 (third-party sources dated 2023-09-21, checked
** 2026-11; AWS renders its page with JavaScript).  shardlog's CLI reads
** them from an editable JSON file. */
#define SL_PRICES_VERSION 1
typedef struct sl_prices {
    uint32_t version;                /* SL_PRICES_VERSION */
    double shard_hour;               /* provisioned: 0.015 */
    double put_units_million;        /* 0.014 per million 25 KB units */
    double extended_retention_shard_hour;  /* 24 h..7 d: 0.02 */
    double long_retention_gb_month;  /* beyond 7 d: 0.023 per GB-month */
    double efo_consumer_shard_hour;  /* 0.015 */
    double efo_gb;                   /* 0.013 per GB retrieved */
    double ondemand_stream_hour;     /* 0.04 */
    double ondemand_gb_in;           /* 0.08 (records rounded up to 1 KiB) */
    double ondemand_gb_out;          /* 0.04 */
    double hours_per_month;          /* 730 */
} sl_prices;
#define SL_PRICES_INIT {SL_PRICES_VERSION, 0.015, 0.014, 0.02, 0.023, 0.015, \
    0.013, 0.04, 0.08, 0.04, 730}

/* A month of the observed workload (its rates over w->seconds, scaled to
** hours_per_month), in both capacity modes.  GB are 2^30 bytes.  readers:
** how many consumers read everything once (0: the registered consumers,
** at least 1); dedicated consumers pay EFO in provisioned mode. */
typedef struct sl_bill {
    /* quantities for the month */
    double gb_in;                    /* data + key */
    double put_units_million;
    double ondemand_gb_in;           /* rounded up to 1 KiB a record */
    double gb_out;                   /* readers x gb_in */
    double stored_gb_long;           /* retained beyond 7 days (average) */
    /* provisioned, with `shards` shards */
    uint32_t shards;
    double shard_hours, put_units, extended_retention, long_retention;
    double efo_hours, efo_gb;
    double provisioned_total;
    /* on-demand (standard) */
    double ondemand_stream_hours, ondemand_in, ondemand_out, ondemand_long_retention;
    double ondemand_total;
} sl_bill;
/* shards: the provisioned shard count to price (0: the stream's open
** shards).  @return 0, SL_EINVAL (NULL, bad version, negative price). */
SL_API int sl_bill_estimate(sl_bill *out, const sl_workload *w, const sl_prices *p,
                            uint32_t shards, uint32_t readers);

/* Capacity advice: the shard count the observed peak needs (the busiest
** second, stream-wide, against 1,000 records/s and 1 MiB/s per shard: the
** count an evenly spread key space needs; a hot key needs better keys, see
** hot_shards), the bill at that count, and the cheaper mode against
** on-demand. */
typedef struct sl_advice {
    uint32_t shards_needed;          /* >= 1 */
    uint32_t hot_shards;             /* shards marked hot */
    sl_bill provisioned;             /* priced at shards_needed */
    sl_stream_mode cheaper;          /* PROVISIONED or ON_DEMAND */
    double saving;                   /* per month, of the cheaper mode */
} sl_advice;
SL_API int sl_advise(sl_advice *out, const sl_workload *w, const sl_prices *p,
                     uint32_t readers);

/* ---- Verification ----------------------------------------------------------
** Check every segment of every shard: headers, every record's checksum
** (and, with the stream's keys, its authentication tag), the index entries
** and their block checksums, trailers, cold block tables.  Reads only; a
** read-only handle is enough, and a writer may be appending meanwhile (the
** active segments are checked up to their committed tail). */
typedef struct sl_verify_stats {
    uint64_t segments_total;         /* to check: a listing at the start,
                                        less those deleted before reached */
    uint64_t segments, records, bytes;   /* checked so far (bytes: files) */
    uint64_t damaged;                /* damage found (each reported) */
    uint64_t encrypted_unchecked;    /* encrypted records whose tag could
                                        not be checked (no key provider) */
} sl_verify_stats;
/* Called after each segment with damage NULL, and once per damage found
** with a message naming shard, segment file and offset (valid during the
** call; st->damaged already counts it).  Non-zero stops.  Verification
** changes nothing, on any handle: damage is reported, never repaired. */
typedef int (*sl_verify_fn)(void *ctx, const sl_verify_stats *st, const char *damage);
/* @return 0 clean, SL_ECORRUPT (damage found: the whole stream was still
**         checked), 1 (fn stopped it), SL_EINVAL, SL_EIO, SL_ENOMEM. */
SL_API int sl_stream_verify(sl_stream *s, sl_verify_fn fn, void *ctx, sl_verify_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* SHARDLOG_H */
