/*
 * lazy.c - a mount of a remote (artifs mount --remote NAME): the daemon
 * serves a cache store that holds the remote's refs and records (fetched
 * before mounting, refreshed by a child 'artifs pull --records-only'), and
 * fetches file chunks on first read.
 *
 * A read that meets a missing chunk ends its transaction, fetches the
 * chunks of the requested range plus a read-ahead window (ranged reads of
 * the remote's packs, every object checked against its id), writes them to
 * the cache store and starts again.  Chunk bytes in the cache are capped:
 * least recently read chunks are deleted to make room.  A remote that does
 * not answer fails the read with EIO after the transport's bounded
 * retries; what is cached keeps being served.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "blob.h"
#include "error.h"
#include "fs_int.h"
#include "pack.h"
#include "remote.h"
#include "sync.h"

#define LRU_BUCKETS (1u << 16)
#define RANGE_GAP (256u << 10)
#define RANGE_MAX (8u << 20)
#define MAX_FETCHERS 4

struct lru {
	artifs_oid id;
	uint32_t len;
	struct lru *prev, *next;	/* most recent first */
	struct lru *hnext;
};

struct fs_lazy {
	artifs_mount_lazy o;
	artifs_sync_opts so;
	pthread_mutex_t mu;		/* everything below */
	artifs_rindex *ix;
	double ix_time;
	struct lru **buckets;
	struct lru head;		/* list sentinel */
	uint64_t bytes;
	artifs_remote *handles[MAX_FETCHERS * 4];
	int nhandles;
	pthread_mutex_t wmu;		/* one writer of fetched chunks at a time */
	artifs_oid *inflight;		/* chunks some thread is fetching now */
	size_t ninflight, capinflight;
	pthread_cond_t landed;		/* a fetch ended */
	/* the refresher */
	pthread_t th;
	int started, stop;
	pthread_cond_t cond;
	pid_t child;
	uint64_t n_fetch, n_fetch_bytes, n_evicted, n_requests, n_ahead;
	/* read-ahead for sequential readers of large files: one worker, a few requests */
	struct ahead { artifs_oid blob; uint64_t off; } aq[8];
	unsigned int aq_head, aq_n;
	pthread_t ath;
	int astarted;
	pthread_cond_t acond;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t bucket_of(const artifs_oid *id)
{
	uint32_t h;

	memcpy(&h, id->id, 4);
	return h & (LRU_BUCKETS - 1);
}

static struct lru *lru_find(struct fs_lazy *z, const artifs_oid *id)
{
	struct lru *e;

	for (e = z->buckets[bucket_of(id)]; e; e = e->hnext)
		if (!artifs_oid_cmp(&e->id, id))
			return e;
	return NULL;
}

static void lru_unlink(struct lru *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
}

static void lru_front(struct fs_lazy *z, struct lru *e)
{
	e->next = z->head.next;
	e->prev = &z->head;
	z->head.next->prev = e;
	z->head.next = e;
}

static int lru_add(struct fs_lazy *z, const artifs_oid *id, uint32_t len)
{
	struct lru *e = lru_find(z, id);
	size_t b;

	if (e) {
		lru_unlink(e);
		lru_front(z, e);
		return 0;
	}
	if (!(e = calloc(1, sizeof(*e))))
		return -ENOMEM;
	e->id = *id;
	e->len = len;
	b = bucket_of(id);
	e->hnext = z->buckets[b];
	z->buckets[b] = e;
	lru_front(z, e);
	z->bytes += len;
	return 0;
}

static void lru_drop(struct fs_lazy *z, struct lru *e)
{
	struct lru **pp = &z->buckets[bucket_of(&e->id)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(e);
	z->bytes -= e->len;
	free(e);
}

void fs_lazy_touch(artifs_fs *fs, const artifs_oid *id)
{
	struct fs_lazy *z = fs->lazy;
	struct lru *e;

	if (!z)
		return;
	pthread_mutex_lock(&z->mu);
	if ((e = lru_find(z, id)) && z->head.next != e) {
		lru_unlink(e);
		lru_front(z, e);
	}
	pthread_mutex_unlock(&z->mu);
}

static artifs_remote *handle_get(struct fs_lazy *z)
{
	artifs_remote *r = NULL;

	pthread_mutex_lock(&z->mu);
	if (z->nhandles)
		r = z->handles[--z->nhandles];
	pthread_mutex_unlock(&z->mu);
	if (!r && artifs_remote_open(&r, z->o.url, z->o.ropts, 0))
		return NULL;
	return r;
}

static void handle_put(struct fs_lazy *z, artifs_remote *r)
{
	pthread_mutex_lock(&z->mu);
	z->n_requests += artifs_remote_requests(r);
	r->requests = 0;
	if (z->nhandles < (int)(sizeof(z->handles) / sizeof(z->handles[0]))) {
		z->handles[z->nhandles++] = r;
		r = NULL;
	}
	pthread_mutex_unlock(&z->mu);
	artifs_remote_free(r);
}

/* The remote's index, reloaded when a wanted object is not in it (new pushes). */
static int index_find(struct fs_lazy *z, const artifs_oid *id, artifs_pack_entry *out,
	char pack[ARTIFS_OID_HEXSZ + 1])
{
	const artifs_pack_entry *e = NULL;
	const char *p;
	int rc = 0;

	pthread_mutex_lock(&z->mu);
	if (z->ix)
		e = artifs_rindex_find(z->ix, id, &p);
	if (!e && now_s() - z->ix_time > 1.0) {
		artifs_rindex *nix;
		if (!(rc = artifs_rindex_load(&nix, &z->so))) {
			artifs_rindex_free(z->ix);
			z->ix = nix;
			z->ix_time = now_s();
			e = artifs_rindex_find(z->ix, id, &p);
		}
	}
	if (e) {
		*out = *e;
		memcpy(pack, p, ARTIFS_OID_HEXSZ);
		pack[ARTIFS_OID_HEXSZ] = '\0';
	}
	pthread_mutex_unlock(&z->mu);
	if (rc)
		return rc;
	if (!e) {
		char hex[ARTIFS_OID_HEXSZ + 1];
		return artifs_error(ARTIFS_ENOTFOUND, "chunk %s is on no pack of remote '%s'",
			artifs_oid_fmt(hex, id), z->o.url);
	}
	return 0;
}

struct want {
	artifs_pack_entry e;
	char pack[ARTIFS_OID_HEXSZ + 1];
};

struct job {
	struct want *w;
	size_t first, count;
	uint8_t *buf;
	int rc;
	char err[256];
};

struct jobs {
	struct fs_lazy *z;
	struct job *v;
	size_t n, next;
	pthread_mutex_t mu;
};

static int cmp_want(const void *a, const void *b)
{
	const struct want *x = a, *y = b;
	int c = strcmp(x->pack, y->pack);

	if (c)
		return c;
	return x->e.off < y->e.off ? -1 : x->e.off > y->e.off;
}

static void run_job(struct fs_lazy *z, struct job *j)
{
	const artifs_pack_entry *a = &j->w[j->first].e, *e = &j->w[j->first + j->count - 1].e;
	uint64_t off = a->off, len = e->off + e->len - a->off;
	artifs_remote *r = handle_get(z);
	char *key = NULL;
	int rc;

	if (!r) {
		j->rc = -EIO;
		snprintf(j->err, sizeof(j->err), "%s", artifs_error_last());
		return;
	}
	if (!(j->buf = malloc(len ? len : 1)) ||
	    !(key = artifs_strfmt("packs/%s.pack", j->w[j->first].pack))) {
		rc = -ENOMEM;
	} else {
		rc = artifs_remote_get_range(r, key, off, len, j->buf);
		for (size_t i = 0; !rc && i < j->count; i++) {
			const artifs_pack_entry *x = &j->w[j->first + i].e;
			rc = artifs_obj_verify(ARTIFS_OBJ_CHUNK, &x->id, j->buf + (x->off - off), x->len);
		}
	}
	if (rc) {
		j->rc = rc;
		snprintf(j->err, sizeof(j->err), "%s", artifs_error_last());
		artifs_remote_free(r);	/* a connection in an unknown state */
	} else {
		handle_put(z, r);
	}
	free(key);
}

static void *fetcher(void *arg)
{
	struct jobs *js = arg;

	for (;;) {
		size_t i;
		pthread_mutex_lock(&js->mu);
		i = js->next++;
		pthread_mutex_unlock(&js->mu);
		if (i >= js->n)
			break;
		run_job(js->z, &js->v[i]);
	}
	return NULL;
}

/* Make room for `need` bytes and write the fetched chunks, in one transaction. */
static int store_chunks(artifs_fs *fs, struct fs_lazy *z, struct jobs *js, uint64_t need)
{
	MDB_txn *txn = NULL;
	int rc;

	pthread_mutex_lock(&z->wmu);
	/*
	 * Beginning a write transaction may resize the map, which must not
	 * happen under an open read transaction of this process: take the map
	 * lock as the remap path does.
	 */
	pthread_rwlock_wrlock(&fs->maplock);
	rc = artifs_wtxn_begin(fs->store, (size_t)need + (8u << 20), &txn);
	fs_find_map(fs);	/* the map may have moved */
	pthread_rwlock_unlock(&fs->maplock);
	if (rc)
		goto out;
	pthread_mutex_lock(&z->mu);
	while (!rc && z->bytes + need > z->o.cache_bytes && z->head.prev != &z->head) {
		struct lru *e = z->head.prev;
		if (!(rc = artifs_chunk_del(fs->store, txn, &e->id))) {
			z->n_evicted++;
			lru_drop(z, e);
		} else if (rc == MDB_MAP_FULL) {
			rc = artifs_error(ARTIFS_ELMDB, "the cache store's map is full");
		}
	}
	pthread_mutex_unlock(&z->mu);
	for (size_t i = 0; !rc && i < js->n; i++) {
		struct job *j = &js->v[i];
		uint64_t base_off = j->w[j->first].e.off;
		for (size_t k = 0; !rc && k < j->count; k++) {
			const artifs_pack_entry *x = &j->w[j->first + k].e;
			rc = artifs_chunk_put(fs->store, txn, &x->id, j->buf + (x->off - base_off),
				x->len);
			if (rc == MDB_MAP_FULL)
				rc = artifs_error(ARTIFS_ELMDB, "the cache store's map is full");
			else if (rc > 0)
				rc = 0;
		}
	}
	if (!rc) {
		rc = artifs_txn_commit(txn);
		txn = NULL;
	}
	if (!rc) {
		pthread_mutex_lock(&z->mu);
		for (size_t i = 0; !rc && i < js->n; i++)
			for (size_t k = 0; !rc && k < js->v[i].count; k++) {
				const artifs_pack_entry *x = &js->v[i].w[js->v[i].first + k].e;
				rc = lru_add(z, &x->id, x->len);
			}
		z->n_fetch++;
		z->n_fetch_bytes += need;
		pthread_mutex_unlock(&z->mu);
	}
out:
	if (txn)
		mdb_txn_abort(txn);
	pthread_mutex_unlock(&z->wmu);
	return rc;
}

static int want_add(struct want **w, size_t *nw, size_t *cap, const artifs_oid *id)
{
	if (*nw == *cap) {
		size_t c2 = *cap ? *cap * 2 : 16;
		void *p = realloc(*w, c2 * sizeof(**w));
		if (!p)
			return -ENOMEM;
		*w = p;
		*cap = c2;
	}
	memset(&(*w)[*nw], 0, sizeof(**w));
	(*w)[*nw].e.id = *id;
	(*nw)++;
	return 0;
}

/*
 * The small files beside the one read: a reader of a directory of samples
 * reads them all, and a remote is slow per request, not per byte.  Their
 * missing chunks join the fetch (packs keep a directory's files together,
 * so they usually come in the same ranged read).
 */
static int want_dir(artifs_fs *fs, MDB_txn *txn, const artifs_oid *dir, const artifs_oid *skip,
	struct want **w, size_t *nw, size_t *cap, uint64_t *need, uint64_t window)
{
	artifs_tree_view t;
	int rc;

	if (artifs_oid_is_zero(dir) || fs_tree_load(fs, txn, dir, &t))
		return 0;
	for (uint32_t i = 0; i < t.count && *need < window; i++) {
		artifs_tree_entry e;
		artifs_blob_view b;
		if (artifs_tree_entry_at(&t, i, &e) || e.type != ARTIFS_T_FILE ||
		    e.size > (4u << 20) || !artifs_oid_cmp(&e.id, skip))
			continue;
		if (fs_blob_load(fs, txn, &e.id, &b))
			continue;
		for (uint32_t k = 0; k < b.nchunks && *need < window; k++) {
			artifs_oid cid;
			artifs_blob_chunk_id(&b, k, &cid);
			if (artifs_chunk_has(fs->store, txn, &cid))
				continue;
			if ((rc = want_add(w, nw, cap, &cid)))
				return rc;
			*need += artifs_blob_chunk_len(&b, k);
		}
	}
	return 0;
}

int fs_lazy_fetch(artifs_fs *fs, const artifs_oid *blob, const artifs_oid *dir, uint64_t from,
	uint64_t to)
{
	struct fs_lazy *z = fs->lazy;
	struct want *w = NULL;
	size_t nw = 0, cap = 0;
	struct jobs js;
	artifs_blob_view b;
	MDB_txn *txn;
	uint64_t need = 0, window;
	pthread_t th[MAX_FETCHERS];
	int rc, nth = 0, marked = 0;

	memset(&js, 0, sizeof(js));
	if (!z)
		return ARTIFS_ENOTFOUND;
	/* read-ahead, but never a window the cache cannot hold several times */
	window = z->o.cache_bytes / 4;
	if (window > (16u << 20))
		window = 16u << 20;
	if (to < from + window)
		to = from + window;
	if ((rc = fs_txn_begin(fs, &txn)))
		return rc;
	if ((rc = fs_blob_load(fs, txn, blob, &b)))
		goto out_txn;
	for (uint32_t i = artifs_blob_find(&b, from); i < b.nchunks &&
	     artifs_blob_chunk_off(&b, i) < to; i++) {
		artifs_oid cid;
		artifs_blob_chunk_id(&b, i, &cid);
		if (artifs_chunk_has(fs->store, txn, &cid))
			continue;
		if (need + artifs_blob_chunk_len(&b, i) > window && nw > 0)
			break;	/* the window is full; the first chunk always goes */
		if ((rc = want_add(&w, &nw, &cap, &cid)))
			goto out_txn;
		need += artifs_blob_chunk_len(&b, i);
	}
	if (!rc && dir && b.size <= (4u << 20))
		rc = want_dir(fs, txn, dir, blob, &w, &nw, &cap, &need, window);
out_txn:
	fs_txn_end(fs, txn);
	if (rc || !nw)
		goto out;
	/*
	 * Several readers (the kernel's parallel read-ahead) meet the same
	 * missing chunks: one fetches, the others wait for it and retry.
	 */
	pthread_mutex_lock(&z->mu);
	{
		size_t keep = 0;
		int first_busy = 0;
		for (size_t i = 0; i < nw; i++) {
			int busy = 0;
			for (size_t k = 0; k < z->ninflight && !busy; k++)
				busy = !artifs_oid_cmp(&z->inflight[k], &w[i].e.id);
			if (busy && i == 0)
				first_busy = 1;
			if (!busy)
				w[keep++] = w[i];
		}
		nw = keep;
		if (first_busy || !nw) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 60;
			pthread_cond_timedwait(&z->landed, &z->mu, &ts);
			pthread_mutex_unlock(&z->mu);
			nw = 0;
			goto out;
		}
		if (z->ninflight + nw > z->capinflight) {
			size_t c2 = (z->ninflight + nw) * 2;
			void *p = realloc(z->inflight, c2 * sizeof(*z->inflight));
			if (!p) {
				pthread_mutex_unlock(&z->mu);
				rc = -ENOMEM;
				goto out;
			}
			z->inflight = p;
			z->capinflight = c2;
		}
		for (size_t i = 0; i < nw; i++)
			z->inflight[z->ninflight++] = w[i].e.id;
		marked = 1;
	}
	pthread_mutex_unlock(&z->mu);
	for (size_t i = 0; !rc && i < nw; i++)
		rc = index_find(z, &w[i].e.id, &w[i].e, w[i].pack);
	if (rc)
		goto out;
	qsort(w, nw, sizeof(*w), cmp_want);
	if (!(js.v = calloc(nw, sizeof(*js.v)))) {
		rc = -ENOMEM;
		goto out;
	}
	js.z = z;
	pthread_mutex_init(&js.mu, NULL);
	for (size_t i = 0; i < nw;) {
		size_t k = i + 1;
		while (k < nw && !strcmp(w[k].pack, w[i].pack) &&
		       w[k].e.off <= w[k - 1].e.off + w[k - 1].e.len + RANGE_GAP &&
		       w[k].e.off + w[k].e.len - w[i].e.off <= RANGE_MAX)
			k++;
		js.v[js.n].w = w;
		js.v[js.n].first = i;
		js.v[js.n].count = k - i;
		js.n++;
		i = k;
	}
	/* ranges in parallel: a remote's latency, not its bandwidth, is the limit */
	for (nth = 0; nth < MAX_FETCHERS && (size_t)nth + 1 < js.n; nth++)
		if (pthread_create(&th[nth], NULL, fetcher, &js))
			break;
	fetcher(&js);
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);
	for (size_t i = 0; !rc && i < js.n; i++)
		if (js.v[i].rc) {
			rc = artifs_error(js.v[i].rc == ARTIFS_ECORRUPT ? ARTIFS_ECORRUPT : -EIO,
				"fetching from remote '%s': %s", z->o.name ? z->o.name : z->o.url,
				js.v[i].err);
		}
	need = 0;
	for (size_t i = 0; i < nw; i++)
		need += w[i].e.len;
	if (!rc)
		rc = store_chunks(fs, z, &js, need);
	pthread_mutex_destroy(&js.mu);
out:
	if (marked) {
		pthread_mutex_lock(&z->mu);
		for (size_t i = 0; i < nw; i++)
			for (size_t k = 0; k < z->ninflight; k++)
				if (!artifs_oid_cmp(&z->inflight[k], &w[i].e.id)) {
					z->inflight[k] = z->inflight[--z->ninflight];
					break;
				}
		pthread_cond_broadcast(&z->landed);
		pthread_mutex_unlock(&z->mu);
	}
	for (size_t i = 0; i < js.n; i++)
		free(js.v[i].buf);
	free(js.v);
	free(w);
	return rc;
}

static void *ahead_main(void *arg)
{
	artifs_fs *fs = arg;
	struct fs_lazy *z = fs->lazy;

	pthread_mutex_lock(&z->mu);
	for (;;) {
		struct ahead a;
		uint64_t window;
		while (!z->stop && !z->aq_n)
			pthread_cond_wait(&z->acond, &z->mu);
		if (z->stop)
			break;
		a = z->aq[z->aq_head];
		z->aq_head = (z->aq_head + 1) % 8;
		z->aq_n--;
		z->n_ahead++;
		window = z->o.cache_bytes / 4 < (16u << 20) ? z->o.cache_bytes / 4 : (16u << 20);
		pthread_mutex_unlock(&z->mu);
		fs_lazy_fetch(fs, &a.blob, NULL, a.off, a.off + window);
		pthread_mutex_lock(&z->mu);
	}
	pthread_mutex_unlock(&z->mu);
	return NULL;
}

void fs_lazy_ahead(artifs_fs *fs, const artifs_oid *blob, uint64_t off)
{
	struct fs_lazy *z = fs->lazy;

	if (!z || !z->astarted)
		return;
	pthread_mutex_lock(&z->mu);
	for (unsigned int i = 0; i < z->aq_n; i++) {
		const struct ahead *a = &z->aq[(z->aq_head + i) % 8];
		if (!artifs_oid_cmp(&a->blob, blob) && a->off == off) {
			pthread_mutex_unlock(&z->mu);
			return;
		}
	}
	if (z->aq_n == 8) {	/* drop the oldest: the reader has moved on */
		z->aq_head = (z->aq_head + 1) % 8;
		z->aq_n--;
	}
	z->aq[(z->aq_head + z->aq_n) % 8].blob = *blob;
	z->aq[(z->aq_head + z->aq_n) % 8].off = off;
	z->aq_n++;
	pthread_cond_signal(&z->acond);
	pthread_mutex_unlock(&z->mu);
}

/* ---- the refresher: a child 'artifs pull --records-only' every refresh_s ---- */

static void *refresher(void *arg)
{
	artifs_fs *fs = arg;
	struct fs_lazy *z = fs->lazy;
	int failures = 0;

	pthread_mutex_lock(&z->mu);
	while (!z->stop) {
		struct timespec ts;
		pid_t pid;
		int status;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += z->o.refresh_s;
		while (!z->stop && pthread_cond_timedwait(&z->cond, &z->mu, &ts) != ETIMEDOUT)
			;
		if (z->stop)
			break;
		pid = fork();
		if (pid == 0) {
			int fd = open("/dev/null", O_RDWR);
			if (fd >= 0) {
				dup2(fd, 0);
				dup2(fd, 1);
				dup2(fd, 2);
			}
			execl("/proc/self/exe", "artifs", "--store", artifs_store_path(fs->store), "pull",
				"--records-only", z->o.name, (char *)NULL);
			_exit(127);
		}
		if (pid < 0)
			continue;
		z->child = pid;
		pthread_mutex_unlock(&z->mu);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		pthread_mutex_lock(&z->mu);
		z->child = 0;
		if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			if (failures++ % 20 == 0)
				fs_log(LOG_WARNING, "cannot read the refs of remote '%s' (serving what "
					"is cached; %d failed refresh%s)", z->o.name, failures,
					failures > 1 ? "es" : "");
		} else {
			failures = 0;
		}
	}
	pthread_mutex_unlock(&z->mu);
	return NULL;
}

static int lru_seed(const artifs_oid *id, size_t len, void *ctx)
{
	return lru_add(ctx, id, (uint32_t)len);
}

int fs_lazy_start(artifs_fs *fs, const artifs_mount_lazy *o)
{
	struct fs_lazy *z = calloc(1, sizeof(*z));
	artifs_sync_opts so = ARTIFS_SYNC_OPTS_INIT;
	MDB_txn *txn = NULL;
	int rc;

	if (!z || !(z->buckets = calloc(LRU_BUCKETS, sizeof(*z->buckets)))) {
		free(z);
		return -ENOMEM;
	}
	z->o = *o;
	if (!z->o.refresh_s)
		z->o.refresh_s = 30;
	so.name = o->name;
	so.url = o->url;
	so.ropts = o->ropts;
	so.cache_dir = o->index_cache;
	z->so = so;
	z->head.next = z->head.prev = &z->head;
	pthread_mutex_init(&z->mu, NULL);
	pthread_mutex_init(&z->wmu, NULL);
	pthread_cond_init(&z->cond, NULL);
	pthread_cond_init(&z->landed, NULL);
	pthread_cond_init(&z->acond, NULL);
	fs->lazy = z;
	/* what the cache already holds, in no particular order */
	if ((rc = fs_txn_begin(fs, &txn)))
		return rc;
	rc = artifs_chunk_foreach(fs->store, txn, lru_seed, z);
	fs_txn_end(fs, txn);
	if (rc)
		return rc;
	/* the index: from the cache of pack indexes; an unreachable remote is not fatal */
	if (artifs_rindex_load(&z->ix, &z->so))
		fs_log(LOG_WARNING, "remote '%s' is not reachable now: %s (serving what is cached)",
			o->name, artifs_error_last());
	z->ix_time = now_s();
	if (!pthread_create(&z->th, NULL, refresher, fs))
		z->started = 1;
	if (!pthread_create(&z->ath, NULL, ahead_main, fs))
		z->astarted = 1;
	fs_log(LOG_INFO, "lazy mount of remote '%s': %llu MiB cached of at most %llu MiB",
		o->name, (unsigned long long)(z->bytes >> 20),
		(unsigned long long)(o->cache_bytes >> 20));
	return 0;
}

void fs_lazy_stop(artifs_fs *fs)
{
	struct fs_lazy *z = fs->lazy;

	if (!z)
		return;
	pthread_mutex_lock(&z->mu);
	z->stop = 1;
	if (z->child)
		kill(z->child, SIGTERM);
	pthread_cond_broadcast(&z->cond);
	pthread_cond_broadcast(&z->acond);
	pthread_cond_broadcast(&z->landed);
	pthread_mutex_unlock(&z->mu);
	if (z->started)
		pthread_join(z->th, NULL);
	if (z->astarted)
		pthread_join(z->ath, NULL);
	fs_log(LOG_INFO, "remote '%s': %llu fetches (%llu read-ahead), %llu MiB fetched, %llu "
		"requests, %llu chunks evicted, %llu MiB cached", z->o.name,
		(unsigned long long)z->n_fetch, (unsigned long long)z->n_ahead,
		(unsigned long long)(z->n_fetch_bytes >> 20), (unsigned long long)z->n_requests,
		(unsigned long long)z->n_evicted, (unsigned long long)(z->bytes >> 20));
	while (z->head.next != &z->head)
		lru_drop(z, z->head.next);
	for (int i = 0; i < z->nhandles; i++)
		artifs_remote_free(z->handles[i]);
	artifs_rindex_free(z->ix);
	free(z->buckets);
	pthread_mutex_destroy(&z->mu);
	pthread_mutex_destroy(&z->wmu);
	pthread_cond_destroy(&z->cond);
	pthread_cond_destroy(&z->landed);
	pthread_cond_destroy(&z->acond);
	free(z->inflight);
	free(z);
	fs->lazy = NULL;
}
