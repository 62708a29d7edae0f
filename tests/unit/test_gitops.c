/*
 * test_gitops.c - publishing environment pins to a git repository and
 * reading them back, checked with the git command against local bare
 * repositories.
 */
#include "helpers.h"

#include "gitops.h"

#include <git2.h>
#include <git2/sys/transport.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define C1 "0123456789abcdef0123456789abcdef"
#define C2 "fedcba9876543210fedcba9876543210"
#define C3 "00112233445566778899aabbccddeeff"
#define T1 "aaaabbbbccccddddeeeeffff00001111"
#define PIN_PATH "environments/production/models/m.json"

static const char *const TAGS[] = { "v1", "v1.0" };

typedef struct fx {
	char *tmp;
	char *bare;	/* the GitOps repository: tmp/remote.git */
	char *work;	/* the managed clone: tmp/store/gitops */
	char *url;	/* file:// URL of bare */
	artifs_gitops_config c;
} fx;

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define SH_OK(...) assert_int_equal(sh(__VA_ARGS__), 0)

/* The standard output of a shell command (it must succeed); malloc'd. */
static char *out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *out(const char *fmt, ...)
{
	char cmd[4096], *buf = NULL;
	size_t len = 0;
	va_list ap;
	FILE *p, *m;
	int ch;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	assert_non_null(p = popen(cmd, "r"));
	assert_non_null(m = open_memstream(&buf, &len));
	while ((ch = fgetc(p)) != EOF)
		fputc(ch, m);
	fclose(m);
	if (pclose(p) != 0)
		fail_msg("command failed: %s", cmd);
	return buf;
}

static void assert_out(const char *want, char *got)
{
	assert_string_equal(got, want);
	free(got);
}

static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->tmp = test_mkdtemp();
	/* keep the user's git configuration out of both git and libgit2 */
	setenv("HOME", f->tmp, 1);
	setenv("XDG_CONFIG_HOME", f->tmp, 1);
	setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
	setenv("GIT_AUTHOR_NAME", "Someone Else", 1);
	setenv("GIT_AUTHOR_EMAIL", "else@example.com", 1);
	setenv("GIT_COMMITTER_NAME", "Someone Else", 1);
	setenv("GIT_COMMITTER_EMAIL", "else@example.com", 1);
	f->bare = test_path(f->tmp, "remote.git");
	f->work = test_path(f->tmp, "store/gitops");
	assert_true(asprintf(&f->url, "file://%s", f->bare) > 0);
	SH_OK("git init -q --bare -b main '%s'", f->bare);
	f->c.url = f->bare;
	f->c.author = "Promoter Bot <promo@example.com>";
	f->c.push = 1;
	f->c.workdir = f->work;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx *f = *state;

	test_rmtree(f->tmp);
	free(f->tmp);
	free(f->bare);
	free(f->work);
	free(f->url);
	free(f);
	return 0;
}

#define FX_TEST(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

static artifs_pin pin_of(const char *repo, const char *env, const char *commit)
{
	artifs_pin p = { repo, env, commit, T1, TAGS, 2, "ship it", "alice", 1795908120 };

	return p;
}

static char *encode(const artifs_pin *p)
{
	char *s = NULL;

	assert_ok(artifs_pin_encode(&s, p));
	return s;
}

/* `git show main:path` of the bare repository equals the pin's bytes. */
static void assert_remote_pin(fx *f, const char *branch, const char *path, const artifs_pin *p)
{
	char *want = encode(p);

	assert_out(want, out("git --git-dir='%s' show '%s:%s'", f->bare, branch, path));
	free(want);
}

static char *rev(const char *gitdir, const char *what)
{
	char *s = out("git --git-dir='%s' rev-parse '%s'", gitdir, what);

	s[strcspn(s, "\n")] = '\0';
	return s;
}

static void test_pin_encode_format(void **state)
{
	artifs_pin p = pin_of("models/m", "production", C1), q = p;
	char *s;

	(void)state;
	s = encode(&p);
	assert_string_equal(s,
		"{\n"
		"  \"repository\": \"models/m\",\n"
		"  \"environment\": \"production\",\n"
		"  \"commit\": \"" C1 "\",\n"
		"  \"tree\": \"" T1 "\",\n"
		"  \"tags\": [\n"
		"    \"v1\",\n"
		"    \"v1.0\"\n"
		"  ],\n"
		"  \"message\": \"ship it\",\n"
		"  \"promoted_by\": \"alice\",\n"
		"  \"promoted_at\": \"2026-11-28T23:22:00Z\"\n"
		"}\n");
	free(s);

	q.tags = NULL;
	q.ntags = 0;
	q.tree = NULL;
	q.message = NULL;
	s = encode(&q);
	assert_non_null(strstr(s, "\"tree\": null,\n  \"tags\": [],\n  \"message\": null,"));
	free(s);

	q.commit = "not-hex";
	assert_rc(ARTIFS_EINVAL, artifs_pin_encode(&s, &q));
	q = p;
	q.repo = "things/m";
	assert_rc(ARTIFS_EINVAL, artifs_pin_encode(&s, &q));
	q = p;
	q.message = "\xff\xfe";
	assert_rc(ARTIFS_EINVAL, artifs_pin_encode(&s, &q));
}

static void test_pin_path(void **state)
{
	artifs_gitops_config c = { 0 };
	char *p = NULL;

	(void)state;
	assert_ok(artifs_gitops_pin_path(&p, &c, "models/m", "production"));
	assert_string_equal(p, "environments/production/models/m.json");
	free(p);
	c.path_tmpl = "pins/{repo}/{env}.json";
	assert_ok(artifs_gitops_pin_path(&p, &c, "datasets/d.v2", "staging"));
	assert_string_equal(p, "pins/datasets/d.v2/staging.json");
	free(p);

	const char *refused[] = {
		"../x/{env}/{repo}.json",	/* escapes the repository */
		"{env}/../{repo}.json",
		"/abs/{env}/{repo}.json",
		"{env}//{repo}.json",		/* empty component */
		"{env}/{repo}/",
		"./{env}/{repo}.json",
		".git/{env}/{repo}",		/* inside git's own directory */
		"{env} {repo}.json",		/* a character outside the set */
		"{env}/{oops}/{repo}.json",	/* unknown placeholder */
		"{env}/{name}.json",		/* models/x and datasets/x would share a file */
		"pins/{repo}.json",		/* every environment would share a file */
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		c.path_tmpl = refused[i];
		p = NULL;
		assert_rc(ARTIFS_EINVAL, artifs_gitops_pin_path(&p, &c, "models/m", "production"));
		assert_null(p);
	}
	c.path_tmpl = "../x";
	assert_rc(ARTIFS_EINVAL, artifs_gitops_pin_path(&p, &c, "models/m", "production"));

	c.path_tmpl = NULL;
	assert_rc(ARTIFS_EINVAL, artifs_gitops_pin_path(&p, &c, "models/../m", "production"));
	assert_rc(ARTIFS_EINVAL, artifs_gitops_pin_path(&p, &c, "models/m", "prod/eu"));
	assert_rc(ARTIFS_EINVAL, artifs_gitops_pin_path(&p, &c, "m", "production"));
}

static void test_publish_commits_and_pushes_pin(void **state)
{
	fx *f = *state;
	artifs_pin p = pin_of("models/m", "production", C1);
	char id[41], *tip, *file, *want;

	assert_ok(artifs_gitops_publish(&f->c, &p, "Promote models/m to production\n\nship it", id));
	assert_out("Promoter Bot\npromo@example.com\nPromoter Bot\npromo@example.com\n"
		"Promote models/m to production\nship it\n\n",
		out("git --git-dir='%s' log --format='%%an%%n%%ae%%n%%cn%%n%%ce%%n%%s%%n%%b' main", f->bare));
	assert_remote_pin(f, "main", PIN_PATH, &p);
	tip = rev(f->bare, "main");
	assert_string_equal(id, tip);
	free(tip);

	/* the managed clone holds the file, clean: no temporary files left */
	file = test_path(f->work, PIN_PATH);
	want = encode(&p);
	assert_out(want, out("cat '%s'", file));
	assert_out("", out("git -C '%s' status --porcelain --untracked-files=all", f->work));
	free(file);
	free(want);
}

static void test_republish_same_pin_makes_no_commit(void **state)
{
	fx *f = *state;
	artifs_pin p = pin_of("models/m", "production", C1), s = pin_of("models/m", "staging", C2);
	char id1[41], id2[41], id3[41], id4[41];

	assert_ok(artifs_gitops_publish(&f->c, &p, "Promote models/m to production", id1));
	/* an edit in the managed clone is not a reason to commit, and is undone */
	test_write_file(f->work, PIN_PATH, "{}\n", 3, 0644);
	assert_ok(artifs_gitops_publish(&f->c, &p, "Promote models/m to production again", id2));
	assert_string_equal(id1, id2);
	assert_out("1\n", out("git --git-dir='%s' rev-list --count main", f->bare));
	assert_out("", out("git -C '%s' status --porcelain", f->work));

	/* another environment: a second file in a second commit */
	assert_ok(artifs_gitops_publish(&f->c, &s, "Promote models/m to staging", id3));
	assert_string_not_equal(id3, id1);
	assert_out("Promote models/m to staging\nPromote models/m to production\n",
		out("git --git-dir='%s' log --format=%%s main", f->bare));
	assert_remote_pin(f, "main", PIN_PATH, &p);
	assert_remote_pin(f, "main", "environments/staging/models/m.json", &s);

	/* a new version for production replaces its file */
	p.commit = C3;
	assert_ok(artifs_gitops_publish(&f->c, &p, "Promote models/m to production", id4));
	assert_out("3\n", out("git --git-dir='%s' rev-list --count main", f->bare));
	assert_remote_pin(f, "main", PIN_PATH, &p);
}

/* A clone made with git commits `file` and pushes it to main. */
static void other_push(fx *f, const char *file)
{
	char *other = test_path(f->tmp, "other");

	if (sh("test -d '%s'", other))
		SH_OK("git clone -q -b main '%s' '%s'", f->bare, other);
	else
		SH_OK("git -C '%s' pull -q --ff-only", other);
	SH_OK("cd '%s' && echo hello >>'%s' && git add '%s' && git commit -q -m 'Edit %s' && git push -q origin main",
		other, file, file, file);
	free(other);
}

static void test_stale_clone_publishes_on_top(void **state)
{
	fx *f = *state;
	artifs_pin p = pin_of("models/m", "production", C1), q = pin_of("datasets/d", "production", C2);
	char id[41], *tip;

	assert_ok(artifs_gitops_publish(&f->c, &p, "Promote models/m to production", id));
	other_push(f, "README.md");
	/* something staged in the managed clone (an interrupted publish) stays out */
	SH_OK("echo stray >'%s/stray.txt' && git -C '%s' add stray.txt", f->work, f->work);
	/* the managed clone is one commit behind */
	assert_ok(artifs_gitops_publish(&f->c, &q, "Promote datasets/d to production", id));
	assert_out("", out("git --git-dir='%s' ls-tree --name-only main stray.txt", f->bare));
	assert_out("Promote datasets/d to production\nEdit README.md\nPromote models/m to production\n",
		out("git --git-dir='%s' log --format=%%s main", f->bare));
	assert_out("", out("git --git-dir='%s' rev-list --merges main", f->bare));
	assert_out("hello\n", out("git --git-dir='%s' show main:README.md", f->bare));
	assert_remote_pin(f, "main", PIN_PATH, &p);
	assert_remote_pin(f, "main", "environments/production/datasets/d.json", &q);
	tip = rev(f->bare, "main");
	assert_string_equal(id, tip);
	free(tip);
}

/*
 * A real race: a file:// transport that lets another clone push right
 * before each of our pushes connects, i.e. after publish fetched.  The
 * fast-forward check then fails and publish must fetch and re-apply.
 */
static struct {
	fx *f;
	int budget;	/* pushes still to inject */
	int injected;
	int (*connect)(git_transport *, const char *, int, const git_remote_connect_options *);
} race;

static int racy_connect(git_transport *t, const char *url, int direction,
	const git_remote_connect_options *opts)
{
	if (direction == GIT_DIRECTION_PUSH && race.budget) {
		char file[32];

		race.budget--;
		snprintf(file, sizeof(file), "race%d.txt", ++race.injected);
		other_push(race.f, file);
	}
	return race.connect(t, url, direction, opts);
}

static int racy_transport(git_transport **out_t, git_remote *owner, void *param)
{
	int rc = git_transport_local(out_t, owner, param);

	if (!rc) {
		race.connect = (*out_t)->connect;
		(*out_t)->connect = racy_connect;
	}
	return rc;
}

/* Hold a libgit2 reference so the registration outlives publish's shutdown. */
static void race_begin(fx *f, int budget)
{
	race.f = f;
	race.budget = budget;
	race.injected = 0;
	assert_true(git_libgit2_init() > 0);
	assert_int_equal(git_transport_register("file", racy_transport, NULL), 0);
	f->c.url = f->url;
}

static void race_end(void)
{
	assert_int_equal(git_transport_unregister("file"), 0);
	git_libgit2_shutdown();
}

static void test_push_race_retries_on_new_tip(void **state)
{
	fx *f = *state;
	artifs_pin p = pin_of("models/m", "production", C1), q = pin_of("models/m", "staging", C2);
	char id[41], *tip, *parent;

	f->c.url = f->url;
	assert_ok(artifs_gitops_publish(&f->c, &p, "Promote models/m to production", id));
	race_begin(f, 1);
	assert_ok(artifs_gitops_publish(&f->c, &q, "Promote models/m to staging", id));
	race_end();
	assert_int_equal(race.injected, 1);
	/* our commit sits on top of theirs: linear, nothing lost */
	assert_out("Promote models/m to staging\nEdit race1.txt\nPromote models/m to production\n",
		out("git --git-dir='%s' log --format=%%s main", f->bare));
	assert_out("", out("git --git-dir='%s' rev-list --merges main", f->bare));
	tip = rev(f->bare, "main");
	parent = rev(f->bare, "main^");
	assert_string_equal(id, tip);
	assert_out("hello\n", out("git --git-dir='%s' show main:race1.txt", f->bare));
	assert_out("Edit race1.txt\n", out("git --git-dir='%s' log -1 --format=%%s %s", f->bare, parent));
	assert_remote_pin(f, "main", "environments/staging/models/m.json", &q);
	assert_remote_pin(f, "main", PIN_PATH, &p);
	free(tip);
	free(parent);
}

static void test_push_race_gives_up(void **state)
{
	fx *f = *state;
	artifs_pin p = pin_of("models/m", "production", C1), s = pin_of("models/m", "staging", C2);
	char id[41], *tip;

	f->c.url = f->url;
	assert_ok(artifs_gitops_publish(&f->c, &s, "Promote models/m to staging", id));
	race_begin(f, 100);
	assert_rc(ARTIFS_EGITOPS, artifs_gitops_publish(&f->c, &p, "Promote models/m to production", id));
	race_end();
	/* at least one injected race per attempt (a path remote connects more than once per push) */
	assert_true(race.injected >= 1 + ARTIFS_GITOPS_PUSH_RETRIES);
	assert_non_null(strstr(artifs_error_last(), "the store moved but git did not"));
	assert_non_null(strstr(artifs_error_last(), "publish again"));
	/* the remote has only the other clone's commits */
	tip = out("git --git-dir='%s' log --format=%%s main", f->bare);
	assert_null(strstr(tip, "Promote models/m to production"));
	free(tip);

	/* without the race, publishing again succeeds on top */
	assert_ok(artifs_gitops_publish(&f->c, &p, "Promote models/m to production", id));
	assert_out("Promote models/m to production\n",
		out("git --git-dir='%s' log -1 --format=%%s main", f->bare));
	assert_remote_pin(f, "main", PIN_PATH, &p);
}

static void test_empty_remote_gets_branch(void **state)
{
	fx *f = *state;
	artifs_pin p = pin_of("datasets/d", "qa", C1);
	char id[41], *empty = test_path(f->tmp, "empty.git");

	/* HEAD names master; the pins go to a branch of their own */
	SH_OK("git init -q --bare '%s'", empty);
	f->c.url = empty;
	f->c.branch = "deploy";
	f->c.path_tmpl = "{env}/{repo}.json";
	assert_ok(artifs_gitops_publish(&f->c, &p, "Promote datasets/d to qa", id));
	assert_out("refs/heads/deploy\n",
		out("git --git-dir='%s' for-each-ref --format='%%(refname)'", empty));
	assert_out("1\n", out("git --git-dir='%s' rev-list --count deploy", empty));
	free(f->bare);
	f->bare = empty;
	assert_remote_pin(f, "deploy", "qa/datasets/d.json", &p);
}

static void test_without_push_commits_locally(void **state)
{
	fx *f = *state;
	artifs_pin p = pin_of("models/m", "production", C1), s = pin_of("models/m", "staging", C2);
	char id[41];

	f->c.push = 0;
	assert_ok(artifs_gitops_publish(&f->c, &p, "Promote models/m to production", id));
	assert_ok(artifs_gitops_publish(&f->c, &s, "Promote models/m to staging", id));
	assert_int_not_equal(sh("git --git-dir='%s' rev-parse -q --verify main >/dev/null", f->bare), 0);
	/* the second publish kept the first, unpushed commit */
	assert_out("2\n", out("git -C '%s' rev-list --count main", f->work));

	/* the next publish with push set sends both */
	f->c.push = 1;
	assert_ok(artifs_gitops_publish(&f->c, &s, "Promote models/m to staging", id));
	assert_out("2\n", out("git --git-dir='%s' rev-list --count main", f->bare));
	assert_remote_pin(f, "main", PIN_PATH, &p);
}

static void test_bad_author_refused(void **state)
{
	fx *f = *state;
	artifs_pin p = pin_of("models/m", "production", C1);
	char id[41];

	f->c.author = "no email here";
	assert_rc(ARTIFS_EINVAL, artifs_gitops_publish(&f->c, &p, "x", id));
	f->c.author = NULL;
	assert_ok(artifs_gitops_publish(&f->c, &p, "x", id));
	assert_out("artifs\n", out("git --git-dir='%s' log -1 --format=%%an main", f->bare));
}

/* Collected pins, as "repo env commit tree ntags by at\n" lines. */
typedef struct seen {
	char *lines;
	size_t len, n;
	FILE *m;
	int stop_at;	/* return 7 from this call (1-based); 0: never */
} seen;

static int collect(const artifs_pin *p, void *ctx)
{
	seen *s = ctx;

	fprintf(s->m, "%s %s %s %s %zu%s%s %s %lld\n", p->repo, p->env, p->commit, p->tree ? p->tree : "-",
		p->ntags, p->ntags ? ":" : "", p->ntags ? p->tags[p->ntags - 1] : "",
		p->promoted_by ? p->promoted_by : "-", (long long)p->promoted_at);
	return ++s->n == (size_t)s->stop_at ? 7 : 0;
}

static int read_all(fx *f, seen *s)
{
	int rc;

	s->lines = NULL;
	s->n = 0;
	assert_non_null(s->m = open_memstream(&s->lines, &s->len));
	rc = artifs_gitops_read_pins(&f->c, collect, s);
	fclose(s->m);
	return rc;
}

/* Commit files (path, content pairs) with the git command and push them. */
static void git_commit_files(fx *f, const char *const *files, size_t n)
{
	char *hand = test_path(f->tmp, "hand");

	if (sh("test -d '%s'", hand))
		SH_OK("git clone -q -b main '%s' '%s'", f->bare, hand);
	else
		SH_OK("git -C '%s' pull -q --ff-only", hand);
	for (size_t i = 0; i < n; i += 2) {
		SH_OK("mkdir -p \"$(dirname '%s/%s')\"", hand, files[i]);
		test_write_file(hand, files[i], files[i + 1], strlen(files[i + 1]), 0644);
		SH_OK("git -C '%s' add '%s'", hand, files[i]);
	}
	SH_OK("git -C '%s' commit -q -m 'by hand' && git -C '%s' push -q origin main", hand, hand);
	free(hand);
}

static void test_read_pins(void **state)
{
	fx *f = *state;
	artifs_pin p = pin_of("models/m", "production", C1), q = pin_of("datasets/d.v2", "production", C2);
	const char *const files[] = {
		"environments/staging/datasets/d.v2.json",
		"{\"repository\": \"datasets/d.v2\", \"environment\": \"staging\", \"commit\": \"" C3 "\"}\n",
		"README.md", "not a pin\n",
		"environments/production/models/notes.txt", "not a pin either\n",
	};
	char id[41];
	seen s = { 0 };

	assert_ok(artifs_gitops_publish(&f->c, &p, "Promote models/m to production", id));
	assert_ok(artifs_gitops_publish(&f->c, &q, "Promote datasets/d.v2 to production", id));
	git_commit_files(f, files, sizeof(files) / sizeof(files[0]));

	assert_ok(read_all(f, &s));
	/* git tree order: environments/production/{datasets,models}, then staging */
	assert_string_equal(s.lines,
		"datasets/d.v2 production " C2 " " T1 " 2:v1.0 alice 1795908120\n"
		"models/m production " C1 " " T1 " 2:v1.0 alice 1795908120\n"
		"datasets/d.v2 staging " C3 " - 0 - 0\n");
	free(s.lines);

	/* fn's non-zero return stops the walk and comes back */
	s.stop_at = 1;
	assert_rc(7, read_all(f, &s));
	assert_int_equal(s.n, 1);
	free(s.lines);
}

static void test_read_pins_reports_malformed(void **state)
{
	fx *f = *state;
	artifs_pin p = pin_of("models/m", "production", C1);
	const char *const bad_json[] = {
		"environments/production/models/broken.json", "{\"repository\": \"models/broken\",\n",
	};
	const char *const misplaced[] = {
		/* models/m's production pin copied to staging without editing it */
		"environments/staging/models/m.json",
		"{\"repository\": \"models/m\", \"environment\": \"production\", \"commit\": \"" C1 "\"}\n",
	};
	char id[41];
	seen s = { 0 };

	assert_ok(artifs_gitops_publish(&f->c, &p, "Promote models/m to production", id));
	git_commit_files(f, bad_json, 2);
	assert_rc(ARTIFS_EGITOPS, read_all(f, &s));
	assert_non_null(strstr(artifs_error_last(), "environments/production/models/broken.json"));
	/* the good pin still reached fn */
	assert_string_equal(s.lines, "models/m production " C1 " " T1 " 2:v1.0 alice 1795908120\n");
	free(s.lines);

	git_commit_files(f, misplaced, 2);
	assert_rc(ARTIFS_EGITOPS, read_all(f, &s));
	assert_non_null(strstr(artifs_error_last(), "environments/production/models/broken.json"));
	assert_non_null(strstr(artifs_error_last(), "1 more"));
	assert_int_equal(s.n, 1);
	free(s.lines);
}

static void test_read_pins_local_and_empty(void **state)
{
	fx *f = *state;
	artifs_pin p = pin_of("models/m", "production", C1);
	char id[41];
	seen s = { 0 };

	/* an empty remote: no pins, and a clone made on the way */
	assert_ok(read_all(f, &s));
	assert_int_equal(s.n, 0);
	free(s.lines);

	/* unpushed: read from the local branch */
	f->c.push = 0;
	assert_ok(artifs_gitops_publish(&f->c, &p, "Promote models/m to production", id));
	assert_ok(read_all(f, &s));
	assert_int_equal(s.n, 1);
	free(s.lines);

	/* no url: the clone as it is */
	f->c.url = NULL;
	assert_ok(read_all(f, &s));
	assert_int_equal(s.n, 1);
	free(s.lines);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pin_encode_format),
		cmocka_unit_test(test_pin_path),
		FX_TEST(test_publish_commits_and_pushes_pin),
		FX_TEST(test_republish_same_pin_makes_no_commit),
		FX_TEST(test_stale_clone_publishes_on_top),
		FX_TEST(test_push_race_retries_on_new_tip),
		FX_TEST(test_push_race_gives_up),
		FX_TEST(test_empty_remote_gets_branch),
		FX_TEST(test_without_push_commits_locally),
		FX_TEST(test_bad_author_refused),
		FX_TEST(test_read_pins),
		FX_TEST(test_read_pins_reports_malformed),
		FX_TEST(test_read_pins_local_and_empty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
