/*
 * config.c - the store's configuration file, STORE/config, in git-config
 * syntax, read and written with libgit2's config support (a well-kept
 * parser for a format users already know, with its quoting, includes and
 * atomic rewrites) rather than a parser of our own.
 *
 *   [hooks]   timeout = 60                  seconds per hook
 *   [gitops]  url, branch, path, author, push
 *   [remote "NAME"]  url, endpoint, region, pathstyle, jobs
 */
#include "cli.h"
#include "error.h"

#include <errno.h>
#include <git2.h>
#include <stdlib.h>
#include <string.h>

/* Keys artifs reads; 'config' refuses others so that typos show. */
static const struct {
	const char *key;
	const char *help;
	int boolean;
} known[] = {
	{ "hooks.timeout", "seconds a hook may run before it is killed (default 60)", 0 },
	{ "gitops.url", "GitOps repository: a local path or URL (publishing is off when unset)", 0 },
	{ "gitops.branch", "branch of the GitOps repository (default main)", 0 },
	{ "gitops.path", "pin file path template (default environments/{env}/{kind}/{name}.json)", 0 },
	{ "gitops.author", "\"Name <email>\" of GitOps commits (default artifs <artifs@HOST>)", 0 },
	{ "gitops.push", "push after each commit: true or false (default true)", 1 },
};

#define NKNOWN (sizeof(known) / sizeof(known[0]))

/* remote.NAME.KEY, set by 'artifs remote add' and editable with 'config' */
static const char *const remote_keys[] = { "url", "endpoint", "region", "pathstyle", "jobs" };

static int remote_key_known(const char *key)
{
	const char *dot;

	if (strncmp(key, "remote.", 7) || !(dot = strrchr(key + 7, '.')) || dot == key + 7)
		return 0;
	for (size_t i = 0; i < sizeof(remote_keys) / sizeof(remote_keys[0]); i++)
		if (!strcasecmp(dot + 1, remote_keys[i]))
			return 1;
	return 0;
}

static int git_fail(const char *what)
{
	const git_error *e = git_error_last();

	return artifs_error(ARTIFS_EINVAL, "%s: %s", what, e && e->message ? e->message : "libgit2 error");
}

static int open_cfg(artifs_store *s, git_config **cfg)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/config", artifs_store_path(s));
	git_libgit2_init();
	if (git_config_open_ondisk(cfg, path) < 0) {
		int rc = git_fail("cannot open the store's config file");
		git_libgit2_shutdown();
		return rc;
	}
	return 0;
}

static void close_cfg(git_config *cfg)
{
	git_config_free(cfg);
	git_libgit2_shutdown();
}

int cli_config_get(artifs_store *s, const char *key, char **out)
{
	git_config *cfg, *snap = NULL;
	git_buf b = { 0 };
	int rc;

	*out = NULL;
	if ((rc = open_cfg(s, &cfg)))
		return rc;
	if (git_config_snapshot(&snap, cfg) < 0) {
		rc = git_fail("cannot read the store's config file");
	} else {
		int g = git_config_get_string_buf(&b, snap, key);
		if (g == GIT_ENOTFOUND)
			rc = ARTIFS_ENOTFOUND;
		else if (g < 0)
			rc = git_fail("cannot read the store's config file");
		else if (!(*out = strdup(b.ptr)))
			rc = artifs_error(-ENOMEM, "out of memory");
		else
			rc = 0;
	}
	git_buf_dispose(&b);
	git_config_free(snap);
	close_cfg(cfg);
	return rc;
}

int cli_config_bool(artifs_store *s, const char *key, int def)
{
	char *v = NULL;
	int r = def;

	if (cli_config_get(s, key, &v) == 0) {
		if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on") || !strcmp(v, "1"))
			r = 1;
		else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off") || !strcmp(v, "0"))
			r = 0;
	}
	free(v);
	return r;
}

static int config_list_cb(const git_config_entry *e, void *ctx)
{
	(void)ctx;
	printf("%s=%s\n", e->name, e->value);
	return 0;
}

CLI_CMD(config)
{
	artifs_store *s = NULL;
	git_config *cfg = NULL;
	const char *key;
	size_t i;
	int rc, unset = 0;

	if (argc == 2 && !strcmp(argv[1], "--list")) {
		if ((rc = cli_open_store(&s, 1)))
			return rc;
		if (!(rc = open_cfg(s, &cfg))) {
			git_config_foreach(cfg, config_list_cb, NULL);
			close_cfg(cfg);
		}
		artifs_store_free(s);
		return rc ? cli_fail_rc(rc) : EXIT_OK;
	}
	if (argc >= 2 && !strcmp(argv[1], "--unset")) {
		unset = 1;
		argv++;
		argc--;
	}
	if (argc < 2 || argc > 3 || (unset && argc != 2))
		return cli_usage("config", "usage: artifs config KEY [VALUE] | --unset KEY | --list");
	key = argv[1];
	for (i = 0; i < NKNOWN; i++)
		if (!strcmp(known[i].key, key))
			break;
	if (i == NKNOWN && !remote_key_known(key)) {
		fprintf(stderr, "artifs: error: unknown config key '%s'; known keys:\n", key);
		for (i = 0; i < NKNOWN; i++)
			fprintf(stderr, "  %-14s %s\n", known[i].key, known[i].help);
		fprintf(stderr, "  remote.NAME.{url,endpoint,region,pathstyle,jobs} (see 'artifs remote --help')\n");
		return EXIT_USAGE;
	}
	if (argc == 3 && i < NKNOWN && known[i].boolean && strcmp(argv[2], "true") && strcmp(argv[2], "false"))
		return cli_usage("config", "%s is true or false, not '%s'", key, argv[2]);
	if (argc == 3 && !strcmp(key, "hooks.timeout")) {
		char *end;
		long t = strtol(argv[2], &end, 10);
		if (*end || t < 1 || t > 86400)
			return cli_usage("config", "hooks.timeout is a number of seconds (1-86400)");
	}
	if ((rc = cli_open_store(&s, argc == 2 && !unset)))
		return rc;
	if (argc == 2 && !unset) {
		char *v = NULL;
		rc = cli_config_get(s, key, &v);
		if (!rc)
			printf("%s\n", v);
		free(v);
		artifs_store_free(s);
		if (rc == ARTIFS_ENOTFOUND)
			return EXIT_FAIL;	/* unset: like git config, status 1 and no output */
		return rc ? cli_fail_rc(rc) : EXIT_OK;
	}
	if ((rc = open_cfg(s, &cfg))) {
		artifs_store_free(s);
		return cli_fail_rc(rc);
	}
	if (unset) {
		int g = git_config_delete_entry(cfg, key);
		rc = g == GIT_ENOTFOUND ? 0 : g < 0 ? git_fail("cannot update the config file") : 0;
	} else if (git_config_set_string(cfg, key, argv[2]) < 0) {
		rc = git_fail("cannot update the config file");
	}
	close_cfg(cfg);
	artifs_store_free(s);
	return rc ? cli_fail_rc(rc) : EXIT_OK;
}

int cli_config_set(artifs_store *s, const char *key, const char *value)
{
	git_config *cfg;
	int rc;

	if ((rc = open_cfg(s, &cfg)))
		return rc;
	if (!value) {
		int g = git_config_delete_entry(cfg, key);
		rc = g == GIT_ENOTFOUND ? ARTIFS_ENOTFOUND : g < 0 ?
			git_fail("cannot update the config file") : 0;
	} else if (git_config_set_string(cfg, key, value) < 0) {
		rc = git_fail("cannot update the config file");
	}
	close_cfg(cfg);
	return rc;
}

struct foreach_ctx {
	int (*fn)(const char *key, const char *value, void *ctx);
	void *ctx;
};

static int foreach_cb(const git_config_entry *e, void *ctx)
{
	struct foreach_ctx *f = ctx;

	return f->fn(e->name, e->value, f->ctx);
}

int cli_config_foreach(artifs_store *s, const char *regex,
	int (*fn)(const char *key, const char *value, void *ctx), void *ctx)
{
	struct foreach_ctx f = { fn, ctx };
	git_config *cfg, *snap = NULL;
	int rc;

	if ((rc = open_cfg(s, &cfg)))
		return rc;
	if (git_config_snapshot(&snap, cfg) < 0)
		rc = git_fail("cannot read the store's config file");
	else if ((rc = git_config_foreach_match(snap, regex, foreach_cb, &f)) < 0 &&
		 rc > -10000)
		rc = git_fail("cannot read the store's config file");
	git_config_free(snap);
	close_cfg(cfg);
	return rc;
}
