#include "cli.h"
#include "commit.h"
#include "error.h"
#include "ref.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

/* Refs of the repository, for "(main, tag: v1)" decorations. */
struct deco {
	char (*names)[ARTIFS_REF_NAME_MAX + 16];
	artifs_oid *ids;
	size_t n, cap;
};

static int deco_add(const char *name, const artifs_ref *r, void *ctx)
{
	struct deco *d = ctx;

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		void *a = realloc(d->names, cap * sizeof(*d->names));
		void *b;
		if (!a)
			return -1;
		d->names = a;
		if (!(b = realloc(d->ids, cap * sizeof(*d->ids))))
			return -1;
		d->ids = b;
		d->cap = cap;
	}
	snprintf(d->names[d->n], sizeof(d->names[0]), "%s%s",
		r->kind == ARTIFS_REF_TAG ? "tag: " : r->kind == ARTIFS_REF_ENV ? "env: " : "", name);
	d->ids[d->n++] = r->target;
	return 0;
}


static void print_commit(const artifs_oid *id, const artifs_commit *c, const struct deco *d)
{
	char hex[ARTIFS_OID_HEXSZ + 1], t[64];
	int first = 1;

	printf("commit %s", artifs_oid_fmt(hex, id));
	for (size_t i = 0; d && i < d->n; i++)
		if (!artifs_oid_cmp(&d->ids[i], id)) {
			printf("%s%s", first ? " (" : ", ", d->names[i]);
			first = 0;
		}
	printf("%s\n", first ? "" : ")");
	printf("Author: %s\nDate:   %s\n", c->author, cli_time(t, sizeof(t), c->time));
	for (size_t i = 0; i < c->nmeta; i++)
		printf("Meta:   %s=%s\n", c->meta[i].key, c->meta[i].value);
	printf("\n");
	{
		const char *m = c->message;
		while (*m) {
			const char *nl = strchr(m, '\n');
			size_t len = nl ? (size_t)(nl - m) : strlen(m);
			printf("    %.*s\n", (int)len, m);
			m += len + (nl ? 1 : 0);
		}
	}
	printf("\n");
}

int cmd_log(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "max-count", required_argument, NULL, 'n' },
		{ 0 },
	};
	artifs_store *s = NULL;
	MDB_txn *txn = NULL;
	cli_spec sp = { 0 };
	struct deco d = { 0 };
	json_t *arr = NULL;
	artifs_oid id;
	long max = -1;
	int json = 0, o, rc;

	while ((o = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
		if (o == 'j') {
			json = 1;
		} else if (o == 'n') {
			char *end;
			max = strtol(optarg, &end, 10);
			if (*end || max < 0)
				return cli_usage("log", "-n wants a number, got '%s'", optarg);
		} else {
			return cli_usage("log", "unknown option");
		}
	}
	if (argc - optind != 1)
		return cli_usage("log", "usage: artifs log REPO[@REF] [-n N] [--json]");
	if ((rc = cli_spec_parse(&sp, argv[optind])))
		return cli_fail_rc(rc);
	if ((rc = cli_open_store(&s, 1)))
		goto out;
	if ((rc = artifs_rtxn_begin(s, &txn)) || (rc = cli_resolve(&id, s, txn, &sp))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	artifs_ref_foreach_ex(s, txn, sp.repo, deco_add, &d, 1);
	if (json)
		arr = json_array();
	for (long n = 0; max < 0 || n < max; n++) {
		artifs_commit *c = NULL;
		if ((rc = artifs_commit_load(&c, s, txn, &id))) {
			rc = cli_fail_rc(rc);
			goto out;
		}
		if (json)
			json_array_append_new(arr, cli_json_commit(&id, c));
		else
			print_commit(&id, c, &d);
		if (!c->nparents) {
			artifs_commit_free(c);
			break;
		}
		id = c->parents[0];
		artifs_commit_free(c);
	}
	rc = json ? cli_json_print(arr) : 0;
	arr = NULL;
out:
	json_decref(arr);
	if (txn)
		mdb_txn_abort(txn);
	free(d.names);
	free(d.ids);
	cli_spec_release(&sp);
	artifs_store_free(s);
	return rc;
}
