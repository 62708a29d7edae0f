/*
 * plugins.c - the parts of artifs that need a large library, loaded when
 * a command first uses them.
 *
 * libgit2, libcurl and libarchive pull in some fifty shared libraries
 * (TLS, Kerberos, LDAP, ICU...).  Loading them took 6-7 ms of every
 * command with warm caches and 50-60 ms with cold ones, most of a mount's
 * start.  So they live in modules next to the binary:
 *
 *   artifs-archive.so  index/archio.c    (commit of an archive, export)
 *   artifs-git.so      index/gitops.c    (GitOps publishing and reading)
 *                      cli/config.c      (the store's config file)
 *   artifs-s3.so       index/remote_s3.c (S3 remotes)
 *
 * The functions below have the names and types of the module's, and call
 * them through dlsym() on first use.  A module resolves what it needs of
 * the rest of artifs against this executable (linked with its symbols
 * exported).  Tests and tools link the module's code directly instead.
 *
 * A module is looked for next to the executable (the build tree), then in
 * ARTIFS_PLUGIN_RELDIR relative to it (an installed artifs: the library
 * directory's artifs/ seen from bindir).
 */
#include "cli.h"
#include "archio.h"
#include "error.h"
#include "gitops.h"
#include "remote.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef ARTIFS_PLUGIN_RELDIR
#define ARTIFS_PLUGIN_RELDIR "../lib/artifs"
#endif

struct plugin {
	const char *name;	/* artifs-NAME.so */
	const char *needs;	/* what it brings, for the error */
	void *handle;
	char err[2 * PATH_MAX + 256];	/* why it could not be loaded */
};

static struct plugin archive_mod = { "archive", "archives (libarchive)", NULL, "" };
static struct plugin git_mod = { "git", "GitOps and the config file (libgit2)", NULL, "" };
static struct plugin s3_mod = { "s3", "S3 remotes (libcurl)", NULL, "" };
static pthread_mutex_t plugin_lock = PTHREAD_MUTEX_INITIALIZER;

/* The directory of the running executable, with a trailing '/'. */
static int exe_dir(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	char *slash;

	if (n <= 0 || (size_t)n >= len - 1)
		return -1;
	buf[n] = '\0';
	if (!(slash = strrchr(buf, '/')))
		return -1;
	slash[1] = '\0';
	return 0;
}

static void plugin_open(struct plugin *p)
{
	char dir[PATH_MAX], path[PATH_MAX + 64];
	const char *subdirs[] = { "", ARTIFS_PLUGIN_RELDIR "/" };

	if (exe_dir(dir, sizeof(dir))) {
		snprintf(p->err, sizeof(p->err), "cannot find the artifs executable's directory");
		return;
	}
	for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		snprintf(path, sizeof(path), "%s%sartifs-%s.so", dir, subdirs[i], p->name);
		if (access(path, F_OK))
			continue;
		if ((p->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL)))
			return;
		snprintf(p->err, sizeof(p->err), "cannot load %s: %s", path, dlerror());
		return;
	}
	snprintf(p->err, sizeof(p->err), "artifs-%s.so is neither in %s nor in %s%s; "
		"install artifs completely ('cmake --install')", p->name, dir, dir, ARTIFS_PLUGIN_RELDIR);
}

/* fn's address in module p, or NULL with the error set. */
static void *plugin_sym(struct plugin *p, const char *fn)
{
	void *f = NULL;

	pthread_mutex_lock(&plugin_lock);
	if (!p->handle && !p->err[0])
		plugin_open(p);
	if (p->handle && !(f = dlsym(p->handle, fn)))
		snprintf(p->err, sizeof(p->err), "artifs-%s.so has no %s: it is from another build",
			p->name, fn);
	pthread_mutex_unlock(&plugin_lock);
	if (!f)
		artifs_error(-ENOENT, "%s need a module that could not be loaded: %s", p->needs, p->err);
	return f;
}

#define PLUGIN_FN(mod, name) ((__typeof__(&name))plugin_sym(&(mod), #name))

int artifs_archive_commit(artifs_oid *out, artifs_store *s, const char *repo, const char *branch,
	const char *path, unsigned int strip, const artifs_snapshot_opts *o,
	artifs_snapshot_stats *stats)
{
	__typeof__(&artifs_archive_commit) f = PLUGIN_FN(archive_mod, artifs_archive_commit);

	return f ? f(out, s, repo, branch, path, strip, o, stats) : -ENOENT;
}

int artifs_archive_export(artifs_store *s, const artifs_oid *commit, const char *path, int fd,
	enum artifs_archive_format fmt, artifs_export_stats *stats)
{
	__typeof__(&artifs_archive_export) f = PLUGIN_FN(archive_mod, artifs_archive_export);

	return f ? f(s, commit, path, fd, fmt, stats) : -ENOENT;
}

int artifs_gitops_publish(const artifs_gitops_config *c, const artifs_pin *pin, const char *msg,
	char out_commit[41])
{
	__typeof__(&artifs_gitops_publish) f = PLUGIN_FN(git_mod, artifs_gitops_publish);

	return f ? f(c, pin, msg, out_commit) : -ENOENT;
}

int artifs_gitops_read_pins(const artifs_gitops_config *c,
	int (*fn)(const artifs_pin *pin, void *ctx), void *ctx)
{
	__typeof__(&artifs_gitops_read_pins) f = PLUGIN_FN(git_mod, artifs_gitops_read_pins);

	return f ? f(c, fn, ctx) : -ENOENT;
}

int cli_config_get(artifs_store *s, const char *key, char **out)
{
	__typeof__(&cli_config_get) f = PLUGIN_FN(git_mod, cli_config_get);

	*out = NULL;
	return f ? f(s, key, out) : -ENOENT;
}

int cli_config_bool(artifs_store *s, const char *key, int def)
{
	__typeof__(&cli_config_bool) f = PLUGIN_FN(git_mod, cli_config_bool);

	return f ? f(s, key, def) : def;
}

int cli_config_set(artifs_store *s, const char *key, const char *value)
{
	__typeof__(&cli_config_set) f = PLUGIN_FN(git_mod, cli_config_set);

	return f ? f(s, key, value) : -ENOENT;
}

int cli_config_foreach(artifs_store *s, const char *regex,
	int (*fn)(const char *key, const char *value, void *ctx), void *ctx)
{
	__typeof__(&cli_config_foreach) f = PLUGIN_FN(git_mod, cli_config_foreach);

	return f ? f(s, regex, fn, ctx) : -ENOENT;
}

int cmd_config(int argc, char **argv)
{
	__typeof__(&cmd_config) f = PLUGIN_FN(git_mod, cmd_config);

	return f ? f(argc, argv) : cli_fail(NULL, "%s", artifs_error_last());
}

int artifs_remote_s3_open(artifs_remote *r, const char *bucket, const char *prefix,
	const artifs_remote_opts *opts)
{
	__typeof__(&artifs_remote_s3_open) f = PLUGIN_FN(s3_mod, artifs_remote_s3_open);

	return f ? f(r, bucket, prefix, opts) : -ENOENT;
}
