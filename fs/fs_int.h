/* fs_int.h - the daemon's internals, shared by the files of fs/ only. */
#ifndef ARTIFS_FS_INT_H
#define ARTIFS_FS_INT_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>
#include <lmdb.h>

#include "codec.h"
#include "oid.h"
#include "oidset.h"
#include "tree.h"
#include "pin.h"
#include "store.h"
#include "fs.h"

/* What a node is; fixes which fields mean something. */
enum fs_kind {
	FS_ROOT = 1,	/* MOUNT/ */
	FS_KINDDIR,	/* MOUNT/datasets, MOUNT/models */
	FS_REPO,	/* MOUNT/datasets/NAME; name = "datasets/NAME" */
	FS_COMMITS,	/* MOUNT/datasets/NAME/.commits */
	FS_VROOT,	/* a version's root: a ref or .commits/ID; id = tree */
	FS_DIR,		/* a directory inside a version; id = tree */
	FS_FILE,	/* id = blob; shared by content */
	FS_LINK,	/* id = blob holding the target; shared by content */
	FS_LABELS,	/* VERSION/.labels and its KEY=VALUE filters; id = version tree */
	FS_LKEY,	/* .labels/.../KEY: lists values; id = version tree */
	FS_VIEW,	/* .labels/.../KEY/VALUE and directories in it; id = tree */
};

/*
 * One node per kernel inode.  The FUSE node id is the node's address
 * (the root is id 1).  Directories are keyed by (parent, name), files and
 * links by content.  Every field but the counters is fixed at creation, so
 * operations read nodes without the table lock.
 */
typedef struct fs_node {
	struct fs_node *next;		/* hash chain */
	struct fs_node *parent;		/* holds a reference; files: the directory first found in */
	struct fs_node *rnext, *rprev;	/* live version roots (FS_VROOT under a repo) */
	uint64_t hash;
	uint64_t nlookup;		/* the kernel's lookup count */
	uint32_t refs;			/* children and in-flight users */
	uint32_t faults;		/* failed reads (files), for log rate limiting */
	uint8_t kind;			/* enum fs_kind */
	uint8_t flags;			/* ARTIFS_F_* (files) */
	uint8_t hashed;			/* findable in the table */
	uint8_t is_ref;			/* FS_VROOT named by a ref (may move) */
	uint8_t blob_ok;		/* files: the manifest parsed whole once */
	uint64_t ino;			/* st_ino shown to users */
	uint64_t size;			/* files, links: bytes; dirs: entries */
	int64_t time;			/* commit time (seconds) */
	artifs_oid id;			/* tree, or blob */
	artifs_oid labels;		/* labelset (files); FS_VROOT: the .labels.jsonl blob */
	artifs_oid commit;		/* FS_VROOT: its commit */
	artifs_oid dir;			/* files: the tree they were first found in */
	uint64_t ra_end;		/* files: store read-ahead asked up to here */
	char name[];			/* directories: entry name; files: first name seen */
} fs_node;

typedef struct artifs_prefetch artifs_prefetch;
typedef struct artifs_stage artifs_stage;

typedef struct artifs_fs {
	artifs_store *store;
	struct fuse_session *se;
	pthread_rwlock_t maplock;	/* read: a txn is open; write: remap */

	pthread_mutex_t lock;		/* the node table and counters below */
	fs_node **table;
	size_t nbuckets, nnodes;
	fs_node root, kind_datasets, kind_models;
	fs_node roots;			/* list head of live ref roots */

	/* chunks verified since start: a direct-mapped cache of ids */
	pthread_mutex_t vlock;
	artifs_oid *verified;
	size_t nverified;

	/* the poller */
	pthread_t poller;
	int poller_started;
	int stop;
	pthread_mutex_t stop_lock;
	pthread_cond_t stop_cond;
	unsigned int poll_ms;
	uint64_t refgen;
	int64_t mount_time;

	/* commits this mount serves, pinned against gc (index/pin.h) */
	artifs_pins *pins;		/* NULL: pinning unavailable */
	pthread_mutex_t pin_lock;
	artifs_oidset pinned;
	int store_locks;		/* threads holding the pin gate shared */
	int pins_dirty;			/* a version root was freed: shrink the pins */

	artifs_prefetch *prefetch;	/* prefetch.c */
	artifs_stage *stage;		/* stage.c; NULL: cold chunks through the page cache */
	struct artifs_fs_labels *labels;	/* labels.c */
	struct fs_lazy *lazy;		/* lazy.c: a remote's cache; NULL for a store */
	uintptr_t map_base;		/* where data.mdb is mapped; 0: unknown */

	/* counters, logged at unmount */
	uint64_t n_reads, n_cold_fetches, n_dir_jobs, n_dir_dropped;

	int no_open, no_opendir;	/* the kernel takes ENOSYS as "keep caching" */
	int ra_done;			/* read-ahead raised (after INIT) */
	char *mountpoint;		/* canonical */
	unsigned int readahead_kb;
} artifs_fs;

extern const struct fuse_lowlevel_ops artifs_fs_ops;

/* Node table (node.c) */
int fs_init(artifs_fs *fs, artifs_store *s);
void fs_release(artifs_fs *fs);
fs_node *fs_node_of(artifs_fs *fs, fuse_ino_t ino);
static inline fuse_ino_t fs_ino_of(artifs_fs *fs, fs_node *n)
{
	return n == &fs->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)n;
}
/*
 * Find or create the child directory node (parent, name) of `kind`; the
 * template's fields are used when a node is created.  Adds one kernel
 * lookup (nlookup++) to the result.  NULL when out of memory.
 */
fs_node *fs_dir_get(artifs_fs *fs, fs_node *parent, const char *name, size_t len,
	const fs_node *tmpl);
/* Find or create the file or link node for this content; nlookup++. */
fs_node *fs_file_get(artifs_fs *fs, const fs_node *tmpl, const char *name, size_t len);
/*
 * st_ino of a file or link with this content (what stat shows); a non-zero
 * stand-in for a directory not yet looked up (readdir's d_ino).
 */
uint64_t fs_file_ino(uint8_t kind, uint8_t flags, const artifs_oid *id, const artifs_oid *labels);
uint64_t fs_dir_ino_hint(const fs_node *parent, const char *name, size_t len);
/* The kernel forgot `n` nlookup times. */
void fs_forget(artifs_fs *fs, fs_node *n, uint64_t nlookup);
/* Pin/unpin a node for use outside the table lock. */
void fs_node_ref(artifs_fs *fs, fs_node *n);
void fs_node_unref(artifs_fs *fs, fs_node *n);
/* Make a ref root unfindable so the next lookup of its name sees the ref anew. */
void fs_unhash(artifs_fs *fs, fs_node *n);

/*
 * Pinning: a lookup that may create a version root brackets its read
 * transaction with fs_pin_begin/end (the pin gate, shared) and pins the
 * root's commit, so gc cannot delete it between the read and the pin.
 */
void fs_pin_begin(artifs_fs *fs);
void fs_pin_end(artifs_fs *fs);
void fs_pin_commit(artifs_fs *fs, const artifs_oid *commit);
/* Rewrite the pins from the live version roots (the poller, when dirty). */
void fs_pins_refresh(artifs_fs *fs);

/* Read transactions safe against another process growing the map. */
int fs_txn_begin(artifs_fs *fs, MDB_txn **txn);
void fs_txn_end(artifs_fs *fs, MDB_txn *txn);
/* Drop this thread's kept transaction (before the store closes). */
void fs_txn_release_thread(void);

/*
 * Records (trees, manifests, commits, labelsets) are checked against their
 * ids the first time the mount uses them, like chunks: damaged names,
 * sizes or labels are EIO, never shown.
 */
struct artifs_blob_view;
struct artifs_commit;
int fs_check(artifs_fs *fs, MDB_txn *txn, char kind, const artifs_oid *id);
int fs_tree_load(artifs_fs *fs, MDB_txn *txn, const artifs_oid *id, artifs_tree_view *out);
int fs_blob_load(artifs_fs *fs, MDB_txn *txn, const artifs_oid *id, struct artifs_blob_view *out);
int fs_commit_load(artifs_fs *fs, MDB_txn *txn, const artifs_oid *id, struct artifs_commit **out);

/*
 * LMDB has no page checksums: a damaged B-tree page can make it read out of
 * the map (SIGSEGV, SIGBUS).  Requests that read the store run guarded: the
 * signal jumps back to the request, which releases its transaction and pin
 * gate and answers EIO, and the daemon keeps serving.
 */
typedef struct fs_guard {
	sigjmp_buf jb;
	MDB_txn *txn;		/* open read transaction, if any */
	int pins;		/* fs_pin_begin calls not yet ended */
} fs_guard;
void fs_guard_enter(artifs_fs *fs, fs_guard *g);
void fs_guard_leave(void);
void fs_guard_recover(artifs_fs *fs, fs_guard *g);
/* Crashes recovered so far. */
unsigned long fs_guard_recoveries(void);
/* Install the SIGSEGV/SIGBUS handler (once, at mount). */
void fs_guard_install(void);

/* Chunk verification cache. */
int fs_verified(artifs_fs *fs, const artifs_oid *id);
void fs_set_verified(artifs_fs *fs, const artifs_oid *id);

/* Names of a directory whose listing is not a tree. */
typedef struct fs_namelist {
	char **v;
	size_t n, cap;
} fs_namelist;
int fs_nl_add(fs_namelist *l, const char *name);

/* The node for entry te of version directory p, a view directory inside a view (ops.c). */
fs_node *fs_view_entry(artifs_fs *fs, fs_node *p, const artifs_tree_entry *te);

/*
 * Labels (labels.c): .labels views, .labels.jsonl, user.label.* xattrs.
 * fs_labels_child resolves a name in FS_LABELS, FS_LKEY or FS_VIEW, and
 * ".labels" / ".labels.jsonl" in FS_VROOT; fs_labels_list lists FS_LABELS
 * (keys) and FS_LKEY (values); fs_view_keep says whether a tree entry
 * shows in view directory p (1, 0, or <0 on error).
 */
int fs_labels_init(artifs_fs *fs);
void fs_labels_release(artifs_fs *fs);
int fs_labels_child(artifs_fs *fs, MDB_txn *txn, fs_node *p, const char *name, fs_node **out);
int fs_labels_list(artifs_fs *fs, MDB_txn *txn, fs_node *p, fs_namelist *out);
int fs_view_keep(artifs_fs *fs, MDB_txn *txn, fs_node *p, const artifs_tree_entry *te);
/* The value of xattr `name` of n (pointing into the map), or -ENODATA. */
int fs_xattr_get(artifs_fs *fs, MDB_txn *txn, const fs_node *n, const char *name,
	const char **value, size_t *len);
/* Append n's xattr names, each NUL-terminated. */
int fs_xattr_list(artifs_fs *fs, MDB_txn *txn, const fs_node *n, artifs_buf *out);

/* Logging (mount.c): syslog, a file, or stderr. */
void fs_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Directory prefetch (prefetch.c): start/stop the workers, queue a tree. */
int fs_prefetch_start(artifs_fs *fs);
void fs_prefetch_stop(artifs_fs *fs);
void fs_prefetch_dir(artifs_fs *fs, const artifs_oid *tree);
/* Locate the map of data.mdb (after open and after every remap). */
void fs_find_map(artifs_fs *fs);
/* File offset in data.mdb of map address p (inside a transaction). */
uint64_t fs_map_off(artifs_fs *fs, const void *p);
/* Read map range [p, p+len) into memory now, in big reads. */
void fs_fetch(artifs_fs *fs, const void *p, size_t len);
/* Queue data.mdb range [off, off+len) for the workers. */
void fs_prefetch_range(artifs_fs *fs, uint64_t off, uint64_t len);
/* Queue data.mdb range [lo, hi) for a staging buffer (fs_stage_load's arguments). */
void fs_prefetch_stage(artifs_fs *fs, uint64_t lo, uint64_t hi, uint64_t want,
	const artifs_oid *first);

/*
 * Staging buffers for cold chunks (stage.c), read with O_DIRECT.
 * fs_stage_load: a worker fills a buffer with data.mdb's [lo, hi), which
 * holds `want` bytes of chunks, the first one `first` (waits for a free
 * buffer; skipped once `first` has been served: the readers are there).
 * fs_stage_get: the staged bytes of the chunk at map address d (waiting
 * for a buffer being filled with it, or filling a free one; *missed then),
 * NULL when the map should serve it (`resident`, from fs_resident_range:
 * its pages are in memory; or no buffer free; or none holds it and not
 * `may_fill`); *slot
 * is released with fs_stage_put(fs, slot, bytes served), SIZE_MAX to
 * discard the buffer.
 */
#define FS_STAGE_SLOT ((size_t)1 << 20)
#define FS_STAGE_SLOTS 128
int fs_stage_start(artifs_fs *fs);
/* Does the chunk at map address d own its pages (an LMDB overflow value)? */
static inline int fs_stage_whole(const uint8_t *d, size_t dl)
{
	return ((uintptr_t)d & 4095) == 16 && dl <= FS_STAGE_SLOT - 4096;
}
void fs_stage_stop(artifs_fs *fs);
/* Are there staging buffers, and do O_DIRECT reads work? */
int fs_stage_on(artifs_fs *fs);
void fs_stage_load(artifs_fs *fs, uint64_t lo, uint64_t hi, uint64_t want, const artifs_oid *first);
const uint8_t *fs_stage_get(artifs_fs *fs, const uint8_t *d, size_t dl, int resident,
	int may_fill, int *slot, int *missed);
void fs_stage_put(artifs_fs *fs, int slot, size_t served);
/* Give the buffers' memory back when none has been filled for a while (the poller). */
void fs_stage_trim(artifs_fs *fs);

/* Raise the mount's read-ahead to fs->readahead_kb (mount.c). */
void fs_raise_readahead(artifs_fs *fs);

/*
 * A mount of a remote (lazy.c): fetch the missing chunks of blob's bytes
 * [from, to) and a read-ahead window into the cache store (for a small
 * file, the small files of its directory `dir`, when not NULL); mark a
 * cached chunk as just read.
 */
int fs_lazy_start(artifs_fs *fs, const artifs_mount_lazy *o);
void fs_lazy_stop(artifs_fs *fs);
int fs_lazy_fetch(artifs_fs *fs, const artifs_oid *blob, const artifs_oid *dir, uint64_t from,
	uint64_t to);
void fs_lazy_touch(artifs_fs *fs, const artifs_oid *id);
/* Fetch blob's bytes from `off` on in the background (a sequential reader is coming). */
void fs_lazy_ahead(artifs_fs *fs, const artifs_oid *blob, uint64_t off);

/* The ref poller (ops.c). */
void *fs_poller_main(void *arg);

#endif
