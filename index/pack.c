#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "error.h"
#include "pack.h"

void artifs_pack_builder_init(artifs_pack_builder *b)
{
	memset(b, 0, sizeof(*b));
}

void artifs_pack_builder_reset(artifs_pack_builder *b)
{
	b->data.len = 0;
	b->n = 0;
}

void artifs_pack_builder_release(artifs_pack_builder *b)
{
	artifs_buf_release(&b->data);
	free(b->ents);
	memset(b, 0, sizeof(*b));
}

int artifs_pack_add(artifs_pack_builder *b, uint8_t kind, const artifs_oid *id,
	const void *data, size_t len)
{
	artifs_pack_entry *e;

	if (len > UINT32_MAX)
		return artifs_error(ARTIFS_EINVAL, "object too large for a pack");
	if (!b->data.len && artifs_buf_put(&b->data, ARTIFS_PACK_MAGIC, ARTIFS_PACK_HDRSZ))
		return -ENOMEM;
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 1024;
		void *p = realloc(b->ents, cap * sizeof(*b->ents));
		if (!p)
			return -ENOMEM;
		b->ents = p;
		b->cap = cap;
	}
	e = &b->ents[b->n];
	e->id = *id;
	e->kind = kind;
	e->len = (uint32_t)len;
	e->off = b->data.len;
	e->pack = 0;
	if (artifs_buf_put(&b->data, data, len))
		return -ENOMEM;
	b->n++;
	return 0;
}

static int cmp_ent(const void *a, const void *b)
{
	return artifs_oid_cmp(&((const artifs_pack_entry *)a)->id,
		&((const artifs_pack_entry *)b)->id);
}

/*
 * Index: "ARTIFSI1" | u32 count | u32 0
 *        count x ( 16 id | u8 kind | 3 x 0 | u32 len | u64 off | 8 x 0 )
 *        16 XXH3-128 of everything before
 */
int artifs_pack_finish(artifs_pack_builder *b, artifs_oid *pack_id, artifs_buf *idx)
{
	static const uint8_t zero[8];
	size_t start = idx->len;
	artifs_oid sum;

	artifs_oid_hash(pack_id, b->data.ptr, b->data.len);
	if (b->n)
		qsort(b->ents, b->n, sizeof(*b->ents), cmp_ent);
	if (artifs_buf_put(idx, ARTIFS_PACK_IDX_MAGIC, 8) ||
	    artifs_buf_put_le32(idx, (uint32_t)b->n) || artifs_buf_put_le32(idx, 0))
		return -ENOMEM;
	for (size_t i = 0; i < b->n; i++) {
		const artifs_pack_entry *e = &b->ents[i];
		uint8_t k[4] = { e->kind, 0, 0, 0 };
		if (artifs_buf_put(idx, e->id.id, 16) || artifs_buf_put(idx, k, 4) ||
		    artifs_buf_put_le32(idx, e->len) || artifs_buf_put_le64(idx, e->off) ||
		    artifs_buf_put(idx, zero, 8))
			return -ENOMEM;
	}
	artifs_oid_hash(&sum, idx->ptr + start, idx->len - start);
	return artifs_buf_put(idx, sum.id, 16) ? -ENOMEM : 0;
}

static int kind_valid(uint8_t k)
{
	return k == ARTIFS_OBJ_CHUNK || k == ARTIFS_OBJ_BLOB || k == ARTIFS_OBJ_TREE ||
		k == ARTIFS_OBJ_LABELSET || k == ARTIFS_OBJ_COMMIT;
}

int artifs_pack_idx_parse(const void *data, size_t len, uint64_t pack_size, uint32_t pack,
	artifs_pack_entry **out, size_t *n)
{
	const uint8_t *p = data;
	artifs_pack_entry *v;
	artifs_oid sum;
	uint32_t count;

	*out = NULL;
	*n = 0;
	if (len < ARTIFS_PACK_IDX_HDRSZ + 16 || memcmp(p, ARTIFS_PACK_IDX_MAGIC, 8))
		return artifs_error(ARTIFS_ECORRUPT, "not a pack index");
	count = get_le32(p + 8);
	if ((len - ARTIFS_PACK_IDX_HDRSZ - 16) / ARTIFS_PACK_IDX_ENTSZ != count ||
	    (len - ARTIFS_PACK_IDX_HDRSZ - 16) % ARTIFS_PACK_IDX_ENTSZ)
		return artifs_error(ARTIFS_ECORRUPT, "pack index size does not match its count");
	artifs_oid_hash(&sum, p, len - 16);
	if (memcmp(sum.id, p + len - 16, 16))
		return artifs_error(ARTIFS_ECORRUPT, "pack index checksum mismatch");
	v = malloc((count ? count : 1) * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < count; i++) {
		const uint8_t *e = p + ARTIFS_PACK_IDX_HDRSZ + (size_t)i * ARTIFS_PACK_IDX_ENTSZ;
		memcpy(v[i].id.id, e, 16);
		v[i].kind = e[16];
		v[i].len = get_le32(e + 20);
		v[i].off = get_le64(e + 24);
		v[i].pack = pack;
		if (!kind_valid(v[i].kind) || v[i].off < ARTIFS_PACK_HDRSZ ||
		    (pack_size && (v[i].off > pack_size || v[i].len > pack_size - v[i].off)) ||
		    (i && artifs_oid_cmp(&v[i - 1].id, &v[i].id) >= 0)) {
			free(v);
			return artifs_error(ARTIFS_ECORRUPT, "pack index entry %u is malformed", i);
		}
	}
	*out = v;
	*n = count;
	return 0;
}

int artifs_obj_verify(uint8_t kind, const artifs_oid *id, const void *data, size_t len)
{
	artifs_oid got;

	if (kind != ARTIFS_OBJ_CHUNK && (!len || *(const uint8_t *)data != kind))
		return artifs_error(ARTIFS_ECORRUPT, "object is not of kind '%c'", kind);
	artifs_oid_hash(&got, data, len);
	if (artifs_oid_cmp(&got, id)) {
		char hex[ARTIFS_OID_HEXSZ + 1];
		return artifs_error(ARTIFS_ECORRUPT, "object %s does not match its id",
			artifs_oid_fmt(hex, id));
	}
	return 0;
}
