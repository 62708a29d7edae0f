/*
 * cmd_export.c - 'artifs export REPO@REF[:PATH] -o OUT [--format F]': a
 * version as a deterministic archive (the same version always gives the
 * same bytes).  A file is written under a temporary name and renamed, so
 * OUT is never a partial archive.
 */
#include "archio.h"
#include "cli.h"
#include "error.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

CLI_CMD(export)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "format", required_argument, NULL, 'f' },
		{ 0 },
	};
	enum artifs_archive_format fmt = ARTIFS_ARCHIVE_AUTO;
	artifs_export_stats st;
	artifs_store *s = NULL;
	MDB_txn *txn = NULL;
	cli_spec sp = { 0 };
	artifs_oid id;
	const char *out = NULL;
	char *tmp = NULL;
	int fd = -1, o, rc;

	while ((o = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		if (o == 'o')
			out = optarg;
		else if (o == 'f') {
			if (artifs_archive_format_parse(optarg, &fmt))
				return cli_usage("export", "--format is tar, tar.gz, tar.zst or zip, not '%s'", optarg);
		} else {
			return cli_usage("export", "unknown option");
		}
	}
	if (argc - optind != 1 || !out)
		return cli_usage("export", "usage: artifs export REPO@REF[:PATH] -o OUT [--format tar|tar.gz|tar.zst|zip]");
	if (fmt == ARTIFS_ARCHIVE_AUTO && strcmp(out, "-"))
		fmt = artifs_archive_format_of(out);
	if (fmt == ARTIFS_ARCHIVE_AUTO && strcmp(out, "-"))
		return cli_usage("export", "cannot tell the format from '%s'; name it .tar, .tar.gz, .tar.zst "
			"or .zip, or pass --format", out);
	if (fmt == ARTIFS_ARCHIVE_AUTO)
		fmt = ARTIFS_ARCHIVE_TAR;	/* stdout: tar unless told */
	if (!strcmp(out, "-") && isatty(STDOUT_FILENO))
		return cli_usage("export", "refusing to write an archive to a terminal; redirect stdout or use -o FILE");
	if ((rc = cli_spec_parse(&sp, argv[optind])))
		return cli_fail_rc(rc);
	if ((rc = cli_open_store(&s, 1)))
		goto out;
	if ((rc = artifs_rtxn_begin(s, &txn)) || (rc = cli_resolve(&id, s, txn, &sp))) {
		rc = cli_fail_rc(rc);
		goto out;
	}
	mdb_txn_abort(txn);
	txn = NULL;
	if (fmt == ARTIFS_ARCHIVE_ZIP) {
		/* zip stores local time: make it UTC so the bytes do not depend on the host */
		setenv("TZ", "UTC", 1);
		tzset();
	}
	if (!strcmp(out, "-")) {
		fd = STDOUT_FILENO;
	} else {
		if (asprintf(&tmp, "%s.tmp-%ld", out, (long)getpid()) < 0) {
			tmp = NULL;
			rc = cli_fail(NULL, "out of memory");
			goto out;
		}
		if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
			rc = cli_fail(NULL, "cannot create '%s': %s", tmp, strerror(errno));
			free(tmp);
			tmp = NULL;
			goto out;
		}
	}
	rc = artifs_archive_export(s, &id, sp.path, fd, fmt, &st);
	if (!rc && tmp && fsync(fd) < 0)
		rc = artifs_error(-errno, "cannot write '%s': %s", out, strerror(errno));
	if (tmp && close(fd) < 0 && !rc)
		rc = artifs_error(-errno, "cannot write '%s': %s", out, strerror(errno));
	fd = -1;
	if (!rc && tmp && rename(tmp, out) < 0)
		rc = artifs_error(-errno, "cannot rename to '%s': %s", out, strerror(errno));
	if (rc) {
		char why[1024];
		if (tmp)
			unlink(tmp);
		/* name the output: "no space" alone does not say where */
		snprintf(why, sizeof(why), "%s", artifs_error_last());
		if (!strstr(why, out))
			artifs_error(rc, "%s: %s", strcmp(out, "-") ? out : "<stdout>", why);
		rc = cli_fail_rc(rc);
		goto out;
	}
	if (isatty(STDERR_FILENO) || getenv("ARTIFS_VERBOSE")) {
		char b[32];
		fprintf(stderr, "exported %llu files, %llu directories, %llu links, %s\n",
			(unsigned long long)st.files, (unsigned long long)st.dirs,
			(unsigned long long)st.links, cli_bytes(b, sizeof(b), (double)st.bytes));
	}
	rc = EXIT_OK;
out:
	free(tmp);
	if (txn)
		mdb_txn_abort(txn);
	cli_spec_release(&sp);
	artifs_store_free(s);
	return rc;
}
