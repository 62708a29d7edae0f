/*
 * Manifest record (little-endian):
 *   u8 'B' | u8 version=1 | u16 0 | u32 nchunks | u64 size | 16 digest
 *   nchunks x ( u64 offset | 16 chunk id )
 */
#include "blob.h"
#include "pagecache.h"
#include "error.h"
#include "store_int.h"

/* The header and the record's length; with `walk`, every offset as well. */
static int parse(artifs_blob_view *out, const void *data, size_t len, int walk)
{
	const uint8_t *p = data;
	uint64_t prev = 0;
	artifs_blob_view b;

	if (len < ARTIFS_BLOB_HDRSZ || p[0] != 'B' || p[1] != 1 || p[2] || p[3])
		return artifs_error(ARTIFS_ECORRUPT, "malformed file manifest");
	b.nchunks = get_le32(p + 4);
	b.size = get_le64(p + 8);
	memcpy(b.digest.id, p + 16, 16);
	b.entries = p + ARTIFS_BLOB_HDRSZ;
	if ((len - ARTIFS_BLOB_HDRSZ) / ARTIFS_BLOB_ENTSZ != b.nchunks ||
	    (len - ARTIFS_BLOB_HDRSZ) % ARTIFS_BLOB_ENTSZ != 0 ||
	    (b.nchunks == 0) != (b.size == 0))
		return artifs_error(ARTIFS_ECORRUPT, "malformed file manifest (chunk count)");
	for (uint32_t i = 0; walk && i < b.nchunks; i++) {
		uint64_t off = get_le64(b.entries + (size_t)i * ARTIFS_BLOB_ENTSZ);
		if ((i == 0 && off != 0) || (i > 0 && off <= prev) || off >= b.size)
			return artifs_error(ARTIFS_ECORRUPT, "malformed file manifest (offsets)");
		prev = off;
	}
	*out = b;
	return 0;
}

int artifs_blob_parse(artifs_blob_view *out, const void *data, size_t len)
{
	return parse(out, data, len, 1);
}

uint64_t artifs_blob_chunk_off(const artifs_blob_view *b, uint32_t i)
{
	return get_le64(b->entries + (size_t)i * ARTIFS_BLOB_ENTSZ);
}

uint64_t artifs_blob_chunk_len(const artifs_blob_view *b, uint32_t i)
{
	uint64_t end = i + 1 < b->nchunks ? artifs_blob_chunk_off(b, i + 1) : b->size;

	return end - artifs_blob_chunk_off(b, i);
}

void artifs_blob_chunk_id(const artifs_blob_view *b, uint32_t i, artifs_oid *out)
{
	memcpy(out->id, b->entries + (size_t)i * ARTIFS_BLOB_ENTSZ + 8, 16);
}

uint32_t artifs_blob_find(const artifs_blob_view *b, uint64_t off)
{
	uint32_t lo = 0, hi = b->nchunks;

	/* last chunk whose offset <= off */
	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (artifs_blob_chunk_off(b, mid) <= off)
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

int artifs_blob_encode(artifs_buf *out, uint64_t size, const artifs_oid *digest,
	uint32_t nchunks, const uint64_t *offs, const artifs_oid *ids)
{
	uint8_t *p;
	int rc;

	if ((rc = artifs_buf_grow(out, ARTIFS_BLOB_HDRSZ + (size_t)nchunks * ARTIFS_BLOB_ENTSZ)))
		return rc;
	p = out->ptr + out->len;
	p[0] = 'B';
	p[1] = 1;
	put_le16(p + 2, 0);
	put_le32(p + 4, nchunks);
	put_le64(p + 8, size);
	memcpy(p + 16, digest->id, 16);
	p += ARTIFS_BLOB_HDRSZ;
	for (uint32_t i = 0; i < nchunks; i++, p += ARTIFS_BLOB_ENTSZ) {
		put_le64(p, offs[i]);
		memcpy(p + 8, ids[i].id, 16);
	}
	out->len += ARTIFS_BLOB_HDRSZ + (size_t)nchunks * ARTIFS_BLOB_ENTSZ;
	return 0;
}

static int load(artifs_blob_view *out, artifs_store *s, MDB_txn *txn, const artifs_oid *id,
	int walk)
{
	MDB_val v;
	int rc = artifs_store_get(txn, s->blobs, id, &v);

	if (rc)
		return rc;
	if ((rc = parse(out, v.mv_data, v.mv_size, walk))) {
		char hex[ARTIFS_OID_HEXSZ + 1];
		return artifs_error(rc, "file manifest %s is corrupt", artifs_oid_fmt(hex, id));
	}
	return 0;
}

int artifs_blob_load(artifs_blob_view *out, artifs_store *s, MDB_txn *txn, const artifs_oid *id)
{
	return load(out, s, txn, id, 1);
}

int artifs_blob_load_again(artifs_blob_view *out, artifs_store *s, MDB_txn *txn,
	const artifs_oid *id)
{
	return load(out, s, txn, id, 0);
}

int artifs_blob_chunk(const uint8_t **data, size_t *len, artifs_store *s, MDB_txn *txn,
	const artifs_blob_view *b, uint32_t i, int verify)
{
	artifs_oid id, got;
	char hex[ARTIFS_OID_HEXSZ + 1];
	MDB_val v;
	int rc;

	artifs_blob_chunk_id(b, i, &id);
	if ((rc = artifs_store_get(txn, s->chunks, &id, &v)))
		return rc == ARTIFS_ENOTFOUND ? artifs_error(ARTIFS_ECORRUPT,
			"chunk %s is missing from the store", artifs_oid_fmt(hex, &id)) : rc;
	if (v.mv_size != artifs_blob_chunk_len(b, i))
		return artifs_error(ARTIFS_ECORRUPT, "chunk %s has %zu bytes, manifest says %llu",
			artifs_oid_fmt(hex, &id), v.mv_size,
			(unsigned long long)artifs_blob_chunk_len(b, i));
	if (verify) {
		artifs_store_fetch(s, v.mv_data, v.mv_size);	/* one read, not a fault a page */
		artifs_oid_hash(&got, v.mv_data, v.mv_size);
		if (artifs_oid_cmp(&got, &id))
			return artifs_error(ARTIFS_ECORRUPT, "chunk %s is corrupt (bytes hash to %s)",
				artifs_oid_fmt(hex, &id), artifs_oid_fmt((char[33]){0}, &got));
	}
	*data = v.mv_data;
	*len = v.mv_size;
	return 0;
}
