/*
 * helpers.h - fixtures shared by the unit tests: a fresh store in a
 * temporary directory per test, seeded pseudo-random data, small file
 * system helpers, and reading a stored file back with every chunk verified.
 *
 * Include after <cmocka.h>'s prerequisites; this header includes them.
 */
#ifndef ARTIFS_TEST_HELPERS_H
#define ARTIFS_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <cmocka.h>

#include "error.h"
#include "oid.h"
#include "store.h"
#include "ref.h"
#include "tree.h"

/*
 * Assert that expr returns `expect` (an int code); on a mismatch the
 * failure shows both codes and the library's detail message.
 */
#define assert_rc(expect, expr) do { \
	int rc_ = (expr), want_ = (expect); \
	if (rc_ != want_) \
		fail_msg("%s: got %d (%s), want %d (%s)", #expr, rc_, \
			rc_ ? artifs_error_last() : "success", want_, artifs_strerror(want_)); \
} while (0)
#define assert_ok(expr) assert_rc(0, expr)

#define assert_oid_equal(a, b) assert_memory_equal((a)->id, (b)->id, ARTIFS_OID_RAWSZ)
#define assert_oid_not_equal(a, b) assert_memory_not_equal((a)->id, (b)->id, ARTIFS_OID_RAWSZ)

/* A fresh directory under $TMPDIR (or /tmp); malloc'd path. */
char *test_mkdtemp(void);

/* Remove a directory tree (depth first, symlinks not followed). */
void test_rmtree(const char *path);

/* dir + "/" + rel, malloc'd. */
char *test_path(const char *dir, const char *rel);

/* Per-test environment: tmp/store holds an open store, tmp/src is empty. */
typedef struct test_env {
	char *tmp;
	char *store_dir;
	char *src;
	artifs_store *s;
} test_env;

/* Create tmp dir, init and open a store (opts may be NULL), create src. */
test_env *test_env_new(const artifs_store_opts *opts);
/* Close the store and remove everything; NULL is a no-op. */
void test_env_free(test_env *e);

/* cmocka setup/teardown wrappers around test_env_new/free. */
int test_env_setup(void **state);
int test_env_teardown(void **state);
/* A test that gets a fresh test_env in *state. */
#define ENV_TEST(f) cmocka_unit_test_setup_teardown(f, test_env_setup, test_env_teardown)

/* Deterministic pseudo-random bytes (splitmix64), for reproducible tests. */
#define TEST_SEED 0x61727469667354ULL
typedef struct test_rng {
	uint64_t s;
} test_rng;
void test_rng_init(test_rng *r, uint64_t seed);
uint64_t test_rng_next(test_rng *r);
void test_rng_fill(test_rng *r, void *buf, size_t len);
/* len bytes from a generator seeded with seed; malloc'd. */
uint8_t *test_random_bytes(uint64_t seed, size_t len);

/* Create file dir/rel with the given content and mode (fails the test on error). */
void test_write_file(const char *dir, const char *rel, const void *data, size_t len, mode_t mode);
void test_mkdir(const char *dir, const char *rel);
void test_symlink(const char *dir, const char *rel, const char *target);
/* Set atime and mtime of dir/rel to `secs` seconds ago (links not followed). */
void test_age(const char *dir, const char *rel, long secs);

/*
 * Read the file or link at `path` of tree `root` back from the store:
 * every chunk is fetched with verification and the whole-file digest is
 * checked.  *data is malloc'd (NULL for an empty file), *len its length.
 * Returns the first error of the library (e.g. ARTIFS_ECORRUPT).
 */
int test_read_path(uint8_t **data, size_t *len, artifs_store *s, const artifs_oid *root,
	const char *path);

/* Resolve `path` of `root`; e->name is not valid after the call. */
int test_resolve(artifs_tree_entry *e, artifs_store *s, const artifs_oid *root, const char *path);

/* Ref repo@name (it must exist), and just its target (zero: an unborn branch). */
artifs_ref test_ref_get(artifs_store *s, const char *repo, const char *name);
void test_ref_target(artifs_oid *out, artifs_store *s, const char *repo, const char *name);
/* The root tree of commit `commit`. */
void test_commit_tree(artifs_oid *tree, artifs_store *s, const artifs_oid *commit);

#endif
