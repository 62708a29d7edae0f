/*
 * cmd_promote.c - environments: 'promote', 'rollback', 'history', 'envs'.
 *
 * A promotion: resolve REV, run pre-promote hooks (any failure refuses),
 * move the environment by compare-and-swap (a concurrent promotion of the
 * same environment makes exactly one of them fail), then run post-promote
 * hooks and publish the pin to the GitOps repository; their results are
 * appended to the move as a note.  The ref log keeps who, when, from,
 * to, why and the hook results; nothing rewrites it.
 */
#include "cli.h"
#include "error.h"
#include "gitops.h"
#include "hook.h"
#include "ref.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void short_hex(char *buf, const artifs_oid *id)
{
	char hex[ARTIFS_OID_HEXSZ + 1];

	if (!id || artifs_oid_is_zero(id))
		strcpy(buf, "(none)");
	else
		snprintf(buf, 13, "%.12s", artifs_oid_fmt(hex, id));
}

/* ---- publishing ---- */

static char *cfg_or(artifs_store *s, const char *key)
{
	char *v = NULL;

	return cli_config_get(s, key, &v) == 0 ? v : NULL;
}

/* NULL members when gitops.url is unset; free with gitops_config_release. */
int cli_gitops_config(artifs_store *s, artifs_gitops_config *c, char **wd)
{
	char *url = NULL;
	int rc;

	memset(c, 0, sizeof(*c));
	*wd = NULL;
	/* unset: no publishing; unreadable: an error, never a silent skip */
	if ((rc = cli_config_get(s, "gitops.url", &url)) == ARTIFS_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	c->url = url;
	c->branch = cfg_or(s, "gitops.branch");
	c->path_tmpl = cfg_or(s, "gitops.path");
	c->author = cfg_or(s, "gitops.author");
	c->push = cli_config_bool(s, "gitops.push", 1);
	if (asprintf(wd, "%s/gitops", artifs_store_path(s)) < 0) {
		*wd = NULL;
		return artifs_error(-ENOMEM, "out of memory");
	}
	c->workdir = *wd;
	return 1;
}

void cli_gitops_config_release(artifs_gitops_config *c, char *wd)
{
	free((char *)c->url);
	free((char *)c->branch);
	free((char *)c->path_tmpl);
	free((char *)c->author);
	free(wd);
}

/*
 * Write ENV's pin for repo to the GitOps repository.  Returns 0 (or 1 when
 * publishing is not configured); *gj gets a JSON record of the outcome.
 */
int cli_gitops_publish(artifs_store *s, const char *repo, const char *env, const char *reason,
	const char *op, json_t **gj)
{
	artifs_gitops_config c;
	artifs_commit *cm = NULL;
	artifs_pin pin = { 0 };
	artifs_ref ref;
	MDB_txn *txn = NULL;
	json_t *tags = NULL;
	const char **tagv = NULL;
	char *wd = NULL, *msg = NULL, commit_hex[ARTIFS_OID_HEXSZ + 1], tree_hex[ARTIFS_OID_HEXSZ + 1];
	char git_id[41] = "", user[256], when[32];
	int rc;

	*gj = NULL;
	if ((rc = cli_gitops_config(s, &c, &wd)) <= 0)
		return rc < 0 ? rc : 1;
	if ((rc = artifs_rtxn_begin(s, &txn)) || (rc = artifs_ref_get(&ref, s, txn, repo, env)) ||
	    (rc = artifs_commit_load(&cm, s, txn, &ref.target)))
		goto done;
	tags = cli_commit_tags(s, txn, repo, &ref.target, NULL);
	if (json_array_size(tags) && !(tagv = calloc(json_array_size(tags), sizeof(*tagv)))) {
		rc = artifs_error(-ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < json_array_size(tags); i++)
		tagv[i] = json_string_value(json_array_get(tags, i));
	snprintf(user, sizeof(user), "%s", artifs_author_default());
	pin.repo = repo;
	pin.env = env;
	pin.commit = artifs_oid_fmt(commit_hex, &ref.target);
	pin.tree = artifs_oid_fmt(tree_hex, &cm->tree);
	pin.tags = tagv;
	pin.ntags = json_array_size(tags);
	pin.message = reason ? reason : "";
	pin.promoted_by = user;
	pin.promoted_at = ref.time;
	cli_time(when, sizeof(when), ref.time);
	if (asprintf(&msg, "%s %s %s %s: %.12s%s%s%s\n\n%s%s%s: %s\nby %s at %s\n",
			!strcmp(op, "rollback") ? "roll back" : "promote", repo,
			!strcmp(op, "rollback") ? env : "to", !strcmp(op, "rollback") ? "to" : env, commit_hex,
			pin.ntags ? " (" : "", pin.ntags ? tagv[0] : "", pin.ntags ? ")" : "",
			reason && *reason ? reason : "", reason && *reason ? "\n\n" : "",
			"artifs commit", commit_hex, user, when) < 0) {
		msg = NULL;
		rc = artifs_error(-ENOMEM, "out of memory");
		goto done;
	}
	mdb_txn_abort(txn);
	txn = NULL;
	rc = artifs_gitops_publish(&c, &pin, msg, git_id);
	*gj = json_object();
	json_object_set_new(*gj, "url", json_string(c.url));
	if (rc) {
		json_object_set_new(*gj, "ok", json_false());
		json_object_set_new(*gj, "error", cli_json_str(artifs_error_last()));
	} else {
		json_object_set_new(*gj, "ok", json_true());
		json_object_set_new(*gj, "git_commit", json_string(git_id));
	}
done:
	if (txn)
		mdb_txn_abort(txn);
	free(msg);
	free(tagv);
	json_decref(tags);
	artifs_commit_free(cm);
	cli_gitops_config_release(&c, wd);
	return rc;
}

/* ---- moving an environment ---- */

/* 0 moved (or already there: *moved 0), else an exit status already reported. */
int cli_env_move(artifs_store *s, const cli_move *m, int *moved)
{
	artifs_oid old = { { 0 } };
	artifs_ref ref;
	MDB_txn *txn = NULL;
	json_t *doc = NULL, *pre = NULL, *post = NULL, *det = NULL, *note = NULL, *gj = NULL;
	char *dettext = NULL, *notetext = NULL, a[16], b[16], hex[ARTIFS_OID_HEXSZ + 1];
	cli_hook_info h = { 0 };
	uint64_t seq = 0;
	int rc, exists, pub = 1, pre_hooks, post_hooks;

	*moved = 0;
	if (!artifs_ref_name_valid(m->env))
		return cli_fail(NULL, "invalid environment name '%s' (letters, digits, '.', '_', '-')", m->env);
	if ((rc = artifs_rtxn_begin(s, &txn)) || (rc = artifs_repo_check(s, txn, m->repo)))
		goto fail_rc;
	rc = artifs_ref_get(&ref, s, txn, m->repo, m->env);
	if (rc && rc != ARTIFS_ENOTFOUND)
		goto fail_rc;
	exists = rc == 0;
	if (exists && ref.kind != ARTIFS_REF_ENV) {
		rc = cli_fail("branches, tags and environments share one namespace; pick another name",
			"'%s' is a %s of '%s', not an environment", m->env, artifs_ref_kind_name(ref.kind), m->repo);
		goto out;
	}
	if (exists)
		old = ref.target;
	if (exists && !artifs_oid_cmp(&old, &m->target)) {
		fprintf(stderr, "artifs: %s@%s is already at %s; nothing to do\n", m->repo, m->env,
			artifs_oid_fmt(hex, &m->target));
		printf("%s\n", hex);
		rc = EXIT_OK;
		goto out;
	}
	h.event = "pre-promote";
	h.repo = m->repo;
	h.op = m->op;
	h.ref = m->env;
	h.env = m->env;
	h.old_id = &old;
	h.new_id = &m->target;
	h.reason = m->reason;
	h.no_verify = m->no_verify;
	/* no hook: no input to prepare (a diff of the two versions); < 0: firing reports it */
	pre_hooks = m->no_verify ? 0 : artifs_hooks_exist(artifs_store_path(s), "pre-promote");
	post_hooks = artifs_hooks_exist(artifs_store_path(s), "post-promote");
	if (pre_hooks || post_hooks)
		doc = cli_hook_doc(s, txn, &h);
	mdb_txn_abort(txn);
	txn = NULL;
	if (pre_hooks && (rc = cli_hooks_fire(s, "pre-promote", doc, &pre))) {
		rc = rc == ARTIFS_EHOOK && cli_hooks_interrupted() ?
			cli_fail(NULL, "%s of %s to %s interrupted by %s while pre-promote hooks ran; %s "
				"stays at %s", m->op, m->repo, m->env, artifs_hook_signal_name(cli_hooks_interrupted()),
				m->env, exists ? (short_hex(a, &old), a) : "(none)") :
			rc == ARTIFS_EHOOK ?
			cli_fail("fix what the hook reports, or bypass it with --no-verify (recorded in the history)",
				"%s of %s to %s refused by a pre-promote hook; %s stays at %s", m->op, m->repo,
				m->env, m->env, exists ? (short_hex(a, &old), a) : "(none)") :
			cli_fail_rc(rc);
		goto out;
	}
	det = json_object();
	json_object_set_new(det, "environment", json_string(m->env));
	if (m->rev)
		json_object_set_new(det, "rev", cli_json_str(m->rev));
	json_object_set_new(det, "no_verify", json_boolean(m->no_verify));
	json_object_set_new(det, "hooks", pre ? json_incref(pre) : json_array());
	dettext = json_dumps(det, JSON_COMPACT | JSON_PRESERVE_ORDER);
	for (int tries = 0;; tries++) {
		MDB_txn *w = NULL;
		if ((rc = artifs_wtxn_begin(s, 1 << 20, &w)))
			goto fail_rc;
		rc = artifs_ref_update_ex(s, w, m->repo, m->env, ARTIFS_REF_ENV, exists ? &old : NULL,
			&m->target, artifs_author_default(), m->reason && *m->reason ? m->reason : m->op,
			m->op, dettext, &seq);
		if (rc) {
			mdb_txn_abort(w);
		} else {
			rc = artifs_txn_commit(w);
		}
		if (rc == MDB_MAP_FULL && tries < 3 && !artifs_store_grow(s, 16 << 20))
			continue;
		break;
	}
	if (rc == ARTIFS_ESTALE || (rc == ARTIFS_EEXISTS && !exists)) {
		rc = cli_fail("another promotion of the same environment won the race; check 'artifs envs' "
			"and run again if still wanted", "%s of %s to %s lost a race: %s moved meanwhile; "
			"nothing was changed", m->op, m->repo, m->env, m->env);
		goto out;
	}
	if (rc)
		goto fail_rc;
	*moved = 1;
	short_hex(a, &old);
	short_hex(b, &m->target);
	fprintf(stderr, "%s %s: %s -> %s%s\n", m->repo, m->env, a, b, m->no_verify ? " (hooks bypassed)" : "");
	printf("%s\n", artifs_oid_fmt(hex, &m->target));
	fflush(stdout);

	/* after the move: post hooks and the GitOps pin, then one note with both */
	if (post_hooks) {
		json_object_set_new(doc, "event", json_string("post-promote"));
		if ((rc = cli_hooks_fire(s, "post-promote", doc, &post)) && rc != ARTIFS_EHOOK)
			cli_warn("post-promote hooks could not run: %s", artifs_error_last());
		else if (rc && cli_hooks_interrupted())
			cli_warn("post-promote hooks were interrupted; the promotion stands (recorded in "
				"the history)");
		else if (rc)
			cli_warn("a post-promote hook failed; the promotion stands (recorded in the history)");
	}
	if (m->publish) {
		pub = cli_gitops_publish(s, m->repo, m->env, m->reason, m->op, &gj);
		if (pub < 0)
			fprintf(stderr, "artifs: error: %s@%s now points at %s in the store, but publishing the "
				"GitOps pin failed: %s\nhint: the git repository still pins the previous version; "
				"fix the cause and run 'artifs gitops publish %s %s'\n", m->repo, m->env, b,
				artifs_error_last(), m->repo, m->env);
		else if (pub == 0)
			fprintf(stderr, "published %s@%s to %s (git %.12s)\n", m->repo, m->env,
				json_string_value(json_object_get(gj, "url")),
				json_string_value(json_object_get(gj, "git_commit")));
	}
	note = json_object();
	json_object_set_new(note, "hooks", post ? json_incref(post) : json_array());
	if (gj)
		json_object_set(note, "gitops", gj);
	notetext = json_dumps(note, JSON_COMPACT | JSON_PRESERVE_ORDER);
	{
		MDB_txn *w = NULL;
		if ((rc = artifs_wtxn_begin(s, 1 << 20, &w)) == 0) {
			if ((rc = artifs_ref_note_put(s, w, m->repo, m->env, seq, notetext)))
				mdb_txn_abort(w);
			else
				rc = artifs_txn_commit(w);
		}
		if (rc)
			cli_warn("could not record the post-promote results: %s", artifs_error_last());
	}
	rc = pub < 0 ? EXIT_FAIL : EXIT_OK;
	goto out;
fail_rc:
	rc = cli_fail_rc(rc);
out:
	if (txn)
		mdb_txn_abort(txn);
	free(dettext);
	free(notetext);
	json_decref(doc);
	json_decref(pre);
	json_decref(post);
	json_decref(det);
	json_decref(note);
	json_decref(gj);
	return rc;
}

static int parse_repo(const char *cmd, const char *arg, cli_spec *sp)
{
	int rc = cli_spec_parse(sp, arg);

	if (rc)
		return cli_fail_rc(rc);
	if (sp->has_ref || sp->has_path) {
		cli_spec_release(sp);
		return cli_usage(cmd, "give the repository alone (datasets/NAME or models/NAME), not '%s'", arg);
	}
	return 0;
}

CLI_CMD(promote)
{
	static const struct option opts[] = {
		{ "message", required_argument, NULL, 'm' },
		{ "no-verify", no_argument, NULL, 'n' },
		{ 0 },
	};
	cli_move m = { 0 };
	artifs_store *s = NULL;
	MDB_txn *txn = NULL;
	cli_spec sp = { 0 };
	int o, rc, moved;

	m.op = "promote";
	m.publish = 1;
	while ((o = getopt_long(argc, argv, "m:", opts, NULL)) != -1) {
		if (o == 'm')
			m.reason = optarg;
		else if (o == 'n')
			m.no_verify = 1;
		else
			return cli_usage("promote", "unknown option");
	}
	if (argc - optind != 3)
		return cli_usage("promote", "usage: artifs promote REPO REV ENV [-m REASON] [--no-verify]");
	if ((rc = parse_repo("promote", argv[optind], &sp)))
		return rc;
	m.repo = sp.repo;
	m.rev = argv[optind + 1];
	m.env = argv[optind + 2];
	if ((rc = cli_open_store(&s, 0)))
		goto out;
	if ((rc = artifs_rtxn_begin(s, &txn)) || (rc = artifs_repo_check(s, txn, m.repo)) ||
	    (rc = artifs_rev_parse(&m.target, s, txn, m.repo, m.rev))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (artifs_oid_is_zero(&m.target)) {
		rc = cli_fail(NULL, "'%s' of '%s' has no commit yet", m.rev, m.repo);
		goto out;
	}
	mdb_txn_abort(txn);
	txn = NULL;
	rc = cli_env_move(s, &m, &moved);
out:
	if (txn)
		mdb_txn_abort(txn);
	cli_spec_release(&sp);
	artifs_store_free(s);
	return rc;
}

/* ---- rollback: the version before the current one, from the history ---- */

struct rb {
	artifs_oid cur, found;
	int done;
};

static int is_op(const artifs_reflog_entry *e, const char *op)
{
	json_t *d;
	json_error_t err;
	int r = 0;

	if (!e->details)
		return 0;
	if ((d = json_loadb(e->details, e->details_len, 0, &err))) {
		json_t *v = json_object_get(d, "op");
		r = json_is_string(v) && !strcmp(json_string_value(v), op);
		json_decref(d);
	}
	return r;
}

static int rb_cb(const artifs_reflog_entry *e, void *ctx)
{
	struct rb *r = ctx;

	/*
	 * The newest move that brought ENV to its current version and was not
	 * itself a rollback: its 'from' is where to go.  Skipping rollbacks
	 * makes a second rollback go further back instead of undoing the first.
	 */
	if (artifs_oid_cmp(&e->new_id, &r->cur) || is_op(e, "rollback"))
		return 0;
	r->found = e->old_id;
	r->done = 1;
	return 1;
}

CLI_CMD(rollback)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "message", required_argument, NULL, 'm' },
		{ "no-verify", no_argument, NULL, 'n' },
		{ 0 },
	};
	cli_move m = { 0 };
	struct rb r = { 0 };
	artifs_store *s = NULL;
	MDB_txn *txn = NULL;
	artifs_ref ref;
	cli_spec sp = { 0 };
	const char *to = NULL;
	int o, rc, moved;

	m.op = "rollback";
	m.publish = 1;
	while ((o = getopt_long(argc, argv, "m:", opts, NULL)) != -1) {
		if (o == 't')
			to = optarg;
		else if (o == 'm')
			m.reason = optarg;
		else if (o == 'n')
			m.no_verify = 1;
		else
			return cli_usage("rollback", "unknown option");
	}
	if (argc - optind != 2)
		return cli_usage("rollback", "usage: artifs rollback REPO ENV [--to REV] [-m REASON] [--no-verify]");
	if ((rc = parse_repo("rollback", argv[optind], &sp)))
		return rc;
	m.repo = sp.repo;
	m.env = argv[optind + 1];
	m.rev = to;
	if ((rc = cli_open_store(&s, 0)))
		goto out;
	if ((rc = artifs_rtxn_begin(s, &txn)) || (rc = artifs_repo_check(s, txn, m.repo))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	rc = artifs_ref_get(&ref, s, txn, m.repo, m.env);
	if (rc == ARTIFS_ENOTFOUND || (!rc && ref.kind != ARTIFS_REF_ENV)) {
		rc = cli_fail("environments are made by 'artifs promote'", "'%s' is not an environment of '%s'",
			m.env, m.repo);
		goto out;
	} else if (rc) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (to) {
		if ((rc = artifs_rev_parse(&m.target, s, txn, m.repo, to))) {
			rc = cli_fail_rc(rc);
			goto out;
		}
	} else {
		r.cur = ref.target;
		if ((rc = artifs_reflog_foreach(s, txn, m.repo, m.env, rb_cb, &r)) < 0) {
			rc = cli_fail_rc(rc);
			goto out;
		}
		if (!r.done || artifs_oid_is_zero(&r.found)) {
			rc = cli_fail("pass --to REV to choose a version", "%s@%s has no earlier version to roll back to",
				m.repo, m.env);
			goto out;
		}
		m.target = r.found;
	}
	if (!m.reason)
		m.reason = "rollback";
	mdb_txn_abort(txn);
	txn = NULL;
	rc = cli_env_move(s, &m, &moved);
out:
	if (txn)
		mdb_txn_abort(txn);
	cli_spec_release(&sp);
	artifs_store_free(s);
	return rc;
}

/* ---- history and envs ---- */

struct hist {
	artifs_store *s;
	MDB_txn *txn;
	const char *repo;
	const char *ref;
	json_t *arr;
};

static int hist_cb(const artifs_reflog_entry *e, void *ctx)
{
	struct hist *h = ctx;
	json_t *o = json_object(), *d = NULL, *hooks = json_array(), *v;
	json_error_t err;
	const char *note;
	size_t nlen;
	char date[32];

	if (e->details)
		d = json_loadb(e->details, e->details_len, 0, &err);
	json_object_set_new(o, "seq", json_integer((json_int_t)e->seq));
	json_object_set_new(o, "time", json_integer(e->time));
	json_object_set_new(o, "date", json_string(cli_time(date, sizeof(date), e->time)));
	json_object_set_new(o, "ref", json_string(h->ref));
	json_object_set_new(o, "op", json_is_string(v = json_object_get(d, "op")) ? json_incref(v) :
		json_string("move"));
	json_object_set_new(o, "from", artifs_oid_is_zero(&e->old_id) ? json_null() : cli_json_oid(&e->old_id));
	json_object_set_new(o, "to", artifs_oid_is_zero(&e->new_id) ? json_null() : cli_json_oid(&e->new_id));
	{
		char *a = strndup(e->author, e->author_len), *msg = strndup(e->message, e->message_len);
		json_object_set_new(o, "author", cli_json_str(a ? a : ""));
		json_object_set_new(o, "reason", cli_json_str(msg ? msg : ""));
		free(a);
		free(msg);
	}
	json_object_set_new(o, "user", json_is_string(v = json_object_get(d, "user")) ? json_incref(v) : json_null());
	json_object_set_new(o, "host", json_is_string(v = json_object_get(d, "host")) ? json_incref(v) : json_null());
	json_object_set_new(o, "no_verify", json_boolean(json_is_true(json_object_get(d, "no_verify"))));
	json_object_set_new(o, "time_ns", json_is_integer(v = json_object_get(d, "time_ns")) ? json_incref(v) :
		json_integer((json_int_t)e->time * 1000000000));
	if (json_is_array(v = json_object_get(d, "hooks")))
		json_array_extend(hooks, v);
	if (!artifs_ref_note_get(h->s, h->txn, h->repo, h->ref, e->seq, &note, &nlen)) {
		json_t *n = json_loadb(note, nlen, 0, &err);
		if (json_is_array(v = json_object_get(n, "hooks")))
			json_array_extend(hooks, v);
		if ((v = json_object_get(n, "gitops")))
			json_object_set(o, "gitops", v);
		if (json_is_true(json_object_get(n, "no_verify")))
			json_object_set_new(o, "no_verify", json_true());
		json_decref(n);
	}
	json_object_set_new(o, "hooks", hooks);
	json_array_append_new(h->arr, o);
	json_decref(d);
	return 0;
}

struct refnames {
	char **v;
	size_t n;
	int all;
};

static int names_cb(const char *name, const artifs_ref *ref, void *ctx)
{
	struct refnames *r = ctx;
	char **p;

	if (!r->all && ref->kind != ARTIFS_REF_ENV)
		return 0;
	if (!(p = realloc(r->v, (r->n + 1) * sizeof(*p))) || !(p[r->n] = strdup(name)))
		return artifs_error(-ENOMEM, "out of memory");
	r->v = p;
	r->n++;
	return 0;
}

static int log_name_cb(const char *name, void *ctx)
{
	return names_cb(name, &(artifs_ref){ .kind = ARTIFS_REF_ENV }, ctx);
}

static int by_time_desc(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	json_int_t tx = json_integer_value(json_object_get(x, "time_ns"));
	json_int_t ty = json_integer_value(json_object_get(y, "time_ns"));

	if (tx != ty)
		return tx < ty ? 1 : -1;
	return strcmp(json_string_value(json_object_get(x, "ref")), json_string_value(json_object_get(y, "ref")));
}

CLI_CMD(history)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "all", no_argument, NULL, 'a' },
		{ 0 },
	};
	struct refnames names = { 0 };
	struct hist h = { 0 };
	artifs_store *s = NULL;
	cli_spec sp = { 0 };
	json_t **sorted = NULL;
	int json = 0, o, rc;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'j')
			json = 1;
		else if (o == 'a')
			names.all = 1;
		else
			return cli_usage("history", "unknown option");
	}
	if (argc - optind < 1 || argc - optind > 2)
		return cli_usage("history", "usage: artifs history REPO [ENV] [--all] [--json]");
	if ((rc = parse_repo("history", argv[optind], &sp)))
		return rc;
	if ((rc = cli_open_store(&s, 1)))
		goto out;
	h.s = s;
	h.repo = sp.repo;
	h.arr = json_array();
	if ((rc = artifs_rtxn_begin(s, &h.txn)) || (rc = artifs_repo_check(s, h.txn, sp.repo))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (argc - optind == 2) {
		/* a deleted branch has no ref but still its log */
		artifs_ref ref;
		const char *env = argv[optind + 1];
		if ((rc = artifs_ref_get(&ref, s, h.txn, sp.repo, env)) && rc != ARTIFS_ENOTFOUND) {
			rc = cli_fail_rc(rc);
			goto out;
		}
		names_cb(env, &(artifs_ref){ .kind = ARTIFS_REF_ENV }, &names);
	} else if (names.all) {
		/* every log, deleted refs' too */
		if ((rc = artifs_reflog_names(s, h.txn, sp.repo, log_name_cb, &names))) {
			rc = cli_fail_rc(rc);
			goto out;
		}
	} else if ((rc = artifs_ref_foreach(s, h.txn, sp.repo, names_cb, &names))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	for (size_t i = 0; i < names.n; i++) {
		h.ref = names.v[i];
		if ((rc = artifs_reflog_foreach(s, h.txn, sp.repo, names.v[i], hist_cb, &h))) {
			rc = cli_fail_rc(rc);
			goto out;
		}
	}
	if (argc - optind == 2 && !json_array_size(h.arr)) {
		rc = cli_fail(NULL, "no ref '%s' in '%s'", argv[optind + 1], sp.repo);
		goto out;
	}
	/* every ref's moves, newest first */
	if (json_array_size(h.arr)) {
		size_t n = json_array_size(h.arr);
		json_t *arr = json_array();
		sorted = malloc(n * sizeof(*sorted));
		for (size_t i = 0; sorted && i < n; i++)
			sorted[i] = json_array_get(h.arr, i);
		if (sorted) {
			qsort(sorted, n, sizeof(*sorted), by_time_desc);
			for (size_t i = 0; i < n; i++)
				json_array_append(arr, sorted[i]);
		}
		json_decref(h.arr);
		h.arr = arr;
	}
	if (json) {
		rc = cli_json_print(h.arr);
		h.arr = NULL;
		goto out;
	}
	for (size_t i = 0; i < json_array_size(h.arr); i++) {
		json_t *e = json_array_get(h.arr, i), *hooks = json_object_get(e, "hooks"), *x;
		const char *from = json_string_value(json_object_get(e, "from"));
		size_t k;
		const char *to = json_string_value(json_object_get(e, "to"));
		printf("%s  %-12s %-8s %.12s -> %.12s  %s  %s", json_string_value(json_object_get(e, "date")),
			json_string_value(json_object_get(e, "ref")), json_string_value(json_object_get(e, "op")),
			from ? from : "(none)", to ? to : "(none)",
			json_string_value(json_object_get(e, "author")),
			json_string_value(json_object_get(e, "reason")));
		if (json_is_true(json_object_get(e, "no_verify")))
			printf("  [hooks bypassed: --no-verify]");
		json_array_foreach(hooks, k, x)
			printf("  [%s %s: %s]", json_string_value(json_object_get(x, "event")),
				json_string_value(json_object_get(x, "hook")),
				json_is_true(json_object_get(x, "ok")) ? "ok" :
				json_is_true(json_object_get(x, "timed_out")) ? "TIMED OUT" : "FAILED");
		if ((x = json_object_get(e, "gitops")))
			printf("  [gitops: %s]", json_is_true(json_object_get(x, "ok")) ?
				"published" : "FAILED");
		putchar('\n');
	}
	rc = EXIT_OK;
out:
	free(sorted);
	for (size_t i = 0; i < names.n; i++)
		free(names.v[i]);
	free(names.v);
	json_decref(h.arr);
	if (h.txn)
		mdb_txn_abort(h.txn);
	cli_spec_release(&sp);
	artifs_store_free(s);
	return rc;
}

struct envs {
	artifs_store *s;
	MDB_txn *txn;
	const char *repo;
	json_t *arr;
};

static int envs_cb(const char *name, const artifs_ref *ref, void *ctx)
{
	struct envs *e = ctx;
	json_t *o;
	char date[32];

	if (ref->kind != ARTIFS_REF_ENV)
		return 0;
	o = json_object();
	json_object_set_new(o, "name", json_string(name));
	json_object_set_new(o, "commit", cli_json_oid(&ref->target));
	json_object_set_new(o, "tags", cli_commit_tags(e->s, e->txn, e->repo, &ref->target, NULL));
	json_object_set_new(o, "updated", json_integer(ref->time));
	json_object_set_new(o, "date", json_string(cli_time(date, sizeof(date), ref->time)));
	json_object_set_new(o, "moves", json_integer((json_int_t)ref->seq));
	json_array_append_new(e->arr, o);
	return 0;
}

CLI_CMD(envs)
{
	struct envs e = { 0 };
	cli_spec sp = { 0 };
	int json = 0, rc, i, repo_at = 0;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (!repo_at && argv[i][0] != '-')
			repo_at = i;
		else
			return cli_usage("envs", "usage: artifs envs REPO [--json]");
	}
	if (!repo_at)
		return cli_usage("envs", "usage: artifs envs REPO [--json]");
	if ((rc = parse_repo("envs", argv[repo_at], &sp)))
		return rc;
	if ((rc = cli_open_store(&e.s, 1)))
		goto out;
	e.repo = sp.repo;
	e.arr = json_array();
	if ((rc = artifs_rtxn_begin(e.s, &e.txn)) || (rc = artifs_repo_check(e.s, e.txn, sp.repo)) ||
	    (rc = artifs_ref_foreach(e.s, e.txn, sp.repo, envs_cb, &e))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (json) {
		rc = cli_json_print(e.arr);
		e.arr = NULL;
		goto out;
	}
	for (size_t k = 0; k < json_array_size(e.arr); k++) {
		json_t *o = json_array_get(e.arr, k), *tags = json_object_get(o, "tags");
		printf("%-14s %.12s  %s  %lld moves", json_string_value(json_object_get(o, "name")),
			json_string_value(json_object_get(o, "commit")),
			json_string_value(json_object_get(o, "date")),
			(long long)json_integer_value(json_object_get(o, "moves")));
		for (size_t t = 0; t < json_array_size(tags); t++)
			printf("%s%s", t ? ", " : "  tags: ", json_string_value(json_array_get(tags, t)));
		putchar('\n');
	}
	rc = EXIT_OK;
out:
	json_decref(e.arr);
	if (e.txn)
		mdb_txn_abort(e.txn);
	cli_spec_release(&sp);
	artifs_store_free(e.s);
	return rc;
}
