/*
 * remote_file.c - a remote that is a directory (a shared filesystem, a
 * mounted volume): keys are paths below it.
 *
 * Whole objects appear atomically: written to a temporary name in the same
 * directory, synced, then renamed (or, for an exclusive put, linked: link(2)
 * fails with EEXIST when the name is taken, which is the compare-and-swap
 * the refs need).  Temporary names start with ".tmp-" and are never listed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "remote.h"

struct file_remote {
	char *root;
};

static char *key_path(artifs_remote *r, const char *key)
{
	struct file_remote *f = r->impl;

	return artifs_strfmt("%s/%s", f->root, key);
}

static int sys_error(int err, const char *what, const char *path)
{
	if (err == ENOSPC)
		return artifs_error(-ENOSPC, "no space left on the device of remote file '%s'", path);
	return artifs_error(-err, "cannot %s '%s': %s", what, path, strerror(err));
}

/* Open an object for reading: the fd, or ARTIFS_ENOTFOUND naming the key. */
static int open_key(artifs_remote *r, const char *key, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd >= 0)
		return fd;
	return errno == ENOENT
		? artifs_error(ARTIFS_ENOTFOUND, "'%s' not found on remote '%s'", key, r->url)
		: sys_error(errno, "open", path);
}

static int file_get(artifs_remote *r, const char *key, artifs_buf *out)
{
	char *path = key_path(r, key);
	struct stat st;
	int fd, rc = 0;

	if (!path)
		return -ENOMEM;
	if ((fd = open_key(r, key, path)) < 0) {
		free(path);
		return fd;
	}
	if (fstat(fd, &st) < 0) {
		rc = sys_error(errno, "stat", path);
	} else if (st.st_size > 0 && !(rc = artifs_buf_grow(out, (size_t)st.st_size))) {
		size_t got = 0, want = (size_t)st.st_size;

		while (got < want) {
			ssize_t n = read(fd, out->ptr + out->len + got, want - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				rc = n < 0 ? sys_error(errno, "read", path)
					: artifs_error(ARTIFS_ECORRUPT, "'%s' shrank while read", path);
				break;
			}
			got += (size_t)n;
		}
		if (!rc)
			out->len += got;
	}
	close(fd);
	free(path);
	return rc;
}

static int file_get_range(artifs_remote *r, const char *key, uint64_t off, size_t len, void *dst)
{
	char *path = key_path(r, key);
	size_t got = 0;
	int fd, rc = 0;

	if (!path)
		return -ENOMEM;
	if ((fd = open_key(r, key, path)) < 0) {
		free(path);
		return fd;
	}
	while (got < len) {
		ssize_t n = pread(fd, (char *)dst + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? sys_error(errno, "read", path)
				: artifs_error(ARTIFS_ECORRUPT,
					"'%s' is shorter than %llu bytes", path,
					(unsigned long long)(off + len));
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	free(path);
	return rc;
}

/* mkdir -p of the directories above `path`, below the root */
static int make_parents(const char *root, char *path)
{
	size_t rootlen = strlen(root);
	char *p;

	for (p = path + rootlen + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		if (mkdir(path, 0777) < 0 && errno != EEXIST) {
			int err = errno;
			*p = '/';
			return sys_error(err, "create directory", path);
		}
		*p = '/';
	}
	return 0;
}

static int sync_dir_of(const char *path)
{
	char *dir = strdup(path), *slash;
	int fd, rc = 0;

	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		rc = sys_error(errno, "sync directory", dir);
	if (fd >= 0)
		close(fd);
	free(dir);
	return rc;
}

static int file_put(artifs_remote *r, const char *key, const void *data, size_t len, int exclusive)
{
	struct file_remote *f = r->impl;
	char *path = key_path(r, key), *tmp = NULL, *slash;
	size_t done = 0;
	int fd = -1, rc;

	if (!path)
		return -ENOMEM;
	if ((rc = make_parents(f->root, path)))
		goto out;
	slash = strrchr(path, '/');
	tmp = artifs_strfmt("%.*s/.tmp-%ld-%lx", (int)(slash - path), path, (long)getpid(),
		(unsigned long)random());
	if (!tmp) {
		rc = -ENOMEM;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = sys_error(errno, "create", tmp);
		goto out;
	}
	while (done < len) {
		ssize_t n = write(fd, (const char *)data + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = sys_error(errno, "write", tmp);
			goto out;
		}
		done += (size_t)n;
	}
	if (fsync(fd) < 0) {
		rc = sys_error(errno, "sync", tmp);
		goto out;
	}
	close(fd);
	fd = -1;
	if (exclusive) {
		if (link(tmp, path) < 0) {
			rc = errno == EEXIST
				? artifs_error(ARTIFS_EEXISTS, "'%s' already exists on remote '%s'",
					key, r->url)
				: sys_error(errno, "link", path);
			goto out;
		}
	} else if (rename(tmp, path) < 0) {
		rc = sys_error(errno, "rename to", path);
		goto out;
	} else {
		free(tmp);
		tmp = NULL;
	}
	rc = sync_dir_of(path);
out:
	if (fd >= 0)
		close(fd);
	if (tmp)
		unlink(tmp);
	free(tmp);
	free(path);
	return rc;
}

static int file_del(artifs_remote *r, const char *key)
{
	char *path = key_path(r, key);
	int rc = 0;

	if (!path)
		return -ENOMEM;
	if (unlink(path) < 0 && errno != ENOENT)
		rc = sys_error(errno, "delete", path);
	free(path);
	return rc;
}

struct listed {
	char *key;
	uint64_t size;
};

struct list_acc {
	struct listed *v;
	size_t n, cap;
};

static int list_add(struct list_acc *a, const char *key, uint64_t size)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 64;
		struct listed *v = realloc(a->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	if (!(a->v[a->n].key = strdup(key)))
		return -ENOMEM;
	a->v[a->n++].size = size;
	return 0;
}

/* every file below root/rel (rel ends in '/' or is empty) */
static int walk(const char *root, const char *rel, struct list_acc *a)
{
	char *dirpath = artifs_strfmt("%s/%s", root, rel);
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if (!dirpath)
		return -ENOMEM;
	d = opendir(dirpath);
	if (!d) {
		rc = errno == ENOENT || errno == ENOTDIR ? 0 : sys_error(errno, "list", dirpath);
		free(dirpath);
		return rc;
	}
	while (!rc && (de = readdir(d))) {
		struct stat st;
		char *k;

		if (de->d_name[0] == '.')
			continue;	/* ".", "..", temporaries */
		if (!(k = artifs_strfmt("%s%s", rel, de->d_name))) {
			rc = -ENOMEM;
			break;
		}
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				rc = sys_error(errno, "stat", k);
		} else if (S_ISDIR(st.st_mode)) {
			char *sub = artifs_strfmt("%s/", k);
			rc = sub ? walk(root, sub, a) : -ENOMEM;
			free(sub);
		} else if (S_ISREG(st.st_mode)) {
			rc = list_add(a, k, (uint64_t)st.st_size);
		}
		free(k);
	}
	closedir(d);
	free(dirpath);
	return rc;
}

static int cmp_listed(const void *a, const void *b)
{
	return strcmp(((const struct listed *)a)->key, ((const struct listed *)b)->key);
}

static int file_list(artifs_remote *r, const char *prefix,
	int (*fn)(const char *key, uint64_t size, void *ctx), void *ctx)
{
	struct file_remote *f = r->impl;
	struct list_acc a = { 0 };
	size_t i;
	int rc;

	rc = walk(f->root, prefix, &a);
	if (!rc && a.n)
		qsort(a.v, a.n, sizeof(*a.v), cmp_listed);
	for (i = 0; i < a.n; i++) {
		if (!rc)
			rc = fn(a.v[i].key, a.v[i].size, ctx);
		free(a.v[i].key);
	}
	free(a.v);
	return rc;
}

static void file_free(artifs_remote *r)
{
	struct file_remote *f = r->impl;

	if (f)
		free(f->root);
	free(f);
}

static const struct artifs_remote_ops file_ops = {
	file_get, file_get_range, file_put, file_del, file_list, file_free,
};

int artifs_remote_file_open(artifs_remote *r, const char *path, int create)
{
	struct file_remote *f;
	struct stat st;
	size_t n = strlen(path);

	while (n > 1 && path[n - 1] == '/')
		n--;
	if (path[0] != '/')
		return artifs_error(ARTIFS_EINVAL, "file remote '%s': the path must be absolute",
			r->url);
	if (create) {
		char *p = strndup(path, n), *q;
		if (!p)
			return -ENOMEM;
		for (q = p + 1; ; q++) {
			char c = *q;
			if (c == '/' || c == '\0') {
				*q = '\0';
				if (mkdir(p, 0777) < 0 && errno != EEXIST) {
					int err = errno;
					free(p);
					return sys_error(err, "create remote directory", path);
				}
				*q = c;
				if (!c)
					break;
			}
		}
		free(p);
	}
	{
		char *p = strndup(path, n);
		int err = 0;
		if (!p)
			return -ENOMEM;
		if (stat(p, &st) < 0)
			err = errno;
		free(p);
		if (err == ENOENT)
			return artifs_error(ARTIFS_ENOTFOUND, "remote directory '%.*s' does not exist",
				(int)n, path);
		if (err)
			return sys_error(err, "open remote directory", path);
		if (!S_ISDIR(st.st_mode))
			return artifs_error(ARTIFS_EINVAL, "remote '%s' is not a directory", r->url);
	}
	f = calloc(1, sizeof(*f));
	if (!f || !(f->root = strndup(path, n))) {
		free(f);
		return -ENOMEM;
	}
	r->impl = f;
	r->ops = &file_ops;
	return 0;
}
