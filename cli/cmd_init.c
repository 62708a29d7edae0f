#include "cli.h"
#include "error.h"

#include <stdlib.h>

int cmd_init(int argc, char **argv)
{
	char *path = NULL;
	int rc;

	(void)argv;
	if (argc > 1)
		return cli_usage("init", "'init' takes no arguments (choose the directory with --store)");
	if ((rc = artifs_store_default_path(&path, cli_store_flag)))
		return cli_fail_rc(rc);
	rc = artifs_store_init(path, NULL);
	if (rc == ARTIFS_EEXISTS) {
		fprintf(stderr, "artifs: store already exists at '%s'; nothing to do\n", path);
		rc = 0;
	} else if (rc) {
		free(path);
		return cli_fail_rc(rc);
	} else {
		printf("created store at '%s'\n", path);
	}
	free(path);
	return EXIT_OK;
}
