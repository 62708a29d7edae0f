/*
 * hook.c - the hook runner.
 *
 * One hook at a time.  Everything the child needs (path, argv, environment,
 * descriptors) is prepared before fork(), and the child makes only
 * async-signal-safe calls before execve(): the caller may have threads.
 * An exec failure comes back over a close-on-exec pipe; EOF on it means
 * execve() succeeded.  The parent then runs one poll() loop over the stdin
 * pipe (non-blocking writes), the stderr pipe and a pidfd for the child's
 * exit, bounded by the timeout.  Reading stderr stops shortly after the
 * hook exits, so a background process that inherited it cannot hold us.
 *
 * SIGPIPE is blocked in the calling thread while hooks run: a write to a
 * hook that exited without reading its stdin fails with EPIPE, and the
 * SIGPIPE it raised (thread-directed, so pending on this thread) is taken
 * back with sigtimedwait() before the mask is restored.
 */
#include "hook.h"
#include "codec.h"
#include "error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HOOK_ENV_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define DEFAULT_TIMEOUT_MS 60000
#define DRAIN_MS 200	/* reading stderr on after the hook exited */
#define TICK_MS 20	/* polling for the exit when there is no pidfd */

static const char *const hook_events[] = {
	"pre-commit", "post-commit", "pre-tag", "pre-promote", "post-promote",
};

int artifs_hook_event_valid(const char *event)
{
	if (!event)
		return 0;
	for (size_t i = 0; i < sizeof(hook_events) / sizeof(hook_events[0]); i++)
		if (!strcmp(event, hook_events[i]))
			return 1;
	return 0;
}

/* A name that stays inside STORE/hooks: [A-Za-z0-9_-]+, not starting with '-'. */
static int event_name_ok(const char *event)
{
	if (!event || !*event || *event == '-')
		return 0;
	for (const char *p = event; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return 0;
	return 1;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* A growable NULL-terminated string vector (names, environment). */
struct strv {
	char **v;
	size_t n, cap;
};

static int strv_push(struct strv *s, char *str)
{
	if (!str)
		return -ENOMEM;
	if (s->n + 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		char **v = realloc(s->v, cap * sizeof(*v));
		if (!v) {
			free(str);
			return -ENOMEM;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = str;
	s->v[s->n] = NULL;
	return 0;
}

static void strv_release(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* 1: an executable regular file (symlinks followed); 0: absent or anything else. */
static int runnable(int dirfd, const char *name, const char *shown)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, 0) < 0) {
		if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
			return 0;
		return artifs_error(-errno, "cannot stat hook '%s': %s", shown, strerror(errno));
	}
	return S_ISREG(st.st_mode) && (st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH));
}

/* The hooks of `event` in run order, as names relative to STORE/hooks. */
static int list_hooks(struct strv *names, const char *store, const char *event)
{
	char *hooks = artifs_strfmt("%s/hooks", store), *dname = artifs_strfmt("%s.d", event);
	char *shown = NULL;
	DIR *d = NULL;
	struct dirent *de;
	size_t first;
	int hfd = -1, dfd, rc = 0;

	if (!hooks || !dname) {
		rc = artifs_error(-ENOMEM, "out of memory");
		goto done;
	}
	hfd = open(hooks, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (hfd < 0) {
		if (errno != ENOENT && errno != ENOTDIR)
			rc = artifs_error(-errno, "cannot open '%s': %s", hooks, strerror(errno));
		goto done;
	}
	if ((rc = runnable(hfd, event, event)) < 0)
		goto done;
	if (rc && (rc = strv_push(names, strdup(event))))
		goto done;

	dfd = openat(hfd, dname, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		if (errno != ENOENT && errno != ENOTDIR)
			rc = artifs_error(-errno, "cannot open '%s/%s': %s", hooks, dname, strerror(errno));
		goto done;
	}
	if (!(d = fdopendir(dfd))) {
		rc = artifs_error(-errno, "cannot open '%s/%s': %s", hooks, dname, strerror(errno));
		close(dfd);
		goto done;
	}
	first = names->n;
	for (;;) {
		errno = 0;
		if (!(de = readdir(d))) {
			if (errno)
				rc = artifs_error(-errno, "cannot read '%s/%s': %s", hooks, dname,
					strerror(errno));
			break;
		}
		/* dot files: ".", "..", editor and VCS leftovers */
		if (de->d_name[0] == '.')
			continue;
		free(shown);
		if (!(shown = artifs_strfmt("%s/%s", dname, de->d_name))) {
			rc = -ENOMEM;
			break;
		}
		if ((rc = runnable(dirfd(d), de->d_name, shown)) < 0)
			break;
		if (rc) {
			rc = strv_push(names, shown);
			shown = NULL;
			if (rc)
				break;
		}
		rc = 0;
	}
	if (!rc && names->n > first)
		qsort(names->v + first, names->n - first, sizeof(char *), cmp_str);
done:
	if (rc == -ENOMEM)
		artifs_error(rc, "out of memory");
	if (d)
		closedir(d);
	if (hfd >= 0)
		close(hfd);
	free(shown);
	free(hooks);
	free(dname);
	return rc < 0 ? rc : 0;
}

/* Set "KEY=VALUE" (owned), replacing an entry with the same KEY. */
static int env_put(struct strv *env, char *kv)
{
	size_t klen;

	if (!kv)
		return -ENOMEM;
	klen = (size_t)(strchr(kv, '=') - kv) + 1;
	for (size_t i = 0; i < env->n; i++)
		if (!strncmp(env->v[i], kv, klen)) {
			free(env->v[i]);
			env->v[i] = kv;
			return 0;
		}
	return strv_push(env, kv);
}

static int build_env(struct strv *env, const char *store, const char *event,
	const char *const *extra)
{
	const char *home = getenv("HOME");
	int rc;

	if ((rc = env_put(env, strdup(HOOK_ENV_PATH))) ||
	    (home && (rc = env_put(env, artifs_strfmt("HOME=%s", home)))) ||
	    (rc = env_put(env, strdup("LANG=C.UTF-8"))) ||
	    (rc = env_put(env, artifs_strfmt("ARTIFS_HOOK_EVENT=%s", event))) ||
	    (rc = env_put(env, artifs_strfmt("ARTIFS_STORE=%s", store))))
		return artifs_error(rc, "out of memory");
	for (; extra && *extra; extra++) {
		const char *eq = strchr(*extra, '=');
		if (!eq || eq == *extra)
			return artifs_error(ARTIFS_EINVAL, "invalid hook environment entry '%s'",
				*extra);
		if ((rc = env_put(env, strdup(*extra))))
			return artifs_error(rc, "out of memory");
	}
	return 0;
}

/* What a child reports when it could not exec; nothing when it could. */
struct child_report {
	int stage;
	int err;
};

enum { STAGE_SETUP, STAGE_CHDIR, STAGE_EXEC };

/* Everything the child uses, prepared before fork(). */
struct spawn {
	const char *path;
	char *const *argv;
	char *const *envp;
	const char *cwd;
	int in_rd, out_fd, err_wr, st_wr;
	long maxfd;		/* for closing descriptors without close_range() */
};

static void child_fail(int fd, int stage, int err) __attribute__((noreturn));
static void child_fail(int fd, int stage, int err)
{
	struct child_report r = { stage, err };
	ssize_t w;

	do
		w = write(fd, &r, sizeof(r));
	while (w < 0 && errno == EINTR);
	_exit(127);
}

/* In the child: async-signal-safe calls only. */
static void child_exec(const struct spawn *sp) __attribute__((noreturn));
static void child_exec(const struct spawn *sp)
{
	int src[4] = { sp->st_wr, sp->in_rd, sp->out_fd, sp->err_wr }, hi[4];
	struct sigaction dfl;
	sigset_t none;
	int st = sp->st_wr;

	/* ignored signals survive execve; caught ones reset anyway */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &dfl, NULL);	/* fails harmlessly for KILL, STOP, libc's own */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	setpgid(0, 0);

	/*
	 * Lift every source above 2 before placing any: a source may itself
	 * be 0, 1 or 2 (stdout_fd is often 2, which stderr's pipe takes).
	 */
	for (int i = 0; i < 4; i++) {
		if ((hi[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 10)) < 0)
			child_fail(st, STAGE_SETUP, errno);
		if (i == 0)
			st = hi[0];
	}
	if (dup2(hi[1], 0) < 0 || dup2(hi[2], 1) < 0 || dup2(hi[3], 2) < 0)
		child_fail(st, STAGE_SETUP, errno);
	if (dup3(hi[0], 3, O_CLOEXEC) < 0)
		child_fail(st, STAGE_SETUP, errno);
	st = 3;
#ifdef SYS_close_range
	if (syscall(SYS_close_range, 4U, ~0U, 0U) < 0)
#endif
		for (long fd = 4; fd < sp->maxfd; fd++)
			close((int)fd);
	if (chdir(sp->cwd) < 0)
		child_fail(st, STAGE_CHDIR, errno);
	execve(sp->path, sp->argv, sp->envp);
	child_fail(st, STAGE_EXEC, errno);
}

/* Captured stderr: the first ARTIFS_HOOK_ERR_MAX bytes; the rest is dropped. */
struct errbuf {
	char *p;
	size_t len, cap;
	int truncated;
};

static int errbuf_add(struct errbuf *b, const char *data, size_t n)
{
	if (b->len + n > ARTIFS_HOOK_ERR_MAX) {
		n = ARTIFS_HOOK_ERR_MAX - b->len;
		b->truncated = 1;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *p;
		while (cap < b->len + n)
			cap *= 2;
		if (cap > ARTIFS_HOOK_ERR_MAX)
			cap = ARTIFS_HOOK_ERR_MAX;
		if (!(p = realloc(b->p, cap)))
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
	return 0;
}

/* The NUL-terminated text, marked when truncated; consumes b. */
static char *errbuf_finish(struct errbuf *b)
{
	size_t mlen = strlen(ARTIFS_HOOK_TRUNCATED);
	char *p = realloc(b->p, b->len + mlen + 2);

	if (!p) {
		free(b->p);
		b->p = NULL;
		return NULL;
	}
	if (b->truncated) {
		if (b->len && p[b->len - 1] != '\n')
			p[b->len++] = '\n';
		memcpy(p + b->len, ARTIFS_HOOK_TRUNCATED, mlen);
		b->len += mlen;
	}
	p[b->len] = '\0';
	b->p = NULL;
	return p;
}

/* Read what stderr has now; closes *fd at EOF or on a read error. */
static int read_err(int *fd, struct errbuf *b)
{
	char buf[16384];

	for (;;) {
		ssize_t n = read(*fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0) {
			close_fd(fd);
			return 0;
		}
		if (errbuf_add(b, buf, (size_t)n))
			return -ENOMEM;
	}
}

/* Write what stdin's pipe takes now; closes *fd when done or the reader is gone. */
static void write_in(int *fd, const char **p, size_t *left)
{
	while (*left) {
		ssize_t n = write(*fd, *p, *left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0)	/* EPIPE: the hook did not want it all */
			break;
		*p += n;
		*left -= (size_t)n;
	}
	close_fd(fd);
}

/* waitpid() retried on EINTR: 1 ended (*ws set), 0 still running, <0 error. */
static int reap(pid_t pid, int *ws, int flags)
{
	pid_t w;

	do
		w = waitpid(pid, ws, flags);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return -errno;
	return w == pid;
}

static int kill_and_reap(pid_t pid, int *ws)
{
	kill(-pid, SIGKILL);	/* the group: its background children too */
	kill(pid, SIGKILL);	/* in case setpgid() lost a race */
	return reap(pid, ws, 0);
}

/* Signals passed on to a running hook (see hook.h), and their names. */
static const struct {
	int sig;
	const char *name;
} passed_on[] = {
	{ SIGINT, "SIGINT" }, { SIGTERM, "SIGTERM" }, { SIGHUP, "SIGHUP" }, { SIGQUIT, "SIGQUIT" },
};

const char *artifs_hook_signal_name(int sig)
{
	for (size_t i = 0; i < sizeof(passed_on) / sizeof(passed_on[0]); i++)
		if (passed_on[i].sig == sig)
			return passed_on[i].name;
	return "a signal";
}

/* A signal held for us on sigfd, or 0. */
static int take_signal(int sigfd)
{
	struct signalfd_siginfo si;
	ssize_t n;

	if (sigfd < 0)
		return 0;
	do
		n = read(sigfd, &si, sizeof(si));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(si) ? (int)si.ssi_signo : 0;
}

struct run_ctx {
	int sigfd;		/* the signals passed on to hooks; -1: none watched */
	const char *store;	/* absolute */
	char *const *envp;
	const char *in_data;
	size_t in_len;
	int out_fd;
	unsigned int timeout_ms;
	long maxfd;
};

static void set_exec_failure(artifs_hook_result *r, const struct run_ctx *c,
	const struct child_report *cr)
{
	const char *hint = "";

	if (cr->stage == STAGE_EXEC && cr->err == ENOENT)
		hint = " (is its #! interpreter missing?)";
	else if (cr->stage == STAGE_EXEC && cr->err == ENOEXEC)
		hint = " (does it start with #!?)";
	free(r->err);
	if (cr->stage == STAGE_CHDIR)
		r->err = artifs_strfmt("cannot enter '%s': %s", c->store, strerror(cr->err));
	else if (cr->stage == STAGE_SETUP)
		r->err = artifs_strfmt("cannot set up its descriptors: %s", strerror(cr->err));
	else
		r->err = artifs_strfmt("%s%s", strerror(cr->err), hint);
	r->exec_failed = 1;
	r->status = -1;
}

/*
 * Run hook `name` into *r.  Once the hook was forked, r->name and r->err
 * are set whatever happens; before that, *r is left zeroed.  Returns 0
 * whatever the hook did; an error only for failures of our own.
 */
static int run_one(artifs_hook_result *r, const struct run_ctx *c, const char *name)
{
	int in[2] = { -1, -1 }, err[2] = { -1, -1 }, st[2] = { -1, -1 };
	int pidfd = -1, ws = 0, ended = 0, started = 0, rc = 0;
	struct errbuf eb = { 0 };
	struct child_report cr;
	const char *in_p = c->in_data;
	size_t in_left = c->in_data ? c->in_len : 0;
	char *path = NULL, *argv[2];
	sigset_t all, saved;
	struct spawn sp;
	int64_t deadline, drain_end = 0;
	double t0;
	ssize_t n;
	pid_t pid;

	memset(r, 0, sizeof(*r));
	r->status = -1;
	if (!(r->name = strdup(name)) || !(path = artifs_strfmt("%s/hooks/%s", c->store, name))) {
		rc = artifs_error(-ENOMEM, "out of memory");
		goto done;
	}
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || pipe2(st, O_CLOEXEC) < 0 ||
	    fcntl(in[1], F_SETFL, O_NONBLOCK) < 0 || fcntl(err[0], F_SETFL, O_NONBLOCK) < 0) {
		rc = artifs_error(-errno, "cannot run hook '%s': %s", name, strerror(errno));
		goto done;
	}
	argv[0] = path;
	argv[1] = NULL;
	sp = (struct spawn){ path, argv, c->envp, c->store, in[0], c->out_fd, err[1], st[1], c->maxfd };

	/* no handler of ours may run in the child before it resets them */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	t0 = now_s();
	pid = fork();
	if (pid == 0)
		child_exec(&sp);
	rc = pid < 0 ? -errno : 0;
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (rc) {
		rc = artifs_error(rc, "cannot run hook '%s': fork: %s", name, strerror(-rc));
		goto done;
	}
	started = 1;
	setpgid(pid, pid);	/* both sides, so a kill of the group cannot miss it */
	close_fd(&in[0]);
	close_fd(&err[1]);
	close_fd(&st[1]);

	do
		n = read(st[0], &cr, sizeof(cr));
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)sizeof(cr)) {
		reap(pid, &ws, 0);
		r->seconds = now_s() - t0;
		set_exec_failure(r, c, &cr);
		if (!r->err)
			rc = artifs_error(-ENOMEM, "out of memory");
		goto done;
	}

#ifdef SYS_pidfd_open
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);	/* close-on-exec by default */
#endif
	if (!in_left)
		close_fd(&in[1]);
	deadline = now_ms() + c->timeout_ms;
	for (;;) {
		struct pollfd pf[4];
		int64_t now = now_ms(), wait;
		int i_in = -1, i_err = -1, i_sig = -1, e, sig;
		nfds_t nf = 0;

		if (!ended) {
			if ((e = reap(pid, &ws, WNOHANG)) == 0 && now >= deadline) {
				e = kill_and_reap(pid, &ws);
				r->timed_out = e > 0 && !r->interrupted;
			}
			if (e < 0) {
				rc = artifs_error(e, "cannot wait for hook '%s': %s", name, strerror(-e));
				break;
			}
			if (e) {
				ended = 1;
				r->seconds = now_s() - t0;
				drain_end = now + DRAIN_MS;
				close_fd(&in[1]);
			}
		}
		if (ended && (err[0] < 0 || now >= drain_end))
			break;
		if (in[1] >= 0) {
			pf[nf] = (struct pollfd){ .fd = in[1], .events = POLLOUT };
			i_in = (int)nf++;
		}
		if (err[0] >= 0) {
			pf[nf] = (struct pollfd){ .fd = err[0], .events = POLLIN };
			i_err = (int)nf++;
		}
		if (!ended && pidfd >= 0)
			pf[nf++] = (struct pollfd){ .fd = pidfd, .events = POLLIN };
		if (c->sigfd >= 0) {
			pf[nf] = (struct pollfd){ .fd = c->sigfd, .events = POLLIN };
			i_sig = (int)nf++;
		}
		wait = (ended ? drain_end : deadline) - now;
		if (!ended && pidfd < 0 && wait > TICK_MS)
			wait = TICK_MS;
		if (wait > INT_MAX)
			wait = INT_MAX;
		if (poll(pf, nf, (int)wait) < 0) {
			if (errno == EINTR)
				continue;
			rc = artifs_error(-errno, "cannot run hook '%s': poll: %s", name, strerror(errno));
			break;
		}
		if (i_sig >= 0 && pf[i_sig].revents && (sig = take_signal(c->sigfd))) {
			if (!r->interrupted) {
				/* what the terminal would have done had it shared our group */
				r->interrupted = sig;
				if (!ended) {
					kill(-pid, sig);
					if (deadline > now + ARTIFS_HOOK_GRACE_MS)
						deadline = now + ARTIFS_HOOK_GRACE_MS;
				}
			} else if (!ended) {
				deadline = now;	/* asked twice: no more grace */
			}
			continue;
		}
		if (i_in >= 0 && pf[i_in].revents)
			write_in(&in[1], &in_p, &in_left);
		if (i_err >= 0 && pf[i_err].revents && read_err(&err[0], &eb) < 0) {
			rc = artifs_error(-ENOMEM, "out of memory");
			break;
		}
	}
	if (!ended) {	/* we failed, not the hook: do not leave it running */
		kill_and_reap(pid, &ws);
		r->seconds = now_s() - t0;
	}
	if (WIFEXITED(ws) && !r->timed_out) {
		r->status = WEXITSTATUS(ws);
	} else if (WIFSIGNALED(ws)) {
		r->status = -1;
		r->signal = WTERMSIG(ws);
	}
	free(r->err);
	if (!(r->err = errbuf_finish(&eb)) && !rc)
		rc = artifs_error(-ENOMEM, "out of memory");
done:
	if (!started) {		/* not one of the hooks that ran */
		free(r->name);
		free(r->err);
		memset(r, 0, sizeof(*r));
	} else if (!r->err && !(r->err = strdup("")) && !rc) {
		rc = artifs_error(-ENOMEM, "out of memory");
	}
	close_fd(&pidfd);
	close_fd(&in[0]);
	close_fd(&in[1]);
	close_fd(&err[0]);
	close_fd(&err[1]);
	close_fd(&st[0]);
	close_fd(&st[1]);
	free(eb.p);
	free(path);
	return rc;
}

static int hook_failed(const artifs_hook_result *r)
{
	return r->exec_failed || r->timed_out || r->signal || r->status != 0 || r->interrupted;
}

static int report_failure(const artifs_hook_result *r, unsigned int timeout_ms)
{
	if (r->exec_failed)
		return artifs_error(ARTIFS_EHOOK, "hook '%s' could not be started: %s", r->name, r->err);
	if (r->interrupted)
		return artifs_error(ARTIFS_EHOOK, "hook '%s' was interrupted by %s", r->name,
			artifs_hook_signal_name(r->interrupted));
	if (r->timed_out)
		return artifs_error(ARTIFS_EHOOK, "hook '%s' timed out after %g s", r->name,
			timeout_ms / 1000.0);
	if (r->signal)
		return artifs_error(ARTIFS_EHOOK, "hook '%s' was killed by signal %d", r->name,
			r->signal);
	return artifs_error(ARTIFS_EHOOK, "hook '%s' exited with status %d", r->name, r->status);
}

static char *absolute_path(const char *dir)
{
	char *cwd, *p;

	if (dir[0] == '/')
		return strdup(dir);
	if (!(cwd = getcwd(NULL, 0)))
		return NULL;
	p = artifs_strfmt("%s/%s", cwd, dir);
	free(cwd);
	return p;
}

/* The store's absolute path and the hooks of `event` in it, in run order. */
static int find_hooks(const char *store_dir, const char *event, char **store, struct strv *names)
{
	*store = NULL;
	if (!event_name_ok(event))
		return artifs_error(ARTIFS_EINVAL, "invalid hook event '%s'", event ? event : "");
	if (!store_dir || !*store_dir)
		return artifs_error(ARTIFS_EINVAL, "no store directory for hooks");
	if (!(*store = absolute_path(store_dir)))
		return artifs_error(-errno, "cannot resolve '%s': %s", store_dir, strerror(errno));
	return list_hooks(names, *store, event);
}

int artifs_hooks_exist(const char *store_dir, const char *event)
{
	struct strv names = { 0 };
	char *store;
	int rc = find_hooks(store_dir, event, &store, &names);

	if (!rc)
		rc = names.n > 0;
	strv_release(&names);
	free(store);
	return rc;
}

int artifs_hooks_run(const char *store_dir, const char *event, const artifs_hook_opts *o,
	artifs_hook_results *out)
{
	static const artifs_hook_opts defaults = ARTIFS_HOOK_OPTS_INIT;
	struct strv names = { 0 }, env = { 0 };
	struct run_ctx c = { .sigfd = -1 };
	sigset_t pipeset, watch, block, oldmask, pending;
	struct rlimit rl;
	char *store = NULL;
	int devnull = -1, pipe_was_pending, rc;
	size_t failed = SIZE_MAX;

	out->v = NULL;
	out->n = 0;
	out->interrupted = 0;
	if (!o)
		o = &defaults;
	if ((rc = find_hooks(store_dir, event, &store, &names)) || !names.n)
		goto done;
	if ((rc = build_env(&env, store, event, o->env)))
		goto done;
	if (o->stdout_fd < 0) {
		if ((devnull = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0) {
			rc = artifs_error(-errno, "cannot open '/dev/null': %s", strerror(errno));
			goto done;
		}
	} else if (fcntl(o->stdout_fd, F_GETFD) < 0) {
		rc = artifs_error(-errno, "bad descriptor %d for hook output: %s", o->stdout_fd,
			strerror(errno));
		goto done;
	}
	if (!(out->v = calloc(names.n, sizeof(*out->v)))) {
		rc = artifs_error(-ENOMEM, "out of memory");
		goto done;
	}
	c.store = store;
	c.envp = env.v;
	c.in_data = o->stdin_data;
	c.in_len = o->stdin_len;
	c.out_fd = o->stdout_fd < 0 ? devnull : o->stdout_fd;
	c.timeout_ms = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	c.maxfd = 1L << 16;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (1UL << 24))
		c.maxfd = (long)rl.rlim_cur;

	/* hold the signals a terminal or a supervisor sends, to pass them on */
	sigemptyset(&pipeset);
	sigaddset(&pipeset, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, NULL, &oldmask);
	sigemptyset(&watch);
	for (size_t i = 0; i < sizeof(passed_on) / sizeof(passed_on[0]); i++) {
		struct sigaction sa;

		if (!sigismember(&oldmask, passed_on[i].sig) &&
		    !sigaction(passed_on[i].sig, NULL, &sa) && sa.sa_handler != SIG_IGN)
			sigaddset(&watch, passed_on[i].sig);
	}
	block = watch;
	sigaddset(&block, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &block, &oldmask);
	if ((c.sigfd = signalfd(-1, &watch, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
		/* cannot take them: they act as they did before the hooks ran */
		pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
		pthread_sigmask(SIG_BLOCK, &pipeset, NULL);
	}
	sigpending(&pending);
	pipe_was_pending = sigismember(&pending, SIGPIPE);
	for (size_t i = 0; i < names.n; i++) {
		artifs_hook_result *r;

		if ((out->interrupted = take_signal(c.sigfd)))
			break;	/* between two hooks */
		r = &out->v[out->n];
		rc = run_one(r, &c, names.v[i]);
		if (r->name)
			out->n++;
		if (r->interrupted) {
			out->interrupted = r->interrupted;
			failed = out->n - 1;
			break;
		}
		if (rc)
			break;
		if (hook_failed(r) && failed == SIZE_MAX) {
			failed = out->n - 1;
			if (o->stop_on_failure)
				break;
		}
	}
	if (!out->interrupted)
		out->interrupted = take_signal(c.sigfd);	/* came as the last one ended */
	if (c.sigfd >= 0)
		close(c.sigfd);
	if (!pipe_was_pending) {
		static const struct timespec zero = { 0, 0 };
		sigpending(&pending);
		if (sigismember(&pending, SIGPIPE))
			sigtimedwait(&pipeset, NULL, &zero);
	}
	pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
	if (!rc && failed != SIZE_MAX)
		rc = report_failure(&out->v[failed], c.timeout_ms);
	else if (!rc && out->interrupted)
		rc = artifs_error(ARTIFS_EHOOK, "%s hooks were interrupted by %s", event,
			artifs_hook_signal_name(out->interrupted));
done:
	if (devnull >= 0)
		close(devnull);
	strv_release(&names);
	strv_release(&env);
	free(store);
	return rc;
}

void artifs_hook_results_release(artifs_hook_results *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++) {
		free(r->v[i].name);
		free(r->v[i].err);
	}
	free(r->v);
	r->v = NULL;
	r->n = 0;
}
