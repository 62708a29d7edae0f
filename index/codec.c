#include "codec.h"

#include <stdarg.h>
#include <stdio.h>
#include "error.h"

#include <errno.h>
#include <stdlib.h>

int artifs_buf_grow(artifs_buf *b, size_t extra)
{
	size_t want = b->len + extra, cap = b->cap ? b->cap : 256;
	uint8_t *p;

	if (want < b->len)
		return artifs_error(-ENOMEM, "buffer size overflow");
	if (want <= b->cap)
		return 0;
	while (cap < want)
		cap *= 2;
	p = realloc(b->ptr, cap);
	if (!p)
		return artifs_error(-ENOMEM, "out of memory (%zu bytes)", cap);
	b->ptr = p;
	b->cap = cap;
	return 0;
}

int artifs_buf_put(artifs_buf *b, const void *data, size_t len)
{
	int rc = artifs_buf_grow(b, len);

	if (rc)
		return rc;
	if (len)
		memcpy(b->ptr + b->len, data, len);
	b->len += len;
	return 0;
}

int artifs_buf_put_le32(artifs_buf *b, uint32_t v)
{
	uint8_t t[4];

	put_le32(t, v);
	return artifs_buf_put(b, t, 4);
}

int artifs_buf_put_le64(artifs_buf *b, uint64_t v)
{
	uint8_t t[8];

	put_le64(t, v);
	return artifs_buf_put(b, t, 8);
}

int artifs_buf_put_str(artifs_buf *b, const char *s, size_t len)
{
	int rc = artifs_buf_put_le32(b, (uint32_t)len);

	return rc ? rc : artifs_buf_put(b, s, len);
}

void artifs_buf_release(artifs_buf *b)
{
	free(b->ptr);
	b->ptr = NULL;
	b->len = b->cap = 0;
}

char *artifs_strfmt(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	if (vasprintf(&p, fmt, ap) < 0)
		p = NULL;
	va_end(ap);
	return p;
}
