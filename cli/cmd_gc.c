#include "cli.h"
#include "error.h"
#include "maint.h"

#include <getopt.h>

int cmd_gc(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ 0 },
	};
	artifs_store *s = NULL;
	artifs_gc_stats st;
	int dry = 0, json = 0, o, rc;
	char b[32];

	while ((o = getopt_long(argc, argv, "n", opts, NULL)) != -1) {
		if (o == 'n')
			dry = 1;
		else if (o == 'j')
			json = 1;
		else
			return cli_usage("gc", "unknown option");
	}
	if (argc != optind)
		return cli_usage("gc", "'gc' takes no arguments");
	if ((rc = cli_open_store(&s, 0)))
		return rc;
	if ((rc = artifs_gc(s, dry, &st))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (json) {
		json_t *root = json_object(), *rm = json_object();
		json_object_set_new(root, "dry_run", json_boolean(dry));
		json_object_set_new(rm, "chunks", json_integer((json_int_t)st.chunks));
		json_object_set_new(rm, "blobs", json_integer((json_int_t)st.blobs));
		json_object_set_new(rm, "trees", json_integer((json_int_t)st.trees));
		json_object_set_new(rm, "commits", json_integer((json_int_t)st.commits));
		json_object_set_new(rm, "labelsets", json_integer((json_int_t)st.labelsets));
		json_object_set_new(root, "removed", rm);
		json_object_set_new(root, "bytes_freed", json_integer((json_int_t)st.bytes));
		json_object_set_new(root, "kept", json_integer((json_int_t)st.kept));
		rc = cli_json_print(root);
	} else {
		printf("%s %llu chunks, %llu manifests, %llu trees, %llu commits; %s %s (%llu objects kept)\n",
			dry ? "would remove" : "removed",
			(unsigned long long)st.chunks, (unsigned long long)st.blobs,
			(unsigned long long)st.trees, (unsigned long long)st.commits,
			cli_bytes(b, sizeof(b), (double)st.bytes), dry ? "would be freed" : "freed",
			(unsigned long long)st.kept);
	}
out:
	artifs_store_free(s);
	return rc;
}
