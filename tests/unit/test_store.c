/*
 * test_store.c - the store layer: insertion by id (dedupe, collision,
 * repair of damaged bytes), verified chunk reads, map growth in this and
 * in another process, refusing stores that are missing, foreign or of
 * an unknown format version, and reading values of a cold store in large
 * requests.
 */
#include "helpers.h"

#include "blob.h"
#include "codec.h"
#include "error.h"
#include "pagecache.h"
#include "ref.h"
#include "snapshot.h"
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define REPO "datasets/store"
#define MiB ((size_t)1 << 20)

/* ---- helpers ---- */

static size_t table_entries(artifs_store *s, MDB_dbi dbi)
{
	MDB_txn *txn = NULL;
	MDB_stat st;

	assert_ok(artifs_rtxn_begin(s, &txn));
	assert_int_equal(mdb_stat(txn, dbi, &st), 0);
	mdb_txn_abort(txn);
	return st.ms_entries;
}

/* A copy of the value stored under id (malloc'd), or NULL if absent. */
static uint8_t *stored(artifs_store *s, MDB_dbi dbi, const artifs_oid *id, size_t *len)
{
	MDB_txn *txn = NULL;
	MDB_val v;
	uint8_t *p = NULL;
	int rc;

	assert_ok(artifs_rtxn_begin(s, &txn));
	rc = artifs_store_get(txn, dbi, id, &v);
	if (rc == 0) {
		p = malloc(v.mv_size + 1);
		assert_non_null(p);
		memcpy(p, v.mv_data, v.mv_size);
		*len = v.mv_size;
	} else {
		assert_int_equal(rc, ARTIFS_ENOTFOUND);
	}
	mdb_txn_abort(txn);
	return p;
}

static void assert_stored(artifs_store *s, MDB_dbi dbi, const artifs_oid *id,
	const void *data, size_t len)
{
	size_t n = 0;
	uint8_t *p = stored(s, dbi, id, &n);

	assert_non_null(p);
	assert_int_equal(n, len);
	assert_memory_equal(p, data, len);
	free(p);
}

/* Write raw bytes under id, bypassing every check (on-disk damage). */
static void raw_put(artifs_store *s, MDB_dbi dbi, const artifs_oid *id, const void *data, size_t len)
{
	MDB_txn *txn = NULL;
	MDB_val k = { ARTIFS_OID_RAWSZ, (void *)id->id }, v = { len, (void *)data };

	assert_ok(artifs_wtxn_begin(s, len + MiB, &txn));
	assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	assert_ok(artifs_txn_commit(txn));
}

static void raw_del(artifs_store *s, MDB_dbi dbi, const artifs_oid *id)
{
	MDB_txn *txn = NULL;
	MDB_val k = { ARTIFS_OID_RAWSZ, (void *)id->id };

	assert_ok(artifs_wtxn_begin(s, MiB, &txn));
	assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
	assert_ok(artifs_txn_commit(txn));
}

static void check_read(artifs_store *s, const artifs_oid *root, const char *path,
	const void *data, size_t len)
{
	uint8_t *got = NULL;
	size_t n = 0;

	assert_ok(test_read_path(&got, &n, s, root, path));
	assert_int_equal(n, len);
	assert_memory_equal(got, data, len);
	free(got);
}

/*
 * Put or get a value straight in a store directory with LMDB alone (the
 * artifs handle on it must be closed: one process, one env per file).
 * data NULL deletes the key.
 */
static void raw_meta_put(const char *dir, const char *db, const char *key, const void *data, size_t len)
{
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	MDB_dbi dbi;
	MDB_val k = { strlen(key), (void *)key }, v = { len, (void *)data };

	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
	assert_int_equal(mdb_env_open(env, dir, 0, 0644), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, db, MDB_CREATE, &dbi), 0);
	if (data)
		assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
	else
		assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

/* 1 MiB values that differ in their first 8 bytes: value i of a series. */
static void series_value(uint8_t *buf, const uint8_t *base, uint64_t i, artifs_oid *id)
{
	memcpy(buf, base, MiB);
	put_le64(buf, i);
	artifs_oid_hash(id, buf, MiB);
}

/* ---- insertion by id ---- */

static void test_put_collision_and_repair(void **state)
{
	test_env *env = *state;
	artifs_store *s = env->s;
	static const char a[] = "bytes A: the real content", b[] = "bytes B: something else";
	const size_t la = strlen(a), lb = strlen(b);
	const MDB_dbi dbis[] = { s->chunks, s->blobs, s->trees, s->commits };
	uint8_t damaged[sizeof(a)];
	artifs_oid x, y;
	MDB_txn *txn = NULL;

	artifs_oid_hash(&x, a, la);
	artifs_oid_hash(&y, b, lb);
	for (size_t t = 0; t < sizeof(dbis) / sizeof(dbis[0]); t++) {
		MDB_dbi dbi = dbis[t];
		MDB_val v;

		assert_ok(artifs_wtxn_begin(s, MiB, &txn));
		assert_int_equal(artifs_store_put(txn, dbi, &x, a, la), 0);
		/* the same bytes again: a dedupe hit */
		assert_int_equal(artifs_store_put(txn, dbi, &x, a, la), 1);
		/* other bytes under an id the stored ones hash to: a collision */
		assert_rc(ARTIFS_ECOLLISION, artifs_store_put(txn, dbi, &x, b, lb));
		assert_non_null(strstr(artifs_error_last(), "collision"));
		/* a prefix of the stored bytes is no dedupe either */
		assert_rc(ARTIFS_ECOLLISION, artifs_store_put(txn, dbi, &x, a, la - 1));
		assert_ok(artifs_store_get(txn, dbi, &x, &v));
		assert_int_equal(v.mv_size, la);
		assert_memory_equal(v.mv_data, a, la);
		/* the refused put leaves the transaction usable */
		assert_int_equal(artifs_store_put(txn, dbi, &y, b, lb), 0);
		assert_ok(artifs_txn_commit(txn));
		assert_stored(s, dbi, &x, a, la);
		assert_stored(s, dbi, &y, b, lb);

		/* across transactions too */
		assert_ok(artifs_wtxn_begin(s, MiB, &txn));
		assert_rc(ARTIFS_ECOLLISION, artifs_store_put(txn, dbi, &x, b, lb));
		mdb_txn_abort(txn);
		assert_stored(s, dbi, &x, a, la);

		/* damage: one bit flipped on disk, so the bytes no longer hash to x */
		memcpy(damaged, a, la);
		damaged[la / 2] ^= 0x10;
		raw_put(s, dbi, &x, damaged, la);
		assert_stored(s, dbi, &x, damaged, la);
		assert_ok(artifs_wtxn_begin(s, MiB, &txn));
		assert_int_equal(artifs_store_put(txn, dbi, &x, a, la), 2);
		assert_ok(artifs_txn_commit(txn));
		assert_stored(s, dbi, &x, a, la);

		/* damage that changed the length is repaired as well */
		raw_put(s, dbi, &x, a, la - 3);
		assert_ok(artifs_wtxn_begin(s, MiB, &txn));
		assert_int_equal(artifs_store_put(txn, dbi, &x, a, la), 2);
		/* and once repaired, it is a plain dedupe hit */
		assert_int_equal(artifs_store_put(txn, dbi, &x, a, la), 1);
		assert_ok(artifs_txn_commit(txn));
		assert_stored(s, dbi, &x, a, la);
	}
	assert_int_equal(table_entries(s, s->chunks), 2);
}

/* ---- verified reads ---- */

static void test_chunk_verification(void **state)
{
	test_env *env = *state;
	artifs_store *s = env->s;
	artifs_snapshot_opts o = ARTIFS_SNAPSHOT_OPTS_INIT;
	artifs_snapshot_stats st;
	const size_t len = 3 * MiB + 777;
	uint8_t *big = test_random_bytes(TEST_SEED + 11, len), *copy = NULL, *got = NULL;
	artifs_oid head, root, c0, c1, small_chunk;
	artifs_tree_entry e;
	artifs_blob_view b;
	MDB_txn *txn = NULL;
	const uint8_t *p;
	size_t n = 0, clen;

	test_write_file(env->src, "big.bin", big, len, 0644);
	test_write_file(env->src, "small.txt", "small", 5, 0644);
	assert_ok(artifs_repo_create(s, REPO));
	o.no_cache = 1;
	assert_ok(artifs_snapshot_dir(&head, s, REPO, "main", env->src, &o, &st));
	test_commit_tree(&root, s, &head);
	check_read(s, &root, "big.bin", big, len);

	assert_ok(test_resolve(&e, s, &root, "big.bin"));
	assert_ok(artifs_rtxn_begin(s, &txn));
	assert_ok(artifs_blob_load(&b, s, txn, &e.id));
	assert_true(b.nchunks >= 2);
	artifs_blob_chunk_id(&b, 0, &c0);
	artifs_blob_chunk_id(&b, 1, &c1);
	mdb_txn_abort(txn);
	assert_ok(test_resolve(&e, s, &root, "small.txt"));
	assert_ok(artifs_rtxn_begin(s, &txn));
	assert_ok(artifs_blob_load(&b, s, txn, &e.id));
	assert_int_equal(b.nchunks, 1);
	artifs_blob_chunk_id(&b, 0, &small_chunk);
	mdb_txn_abort(txn);

	/* flip one byte of chunk 1 in place (same length) */
	copy = stored(s, s->chunks, &c1, &clen);
	assert_non_null(copy);
	copy[clen / 2] ^= 0x01;
	raw_put(s, s->chunks, &c1, copy, clen);
	assert_rc(ARTIFS_ECORRUPT, test_read_path(&got, &n, s, &root, "big.bin"));
	assert_null(got);
	assert_int_equal(n, 0);
	assert_non_null(strstr(artifs_error_last(), "corrupt"));
	/* the chunk read itself refuses, and the healthy chunk next to it still reads */
	assert_ok(test_resolve(&e, s, &root, "big.bin"));
	assert_ok(artifs_rtxn_begin(s, &txn));
	assert_ok(artifs_blob_load(&b, s, txn, &e.id));
	assert_rc(ARTIFS_ECORRUPT, artifs_blob_chunk(&p, &n, s, txn, &b, 1, 1));
	assert_ok(artifs_blob_chunk(&p, &n, s, txn, &b, 0, 1));
	assert_int_equal(n, artifs_blob_chunk_len(&b, 0));
	assert_memory_equal(p, big, n);
	mdb_txn_abort(txn);
	free(copy);

	/* a chunk of the wrong length is refused even without hashing */
	copy = stored(s, s->chunks, &c0, &clen);
	assert_non_null(copy);
	raw_put(s, s->chunks, &c0, copy, clen - 1);
	assert_ok(artifs_rtxn_begin(s, &txn));
	assert_ok(artifs_blob_load(&b, s, txn, &e.id));
	assert_rc(ARTIFS_ECORRUPT, artifs_blob_chunk(&p, &n, s, txn, &b, 0, 0));
	mdb_txn_abort(txn);
	free(copy);

	/* a missing chunk is corruption too, not "not found" */
	raw_del(s, s->chunks, &small_chunk);
	assert_rc(ARTIFS_ECORRUPT, test_read_path(&got, &n, s, &root, "small.txt"));
	assert_null(got);

	/* committing the good bytes again repairs all three; the tree is unchanged */
	assert_ok(artifs_snapshot_dir(&head, s, REPO, "main", env->src, &o, &st));
	assert_int_equal(st.created, 0);
	assert_int_equal(st.chunks_new, 3);
	check_read(s, &root, "big.bin", big, len);
	check_read(s, &root, "small.txt", "small", 5);
	free(big);
}

/* ---- map growth ---- */

#define GROW_FILES 33
#define GROW_FILE_SIZE (2 * MiB)

static int small_env_setup(void **state)
{
	artifs_store_opts so = ARTIFS_STORE_OPTS_INIT;

	so.initial_mapsize = 2 * MiB;
	*state = test_env_new(&so);
	return 0;
}

/* A store opened with a 2 MiB map takes 66 MiB through the writer. */
static void test_map_growth(void **state)
{
	test_env *env = *state;
	artifs_snapshot_opts o = ARTIFS_SNAPSHOT_OPTS_INIT;
	artifs_snapshot_stats st;
	artifs_oid head, root;
	size_t map0, map1, used1;
	char name[32];

	test_mkdir(env->src, "d0");
	test_mkdir(env->src, "d1");
	for (int i = 0; i < GROW_FILES; i++) {
		uint8_t *r = test_random_bytes(TEST_SEED + 1000 + (uint64_t)i, GROW_FILE_SIZE);
		sprintf(name, "d%d/f%02d.bin", i % 2, i);
		test_write_file(env->src, name, r, GROW_FILE_SIZE, 0644);
		free(r);
	}
	artifs_store_usage(env->s, &map0, NULL);
	assert_ok(artifs_repo_create(env->s, REPO));
	o.no_cache = 1;
	assert_ok(artifs_snapshot_dir(&head, env->s, REPO, "main", env->src, &o, &st));
	assert_int_equal(st.created, 1);
	assert_int_equal(st.bytes, (uint64_t)GROW_FILES * GROW_FILE_SIZE);
	/* random data: every byte is a new chunk byte */
	assert_int_equal(st.chunk_bytes_new, (uint64_t)GROW_FILES * GROW_FILE_SIZE);
	artifs_store_usage(env->s, &map1, &used1);
	assert_true(used1 >= GROW_FILES * GROW_FILE_SIZE);
	assert_true(map1 >= used1);
	assert_true(map1 > map0);

	test_commit_tree(&root, env->s, &head);
	for (int i = 0; i < GROW_FILES; i++) {
		uint8_t *r = test_random_bytes(TEST_SEED + 1000 + (uint64_t)i, GROW_FILE_SIZE);
		sprintf(name, "d%d/f%02d.bin", i % 2, i);
		check_read(env->s, &root, name, r, GROW_FILE_SIZE);
		free(r);
	}
}

/*
 * Write values 0..*n-1 of a series in one transaction started with `need`.
 * *n == 0: as many as overflow the map the transaction started with by
 * 16 MiB; *n gets that count.
 */
static int write_series(artifs_store *s, size_t need, const uint8_t *base, size_t *n)
{
	uint8_t *buf = malloc(MiB);
	MDB_txn *txn = NULL;
	artifs_oid id;
	int rc;

	assert_non_null(buf);
	if ((rc = artifs_wtxn_begin(s, need, &txn)))
		goto done;
	if (!*n) {
		size_t map, used;
		artifs_store_usage(s, &map, &used);
		*n = (map - used) / MiB + 16;
	}
	for (size_t i = 0; i < *n; i++) {
		series_value(buf, base, i, &id);
		rc = artifs_store_put(txn, s->chunks, &id, buf, MiB);
		if (rc == MDB_MAP_FULL) {
			mdb_txn_abort(txn);
			goto done;
		}
		assert_int_equal(rc, 0);
	}
	/* a failed commit frees the transaction */
	rc = artifs_txn_commit(txn);
done:
	free(buf);
	return rc;
}

static void check_series(artifs_store *s, const uint8_t *base, size_t n)
{
	uint8_t *buf = malloc(MiB);
	MDB_txn *txn = NULL;
	artifs_oid id;
	MDB_val v;

	assert_non_null(buf);
	assert_int_equal(table_entries(s, s->chunks), n);
	assert_ok(artifs_rtxn_begin(s, &txn));
	for (size_t i = 0; i < n; i++) {
		series_value(buf, base, i, &id);
		assert_ok(artifs_store_get(txn, s->chunks, &id, &v));
		assert_int_equal(v.mv_size, MiB);
		assert_memory_equal(v.mv_data, buf, MiB);
	}
	mdb_txn_abort(txn);
	free(buf);
}

/*
 * store.h's contract for a transaction whose estimate was short: it fails
 * with MDB_MAP_FULL; abort, artifs_store_grow() and redo, and it fits.
 */
static void test_map_full_redo(void **state)
{
	test_env *env = *state;
	uint8_t *base = test_random_bytes(TEST_SEED + 21, MiB);
	size_t map0, map1, n = 0, m;

	/* no estimate, and 16 MiB more than the map holds */
	assert_int_equal(write_series(env->s, 0, base, &n), MDB_MAP_FULL);
	assert_int_equal(table_entries(env->s, env->s->chunks), 0);

	artifs_store_usage(env->s, &map0, NULL);
	assert_ok(artifs_store_grow(env->s, n * MiB));
	artifs_store_usage(env->s, &map1, NULL);
	assert_true(map1 >= map0 + n * MiB);
	/* the redo, with the same (short) estimate, fits */
	m = n;
	assert_ok(write_series(env->s, 0, base, &m));
	assert_int_equal(m, n);
	check_series(env->s, base, n);
	free(base);
}

/* Another process grows the map past ours: our next transactions adopt it. */
static void test_map_grown_by_other_process(void **state)
{
	test_env *env = *state;
	uint8_t *base = test_random_bytes(TEST_SEED + 22, MiB);
	size_t map0, used0, map1, used1, n;
	MDB_txn *txn = NULL;
	pid_t pid;
	int status = 0;

	artifs_store_usage(env->s, &map0, &used0);
	n = (map0 - used0) / MiB + 16;
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* the child: its own handle, an accurate estimate, and exit */
		artifs_store *s = NULL;
		if (artifs_store_open(&s, env->store_dir, NULL))
			_exit(2);
		_exit(write_series(s, n * MiB, base, &n) ? 3 : 0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("the writer process failed (status %#x)", status);

	/* the data file is now larger than our map: reads must still see everything */
	check_series(env->s, base, n);
	artifs_store_usage(env->s, &map1, &used1);
	assert_true(used1 > map0);
	assert_true(map1 >= used1);
	/* and so must writes */
	assert_ok(artifs_wtxn_begin(env->s, MiB, &txn));
	assert_int_equal(artifs_store_put(txn, env->s->chunks, &(artifs_oid){ { 1 } }, "x", 1), 0);
	assert_ok(artifs_txn_commit(txn));
	assert_int_equal(table_entries(env->s, env->s->chunks), n + 1);
	free(base);
}

/* ---- opening ---- */

static void test_format_version(void **state)
{
	test_env *env = *state;
	artifs_store_opts ro = ARTIFS_STORE_OPTS_INIT;
	artifs_store *s = NULL;
	uint8_t ver[8];
	const char *msg;

	assert_ok(artifs_repo_create(env->s, REPO));
	artifs_store_free(env->s);
	env->s = NULL;

	put_le32(ver, 999);
	raw_meta_put(env->store_dir, "meta", "format", ver, 4);
	assert_rc(ARTIFS_EVERSION, artifs_store_open(&s, env->store_dir, NULL));
	assert_null(s);
	msg = artifs_error_last();
	assert_non_null(strstr(msg, "format version 999"));
	assert_non_null(strstr(msg, "reads version 1"));
	assert_non_null(strstr(msg, env->store_dir));
	/* read-only is refused the same way, and init does not overwrite it */
	ro.readonly = 1;
	assert_rc(ARTIFS_EVERSION, artifs_store_open(&s, env->store_dir, &ro));
	assert_null(s);
	assert_rc(ARTIFS_EEXISTS, artifs_store_init(env->store_dir, NULL));
	assert_rc(ARTIFS_EVERSION, artifs_store_open(&s, env->store_dir, NULL));

	/* version 0 is unknown too */
	put_le32(ver, 0);
	raw_meta_put(env->store_dir, "meta", "format", ver, 4);
	assert_rc(ARTIFS_EVERSION, artifs_store_open(&s, env->store_dir, NULL));

	/* a format value of the wrong width, or none, is not a store */
	put_le64(ver, 1);
	raw_meta_put(env->store_dir, "meta", "format", ver, 8);
	assert_rc(ARTIFS_ENOSTORE, artifs_store_open(&s, env->store_dir, NULL));
	raw_meta_put(env->store_dir, "meta", "format", NULL, 0);
	assert_rc(ARTIFS_ENOSTORE, artifs_store_open(&s, env->store_dir, NULL));
	assert_null(s);

	/* version 1 again: it opens, with its data */
	put_le32(ver, 1);
	raw_meta_put(env->store_dir, "meta", "format", ver, 4);
	assert_ok(artifs_store_open(&s, env->store_dir, NULL));
	{
		MDB_txn *txn = NULL;
		assert_ok(artifs_rtxn_begin(s, &txn));
		assert_ok(artifs_repo_check(s, txn, REPO));
		mdb_txn_abort(txn);
	}
	env->s = s;
}

static void test_open_missing(void **state)
{
	test_env *env = *state;
	artifs_store *s = NULL;
	char *missing = test_path(env->tmp, "nope/deeper");
	char *empty = test_path(env->tmp, "empty");
	char *file = test_path(env->tmp, "file");
	char *data = test_path(empty, "data.mdb");
	struct stat st;

	assert_rc(ARTIFS_ENOSTORE, artifs_store_open(&s, missing, NULL));
	assert_null(s);
	assert_non_null(strstr(artifs_error_last(), missing));
	assert_int_equal(stat(missing, &st), -1);

	/* an empty directory is no store, and opening does not make it one */
	test_mkdir(env->tmp, "empty");
	assert_rc(ARTIFS_ENOSTORE, artifs_store_open(&s, empty, NULL));
	assert_null(s);
	assert_non_null(strstr(artifs_error_last(), empty));
	assert_int_equal(stat(data, &st), -1);

	/* a path through a regular file */
	test_write_file(env->tmp, "file", "x", 1, 0644);
	assert_rc(-ENOTDIR, artifs_store_open(&s, file, NULL));
	assert_null(s);

	/* init of an existing store leaves it alone */
	assert_ok(artifs_repo_create(env->s, REPO));
	assert_rc(ARTIFS_EEXISTS, artifs_store_init(env->store_dir, NULL));
	{
		MDB_txn *txn = NULL;
		assert_ok(artifs_rtxn_begin(env->s, &txn));
		assert_ok(artifs_repo_check(env->s, txn, REPO));
		mdb_txn_abort(txn);
	}
	free(missing);
	free(empty);
	free(file);
	free(data);
}

static void test_open_foreign(void **state)
{
	test_env *env = *state;
	artifs_store *s = NULL;
	char *foreign = test_path(env->tmp, "foreign");

	/* an LMDB environment that is not ours: no meta table at all */
	test_mkdir(env->tmp, "foreign");
	raw_meta_put(foreign, "other", "key", "value", 5);
	assert_rc(ARTIFS_ENOSTORE, artifs_store_open(&s, foreign, NULL));
	assert_null(s);
	assert_non_null(strstr(artifs_error_last(), "not an artifs store"));
	free(foreign);
}

static void test_open_readonly(void **state)
{
	test_env *env = *state;
	artifs_store_opts ro = ARTIFS_STORE_OPTS_INIT;
	artifs_store *s = NULL;
	MDB_txn *txn = NULL;

	assert_ok(artifs_repo_create(env->s, REPO));
	artifs_store_free(env->s);
	env->s = NULL;
	ro.readonly = 1;
	assert_ok(artifs_store_open(&s, env->store_dir, &ro));
	env->s = s;
	assert_ok(artifs_rtxn_begin(s, &txn));
	assert_ok(artifs_repo_check(s, txn, REPO));
	mdb_txn_abort(txn);
	assert_rc(-EROFS, artifs_wtxn_begin(s, MiB, &txn));
	assert_rc(-EROFS, artifs_repo_create(s, "datasets/other"));
}

/* An error message made from the last one keeps it (it used to be formatted over itself). */
static void test_error_wraps_last(void **state)
{
	(void)state;
	artifs_error(ARTIFS_ECORRUPT, "inner %d", 7);
	artifs_error(ARTIFS_ECORRUPT, "outer: %s", artifs_error_last());
	assert_string_equal(artifs_error_last(), "outer: inner 7");
}

/* Drop data.mdb from the page cache. */
static void evict(test_env *env)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/data.mdb", env->store_dir);
	sync();
	assert_true((fd = open(path, O_RDONLY)) >= 0);
	assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	close(fd);
}

static long majflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return ru.ru_majflt;
}

/*
 * A value of a cold store compared (artifs_store_same) or fetched
 * (artifs_store_fetch) comes in a few large reads, not a fault a page, and
 * still after the map was mapped again, maybe elsewhere: the cached
 * address of the map must follow it, or the reads land at the wrong file
 * offsets and every page is faulted in after all.
 */
static void test_cold_values_read_whole(void **state)
{
	test_env *env = *state;
	const size_t len = 2 * MiB;
	uint8_t *data = malloc(len), *other = malloc(len);
	artifs_oid id;
	MDB_txn *txn = NULL;
	MDB_val v;
	long f0;

	assert_non_null(data);
	assert_non_null(other);
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(i * 2654435761u >> 13);
	memcpy(other, data, len);
	other[len / 2] ^= 1;
	artifs_oid_hash(&id, data, len);
	assert_ok(artifs_wtxn_begin(env->s, 4 * MiB, &txn));
	assert_int_equal(artifs_chunk_put(env->s, txn, &id, data, len), 0);
	assert_ok(artifs_txn_commit(txn));

	for (int round = 0; round < 3; round++) {
		if (round == 1)
			assert_ok(artifs_store_remap(env->s));
		if (round == 2)
			assert_ok(artifs_store_grow(env->s, 256 * MiB));
		assert_ok(artifs_rtxn_begin(env->s, &txn));
		assert_ok(artifs_store_get(txn, env->s->chunks, &id, &v));
		assert_int_equal(v.mv_size, len);

		evict(env);
		f0 = majflt();
		assert_true(artifs_store_same(env->s, v.mv_data, data, len));
		assert_true(majflt() - f0 < 16);
		evict(env);
		assert_false(artifs_store_same(env->s, v.mv_data, other, len));

		evict(env);
		artifs_store_fetch(env->s, v.mv_data, len);
		f0 = majflt();
		assert_memory_equal(v.mv_data, data, len);
		assert_true(majflt() - f0 < 16);
		mdb_txn_abort(txn);
	}
	free(data);
	free(other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		ENV_TEST(test_put_collision_and_repair),
		ENV_TEST(test_chunk_verification),
		cmocka_unit_test_setup_teardown(test_map_growth, small_env_setup, test_env_teardown),
		cmocka_unit_test_setup_teardown(test_map_full_redo, small_env_setup, test_env_teardown),
		cmocka_unit_test_setup_teardown(test_map_grown_by_other_process, small_env_setup, test_env_teardown),
		ENV_TEST(test_format_version),
		ENV_TEST(test_open_missing),
		ENV_TEST(test_open_foreign),
		ENV_TEST(test_open_readonly),
		cmocka_unit_test(test_error_wraps_last),
		ENV_TEST(test_cold_values_read_whole),
	};

	setenv("ARTIFS_AUTHOR", "unit-test", 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
