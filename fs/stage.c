/*
 * stage.c - cold chunks read past the page cache into reused buffers.
 *
 * A chunk served through the mount lands in the kernel's page cache of the
 * mounted file; read from data.mdb through the map, it first lands in the
 * page cache of data.mdb as well.  Cold, that is every byte allocated and
 * filled twice, and on a first read nobody touches the second copy again
 * (the mount's own cache answers the next read).  Dropping it afterwards
 * (madvise + fadvise) costs TLB shootdowns and page-cache churn of its own.
 *
 * So a chunk that is not in memory is read with O_DIRECT into one of a
 * fixed set of staging buffers, verified there and replied from there; the
 * buffers are allocated once and reused, so they are never fresh memory.
 * The prefetch workers fill the buffers in the order files are read, and
 * ahead of a sequential reader of a big file (ops.c, read_ahead), waiting
 * for a free one (backpressure).  A reader waits for a buffer being
 * filled with its chunk; a reader whose chunk nobody staged reads it into a
 * free buffer itself, or through the map when none is free: evicting a
 * staged buffer there would throw away what the readers need next, and
 * every miss would then cause the next (measured: whole runs of 50,000
 * files read one miss at a time, 4,500 files/s).  A buffer is free again
 * once every chunk it was filled for has been served; one left unused for
 * STALE_MS (its reader went elsewhere) goes to the next worker that waits.
 *
 * Chunks in memory already (a store just written, or warm) are served from
 * the map as before; so is everything when data.mdb cannot be opened with
 * O_DIRECT.  Staged bytes are always hashed before they are served, and a
 * mismatch falls back to the map, so a buffer filled from pages that have
 * since been reused can cost a retry, never wrong bytes.
 */
#include "fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define STALE_MS 200
#define HUGE ((size_t)2 << 20)
#define REGION ((size_t)FS_STAGE_SLOTS * FS_STAGE_SLOT)
#define IDLE_MS 10000	/* buffers all free this long: give their memory back */

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

enum { SLOT_FREE, SLOT_LOADING, SLOT_READY };

struct slot {
	int state;
	int pins;			/* readers replying from it */
	uint64_t lo, hi;		/* data.mdb bytes held: [lo, hi) */
	uint64_t want, used;		/* chunk bytes it was filled for, served so far */
	int64_t filled_ms;		/* when filled: the oldest unused goes first */
	uint8_t *buf;			/* FS_STAGE_SLOT bytes in st->region */
};

struct artifs_stage {
	int fd;				/* data.mdb, O_DIRECT */
	uint8_t *region;		/* every slot's buffer: REGION bytes, huge-page aligned */
	int touched;			/* region has memory behind it (since the last trim) */
	int off;			/* O_DIRECT reads fail here: everything through the map */
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* a slot became ready or free */
	int64_t last_ms;		/* when a slot was last filled */
	struct slot slots[FS_STAGE_SLOTS];
	uint64_t n_hits, n_loads, n_waits, n_evicted, n_fallbacks;
};

int fs_stage_start(artifs_fs *fs)
{
	artifs_stage *st;
	char *path = NULL;
	uintptr_t a;
	void *m;
	int fd;

	if (fs->lazy || getenv("ARTIFS_NO_STAGE"))
		return 0;	/* a remote's cache is written by this daemon: keep to the map */
	if (asprintf(&path, "%s/data.mdb", artifs_store_path(fs->store)) < 0)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	free(path);
	if (fd < 0) {
		fs_log(LOG_INFO, "cold chunks through the page cache: no O_DIRECT here (%s)",
			strerror(errno));
		return 0;
	}
	if (!(st = calloc(1, sizeof(*st)))) {
		close(fd);
		return -ENOMEM;
	}
	/*
	 * One region for all buffers, aligned to and advised for huge pages.
	 * The disk's request for a buffer of 4 KiB pages carries a segment
	 * per page, and this block device takes 254 segments: a 1 MiB read
	 * went as two requests, at 1.3-1.4 GB/s from one thread, against
	 * 3.6-4.1 GB/s into huge pages (one segment).  The region is only
	 * address space until a buffer is first filled.
	 */
	if ((m = mmap(NULL, REGION + HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			-1, 0)) == MAP_FAILED) {
		close(fd);
		free(st);
		return -ENOMEM;
	}
	a = ((uintptr_t)m + HUGE - 1) & ~(uintptr_t)(HUGE - 1);
	if (a > (uintptr_t)m)
		munmap(m, a - (uintptr_t)m);
	munmap((void *)(a + REGION), (uintptr_t)m + HUGE - a);
	st->region = (uint8_t *)a;
	madvise(st->region, REGION, MADV_HUGEPAGE);	/* best effort: 4 KiB pages work too */
	for (int i = 0; i < FS_STAGE_SLOTS; i++)
		st->slots[i].buf = st->region + (size_t)i * FS_STAGE_SLOT;
	st->fd = fd;
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->cond, NULL);
	fs->stage = st;
	return 0;
}

void fs_stage_stop(artifs_fs *fs)
{
	artifs_stage *st = fs->stage;

	if (!st)
		return;
	fs_log(LOG_DEBUG, "staging: %llu chunks served from buffers, %llu buffers filled, "
		"%llu waits, %llu evicted unused, %llu fallbacks to the map",
		(unsigned long long)st->n_hits, (unsigned long long)st->n_loads,
		(unsigned long long)st->n_waits, (unsigned long long)st->n_evicted,
		(unsigned long long)st->n_fallbacks);
	munmap(st->region, REGION);
	close(st->fd);
	pthread_mutex_destroy(&st->lock);
	pthread_cond_destroy(&st->cond);
	free(st);
	fs->stage = NULL;
}

/* The slot holding [lo, hi) of data.mdb, loading or ready; -1 if none.  Under the lock. */
static int find(artifs_stage *st, uint64_t lo, uint64_t hi)
{
	for (int i = 0; i < FS_STAGE_SLOTS; i++) {
		const struct slot *s = &st->slots[i];

		if (s->state != SLOT_FREE && s->lo <= lo && hi <= s->hi)
			return i;
	}
	return -1;
}

/* Does a slot (loading or ready) hold any of [lo, hi)?  Under the lock. */
static int overlaps(artifs_stage *st, uint64_t lo, uint64_t hi)
{
	for (int i = 0; i < FS_STAGE_SLOTS; i++) {
		const struct slot *s = &st->slots[i];

		if (s->state != SLOT_FREE && s->lo < hi && lo < s->hi)
			return 1;
	}
	return 0;
}

/*
 * A slot to fill: a free one, or else the ready one filled longest ago with
 * no reader in it, if that was at least min_age ms ago (min_age < 0: only
 * a free one).  -1 if none.  Under the lock.
 */
static int claim(artifs_stage *st, int64_t min_age)
{
	int best = -1;

	for (int i = 0; i < FS_STAGE_SLOTS; i++) {
		const struct slot *s = &st->slots[i];

		if (s->state == SLOT_FREE)
			return i;
		if (min_age >= 0 && s->state == SLOT_READY && !s->pins &&
		    (best < 0 || s->filled_ms < st->slots[best].filled_ms))
			best = i;
	}
	if (best < 0 || now_ms() - st->slots[best].filled_ms < min_age)
		return -1;
	st->n_evicted++;
	return best;
}

/* Fill slot i with [lo, hi): the lock is dropped for the read. */
static int fill(artifs_stage *st, int i, uint64_t lo, uint64_t hi, uint64_t want)
{
	struct slot *s = &st->slots[i];
	size_t len = (size_t)((hi - lo + 4095) & ~(uint64_t)4095);
	ssize_t k = -1;
	int err = 0;

	s->state = SLOT_LOADING;
	s->lo = lo;
	s->hi = hi;
	s->want = want;
	s->used = 0;
	s->pins = 0;
	st->touched = 1;
	pthread_mutex_unlock(&st->lock);
	k = pread(st->fd, s->buf, len, (off_t)lo);
	err = errno;
	pthread_mutex_lock(&st->lock);
	if (k < 0 && (err == EINVAL || err == EOPNOTSUPP) &&
	    !__atomic_load_n(&st->off, __ATOMIC_RELAXED)) {
		/* the file system took O_DIRECT at open but not for reads */
		__atomic_store_n(&st->off, 1, __ATOMIC_RELAXED);
		fs_log(LOG_INFO, "cold chunks through the page cache: no O_DIRECT reads here (%s)",
			strerror(err));
	}
	if (k < 0 || (uint64_t)k < hi - lo) {
		s->state = SLOT_FREE;	/* readers fall back to the map */
		pthread_cond_broadcast(&st->cond);
		return -1;
	}
	s->state = SLOT_READY;
	s->filled_ms = st->last_ms = now_ms();
	st->n_loads++;
	pthread_cond_broadcast(&st->cond);
	return 0;
}

int fs_stage_on(artifs_fs *fs)
{
	return fs->stage && !__atomic_load_n(&fs->stage->off, __ATOMIC_RELAXED);
}

void fs_stage_load(artifs_fs *fs, uint64_t lo, uint64_t hi, uint64_t want, const artifs_oid *first)
{
	artifs_stage *st = fs->stage;

	if (!st || __atomic_load_n(&st->off, __ATOMIC_RELAXED) || hi <= lo ||
	    hi - lo > FS_STAGE_SLOT || (lo & 4095))
		return;
	pthread_mutex_lock(&st->lock);
	/*
	 * Wait for a free buffer: the readers free them as they go.  One that
	 * has gone unused for STALE_MS was staged for a reader that went
	 * elsewhere: take it.  Stop when readers got to the run meanwhile and
	 * read it themselves (they have read its first chunk, or are reading
	 * one of its chunks into a buffer of their own): filling it now would
	 * leave those chunks unserved in a buffer, and the worker further
	 * behind.  It goes on to the next run.
	 */
	while (!overlaps(st, lo, hi) && !fs_verified(fs, first)) {
		struct timespec until;
		int i = claim(st, STALE_MS);

		if (i >= 0) {
			fill(st, i, lo, hi, want);
			break;
		}
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 50 * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&st->cond, &st->lock, &until);
	}
	pthread_mutex_unlock(&st->lock);
}

const uint8_t *fs_stage_get(artifs_fs *fs, const uint8_t *d, size_t dl, int resident,
	int may_fill, int *slot, int *missed)
{
	artifs_stage *st = fs->stage;
	uint64_t off;
	int i;

	*slot = -1;
	*missed = 0;
	/* in memory already (or not a chunk of its own): the map is cheaper */
	if (!st || __atomic_load_n(&st->off, __ATOMIC_RELAXED) || !fs_stage_whole(d, dl) ||
	    resident)
		return NULL;
	off = fs_map_off(fs, d);
	pthread_mutex_lock(&st->lock);
	for (;;) {
		if ((i = find(st, off, off + dl)) >= 0) {
			if (st->slots[i].state == SLOT_READY)
				break;
			st->n_waits++;
			pthread_cond_wait(&st->cond, &st->lock);
			continue;
		}
		if (!may_fill) {
			pthread_mutex_unlock(&st->lock);
			return NULL;
		}
		if ((i = claim(st, -1)) < 0 ||
		    (*missed = 1, fill(st, i, off & ~(uint64_t)4095, off + dl, dl))) {
			st->n_fallbacks++;
			pthread_mutex_unlock(&st->lock);
			return NULL;
		}
		break;
	}
	st->slots[i].pins++;
	st->n_hits++;
	pthread_mutex_unlock(&st->lock);
	*slot = i;
	return st->slots[i].buf + (off - st->slots[i].lo);
}

void fs_stage_put(artifs_fs *fs, int slot, size_t served)
{
	artifs_stage *st = fs->stage;
	struct slot *s;

	if (!st || slot < 0)
		return;
	s = &st->slots[slot];
	pthread_mutex_lock(&st->lock);
	s->pins--;
	s->used = served == SIZE_MAX ? s->want : s->used + served;
	if (!s->pins && s->used >= s->want) {
		s->state = SLOT_FREE;
		pthread_cond_broadcast(&st->cond);
	}
	pthread_mutex_unlock(&st->lock);
}

void fs_stage_trim(artifs_fs *fs)
{
	artifs_stage *st = fs->stage;
	int busy = 0;

	if (!st)
		return;
	pthread_mutex_lock(&st->lock);
	if (st->touched && now_ms() - st->last_ms >= IDLE_MS) {
		/* what is still staged now was staged for nobody */
		for (int i = 0; i < FS_STAGE_SLOTS; i++)
			if (st->slots[i].state == SLOT_LOADING || st->slots[i].pins)
				busy = 1;
		if (!busy) {
			for (int i = 0; i < FS_STAGE_SLOTS; i++)
				st->slots[i].state = SLOT_FREE;
			/* under the lock: no buffer is filled while its memory goes */
			madvise(st->region, REGION, MADV_DONTNEED);
			st->touched = 0;
		}
	}
	pthread_mutex_unlock(&st->lock);
}
