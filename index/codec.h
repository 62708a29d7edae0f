/*
 * codec.h - little-endian field access for the on-disk records.
 * Records are byte strings in LMDB values; nothing is aligned, so every
 * access goes through memcpy (compiled to a plain load on x86-64/arm64).
 */
#ifndef ARTIFS_CODEC_H
#define ARTIFS_CODEC_H

#include <stdint.h>
#include <string.h>

static inline void put_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void put_le32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline void put_le64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline void put_be64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[7 - i] = (uint8_t)(v >> (8 * i)); }
static inline uint16_t get_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t get_le32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static inline uint64_t get_le64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }
static inline uint64_t get_be64(const uint8_t *p) { uint64_t v = 0; for (int i = 0; i < 8; i++) v = v << 8 | p[i]; return v; }

/* A malloc'd formatted string (vasprintf), NULL when out of memory. */
char *artifs_strfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable byte buffer for encoders. */
typedef struct artifs_buf {
	uint8_t *ptr;
	size_t len, cap;
} artifs_buf;

int artifs_buf_grow(artifs_buf *b, size_t extra);
int artifs_buf_put(artifs_buf *b, const void *data, size_t len);
int artifs_buf_put_le32(artifs_buf *b, uint32_t v);
int artifs_buf_put_le64(artifs_buf *b, uint64_t v);
int artifs_buf_put_str(artifs_buf *b, const char *s, size_t len); /* u32 length + bytes */
void artifs_buf_release(artifs_buf *b);

/* A bounds-checked reader for decoders: any overrun sets err. */
typedef struct artifs_rd {
	const uint8_t *p, *end;
	int err;
} artifs_rd;

static inline const uint8_t *rd_take(artifs_rd *r, size_t n)
{
	const uint8_t *q = r->p;

	if (r->err || (size_t)(r->end - r->p) < n) {
		r->err = 1;
		return NULL;
	}
	r->p += n;
	return q;
}
static inline uint32_t rd_le32(artifs_rd *r) { const uint8_t *q = rd_take(r, 4); return q ? get_le32(q) : 0; }
static inline uint64_t rd_le64(artifs_rd *r) { const uint8_t *q = rd_take(r, 8); return q ? get_le64(q) : 0; }

#endif
