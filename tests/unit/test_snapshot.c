/*
 * test_snapshot.c - committing real directories with artifs_snapshot_dir:
 * what is stored and read back, identical ids for identical content, the
 * stat cache, structural sharing between commits, entries that are
 * skipped, and commits that fail or die midway leaving the branch alone.
 */
#include "helpers.h"

#include "commit.h"
#include "ref.h"
#include "snapshot.h"
#include "store_int.h"
#include "writer.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REPO "datasets/snap"

/* ---- helpers ---- */

static void snap(artifs_oid *out, test_env *env, const char *repo, const char *branch,
	const artifs_snapshot_opts *o, artifs_snapshot_stats *st)
{
	artifs_snapshot_opts def = ARTIFS_SNAPSHOT_OPTS_INIT;

	assert_ok(artifs_snapshot_dir(out, env->s, repo, branch, env->src, o ? o : &def, st));
}

static uint64_t ref_seq(artifs_store *s, const char *repo, const char *name)
{
	return test_ref_get(s, repo, name).seq;
}

static size_t table_entries(artifs_store *s, MDB_dbi dbi)
{
	MDB_txn *txn = NULL;
	MDB_stat st;

	assert_ok(artifs_rtxn_begin(s, &txn));
	assert_int_equal(mdb_stat(txn, dbi, &st), 0);
	mdb_txn_abort(txn);
	return st.ms_entries;
}

struct counts {
	size_t chunks, blobs, trees, commits, reflog;
};

static struct counts count_objects(artifs_store *s)
{
	struct counts c = {
		table_entries(s, s->chunks), table_entries(s, s->blobs), table_entries(s, s->trees),
		table_entries(s, s->commits), table_entries(s, s->reflog),
	};

	return c;
}

static void assert_counts_equal(const struct counts *a, const struct counts *b)
{
	assert_int_equal(a->chunks, b->chunks);
	assert_int_equal(a->blobs, b->blobs);
	assert_int_equal(a->trees, b->trees);
	assert_int_equal(a->commits, b->commits);
	assert_int_equal(a->reflog, b->reflog);
}

static void check_file(artifs_store *s, const artifs_oid *root, const char *path,
	const void *data, size_t len, int exec)
{
	artifs_tree_entry e;
	uint8_t *got = NULL;
	size_t n = 0;

	assert_ok(test_resolve(&e, s, root, path));
	if (e.type != ARTIFS_T_FILE)
		fail_msg("'%s' has type %d, want a file", path, e.type);
	if ((e.flags & ARTIFS_F_EXEC) != (exec ? ARTIFS_F_EXEC : 0))
		fail_msg("'%s' has flags %#x, want exec=%d", path, e.flags, exec);
	assert_int_equal(e.size, len);
	assert_ok(test_read_path(&got, &n, s, root, path));
	assert_int_equal(n, len);
	if (len)
		assert_memory_equal(got, data, len);
	else
		assert_null(got);
	free(got);
}

static void check_link(artifs_store *s, const artifs_oid *root, const char *path, const char *target)
{
	artifs_tree_entry e;
	uint8_t *got = NULL;
	size_t n = 0;

	assert_ok(test_resolve(&e, s, root, path));
	if (e.type != ARTIFS_T_LINK)
		fail_msg("'%s' has type %d, want a symlink", path, e.type);
	assert_int_equal(e.flags, 0);
	assert_int_equal(e.size, strlen(target));
	assert_ok(test_read_path(&got, &n, s, root, path));
	assert_int_equal(n, strlen(target));
	assert_memory_equal(got, target, n);
	free(got);
}

/* Directory entry at path: its size (bytes below) and the number of entries of its tree. */
static void check_dir(artifs_store *s, const artifs_oid *root, const char *path,
	uint64_t bytes, uint32_t count)
{
	artifs_tree_entry e;
	artifs_tree_view t;
	MDB_txn *txn = NULL;

	assert_ok(test_resolve(&e, s, root, path));
	if (e.type != ARTIFS_T_DIR)
		fail_msg("'%s' has type %d, want a directory", path, e.type);
	if (*path)
		assert_int_equal(e.size, bytes);
	assert_ok(artifs_rtxn_begin(s, &txn));
	assert_ok(artifs_tree_load(&t, s, txn, &e.id));
	assert_ok(artifs_tree_validate(&t));
	mdb_txn_abort(txn);
	assert_int_equal(t.count, count);
}

static uint8_t *slurp(const char *dir, const char *rel, size_t *len)
{
	char *p = test_path(dir, rel);
	struct stat st;
	uint8_t *buf;
	size_t pos = 0;
	int fd = open(p, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0)
		fail_msg("open '%s': %s", p, strerror(errno));
	buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	while (pos < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + pos, (size_t)st.st_size - pos);
		if (n <= 0)
			fail_msg("read '%s': %s", p, n ? strerror(errno) : "short file");
		pos += (size_t)n;
	}
	close(fd);
	free(p);
	*len = pos;
	return buf;
}

/*
 * Append to out, ';'-terminated, every path whose entry differs between
 * trees a and b (added, removed or changed leaves; directories whose ids
 * differ are descended into, not listed).
 */
static void tree_diff(artifs_store *s, MDB_txn *txn, const artifs_oid *a, const artifs_oid *b,
	const char *prefix, char *out, size_t cap)
{
	artifs_tree_view ta, tb;
	uint32_t i = 0, j = 0;

	assert_ok(artifs_tree_load(&ta, s, txn, a));
	assert_ok(artifs_tree_load(&tb, s, txn, b));
	while (i < ta.count || j < tb.count) {
		artifs_tree_entry ea = { 0 }, eb = { 0 };
		char path[1024];
		int c;
		if (i < ta.count)
			assert_ok(artifs_tree_entry_at(&ta, i, &ea));
		if (j < tb.count)
			assert_ok(artifs_tree_entry_at(&tb, j, &eb));
		if (i == ta.count) {
			c = 1;
		} else if (j == tb.count) {
			c = -1;
		} else {
			size_t n = ea.name_len < eb.name_len ? ea.name_len : eb.name_len;
			c = memcmp(ea.name, eb.name, n);
			if (!c)
				c = ea.name_len < eb.name_len ? -1 : ea.name_len > eb.name_len;
		}
		{
			const artifs_tree_entry *e = c <= 0 ? &ea : &eb;
			snprintf(path, sizeof(path), "%s%.*s", prefix, (int)e->name_len, e->name);
		}
		if (c) {
			strncat(out, path, cap - strlen(out) - 2);
			strcat(out, ";");
			if (c < 0)
				i++;
			else
				j++;
			continue;
		}
		i++;
		j++;
		if (ea.type == ARTIFS_T_DIR && eb.type == ARTIFS_T_DIR) {
			if (artifs_oid_cmp(&ea.id, &eb.id)) {
				strcat(path, "/");
				tree_diff(s, txn, &ea.id, &eb.id, path, out, cap);
			} else {
				/* equal ids must mean equal entries */
				assert_int_equal(ea.size, eb.size);
			}
		} else if (ea.type != eb.type || ea.flags != eb.flags || ea.size != eb.size ||
			   artifs_oid_cmp(&ea.id, &eb.id) || artifs_oid_cmp(&ea.labels, &eb.labels)) {
			strncat(out, path, cap - strlen(out) - 2);
			strcat(out, ";");
		}
	}
}

static void diff_roots(char *out, size_t cap, artifs_store *s, const artifs_oid *a, const artifs_oid *b)
{
	MDB_txn *txn = NULL;

	out[0] = '\0';
	assert_ok(artifs_rtxn_begin(s, &txn));
	tree_diff(s, txn, a, b, "", out, cap);
	mdb_txn_abort(txn);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- round trip ---- */

static void test_roundtrip(void **state)
{
	test_env *env = *state;
	static const char ctxt[] = "c.txt: some text\n";
	static const char run[] = "#!/bin/sh\necho hello\n";
	static const char uni_name[] = "donn\xc3\xa9" "es/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e.txt";
	static const char emoji[] = "emoji-\xf0\x9f\x98\x80";
	const size_t big_len = (3u << 20) + 12345;	/* more than one chunk */
	uint8_t *big = test_random_bytes(TEST_SEED, big_len);
	uint8_t *mid = test_random_bytes(TEST_SEED + 1, 1000);
	char long_name[ARTIFS_NAME_MAX + 1];
	artifs_snapshot_stats st;
	artifs_tree_entry e;
	artifs_oid head, root;

	memset(long_name, 'n', ARTIFS_NAME_MAX - 4);
	memcpy(long_name + ARTIFS_NAME_MAX - 4, ".bin", 5);
	assert_int_equal(strlen(long_name), 255);

	test_mkdir(env->src, "a");
	test_mkdir(env->src, "a/b");
	test_write_file(env->src, "a/b/c.txt", ctxt, strlen(ctxt), 0644);
	test_write_file(env->src, "a/b/mid.bin", mid, 1000, 0600);
	test_write_file(env->src, "a/empty", "", 0, 0644);
	test_mkdir(env->src, "a/deep");
	test_mkdir(env->src, "a/deep/er");
	test_mkdir(env->src, "a/deep/er/est");
	test_mkdir(env->src, "emptydir");
	test_mkdir(env->src, "bin");
	test_write_file(env->src, "bin/run.sh", run, strlen(run), 0755);
	test_write_file(env->src, "bin/user-x", "x", 1, 0700);
	test_write_file(env->src, "ro.txt", "read only", 9, 0444);
	test_write_file(env->src, "big.bin", big, big_len, 0644);
	test_mkdir(env->src, "donn\xc3\xa9" "es");
	test_write_file(env->src, uni_name, "unicode", 7, 0644);
	test_write_file(env->src, emoji, "smile", 5, 0644);
	test_write_file(env->src, long_name, "long", 4, 0644);
	test_symlink(env->src, "link_rel", "a/b/c.txt");
	test_symlink(env->src, "link_abs", "/nonexistent/dangling/target");
	test_symlink(env->src, "link_dir", "a");
	test_symlink(env->src, "loop", "loop");
	test_symlink(env->src, "link_uni", uni_name);
	test_symlink(env->src, "a/b/up", "../../big.bin");

	assert_ok(artifs_repo_create(env->s, REPO));
	snap(&head, env, REPO, "main", NULL, &st);
	assert_int_equal(st.created, 1);
	assert_int_equal(st.files, 10);
	assert_int_equal(st.links, 6);
	/* a a/b a/deep a/deep/er a/deep/er/est emptydir bin données */
	assert_int_equal(st.dirs, 8);
	assert_int_equal(st.skipped, 0);
	assert_int_equal(st.bytes, strlen(ctxt) + 1000 + strlen(run) + 1 + 9 + big_len + 7 + 5 + 4);
	assert_int_equal(st.bytes_read, st.bytes);
	assert_int_equal(st.files_cached, 0);
	assert_true(st.chunks_new >= 2);
	test_ref_target(&root, env->s, REPO, "main");
	assert_oid_equal(&root, &head);
	test_commit_tree(&root, env->s, &head);

	check_file(env->s, &root, "a/b/c.txt", ctxt, strlen(ctxt), 0);
	check_file(env->s, &root, "a/b/mid.bin", mid, 1000, 0);
	check_file(env->s, &root, "a/empty", "", 0, 0);
	check_file(env->s, &root, "bin/run.sh", run, strlen(run), 1);
	check_file(env->s, &root, "bin/user-x", "x", 1, 1);
	check_file(env->s, &root, "ro.txt", "read only", 9, 0);
	check_file(env->s, &root, "big.bin", big, big_len, 0);
	check_file(env->s, &root, uni_name, "unicode", 7, 0);
	check_file(env->s, &root, emoji, "smile", 5, 0);
	check_file(env->s, &root, long_name, "long", 4, 0);

	/* links are stored as their target bytes and never followed */
	check_link(env->s, &root, "link_rel", "a/b/c.txt");
	check_link(env->s, &root, "link_abs", "/nonexistent/dangling/target");
	check_link(env->s, &root, "link_dir", "a");
	check_link(env->s, &root, "loop", "loop");
	check_link(env->s, &root, "link_uni", uni_name);
	check_link(env->s, &root, "a/b/up", "../../big.bin");
	assert_rc(-ENOTDIR, test_resolve(&e, env->s, &root, "link_dir/b"));

	/* directory sizes count the files below them, not link targets */
	check_dir(env->s, &root, "", 0, 13);
	check_dir(env->s, &root, "a", strlen(ctxt) + 1000, 3);
	check_dir(env->s, &root, "a/b", strlen(ctxt) + 1000, 3);
	check_dir(env->s, &root, "a/deep", 0, 1);
	check_dir(env->s, &root, "a/deep/er/est", 0, 0);
	check_dir(env->s, &root, "emptydir", 0, 0);
	check_dir(env->s, &root, "bin", strlen(run) + 1, 2);
	check_dir(env->s, &root, "donn\xc3\xa9" "es", 7, 1);
	/* empty directories are one and the same tree */
	{
		artifs_tree_entry e2;
		assert_ok(test_resolve(&e, env->s, &root, "emptydir"));
		assert_ok(test_resolve(&e2, env->s, &root, "a/deep/er/est"));
		assert_oid_equal(&e.id, &e2.id);
	}
	assert_rc(ARTIFS_ENOTFOUND, test_resolve(&e, env->s, &root, "a/missing"));
	free(big);
	free(mid);
}

/* ---- identical content, identical ids ---- */

static void make_small_tree(const char *src)
{
	uint8_t *r = test_random_bytes(TEST_SEED + 7, 70000);

	test_mkdir(src, "x");
	test_mkdir(src, "x/y");
	test_write_file(src, "x/y/data.bin", r, 70000, 0644);
	test_write_file(src, "x/notes.txt", "notes\n", 6, 0644);
	test_write_file(src, "top.txt", "top\n", 4, 0755);
	test_symlink(src, "x/link", "y/data.bin");
	free(r);
}

static void test_identical_ids(void **state)
{
	test_env *env = *state;
	artifs_snapshot_opts o = ARTIFS_SNAPSHOT_OPTS_INIT;
	artifs_snapshot_stats st;
	artifs_oid zero = { { 0 } }, c1, c2, c3, c4, t1, t2, t3, t4, same;
	struct counts before, after;
	MDB_txn *txn = NULL;
	artifs_commit *c = NULL;
	uint64_t seq;

	make_small_tree(env->src);
	assert_ok(artifs_repo_create(env->s, "datasets/one"));
	assert_ok(artifs_repo_create(env->s, "datasets/two"));
	assert_ok(artifs_wtxn_begin(env->s, 1 << 20, &txn));
	assert_ok(artifs_ref_update(env->s, txn, "datasets/one", "dev", ARTIFS_REF_BRANCH, NULL, &zero,
		"t", "branch"));
	assert_ok(artifs_txn_commit(txn));
	o.message = "same";

	snap(&c1, env, "datasets/one", "main", &o, &st);
	assert_int_equal(st.created, 1);
	assert_true(st.chunks_new > 0);
	test_commit_tree(&t1, env->s, &c1);

	/* another repository: same tree, no new chunk, manifest or tree; only the commit */
	before = count_objects(env->s);
	snap(&c2, env, "datasets/two", "main", &o, &st);
	assert_int_equal(st.created, 1);
	assert_int_equal(st.chunks_new, 0);
	assert_int_equal(st.chunk_bytes_new, 0);
	assert_int_equal(st.objects_new, 1);
	after = count_objects(env->s);
	assert_int_equal(after.chunks, before.chunks);
	assert_int_equal(after.blobs, before.blobs);
	assert_int_equal(after.trees, before.trees);
	assert_int_equal(after.commits, before.commits + 1);
	test_commit_tree(&t2, env->s, &c2);
	assert_oid_equal(&t1, &t2);
	/* the repository is part of the commit */
	assert_oid_not_equal(&c1, &c2);

	/* another branch of the same repository: same tree */
	snap(&c3, env, "datasets/one", "dev", &o, &st);
	assert_int_equal(st.created, 1);
	assert_int_equal(st.chunks_new, 0);
	test_commit_tree(&t3, env->s, &c3);
	assert_oid_equal(&t1, &t3);

	/* unchanged: no commit, no object, no ref move */
	before = count_objects(env->s);
	seq = ref_seq(env->s, "datasets/one", "main");
	snap(&same, env, "datasets/one", "main", &o, &st);
	assert_int_equal(st.created, 0);
	assert_oid_equal(&same, &c1);
	assert_int_equal(st.files, 3);
	assert_int_equal(st.chunks_new, 0);
	assert_int_equal(st.objects_new, 0);
	after = count_objects(env->s);
	assert_counts_equal(&before, &after);
	assert_int_equal(ref_seq(env->s, "datasets/one", "main"), seq);
	test_ref_target(&same, env->s, "datasets/one", "main");
	assert_oid_equal(&same, &c1);

	/* allow_empty commits anyway: same tree, parent c1 */
	o.allow_empty = 1;
	snap(&c4, env, "datasets/one", "main", &o, &st);
	assert_int_equal(st.created, 1);
	assert_oid_not_equal(&c4, &c1);
	assert_int_equal(ref_seq(env->s, "datasets/one", "main"), seq + 1);
	test_commit_tree(&t4, env->s, &c4);
	assert_oid_equal(&t4, &t1);
	assert_ok(artifs_rtxn_begin(env->s, &txn));
	assert_ok(artifs_commit_load(&c, env->s, txn, &c4));
	mdb_txn_abort(txn);
	assert_int_equal(c->nparents, 1);
	assert_oid_equal(&c->parents[0], &c1);
	assert_string_equal(c->message, "same");
	artifs_commit_free(c);

	/* a different message alone is no change either */
	o.allow_empty = 0;
	o.message = "other";
	snap(&same, env, "datasets/one", "main", &o, &st);
	assert_int_equal(st.created, 0);
	assert_oid_equal(&same, &c4);
}

/* ---- the stat cache ---- */

#define NFILES 12
#define FSIZE 4096

static const char *sc_path(char *buf, int i)
{
	/* spread over three directory levels */
	sprintf(buf, i < 4 ? "top%02d" : i < 8 ? "d1/f%02d" : "d1/d2/f%02d", i);
	return buf;
}

static void test_stat_cache(void **state)
{
	test_env *env = *state;
	artifs_snapshot_stats st;
	artifs_oid c1, c2, c3, t1, t3, got;
	artifs_tree_entry e;
	uint8_t *data[NFILES], *changed;
	char name[32], diff[1024];
	struct stat old;
	struct timespec ts[2];
	char *p;
	MDB_txn *txn = NULL;
	MDB_val k;
	int i;

	test_mkdir(env->src, "d1");
	test_mkdir(env->src, "d1/d2");
	for (i = 0; i < NFILES; i++) {
		data[i] = test_random_bytes(TEST_SEED + 100 + (uint64_t)i, FSIZE);
		test_write_file(env->src, sc_path(name, i), data[i], FSIZE, 0644);
		test_age(env->src, name, 3600);
	}
	/* utimensat set every ctime to now: wait until they are out of the racy window */
	sleep_ms(1200);
	assert_ok(artifs_repo_create(env->s, REPO));

	snap(&c1, env, REPO, "main", NULL, &st);
	assert_int_equal(st.created, 1);
	assert_int_equal(st.files, NFILES);
	assert_int_equal(st.files_cached, 0);
	assert_int_equal(st.bytes_read, NFILES * FSIZE);
	test_commit_tree(&t1, env->s, &c1);

	/* nothing changed: nothing read */
	snap(&c2, env, REPO, "main", NULL, &st);
	assert_int_equal(st.created, 0);
	assert_oid_equal(&c2, &c1);
	assert_int_equal(st.files_cached, NFILES);
	assert_int_equal(st.bytes_read, 0);
	assert_int_equal(st.bytes, NFILES * FSIZE);

	/* the cache is per branch: a new branch reads everything */
	{
		artifs_oid zero = { { 0 } }, cd, td;
		assert_ok(artifs_wtxn_begin(env->s, 1 << 20, &txn));
		assert_ok(artifs_ref_update(env->s, txn, REPO, "dev", ARTIFS_REF_BRANCH, NULL, &zero,
			"t", "branch"));
		assert_ok(artifs_txn_commit(txn));
		snap(&cd, env, REPO, "dev", NULL, &st);
		assert_int_equal(st.files_cached, 0);
		assert_int_equal(st.bytes_read, NFILES * FSIZE);
		test_commit_tree(&td, env->s, &cd);
		assert_oid_equal(&td, &t1);

		/* dropping a branch's cache (its deletion) leaves the others' alone */
		snap(&cd, env, REPO, "dev", NULL, &st);
		assert_int_equal(st.files_cached, NFILES);
		assert_ok(artifs_wtxn_begin(env->s, 1 << 20, &txn));
		assert_ok(artifs_statcache_drop(env->s, txn, REPO, "dev"));
		assert_ok(artifs_txn_commit(txn));
		snap(&cd, env, REPO, "dev", NULL, &st);
		assert_int_equal(st.files_cached, 0);
		assert_int_equal(st.bytes_read, NFILES * FSIZE);
		snap(&c2, env, REPO, "main", NULL, &st);
		assert_int_equal(st.files_cached, NFILES);
	}

	/* a cached manifest is trusted only while it is stored */
	assert_ok(test_resolve(&e, env->s, &t1, "top03"));
	assert_ok(artifs_wtxn_begin(env->s, 1 << 20, &txn));
	k.mv_data = e.id.id;
	k.mv_size = ARTIFS_OID_RAWSZ;
	assert_int_equal(mdb_del(txn, env->s->blobs, &k, NULL), 0);
	assert_ok(artifs_txn_commit(txn));
	snap(&c2, env, REPO, "main", NULL, &st);
	assert_int_equal(st.created, 0);
	assert_int_equal(st.files_cached, NFILES - 1);
	assert_int_equal(st.bytes_read, FSIZE);
	assert_int_equal(st.objects_new, 1);	/* the manifest, stored again */
	check_file(env->s, &t1, "top03", data[3], FSIZE, 0);

	/*
	 * Change one file in place: same size, and the old mtime put back, so
	 * only the ctime tells.  It must be read again, and only it: the hits
	 * of the commit above (which read top03) are still in the cache.
	 */
	p = test_path(env->src, sc_path(name, 9));
	assert_int_equal(stat(p, &old), 0);
	changed = test_random_bytes(TEST_SEED + 999, FSIZE);
	test_write_file(env->src, name, changed, FSIZE, 0644);
	ts[0] = old.st_atim;
	ts[1] = old.st_mtim;
	assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
	free(p);
	snap(&c3, env, REPO, "main", NULL, &st);
	assert_int_equal(st.created, 1);
	assert_int_equal(st.files, NFILES);
	assert_int_equal(st.files_cached, NFILES - 1);
	assert_int_equal(st.bytes_read, FSIZE);
	test_commit_tree(&t3, env->s, &c3);
	assert_oid_not_equal(&t1, &t3);
	diff_roots(diff, sizeof(diff), env->s, &t1, &t3);
	assert_string_equal(diff, "d1/d2/f09;");
	check_file(env->s, &t3, name, changed, FSIZE, 0);
	check_file(env->s, &t3, "d1/d2/f08", data[8], FSIZE, 0);

	/* racy clean: the file changed within a second of that commit, so it was not cached */
	snap(&got, env, REPO, "main", NULL, &st);
	assert_int_equal(st.created, 0);
	assert_oid_equal(&got, &c3);
	assert_int_equal(st.files_cached, NFILES - 1);
	assert_int_equal(st.bytes_read, FSIZE);

	/* no_cache reads everything */
	{
		artifs_snapshot_opts o = ARTIFS_SNAPSHOT_OPTS_INIT;
		o.no_cache = 1;
		snap(&got, env, REPO, "main", &o, &st);
		assert_int_equal(st.created, 0);
		assert_int_equal(st.files_cached, 0);
		assert_int_equal(st.bytes_read, NFILES * FSIZE);
	}
	for (i = 0; i < NFILES; i++)
		free(data[i]);
	free(changed);
}

/* ---- structural sharing ---- */

static void test_structural_sharing(void **state)
{
	test_env *env = *state;
	artifs_snapshot_stats st;
	artifs_oid c1, c2, t1, t2;
	artifs_tree_entry e1, e2;
	char diff[1024];
	static const char *const same[] = { "x", "x/y", "a/x", "a/b/d.txt", "a/y.txt", "x/y/z.txt" };
	static const char *const changed[] = { "", "a", "a/b", "a/b/c.txt" };

	test_mkdir(env->src, "a");
	test_mkdir(env->src, "a/b");
	test_mkdir(env->src, "a/x");
	test_mkdir(env->src, "x");
	test_mkdir(env->src, "x/y");
	test_write_file(env->src, "a/b/c.txt", "version 1", 9, 0644);
	test_write_file(env->src, "a/b/d.txt", "d", 1, 0644);
	test_write_file(env->src, "a/x/e.txt", "e", 1, 0644);
	test_write_file(env->src, "a/y.txt", "y", 1, 0644);
	test_write_file(env->src, "x/y/z.txt", "z", 1, 0644);
	test_write_file(env->src, "x/w.txt", "w", 1, 0644);
	assert_ok(artifs_repo_create(env->s, REPO));
	snap(&c1, env, REPO, "main", NULL, &st);
	test_write_file(env->src, "a/b/c.txt", "version 2 is longer", 19, 0644);
	snap(&c2, env, REPO, "main", NULL, &st);
	assert_int_equal(st.created, 1);
	/* new: one chunk, its manifest, trees a/b, a and the root, the commit */
	assert_int_equal(st.chunks_new, 1);
	assert_int_equal(st.objects_new, 5);
	test_commit_tree(&t1, env->s, &c1);
	test_commit_tree(&t2, env->s, &c2);

	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		assert_ok(test_resolve(&e1, env->s, &t1, same[i]));
		assert_ok(test_resolve(&e2, env->s, &t2, same[i]));
		if (artifs_oid_cmp(&e1.id, &e2.id))
			fail_msg("'%s' should be shared between the commits", same[i]);
	}
	for (size_t i = 0; i < sizeof(changed) / sizeof(changed[0]); i++) {
		assert_ok(test_resolve(&e1, env->s, &t1, changed[i]));
		assert_ok(test_resolve(&e2, env->s, &t2, changed[i]));
		if (!artifs_oid_cmp(&e1.id, &e2.id))
			fail_msg("'%s' should differ between the commits", changed[i]);
	}
	/* sizes above the change follow it */
	assert_ok(test_resolve(&e1, env->s, &t1, "a"));
	assert_ok(test_resolve(&e2, env->s, &t2, "a"));
	assert_int_equal(e2.size, e1.size + 10);
	diff_roots(diff, sizeof(diff), env->s, &t1, &t2);
	assert_string_equal(diff, "a/b/c.txt;");
	check_file(env->s, &t2, "a/b/c.txt", "version 2 is longer", 19, 0);
	check_file(env->s, &t1, "a/b/c.txt", "version 1", 9, 0);
}

/* ---- entries that are skipped ---- */

struct warnings {
	int n;
	char text[1024];
};

static void collect_warn(const char *msg, void *ctx)
{
	struct warnings *w = ctx;

	w->n++;
	strncat(w->text, msg, sizeof(w->text) - strlen(w->text) - 2);
	strcat(w->text, "\n");
}

static void test_special_files_skipped(void **state)
{
	test_env *env = *state;
	artifs_snapshot_opts o = ARTIFS_SNAPSHOT_OPTS_INIT;
	artifs_snapshot_stats st;
	struct warnings w = { 0 };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	artifs_tree_entry e;
	artifs_oid head, root;
	char *p;
	int sock = -1, nskip = 2;

	test_write_file(env->src, "before", "b", 1, 0644);
	test_write_file(env->src, "zafter", "z", 1, 0644);
	test_mkdir(env->src, "sub");
	p = test_path(env->src, "pipe");
	assert_int_equal(mkfifo(p, 0644), 0);
	free(p);
	p = test_path(env->src, "sub/fifo");
	assert_int_equal(mkfifo(p, 0600), 0);
	free(p);
	/* a socket too, where the path fits in sun_path */
	p = test_path(env->src, "sock");
	if (strlen(p) < sizeof(sa.sun_path)) {
		strcpy(sa.sun_path, p);
		sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(sock >= 0);
		assert_int_equal(bind(sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
		nskip++;
	}
	free(p);

	assert_ok(artifs_repo_create(env->s, REPO));
	o.warn = collect_warn;
	o.ctx = &w;
	/* opening a FIFO would block forever: fail by signal instead of hanging */
	alarm(60);
	snap(&head, env, REPO, "main", &o, &st);
	alarm(0);
	if (sock >= 0)
		close(sock);
	assert_int_equal(st.created, 1);
	assert_int_equal(st.skipped, nskip);
	assert_int_equal(st.files, 2);
	assert_int_equal(w.n, nskip);
	assert_non_null(strstr(w.text, "'pipe' is a FIFO"));
	assert_non_null(strstr(w.text, "'sub/fifo' is a FIFO"));
	if (nskip == 3)
		assert_non_null(strstr(w.text, "'sock' is a socket"));
	test_commit_tree(&root, env->s, &head);
	check_dir(env->s, &root, "", 0, 3);
	check_dir(env->s, &root, "sub", 0, 0);
	assert_rc(ARTIFS_ENOTFOUND, test_resolve(&e, env->s, &root, "pipe"));
	assert_rc(ARTIFS_ENOTFOUND, test_resolve(&e, env->s, &root, "sock"));
	check_file(env->s, &root, "before", "b", 1, 0);
	check_file(env->s, &root, "zafter", "z", 1, 0);
}

/* ---- commits that fail midway ---- */

struct grower {
	char *path;
	int calls;
};

/*
 * Progress is reported every 16 MiB read (snapshot.c), so with one 17 MiB
 * file every call lands inside its read: grow the file under the reader.
 */
static void grow_file(const artifs_progress *p, void *ctx)
{
	struct grower *g = ctx;
	int fd = open(g->path, O_WRONLY | O_APPEND | O_CLOEXEC);

	(void)p;
	if (fd < 0 || write(fd, "+", 1) != 1)
		abort();
	close(fd);
	g->calls++;
}

static void test_changed_during_read(void **state)
{
	test_env *env = *state;
	artifs_snapshot_opts o = ARTIFS_SNAPSHOT_OPTS_INIT;
	artifs_snapshot_stats st;
	const size_t len = (17u << 20);
	uint8_t *big = test_random_bytes(TEST_SEED + 3, len), *now;
	struct grower g = { 0 };
	artifs_oid c1, c2, head, root;
	struct counts before, after;
	size_t nlen;
	uint64_t seq;
	int rc;

	test_write_file(env->src, "a.txt", "a", 1, 0644);
	assert_ok(artifs_repo_create(env->s, REPO));
	snap(&c1, env, REPO, "main", NULL, &st);
	seq = ref_seq(env->s, REPO, "main");

	test_write_file(env->src, "grow.bin", big, len, 0644);
	g.path = test_path(env->src, "grow.bin");
	o.progress = grow_file;
	o.ctx = &g;
	before = count_objects(env->s);
	rc = artifs_snapshot_dir(&head, env->s, REPO, "main", env->src, &o, &st);
	assert_int_equal(rc, ARTIFS_ECHANGED);
	assert_non_null(strstr(artifs_error_last(), "grow.bin"));
	/* retried before giving up */
	assert_true(g.calls >= 2);
	/* the branch and its log are untouched, and no commit was written */
	test_ref_target(&head, env->s, REPO, "main");
	assert_oid_equal(&head, &c1);
	assert_int_equal(ref_seq(env->s, REPO, "main"), seq);
	after = count_objects(env->s);
	assert_int_equal(after.commits, before.commits);
	assert_int_equal(after.reflog, before.reflog);

	/* once the file holds still, it commits, with what it holds now */
	snap(&c2, env, REPO, "main", NULL, &st);
	assert_int_equal(st.created, 1);
	test_commit_tree(&root, env->s, &c2);
	now = slurp(env->src, "grow.bin", &nlen);
	assert_int_equal(nlen, len + (size_t)g.calls);
	check_file(env->s, &root, "grow.bin", now, nlen, 0);
	free(now);
	free(big);
	free(g.path);
}

struct killer {
	artifs_store *s;
	size_t chunks0;
};

/* Die like kill -9 as soon as a batch of chunks has been committed. */
static void kill_after_batch(const artifs_progress *p, void *ctx)
{
	struct killer *k = ctx;
	MDB_txn *txn = NULL;
	MDB_stat st;

	(void)p;
	if (artifs_rtxn_begin(k->s, &txn) || mdb_stat(txn, k->s->chunks, &st))
		_exit(3);
	mdb_txn_abort(txn);
	if (st.ms_entries > k->chunks0)
		raise(SIGKILL);
}

static void test_killed_midway(void **state)
{
	test_env *env = *state;
	/*
	 * Enough 17 MiB files for two full batches and 32 MiB more: the first
	 * batch is committed in the background and is certainly in the store
	 * once the second one is handed over, with files still to come.
	 */
	const size_t len = 17u << 20, nbig = (2 * ARTIFS_WRITER_BATCH + (32u << 20)) / len + 1;
	artifs_snapshot_stats st;
	artifs_oid c0, c1, head, root;
	artifs_commit *c = NULL;
	struct counts before, killed, after;
	MDB_txn *txn = NULL;
	uint8_t *big0 = NULL;
	char name[32];
	uint64_t seq;
	pid_t pid;
	int status = 0, dead = 0;

	test_write_file(env->src, "keep.txt", "keep", 4, 0644);
	assert_ok(artifs_repo_create(env->s, REPO));
	snap(&c0, env, REPO, "main", NULL, &st);
	seq = ref_seq(env->s, REPO, "main");
	for (size_t i = 0; i < nbig; i++) {
		uint8_t *r = test_random_bytes(TEST_SEED + 50 + i, len);
		sprintf(name, "big%zu.bin", i);
		test_write_file(env->src, name, r, len, 0644);
		if (i)
			free(r);
		else
			big0 = r;
	}
	before = count_objects(env->s);

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* the child: its own handle (an LMDB env must not cross fork) */
		artifs_snapshot_opts o = ARTIFS_SNAPSHOT_OPTS_INIT;
		struct killer k = { NULL, before.chunks };
		artifs_oid id;
		if (artifs_store_open(&k.s, env->store_dir, NULL))
			_exit(2);
		o.progress = kill_after_batch;
		o.ctx = &k;
		_exit(artifs_snapshot_dir(&id, k.s, REPO, "main", env->src, &o, NULL) ? 4 : 5);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
		fail_msg("the child was not killed mid-commit (status %#x)", status);
	mdb_reader_check(env->s->env, &dead);

	/* a batch reached the store, yet the branch did not move */
	killed = count_objects(env->s);
	assert_true(killed.chunks > before.chunks);
	assert_int_equal(killed.commits, before.commits);
	assert_int_equal(killed.reflog, before.reflog);
	test_ref_target(&head, env->s, REPO, "main");
	assert_oid_equal(&head, &c0);
	assert_int_equal(ref_seq(env->s, REPO, "main"), seq);

	/* a re-run completes and reuses what the dead one wrote */
	snap(&c1, env, REPO, "main", NULL, &st);
	assert_int_equal(st.created, 1);
	assert_int_equal(st.bytes, 4 + nbig * len);
	assert_true(st.chunk_bytes_new + (32u << 20) <= nbig * len);
	after = count_objects(env->s);
	assert_int_equal(after.chunks, killed.chunks + st.chunks_new);
	assert_int_equal(ref_seq(env->s, REPO, "main"), seq + 1);
	assert_ok(artifs_rtxn_begin(env->s, &txn));
	assert_ok(artifs_commit_load(&c, env->s, txn, &c1));
	mdb_txn_abort(txn);
	assert_int_equal(c->nparents, 1);
	assert_oid_equal(&c->parents[0], &c0);
	root = c->tree;
	artifs_commit_free(c);
	/* the first file was in the dead run's batch: read it back from the reused chunks */
	check_file(env->s, &root, "big0.bin", big0, len, 0);
	check_file(env->s, &root, "keep.txt", "keep", 4, 0);
	free(big0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		ENV_TEST(test_roundtrip),
		ENV_TEST(test_identical_ids),
		ENV_TEST(test_stat_cache),
		ENV_TEST(test_structural_sharing),
		ENV_TEST(test_special_files_skipped),
		ENV_TEST(test_changed_during_read),
		ENV_TEST(test_killed_midway),
	};

	setenv("ARTIFS_AUTHOR", "unit-test", 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
