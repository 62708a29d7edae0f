#include "writer.h"
#include "blob.h"
#include "codec.h"
#include "error.h"
#include "store_int.h"

#include <errno.h>
#include <stdlib.h>

enum { OP_CHUNK, OP_BLOB, OP_TREE, OP_LABELS };

struct op {
	artifs_oid id;
	size_t off, len;	/* in the arena */
	int kind;
};

struct artifs_writer {
	artifs_store *s;
	MDB_txn *rtxn;			/* existence checks; reset per batch */
	const artifs_cdc_params *cdc;
	artifs_buf arena;		/* bytes of pending objects */
	struct op *ops;
	size_t nops, capops;
	uint32_t *set;			/* open addressing: op index + 1, 0 = empty */
	size_t setcap;
	/* the current file */
	int in_file;
	uint8_t *fbuf;
	size_t fcap, flen;		/* buffered, not yet cut */
	uint64_t fsize;
	artifs_hasher *fhash;
	uint64_t *offs;
	artifs_oid *ids;
	size_t nchunks, capchunks;
	artifs_writer_stats st;
};

int artifs_writer_new(artifs_writer **out, artifs_store *s)
{
	artifs_writer *w = calloc(1, sizeof(*w));
	int rc;

	if (!w)
		return artifs_error(-ENOMEM, "out of memory");
	w->s = s;
	w->cdc = artifs_cdc_default();
	w->fcap = w->cdc->max_size + ((size_t)8 << 20);
	w->setcap = 1 << 12;
	if (!(w->fbuf = malloc(w->fcap)) || !(w->set = calloc(w->setcap, sizeof(*w->set))) ||
	    !(w->fhash = artifs_hasher_new())) {
		artifs_writer_free(w);
		return artifs_error(-ENOMEM, "out of memory");
	}
	if ((rc = artifs_rtxn_begin(s, &w->rtxn))) {
		artifs_writer_free(w);
		return rc;
	}
	*out = w;
	return 0;
}

void artifs_writer_free(artifs_writer *w)
{
	if (!w)
		return;
	if (w->rtxn)
		mdb_txn_abort(w->rtxn);
	artifs_buf_release(&w->arena);
	free(w->ops);
	free(w->set);
	free(w->fbuf);
	artifs_hasher_free(w->fhash);
	free(w->offs);
	free(w->ids);
	free(w);
}

MDB_txn *artifs_writer_rtxn(artifs_writer *w)
{
	return w->rtxn;
}

artifs_store *artifs_writer_store(artifs_writer *w)
{
	return w->s;
}

const artifs_writer_stats *artifs_writer_get_stats(const artifs_writer *w)
{
	return &w->st;
}

static MDB_dbi op_dbi(artifs_writer *w, int kind)
{
	return kind == OP_CHUNK ? w->s->chunks : kind == OP_BLOB ? w->s->blobs :
		kind == OP_TREE ? w->s->trees : w->s->labelsets;
}

static size_t slot_of(const artifs_oid *id, size_t cap)
{
	uint64_t h;

	memcpy(&h, id->id, 8);
	return (size_t)h & (cap - 1);
}

static int set_grow(artifs_writer *w)
{
	size_t cap = w->setcap * 2;
	uint32_t *n = calloc(cap, sizeof(*n));

	if (!n)
		return artifs_error(-ENOMEM, "out of memory");
	for (size_t i = 0; i < w->nops; i++) {
		size_t j = slot_of(&w->ops[i].id, cap);
		while (n[j])
			j = (j + 1) & (cap - 1);
		n[j] = (uint32_t)i + 1;
	}
	free(w->set);
	w->set = n;
	w->setcap = cap;
	return 0;
}

static int flush(artifs_writer *w, int (*fn)(MDB_txn *, void *), void *ctx)
{
	MDB_txn *txn = NULL;
	int rc, tries = 0;

	if (!w->nops && !fn)
		return 0;
	mdb_txn_reset(w->rtxn);
retry:
	if ((rc = artifs_wtxn_begin(w->s, w->arena.len + w->nops * 128 + ((size_t)1 << 20), &txn)))
		goto done;
	for (size_t i = 0; i < w->nops; i++) {
		struct op *o = &w->ops[i];
		rc = artifs_store_put(txn, op_dbi(w, o->kind), &o->id, w->arena.ptr + o->off, o->len);
		if (rc < 0 || rc == MDB_MAP_FULL)
			goto fail;
	}
	if (fn && (rc = fn(txn, ctx)))
		goto fail;
	rc = artifs_txn_commit(txn);
	txn = NULL;
	if (rc == MDB_MAP_FULL)
		goto fail;
	if (rc)
		goto done;
	w->st.batches++;
	w->arena.len = 0;
	w->nops = 0;
	memset(w->set, 0, w->setcap * sizeof(*w->set));
	goto done;
fail:
	if (txn)
		mdb_txn_abort(txn);
	txn = NULL;
	if (rc == MDB_MAP_FULL && tries++ < 8) {
		if ((rc = artifs_store_grow(w->s, w->arena.len * 2 + ((size_t)64 << 20))))
			goto done;
		goto retry;
	}
	if (rc == MDB_MAP_FULL)
		rc = artifs_error(-ENOSPC, "the store's map is full and could not grow");
done:
	{
		int r2 = mdb_txn_renew(w->rtxn);
		if (r2 == MDB_MAP_RESIZED) {
			mdb_env_set_mapsize(w->s->env, 0);
			r2 = mdb_txn_renew(w->rtxn);
		}
		if (r2 && !rc)
			rc = artifs_error_lmdb(r2, "cannot renew read transaction");
	}
	return rc;
}

/*
 * Queue an object unless it is in the store or the batch already; either
 * hit is checked byte for byte.  Returns 1 on a hit, 0 when queued.
 */
static int queue(artifs_writer *w, int kind, const artifs_oid *id, const void *data, size_t len)
{
	MDB_val k = { 16, (void *)id->id }, v;
	size_t j;
	int rc;

	rc = mdb_get(w->rtxn, op_dbi(w, kind), &k, &v);
	if (rc == 0) {
		artifs_oid got;
		if (v.mv_size == len && !memcmp(v.mv_data, data, len))
			return 1;
		artifs_oid_hash(&got, v.mv_data, v.mv_size);
		if (!artifs_oid_cmp(&got, id)) {
			char hex[ARTIFS_OID_HEXSZ + 1];
			return artifs_error(ARTIFS_ECOLLISION,
				"object %s is stored with different bytes that hash to the same id: "
				"XXH3-128 collision; refusing to deduplicate", artifs_oid_fmt(hex, id));
		}
		/* the stored copy is damaged: queue the good bytes, flush repairs it */
	} else if (rc != MDB_NOTFOUND) {
		return artifs_error_lmdb(rc, "cannot look up object");
	}
	for (j = slot_of(id, w->setcap); w->set[j]; j = (j + 1) & (w->setcap - 1)) {
		struct op *o = &w->ops[w->set[j] - 1];
		if (o->kind == kind && !artifs_oid_cmp(&o->id, id)) {
			if (o->len == len && !memcmp(w->arena.ptr + o->off, data, len))
				return 1;
			return artifs_error(ARTIFS_ECOLLISION, "two different objects hash to the same id");
		}
	}
	if (w->arena.len + len > ARTIFS_WRITER_BATCH && w->nops) {
		if ((rc = flush(w, NULL, NULL)))
			return rc;
		j = slot_of(id, w->setcap);
	}
	if (w->nops == w->capops) {
		size_t cap = w->capops ? w->capops * 2 : 1024;
		void *p = realloc(w->ops, cap * sizeof(*w->ops));
		if (!p)
			return artifs_error(-ENOMEM, "out of memory");
		w->ops = p;
		w->capops = cap;
	}
	if ((rc = artifs_buf_put(&w->arena, data, len)))
		return rc;
	w->ops[w->nops] = (struct op){ *id, w->arena.len - len, len, kind };
	while (w->set[j])
		j = (j + 1) & (w->setcap - 1);
	w->set[j] = (uint32_t)++w->nops;
	if (w->nops * 2 > w->setcap)
		return set_grow(w);
	return 0;
}

int artifs_writer_file_begin(artifs_writer *w)
{
	w->in_file = 1;
	w->flen = 0;
	w->fsize = 0;
	w->nchunks = 0;
	artifs_hasher_reset(w->fhash);
	return 0;
}

static int add_chunk(artifs_writer *w, const uint8_t *p, size_t n)
{
	artifs_oid id;
	int rc;

	if (w->nchunks == w->capchunks) {
		size_t cap = w->capchunks ? w->capchunks * 2 : 64;
		void *a = realloc(w->offs, cap * sizeof(*w->offs));
		if (!a)
			return artifs_error(-ENOMEM, "out of memory");
		w->offs = a;
		a = realloc(w->ids, cap * sizeof(*w->ids));
		if (!a)
			return artifs_error(-ENOMEM, "out of memory");
		w->ids = a;
		w->capchunks = cap;
	}
	artifs_oid_hash(&id, p, n);
	if ((rc = queue(w, OP_CHUNK, &id, p, n)) < 0)
		return rc;
	if (rc == 1) {
		w->st.chunks_dedup++;
		w->st.chunk_bytes_dedup += n;
	} else {
		w->st.chunks_new++;
		w->st.chunk_bytes_new += n;
	}
	w->offs[w->nchunks] = w->fsize;
	w->ids[w->nchunks++] = id;
	w->fsize += n;
	return 0;
}

/* Cut every chunk whose end is decided; at eof cut the rest. */
static int cut(artifs_writer *w, int eof)
{
	size_t pos = 0, n;
	int rc;

	while (pos < w->flen && (n = artifs_cdc_next(w->cdc, w->fbuf + pos, w->flen - pos, eof))) {
		if ((rc = add_chunk(w, w->fbuf + pos, n)))
			return rc;
		pos += n;
	}
	memmove(w->fbuf, w->fbuf + pos, w->flen - pos);
	w->flen -= pos;
	return 0;
}

int artifs_writer_file_buf(artifs_writer *w, uint8_t **buf, size_t *avail)
{
	int rc;

	if (w->fcap - w->flen < w->cdc->max_size && (rc = cut(w, 0)))
		return rc;
	*buf = w->fbuf + w->flen;
	*avail = w->fcap - w->flen;
	return 0;
}

int artifs_writer_file_fill(artifs_writer *w, size_t n)
{
	artifs_hasher_update(w->fhash, w->fbuf + w->flen, n);
	w->flen += n;
	return 0;
}

int artifs_writer_file_write(artifs_writer *w, const void *data, size_t len)
{
	const uint8_t *p = data;
	int rc;

	while (len) {
		uint8_t *b;
		size_t avail;
		if ((rc = artifs_writer_file_buf(w, &b, &avail)))
			return rc;
		if (avail > len)
			avail = len;
		memcpy(b, p, avail);
		artifs_writer_file_fill(w, avail);
		p += avail;
		len -= avail;
	}
	return 0;
}

int artifs_writer_file_end(artifs_writer *w, artifs_oid *blob, uint64_t *size)
{
	artifs_buf rec = { 0 };
	artifs_oid digest, id;
	int rc;

	if ((rc = cut(w, 1)))
		goto done;
	artifs_hasher_final(w->fhash, &digest);
	if ((rc = artifs_blob_encode(&rec, w->fsize, &digest, (uint32_t)w->nchunks, w->offs, w->ids)))
		goto done;
	artifs_oid_hash(&id, rec.ptr, rec.len);
	if ((rc = queue(w, OP_BLOB, &id, rec.ptr, rec.len)) < 0)
		goto done;
	if (rc == 0)
		w->st.objects_new++;
	rc = 0;
	*blob = id;
	*size = w->fsize;
done:
	w->in_file = 0;
	artifs_buf_release(&rec);
	return rc;
}

void artifs_writer_file_abort(artifs_writer *w)
{
	w->in_file = 0;
	w->flen = 0;
}

static int put_record(artifs_writer *w, int kind, artifs_oid *id, const void *data, size_t len)
{
	artifs_oid oid;
	int rc;

	artifs_oid_hash(&oid, data, len);
	if ((rc = queue(w, kind, &oid, data, len)) < 0)
		return rc;
	if (rc == 0)
		w->st.objects_new++;
	*id = oid;
	return 0;
}

int artifs_writer_put_tree(artifs_writer *w, artifs_oid *id, const void *data, size_t len)
{
	return put_record(w, OP_TREE, id, data, len);
}

int artifs_writer_put_labels(artifs_writer *w, artifs_oid *id, const void *data, size_t len)
{
	return put_record(w, OP_LABELS, id, data, len);
}

int artifs_writer_flush(artifs_writer *w)
{
	return flush(w, NULL, NULL);
}

int artifs_writer_finish(artifs_writer *w, int (*fn)(MDB_txn *txn, void *ctx), void *ctx)
{
	return flush(w, fn, ctx);
}
