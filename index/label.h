/*
 * label.h - per-file labels: key=value pairs stored as shared "labelset"
 * records that tree entries point at, edits applied to a tree as a batch,
 * and the generated manifest (.labels.jsonl) of a version.
 *
 * A relabel rewrites only the trees on the paths it touches and the
 * labelsets it creates; no file content is read or written.
 */
#ifndef ARTIFS_LABEL_H
#define ARTIFS_LABEL_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "codec.h"
#include "oid.h"
#include "store.h"
#include "writer.h"

struct artifs_commit;

#define ARTIFS_LABEL_KEY_MAX 128	/* bytes */
#define ARTIFS_LABEL_VALUE_MAX 4096	/* bytes */
#define ARTIFS_LABELS_PER_FILE_MAX 256

typedef struct artifs_label {
	const char *key;	/* not NUL-terminated when it points into a record */
	size_t key_len;
	const char *value;
	size_t value_len;
} artifs_label;

/* Keys: 1..128 bytes of [a-z0-9_.-], starting with [a-z0-9]. */
int artifs_label_key_valid(const char *key, size_t len);
/* Values: 1..4096 bytes of UTF-8 without NUL, CR or LF. */
int artifs_label_value_valid(const char *value, size_t len);
/* Is s[0..len) valid UTF-8 (no overlong forms, no surrogates)? */
int artifs_utf8_valid(const char *s, size_t len);

/*
 * Labelset record: u8 'L' | u8 1 | u16 0 | u32 count, then count x
 * (str key | str value) sorted by key, keys unique.  decode fills at most
 * `max` labels pointing into `data` and checks the whole record.
 */
int artifs_labelset_encode(artifs_buf *out, artifs_label *labels, size_t n);
int artifs_labelset_decode(artifs_label *out, size_t max, size_t *n, const void *data, size_t len);
/* Decode labelset `id` inside txn (pointers valid with the txn). */
int artifs_labelset_load(artifs_label *out, size_t max, size_t *n, artifs_store *s, MDB_txn *txn,
	const artifs_oid *id);

/*
 * Edits: set (value != NULL) or remove (value == NULL) KEY on PATH.  PATH is
 * relative to the version root; a directory means every file below it.
 * `line` is where the edit came from (0: the command line), for messages.
 */
typedef struct artifs_label_edit {
	char *path;
	char *key;
	char *value;
	uint64_t line;
} artifs_label_edit;

typedef struct artifs_label_edits {
	artifs_label_edit *v;
	size_t n, cap;
	int replace;		/* drop every existing label of the version first */
	const char *source;	/* file name for messages ("-" is stdin), or NULL */
	void *arena;		/* the strings */
} artifs_label_edits;

void artifs_label_edits_init(artifs_label_edits *e);
void artifs_label_edits_release(artifs_label_edits *e);
/* Copies path, key and value (value NULL: remove); path is normalised. */
int artifs_label_edits_add(artifs_label_edits *e, const char *path, size_t path_len,
	const char *key, size_t key_len, const char *value, size_t value_len, uint64_t line);

enum artifs_label_format {
	ARTIFS_LABELS_AUTO = 0,	/* from the file name's extension */
	ARTIFS_LABELS_CSV,
	ARTIFS_LABELS_JSONL,
};

/*
 * Parse a label file into edits (appended).  CSV: header "path,KEY..."
 * (one row per file; an empty cell leaves the key alone) or exactly
 * "path,key,value" (one row per pair).  JSON Lines: {"path": P, "labels":
 * {KEY: VALUE, ...}}, a null value removes the key.  Every problem is
 * reported with its line number; the first few are collected in the error
 * message.  `name` is the file name ("-": read f, which must be given with
 * a format).
 */
int artifs_label_file_parse(artifs_label_edits *e, const char *name, FILE *f,
	enum artifs_label_format fmt);

typedef struct artifs_label_apply_stats {
	uint64_t files_changed;		/* files whose labelset changed */
	uint64_t labelsets_new;
} artifs_label_apply_stats;

/*
 * Apply edits to the tree `root`, writing new trees and labelsets through
 * w; *out gets the new root (equal to root when nothing changed).  Sorts
 * e->v.  All-or-nothing: an unknown path, a path through a file, a
 * symlink, two edits of one key of one path, or a file left with too many
 * labels fails with a message naming the lines, and nothing is referenced.
 * Objects of `root` must be readable through the writer's read
 * transaction (call artifs_writer_flush first if they were just written).
 */
int artifs_labels_apply(artifs_writer *w, const artifs_oid *root, artifs_label_edits *e,
	artifs_oid *out, artifs_label_apply_stats *st);

/*
 * Every labelled file under tree `root` (prefix: the path of root inside
 * the version, "" for the root), depth first in name order.  fn gets the
 * path relative to the version root and the decoded labels, valid during
 * the call; a non-zero return stops the walk.
 */
typedef int (*artifs_label_walk_fn)(const char *path, size_t path_len, const artifs_label *labels,
	size_t n, void *ctx);
int artifs_labels_walk(artifs_store *s, MDB_txn *txn, const artifs_oid *root, const char *prefix,
	artifs_label_walk_fn fn, void *ctx);

/*
 * Append one manifest line for (path, labels) to out:
 * {"path":P,"labels":{"K":"V",...}}\n with keys in stored (sorted) order.
 */
int artifs_labels_json_line(artifs_buf *out, const char *path, size_t path_len,
	const artifs_label *labels, size_t n);

/*
 * Build the manifest of tree `root` and store it as a blob through w
 * (*blob zero and *nfiles 0 when no file has labels).  Objects of root
 * must be readable through the writer's read transaction.
 */
int artifs_labels_manifest(artifs_writer *w, const artifs_oid *root, artifs_oid *blob,
	uint64_t *nfiles);


/*
 * Carrying labels over: the labelled files and the directories of one tree
 * of the branch head, copied out of the map (a writer's read transaction
 * does not outlive its batches), sorted by name for artifs_prevdir_find.
 */
typedef struct artifs_prev_ent {
	char *name;
	uint8_t type;
	artifs_oid id, labels;
} artifs_prev_ent;

typedef struct artifs_prevdir {
	artifs_prev_ent *v;
	size_t n;
	artifs_buf names;
} artifs_prevdir;

int artifs_prevdir_load(artifs_prevdir *pd, artifs_store *s, MDB_txn *txn, const artifs_oid *tree);
const artifs_prev_ent *artifs_prevdir_find(const artifs_prevdir *pd, const char *name);
void artifs_prevdir_release(artifs_prevdir *pd);

typedef struct artifs_label_commit_opts {
	const char *message;		/* NULL or "": a default naming the edit */
	const char *author;		/* NULL: artifs_author_default() */
	/* as in artifs_snapshot_opts: pre-commit hooks; non-zero refuses */
	int (*before_move)(const artifs_oid *old, const artifs_oid *new_id,
		const struct artifs_commit *c, void *ctx);
	void *move_ctx;
} artifs_label_commit_opts;

typedef struct artifs_label_commit_stats {
	uint64_t files_changed;		/* files whose labels changed */
	uint64_t labelled;		/* files with labels in the new version */
	int created;			/* 0: nothing changed, head kept */
} artifs_label_commit_stats;

/*
 * Apply edits to the head of repo@branch and commit the result (no data is
 * read or written), moving the branch by compare-and-swap.  When nothing
 * changes no commit is made and *out is the current head.
 */
int artifs_label_commit(artifs_oid *out, artifs_store *s, const char *repo, const char *branch,
	artifs_label_edits *e, const artifs_label_commit_opts *o, artifs_label_commit_stats *st);

#endif
