/* cmd_mount.c - 'artifs mount' and 'artifs umount'. */
#include "cli.h"
#include "error.h"
#include "fs.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

int cmd_mount(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "debug", no_argument, NULL, 'd' },
		{ "log", required_argument, NULL, 'l' },
		{ "threads", required_argument, NULL, 't' },
		{ "readahead-kb", required_argument, NULL, 'r' },
		{ 0 },
	};
	artifs_mount_opts mo = ARTIFS_MOUNT_OPTS_INIT;
	char *store = NULL, *extra = NULL;
	int o, rc;

	while ((o = getopt_long(argc, argv, "fdo:", opts, NULL)) != -1) {
		switch (o) {
		case 'f':
			mo.foreground = 1;
			break;
		case 'd':
			mo.debug = 1;
			break;
		case 'l':
			mo.log_file = optarg;
			break;
		case 't':
			mo.threads = (unsigned int)strtoul(optarg, NULL, 10);
			break;
		case 'r':
			mo.readahead_kb = (unsigned int)strtoul(optarg, NULL, 10);
			break;
		case 'o': {
			/* several -o accumulate, as with mount(8) */
			size_t len = extra ? strlen(extra) : 0;
			char *p = realloc(extra, len + strlen(optarg) + 2);

			if (!p) {
				free(extra);
				return cli_fail(NULL, "out of memory");
			}
			extra = p;
			if (len)
				p[len++] = ',';
			strcpy(p + len, optarg);
			break;
		}
		default:
			free(extra);
			return cli_usage("mount", "unknown option");
		}
	}
	if (argc - optind != 1) {
		free(extra);
		return cli_usage("mount", "'mount' takes one MOUNTPOINT");
	}
	if ((rc = artifs_store_default_path(&store, cli_store_flag))) {
		free(extra);
		return cli_fail_rc(rc);
	}
	mo.store_dir = store;
	mo.mountpoint = argv[optind];
	mo.fuse_opts = extra;
	rc = artifs_mount(&mo);
	free(store);
	free(extra);
	return rc ? cli_fail_rc(rc) : EXIT_OK;
}

int cmd_umount(int argc, char **argv)
{
	int rc;

	if (argc != 2 || argv[1][0] == '-')
		return cli_usage("umount", "'umount' takes one MOUNTPOINT");
	if ((rc = artifs_umount(argv[1])))
		return cli_fail_rc(rc);
	return EXIT_OK;
}
