#include "chunk.h"
#include "error.h"

#include <pthread.h>

/*
 * The gear table: 256 64-bit values from splitmix64 seeded with
 * 0x61727469667331 ("artifs1").  Changing it changes every chunk id.
 */
static uint64_t gear[256];
static pthread_once_t gear_once = PTHREAD_ONCE_INIT;

static void gear_init(void)
{
	uint64_t x = 0x61727469667331ULL;

	for (int i = 0; i < 256; i++) {
		uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
		gear[i] = z ^ (z >> 31);
	}
}

/*
 * The hash shifts left one bit a byte, so bit 63 depends on the last 64
 * bytes and bit 0 on the last byte only: masks take their bits from the top.
 */
static uint64_t top_bits(int n)
{
	return n <= 0 ? 0 : ~0ULL << (64 - n);
}

int artifs_cdc_params_init(artifs_cdc_params *p, size_t min, size_t avg, size_t max)
{
	int bits = 0;

	if (!avg || (avg & (avg - 1)) || min < 64 || min >= avg || avg >= max)
		return artifs_error(ARTIFS_EINVAL, "chunk sizes must satisfy 64 <= min < avg < max, avg a power of two");
	while (((size_t)1 << bits) < avg)
		bits++;
	p->min_size = min;
	p->avg_size = avg;
	p->max_size = max;
	p->mask_s = top_bits(bits + 2);
	p->mask_l = top_bits(bits - 2);
	pthread_once(&gear_once, gear_init);
	return 0;
}

static artifs_cdc_params default_params;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void default_init(void)
{
	artifs_cdc_params_init(&default_params, ARTIFS_CDC_MIN, ARTIFS_CDC_AVG, ARTIFS_CDC_MAX);
}

const artifs_cdc_params *artifs_cdc_default(void)
{
	pthread_once(&default_once, default_init);
	return &default_params;
}

size_t artifs_cdc_next(const artifs_cdc_params *p, const uint8_t *buf, size_t len, int eof)
{
	size_t i, n = len, normal = p->avg_size;
	uint64_t h = 0;

	if (len <= p->min_size)
		return eof ? len : 0;
	if (n > p->max_size)
		n = p->max_size;
	else if (!eof && n < p->max_size)
		return 0;
	if (normal > n)
		normal = n;
	/* the hash window is 64 bytes: start it that far before min_size */
	for (i = p->min_size - 64; i < p->min_size; i++)
		h = (h << 1) + gear[buf[i]];
	for (; i < normal; i++) {
		h = (h << 1) + gear[buf[i]];
		if (!(h & p->mask_s))
			return i + 1;
	}
	for (; i < n; i++) {
		h = (h << 1) + gear[buf[i]];
		if (!(h & p->mask_l))
			return i + 1;
	}
	return n;
}
