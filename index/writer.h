/*
 * writer.h - batched object insertion.
 *
 * A writer collects new chunks, manifests and trees in memory and writes
 * them in large LMDB transactions (ARTIFS_WRITER_BATCH bytes), checking
 * every dedupe hit byte for byte.  Objects written by a batch are inert
 * until a ref points at them: a process killed mid-commit leaves only
 * unreferenced objects, which 'artifs gc' removes and a re-run reuses.
 * The last batch and the caller's ref update share one transaction.
 */
#ifndef ARTIFS_WRITER_H
#define ARTIFS_WRITER_H

#include <lmdb.h>
#include <stdint.h>

#include "chunk.h"
#include "oid.h"
#include "store.h"

#define ARTIFS_WRITER_BATCH ((size_t)64 << 20)

typedef struct artifs_writer artifs_writer;

typedef struct artifs_writer_stats {
	uint64_t chunks_new, chunk_bytes_new;	/* chunks not in the store before */
	uint64_t chunks_dedup, chunk_bytes_dedup;
	uint64_t objects_new;			/* manifests and trees */
	uint64_t batches;
} artifs_writer_stats;

int artifs_writer_new(artifs_writer **out, artifs_store *s);
/* Drops anything not yet written; NULL is a no-op. */
void artifs_writer_free(artifs_writer *w);

artifs_store *artifs_writer_store(artifs_writer *w);

/* The writer's read transaction (renewed after each batch). */
MDB_txn *artifs_writer_rtxn(artifs_writer *w);

/*
 * Streaming file content.  Between begin and end, get a buffer with
 * file_buf(), fill up to *avail bytes, then file_fill(n).  end() cuts the
 * remaining chunks and stores the manifest; *blob and *size get its id and
 * length.  abort() forgets the current file (its chunks become orphans).
 */
int artifs_writer_file_begin(artifs_writer *w);
int artifs_writer_file_buf(artifs_writer *w, uint8_t **buf, size_t *avail);
int artifs_writer_file_fill(artifs_writer *w, size_t n);
int artifs_writer_file_write(artifs_writer *w, const void *data, size_t len);
int artifs_writer_file_end(artifs_writer *w, artifs_oid *blob, uint64_t *size);
void artifs_writer_file_abort(artifs_writer *w);

/* Store a whole tree record (already encoded); *id gets its id. */
int artifs_writer_put_tree(artifs_writer *w, artifs_oid *id, const void *data, size_t len);

/* Store a labelset record (index/label.h); *id gets its id. */
int artifs_writer_put_labels(artifs_writer *w, artifs_oid *id, const void *data, size_t len);

/*
 * Write what is pending now (no ref moves), so that it can be read back
 * through artifs_writer_rtxn().  Objects stay unreferenced until a ref
 * points at them; the store lock keeps gc away meanwhile.
 */
int artifs_writer_flush(artifs_writer *w);

/*
 * Write what is pending and run fn(txn, ctx) in the same transaction, then
 * commit.  fn may run more than once (the map grew and the batch was
 * redone) and must only write through txn.
 */
int artifs_writer_finish(artifs_writer *w, int (*fn)(MDB_txn *txn, void *ctx), void *ctx);

const artifs_writer_stats *artifs_writer_get_stats(const artifs_writer *w);

#endif
