/*
 * test_commit.c - commit records (encode, decode, refusal of malformed
 * records), repositories, refs with compare-and-swap, immutable tags, the
 * ref log, and resolving a revision.
 */
#include "helpers.h"

#include "codec.h"
#include "commit.h"
#include "ref.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- commit records ---- */

static void fake_oid(artifs_oid *id, uint8_t tag)
{
	memset(id, tag, sizeof(*id));
	id->id[0] = 0xc0;
}

static void assert_commit_equal(const artifs_commit *a, const artifs_commit *b)
{
	assert_oid_equal(&a->tree, &b->tree);
	assert_oid_equal(&a->labels, &b->labels);
	assert_int_equal(a->nparents, b->nparents);
	if (a->nparents)
		assert_memory_equal(a->parents, b->parents, a->nparents * sizeof(artifs_oid));
	assert_true(a->time == b->time);
	assert_string_equal(a->repo, b->repo);
	assert_string_equal(a->author, b->author);
	assert_string_equal(a->message, b->message);
	assert_int_equal(a->nmeta, b->nmeta);
}

static void test_commit_roundtrip(void **state)
{
	artifs_oid parents[2];
	artifs_meta meta[3] = {
		{ (char *)"zeta", (char *)"last" },
		{ (char *)"alpha", (char *)"first" },
		{ (char *)"m.id_x-1", (char *)"a value = with spaces, \xc3\xa9 and\nnewline" },
	};
	artifs_meta meta_other_order[3] = { meta[2], meta[0], meta[1] };
	artifs_commit c = {
		.nparents = 2, .parents = parents, .time = 1700000000,
		.repo = (char *)"datasets/imagenet", .author = (char *)"Ann <ann@example.org>",
		.message = (char *)"first line\n\nbody \xe2\x9c\x93", .nmeta = 3, .meta = meta,
	};
	artifs_buf a = { 0 }, b = { 0 }, again = { 0 };
	artifs_commit *d = NULL;

	(void)state;
	fake_oid(&c.tree, 1);
	fake_oid(&c.labels, 2);
	fake_oid(&parents[0], 3);
	fake_oid(&parents[1], 4);
	assert_ok(artifs_commit_encode(&a, &c));
	assert_ok(artifs_commit_decode(&d, a.ptr, a.len));
	assert_commit_equal(&c, d);
	/* metadata comes back sorted by key, values with their keys */
	assert_string_equal(d->meta[0].key, "alpha");
	assert_string_equal(d->meta[0].value, "first");
	assert_string_equal(d->meta[1].key, "m.id_x-1");
	assert_string_equal(d->meta[1].value, meta[2].value);
	assert_string_equal(d->meta[2].key, "zeta");
	assert_string_equal(d->meta[2].value, "last");
	/* the encoding is canonical: decode + encode is the identity ... */
	assert_ok(artifs_commit_encode(&again, d));
	assert_int_equal(again.len, a.len);
	assert_memory_equal(again.ptr, a.ptr, a.len);
	/* ... and the order metadata is given in does not change the id */
	c.meta = meta_other_order;
	assert_ok(artifs_commit_encode(&b, &c));
	assert_int_equal(b.len, a.len);
	assert_memory_equal(b.ptr, a.ptr, a.len);
	/* the caller's array is not reordered */
	assert_string_equal(meta[0].key, "zeta");
	artifs_commit_free(d);
	artifs_buf_release(&a);
	artifs_buf_release(&b);
	artifs_buf_release(&again);
}

static void test_commit_minimal_roundtrip(void **state)
{
	artifs_commit c = {
		.time = -86400, .repo = (char *)"models/m", .author = (char *)"", .message = (char *)"",
	};
	artifs_buf a = { 0 };
	artifs_commit *d = NULL;

	(void)state;
	fake_oid(&c.tree, 9);
	assert_ok(artifs_commit_encode(&a, &c));
	assert_ok(artifs_commit_decode(&d, a.ptr, a.len));
	assert_commit_equal(&c, d);
	assert_null(d->parents);
	assert_true(artifs_oid_is_zero(&d->labels));
	artifs_commit_free(d);
	artifs_buf_release(&a);
	artifs_commit_free(NULL);
}

static void test_commit_duplicate_meta(void **state)
{
	artifs_meta meta[3] = {
		{ (char *)"k", (char *)"1" }, { (char *)"j", (char *)"x" }, { (char *)"k", (char *)"2" },
	};
	artifs_commit c = {
		.repo = (char *)"datasets/x", .author = (char *)"a", .message = (char *)"m",
		.nmeta = 3, .meta = meta,
	};
	artifs_buf a = { 0 };

	(void)state;
	assert_rc(ARTIFS_EINVAL, artifs_commit_encode(&a, &c));
	artifs_buf_release(&a);
}

static void test_meta_key_valid(void **state)
{
	char k128[129], k129[130];

	(void)state;
	memset(k128, 'k', 128);
	k128[128] = '\0';
	memset(k129, 'k', 129);
	k129[129] = '\0';
	assert_true(artifs_meta_key_valid("a"));
	assert_true(artifs_meta_key_valid("Data.Version_2-rc"));
	assert_true(artifs_meta_key_valid(k128));
	assert_false(artifs_meta_key_valid(k129));
	assert_false(artifs_meta_key_valid(""));
	assert_false(artifs_meta_key_valid("a=b"));
	assert_false(artifs_meta_key_valid("a b"));
	assert_false(artifs_meta_key_valid("a/b"));
	assert_false(artifs_meta_key_valid("\xc3\xa9"));
}

/* A record with two metadata pairs "a"="1", "b"="2" at its end. */
static void encode_ab(artifs_buf *out)
{
	artifs_meta meta[2] = { { (char *)"a", (char *)"1" }, { (char *)"b", (char *)"2" } };
	artifs_oid parent;
	artifs_commit c = {
		.nparents = 1, .parents = &parent, .time = 42, .repo = (char *)"datasets/x",
		.author = (char *)"someone", .message = (char *)"msg", .nmeta = 2, .meta = meta,
	};

	fake_oid(&parent, 5);
	fake_oid(&c.tree, 6);
	assert_ok(artifs_commit_encode(out, &c));
}

static int decode_copy(const uint8_t *p, size_t len)
{
	uint8_t *q = malloc(len ? len : 1);
	artifs_commit *c = NULL;
	int rc;

	assert_non_null(q);
	memcpy(q, p, len);
	rc = artifs_commit_decode(&c, q, len);
	if (rc == 0)
		artifs_commit_free(c);
	else
		assert_null(c);
	free(q);
	return rc;
}

static void test_commit_malformed(void **state)
{
	artifs_buf a = { 0 };
	uint8_t *q, *tail;
	size_t author_at = 48 + 16 + 4 + strlen("datasets/x") + 4;

	(void)state;
	encode_ab(&a);
	assert_ok(decode_copy(a.ptr, a.len));
	for (size_t len = 0; len < a.len; len++)
		if (decode_copy(a.ptr, len) != ARTIFS_ECORRUPT)
			fail_msg("commit record truncated to %zu of %zu bytes was accepted", len, a.len);
	q = malloc(a.len + 1);
	assert_non_null(q);

#define MUTATE(what) do { \
		memcpy(q, a.ptr, a.len); \
		tail = q + a.len - 20; \
		(void)tail; \
		what; \
		if (decode_copy(q, a.len) != ARTIFS_ECORRUPT) \
			fail_msg("malformed commit accepted: %s", #what); \
	} while (0)

	MUTATE(q[0] = 'T');				/* another object type */
	MUTATE(q[1] = 0);				/* unknown version */
	MUTATE(put_le32(q + 4, 2));			/* more parents than stored */
	MUTATE(put_le32(q + 4, UINT32_MAX));
	MUTATE(put_le32(q + 48 + 16, UINT32_MAX));	/* repo length past the end */
	MUTATE(q[author_at + 2] = '\0');		/* NUL inside a string */
	MUTATE(tail[4] = 'c');				/* keys out of order: "c", "b" */
	MUTATE(tail[14] = 'a');				/* duplicate key "a" */
	MUTATE(put_le32(tail - 4, 3));			/* nmeta says 3, record holds 2 */
	MUTATE(put_le32(tail - 4, UINT32_MAX));
	MUTATE(put_le32(tail - 4, 1));			/* trailing bytes after the last pair */
#undef MUTATE
	/* trailing garbage */
	memcpy(q, a.ptr, a.len);
	q[a.len] = 0;
	assert_rc(ARTIFS_ECORRUPT, decode_copy(q, a.len + 1));
	free(q);
	artifs_buf_release(&a);
}

static void test_commit_random_damage(void **state)
{
	artifs_buf a = { 0 };
	test_rng r;

	(void)state;
	encode_ab(&a);
	test_rng_init(&r, TEST_SEED);
	for (int round = 0; round < 20000; round++) {
		size_t len = round % 3 ? a.len : test_rng_next(&r) % (a.len + 1);
		uint8_t *q = malloc(len ? len : 1);
		int rc;
		assert_non_null(q);
		memcpy(q, a.ptr, len);
		for (int f = 0; f < 3 && len; f++)
			q[test_rng_next(&r) % len] ^= (uint8_t)(1 + test_rng_next(&r) % 255);
		rc = decode_copy(q, len);
		assert_true(rc == 0 || rc == ARTIFS_ECORRUPT);
		free(q);
	}
	artifs_buf_release(&a);
}

/* ---- commits in a store ---- */

static void write_commit(artifs_oid *id, artifs_store *s, const artifs_commit *c)
{
	MDB_txn *txn = NULL;

	assert_ok(artifs_wtxn_begin(s, 1 << 20, &txn));
	assert_ok(artifs_commit_write(id, s, txn, c));
	assert_ok(artifs_txn_commit(txn));
}

static void make_commit(artifs_oid *id, artifs_store *s, const char *repo, const char *msg)
{
	artifs_commit c = {
		.time = 1700000000, .repo = (char *)repo, .author = (char *)"t", .message = (char *)msg,
	};

	fake_oid(&c.tree, 7);
	write_commit(id, s, &c);
}

static void test_commit_store(void **state)
{
	test_env *env = *state;
	artifs_oid id, id2, missing;
	artifs_commit *c = NULL;
	MDB_txn *txn = NULL;
	artifs_buf b = { 0 };
	artifs_oid want;

	make_commit(&id, env->s, "datasets/x", "hello");
	/* the id is the hash of the encoding */
	{
		artifs_commit tmp = {
			.time = 1700000000, .repo = (char *)"datasets/x", .author = (char *)"t",
			.message = (char *)"hello",
		};
		fake_oid(&tmp.tree, 7);
		assert_ok(artifs_commit_encode(&b, &tmp));
		artifs_oid_hash(&want, b.ptr, b.len);
		assert_oid_equal(&id, &want);
	}
	/* writing it again is a dedupe, same id */
	make_commit(&id2, env->s, "datasets/x", "hello");
	assert_oid_equal(&id, &id2);
	/* the same content in another repository is another commit */
	make_commit(&id2, env->s, "datasets/y", "hello");
	assert_oid_not_equal(&id, &id2);

	assert_ok(artifs_rtxn_begin(env->s, &txn));
	assert_ok(artifs_commit_load(&c, env->s, txn, &id));
	assert_string_equal(c->message, "hello");
	assert_string_equal(c->repo, "datasets/x");
	artifs_commit_free(c);
	fake_oid(&missing, 0x77);
	c = NULL;
	assert_rc(ARTIFS_ENOTFOUND, artifs_commit_load(&c, env->s, txn, &missing));
	assert_null(c);
	mdb_txn_abort(txn);
	artifs_buf_release(&b);
}

/* ---- repositories and refs ---- */

#define REPO "datasets/x"

static int ref_update(artifs_store *s, const char *name, char kind, const artifs_oid *expect,
	const artifs_oid *target, const char *msg)
{
	MDB_txn *txn = NULL;
	int rc;

	assert_ok(artifs_wtxn_begin(s, 1 << 20, &txn));
	rc = artifs_ref_update(s, txn, REPO, name, kind, expect, target, "tester", msg);
	if (rc) {
		mdb_txn_abort(txn);
		return rc;
	}
	return artifs_txn_commit(txn);
}

static int list_repo(const char *repo, int64_t created, void *ctx)
{
	char *out = ctx;

	assert_true(created > 0);
	strcat(out, repo);
	strcat(out, ";");
	return 0;
}

static void test_repo_create(void **state)
{
	test_env *env = *state;
	static const char *const bad[] = {
		"x", "datasets", "datasets/", "datasets/.x", "datasets/-x", "datasets/a b",
		"datasets/a/b", "dataset/x", "Datasets/x", "models/", "models/\xc3\xa9",
	};
	char name101[128] = "datasets/", name100[128] = "datasets/", listed[256] = "";
	artifs_ref r;
	MDB_txn *txn = NULL;
	int64_t created = 0;

	assert_ok(artifs_repo_create(env->s, REPO));
	assert_rc(ARTIFS_EEXISTS, artifs_repo_create(env->s, REPO));
	assert_ok(artifs_repo_create(env->s, "models/bert-base_v1.2"));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (artifs_repo_create(env->s, bad[i]) != ARTIFS_EINVAL)
			fail_msg("repository name '%s' was accepted", bad[i]);
		assert_false(artifs_repo_name_valid(bad[i]));
	}
	memset(name100 + 9, 'n', 100);
	memset(name101 + 9, 'n', 101);
	assert_ok(artifs_repo_create(env->s, name100));
	assert_rc(ARTIFS_EINVAL, artifs_repo_create(env->s, name101));

	/* a new repository has an unborn branch "main" */
	r = test_ref_get(env->s, REPO, "main");
	assert_int_equal(r.kind, ARTIFS_REF_BRANCH);
	assert_true(artifs_oid_is_zero(&r.target));
	assert_int_equal(r.seq, 1);

	assert_ok(artifs_rtxn_begin(env->s, &txn));
	assert_ok(artifs_repo_check(env->s, txn, REPO));
	assert_rc(ARTIFS_ENOTFOUND, artifs_repo_check(env->s, txn, "datasets/nope"));
	assert_rc(ARTIFS_EINVAL, artifs_repo_check(env->s, txn, "nope"));
	assert_ok(artifs_repo_info(env->s, txn, REPO, &created));
	assert_true(created > 1600000000);
	assert_rc(ARTIFS_ENOTFOUND, artifs_ref_get(&r, env->s, txn, REPO, "dev"));
	assert_rc(ARTIFS_ENOTFOUND, artifs_ref_get(&r, env->s, txn, "datasets/nope", "main"));
	assert_ok(artifs_repo_foreach(env->s, txn, list_repo, listed));
	mdb_txn_abort(txn);
	{
		char want[256];
		/* byte order of the names: "datasets/nnn..." < "datasets/x" < "models/..." */
		snprintf(want, sizeof(want), "%s;%s;models/bert-base_v1.2;", name100, REPO);
		assert_string_equal(listed, want);
	}
}

static void test_ref_cas(void **state)
{
	test_env *env = *state;
	artifs_oid zero = { { 0 } }, c1, c2, c3;
	artifs_ref r;

	fake_oid(&c1, 1);
	fake_oid(&c2, 2);
	fake_oid(&c3, 3);
	assert_ok(artifs_repo_create(env->s, REPO));
	/* the unborn branch moves from the zero id */
	assert_ok(ref_update(env->s, "main", ARTIFS_REF_BRANCH, &zero, &c1, "first"));
	/* "must not exist" fails for an existing branch */
	assert_rc(ARTIFS_EEXISTS, ref_update(env->s, "main", ARTIFS_REF_BRANCH, NULL, &c3, "x"));
	/* a wrong expectation loses the compare-and-swap and changes nothing */
	assert_rc(ARTIFS_ESTALE, ref_update(env->s, "main", ARTIFS_REF_BRANCH, &c2, &c3, "x"));
	assert_rc(ARTIFS_ESTALE, ref_update(env->s, "main", ARTIFS_REF_BRANCH, &zero, &c3, "x"));
	r = test_ref_get(env->s, REPO, "main");
	assert_oid_equal(&r.target, &c1);
	assert_int_equal(r.seq, 2);
	assert_ok(ref_update(env->s, "main", ARTIFS_REF_BRANCH, &c1, &c2, "second"));
	r = test_ref_get(env->s, REPO, "main");
	assert_oid_equal(&r.target, &c2);
	assert_int_equal(r.seq, 3);
	assert_true(r.time > 1600000000);
	/* expecting a branch that does not exist is stale too */
	assert_rc(ARTIFS_ESTALE, ref_update(env->s, "dev", ARTIFS_REF_BRANCH, &c1, &c2, "x"));
	assert_ok(ref_update(env->s, "dev", ARTIFS_REF_BRANCH, NULL, &c1, "branch off"));
	r = test_ref_get(env->s, REPO, "dev");
	assert_oid_equal(&r.target, &c1);
	assert_int_equal(r.seq, 1);
	/* environments move like branches */
	assert_ok(ref_update(env->s, "prod", ARTIFS_REF_ENV, NULL, &c1, "promote"));
	assert_ok(ref_update(env->s, "prod", ARTIFS_REF_ENV, &c1, &c2, "promote"));
	r = test_ref_get(env->s, REPO, "prod");
	assert_int_equal(r.kind, ARTIFS_REF_ENV);
	assert_oid_equal(&r.target, &c2);
}

static void test_tags_immutable(void **state)
{
	test_env *env = *state;
	artifs_oid c1, c2;
	artifs_ref r;

	fake_oid(&c1, 1);
	fake_oid(&c2, 2);
	assert_ok(artifs_repo_create(env->s, REPO));
	assert_ok(ref_update(env->s, "v1.0", ARTIFS_REF_TAG, NULL, &c1, "release"));
	assert_rc(ARTIFS_EIMMUTABLE, ref_update(env->s, "v1.0", ARTIFS_REF_TAG, NULL, &c2, "x"));
	assert_rc(ARTIFS_EIMMUTABLE, ref_update(env->s, "v1.0", ARTIFS_REF_TAG, &c1, &c2, "x"));
	/* tagging the same commit again is fine and changes nothing */
	assert_ok(ref_update(env->s, "v1.0", ARTIFS_REF_TAG, NULL, &c1, "again"));
	assert_ok(ref_update(env->s, "v1.0", ARTIFS_REF_TAG, &c1, &c1, "again"));
	r = test_ref_get(env->s, REPO, "v1.0");
	assert_int_equal(r.kind, ARTIFS_REF_TAG);
	assert_oid_equal(&r.target, &c1);
	assert_int_equal(r.seq, 1);
}

static void test_ref_kinds_share_namespace(void **state)
{
	test_env *env = *state;
	artifs_oid c1, c2;
	artifs_ref r;

	fake_oid(&c1, 1);
	fake_oid(&c2, 2);
	assert_ok(artifs_repo_create(env->s, REPO));
	assert_ok(ref_update(env->s, "v1", ARTIFS_REF_TAG, NULL, &c1, "tag"));
	assert_ok(ref_update(env->s, "prod", ARTIFS_REF_ENV, NULL, &c1, "env"));
	assert_rc(ARTIFS_EEXISTS, ref_update(env->s, "v1", ARTIFS_REF_BRANCH, NULL, &c2, "x"));
	assert_rc(ARTIFS_EEXISTS, ref_update(env->s, "v1", ARTIFS_REF_BRANCH, &c1, &c2, "x"));
	assert_rc(ARTIFS_EEXISTS, ref_update(env->s, "v1", ARTIFS_REF_ENV, &c1, &c2, "x"));
	assert_rc(ARTIFS_EEXISTS, ref_update(env->s, "main", ARTIFS_REF_TAG, NULL, &c2, "x"));
	assert_rc(ARTIFS_EEXISTS, ref_update(env->s, "main", ARTIFS_REF_ENV, NULL, &c2, "x"));
	assert_rc(ARTIFS_EEXISTS, ref_update(env->s, "prod", ARTIFS_REF_BRANCH, &c1, &c2, "x"));
	r = test_ref_get(env->s, REPO, "v1");
	assert_int_equal(r.kind, ARTIFS_REF_TAG);
	assert_oid_equal(&r.target, &c1);
	r = test_ref_get(env->s, REPO, "main");
	assert_int_equal(r.kind, ARTIFS_REF_BRANCH);
	assert_true(artifs_oid_is_zero(&r.target));
}

static void test_ref_invalid_names(void **state)
{
	test_env *env = *state;
	static const char *const bad[] = {
		"", ".hidden", "-opt", "a/b", "a b", "x.lock", "refs\\x", "tab\t", "\xc3\xa9", "a:b",
		"~1", "a^", "@{1}",
	};
	char n100[101], n101[102];
	artifs_oid c1;

	fake_oid(&c1, 1);
	assert_ok(artifs_repo_create(env->s, REPO));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(artifs_ref_name_valid(bad[i]));
		if (ref_update(env->s, bad[i], ARTIFS_REF_BRANCH, NULL, &c1, "x") != ARTIFS_EINVAL)
			fail_msg("ref name '%s' was accepted", bad[i]);
	}
	memset(n100, 'r', 100);
	n100[100] = '\0';
	memset(n101, 'r', 101);
	n101[101] = '\0';
	assert_rc(ARTIFS_EINVAL, ref_update(env->s, n101, ARTIFS_REF_BRANCH, NULL, &c1, "x"));
	assert_ok(ref_update(env->s, n100, ARTIFS_REF_BRANCH, NULL, &c1, "x"));
	assert_ok(ref_update(env->s, "v1.0_rc-2", ARTIFS_REF_TAG, NULL, &c1, "x"));
	assert_ok(ref_update(env->s, "a.lock.b", ARTIFS_REF_BRANCH, NULL, &c1, "x"));
}

struct logbuf {
	size_t n;
	uint64_t seq[16];
	artifs_oid old_id[16], new_id[16];
	char msg[16][32];
};

static int collect_log(const artifs_reflog_entry *e, void *ctx)
{
	struct logbuf *l = ctx;

	assert_true(l->n < 16);
	l->seq[l->n] = e->seq;
	l->old_id[l->n] = e->old_id;
	l->new_id[l->n] = e->new_id;
	assert_true(e->author_len == strlen("tester") || e->author_len == strlen("unit-test"));
	assert_true(e->message_len < 32);
	memcpy(l->msg[l->n], e->message, e->message_len);
	l->msg[l->n][e->message_len] = '\0';
	assert_true(e->time > 1600000000);
	l->n++;
	return 0;
}

static void read_log(struct logbuf *l, artifs_store *s, const char *name)
{
	MDB_txn *txn = NULL;

	memset(l, 0, sizeof(*l));
	assert_ok(artifs_rtxn_begin(s, &txn));
	assert_ok(artifs_reflog_foreach(s, txn, REPO, name, collect_log, l));
	mdb_txn_abort(txn);
}

static int stop_after_one(const artifs_reflog_entry *e, void *ctx)
{
	(void)e;
	++*(int *)ctx;
	return 99;
}

static void test_reflog(void **state)
{
	test_env *env = *state;
	artifs_oid zero = { { 0 } }, c1, c2, c3;
	struct logbuf l;
	MDB_txn *txn = NULL;
	int calls = 0;

	fake_oid(&c1, 1);
	fake_oid(&c2, 2);
	fake_oid(&c3, 3);
	assert_ok(artifs_repo_create(env->s, REPO));
	assert_ok(ref_update(env->s, "main", ARTIFS_REF_BRANCH, &zero, &c1, "one"));
	assert_rc(ARTIFS_ESTALE, ref_update(env->s, "main", ARTIFS_REF_BRANCH, &c3, &c2, "lost"));
	assert_ok(ref_update(env->s, "main", ARTIFS_REF_BRANCH, &c1, &c2, "two"));
	assert_ok(ref_update(env->s, "main", ARTIFS_REF_BRANCH, &c2, &c3, "three"));
	/* refs whose names extend "main" or are a prefix of it keep their own logs */
	assert_ok(ref_update(env->s, "main2", ARTIFS_REF_BRANCH, NULL, &c1, "other"));
	assert_ok(ref_update(env->s, "mai", ARTIFS_REF_BRANCH, NULL, &c1, "other"));
	assert_ok(ref_update(env->s, "v1", ARTIFS_REF_TAG, NULL, &c2, "tagged"));
	assert_ok(ref_update(env->s, "v1", ARTIFS_REF_TAG, NULL, &c2, "again"));

	read_log(&l, env->s, "main");
	assert_int_equal(l.n, 4);
	/* newest first; each entry's old id is the next older entry's new id */
	assert_string_equal(l.msg[0], "three");
	assert_string_equal(l.msg[1], "two");
	assert_string_equal(l.msg[2], "one");
	assert_string_equal(l.msg[3], "create repository");
	for (size_t i = 0; i < l.n; i++)
		assert_int_equal(l.seq[i], l.n - i);
	for (size_t i = 0; i + 1 < l.n; i++)
		assert_oid_equal(&l.old_id[i], &l.new_id[i + 1]);
	assert_oid_equal(&l.new_id[0], &c3);
	assert_oid_equal(&l.new_id[1], &c2);
	assert_oid_equal(&l.new_id[2], &c1);
	assert_true(artifs_oid_is_zero(&l.old_id[3]) && artifs_oid_is_zero(&l.new_id[3]));

	read_log(&l, env->s, "main2");
	assert_int_equal(l.n, 1);
	assert_string_equal(l.msg[0], "other");
	read_log(&l, env->s, "mai");
	assert_int_equal(l.n, 1);
	/* the no-op re-tag is not logged */
	read_log(&l, env->s, "v1");
	assert_int_equal(l.n, 1);
	assert_string_equal(l.msg[0], "tagged");
	read_log(&l, env->s, "nope");
	assert_int_equal(l.n, 0);

	/* a non-zero return from the callback stops the walk and is returned */
	assert_ok(artifs_rtxn_begin(env->s, &txn));
	assert_int_equal(artifs_reflog_foreach(env->s, txn, REPO, "main", stop_after_one, &calls), 99);
	mdb_txn_abort(txn);
	assert_int_equal(calls, 1);
}

static int list_ref(const char *name, const artifs_ref *r, void *ctx)
{
	char *out = ctx;
	char k[2] = { r->kind, 0 };

	strcat(out, name);
	strcat(out, ":");
	strcat(out, k);
	strcat(out, ";");
	return 0;
}

static void test_ref_foreach(void **state)
{
	test_env *env = *state;
	artifs_oid c1;
	char out[256] = "";
	MDB_txn *txn = NULL;

	fake_oid(&c1, 1);
	assert_ok(artifs_repo_create(env->s, REPO));
	assert_ok(artifs_repo_create(env->s, "datasets/x2"));
	assert_ok(ref_update(env->s, "v1", ARTIFS_REF_TAG, NULL, &c1, "t"));
	assert_ok(ref_update(env->s, "dev", ARTIFS_REF_BRANCH, NULL, &c1, "b"));
	assert_ok(ref_update(env->s, "prod", ARTIFS_REF_ENV, NULL, &c1, "e"));
	assert_ok(artifs_rtxn_begin(env->s, &txn));
	assert_ok(artifs_ref_foreach(env->s, txn, REPO, list_ref, out));
	mdb_txn_abort(txn);
	/* name order; refs of "datasets/x2" are not listed under "datasets/x" */
	assert_string_equal(out, "dev:b;main:b;prod:e;v1:t;");
}

/* ---- resolving revisions ---- */

static void hex_prefix(char *out, const artifs_oid *id, size_t n)
{
	char hex[ARTIFS_OID_HEXSZ + 1];

	artifs_oid_fmt(hex, id);
	memcpy(out, hex, n);
	out[n] = '\0';
}

static void test_rev_parse(void **state)
{
	test_env *env = *state;
	artifs_oid zero = { { 0 } }, c1, c2, cy, got;
	char rev[64];
	MDB_txn *txn = NULL;

	assert_ok(artifs_repo_create(env->s, REPO));
	assert_ok(artifs_repo_create(env->s, "datasets/y"));
	assert_ok(artifs_repo_create(env->s, "datasets/empty"));
	make_commit(&c1, env->s, REPO, "one");
	make_commit(&c2, env->s, REPO, "two");
	make_commit(&cy, env->s, "datasets/y", "one");
	/* the fixture relies on these three differing in their first 6 digits */
	assert_memory_not_equal(c1.id, c2.id, 3);
	assert_memory_not_equal(c1.id, cy.id, 3);
	assert_ok(ref_update(env->s, "main", ARTIFS_REF_BRANCH, &zero, &c2, "m"));
	assert_ok(ref_update(env->s, "v1", ARTIFS_REF_TAG, NULL, &c1, "t"));
	assert_ok(ref_update(env->s, "prod", ARTIFS_REF_ENV, NULL, &c1, "e"));

	assert_ok(artifs_rtxn_begin(env->s, &txn));
	assert_ok(artifs_rev_parse(&got, env->s, txn, REPO, "main"));
	assert_oid_equal(&got, &c2);
	assert_ok(artifs_rev_parse(&got, env->s, txn, REPO, "v1"));
	assert_oid_equal(&got, &c1);
	assert_ok(artifs_rev_parse(&got, env->s, txn, REPO, "prod"));
	assert_oid_equal(&got, &c1);
	for (size_t n = 6; n <= ARTIFS_OID_HEXSZ; n++) {
		hex_prefix(rev, &c1, n);
		memset(&got, 0, sizeof(got));
		assert_ok(artifs_rev_parse(&got, env->s, txn, REPO, rev));
		assert_oid_equal(&got, &c1);
	}
	/* upper-case digits are accepted */
	hex_prefix(rev, &c2, 8);
	for (char *p = rev; *p; p++)
		if (*p >= 'a' && *p <= 'f')
			*p = (char)(*p - 'a' + 'A');
	assert_ok(artifs_rev_parse(&got, env->s, txn, REPO, rev));
	assert_oid_equal(&got, &c2);
	/* fewer than 6 digits never resolve, even when unique */
	for (size_t n = 1; n < 6; n++) {
		hex_prefix(rev, &c1, n);
		assert_rc(ARTIFS_ENOTFOUND, artifs_rev_parse(&got, env->s, txn, REPO, rev));
	}
	/* a commit of another repository is not a commit of this one */
	hex_prefix(rev, &cy, ARTIFS_OID_HEXSZ);
	assert_rc(ARTIFS_ENOTFOUND, artifs_rev_parse(&got, env->s, txn, REPO, rev));
	assert_ok(artifs_rev_parse(&got, env->s, txn, "datasets/y", rev));
	assert_oid_equal(&got, &cy);
	/* neither a ref nor a commit */
	assert_rc(ARTIFS_ENOTFOUND, artifs_rev_parse(&got, env->s, txn, REPO, "nope"));
	assert_rc(ARTIFS_ENOTFOUND, artifs_rev_parse(&got, env->s, txn, REPO, "000000"));
	assert_rc(ARTIFS_ENOTFOUND, artifs_rev_parse(&got, env->s, txn, REPO, "ffffffffffff"));
	assert_rc(ARTIFS_ENOTFOUND, artifs_rev_parse(&got, env->s, txn, REPO, "abcdefgh"));
	hex_prefix(rev, &c1, ARTIFS_OID_HEXSZ);
	strcat(rev, "0");	/* 33 digits */
	assert_rc(ARTIFS_ENOTFOUND, artifs_rev_parse(&got, env->s, txn, REPO, rev));
	assert_rc(ARTIFS_ENOTFOUND, artifs_rev_parse(&got, env->s, txn, REPO, ""));
	/* an unborn branch names no commit */
	assert_rc(ARTIFS_ENOTFOUND, artifs_rev_parse(&got, env->s, txn, "datasets/empty", "main"));
	/* unknown or invalid repository */
	assert_rc(ARTIFS_ENOTFOUND, artifs_rev_parse(&got, env->s, txn, "datasets/nope", "main"));
	assert_rc(ARTIFS_EINVAL, artifs_rev_parse(&got, env->s, txn, "nope", "main"));
	mdb_txn_abort(txn);
}

struct cand {
	uint32_t prefix;	/* first 24 bits of the id */
	uint32_t i;
};

static int cand_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;

	if (x->prefix != y->prefix)
		return x->prefix < y->prefix ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

static void amb_commit(artifs_commit *c, char *msg, uint32_t i)
{
	snprintf(msg, 32, "ambiguous %u", i);
	memset(c, 0, sizeof(*c));
	c->time = 1700000000;
	c->repo = (char *)REPO;
	c->author = (char *)"t";
	c->message = msg;
}

static void test_rev_parse_ambiguous(void **state)
{
	enum { N = 1 << 16 };
	test_env *env = *state;
	struct cand *cand = malloc(N * sizeof(*cand));
	artifs_oid a, b, got;
	artifs_commit c;
	char msg[32], rev[ARTIFS_OID_HEXSZ + 1], ha[ARTIFS_OID_HEXSZ + 1], hb[ARTIFS_OID_HEXSZ + 1];
	uint32_t ia = 0, ib = 0;
	size_t differ;
	MDB_txn *txn = NULL;
	int found = 0;

	assert_non_null(cand);
	assert_ok(artifs_repo_create(env->s, REPO));
	/* find two commit records whose ids share 6 hex digits (a birthday search) */
	for (uint32_t i = 0; i < N; i++) {
		artifs_buf buf = { 0 };
		artifs_oid id;
		amb_commit(&c, msg, i);
		assert_ok(artifs_commit_encode(&buf, &c));
		artifs_oid_hash(&id, buf.ptr, buf.len);
		artifs_buf_release(&buf);
		cand[i].prefix = (uint32_t)id.id[0] << 16 | (uint32_t)id.id[1] << 8 | id.id[2];
		cand[i].i = i;
	}
	qsort(cand, N, sizeof(*cand), cand_cmp);
	for (uint32_t i = 1; i < N && !found; i++)
		if (cand[i].prefix == cand[i - 1].prefix) {
			ia = cand[i - 1].i;
			ib = cand[i].i;
			found = 1;
		}
	free(cand);
	assert_true(found);

	amb_commit(&c, msg, ia);
	write_commit(&a, env->s, &c);
	amb_commit(&c, msg, ib);
	write_commit(&b, env->s, &c);
	artifs_oid_fmt(ha, &a);
	artifs_oid_fmt(hb, &b);
	for (differ = 0; ha[differ] == hb[differ]; differ++)
		;
	assert_true(differ >= 6);

	assert_ok(artifs_rtxn_begin(env->s, &txn));
	for (size_t n = 6; n <= differ; n++) {
		hex_prefix(rev, &a, n);
		if (artifs_rev_parse(&got, env->s, txn, REPO, rev) != ARTIFS_EAMBIGUOUS)
			fail_msg("'%s' names both %s and %s but was not ambiguous", rev, ha, hb);
	}
	/* one more digit tells them apart */
	hex_prefix(rev, &a, differ + 1);
	assert_ok(artifs_rev_parse(&got, env->s, txn, REPO, rev));
	assert_oid_equal(&got, &a);
	hex_prefix(rev, &b, differ + 1);
	assert_ok(artifs_rev_parse(&got, env->s, txn, REPO, rev));
	assert_oid_equal(&got, &b);
	mdb_txn_abort(txn);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commit_roundtrip),
		cmocka_unit_test(test_commit_minimal_roundtrip),
		cmocka_unit_test(test_commit_duplicate_meta),
		cmocka_unit_test(test_meta_key_valid),
		cmocka_unit_test(test_commit_malformed),
		cmocka_unit_test(test_commit_random_damage),
		ENV_TEST(test_commit_store),
		ENV_TEST(test_repo_create),
		ENV_TEST(test_ref_cas),
		ENV_TEST(test_tags_immutable),
		ENV_TEST(test_ref_kinds_share_namespace),
		ENV_TEST(test_ref_invalid_names),
		ENV_TEST(test_reflog),
		ENV_TEST(test_ref_foreach),
		ENV_TEST(test_rev_parse),
		ENV_TEST(test_rev_parse_ambiguous),
	};

	setenv("ARTIFS_AUTHOR", "unit-test", 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
