/*
 * oid.h - object ids: XXH3-128 digests, stored and shown big-endian
 * (xxHash's canonical form), printed as 32 lower-case hex digits.
 */
#ifndef ARTIFS_OID_H
#define ARTIFS_OID_H

#include <stddef.h>
#include <stdint.h>

#define ARTIFS_OID_RAWSZ 16
#define ARTIFS_OID_HEXSZ 32

typedef struct artifs_oid {
	uint8_t id[ARTIFS_OID_RAWSZ];
} artifs_oid;

/* out = XXH3-128 of data[0..len). */
void artifs_oid_hash(artifs_oid *out, const void *data, size_t len);

/* Write 32 hex digits and a NUL into buf (ARTIFS_OID_HEXSZ + 1 bytes). */
char *artifs_oid_fmt(char *buf, const artifs_oid *oid);

/* Parse exactly 32 hex digits; -ARTIFS_EINVAL otherwise. */
int artifs_oid_parse(artifs_oid *out, const char *hex);

int artifs_oid_cmp(const artifs_oid *a, const artifs_oid *b);
int artifs_oid_is_zero(const artifs_oid *oid);

/* Streaming digest of a whole file. */
typedef struct artifs_hasher artifs_hasher;
artifs_hasher *artifs_hasher_new(void);
void artifs_hasher_reset(artifs_hasher *h);
void artifs_hasher_update(artifs_hasher *h, const void *data, size_t len);
void artifs_hasher_final(artifs_hasher *h, artifs_oid *out);
void artifs_hasher_free(artifs_hasher *h);

#endif
