/*
 * archio.h - archives in and out, with libarchive.  (Not "archive.h":
 * that name is libarchive's.)
 *
 * Import streams every member's bytes straight into the chunker (nothing
 * is extracted to disk; memory holds the tree's names, not its data) and
 * yields the tree that committing the extracted directory would: same
 * ids.  Hostile members are refused, naming the member, and nothing is
 * committed.  Export is deterministic: sorted members, owner 0/0, every
 * time the commit's, no host-specific fields.
 */
#ifndef ARTIFS_ARCHIO_H
#define ARTIFS_ARCHIO_H

#include <stdint.h>

#include "label.h"
#include "oid.h"
#include "snapshot.h"
#include "store.h"

/*
 * Commit archive `path` ("-": stdin) to repo@branch.  Any format and
 * filter libarchive reads, detected from the content.  strip drops that
 * many leading path components (members with no more are skipped).  A
 * top-level .labels.jsonl member is read as labels (edits are appended to
 * o->labels, which must then be non-NULL), not stored as a file.
 */
int artifs_archive_commit(artifs_oid *out, artifs_store *s, const char *repo, const char *branch,
	const char *path, unsigned int strip, const artifs_snapshot_opts *o,
	artifs_snapshot_stats *stats);

enum artifs_archive_format {
	ARTIFS_ARCHIVE_AUTO = 0,	/* from the output name */
	ARTIFS_ARCHIVE_TAR,
	ARTIFS_ARCHIVE_TGZ,
	ARTIFS_ARCHIVE_TZST,
	ARTIFS_ARCHIVE_ZIP,
};

/* "tar", "tar.gz"/"tgz", "tar.zst"/"tzst", "zip"; -1 if unknown. */
int artifs_archive_format_parse(const char *s, enum artifs_archive_format *out);
/* From a file name's extension; ARTIFS_ARCHIVE_AUTO if it says nothing. */
enum artifs_archive_format artifs_archive_format_of(const char *name);

typedef struct artifs_export_stats {
	uint64_t files, dirs, links, bytes;
} artifs_export_stats;

/*
 * Write directory `tree` of commit `commit` (the version's root when path
 * is "") as an archive to fd.  Members are paths relative to that
 * directory, in tree order; the version's .labels.jsonl is added at the
 * top when exporting a whole version that has labels.
 */
int artifs_archive_export(artifs_store *s, const artifs_oid *commit, const char *path, int fd,
	enum artifs_archive_format fmt, artifs_export_stats *stats);

#endif
