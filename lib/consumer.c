/*
** consumer.c -- registered consumers (RegisterStreamConsumer and friends)
** and their durable checkpoints.
**
** CONSUMERS DIRECTORY, format version 1.  <stream>/consumers/, made 0700
** by the first registration, holds
**   ~LOCK                 an OFD write lock on byte 0 (F_OFD_SETLKW)
**                         serialises registrations and deregistrations
**                         across processes
**   <name>/               one registered consumer:
**     CONSUMER            the registration, written once (below)
**     CHECKPOINTS         two 64-byte slots per shard (below)
**   ~tmp~<name>~<hex>/    a registration being built (renamed to <name>/)
**   ~dead~<name>~<hex>/   a deregistration being removed
** Work entries carry a '~', which no consumer name can hold: Kinesis allows
** names such as ".tmp-x" or "LOCK", so no other prefix is safe.  The next
** registration removes the work directories a crash left, under the lock.
** Read-only stream handles write here too (and only here), so that a
** consumer process that follows a writer can register and checkpoint.
**
** CONSUMER, 168 bytes:
**    0 u32 magic 0x4E434C53 ("SLCN")   4 u16 version 1
**    6 u16 type: 1 SHARED, 2 DEDICATED
**    8 i64 created_ms (stream clock)   16 u64 id (random, never 0)
**   24 u32 name_len 1..128             28 u32 reserved 0
**   32 the name, zero-padded to 128 bytes; it equals the directory's name
**  160 u64 XXH3-64 of bytes 0..159
** Registration builds ~tmp~<name>~<hex>/ with CONSUMER and an empty
** CHECKPOINTS, fsyncs both files and the directory, renames it to <name>/
** and fsyncs consumers/: a consumer appears whole or not at all.  Its id is
** new for every registration, so a re-registered name never inherits the
** old checkpoints (they went with the old directory anyway).
**
** CHECKPOINTS: shard index i owns bytes [128 i, 128 i + 128), two slots:
**    0 u32 magic 0x4B434C53 ("SLCK")   4 u16 version 1    6 u16 flags 0
**    8 u32 shard_index                 12 u32 reserved 0
**   16 u64 generation                  24 u64 sequence (the last record
**                                         processed, inclusive)
**   32 i64 written_ms (stream clock)   40 u64 consumer_id (CONSUMER's id)
**   48 u64 reserved 0                  56 u64 XXH3-64 of bytes 0..55
** A slot is valid if its magic, version, flags, reserved fields, checksum,
** shard index and consumer id check out; the valid slot with the higher
** generation is the checkpoint.  A checkpoint writes the OTHER slot with
** generation + 1 (slot 0 and generation 1 if neither is valid) with one
** pwrite and one fdatasync, as LMDB alternates its two meta pages: a torn
** write damages only the slot being written, and the other still holds
** the previous checkpoint.  The file is sparse and grows as shards appear.
**
** Order of a checkpoint (a checkpoint is never durable before the data it
** points to):
**   1. the sequence number must be a committed record of the shard: an
**      AT_SEQUENCE_NUMBER iterator is opened (and closed) to check it;
**   2. the shard's records up to it are made durable.  A writer handle runs
**      sl__shard_sync (its unsynced segments, including files an earlier
**      process wrote, once).  A read-only handle
**      fdatasyncs the segment files up to the one holding the record
**      through descriptors of its own (the writer's mappings belong to
**      another process; fsync through any descriptor writes back the
**      file's dirty pages, mapped ones included).  A file whose header
**      says it was last written in an earlier boot is skipped: whatever of
**      it survived the reboot is on disk.  Sealed files are synced once per
**      open consumer (sl_ccount.ck_synced), the shard directory once more
**      when a newer file was (ck_dir);
**   3. the slot is written and synced under c->mu and an OFD write lock on
**      the shard's 128 bytes (other handles, other processes).  If the
**      write or sync fails, the slot's old bytes are put back, so that this
**      process never reads back a checkpoint whose call failed.  (What
**      reached the disk may still be the new slot: a failed checkpoint may
**      or may not be recorded, like any failed write, but it never points
**      at data that is not durable.)
**
** Locks: the file lock consumers/~LOCK > s->cons_mu (open, close and
** deregistration on this handle); c->mu is taken alone, the OFD range lock
** inside it.  sl__shard_* functions take the shard's own locks.
*/
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONS_DIR "consumers"
#define CONS_LOCK "~LOCK"
#define CONS_FILE "CONSUMER"
#define CKPT_FILE "CHECKPOINTS"
#define CONS_MAGIC 0x4E434C53u
#define CKPT_MAGIC 0x4B434C53u
#define CONS_VERSION 1u
#define CONS_BYTES 168u
#define CONS_NAME_OFF 32u
#define CONS_SUM_OFF 160u
#define CKPT_SLOT 64u
#define CKPT_PAIR 128u
#define CONSUMERS_DEFAULT 20u
#define CONS_NAME_MAX SL_STREAM_NAME_MAX

/* Counters live in chunks of CCOUNT_CHUNK shards, made on first use and
** never moved, so that shards a reshard adds get theirs too and readers
** can hold a pointer without a lock. */
sl_ccount *sl__consumer_count(sl_consumer *c, uint32_t shard)
{
    if (!c || shard >= SL_SHARDS_TOTAL_MAX) return NULL;
    _Atomic(sl_ccount *) *slot = &c->chunks[shard / CCOUNT_CHUNK];
    sl_ccount *k = atomic_load_explicit(slot, memory_order_acquire);
    if (!k) {
        sl_ccount *n = calloc(CCOUNT_CHUNK, sizeof *n);
        if (!n) return NULL;
        if (atomic_compare_exchange_strong(slot, &k, n)) k = n;
        else free(n);                   /* another thread made it first */
    }
    return &k[shard % CCOUNT_CHUNK];
}

/* ---- small helpers ------------------------------------------------------ */

/* Kinesis' ValidationException texts for ConsumerName. */
static int name_check(const char *name)
{
    if (!name)
        return sl__err(SL_EVALIDATION, "1 validation error detected: Value null "
                                       "at 'consumerName' failed to satisfy "
                                       "constraint: Member must not be null");
    size_t n = strlen(name);
    if (n < 1 || n > CONS_NAME_MAX)
        return sl__err(SL_EVALIDATION,
                       "1 validation error detected: Value '%.40s%s' at "
                       "'consumerName' failed to satisfy constraint: Member "
                       "must have length between 1 and %d",
                       name, n > 40 ? "..." : "", CONS_NAME_MAX);
    if (!sl__name_valid(name, CONS_NAME_MAX))
        return sl__err(SL_EVALIDATION,
                       "1 validation error detected: Value '%s' at "
                       "'consumerName' failed to satisfy constraint: Member "
                       "must satisfy regular expression pattern: "
                       "[a-zA-Z0-9_.-]+",
                       name);
    return 0;
}

/* <stream>/consumers, <stream>/consumers/a or <stream>/consumers/a/b. */
static char *cons_path(const sl_stream *s, const char *a, const char *b)
{
    char *p;
    int n = b   ? asprintf(&p, "%s/%s/%s/%s", s->dir, CONS_DIR, a, b)
            : a ? asprintf(&p, "%s/%s/%s", s->dir, CONS_DIR, a)
                : asprintf(&p, "%s/%s", s->dir, CONS_DIR);
    return n < 0 ? NULL : p;
}

/* A public call failed and bound its text to its own handle: keep the text
** for the caller's handle (sl__ret would replace a bound text). */
static int rebind(int rc)
{
    char msg[512];
    snprintf(msg, sizeof msg, "%s", sl__errtext());
    return sl__err(rc, "%s", msg);
}

static sl_shard *shard_of(sl_consumer *c, const char *shard_id, int *rc)
{
    sl_shard *sh = shard_id ? sl__stream_shard_by_id(c->s, shard_id) : NULL;
    if (!sh)
        *rc = sl__err(SL_ENOTFOUND, "Shard %.64s in stream %s not found.",
                      shard_id ? shard_id : "(null)", c->s->man.name);
    return sh;
}

/* pread up to n bytes; what lies past the end of the file reads as zeros. */
static int pread_zero(int fd, uint8_t *buf, size_t n, off_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = sl__os.pread(fd, buf + got, n - got, off + (off_t)got);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    memset(buf + got, 0, n - got);
    return 0;
}

/* ---- CONSUMER ----------------------------------------------------------- */

static void cons_encode(uint8_t b[CONS_BYTES], const sl_consumer_info *ci)
{
    size_t n = strlen(ci->name);
    memset(b, 0, CONS_BYTES);
    sl__st32(b, CONS_MAGIC);
    sl__st16(b + 4, CONS_VERSION);
    sl__st16(b + 6, (uint16_t)ci->type);
    sl__st64(b + 8, (uint64_t)ci->created_ms);
    sl__st64(b + 16, ci->id);
    sl__st32(b + 24, (uint32_t)n);
    memcpy(b + CONS_NAME_OFF, ci->name, n);
    sl__st64(b + CONS_SUM_OFF, sl__xxh3(b, CONS_SUM_OFF));
}

/* Decode a CONSUMER file found in directory `name`: true, or false with
** the reason in why. */
static bool cons_decode(const uint8_t *b, size_t len, const char *name,
                        sl_consumer_info *ci, char *why, size_t whylen)
{
    if (len < 8 || sl__ld32(b) != CONS_MAGIC) {
        snprintf(why, whylen, "not a consumer registration (bad magic)");
        return false;
    }
    if (sl__ld16(b + 4) != CONS_VERSION) {
        snprintf(why, whylen, "format version %u; this library reads version %u",
                 sl__ld16(b + 4), CONS_VERSION);
        return false;
    }
    if (len != CONS_BYTES || sl__ld64(b + CONS_SUM_OFF) != sl__xxh3(b, CONS_SUM_OFF)) {
        snprintf(why, whylen, len != CONS_BYTES ? "%zu bytes, not %u"
                                                : "checksum mismatch (%zu of %u bytes)",
                 len, CONS_BYTES);
        return false;
    }
    uint16_t type = sl__ld16(b + 6);
    uint32_t n = sl__ld32(b + 24);
    bool ok = (type == SL_CONSUMER_SHARED || type == SL_CONSUMER_DEDICATED) &&
              sl__ld64(b + 16) != 0 && n >= 1 && n <= CONS_NAME_MAX &&
              sl__ld32(b + 28) == 0;
    for (uint32_t i = n; ok && i < CONS_NAME_MAX; i++) ok = b[CONS_NAME_OFF + i] == 0;
    if (!ok) {
        snprintf(why, whylen, "a field is out of range");
        return false;
    }
    if (strlen(name) != n || memcmp(b + CONS_NAME_OFF, name, n) != 0) {
        snprintf(why, whylen, "it names another consumer ('%.*s')", (int)n,
                 (const char *)b + CONS_NAME_OFF);
        return false;
    }
    memset(ci, 0, sizeof *ci);
    memcpy(ci->name, b + CONS_NAME_OFF, n);
    ci->type = (sl_consumer_type)type;
    ci->created_ms = (int64_t)sl__ld64(b + 8);
    ci->id = sl__ld64(b + 16);
    return true;
}

/* Read the registration of consumer `name`.  SL_ENOTFOUND if there is
** none, SL_ECORRUPT (naming the file) if it is damaged. */
static int cons_read(sl_stream *s, const char *name, sl_consumer_info *ci)
{
    char *path = cons_path(s, name, CONS_FILE);
    if (!path) return sl__err(SL_ENOMEM, "reading consumer '%s'", name);
    char *buf;
    size_t len;
    int rc = 0;
    if (sl__os_read_file(path, &buf, &len, 4096) != 0) {
        int e = errno;
        struct stat st;
        if (e == ENOENT || e == ENOTDIR) {
            /* a consumer directory always has its CONSUMER file */
            char *dir = cons_path(s, name, NULL);
            bool there = dir && stat(dir, &st) == 0;
            free(dir);
            rc = there ? sl__err(SL_ECORRUPT, "%s is missing", path)
                       : sl__err(SL_ENOTFOUND, "Consumer %s under stream %s not found.",
                                 name, s->man.name);
        } else if (e == EFBIG) {
            rc = sl__err(SL_ECORRUPT, "%s: too large for a consumer registration", path);
        } else {
            rc = sl__errno(SL_EIO, e, "reading %s", path);
        }
        free(path);
        return rc;
    }
    char why[160];
    if (!cons_decode((const uint8_t *)buf, len, name, ci, why, sizeof why))
        rc = sl__err(SL_ECORRUPT, "%s: %s", path, why);
    free(buf);
    free(path);
    return rc;
}

/* Create dir/file holding data, and fsync it. */
static int write_new(const char *dir, const char *file, const void *data,
                     size_t n)
{
    char *path;
    if (asprintf(&path, "%s/%s", dir, file) < 0) return sl__err(SL_ENOMEM, "registering");
    int rc = 0;
    int fd = sl__os.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = sl__errno(sl__errno_code(errno), errno, "creating %s", path);
    } else {
        if (n && sl__os_pwrite_all(fd, data, n, 0) != 0)
            rc = sl__errno(sl__errno_code(errno), errno, "writing %s", path);
        else if (sl__os.fsync(fd) != 0)
            rc = sl__errno(SL_EIO, errno, "syncing %s", path);
        sl__os.close(fd);
    }
    free(path);
    return rc;
}

/* ---- the registration lock and the directory ----------------------------- */

static int cons_dir_make(sl_stream *s)
{
    char *dir = cons_path(s, NULL, NULL);
    if (!dir) return sl__err(SL_ENOMEM, "registering");
    int rc = 0;
    if (sl__os.mkdir(dir, 0700) == 0) {
        if (sl__os_fsync_dir(s->dir) != 0)
            rc = sl__errno(SL_EIO, errno, "syncing %s", s->dir);
    } else if (errno != EEXIST) {
        rc = sl__errno(sl__errno_code(errno), errno, "creating %s", dir);
    }
    free(dir);
    return rc;
}

/* Take consumers/~LOCK, waiting for other processes' registrations. */
static int reg_lock(sl_stream *s, int *fd_out)
{
    *fd_out = -1;
    char *path = cons_path(s, CONS_LOCK, NULL);
    if (!path) return sl__err(SL_ENOMEM, "locking consumers");
    int rc = 0;
    int fd = sl__os.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = sl__errno(sl__errno_code(errno), errno, "opening %s", path);
    } else {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
        while (fcntl(fd, F_OFD_SETLKW, &fl) != 0) {
            if (errno == EINTR) continue;
            rc = sl__errno(SL_EIO, errno, "locking %s", path);
            sl__os.close(fd);
            fd = -1;
            break;
        }
    }
    free(path);
    *fd_out = fd;
    return rc;
}

/* Under the lock: remove the work directories a crash left behind and
** count the registered consumers. */
static int cons_scan(const char *dir, uint32_t *count)
{
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return sl__errno(SL_EIO, errno, "opening %s", dir);
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (!strncmp(e->d_name, "~tmp~", 5) || !strncmp(e->d_name, "~dead~", 6)) {
            char *p;
            if (asprintf(&p, "%s/%s", dir, e->d_name) < 0) {
                rc = sl__err(SL_ENOMEM, "registering");
                break;
            }
            sl__os_rmtree(p);           /* best effort: the next one retries */
            free(p);
        } else if (sl__name_valid(e->d_name, CONS_NAME_MAX)) {
            (*count)++;
        }
    }
    closedir(d);
    return rc;
}

/* ---- register, deregister, list ------------------------------------------- */

int sl_consumer_register(sl_stream *s, const char *name, sl_consumer_type type)
{
    if (!s) return sl__ret(NULL, sl__err(SL_EINVAL, "stream is NULL"));
    int rc = name_check(name);
    if (rc) return sl__ret(s, rc);
    if (type != SL_CONSUMER_SHARED && type != SL_CONSUMER_DEDICATED)
        return sl__ret(s, sl__err(SL_EVALIDATION, "consumer type %d is neither "
                                                  "SL_CONSUMER_SHARED nor "
                                                  "SL_CONSUMER_DEDICATED",
                                  (int)type));
    char *dir = NULL, *final = NULL, *tmp = NULL;
    int lk = -1;
    if ((rc = cons_dir_make(s)) != 0 || (rc = reg_lock(s, &lk)) != 0) goto out;
    if (!(dir = cons_path(s, NULL, NULL)) || !(final = cons_path(s, name, NULL)) ||
        asprintf(&tmp, "%s/~tmp~%s~%016" PRIx64, dir, name, sl__random64()) < 0) {
        tmp = NULL;
        rc = sl__err(SL_ENOMEM, "registering consumer '%s'", name);
        goto out;
    }
    uint32_t n;
    if ((rc = cons_scan(dir, &n)) != 0) goto out;
    struct stat st;
    if (lstat(final, &st) == 0) {
        rc = sl__err(SL_EINUSE, "Consumer %s under stream %s already exists.", name,
                     s->man.name);
        goto out;
    }
    if (errno != ENOENT) {
        rc = sl__errno(SL_EIO, errno, "stat %s", final);
        goto out;
    }
    /* the field may be 0 when no limits were given: Kinesis' 20 */
    uint32_t max = s->limits.max_consumers ? s->limits.max_consumers : CONSUMERS_DEFAULT;
    if (n >= max) {
        rc = sl__err(SL_ELIMIT, "Stream %s already has %u registered consumers; "
                                "the limit is %u.",
                     s->man.name, n, max);
        goto out;
    }
    sl_consumer_info ci;
    memset(&ci, 0, sizeof ci);
    strcpy(ci.name, name);
    ci.type = type;
    ci.created_ms = sl__now(s);
    do ci.id = sl__random64();
    while (ci.id == 0);
    uint8_t b[CONS_BYTES];
    cons_encode(b, &ci);
    if (sl__os.mkdir(tmp, 0700) != 0) {
        rc = sl__errno(sl__errno_code(errno), errno, "creating %s", tmp);
        goto out;
    }
    if ((rc = write_new(tmp, CONS_FILE, b, sizeof b)) == 0 &&
        (rc = write_new(tmp, CKPT_FILE, NULL, 0)) == 0 && sl__os_fsync_dir(tmp) != 0)
        rc = sl__errno(SL_EIO, errno, "syncing %s", tmp);
    /* the name was checked under the lock, which every registration takes */
    if (rc == 0 && sl__os.rename(tmp, final) != 0)
        rc = sl__errno(sl__errno_code(errno), errno, "renaming %s", tmp);
    if (rc) {
        sl__os_rmtree(tmp);
        goto out;
    }
    if (sl__os_fsync_dir(dir) != 0)
        rc = sl__errno(SL_EIO, errno, "syncing %s (consumer '%s' is registered but "
                                      "may not survive a power cut)",
                       dir, name);
out:
    if (lk >= 0) sl__os.close(lk);      /* releases the lock */
    free(dir);
    free(final);
    free(tmp);
    return sl__ret(s, rc);
}

int sl_consumer_deregister(sl_stream *s, const char *name)
{
    if (!s) return sl__ret(NULL, sl__err(SL_EINVAL, "stream is NULL"));
    int rc = name_check(name);
    if (rc) return sl__ret(s, rc);
    char *dir = cons_path(s, NULL, NULL), *path = cons_path(s, name, NULL), *tomb = NULL;
    int lk = -1;
    struct stat st;
    if (!dir || !path ||
        asprintf(&tomb, "%s/~dead~%s~%016" PRIx64, dir, name, sl__random64()) < 0) {
        tomb = NULL;
        rc = sl__err(SL_ENOMEM, "deregistering consumer '%s'", name);
        goto out;
    }
    if (stat(dir, &st) != 0) {
        rc = errno == ENOENT ? sl__err(SL_ENOTFOUND, "Consumer %s under stream %s not found.",
                                       name, s->man.name)
                             : sl__errno(SL_EIO, errno, "stat %s", dir);
        goto out;
    }
    if ((rc = reg_lock(s, &lk)) != 0) goto out;
    /* under cons_mu, so that no sl_consumer_open on this handle slips in
    ** between the check and the rename */
    pthread_mutex_lock(&s->cons_mu);
    sl_consumer *c = s->cons_open;
    while (c && strcmp(c->info.name, name) != 0) c = c->next;
    if (c)
        rc = sl__err(SL_EINUSE, "Consumer %s of stream %s is open on this handle; "
                                "close it first",
                     name, s->man.name);
    else if (sl__os.rename(path, tomb) != 0)
        rc = errno == ENOENT ? sl__err(SL_ENOTFOUND, "Consumer %s under stream %s not found.",
                                       name, s->man.name)
                             : sl__errno(SL_EIO, errno, "renaming %s", path);
    pthread_mutex_unlock(&s->cons_mu);
    if (rc) goto out;
    if (sl__os_fsync_dir(dir) != 0) {
        /* the next registration removes the tomb */
        rc = sl__errno(SL_EIO, errno, "syncing %s", dir);
        goto out;
    }
    sl__os_rmtree(tomb);                /* what is left, the next one removes */
out:
    if (lk >= 0) sl__os.close(lk);
    free(dir);
    free(path);
    free(tomb);
    return sl__ret(s, rc);
}

static int cmp_info(const void *a, const void *b)
{
    return strcmp(((const sl_consumer_info *)a)->name, ((const sl_consumer_info *)b)->name);
}

int sl_consumer_list_get(sl_consumer_list **out, sl_stream *s)
{
    if (!out || !s) return sl__ret(s, sl__err(SL_EINVAL, "out or stream is NULL"));
    *out = NULL;
    sl_consumer_list *l = calloc(1, sizeof *l);
    char *dir = cons_path(s, NULL, NULL);
    if (!l || !dir) {
        free(l);
        free(dir);
        return sl__ret(s, sl__err(SL_ENOMEM, "listing consumers"));
    }
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        if (e == ENOENT) {              /* nobody registered yet */
            free(dir);
            *out = l;
            return 0;
        }
        int rc = sl__errno(SL_EIO, e, "opening %s", dir);
        free(dir);
        free(l);
        return sl__ret(s, rc);
    }
    size_t cap = 0;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!sl__name_valid(e->d_name, CONS_NAME_MAX)) continue;   /* ~ entries */
        if (l->count == cap) {
            cap = cap ? cap * 2 : 16;
            sl_consumer_info *n = realloc(l->consumers, cap * sizeof *n);
            if (!n) {
                rc = sl__err(SL_ENOMEM, "listing consumers");
                break;
            }
            l->consumers = n;
        }
        rc = cons_read(s, e->d_name, &l->consumers[l->count]);
        if (rc == 0) {
            l->count++;
        } else if (rc == SL_ENOTFOUND) {
            rc = 0;                     /* deregistered meanwhile */
        } else if (rc == SL_ECORRUPT) {
            /* one damaged registration must not hide the others */
            sl__stream_report(s, SL_ECORRUPT, "%s; consumer left out of the list",
                              sl__errtext());
            rc = 0;
        }
    }
    closedir(d);
    free(dir);
    if (rc) {
        sl_consumer_list_free(l);
        return sl__ret(s, rc);
    }
    if (l->count) qsort(l->consumers, l->count, sizeof *l->consumers, cmp_info);
    *out = l;
    return 0;
}

void sl_consumer_list_free(sl_consumer_list *l)
{
    if (!l) return;
    free(l->consumers);
    free(l);
}

/* ---- open, close ---------------------------------------------------------- */

static void cons_free(sl_consumer *c)
{
    if (!c) return;
    if (c->ckpt_fd >= 0) sl__os.close(c->ckpt_fd);
    pthread_mutex_destroy(&c->mu);
    for (size_t i = 0; i < sizeof c->chunks / sizeof *c->chunks; i++) free(c->chunks[i]);
    free(c->dir);
    free(c);
}

/* Open (making it if an older registration lacks it) CHECKPOINTS. */
static int ckpt_open(sl_consumer *c)
{
    char *path;
    if (asprintf(&path, "%s/%s", c->dir, CKPT_FILE) < 0)
        return sl__err(SL_ENOMEM, "opening consumer '%s'", c->info.name);
    int rc = 0;
    c->ckpt_fd = sl__os.open(path, O_RDWR | O_CLOEXEC, 0);
    if (c->ckpt_fd < 0 && errno == ENOENT) {
        c->ckpt_fd = sl__os.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        /* its name must be durable before a checkpoint in it can be */
        if (c->ckpt_fd >= 0 && sl__os_fsync_dir(c->dir) != 0)
            rc = sl__errno(SL_EIO, errno, "syncing %s", c->dir);
    }
    if (c->ckpt_fd < 0) rc = sl__errno(sl__errno_code(errno), errno, "opening %s", path);
    free(path);
    return rc;
}

int sl_consumer_open(sl_consumer **out, sl_stream *s, const char *name)
{
    if (!out || !s) return sl__ret(s, sl__err(SL_EINVAL, "out or stream is NULL"));
    *out = NULL;
    int rc = name_check(name);
    if (rc) return sl__ret(s, rc);
    sl_consumer *c = calloc(1, sizeof *c);
    if (!c) return sl__ret(s, sl__err(SL_ENOMEM, "opening consumer '%s'", name));
    c->s = s;
    c->ckpt_fd = -1;
    pthread_mutex_init(&c->mu, NULL);
    if (!(c->dir = cons_path(s, name, NULL))) {
        cons_free(c);
        return sl__ret(s, sl__err(SL_ENOMEM, "opening consumer '%s'", name));
    }
    /* cons_mu keeps a deregistration on this handle from running between
    ** the read and the link */
    pthread_mutex_lock(&s->cons_mu);
    if ((rc = cons_read(s, name, &c->info)) == 0) rc = ckpt_open(c);
    if (rc == 0) {
        c->next = s->cons_open;
        s->cons_open = c;
        atomic_fetch_add(&s->children, 1);
    }
    pthread_mutex_unlock(&s->cons_mu);
    if (rc) {
        cons_free(c);
        return sl__ret(s, rc);
    }
    *out = c;
    return 0;
}

int sl_consumer_close(sl_consumer *c)
{
    if (!c) return 0;
    int n = atomic_load(&c->subs);
    if (n > 0)
        return sl__ret(c, sl__err(SL_EINUSE, "consumer '%s' still has %d open "
                                             "subscription(s)",
                                  c->info.name, n));
    sl_stream *s = c->s;
    pthread_mutex_lock(&s->cons_mu);
    for (sl_consumer **pp = &s->cons_open; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    pthread_mutex_unlock(&s->cons_mu);
    cons_free(c);
    atomic_fetch_sub(&s->children, 1);
    return 0;
}

const sl_consumer_info *sl_consumer_get_info(const sl_consumer *c)
{
    return c ? &c->info : NULL;
}

/* ---- checkpoint slots ----------------------------------------------------- */

static void slot_encode(uint8_t b[CKPT_SLOT], uint32_t shard, uint64_t gen,
                        uint64_t seq, int64_t ms, uint64_t id)
{
    memset(b, 0, CKPT_SLOT);
    sl__st32(b, CKPT_MAGIC);
    sl__st16(b + 4, CONS_VERSION);
    sl__st32(b + 8, shard);
    sl__st64(b + 16, gen);
    sl__st64(b + 24, seq);
    sl__st64(b + 32, (uint64_t)ms);
    sl__st64(b + 40, id);
    sl__st64(b + 56, sl__xxh3(b, 56));
}

static bool slot_valid(const uint8_t *b, uint32_t shard, uint64_t id)
{
    return sl__ld32(b) == CKPT_MAGIC && sl__ld16(b + 4) == CONS_VERSION &&
           sl__ld16(b + 6) == 0 && sl__ld32(b + 8) == shard && sl__ld32(b + 12) == 0 &&
           sl__ld64(b + 40) == id && sl__ld64(b + 48) == 0 &&
           sl__ld64(b + 56) == sl__xxh3(b, 56);
}

/* The newest valid slot of a pair: 0 or 1, or -1 if neither is valid. */
static int slot_pick(const uint8_t pair[CKPT_PAIR], uint32_t shard, uint64_t id)
{
    bool ok0 = slot_valid(pair, shard, id), ok1 = slot_valid(pair + CKPT_SLOT, shard, id);
    if (ok0 && ok1) return sl__ld64(pair + CKPT_SLOT + 16) > sl__ld64(pair + 16);
    return ok1 ? 1 : ok0 ? 0 : -1;
}

/* for fuzz/ (fuzz_slots.c): the CONSUMER and CHECKPOINTS decoders above */
bool sl__cons_decode(const uint8_t *b, size_t len, const char *name, sl_consumer_info *ci,
                     char *why, size_t whylen)
{
    return cons_decode(b, len, name, ci, why, whylen);
}
int sl__ckpt_slot_pick(const uint8_t *pair, uint32_t shard, uint64_t id)
{
    return slot_pick(pair, shard, id);
}

/* The checkpoint of shard sh: 0, SL_ENOTFOUND (none valid), SL_EIO. */
static int ckpt_read(sl_consumer *c, sl_shard *sh, uint64_t *seq)
{
    uint8_t pair[CKPT_PAIR];
    pthread_mutex_lock(&c->mu);
    int r = pread_zero(c->ckpt_fd, pair, sizeof pair, (off_t)sh->index * CKPT_PAIR);
    int e = errno;
    pthread_mutex_unlock(&c->mu);
    if (r != 0)
        return sl__errno(SL_EIO, e, "reading %s/%s", c->dir, CKPT_FILE);
    int w = slot_pick(pair, sh->index, c->info.id);
    if (w < 0)
        return sl__err(SL_ENOTFOUND, "consumer '%s' has no checkpoint in shard %s",
                       c->info.name, sh->id);
    *seq = sl__ld64(pair + (size_t)w * CKPT_SLOT + 24);
    return 0;
}

/* Write the checkpoint of shard sh into the slot not holding the newest. */
static int ckpt_write(sl_consumer *c, sl_shard *sh, uint64_t seq)
{
    int fd = c->ckpt_fd, rc = 0;
    off_t base = (off_t)sh->index * CKPT_PAIR;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = base,
                       .l_len = CKPT_PAIR};
    pthread_mutex_lock(&c->mu);
    while (fcntl(fd, F_OFD_SETLKW, &fl) != 0) {
        if (errno == EINTR) continue;
        rc = sl__errno(SL_EIO, errno, "locking %s/%s", c->dir, CKPT_FILE);
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    uint8_t pair[CKPT_PAIR], b[CKPT_SLOT];
    if (pread_zero(fd, pair, sizeof pair, base) != 0) {
        rc = sl__errno(SL_EIO, errno, "reading %s/%s", c->dir, CKPT_FILE);
        goto out;
    }
    int newest = slot_pick(pair, sh->index, c->info.id);
    int w = newest < 0 ? 0 : 1 - newest;
    uint64_t gen = newest < 0 ? 1 : sl__ld64(pair + (size_t)newest * CKPT_SLOT + 16) + 1;
    off_t at = base + (off_t)w * CKPT_SLOT;
    slot_encode(b, sh->index, gen, seq, sl__now(c->s), c->info.id);
    char a[SL_SEQ_STR_MAX];
    if (sl__os_pwrite_all(fd, b, sizeof b, at) != 0)
        rc = sl__errno(sl__errno_code(errno), errno,
                       "writing checkpoint %s of consumer '%s' in shard %s to %s/%s",
                       sl_seq_format(a, seq), c->info.name, sh->id, c->dir, CKPT_FILE);
    else if (sl__os.fdatasync(fd) != 0)
        rc = sl__errno(SL_EIO, errno, "syncing checkpoint %s of consumer '%s' in "
                                      "shard %s to %s/%s",
                       sl_seq_format(a, seq), c->info.name, sh->id, c->dir, CKPT_FILE);
    if (rc) {
        /* the failed slot may sit in the page cache: put the old bytes back
        ** so that it is not read back as made (the other slot still holds
        ** the previous checkpoint, whatever reaches the disk) */
        (void)sl__os_pwrite_all(fd, pair + (size_t)w * CKPT_SLOT, CKPT_SLOT, at);
    }
out:
    fl.l_type = F_UNLCK;
    (void)fcntl(fd, F_OFD_SETLK, &fl);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* ---- durability of the data a checkpoint points to -------------------------- */

/* fdatasync segment file `ordinal` of sh through a descriptor of our own
** (see sl__seg_file_sync). */
static int sync_seg_file(sl_shard *sh, uint64_t ordinal, bool *did)
{
    char *path = sl__seg_path(sh->dir, ordinal);
    if (!path) return sl__err(SL_ENOMEM, "syncing %s", sh->id);
    int rc = sl__seg_file_sync(path, did);
    free(path);
    return rc;
}

/* A read-only handle: make the segment files of sh up to the one holding
** `seq` durable through descriptors of our own. */
static int sync_seg_files(sl_consumer *c, sl_shard *sh, uint64_t seq)
{
    sl_seg *g;
    uint64_t off;
    int rc = sl__shard_seek(sh, false, seq, &g, &off);
    if (rc || !g) return rc;
    uint64_t hold = g->ordinal;
    sl__shard_put_seg(sh, g);
    sl_ccount *cc = sl__consumer_count(c, sh->index);
    uint64_t done = 0, dir_done = 0;
    if (cc) {
        pthread_mutex_lock(&c->mu);
        done = cc->ck_synced;
        dir_done = cc->ck_dir;
        pthread_mutex_unlock(&c->mu);
    }
    /* the files to sync, oldest first, noted under seglock */
    pthread_mutex_lock(&sh->seglock);
    size_t cap = sh->nseg ? sh->nseg : 1, n = 0;
    uint64_t *ords = malloc(cap * sizeof *ords);
    bool *sealed = malloc(cap * sizeof *sealed);
    for (size_t i = 0; ords && sealed && i < sh->nseg; i++) {
        sl_seg *x = sh->segs[i];
        if (x->ordinal <= done || x->ordinal > hold) continue;
        /* all but the newest are sealed (older ones may be unread stubs) */
        bool is_sealed = i + 1 < sh->nseg || sl__seg_is_sealed(x);
        ords[n] = x->ordinal;
        sealed[n++] = is_sealed;
    }
    pthread_mutex_unlock(&sh->seglock);
    if (!ords || !sealed) {
        free(ords);
        free(sealed);
        return sl__err(SL_ENOMEM, "syncing %s", sh->id);
    }
    uint64_t top = done;                /* files up to here are synced */
    bool prefix = true;
    for (size_t k = 0; k < n && rc == 0; k++) {
        bool did;
        if ((rc = sync_seg_file(sh, ords[k], &did)) != 0) break;
        if (ords[k] > top) top = ords[k];
        if (sealed[k] && prefix) done = ords[k];
        else prefix = false;
    }
    free(ords);
    free(sealed);
    /* their names: the shard directory, once more for each newer file */
    if (rc == 0 && top > dir_done && sl__os_fsync_dir(sh->dir) != 0)
        rc = sl__errno(SL_EIO, errno, "syncing directory %s", sh->dir);
    if (cc) {
        pthread_mutex_lock(&c->mu);
        if (done > cc->ck_synced) cc->ck_synced = done;
        if (rc == 0 && top > cc->ck_dir) cc->ck_dir = top;
        pthread_mutex_unlock(&c->mu);
    }
    return rc;
}

/* ---- checkpoints ---------------------------------------------------------- */

/* SL_ETRIMMED if records after the checkpoint at `seq` were removed
** (deleted segments: the shard's gone_seq) or have expired (the next record
** is at or before the horizon).  Resuming right after an expired or deleted
** checkpoint loses nothing when what follows is still there. */
static int trim_check(sl_consumer *c, sl_shard *sh, uint64_t seq)
{
    uint64_t gone = sl__shard_gone_seq(sh);
    bool t = seq < gone;
    if (!t && seq > gone) {
        sl_iter *it;
        int rc = sl_iter_open(&it, c->s, sh->id, SL_ITER_AFTER_SEQUENCE_NUMBER, seq);
        if (rc == 0) {
            sl_record r;
            sl_read_result res;
            t = sl__iter_read(it, &r, 1, SL_GET_BYTES_MAX, &res) == SL_ETRIMMED;
            sl_iter_close(it);
        }
    }
    if (!t) return 0;
    char a[SL_SEQ_STR_MAX];
    return sl__err(SL_ETRIMMED, "checkpoint %s of consumer '%s' in shard %s is no longer "
                                "available: the records after it were removed by retention "
                                "or the size cap",
                   sl_seq_format(a, seq), c->info.name, sh->id);
}

int sl_consumer_checkpoint(sl_consumer *c, const char *shard_id, uint64_t sequence)
{
    if (!c) return sl__ret(NULL, sl__err(SL_EINVAL, "consumer is NULL"));
    int rc = 0;
    sl_shard *sh = shard_of(c, shard_id, &rc);
    if (!sh) return sl__ret(c, rc);
    /* a committed record of this shard (the iterator checks exactly that) */
    sl_iter *it;
    if ((rc = sl_iter_open(&it, c->s, shard_id, SL_ITER_AT_SEQUENCE_NUMBER, sequence)) != 0)
        return sl__ret(c, rebind(rc));
    sl_iter_close(it);
    /* the data first: a checkpoint is never durable before its record */
    if (c->s->readonly) {
        rc = sync_seg_files(c, sh, sequence);
    } else {
        rc = sl__shard_sync(sh);
    }
    if (rc == 0) rc = ckpt_write(c, sh, sequence);
    return sl__ret(c, rc);
}

int sl_consumer_get_checkpoint(sl_consumer *c, const char *shard_id, uint64_t *sequence)
{
    if (!c || !sequence) return sl__ret(c, sl__err(SL_EINVAL, "consumer or sequence is NULL"));
    *sequence = 0;
    int rc = 0;
    sl_shard *sh = shard_of(c, shard_id, &rc);
    if (!sh) return sl__ret(c, rc);
    if ((rc = ckpt_read(c, sh, sequence)) == 0) rc = trim_check(c, sh, *sequence);
    return sl__ret(c, rc);
}

int sl_consumer_iter_open(sl_iter **out, sl_consumer *c, const char *shard_id,
                          sl_iter_type type, uint64_t arg)
{
    if (!out || !c) return sl__ret(c, sl__err(SL_EINVAL, "out or consumer is NULL"));
    *out = NULL;
    int rc = sl__iter_type_check(type);
    if (rc) return sl__ret(c, rc);
    sl_shard *sh = shard_of(c, shard_id, &rc);
    if (!sh) return sl__ret(c, rc);
    uint64_t ck = 0;
    sl_iter *it = NULL;
    rc = ckpt_read(c, sh, &ck);
    if (rc == SL_ENOTFOUND) {
        if ((rc = sl_iter_open(&it, c->s, shard_id, type, arg)) != 0) rc = rebind(rc);
    } else if (rc == 0 && (rc = trim_check(c, sh, ck)) == 0 &&
               (rc = sl_iter_open(&it, c->s, shard_id, SL_ITER_AFTER_SEQUENCE_NUMBER, ck)) != 0) {
        /* trimmed since the check, or the record is unreadable */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sl__errtext());
        int t = rc == SL_EINVAL ? trim_check(c, sh, ck) : 0;
        rc = t ? t : sl__err(rc, "%s", msg);
    }
    if (rc) return sl__ret(c, rc);
    sl__iter_set_consumer(it, c);
    *out = it;
    return 0;
}

int sl_consumer_counters_get(sl_consumer *c, const char *shard_id,
                             sl_consumer_counters *out)
{
    if (!c || !out) return sl__ret(c, sl__err(SL_EINVAL, "consumer or out is NULL"));
    memset(out, 0, sizeof *out);
    int rc = 0;
    sl_shard *sh = shard_of(c, shard_id, &rc);
    if (!sh) return sl__ret(c, rc);
    sl_ccount *cc = sl__consumer_count(c, sh->index);
    if (!cc) return 0;                  /* a shard newer than the consumer's open */
    out->reads = atomic_load_explicit(&cc->reads, memory_order_relaxed);
    out->records_out = atomic_load_explicit(&cc->records_out, memory_order_relaxed);
    out->bytes_out = atomic_load_explicit(&cc->bytes_out, memory_order_relaxed);
    out->read_throttled = atomic_load_explicit(&cc->read_throttled, memory_order_relaxed);
    out->deliveries = atomic_load_explicit(&cc->deliveries, memory_order_relaxed);
    out->iterator_age_ms = atomic_load_explicit(&cc->age_ms, memory_order_relaxed);
    return 0;
}
