/*
 * test_tree.c - tree records: building, encoding, parsing, validation and
 * look-up by name, and refusal of malformed names and records.
 */
#include "helpers.h"

#include "codec.h"
#include "tree.h"
#include "writer.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Names chosen to stress the byte order: prefixes, '.', UTF-8, long names. */
static const char *const names[] = {
	"a", "a.b", "ab", "a-", "B", "b", "data.csv", "data.csv.gz", "z",
	"\xc3\xa9t\xc3\xa9.txt",		/* "été.txt" */
	"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",	/* "日本語" */
	"\xf0\x9f\x93\x81",			/* an emoji */
	" leading space", "~tilde", "UPPER",
};
#define NNAMES (sizeof(names) / sizeof(names[0]))

static char long255[ARTIFS_NAME_MAX + 1];	/* 255 x 'n', NUL-terminated */
static char long255b[ARTIFS_NAME_MAX + 1];	/* 254 x 'n' then 'o' */

static void fake_id(artifs_oid *id, size_t i)
{
	memset(id, 0, sizeof(*id));
	id->id[0] = (uint8_t)(i + 1);
	id->id[15] = 0xa5;
}

/* Add names[order[i]] for every i, plus the two long names, and encode. */
static void build(artifs_buf *out, const size_t *order)
{
	artifs_tree_builder tb;
	artifs_oid id, labels;

	artifs_tree_builder_init(&tb);
	for (size_t i = 0; i < NNAMES; i++) {
		size_t k = order ? order[i] : i;
		fake_id(&id, k);
		memset(&labels, 0, sizeof(labels));
		labels.id[3] = (uint8_t)k;
		assert_ok(artifs_tree_builder_add(&tb, names[k], strlen(names[k]),
			k % 3 == 0 ? ARTIFS_T_DIR : k % 3 == 1 ? ARTIFS_T_FILE : ARTIFS_T_LINK,
			k % 3 == 1 && k % 2 ? ARTIFS_F_EXEC : 0, 1000 + k, &id, k % 2 ? &labels : NULL));
	}
	fake_id(&id, 100);
	assert_ok(artifs_tree_builder_add(&tb, long255, ARTIFS_NAME_MAX, ARTIFS_T_FILE, 0, 7, &id, NULL));
	fake_id(&id, 101);
	assert_ok(artifs_tree_builder_add(&tb, long255b, ARTIFS_NAME_MAX, ARTIFS_T_FILE, 0, 8, &id, NULL));
	assert_ok(artifs_tree_builder_encode(&tb, out));
	artifs_tree_builder_release(&tb);
}

static int group_setup(void **state)
{
	(void)state;
	memset(long255, 'n', ARTIFS_NAME_MAX);
	memset(long255b, 'n', ARTIFS_NAME_MAX);
	long255b[ARTIFS_NAME_MAX - 1] = 'o';
	return 0;
}

/* A copy in a buffer of exactly len bytes, so ASan sees any overread. */
static uint8_t *exact_copy(const void *p, size_t len)
{
	uint8_t *q = malloc(len ? len : 1);

	assert_non_null(q);
	memcpy(q, p, len);
	return q;
}

static int bytecmp(const char *a, size_t alen, const char *b, size_t blen)
{
	int c = memcmp(a, b, alen < blen ? alen : blen);

	return c ? c : (alen > blen) - (alen < blen);
}

static void test_roundtrip_and_lookup(void **state)
{
	artifs_buf buf = { 0 };
	artifs_tree_view t;
	artifs_tree_entry e;
	artifs_oid id;
	uint8_t *rec;

	(void)state;
	build(&buf, NULL);
	rec = exact_copy(buf.ptr, buf.len);
	assert_ok(artifs_tree_parse(&t, rec, buf.len));
	assert_ok(artifs_tree_validate(&t));
	assert_int_equal(t.count, NNAMES + 2);

	for (size_t k = 0; k < NNAMES; k++) {
		assert_ok(artifs_tree_lookup(&t, names[k], strlen(names[k]), &e));
		assert_int_equal(e.name_len, strlen(names[k]));
		assert_memory_equal(e.name, names[k], e.name_len);
		assert_int_equal(e.type, k % 3 == 0 ? ARTIFS_T_DIR : k % 3 == 1 ? ARTIFS_T_FILE : ARTIFS_T_LINK);
		assert_int_equal(e.flags, k % 3 == 1 && k % 2 ? ARTIFS_F_EXEC : 0);
		assert_int_equal(e.size, 1000 + k);
		fake_id(&id, k);
		assert_oid_equal(&e.id, &id);
		if (k % 2)
			assert_int_equal(e.labels.id[3], k);
		else
			assert_true(artifs_oid_is_zero(&e.labels));
	}
	assert_ok(artifs_tree_lookup(&t, long255, ARTIFS_NAME_MAX, &e));
	assert_int_equal(e.size, 7);
	assert_ok(artifs_tree_lookup(&t, long255b, ARTIFS_NAME_MAX, &e));
	assert_int_equal(e.size, 8);

	/* absent names, including neighbours of present ones in byte order */
	static const char *const absent[] = {
		"", "A", "a.", "a.bc", "aa", "ab ", "abc", "c", "data", "data.csv.g",
		"zz", "\xc3\xa9", "\xe6\x97\xa5", "\xff", "a/b",
	};
	for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++)
		assert_rc(ARTIFS_ENOTFOUND, artifs_tree_lookup(&t, absent[i], strlen(absent[i]), &e));
	/* a prefix of a present name, and the long name one byte short */
	assert_rc(ARTIFS_ENOTFOUND, artifs_tree_lookup(&t, "data.csv.gz", 4, &e));
	assert_rc(ARTIFS_ENOTFOUND, artifs_tree_lookup(&t, long255, ARTIFS_NAME_MAX - 1, &e));
	/* the length is what counts, not a NUL: "ab" looked up as 1 byte is "a" */
	assert_ok(artifs_tree_lookup(&t, "ab", 1, &e));
	assert_int_equal(e.name_len, 1);

	free(rec);
	artifs_buf_release(&buf);
}

static void test_entries_sorted(void **state)
{
	artifs_buf buf = { 0 };
	artifs_tree_view t;
	artifs_tree_entry prev, e;

	(void)state;
	build(&buf, NULL);
	assert_ok(artifs_tree_parse(&t, buf.ptr, buf.len));
	for (uint32_t i = 0; i < t.count; i++) {
		assert_ok(artifs_tree_entry_at(&t, i, &e));
		if (i > 0 && bytecmp(prev.name, prev.name_len, e.name, e.name_len) >= 0)
			fail_msg("entry %u '%.*s' does not sort after '%.*s'", i,
				(int)e.name_len, e.name, (int)prev.name_len, prev.name);
		prev = e;
	}
	/* bytewise, a prefix first: " leading space" < "B" < "a" < "a-" < "a.b" < "ab" */
	{
		static const char *const want[] = { " leading space", "B", "a", "a-", "a.b", "ab" };
		uint32_t at = 0;
		for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++) {
			for (; at < t.count; at++) {
				assert_ok(artifs_tree_entry_at(&t, at, &e));
				if (e.name_len == strlen(want[w]) && !memcmp(e.name, want[w], e.name_len))
					break;
			}
			if (at == t.count)
				fail_msg("'%s' missing or out of order", want[w]);
		}
	}
	assert_rc(ARTIFS_EINVAL, artifs_tree_entry_at(&t, t.count, &e));
	artifs_buf_release(&buf);
}

static void test_insertion_order_irrelevant(void **state)
{
	artifs_buf a = { 0 }, b = { 0 }, c = { 0 };
	size_t rev[NNAMES], shuf[NNAMES];
	test_rng r;

	(void)state;
	for (size_t i = 0; i < NNAMES; i++)
		rev[i] = shuf[i] = NNAMES - 1 - i;
	test_rng_init(&r, TEST_SEED);
	for (size_t i = NNAMES - 1; i > 0; i--) {
		size_t j = test_rng_next(&r) % (i + 1), t = shuf[i];
		shuf[i] = shuf[j];
		shuf[j] = t;
	}
	build(&a, NULL);
	build(&b, rev);
	build(&c, shuf);
	assert_int_equal(a.len, b.len);
	assert_int_equal(a.len, c.len);
	assert_memory_equal(a.ptr, b.ptr, a.len);
	assert_memory_equal(a.ptr, c.ptr, a.len);
	artifs_buf_release(&a);
	artifs_buf_release(&b);
	artifs_buf_release(&c);
}

static void test_empty_tree(void **state)
{
	artifs_tree_builder tb;
	artifs_buf buf = { 0 };
	artifs_tree_view t;
	artifs_tree_entry e;

	(void)state;
	artifs_tree_builder_init(&tb);
	assert_ok(artifs_tree_builder_encode(&tb, &buf));
	assert_int_equal(buf.len, ARTIFS_TREE_HDRSZ);
	assert_ok(artifs_tree_parse(&t, buf.ptr, buf.len));
	assert_ok(artifs_tree_validate(&t));
	assert_int_equal(t.count, 0);
	assert_rc(ARTIFS_ENOTFOUND, artifs_tree_lookup(&t, "a", 1, &e));
	artifs_tree_builder_release(&tb);
	artifs_buf_release(&buf);
}

static void test_invalid_names(void **state)
{
	static const struct { const char *name; size_t len; } bad[] = {
		{ "", 0 }, { ".", 1 }, { "..", 2 }, { "a/b", 3 }, { "/", 1 }, { "/a", 2 },
		{ "a/", 2 }, { "a\0b", 3 }, { "\0", 1 },
	};
	char too_long[ARTIFS_NAME_MAX + 1];
	artifs_tree_builder tb;
	artifs_oid id = { { 1 } };

	(void)state;
	memset(too_long, 'x', sizeof(too_long));
	artifs_tree_builder_init(&tb);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(artifs_name_valid(bad[i].name, bad[i].len));
		assert_rc(ARTIFS_EINVAL, artifs_tree_builder_add(&tb, bad[i].name, bad[i].len,
			ARTIFS_T_FILE, 0, 0, &id, NULL));
	}
	assert_false(artifs_name_valid(too_long, ARTIFS_NAME_MAX + 1));
	assert_rc(ARTIFS_EINVAL, artifs_tree_builder_add(&tb, too_long, ARTIFS_NAME_MAX + 1,
		ARTIFS_T_FILE, 0, 0, &id, NULL));
	assert_int_equal(tb.n, 0);
	/* the borderline cases that are fine */
	assert_true(artifs_name_valid(too_long, ARTIFS_NAME_MAX));
	assert_true(artifs_name_valid("...", 3));
	assert_true(artifs_name_valid(".a", 2));
	assert_true(artifs_name_valid("a..", 3));
	assert_true(artifs_name_valid("\xc3\xa9", 2));
	artifs_tree_builder_release(&tb);
}

static void test_duplicate_rejected(void **state)
{
	artifs_tree_builder tb;
	artifs_buf buf = { 0 };
	artifs_oid id = { { 1 } };

	(void)state;
	artifs_tree_builder_init(&tb);
	assert_ok(artifs_tree_builder_add(&tb, "x", 1, ARTIFS_T_FILE, 0, 1, &id, NULL));
	assert_ok(artifs_tree_builder_add(&tb, "xy", 2, ARTIFS_T_FILE, 0, 1, &id, NULL));
	assert_ok(artifs_tree_builder_add(&tb, "y", 1, ARTIFS_T_DIR, 0, 1, &id, NULL));
	/* same name, another type: still a duplicate */
	assert_ok(artifs_tree_builder_add(&tb, "x", 1, ARTIFS_T_DIR, 0, 2, &id, NULL));
	assert_rc(ARTIFS_EINVAL, artifs_tree_builder_encode(&tb, &buf));
	assert_int_equal(buf.len, 0);
	artifs_tree_builder_release(&tb);
	artifs_buf_release(&buf);
}

/* Parse and, if that passes, validate; a corrupt record must say ECORRUPT. */
static int parse_validate(const uint8_t *p, size_t len)
{
	uint8_t *q = exact_copy(p, len);
	artifs_tree_view t;
	int rc = artifs_tree_parse(&t, q, len);

	if (rc == 0)
		rc = artifs_tree_validate(&t);
	free(q);
	return rc;
}

static void test_truncated_records(void **state)
{
	artifs_buf buf = { 0 };

	(void)state;
	build(&buf, NULL);
	assert_ok(parse_validate(buf.ptr, buf.len));
	for (size_t len = 0; len < buf.len; len++)
		if (parse_validate(buf.ptr, len) != ARTIFS_ECORRUPT)
			fail_msg("record truncated to %zu of %zu bytes was accepted", len, buf.len);
	artifs_buf_release(&buf);
}

/* Entry field offsets in the record (index/FORMAT.md). */
#define ENT(i) (ARTIFS_TREE_HDRSZ + (size_t)(i) * ARTIFS_TREE_ENTSZ)

static void test_garbled_records(void **state)
{
	artifs_buf buf = { 0 };
	uint8_t *q;
	uint32_t count;
	size_t names_at;

	(void)state;
	build(&buf, NULL);
	count = get_le32(buf.ptr + 4);
	names_at = ENT(count);
	q = malloc(buf.len);
	assert_non_null(q);

#define MUTATE(what) do { \
		memcpy(q, buf.ptr, buf.len); \
		what; \
		if (parse_validate(q, buf.len) != ARTIFS_ECORRUPT) \
			fail_msg("garbled record accepted: %s", #what); \
	} while (0)

	MUTATE(q[0] = 'C');				/* wrong type byte */
	MUTATE(q[1] = 2);				/* unknown version */
	MUTATE(put_le32(q + 4, count + 1));		/* count past the end */
	MUTATE(put_le32(q + 4, UINT32_MAX));
	MUTATE(put_le32(q + ENT(2), (uint32_t)(buf.len - names_at)));	/* name starts at the end */
	MUTATE(put_le32(q + ENT(2), UINT32_MAX));	/* name offset far outside */
	MUTATE(put_le16(q + ENT(count - 1) + 4, UINT16_MAX));	/* name runs past the end */
	MUTATE(put_le16(q + ENT(3) + 4, 0));		/* empty name */
	MUTATE(q[ENT(4) + 6] = 0);			/* type 0 */
	MUTATE(q[ENT(4) + 6] = 9);			/* unknown type */
	MUTATE(q[ENT(4) + 7] = 0x80);			/* unknown flag */
	MUTATE(q[names_at] = '/');			/* " leading space" -> "/leading space" */
	MUTATE(memcpy(q + ENT(1), buf.ptr + ENT(2), ARTIFS_TREE_ENTSZ));	/* duplicate entry */
	MUTATE(memcpy(q + ENT(1), buf.ptr + ENT(2), ARTIFS_TREE_ENTSZ);
	       memcpy(q + ENT(2), buf.ptr + ENT(1), ARTIFS_TREE_ENTSZ));	/* out of order */
#undef MUTATE

	/* look-ups touch only the entries they visit, but never read outside */
	{
		artifs_tree_view t;
		artifs_tree_entry e;
		uint8_t *r = exact_copy(buf.ptr, buf.len);
		for (uint32_t i = 0; i < count; i++)
			put_le32(r + ENT(i), UINT32_MAX);
		assert_ok(artifs_tree_parse(&t, r, buf.len));
		assert_rc(ARTIFS_ECORRUPT, artifs_tree_lookup(&t, "a", 1, &e));
		assert_rc(ARTIFS_ECORRUPT, artifs_tree_entry_at(&t, 0, &e));
		free(r);
	}
	free(q);
	artifs_buf_release(&buf);
}

/* Random damage: every outcome is an error code or a usable record, never a crash. */
static void test_random_damage(void **state)
{
	artifs_buf buf = { 0 };
	test_rng r;
	size_t corrupt = 0;

	(void)state;
	build(&buf, NULL);
	test_rng_init(&r, TEST_SEED);
	for (int round = 0; round < 20000; round++) {
		size_t len = buf.len;
		uint8_t *q;
		artifs_tree_view t;
		artifs_tree_entry e;
		int rc, flips = 1 + (int)(test_rng_next(&r) % 4);

		if (round % 4 == 0)
			len = test_rng_next(&r) % (buf.len + 1);
		q = exact_copy(buf.ptr, len);
		for (int f = 0; f < flips && len; f++)
			q[test_rng_next(&r) % len] ^= (uint8_t)(1 + test_rng_next(&r) % 255);
		rc = artifs_tree_parse(&t, q, len);
		if (rc == 0) {
			/* look-up works or reports, whether or not the record validates */
			rc = artifs_tree_lookup(&t, "data.csv", 8, &e);
			assert_true(rc == 0 || rc == ARTIFS_ENOTFOUND || rc == ARTIFS_ECORRUPT);
			rc = artifs_tree_validate(&t);
		}
		if (rc) {
			assert_rc(ARTIFS_ECORRUPT, rc);
			corrupt++;
		} else {
			/* a record that validates is sorted and every name is found */
			for (uint32_t i = 0; i < t.count; i++) {
				artifs_tree_entry f;
				assert_ok(artifs_tree_entry_at(&t, i, &e));
				assert_ok(artifs_tree_lookup(&t, e.name, e.name_len, &f));
				assert_ptr_equal(f.name, e.name);
			}
		}
		free(q);
	}
	assert_true(corrupt > 0);
	artifs_buf_release(&buf);
}

static void test_resolve_in_store(void **state)
{
	test_env *env = *state;
	artifs_tree_builder tb;
	artifs_buf sub = { 0 }, root = { 0 };
	artifs_oid file_id, sub_id, root_id, id;
	artifs_tree_entry e;
	artifs_writer *w = NULL;

	artifs_oid_hash(&file_id, "x", 1);
	artifs_tree_builder_init(&tb);
	assert_ok(artifs_tree_builder_add(&tb, "f.txt", 5, ARTIFS_T_FILE, 0, 1, &file_id, NULL));
	assert_ok(artifs_tree_builder_encode(&tb, &sub));
	artifs_tree_builder_release(&tb);
	artifs_oid_hash(&sub_id, sub.ptr, sub.len);
	artifs_tree_builder_init(&tb);
	assert_ok(artifs_tree_builder_add(&tb, "dir", 3, ARTIFS_T_DIR, 0, 1, &sub_id, NULL));
	assert_ok(artifs_tree_builder_add(&tb, "top", 3, ARTIFS_T_FILE, 0, 1, &file_id, NULL));
	assert_ok(artifs_tree_builder_encode(&tb, &root));
	artifs_tree_builder_release(&tb);
	artifs_oid_hash(&root_id, root.ptr, root.len);

	assert_ok(artifs_writer_new(&w, env->s));
	assert_ok(artifs_writer_put_tree(w, &id, sub.ptr, sub.len));
	assert_oid_equal(&id, &sub_id);
	assert_ok(artifs_writer_put_tree(w, &id, root.ptr, root.len));
	assert_oid_equal(&id, &root_id);
	assert_ok(artifs_writer_finish(w, NULL, NULL));
	assert_int_equal(artifs_writer_get_stats(w)->objects_new, 2);
	artifs_writer_free(w);

	assert_ok(test_resolve(&e, env->s, &root_id, "dir/f.txt"));
	assert_int_equal(e.type, ARTIFS_T_FILE);
	assert_oid_equal(&e.id, &file_id);
	/* leading, trailing and repeated slashes are ignored */
	assert_ok(test_resolve(&e, env->s, &root_id, "//dir///f.txt/"));
	assert_oid_equal(&e.id, &file_id);
	assert_ok(test_resolve(&e, env->s, &root_id, "/dir/"));
	assert_int_equal(e.type, ARTIFS_T_DIR);
	assert_oid_equal(&e.id, &sub_id);
	/* the empty path is the root */
	assert_ok(test_resolve(&e, env->s, &root_id, ""));
	assert_oid_equal(&e.id, &root_id);
	assert_rc(ARTIFS_ENOTFOUND, test_resolve(&e, env->s, &root_id, "dir/nope"));
	assert_rc(ARTIFS_ENOTFOUND, test_resolve(&e, env->s, &root_id, "di"));
	/* a file in the middle of a path is not a directory */
	assert_rc(-ENOTDIR, test_resolve(&e, env->s, &root_id, "top/x"));
	artifs_buf_release(&sub);
	artifs_buf_release(&root);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_and_lookup),
		cmocka_unit_test(test_entries_sorted),
		cmocka_unit_test(test_insertion_order_irrelevant),
		cmocka_unit_test(test_empty_tree),
		cmocka_unit_test(test_invalid_names),
		cmocka_unit_test(test_duplicate_rejected),
		cmocka_unit_test(test_truncated_records),
		cmocka_unit_test(test_garbled_records),
		cmocka_unit_test(test_random_damage),
		ENV_TEST(test_resolve_in_store),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
