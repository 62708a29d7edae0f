#include "cli.h"
#include "error.h"
#include "maint.h"
#include "ref.h"

#include <getopt.h>

int cmd_du(int argc, char **argv)
{
	static const struct option opts[] = { { "json", no_argument, NULL, 'j' }, { 0 } };
	artifs_store *s = NULL;
	artifs_du_stats st;
	const char *repo = NULL;
	int json = 0, o, rc;
	double ratio;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'j')
			json = 1;
		else
			return cli_usage("du", "unknown option");
	}
	if (argc - optind > 1)
		return cli_usage("du", "usage: artifs du [REPO] [--json]");
	if (argc - optind == 1) {
		repo = argv[optind];
		if (!artifs_repo_name_valid(repo))
			return cli_usage("du", "invalid repository '%s' (want datasets/NAME or models/NAME)", repo);
	}
	if ((rc = cli_open_store(&s, 1)))
		return rc;
	if ((rc = artifs_du(s, repo, &st))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	ratio = st.stored_bytes ? (double)st.logical_bytes / (double)st.stored_bytes : 0;
	if (json) {
		json_t *o2 = json_object();
		json_object_set_new(o2, "repo", repo ? json_string(repo) : json_null());
		json_object_set_new(o2, "commits", json_integer((json_int_t)st.commits));
		json_object_set_new(o2, "logical_bytes", json_integer((json_int_t)st.logical_bytes));
		json_object_set_new(o2, "stored_bytes", json_integer((json_int_t)st.stored_bytes));
		json_object_set_new(o2, "chunks", json_integer((json_int_t)st.chunks));
		json_object_set_new(o2, "dedupe_ratio", json_real(ratio));
		json_object_set_new(o2, "store_file_bytes", json_integer((json_int_t)st.store_file_bytes));
		rc = cli_json_print(o2);
	} else {
		char b1[32], b2[32], b3[32];
		printf("%s: %llu commits, logical %s, stored %s in %llu chunks, dedupe %.2fx\n",
			repo ? repo : "store", (unsigned long long)st.commits,
			cli_bytes(b1, sizeof(b1), (double)st.logical_bytes),
			cli_bytes(b2, sizeof(b2), (double)st.stored_bytes),
			(unsigned long long)st.chunks, ratio);
		printf("store file: %s\n", cli_bytes(b3, sizeof(b3), (double)st.store_file_bytes));
	}
out:
	artifs_store_free(s);
	return rc;
}
