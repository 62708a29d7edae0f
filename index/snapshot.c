/*
 * snapshot.c - walk a directory, store what is new, move the branch.
 *
 * The walk uses openat()/fstatat() relative to directory descriptors, so
 * path length never limits it and a symlink is never followed.  Each
 * directory is encoded once its children are done (post-order), so trees
 * on an unchanged path hash to the ids already stored and cost one look-up.
 *
 * Stat cache ("statcache" table, key REPO 0 BRANCH 0 PATH): the (dev, inode,
 * size, mtime, ctime) of each file when it was last read, and the manifest
 * it produced.  A file whose stat matches is not read.  Entries whose mtime
 * is within RACY_NS of the start of the walk are not cached: a write in the
 * same clock tick could leave the stat unchanged (git's "racy clean").
 */

#include "snapshot.h"
#include "codec.h"
#include "error.h"
#include "label.h"
#include "ref.h"
#include "store_int.h"
#include "tree.h"
#include "writer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define STATCACHE_VALSZ 64
#define RACY_NS 1000000000LL
#define CHANGE_RETRIES 3

struct sc_ent {
	char *path;
	uint8_t val[STATCACHE_VALSZ];
};

struct snap {
	artifs_store *s;
	artifs_writer *w;
	const char *repo, *branch;
	const artifs_snapshot_opts *o;
	artifs_snapshot_stats *st;
	artifs_progress prog;
	int64_t start_ns;
	dev_t store_dev;
	ino_t store_ino;
	artifs_buf path;		/* relative path of the current entry */
	artifs_buf key;			/* scratch for stat cache keys */
	size_t key_prefix;
	struct sc_ent *sc;
	size_t nsc, capsc;
	/* final transaction inputs */
	artifs_commit commit;
	artifs_oid head, new_id;
	int create;
	int cold;			/* a file's first read found nothing in memory */
};

/*
 * Reading ahead of a cold source.  A directory of small files read one
 * after another, none in memory, waits for the disk at every file: 20,000
 * files of 100 KiB took 4.5-5.5 s to commit with caches dropped, 1.8-2.5 s
 * in memory.  Once a file's first read finds nothing in memory (preadv2
 * with RWF_NOWAIT, which is the read itself when it does), the walk asks
 * the kernel to start reading the next small files of the directory
 * (POSIX_FADV_WILLNEED), so the disk has several in flight: 3.17-3.25 s
 * against 4.69-4.71 s, alternating.  Larger files are left to the
 * kernel's sequential read-ahead: asked ahead too, four model files of
 * 512 MiB took 1.99-2.12 s against 1.79-1.87 s.
 */
#define AHEAD_FILES 32
#define AHEAD_MAX_SIZE ((off_t)1 << 20)

/* Start reading names[from..to) of dirfd into the page cache, the small regular files. */
static void read_ahead(int dirfd, char **names, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++) {
		struct stat st;
		int fd;

		if (fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode) ||
		    !st.st_size || st.st_size > AHEAD_MAX_SIZE)
			continue;
		/* O_NONBLOCK: were it swapped for a FIFO meanwhile, the open must not wait */
		fd = openat(dirfd, names[i], O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOATIME);
		if (fd < 0)
			continue;
		posix_fadvise(fd, 0, st.st_size, POSIX_FADV_WILLNEED);
		close(fd);
	}
}

static void warnf(struct snap *sn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warnf(struct snap *sn, const char *fmt, ...)
{
	char msg[PATH_MAX + 256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (sn->o->warn)
		sn->o->warn(msg, sn->o->ctx);
}

static int64_t ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static void sc_encode(uint8_t *v, const struct stat *st, int exec, const artifs_oid *blob)
{
	memset(v, 0, STATCACHE_VALSZ);
	put_le64(v, (uint64_t)st->st_dev);
	put_le64(v + 8, (uint64_t)st->st_ino);
	put_le64(v + 16, (uint64_t)st->st_size);
	put_le64(v + 24, (uint64_t)ts_ns(&st->st_mtim));
	put_le64(v + 32, (uint64_t)ts_ns(&st->st_ctim));
	v[40] = (uint8_t)exec;
	memcpy(v + 48, blob->id, 16);
}

/* Delete the stat cache rows whose key starts with prefix (REPO 0 BRANCH 0). */
static int statcache_drop(artifs_store *s, MDB_txn *txn, const void *prefix, size_t plen)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_cursor_open(txn, s->statcache, &cur)))
		return artifs_error_lmdb(rc, "cannot update stat cache");
	k.mv_data = (void *)prefix;
	k.mv_size = plen;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen))
			break;
		if ((rc = mdb_cursor_del(cur, 0)))
			break;
	}
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND)
		return rc == MDB_MAP_FULL ? rc : artifs_error_lmdb(rc, "cannot update stat cache");
	return 0;
}

int artifs_statcache_drop(artifs_store *s, MDB_txn *txn, const char *repo, const char *branch)
{
	artifs_buf key = { 0 };
	int rc;

	if (!(rc = artifs_buf_put(&key, repo, strlen(repo) + 1)) &&
	    !(rc = artifs_buf_put(&key, branch, strlen(branch) + 1)))
		rc = statcache_drop(s, txn, key.ptr, key.len);
	artifs_buf_release(&key);
	return rc;
}

/* A cached manifest for this path if its stat still matches. */
static int sc_lookup(struct snap *sn, const struct stat *st, int exec, artifs_oid *blob)
{
	MDB_txn *txn = artifs_writer_rtxn(sn->w);
	uint8_t want[STATCACHE_VALSZ];
	MDB_val k, v;

	if (sn->o->no_cache)
		return 0;
	sn->key.len = sn->key_prefix;
	if (artifs_buf_put(&sn->key, sn->path.ptr, sn->path.len))
		return 0;
	k.mv_data = sn->key.ptr;
	k.mv_size = sn->key.len;
	if (mdb_get(txn, sn->s->statcache, &k, &v) || v.mv_size != STATCACHE_VALSZ)
		return 0;
	sc_encode(want, st, exec, blob);
	if (memcmp(v.mv_data, want, 48))
		return 0;
	memcpy(blob->id, (const uint8_t *)v.mv_data + 48, 16);
	/* trust it only while the manifest is still stored */
	k.mv_data = blob->id;
	k.mv_size = 16;
	return mdb_get(txn, sn->s->blobs, &k, &v) == 0;
}

static int sc_add(struct snap *sn, const struct stat *st, int exec, const artifs_oid *blob)
{
	struct sc_ent *e;

	if (ts_ns(&st->st_mtim) > sn->start_ns - RACY_NS || ts_ns(&st->st_ctim) > sn->start_ns - RACY_NS)
		return 0;
	if (sn->nsc == sn->capsc) {
		size_t cap = sn->capsc ? sn->capsc * 2 : 1024;
		void *p = realloc(sn->sc, cap * sizeof(*sn->sc));
		if (!p)
			return artifs_error(-ENOMEM, "out of memory");
		sn->sc = p;
		sn->capsc = cap;
	}
	e = &sn->sc[sn->nsc];
	if (!(e->path = strndup((const char *)sn->path.ptr, sn->path.len)))
		return artifs_error(-ENOMEM, "out of memory");
	sc_encode(e->val, st, exec, blob);
	sn->nsc++;
	return 0;
}

static const char *cur_path(struct snap *sn)
{
	/* path buffer is kept NUL-terminated one past len */
	return sn->path.len ? (const char *)sn->path.ptr : ".";
}

static void progress(struct snap *sn)
{
	if (sn->o->progress)
		sn->o->progress(&sn->prog, sn->o->ctx);
}

static int same_stat(const struct stat *a, const struct stat *b)
{
	return a->st_size == b->st_size && a->st_ino == b->st_ino &&
	       ts_ns(&a->st_mtim) == ts_ns(&b->st_mtim) && ts_ns(&a->st_ctim) == ts_ns(&b->st_ctim);
}

/* Read one regular file into the writer; ARTIFS_ECHANGED if it moved under us. */
static int read_file(struct snap *sn, int dirfd, const char *name, struct stat *st,
	artifs_oid *blob, uint64_t *size)
{
	struct stat after;
	int fd, rc;

	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
	if (fd < 0 && errno == EPERM)
		fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return artifs_error(-errno, "cannot open '%s': %s", cur_path(sn), strerror(errno));
	if (fstat(fd, st) < 0) {
		rc = artifs_error(-errno, "cannot stat '%s': %s", cur_path(sn), strerror(errno));
		goto done;
	}
	if (!S_ISREG(st->st_mode)) {
		rc = ARTIFS_ECHANGED;
		goto done;
	}
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	if ((rc = artifs_writer_file_begin(sn->w)))
		goto done;
	for (int first = 1;; first = 0) {
		uint8_t *buf;
		size_t avail;
		ssize_t n = -1;
		if ((rc = artifs_writer_file_buf(sn->w, &buf, &avail)))
			goto abort;
		if (first && !sn->cold) {
			/* the first read tells whether the source is in memory */
			struct iovec iov = { buf, avail };
			n = preadv2(fd, &iov, 1, -1, RWF_NOWAIT);
			if (n < 0 && errno == EAGAIN)
				sn->cold = 1;
		}
		if (n < 0)
			n = read(fd, buf, avail);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = artifs_error(-errno, "cannot read '%s': %s", cur_path(sn), strerror(errno));
			goto abort;
		}
		if (n == 0)
			break;
		artifs_writer_file_fill(sn->w, (size_t)n);
		sn->prog.bytes += (uint64_t)n;
		sn->prog.bytes_read += (uint64_t)n;
		sn->st->bytes_read += (uint64_t)n;
		if (sn->prog.bytes_read % (16u << 20) < (uint64_t)n)
			progress(sn);
	}
	if ((rc = artifs_writer_file_end(sn->w, blob, size)))
		goto done;
	if (fstat(fd, &after) < 0) {
		rc = artifs_error(-errno, "cannot stat '%s': %s", cur_path(sn), strerror(errno));
		goto done;
	}
	if (!same_stat(st, &after) || *size != (uint64_t)st->st_size)
		rc = ARTIFS_ECHANGED;
	goto done;
abort:
	artifs_writer_file_abort(sn->w);
done:
	close(fd);
	return rc;
}

static int do_file(struct snap *sn, int dirfd, const char *name, struct stat *st,
	artifs_tree_builder *tb, uint64_t *dir_bytes, const artifs_prevdir *pd)
{
	const artifs_prev_ent *pe = artifs_prevdir_find(pd, name);
	const artifs_oid *labels = pe && pe->type == ARTIFS_T_FILE ? &pe->labels : NULL;
	int exec = (st->st_mode & 0111) ? ARTIFS_F_EXEC : 0;
	artifs_oid blob;
	uint64_t size = (uint64_t)st->st_size;
	int rc = 0;

	if (sc_lookup(sn, st, exec, &blob)) {
		sn->st->files_cached++;
		sn->prog.bytes += size;
		/* finish() replaces the branch's whole cache: carry the hit over */
		if ((rc = sc_add(sn, st, exec, &blob)))
			return rc;
	} else {
		for (int attempt = 0; ; attempt++) {
			uint64_t before = sn->prog.bytes;
			rc = read_file(sn, dirfd, name, st, &blob, &size);
			if (rc != ARTIFS_ECHANGED)
				break;
			sn->prog.bytes = before;
			if (attempt + 1 >= CHANGE_RETRIES)
				return artifs_error(ARTIFS_ECHANGED,
					"'%s' changed while it was being read (%d tries); "
					"stop the writer or commit a copy", cur_path(sn), CHANGE_RETRIES);
		}
		if (rc)
			return rc;
		exec = (st->st_mode & 0111) ? ARTIFS_F_EXEC : 0;
		if ((rc = sc_add(sn, st, exec, &blob)))
			return rc;
	}
	sn->st->files++;
	sn->st->bytes += size;
	sn->prog.files++;
	*dir_bytes += size;
	if (labels)
		sn->st->labelled++;
	if ((sn->prog.files & 255) == 0)
		progress(sn);
	return artifs_tree_builder_add(tb, name, strlen(name), ARTIFS_T_FILE, (uint8_t)exec,
		size, &blob, labels);
}

static int do_link(struct snap *sn, int dirfd, const char *name, artifs_tree_builder *tb)
{
	char target[PATH_MAX + 1];
	ssize_t n = readlinkat(dirfd, name, target, sizeof(target));
	artifs_oid blob;
	uint64_t size;
	int rc;

	if (n < 0)
		return artifs_error(-errno, "cannot read link '%s': %s", cur_path(sn), strerror(errno));
	if ((size_t)n > PATH_MAX)
		return artifs_error(-ENAMETOOLONG, "link target of '%s' is too long", cur_path(sn));
	if ((rc = artifs_writer_file_begin(sn->w)) ||
	    (rc = artifs_writer_file_write(sn->w, target, (size_t)n)) ||
	    (rc = artifs_writer_file_end(sn->w, &blob, &size)))
		return rc;
	sn->st->links++;
	sn->prog.files++;
	return artifs_tree_builder_add(tb, name, strlen(name), ARTIFS_T_LINK, 0, size, &blob, NULL);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Push "/name" (or "name" at the top) onto the path; returns the old length. */
static size_t path_push(struct snap *sn, const char *name)
{
	size_t old = sn->path.len;

	if (old)
		artifs_buf_put(&sn->path, "/", 1);
	artifs_buf_put(&sn->path, name, strlen(name) + 1);
	sn->path.len--;	/* keep the NUL past the end */
	return old;
}

static void path_pop(struct snap *sn, size_t old)
{
	sn->path.len = old;
	if (sn->path.ptr)
		sn->path.ptr[old] = '\0';
}

static int walk(struct snap *sn, int dirfd, artifs_oid *tree, uint64_t *bytes, const artifs_oid *prev)
{
	artifs_prevdir pd = { 0 };
	artifs_tree_builder tb;
	artifs_buf rec = { 0 };
	char **names = NULL;
	size_t n = 0, cap = 0;
	DIR *d = NULL;
	struct dirent *de;
	int fd2, rc = 0;

	artifs_tree_builder_init(&tb);
	*bytes = 0;
	if (prev && (rc = artifs_prevdir_load(&pd, sn->s, artifs_writer_rtxn(sn->w), prev)))
		goto done;
	if ((fd2 = dup(dirfd)) < 0 || !(d = fdopendir(fd2))) {
		rc = artifs_error(-errno, "cannot read directory '%s': %s", cur_path(sn), strerror(errno));
		if (fd2 >= 0)
			close(fd2);
		goto done;
	}
	errno = 0;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n == cap) {
			void *p;
			cap = cap ? cap * 2 : 64;
			if (!(p = realloc(names, cap * sizeof(*names)))) {
				rc = artifs_error(-ENOMEM, "out of memory");
				goto done;
			}
			names = p;
		}
		if (!(names[n] = strdup(de->d_name))) {
			rc = artifs_error(-ENOMEM, "out of memory");
			goto done;
		}
		n++;
	}
	if (errno) {
		rc = artifs_error(-errno, "cannot read directory '%s': %s", cur_path(sn), strerror(errno));
		goto done;
	}
	if (n > 1)
		qsort(names, n, sizeof(*names), name_cmp);
	for (size_t i = 0, ahead = 1; i < n && !rc; i++) {
		size_t old = path_push(sn, names[i]);
		struct stat st;
		if (sn->cold) {
			size_t to = i + 1 + AHEAD_FILES < n ? i + 1 + AHEAD_FILES : n;

			if (ahead <= i)
				ahead = i + 1;
			read_ahead(dirfd, names, ahead, to);
			if (to > ahead)
				ahead = to;
		}
		if (fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT) {
				warnf(sn, "'%s' vanished during the walk; not committed", cur_path(sn));
				sn->st->skipped++;
			} else {
				rc = artifs_error(-errno, "cannot stat '%s': %s", cur_path(sn), strerror(errno));
			}
		} else if (S_ISDIR(st.st_mode)) {
			artifs_oid sub;
			uint64_t subbytes;
			int fd;
			if (st.st_dev == sn->store_dev && st.st_ino == sn->store_ino) {
				warnf(sn, "'%s' is the store itself; skipped", cur_path(sn));
				sn->st->skipped++;
			} else if ((fd = openat(dirfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
				rc = artifs_error(-errno, "cannot open directory '%s': %s", cur_path(sn), strerror(errno));
			} else {
				const artifs_prev_ent *pe = artifs_prevdir_find(&pd, names[i]);
				rc = walk(sn, fd, &sub, &subbytes,
					pe && pe->type == ARTIFS_T_DIR ? &pe->id : NULL);
				close(fd);
				if (!rc) {
					sn->st->dirs++;
					*bytes += subbytes;
					rc = artifs_tree_builder_add(&tb, names[i], strlen(names[i]), ARTIFS_T_DIR,
						0, subbytes, &sub, NULL);
				}
			}
		} else if (S_ISREG(st.st_mode)) {
			rc = do_file(sn, dirfd, names[i], &st, &tb, bytes, &pd);
		} else if (S_ISLNK(st.st_mode)) {
			rc = do_link(sn, dirfd, names[i], &tb);
		} else {
			warnf(sn, "'%s' is a %s; skipped", cur_path(sn),
				S_ISFIFO(st.st_mode) ? "FIFO" : S_ISSOCK(st.st_mode) ? "socket" : "device");
			sn->st->skipped++;
		}
		path_pop(sn, old);
	}
	if (rc)
		goto done;
	if ((rc = artifs_tree_builder_encode(&tb, &rec)))
		goto done;
	rc = artifs_writer_put_tree(sn->w, tree, rec.ptr, rec.len);
done:
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	artifs_prevdir_release(&pd);
	if (d)
		closedir(d);
	artifs_tree_builder_release(&tb);
	artifs_buf_release(&rec);
	return rc;
}

/* The final transaction: commit object, branch move, stat cache. */
static int finish(MDB_txn *txn, void *ctx)
{
	struct snap *sn = ctx;
	MDB_val k, v;
	int rc;

	if (sn->create) {
		if ((rc = artifs_commit_write(&sn->new_id, sn->s, txn, &sn->commit)))
			return rc;
		if ((rc = artifs_ref_update(sn->s, txn, sn->repo, sn->branch, ARTIFS_REF_BRANCH,
				&sn->head, &sn->new_id, sn->commit.author,
				sn->commit.message[0] ? sn->commit.message : "commit")))
			return rc;
	}
	/* replace the branch's stat cache */
	if ((rc = statcache_drop(sn->s, txn, sn->key.ptr, sn->key_prefix)))
		return rc;
	for (size_t i = 0; i < sn->nsc; i++) {
		sn->key.len = sn->key_prefix;
		if ((rc = artifs_buf_put(&sn->key, sn->sc[i].path, strlen(sn->sc[i].path))))
			return rc;
		k.mv_data = sn->key.ptr;
		k.mv_size = sn->key.len;
		v.mv_data = sn->sc[i].val;
		v.mv_size = STATCACHE_VALSZ;
		if ((rc = mdb_put(txn, sn->s->statcache, &k, &v, 0)))
			return rc == MDB_MAP_FULL ? rc : artifs_error_lmdb(rc, "cannot update stat cache");
	}
	return 0;
}

/* Make the new trees readable, work out the commit's id, ask the caller. */
int artifs_commit_before_move(artifs_writer *w, const artifs_oid *head, const artifs_commit *c,
	int (*fn)(const artifs_oid *, const artifs_oid *, const artifs_commit *, void *), void *ctx)
{
	artifs_buf rec = { 0 };
	artifs_oid id;
	int rc;

	if ((rc = artifs_writer_flush(w)) || (rc = artifs_commit_encode(&rec, c)))
		goto done;
	artifs_oid_hash(&id, rec.ptr, rec.len);
	rc = fn(head, &id, c, ctx);
done:
	artifs_buf_release(&rec);
	return rc;
}

static int meta_equal(const artifs_commit *parent, const artifs_snapshot_opts *o)
{
	if (parent->nmeta != o->nmeta)
		return 0;
	for (size_t i = 0; i < o->nmeta; i++) {
		size_t j;
		for (j = 0; j < parent->nmeta; j++)
			if (!strcmp(parent->meta[j].key, o->meta[i].key) &&
			    !strcmp(parent->meta[j].value, o->meta[i].value))
				break;
		if (j == parent->nmeta)
			return 0;
	}
	return 1;
}

static int snapshot_run(artifs_oid *out, artifs_store *s, const char *repo, const char *branch,
	const char *dir, const artifs_tree_source *src, const artifs_snapshot_opts *o,
	artifs_snapshot_stats *stats)
{
	struct snap sn = { 0 };
	artifs_snapshot_stats localst = { 0 };
	artifs_commit *parent = NULL;
	const artifs_oid *prev;
	artifs_oid root;
	uint64_t bytes;
	struct timespec now;
	struct stat stst;
	int dirfd = -1, locked = 0, rc;

	if (!stats)
		stats = &localst;
	memset(stats, 0, sizeof(*stats));
	sn.s = s;
	sn.repo = repo;
	sn.branch = branch;
	sn.o = o;
	sn.st = stats;
	clock_gettime(CLOCK_REALTIME, &now);
	sn.start_ns = ts_ns(&now);
	if (stat(artifs_store_path(s), &stst) == 0) {
		sn.store_dev = stst.st_dev;
		sn.store_ino = stst.st_ino;
	}
	for (size_t i = 0; i < o->nmeta; i++)
		if (!artifs_meta_key_valid(o->meta[i].key))
			return artifs_error(ARTIFS_EINVAL,
				"invalid metadata key '%s' (letters, digits, '.', '_', '-')", o->meta[i].key);

	if ((rc = artifs_store_lock(s, 0, 0)))
		return rc;
	locked = 1;
	if ((rc = artifs_writer_new(&sn.w, s)))
		goto done;
	if ((rc = artifs_branch_head(&sn.head, s, artifs_writer_rtxn(sn.w), repo, branch,
			"commits go to branches")))
		goto done;
	if (!artifs_oid_is_zero(&sn.head) &&
	    (rc = artifs_commit_load(&parent, s, artifs_writer_rtxn(sn.w), &sn.head)))
		goto done;
	if ((rc = artifs_buf_put(&sn.key, repo, strlen(repo) + 1)) ||
	    (rc = artifs_buf_put(&sn.key, branch, strlen(branch) + 1)))
		goto done;
	sn.key_prefix = sn.key.len;
	if ((rc = artifs_buf_grow(&sn.path, 256)))
		goto done;
	sn.path.ptr[0] = '\0';

	/* labels carry over only from a head that has some */
	prev = parent && !artifs_oid_is_zero(&parent->labels) ? &parent->tree : NULL;
	if (src) {
		if ((rc = src->build(sn.w, prev, &root, stats, src->ctx)))
			goto done;
	} else {
		dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dirfd < 0) {
			rc = artifs_error(-errno, "cannot open directory '%s': %s", dir, strerror(errno));
			goto done;
		}
		if ((rc = walk(&sn, dirfd, &root, &bytes, prev)))
			goto done;
	}
	progress(&sn);
	if (o->labels && (o->labels->n || o->labels->replace)) {
		artifs_label_apply_stats ls;
		artifs_oid root2;
		if ((rc = artifs_writer_flush(sn.w)) ||
		    (rc = artifs_labels_apply(sn.w, &root, o->labels, &root2, &ls)))
			goto done;
		stats->labels_changed = ls.files_changed;
		root = root2;
	}

	if (parent && !o->allow_empty && !artifs_oid_cmp(&parent->tree, &root) && meta_equal(parent, o)) {
		/*
		 * Nothing changed: keep the head.  Refresh the stat cache only if
		 * some file was read (a cache miss); when every file was a hit the
		 * cache is already exact and no write transaction is needed.
		 */
		if (stats->files_cached != stats->files &&
		    (rc = artifs_writer_finish(sn.w, finish, &sn)))
			goto done;
		stats->created = 0;
		*out = sn.head;
		goto stats_out;
	}
	sn.commit.tree = root;
	if (parent && !artifs_oid_cmp(&parent->tree, &root)) {
		sn.commit.labels = parent->labels;
	} else if (stats->labelled || stats->labels_changed) {
		uint64_t nl;
		if ((rc = artifs_writer_flush(sn.w)) ||
		    (rc = artifs_labels_manifest(sn.w, &root, &sn.commit.labels, &nl)))
			goto done;
		stats->labelled = nl;
	}
	sn.commit.nparents = parent ? 1 : 0;
	sn.commit.parents = parent ? &sn.head : NULL;
	sn.commit.time = (int64_t)now.tv_sec;
	sn.commit.repo = (char *)repo;
	sn.commit.author = (char *)(o->author ? o->author : artifs_author_default());
	sn.commit.message = (char *)(o->message ? o->message : "");
	sn.commit.nmeta = o->nmeta;
	sn.commit.meta = (artifs_meta *)o->meta;
	sn.create = 1;
	if (o->before_move &&
	    (rc = artifs_commit_before_move(sn.w, &sn.head, &sn.commit, o->before_move, o->move_ctx)))
		goto done;
	if ((rc = artifs_writer_finish(sn.w, finish, &sn)))
		goto done;
	stats->created = 1;
	stats->objects_new++;
	*out = sn.new_id;
stats_out:
	{
		const artifs_writer_stats *ws = artifs_writer_get_stats(sn.w);
		stats->chunks_new = ws->chunks_new;
		stats->chunk_bytes_new = ws->chunk_bytes_new;
		stats->objects_new += ws->objects_new;
	}
done:
	if (dirfd >= 0)
		close(dirfd);
	artifs_writer_free(sn.w);
	artifs_commit_free(parent);
	for (size_t i = 0; i < sn.nsc; i++)
		free(sn.sc[i].path);
	free(sn.sc);
	artifs_buf_release(&sn.path);
	artifs_buf_release(&sn.key);
	if (locked)
		artifs_store_unlock(s);
	return rc;
}

int artifs_snapshot_dir(artifs_oid *out, artifs_store *s, const char *repo, const char *branch,
	const char *dir, const artifs_snapshot_opts *o, artifs_snapshot_stats *stats)
{
	return snapshot_run(out, s, repo, branch, dir, NULL, o, stats);
}

int artifs_snapshot_source(artifs_oid *out, artifs_store *s, const char *repo, const char *branch,
	const artifs_tree_source *src, const artifs_snapshot_opts *o, artifs_snapshot_stats *stats)
{
	return snapshot_run(out, s, repo, branch, NULL, src, o, stats);
}
