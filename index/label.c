/*
 * label.c - labelset records, applying label edits to a tree, and the
 * generated manifest.
 *
 * Labelset record (little-endian; table "labelsets"):
 *   u8 'L' | u8 version=1 | u16 0 | u32 count
 *   count x ( str key | str value ), sorted by key (bytewise), keys unique
 *
 * Edits are sorted by path component by component ('/' sorts before every
 * name byte), so the edits below one directory entry are one run, and the
 * edits naming a directory itself come first in its run.  A walk then
 * rewrites only the directories on the paths of the runs.
 */
#include "label.h"
#include "commit.h"
#include "error.h"
#include "ref.h"
#include "snapshot.h"
#include "store_int.h"
#include "tree.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LABELSET_HDRSZ 8
#define MAX_REPORTED 10		/* problems listed in one error message */

int artifs_label_key_valid(const char *key, size_t len)
{
	if (len == 0 || len > ARTIFS_LABEL_KEY_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = key[i];
		int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
			return 0;
	}
	return 1;
}

int artifs_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;

	while (p < end) {
		unsigned c = *p;
		size_t n;
		uint32_t cp;
		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if ((size_t)(end - p) <= n)
			return 0;
		for (size_t i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i] & 0x3f);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		p += n + 1;
	}
	return 1;
}

int artifs_label_value_valid(const char *value, size_t len)
{
	if (len == 0 || len > ARTIFS_LABEL_VALUE_MAX)
		return 0;
	if (memchr(value, '\0', len) || memchr(value, '\n', len) || memchr(value, '\r', len))
		return 0;
	return artifs_utf8_valid(value, len);
}

static int label_cmp(const void *a, const void *b)
{
	const artifs_label *x = a, *y = b;
	int c = memcmp(x->key, y->key, x->key_len < y->key_len ? x->key_len : y->key_len);

	if (c)
		return c;
	return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

int artifs_labelset_encode(artifs_buf *out, artifs_label *l, size_t n)
{
	uint8_t hdr[LABELSET_HDRSZ] = { 'L', 1, 0, 0 };
	int rc;

	if (n > ARTIFS_LABELS_PER_FILE_MAX)
		return artifs_error(ARTIFS_EINVAL, "more than %d labels on one file",
			ARTIFS_LABELS_PER_FILE_MAX);
	if (n > 1)
		qsort(l, n, sizeof(*l), label_cmp);
	for (size_t i = 0; i < n; i++) {
		if (!artifs_label_key_valid(l[i].key, l[i].key_len))
			return artifs_error(ARTIFS_EINVAL, "invalid label key '%.*s'",
				(int)l[i].key_len, l[i].key);
		if (!artifs_label_value_valid(l[i].value, l[i].value_len))
			return artifs_error(ARTIFS_EINVAL, "invalid value for label '%.*s'",
				(int)l[i].key_len, l[i].key);
		if (i && !label_cmp(&l[i - 1], &l[i]))
			return artifs_error(ARTIFS_EINVAL, "label '%.*s' given twice",
				(int)l[i].key_len, l[i].key);
	}
	put_le32(hdr + 4, (uint32_t)n);
	if ((rc = artifs_buf_put(out, hdr, sizeof(hdr))))
		return rc;
	for (size_t i = 0; i < n; i++)
		if ((rc = artifs_buf_put_str(out, l[i].key, l[i].key_len)) ||
		    (rc = artifs_buf_put_str(out, l[i].value, l[i].value_len)))
			return rc;
	return 0;
}

int artifs_labelset_decode(artifs_label *out, size_t max, size_t *n, const void *data, size_t len)
{
	artifs_rd r = { data, (const uint8_t *)data + len, 0 };
	const uint8_t *h = rd_take(&r, LABELSET_HDRSZ);
	uint32_t count;

	if (!h || h[0] != 'L' || h[1] != 1 || h[2] || h[3])
		return artifs_error(ARTIFS_ECORRUPT, "malformed labelset record");
	count = get_le32(h + 4);
	if (count > max || count > ARTIFS_LABELS_PER_FILE_MAX)
		return artifs_error(ARTIFS_ECORRUPT, "malformed labelset record (%u labels)", count);
	for (uint32_t i = 0; i < count; i++) {
		artifs_label *l = &out[i];
		l->key_len = rd_le32(&r);
		l->key = (const char *)rd_take(&r, l->key_len);
		l->value_len = rd_le32(&r);
		l->value = (const char *)rd_take(&r, l->value_len);
		if (r.err)
			return artifs_error(ARTIFS_ECORRUPT, "malformed labelset record (truncated)");
		if (!artifs_label_key_valid(l->key, l->key_len) ||
		    !artifs_label_value_valid(l->value, l->value_len) ||
		    (i && label_cmp(&out[i - 1], l) >= 0))
			return artifs_error(ARTIFS_ECORRUPT, "malformed labelset record (bad label)");
	}
	if (r.p != r.end)
		return artifs_error(ARTIFS_ECORRUPT, "malformed labelset record (trailing bytes)");
	*n = count;
	return 0;
}

int artifs_labelset_load(artifs_label *out, size_t max, size_t *n, artifs_store *s, MDB_txn *txn,
	const artifs_oid *id)
{
	MDB_val v;
	int rc;

	if ((rc = artifs_store_get(txn, s->labelsets, id, &v))) {
		char hex[ARTIFS_OID_HEXSZ + 1];
		if (rc == ARTIFS_ENOTFOUND)
			return artifs_error(ARTIFS_ENOTFOUND, "labelset %s is missing",
				artifs_oid_fmt(hex, id));
		return rc;
	}
	return artifs_labelset_decode(out, max, n, v.mv_data, v.mv_size);
}

/* ---- edits ---- */

#define ARENA_BLOCK ((size_t)1 << 20)

struct arena_blk {
	struct arena_blk *next;
	size_t used, cap;
	char data[];
};

static char *arena_dup(artifs_label_edits *e, const char *s, size_t len)
{
	struct arena_blk *b = (struct arena_blk *)e->arena;
	char *p;

	if (!b || b->cap - b->used < len + 1) {
		size_t cap = len + 1 > ARENA_BLOCK ? len + 1 : ARENA_BLOCK;
		struct arena_blk *nb = malloc(sizeof(*nb) + cap);
		if (!nb)
			return NULL;
		nb->next = b;
		nb->used = 0;
		nb->cap = cap;
		e->arena = nb;
		b = nb;
	}
	p = b->data + b->used;
	memcpy(p, s, len);
	p[len] = '\0';
	b->used += len + 1;
	return p;
}

void artifs_label_edits_init(artifs_label_edits *e)
{
	memset(e, 0, sizeof(*e));
}

void artifs_label_edits_release(artifs_label_edits *e)
{
	struct arena_blk *b = e->arena;

	while (b) {
		struct arena_blk *n = b->next;
		free(b);
		b = n;
	}
	free(e->v);
	memset(e, 0, sizeof(*e));
}

int artifs_label_edits_add(artifs_label_edits *e, const char *path, size_t path_len,
	const char *key, size_t key_len, const char *value, size_t value_len, uint64_t line)
{
	artifs_label_edit *x;
	char *norm, *o;
	size_t i = 0;

	if (e->n == e->cap) {
		size_t cap = e->cap ? e->cap * 2 : 256;
		void *p = realloc(e->v, cap * sizeof(*e->v));
		if (!p)
			return artifs_error(-ENOMEM, "out of memory");
		e->v = p;
		e->cap = cap;
	}
	if (!(norm = arena_dup(e, path, path_len)))
		return artifs_error(-ENOMEM, "out of memory");
	/* drop empty and "." components; refuse ".." */
	o = norm;
	while (i < path_len) {
		size_t j = i;
		while (j < path_len && path[j] != '/')
			j++;
		if (j - i == 2 && path[i] == '.' && path[i + 1] == '.')
			return artifs_error(ARTIFS_EINVAL, "path '%.*s' has a '..' component",
				(int)path_len, path);
		if (j > i && !(j - i == 1 && path[i] == '.')) {
			if (o != norm)
				*o++ = '/';
			memmove(o, path + i, j - i);
			o += j - i;
		}
		i = j + 1;
	}
	*o = '\0';
	if (memchr(path, '\0', path_len))
		return artifs_error(ARTIFS_EINVAL, "path contains a NUL byte");
	x = &e->v[e->n];
	x->path = norm;
	x->line = line;
	if (!(x->key = arena_dup(e, key, key_len)))
		return artifs_error(-ENOMEM, "out of memory");
	x->value = NULL;
	if (value && !(x->value = arena_dup(e, value, value_len)))
		return artifs_error(-ENOMEM, "out of memory");
	e->n++;
	return 0;
}

/* Path order of trees: component by component, '/' below every name byte. */
static int path_cmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
		if (x == y) {
			if (!x)
				return 0;
			continue;
		}
		x = x == '/' ? 1 : x;
		y = y == '/' ? 1 : y;
		return x < y ? -1 : 1;
	}
}

static int edit_cmp(const void *pa, const void *pb)
{
	const artifs_label_edit *a = pa, *b = pb;
	int c = path_cmp(a->path, b->path);

	if (c)
		return c;
	if ((c = strcmp(a->key, b->key)))
		return c;
	return a->line < b->line ? -1 : a->line > b->line;
}

/* ---- apply ---- */

struct ap {
	artifs_writer *w;
	artifs_store *s;
	artifs_label_edits *e;
	artifs_label_apply_stats *st;
	const artifs_label_edit **inh;	/* edits of enclosing directories, outer first */
	size_t ninh, capinh;
	artifs_buf errs;
	int nerr;
	uint64_t last_line;		/* the last problem, to report it once */
	char last_msg[1024];
	artifs_buf rec;
	artifs_buf old;			/* copy of a file's current labels */
	artifs_label cur[ARTIFS_LABELS_PER_FILE_MAX + 1];
};

static void problem(struct ap *a, uint64_t line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void problem(struct ap *a, uint64_t line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* one row setting several keys of an unknown path is one problem */
	if (line == a->last_line && !strcmp(msg, a->last_msg))
		return;
	a->last_line = line;
	snprintf(a->last_msg, sizeof(a->last_msg), "%s", msg);
	if (a->nerr++ >= MAX_REPORTED)
		return;
	if (a->errs.len)
		artifs_buf_put(&a->errs, "\n  ", 3);
	if (line) {
		char l[32];
		snprintf(l, sizeof(l), "line %llu: ", (unsigned long long)line);
		artifs_buf_put(&a->errs, l, strlen(l));
	}
	artifs_buf_put(&a->errs, msg, strlen(msg));
}

static int apply_edit(struct ap *a, size_t *n, const artifs_label_edit *x)
{
	size_t klen = strlen(x->key), i;

	for (i = 0; i < *n; i++)
		if (a->cur[i].key_len == klen && !memcmp(a->cur[i].key, x->key, klen))
			break;
	if (!x->value) {
		if (i < *n)
			a->cur[i] = a->cur[--*n];
		return 0;
	}
	if (i == *n) {
		if (*n >= ARTIFS_LABELS_PER_FILE_MAX)
			return -1;
		a->cur[i].key = x->key;
		a->cur[i].key_len = klen;
		++*n;
	}
	a->cur[i].value = x->value;
	a->cur[i].value_len = strlen(x->value);
	return 0;
}

/* New labelset of one file: its labels, then inherited edits, then its own. */
static int relabel(struct ap *a, const char *path, const artifs_oid *old,
	const artifs_label_edit *own, size_t nown, artifs_oid *out)
{
	artifs_label tmp[ARTIFS_LABELS_PER_FILE_MAX];
	size_t n = 0, total = 0;
	int rc;

	if (!a->e->replace && !artifs_oid_is_zero(old)) {
		if ((rc = artifs_labelset_load(tmp, ARTIFS_LABELS_PER_FILE_MAX, &n, a->s,
				artifs_writer_rtxn(a->w), old)))
			return rc;
		/* copy out of the map: writes below may end the read transaction */
		for (size_t i = 0; i < n; i++)
			total += tmp[i].key_len + tmp[i].value_len;
		a->old.len = 0;
		if ((rc = artifs_buf_grow(&a->old, total + 1)))
			return rc;
		for (size_t i = 0; i < n; i++) {
			a->cur[i].key = (const char *)a->old.ptr + a->old.len;
			a->cur[i].key_len = tmp[i].key_len;
			artifs_buf_put(&a->old, tmp[i].key, tmp[i].key_len);
			a->cur[i].value = (const char *)a->old.ptr + a->old.len;
			a->cur[i].value_len = tmp[i].value_len;
			artifs_buf_put(&a->old, tmp[i].value, tmp[i].value_len);
		}
	}
	for (size_t i = 0; i < a->ninh; i++)
		if (apply_edit(a, &n, a->inh[i]))
			goto full;
	for (size_t i = 0; i < nown; i++)
		if (apply_edit(a, &n, &own[i]))
			goto full;
	if (n == 0) {
		memset(out, 0, sizeof(*out));
	} else {
		a->rec.len = 0;
		if ((rc = artifs_labelset_encode(&a->rec, a->cur, n)) ||
		    (rc = artifs_writer_put_labels(a->w, out, a->rec.ptr, a->rec.len)))
			return rc;
	}
	if (artifs_oid_cmp(out, old))
		a->st->files_changed++;
	return 0;
full:
	problem(a, nown ? own[0].line : 0, "'%s' would have more than %d labels", path,
		ARTIFS_LABELS_PER_FILE_MAX);
	*out = *old;
	return 0;
}

static size_t first_len(const char *p)
{
	const char *s = strchr(p, '/');

	return s ? (size_t)(s - p) : strlen(p);
}

static int push_inh(struct ap *a, const artifs_label_edit *x)
{
	if (a->ninh == a->capinh) {
		size_t cap = a->capinh ? a->capinh * 2 : 16;
		void *p = realloc(a->inh, cap * sizeof(*a->inh));
		if (!p)
			return artifs_error(-ENOMEM, "out of memory");
		a->inh = p;
		a->capinh = cap;
	}
	a->inh[a->ninh++] = x;
	return 0;
}

/*
 * Rewrite directory `tree` (at `dpath`) with edits [lo, hi), whose paths
 * continue at offset `off` below it.
 */
static int apply_dir(struct ap *a, const artifs_oid *tree, const char *dpath, size_t lo, size_t hi,
	size_t off, artifs_oid *out)
{
	artifs_tree_builder tb;
	artifs_tree_view t;
	artifs_buf rec = { 0 }, cpath = { 0 };
	size_t g = lo;
	int rc, changed = 0, all = a->ninh || a->e->replace;

	artifs_tree_builder_init(&tb);
	if ((rc = artifs_tree_load(&t, a->s, artifs_writer_rtxn(a->w), tree)))
		return rc;
	/* copy the entries: the read transaction does not outlive our writes */
	for (uint32_t i = 0; i < t.count; i++) {
		artifs_tree_entry en;
		if ((rc = artifs_tree_entry_at(&t, i, &en)) ||
		    (rc = artifs_tree_builder_add(&tb, en.name, en.name_len, en.type, en.flags,
				en.size, &en.id, &en.labels)))
			goto done;
	}
	for (size_t i = 0; i <= tb.n; i++) {
		struct artifs_tb_ent *en = i < tb.n ? &tb.ents[i] : NULL;
		size_t gend = g, nlen = 0;
		int c = 1;

		/* the run of edits for this entry, and edits for names before it */
		while (g < hi) {
			const char *p = a->e->v[g].path + off;
			nlen = first_len(p);
			if (en) {
				c = memcmp(p, en->name, nlen < en->name_len ? nlen : en->name_len);
				if (!c)
					c = nlen < en->name_len ? -1 : nlen > en->name_len;
			} else {
				c = -1;
			}
			if (c >= 0)
				break;
			problem(a, a->e->v[g].line, "no file or directory '%s'", a->e->v[g].path);
			g++;
		}
		if (!en)
			break;
		gend = g;	/* no run for this entry unless one matches below */
		if (g < hi && c == 0) {
			while (gend < hi) {
				const char *p = a->e->v[gend].path + off;
				size_t l = first_len(p);
				if (l != en->name_len || memcmp(p, en->name, l))
					break;
				gend++;
			}
		}
		cpath.len = 0;
		artifs_buf_put(&cpath, dpath, strlen(dpath));
		if (*dpath)
			artifs_buf_put(&cpath, "/", 1);
		artifs_buf_put(&cpath, en->name, en->name_len);
		if ((rc = artifs_buf_put(&cpath, "", 1)))
			goto done;
		if (en->type == ARTIFS_T_FILE) {
			size_t k;
			artifs_oid nl;
			if (gend == g && !all)
				continue;
			for (k = g; k < gend; k++)
				if (a->e->v[k].path[off + en->name_len] == '/')
					problem(a, a->e->v[k].line, "'%s' is a file, not a directory",
						(char *)cpath.ptr);
			if ((rc = relabel(a, (char *)cpath.ptr, &en->labels, a->e->v + g, gend - g, &nl)))
				goto done;
			if (artifs_oid_cmp(&nl, &en->labels)) {
				en->labels = nl;
				changed = 1;
			}
		} else if (en->type == ARTIFS_T_DIR) {
			size_t self = g, ninh = a->ninh;
			artifs_oid nt;
			if (gend == g && !all)
				continue;
			while (self < gend && a->e->v[self].path[off + en->name_len] == '\0') {
				if ((rc = push_inh(a, &a->e->v[self])))
					goto done;
				self++;
			}
			rc = apply_dir(a, &en->id, (char *)cpath.ptr, self, gend,
				off + en->name_len + 1, &nt);
			a->ninh = ninh;
			if (rc)
				goto done;
			if (artifs_oid_cmp(&nt, &en->id)) {
				en->id = nt;
				changed = 1;
			}
		} else {
			for (size_t k = g; k < gend; k++)
				problem(a, a->e->v[k].line, "'%s' is a symbolic link; only files carry labels",
					(char *)cpath.ptr);
		}
		g = gend;
	}
	if (!changed || a->nerr) {
		*out = *tree;
		rc = 0;
		goto done;
	}
	if (!(rc = artifs_tree_builder_encode(&tb, &rec)))
		rc = artifs_writer_put_tree(a->w, out, rec.ptr, rec.len);
done:
	artifs_tree_builder_release(&tb);
	artifs_buf_release(&rec);
	artifs_buf_release(&cpath);
	return rc;
}

int artifs_labels_apply(artifs_writer *w, const artifs_oid *root, artifs_label_edits *e,
	artifs_oid *out, artifs_label_apply_stats *st)
{
	struct ap a = { 0 };
	artifs_label_apply_stats local = { 0 };
	size_t lo = 0;
	int rc = 0;

	a.w = w;
	a.s = NULL;
	a.e = e;
	a.st = st ? st : &local;
	memset(a.st, 0, sizeof(*a.st));
	a.s = artifs_writer_store(w);
	if (e->n > 1)
		qsort(e->v, e->n, sizeof(*e->v), edit_cmp);
	int bad = 0;

	for (size_t i = 0; i < e->n; i++) {
		const artifs_label_edit *x = &e->v[i];
		bad += !artifs_label_key_valid(x->key, strlen(x->key)) ||
			(x->value && !artifs_label_value_valid(x->value, strlen(x->value)));
		if (!artifs_label_key_valid(x->key, strlen(x->key)))
			problem(&a, x->line, "invalid label key '%s' (1-%d of a-z 0-9 _ . -, "
				"starting with a letter or digit)", x->key, ARTIFS_LABEL_KEY_MAX);
		else if (x->value && !artifs_label_value_valid(x->value, strlen(x->value)))
			problem(&a, x->line, "invalid value for '%s' on '%s' (1-%d bytes of UTF-8 "
				"without NUL or line breaks)", x->key, x->path, ARTIFS_LABEL_VALUE_MAX);
		if (i && !strcmp(x->path, x[-1].path) && !strcmp(x->key, x[-1].key)) {
			if (x->line)
				problem(&a, x->line, "'%s' is labelled '%s' again (first on line %llu)",
					x->path, x->key, (unsigned long long)x[-1].line);
			else
				problem(&a, 0, "'%s' is given twice for '%s'", x->key, x->path);
		}
	}
	if (!bad) {
		/* look for unknown paths too, so that one run reports them all */
		/* edits of the root itself apply to every file */
		while (lo < e->n && e->v[lo].path[0] == '\0') {
			if ((rc = push_inh(&a, &e->v[lo])))
				goto done;
			lo++;
		}
		rc = apply_dir(&a, root, "", lo, e->n, 0, out);
	}
	if (!rc && a.nerr) {
		if (a.nerr > MAX_REPORTED) {
			char more[64];
			snprintf(more, sizeof(more), "\n  ... and %d more", a.nerr - MAX_REPORTED);
			artifs_buf_put(&a.errs, more, strlen(more));
		}
		artifs_buf_put(&a.errs, "", 1);
		if (e->source)
			rc = artifs_error(ARTIFS_EINVAL, "%s: refused, nothing changed:\n  %s",
				e->source, (char *)a.errs.ptr);
		else if (a.nerr == 1)
			rc = artifs_error(ARTIFS_EINVAL, "%s", (char *)a.errs.ptr);
		else
			rc = artifs_error(ARTIFS_EINVAL, "refused, nothing changed:\n  %s",
				(char *)a.errs.ptr);
	}
done:
	free(a.inh);
	artifs_buf_release(&a.errs);
	artifs_buf_release(&a.rec);
	artifs_buf_release(&a.old);
	return rc;
}

/* ---- walk and manifest ---- */

struct lw {
	artifs_store *s;
	MDB_txn *txn;
	artifs_label_walk_fn fn;
	void *ctx;
	artifs_buf path;
	artifs_label labels[ARTIFS_LABELS_PER_FILE_MAX];
};

static int walk_dir(struct lw *l, const artifs_oid *tree)
{
	artifs_tree_view t;
	int rc;

	if ((rc = artifs_tree_load(&t, l->s, l->txn, tree)))
		return rc;
	for (uint32_t i = 0; i < t.count; i++) {
		artifs_tree_entry en;
		size_t old = l->path.len, n;
		if ((rc = artifs_tree_entry_at(&t, i, &en)))
			return rc;
		if (en.type == ARTIFS_T_LINK || (en.type == ARTIFS_T_FILE && artifs_oid_is_zero(&en.labels)))
			continue;
		if (old)
			artifs_buf_put(&l->path, "/", 1);
		artifs_buf_put(&l->path, en.name, en.name_len);
		if ((rc = artifs_buf_put(&l->path, "", 1)))
			return rc;
		l->path.len--;
		if (en.type == ARTIFS_T_DIR)
			rc = walk_dir(l, &en.id);
		else if (!(rc = artifs_labelset_load(l->labels, ARTIFS_LABELS_PER_FILE_MAX, &n, l->s,
				l->txn, &en.labels)))
			rc = l->fn((const char *)l->path.ptr, l->path.len, l->labels, n, l->ctx);
		l->path.len = old;
		if (rc)
			return rc;
	}
	return 0;
}

int artifs_labels_walk(artifs_store *s, MDB_txn *txn, const artifs_oid *root, const char *prefix,
	artifs_label_walk_fn fn, void *ctx)
{
	struct lw l = { s, txn, fn, ctx, { 0 }, { { 0 } } };
	int rc;

	if ((rc = artifs_buf_put(&l.path, prefix, strlen(prefix) + 1)))
		return rc;
	l.path.len--;
	rc = walk_dir(&l, root);
	artifs_buf_release(&l.path);
	return rc;
}

static int json_str(artifs_buf *out, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t i = 0, start = 0;
	int rc = artifs_buf_put(out, "\"", 1);

	while (!rc && i < len) {
		unsigned char c = (unsigned char)s[i];
		const char *esc = NULL;
		char u[7];
		size_t adv = 1;
		if (c == '"')
			esc = "\\\"";
		else if (c == '\\')
			esc = "\\\\";
		else if (c == '\n')
			esc = "\\n";
		else if (c == '\t')
			esc = "\\t";
		else if (c == '\r')
			esc = "\\r";
		else if (c < 0x20) {
			u[0] = '\\'; u[1] = 'u'; u[2] = '0'; u[3] = '0';
			u[4] = hex[c >> 4]; u[5] = hex[c & 15]; u[6] = '\0';
			esc = u;
		} else if (c >= 0x80) {
			/* keep valid sequences, replace each invalid byte by U+FFFD */
			size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
			if (n > 1 && i + n <= len && artifs_utf8_valid(s + i, n)) {
				i += n;
				continue;
			}
			esc = "\xef\xbf\xbd";
		}
		if (!esc) {
			i++;
			continue;
		}
		rc = artifs_buf_put(out, s + start, i - start);
		if (!rc)
			rc = artifs_buf_put(out, esc, strlen(esc));
		i += adv;
		start = i;
	}
	if (!rc)
		rc = artifs_buf_put(out, s + start, len - start);
	return rc ? rc : artifs_buf_put(out, "\"", 1);
}

int artifs_labels_json_line(artifs_buf *out, const char *path, size_t path_len,
	const artifs_label *labels, size_t n)
{
	int rc = artifs_buf_put(out, "{\"path\":", 8);

	if (!rc)
		rc = json_str(out, path, path_len);
	if (!rc)
		rc = artifs_buf_put(out, ",\"labels\":{", 11);
	for (size_t i = 0; !rc && i < n; i++) {
		if (i)
			rc = artifs_buf_put(out, ",", 1);
		if (!rc)
			rc = json_str(out, labels[i].key, labels[i].key_len);
		if (!rc)
			rc = artifs_buf_put(out, ":", 1);
		if (!rc)
			rc = json_str(out, labels[i].value, labels[i].value_len);
	}
	return rc ? rc : artifs_buf_put(out, "}}\n", 3);
}

struct mf {
	artifs_buf buf;
	uint64_t n;
};

static int manifest_line(const char *path, size_t path_len, const artifs_label *labels, size_t n,
	void *ctx)
{
	struct mf *m = ctx;

	m->n++;
	return artifs_labels_json_line(&m->buf, path, path_len, labels, n);
}

int artifs_labels_manifest(artifs_writer *w, const artifs_oid *root, artifs_oid *blob,
	uint64_t *nfiles)
{
	struct mf m = { { 0 }, 0 };
	uint64_t size;
	int rc;

	memset(blob, 0, sizeof(*blob));
	rc = artifs_labels_walk(artifs_writer_store(w), artifs_writer_rtxn(w), root, "",
		manifest_line, &m);
	if (!rc && m.n) {
		if (!(rc = artifs_writer_file_begin(w)) &&
		    !(rc = artifs_writer_file_write(w, m.buf.ptr, m.buf.len)))
			rc = artifs_writer_file_end(w, blob, &size);
	}
	if (nfiles)
		*nfiles = m.n;
	artifs_buf_release(&m.buf);
	return rc;
}

/* ---- carrying labels over to a new snapshot ---- */

int artifs_prevdir_load(artifs_prevdir *pd, artifs_store *s, MDB_txn *txn, const artifs_oid *id)
{
	artifs_tree_view t;
	size_t n = 0;
	int rc;

	memset(pd, 0, sizeof(*pd));
	if ((rc = artifs_tree_load(&t, s, txn, id)))
		return rc;
	if (!t.count)
		return 0;
	if (!(pd->v = calloc(t.count, sizeof(*pd->v))))
		return artifs_error(-ENOMEM, "out of memory");
	for (int pass = 0; pass < 2; pass++) {
		size_t off = 0;
		n = 0;
		for (uint32_t i = 0; i < t.count; i++) {
			artifs_tree_entry e;
			if ((rc = artifs_tree_entry_at(&t, i, &e)))
				return rc;
			if (!(e.type == ARTIFS_T_DIR || (e.type == ARTIFS_T_FILE && !artifs_oid_is_zero(&e.labels))))
				continue;
			if (pass == 0) {
				if ((rc = artifs_buf_put(&pd->names, e.name, e.name_len)) ||
				    (rc = artifs_buf_put(&pd->names, "", 1)))
					return rc;
				continue;
			}
			pd->v[n].name = (char *)pd->names.ptr + off;
			off += e.name_len + 1;
			pd->v[n].type = e.type;
			pd->v[n].id = e.id;
			pd->v[n].labels = e.labels;
			n++;
		}
	}
	pd->n = n;
	return 0;
}

const artifs_prev_ent *artifs_prevdir_find(const artifs_prevdir *pd, const char *name)
{
	size_t lo = 0, hi = pd->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(pd->v[mid].name, name);
		if (!c)
			return &pd->v[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

void artifs_prevdir_release(artifs_prevdir *pd)
{
	free(pd->v);
	artifs_buf_release(&pd->names);
}

/* ---- a commit that changes labels only ---- */

struct lc {
	artifs_store *s;
	const char *repo, *branch;
	artifs_commit commit;
	artifs_oid head, new_id;
};

static int lc_finish(MDB_txn *txn, void *ctx)
{
	struct lc *c = ctx;
	int rc;

	if ((rc = artifs_commit_write(&c->new_id, c->s, txn, &c->commit)))
		return rc;
	return artifs_ref_update(c->s, txn, c->repo, c->branch, ARTIFS_REF_BRANCH, &c->head,
		&c->new_id, c->commit.author, c->commit.message);
}

int artifs_label_commit(artifs_oid *out, artifs_store *s, const char *repo, const char *branch,
	artifs_label_edits *e, const artifs_label_commit_opts *o, artifs_label_commit_stats *st)
{
	artifs_label_commit_stats local = { 0 };
	artifs_label_apply_stats as;
	artifs_writer *w = NULL;
	artifs_commit *parent = NULL;
	struct lc c = { 0 };
	artifs_oid root;
	struct timespec now;
	int rc;

	if (!st)
		st = &local;
	memset(st, 0, sizeof(*st));
	if ((rc = artifs_store_lock(s, 0, 0)))
		return rc;
	if ((rc = artifs_writer_new(&w, s)) ||
	    (rc = artifs_branch_head(&c.head, s, artifs_writer_rtxn(w), repo, branch,
			"labels change on branches")))
		goto done;
	if (artifs_oid_is_zero(&c.head)) {
		rc = artifs_error(ARTIFS_ENOTFOUND, "branch '%s' of '%s' has no commit yet; "
			"commit data first", branch, repo);
		goto done;
	}
	if ((rc = artifs_commit_load(&parent, s, artifs_writer_rtxn(w), &c.head)) ||
	    (rc = artifs_labels_apply(w, &parent->tree, e, &root, &as)))
		goto done;
	st->files_changed = as.files_changed;
	if (!artifs_oid_cmp(&root, &parent->tree)) {
		*out = c.head;
		goto done;
	}
	c.s = s;
	c.repo = repo;
	c.branch = branch;
	c.commit.tree = root;
	if ((rc = artifs_writer_flush(w)) ||
	    (rc = artifs_labels_manifest(w, &root, &c.commit.labels, &st->labelled)))
		goto done;
	clock_gettime(CLOCK_REALTIME, &now);
	c.commit.nparents = 1;
	c.commit.parents = &c.head;
	c.commit.time = (int64_t)now.tv_sec;
	c.commit.repo = (char *)repo;
	c.commit.author = (char *)(o && o->author ? o->author : artifs_author_default());
	c.commit.message = (char *)(o && o->message && *o->message ? o->message : "relabel");
	if (o && o->before_move &&
	    (rc = artifs_commit_before_move(w, &c.head, &c.commit, o->before_move, o->move_ctx)))
		goto done;
	if ((rc = artifs_writer_finish(w, lc_finish, &c)))
		goto done;
	st->created = 1;
	*out = c.new_id;
done:
	artifs_commit_free(parent);
	artifs_writer_free(w);
	artifs_store_unlock(s);
	return rc;
}
