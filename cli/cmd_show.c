#include "cli.h"
#include "commit.h"
#include "error.h"

#include <getopt.h>

int cmd_show(int argc, char **argv)
{
	static const struct option opts[] = { { "json", no_argument, NULL, 'j' }, { 0 } };
	artifs_store *s = NULL;
	artifs_commit *c = NULL;
	MDB_txn *txn = NULL;
	cli_spec sp = { 0 };
	artifs_oid id;
	char hex[ARTIFS_OID_HEXSZ + 1], t[64];
	int json = 0, o, rc;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'j')
			json = 1;
		else
			return cli_usage("show", "unknown option");
	}
	if (argc - optind != 1)
		return cli_usage("show", "usage: artifs show REPO@REF [--json]");
	if ((rc = cli_spec_parse(&sp, argv[optind])))
		return cli_fail_rc(rc);
	if ((rc = cli_open_store(&s, 1)))
		goto out;
	if ((rc = artifs_rtxn_begin(s, &txn)) || (rc = cli_resolve(&id, s, txn, &sp)) ||
	    (rc = artifs_commit_load(&c, s, txn, &id))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (json) {
		rc = cli_json_print(cli_json_commit(&id, c));
		goto out;
	}
	printf("commit  %s\n", artifs_oid_fmt(hex, &id));
	printf("repo    %s\n", c->repo);
	printf("tree    %s\n", artifs_oid_fmt(hex, &c->tree));
	for (uint32_t i = 0; i < c->nparents; i++)
		printf("parent  %s\n", artifs_oid_fmt(hex, &c->parents[i]));
	printf("author  %s\n", c->author);
	printf("date    %s\n", cli_time(t, sizeof(t), c->time));
	for (size_t i = 0; i < c->nmeta; i++)
		printf("meta    %s=%s\n", c->meta[i].key, c->meta[i].value);
	printf("\n%s\n", c->message);
out:
	artifs_commit_free(c);
	if (txn)
		mdb_txn_abort(txn);
	cli_spec_release(&sp);
	artifs_store_free(s);
	return rc;
}
