/* refcmd.c - what 'tag' and 'branch' share: create a ref at a rev, list refs. */
#include "refcmd.h"
#include "error.h"
#include "snapshot.h"

#include <string.h>

static int bad_repo(const char *cmd, const char *repo)
{
	return cli_usage(cmd, "invalid repository '%s' (want datasets/NAME or models/NAME)", repo);
}

struct list_ctx {
	char kind;
	json_t *arr;
};

static int list_one(const char *name, const artifs_ref *r, void *ctx)
{
	struct list_ctx *l = ctx;
	char hex[ARTIFS_OID_HEXSZ + 1];

	if (r->kind != l->kind)
		return 0;
	if (l->arr) {
		json_t *o = json_object();
		json_object_set_new(o, "name", json_string(name));
		json_object_set_new(o, "commit", artifs_oid_is_zero(&r->target) ? json_null() : cli_json_oid(&r->target));
		json_object_set_new(o, "updated", json_integer(r->time));
		json_array_append_new(l->arr, o);
	} else {
		printf("%-30s %s\n", name, artifs_oid_is_zero(&r->target) ? "(no commits)" :
			artifs_oid_fmt(hex, &r->target));
	}
	return 0;
}

int refcmd_list(const char *cmd, const char *repo, char kind, int json)
{
	struct list_ctx l = { kind, json ? json_array() : NULL };
	artifs_store *s = NULL;
	MDB_txn *txn = NULL;
	int rc;

	if (!artifs_repo_name_valid(repo))
		return bad_repo(cmd, repo);
	if ((rc = cli_open_store(&s, 1)))
		goto out;
	if ((rc = artifs_rtxn_begin(s, &txn)) || (rc = artifs_repo_check(s, txn, repo)) ||
	    (rc = artifs_ref_foreach(s, txn, repo, list_one, &l))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (json) {
		rc = cli_json_print(l.arr);
		l.arr = NULL;
	}
out:
	json_decref(l.arr);
	if (txn)
		mdb_txn_abort(txn);
	artifs_store_free(s);
	return rc;
}

int refcmd_create(const char *cmd, const char *repo, const char *name, const char *rev, char kind,
	int no_verify)
{
	artifs_store *s = NULL;
	MDB_txn *txn = NULL;
	artifs_oid id;
	char hex[ARTIFS_OID_HEXSZ + 1], msg[256];
	int rc;

	if (!artifs_repo_name_valid(repo))
		return bad_repo(cmd, repo);
	if (!artifs_ref_name_valid(name))
		return cli_fail(NULL, "invalid %s name '%s' (letters, digits, '.', '_', '-'; "
			"no leading '.' or '-'; at most %d)", artifs_ref_kind_name(kind), name, ARTIFS_REF_NAME_MAX);
	if ((rc = cli_open_store(&s, 0)))
		return rc;
	if (kind == ARTIFS_REF_TAG) {
		/* pre-tag hooks see the commit; a re-tag of the same commit is a no-op */
		artifs_ref cur;
		if ((rc = artifs_rtxn_begin(s, &txn)) || (rc = artifs_rev_parse(&id, s, txn, repo, rev))) {
			rc = cli_fail_rc(rc);
			goto out;
		}
		rc = artifs_ref_get(&cur, s, txn, repo, name);
		mdb_txn_abort(txn);
		txn = NULL;
		if ((rc || artifs_oid_cmp(&cur.target, &id)) && (rc = cli_pre_tag(s, repo, name, &id, no_verify))) {
			rc = cli_fail_rc(rc);
			goto out;
		}
	}
	if ((rc = artifs_wtxn_begin(s, (size_t)1 << 20, &txn)) ||
	    (rc = artifs_rev_parse(&id, s, txn, repo, rev))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	snprintf(msg, sizeof(msg), "%s %s at %s", cmd, name, rev);
	if ((rc = artifs_ref_update_ex(s, txn, repo, name, kind, NULL, &id, artifs_author_default(), msg,
			kind == ARTIFS_REF_TAG ? "tag" : "branch",
			no_verify ? "{\"no_verify\":true}" : NULL, NULL))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	rc = artifs_txn_commit(txn);
	txn = NULL;
	if (rc) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	printf("%s\n", artifs_oid_fmt(hex, &id));
out:
	if (txn)
		mdb_txn_abort(txn);
	artifs_store_free(s);
	return rc;
}

int refcmd_delete(const char *cmd, const char *repo, const char *name, char kind)
{
	artifs_store *s = NULL;
	MDB_txn *txn = NULL;
	artifs_ref cur;
	char hex[ARTIFS_OID_HEXSZ + 1], msg[256];
	int rc;

	if (!artifs_repo_name_valid(repo))
		return bad_repo(cmd, repo);
	if (kind == ARTIFS_REF_BRANCH && !strcmp(name, "main"))
		return cli_fail("a repository keeps its main branch; delete other branches",
			"cannot delete 'main' of '%s': commits go there unless told otherwise", repo);
	if ((rc = cli_open_store(&s, 0)))
		return rc;
	for (int tries = 0;; tries++) {
		if ((rc = artifs_wtxn_begin(s, (size_t)1 << 20, &txn)))
			break;
		if (!(rc = artifs_repo_check(s, txn, repo))) {
			if ((rc = artifs_ref_get(&cur, s, txn, repo, name)) == ARTIFS_ENOTFOUND) {
				rc = artifs_error(ARTIFS_ENOTFOUND, "no %s '%s' in '%s'",
					artifs_ref_kind_name(kind), name, repo);
			} else if (!rc) {
				snprintf(msg, sizeof(msg), "%s -d %s", cmd, name);
				rc = artifs_ref_delete(s, txn, repo, name, kind, &cur.target,
					artifs_author_default(), msg, "delete");
				if (!rc && kind == ARTIFS_REF_BRANCH)
					rc = artifs_statcache_drop(s, txn, repo, name);
			}
		}
		if (rc)
			mdb_txn_abort(txn);
		else
			rc = artifs_txn_commit(txn);
		txn = NULL;
		if (rc == MDB_MAP_FULL && tries < 3 && !artifs_store_grow(s, 16 << 20))
			continue;
		break;
	}
	if (rc) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	/* what it pointed at: 'artifs branch REPO NAME ID' makes it again */
	fprintf(stderr, "deleted %s %s of %s (was %s)\n", artifs_ref_kind_name(kind), name, repo,
		artifs_oid_is_zero(&cur.target) ? "without commits" : artifs_oid_fmt(hex, &cur.target));
	if (!artifs_oid_is_zero(&cur.target))
		printf("%s\n", artifs_oid_fmt(hex, &cur.target));
out:
	if (txn)
		mdb_txn_abort(txn);
	artifs_store_free(s);
	return rc;
}
