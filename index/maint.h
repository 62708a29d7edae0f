/*
 * maint.h - whole-store walks: fsck (verify), gc (delete unreachable),
 * du (logical vs stored bytes).
 *
 * Reachable means: from any ref or any ref-log entry (old and new ids) of
 * any repository, through commit parents, trees and manifests to chunks.
 * Ref logs count so that rollback and audit keep their versions.
 */
#ifndef ARTIFS_MAINT_H
#define ARTIFS_MAINT_H

#include <stdint.h>

#include "oid.h"
#include "snapshot.h"
#include "store.h"

/* kind: "commit", "tree", "blob", "chunk", "labelset" or "ref"; where: REPO@COMMIT:PATH or REPO:REF. */
typedef void (*artifs_fault_fn)(const char *kind, const artifs_oid *id, const char *where,
	const char *msg, void *ctx);

typedef struct artifs_fsck_stats {
	uint64_t refs, commits, trees, blobs, chunks, labelsets;
	uint64_t bytes_verified;
	uint64_t faults;
} artifs_fsck_stats;

/*
 * Verify every reachable object: each record hashes to its id and decodes,
 * each chunk hashes to its id and has the length its manifest says, each
 * file's chunks hash to its whole-file digest.  Faults go to fault_fn and are
 * counted; the return is 0 unless the walk itself failed: ARTIFS_ECORRUPT
 * when LMDB's own pages are too damaged to go on (stats and the faults
 * reported so far are still filled in).
 */
int artifs_fsck(artifs_store *s, artifs_fault_fn fault_fn, artifs_progress_fn progress, void *ctx,
	artifs_fsck_stats *stats);

typedef struct artifs_gc_stats {
	uint64_t kept;			/* reachable objects */
	uint64_t chunks, blobs, trees, commits, labelsets;	/* removed (or would be) */
	uint64_t bytes;			/* payload bytes removed */
} artifs_gc_stats;

/*
 * Delete objects no ref or ref log reaches.  Takes the store lock
 * exclusively (ARTIFS_EBUSY while a commit runs).  dry_run only counts.
 * Freed pages are reused by later writes; the file does not shrink.
 */
int artifs_gc(artifs_store *s, int dry_run, artifs_gc_stats *stats);

typedef struct artifs_du_stats {
	uint64_t commits;
	uint64_t logical_bytes;		/* sum over commits of their files' sizes */
	uint64_t chunks;
	uint64_t stored_bytes;		/* unique chunk bytes those commits reach */
	uint64_t store_file_bytes;	/* size of the LMDB data file (whole store) */
} artifs_du_stats;

/* Space use of one repository, or of the whole store when repo is NULL. */
int artifs_du(artifs_store *s, const char *repo, artifs_du_stats *stats);

#endif
