#include "diff.h"
#include "codec.h"
#include "error.h"
#include "tree.h"

#include <string.h>

struct dw {
	artifs_store *s;
	MDB_txn *txn;
	int (*fn)(const artifs_diff_entry *, void *);
	void *ctx;
	artifs_buf path;
};

static size_t push(struct dw *d, const artifs_tree_entry *e)
{
	size_t old = d->path.len;

	if (old)
		artifs_buf_put(&d->path, "/", 1);
	artifs_buf_put(&d->path, e->name, e->name_len);
	artifs_buf_put(&d->path, "", 1);
	d->path.len--;
	return old;
}

static void pop(struct dw *d, size_t old)
{
	d->path.len = old;
	d->path.ptr[old] = '\0';
}

static int emit(struct dw *d, char status, const artifs_tree_entry *a, const artifs_tree_entry *b)
{
	artifs_diff_entry e = { 0 };

	e.status = status;
	e.path = (const char *)d->path.ptr;
	if (a) {
		e.old_type = a->type;
		e.old_flags = a->flags;
		e.old_size = a->size;
		e.old_id = a->id;
		e.old_labels = a->labels;
	}
	if (b) {
		e.new_type = b->type;
		e.new_flags = b->flags;
		e.new_size = b->size;
		e.new_id = b->id;
		e.new_labels = b->labels;
	}
	return d->fn(&e, d->ctx);
}

static int walk(struct dw *d, const artifs_oid *a, const artifs_oid *b);

/*
 * Report every file under a whole added or removed tree, and every empty
 * directory in it: commits keep empty directories, so they are changes too.
 */
static int whole(struct dw *d, const artifs_tree_entry *e, int added)
{
	artifs_tree_view t;
	int rc;

	if (e->type == ARTIFS_T_DIR) {
		if ((rc = artifs_tree_load(&t, d->s, d->txn, &e->id)))
			return rc;
		if (t.count)
			return added ? walk(d, NULL, &e->id) : walk(d, &e->id, NULL);
	}
	return emit(d, added ? ARTIFS_DIFF_ADDED : ARTIFS_DIFF_REMOVED, added ? NULL : e, added ? e : NULL);
}

static int name_cmp(const artifs_tree_entry *x, const artifs_tree_entry *y)
{
	int c = memcmp(x->name, y->name, x->name_len < y->name_len ? x->name_len : y->name_len);

	if (c)
		return c;
	return x->name_len < y->name_len ? -1 : x->name_len > y->name_len;
}

static int walk(struct dw *d, const artifs_oid *a, const artifs_oid *b)
{
	artifs_tree_view ta = { 0 }, tb = { 0 };
	uint32_t i = 0, j = 0;
	int rc;

	if (a && (rc = artifs_tree_load(&ta, d->s, d->txn, a)))
		return rc;
	if (b && (rc = artifs_tree_load(&tb, d->s, d->txn, b)))
		return rc;
	while (i < ta.count || j < tb.count) {
		artifs_tree_entry ea, eb;
		int c;
		size_t old;
		if (i < ta.count && (rc = artifs_tree_entry_at(&ta, i, &ea)))
			return rc;
		if (j < tb.count && (rc = artifs_tree_entry_at(&tb, j, &eb)))
			return rc;
		c = i >= ta.count ? 1 : j >= tb.count ? -1 : name_cmp(&ea, &eb);
		if (c < 0) {
			old = push(d, &ea);
			rc = whole(d, &ea, 0);
			i++;
		} else if (c > 0) {
			old = push(d, &eb);
			rc = whole(d, &eb, 1);
			j++;
		} else {
			old = push(d, &ea);
			i++;
			j++;
			if (ea.type == ARTIFS_T_DIR && eb.type == ARTIFS_T_DIR) {
				rc = artifs_oid_cmp(&ea.id, &eb.id) ? walk(d, &ea.id, &eb.id) : 0;
			} else if (ea.type == ARTIFS_T_DIR || eb.type == ARTIFS_T_DIR) {
				/* a file became a directory or back: remove, then add */
				if (!(rc = whole(d, &ea, 0)))
					rc = whole(d, &eb, 1);
			} else if (ea.type != eb.type || artifs_oid_cmp(&ea.id, &eb.id)) {
				rc = emit(d, ARTIFS_DIFF_MODIFIED, &ea, &eb);
			} else if (ea.flags != eb.flags) {
				rc = emit(d, ARTIFS_DIFF_MODE, &ea, &eb);
			} else if (artifs_oid_cmp(&ea.labels, &eb.labels)) {
				rc = emit(d, ARTIFS_DIFF_LABELS, &ea, &eb);
			} else {
				rc = 0;
			}
		}
		pop(d, old);
		if (rc)
			return rc;
	}
	return 0;
}

int artifs_diff_trees(artifs_store *s, MDB_txn *txn, const artifs_oid *a, const artifs_oid *b,
	int (*fn)(const artifs_diff_entry *e, void *ctx), void *ctx)
{
	struct dw d = { s, txn, fn, ctx, { 0 } };
	int rc;

	if ((rc = artifs_buf_put(&d.path, "", 1)))
		return rc;
	d.path.len = 0;
	/* the zero id stands for the empty tree (a first commit) */
	rc = artifs_oid_cmp(a, b) ? walk(&d, artifs_oid_is_zero(a) ? NULL : a,
		artifs_oid_is_zero(b) ? NULL : b) : 0;
	artifs_buf_release(&d.path);
	return rc;
}
