/*
 * fuzz_archive.c - libFuzzer target for archive import (index/archio.c).
 *
 * Each input is an archive: it goes to a memfd and artifs_archive_commit
 * reads it through /proc/self/fd/N (a seekable file, so zip and 7z take
 * their central-directory paths) into a fresh repository of a throwaway
 * store.  Nothing may crash, leak or trip a sanitizer; a commit that
 * succeeds must pass artifs_fsck with no faults.
 *
 * ARTIFS_FUZZ_VERBOSE=1 prints each input's outcome (committed tree or
 * the refusal).  With ARTIFS_FUZZ_ROUNDTRIP=1 in the environment a successful import is
 * also exported as tar and imported again, and the two trees must be the
 * same (export -> import is the identity on a version's tree);
 * ARTIFS_FUZZ_ROUNDTRIP_IGNORE=TEXT skips export failures whose message
 * holds TEXT (a known bug, so the run can go on to find others).
 *
 * The store lives in a temporary directory created on the first input and
 * replaced every RESET_EVERY commits (fsck walks the whole store, so it
 * must stay small); it is removed at exit.
 */
#include "archio.h"
#include "commit.h"
#include "error.h"
#include "label.h"
#include "maint.h"
#include "ref.h"
#include "snapshot.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define RESET_EVERY 64

static char *tmpdir;		/* holds store/ */
static char store_dir[4096];
static artifs_store *store;
static unsigned long runs, repos;
static int roundtrip = -1, verbose;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void rmtree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "fuzz_archive: %s: %d (%s)\n", what, rc, rc ? artifs_error_last() : "");
	abort();
}

static void cleanup(void)
{
	artifs_store_free(store);
	store = NULL;
	if (tmpdir) {
		rmtree(tmpdir);
		free(tmpdir);
		tmpdir = NULL;
	}
}

static void open_store(void)
{
	artifs_store_opts so = ARTIFS_STORE_OPTS_INIT;
	int rc;

	if (!tmpdir) {
		const char *base = getenv("TMPDIR");
		char tmpl[4096];
		snprintf(tmpl, sizeof(tmpl), "%s/artifs-fuzz-XXXXXX", base && *base ? base : "/tmp");
		if (!mkdtemp(tmpl)) {
			perror("mkdtemp");
			abort();
		}
		tmpdir = strdup(tmpl);
		atexit(cleanup);
		roundtrip = getenv("ARTIFS_FUZZ_ROUNDTRIP") && !strcmp(getenv("ARTIFS_FUZZ_ROUNDTRIP"), "1");
		verbose = getenv("ARTIFS_FUZZ_VERBOSE") && !strcmp(getenv("ARTIFS_FUZZ_VERBOSE"), "1");
	}
	artifs_store_free(store);
	store = NULL;
	snprintf(store_dir, sizeof(store_dir), "%s/store", tmpdir);
	rmtree(store_dir);
	so.initial_mapsize = (size_t)256 << 20;
	if ((rc = artifs_store_init(store_dir, &so)))
		die("artifs_store_init", rc);
	if ((rc = artifs_store_open(&store, store_dir, &so)))
		die("artifs_store_open", rc);
	runs = 0;
}

static void fault(const char *kind, const artifs_oid *id, const char *where, const char *msg, void *ctx)
{
	char hex[ARTIFS_OID_HEXSZ + 1];

	(void)ctx;
	fprintf(stderr, "fuzz_archive: fsck fault: %s %s at %s: %s\n", kind,
		id ? artifs_oid_fmt(hex, id) : "-", where ? where : "-", msg ? msg : "-");
}

static int tree_of(const artifs_oid *commit, artifs_oid *tree)
{
	artifs_commit *c = NULL;
	MDB_txn *txn = NULL;
	int rc;

	if ((rc = artifs_rtxn_begin(store, &txn)))
		return rc;
	if (!(rc = artifs_commit_load(&c, store, txn, commit)))
		*tree = c->tree;
	artifs_commit_free(c);
	mdb_txn_abort(txn);
	return rc;
}

/* A new repository with no commits; its name ("datasets/fN") into name. */
static void new_repo(char *name, size_t n)
{
	int rc;

	snprintf(name, n, "datasets/f%lu", ++repos);
	if ((rc = artifs_repo_create(store, name)))
		die("artifs_repo_create", rc);
}

static int import(const char *path, const char *repo, artifs_oid *id)
{
	artifs_snapshot_opts o = ARTIFS_SNAPSHOT_OPTS_INIT;
	artifs_snapshot_stats st;
	artifs_label_edits edits;
	int rc;

	artifs_label_edits_init(&edits);
	o.message = "fuzz";
	o.author = "fuzz <fuzz@example.org>";
	o.labels = &edits;	/* as the CLI does: a .labels.jsonl member lands here */
	rc = artifs_archive_commit(id, store, repo, "main", path, 0, &o, &st);
	artifs_label_edits_release(&edits);
	return rc;
}

/* Export commit id as tar and import that into a new repository: same tree. */
static void check_roundtrip(const artifs_oid *id)
{
	char repo[64], path[64], h1[ARTIFS_OID_HEXSZ + 1], h2[ARTIFS_OID_HEXSZ + 1];
	artifs_oid t1, t2, id2;
	int fd, rc;

	if ((fd = memfd_create("fuzz-export", MFD_CLOEXEC)) < 0) {
		perror("memfd_create");
		abort();
	}
	if ((rc = artifs_archive_export(store, id, "", fd, ARTIFS_ARCHIVE_TAR, NULL))) {
		const char *ign = getenv("ARTIFS_FUZZ_ROUNDTRIP_IGNORE");
		if (ign && *ign && strstr(artifs_error_last(), ign)) {
			close(fd);
			return;
		}
		die("export of an imported version failed", rc);
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	new_repo(repo, sizeof(repo));
	if ((rc = import(path, repo, &id2)))
		die("re-import of an export failed", rc);
	close(fd);
	if ((rc = tree_of(id, &t1)) || (rc = tree_of(&id2, &t2)))
		die("commit_load", rc);
	if (artifs_oid_cmp(&t1, &t2)) {
		fprintf(stderr, "fuzz_archive: export -> import changed the tree: %s -> %s\n",
			artifs_oid_fmt(h1, &t1), artifs_oid_fmt(h2, &t2));
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char repo[64], path[64];
	artifs_fsck_stats fs;
	artifs_oid id;
	size_t off = 0;
	int fd, rc;

	if (!store || runs >= RESET_EVERY)
		open_store();
	if ((fd = memfd_create("fuzz-archive", MFD_CLOEXEC)) < 0) {
		perror("memfd_create");
		abort();
	}
	while (off < size) {
		ssize_t n = write(fd, data + off, size - off);
		if (n < 0) {
			perror("write");
			abort();
		}
		off += (size_t)n;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	new_repo(repo, sizeof(repo));
	runs++;
	rc = import(path, repo, &id);
	close(fd);
	if (rc) {
		/* refused: an error code and a message, never a crash */
		if (rc > 0)
			die("import returned a positive code", rc);
		if (!*artifs_error_last())
			die("import failed without a message", rc);
		if (verbose)
			fprintf(stderr, "  refused: %s\n", artifs_error_last());
		return 0;
	}
	memset(&fs, 0, sizeof(fs));
	if ((rc = artifs_fsck(store, fault, NULL, NULL, &fs)))
		die("artifs_fsck failed", rc);
	if (fs.faults) {
		fprintf(stderr, "fuzz_archive: fsck found %llu faults after a successful import\n",
			(unsigned long long)fs.faults);
		abort();
	}
	if (verbose) {
		char hex[ARTIFS_OID_HEXSZ + 1];
		artifs_oid tree;
		if ((rc = tree_of(&id, &tree)))
			die("commit_load", rc);
		fprintf(stderr, "  committed: tree %s\n", artifs_oid_fmt(hex, &tree));
	}
	if (roundtrip)
		check_roundtrip(&id);
	return 0;
}
