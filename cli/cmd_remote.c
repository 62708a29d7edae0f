/*
 * cmd_remote.c - 'artifs remote', 'push', 'pull' and 'clone': sync a store
 * with a directory (file:///PATH) or an S3-compatible bucket
 * (s3://BUCKET/PREFIX).  Remotes are named in the store's config as
 * remote.NAME.url (and endpoint, region, pathstyle, jobs); credentials come
 * from the usual AWS_* variables and are never written anywhere.
 */
#include "cli.h"
#include "fs.h"
#include "error.h"
#include "ref.h"
#include "sync.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static int remote_name_valid(const char *n)
{
	size_t len = strlen(n);

	if (!len || len > 64 || n[0] == '.' || n[0] == '-')
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = n[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* A remote as configured: strings owned here. */
struct cli_remote {
	char *name, *url, *endpoint, *region, *pathstyle, *jobs, *cache;
	artifs_remote_opts ropts;
	artifs_sync_opts sync;
};

static void cli_remote_release(struct cli_remote *r)
{
	free(r->name);
	free(r->url);
	free(r->endpoint);
	free(r->region);
	free(r->pathstyle);
	free(r->jobs);
	free(r->cache);
}

static char *remote_key(const char *name, const char *key)
{
	return artifs_strfmt("remote.%s.%s", name, key);
}

static int remote_get(artifs_store *s, const char *name, const char *key, char **out)
{
	char *k = remote_key(name, key);
	int rc;

	*out = NULL;
	if (!k)
		return -ENOMEM;
	rc = cli_config_get(s, k, out);
	free(k);
	return rc == ARTIFS_ENOTFOUND ? 0 : rc;
}

static void sync_progress(const artifs_sync_progress *p, void *ctx)
{
	const char *verb = ctx;
	char b1[32], b2[32];

	if (!isatty(2))
		return;
	if (p->objects_total)
		fprintf(stderr, "\r%s: %s %llu/%llu objects, %s/%s, %.0f MB/s, %llu requests   ",
			verb, p->phase, (unsigned long long)p->objects,
			(unsigned long long)p->objects_total, cli_bytes(b1, sizeof(b1), (double)p->bytes),
			cli_bytes(b2, sizeof(b2), (double)p->bytes_total),
			p->seconds > 0 ? (double)p->bytes / p->seconds / 1e6 : 0.0,
			(unsigned long long)p->requests);
	else
		fprintf(stderr, "\r%s: %s, %llu requests   ", verb, p->phase,
			(unsigned long long)p->requests);
}

static void sync_warn(int error, const char *msg, void *ctx)
{
	(void)ctx;
	fprintf(stderr, "artifs: %s: %s\n", error ? "error" : "warning", msg);
}

static int cli_remote_load(struct cli_remote *r, artifs_store *s, const char *name, int jobs,
	const char *verb)
{
	artifs_remote_opts ro = ARTIFS_REMOTE_OPTS_INIT;
	artifs_sync_opts so = ARTIFS_SYNC_OPTS_INIT;
	int rc;

	memset(r, 0, sizeof(*r));
	if (!remote_name_valid(name))
		return artifs_error(ARTIFS_EINVAL, "invalid remote name '%s'", name);
	if ((rc = remote_get(s, name, "url", &r->url)))
		return rc;
	if (!r->url)
		return artifs_error(ARTIFS_ENOTFOUND, "no remote '%s' (see 'artifs remote list'; add "
			"one with 'artifs remote add %s URL')", name, name);
	if ((rc = remote_get(s, name, "endpoint", &r->endpoint)) ||
	    (rc = remote_get(s, name, "region", &r->region)) ||
	    (rc = remote_get(s, name, "pathstyle", &r->pathstyle)) ||
	    (rc = remote_get(s, name, "jobs", &r->jobs)))
		return rc;
	if (!(r->name = strdup(name)))
		return -ENOMEM;
	ro.endpoint = r->endpoint;
	ro.region = r->region;
	if (r->pathstyle)
		ro.path_style = !strcasecmp(r->pathstyle, "true") || !strcmp(r->pathstyle, "1");
	if (!jobs && r->jobs)
		jobs = atoi(r->jobs);
	r->ropts = ro;
	{
		char *dir = artifs_strfmt("%s/remotes", artifs_store_path(s));
		if (!dir)
			return -ENOMEM;
		mkdir(dir, 0777);
		free(dir);
		if (!(r->cache = artifs_strfmt("%s/remotes/%s", artifs_store_path(s), name)))
			return -ENOMEM;
	}
	so.name = r->name;
	so.url = r->url;
	so.ropts = &r->ropts;
	so.jobs = jobs;
	so.cache_dir = r->cache;
	so.progress = sync_progress;
	so.warn = sync_warn;
	so.ctx = (void *)verb;
	r->sync = so;
	return 0;
}

static void summary(const char *verb, const artifs_sync_stats *st)
{
	char b[32];

	if (isatty(2))
		fprintf(stderr, "\r\033[K");
	fprintf(stderr, "%s %llu objects (%s) in %.2f s (%.1f MB/s), %llu already there, "
		"%llu requests; refs: %llu updated, %llu current\n", verb,
		(unsigned long long)st->objects, cli_bytes(b, sizeof(b), (double)st->bytes),
		st->seconds, st->seconds > 0 ? (double)st->bytes / st->seconds / 1e6 : 0.0,
		(unsigned long long)st->objects_skipped, (unsigned long long)st->requests,
		(unsigned long long)st->refs_updated, (unsigned long long)st->refs_current);
}

/* ---- remote add | list | remove ---- */

struct listctx {
	int n;
};

static int list_cb(const char *key, const char *value, void *ctx)
{
	struct listctx *l = ctx;
	size_t n = strlen(key);

	if (n > 11 && !strcasecmp(key + n - 4, ".url")) {
		printf("%.*s\t%s\n", (int)(n - 11), key + 7, value);
		l->n++;
	}
	return 0;
}

static int remote_add(artifs_store *s, int argc, char **argv)
{
	static const struct option lo[] = {
		{ "endpoint", required_argument, NULL, 'e' },
		{ "region", required_argument, NULL, 'r' },
		{ "path-style", no_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	const char *endpoint = NULL, *region = NULL;
	char *url = NULL;
	int c, path_style = 0, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == 'e')
			endpoint = optarg;
		else if (c == 'r')
			region = optarg;
		else if (c == 'p')
			path_style = 1;
		else
			return cli_usage("remote", "usage: artifs remote add NAME URL [--endpoint URL] "
				"[--region R] [--path-style]");
	}
	if (argc - optind != 2)
		return cli_usage("remote", "usage: artifs remote add NAME URL");
	if (!remote_name_valid(argv[optind]))
		return cli_usage("remote", "invalid remote name '%s' (letters, digits, '.', '_', '-')",
			argv[optind]);
	if (!artifs_remote_url_valid(argv[optind + 1]))
		return cli_usage("remote", "'%s' is not a remote URL: use file:///PATH or "
			"s3://BUCKET[/PREFIX]", argv[optind + 1]);
	if ((rc = remote_get(s, argv[optind], "url", &url)))
		return cli_fail_rc(rc);
	if (url) {
		free(url);
		return cli_fail("remove it first with 'artifs remote remove'",
			"remote '%s' already exists", argv[optind]);
	}
	{
		const char *keys[] = { "url", "endpoint", "region", "pathstyle" };
		const char *vals[] = { argv[optind + 1], endpoint, region, path_style ? "true" : NULL };
		for (size_t i = 0; !rc && i < 4; i++) {
			char *k;
			if (!vals[i])
				continue;
			if (!(k = remote_key(argv[optind], keys[i])))
				return cli_fail_rc(-ENOMEM);
			rc = cli_config_set(s, k, vals[i]);
			free(k);
		}
	}
	return rc ? cli_fail_rc(rc) : EXIT_OK;
}

static int remote_remove(artifs_store *s, const char *name)
{
	const char *keys[] = { "url", "endpoint", "region", "pathstyle", "jobs" };
	int found = 0, rc = 0;

	for (size_t i = 0; !rc && i < 5; i++) {
		char *k = remote_key(name, keys[i]);
		if (!k)
			return cli_fail_rc(-ENOMEM);
		rc = cli_config_set(s, k, NULL);
		free(k);
		if (!rc)
			found++;
		if (rc == ARTIFS_ENOTFOUND)
			rc = 0;
	}
	if (rc)
		return cli_fail_rc(rc);
	if (!found)
		return cli_fail("see 'artifs remote list'", "no remote '%s'", name);
	{
		/* the cached pack indexes of that remote */
		char *dir = artifs_strfmt("%s/remotes/%s", artifs_store_path(s), name);
		DIR *d = dir ? opendir(dir) : NULL;
		struct dirent *de;
		while (d && (de = readdir(d)))
			if (de->d_name[0] != '.' || strlen(de->d_name) > 2)
				unlinkat(dirfd(d), de->d_name, 0);
		if (d)
			closedir(d);
		if (dir)
			rmdir(dir);
		free(dir);
	}
	return EXIT_OK;
}

CLI_CMD(remote)
{
	artifs_store *s = NULL;
	int rc;

	if (argc < 2)
		return cli_usage("remote", "usage: artifs remote add NAME URL | list | remove NAME");
	if (strcmp(argv[1], "add") && strcmp(argv[1], "list") && strcmp(argv[1], "remove"))
		return cli_usage("remote", "unknown subcommand '%s' (add, list, remove)", argv[1]);
	if ((rc = cli_open_store(&s, 0)))
		return rc;
	if (!strcmp(argv[1], "add")) {
		rc = remote_add(s, argc - 1, argv + 1);
	} else if (!strcmp(argv[1], "list")) {
		struct listctx l = { 0 };
		int r = cli_config_foreach(s, "^remote\\..*\\.url$", list_cb, &l);
		rc = r ? cli_fail_rc(r) : EXIT_OK;
	} else if (argc != 3) {
		rc = cli_usage("remote", "usage: artifs remote remove NAME");
	} else {
		rc = remote_remove(s, argv[2]);
	}
	artifs_store_free(s);
	return rc;
}

/* ---- push, pull ---- */

static int parse_jobs(int argc, char **argv, const char *cmd, int *jobs, int *records_only)
{
	static const struct option lo[] = {
		{ "jobs", required_argument, NULL, 'j' },
		{ "records-only", no_argument, NULL, 'R' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	*jobs = 0;
	*records_only = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "j:", lo, NULL)) != -1) {
		char *end;
		if (c == 'R') {
			*records_only = 1;
			continue;
		}
		if (c != 'j')
			return cli_usage(cmd, "usage: artifs %s NAME [REPO[@REF]...] [-j N]", cmd);
		*jobs = (int)strtol(optarg, &end, 10);
		if (*end || *jobs < 1 || *jobs > 64)
			return cli_usage(cmd, "--jobs is 1-64, not '%s'", optarg);
	}
	if (argc - optind < 1)
		return cli_usage(cmd, "usage: artifs %s NAME [REPO[@REF]...] [-j N]", cmd);
	return -1;
}

static int run_sync(int argc, char **argv, int push)
{
	const char *cmd = push ? "push" : "pull";
	struct cli_remote r;
	artifs_sync_stats st = { 0 };
	artifs_store *s = NULL;
	int jobs, records_only, rc = parse_jobs(argc, argv, cmd, &jobs, &records_only);

	if (rc >= 0)
		return rc;
	if (records_only && push)
		return cli_usage(cmd, "--records-only is for pull");
	if ((rc = cli_open_store(&s, 0)))
		return rc;
	rc = cli_remote_load(&r, s, argv[optind], jobs, cmd);
	r.sync.records_only = records_only;
	if (!rc)
		rc = (push ? artifs_push : artifs_pull)(s, &r.sync, argv + optind + 1,
			(size_t)(argc - optind - 1), &st);
	if (r.url)
		summary(push ? "pushed" : "fetched", &st);
	cli_remote_release(&r);
	artifs_store_free(s);
	return rc ? cli_fail_rc(rc) : EXIT_OK;
}

CLI_CMD(push)
{
	return run_sync(argc, argv, 1);
}

CLI_CMD(pull)
{
	return run_sync(argc, argv, 0);
}

/* ---- clone ---- */

CLI_CMD(clone)
{
	struct cli_remote r;
	artifs_sync_stats st = { 0 };
	artifs_store *s = NULL;
	char *path = NULL, *k = NULL;
	int jobs = 0, rc, c;
	static const struct option lo[] = {
		{ "jobs", required_argument, NULL, 'j' },
		{ "endpoint", required_argument, NULL, 'e' },
		{ "region", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	const char *endpoint = NULL, *region = NULL;

	memset(&r, 0, sizeof(r));
	optind = 1;
	while ((c = getopt_long(argc, argv, "j:", lo, NULL)) != -1) {
		if (c == 'j')
			jobs = atoi(optarg);
		else if (c == 'e')
			endpoint = optarg;
		else if (c == 'r')
			region = optarg;
		else
			return cli_usage("clone", "usage: artifs clone URL [STORE] [-j N]");
	}
	if (argc - optind < 1 || argc - optind > 2)
		return cli_usage("clone", "usage: artifs clone URL [STORE]");
	if (!artifs_remote_url_valid(argv[optind]))
		return cli_usage("clone", "'%s' is not a remote URL: use file:///PATH or "
			"s3://BUCKET[/PREFIX]", argv[optind]);
	if ((rc = artifs_store_default_path(&path, argc - optind == 2 ? argv[optind + 1] :
			cli_store_flag)))
		return cli_fail_rc(rc);
	rc = artifs_store_init(path, NULL);
	if (rc == ARTIFS_EEXISTS) {
		rc = cli_fail("to add a remote to an existing store: 'artifs remote add origin URL' "
			"and 'artifs pull origin'", "a store already exists at '%s'", path);
		free(path);
		return rc;
	}
	if (rc || (rc = artifs_store_open(&s, path, NULL)))
		goto out;
	if (!(k = remote_key("origin", "url")) || (rc = cli_config_set(s, k, argv[optind])))
		goto out;
	if (endpoint) {
		free(k);
		if (!(k = remote_key("origin", "endpoint")) || (rc = cli_config_set(s, k, endpoint)))
			goto out;
	}
	if (region) {
		free(k);
		if (!(k = remote_key("origin", "region")) || (rc = cli_config_set(s, k, region)))
			goto out;
	}
	if ((rc = cli_remote_load(&r, s, "origin", jobs, "clone")))
		goto out;
	rc = artifs_pull(s, &r.sync, NULL, 0, &st);
	summary("fetched", &st);
	if (!rc)
		fprintf(stderr, "cloned into '%s' (remote 'origin')\n", path);
out:
	if (!k && !rc)
		rc = -ENOMEM;
	free(k);
	cli_remote_release(&r);
	artifs_store_free(s);
	free(path);
	return rc ? cli_fail_rc(rc) : EXIT_OK;
}

/* ---- mount --remote ---- */

static int parse_size(const char *s, unsigned long long *out)
{
	char *end;
	double v = strtod(s, &end);
	unsigned long long m = 1;

	if (end == s || v <= 0)
		return -1;
	switch (*end) {
	case 'k': case 'K': m = 1ull << 10; end++; break;
	case 'm': case 'M': m = 1ull << 20; end++; break;
	case 'g': case 'G': m = 1ull << 30; end++; break;
	case 't': case 'T': m = 1ull << 40; end++; break;
	case '\0': break;
	default: return -1;
	}
	if (*end == 'i' || *end == 'B')
		end += *end == 'i' && end[1] == 'B' ? 2 : 1;
	if (*end)
		return -1;
	*out = (unsigned long long)(v * (double)m);
	return 0;
}

static int repo_any(const char *repo, int64_t created, void *ctx)
{
	(void)repo;
	(void)created;
	*(int *)ctx = 1;
	return 1;
}

int cli_mount_remote(artifs_mount_opts *mo, artifs_mount_lazy *lz, const char *store,
	const char *name, const char *cache_size, char **cache_dir)
{
	static struct cli_remote r;	/* lives as long as the mount */
	artifs_store *s = NULL, *c = NULL;
	artifs_store_opts so = ARTIFS_STORE_OPTS_INIT;
	artifs_sync_stats st = { 0 };
	unsigned long long cap = 10ull << 30;
	int rc, any = 0;

	*cache_dir = NULL;
	if (cache_size && (parse_size(cache_size, &cap) || cap < (16u << 20)))
		return cli_usage("mount", "--cache-size is a size of at least 16M (e.g. 512M, 20G), "
			"not '%s'", cache_size);
	if ((rc = artifs_store_open(&s, store, NULL)))
		return cli_fail_rc(rc);
	if ((rc = cli_remote_load(&r, s, name, 0, "mount")))
		goto out;
	if (!(*cache_dir = artifs_strfmt("%s/remotes/%s/cache", artifs_store_path(s), name))) {
		rc = -ENOMEM;
		goto out;
	}
	so.initial_mapsize = (size_t)cap * 2 + ((size_t)1 << 30);
	rc = artifs_store_init(*cache_dir, &so);
	if (rc && rc != ARTIFS_EEXISTS)
		goto out;
	if ((rc = artifs_store_open(&c, *cache_dir, &so)))
		goto out;
	{
		/* the cache store's own config names the remote, for its refresher */
		const char *keys[] = { "url", "endpoint", "region", "pathstyle" };
		const char *vals[] = { r.url, r.endpoint, r.region, r.pathstyle };
		for (size_t i = 0; !rc && i < 4; i++) {
			char *k = remote_key(name, keys[i]);
			if (!k) {
				rc = -ENOMEM;
				break;
			}
			rc = cli_config_set(c, k, vals[i]);
			if (rc == ARTIFS_ENOTFOUND)
				rc = 0;
			free(k);
		}
		if (rc)
			goto out;
	}
	r.sync.records_only = 1;
	/*
	 * A reader waits on the remote inside a FUSE request: give up sooner
	 * than the CLI does (10 s without progress, 3 retries) unless the
	 * ARTIFS_S3_* variables say otherwise.
	 */
	if (!getenv("ARTIFS_S3_TIMEOUT"))
		r.ropts.timeout_s = 10;
	if (!getenv("ARTIFS_S3_MAX_RETRIES"))
		r.ropts.max_retries = 3;
	free(r.cache);
	if (!(r.cache = artifs_strfmt("%s/remotes/%s", *cache_dir, name))) {
		rc = -ENOMEM;
		goto out;
	}
	r.sync.cache_dir = r.cache;
	{
		char *d = artifs_strfmt("%s/remotes", *cache_dir);
		if (d)
			mkdir(d, 0777);
		free(d);
	}
	rc = artifs_pull(c, &r.sync, NULL, 0, &st);
	if (rc) {
		MDB_txn *txn;
		cli_warn("cannot read remote '%s': %s", name, artifs_error_last());
		if (!artifs_rtxn_begin(c, &txn)) {
			artifs_repo_foreach(c, txn, repo_any, &any);
			mdb_txn_abort(txn);
		}
		if (!any)
			goto out;
		cli_warn("serving the versions cached from '%s' before", name);
		rc = 0;
	} else {
		summary("fetched", &st);
	}
	lz->name = r.name;
	lz->url = r.url;
	lz->ropts = &r.ropts;
	lz->index_cache = r.cache;
	lz->cache_bytes = cap;
	lz->refresh_s = 0;
	mo->store_dir = *cache_dir;
	mo->lazy = lz;
out:
	artifs_store_free(c);
	artifs_store_free(s);
	return rc ? cli_fail_rc(rc) : EXIT_OK;
}
