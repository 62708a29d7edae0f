/*
 * test_label.c - labelset records, label files, edits applied to trees,
 * the manifest, labels carried over by a data commit, and gc/fsck reaching
 * labelsets.
 */
#include "helpers.h"

#include "commit.h"
#include "label.h"
#include "maint.h"
#include "snapshot.h"
#include "store_int.h"
#include "writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPO "datasets/lab"

static artifs_label L(const char *k, const char *v)
{
	artifs_label l = { k, strlen(k), v, strlen(v) };
	return l;
}

/* ---- records ---- */

static void test_key_value_rules(void **state)
{
	(void)state;
	assert_true(artifs_label_key_valid("class", 5));
	assert_true(artifs_label_key_valid("a.b-c_9", 7));
	assert_false(artifs_label_key_valid("", 0));
	assert_false(artifs_label_key_valid("Class", 5));
	assert_false(artifs_label_key_valid(".hidden", 7));
	assert_false(artifs_label_key_valid("-x", 2));
	assert_false(artifs_label_key_valid("a=b", 3));
	assert_false(artifs_label_key_valid("a/b", 3));
	{
		char k[ARTIFS_LABEL_KEY_MAX + 2];
		memset(k, 'k', sizeof(k));
		assert_true(artifs_label_key_valid(k, ARTIFS_LABEL_KEY_MAX));
		assert_false(artifs_label_key_valid(k, ARTIFS_LABEL_KEY_MAX + 1));
	}
	assert_true(artifs_label_value_valid("chat noir \xc3\xa9", 12));
	assert_false(artifs_label_value_valid("", 0));
	assert_false(artifs_label_value_valid("a\nb", 3));
	assert_false(artifs_label_value_valid("a\rb", 3));
	assert_false(artifs_label_value_valid("a\0b", 3));
	assert_false(artifs_label_value_valid("\xc3", 1));		/* truncated */
	assert_false(artifs_label_value_valid("\xc0\xaf", 2));		/* overlong */
	assert_false(artifs_label_value_valid("\xed\xa0\x80", 3));	/* surrogate */
	assert_true(artifs_label_value_valid("\xf0\x9f\x90\xb1", 4));	/* cat face */
}

static void test_labelset_roundtrip(void **state)
{
	artifs_label in[3] = { L("split", "train"), L("class", "cat"), L("reviewed", "yes") };
	artifs_label in2[3] = { L("reviewed", "yes"), L("split", "train"), L("class", "cat") };
	artifs_label out[8];
	artifs_buf a = { 0 }, b = { 0 };
	size_t n;

	(void)state;
	assert_ok(artifs_labelset_encode(&a, in, 3));
	assert_ok(artifs_labelset_encode(&b, in2, 3));
	/* order of input does not matter: one record per set */
	assert_int_equal(a.len, b.len);
	assert_memory_equal(a.ptr, b.ptr, a.len);
	assert_ok(artifs_labelset_decode(out, 8, &n, a.ptr, a.len));
	assert_int_equal(n, 3);
	assert_memory_equal(out[0].key, "class", 5);
	assert_memory_equal(out[2].value, "train", 5);
	/* every truncation and a flipped header are refused */
	for (size_t cut = 0; cut < a.len; cut++)
		assert_rc(ARTIFS_ECORRUPT, artifs_labelset_decode(out, 8, &n, a.ptr, cut));
	a.ptr[0] = 'T';
	assert_rc(ARTIFS_ECORRUPT, artifs_labelset_decode(out, 8, &n, a.ptr, a.len));
	/* duplicates and bad keys never encode */
	{
		artifs_label dup[2] = { L("class", "a"), L("class", "b") };
		artifs_label bad[1] = { L("Bad", "x") };
		artifs_buf c = { 0 };
		assert_rc(ARTIFS_EINVAL, artifs_labelset_encode(&c, dup, 2));
		assert_rc(ARTIFS_EINVAL, artifs_labelset_encode(&c, bad, 1));
		artifs_buf_release(&c);
	}
	artifs_buf_release(&a);
	artifs_buf_release(&b);
}

/* ---- label files ---- */

static int parse_str(artifs_label_edits *e, const char *text, enum artifs_label_format fmt)
{
	FILE *f = fmemopen((void *)text, strlen(text), "r");
	int rc;

	assert_non_null(f);
	rc = artifs_label_file_parse(e, "-", f, fmt);
	fclose(f);
	return rc;
}

static void test_parse_csv(void **state)
{
	artifs_label_edits e;

	(void)state;
	artifs_label_edits_init(&e);
	assert_ok(parse_str(&e, "path,class,split\n"
		"a/1.jpg,cat,train\n"
		"\"a/with,comma.jpg\",\"say \"\"hi\"\"\",\n"	/* empty cell: untouched */
		"./b//2.jpg, spaced ,val\r\n", ARTIFS_LABELS_CSV));
	assert_int_equal(e.n, 5);
	assert_string_equal(e.v[0].path, "a/1.jpg");
	assert_string_equal(e.v[2].path, "a/with,comma.jpg");
	assert_string_equal(e.v[2].value, "say \"hi\"");
	assert_int_equal(e.v[2].line, 3);
	assert_string_equal(e.v[3].path, "b/2.jpg");		/* normalised */
	assert_string_equal(e.v[3].value, " spaced ");	/* spaces kept */
	artifs_label_edits_release(&e);

	artifs_label_edits_init(&e);
	assert_ok(parse_str(&e, "path,key,value\nx,class,cat\nx,split,val\n", ARTIFS_LABELS_CSV));
	assert_int_equal(e.n, 2);
	assert_string_equal(e.v[1].key, "split");
	artifs_label_edits_release(&e);

	/* problems name their lines; nothing is returned half-done */
	artifs_label_edits_init(&e);
	assert_rc(ARTIFS_EINVAL, parse_str(&e, "path,class\nx,cat\ny,dog,extra\nz,\"open\n", ARTIFS_LABELS_CSV));
	assert_non_null(strstr(artifs_error_last(), "line 3"));
	artifs_label_edits_release(&e);
	artifs_label_edits_init(&e);
	assert_rc(ARTIFS_EINVAL, parse_str(&e, "file,class\nx,cat\n", ARTIFS_LABELS_CSV));
	assert_non_null(strstr(artifs_error_last(), "line 1"));
	artifs_label_edits_release(&e);
	artifs_label_edits_init(&e);
	assert_rc(ARTIFS_EINVAL, parse_str(&e, "path,Class\nx,cat\n", ARTIFS_LABELS_CSV));
	artifs_label_edits_release(&e);
	artifs_label_edits_init(&e);
	assert_rc(ARTIFS_EINVAL, parse_str(&e, "path,a,a\nx,1,2\n", ARTIFS_LABELS_CSV));
	artifs_label_edits_release(&e);
	artifs_label_edits_init(&e);
	assert_rc(ARTIFS_EINVAL, parse_str(&e, "path,a\n../x,1\n", ARTIFS_LABELS_CSV));
	assert_non_null(strstr(artifs_error_last(), ".."));
	artifs_label_edits_release(&e);
}

static void test_parse_jsonl(void **state)
{
	artifs_label_edits e;

	(void)state;
	artifs_label_edits_init(&e);
	assert_ok(parse_str(&e,
		"{\"path\": \"a.jpg\", \"labels\": {\"class\": \"cat\", \"n\": 3, \"ok\": true, \"s\": 0.93, \"gone\": null}}\n"
		"\n"
		"{\"path\": \"b.jpg\", \"labels\": {}}\n", ARTIFS_LABELS_JSONL));
	assert_int_equal(e.n, 5);
	assert_string_equal(e.v[1].value, "3");
	assert_string_equal(e.v[2].value, "true");
	assert_string_equal(e.v[3].value, "0.93");
	assert_null(e.v[4].value);	/* null removes */
	artifs_label_edits_release(&e);

	artifs_label_edits_init(&e);
	assert_rc(ARTIFS_EINVAL, parse_str(&e,
		"{\"path\": \"a\", \"labels\": {\"k\": \"v\"}}\n"
		"{\"path\": \"a\", \"labels\": {\"k\": \"line\\nbreak\"}}\n"
		"not json\n"
		"{\"path\": \"a\", \"labels\": {\"k\": [1]}}\n"
		"{\"path\": \"a\", \"labels\": {\"k\": \"1\", \"k\": \"2\"}}\n", ARTIFS_LABELS_JSONL));
	for (int line = 2; line <= 5; line++) {
		char want[16];
		snprintf(want, sizeof(want), "line %d", line);
		assert_non_null(strstr(artifs_error_last(), want));
	}
	assert_null(strstr(artifs_error_last(), "line 1:"));
	artifs_label_edits_release(&e);
}

/* ---- applying edits ---- */

static void make_tree(test_env *env)
{
	test_mkdir(env->src, "img");
	test_mkdir(env->src, "img/cat");
	test_mkdir(env->src, "img/dog");
	test_write_file(env->src, "img/cat/1.jpg", "c1", 2, 0644);
	test_write_file(env->src, "img/cat/2.jpg", "c2", 2, 0644);
	test_write_file(env->src, "img/dog/1.jpg", "d1", 2, 0644);
	test_write_file(env->src, "top.txt", "t", 1, 0644);
	test_symlink(env->src, "link", "top.txt");
	test_age(env->src, "img/cat/1.jpg", 100);
}

static void commit_src(test_env *env, artifs_oid *out, artifs_label_edits *e)
{
	artifs_snapshot_opts o = ARTIFS_SNAPSHOT_OPTS_INIT;

	o.labels = e;
	assert_ok(artifs_snapshot_dir(out, env->s, REPO, "main", env->src, &o, NULL));
}

/* Labels of path in commit c as "k=v,k=v" (empty: none). */
static char *labels_of(test_env *env, const artifs_oid *c, const char *path)
{
	artifs_label l[ARTIFS_LABELS_PER_FILE_MAX];
	artifs_tree_entry e;
	artifs_oid tree;
	MDB_txn *txn;
	static char buf[1024];
	size_t n = 0, o = 0;

	test_commit_tree(&tree, env->s, c);
	assert_ok(test_resolve(&e, env->s, &tree, path));
	assert_ok(artifs_rtxn_begin(env->s, &txn));
	if (!artifs_oid_is_zero(&e.labels))
		assert_ok(artifs_labelset_load(l, ARTIFS_LABELS_PER_FILE_MAX, &n, env->s, txn, &e.labels));
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%.*s=%.*s", i ? "," : "",
			(int)l[i].key_len, l[i].key, (int)l[i].value_len, l[i].value);
	mdb_txn_abort(txn);
	return buf;
}

static void add(artifs_label_edits *e, const char *path, const char *k, const char *v, uint64_t line)
{
	assert_ok(artifs_label_edits_add(e, path, strlen(path), k, strlen(k), v, v ? strlen(v) : 0, line));
}

static void test_apply_and_commit(void **state)
{
	test_env *env = *state;
	artifs_label_commit_opts o = { "relabel", NULL, NULL, NULL };
	artifs_label_commit_stats st;
	artifs_label_edits e;
	artifs_oid c1, c2, c3, c4, head;

	assert_ok(artifs_repo_create(env->s, REPO));
	make_tree(env);
	commit_src(env, &c1, NULL);
	assert_string_equal(labels_of(env, &c1, "img/cat/1.jpg"), "");

	artifs_label_edits_init(&e);
	add(&e, "img/cat/1.jpg", "split", "train", 2);
	add(&e, "img/cat/1.jpg", "class", "cat", 2);
	add(&e, "img/dog", "class", "dog", 3);		/* a directory: every file below */
	add(&e, "", "reviewed", "no", 4);			/* the root: every file */
	assert_ok(artifs_label_commit(&c2, env->s, REPO, "main", &e, &o, &st));
	artifs_label_edits_release(&e);
	assert_true(st.created);
	assert_int_equal(st.files_changed, 4);
	assert_int_equal(st.labelled, 4);
	assert_string_equal(labels_of(env, &c2, "img/cat/1.jpg"), "class=cat,reviewed=no,split=train");
	assert_string_equal(labels_of(env, &c2, "img/dog/1.jpg"), "class=dog,reviewed=no");
	assert_string_equal(labels_of(env, &c2, "top.txt"), "reviewed=no");
	assert_string_equal(labels_of(env, &c1, "img/cat/1.jpg"), "");	/* old version kept */

	/* the same content: same blob ids, the manifest is set */
	{
		artifs_tree_entry a, b;
		artifs_oid t1, t2;
		artifs_commit *c;
		MDB_txn *txn;
		uint8_t *data;
		size_t len;
		const char *want =
			"{\"path\":\"img/cat/1.jpg\",\"labels\":{\"class\":\"cat\",\"reviewed\":\"no\",\"split\":\"train\"}}\n"
			"{\"path\":\"img/cat/2.jpg\",\"labels\":{\"reviewed\":\"no\"}}\n"
			"{\"path\":\"img/dog/1.jpg\",\"labels\":{\"class\":\"dog\",\"reviewed\":\"no\"}}\n"
			"{\"path\":\"top.txt\",\"labels\":{\"reviewed\":\"no\"}}\n";
		test_commit_tree(&t1, env->s, &c1);
		test_commit_tree(&t2, env->s, &c2);
		assert_ok(test_resolve(&a, env->s, &t1, "img/cat/1.jpg"));
		assert_ok(test_resolve(&b, env->s, &t2, "img/cat/1.jpg"));
		assert_oid_equal(&a.id, &b.id);
		assert_ok(artifs_rtxn_begin(env->s, &txn));
		assert_ok(artifs_commit_load(&c, env->s, txn, &c2));
		assert_false(artifs_oid_is_zero(&c->labels));
		{
			/* read the manifest through a one-entry tree holding it */
			artifs_tree_builder tb;
			artifs_buf rec = { 0 };
			artifs_writer *w;
			artifs_oid tid;
			artifs_tree_builder_init(&tb);
			assert_ok(artifs_tree_builder_add(&tb, "m", 1, ARTIFS_T_FILE, 0, strlen(want),
				&c->labels, NULL));
			assert_ok(artifs_tree_builder_encode(&tb, &rec));
			assert_ok(artifs_writer_new(&w, env->s));
			assert_ok(artifs_writer_put_tree(w, &tid, rec.ptr, rec.len));
			assert_ok(artifs_writer_flush(w));
			artifs_writer_free(w);
			assert_ok(test_read_path(&data, &len, env->s, &tid, "m"));
			artifs_tree_builder_release(&tb);
			artifs_buf_release(&rec);
		}
		assert_int_equal(len, strlen(want));
		assert_memory_equal(data, want, len);
		free(data);
		artifs_commit_free(c);
		mdb_txn_abort(txn);
	}

	/* the same edits again: nothing changes, no commit */
	artifs_label_edits_init(&e);
	add(&e, "img/dog/1.jpg", "class", "dog", 0);
	assert_ok(artifs_label_commit(&c3, env->s, REPO, "main", &e, &o, &st));
	artifs_label_edits_release(&e);
	assert_false(st.created);
	assert_oid_equal(&c3, &c2);

	/* refusals: unknown path, through a file, a symlink, twice; branch kept */
	artifs_label_edits_init(&e);
	add(&e, "img/cat/9.jpg", "class", "cat", 7);
	add(&e, "top.txt/x", "class", "cat", 8);
	add(&e, "link", "class", "cat", 9);
	add(&e, "img/cat/2.jpg", "class", "a", 10);
	add(&e, "img/cat/2.jpg", "class", "b", 11);
	assert_rc(ARTIFS_EINVAL, artifs_label_commit(&c3, env->s, REPO, "main", &e, &o, &st));
	assert_non_null(strstr(artifs_error_last(), "line 7"));
	assert_non_null(strstr(artifs_error_last(), "line 11"));
	artifs_label_edits_release(&e);
	/* an unknown name sorting before every entry, then a good edit after it */
	artifs_label_edits_init(&e);
	add(&e, "AAA.txt", "class", "cat", 2);
	add(&e, "AAA.txt", "split", "x", 2);
	add(&e, "top.txt", "class", "cat", 3);
	assert_rc(ARTIFS_EINVAL, artifs_label_commit(&c3, env->s, REPO, "main", &e, &o, &st));
	assert_non_null(strstr(artifs_error_last(), "line 2: no file or directory 'AAA.txt'"));
	/* reported once, though the row set two keys */
	assert_null(strstr(strstr(artifs_error_last(), "AAA.txt") + 1, "AAA.txt"));
	artifs_label_edits_release(&e);
	artifs_label_edits_init(&e);
	add(&e, "img/cat/9.jpg", "class", "cat", 7);
	add(&e, "top.txt/x", "class", "cat", 8);
	add(&e, "link", "class", "cat", 9);
	assert_rc(ARTIFS_EINVAL, artifs_label_commit(&c3, env->s, REPO, "main", &e, &o, &st));
	assert_non_null(strstr(artifs_error_last(), "line 7"));
	assert_non_null(strstr(artifs_error_last(), "line 8"));
	assert_non_null(strstr(artifs_error_last(), "line 9"));
	artifs_label_edits_release(&e);
	test_ref_target(&head, env->s, REPO, "main");
	assert_oid_equal(&head, &c2);

	/* removal, and --replace */
	artifs_label_edits_init(&e);
	add(&e, "", "reviewed", NULL, 0);
	assert_ok(artifs_label_commit(&c3, env->s, REPO, "main", &e, &o, &st));
	artifs_label_edits_release(&e);
	assert_string_equal(labels_of(env, &c3, "top.txt"), "");
	assert_string_equal(labels_of(env, &c3, "img/cat/1.jpg"), "class=cat,split=train");
	artifs_label_edits_init(&e);
	e.replace = 1;
	add(&e, "top.txt", "only", "this", 1);
	assert_ok(artifs_label_commit(&c4, env->s, REPO, "main", &e, &o, &st));
	artifs_label_edits_release(&e);
	assert_string_equal(labels_of(env, &c4, "img/cat/1.jpg"), "");
	assert_string_equal(labels_of(env, &c4, "top.txt"), "only=this");

	/* a data commit keeps labels by path; --labels applies on top */
	test_write_file(env->src, "top.txt", "changed", 7, 0644);
	test_write_file(env->src, "img/new.jpg", "n", 1, 0644);
	artifs_label_edits_init(&e);
	add(&e, "img/new.jpg", "class", "new", 1);
	commit_src(env, &c3, &e);
	artifs_label_edits_release(&e);
	assert_string_equal(labels_of(env, &c3, "top.txt"), "only=this");
	assert_string_equal(labels_of(env, &c3, "img/new.jpg"), "class=new");

	/* gc keeps every labelset and manifest a ref reaches; fsck is clean */
	{
		artifs_gc_stats gs;
		artifs_fsck_stats fs;
		assert_ok(artifs_gc(env->s, 0, &gs));
		assert_ok(artifs_fsck(env->s, NULL, NULL, NULL, &fs));
		assert_int_equal(fs.faults, 0);
		assert_true(fs.labelsets >= 4);
		assert_string_equal(labels_of(env, &c2, "img/cat/1.jpg"), "class=cat,reviewed=no,split=train");
	}
}

static void test_labels_refused_on_tags_and_unborn(void **state)
{
	test_env *env = *state;
	artifs_label_edits e;
	artifs_oid c;

	assert_ok(artifs_repo_create(env->s, REPO));
	artifs_label_edits_init(&e);
	add(&e, "x", "k", "v", 0);
	assert_rc(ARTIFS_ENOTFOUND, artifs_label_commit(&c, env->s, REPO, "main", &e, NULL, NULL));
	assert_rc(ARTIFS_ENOTFOUND, artifs_label_commit(&c, env->s, REPO, "nobranch", &e, NULL, NULL));
	artifs_label_edits_release(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_value_rules),
		cmocka_unit_test(test_labelset_roundtrip),
		cmocka_unit_test(test_parse_csv),
		cmocka_unit_test(test_parse_jsonl),
		ENV_TEST(test_apply_and_commit),
		ENV_TEST(test_labels_refused_on_tags_and_unborn),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
