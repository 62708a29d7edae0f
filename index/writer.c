#include "writer.h"
#include "blob.h"
#include "codec.h"
#include "error.h"
#include "pagecache.h"
#include "store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { OP_CHUNK, OP_BLOB, OP_TREE, OP_LABELS };

struct op {
	artifs_oid id;
	size_t off, len;	/* in the arena */
	int kind;
};

/* Objects waiting to be written, and a set of their ids. */
struct batch {
	artifs_buf arena;		/* bytes of pending objects */
	struct op *ops;
	size_t nops, capops;
	uint32_t *set;			/* open addressing: op index + 1, 0 = empty */
	size_t setcap;
};

/*
 * Full batches are committed by a second thread while the caller chunks
 * and hashes the next one, so the disk writes and syncs of one batch
 * overlap the work on the next (on two cores a synced commit was half of a
 * small-file commit's time).  The committer never resizes the map: that
 * needs every transaction of the process closed, so a batch that would
 * need it is handed back and written at the next switch, with the read
 * transaction closed, as before.
 */
enum { C_IDLE, C_BUSY, C_DONE, C_HANDBACK, C_FAILED, C_STOP };

struct committer {
	pthread_t th;
	int started;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int state;
	int rc;
	char err[512];
};

/*
 * Early writeback.  LMDB commits a transaction by copying its pages into
 * the data file with pwrite() and then waiting in fdatasync() while the
 * disk writes them, so the disk idles during the copy and the copy waits
 * for the disk: on two cores the syncs were half of a small-file commit.
 * While a batch commits, this thread asks the kernel every millisecond to
 * start writing whatever is dirty in the file (sync_file_range with
 * SYNC_FILE_RANGE_WRITE, which does not wait), so the fdatasync finds most
 * pages on their way.  Only the timing changes: the pages are the ones the
 * fdatasync writes anyway, in a transaction no meta page points at yet, and
 * the kernel's own flusher may write them at any moment; LMDB still syncs
 * them before it writes the meta page.
 */
struct kicker {
	pthread_t th;
	int started;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int active;			/* commits in progress */
	int stop;
	int fd;
};

struct artifs_writer {
	artifs_store *s;
	MDB_txn *rtxn;			/* existence checks; renewed per batch */
	const artifs_cdc_params *cdc;
	struct batch cur;		/* being filled */
	struct batch fly;		/* being committed (or handed back) */
	int fly_live;			/* fly holds objects not yet visible through rtxn */
	struct committer c;
	struct kicker k;
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
	w->cur.setcap = w->fly.setcap = 1 << 12;
	pthread_mutex_init(&w->c.mu, NULL);
	pthread_cond_init(&w->c.cond, NULL);
	pthread_mutex_init(&w->k.mu, NULL);
	pthread_cond_init(&w->k.cond, NULL);
	if (!(w->fbuf = malloc(w->fcap)) ||
	    !(w->cur.set = calloc(w->cur.setcap, sizeof(*w->cur.set))) ||
	    !(w->fly.set = calloc(w->fly.setcap, sizeof(*w->fly.set))) ||
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

static void batch_release(struct batch *b)
{
	artifs_buf_release(&b->arena);
	free(b->ops);
	free(b->set);
}

static void committer_stop(artifs_writer *w);
static void kicker_stop(artifs_writer *w);

void artifs_writer_free(artifs_writer *w)
{
	if (!w)
		return;
	committer_stop(w);	/* waits for a commit in flight */
	kicker_stop(w);
	if (w->rtxn)
		mdb_txn_abort(w->rtxn);
	batch_release(&w->cur);
	batch_release(&w->fly);
	pthread_mutex_destroy(&w->c.mu);
	pthread_cond_destroy(&w->c.cond);
	pthread_mutex_destroy(&w->k.mu);
	pthread_cond_destroy(&w->k.cond);
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

static int set_grow(struct batch *b)
{
	size_t cap = b->setcap * 2;
	uint32_t *n = calloc(cap, sizeof(*n));

	if (!n)
		return artifs_error(-ENOMEM, "out of memory");
	for (size_t i = 0; i < b->nops; i++) {
		size_t j = slot_of(&b->ops[i].id, cap);
		while (n[j])
			j = (j + 1) & (cap - 1);
		n[j] = (uint32_t)i + 1;
	}
	free(b->set);
	b->set = n;
	b->setcap = cap;
	return 0;
}

static void batch_clear(struct batch *b)
{
	b->arena.len = 0;
	b->nops = 0;
	memset(b->set, 0, b->setcap * sizeof(*b->set));
}

static void *kicker_main(void *arg)
{
	struct kicker *k = arg;
	const struct timespec ms = { 0, 1000000 };

	pthread_mutex_lock(&k->mu);
	for (;;) {
		while (!k->active && !k->stop)
			pthread_cond_wait(&k->cond, &k->mu);
		if (k->stop)
			break;
		pthread_mutex_unlock(&k->mu);
		sync_file_range(k->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		nanosleep(&ms, NULL);
		pthread_mutex_lock(&k->mu);
	}
	pthread_mutex_unlock(&k->mu);
	return NULL;
}

static void kicker_stop(artifs_writer *w)
{
	struct kicker *k = &w->k;

	if (!k->started)
		return;
	pthread_mutex_lock(&k->mu);
	k->stop = 1;
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->mu);
	pthread_join(k->th, NULL);
	k->started = 0;
}

/*
 * Around a batch's commit; without the thread, commits are as before.  A
 * small batch (a tag's, a label's, a commit's last few files) goes as it
 * did: its sync is short, and it needs no thread.
 */
#define KICK_MIN ((size_t)4 << 20)

static void kick_begin(artifs_writer *w, const struct batch *b)
{
	struct kicker *k = &w->k;

	if (b->arena.len < KICK_MIN)
		return;
	pthread_mutex_lock(&k->mu);
	if (!k->started && mdb_env_get_fd(w->s->env, &k->fd) == 0 &&
	    artifs_thread_start(&k->th, kicker_main, k) == 0)
		k->started = 1;
	k->active++;
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->mu);
}

static void kick_end(artifs_writer *w, const struct batch *b)
{
	if (b->arena.len < KICK_MIN)
		return;
	pthread_mutex_lock(&w->k.mu);
	w->k.active--;
	pthread_mutex_unlock(&w->k.mu);
}

static int put_ops(artifs_writer *w, MDB_txn *txn, const struct batch *b)
{
	for (size_t i = 0; i < b->nops; i++) {
		const struct op *o = &b->ops[i];
		int rc = artifs_store_put(txn, op_dbi(w, o->kind), &o->id, b->arena.ptr + o->off,
			o->len);
		if (rc < 0 || rc == MDB_MAP_FULL)
			return rc;
	}
	return 0;
}

static int renew_rtxn(artifs_writer *w)
{
	int r2 = mdb_txn_renew(w->rtxn);

	if (r2 == MDB_MAP_RESIZED) {
		artifs_store_remap(w->s);
		r2 = mdb_txn_renew(w->rtxn);
	}
	return r2 ? artifs_error_lmdb(r2, "cannot renew read transaction") : 0;
}

/*
 * Write batch b (and run fn in the same transaction) with the read
 * transaction closed, so the map may grow.
 */
static int flush_sync(artifs_writer *w, struct batch *b, int (*fn)(MDB_txn *, void *),
	void *ctx)
{
	MDB_txn *txn = NULL;
	int rc, tries = 0;

	if (!b->nops && !fn)
		return 0;
	mdb_txn_reset(w->rtxn);
retry:
	if ((rc = artifs_wtxn_begin(w->s, b->arena.len + b->nops * 128 + ((size_t)1 << 20), &txn)))
		goto done;
	if ((rc = put_ops(w, txn, b)))
		goto fail;
	if (fn && (rc = fn(txn, ctx)))
		goto fail;
	kick_begin(w, b);
	rc = artifs_txn_commit(txn);
	kick_end(w, b);
	txn = NULL;
	if (rc == MDB_MAP_FULL)
		goto fail;
	if (rc)
		goto done;
	w->st.batches++;
	batch_clear(b);
	goto done;
fail:
	if (txn)
		mdb_txn_abort(txn);
	txn = NULL;
	if (rc == MDB_MAP_FULL && tries++ < 8) {
		if ((rc = artifs_store_grow(w->s, b->arena.len * 2 + ((size_t)64 << 20))))
			goto done;
		goto retry;
	}
	if (rc == MDB_MAP_FULL)
		rc = artifs_error(-ENOSPC, "the store's map is full and could not grow");
done:
	{
		int r2 = renew_rtxn(w);
		if (r2 && !rc)
			rc = r2;
	}
	return rc;
}

/* The committer thread: writes w->fly without touching the map size. */
static void *committer_main(void *arg)
{
	artifs_writer *w = arg;
	struct committer *c = &w->c;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		MDB_txn *txn = NULL;
		size_t mapsize, used, need;
		int rc;

		while (c->state != C_BUSY && c->state != C_STOP)
			pthread_cond_wait(&c->cond, &c->mu);
		if (c->state == C_STOP)
			break;
		pthread_mutex_unlock(&c->mu);
		need = w->fly.arena.len + w->fly.nops * 128 + ((size_t)1 << 20);
		artifs_store_usage(w->s, &mapsize, &used);
		if (used + need * 2 > mapsize) {
			rc = 1;		/* needs a bigger map: hand back */
		} else {
			rc = mdb_txn_begin(w->s->env, NULL, 0, &txn);
			if (rc == MDB_MAP_RESIZED) {
				rc = 1;	/* another process grew it: hand back */
			} else if (rc) {
				rc = artifs_error_lmdb(rc, "cannot begin write transaction");
			} else if ((rc = put_ops(w, txn, &w->fly))) {
				mdb_txn_abort(txn);
				if (rc == MDB_MAP_FULL)
					rc = 1;
			} else {
				kick_begin(w, &w->fly);
				rc = artifs_txn_commit(txn);
				kick_end(w, &w->fly);
				if (rc == MDB_MAP_FULL)
					rc = 1;
			}
		}
		pthread_mutex_lock(&c->mu);
		if (c->state == C_STOP)
			break;
		if (rc == 1) {
			c->state = C_HANDBACK;
		} else if (rc) {
			c->state = C_FAILED;
			c->rc = rc;
			snprintf(c->err, sizeof(c->err), "%s", artifs_error_last());
		} else {
			c->state = C_DONE;
		}
		pthread_cond_broadcast(&c->cond);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

static void committer_stop(artifs_writer *w)
{
	struct committer *c = &w->c;

	if (!c->started)
		return;
	pthread_mutex_lock(&c->mu);
	while (c->state == C_BUSY)
		pthread_cond_wait(&c->cond, &c->mu);
	c->state = C_STOP;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->th, NULL);
	c->started = 0;
}

/*
 * Wait for the batch in flight; afterwards fly is empty and its objects are
 * visible through a renewed read transaction (or an error is returned).
 */
static int settle(artifs_writer *w)
{
	struct committer *c = &w->c;
	int state, rc = 0;

	if (!w->fly_live)
		return 0;
	pthread_mutex_lock(&c->mu);
	while (c->state == C_BUSY)
		pthread_cond_wait(&c->cond, &c->mu);
	state = c->state;
	c->state = C_IDLE;
	pthread_mutex_unlock(&c->mu);
	if (state == C_FAILED) {
		w->fly_live = 0;
		batch_clear(&w->fly);
		return artifs_error(c->rc, "%s", c->err);
	}
	if (state == C_HANDBACK) {
		rc = flush_sync(w, &w->fly, NULL, NULL);	/* renews rtxn */
	} else {
		w->st.batches++;
		mdb_txn_reset(w->rtxn);
		rc = renew_rtxn(w);
	}
	w->fly_live = 0;
	batch_clear(&w->fly);
	return rc;
}

/* cur is full: send it to the committer and start an empty one. */
static int switch_batch(artifs_writer *w)
{
	struct batch t;
	int rc;

	if ((rc = settle(w)))
		return rc;
	if (!w->c.started) {
		if (artifs_thread_start(&w->c.th, committer_main, w))
			return flush_sync(w, &w->cur, NULL, NULL);	/* no thread: as before */
		w->c.started = 1;
	}
	t = w->fly;
	w->fly = w->cur;
	w->cur = t;
	w->fly_live = 1;
	pthread_mutex_lock(&w->c.mu);
	w->c.state = C_BUSY;
	pthread_cond_broadcast(&w->c.cond);
	pthread_mutex_unlock(&w->c.mu);
	return 0;
}

static int flush(artifs_writer *w, int (*fn)(MDB_txn *, void *), void *ctx)
{
	int rc = settle(w);

	return rc ? rc : flush_sync(w, &w->cur, fn, ctx);
}

static int batch_find(const struct batch *b, int kind, const artifs_oid *id, const void *data,
	size_t len)
{
	for (size_t j = slot_of(id, b->setcap); b->set[j]; j = (j + 1) & (b->setcap - 1)) {
		const struct op *o = &b->ops[b->set[j] - 1];
		if (o->kind == kind && !artifs_oid_cmp(&o->id, id)) {
			if (o->len == len && !memcmp(b->arena.ptr + o->off, data, len))
				return 1;
			return artifs_error(ARTIFS_ECOLLISION, "two different objects hash to the same id");
		}
	}
	return 0;
}

/*
 * Queue an object unless it is in the store or the batch already; either
 * hit is checked byte for byte.  Returns 1 on a hit, 0 when queued.
 */
static int queue(artifs_writer *w, int kind, const artifs_oid *id, const void *data, size_t len)
{
	MDB_val k = { 16, (void *)id->id }, v;
	struct batch *b;
	size_t j;
	int rc;

	rc = mdb_get(w->rtxn, op_dbi(w, kind), &k, &v);
	if (rc == 0) {
		artifs_oid got;
		if (v.mv_size == len && artifs_store_same(w->s, v.mv_data, data, len))
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
	/* the batch being filled, then the one being committed (not yet in rtxn's view) */
	if ((rc = batch_find(&w->cur, kind, id, data, len)))
		return rc;
	if (w->fly_live && (rc = batch_find(&w->fly, kind, id, data, len)))
		return rc;
	if (w->cur.arena.len + len > ARTIFS_WRITER_BATCH && w->cur.nops) {
		if ((rc = switch_batch(w)))
			return rc;
	}
	b = &w->cur;
	if (b->nops == b->capops) {
		size_t cap = b->capops ? b->capops * 2 : 1024;
		void *p = realloc(b->ops, cap * sizeof(*b->ops));
		if (!p)
			return artifs_error(-ENOMEM, "out of memory");
		b->ops = p;
		b->capops = cap;
	}
	if ((rc = artifs_buf_put(&b->arena, data, len)))
		return rc;
	b->ops[b->nops] = (struct op){ *id, b->arena.len - len, len, kind };
	for (j = slot_of(id, b->setcap); b->set[j]; j = (j + 1) & (b->setcap - 1))
		;
	b->set[j] = (uint32_t)++b->nops;
	if (b->nops * 2 > b->setcap)
		return set_grow(b);
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
