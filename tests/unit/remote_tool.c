/*
 * artifs-remote-tool - drive one remote (artifs_remote_*) from the shell,
 * for the integration tests of the transports.
 *
 *   artifs-remote-tool URL get KEY              the object to stdout
 *   artifs-remote-tool URL range KEY OFF LEN    bytes [OFF, OFF+LEN) to stdout
 *   artifs-remote-tool URL put KEY [--exclusive] < DATA
 *   artifs-remote-tool URL del KEY
 *   artifs-remote-tool URL list PREFIX          lines "KEY SIZE"
 *   artifs-remote-tool URL putmany PREFIX COUNT PREFIX%05d, COUNT small objects
 *                                               (object i holds i % 7 copies of its key)
 *
 * Exit status: 0 ok, 2 usage, 3 not found, 4 exists, 5 corrupt or short,
 * 1 any other error (message on stderr).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "remote.h"

static int usage(void)
{
	fprintf(stderr,
		"usage: artifs-remote-tool URL get KEY\n"
		"       artifs-remote-tool URL range KEY OFF LEN\n"
		"       artifs-remote-tool URL put KEY [--exclusive] < DATA\n"
		"       artifs-remote-tool URL del KEY\n"
		"       artifs-remote-tool URL list PREFIX\n"
		"       artifs-remote-tool URL putmany PREFIX COUNT\n");
	return 2;
}

static int write_all(const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n) {
		ssize_t w = write(1, b, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return artifs_error(-EIO, "cannot write to stdout: %s", strerror(errno));
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

static int read_stdin(artifs_buf *b)
{
	for (;;) {
		ssize_t n;
		int rc = artifs_buf_grow(b, 1 << 16);

		if (rc)
			return rc;
		n = read(0, b->ptr + b->len, b->cap - b->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return artifs_error(-EIO, "cannot read stdin: %s", strerror(errno));
		if (n == 0)
			return 0;
		b->len += (size_t)n;
	}
}

static int print_entry(const char *key, uint64_t size, void *ctx)
{
	(void)ctx;
	printf("%s %" PRIu64 "\n", key, size);
	return 0;
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *e;

	errno = 0;
	*out = strtoull(s, &e, 10);
	if (errno || e == s || *e || *s == '-')
		return artifs_error(ARTIFS_EINVAL, "'%s' is not a number", s);
	return 0;
}

static int put_many(artifs_remote *r, const char *prefix, const char *count)
{
	uint64_t n, i;
	int rc = parse_u64(count, &n);
	artifs_buf body = { 0 };

	for (i = 0; !rc && i < n; i++) {
		char key[512];
		int len = snprintf(key, sizeof(key), "%s%05" PRIu64, prefix, i);

		body.len = 0;
		for (uint64_t j = 0; !rc && j < i % 7; j++)
			rc = artifs_buf_put(&body, key, (size_t)len);
		if (!rc)
			rc = artifs_remote_put(r, key, body.ptr, body.len, 0);
	}
	artifs_buf_release(&body);
	return rc;
}

static int run(artifs_remote *r, int argc, char **argv)
{
	const char *cmd = argv[2];
	artifs_buf b = { 0 };
	int rc;

	if (!strcmp(cmd, "get") && argc == 4) {
		rc = artifs_remote_get(r, argv[3], &b);
		if (!rc)
			rc = write_all(b.ptr, b.len);
	} else if (!strcmp(cmd, "range") && argc == 6) {
		uint64_t off, len;

		rc = parse_u64(argv[4], &off);
		if (!rc)
			rc = parse_u64(argv[5], &len);
		if (!rc)
			rc = artifs_buf_grow(&b, (size_t)len);
		if (!rc)
			rc = artifs_remote_get_range(r, argv[3], off, (size_t)len, b.ptr);
		if (!rc)
			rc = write_all(b.ptr, (size_t)len);
	} else if (!strcmp(cmd, "put") && (argc == 4 ||
		(argc == 5 && !strcmp(argv[4], "--exclusive")))) {
		rc = read_stdin(&b);
		if (!rc)
			rc = artifs_remote_put(r, argv[3], b.ptr, b.len, argc == 5);
	} else if (!strcmp(cmd, "del") && argc == 4) {
		rc = artifs_remote_delete(r, argv[3]);
	} else if (!strcmp(cmd, "list") && argc == 4) {
		rc = artifs_remote_list(r, argv[3], print_entry, NULL);
		if (fflush(stdout))
			rc = rc ? rc : artifs_error(-EIO, "cannot write to stdout");
	} else if (!strcmp(cmd, "putmany") && argc == 5) {
		rc = put_many(r, argv[3], argv[4]);
	} else {
		rc = 1;
	}
	artifs_buf_release(&b);
	return rc;
}

int main(int argc, char **argv)
{
	artifs_remote *r = NULL;
	int rc;

	if (argc < 3)
		return usage();
	rc = artifs_remote_open(&r, argv[1], NULL, 0);
	if (!rc) {
		rc = run(r, argc, argv);
		if (rc == 1) {
			artifs_remote_free(r);
			return usage();
		}
	}
	artifs_remote_free(r);
	if (!rc)
		return 0;
	fprintf(stderr, "artifs-remote-tool: error: %s\n", artifs_error_last());
	switch (rc) {
	case ARTIFS_ENOTFOUND:
		return 3;
	case ARTIFS_EEXISTS:
		return 4;
	case ARTIFS_ECORRUPT:
		return 5;
	default:
		return 1;
	}
}
