/*
 * test_chunk.c - content-defined chunking: deterministic cut points, size
 * bounds, and boundaries that survive inserts, deletes and edits (the
 * property that makes a small change to a large file cost a few chunks).
 */
#include "helpers.h"

#include "chunk.h"

#include <stdlib.h>
#include <string.h>

#define BIG ((size_t)64 << 20)

typedef struct cuts {
	size_t *len;
	artifs_oid *id;
	size_t n, cap;
} cuts;

static void cuts_push(cuts *c, const uint8_t *p, size_t n)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 256;
		c->len = realloc(c->len, c->cap * sizeof(*c->len));
		c->id = realloc(c->id, c->cap * sizeof(*c->id));
		assert_non_null(c->len);
		assert_non_null(c->id);
	}
	c->len[c->n] = n;
	artifs_oid_hash(&c->id[c->n], p, n);
	c->n++;
}

static void cuts_free(cuts *c)
{
	free(c->len);
	free(c->id);
	memset(c, 0, sizeof(*c));
}

/* Cut a whole buffer that is known to end here (eof). */
static void cut_all(cuts *c, const uint8_t *buf, size_t len)
{
	const artifs_cdc_params *p = artifs_cdc_default();
	size_t pos = 0;

	memset(c, 0, sizeof(*c));
	while (pos < len) {
		size_t n = artifs_cdc_next(p, buf + pos, len - pos, 1);
		assert_true(n > 0 && n <= len - pos);
		cuts_push(c, buf + pos, n);
		pos += n;
	}
}

/*
 * Cut the buffer as a reader would that sees it `window` bytes at a time:
 * with eof=0 until the last bytes have arrived, retrying with more data
 * whenever artifs_cdc_next() asks for it (returns 0).
 */
static void cut_streaming(cuts *c, const uint8_t *buf, size_t len, size_t window)
{
	const artifs_cdc_params *p = artifs_cdc_default();
	size_t pos = 0, avail = window < len ? window : len;

	memset(c, 0, sizeof(*c));
	while (pos < len) {
		int eof = avail == len;
		size_t n = artifs_cdc_next(p, buf + pos, avail - pos, eof);
		if (n == 0) {
			assert_false(eof);
			avail = avail + window < len ? avail + window : len;
			continue;
		}
		cuts_push(c, buf + pos, n);
		pos += n;
	}
}

static int oid_qcmp(const void *a, const void *b)
{
	return artifs_oid_cmp(a, b);
}

/* How many chunk ids of b do not occur in a. */
static size_t count_new(const cuts *a, const cuts *b)
{
	artifs_oid *sorted = malloc(a->n * sizeof(*sorted));
	size_t fresh = 0;

	assert_non_null(sorted);
	memcpy(sorted, a->id, a->n * sizeof(*sorted));
	qsort(sorted, a->n, sizeof(*sorted), oid_qcmp);
	for (size_t i = 0; i < b->n; i++)
		if (!bsearch(&b->id[i], sorted, a->n, sizeof(*sorted), oid_qcmp))
			fresh++;
	free(sorted);
	return fresh;
}

static void assert_bounds(const cuts *c, size_t total)
{
	const artifs_cdc_params *p = artifs_cdc_default();
	size_t sum = 0;

	for (size_t i = 0; i < c->n; i++) {
		if (i + 1 < c->n && (c->len[i] < p->min_size || c->len[i] > p->max_size))
			fail_msg("chunk %zu of %zu has %zu bytes, outside [%zu, %zu]",
				i, c->n, c->len[i], p->min_size, p->max_size);
		assert_true(c->len[i] >= 1 && c->len[i] <= p->max_size);
		sum += c->len[i];
	}
	assert_int_equal(sum, total);
}

static void assert_same_cuts(const cuts *a, const cuts *b)
{
	assert_int_equal(a->n, b->n);
	assert_memory_equal(a->len, b->len, a->n * sizeof(*a->len));
	assert_memory_equal(a->id, b->id, a->n * sizeof(*a->id));
}

/* The 64 MiB buffer and its cut list, shared by the tests (read only). */
static uint8_t *big;
static cuts big_cuts;

static int group_setup(void **state)
{
	(void)state;
	big = test_random_bytes(TEST_SEED, BIG);
	cut_all(&big_cuts, big, BIG);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	free(big);
	cuts_free(&big_cuts);
	return 0;
}

static void test_default_params(void **state)
{
	const artifs_cdc_params *p = artifs_cdc_default();

	(void)state;
	assert_int_equal(p->min_size, ARTIFS_CDC_MIN);
	assert_int_equal(p->avg_size, ARTIFS_CDC_AVG);
	assert_int_equal(p->max_size, ARTIFS_CDC_MAX);
	assert_ptr_equal(p, artifs_cdc_default());
}

static void test_params_init_rejects_bad_sizes(void **state)
{
	artifs_cdc_params p;

	(void)state;
	assert_ok(artifs_cdc_params_init(&p, 1024, 4096, 16384));
	assert_rc(ARTIFS_EINVAL, artifs_cdc_params_init(&p, 1024, 3000, 16384));	/* avg not 2^n */
	assert_rc(ARTIFS_EINVAL, artifs_cdc_params_init(&p, 4096, 4096, 16384));	/* min == avg */
	assert_rc(ARTIFS_EINVAL, artifs_cdc_params_init(&p, 1024, 4096, 4096));	/* avg == max */
	assert_rc(ARTIFS_EINVAL, artifs_cdc_params_init(&p, 32, 4096, 16384));	/* min < window */
}

static void test_short_input(void **state)
{
	const artifs_cdc_params *p = artifs_cdc_default();
	size_t n = p->min_size;

	(void)state;
	/* at or below min there is never a cut: without eof wait, with eof take all */
	assert_int_equal(artifs_cdc_next(p, big, n, 0), 0);
	assert_int_equal(artifs_cdc_next(p, big, n, 1), n);
	assert_int_equal(artifs_cdc_next(p, big, 1, 1), 1);
	/* below max without eof the cut may depend on later bytes: wait */
	assert_int_equal(artifs_cdc_next(p, big, p->max_size - 1, 0), 0);
	/* with max bytes a cut is always decided */
	n = artifs_cdc_next(p, big, p->max_size, 0);
	assert_true(n > p->min_size && n <= p->max_size);
	assert_int_equal(artifs_cdc_next(p, big, BIG, 0), n);
	assert_int_equal(artifs_cdc_next(p, big, BIG, 1), n);
}

static void test_max_cut_on_constant_data(void **state)
{
	const artifs_cdc_params *p = artifs_cdc_default();
	size_t len = p->max_size * 3 + 12345;
	uint8_t *zeros = calloc(1, len);
	cuts c;

	(void)state;
	assert_non_null(zeros);
	/* no content-defined cut in a run of one byte value: cuts fall at max */
	cut_all(&c, zeros, len);
	assert_int_equal(c.n, 4);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(c.len[i], p->max_size);
	assert_int_equal(c.len[3], 12345);
	/* equal chunks share an id: the three full ones dedupe to one */
	assert_oid_equal(&c.id[0], &c.id[1]);
	assert_oid_equal(&c.id[1], &c.id[2]);
	cuts_free(&c);
	free(zeros);
}

static void test_deterministic(void **state)
{
	cuts again, s1, s2;
	uint8_t *copy = malloc(BIG);

	(void)state;
	assert_non_null(copy);
	/* the same bytes, in another buffer, give the same cut list */
	memcpy(copy, big, BIG);
	cut_all(&again, copy, BIG);
	assert_same_cuts(&big_cuts, &again);
	/* and so does feeding them in pieces, as a file reader does */
	cut_streaming(&s1, big, BIG, (size_t)3 << 20);
	assert_same_cuts(&big_cuts, &s1);
	cut_streaming(&s2, big, BIG, (size_t)1 << 20);
	assert_same_cuts(&big_cuts, &s2);
	cuts_free(&again);
	cuts_free(&s1);
	cuts_free(&s2);
	free(copy);
}

static void test_bounds(void **state)
{
	const artifs_cdc_params *p = artifs_cdc_default();
	size_t sum = 0;

	(void)state;
	assert_bounds(&big_cuts, BIG);
	/* random data: the average lands near the target, well inside [min, max] */
	for (size_t i = 0; i < big_cuts.n; i++)
		sum += big_cuts.len[i];
	assert_true(big_cuts.n >= BIG / p->max_size);
	assert_true(sum / big_cuts.n > p->min_size && sum / big_cuts.n < p->max_size);
	print_message("64 MiB: %zu chunks, average %zu bytes\n", big_cuts.n, sum / big_cuts.n);
}

static void test_insert_near_start(void **state)
{
	uint8_t *b = malloc(BIG + 100);
	uint8_t ins[100];
	test_rng r;
	cuts c;
	size_t fresh;

	(void)state;
	assert_non_null(b);
	test_rng_init(&r, TEST_SEED + 1);
	test_rng_fill(&r, ins, sizeof(ins));
	memcpy(b, big, 1000);
	memcpy(b + 1000, ins, sizeof(ins));
	memcpy(b + 1000 + sizeof(ins), big + 1000, BIG - 1000);
	cut_all(&c, b, BIG + 100);
	assert_bounds(&c, BIG + 100);
	fresh = count_new(&big_cuts, &c);
	print_message("insert 100 bytes at 1000: %zu of %zu chunks new\n", fresh, c.n);
	assert_true(fresh >= 1);	/* the changed bytes are in some chunk */
	assert_true(fresh <= 3);
	cuts_free(&c);
	free(b);
}

static void test_delete_near_start(void **state)
{
	uint8_t *b = malloc(BIG);
	cuts c;
	size_t fresh;

	(void)state;
	assert_non_null(b);
	memcpy(b, big, 1000);
	memcpy(b + 1000, big + 1100, BIG - 1100);
	cut_all(&c, b, BIG - 100);
	assert_bounds(&c, BIG - 100);
	fresh = count_new(&big_cuts, &c);
	print_message("delete 100 bytes at 1000: %zu of %zu chunks new\n", fresh, c.n);
	assert_true(fresh >= 1 && fresh <= 3);
	cuts_free(&c);
	free(b);
}

static void test_delete_in_middle(void **state)
{
	size_t at = BIG / 2 + 777, del = 4096;
	uint8_t *b = malloc(BIG);
	cuts c;
	size_t fresh;

	(void)state;
	assert_non_null(b);
	memcpy(b, big, at);
	memcpy(b + at, big + at + del, BIG - at - del);
	cut_all(&c, b, BIG - del);
	assert_bounds(&c, BIG - del);
	fresh = count_new(&big_cuts, &c);
	print_message("delete %zu bytes in the middle: %zu of %zu chunks new\n", del, fresh, c.n);
	assert_true(fresh >= 1 && fresh <= 3);
	cuts_free(&c);
	free(b);
}

static void test_edit_in_middle(void **state)
{
	size_t at = BIG / 2 + 12345;
	uint8_t *b = malloc(BIG);
	cuts c;
	size_t fresh, same_prefix = 0;

	(void)state;
	assert_non_null(b);
	memcpy(b, big, BIG);
	for (size_t i = 0; i < 100; i++)
		b[at + i] ^= 0x5a;
	cut_all(&c, b, BIG);
	assert_bounds(&c, BIG);
	fresh = count_new(&big_cuts, &c);
	print_message("overwrite 100 bytes in the middle: %zu of %zu chunks new\n", fresh, c.n);
	assert_true(fresh >= 1 && fresh <= 3);
	/* every chunk that ends before the edit is cut exactly as before */
	for (size_t i = 0, pos = 0; i < c.n && pos + c.len[i] <= at; pos += c.len[i], i++) {
		assert_int_equal(c.len[i], big_cuts.len[i]);
		same_prefix++;
	}
	assert_true(same_prefix > 0);
	cuts_free(&c);
	free(b);
}

static void test_append(void **state)
{
	uint8_t *b = malloc(BIG + 5000);
	cuts c;
	size_t fresh;

	(void)state;
	assert_non_null(b);
	memcpy(b, big, BIG);
	memset(b + BIG, 'x', 5000);
	cut_all(&c, b, BIG + 5000);
	fresh = count_new(&big_cuts, &c);
	/* only the tail chunk changes */
	assert_true(fresh >= 1 && fresh <= 2);
	cuts_free(&c);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_params),
		cmocka_unit_test(test_params_init_rejects_bad_sizes),
		cmocka_unit_test(test_short_input),
		cmocka_unit_test(test_max_cut_on_constant_data),
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_insert_near_start),
		cmocka_unit_test(test_delete_near_start),
		cmocka_unit_test(test_delete_in_middle),
		cmocka_unit_test(test_edit_in_middle),
		cmocka_unit_test(test_append),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
