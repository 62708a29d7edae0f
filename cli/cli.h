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

CLI_CMD(config); CLI_CMD(promote); CLI_CMD(rollback); CLI_CMD(history); CLI_CMD(envs);

/* The store's config file (config.c): ARTIFS_ENOTFOUND when key is unset. */
int cli_config_get(artifs_store *s, const char *key, char **out);
int cli_config_bool(artifs_store *s, const char *key, int def);
/* Set (value) or unset (NULL: ARTIFS_ENOTFOUND when it was not set) a key. */
int cli_config_set(artifs_store *s, const char *key, const char *value);
/* Every key matching a POSIX regex; fn's non-zero return stops and is returned. */
int cli_config_foreach(artifs_store *s, const char *regex,
	int (*fn)(const char *key, const char *value, void *ctx), void *ctx);

/* Deployment hooks (hookcall.c). */
typedef struct cli_hook_info {
	const char *event;		/* "pre-promote", ... */
	const char *repo;
	const char *op;			/* "commit", "tag", "promote", "rollback" */
	const char *ref;		/* the ref that moves */
	const char *env;		/* environment, or NULL */
	const artifs_oid *old_id;	/* NULL or zero: none */
	const artifs_oid *new_id;
	const artifs_commit *commit;	/* the new commit when not yet stored, else NULL */
	const char *reason;
	int no_verify;
} cli_hook_info;
/* The JSON document hooks get on stdin. */
json_t *cli_hook_doc(artifs_store *s, MDB_txn *txn, const cli_hook_info *h);
/*
 * Run the hooks of `event` with doc (stdin and ARTIFS_* variables); a
 * failing hook's stderr is shown.  *results (may be NULL) gets a JSON array
 * for the history.  0, or ARTIFS_EHOOK when a hook failed.
 */
int cli_hooks_fire(artifs_store *s, const char *event, json_t *doc, json_t **results);
/*
 * The signal (SIGINT, SIGTERM, ...) that interrupted a hook run of this
 * process, 0 if none.  The hook got it; main() ends the process with it
 * once the command has finished what it must (cli_end_if_interrupted).
 */
int cli_hooks_interrupted(void);
void cli_end_if_interrupted(void);
/* Moving an environment (cmd_promote.c): hooks, the move, the GitOps pin. */
typedef struct cli_move {
	const char *repo, *env, *op, *rev, *reason;
	artifs_oid target;
	int no_verify;
	int publish;		/* write the GitOps pin afterwards */
} cli_move;
/* EXIT_OK (moved, or already there: *moved 0) or an exit status already reported. */
int cli_env_move(artifs_store *s, const cli_move *m, int *moved);
/* Publish ENV's pin; 0 done, 1 not configured, <0 failed; *gj: JSON outcome. */
int cli_gitops_publish(artifs_store *s, const char *repo, const char *env, const char *reason,
	const char *op, json_t **gj);
struct artifs_gitops_config;
/* Fill c from the config; 0 when gitops.url is unset, 1 when set. */
int cli_gitops_config(artifs_store *s, struct artifs_gitops_config *c, char **wd);
void cli_gitops_config_release(struct artifs_gitops_config *c, char *wd);
CLI_CMD(gitops); CLI_CMD(export);
CLI_CMD(remote); CLI_CMD(push); CLI_CMD(pull); CLI_CMD(clone);
/*
 * 'mount --remote NAME': fetch the remote's refs and records into the cache
 * store STORE/remotes/NAME/cache and point mo at it (cmd_remote.c).
 * EXIT_OK or an exit status already reported.
 */
struct artifs_mount_opts;
struct artifs_mount_lazy;
int cli_mount_remote(struct artifs_mount_opts *mo, struct artifs_mount_lazy *lz,
	const char *store, const char *name, const char *cache_size, char **cache_dir);

/* pre-commit / post-commit hooks of 'commit' and 'label' (hookcall.c). */
typedef struct cli_commit_hooks {
	artifs_store *s;
	const char *repo, *branch, *op;
	int no_verify;
} cli_commit_hooks;
/* A before_move callback (ctx: cli_commit_hooks). */
int cli_pre_commit_cb(const artifs_oid *old, const artifs_oid *new_id, const artifs_commit *c,
	void *ctx);
void cli_post_commit(cli_commit_hooks *h, const artifs_oid *old, const artifs_oid *new_id);
/* pre-tag hooks; 0 or ARTIFS_EHOOK (message set). */
int cli_pre_tag(artifs_store *s, const char *repo, const char *tag, const artifs_oid *id, int no_verify);

/* Tags of commit id in repo (JSON array); *envs: environments it has been in. */
json_t *cli_commit_tags(artifs_store *s, MDB_txn *txn, const char *repo, const artifs_oid *id,
	json_t **envs);

/* Label files for 'label import' and 'commit --labels' (label.h). */
struct artifs_label_edits;
enum artifs_label_format;
/* "csv" or "jsonl"; -1 otherwise. */
int cli_label_format(const char *s, enum artifs_label_format *out);
/* Parse FILE ("-": stdin, needs a format) into e; returns an index error code. */
int cli_label_file(struct artifs_label_edits *e, const char *file, enum artifs_label_format fmt);

#endif
