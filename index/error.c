#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <lmdb.h>

static _Thread_local char last_msg[1024];
static _Thread_local int last_code;

const char *artifs_strerror(int code)
{
	switch (code) {
	case ARTIFS_OK: return "success";
	case ARTIFS_ENOTFOUND: return "not found";
	case ARTIFS_EEXISTS: return "already exists";
	case ARTIFS_EINVAL: return "invalid argument";
	case ARTIFS_ECORRUPT: return "stored data is corrupt";
	case ARTIFS_ECOLLISION: return "hash collision: same id, different bytes";
	case ARTIFS_EVERSION: return "unsupported store format version";
	case ARTIFS_ENOSTORE: return "no store";
	case ARTIFS_EAMBIGUOUS: return "ambiguous commit id prefix";
	case ARTIFS_ECHANGED: return "file changed while being read";
	case ARTIFS_ESTALE: return "ref moved concurrently";
	case ARTIFS_EBUSY: return "store is busy";
	case ARTIFS_EIMMUTABLE: return "tags are immutable";
	case ARTIFS_ELMDB: return "database error";
	case ARTIFS_EHOOK: return "refused by a hook";
	case ARTIFS_EGITOPS: return "GitOps repository operation failed";
	default:
		if (code < 0 && code > -4096)
			return strerror(-code);
		return "unknown error";
	}
}

const char *artifs_error_last(void)
{
	if (last_msg[0])
		return last_msg;
	return artifs_strerror(last_code);
}

int artifs_error(int code, const char *fmt, ...)
{
	char msg[sizeof(last_msg)];
	va_list ap;

	/* formatted apart: an argument may be artifs_error_last() itself */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	memcpy(last_msg, msg, sizeof(msg));
	last_code = code;
	return code;
}

void artifs_error_clear(void)
{
	last_msg[0] = '\0';
	last_code = 0;
}

int artifs_error_lmdb(int rc, const char *what)
{
	switch (rc) {
	case MDB_NOTFOUND:
		return artifs_error(ARTIFS_ENOTFOUND, "%s: not found", what);
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
		return artifs_error(ARTIFS_ECORRUPT, "%s: %s", what, mdb_strerror(rc));
	case MDB_VERSION_MISMATCH:
	case MDB_INVALID:
		return artifs_error(ARTIFS_EVERSION, "%s: %s", what, mdb_strerror(rc));
	default:
		if (rc > 0)	/* LMDB passes errno values through */
			return artifs_error(-rc, "%s: %s", what, strerror(rc));
		return artifs_error(ARTIFS_ELMDB, "%s: %s", what, mdb_strerror(rc));
	}
}
