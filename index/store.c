/*
 * store.c - opening the LMDB environment, growing its map, transactions.
 *
 * Map growth: LMDB fails a write with MDB_MAP_FULL once the data file would
 * pass the map size fixed at open.  Every write transaction starts through
 * artifs_wtxn_begin() with an estimate of what it will add; the map is
 * doubled (at least) before the transaction whenever the headroom is short.
 * Other processes notice at their next transaction (MDB_MAP_RESIZED) and
 * adopt the new size.  The map is only address space: LMDB without
 * MDB_WRITEMAP never extends the file beyond the pages it wrote.
 */
#include "store_int.h"
#include "codec.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define DEFAULT_MAPSIZE ((size_t)1 << 30)
#define GROW_ALIGN ((size_t)64 << 20)

static char *path_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = malloc(la + lb + 2);

	if (!p)
		return NULL;
	memcpy(p, a, la);
	p[la] = '/';
	memcpy(p + la + 1, b, lb + 1);
	return p;
}

/*
 * Every change of the map goes through here: LMDB unmaps and maps again
 * (even at the same size, and maybe at another address), and the map's
 * address cached by pagecache.c must be looked up again.
 */
static int set_mapsize(artifs_store *s, size_t size)
{
	int rc = mdb_env_set_mapsize(s->env, size);

	__atomic_add_fetch(&s->map_gen, 1, __ATOMIC_RELEASE);
	return rc;
}

int artifs_store_default_path(char **out, const char *flag)
{
	const char *env = getenv("ARTIFS_STORE");
	const char *xdg = getenv("XDG_DATA_HOME");
	const char *home = getenv("HOME");
	char *p = NULL;

	if (flag && *flag)
		p = strdup(flag);
	else if (env && *env)
		p = strdup(env);
	else if (xdg && *xdg == '/')
		p = path_join(xdg, "artifs");
	else if (home && *home)
		p = path_join(home, ".local/share/artifs");
	else
		return artifs_error(ARTIFS_EINVAL,
			"no store given: set --store, $ARTIFS_STORE or $HOME");
	if (!p)
		return artifs_error(-ENOMEM, "out of memory");
	*out = p;
	return 0;
}

static int mkdir_p(const char *dir)
{
	char *tmp = strdup(dir);
	int rc = 0;

	if (!tmp)
		return -ENOMEM;
	for (char *p = tmp + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(tmp, 0755) < 0 && errno != EEXIST) {
				rc = -errno;
				break;
			}
			*p = c;
			if (!c)
				break;
		}
	}
	free(tmp);
	return rc;
}

static int open_dbis(artifs_store *s, MDB_txn *txn, unsigned int flags)
{
	static const struct { const char *name; size_t off; } dbs[] = {
		{ "meta", offsetof(artifs_store, meta) },
		{ "chunks", offsetof(artifs_store, chunks) },
		{ "blobs", offsetof(artifs_store, blobs) },
		{ "trees", offsetof(artifs_store, trees) },
		{ "labelsets", offsetof(artifs_store, labelsets) },
		{ "commits", offsetof(artifs_store, commits) },
		{ "repos", offsetof(artifs_store, repos) },
		{ "refs", offsetof(artifs_store, refs) },
		{ "reflog", offsetof(artifs_store, reflog) },
		{ "notes", offsetof(artifs_store, notes) },
		{ "statcache", offsetof(artifs_store, statcache) },
	};

	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
		MDB_dbi *dbi = (MDB_dbi *)((char *)s + dbs[i].off);
		int rc = mdb_dbi_open(txn, dbs[i].name, flags, dbi);
		if (rc == MDB_NOTFOUND)
			return artifs_error(ARTIFS_ECORRUPT,
				"store '%s' has no '%s' table", s->path, dbs[i].name);
		if (rc)
			return artifs_error_lmdb(rc, "cannot open table");
	}
	return 0;
}

static int env_create(artifs_store *s, const artifs_store_opts *opts, int create)
{
	char *data = path_join(s->path, "data.mdb");
	size_t mapsize = opts && opts->initial_mapsize ? opts->initial_mapsize : DEFAULT_MAPSIZE;
	struct stat st;
	int rc;

	if (!data)
		return artifs_error(-ENOMEM, "out of memory");
	if (stat(data, &st) < 0) {
		rc = errno;
		free(data);
		if (rc == ENOENT && !create)
			return artifs_error(ARTIFS_ENOSTORE, "no store at '%s'", s->path);
		if (rc != ENOENT)
			return artifs_error(-rc, "cannot open store '%s': %s", s->path, strerror(rc));
	} else {
		free(data);
		/* start with room to grow past what is there already */
		if ((size_t)st.st_size + DEFAULT_MAPSIZE / 2 > mapsize)
			mapsize = ((size_t)st.st_size * 2 + GROW_ALIGN - 1) / GROW_ALIGN * GROW_ALIGN;
	}
	if ((rc = mdb_env_create(&s->env)))
		return artifs_error_lmdb(rc, "cannot create environment");
	mdb_env_set_maxdbs(s->env, 16);
	/* a multithreaded daemon plus CLI processes pass LMDB's default 126 */
	mdb_env_set_maxreaders(s->env, 1024);
	set_mapsize(s, mapsize);
	/* MDB_NORDAHEAD: cold reads of large values were ~10x faster without
	 * kernel read-ahead on the map; MDB_NOTLS: read txns are not bound to
	 * threads, so a reader can be reset and renewed anywhere. */
	rc = mdb_env_open(s->env, s->path,
		MDB_NOTLS | MDB_NORDAHEAD | (s->readonly ? MDB_RDONLY : 0), 0644);
	if (rc) {
		if (rc == EACCES || rc == EROFS)
			return artifs_error(-rc, "cannot open store '%s': %s", s->path, strerror(rc));
		return artifs_error_lmdb(rc, "cannot open store");
	}
	{
		int dead = 0;
		mdb_reader_check(s->env, &dead);
	}
	return 0;
}

static artifs_store *store_alloc(const char *dir, const artifs_store_opts *opts)
{
	artifs_store *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->lock_fd = -1;
	s->readonly = opts ? opts->readonly : 0;
	s->path = strdup(dir);
	if (!s->path) {
		free(s);
		return NULL;
	}
	return s;
}

int artifs_store_init(const char *dir, const artifs_store_opts *opts)
{
	artifs_store *s = NULL;
	MDB_txn *txn = NULL;
	MDB_val k, v;
	uint8_t ver[4];
	int rc;

	if ((rc = mkdir_p(dir)))
		return artifs_error(rc, "cannot create store directory '%s': %s", dir, strerror(-rc));
	if (!(s = store_alloc(dir, opts)))
		return artifs_error(-ENOMEM, "out of memory");
	s->readonly = 0;
	if ((rc = env_create(s, opts, 1)))
		goto done;
	if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn))) {
		rc = artifs_error_lmdb(rc, "cannot begin transaction");
		goto done;
	}
	if ((rc = open_dbis(s, txn, MDB_CREATE)))
		goto done;
	k.mv_data = (void *)"format";
	k.mv_size = 6;
	if (mdb_get(txn, s->meta, &k, &v) == 0) {
		rc = artifs_error(ARTIFS_EEXISTS, "a store already exists at '%s'", dir);
		goto done;
	}
	put_le32(ver, ARTIFS_FORMAT_VERSION);
	v.mv_data = ver;
	v.mv_size = 4;
	if ((rc = mdb_put(txn, s->meta, &k, &v, 0))) {
		rc = artifs_error_lmdb(rc, "cannot write format version");
		goto done;
	}
	rc = artifs_txn_commit(txn);
	txn = NULL;
done:
	if (txn)
		mdb_txn_abort(txn);
	artifs_store_free(s);
	return rc;
}

int artifs_store_open(artifs_store **out, const char *dir, const artifs_store_opts *opts)
{
	artifs_store *s = NULL;
	MDB_txn *txn = NULL;
	MDB_val k = { 6, (void *)"format" }, v;
	int rc;

	if (!(s = store_alloc(dir, opts)))
		return artifs_error(-ENOMEM, "out of memory");
	if ((rc = env_create(s, opts, 0)))
		goto done;
	if ((rc = artifs_rtxn_begin(s, &txn)))
		goto done;
	{
		MDB_dbi meta;
		int r = mdb_dbi_open(txn, "meta", 0, &meta);
		if (r == MDB_NOTFOUND) {
			rc = artifs_error(ARTIFS_ENOSTORE, "'%s' is not an artifs store", dir);
			goto done;
		} else if (r) {
			rc = artifs_error_lmdb(r, "cannot open store");
			goto done;
		}
		r = mdb_get(txn, meta, &k, &v);
		if (r || v.mv_size != 4) {
			rc = artifs_error(ARTIFS_ENOSTORE, "'%s' is not an artifs store (no format version)", dir);
			goto done;
		}
		if (get_le32(v.mv_data) != ARTIFS_FORMAT_VERSION) {
			rc = artifs_error(ARTIFS_EVERSION,
				"store '%s' has format version %u; this artifs reads version %d only",
				dir, get_le32(v.mv_data), ARTIFS_FORMAT_VERSION);
			goto done;
		}
	}
	if ((rc = open_dbis(s, txn, 0)) == ARTIFS_ECORRUPT && !s->readonly) {
		/*
		 * A store made before a table was added (labelsets, notes): add
		 * the missing tables, which start empty.
		 */
		mdb_txn_abort(txn);
		txn = NULL;
		if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn))) {
			rc = artifs_error_lmdb(rc, "cannot open store");
			goto done;
		}
		rc = open_dbis(s, txn, MDB_CREATE);
	} else if (rc == ARTIFS_ECORRUPT) {
		char why[512];
		snprintf(why, sizeof(why), "%s", artifs_error_last());
		artifs_error(ARTIFS_ECORRUPT, "%s; it was made by an older artifs: run a writing command "
			"once (e.g. 'artifs gc --dry-run') to add the new tables", why);
	}
	if (rc)
		goto done;
	/* dbi handles opened in a read txn stay valid once it commits */
	rc = mdb_txn_commit(txn);
	txn = NULL;
	if (rc) {
		rc = artifs_error_lmdb(rc, "cannot open store");
		goto done;
	}
	*out = s;
	s = NULL;
done:
	if (txn)
		mdb_txn_abort(txn);
	artifs_store_free(s);
	return rc;
}

void artifs_store_free(artifs_store *s)
{
	if (!s)
		return;
	artifs_store_fetch_free(s);
	if (s->env)
		mdb_env_close(s->env);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s->path);
	free(s);
}

const char *artifs_store_path(const artifs_store *s)
{
	return s->path;
}

void artifs_store_usage(artifs_store *s, size_t *mapsize, size_t *used)
{
	MDB_envinfo info;
	MDB_stat st;

	mdb_env_info(s->env, &info);
	mdb_env_stat(s->env, &st);
	if (mapsize)
		*mapsize = info.me_mapsize;
	if (used)
		*used = (info.me_last_pgno + 1) * (size_t)st.ms_psize;
}

int artifs_rtxn_try(artifs_store *s, MDB_txn **out)
{
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, out);

	if (rc == MDB_MAP_RESIZED)
		return rc;
	if (rc)
		return artifs_error_lmdb(rc, "cannot begin read transaction");
	return 0;
}

int artifs_store_remap(artifs_store *s)
{
	int rc = set_mapsize(s, 0);

	return rc ? artifs_error_lmdb(rc, "cannot remap the store") : 0;
}

int artifs_rtxn_begin(artifs_store *s, MDB_txn **out)
{
	int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, out);

	if (rc == MDB_MAP_RESIZED) {
		set_mapsize(s, 0);
		rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, out);
	}
	if (rc)
		return artifs_error_lmdb(rc, "cannot begin read transaction");
	return 0;
}

int artifs_store_grow(artifs_store *s, size_t need)
{
	size_t mapsize, used, want;
	int rc;

	artifs_store_usage(s, &mapsize, &used);
	want = mapsize * 2;
	if (want < used + need * 2 + GROW_ALIGN)
		want = used + need * 2 + GROW_ALIGN;
	want = (want + GROW_ALIGN - 1) / GROW_ALIGN * GROW_ALIGN;
	if ((rc = set_mapsize(s, want)))
		return artifs_error_lmdb(rc, "cannot grow the store's map");
	return 0;
}

int artifs_wtxn_begin(artifs_store *s, size_t need, MDB_txn **out)
{
	size_t mine, mapsize, used;
	int rc;

	if (s->readonly)
		return artifs_error(-EROFS, "store '%s' is open read-only", s->path);
	/*
	 * Adopt a size another process set before measuring headroom.  LMDB's
	 * 0 means the size last committed, so keep ours when it is larger: a
	 * grow after MDB_MAP_FULL has not been committed yet, and losing it
	 * would fail the redo the same way.
	 */
	artifs_store_usage(s, &mine, NULL);
	set_mapsize(s, 0);
	artifs_store_usage(s, &mapsize, &used);
	if (mapsize < mine && set_mapsize(s, mine) == 0)
		mapsize = mine;
	/* B-tree pages and copy-on-write add to the payload: ask for 1.5x */
	if (mapsize < used || mapsize - used < need + need / 2 + ((size_t)16 << 20)) {
		if ((rc = artifs_store_grow(s, need + need / 2)))
			return rc;
	}
	rc = mdb_txn_begin(s->env, NULL, 0, out);
	if (rc == MDB_MAP_RESIZED) {
		set_mapsize(s, 0);
		rc = mdb_txn_begin(s->env, NULL, 0, out);
	}
	if (rc)
		return artifs_error_lmdb(rc, "cannot begin write transaction");
	return 0;
}

/*
 * A write that failed on a full file system: LMDB reports ENOSPC, or EIO
 * when the flush of the data file fails.  Name the store and what is free.
 */
static int write_failed(MDB_env *env, int rc)
{
	const char *dir = NULL;
	struct statvfs vfs;

	if (mdb_env_get_path(env, &dir) == 0 && dir && statvfs(dir, &vfs) == 0) {
		uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
		if (rc == ENOSPC || avail < ((uint64_t)16 << 20))
			return artifs_error(-ENOSPC, "no space left on the device holding the store '%s' "
				"(%llu KiB free); nothing was committed: free some space and run the command again",
				dir, (unsigned long long)(avail >> 10));
	}
	if (rc == ENOSPC)
		return artifs_error(-ENOSPC, "no space left on device while writing the store");
	return artifs_error_lmdb(rc, "cannot commit transaction");
}

static MDB_dbi object_dbi(artifs_store *s, char kind)
{
	return kind == 'T' ? s->trees : kind == 'B' ? s->blobs : kind == 'C' ? s->commits :
		s->labelsets;
}

int artifs_object_get(artifs_store *s, MDB_txn *txn, char kind, const artifs_oid *id,
	const void **data, size_t *len)
{
	MDB_val v;
	int rc = artifs_store_get(txn, object_dbi(s, kind), id, &v);

	if (rc)
		return rc;
	*data = v.mv_data;
	*len = v.mv_size;
	return 0;
}

int artifs_object_check(artifs_store *s, MDB_txn *txn, char kind, const artifs_oid *id)
{
	MDB_dbi dbi = object_dbi(s, kind);
	const char *what = kind == 'T' ? "tree" : kind == 'B' ? "file manifest" :
		kind == 'C' ? "commit" : "labelset";
	char hex[ARTIFS_OID_HEXSZ + 1];
	artifs_oid got;
	MDB_val v;
	int rc;

	if ((rc = artifs_store_get(txn, dbi, id, &v)))
		return rc;
	artifs_oid_hash(&got, v.mv_data, v.mv_size);
	if (artifs_oid_cmp(&got, id))
		return artifs_error(ARTIFS_ECORRUPT, "%s %s is corrupt (its bytes hash to another id)",
			what, artifs_oid_fmt(hex, id));
	return 0;
}

int artifs_txn_commit(MDB_txn *txn)
{
	MDB_env *env = mdb_txn_env(txn);
	int rc = mdb_txn_commit(txn);

	if (rc == MDB_MAP_FULL)
		return rc;
	if (rc)
		return write_failed(env, rc);
	return 0;
}

int artifs_store_lock(artifs_store *s, int exclusive, int wait)
{
	if (s->lock_fd < 0) {
		char *p = path_join(s->path, "artifs.lock");
		if (!p)
			return artifs_error(-ENOMEM, "out of memory");
		s->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (s->lock_fd < 0) {
			int e = errno;
			free(p);
			return artifs_error(-e, "cannot open lock file in '%s': %s", s->path, strerror(e));
		}
		free(p);
	}
	if (flock(s->lock_fd, (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB)) < 0) {
		if (errno == EWOULDBLOCK)
			return artifs_error(ARTIFS_EBUSY, "store '%s' is busy (%s)", s->path,
				exclusive ? "a commit is running" : "gc is running");
		return artifs_error(-errno, "cannot lock store '%s': %s", s->path, strerror(errno));
	}
	return 0;
}

void artifs_store_unlock(artifs_store *s)
{
	if (s->lock_fd >= 0)
		flock(s->lock_fd, LOCK_UN);
}

int artifs_store_get(MDB_txn *txn, MDB_dbi dbi, const artifs_oid *id, MDB_val *out)
{
	MDB_val k = { ARTIFS_OID_RAWSZ, (void *)id->id };
	int rc = mdb_get(txn, dbi, &k, out);

	if (rc == MDB_NOTFOUND) {
		char hex[ARTIFS_OID_HEXSZ + 1];
		return artifs_error(ARTIFS_ENOTFOUND, "object %s is missing", artifs_oid_fmt(hex, id));
	}
	if (rc)
		return artifs_error_lmdb(rc, "cannot read object");
	return 0;
}

int artifs_store_put(MDB_txn *txn, MDB_dbi dbi, const artifs_oid *id, const void *data, size_t len)
{
	MDB_val k = { ARTIFS_OID_RAWSZ, (void *)id->id };
	MDB_val v = { len, (void *)data };
	int rc = mdb_put(txn, dbi, &k, &v, MDB_NOOVERWRITE);

	if (rc == 0)
		return 0;
	if (rc == MDB_KEYEXIST) {
		artifs_oid got;
		char hex[ARTIFS_OID_HEXSZ + 1];
		/* v now holds the stored bytes: trust the dedupe only if equal */
		if (v.mv_size == len && memcmp(v.mv_data, data, len) == 0)
			return 1;
		/*
		 * Different bytes.  If the stored ones no longer hash to the id
		 * they are damaged and the new ones (which do) repair them; if
		 * both hash to the id it is a real collision: refuse.
		 */
		artifs_oid_hash(&got, v.mv_data, v.mv_size);
		if (artifs_oid_cmp(&got, id)) {
			v.mv_data = (void *)data;
			v.mv_size = len;
			rc = mdb_put(txn, dbi, &k, &v, 0);
			if (rc == 0)
				return 2;
			if (rc == MDB_MAP_FULL)
				return rc;
			return artifs_error_lmdb(rc, "cannot write object");
		}
		return artifs_error(ARTIFS_ECOLLISION,
			"object %s is stored with different bytes that hash to the same id "
			"(%zu stored, %zu new): XXH3-128 collision; refusing to deduplicate",
			artifs_oid_fmt(hex, id), v.mv_size, len);
	}
	if (rc == MDB_MAP_FULL)
		return rc;
	return artifs_error_lmdb(rc, "cannot write object");
}

int artifs_store_refgen(artifs_store *s, MDB_txn *txn, uint64_t *out)
{
	MDB_val k = { 6, (void *)"refgen" }, v;
	int rc = mdb_get(txn, s->meta, &k, &v);

	*out = 0;
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return artifs_error_lmdb(rc, "cannot read ref generation");
	if (v.mv_size != 8)
		return artifs_error(ARTIFS_ECORRUPT, "malformed ref generation record");
	*out = get_le64(v.mv_data);
	return 0;
}

int artifs_store_refgen_bump(artifs_store *s, MDB_txn *txn)
{
	MDB_val k = { 6, (void *)"refgen" }, v;
	uint8_t rec[8];
	uint64_t gen;
	int rc;

	if ((rc = artifs_store_refgen(s, txn, &gen)))
		return rc;
	put_le64(rec, gen + 1);
	v.mv_data = rec;
	v.mv_size = sizeof(rec);
	if ((rc = mdb_put(txn, s->meta, &k, &v, 0)))
		return rc == MDB_MAP_FULL ? rc : artifs_error_lmdb(rc, "cannot write ref generation");
	return 0;
}

int artifs_store_warm(artifs_store *s, MDB_txn *txn, unsigned lo, unsigned hi,
	void (*big)(const void *p, size_t len, void *ctx), void *ctx)
{
	const MDB_dbi dbis[] = { s->trees, s->blobs, s->commits, s->chunks };
	volatile uint8_t sink = 0;

	for (size_t t = 0; t < sizeof(dbis) / sizeof(dbis[0]); t++) {
		uint8_t start[16] = { (uint8_t)lo };
		MDB_val k = { sizeof(start), start }, v;
		MDB_cursor *cur;
		int rc, op = MDB_SET_RANGE;

		if ((rc = mdb_cursor_open(txn, dbis[t], &cur)))
			return artifs_error_lmdb(rc, "cannot open cursor");
		/* a value's bytes are only read for the metadata tables */
		while (!(rc = mdb_cursor_get(cur, &k, &v, op)) && k.mv_size &&
		       ((const uint8_t *)k.mv_data)[0] < hi) {
			op = MDB_NEXT;
			if (dbis[t] == s->chunks)
				continue;
			if (v.mv_size > 2048 && big)
				big(v.mv_data, v.mv_size, ctx);
			else if (v.mv_size)
				sink ^= ((const uint8_t *)v.mv_data)[0];
		}
		mdb_cursor_close(cur);
		if (rc && rc != MDB_NOTFOUND)
			return artifs_error_lmdb(rc, "cannot walk the store");
	}
	(void)sink;
	return 0;
}

int artifs_store_index_bytes(artifs_store *s, MDB_txn *txn, uint64_t *out)
{
	const MDB_dbi dbis[] = { s->trees, s->blobs, s->commits, s->chunks };

	*out = 0;
	for (size_t t = 0; t < sizeof(dbis) / sizeof(dbis[0]); t++) {
		MDB_stat st;
		int rc = mdb_stat(txn, dbis[t], &st);

		if (rc)
			return artifs_error_lmdb(rc, "cannot read table statistics");
		*out += (uint64_t)(st.ms_branch_pages + st.ms_leaf_pages) * st.ms_psize;
	}
	return 0;
}

int artifs_chunk_has(artifs_store *s, MDB_txn *txn, const artifs_oid *id)
{
	MDB_val k = { 16, (void *)id->id }, v;

	return mdb_get(txn, s->chunks, &k, &v) == 0;
}

int artifs_chunk_put(artifs_store *s, MDB_txn *txn, const artifs_oid *id, const void *data,
	size_t len)
{
	return artifs_store_put(txn, s->chunks, id, data, len);
}

int artifs_chunk_del(artifs_store *s, MDB_txn *txn, const artifs_oid *id)
{
	MDB_val k = { 16, (void *)id->id };
	int rc = mdb_del(txn, s->chunks, &k, NULL);

	if (rc && rc != MDB_NOTFOUND)
		return rc == MDB_MAP_FULL ? rc : artifs_error_lmdb(rc, "cannot delete a chunk");
	return 0;
}

int artifs_chunk_foreach(artifs_store *s, MDB_txn *txn,
	int (*fn)(const artifs_oid *id, size_t len, void *ctx), void *ctx)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc = mdb_cursor_open(txn, s->chunks, &cur);

	if (rc)
		return artifs_error_lmdb(rc, "cannot list chunks");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		artifs_oid id;
		int r;
		if (k.mv_size != 16)
			continue;
		memcpy(id.id, k.mv_data, 16);
		if ((r = fn(&id, v.mv_size, ctx))) {
			mdb_cursor_close(cur);
			return r;
		}
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : artifs_error_lmdb(rc, "cannot list chunks");
}

int artifs_thread_start(pthread_t *th, void *(*fn)(void *), void *arg)
{
	sigset_t set, old;
	int rc;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	pthread_sigmask(SIG_BLOCK, &set, &old);	/* the new thread inherits the mask */
	rc = pthread_create(th, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}
