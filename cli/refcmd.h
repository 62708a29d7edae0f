#ifndef ARTIFS_REFCMD_H
#define ARTIFS_REFCMD_H

#include "cli.h"
#include "ref.h"

int refcmd_list(const char *cmd, const char *repo, char kind, int json);
/* no_verify: skip pre-tag hooks (tags only). */
int refcmd_create(const char *cmd, const char *repo, const char *name, const char *rev, char kind,
	int no_verify);

/* Delete ref NAME of kind `kind`; prints what it pointed at. */
int refcmd_delete(const char *cmd, const char *repo, const char *name, char kind);

#endif
