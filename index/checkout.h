/*
 * checkout.h - reading versions back out: one file to a descriptor, or a
 * whole tree materialised into a directory.
 */
#ifndef ARTIFS_CHECKOUT_H
#define ARTIFS_CHECKOUT_H

#include <stdint.h>

#include "oid.h"
#include "snapshot.h"
#include "store.h"

/*
 * Write the content of blob `id` to fd, straight from the map.  Every chunk
 * is verified against its id: corrupt data is ARTIFS_ECORRUPT, never output.
 */
int artifs_blob_write_fd(artifs_store *s, MDB_txn *txn, const artifs_oid *id, int fd,
	uint64_t *written);

typedef struct artifs_checkout_stats {
	uint64_t files, dirs, links, bytes;
} artifs_checkout_stats;

/*
 * Materialise directory tree `tree` (or, for a single file entry, that file)
 * into `dest`, which must not exist or be an empty directory.  Files get
 * 0644/0755 (less the umask) and mtime `mtime`; links are recreated as
 * links.  Nothing outside dest is ever written.
 */
int artifs_checkout_tree(artifs_store *s, const artifs_oid *tree, int64_t mtime,
	const char *dest, artifs_progress_fn progress, void *ctx, artifs_checkout_stats *stats);

#endif
