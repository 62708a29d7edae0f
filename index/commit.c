/*
 * Commit record (little-endian):
 *   u8 'C' | u8 version=1 | u16 0 | u32 nparents
 *   16 tree | 16 labels manifest blob | i64 time
 *   nparents x 16 parent id
 *   str repo | str author | str message      (str = u32 length + bytes)
 *   u32 nmeta | nmeta x (str key | str value), sorted by key
 */
#include "commit.h"
#include "error.h"
#include "store_int.h"

#include <errno.h>
#include <stdlib.h>

int artifs_meta_key_valid(const char *key)
{
	size_t n = strlen(key);

	if (n == 0 || n > 128)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = key[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

static int meta_cmp(const void *a, const void *b)
{
	return strcmp(((const artifs_meta *)a)->key, ((const artifs_meta *)b)->key);
}

int artifs_commit_encode(artifs_buf *out, const artifs_commit *c)
{
	artifs_meta *m = NULL;
	uint8_t hdr[48];
	int rc = 0;

	if (c->nmeta) {
		if (!(m = malloc(c->nmeta * sizeof(*m))))
			return artifs_error(-ENOMEM, "out of memory");
		memcpy(m, c->meta, c->nmeta * sizeof(*m));
		qsort(m, c->nmeta, sizeof(*m), meta_cmp);
		for (size_t i = 1; i < c->nmeta; i++)
			if (strcmp(m[i - 1].key, m[i].key) == 0) {
				rc = artifs_error(ARTIFS_EINVAL, "metadata key '%s' given twice", m[i].key);
				goto done;
			}
	}
	hdr[0] = 'C';
	hdr[1] = 1;
	put_le16(hdr + 2, 0);
	put_le32(hdr + 4, c->nparents);
	memcpy(hdr + 8, c->tree.id, 16);
	memcpy(hdr + 24, c->labels.id, 16);
	put_le64(hdr + 40, (uint64_t)c->time);
	if ((rc = artifs_buf_put(out, hdr, sizeof(hdr))))
		goto done;
	for (uint32_t i = 0; i < c->nparents; i++)
		if ((rc = artifs_buf_put(out, c->parents[i].id, 16)))
			goto done;
	if ((rc = artifs_buf_put_str(out, c->repo, strlen(c->repo))) ||
	    (rc = artifs_buf_put_str(out, c->author, strlen(c->author))) ||
	    (rc = artifs_buf_put_str(out, c->message, strlen(c->message))) ||
	    (rc = artifs_buf_put_le32(out, (uint32_t)c->nmeta)))
		goto done;
	for (size_t i = 0; i < c->nmeta; i++)
		if ((rc = artifs_buf_put_str(out, m[i].key, strlen(m[i].key))) ||
		    (rc = artifs_buf_put_str(out, m[i].value, strlen(m[i].value))))
			goto done;
done:
	free(m);
	return rc;
}

/* A length-prefixed string as a fresh NUL-terminated copy; NULL on error. */
static char *rd_str(artifs_rd *r)
{
	uint32_t n = rd_le32(r);
	const uint8_t *p = rd_take(r, n);
	char *s;

	if (!p || memchr(p, '\0', n))
		return r->err = 1, NULL;
	if (!(s = malloc((size_t)n + 1)))
		return r->err = 1, NULL;
	memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

int artifs_commit_decode(artifs_commit **out, const void *data, size_t len)
{
	artifs_rd r = { data, (const uint8_t *)data + len, 0 };
	artifs_commit *c = calloc(1, sizeof(*c));
	const uint8_t *h;
	uint32_t nmeta;

	if (!c)
		return artifs_error(-ENOMEM, "out of memory");
	h = rd_take(&r, 48);
	if (!h || h[0] != 'C' || h[1] != 1 || h[2] || h[3])
		goto bad;
	c->nparents = get_le32(h + 4);
	memcpy(c->tree.id, h + 8, 16);
	memcpy(c->labels.id, h + 24, 16);
	c->time = (int64_t)get_le64(h + 40);
	if (c->nparents > (size_t)(r.end - r.p) / 16)
		goto bad;
	if (c->nparents) {
		if (!(c->parents = malloc(c->nparents * sizeof(artifs_oid))))
			goto bad;
		memcpy(c->parents, rd_take(&r, (size_t)c->nparents * 16), (size_t)c->nparents * 16);
	}
	c->repo = rd_str(&r);
	c->author = rd_str(&r);
	c->message = rd_str(&r);
	nmeta = rd_le32(&r);
	if (r.err || nmeta > (size_t)(r.end - r.p) / 8)
		goto bad;
	if (nmeta && !(c->meta = calloc(nmeta, sizeof(*c->meta))))
		goto bad;
	for (uint32_t i = 0; i < nmeta; i++) {
		c->meta[i].key = rd_str(&r);
		c->meta[i].value = rd_str(&r);
		c->nmeta = i + 1;
		if (r.err || (i > 0 && strcmp(c->meta[i - 1].key, c->meta[i].key) >= 0))
			goto bad;
	}
	if (r.err || r.p != r.end)
		goto bad;
	*out = c;
	return 0;
bad:
	artifs_commit_free(c);
	return artifs_error(ARTIFS_ECORRUPT, "malformed commit record");
}

void artifs_commit_free(artifs_commit *c)
{
	if (!c)
		return;
	free(c->parents);
	free(c->repo);
	free(c->author);
	free(c->message);
	for (size_t i = 0; i < c->nmeta; i++) {
		free(c->meta[i].key);
		free(c->meta[i].value);
	}
	free(c->meta);
	free(c);
}

int artifs_commit_load(artifs_commit **out, artifs_store *s, MDB_txn *txn, const artifs_oid *id)
{
	MDB_val v;
	int rc = artifs_store_get(txn, s->commits, id, &v);

	if (rc)
		return rc;
	if ((rc = artifs_commit_decode(out, v.mv_data, v.mv_size))) {
		char hex[ARTIFS_OID_HEXSZ + 1];
		return artifs_error(rc, "commit %s is corrupt", artifs_oid_fmt(hex, id));
	}
	return 0;
}

int artifs_commit_write(artifs_oid *id, artifs_store *s, MDB_txn *txn, const artifs_commit *c)
{
	artifs_buf b = { 0 };
	artifs_oid oid;
	int rc;

	if ((rc = artifs_commit_encode(&b, c)))
		goto done;
	artifs_oid_hash(&oid, b.ptr, b.len);
	rc = artifs_store_put(txn, s->commits, &oid, b.ptr, b.len);
	if (rc >= 0) {
		*id = oid;
		rc = 0;
	}
done:
	artifs_buf_release(&b);
	return rc;
}
