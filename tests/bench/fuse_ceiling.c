/*
 * fuse_ceiling.c - the fastest a FUSE file system can be on this kernel.
 *
 * A read-only libfuse low-level file system with the tree mount_bench.py
 * builds, at the depth artifs serves it (datasets/bench/main/large.bin,
 * datasets/bench/main/small/dNNN/fNNNNNN.bin), whose bytes come from one
 * buffer in memory: no store, no look-ups, no hashing.  It is mounted the
 * way artifs mounts as root (read-only with allow_other and without
 * default_permissions, 1 MiB reads,
 * no-open and no-opendir so the kernel keeps its page and listing caches,
 * readdirplus, infinite timeouts, the same read-ahead on the bdi, a
 * multithreaded loop), so what it reaches is what the kernel's FUSE path
 * allows any daemon, and the gap between it and artifs is artifs's own
 * cost.
 *
 * usage: fuse_ceiling MOUNTPOINT LARGE_BYTES NSMALL SMALL_BYTES [READAHEAD_KB [LARGE_NAME]]
 *        (stays in the foreground; unmount with fusermount3 -u; the large
 *        file is large.bin unless named)
 */
#define FUSE_USE_VERSION 314

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NDIRS 100
#define BUF (2u << 20)			/* replies are windows into this */
#define FOREVER (365.0 * 86400.0)

/* The tree under MOUNT/datasets/bench/main, as deep as artifs's paths. */
enum {
	INO_ROOT = 1, INO_DATASETS, INO_BENCH, INO_MAIN, INO_LARGE, INO_SMALL,
	INO_DIR0 = 8, INO_FILE0 = 1000
};

static uint64_t large_bytes, small_bytes;
static uint32_t nsmall;
static unsigned int readahead_kb = 2048;
static const char *mountpoint, *large_name = "large.bin";
static unsigned char *data;

static int is_dir(fuse_ino_t ino)
{
	return (ino >= INO_ROOT && ino <= INO_MAIN) || ino == INO_SMALL ||
		(ino >= INO_DIR0 && ino < INO_DIR0 + NDIRS);
}

static int ino_stat(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	/*
	 * What a reader gets back looks like artifs's: 64-bit inode numbers
	 * and a commit's time.  Zero times and small numbers are cheaper for
	 * the reader itself (Python's os.lstat builds st_*_ns with bignum
	 * arithmetic), which made this ceiling 10% faster than artifs at warm
	 * lstat with no request reaching either daemon.
	 */
	st->st_ino = (ino_t)(((uint64_t)ino * 0x9e3779b97f4a7c15ull) | (1ull << 62));
	st->st_atime = st->st_mtime = st->st_ctime = 1795957682;
	st->st_nlink = 1;
	if (is_dir(ino)) {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		return 0;
	}
	if (ino == INO_LARGE) {
		st->st_mode = S_IFREG | 0444;
		st->st_size = (off_t)large_bytes;
		return 0;
	}
	if (ino >= INO_FILE0 && ino < INO_FILE0 + nsmall) {
		st->st_mode = S_IFREG | 0444;
		st->st_size = (off_t)small_bytes;
		return 0;
	}
	return -1;
}

/* Child k of directory ino, sorted by name: its name and inode; 0 past the end. */
static fuse_ino_t child(fuse_ino_t ino, uint32_t k, char *name, size_t size)
{
	static const char *const fixed[] = { [INO_ROOT] = "datasets", [INO_DATASETS] = "bench",
		[INO_BENCH] = "main" };

	if (ino >= INO_ROOT && ino <= INO_BENCH) {
		if (k)
			return 0;
		snprintf(name, size, "%s", fixed[ino]);
		return ino + 1;
	}
	if (ino == INO_MAIN) {
		if (k > 1)
			return 0;
		snprintf(name, size, "%s", k ? "small" : large_name);
		return k ? INO_SMALL : INO_LARGE;
	}
	if (ino == INO_SMALL) {
		if (k >= NDIRS)
			return 0;
		snprintf(name, size, "d%03u", k);
		return INO_DIR0 + k;
	}
	if (ino >= INO_DIR0 && ino < INO_DIR0 + NDIRS) {
		uint64_t i = (uint64_t)(ino - INO_DIR0) + (uint64_t)k * NDIRS;

		if (i >= nsmall)
			return 0;
		snprintf(name, size, "f%06u.bin", (unsigned int)i);
		return INO_FILE0 + i;
	}
	return 0;
}

static void fill_entry(fuse_ino_t ino, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	ino_stat(ino, &e->attr);
	e->ino = ino;
	e->attr_timeout = e->entry_timeout = FOREVER;
}

static void raise_readahead(void);

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	static int ra_done;
	struct fuse_entry_param e;
	fuse_ino_t ino = 0;
	unsigned int d, i;
	char tail;

	/* the kernel sets read-ahead from INIT: raise it at the first request after */
	if (!__atomic_exchange_n(&ra_done, 1, __ATOMIC_ACQ_REL))
		raise_readahead();
	if (parent == INO_ROOT && !strcmp(name, "datasets"))
		ino = INO_DATASETS;
	else if (parent == INO_DATASETS && !strcmp(name, "bench"))
		ino = INO_BENCH;
	else if (parent == INO_BENCH && !strcmp(name, "main"))
		ino = INO_MAIN;
	else if (parent == INO_MAIN && !strcmp(name, large_name))
		ino = INO_LARGE;
	else if (parent == INO_MAIN && !strcmp(name, "small"))
		ino = INO_SMALL;
	else if (parent == INO_SMALL && sscanf(name, "d%3u%c", &d, &tail) == 1 && d < NDIRS)
		ino = INO_DIR0 + d;
	else if (parent >= INO_DIR0 && parent < INO_DIR0 + NDIRS &&
	    sscanf(name, "f%6u.bi%c", &i, &tail) == 2 && tail == 'n' && i < nsmall &&
	    i % NDIRS == parent - INO_DIR0)
		ino = INO_FILE0 + i;
	if (!ino) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_entry(ino, &e);
	fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	if (ino_stat(ino, &st))
		fuse_reply_err(req, ENOENT);
	else
		fuse_reply_attr(req, &st, FOREVER);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, ENOSYS);	/* no-open: the kernel keeps the cache */
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	struct fuse_file_info *fi)
{
	uint64_t len = ino == INO_LARGE ? large_bytes : small_bytes;
	struct iovec iov;

	(void)fi;
	if ((uint64_t)off >= len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > len - (uint64_t)off)
		size = (size_t)(len - (uint64_t)off);
	if (size > BUF / 2)
		size = BUF / 2;
	iov.iov_base = data + (((uint64_t)off + ino * 4096) % (BUF / 2));
	iov.iov_len = size;
	fuse_reply_iov(req, &iov, 1);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, ENOSYS);	/* no-opendir: the kernel caches listings */
}

/* readdir and readdirplus (as artifs: entries come with their attributes). */
static void list(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, int plus)
{
	char *buf = malloc(size), name[32];
	size_t used = 0;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (uint32_t k = (uint32_t)off;; k++) {
		struct fuse_entry_param e;
		fuse_ino_t c = child(ino, k, name, sizeof(name));
		size_t n;

		if (!c)
			break;
		fill_entry(c, &e);
		n = plus ? fuse_add_direntry_plus(req, buf + used, size - used, name, &e, k + 1)
			: fuse_add_direntry(req, buf + used, size - used, name, &e.attr, k + 1);
		if (n > size - used)
			break;		/* full: the kernel asks again from k */
		used += n;
	}
	fuse_reply_buf(req, buf, used);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	struct fuse_file_info *fi)
{
	(void)fi;
	list(req, ino, size, off, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
	struct fuse_file_info *fi)
{
	(void)fi;
	list(req, ino, size, off, 1);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	conn->want &= ~FUSE_CAP_SPLICE_WRITE;
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.open = op_open,
	.read = op_read,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
};

/*
 * Same as artifs: raise read-ahead on the mount's bdi.  Its major:minor
 * comes from mountinfo: a stat() of the mount point would be a request to
 * this very daemon before its loop runs.
 */
static void raise_readahead(void)
{
	char real[4096], line[8192], path[128], dev[64] = "", mp[4096];
	FILE *f;

	if (!realpath(mountpoint, real) || !(f = fopen("/proc/self/mountinfo", "r")))
		return;
	while (fgets(line, sizeof(line), f)) {
		char d[64];

		if (sscanf(line, "%*s %*s %63s %*s %4095s", d, mp) == 2 && !strcmp(mp, real))
			snprintf(dev, sizeof(dev), "%s", d);	/* the last one is on top */
	}
	fclose(f);
	if (!dev[0])
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	if ((f = fopen(path, "w"))) {
		fprintf(f, "%u\n", readahead_kb);
		fclose(f);
	}
}

int main(int argc, char **argv)
{
	static char o[] = "-o", ro[] = "ro,allow_other,fsname=fuse_ceiling";
	char *fargv[] = { argv[0], o, ro, NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	struct fuse_loop_config *cfg;
	struct fuse_session *se;
	uint64_t x = 88172645463325252ull;
	int rc;

	if (argc < 5) {
		fprintf(stderr, "usage: %s MOUNTPOINT LARGE_BYTES NSMALL SMALL_BYTES "
			"[READAHEAD_KB [LARGE_NAME]]\n", argv[0]);
		return 2;
	}
	mountpoint = argv[1];
	large_bytes = strtoull(argv[2], NULL, 10);
	nsmall = (uint32_t)strtoul(argv[3], NULL, 10);
	small_bytes = strtoull(argv[4], NULL, 10);
	if (argc > 5)
		readahead_kb = (unsigned int)strtoul(argv[5], NULL, 10);
	if (argc > 6 && argv[6][0] && strlen(argv[6]) < 24 && !strchr(argv[6], '/'))
		large_name = argv[6];
	if (!(data = malloc(BUF)))
		return 1;
	for (size_t i = 0; i < BUF; i += 8) {	/* xorshift: bytes that do not compress */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(data + i, &x, 8);
	}
	if (!(se = fuse_session_new(&args, &ops, sizeof(ops), NULL)))
		return 1;
	if (fuse_set_signal_handlers(se) || fuse_session_mount(se, mountpoint)) {
		fuse_session_destroy(se);
		return 1;
	}
	cfg = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(cfg, 1);
	fuse_loop_cfg_set_idle_threads(cfg, 16);	/* as artifs */
	fuse_loop_cfg_set_max_threads(cfg, 64);
	rc = fuse_session_loop_mt(se, cfg);
	fuse_loop_cfg_destroy(cfg);
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	fuse_session_destroy(se);
	free(data);
	return rc < 0 ? 1 : 0;
}
