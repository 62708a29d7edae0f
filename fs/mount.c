/*
 * mount.c - mounting, detaching, logging and the session loop.
 */
#include "fs_int.h"
#include "pagecache.h"
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "error.h"

#define DEFAULT_POLL_MS 200
#define DEFAULT_READAHEAD_KB 2048	/* 2 MiB: two 1 MiB requests in flight; measured best on 2 cores */
/*
 * Idle worker threads libfuse keeps.  With 4, a burst of small-file
 * requests made it start and end threads all the time; with 16, the first
 * read of 50,000 files of 100 KiB went from 11,200-12,900 to 16,100-21,300
 * files/s and the daemon's CPU from 3.6-4.1 s to 2.5-3.6 s (32: no
 * better; RssAnon ~15 MiB either way).
 */
#define DEFAULT_IDLE_THREADS 16

/* ---- logging ------------------------------------------------------------ */

static FILE *log_fp;		/* NULL: syslog */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void fs_log(int prio, const char *fmt, ...)
{
	static const char *const names[] = { "emerg", "alert", "crit", "error",
		"warning", "notice", "info", "debug" };
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!log_fp) {
		syslog(prio, "%s", msg);
		return;
	}
	{
		struct timespec ts;
		struct tm tm;
		char when[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		pthread_mutex_lock(&log_lock);
		fprintf(log_fp, "%s artifs[%d]: %s: %s\n", when, (int)getpid(),
			names[prio & 7], msg);
		fflush(log_fp);
		pthread_mutex_unlock(&log_lock);
	}
}

/* ---- /proc/self/mountinfo ----------------------------------------------- */

/* Undo mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/*
 * Find the last mount on `path` (already canonical).  Gives its file
 * system type and "major:minor".  1 found, 0 not.
 */
static int find_mount(const char *path, char *type, size_t tlen, char *dev, size_t dlen)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int found = 0;

	if (!f)
		return 0;
	while (getline(&line, &cap, f) > 0) {
		char *save = NULL, *fld[40], *tok;
		int n = 0, dash = -1;

		/* id parent maj:min root mountpoint opts [optional...] - type source super */
		for (tok = strtok_r(line, " \n", &save); tok && n < 40; tok = strtok_r(NULL, " \n", &save)) {
			if (n >= 6 && dash < 0 && !strcmp(tok, "-"))
				dash = n;
			fld[n++] = tok;
		}
		if (dash < 0 || dash + 1 >= n)
			continue;
		tok = fld[dash + 1];
		unescape(fld[4]);
		if (strcmp(fld[4], path))
			continue;
		snprintf(type, tlen, "%s", tok);
		snprintf(dev, dlen, "%s", fld[2]);
		found = 1;	/* keep going: the last one is on top */
	}
	free(line);
	fclose(f);
	return found;
}

int artifs_is_mounted(const char *path)
{
	char real[PATH_MAX], type[64], dev[32];

	if (!realpath(path, real))
		return 0;
	return find_mount(real, type, sizeof(type), dev, sizeof(dev)) &&
		!strcmp(type, "fuse.artifs");
}

/*
 * Raise the read-ahead of the mount's backing device info: the kernel's
 * default (128 KiB) splits big sequential reads into small requests.
 * Needs root; otherwise the default stays and we say so in the log.
 */
void fs_raise_readahead(artifs_fs *fs)
{
	const char *real = fs->mountpoint;
	unsigned int kb = fs->readahead_kb;
	char type[64], dev[32], path[96], val[32];
	int fd, n;

	if (!find_mount(real, type, sizeof(type), dev, sizeof(dev)))
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	n = snprintf(val, sizeof(val), "%u\n", kb);
	if ((fd = open(path, O_WRONLY | O_CLOEXEC)) < 0 || write(fd, val, (size_t)n) != n)
		fs_log(LOG_INFO, "read-ahead left at the kernel default (%s: %s)", path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* ---- mount -------------------------------------------------------------- */

/* Append "key" or "key=value" to a -o list; commas in a value are escaped. */
static int opt_add(char **list, const char *key, const char *value)
{
	size_t len = *list ? strlen(*list) : 0, vlen = value ? strlen(value) : 0;
	char *p = realloc(*list, len + strlen(key) + 2 * vlen + 3);

	if (!p)
		return artifs_error(-ENOMEM, "out of memory");
	*list = p;
	p += len;
	if (len)
		*p++ = ',';
	p = stpcpy(p, key);
	if (value) {
		*p++ = '=';
		for (const char *v = value; *v; v++) {
			if (*v == ',' || *v == '\\')
				*p++ = '\\';
			*p++ = *v;
		}
	}
	*p = '\0';
	return 0;
}

/* The error for a mount point whose daemon died (ENOTCONN on access). */
static int dead_mount(const char *mp)
{
	return artifs_error(-ENOTCONN, "mount point '%s' is a mount whose daemon is gone; "
		"unmount it first ('artifs umount %s' or 'fusermount3 -u %s')", mp, mp, mp);
}

int artifs_mount(const artifs_mount_opts *o)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *cfg = NULL;
	char real[PATH_MAX], store_real[PATH_MAX];
	artifs_store_opts so = ARTIFS_STORE_OPTS_INIT;
	artifs_store *s = NULL;
	char *optlist = NULL;
	struct stat st;
	artifs_fs fs;
	int rc, mounted = 0, inited = 0, handlers = 0;

	if (!o->mountpoint || !o->store_dir)
		return artifs_error(ARTIFS_EINVAL, "a store and a mount point are required");
	if (stat(o->mountpoint, &st)) {
		if (errno == ENOTCONN || errno == ECONNABORTED)
			return dead_mount(o->mountpoint);
		return artifs_error(-errno, "mount point '%s': %s", o->mountpoint, strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return artifs_error(ARTIFS_EINVAL, "mount point '%s' is not a directory", o->mountpoint);
	if (!realpath(o->mountpoint, real))
		return artifs_error(-errno, "mount point '%s': %s", o->mountpoint, strerror(errno));
	if (artifs_is_mounted(real)) {
		struct statvfs sv;

		/* statfs always reaches the daemon: a dead one leaves ENOTCONN */
		if (statvfs(real, &sv) && (errno == ENOTCONN || errno == ECONNABORTED))
			return dead_mount(o->mountpoint);
		return artifs_error(ARTIFS_EEXISTS, "'%s' is already an artifs mount", real);
	}

	/* fail here, on the terminal, rather than in the detached daemon */
	so.readonly = 1;
	if ((rc = artifs_store_open(&s, o->store_dir, &so)))
		return rc;
	artifs_store_free(s);
	s = NULL;
	if (!realpath(o->store_dir, store_real))
		snprintf(store_real, sizeof(store_real), "%s", o->store_dir);

	if ((rc = fs_init(&fs, NULL)))
		return rc;
	inited = 1;
	fs.poll_ms = o->poll_ms ? o->poll_ms : DEFAULT_POLL_MS;

	/*
	 * No default_permissions: every node is readable by all (0444, 0555)
	 * and the mount is read-only, so the kernel's mode checks at every
	 * path component decide nothing, and they cost: warm lstat of 20,000
	 * files, 380,000-398,000/s without them against 369,000-371,000/s
	 * (native 468,000).  The kernel still checks a file's exec bits before
	 * running it; access() and chdir() come to op_access().
	 */
	if ((rc = opt_add(&optlist, "ro", NULL)) ||
	    (rc = opt_add(&optlist, "subtype", "artifs")) ||
	    (rc = opt_add(&optlist, "fsname", store_real)) ||
	    (geteuid() == 0 && (rc = opt_add(&optlist, "allow_other", NULL))))
		goto done;
	if (o->fuse_opts && *o->fuse_opts) {
		/* the user's options last: libfuse takes the last of a repeated one */
		size_t len = strlen(optlist), add = strlen(o->fuse_opts);
		char *p = realloc(optlist, len + add + 2);

		if (!p) {
			rc = artifs_error(-ENOMEM, "out of memory");
			goto done;
		}
		optlist = p;
		p[len] = ',';
		memcpy(p + len + 1, o->fuse_opts, add + 1);
	}
	if (fuse_opt_add_arg(&args, "artifs") || fuse_opt_add_arg(&args, "-o") ||
	    fuse_opt_add_arg(&args, optlist) || (o->debug && fuse_opt_add_arg(&args, "-d"))) {
		rc = artifs_error(-ENOMEM, "out of memory");
		goto done;
	}
	if (!(fs.se = fuse_session_new(&args, &artifs_fs_ops, sizeof(artifs_fs_ops), &fs))) {
		rc = artifs_error(ARTIFS_EINVAL, "cannot start a FUSE session (options: %s)", optlist);
		goto done;
	}
	if (fuse_set_signal_handlers(fs.se)) {
		rc = artifs_error(-EIO, "cannot install signal handlers");
		goto done;
	}
	handlers = 1;
	if (fuse_session_mount(fs.se, real)) {
		rc = artifs_error(-EIO, "cannot mount on '%s' (is /dev/fuse there, and fusermount3 installed?)", real);
		goto done;
	}
	mounted = 1;
	fs.mountpoint = real;
	fs.readahead_kb = o->readahead_kb ? o->readahead_kb : DEFAULT_READAHEAD_KB;

	if (o->log_file) {
		if (!(log_fp = fopen(o->log_file, "ae"))) {
			rc = artifs_error(-errno, "cannot open log file '%s': %s", o->log_file, strerror(errno));
			goto done;
		}
	} else if (o->foreground || o->debug) {
		log_fp = stderr;
	} else {
		openlog("artifs", LOG_PID, LOG_DAEMON);
	}
	if (fuse_daemonize(o->foreground || o->debug)) {
		rc = artifs_error(-EIO, "cannot detach");
		goto done;
	}
	/* LMDB handles do not survive fork(): open the store in the daemon */
	if (o->lazy) {
		/* the cache is written by this daemon: map room for it up front */
		so.readonly = 0;
		so.initial_mapsize = (size_t)o->lazy->cache_bytes * 2 + ((size_t)1 << 30);
	}
	if ((rc = artifs_store_open(&s, store_real, &so))) {
		fs_log(LOG_ERR, "cannot open store '%s': %s", store_real, artifs_error_last());
		goto done;
	}
	fs.store = s;
	/* the daemon fetches cold chunks its own way (prefetch.c, stage.c) */
	artifs_store_set_fetch(s, 0);
	if (o->lazy && (rc = fs_lazy_start(&fs, o->lazy))) {
		fs_log(LOG_ERR, "cannot start the remote cache: %s", artifs_error_last());
		goto done;
	}
	if (artifs_pins_open(&fs.pins, s) == -EROFS)
		fs_log(LOG_INFO, "read-only store: no gc can run, nothing to pin");
	else if (!fs.pins)
		fs_log(LOG_WARNING, "versions served are not pinned against gc: %s", artifs_error_last());
	fs_guard_install();
	if (fs_stage_start(&fs))
		fs_log(LOG_WARNING, "cold chunks through the page cache: out of memory");
	if (fs_prefetch_start(&fs))
		fs_log(LOG_WARNING, "no directory prefetch: out of memory");
	fs_log(LOG_INFO, "serving store '%s' on '%s'", store_real, real);

	if (!(cfg = fuse_loop_cfg_create())) {
		rc = artifs_error(-ENOMEM, "out of memory");
		goto done;
	}
	fuse_loop_cfg_set_clone_fd(cfg, 1);
	fuse_loop_cfg_set_idle_threads(cfg, o->threads ? o->threads : DEFAULT_IDLE_THREADS);
	fuse_loop_cfg_set_max_threads(cfg, 64);
	rc = fuse_session_loop_mt(fs.se, cfg);
	/* libfuse returns the signal that ended the loop: SIGTERM and co. are a normal stop */
	if (rc == SIGTERM || rc == SIGINT || rc == SIGHUP) {
		fs_log(LOG_INFO, "stopping on signal %d", rc);
		rc = 0;
	}
	if (rc) {
		fs_log(LOG_ERR, "session loop ended with %d", rc);
		rc = rc < 0 ? rc : -EIO;
		artifs_error(rc, "the session loop failed");
	}
	fs_log(LOG_INFO, "unmounted '%s' (%llu reads, %llu cold chunk fetches, %llu directories "
		"prefetched, %llu not for a full queue)", real, (unsigned long long)fs.n_reads,
		(unsigned long long)fs.n_cold_fetches, (unsigned long long)fs.n_dir_jobs,
		(unsigned long long)fs.n_dir_dropped);
done:
	if (cfg)
		fuse_loop_cfg_destroy(cfg);
	if (mounted)
		fuse_session_unmount(fs.se);
	if (handlers)
		fuse_remove_signal_handlers(fs.se);
	if (fs.se)
		fuse_session_destroy(fs.se);	/* calls destroy: stops the poller */
	fs_prefetch_stop(&fs);
	fs_stage_stop(&fs);
	fs_lazy_stop(&fs);
	fs_txn_release_thread();	/* the other threads' went with them */
	if (inited) {
		artifs_pins_free(fs.pins);
		fs_release(&fs);
	}
	artifs_store_free(s);
	fuse_opt_free_args(&args);
	free(optlist);
	if (log_fp && log_fp != stderr)
		fclose(log_fp);
	log_fp = NULL;
	if (fs_guard_recoveries()) {
		/*
		 * A request jumped out of a crash inside LMDB and left what it
		 * had allocated behind: end here, without the exit handlers
		 * (a leak checker would report that memory as a leak).
		 */
		fflush(NULL);
		_exit(rc ? 1 : 0);
	}
	return rc;
}

int artifs_umount(const char *mountpoint)
{
	char real[PATH_MAX];
	pid_t pid;
	int status;

	if (!realpath(mountpoint, real))
		return artifs_error(-errno, "'%s': %s", mountpoint, strerror(errno));
	if (!artifs_is_mounted(real))
		return artifs_error(ARTIFS_EINVAL, "'%s' is not an artifs mount", real);
	if ((pid = fork()) < 0)
		return artifs_error(-errno, "cannot fork: %s", strerror(errno));
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", "-u", "--", real, (char *)NULL);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return artifs_error(-errno, "waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) == 127)
		return artifs_error(-ENOENT, "cannot run fusermount3 (install the fuse3 package)");
	if (WEXITSTATUS(status))
		return artifs_error(ARTIFS_EBUSY, "cannot unmount '%s' (busy? see fusermount3's message above)", real);
	return 0;
}
