/*
** os.c -- the system-call shim and small file utilities.
**
** Owns: sl__os, the table through which every failure-relevant system call
** goes.  It is the library's only global mutable state and exists so that
** tests can inject failures (ENOSPC from fallocate, EIO from msync, ...) at
** every call site.  Production code never writes it.
*/
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int os_open(const char *path, int flags, mode_t mode)
{
    return open(path, flags, mode);
}

#define REAL_OS {                                                              \
    .open = os_open,                                                           \
    .close = close,                                                            \
    .pread = pread,                                                            \
    .pwrite = pwrite,                                                          \
    .pwritev = pwritev,                                                        \
    .fallocate = fallocate,                                                    \
    .ftruncate = ftruncate,                                                    \
    .fsync = fsync,                                                            \
    .fdatasync = fdatasync,                                                    \
    .msync = msync,                                                            \
    .rename = rename,                                                          \
    .unlink = unlink,                                                          \
    .mkdir = mkdir,                                                            \
    .rmdir = rmdir,                                                            \
    .mmap = mmap,                                                              \
    .munmap = munmap,                                                          \
}

sl_os sl__os = REAL_OS;

void sl__os_reset(void) { sl__os = (sl_os)REAL_OS; }

int sl__os_fsync_dir(const char *path)
{
    int fd = sl__os.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
    if (fd < 0) return -1;
    int rc = sl__os.fsync(fd);
    int e = errno;
    sl__os.close(fd);
    errno = e;
    return rc;
}

int sl__os_pwrite_all(int fd, const void *buf, size_t n, off_t off)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = sl__os.pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += w;
    }
    return 0;
}

int sl__os_pread_all(int fd, void *buf, size_t n, off_t off)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = sl__os.pread(fd, p, n, off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) {               /* short file */
            errno = ENODATA;
            return -1;
        }
        p += r;
        n -= (size_t)r;
        off += r;
    }
    return 0;
}

static char *dir_of(const char *path)
{
    char *d = strdup(path);
    if (!d) return NULL;
    char *slash = strrchr(d, '/');
    if (!slash) {
        free(d);
        return strdup(".");
    }
    if (slash == d) slash[1] = '\0';
    else *slash = '\0';
    return d;
}

int sl__os_replace_file(const char *path, const void *data, size_t n)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    char *dir = dir_of(path);
    if (!tmp || !dir) {
        free(tmp);
        free(dir);
        return sl__err(SL_ENOMEM, "replacing %s", path);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    int rc = 0;
    int fd = sl__os.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = sl__errno(sl__errno_code(errno), errno, "creating %s", tmp);
        goto out;
    }
    if (sl__os_pwrite_all(fd, data, n, 0) != 0) {
        rc = sl__errno(sl__errno_code(errno), errno, "writing %s", tmp);
    } else if (sl__os.fsync(fd) != 0) {
        rc = sl__errno(SL_EIO, errno, "syncing %s", tmp);
    }
    sl__os.close(fd);
    if (rc == 0 && sl__os.rename(tmp, path) != 0)
        rc = sl__errno(sl__errno_code(errno), errno, "renaming %s", tmp);
    if (rc == 0 && sl__os_fsync_dir(dir) != 0)
        rc = sl__errno(SL_EIO, errno, "syncing directory %s", dir);
    if (rc != 0) sl__os.unlink(tmp);
out:
    free(tmp);
    free(dir);
    return rc;
}

int sl__os_rmtree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return sl__os.unlink(path) == 0 || errno == ENOENT ? 0 : -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *sub;
        if (asprintf(&sub, "%s/%s", path, e->d_name) < 0) {
            rc = -1;
            break;
        }
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) {
            if (sl__os_rmtree(sub) != 0) rc = -1;
        } else if (sl__os.unlink(sub) != 0 && errno != ENOENT) {
            rc = -1;
        }
        free(sub);
    }
    closedir(d);
    if (sl__os.rmdir(path) != 0 && errno != ENOENT) rc = -1;
    return rc;
}

int sl__os_read_file(const char *path, char **out, size_t *len, size_t max)
{
    *out = NULL;
    int fd = sl__os.open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) goto fail;
    if ((uint64_t)st.st_size > max) {
        errno = EFBIG;
        goto fail;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) goto fail;
    if (sl__os_pread_all(fd, buf, (size_t)st.st_size, 0) != 0) {
        free(buf);
        goto fail;
    }
    buf[st.st_size] = '\0';
    sl__os.close(fd);
    *out = buf;
    *len = (size_t)st.st_size;
    return 0;
fail:;
    int e = errno;
    sl__os.close(fd);
    errno = e;
    return -1;
}

/* Shared (not PRIVATE) futexes: the words live in a MAP_SHARED file mapping
** and may be waited on from other processes. */
int sl__futex_wait(uint32_t *addr, uint32_t val, int timeout_ms)
{
    struct timespec ts, *tp = NULL;
    if (timeout_ms >= 0) {
        ts.tv_sec = timeout_ms / 1000;
        ts.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
        tp = &ts;
    }
    return (int)syscall(SYS_futex, addr, FUTEX_WAIT, val, tp, NULL, 0);
}

void sl__futex_wake(uint32_t *addr)
{
    syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

uint64_t sl__boot_id(void)
{
    static _Atomic uint64_t cached;     /* constant for the process's life */
    uint64_t v = atomic_load_explicit(&cached, memory_order_relaxed);
    if (v) return v == 1 ? 0 : v;
    char buf[64] = "";
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    v = n >= 32 ? sl__xxh3(buf, (size_t)n) | 2 : 1;    /* 1: none (cached) */
    atomic_store_explicit(&cached, v, memory_order_relaxed);
    return v == 1 ? 0 : v;
}

uint64_t sl__random64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        v = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^
            ((uint64_t)getpid() << 16);
    }
    return v;
}
