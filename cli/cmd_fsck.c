#include "cli.h"
#include "ref.h"
#include "error.h"
#include "maint.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct fctx {
	cli_progress prog;	/* first: the progress callback gets the same ctx */
	json_t *arr;
};

static void on_fault(const char *kind, const artifs_oid *id, const char *where, const char *msg, void *ctx)
{
	struct fctx *f = ctx;
	char hex[ARTIFS_OID_HEXSZ + 1];

	if (f->arr) {
		json_t *o = json_object(), *w = cli_json_str(where);
		json_object_set_new(o, "kind", json_string(kind));
		json_object_set_new(o, "id", artifs_oid_is_zero(id) ? json_null() : cli_json_oid(id));
		json_object_set_new(o, "where", w ? w : json_string("(unprintable path)"));
		json_object_set_new(o, "message", json_string(msg));
		json_array_append_new(f->arr, o);
		return;
	}
	if (f->prog.active)
		fputs("\r\033[K", stderr);
	if (artifs_oid_is_zero(id))	/* a ref: no object to name */
		printf("%s %s: %s\n", kind, where, msg);
	else
		printf("%s %s: %s (in %s)\n", kind, artifs_oid_fmt(hex, id), msg, where);
}

#define CRASH_STATUS 100	/* the child exits 100 + signal when it crashed */

/* A fault about the store itself (no object to name). */
static json_t *store_fault(const char *msg)
{
	json_t *o = json_object();

	json_object_set_new(o, "kind", json_string("store"));
	json_object_set_new(o, "id", json_null());
	json_object_set_new(o, "where", json_string("(LMDB index)"));
	json_object_set_new(o, "message", json_string(msg));
	return o;
}

/* The whole report when the check could not run to its end. */
static void fatal_json(const char *msg)
{
	json_t *root = json_object(), *faults = json_array();

	json_array_append_new(faults, store_fault(msg));
	json_object_set_new(root, "ok", json_false());
	json_object_set_new(root, "fatal", json_string(msg));
	json_object_set_new(root, "faults", faults);
	cli_json_print(root);
}

/* The check itself; its exit status. */
static int fsck_run(int json)
{
	struct fctx f = { 0 };
	artifs_store *s = NULL;
	artifs_fsck_stats st = { 0 };
	char fatal[1024] = "";
	int rc;
	double t0;

	if ((rc = cli_open_store(&s, 1))) {
		/* a store that is there but does not open is damage, not a usage slip */
		char *p = NULL, data[4096];
		if (artifs_store_default_path(&p, cli_store_flag) == 0) {
			snprintf(data, sizeof(data), "%s/data.mdb", p);
			if (access(data, F_OK) == 0) {
				rc = EXIT_FAULTS;
				if (json) {
					char msg[600];
					snprintf(msg, sizeof(msg), "the store cannot be opened: %s",
						artifs_error_last());
					fatal_json(msg);
				}
			}
		}
		free(p);
		return rc;
	}
	if (json)
		f.arr = json_array();
	cli_progress_init(&f.prog, "fsck");
	t0 = cli_now();
	rc = artifs_fsck(s, on_fault, cli_progress_cb, &f, &st);
	cli_progress_done(&f.prog);
	if (rc == ARTIFS_ECORRUPT) {
		/* LMDB's pages are damaged: report what was found, then that */
		snprintf(fatal, sizeof(fatal), "%s", artifs_error_last());
		st.faults++;
		if (f.arr)
			json_array_append_new(f.arr, store_fault(fatal));
	} else if (rc) {
		json_decref(f.arr);
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (json) {
		json_t *root = json_object(), *chk = json_object();
		json_object_set_new(root, "ok", json_boolean(st.faults == 0));
		json_object_set_new(chk, "refs", json_integer((json_int_t)st.refs));
		json_object_set_new(chk, "commits", json_integer((json_int_t)st.commits));
		json_object_set_new(chk, "trees", json_integer((json_int_t)st.trees));
		json_object_set_new(chk, "blobs", json_integer((json_int_t)st.blobs));
		json_object_set_new(chk, "chunks", json_integer((json_int_t)st.chunks));
		json_object_set_new(chk, "labelsets", json_integer((json_int_t)st.labelsets));
		json_object_set_new(chk, "bytes", json_integer((json_int_t)st.bytes_verified));
		json_object_set_new(root, "checked", chk);
		json_object_set_new(root, "faults", f.arr);
		if (*fatal)
			json_object_set_new(root, "fatal", json_string(fatal));
		cli_json_print(root);
	} else {
		char b[32];
		if (*fatal)
			fprintf(stderr, "artifs: error: %s\n", fatal);
		fprintf(st.faults ? stdout : stderr,
			"%s: %llu refs, %llu commits, %llu trees, %llu files, %llu chunks (%s) checked in %.2fs; %llu faults\n",
			st.faults ? "fsck found damage" : "fsck ok",
			(unsigned long long)st.refs, (unsigned long long)st.commits,
			(unsigned long long)st.trees, (unsigned long long)st.blobs,
			(unsigned long long)st.chunks, cli_bytes(b, sizeof(b), (double)st.bytes_verified),
			cli_now() - t0, (unsigned long long)st.faults);
	}
	rc = st.faults ? EXIT_FAULTS : EXIT_OK;
out:
	artifs_store_free(s);
	return rc;
}

static void on_repair(const char *where, const char *what, void *ctx)
{
	(*(int *)ctx)++;
	fprintf(stderr, "repaired ref %s: %s\n", where, what);
}

/* --repair-refs: rebuild damaged ref records from the ref log, then check. */
static int repair_refs(void)
{
	artifs_store *s = NULL;
	MDB_txn *txn = NULL;
	int rc, n = 0;

	if ((rc = cli_open_store(&s, 0)))
		return rc;
	for (int tries = 0;; tries++) {
		if ((rc = artifs_wtxn_begin(s, (size_t)16 << 20, &txn)))
			break;
		n = 0;
		if ((rc = artifs_refs_repair(s, txn, on_repair, &n)) || !n)
			mdb_txn_abort(txn);
		else
			rc = artifs_txn_commit(txn);
		if (rc == MDB_MAP_FULL && tries < 3 && !artifs_store_grow(s, 64 << 20))
			continue;
		break;
	}
	artifs_store_free(s);
	if (rc)
		return cli_fail_rc(rc);
	if (!n)
		fprintf(stderr, "no damaged refs to repair\n");
	return 0;
}

/* The child's end when LMDB reads outside the map: tell the parent which signal. */
static void child_crash(int sig)
{
	_exit(CRASH_STATUS + sig);
}

int cmd_fsck(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "repair-refs", no_argument, NULL, 'r' },
		{ 0 },
	};
	int json = 0, repair = 0, o, status;
	pid_t pid;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'j')
			json = 1;
		else if (o == 'r')
			repair = 1;
		else
			return cli_usage("fsck", "unknown option");
	}
	if (argc != optind)
		return cli_usage("fsck", "'fsck' takes no arguments");
	if (repair && (o = repair_refs()))
		return o;
	/*
	 * LMDB has no page checksums: damage in its B-tree pages can make it
	 * read out of bounds.  The check runs in a child, so that even then
	 * fsck reports the damage instead of dying with it.
	 */
	fflush(NULL);
	if ((pid = fork()) < 0)
		return fsck_run(json);
	if (pid == 0) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = child_crash;
		sigaction(SIGSEGV, &sa, NULL);
		sigaction(SIGBUS, &sa, NULL);
		if (!json)
			setvbuf(stdout, NULL, _IOLBF, 0);	/* faults found before a crash still show */
		int rc = fsck_run(json);
		fflush(NULL);
		_exit(rc);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return cli_fail(NULL, "cannot wait for the check: %s", strerror(errno));
	if (WIFEXITED(status) && WEXITSTATUS(status) <= CRASH_STATUS)
		return WEXITSTATUS(status);
	{
		int sig = WIFEXITED(status) ? WEXITSTATUS(status) - CRASH_STATUS : WTERMSIG(status);
		char msg[256];
		snprintf(msg, sizeof(msg), "reading the store's LMDB index crashed (%s): its pages are "
			"damaged; restore the store from a copy", strsignal(sig));
		if (json)
			fatal_json(msg);
		fprintf(stderr, "artifs: error: %s\n", msg);
	}
	return EXIT_FAULTS;
}
