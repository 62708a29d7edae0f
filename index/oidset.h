/* oidset.h - an open-addressing set of object ids (for walks over the store). */
#ifndef ARTIFS_OIDSET_H
#define ARTIFS_OIDSET_H

#include <stddef.h>

#include "oid.h"

typedef struct artifs_oidset {
	artifs_oid *slots;	/* the zero id marks an empty slot */
	size_t cap, n;
	int has_zero;
} artifs_oidset;

void artifs_oidset_init(artifs_oidset *set);
/* 1 if added, 0 if already there, negative on allocation failure. */
int artifs_oidset_add(artifs_oidset *set, const artifs_oid *id);
int artifs_oidset_has(const artifs_oidset *set, const artifs_oid *id);
void artifs_oidset_release(artifs_oidset *set);

#endif
