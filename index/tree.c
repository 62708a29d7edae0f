/*
 * Tree record (little-endian):
 *   u8 'T' | u8 version=1 | u16 0 | u32 count
 *   count x 48-byte entries, sorted by name (bytewise, shorter first):
 *     u32 name_off | u16 name_len | u8 type | u8 flags | u64 size
 *     16 object id | 16 labelset id
 *   names area: the names back to back, name_off relative to its start
 */
#include "tree.h"
#include "error.h"
#include "store_int.h"

#include <errno.h>
#include <stdlib.h>

int artifs_name_valid(const char *name, size_t len)
{
	if (len == 0 || len > ARTIFS_NAME_MAX)
		return 0;
	if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return 0;
	return memchr(name, '/', len) == NULL && memchr(name, '\0', len) == NULL;
}

int artifs_tree_parse(artifs_tree_view *out, const void *data, size_t len)
{
	const uint8_t *p = data;
	uint32_t count;

	if (len < ARTIFS_TREE_HDRSZ || p[0] != 'T' || p[1] != 1 || p[2] || p[3])
		return artifs_error(ARTIFS_ECORRUPT, "malformed tree record");
	count = get_le32(p + 4);
	if ((len - ARTIFS_TREE_HDRSZ) / ARTIFS_TREE_ENTSZ < count)
		return artifs_error(ARTIFS_ECORRUPT, "malformed tree record (entry count)");
	out->count = count;
	out->table = p + ARTIFS_TREE_HDRSZ;
	out->names = out->table + (size_t)count * ARTIFS_TREE_ENTSZ;
	out->names_len = len - ARTIFS_TREE_HDRSZ - (size_t)count * ARTIFS_TREE_ENTSZ;
	return 0;
}

int artifs_tree_entry_at(const artifs_tree_view *t, uint32_t i, artifs_tree_entry *out)
{
	const uint8_t *e;
	uint32_t off;
	uint16_t nlen;

	if (i >= t->count)
		return artifs_error(ARTIFS_EINVAL, "tree entry %u out of range", i);
	e = t->table + (size_t)i * ARTIFS_TREE_ENTSZ;
	off = get_le32(e);
	nlen = get_le16(e + 4);
	if (off > t->names_len || nlen > t->names_len - off)
		return artifs_error(ARTIFS_ECORRUPT, "malformed tree record (name bounds)");
	out->name = (const char *)t->names + off;
	out->name_len = nlen;
	out->type = e[6];
	out->flags = e[7];
	out->size = get_le64(e + 8);
	memcpy(out->id.id, e + 16, 16);
	memcpy(out->labels.id, e + 32, 16);
	return 0;
}

static int name_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	if (c)
		return c;
	return alen < blen ? -1 : alen > blen;
}

int artifs_tree_validate(const artifs_tree_view *t)
{
	artifs_tree_entry prev = { 0 }, e;
	int rc;

	for (uint32_t i = 0; i < t->count; i++) {
		if ((rc = artifs_tree_entry_at(t, i, &e)))
			return rc;
		if (!artifs_name_valid(e.name, e.name_len))
			return artifs_error(ARTIFS_ECORRUPT, "tree entry %u has an invalid name", i);
		if (e.type < ARTIFS_T_FILE || e.type > ARTIFS_T_LINK || (e.flags & ~ARTIFS_F_EXEC))
			return artifs_error(ARTIFS_ECORRUPT, "tree entry %u has an unknown type", i);
		if (i > 0 && name_cmp(prev.name, prev.name_len, e.name, e.name_len) >= 0)
			return artifs_error(ARTIFS_ECORRUPT, "tree entries are not sorted");
		prev = e;
	}
	return 0;
}

int artifs_tree_search(const artifs_tree_view *t, const char *name, size_t len, uint32_t *index)
{
	uint32_t lo = 0, hi = t->count;
	artifs_tree_entry e;
	int rc;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c;
		if ((rc = artifs_tree_entry_at(t, mid, &e)))
			return rc;
		c = name_cmp(name, len, e.name, e.name_len);
		if (c == 0) {
			*index = mid;
			return 0;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	*index = lo;
	return ARTIFS_ENOTFOUND;
}

int artifs_tree_lookup(const artifs_tree_view *t, const char *name, size_t len,
	artifs_tree_entry *out)
{
	uint32_t i;
	int rc = artifs_tree_search(t, name, len, &i);

	return rc ? rc : artifs_tree_entry_at(t, i, out);
}

int artifs_tree_load(artifs_tree_view *out, artifs_store *s, MDB_txn *txn, const artifs_oid *id)
{
	MDB_val v;
	int rc = artifs_store_get(txn, s->trees, id, &v);

	if (rc)
		return rc;
	if ((rc = artifs_tree_parse(out, v.mv_data, v.mv_size))) {
		char hex[ARTIFS_OID_HEXSZ + 1];
		return artifs_error(rc, "tree %s is corrupt", artifs_oid_fmt(hex, id));
	}
	return 0;
}

int artifs_tree_resolve(artifs_tree_entry *out, artifs_store *s, MDB_txn *txn,
	const artifs_oid *root, const char *path)
{
	artifs_tree_entry e = { .name = "", .type = ARTIFS_T_DIR, .id = *root };
	const char *p = path;
	int rc;

	while (*p) {
		const char *q;
		artifs_tree_view t;
		if (*p == '/') {
			p++;
			continue;
		}
		for (q = p; *q && *q != '/'; q++)
			;
		if (e.type != ARTIFS_T_DIR)
			return artifs_error(-ENOTDIR, "'%.*s' is not a directory", (int)(p - path - 1), path);
		if ((rc = artifs_tree_load(&t, s, txn, &e.id)))
			return rc;
		rc = artifs_tree_lookup(&t, p, (size_t)(q - p), &e);
		if (rc == ARTIFS_ENOTFOUND)
			return artifs_error(ARTIFS_ENOTFOUND, "path '%.*s' does not exist", (int)(q - path), path);
		if (rc)
			return rc;
		p = q;
	}
	*out = e;
	return 0;
}

void artifs_tree_builder_init(artifs_tree_builder *tb)
{
	memset(tb, 0, sizeof(*tb));
}

int artifs_tree_builder_add(artifs_tree_builder *tb, const char *name, size_t len,
	uint8_t type, uint8_t flags, uint64_t size, const artifs_oid *id, const artifs_oid *labels)
{
	struct artifs_tb_ent *e;

	if (!artifs_name_valid(name, len))
		return artifs_error(ARTIFS_EINVAL, "invalid entry name '%.*s'", (int)len, name);
	if (tb->n == tb->cap) {
		size_t cap = tb->cap ? tb->cap * 2 : 16;
		void *p = realloc(tb->ents, cap * sizeof(*tb->ents));
		if (!p)
			return artifs_error(-ENOMEM, "out of memory");
		tb->ents = p;
		tb->cap = cap;
	}
	e = &tb->ents[tb->n];
	if (!(e->name = malloc(len)))
		return artifs_error(-ENOMEM, "out of memory");
	memcpy(e->name, name, len);
	e->name_len = len;
	e->type = type;
	e->flags = flags;
	e->size = size;
	e->id = *id;
	if (labels)
		e->labels = *labels;
	else
		memset(&e->labels, 0, sizeof(e->labels));
	tb->n++;
	return 0;
}

static int tb_cmp(const void *a, const void *b)
{
	const struct artifs_tb_ent *x = a, *y = b;

	return name_cmp(x->name, x->name_len, y->name, y->name_len);
}

int artifs_tree_builder_encode(artifs_tree_builder *tb, artifs_buf *out)
{
	size_t names = 0, base;
	uint32_t off = 0;
	uint8_t *p;
	int rc;

	if (tb->n > 1)
		qsort(tb->ents, tb->n, sizeof(*tb->ents), tb_cmp);
	for (size_t i = 0; i < tb->n; i++) {
		if (i > 0 && tb_cmp(&tb->ents[i - 1], &tb->ents[i]) == 0)
			return artifs_error(ARTIFS_EINVAL, "duplicate entry name '%.*s'",
				(int)tb->ents[i].name_len, tb->ents[i].name);
		names += tb->ents[i].name_len;
	}
	if (tb->n > UINT32_MAX || names > UINT32_MAX)
		return artifs_error(ARTIFS_EINVAL, "directory too large");
	base = out->len;
	if ((rc = artifs_buf_grow(out, ARTIFS_TREE_HDRSZ + tb->n * ARTIFS_TREE_ENTSZ + names)))
		return rc;
	p = out->ptr + base;
	p[0] = 'T';
	p[1] = 1;
	put_le16(p + 2, 0);
	put_le32(p + 4, (uint32_t)tb->n);
	p += ARTIFS_TREE_HDRSZ;
	for (size_t i = 0; i < tb->n; i++, p += ARTIFS_TREE_ENTSZ) {
		const struct artifs_tb_ent *e = &tb->ents[i];
		put_le32(p, off);
		put_le16(p + 4, (uint16_t)e->name_len);
		p[6] = e->type;
		p[7] = e->flags;
		put_le64(p + 8, e->size);
		memcpy(p + 16, e->id.id, 16);
		memcpy(p + 32, e->labels.id, 16);
		off += (uint32_t)e->name_len;
	}
	for (size_t i = 0; i < tb->n; i++) {
		memcpy(p, tb->ents[i].name, tb->ents[i].name_len);
		p += tb->ents[i].name_len;
	}
	out->len = base + ARTIFS_TREE_HDRSZ + tb->n * ARTIFS_TREE_ENTSZ + names;
	return 0;
}

void artifs_tree_builder_release(artifs_tree_builder *tb)
{
	for (size_t i = 0; i < tb->n; i++)
		free(tb->ents[i].name);
	free(tb->ents);
	memset(tb, 0, sizeof(*tb));
}
