/*
 * test_pin.c - pin files keep a version a live reader serves safe from gc,
 * and a pin file whose holder died stops counting.
 */
#include "helpers.h"

#include "commit.h"
#include "maint.h"
#include "pin.h"
#include "ref.h"
#include "snapshot.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define REPO "datasets/pins"

/*
 * A commit no ref or ref log reaches: the head's tree under a new message.
 * gc deletes exactly this commit record unless something pins it.
 */
static void orphan_commit(artifs_oid *out, test_env *e)
{
	artifs_snapshot_opts so = ARTIFS_SNAPSHOT_OPTS_INIT;
	artifs_snapshot_stats st;
	artifs_commit *c = NULL, o;
	artifs_oid head;
	MDB_txn *txn = NULL;

	test_write_file(e->src, "a.txt", "pinned bytes\n", 13, 0644);
	assert_ok(artifs_repo_create(e->s, REPO));
	assert_ok(artifs_snapshot_dir(&head, e->s, REPO, "main", e->src, &so, &st));
	assert_ok(artifs_rtxn_begin(e->s, &txn));
	assert_ok(artifs_commit_load(&c, e->s, txn, &head));
	mdb_txn_abort(txn);
	o = *c;
	o.message = (char *)"not on any ref";
	o.nparents = 0;
	assert_ok(artifs_wtxn_begin(e->s, 1 << 20, &txn));
	assert_ok(artifs_commit_write(out, e->s, txn, &o));
	assert_ok(artifs_txn_commit(txn));
	artifs_commit_free(c);
}

static int has_commit(artifs_store *s, const artifs_oid *id)
{
	artifs_commit *c = NULL;
	MDB_txn *txn = NULL;
	int rc;

	assert_ok(artifs_rtxn_begin(s, &txn));
	rc = artifs_commit_load(&c, s, txn, id);
	mdb_txn_abort(txn);
	artifs_commit_free(c);
	return rc == 0;
}

static size_t count_pin_files(test_env *e)
{
	char *dir = test_path(e->store_dir, "pins");
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;

	free(dir);
	if (!d)
		return 0;
	/* a holder's PID.lock and PID.pin; the shared gate file stays */
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && strcmp(de->d_name, "gate"))
			n++;
	closedir(d);
	return n;
}

static void test_unpinned_orphan_is_collected(void **state)
{
	test_env *e = *state;
	artifs_gc_stats st;
	artifs_oid orphan;

	orphan_commit(&orphan, e);
	assert_true(has_commit(e->s, &orphan));
	assert_ok(artifs_gc(e->s, 0, &st));
	assert_int_equal(st.commits, 1);
	assert_false(has_commit(e->s, &orphan));
}

static void test_pin_keeps_commit(void **state)
{
	test_env *e = *state;
	artifs_pins *p = NULL;
	artifs_gc_stats st;
	artifs_oid orphan;

	orphan_commit(&orphan, e);
	assert_ok(artifs_pins_open(&p, e->s));
	assert_ok(artifs_pins_write(p, &orphan, 1));
	assert_ok(artifs_gc(e->s, 0, &st));
	assert_int_equal(st.commits, 0);
	assert_true(has_commit(e->s, &orphan));

	/* unpinned (an empty list), the next gc takes it */
	assert_ok(artifs_pins_write(p, NULL, 0));
	assert_ok(artifs_gc(e->s, 0, &st));
	assert_int_equal(st.commits, 1);
	assert_false(has_commit(e->s, &orphan));

	/* released: the files go away */
	artifs_pins_free(p);
	assert_int_equal(count_pin_files(e), 0);
}

static void test_dead_holder_does_not_pin(void **state)
{
	test_env *e = *state;
	artifs_gc_stats st;
	artifs_oid orphan;
	pid_t pid;
	int status;

	orphan_commit(&orphan, e);
	/* a holder that dies without cleaning up (as after SIGKILL) */
	if ((pid = fork()) == 0) {
		artifs_pins *p = NULL;

		if (artifs_pins_open(&p, e->s) || artifs_pins_write(p, &orphan, 1))
			_exit(1);
		_exit(0);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(count_pin_files(e), 2);	/* PID.lock, PID.pin */

	assert_ok(artifs_gc(e->s, 0, &st));
	assert_int_equal(st.commits, 1);
	assert_false(has_commit(e->s, &orphan));
	assert_int_equal(count_pin_files(e), 0);
}

static void test_malformed_pin_file_fails_gc(void **state)
{
	test_env *e = *state;
	artifs_pins *p = NULL;
	artifs_gc_stats st;
	artifs_oid orphan;
	char *dir, name[64];

	orphan_commit(&orphan, e);
	assert_ok(artifs_pins_open(&p, e->s));
	/* a pin file gc cannot read must stop gc, not be taken as "no pins" */
	dir = test_path(e->store_dir, "pins");
	snprintf(name, sizeof(name), "%d.pin", (int)getpid());
	test_write_file(dir, name, "garbage\n", 8, 0644);
	assert_rc(ARTIFS_ECORRUPT, artifs_gc(e->s, 0, &st));
	assert_true(has_commit(e->s, &orphan));
	free(dir);
	artifs_pins_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		ENV_TEST(test_unpinned_orphan_is_collected),
		ENV_TEST(test_pin_keeps_commit),
		ENV_TEST(test_dead_holder_does_not_pin),
		ENV_TEST(test_malformed_pin_file_fails_gc),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
