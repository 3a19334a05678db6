/*
** error.c -- error codes, their texts, and the per-thread detail message.
**
** Owns: the thread-local detail slot {handle, text}.  Internal code writes
** the text with sl__err()/sl__errno() and returns the code; the public entry
** point binds it to its handle with sl__ret().  sl_errmsg(h) returns the text
** only if this thread's latest failure was on h, so threads sharing a stream
** never see each other's messages.  The slot is thread-local state, not
** shared mutable state.
*/
#include "internal.h"

#include <errno.h>
#include <stdio.h>

#define SL_ERRTEXT_MAX 512

static _Thread_local struct {
    const void *h;
    bool bound;
    char text[SL_ERRTEXT_MAX];
} tls_err;

const char *sl_version(void) { return SL_VERSION_STRING; }

const char *sl_strerror(int code)
{
    switch (code) {
    case SL_OK: return "success";
#define SL_X_(name, value, text, kinesis) case name: return text;
    SL_ERROR_LIST(SL_X_)
#undef SL_X_
    default: return "unknown error";
    }
}

const char *sl_error_kinesis_name(int code)
{
    switch (code) {
    case SL_OK: return "";
#define SL_X_(name, value, text, kinesis) case name: return kinesis;
    SL_ERROR_LIST(SL_X_)
#undef SL_X_
    default: return NULL;
    }
}

static void vset(const char *fmt, va_list ap)
{
    vsnprintf(tls_err.text, sizeof tls_err.text, fmt, ap);
    tls_err.bound = false;
}

int sl__err(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(fmt, ap);
    va_end(ap);
    return code;
}

int sl__errno(int code, int errnum, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(fmt, ap);
    va_end(ap);
    size_t n = strlen(tls_err.text);
    snprintf(tls_err.text + n, sizeof tls_err.text - n, ": %s",
             strerror(errnum));
    return code;
}

int sl__errno_code(int errnum)
{
    switch (errnum) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG: return SL_ENOSPC;
    case ENOMEM: return SL_ENOMEM;
    default: return SL_EIO;
    }
}

int sl__ret(const void *h, int rc)
{
    if (rc < 0) {
        if (tls_err.bound || tls_err.text[0] == '\0')
            snprintf(tls_err.text, sizeof tls_err.text, "%s",
                     sl_strerror(rc));
        tls_err.h = h;
        tls_err.bound = true;
    }
    return rc;
}

const char *sl__errtext(void) { return tls_err.text; }

const char *sl_errmsg(const void *h)
{
    return (tls_err.bound && tls_err.h == h) ? tls_err.text : "";
}
