/*
** test_powercut.c -- power-cut simulation (issue 9): a fault layer over the
** system-call table sl__os records what a power cut could not take away,
** and at a random cut point the stream's files are rebuilt, in another
** directory, as the cut could have left them.  The rebuilt stream must open,
** keep every promise, and never return a corrupt record.
**
** WHAT THE SHIM RECORDS (the durable state), while it tracks a root:
**   - files, by identity (inode; a new identity when a name is created):
**     their content as of the last fsync/fdatasync (the whole file, read
**     with pread -- a sync through any descriptor writes back the mapped
**     pages too), and for an msync(MS_SYNC) of a mapped range, that range
**     as it is in the mapping at that moment (msync also makes the file's
**     size durable, as Linux's range fdatasync does).  A file never synced
**     has no durable content: it is empty after the cut, or partly written.
**   - the namespace as a log of operations (create, mkdir, rename, unlink,
**     rmdir) through sl__os.  An operation is durable once the directory it
**     changed is fsynced (for a rename, either directory); a file's own
**     fsync does not make its name durable (POSIX; ext4 would).
**   - at the cut: every file's current content (the page cache), read with
**     pread; a file unlinked or replaced earlier keeps the content it had
**     then.  Between syncs the "new" content of a mapped segment is what
**     the mapping holds at the cut.
**   Real fsync, fdatasync and msync(MS_SYNC) are not made at all: the shim
**   answers 0 (durability is simulated, so the test runs at memory speed).
**
** THE CUT.  Every call through the shim, and every step of the workload,
** is an event; the cut falls before event K (K random, up to the events a
** run of the same mode makes; past the end, the cut falls after the last
** step).  The cut stops the world for the shim (all calls wait on its
** mutex), captures, and then the workload stops and closes its stream;
** nothing after the cut counts.  The workload runs in this process; its
** background threads (INTERVAL's syncer, the segment preparer) run too, so
** a cut can fall in the middle of theirs as well.
**
** THE REBUILD (several per cut, each with its own random choices):
**   - namespace: replay the log from the state when tracking began; every
**     durable operation applies; the others apply either as a random
**     prefix (a journaling filesystem: metadata in order) or each one at
**     random (weaker: any subset, each rename whole -- old name or new).
**   - each file: its size is the durable one or the current one (or, when
**     it grew, a 512-byte multiple in between); each 4 KiB page that
**     differs is old (durable), new, or torn -- a prefix of the page new
**     (at a 512-byte sector boundary or at any byte), the rest old -- or a
**     mix of old and new sectors.  A page with no durable content (past
**     the durable size) is new, zeros, garbage, or a new prefix with zeros
**     or garbage after it.  Styles per rebuild: all old (exactly what was
**     synced), all new (nothing lost), or mixed.
**   - the boot id in every segment header becomes another boot's (a
**     reboot).
** NOT MODELLED: a page that had durable content coming back as zeros (a
** filesystem overwrites in place or not at all; it does not zero a block
** it did not free); a device that lies about flushes; reordering inside a
** completed sync; directory entries other than through sl__os (the stream
** is created before tracking starts).
** A CUT DURING RECOVERY: on some rebuilds (recovery_cut) a second cut falls
** while the writer open recovers the rebuilt stream, or while it closes;
** that tree is rebuilt again and must keep the first cut's promises.
**
** CHECKS, after each rebuild:
**   - a read-only open (no writer alive) succeeds and returns only intact
**     records (it does not replay the journal, so it may show fewer);
**   - a writer open succeeds (damage may be reported through the report
**     callback);
**   - every record read is one that was put, intact (data, key, length,
**     derived from its id), at most once, with a unique sequence number,
**     rising within its shard; an acknowledged one has the acknowledged
**     sequence number and shard;
**   - every promised record is there: acknowledged in ALWAYS mode, covered
**     by an sl_stream_sync that returned 0, or by a checkpoint that returned
**     0 (its shard up to the checkpoint);
**   - the shard map is the old one or the new one (the new one if the
**     reshard returned); a registered consumer is there; its checkpoint of
**     each shard is one that was written, not older than the last one
**     acknowledged, and names a record that is there;
**   - new puts succeed with sequence numbers above every number
**     acknowledged before the cut and every number on disk; after a clean
**     close and reopen, the stream reads exactly the same plus the new
**     records.
**
** Environment: SL_POWERCUT_ITERS (workload runs; default below),
** SL_POWERCUT_SEED (printed every run; reproduces the configurations, cut
** points and page choices -- thread timing may still move a cut by a few
** events), SL_POWERCUT_ITER=i (run only iteration i of that seed),
** SL_POWERCUT_KEEP=1 (keep a failing rebuilt tree).
*/
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>

#define NAME "pc"
#define KEY_ID "arn:aws:kms:eu-west-1:111122223333:key/powercut"
#define REBUILDS 3                /* rebuilds per cut */
#define DEFAULT_ITERS 400
#define POST_BASE (1u << 24)      /* ids of records put after the cut */
#define MAX_IDS 8192

/* ---- random ------------------------------------------------------------- */

static uint64_t sm64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t rnd(uint64_t *s, uint32_t n) { return n ? (uint32_t)(sm64(s) % n) : 0; }

/* ---- the shim ----------------------------------------------------------- */

enum { OP_LINK, OP_RENAME, OP_UNLINK };

typedef struct pc_op {
    int kind;
    uint32_t d1, d2, id;         /* directory ids, the entry's id */
    char *n1, *n2;
    bool initial;                /* the state when tracking began */
} pc_op;

typedef struct pc_file {
    bool dir, bound;             /* bound: (dev, ino) names this file now */
    dev_t dev;
    ino_t ino;
    uint8_t *dur;                /* durable content */
    size_t dlen;
    uint8_t *cur;                /* content at the cut (or when unlinked) */
    size_t clen;
    bool have_cur;
    size_t fsync_pos;            /* dirs: ops below it are durable */
} pc_file;

typedef struct pc_map {
    uint8_t *addr;
    size_t len;
    uint32_t id;
    off_t off;
    size_t fsize;
    bool dropped;                /* SL_POWERCUT_DROP names it */
} pc_map;

static struct {
    pthread_mutex_t mu;
    char *root;
    size_t rootlen;
    sl_os real;
    bool installed;
    _Atomic bool tracking;       /* recording (until the cut) */
    _Atomic bool cut;
    _Atomic uint64_t events;
    _Atomic uint64_t cut_at;     /* the cut falls before this event */
    int cut_step;                /* set cut_at at this step's tick */
    uint32_t cut_after;          /* ... this many events into the step */
    uint64_t cut_event;          /* where it fell */
    int cut_fell_step;
    pc_file *f;
    size_t nf, capf;
    pc_op *ops;
    size_t nops, capops;
    pc_map *maps;
    size_t nmaps, capmaps;
    char err[512];               /* a hole in the model: fails the test */
    void (*on_cut)(void);
} pc = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Diagnostics: SL_POWERCUT_DROP=<text> forgets the syncs of files whose
** path holds <text>, SL_POWERCUT_DROPDIR=<text> those of such directories,
** as if the library had not made them: the checks must then fail. */
static const char *g_drop, *g_dropdir;

static bool dropped_fd(int fd, bool dir)
{
    const char *want = dir ? g_dropdir : g_drop;
    if (!want || !*want) return false;
    char p[64], path[4096];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(p, path, sizeof path - 1);
    if (n <= 0) return false;
    path[n] = '\0';
    return strstr(path, want) != NULL;
}

static void pc_harness_err(const char *fmt, ...)
{
    if (pc.err[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pc.err, sizeof pc.err, fmt, ap);
    va_end(ap);
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) abort();
    return q;
}

static bool under_root(const char *path)
{
    return pc.root && !strncmp(path, pc.root, pc.rootlen) &&
           (path[pc.rootlen] == '/' || path[pc.rootlen] == '\0');
}

static int id_of(dev_t dev, ino_t ino)
{
    for (size_t i = 0; i < pc.nf; i++)
        if (pc.f[i].bound && pc.f[i].dev == dev && pc.f[i].ino == ino) return (int)i;
    return -1;
}

static uint32_t new_id(const struct stat *st)
{
    int old = id_of(st->st_dev, st->st_ino);
    if (old >= 0) pc.f[old].bound = false;      /* the inode was reused */
    if (pc.nf == pc.capf) {
        pc.capf = pc.capf ? pc.capf * 2 : 64;
        pc.f = xrealloc(pc.f, pc.capf * sizeof *pc.f);
    }
    pc_file *f = &pc.f[pc.nf];
    memset(f, 0, sizeof *f);
    f->dir = S_ISDIR(st->st_mode);
    f->bound = true;
    f->dev = st->st_dev;
    f->ino = st->st_ino;
    return (uint32_t)pc.nf++;
}

static void log_op(int kind, uint32_t d1, const char *n1, uint32_t d2, const char *n2,
                   uint32_t id, bool initial)
{
    if (pc.nops == pc.capops) {
        pc.capops = pc.capops ? pc.capops * 2 : 256;
        pc.ops = xrealloc(pc.ops, pc.capops * sizeof *pc.ops);
    }
    pc.ops[pc.nops++] = (pc_op){kind, d1, d2, id, strdup(n1), n2 ? strdup(n2) : NULL, initial};
}

static const char *base_of(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The id of path's directory; -1 (and a harness error) if unknown. */
static int dir_id_of(const char *path)
{
    const char *s = strrchr(path, '/');
    if (!s) {
        pc_harness_err("relative path %s", path);
        return -1;
    }
    char *d = strndup(path, (size_t)(s - path));
    struct stat st;
    int id = lstat(d, &st) == 0 ? id_of(st.st_dev, st.st_ino) : -1;
    if (id < 0) pc_harness_err("directory of %s is not tracked", path);
    free(d);
    return id;
}

static void read_all_of(int fd, uint8_t **buf, size_t *len)
{
    struct stat st;
    *buf = NULL;
    *len = 0;
    if (fstat(fd, &st) != 0) return;
    size_t n = (size_t)st.st_size;
    uint8_t *b = xrealloc(NULL, n);
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, b + got, n - got, (off_t)got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    *buf = b;
    *len = got;
}

/* The content of the file behind fd (which may be open write-only). */
static void read_fd_all(int fd, uint8_t **buf, size_t *len)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
    int rfd = open(p, O_RDONLY | O_CLOEXEC);
    *buf = NULL;
    *len = 0;
    if (rfd < 0) {
        pc_harness_err("cannot read back descriptor %d: %s", fd, strerror(errno));
        return;
    }
    read_all_of(rfd, buf, len);
    close(rfd);
}

static void read_path_all(const char *path, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    read_all_of(fd, buf, len);
    close(fd);
}

/* What a file holds now, kept for the cut (it is losing its last name). */
static void keep_cur(uint32_t id, const char *path)
{
    pc_file *f = &pc.f[id];
    free(f->cur);
    read_path_all(path, &f->cur, &f->clen);
    f->have_cur = true;
}

static void pc_cut(void);

static void event(void)
{
    uint64_t n = atomic_fetch_add(&pc.events, 1) + 1;
    if (atomic_load(&pc.tracking) && n == atomic_load(&pc.cut_at)) pc_cut();
}

/* The workload's steps: the cut falls `after` events into step `step`
** (or at the start of the next step, if this one makes fewer). */
static void tick(int step)
{
    if (step == pc.cut_step) atomic_store(&pc.cut_at, atomic_load(&pc.events) + 1 + pc.cut_after);
    event();
    if (step == pc.cut_step + 1) pc_cut();
}

static int pc_open(const char *path, int flags, mode_t mode)
{
    event();
    if (!(flags & O_CREAT) || !under_root(path)) return pc.real.open(path, flags, mode);
    pthread_mutex_lock(&pc.mu);
    struct stat st;
    bool existed = lstat(path, &st) == 0;
    int fd = pc.real.open(path, flags, mode);
    if (fd >= 0 && !existed && atomic_load(&pc.tracking) && fstat(fd, &st) == 0) {
        int d = dir_id_of(path);
        uint32_t id = new_id(&st);
        if (d >= 0) log_op(OP_LINK, (uint32_t)d, base_of(path), 0, NULL, id, false);
    }
    pthread_mutex_unlock(&pc.mu);
    return fd;
}

static int pc_mkdir(const char *path, mode_t mode)
{
    event();
    if (!under_root(path)) return pc.real.mkdir(path, mode);
    pthread_mutex_lock(&pc.mu);
    int rc = pc.real.mkdir(path, mode);
    int e = errno;
    struct stat st;
    if (rc == 0 && atomic_load(&pc.tracking) && lstat(path, &st) == 0) {
        int d = dir_id_of(path);
        uint32_t id = new_id(&st);
        if (d >= 0) log_op(OP_LINK, (uint32_t)d, base_of(path), 0, NULL, id, false);
    }
    pthread_mutex_unlock(&pc.mu);
    errno = e;
    return rc;
}

static int remove_common(const char *path, bool dir)
{
    event();
    if (!under_root(path)) return dir ? pc.real.rmdir(path) : pc.real.unlink(path);
    pthread_mutex_lock(&pc.mu);
    struct stat st;
    int id = -1, d = -1;
    bool tracking = atomic_load(&pc.tracking);
    if (tracking && lstat(path, &st) == 0) {
        id = id_of(st.st_dev, st.st_ino);
        d = dir_id_of(path);
        if (id < 0) pc_harness_err("%s is not tracked", path);
        else if (!dir) keep_cur((uint32_t)id, path);
    }
    int rc = dir ? pc.real.rmdir(path) : pc.real.unlink(path);
    int e = errno;
    if (rc == 0 && tracking && id >= 0 && d >= 0)
        log_op(OP_UNLINK, (uint32_t)d, base_of(path), 0, NULL, (uint32_t)id, false);
    pthread_mutex_unlock(&pc.mu);
    errno = e;
    return rc;
}

static int pc_unlink(const char *path) { return remove_common(path, false); }
static int pc_rmdir(const char *path) { return remove_common(path, true); }

static int pc_rename(const char *from, const char *to)
{
    event();
    if (!under_root(from) && !under_root(to)) return pc.real.rename(from, to);
    pthread_mutex_lock(&pc.mu);
    bool tracking = atomic_load(&pc.tracking);
    int id = -1, d1 = -1, d2 = -1;
    struct stat st;
    if (tracking) {
        if (!under_root(from) || !under_root(to))
            pc_harness_err("rename %s -> %s crosses the tracked root", from, to);
        if (lstat(from, &st) == 0) id = id_of(st.st_dev, st.st_ino);
        if (lstat(to, &st) == 0 && !S_ISDIR(st.st_mode)) {
            int rid = id_of(st.st_dev, st.st_ino);
            if (rid >= 0) keep_cur((uint32_t)rid, to);
        }
        d1 = dir_id_of(from);
        d2 = dir_id_of(to);
        if (id < 0) pc_harness_err("%s is not tracked", from);
    }
    int rc = pc.real.rename(from, to);
    int e = errno;
    if (rc == 0 && tracking && id >= 0 && d1 >= 0 && d2 >= 0)
        log_op(OP_RENAME, (uint32_t)d1, base_of(from), (uint32_t)d2, base_of(to), (uint32_t)id,
               false);
    pthread_mutex_unlock(&pc.mu);
    errno = e;
    return rc;
}

static int sync_common(int fd)
{
    event();
    pthread_mutex_lock(&pc.mu);
    struct stat st;
    if (atomic_load(&pc.tracking) && fstat(fd, &st) == 0) {
        int id = id_of(st.st_dev, st.st_ino);
        if (id >= 0) {
            pc_file *f = &pc.f[id];
            if (dropped_fd(fd, f->dir)) {
                /* forgotten (diagnostics) */
            } else if (f->dir) {
                f->fsync_pos = pc.nops;
            } else {
                free(f->dur);
                read_fd_all(fd, &f->dur, &f->dlen);
            }
        }
    }
    pthread_mutex_unlock(&pc.mu);
    return 0;                    /* simulated: nothing to wait for */
}

static int pc_fsync(int fd) { return sync_common(fd); }
static int pc_fdatasync(int fd) { return sync_common(fd); }

static int pc_msync(void *addr, size_t len, int flags)
{
    event();
    if (!(flags & MS_SYNC)) return pc.real.msync(addr, len, flags);
    pthread_mutex_lock(&pc.mu);
    if (atomic_load(&pc.tracking)) {
        uint8_t *a = addr;
        size_t i;
        for (i = 0; i < pc.nmaps; i++)
            if (a >= pc.maps[i].addr && a + len <= pc.maps[i].addr + pc.maps[i].len) break;
        if (i == pc.nmaps) {
            pc_harness_err("msync of an unknown mapping %p+%zu (%zu known%s)", addr, len, pc.nmaps,
                           pc.nmaps ? "" : "");
            if (getenv("PC_DEBUG")) {
                char cmd[128];
                snprintf(cmd, sizeof cmd, "grep %lx /proc/%d/maps >&2", (unsigned long)(uintptr_t)addr, (int)getpid());
                (void)!system(cmd);
            }
        } else if (!pc.maps[i].dropped) {
            pc_map *m = &pc.maps[i];
            pc_file *f = &pc.f[m->id];
            size_t at = (size_t)m->off + (size_t)(a - m->addr);
            size_t need = m->fsize > at + len ? m->fsize : at + len;
            if (f->dlen < need) {
                f->dur = xrealloc(f->dur, need);
                memset(f->dur + f->dlen, 0, need - f->dlen);
                f->dlen = need;
            }
            memcpy(f->dur + at, a, len);
        }
    }
    pthread_mutex_unlock(&pc.mu);
    return 0;
}

static void *pc_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    event();
    void *p = pc.real.mmap(addr, len, prot, flags, fd, off);
    /* read-only ones too: an msync through any shared mapping syncs the
    ** file's range */
    if (p == MAP_FAILED || !(flags & MAP_SHARED)) return p;
    pthread_mutex_lock(&pc.mu);
    struct stat st;
    int id = fstat(fd, &st) == 0 ? id_of(st.st_dev, st.st_ino) : -1;
    if (id >= 0) {
        if (pc.nmaps == pc.capmaps) {
            pc.capmaps = pc.capmaps ? pc.capmaps * 2 : 32;
            pc.maps = xrealloc(pc.maps, pc.capmaps * sizeof *pc.maps);
        }
        pc.maps[pc.nmaps++] = (pc_map){p, len, (uint32_t)id, off, (size_t)st.st_size,
                                       dropped_fd(fd, false)};
        if (getenv("PC_DEBUG")) fprintf(stderr, "mmap %p id %u\n", p, id);
    }
    pthread_mutex_unlock(&pc.mu);
    return p;
}

static int pc_munmap(void *addr, size_t len)
{
    event();
    pthread_mutex_lock(&pc.mu);
    for (size_t i = 0; i < pc.nmaps; i++)
        if (pc.maps[i].addr == addr) {
            if (getenv("PC_DEBUG")) fprintf(stderr, "munmap %p id %u\n", addr, pc.maps[i].id);
            pc.maps[i] = pc.maps[--pc.nmaps];
            break;
        }
    int rc = pc.real.munmap(addr, len);
    pthread_mutex_unlock(&pc.mu);
    return rc;
}

static ssize_t pc_pwrite(int fd, const void *b, size_t n, off_t off)
{
    event();
    return pc.real.pwrite(fd, b, n, off);
}

static ssize_t pc_pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    event();
    return pc.real.pwritev(fd, iov, n, off);
}

static int pc_fallocate(int fd, int mode, off_t off, off_t len)
{
    event();
    return pc.real.fallocate(fd, mode, off, len);
}

static int pc_ftruncate(int fd, off_t len)
{
    event();
    return pc.real.ftruncate(fd, len);
}

/* The shim without tracking: syncs cost nothing (the checks' own runs). */
static int nosync_fd(int fd)
{
    (void)fd;
    return 0;
}

static int nosync_msync(void *a, size_t l, int f)
{
    return f & MS_SYNC ? 0 : msync(a, l, f);
}

static void pc_install_nosync(void)
{
    sl__os_reset();
    sl__os.fsync = nosync_fd;
    sl__os.fdatasync = nosync_fd;
    sl__os.msync = nosync_msync;
}

/* Walk root: the files' ids and their current content (at start: durable;
** at the cut: the page cache). */
static void walk(const char *path, uint32_t dir, bool start)
{
    DIR *d = opendir(path);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *sub = tu_path("%s/%s", path, e->d_name);
        struct stat st;
        if (lstat(sub, &st) != 0) {
            free(sub);
            continue;
        }
        int id = id_of(st.st_dev, st.st_ino);
        if (start) {
            id = (int)new_id(&st);
            log_op(OP_LINK, dir, e->d_name, 0, NULL, (uint32_t)id, true);
        } else if (id < 0) {
            pc_harness_err("%s appeared outside the shim", sub);
        }
        if (id >= 0 && S_ISDIR(st.st_mode)) {
            walk(sub, (uint32_t)id, start);
        } else if (id >= 0) {
            pc_file *f = &pc.f[id];
            if (start) {
                read_path_all(sub, &f->dur, &f->dlen);
            } else {
                free(f->cur);
                read_path_all(sub, &f->cur, &f->clen);
                f->have_cur = true;
            }
        }
        free(sub);
    }
    closedir(d);
}

static void pc_reset_state(void)
{
    for (size_t i = 0; i < pc.nf; i++) {
        free(pc.f[i].dur);
        free(pc.f[i].cur);
    }
    for (size_t i = 0; i < pc.nops; i++) {
        free(pc.ops[i].n1);
        free(pc.ops[i].n2);
    }
    free(pc.f);
    free(pc.ops);
    free(pc.maps);
    free(pc.root);
    pc.f = NULL;
    pc.ops = NULL;
    pc.maps = NULL;
    pc.root = NULL;
    pc.nf = pc.capf = pc.nops = pc.capops = pc.nmaps = pc.capmaps = 0;
}

/* Start tracking root (everything in it now is durable); the cut falls
** `after` events into step `step` (-1: opening the stream). */
static void pc_start(const char *root, int step, uint32_t after, void (*on_cut)(void))
{
    pc_reset_state();
    pc.root = strdup(root);
    pc.rootlen = strlen(root);
    pc.err[0] = '\0';
    pc.on_cut = on_cut;
    pc.cut_step = step;
    pc.cut_after = after;
    atomic_store(&pc.cut_at, UINT64_MAX);
    pc.cut_event = 0;
    pc.cut_fell_step = -2;
    atomic_store(&pc.events, 0);
    atomic_store(&pc.cut, false);
    struct stat st;
    assert_int_equal(lstat(root, &st), 0);
    new_id(&st);                                    /* id 0: the root */
    walk(root, 0, true);
    sl__os_reset();
    pc.real = sl__os;
    sl__os.open = pc_open;
    sl__os.pwrite = pc_pwrite;
    sl__os.pwritev = pc_pwritev;
    sl__os.fallocate = pc_fallocate;
    sl__os.ftruncate = pc_ftruncate;
    sl__os.fsync = pc_fsync;
    sl__os.fdatasync = pc_fdatasync;
    sl__os.msync = pc_msync;
    sl__os.rename = pc_rename;
    sl__os.unlink = pc_unlink;
    sl__os.mkdir = pc_mkdir;
    sl__os.rmdir = pc_rmdir;
    sl__os.mmap = pc_mmap;
    sl__os.munmap = pc_munmap;
    pc.installed = true;
    atomic_store(&pc.tracking, true);
}

/* The cut: capture what the page cache holds; from here nothing counts. */
static int g_step;

static void pc_cut(void)
{
    pthread_mutex_lock(&pc.mu);
    if (atomic_load(&pc.tracking)) {
        walk(pc.root, 0, false);
        if (pc.on_cut) pc.on_cut();
        pc.cut_event = atomic_load(&pc.events);
        pc.cut_fell_step = g_step;
        atomic_store(&pc.tracking, false);
        atomic_store(&pc.cut, true);
    }
    pthread_mutex_unlock(&pc.mu);
}

static void pc_stop(void)
{
    atomic_store(&pc.tracking, false);
    pc.installed = false;
    pc_install_nosync();
}

/* ---- the rebuild ---------------------------------------------------------- */

enum { ST_OLD, ST_NEW, ST_MIX };

typedef struct ns_ent {
    uint32_t dir, id;
    const char *name;
} ns_ent;

typedef struct rebuild_info {
    int style;                  /* ST_... */
    bool ordered;               /* namespace: a prefix of the log */
    uint32_t p_apply;           /* weak: % of undurable ops applied */
    size_t prefix, nops, forced;
} rebuild_info;

static bool op_forced(size_t i)
{
    const pc_op *o = &pc.ops[i];
    if (o->initial) return true;
    if (pc.f[o->d1].fsync_pos > i) return true;
    return o->kind == OP_RENAME && pc.f[o->d2].fsync_pos > i;
}

static ssize_t ns_find(ns_ent *ns, size_t n, uint32_t dir, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (ns[i].dir == dir && !strcmp(ns[i].name, name)) return (ssize_t)i;
    return -1;
}

static void ns_set(ns_ent **ns, size_t *n, uint32_t dir, const char *name, uint32_t id)
{
    ssize_t i = ns_find(*ns, *n, dir, name);
    if (i >= 0) {
        (*ns)[i].id = id;
        return;
    }
    *ns = xrealloc(*ns, (*n + 1) * sizeof **ns);
    (*ns)[(*n)++] = (ns_ent){dir, id, name};
}

static void ns_del(ns_ent *ns, size_t *n, size_t i) { ns[i] = ns[--*n]; }

static bool is_segment_name(const char *name)
{
    size_t l = strlen(name);
    return (l >= 4 && !strcmp(name + l - 4, ".seg")) || strstr(name, ".seg.") != NULL;
}

/* One page of a file after the cut. */
static void mix_page(uint8_t *out, const uint8_t *old, const uint8_t *nw, size_t n,
                     bool had_old, int style, uint64_t *r)
{
    if (style == ST_NEW || (had_old && !memcmp(old, nw, n))) {
        memcpy(out, style == ST_NEW ? nw : old, n);
        return;
    }
    if (style == ST_OLD) {
        memcpy(out, old, n);            /* zeros where nothing was durable */
        return;
    }
    uint32_t c = rnd(r, 100);
    if (had_old) {
        if (c < 35) memcpy(out, old, n);
        else if (c < 70) memcpy(out, nw, n);
        else if (c < 85) {
            /* torn write: a prefix of the page new, the rest old */
            size_t t = rnd(r, 4) ? 512 * (1 + rnd(r, 7)) : 1 + rnd(r, 4095);
            if (t > n) t = n;
            memcpy(out, nw, t);
            memcpy(out + t, old + t, n - t);
        } else {
            for (size_t s = 0; s < n; s += 512) {
                size_t k = n - s < 512 ? n - s : 512;
                memcpy(out + s, rnd(r, 2) ? nw + s : old + s, k);
            }
            if (rnd(r, 2)) {
                /* and a torn sector: a prefix of it new, the rest old */
                size_t s = 512 * rnd(r, (uint32_t)((n + 511) / 512));
                size_t t = s + rnd(r, 512);
                if (t > n) t = n;
                if (s < t) memcpy(out + s, nw + s, t - s);
                if (t < n && t < s + 512) {
                    size_t e = s + 512 < n ? s + 512 : n;
                    memcpy(out + t, old + t, e - t);
                }
            }
        }
        return;
    }
    /* nothing durable here: new, zeros, garbage, or a new prefix */
    size_t t = 0;
    if (c < 35) t = n;
    else if (c < 60) t = 0;
    else t = rnd(r, 4) ? 512 * rnd(r, 8) : rnd(r, 4096);
    if (t > n) t = n;
    memcpy(out, nw, t);
    bool garbage = c >= 60 ? rnd(r, 3) == 0 : c >= 50;
    if (garbage)
        for (size_t k = t; k < n; k += 8) {
            uint64_t g = sm64(r);
            memcpy(out + k, &g, n - k < 8 ? n - k : 8);
        }
    else
        memset(out + t, 0, n - t);
}

static void build_file(const pc_file *f, int style, uint64_t *r, uint8_t **out, size_t *outlen)
{
    const uint8_t *d = f->dur, *c = f->have_cur ? f->cur : f->dur;
    size_t dl = f->dlen, cl = f->have_cur ? f->clen : f->dlen;
    size_t len;
    if (cl == dl || style == ST_NEW) len = cl;
    else if (style == ST_OLD) len = dl;
    else {
        switch (rnd(r, 3)) {
        case 0: len = dl; break;
        case 1: len = cl; break;
        default:
            len = cl > dl ? dl + 512 * (size_t)rnd(r, (uint32_t)((cl - dl) / 512 + 1)) : cl;
            if (len > cl) len = cl;
        }
    }
    uint8_t *o = xrealloc(NULL, len);
    static uint8_t oldp[4096], newp[4096];
    for (size_t off = 0; off < len; off += 4096) {
        size_t n = len - off < 4096 ? len - off : 4096;
        memset(oldp, 0, sizeof oldp);
        memset(newp, 0, sizeof newp);
        if (off < dl) memcpy(oldp, d + off, dl - off < n ? dl - off : n);
        if (off < cl) memcpy(newp, c + off, cl - off < n ? cl - off : n);
        mix_page(o + off, oldp, newp, n, off < dl, style, r);
    }
    *out = o;
    *outlen = len;
}

static void write_file(const char *path, const uint8_t *b, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(fd, b + done, n - done, (off_t)done);
        assert_true(w > 0);
        done += (size_t)w;
    }
    close(fd);
}

static void materialize(const char *path, uint32_t dir, ns_ent *ns, size_t nns, int style,
                        uint64_t *r, bool *seen, int depth)
{
    assert_true(depth < 16);
    for (size_t i = 0; i < nns; i++) {
        if (ns[i].dir != dir) continue;
        uint32_t id = ns[i].id;
        char *sub = tu_path("%s/%s", path, ns[i].name);
        if (pc.f[id].dir) {
            if (!seen[id]) {
                seen[id] = true;
                assert_int_equal(mkdir(sub, 0700), 0);
                materialize(sub, id, ns, nns, style, r, seen, depth + 1);
            }
        } else {
            uint8_t *b;
            size_t n;
            build_file(&pc.f[id], style, r, &b, &n);
            /* a reboot: the segment headers name another boot */
            uint64_t boot = sl__boot_id();
            if (is_segment_name(ns[i].name) && n >= SL_H_BOOT + 8 && boot &&
                sl__ld64(b + SL_H_BOOT) == boot)
                sl__st64(b + SL_H_BOOT, boot ^ 0x5a5a5a5a00000000ull);
            write_file(sub, b, n);
            free(b);
        }
        free(sub);
    }
}

/* Build, at out, the tracked root as the cut may have left it. */
static void pc_rebuild(const char *out, uint64_t *r, rebuild_info *info)
{
    memset(info, 0, sizeof *info);
    uint32_t s = rnd(r, 10);
    info->style = s < 3 ? ST_OLD : s < 4 ? ST_NEW : ST_MIX;
    info->ordered = rnd(r, 2);
    info->p_apply = (uint32_t[]){20, 50, 80}[rnd(r, 3)];
    info->nops = pc.nops;
    size_t last_forced = 0;
    for (size_t i = 0; i < pc.nops; i++)
        if (op_forced(i)) {
            last_forced = i + 1;
            info->forced++;
        }
    info->prefix = last_forced + rnd(r, (uint32_t)(pc.nops - last_forced + 1));
    ns_ent *ns = NULL;
    size_t nns = 0;
    for (size_t i = 0; i < pc.nops; i++) {
        bool apply = info->ordered ? i < info->prefix
                                   : op_forced(i) || rnd(r, 100) < info->p_apply;
        if (!apply) continue;
        const pc_op *o = &pc.ops[i];
        ssize_t k;
        switch (o->kind) {
        case OP_LINK:
            ns_set(&ns, &nns, o->d1, o->n1, o->id);
            break;
        case OP_RENAME:
            k = ns_find(ns, nns, o->d1, o->n1);
            if (k >= 0 && ns[k].id == o->id) {
                ns_del(ns, &nns, (size_t)k);
                ns_set(&ns, &nns, o->d2, o->n2, o->id);
            }
            break;
        case OP_UNLINK:
            k = ns_find(ns, nns, o->d1, o->n1);
            if (k >= 0 && ns[k].id == o->id) ns_del(ns, &nns, (size_t)k);
            break;
        }
    }
    assert_int_equal(mkdir(out, 0700), 0);
    bool *seen = calloc(pc.nf, 1);
    materialize(out, 0, ns, nns, info->style, r, seen, 0);
    free(seen);
    free(ns);
}

/* ---- records ------------------------------------------------------------- */

static uint32_t pre_len[MAX_IDS];             /* data length by id (pre-cut) */
static uint32_t post_len[MAX_IDS];

static uint32_t len_of(uint32_t id)
{
    if (id >= POST_BASE) return id - POST_BASE < MAX_IDS ? post_len[id - POST_BASE] : 0;
    return id < MAX_IDS ? pre_len[id] : 0;
}

static void key_of(uint32_t id, char key[32])
{
    snprintf(key, 32, "pk-%u", (id * 2654435761u >> 9) % 23);
}

static void fill_data(uint32_t id, uint32_t len, uint8_t *d)
{
    uint64_t s = id * 0x9e3779b97f4a7c15ull + len;
    assert_true(len >= 16);
    memcpy(d, "PCR1", 4);
    memcpy(d + 4, &id, 4);
    memcpy(d + 8, &len, 4);
    memcpy(d + 12, "....", 4);
    for (uint32_t k = 16; k < len; k += 8) {
        uint64_t v = sm64(&s);
        memcpy(d + k, &v, len - k < 8 ? len - k : 8);
    }
}

/* NULL if the record is intact and one of ours; *id_out its id. */
static const char *record_check(const sl_record *x, uint32_t *id_out)
{
    static uint8_t buf[1 << 20];
    if (x->data_len < 16) return "data shorter than any record put";
    if (memcmp(x->data, "PCR1", 4)) return "data does not start like a record put";
    uint32_t id, len;
    memcpy(&id, (const uint8_t *)x->data + 4, 4);
    memcpy(&len, (const uint8_t *)x->data + 8, 4);
    *id_out = id;
    if (len_of(id) == 0) return "an id never put";
    if (len != len_of(id) || x->data_len != len) return "wrong length";
    if (len > sizeof buf) return "too long";
    fill_data(id, len, buf);
    if (memcmp(buf, x->data, len)) return "data differs from what was put";
    char key[32];
    key_of(id, key);
    if (x->key_len != strlen(key) || memcmp(key, x->partition_key, x->key_len))
        return "partition key differs from what was put";
    return NULL;
}

/* ---- the workload ---------------------------------------------------------- */

typedef struct ack {
    uint32_t id;
    uint64_t seq;
    uint32_t shard;
} ack;

typedef struct ckpt {
    uint32_t shard;
    uint64_t seq;
    int state;                   /* 0 in flight, 1 acknowledged, 2 failed */
} ckpt;

typedef struct wl {
    /* configuration */
    sl_durability mode;
    uint32_t shards;
    bool enc;
    int steps, reshard_at, reshard_kind, cons_at;
    uint32_t sync_ms;
    /* what happened before the cut (only updated while no cut) */
    ack acks[MAX_IDS];
    size_t nacks;
    size_t sync_upto;            /* acks[0, sync_upto) covered by a sync */
    ckpt ckpts[256];
    size_t nckpts;
    int cons_state;              /* 0 none, 1 in flight, 2 registered */
    int reshard_state;           /* 0 none, 1 in flight, 2 done, 3 failed */
    uint32_t shards_before, shards_after;
    uint32_t next_id;
    /* for the report */
    int puts, batches, syncs;
} wl;

static wl W;
static const sl_key_provider *g_keys;
static char g_keyfile[4096];

static void wl_lock(void) { pthread_mutex_lock(&pc.mu); }
static void wl_unlock(void) { pthread_mutex_unlock(&pc.mu); }
static bool wl_live(void) { return !atomic_load(&pc.cut); }

static void on_cut(void) { /* the bookkeeping stops with wl_live() */ }

static void note_ack(uint32_t id, uint64_t seq, uint32_t shard)
{
    wl_lock();
    if (wl_live() && W.nacks < MAX_IDS) W.acks[W.nacks++] = (ack){id, seq, shard};
    wl_unlock();
}

static uint32_t new_rec(uint64_t *r, bool large)
{
    uint32_t id = W.next_id++;
    uint32_t len = large ? (rnd(r, 4) ? 8000 + rnd(r, 12000) : 66000 + rnd(r, 4000))
                         : 16 + rnd(r, rnd(r, 4) ? 600 : 3000);
    pre_len[id] = len;
    return id;
}

static void do_put(sl_producer *p, uint64_t *r, bool large)
{
    static uint8_t d[80000];
    uint32_t id = new_rec(r, large);
    char key[32];
    key_of(id, key);
    fill_data(id, pre_len[id], d);
    sl_put_entry e = {key, d, pre_len[id], NULL};
    sl_put_result res;
    int rc = sl_producer_put(p, &e, &res);
    if (rc == 0) note_ack(id, res.sequence, res.shard_index);
    else if (wl_live()) fail_msg("put before the cut failed: %s", sl_errmsg(p));
    W.puts++;
}

static void do_batch(sl_producer *p, uint64_t *r)
{
    enum { MAXB = 16 };
    static uint8_t d[MAXB][4096];
    static char keys[MAXB][32];
    sl_put_entry e[MAXB];
    sl_put_result res[MAXB];
    uint32_t ids[MAXB];
    size_t n = 2 + rnd(r, MAXB - 1);
    for (size_t i = 0; i < n; i++) {
        ids[i] = W.next_id++;
        pre_len[ids[i]] = 16 + rnd(r, 4000);
        key_of(ids[i], keys[i]);
        fill_data(ids[i], pre_len[ids[i]], d[i]);
        e[i] = (sl_put_entry){keys[i], d[i], pre_len[ids[i]], NULL};
    }
    size_t failed = 0;
    int rc = sl_producer_put_batch(p, e, n, res, &failed);
    if (rc == 0) {
        for (size_t i = 0; i < n; i++)
            if (res[i].error == 0) note_ack(ids[i], res[i].sequence, res[i].shard_index);
    }
    if ((rc || failed) && wl_live()) fail_msg("batch before the cut failed: %s", sl_errmsg(p));
    W.batches++;
}

static void do_sync(sl_stream *s)
{
    wl_lock();
    size_t upto = W.nacks;
    wl_unlock();
    int rc = sl_stream_sync(s);
    wl_lock();
    if (rc == 0 && wl_live()) W.sync_upto = upto;
    wl_unlock();
    if (rc && wl_live()) fail_msg("sync before the cut failed: %s", sl_errmsg(s));
    W.syncs++;
}

static void do_ckpt(sl_consumer *c, uint64_t *r)
{
    wl_lock();
    if (!W.nacks || W.nckpts == 256 || !wl_live()) {
        wl_unlock();
        return;
    }
    /* the newest acknowledged record of the shard of a random one */
    uint32_t shard = W.acks[rnd(r, (uint32_t)W.nacks)].shard;
    uint64_t seq = 0;
    for (size_t i = W.nacks; i > 0; i--)
        if (W.acks[i - 1].shard == shard) {
            seq = W.acks[i - 1].seq;
            break;
        }
    /* keep each shard's checkpoints rising (a checkpoint may move back;
    ** this workload does not) */
    for (size_t i = 0; i < W.nckpts; i++)
        if (W.ckpts[i].shard == shard && W.ckpts[i].seq >= seq) {
            wl_unlock();
            return;
        }
    size_t k = W.nckpts++;
    W.ckpts[k] = (ckpt){shard, seq, 0};
    wl_unlock();
    char sid[SL_SHARD_ID_LEN + 1];
    snprintf(sid, sizeof sid, "shardId-%012u", shard);
    int rc = sl_consumer_checkpoint(c, sid, seq);
    wl_lock();
    if (wl_live()) W.ckpts[k].state = rc == 0 ? 1 : 2;
    wl_unlock();
    if (rc && wl_live()) fail_msg("checkpoint before the cut failed: %s", sl_errmsg(c));
}

static void do_reshard(sl_stream *s)
{
    static const char *mid = "170141183460469231731687303715884105728";   /* 2^127 */
    static const char *quarter = "85070591730234615865843651857942052864"; /* 2^126 */
    sl_shard_list *l;
    assert_int_equal(sl_stream_list_shards(&l, s), 0);
    uint32_t before = (uint32_t)l->count, open = 0;
    for (size_t i = 0; i < l->count; i++) open += l->shards[i].open != 0;
    sl_shard_list_free(l);
    uint32_t after;
    wl_lock();
    if (wl_live()) {
        W.reshard_state = 1;
        W.shards_before = before;
    }
    wl_unlock();
    int rc;
    if (open == 1) {
        after = before + 2;
        rc = W.reshard_kind ? sl_stream_update_shard_count(s, 2)
                            : sl_stream_split_shard(s, "shardId-000000000000", mid);
    } else if (W.reshard_kind == 0) {
        after = before + 1;
        rc = sl_stream_merge_shards(s, "shardId-000000000000", "shardId-000000000001");
    } else {
        after = before + 2;
        rc = sl_stream_split_shard(s, "shardId-000000000000", quarter);
    }
    wl_lock();
    if (wl_live()) {
        W.reshard_state = rc == 0 ? 2 : 3;
        W.shards_after = after;
    }
    wl_unlock();
    if (rc && wl_live()) fail_msg("reshard before the cut failed: %s", sl_errmsg(s));
}

static sl_open_opts wl_opts(tu_reports *rep, sl_durability mode)
{
    sl_open_opts o = SL_OPEN_OPTS_INIT;
    o.keys = W.enc ? g_keys : NULL;
    o.durability = mode;
    if (mode == SL_DURABILITY_INTERVAL) o.sync_interval_ms = W.sync_ms;
    if (rep) {
        o.report = tu_report_fn;
        o.report_ctx = rep;
    }
    return o;
}

static void wl_create(const char *root)
{
    sl_stream_config c = SL_STREAM_CONFIG_INIT;
    c.name = NAME;
    c.shard_count = W.shards;
    c.durability = W.mode;
    c.segment_bytes = SL_SEGMENT_BYTES_MIN;
    c.sync_interval_ms = W.sync_ms;
    if (W.enc) {
        c.encryption_type = SL_ENCRYPTION_KMS;
        c.kms_key_id = KEY_ID;
    }
    sl_open_opts o = wl_opts(NULL, 0);
    sl_stream *s = NULL;
    int rc = sl_stream_create(&s, root, &c, &o);
    if (rc) fail_msg("create: %s", sl_errmsg(NULL));
    assert_int_equal(sl_stream_close(s), 0);
}

/* The workload, until its end or the cut. */
static void wl_run(const char *root, uint64_t *r)
{
    sl_open_opts o = wl_opts(NULL, 0);
    sl_stream *s = NULL;
    g_step = -1;
    tick(-1);
    int rc = sl_stream_open(&s, root, NAME, &o);
    if (rc) fail_msg("workload open: %s", sl_errmsg(NULL));
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    sl_consumer *c = NULL;
    for (int step = 0; step < W.steps && wl_live(); step++) {
        g_step = step;
        tick(step);
        if (!wl_live()) break;
        if (step == W.cons_at) {
            wl_lock();
            if (wl_live()) W.cons_state = 1;
            wl_unlock();
            rc = sl_consumer_register(s, "reader", SL_CONSUMER_SHARED);
            wl_lock();
            if (wl_live() && rc == 0) W.cons_state = 2;
            wl_unlock();
            if (rc && wl_live()) fail_msg("register: %s", sl_errmsg(s));
            if (rc == 0) assert_int_equal(sl_consumer_open(&c, s, "reader"), 0);
            continue;
        }
        if (step == W.reshard_at) {
            do_reshard(s);
            continue;
        }
        uint32_t k = rnd(r, 100);
        if (k < 58) do_put(p, r, false);
        else if (k < 78) do_batch(p, r);
        else if (k < 84) do_sync(s);
        else if (k < 93) {
            if (c) do_ckpt(c, r);
            else do_put(p, r, false);
        } else do_put(p, r, true);
        if (W.mode == SL_DURABILITY_INTERVAL && step % 8 == 7) {
            /* pacing, so that the syncer's rounds fall among the puts */
            struct timespec ts = {0, 300000};
            nanosleep(&ts, NULL);
        }
    }
    g_step = W.steps;
    tick(W.steps);
    pc_cut();                   /* after the last step, if not before */
    sl_producer_close(p);
    if (c) assert_int_equal(sl_consumer_close(c), 0);
    rc = sl_stream_close(s);
    if (rc) fail_msg("workload close: %s", sl_errmsg(NULL));
}

/* ---- the checks ------------------------------------------------------------ */

typedef struct got {
    uint32_t id;
    uint64_t seq;
    uint32_t shard;
} got;

typedef struct readset {
    got *v;
    size_t n, cap;
    int corrupt;
} readset;

static char g_ctx[1024];         /* what is being checked, for failures */
static tu_reports *g_rep;        /* damage reported by the open */
static void dump_reads(void);
static char g_tree[4096];        /* the rebuilt tree, kept on failure */

#define PC_FAIL(...)                                                            \
    do {                                                                        \
        char m_[1024];                                                          \
        snprintf(m_, sizeof m_, __VA_ARGS__);                                   \
        fprintf(stderr, "%s\n  %s\n  reported:\n%s", g_ctx, m_,                  \
                g_rep && g_rep->count ? g_rep->all : "nothing\n");               \
        dump_reads();                                                           \
        keep_tree();                                                            \
        fail_msg("%s", m_);                                                     \
    } while (0)

static void keep_tree(void)
{
    const char *k = getenv("SL_POWERCUT_KEEP");
    if (!k || !*k || !g_tree[0]) return;
    const char *base = getenv("TMPDIR");
    char *dst = tu_path("%s/shardlog-powercut-fail-%ld", base && *base ? base : "/tmp",
                        (long)getpid());
    if (rename(g_tree, dst) == 0) {
        fprintf(stderr, "rebuilt tree kept at %s (key file: master.key there)\n", dst);
        char parent[4096];
        snprintf(parent, sizeof parent, "%s", g_tree);
        *strrchr(parent, '/') = '\0';
        char *cmd = tu_path("cp %s %s/master.key; mv %s/as-rebuilt %s/as-rebuilt", g_keyfile,
                            dst, parent, dst);
        (void)!system(cmd);
        free(cmd);
    }
    free(dst);
}

static uint32_t shard_of_id(const char *sid)
{
    return (uint32_t)strtoul(sid + 8, NULL, 10);
}

/* Read every shard from TRIM_HORIZON; every record must be intact. */
static void read_all(sl_stream *s, readset *out, const char *what)
{
    static sl_record recs[1000];
    sl_shard_list *l;
    int rc = sl_stream_list_shards(&l, s);
    if (rc) PC_FAIL("%s: list shards: %s", what, sl_errmsg(s));
    for (size_t i = 0; i < l->count; i++) {
        sl_iter *it;
        rc = sl_iter_open(&it, s, l->shards[i].shard_id, SL_ITER_TRIM_HORIZON, 0);
        if (rc) PC_FAIL("%s: iterator on %s: %s", what, l->shards[i].shard_id, sl_errmsg(s));
        uint32_t shard = shard_of_id(l->shards[i].shard_id);
        uint64_t prev = 0;
        for (int guard = 0;; guard++) {
            if (guard > 100000) PC_FAIL("%s: no end reading %s", what, l->shards[i].shard_id);
            sl_read_result res;
            rc = sl_iter_read(it, recs, 1000, &res);
            if (getenv("PC_DEBUG"))
                fprintf(stderr, "%s %s: rc %d count %zu %" PRIu64 "..%" PRIu64 "%s\n", what,
                        l->shards[i].shard_id, rc, rc ? 0 : res.count,
                        rc || !res.count ? 0 : recs[0].sequence,
                        rc || !res.count ? 0 : recs[res.count - 1].sequence, rc ? sl_errmsg(it) : "");
            if (rc == SL_ECORRUPT) {
                out->corrupt++;
                continue;
            }
            if (rc) PC_FAIL("%s: read %s: %s", what, l->shards[i].shard_id, sl_errmsg(it));
            if (res.count == 0) break;
            for (size_t k = 0; k < res.count; k++) {
                uint32_t id = 0;
                const char *bad = record_check(&recs[k], &id);
                if (bad)
                    PC_FAIL("%s: %s seq %" PRIu64 ": a corrupt record returned as data: %s",
                            what, l->shards[i].shard_id, recs[k].sequence, bad);
                if (recs[k].sequence <= prev)
                    PC_FAIL("%s: %s: sequence %" PRIu64 " after %" PRIu64, what,
                            l->shards[i].shard_id, recs[k].sequence, prev);
                prev = recs[k].sequence;
                if (out->n == out->cap) {
                    out->cap = out->cap ? out->cap * 2 : 256;
                    out->v = xrealloc(out->v, out->cap * sizeof *out->v);
                }
                out->v[out->n++] = (got){id, recs[k].sequence, shard};
            }
        }
        sl_iter_close(it);
    }
    sl_shard_list_free(l);
    /* each id once, each sequence number once */
    for (size_t i = 0; i < out->n; i++)
        for (size_t k = i + 1; k < out->n; k++) {
            if (out->v[i].id == out->v[k].id)
                PC_FAIL("%s: record %u read twice (seq %" PRIu64 " and %" PRIu64 ")", what,
                        out->v[i].id, out->v[i].seq, out->v[k].seq);
            if (out->v[i].seq == out->v[k].seq)
                PC_FAIL("%s: sequence number %" PRIu64 " twice", what, out->v[i].seq);
        }
}

static const readset *g_reads;

/* Per shard: runs of consecutive records read (by sequence number). */
static void dump_reads(void)
{
    if (!g_reads) return;
    const readset *rs = g_reads;
    fprintf(stderr, "  read (shard: first..last seq, count):\n");
    for (size_t i = 0; i < rs->n;) {
        size_t k = i;
        while (k + 1 < rs->n && rs->v[k + 1].shard == rs->v[i].shard) k++;
        fprintf(stderr, "    shard %u: %" PRIu64 "..%" PRIu64 " (%zu)\n", rs->v[i].shard,
                rs->v[i].seq, rs->v[k].seq, k - i + 1);
        i = k + 1;
    }
}

static const got *find_id(const readset *rs, uint32_t id)
{
    for (size_t i = 0; i < rs->n; i++)
        if (rs->v[i].id == id) return &rs->v[i];
    return NULL;
}

static bool promised(size_t i)
{
    if (W.mode == SL_DURABILITY_ALWAYS || i < W.sync_upto) return true;
    for (size_t k = 0; k < W.nckpts; k++)
        if (W.ckpts[k].state == 1 && W.ckpts[k].shard == W.acks[i].shard &&
            W.acks[i].seq <= W.ckpts[k].seq)
            return true;
    return false;
}

static void check_promises(const readset *rs)
{
    for (size_t i = 0; i < W.nacks; i++) {
        const ack *a = &W.acks[i];
        const got *g = find_id(rs, a->id);
        if (g && (g->seq != a->seq || g->shard != a->shard))
            PC_FAIL("record %u acknowledged as seq %" PRIu64 " in shard %u reads as seq %" PRIu64
                    " in shard %u",
                    a->id, a->seq, a->shard, g->seq, g->shard);
        if (!g && promised(i))
            PC_FAIL("record %u (seq %" PRIu64 ", shard %u, ack %zu of %zu%s) was promised "
                    "durable and is gone",
                    a->id, a->seq, a->shard, i, W.nacks,
                    i < W.sync_upto ? ", covered by a sync" : "");
    }
}

static void check_shards(sl_stream *s)
{
    sl_shard_list *l;
    assert_int_equal(sl_stream_list_shards(&l, s), 0);
    uint32_t n = (uint32_t)l->count;
    sl_shard_list_free(l);
    uint32_t want = W.shards;
    if (W.reshard_state == 2) want = W.shards_after;
    if (W.reshard_state == 1 || W.reshard_state == 3) {
        if (n != W.shards_before && n != W.shards_after)
            PC_FAIL("a reshard in flight left %u shards (%u before, %u after)", n,
                    W.shards_before, W.shards_after);
    } else if (n != want) {
        PC_FAIL("%u shards after the cut; expected %u", n, want);
    }
}

static void check_consumer(sl_stream *s, const readset *rs)
{
    sl_consumer *c = NULL;
    int rc = sl_consumer_open(&c, s, "reader");
    if (W.cons_state == 2 && rc) PC_FAIL("registered consumer: open: %s", sl_errmsg(s));
    if (W.cons_state == 0 && rc != SL_ENOTFOUND)
        PC_FAIL("a consumer never registered opens with %d", rc);
    if (rc == SL_ENOTFOUND && W.cons_state != 2) return;
    if (rc) PC_FAIL("consumer being registered: open: %d %s", rc, sl_errmsg(s));
    sl_shard_list *l;
    assert_int_equal(sl_stream_list_shards(&l, s), 0);
    for (size_t i = 0; i < l->count; i++) {
        const char *sid = l->shards[i].shard_id;
        uint32_t shard = shard_of_id(sid);
        uint64_t seq = 0, acked = 0;
        bool any = false, written = false;
        for (size_t k = 0; k < W.nckpts; k++) {
            if (W.ckpts[k].shard != shard) continue;
            any = true;
            if (W.ckpts[k].state == 1 && W.ckpts[k].seq > acked) acked = W.ckpts[k].seq;
        }
        rc = sl_consumer_get_checkpoint(c, sid, &seq);
        if (rc == SL_ENOTFOUND) {
            if (acked) PC_FAIL("%s: acknowledged checkpoint %" PRIu64 " is gone", sid, acked);
        } else if (rc) {
            PC_FAIL("%s: get checkpoint: %d %s", sid, rc, sl_errmsg(c));
        } else {
            for (size_t k = 0; k < W.nckpts; k++)
                written |= W.ckpts[k].shard == shard && W.ckpts[k].seq == seq;
            if (!any || !written) PC_FAIL("%s: checkpoint %" PRIu64 " was never written", sid, seq);
            if (seq < acked)
                PC_FAIL("%s: checkpoint %" PRIu64 " is older than the acknowledged %" PRIu64, sid,
                        seq, acked);
            bool there = false;
            for (size_t k = 0; k < rs->n; k++)
                there |= rs->v[k].shard == shard && rs->v[k].seq == seq;
            if (!there)
                PC_FAIL("%s: checkpoint %" PRIu64 " points past the data (no such record)", sid,
                        seq);
            sl_iter *it;
            rc = sl_consumer_iter_open(&it, c, sid, SL_ITER_TRIM_HORIZON, 0);
            if (rc) PC_FAIL("%s: resume after checkpoint %" PRIu64 ": %s", sid, seq, sl_errmsg(c));
            sl_iter_close(it);
        }
    }
    sl_shard_list_free(l);
    assert_int_equal(sl_consumer_close(c), 0);
}

/* New records after the cut: above every number given out before it. */
static void put_after(sl_stream *s, const readset *rs, uint64_t *r, readset *added)
{
    uint64_t floor = 0;
    for (size_t i = 0; i < W.nacks; i++)
        if (W.acks[i].seq > floor) floor = W.acks[i].seq;
    for (size_t i = 0; i < rs->n; i++)
        if (rs->v[i].seq > floor) floor = rs->v[i].seq;
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    static uint8_t d[4096];
    uint32_t n = 4 + rnd(r, 12);
    for (uint32_t j = 0; j < n; j++) {
        uint32_t id = POST_BASE + j;
        post_len[j] = 16 + rnd(r, 3000);
        char key[32];
        key_of(id, key);
        fill_data(id, post_len[j], d);
        sl_put_entry e = {key, d, post_len[j], NULL};
        sl_put_result res;
        int rc = sl_producer_put(p, &e, &res);
        if (rc) PC_FAIL("put after the cut: %s", sl_errmsg(p));
        if (res.sequence <= floor)
            PC_FAIL("sequence number %" PRIu64 " after the cut is not above %" PRIu64
                    " (given out before it)",
                    res.sequence, floor);
        if (added->n == added->cap) {
            added->cap = added->cap ? added->cap * 2 : 32;
            added->v = xrealloc(added->v, added->cap * sizeof *added->v);
        }
        added->v[added->n++] = (got){id, res.sequence, res.shard_index};
    }
    sl_producer_close(p);
}

static void check_rebuilt(const char *root, uint64_t *r)
{
    tu_reports rep = {0};
    g_rep = &rep;
    sl_stream *s = NULL;
    /* a follower first: it writes nothing and must not return damage */
    sl_open_opts o = wl_opts(&rep, 0);
    o.flags = SL_OPEN_READONLY;
    int rc = sl_stream_open(&s, root, NAME, &o);
    if (rc) PC_FAIL("read-only open: %s", sl_errmsg(NULL));
    readset ro = {0};
    read_all(s, &ro, "read-only");
    assert_int_equal(sl_stream_close(s), 0);
    free(ro.v);

    o = wl_opts(&rep, 0);
    rc = sl_stream_open(&s, root, NAME, &o);
    if (rc) PC_FAIL("writer open after the cut: %s", sl_errmsg(NULL));
    readset rs = {0}, added = {0};
    read_all(s, &rs, "after the cut");
    g_reads = &rs;
    check_promises(&rs);
    check_shards(s);
    check_consumer(s, &rs);
    put_after(s, &rs, r, &added);
    rc = sl_stream_close(s);
    if (rc) PC_FAIL("close after the cut: %s", sl_errmsg(NULL));

    /* reopened: the same records, and the new ones */
    rc = sl_stream_open(&s, root, NAME, &o);
    if (rc) PC_FAIL("second open: %s", sl_errmsg(NULL));
    readset again = {0};
    read_all(s, &again, "reopened");
    if (again.n != rs.n + added.n)
        PC_FAIL("reopened: %zu records; expected %zu + %zu new", again.n, rs.n, added.n);
    for (size_t i = 0; i < rs.n + added.n; i++) {
        const got *want = i < rs.n ? &rs.v[i] : &added.v[i - rs.n];
        const got *g = find_id(&again, want->id);
        if (!g || g->seq != want->seq || g->shard != want->shard)
            PC_FAIL("reopened: record %u (seq %" PRIu64 ") %s", want->id, want->seq,
                    g ? "moved" : "is gone");
    }
    assert_int_equal(sl_stream_close(s), 0);
    free(rs.v);
    free(added.v);
    free(again.v);
    g_rep = NULL;
    g_reads = NULL;
}

/* ---- the loop ----------------------------------------------------------------- */

static const char *mode_name(sl_durability m)
{
    return m == SL_DURABILITY_NONE ? "NONE" : m == SL_DURABILITY_INTERVAL ? "INTERVAL" : "ALWAYS";
}

static uint64_t env_u64(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 0) : def;
}

typedef struct totals {
    uint64_t iters, rebuilds, acks, promised_checked, records, corrupt_reads, reports;
    uint64_t cuts_at_end, by_mode[4], nested;
} totals;

/* A second cut, while the writer open recovers the rebuilt stream at
** `out` (journal replay, quarantine, sealing, the first syncs) or closes
** it: rebuilt again, the stream must still keep the first cut's promises.
** The rebuilt tree is what the disk holds after the reboot: all durable. */
static void recovery_cut(const char *state, uint64_t iter, const char *out, uint64_t *r)
{
    uint32_t after = rnd(r, 4) ? rnd(r, 24) : rnd(r, 160);
    pc_start(out, -1, after, NULL);
    g_step = -1;
    tick(-1);
    tu_reports rep = {0};
    g_rep = &rep;
    sl_open_opts o = wl_opts(&rep, 0);
    sl_stream *s = NULL;
    int rc = sl_stream_open(&s, out, NAME, &o);
    if (rc) {
        pc_stop();
        PC_FAIL("writer open after the cut (tracked): %s", sl_errmsg(NULL));
    }
    rc = sl_stream_close(s);
    g_step = 0;
    pc_cut();
    uint64_t total = atomic_load(&pc.events);
    pc_stop();
    g_rep = NULL;
    if (rc) PC_FAIL("close after the cut (tracked): %s", sl_errmsg(NULL));
    if (pc.err[0]) PC_FAIL("the shim: %s", pc.err);
    char *out2 = tu_path("%s/cut-%" PRIu64 "-again", state, iter);
    rebuild_info info;
    pc_rebuild(out2, r, &info);
    size_t n = strlen(g_ctx);
    snprintf(g_ctx + n, sizeof g_ctx - n,
             "; then cut during recovery at event %" PRIu64 " of %" PRIu64
             " (%u asked), rebuilt with %s pages, namespace %s",
             pc.cut_event, total, after,
             info.style == ST_OLD ? "durable" : info.style == ST_NEW ? "current" : "mixed",
             info.ordered ? "prefix" : "subset");
    snprintf(g_tree, sizeof g_tree, "%s", out2);
    pc_install_nosync();
    check_rebuilt(out2, r);
    g_ctx[n] = '\0';
    snprintf(g_tree, sizeof g_tree, "%s", out);
    tu_rmrf(out2);
    free(out2);
}

static void one_iteration(const char *state, uint64_t seed, uint64_t iter, totals *t)
{
    uint64_t r = seed ^ (iter * 0xd1b54a32d192ed03ull);
    sm64(&r);
    memset(&W, 0, sizeof W);
    memset(pre_len, 0, sizeof pre_len);
    W.next_id = 1;
    W.mode = (sl_durability)(1 + rnd(&r, 3));
    W.shards = 1 + rnd(&r, 2);
    W.enc = rnd(&r, 3) == 0;
    W.steps = 30 + (int)rnd(&r, 120);
    W.reshard_at = rnd(&r, 3) ? (int)rnd(&r, (uint32_t)W.steps) : -1;
    W.reshard_kind = (int)rnd(&r, 2);
    W.cons_at = rnd(&r, 4) ? (int)rnd(&r, (uint32_t)W.steps / 2 + 1) : -1;
    if (W.cons_at == W.reshard_at) W.cons_at = -1;
    W.sync_ms = 1 + rnd(&r, 4);
    /* the cut: during the open, in a step, or after the last one; a few
    ** events into the step (a put in ALWAYS mode makes 3 or more, a
    ** roll-over or a reshard a dozen or more) */
    int cut_step = (int)rnd(&r, (uint32_t)W.steps + 2) - 1;
    uint32_t cut_after = rnd(&r, 4) ? rnd(&r, 6) : rnd(&r, 40);

    char *root = tu_path("%s/root-%" PRIu64, state, iter);
    assert_int_equal(mkdir(root, 0700), 0);
    snprintf(g_ctx, sizeof g_ctx,
             "SL_POWERCUT_SEED=%" PRIu64 " SL_POWERCUT_ITER=%" PRIu64
             ": %s, %u shard(s)%s, %d steps, reshard at %d (kind %d), consumer at %d, "
             "cut %u events into step %d",
             seed, iter, mode_name(W.mode), W.shards, W.enc ? ", encrypted" : "", W.steps,
             W.reshard_at, W.reshard_kind, W.cons_at, cut_after, cut_step);
    pc_install_nosync();
    wl_create(root);
    pc_start(root, cut_step, cut_after, on_cut);
    wl_run(root, &r);
    uint64_t total = atomic_load(&pc.events);
    pc_stop();
    if (pc.err[0]) fail_msg("%s\n  the shim: %s", g_ctx, pc.err);
    if (pc.cut_fell_step >= W.steps) t->cuts_at_end++;
    size_t base = strlen(g_ctx);
    for (int k = 0; k < REBUILDS; k++) {
        char *out = tu_path("%s/cut-%" PRIu64 "-%d", state, iter, k);
        rebuild_info info;
        pc_rebuild(out, &r, &info);
        snprintf(g_ctx + base, sizeof g_ctx - base,
                 " (fell at event %" PRIu64 " of %" PRIu64 ", step %d); rebuild %d: %s pages, "
                 "namespace %s (%zu of %zu ops durable%s); acks %zu, synced %zu, checkpoints %zu",
                 pc.cut_event, total, pc.cut_fell_step, k,
                 info.style == ST_OLD ? "durable" : info.style == ST_NEW ? "current" : "mixed",
                 info.ordered ? "prefix" : "subset", info.forced, info.nops,
                 info.ordered ? "" : ", others at random", W.nacks, W.sync_upto, W.nckpts);
        snprintf(g_tree, sizeof g_tree, "%s", out);
        if (getenv("SL_POWERCUT_KEEP")) {
            /* as rebuilt, before the checks' opens change anything */
            char *cmd = tu_path("cp -a %s %s/as-rebuilt", out, state);
            (void)!system(cmd);
            free(cmd);
        }
        if (k == REBUILDS - 1 && rnd(&r, 2) == 0) {
            t->nested++;
            recovery_cut(state, iter, out, &r);
        } else {
            pc_install_nosync();
            check_rebuilt(out, &r);
        }
        g_tree[0] = '\0';
        tu_rmrf(out);
        if (getenv("SL_POWERCUT_KEEP")) {
            char *p = tu_path("%s/as-rebuilt", state);
            tu_rmrf(p);
            free(p);
        }
        free(out);
        t->rebuilds++;
    }
    g_ctx[base] = '\0';
    for (size_t i = 0; i < W.nacks; i++) t->promised_checked += promised(i);
    t->acks += W.nacks;
    t->by_mode[W.mode]++;
    t->iters++;
    tu_rmrf(root);
    free(root);
}

static void powercut_random(void **state)
{
    const char *st = *state;
    char *kf = tu_path("%s/master.key", st);
    assert_int_equal(sl_keyfile_create(kf), 0);
    sl_key_provider *kp;
    assert_int_equal(sl_keyfile_provider_open(&kp, kf), 0);
    g_keys = kp;
    snprintf(g_keyfile, sizeof g_keyfile, "%s", kf);
    uint64_t seed = env_u64("SL_POWERCUT_SEED", 0);
    if (!seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec * 1000000007ull) ^ (uint64_t)ts.tv_nsec ^
               ((uint64_t)getpid() << 32);
        seed &= (1ull << 53) - 1;
    }
    uint64_t iters = env_u64("SL_POWERCUT_ITERS", DEFAULT_ITERS);
    g_drop = getenv("SL_POWERCUT_DROP");
    g_dropdir = getenv("SL_POWERCUT_DROPDIR");
    const char *only = getenv("SL_POWERCUT_ITER");
    fprintf(stderr, "SL_POWERCUT_SEED=%" PRIu64 " (%" PRIu64 " iterations, %d rebuilds each)\n",
            seed, iters, REBUILDS);
    totals t = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (only && *only) {
        one_iteration(st, seed, strtoull(only, NULL, 0), &t);
    } else {
        for (uint64_t i = 0; i < iters; i++) one_iteration(st, seed, i, &t);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr,
            "powercut: %" PRIu64 " runs (NONE %" PRIu64 ", INTERVAL %" PRIu64 ", ALWAYS %" PRIu64
            "), %" PRIu64 " rebuilds (%" PRIu64 " cut again during recovery), %" PRIu64
            " acknowledged records (%" PRIu64 " promised durable), %" PRIu64
            " cuts after the last step; %.1f s\n",
            t.iters, t.by_mode[1], t.by_mode[2], t.by_mode[3], t.rebuilds, t.nested, t.acks,
            t.promised_checked, t.cuts_at_end, secs);
    sl_keyfile_provider_close(kp);
    g_keys = NULL;
    free(kf);
}

/* ---- regressions ----------------------------------------------------------- */

/* Found by the simulation (NONE mode, a cut after a few roll-overs): an
** older segment that came back without any valid record is sealed empty by
** recovery and should carry the keys of the segment before it, so that the
** keys along the list never decrease (seeks binary-search them).  When that
** segment was loaded before the stub below it, and that stub proved
** unusable (its header damaged: quarantined, off the list), the carry gave
** up: the empty segment kept sequence number 0 and time INT64_MIN, and
** TRIM_HORIZON (a seek by time) and AT_SEQUENCE_NUMBER started after it,
** hiding every intact record of the segments before it -- records a
** sync had made durable.  Segments 1..4+: 2 with a damaged header, 3
** with no record left. */
static void empty_segment_after_an_unusable_stub_carries_keys(void **state)
{
    const char *root = *state;
    sl_stream *s = tu_create(root, NAME, NULL);
    sl_producer *p;
    assert_int_equal(sl_producer_open(&p, s), 0);
    static uint8_t d[3000];
    uint64_t first = 0;
    for (uint32_t id = 1; id <= 100; id++) {
        pre_len[id] = sizeof d;
        char key[32];
        key_of(id, key);
        fill_data(id, sizeof d, d);
        uint64_t seq;
        assert_int_equal(sl_put(p, key, d, sizeof d, &seq), 0);
        if (id == 1) first = seq;
    }
    sl_producer_close(p);
    assert_int_equal(sl_stream_close(s), 0);
    assert_true(tu_nsegs(root, NAME, 0) >= 4);
    /* segment 2: a damaged header; segment 3: nothing after its header */
    char *seg2 = tu_seg_path(root, NAME, 0, 2), *seg3 = tu_seg_path(root, NAME, 0, 3);
    tu_flip_byte(seg2, 0);
    int fd = open(seg3, O_RDWR);
    assert_true(fd >= 0);
    static uint8_t zero[SL_SEGMENT_BYTES_MIN];
    assert_int_equal(pwrite(fd, zero, SL_SEGMENT_BYTES_MIN - 64, 64), SL_SEGMENT_BYTES_MIN - 64);
    close(fd);

    tu_reports rep = {0};
    tu_opts o = {.reports = &rep};
    s = tu_open(root, NAME, &o);
    tu_recs all = {0};
    tu_read_shard(s, "shardId-000000000000", &all);
    assert_true(all.n > 0);
    assert_int_equal(all.v[0].seq, first);          /* segment 1 is read */
    for (size_t i = 0; i < all.n; i++) {
        sl_record x = {all.v[i].key, strlen(all.v[i].key), all.v[i].data, all.v[i].dlen,
                       all.v[i].seq, all.v[i].ms};
        uint32_t id;
        assert_null(record_check(&x, &id));
    }
    sl_iter *it;
    assert_int_equal(sl_iter_open(&it, s, "shardId-000000000000", SL_ITER_AT_SEQUENCE_NUMBER,
                                  first),
                     0);
    sl_record r;
    sl_read_result res;
    assert_int_equal(sl_iter_read(it, &r, 1, &res), 0);
    assert_int_equal(res.count, 1);
    assert_int_equal(r.sequence, first);
    sl_iter_close(it);
    tu_recs_free(&all);
    assert_int_equal(sl_stream_close(s), 0);
    free(seg2);
    free(seg3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(empty_segment_after_an_unusable_stub_carries_keys,
                                        tu_setup, tu_teardown),
        cmocka_unit_test_setup_teardown(powercut_random, tu_setup, tu_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
