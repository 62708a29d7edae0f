#include "checkout.h"
#include "blob.h"
#include "error.h"
#include "store_int.h"
#include "tree.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int artifs_blob_write_fd(artifs_store *s, MDB_txn *txn, const artifs_oid *id, int fd,
	uint64_t *written)
{
	artifs_blob_view b;
	uint64_t total = 0;
	int rc;

	if ((rc = artifs_blob_load(&b, s, txn, id)))
		return rc;
	for (uint32_t i = 0; i < b.nchunks; i++) {
		const uint8_t *data;
		size_t len;
		if ((rc = artifs_blob_chunk(&data, &len, s, txn, &b, i, 1)))
			return rc;
		if ((rc = write_all(fd, data, len)))
			return artifs_error(rc, "write failed: %s", strerror(-rc));
		total += len;
	}
	if (written)
		*written = total;
	return 0;
}

struct co {
	artifs_store *s;
	MDB_txn *txn;
	struct timespec times[2];
	artifs_progress_fn progress;
	void *ctx;
	artifs_progress prog;
	artifs_checkout_stats *st;
	char path[PATH_MAX];	/* for messages only */
};

static int co_file(struct co *c, int dirfd, const char *name, const artifs_tree_entry *e)
{
	int fd, rc;
	uint64_t n;

	fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		(e->flags & ARTIFS_F_EXEC) ? 0755 : 0644);
	if (fd < 0)
		return artifs_error(-errno, "cannot create '%s': %s", name, strerror(errno));
	rc = artifs_blob_write_fd(c->s, c->txn, &e->id, fd, &n);
	if (!rc && futimens(fd, c->times) < 0)
		rc = artifs_error(-errno, "cannot set times of '%s': %s", name, strerror(errno));
	if (close(fd) < 0 && !rc)
		rc = artifs_error(-errno, "cannot write '%s': %s", name, strerror(errno));
	if (rc)
		return rc;
	c->st->files++;
	c->st->bytes += n;
	c->prog.files++;
	c->prog.bytes += n;
	if (c->progress)
		c->progress(&c->prog, c->ctx);
	return 0;
}

static int co_link(struct co *c, int dirfd, const char *name, const artifs_tree_entry *e)
{
	artifs_blob_view b;
	char target[PATH_MAX + 1];
	size_t off = 0;
	int rc;

	if ((rc = artifs_blob_load(&b, c->s, c->txn, &e->id)))
		return rc;
	if (b.size > PATH_MAX)
		return artifs_error(ARTIFS_ECORRUPT, "link target of '%s' is too long", name);
	for (uint32_t i = 0; i < b.nchunks; i++) {
		const uint8_t *data;
		size_t len;
		if ((rc = artifs_blob_chunk(&data, &len, c->s, c->txn, &b, i, 1)))
			return rc;
		memcpy(target + off, data, len);
		off += len;
	}
	target[off] = '\0';
	if (symlinkat(target, dirfd, name) < 0)
		return artifs_error(-errno, "cannot create link '%s': %s", name, strerror(errno));
	utimensat(dirfd, name, c->times, AT_SYMLINK_NOFOLLOW);
	c->st->links++;
	return 0;
}

static int co_dir(struct co *c, int dirfd, const artifs_oid *tree)
{
	artifs_tree_view t;
	int rc;

	if ((rc = artifs_tree_load(&t, c->s, c->txn, tree)))
		return rc;
	for (uint32_t i = 0; i < t.count; i++) {
		artifs_tree_entry e;
		char name[ARTIFS_NAME_MAX + 1];
		if ((rc = artifs_tree_entry_at(&t, i, &e)))
			return rc;
		if (!artifs_name_valid(e.name, e.name_len))
			return artifs_error(ARTIFS_ECORRUPT, "tree has an invalid entry name");
		memcpy(name, e.name, e.name_len);
		name[e.name_len] = '\0';
		if (e.type == ARTIFS_T_FILE) {
			rc = co_file(c, dirfd, name, &e);
		} else if (e.type == ARTIFS_T_LINK) {
			rc = co_link(c, dirfd, name, &e);
		} else if (e.type == ARTIFS_T_DIR) {
			int fd;
			artifs_oid sub = e.id;
			if (mkdirat(dirfd, name, 0755) < 0)
				return artifs_error(-errno, "cannot create directory '%s': %s", name, strerror(errno));
			fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (fd < 0)
				return artifs_error(-errno, "cannot open directory '%s': %s", name, strerror(errno));
			rc = co_dir(c, fd, &sub);
			if (!rc)
				futimens(fd, c->times);
			close(fd);
			c->st->dirs++;
		} else {
			rc = artifs_error(ARTIFS_ECORRUPT, "tree entry '%s' has an unknown type", name);
		}
		if (rc)
			return rc;
	}
	return 0;
}

static int dir_empty(int fd)
{
	int fd2 = dup(fd);
	DIR *d = fd2 >= 0 ? fdopendir(fd2) : NULL;
	struct dirent *de;
	int empty = 1;

	if (!d) {
		if (fd2 >= 0)
			close(fd2);
		return 0;
	}
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			empty = 0;
			break;
		}
	closedir(d);
	return empty;
}

int artifs_checkout_tree(artifs_store *s, const artifs_oid *tree, int64_t mtime,
	const char *dest, artifs_progress_fn progress, void *ctx, artifs_checkout_stats *stats)
{
	artifs_checkout_stats local = { 0 };
	struct co c = { 0 };
	int fd = -1, rc;

	c.s = s;
	c.st = stats ? stats : &local;
	memset(c.st, 0, sizeof(*c.st));
	c.progress = progress;
	c.ctx = ctx;
	c.times[0].tv_sec = c.times[1].tv_sec = (time_t)mtime;
	if (mkdir(dest, 0755) < 0 && errno != EEXIST)
		return artifs_error(-errno, "cannot create '%s': %s", dest, strerror(errno));
	fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return artifs_error(-errno, "cannot open '%s': %s", dest, strerror(errno));
	if (!dir_empty(fd)) {
		close(fd);
		return artifs_error(ARTIFS_EEXISTS, "destination '%s' is not empty", dest);
	}
	if ((rc = artifs_rtxn_begin(s, &c.txn)))
		goto done;
	rc = co_dir(&c, fd, tree);
	mdb_txn_abort(c.txn);
done:
	close(fd);
	return rc;
}
