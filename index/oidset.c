#include "oidset.h"
#include "error.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void artifs_oidset_init(artifs_oidset *set)
{
	memset(set, 0, sizeof(*set));
}

static size_t slot(const artifs_oid *id, size_t cap)
{
	uint64_t h;

	memcpy(&h, id->id + 8, 8);
	return (size_t)h & (cap - 1);
}

static int grow(artifs_oidset *set)
{
	size_t cap = set->cap ? set->cap * 2 : 1024;
	artifs_oid *n = calloc(cap, sizeof(*n));

	if (!n)
		return artifs_error(-ENOMEM, "out of memory");
	for (size_t i = 0; i < set->cap; i++) {
		if (artifs_oid_is_zero(&set->slots[i]))
			continue;
		size_t j = slot(&set->slots[i], cap);
		while (!artifs_oid_is_zero(&n[j]))
			j = (j + 1) & (cap - 1);
		n[j] = set->slots[i];
	}
	free(set->slots);
	set->slots = n;
	set->cap = cap;
	return 0;
}

int artifs_oidset_add(artifs_oidset *set, const artifs_oid *id)
{
	size_t j;
	int rc;

	if (artifs_oid_is_zero(id)) {
		if (set->has_zero)
			return 0;
		set->has_zero = 1;
		return 1;
	}
	if ((set->n + 1) * 2 > set->cap && (rc = grow(set)))
		return rc;
	for (j = slot(id, set->cap); !artifs_oid_is_zero(&set->slots[j]); j = (j + 1) & (set->cap - 1))
		if (!artifs_oid_cmp(&set->slots[j], id))
			return 0;
	set->slots[j] = *id;
	set->n++;
	return 1;
}

int artifs_oidset_has(const artifs_oidset *set, const artifs_oid *id)
{
	if (artifs_oid_is_zero(id))
		return set->has_zero;
	if (!set->cap)
		return 0;
	for (size_t j = slot(id, set->cap); !artifs_oid_is_zero(&set->slots[j]); j = (j + 1) & (set->cap - 1))
		if (!artifs_oid_cmp(&set->slots[j], id))
			return 1;
	return 0;
}

void artifs_oidset_release(artifs_oidset *set)
{
	free(set->slots);
	memset(set, 0, sizeof(*set));
}
