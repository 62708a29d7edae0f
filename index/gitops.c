/*
 * gitops.c - pins in a GitOps repository, through libgit2.
 *
 * The managed clone (workdir) is a cache of the remote: before a publish
 * it is fetched and its branch reset to origin's, the pin file is written
 * (temporary file + rename) and committed from a buffer, so the committed
 * blob is exactly the encoded bytes whatever .gitattributes or
 * core.autocrlf say.  Pushes are plain fast-forwards; a rejection means
 * someone pushed meanwhile, and the pin is re-applied as a new commit on
 * the new tip (never a merge), so the history stays linear.
 *
 * Reading never touches the working tree: pins are read from the tree of
 * origin/BRANCH (or the local branch).
 *
 * Every entry point brackets its libgit2 use with git_libgit2_init() and
 * git_libgit2_shutdown() (reference counted) and frees every object before
 * the shutdown.
 */
#include "gitops.h"
#include "codec.h"
#include "error.h"
#include "oid.h"
#include "ref.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <git2.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ISO_FMT "%Y-%m-%dT%H:%M:%SZ"
#define ORIGIN_FETCHSPEC "+refs/heads/*:refs/remotes/origin/*"

static const char *tmpl_of(const artifs_gitops_config *c)
{
	return c && c->path_tmpl ? c->path_tmpl : ARTIFS_GITOPS_PATH_DEFAULT;
}

static const char *branch_of(const artifs_gitops_config *c)
{
	return c && c->branch ? c->branch : ARTIFS_GITOPS_BRANCH_DEFAULT;
}

/* Pin files */

static int fmt_time(char *buf, size_t len, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	if ((int64_t)tt != t || !gmtime_r(&tt, &tm) || !strftime(buf, len, ISO_FMT, &tm))
		return artifs_error(ARTIFS_EINVAL, "promotion time %lld is out of range", (long long)t);
	return 0;
}

static int parse_time(int64_t *out, const char *s)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	if (!(end = strptime(s, ISO_FMT, &tm)) || *end)
		return ARTIFS_EINVAL;
	*out = (int64_t)timegm(&tm);
	return 0;
}

static int hex_ok(const char *s)
{
	artifs_oid id;

	return artifs_oid_parse(&id, s) == 0;
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

int artifs_pin_encode(char **out, const artifs_pin *pin)
{
	json_t *o = NULL, *tags = NULL;
	char when[64], *s = NULL, *res;
	size_t len;
	int rc;

	if (!pin->repo || !artifs_repo_name_valid(pin->repo))
		return artifs_error(ARTIFS_EINVAL, "invalid repository name '%s' (want datasets/NAME or models/NAME)",
			pin->repo ? pin->repo : "");
	if (!pin->env || !artifs_ref_name_valid(pin->env))
		return artifs_error(ARTIFS_EINVAL, "invalid environment name '%s'", pin->env ? pin->env : "");
	if (!pin->commit || !hex_ok(pin->commit))
		return artifs_error(ARTIFS_EINVAL, "pin of '%s': commit '%s' is not 32 hex digits", pin->repo,
			pin->commit ? pin->commit : "");
	if (pin->tree && !hex_ok(pin->tree))
		return artifs_error(ARTIFS_EINVAL, "pin of '%s': tree '%s' is not 32 hex digits", pin->repo, pin->tree);
	if ((rc = fmt_time(when, sizeof(when), pin->promoted_at)))
		return rc;
	if (!(o = json_object()) || !(tags = json_array())) {
		rc = artifs_error(-ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < pin->ntags; i++)
		if (json_array_append_new(tags, json_string(pin->tags[i]))) {
			rc = artifs_error(ARTIFS_EINVAL, "pin of '%s': tag '%s' is not UTF-8", pin->repo, pin->tags[i]);
			goto done;
		}
	/* insertion order is the file's key order (JSON_PRESERVE_ORDER) */
	if (json_object_set_new(o, "repository", json_string(pin->repo)) ||
	    json_object_set_new(o, "environment", json_string(pin->env)) ||
	    json_object_set_new(o, "commit", json_string(pin->commit)) ||
	    json_object_set_new(o, "tree", str_or_null(pin->tree)) ||
	    json_object_set(o, "tags", tags) ||
	    json_object_set_new(o, "message", str_or_null(pin->message)) ||
	    json_object_set_new(o, "promoted_by", str_or_null(pin->promoted_by)) ||
	    json_object_set_new(o, "promoted_at", json_string(when))) {
		rc = artifs_error(ARTIFS_EINVAL, "pin of '%s': message or promoter is not UTF-8", pin->repo);
		goto done;
	}
	if (!(s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER))) {
		rc = artifs_error(-ENOMEM, "out of memory");
		goto done;
	}
	len = strlen(s);
	if (!(res = malloc(len + 2))) {
		rc = artifs_error(-ENOMEM, "out of memory");
		goto done;
	}
	memcpy(res, s, len);
	memcpy(res + len, "\n", 2);
	*out = res;
	rc = 0;
done:
	free(s);
	json_decref(tags);
	json_decref(o);
	return rc;
}

/* Path templates */

enum { PH_NONE, PH_ENV, PH_KIND, PH_NAME, PH_REPO };

/* The placeholder starting at s and its length, or PH_NONE. */
static int placeholder(const char *s, size_t *len)
{
	static const struct {
		const char *text;
		int ph;
	} tab[] = {
		{ "{env}", PH_ENV }, { "{kind}", PH_KIND }, { "{name}", PH_NAME }, { "{repo}", PH_REPO },
	};

	for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++) {
		size_t n = strlen(tab[i].text);

		if (!strncmp(s, tab[i].text, n)) {
			*len = n;
			return tab[i].ph;
		}
	}
	return PH_NONE;
}

static int tmpl_check(const char *t)
{
	unsigned seen = 0;
	size_t n;
	int ph;

	for (const char *p = t; *p;) {
		if (*p != '{') {
			p++;
			continue;
		}
		if ((ph = placeholder(p, &n)) == PH_NONE)
			return artifs_error(ARTIFS_EINVAL,
				"gitops path template '%s': unknown placeholder at '%s' (want {env}, {kind}, {name} or {repo})",
				t, p);
		seen |= 1u << ph;
		p += n;
	}
	if (!(seen & 1u << PH_ENV) ||
	    !((seen & 1u << PH_REPO) || ((seen & 1u << PH_KIND) && (seen & 1u << PH_NAME))))
		return artifs_error(ARTIFS_EINVAL,
			"gitops path template '%s' must contain {env} and {repo} (or {kind} and {name}) so that every pin has its own file",
			t);
	return 0;
}

static int path_char(int ch)
{
	return isascii(ch) && (isalnum(ch) || ch == '.' || ch == '_' || ch == '-');
}

/* Why `p` is not a safe relative path in the repository, or NULL. */
static const char *path_problem(const char *p)
{
	const char *seg = p;

	if (!*p)
		return "is empty";
	if (*p == '/')
		return "is absolute";
	for (const char *q = p;; q++) {
		if (*q == '/' || !*q) {
			size_t n = (size_t)(q - seg);

			if (n == 0)
				return "has an empty component";
			if ((n == 1 && seg[0] == '.') || (n == 2 && !strncmp(seg, "..", 2)))
				return "has a '.' or '..' component";
			if (n == 4 && !strncasecmp(seg, ".git", 4))
				return "has a '.git' component";
			if (!*q)
				return NULL;
			seg = q + 1;
		} else if (!path_char((unsigned char)*q)) {
			return "has characters outside [A-Za-z0-9._/-]";
		}
	}
}

int artifs_gitops_pin_path(char **out, const artifs_gitops_config *c, const char *repo,
	const char *env)
{
	const char *t = tmpl_of(c), *name, *why;
	size_t kind_len, len = 0, n;
	char *p = NULL;
	int rc;

	if (!repo || !artifs_repo_name_valid(repo))
		return artifs_error(ARTIFS_EINVAL, "invalid repository name '%s' (want datasets/NAME or models/NAME)",
			repo ? repo : "");
	if (!env || !artifs_ref_name_valid(env))
		return artifs_error(ARTIFS_EINVAL, "invalid environment name '%s'", env ? env : "");
	if ((rc = tmpl_check(t)))
		return rc;
	name = strchr(repo, '/') + 1;
	kind_len = (size_t)(name - 1 - repo);
	/* two passes: measure, then fill */
	for (int pass = 0; pass < 2; pass++) {
		size_t at = 0;

		for (const char *q = t; *q;) {
			const char *v = q;
			size_t vlen = 1;

			switch (*q == '{' ? placeholder(q, &n) : PH_NONE) {
			case PH_ENV: v = env; vlen = strlen(env); break;
			case PH_KIND: v = repo; vlen = kind_len; break;
			case PH_NAME: v = name; vlen = strlen(name); break;
			case PH_REPO: v = repo; vlen = strlen(repo); break;
			default: n = 1; break;
			}
			if (pass)
				memcpy(p + at, v, vlen);
			at += vlen;
			q += n;
		}
		if (!pass) {
			len = at;
			if (!(p = malloc(len + 1)))
				return artifs_error(-ENOMEM, "out of memory");
		} else {
			p[len] = '\0';
		}
	}
	if ((why = path_problem(p))) {
		rc = artifs_error(ARTIFS_EINVAL, "gitops pin path '%s' (from template '%s') %s", p, t, why);
		free(p);
		return rc;
	}
	*out = p;
	return 0;
}

/*
 * Does `p` have the shape of template `t`: {env} and {name} stand for one
 * or more name characters, {kind} for "models" or "datasets", {repo} for
 * KIND/NAME.  Names may contain '.', so every split is tried.
 */
static int tmpl_match(const char *t, const char *p)
{
	while (*t) {
		const char *v;
		size_t n;
		int ph = *t == '{' ? placeholder(t, &n) : PH_NONE;

		if (ph == PH_NONE) {
			if (*t++ != *p++)
				return 0;
			continue;
		}
		t += n;
		v = p;
		if (ph == PH_KIND || ph == PH_REPO) {
			if (!strncmp(p, "models", 6))
				v = p + 6;
			else if (!strncmp(p, "datasets", 8))
				v = p + 8;
			else
				return 0;
			if (ph == PH_KIND) {
				p = v;
				continue;
			}
			if (*v++ != '/')
				return 0;
		}
		for (const char *e = v; path_char((unsigned char)*e); e++)
			if (tmpl_match(t, e + 1))
				return 1;
		return 0;
	}
	return *p == '\0';
}

/* The git side */

struct gctx {
	const artifs_gitops_config *c;
	char *local_ref;	/* refs/heads/BRANCH */
	char *remote_ref;	/* refs/remotes/origin/BRANCH */
	char *lock_path;	/* WORKDIR.lock */
	int lock_fd;
	int inited;		/* git_libgit2_init() done */
	git_repository *repo;
	git_remote *remote;	/* origin; NULL when there is none and no url */
	int known;		/* the clone was last fetched from this url */
	int auth;		/* the remote asked for credentials */
	char rejected[256];	/* status of a ref update the remote refused */
};

/* ARTIFS_EGITOPS with libgit2's last message after `what`. */
static int git_fail(const struct gctx *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int git_fail(const struct gctx *g, const char *fmt, ...)
{
	const git_error *e = git_error_last();
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return artifs_error(ARTIFS_EGITOPS, "%s: %s%s", what, e && e->message ? e->message : "unknown git error",
		g && g->auth ? " (the remote wants credentials; artifs supplies none and does not read GIT_* "
			"environment variables, credential helpers or ssh agents)" : "");
}

/* Network URLs that need authentication: fail, saying why. */
static int cred_cb(git_credential **out, const char *url, const char *user, unsigned int allowed,
	void *payload)
{
	struct gctx *g = payload;

	(void)out;
	(void)url;
	(void)user;
	(void)allowed;
	g->auth = 1;
	git_error_set_str(GIT_ERROR_NET, "authentication required");
	return GIT_EUSER;
}

static int push_ref_cb(const char *refname, const char *status, void *payload)
{
	struct gctx *g = payload;

	if (status && !g->rejected[0])
		snprintf(g->rejected, sizeof(g->rejected), "%s: %s", refname, status);
	return 0;
}

static void callbacks_init(git_remote_callbacks *cb, struct gctx *g)
{
	cb->credentials = cred_cb;
	cb->push_update_reference = push_ref_cb;
	cb->payload = g;
}

/* mkdir -p for every directory leading to the last component of `path`. */
static int mkdir_parents(const char *path)
{
	char *p = strdup(path);
	int rc = 0;

	if (!p)
		return artifs_error(-ENOMEM, "out of memory");
	for (char *q = p + 1; *q && !rc; q++) {
		if (*q != '/')
			continue;
		*q = '\0';
		if (mkdir(p, 0755) && errno != EEXIST)
			rc = artifs_error(-errno, "cannot create '%s': %s", p, strerror(errno));
		*q = '/';
	}
	free(p);
	return rc;
}

/*
 * Begin an operation: validate, init libgit2, lock WORKDIR.lock.  The lock
 * keeps two artifs processes from resetting and committing in the same
 * clone at once; it lives beside the clone because the clone may not exist.
 */
static int gctx_begin(struct gctx *g, const artifs_gitops_config *c)
{
	const char *branch = branch_of(c);
	size_t wl;
	int valid = 0, rc;

	memset(g, 0, sizeof(*g));
	g->lock_fd = -1;
	g->c = c;
	if (!c->workdir || !*c->workdir)
		return artifs_error(ARTIFS_EINVAL, "gitops: no workdir for the managed clone");
	wl = strlen(c->workdir);
	while (wl > 1 && c->workdir[wl - 1] == '/')
		wl--;
	if (!(g->local_ref = artifs_strfmt("refs/heads/%s", branch)) ||
	    !(g->remote_ref = artifs_strfmt("refs/remotes/origin/%s", branch)) ||
	    !(g->lock_path = artifs_strfmt("%.*s.lock", (int)wl, c->workdir)))
		return artifs_error(-ENOMEM, "out of memory");
	if (git_libgit2_init() < 0)
		return git_fail(NULL, "cannot initialise libgit2");
	g->inited = 1;
	if (git_reference_name_is_valid(&valid, g->local_ref) < 0 || !valid)
		return artifs_error(ARTIFS_EINVAL, "gitops: invalid branch name '%s'", branch);
	if ((rc = mkdir_parents(g->lock_path)))
		return rc;
	if ((g->lock_fd = open(g->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
		return artifs_error(-errno, "cannot open '%s': %s", g->lock_path, strerror(errno));
	while (flock(g->lock_fd, LOCK_EX) < 0)
		if (errno != EINTR)
			return artifs_error(-errno, "cannot lock '%s': %s", g->lock_path, strerror(errno));
	return 0;
}

static void gctx_end(struct gctx *g)
{
	git_remote_free(g->remote);
	git_repository_free(g->repo);
	if (g->inited)
		git_libgit2_shutdown();
	if (g->lock_fd >= 0)
		close(g->lock_fd);	/* releases the lock */
	free(g->local_ref);
	free(g->remote_ref);
	free(g->lock_path);
}

/*
 * origin is built in memory from the configured url, never looked up from
 * the clone's config, and without insteadOf rewriting: in libgit2 1.5.1
 * git_remote_lookup(), git_remote_create() and git_clone() scan the config
 * for url.*.insteadOf with git_regexp_match(), which leaks its PCRE2 match
 * data on every entry that does not match (fixed upstream by libgit2 pull
 * request #6382, in 1.6).  The url of the last successful fetch is written
 * to remote.origin.url, so that a person can run git in the clone too.
 */
static int make_remote(struct gctx *g)
{
	git_remote_create_options o;
	git_config *cfg = NULL;
	const char *was;

	git_remote_create_options_init(&o, GIT_REMOTE_CREATE_OPTIONS_VERSION);
	o.repository = g->repo;
	o.fetchspec = ORIGIN_FETCHSPEC;
	o.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF;
	if (git_remote_create_with_opts(&g->remote, g->c->url, &o))
		return git_fail(g, "gitops url '%s'", g->c->url);
	if (!git_repository_config_snapshot(&cfg, g->repo) &&
	    !git_config_get_string(&was, cfg, "remote.origin.url"))
		g->known = !strcmp(was, g->c->url);
	git_config_free(cfg);
	return 0;
}

/* The clone now mirrors url: record it (see make_remote()). */
static int record_origin(struct gctx *g)
{
	git_config *cfg = NULL;
	git_config_entry *e = NULL;
	int rc = 0, grc;

	if (g->known)
		return 0;
	if (git_repository_config(&cfg, g->repo) ||
	    git_config_set_string(cfg, "remote.origin.url", g->c->url) ||
	    ((grc = git_config_get_entry(&e, cfg, "remote.origin.fetch")) == GIT_ENOTFOUND &&
	     git_config_set_string(cfg, "remote.origin.fetch", ORIGIN_FETCHSPEC)))
		rc = git_fail(g, "cannot write the config of '%s'", g->c->workdir);
	else
		g->known = 1;
	git_config_entry_free(e);
	git_config_free(cfg);
	return rc;
}

/* Is directory `path` missing or empty?  (An error says why not.) */
static int dir_unused(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int rc = 0;

	if (!d)
		return errno == ENOENT ? 0 :
			artifs_error(-errno, "cannot read '%s': %s", path, strerror(errno));
	while (!rc && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			rc = artifs_error(ARTIFS_EGITOPS,
				"gitops workdir '%s' exists but is not a git clone; move it away or choose another",
				path);
	closedir(d);
	return rc;
}

/*
 * Open the managed clone, or create it: an empty repository with HEAD on
 * BRANCH, filled by the first fetch (a clone without git_clone(), see
 * make_remote()).
 */
static int open_clone(struct gctx *g)
{
	const char *wd = g->c->workdir;
	git_repository_init_options io;
	int grc, rc;

	grc = git_repository_open_ext(&g->repo, wd, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
	if (grc == GIT_ENOTFOUND) {
		if (!g->c->url)
			return artifs_error(ARTIFS_ENOTFOUND, "no gitops clone at '%s' and no url to clone", wd);
		if ((rc = dir_unused(wd)))
			return rc;
		/* the *_init() functions: the INIT macros trip -Wmissing-field-initializers */
		git_repository_init_options_init(&io, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
		io.flags = GIT_REPOSITORY_INIT_MKPATH | GIT_REPOSITORY_INIT_NO_REINIT;
		io.initial_head = g->local_ref;
		if (git_repository_init_ext(&g->repo, wd, &io))
			return git_fail(g, "cannot create the gitops clone '%s'", wd);
	} else if (grc) {
		return git_fail(g, "cannot open the gitops clone '%s'", wd);
	} else if (git_repository_is_bare(g->repo)) {
		return artifs_error(ARTIFS_EGITOPS,
			"'%s' is a bare repository; the gitops workdir must be a clone artifs manages", wd);
	}
	return g->c->url ? make_remote(g) : 0;
}

static int fetch(struct gctx *g)
{
	git_fetch_options o;

	git_fetch_options_init(&o, GIT_FETCH_OPTIONS_VERSION);
	callbacks_init(&o.callbacks, g);
	o.prune = GIT_FETCH_PRUNE;
	if (git_remote_fetch(g->remote, NULL, &o, "artifs: fetch")) {
		const char *u = g->c->url, *path = NULL;
		struct stat st;

		/* libgit2 calls a missing local path an "unsupported URL protocol" */
		if (!strncmp(u, "file://", 7))
			path = u + 7;
		else if (!strchr(u, ':'))
			path = u;
		if (path && stat(path, &st))
			return artifs_error(ARTIFS_EGITOPS, "cannot fetch from '%s': %s", u, strerror(errno));
		return git_fail(g, "cannot fetch from '%s'", u);
	}
	return record_origin(g);
}

/* The commit ref `name` points at; *out NULL when there is no such ref. */
static int ref_commit(git_commit **out, struct gctx *g, const char *name)
{
	git_oid id;
	int grc;

	*out = NULL;
	grc = git_reference_name_to_id(&id, g->repo, name);
	if (grc == GIT_ENOTFOUND)
		return 0;
	if (grc || git_commit_lookup(out, g->repo, &id))
		return git_fail(g, "cannot read '%s' in '%s'", name, g->c->workdir);
	return 0;
}

/*
 * Point BRANCH and HEAD at the commit the next pin goes on top of, with
 * index and working tree matching it: origin's tip; the local branch when
 * origin has none; with keep_ahead also when the local branch already
 * contains origin's tip (commits not pushed yet).  Neither: an unborn
 * branch with an empty index.
 */
static int sync_branch(struct gctx *g, int keep_ahead)
{
	git_commit *remote = NULL, *local = NULL, *target;
	git_reference *ref = NULL;
	git_index *idx = NULL;
	git_tree *tree = NULL;
	int rc;

	if ((rc = ref_commit(&remote, g, g->remote_ref)) || (rc = ref_commit(&local, g, g->local_ref)))
		goto done;
	target = remote ? remote : local;
	if (remote && local && keep_ahead &&
	    git_graph_descendant_of(g->repo, git_commit_id(local), git_commit_id(remote)) == 1)
		target = local;
	if (target) {
		git_checkout_options co;

		git_checkout_options_init(&co, GIT_CHECKOUT_OPTIONS_VERSION);
		/*
		 * As git_reset(GIT_RESET_HARD), but for a branch HEAD may not
		 * be on yet: check out against the old HEAD (so files it had
		 * and target lacks go), then take the index from the tree
		 * (dropping entries staged by an interrupted publish).
		 */
		co.checkout_strategy = GIT_CHECKOUT_FORCE;
		if (git_checkout_tree(g->repo, (const git_object *)target, &co) ||
		    git_commit_tree(&tree, target) || git_repository_index(&idx, g->repo) ||
		    git_index_read_tree(idx, tree) || git_index_write(idx) ||
		    git_reference_create(&ref, g->repo, g->local_ref, git_commit_id(target), 1, "artifs: reset")) {
			rc = git_fail(g, "cannot reset '%s' in '%s'", g->local_ref, g->c->workdir);
			goto done;
		}
	}
	if (git_repository_set_head(g->repo, g->local_ref)) {
		rc = git_fail(g, "cannot check out '%s' in '%s'", g->local_ref, g->c->workdir);
		goto done;
	}
	if (!target && (git_repository_index(&idx, g->repo) || git_index_clear(idx) || git_index_write(idx)))
		rc = git_fail(g, "cannot reset the index of '%s'", g->c->workdir);
done:
	git_tree_free(tree);
	git_index_free(idx);
	git_reference_free(ref);
	git_commit_free(remote);
	git_commit_free(local);
	return rc;
}

/* Write WORKDIR/path through a temporary file in its directory. */
static int write_file(const char *wd, const char *path, const char *data, size_t len)
{
	char *full = artifs_strfmt("%s/%s", wd, path), *tmp = NULL, *slash;
	int fd = -1, rc = 0;
	size_t off = 0;

	if (!full)
		return artifs_error(-ENOMEM, "out of memory");
	if ((rc = mkdir_parents(full)))
		goto done;
	slash = strrchr(full, '/');
	if (!(tmp = artifs_strfmt("%.*s/.artifs-pin-XXXXXX", (int)(slash - full), full))) {
		rc = artifs_error(-ENOMEM, "out of memory");
		goto done;
	}
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		rc = artifs_error(-errno, "cannot create a file in '%.*s': %s", (int)(slash - full), full,
			strerror(errno));
		free(tmp);
		tmp = NULL;
		goto done;
	}
	while (off < len) {
		ssize_t w = write(fd, data + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = artifs_error(-errno, "cannot write '%s': %s", tmp, strerror(errno));
			goto done;
		}
		off += (size_t)w;
	}
	if (fchmod(fd, 0644)) {
		rc = artifs_error(-errno, "cannot write '%s': %s", tmp, strerror(errno));
		goto done;
	}
	rc = close(fd);
	fd = -1;
	if (rc)
		rc = artifs_error(-errno, "cannot write '%s': %s", tmp, strerror(errno));
	else if (rename(tmp, full))
		rc = artifs_error(-errno, "cannot rename '%s' to '%s': %s", tmp, full, strerror(errno));
done:
	if (fd >= 0)
		close(fd);
	if (rc && tmp)
		unlink(tmp);
	free(tmp);
	free(full);
	return rc;
}

/* Does commit `head` hold exactly data[0..len) at `path`? */
static int has_bytes(git_commit *head, const char *path, const char *data, size_t len)
{
	git_tree *tree = NULL;
	git_tree_entry *e = NULL;
	git_blob *blob = NULL;
	int same = 0;

	if (!git_commit_tree(&tree, head) && !git_tree_entry_bypath(&e, tree, path) &&
	    git_tree_entry_filemode(e) == GIT_FILEMODE_BLOB &&
	    !git_blob_lookup(&blob, git_commit_owner(head), git_tree_entry_id(e)))
		same = (size_t)git_blob_rawsize(blob) == len && !memcmp(git_blob_rawcontent(blob), data, len);
	git_blob_free(blob);
	git_tree_entry_free(e);
	git_tree_free(tree);
	return same;
}

/*
 * Commit the pin file on BRANCH (HEAD) unless its tip already has these
 * bytes at `path`.  *out gets the tip afterwards.
 */
static int apply_pin(struct gctx *g, const char *path, const char *data, const git_signature *sig,
	const char *msg, git_oid *out)
{
	git_commit *head = NULL;
	git_index *idx = NULL;
	git_tree *tree = NULL;
	git_index_entry e;
	git_oid tree_id;
	size_t len = strlen(data);
	int rc;

	if ((rc = ref_commit(&head, g, g->local_ref)))
		return rc;
	if (head && has_bytes(head, path, data, len)) {
		git_oid_cpy(out, git_commit_id(head));
		goto done;
	}
	if ((rc = write_file(g->c->workdir, path, data, len)))
		goto done;
	/* from the buffer: no filters, the blob is exactly the pin's bytes */
	memset(&e, 0, sizeof(e));
	e.mode = GIT_FILEMODE_BLOB;
	e.path = path;
	if (git_repository_index(&idx, g->repo) || git_index_add_from_buffer(idx, &e, data, len) ||
	    git_index_write(idx) || git_index_write_tree(&tree_id, idx) ||
	    git_tree_lookup(&tree, g->repo, &tree_id)) {
		rc = git_fail(g, "cannot stage '%s' in '%s'", path, g->c->workdir);
		goto done;
	}
	{
		const git_commit *parents[1] = { head };

		if (git_commit_create(out, g->repo, g->local_ref, sig, sig, NULL, msg, tree, head ? 1 : 0,
				parents))
			rc = git_fail(g, "cannot commit '%s' in '%s'", path, g->c->workdir);
	}
done:
	git_tree_free(tree);
	git_index_free(idx);
	git_commit_free(head);
	return rc;
}

/* The directory of a path remote (a plain path or file://), or NULL. */
static const char *local_path(const char *u)
{
	if (!strncmp(u, "file://", 7))
		return u + 7;
	return strchr(u, ':') ? NULL : u;
}

/*
 * Push to a path remote by compare-and-swap.  libgit2's local transport
 * moves the remote's ref without checking its old value, so two pushes at
 * once could both "succeed" and one commit be lost.  Instead the objects
 * travel under a ref of their own (no one else writes it), and the branch
 * moves in the remote repository with git_reference_create_matching(),
 * which checks the old value under the ref's lock file.
 * 0 pushed, 1 lost the race, or an error.
 */
static int push_local(struct gctx *g, const char *dir)
{
	git_push_options o;
	git_repository *r = NULL;
	git_reference *ref = NULL;
	git_oid head, old;
	char tmp[96], *spec;
	git_strarray specs;
	int have_old, grc, rc = 0;

	snprintf(tmp, sizeof(tmp), "refs/artifs-incoming/%ld-%ld", (long)getpid(), (long)time(NULL));
	if (!(spec = artifs_strfmt("+%s:%s", g->local_ref, tmp)))
		return artifs_error(-ENOMEM, "out of memory");
	specs.strings = &spec;
	specs.count = 1;
	git_push_options_init(&o, GIT_PUSH_OPTIONS_VERSION);
	callbacks_init(&o.callbacks, g);
	g->rejected[0] = '\0';
	grc = git_remote_push(g->remote, &specs, &o);
	free(spec);
	if (grc || g->rejected[0])
		return git_fail(g, "cannot push to '%s'", git_remote_url(g->remote));
	if (git_reference_name_to_id(&head, g->repo, g->local_ref))
		return git_fail(g, "cannot read %s", g->local_ref);
	/* the remote's branch as we last fetched it: what we built on */
	have_old = !git_reference_name_to_id(&old, g->repo, g->remote_ref);
	if (git_repository_open_bare(&r, dir))
		return git_fail(g, "cannot open '%s'", dir);
	grc = have_old ?
		git_reference_create_matching(&ref, r, g->local_ref, &head, 1, &old, "artifs: publish") :
		git_reference_create(&ref, r, g->local_ref, &head, 0, "artifs: publish");
	if (grc == GIT_EMODIFIED || grc == GIT_EEXISTS || grc == GIT_ELOCKED) {
		rc = 1;		/* someone else moved it first */
	} else if (grc) {
		rc = git_fail(g, "cannot update %s in '%s'", g->local_ref, dir);
	}
	git_reference_free(ref);
	ref = NULL;
	if (!git_reference_lookup(&ref, r, tmp))
		git_reference_delete(ref);
	git_reference_free(ref);
	git_repository_free(r);
	if (rc == 1) {
		struct timespec ts = { 0, (long)(10 + (getpid() % 40)) * 1000000L };
		nanosleep(&ts, NULL);
	}
	return rc;
}

/* Push BRANCH: 0 pushed, 1 rejected as not a fast-forward, or an error. */
static int push(struct gctx *g)
{
	git_push_options o;
	char *spec = artifs_strfmt("%s:%s", g->local_ref, g->local_ref);
	git_strarray specs = { &spec, 1 };
	int grc, rc = 0;

	if (!spec)
		return artifs_error(-ENOMEM, "out of memory");
	{
		const char *dir = local_path(git_remote_url(g->remote));
		if (dir) {
			free(spec);
			return push_local(g, dir);
		}
	}
	git_push_options_init(&o, GIT_PUSH_OPTIONS_VERSION);
	callbacks_init(&o.callbacks, g);
	g->rejected[0] = '\0';
	grc = git_remote_push(g->remote, &specs, &o);
	free(spec);
	/*
	 * libgit2 checks fast-forwardness itself against the refs the remote
	 * advertised (GIT_ENONFASTFORWARD); a remote that moves after that
	 * reports it per ref ("non-fast-forward", "fetch first", "stale info").
	 */
	if (grc == GIT_ENONFASTFORWARD)
		return 1;
	if (grc)
		return git_fail(g, "cannot push '%s' to '%s'", g->local_ref, git_remote_url(g->remote));
	if (g->rejected[0]) {
		if (strstr(g->rejected, "fast-forward") || strstr(g->rejected, "fetch first") ||
		    strstr(g->rejected, "stale"))
			return 1;
		/*
		 * A path remote (libgit2's local transport) reports a push racing
		 * another one as a ref or lock that already exists: also a lost
		 * race.  Back off a little so the two do not collide again.
		 */
		if (strstr(g->rejected, "already exists") || strstr(g->rejected, ".lock")) {
			struct timespec ts = { 0, (long)(10 + (getpid() % 40)) * 1000000L };
			nanosleep(&ts, NULL);
			return 1;
		}
		rc = artifs_error(ARTIFS_EGITOPS, "'%s' refused the push of %s", git_remote_url(g->remote),
			g->rejected);
	}
	return rc;
}

/* Does origin lack the local tip `head`? */
static int need_push(struct gctx *g, const git_oid *head)
{
	git_oid id;

	return git_reference_name_to_id(&id, g->repo, g->remote_ref) || !git_oid_equal(&id, head);
}

static int make_signature(git_signature **out, const char *author)
{
	char host[256], *name = NULL, *email = NULL;
	const char *lt;
	size_t len, nl;
	int rc = 0;

	if (!author) {
		if (gethostname(host, sizeof(host)) || !host[0])
			strcpy(host, "localhost");
		host[sizeof(host) - 1] = '\0';
		if (!(email = artifs_strfmt("artifs@%s", host)))
			return artifs_error(-ENOMEM, "out of memory");
		if (git_signature_now(out, "artifs", email))
			rc = git_fail(NULL, "cannot make the author 'artifs <%s>'", email);
		free(email);
		return rc;
	}
	len = strlen(author);
	lt = strrchr(author, '<');
	if (!lt || len < 3 || author[len - 1] != '>')
		return artifs_error(ARTIFS_EINVAL, "gitops author '%s' is not 'Name <email>'", author);
	nl = (size_t)(lt - author);
	while (nl && author[nl - 1] == ' ')
		nl--;
	if (!nl || lt + 2 == author + len)
		return artifs_error(ARTIFS_EINVAL, "gitops author '%s' is not 'Name <email>'", author);
	if (!(name = strndup(author, nl)) || !(email = strndup(lt + 1, (size_t)(author + len - 1 - (lt + 1))))) {
		rc = artifs_error(-ENOMEM, "out of memory");
	} else if (git_signature_now(out, name, email)) {
		const git_error *e = git_error_last();

		rc = artifs_error(ARTIFS_EINVAL, "gitops author '%s': %s", author,
			e && e->message ? e->message : "invalid");
	}
	free(name);
	free(email);
	return rc;
}

/* The push failed for good: say that the store and git now disagree. */
static int push_failed(struct gctx *g, const artifs_pin *pin, const git_oid *head)
{
	char why[512], hex[GIT_OID_HEXSZ + 1];

	snprintf(why, sizeof(why), "%s", artifs_error_last());
	git_oid_tostr(hex, sizeof(hex), head);
	return artifs_error(ARTIFS_EGITOPS,
		"%s; the store moved but git did not: %s@%s is committed in '%s' (%.12s) but not on '%s' "
		"branch '%s'; publish again to retry (it re-applies the pin on top of the remote branch)",
		why, pin->repo, pin->env, g->c->workdir, hex, g->c->url, branch_of(g->c));
}

int artifs_gitops_publish(const artifs_gitops_config *c, const artifs_pin *pin, const char *msg,
	char out_commit[41])
{
	struct gctx g;
	git_signature *sig = NULL;
	char *path = NULL, *data = NULL, *text = NULL;
	git_oid head;
	int rc;

	if (!c->url || !*c->url)
		return artifs_error(ARTIFS_EINVAL, "gitops: no repository url to publish to");
	if ((rc = artifs_gitops_pin_path(&path, c, pin->repo, pin->env)) ||
	    (rc = artifs_pin_encode(&data, pin)))
		goto out;
	/* git messages end with a newline */
	if (!msg || !*msg)
		text = artifs_strfmt("Promote %s to %s\n\ncommit %s\n", pin->repo, pin->env, pin->commit);
	else
		text = artifs_strfmt("%s%s", msg, msg[strlen(msg) - 1] == '\n' ? "" : "\n");
	if (!text) {
		rc = artifs_error(-ENOMEM, "out of memory");
		goto out;
	}
	if ((rc = gctx_begin(&g, c)))
		goto done;
	if ((rc = make_signature(&sig, c->author)) || (rc = open_clone(&g)) || (rc = fetch(&g)) ||
	    (rc = sync_branch(&g, !c->push)) ||
	    (rc = apply_pin(&g, path, data, sig, text, &head)))
		goto done;
	for (int retry = 0; c->push && need_push(&g, &head); retry++) {
		if ((rc = push(&g)) < 0) {
			rc = push_failed(&g, pin, &head);
			break;
		}
		if (rc == 0)
			break;
		if (retry == ARTIFS_GITOPS_PUSH_RETRIES) {
			artifs_error(ARTIFS_EGITOPS, "the push was rejected %d times as others kept pushing",
				retry + 1);
			rc = push_failed(&g, pin, &head);
			break;
		}
		/* someone pushed meanwhile: re-apply on top of their tip */
		if ((rc = fetch(&g)) || (rc = sync_branch(&g, 0)) ||
		    (rc = apply_pin(&g, path, data, sig, text, &head))) {
			rc = push_failed(&g, pin, &head);
			break;
		}
	}
	if (!rc)
		git_oid_tostr(out_commit, 41, &head);
done:
	git_signature_free(sig);
	gctx_end(&g);
out:
	free(text);
	free(data);
	free(path);
	return rc;
}

/* Reading pins */

struct walk {
	struct gctx *g;
	const char *tmpl;
	int (*fn)(const artifs_pin *pin, void *ctx);
	void *ctx;
	int rc;			/* fn's non-zero return, or an error */
	size_t nbad;
	char bad_path[256];
	char bad_why[256];
};

static void bad(struct walk *w, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void bad(struct walk *w, const char *path, const char *fmt, ...)
{
	va_list ap;

	if (w->nbad++)
		return;
	snprintf(w->bad_path, sizeof(w->bad_path), "%s", path);
	va_start(ap, fmt);
	vsnprintf(w->bad_why, sizeof(w->bad_why), fmt, ap);
	va_end(ap);
}

/* An optional string field: absent or null leaves *out NULL. */
static int opt_str(const char **out, json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return -1;
	*out = json_string_value(v);
	return 0;
}

/* Parse the pin file at `path` and pass it to fn; a bad one is recorded. */
static void read_one(struct walk *w, const char *path, const git_oid *blob_id)
{
	git_blob *blob = NULL;
	json_error_t err;
	json_t *o = NULL, *tags, *v;
	const char **tagv = NULL, *at = NULL;
	artifs_pin pin;
	char *want = NULL;
	size_t i;

	memset(&pin, 0, sizeof(pin));
	if (git_blob_lookup(&blob, w->g->repo, blob_id)) {
		w->rc = git_fail(w->g, "cannot read pin file '%s'", path);
		return;
	}
	if (!(o = json_loadb(git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob),
			JSON_REJECT_DUPLICATES, &err))) {
		bad(w, path, "not JSON: line %d: %s", err.line, err.text);
		goto done;
	}
	if (!json_is_object(o)) {
		bad(w, path, "not a JSON object");
		goto done;
	}
	if (opt_str(&pin.repo, o, "repository") || opt_str(&pin.env, o, "environment") ||
	    opt_str(&pin.commit, o, "commit") || !pin.repo || !pin.env || !pin.commit) {
		bad(w, path, "'repository', 'environment' and 'commit' must be strings");
		goto done;
	}
	if (!hex_ok(pin.commit)) {
		bad(w, path, "commit '%s' is not 32 hex digits", pin.commit);
		goto done;
	}
	if (opt_str(&pin.tree, o, "tree") || (pin.tree && !hex_ok(pin.tree))) {
		bad(w, path, "'tree' is not 32 hex digits");
		goto done;
	}
	if (opt_str(&pin.message, o, "message") || opt_str(&pin.promoted_by, o, "promoted_by")) {
		bad(w, path, "'message' and 'promoted_by' must be strings");
		goto done;
	}
	if (opt_str(&at, o, "promoted_at") || (at && parse_time(&pin.promoted_at, at))) {
		bad(w, path, "'promoted_at' is not an ISO 8601 UTC time like 2026-11-28T23:22:00Z");
		goto done;
	}
	tags = json_object_get(o, "tags");
	if (tags && !json_is_null(tags)) {
		if (!json_is_array(tags)) {
			bad(w, path, "'tags' is not an array");
			goto done;
		}
		if (!(tagv = calloc(json_array_size(tags) + 1, sizeof(*tagv)))) {
			w->rc = artifs_error(-ENOMEM, "out of memory");
			goto done;
		}
		json_array_foreach(tags, i, v) {
			if (!json_is_string(v)) {
				bad(w, path, "'tags' has an element that is not a string");
				goto done;
			}
			tagv[i] = json_string_value(v);
		}
		pin.tags = tagv;
		pin.ntags = json_array_size(tags);
	}
	/* the file must lie where its own repository and environment put it */
	if (artifs_gitops_pin_path(&want, w->g->c, pin.repo, pin.env)) {
		bad(w, path, "%s", artifs_error_last());
		goto done;
	}
	if (strcmp(want, path)) {
		bad(w, path, "it pins '%s' in '%s', whose pin file is '%s'", pin.repo, pin.env, want);
		goto done;
	}
	w->rc = w->fn(&pin, w->ctx);
done:
	free(want);
	free(tagv);
	json_decref(o);
	git_blob_free(blob);
}

static int walk_cb(const char *root, const git_tree_entry *e, void *payload)
{
	struct walk *w = payload;
	char *path;

	if (git_tree_entry_type(e) != GIT_OBJECT_BLOB || git_tree_entry_filemode(e) == GIT_FILEMODE_LINK)
		return 0;
	if (!(path = artifs_strfmt("%s%s", root, git_tree_entry_name(e)))) {
		w->rc = artifs_error(-ENOMEM, "out of memory");
		return GIT_EUSER;
	}
	if (tmpl_match(w->tmpl, path))
		read_one(w, path, git_tree_entry_id(e));
	free(path);
	return w->rc ? GIT_EUSER : 0;
}

int artifs_gitops_read_pins(const artifs_gitops_config *c,
	int (*fn)(const artifs_pin *pin, void *ctx), void *ctx)
{
	struct gctx g;
	struct walk w;
	git_commit *tip = NULL;
	git_tree *tree = NULL;
	const char *from;
	int rc;

	memset(&w, 0, sizeof(w));
	w.g = &g;
	w.tmpl = tmpl_of(c);
	w.fn = fn;
	w.ctx = ctx;
	if ((rc = tmpl_check(w.tmpl)))
		return rc;
	if ((rc = gctx_begin(&g, c)) || (rc = open_clone(&g)))
		goto done;
	/* an unreachable remote: read what the last fetch from it brought */
	if (g.remote && (rc = fetch(&g)) && !g.known)
		goto done;
	from = g.remote_ref;
	if ((rc = ref_commit(&tip, &g, from)))
		goto done;
	if (!tip) {
		from = g.local_ref;
		if ((rc = ref_commit(&tip, &g, from)) || !tip)
			goto done;	/* no branch anywhere: no pins */
	}
	if (git_commit_tree(&tree, tip)) {
		rc = git_fail(&g, "cannot read the tree of '%s'", from);
		goto done;
	}
	if (git_tree_walk(tree, GIT_TREEWALK_PRE, walk_cb, &w) && !w.rc)
		w.rc = git_fail(&g, "cannot walk '%s'", from);
	rc = w.rc;
	from += strlen(from == g.remote_ref ? "refs/remotes/" : "refs/heads/");
	if (!rc && w.nbad)
		rc = w.nbad > 1 ?
			artifs_error(ARTIFS_EGITOPS, "malformed pin file '%s' on branch '%s': %s (and %zu more)",
				w.bad_path, from, w.bad_why, w.nbad - 1) :
			artifs_error(ARTIFS_EGITOPS, "malformed pin file '%s' on branch '%s': %s", w.bad_path,
				from, w.bad_why);
done:
	git_tree_free(tree);
	git_commit_free(tip);
	gctx_end(&g);
	return rc;
}
