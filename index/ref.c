/*
 * Keys and values (see index/FORMAT.md):
 *   repos:  "REPO"                -> u8 version=1 | 7 x 0 | i64 created
 *   refs:   "REPO" 0 "NAME"       -> u8 kind | u8 checked | 2 x 0 | u32 check | 16 target
 *           | i64 time | u64 seq (check: XXH3-64 of the key, kind and the last 32 bytes,
 *           low half; checked 1 when set, 0 in records written before it existed)
 *   reflog: "REPO" 0 "NAME" 0 be64 seq -> 16 old | 16 new | i64 time | str author | str message
 *           | str details (a JSON object: op, user, host and what the caller adds)
 *   notes:  the same key -> a JSON object appended once after the move
 *           (post-promote hook results)
 */
#include "ref.h"
#include "codec.h"
#include "commit.h"
#include "error.h"
#include "store_int.h"

#include <errno.h>
#include <jansson.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define REF_VALSZ 40

static int name_chars_ok(const char *s, size_t n)
{
	if (n == 0 || n > ARTIFS_REF_NAME_MAX || s[0] == '.' || s[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

int artifs_repo_name_valid(const char *repo)
{
	const char *n;

	if (!strncmp(repo, "datasets/", 9))
		n = repo + 9;
	else if (!strncmp(repo, "models/", 7))
		n = repo + 7;
	else
		return 0;
	return name_chars_ok(n, strlen(n));
}

int artifs_ref_name_valid(const char *name)
{
	size_t n = strlen(name);

	return name_chars_ok(name, n) && !(n >= 5 && !strcmp(name + n - 5, ".lock"));
}

const char *artifs_ref_kind_name(char kind)
{
	switch (kind) {
	case ARTIFS_REF_BRANCH: return "branch";
	case ARTIFS_REF_TAG: return "tag";
	case ARTIFS_REF_ENV: return "environment";
	default: return "unknown";
	}
}

/* The login name and host of this process (not $ARTIFS_AUTHOR). */
static void user_host(char *user, size_t ulen, char *host, size_t hlen)
{
	const char *u = getenv("USER");

	if (!u || !*u) {
		struct passwd *pw = getpwuid(getuid());
		u = pw ? pw->pw_name : "unknown";
	}
	snprintf(user, ulen, "%s", u);
	snprintf(host, hlen, "localhost");
	gethostname(host, hlen - 1);
	host[hlen - 1] = '\0';
}

const char *artifs_author_default(void)
{
	static char buf[256];
	const char *a = getenv("ARTIFS_AUTHOR");
	char user[128], host[128];

	if (a && *a)
		return a;
	user_host(user, sizeof(user), host, sizeof(host));
	snprintf(buf, sizeof(buf), "%s@%s", user, host);
	return buf;
}

/* key = repo 0 name [0 be64 seq] */
static int make_key(artifs_buf *k, const char *repo, const char *name, int with_seq, uint64_t seq)
{
	int rc;

	if ((rc = artifs_buf_put(k, repo, strlen(repo) + 1)) ||
	    (rc = artifs_buf_put(k, name, strlen(name) + (with_seq ? 1 : 0))))
		return rc;
	if (with_seq) {
		uint8_t t[8];
		put_be64(t, seq);
		rc = artifs_buf_put(k, t, 8);
	}
	return rc;
}

int artifs_repo_check(artifs_store *s, MDB_txn *txn, const char *repo)
{
	MDB_val k = { strlen(repo), (void *)repo }, v;
	int rc;

	if (!artifs_repo_name_valid(repo))
		return artifs_error(ARTIFS_EINVAL,
			"invalid repository name '%s' (want datasets/NAME or models/NAME)", repo);
	rc = mdb_get(txn, s->repos, &k, &v);
	if (rc == MDB_NOTFOUND)
		return artifs_error(ARTIFS_ENOTFOUND, "repository '%s' does not exist", repo);
	if (rc)
		return artifs_error_lmdb(rc, "cannot read repository");
	return 0;
}

int artifs_repo_info(artifs_store *s, MDB_txn *txn, const char *repo, int64_t *created)
{
	MDB_val k = { strlen(repo), (void *)repo }, v;
	int rc = mdb_get(txn, s->repos, &k, &v);

	if (rc == MDB_NOTFOUND)
		return artifs_error(ARTIFS_ENOTFOUND, "repository '%s' does not exist", repo);
	if (rc)
		return artifs_error_lmdb(rc, "cannot read repository");
	if (v.mv_size != 16)
		return artifs_error(ARTIFS_ECORRUPT, "repository record of '%s' is malformed", repo);
	*created = (int64_t)get_le64((const uint8_t *)v.mv_data + 8);
	return 0;
}

int artifs_repo_create(artifs_store *s, const char *repo)
{
	MDB_txn *txn = NULL;
	MDB_val k = { strlen(repo), (void *)repo }, v;
	uint8_t rec[16] = { 1 };
	artifs_oid zero = { { 0 } };
	int rc;

	if (!artifs_repo_name_valid(repo))
		return artifs_error(ARTIFS_EINVAL,
			"invalid repository name '%s' (NAME: letters, digits, '.', '_', '-'; at most %d)",
			repo, ARTIFS_REF_NAME_MAX);
	if ((rc = artifs_wtxn_begin(s, 1 << 20, &txn)))
		return rc;
	put_le64(rec + 8, (uint64_t)time(NULL));
	v.mv_data = rec;
	v.mv_size = sizeof(rec);
	rc = mdb_put(txn, s->repos, &k, &v, MDB_NOOVERWRITE);
	if (rc == MDB_KEYEXIST) {
		rc = artifs_error(ARTIFS_EEXISTS, "repository '%s' already exists", repo);
		goto done;
	} else if (rc) {
		rc = artifs_error_lmdb(rc, "cannot create repository");
		goto done;
	}
	if ((rc = artifs_ref_update(s, txn, repo, "main", ARTIFS_REF_BRANCH, NULL, &zero,
			artifs_author_default(), "create repository")))
		goto done;
	rc = artifs_txn_commit(txn);
	txn = NULL;
done:
	if (txn)
		mdb_txn_abort(txn);
	return rc;
}

int artifs_repo_foreach(artifs_store *s, MDB_txn *txn,
	int (*fn)(const char *repo, int64_t created, void *ctx), void *ctx)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc, op = MDB_FIRST, stopped = 0;
	char name[256];

	if ((rc = mdb_cursor_open(txn, s->repos, &cur)))
		return artifs_error_lmdb(rc, "cannot list repositories");
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		op = MDB_NEXT;
		if (k.mv_size >= sizeof(name) || v.mv_size != 16)
			continue;
		memcpy(name, k.mv_data, k.mv_size);
		name[k.mv_size] = '\0';
		if ((rc = fn(name, (int64_t)get_le64((const uint8_t *)v.mv_data + 8), ctx))) {
			stopped = 1;	/* the callback's own code, passed back as is */
			break;
		}
	}
	mdb_cursor_close(cur);
	if (stopped)
		return rc;
	if (rc == 0 || rc == MDB_NOTFOUND)
		return 0;
	return artifs_error_lmdb(rc, "cannot read the store's refs");
}

/*
 * Refs have no content id to be checked against, so a record carries a
 * checksum of its key and fields: damage to a name, a target or a move
 * count is found instead of being served (or, for gc, trusted).
 */
static uint32_t ref_check(const void *key, size_t klen, const uint8_t *rec)
{
	uint8_t buf[512 + REF_VALSZ];
	uint64_t h;

	if (klen > 512)
		return 0;
	memcpy(buf, key, klen);
	buf[klen] = rec[0];
	memcpy(buf + klen + 1, rec + 8, REF_VALSZ - 8);
	h = XXH3_64bits(buf, klen + 1 + REF_VALSZ - 8);
	return (uint32_t)h;
}

static int printable_key(char *out, size_t cap, const MDB_val *k)
{
	size_t n = 0;
	const uint8_t *p = k->mv_data;

	for (size_t i = 0; i < k->mv_size && n + 5 < cap; i++)
		n += (size_t)snprintf(out + n, cap - n, p[i] == 0 ? ":" :
			(p[i] >= 0x20 && p[i] < 0x7f) ? "%c" : "\\x%02x", p[i]);
	out[n] = 0;
	return 0;
}

/* What is wrong with ref record (k, v), or NULL (and *out decoded). */
static const char *ref_damage(artifs_ref *out, const MDB_val *k, const MDB_val *v)
{
	const uint8_t *p = v->mv_data;
	const char *why = NULL;

	if (v->mv_size != REF_VALSZ)
		why = "its record has the wrong size";
	else if (p[0] != ARTIFS_REF_BRANCH && p[0] != ARTIFS_REF_TAG && p[0] != ARTIFS_REF_ENV)
		why = "its kind is unknown";
	else if (p[1] > 1 || p[2] || p[3])
		why = "its record has bytes set that must be zero";
	else if (p[1] == 1 && get_le32(p + 4) != ref_check(k->mv_data, k->mv_size, p))
		why = "its record does not match its checksum";
	if (why)
		return why;
	out->kind = (char)p[0];
	memcpy(out->target.id, p + 8, 16);
	out->time = (int64_t)get_le64(p + 24);
	out->seq = get_le64(p + 32);
	return NULL;
}

static int decode_ref(artifs_ref *out, const MDB_val *k, const MDB_val *v)
{
	const char *why = ref_damage(out, k, v);
	char where[300];

	if (!why)
		return 0;
	printable_key(where, sizeof(where), k);
	return artifs_error(ARTIFS_ECORRUPT, "ref '%s' is damaged: %s", where, why);
}

int artifs_ref_get(artifs_ref *out, artifs_store *s, MDB_txn *txn, const char *repo, const char *name)
{
	artifs_buf key = { 0 };
	MDB_val k, v;
	int rc;

	if ((rc = make_key(&key, repo, name, 0, 0)))
		return rc;
	k.mv_data = key.ptr;
	k.mv_size = key.len;
	rc = mdb_get(txn, s->refs, &k, &v);
	if (rc == MDB_NOTFOUND)
		rc = artifs_error(ARTIFS_ENOTFOUND, "no ref '%s' in '%s'", name, repo);
	else if (rc)
		rc = artifs_error_lmdb(rc, "cannot read ref");
	else
		rc = decode_ref(out, &k, &v);
	artifs_buf_release(&key);
	return rc;
}

int artifs_branch_head(artifs_oid *out, artifs_store *s, MDB_txn *txn, const char *repo,
	const char *branch, const char *why)
{
	artifs_ref ref;
	int rc;

	if ((rc = artifs_repo_check(s, txn, repo)))
		return rc;
	rc = artifs_ref_get(&ref, s, txn, repo, branch);
	if (rc == ARTIFS_ENOTFOUND)
		return artifs_error(ARTIFS_ENOTFOUND, "no branch '%s' in '%s'", branch, repo);
	if (rc)
		return rc;
	if (ref.kind != ARTIFS_REF_BRANCH)
		return artifs_error(ARTIFS_EINVAL, "'%s' is %s %s of '%s'; %s", branch,
			ref.kind == ARTIFS_REF_ENV ? "an" : "a", artifs_ref_kind_name(ref.kind), repo, why);
	*out = ref.target;
	return 0;
}

int artifs_ref_foreach(artifs_store *s, MDB_txn *txn, const char *repo,
	int (*fn)(const char *name, const artifs_ref *ref, void *ctx), void *ctx)
{
	return artifs_ref_foreach_ex(s, txn, repo, fn, ctx, 0);
}

int artifs_ref_foreach_ex(artifs_store *s, MDB_txn *txn, const char *repo,
	int (*fn)(const char *name, const artifs_ref *ref, void *ctx), void *ctx, int skip_damaged)
{
	size_t plen = strlen(repo) + 1;
	MDB_cursor *cur = NULL;
	MDB_val k = { plen, (void *)repo }, v;
	int rc, op = MDB_SET_RANGE, stopped = 0;
	char name[ARTIFS_REF_NAME_MAX + 1];

	if ((rc = mdb_cursor_open(txn, s->refs, &cur)))
		return artifs_error_lmdb(rc, "cannot list refs");
	while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
		artifs_ref r;
		size_t nlen;
		op = MDB_NEXT;
		if (k.mv_size <= plen || memcmp(k.mv_data, repo, plen))
			break;
		nlen = k.mv_size - plen;
		if (nlen > ARTIFS_REF_NAME_MAX || (rc = decode_ref(&r, &k, &v))) {
			if (skip_damaged)
				continue;
			if (!rc) {
				char where[300];
				printable_key(where, sizeof(where), &k);
				rc = artifs_error(ARTIFS_ECORRUPT, "ref '%s' is damaged: its name is too "
					"long", where);
			}
			stopped = 1;
			break;
		}
		memcpy(name, (const char *)k.mv_data + plen, nlen);
		name[nlen] = '\0';
		if ((rc = fn(name, &r, ctx))) {
			stopped = 1;
			break;
		}
	}
	mdb_cursor_close(cur);
	if (stopped)
		return rc;
	if (rc == 0 || rc == MDB_NOTFOUND)
		return 0;
	return artifs_error_lmdb(rc, "cannot read the store's refs");
}

/* {"op", "user", "host", ...extra}: extra's keys win except these three. */
static char *details_json(const char *op, const char *extra)
{
	char user[128], host[128];
	json_t *o = NULL, *d;
	char *out;

	if (extra && *extra) {
		json_error_t err;
		o = json_loads(extra, 0, &err);
		if (!json_is_object(o)) {
			json_decref(o);
			o = NULL;
		}
	}
	d = json_object();
	user_host(user, sizeof(user), host, sizeof(host));
	json_object_set_new(d, "op", json_string(op));
	json_object_set_new(d, "user", json_string(user));
	json_object_set_new(d, "host", json_string(host));
	{
		/* orders moves of different refs made within one second */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		json_object_set_new(d, "time_ns", json_integer((json_int_t)ts.tv_sec * 1000000000 + ts.tv_nsec));
	}
	if (o)
		json_object_update_missing(d, o);
	out = json_dumps(d, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(d);
	json_decref(o);
	return out;
}

/* Remove ref (repo, name)'s record; one that is not there is no error. */
static int del_ref(artifs_store *s, MDB_txn *txn, const char *repo, const char *name)
{
	artifs_buf key = { 0 };
	MDB_val k;
	int rc;

	if ((rc = make_key(&key, repo, name, 0, 0)))
		return rc;
	k.mv_data = key.ptr;
	k.mv_size = key.len;
	rc = mdb_del(txn, s->refs, &k, NULL);
	artifs_buf_release(&key);
	if (rc && rc != MDB_NOTFOUND)
		return rc == MDB_MAP_FULL ? rc : artifs_error_lmdb(rc, "cannot delete ref");
	return 0;
}

/* A ref's record, checksummed. */
static int put_ref(artifs_store *s, MDB_txn *txn, const char *repo, const char *name, char kind,
	const artifs_oid *target, int64_t time, uint64_t seq)
{
	artifs_buf key = { 0 };
	uint8_t rec[REF_VALSZ] = { 0 };
	MDB_val k, v;
	int rc;

	if ((rc = make_key(&key, repo, name, 0, 0)))
		return rc;
	rec[0] = (uint8_t)kind;
	rec[1] = 1;
	memcpy(rec + 8, target->id, 16);
	put_le64(rec + 24, (uint64_t)time);
	put_le64(rec + 32, seq);
	put_le32(rec + 4, ref_check(key.ptr, key.len, rec));
	k.mv_data = key.ptr;
	k.mv_size = key.len;
	v.mv_data = rec;
	v.mv_size = sizeof(rec);
	if ((rc = mdb_put(txn, s->refs, &k, &v, 0)))
		rc = rc == MDB_MAP_FULL ? rc : artifs_error_lmdb(rc, "cannot write ref");
	artifs_buf_release(&key);
	return rc;
}


struct last_move {
	int found;
	uint64_t seq;
	artifs_oid to;
	int64_t time;
	char op[32];		/* "commit", "promote", "delete", ... ("" if unknown) */
	char kind;		/* what the whole log says the ref is (repair) */
	int all;		/* walk every entry (to find kind), not just the last */
};

/* The "op" of a move's details, into op[n]. */
static void move_op(const artifs_reflog_entry *e, char *op, size_t n)
{
	json_error_t err;
	json_t *d = e->details ? json_loadb(e->details, e->details_len, 0, &err) : NULL;
	const char *v = json_string_value(json_object_get(d, "op"));

	snprintf(op, n, "%s", v ? v : "");
	json_decref(d);
}

static int last_move_cb(const artifs_reflog_entry *e, void *ctx)
{
	struct last_move *m = ctx;
	char op[32];

	if (!m->found) {
		m->found = 1;
		m->seq = e->seq;
		m->to = e->new_id;
		m->time = e->time;
		move_op(e, m->op, sizeof(m->op));
		if (!m->all)
			return 1;	/* newest first: that is all */
	}
	move_op(e, op, sizeof(op));
	if (!strcmp(op, "promote") || !strcmp(op, "rollback") || !strcmp(op, "reconcile"))
		m->kind = ARTIFS_REF_ENV;
	else if (!strcmp(op, "tag") && m->kind != ARTIFS_REF_ENV)
		m->kind = ARTIFS_REF_TAG;
	return 0;
}

static int last_move(artifs_store *s, MDB_txn *txn, const char *repo, const char *name,
	struct last_move *m)
{
	int rc;

	memset(m, 0, sizeof(*m));
	rc = artifs_reflog_foreach(s, txn, repo, name, last_move_cb, m);
	return rc == 1 ? 0 : rc;
}

/* Append move `seq` of (repo, name), old -> new, to the ref log. */
static int log_move(artifs_store *s, MDB_txn *txn, const char *repo, const char *name, uint64_t seq,
	const artifs_oid *old, const artifs_oid *new_id, int64_t now, const char *author,
	const char *message, const char *op, const char *details)
{
	artifs_buf key = { 0 }, log = { 0 };
	char *det = NULL;
	uint8_t t[40];
	MDB_val k, v;
	int rc;

	memcpy(t, old->id, 16);
	memcpy(t + 16, new_id->id, 16);
	put_le64(t + 32, (uint64_t)now);
	if (!(det = details_json(op, details))) {
		rc = artifs_error(-ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = make_key(&key, repo, name, 1, seq)) ||
	    (rc = artifs_buf_put(&log, t, 40)) ||
	    (rc = artifs_buf_put_str(&log, author, strlen(author))) ||
	    (rc = artifs_buf_put_str(&log, message, strlen(message))) ||
	    (rc = artifs_buf_put_str(&log, det, strlen(det))))
		goto done;
	k.mv_data = key.ptr;
	k.mv_size = key.len;
	v.mv_data = log.ptr;
	v.mv_size = log.len;
	if ((rc = mdb_put(txn, s->reflog, &k, &v, 0)))
		rc = rc == MDB_MAP_FULL ? rc : artifs_error_lmdb(rc, "cannot write ref log");
done:
	free(det);
	artifs_buf_release(&key);
	artifs_buf_release(&log);
	return rc;
}

/* Names with a ref log in repo (deleted refs too), in name order. */
int artifs_reflog_names(artifs_store *s, MDB_txn *txn, const char *repo,
	int (*fn)(const char *name, void *ctx), void *ctx)
{
	size_t plen = strlen(repo) + 1;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	char name[ARTIFS_REF_NAME_MAX + 1];
	int rc;

	if ((rc = mdb_cursor_open(txn, s->reflog, &cur)))
		return artifs_error_lmdb(rc, "cannot read ref log");
	k.mv_data = (void *)repo;
	k.mv_size = plen;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;) {
		const char *key = k.mv_data, *nul;
		size_t nlen;
		uint8_t next[ARTIFS_REF_NAME_MAX + 16 + 128];
		if (k.mv_size < plen + 10 || memcmp(key, repo, plen))
			break;
		if (!(nul = memchr(key + plen, 0, k.mv_size - plen)) ||
		    (nlen = (size_t)(nul - key - plen)) > ARTIFS_REF_NAME_MAX) {
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			continue;
		}
		memcpy(name, key + plen, nlen);
		name[nlen] = 0;
		if ((rc = fn(name, ctx))) {
			mdb_cursor_close(cur);
			return rc;
		}
		/* skip the rest of this name's log: jump past "repo\0name\0<ff...>" */
		if (plen + nlen + 1 + 8 > sizeof(next))
			break;
		memcpy(next, key, plen + nlen + 1);
		memset(next + plen + nlen + 1, 0xff, 8);
		k.mv_data = next;
		k.mv_size = plen + nlen + 1 + 8;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (rc == 0 && k.mv_size == plen + nlen + 1 + 8 && !memcmp(k.mv_data, next, k.mv_size))
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	return rc == 0 || rc == MDB_NOTFOUND ? 0 : artifs_error_lmdb(rc, "cannot read ref log");
}

int artifs_ref_update(artifs_store *s, MDB_txn *txn, const char *repo, const char *name,
	char kind, const artifs_oid *expect, const artifs_oid *target,
	const char *author, const char *message)
{
	const char *op = kind == ARTIFS_REF_TAG ? "tag" : kind == ARTIFS_REF_ENV ? "promote" :
		!expect ? "branch" : "commit";

	return artifs_ref_update_ex(s, txn, repo, name, kind, expect, target, author, message, op,
		NULL, NULL);
}

int artifs_ref_update_ex(artifs_store *s, MDB_txn *txn, const char *repo, const char *name,
	char kind, const artifs_oid *expect, const artifs_oid *target,
	const char *author, const char *message, const char *op, const char *details,
	uint64_t *seq_out)
{
	artifs_ref cur = { 0 };
	int64_t now = (int64_t)time(NULL);
	int rc, exists;

	if (!artifs_ref_name_valid(name))
		return artifs_error(ARTIFS_EINVAL,
			"invalid ref name '%s' (letters, digits, '.', '_', '-'; no leading '.' or '-'; at most %d)",
			name, ARTIFS_REF_NAME_MAX);
	rc = artifs_ref_get(&cur, s, txn, repo, name);
	if (rc && rc != ARTIFS_ENOTFOUND)
		return rc;
	exists = rc == 0;
	if (exists && cur.kind != kind)
		return artifs_error(ARTIFS_EEXISTS, "'%s' is already %s %s in '%s'",
			name, cur.kind == ARTIFS_REF_ENV ? "an" : "a", artifs_ref_kind_name(cur.kind), repo);
	if (exists && kind == ARTIFS_REF_TAG) {
		if (!artifs_oid_cmp(&cur.target, target))
			return 0;	/* re-tagging the same commit is a no-op */
		return artifs_error(ARTIFS_EIMMUTABLE, "tag '%s' already exists in '%s' and tags never move",
			name, repo);
	}
	if (!expect && exists)
		return artifs_error(ARTIFS_EEXISTS, "%s '%s' already exists in '%s'",
			artifs_ref_kind_name(kind), name, repo);
	if (expect && !exists)
		return artifs_error(ARTIFS_ESTALE, "%s '%s' of '%s' was deleted concurrently",
			artifs_ref_kind_name(kind), name, repo);
	if (expect && artifs_oid_cmp(expect, &cur.target))
		return artifs_error(ARTIFS_ESTALE, "%s '%s' of '%s' moved while this operation ran",
			artifs_ref_kind_name(kind), name, repo);

	/* a name used before (a deleted branch) goes on with its log */
	if (!exists) {
		struct last_move m;

		if ((rc = last_move(s, txn, repo, name, &m)))
			return rc;
		cur.seq = m.seq;
	}
	if ((rc = put_ref(s, txn, repo, name, kind, target, now, cur.seq + 1)) ||
	    (rc = log_move(s, txn, repo, name, cur.seq + 1, &cur.target, target, now, author,
			message, op, details)))
		return rc;
	if (seq_out)
		*seq_out = cur.seq + 1;
	return artifs_store_refgen_bump(s, txn);
}

int artifs_ref_delete(artifs_store *s, MDB_txn *txn, const char *repo, const char *name,
	char kind, const artifs_oid *expect, const char *author, const char *message, const char *op)
{
	artifs_ref cur;
	artifs_oid zero = { 0 };
	int rc;

	if ((rc = artifs_ref_get(&cur, s, txn, repo, name)) == ARTIFS_ENOTFOUND)
		return artifs_error(ARTIFS_ENOTFOUND, "no %s '%s' in '%s'", artifs_ref_kind_name(kind),
			name, repo);
	if (rc)
		return rc;
	if (cur.kind != kind)
		return artifs_error(ARTIFS_EINVAL, "'%s' is %s %s in '%s', not %s %s", name,
			cur.kind == ARTIFS_REF_ENV ? "an" : "a", artifs_ref_kind_name(cur.kind), repo,
			kind == ARTIFS_REF_ENV ? "an" : "a", artifs_ref_kind_name(kind));
	if (expect && artifs_oid_cmp(expect, &cur.target))
		return artifs_error(ARTIFS_ESTALE, "%s '%s' of '%s' moved while this operation ran",
			artifs_ref_kind_name(kind), name, repo);
	if ((rc = del_ref(s, txn, repo, name)))
		return rc;
	if ((rc = log_move(s, txn, repo, name, cur.seq + 1, &cur.target, &zero, (int64_t)time(NULL),
			author, message, op, NULL)))
		return rc;
	return artifs_store_refgen_bump(s, txn);
}

int artifs_ref_note_put(artifs_store *s, MDB_txn *txn, const char *repo, const char *name,
	uint64_t seq, const char *json)
{
	artifs_buf key = { 0 };
	MDB_val k, v;
	int rc;

	if ((rc = make_key(&key, repo, name, 1, seq)))
		return rc;
	k.mv_data = key.ptr;
	k.mv_size = key.len;
	v.mv_data = (void *)json;
	v.mv_size = strlen(json);
	/* append-only: a note is written once */
	rc = mdb_put(txn, s->notes, &k, &v, MDB_NOOVERWRITE);
	if (rc == MDB_KEYEXIST)
		rc = artifs_error(ARTIFS_EEXISTS, "move %llu of '%s' already has a note",
			(unsigned long long)seq, name);
	else if (rc && rc != MDB_MAP_FULL)
		rc = artifs_error_lmdb(rc, "cannot write note");
	artifs_buf_release(&key);
	return rc;
}

int artifs_ref_note_get(artifs_store *s, MDB_txn *txn, const char *repo, const char *name,
	uint64_t seq, const char **json, size_t *len)
{
	artifs_buf key = { 0 };
	MDB_val k, v;
	int rc;

	if ((rc = make_key(&key, repo, name, 1, seq)))
		return rc;
	k.mv_data = key.ptr;
	k.mv_size = key.len;
	rc = mdb_get(txn, s->notes, &k, &v);
	artifs_buf_release(&key);
	if (rc == MDB_NOTFOUND)
		return ARTIFS_ENOTFOUND;
	if (rc)
		return artifs_error_lmdb(rc, "cannot read note");
	*json = v.mv_data;
	*len = v.mv_size;
	return 0;
}

int artifs_reflog_foreach(artifs_store *s, MDB_txn *txn, const char *repo, const char *name,
	int (*fn)(const artifs_reflog_entry *e, void *ctx), void *ctx)
{
	artifs_buf key = { 0 };
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	size_t plen;
	int rc, stopped = 0;

	if ((rc = make_key(&key, repo, name, 1, UINT64_MAX)))
		return rc;
	plen = key.len - 8;
	if ((rc = mdb_cursor_open(txn, s->reflog, &cur))) {
		artifs_buf_release(&key);
		return artifs_error_lmdb(rc, "cannot read ref log");
	}
	k.mv_data = key.ptr;
	k.mv_size = key.len;
	/* position after the last entry of this ref, then walk backwards */
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	rc = mdb_cursor_get(cur, &k, &v, rc == 0 ? MDB_PREV : MDB_LAST);
	for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
		artifs_reflog_entry e;
		artifs_rd r;
		const uint8_t *h;
		if (k.mv_size != plen + 8 || memcmp(k.mv_data, key.ptr, plen))
			break;
		r.p = v.mv_data;
		r.end = r.p + v.mv_size;
		r.err = 0;
		if (!(h = rd_take(&r, 40)))
			continue;
		e.seq = get_be64((const uint8_t *)k.mv_data + plen);
		memcpy(e.old_id.id, h, 16);
		memcpy(e.new_id.id, h + 16, 16);
		e.time = (int64_t)get_le64(h + 32);
		e.author_len = rd_le32(&r);
		e.author = (const char *)rd_take(&r, e.author_len);
		e.message_len = rd_le32(&r);
		e.message = (const char *)rd_take(&r, e.message_len);
		e.details = NULL;
		e.details_len = 0;
		if (!r.err && r.p < r.end) {
			e.details_len = rd_le32(&r);
			e.details = (const char *)rd_take(&r, e.details_len);
		}
		if (r.err)
			continue;
		if ((rc = fn(&e, ctx))) {
			stopped = 1;
			break;
		}
	}
	mdb_cursor_close(cur);
	artifs_buf_release(&key);
	if (stopped)
		return rc;
	if (rc == 0 || rc == MDB_NOTFOUND)
		return 0;
	return artifs_error_lmdb(rc, "cannot read the store's refs");
}



struct verify {
	artifs_store *s;
	MDB_txn *txn;
	const char *repo;
	void (*fault)(const char *where, const char *msg, void *ctx);
	void *ctx;
	uint64_t n;
};

/* Tell cb "REPO:NAME" and the formatted message. */
static void vtell(void (*cb)(const char *, const char *, void *), void *ctx, const char *repo,
	const char *name, const char *fmt, va_list ap)
{
	char where[512], msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	snprintf(where, sizeof(where), "%s:%s", repo, name);
	if (cb)
		cb(where, msg, ctx);
}

static void vfault(struct verify *v, const char *repo, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void vfault(struct verify *v, const char *repo, const char *name, const char *fmt, ...)
{
	va_list ap;

	v->n++;
	va_start(ap, fmt);
	vtell(v->fault, v->ctx, repo, name, fmt, ap);
	va_end(ap);
}

/* A name with a log but no record must have been deleted (its last move is to nothing). */
static int orphan_log_cb(const char *name, void *ctx)
{
	struct verify *v = ctx;
	struct last_move m;
	artifs_ref ref;
	char hex[ARTIFS_OID_HEXSZ + 1];
	int rc;

	if ((rc = artifs_ref_get(&ref, v->s, v->txn, v->repo, name)) != ARTIFS_ENOTFOUND)
		return rc == ARTIFS_ECORRUPT ? 0 : rc;	/* damaged: reported already */
	artifs_error_clear();
	if ((rc = last_move(v->s, v->txn, v->repo, name, &m)))
		return rc;
	if (m.found && strcmp(m.op, "delete"))
		vfault(v, v->repo, name, "the ref is missing but its log has no deletion: its record "
			"was lost (its last move was to %s)", artifs_oid_is_zero(&m.to) ? "no commit" :
			artifs_oid_fmt(hex, &m.to));
	return 0;
}

static int verify_repo_cb(const char *repo, int64_t created, void *ctx)
{
	struct verify *v = ctx;

	(void)created;
	v->repo = repo;
	return artifs_reflog_names(v->s, v->txn, repo, orphan_log_cb, v);
}

/* One record of the refs table, judged. */
struct ref_rec {
	const MDB_val *key;
	char repo[300], name[ARTIFS_REF_NAME_MAX + 1];
	char kind;		/* the record's kind byte (0 if the record is short) */
	int bad_key;		/* not REPO 0 NAME of an existing repository */
	char why[256];		/* what is wrong; "" when nothing */
};

/*
 * Call fn for every record of the refs table, judged: its key, its record
 * (kind, checksum) and, every move being logged in the same transaction,
 * its target and move count against its last logged move.
 */
static int ref_records(artifs_store *s, MDB_txn *txn, int (*fn)(const struct ref_rec *r, void *ctx),
	void *ctx)
{
	MDB_cursor *cur = NULL;
	MDB_val k, val;
	int rc;

	if ((rc = mdb_cursor_open(txn, s->refs, &cur)))
		return artifs_error_lmdb(rc, "cannot read refs");
	for (rc = mdb_cursor_get(cur, &k, &val, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT)) {
		struct ref_rec r;
		const char *key = k.mv_data, *nul = memchr(key, 0, k.mv_size);
		size_t rlen = nul ? (size_t)(nul - key) : 0, nlen = nul ? k.mv_size - rlen - 1 : 0;
		char a[ARTIFS_OID_HEXSZ + 1], b[ARTIFS_OID_HEXSZ + 1];
		struct last_move m;
		artifs_ref ref;
		const char *why;

		memset(&r, 0, sizeof(r));
		r.key = &k;
		r.kind = val.mv_size == REF_VALSZ ? ((const char *)val.mv_data)[0] : 0;
		if (!nul || rlen >= sizeof(r.repo) || nlen > ARTIFS_REF_NAME_MAX) {
			r.bad_key = 1;
		} else {
			memcpy(r.repo, key, rlen);
			memcpy(r.name, nul + 1, nlen);
			if (!artifs_repo_name_valid(r.repo) || !artifs_ref_name_valid(r.name) ||
			    artifs_repo_check(s, txn, r.repo)) {
				artifs_error_clear();
				r.bad_key = 1;
			}
		}
		if (r.bad_key) {
			snprintf(r.why, sizeof(r.why), "a ref key that is not REPO:NAME of a repository: "
				"the key is damaged");
		} else if ((why = ref_damage(&ref, &k, &val))) {
			snprintf(r.why, sizeof(r.why), "damaged: %s", why);
		} else {
			if ((rc = last_move(s, txn, r.repo, r.name, &m)))
				break;
			if (m.found && artifs_oid_cmp(&m.to, &ref.target))
				snprintf(r.why, sizeof(r.why), "the ref points at %s but its last logged "
					"move was to %s: its record is damaged",
					artifs_oid_fmt(a, &ref.target), artifs_oid_fmt(b, &m.to));
			else if (m.found && m.seq != ref.seq)
				snprintf(r.why, sizeof(r.why), "the ref counts %llu moves but its log %llu: "
					"its record is damaged", (unsigned long long)ref.seq,
					(unsigned long long)m.seq);
		}
		if ((rc = fn(&r, ctx)))
			break;
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		return 0;
	return rc > 0 ? artifs_error_lmdb(rc, "cannot read refs") : rc;
}

static int verify_rec(const struct ref_rec *r, void *ctx)
{
	struct verify *v = ctx;
	char where[300];

	if (!*r->why)
		return 0;
	if (r->bad_key) {
		printable_key(where, sizeof(where), r->key);
		vfault(v, where, "", "%s", r->why);
	} else {
		vfault(v, r->repo, r->name, "%s", r->why);
	}
	return 0;
}

int artifs_refs_verify(artifs_store *s, MDB_txn *txn,
	void (*fault)(const char *where, const char *msg, void *ctx), void *ctx, uint64_t *nfaults)
{
	struct verify v = { s, txn, NULL, fault, ctx, 0 };
	int rc;

	if ((rc = ref_records(s, txn, verify_rec, &v)) ||
	    (rc = artifs_repo_foreach(s, txn, verify_repo_cb, &v)))
		return rc;
	if (nfaults)
		*nfaults = v.n;
	return 0;
}

struct fix {
	uint8_t *key;
	size_t klen;
	char kind;		/* the damaged record's kind, when it is a kind; else 0 */
	int bad_key;		/* not REPO 0 NAME of an existing repository */
};

static void fix_report(void (*report)(const char *, const char *, void *), void *ctx,
	const char *repo, const char *name, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void fix_report(void (*report)(const char *, const char *, void *), void *ctx,
	const char *repo, const char *name, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vtell(report, ctx, repo, name, fmt, ap);
	va_end(ap);
}

/* Rewrite ref (repo, name) from its log, or remove its record when the log cannot restore it. */
static int restore_from_log(artifs_store *s, MDB_txn *txn, const char *repo, const char *name,
	char kind, void (*report)(const char *, const char *, void *), void *ctx)
{
	struct last_move m;
	char hex[ARTIFS_OID_HEXSZ + 1];
	int rc;

	memset(&m, 0, sizeof(m));
	m.all = 1;
	if ((rc = artifs_reflog_foreach(s, txn, repo, name, last_move_cb, &m)))
		return rc;
	if (!m.found || !strcmp(m.op, "delete")) {
		if ((rc = del_ref(s, txn, repo, name)))
			return rc;
		fix_report(report, ctx, repo, name, "%s", !m.found ?
			"removed its record: no log to restore it from" :
			"removed its record: its log ends in its deletion");
		return 0;
	}
	if (kind != ARTIFS_REF_BRANCH && kind != ARTIFS_REF_TAG && kind != ARTIFS_REF_ENV)
		kind = m.kind ? m.kind : ARTIFS_REF_BRANCH;
	if ((rc = put_ref(s, txn, repo, name, kind, &m.to, m.time, m.seq)))
		return rc;
	fix_report(report, ctx, repo, name, "rewritten from its log: %s at %s (move %llu)",
		artifs_ref_kind_name(kind), artifs_oid_is_zero(&m.to) ? "no commit" :
		artifs_oid_fmt(hex, &m.to), (unsigned long long)m.seq);
	return 0;
}

struct orphans {
	artifs_store *s;
	MDB_txn *txn;
	const char *repo;
	void (*report)(const char *, const char *, void *);
	void *ctx;
	char **names;
	size_t n;
};

static int orphan_cb(const char *name, void *ctx)
{
	struct orphans *o = ctx;
	artifs_ref ref;
	char **v;
	int rc = artifs_ref_get(&ref, o->s, o->txn, o->repo, name);

	if (rc != ARTIFS_ENOTFOUND)
		return rc == ARTIFS_ECORRUPT ? 0 : rc;
	artifs_error_clear();
	if (!(v = realloc(o->names, (o->n + 1) * sizeof(*v))) || !(v[o->n] = strdup(name)))
		return artifs_error(-ENOMEM, "out of memory");
	o->names = v;
	o->n++;
	return 0;
}

static int orphan_repo_cb(const char *repo, int64_t created, void *ctx)
{
	struct orphans *o = ctx;
	int rc;

	(void)created;
	o->repo = repo;
	o->n = 0;
	if ((rc = artifs_reflog_names(o->s, o->txn, repo, orphan_cb, o)))
		return rc;
	/* a name whose log does not end in a deletion lost its record: restore it */
	for (size_t i = 0; i < o->n; i++) {
		struct last_move m;
		if (!rc && !(rc = last_move(o->s, o->txn, repo, o->names[i], &m)) &&
		    m.found && strcmp(m.op, "delete"))
			rc = restore_from_log(o->s, o->txn, repo, o->names[i], 0, o->report, o->ctx);
		free(o->names[i]);
	}
	return rc;
}

struct fixes {
	struct fix *v;
	size_t n;
};

static int collect_rec(const struct ref_rec *r, void *ctx)
{
	struct fixes *f = ctx;
	struct fix *nv;

	if (!*r->why)
		return 0;
	if (!(nv = realloc(f->v, (f->n + 1) * sizeof(*nv))))
		return artifs_error(-ENOMEM, "out of memory");
	f->v = nv;
	if (!(nv[f->n].key = malloc(r->key->mv_size)))
		return artifs_error(-ENOMEM, "out of memory");
	memcpy(nv[f->n].key, r->key->mv_data, r->key->mv_size);
	nv[f->n].klen = r->key->mv_size;
	nv[f->n].kind = r->kind;
	nv[f->n].bad_key = r->bad_key;
	f->n++;
	return 0;
}

int artifs_refs_repair(artifs_store *s, MDB_txn *txn,
	void (*report)(const char *where, const char *what, void *ctx), void *ctx)
{
	struct orphans o = { s, txn, NULL, report, ctx, NULL, 0 };
	struct fixes f = { NULL, 0 };
	struct fix *fx;
	size_t nfx;
	int rc;

	/* first judge every record, then change the table */
	rc = ref_records(s, txn, collect_rec, &f);
	fx = f.v;
	nfx = f.n;
	for (size_t i = 0; !rc && i < nfx; i++) {
		if (fx[i].bad_key) {
			char where[300];
			MDB_val dk = { fx[i].klen, fx[i].key };
			if ((rc = mdb_del(txn, s->refs, &dk, NULL)))
				rc = rc == MDB_MAP_FULL ? rc : artifs_error_lmdb(rc, "cannot delete ref");
			printable_key(where, sizeof(where), &dk);
			if (!rc && report)
				report(where, "removed a ref record whose key is damaged", ctx);
		} else {
			const char *nul = memchr(fx[i].key, 0, fx[i].klen);
			char repo[300], name[ARTIFS_REF_NAME_MAX + 1];
			size_t rlen = (size_t)(nul - (const char *)fx[i].key);
			memcpy(repo, fx[i].key, rlen);
			repo[rlen] = 0;
			memcpy(name, nul + 1, fx[i].klen - rlen - 1);
			name[fx[i].klen - rlen - 1] = 0;
			rc = restore_from_log(s, txn, repo, name, fx[i].kind, report, ctx);
		}
	}
	for (size_t i = 0; i < nfx; i++)
		free(fx[i].key);
	free(fx);
	if (!rc)
		rc = artifs_repo_foreach(s, txn, orphan_repo_cb, &o);
	free(o.names);
	if (!rc)
		rc = artifs_store_refgen_bump(s, txn);
	return rc;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int artifs_rev_parse(artifs_oid *out, artifs_store *s, MDB_txn *txn, const char *repo, const char *rev)
{
	artifs_ref ref;
	int rc;

	if ((rc = artifs_repo_check(s, txn, repo)))
		return rc;
	if (artifs_ref_name_valid(rev)) {
		rc = artifs_ref_get(&ref, s, txn, repo, rev);
		if (rc == 0) {
			if (artifs_oid_is_zero(&ref.target))
				return artifs_error(ARTIFS_ENOTFOUND, "%s '%s' of '%s' has no commits yet",
					artifs_ref_kind_name(ref.kind), rev, repo);
			*out = ref.target;
			return 0;
		}
		if (rc != ARTIFS_ENOTFOUND)
			return rc;
	}
	if ((rc = artifs_commit_by_prefix(out, s, txn, repo, rev)) != ARTIFS_ENOTFOUND)
		return rc;
	return artifs_error(ARTIFS_ENOTFOUND,
		"'%s' is not a branch, tag, environment or commit of '%s'", rev, repo);
}

int artifs_commit_by_prefix(artifs_oid *out, artifs_store *s, MDB_txn *txn, const char *repo,
	const char *rev)
{
	uint8_t lo[16] = { 0 };
	size_t n = strlen(rev);
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc, found = 0, op;

	if (n < 6 || n > ARTIFS_OID_HEXSZ)
		goto notfound;
	for (size_t i = 0; i < n; i++) {
		int d = hexval(rev[i]);
		if (d < 0)
			goto notfound;
		lo[i / 2] |= (uint8_t)(i % 2 ? d : d << 4);
	}
	if ((rc = mdb_cursor_open(txn, s->commits, &cur)))
		return artifs_error_lmdb(rc, "cannot search commits");
	k.mv_data = lo;
	k.mv_size = 16;
	for (op = MDB_SET_RANGE; (rc = mdb_cursor_get(cur, &k, &v, op)) == 0; op = MDB_NEXT) {
		const uint8_t *id = k.mv_data;
		artifs_commit *c = NULL;
		if (k.mv_size != 16 || memcmp(id, lo, n / 2) ||
		    (n % 2 && (id[n / 2] >> 4) != (lo[n / 2] >> 4)))
			break;
		if (artifs_commit_decode(&c, v.mv_data, v.mv_size) == 0) {
			int mine = !strcmp(c->repo, repo);
			artifs_commit_free(c);
			if (mine) {
				if (found++) {
					mdb_cursor_close(cur);
					return artifs_error(ARTIFS_EAMBIGUOUS,
						"commit id prefix '%s' is ambiguous in '%s'; give more digits", rev, repo);
				}
				memcpy(out->id, id, 16);
			}
		}
	}
	mdb_cursor_close(cur);
	if (found)
		return 0;
notfound:
	return artifs_error(ARTIFS_ENOTFOUND, "no commit of '%s' has an id starting '%s'", repo, rev);
}
