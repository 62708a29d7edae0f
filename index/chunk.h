/*
 * chunk.h - content-defined chunking (FastCDC, gear hash, normalised
 * chunking level 2).  Pure functions: no store access.
 *
 * Cut points depend only on the bytes, so an insert or a delete moves the
 * boundaries near it and the chunker falls back into step after it.  The
 * sizes in use are chosen and measured in index/FORMAT.md; they are part of
 * the format because they decide which chunk ids a file gets.
 */
#ifndef ARTIFS_CHUNK_H
#define ARTIFS_CHUNK_H

#include <stddef.h>
#include <stdint.h>

typedef struct artifs_cdc_params {
	size_t min_size;	/* no cut before this many bytes */
	size_t avg_size;	/* a power of two: the normalisation point */
	size_t max_size;	/* always cut here */
	uint64_t mask_s;	/* harder mask, used before avg_size */
	uint64_t mask_l;	/* easier mask, used after avg_size */
} artifs_cdc_params;

/* The parameters of format version 1 (measured: index/FORMAT.md, "Chunk sizes"). */
#define ARTIFS_CDC_MIN ((size_t)32 << 10)
#define ARTIFS_CDC_AVG ((size_t)128 << 10)
#define ARTIFS_CDC_MAX ((size_t)512 << 10)

/* Fill p for the given sizes; avg must be a power of two, min < avg < max. */
int artifs_cdc_params_init(artifs_cdc_params *p, size_t min, size_t avg, size_t max);

/* The parameters the store format uses. */
const artifs_cdc_params *artifs_cdc_default(void);

/*
 * Length of the next chunk at the start of buf[0..len).  If len < max_size
 * and !eof, the cut may depend on bytes not yet seen: returns 0 and the
 * caller supplies more.  At eof returns min(len, cut) (len if no cut).
 */
size_t artifs_cdc_next(const artifs_cdc_params *p, const uint8_t *buf, size_t len, int eof);

#endif
