#include "checkout.h"
#include "cli.h"
#include "commit.h"
#include "error.h"
#include "tree.h"

#include <unistd.h>

int cmd_checkout(int argc, char **argv)
{
	artifs_store *s = NULL;
	artifs_commit *c = NULL;
	MDB_txn *txn = NULL;
	artifs_tree_entry e;
	artifs_checkout_stats st;
	cli_progress prog;
	cli_spec sp = { 0 };
	artifs_oid id;
	double t0;
	int rc;

	if (argc != 3 || argv[1][0] == '-')
		return cli_usage("checkout", "usage: artifs checkout REPO@REF[:PATH] DEST");
	if ((rc = cli_spec_parse(&sp, argv[1])))
		return cli_fail_rc(rc);
	if ((rc = cli_open_store(&s, 1)))
		goto out;
	if ((rc = artifs_rtxn_begin(s, &txn)) || (rc = cli_resolve(&id, s, txn, &sp)) ||
	    (rc = artifs_commit_load(&c, s, txn, &id)) ||
	    (rc = artifs_tree_resolve(&e, s, txn, &c->tree, sp.path))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	mdb_txn_abort(txn);
	txn = NULL;
	if (e.type != ARTIFS_T_DIR) {
		rc = cli_fail("use 'artifs cat' for one file", "'%s' is not a directory", sp.path);
		goto out;
	}
	cli_progress_init(&prog, "checkout");
	t0 = cli_now();
	rc = artifs_checkout_tree(s, &e.id, c->time, argv[2], cli_progress_cb, &prog, &st);
	cli_progress_done(&prog);
	if (rc) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (isatty(STDERR_FILENO)) {
		char b[32];
		fprintf(stderr, "checked out %llu files, %llu dirs, %s in %.2fs\n",
			(unsigned long long)st.files, (unsigned long long)st.dirs,
			cli_bytes(b, sizeof(b), (double)st.bytes), cli_now() - t0);
	}
out:
	artifs_commit_free(c);
	if (txn)
		mdb_txn_abort(txn);
	cli_spec_release(&sp);
	artifs_store_free(s);
	return rc;
}
