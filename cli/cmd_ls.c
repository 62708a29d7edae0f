#include "cli.h"
#include "codec.h"
#include "commit.h"
#include "error.h"
#include "label.h"
#include "tree.h"

#include <getopt.h>
#include <string.h>

struct ls {
	artifs_store *s;
	MDB_txn *txn;
	int recursive, longfmt;
	json_t *arr;
	artifs_buf path;
	/* --label filters: KEY=VALUE (value NULL: KEY with any value) */
	struct lfilter { const char *key, *value; } *filt;
	size_t nfilt;
	artifs_label l[ARTIFS_LABELS_PER_FILE_MAX];
};

/* 1 if the file's labels carry every filter pair, 0 if not, <0 on error. */
static int matches(struct ls *ls, const artifs_tree_entry *e)
{
	size_t n;
	int rc;

	if (e->type != ARTIFS_T_FILE || artifs_oid_is_zero(&e->labels))
		return 0;
	if ((rc = artifs_labelset_load(ls->l, ARTIFS_LABELS_PER_FILE_MAX, &n, ls->s, ls->txn, &e->labels)))
		return rc;
	for (size_t f = 0; f < ls->nfilt; f++) {
		size_t i, klen = strlen(ls->filt[f].key);
		for (i = 0; i < n; i++)
			if (ls->l[i].key_len == klen && !memcmp(ls->l[i].key, ls->filt[f].key, klen))
				break;
		if (i == n)
			return 0;
		if (ls->filt[f].value && (ls->l[i].value_len != strlen(ls->filt[f].value) ||
				memcmp(ls->l[i].value, ls->filt[f].value, ls->l[i].value_len)))
			return 0;
	}
	return 1;
}

static const char *type_name(uint8_t t)
{
	return t == ARTIFS_T_DIR ? "dir" : t == ARTIFS_T_LINK ? "link" : "file";
}

static void emit(struct ls *l, const artifs_tree_entry *e)
{
	const char *p = (const char *)l->path.ptr;
	char hex[ARTIFS_OID_HEXSZ + 1];

	if (l->arr) {
		json_t *o = json_object();
		json_object_set_new(o, "path", cli_json_str(p));
		json_object_set_new(o, "type", json_string(type_name(e->type)));
		json_object_set_new(o, "executable", json_boolean(e->flags & ARTIFS_F_EXEC));
		json_object_set_new(o, "size", json_integer((json_int_t)e->size));
		json_object_set_new(o, "id", cli_json_oid(&e->id));
		json_array_append_new(l->arr, o);
		return;
	}
	if (l->longfmt) {
		const char *mode = e->type == ARTIFS_T_DIR ? "dr-xr-xr-x" :
			e->type == ARTIFS_T_LINK ? "lrwxrwxrwx" :
			(e->flags & ARTIFS_F_EXEC) ? "-r-xr-xr-x" : "-r--r--r--";
		printf("%s %12llu %s  %s%s\n", mode, (unsigned long long)e->size,
			artifs_oid_fmt(hex, &e->id), p, e->type == ARTIFS_T_DIR ? "/" : "");
	} else {
		printf("%s%s\n", p, e->type == ARTIFS_T_DIR ? "/" : "");
	}
}

static int list(struct ls *l, const artifs_oid *tree)
{
	artifs_tree_view t;
	int rc;

	if ((rc = artifs_tree_load(&t, l->s, l->txn, tree)))
		return rc;
	for (uint32_t i = 0; i < t.count; i++) {
		artifs_tree_entry e;
		size_t old = l->path.len;
		if ((rc = artifs_tree_entry_at(&t, i, &e)))
			return rc;
		if (old)
			artifs_buf_put(&l->path, "/", 1);
		artifs_buf_put(&l->path, e.name, e.name_len);
		artifs_buf_put(&l->path, "", 1);
		l->path.len--;
		if (l->nfilt) {
			if ((rc = matches(l, &e)) < 0)
				return rc;
			if (rc)
				emit(l, &e);
		} else {
			emit(l, &e);
		}
		if (l->recursive && e.type == ARTIFS_T_DIR && (rc = list(l, &e.id)))
			return rc;
		l->path.len = old;
		l->path.ptr[old] = '\0';
	}
	return 0;
}

int cmd_ls(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "recursive", no_argument, NULL, 'r' },
		{ "long", no_argument, NULL, 'l' },
		{ "label", required_argument, NULL, 'L' },
		{ 0 },
	};
	struct ls l = { 0 };
	artifs_commit *c = NULL;
	artifs_tree_entry e;
	cli_spec sp = { 0 };
	artifs_oid id;
	int json = 0, o, rc;

	while ((o = getopt_long(argc, argv, "rl", opts, NULL)) != -1) {
		if (o == 'j')
			json = 1;
		else if (o == 'r')
			l.recursive = 1;
		else if (o == 'l')
			l.longfmt = 1;
		else if (o == 'L') {
			char *eq = strchr(optarg, '=');
			void *p = realloc(l.filt, (l.nfilt + 1) * sizeof(*l.filt));
			if (!p)
				return cli_fail(NULL, "out of memory");
			l.filt = p;
			if (eq)
				*eq = '\0';
			if (!artifs_label_key_valid(optarg, strlen(optarg))) {
				free(l.filt);
				return cli_usage("ls", "--label wants KEY=VALUE or KEY; '%s' is not a label key", optarg);
			}
			l.filt[l.nfilt].key = optarg;
			l.filt[l.nfilt++].value = eq ? eq + 1 : NULL;
			l.recursive = 1;
		} else {
			return cli_usage("ls", "unknown option");
		}
	}
	if (argc - optind != 1) {
		free(l.filt);
		return cli_usage("ls", "usage: artifs ls REPO@REF[:PATH] [-r] [-l] [--label KEY=VALUE]... [--json]");
	}
	if ((rc = cli_spec_parse(&sp, argv[optind])))
		return cli_fail_rc(rc);
	if ((rc = cli_open_store(&l.s, 1)))
		goto out;
	if (json)
		l.arr = json_array();
	artifs_buf_put(&l.path, "", 1);
	l.path.len = 0;
	if ((rc = artifs_rtxn_begin(l.s, &l.txn)) || (rc = cli_resolve(&id, l.s, l.txn, &sp)) ||
	    (rc = artifs_commit_load(&c, l.s, l.txn, &id)) ||
	    (rc = artifs_tree_resolve(&e, l.s, l.txn, &c->tree, sp.path))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (e.type == ARTIFS_T_DIR) {
		rc = list(&l, &e.id);
	} else {
		const char *slash = strrchr(sp.path, '/');
		artifs_buf_put(&l.path, slash ? slash + 1 : sp.path, strlen(slash ? slash + 1 : sp.path) + 1);
		rc = l.nfilt ? matches(&l, &e) : 1;
		if (rc > 0)
			emit(&l, &e);
		if (rc >= 0)
			rc = 0;
	}
	if (rc) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (json) {
		rc = cli_json_print(l.arr);
		l.arr = NULL;
	}
out:
	free(l.filt);
	json_decref(l.arr);
	artifs_commit_free(c);
	if (l.txn)
		mdb_txn_abort(l.txn);
	artifs_buf_release(&l.path);
	cli_spec_release(&sp);
	artifs_store_free(l.s);
	return rc;
}
