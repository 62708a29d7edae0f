#include "cli.h"
#include "error.h"
#include "maint.h"

#include <getopt.h>
#include <unistd.h>

struct fctx {
	cli_progress prog;	/* first: the progress callback gets the same ctx */
	json_t *arr;
};

static void on_fault(const char *kind, const artifs_oid *id, const char *where, const char *msg, void *ctx)
{
	struct fctx *f = ctx;
	char hex[ARTIFS_OID_HEXSZ + 1];

	if (f->arr) {
		json_t *o = json_object(), *w = cli_json_str(where);
		json_object_set_new(o, "kind", json_string(kind));
		json_object_set_new(o, "id", cli_json_oid(id));
		json_object_set_new(o, "where", w ? w : json_string("(unprintable path)"));
		json_object_set_new(o, "message", json_string(msg));
		json_array_append_new(f->arr, o);
		return;
	}
	if (f->prog.active)
		fputs("\r\033[K", stderr);
	printf("%s %s: %s (in %s)\n", kind, artifs_oid_fmt(hex, id), msg, where);
}

int cmd_fsck(int argc, char **argv)
{
	static const struct option opts[] = { { "json", no_argument, NULL, 'j' }, { 0 } };
	struct fctx f = { 0 };
	artifs_store *s = NULL;
	artifs_fsck_stats st;
	int json = 0, o, rc;
	double t0;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'j')
			json = 1;
		else
			return cli_usage("fsck", "unknown option");
	}
	if (argc != optind)
		return cli_usage("fsck", "'fsck' takes no arguments");
	if ((rc = cli_open_store(&s, 1)))
		return rc;
	if (json)
		f.arr = json_array();
	cli_progress_init(&f.prog, "fsck");
	t0 = cli_now();
	rc = artifs_fsck(s, on_fault, cli_progress_cb, &f, &st);
	cli_progress_done(&f.prog);
	if (rc) {
		json_decref(f.arr);
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (json) {
		json_t *root = json_object(), *chk = json_object();
		json_object_set_new(root, "ok", json_boolean(st.faults == 0));
		json_object_set_new(chk, "refs", json_integer((json_int_t)st.refs));
		json_object_set_new(chk, "commits", json_integer((json_int_t)st.commits));
		json_object_set_new(chk, "trees", json_integer((json_int_t)st.trees));
		json_object_set_new(chk, "blobs", json_integer((json_int_t)st.blobs));
		json_object_set_new(chk, "chunks", json_integer((json_int_t)st.chunks));
		json_object_set_new(chk, "labelsets", json_integer((json_int_t)st.labelsets));
		json_object_set_new(chk, "bytes", json_integer((json_int_t)st.bytes_verified));
		json_object_set_new(root, "checked", chk);
		json_object_set_new(root, "faults", f.arr);
		cli_json_print(root);
	} else {
		char b[32];
		fprintf(st.faults ? stdout : stderr,
			"%s: %llu refs, %llu commits, %llu trees, %llu files, %llu chunks (%s) checked in %.2fs; %llu faults\n",
			st.faults ? "fsck found damage" : "fsck ok",
			(unsigned long long)st.refs, (unsigned long long)st.commits,
			(unsigned long long)st.trees, (unsigned long long)st.blobs,
			(unsigned long long)st.chunks, cli_bytes(b, sizeof(b), (double)st.bytes_verified),
			cli_now() - t0, (unsigned long long)st.faults);
	}
	rc = st.faults ? EXIT_FAULTS : EXIT_OK;
out:
	artifs_store_free(s);
	return rc;
}
