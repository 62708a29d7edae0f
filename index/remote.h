/*
 * remote.h - a key/value transport to another place that holds a store's
 * objects: a directory (file:///PATH) or an S3-compatible bucket
 * (s3://BUCKET/PREFIX).
 *
 * Keys are relative to the remote's root ("packs/0a1b....pack"): bytes of
 * [A-Za-z0-9._/-], no leading '/', no "..", no empty component.  A handle
 * is used by one thread at a time; transfers that run in parallel open one
 * handle per thread.
 */
#ifndef ARTIFS_REMOTE_H
#define ARTIFS_REMOTE_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

typedef struct artifs_remote artifs_remote;

#define ARTIFS_REMOTE_OPTS_VERSION 1
typedef struct artifs_remote_opts {
	unsigned int version;	/* ARTIFS_REMOTE_OPTS_VERSION */
	/* S3 only; NULL means: from the environment (AWS_ENDPOINT_URL,
	 * AWS_REGION or AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID,
	 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), else the defaults
	 * (https://s3.REGION.amazonaws.com, us-east-1). */
	const char *endpoint;	/* "http://127.0.0.1:9000" */
	const char *region;
	const char *access_key;
	const char *secret_key;
	const char *session_token;
	int path_style;		/* -1 auto (path style for a non-AWS endpoint), 0 virtual host, 1 path */
	int max_retries;	/* on 5xx, throttling and connection errors; 0: default (5) */
	int timeout_s;		/* a request making no progress for this long fails; 0: 30 */
} artifs_remote_opts;

#define ARTIFS_REMOTE_OPTS_INIT { ARTIFS_REMOTE_OPTS_VERSION, NULL, NULL, NULL, NULL, NULL, -1, 0, 0 }

/* Is `url` a remote URL this build understands (file:// or s3://)? */
int artifs_remote_url_valid(const char *url);

/*
 * Open a remote.  Nothing is contacted yet, except that a file:// remote's
 * directory must exist (ARTIFS_ENOTFOUND) unless `create` is set, in which
 * case it is created.  For s3://, `create` is ignored (the bucket must exist).
 */
int artifs_remote_open(artifs_remote **out, const char *url, const artifs_remote_opts *opts,
	int create);
void artifs_remote_free(artifs_remote *r);

/* The URL, for messages (never contains credentials). */
const char *artifs_remote_url(const artifs_remote *r);

/* Whole object into `out` (appended).  ARTIFS_ENOTFOUND if missing. */
int artifs_remote_get(artifs_remote *r, const char *key, artifs_buf *out);

/* Bytes [off, off + len) of an object into dst; fewer bytes than asked is ARTIFS_ECORRUPT. */
int artifs_remote_get_range(artifs_remote *r, const char *key, uint64_t off, size_t len,
	void *dst);

/*
 * Store an object whole.  Readers never see a partial object (a file
 * remote writes a temporary file, syncs and renames; S3 PUT is atomic).
 * `exclusive`: fail with ARTIFS_EEXISTS if the key exists, atomically
 * (link(2) on a file remote; If-None-Match: * on S3, a 412 or 409 answer
 * is ARTIFS_EEXISTS).
 */
int artifs_remote_put(artifs_remote *r, const char *key, const void *data, size_t len,
	int exclusive);

/* Delete; a missing key is not an error. */
int artifs_remote_delete(artifs_remote *r, const char *key);

/*
 * Every key that starts with `prefix` (which ends in '/'), in bytewise
 * order, with its size.  `fn` returning non-zero stops the walk and that
 * value is returned.
 */
int artifs_remote_list(artifs_remote *r, const char *prefix,
	int (*fn)(const char *key, uint64_t size, void *ctx), void *ctx);

/* Requests made by this handle (for progress and the benchmarks). */
uint64_t artifs_remote_requests(const artifs_remote *r);

/* Backends (remote_file.c, remote_s3.c); artifs_remote_open picks one. */
struct artifs_remote_ops {
	int (*get)(artifs_remote *r, const char *key, artifs_buf *out);
	int (*get_range)(artifs_remote *r, const char *key, uint64_t off, size_t len, void *dst);
	int (*put)(artifs_remote *r, const char *key, const void *data, size_t len, int exclusive);
	int (*del)(artifs_remote *r, const char *key);
	int (*list)(artifs_remote *r, const char *prefix,
		int (*fn)(const char *key, uint64_t size, void *ctx), void *ctx);
	void (*free)(artifs_remote *r);
};

struct artifs_remote {
	const struct artifs_remote_ops *ops;
	char *url;		/* as given, credentials never included */
	uint64_t requests;
	void *impl;		/* the backend's state */
};

int artifs_remote_file_open(artifs_remote *r, const char *path, int create);
int artifs_remote_s3_open(artifs_remote *r, const char *bucket, const char *prefix,
	const artifs_remote_opts *opts);

#endif
