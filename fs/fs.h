/*
 * fs.h - the read-only FUSE file system over a store (libfuse3 low level).
 *
 *   MOUNT/datasets/NAME/REF/...          every branch, tag and environment
 *   MOUNT/datasets/NAME/.commits/ID/...  any commit by id or unique prefix
 *   MOUNT/models/NAME/...
 *
 * Everything below a version is immutable, so the kernel caches it with
 * long timeouts; when a branch or environment moves, a poller thread
 * notices (the store's ref generation changed) and invalidates that one
 * directory entry.  File node ids are shared by content (blob, flags,
 * labels), so a file unchanged between two versions is one kernel inode
 * with one page cache.
 */
#ifndef ARTIFS_FS_H
#define ARTIFS_FS_H

#define ARTIFS_MOUNT_OPTS_VERSION 1

struct artifs_remote_opts;

/* A mount of a remote: the store served is its cache (see fs/lazy.c). */
typedef struct artifs_mount_lazy {
	const char *name;		/* the remote's name (the cache store's config has it) */
	const char *url;
	const struct artifs_remote_opts *ropts;
	const char *index_cache;	/* directory of fetched pack indexes, or NULL */
	unsigned long long cache_bytes;	/* cap on cached chunk bytes (least recently read go) */
	unsigned int refresh_s;		/* re-read the remote's refs this often; 0: 30 */
} artifs_mount_lazy;

typedef struct artifs_mount_opts {
	unsigned int version;		/* ARTIFS_MOUNT_OPTS_VERSION */
	const char *store_dir;		/* the store to serve */
	const char *mountpoint;
	const char *fuse_opts;		/* extra -o options for the kernel/libfuse, or NULL */
	const char *log_file;		/* append log lines here; NULL: syslog (daemon) or stderr */
	int foreground;			/* stay attached; log to stderr unless log_file */
	int debug;			/* libfuse request tracing (implies foreground) */
	unsigned int threads;		/* max idle worker threads; 0: default */
	unsigned int poll_ms;		/* ref poll interval; 0: default 200 ms */
	unsigned int readahead_kb;	/* raise the mount's read-ahead to this; 0: default */
	const artifs_mount_lazy *lazy;	/* NULL: serve store_dir as it is */
} artifs_mount_opts;

#define ARTIFS_MOUNT_OPTS_INIT { ARTIFS_MOUNT_OPTS_VERSION, NULL, NULL, NULL, NULL, 0, 0, 0, 0, 0, NULL }

/*
 * Check the store and mount point, mount, detach unless foreground, and
 * serve until unmounted or signalled (SIGTERM, SIGINT, SIGHUP).  Errors
 * before the mount is up are returned (with artifs_error_last() set);
 * after detaching they go to the log.
 */
int artifs_mount(const artifs_mount_opts *o);

/* Unmount MOUNTPOINT (fusermount3 -u); the daemon exits by itself. */
int artifs_umount(const char *mountpoint);

/* Is `path` a mount point of an artifs file system?  1 yes, 0 no. */
int artifs_is_mounted(const char *path);

#endif
