/*
 * error.h - error codes and the per-thread detail message.
 *
 * Every fallible artifs_* call returns int: 0 on success, a negative errno
 * (-ENOENT, -EIO, ...) or one of the negative ARTIFS_E* codes below.  Where a
 * failure happens the callee records a human detail message ("cannot open
 * store '/x': permission denied") readable with artifs_error_last() until the
 * next failure on the same thread.
 */
#ifndef ARTIFS_ERROR_H
#define ARTIFS_ERROR_H

#include <stdarg.h>

enum artifs_error_code {
	ARTIFS_OK = 0,
	ARTIFS_ENOTFOUND = -10001,  /* a repository, ref, path or object is missing */
	ARTIFS_EEXISTS = -10002,    /* the name is taken */
	ARTIFS_EINVAL = -10003,     /* malformed input: a name, a rev, an option */
	ARTIFS_ECORRUPT = -10004,   /* stored bytes do not match their id or do not decode */
	ARTIFS_ECOLLISION = -10005, /* same id, different bytes: refused */
	ARTIFS_EVERSION = -10006,   /* store format this build does not know */
	ARTIFS_ENOSTORE = -10007,   /* no store at the chosen directory */
	ARTIFS_EAMBIGUOUS = -10008, /* a commit-id prefix names several commits */
	ARTIFS_ECHANGED = -10009,   /* a file changed while it was being read */
	ARTIFS_ESTALE = -10010,     /* a ref moved under us (lost a compare-and-swap) */
	ARTIFS_EBUSY = -10011,      /* another process holds the store lock */
	ARTIFS_EIMMUTABLE = -10012, /* a tag cannot move */
	ARTIFS_ELMDB = -10013,      /* an LMDB failure; the detail names it */
	ARTIFS_EHOOK = -10014,      /* a hook refused the operation */
	ARTIFS_EGITOPS = -10015,    /* publishing to or reading the GitOps repository failed */
};

/* A short generic text for a code; never NULL. */
const char *artifs_strerror(int code);

/*
 * The detail message of the last failure on this thread, or the generic text
 * of the code when none was set.  Valid until the next failing call.
 */
const char *artifs_error_last(void);

/* Record a detail message and return code, for `return artifs_error(...)`. */
int artifs_error(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Forget the detail message (done at the start of a top-level operation). */
void artifs_error_clear(void);

/* Map an LMDB return code to an artifs code, recording `what` as detail. */
int artifs_error_lmdb(int rc, const char *what);

#endif
