/*
 * cmd_gitops.c - 'artifs gitops publish' (write the pins of environments to
 * the GitOps repository again, e.g. after a failed push) and 'artifs gitops
 * reconcile' (move environments to what the pins in git say, so that a
 * merged pull request promotes).
 */
#include "cli.h"
#include "error.h"
#include "gitops.h"
#include "ref.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

struct pubctx {
	artifs_store *s;
	const char *repo;
	int failed, done;
};

static int publish_one(struct pubctx *p, const char *env)
{
	json_t *gj = NULL;
	MDB_txn *txn = NULL;
	artifs_ref ref;
	int rc;

	/* only environments have pins */
	if ((rc = artifs_rtxn_begin(p->s, &txn)) == 0) {
		rc = artifs_ref_get(&ref, p->s, txn, p->repo, env);
		mdb_txn_abort(txn);
	}
	if (rc || ref.kind != ARTIFS_REF_ENV) {
		fprintf(stderr, "artifs: error: '%s' is not an environment of '%s'\n", env, p->repo);
		p->failed++;
		return 0;
	}
	rc = cli_gitops_publish(p->s, p->repo, env, NULL, "promote", &gj);

	if (rc < 0) {
		fprintf(stderr, "artifs: error: %s@%s: %s\n", p->repo, env, artifs_error_last());
		p->failed++;
	} else if (rc == 0) {
		printf("%s %s %s\n", p->repo, env, json_string_value(json_object_get(gj, "git_commit")));
		p->done++;
	}
	json_decref(gj);
	return rc == 1 ? 1 : 0;
}

static int env_cb(const char *name, const artifs_ref *ref, void *ctx)
{
	struct pubctx *p = ctx;

	if (ref->kind != ARTIFS_REF_ENV)
		return 0;
	return publish_one(p, name);
}

static int gitops_publish(int argc, char **argv)
{
	struct pubctx p = { 0 };
	cli_spec sp = { 0 };
	MDB_txn *txn = NULL;
	int rc;

	if (argc < 2)
		return cli_usage("gitops", "usage: artifs gitops publish REPO [ENV...]");
	if ((rc = cli_spec_parse(&sp, argv[1])))
		return cli_fail_rc(rc);
	if ((rc = cli_open_store(&p.s, 0)))
		goto out;
	p.repo = sp.repo;
	{
		artifs_gitops_config c;
		char *wd;
		int set = cli_gitops_config(p.s, &c, &wd);
		cli_gitops_config_release(&c, wd);
		if (set <= 0) {
			rc = set < 0 ? cli_fail_rc(set) :
				cli_fail("set it with 'artifs config gitops.url URL'", "gitops.url is not configured");
			goto out;
		}
	}
	if (argc > 2) {
		for (int i = 2; i < argc; i++)
			publish_one(&p, argv[i]);
	} else {
		/* every environment */
		if ((rc = artifs_rtxn_begin(p.s, &txn)) || (rc = artifs_repo_check(p.s, txn, sp.repo))) {
			rc = cli_fail_rc(rc);
			goto out;
		}
		rc = artifs_ref_foreach(p.s, txn, sp.repo, env_cb, &p);
	}
	rc = p.failed ? EXIT_FAIL : EXIT_OK;
out:
	if (txn)
		mdb_txn_abort(txn);
	cli_spec_release(&sp);
	artifs_store_free(p.s);
	return rc;
}

struct recon {
	artifs_store *s;
	int dry_run, no_verify;
	int changed, same, failed;
};

static int recon_cb(const artifs_pin *pin, void *ctx)
{
	struct recon *r = ctx;
	artifs_commit *c = NULL;
	MDB_txn *txn = NULL;
	artifs_ref ref;
	artifs_oid id;
	int rc, moved = 0;

	if ((rc = artifs_rtxn_begin(r->s, &txn)))
		return rc;
	if ((rc = artifs_repo_check(r->s, txn, pin->repo)) ||
	    (rc = artifs_oid_parse(&id, pin->commit)) ||
	    (rc = artifs_commit_load(&c, r->s, txn, &id))) {
		fprintf(stderr, "artifs: error: pin %s@%s -> %s: %s\n", pin->repo, pin->env, pin->commit,
			rc == ARTIFS_ENOTFOUND ? "no such commit in this store" : artifs_error_last());
		r->failed++;
		goto out;
	}
	if (strcmp(c->repo, pin->repo)) {
		fprintf(stderr, "artifs: error: pin %s@%s -> %s: that commit belongs to %s\n", pin->repo,
			pin->env, pin->commit, c->repo);
		r->failed++;
		goto out;
	}
	if (!artifs_ref_get(&ref, r->s, txn, pin->repo, pin->env) && ref.kind == ARTIFS_REF_ENV &&
	    !artifs_oid_cmp(&ref.target, &id)) {
		printf("%s %s: up to date (%.12s)\n", pin->repo, pin->env, pin->commit);
		r->same++;
		goto out;
	}
	mdb_txn_abort(txn);
	txn = NULL;
	if (r->dry_run) {
		printf("%s %s: would move to %.12s\n", pin->repo, pin->env, pin->commit);
		r->changed++;
		goto out;
	}
	{
		cli_move m = { 0 };
		m.repo = pin->repo;
		m.env = pin->env;
		m.op = "reconcile";
		m.rev = pin->commit;
		m.reason = "reconcile from the GitOps repository";
		m.target = id;
		m.no_verify = r->no_verify;
		m.publish = 0;	/* the pin is already what git says */
		if (cli_env_move(r->s, &m, &moved) != EXIT_OK) {
			r->failed++;
		} else if (moved) {
			printf("%s %s: moved to %.12s\n", pin->repo, pin->env, pin->commit);
			r->changed++;
		}
	}
out:
	if (txn)
		mdb_txn_abort(txn);
	artifs_commit_free(c);
	return 0;
}

static int gitops_reconcile(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'd' },
		{ "no-verify", no_argument, NULL, 'n' },
		{ 0 },
	};
	artifs_gitops_config c;
	struct recon r = { 0 };
	char *wd = NULL;
	int o, rc, set;

	optind = 1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'd')
			r.dry_run = 1;
		else if (o == 'n')
			r.no_verify = 1;
		else
			return cli_usage("gitops", "unknown option");
	}
	if (optind != argc)
		return cli_usage("gitops", "usage: artifs gitops reconcile [--dry-run] [--no-verify]");
	if ((rc = cli_open_store(&r.s, 0)))
		return rc;
	if ((set = cli_gitops_config(r.s, &c, &wd)) <= 0) {
		rc = set < 0 ? cli_fail_rc(set) :
			cli_fail("set it with 'artifs config gitops.url URL'", "gitops.url is not configured");
		goto out;
	}
	rc = artifs_gitops_read_pins(&c, recon_cb, &r);
	if (rc && rc != ARTIFS_EGITOPS) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (rc) {
		fprintf(stderr, "artifs: error: %s\n", artifs_error_last());
		r.failed++;
	}
	fprintf(stderr, "reconcile: %d moved, %d up to date, %d failed\n", r.changed, r.same, r.failed);
	rc = r.failed ? EXIT_FAIL : EXIT_OK;
out:
	cli_gitops_config_release(&c, wd);
	artifs_store_free(r.s);
	return rc;
}

CLI_CMD(gitops)
{
	const char *sub = argc > 1 ? argv[1] : "";

	if (!strcmp(sub, "publish"))
		return gitops_publish(argc - 1, argv + 1);
	if (!strcmp(sub, "reconcile"))
		return gitops_reconcile(argc - 1, argv + 1);
	return cli_usage("gitops", "usage: artifs gitops publish REPO [ENV...] | artifs gitops reconcile [--dry-run]");
}
