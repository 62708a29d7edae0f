#include "cli.h"
#include "codec.h"
#include "error.h"
#include "ref.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *cli_store_flag;

int cli_fail(const char *hint, const char *fmt, ...)
{
	va_list ap;

	fputs("artifs: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (hint)
		fprintf(stderr, "hint: %s\n", hint);
	return EXIT_FAIL;
}

void cli_warn(const char *fmt, ...)
{
	va_list ap;

	fputs("artifs: warning: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fputs("artifs: error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nhint: see 'artifs %s --help'\n", cmd);
	return EXIT_USAGE;
}

int cli_fail_rc(int rc)
{
	const char *hint = NULL;

	switch (rc) {
	case ARTIFS_ENOSTORE:
		hint = "create one with 'artifs init', or choose one with --store DIR or $ARTIFS_STORE";
		break;
	case ARTIFS_EVERSION:
		hint = "this store was written by another version of artifs";
		break;
	case ARTIFS_ECORRUPT:
	case ARTIFS_ECOLLISION:
		hint = "run 'artifs fsck' to list damaged objects";
		break;
	case ARTIFS_EBUSY:
		hint = "wait for the other operation to finish, then retry";
		break;
	case ARTIFS_ESTALE:
		hint = "another process moved the ref; run the command again";
		break;
	case ARTIFS_EIMMUTABLE:
		hint = "tag the other commit under a new name";
		break;
	case -ENOSPC:
		hint = "free some space and run it again";
		break;
	default:
		break;
	}
	return cli_fail(hint, "%s", artifs_error_last());
}

int cli_open_store(artifs_store **out, int readonly)
{
	artifs_store_opts o = ARTIFS_STORE_OPTS_INIT;
	char *path = NULL;
	int rc;

	if ((rc = artifs_store_default_path(&path, cli_store_flag)))
		return cli_fail_rc(rc);
	/*
	 * Read commands open the store read-write too (LMDB readers register
	 * in lock.mdb); on a read-only file system (a store shipped as an
	 * image, a read-only export, a snapshot) they open it read-only: no
	 * writer can exist there, so LMDB needs no reader table.  Without
	 * write access to data.mdb (a store shared read-only with other
	 * users) they open it read-only too, which needs lock.mdb writable.
	 */
	o.readonly = 0;
	rc = artifs_store_open(out, path, &o);
	if ((rc == -EROFS || rc == -EACCES) && readonly) {
		artifs_error_clear();
		o.readonly = 1;
		rc = artifs_store_open(out, path, &o);
	}
	free(path);
	/* the store's own permissions: say what each kind of command needs */
	if (rc == -EACCES)
		return cli_fail("reading a store needs write access to its lock.mdb (LMDB's table of "
			"readers); writing needs the whole store directory", "%s", artifs_error_last());
	if (rc == -EROFS)
		return cli_fail("the store is on a read-only file system: commands that only read it, "
			"and 'artifs mount', work there", "%s", artifs_error_last());
	if (rc)
		return cli_fail_rc(rc);
	return 0;
}

int cli_spec_parse(cli_spec *out, const char *arg)
{
	/*
	 * Neither REPO nor REF may hold ':' or '@', so the first ':' ends them
	 * and only an '@' before it starts REF: "REPO:dir/logo@2x.png" is a path.
	 */
	const char *colon = strchr(arg, ':');
	const char *at = memchr(arg, '@', colon ? (size_t)(colon - arg) : strlen(arg));

	memset(out, 0, sizeof(*out));
	if (at) {
		out->repo = strndup(arg, (size_t)(at - arg));
		out->ref = colon ? strndup(at + 1, (size_t)(colon - at - 1)) : strdup(at + 1);
		out->has_ref = 1;
	} else {
		out->repo = colon ? strndup(arg, (size_t)(colon - arg)) : strdup(arg);
		out->ref = strdup("main");
	}
	out->path = strdup(colon ? colon + 1 : "");
	out->has_path = colon != NULL;
	if (!out->repo || !out->ref || !out->path) {
		cli_spec_release(out);
		return artifs_error(-ENOMEM, "out of memory");
	}
	if (out->has_ref && !*out->ref) {
		cli_spec_release(out);
		return artifs_error(ARTIFS_EINVAL, "empty ref after '@' in '%s'", arg);
	}
	if (!artifs_repo_name_valid(out->repo)) {
		int rc = artifs_error(ARTIFS_EINVAL,
			"invalid repository '%s' (want datasets/NAME or models/NAME)", out->repo);
		cli_spec_release(out);
		return rc;
	}
	return 0;
}

void cli_spec_release(cli_spec *sp)
{
	free(sp->repo);
	free(sp->ref);
	free(sp->path);
	memset(sp, 0, sizeof(*sp));
}

int cli_resolve(artifs_oid *out, artifs_store *s, MDB_txn *txn, const cli_spec *sp)
{
	return artifs_rev_parse(out, s, txn, sp->repo, sp->ref);
}

double cli_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

const char *cli_bytes(char *buf, size_t len, double b)
{
	static const char *u[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
	int i = 0;

	while (b >= 1024 && i < 5) {
		b /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%.0f B", b);
	else
		snprintf(buf, len, "%.1f %s", b, u[i]);
	return buf;
}

const char *cli_time(char *buf, size_t len, int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

void cli_progress_init(cli_progress *p, const char *label)
{
	p->label = label;
	p->start = p->last = cli_now();
	p->active = isatty(STDERR_FILENO);
}

void cli_progress_cb(const artifs_progress *pr, void *ctx)
{
	cli_progress *p = ctx;
	double now, dt;
	char b1[32], b2[32];

	if (!p || !p->active)
		return;
	now = cli_now();
	if (now - p->last < 0.1)
		return;
	p->last = now;
	dt = now - p->start;
	fprintf(stderr, "\r\033[K%s: %llu files, %s, %s/s", p->label,
		(unsigned long long)pr->files, cli_bytes(b1, sizeof(b1), (double)pr->bytes),
		cli_bytes(b2, sizeof(b2), dt > 0 ? (double)pr->bytes / dt : 0));
	fflush(stderr);
}

void cli_progress_done(cli_progress *p)
{
	if (p->active)
		fputs("\r\033[K", stderr);
}

int cli_json_print(json_t *v)
{
	int rc;

	if (!v)
		return cli_fail(NULL, "out of memory");
	rc = json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	fputc('\n', stdout);
	json_decref(v);
	return rc ? cli_fail(NULL, "cannot write output") : 0;
}

json_t *cli_json_oid(const artifs_oid *id)
{
	char hex[ARTIFS_OID_HEXSZ + 1];

	return json_string(artifs_oid_fmt(hex, id));
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t len, i;
	uint32_t c;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, c = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, c = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, c = p[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if ((len == 3 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) ||
	    (len == 4 && (c < 0x10000 || c > 0x10ffff)))
		return 0;
	return len;
}

/*
 * Strings from the store (file names, messages) may hold any bytes, but a
 * JSON document must be UTF-8: jansson refuses to print anything else and
 * the output stopped half-way.  Each byte that is not part of a valid
 * sequence becomes U+FFFD.
 */
json_t *cli_json_str(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s), i = 0;
	artifs_buf b = { 0 };
	json_t *v = json_string(s);

	if (v)
		return v;
	while (i < n) {
		size_t l = utf8_len(p + i, n - i);
		if (l ? artifs_buf_put(&b, p + i, l) : artifs_buf_put(&b, "\xef\xbf\xbd", 3))
			break;
		i += l ? l : 1;
	}
	v = i == n ? json_stringn(b.len ? (const char *)b.ptr : "", b.len) : NULL;
	artifs_buf_release(&b);
	return v;
}

json_t *cli_json_commit(const artifs_oid *id, const artifs_commit *c)
{
	json_t *o = json_object(), *parents = json_array(), *meta = json_object();
	char t[64];

	json_object_set_new(o, "id", cli_json_oid(id));
	json_object_set_new(o, "repo", cli_json_str(c->repo));
	json_object_set_new(o, "tree", cli_json_oid(&c->tree));
	for (uint32_t i = 0; i < c->nparents; i++)
		json_array_append_new(parents, cli_json_oid(&c->parents[i]));
	json_object_set_new(o, "parents", parents);
	json_object_set_new(o, "author", cli_json_str(c->author));
	json_object_set_new(o, "time", json_integer(c->time));
	json_object_set_new(o, "date", json_string(cli_time(t, sizeof(t), c->time)));
	json_object_set_new(o, "message", cli_json_str(c->message));
	for (size_t i = 0; i < c->nmeta; i++)
		json_object_set_new(meta, c->meta[i].key, cli_json_str(c->meta[i].value));
	json_object_set_new(o, "metadata", meta);
	return o;
}
