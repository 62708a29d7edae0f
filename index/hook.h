/*
 * hook.h - run the user's deployment hooks around commit, tag and promote.
 *
 * Hooks live in STORE/hooks: the executable file EVENT, then the executables
 * in EVENT.d/ in bytewise name order.  Each runs directly (fork + execve, no
 * shell, argv = { path }) in the store directory, in its own process group,
 * with a clean environment, a JSON document on stdin, its stderr captured
 * and its stdout sent where the caller says.  A hook that runs past the
 * timeout is killed with its whole process group.
 */
#ifndef ARTIFS_HOOK_H
#define ARTIFS_HOOK_H

#include <stddef.h>

/* Stderr kept per hook; more is read and dropped, the text marked. */
#define ARTIFS_HOOK_ERR_MAX (64 * 1024)
#define ARTIFS_HOOK_TRUNCATED "[... truncated]\n"

typedef struct artifs_hook_result {
	char *name;		/* relative to STORE/hooks: "pre-promote" or "pre-promote.d/10-gate" */
	int status;		/* exit status (0..255); -1 when killed, timed out or not started */
	int signal;		/* the signal that ended it (SIGKILL after a timeout), 0 if none */
	int timed_out;		/* 1 if it ran past the timeout and was killed */
	int exec_failed;	/* 1 if it could not be started; err says why */
	char *err;		/* its stderr (at most ARTIFS_HOOK_ERR_MAX bytes, then
				 * ARTIFS_HOOK_TRUNCATED), NUL-terminated, never NULL */
	double seconds;		/* wall time */
	int interrupted;	/* the signal we passed on to it (SIGINT, ...), 0 if none */
} artifs_hook_result;

typedef struct artifs_hook_results {
	artifs_hook_result *v;
	size_t n;
	int interrupted;	/* the signal that stopped the run, 0 if none */
} artifs_hook_results;

typedef struct artifs_hook_opts {
	const char *stdin_data;		/* written to every hook's stdin (a JSON document); NULL: empty */
	size_t stdin_len;
	const char *const *env;		/* NULL-terminated "KEY=VALUE" added to the clean environment
					 * (a KEY already there is replaced) */
	unsigned int timeout_ms;	/* per hook; 0 means 60000 */
	int stop_on_failure;		/* pre-* events: stop at the first failing hook */
	int stdout_fd;			/* where hooks' stdout goes (e.g. 2, the user's stderr); -1: /dev/null */
} artifs_hook_opts;

/* Empty stdin, no extra environment, default timeout, stdout to /dev/null. */
#define ARTIFS_HOOK_OPTS_INIT { NULL, 0, NULL, 0, 0, -1 }

/* How long a hook has to exit once a signal was passed on to it. */
#define ARTIFS_HOOK_GRACE_MS 5000
/* "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"; "a signal" for others. */
const char *artifs_hook_signal_name(int sig);

/*
 * Run the hooks of `event` found in store_dir/hooks: the file EVENT, then
 * EVENT.d/ * in bytewise name order (names starting with '.' are ignored).
 * Only executable regular files run (a symlink to one is fine); anything
 * else is skipped, and a missing hooks directory or EVENT is no error.
 *
 * Each hook gets: argv { absolute path }, cwd store_dir, its own process
 * group, default signal dispositions and an empty signal mask, no
 * descriptors but 0 (a pipe fed o->stdin_data), 1 (o->stdout_fd or
 * /dev/null) and 2 (a pipe we read), and only the environment PATH (a fixed
 * system path), HOME (the caller's, when set), LANG=C.UTF-8,
 * ARTIFS_HOOK_EVENT=event, ARTIFS_STORE=store_dir (absolute), then o->env.
 * A hook may exit without reading its stdin.  Once a hook exits, its stderr
 * is drained briefly; a background process still holding it open is left
 * alone and not waited for.  o may be NULL (ARTIFS_HOOK_OPTS_INIT).
 *
 * A hook has its own process group, so a terminal's Ctrl-C reaches us and
 * not it.  While hooks run, SIGINT, SIGTERM, SIGHUP and SIGQUIT (those the
 * calling thread neither blocks nor ignores) are held in this thread and
 * passed on to the running hook's group, which then has ARTIFS_HOOK_GRACE_MS
 * (or what is left of its timeout, if less) to exit before SIGKILL.  No
 * further hook runs, out->interrupted and the hook's result's interrupted
 * name the signal, and the call returns ARTIFS_EHOOK ("hook 'NAME' was
 * interrupted by SIGINT").  The signal is taken, not left pending: the
 * caller finishes what must not be left half done, then ends itself with
 * it.  (Other threads of the caller must block these signals, or one of
 * them takes the signal instead; the library's own threads do.)
 *
 * *out is always set to the results of the hooks that ran, in order, even
 * on failure; release it with artifs_hook_results_release().
 *
 * Returns 0 when every hook that ran exited 0 (also when none ran);
 * ARTIFS_EHOOK when one failed, the detail naming the first failure
 * ("hook 'NAME' exited with status N", "... was killed by signal S",
 * "... timed out after T s", "... could not be started: ..."); ARTIFS_EINVAL
 * for a malformed event name or env entry; a negative errno for a failure of
 * our own (the hooks directory unreadable, out of descriptors, ...), which
 * stops the run.
 */
int artifs_hooks_run(const char *store_dir, const char *event, const artifs_hook_opts *o,
	artifs_hook_results *out);

/*
 * 1 when event has a runnable hook in store_dir (what artifs_hooks_run
 * would run), 0 when none, <0 on error.  Lets a caller skip preparing the
 * hooks' input.
 */
int artifs_hooks_exist(const char *store_dir, const char *event);

/* Free the results and empty *r; NULL is a no-op. */
void artifs_hook_results_release(artifs_hook_results *r);

/* Is event one of pre-commit, post-commit, pre-tag, pre-promote, post-promote? */
int artifs_hook_event_valid(const char *event);

#endif
