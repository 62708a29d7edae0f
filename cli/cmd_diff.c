#include "cli.h"
#include "commit.h"
#include "diff.h"
#include "error.h"
#include "label.h"
#include "tree.h"

#include <getopt.h>
#include <string.h>

struct dctx {
	artifs_store *s;
	MDB_txn *txn;
	int stat;
	json_t *arr;
	uint64_t n[128];
	uint64_t bytes_added, bytes_removed;
};

static const char *status_name(char st)
{
	switch (st) {
	case ARTIFS_DIFF_ADDED: return "added";
	case ARTIFS_DIFF_REMOVED: return "removed";
	case ARTIFS_DIFF_MODIFIED: return "modified";
	case ARTIFS_DIFF_MODE: return "mode";
	case ARTIFS_DIFF_LABELS: return "labels";
	default: return "unknown";
	}
}

static const char *tname(uint8_t t)
{
	return t == ARTIFS_T_DIR ? "dir" : t == ARTIFS_T_LINK ? "link" : t ? "file" : NULL;
}

/*
 * One line (or JSON object) per key whose value differs between the two
 * labelsets; both are sorted by key, so this is a merge.
 */
static int label_changes(struct dctx *d, const artifs_diff_entry *e, json_t *arr)
{
	static artifs_label a[ARTIFS_LABELS_PER_FILE_MAX], b[ARTIFS_LABELS_PER_FILE_MAX];
	size_t na = 0, nb = 0, i = 0, j = 0;
	int rc;

	if ((!artifs_oid_is_zero(&e->old_labels) &&
	     (rc = artifs_labelset_load(a, ARTIFS_LABELS_PER_FILE_MAX, &na, d->s, d->txn, &e->old_labels))) ||
	    (!artifs_oid_is_zero(&e->new_labels) &&
	     (rc = artifs_labelset_load(b, ARTIFS_LABELS_PER_FILE_MAX, &nb, d->s, d->txn, &e->new_labels))))
		return rc;
	while (i < na || j < nb) {
		const artifs_label *x = i < na ? &a[i] : NULL, *y = j < nb ? &b[j] : NULL;
		int c;
		if (x && y) {
			c = memcmp(x->key, y->key, x->key_len < y->key_len ? x->key_len : y->key_len);
			if (!c)
				c = x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
		} else {
			c = x ? -1 : 1;
		}
		if (c < 0)
			y = NULL, i++;
		else if (c > 0)
			x = NULL, j++;
		else
			i++, j++;
		if (x && y && x->value_len == y->value_len && !memcmp(x->value, y->value, x->value_len))
			continue;
		if (arr) {
			json_t *o = json_object();
			const artifs_label *k = x ? x : y;
			json_object_set_new(o, "key", json_stringn(k->key, k->key_len));
			json_object_set_new(o, "old", x ? json_stringn(x->value, x->value_len) : json_null());
			json_object_set_new(o, "new", y ? json_stringn(y->value, y->value_len) : json_null());
			json_array_append_new(arr, o);
		} else {
			const artifs_label *k = x ? x : y;
			printf("L\t%s\t%.*s: %.*s -> %.*s\n", e->path, (int)k->key_len, k->key,
				x ? (int)x->value_len : 7, x ? x->value : "(unset)",
				y ? (int)y->value_len : 7, y ? y->value : "(unset)");
		}
	}
	return 0;
}

static int on_change(const artifs_diff_entry *e, void *ctx)
{
	struct dctx *d = ctx;
	int relabel = e->old_type && e->new_type && artifs_oid_cmp(&e->old_labels, &e->new_labels);

	d->n[(unsigned char)e->status & 127]++;
	if (e->status == ARTIFS_DIFF_ADDED || e->status == ARTIFS_DIFF_MODIFIED)
		d->bytes_added += e->new_size;
	if (e->status == ARTIFS_DIFF_REMOVED || e->status == ARTIFS_DIFF_MODIFIED)
		d->bytes_removed += e->old_size;
	if (d->stat && !d->arr)
		return 0;
	if (d->arr) {
		json_t *o = json_object();
		json_object_set_new(o, "status", json_string(status_name(e->status)));
		json_object_set_new(o, "path", cli_json_str(e->path));
		if (e->old_type) {
			json_object_set_new(o, "old_type", json_string(tname(e->old_type)));
			json_object_set_new(o, "old_size", json_integer((json_int_t)e->old_size));
			json_object_set_new(o, "old_id", cli_json_oid(&e->old_id));
			json_object_set_new(o, "old_executable", json_boolean(e->old_flags & ARTIFS_F_EXEC));
		}
		if (e->new_type) {
			json_object_set_new(o, "new_type", json_string(tname(e->new_type)));
			json_object_set_new(o, "new_size", json_integer((json_int_t)e->new_size));
			json_object_set_new(o, "new_id", cli_json_oid(&e->new_id));
			json_object_set_new(o, "new_executable", json_boolean(e->new_flags & ARTIFS_F_EXEC));
		}
		if (relabel) {
			json_t *l = json_array();
			int rc = label_changes(d, e, l);
			json_object_set_new(o, "labels", l);
			if (rc) {
				json_decref(o);
				return rc;
			}
		}
		json_array_append_new(d->arr, o);
	} else {
		/* an (empty) directory ends in '/', as in 'artifs ls' */
		if (e->status != ARTIFS_DIFF_LABELS)
			printf("%c\t%s%s\n", e->status, e->path,
				(e->old_type ? e->old_type : e->new_type) == ARTIFS_T_DIR ? "/" : "");
		if (relabel)
			return label_changes(d, e, NULL);
	}
	return 0;
}

int cmd_diff(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "stat", no_argument, NULL, 's' },
		{ 0 },
	};
	struct dctx d = { 0 };
	artifs_store *s = NULL;
	artifs_commit *ca = NULL, *cb = NULL;
	MDB_txn *txn = NULL;
	cli_spec sa = { 0 }, sb = { 0 };
	artifs_tree_entry ea, eb;
	artifs_oid ia, ib;
	int json = 0, o, rc;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'j')
			json = 1;
		else if (o == 's')
			d.stat = 1;
		else
			return cli_usage("diff", "unknown option");
	}
	if (argc - optind != 2)
		return cli_usage("diff", "usage: artifs diff REPO@A REPO@B [--stat] [--json]");
	if ((rc = cli_spec_parse(&sa, argv[optind])) || (rc = cli_spec_parse(&sb, argv[optind + 1]))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if ((rc = cli_open_store(&s, 1)))
		goto out;
	d.s = s;
	if ((rc = artifs_rtxn_begin(s, &txn)) ||
	    (rc = cli_resolve(&ia, s, txn, &sa)) || (rc = cli_resolve(&ib, s, txn, &sb)) ||
	    (rc = artifs_commit_load(&ca, s, txn, &ia)) || (rc = artifs_commit_load(&cb, s, txn, &ib)) ||
	    (rc = artifs_tree_resolve(&ea, s, txn, &ca->tree, sa.path)) ||
	    (rc = artifs_tree_resolve(&eb, s, txn, &cb->tree, sb.path))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (ea.type != ARTIFS_T_DIR || eb.type != ARTIFS_T_DIR) {
		rc = cli_fail(NULL, "diff compares directories; a path given is a file");
		goto out;
	}
	d.txn = txn;
	if (json)
		d.arr = json_array();
	if ((rc = artifs_diff_trees(s, txn, &ea.id, &eb.id, on_change, &d))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (json) {
		json_t *root = json_object(), *st = json_object();
		json_object_set_new(root, "from", cli_json_oid(&ia));
		json_object_set_new(root, "to", cli_json_oid(&ib));
		json_object_set_new(st, "added", json_integer((json_int_t)d.n['A']));
		json_object_set_new(st, "removed", json_integer((json_int_t)d.n['D']));
		json_object_set_new(st, "modified", json_integer((json_int_t)d.n['M']));
		json_object_set_new(st, "mode", json_integer((json_int_t)d.n['X']));
		json_object_set_new(st, "labels", json_integer((json_int_t)d.n['L']));
		json_object_set_new(st, "bytes_added", json_integer((json_int_t)d.bytes_added));
		json_object_set_new(st, "bytes_removed", json_integer((json_int_t)d.bytes_removed));
		json_object_set_new(root, "stat", st);
		if (d.stat)
			json_decref(d.arr);
		else
			json_object_set_new(root, "changes", d.arr);
		d.arr = NULL;
		rc = cli_json_print(root);
	} else if (d.stat) {
		char b1[32], b2[32];
		printf("%llu added, %llu removed, %llu modified, %llu mode changed, %llu labels changed; "
			"+%s -%s\n",
			(unsigned long long)d.n['A'], (unsigned long long)d.n['D'],
			(unsigned long long)d.n['M'], (unsigned long long)d.n['X'],
			(unsigned long long)d.n['L'],
			cli_bytes(b1, sizeof(b1), (double)d.bytes_added),
			cli_bytes(b2, sizeof(b2), (double)d.bytes_removed));
	}
out:
	json_decref(d.arr);
	artifs_commit_free(ca);
	artifs_commit_free(cb);
	if (txn)
		mdb_txn_abort(txn);
	cli_spec_release(&sa);
	cli_spec_release(&sb);
	artifs_store_free(s);
	return rc;
}
