#include "cli.h"
#include "error.h"
#include "ref.h"

#include <stdio.h>
#include <string.h>

int cmd_create(int argc, char **argv)
{
	artifs_store *s = NULL;
	char repo[256];
	int rc;

	if (argc == 2 && strchr(argv[1], '/')) {
		snprintf(repo, sizeof(repo), "%s", argv[1]);
	} else if (argc == 3 && (!strcmp(argv[1], "dataset") || !strcmp(argv[1], "model"))) {
		if (strlen(argv[2]) > 200)
			return cli_fail(NULL, "repository name '%.40s...' is too long (at most 100)", argv[2]);
		snprintf(repo, sizeof(repo), "%ss/%s", argv[1], argv[2]);
	} else {
		return cli_usage("create", "usage: artifs create dataset NAME | model NAME");
	}
	if ((rc = cli_open_store(&s, 0)))
		return rc;
	rc = artifs_repo_create(s, repo);
	if (rc) {
		rc = cli_fail_rc(rc);
	} else {
		printf("created %s (branch main)\n", repo);
	}
	artifs_store_free(s);
	return rc;
}
