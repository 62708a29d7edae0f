/*
 * test_hook.c - the hook runner: which hooks run and in what order, what
 * they get (stdin, environment, descriptors, signals), what we keep of
 * what they do (exit status, signal, stderr), and that no hook can hang us
 * or kill us (timeouts, background children, unread stdin).
 */
#include "helpers.h"

#include "hook.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EVENT "pre-promote"

/* A directory standing for the store: hooks only need STORE/hooks. */
typedef struct hook_env {
	char *tmp;
	char *store;
	char *hooks;
} hook_env;

static int hook_setup(void **state)
{
	hook_env *h = calloc(1, sizeof(*h));

	assert_non_null(h);
	h->tmp = test_mkdtemp();
	h->store = test_path(h->tmp, "store");
	h->hooks = test_path(h->store, "hooks");
	test_mkdir(h->tmp, "store");
	test_mkdir(h->store, "hooks");
	*state = h;
	return 0;
}

static int hook_teardown(void **state)
{
	hook_env *h = *state;

	test_rmtree(h->tmp);
	free(h->tmp);
	free(h->store);
	free(h->hooks);
	free(h);
	return 0;
}

#define HOOK_TEST(f) cmocka_unit_test_setup_teardown(f, hook_setup, hook_teardown)

/* Write hooks/REL as a /bin/sh script with `body`, mode `mode`. */
static void write_hook_mode(hook_env *h, const char *rel, const char *body, mode_t mode)
{
	char *text = NULL;
	int n = asprintf(&text, "#!/bin/sh\n%s\n", body);

	assert_true(n > 0);
	test_write_file(h->hooks, rel, text, (size_t)n, mode);
	free(text);
}

static void write_hook(hook_env *h, const char *rel, const char *body)
{
	write_hook_mode(h, rel, body, 0755);
}

/* The whole of STORE/rel, NUL-terminated; NULL if it does not exist. */
static char *slurp(hook_env *h, const char *rel, size_t *len)
{
	char *p = test_path(h->store, rel), *buf = NULL;
	size_t cap = 0, n = 0;
	int fd = open(p, O_RDONLY | O_CLOEXEC);

	free(p);
	if (fd < 0) {
		assert_int_equal(errno, ENOENT);
		return NULL;
	}
	for (;;) {
		ssize_t r;
		if (n + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		r = read(fd, buf + n, cap - n - 1);
		assert_true(r >= 0);
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

static int store_has(hook_env *h, const char *rel)
{
	char *p = test_path(h->store, rel);
	int ok = access(p, F_OK) == 0;

	free(p);
	return ok;
}

/* Open descriptors of this process: a run must leave none behind. */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_event_names(void **state)
{
	(void)state;
	assert_true(artifs_hook_event_valid("pre-commit"));
	assert_true(artifs_hook_event_valid("post-commit"));
	assert_true(artifs_hook_event_valid("pre-tag"));
	assert_true(artifs_hook_event_valid("pre-promote"));
	assert_true(artifs_hook_event_valid("post-promote"));
	assert_false(artifs_hook_event_valid("post-tag"));
	assert_false(artifs_hook_event_valid("pre-promote.d"));
	assert_false(artifs_hook_event_valid(""));
	assert_false(artifs_hook_event_valid(NULL));
}

static void test_bad_event_refused(void **state)
{
	hook_env *h = *state;
	artifs_hook_results res;

	/* a name that would leave STORE/hooks never reaches the file system */
	test_write_file(h->store, "escape", "#!/bin/sh\nexit 0\n", 17, 0755);
	assert_rc(ARTIFS_EINVAL, artifs_hooks_run(h->store, "../escape", NULL, &res));
	assert_int_equal(res.n, 0);
	assert_rc(ARTIFS_EINVAL, artifs_hooks_run(h->store, "", NULL, &res));
	assert_int_equal(res.n, 0);
	artifs_hook_results_release(&res);
}

static void test_no_hooks(void **state)
{
	hook_env *h = *state;
	artifs_hook_results res;
	char *nostore = test_path(h->tmp, "elsewhere");

	/* an empty hooks directory */
	assert_int_equal(artifs_hooks_exist(h->store, EVENT), 0);
	assert_ok(artifs_hooks_run(h->store, EVENT, NULL, &res));
	assert_int_equal(res.n, 0);
	artifs_hook_results_release(&res);

	/* hooks of other events only */
	write_hook(h, "post-promote", "exit 1");
	assert_int_equal(artifs_hooks_exist(h->store, EVENT), 0);
	assert_int_equal(artifs_hooks_exist(h->store, "post-promote"), 1);
	assert_ok(artifs_hooks_run(h->store, EVENT, NULL, &res));
	assert_int_equal(res.n, 0);
	artifs_hook_results_release(&res);

	/* no hooks directory at all */
	test_mkdir(h->tmp, "elsewhere");
	assert_int_equal(artifs_hooks_exist(nostore, EVENT), 0);
	assert_ok(artifs_hooks_run(nostore, EVENT, NULL, &res));
	assert_int_equal(res.n, 0);
	artifs_hook_results_release(&res);
	assert_int_equal(artifs_hooks_exist(h->store, "../escape"), ARTIFS_EINVAL);
	artifs_hook_results_release(NULL);
	free(nostore);
}

static void test_order(void **state)
{
	hook_env *h = *state;
	artifs_hook_results res;
	char *log;

	/* each appends its name to order.log, relative: the cwd is the store */
	write_hook(h, EVENT, "echo main >> order.log");
	test_mkdir(h->hooks, EVENT ".d");
	/* bytewise: "10-a" < "20-b" < "3-c" < "B" < "a" */
	write_hook(h, EVENT ".d/3-c", "echo 3-c >> order.log");
	write_hook(h, EVENT ".d/a", "echo a >> order.log");
	write_hook(h, EVENT ".d/20-b", "echo 20-b >> order.log");
	write_hook(h, EVENT ".d/B", "echo B >> order.log");
	write_hook(h, EVENT ".d/10-a", "echo 10-a >> \"$ARTIFS_STORE/order.log\"");
	write_hook(h, EVENT ".d/.hidden", "echo hidden >> order.log");

	assert_ok(artifs_hooks_run(h->store, EVENT, NULL, &res));
	assert_int_equal(res.n, 6);
	assert_string_equal(res.v[0].name, EVENT);
	assert_string_equal(res.v[1].name, EVENT ".d/10-a");
	assert_string_equal(res.v[2].name, EVENT ".d/20-b");
	assert_string_equal(res.v[3].name, EVENT ".d/3-c");
	assert_string_equal(res.v[4].name, EVENT ".d/B");
	assert_string_equal(res.v[5].name, EVENT ".d/a");
	for (size_t i = 0; i < res.n; i++) {
		assert_int_equal(res.v[i].status, 0);
		assert_int_equal(res.v[i].signal, 0);
		assert_int_equal(res.v[i].timed_out, 0);
		assert_int_equal(res.v[i].exec_failed, 0);
		assert_string_equal(res.v[i].err, "");
		assert_true(res.v[i].seconds >= 0);
	}
	log = slurp(h, "order.log", NULL);
	assert_non_null(log);
	assert_string_equal(log, "main\n10-a\n20-b\n3-c\nB\na\n");
	free(log);
	artifs_hook_results_release(&res);
	assert_null(res.v);
	assert_int_equal(res.n, 0);
}

static void test_only_executable_files_run(void **state)
{
	hook_env *h = *state;
	artifs_hook_results res;
	char *target;

	write_hook_mode(h, EVENT, "echo main >> ran; exit 1", 0644);
	test_mkdir(h->hooks, EVENT ".d");
	write_hook_mode(h, EVENT ".d/10-plain", "echo plain >> ran; exit 1", 0600);
	test_mkdir(h->hooks, EVENT ".d/20-dir");
	test_symlink(h->hooks, EVENT ".d/30-dangling", "/nonexistent/hook");
	test_symlink(h->hooks, EVENT ".d/40-to-dir", "..");
	assert_int_equal(artifs_hooks_exist(h->store, EVENT), 0);
	/* a symlink to an executable runs */
	write_hook(h, "shared-gate", "echo linked >> ran");
	target = test_path(h->hooks, "shared-gate");
	test_symlink(h->hooks, EVENT ".d/50-link", target);
	free(target);

	assert_int_equal(artifs_hooks_exist(h->store, EVENT), 1);
	assert_ok(artifs_hooks_run(h->store, EVENT, NULL, &res));
	assert_int_equal(res.n, 1);
	assert_string_equal(res.v[0].name, EVENT ".d/50-link");
	artifs_hook_results_release(&res);
	target = slurp(h, "ran", NULL);
	assert_non_null(target);
	assert_string_equal(target, "linked\n");
	free(target);
}

static void test_stdin_exact(void **state)
{
	hook_env *h = *state;
	static const char json[] = "{\"repo\":\"models/moderation\",\"rev\":\"v7\","
		"\"env\":\"production\",\"note\":\"caf\xc3\xa9 \\\"ok\\\"\\n\",\"n\":[1,2,3]}";
	artifs_hook_opts o = ARTIFS_HOOK_OPTS_INIT;
	artifs_hook_results res;
	char *got;
	size_t len;

	write_hook(h, EVENT, "cat > stdin.out");
	test_mkdir(h->hooks, EVENT ".d");
	write_hook(h, EVENT ".d/second", "cat > stdin2.out");
	o.stdin_data = json;
	o.stdin_len = sizeof(json) - 1;	/* no trailing newline: byte-exact */
	assert_ok(artifs_hooks_run(h->store, EVENT, &o, &res));
	assert_int_equal(res.n, 2);
	artifs_hook_results_release(&res);
	got = slurp(h, "stdin.out", &len);
	assert_non_null(got);
	assert_int_equal(len, sizeof(json) - 1);
	assert_memory_equal(got, json, len);
	free(got);
	/* every hook gets the whole document */
	got = slurp(h, "stdin2.out", &len);
	assert_int_equal(len, sizeof(json) - 1);
	assert_memory_equal(got, json, len);
	free(got);

	/* no data: an empty stdin, at EOF at once */
	assert_ok(artifs_hooks_run(h->store, EVENT, NULL, &res));
	artifs_hook_results_release(&res);
	got = slurp(h, "stdin.out", &len);
	assert_int_equal(len, 0);
	free(got);
}

/* Is KEY=... a line of env output `text`? */
static const char *env_value(const char *text, const char *key)
{
	size_t klen = strlen(key);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, key, klen) && p[klen] == '=')
			return p + klen + 1;
	return NULL;
}

static int env_is(const char *text, const char *key, const char *value)
{
	const char *v = env_value(text, key);
	size_t n = strlen(value);

	return v && !strncmp(v, value, n) && (v[n] == '\n' || v[n] == '\0');
}

static void test_clean_environment(void **state)
{
	hook_env *h = *state;
	static const char *const extra[] = {
		"ARTIFS_REPO=models/moderation", "ARTIFS_ENV=production", "LANG=en_US.UTF-8", NULL,
	};
	/* what the shell itself may add */
	static const char *const allowed[] = {
		"PATH", "HOME", "LANG", "ARTIFS_HOOK_EVENT", "ARTIFS_STORE", "ARTIFS_REPO",
		"ARTIFS_ENV", "PWD", "OLDPWD", "SHLVL", "_", NULL,
	};
	artifs_hook_opts o = ARTIFS_HOOK_OPTS_INIT;
	artifs_hook_results res;
	char *out, *saved_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;

	assert_ok(setenv("ARTIFS_LEAK_CHECK", "secret", 1));
	assert_ok(setenv("HOME", "/home/hook-test", 1));
	write_hook(h, EVENT, "env > env.out");
	o.env = extra;
	assert_ok(artifs_hooks_run(h->store, EVENT, &o, &res));
	artifs_hook_results_release(&res);
	unsetenv("ARTIFS_LEAK_CHECK");
	if (saved_home)
		setenv("HOME", saved_home, 1);
	else
		unsetenv("HOME");
	free(saved_home);

	out = slurp(h, "env.out", NULL);
	assert_non_null(out);
	assert_null(env_value(out, "ARTIFS_LEAK_CHECK"));
	assert_true(env_is(out, "PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
	assert_true(env_is(out, "HOME", "/home/hook-test"));
	assert_true(env_is(out, "ARTIFS_HOOK_EVENT", EVENT));
	assert_true(env_is(out, "ARTIFS_STORE", h->store));
	assert_true(env_is(out, "ARTIFS_REPO", "models/moderation"));
	assert_true(env_is(out, "ARTIFS_ENV", "production"));
	/* an added KEY replaces the default, it does not come twice */
	assert_true(env_is(out, "LANG", "en_US.UTF-8"));
	for (const char *p = out; *p; ) {
		const char *eq = strchr(p, '='), *nl = strchr(p, '\n');
		int ok = 0;
		assert_non_null(eq);
		for (size_t i = 0; allowed[i]; i++)
			if (strlen(allowed[i]) == (size_t)(eq - p) && !strncmp(p, allowed[i], (size_t)(eq - p)))
				ok = 1;
		if (!ok)
			fail_msg("hook saw unexpected variable: %.*s", (int)(eq - p), p);
		p = nl ? nl + 1 : p + strlen(p);
	}
	free(out);

	/* an entry without '=' is refused before anything runs */
	{
		static const char *const bad[] = { "NOEQUALS", NULL };
		o.env = bad;
		assert_rc(ARTIFS_EINVAL, artifs_hooks_run(h->store, EVENT, &o, &res));
		assert_int_equal(res.n, 0);
	}
}

static void test_relative_store_dir(void **state)
{
	hook_env *h = *state;
	artifs_hook_results res;
	char *cwd = getcwd(NULL, 0), *out;

	assert_non_null(cwd);
	write_hook(h, EVENT, "echo \"$ARTIFS_STORE\" > store.out; pwd -P >> store.out");
	assert_ok(chdir(h->tmp));
	assert_ok(artifs_hooks_run("store", EVENT, NULL, &res));
	assert_ok(chdir(cwd));
	artifs_hook_results_release(&res);
	out = slurp(h, "store.out", NULL);
	assert_non_null(out);
	/* absolute, and the hook runs in it */
	assert_int_equal(out[0], '/');
	assert_non_null(strstr(out, "/store\n"));
	free(out);
	free(cwd);
}

static void test_exit_status_and_stderr(void **state)
{
	hook_env *h = *state;
	artifs_hook_results res;

	write_hook(h, EVENT, "echo 'gate: eval.accuracy 0.81 < 0.90' >&2; exit 3");
	assert_rc(ARTIFS_EHOOK, artifs_hooks_run(h->store, EVENT, NULL, &res));
	assert_int_equal(res.n, 1);
	assert_int_equal(res.v[0].status, 3);
	assert_int_equal(res.v[0].signal, 0);
	assert_int_equal(res.v[0].timed_out, 0);
	assert_int_equal(res.v[0].exec_failed, 0);
	assert_string_equal(res.v[0].err, "gate: eval.accuracy 0.81 < 0.90\n");
	assert_non_null(strstr(artifs_error_last(), "hook '" EVENT "' exited with status 3"));
	artifs_hook_results_release(&res);
}

static void test_stop_on_failure(void **state)
{
	hook_env *h = *state;
	artifs_hook_opts o = ARTIFS_HOOK_OPTS_INIT;
	artifs_hook_results res;

	test_mkdir(h->hooks, EVENT ".d");
	write_hook(h, EVENT ".d/10-ok", "echo 10 >> ran");
	write_hook(h, EVENT ".d/20-fail", "echo 20 >> ran; echo no >&2; exit 1");
	write_hook(h, EVENT ".d/30-fail", "echo 30 >> ran; exit 2");
	write_hook(h, EVENT ".d/40-ok", "echo 40 >> ran");

	o.stop_on_failure = 1;
	assert_rc(ARTIFS_EHOOK, artifs_hooks_run(h->store, EVENT, &o, &res));
	assert_int_equal(res.n, 2);
	assert_int_equal(res.v[0].status, 0);
	assert_int_equal(res.v[1].status, 1);
	assert_string_equal(res.v[1].err, "no\n");
	assert_non_null(strstr(artifs_error_last(), "20-fail' exited with status 1"));
	artifs_hook_results_release(&res);
	{
		char *ran = slurp(h, "ran", NULL);
		assert_string_equal(ran, "10\n20\n");
		free(ran);
	}

	/* without it every hook runs; the first failure is the one reported */
	o.stop_on_failure = 0;
	assert_rc(ARTIFS_EHOOK, artifs_hooks_run(h->store, EVENT, &o, &res));
	assert_int_equal(res.n, 4);
	assert_int_equal(res.v[1].status, 1);
	assert_int_equal(res.v[2].status, 2);
	assert_int_equal(res.v[3].status, 0);
	assert_non_null(strstr(artifs_error_last(), "20-fail' exited with status 1"));
	artifs_hook_results_release(&res);
	{
		char *ran = slurp(h, "ran", NULL);
		assert_string_equal(ran, "10\n20\n10\n20\n30\n40\n");
		free(ran);
	}
}

/* Has process `pid` ended (gone, or a zombie nobody reaped yet)? */
static int process_ended(pid_t pid)
{
	char path[64], buf[512], *p;
	int fd, n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 1;
	n = (int)read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 1;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && (p[2] == 'Z' || p[2] == 'X');
}

static void test_timeout_kills(void **state)
{
	hook_env *h = *state;
	artifs_hook_opts o = ARTIFS_HOOK_OPTS_INIT;
	artifs_hook_results res;
	char *bg;
	double t0;
	int ended = 0, fds = count_fds();

	/* the background sleep shares the group and holds stderr: both go */
	write_hook(h, EVENT, "echo started >&2; sleep 30 & echo $! > bg.pid; sleep 30");
	o.timeout_ms = 300;
	t0 = mono_now();
	assert_rc(ARTIFS_EHOOK, artifs_hooks_run(h->store, EVENT, &o, &res));
	assert_true(mono_now() - t0 < 20);
	assert_int_equal(res.n, 1);
	assert_int_equal(res.v[0].timed_out, 1);
	assert_int_equal(res.v[0].status, -1);
	assert_int_equal(res.v[0].signal, SIGKILL);
	assert_int_equal(res.v[0].exec_failed, 0);
	assert_string_equal(res.v[0].err, "started\n");
	assert_non_null(strstr(artifs_error_last(), "hook '" EVENT "' timed out after 0.3 s"));
	artifs_hook_results_release(&res);
	assert_int_equal(count_fds(), fds);

	/* the whole group was killed, not just the hook */
	bg = slurp(h, "bg.pid", NULL);
	assert_non_null(bg);
	assert_true(atoi(bg) > 1);
	for (int i = 0; i < 200 && !(ended = process_ended((pid_t)atoi(bg))); i++)
		usleep(10000);
	if (!ended)
		kill((pid_t)atoi(bg), SIGKILL);
	assert_true(ended);
	free(bg);
}

static void test_background_child_does_not_hang(void **state)
{
	hook_env *h = *state;
	artifs_hook_opts o = ARTIFS_HOOK_OPTS_INIT;
	artifs_hook_results res;
	char *pid;
	double t0;

	/* exits at once, leaving a sleep that holds stderr (and stdout) open */
	write_hook(h, EVENT, "sleep 30 & echo $! > bg.pid; echo bye >&2; exit 0");
	o.timeout_ms = 20000;
	t0 = mono_now();
	assert_ok(artifs_hooks_run(h->store, EVENT, &o, &res));
	/* well under both the timeout and the sleep */
	assert_true(mono_now() - t0 < 15);
	assert_int_equal(res.n, 1);
	assert_int_equal(res.v[0].status, 0);
	assert_int_equal(res.v[0].timed_out, 0);
	assert_string_equal(res.v[0].err, "bye\n");
	artifs_hook_results_release(&res);
	pid = slurp(h, "bg.pid", NULL);
	assert_non_null(pid);
	assert_true(atoi(pid) > 1);
	kill((pid_t)atoi(pid), SIGKILL);
	free(pid);
}

static void test_killed_by_signal(void **state)
{
	hook_env *h = *state;
	artifs_hook_results res;

	write_hook(h, EVENT, "kill -9 $$");
	assert_rc(ARTIFS_EHOOK, artifs_hooks_run(h->store, EVENT, NULL, &res));
	assert_int_equal(res.n, 1);
	assert_int_equal(res.v[0].status, -1);
	assert_int_equal(res.v[0].signal, 9);
	assert_int_equal(res.v[0].timed_out, 0);
	assert_non_null(strstr(artifs_error_last(), "was killed by signal 9"));
	artifs_hook_results_release(&res);
}

static void test_unread_stdin(void **state)
{
	hook_env *h = *state;
	artifs_hook_opts o = ARTIFS_HOOK_OPTS_INIT;
	artifs_hook_results res;
	size_t len = 1 << 20;
	char *big = malloc(len);
	sigset_t pending;
	int fds = count_fds();

	assert_non_null(big);
	memset(big, '7', len);
	o.stdin_data = big;
	o.stdin_len = len;
	test_mkdir(h->hooks, EVENT ".d");
	/* never reads; reads a little and leaves; reads it all */
	write_hook(h, EVENT ".d/1-ignore", "exit 0");
	write_hook(h, EVENT ".d/2-head", "head -c 10 > /dev/null; exit 0");
	write_hook(h, EVENT ".d/3-all", "wc -c > count.out");
	assert_ok(artifs_hooks_run(h->store, EVENT, &o, &res));
	assert_int_equal(res.n, 3);
	artifs_hook_results_release(&res);
	assert_int_equal(count_fds(), fds);
	{
		char *count = slurp(h, "count.out", NULL);
		assert_int_equal(strtoul(count, NULL, 10), len);
		free(count);
	}
	/* we are alive, and no SIGPIPE is left pending for the caller */
	sigpending(&pending);
	assert_false(sigismember(&pending, SIGPIPE));
	free(big);
}

static void test_huge_stderr_truncated(void **state)
{
	hook_env *h = *state;
	artifs_hook_results res;
	size_t mlen = strlen(ARTIFS_HOOK_TRUNCATED), len;

	/* 1 MiB of 'x' with no newline; we must read it all or the hook blocks */
	write_hook(h, EVENT, "head -c 1048576 /dev/zero | tr '\\0' x >&2; echo done > done.out");
	assert_ok(artifs_hooks_run(h->store, EVENT, NULL, &res));
	assert_int_equal(res.n, 1);
	assert_int_equal(res.v[0].status, 0);
	assert_true(store_has(h, "done.out"));
	len = strlen(res.v[0].err);
	assert_int_equal(len, ARTIFS_HOOK_ERR_MAX + 1 + mlen);
	for (size_t i = 0; i < ARTIFS_HOOK_ERR_MAX; i++)
		if (res.v[0].err[i] != 'x')
			fail_msg("byte %zu of the kept stderr is %#x", i, res.v[0].err[i]);
	assert_string_equal(res.v[0].err + ARTIFS_HOOK_ERR_MAX, "\n" ARTIFS_HOOK_TRUNCATED);
	artifs_hook_results_release(&res);
}

static void test_cannot_start(void **state)
{
	hook_env *h = *state;
	artifs_hook_results res;
	int fds = count_fds();

	test_mkdir(h->hooks, EVENT ".d");
	test_write_file(h->hooks, EVENT ".d/1-bad", "#!/nonexistent/interp\nexit 0\n", 29, 0755);
	write_hook(h, EVENT ".d/2-ok", "echo ran > ran");
	assert_rc(ARTIFS_EHOOK, artifs_hooks_run(h->store, EVENT, NULL, &res));
	assert_int_equal(res.n, 2);
	assert_int_equal(res.v[0].exec_failed, 1);
	assert_int_equal(res.v[0].status, -1);
	assert_int_equal(res.v[0].signal, 0);
	assert_non_null(strstr(res.v[0].err, "No such file or directory"));
	assert_non_null(strstr(artifs_error_last(), "hook '" EVENT ".d/1-bad' could not be started"));
	assert_int_equal(res.v[1].status, 0);
	assert_true(store_has(h, "ran"));
	artifs_hook_results_release(&res);
	assert_int_equal(count_fds(), fds);
}

static void test_stdout_destination(void **state)
{
	hook_env *h = *state;
	artifs_hook_opts o = ARTIFS_HOOK_OPTS_INIT;
	artifs_hook_results res;
	char *path = test_path(h->tmp, "stdout.txt"), *got;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	write_hook(h, EVENT, "echo to-stdout; echo to-stderr >&2");
	o.stdout_fd = fd;
	assert_ok(artifs_hooks_run(h->store, EVENT, &o, &res));
	assert_string_equal(res.v[0].err, "to-stderr\n");
	artifs_hook_results_release(&res);
	close(fd);
	got = slurp(h, "../stdout.txt", NULL);
	assert_string_equal(got, "to-stdout\n");
	free(got);

	/* stdout_fd 2 (the user's stderr) must not be mixed up with the capture pipe */
	fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	assert_true(fd >= 0);
	{
		int saved = dup(2);
		assert_true(saved >= 0);
		assert_true(dup2(fd, 2) == 2);
		o.stdout_fd = 2;
		assert_ok(artifs_hooks_run(h->store, EVENT, &o, &res));
		assert_true(dup2(saved, 2) == 2);
		close(saved);
	}
	close(fd);
	assert_string_equal(res.v[0].err, "to-stderr\n");
	artifs_hook_results_release(&res);
	got = slurp(h, "../stdout.txt", NULL);
	assert_string_equal(got, "to-stdout\n");
	free(got);
	free(path);
}

static void test_descriptors_and_process_group(void **state)
{
	hook_env *h = *state;
	artifs_hook_results res;
	char *out, *p;
	int fd = open("/dev/null", O_RDONLY);	/* no O_CLOEXEC: would leak */

	assert_true(fd >= 0);
	assert_true(dup2(fd, 47) == 47);
	close(fd);
	write_hook(h, EVENT, "test -e /proc/self/fd/2 || exit 2\n"
		"test -e /proc/self/fd/47 && exit 1\n"
		"echo $(cut -d' ' -f5 /proc/$$/stat) $$ > pgid.out");
	assert_ok(artifs_hooks_run(h->store, EVENT, NULL, &res));
	artifs_hook_results_release(&res);
	close(47);

	/* its own process group: pgid == pid */
	out = slurp(h, "pgid.out", NULL);
	assert_non_null(out);
	{
		long pgid = strtol(out, &p, 10), pid = strtol(p, NULL, 10);
		assert_true(pid > 1);
		assert_int_equal(pgid, pid);
	}
	free(out);
}

/* The hexadecimal mask after `field` ("SigBlk:") in /proc/PID/status text. */
static unsigned long long status_mask(const char *text, const char *field)
{
	const char *p = strstr(text, field);

	assert_non_null(p);
	return strtoull(p + strlen(field), NULL, 16);
}

static void test_signals_reset(void **state)
{
	hook_env *h = *state;
	static const char script[] = "#!/bin/cat /proc/self/status\n";
	artifs_hook_opts o = ARTIFS_HOOK_OPTS_INIT;
	artifs_hook_results res;
	struct sigaction ign = { 0 }, old_usr2;
	sigset_t usr1, old_mask;
	unsigned long long ign_bits, blk_bits;
	char *path = test_path(h->tmp, "status.txt"), *status;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	/*
	 * cat, not a shell (which may reset its mask itself), prints its own
	 * status: exactly what execve() handed over.
	 */
	assert_true(fd >= 0);
	test_write_file(h->hooks, EVENT, script, sizeof(script) - 1, 0755);
	ign.sa_handler = SIG_IGN;
	assert_ok(sigaction(SIGUSR2, &ign, &old_usr2));
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	assert_ok(sigprocmask(SIG_BLOCK, &usr1, &old_mask));
	o.stdout_fd = fd;
	assert_ok(artifs_hooks_run(h->store, EVENT, &o, &res));
	artifs_hook_results_release(&res);
	sigprocmask(SIG_SETMASK, &old_mask, NULL);
	sigaction(SIGUSR2, &old_usr2, NULL);
	close(fd);

	status = slurp(h, "../status.txt", NULL);
	assert_non_null(status);
	blk_bits = status_mask(status, "SigBlk:");
	ign_bits = status_mask(status, "SigIgn:");
	assert_int_equal(blk_bits, 0);
	assert_false(ign_bits & (1ULL << (SIGUSR2 - 1)));
	assert_false(ign_bits & (1ULL << (SIGPIPE - 1)));
	free(status);
	free(path);
}


static int sig_pending(int sig)
{
	sigset_t p;

	sigpending(&p);
	return sigismember(&p, sig);
}

static int sig_blocked(int sig)
{
	sigset_t m;

	sigprocmask(SIG_BLOCK, NULL, &m);
	return sigismember(&m, sig);
}

/*
 * A hook has its own process group, so a terminal's Ctrl-C reaches the
 * caller only.  Each hook here plays the terminal: it sends the signal to
 * its parent (us), and the runner must pass it on to the hook's group.
 */
static void test_interrupt_passed_on(void **state)
{
	hook_env *h = *state;
	artifs_hook_results res;
	char *got, *second;
	double t0;

	test_mkdir(h->hooks, EVENT ".d");
	write_hook(h, EVENT ".d/10-slow", "trap 'echo INT > got; exit 3' INT\n"
		"kill -INT $PPID\nwhile :; do sleep 0.05; done");
	write_hook(h, EVENT ".d/20-next", "touch second");
	t0 = mono_now();
	assert_rc(ARTIFS_EHOOK, artifs_hooks_run(h->store, EVENT, NULL, &res));
	assert_true(mono_now() - t0 < 4.5);	/* it left on the signal, not after the grace */
	assert_int_equal(res.interrupted, SIGINT);
	assert_int_equal(res.n, 1);
	assert_string_equal(res.v[0].name, EVENT ".d/10-slow");
	assert_int_equal(res.v[0].interrupted, SIGINT);
	assert_int_equal(res.v[0].status, 3);
	assert_int_equal(res.v[0].timed_out, 0);
	assert_non_null(strstr(artifs_error_last(), "was interrupted by SIGINT"));
	artifs_hook_results_release(&res);
	got = slurp(h, "got", NULL);
	assert_non_null(got);
	assert_string_equal(got, "INT\n");
	free(got);
	second = slurp(h, "second", NULL);
	assert_null(second);		/* no hook runs after an interruption */
	/* taken, not left pending; the caller's mask is back */
	assert_false(sig_pending(SIGINT));
	assert_false(sig_blocked(SIGINT));
	assert_false(sig_blocked(SIGTERM));
}

/* A hook that ignores the signal: killed when asked twice, or after the grace. */
static void test_interrupt_ignored_then_killed(void **state)
{
	hook_env *h = *state;
	artifs_hook_opts o = ARTIFS_HOOK_OPTS_INIT;
	artifs_hook_results res;
	double t0;

	write_hook(h, EVENT, "trap '' TERM\nkill -TERM $PPID\nsleep 0.3\nkill -TERM $PPID\n"
		"exec sleep 30");
	t0 = mono_now();
	assert_rc(ARTIFS_EHOOK, artifs_hooks_run(h->store, EVENT, NULL, &res));
	assert_true(mono_now() - t0 < 4.5);	/* the second signal, not the grace */
	assert_int_equal(res.interrupted, SIGTERM);
	assert_int_equal(res.n, 1);
	assert_int_equal(res.v[0].interrupted, SIGTERM);
	assert_int_equal(res.v[0].signal, SIGKILL);
	assert_int_equal(res.v[0].timed_out, 0);
	assert_non_null(strstr(artifs_error_last(), "was interrupted by SIGTERM"));
	artifs_hook_results_release(&res);

	/* asked once: the grace, cut to what is left of the timeout */
	write_hook(h, EVENT, "trap '' HUP\nkill -HUP $PPID\nexec sleep 30");
	o.timeout_ms = 700;
	t0 = mono_now();
	assert_rc(ARTIFS_EHOOK, artifs_hooks_run(h->store, EVENT, &o, &res));
	assert_true(mono_now() - t0 < 4.5);
	assert_int_equal(res.interrupted, SIGHUP);
	assert_int_equal(res.v[0].signal, SIGKILL);
	assert_int_equal(res.v[0].timed_out, 0);
	artifs_hook_results_release(&res);
	assert_false(sig_pending(SIGTERM));
	assert_false(sig_pending(SIGHUP));
}

/* What the caller ignores or blocks is none of the runner's business. */
static void test_interrupt_ignored_or_blocked_by_caller(void **state)
{
	hook_env *h = *state;
	struct sigaction ign = { 0 }, old_hup;
	sigset_t term, old_mask;
	artifs_hook_results res;
	static const struct timespec zero = { 0, 0 };

	ign.sa_handler = SIG_IGN;
	assert_ok(sigaction(SIGHUP, &ign, &old_hup));	/* as under nohup */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	assert_ok(sigprocmask(SIG_BLOCK, &term, &old_mask));
	write_hook(h, EVENT, "kill -HUP $PPID\nkill -TERM $PPID\nsleep 0.2\necho done > ran");
	assert_ok(artifs_hooks_run(h->store, EVENT, NULL, &res));
	assert_int_equal(res.interrupted, 0);
	assert_int_equal(res.n, 1);
	assert_int_equal(res.v[0].interrupted, 0);
	assert_int_equal(res.v[0].status, 0);
	artifs_hook_results_release(&res);
	/* the blocked one is still the caller's to take */
	assert_true(sig_pending(SIGTERM));
	assert_int_equal(sigtimedwait(&term, NULL, &zero), SIGTERM);
	assert_true(sig_blocked(SIGTERM));
	sigprocmask(SIG_SETMASK, &old_mask, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_event_names),
		HOOK_TEST(test_bad_event_refused),
		HOOK_TEST(test_no_hooks),
		HOOK_TEST(test_order),
		HOOK_TEST(test_only_executable_files_run),
		HOOK_TEST(test_stdin_exact),
		HOOK_TEST(test_clean_environment),
		HOOK_TEST(test_relative_store_dir),
		HOOK_TEST(test_exit_status_and_stderr),
		HOOK_TEST(test_stop_on_failure),
		HOOK_TEST(test_timeout_kills),
		HOOK_TEST(test_background_child_does_not_hang),
		HOOK_TEST(test_killed_by_signal),
		HOOK_TEST(test_unread_stdin),
		HOOK_TEST(test_huge_stderr_truncated),
		HOOK_TEST(test_cannot_start),
		HOOK_TEST(test_stdout_destination),
		HOOK_TEST(test_descriptors_and_process_group),
		HOOK_TEST(test_signals_reset),
		HOOK_TEST(test_interrupt_passed_on),
		HOOK_TEST(test_interrupt_ignored_then_killed),
		HOOK_TEST(test_interrupt_ignored_or_blocked_by_caller),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
