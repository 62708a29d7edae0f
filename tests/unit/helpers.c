#include "helpers.h"

#include "commit.h"

#include "blob.h"
#include "ref.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *test_mkdtemp(void)
{
	const char *base = getenv("TMPDIR");
	char *tmpl;

	if (!base || !*base)
		base = "/tmp";
	tmpl = test_path(base, "artifs-unit-XXXXXX");
	if (!mkdtemp(tmpl))
		fail_msg("mkdtemp in '%s': %s", base, strerror(errno));
	return tmpl;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		return rmdir(path) < 0 ? -1 : 0;
	return unlink(path) < 0 ? -1 : 0;
}

void test_rmtree(const char *path)
{
	if (path && nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0)
		fprintf(stderr, "warning: cannot remove '%s': %s\n", path, strerror(errno));
}

char *test_path(const char *dir, const char *rel)
{
	size_t a = strlen(dir), b = strlen(rel);
	char *p = malloc(a + b + 2);

	assert_non_null(p);
	memcpy(p, dir, a);
	p[a] = '/';
	memcpy(p + a + 1, rel, b + 1);
	return p;
}

test_env *test_env_new(const artifs_store_opts *opts)
{
	test_env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	e->tmp = test_mkdtemp();
	e->store_dir = test_path(e->tmp, "store");
	e->src = test_path(e->tmp, "src");
	assert_ok(artifs_store_init(e->store_dir, opts));
	assert_ok(artifs_store_open(&e->s, e->store_dir, opts));
	if (mkdir(e->src, 0755) < 0)
		fail_msg("mkdir '%s': %s", e->src, strerror(errno));
	return e;
}

void test_env_free(test_env *e)
{
	if (!e)
		return;
	artifs_store_free(e->s);
	test_rmtree(e->tmp);
	free(e->tmp);
	free(e->store_dir);
	free(e->src);
	free(e);
}

int test_env_setup(void **state)
{
	*state = test_env_new(NULL);
	return 0;
}

int test_env_teardown(void **state)
{
	test_env_free(*state);
	*state = NULL;
	return 0;
}

void test_rng_init(test_rng *r, uint64_t seed)
{
	r->s = seed;
}

uint64_t test_rng_next(test_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void test_rng_fill(test_rng *r, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len >= 8) {
		uint64_t v = test_rng_next(r);
		memcpy(p, &v, 8);
		p += 8;
		len -= 8;
	}
	if (len) {
		uint64_t v = test_rng_next(r);
		memcpy(p, &v, len);
	}
}

uint8_t *test_random_bytes(uint64_t seed, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);
	test_rng r;

	assert_non_null(p);
	test_rng_init(&r, seed);
	test_rng_fill(&r, p, len);
	return p;
}

void test_write_file(const char *dir, const char *rel, const void *data, size_t len, mode_t mode)
{
	char *p = test_path(dir, rel);
	const uint8_t *q = data;
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	if (fd < 0)
		fail_msg("create '%s': %s", p, strerror(errno));
	while (len) {
		ssize_t n = write(fd, q, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			fail_msg("write '%s': %s", p, strerror(errno));
		q += n;
		len -= (size_t)n;
	}
	/* O_CREAT's mode is filtered by the umask; the tests want it exact */
	if (fchmod(fd, mode) < 0)
		fail_msg("chmod '%s': %s", p, strerror(errno));
	close(fd);
	free(p);
}

void test_mkdir(const char *dir, const char *rel)
{
	char *p = test_path(dir, rel);

	if (mkdir(p, 0755) < 0)
		fail_msg("mkdir '%s': %s", p, strerror(errno));
	free(p);
}

void test_symlink(const char *dir, const char *rel, const char *target)
{
	char *p = test_path(dir, rel);

	if (symlink(target, p) < 0)
		fail_msg("symlink '%s': %s", p, strerror(errno));
	free(p);
}

void test_age(const char *dir, const char *rel, long secs)
{
	char *p = test_path(dir, rel);
	struct timespec now, ts[2];

	clock_gettime(CLOCK_REALTIME, &now);
	ts[0] = ts[1] = (struct timespec){ now.tv_sec - secs, 0 };
	if (utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW) < 0)
		fail_msg("utimensat '%s': %s", p, strerror(errno));
	free(p);
}

int test_resolve(artifs_tree_entry *e, artifs_store *s, const artifs_oid *root, const char *path)
{
	MDB_txn *txn = NULL;
	int rc;

	if ((rc = artifs_rtxn_begin(s, &txn)))
		return rc;
	rc = artifs_tree_resolve(e, s, txn, root, path);
	e->name = NULL;
	mdb_txn_abort(txn);
	return rc;
}

int test_read_path(uint8_t **data, size_t *len, artifs_store *s, const artifs_oid *root,
	const char *path)
{
	MDB_txn *txn = NULL;
	artifs_tree_entry e;
	artifs_blob_view b;
	artifs_oid digest;
	uint8_t *buf = NULL;
	size_t pos = 0;
	int rc;

	*data = NULL;
	*len = 0;
	if ((rc = artifs_rtxn_begin(s, &txn)))
		return rc;
	if ((rc = artifs_tree_resolve(&e, s, txn, root, path)))
		goto done;
	if (e.type != ARTIFS_T_FILE && e.type != ARTIFS_T_LINK) {
		rc = artifs_error(ARTIFS_EINVAL, "'%s' is not a file", path);
		goto done;
	}
	if ((rc = artifs_blob_load(&b, s, txn, &e.id)))
		goto done;
	/* the tree entry, the manifest and the chunks must agree on the size */
	if (b.size != e.size) {
		rc = artifs_error(ARTIFS_ECORRUPT, "'%s': entry size %llu, manifest %llu", path,
			(unsigned long long)e.size, (unsigned long long)b.size);
		goto done;
	}
	buf = malloc(b.size ? b.size : 1);
	assert_non_null(buf);
	for (uint32_t i = 0; i < b.nchunks; i++) {
		const uint8_t *p;
		size_t n;
		if ((rc = artifs_blob_chunk(&p, &n, s, txn, &b, i, 1)))
			goto done;
		if (pos + n > b.size || artifs_blob_chunk_off(&b, i) != pos) {
			rc = artifs_error(ARTIFS_ECORRUPT, "'%s': chunk %u out of place", path, i);
			goto done;
		}
		memcpy(buf + pos, p, n);
		pos += n;
	}
	artifs_oid_hash(&digest, buf, pos);
	if (pos != b.size || artifs_oid_cmp(&digest, &b.digest)) {
		rc = artifs_error(ARTIFS_ECORRUPT, "'%s': content does not match the file digest", path);
		goto done;
	}
	if (pos) {
		*data = buf;
		buf = NULL;
	}
	*len = pos;
done:
	free(buf);
	mdb_txn_abort(txn);
	return rc;
}

artifs_ref test_ref_get(artifs_store *s, const char *repo, const char *name)
{
	MDB_txn *txn = NULL;
	artifs_ref r;

	assert_ok(artifs_rtxn_begin(s, &txn));
	assert_ok(artifs_ref_get(&r, s, txn, repo, name));
	mdb_txn_abort(txn);
	return r;
}

void test_ref_target(artifs_oid *out, artifs_store *s, const char *repo, const char *name)
{
	*out = test_ref_get(s, repo, name).target;
}

void test_commit_tree(artifs_oid *tree, artifs_store *s, const artifs_oid *commit)
{
	artifs_commit *c = NULL;
	MDB_txn *txn = NULL;

	assert_ok(artifs_rtxn_begin(s, &txn));
	assert_ok(artifs_commit_load(&c, s, txn, commit));
	mdb_txn_abort(txn);
	*tree = c->tree;
	artifs_commit_free(c);
}
