/*
 * main.c - 'artifs': argument dispatch and help.  One cmd_<name>.c per
 * command; only this file and the commands print or choose exit codes.
 */
#include "cli.h"
#include "error.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#define ARTIFS_VERSION_STR "0.1.0"

static const cli_cmd commands[] = {
	{ "init", cmd_init, "", "create the store",
	  "Creates an empty store in the store directory (see STORE below).\n" },
	{ "create", cmd_create, "dataset NAME | model NAME",
	  "create repository datasets/NAME or models/NAME",
	  "The repository starts with one branch, 'main', that has no commits.\n"
	  "NAME: letters, digits, '.', '_' and '-', at most 100, not starting with '.' or '-'.\n" },
	{ "repos", cmd_repos, "[--json]", "list repositories",
	  "Shows each repository with its number of refs and the head of 'main'.\n" },
	{ "commit", cmd_commit, "REPO[@BRANCH] DIR|ARCHIVE -m MSG [--meta KEY=VALUE]... [--labels FILE] [--strip-components N] [--allow-empty] [--no-cache]",
	  "snapshot DIR or an archive as the new head of BRANCH; prints the commit id",
	  "Stores regular files, directories, the executable bit and symlinks (as links,\n"
	  "never followed); sockets, devices and FIFOs are skipped with a warning.\n"
	  "Files unchanged since the branch's last commit from this machine (same size,\n"
	  "mtime, ctime and inode) are not read again; --no-cache reads every file.\n"
	  "If nothing changed, no commit is made and the current head is printed\n"
	  "(--allow-empty commits anyway).  A file that changes while it is read is\n"
	  "an error; the branch is left as it was.\n"
	  "Labels carry over by path: a file keeps the labels its path had in the\n"
	  "branch's head.  --labels applies a label file on top, in the same commit.\n"
	  "  -m, --message MSG      commit message (required)\n"
	  "  --meta KEY=VALUE       metadata, repeatable (e.g. eval.accuracy=0.93)\n"
	  "  --labels FILE          labels for paths of DIR (see 'artifs label --help')\n"
	  "  --labels-format F      csv or jsonl when FILE's name does not tell\n"
	  "  --no-verify            skip pre-commit hooks (recorded in the history)\n"
	  "An ARCHIVE (a file, or - for stdin) in any format and filter libarchive reads\n"
	  "(tar, tar.gz, tar.zst, tar.xz, zip, 7z, cpio...) is read straight into the\n"
	  "store, nothing extracted, and gives the same tree as its extracted directory.\n"
	  "Absolute paths, '..', links leaving the tree, hard links to missing members,\n"
	  "duplicate paths, devices, names over the limits and truncated data are\n"
	  "refused, naming the member.  A top-level .labels.jsonl member is read as\n"
	  "labels (what 'artifs export' writes).\n"
	  "  --strip-components N   drop N leading path components (archives)\n"
	  "  --author NAME          default: $ARTIFS_AUTHOR, else USER@HOST\n" },
	{ "log", cmd_log, "REPO[@REF] [-n N] [--json]", "show the history of a ref",
	  "Follows first parents from REF (default main), newest first.\n" },
	{ "show", cmd_show, "REPO@REF [--json]", "show one commit",
	  "Prints the commit id, tree, parents, author, time, message and metadata.\n" },
	{ "ls", cmd_ls, "REPO@REF[:PATH] [-r] [-l] [--label KEY[=VALUE]]... [--json]",
	  "list a directory of a version",
	  "  -r   recurse into directories\n"
	  "  -l   long format: type and mode, size, object id\n"
	  "  --label KEY=VALUE   only files with this label (repeatable: all must match;\n"
	  "                      KEY alone: any value); lists files below PATH recursively\n" },
	{ "cat", cmd_cat, "REPO@REF:PATH", "write a file's bytes to stdout",
	  "Every chunk is verified against its id; damaged data is an error, never output.\n" },
	{ "checkout", cmd_checkout, "REPO@REF[:PATH] DEST", "materialise a version into a directory",
	  "DEST must not exist or be empty.  Files get mode 0644 (0755 if executable)\n"
	  "and the commit's time; symlinks are recreated as symlinks.\n" },
	{ "tag", cmd_tag, "REPO NAME [REV] | REPO --list", "tag a commit (tags never move)",
	  "REV defaults to main.  Tagging the same commit again is a no-op; pointing an\n"
	  "existing tag at another commit is refused.\n" },
	{ "branch", cmd_branch, "REPO NAME [REV] | REPO --list [--json] | -d REPO NAME",
	  "create, list or delete branches",
	  "A new branch starts at REV (default main).  -d (--delete) removes a branch\n"
	  "(not main) and prints the commit it pointed at ('artifs branch REPO NAME ID'\n"
	  "makes it again); its versions stay until 'artifs gc' finds nothing else\n"
	  "using them.  The deletion is in 'artifs history REPO --all', and a branch\n"
	  "made later under the name continues that log.  A mount drops the branch's\n"
	  "directory within a second; files open in it keep reading.\n" },
	{ "diff", cmd_diff, "REPO@A REPO@B [--stat] [--json]", "compare two versions by path",
	  "Lines: A added, D removed, M modified, X executable bit changed, L labels changed.\n"
	  "  --stat   counts and bytes only\n" },
	{ "label", cmd_label, "import|set|rm|show|stats ...", "label files: key=value pairs versioned with the data",
	  "  artifs label import REPO[@BRANCH] FILE [-m MSG] [--format csv|jsonl] [--replace]\n"
	  "  artifs label set REPO[@BRANCH] PATH KEY=VALUE... [-m MSG]\n"
	  "  artifs label rm REPO[@BRANCH] PATH KEY... [-m MSG]\n"
	  "  artifs label show REPO@REF[:PATH] [--json]\n"
	  "  artifs label stats REPO@REF[:PATH] [--json]\n"
	  "\n"
	  "Each change is a commit on BRANCH (default main) that stores no file data;\n"
	  "older versions keep their labels.  A PATH that is a directory applies to\n"
	  "every file below it (\"\" or \".\" is the whole version).\n"
	  "\n"
	  "Keys: 1-128 of a-z 0-9 _ . - (starting with a letter or digit).  Values:\n"
	  "1-4096 bytes of UTF-8 without NUL or line breaks.  At most 256 keys per file.\n"
	  "\n"
	  "Label files (format from the extension, or --format; FILE - is stdin):\n"
	  "  CSV, one row per file:  path,class,split      (an empty cell: key untouched)\n"
	  "                          img/1.jpg,cat,train\n"
	  "  CSV, one row per label: path,key,value\n"
	  "                          img/1.jpg,class,cat\n"
	  "  JSON Lines (.jsonl):    {\"path\": \"img/1.jpg\", \"labels\": {\"class\": \"cat\"}}\n"
	  "                          (null removes a key; numbers and booleans are taken\n"
	  "                          as their text)\n"
	  "Import sets the keys it names and keeps the others; --replace makes the\n"
	  "file the version's complete labels.  It is all-or-nothing: an unknown path,\n"
	  "a malformed line, a bad key or value, or one key given twice for a path\n"
	  "is refused with its line number and the branch does not move.\n"
	  "\n"
	  "show prints KEY=VALUE lines for a file, or PATH<TAB>KEY=VALUE... for each\n"
	  "labelled file below a directory; stats prints KEY<TAB>VALUE<TAB>COUNT (the\n"
	  "totals go to stderr).  In a mount, labels are xattrs (user.label.KEY), every version\n"
	  "has .labels.jsonl and .labels/ views (see README).\n" },
	{ "promote", cmd_promote, "REPO REV ENV [-m REASON] [--no-verify]",
	  "move environment ENV (dev, staging, production...) to REV",
	  "REV: a tag, branch, commit-id prefix or another environment (staging ->\n"
	  "production).  The environment is created on its first promotion; it is a\n"
	  "ref like branches and tags (same namespace), readable as REPO@ENV and as\n"
	  "MOUNT/KIND/NAME/ENV/, and only promote and rollback move it.\n"
	  "Order: pre-promote hooks (any failure, kill or timeout refuses the\n"
	  "promotion), the move (compare-and-swap: of two concurrent promotions of one\n"
	  "environment one fails and changes nothing), post-promote hooks (failures\n"
	  "are reported and recorded, the move stands), then the GitOps pin when\n"
	  "gitops.url is set.  Prints the commit id.\n"
	  "  -m, --message REASON  why (kept in the history and the GitOps commit)\n"
	  "  --no-verify           skip the pre-promote hooks (recorded in the history)\n" },
	{ "rollback", cmd_rollback, "REPO ENV [--to REV] [-m REASON] [--no-verify]",
	  "move ENV back to its previous version",
	  "Without --to: the version ENV had before the move that brought it to its\n"
	  "current version (rollbacks are skipped, so rolling back twice goes two\n"
	  "versions back).  Runs the promote hooks (operation \"rollback\") and\n"
	  "publishes like promote.\n" },
	{ "history", cmd_history, "REPO [ENV] [--all] [--json]", "every move of environments, newest first",
	  "Time, ref, operation (promote, rollback, reconcile), from, to, who (author,\n"
	  "user, host), reason, hook results (pre and post), --no-verify, GitOps\n"
	  "outcome.  --all includes branches and tags.  The log is append-only.\n" },
	{ "envs", cmd_envs, "REPO [--json]", "environments and the commits they point at", "" },
	{ "config", cmd_config, "KEY [VALUE] | --unset KEY | --list", "read or set the store's configuration",
	  "STORE/config, git-config syntax.  Keys:\n"
	  "  hooks.timeout   seconds a hook may run (default 60)\n"
	  "  gitops.url      GitOps repository (local path or URL); unset: no publishing\n"
	  "  gitops.branch   default main\n"
	  "  gitops.path     pin path template, default environments/{env}/{kind}/{name}.json\n"
	  "                  ({kind}: models or datasets; also {repo})\n"
	  "  gitops.author   \"Name <email>\" of GitOps commits\n"
	  "  gitops.push     true (default) or false\n" },
	{ "gitops", cmd_gitops, "publish REPO [ENV...] | reconcile [--dry-run] [--no-verify]",
	  "write environment pins to git, or move environments to the pins in git",
	  "publish: write the pin file of each environment (all by default) and commit\n"
	  "and push it; use it after a publish failed.  reconcile: fetch the GitOps\n"
	  "branch and promote every environment to the commit its pin names (pre- and\n"
	  "post-promote hooks run), so that a merged pull request promotes; it is\n"
	  "idempotent and prints what moved.\n" },
	{ "remote", cmd_remote, "add NAME URL [--endpoint URL] [--region R] [--path-style] | list | remove NAME",
	  "name a remote store: a directory or an S3-compatible bucket",
	  "URL: file:///PATH (a directory, e.g. on a shared filesystem; created by the\n"
	  "first push) or s3://BUCKET[/PREFIX] (AWS S3, MinIO, Ceph RGW, any S3-compatible\n"
	  "service).  S3 settings: --endpoint (default $AWS_ENDPOINT_URL, else AWS),\n"
	  "--region (default $AWS_REGION, else us-east-1), --path-style (default for\n"
	  "non-AWS endpoints).  Credentials come only from AWS_ACCESS_KEY_ID,\n"
	  "AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; they are never stored or logged.\n"
	  "Stored as remote.NAME.* in the store's config.\n" },
	{ "push", cmd_push, "NAME [REPO[@REF]...] [-j N]",
	  "send versions to a remote: missing objects in packs, then the refs",
	  "Without REPO: every repository and ref.  Objects travel in packs of about\n"
	  "32 MiB with an index, N at a time (default 8); a pack is complete once its\n"
	  "index is there, so an interrupted push resumes without resending finished\n"
	  "packs.  Refs move by compare-and-swap: a branch only forward (if the remote\n"
	  "has commits you lack, the push is refused as non-fast-forward: pull first),\n"
	  "a tag never, an environment with every move logged here since its value on\n"
	  "the remote (the promotion history travels).\n" },
	{ "pull", cmd_pull, "NAME [REPO[@REF]...] [-j N]",
	  "fetch versions from a remote and move local refs",
	  "Fetches what the remote's refs need (ranged reads of its packs), verifies\n"
	  "every object against its id before storing it, then in one transaction\n"
	  "creates missing repositories and refs, fast-forwards branches and moves\n"
	  "environments the remote moved.  A branch that has diverged (both sides have\n"
	  "commits) or a tag that differs is left alone and reported; the others\n"
	  "are updated.\n" },
	{ "clone", cmd_clone, "URL [STORE] [-j N] [--endpoint URL] [--region R]",
	  "create a store from a remote (named origin)",
	  "STORE defaults to --store, $ARTIFS_STORE or the default store, which must\n"
	  "not exist yet.\n" },
	{ "export", cmd_export, "REPO@REF[:PATH] -o OUT [--format tar|tar.gz|tar.zst|zip]",
	  "write a version as an archive",
	  "Format from OUT's extension unless --format; -o - writes to stdout (tar\n"
	  "unless --format).  Deterministic: members in tree order, owner root (0/0),\n"
	  "modes 0644/0755, every time the commit's, no host-specific fields, so the\n"
	  "same version always gives the same bytes.  A whole version with labels gets\n"
	  "a .labels.jsonl member first; 'artifs commit' reads it back.\n" },
	{ "du", cmd_du, "[REPO] [--json]", "logical bytes vs stored bytes",
	  "Logical: the sum over every commit of its files' sizes (what full copies would\n"
	  "cost).  Stored: the unique chunk bytes those commits reach.\n" },
	{ "fsck", cmd_fsck, "[--json] [--repair-refs]", "verify every reachable object against its id",
	  "Checks every commit, tree, manifest and chunk reachable from any ref or ref log\n"
	  "entry: each hashes to its id, decodes, and each file matches its digest; and\n"
	  "every ref: its record against its checksum and against its ref log, which\n"
	  "every move is written to in the same transaction.  Exit status 3 if any\n"
	  "fault is found.  'gc' refuses to run while a ref is damaged.\n"
	  "  --repair-refs  first rebuild damaged refs from their logs (a lost ref is\n"
	  "                 restored, a damaged one rewritten to its last logged move),\n"
	  "                 then check\n" },
	{ "gc", cmd_gc, "[--dry-run] [--json]", "delete unreachable objects",
	  "Deletes objects no ref or ref-log entry reaches (for example the chunks of an\n"
	  "interrupted commit) and reports the bytes freed.  Freed space is reused by\n"
	  "the store; the file itself does not shrink.\n" },
	{ "mount", cmd_mount, "MOUNTPOINT [-f|--foreground] [-o OPTIONS] [--log FILE] [--debug] [--remote NAME [--cache-size SIZE]]",
	  "serve every repository, ref and commit read-only",
	  "Mounts the store on MOUNTPOINT (an existing directory):\n"
	  "  MOUNTPOINT/datasets/NAME/REF/...          every branch, tag and environment\n"
	  "  MOUNTPOINT/datasets/NAME/.commits/ID/...  any commit by id or unique prefix\n"
	  "  MOUNTPOINT/models/NAME/...\n"
	  "A branch directory follows new commits within a second; files already open\n"
	  "keep reading the version they opened.  The daemon detaches and logs to\n"
	  "syslog unless --foreground (log to stderr) or --log FILE.  It stops on\n"
	  "'artifs umount', 'fusermount3 -u' or SIGTERM.  -o passes FUSE options\n"
	  "(e.g. -o allow_other; root mounts allow other users by default).\n"
	  "Also mountable as: mount -t fuse.artifs STORE MOUNTPOINT (mount.fuse3\n"
	  "runs 'artifs STORE MOUNTPOINT -o OPTIONS'; artifs must be in /usr/bin or\n"
	  "/usr/sbin), or from /etc/fstab:\n"
	  "  /srv/artifs  /mnt/artifs  fuse.artifs  defaults,_netdev  0 0\n"
	  "  --readahead-kb N  read-ahead of the mount (default 2048)\n"
	  "  --threads N       idle worker threads kept (default 16)\n"
	  "--remote NAME serves the repositories and refs of remote NAME (see 'artifs\n"
	  "remote') with nothing local: refs and directory records are fetched at\n"
	  "mount and re-read every --refresh SECONDS (default 30); file chunks are\n"
	  "fetched as they are read (with read-ahead), verified, and kept in\n"
	  "STORE/remotes/NAME/cache up to --cache-size (default 10G; the least\n"
	  "recently read go first).  What is cached is served when the remote is gone;\n"
	  "a read that needs the remote then fails with EIO after bounded retries\n"
	  "(10 s without progress, 3 retries; ARTIFS_S3_TIMEOUT, ARTIFS_S3_MAX_RETRIES).\n" },
	{ "umount", cmd_umount, "MOUNTPOINT", "unmount an artifs mount",
	  "Unmounts with fusermount3 -u; the daemon exits by itself.\n" },
};

#define NCMDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: artifs [--store DIR] COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < NCMDS; i++)
		fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
	fprintf(f,
		"\nREPO is datasets/NAME or models/NAME.  REF is a branch, tag, environment or\n"
		"a unique commit-id prefix of at least 6 hex digits; a missing @REF means main.\n"
		"\nSTORE: --store DIR, else $ARTIFS_STORE, else $XDG_DATA_HOME/artifs,\n"
		"else ~/.local/share/artifs.\n"
		"\nexit status: 0 success, 1 failure, 2 usage error, 3 fsck found faults.\n"
		"Errors go to stderr as 'artifs: error: ...'.  Progress is shown only when\n"
		"stderr is a terminal.  'artifs COMMAND --help' describes one command.\n");
}

int cli_help(const char *cmd)
{
	for (size_t i = 0; i < NCMDS; i++)
		if (!strcmp(commands[i].name, cmd)) {
			printf("usage: artifs %s %s\n\n%s.\n\n%s", cmd, commands[i].usage,
				commands[i].summary, commands[i].help);
			return EXIT_OK;
		}
	return EXIT_USAGE;
}

int main(int argc, char **argv)
{
	int n = 1;

	/*
	 * LMDB allocates a dirty overflow page run per large value and frees it
	 * at commit.  With glibc's default 128 KiB mmap threshold each chunk
	 * became an mmap/munmap pair and page faults: a 1 GiB commit spent 3.6 s
	 * in the kernel.  Keeping big blocks on the heap for reuse cut it to 0.4 s.
	 */
	mallopt(M_MMAP_THRESHOLD, 256 << 20);
	mallopt(M_TRIM_THRESHOLD, 512 << 20);

	/* --store may come before or after the command; take it out of argv */
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			for (; i < argc; i++)
				argv[n++] = argv[i];
			break;
		}
		if (!strcmp(argv[i], "--store")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "artifs: error: --store needs a directory\n");
				return EXIT_USAGE;
			}
			cli_store_flag = argv[++i];
		} else if (!strncmp(argv[i], "--store=", 8)) {
			cli_store_flag = argv[i] + 8;
		} else {
			argv[n++] = argv[i];
		}
	}
	argc = n;
	argv[argc] = NULL;
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		if (argc > 2 && cli_help(argv[2]) == EXIT_OK)
			return EXIT_OK;
		usage(stdout);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("artifs %s (store format %d)\n", ARTIFS_VERSION_STR, ARTIFS_FORMAT_VERSION);
		return EXIT_OK;
	}
	for (size_t i = 0; i < NCMDS; i++) {
		if (strcmp(commands[i].name, argv[1]))
			continue;
		for (int j = 2; j < argc && strcmp(argv[j], "--"); j++)
			if (!strcmp(argv[j], "-h") || !strcmp(argv[j], "--help"))
				return cli_help(argv[1]);
		int rc;

		artifs_error_clear();
		rc = commands[i].fn(argc - 1, argv + 1);
		cli_end_if_interrupted();
		return rc;
	}
	{
		int rc = cli_mount_fuse_form(argc, argv);

		if (rc >= 0)
			return rc;
	}
	fprintf(stderr, "artifs: error: unknown command '%s'\nhint: see 'artifs --help'\n", argv[1]);
	return EXIT_USAGE;
}
