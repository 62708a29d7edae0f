/*
 * commit.h - commit objects: root tree, parents, author, time, message,
 * metadata key=value pairs and the labels manifest.
 */
#ifndef ARTIFS_COMMIT_H
#define ARTIFS_COMMIT_H

#include <lmdb.h>
#include <stdint.h>

#include "codec.h"
#include "oid.h"
#include "store.h"

typedef struct artifs_meta {
	char *key;
	char *value;
} artifs_meta;

typedef struct artifs_commit {
	artifs_oid tree;
	artifs_oid labels;	/* blob of the version's .labels.jsonl; zero: no labels */
	uint32_t nparents;
	artifs_oid *parents;
	int64_t time;		/* seconds since the epoch, UTC */
	char *repo;		/* "datasets/NAME" or "models/NAME" */
	char *author;
	char *message;
	size_t nmeta;
	artifs_meta *meta;	/* sorted by key, keys unique */
} artifs_commit;

/*
 * Encode c (metadata is sorted by key on the way; duplicate keys are
 * ARTIFS_EINVAL).  The id is the XXH3-128 of the encoding.
 */
int artifs_commit_encode(artifs_buf *out, const artifs_commit *c);

/* Decode a record into a malloc'd commit; free with artifs_commit_free. */
int artifs_commit_decode(artifs_commit **out, const void *data, size_t len);
void artifs_commit_free(artifs_commit *c);

/* Load commit `id`; ARTIFS_ENOTFOUND if absent. */
int artifs_commit_load(artifs_commit **out, artifs_store *s, MDB_txn *txn, const artifs_oid *id);

/* Encode, hash and store c inside the write txn `txn`; *id gets its id. */
int artifs_commit_write(artifs_oid *id, artifs_store *s, MDB_txn *txn, const artifs_commit *c);

/* Is key acceptable as a metadata key ([A-Za-z0-9._-], 1..128 bytes)? */
int artifs_meta_key_valid(const char *key);

#endif
