/*
 * ref.h - repositories, refs and the ref log.
 *
 * Each repository ("datasets/NAME", "models/NAME") has one namespace of
 * refs: branches move on commit, tags never move, environments move on
 * promote.  Every move is appended to the ref log.
 */
#ifndef ARTIFS_REF_H
#define ARTIFS_REF_H

#include <lmdb.h>
#include <stdint.h>

#include "oid.h"
#include "store.h"

enum artifs_ref_kind {
	ARTIFS_REF_BRANCH = 'b',
	ARTIFS_REF_TAG = 't',
	ARTIFS_REF_ENV = 'e',
};

#define ARTIFS_REF_NAME_MAX 100

typedef struct artifs_ref {
	char kind;		/* enum artifs_ref_kind */
	artifs_oid target;	/* zero: a branch with no commit yet */
	int64_t time;		/* last move */
	uint64_t seq;		/* number of moves logged */
} artifs_ref;

typedef struct artifs_reflog_entry {
	uint64_t seq;
	artifs_oid old_id, new_id;
	int64_t time;
	const char *author;	/* valid with the txn; not NUL-terminated */
	size_t author_len;
	const char *message;
	size_t message_len;
	const char *details;	/* JSON object {"op", "user", "host", ...}; NULL in old records */
	size_t details_len;
} artifs_reflog_entry;

/* "datasets/NAME" or "models/NAME", NAME of [A-Za-z0-9._-], 1..100, no leading '.' or '-'. */
int artifs_repo_name_valid(const char *repo);
/* Same character rules for branch, tag and environment names. */
int artifs_ref_name_valid(const char *name);
const char *artifs_ref_kind_name(char kind);

/* Create a repository with an unborn branch "main". */
int artifs_repo_create(artifs_store *s, const char *repo);
/* 0 if it exists, ARTIFS_ENOTFOUND (with a hint-friendly message) if not. */
int artifs_repo_check(artifs_store *s, MDB_txn *txn, const char *repo);
/* Created time of a repository. */
int artifs_repo_info(artifs_store *s, MDB_txn *txn, const char *repo, int64_t *created);

/* Call fn for every repository in name order; a non-zero return stops. */
int artifs_repo_foreach(artifs_store *s, MDB_txn *txn,
	int (*fn)(const char *repo, int64_t created, void *ctx), void *ctx);

int artifs_ref_get(artifs_ref *out, artifs_store *s, MDB_txn *txn, const char *repo, const char *name);

/*
 * The head of branch `branch` of repo (zero: no commit yet), for an
 * operation that moves it: a missing repository or branch, or a ref of
 * another kind, is an error whose message ends with `why` (e.g. "commits
 * go to branches").
 */
int artifs_branch_head(artifs_oid *out, artifs_store *s, MDB_txn *txn, const char *repo,
	const char *branch, const char *why);

/*
 * Every ref of repo in name order; fn gets a NUL-terminated name.  A
 * damaged ref record stops the walk with ARTIFS_ECORRUPT.
 */
int artifs_ref_foreach(artifs_store *s, MDB_txn *txn, const char *repo,
	int (*fn)(const char *name, const artifs_ref *ref, void *ctx), void *ctx);

/* The same; with skip_damaged, refs whose records are damaged are left out, not an error. */
int artifs_ref_foreach_ex(artifs_store *s, MDB_txn *txn, const char *repo,
	int (*fn)(const char *name, const artifs_ref *ref, void *ctx), void *ctx, int skip_damaged);

/*
 * Check every ref of the store: its key (REPO, NAME of an existing
 * repository), its record (kind, checksum), and its record against its
 * log, which every move appends to in the same transaction (the last
 * move's target and number); and that every name with a log but no ref
 * ends in a deletion.  fault() gets "REPO:NAME" and what is wrong;
 * *nfaults the count.  Returns 0 unless the store could not be read.
 */
int artifs_refs_verify(artifs_store *s, MDB_txn *txn,
	void (*fault)(const char *where, const char *msg, void *ctx), void *ctx, uint64_t *nfaults);

/*
 * Repair what artifs_refs_verify finds, inside write txn `txn`, from the
 * ref log: a damaged record is rewritten from its name's last logged move
 * (its kind kept when it is one, else read from the log's operations), or
 * removed when the log ends in a deletion or there is no log; a record
 * whose key is damaged is removed; a name whose log does not end in a
 * deletion but has no record gets it back.  report() gets "REPO:NAME"
 * and what was done.
 */
int artifs_refs_repair(artifs_store *s, MDB_txn *txn,
	void (*report)(const char *where, const char *what, void *ctx), void *ctx);

/*
 * Move (or create) ref `name` to `target` inside write txn `txn`, as a
 * compare-and-swap: `expect` NULL means the ref must not exist; otherwise
 * its current target must equal *expect (ARTIFS_ESTALE if not).  A ref of
 * another kind under the name is ARTIFS_EEXISTS; moving a tag is
 * ARTIFS_EIMMUTABLE.  Appends to the ref log.
 */
int artifs_ref_update(artifs_store *s, MDB_txn *txn, const char *repo, const char *name,
	char kind, const artifs_oid *expect, const artifs_oid *target,
	const char *author, const char *message);

/*
 * The same, recording `op` ("commit", "tag", "branch", "promote",
 * "rollback", ...) and the JSON object `details` (NULL: none; its keys are
 * kept beside "op", "user" and "host") in the ref log.  *seq_out (may be
 * NULL) gets the move's sequence number.
 */
int artifs_ref_update_ex(artifs_store *s, MDB_txn *txn, const char *repo, const char *name,
	char kind, const artifs_oid *expect, const artifs_oid *target,
	const char *author, const char *message, const char *op, const char *details,
	uint64_t *seq_out);

/*
 * Delete ref `name` (it must be of `kind`; ARTIFS_ENOTFOUND if absent,
 * ARTIFS_EINVAL if another kind) inside write txn `txn`; with `expect`,
 * only if it still points there (ARTIFS_ESTALE if not).  The deletion is
 * appended to its ref log (to: zero) under `op`; the log stays, and a ref
 * made later under the name continues it.
 */
int artifs_ref_delete(artifs_store *s, MDB_txn *txn, const char *repo, const char *name,
	char kind, const artifs_oid *expect, const char *author, const char *message, const char *op);

/* Every name with a ref log in repo, deleted refs too, in name order. */
int artifs_reflog_names(artifs_store *s, MDB_txn *txn, const char *repo,
	int (*fn)(const char *name, void *ctx), void *ctx);

/*
 * Notes: one JSON document appended to move `seq` of a ref after the move
 * (post-promote hook results).  A second note for the same move is refused.
 */
int artifs_ref_note_put(artifs_store *s, MDB_txn *txn, const char *repo, const char *name,
	uint64_t seq, const char *json);
int artifs_ref_note_get(artifs_store *s, MDB_txn *txn, const char *repo, const char *name,
	uint64_t seq, const char **json, size_t *len);

/* Ref log of one ref, newest first; fn's entry is valid during the call. */
int artifs_reflog_foreach(artifs_store *s, MDB_txn *txn, const char *repo, const char *name,
	int (*fn)(const artifs_reflog_entry *e, void *ctx), void *ctx);

/*
 * Resolve REV in repo: a ref name, else a commit-id prefix of at least 6
 * hex digits that names exactly one commit of this repository.
 */
int artifs_rev_parse(artifs_oid *out, artifs_store *s, MDB_txn *txn, const char *repo, const char *rev);
/*
 * Only the commit-id part of that: a prefix of 6 to 32 lower-case hex
 * digits naming exactly one commit of repo (ARTIFS_EAMBIGUOUS if several).
 * Refs are not consulted, so a branch named like hex does not shadow it.
 */
int artifs_commit_by_prefix(artifs_oid *out, artifs_store *s, MDB_txn *txn, const char *repo,
	const char *prefix);

/* The committing identity: $ARTIFS_AUTHOR, else the login name and host. */
const char *artifs_author_default(void);

#endif
