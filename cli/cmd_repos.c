#include "cli.h"
#include "error.h"
#include "ref.h"

#include <getopt.h>
#include <string.h>

struct repos_ctx {
	artifs_store *s;
	MDB_txn *txn;
	json_t *arr;
	int nrefs;
};

static int count_ref(const char *name, const artifs_ref *r, void *ctx)
{
	(void)name;
	(void)r;
	((struct repos_ctx *)ctx)->nrefs++;
	return 0;
}

static int one(const char *repo, int64_t created, void *ctx)
{
	struct repos_ctx *c = ctx;
	artifs_ref main_ref;
	int has_main;
	char hex[ARTIFS_OID_HEXSZ + 1], t[64];

	c->nrefs = 0;
	artifs_ref_foreach_ex(c->s, c->txn, repo, count_ref, c, 1);
	has_main = artifs_ref_get(&main_ref, c->s, c->txn, repo, "main") == 0 &&
		!artifs_oid_is_zero(&main_ref.target);
	if (c->arr) {
		json_t *o = json_object();
		json_object_set_new(o, "name", json_string(repo));
		json_object_set_new(o, "kind", json_string(strncmp(repo, "models/", 7) ? "dataset" : "model"));
		json_object_set_new(o, "created", json_integer(created));
		json_object_set_new(o, "refs", json_integer(c->nrefs));
		json_object_set_new(o, "main", has_main ? cli_json_oid(&main_ref.target) : json_null());
		json_array_append_new(c->arr, o);
	} else {
		printf("%-40s %3d refs  main %s  created %s\n", repo, c->nrefs,
			has_main ? artifs_oid_fmt(hex, &main_ref.target) : "(no commits)",
			cli_time(t, sizeof(t), created));
	}
	return 0;
}

int cmd_repos(int argc, char **argv)
{
	static const struct option opts[] = { { "json", no_argument, NULL, 'j' }, { 0 } };
	struct repos_ctx c = { 0 };
	int json = 0, o, rc;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'j')
			json = 1;
		else
			return cli_usage("repos", "unknown option");
	}
	if (optind != argc)
		return cli_usage("repos", "'repos' takes no arguments");
	if ((rc = cli_open_store(&c.s, 1)))
		return rc;
	if ((rc = artifs_rtxn_begin(c.s, &c.txn)))
		goto done;
	if (json)
		c.arr = json_array();
	rc = artifs_repo_foreach(c.s, c.txn, one, &c);
	mdb_txn_abort(c.txn);
done:
	if (rc) {
		json_decref(c.arr);
		rc = cli_fail_rc(rc);
	} else if (json) {
		rc = cli_json_print(c.arr);
	}
	artifs_store_free(c.s);
	return rc;
}
