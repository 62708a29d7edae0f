/*
 * labels.c - labels in the mount: the .labels views of a version, the
 * .labels.jsonl manifest and user.label.* extended attributes.
 *
 * Path grammar below a version root V:
 *   V/.labels/                     the label keys of the version
 *   V/.labels/KEY/                 the values of KEY
 *   V/.labels/KEY/VALUE/...        the version's tree restricted to the
 *                                  files with KEY=VALUE
 *   V/.labels/KEY=VALUE/...        like V/.labels/, restricted to the files
 *                                  with KEY=VALUE; filters compose
 * A value in a name has '%' as %25 and '/' as %2F ("." and ".." as %2E and
 * %2E%2E).  No node stores its filters: they are read off the names of its
 * ancestors, which are fixed for the node's life.
 *
 * "Does this tree hold a matching file" depends only on the tree's id and
 * the filters, so answers are kept in a direct-mapped cache keyed by a hash
 * of both; listings walk each distinct tree and labelset once.
 */
#include "fs_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "blob.h"
#include "commit.h"
#include "error.h"
#include "label.h"
#include "tree.h"

#define MAX_FILTERS 16
#define MATCH_CACHE (1u << 16)	/* entries */

struct filter {
	const char *key;
	size_t klen;
	const char *value;	/* NULL: any value */
	size_t vlen;
};

struct filters {
	struct filter f[MAX_FILTERS];
	size_t n;
	artifs_buf mem;		/* unescaped values, NUL-separated */
	XXH128_hash_t hash;	/* of the sorted filters */
	int nocache;
};

struct match_ent {
	artifs_oid key;		/* hash of (tree, filters) */
	uint8_t valid, val;
};

struct artifs_fs_labels {
	pthread_mutex_t lock;
	struct match_ent *cache;
};

int fs_labels_init(artifs_fs *fs)
{
	struct artifs_fs_labels *l = calloc(1, sizeof(*l));

	if (!l || !(l->cache = calloc(MATCH_CACHE, sizeof(*l->cache)))) {
		free(l);
		return -ENOMEM;
	}
	pthread_mutex_init(&l->lock, NULL);
	fs->labels = l;
	return 0;
}

void fs_labels_release(artifs_fs *fs)
{
	if (!fs->labels)
		return;
	pthread_mutex_destroy(&fs->labels->lock);
	free(fs->labels->cache);
	free(fs->labels);
	fs->labels = NULL;
}

/* ---- names ---- */

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
		c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Decode %XX escapes of name[0..len) into out (NUL-terminated); -1 if malformed. */
static int unescape(artifs_buf *out, const char *name, size_t len, size_t *vlen)
{
	size_t start = out->len;

	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		if (c == '%') {
			int h, l;
			if (i + 2 >= len || (h = hexval(name[i + 1])) < 0 || (l = hexval(name[i + 2])) < 0)
				return -1;
			c = (char)(h << 4 | l);
			i += 2;
		}
		if (artifs_buf_put(out, &c, 1))
			return -1;
	}
	*vlen = out->len - start;
	return artifs_buf_put(out, "", 1) ? -1 : 0;
}

/* The directory name for a value; 0 if it does not fit in a name. */
static size_t escape(char *out, size_t cap, const char *v, size_t len)
{
	size_t o = 0;

	if ((len == 1 && v[0] == '.') || (len == 2 && v[0] == '.' && v[1] == '.')) {
		const char *e = len == 1 ? "%2E" : "%2E%2E";
		size_t el = strlen(e);
		if (el >= cap)
			return 0;
		memcpy(out, e, el + 1);
		return el;
	}
	for (size_t i = 0; i < len; i++) {
		const char *e = v[i] == '%' ? "%25" : v[i] == '/' ? "%2F" : NULL;
		size_t el = e ? 3 : 1;
		if (o + el >= cap)
			return 0;
		if (e)
			memcpy(out + o, e, 3);
		else
			out[o] = v[i];
		o += el;
	}
	out[o] = '\0';
	return o;
}

/* ---- filters ---- */

static void filters_release(struct filters *f)
{
	artifs_buf_release(&f->mem);
}

/*
 * Add KEY[=escaped VALUE] from a name.  Returns 0, or ARTIFS_ENOTFOUND for
 * a name that cannot be a filter (the caller answers ENOENT).
 */
static int filter_add(struct filters *f, const char *key, size_t klen, const char *val, size_t vlen,
	int escaped)
{
	struct filter *x;

	if (f->n >= MAX_FILTERS || !artifs_label_key_valid(key, klen))
		return ARTIFS_ENOTFOUND;
	x = &f->f[f->n];
	x->key = key;
	x->klen = klen;
	x->value = NULL;
	x->vlen = 0;
	if (val) {
		/* offsets, not pointers: mem may move while filters are added */
		size_t off = f->mem.len;
		if (escaped) {
			if (unescape(&f->mem, val, vlen, &x->vlen))
				return ARTIFS_ENOTFOUND;
		} else if (artifs_buf_put(&f->mem, val, vlen) || artifs_buf_put(&f->mem, "", 1)) {
			return -ENOMEM;
		} else {
			x->vlen = vlen;
		}
		x->value = (const char *)(uintptr_t)(off + 1);	/* fixed up in filters_done */
		if (!artifs_label_value_valid((const char *)f->mem.ptr + off, x->vlen))
			return ARTIFS_ENOTFOUND;
		if (escaped) {
			/* one name per value: "%63at" is not another spelling of "cat" */
			char canon[ARTIFS_NAME_MAX + 1];
			size_t cl = escape(canon, sizeof(canon), (const char *)f->mem.ptr + off, x->vlen);
			if (!cl || cl != vlen || memcmp(canon, val, vlen))
				return ARTIFS_ENOTFOUND;
		}
	}
	f->n++;
	return 0;
}

static int filt_cmp(const void *pa, const void *pb)
{
	const struct filter *a = pa, *b = pb;
	int c = memcmp(a->key, b->key, a->klen < b->klen ? a->klen : b->klen);

	if (c || a->klen != b->klen)
		return c ? c : a->klen < b->klen ? -1 : 1;
	if (!a->value || !b->value)
		return !a->value - !b->value;
	c = memcmp(a->value, b->value, a->vlen < b->vlen ? a->vlen : b->vlen);
	return c ? c : a->vlen < b->vlen ? -1 : a->vlen > b->vlen;
}

/* Resolve value offsets to pointers, sort, hash. */
static void filters_done(struct filters *f)
{
	artifs_buf b = { 0 };

	for (size_t i = 0; i < f->n; i++)
		if (f->f[i].value)
			f->f[i].value = (const char *)f->mem.ptr + ((uintptr_t)f->f[i].value - 1);
	if (f->n > 1)
		qsort(f->f, f->n, sizeof(f->f[0]), filt_cmp);
	for (size_t i = 0; i < f->n; i++)
		if (artifs_buf_put(&b, f->f[i].key, f->f[i].klen) ||
		    artifs_buf_put(&b, f->f[i].value ? "=" : "*", 1) ||
		    (f->f[i].value && artifs_buf_put(&b, f->f[i].value, f->f[i].vlen)) ||
		    artifs_buf_put(&b, "", 1))
			f->nocache = 1;	/* out of memory: answer without the cache */
	f->hash = XXH3_128bits(b.ptr ? b.ptr : (const void *)"", b.len);
	artifs_buf_release(&b);
}

/* A name "KEY=ESCAPED" or "KEY" (any value) as a filter. */
static int filter_from_name(struct filters *f, const char *name, size_t len, int key_only)
{
	const char *eq = key_only ? NULL : memchr(name, '=', len);

	if (eq)
		return filter_add(f, name, (size_t)(eq - name), eq + 1, len - (size_t)(eq - name) - 1, 1);
	return filter_add(f, name, len, NULL, 0, 0);
}

/*
 * The filters in force inside node n (FS_LABELS, FS_LKEY or FS_VIEW), read
 * off its ancestors' names; *root gets the version's tree.
 */
static int filters_of(const fs_node *n, struct filters *f, artifs_oid *root)
{
	int rc;

	memset(f, 0, sizeof(*f));
	while (n->kind == FS_VIEW && n->parent->kind == FS_VIEW)
		n = n->parent;
	if (n->kind == FS_VIEW) {
		/* the top of a view: KEY (its parent) = VALUE (its name) */
		const fs_node *k = n->parent;
		if ((rc = filter_add(f, k->name, strlen(k->name), n->name, strlen(n->name), 1)))
			return rc;
		n = k->parent;
	} else if (n->kind == FS_LKEY) {
		n = n->parent;
	}
	while (n->kind == FS_LABELS) {
		if (strchr(n->name, '=') && (rc = filter_from_name(f, n->name, strlen(n->name), 0)))
			return rc;
		n = n->parent;
	}
	*root = n->id;
	return 0;
}

/* ---- matching ---- */

/* 1 if labelset `id` satisfies every filter. */
static int labels_match(artifs_fs *fs, MDB_txn *txn, const artifs_oid *id, const struct filters *f)
{
	artifs_label l[ARTIFS_LABELS_PER_FILE_MAX];
	size_t n;
	int rc;

	if (artifs_oid_is_zero(id))
		return f->n == 0;
	if ((rc = fs_check(fs, txn, 'L', id)) ||
	    (rc = artifs_labelset_load(l, ARTIFS_LABELS_PER_FILE_MAX, &n, fs->store, txn, id)))
		return rc;
	for (size_t i = 0; i < f->n; i++) {
		const struct filter *x = &f->f[i];
		size_t j;
		for (j = 0; j < n; j++)
			if (l[j].key_len == x->klen && !memcmp(l[j].key, x->key, x->klen))
				break;
		if (j == n)
			return 0;
		if (x->value && (l[j].value_len != x->vlen || memcmp(l[j].value, x->value, x->vlen)))
			return 0;
	}
	return 1;
}

static void cache_key(artifs_oid *k, const artifs_oid *tree, const struct filters *f)
{
	uint8_t buf[32];
	XXH128_canonical_t c;

	memcpy(buf, tree->id, 16);
	XXH128_canonicalFromHash(&c, f->hash);
	memcpy(buf + 16, c.digest, 16);
	artifs_oid_hash(k, buf, sizeof(buf));
}

/* 1 if tree `id` holds a file (at any depth) whose labels match f. */
static int tree_match(artifs_fs *fs, MDB_txn *txn, const artifs_oid *id, const struct filters *f)
{
	struct artifs_fs_labels *L = fs->labels;
	artifs_tree_view t;
	artifs_oid k;
	size_t slot;
	int rc, found = 0;

	cache_key(&k, id, f);
	memcpy(&slot, k.id, sizeof(slot));
	slot &= MATCH_CACHE - 1;
	pthread_mutex_lock(&L->lock);
	if (!f->nocache && L->cache[slot].valid && !artifs_oid_cmp(&L->cache[slot].key, &k)) {
		found = L->cache[slot].val;
		pthread_mutex_unlock(&L->lock);
		return found;
	}
	pthread_mutex_unlock(&L->lock);
	if ((rc = fs_tree_load(fs, txn, id, &t)))
		return rc;
	/* files first: a match there spares the walk below */
	for (int pass = 0; pass < 2 && !found; pass++)
		for (uint32_t i = 0; i < t.count && !found; i++) {
			artifs_tree_entry e;
			if ((rc = artifs_tree_entry_at(&t, i, &e)))
				return rc;
			if (pass == 0 && e.type == ARTIFS_T_FILE)
				rc = labels_match(fs, txn, &e.labels, f);
			else if (pass == 1 && e.type == ARTIFS_T_DIR)
				rc = tree_match(fs, txn, &e.id, f);
			else
				continue;
			if (rc < 0)
				return rc;
			found = rc;
		}
	if (f->nocache)
		return found;
	pthread_mutex_lock(&L->lock);
	L->cache[slot].key = k;
	L->cache[slot].valid = 1;
	L->cache[slot].val = (uint8_t)found;
	pthread_mutex_unlock(&L->lock);
	return found;
}

/* ---- listings ---- */

struct lister {
	artifs_fs *fs;
	MDB_txn *txn;
	const struct filters *f;
	const char *key;	/* list this key's values; NULL: list keys */
	artifs_oidset trees, labelsets;
	fs_namelist *out;
};

static int is_filtered_key(const struct filters *f, const char *k, size_t len)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->f[i].klen == len && !memcmp(f->f[i].key, k, len))
			return 1;
	return 0;
}

static int list_labels(struct lister *ls, const artifs_oid *id)
{
	artifs_label l[ARTIFS_LABELS_PER_FILE_MAX];
	char name[ARTIFS_NAME_MAX + 1];
	size_t n;
	int rc;

	if ((rc = artifs_oidset_add(&ls->labelsets, id)) <= 0)
		return rc;
	if ((rc = labels_match(ls->fs, ls->txn, id, ls->f)) <= 0)
		return rc;
	if ((rc = artifs_labelset_load(l, ARTIFS_LABELS_PER_FILE_MAX, &n, ls->fs->store, ls->txn, id)))
		return rc;
	for (size_t i = 0; i < n; i++) {
		if (!ls->key) {
			if (is_filtered_key(ls->f, l[i].key, l[i].key_len))
				continue;
			memcpy(name, l[i].key, l[i].key_len);
			name[l[i].key_len] = '\0';
		} else if (strlen(ls->key) != l[i].key_len || memcmp(ls->key, l[i].key, l[i].key_len) ||
			   !escape(name, sizeof(name), l[i].value, l[i].value_len)) {
			continue;	/* another key, or a value too long for a name */
		}
		if ((rc = fs_nl_add(ls->out, name)))
			return rc;
	}
	return 0;
}

static int list_tree(struct lister *ls, const artifs_oid *id)
{
	artifs_tree_view t;
	int rc;

	if ((rc = artifs_oidset_add(&ls->trees, id)) <= 0)
		return rc;
	if ((rc = fs_tree_load(ls->fs, ls->txn, id, &t)))
		return rc;
	for (uint32_t i = 0; i < t.count; i++) {
		artifs_tree_entry e;
		if ((rc = artifs_tree_entry_at(&t, i, &e)))
			return rc;
		if (e.type == ARTIFS_T_DIR)
			rc = list_tree(ls, &e.id);
		else if (e.type == ARTIFS_T_FILE && !artifs_oid_is_zero(&e.labels))
			rc = list_labels(ls, &e.labels);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int fs_labels_list(artifs_fs *fs, MDB_txn *txn, fs_node *p, fs_namelist *out)
{
	struct lister ls = { 0 };
	struct filters f;
	artifs_oid root;
	size_t w = 0;
	int rc;

	if ((rc = filters_of(p, &f, &root)))
		goto done;
	filters_done(&f);
	ls.fs = fs;
	ls.txn = txn;
	ls.f = &f;
	ls.key = p->kind == FS_LKEY ? p->name : NULL;
	ls.out = out;
	artifs_oidset_init(&ls.trees);
	artifs_oidset_init(&ls.labelsets);
	if (!artifs_oid_is_zero(&root))
		rc = list_tree(&ls, &root);
	artifs_oidset_release(&ls.trees);
	artifs_oidset_release(&ls.labelsets);
	if (rc < 0)
		goto done;
	rc = 0;
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), name_cmp);
	for (size_t i = 0; i < out->n; i++) {
		if (w && !strcmp(out->v[w - 1], out->v[i])) {
			free(out->v[i]);
			continue;
		}
		out->v[w++] = out->v[i];
	}
	out->n = w;
done:
	filters_release(&f);
	return rc == ARTIFS_ENOTFOUND ? 0 : rc;
}

/* ---- look-ups ---- */

static fs_node *view_dir(artifs_fs *fs, fs_node *p, const char *name, uint8_t kind, const artifs_oid *id)
{
	fs_node t;

	memset(&t, 0, sizeof(t));
	t.kind = kind;
	t.time = p->time;
	t.id = *id;
	return fs_dir_get(fs, p, name, strlen(name), &t);
}

int fs_labels_child(artifs_fs *fs, MDB_txn *txn, fs_node *p, const char *name, fs_node **out)
{
	struct filters f;
	artifs_oid root;
	size_t len = strlen(name);
	uint8_t kind;
	int rc;

	*out = NULL;
	if (p->kind == FS_VROOT) {
		fs_node t;
		if (!strcmp(name, ".labels.jsonl")) {
			artifs_blob_view b;
			memset(&t, 0, sizeof(t));
			t.kind = FS_FILE;
			t.time = p->time;
			t.parent = p;
			t.dir = p->id;
			t.id = p->labels;
			if (!artifs_oid_is_zero(&p->labels)) {
				if ((rc = fs_blob_load(fs, txn, &p->labels, &b)))
					return rc;
				t.size = b.size;
			}
			*out = fs_file_get(fs, &t, name, len);
			return *out ? 0 : -ENOMEM;
		}
		/* ".labels" */
		if (artifs_oid_is_zero(&p->id))
			return ARTIFS_ENOTFOUND;
		*out = view_dir(fs, p, name, FS_LABELS, &p->id);
		return *out ? 0 : -ENOMEM;
	}
	if ((rc = filters_of(p, &f, &root)))
		goto done;
	if (p->kind == FS_LABELS) {
		/* KEY=VALUE narrows; KEY lists values */
		int is_filter = memchr(name, '=', len) != NULL;
		if ((rc = filter_from_name(&f, name, len, !is_filter)))
			goto done;
		kind = is_filter ? FS_LABELS : FS_LKEY;
	} else if (p->kind == FS_LKEY) {
		if ((rc = filter_add(&f, p->name, strlen(p->name), name, len, 1)))
			goto done;
		kind = FS_VIEW;
	} else {
		/* inside a view: the real entry, if it holds a match */
		artifs_tree_view tv;
		artifs_tree_entry te;
		filters_done(&f);
		if ((rc = fs_tree_load(fs, txn, &p->id, &tv)) ||
		    (rc = artifs_tree_lookup(&tv, name, len, &te)))
			goto done;
		rc = te.type == ARTIFS_T_FILE ? labels_match(fs, txn, &te.labels, &f) :
			te.type == ARTIFS_T_DIR ? tree_match(fs, txn, &te.id, &f) : 0;
		if (rc <= 0) {
			rc = rc ? rc : ARTIFS_ENOTFOUND;
			goto done;
		}
		rc = 0;
		if (!(*out = fs_view_entry(fs, p, &te)))
			rc = -ENOMEM;
		goto done;
	}
	filters_done(&f);
	if ((rc = tree_match(fs, txn, &root, &f)) <= 0) {
		rc = rc ? rc : ARTIFS_ENOTFOUND;
		goto done;
	}
	rc = 0;
	if (!(*out = view_dir(fs, p, name, kind, &root)))
		rc = -ENOMEM;
done:
	filters_release(&f);
	return rc;
}

int fs_view_keep(artifs_fs *fs, MDB_txn *txn, fs_node *p, const artifs_tree_entry *te)
{
	struct filters f;
	artifs_oid root;
	int rc;

	if (te->type == ARTIFS_T_LINK)
		return 0;
	if ((rc = filters_of(p, &f, &root)) == 0) {
		filters_done(&f);
		rc = te->type == ARTIFS_T_FILE ? labels_match(fs, txn, &te->labels, &f) :
			tree_match(fs, txn, &te->id, &f);
	}
	filters_release(&f);
	return rc == ARTIFS_ENOTFOUND ? 0 : rc;
}

/* ---- extended attributes ---- */

#define XATTR_PREFIX "user.label."

int fs_xattr_get(artifs_fs *fs, MDB_txn *txn, const fs_node *n, const char *name,
	const char **value, size_t *len)
{
	static __thread artifs_label l[ARTIFS_LABELS_PER_FILE_MAX];
	size_t cnt, plen = sizeof(XATTR_PREFIX) - 1, klen;
	int rc;

	if (n->kind != FS_FILE || artifs_oid_is_zero(&n->labels) || strncmp(name, XATTR_PREFIX, plen))
		return -ENODATA;
	if ((rc = fs_check(fs, txn, 'L', &n->labels)) ||
	    (rc = artifs_labelset_load(l, ARTIFS_LABELS_PER_FILE_MAX, &cnt, fs->store, txn, &n->labels)))
		return rc;
	name += plen;
	klen = strlen(name);
	for (size_t i = 0; i < cnt; i++)
		if (l[i].key_len == klen && !memcmp(l[i].key, name, klen)) {
			*value = l[i].value;	/* in the map: valid with txn */
			*len = l[i].value_len;
			return 0;
		}
	return -ENODATA;
}

int fs_xattr_list(artifs_fs *fs, MDB_txn *txn, const fs_node *n, artifs_buf *out)
{
	artifs_label l[ARTIFS_LABELS_PER_FILE_MAX];
	size_t cnt;
	int rc;

	if (n->kind != FS_FILE || artifs_oid_is_zero(&n->labels))
		return 0;
	if ((rc = fs_check(fs, txn, 'L', &n->labels)) ||
	    (rc = artifs_labelset_load(l, ARTIFS_LABELS_PER_FILE_MAX, &cnt, fs->store, txn, &n->labels)))
		return rc;
	for (size_t i = 0; i < cnt; i++)
		if ((rc = artifs_buf_put(out, XATTR_PREFIX, sizeof(XATTR_PREFIX) - 1)) ||
		    (rc = artifs_buf_put(out, l[i].key, l[i].key_len)) ||
		    (rc = artifs_buf_put(out, "", 1)))
			return rc;
	return 0;
}
