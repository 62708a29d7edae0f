/* cmd_mount.c - 'artifs mount' and 'artifs umount'. */
#include "cli.h"
#include "error.h"
#include "fs.h"

#include <getopt.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

/* Append o[0..n) to the comma-separated list *list (NULL: empty); -1 when out of memory. */
static int opt_append(char **list, const char *o, size_t n)
{
	size_t len = *list ? strlen(*list) : 0;
	char *p = realloc(*list, len + n + 2);

	if (!p)
		return -1;
	*list = p;
	if (len)
		p[len++] = ',';
	memcpy(p + len, o, n);
	p[len + n] = '\0';
	return 0;
}

int cmd_mount(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "debug", no_argument, NULL, 'd' },
		{ "log", required_argument, NULL, 'l' },
		{ "threads", required_argument, NULL, 't' },
		{ "readahead-kb", required_argument, NULL, 'r' },
		{ "remote", required_argument, NULL, 'R' },
		{ "cache-size", required_argument, NULL, 'C' },
		{ "refresh", required_argument, NULL, 'E' },
		{ 0 },
	};
	artifs_mount_opts mo = ARTIFS_MOUNT_OPTS_INIT;
	artifs_mount_lazy lz;
	char *store = NULL, *extra = NULL, *cache = NULL;
	const char *remote = NULL, *cache_size = NULL;
	unsigned int refresh = 0;
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
		case 'R':
			remote = optarg;
			break;
		case 'C':
			cache_size = optarg;
			break;
		case 'E': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || v < 1 || v > 86400) {
				free(extra);
				return cli_usage("mount", "--refresh is 1-86400 seconds, not '%s'", optarg);
			}
			refresh = (unsigned int)v;
			break;
		}
		case 'o':
			/* several -o accumulate, as with mount(8) */
			if (opt_append(&extra, optarg, strlen(optarg))) {
				free(extra);
				return cli_fail(NULL, "out of memory");
			}
			break;
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
	if ((cache_size || refresh) && !remote) {
		free(store);
		free(extra);
		return cli_usage("mount", "--cache-size and --refresh go with --remote NAME");
	}
	if (remote) {
		memset(&lz, 0, sizeof(lz));
		if ((rc = cli_mount_remote(&mo, &lz, store, remote, cache_size, &cache))) {
			free(store);
			free(extra);
			free(cache);
			return rc;
		}
		lz.refresh_s = refresh;
	}
	rc = artifs_mount(&mo);
	free(store);
	free(extra);
	free(cache);
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

/* Options only mount(8) and fstab understand; FUSE must not see them. */
static int mount_only_opt(const char *o, size_t n)
{
	static const char *const names[] = { "rw", "ro", "defaults", "auto", "noauto", "user",
		"nouser", "users", "_netdev", "nofail", "dev", "nodev", "suid", "nosuid", "exec",
		"noexec", "async", "sync", "atime", "noatime", "relatime", NULL };

	if ((n >= 2 && !strncmp(o, "x-", 2)) || (n >= 8 && !strncmp(o, "comment=", 8)) || !n)
		return 1;
	for (size_t i = 0; names[i]; i++)
		if (strlen(names[i]) == n && !strncmp(o, names[i], n))
			return 1;
	return 0;
}

int cli_mount_fuse_form(int argc, char **argv)
{
	struct stat a, b;
	char *kept = NULL, *margv[6];
	int margc = 0, rc;

	/* mount.fuse3 runs "artifs STORE MOUNTPOINT [-o OPTIONS]" for fuse.artifs */
	if (argc < 3 || !strchr(argv[1], '/') || stat(argv[1], &a) || !S_ISDIR(a.st_mode) ||
	    stat(argv[2], &b) || !S_ISDIR(b.st_mode))
		return -1;
	for (int i = 3; i < argc; i++) {
		const char *opts;

		if (!strcmp(argv[i], "-o") && i + 1 < argc)
			opts = argv[++i];
		else if (!strncmp(argv[i], "-o", 2))
			opts = argv[i] + 2;
		else
			continue;	/* -n, -s, -v: nothing for us */
		for (const char *p = opts; *p;) {
			size_t n = strcspn(p, ",");

			if (!mount_only_opt(p, n) && opt_append(&kept, p, n)) {
				free(kept);
				return cli_fail(NULL, "out of memory");
			}
			p += n + (p[n] == ',');
		}
	}
	cli_store_flag = argv[1];
	margv[margc++] = (char *)"mount";
	margv[margc++] = argv[2];
	if (kept) {
		margv[margc++] = (char *)"-o";
		margv[margc++] = kept;
	}
	margv[margc] = NULL;
	rc = cmd_mount(margc, margv);
	free(kept);
	return rc;
}
