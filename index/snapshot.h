/*
 * snapshot.h - commit a directory as the new head of a branch.
 */
#ifndef ARTIFS_SNAPSHOT_H
#define ARTIFS_SNAPSHOT_H

#include <stdint.h>

#include "commit.h"
#include "oid.h"
#include "store.h"

typedef struct artifs_progress {
	uint64_t files;		/* files and links done */
	uint64_t bytes;		/* logical bytes done */
	uint64_t bytes_read;	/* bytes actually read (stat-cache misses) */
	uint64_t bytes_total;	/* 0 when unknown */
	uint64_t files_total;
} artifs_progress;

typedef void (*artifs_progress_fn)(const artifs_progress *p, void *ctx);
typedef void (*artifs_warn_fn)(const char *msg, void *ctx);

#define ARTIFS_SNAPSHOT_OPTS_VERSION 1
typedef struct artifs_snapshot_opts {
	unsigned int version;		/* ARTIFS_SNAPSHOT_OPTS_VERSION */
	const char *message;
	const char *author;		/* NULL: artifs_author_default() */
	const artifs_meta *meta;	/* KEY=VALUE metadata */
	size_t nmeta;
	int allow_empty;		/* commit even when nothing changed */
	int no_cache;			/* ignore the stat cache: read every file */
	artifs_progress_fn progress;	/* called often; throttle in the callback */
	artifs_warn_fn warn;		/* skipped entries and the like */
	void *ctx;
	/* label edits applied on top of the labels carried over (label.h) */
	struct artifs_label_edits *labels;
	/*
	 * Called when the new commit is known and its trees are readable, just
	 * before the branch moves (pre-commit hooks); a non-zero return is
	 * returned and the branch stays.  old is the head (zero: none).
	 */
	int (*before_move)(const artifs_oid *old, const artifs_oid *new_id, const artifs_commit *c,
		void *ctx);
	void *move_ctx;
} artifs_snapshot_opts;

#define ARTIFS_SNAPSHOT_OPTS_INIT { ARTIFS_SNAPSHOT_OPTS_VERSION, "", NULL, NULL, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL }

typedef struct artifs_snapshot_stats {
	uint64_t files, dirs, links, skipped;
	uint64_t bytes;			/* logical bytes in the snapshot */
	uint64_t bytes_read;		/* bytes read from the source */
	uint64_t files_cached;		/* reused through the stat cache */
	uint64_t chunks_new, chunk_bytes_new;
	uint64_t objects_new;		/* manifests, trees, commit */
	uint64_t labelled;		/* files with labels in the snapshot */
	uint64_t labels_changed;	/* files whose labels the edits changed */
	int created;			/* 0: nothing changed, head kept */
} artifs_snapshot_stats;

/*
 * Snapshot `dir` into repo@branch.  *out gets the new head (or the current
 * head when nothing changed and !allow_empty).  Regular files, directories,
 * the executable bit and symlinks (stored, never followed) are kept;
 * sockets, devices and FIFOs are skipped with a warning.  Files unchanged
 * by (size, mtime, ctime, inode) against the branch's stat cache are not
 * read again.  A file that changes while it is read is retried, then
 * reported as ARTIFS_ECHANGED.  Labels carry over by path: a file keeps
 * the labels its path had in the branch's head; opts->labels then applies
 * edits on top.  All-or-nothing for refs: the branch moves in
 * the final transaction, by compare-and-swap against the head it started from.
 */
int artifs_snapshot_dir(artifs_oid *out, artifs_store *s, const char *repo, const char *branch,
	const char *dir, const artifs_snapshot_opts *opts, artifs_snapshot_stats *stats);

/*
 * A snapshot from something other than a directory (an archive): build()
 * stores the new root tree through w and counts what it stored in st;
 * prev is the head's root when its labels should carry over (NULL when the
 * head has none): a file keeps the labelset of the same path in prev
 * (artifs_prevdir_* in label.h).  The rest is artifs_snapshot_dir's: label
 * edits, the manifest, no commit when nothing changed, before_move, the
 * branch moved by compare-and-swap.  The branch's stat cache is dropped.
 */
struct artifs_writer;
typedef struct artifs_tree_source {
	int (*build)(struct artifs_writer *w, const artifs_oid *prev, artifs_oid *root,
		artifs_snapshot_stats *st, void *ctx);
	void *ctx;
} artifs_tree_source;

int artifs_snapshot_source(artifs_oid *out, artifs_store *s, const char *repo, const char *branch,
	const artifs_tree_source *src, const artifs_snapshot_opts *o, artifs_snapshot_stats *stats);

/*
 * Shared with label.c: flush w, compute c's id and call fn(head, id, c,
 * ctx) (the before_move callback of a commit).
 */
int artifs_commit_before_move(struct artifs_writer *w, const artifs_oid *head, const artifs_commit *c,
	int (*fn)(const artifs_oid *, const artifs_oid *, const artifs_commit *, void *), void *ctx);

/*
 * Forget branch's stat cache (its rows: one per file last committed), in
 * write txn `txn`: for a deleted branch.
 */
int artifs_statcache_drop(artifs_store *s, MDB_txn *txn, const char *repo, const char *branch);

#endif
