/*
 * remote_s3.c - the S3 backend of the remote transport.
 *
 * One libcurl easy handle per remote (its connection is kept alive between
 * requests); libcurl signs every request itself (CURLOPT_AWS_SIGV4).  What
 * the curl of Debian bookworm (7.88) does when signing, found by testing
 * against a SigV4 verifier, and what this file does about it:
 *
 *  - It does not add x-amz-content-sha256, which S3 requires on every
 *    request.  When the request carries that header, curl signs it and
 *    uses its value as the payload hash.  We send UNSIGNED-PAYLOAD (the
 *    body is not hashed, so a pack is not read twice; https protects it in
 *    transit).
 *  - It signs every CURLOPT_HTTPHEADER entry, also "Name:" entries that only
 *    remove a header curl would add and are never sent, so the server
 *    computes another signature.  No such entries here.
 *  - It takes the path and the query string as they are in the URL as the
 *    canonical URI and query.  So keys are encoded once, RFC 3986 style
 *    ('/' kept, upper-case hex), and the query parameters are written
 *    already sorted and encoded.
 *
 * Tests (and impatient users) may set ARTIFS_S3_MAX_RETRIES and
 * ARTIFS_S3_TIMEOUT (seconds without progress) when the options leave
 * them at 0.
 *
 * Errors never carry credentials: they are given to curl as user name and
 * password (never in a URL) and CURLOPT_VERBOSE stays off.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "error.h"
#include "remote.h"

/* 7.86 signs a given x-amz-content-sha256 and uses it as the payload hash. */
#if LIBCURL_VERSION_NUM < 0x075600
#error "the S3 remote needs libcurl 7.86 or later"
#endif

#define S3_DEFAULT_REGION "us-east-1"
#define S3_DEFAULT_RETRIES 5
#define S3_DEFAULT_TIMEOUT 30
#define S3_CONNECT_TIMEOUT 10L
#define S3_BACKOFF_BASE_MS 100L
#define S3_BACKOFF_CAP_MS 5000L
#define S3_ERRBODY_MAX (64 * 1024)

struct s3 {
	CURL *curl;
	char *base;		/* "http://h:9000/BUCKET" (path style) or "https://BUCKET.h" */
	int vhost;
	char *prefix;		/* "" or "PREFIX/" */
	char *sigv4;		/* "aws:amz:REGION:s3" */
	char *access_key, *secret_key;
	char *token_hdr;	/* "x-amz-security-token: ..." or NULL */
	int max_retries;
	long timeout_s;
	unsigned int seed;	/* backoff jitter */
	char errbuf[CURL_ERROR_SIZE];
};

/* One request and what came back; reset before each attempt. */
struct s3_req {
	const char *method;	/* for messages; GET unless upload/del */
	const char *key;	/* relative to the remote's root; NULL: the bucket */
	const char *name;	/* for messages: the key, or the prefix listed */
	char *url;
	struct curl_slist *hdrs;
	int upload, del;
	const uint8_t *body;
	size_t body_len, body_pos;
	artifs_buf *out;	/* GET: the body is appended here */
	size_t out_start;
	uint8_t *dst;		/* or written here, at most dst_len bytes */
	size_t dst_len, dst_got;
	int overflow, nomem;
	CURL *curl;
	long status;
	int attempts, retried;
	artifs_buf err;		/* the body of an answer that is not 2xx */
	char content_range[96];
};

static pthread_once_t s3_once = PTHREAD_ONCE_INIT;
static CURLcode s3_global_rc;

static void s3_global_init(void)
{
	s3_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static const char *env_nonempty(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

static const char *pick(const char *opt, const char *env1, const char *env2, const char *dflt)
{
	const char *v;

	if (opt && *opt)
		return opt;
	if (env1 && (v = env_nonempty(env1)))
		return v;
	if (env2 && (v = env_nonempty(env2)))
		return v;
	return dflt;
}

/* Append s percent-encoded (RFC 3986: unreserved kept; '/' too if keep_slash). */
static int url_encode(artifs_buf *b, const char *s, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc = 0;

	for (; *s && !rc; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '.' || c == '_' || c == '~' || (c == '/' && keep_slash)) {
			rc = artifs_buf_put(b, &c, 1);
		} else {
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };

			rc = artifs_buf_put(b, e, 3);
		}
	}
	return rc;
}

static int buf_str(artifs_buf *b, const char *s)
{
	return artifs_buf_put(b, s, strlen(s));
}

/* NUL-terminate and hand over the buffer's string (NULL when out of memory). */
static char *buf_take(artifs_buf *b, int rc)
{
	char *s;

	if (rc || artifs_buf_put(b, "", 1)) {
		artifs_buf_release(b);
		return NULL;
	}
	s = (char *)b->ptr;
	b->ptr = NULL;
	b->len = b->cap = 0;
	return s;
}

/* URL of an object (key relative to the remote root) or, key NULL, of the bucket. */
static char *s3_url(const struct s3 *s, const char *key, const char *query)
{
	artifs_buf b = { 0 };
	int rc = buf_str(&b, s->base);

	if (!rc && key) {
		rc = buf_str(&b, "/");
		if (!rc)
			rc = url_encode(&b, s->prefix, 1);
		if (!rc)
			rc = url_encode(&b, key, 1);
	} else if (!rc && s->vhost) {
		rc = buf_str(&b, "/");
	}
	if (!rc && query) {
		rc = buf_str(&b, "?");
		if (!rc)
			rc = buf_str(&b, query);
	}
	return buf_take(&b, rc);
}

/* ---- XML: the few tags of ListObjectsV2 and of error answers ---- */

static int xml_put_utf8(artifs_buf *b, unsigned long cp)
{
	uint8_t u[4];
	size_t n;

	if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	if (cp < 0x80) {
		u[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (uint8_t)(0xc0 | cp >> 6);
		u[1] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (uint8_t)(0xe0 | cp >> 12);
		u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (uint8_t)(0xf0 | cp >> 18);
		u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (uint8_t)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return artifs_buf_put(b, u, n) ? -2 : 0;
}

/*
 * Decode the text [p, end) into a new NUL-terminated string: the five
 * predefined entities and numeric references.  NULL if malformed (or out
 * of memory: *nomem set).
 */
static char *xml_text(const char *p, const char *end, int *nomem)
{
	static const struct { const char *name; char c; } ents[] = {
		{ "amp;", '&' }, { "lt;", '<' }, { "gt;", '>' }, { "quot;", '"' }, { "apos;", '\'' },
	};
	artifs_buf b = { 0 };
	int rc = 0;

	while (p < end && !rc) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		size_t i;

		if (!amp) {
			rc = artifs_buf_put(&b, p, (size_t)(end - p));
			break;
		}
		rc = artifs_buf_put(&b, p, (size_t)(amp - p));
		p = amp + 1;
		if (rc)
			break;
		if (p < end && *p == '#') {
			int base = 10;
			unsigned long cp = 0;
			const char *d;

			p++;
			if (p < end && (*p == 'x' || *p == 'X')) {
				base = 16;
				p++;
			}
			for (d = p; p < end && *p != ';'; p++) {
				int v;

				if (*p >= '0' && *p <= '9')
					v = *p - '0';
				else if (base == 16 && *p >= 'a' && *p <= 'f')
					v = *p - 'a' + 10;
				else if (base == 16 && *p >= 'A' && *p <= 'F')
					v = *p - 'A' + 10;
				else
					break;
				cp = cp * (unsigned long)base + (unsigned long)v;
				if (cp > 0x10ffff)
					break;
			}
			if (p == d || p >= end || *p != ';') {
				rc = -1;
				break;
			}
			p++;
			rc = xml_put_utf8(&b, cp);
			continue;
		}
		for (i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
			size_t n = strlen(ents[i].name);

			if ((size_t)(end - p) >= n && !memcmp(p, ents[i].name, n)) {
				rc = artifs_buf_put(&b, &ents[i].c, 1);
				p += n;
				break;
			}
		}
		if (i == sizeof(ents) / sizeof(ents[0]))
			rc = -1;
	}
	if (rc == -1) {
		artifs_buf_release(&b);
		return NULL;
	}
	if (rc)
		*nomem = 1;
	return buf_take(&b, rc);
}

/*
 * Find <tag>text</tag> in [p, end): the text's bounds, and the end of the
 * element in *next.  Text never holds a raw '<' (it is escaped), so a plain
 * search cannot match inside a value.  Returns 0 when absent.
 */
static int xml_find(const char *p, const char *end, const char *tag,
	const char **t0, const char **t1, const char **next)
{
	char open[64], close[64];
	size_t no, nc;
	const char *a, *b;

	no = (size_t)snprintf(open, sizeof(open), "<%s>", tag);
	nc = (size_t)snprintf(close, sizeof(close), "</%s>", tag);
	a = memmem(p, (size_t)(end - p), open, no);
	if (!a)
		return 0;
	a += no;
	b = memmem(a, (size_t)(end - a), close, nc);
	if (!b)
		return 0;
	*t0 = a;
	*t1 = b;
	if (next)
		*next = b + nc;
	return 1;
}

/* S3's <Code> and <Message> of an error answer, "" when there is none. */
static void s3_err_fields(const struct s3_req *q, char *code, size_t ncode, char *msg,
	size_t nmsg)
{
	const char *p = (const char *)q->err.ptr, *end = p + q->err.len, *t0, *t1;
	char *s;
	int nomem = 0;

	code[0] = msg[0] = '\0';
	if (!q->err.len)
		return;
	if (xml_find(p, end, "Code", &t0, &t1, NULL) && (s = xml_text(t0, t1, &nomem))) {
		snprintf(code, ncode, "%s", s);
		free(s);
	}
	if (xml_find(p, end, "Message", &t0, &t1, NULL) && (s = xml_text(t0, t1, &nomem))) {
		snprintf(msg, nmsg, "%s", s);
		free(s);
	}
}

/* ---- one request, with retries ---- */

static size_t on_write(char *data, size_t size, size_t n, void *arg)
{
	struct s3_req *q = arg;
	size_t len = size * n;

	curl_easy_getinfo(q->curl, CURLINFO_RESPONSE_CODE, &q->status);
	if (q->status < 200 || q->status >= 300) {
		size_t room = S3_ERRBODY_MAX - q->err.len;

		if (artifs_buf_put(&q->err, data, len < room ? len : room))
			goto nomem;
		return len;
	}
	if (q->dst) {
		if (len > q->dst_len - q->dst_got) {
			q->overflow = 1;
			return 0;	/* curl stops: CURLE_WRITE_ERROR */
		}
		memcpy(q->dst + q->dst_got, data, len);
		q->dst_got += len;
	} else if (q->out) {
		if (q->out->len == q->out_start) {
			curl_off_t cl = -1;

			/* one allocation for a whole object (a pack is tens of MiB) */
			curl_easy_getinfo(q->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
			if (cl > 0 && (uint64_t)cl < SIZE_MAX / 2 &&
				artifs_buf_grow(q->out, (size_t)cl))
				goto nomem;
		}
		if (artifs_buf_put(q->out, data, len))
			goto nomem;
	}
	return len;
nomem:
	q->nomem = 1;
	return 0;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
	struct s3_req *q = arg;
	size_t len = size * n;
	static const char cr[] = "content-range:";

	if (len >= 5 && !memcmp(data, "HTTP/", 5)) {
		q->content_range[0] = '\0';
	} else if (len > sizeof(cr) - 1 && !strncasecmp(data, cr, sizeof(cr) - 1)) {
		const char *v = data + sizeof(cr) - 1, *e = data + len;

		while (v < e && (*v == ' ' || *v == '\t'))
			v++;
		while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
			e--;
		snprintf(q->content_range, sizeof(q->content_range), "%.*s", (int)(e - v), v);
	}
	return len;
}

static size_t on_read(char *buf, size_t size, size_t n, void *arg)
{
	struct s3_req *q = arg;
	size_t len = size * n, left = q->body_len - q->body_pos;

	if (len > left)
		len = left;
	if (len)
		memcpy(buf, q->body + q->body_pos, len);
	q->body_pos += len;
	return len;
}

/* curl rewinds the body when it resends on a fresh connection. */
static int on_seek(void *arg, curl_off_t off, int origin)
{
	struct s3_req *q = arg;

	if (origin != SEEK_SET || off < 0 || (uint64_t)off > q->body_len)
		return CURL_SEEKFUNC_FAIL;
	q->body_pos = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

/* Failures where trying again may help: the network, the server's load. */
static int s3_retryable_curl(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_WEIRD_SERVER_REPLY:
		return 1;
	default:
		return 0;
	}
}

static int s3_retryable_status(const struct s3_req *q)
{
	char code[64], msg[8];

	switch (q->status) {
	case 429: case 500: case 502: case 503: case 504:
		return 1;
	case 400:
		s3_err_fields(q, code, sizeof(code), msg, sizeof(msg));
		return !strcmp(code, "RequestTimeout");
	default:
		return 0;
	}
}

/* Exponential backoff with jitter: a delay in [d/2, d], d = 100 ms * 2^attempt, at most 5 s. */
static void s3_backoff(struct s3 *s, int attempt)
{
	long ms = S3_BACKOFF_CAP_MS;
	struct timespec ts;

	if (attempt < 16 && (S3_BACKOFF_BASE_MS << attempt) < S3_BACKOFF_CAP_MS)
		ms = S3_BACKOFF_BASE_MS << attempt;
	ms = ms / 2 + (long)(rand_r(&s->seed) % (unsigned int)(ms / 2 + 1));
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static CURLcode s3_setup(struct s3 *s, struct s3_req *q)
{
	CURL *c = s->curl;
	CURLcode cc = CURLE_OK;

	/* reset keeps the live connection: only options go */
	curl_easy_reset(c);
#define SET(opt, val) do { if (cc == CURLE_OK) cc = curl_easy_setopt(c, opt, val); } while (0)
	SET(CURLOPT_URL, q->url);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_ERRORBUFFER, s->errbuf);
	SET(CURLOPT_USERAGENT, "artifs");
	SET(CURLOPT_AWS_SIGV4, s->sigv4);
	SET(CURLOPT_USERNAME, s->access_key);
	SET(CURLOPT_PASSWORD, s->secret_key);
	SET(CURLOPT_HTTPHEADER, q->hdrs);
	SET(CURLOPT_CONNECTTIMEOUT, S3_CONNECT_TIMEOUT);
	SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
	SET(CURLOPT_LOW_SPEED_TIME, s->timeout_s);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_WRITEFUNCTION, on_write);
	SET(CURLOPT_WRITEDATA, q);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, q);
	if (q->upload) {
		SET(CURLOPT_UPLOAD, 1L);
		SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)q->body_len);
		SET(CURLOPT_READFUNCTION, on_read);
		SET(CURLOPT_READDATA, q);
		SET(CURLOPT_SEEKFUNCTION, on_seek);
		SET(CURLOPT_SEEKDATA, q);
	} else if (q->del) {
		SET(CURLOPT_CUSTOMREQUEST, "DELETE");
	}
#undef SET
	return cc;
}

/*
 * Run q until it gets an answer that is not worth retrying; 0 with
 * q->status set, or an error: connection failures after the last retry
 * (-EIO), out of memory, a range answer longer than asked (ECORRUPT).
 * A retryable HTTP status after the last retry returns 0 too; the caller
 * turns it into an error.
 */
static int s3_perform(artifs_remote *r, struct s3_req *q)
{
	struct s3 *s = r->impl;
	CURLcode cc;

	q->curl = s->curl;
	for (q->attempts = 1;; q->attempts++) {
		if (q->out)
			q->out->len = q->out_start;
		q->dst_got = 0;
		q->body_pos = 0;
		q->err.len = 0;
		q->status = 0;
		q->overflow = q->nomem = 0;
		q->content_range[0] = '\0';
		s->errbuf[0] = '\0';

		cc = s3_setup(s, q);
		if (cc != CURLE_OK)
			return artifs_error(-EIO, "s3: cannot set up a request: %s",
				curl_easy_strerror(cc));
		cc = curl_easy_perform(s->curl);
		if (q->nomem)
			return artifs_error(-ENOMEM, "s3: out of memory reading '%s' from %s",
				q->name, r->url);
		if (q->overflow)
			return artifs_error(ARTIFS_ECORRUPT,
				"s3: %s '%s' in %s: the answer has more than the %zu bytes asked for",
				q->method, q->name, r->url, q->dst_len);
		if (cc == CURLE_OK) {
			curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &q->status);
			if (!s3_retryable_status(q) || q->attempts > s->max_retries)
				return 0;
		} else if (!s3_retryable_curl(cc) || q->attempts > s->max_retries) {
			return artifs_error(-EIO, "s3: %s '%s' in %s failed after %d attempt%s: %s",
				q->method, q->name, r->url, q->attempts, q->attempts > 1 ? "s" : "",
				s->errbuf[0] ? s->errbuf : curl_easy_strerror(cc));
		}
		q->retried = 1;
		s3_backoff(s, q->attempts - 1);
	}
}

static void s3_req_release(struct s3_req *q)
{
	free(q->url);
	curl_slist_free_all(q->hdrs);
	artifs_buf_release(&q->err);
}

static int s3_hdr(struct s3_req *q, const char *h)
{
	struct curl_slist *l = curl_slist_append(q->hdrs, h);

	if (!l)
		return -ENOMEM;
	q->hdrs = l;
	return 0;
}

/* Build the URL and the headers every request carries. */
static int s3_req_init(artifs_remote *r, struct s3_req *q, const char *method, const char *key,
	const char *query)
{
	struct s3 *s = r->impl;

	q->method = method;
	q->key = key;
	q->name = key ? key : "";
	q->url = s3_url(s, key, query);
	if (!q->url || s3_hdr(q, "x-amz-content-sha256: UNSIGNED-PAYLOAD") ||
		(s->token_hdr && s3_hdr(q, s->token_hdr)))
		return artifs_error(-ENOMEM, "out of memory");
	return 0;
}

/* The error for an answer the caller did not expect. */
static int s3_status_error(artifs_remote *r, const struct s3_req *q)
{
	const struct s3 *s = r->impl;
	char code[128], msg[512];
	const char *key = q->name;

	s3_err_fields(q, code, sizeof(code), msg, sizeof(msg));
	if (q->status == 404 && !strcmp(code, "NoSuchBucket"))
		return artifs_error(ARTIFS_EINVAL, "s3: no bucket for %s at '%s' (404 NoSuchBucket)",
			r->url, s->base);
	if (q->status == 404 && q->key)
		return artifs_error(ARTIFS_ENOTFOUND, "s3: no object '%s' in %s (404%s%s)",
			key, r->url, code[0] ? " " : "", code);
	if (q->status == 403)
		return artifs_error(ARTIFS_EINVAL,
			"s3: %s '%s' in %s: access denied (403%s%s%s%s); check the credentials "
			"(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and the region",
			q->method, key, r->url, code[0] ? " " : "", code, msg[0] ? ": " : "", msg);
	if (q->status >= 500 || q->status == 429 || s3_retryable_status(q))
		return artifs_error(-EIO, "s3: %s '%s' in %s: server error %ld %s%s%s (%d attempt%s)",
			q->method, key, r->url, q->status, code, msg[0] ? ": " : "", msg,
			q->attempts, q->attempts > 1 ? "s" : "");
	return artifs_error(ARTIFS_EINVAL, "s3: %s '%s' in %s: HTTP %ld %s%s%s",
		q->method, key, r->url, q->status, code, msg[0] ? ": " : "", msg);
}

/* ---- the operations ---- */

static int s3_get(artifs_remote *r, const char *key, artifs_buf *out)
{
	struct s3_req q = { 0 };
	int rc;

	q.out = out;
	q.out_start = out->len;
	rc = s3_req_init(r, &q, "GET", key, NULL);
	if (!rc)
		rc = s3_perform(r, &q);
	if (!rc && q.status != 200)
		rc = s3_status_error(r, &q);
	if (rc)
		out->len = q.out_start;
	s3_req_release(&q);
	return rc;
}

static int s3_get_range(artifs_remote *r, const char *key, uint64_t off, size_t len, void *dst)
{
	struct s3_req q = { 0 };
	char range[80], want[64];
	uint64_t last;
	int rc;

	if (!len)
		return 0;
	if ((uint64_t)len - 1 > UINT64_MAX - off)
		return artifs_error(ARTIFS_EINVAL, "s3: range %" PRIu64 "+%zu of '%s' overflows",
			off, len, key);
	last = off + len - 1;
	snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-%" PRIu64, off, last);
	q.dst = dst;
	q.dst_len = len;
	rc = s3_req_init(r, &q, "GET", key, NULL);
	if (!rc && s3_hdr(&q, range))
		rc = artifs_error(-ENOMEM, "out of memory");
	if (!rc)
		rc = s3_perform(r, &q);
	if (rc)
		goto done;
	snprintf(want, sizeof(want), "bytes %" PRIu64 "-%" PRIu64 "/", off, last);
	if (q.status == 206) {
		if (strncmp(q.content_range, want, strlen(want)) || q.dst_got != len)
			rc = artifs_error(ARTIFS_ECORRUPT,
				"s3: object '%s' in %s: asked for bytes %" PRIu64 "-%" PRIu64
				", got %zu bytes (Content-Range '%s')", key, r->url, off, last,
				q.dst_got, q.content_range);
	} else if (q.status == 200) {
		/* the server ignored the range: fine if that is the whole object */
		if (off != 0 || q.dst_got != len)
			rc = artifs_error(ARTIFS_ECORRUPT,
				"s3: object '%s' in %s: asked for bytes %" PRIu64 "-%" PRIu64
				", got the whole object", key, r->url, off, last);
	} else if (q.status == 416) {
		rc = artifs_error(ARTIFS_ECORRUPT,
			"s3: object '%s' in %s is shorter than %" PRIu64 " bytes", key, r->url,
			last + 1);
	} else {
		rc = s3_status_error(r, &q);
	}
done:
	s3_req_release(&q);
	return rc;
}

/* After an ambiguous exclusive PUT: is what is stored what we sent? */
static int s3_same(artifs_remote *r, const char *key, const void *data, size_t len)
{
	artifs_buf got = { 0 };
	int rc = s3_get(r, key, &got);

	if (!rc && (got.len != len || (len && memcmp(got.ptr, data, len))))
		rc = artifs_error(ARTIFS_EEXISTS, "s3: object '%s' already exists in %s",
			key, r->url);
	else if (rc == ARTIFS_ENOTFOUND)
		rc = artifs_error(-EIO, "s3: PUT '%s' in %s: the server reported the object "
			"as existing, but it is gone; try again", key, r->url);
	artifs_buf_release(&got);
	return rc;
}

static int s3_put(artifs_remote *r, const char *key, const void *data, size_t len, int exclusive)
{
	struct s3_req q = { 0 };
	int rc;

	q.upload = 1;
	q.body = data;
	q.body_len = len;
	rc = s3_req_init(r, &q, "PUT", key, NULL);
	if (!rc && exclusive && s3_hdr(&q, "If-None-Match: *"))
		rc = artifs_error(-ENOMEM, "out of memory");
	if (!rc)
		rc = s3_perform(r, &q);
	if (rc)
		goto done;
	if (q.status == 200 || q.status == 201 || q.status == 204)
		goto done;
	if (exclusive && (q.status == 412 || q.status == 409)) {
		/*
		 * After a failed attempt the object may be ours: that attempt
		 * may have been stored before its answer was lost.
		 */
		if (q.retried)
			rc = s3_same(r, key, data, len);
		else
			rc = artifs_error(ARTIFS_EEXISTS, "s3: object '%s' already exists in %s",
				key, r->url);
		goto done;
	}
	rc = s3_status_error(r, &q);
done:
	s3_req_release(&q);
	return rc;
}

static int s3_del(artifs_remote *r, const char *key)
{
	struct s3_req q = { 0 };
	char code[64], msg[8];
	int rc;

	q.del = 1;
	rc = s3_req_init(r, &q, "DELETE", key, NULL);
	if (!rc)
		rc = s3_perform(r, &q);
	if (!rc && q.status != 200 && q.status != 204) {
		s3_err_fields(&q, code, sizeof(code), msg, sizeof(msg));
		if (q.status != 404 || !strcmp(code, "NoSuchBucket"))
			rc = s3_status_error(r, &q);
	}
	s3_req_release(&q);
	return rc;
}

/* "continuation-token=T&list-type=2&prefix=P": sorted, as the signature needs. */
static char *s3_list_query(const char *prefix, const char *token)
{
	artifs_buf b = { 0 };
	int rc = 0;

	if (token) {
		rc = buf_str(&b, "continuation-token=");
		if (!rc)
			rc = url_encode(&b, token, 0);
		if (!rc)
			rc = buf_str(&b, "&");
	}
	if (!rc)
		rc = buf_str(&b, "list-type=2&prefix=");
	if (!rc)
		rc = url_encode(&b, prefix, 0);
	return buf_take(&b, rc);
}

/*
 * Hand the <Contents> of one page to fn; sets *token to the next page's or
 * NULL.  *last is the previous key (full, owned), for the order check.
 */
static int s3_list_page(artifs_remote *r, const artifs_buf *page, char **token, char **last,
	int (*fn)(const char *key, uint64_t size, void *ctx), void *ctx)
{
	const struct s3 *s = r->impl;
	const char *p = (const char *)page->ptr, *end = p + page->len, *t0, *t1, *c0, *c1;
	size_t plen = strlen(s->prefix);
	int nomem = 0, truncated = 0, rc = 0;

	*token = NULL;
	if (!memmem(p, page->len, "<ListBucketResult", 17))
		return artifs_error(ARTIFS_ECORRUPT, "s3: listing %s: not a ListBucketResult",
			r->url);
	if (xml_find(p, end, "IsTruncated", &t0, &t1, NULL))
		truncated = (size_t)(t1 - t0) == 4 && !memcmp(t0, "true", 4);
	while (!rc && xml_find(p, end, "Contents", &c0, &c1, &p)) {
		char *key = NULL, *num = NULL, *e;
		unsigned long long size;

		if (!xml_find(c0, c1, "Key", &t0, &t1, NULL) || !(key = xml_text(t0, t1, &nomem)) ||
			!xml_find(c0, c1, "Size", &t0, &t1, NULL) || !(num = xml_text(t0, t1, &nomem)))
			goto bad;
		errno = 0;
		size = strtoull(num, &e, 10);
		if (errno || e == num || *e || num[0] == '-')
			goto bad;
		if (strncmp(key, s->prefix, plen)) {
			rc = artifs_error(ARTIFS_ECORRUPT,
				"s3: listing %s returned '%s', outside the prefix", r->url, key);
		} else if (*last && strcmp(key, *last) <= 0) {
			/* callers merge listings: the order is part of the contract */
			rc = artifs_error(ARTIFS_ECORRUPT,
				"s3: listing %s returned '%s' after '%s', not in bytewise order",
				r->url, key, *last);
		} else {
			rc = fn(key + plen, size, ctx);
		}
		if (!rc) {
			free(*last);
			*last = key;
			key = NULL;
		}
		free(key);
		free(num);
		continue;
bad:
		free(key);
		free(num);
		if (nomem)
			return artifs_error(-ENOMEM, "out of memory");
		return artifs_error(ARTIFS_ECORRUPT, "s3: listing %s: malformed <Contents>",
			r->url);
	}
	if (rc || !truncated)
		return rc;
	if (!xml_find((const char *)page->ptr, end, "NextContinuationToken", &t0, &t1, NULL) ||
		t0 == t1 || !(*token = xml_text(t0, t1, &nomem))) {
		if (nomem)
			return artifs_error(-ENOMEM, "out of memory");
		return artifs_error(ARTIFS_ECORRUPT,
			"s3: listing %s: truncated page without a continuation token", r->url);
	}
	return 0;
}

static int s3_list(artifs_remote *r, const char *prefix,
	int (*fn)(const char *key, uint64_t size, void *ctx), void *ctx)
{
	struct s3 *s = r->impl;
	artifs_buf page = { 0 };
	char *full = artifs_strfmt("%s%s", s->prefix, prefix), *token = NULL, *last = NULL;
	int rc = 0;

	if (!full)
		return artifs_error(-ENOMEM, "out of memory");
	do {
		struct s3_req q = { 0 };
		char *query = s3_list_query(full, token);

		free(token);
		token = NULL;
		if (!query) {
			rc = artifs_error(-ENOMEM, "out of memory");
			break;
		}
		page.len = 0;
		q.out = &page;
		rc = s3_req_init(r, &q, "LIST", NULL, query);
		q.name = prefix;
		free(query);
		if (!rc)
			rc = s3_perform(r, &q);
		if (!rc && q.status != 200)
			rc = s3_status_error(r, &q);
		s3_req_release(&q);
		if (!rc)
			rc = s3_list_page(r, &page, &token, &last, fn, ctx);
	} while (!rc && token);
	free(token);
	free(last);
	free(full);
	artifs_buf_release(&page);
	return rc;
}

static void s3_free(artifs_remote *r)
{
	struct s3 *s = r->impl;

	if (!s)
		return;
	if (s->curl)
		curl_easy_cleanup(s->curl);
	free(s->base);
	free(s->prefix);
	free(s->sigv4);
	free(s->access_key);
	if (s->secret_key) {
		explicit_bzero(s->secret_key, strlen(s->secret_key));
		free(s->secret_key);
	}
	if (s->token_hdr) {
		explicit_bzero(s->token_hdr, strlen(s->token_hdr));
		free(s->token_hdr);
	}
	free(s);
	r->impl = NULL;
}

static const struct artifs_remote_ops s3_ops = {
	.get = s3_get,
	.get_range = s3_get_range,
	.put = s3_put,
	.del = s3_del,
	.list = s3_list,
	.free = s3_free,
};

/* Bucket names as S3 allows them; anything else would change the URL's meaning. */
static int bucket_valid(const char *b)
{
	size_t n = strlen(b);

	if (n < 3 || n > 63)
		return 0;
	for (; *b; b++)
		if (!((*b >= 'a' && *b <= 'z') || (*b >= '0' && *b <= '9') || *b == '.' ||
			*b == '-' || *b == '_'))
			return 0;
	return 1;
}

/* Is the endpoint's host AWS's (there virtual-host addressing is the norm)? */
static int host_is_aws(const char *host, size_t n)
{
	static const char *const sfx[] = { ".amazonaws.com", ".amazonaws.com.cn" };
	const char *colon = memchr(host, ':', n);
	size_t i;

	if (host[0] == '[')
		return 0;
	if (colon)
		n = (size_t)(colon - host);
	for (i = 0; i < sizeof(sfx) / sizeof(sfx[0]); i++) {
		size_t m = strlen(sfx[i]);

		if (n > m && !strncasecmp(host + n - m, sfx[i], m))
			return 1;
	}
	return 0;
}

static int s3_env_int(const char *name, int *out)
{
	const char *v = env_nonempty(name);
	char *e;
	long n;

	if (!v)
		return 0;
	errno = 0;
	n = strtol(v, &e, 10);
	if (errno || *e || n < 0 || n > 1000)
		return artifs_error(ARTIFS_EINVAL, "%s='%s' is not a number from 0 to 1000",
			name, v);
	*out = (int)n;
	return 0;
}

int artifs_remote_s3_open(artifs_remote *r, const char *bucket, const char *prefix,
	const artifs_remote_opts *opts)
{
	artifs_remote_opts dflt = ARTIFS_REMOTE_OPTS_INIT;
	struct s3 *s = NULL;
	const char *region, *ak, *sk, *tok, *ep, *host, *rest;
	char *endpoint = NULL;
	size_t elen, hlen;
	int path_style, rc = 0;

	if (!opts)
		opts = &dflt;
	if (!bucket_valid(bucket))
		return artifs_error(ARTIFS_EINVAL, "s3: invalid bucket name '%s'", bucket);
	pthread_once(&s3_once, s3_global_init);
	if (s3_global_rc != CURLE_OK)
		return artifs_error(-EIO, "s3: cannot initialise libcurl: %s",
			curl_easy_strerror(s3_global_rc));

	region = pick(opts->region, "AWS_REGION", "AWS_DEFAULT_REGION", S3_DEFAULT_REGION);
	ak = pick(opts->access_key, "AWS_ACCESS_KEY_ID", NULL, NULL);
	sk = pick(opts->secret_key, "AWS_SECRET_ACCESS_KEY", NULL, NULL);
	tok = pick(opts->session_token, "AWS_SESSION_TOKEN", NULL, NULL);
	ep = pick(opts->endpoint, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", NULL);
	if (!ak || !sk)
		return artifs_error(ARTIFS_EINVAL,
			"s3: no credentials for %s; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
			r->url ? r->url : bucket);
	if (strpbrk(region, ":/\r\n"))
		return artifs_error(ARTIFS_EINVAL, "s3: invalid region '%s'", region);
	if (tok && strpbrk(tok, "\r\n"))
		return artifs_error(ARTIFS_EINVAL, "s3: the session token holds a line break");

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->max_retries = S3_DEFAULT_RETRIES;
	if (opts->max_retries > 0)
		s->max_retries = opts->max_retries;
	else if ((rc = s3_env_int("ARTIFS_S3_MAX_RETRIES", &s->max_retries)))
		goto fail;
	if (opts->timeout_s > 0) {
		s->timeout_s = opts->timeout_s;
	} else {
		int t = S3_DEFAULT_TIMEOUT;

		if ((rc = s3_env_int("ARTIFS_S3_TIMEOUT", &t)))
			goto fail;
		s->timeout_s = t > 0 ? t : S3_DEFAULT_TIMEOUT;
	}
	s->seed = (unsigned int)time(NULL) ^ (unsigned int)getpid() ^
		(unsigned int)(uintptr_t)s;

	/* scheme://host[:port][/path], no trailing '/' */
	if (ep)
		endpoint = strstr(ep, "://") ? strdup(ep) : artifs_strfmt("https://%s", ep);
	else
		endpoint = artifs_strfmt("https://s3.%s.amazonaws.com", region);
	if (!endpoint)
		goto nomem;
	elen = strlen(endpoint);
	while (elen && endpoint[elen - 1] == '/')
		endpoint[--elen] = '\0';
	host = strstr(endpoint, "://") + 3;
	hlen = strcspn(host, "/?#");
	rest = host + hlen;
	if (!hlen || memchr(host, '@', hlen) || *rest == '?' || *rest == '#' ||
		(strncmp(endpoint, "http://", 7) && strncmp(endpoint, "https://", 8))) {
		rc = artifs_error(ARTIFS_EINVAL,
			"s3: invalid endpoint '%s' (want http[s]://HOST[:PORT], no credentials)",
			strchr(endpoint, '@') ? "(hidden)" : endpoint);
		goto fail;
	}

	path_style = opts->path_style;
	if (path_style < 0)
		path_style = !host_is_aws(host, hlen) || strchr(bucket, '.');
	s->vhost = !path_style;
	if (path_style)
		s->base = artifs_strfmt("%s/%s", endpoint, bucket);
	else
		s->base = artifs_strfmt("%.*s%s.%s", (int)(host - endpoint), endpoint, bucket, host);
	s->prefix = artifs_strfmt("%s%s", prefix, *prefix ? "/" : "");
	s->sigv4 = artifs_strfmt("aws:amz:%s:s3", region);
	s->access_key = strdup(ak);
	s->secret_key = strdup(sk);
	if (tok)
		s->token_hdr = artifs_strfmt("x-amz-security-token: %s", tok);
	s->curl = curl_easy_init();
	if (!s->base || !s->prefix || !s->sigv4 || !s->access_key || !s->secret_key ||
		(tok && !s->token_hdr) || !s->curl)
		goto nomem;
	free(endpoint);
	r->impl = s;
	r->ops = &s3_ops;
	return 0;
nomem:
	rc = artifs_error(-ENOMEM, "out of memory");
fail:
	free(endpoint);
	r->impl = s;
	s3_free(r);
	return rc;
}
