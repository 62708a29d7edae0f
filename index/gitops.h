/*
 * gitops.h - publish environment pins to a git repository, read them back.
 *
 * When a version is promoted to an environment, artifs writes a small pin
 * file (JSON) into a GitOps repository and commits it, optionally pushing,
 * so that Argo CD / Flux deploy what the pin names.  Reconcile reads the
 * pins back.  artifs works in a clone it manages (`workdir`, e.g.
 * STORE/gitops): it is made current from the remote before every publish,
 * so local edits there are lost.  Operations on one workdir are serialised
 * by flock() on WORKDIR.lock (a sibling file), across processes.
 *
 * All git work goes through libgit2 (no git executable).  The remote is
 * always the configured url: the clone's own remote.origin.* and
 * url.*.insteadOf settings are not used.  Remotes may be local paths
 * (bare repositories), file:// URLs or network URLs; no credentials are
 * supplied:
 * GIT_* environment variables, credential helpers and ssh agents are not
 * used, so a remote that asks for authentication fails with ARTIFS_EGITOPS.
 * Git failures are ARTIFS_EGITOPS with libgit2's message as detail.
 */
#ifndef ARTIFS_GITOPS_H
#define ARTIFS_GITOPS_H

#include <stddef.h>
#include <stdint.h>

#define ARTIFS_GITOPS_BRANCH_DEFAULT "main"
#define ARTIFS_GITOPS_PATH_DEFAULT "environments/{env}/{kind}/{name}.json"
#define ARTIFS_GITOPS_PUSH_RETRIES 5

typedef struct artifs_gitops_config {
	const char *url;	/* remote: a local path or URL of the GitOps repository (required to publish) */
	const char *branch;	/* NULL: "main" */
	/*
	 * NULL: "environments/{env}/{kind}/{name}.json".  {env}, {kind}
	 * ("models"/"datasets"), {name} and {repo} ("models/NAME") are
	 * replaced; the template must name {env} and {repo} (or {kind} and
	 * {name}) so that no two pins share a file.
	 */
	const char *path_tmpl;
	const char *author;	/* "Name <email>"; NULL: "artifs <artifs@HOSTNAME>" */
	int push;		/* push after committing */
	const char *workdir;	/* the clone artifs manages; created by cloning url when missing */
} artifs_gitops_config;

typedef struct artifs_pin {
	const char *repo;		/* "models/NAME" or "datasets/NAME" */
	const char *env;		/* "production" */
	const char *commit;		/* 32 hex digits */
	const char *tree;		/* 32 hex digits; NULL: written as null */
	const char *const *tags;	/* tags on that commit, sorted */
	size_t ntags;
	const char *message;		/* the promotion's reason; NULL: null */
	const char *promoted_by;	/* NULL: null */
	int64_t promoted_at;		/* unix seconds */
} artifs_pin;

/*
 * The pin file's bytes: a JSON object with the keys repository,
 * environment, commit, tree, tags (array), message, promoted_by and
 * promoted_at (ISO 8601 UTC, "2026-11-28T23:22:00Z") in that order,
 * indented by 2 spaces, with a trailing newline.  ARTIFS_EINVAL for an
 * invalid repository or environment name, a commit or tree that is not 32
 * hex digits, or strings that are not UTF-8.  *out is malloc'd (caller
 * frees).
 */
int artifs_pin_encode(char **out, const artifs_pin *pin);

/*
 * The path of the pin file of repo@env inside the GitOps repository: the
 * template expanded.  ARTIFS_EINVAL for a bad repository or environment
 * name, an unknown {placeholder}, a template missing {env} or {repo}
 * ({kind} and {name}), and results that are absolute, have empty, "." or
 * ".." components, a ".git" component, or characters outside
 * [A-Za-z0-9._/-].  *out is malloc'd (caller frees).
 */
int artifs_gitops_pin_path(char **out, const artifs_gitops_config *c, const char *repo,
	const char *env);

/*
 * Publish `pin`: make the managed clone current (clone url into workdir
 * when missing; otherwise fetch and hard-reset the local branch to
 * origin/BRANCH when the remote has it; an empty remote is fine, the first
 * commit creates the branch), write the pin file (temporary file, then
 * rename) and commit it on BRANCH with message `msg` (subject, blank line,
 * body; NULL: a generated one), the configured author as author and
 * committer.  If the file already holds exactly these bytes no commit is
 * made.  Without push, local commits that origin/BRANCH does not have yet
 * are kept (the local branch is only reset when it does not contain
 * origin's tip).
 *
 * With push set, BRANCH is pushed to origin whenever origin lacks the local
 * tip.  A push rejected as non-fast-forward (someone pushed meanwhile) is
 * retried up to ARTIFS_GITOPS_PUSH_RETRIES times: fetch, reset to the new
 * tip, write the pin again in a new commit on top (no merge), push.  Then,
 * as for any other push failure, ARTIFS_EGITOPS saying that the store moved
 * but git did not and how to retry.
 *
 * out_commit (41 bytes) gets the hex id of the git commit holding the pin
 * (the current head when nothing was committed).  ARTIFS_EINVAL for a bad
 * config, pin or author; ARTIFS_EGITOPS for git failures; negative errno
 * for file system failures.
 */
int artifs_gitops_publish(const artifs_gitops_config *c, const artifs_pin *pin, const char *msg,
	char out_commit[41]);

/*
 * Reconcile input: fetch when url is set (a failing fetch is not an error
 * when the clone was fetched from that url before: what that fetch brought
 * is read), then read
 * every file of origin/BRANCH (the local branch when the remote has none;
 * nothing when neither exists) whose path matches the template's shape,
 * and call fn for each good pin.  The pin's strings are valid during the
 * call only; repo, env and commit are always set, the other fields when the
 * file has them.  The working tree is not touched.
 *
 * A file that is not valid JSON, lacks a valid repository, environment or
 * commit, has fields of the wrong type, or whose repository and environment
 * do not give back its path is skipped; after the others were passed to fn,
 * ARTIFS_EGITOPS names it (the first one, and how many there were).  A
 * non-zero return of fn stops the walk and is returned.
 */
int artifs_gitops_read_pins(const artifs_gitops_config *c,
	int (*fn)(const artifs_pin *pin, void *ctx), void *ctx);

#endif
