/*
 * diff.h - compare two trees by path.  Subtrees with equal ids are skipped
 * without being read, so a diff costs what changed, not what exists.
 */
#ifndef ARTIFS_DIFF_H
#define ARTIFS_DIFF_H

#include <lmdb.h>
#include <stdint.h>

#include "oid.h"
#include "store.h"

enum artifs_diff_status {
	ARTIFS_DIFF_ADDED = 'A',
	ARTIFS_DIFF_REMOVED = 'D',
	ARTIFS_DIFF_MODIFIED = 'M',	/* content changed (type may differ too) */
	ARTIFS_DIFF_MODE = 'X',		/* only the executable bit changed */
	ARTIFS_DIFF_LABELS = 'L',	/* only the labels changed */
};

typedef struct artifs_diff_entry {
	char status;		/* enum artifs_diff_status */
	const char *path;	/* valid during the callback */
	uint8_t old_type, new_type;	/* 0 when absent */
	uint8_t old_flags, new_flags;
	uint64_t old_size, new_size;
	artifs_oid old_id, new_id;
	artifs_oid old_labels, new_labels;	/* labelset ids; zero when none */
} artifs_diff_entry;

/*
 * Call fn for every file or link that differs between trees a and b, in
 * path order; an added or removed directory reports each file under it.
 * A zero id stands for the empty tree.
 * A file whose content and labels both changed is one MODIFIED entry with
 * differing old_labels and new_labels.
 * A non-zero return from fn stops the walk and is returned.
 */
int artifs_diff_trees(artifs_store *s, MDB_txn *txn, const artifs_oid *a, const artifs_oid *b,
	int (*fn)(const artifs_diff_entry *e, void *ctx), void *ctx);

#endif
