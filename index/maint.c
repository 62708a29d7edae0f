#include "maint.h"
#include "pagecache.h"
#include "pin.h"
#include "blob.h"
#include "codec.h"
#include "commit.h"
#include "error.h"
#include "label.h"
#include "oidset.h"
#include "ref.h"
#include "store_int.h"
#include "tree.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { R_VERIFY = 1, R_CHUNKLEN = 2 };

struct reach {
	artifs_store *s;
	MDB_txn *txn;
	int flags;
	artifs_oidset commits, trees, blobs, chunks, labelsets;
	/* fsck: damaged objects, so every later file using them is named too */
	artifs_oidset bad_blobs, bad_chunks, bad_trees;
	int fatal;			/* an LMDB error: the walk cannot go on */
	artifs_oid *stack;		/* commits still to visit */
	size_t nstack, capstack;
	const char *repo;
	char where[160];		/* REPO@SHORTID */
	artifs_buf path;
	artifs_hasher *h;
	artifs_fault_fn fault;
	artifs_progress_fn progress;
	void *ctx;
	artifs_progress prog;
	artifs_fsck_stats fs;
	uint64_t logical, stored;
};

static void fault(struct reach *r, const char *kind, const artifs_oid *id, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void fault(struct reach *r, const char *kind, const artifs_oid *id, const char *fmt, ...)
{
	char msg[512], where[4096 + 200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (r->path.len)
		snprintf(where, sizeof(where), "%s:%.*s", r->where, (int)r->path.len, (const char *)r->path.ptr);
	else
		snprintf(where, sizeof(where), "%s", r->where);
	r->fs.faults++;
	if (r->fault)
		r->fault(kind, id, where, msg, r->ctx);
}

/* Fetch a record; verify that it hashes to its id.  1 = ok, 0 = faulted. */
static int get_obj(struct reach *r, MDB_dbi dbi, const char *kind, const artifs_oid *id, MDB_val *v)
{
	MDB_val k = { 16, (void *)id->id };
	int rc = mdb_get(r->txn, dbi, &k, v);

	if (rc == MDB_NOTFOUND) {
		fault(r, kind, id, "missing");
		return 0;
	}
	if (rc) {
		/* LMDB's own pages are damaged: this transaction can read no more */
		fault(r, kind, id, "unreadable: %s", mdb_strerror(rc));
		if (!r->fatal)
			r->fatal = rc;
		return 0;
	}
	if (r->flags & R_VERIFY) {
		artifs_oid got;
		artifs_oid_hash(&got, v->mv_data, v->mv_size);
		if (artifs_oid_cmp(&got, id)) {
			char hex[ARTIFS_OID_HEXSZ + 1];
			fault(r, kind, id, "corrupt: bytes hash to %s", artifs_oid_fmt(hex, &got));
			return 0;
		}
	}
	return 1;
}

/*
 * Check one file manifest and its chunks.  `first` is 0 when fsck meets a
 * damaged manifest again under another path: the same faults are reported
 * for that path (a damaged chunk is named with every file that uses it),
 * but nothing is counted or re-hashed twice.
 */
static int check_blob(struct reach *r, const artifs_oid *id, int first)
{
	artifs_blob_view b;
	uint64_t faults0 = r->fs.faults;
	MDB_val v;
	int rc, bad = 0;

	if (!get_obj(r, r->s->blobs, "blob", id, &v))
		goto out;
	if (artifs_blob_parse(&b, v.mv_data, v.mv_size)) {
		fault(r, "blob", id, "malformed file manifest");
		goto out;
	}
	if (r->flags & R_VERIFY)
		artifs_hasher_reset(r->h);
	for (uint32_t i = 0; i < b.nchunks; i++) {
		artifs_oid cid;
		MDB_val k, cv;
		int fresh;
		artifs_blob_chunk_id(&b, i, &cid);
		if ((fresh = artifs_oidset_add(&r->chunks, &cid)) < 0)
			return fresh;
		if (!(r->flags & (R_VERIFY | R_CHUNKLEN))) {
			continue;
		}
		if (!fresh && !(r->flags & R_VERIFY))
			continue;
		if (!fresh && artifs_oidset_has(&r->bad_chunks, &cid)) {
			fault(r, "chunk", &cid, "damaged (reported above; this file uses it too)");
			bad = 1;
			continue;
		}
		k.mv_data = cid.id;
		k.mv_size = 16;
		if ((rc = mdb_get(r->txn, r->s->chunks, &k, &cv))) {
			if (fresh) {
				fault(r, "chunk", &cid, rc == MDB_NOTFOUND ? "missing" : "unreadable");
				if ((rc = artifs_oidset_add(&r->bad_chunks, &cid)) < 0)
					return rc;
			}
			bad = 1;
			continue;
		}
		if (fresh) {
			r->fs.chunks++;
			r->stored += cv.mv_size;
		}
		if (!(r->flags & R_VERIFY))
			continue;
		if (cv.mv_size != artifs_blob_chunk_len(&b, i)) {
			char hex[ARTIFS_OID_HEXSZ + 1];
			if (fresh) {
				fault(r, "chunk", &cid, "has %zu bytes, manifest says %llu", cv.mv_size,
					(unsigned long long)artifs_blob_chunk_len(&b, i));
				if ((rc = artifs_oidset_add(&r->bad_chunks, &cid)) < 0)
					return rc;
			} else {
				fault(r, "blob", id, "chunk %s has %zu bytes, this manifest says %llu",
					artifs_oid_fmt(hex, &cid), cv.mv_size,
					(unsigned long long)artifs_blob_chunk_len(&b, i));
			}
			bad = 1;
		} else if (fresh) {
			artifs_oid got;
			artifs_store_fetch(r->s, cv.mv_data, cv.mv_size);	/* cold: one read */
			artifs_oid_hash(&got, cv.mv_data, cv.mv_size);
			r->fs.bytes_verified += cv.mv_size;
			r->prog.bytes += cv.mv_size;
			if (artifs_oid_cmp(&got, &cid)) {
				char hex[ARTIFS_OID_HEXSZ + 1];
				fault(r, "chunk", &cid, "corrupt: bytes hash to %s", artifs_oid_fmt(hex, &got));
				if ((rc = artifs_oidset_add(&r->bad_chunks, &cid)) < 0)
					return rc;
				bad = 1;
			}
		}
		artifs_hasher_update(r->h, cv.mv_data, cv.mv_size);
	}
	if ((r->flags & R_VERIFY) && !bad) {
		artifs_oid got;
		artifs_hasher_final(r->h, &got);
		if (artifs_oid_cmp(&got, &b.digest))
			fault(r, "blob", id, "file content does not match its digest");
	}
	if (first) {
		r->prog.files++;
		if (r->progress && (r->prog.files & 63) == 0)
			r->progress(&r->prog, r->ctx);
	}
out:
	if (first && r->fs.faults != faults0 && (rc = artifs_oidset_add(&r->bad_blobs, id)) < 0)
		return rc;
	return 0;
}

static int walk_blob(struct reach *r, const artifs_oid *id)
{
	int rc;

	if ((rc = artifs_oidset_add(&r->blobs, id)) < 0)
		return rc;
	if (rc == 0)
		return (r->flags & R_VERIFY) && artifs_oidset_has(&r->bad_blobs, id) ?
			check_blob(r, id, 0) : 0;
	r->fs.blobs++;
	return check_blob(r, id, 1);
}

static int walk_labels(struct reach *r, const artifs_oid *id)
{
	artifs_label l[ARTIFS_LABELS_PER_FILE_MAX];
	size_t n;
	MDB_val v;
	int rc;

	if ((rc = artifs_oidset_add(&r->labelsets, id)) <= 0)
		return rc;
	r->fs.labelsets++;
	if (get_obj(r, r->s->labelsets, "labelset", id, &v) && (r->flags & R_VERIFY) &&
	    artifs_labelset_decode(l, ARTIFS_LABELS_PER_FILE_MAX, &n, v.mv_data, v.mv_size))
		fault(r, "labelset", id, "malformed labelset record");
	return 0;
}

static int walk_tree_body(struct reach *r, const artifs_oid *id);

/*
 * Each tree is walked once, except one holding damage: fsck walks it again
 * wherever it recurs, so every version and path using a damaged object is
 * named (the faults are found once, and reported again from their sets).
 */
static int walk_tree(struct reach *r, const artifs_oid *id)
{
	uint64_t faults0 = r->fs.faults;
	int rc, first;

	if ((rc = artifs_oidset_add(&r->trees, id)) < 0)
		return rc;
	first = rc;
	if (!first && !((r->flags & R_VERIFY) && artifs_oidset_has(&r->bad_trees, id)))
		return 0;
	if (first)
		r->fs.trees++;
	if (r->fatal)
		return artifs_error(ARTIFS_ECORRUPT, "the store's LMDB index is damaged (%s); fsck "
			"stopped there", mdb_strerror(r->fatal));
	if ((rc = walk_tree_body(r, id)))
		return rc;
	if (first && r->fs.faults != faults0 && (rc = artifs_oidset_add(&r->bad_trees, id)) < 0)
		return rc;
	return 0;
}

static int walk_tree_body(struct reach *r, const artifs_oid *id)
{
	artifs_tree_view t;
	MDB_val v;
	int rc;

	if (!get_obj(r, r->s->trees, "tree", id, &v))
		return 0;
	if (artifs_tree_parse(&t, v.mv_data, v.mv_size) ||
	    ((r->flags & R_VERIFY) && artifs_tree_validate(&t))) {
		fault(r, "tree", id, "malformed tree record");
		return 0;
	}
	for (uint32_t i = 0; i < t.count; i++) {
		artifs_tree_entry e;
		size_t old = r->path.len;
		if (artifs_tree_entry_at(&t, i, &e)) {
			fault(r, "tree", id, "malformed tree entry");
			return 0;
		}
		if (old)
			artifs_buf_put(&r->path, "/", 1);
		artifs_buf_put(&r->path, e.name, e.name_len);
		rc = e.type == ARTIFS_T_DIR ? walk_tree(r, &e.id) : walk_blob(r, &e.id);
		if (!rc && !artifs_oid_is_zero(&e.labels))
			rc = walk_labels(r, &e.labels);
		r->path.len = old;
		if (rc)
			return rc;
	}
	return 0;
}

static int push_commit(struct reach *r, const artifs_oid *id)
{
	if (artifs_oid_is_zero(id))
		return 0;
	if (r->nstack == r->capstack) {
		size_t cap = r->capstack ? r->capstack * 2 : 64;
		void *p = realloc(r->stack, cap * sizeof(*r->stack));
		if (!p)
			return artifs_error(-ENOMEM, "out of memory");
		r->stack = p;
		r->capstack = cap;
	}
	r->stack[r->nstack++] = *id;
	return 0;
}

static int drain(struct reach *r)
{
	int rc;

	while (r->nstack) {
		artifs_oid id = r->stack[--r->nstack];
		artifs_commit *c = NULL;
		char hex[ARTIFS_OID_HEXSZ + 1];
		MDB_val v;
		if ((rc = artifs_oidset_add(&r->commits, &id)) < 0)
			return rc;
		if (rc == 0)
			continue;
		r->fs.commits++;
		snprintf(r->where, sizeof(r->where), "%s@%.12s", r->repo, artifs_oid_fmt(hex, &id));
		r->path.len = 0;
		if (!get_obj(r, r->s->commits, "commit", &id, &v))
			continue;
		if (artifs_commit_decode(&c, v.mv_data, v.mv_size)) {
			fault(r, "commit", &id, "malformed commit record");
			continue;
		}
		{
			/* logical size: the root's entries carry their subtree byte totals */
			MDB_val tv;
			artifs_tree_view t;
			MDB_val k = { 16, c->tree.id };
			if (!mdb_get(r->txn, r->s->trees, &k, &tv) && !artifs_tree_parse(&t, tv.mv_data, tv.mv_size))
				for (uint32_t i = 0; i < t.count; i++) {
					artifs_tree_entry e;
					if (!artifs_tree_entry_at(&t, i, &e))
						r->logical += e.size;
				}
		}
		rc = walk_tree(r, &c->tree);
		if (!rc && !artifs_oid_is_zero(&c->labels)) {
			/* the generated manifest, shown as .labels.jsonl */
			artifs_buf_put(&r->path, ".labels.jsonl", 13);
			rc = walk_blob(r, &c->labels);
			r->path.len = 0;
		}
		for (uint32_t i = 0; !rc && i < c->nparents; i++)
			rc = push_commit(r, &c->parents[i]);
		artifs_commit_free(c);
		if (rc)
			return rc;
	}
	return 0;
}

static int reflog_cb(const artifs_reflog_entry *e, void *ctx)
{
	struct reach *r = ctx;
	int rc = push_commit(r, &e->old_id);

	return rc ? rc : push_commit(r, &e->new_id);
}

static int ref_cb(const char *name, const artifs_ref *ref, void *ctx)
{
	struct reach *r = ctx;
	int rc;

	r->fs.refs++;
	if (!artifs_oid_is_zero(&ref->target)) {
		MDB_val k = { 16, (void *)ref->target.id }, v;
		if (mdb_get(r->txn, r->s->commits, &k, &v)) {
			snprintf(r->where, sizeof(r->where), "%s:%s", r->repo, name);
			r->path.len = 0;
			fault(r, "ref", &ref->target, "points to a missing commit");
		}
	}
	if ((rc = push_commit(r, &ref->target)))
		return rc;
	if ((rc = artifs_reflog_foreach(r->s, r->txn, r->repo, name, reflog_cb, r)))
		return rc;
	return drain(r);
}

static int repo_cb(const char *repo, int64_t created, void *ctx)
{
	struct reach *r = ctx;

	(void)created;
	r->repo = repo;
	/* fsck reported damaged refs already and walks what is left */
	return artifs_ref_foreach_ex(r->s, r->txn, repo, ref_cb, r, r->flags & R_VERIFY);
}

static void ref_fault(const char *where, const char *msg, void *ctx)
{
	struct reach *r = ctx;
	static const artifs_oid none;

	snprintf(r->where, sizeof(r->where), "%s", where);
	r->path.len = 0;
	fault(r, "ref", &none, "%s", msg);
}

static int reach_init(struct reach *r, artifs_store *s, int flags)
{
	memset(r, 0, sizeof(*r));
	r->s = s;
	r->flags = flags;
	artifs_oidset_init(&r->commits);
	artifs_oidset_init(&r->trees);
	artifs_oidset_init(&r->blobs);
	artifs_oidset_init(&r->chunks);
	artifs_oidset_init(&r->labelsets);
	artifs_oidset_init(&r->bad_blobs);
	artifs_oidset_init(&r->bad_trees);
	artifs_oidset_init(&r->bad_chunks);
	if (!(r->h = artifs_hasher_new()))
		return artifs_error(-ENOMEM, "out of memory");
	return 0;
}

static void reach_release(struct reach *r)
{
	artifs_oidset_release(&r->commits);
	artifs_oidset_release(&r->trees);
	artifs_oidset_release(&r->blobs);
	artifs_oidset_release(&r->chunks);
	artifs_oidset_release(&r->labelsets);
	artifs_oidset_release(&r->bad_blobs);
	artifs_oidset_release(&r->bad_trees);
	artifs_oidset_release(&r->bad_chunks);
	artifs_hasher_free(r->h);
	artifs_buf_release(&r->path);
	free(r->stack);
}

/* Walk from every ref of `repo` (all repositories when NULL). */
static int reach_run(struct reach *r, const char *repo)
{
	int rc;

	if (repo) {
		if ((rc = artifs_repo_check(r->s, r->txn, repo)))
			return rc;
		return repo_cb(repo, 0, r);
	}
	return artifs_repo_foreach(r->s, r->txn, repo_cb, r);
}

/*
 * Commits pinned by live readers (a mount serving a version whose ref has
 * moved on) are roots too.  Only commits still present are walked.
 */
static int reach_pins(struct reach *r)
{
	artifs_oidset pins;
	int rc;

	artifs_oidset_init(&pins);
	if ((rc = artifs_pins_collect(r->s, &pins)))
		goto done;
	r->repo = "(pinned)";
	for (size_t i = 0; !rc && i < pins.cap; i++) {
		const artifs_oid *id = &pins.slots[i];
		MDB_val k = { 16, (void *)id->id }, v;

		if (artifs_oid_is_zero(id) || mdb_get(r->txn, r->s->commits, &k, &v))
			continue;
		if (!(rc = push_commit(r, id)))
			rc = drain(r);
	}
done:
	artifs_oidset_release(&pins);
	return rc;
}

int artifs_fsck(artifs_store *s, artifs_fault_fn fault_fn, artifs_progress_fn progress, void *ctx,
	artifs_fsck_stats *stats)
{
	struct reach r;
	int rc;

	if ((rc = reach_init(&r, s, R_VERIFY)))
		goto done;
	r.fault = fault_fn;
	r.progress = progress;
	r.ctx = ctx;
	if ((rc = artifs_rtxn_begin(s, &r.txn)))
		goto done;
	if (!(rc = artifs_refs_verify(s, r.txn, ref_fault, &r, NULL)))
		rc = reach_run(&r, NULL);
	if (!rc && r.fatal)
		rc = artifs_error(ARTIFS_ECORRUPT, "the store's LMDB index is damaged (%s); fsck "
			"stopped there", mdb_strerror(r.fatal));
	else if (rc && r.fatal) {
		char why[512];
		snprintf(why, sizeof(why), "%s", artifs_error_last());
		rc = artifs_error(ARTIFS_ECORRUPT, "the store's LMDB index is damaged (%s): %s",
			mdb_strerror(r.fatal), why);
	}
	mdb_txn_abort(r.txn);
	if (progress)
		progress(&r.prog, ctx);
	if (stats)
		*stats = r.fs;
done:
	reach_release(&r);
	return rc;
}

int artifs_du(artifs_store *s, const char *repo, artifs_du_stats *stats)
{
	struct reach r;
	char path[4096];
	struct stat st;
	int rc;

	if ((rc = reach_init(&r, s, R_CHUNKLEN)))
		goto done;
	if ((rc = artifs_rtxn_begin(s, &r.txn)))
		goto done;
	rc = reach_run(&r, repo);
	mdb_txn_abort(r.txn);
	if (rc)
		goto done;
	memset(stats, 0, sizeof(*stats));
	stats->commits = r.fs.commits;
	stats->logical_bytes = r.logical;
	stats->chunks = r.fs.chunks;
	stats->stored_bytes = r.stored;
	snprintf(path, sizeof(path), "%s/data.mdb", artifs_store_path(s));
	if (stat(path, &st) == 0)
		stats->store_file_bytes = (uint64_t)st.st_size;
done:
	reach_release(&r);
	return rc;
}

static int sweep(MDB_txn *txn, MDB_dbi dbi, const artifs_oidset *keep, int dry_run,
	uint64_t *count, uint64_t *bytes)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	if ((rc = mdb_cursor_open(txn, dbi, &cur)))
		return artifs_error_lmdb(rc, "cannot sweep");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		artifs_oid id;
		if (k.mv_size != 16)
			continue;
		memcpy(id.id, k.mv_data, 16);
		if (artifs_oidset_has(keep, &id))
			continue;
		(*count)++;
		*bytes += v.mv_size;
		if (!dry_run && (rc = mdb_cursor_del(cur, 0)))
			break;
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		return 0;
	return rc == MDB_MAP_FULL ? rc : artifs_error_lmdb(rc, "cannot delete object");
}

int artifs_gc(artifs_store *s, int dry_run, artifs_gc_stats *stats)
{
	struct reach r;
	MDB_txn *txn = NULL;
	artifs_gc_stats st;
	int rc, locked = 0, tries = 0, gate = -1;

	if ((rc = reach_init(&r, s, 0)))
		goto done;
	if ((rc = artifs_store_lock(s, 1, 0)))
		goto done;
	locked = 1;
	/* readers pinning a version finish first; new ones wait for us */
	if ((gate = artifs_pins_gate_exclusive(s)) < 0) {
		rc = gate;
		goto done;
	}
again:
	memset(&st, 0, sizeof(st));
	/* mark and sweep in one write transaction: nothing can slip in between */
	if ((rc = artifs_wtxn_begin(s, (size_t)256 << 20, &txn)))
		goto done;
	r.txn = txn;
	{
		/* a damaged ref would make what only it holds look unreachable */
		uint64_t bad = 0;

		if ((rc = artifs_refs_verify(s, txn, NULL, NULL, &bad)))
			goto done;
		if (bad) {
			rc = artifs_error(ARTIFS_ECORRUPT, "gc refused: %llu of the store's refs %s "
				"damaged, so what they hold cannot be told from garbage; nothing was "
				"deleted", (unsigned long long)bad, bad == 1 ? "is" : "are");
			goto done;
		}
	}
	if ((rc = reach_run(&r, NULL)) || (rc = reach_pins(&r)))
		goto done;
	st.kept = r.commits.n + r.trees.n + r.blobs.n + r.chunks.n + r.labelsets.n;
	if ((rc = sweep(txn, s->chunks, &r.chunks, dry_run, &st.chunks, &st.bytes)) ||
	    (rc = sweep(txn, s->blobs, &r.blobs, dry_run, &st.blobs, &st.bytes)) ||
	    (rc = sweep(txn, s->trees, &r.trees, dry_run, &st.trees, &st.bytes)) ||
	    (rc = sweep(txn, s->labelsets, &r.labelsets, dry_run, &st.labelsets, &st.bytes)) ||
	    (rc = sweep(txn, s->commits, &r.commits, dry_run, &st.commits, &st.bytes)))
		goto done;
	if (dry_run) {
		mdb_txn_abort(txn);
		txn = NULL;
	} else {
		rc = artifs_txn_commit(txn);
		txn = NULL;
		if (rc)
			goto done;
	}
	if (stats)
		*stats = st;
done:
	if (txn)
		mdb_txn_abort(txn);
	if (rc == MDB_MAP_FULL && tries++ < 4) {
		reach_release(&r);
		reach_init(&r, s, 0);
		if (!(rc = artifs_store_grow(s, (size_t)1 << 30)))
			goto again;
	}
	artifs_pins_gate_close(gate);
	if (locked)
		artifs_store_unlock(s);
	reach_release(&r);
	return rc;
}
