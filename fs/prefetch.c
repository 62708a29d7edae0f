/*
 * prefetch.c - getting cold store pages into memory in big reads.
 *
 * The store's map has no kernel read-ahead (MDB_NORDAHEAD: its B-tree pages
 * are random), so a cold chunk touched through the map arrives one 4 KiB
 * page fault at a time.  MADV_WILLNEED is no cure: the kernel caps it at
 * the read-ahead window and issues it in small pieces (8 MiB asked: 146
 * reads; 64 MiB asked: still ~8 MiB read).  sendfile() of a file range to
 * /dev/null goes through the ordinary read path instead: large reads (64
 * MiB in 64 requests, 1.8 GB/s from one thread here) and no copy to user
 * space.  So:
 *
 *  - fs_fetch() reads one range now, in the caller (a chunk about to be
 *    verified);
 *  - fs_prefetch_range() queues a range for the worker threads (read-ahead
 *    of a big file when there are no staging buffers), fs_prefetch_stage()
 *    a range for a staging buffer (stage.c);
 *  - fs_prefetch_dir() queues a directory: the workers walk its small files
 *    and fetch their chunks.  A commit writes one directory's files one
 *    after another, so they lie densely in the store where a native file
 *    system scatters them, and several workers keep several reads in flight.
 *
 * Ranges already in memory are skipped (mincore), so warm reads pay only
 * the look-ups.
 */
#include "fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "blob.h"
#include "pagecache.h"
#include "tree.h"

#define PF_WORKERS 4
#define PF_QUEUE 256			/* jobs waiting; more are dropped */
#define PF_RECENT 1024			/* directories already queued */
#define PF_DIR_BUDGET (256u << 20)	/* bytes fetched per directory */
#define PF_FILE_MAX (8u << 20)		/* larger files are left to their reader */
#define PF_PIECE (8u << 20)		/* a range job at most */
#define PF_GAP 65536			/* merge ranges this close */
#define PF_GROUP 8			/* staging: files a worker takes at a time */

enum { JOB_DIR, JOB_RANGE, JOB_INDEX, JOB_WARM, JOB_STAGE };

#define PF_INDEX_MAX (512ull << 20)	/* warm the index at mount if it is at most this */

struct pf_job {
	int kind;
	artifs_oid tree;		/* JOB_DIR: part `part` of PF_WORKERS */
	uint32_t part;
	uint64_t off, len;		/* JOB_RANGE, JOB_STAGE: in data.mdb; JOB_INDEX: id bytes [off, len) */
	uint64_t want;			/* JOB_STAGE: chunk bytes in the range, the first `first` */
	artifs_oid first;
};

struct artifs_prefetch {
	artifs_fs *fs;
	pthread_t th[PF_WORKERS];
	int nth;
	int null_fd;
	int fds[PF_WORKERS];		/* data.mdb, one per worker (own read-ahead state) */
	int fetch_fd;			/* data.mdb for fs_fetch() */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pf_job q[PF_QUEUE];
	size_t head, n;
	int stop;
	artifs_oid recent[PF_RECENT];
};

uint64_t fs_map_off(artifs_fs *fs, const void *p)
{
	return (uint64_t)((uintptr_t)p - __atomic_load_n(&fs->map_base, __ATOMIC_ACQUIRE));
}

/* Find where data.mdb is mapped: at start and after every remap, with no transaction open. */
void fs_find_map(artifs_fs *fs)
{
	__atomic_store_n(&fs->map_base, artifs_store_map_base(fs->store), __ATOMIC_RELEASE);
}

void fs_fetch(artifs_fs *fs, const void *p, size_t len)
{
	artifs_prefetch *pf = fs->prefetch;
	uint64_t off;

	if (!pf || pf->fetch_fd < 0 || !fs->map_base) {
		uintptr_t a = (uintptr_t)p & ~(uintptr_t)4095;

		madvise((void *)a, (uintptr_t)p + len - a, MADV_WILLNEED);
		return;
	}
	off = fs_map_off(fs, p) & ~(uint64_t)4095;
	artifs_file_fetch(pf->null_fd, pf->fetch_fd, off, fs_map_off(fs, p) + len - off);
}

static void enqueue(artifs_prefetch *pf, const struct pf_job *j)
{
	if (pf->n == PF_QUEUE)
		return;		/* behind already: drop, the reader fetches itself */
	pf->q[(pf->head + pf->n) % PF_QUEUE] = *j;
	pf->n++;
	pthread_cond_signal(&pf->cond);
}

void fs_prefetch_range(artifs_fs *fs, uint64_t off, uint64_t len)
{
	artifs_prefetch *pf = fs->prefetch;
	struct pf_job j;

	if (!pf || !len || !fs->map_base)
		return;
	memset(&j, 0, sizeof(j));
	j.kind = JOB_RANGE;
	pthread_mutex_lock(&pf->lock);
	/* in pieces, so several workers read in parallel */
	for (uint64_t o = off; o < off + len; o += PF_PIECE) {
		j.off = o;
		j.len = off + len - o < PF_PIECE ? off + len - o : PF_PIECE;
		enqueue(pf, &j);
	}
	pthread_mutex_unlock(&pf->lock);
}

void fs_prefetch_stage(artifs_fs *fs, uint64_t lo, uint64_t hi, uint64_t want,
	const artifs_oid *first)
{
	artifs_prefetch *pf = fs->prefetch;
	struct pf_job j;

	if (!pf || hi <= lo)
		return;
	memset(&j, 0, sizeof(j));
	j.kind = JOB_STAGE;
	j.off = lo;
	j.len = hi - lo;
	j.want = want;
	j.first = *first;
	pthread_mutex_lock(&pf->lock);
	enqueue(pf, &j);
	pthread_mutex_unlock(&pf->lock);
}

void fs_prefetch_dir(artifs_fs *fs, const artifs_oid *tree)
{
	artifs_prefetch *pf = fs->prefetch;
	struct pf_job j;
	size_t slot;

	if (!pf || artifs_oid_is_zero(tree) || !fs->map_base)
		return;
	memcpy(&slot, tree->id, sizeof(slot));
	slot %= PF_RECENT;
	memset(&j, 0, sizeof(j));
	j.kind = JOB_DIR;
	j.tree = *tree;
	pthread_mutex_lock(&pf->lock);
	if (!artifs_oid_cmp(&pf->recent[slot], tree)) {
		/* queued already */
	} else if (pf->n + PF_WORKERS > PF_QUEUE) {
		fs->n_dir_dropped++;
	} else {
		fs->n_dir_jobs++;
		pf->recent[slot] = *tree;
		/*
		 * One job per worker, each a contiguous slice of the directory:
		 * neighbouring files lie next to each other in the store, so a
		 * slice is fetched in a few large reads.
		 */
		for (uint32_t k = 0; k < PF_WORKERS; k++) {
			j.part = k;
			enqueue(pf, &j);
		}
	}
	pthread_mutex_unlock(&pf->lock);
}

/*
 * Bring a run of a directory's chunks in: data.mdb's [lo, hi), map [d0,
 * d1), holding `want` bytes of chunks that own their pages (0: some do not),
 * the first one first_id.  Into a staging buffer where it can, else into
 * the page cache; skipped when it is in memory already or its first chunk
 * has been served (the readers are there already).
 */
static void pull_run(artifs_prefetch *pf, int fd, uint64_t lo, uint64_t hi, uint64_t want,
	const uint8_t *d0, const uint8_t *d1, const artifs_oid *first_id)
{
	artifs_fs *fs = pf->fs;

	if (artifs_resident_range(d0, (size_t)(d1 - d0)))
		return;
	if (!fs->stage || !want || hi - lo > FS_STAGE_SLOT)
		artifs_file_fetch(pf->null_fd, fd, lo, hi - lo);
	else
		fs_stage_load(fs, lo, hi, want, first_id);
}

/* Fetch the chunks of the small files in slice `part` of a directory. */
static void run_dir(artifs_prefetch *pf, int fd, const struct pf_job *j)
{
	artifs_fs *fs = pf->fs;
	artifs_tree_view tv;
	MDB_txn *txn;
	uint64_t asked = 0, budget = PF_DIR_BUDGET / PF_WORKERS, lo = 0, hi = 0, want = 0;
	uint64_t cap = fs->stage ? FS_STAGE_SLOT : PF_PIECE;
	const uint8_t *d0 = NULL, *d1 = NULL;	/* first chunk of the run, end of the last */
	artifs_oid first_id;			/* the run's first chunk */
	uint32_t first, last;
	int whole = 1;		/* only chunks of their own pages in [lo, hi): stage it */

	if (fs_txn_begin(fs, &txn))
		return;
	if (artifs_tree_load(&tv, fs->store, txn, &j->tree))
		goto done;
	if (fs->stage) {
		/*
		 * Staging buffers are few: fill them in the order files are
		 * read.  The workers take turns at groups of PF_GROUP files, so
		 * together they move through the directory front to back with
		 * several reads in flight, each looking up only its own files.
		 */
		first = 0;
		last = tv.count;
	} else {
		/* one contiguous slice per worker: few, large reads into the page cache */
		first = (uint32_t)((uint64_t)tv.count * j->part / PF_WORKERS);
		last = (uint32_t)((uint64_t)tv.count * (j->part + 1) / PF_WORKERS);
	}
	for (uint32_t i = first; i < last && asked < budget; i++) {
		artifs_tree_entry te;
		artifs_blob_view b;

		if (__atomic_load_n(&pf->stop, __ATOMIC_RELAXED))
			break;
		if (fs->stage && (i / PF_GROUP) % PF_WORKERS != j->part)
			continue;
		if (fs->stage && i % PF_GROUP == 0 && hi) {
			pull_run(pf, fd, lo, hi, whole ? want : 0, d0, d1, &first_id);
			hi = 0;		/* runs end with their group */
		}
		if (artifs_tree_entry_at(&tv, i, &te) || te.type != ARTIFS_T_FILE || !te.size ||
		    te.size > PF_FILE_MAX)
			continue;
		if (artifs_blob_load(&b, fs->store, txn, &te.id))
			continue;
		for (uint32_t c = 0; c < b.nchunks && asked < budget; c++) {
			const uint8_t *d;
			size_t dl;
			uint64_t a, e;

			if (artifs_blob_chunk(&d, &dl, fs->store, txn, &b, c, 0))
				break;
			/* staging checks a run at once (pull_run): two mincore() calls, not two a chunk */
			if (!fs->stage && artifs_resident_range(d, dl))
				continue;
			a = fs_map_off(fs, d) & ~(uint64_t)4095;
			e = fs_map_off(fs, d) + dl;
			asked += dl;
			if (hi && a >= lo && a <= hi + PF_GAP && e - lo <= cap) {
				if (e > hi) {
					hi = e;
					want += dl;
					d1 = d + dl;
				}
				whole &= fs_stage_whole(d, dl);
				continue;
			}
			if (hi)
				pull_run(pf, fd, lo, hi, whole ? want : 0, d0, d1, &first_id);
			lo = a;
			hi = e;
			want = dl;
			d0 = d;
			d1 = d + dl;
			artifs_blob_chunk_id(&b, c, &first_id);
			whole = fs_stage_whole(d, dl);
		}
	}
	if (hi)
		pull_run(pf, fd, lo, hi, whole ? want : 0, d0, d1, &first_id);
done:
	fs_txn_end(fs, txn);
}

struct big_ctx {
	artifs_prefetch *pf;
	int fd;
};

static void fetch_big(const void *p, size_t len, void *ctx)
{
	struct big_ctx *b = ctx;
	uint64_t off = fs_map_off(b->pf->fs, p) & ~(uint64_t)4095;

	artifs_file_fetch(b->pf->null_fd, b->fd, off, fs_map_off(b->pf->fs, p) + len - off);
}

/* Walk one slice of the object tables so their B-tree pages are in memory. */
static void run_index(artifs_prefetch *pf, int fd, const struct pf_job *j)
{
	struct big_ctx b = { pf, fd };
	struct timespec t0, t1;
	MDB_txn *txn;

	if (fs_txn_begin(pf->fs, &txn))
		return;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	artifs_store_warm(pf->fs->store, txn, (unsigned)j->off, (unsigned)j->len, fetch_big, &b);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fs_txn_end(pf->fs, txn);
	fs_log(7, "index slice %u-%u warmed in %.1f ms", (unsigned)j->off, (unsigned)j->len,
		(double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
}

static void warm_index(artifs_prefetch *pf);

/*
 * The next job for a worker, under the lock; 0 if none.  Jobs for readers
 * go before the slices of the index warm-up queued at mount, which take
 * 16 ms each when cold.
 */
static int take(artifs_prefetch *pf, struct pf_job *out)
{
	size_t k;

	if (!pf->n)
		return 0;
	for (k = 0; k < pf->n && pf->q[(pf->head + k) % PF_QUEUE].kind == JOB_INDEX; k++)
		;
	if (k == pf->n)
		k = 0;
	*out = pf->q[(pf->head + k) % PF_QUEUE];
	for (; k > 0; k--)
		pf->q[(pf->head + k) % PF_QUEUE] = pf->q[(pf->head + k - 1) % PF_QUEUE];
	pf->head = (pf->head + 1) % PF_QUEUE;
	pf->n--;
	return 1;
}

struct worker_arg {
	artifs_prefetch *pf;
	int fd;
};

static void *worker(void *arg)
{
	artifs_prefetch *pf = ((struct worker_arg *)arg)->pf;
	int fd = ((struct worker_arg *)arg)->fd;

	free(arg);
	pthread_mutex_lock(&pf->lock);
	for (;;) {
		struct pf_job j;

		while (!pf->stop && !take(pf, &j))
			pthread_cond_wait(&pf->cond, &pf->lock);
		if (pf->stop)
			break;
		pthread_mutex_unlock(&pf->lock);
		if (j.kind == JOB_RANGE)
			artifs_file_fetch(pf->null_fd, fd, j.off, j.len);
		else if (j.kind == JOB_STAGE)
			fs_stage_load(pf->fs, j.off, j.off + j.len, j.want, &j.first);
		else if (j.kind == JOB_INDEX)
			run_index(pf, fd, &j);
		else if (j.kind == JOB_WARM)
			warm_index(pf);
		else
			run_dir(pf, fd, &j);
		pthread_mutex_lock(&pf->lock);
	}
	pthread_mutex_unlock(&pf->lock);
	return NULL;
}

/*
 * The share of the store's used pages that are in memory, from mincore()
 * of PF_PROBES pages spread evenly over them.  A mincore() of the whole
 * map looks up every page: 28 ms for a 2 GiB store here, paid before the
 * first request could be served.
 */
#define PF_PROBES 512

static double resident_share(artifs_fs *fs)
{
	size_t used = 0, pages, in = 0, n;
	const uint8_t *base = (const uint8_t *)__atomic_load_n(&fs->map_base, __ATOMIC_ACQUIRE);

	artifs_store_usage(fs->store, NULL, &used);
	pages = used / 4096;
	if (!pages || !base)
		return 0;
	n = pages < PF_PROBES ? pages : PF_PROBES;
	for (size_t i = 0; i < n; i++)
		in += (size_t)artifs_resident(base + (pages * i / n) * 4096);
	return (double)in / (double)n;
}

/*
 * A cold store answers each first look-up with a few random 4 KiB reads of
 * B-tree pages.  The object tables' B-tree pages are small next to the data
 * (about 160 bytes per small file), so at mount they are read once, by all
 * workers at once, each walking a slice of the id space.  Skipped when they
 * are large (PF_INDEX_MAX); pages already in memory cost a walk only.  A
 * worker decides (JOB_WARM), so the session starts serving at once.
 */
static void warm_index(artifs_prefetch *pf)
{
	artifs_fs *fs = pf->fs;
	uint64_t bytes = 0;
	struct pf_job j;
	MDB_txn *txn;

	if (resident_share(fs) > 0.9)
		return;		/* the store is in memory already */
	if (fs_txn_begin(fs, &txn))
		return;
	artifs_store_index_bytes(fs->store, txn, &bytes);
	fs_txn_end(fs, txn);
	if (bytes > PF_INDEX_MAX) {
		fs_log(6, "index of %llu MiB not warmed at mount", (unsigned long long)(bytes >> 20));
		return;
	}
	memset(&j, 0, sizeof(j));
	j.kind = JOB_INDEX;
	pthread_mutex_lock(&pf->lock);
	for (unsigned k = 0; k < 2 * PF_WORKERS; k++) {
		j.off = 256 * k / (2 * PF_WORKERS);
		j.len = 256 * (k + 1) / (2 * PF_WORKERS);
		enqueue(pf, &j);
	}
	pthread_mutex_unlock(&pf->lock);
}

int fs_prefetch_start(artifs_fs *fs)
{
	artifs_prefetch *pf = calloc(1, sizeof(*pf));
	char *path = NULL;

	if (!pf || asprintf(&path, "%s/data.mdb", artifs_store_path(fs->store)) < 0) {
		free(pf);
		return -ENOMEM;
	}
	pf->fs = fs;
	fs_find_map(fs);
	pthread_mutex_init(&pf->lock, NULL);
	pthread_cond_init(&pf->cond, NULL);
	pf->null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	pf->fetch_fd = pf->null_fd >= 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
	for (int i = 0; pf->fetch_fd >= 0 && i < PF_WORKERS; i++) {
		struct worker_arg *wa = malloc(sizeof(*wa));

		if (!wa || (wa->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
			free(wa);
			break;
		}
		wa->pf = pf;
		pf->fds[pf->nth] = wa->fd;
		if (pthread_create(&pf->th[pf->nth], NULL, worker, wa)) {
			close(wa->fd);
			free(wa);
			break;
		}
		pf->nth++;
	}
	free(path);
	fs->prefetch = pf;
	if (pf->nth && fs->map_base) {
		struct pf_job j = { .kind = JOB_WARM };

		pthread_mutex_lock(&pf->lock);
		enqueue(pf, &j);
		pthread_mutex_unlock(&pf->lock);
	}
	return 0;
}

void fs_prefetch_stop(artifs_fs *fs)
{
	artifs_prefetch *pf = fs->prefetch;

	if (!pf)
		return;
	pthread_mutex_lock(&pf->lock);
	pf->stop = 1;
	pthread_cond_broadcast(&pf->cond);
	pthread_mutex_unlock(&pf->lock);
	for (int i = 0; i < pf->nth; i++) {
		pthread_join(pf->th[i], NULL);
		close(pf->fds[i]);
	}
	if (pf->fetch_fd >= 0)
		close(pf->fetch_fd);
	if (pf->null_fd >= 0)
		close(pf->null_fd);
	pthread_mutex_destroy(&pf->lock);
	pthread_cond_destroy(&pf->cond);
	free(pf);
	fs->prefetch = NULL;
}
