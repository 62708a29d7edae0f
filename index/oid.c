#include "oid.h"
#include "error.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

struct artifs_hasher {
	XXH3_state_t *st;
};

void artifs_oid_hash(artifs_oid *out, const void *data, size_t len)
{
	XXH128_hash_t h = XXH3_128bits(data, len);
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, h);
	memcpy(out->id, c.digest, sizeof(out->id));
}

char *artifs_oid_fmt(char *buf, const artifs_oid *oid)
{
	static const char hex[] = "0123456789abcdef";

	for (int i = 0; i < ARTIFS_OID_RAWSZ; i++) {
		buf[2 * i] = hex[oid->id[i] >> 4];
		buf[2 * i + 1] = hex[oid->id[i] & 15];
	}
	buf[ARTIFS_OID_HEXSZ] = '\0';
	return buf;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int artifs_oid_parse(artifs_oid *out, const char *hex)
{
	artifs_oid tmp;

	if (strlen(hex) != ARTIFS_OID_HEXSZ)
		return ARTIFS_EINVAL;
	for (int i = 0; i < ARTIFS_OID_RAWSZ; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return ARTIFS_EINVAL;
		tmp.id[i] = (uint8_t)(hi << 4 | lo);
	}
	*out = tmp;
	return 0;
}

int artifs_oid_cmp(const artifs_oid *a, const artifs_oid *b)
{
	return memcmp(a->id, b->id, ARTIFS_OID_RAWSZ);
}

int artifs_oid_is_zero(const artifs_oid *oid)
{
	for (int i = 0; i < ARTIFS_OID_RAWSZ; i++)
		if (oid->id[i])
			return 0;
	return 1;
}

artifs_hasher *artifs_hasher_new(void)
{
	artifs_hasher *h = malloc(sizeof(*h));

	if (!h)
		return NULL;
	h->st = XXH3_createState();
	if (!h->st) {
		free(h);
		return NULL;
	}
	XXH3_128bits_reset(h->st);
	return h;
}

void artifs_hasher_reset(artifs_hasher *h)
{
	XXH3_128bits_reset(h->st);
}

void artifs_hasher_update(artifs_hasher *h, const void *data, size_t len)
{
	XXH3_128bits_update(h->st, data, len);
}

void artifs_hasher_final(artifs_hasher *h, artifs_oid *out)
{
	XXH128_canonical_t c;

	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(h->st));
	memcpy(out->id, c.digest, sizeof(out->id));
}

void artifs_hasher_free(artifs_hasher *h)
{
	if (!h)
		return;
	XXH3_freeState(h->st);
	free(h);
}
