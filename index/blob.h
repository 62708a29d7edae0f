/*
 * blob.h - file manifests: size, whole-file digest, and the ordered
 * (offset, chunk id) list.  A read at offset X is a binary search here.
 */
#ifndef ARTIFS_BLOB_H
#define ARTIFS_BLOB_H

#include <lmdb.h>
#include <stdint.h>

#include "codec.h"
#include "oid.h"
#include "store.h"

#define ARTIFS_BLOB_HDRSZ 32
#define ARTIFS_BLOB_ENTSZ 24

/* A decoded view that points into the stored record (valid with its txn). */
typedef struct artifs_blob_view {
	uint64_t size;
	artifs_oid digest;	/* XXH3-128 of the whole file */
	uint32_t nchunks;
	const uint8_t *entries;
} artifs_blob_view;

/* Check and map a manifest record; ARTIFS_ECORRUPT if malformed. */
int artifs_blob_parse(artifs_blob_view *out, const void *data, size_t len);

uint64_t artifs_blob_chunk_off(const artifs_blob_view *b, uint32_t i);
uint64_t artifs_blob_chunk_len(const artifs_blob_view *b, uint32_t i);
void artifs_blob_chunk_id(const artifs_blob_view *b, uint32_t i, artifs_oid *out);

/* Index of the chunk that holds byte `off` (off < size). */
uint32_t artifs_blob_find(const artifs_blob_view *b, uint64_t off);

/* Encode a manifest; offs[0] must be 0 and offsets strictly increasing. */
int artifs_blob_encode(artifs_buf *out, uint64_t size, const artifs_oid *digest,
	uint32_t nchunks, const uint64_t *offs, const artifs_oid *ids);

/* Load and parse the manifest `id` inside txn. */
int artifs_blob_load(artifs_blob_view *out, artifs_store *s, MDB_txn *txn, const artifs_oid *id);
/*
 * The same for a manifest artifs_blob_load() has accepted before in this
 * process (records never change under their id): the header and length
 * are checked, the offsets are not walked again.  A 2 GiB file has 16,000
 * of them, and a mount loads its manifest for every 1 MiB read.
 */
int artifs_blob_load_again(artifs_blob_view *out, artifs_store *s, MDB_txn *txn,
	const artifs_oid *id);

/*
 * Fetch chunk i of b: *data points into the map (valid with txn).  With
 * `verify`, the bytes are hashed and checked against the chunk id and the
 * manifest's length; a mismatch is ARTIFS_ECORRUPT (an EIO to readers),
 * never wrong bytes.
 */
int artifs_blob_chunk(const uint8_t **data, size_t *len, artifs_store *s, MDB_txn *txn,
	const artifs_blob_view *b, uint32_t i, int verify);

#endif
