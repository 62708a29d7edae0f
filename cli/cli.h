/*
 * cli.h - what the command files share: store opening, rev parsing,
 * messages, progress, JSON output.
 */
#ifndef ARTIFS_CLI_H
#define ARTIFS_CLI_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "commit.h"
#include "oid.h"
#include "snapshot.h"
#include "store.h"

/* Exit codes (documented in 'artifs --help'). */
enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,		/* the operation failed */
	EXIT_USAGE = 2,		/* bad command line */
	EXIT_FAULTS = 3,	/* fsck found damaged or missing objects */
};

typedef struct cli_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *usage;	/* one line: arguments */
	const char *summary;
	const char *help;	/* details for 'artifs CMD --help' */
} cli_cmd;

/* --store from the command line, or NULL. */
extern const char *cli_store_flag;

/* Print "artifs: error: MSG" (and "hint: ..." when given); returns EXIT_FAIL. */
int cli_fail(const char *hint, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last index error with a hint that fits its code; returns exit code. */
int cli_fail_rc(int rc);
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* 'artifs CMD --help' text to stdout. */
int cli_help(const char *cmd);

/* Open the store chosen by --store/$ARTIFS_STORE/XDG; prints errors. */
int cli_open_store(artifs_store **out, int readonly);

/* "REPO[@REF][:PATH]": malloc'd parts; ref defaults to "main", path to "". */
typedef struct cli_spec {
	char *repo, *ref, *path;
	int has_ref, has_path;
} cli_spec;
int cli_spec_parse(cli_spec *out, const char *arg);
void cli_spec_release(cli_spec *sp);

/* Resolve spec's ref to a commit id (prints nothing). */
int cli_resolve(artifs_oid *out, artifs_store *s, MDB_txn *txn, const cli_spec *sp);

/* Progress on a terminal: at most 10 updates a second; silent otherwise. */
typedef struct cli_progress {
	const char *label;
	double start;
	double last;
	int active;
} cli_progress;
void cli_progress_init(cli_progress *p, const char *label);
void cli_progress_cb(const artifs_progress *pr, void *ctx);
void cli_progress_done(cli_progress *p);

double cli_now(void);
const char *cli_bytes(char *buf, size_t len, double bytes);	/* "12.3 MiB" */
const char *cli_time(char *buf, size_t len, int64_t t);		/* ISO 8601 UTC */

/* JSON: print v to stdout (indent 2, keys in insertion order) and free it. */
int cli_json_print(json_t *v);
json_t *cli_json_oid(const artifs_oid *id);
/* A JSON string of s; bytes that are not UTF-8 become U+FFFD. */
json_t *cli_json_str(const char *s);
json_t *cli_json_commit(const artifs_oid *id, const artifs_commit *c);

#define CLI_CMD(name) int cmd_##name(int argc, char **argv)
CLI_CMD(mount); CLI_CMD(umount);
/* "artifs STORE MOUNTPOINT -o OPTS" as mount.fuse3 runs it; -1 if argv is not that. */
int cli_mount_fuse_form(int argc, char **argv);
CLI_CMD(init); CLI_CMD(create); CLI_CMD(repos); CLI_CMD(commit); CLI_CMD(log);
CLI_CMD(show); CLI_CMD(ls); CLI_CMD(cat); CLI_CMD(checkout); CLI_CMD(tag);
CLI_CMD(branch); CLI_CMD(diff); CLI_CMD(du); CLI_CMD(fsck); CLI_CMD(gc); CLI_CMD(label);

/* Label files for 'label import' and 'commit --labels' (label.h). */
struct artifs_label_edits;
enum artifs_label_format;
/* "csv" or "jsonl"; -1 otherwise. */
int cli_label_format(const char *s, enum artifs_label_format *out);
/* Parse FILE ("-": stdin, needs a format) into e; returns an index error code. */
int cli_label_file(struct artifs_label_edits *e, const char *file, enum artifs_label_format fmt);

#endif
