#include "cli.h"
#include "archio.h"
#include "error.h"
#include "label.h"
#include "ref.h"
#include "snapshot.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void warn_cb(const char *msg, void *ctx)
{
	cli_progress *p = ctx;

	if (p->active)
		fputs("\r\033[K", stderr);
	cli_warn("%s", msg);
}

int cmd_commit(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "message", required_argument, NULL, 'm' },
		{ "meta", required_argument, NULL, 'M' },
		{ "author", required_argument, NULL, 'a' },
		{ "allow-empty", no_argument, NULL, 'e' },
		{ "no-cache", no_argument, NULL, 'n' },
		{ "labels", required_argument, NULL, 'L' },
		{ "labels-format", required_argument, NULL, 'F' },
		{ "no-verify", no_argument, NULL, 'V' },
		{ "strip-components", required_argument, NULL, 'S' },
		{ 0 },
	};
	artifs_snapshot_opts so = ARTIFS_SNAPSHOT_OPTS_INIT;
	artifs_snapshot_stats st;
	enum artifs_label_format lfmt = ARTIFS_LABELS_AUTO;
	artifs_label_edits edits;
	cli_commit_hooks hooks = { 0 };
	artifs_oid old = { { 0 } };
	const char *labels = NULL;
	unsigned int strip = 0;
	int has_strip = 0, is_archive;
	struct stat srcst;
	artifs_meta *meta = NULL;
	size_t nmeta = 0;
	artifs_store *s = NULL;
	cli_spec sp = { 0 };
	cli_progress prog;
	const char *message = NULL;
	artifs_oid id;
	char hex[ARTIFS_OID_HEXSZ + 1];
	double t0;
	int o, rc = 0;

	artifs_label_edits_init(&edits);
	while ((o = getopt_long(argc, argv, "m:", opts, NULL)) != -1) {
		switch (o) {
		case 'L':
			labels = optarg;
			break;
		case 'V':
			hooks.no_verify = 1;
			break;
		case 'S': {
			char *end;
			long n = strtol(optarg, &end, 10);
			if (*end || n < 0 || n > 1000) {
				rc = cli_usage("commit", "--strip-components wants a number, not '%s'", optarg);
				goto done;
			}
			strip = (unsigned)n;
			has_strip = 1;
			break;
		}
		case 'F':
			if (cli_label_format(optarg, &lfmt)) {
				rc = cli_usage("commit", "--labels-format is csv or jsonl, not '%s'", optarg);
				goto done;
			}
			break;
		case 'm':
			message = optarg;
			break;
		case 'M': {
			char *eq = strchr(optarg, '=');
			void *p;
			if (!eq || eq == optarg) {
				rc = cli_usage("commit", "--meta wants KEY=VALUE, got '%s'", optarg);
				goto done;
			}
			if (!(p = realloc(meta, (nmeta + 1) * sizeof(*meta)))) {
				rc = cli_fail(NULL, "out of memory");
				goto done;
			}
			meta = p;
			*eq = '\0';
			meta[nmeta].key = optarg;
			meta[nmeta].value = eq + 1;
			if (!artifs_meta_key_valid(optarg)) {
				rc = cli_usage("commit", "invalid metadata key '%s' (letters, digits, '.', '_', '-'; at most 128)", optarg);
				goto done;
			}
			for (size_t i = 0; i < nmeta; i++)
				if (!strcmp(meta[i].key, optarg)) {
					rc = cli_usage("commit", "metadata key '%s' given twice", optarg);
					goto done;
				}
			nmeta++;
			break;
		}
		case 'a':
			so.author = optarg;
			break;
		case 'e':
			so.allow_empty = 1;
			break;
		case 'n':
			so.no_cache = 1;
			break;
		default:
			rc = cli_usage("commit", "unknown option");
			goto done;
		}
	}
	if (argc - optind != 2) {
		rc = cli_usage("commit", "usage: artifs commit REPO[@BRANCH] DIR -m MSG");
		goto done;
	}
	if (!message) {
		rc = cli_usage("commit", "a commit message is required (-m MSG)");
		goto done;
	}
	if ((rc = cli_spec_parse(&sp, argv[optind]))) {
		rc = cli_fail_rc(rc);
		goto done;
	}
	if (sp.has_path) {
		rc = cli_usage("commit", "commit takes REPO[@BRANCH], not a path inside it");
		goto done;
	}
	/* DIR, or an archive: "-" (stdin) or a file that is not a directory */
	is_archive = !strcmp(argv[optind + 1], "-") ||
		(stat(argv[optind + 1], &srcst) == 0 && !S_ISDIR(srcst.st_mode));
	if (has_strip && !is_archive) {
		rc = cli_usage("commit", "--strip-components applies to archives; '%s' is a directory",
			argv[optind + 1]);
		goto done;
	}
	if (is_archive && labels && !strcmp(labels, "-") && !strcmp(argv[optind + 1], "-")) {
		rc = cli_usage("commit", "the archive and --labels cannot both be stdin");
		goto done;
	}
	if (is_archive)
		so.labels = &edits;	/* a .labels.jsonl member adds to it */
	if (labels) {
		if ((rc = cli_label_file(&edits, labels, lfmt))) {
			rc = cli_fail_rc(rc);
			goto done;
		}
		so.labels = &edits;
	}
	if ((rc = cli_open_store(&s, 0)))
		goto done;
	cli_progress_init(&prog, "commit");
	so.message = message;
	so.meta = meta;
	so.nmeta = nmeta;
	so.progress = cli_progress_cb;
	so.warn = warn_cb;
	so.ctx = &prog;
	hooks.s = s;
	hooks.repo = sp.repo;
	hooks.branch = sp.ref;
	hooks.op = "commit";
	so.before_move = cli_pre_commit_cb;
	so.move_ctx = &hooks;
	{
		/* the head before, for the hooks' diff */
		MDB_txn *txn;
		artifs_ref ref;
		if (!artifs_rtxn_begin(s, &txn)) {
			if (!artifs_ref_get(&ref, s, txn, sp.repo, sp.ref))
				old = ref.target;
			mdb_txn_abort(txn);
		}
	}
	t0 = cli_now();
	if (is_archive)
		rc = artifs_archive_commit(&id, s, sp.repo, sp.ref, argv[optind + 1], strip, &so, &st);
	else
		rc = artifs_snapshot_dir(&id, s, sp.repo, sp.ref, argv[optind + 1], &so, &st);
	cli_progress_done(&prog);
	if (rc) {
		if (rc == ARTIFS_ENOTFOUND && strstr(artifs_error_last(), "no branch"))
			rc = cli_fail("create it with 'artifs branch REPO NAME [REV]'", "%s", artifs_error_last());
		else
			rc = cli_fail_rc(rc);
		goto done;
	}
	printf("%s\n", artifs_oid_fmt(hex, &id));
	fflush(stdout);
	if (st.created)
		cli_post_commit(&hooks, &old, &id);
	if (isatty(STDERR_FILENO) || getenv("ARTIFS_VERBOSE")) {
		double dt = cli_now() - t0;
		char b1[32], b2[32], b3[32];
		fprintf(stderr, "%s %s@%s: %llu files, %s (%s read, %s new) in %.2fs",
			st.created ? "committed" : "nothing changed;", sp.repo, sp.ref,
			(unsigned long long)st.files, cli_bytes(b1, sizeof(b1), (double)st.bytes),
			cli_bytes(b2, sizeof(b2), (double)st.bytes_read),
			cli_bytes(b3, sizeof(b3), (double)st.chunk_bytes_new), dt);
		if (st.skipped)
			fprintf(stderr, ", %llu skipped", (unsigned long long)st.skipped);
		fputc('\n', stderr);
	} else if (!st.created) {
		fprintf(stderr, "artifs: nothing changed; %s@%s stays at %s\n", sp.repo, sp.ref, hex);
	}
done:
	artifs_label_edits_release(&edits);
	free(meta);
	cli_spec_release(&sp);
	artifs_store_free(s);
	return rc;
}
