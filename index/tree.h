/*
 * tree.h - directories.  A tree record is a fixed-width entry table sorted
 * by name followed by the names, so a look-up by name is a binary search
 * over the stored bytes with no decoding pass.
 */
#ifndef ARTIFS_TREE_H
#define ARTIFS_TREE_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "oid.h"
#include "store.h"

enum artifs_entry_type {
	ARTIFS_T_FILE = 1,
	ARTIFS_T_DIR = 2,
	ARTIFS_T_LINK = 3,	/* a blob holding the link target */
};

#define ARTIFS_F_EXEC 0x01	/* file: executable (0555 instead of 0444) */

#define ARTIFS_TREE_HDRSZ 8
#define ARTIFS_TREE_ENTSZ 48
#define ARTIFS_NAME_MAX 255

typedef struct artifs_tree_entry {
	const char *name;	/* not NUL-terminated; points into the record */
	size_t name_len;
	uint8_t type;		/* enum artifs_entry_type */
	uint8_t flags;		/* ARTIFS_F_* */
	uint64_t size;		/* file: bytes; link: target length; dir: bytes below */
	artifs_oid id;		/* blob (file, link) or tree (dir) */
	artifs_oid labels;	/* labelset id, zero when none */
} artifs_tree_entry;

typedef struct artifs_tree_view {
	uint32_t count;
	const uint8_t *table;
	const uint8_t *names;
	size_t names_len;
} artifs_tree_view;

/* Map a record: checks the header and sizes only (O(1)). */
int artifs_tree_parse(artifs_tree_view *out, const void *data, size_t len);

/* Full check: every name in bounds, valid and strictly sorted (O(n)). */
int artifs_tree_validate(const artifs_tree_view *t);

/* Entry i; ARTIFS_ECORRUPT if its name lies outside the record. */
int artifs_tree_entry_at(const artifs_tree_view *t, uint32_t i, artifs_tree_entry *out);

/*
 * Binary search for the index of `name`; ARTIFS_ENOTFOUND if absent, with
 * *index set to where it would be (the first entry after it).
 */
int artifs_tree_search(const artifs_tree_view *t, const char *name, size_t len, uint32_t *index);
/* Binary search; ARTIFS_ENOTFOUND if absent. */
int artifs_tree_lookup(const artifs_tree_view *t, const char *name, size_t len,
	artifs_tree_entry *out);

/* Load and map tree `id` inside txn. */
int artifs_tree_load(artifs_tree_view *out, artifs_store *s, MDB_txn *txn, const artifs_oid *id);

/*
 * Resolve a '/'-separated path (leading, trailing and repeated slashes are
 * ignored) from tree `root`.  The empty path is the root directory itself.
 */
int artifs_tree_resolve(artifs_tree_entry *out, artifs_store *s, MDB_txn *txn,
	const artifs_oid *root, const char *path);

/* Is `name` (len bytes) acceptable as an entry name? */
int artifs_name_valid(const char *name, size_t len);

/* Building: collect entries in any order, then encode (sorts them). */
typedef struct artifs_tree_builder {
	struct artifs_tb_ent {
		char *name;
		size_t name_len;
		uint8_t type, flags;
		uint64_t size;
		artifs_oid id, labels;
	} *ents;
	size_t n, cap;
} artifs_tree_builder;

void artifs_tree_builder_init(artifs_tree_builder *tb);
int artifs_tree_builder_add(artifs_tree_builder *tb, const char *name, size_t len,
	uint8_t type, uint8_t flags, uint64_t size, const artifs_oid *id, const artifs_oid *labels);
/* Encode into out (appended); ARTIFS_EINVAL on a duplicate or bad name. */
int artifs_tree_builder_encode(artifs_tree_builder *tb, artifs_buf *out);
void artifs_tree_builder_release(artifs_tree_builder *tb);

#endif
