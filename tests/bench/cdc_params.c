/*
 * cdc_params.c - measure the FastCDC size candidates on seeded synthetic data.
 *
 * usage: cdc_params [--dir DIR] [--edit-mib N] [--big-mib N] [--reads N]
 *
 * For each candidate (avg 64 KiB .. 2 MiB, min = avg/4, max = avg*4):
 *   a. dedupe after an edit: an N MiB (default 256) model-like file, then
 *      (v2 insert) the same with 1 MiB inserted in the middle (and, to show
 *      the spread, at 16 random offsets) and (v2 scatter) the same with ~3% of
 *      its bytes overwritten in 20 places (4 trials); reported as the bytes of v2 chunks
 *      not present in v1 (each new chunk counted once);
 *   b. throughput of the chunker alone and of chunker + XXH3-128 (best of 3);
 *   c. a 1 GiB model-like file written into a fresh store through the writer
 *      API (best of 2), then read back warm through the manifest (index/blob.h), in
 *      order and at random 4 KiB offsets, chunk ids verified as readers do;
 *      chunks, manifest size and store pages used;
 *   d. small files: bytes stored again after a 1-byte change in the middle of
 *      random files of 64 KiB .. 16 MiB (a file below min is one chunk).
 *
 * The writer has no option for chunk sizes: it cuts with artifs_cdc_default(),
 * read once by artifs_writer_new().  This program re-initialises that object
 * for each candidate (it is a non-const static in chunk.c) and restores it at
 * the end; nothing else may use the library meanwhile.
 *
 * Not a ctest test: it writes several GiB and takes a few minutes.  Stores go
 * to a fresh directory under --dir, $TMPDIR or /tmp, removed afterwards.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blob.h"
#include "chunk.h"
#include "error.h"
#include "oid.h"
#include "oidset.h"
#include "store.h"
#include "writer.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static const size_t candidates[] = { 64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, 1 * MiB, 2 * MiB };
#define NCAND (sizeof(candidates) / sizeof(candidates[0]))

static void die(const char *what, int rc)
{
	fprintf(stderr, "cdc_params: %s: %s\n", what, rc ? artifs_error_last() : strerror(errno));
	exit(1);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p)
		die("malloc", 0);
	return p;
}

/* ---- seeded data ---- */

static uint64_t rnd(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void fill_random(uint8_t *p, size_t n, uint64_t *s)
{
	size_t i;

	for (i = 0; i + 8 <= n; i += 8) {
		uint64_t v = rnd(s);
		memcpy(p + i, &v, 8);
	}
	for (; i < n; i++)
		p[i] = (uint8_t)rnd(s);
}

/* log-uniform in [lo, hi) */
static size_t log_uniform(uint64_t *s, size_t lo, size_t hi)
{
	double u = (double)(rnd(s) >> 11) / 9007199254740992.0;

	return (size_t)((double)lo * pow((double)hi / lo, u));
}

enum { K_RANDOM, K_COPY, K_BF16, K_ZERO, K_CONST, K_N };
static const char *const kind_name[K_N] = { "random", "copy of an earlier tensor",
	"bf16-like (narrow exponent byte)", "zeros", "constant 4-byte pattern" };

/*
 * A model-like file: back-to-back "tensors", 30% small (1-64 KiB), 70% large
 * (256 KiB-8 MiB), sizes log-uniform; 62% random bytes (trained weights), 15% an
 * exact copy of an earlier tensor (tied or repeated layers), 10% bf16-like
 * (random low byte, high byte from 4 values), 8% zeros, 5% a repeated 4-byte
 * value (norm weights at 1.0).  bytes[k] gets the bytes of each kind.
 */
static void gen_model(uint8_t *buf, size_t n, uint64_t seed, size_t bytes[K_N])
{
	enum { MAXT = 1 << 14 };
	static size_t toff[MAXT], tlen[MAXT];
	size_t nt = 0, pos = 0;
	uint64_t s = seed;

	memset(bytes, 0, K_N * sizeof(bytes[0]));
	while (pos < n) {
		size_t len = rnd(&s) % 100 < 30 ? log_uniform(&s, KiB, 64 * KiB)
						: log_uniform(&s, 256 * KiB, 8 * MiB);
		unsigned u = (unsigned)(rnd(&s) % 100);
		int kind = u < 62 ? K_RANDOM : u < 77 ? K_COPY : u < 87 ? K_BF16 : u < 95 ? K_ZERO : K_CONST;
		uint8_t *p = buf + pos;

		if (kind == K_COPY && !nt)
			kind = K_RANDOM;
		if (kind == K_COPY) {
			size_t t = (size_t)(rnd(&s) % nt);
			len = tlen[t];
			if (len > n - pos)
				len = n - pos;
			memcpy(p, buf + toff[t], len);
		} else {
			if (len > n - pos)
				len = n - pos;
			if (kind == K_RANDOM) {
				fill_random(p, len, &s);
			} else if (kind == K_BF16) {
				fill_random(p, len, &s);
				for (size_t i = 1; i < len; i += 2)
					p[i] = (uint8_t)(0x3c + (p[i] & 3));
			} else if (kind == K_ZERO) {
				memset(p, 0, len);
			} else {
				static const uint8_t one[4] = { 0x00, 0x00, 0x80, 0x3f };
				for (size_t i = 0; i < len; i++)
					p[i] = one[i & 3];
			}
			if (nt < MAXT) {
				toff[nt] = pos;
				tlen[nt++] = len;
			}
		}
		bytes[kind] += len;
		pos += len;
	}
}

/* ---- chunk sets (in memory) ---- */

/*
 * Cut buf with p; add every chunk id to `set`.  Returns the bytes of chunks
 * that were not in the set yet (each counted once); *nchunks gets the count.
 */
static uint64_t chunk_into(artifs_oidset *set, const artifs_cdc_params *p, const uint8_t *buf,
	size_t len, size_t *nchunks)
{
	uint64_t newbytes = 0;
	size_t pos = 0, n, k = 0;

	while (pos < len) {
		artifs_oid id;
		n = artifs_cdc_next(p, buf + pos, len - pos, 1);
		artifs_oid_hash(&id, buf + pos, n);
		int rc = artifs_oidset_add(set, &id);
		if (rc < 0)
			die("oidset", 0);
		if (rc)
			newbytes += n;
		pos += n;
		k++;
	}
	if (nchunks)
		*nchunks = k;
	return newbytes;
}

/* New bytes stored for v2 given v1 (both whole buffers). */
static uint64_t edit_cost(const artifs_cdc_params *p, const uint8_t *v1, size_t n1,
	const uint8_t *v2, size_t n2)
{
	artifs_oidset set;
	uint64_t r;

	artifs_oidset_init(&set);
	chunk_into(&set, p, v1, n1, NULL);
	r = chunk_into(&set, p, v2, n2, NULL);
	artifs_oidset_release(&set);
	return r;
}

/* Bytes of v2's chunks that are not in v1set (each new chunk counted once). */
static uint64_t new_bytes(const artifs_oidset *v1set, const artifs_cdc_params *p, const uint8_t *v2,
	size_t len)
{
	artifs_oidset seen;
	uint64_t r = 0;
	size_t pos = 0, n;

	artifs_oidset_init(&seen);
	while (pos < len) {
		artifs_oid id;
		n = artifs_cdc_next(p, v2 + pos, len - pos, 1);
		artifs_oid_hash(&id, v2 + pos, n);
		if (!artifs_oidset_has(v1set, &id)) {
			int rc = artifs_oidset_add(&seen, &id);
			if (rc < 0)
				die("oidset", 0);
			if (rc)
				r += n;
		}
		pos += n;
	}
	artifs_oidset_release(&seen);
	return r;
}

static volatile uint64_t sink;

static double throughput(const artifs_cdc_params *p, const uint8_t *buf, size_t len, int hash)
{
	double best = 1e9;

	for (int rep = 0; rep < 3; rep++) {
		double t = now();
		size_t pos = 0, n;
		uint64_t x = 0;
		while (pos < len) {
			n = artifs_cdc_next(p, buf + pos, len - pos, 1);
			if (hash) {
				artifs_oid id;
				artifs_oid_hash(&id, buf + pos, n);
				x += id.id[0];
			}
			x += n;
			pos += n;
		}
		sink = x;
		t = now() - t;
		if (t < best)
			best = t;
	}
	return len / best / 1e6;
}

/* ---- the store round trip ---- */

struct rt {
	size_t chunks, manifest;
	uint64_t stored_chunk_bytes, store_used;
	double write_s, seq_verify_gbs, seq_noverify_gbs, rand_us;
};

static char *path_join(const char *a, const char *b)
{
	char *p = xmalloc(strlen(a) + strlen(b) + 2);

	sprintf(p, "%s/%s", a, b);
	return p;
}

static void rm_store(const char *dir)
{
	static const char *const files[] = { "data.mdb", "lock.mdb", "artifs.lock" };

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char *f = path_join(dir, files[i]);
		unlink(f);
		free(f);
	}
	rmdir(dir);
}

/* Read the whole file in order; copies every chunk as a reader would. */
static double read_seq(artifs_store *s, const artifs_oid *blob, uint8_t *out, int verify)
{
	double best = 1e9;
	uint64_t size = 0;

	for (int rep = 0; rep < 4; rep++) {	/* the first pass maps the pages in */
		MDB_txn *txn;
		artifs_blob_view b;
		double t = now();
		int rc;
		if ((rc = artifs_rtxn_begin(s, &txn)) || (rc = artifs_blob_load(&b, s, txn, blob)))
			die("read", rc);
		for (uint32_t i = 0; i < b.nchunks; i++) {
			const uint8_t *d;
			size_t len;
			if ((rc = artifs_blob_chunk(&d, &len, s, txn, &b, i, verify)))
				die("read chunk", rc);
			memcpy(out, d, len);	/* out holds max_size */
		}
		size = b.size;
		mdb_txn_abort(txn);
		t = now() - t;
		if (rep && t < best)
			best = t;
	}
	return size / best / 1e9;
}

/* Random 4 KiB reads, each fetching and verifying its whole chunk: us/read. */
static double read_random(artifs_store *s, const artifs_oid *blob, int nreads)
{
	MDB_txn *txn;
	artifs_blob_view b;
	uint64_t seed = 77;
	uint8_t page[4096];
	double t;
	int rc;

	if ((rc = artifs_rtxn_begin(s, &txn)) || (rc = artifs_blob_load(&b, s, txn, blob)))
		die("read", rc);
	t = now();
	for (int r = 0; r < nreads; r++) {
		uint64_t off = rnd(&seed) % (b.size - sizeof(page));
		uint32_t i = artifs_blob_find(&b, off);
		const uint8_t *d;
		size_t len, at, n;
		if ((rc = artifs_blob_chunk(&d, &len, s, txn, &b, i, 1)))
			die("read chunk", rc);
		at = off - artifs_blob_chunk_off(&b, i);
		n = len - at < sizeof(page) ? len - at : sizeof(page);
		memcpy(page, d + at, n);	/* a read crossing a chunk end stops there */
		sink += page[0];
	}
	t = now() - t;
	mdb_txn_abort(txn);
	return t / nreads * 1e6;
}

static void round_trip(struct rt *r, const char *dir, const artifs_cdc_params *want,
	const uint8_t *data, size_t len, uint8_t *out, int nreads)
{
	artifs_store_opts so = ARTIFS_STORE_OPTS_INIT;
	artifs_cdc_params *dflt = (artifs_cdc_params *)artifs_cdc_default();
	artifs_store *s;
	artifs_writer *w;
	artifs_oid blob;
	uint64_t size;
	double t;
	int rc;

	if ((rc = artifs_cdc_params_init(dflt, want->min_size, want->avg_size, want->max_size)))
		die("params", rc);
	so.initial_mapsize = len * 3;
	r->write_s = 1e9;
	for (int rep = 0; rep < 2; rep++) {	/* best of 2, each into a fresh store */
		if (rep) {
			artifs_store_free(s);
			rm_store(dir);
		}
		if ((rc = artifs_store_init(dir, &so)) || (rc = artifs_store_open(&s, dir, &so)))
			die("store", rc);
		t = now();
		if ((rc = artifs_writer_new(&w, s)) || (rc = artifs_writer_file_begin(w)))
			die("writer", rc);
		for (size_t pos = 0; pos < len; pos += 8 * MiB) {
			size_t n = len - pos < 8 * MiB ? len - pos : 8 * MiB;
			if ((rc = artifs_writer_file_write(w, data + pos, n)))
				die("write", rc);
		}
		if ((rc = artifs_writer_file_end(w, &blob, &size)) ||
		    (rc = artifs_writer_finish(w, NULL, NULL)))
			die("write", rc);
		t = now() - t;
		if (t < r->write_s)
			r->write_s = t;
		r->chunks = artifs_writer_get_stats(w)->chunks_new + artifs_writer_get_stats(w)->chunks_dedup;
		r->stored_chunk_bytes = artifs_writer_get_stats(w)->chunk_bytes_new;
		r->manifest = ARTIFS_BLOB_HDRSZ + r->chunks * ARTIFS_BLOB_ENTSZ;
		artifs_writer_free(w);
		artifs_store_usage(s, NULL, &r->store_used);
	}

	r->seq_verify_gbs = read_seq(s, &blob, out, 1);
	r->seq_noverify_gbs = read_seq(s, &blob, out, 0);
	r->rand_us = read_random(s, &blob, nreads);
	artifs_store_free(s);
	rm_store(dir);
}

/* ---- main ---- */

static void usage(void)
{
	fprintf(stderr, "usage: cdc_params [--dir DIR] [--edit-mib N] [--big-mib N] [--reads N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *base = getenv("TMPDIR");
	size_t edit_n = 256 * MiB, big_n = 1024 * MiB, kinds[K_N];
	int nreads = 4000;
	artifs_cdc_params cand[NCAND];
	double t0 = now();

	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		if (!strcmp(argv[i], "--dir"))
			base = argv[++i];
		else if (!strcmp(argv[i], "--edit-mib"))
			edit_n = strtoull(argv[++i], NULL, 10) * MiB;
		else if (!strcmp(argv[i], "--big-mib"))
			big_n = strtoull(argv[++i], NULL, 10) * MiB;
		else if (!strcmp(argv[i], "--reads"))
			nreads = atoi(argv[++i]);
		else
			usage();
	}
	if (!base || !*base)
		base = "/tmp";
	if (edit_n < 64 * MiB || big_n < 64 * MiB || nreads < 1)
		usage();
	for (size_t c = 0; c < NCAND; c++) {
		int rc = artifs_cdc_params_init(&cand[c], candidates[c] / 4, candidates[c], candidates[c] * 4);
		if (rc)
			die("params", rc);
	}
	const artifs_cdc_params saved = *artifs_cdc_default();

	/* ---- a, b: the edit file ---- */
	enum { NPOS = 16, NSCAT = 4 };
	size_t ins = 1 * MiB, mid = edit_n / 2;
	uint8_t *v1 = xmalloc(edit_n), *v2 = xmalloc(edit_n + ins);
	uint64_t seed = 1, changed = 0;
	artifs_oidset v1set[NCAND];
	size_t n1[NCAND];
	uint64_t s1[NCAND], new_mid[NCAND], new_any[NCAND], new_max[NCAND], new_scat[NCAND];

	gen_model(v1, edit_n, 20260101, kinds);
	for (size_t c = 0; c < NCAND; c++) {
		artifs_oidset_init(&v1set[c]);
		s1[c] = chunk_into(&v1set[c], &cand[c], v1, edit_n, &n1[c]);
		new_any[c] = new_max[c] = 0;
	}
	/* v2 insert: 1 MiB of new bytes in the middle, then at NPOS other places */
	for (int k = 0; k <= NPOS; k++) {
		size_t at = k ? (size_t)(rnd(&seed) % edit_n) : mid;
		memcpy(v2, v1, at);
		fill_random(v2 + at, ins, &seed);
		memcpy(v2 + at + ins, v1 + at, edit_n - at);
		for (size_t c = 0; c < NCAND; c++) {
			uint64_t b = new_bytes(&v1set[c], &cand[c], v2, edit_n + ins);
			if (k) {
				new_any[c] += b;
				if (b > new_max[c])
					new_max[c] = b;
			} else
				new_mid[c] = b;
		}
	}
	/* v2 scatter: 20 places, one in each 20th of the file, ~3% of the bytes;
	 * NSCAT independent trials */
	for (size_t c = 0; c < NCAND; c++)
		new_scat[c] = 0;
	seed = 2;
	for (int k = 0; k < NSCAT; k++) {
		size_t seg = edit_n / 20, each = edit_n * 3 / 100 / 20;
		memcpy(v2, v1, edit_n);
		changed = 0;
		for (int j = 0; j < 20; j++) {
			size_t at = j * seg + (size_t)(rnd(&seed) % (seg - each));
			fill_random(v2 + at, each, &seed);
			changed += each;
		}
		for (size_t c = 0; c < NCAND; c++)
			new_scat[c] += new_bytes(&v1set[c], &cand[c], v2, edit_n);
	}
	for (size_t c = 0; c < NCAND; c++)
		artifs_oidset_release(&v1set[c]);
	free(v2);

	printf("# cdc_params: FastCDC candidates, min = avg/4, max = avg*4\n\n");
	printf("edit file: %zu MiB model-like:", edit_n / MiB);
	for (int k = 0; k < K_N; k++)
		printf(" %s %.0f%%%s", kind_name[k], 100.0 * kinds[k] / edit_n, k + 1 < K_N ? "," : "\n");
	printf("v2 insert: %zu MiB of new bytes at %zu MiB, and at %d random offsets (mean, max);\n",
		ins / MiB, mid / MiB, NPOS);
	printf("v2 scatter: %.2f MiB (%.1f%%) overwritten in place in 20 places (mean of %d trials)\n\n",
		changed / (double)MiB, 100.0 * changed / edit_n, NSCAT);

	printf("## a, b: dedupe after an edit and chunking throughput (best of 3, one thread)\n\n");
	printf("| avg | min | max | v1 chunks | manifest KiB | v1 stored MiB "
		"| v2 insert (middle): new MiB | v2 insert (%d offsets): mean / max new MiB "
		"| v2 scatter: new MiB | chunk MB/s | chunk+XXH3 MB/s |\n", NPOS);
	printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
	for (size_t c = 0; c < NCAND; c++) {
		const artifs_cdc_params *p = &cand[c];
		double tc = throughput(p, v1, edit_n, 0), th = throughput(p, v1, edit_n, 1);
		printf("| %zu K | %zu K | %zu K | %zu | %.1f | %.1f | %.2f | %.2f / %.2f | %.2f | %.0f | %.0f |\n",
			p->avg_size / KiB, p->min_size / KiB, p->max_size / KiB, n1[c],
			(ARTIFS_BLOB_HDRSZ + n1[c] * ARTIFS_BLOB_ENTSZ) / (double)KiB, s1[c] / (double)MiB,
			new_mid[c] / (double)MiB, new_any[c] / (double)NPOS / MiB, new_max[c] / (double)MiB,
			new_scat[c] / (double)NSCAT / MiB, tc, th);
		fflush(stdout);
	}

	/* ---- d: small files ---- */
	static const size_t fsizes[] = { 64 * KiB, 256 * KiB, 1 * MiB, 4 * MiB, 16 * MiB };
	enum { NF = sizeof(fsizes) / sizeof(fsizes[0]), NSAMPLE = 16 };
	printf("\n## d: KiB stored again after a 1-byte change in the middle of a random file (mean of %d files)\n\n",
		NSAMPLE);
	printf("| avg |");
	for (int f = 0; f < NF; f++)
		printf(" %zu KiB file |", fsizes[f] / KiB);
	printf("\n|---|");
	for (int f = 0; f < NF; f++)
		printf("---|");
	printf("\n");
	for (size_t c = 0; c < NCAND; c++) {
		printf("| %zu K |", cand[c].avg_size / KiB);
		for (int f = 0; f < NF; f++) {
			size_t n = fsizes[f];
			uint8_t *a = v1, *b = xmalloc(n);	/* v1 is big enough */
			double sum = 0;
			for (int k = 0; k < NSAMPLE; k++) {
				uint64_t sd = 1000 + k;
				fill_random(a, n, &sd);
				memcpy(b, a, n);
				b[n / 2 + k] ^= 0x5a;
				sum += edit_cost(&cand[c], a, n, b, n);
			}
			free(b);
			printf(" %.0f |", sum / NSAMPLE / KiB);
		}
		printf("\n");
		fflush(stdout);
	}
	free(v1);

	/* ---- c: store round trip ---- */
	uint8_t *big = xmalloc(big_n), *out = xmalloc(8 * MiB + 1);
	char *tmpl = path_join(base, "artifs-cdc-XXXXXX");

	if (!mkdtemp(tmpl))
		die("mkdtemp", 0);
	gen_model(big, big_n, 20260202, kinds);
	printf("\n## c: a %zu MiB model-like file through the writer and back (warm page cache)\n\n",
		big_n / MiB);
	printf("write: chunk, hash, look up and store through the writer, LMDB commits synced, best of 2;\n");
	printf("sequential: every chunk fetched, verified (XXH3-128) and copied out, best of 3;\n");
	printf("random: %d reads of 4 KiB at random offsets, each verifying its whole chunk.\n\n", nreads);
	printf("| avg | chunks | chunks/GiB | manifest KiB | unique chunk MiB | store MiB | store overhead "
		"| write s | write MB/s | seq read GB/s (verify) | seq read GB/s (no verify) "
		"| random 4K read us |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
	{
		/* warm-up, not shown: the first store of the process pays for
		 * faulting in the writer's arena and the map */
		struct rt r;
		char *dir = path_join(tmpl, "store");
		round_trip(&r, dir, &cand[0], big, big_n / 4, out, 10);
		free(dir);
	}
	for (size_t c = 0; c < NCAND; c++) {
		struct rt r;
		char *dir = path_join(tmpl, "store");
		round_trip(&r, dir, &cand[c], big, big_n, out, nreads);
		free(dir);
		printf("| %zu K | %zu | %.0f | %.1f | %.1f | %.1f | %.2f%% | %.2f | %.0f | %.2f | %.2f | %.0f |\n",
			cand[c].avg_size / KiB, r.chunks, r.chunks * (double)(1 << 30) / big_n,
			r.manifest / (double)KiB, r.stored_chunk_bytes / (double)MiB,
			r.store_used / (double)MiB,
			100.0 * ((double)r.store_used - r.stored_chunk_bytes) / r.stored_chunk_bytes,
			r.write_s, big_n / r.write_s / 1e6, r.seq_verify_gbs, r.seq_noverify_gbs, r.rand_us);
		fflush(stdout);
	}
	rmdir(tmpl);
	free(tmpl);
	free(big);
	free(out);
	{
		artifs_cdc_params *dflt = (artifs_cdc_params *)artifs_cdc_default();
		*dflt = saved;
	}
	printf("\ntotal %.0f s\n", now() - t0);
	return 0;
}
