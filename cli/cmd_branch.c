#include "refcmd.h"

#include <getopt.h>

int cmd_branch(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "list", no_argument, NULL, 'l' },
		{ "json", no_argument, NULL, 'j' },
		{ "delete", no_argument, NULL, 'd' },
		{ 0 },
	};
	int list = 0, json = 0, del = 0, o;

	while ((o = getopt_long(argc, argv, "d", opts, NULL)) != -1) {
		if (o == 'l')
			list = 1;
		else if (o == 'j')
			json = 1;
		else if (o == 'd')
			del = 1;
		else
			return cli_usage("branch", "unknown option");
	}
	if (list || json) {
		if (argc - optind != 1)
			return cli_usage("branch", "usage: artifs branch REPO --list [--json]");
		return refcmd_list("branch", argv[optind], ARTIFS_REF_BRANCH, json);
	}
	if (del) {
		if (argc - optind != 2)
			return cli_usage("branch", "usage: artifs branch -d REPO NAME");
		return refcmd_delete("branch", argv[optind], argv[optind + 1], ARTIFS_REF_BRANCH);
	}
	if (argc - optind < 2 || argc - optind > 3)
		return cli_usage("branch", "usage: artifs branch REPO NAME [REV] | artifs branch REPO --list | artifs branch -d REPO NAME");
	return refcmd_create("branch", argv[optind], argv[optind + 1],
		argc - optind == 3 ? argv[optind + 2] : "main", ARTIFS_REF_BRANCH, 0);
}
