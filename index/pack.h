/*
 * pack.h - pack files: objects travel to and from remotes in packs of tens
 * of MiB with a separate index (index/FORMAT.md, "Remotes").
 */
#ifndef ARTIFS_PACK_H
#define ARTIFS_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "oid.h"

#define ARTIFS_PACK_MAGIC "ARTIFSP1"
#define ARTIFS_PACK_IDX_MAGIC "ARTIFSI1"
#define ARTIFS_PACK_HDRSZ 8
#define ARTIFS_PACK_IDX_HDRSZ 16
#define ARTIFS_PACK_IDX_ENTSZ 40
/* A pack is closed once it holds this many bytes. */
#define ARTIFS_PACK_TARGET (32u << 20)

/* Object kinds in a pack: the record types, and 'c' for a raw chunk. */
enum artifs_obj_kind {
	ARTIFS_OBJ_CHUNK = 'c',
	ARTIFS_OBJ_BLOB = 'B',
	ARTIFS_OBJ_TREE = 'T',
	ARTIFS_OBJ_LABELSET = 'L',
	ARTIFS_OBJ_COMMIT = 'C',
};

typedef struct artifs_pack_entry {
	artifs_oid id;
	uint8_t kind;
	uint32_t len;
	uint64_t off;		/* from the start of the pack file */
	uint32_t pack;		/* caller's pack number (not stored) */
} artifs_pack_entry;

typedef struct artifs_pack_builder {
	artifs_buf data;	/* the pack file being built */
	artifs_pack_entry *ents;
	size_t n, cap;
} artifs_pack_builder;

void artifs_pack_builder_init(artifs_pack_builder *b);
void artifs_pack_builder_reset(artifs_pack_builder *b);
void artifs_pack_builder_release(artifs_pack_builder *b);
int artifs_pack_add(artifs_pack_builder *b, uint8_t kind, const artifs_oid *id,
	const void *data, size_t len);
/*
 * Close the pack: its id (XXH3-128 of the pack bytes) and its index
 * (entries sorted by id, then a checksum) appended to `idx`.
 */
int artifs_pack_finish(artifs_pack_builder *b, artifs_oid *pack_id, artifs_buf *idx);

/*
 * Decode and check an index (magic, sizes, order, checksum; every entry
 * inside a pack of `pack_size` bytes when that is not 0).  *out is
 * malloc'd; entries get `pack` as their pack number.
 */
int artifs_pack_idx_parse(const void *data, size_t len, uint64_t pack_size, uint32_t pack,
	artifs_pack_entry **out, size_t *n);

/* Do the bytes of an object of `kind` hash to `id` (and start with its type byte)? */
int artifs_obj_verify(uint8_t kind, const artifs_oid *id, const void *data, size_t len);

#endif
