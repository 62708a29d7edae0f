#include "checkout.h"
#include "cli.h"
#include "commit.h"
#include "error.h"
#include "tree.h"

#include <unistd.h>

int cmd_cat(int argc, char **argv)
{
	artifs_store *s = NULL;
	artifs_commit *c = NULL;
	MDB_txn *txn = NULL;
	artifs_tree_entry e;
	cli_spec sp = { 0 };
	artifs_oid id;
	int rc;

	if (argc != 2 || argv[1][0] == '-')
		return cli_usage("cat", "usage: artifs cat REPO@REF:PATH");
	if ((rc = cli_spec_parse(&sp, argv[1])))
		return cli_fail_rc(rc);
	if (!sp.has_path || !*sp.path) {
		rc = cli_usage("cat", "give a file path: REPO@REF:PATH");
		goto out;
	}
	if ((rc = cli_open_store(&s, 1)))
		goto out;
	if ((rc = artifs_rtxn_begin(s, &txn)) || (rc = cli_resolve(&id, s, txn, &sp)) ||
	    (rc = artifs_commit_load(&c, s, txn, &id)) ||
	    (rc = artifs_tree_resolve(&e, s, txn, &c->tree, sp.path))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (e.type == ARTIFS_T_DIR) {
		rc = cli_fail("list it with 'artifs ls'", "'%s' is a directory", sp.path);
		goto out;
	}
	if (e.type == ARTIFS_T_LINK) {
		rc = cli_fail(NULL, "'%s' is a symbolic link; 'artifs ls -l' shows it", sp.path);
		goto out;
	}
	if ((rc = artifs_blob_write_fd(s, txn, &e.id, STDOUT_FILENO, NULL)))
		rc = cli_fail_rc(rc);
out:
	artifs_commit_free(c);
	if (txn)
		mdb_txn_abort(txn);
	cli_spec_release(&sp);
	artifs_store_free(s);
	return rc;
}
