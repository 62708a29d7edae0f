/*
 * store.h - a content-addressed store: one LMDB environment in a directory.
 *
 * The store is safe to use from several processes at once (LMDB's own
 * locking: any number of readers, one writer).  A handle is not tied to a
 * thread for reads (MDB_NOTLS); write operations on one handle must not run
 * concurrently.
 */
#ifndef ARTIFS_STORE_H
#define ARTIFS_STORE_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "oid.h"

/* The on-disk format this build reads and writes (index/FORMAT.md). */
#define ARTIFS_FORMAT_VERSION 1

typedef struct artifs_store artifs_store;

#define ARTIFS_STORE_OPTS_VERSION 1
typedef struct artifs_store_opts {
	unsigned int version;	/* ARTIFS_STORE_OPTS_VERSION */
	/* Address space reserved at open; the map grows past it on demand.
	 * 0 means the default (1 GiB). */
	size_t initial_mapsize;
	int readonly;		/* open without write access */
} artifs_store_opts;

#define ARTIFS_STORE_OPTS_INIT { ARTIFS_STORE_OPTS_VERSION, 0, 0 }

/*
 * Pick the store directory: `flag` (from --store) if not NULL, else
 * $ARTIFS_STORE, else $XDG_DATA_HOME/artifs, else ~/.local/share/artifs.
 * Returns a malloc'd string in *out, owned by the caller.
 */
int artifs_store_default_path(char **out, const char *flag);

/*
 * Create a store in `dir` (created if missing, parents too).
 * An existing store is left alone and reported with ARTIFS_EEXISTS.
 */
int artifs_store_init(const char *dir, const artifs_store_opts *opts);

/*
 * Open the store in `dir`.  ARTIFS_ENOSTORE if there is none,
 * ARTIFS_EVERSION if it was written by an unknown format version.
 * Free with artifs_store_free().
 */
int artifs_store_open(artifs_store **out, const char *dir, const artifs_store_opts *opts);

/* Close; NULL is a no-op.  No transaction of this handle may be open. */
void artifs_store_free(artifs_store *s);

const char *artifs_store_path(const artifs_store *s);

/*
 * Warming the index of a cold store: walk the object tables (chunks,
 * blobs, trees, commits) for ids whose first byte is in [lo, hi), touching
 * their B-tree pages but not chunk bytes, so later look-ups find those
 * pages in memory.  Values stored outside the B-tree (a big manifest or
 * tree) are passed to `big` (pointer into the map, length) for the caller
 * to fetch as it likes; it may be NULL.
 */
int artifs_store_warm(artifs_store *s, MDB_txn *txn, unsigned lo, unsigned hi,
	void (*big)(const void *p, size_t len, void *ctx), void *ctx);
/* Bytes of B-tree pages of those tables (what artifs_store_warm reads). */
int artifs_store_index_bytes(artifs_store *s, MDB_txn *txn, uint64_t *out);

/* Current map size and bytes in use (pages below the high-water mark). */
void artifs_store_usage(artifs_store *s, size_t *mapsize, size_t *used);

/*
 * Read transactions.  Values fetched inside one are valid only until it ends.
 * Handles MDB_MAP_RESIZED (another process grew the map) transparently.
 */
int artifs_rtxn_begin(artifs_store *s, MDB_txn **out);

/*
 * For multi-threaded readers (the mount daemon), where remapping under
 * another thread's open transaction would pull the map from under it:
 * begin a read transaction without remapping.  Returns MDB_MAP_RESIZED
 * (unmapped) when another process grew the map; the caller then makes sure
 * no transaction of this handle is open in any thread, calls
 * artifs_store_remap() and retries.
 */
int artifs_rtxn_try(artifs_store *s, MDB_txn **out);
int artifs_store_remap(artifs_store *s);

/*
 * A write transaction with room for at least `need` more bytes of data:
 * the map is grown first where needed, so callers see MDB_MAP_FULL only if
 * their estimate was short.  On MDB_MAP_FULL, abort, call
 * artifs_store_grow() and redo the transaction.
 */
int artifs_wtxn_begin(artifs_store *s, size_t need, MDB_txn **out);
int artifs_store_grow(artifs_store *s, size_t need);

/*
 * Does stored record `id` of kind 'T' (tree), 'B' (manifest), 'C' (commit)
 * or 'L' (labelset) hash to its id?  0, ARTIFS_ENOTFOUND, or
 * ARTIFS_ECORRUPT naming it.  Readers that cache what they decoded (the
 * mount) check each record once.
 */
int artifs_object_check(artifs_store *s, MDB_txn *txn, char kind, const artifs_oid *id);

/* The stored bytes of record `id` of `kind` (as above), unchecked, valid while txn lives. */
int artifs_object_get(artifs_store *s, MDB_txn *txn, char kind, const artifs_oid *id,
	const void **data, size_t *len);

/*
 * Chunks by id, for a cache of another store's chunks (the lazy mount):
 * has (1 or 0), put (checked as artifs_store_put: 0 new, 1 already there),
 * delete (a missing chunk is not an error), and every chunk's id and size.
 */
int artifs_chunk_has(artifs_store *s, MDB_txn *txn, const artifs_oid *id);
int artifs_chunk_put(artifs_store *s, MDB_txn *txn, const artifs_oid *id, const void *data,
	size_t len);
int artifs_chunk_del(artifs_store *s, MDB_txn *txn, const artifs_oid *id);
int artifs_chunk_foreach(artifs_store *s, MDB_txn *txn,
	int (*fn)(const artifs_oid *id, size_t len, void *ctx), void *ctx);

/* Commit and map errors (MDB_MAP_FULL is passed through unmapped). */
int artifs_txn_commit(MDB_txn *txn);

/*
 * The store's advisory lock (flock on DIR/artifs.lock): commits hold it
 * shared, gc holds it exclusive so it never deletes objects that a running
 * commit has written but not yet referenced.  `wait` = 0 fails with
 * ARTIFS_EBUSY instead of blocking.
 */
int artifs_store_lock(artifs_store *s, int exclusive, int wait);
void artifs_store_unlock(artifs_store *s);

/*
 * The ref generation, meta key "refgen": bumped inside every transaction
 * that moves or creates a ref (so also when a repository is created).  A
 * reader such as the mount daemon polls this one key to notice ref moves
 * made by other processes.  A store that never moved a ref reads 0.
 */
int artifs_store_refgen(artifs_store *s, MDB_txn *txn, uint64_t *out);
int artifs_store_refgen_bump(artifs_store *s, MDB_txn *txn);

#endif
