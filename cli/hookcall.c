/*
 * hookcall.c - what the commands hand to deployment hooks: one JSON
 * document on stdin and the same essentials as environment variables
 * (index/hook.c runs them: no shell, a clean environment, a timeout).
 */
#include "cli.h"
#include "diff.h"
#include "error.h"
#include "hook.h"
#include "ref.h"
#include "tree.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct dsum {
	uint64_t n[128];
	uint64_t bytes_added, bytes_removed;
};

static int dsum_cb(const artifs_diff_entry *e, void *ctx)
{
	struct dsum *d = ctx;

	d->n[(unsigned char)e->status & 127]++;
	if (e->status == ARTIFS_DIFF_ADDED || e->status == ARTIFS_DIFF_MODIFIED)
		d->bytes_added += e->new_size;
	if (e->status == ARTIFS_DIFF_REMOVED || e->status == ARTIFS_DIFF_MODIFIED)
		d->bytes_removed += e->old_size;
	if (e->status != ARTIFS_DIFF_LABELS && artifs_oid_cmp(&e->old_labels, &e->new_labels) &&
	    e->old_type && e->new_type)
		d->n['L']++;
	return 0;
}

/* {"added", ...} between two trees (a zero id: the empty tree). */
static json_t *diff_summary(artifs_store *s, MDB_txn *txn, const artifs_oid *a, const artifs_oid *b)
{
	struct dsum d = { { 0 }, 0, 0 };
	json_t *o;

	if (artifs_diff_trees(s, txn, a, b, dsum_cb, &d))
		return json_null();
	o = json_object();
	json_object_set_new(o, "added", json_integer((json_int_t)d.n['A']));
	json_object_set_new(o, "removed", json_integer((json_int_t)d.n['D']));
	json_object_set_new(o, "modified", json_integer((json_int_t)d.n['M']));
	json_object_set_new(o, "mode", json_integer((json_int_t)d.n['X']));
	json_object_set_new(o, "labels", json_integer((json_int_t)d.n['L']));
	json_object_set_new(o, "bytes_added", json_integer((json_int_t)d.bytes_added));
	json_object_set_new(o, "bytes_removed", json_integer((json_int_t)d.bytes_removed));
	return o;
}

struct tagctx {
	const artifs_oid *id;
	json_t *tags;
	json_t *envs;
	artifs_store *s;
	MDB_txn *txn;
	const char *repo;
	const char *name;
	int hit;
};

static int env_log_cb(const artifs_reflog_entry *e, void *ctx)
{
	struct tagctx *t = ctx;

	if (!artifs_oid_cmp(&e->new_id, t->id)) {
		t->hit = 1;
		return 1;
	}
	return 0;
}

static int tag_cb(const char *name, const artifs_ref *ref, void *ctx)
{
	struct tagctx *t = ctx;

	if (ref->kind == ARTIFS_REF_TAG && !artifs_oid_cmp(&ref->target, t->id))
		json_array_append_new(t->tags, json_string(name));
	if (ref->kind == ARTIFS_REF_ENV) {
		/* every environment this commit was ever promoted to */
		t->hit = 0;
		artifs_reflog_foreach(t->s, t->txn, t->repo, name, env_log_cb, t);
		if (t->hit)
			json_array_append_new(t->envs, json_string(name));
	}
	return 0;
}

json_t *cli_commit_tags(artifs_store *s, MDB_txn *txn, const char *repo, const artifs_oid *id,
	json_t **envs)
{
	struct tagctx t = { id, json_array(), json_array(), s, txn, repo, NULL, 0 };

	artifs_ref_foreach_ex(s, txn, repo, tag_cb, &t, 1);
	if (envs)
		*envs = t.envs;
	else
		json_decref(t.envs);
	return t.tags;
}

json_t *cli_hook_doc(artifs_store *s, MDB_txn *txn, const cli_hook_info *h)
{
	artifs_commit *loaded = NULL, *oldc = NULL;
	const artifs_commit *c = h->commit;
	json_t *doc = json_object(), *cj, *envs = NULL;
	const char *slash = strchr(h->repo, '/');
	char user[256];

	if (!c && !artifs_commit_load(&loaded, s, txn, h->new_id))
		c = loaded;
	snprintf(user, sizeof(user), "%s", artifs_author_default());
	json_object_set_new(doc, "event", json_string(h->event));
	json_object_set_new(doc, "repository", json_string(h->repo));
	json_object_set_new(doc, "kind", json_string(!strncmp(h->repo, "models/", 7) ? "model" : "dataset"));
	json_object_set_new(doc, "name", json_string(slash ? slash + 1 : h->repo));
	json_object_set_new(doc, "operation", json_string(h->op));
	json_object_set_new(doc, "ref", json_string(h->ref));
	json_object_set_new(doc, "environment", h->env ? json_string(h->env) : json_null());
	json_object_set_new(doc, "old", h->old_id && !artifs_oid_is_zero(h->old_id) ?
		cli_json_oid(h->old_id) : json_null());
	json_object_set_new(doc, "new", cli_json_oid(h->new_id));
	json_object_set_new(doc, "user", cli_json_str(user));
	json_object_set_new(doc, "reason", h->reason ? cli_json_str(h->reason) : json_null());
	json_object_set_new(doc, "no_verify", json_boolean(h->no_verify));
	if (c) {
		cj = cli_json_commit(h->new_id, c);
		json_object_set_new(cj, "tags", cli_commit_tags(s, txn, h->repo, h->new_id, &envs));
		json_object_set_new(cj, "environments", envs);
		json_object_set_new(doc, "commit", cj);
		if (h->old_id && !artifs_oid_is_zero(h->old_id) &&
		    !artifs_commit_load(&oldc, s, txn, h->old_id)) {
			json_object_set_new(doc, "diff", diff_summary(s, txn, &oldc->tree, &c->tree));
		} else {
			static const artifs_oid empty;	/* from nothing: everything is added */
			json_object_set_new(doc, "diff", diff_summary(s, txn, &empty, &c->tree));
		}
	} else {
		json_object_set_new(doc, "commit", json_null());
		json_object_set_new(doc, "diff", json_null());
	}
	artifs_commit_free(loaded);
	artifs_commit_free(oldc);
	return doc;
}

static char *env_var(const char *k, const char *v)
{
	size_t n = strlen(k) + strlen(v) + 2;
	char *s = malloc(n);

	if (s)
		snprintf(s, n, "%s=%s", k, v);
	return s;
}

static int interrupted;

int cli_hooks_interrupted(void)
{
	return interrupted;
}

void cli_end_if_interrupted(void)
{
	if (!interrupted)
		return;
	fflush(NULL);
	signal(interrupted, SIG_DFL);
	raise(interrupted);	/* the status a shell expects of a Ctrl-C (130 for SIGINT) */
}

int cli_hooks_fire(artifs_store *s, const char *event, json_t *doc, json_t **results)
{
	artifs_hook_opts o = { 0 };
	artifs_hook_results r = { 0 };
	char *text = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	char *env[16] = { 0 }, *tmo = NULL;
	static const char *const vars[][2] = {
		{ "ARTIFS_REPO", "repository" }, { "ARTIFS_KIND", "kind" }, { "ARTIFS_NAME", "name" },
		{ "ARTIFS_OPERATION", "operation" }, { "ARTIFS_REF", "ref" }, { "ARTIFS_ENV", "environment" },
		{ "ARTIFS_OLD", "old" }, { "ARTIFS_NEW", "new" }, { "ARTIFS_USER", "user" },
		{ "ARTIFS_REASON", "reason" },
	};
	size_t ne = 0;
	int rc;

	if (!text)
		return artifs_error(-ENOMEM, "out of memory");
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		json_t *v = json_object_get(doc, vars[i][1]);
		if (json_is_string(v) && !strchr(json_string_value(v), '\n'))
			env[ne++] = env_var(vars[i][0], json_string_value(v));
	}
	env[ne] = NULL;
	o.stdin_data = text;
	o.stdin_len = strlen(text);
	o.env = (const char *const *)env;
	o.timeout_ms = 60000;
	if (cli_config_get(s, "hooks.timeout", &tmo) == 0) {
		long t = strtol(tmo, NULL, 10);
		if (t > 0)
			o.timeout_ms = (unsigned)t * 1000u;
	}
	free(tmo);
	o.stop_on_failure = !strncmp(event, "pre-", 4);
	o.stdout_fd = STDERR_FILENO;
	rc = artifs_hooks_run(artifs_store_path(s), event, &o, &r);
	if (results)
		*results = json_array();
	for (size_t i = 0; i < r.n; i++) {
		const artifs_hook_result *x = &r.v[i];
		int failed = x->status != 0 || x->interrupted;
		if (failed) {
			fprintf(stderr, "artifs: hook %s %s%s\n", x->name,
				x->interrupted ? "was interrupted by " : x->timed_out ? "timed out" :
				x->exec_failed ? "could not be started" : x->signal ? "was killed" : "failed",
				x->interrupted ? artifs_hook_signal_name(x->interrupted) : "");
			if (*x->err) {
				const char *p = x->err;
				while (*p) {
					const char *nl = strchr(p, '\n');
					size_t len = nl ? (size_t)(nl - p) : strlen(p);
					fprintf(stderr, "hook %s: %.*s\n", x->name, (int)len, p);
					p += len + (nl ? 1 : 0);
				}
			}
		}
		if (results) {
			json_t *h = json_object();
			json_object_set_new(h, "event", json_string(event));
			json_object_set_new(h, "hook", json_string(x->name));
			json_object_set_new(h, "status", json_integer(x->status));
			if (x->signal)
				json_object_set_new(h, "signal", json_integer(x->signal));
			json_object_set_new(h, "timed_out", json_boolean(x->timed_out));
			if (x->interrupted)
				json_object_set_new(h, "interrupted", json_integer(x->interrupted));
			json_object_set_new(h, "seconds", json_real((double)(long)(x->seconds * 1000) / 1000));
			json_object_set_new(h, "ok", json_boolean(!failed));
			if (failed && *x->err)
				json_object_set_new(h, "stderr", cli_json_str(x->err));
			json_array_append_new(*results, h);
		}
	}
	if (r.interrupted && !interrupted) {
		interrupted = r.interrupted;
		if (!r.n || !r.v[r.n - 1].interrupted)
			fprintf(stderr, "artifs: %s hooks interrupted by %s\n", event,
				artifs_hook_signal_name(interrupted));
	}
	artifs_hook_results_release(&r);
	for (size_t i = 0; i < ne; i++)
		free(env[i]);
	free(text);
	return rc;
}

/* ---- commits and tags ---- */

int cli_pre_commit_cb(const artifs_oid *old, const artifs_oid *new_id, const artifs_commit *c,
	void *ctx)
{
	cli_commit_hooks *h = ctx;
	cli_hook_info hi = { 0 };
	MDB_txn *txn = NULL;
	json_t *doc;
	int rc;

	if (h->no_verify)
		return 0;
	/* no hook: no input to prepare (a diff of the two trees) */
	if ((rc = artifs_hooks_exist(artifs_store_path(h->s), "pre-commit")) <= 0)
		return rc;
	if ((rc = artifs_rtxn_begin(h->s, &txn)))
		return rc;
	hi.event = "pre-commit";
	hi.repo = h->repo;
	hi.op = h->op;
	hi.ref = h->branch;
	hi.old_id = old;
	hi.new_id = new_id;
	hi.commit = c;
	hi.reason = c->message;
	doc = cli_hook_doc(h->s, txn, &hi);
	mdb_txn_abort(txn);
	rc = cli_hooks_fire(h->s, "pre-commit", doc, NULL);
	json_decref(doc);
	if (rc == ARTIFS_EHOOK && interrupted)
		rc = artifs_error(ARTIFS_EHOOK, "interrupted by %s while pre-commit hooks ran; %s@%s is "
			"unchanged", artifs_hook_signal_name(interrupted), h->repo, h->branch);
	else if (rc == ARTIFS_EHOOK)
		rc = artifs_error(ARTIFS_EHOOK, "a pre-commit hook refused the commit; %s@%s is unchanged "
			"(--no-verify bypasses hooks)", h->repo, h->branch);
	return rc;
}

void cli_post_commit(cli_commit_hooks *h, const artifs_oid *old, const artifs_oid *new_id)
{
	cli_hook_info hi = { 0 };
	MDB_txn *txn = NULL, *w = NULL;
	json_t *doc, *res = NULL, *note;
	artifs_ref ref;
	char *text;
	int rc, any;

	/* no hook and nothing bypassed: nothing to run or record */
	if ((any = artifs_hooks_exist(artifs_store_path(h->s), "post-commit")) == 0 && !h->no_verify)
		return;
	if (artifs_rtxn_begin(h->s, &txn))
		return;
	hi.event = "post-commit";
	hi.repo = h->repo;
	hi.op = h->op;
	hi.ref = h->branch;
	hi.old_id = old;
	hi.new_id = new_id;
	hi.no_verify = h->no_verify;
	doc = cli_hook_doc(h->s, txn, &hi);
	rc = artifs_ref_get(&ref, h->s, txn, h->repo, h->branch);
	mdb_txn_abort(txn);
	if (cli_hooks_fire(h->s, "post-commit", doc, &res) == ARTIFS_EHOOK)
		cli_warn(interrupted ? "post-commit hooks were interrupted; the commit stands" :
			"a post-commit hook failed; the commit stands");
	/* the results (and a bypass) go with the move, if it is still the head */
	if (!rc && !artifs_oid_cmp(&ref.target, new_id) && (json_array_size(res) || h->no_verify)) {
		note = json_object();
		json_object_set_new(note, "hooks", json_incref(res));
		json_object_set_new(note, "no_verify", json_boolean(h->no_verify));
		text = json_dumps(note, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (text && !artifs_wtxn_begin(h->s, 1 << 20, &w)) {
			if (artifs_ref_note_put(h->s, w, h->repo, h->branch, ref.seq, text))
				mdb_txn_abort(w);
			else
				artifs_txn_commit(w);
		}
		free(text);
		json_decref(note);
	}
	json_decref(res);
	json_decref(doc);
}

int cli_pre_tag(artifs_store *s, const char *repo, const char *tag, const artifs_oid *id, int no_verify)
{
	cli_hook_info hi = { 0 };
	MDB_txn *txn = NULL;
	json_t *doc;
	int rc;

	if (no_verify)
		return 0;
	if ((rc = artifs_hooks_exist(artifs_store_path(s), "pre-tag")) <= 0)
		return rc;
	if ((rc = artifs_rtxn_begin(s, &txn)))
		return rc;
	hi.event = "pre-tag";
	hi.repo = repo;
	hi.op = "tag";
	hi.ref = tag;
	hi.new_id = id;
	doc = cli_hook_doc(s, txn, &hi);
	mdb_txn_abort(txn);
	rc = cli_hooks_fire(s, "pre-tag", doc, NULL);
	json_decref(doc);
	if (rc == ARTIFS_EHOOK && interrupted)
		rc = artifs_error(ARTIFS_EHOOK, "interrupted by %s while pre-tag hooks ran; tag '%s' "
			"was not made", artifs_hook_signal_name(interrupted), tag);
	else if (rc == ARTIFS_EHOOK)
		rc = artifs_error(ARTIFS_EHOOK, "a pre-tag hook refused tag '%s'", tag);
	return rc;
}
