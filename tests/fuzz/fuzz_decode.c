/*
 * fuzz_decode.c - every decoder of stored records and every parser of user
 * input that takes bytes, on the same input: tree, manifest, commit and
 * labelset records, CSV and JSON Lines label files, repository, ref and
 * label names, label paths, and the store's config file (git-config
 * syntax, read through libgit2 as 'artifs config' reads it).  Nothing may crash, leak or read out of
 * bounds; what decodes must re-encode to the same bytes.
 *
 * Built with libFuzzer under clang (fuzz_decode); its corpus is replayed
 * under ctest with any compiler (fuzz_decode_replay).
 */
#include <git2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blob.h"
#include "codec.h"
#include "commit.h"
#include "error.h"
#include "label.h"
#include "ref.h"
#include "tree.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok)
{
	if (!ok)
		abort();
}

static void trees(const uint8_t *data, size_t size)
{
	artifs_tree_view t;

	if (artifs_tree_parse(&t, data, size))
		return;
	if (artifs_tree_validate(&t) == 0) {
		/* valid: every entry reads back, look-ups find them */
		for (uint32_t i = 0; i < t.count; i++) {
			artifs_tree_entry e, f;
			check(artifs_tree_entry_at(&t, i, &e) == 0);
			check(artifs_tree_lookup(&t, e.name, e.name_len, &f) == 0);
			check(f.name == e.name);
		}
	} else {
		/* invalid: entry access must stay in bounds */
		for (uint32_t i = 0; i < t.count && i < 4096; i++) {
			artifs_tree_entry e;
			(void)artifs_tree_entry_at(&t, i, &e);
		}
	}
}

static void blobs(const uint8_t *data, size_t size)
{
	artifs_blob_view b;

	if (artifs_blob_parse(&b, data, size))
		return;
	if (b.size)
		for (uint64_t off = 0; off < b.size; off += b.size / 7 + 1) {
			uint32_t i = artifs_blob_find(&b, off);
			check(i < b.nchunks);
			check(artifs_blob_chunk_off(&b, i) <= off);
		}
}

static void commits(const uint8_t *data, size_t size)
{
	artifs_commit *c = NULL;
	artifs_buf again = { 0 };

	if (artifs_commit_decode(&c, data, size))
		return;
	/* a record that decodes encodes back to itself */
	if (artifs_commit_encode(&again, c) == 0)
		check(again.len == size && !memcmp(again.ptr, data, size));
	artifs_buf_release(&again);
	artifs_commit_free(c);
}

static void labelsets(const uint8_t *data, size_t size)
{
	artifs_label l[ARTIFS_LABELS_PER_FILE_MAX];
	artifs_buf again = { 0 };
	size_t n;

	if (artifs_labelset_decode(l, ARTIFS_LABELS_PER_FILE_MAX, &n, data, size))
		return;
	if (artifs_labelset_encode(&again, l, n) == 0)
		check(again.len == size && !memcmp(again.ptr, data, size));
	artifs_buf_release(&again);
}

static void label_files(const uint8_t *data, size_t size)
{
	for (int fmt = ARTIFS_LABELS_CSV; fmt <= ARTIFS_LABELS_JSONL; fmt++) {
		artifs_label_edits e;
		FILE *f = fmemopen((void *)data, size, "r");
		if (!f)
			return;
		artifs_label_edits_init(&e);
		if (artifs_label_file_parse(&e, "-", f, (enum artifs_label_format)fmt) == 0)
			for (size_t i = 0; i < e.n; i++) {
				check(artifs_label_key_valid(e.v[i].key, strlen(e.v[i].key)));
				check(!e.v[i].value || artifs_label_value_valid(e.v[i].value, strlen(e.v[i].value)));
				check(!strstr(e.v[i].path, "//") && e.v[i].path[0] != '/');
			}
		artifs_label_edits_release(&e);
		fclose(f);
	}
}

static void names(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	artifs_label_edits e;

	if (!s)
		return;
	memcpy(s, data, size);
	s[size] = '\0';
	(void)artifs_repo_name_valid(s);
	(void)artifs_ref_name_valid(s);
	(void)artifs_label_key_valid(s, size);
	(void)artifs_label_value_valid(s, size);
	(void)artifs_name_valid(s, size);
	artifs_label_edits_init(&e);
	if (artifs_label_edits_add(&e, s, size, "k", 1, "v", 1, 1) == 0) {
		const char *p = e.v[0].path;
		check(!strstr(p, "//") && p[0] != '/' && strcmp(p, "..") && !strstr(p, "/../"));
	}
	artifs_label_edits_release(&e);
	free(s);
}

static int config_cb(const git_config_entry *e, void *ctx)
{
	(void)ctx;
	check(e->name != NULL);
	return 0;
}

static void config_file(const uint8_t *data, size_t size)
{
	static char path[64];
	git_config *cfg = NULL;
	FILE *f;

	if (!path[0])
		snprintf(path, sizeof(path), "/tmp/artifs-fuzz-config-%ld", (long)getpid());
	if (!(f = fopen(path, "wb")))
		return;
	fwrite(data, 1, size, f);
	fclose(f);
	git_libgit2_init();
	if (git_config_open_ondisk(&cfg, path) == 0) {
		git_buf b = { 0 };
		git_config_foreach(cfg, config_cb, NULL);
		if (git_config_get_string_buf(&b, cfg, "gitops.url") == 0)
			check(b.ptr != NULL);
		git_buf_dispose(&b);
		git_config_free(cfg);
	}
	git_libgit2_shutdown();
	unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	trees(data, size);
	blobs(data, size);
	commits(data, size);
	labelsets(data, size);
	label_files(data, size);
	names(data, size);
	config_file(data, size);
	artifs_error_clear();
	return 0;
}
