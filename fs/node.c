/*
 * node.c - the daemon's node table.
 *
 * A node lives while the kernel knows it (nlookup > 0) or something holds a
 * reference (a child directory, the poller).  Directories hold their parent,
 * so a walk up from any live node always finds live nodes.
 */
#include "fs_int.h"
#include "pagecache.h"

#include <signal.h>

#include "blob.h"
#include "commit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "error.h"

/* The guard of the request this thread is serving (fs_guard_enter). */
static __thread fs_guard *guard;

#define VERIFY_SLOTS 65536	/* chunk ids remembered as verified (1 MiB) */

static int is_dir_kind(uint8_t k)
{
	return k != FS_FILE && k != FS_LINK;
}

static uint64_t dir_hash(const fs_node *parent, const char *name, size_t len)
{
	return XXH3_64bits_withSeed(name, len, (uint64_t)(uintptr_t)parent);
}

static uint64_t content_hash(uint8_t kind, uint8_t flags, const artifs_oid *id,
	const artifs_oid *labels)
{
	uint8_t key[34];

	key[0] = kind;
	key[1] = flags;
	memcpy(key + 2, id->id, 16);
	memcpy(key + 18, labels->id, 16);
	return XXH3_64bits(key, sizeof(key));
}

static uint64_t file_hash(const fs_node *t)
{
	return content_hash(t->kind, t->flags, &t->id, &t->labels);
}

uint64_t fs_file_ino(uint8_t kind, uint8_t flags, const artifs_oid *id, const artifs_oid *labels)
{
	/* from content: stable across mounts; the high bit keeps it apart from dirs */
	return content_hash(kind, flags, id, labels) | (1ULL << 63);
}

/*
 * A directory's inode number, from its parent's and its name (and, for the
 * root of a version, the commit): the same whenever the kernel forgets the
 * node and looks it up again.  A counter gave a new number each time, and
 * a walker that compares a stat() before and after opening a directory
 * (find, Python's os.fwalk) took it for another directory and skipped it.
 * Bit 62 keeps these apart from file numbers (bit 63) and the fixed ones.
 */
static uint64_t dir_ino(const fs_node *parent, const char *name, size_t len, const fs_node *tmpl)
{
	uint64_t seed = parent ? parent->ino : 0;

	if (tmpl && tmpl->kind == FS_VROOT)
		seed ^= XXH3_64bits(tmpl->commit.id, sizeof(tmpl->commit.id));
	return (XXH3_64bits_withSeed(name, len, seed) >> 2) | (1ULL << 62);
}

uint64_t fs_dir_ino_hint(const fs_node *parent, const char *name, size_t len)
{
	return dir_ino(parent, name, len, NULL);
}

static void static_node(fs_node *n, uint8_t kind, uint64_t ino, int64_t time)
{
	memset(n, 0, sizeof(*n));
	n->kind = kind;
	n->ino = ino;
	n->time = time;
	n->refs = 1;	/* never freed */
	n->nlookup = 1;
}

int fs_init(artifs_fs *fs, artifs_store *s)
{
	pthread_rwlockattr_t ra;

	memset(fs, 0, sizeof(*fs));
	fs->store = s;
	fs->nbuckets = 1024;
	if (!(fs->table = calloc(fs->nbuckets, sizeof(*fs->table))) ||
	    !(fs->verified = calloc(VERIFY_SLOTS, sizeof(*fs->verified)))) {
		free(fs->table);
		return artifs_error(-ENOMEM, "out of memory");
	}
	fs->nverified = VERIFY_SLOTS;
	if (fs_labels_init(fs)) {
		free(fs->table);
		free(fs->verified);
		return artifs_error(-ENOMEM, "out of memory");
	}
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->vlock, NULL);
	pthread_mutex_init(&fs->pin_lock, NULL);
	artifs_oidset_init(&fs->pinned);
	pthread_mutex_init(&fs->stop_lock, NULL);
	pthread_cond_init(&fs->stop_cond, NULL);
	/* writers (a remap after another process grew the map) must not starve */
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&fs->maplock, &ra);
	pthread_rwlockattr_destroy(&ra);

	fs->mount_time = (int64_t)time(NULL);
	static_node(&fs->root, FS_ROOT, FUSE_ROOT_ID, fs->mount_time);
	static_node(&fs->kind_datasets, FS_KINDDIR, 2, fs->mount_time);
	static_node(&fs->kind_models, FS_KINDDIR, 3, fs->mount_time);
	fs->roots.rnext = fs->roots.rprev = &fs->roots;
	return 0;
}

void fs_release(artifs_fs *fs)
{
	/* ref roots the poller unhashed (moved refs) that the kernel still knew */
	for (fs_node *n = fs->roots.rnext, *next; n && n != &fs->roots; n = next) {
		next = n->rnext;
		if (!n->hashed)
			free(n);
	}
	for (size_t i = 0; i < fs->nbuckets; i++) {
		fs_node *n = fs->table[i], *next;

		for (; n; n = next) {
			next = n->next;
			free(n);
		}
	}
	free(fs->table);
	free(fs->verified);
	fs_labels_release(fs);
	pthread_mutex_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->vlock);
	pthread_mutex_destroy(&fs->pin_lock);
	artifs_oidset_release(&fs->pinned);
	pthread_mutex_destroy(&fs->stop_lock);
	pthread_cond_destroy(&fs->stop_cond);
	pthread_rwlock_destroy(&fs->maplock);
}

fs_node *fs_node_of(artifs_fs *fs, fuse_ino_t ino)
{
	if (ino == FUSE_ROOT_ID)
		return &fs->root;
	return (fs_node *)(uintptr_t)ino;
}

static void grow_table(artifs_fs *fs)
{
	size_t nb = fs->nbuckets * 2;
	fs_node **t = calloc(nb, sizeof(*t));

	if (!t)
		return;	/* keep the longer chains */
	for (size_t i = 0; i < fs->nbuckets; i++) {
		fs_node *n = fs->table[i], *next;

		for (; n; n = next) {
			next = n->next;
			n->next = t[n->hash & (nb - 1)];
			t[n->hash & (nb - 1)] = n;
		}
	}
	free(fs->table);
	fs->table = t;
	fs->nbuckets = nb;
}

static void insert(artifs_fs *fs, fs_node *n)
{
	size_t b;

	if (fs->nnodes + 1 > fs->nbuckets)
		grow_table(fs);
	b = n->hash & (fs->nbuckets - 1);
	n->next = fs->table[b];
	fs->table[b] = n;
	n->hashed = 1;
	fs->nnodes++;
}

static void unlink_hashed(artifs_fs *fs, fs_node *n)
{
	fs_node **pp = &fs->table[n->hash & (fs->nbuckets - 1)];

	for (; *pp; pp = &(*pp)->next)
		if (*pp == n) {
			*pp = n->next;
			n->next = NULL;
			n->hashed = 0;
			fs->nnodes--;
			return;
		}
}

/* Free n if nobody needs it; walks up through parents.  Table lock held. */
static void maybe_free(artifs_fs *fs, fs_node *n)
{
	while (n && n->nlookup == 0 && n->refs == 0) {
		fs_node *parent = n->parent;

		if (n->hashed)
			unlink_hashed(fs, n);
		if (n->kind == FS_VROOT)
			fs->pins_dirty = 1;
		if (n->rnext) {
			n->rnext->rprev = n->rprev;
			n->rprev->rnext = n->rnext;
		}
		free(n);
		if (!parent)
			break;
		parent->refs--;
		n = parent;
	}
}

/*
 * A new node from a template: its own name, hash and counters, holding a
 * reference on `parent` (may be NULL).  Table lock held; not yet inserted.
 */
static fs_node *node_new(const fs_node *tmpl, const char *name, size_t len, uint64_t h,
	fs_node *parent)
{
	fs_node *n = malloc(sizeof(*n) + len + 1);

	if (!n)
		return NULL;
	*n = *tmpl;
	memcpy(n->name, name, len);
	n->name[len] = '\0';
	n->next = NULL;
	n->rnext = n->rprev = NULL;
	n->hash = h;
	n->nlookup = 0;
	n->refs = 0;
	if ((n->parent = parent))
		parent->refs++;
	return n;
}

fs_node *fs_dir_get(artifs_fs *fs, fs_node *parent, const char *name, size_t len,
	const fs_node *tmpl)
{
	uint64_t h = dir_hash(parent, name, len);
	fs_node *n;

	pthread_mutex_lock(&fs->lock);
	for (n = fs->table[h & (fs->nbuckets - 1)]; n; n = n->next)
		if (n->hash == h && n->parent == parent && is_dir_kind(n->kind) &&
		    !strncmp(n->name, name, len) && n->name[len] == '\0')
			break;
	if (!n) {
		if (!(n = node_new(tmpl, name, len, h, parent))) {
			pthread_mutex_unlock(&fs->lock);
			return NULL;
		}
		n->ino = dir_ino(parent, name, len, tmpl);
		insert(fs, n);
		/* the poller revisits moved refs and listings that may change */
		if (n->kind == FS_VROOT || n->kind == FS_REPO || n->kind == FS_COMMITS) {
			n->rnext = fs->roots.rnext;
			n->rprev = &fs->roots;
			fs->roots.rnext->rprev = n;
			fs->roots.rnext = n;
		}
	}
	n->nlookup++;
	pthread_mutex_unlock(&fs->lock);
	return n;
}

fs_node *fs_file_get(artifs_fs *fs, const fs_node *tmpl, const char *name, size_t len)
{
	uint64_t h = file_hash(tmpl);
	fs_node *n;

	pthread_mutex_lock(&fs->lock);
	for (n = fs->table[h & (fs->nbuckets - 1)]; n; n = n->next)
		if (n->hash == h && n->kind == tmpl->kind && n->flags == tmpl->flags &&
		    !artifs_oid_cmp(&n->id, &tmpl->id) && !artifs_oid_cmp(&n->labels, &tmpl->labels))
			break;
	if (!n) {
		/* the directory it was first found in, held (prefetch looks around it) */
		if (!(n = node_new(tmpl, name, len, h, tmpl->parent))) {
			pthread_mutex_unlock(&fs->lock);
			return NULL;
		}
		n->ino = h | (1ULL << 63);	/* == fs_file_ino() */
		insert(fs, n);
	}
	n->nlookup++;
	pthread_mutex_unlock(&fs->lock);
	return n;
}

void fs_forget(artifs_fs *fs, fs_node *n, uint64_t nlookup)
{
	if (n == &fs->root)
		return;
	pthread_mutex_lock(&fs->lock);
	n->nlookup = nlookup >= n->nlookup ? 0 : n->nlookup - nlookup;
	maybe_free(fs, n);
	pthread_mutex_unlock(&fs->lock);
}

void fs_node_ref(artifs_fs *fs, fs_node *n)
{
	pthread_mutex_lock(&fs->lock);
	n->refs++;
	pthread_mutex_unlock(&fs->lock);
}

void fs_node_unref(artifs_fs *fs, fs_node *n)
{
	pthread_mutex_lock(&fs->lock);
	n->refs--;
	maybe_free(fs, n);
	pthread_mutex_unlock(&fs->lock);
}

void fs_unhash(artifs_fs *fs, fs_node *n)
{
	pthread_mutex_lock(&fs->lock);
	if (n->hashed)
		unlink_hashed(fs, n);
	pthread_mutex_unlock(&fs->lock);
}

/*
 * Each thread keeps one read transaction, reset between requests and
 * renewed for the next (MDB_NOTLS): a renew reuses the reader slot where a
 * begin searches the reader table under its mutex.
 */
static pthread_key_t txn_key;
static pthread_once_t txn_once = PTHREAD_ONCE_INIT;

static void txn_key_free(void *t)
{
	mdb_txn_abort(t);
}

static void txn_key_init(void)
{
	pthread_key_create(&txn_key, txn_key_free);
}

void fs_txn_release_thread(void)
{
	MDB_txn *t;

	pthread_once(&txn_once, txn_key_init);
	if ((t = pthread_getspecific(txn_key))) {
		mdb_txn_abort(t);
		pthread_setspecific(txn_key, NULL);
	}
}

int fs_txn_begin(artifs_fs *fs, MDB_txn **txn)
{
	MDB_txn *t;
	int rc;

	pthread_once(&txn_once, txn_key_init);
	pthread_rwlock_rdlock(&fs->maplock);
	if ((t = pthread_getspecific(txn_key))) {
		if (!mdb_txn_renew(t)) {
			*txn = t;
			if (guard)
				guard->txn = t;
			return 0;
		}
		/* e.g. MDB_MAP_RESIZED: drop it and take the full path */
		mdb_txn_abort(t);
		pthread_setspecific(txn_key, NULL);
	}
	rc = artifs_rtxn_try(fs->store, txn);
	if (rc == MDB_MAP_RESIZED) {
		/* another process grew the file: remap with no txn open here */
		pthread_rwlock_unlock(&fs->maplock);
		pthread_rwlock_wrlock(&fs->maplock);
		rc = artifs_rtxn_try(fs->store, txn);
		if (rc == MDB_MAP_RESIZED) {
			if (!(rc = artifs_store_remap(fs->store))) {
				fs_find_map(fs);	/* the map may have moved */
				rc = artifs_rtxn_try(fs->store, txn);
			}
		}
		if (!rc) {
			/* keep the txn but trade the write lock for a read lock */
			mdb_txn_abort(*txn);
			pthread_rwlock_unlock(&fs->maplock);
			pthread_rwlock_rdlock(&fs->maplock);
			rc = artifs_rtxn_try(fs->store, txn);
		}
	}
	if (rc) {
		pthread_rwlock_unlock(&fs->maplock);
		fs_log(3, "cannot begin a read transaction: %s", artifs_error_last());
		return -EIO;
	}
	if (guard)
		guard->txn = *txn;
	return 0;
}

void fs_txn_end(artifs_fs *fs, MDB_txn *txn)
{
	MDB_txn *t = pthread_getspecific(txn_key);

	if (guard && guard->txn == txn)
		guard->txn = NULL;
	if (!t && !pthread_setspecific(txn_key, txn))
		t = txn;
	if (t == txn)
		mdb_txn_reset(txn);	/* kept for this thread's next request */
	else
		mdb_txn_abort(txn);
	pthread_rwlock_unlock(&fs->maplock);
}

int fs_verified(artifs_fs *fs, const artifs_oid *id)
{
	size_t slot;
	int hit;

	memcpy(&slot, id->id, sizeof(slot));
	slot &= fs->nverified - 1;
	pthread_mutex_lock(&fs->vlock);
	hit = !artifs_oid_cmp(&fs->verified[slot], id);
	pthread_mutex_unlock(&fs->vlock);
	return hit;
}

void fs_set_verified(artifs_fs *fs, const artifs_oid *id)
{
	size_t slot;

	memcpy(&slot, id->id, sizeof(slot));
	slot &= fs->nverified - 1;
	pthread_mutex_lock(&fs->vlock);
	fs->verified[slot] = *id;
	pthread_mutex_unlock(&fs->vlock);
}

static void crash_handler(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	if (guard) {
		fs_guard *g = guard;
		guard = NULL;
		siglongjmp(g->jb, sig);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

void fs_guard_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = crash_handler;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
}

void fs_guard_enter(artifs_fs *fs, fs_guard *g)
{
	(void)fs;
	g->txn = NULL;
	g->pins = 0;
	guard = g;
}

void fs_guard_leave(void)
{
	guard = NULL;
}

static unsigned long recoveries;

unsigned long fs_guard_recoveries(void)
{
	return __atomic_load_n(&recoveries, __ATOMIC_RELAXED);
}

void fs_guard_recover(artifs_fs *fs, fs_guard *g)
{
	guard = NULL;
	__atomic_add_fetch(&recoveries, 1, __ATOMIC_RELAXED);
	if (g->txn)
		fs_txn_end(fs, g->txn);
	while (g->pins-- > 0)
		fs_pin_end(fs);
	fs_log(3, "a read of the store crashed inside LMDB (its pages are damaged); answered EIO "
		"and kept serving: run 'artifs fsck'");
}

int fs_check(artifs_fs *fs, MDB_txn *txn, char kind, const artifs_oid *id)
{
	const void *d;
	size_t len;
	int rc;

	if (fs_verified(fs, id))
		return 0;
	/*
	 * The map is read without read-ahead, so a cold record of many pages
	 * (a big file's manifest: 24 KiB per GiB) came in one fault and one
	 * disk read per page; one read brings it whole.
	 */
	if (!artifs_object_get(fs->store, txn, kind, id, &d, &len) && len > 8192 &&
	    !artifs_resident_range(d, len))
		fs_fetch(fs, d, len);
	if ((rc = artifs_object_check(fs->store, txn, kind, id)))
		return rc;
	fs_set_verified(fs, id);
	return 0;
}

int fs_tree_load(artifs_fs *fs, MDB_txn *txn, const artifs_oid *id, artifs_tree_view *out)
{
	int rc = fs_check(fs, txn, 'T', id);

	return rc ? rc : artifs_tree_load(out, fs->store, txn, id);
}

int fs_blob_load(artifs_fs *fs, MDB_txn *txn, const artifs_oid *id, artifs_blob_view *out)
{
	int rc = fs_check(fs, txn, 'B', id);

	return rc ? rc : artifs_blob_load(out, fs->store, txn, id);
}

int fs_commit_load(artifs_fs *fs, MDB_txn *txn, const artifs_oid *id, artifs_commit **out)
{
	int rc = fs_check(fs, txn, 'C', id);

	return rc ? rc : artifs_commit_load(out, fs->store, txn, id);
}

void fs_pin_begin(artifs_fs *fs)
{
	if (!fs->pins)
		return;
	if (guard)
		guard->pins++;
	pthread_mutex_lock(&fs->pin_lock);
	/* one flock per process: the first thread in takes it, the last drops it */
	if (fs->store_locks++ == 0 && artifs_pins_gate(fs->pins))
		fs_log(3, "cannot hold the pin gate: %s", artifs_error_last());
	pthread_mutex_unlock(&fs->pin_lock);
}

void fs_pin_end(artifs_fs *fs)
{
	if (!fs->pins)
		return;
	if (guard && guard->pins > 0)
		guard->pins--;
	pthread_mutex_lock(&fs->pin_lock);
	if (--fs->store_locks == 0)
		artifs_pins_ungate(fs->pins);
	pthread_mutex_unlock(&fs->pin_lock);
}

/* Write fs->pinned out.  pin_lock held. */
static void pins_flush(artifs_fs *fs)
{
	artifs_oid *v = malloc((fs->pinned.n + 1) * sizeof(*v));
	size_t n = 0;

	if (!v) {
		fs_log(3, "out of memory writing pins");
		return;
	}
	for (size_t i = 0; i < fs->pinned.cap; i++)
		if (!artifs_oid_is_zero(&fs->pinned.slots[i]))
			v[n++] = fs->pinned.slots[i];
	if (artifs_pins_write(fs->pins, v, n))
		fs_log(3, "cannot write pins: %s", artifs_error_last());
	free(v);
}

void fs_pin_commit(artifs_fs *fs, const artifs_oid *commit)
{
	if (!fs->pins || artifs_oid_is_zero(commit))
		return;
	pthread_mutex_lock(&fs->pin_lock);
	if (artifs_oidset_add(&fs->pinned, commit) > 0)
		pins_flush(fs);
	pthread_mutex_unlock(&fs->pin_lock);
}

void fs_pins_refresh(artifs_fs *fs)
{
	artifs_oidset live;
	fs_node *r;
	int ok = 1;

	if (!fs->pins || !__atomic_load_n(&fs->pins_dirty, __ATOMIC_ACQUIRE))
		return;
	artifs_oidset_init(&live);
	pthread_mutex_lock(&fs->pin_lock);
	pthread_mutex_lock(&fs->lock);
	fs->pins_dirty = 0;
	for (r = fs->roots.rnext; ok && r != &fs->roots; r = r->rnext)
		if (r->kind == FS_VROOT && !artifs_oid_is_zero(&r->commit))
			ok = artifs_oidset_add(&live, &r->commit) >= 0;
	pthread_mutex_unlock(&fs->lock);
	if (ok) {
		artifs_oidset_release(&fs->pinned);
		fs->pinned = live;
		pins_flush(fs);
	} else {
		artifs_oidset_release(&live);
		fs->pins_dirty = 1;
	}
	pthread_mutex_unlock(&fs->pin_lock);
}
