/*
 * cmd_label.c - 'artifs label import|set|rm|show|stats'.
 */
#include "cli.h"
#include "commit.h"
#include "error.h"
#include "label.h"
#include "ref.h"
#include "tree.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LABEL_USAGE \
	"usage: artifs label import REPO[@BRANCH] FILE [-m MSG] [--format csv|jsonl] [--replace]\n" \
	"       artifs label set REPO[@BRANCH] PATH KEY=VALUE... [-m MSG]\n" \
	"       artifs label rm REPO[@BRANCH] PATH KEY... [-m MSG]\n" \
	"       artifs label show REPO@REF[:PATH] [--json]\n" \
	"       artifs label stats REPO@REF[:PATH] [--json]"

int cli_label_format(const char *s, enum artifs_label_format *out)
{
	if (!strcmp(s, "csv"))
		*out = ARTIFS_LABELS_CSV;
	else if (!strcmp(s, "jsonl") || !strcmp(s, "ndjson") || !strcmp(s, "json"))
		*out = ARTIFS_LABELS_JSONL;
	else
		return -1;
	return 0;
}

int cli_label_file(artifs_label_edits *e, const char *file, enum artifs_label_format fmt)
{
	if (!strcmp(file, "-") && fmt == ARTIFS_LABELS_AUTO)
		return artifs_error(ARTIFS_EINVAL, "reading labels from stdin needs --format csv or jsonl");
	e->source = strcmp(file, "-") ? file : "<stdin>";
	return artifs_label_file_parse(e, file, strcmp(file, "-") ? NULL : stdin, fmt);
}

/* Commit edits to a branch and print the resulting head. */
static int commit_edits(const cli_spec *sp, artifs_label_edits *e, const char *msg,
	const char *author, int no_verify)
{
	artifs_label_commit_opts o = { msg, author, cli_pre_commit_cb, NULL };
	cli_commit_hooks hooks = { 0 };
	artifs_oid old = { { 0 } };
	artifs_label_commit_stats st;
	artifs_store *s = NULL;
	artifs_oid id;
	char hex[ARTIFS_OID_HEXSZ + 1];
	double t0 = cli_now();
	int rc;

	if (sp->has_path)
		return cli_usage("label", "give REPO[@BRANCH] without a path; the path is its own argument");
	if ((rc = cli_open_store(&s, 0)))
		return rc;
	hooks.s = s;
	hooks.repo = sp->repo;
	hooks.branch = sp->ref;
	hooks.op = "label";
	hooks.no_verify = no_verify;
	o.move_ctx = &hooks;
	{
		MDB_txn *txn;
		artifs_ref ref;
		if (!artifs_rtxn_begin(s, &txn)) {
			if (!artifs_ref_get(&ref, s, txn, sp->repo, sp->ref))
				old = ref.target;
			mdb_txn_abort(txn);
		}
	}
	rc = artifs_label_commit(&id, s, sp->repo, sp->ref, e, &o, &st);
	if (rc) {
		artifs_store_free(s);
		return cli_fail_rc(rc);
	}
	printf("%s\n", artifs_oid_fmt(hex, &id));
	fflush(stdout);
	if (st.created)
		cli_post_commit(&hooks, &old, &id);
	artifs_store_free(s);
	if (!st.created)
		fprintf(stderr, "artifs: nothing changed; %s@%s stays at %s\n", sp->repo, sp->ref, hex);
	else if (isatty(STDERR_FILENO) || getenv("ARTIFS_VERBOSE"))
		fprintf(stderr, "relabelled %s@%s: %llu files changed, %llu labelled, in %.2fs\n",
			sp->repo, sp->ref, (unsigned long long)st.files_changed,
			(unsigned long long)st.labelled, cli_now() - t0);
	return EXIT_OK;
}

static int label_import(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "message", required_argument, NULL, 'm' },
		{ "format", required_argument, NULL, 'f' },
		{ "replace", no_argument, NULL, 'r' },
		{ "author", required_argument, NULL, 'a' },
		{ "no-verify", no_argument, NULL, 'V' },
		{ 0 },
	};
	enum artifs_label_format fmt = ARTIFS_LABELS_AUTO;
	int no_verify = 0;
	artifs_label_edits e;
	cli_spec sp = { 0 };
	const char *msg = NULL, *author = NULL;
	char defmsg[512];
	int o, rc;

	artifs_label_edits_init(&e);
	while ((o = getopt_long(argc, argv, "m:", opts, NULL)) != -1) {
		if (o == 'm') {
			msg = optarg;
		} else if (o == 'V') {
			no_verify = 1;
		} else if (o == 'a') {
			author = optarg;
		} else if (o == 'r') {
			e.replace = 1;
		} else if (o == 'f') {
			if (cli_label_format(optarg, &fmt))
				return cli_usage("label", "--format is csv or jsonl, not '%s'", optarg);
		} else {
			return cli_usage("label", "unknown option");
		}
	}
	if (argc - optind != 2)
		return cli_usage("label", LABEL_USAGE);
	if ((rc = cli_spec_parse(&sp, argv[optind]))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if ((rc = cli_label_file(&e, argv[optind + 1], fmt))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (!msg) {
		snprintf(defmsg, sizeof(defmsg), "label import %s", e.source);
		msg = defmsg;
	}
	rc = commit_edits(&sp, &e, msg, author, no_verify);
out:
	cli_spec_release(&sp);
	artifs_label_edits_release(&e);
	return rc;
}

/* 'label set' (set = 1) and 'label rm'. */
static int label_edit(int argc, char **argv, int set)
{
	static const struct option opts[] = {
		{ "message", required_argument, NULL, 'm' },
		{ "author", required_argument, NULL, 'a' },
		{ "no-verify", no_argument, NULL, 'V' },
		{ 0 },
	};
	artifs_label_edits e;
	cli_spec sp = { 0 };
	const char *msg = NULL, *author = NULL, *path;
	char defmsg[512];
	int o, rc, no_verify = 0;

	artifs_label_edits_init(&e);
	while ((o = getopt_long(argc, argv, "m:", opts, NULL)) != -1) {
		if (o == 'm')
			msg = optarg;
		else if (o == 'a')
			author = optarg;
		else if (o == 'V')
			no_verify = 1;
		else
			return cli_usage("label", "unknown option");
	}
	if (argc - optind < 3)
		return cli_usage("label", LABEL_USAGE);
	if ((rc = cli_spec_parse(&sp, argv[optind]))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	path = argv[optind + 1];
	for (int i = optind + 2; i < argc; i++) {
		const char *a = argv[i], *eq = strchr(a, '=');
		size_t klen = set ? (eq ? (size_t)(eq - a) : 0) : strlen(a);
		if (set && !eq) {
			rc = cli_usage("label", "'label set' wants KEY=VALUE, got '%s'", a);
			goto out;
		}
		if (!set && eq) {
			rc = cli_usage("label", "'label rm' wants KEY, got '%s'", a);
			goto out;
		}
		if ((rc = artifs_label_edits_add(&e, path, strlen(path), a, klen, set ? eq + 1 : NULL,
				set ? strlen(eq + 1) : 0, 0))) {
			rc = cli_fail_rc(rc);
			goto out;
		}
	}
	if (!msg) {
		snprintf(defmsg, sizeof(defmsg), "label %s %s", set ? "set" : "rm", path);
		msg = defmsg;
	}
	rc = commit_edits(&sp, &e, msg, author, no_verify);
out:
	cli_spec_release(&sp);
	artifs_label_edits_release(&e);
	return rc;
}

/* ---- show ---- */

struct show {
	json_t *arr;
	size_t n;
};

static json_t *labels_json(const artifs_label *l, size_t n)
{
	json_t *o = json_object();

	for (size_t i = 0; i < n; i++) {
		char *k = strndup(l[i].key, l[i].key_len);
		json_object_set_new(o, k, json_stringn(l[i].value, l[i].value_len));
		free(k);
	}
	return o;
}

static int show_cb(const char *path, size_t path_len, const artifs_label *l, size_t n, void *ctx)
{
	struct show *sh = ctx;

	(void)path_len;
	sh->n++;
	if (sh->arr) {
		json_t *o = json_object();
		json_object_set_new(o, "path", cli_json_str(path));
		json_object_set_new(o, "labels", labels_json(l, n));
		json_array_append_new(sh->arr, o);
		return 0;
	}
	fputs(path, stdout);
	for (size_t i = 0; i < n; i++)
		printf("%c%.*s=%.*s", i ? ' ' : '\t', (int)l[i].key_len, l[i].key,
			(int)l[i].value_len, l[i].value);
	putchar('\n');
	return 0;
}

/* Open the store, resolve REPO@REF:PATH to a tree entry. */
static int open_spec(const char *arg, cli_spec *sp, artifs_store **s, MDB_txn **txn,
	artifs_tree_entry *e)
{
	artifs_commit *c = NULL;
	artifs_oid id;
	int rc;

	if ((rc = cli_spec_parse(sp, arg)))
		return cli_fail_rc(rc);
	if ((rc = cli_open_store(s, 1)))
		return rc;
	if ((rc = artifs_rtxn_begin(*s, txn)) || (rc = cli_resolve(&id, *s, *txn, sp)) ||
	    (rc = artifs_commit_load(&c, *s, *txn, &id)) ||
	    (rc = artifs_tree_resolve(e, *s, *txn, &c->tree, sp->path))) {
		artifs_commit_free(c);
		return cli_fail_rc(rc);
	}
	artifs_commit_free(c);
	return 0;
}

static const char *clean_path(const char *p)
{
	while (*p == '/')
		p++;
	return p;
}

static int label_show(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ 0 },
	};
	artifs_label l[ARTIFS_LABELS_PER_FILE_MAX];
	struct show sh = { 0 };
	artifs_store *s = NULL;
	MDB_txn *txn = NULL;
	artifs_tree_entry e;
	cli_spec sp = { 0 };
	int json = 0, o, rc;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'j')
			json = 1;
		else
			return cli_usage("label", "unknown option");
	}
	if (argc - optind != 1)
		return cli_usage("label", "usage: artifs label show REPO@REF[:PATH] [--json]");
	if ((rc = open_spec(argv[optind], &sp, &s, &txn, &e)))
		goto out;
	if (e.type == ARTIFS_T_DIR) {
		char *prefix = strdup(clean_path(sp.path));
		size_t pl = prefix ? strlen(prefix) : 0;
		while (pl && prefix[pl - 1] == '/')
			prefix[--pl] = '\0';
		if (json)
			sh.arr = json_array();
		rc = prefix ? artifs_labels_walk(s, txn, &e.id, prefix, show_cb, &sh) :
			artifs_error(-ENOMEM, "out of memory");
		free(prefix);
		if (rc) {
			rc = cli_fail_rc(rc);
			goto out;
		}
		if (json) {
			rc = cli_json_print(sh.arr);
			sh.arr = NULL;
		}
		goto out;
	}
	{
		size_t n = 0;
		if (e.type != ARTIFS_T_FILE) {
			rc = cli_fail(NULL, "'%s' is a symbolic link; only files carry labels", sp.path);
			goto out;
		}
		if (!artifs_oid_is_zero(&e.labels) &&
		    (rc = artifs_labelset_load(l, ARTIFS_LABELS_PER_FILE_MAX, &n, s, txn, &e.labels))) {
			rc = cli_fail_rc(rc);
			goto out;
		}
		if (json) {
			json_t *obj = json_object();
			json_object_set_new(obj, "path", cli_json_str(clean_path(sp.path)));
			json_object_set_new(obj, "labels", labels_json(l, n));
			rc = cli_json_print(obj);
		} else {
			for (size_t i = 0; i < n; i++)
				printf("%.*s=%.*s\n", (int)l[i].key_len, l[i].key, (int)l[i].value_len, l[i].value);
			rc = EXIT_OK;
		}
	}
out:
	json_decref(sh.arr);
	if (txn)
		mdb_txn_abort(txn);
	cli_spec_release(&sp);
	artifs_store_free(s);
	return rc;
}

/* ---- stats ---- */

struct stats {
	artifs_store *s;
	MDB_txn *txn;
	uint64_t files, labelled;
	json_t *keys;	/* KEY -> {"files": n, "values": {VALUE: n}} */
	artifs_label l[ARTIFS_LABELS_PER_FILE_MAX];
};

static int stats_file(struct stats *st, const artifs_oid *labels)
{
	size_t n;
	int rc;

	st->files++;
	if (artifs_oid_is_zero(labels))
		return 0;
	if ((rc = artifs_labelset_load(st->l, ARTIFS_LABELS_PER_FILE_MAX, &n, st->s, st->txn, labels)))
		return rc;
	st->labelled++;
	for (size_t i = 0; i < n; i++) {
		char *k = strndup(st->l[i].key, st->l[i].key_len);
		char *v = strndup(st->l[i].value, st->l[i].value_len);
		json_t *ko, *vals, *cnt;
		if (!k || !v) {
			free(k);
			free(v);
			return artifs_error(-ENOMEM, "out of memory");
		}
		if (!(ko = json_object_get(st->keys, k))) {
			ko = json_object();
			json_object_set_new(ko, "files", json_integer(0));
			json_object_set_new(ko, "values", json_object());
			json_object_set_new(st->keys, k, ko);
		}
		json_integer_set(json_object_get(ko, "files"),
			json_integer_value(json_object_get(ko, "files")) + 1);
		vals = json_object_get(ko, "values");
		if ((cnt = json_object_get(vals, v)))
			json_integer_set(cnt, json_integer_value(cnt) + 1);
		else
			json_object_set_new(vals, v, json_integer(1));
		free(k);
		free(v);
	}
	return 0;
}

static int stats_dir(struct stats *st, const artifs_oid *tree)
{
	artifs_tree_view t;
	int rc;

	if ((rc = artifs_tree_load(&t, st->s, st->txn, tree)))
		return rc;
	for (uint32_t i = 0; i < t.count; i++) {
		artifs_tree_entry e;
		if ((rc = artifs_tree_entry_at(&t, i, &e)))
			return rc;
		if (e.type == ARTIFS_T_DIR)
			rc = stats_dir(st, &e.id);
		else if (e.type == ARTIFS_T_FILE)
			rc = stats_file(st, &e.labels);
		if (rc)
			return rc;
	}
	return 0;
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Keys of a JSON object, sorted; free the array only. */
static const char **sorted_keys(json_t *o, size_t *n)
{
	const char **v = malloc((json_object_size(o) + 1) * sizeof(*v));
	const char *k;
	json_t *x;

	*n = 0;
	if (!v)
		return NULL;
	json_object_foreach(o, k, x)
		v[(*n)++] = k;
	qsort(v, *n, sizeof(*v), str_cmp);
	return v;
}

static int label_stats(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ 0 },
	};
	struct stats st = { 0 };
	artifs_tree_entry e;
	cli_spec sp = { 0 };
	int json = 0, o, rc;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'j')
			json = 1;
		else
			return cli_usage("label", "unknown option");
	}
	if (argc - optind != 1)
		return cli_usage("label", "usage: artifs label stats REPO@REF[:PATH] [--json]");
	st.keys = json_object();
	if ((rc = open_spec(argv[optind], &sp, &st.s, &st.txn, &e)))
		goto out;
	rc = e.type == ARTIFS_T_DIR ? stats_dir(&st, &e.id) :
		e.type == ARTIFS_T_FILE ? stats_file(&st, &e.labels) : 0;
	if (rc) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (json) {
		json_t *root = json_object();
		json_object_set_new(root, "files", json_integer((json_int_t)st.files));
		json_object_set_new(root, "labelled", json_integer((json_int_t)st.labelled));
		json_object_set(root, "keys", st.keys);
		rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_SORT_KEYS) ? EXIT_FAIL : EXIT_OK;
		putchar('\n');
		json_decref(root);
	} else {
		size_t nk, nv;
		const char **keys = sorted_keys(st.keys, &nk);
		for (size_t i = 0; keys && i < nk; i++) {
			json_t *vals = json_object_get(json_object_get(st.keys, keys[i]), "values");
			const char **vs = sorted_keys(vals, &nv);
			for (size_t j = 0; vs && j < nv; j++)
				printf("%s\t%s\t%lld\n", keys[i], vs[j],
					(long long)json_integer_value(json_object_get(vals, vs[j])));
			free(vs);
		}
		free(keys);
		/* stdout stays KEY<TAB>VALUE<TAB>COUNT; the totals are a note */
		fprintf(stderr, "%llu files, %llu labelled\n", (unsigned long long)st.files,
			(unsigned long long)st.labelled);
		rc = EXIT_OK;
	}
out:
	json_decref(st.keys);
	if (st.txn)
		mdb_txn_abort(st.txn);
	cli_spec_release(&sp);
	artifs_store_free(st.s);
	return rc;
}

int cmd_label(int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : "";

	if (!strcmp(sub, "import"))
		return label_import(argc - 1, argv + 1);
	if (!strcmp(sub, "set"))
		return label_edit(argc - 1, argv + 1, 1);
	if (!strcmp(sub, "rm"))
		return label_edit(argc - 1, argv + 1, 0);
	if (!strcmp(sub, "show"))
		return label_show(argc - 1, argv + 1);
	if (!strcmp(sub, "stats"))
		return label_stats(argc - 1, argv + 1);
	return cli_usage("label", "%s%s%s" LABEL_USAGE, *sub ? "unknown subcommand '" : "",
		sub, *sub ? "'\n" : "");
}
