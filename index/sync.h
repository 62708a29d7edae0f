/*
 * sync.h - push to and pull from a remote (remote.h): objects in packs
 * (pack.h), refs as append-only, compare-and-swap logs
 * (index/FORMAT.md, "Remotes").
 */
#ifndef ARTIFS_SYNC_H
#define ARTIFS_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "remote.h"
#include "store.h"

typedef struct artifs_sync_progress {
	const char *phase;	/* "index", "objects", "refs" */
	uint64_t objects, objects_total;
	uint64_t bytes, bytes_total;
	uint64_t packs, packs_total;
	uint64_t requests;
	double seconds;
} artifs_sync_progress;

typedef struct artifs_sync_stats {
	uint64_t objects, bytes, packs, requests;
	uint64_t refs_updated, refs_current;
	uint64_t objects_skipped;	/* already on the other side */
	double seconds;
} artifs_sync_stats;

#define ARTIFS_SYNC_OPTS_VERSION 1
typedef struct artifs_sync_opts {
	unsigned int version;		/* ARTIFS_SYNC_OPTS_VERSION */
	const char *name;		/* the remote's name, for messages and ref logs */
	const char *url;
	const artifs_remote_opts *ropts;
	int jobs;			/* requests in flight; 0: 8 */
	const char *cache_dir;		/* pack indexes already fetched; NULL: none */
	void (*progress)(const artifs_sync_progress *p, void *ctx);
	/* what does not stop the command: an error (a ref refused) or a warning */
	void (*warn)(int error, const char *msg, void *ctx);
	void *ctx;
	/* pull: commits, trees, manifests and labelsets only, no chunks (a
	 * lazy mount's cache fetches those as files are read) */
	int records_only;
} artifs_sync_opts;

#define ARTIFS_SYNC_OPTS_INIT { ARTIFS_SYNC_OPTS_VERSION, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, 0 }

/*
 * Send the objects of `specs` ("REPO" or "REPO@REF"; none: every
 * repository) that the remote lacks, then move the remote's refs by
 * compare-and-swap.  A branch moves only forward (ARTIFS_ESTALE names the
 * branch otherwise), a tag never moves, an environment's moves are sent as
 * they were logged here.
 */
int artifs_push(artifs_store *s, const artifs_sync_opts *o, char *const *specs, size_t nspecs,
	artifs_sync_stats *stats);

/*
 * Fetch what the remote's refs of `specs` need, verify every object, then
 * move local refs: branches fast-forward, new refs are created; a branch
 * or environment that has diverged is left alone and reported
 * (ARTIFS_ESTALE) after the others were updated.
 */
int artifs_pull(artifs_store *s, const artifs_sync_opts *o, char *const *specs, size_t nspecs,
	artifs_sync_stats *stats);

/*
 * The remote's pack indexes, for reading single objects (the lazy mount):
 * where each object is, by id.  `o` must outlive the index.
 */
#include "pack.h"
typedef struct artifs_rindex artifs_rindex;
int artifs_rindex_load(artifs_rindex **out, const artifs_sync_opts *o);
/* NULL when the remote does not have `id`; *pack: the pack's hex id. */
const artifs_pack_entry *artifs_rindex_find(const artifs_rindex *ix, const artifs_oid *id,
	const char **pack);
void artifs_rindex_free(artifs_rindex *ix);

#endif
