#include "refcmd.h"

#include <getopt.h>

int cmd_tag(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "list", no_argument, NULL, 'l' },
		{ "json", no_argument, NULL, 'j' },
		{ "no-verify", no_argument, NULL, 'n' },
		{ 0 },
	};
	int list = 0, json = 0, no_verify = 0, o;

	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (o == 'l')
			list = 1;
		else if (o == 'j')
			json = 1;
		else if (o == 'n')
			no_verify = 1;
		else
			return cli_usage("tag", "unknown option");
	}
	if (list || json) {
		if (argc - optind != 1)
			return cli_usage("tag", "usage: artifs tag REPO --list [--json]");
		return refcmd_list("tag", argv[optind], ARTIFS_REF_TAG, json);
	}
	if (argc - optind < 2 || argc - optind > 3)
		return cli_usage("tag", "usage: artifs tag REPO NAME [REV] | artifs tag REPO --list");
	return refcmd_create("tag", argv[optind], argv[optind + 1],
		argc - optind == 3 ? argv[optind + 2] : "main", ARTIFS_REF_TAG, no_verify);
}
