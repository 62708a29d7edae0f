/*
 * remote.c - open a remote by URL and count its requests; the backends
 * (remote_file.c, remote_s3.c) do the transfers.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "remote.h"

int artifs_remote_url_valid(const char *url)
{
	if (!url)
		return 0;
	if (!strncmp(url, "file:///", 8))
		return url[8] != '\0';
	if (!strncmp(url, "s3://", 5)) {
		const char *b = url + 5;
		size_t n = strcspn(b, "/");
		return n >= 3 && n <= 63;
	}
	return 0;
}

static int key_valid(const char *key)
{
	const char *p = key;

	if (!*key || *key == '/')
		return 0;
	for (; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			c == '.' || c == '_' || c == '-' || c == '/' || c == '+' || c == '=' ||
			c == '~'))
			return 0;
		if (c == '/' && (p[1] == '/' || p[1] == '\0'))
			return p[1] == '\0' ? 1 : 0;	/* a trailing '/' is a list prefix */
	}
	for (p = key; (p = strstr(p, "..")); p += 2)
		if ((p == key || p[-1] == '/') && (p[2] == '/' || p[2] == '\0'))
			return 0;
	return 1;
}

#define CHECK_KEY(k) do { \
	if (!key_valid(k)) \
		return artifs_error(ARTIFS_EINVAL, "invalid remote key '%s'", (k)); \
} while (0)

int artifs_remote_open(artifs_remote **out, const char *url, const artifs_remote_opts *opts,
	int create)
{
	artifs_remote *r;
	artifs_remote_opts dflt = ARTIFS_REMOTE_OPTS_INIT;
	int rc;

	*out = NULL;
	if (!opts)
		opts = &dflt;
	if (opts->version != ARTIFS_REMOTE_OPTS_VERSION)
		return artifs_error(ARTIFS_EINVAL, "remote options of unknown version %u",
			opts->version);
	if (!artifs_remote_url_valid(url))
		return artifs_error(ARTIFS_EINVAL,
			"'%s' is not a remote URL (file:///PATH or s3://BUCKET[/PREFIX])",
			url ? url : "");
	r = calloc(1, sizeof(*r));
	if (!r || !(r->url = strdup(url))) {
		free(r);
		return -ENOMEM;
	}
	if (!strncmp(url, "file://", 7)) {
		rc = artifs_remote_file_open(r, url + 7, create);
	} else {
		const char *b = url + 5, *slash = strchr(b, '/');
		size_t blen = slash ? (size_t)(slash - b) : strlen(b);
		char *bucket = strndup(b, blen), *prefix;
		const char *pfx = slash ? slash + 1 : "";
		size_t plen = strlen(pfx);

		while (plen && pfx[plen - 1] == '/')
			plen--;
		prefix = strndup(pfx, plen);
		if (!bucket || !prefix)
			rc = -ENOMEM;
		else if (plen && !key_valid(prefix))
			rc = artifs_error(ARTIFS_EINVAL, "invalid key prefix '%s' in '%s'",
				prefix, url);
		else
			rc = artifs_remote_s3_open(r, bucket, prefix, opts);
		free(bucket);
		free(prefix);
	}
	if (rc) {
		free(r->url);
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void artifs_remote_free(artifs_remote *r)
{
	if (!r)
		return;
	if (r->ops && r->ops->free)
		r->ops->free(r);
	free(r->url);
	free(r);
}

const char *artifs_remote_url(const artifs_remote *r)
{
	return r->url;
}

uint64_t artifs_remote_requests(const artifs_remote *r)
{
	return r->requests;
}

int artifs_remote_get(artifs_remote *r, const char *key, artifs_buf *out)
{
	CHECK_KEY(key);
	r->requests++;
	return r->ops->get(r, key, out);
}

int artifs_remote_get_range(artifs_remote *r, const char *key, uint64_t off, size_t len,
	void *dst)
{
	CHECK_KEY(key);
	if (!len)
		return 0;
	r->requests++;
	return r->ops->get_range(r, key, off, len, dst);
}

int artifs_remote_put(artifs_remote *r, const char *key, const void *data, size_t len,
	int exclusive)
{
	CHECK_KEY(key);
	r->requests++;
	return r->ops->put(r, key, data, len, exclusive);
}

int artifs_remote_delete(artifs_remote *r, const char *key)
{
	CHECK_KEY(key);
	r->requests++;
	return r->ops->del(r, key);
}

int artifs_remote_list(artifs_remote *r, const char *prefix,
	int (*fn)(const char *key, uint64_t size, void *ctx), void *ctx)
{
	size_t n = strlen(prefix);

	if (n && (prefix[n - 1] != '/' || !key_valid(prefix)))
		return artifs_error(ARTIFS_EINVAL, "invalid remote list prefix '%s'", prefix);
	r->requests++;
	return r->ops->list(r, prefix, fn, ctx);
}
